"""Choosing what to analyse: one space, then documents by source, label, sample, limit.

Only metadata is read to decide; vectors are fetched for the chosen ids alone.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InvalidRequest, NotFound
from ..store import Space, SpaceCollection, Store
from ..store.keys import SpaceQuery
from ..store.sampling import sample_rank, stratified_sample
from ..store.selection import Selection
from ..store.vector_memory import normalise_rows


class AnalyzeError(InvalidRequest):
    """A user-facing, one-line problem with what was asked of analyze."""


class NothingMatches(NotFound, AnalyzeError):
    """A selection (or a space asked for) that matches nothing in the store: NotFound on
    every front end (404 over HTTP), and still an AnalyzeError for older callers."""


@dataclass
class Corpus:
    """What analysis works on: rows in id order, vectors unit length."""

    space: Space
    ids: list[str]
    vectors: np.ndarray
    labels: list[str | None]
    texts: list[str]
    hashes: list[str]

    @property
    def has_labels(self) -> bool:
        return all(label is not None for label in self.labels) and len(set(self.labels)) > 1


def pick_space(
    store: Store,
    provider: str | None = None,
    model: str | None = None,
    task_type: str | None = None,
    dims: int | None = None,
) -> Space:
    """The one space matching the options; with several candidates, say which exist."""
    return choose_space(store.spaces(), store.location, provider, model, task_type, dims)


def choose_space(
    spaces: list[Space],
    location: str,
    provider: str | None = None,
    model: str | None = None,
    task_type: str | None = None,
    dims: int | None = None,
) -> Space:
    """`pick_space` over a list of spaces (a service's, for the CLI's --server mode)."""
    query = SpaceQuery(provider, model, task_type, dims)
    matching = [s for s in spaces if query.matches(s)]
    if len(matching) == 1:
        return matching[0]
    listed = "; ".join(s.name for s in spaces) or "none"
    if not spaces:
        raise NothingMatches(f"store {location} is empty; ingest documents first")
    if not matching:
        raise NothingMatches(f"no space matches; the store has: {listed}")
    raise AnalyzeError(
        f"{len(matching)} spaces match; pick one with "
        f"<<space|--provider/--model/--task-type/--dims>> (spaces: {listed})"
    )


def resolve_space_spec(spaces: list[Space], location: str, space: Any) -> Space:
    """One of `spaces` from a Space, "provider:model[:dims]", or None for the only one."""
    if isinstance(space, Space):
        if space not in spaces:
            raise NothingMatches(f"the store has no {space.describe()}")
        return space
    if space is None:
        return choose_space(spaces, location)
    if not isinstance(space, str):
        raise InvalidRequest(f"space must be a Space or 'provider:model[:dims]', not {space!r}")
    query = Space.parse(space)
    return choose_space(spaces, location, query.provider, query.model, query.task_type, query.dims)


def _matches(value: str | None, globs: list[str] | None) -> bool:
    if not globs:
        return True
    return value is not None and any(fnmatch.fnmatchcase(value, g) for g in globs)


def select_ids(
    store: Store,
    space: Space,
    selection: Selection,
    records: Iterable[tuple[str, dict[str, Any]]] | None = None,
    may_be_empty: bool = False,
) -> list[str]:
    """Ids to analyse, sorted, after source/label filters, per-class sampling and limit.

    `records` are (id, metadata) pairs already in memory; by default they are read.
    None matching is NothingMatches, unless `may_be_empty`.
    """
    if records is None:
        records = _collection(store, space).iter_metadata()
    chosen: dict[str, str | None] = {}
    seen_labels: set[str] = set()
    for doc_id, meta in records:
        label = meta.get("label")
        if label is not None and len(seen_labels) < 1000:
            seen_labels.add(label)
        if _matches(meta.get("source"), selection.sources) and _matches(label, selection.labels):
            chosen[doc_id] = label
    if selection.per_class is not None:
        by_label: dict[str, list[str]] = {}
        for doc_id, label in chosen.items():
            by_label.setdefault(label or "", []).append(doc_id)
        keep = stratified_sample(by_label, selection.per_class, selection.seed)
        chosen = {k: v for k, v in chosen.items() if k in keep}
    ids = sorted(chosen)
    if selection.limit is not None and len(ids) > selection.limit:
        # a seeded sample, not the first N in id order (that would be one label's posts)
        keep = set(sorted(ids, key=lambda i: sample_rank(i, selection.seed))[: selection.limit])
        ids = [i for i in ids if i in keep]
    if not ids and not may_be_empty:
        known = sorted(seen_labels)
        hint = ""
        if selection.labels and known:
            shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
            hint = f" (its labels: {shown}; globs like 'sci.*' match several)"
        raise NothingMatches(
            f"no documents in {space.describe()} match the selection{hint}; "
            "check the sources and labels asked for (the store's stats list them)"
        )
    return ids


def load_corpus(
    store: Store,
    space: Space,
    selection: Selection,
    with_text: bool = True,
    ids: list[str] | None = None,
    previous: Corpus | None = None,
) -> Corpus:
    """The selection's documents (or exactly `ids`, chosen by the caller) with unit vectors.

    With `previous` (a corpus with texts this process loaded before from the same space),
    documents it holds with the same content hash are copied from it, and only the others
    are read from Chroma: an update after an analysis reads the new documents' vectors,
    not the 11,314 x 3072 floats again (about 4 s here, most of an update). Only in a
    space whose vectors embedlab makes from the texts (`Space.embeds_text`): there a
    stored vector never changes while its text's hash does not. Labels are read now."""
    collection = _collection(store, space)
    if ids is not None:  # exactly these, chosen by the caller
        vectors, metadatas, texts = collection.load(ids, with_text=with_text)
        normalise_rows(vectors)
        labels = [m.get("label") for m in metadatas]
        hashes = [m.get("content_hash", "") for m in metadatas]
        return Corpus(
            space=space, ids=ids, vectors=vectors, labels=labels, texts=texts, hashes=hashes
        )
    records = collection.all_metadata()  # after a first read: what was written since
    ids = select_ids(store, space, selection, records.items())
    hashes = [records[i].get("content_hash", "") for i in ids]
    labels = [records[i].get("label") for i in ids]
    if previous is not None and not (previous.space == space and space.embeds_text):
        previous = None
    had = {doc_id: row for row, doc_id in enumerate(previous.ids)} if previous else {}
    copied, old_rows, fresh = [], [], []
    for row, (doc_id, digest) in enumerate(zip(ids, hashes)):
        old = had.get(doc_id)
        if previous is not None and old is not None and digest and previous.hashes[old] == digest:
            copied.append(row)
            old_rows.append(old)
        else:
            fresh.append(row)
    vectors = np.empty((len(ids), space.dims), dtype=np.float32)
    texts = [""] * len(ids)
    if previous is not None and copied:
        copy_rows(previous.vectors, old_rows, vectors, copied)
        if with_text:
            for row, old in zip(copied, old_rows):
                texts[row] = previous.texts[old]
    if fresh:
        read, metadatas, read_texts = collection.load([ids[r] for r in fresh], with_text)
        normalise_rows(read)
        vectors[fresh] = read
        for row, meta, text in zip(fresh, metadatas, read_texts):
            hashes[row] = meta.get("content_hash", "")  # as read with the vector
            labels[row] = meta.get("label")
            texts[row] = text
    return Corpus(space=space, ids=ids, vectors=vectors, labels=labels, texts=texts, hashes=hashes)


def copy_rows(source: np.ndarray, rows: list[int], target: np.ndarray, into: list[int]) -> None:
    """target[into] = source[rows], a run of consecutive rows at a time: no gathered
    temporary (at 11,314 x 3072 a fresh 139 MB array costs 0.1-0.3 s of page faults
    here, more than the copy)."""
    start = 0
    for end in range(1, len(rows) + 1):
        if end == len(rows) or rows[end] != rows[end - 1] + 1 or into[end] != into[end - 1] + 1:
            count = end - start
            target[into[start] : into[start] + count] = source[rows[start] : rows[start] + count]
            start = end


def _collection(store: Store, space: Space) -> SpaceCollection:
    collection = store.collection(space)
    if collection is None:  # the space went away since it was chosen
        raise NothingMatches(f"the store has no {space.describe()}")
    return collection
