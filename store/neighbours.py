"""Nearest neighbours within one space, through Chroma's HNSW index.

Lookups by id use the stored vector (no provider, no model); a free-text query's vector
is produced by the caller (ingest embeds and caches it) and passed in here.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import NotFound
from .chroma_store import SpaceCollection, StoreError

SNIPPET_CHARS = 160
_WILDCARDS = set("*?[")


# the header names of an e-mail or news post (20 Newsgroups' among them); a first
# paragraph holding one of them is the post's header block, not what it says
_MAIL_HEADER = re.compile(
    r"^\s*(?:from|subject|organi[sz]ation|lines|nntp-posting-host|distribution|reply-to|"
    r"keywords|summary|article-i\.d\.|message-id|newsgroups|date|sender|path|expires|"
    r"references|followup-to|x-[\w-]+)\s*:",
    re.I,
)
_ATTRIBUTION = re.compile(
    r"^\s*in (?:article|message|reply to)\b|\b(?:writes|wrote|says)\s*:\s*$", re.I
)
_QUOTED = re.compile(r"^\s*(?:>|\|>)")


def body_text(text: str) -> str:
    """What a post says: its text without a leading e-mail/news header block (`From:`,
    `Organization:`, `Lines: 68`...), attribution lines (`In article <...> writes:`) and
    quoted (`>`) lines; the text itself when nothing would be left. For display only:
    the stored text is never changed."""
    lines = text.split("\n")
    start = 0
    blank = next((i for i, line in enumerate(lines) if not line.strip()), len(lines))
    if any(_MAIL_HEADER.match(line) for line in lines[:blank]) and blank < len(lines):
        start = blank  # the first paragraph is a header block
    else:
        while start < len(lines) and _MAIL_HEADER.match(lines[start]):
            start += 1  # header lines with no blank line after them
    kept = [
        line
        for line in lines[start:]
        if line.strip() and not _ATTRIBUTION.search(line) and not _QUOTED.match(line)
    ]
    return "\n".join(kept) if kept else text


def snippet(text: str, width: int = SNIPPET_CHARS) -> str:
    """One line of a document, for tables and reports: the start of its body (a post's
    header lines, attributions and quotes skipped: `body_text`)."""
    flat = " ".join(body_text(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@dataclass
class Neighbour:
    rank: int
    id: str
    label: str | None
    similarity: float
    cluster: int | None
    text: str

    def row(self) -> dict[str, Any]:
        """The row every front end shows, in its column order (NEIGHBOUR_COLUMNS)."""
        return {name: getattr(self, name) for name in NEIGHBOUR_COLUMNS}


NEIGHBOUR_COLUMNS = ("rank", "id", "similarity", "label", "cluster", "text")


def _expand(globs: list[str] | None, known: set[str]) -> list[str] | None:
    if not globs:
        return None
    if not any(_WILDCARDS & set(g) for g in globs):
        return list(globs)
    return sorted(v for v in known if any(fnmatch.fnmatchcase(v, g) for g in globs))


def build_filter(
    collection: SpaceCollection, labels: list[str] | None, sources: list[str] | None
) -> dict[str, Any] | None:
    """A Chroma `where` from label/source globs; wildcards are resolved against the store."""
    known_labels: set[str] = set()
    known_sources: set[str] = set()
    if any(_WILDCARDS & set(g) for g in (labels or []) + (sources or [])):
        known_labels, known_sources = collection.labels_and_sources()
    clauses = []
    for field, values in (
        ("label", _expand(labels, known_labels)),
        ("source", _expand(sources, known_sources)),
    ):
        if values is None:
            continue
        if not values:
            raise NotFound(f"no {field} in {collection.space.describe()} matches the filter")
        clauses.append({field: {"$in": values}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def find_neighbours(
    collection: SpaceCollection,
    vector: np.ndarray,
    k: int,
    exclude_id: str | None = None,
    labels: list[str] | None = None,
    sources: list[str] | None = None,
    clusters_of: Callable[[list[str]], dict[str, int]] | None = None,
) -> list[Neighbour]:
    """The `k` documents most similar to `vector` (cosine), best first, `exclude_id` left out.

    `clusters_of` gives the cluster of each hit in the analysis the caller chose.
    """
    total = collection.count_cached()
    if total == 0:
        raise StoreError(f"{collection.space.describe()} holds no documents; ingest some first")
    where = build_filter(collection, labels, sources)
    wanted = min(k + (exclude_id is not None), total)
    hits = [h for h in collection.nearest(vector, wanted, where) if h[0] != exclude_id][:k]
    return as_neighbours(hits, clusters_of)


def as_neighbours(
    hits: list[tuple[str, float, dict[str, Any], str]],
    clusters_of: Callable[[list[str]], dict[str, int]] | None = None,
) -> list[Neighbour]:
    """(id, similarity, metadata, text) hits, best first, as ranked Neighbours."""
    clusters = clusters_of([h[0] for h in hits]) if clusters_of is not None else {}
    return [
        Neighbour(rank, doc_id, meta.get("label"), round(similarity, 6), clusters.get(doc_id), text)
        for rank, (doc_id, similarity, meta, text) in enumerate(hits, start=1)
    ]
