"""The leader lease and fenced writes in Redis (the pure rules are `agent.core.lease`).

Two keys per pool, beside the state (`agent.core.store_codec.Keys`)::

    da:<app>:leader   string  the holder record (JSON: id, token, url), PX TTL
    da:<app>:fence    string  the last fencing token handed out (INCR only)

`ACQUIRE_OR_RENEW` runs as one Lua script, so the check and the write are one
atomic step on the server: the holder renews its own lease (PEXPIRE, same
token); anyone finds a free lease and takes it under a new token from the
counter; nobody renews another's. `RELEASE` deletes the lease only if it is
still ours (a clean stop hands over at once instead of after the TTL).

A fenced write WATCHes the leader key, checks that it still holds exactly our
record, and then runs the caller's MULTI/EXEC: if the lease changed hands (or
expired) in between, Redis aborts the EXEC. Either way the write is refused
with `FencedOut` and nothing of it is applied — a paused old leader that wakes
after a new one took over cannot write its plan, so it never acts on it.

These functions are blocking (redis-py): the store calls them in its worker
threads, under its outage handling.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import redis.client
import redis.exceptions

from agent.core.errors import FencedOut
from agent.core.lease import Holder

__all__ = [
    "FencedOut",
    "LeaseKeys",
    "acquire_or_renew",
    "fenced_pipeline",
    "read_holder",
    "release",
]

# KEYS[1] leader, KEYS[2] fence; ARGV[1] agent id, ARGV[2] TTL in ms, ARGV[3] url.
# Returns the holder record after the script (ours when we hold the lease).
_ACQUIRE_OR_RENEW = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' and record['id'] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return current
end
local token = redis.call('INCR', KEYS[2])
local url = cjson.null
if ARGV[3] ~= '' then url = ARGV[3] end
local record = cjson.encode({id = ARGV[1], token = token, url = url})
redis.call('SET', KEYS[1], record, 'PX', ARGV[2])
return record
"""

# KEYS[1] leader; ARGV[1] agent id, ARGV[2] token. 1 when released.
_RELEASE = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, record = pcall(cjson.decode, current)
if ok and type(record) == 'table' and record['id'] == ARGV[1]
   and tostring(record['token']) == ARGV[2] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseKeys:
    """The lease's key names of one pool (prefix ``da:<app>:``)."""

    def __init__(self, prefix: str) -> None:
        self.leader = prefix + "leader"
        self.fence = prefix + "fence"


def _decode(raw: object) -> Holder | None:
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else str(raw)
    return Holder.decode(text)  # ValueError on a foreign or corrupt value


def acquire_or_renew(
    client: redis.Redis, keys: LeaseKeys, agent_id: str, ttl: float, url: str | None
) -> Holder | None:
    """One atomic attempt; the holder afterwards (us when we lead)."""
    raw = client.eval(_ACQUIRE_OR_RENEW, 2, keys.leader, keys.fence,
                      agent_id, str(max(1, round(ttl * 1000))), url or "")
    # cjson writes the token as a number; the record is decoded strictly.
    return _decode(raw)


def read_holder(client: redis.Redis, keys: LeaseKeys) -> Holder | None:
    return _decode(client.get(keys.leader))


def release(client: redis.Redis, keys: LeaseKeys, holder: Holder) -> bool:
    """Give the lease up if it is still exactly `holder`'s; True when it was."""
    return bool(client.eval(_RELEASE, 1, keys.leader, holder.agent_id, str(holder.token)))


def fenced_pipeline(
    client: redis.Redis,
    keys: LeaseKeys,
    holder: Holder,
    build: Callable[[redis.client.Pipeline], None],
) -> list[Any]:
    """Run `build`'s commands in one MULTI/EXEC, only while `holder` holds the lease.

    Raises `FencedOut` when the lease is another's (or nobody's) before the
    transaction, or changed hands before EXEC; nothing is applied then.
    """
    with client.pipeline(transaction=True) as pipe:
        try:
            pipe.watch(keys.leader)
            current = _decode(pipe.get(keys.leader))
            if current != holder:
                raise FencedOut(_refusal(holder, current))
            pipe.multi()
            build(pipe)
            result: list[Any] = pipe.execute()
            return result
        except redis.exceptions.WatchError:
            raise FencedOut(_refusal(holder, None, changed=True)) from None


def _refusal(holder: Holder, current: Holder | None, *, changed: bool = False) -> str:
    if changed:
        return (f"write refused: the lease changed hands during the write "
                f"(fencing token {holder.token} is stale)")
    who = "nobody" if current is None else f"{current.agent_id} (token {current.token})"
    return f"write refused: fencing token {holder.token} is stale, the lease is held by {who}"
