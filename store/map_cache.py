"""2-D maps (and the PCA basis each was drawn from) kept in the store, keyed by
analyze.reduce.map_key: an analysis of the same documents, method and seed reuses one."""

from __future__ import annotations

import threading

import numpy as np

from ..errors import StoreError
from .artifacts import pack_arrays, unpack_arrays
from .chroma_store import Store
from .keys import Space
from .repositories import MAP, MAP_BASIS


class StoreMapCache:
    """2-D maps kept in the store, keyed by analyze.reduce.map_key."""

    def __init__(self, store: Store, space: Space, write_lock: threading.RLock):
        self._store = store
        self._space = space
        self._write_lock = write_lock

    def get(self, key: str) -> tuple[np.ndarray, str] | None:
        try:
            found = self._store.artifacts.get(MAP, key)
        except StoreError:
            return None  # an incomplete cache entry is recomputed, never trusted
        if found is None:
            return None
        head, payload = found
        return unpack_arrays(payload)["coords"], head["note"]

    def put(self, key: str, coords: np.ndarray, note: str) -> None:
        head = {"note": note, "space_collection": self._space.collection_name}
        try:
            with self._write_lock:
                payload = pack_arrays(coords=coords.astype(np.float32))
                self._store.artifacts.put(MAP, key, head, payload)
        except StoreError:
            pass  # only a cache: the analysis stands, the next one recomputes the map

    def put_basis(self, key: str, components: np.ndarray, mean: np.ndarray) -> None:
        """The PCA basis the map `key` was drawn from (what an update places with)."""
        head = {"space_collection": self._space.collection_name}
        payload = pack_arrays(
            components=components.astype(np.float32), mean=mean.astype(np.float32)
        )
        try:
            with self._write_lock:
                self._store.artifacts.put(MAP_BASIS, key, head, payload)
        except StoreError:
            pass  # only a cache

    def get_basis(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            found = self._store.artifacts.get(MAP_BASIS, key)
        except StoreError:
            return None
        if found is None:
            return None
        arrays = unpack_arrays(found[1])
        return arrays["components"], arrays["mean"]
