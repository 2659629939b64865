"""Every vector, label and text of a space, read from Chroma once and kept in memory.

What a `keep_vectors` Lab (a long-running service) answers from: re-analysis then
reads nothing from Chroma, and neighbour lookups of a held space cost a scan.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import NotFound, StoreError
from .chroma_store import Store
from .keys import Space

MEMORY_BUDGET = 2 * 1024**3  # bytes of vectors a keep_vectors Lab holds, all spaces together


def row_norms(vectors: np.ndarray) -> np.ndarray:
    """Each row's length, without the n x dims temporary np.linalg.norm makes (~0.1 s
    and 139 MB at 11,314 x 3072); for figures only (see `normalise_rows`)."""
    return np.sqrt(np.einsum("ij,ij->i", vectors, vectors))


def normalise_rows(vectors: np.ndarray) -> None:
    """Make every row unit length, in place (an all-zero row stays zero).

    np.linalg.norm, not `row_norms`: the two round the last bit differently, and UMAP
    and the clusterings downstream amplify a last-bit change into another answer."""
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """A unit-length copy of every row (an all-zero row stays zero; rounded as
    `normalise_rows`)."""
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


@dataclass
class HeldSpace:
    """One space as held: its documents in row order, with unit vectors."""

    ids: list[str]
    vectors: np.ndarray  # float32, one unit row per id
    metadatas: list[dict[str, Any]]
    texts: list[str]
    row_of: dict[str, int] = field(default_factory=dict)  # id -> row
    index: Any = None  # a store.memory_index.MemoryIndex, built on first need
    row_of_hash: dict[str, int] | None = None  # content hash -> row, built on first need

    @classmethod
    def read(cls, ids: list[str], vectors: np.ndarray, metadatas: list, texts: list) -> HeldSpace:
        normalise_rows(vectors)
        held = cls(ids=ids, vectors=vectors, metadatas=metadatas, texts=texts)
        held.row_of = {i: r for r, i in enumerate(ids)}
        return held

    def build_index(self) -> Any:
        if self.index is None:
            from .memory_index import MemoryIndex

            self.index = MemoryIndex(self.vectors, self.metadatas)
        return self.index


@dataclass
class HeldRows:
    """Some rows of a held space, copied out (what analyze.select.Corpus is made of)."""

    ids: list[str]
    vectors: np.ndarray
    labels: list[str | None]
    texts: list[str]
    hashes: list[str]


class VectorMemory:
    """Every vector, label and text of a space, read from Chroma once and kept.

    A long-running service answers many analyses of the same spaces; reading 11,314
    vectors of 3072 dims back out of Chroma each time costs seconds. Documents this Lab
    writes are re-read on next use; a count that moved (another writer on a Chroma
    server) reloads the space.

    Readers take no lock: a held space is a snapshot that is never changed once
    published. A refresh builds the next snapshot beside it (reading Chroma, copying
    rows, extending the search index) and swaps it in, so lookups never wait for it and
    never fall back to Chroma while it runs, except for documents marked changed
    (`forget`) and not yet re-read: while a space has those, Chroma answers it. Whatever
    changes what is held (a refresh, `forget`, `drop`) runs one at a time: a write
    waits for a running refresh, so none undoes another.
    """

    def __init__(self, budget_bytes: int = MEMORY_BUDGET) -> None:
        self._lock = threading.Lock()  # brief: publishing a snapshot, marking changes
        self._changing = threading.RLock()  # refreshes, marks and drops, one at a time
        self._spaces: dict[Space, HeldSpace] = {}
        self._stale: dict[Space, frozenset[str]] = {}
        self.budget_bytes = budget_bytes

    def _fits(self, space: Space, count: int) -> bool:
        held = sum(h.vectors.nbytes for s, h in list(self._spaces.items()) if s != space)
        return held + count * space.dims * 4 <= self.budget_bytes

    def hold(self, store: Store, space: Space) -> bool:
        """Read the space into memory now (a service warms up with it); False when it
        is over the memory budget."""
        return self._refresh(store, space) is not None

    def drop_all(self) -> None:
        """Forget every space (the store changed under them: a repair, a deleted space)."""
        with self._changing, self._lock:
            self._spaces.clear()
            self._stale.clear()

    def update(self, store: Store, space: Space) -> None:
        """Re-read what this Lab wrote (after an ingest); a space the ingest created is
        held from now on, so a service answers it from memory too."""
        self._refresh(store, space)

    def _current(self, space: Space) -> HeldSpace | None:
        """The published snapshot of a space with no document waiting to be re-read.
        The marks are read first: a refresh publishes its snapshot before it clears
        them, so a reader never pairs cleared marks with the snapshot before them."""
        if self._stale.get(space):
            return None
        return self._spaces.get(space)

    def neighbours(
        self,
        space: Space,
        query: np.ndarray,
        k: int,
        exclude_id: str | None,
        labels: list[str] | None,
        sources: list[str] | None,
        busy: bool = False,
    ) -> list[tuple[str, float, dict[str, Any], str]] | None:
        """Hits from memory, or None when the space is not held or not current.

        A large space is searched here only while `busy` (an ingest is writing it):
        Chroma then makes queries wait for its index writes, seconds at a time, while a
        scan of the held snapshot takes milliseconds.
        """
        from .memory_index import MemoryIndex

        held = self._current(space)
        if held is None:
            return None
        if not busy and not MemoryIndex.worth_it(*held.vectors.shape):
            return None
        index, ids = held.build_index(), held.ids
        metadatas, texts = held.metadatas, held.texts
        exclude = held.row_of.get(exclude_id) if exclude_id is not None else None
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        if norm > 0 and abs(norm - 1.0) > 1e-6:  # held rows are unit: cosine needs a unit query
            query = query / norm
        mask = index.mask(labels, sources)
        rows, scores = index.search(query, k, exclude, mask)
        return [(ids[r], float(s), metadatas[r], texts[r]) for r, s in zip(rows, scores)]

    def vector_by_hash(self, space: Space, key: str) -> np.ndarray | None:
        """The unit vector of a held document whose text hashes to `key`, else None."""
        held = self._current(space)
        if held is None:
            return None
        by_hash = held.row_of_hash
        if by_hash is None:  # built once per snapshot (two readers may both build it)
            by_hash = {str(m.get("content_hash")): r for r, m in enumerate(held.metadatas)}
            held.row_of_hash = by_hash
        row = by_hash.get(key)
        return None if row is None else held.vectors[row].copy()

    def follow(self, store: Store, space: Space) -> bool:
        """Re-read a held space whose count moved (another replica wrote to the Chroma
        server); True when it did. Lookups are answered from memory meanwhile."""
        held = self._spaces.get(space)
        if held is None:
            return self.hold(store, space)
        collection = store.collection(space)
        if collection is None or collection.count() == len(held.row_of):
            return False
        self._refresh(store, space)
        return True

    def drop(self, space: Space) -> None:
        """Let go of a space (documents were deleted); it is read again on next use."""
        with self._changing, self._lock:
            self._spaces.pop(space, None)
            self._stale.pop(space, None)

    def forget(self, space: Space, ids: Iterable[str]) -> None:
        """Mark documents of a held space as changed: they are re-read on next use."""
        with self._changing, self._lock:  # after a refresh that is running
            if space in self._spaces:
                self._stale[space] = self._stale.get(space, frozenset()) | frozenset(ids)

    def vector(self, space: Space, doc_id: str) -> np.ndarray | None:
        """A document's vector if it is held and current (no Chroma call), else None."""
        if doc_id in self._stale.get(space, ()):  # marks first, as in _current
            return None
        held = self._spaces.get(space)
        if held is None:
            return None
        row = held.row_of.get(doc_id)
        return None if row is None else held.vectors[row].copy()

    def rows(
        self,
        store: Store,
        space: Space,
        choose: Callable[[Iterable[tuple[str, dict[str, Any]]]], list[str]],
        ids: list[str] | None = None,
    ) -> HeldRows | None:
        """The rows of `ids` (else of the ids `choose(records)` picks from every held
        (id, metadata)), copied out of memory; None when the space is over the budget
        (read it from Chroma then)."""
        held = self._refresh(store, space)
        if held is None:
            return None
        row_of = held.row_of
        if ids is None:
            ids = choose((i, held.metadatas[row_of[i]]) for i in row_of)
        elif any(i not in row_of for i in ids):
            missing = [i for i in ids if i not in row_of][:3]
            raise StoreError(f"documents vanished while loading: {', '.join(missing)}")
        rows = np.fromiter((row_of[i] for i in ids), dtype=np.int64, count=len(ids))
        return HeldRows(
            ids=ids,
            vectors=held.vectors[rows],
            labels=[held.metadatas[r].get("label") for r in rows],
            texts=[held.texts[r] for r in rows],
            hashes=[held.metadatas[r].get("content_hash", "") for r in rows],
        )

    def _refresh(self, store: Store, space: Space) -> HeldSpace | None:
        """The space as Chroma holds it now: the snapshot, re-read where it is behind,
        built beside the published one and swapped in (readers never wait)."""
        with self._changing:
            collection = store.collection(space)
            if collection is None:
                raise NotFound(f"the store has no {space.describe()}")
            held = self._spaces.get(space)
            stale = self._stale.get(space, frozenset())
            expected = None if held is None else len(held.row_of.keys() | stale)
            count = collection.count()
            if not self._fits(space, count):
                self.drop(space)
                return None
            wanted = set(stale)
            # another replica added (expected is None exactly when held is)
            if held is not None and expected is not None and not stale and count > expected:
                new = [doc_id for doc_id in collection.all_ids() if doc_id not in held.row_of]
                if len(new) == count - expected:  # only additions: read just those
                    wanted = set(new)
            if held is None or (expected != count and not wanted):
                held = _whole(collection)
            elif wanted:
                try:
                    held = _with_rows(held, collection, wanted)
                except StoreError:  # some were never written (a failed or cancelled
                    # ingest marks what it was given) or are gone: read it whole
                    held = _whole(collection)
            with self._lock:  # publish, then clear the marks it read (none came meanwhile)
                self._spaces[space] = held
                self._stale.pop(space, None)
            return held


def _whole(collection: Any) -> HeldSpace:
    """A snapshot of every document of the collection, its search index built."""
    ids = collection.all_ids()
    held = HeldSpace.read(ids, *collection.load(ids))
    held.build_index()
    return held


def _with_rows(held: HeldSpace, collection: Any, wanted: set[str]) -> HeldSpace:
    """A new snapshot: `held` with the `wanted` documents read again (changed ones in
    their rows, new ones appended); the published one is left as it is."""
    known = sorted(wanted & held.row_of.keys())
    new = sorted(wanted - held.row_of.keys())
    metadatas, texts = list(held.metadatas), list(held.texts)
    rows = len(held.vectors)
    # one new array (the published one stays as it is): the old rows, room for the new
    vectors = np.empty((rows + len(new), held.vectors.shape[1]), dtype=held.vectors.dtype)
    vectors[:rows] = held.vectors
    if known:
        read, read_meta, read_texts = collection.load(known)
        normalise_rows(read)
        for j, doc_id in enumerate(known):
            row = held.row_of[doc_id]
            vectors[row] = read[j]
            metadatas[row], texts[row] = read_meta[j], read_texts[j]
    row_of, ids, index = held.row_of, held.ids, None
    if new:
        read, read_meta, read_texts = collection.load(new)
        normalise_rows(read)
        start = len(row_of)
        vectors[rows:] = read
        metadatas += read_meta
        texts += read_texts
        row_of = {**row_of, **{doc_id: start + j for j, doc_id in enumerate(new)}}
        ids = ids + new
        if not known and held.index is not None:  # only additions: extend the index
            index = held.index.extended(vectors, read_meta)
    fresh = HeldSpace(ids=ids, vectors=vectors, metadatas=metadatas, texts=texts, row_of=row_of)
    fresh.index = index
    fresh.build_index()
    return fresh
