"""Embedding a free-text query once per space; repeats are served from the store."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import Forbidden
from ..store import SpaceCollection
from ..store.keys import content_hash, normalise_text
from .pipeline import IngestReport, RetryingEmbedder, RetryPolicy
from .providers import Provider


def query_vector(
    collection: SpaceCollection,
    text: str,
    make_provider: Callable[[], Provider],
    retry: RetryPolicy | None = None,
    spend: bool = True,
) -> tuple[np.ndarray, list[dict]]:
    """(unit vector of `text` in the collection's space, ledger entries of what it cost).

    A query seen before, or equal to a stored document's text, costs nothing; a new one
    costs one request and is cached for next time.
    """
    text = normalise_text(text)
    key = content_hash(text)
    cached = collection.cached_query(key)
    if cached is None:
        cached = collection.vectors_by_hash([key]).get(key)
    if cached is not None:
        return cached, []
    if not spend:
        raise Forbidden(
            "this query is not cached and embedding it would spend; the service is "
            "read-only (search by id or by vector, or ask for a writable service)"
        )
    report = IngestReport(space=collection.space)
    caller = RetryingEmbedder(make_provider(), retry or RetryPolicy(), report, kind="query")
    vector = caller([text]).vectors[0]
    collection.save_query(key, text, vector)
    return vector, report.ledger
