"""The Docker Swarm adapter of the container-engine seam (`agent.core.ports.Engine`).

`SwarmEngine` talks to a swarm *manager* (``DOCKER_HOST``) and keeps each worker
as one service with one replica: the agent keeps choosing which worker goes
(least loaded first, `agent.core.policy.pick_sundown`), drains it, and removes
exactly that service — a replicated service scaled down would let Swarm pick the
task to kill. What goes into a service and how a service's tasks read back as a
worker's state are pure and live in `agent.core.swarm`; this module does the I/O.

Calls are docker-py's, in worker threads under a `trio.CapacityLimiter`, each
bounded by the client's HTTP timeout. A listing is three requests (services by
label, their tasks, the nodes). `create` makes the service and waits until its
task runs (the single-engine contract: it returns a running worker with its
address and port), at most `start_timeout`; a worker that does not start by then
(no node satisfies the constraints, every node's port is taken, the image is
missing there) is removed again and the error says why, from the task's status.
Remove runs to its end even when the caller is cancelled; a cancelled create goes
on in its thread (the service is labelled from the start, so it is adopted or
removed all the same).

Ownership (SPEC §1): a service belongs to this agent only if the *service*
carries ``io.deployment-agent.owner=deployment-agent`` and
``io.deployment-agent.app=<APP_IDENTIFIER>``; its container spec carries them too
(that is how each node's collector finds the worker's containers). `inspect` and
`remove` read the service's labels first and raise `NotOwnedError` for any other
service, then act on the immutable service ID they checked.

Several agents may run this adapter against one swarm (a leader and followers,
issue 9 §3): listing and inspecting are read-only; only the leader's runtime
calls `create` and `remove`.

Errors are translated once, here (`_translate`)::

    docker.errors.NotFound                       -> ContainerNotFound
    docker.errors.APIError / DockerException     -> EngineError
    requests / urllib3 / OSError (unreachable)   -> EngineUnreachable (an EngineError)
"""
from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import docker
import docker.errors
import requests.exceptions
import trio
import urllib3.exceptions

from agent.adapters.docker_engine import (
    APP_LABEL,
    OWNER_LABEL,
    OWNER_VALUE,
    container_name_prefix,
    LazyClient,
    open_api_client,
)
from agent.core.errors import ContainerNotFound, EngineError, EngineUnreachable, NotOwnedError
from agent.core.redact import redact_url
from agent.core.records import ContainerInfo
from agent.core.swarm import SwarmWorker, current_task, service_spec, worker_from

__all__ = ["SwarmEngine", "local_node_id"]

_T = TypeVar("_T")
_DEFAULT_TIMEOUT = 10.0  # seconds, per HTTP request to the manager
_DEFAULT_THREADS = 8
_POLL = 0.2  # seconds between two looks at a starting task


class SwarmEngine:
    """`Engine` over a Docker Swarm manager: one service per worker.

    `image` should be pinned (an image ID or a ``name@sha256:`` digest): every node
    resolves a tag on its own, against its registry, before each task start.
    `constraints` are Swarm placement constraints; Swarm spreads the workers over
    the nodes that satisfy them (fewest tasks first). `network`: an overlay network
    the workers join (dnsrr; their address is the task's on it), else host-mode
    published ports (the node's address and the port Swarm chose there).
    `start_timeout` bounds how long `create` waits for the task to run, and how
    long a listed worker may stay unstarted before it counts as dead ("created").
    """

    def __init__(
        self,
        *,
        base_url: str,
        app_identifier: str,
        image: str,
        target_port: int,
        limiter: trio.CapacityLimiter | None = None,
        constraints: Sequence[str] = (),
        network: str | None = None,
        cpus: float | None = None,
        memory_bytes: int | None = None,
        stop_timeout: float = 5.0,
        start_timeout: float = 60.0,
        timeout: float = _DEFAULT_TIMEOUT,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if not app_identifier:
            raise ValueError("app_identifier must not be empty")
        if not 0 < target_port < 65536:
            raise ValueError(f"target_port must be in 1..65535, got {target_port}")
        if not start_timeout > 0 or not timeout > 0 or stop_timeout < 0:
            raise ValueError("start_timeout and timeout must be > 0, stop_timeout >= 0")
        self.base_url = base_url
        self.app_identifier = app_identifier
        self.image = image
        self.target_port = target_port
        self.constraints = tuple(constraints)
        self.network = network
        self.cpus = cpus
        self.memory_bytes = memory_bytes
        self.stop_timeout = stop_timeout
        self.start_timeout = start_timeout
        self.timeout = timeout
        self._wall = wall_clock
        self._limiter = limiter if limiter is not None else trio.CapacityLimiter(
            _DEFAULT_THREADS
        )
        self._label_filter = [f"{OWNER_LABEL}={OWNER_VALUE}", f"{APP_LABEL}={app_identifier}"]
        self._name_prefix = container_name_prefix(app_identifier)
        self._client = LazyClient(timeout=timeout,
                                  max_pool_size=max(10, int(self._limiter.total_tokens)))

    @property
    def labels(self) -> dict[str, str]:
        """The labels every worker service (and its container spec) carries."""
        return {OWNER_LABEL: OWNER_VALUE, APP_LABEL: self.app_identifier}

    def owns(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return (labels.get(OWNER_LABEL) == OWNER_VALUE
                and labels.get(APP_LABEL) == self.app_identifier)

    # -- Engine ----------------------------------------------------------------

    async def list_owned(self) -> list[ContainerInfo]:
        return await self._run(self._list_owned_sync, "listing services", abandon=True)

    async def create(self) -> ContainerInfo:
        # Abandonable, unlike one engine's: the service carries our labels from its
        # first request, so a cancelled caller (shutdown) loses nothing — the thread
        # still removes a worker that does not start, the next listing adopts one
        # that does — and shutdown need not wait up to `start_timeout`.
        return await self._run(self._create_sync, f"creating a {self.image} service",
                               abandon=True)

    async def remove(self, name_or_id: str) -> None:
        await self._run(lambda: self._remove_sync(name_or_id), f"removing {name_or_id}")

    async def inspect(self, name: str) -> ContainerInfo:
        return await self._run(lambda: self._inspect_sync(name), f"inspecting {name}",
                               abandon=True)

    async def ping(self) -> None:
        """The manager answers and can schedule (EngineError otherwise)."""
        await self._run(self._ping_sync, "ping", abandon=True)

    async def watch(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """No change notifications here (yet): every `list_owned` asks the manager."""
        task_status.started()

    async def aclose(self) -> None:
        self.close()
        await trio.lowlevel.checkpoint()

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return (f"SwarmEngine(base_url={self.base_url!r}, "
                f"app_identifier={self.app_identifier!r}, image={self.image!r})")

    # -- plumbing ----------------------------------------------------------------

    async def _run(self, fn: Callable[[], _T], what: str, *, abandon: bool = False) -> _T:
        with _translate(what, self.base_url):
            return await trio.to_thread.run_sync(
                fn, limiter=self._limiter, abandon_on_cancel=abandon
            )

    def _api(self) -> docker.APIClient:
        return self._client.get(self.base_url)

    # -- blocking bodies (worker threads) ------------------------------------------

    def _ping_sync(self) -> None:
        swarm = self._api().info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            raise EngineError(
                f"the engine at {self.base_url} is not a swarm manager "
                f"(swarm state {swarm.get('LocalNodeState') or 'unknown'}); ENGINE=swarm "
                "needs DOCKER_HOST to point at a manager"
            )

    def _nodes(self, api: docker.APIClient) -> dict[str, Mapping[str, Any]]:
        return {str(n["ID"]): n for n in api.nodes()}

    def _worker(self, api: docker.APIClient, service: Mapping[str, Any],
                tasks: list[Mapping[str, Any]],
                nodes: Mapping[str, Mapping[str, Any]] | None = None) -> SwarmWorker:
        return worker_from(
            service, tasks, self._nodes(api) if nodes is None else nodes,
            target_port=self.target_port, network=self.network, now=self._wall(),
            start_timeout=self.start_timeout,
        )

    def _list_owned_sync(self) -> list[ContainerInfo]:
        api = self._api()
        services = [s for s in api.services(filters={"label": self._label_filter})
                    if self.owns((s.get("Spec") or {}).get("Labels"))]
        if not services:
            return []
        by_service: dict[str, list[Mapping[str, Any]]] = {str(s["ID"]): [] for s in services}
        for task in api.tasks(filters={"service": list(by_service)}):
            by_service.get(str(task.get("ServiceID")), []).append(task)
        nodes = self._nodes(api)
        result: list[ContainerInfo] = [
            self._worker(api, s, by_service[str(s["ID"])], nodes) for s in services
        ]
        result.sort(key=lambda info: (info.created, info.name))
        return result

    def _inspect_owned(self, api: docker.APIClient, name_or_id: str) -> Mapping[str, Any]:
        service: Mapping[str, Any] = api.inspect_service(name_or_id)
        spec = service.get("Spec") or {}
        if not self.owns(spec.get("Labels")):
            raise NotOwnedError(
                f"service {spec.get('Name', name_or_id)} ({str(service.get('ID'))[:12]}) "
                f"lacks the labels {OWNER_LABEL}={OWNER_VALUE} and "
                f"{APP_LABEL}={self.app_identifier}; refusing to touch it"
            )
        return service

    def _inspect_sync(self, name_or_id: str) -> ContainerInfo:
        api = self._api()
        service = self._inspect_owned(api, name_or_id)
        return self._worker(api, service, api.tasks(filters={"service": service["ID"]}))

    def _create_sync(self) -> ContainerInfo:
        api = self._api()
        for attempt in range(3):
            name = f"{self._name_prefix}-{secrets.token_hex(4)}"
            body = service_spec(
                name=name, image=self.image, target_port=self.target_port,
                labels=self.labels, constraints=self.constraints, network=self.network,
                cpus=self.cpus, memory_bytes=self.memory_bytes,
                stop_grace_seconds=self.stop_timeout,
            )
            try:
                created = api.create_service(
                    body["TaskTemplate"], name=name, labels=body["Labels"], mode=body["Mode"],
                    endpoint_spec=body["EndpointSpec"],
                )
                break
            except docker.errors.APIError as exc:
                if exc.status_code == 409 and attempt < 2:  # name taken: draw again
                    continue
                raise
        service_id = str(created["ID"])
        try:
            return self._wait_running(api, service_id)
        except BaseException:
            # Never leave a worker behind that did not start.
            with contextlib.suppress(Exception):
                api.remove_service(service_id)
            raise

    def _wait_running(self, api: docker.APIClient, service_id: str) -> SwarmWorker:
        deadline = time.monotonic() + self.start_timeout
        while True:
            service = api.inspect_service(service_id)
            tasks = api.tasks(filters={"service": service_id})
            worker = self._worker(api, service, tasks)
            if worker.running and worker.host_port is not None:
                return worker
            if worker.status in ("exited", "lost") or time.monotonic() > deadline:
                raise EngineError(
                    f"worker service {worker.name} did not start within "
                    f"{self.start_timeout:g} s: {_task_problem(tasks)}; removed it"
                )
            time.sleep(_POLL)

    def _remove_sync(self, name_or_id: str) -> None:
        api = self._api()
        try:
            service = self._inspect_owned(api, name_or_id)
            api.remove_service(service["ID"])
        except docker.errors.NotFound:
            return  # already gone


def _task_problem(tasks: list[Mapping[str, Any]]) -> str:
    """What the current task says about why it does not run."""
    task = current_task(tasks)
    if task is None:
        return "Swarm made no task for it"
    status = task.get("Status") or {}
    detail = status.get("Err") or status.get("Message") or ""
    return f"its task is {status.get('State', 'unknown')}" + (f" ({detail})" if detail else "")


def local_node_id(base_url: str, *, timeout: float = _DEFAULT_TIMEOUT) -> str:
    """The swarm node ID of the engine at `base_url` (blocking; for a collector,
    which must report as the node it samples). EngineError when the engine does not
    answer or is not in a swarm."""
    with _translate("reading the node id", base_url, "Docker engine"):
        api = open_api_client(base_url, timeout=timeout)
        try:
            swarm = api.info().get("Swarm") or {}
        finally:
            api.close()
    node = str(swarm.get("NodeID") or "")
    if swarm.get("LocalNodeState") != "active" or not node:
        raise EngineError(
            f"the engine at {base_url} is not part of a swarm "
            f"(state {swarm.get('LocalNodeState') or 'unknown'}); a collector samples "
            "the containers of its own swarm node"
        )
    return node


@contextlib.contextmanager
def _translate(what: str, base_url: str, who: str = "swarm manager") -> Iterator[None]:
    """Map docker-py / requests / OS errors to the project's exceptions (the
    address without a password, should it carry one)."""
    base_url = redact_url(base_url)
    try:
        yield
    except (EngineError, NotOwnedError):
        raise
    except docker.errors.NotFound as exc:
        raise ContainerNotFound(f"{what}: no such worker service ({_explain(exc)})") from exc
    except docker.errors.APIError as exc:
        raise EngineError(f"{what}: the {who} at {base_url} refused: {_explain(exc)}") from exc
    except (
        docker.errors.DockerException,
        requests.exceptions.RequestException,
        urllib3.exceptions.HTTPError,
        OSError,
    ) as exc:
        raise EngineUnreachable(  # one outage, whatever was asked (agent.service.failures)
            f"{what}: {who} unreachable or failing at {base_url}: {exc}") from exc


def _explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


if TYPE_CHECKING:  # mypy holds the adapter to its port
    from agent.core.ports import Engine

    def _implements(engine: SwarmEngine) -> Engine:
        return engine
