"""The store: Chroma collections keyed by embedding space, documents keyed by content hash."""

from .chroma_store import SpaceCollection, Store, StoreBusy, StoreError
from .documents import Document
from .keys import Space, content_hash, normalise_text

__all__ = [
    "Document",
    "Space",
    "SpaceCollection",
    "Store",
    "StoreBusy",
    "StoreError",
    "content_hash",
    "normalise_text",
]
