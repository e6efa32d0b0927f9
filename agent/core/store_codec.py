"""The pure encoding of the agent's persisted state: Python values <-> Redis fields.

No server, no threads, no I/O: the key names of one application (`Keys`), the
records the runtime persists (`StoredState`, `TickWrite`, `container_record`) and
small functions (`encode_*` / `decode_*`) between them and the strings Redis
stores, tested without a server. `agent.adapters.redis_store` sends what these produce.

Keys, all under the prefix ``da:<APP_IDENTIFIER>:``::

    desired     string  desired container count
    containers  hash    name -> JSON record (name, id, category, score, host_port,
                        image, created)
    sundown     hash    name -> epoch seconds when it was marked SUNDOWN
    config      hash    runtime configuration overrides, name -> JSON value
    summary     hash    name -> JSON performance summary (last scores, slope, ...)
    policy      hash    policy state, field -> JSON value (last scale-up epoch,
                        stabilization recommendations, ...)
    events      stream  decision ledger, fields kind / ts / data (JSON),
                        capped with XADD MAXLEN ~
    views       stream  the leader's last `VIEW_STREAM_LEN` ticks for its followers
                        (`agent.core.tick_view`), field v
    leader      string  the leader lease (`agent.adapters.redis_lease`)
    fence       string  the last fencing token handed out
    samples:<node>  string  ENGINE=swarm: a node collector's latest report
                        (`agent.core.sample_codec`; written by the collectors)

Values are compact, strict JSON (NaN/±inf stored as null). Bad *data* passed in
by the caller (not JSON-encodable, a record under the wrong name) is a bug in the
caller and raises `ValueError`/`TypeError` here, before anything is sent;
`decode_*` raise `ValueError` on corrupt stored data.

What is read back is untrusted (anyone who can write to the Redis could have
written it), so `decode_state` decodes a whole `load()` field by field: a value
that does not decode is left out and named in `StoredState.problems`, the rest
is kept. Whether what *did* decode makes sense (ranges, times, names) is
`agent.core.recovery`'s to judge.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.core.jsonsafe import strict_json
from agent.core.records import Category, ContainerInfo
from agent.core.tick_view import TickView, decode_view, encode_view

__all__ = [
    "StoredState",
    "TickWrite",
    "SharedState",
    "VIEW_STREAM_LEN",
    "Keys",
    "TICK_HASHES",
    "container_record",
    "encode_json",
    "decode_json",
    "encode_desired",
    "decode_desired",
    "encode_json_field",
    "encode_json_hash",
    "decode_json_hash",
    "encode_record_field",
    "encode_sundown_field",
    "encode_containers",
    "decode_containers",
    "encode_sundown",
    "decode_sundown",
    "encode_event",
    "decode_event",
    "encode_tick",
    "decode_views",
    "decode_state",
    "MAX_DESIRED_TEXT",
    "plan_hash_replace",
    "validate_stream_id",
]

# The hashes `write_tick` replaces as a whole, by their `Keys` attribute name.
TICK_HASHES: tuple[str, ...] = ("containers", "sundown", "summary", "policy")

# Tick views kept for followers: 32 ticks, so a follower that misses a few of its
# own ticks still feeds its scorer every sample in order.
VIEW_STREAM_LEN = 32


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Keys:
    """The Redis key names of one application (docs/architecture.md)."""

    prefix: str
    desired: str
    containers: str
    sundown: str
    config: str
    summary: str
    policy: str
    events: str
    views: str

    @classmethod
    def for_app(cls, app_identifier: str) -> Keys:
        if not isinstance(app_identifier, str) or not app_identifier:
            raise ValueError("app_identifier must be a non-empty string")
        p = f"da:{app_identifier}:"
        return cls(
            prefix=p,
            desired=p + "desired",
            containers=p + "containers",
            sundown=p + "sundown",
            config=p + "config",
            summary=p + "summary",
            policy=p + "policy",
            events=p + "events",
            views=p + "views",
        )


@dataclass(frozen=True, slots=True)
class StoredState:
    """What `load()` found in Redis; empty containers and `desired=None` on a
    first start."""

    desired: int | None = None
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    sundown: dict[str, float] = field(default_factory=dict)
    config: dict[str, object] = field(default_factory=dict)
    policy: dict[str, object] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()  # what did not decode and was left out

    @property
    def empty(self) -> bool:
        return (
            self.desired is None
            and not self.containers
            and not self.sundown
            and not self.config
            and not self.policy
            and not self.summaries
        )


@dataclass(frozen=True, slots=True)
class TickWrite:
    """The complete persisted state after one tick; `write_tick` replaces the
    stored state with exactly this (names absent here are deleted)."""

    desired: int
    containers: Mapping[str, Mapping[str, object]]
    sundown: Mapping[str, float] = field(default_factory=dict)
    summaries: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    policy: Mapping[str, object] = field(default_factory=dict)
    view: TickView | None = None  # appended to the followers' stream when set


@dataclass(frozen=True, slots=True)
class SharedState:
    """What a follower reads each tick: the leader's views it has not seen yet
    (oldest first), where to continue from, and the runtime config overrides."""

    cursor: str | None
    views: tuple[TickView, ...] = ()
    config: dict[str, object] = field(default_factory=dict)
    skipped: int = 0  # views that did not decode (untrusted data), left out


def decode_views(
    entries: list[tuple[str, Mapping[str, str]]], cursor: str | None
) -> tuple[str | None, tuple[TickView, ...], int]:
    """(new cursor, decoded views, how many were skipped) from XRANGE entries."""
    views: list[TickView] = []
    skipped = 0
    for entry_id, fields in entries:
        cursor = entry_id
        try:
            views.append(decode_view(fields["v"]))
        except (KeyError, ValueError):
            skipped += 1
    return cursor, tuple(views), skipped


def container_record(
    info: ContainerInfo, *, category: Category | str, score: float | None
) -> dict[str, object]:
    """The stored record of one container (SPEC §6 fields)."""
    return {
        "name": info.name,
        "id": info.id,
        "category": str(category),
        "score": score,
        "host_port": info.host_port,
        "image": info.image,
        "created": info.created,
    }


# ------------------------------------------------------------------ pure encoding


def encode_json(value: object, *, what: str = "value") -> str:
    """Compact, strict JSON; NaN/±inf are stored as null so any client can read it.

    Raises TypeError naming `what` when the value is not JSON-encodable.
    """
    try:
        return json.dumps(strict_json(value), separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what}: cannot be stored as JSON: {exc}") from exc


def decode_json(text: str, *, what: str = "value") -> object:
    """Parse a stored JSON value; ValueError naming `what` if it is not JSON."""
    try:
        return json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: invalid JSON {text!r:.80}") from exc


def encode_desired(desired: int) -> str:
    if isinstance(desired, bool) or not isinstance(desired, int) or desired < 0:
        raise ValueError(f"desired: must be an integer >= 0, got {desired!r}")
    return str(desired)


# A desired count is a few digits; a longer text is not parsed at all.
MAX_DESIRED_TEXT = 20


def decode_desired(text: str | None) -> int | None:
    if text is None:
        return None
    if len(text) > MAX_DESIRED_TEXT:
        raise ValueError(f"desired: not an integer: {text!r:.80}")
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"desired: not an integer: {text!r:.80}") from None
    if value < 0:
        raise ValueError(f"desired: negative: {value}")
    return value


def encode_json_field(name: str, value: object, *, what: str) -> str:
    """One field of a hash holding one JSON value per field."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what}: field names must be non-empty strings, got {name!r}")
    return encode_json(value, what=f"{what}[{name}]")


def encode_json_hash(mapping: Mapping[str, object], *, what: str) -> dict[str, str]:
    """Hash fields holding one JSON value each."""
    return {name: encode_json_field(name, value, what=what) for name, value in mapping.items()}


def decode_json_hash(raw: Mapping[str, str], *, what: str) -> dict[str, object]:
    return {name: decode_json(text, what=f"{what}[{name}]") for name, text in raw.items()}


def encode_record_field(name: str, record: Mapping[str, object], *, what: str) -> str:
    """One record of a records hash (``containers``, ``summary``): its JSON,
    with the name it is stored under."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what}: names must be non-empty strings, got {name!r}")
    if not isinstance(record, Mapping):
        raise TypeError(f"{what}[{name}]: a record must be a mapping, got {type(record).__name__}")
    if record.get("name", name) != name:
        raise ValueError(f"{what}[{name}]: record is named {record['name']!r}")
    return encode_json({"name": name, **record}, what=f"{what}[{name}]")


def _encode_records(
    records: Mapping[str, Mapping[str, object]], *, what: str
) -> dict[str, str]:
    return {name: encode_record_field(name, record, what=what) for name, record in records.items()}


def _decode_records(raw: Mapping[str, str], *, what: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, text in raw.items():
        value = decode_json(text, what=f"{what}[{name}]")
        if not isinstance(value, dict):
            raise ValueError(f"{what}[{name}]: not a JSON object: {text!r:.80}")
        out[name] = value
    return out


def encode_containers(records: Mapping[str, Mapping[str, object]]) -> dict[str, str]:
    """`containers` hash fields: name -> JSON record (the record's `name` is the key)."""
    return _encode_records(records, what="containers")


def decode_containers(raw: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    return _decode_records(raw, what="containers")


def encode_sundown_field(name: str, when: float) -> str:
    """One `sundown` field: epoch seconds (a finite number)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"sundown: names must be non-empty strings, got {name!r}")
    if isinstance(when, bool) or not isinstance(when, (int, float)) or not math.isfinite(when):
        raise ValueError(f"sundown[{name}]: must be a finite epoch time, got {when!r}")
    return repr(float(when))


def encode_sundown(marks: Mapping[str, float]) -> dict[str, str]:
    """`sundown` hash fields: name -> epoch seconds (a finite number)."""
    return {name: encode_sundown_field(name, when) for name, when in marks.items()}


def decode_sundown(raw: Mapping[str, str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, text in raw.items():
        try:
            out[name] = float(text)
        except ValueError:
            raise ValueError(f"sundown[{name}]: not a number: {text!r:.80}") from None
    return out


def decode_state(
    desired: str | None,
    containers: Mapping[str, str],
    sundown: Mapping[str, str],
    config: Mapping[str, str],
    summary: Mapping[str, str],
    policy: Mapping[str, str],
) -> StoredState:
    """The `StoredState` of one `load()`'s replies, decoded field by field: what
    does not decode is left out and described in `problems` (in key order)."""
    problems: list[str] = []
    try:
        count = decode_desired(desired)
    except ValueError as exc:
        count = None
        problems.append(str(exc))

    def each(raw: Mapping[str, str], decode: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, text in raw.items():
            try:
                out.update(decode({name: text}))
            except ValueError as exc:
                problems.append(str(exc))
        return out

    return StoredState(
        desired=count,
        containers=each(containers, decode_containers),
        sundown=each(sundown, decode_sundown),
        config=each(config, lambda one: decode_json_hash(one, what="config")),
        policy=each(policy, lambda one: decode_json_hash(one, what="policy")),
        summaries=each(summary, lambda one: _decode_records(one, what="summary")),
        problems=tuple(problems),
    )


def encode_event(kind: str, data: Mapping[str, object], ts: float) -> dict[str, str]:
    """Stream entry fields of one ledger event."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"event kind must be a non-empty string, got {kind!r}")
    if not isinstance(data, Mapping):
        raise TypeError(f"event {kind!r}: data must be a mapping, got {type(data).__name__}")
    return {"kind": kind, "ts": repr(float(ts)), "data": encode_json(data, what=f"event {kind!r}")}


def decode_event(entry_id: str, fields: Mapping[str, str]) -> dict[str, Any]:
    """`{"id", "kind", "ts", "data"}` from one stream entry."""
    try:
        kind = fields["kind"]
        ts = float(fields["ts"])
        data = decode_json(fields["data"], what=f"event {entry_id}")
    except KeyError as exc:
        raise ValueError(f"event {entry_id}: missing field {exc.args[0]!r}") from None
    except ValueError as exc:
        raise ValueError(f"event {entry_id}: {exc}") from None
    return {"id": entry_id, "kind": kind, "ts": ts, "data": data}


_STREAM_ID = re.compile(r"\d{1,20}(-\d{1,20})?")


def validate_stream_id(value: str) -> str:
    """A stream id such as ``1700000000000-3`` (or its millisecond part alone)."""
    if (not isinstance(value, str) or not _STREAM_ID.fullmatch(value)
            or any(int(part) > _STREAM_ID_MAX for part in value.split("-"))):
        raise ValueError(f"before: not a stream id (like 1700000000000-0): {value!r:.80}")
    return value


_STREAM_ID_MAX = 2**64 - 1  # both parts of a Redis stream id are unsigned 64-bit


def encode_tick(state: TickWrite) -> dict[str, Any]:
    """All fields one `write_tick` sends: ``desired`` (str), for each name in
    `TICK_HASHES` the complete set of hash fields, and the encoded ``view`` when given."""
    out: dict[str, Any] = {
        "desired": encode_desired(state.desired),
        "containers": encode_containers(state.containers),
        "sundown": encode_sundown(state.sundown),
        "summary": _encode_records(state.summaries, what="summaries"),
        "policy": encode_json_hash(state.policy, what="policy"),
    }
    if state.view is not None:
        out["view"] = encode_view(state.view)
    return out


def plan_hash_replace(
    new: Mapping[str, str], known: set[str]
) -> tuple[dict[str, str], list[str]]:
    """(HSET mapping, HDEL fields) turning a hash whose fields are `known` into `new`."""
    return dict(new), sorted(known.difference(new))
