"""One bounded cache: what the Lab and the service keep in memory of the store.

Least recently used entries go first once `max_size` is reached; entries older than
`ttl_s` (when given) are no longer fresh. Thread-safe. Every removal (`pop`, `forget`,
`clear`) moves the cache's `generation` on, so a value computed from what was read
before a removal can be refused (`put(..., generation=...)`) rather than kept stale.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class _Entry(Generic[V]):
    value: V
    stored: float
    tags: frozenset[Any] = field(default_factory=frozenset)


class BoundedCache(Generic[K, V]):
    """An LRU mapping of at most `max_size` entries (`ttl_s`: how long one is fresh)."""

    def __init__(
        self,
        max_size: int,
        ttl_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        self.max_size = max_size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0

    @property
    def generation(self) -> int:
        """Moves on with every removal: read it before computing a value to `put`."""
        with self._lock:
            return self._generation

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> list[K]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(self, key: K, default: V | None = None, fresh: bool = False) -> V | None:
        """The value under `key` (now the most recently used), else `default`;
        `fresh=True` also treats a value older than `ttl_s` as absent."""
        found = self.get_aged(key)
        if found is None or (fresh and not self._fresh(found[1])):
            return default
        return found[0]

    def get_aged(self, key: K) -> tuple[V, float] | None:
        """(value, seconds since it was put), or None; the key becomes most recent."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry.value, self._clock() - entry.stored

    def is_fresh(self, age: float) -> bool:
        return self._fresh(age)

    def _fresh(self, age: float) -> bool:
        return self.ttl_s is None or age < self.ttl_s

    def put(
        self, key: K, value: V, tags: Iterable[Any] = (), generation: int | None = None
    ) -> bool:
        """Keep `value` under `key` (the least recently used go beyond `max_size`).
        With `generation` (read before the value was computed), a removal made since
        refuses it: False, nothing kept."""
        with self._lock:
            if generation is not None and generation != self._generation:
                return False
            self._entries.pop(key, None)
            self._entries[key] = _Entry(value, self._clock(), frozenset(tags))
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)
            return True

    def pop(self, key: K) -> V | None:
        """Remove `key`; its value, or None when it was not held."""
        with self._lock:
            self._generation += 1
            entry = self._entries.pop(key, None)
            return None if entry is None else entry.value

    def forget(
        self,
        predicate: Callable[[K, V], bool] | None = None,
        tag: Any = None,
    ) -> int:
        """Remove the entries `predicate(key, value)` holds for and/or that carry `tag`
        (both given: both must hold; neither: every entry). Returns how many went."""
        with self._lock:
            self._generation += 1
            gone = [
                key
                for key, entry in self._entries.items()
                if (tag is None or tag in entry.tags)
                and (predicate is None or predicate(key, entry.value))
            ]
            for key in gone:
                del self._entries[key]
            return len(gone)

    def clear(self) -> None:
        self.forget()
