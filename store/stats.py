"""What is in a store: spaces, document counts per source and label, size on disk."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..errors import StoreDamaged
from .chroma_store import Store
from .keys import Space
from .selection import NO_LABEL


def store_stats(store: Store) -> dict[str, Any]:
    """A JSON-ready summary; reads metadata only (never vectors), paged."""
    spaces = []
    for space in store.spaces():
        try:
            collection = store.collection(space)
        except StoreDamaged as exc:  # listed, with the way out; the other spaces as ever
            spaces.append(
                {
                    **_space_fields(space),
                    "documents": store.catalogue_count(space),
                    "damaged": str(exc),
                    "truncated": 0,
                    "needs_vector": 0,
                    "by_source": {},
                    "by_label": {},
                }
            )
            continue
        if collection is None:  # removed since it was listed
            continue
        by_source: Counter[str] = Counter()
        by_label: Counter[str] = Counter()
        truncated = 0
        for _id, meta in collection.iter_metadata():
            by_source[meta.get("source", "?")] += 1
            by_label[meta.get("label", NO_LABEL)] += 1
            truncated += bool(meta.get("truncated"))
        # documents repair kept without a vector are documents all the same
        needs_vector = 0
        for _id, _text, meta in collection.pending():
            by_source[meta.get("source", "?")] += 1
            by_label[meta.get("label", NO_LABEL)] += 1
            needs_vector += 1
        spaces.append(
            {
                **_space_fields(space),
                "documents": sum(by_source.values()),
                "truncated": truncated,
                "needs_vector": needs_vector,
                "by_source": dict(sorted(by_source.items())),
                "by_label": dict(sorted(by_label.items())),
            }
        )
    return {"store": store.location, "spaces": spaces, "disk_bytes": store.disk_bytes()}


def _space_fields(space: Space) -> dict[str, Any]:
    return {
        **space.to_dict(),
        "collection": space.collection_name,
    }
