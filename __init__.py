"""embedlab: embed documents once into a Chroma store, then cluster, map and explore them.

import embedlab
lab = embedlab.open("./lab")
lab.ingest_newsgroups(categories=["sci.*"], per_class=150)
a = lab.analyze(labels=["sci.*"], k=4)
a.per_class
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    Cancelled,
    Conflict,
    EmbedlabError,
    InvalidRequest,
    NotFound,
    ProviderError,
    ProviderKeyError,
    StoreBusy,
    StoreDamaged,
    StoreError,
    TransientError,
)
from .lab import EmbeddingChoice, Lab, open
from .progress import CancelToken, Progress
from .store.keys import Space

if TYPE_CHECKING:  # what __getattr__ below gives, for a type checker
    from .ingest.pipeline import IngestCancelled, IngestError

__all__ = [
    "CancelToken",
    "Cancelled",
    "Conflict",
    "EmbeddingChoice",
    "IngestCancelled",
    "IngestError",
    "Lab",
    "Progress",
    "Space",
    "open",
    "EmbedlabError",
    "InvalidRequest",
    "NotFound",
    "ProviderError",
    "ProviderKeyError",
    "StoreBusy",
    "StoreDamaged",
    "StoreError",
    "TransientError",
]


def __getattr__(name: str) -> object:
    """IngestError and IngestCancelled, imported when asked for: importing embedlab must
    not import the ingest layer (analysis never needs it)."""
    if name in ("IngestError", "IngestCancelled"):
        from .ingest import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'embedlab' has no attribute {name!r}")
