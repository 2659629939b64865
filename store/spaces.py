"""Deleting a space on purpose, with everything that was made from it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..errors import StoreDamaged, StoreError
from .chroma_calls import _first_line, _retry_busy, not_found
from .chroma_store import Store
from .keys import Space

SIDE_KINDS = ("queries", "pending")  # SpaceCollection's side collections


def delete_space(store: Store, space: Space, artifact_kinds: Iterable[str]) -> dict[str, Any]:
    """Remove `space`'s collection, its side collections and the artifacts made in it.

    Artifacts go first, the documents last: a delete that stops half-way leaves a space
    without analyses, never analyses of a space that is gone. Returns the counts.
    """
    name = space.collection_name
    try:
        collection = store.collection(space)
        documents = collection.count() + collection.pending_count() if collection else 0
    except StoreDamaged:  # deleting a damaged space is one way out: count, load nothing
        documents = store.catalogue_count(space)
    gone: dict[str, int] = {"documents": documents, "analyses": 0, "comparisons": 0}
    artifacts = store.artifacts
    for kind in artifact_kinds:
        heads = (
            [h for h in artifacts.heads(kind) if name in json.dumps(h)]
            if kind == "comparison"
            else artifacts.heads(kind, space_collection=name)
        )
        for head in heads:
            key = head.get("id") or head.get("key")
            if key is not None and artifacts.delete(kind, str(key)):
                if kind == "analysis":
                    gone["analyses"] += 1
                elif kind == "comparison":
                    gone["comparisons"] += 1
    artifacts.delete("deletion", name)
    client = store.client
    for side in SIDE_KINDS:
        _drop(client, f"{name}-{side}")
    _drop(client, name)
    store.forget_collection(name)
    return gone


def _drop(client: Any, name: str) -> None:
    try:
        client.get_collection(name, embedding_function=None)
    except Exception as exc:
        if not_found(exc):
            return
        raise StoreError(f"cannot read {name} ({_first_line(exc)}); nothing was deleted") from None
    _retry_busy(lambda: client.delete_collection(name), f"delete of {name}")
