"""What the HTTP API and the feed send: snapshots, events and settings shaped as JSON.

Pure functions of the agent's records (no request, no app), each next to the
schema the OpenAPI document gives its output, so the two are read — and changed —
together; schemathesis holds the running server to them. Every body goes through
`dumps`: strict JSON, with non-finite floats written as null.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from quart import Response

from agent.core.jsonsafe import strict_json
from agent.core.lease import LeaseView
from agent.core.records import Category, ContainerInfo, ContainerScore, QueueItem, Snapshot
from agent.core.settings import Settings
from .openapi import Named

__all__ = [
    "dumps",
    "json_response",
    "queue_json",
    "stats_json",
    "queue_status_json",
    "container_json",
    "events_json",
    "history_json",
    "config_json",
    "config_value_schema",
    "balancer_json",
    "lease_json",
]

_NUM = {"type": "number", "nullable": True}


def dumps(value: object) -> str:
    """Compact strict JSON; what JSON has no type for is written as its `str`."""
    return json.dumps(strict_json(value), allow_nan=False, separators=(",", ":"), default=str)


def json_response(value: object, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(dumps(value), status=status, headers=dict(headers or {}), mimetype="application/json")


# --------------------------------------------------------------------------- the queue

CATEGORY = Named("Category", {"type": "string", "enum": [str(c) for c in Category]})

QUEUE_ITEM = Named("QueueItem", {
    "type": "object",
    "description": "One container in the queue. `dns_name`, `score` and "
    "`utilization_category` are the compat fields; the others are additions.",
    "required": ["dns_name", "score", "utilization_category", "weight"],
    "properties": {
        "dns_name": {"type": "string"},
        "score": {**_NUM, "minimum": 0, "maximum": 100},
        "utilization_category": CATEGORY,
        "weight": {**_NUM, "minimum": 0, "maximum": 1},
        "address": {"type": "string", "nullable": True},
        "port": {"type": "integer", "nullable": True},
        "id": {"type": "string", "nullable": True},
    },
})

QUEUE = Named("Queue", {
    "type": "array",
    "description": "Best container first; SUNDOWN ones last with weight 0.",
    "items": QUEUE_ITEM,
})


def queue_json(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The queue as the compat WebSocket message carries it (SPEC §4)."""
    return [strict_json(item.to_json()) for item in snapshot.queue]


TRAFFIC = Named("Traffic", {
    "type": "object",
    "description": "What the load balancer saw of one container over the last tick "
    "(agent.core.traffic).",
    "required": ["carried", "requests", "rate", "in_flight", "response_time"],
    "properties": {
        "carried": {"type": "boolean", "description": "it answered requests this tick"},
        "estimated": {"type": "boolean",
                      "description": "response_time was estimated from this tick's reading"},
        "requests": {"type": "integer", "minimum": 0, "description": "answered this tick"},
        "answered": {"type": "integer", "minimum": 0,
                     "description": "answered since the balancer has the server"},
        "rate": {**_NUM, "minimum": 0, "description": "requests per second"},
        "in_flight": {"type": "integer", "minimum": 0,
                      "description": "sent and not answered yet, or queued"},
        "response_time": {**_NUM, "description": "seconds: mean of the last interval"},
        "average_response_time": {**_NUM,
                                  "description": "seconds: the balancer's 1024-request mean"},
        "responses_5xx": {"type": "integer", "minimum": 0, "description": "this tick"},
        "errors": {"type": "integer", "minimum": 0,
                   "description": "5xx and invalid answers this tick"},
        "status": {"type": "string", "description": "the server's status at the balancer"},
    },
})

LIMITS = Named("Limits", {
    "type": "object",
    "description": "A worker's resource limits (CONTAINER_CPUS, CONTAINER_MEMORY); null = none.",
    "properties": {
        "cpus": {**_NUM, "description": "cores"},
        "memory": {"type": "integer", "nullable": True, "description": "bytes"},
    },
})

QUEUE_STATUS = Named("QueueStatus", {
    "type": "object",
    "required": ["tick", "time", "desired", "running", "queue"],
    "properties": {
        "tick": {"type": "integer", "minimum": 0},
        "time": {**_NUM, "description": "epoch seconds of the snapshot"},
        "desired": {"type": "integer", "minimum": 0},
        "running": {"type": "integer", "minimum": 0},
        "queue": QUEUE,
        "traffic": {"type": "object", "additionalProperties": TRAFFIC,
                    "description": "per container, what the balancer saw (empty without one)"},
        "limits": {"type": "object", "additionalProperties": LIMITS,
                   "description": "per container, its CPU and memory limits"},
    },
})


def queue_status_json(snapshot: Snapshot) -> dict[str, Any]:
    """``GET /queue``: the queue, the counts, and the balancer's figures."""
    return {
        "tick": snapshot.tick,
        "time": snapshot.time,
        "desired": snapshot.desired,
        "running": snapshot.running,
        "queue": queue_json(snapshot),
        "traffic": {name: strict_json(t.to_json()) for name, t in snapshot.traffic.items()},
        "limits": {name: {"cpus": i.cpus, "memory": i.memory}
                   for name, i in snapshot.containers.items()},
    }


# --------------------------------------------------------------------------- scores

_SCORE_KINDS = ("cpu_score", "memory_score", "network_score", "availability_score", "overall_score")

STAT = Named("Stat", {
    "type": "object",
    "required": ["id", "name", *_SCORE_KINDS, "utilization_category"],
    "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        **{kind: _NUM for kind in _SCORE_KINDS},
        "utilization_category": CATEGORY,
    },
})
STATS = {"type": "array", "items": STAT}


def stats_json(snapshot: Snapshot) -> list[dict[str, Any]]:
    """The compat `/stats` array (SPEC §7)."""
    out = []
    for s in snapshot.scores:
        info = snapshot.containers.get(s.name)
        out.append(strict_json({
            "id": s.id or (info.id if info is not None else ""),
            "name": s.name,
            **{kind: getattr(s, kind) for kind in _SCORE_KINDS},
            "utilization_category": str(s.category),
        }))
    return out


TRAFFIC_REF: dict[str, Any] = {"allOf": [TRAFFIC]}

CONTAINER = Named("Container", {
    "type": "object",
    "required": ["name", "id", "utilization_category", "overall_score", "weight"],
    "properties": {
        "name": {"type": "string"},
        "id": {"type": "string"},
        "utilization_category": CATEGORY,
        **{kind: _NUM for kind in _SCORE_KINDS},
        "weight": _NUM,
        "anomaly": {"type": "boolean", "description": "last response time outside its band"},
        "slope": {**_NUM, "description": "least-squares slope of the overall score, per tick"},
        "forecast": {**_NUM, "description": "forecast of the overall score"},
        "stale": {"type": "boolean"},
        "queue_position": {"type": "integer", "nullable": True, "minimum": 0},
        "image": {"type": "string", "nullable": True},
        "status": {"type": "string", "nullable": True},
        "created": {**_NUM, "description": "epoch seconds"},
        "address": {"type": "string", "nullable": True},
        "host_port": {"type": "integer", "nullable": True},
        "cpus": {**_NUM, "description": "CPU limit in cores (CONTAINER_CPUS); null = none"},
        "memory": {"type": "integer", "nullable": True,
                   "description": "memory limit in bytes (CONTAINER_MEMORY); null = none"},
        "traffic": {**TRAFFIC_REF, "nullable": True,
                    "description": "what the balancer saw this tick (null without one)"},
    },
})


def _resolve_name(snapshot: Snapshot, name: str) -> str | None:
    """`name` itself when the snapshot knows it, else the container whose id
    (full, or a prefix of 12+ characters) it is."""
    if name in snapshot.containers or any(s.name == name for s in snapshot.scores):
        return name
    if len(name) < 12:
        return None
    for s in snapshot.scores:
        if s.id and s.id.startswith(name):
            return s.name
    for n, i in snapshot.containers.items():
        if i.id and i.id.startswith(name):
            return n
    return None


def container_json(snapshot: Snapshot, name: str) -> dict[str, Any] | None:
    """``GET /containers/{name}``: scores, category, weight and engine facts; None if unknown."""
    found = _resolve_name(snapshot, name)
    if found is None:
        return None
    score = next((s for s in snapshot.scores if s.name == found), None)
    info = snapshot.containers.get(found)
    position = next((i for i, q in enumerate(snapshot.queue) if q.dns_name == found), None)
    item = snapshot.queue[position] if position is not None else None
    record: dict[str, Any] = strict_json({
        "name": found,
        "id": (score.id if score is not None and score.id else None) or (info.id if info else ""),
        **_score_fields(score, item),
        "queue_position": position,
        **_engine_fields(info, item),
        "traffic": None if found not in snapshot.traffic else snapshot.traffic[found].to_json(),
    })
    return record


def _score_fields(score: ContainerScore | None, item: QueueItem | None) -> dict[str, Any]:
    nan = math.nan
    return {
        "utilization_category": str(score.category) if score is not None else "INIT",
        **{kind: getattr(score, kind) if score else nan for kind in _SCORE_KINDS},
        "weight": item.weight if item is not None else (score.weight if score else 0.0),
        "anomaly": bool(score.anomaly) if score else False,
        "slope": score.slope if score else nan,
        "forecast": score.forecast if score else nan,
        "stale": bool(score.stale) if score else False,
    }


def _engine_fields(info: ContainerInfo | None, item: QueueItem | None) -> dict[str, Any]:
    return {
        "image": info.image if info else None,
        "status": info.status if info else None,
        "created": info.created if info else None,
        "address": (item.address if item is not None and item.address else None)
        or (info.address if info else None),
        "host_port": (item.port if item is not None and item.port is not None else None)
        or (info.host_port if info else None),
        "cpus": info.cpus if info else None,
        "memory": info.memory if info else None,
    }


# --------------------------------------------------------------------------- ledger and history

EVENT = Named("Event", {
    "type": "object",
    "required": ["id", "kind", "ts", "data"],
    "properties": {
        "id": {"type": "string", "description": "the event's id (a Redis stream id), usable as `before`"},
        "kind": {"type": "string"},
        "ts": {**_NUM, "description": "epoch seconds"},
        "data": {"type": "object", "description": "the decision's inputs, reason and message"},
    },
})

EVENT_PAGE = Named("EventPage", {
    "type": "object",
    "required": ["events", "next_before"],
    "properties": {
        "events": {"type": "array", "items": EVENT},
        "next_before": {
            "type": "string",
            "nullable": True,
            "description": "pass as `before` for the next (older) page; null on the last page",
        },
    },
})


def events_json(items: Iterable[Mapping[str, Any]], limit: int) -> dict[str, Any]:
    """``GET /events``: one page of at most `limit` events and the id to continue from."""
    out = [
        {
            "id": str(e.get("id")),
            "kind": str(e.get("kind", "")),
            "ts": _as_float(e.get("ts")),
            "data": e.get("data") if isinstance(e.get("data"), Mapping) else {"value": e.get("data")},
        }
        for e in list(items)[:limit]
    ]
    next_before = out[-1]["id"] if len(out) == limit and out else None
    return {"events": out, "next_before": next_before}


def _as_float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


HISTORY = Named("History", {
    "type": "object",
    "required": ["points"],
    "properties": {
        "points": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["time", "desired", "running"],
                "properties": {
                    "time": {"type": "number"},
                    "desired": {"type": "integer"},
                    "running": {"type": "integer"},
                },
            },
        }
    },
})


def history_json(points: Iterable[tuple[float, int, int]]) -> dict[str, Any]:
    """``GET /history``: desired and running counts over time, oldest first."""
    return {
        "points": [{"time": float(t), "desired": int(d), "running": int(r)} for t, d, r in list(points)]
    }


# --------------------------------------------------------------------------- decisions and health

DECISION = Named("Decision", {
    "type": "object",
    "description": "What the agent decided, with the reason as data (also recorded in the ledger).",
    "required": ["action", "reason"],
    "properties": {
        "action": {"type": "string", "description": "scale_up, scale_down, sundown or none"},
        "reason": {"type": "string", "description": "a stable reason code"},
        "message": {"type": "string", "description": "a sentence with the numbers"},
        "name": {"type": "string", "description": "the drained container (sundown)"},
        "replacement": {"type": "boolean", "description": "a replacement keeps the pool at its floor"},
        "desired": {"type": "integer"},
        "add": {"type": "integer"},
        "sundown": {"type": "array", "items": {"type": "string"}},
        "inputs": {"type": "object"},
    },
})

HEALTH = Named("Health", {
    "type": "object",
    "required": ["alive", "role", "agent_id", "leader"],
    "properties": {
        "alive": {"type": "boolean"},
        "last_tick_age": {**_NUM, "description": "seconds since the last tick ended"},
        "role": {"type": "string", "enum": ["leader", "follower"],
                 "description": "leader: this agent plans and acts; follower: it serves "
                 "reads and answers changes with 409"},
        "agent_id": {"type": "string", "description": "this agent's id (host:pid:random)"},
        "leader": {
            "type": "object", "nullable": True,
            "description": "the leader as this agent last saw it (null: none known)",
            "required": ["id", "url", "token"],
            "properties": {
                "id": {"type": "string"},
                "url": {"type": "string", "nullable": True},
                "token": {"type": "integer", "description": "its fencing token"},
            },
        },
        "lease_error": {"type": "string", "nullable": True,
                        "description": "why the last lease attempt got no answer"},
        "error": {"type": "string"},
        "detail": {"type": "string"},
    },
})


def lease_json(lease: LeaseView) -> dict[str, Any]:
    """The role part of ``/healthz``."""
    holder = lease.holder
    return {
        "role": lease.role,
        "agent_id": lease.me,
        "leader": None if holder is None else
        {"id": holder.agent_id, "url": holder.url, "token": holder.token},
        "lease_error": lease.error,
    }


def health_json(health: Mapping[str, Any], lease: LeaseView) -> tuple[dict[str, Any], int]:
    """``GET /healthz``: the agent's liveness report and role, 503 with a reason when
    not alive."""
    body = {**health, **lease_json(lease)}
    if health.get("alive"):
        return body, 200
    age = health.get("last_tick_age")
    detail = f"the tick loop is not running (last tick {age} s ago)"
    return {**body, "error": "not_alive", "detail": detail}, 503


READY = Named("Ready", {
    "type": "object",
    "required": ["ready", "checks"],
    "properties": {
        "ready": {"type": "boolean"},
        "checks": {
            "type": "object",
            "description": "component → \"ok\" or the reason it is not",
            "additionalProperties": {"type": "string"},
        },
        "error": {"type": "string"},
        "detail": {"type": "string"},
    },
})


def ready_json(ok: bool, checks: Mapping[Any, Any]) -> tuple[dict[str, Any], int]:
    """``GET /readyz``: the readiness checks, 503 naming the failing ones."""
    named = {str(k): str(v) for k, v in checks.items()}
    if ok:
        return {"ready": True, "checks": named}, 200
    reasons = "; ".join(f"{k}: {v}" for k, v in named.items() if v != "ok") or "not ready"
    return {"ready": False, "checks": named, "error": "not_ready", "detail": reasons}, 503


# --------------------------------------------------------------------------- balancer

BALANCER = Named("Balancer", {
    "type": "object",
    "description": "The load balancer the agent keeps equal to its pool (SPEC §8); "
    "`enabled` false with BALANCER=none.",
    "required": ["enabled", "kind"],
    "properties": {
        "enabled": {"type": "boolean"},
        "kind": {"type": "string", "description": "haproxy, or none"},
        "mode": {"type": "string", "nullable": True, "description": "embedded or external"},
        "backend": {"type": "string"},
        "socket": {"type": "string", "description": "its runtime API"},
        "frontend": {"type": "string", "nullable": True,
                     "description": "where the embedded balancer listens"},
        "application": {"type": "string", "nullable": True,
                        "description": "the application's address (embedded)"},
        "algorithm": {"type": "string", "nullable": True},
        "pid": {"type": "integer", "nullable": True},
        "reachable": {"type": "boolean", "nullable": True},
        "last_error": {"type": "string", "nullable": True},
        "servers": {"type": "object", "description": "the agent's servers as read back: "
                    "name → {weight, status}"},
        "weights_sent": {"type": "object",
                         "description": "name → {weight, drain} of the last sync's spec"},
        "last_sync": {"type": "object", "nullable": True,
                      "description": "at (epoch s), ok, error, duration, commands, failures, "
                      "added, removed, pending"},
        "observed": {"type": "object", "nullable": True},
    },
})


def balancer_json(state: Mapping[str, Any]) -> dict[str, Any]:
    """``GET /balancer``: the adapter's state as strict JSON."""
    out: dict[str, Any] = strict_json(dict(state))
    return out


# --------------------------------------------------------------------------- settings


def config_json(settings: Settings) -> dict[str, Any]:
    """``GET /config``: the effective settings, secrets redacted, as strict JSON."""
    current: dict[str, Any] = strict_json(settings.as_dict(redact=True))
    return current


def config_value_schema(value: Any) -> dict[str, Any]:
    """JSON schema of a setting, inferred from its current (JSON-ready) value."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "items": {"type": "string"}}
    # None (unset optional setting): any scalar, or null.
    return {"nullable": True, "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}


CONFIG = Named("Config", lambda settings: {
    "type": "object",
    "description": "The effective configuration; secrets are redacted.",
    "properties": {k: config_value_schema(v) for k, v in config_json(settings).items()},
})
