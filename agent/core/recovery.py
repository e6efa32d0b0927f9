"""What a restarted agent may believe of the state it reads back from Redis.

Redis is shared with whoever can reach it, so the stored desired count, runtime
config, policy state, SUNDOWN marks and container records are input, judged as a
request would be before the agent acts on them (issue 10 §1). `vet` takes what
`Store.load` decoded and returns what recovery may use, plus one warning per
thing it left out or corrected; nothing is dropped silently, and one bad entry
never costs the rest:

* **config**: each key must be a run-time setting and its value valid at run time
  (`Settings.with_updates`: type, range, run-time range, relations); a bad or
  start-up-only key is dropped, the other keys are kept;
* **desired**: clamped into [DEFAULT_CONTAINER, MAX_CONTAINERS] (as a manual
  scale is bounded);
* **policy state**: must decode (`PolicyState.from_json`); a last scale-up in the
  future (which would hold the cooldown forever) is dropped; recommendations out
  of range or in the future are dropped, and at most `MAX_RECOMMENDATIONS` kept;
* **SUNDOWN marks**: the name must be a container name; a mark in the future
  (which would postpone its drain timeout) is moved to now — the container stays
  SUNDOWN, its timer can only run out sooner;
* **records**: only their names are used (the engine's labels say what is ours);
  a record that is not an object of that name is left out.

Times in the future are judged against `now` with `CLOCK_SKEW` of slack. Pure:
no I/O and no clock (`now` is passed in).
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.core.errors import ConfigError
from agent.core.policy import PolicyConfig, PolicyState
from agent.core.settings import RUNTIME_MUTABLE, Settings
from agent.core.settings_table import canonical
from agent.core.store_codec import StoredState

__all__ = [
    "CLOCK_SKEW",
    "MAX_RECOMMENDATIONS",
    "CONTAINER_NAME",
    "Vetted",
    "vet",
    "vet_config",
]

#: Seconds a stored time may lie ahead of `now` (clocks of two hosts, NTP steps).
CLOCK_SKEW = 60.0
#: Stabilization recommendations kept at most (one per scale check in the window).
MAX_RECOMMENDATIONS = 1000
#: What the engine accepts as a container name.
CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_SHOWN = 80  # characters of a bad value shown in a warning


@dataclass(frozen=True, slots=True)
class Vetted:
    """What recovery may use. `overrides` are the accepted config keys (canonical
    names); `settings` has them applied; `policy` has the desired count clamped."""

    settings: Settings
    overrides: dict[str, object]
    policy: PolicyState
    sundown: dict[str, float]
    known: tuple[str, ...]
    warnings: tuple[str, ...]
    config_changed: bool = False  # a stored config key was dropped: rewrite the config


def vet(stored: StoredState, settings: Settings, default: PolicyState, now: float) -> Vetted:
    """Judge everything `stored` holds (see the module docstring)."""
    warnings: list[str] = [f"left out (does not decode): {p}" for p in stored.problems]
    settings, overrides, said = vet_config(settings, stored.config)
    warnings += said
    config_changed = bool(said) or any(p.startswith("config[") for p in stored.problems)
    policy = settings.policy_config()
    state, said = _vet_policy(stored.policy, default, policy, now)
    warnings += said
    if stored.desired is not None:
        state = dataclasses.replace(state, desired=stored.desired)
    clamped = max(policy.min_containers, min(policy.max_containers, state.desired))
    if clamped != state.desired:
        warnings.append(f"desired {state.desired} is outside {policy.min_containers}.."
                        f"{policy.max_containers}; using {clamped}")
        state = dataclasses.replace(state, desired=clamped)
    sundown, said = _vet_sundown(stored.sundown, now)
    warnings += said
    known, said = _vet_records(stored.containers)
    warnings += said
    return Vetted(settings, overrides, state, sundown, known, tuple(warnings), config_changed)


def vet_config(
    settings: Settings, config: Mapping[str, object]
) -> tuple[Settings, dict[str, object], list[str]]:
    """`settings` with every acceptable key of `config` applied, those keys (by
    their canonical names), and a warning per key dropped.

    Unknown and start-up-only keys go first, in one pass; then the update is
    tried whole and the key each failure names is dropped, until it applies, so
    keys that are only valid together (DEFAULT_CONTAINER with MAX_CONTAINERS)
    stay together.
    """
    warnings: list[str] = []
    accepted: dict[str, object] = {}
    for key, value in config.items():
        name = canonical(key) if isinstance(key, str) else None
        if name is None:
            warnings.append(f"config {str(key)[:_SHOWN]!r} dropped: unknown setting")
        elif name not in RUNTIME_MUTABLE:
            warnings.append(f"config {name} dropped: start-up only, not changed at run time")
        else:
            accepted[name] = value
    while accepted:
        try:
            return settings.with_updates(accepted), accepted, warnings
        except ConfigError as exc:
            blamed = _blamed(exc.variable, accepted)
            for name in blamed:
                del accepted[name]
            warnings.append(f"config {', '.join(blamed)} dropped: {exc.reason}"[:400])
    return settings, {}, warnings


def _blamed(variable: str, keys: Mapping[str, object]) -> list[str]:
    """The keys a ConfigError names (one, or several for a relation), else all of
    them: a failure that names no stored key still ends the loop."""
    named = [n for v in variable.split(",") if (n := canonical(v)) is not None and n in keys]
    return named or list(keys)


def _vet_policy(
    raw: Mapping[str, object], default: PolicyState, policy: PolicyConfig, now: float
) -> tuple[PolicyState, list[str]]:
    if not raw:
        return default, []
    try:
        state = PolicyState.from_json(raw)
    except ValueError as exc:
        return default, [f"policy state dropped: {exc}"[:400]]
    warnings = []
    last = state.last_scale_up
    if last is not None and not (math.isfinite(last) and last <= now + CLOCK_SKEW):
        warnings.append(f"policy last_scale_up {last!r} dropped: not a past time")
        last = None
    kept = [(t, d) for t, d in state.recommendations
            if math.isfinite(t) and t <= now + CLOCK_SKEW
            and policy.min_containers <= d <= policy.max_containers]
    if len(kept) < len(state.recommendations):
        warnings.append(f"policy: {len(state.recommendations) - len(kept)} recommendation(s) "
                        "dropped (in the future or out of range)")
    if len(kept) > MAX_RECOMMENDATIONS:
        warnings.append(f"policy: kept the newest {MAX_RECOMMENDATIONS} of {len(kept)} "
                        "recommendations")
        kept = kept[-MAX_RECOMMENDATIONS:]
    return PolicyState(desired=state.desired, last_scale_up=last,
                       recommendations=tuple(kept)), warnings


def _vet_sundown(marks: Mapping[str, float], now: float) -> tuple[dict[str, float], list[str]]:
    out: dict[str, float] = {}
    bad: list[str] = []
    moved: list[str] = []
    for name, when in marks.items():
        if not CONTAINER_NAME.fullmatch(name) or not math.isfinite(when):
            bad.append(name[:_SHOWN])
        elif when > now + CLOCK_SKEW:
            out[name] = now
            moved.append(name)
        else:
            out[name] = when
    warnings = []
    if bad:
        warnings.append(f"SUNDOWN mark(s) dropped (not a container name or time): {_few(bad)}")
    if moved:
        warnings.append(f"SUNDOWN mark(s) in the future moved to now: {_few(moved)}")
    return out, warnings


def _vet_records(records: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[str, ...], list[str]]:
    known, bad = [], []
    for name, record in records.items():
        ok = (CONTAINER_NAME.fullmatch(name) and isinstance(record, Mapping)
              and record.get("name", name) == name and isinstance(record.get("id", ""), str))
        if ok:
            known.append(name)
        else:
            bad.append(name[:_SHOWN])
    warnings = [f"container record(s) left out: {_few(bad)}"] if bad else []
    return tuple(sorted(known)), warnings


def _few(names: list[str], shown: int = 10) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(repr(n) for n in names[:shown]) + more
