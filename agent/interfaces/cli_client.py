"""Client subcommands of `deployment-agent`, against a running agent.

    deployment-agent status              table of the queue, desired and running
    deployment-agent watch               the same, live over the WebSocket (Ctrl-C quits)
    deployment-agent scale N             run exactly N containers        (token)
    deployment-agent drain NAME          mark NAME SUNDOWN; removed once idle (token)
    deployment-agent events [--kind K] [--limit N]   the decision ledger, newest first

Every command takes ``--url`` (default ``$AGENT_URL`` or http://127.0.0.1:2550)
and ``--token`` (default ``$AGENT_API_TOKEN``). Failures are one line on stderr
and exit code 1: an unreachable agent, or the server's own error message for a
4xx/5xx answer. HTTP goes through the standard library (urllib), the live view
through `agent.client.QueueSubscriber` (Trio + trio-websocket).

`add_client_commands(subparsers)` registers them on the main parser; each sets
``handler=<function(args) -> exit code>``. `main()` runs them standalone.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import socket
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any, Callable, TextIO

from agent.core.errors import AgentError

__all__ = [
    "add_client_commands",
    "main",
    "ClientError",
    "DEFAULT_URL",
    "cmd_status",
    "cmd_watch",
    "cmd_scale",
    "cmd_drain",
    "cmd_events",
    "render_queue",
]

DEFAULT_URL = "http://127.0.0.1:2550"


class ClientError(AgentError):
    """A failure to report as one line (exit code 1)."""


# --------------------------------------------------------------------------- HTTP


def _opener(url: str) -> urllib.request.OpenerDirector:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    # An agent on this machine is never reached through a proxy.
    handlers = [urllib.request.ProxyHandler({})] if loopback else []
    return urllib.request.build_opener(*handlers)


def api_call(
    url: str,
    method: str,
    path: str,
    *,
    body: Any = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> Any:
    """One JSON request to the agent; raises ClientError with a one-line message."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ClientError(f"--url must start with http:// or https://, got {url!r}")
    headers = {"Accept": "application/json", "User-Agent": "deployment-agent-cli"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with _opener(base).open(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise ClientError(_http_error(exc)) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        raise ClientError(f"cannot reach the agent at {base}: {text}") from None
    except (TimeoutError, socket.timeout):
        raise ClientError(f"the agent at {base} did not answer within {timeout:g} s") from None
    except (ConnectionError, OSError) as exc:
        raise ClientError(f"cannot reach the agent at {base}: {exc.strerror or exc}") from None
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise ClientError(f"{base}{path} did not answer JSON; is --url an agent?") from None


def _http_error(exc: urllib.error.HTTPError) -> str:
    try:
        payload = json.loads(exc.read() or b"{}")
    except ValueError:
        payload = {}
    if isinstance(payload, dict) and payload.get("detail"):
        return f"{exc.code} {payload.get('error', '')}: {payload['detail']}".replace(" :", ":")
    return f"{exc.code} {exc.reason}"


def _need_token(args: argparse.Namespace) -> str:
    if not args.token:
        raise ClientError("this command needs the API token: pass --token or set AGENT_API_TOKEN")
    return str(args.token)


# --------------------------------------------------------------------------- rendering


def _num(value: Any, digits: int = 1) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def render_queue(queue: Sequence[Any], *, desired: Any = None, running: Any = None, tick: Any = None,
                 note: str = "") -> str:
    """The queue as a text table (items are dicts or `QueueItem`s)."""
    rows = []
    for i, item in enumerate(queue, 1):
        get = (item if isinstance(item, dict) else item.to_json()).get
        weight = get("weight")
        address = get("address")
        port = get("port")
        rows.append([
            str(i),
            str(get("dns_name")),
            str(get("utilization_category")),
            _num(get("score")),
            f"{weight * 100:.1f}%" if isinstance(weight, (int, float)) and math.isfinite(weight) else "–",
            f"{address}:{port}" if address and port else (address or "–"),
        ])
    head = []
    if tick is not None:
        head.append(f"tick {tick}")
    if desired is not None:
        head.append(f"desired {desired}")
    if running is not None:
        head.append(f"running {running}")
    if note:
        head.append(note)
    table = _table(["#", "CONTAINER", "CATEGORY", "SCORE", "WEIGHT", "ADDRESS"], rows, {0, 3, 4})
    if not rows:
        table += "\n(no container in the queue)"
    return (" · ".join(head) + "\n" if head else "") + table


def _clock(ts: Any) -> str:
    if isinstance(ts, (int, float)) and math.isfinite(ts):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return "–"


def render_events(events: Sequence[dict[str, Any]]) -> str:
    rows = []
    for e in events:
        raw = e.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        message = data.get("message") or json.dumps(data, separators=(",", ":"))
        rows.append([_clock(e.get("ts")), str(e.get("kind", "")), str(data.get("action", "")),
                     str(data.get("reason", "")), str(message)[:120]])
    if not rows:
        return "(no event)"
    return _table(["TIME", "KIND", "ACTION", "REASON", "MESSAGE"], rows, set())


def _decision_line(decision: Any) -> str:
    if not isinstance(decision, dict):
        return str(decision)
    action, reason = decision.get("action", "?"), decision.get("reason", "?")
    message = decision.get("message")
    return f"{action} ({reason})" + (f": {message}" if message else "")


# --------------------------------------------------------------------------- commands


def cmd_status(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    state = api_call(args.url, "GET", "/queue", timeout=args.timeout)
    if args.json:
        print(json.dumps(state, indent=2), file=out)
    else:
        print(render_queue(state.get("queue", []), desired=state.get("desired"),
                           running=state.get("running"), tick=state.get("tick")), file=out)
    return 0


def cmd_scale(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    decision = api_call(args.url, "POST", "/scale", body={"count": args.count},
                        token=_need_token(args), timeout=args.timeout)
    print(json.dumps(decision, indent=2) if args.json else _decision_line(decision), file=out)
    return 0


def cmd_drain(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    path = "/containers/" + urllib.parse.quote(args.name, safe="") + "/sundown"
    decision = api_call(args.url, "POST", path, token=_need_token(args), timeout=args.timeout)
    print(json.dumps(decision, indent=2) if args.json else _decision_line(decision), file=out)
    return 0


def cmd_events(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    query = {"limit": str(args.limit)}
    if args.kind:
        query["kind"] = args.kind
    if args.before:
        query["before"] = args.before
    page = api_call(args.url, "GET", "/events?" + urllib.parse.urlencode(query), timeout=args.timeout)
    if args.json:
        print(json.dumps(page, indent=2), file=out)
    else:
        print(render_events(page.get("events", [])), file=out)
        if page.get("next_before"):
            print(f"(older: --before {page['next_before']})", file=out)
    return 0


def cmd_watch(args: argparse.Namespace, out: TextIO | None = None) -> int:
    import trio

    out = out or sys.stdout
    try:
        return trio.run(_watch, args, out)
    except BaseException as exc:
        # Ctrl-C: a bare KeyboardInterrupt, or one grouped by a nursery
        if not isinstance(exc, KeyboardInterrupt):
            if not isinstance(exc, BaseExceptionGroup):
                raise
            _, rest = exc.split(KeyboardInterrupt)
            if rest is not None:
                raise
        if out.isatty():
            out.write("\x1b[?25h")  # cursor back
        print(file=out)
        return 0


async def _watch(args: argparse.Namespace, out: TextIO) -> int:
    import trio

    from agent.client import Backoff, QueueSubscriber

    tty = out.isatty()
    counts: dict[str, Any] = {}
    fetched = -math.inf

    def fetch_counts() -> dict[str, Any]:
        queue: dict[str, Any] = api_call(args.url, "GET", "/queue", timeout=min(args.timeout, 5.0))
        return queue

    async with QueueSubscriber(args.url, backoff=Backoff(initial=0.25, maximum=5.0)) as sub:
        cursor = sub.__aiter__()
        shown = 0
        while True:
            queue = None
            with trio.move_on_after(1.0):
                queue = await cursor.__anext__()
            now = trio.current_time()
            if queue is not None or now - fetched > 2.0:
                fetched = now
                try:
                    counts = await trio.to_thread.run_sync(fetch_counts, abandon_on_cancel=True)
                except ClientError:
                    counts = {}
            if queue is None and not tty:
                continue  # piped output: print on changes only
            if sub.connected:
                note = f"live {sub.url}"
            else:
                error = f": {sub.last_error}" if sub.last_error else ""
                note = f"reconnecting to {sub.url}{error}"
            text = render_queue(sub.latest or (), desired=counts.get("desired"),
                                running=counts.get("running"), tick=counts.get("tick"), note=note)
            if tty:
                out.write("\x1b[?25l\x1b[H\x1b[2J" + text + "\n\n(Ctrl-C to quit)\n")
            else:
                out.write(text + "\n\n")
            out.flush()
            if queue is not None:
                shown += 1
                if args.updates and shown >= args.updates:
                    if tty:
                        out.write("\x1b[?25h")
                    return 0


# --------------------------------------------------------------------------- wiring


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("agent")
    group.add_argument("--url", default=os.environ.get("AGENT_URL") or DEFAULT_URL,
                       help=f"the agent's HTTP URL (default $AGENT_URL or {DEFAULT_URL})")
    group.add_argument("--token", default=os.environ.get("AGENT_API_TOKEN") or None,
                       help="API token for scale/drain (default $AGENT_API_TOKEN)")
    group.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    return common


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {value}")
    return value


def _limit(text: str) -> int:
    value = _non_negative(text)
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError(f"must be between 1 and 500, got {value}")
    return value


def _guarded(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The handler the parser stores: ClientError → one line on stderr, exit 1."""

    def handler(args: argparse.Namespace) -> int:
        try:
            return int(command(args))
        except ClientError as exc:
            print(f"deployment-agent: {exc}", file=sys.stderr)
            return 1

    handler.__name__ = handler.__qualname__ = command.__name__
    handler.__doc__ = command.__doc__
    handler.command = command  # type: ignore[attr-defined]
    return handler


def add_client_commands(subparsers: Any) -> None:
    """Add status, watch, scale, drain and events to an argparse subparsers object."""
    common = _common()

    p = subparsers.add_parser("status", parents=[common], help="show the queue, desired and running counts")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(handler=_guarded(cmd_status))

    p = subparsers.add_parser("watch", parents=[common], help="live table of the queue (Ctrl-C quits)")
    p.add_argument("--updates", type=_non_negative, default=0, metavar="N",
                   help="exit after N queue updates (default: run until Ctrl-C)")
    p.set_defaults(handler=_guarded(cmd_watch))

    p = subparsers.add_parser("scale", parents=[common], help="run exactly N containers (needs the token)")
    p.add_argument("count", type=_non_negative, metavar="N")
    p.add_argument("--json", action="store_true", help="print the raw JSON decision")
    p.set_defaults(handler=_guarded(cmd_scale))

    p = subparsers.add_parser("drain", parents=[common],
                              help="mark a container SUNDOWN; it is removed once idle (needs the token)")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--json", action="store_true", help="print the raw JSON decision")
    p.set_defaults(handler=_guarded(cmd_drain))

    p = subparsers.add_parser("events", parents=[common], help="the decision ledger, newest first")
    p.add_argument("--kind", default=None, help="only events of this kind (e.g. scale_check, manual_scale, drain, config)")
    p.add_argument("--limit", type=_limit, default=20, metavar="N", help="how many (1–500, default 20)")
    p.add_argument("--before", default=None, metavar="ID", help="events older than this id (paging)")
    p.add_argument("--json", action="store_true", help="print the raw JSON page")
    p.set_defaults(handler=_guarded(cmd_events))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="deployment-agent", description="Talk to a running agent.")
    add_client_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
