"""Calling Chroma: its failures read as embedlab's (a missing collection, a busy database).

Shared by the store (chroma_store) and its side collections (artifacts), which import
it rather than each other.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..errors import StoreDamaged, StoreError


def not_found(exc: BaseException) -> bool:
    """Chroma's "no such collection" (NotFoundError in 1.x; ValueError in older releases)."""
    name = type(exc).__name__
    return name == "NotFoundError" or (isinstance(exc, ValueError) and "does not exist" in str(exc))


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:160]


# What Chroma says for a moment and then no more: SQLite locked by another writer, and a
# collection just created by another thread whose vector index has nothing on disk yet
# (a read of it then fails: "Error creating hnsw segment reader: Nothing found on disk").
TRANSIENT = ("database is locked", "Nothing found on disk")


def _retry_busy(call: Callable[[], Any], what: str, attempts: int = 8) -> Any:
    """Run a Chroma call, retrying while Chroma is briefly unable (TRANSIENT).

    A Chroma server serialises writers on SQLite; with several clients a write can
    meet "database is locked" and succeed a moment later. Any other failure, or one
    that outlasts the retries, becomes one StoreError line (earlier writes are kept).
    """
    for attempt in range(attempts):
        try:
            return call()
        except StoreDamaged:
            raise
        except Exception as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            if any(t in str(exc) for t in TRANSIENT) and attempt + 1 < attempts:
                time.sleep(0.05 * 2**attempt)
                continue
            raise StoreError(f"Chroma refused a {what} ({message[:160]})") from None
    raise AssertionError("unreachable")
