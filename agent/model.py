"""Plain records shared by the layers: the public path of `agent.core.records`.

Embedding code imports its records from here (``from agent.model import Sample``);
the project's own modules use `agent.core.records`.
"""
from agent.core.records import (
    CATEGORY_CODES,
    Category,
    ContainerInfo,
    ContainerScore,
    QueueItem,
    Sample,
    Snapshot,
)

__all__ = [
    "Category",
    "ContainerInfo",
    "Sample",
    "ContainerScore",
    "QueueItem",
    "Snapshot",
    "CATEGORY_CODES",
]
