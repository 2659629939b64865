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


def normalise_rows(vectors: np.ndarray) -> None:
    """Make every row unit length, in place (an all-zero row stays zero)."""
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


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
    """

    def __init__(self, budget_bytes: int = MEMORY_BUDGET) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[Space, HeldSpace] = {}
        self._stale: dict[Space, set[str]] = {}
        self.budget_bytes = budget_bytes

    def _fits(self, space: Space, count: int) -> bool:
        held = sum(h.vectors.nbytes for s, h in self._spaces.items() if s != space)
        return held + count * space.dims * 4 <= self.budget_bytes

    def hold(self, store: Store, space: Space) -> bool:
        """Read the space into memory now (a service warms up with it); False when it
        is over the memory budget."""
        with self._lock:
            return self._refresh(store, space) is not None

    def drop_all(self) -> None:
        """Forget every space (the store changed under them: a repair, a deleted space)."""
        with self._lock:
            self._spaces.clear()
            self._stale.clear()

    def update(self, store: Store, space: Space) -> None:
        """Re-read what this Lab wrote (after an ingest); a space the ingest created is
        held from now on, so a service answers it from memory too."""
        with self._lock:
            self._refresh(store, space)

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

        if not self._lock.acquire(blocking=False):
            return None  # being refreshed after an ingest: Chroma answers meanwhile
        try:
            held = self._spaces.get(space)
            if held is None or self._stale.get(space):
                return None
            if not busy and not MemoryIndex.worth_it(*held.vectors.shape):
                return None
            index, ids = held.build_index(), held.ids
            metadatas, texts = held.metadatas, held.texts
            exclude = held.row_of.get(exclude_id) if exclude_id is not None else None
        finally:
            self._lock.release()
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        if norm > 0 and abs(norm - 1.0) > 1e-6:  # held rows are unit: cosine needs a unit query
            query = query / norm
        mask = index.mask(labels, sources)
        rows, scores = index.search(query, k, exclude, mask)
        return [(ids[r], float(s), metadatas[r], texts[r]) for r, s in zip(rows, scores)]

    def vector_by_hash(self, space: Space, key: str) -> np.ndarray | None:
        """The unit vector of a held document whose text hashes to `key`, else None."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            held = self._spaces.get(space)
            if held is None or self._stale.get(space):
                return None
            if held.row_of_hash is None:
                held.row_of_hash = {
                    str(m.get("content_hash")): r for r, m in enumerate(held.metadatas)
                }
            row = held.row_of_hash.get(key)
            return None if row is None else held.vectors[row].copy()
        finally:
            self._lock.release()

    def follow(self, store: Store, space: Space) -> bool:
        """Re-read a held space whose count moved (another replica wrote to the Chroma
        server); True when it did. The count is read without the lock, so lookups are
        answered from memory meanwhile."""
        held = self._spaces.get(space)
        if held is None:
            return self.hold(store, space)
        collection = store.collection(space)
        if collection is None or collection.count() == len(held.row_of):
            return False
        with self._lock:
            self._refresh(store, space)
        return True

    def drop(self, space: Space) -> None:
        """Let go of a space (documents were deleted); it is read again on next use."""
        with self._lock:
            self._spaces.pop(space, None)
            self._stale.pop(space, None)

    def forget(self, space: Space, ids: Iterable[str]) -> None:
        """Mark documents of a held space as changed: they are re-read on next use."""
        with self._lock:
            if space in self._spaces:
                self._stale.setdefault(space, set()).update(ids)

    def vector(self, space: Space, doc_id: str) -> np.ndarray | None:
        """A document's vector if it is held and current (no Chroma call), else None."""
        if not self._lock.acquire(blocking=False):
            return None  # being refreshed: never make a lookup wait for it
        try:
            held = self._spaces.get(space)
            if held is None or doc_id in self._stale.get(space, ()):
                return None
            row = held.row_of.get(doc_id)
            return None if row is None else held.vectors[row].copy()
        finally:
            self._lock.release()

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
        with self._lock:
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
        collection = store.collection(space)
        if collection is None:
            raise NotFound(f"the store has no {space.describe()}")
        held = self._spaces.get(space)
        stale = self._stale.pop(space, set())
        expected = None if held is None else len(held.row_of.keys() | stale)
        count = collection.count()
        if not self._fits(space, count):
            self._spaces.pop(space, None)
            return None
        # another replica added (expected is None exactly when held is)
        if held is not None and expected is not None and not stale and count > expected:
            ids = [doc_id for doc_id, _ in collection.iter_metadata()]
            new = [doc_id for doc_id in ids if doc_id not in held.row_of]
            if len(new) == count - expected:  # only additions: read just those
                stale = set(new)
        if held is None or (expected != count and not stale):
            ids = [doc_id for doc_id, _ in collection.iter_metadata()]
            held = HeldSpace.read(ids, *collection.load(ids))
            self._spaces[space] = held
        elif stale:
            known = sorted(stale & held.row_of.keys())
            new = sorted(stale - held.row_of.keys())
            if known:
                vectors, metadatas, texts = collection.load(known)
                normalise_rows(vectors)
                for j, doc_id in enumerate(known):
                    row = held.row_of[doc_id]
                    held.vectors[row] = vectors[j]
                    held.metadatas[row], held.texts[row] = metadatas[j], texts[j]
            if new:
                vectors, metadatas, texts = collection.load(new)
                normalise_rows(vectors)
                start = len(held.row_of)
                held.vectors = np.concatenate([held.vectors, vectors])
                held.metadatas = held.metadatas + metadatas
                held.texts = held.texts + texts
                held.row_of.update({doc_id: start + j for j, doc_id in enumerate(new)})
                held.ids = held.ids + new
            held.index = None
            held.row_of_hash = None
        held.build_index()  # built now, while lookups go to Chroma
        return held
