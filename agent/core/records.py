"""Plain records shared by the layers.

They carry no behaviour and import nothing heavy, so the pure core (scoring,
policy) and the I/O shell (engine, store, web) can exchange them freely.
"""
from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

__all__ = [
    "Category",
    "ContainerInfo",
    "Sample",
    "ContainerScore",
    "QueueItem",
    "Snapshot",
]


class Category(enum.StrEnum):
    """Utilization category (SPEC §3); the string values are the compat wire format."""

    INIT = "INIT"
    LU = "LU"
    MU = "MU"
    HU = "HU"
    SUNDOWN = "SUNDOWN"


# Integer codes used by the kernel's int8 category array, in this order.
CATEGORY_CODES: tuple[Category, ...] = (
    Category.INIT,
    Category.LU,
    Category.MU,
    Category.HU,
    Category.SUNDOWN,
)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """What the engine says about one owned container."""

    name: str
    id: str
    image: str
    status: str  # engine state: "created", "running", "exited", ...
    created: float  # epoch seconds
    host_port: int | None = None  # TARGET_PORT published on `address`
    address: str = "127.0.0.1"
    pid: int | None = None  # host pid of the container's init, when local
    labels: dict[str, str] = field(default_factory=dict)
    # (container address, TARGET_PORT) when this host routes to the container's
    # network: where the availability probe connects instead of the published port.
    direct: tuple[str, int] | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"


@dataclass(frozen=True, slots=True)
class Sample:
    """One tick's raw observation of a container.

    NaN means "not measured this tick" (first CPU reading has no delta, a stale
    read); `response_time` NaN means the probe got no answer, which SPEC §3 scores
    as availability 0. `stale=True` means the whole sample missed the tick deadline.
    """

    cpu_percent: float = math.nan
    memory_percent: float = math.nan
    network_bps: float = math.nan
    response_time: float = math.nan  # seconds
    stale: bool = False


@dataclass(frozen=True, slots=True)
class ContainerScore:
    """Scores of one container after a tick (the `/stats` compat object and more)."""

    name: str
    cpu_score: float
    memory_score: float
    network_score: float
    availability_score: float
    overall_score: float
    category: Category
    weight: float = 0.0
    anomaly: bool = False  # last response time outside its Jacobson/Karels band
    slope: float = 0.0  # least-squares slope of the overall score, per tick
    forecast: float = math.nan  # Holt forecast of the overall score, k ticks ahead
    stale: bool = False
    id: str = ""


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One entry of the queue pushed to load balancers (SPEC §4).

    `dns_name`, `score`, `utilization_category` are the compat fields; the rest
    is ours and may be ignored by old consumers.
    """

    dns_name: str
    score: float
    utilization_category: Category
    weight: float
    address: str | None = None
    port: int | None = None
    id: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "dns_name": self.dns_name,
            "score": self.score,
            "utilization_category": str(self.utilization_category),
            "weight": self.weight,
            "address": self.address,
            "port": self.port,
            "id": self.id,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything subscribers see after one tick; immutable so it can be shared."""

    tick: int
    time: float  # epoch seconds
    scores: tuple[ContainerScore, ...]
    queue: tuple[QueueItem, ...]
    containers: dict[str, ContainerInfo]
    desired: int
    running: int
    engine_ok: bool = True
    store_ok: bool = True
    last_decision: dict[str, object] | None = None

    @staticmethod
    def empty() -> "Snapshot":
        return Snapshot(0, 0.0, (), (), {}, 0, 0)
