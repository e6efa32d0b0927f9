"""The Docker adapter of the container-engine seam (`agent.core.ports.Engine`).

`Engine` is what the runtime needs from an engine — list, create, inspect and remove
*owned* workers, check that the engine answers — so a Swarm adapter can later sit
beside `DockerEngine` without touching the scorer or the policy. `read_stats` is
also the Sampler's `agent.core.ports.StatsSource`.

`DockerEngine` drives docker-py, which is synchronous: every call runs in a worker
thread (`trio.to_thread.run_sync`) under a `trio.CapacityLimiter`, and every call
is bounded by the client's HTTP timeout, so an unreachable engine fails fast with
`EngineError` instead of hanging the loop. Read-only calls (list, inspect, ping,
stats) may be abandoned by a cancelled caller; create and remove always run to
their end, so a cancelled tick cannot leave a half-made container untracked.

Listing is served from a cache while the engine's event stream is followed
(`watch`, run by the agent in its nursery; `agent.adapters.engine_watch`): the
view of the owned containers that the stream, the resyncs and our own create
and remove calls keep current (`agent.adapters.engine_view`). Without a live
stream — `watch` not running, the stream broken, the engine down — `list_owned`
lists and inspects on the engine as it always did, and fails when the engine
does.

Ownership is the safety rule (SPEC §1): a container belongs to this agent only if
it carries *both* ``io.deployment-agent.owner=deployment-agent`` and
``io.deployment-agent.app=<APP_IDENTIFIER>``. Listing filters on both labels on the
engine side; `remove` and `inspect` read the labels first and raise `NotOwnedError`
for anything else — a container of the same image included — and then act on the
immutable id they checked, never on a name that could be re-used meanwhile.

Errors are translated once, here (`_translate`)::

    docker.errors.NotFound                       -> ContainerNotFound
    docker.errors.ImageNotFound                  -> EngineError (nothing is pulled)
    docker.errors.APIError / DockerException     -> EngineError
    requests / urllib3 / OSError (unreachable)   -> EngineUnreachable (an EngineError)
"""
from __future__ import annotations

import contextlib
import re
import secrets
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import docker
import docker.constants
import docker.errors
import docker.transport.unixconn
import docker.utils
import requests.exceptions
import trio
import urllib3.exceptions

from agent.adapters.engine_view import OwnedView
from agent.adapters.engine_watch import EventWatch
from agent.core.errors import ContainerNotFound, EngineError, EngineUnreachable, NotOwnedError
from agent.core.ports import Engine, StatsSource
from agent.core.redact import redact_url
from agent.core.timestamps import parse_engine_time
from agent.core.records import ContainerInfo

__all__ = [
    "APP_LABEL",
    "OWNER_LABEL",
    "OWNER_VALUE",
    "DockerEngine",
    "container_name_prefix",
    "LazyClient",
    "open_api_client",
    "parse_engine_time",
]

OWNER_LABEL = "io.deployment-agent.owner"
APP_LABEL = "io.deployment-agent.app"
OWNER_VALUE = "deployment-agent"

_T = TypeVar("_T")
_DEFAULT_TIMEOUT = 10.0  # seconds, per HTTP request to the engine
_NEGOTIATE_TIMEOUT = 3.0  # seconds, for the first (API version) request
_DEFAULT_THREADS = 8
_NAME_INVALID = re.compile(r"[^a-z0-9_.-]+")


def container_name_prefix(app_identifier: str) -> str:
    """The lowercase, engine-valid name prefix of an application's workers.

    Docker names match ``[a-zA-Z0-9][a-zA-Z0-9_.-]+``; other characters become
    ``-``. ``RUSTYBALANCER`` gives ``rustybalancer``.
    """
    prefix = _NAME_INVALID.sub("-", app_identifier.lower()).strip("-_.")
    return prefix or "worker"


class DockerEngine:
    """`Engine` over one Docker engine, through docker-py's low-level `APIClient`.

    Workers are created from `image` with both labels, ``init=True`` (busybox as
    PID 1 ignores SIGTERM; docker-init forwards it, so a stop takes milliseconds
    instead of `stop_timeout`), `target_port` published on `bind_address` with an
    engine-chosen host port, the name ``<app>-<8 hex>``, and optional ``--cpus`` /
    ``--memory`` limits. The client connects lazily on the first call and
    negotiates the API version with the engine.

    `timeout` bounds each HTTP request to the engine (a stop adds `stop_timeout`).
    `limiter` bounds the threads this adapter uses at once; pass the runtime's
    shared limiter, or leave it to make a private one.

    When the engine is local and a container's network gateway is an address of
    this host, `ContainerInfo.direct` is the container's own address and
    `target_port` on that network: the availability probe connects there rather
    than through the published port, whose userland proxy (docker-proxy)
    accepts every connection itself and so costs a proxy hop without telling
    whether the worker answers (`agent.adapters.sampler`).
    """

    def __init__(
        self,
        *,
        base_url: str,
        app_identifier: str,
        image: str,
        target_port: int,
        limiter: trio.CapacityLimiter | None = None,
        cpus: float | None = None,
        mem_limit: str | None = None,
        bind_address: str = "127.0.0.1",
        stop_timeout: int = 5,
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> None:
        if not app_identifier:
            raise ValueError("app_identifier must not be empty")
        if not 0 < target_port < 65536:
            raise ValueError(f"target_port must be in 1..65535, got {target_port}")
        if cpus is not None and not cpus > 0:
            raise ValueError(f"cpus must be > 0, got {cpus}")
        if stop_timeout < 0:
            raise ValueError(f"stop_timeout must be >= 0, got {stop_timeout}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, got {timeout}")
        if mem_limit is not None:
            try:
                docker.utils.parse_bytes(mem_limit)
            except docker.errors.DockerException as exc:
                raise ValueError(f"mem_limit {mem_limit!r} is not a size: {exc}") from None
        self.base_url = base_url
        self.app_identifier = app_identifier
        self.image = image
        self.target_port = target_port
        self.cpus = cpus
        self.mem_limit = mem_limit
        self.bind_address = bind_address
        self.stop_timeout = stop_timeout
        self.timeout = timeout
        self._limiter = limiter if limiter is not None else trio.CapacityLimiter(
            _DEFAULT_THREADS
        )
        self._label_filter = [
            f"{OWNER_LABEL}={OWNER_VALUE}",
            f"{APP_LABEL}={app_identifier}",
        ]
        self._name_prefix = container_name_prefix(app_identifier)
        self.view = OwnedView(self.owns)
        self.watcher = EventWatch(self)
        self._routes: dict[str, bool] = {}  # gateway address -> a local address here
        # every limiter slot, the event stream and a resync at once
        self._client = LazyClient(timeout=timeout,
                                  max_pool_size=max(10, int(self._limiter.total_tokens) + 2))

    # -- facts about the engine ------------------------------------------------

    @property
    def labels(self) -> dict[str, str]:
        """The labels every worker of this application carries."""
        return {OWNER_LABEL: OWNER_VALUE, APP_LABEL: self.app_identifier}

    @property
    def is_local(self) -> bool:
        """True when the engine runs on this host (unix socket or a loopback TCP
        address), so container pids and cgroup files are readable here."""
        url = self.base_url
        if url.startswith(("unix://", "http+unix://", "npipe://")) or url.startswith("/"):
            return True
        host = urlsplit(url if "://" in url else f"tcp://{url}").hostname or ""
        return host in ("localhost", "127.0.0.1", "::1")

    def owns(self, labels: Mapping[str, str] | None) -> bool:
        """Whether a container with these labels belongs to this agent and app."""
        labels = labels or {}
        return (
            labels.get(OWNER_LABEL) == OWNER_VALUE
            and labels.get(APP_LABEL) == self.app_identifier
        )

    # -- Engine ----------------------------------------------------------------

    @property
    def label_filter(self) -> list[str]:
        """The engine-side filter: both labels (the engine ANDs them)."""
        return list(self._label_filter)

    async def list_owned(self) -> list[ContainerInfo]:
        """The view while the event stream is followed (no engine call), else a
        listing with an inspect of every running container."""
        if self.view.live:
            await trio.lowlevel.checkpoint()
            return self.view.listing()
        return await self._run(self._list_owned_sync, "listing containers", abandon=True)

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Follow the event stream until cancelled (`agent.adapters.engine_watch`)."""
        await self.watcher.run(task_status=task_status)

    async def create(self) -> ContainerInfo:
        return await self._run(self._create_sync, f"creating a {self.image} container")

    async def remove(self, name_or_id: str) -> None:
        await self._run(lambda: self._remove_sync(name_or_id), f"removing {name_or_id}")

    async def inspect(self, name: str) -> ContainerInfo:
        return await self._run(
            lambda: self._inspect_owned_sync(name), f"inspecting {name}", abandon=True
        )

    async def ping(self) -> None:
        await self._run(lambda: self._api().ping(), "ping", abandon=True)

    async def stats(self, container_id: str) -> dict[str, Any]:
        """One-shot engine stats of a container (the raw stats-API document)."""
        return await self._run(
            lambda: self.read_stats(container_id), f"stats of {container_id}", abandon=True
        )

    def read_stats(self, container_id: str) -> dict[str, Any]:
        """Blocking one-shot stats of `container_id`, errors translated.

        For callers that run it in their own threads (the `Sampler`'s stats-API
        fallback). The daemon answers on its 1 s sampling clock, so expect up to
        ~1 s per call; calls for several containers overlap.
        """
        with _translate(f"stats of {container_id}", self.base_url):
            result: dict[str, Any] = self._api().stats(
                container_id, stream=False, one_shot=True
            )
            return result

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        """Synchronous `aclose` (closing the pool does not block)."""
        self._client.close()

    async def __aenter__(self) -> DockerEngine:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"DockerEngine(base_url={self.base_url!r}, "
            f"app_identifier={self.app_identifier!r}, image={self.image!r})"
        )

    # -- plumbing ----------------------------------------------------------------

    async def _run(self, fn: Callable[[], _T], what: str, *, abandon: bool = False) -> _T:
        with _translate(what, self.base_url):
            return await trio.to_thread.run_sync(
                fn, limiter=self._limiter, abandon_on_cancel=abandon
            )

    async def run_blocking(self, fn: Callable[[], _T], what: str) -> _T:
        """A read-only blocking call in a worker thread, errors translated (the watcher's)."""
        return await self._run(fn, what, abandon=True)

    def translating(self, what: str) -> contextlib.AbstractContextManager[None]:
        """The error translation of this adapter, for a call made elsewhere."""
        return _translate(what, self.base_url)

    def api(self) -> docker.APIClient:
        """The docker-py client (blocking; for `EventWatch`)."""
        return self._api()

    def _api(self) -> docker.APIClient:
        return self._client.get(self.base_url)

    # -- blocking bodies (run in worker threads) -----------------------------------

    def list_rows_sync(self) -> list[dict[str, Any]]:
        """The engine's listing rows of our containers, all states (filtered by
        both labels on the engine's side; callers check `owns` again)."""
        rows: list[dict[str, Any]] = self._api().containers(
            all=True, filters={"label": self._label_filter}
        )
        return rows

    def _list_owned_sync(self) -> list[ContainerInfo]:
        api = self._api()
        result: list[ContainerInfo] = []
        for row in self.list_rows_sync():
            if not self.owns(row.get("Labels")):  # belt and braces over the filter
                continue
            if row.get("State") == "running":
                # The listing has no pid; inspect gives it (and the exact port).
                try:
                    result.append(self._info(api.inspect_container(row["Id"])))
                except docker.errors.NotFound:
                    continue  # vanished between the two calls
            else:
                result.append(_info_from_listing(row))
        result.sort(key=lambda info: (info.created, info.name))
        return result

    def refresh_sync(self, container_id: str) -> None:
        """Inspect one container into the view (dropped if it is gone)."""
        ticket = self.view.ticket()
        try:
            data = self._api().inspect_container(container_id)
        except docker.errors.NotFound:
            self.view.drop(container_id)
            return
        self.view.put(self._info(data), ticket)

    def info_from_listing(self, row: Mapping[str, Any]) -> ContainerInfo:
        return _info_from_listing(row)

    def _info(self, data: Mapping[str, Any]) -> ContainerInfo:
        """`ContainerInfo` of an inspect document, with the direct probe address."""
        return _info_from_inspect(
            data, direct_port=self.target_port if self.is_local else None, routes=self._routes_here
        )

    def _routes_here(self, gateway: str) -> bool:
        """Whether `gateway` is an address of this host's network namespace, i.e.
        the container's bridge is attached here and its address is reachable."""
        known = self._routes.get(gateway)
        if known is None:
            family = socket.AF_INET6 if ":" in gateway else socket.AF_INET
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as probe:
                    probe.bind((gateway, 0))
                known = True
            except OSError:
                known = False
            self._routes[gateway] = known
        return known

    def _create_sync(self) -> ContainerInfo:
        api = self._api()
        host_config = api.create_host_config(
            port_bindings={self.target_port: (self.bind_address, None)},
            init=True,
            nano_cpus=round(self.cpus * 1e9) if self.cpus else None,
            mem_limit=self.mem_limit,
        )
        for attempt in range(3):
            name = f"{self._name_prefix}-{secrets.token_hex(4)}"
            try:
                created = api.create_container(
                    self.image,
                    name=name,
                    labels=self.labels,
                    ports=[self.target_port],
                    host_config=host_config,
                    detach=True,
                )
                break
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and attempt < 2:  # name taken: draw again
                    continue
                raise
        container_id = created["Id"]
        try:
            api.start(container_id)
            ticket = self.view.ticket()  # after the start: newer than any "created" seen
            info = self._info(api.inspect_container(container_id))
            self.view.put(info, ticket)
            return info
        except BaseException:
            # Never leave a created-but-not-started worker behind.
            with contextlib.suppress(Exception):
                api.remove_container(container_id, v=True, force=True)
            raise

    def _inspect_owned_sync(self, name_or_id: str) -> ContainerInfo:
        data = self._api().inspect_container(name_or_id)
        info = self._info(data)
        if not self.owns(info.labels):
            raise NotOwnedError(
                f"container {info.name} ({info.id[:12]}) lacks the labels "
                f"{OWNER_LABEL}={OWNER_VALUE} and {APP_LABEL}={self.app_identifier}; "
                "refusing to touch it"
            )
        return info

    def _remove_sync(self, name_or_id: str) -> None:
        api = self._api()
        try:
            info = self._inspect_owned_sync(name_or_id)
        except docker.errors.NotFound:
            return  # already gone
        try:
            if info.status in ("running", "restarting", "paused"):
                api.stop(info.id, timeout=self.stop_timeout)
            api.remove_container(info.id, v=True, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            # 409 "removal of container ... is already in progress"
            if not (exc.status_code == 409 and "already in progress" in str(exc.explanation)):
                raise
        self.view.drop(info.id)


# -- the docker-py client ------------------------------------------------------------


class LazyClient:
    """An adapter's one docker-py client: made on first use, at the address the
    adapter has then (that asks the engine for its API version, so not in a
    constructor), shared by its worker threads, closed once; after `close` every
    use is an `EngineError`."""

    def __init__(self, *, timeout: float, max_pool_size: int) -> None:
        self.timeout, self.max_pool_size = timeout, max_pool_size
        self._lock = threading.Lock()
        self._client: docker.APIClient | None = None
        self._closed = False

    def get(self, base_url: str) -> docker.APIClient:
        with self._lock:
            if self._closed:
                raise EngineError("the engine adapter is closed")
            if self._client is None:
                self._client = open_api_client(base_url, timeout=self.timeout,
                                               max_pool_size=self.max_pool_size)
            return self._client

    def close(self) -> None:
        with self._lock:
            self._closed = True
            client, self._client = self._client, None
        if client is not None:
            client.close()


def open_api_client(
    base_url: str, *, timeout: float = _DEFAULT_TIMEOUT, max_pool_size: int = 10
) -> docker.APIClient:
    """A low-level docker-py client speaking the highest API version both sides know.

    Blocking (one ``/version`` request). docker-py's default API version (1.45 in
    docker-py 7.1) is newer than older engines accept (dockerd 20.10 speaks 1.41),
    hence the negotiation; ``version="auto"`` would do it too, but through a
    connection that leaks its socket when the engine is down (see
    `_ClosingUnixHTTPAdapter`). Raises docker-py / requests errors (callers
    translate them).
    """
    # The version request is tiny: give up on it sooner than on real work.
    probe_timeout = min(timeout, _NEGOTIATE_TIMEOUT)
    probe = docker.APIClient(
        base_url=base_url,
        version=docker.constants.MINIMUM_DOCKER_API_VERSION,
        timeout=probe_timeout,
    )
    try:
        _harden(probe, base_url, probe_timeout, 1)
        server = str(probe.version(api_version=False)["ApiVersion"])
    finally:
        probe.close()
    version = docker.constants.DEFAULT_DOCKER_API_VERSION
    if docker.utils.version_lt(server, version):
        version = server
    client = docker.APIClient(
        base_url=base_url, version=version, timeout=timeout, max_pool_size=max_pool_size
    )
    _harden(client, base_url, timeout, max_pool_size)
    return client


class _ClosingUnixConnection(docker.transport.unixconn.UnixHTTPConnection):
    """docker-py's unix-socket connection, closing its socket when connect() fails.

    Upstream leaves it open for the garbage collector (a ResourceWarning at every
    failed attempt while the engine is down; docker/docker-py PR #3356).
    """

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_socket)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class _ClosingUnixConnectionPool(docker.transport.unixconn.UnixHTTPConnectionPool):
    def _new_conn(self) -> _ClosingUnixConnection:
        return _ClosingUnixConnection(self.base_url, self.socket_path, self.timeout)


class _ClosingUnixHTTPAdapter(docker.transport.unixconn.UnixHTTPAdapter):
    """One connection pool for the socket.

    Upstream keys its pools by the request's whole URL, path included, and keeps
    25 of them: with more containers than that, every inspect (or stats call)
    of a container missed, opened a new connection to the engine and closed
    another pool's — a connect, an accept and a close per request, on both
    sides. The pool's URL plays no part in the request (the adapter sends the
    path over the socket), so one pool serves them all.
    """

    _POOL_KEY = "unix-socket"

    def get_connection(self, url: Any, proxies: Any = None) -> Any:
        with self.pools.lock:
            pool = self.pools.get(self._POOL_KEY)
            if pool:
                return pool
            pool = _ClosingUnixConnectionPool(
                url, self.socket_path, self.timeout, maxsize=self.max_pool_size
            )
            self.pools[self._POOL_KEY] = pool
        return pool


def _harden(client: docker.APIClient, base_url: str, timeout: float, max_pool_size: int) -> None:
    """Swap in the socket-closing adapter for unix-socket engines."""
    url = docker.utils.parse_host(base_url)
    if url.startswith("http+unix://"):
        client.mount(
            "http+docker://",
            _ClosingUnixHTTPAdapter(url, timeout, max_pool_size=max_pool_size),
        )


# -- translation of library errors -------------------------------------------------


@contextlib.contextmanager
def _translate(what: str, base_url: str) -> Iterator[None]:
    """Map docker-py / requests / OS errors to the project's exceptions (the
    engine's address without a password, should it carry one)."""
    base_url = redact_url(base_url)
    try:
        yield
    except (EngineError, NotOwnedError):
        raise
    except docker.errors.ImageNotFound as exc:
        raise EngineError(
            f"{what}: image not found on the engine at {base_url} "
            f"(nothing is pulled; build or load it first): {_explain(exc)}"
        ) from exc
    except docker.errors.NotFound as exc:
        raise ContainerNotFound(f"{what}: no such container ({_explain(exc)})") from exc
    except docker.errors.APIError as exc:
        raise EngineError(f"{what}: the engine at {base_url} refused: {_explain(exc)}") from exc
    except (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    ) as exc:
        raise EngineUnreachable(
            f"{what}: Docker engine unreachable or failing at {base_url}: {exc}"
        ) from exc


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


# -- engine documents -> ContainerInfo ---------------------------------------------------


def _info_from_listing(row: Mapping[str, Any]) -> ContainerInfo:
    names = row.get("Names") or []
    name = names[0].lstrip("/") if names else row["Id"][:12]
    host_port, address = None, "127.0.0.1"
    for port in row.get("Ports") or []:
        if port.get("PublicPort"):
            host_port = int(port["PublicPort"])
            address = _reachable_address(port.get("IP", ""))
            break
    return ContainerInfo(
        name=name,
        id=row["Id"],
        image=row.get("Image", ""),
        status=row.get("State", ""),
        created=float(row.get("Created", 0)),
        host_port=host_port,
        address=address,
        pid=None,
        labels=dict(row.get("Labels") or {}),
    )


def _info_from_inspect(
    data: Mapping[str, Any],
    *,
    direct_port: int | None = None,
    routes: Callable[[str], bool] | None = None,
) -> ContainerInfo:
    """`direct` is set when `direct_port` is given and the container has an
    address on a network whose gateway `routes` says is local."""
    state = data.get("State") or {}
    config = data.get("Config") or {}
    host_port, address = None, "127.0.0.1"
    ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
    for bindings in ports.values():
        for binding in bindings or []:
            if binding.get("HostPort"):
                host_port = int(binding["HostPort"])
                address = _reachable_address(binding.get("HostIp", ""))
                break
        if host_port is not None:
            break
    pid = state.get("Pid") or None
    cpus, memory = _limits(data.get("HostConfig") or {})
    running = bool(state.get("Running"))
    direct = None
    if direct_port is not None and routes is not None and running:
        networks = (data.get("NetworkSettings") or {}).get("Networks") or {}
        for net_name in sorted(networks):
            net = networks[net_name] or {}
            ip, gateway = net.get("IPAddress"), net.get("Gateway")
            if ip and gateway and routes(gateway):
                direct = (str(ip), direct_port)
                break
    return ContainerInfo(
        name=str(data.get("Name", "")).lstrip("/"),
        id=data["Id"],
        image=config.get("Image", data.get("Image", "")),
        status=state.get("Status", ""),
        created=parse_engine_time(str(data.get("Created", ""))),
        host_port=host_port,
        address=address,
        pid=int(pid) if pid and running else None,
        labels=dict(config.get("Labels") or {}),
        cpus=cpus,
        memory=memory,
        direct=direct,
    )


def _limits(host: Mapping[str, Any]) -> tuple[float | None, int | None]:
    """The CPU limit in cores (``--cpus``, or a CFS quota) and the memory limit in
    bytes of an inspected container; None where it has none."""
    cpus: float | None = None
    if host.get("NanoCpus"):
        cpus = int(host["NanoCpus"]) / 1e9
    elif host.get("CpuQuota") and int(host["CpuQuota"]) > 0 and host.get("CpuPeriod"):
        cpus = int(host["CpuQuota"]) / int(host["CpuPeriod"])
    memory = int(host["Memory"]) if host.get("Memory") else None
    return cpus, memory


def _reachable_address(host_ip: str) -> str:
    """Where to connect to a port published on `host_ip` (wildcards -> loopback)."""
    if host_ip in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host_ip == "::":
        return "::1"
    return host_ip


if TYPE_CHECKING:  # mypy holds the adapter to its ports

    def _implements(engine: DockerEngine) -> tuple[Engine, StatsSource]:
        return engine, engine.read_stats
