"""The embeddable scorer: SPEC §3 scores, trends, anomaly bands and routing weights.

`Scorer` keeps every container's state in one slot of preallocated NumPy arrays and
scores all containers with one call into the compiled kernel (`_scoring._kernel`,
whose trend windows are `_scoring._window.RollingWindow` series) per tick. This
module is the thin typed shell around it: it validates, converts dtypes, maps names
to slots and has `_scoring._records` turn rows into `ContainerScore` records. It
imports neither trio, docker nor redis, so any tool can embed it::

    from agent.core.records import Sample
    from agent.scoring import Scorer, ScorerConfig, SmoothWeightedRoundRobin

    scorer = Scorer(ScorerConfig(hysteresis=2.0))
    scorer.add("web-1", now=0.0)
    scorer.add("web-2", now=0.0)
    scores = scorer.update({
        "web-1": Sample(cpu_percent=30.0, memory_percent=40.0,
                        network_bps=1e6, response_time=0.002),
        "web-2": Sample(cpu_percent=90.0, memory_percent=70.0,
                        network_bps=5e7, response_time=0.010),
    }, now=60.0)
    rr = SmoothWeightedRoundRobin([s.weight for s in scores])
    backend = scores[rr.pick()].name

Semantics beyond SPEC §3 (decided here, mirrored by `agent.reference.scoring`):

* scores start at 100 (full headroom, like the compat availability EMA) until
  measured; a NaN cpu/memory/network keeps that metric's previous score;
* response time NaN or infinite = no answer: availability 0 for that tick and the
  running state untouched (the EMA resumes from its old value); negative = 0; when
  the effective time is 0 the best/effective ratio is 1 (base 100);
* a stale sample (name missing from `samples`, or `Sample.stale`) changes nothing:
  its scores keep their previous values, no window advances;
* the trend windows (slopes, Holt) advance from the first complete sample on
  (cpu, memory, network measured and the probe answered), which also ends INIT;
  the response-time window advances on every answered probe;
* slopes are least-squares slopes per tick over the last `trend_window` samples
  (0 with fewer than two), recomputed when their window advances (a held slope
  stays as it was, also when `reconfigure` re-cut its window); the forecast is
  Holt's level + horizon x trend, clamped to [0, 100], NaN until the first
  complete sample;
* `anomaly` is True when an answered time exceeds SRTT + jk_k x RTTVAR as it stood
  before that time was ingested (RFC 6298: alpha 1/8, beta 1/4, written
  x += g (target - x); the first time seeds SRTT = R, RTTVAR = R/2); a failed
  probe is not an anomaly, it is a failure.
"""
from __future__ import annotations

import math
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt

from _scoring import _kernel, _records
from _scoring._window import RollingWindow
from agent.core.records import CATEGORY_CODES, ContainerScore, Sample
from agent.core.settings_table import DEFAULTS

__all__ = [
    "ScorerConfig",
    "Scorer",
    "TickArrays",
    "ContainerDetail",
    "SmoothWeightedRoundRobin",
    "WeightedP2C",
    "LATENCY_FLOOR",
]

#: Latencies below this (seconds) count as equal in the routing cost: loopback
#: connects take ~0.1 ms and differences below a millisecond are noise, while a
#: zero latency would otherwise make one container take all the traffic.
LATENCY_FLOOR = 1e-3

_FloatArray = npt.NDArray[np.float64]
_ArrayT = TypeVar("_ArrayT", bound="np.ndarray[Any, Any]")


def _check(ok: bool, name: str, rule: str, value: object) -> None:
    if not ok:
        raise ValueError(f"{name} must be {rule}, got {value!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class ScorerConfig:
    """Everything the scorer's arithmetic depends on; validated on construction.

    The first seven fields are the compat settings of SPEC §2,
    `network_capacity_bps` is SPEC §3's link capacity; the rest tune the trend,
    hysteresis and routing extensions. A field that has a setting takes its
    default from the settings table (`agent.core.settings_table.DEFAULTS`).
    Errors are `ValueError` naming the field, e.g. ``ema_alpha must be in (0, 1],
    got 0``.
    """

    cpu_weight: float = DEFAULTS["CPU_WEIGHT"]
    memory_weight: float = DEFAULTS["MEMORY_WEIGHT"]
    network_weight: float = DEFAULTS["NETWORK_WEIGHT"]
    availability_weight: float = DEFAULTS["AVAILABILITY_WEIGHT"]
    history_size: int = DEFAULTS["HISTORY_SIZE"]
    best_time_window: int = DEFAULTS["BEST_TIME_WINDOW"]
    ema_alpha: float = DEFAULTS["EMA_ALPHA"]
    network_capacity_bps: float = DEFAULTS["NETWORK_CAPACITY_BPS"]
    trend_window: int = DEFAULTS["TREND_WINDOW"]  # H: samples in each least-squares window
    holt_alpha: float = 0.5
    holt_beta: float = 0.3
    forecast_horizon: int = DEFAULTS["FORECAST_HORIZON"]  # ticks ahead
    hysteresis: float = DEFAULTS["CATEGORY_HYSTERESIS"]  # category margin; 0 = compat
    slow_start_window: float = DEFAULTS["SLOW_START_WINDOW"]  # seconds; 0 disables slow start
    slow_start_aggression: float = 1.0
    slow_start_min_fraction: float = 0.1
    latency_decay: float = 10.0  # seconds: peak-EWMA time constant
    jk_k: float = 4.0  # band = SRTT + jk_k * RTTVAR

    def __post_init__(self) -> None:
        for name in ("cpu_weight", "memory_weight", "network_weight", "availability_weight"):
            v = getattr(self, name)
            _check(_is_real(v) and v >= 0, name, "a finite number >= 0", v)
        for name in ("history_size", "best_time_window", "trend_window"):
            v = getattr(self, name)
            _check(isinstance(v, int) and not isinstance(v, bool) and v >= 1, name, "an integer >= 1", v)
        v = self.forecast_horizon
        _check(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
               "forecast_horizon", "an integer >= 0", v)
        for name in ("ema_alpha", "holt_alpha"):
            v = getattr(self, name)
            _check(_is_real(v) and 0 < v <= 1, name, "in (0, 1]", v)
        for name in ("holt_beta", "slow_start_min_fraction"):
            v = getattr(self, name)
            _check(_is_real(v) and 0 <= v <= 1, name, "in [0, 1]", v)
        for name in ("network_capacity_bps", "slow_start_aggression", "latency_decay"):
            v = getattr(self, name)
            _check(_is_real(v) and v > 0, name, "a finite number > 0", v)
        for name in ("hysteresis", "slow_start_window", "jk_k"):
            v = getattr(self, name)
            _check(_is_real(v) and v >= 0, name, "a finite number >= 0", v)

    def _params(self) -> _FloatArray:
        values = {f.name: float(getattr(self, f.name)) for f in fields(self)}
        values["latency_floor"] = LATENCY_FLOOR
        values["recompute_period"] = float(self._recompute_period())
        return np.array([values[name] for name in _kernel.PARAMS], dtype=np.float64)

    def _recompute_period(self) -> int:
        # often enough that rounding cannot build up, rarely enough to be free
        return max(64, 16 * max(self.history_size, self.best_time_window, self.trend_window))

    def _initial_overall(self) -> float:
        total = 100.0 * (self.cpu_weight + self.memory_weight + self.network_weight
                         + self.availability_weight)
        return min(max(total, 0.0), 100.0)


class TickArrays(NamedTuple):
    """Read-only views of the kernel's persistent outputs, indexed by slot.

    The same buffers are rewritten every tick (no allocation); they are replaced by
    new ones only when the scorer's capacity grows, so re-read them after `add`.
    Free slots hold NaN scores and weight 0; check `active`.
    """

    cpu_score: _FloatArray
    memory_score: _FloatArray
    network_score: _FloatArray
    availability_score: _FloatArray
    overall_score: _FloatArray
    weight: _FloatArray
    slope: _FloatArray  # overall score, per tick
    slope_cpu: _FloatArray
    slope_memory: _FloatArray
    slope_network: _FloatArray
    slope_response_time: _FloatArray  # seconds per answered probe
    forecast: _FloatArray
    category: npt.NDArray[np.int8]  # index into agent.model.CATEGORY_CODES
    anomaly: npt.NDArray[np.bool_]
    stale: npt.NDArray[np.bool_]
    active: npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class ContainerDetail:
    """Internals of one container beyond `ContainerScore` (trends, bands, latency)."""

    name: str
    slope_cpu: float
    slope_memory: float
    slope_network: float
    slope_response_time: float
    holt_level: float
    holt_trend: float
    srtt: float  # NaN until the first answer
    rttvar: float
    band: float  # SRTT + jk_k * RTTVAR: the next time above it is an anomaly
    threshold: float  # the compat dynamic threshold
    availability_ema: float
    peak_latency: float  # peak-EWMA latency (seconds), NaN until the first answer
    added: float


def _readonly(a: _ArrayT) -> _ArrayT:
    v = a.view()
    v.flags.writeable = False
    return v


class _RecordCache:
    """Per slot, the last record built and the outputs it was built from, so a
    container whose outputs did not change keeps its record (see
    `_scoring._records.build_records`)."""

    __slots__ = ("records", "snap")

    def __init__(self, cap: int) -> None:
        self.records: list[ContainerScore | None] = [None] * cap
        self.snap: _FloatArray = np.full((_records.SNAP_ROWS, cap), np.nan)

    def grow(self, cap: int) -> None:
        old = len(self.records)
        self.records.extend([None] * (cap - old))
        snap = np.full((_records.SNAP_ROWS, cap), np.nan)
        snap[:, :old] = self.snap
        self.snap = snap

    def forget(self, slot: int) -> None:
        self.records[slot] = None


def _record_descriptors() -> tuple[Any, ...] | None:
    """ContainerScore's slot descriptors in `_records.RECORD_FIELDS` order, so
    records can be built without running `__init__`; None (records are then built
    by calling the class) if it is not a plain slots dataclass."""
    names = tuple(f.name for f in fields(ContainerScore))
    if names != _records.RECORD_FIELDS:
        raise ImportError(f"agent.scoring: ContainerScore fields {names} differ from "
                          f"_scoring._records.RECORD_FIELDS; update both together")
    descs = tuple(ContainerScore.__dict__.get(n) for n in names)
    plain = (all(isinstance(d, types.MemberDescriptorType) for d in descs)
             and not hasattr(ContainerScore, "__post_init__")
             and ContainerScore.__new__ is object.__new__)
    return descs if plain else None


_RECORD_DESCS = _record_descriptors()


class Scorer:
    """Scores a changing set of containers, one kernel call per tick.

    Adding and removing containers is O(1) amortized: a removed container's slot
    goes on a free list and is reused; when none is free the arrays double. The
    routing weight of a container that takes traffic is

        w ∝ slow_start(age) × max(overall/100, 0.01)² / max(peak_ewma_latency, 1 ms)

    normalised to sum to 1, and 0 for SUNDOWN containers and those whose last
    probe failed or never answered. Why this shape: the score already folds CPU,
    memory and network load into headroom, and the square makes traffic drain from
    a container faster than its headroom shrinks (queueing delay grows like
    1/(1 - utilisation), so a linear share overloads the busiest); dividing by the
    peak-EWMA latency (Finagle/Linkerd: it jumps to a higher latency at once and
    decays toward lower ones with time constant `latency_decay`) steers traffic away
    from a backend as soon as it slows, before its scores catch up. The 0.01 floor
    keeps saturated-but-answering containers in rotation when all are saturated.
    Slow start is Envoy's: max(min_fraction, (age/window)^(1/aggression)) while
    age < window, so a cold container is not flooded. If no container takes traffic
    every weight is 0, and consumers must treat the pool as unavailable.

    Two ways to drive a tick: `update` (samples by name in, one `ContainerScore`
    per container out) and the array path, `update_arrays` (arrays by slot in,
    `TickArrays` out) or `update_samples` (samples by name in, `TickArrays` out),
    with records only on demand (`records`) or only for containers whose record
    changed (`changed_records`). Building the records is most of what `update`
    costs beyond the kernel: benchmarks/bench_kernel.py (section b) gives both
    paths in µs per container.
    """

    # Per-slot arrays, (re)bound by `_allocate` (and the rings by `reconfigure`).
    _fstate: _FloatArray
    _istate: npt.NDArray[np.intc]
    _hist: _FloatArray
    _best: _FloatArray
    _xin: _FloatArray
    _out: _FloatArray
    _cat: npt.NDArray[np.int8]
    _flags: npt.NDArray[np.uint8]
    _active: npt.NDArray[np.uint8]
    _in_cpu: _FloatArray
    _in_mem: _FloatArray
    _in_net: _FloatArray
    _in_rt: _FloatArray
    _in_valid: npt.NDArray[np.uint8]

    def __init__(self, config: ScorerConfig | None = None, capacity: int = 16) -> None:
        if config is None:
            config = ScorerConfig()
        if not isinstance(config, ScorerConfig):
            raise TypeError(f"config must be a ScorerConfig, got {type(config).__name__}")
        _check(isinstance(capacity, int) and not isinstance(capacity, bool) and capacity >= 1,
               "capacity", "an integer >= 1", capacity)
        self._config = config
        self._params = config._params()
        self._period = config._recompute_period()
        self._overall0 = config._initial_overall()
        self._slots: dict[str, int] = {}
        self._name_of: list[str | None] = []  # by slot
        self._id_of: list[str] = []  # by slot
        self._order: npt.NDArray[np.intp] | None = None  # slots in names() order
        self._free: list[int] = []
        self._scores: list[ContainerScore] = []
        self._windows: tuple[RollingWindow, ...] = ()
        # record caches, made on first use (an array-path user never pays for them)
        self._built: _RecordCache | None = None  # records of update() and records()
        self._reported: _RecordCache | None = None  # those of changed_records()
        self._cap = 0
        self._allocate(capacity)

    # -- storage -------------------------------------------------------------
    def _allocate(self, cap: int) -> None:
        """Create (or grow into) arrays of `cap` slots, copying the old rows."""
        cfg = self._config
        new: dict[str, np.ndarray[Any, Any]] = {
            "fstate": np.zeros((cap, _kernel.NF_), np.float64),
            "istate": np.zeros((cap, _kernel.NI_), np.intc),
            "hist": np.zeros((cap, cfg.history_size), np.float64),
            "best": np.zeros((cap, cfg.best_time_window), np.float64),
            "out": np.full((len(_kernel.OUT_ROWS), cap), np.nan, np.float64),
            "cat": np.zeros(cap, np.int8),
            "flags": np.zeros((len(_kernel.FLAG_ROWS), cap), np.uint8),
            "active": np.zeros(cap, np.uint8),
            # scratch: the tick's samples of the trend series
            "xin": np.full((_kernel.WIN_SERIES, cap), np.nan, np.float64),
            # persistent input buffers for `update`
            "in_cpu": np.full(cap, np.nan),
            "in_mem": np.full(cap, np.nan),
            "in_net": np.full(cap, np.nan),
            "in_rt": np.full(cap, np.nan),
            "in_valid": np.zeros(cap, np.uint8),
        }
        new["out"][_kernel.OUT_ROWS.index("weight")] = 0.0
        old = self._cap
        if old:
            for key, arr in new.items():
                src = getattr(self, "_" + key)
                if key in ("out", "flags", "xin"):
                    arr[:, :old] = src
                else:
                    arr[:old] = src
            for w in self._windows:
                w.resize(cap)
        else:
            self._windows = _kernel.make_windows(cap, cfg.trend_window, cfg.jk_k)
        for key, arr in new.items():
            setattr(self, "_" + key, arr)
        for cache in (self._built, self._reported):
            if cache is not None:
                cache.grow(cap)
        self._name_of.extend([None] * (cap - old))
        self._id_of.extend([""] * (cap - old))
        # new slots go on the free list so the lowest is handed out first
        self._free.extend(range(cap - 1, old - 1, -1))
        self._cap = cap
        self._views = self._make_views()

    def _make_views(self) -> TickArrays:
        rows = {name: _readonly(self._out[i]) for i, name in enumerate(_kernel.OUT_ROWS)}
        return TickArrays(
            **rows,
            category=_readonly(self._cat),
            anomaly=_readonly(self._flags[0].view(np.bool_)),
            stale=_readonly(self._flags[1].view(np.bool_)),
            active=_readonly(self._active.view(np.bool_)),
        )

    def state_bytes_per_slot(self) -> int:
        """Bytes the scorer keeps per slot: state, rings, trend windows, outputs,
        input buffers and record snapshots (the records themselves are Python
        objects, not counted)."""
        arrays: list[np.ndarray[Any, Any]] = [
            self._fstate, self._istate, self._hist, self._best, self._xin, self._out,
            self._cat, self._flags, self._active, self._in_cpu, self._in_mem,
            self._in_net, self._in_rt, self._in_valid]
        arrays += [c.snap for c in (self._built, self._reported) if c is not None]
        windows = sum(w.nbytes for w in self._windows)
        return (sum(a.nbytes for a in arrays) + windows) // self._cap

    # -- membership ----------------------------------------------------------
    @property
    def config(self) -> ScorerConfig:
        return self._config

    def reconfigure(self, config: ScorerConfig) -> None:
        """Switch to `config`, keeping every container's state (e.g. after PUT /config).

        Weights, smoothing, hysteresis, slow start and band parameters apply from the
        next tick on. When history_size, best_time_window or trend_window change,
        each ring keeps its newest min(old, new) entries and its running sums are
        rebuilt from them, so no container starts over.
        """
        if not isinstance(config, ScorerConfig):
            raise TypeError(f"config must be a ScorerConfig, got {type(config).__name__}")
        old, self._config = self._config, config
        self._params = config._params()
        self._period = config._recompute_period()
        self._overall0 = config._initial_overall()
        for w in self._windows:
            w.configure(window=config.trend_window, jk_k=config.jk_k)
        if (old.history_size, old.best_time_window) == (config.history_size,
                                                        config.best_time_window):
            return
        cap = self._cap
        hist = np.zeros((cap, config.history_size))
        best = np.zeros((cap, config.best_time_window))
        f = _kernel.ISTATE_FIELDS
        for slot in self._slots.values():
            row = self._istate[slot]
            for src, dst, key in ((self._hist, hist, "hist"), (self._best, best, "best")):
                head, n = int(row[f[key + "_head"]]), int(row[f[key + "_n"]])
                k = min(n, dst.shape[1])
                # the newest k entries sit just before the head, oldest first
                idx = (head - k + np.arange(k)) % src.shape[1]
                dst[slot, :k] = src[slot, idx]
                row[f[key + "_head"]] = k % dst.shape[1]
                row[f[key + "_n"]] = k
        self._hist, self._best = hist, best
        for slot in self._slots.values():
            _kernel.recompute_slot(self._fstate, self._istate, hist, best, slot)

    @property
    def capacity(self) -> int:
        """Number of slots currently allocated (grows by doubling)."""
        return self._cap

    def add(self, name: str, *, now: float, id: str = "") -> int:
        """Register a container added at time `now` (slow start counts from it); return its slot."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if name in self._slots:
            raise ValueError(f"container {name!r} is already registered")
        _check(_is_real(now), "now", "a finite number", now)
        if not self._free:
            self._allocate(2 * self._cap)
        slot = self._free.pop()
        _kernel.reset_slot(self._fstate, self._istate, self._out, self._cat, self._flags,
                           slot, float(now), self._period - slot % self._period, self._overall0,
                           self._windows)
        self._active[slot] = 1
        self._slots[name] = slot
        self._name_of[slot] = name
        self._id_of[slot] = id
        self._forget(slot)
        return slot

    def remove(self, name: str) -> None:
        """Forget a container and free its slot (KeyError if unknown).

        Its outputs are blanked at once; the other weights are renormalised at the
        next tick.
        """
        slot = self._slots.pop(name)
        self._name_of[slot] = None
        self._id_of[slot] = ""
        self._active[slot] = 0
        _kernel.clear_slot(self._out, self._cat, self._flags, slot)
        self._forget(slot)
        self._free.append(slot)

    def _forget(self, slot: int) -> None:
        self._order = None
        for cache in (self._built, self._reported):
            if cache is not None:
                cache.forget(slot)

    def set_sundown(self, name: str, flag: bool = True) -> None:
        """Mark (or unmark) a container SUNDOWN: category sticky until unmarked.

        The category changes at once; its weight drops to 0 at the next tick.
        Unmarking returns it to INIT, or to the plain category of its last score.
        """
        slot = self._slots[name]
        _kernel.set_category(self._istate, self._cat, self._out, slot, bool(flag))

    def __contains__(self, name: object) -> bool:
        return name in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def names(self) -> list[str]:
        """Registered names, in the order they were added."""
        return list(self._slots)

    def slot_of(self, name: str) -> int:
        """The slot (row index of every array) holding `name`; KeyError if unknown."""
        return self._slots[name]

    # -- ticks ---------------------------------------------------------------
    def update(self, samples: Mapping[str, Sample], now: float) -> list[ContainerScore]:
        """Score one tick. Registered names missing from `samples` are stale.

        Raises KeyError for a name that is not registered (nothing is scored then).
        Returns one `ContainerScore` per registered container, in `names()` order;
        a container whose outputs did not change keeps its record object.
        """
        self.update_samples(samples, now)
        self._scores = self._build(self._slot_order(), self._built_cache(), changed_only=False)
        return list(self._scores)

    def update_samples(self, samples: Mapping[str, Sample], now: float) -> TickArrays:
        """`update` without the records: score one tick from samples by name and
        return the persistent outputs (see `TickArrays`).

        The array path for a caller whose samples arrive as `Sample` records: ask
        for records afterwards only where needed (`records`, `changed_records`).
        `scores()` is not refreshed by this call.
        """
        _records.gather_samples(samples, self._slots, self._in_cpu, self._in_mem,
                                self._in_net, self._in_rt, self._in_valid)
        _check(_is_real(now), "now", "a finite number", now)
        self._tick(self._in_cpu, self._in_mem, self._in_net, self._in_rt, self._in_valid,
                   float(now))
        return self._views

    def update_arrays(self, cpu: npt.ArrayLike, mem: npt.ArrayLike, net: npt.ArrayLike,
                      rt: npt.ArrayLike, valid: npt.ArrayLike, now: float) -> TickArrays:
        """Score one tick from arrays indexed by slot (length `capacity`); no records.

        The low-level path for the runtime, benchmarks and bulk users: inputs are
        converted to contiguous float64 (and `valid` to bool) only when they are not
        already; the returned views are the persistent outputs (see `TickArrays`).
        `scores()` is not refreshed by this call.
        """
        cap = self._cap
        arrays = []
        for name, a in (("cpu", cpu), ("mem", mem), ("net", net), ("rt", rt)):
            a = np.ascontiguousarray(a, dtype=np.float64)
            if a.shape != (cap,):
                raise ValueError(f"{name} must have shape ({cap},), got {a.shape}")
            arrays.append(a)
        v = np.asarray(valid)
        if v.dtype != np.uint8:
            v = v.astype(bool).view(np.uint8) if v.dtype != bool else v.view(np.uint8)
        v = np.ascontiguousarray(v)
        if v.shape != (cap,):
            raise ValueError(f"valid must have shape ({cap},), got {v.shape}")
        _check(_is_real(now), "now", "a finite number", now)
        self._tick(arrays[0], arrays[1], arrays[2], arrays[3], v, float(now))
        return self._views

    def _tick(self, cpu: _FloatArray, mem: _FloatArray, net: _FloatArray, rt: _FloatArray,
              valid: np.ndarray, now: float) -> int:
        return _kernel.score_tick(cpu, mem, net, rt, valid, self._active, now, self._params,
                                  self._fstate, self._istate, self._hist, self._best,
                                  self._out, self._cat, self._flags, self._xin,
                                  self._windows)

    @property
    def arrays(self) -> TickArrays:
        """The current outputs (same views `update_arrays` returns)."""
        return self._views

    def scores(self) -> list[ContainerScore]:
        """The records of the last `update` (empty before the first)."""
        return list(self._scores)

    def records(self, names: Iterable[str] | None = None) -> list[ContainerScore]:
        """`ContainerScore` records of the current outputs, built on demand.

        All containers in `names()` order, or those of `names` in that order
        (KeyError for one not registered). Records whose outputs did not change
        since they were last built are the same objects.
        """
        if names is None:
            order = self._slot_order()
        else:
            slots = self._slots
            order = np.array([slots[n] for n in names], dtype=np.intp)
        return self._build(order, self._built_cache(), changed_only=False)

    def changed_records(self) -> list[ContainerScore]:
        """Records of the containers whose record differs from the one the previous
        call returned for them (every container on the first call, and those
        added since), in `names()` order: what a store needs to write."""
        if self._reported is None:
            self._reported = _RecordCache(self._cap)
        return self._build(self._slot_order(), self._reported, changed_only=True)

    def _built_cache(self) -> _RecordCache:
        if self._built is None:
            self._built = _RecordCache(self._cap)
        return self._built

    def _slot_order(self) -> npt.NDArray[np.intp]:
        if self._order is None:
            self._order = np.fromiter(self._slots.values(), np.intp, len(self._slots))
        return self._order

    def _build(self, order: npt.NDArray[np.intp], cache: _RecordCache,
               changed_only: bool) -> list[ContainerScore]:
        return _records.build_records(
            ContainerScore, _RECORD_DESCS, self._name_of, self._id_of, order, self._out,
            self._cat, self._flags, CATEGORY_CODES, cache.records, cache.snap, changed_only)

    def detail(self, name: str) -> ContainerDetail:
        """Trend, band and latency internals of one container (KeyError if unknown)."""
        s = self._slots[name]
        d = _kernel.slot_detail(self._fstate, self._istate, s)
        v = self._views
        rt = self._windows[_kernel.TREND_SERIES.index("response_time")]
        answered = bool(rt.count[s] > 0)
        srtt = float(rt.srtt[s]) if answered else math.nan
        rttvar = float(rt.rttvar[s]) if answered else math.nan
        return ContainerDetail(
            name=name,
            slope_cpu=float(v.slope_cpu[s]),
            slope_memory=float(v.slope_memory[s]),
            slope_network=float(v.slope_network[s]),
            slope_response_time=float(v.slope_response_time[s]),
            holt_level=d["level"],
            holt_trend=d["trend"],
            srtt=srtt,
            rttvar=rttvar,
            band=srtt + self._config.jk_k * rttvar,
            threshold=d["thr"],
            availability_ema=d["ema"],
            peak_latency=d["peak"],
            added=d["added"],
        )


# ---- pickers ------------------------------------------------------------------
def _weights_array(weights: Sequence[float] | npt.ArrayLike) -> _FloatArray:
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.ndim != 1:
        raise ValueError(f"weights must be one-dimensional, got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights must be finite and >= 0")
    return w


class SmoothWeightedRoundRobin:
    """nginx's smooth weighted round robin over fixed weights.

    Deterministic and evenly interleaved: weights {5, 1, 1} give a a b a c a a, so a
    heavy backend never receives a burst of consecutive requests. Indices with
    weight 0 are never picked; `pick` raises LookupError if none is positive.
    """

    def __init__(self, weights: Sequence[float] | npt.ArrayLike) -> None:
        self._w = _weights_array(weights)
        self._current = np.zeros_like(self._w)
        self._one = np.empty(1, np.int64)

    @property
    def weights(self) -> _FloatArray:
        return _readonly(self._w)

    def pick(self) -> int:
        _kernel.swrr_fill(self._w, self._current, self._one)
        i = int(self._one[0])
        if i < 0:
            raise LookupError("no backend has a positive weight")
        return i

    def picks(self, k: int) -> npt.NDArray[np.int64]:
        """The next `k` picks at once (-1 entries when no weight is positive)."""
        out = np.empty(k, np.int64)
        _kernel.swrr_fill(self._w, self._current, out)
        return out


class WeightedP2C:
    """Weighted power of two choices.

    Draws two distinct backends with probability proportional to weight and keeps
    the one with the lower `load` (e.g. in-flight requests) per unit of weight, so
    it reacts to load the weights have not yet seen. Without `load` the first draw
    is kept: picks follow the weights (keeping the heavier of the two would send
    ~95 % to the top backend and starve the lightest). `seed` feeds a numpy
    Generator.
    """

    def __init__(self, weights: Sequence[float] | npt.ArrayLike, seed: int | None = None) -> None:
        self._w = _weights_array(weights)
        self._cum = np.cumsum(self._w)
        self._rng = np.random.default_rng(seed)
        self._one = np.empty(1, np.int64)

    @property
    def weights(self) -> _FloatArray:
        return _readonly(self._w)

    def _load(self, load: npt.ArrayLike | None) -> _FloatArray | None:
        if load is None:
            return None
        a = np.ascontiguousarray(load, dtype=np.float64)
        if a.shape != self._w.shape:
            raise ValueError(f"load must have shape {self._w.shape}, got {a.shape}")
        return a

    def pick(self, load: npt.ArrayLike | None = None) -> int:
        u = self._rng.random(2)
        return self.pick_with(u[0], u[1], load=load)

    def pick_with(self, u1: float, u2: float, load: npt.ArrayLike | None = None) -> int:
        """Pick with the given uniforms in [0, 1) (deterministic; for tests and replay)."""
        u = np.array([u1, u2], np.float64)
        _kernel.p2c_fill(self._w, self._cum, u, self._load(load), self._one)
        i = int(self._one[0])
        if i < 0:
            raise LookupError("no backend has a positive weight")
        return i

    def picks(self, k: int, load: npt.ArrayLike | None = None) -> npt.NDArray[np.int64]:
        """`k` independent picks at once (-1 entries when no weight is positive)."""
        out = np.empty(k, np.int64)
        _kernel.p2c_fill(self._w, self._cum, self._rng.random(2 * k), self._load(load), out)
        return out

