"""Where settings come from: `.env`, the environment, a TOML file and CLI flags.

Sources, lowest precedence first (a later source wins, variable by variable)::

    defaults  <  .env file  <  environment  <  TOML file  <  CLI overrides

The environment beats `.env` as with docker compose and python-dotenv, so a
deployment can override a checked-in `.env`. The TOML file and the CLI flags are
given explicitly for this run, so they beat both; a CLI flag beats everything.

Names are the SPEC §2 compat variables (so a prototype user's `.env` keeps
working) plus ours (`agent.core.settings_table`). In the TOML file and in overrides
a key may be written ``MAX_CONTAINERS``, ``max_containers`` or ``max-containers``;
unknown keys are an error there. In the environment and `.env` unknown names are
ignored (those are shared with other tools). The `.env` syntax is
`agent.core.env_text`'s.

This module only reads: the files, the environment, HOME and the working
directory. Parsing, defaults and validation are `agent.core.settings.build_settings`'s.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path

from agent.core.env_text import parse_env_text
from agent.core.errors import ConfigError
from agent.core.settings import RawValue, Settings, build_settings
from agent.core.settings_table import canonical, describe

__all__ = [
    "load_settings",
    "DEFAULT_ENV_FILE",
    "parse_env_file",
    "parse_env_text",
]


class _DefaultEnvFile(str):
    """The default `.env` path: a missing file is fine, unlike an explicit one."""

    __slots__ = ()


#: The `env_file` default of `load_settings`; may be missing without error.
DEFAULT_ENV_FILE: str = _DefaultEnvFile(".env")


def load_settings(
    *,
    environ: Mapping[str, str] | None = None,
    env_file: str | Path | None = DEFAULT_ENV_FILE,
    toml_file: str | Path | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """Read, merge and validate the settings; raises ConfigError on bad input.

    `environ` defaults to `os.environ`. `env_file` defaults to ``.env`` in the
    working directory, which may be missing; an explicitly given file must exist;
    None skips it. `overrides` are the CLI flags (None values mean "not given").
    """
    env = os.environ if environ is None else environ
    raw: dict[str, RawValue] = {}
    if env_file is not None:
        raw.update(_from_env_file(env_file))
    raw.update(_from_environment(env))
    if toml_file is not None:
        raw.update(_read_toml(Path(toml_file)))
    raw.update(_from_overrides(overrides or {}))
    return build_settings(raw, _context(env))


def _context(env: Mapping[str, str]) -> dict[str, str]:
    """What the pure build needs to know about this run: HOME and XDG_DATA_HOME
    (DATA_DIR's default) and the working directory (relative paths)."""
    context = {k: env[k] for k in ("XDG_DATA_HOME", "HOME") if env.get(k)}
    if "HOME" not in context:
        home = os.path.expanduser("~")
        if home and home != "~":
            context["HOME"] = home
    context["CWD"] = os.getcwd()
    return context


def _from_env_file(env_file: str | Path) -> dict[str, RawValue]:
    path = Path(env_file)
    if isinstance(env_file, _DefaultEnvFile) and not path.exists():
        return {}
    names = {row.name for row in describe()}
    return {
        key: RawValue(value, key, f"env-file:{path}")
        for key, value in parse_env_file(path).items()
        if key in names
    }


def _from_environment(env: Mapping[str, str]) -> dict[str, RawValue]:
    return {row.name: RawValue(env[row.name], row.name, "environment")
            for row in describe() if row.name in env}


def _from_overrides(overrides: Mapping[str, object]) -> dict[str, RawValue]:
    raw: dict[str, RawValue] = {}
    for key, given in overrides.items():
        if given is None:
            continue
        name = canonical(key) if isinstance(key, str) else None
        if name is None:
            raise ConfigError(str(key), "unknown setting")
        raw[name] = RawValue(given, key, "cli")
    return raw


def _read_toml(path: Path) -> dict[str, RawValue]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(str(path), "TOML file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the TOML file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    raw: dict[str, RawValue] = {}
    for key, value in data.items():
        name = canonical(key)
        if name is None:
            raise ConfigError(f"{path}: {key}", "unknown setting")
        if isinstance(value, dict):
            raise ConfigError(f"{path}: {key}", "must be a value, not a table")
        raw[name] = RawValue(value, key, f"toml:{path}")
    return raw


def parse_env_file(path: str | Path) -> dict[str, str]:
    """Read and parse a `.env` file (`agent.core.env_text`); later keys win."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(str(path), ".env file not found") from None
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the .env file: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), f"not UTF-8 text (byte {exc.start})") from None
    return parse_env_text(text, source=str(path))
