"""`deployment-agent` command line.

    deployment-agent run [--env-file F] [--config F.toml] [--max-containers N ...]
    deployment-agent collector [same options]     (ENGINE=swarm: one per node)
    deployment-agent check-config [same options]
    deployment-agent build-demo [--tag T]
    deployment-agent status | watch | scale N | drain NAME | events   (against a running agent)

Every setting of SPEC §2 has a flag (``MAX_CONTAINERS`` → ``--max-containers``);
flags win over the TOML file, which wins over the environment and ``.env``. A bad
value exits with code 2 and one line naming the variable — never a traceback.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from agent.adapters.config_sources import DEFAULT_ENV_FILE, load_settings
from agent.core.redact import redact_url
from agent.core.settings import Settings, describe
from agent.core.errors import AgentError, ConfigError

__all__ = ["main", "build_parser"]

EXIT_CONFIG = 2


def _add_settings_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (each also read from the environment and .env)")
    group.add_argument("--env-file", default=None, metavar="PATH",
                       help="dotenv file to read (default: ./.env when present)")
    group.add_argument("--config", default=None, metavar="PATH", help="TOML settings file")
    for spec in describe():
        kwargs: dict[str, Any] = {"dest": f"setting_{spec.name}", "default": None,
                                  "help": f"{spec.help} [{spec.name}, default {spec.default_text}]"}
        if spec.kind == "bool":
            kwargs["metavar"] = "BOOL"
        else:
            kwargs["metavar"] = spec.kind.upper()
        group.add_argument(spec.flag, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deployment-agent",
        description="Keeps a pool of Docker containers healthy and right-sized.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the agent (HTTP API, WebSocket queue, dashboard)")
    _add_settings_options(run)
    run.add_argument("--demo", action="store_true",
                     help="build the local demo worker image and use it unless DOCKER_IMAGE is set; "
                     "unless set elsewhere, BALANCER=haproxy, CONTAINER_CPUS=0.5, "
                     "CONTAINER_MEMORY=64m")

    collector = sub.add_parser(
        "collector", help="ENGINE=swarm: sample this node's workers and post them to Redis "
        "(run as a global service)")
    _add_settings_options(collector)

    check = sub.add_parser("check-config", help="print the effective settings and where each came from")
    _add_settings_options(check)
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument("--demo", action="store_true", help=argparse.SUPPRESS)

    demo = sub.add_parser("build-demo", help="build the demo worker image from the local busybox")
    demo.add_argument("--tag", default=None, help="image tag (default deployment-agent-demo:latest)")
    demo.add_argument("--docker-host", default=None, help="engine address (default DOCKER_HOST)")

    from agent.interfaces.cli_client import add_client_commands

    add_client_commands(sub)
    return parser


def _settings_from(
    args: argparse.Namespace, placeholders: dict[str, str] | None = None
) -> Settings:
    """The settings of this run. `placeholders` give a value to settings the
    command does not use but the table requires, unless the environment has one
    (they do beat a `.env` entry: the command ignores either)."""
    overrides = {
        key.removeprefix("setting_"): value
        for key, value in vars(args).items()
        if key.startswith("setting_") and value is not None
    }
    if getattr(args, "demo", False):
        from agent.adapters.demo_image import DEMO_IMAGE, DEMO_PORT

        if "DOCKER_IMAGE" not in overrides and not os.environ.get("DOCKER_IMAGE"):
            overrides["DOCKER_IMAGE"] = DEMO_IMAGE
            overrides.setdefault("TARGET_PORT", DEMO_PORT)
    environ = {**(placeholders or {}), **os.environ}
    settings = load_settings(
        environ=environ,
        env_file=args.env_file if args.env_file is not None else DEFAULT_ENV_FILE,
        toml_file=args.config,
        overrides=overrides,
    )
    if getattr(args, "demo", False):
        # the demo's own defaults, for what no source set: the balancer on, and
        # bounded workers (scaling out adds capacity only when each is bounded)
        unset = {k: v for k, v in DEMO_DEFAULTS.items() if settings.sources.get(k) == "default"}
        if unset:
            settings = load_settings(
                environ=environ,
                env_file=args.env_file if args.env_file is not None else DEFAULT_ENV_FILE,
                toml_file=args.config,
                overrides={**overrides, **unset},
            )
    return settings


#: What `run --demo` (scripts/run) sets unless a source sets it.
DEMO_DEFAULTS: dict[str, object] = {
    "BALANCER": "haproxy",
    "CONTAINER_CPUS": 0.5,
    "CONTAINER_MEMORY": "64m",
}


def _check_config(args: argparse.Namespace) -> int:
    settings = _settings_from(args)
    rows = settings.explain(redact=True)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['value']!s:<28} {r['source']}")
    return 0


def _build_demo(args: argparse.Namespace) -> int:
    import os

    from agent.adapters.demo_image import DEMO_IMAGE, ensure_demo_image

    host = args.docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    tag = ensure_demo_image(host, args.tag or DEMO_IMAGE)
    print(tag)
    return 0


def _run(args: argparse.Namespace) -> int:
    import trio

    from agent.service.wiring import Running, run_service

    settings = _settings_from(args)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.demo:
        from agent.adapters.demo_image import DEMO_IMAGE, ensure_demo_image

        if settings.docker_image == DEMO_IMAGE:
            print(f"deployment-agent: building {DEMO_IMAGE} …", file=sys.stderr, flush=True)
            ensure_demo_image(settings.docker_host, DEMO_IMAGE)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(run_service, settings)
            host = settings.bind_host
            print(
                f"deployment-agent: managing {settings.app_identifier} "
                f"({settings.docker_image}, port {settings.target_port})\n"
                f"  dashboard  http://{host}:{running.http_port}/\n"
                f"  queue      ws://{host}:{running.http_port}/ws  "
                + (f"(and ws://{host}:{running.ws_port}/ws)\n" if running.ws_port != running.http_port
                   else "(HOST_PORT_WS_DEPLOYMENT_AGENT is the same port)\n")
                + "  API token  "
                + (f"in {running.token_file}" if running.token_file else "AGENT_API_TOKEN")
                + f"\n  redis      {redact_url(running.redis_url)}\n"
                + _balancer_lines(settings, running.application)
                + f"  role       {_role_line(running)}\n"
                + "  Ctrl-C stops it.",
                file=sys.stderr,
                flush=True,
            )

    trio.run(main)
    return 0


def _balancer_lines(settings: Settings, application: str | None) -> str:
    """What the start-up banner says of the load balancer."""
    from agent.service.wiring import HAPROXY_DIR

    if settings.balancer_mode == "embedded":
        pid_file = settings.data_dir / HAPROXY_DIR / "haproxy.pid"
        return (f"  application {application}  (the embedded haproxy; it keeps serving "
                f"after the agent stops:\n              kill $(cat {pid_file}) to stop it)\n")
    if settings.balancer_mode == "external":
        return (f"  balancer   backend {settings.haproxy_backend} of the HAProxy at "
                f"{settings.haproxy_socket}\n")
    return ""


def _role_line(running: Any) -> str:
    """Leader, or — loudly — a follower naming who leads (issue 10: a second agent
    on a pool must never start silently)."""
    lease = running.agent.lease
    holder = lease.holder
    if lease.role == "leader" and holder is not None:
        return f"leader (agent {lease.me}, fencing token {holder.token})"
    if holder is not None:
        return (f"FOLLOWER: agent {holder.agent_id} at {holder.url or '(no URL)'} leads "
                f"this pool; this agent serves reads, answers changes with 409 and takes "
                f"over if the leader stops")
    return f"FOLLOWER: no leader lease could be read ({lease.error}); taking it once Redis answers"


def _collector(args: argparse.Namespace) -> int:
    import trio

    from agent.service.collector import run_collector

    # The collector reads workers, it never makes them: no image or port to know.
    settings = _settings_from(args, {"DOCKER_IMAGE": "unused-by-the-collector",
                                     "TARGET_PORT": "1"})
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    trio.run(run_collector, settings)
    return 0


def _unwrap(exc: BaseException) -> BaseException:
    """The first AgentError inside (nested) exception groups from Trio nurseries."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _unwrap(inner)
            if isinstance(found, AgentError):
                return found
    return exc


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        try:
            return _dispatch(args)
        except BaseExceptionGroup as group:
            inner = _unwrap(group)
            if inner is group:
                raise
            raise inner from None
    except ConfigError as exc:
        print(f"deployment-agent: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except AgentError as exc:
        print(f"deployment-agent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `deployment-agent check-config | head`
        return 0


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "run":
        return _run(args)
    if args.command == "collector":
        return _collector(args)
    if args.command == "check-config":
        return _check_config(args)
    if args.command == "build-demo":
        return _build_demo(args)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
