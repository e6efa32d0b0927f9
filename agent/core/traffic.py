"""What the balancer saw of each container in one tick, and how it feeds the scores.

SPEC §8's **better**: a container that carried traffic is judged by its real
response time, not by a TCP connect the kernel answers while the application
starves. HAProxy measures, per server (`agent.core.balancer.ServerStats`, one
``show stat`` per tick): requests in flight (``scur`` + ``qcur``), requests answered
(``req_tot``, cumulative), 5xx and invalid answers (cumulative), and ``rtime``, the
mean server response time in whole milliseconds over the last ``min(req_tot,
1024)`` requests. Pure: readings and the caller's clock in, values out.

The per-tick response time (`traffic_step`)
-------------------------------------------
``rtime`` is HAProxy's sliding sum (``swrate``, 2.6): below 1024 answered requests
the sum of every response time, then ``sum ← sum − ⌈sum/1024⌉ + v`` per request,
shown as ``⌈sum / min(req_tot, 1024)⌉``. Two readings (c₀, A₀) and (c₁, A₁) give
both sums (S ≈ (A − ½)·W) and so the mean m of the k = c₁ − c₀ requests between
them (weighted as the sum weighs them: once the window is full an older request
counts (1 − 1/1024) less per request after it), with k₁ of them added before the
window filled and k₂ after, d = 1 − 1/1024::

    S₁ = (S₀ + k₁·m)·dᵏ² + (m − ½)·D,  D = 1024·(1 − dᵏ²)   ⇒   m = (S₁ − S₀·dᵏ² + D/2) / (k₁·dᵏ² + D)

(the ½: each decaying step subtracts ⌈sum/1024⌉, half a millisecond more on average).

The readings are whole milliseconds, so m errs by up to about W/(2k) ms
(`interval_error_ms`): an estimate is made once that is below max(2 ms, 15 % of
m) — about 256 requests for a 13 ms service at a full window, 30 for a saturated
server answering in 100 ms, a handful for a new server. Between two estimates the
last one stands, for `HOLD` seconds; then the response time is unknown (no
evidence either way). A decrease of ``req_tot`` (HAProxy restarted, the server
re-added) starts the server over.

The embedded haproxy needs none of this: its adapter resets the counters after
each reading (`agent.core.balancer.Observation.interval_times`), so the shown
average is the interval's exact mean. The inversion serves an external HAProxy,
whose statistics are the user's and are never reset.

The availability input (`availability_inputs`)
----------------------------------------------
The compat availability is a *ratio*: 100·(best/effective)^1.5 over the times it
was fed, ``best`` being the mean of a list that only ever takes *lower* times. So
probe times (a TCP connect, ~0.1 ms) and response times (milliseconds) must never
be mixed — one probe time would make every later response look hundreds of times
slower. With a balancer, the agent therefore feeds every container the same
quantity, its **slowdown** — response time over a reference, the pool's unloaded
response time — in units of `UNLOADED` (1 ms, the kernel's latency floor)::

    carried traffic, answers mostly fine  ⇒  UNLOADED × clamp(m / reference, 1, 20)
    carried traffic, > half errors        ⇒  NaN (no answer: availability 0)
    no traffic, probe answered            ⇒  the same of its last response time while
                                             that is fresh (`HOLD`), else UNLOADED
    no traffic, probe failed              ⇒  NaN (compat)
    a container's first answered input    ⇒  UNLOADED (so `best` is the unloaded time)
    no figure (not a server yet, balancer unread) ⇒ as without traffic: never the
                                             probe's own time, which would mix units
    carried traffic, the probe late           ⇒  as with traffic, and the sample is
                                             fresh (`freshened`): a saturated worker's
                                             probe is the first to miss the deadline

so availability = 100 / slowdown^1.5, smoothed as the compat formula smooths it
(slowdown 1.25 ⇒ 72, 2 ⇒ 35, 3 ⇒ 19, 20 ⇒ 1), and the kernel's routing cost
divides by the slowdown. The cap (`MAX_SLOWDOWN`): beyond 20 a server is saturated
whatever the figure, and a tick whose few requests queued for seconds (a slowdown
of 1000) would otherwise dominate the compat history's mean for its 20 samples and
keep the score down long after the queue is gone. A server without traffic this
tick keeps the slowdown of its last response time for `HOLD` seconds: a server
left without traffic *because* it is slow (its weight is small) is not taken for
an unloaded one at its first empty tick; after that, nothing queued is unloaded.
And what is fed is the median of the container's last three slowdowns (`FILTER`):
a stall of the whole host on one tick (this machine is shared) moves no weight,
a worker slow for two ticks out of three does. A failed answer (NaN) is fed at
once. The **reference** is `Baseline`: the lowest per-tick response time of a
server that was neither busy nor crowded when it was measured — a fresh estimate,
CPU below `BUSY_CPU_PERCENT` of its limit, and fewer than `CROWDED` requests in
flight on average (rate × response time, Little's law), so that its requests
hardly waited — creeping up by a factor 2 per 30 minutes so that a slower release
is learnt. (Not HAProxy's window average: it spans the last 1024 requests, load
included; nor a low average CPU alone: a worker held to a CPU quota queues in
bursts at 30 % of it.) Until such a moment has been seen — a load that saturates
the pool from its first request — a server that is CPU-busy is compared with the
CPU time one of its requests costs (CPU-seconds over the tick divided by the
requests answered), the least any response can take: its slowdown is then the
time its requests waited for a CPU. A server neither busy nor measured against a
baseline shows no evidence of waiting: slowdown 1. (An application whose requests
mostly wait on I/O at high concurrency never teaches a baseline and is judged by
its CPU, as with the compat probe.)
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.core.balancer import ServerStats
from agent.core.records import Sample

__all__ = [
    "BUSY_CPU_PERCENT",
    "UNLOADED",
    "WINDOW",
    "Baseline",
    "ServerTraffic",
    "TrafficState",
    "availability_inputs",
    "freshened",
    "interval_error_ms",
    "interval_mean_ms",
    "traffic_step",
]

#: HAProxy's TIME_STATS_SAMPLES: the requests its time averages span.
WINDOW = 1024
_DECAY = 1.0 - 1.0 / WINDOW
#: Seconds fed to the kernel for an unloaded container (= `agent.scoring.LATENCY_FLOOR`,
#: which a test holds equal): the unit of the slowdown.
UNLOADED = 1e-3
#: A server using this much CPU (% of its limit) or more is busy: its response times
#: are not unloaded ones, and without a baseline its CPU cost per request is the
#: reference.
BUSY_CPU_PERCENT = 50.0
#: The slowdown fed is the median of a container's last FILTER ones.
FILTER = 3
#: The largest slowdown fed to the kernel (see the module docstring).
MAX_SLOWDOWN = 20.0
#: A server with this many requests in flight on average (rate × response time) or
#: more is crowded: its requests wait behind each other.
CROWDED = 1.0
#: An estimate needs this many answered requests at least (see the module docstring) …
MIN_REQUESTS = 8
#: … and enough that the whole-millisecond readings err by less than this fraction of
#: the response time …
TOLERANCE = 0.15
#: … or than this many milliseconds, whichever is larger.
MIN_TOLERANCE_MS = 2.0
#: An estimate older than this (seconds) gives way to HAProxy's window average.
HOLD = 5.0
#: The baseline's e-folding time upward: a factor 2 in 30 minutes.
BASELINE_RISE_TAU = 1800.0 / math.log(2.0)
#: The least baseline (seconds): HAProxy counts whole milliseconds.
BASELINE_FLOOR = 0.5e-3


@dataclass(frozen=True, slots=True)
class ServerTraffic:
    """One container's traffic at the balancer over the last interval.

    `response_time` is the mean of the requests answered since the last estimate
    (seconds; held `HOLD` seconds between estimates; NaN when unknown);
    `average_response_time` is what HAProxy shows (its 1024-request average, or
    the interval's). Counts are over the interval; `in_flight` is now.
    """

    carried: bool = False
    estimated: bool = False  # `response_time` was estimated from this tick's reading
    requests: int = 0
    answered: int = 0  # req_tot: answered since HAProxy knows the server
    rate: float = 0.0  # answered requests per second
    in_flight: int = 0  # scur + qcur: sent and not yet answered, or queued
    response_time: float = math.nan
    average_response_time: float = math.nan
    responses_5xx: int = 0
    errors: int = 0  # 5xx + invalid answers (eresp)
    status: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "carried": self.carried,
            "estimated": self.estimated,
            "requests": self.requests,
            "answered": self.answered,
            "rate": self.rate,
            "in_flight": self.in_flight,
            "response_time": self.response_time,
            "average_response_time": self.average_response_time,
            "responses_5xx": self.responses_5xx,
            "errors": self.errors,
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class _Reading:
    requests: int  # req_tot
    average_ms: float  # rtime as shown; NaN while nothing was sent or answered
    at: float  # the caller's clock, seconds
    responses_5xx: int
    errors: int


@dataclass(frozen=True, slots=True)
class _Track:
    base: _Reading  # where the next estimate starts
    last: _Reading  # the previous reading
    estimate: float = math.nan  # seconds
    estimated_at: float = -math.inf


@dataclass(frozen=True, slots=True)
class Baseline:
    """The pool's unloaded response time (seconds), None until learnt (see module)."""

    seconds: float | None = None
    at: float | None = None

    def now(self, at: float) -> float | None:
        """The baseline at `at`, risen since it was last lowered."""
        if self.seconds is None or self.at is None:
            return None
        return self.seconds * math.exp(max(0.0, at - self.at) / BASELINE_RISE_TAU)

    def learnt(self, candidate: float, at: float) -> Baseline:
        """Lowered to `candidate` (seconds) when that is below the risen baseline."""
        value = max(BASELINE_FLOOR, candidate)
        current = self.now(at)
        return Baseline(value, at) if current is None or value < current else self


@dataclass(frozen=True, slots=True)
class TrafficState:
    """What `traffic_step` and `availability_inputs` carry from one tick to the next."""

    tracks: Mapping[str, _Track] = field(default_factory=dict)
    baseline: Baseline = field(default_factory=Baseline)
    fed: frozenset[str] = frozenset()  # containers whose first input was given
    recent: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # last slowdowns


def interval_mean_ms(c0: int, a0: float, c1: int, a1: float) -> float:
    """Mean response time (ms) of the requests answered between two readings of a
    server's ``req_tot`` (c) and ``rtime`` (a); see the module docstring."""
    k = c1 - c0
    if k <= 0:
        raise ValueError(f"no request between the readings ({c0} → {c1})")
    s0, s1 = _sum(c0, a0), _sum(c1, a1)
    filled = min(c1, WINDOW)
    k1 = max(0, filled - c0)  # added while the sum had no decay
    k2 = k - k1
    dk = _DECAY ** k2
    decayed = WINDOW * (1.0 - dk)
    # each decaying step takes ⌈sum/1024⌉, half a millisecond more than sum/1024
    mean = (s1 - s0 * dk + 0.5 * decayed) / (k1 * dk + decayed)
    return max(0.0, mean)


def interval_error_ms(c0: int, c1: int) -> float:
    """How far `interval_mean_ms` may be off from readings in whole milliseconds:
    half a unit of each sum, over the weight the interval's requests have in it."""
    k1 = max(0, min(c1, WINDOW) - c0)
    dk = _DECAY ** (c1 - c0 - k1)
    weight = k1 * dk + WINDOW * (1.0 - dk)
    return 0.5 * (min(c0, WINDOW) * dk + min(c1, WINDOW)) / weight


def _sum(count: int, average_ms: float) -> float:
    """HAProxy's sum from its shown average ⌈sum/W⌉: the middle of its interval."""
    if count <= 0 or not average_ms > 0:  # (NaN: nothing answered yet)
        return 0.0
    return (average_ms - 0.5) * min(count, WINDOW)


def traffic_step(
    state: TrafficState, stats: Mapping[str, ServerStats], now: float, *,
    interval_times: bool = False,
) -> tuple[TrafficState, dict[str, ServerTraffic]]:
    """Each server's traffic since the previous reading, and the state for the next.

    `stats` is one reading of the servers (the agent's); `now` the caller's clock
    (seconds, any origin, the same every call). With `interval_times` (the adapter
    reset the balancer's counters at the previous reading,
    `agent.core.balancer.Observation`), a server's shown response time *is* the
    mean of the requests answered since, to the millisecond; otherwise it is
    recovered from the two readings (module docstring). A server seen for the
    first time has no interval yet: it counts as carrying traffic when HAProxy's
    one-second rate says so, with its shown average as its response time.
    """
    tracks: dict[str, _Track] = {}
    traffic: dict[str, ServerTraffic] = {}
    for name, s in stats.items():
        reading = _Reading(s.requests_total, s.response_time_ms, now, s.responses_5xx,
                           s.responses_5xx + s.response_errors)
        window = _seconds(reading.average_ms)  # NaN: no request yet, nothing known
        old = state.tracks.get(name)
        if old is None or reading.requests < old.last.requests:
            tracks[name] = _Track(reading, reading)
            traffic[name] = ServerTraffic(
                carried=s.rate > 0, answered=reading.requests, rate=float(s.rate),
                in_flight=s.sessions + s.queued, response_time=window,
                average_response_time=window, status=s.status,
            )
            continue
        track = _advance(old, reading, interval_times)
        tracks[name] = track
        requests = reading.requests - old.last.requests
        elapsed = reading.at - old.last.at
        fresh = now - track.estimated_at <= HOLD
        traffic[name] = ServerTraffic(
            carried=requests > 0,
            estimated=track.estimated_at == now,
            requests=requests,
            answered=reading.requests,
            rate=requests / elapsed if elapsed > 0 else 0.0,
            in_flight=s.sessions + s.queued,
            response_time=track.estimate if fresh else math.nan,
            average_response_time=window,
            responses_5xx=max(0, reading.responses_5xx - old.last.responses_5xx),
            errors=max(0, reading.errors - old.last.errors),
            status=s.status,
        )
    return dataclasses.replace(state, tracks=tracks), traffic


def _advance(track: _Track, reading: _Reading, interval_times: bool) -> _Track:
    """The track after `reading`: a new estimate once it is precise enough."""
    if interval_times:
        if reading.requests > track.last.requests and math.isfinite(reading.average_ms):
            return _Track(reading, reading, reading.average_ms / 1000.0, reading.at)
        return dataclasses.replace(track, base=reading, last=reading)
    base = track.base
    k = reading.requests - base.requests
    if k >= MIN_REQUESTS and _known(base) and _known(reading):
        mean = interval_mean_ms(base.requests, base.average_ms, reading.requests,
                                reading.average_ms)
        if interval_error_ms(base.requests, reading.requests) <= max(MIN_TOLERANCE_MS,
                                                                     TOLERANCE * mean):
            return _Track(reading, reading, mean / 1000.0, reading.at)
    return dataclasses.replace(track, last=reading)


def _known(reading: _Reading) -> bool:
    """Its average can be used: shown, or nothing answered yet (a sum of 0)."""
    return reading.requests == 0 or math.isfinite(reading.average_ms)


def _seconds(ms: float) -> float:
    return ms / 1000.0


def availability_inputs(
    state: TrafficState,
    samples: Mapping[str, Sample],
    traffic: Mapping[str, ServerTraffic],
    cores: Mapping[str, float],
    now: float,
) -> tuple[TrafficState, dict[str, Sample]]:
    """`samples` with the availability input the balancer's figures give (module
    docstring), and the state with the baseline and the containers fed so far.

    `cores` is each container's CPU limit in cores (1.0 without one: a sample's
    CPU % is relative to it). A container without a traffic entry (not a server
    yet, or the balancer could not be read) counts as carrying none.
    """
    baseline = _learn(state.baseline, samples, traffic, now)
    reference = baseline.now(now)
    fed = set(state.fed) & set(samples)
    recent = {n: v for n, v in state.recent.items() if n in samples}
    out: dict[str, Sample] = {}
    for name, sample in samples.items():
        seen = traffic.get(name, _NONE)
        if sample.stale and not _timed_by_balancer(sample, seen):
            out[name] = sample
            continue
        value = _input(sample, seen, reference, cores.get(name, 1.0))
        if math.isfinite(value):
            if name not in fed:
                value = UNLOADED
                fed.add(name)
            last = (*recent.get(name, ())[-(FILTER - 1):], value)
            recent[name] = last
            value = sorted(last)[(len(last) - 1) // 2]  # the (lower) median
        out[name] = dataclasses.replace(sample, response_time=value, stale=False)
    return dataclasses.replace(state, baseline=baseline, fed=frozenset(fed),
                               recent=recent), out


def _timed_by_balancer(sample: Sample, seen: ServerTraffic) -> bool:
    """A sample that is stale only because its probe was late, of a container whose
    requests the balancer timed this tick: its counters arrived (CPU is a number)
    and its availability input is the real traffic's, so it is fresh. A saturated
    worker's listen queue is full, so our TCP probe is the first thing to miss the
    tick's deadline: "late, so stale" would hide exactly the overload the policy
    must see (no sample counted ⇒ no scale-up)."""
    return seen.carried and math.isfinite(seen.response_time) and math.isfinite(sample.cpu_percent)


def freshened(samples: Mapping[str, Sample], fed: Mapping[str, Sample]) -> dict[str, Sample]:
    """`samples` with the staleness of what was fed for them (`availability_inputs`):
    the balancer's figures make a late probe's sample fresh."""
    return {
        name: dataclasses.replace(sample, stale=False)
        if sample.stale and name in fed and not fed[name].stale else sample
        for name, sample in samples.items()
    }


_NONE = ServerTraffic()


def _input(sample: Sample, seen: ServerTraffic, reference: float | None, cores: float) -> float:
    if not seen.carried:
        if not math.isfinite(sample.response_time):
            return math.nan
        if reference is None or not math.isfinite(seen.response_time):
            return UNLOADED
        return UNLOADED * max(1.0, min(MAX_SLOWDOWN, seen.response_time / reference))
    if seen.requests > 0 and 2 * seen.errors > seen.requests:
        return math.nan
    response = seen.response_time
    if not math.isfinite(response):
        return UNLOADED
    if reference is None and _busy(sample):
        reference = _cpu_cost(sample, seen, cores)
    if reference is None or reference <= 0:
        return UNLOADED  # nothing to compare with: no evidence of waiting
    return UNLOADED * max(1.0, min(MAX_SLOWDOWN, response / reference))


def _busy(sample: Sample) -> bool:
    return math.isfinite(sample.cpu_percent) and sample.cpu_percent >= BUSY_CPU_PERCENT


def _cpu_cost(sample: Sample, seen: ServerTraffic, cores: float) -> float | None:
    """CPU-seconds one request cost over the tick: the least a response can take."""
    if not (math.isfinite(sample.cpu_percent) and seen.rate > 0):
        return None
    return sample.cpu_percent / 100.0 * cores / seen.rate


def _learn(
    baseline: Baseline, samples: Mapping[str, Sample], traffic: Mapping[str, ServerTraffic],
    now: float,
) -> Baseline:
    """Lower the baseline to this tick's response time of a server whose requests
    hardly waited: freshly estimated, not CPU-busy, not crowded."""
    for name, seen in traffic.items():
        sample = samples.get(name)
        if (
            sample is None or sample.stale or not seen.estimated
            or not math.isfinite(seen.response_time) or not math.isfinite(sample.cpu_percent)
            or _busy(sample) or seen.rate * seen.response_time >= CROWDED
        ):
            continue
        baseline = baseline.learnt(seen.response_time, now)
    return baseline
