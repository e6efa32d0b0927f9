"""Settings: sources and precedence, validation messages, `.env` parsing, run-time updates."""
from __future__ import annotations

import dataclasses
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from agent.adapters.config_sources import DEFAULT_ENV_FILE, load_settings, parse_env_file
from agent.core.env_text import parse_env_text
from agent.core.settings import RUNTIME_MUTABLE, Settings, describe
from agent.core.errors import ConfigError
from agent.core.policy import PolicyConfig

REQUIRED = {"DOCKER_IMAGE": "worker:latest", "TARGET_PORT": "8080"}


def load(env: dict[str, str] | None = None, **kw: Any) -> Settings:
    kw.setdefault("env_file", None)
    return load_settings(environ={**REQUIRED, **(env or {})}, **kw)


def error_of(env: dict[str, str], **kw: Any) -> str:
    with pytest.raises(ConfigError) as exc:
        load(env, **kw)
    return str(exc.value)


# --- defaults --------------------------------------------------------------------------

SPEC_DEFAULTS = {
    "APP_IDENTIFIER": "RUSTYBALANCER",
    "DOCKER_HOST": "unix:///var/run/docker.sock",
    "ENGINE": "docker",
    "DEFAULT_CONTAINER": 5,
    "MAX_CONTAINERS": 15,
    "MAX_CONTAINERS_LIMIT": 15,
    "HIGH_LOAD_THRESHOLD": 55.0,
    "LOW_LOAD_THRESHOLD": 80.0,
    "CRITICAL_LOAD_THRESHOLD": 20.0,
    "COOLDOWN_PERIOD": 5,
    "SCALE_STEP": 1,
    "SCALE_CHECK_PERIOD": 10,
    "CPU_WEIGHT": 0.35,
    "MEMORY_WEIGHT": 0.25,
    "NETWORK_WEIGHT": 0.15,
    "AVAILABILITY_WEIGHT": 0.25,
    "HISTORY_SIZE": 20,
    "BEST_TIME_WINDOW": 10,
    "EMA_ALPHA": 0.2,
    "REDIS_URL": None,
    "REDIS_PORT": 6379,
    "HOST_PORT_HTTP_DEPLOYMENT_AGENT": 2550,
    "HOST_PORT_WS_DEPLOYMENT_AGENT": 2547,
    "WS_MAX_CONNECTIONS": 1000,
    "NETWORK_CAPACITY_BPS": 125_000_000,
    "TICK_INTERVAL": 1.0,
    "TICK_DEADLINE": 0.8,
    "PROBE_TIMEOUT": 5.0,
    "HEALTH_PATH": None,
    "DRAIN_TIMEOUT": 30,
    "SCALE_DOWN_STABILIZATION": 15.0,
    "FLAP_GUARD": True,
    "PREDICTIVE_SCALE_UP": False,
    "SCALE_UP_SIZING": "shortfall",
    "SCALING_STRATEGY": "threshold",
    "TARGET_UTILIZATION": 50.0,
    "TARGET_IN_FLIGHT": None,
    "SCALE_TOLERANCE": 0.1,
    "SCALE_UP_LIMIT": 4,
    "SCALE_DOWN_LIMIT": 1,
    "FORECAST_HORIZON": 5,
    "TREND_WINDOW": 60,
    "CATEGORY_HYSTERESIS": 0.0,
    "SLOW_START_WINDOW": 30.0,
    "BIND_HOST": "127.0.0.1",
    "ADVERTISE_URL": None,
    "LEADER_LEASE_TTL": 10.0,
    "AGENT_API_TOKEN": None,
    "CORS_ALLOW_ORIGINS": "*",
    "CORS_ALLOW_WRITE_ORIGINS": "",
    "CONTAINER_CPUS": None,
    "CONTAINER_MEMORY": None,
    "BALANCER": "none",
    "BALANCER_BIND": "127.0.0.1",
    "BALANCER_PORT": 8080,
    "BALANCER_ALGORITHM": "roundrobin",
    "HAPROXY_SOCKET": None,
    "HAPROXY_BACKEND": None,
    "SWARM_CONSTRAINTS": "",
    "SWARM_NETWORK": None,
    "PROC_ROOT": "/proc",
    "CGROUP_ROOT": "/sys/fs/cgroup",
    "COLLECTOR_REPORT_TTL": 3.0,
    "LEDGER_MAX_LEN": 10000,
    "LOG_LEVEL": "INFO",
}


def test_defaults() -> None:
    s = load()
    d = s.as_dict()
    for name, value in SPEC_DEFAULTS.items():
        assert d[name] == value, name
    assert (s.docker_image, s.target_port) == ("worker:latest", 8080)
    assert s.embedded_redis
    assert s.sources["MAX_CONTAINERS"] == "default"
    assert s.sources["DOCKER_IMAGE"] == "environment"
    assert s.sources["TICK_DEADLINE"] == "derived"


def test_constructor_defaults_match_loaded_defaults() -> None:
    assert Settings(docker_image="worker:latest", target_port=8080,
                    data_dir=load().data_dir) == load()


def test_the_table_is_the_only_source_of_defaults() -> None:
    """Settings, PolicyConfig and ScorerConfig take their defaults from DEFAULTS."""
    from agent.core.settings_table import DEFAULTS
    from agent.scoring import ScorerConfig

    s = Settings(docker_image="x", target_port=80)
    for spec in describe():
        if not spec.required:
            assert getattr(s, spec.attr) == DEFAULTS[spec.name], spec.name
    assert DEFAULTS["TICK_DEADLINE"] == 0.8 and DEFAULTS["SCALE_DOWN_STABILIZATION"] == 15.0
    assert PolicyConfig() == s.policy_config()
    assert ScorerConfig() == s.scorer_config()


def test_a_settings_class_apart_from_the_table_is_refused() -> None:
    from agent.core.settings import TABLE, _defaults_from_table

    class Partial:
        docker_image: str
        target_port: int
        app_identifier: str = TABLE

    with pytest.raises(TypeError, match=r"only in the table \['advertise_url', 'agent_api_token', "):
        _defaults_from_table(Partial)

    names = {f.name: f for f in dataclasses.fields(Settings)}
    annotations = {n: "float" if n == "max_containers" else f.type for n, f in names.items()
                   if n not in ("sources", "_raw", "_context")}
    Mistyped = type("Mistyped", (), {"__annotations__": annotations,
                                     **{n: TABLE for n in annotations if n not in
                                        ("docker_image", "target_port")}})
    with pytest.raises(TypeError, match="MAX_CONTAINERS needs the type 'int', not 'float'"):
        _defaults_from_table(Mistyped)


def test_relative_data_dir_resolves_against_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load({"DATA_DIR": "rel/dir"}).data_dir == tmp_path / "rel" / "dir"
    assert load({"DATA_DIR": "~/d", "HOME": str(tmp_path / "h")}).data_dir == tmp_path / "h" / "d"
    # the run's working directory is recorded: a later update does not move it
    s = load({"DATA_DIR": "rel"})
    monkeypatch.chdir("/")
    assert s.with_updates({"SCALE_STEP": 2}).data_dir == tmp_path / "rel"


def test_describe_covers_every_field() -> None:
    specs = describe()
    names = [s.name for s in specs]
    assert len(names) == len(set(names))
    fields = {f.name for f in dataclasses.fields(Settings)} - {"sources", "_raw", "_context"}
    assert {s.attr for s in specs} == fields
    assert set(SPEC_DEFAULTS) | {"DOCKER_IMAGE", "TARGET_PORT", "REDIS_HOST", "DATA_DIR"} \
        == set(names)
    by_name = {s.name: s for s in specs}
    assert by_name["MAX_CONTAINERS"].flag == "--max-containers"
    assert by_name["DOCKER_IMAGE"].required and by_name["TARGET_PORT"].required
    assert by_name["AGENT_API_TOKEN"].secret
    assert by_name["TICK_DEADLINE"].default_text == "0.8 × TICK_INTERVAL"
    assert all(s.help for s in specs)


def test_runtime_mutable_set() -> None:
    for name in ("HIGH_LOAD_THRESHOLD", "LOW_LOAD_THRESHOLD", "CRITICAL_LOAD_THRESHOLD",
                 "CPU_WEIGHT", "AVAILABILITY_WEIGHT", "COOLDOWN_PERIOD", "SCALE_CHECK_PERIOD",
                 "SCALE_STEP", "DEFAULT_CONTAINER", "MAX_CONTAINERS", "DRAIN_TIMEOUT",
                 "SCALE_DOWN_STABILIZATION", "FLAP_GUARD", "PREDICTIVE_SCALE_UP",
                 "CATEGORY_HYSTERESIS"):
        assert name in RUNTIME_MUTABLE
    for name in ("DOCKER_IMAGE", "TARGET_PORT", "DOCKER_HOST", "APP_IDENTIFIER",
                 "HOST_PORT_HTTP_DEPLOYMENT_AGENT", "HOST_PORT_WS_DEPLOYMENT_AGENT",
                 "REDIS_URL", "REDIS_HOST", "REDIS_PORT", "DATA_DIR", "AGENT_API_TOKEN",
                 "HISTORY_SIZE", "BEST_TIME_WINDOW", "TREND_WINDOW"):
        assert name not in RUNTIME_MUTABLE


# --- precedence: defaults < .env < environment < TOML < CLI ------------------------------


def test_precedence(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_CONTAINERS=11\nSCALE_STEP=2\nCOOLDOWN_PERIOD=7\nEMA_ALPHA=0.3\n"
                        "LOG_LEVEL=debug\n")
    toml = tmp_path / "agent.toml"
    toml.write_text("max_containers = 13\nSCALE_STEP = 3\n")
    s = load_settings(
        environ={**REQUIRED, "MAX_CONTAINERS": "12", "SCALE_STEP": "4", "COOLDOWN_PERIOD": "8"},
        env_file=env_file, toml_file=toml, overrides={"max-containers": "14"},
    )
    assert (s.max_containers, s.scale_step, s.cooldown_period, s.ema_alpha, s.log_level) \
        == (14, 3, 8.0, 0.3, "DEBUG")
    assert s.sources["MAX_CONTAINERS"] == "cli"
    assert s.sources["SCALE_STEP"] == f"toml:{toml}"
    assert s.sources["COOLDOWN_PERIOD"] == "environment"
    assert s.sources["EMA_ALPHA"] == f"env-file:{env_file}"
    rows = {r["name"]: r for r in s.explain()}
    assert rows["MAX_CONTAINERS"]["source"] == "cli"
    assert rows["HISTORY_SIZE"] == {"name": "HISTORY_SIZE", "value": 20, "source": "default",
                                   "default": "20", "mutable": False,
                                   "help": "response times kept per container"}


def test_empty_value_resets_to_default_and_beats_lower_source(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REDIS_HOST=redis.internal\nSCALE_STEP=3\n")
    s = load_settings(environ={**REQUIRED, "REDIS_HOST": "", "SCALE_STEP": " "},
                      env_file=env_file)
    assert s.redis_url is None and s.scale_step == 1


def test_default_env_file_is_read_from_cwd_and_may_be_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_settings(environ=REQUIRED).max_containers == 15
    (tmp_path / ".env").write_text("MAX_CONTAINERS=9\n")
    s = load_settings(environ=REQUIRED)
    assert s.max_containers == 9 and s.sources["MAX_CONTAINERS"] == "env-file:.env"
    assert load_settings(environ=REQUIRED, env_file=DEFAULT_ENV_FILE).max_containers == 9


def test_explicit_env_file_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    with pytest.raises(ConfigError, match=r"nope\.env: \.env file not found"):
        load_settings(environ=REQUIRED, env_file=missing)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(environ=REQUIRED, env_file=str(missing))


def test_compat_env_file_is_enough(tmp_path: Path) -> None:
    """A prototype user's .env, unchanged, starts the agent."""
    env_file = tmp_path / ".env"
    env_file.write_text(
        "APP_IDENTIFIER=RUSTYBALANCER\nDOCKER_IMAGE=nginx:alpine\nTARGET_PORT=80\n"
        "REDIS_HOST=127.0.0.1\nREDIS_PORT=6380\nDEFAULT_CONTAINER=3\nMAX_CONTAINERS=10\n"
        "HIGH_LOAD_THRESHOLD=50.0\nLOW_LOAD_THRESHOLD=85.0\nCRITICAL_LOAD_THRESHOLD=15.0\n"
        "COOLDOWN_PERIOD=5\nSCALE_STEP=1\nSCALE_CHECK_PERIOD=10\nCPU_WEIGHT=0.35\n"
        "MEMORY_WEIGHT=0.25\nNETWORK_WEIGHT=0.15\nAVAILABILITY_WEIGHT=0.25\nHISTORY_SIZE=20\n"
        "BEST_TIME_WINDOW=10\nEMA_ALPHA=0.2\nHOST_PORT_HTTP_DEPLOYMENT_AGENT=2550\n"
        "HOST_PORT_WS_DEPLOYMENT_AGENT=2547\nRUST_LOG=info\n"
    )
    s = load_settings(environ={}, env_file=env_file)
    assert s.redis_url == "redis://127.0.0.1:6380/0"
    assert (s.default_container, s.max_containers, s.docker_image) == (3, 10, "nginx:alpine")


def test_unknown_names_ignored_in_environment_but_not_elsewhere(tmp_path: Path) -> None:
    assert load({"PATH": "/bin", "MAX_CONTAINER": "3"}).max_containers == 15
    toml = tmp_path / "a.toml"
    toml.write_text("max_container = 3\n")
    assert error_of({}, toml_file=toml) == f"{toml}: max_container: unknown setting"
    assert error_of({}, overrides={"--max-container": 3}) == "--max-container: unknown setting"


def test_cli_none_means_not_given() -> None:
    s = load({"MAX_CONTAINERS": "9"}, overrides={"MAX_CONTAINERS": None, "scale_step": 2})
    assert (s.max_containers, s.scale_step) == (9, 2)


def test_toml_types_and_errors(tmp_path: Path) -> None:
    toml = tmp_path / "a.toml"
    toml.write_text('cors_allow_origins = ["https://a.example", "http://b:8080"]\n'
                    "flap_guard = false\nscale_check_period = 4\ncontainer_cpus = 0.5\n")
    s = load(toml_file=toml)
    assert s.cors_allow_origins == ("https://a.example", "http://b:8080")
    assert (s.flap_guard, s.scale_check_period, s.container_cpus) == (False, 4.0, 0.5)
    assert s.scale_down_stabilization == 6.0

    toml.write_text("max_containers = 3\n")
    assert error_of({}, toml_file=toml) == \
        "max_containers: must be an integer ≥ DEFAULT_CONTAINER (5), got 3"
    toml.write_text("[agent]\nmax_containers = 3\n")
    assert error_of({}, toml_file=toml) == f"{toml}: agent: unknown setting"
    toml.write_text("max_containers = \n")
    assert error_of({}, toml_file=toml).startswith(f"{toml}: invalid TOML: ")
    toml.write_text('scale_step = "two"\n')
    assert error_of({}, toml_file=toml) == "scale_step: must be an integer ≥ 1, got 'two'"
    assert error_of({}, toml_file=tmp_path / "missing.toml") == \
        f"{tmp_path / 'missing.toml'}: TOML file not found"


# --- validation: exact messages -----------------------------------------------------------

INVALID = [
    ("strategy_unknown", {"SCALING_STRATEGY": "pid"},
     "SCALING_STRATEGY: must be one of threshold, target, got 'pid'"),
    ("sizing_unknown", {"SCALE_UP_SIZING": "double"},
     "SCALE_UP_SIZING: must be one of shortfall, step, got 'double'"),
    ("target_utilization_zero", {"TARGET_UTILIZATION": "0"},
     "TARGET_UTILIZATION: must be a number in (0, 100], got '0'"),
    ("tolerance_one", {"SCALE_TOLERANCE": "1"},
     "SCALE_TOLERANCE: must be a number in [0, 1), got '1'"),
    ("in_flight_negative", {"TARGET_IN_FLIGHT": "-2"},
     "TARGET_IN_FLIGHT: must be a number > 0, got '-2'"),
    ("max_below_default", {"MAX_CONTAINERS": "3"},
     "MAX_CONTAINERS: must be an integer ≥ DEFAULT_CONTAINER (5), got '3'"),
    ("max_not_int", {"MAX_CONTAINERS": "lots"},
     "MAX_CONTAINERS: must be an integer ≥ 1, got 'lots'"),
    ("default_above_max", {"DEFAULT_CONTAINER": "20"},
     "DEFAULT_CONTAINER: must be an integer ≤ MAX_CONTAINERS (15), got '20'"),
    ("both_set_blames_max", {"DEFAULT_CONTAINER": "8", "MAX_CONTAINERS": "6"},
     "MAX_CONTAINERS: must be an integer ≥ DEFAULT_CONTAINER (8), got '6'"),
    ("default_zero", {"DEFAULT_CONTAINER": "0"},
     "DEFAULT_CONTAINER: must be an integer ≥ 1, got '0'"),
    ("default_float", {"DEFAULT_CONTAINER": "2.5"},
     "DEFAULT_CONTAINER: must be an integer ≥ 1, got '2.5'"),
    ("step_zero", {"SCALE_STEP": "0"}, "SCALE_STEP: must be an integer ≥ 1, got '0'"),
    ("history_negative", {"HISTORY_SIZE": "-3"},
     "HISTORY_SIZE: must be an integer ≥ 1, got '-3'"),
    ("trend_window_one", {"TREND_WINDOW": "1"}, "TREND_WINDOW: must be an integer ≥ 2, got '1'"),
    ("huge_int", {"LEDGER_MAX_LEN": "9" * 5000},
     f"LEDGER_MAX_LEN: must be an integer ≥ 1, got '{'9' * 5000}'"),
    ("port_zero", {"TARGET_PORT": "0"}, "TARGET_PORT: must be an integer in 1..65535, got '0'"),
    ("port_too_big", {"HOST_PORT_HTTP_DEPLOYMENT_AGENT": "70000"},
     "HOST_PORT_HTTP_DEPLOYMENT_AGENT: must be an integer in 1..65535, got '70000'"),
    ("port_word", {"REDIS_PORT": "redis"},
     "REDIS_PORT: must be an integer in 1..65535, got 'redis'"),
    ("image_missing", {"DOCKER_IMAGE": ""},
     "DOCKER_IMAGE: is required: image of the worker containers; set it in the environment, "
     ".env, the TOML file or with --docker-image"),
    ("image_with_space", {"DOCKER_IMAGE": "my image"},
     "DOCKER_IMAGE: must be an image reference such as 'nginx:alpine', got 'my image'"),
    ("high_above_low", {"HIGH_LOAD_THRESHOLD": "90"},
     "HIGH_LOAD_THRESHOLD: must be a number in [0, 100] with CRITICAL_LOAD_THRESHOLD (20) "
     "< HIGH_LOAD_THRESHOLD < LOW_LOAD_THRESHOLD (80), got '90'"),
    ("low_below_high", {"LOW_LOAD_THRESHOLD": "50"},
     "LOW_LOAD_THRESHOLD: must be a number in [0, 100] with CRITICAL_LOAD_THRESHOLD (20) "
     "< HIGH_LOAD_THRESHOLD (55) < LOW_LOAD_THRESHOLD, got '50'"),
    ("critical_above_high", {"CRITICAL_LOAD_THRESHOLD": "60"},
     "CRITICAL_LOAD_THRESHOLD: must be a number in [0, 100] with CRITICAL_LOAD_THRESHOLD "
     "< HIGH_LOAD_THRESHOLD (55) < LOW_LOAD_THRESHOLD (80), got '60'"),
    ("threshold_equal", {"HIGH_LOAD_THRESHOLD": "80", "LOW_LOAD_THRESHOLD": "80"},
     "LOW_LOAD_THRESHOLD: must be a number in [0, 100] with CRITICAL_LOAD_THRESHOLD (20) "
     "< HIGH_LOAD_THRESHOLD (80) < LOW_LOAD_THRESHOLD, got '80'"),
    ("threshold_out_of_range", {"LOW_LOAD_THRESHOLD": "120"},
     "LOW_LOAD_THRESHOLD: must be a number in [0, 100], got '120'"),
    ("threshold_nan", {"HIGH_LOAD_THRESHOLD": "nan"},
     "HIGH_LOAD_THRESHOLD: must be a number in [0, 100], got 'nan'"),
    ("weight_negative", {"CPU_WEIGHT": "-0.1"}, "CPU_WEIGHT: must be a number ≥ 0, got '-0.1'"),
    ("weight_inf", {"NETWORK_WEIGHT": "inf"}, "NETWORK_WEIGHT: must be a number ≥ 0, got 'inf'"),
    ("weights_all_zero", {"CPU_WEIGHT": "0", "MEMORY_WEIGHT": "0", "NETWORK_WEIGHT": "0",
                          "AVAILABILITY_WEIGHT": "0.0"},
     "CPU_WEIGHT, MEMORY_WEIGHT, NETWORK_WEIGHT, AVAILABILITY_WEIGHT: at least one score "
     "weight must be > 0, got all 0"),
    ("ema_zero", {"EMA_ALPHA": "0"}, "EMA_ALPHA: must be a number in (0, 1], got '0'"),
    ("ema_above_one", {"EMA_ALPHA": "1.5"}, "EMA_ALPHA: must be a number in (0, 1], got '1.5'"),
    ("period_zero", {"SCALE_CHECK_PERIOD": "0"},
     "SCALE_CHECK_PERIOD: must be a number > 0, got '0'"),
    ("cooldown_negative", {"COOLDOWN_PERIOD": "-1"},
     "COOLDOWN_PERIOD: must be a number ≥ 0, got '-1'"),
    ("tick_deadline_above_interval", {"TICK_DEADLINE": "2"},
     "TICK_DEADLINE: must be a number > 0 and ≤ TICK_INTERVAL (1), got '2'"),
    ("lease_ttl_below_two_ticks", {"LEADER_LEASE_TTL": "1.5"},
     "LEADER_LEASE_TTL: must be a number in [1, 300] and ≥ 2 × TICK_INTERVAL (2), so that "
     "the leader renews its lease at least twice before it lapses, got '1.5'"),
    ("tick_interval_above_half_the_lease", {"TICK_INTERVAL": "6"},
     "TICK_INTERVAL: must be a number > 0 and ≤ LEADER_LEASE_TTL / 2 (5), so that the "
     "leader renews its lease at least twice before it lapses, got '6'"),
    ("lease_ttl_blamed_when_both_set", {"LEADER_LEASE_TTL": "4", "TICK_INTERVAL": "3"},
     "LEADER_LEASE_TTL: must be a number in [1, 300] and ≥ 2 × TICK_INTERVAL (6), so that "
     "the leader renews its lease at least twice before it lapses, got '4'"),
    ("lease_ttl_out_of_range", {"LEADER_LEASE_TTL": "0.5"},
     "LEADER_LEASE_TTL: must be a number in [1, 300], got '0.5'"),
    ("advertise_url_scheme", {"ADVERTISE_URL": "agent-1:2550"},
     "ADVERTISE_URL: must be an http:// or https:// URL such as http://agent-1.example:2550, "
     "got 'agent-1:2550'"),
    ("probe_timeout_word", {"PROBE_TIMEOUT": "5s"},
     "PROBE_TIMEOUT: must be a number > 0, got '5s'"),
    ("bool_word", {"FLAP_GUARD": "maybe"},
     "FLAP_GUARD: must be one of true/false/1/0/yes/no/on/off, got 'maybe'"),
    ("app_identifier_space", {"APP_IDENTIFIER": "my app"},
     "APP_IDENTIFIER: must be 1–63 letters, digits, '_', '.' or '-', starting with a letter "
     "or digit (it names containers and Redis keys), got 'my app'"),
    ("docker_host_no_scheme", {"DOCKER_HOST": "localhost:2375"},
     "DOCKER_HOST: must be an engine address such as unix:///var/run/docker.sock or "
     "tcp://host:2375 (schemes: unix, tcp, ssh, http, https, npipe), got 'localhost:2375'"),
    ("redis_url_scheme_password_hidden", {"REDIS_URL": "http://user:secret@host"},
     "REDIS_URL: must be a redis://, rediss:// or unix:// URL such as "
     "redis://localhost:6379/0, got 'http://***@host'"),
    ("redis_url_bad_port", {"REDIS_URL": "redis://host:99999"},
     "REDIS_URL: must be a redis://, rediss:// or unix:// URL such as "
     "redis://localhost:6379/0, got 'redis://host:99999'"),
    ("redis_host_url", {"REDIS_HOST": "redis://x"},
     "REDIS_HOST: must be a host name or IP address, got 'redis://x'"),
    ("health_path_relative", {"HEALTH_PATH": "health"},
     "HEALTH_PATH: must be an HTTP path starting with '/', such as /health, got 'health'"),
    ("cors_mixed_star", {"CORS_ALLOW_ORIGINS": "*,https://a.example"},
     "CORS_ALLOW_ORIGINS: '*' cannot be combined with other origins, got '*,https://a.example'"),
    ("cors_path", {"CORS_ALLOW_ORIGINS": "https://a.example/app"},
     "CORS_ALLOW_ORIGINS: must be '*' or origins such as https://example.org:8443, "
     "got 'https://a.example/app'"),
    ("write_origins_star", {"CORS_ALLOW_WRITE_ORIGINS": "*"},
     "CORS_ALLOW_WRITE_ORIGINS: must list the origins; '*' is not allowed for writes, got '*'"),
    ("cpus_zero", {"CONTAINER_CPUS": "0"}, "CONTAINER_CPUS: must be a number > 0, got '0'"),
    ("memory_unit", {"CONTAINER_MEMORY": "256x"},
     "CONTAINER_MEMORY: must be a size such as 256m or 1g (units b, k, m, g), got '256x'"),
    ("memory_too_small", {"CONTAINER_MEMORY": "1m"},
     "CONTAINER_MEMORY: must be at least 6m (the engine's minimum), got '1m'"),
    ("hysteresis_too_big", {"CATEGORY_HYSTERESIS": "20"},
     "CATEGORY_HYSTERESIS: must be a number in [0, 15], got '20'"),
    ("log_level", {"LOG_LEVEL": "verbose"},
     "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'verbose'"),
    ("token_secret_not_echoed", {"AGENT_API_TOKEN": "s3cret with space"},
     "AGENT_API_TOKEN: must not contain spaces or control characters"),
]


@pytest.mark.parametrize(("env", "message"), [r[1:] for r in INVALID],
                         ids=[r[0] for r in INVALID])
def test_invalid(env: dict[str, str], message: str) -> None:
    assert error_of(env) == message


def test_required_target_port() -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={"DOCKER_IMAGE": "x"}, env_file=None)
    assert exc.value.variable == "TARGET_PORT"
    assert exc.value.reason.startswith("is required: ")


def test_cli_error_names_the_flag() -> None:
    assert error_of({}, overrides={"--max-containers": "3"}) == \
        "--max-containers: must be an integer ≥ DEFAULT_CONTAINER (5), got '3'"


def test_blame_follows_the_later_source(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("MAX_CONTAINERS=8\n")
    assert error_of({"DEFAULT_CONTAINER": "9"}, env_file=env_file) == \
        "DEFAULT_CONTAINER: must be an integer ≤ MAX_CONTAINERS (8), got '9'"


BOOLS = [("true", True), ("TRUE", True), ("1", True), ("yes", True), ("on", True),
         ("false", False), ("0", False), ("No", False), ("off", False), (" yes ", True)]


@pytest.mark.parametrize(("text", "value"), BOOLS, ids=[b[0].strip() + str(b[1]) for b in BOOLS])
def test_booleans(text: str, value: bool) -> None:
    assert load({"PREDICTIVE_SCALE_UP": text}).predictive_scale_up is value


VALID = [
    ("redis_host_default_port", {"REDIS_HOST": "redis"}, "redis_url", "redis://redis:6379/0"),
    ("redis_host_and_port", {"REDIS_HOST": "10.0.0.5", "REDIS_PORT": "6380"}, "redis_url",
     "redis://10.0.0.5:6380/0"),
    ("redis_ipv6_host", {"REDIS_HOST": "::1"}, "redis_url", "redis://[::1]:6379/0"),
    ("redis_url_wins", {"REDIS_URL": "redis://a:1/2", "REDIS_HOST": "b"}, "redis_url",
     "redis://a:1/2"),
    ("redis_port_alone_embedded", {"REDIS_PORT": "6390"}, "redis_url", None),
    ("redis_unix_socket", {"REDIS_URL": "unix:///run/redis.sock"}, "redis_url",
     "unix:///run/redis.sock"),
    ("tick_deadline_follows_interval", {"TICK_INTERVAL": "2"}, "tick_deadline", 1.6),
    ("tick_deadline_explicit", {"TICK_DEADLINE": "0.5"}, "tick_deadline", 0.5),
    ("stabilization_follows_period", {"SCALE_CHECK_PERIOD": "4"}, "scale_down_stabilization",
     6.0),
    ("stabilization_off", {"SCALE_DOWN_STABILIZATION": "0"}, "scale_down_stabilization", 0.0),
    ("int_for_float", {"COOLDOWN_PERIOD": "5"}, "cooldown_period", 5.0),
    ("weights_need_not_sum_to_one", {"CPU_WEIGHT": "1", "MEMORY_WEIGHT": "1"}, "cpu_weight",
     1.0),
    ("ema_one", {"EMA_ALPHA": "1"}, "ema_alpha", 1.0),
    ("thresholds_edges", {"CRITICAL_LOAD_THRESHOLD": "0", "LOW_LOAD_THRESHOLD": "100"},
     "low_load_threshold", 100.0),
    ("health_path", {"HEALTH_PATH": "/healthz"}, "health_path", "/healthz"),
    ("cors_list", {"CORS_ALLOW_ORIGINS": "https://a.example, http://localhost:3000/"},
     "cors_allow_origins", ("https://a.example", "http://localhost:3000")),
    ("write_origins", {"CORS_ALLOW_WRITE_ORIGINS": "https://ops.example"},
     "cors_allow_write_origins", ("https://ops.example",)),
    ("memory", {"CONTAINER_MEMORY": "256M"}, "container_memory", "256m"),
    ("memory_bytes", {"CONTAINER_MEMORY": "1g"}, "container_memory_bytes", 1024**3),
    ("cpus", {"CONTAINER_CPUS": "0.5"}, "container_cpus", 0.5),
    ("log_level_warn", {"LOG_LEVEL": "warn"}, "log_level", "WARNING"),
    ("whitespace_trimmed", {"MAX_CONTAINERS": " 20 "}, "max_containers", 20),
    ("app_identifier", {"APP_IDENTIFIER": "shop-api_2.v1"}, "app_identifier", "shop-api_2.v1"),
    ("docker_tcp", {"DOCKER_HOST": "tcp://10.0.0.2:2376"}, "docker_host", "tcp://10.0.0.2:2376"),
    ("ports_alias", {"HOST_PORT_HTTP_DEPLOYMENT_AGENT": "8000"}, "http_port", 8000),
    ("token", {"AGENT_API_TOKEN": "abc123"}, "agent_api_token", "abc123"),
]


@pytest.mark.parametrize(("env", "attr", "value"), [r[1:] for r in VALID],
                         ids=[r[0] for r in VALID])
def test_valid(env: dict[str, str], attr: str, value: Any) -> None:
    assert getattr(load(env), attr) == value


def test_data_dir(tmp_path: Path) -> None:
    assert load({"XDG_DATA_HOME": str(tmp_path)}).data_dir == tmp_path / "deployment-agent"
    assert load({"XDG_DATA_HOME": "relative", "HOME": str(tmp_path)}).data_dir == \
        tmp_path / ".local/share/deployment-agent"
    assert load({"HOME": str(tmp_path), "DATA_DIR": str(tmp_path / "d")}).data_dir == \
        tmp_path / "d"
    assert load({"DATA_DIR": "rel/dir"}).data_dir.is_absolute()


# --- views -------------------------------------------------------------------------------


def test_as_dict_redacts_secrets() -> None:
    s = load({"AGENT_API_TOKEN": "tok-123", "REDIS_URL": "redis://user:pw@db.example:6390/1"})
    d = s.as_dict()
    assert d["AGENT_API_TOKEN"] == "***"
    assert d["REDIS_URL"] == "redis://user:***@db.example:6390/1"
    assert "tok-123" not in repr(s.explain()) and "pw@" not in repr(s.explain())
    raw = s.as_dict(redact=False)
    assert raw["AGENT_API_TOKEN"] == "tok-123"
    assert raw["REDIS_URL"] == "redis://user:pw@db.example:6390/1"


def test_as_dict_round_trips() -> None:
    s = load({"AGENT_API_TOKEN": "t", "REDIS_HOST": "r", "CORS_ALLOW_ORIGINS": "http://a,http://b",
              "CONTAINER_MEMORY": "300m", "HEALTH_PATH": "/h", "SCALE_CHECK_PERIOD": "3"})
    again = load_settings(
        environ={k: str(v) for k, v in s.as_dict(redact=False).items() if v is not None},
        env_file=None,
    )
    assert again == s


def test_policy_config() -> None:
    s = load({"DEFAULT_CONTAINER": "2", "MAX_CONTAINERS": "9", "HIGH_LOAD_THRESHOLD": "50",
              "LOW_LOAD_THRESHOLD": "85", "CRITICAL_LOAD_THRESHOLD": "10",
              "COOLDOWN_PERIOD": "3", "SCALE_STEP": "2", "SCALE_DOWN_STABILIZATION": "40",
              "FLAP_GUARD": "no", "PREDICTIVE_SCALE_UP": "yes", "DRAIN_TIMEOUT": "12"})
    assert s.policy_config() == PolicyConfig(
        min_containers=2, max_containers=9, high_threshold=50.0, low_threshold=85.0,
        critical_threshold=10.0, cooldown=3.0, scale_step=2, stabilization_window=40.0,
        flap_guard=False, predictive=True, drain_timeout=12.0,
    )
    sized = load({"SCALE_UP_SIZING": "step", "CPU_WEIGHT": "0"}).policy_config()
    assert sized.scale_up_sizing == "step"
    assert sized.resource_weights == (("cpu", 0.0), ("memory", 0.25), ("network", 0.15),
                                      ("availability", 0.25))
    assert sized.sized_resources == {"memory", "network", "availability"}


def test_scorer_config_maps_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mapping checked against a stand-in with ScorerConfig's documented fields."""

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class ScorerConfig:
        cpu_weight: float = 0.0
        memory_weight: float = 0.0
        network_weight: float = 0.0
        availability_weight: float = 0.0
        history_size: int = 0
        best_time_window: int = 0
        ema_alpha: float = 0.0
        network_capacity_bps: float = 0.0
        trend_window: int = 0
        holt_alpha: float = 0.5
        holt_beta: float = 0.1
        forecast_horizon: int = 0
        hysteresis: float = 0.0
        slow_start_window: float = 0.0
        slow_start_aggression: float = 1.0
        slow_start_min_fraction: float = 0.1
        latency_decay: float = 0.9
        jk_k: float = 4.0

    fake = types.ModuleType("agent.scoring")
    fake.ScorerConfig = ScorerConfig  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "agent.scoring", fake)
    s = load({"CPU_WEIGHT": "0.5", "HISTORY_SIZE": "30", "BEST_TIME_WINDOW": "7",
              "EMA_ALPHA": "0.4", "NETWORK_CAPACITY_BPS": "1e6", "TREND_WINDOW": "20",
              "FORECAST_HORIZON": "3", "CATEGORY_HYSTERESIS": "2.5",
              "SLOW_START_WINDOW": "12"})
    assert s.scorer_config() == ScorerConfig(
        cpu_weight=0.5, memory_weight=0.25, network_weight=0.15, availability_weight=0.25,
        history_size=30, best_time_window=7, ema_alpha=0.4, network_capacity_bps=1e6,
        trend_window=20, forecast_horizon=3, hysteresis=2.5, slow_start_window=12.0,
    )


def test_scorer_config_against_the_real_scorer() -> None:
    import agent.scoring as scoring
    assert isinstance(load().scorer_config(), scoring.ScorerConfig)


# --- run-time updates ---------------------------------------------------------------------


def test_with_updates() -> None:
    s = load({"MAX_CONTAINERS": "10"})
    t = s.with_updates({"MAX_CONTAINERS": 8, "flap_guard": "off", "scale-check-period": 6})
    assert (t.max_containers, t.flap_guard, t.scale_check_period) == (8, False, 6.0)
    assert t.scale_down_stabilization == 9.0  # derived default follows the period
    assert t.sources["MAX_CONTAINERS"] == "runtime"
    assert (s.max_containers, s.flap_guard) == (10, True)  # frozen original untouched
    assert t.with_updates({"SCALE_STEP": 2}).max_containers == 8  # updates accumulate
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.max_containers = 3  # type: ignore[misc]


def test_with_updates_keeps_explicit_derived_values() -> None:
    s = load({"SCALE_DOWN_STABILIZATION": "30"})
    assert s.with_updates({"SCALE_CHECK_PERIOD": 2}).scale_down_stabilization == 30.0


UPDATE_ERRORS = [
    ("not_mutable", {"DOCKER_IMAGE": "other"},
     "DOCKER_IMAGE: cannot be changed at run time; restart the agent with the new value"),
    ("token_not_mutable", {"agent_api_token": "x"},
     "agent_api_token: cannot be changed at run time; restart the agent with the new value"),
    ("unknown", {"MAX_CONTAINER": 3}, "MAX_CONTAINER: unknown setting"),
    ("invalid_value", {"MAX_CONTAINERS": 3},
     "MAX_CONTAINERS: must be an integer ≥ DEFAULT_CONTAINER (5), got 3"),
    ("relation_blames_update", {"DEFAULT_CONTAINER": 16},
     "DEFAULT_CONTAINER: must be an integer ≤ MAX_CONTAINERS (15), got 16"),
    ("thresholds", {"HIGH_LOAD_THRESHOLD": 85},
     "HIGH_LOAD_THRESHOLD: must be a number in [0, 100] with CRITICAL_LOAD_THRESHOLD (20) "
     "< HIGH_LOAD_THRESHOLD < LOW_LOAD_THRESHOLD (80), got 85"),
    ("bool_for_int", {"SCALE_STEP": True}, "SCALE_STEP: must be an integer ≥ 1, got True"),
    ("float_for_int", {"SCALE_STEP": 1.5}, "SCALE_STEP: must be an integer ≥ 1, got 1.5"),
    ("null", {"SCALE_STEP": None}, "SCALE_STEP: must have a value, got None"),
    ("list", {"CPU_WEIGHT": [1]}, "CPU_WEIGHT: must be a number ≥ 0, got [1]"),
]


@pytest.mark.parametrize(("partial", "message"), [r[1:] for r in UPDATE_ERRORS],
                         ids=[r[0] for r in UPDATE_ERRORS])
def test_with_updates_errors(partial: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load().with_updates(partial)
    assert str(exc.value) == message


def test_with_updates_on_constructed_settings() -> None:
    s = Settings(docker_image="x", target_port=80)
    assert s.with_updates({"MAX_CONTAINERS": 9}).max_containers == 9
    assert s.with_token("abc").agent_api_token == "abc"


def test_with_token_survives_updates() -> None:
    s = load().with_token("generated-token")
    assert s.agent_api_token == "generated-token"
    assert s.sources["AGENT_API_TOKEN"] == "generated"
    assert s.as_dict()["AGENT_API_TOKEN"] == "***"
    assert s.with_updates({"SCALE_STEP": 2}).agent_api_token == "generated-token"
    with pytest.raises(ConfigError, match="AGENT_API_TOKEN: must not contain spaces"):
        s.with_token("has space")


# --- .env parsing -----------------------------------------------------------------------------

ENV_OK = [
    ("plain", "A=1", {"A": "1"}),
    ("export_prefix", "export A=1", {"A": "1"}),
    ("spaces_around", "  A = hello world  ", {"A": "hello world"}),
    ("comment_lines", "# c\n\n   # indented\nA=1", {"A": "1"}),
    ("inline_comment", "A=1 # one", {"A": "1"}),
    ("hash_without_space_is_value", "A=a#b", {"A": "a#b"}),
    ("single_quotes_literal", r"A='x \n # y'", {"A": r"x \n # y"}),
    ("double_quotes_escapes", r'A="x\ty\"z\\"', {"A": 'x\ty"z\\'}),
    ("quoted_then_comment", "A='v' # c", {"A": "v"}),
    ("empty", "A=", {"A": ""}),
    ("empty_quotes", 'A=""', {"A": ""}),
    ("last_wins", "A=1\nA=2", {"A": "2"}),
    ("equals_in_value", "A=b=c", {"A": "b=c"}),
    ("crlf", "A=1\r\nB=2\r\n", {"A": "1", "B": "2"}),
]


@pytest.mark.parametrize(("text", "parsed"), [r[1:] for r in ENV_OK], ids=[r[0] for r in ENV_OK])
def test_env_parse(text: str, parsed: dict[str, str]) -> None:
    assert parse_env_text(text) == parsed


ENV_BAD = [
    ("no_equals", "A=1\nJUST_A_WORD", "f.env:2: expected KEY=VALUE, got 'JUST_A_WORD'"),
    ("bad_key", "1A=x", "f.env:1: expected KEY=VALUE, got '1A=x'"),
    ("unterminated", 'A="x', 'f.env:1: A: unterminated " quote (values cannot span lines)'),
    ("text_after_quote", "A='x' y", "f.env:1: A: unexpected text after the closing quote: 'y'"),
    ("bad_escape", r'A="\q"', "f.env:1: A: unknown escape '\\q' in a double-quoted value"),
    ("stray_quote", "A=it's", "f.env:1: A: quotes must enclose the whole value, got \"it's\""),
    ("space_in_key", "MY KEY=1", "f.env:1: expected KEY=VALUE, got 'MY KEY=1'"),
    ("export_without_key", "export", "f.env:1: expected KEY=VALUE, got 'export'"),
]


@pytest.mark.parametrize(("text", "message"), [r[1:] for r in ENV_BAD],
                         ids=[r[0] for r in ENV_BAD])
def test_env_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_env_text(text, source="f.env")
    assert str(exc.value) == message


def test_env_file_bom_and_encoding(tmp_path: Path) -> None:
    f = tmp_path / "x.env"
    f.write_bytes("\ufeffA=é\n".encode())
    assert parse_env_file(f) == {"A": "é"}
    f.write_bytes(b"A=\xff\n")
    with pytest.raises(ConfigError, match=r"x\.env: not UTF-8 text \(byte 2\)"):
        parse_env_file(f)


def test_malformed_env_file_fails_load(tmp_path: Path) -> None:
    f = tmp_path / ".env"
    f.write_text("DOCKER_IMAGE=x\nTARGET_PORT 80\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(environ={}, env_file=f)
    assert exc.value.variable == f"{f}:2"


# --- no traceback for any input -----------------------------------------------------------

_NAMES = [s.name for s in describe()]


@hsettings(max_examples=300, deadline=None)
@given(name=st.sampled_from(_NAMES), value=st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", " ", "0", "-1", "1e999", "nan", "inf", "true", "1.5", "99999999999",
                     "redis://", "unix://", "tcp://", "://", "[", "256", "*", ","]),
))
def test_any_string_is_a_value_or_a_config_error(name: str, value: str) -> None:
    try:
        load({name: value})
    except ConfigError as exc:
        assert exc.variable and exc.reason


@hsettings(max_examples=200, deadline=None)
@given(name=st.sampled_from(_NAMES), value=st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
))
def test_any_typed_override_is_a_value_or_a_config_error(name: str, value: object) -> None:
    try:
        load(overrides={name: value})
    except ConfigError as exc:
        assert exc.variable and exc.reason


@hsettings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_any_env_text_parses_or_raises_config_error(text: str) -> None:
    try:
        parse_env_text(text)
    except ConfigError as exc:
        assert exc.variable.startswith("<.env>:")


# --- the documented sample ------------------------------------------------------------------

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"


def test_env_example_documents_every_setting_with_its_default() -> None:
    text = ENV_EXAMPLE.read_text()
    lines = text.splitlines()
    for spec in describe():
        matches = [i for i, line in enumerate(lines)
                   if line.removeprefix("# ").startswith(f"{spec.name}=")]
        assert len(matches) == 1, spec.name
        assert lines[matches[0] - 1].startswith("# "), f"{spec.name} lacks a comment"
    # Uncommenting every line gives exactly the defaults.
    uncommented = "\n".join(
        line.removeprefix("# ") if re.match(r"# [A-Z_]+=", line) else line for line in lines
    )
    values = parse_env_text(uncommented, source=".env.example")
    assert set(values) == {s.name for s in describe()}
    example = load_settings(environ=values, env_file=None)
    assert example == load({"DOCKER_IMAGE": "deployment-agent-demo:latest"})
    # As shipped, only the required settings are active.
    assert set(parse_env_file(ENV_EXAMPLE)) == {"DOCKER_IMAGE", "TARGET_PORT"}
