"""embedlab: embed documents once into a Chroma store, then cluster, map and explore them.

import embedlab
lab = embedlab.open("./lab")
lab.ingest_newsgroups(categories=["sci.*"], per_class=150)
a = lab.analyze(labels=["sci.*"], k=4)
a.per_class

remote = embedlab.connect("http://127.0.0.1:8000")  # a running `embedlab serve`: the same calls
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .api import LabAPI
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
    from .client import RemoteLab
    from .ingest.pipeline import IngestCancelled, IngestError

__all__ = [
    "CancelToken",
    "Cancelled",
    "Conflict",
    "EmbeddingChoice",
    "IngestCancelled",
    "IngestError",
    "Lab",
    "LabAPI",
    "Progress",
    "Space",
    "open",
    "connect",
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


def connect(url: str, token: str | None = None, timeout: float = 600.0) -> RemoteLab:
    """A running `embedlab serve` at `url`, used through the same calls as
    `embedlab.open(path)` (both are `LabAPI`s). `token`: the service's bearer token
    (default: $EMBEDLAB_TOKEN)."""
    from .client import RemoteLab

    return RemoteLab(url, token=token, timeout=timeout)


def __getattr__(name: str) -> object:
    """IngestError and IngestCancelled, imported when asked for: importing embedlab must
    not import the ingest layer (analysis never needs it)."""
    if name in ("IngestError", "IngestCancelled"):
        from .ingest import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'embedlab' has no attribute {name!r}")
