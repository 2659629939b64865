"""embedlab: embed documents once into a Chroma store, then cluster, map and explore them.

import embedlab
lab = embedlab.open("./lab")
lab.ingest_newsgroups(categories=["sci.*"], per_class=150)
a = lab.analyze(labels=["sci.*"], k=4)
a.per_class
"""

from __future__ import annotations

from .errors import (
    Cancelled,
    EmbedlabError,
    InvalidRequest,
    NotFound,
    ProviderError,
    StoreBusy,
    StoreDamaged,
    StoreError,
    TransientError,
)

__all__ = [
    "Cancelled",
    "EmbedlabError",
    "InvalidRequest",
    "NotFound",
    "ProviderError",
    "StoreBusy",
    "StoreDamaged",
    "StoreError",
    "TransientError",
]
