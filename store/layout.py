"""Where things live in a store folder, and the Chroma settings every part shares.

Its own module so that the store (chroma_store) and the index rebuild (rebuild, which the
store calls to heal a torn index) can both read them without importing each other.
"""

from __future__ import annotations

import functools
from typing import Any

CHROMA_DIR = "chroma"
PAGE_SIZE = 1000  # rows per `get`: bounds peak memory of Chroma's float64 lists
# Chroma persists its HNSW index every `sync_threshold` writes and, on every open,
# replays the writes since then (1,000 by default: ~1 s per command at 3072 dims).
SYNC_THRESHOLD = 100
PERSIST_NOW_THRESHOLD = 2  # set for one write by persist_index; a crash can leave it behind
QUARANTINE_DIR = "quarantine"  # index files set aside by a repair or a heal, never deleted
SALVAGE_DIR = "repair"  # vectors read back before the files were set aside, until swapped in


@functools.lru_cache(maxsize=1)
def _settings_template() -> Any:
    from chromadb.config import Settings

    return Settings(anonymized_telemetry=False)


def chroma_settings() -> Any:
    """Chroma's settings, telemetry off: a copy of one read per process (reading them
    parses the environment, ~10 ms, and a client writes its path into the copy it gets)."""
    return _settings_template().model_copy()
