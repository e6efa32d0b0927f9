"""Delta writes: the fields of a tick whose value changed since the store wrote them.

`RedisStore.write_tick` replaces the stored state with a `TickWrite`. Most of a
tick's state is what the previous tick wrote — the same containers, marks,
policy — so a *delta write* sends only the difference: HSET of the fields
whose value changed, HDEL of those that are gone, SET of the desired count if
it moved. Applied in one MULTI/EXEC to the state the store knows Redis holds,
it leaves Redis exactly as a full write would.

That knowledge is a `Written`: per tick hash, each field's value as the caller
passed it and its encoding. A value equal to the one written is neither
encoded nor sent (records are compared as mappings; the policy hash, small and
nested, by its encoding). Fields read from Redis by `load()` carry only their
encoding (`UNKNOWN` value): they are compared after encoding. The store
trusts a `Written` only as long as nothing may have changed Redis behind its
back — the same connection, no failed write — and otherwise writes in full.

Pure: no server, no I/O. Bad data raises here exactly as `encode_tick` does,
but only for the fields that changed; the unchanged ones were checked when
they were first written.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.core.store_codec import (
    TICK_HASHES,
    TickWrite,
    encode_desired,
    encode_json_field,
    encode_record_field,
    encode_sundown_field,
)

__all__ = ["UNKNOWN", "TickDelta", "Written", "diff_tick", "tick_values"]

UNKNOWN: Any = object()  # the Python value of a field read back from Redis


@dataclass(slots=True)
class Written:
    """What Redis holds as far as this store knows: the desired count's text and,
    per tick hash (`TICK_HASHES`), field -> (value passed in, its encoding)."""

    desired: str | None = None
    fields: dict[str, dict[str, tuple[Any, str]]] = field(
        default_factory=lambda: {name: {} for name in TICK_HASHES}
    )

    @classmethod
    def from_redis(cls, desired: str | None, hashes: Mapping[str, Mapping[str, str]]) -> Written:
        """As read by `load()`: encodings only."""
        return cls(desired, {name: {f: (UNKNOWN, text) for f, text in hashes.get(name, {}).items()}
                             for name in TICK_HASHES})

    @classmethod
    def from_tick(cls, state: TickWrite, encoded: Mapping[str, Any]) -> Written:
        """After a full write of `state` (`encode_tick`'s output)."""
        values = tick_values(state)
        return cls(encoded["desired"], {
            name: {f: (_kept(name, values[name][f]), text) for f, text in encoded[name].items()}
            for name in TICK_HASHES
        })

    def field_names(self) -> dict[str, set[str]]:
        return {name: set(fields) for name, fields in self.fields.items()}


@dataclass(frozen=True, slots=True)
class TickDelta:
    """What a delta write sends: `desired` (None: unchanged), and per tick hash
    the fields to HSET and to HDEL."""

    desired: str | None
    hset: Mapping[str, Mapping[str, str]]
    hdel: Mapping[str, list[str]]

    @property
    def empty(self) -> bool:
        return self.desired is None and not any(self.hset.values()) and not any(self.hdel.values())


def tick_values(state: TickWrite) -> dict[str, Mapping[str, Any]]:
    """The values of each tick hash, by its `Keys` attribute name."""
    return {
        "containers": state.containers,
        "sundown": state.sundown,
        "summary": state.summaries,
        "policy": state.policy,
    }


def diff_tick(state: TickWrite, written: Written) -> tuple[TickDelta, Written]:
    """The delta from `written` to `state`, and what Redis holds once it is applied."""
    desired = encode_desired(state.desired)
    values = tick_values(state)
    hset: dict[str, dict[str, str]] = {}
    hdel: dict[str, list[str]] = {}
    after: dict[str, dict[str, tuple[Any, str]]] = {}
    for name in TICK_HASHES:
        before = written.fields.get(name, {})
        new = values[name]
        changed: dict[str, str] = {}
        kept: dict[str, tuple[Any, str]] = {}
        for key, value in new.items():
            prev = before.get(key)
            if prev is not None and prev[0] is not UNKNOWN and name != "policy" and prev[0] == value:
                kept[key] = prev
                continue
            text = _encode(name, key, value)
            if prev is None or prev[1] != text:
                changed[key] = text
            kept[key] = (_kept(name, value), text)
        hset[name] = changed
        hdel[name] = sorted(set(before).difference(new))
        after[name] = kept
    delta = TickDelta(None if desired == written.desired else desired, hset, hdel)
    return delta, Written(desired, after)


def _encode(name: str, key: str, value: Any) -> str:
    if name == "containers":
        return encode_record_field(key, value, what="containers")
    if name == "summary":
        return encode_record_field(key, value, what="summaries")
    if name == "sundown":
        return encode_sundown_field(key, value)
    return encode_json_field(key, value, what="policy")


def _kept(name: str, value: Any) -> Any:
    """The value remembered for comparison: a copy of a record (a caller that
    mutates its dict later must not make it look unchanged)."""
    if name in ("containers", "summary") and isinstance(value, Mapping):
        return dict(value)
    return value if name == "sundown" else UNKNOWN
