"""Cluster names kept in the store, so a name is paid for once.

A generated name belongs to a set of documents, not to an analysis: it is keyed by the
sorted content hashes of the cluster's members, the naming prompt's version and the
model. Re-running an analysis, or running another whose cluster kept exactly its
members (another k elsewhere, another map method, new documents in other clusters),
finds the name here and costs no call. A changed member, a new prompt or another model
is another key, so a name never describes documents it was not asked about.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

NAME = "cluster-name"


def name_key(member_hashes: Iterable[str], prompt_version: int, model: str) -> str:
    """sha256 of (sorted member content hashes, prompt version, model)."""
    material = json.dumps(
        {"members": sorted(member_hashes), "prompt_version": prompt_version, "model": model},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class NameCache:
    """Names by key in the store's artifacts collection (payload-less records)."""

    def __init__(self, artifacts: Any, write_lock: threading.RLock | None = None):
        self._artifacts = artifacts
        self._write_lock = write_lock or threading.RLock()

    def get(self, key: str) -> str | None:
        head = self._artifacts.head(NAME, key)
        name = head.get("name") if head else None
        return name if isinstance(name, str) and name else None

    def put(self, key: str, name: str, model: str, prompt_version: int) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        record = {
            "id": key,
            "name": name,
            "model": model,
            "prompt_version": prompt_version,
            "created": now,
        }
        with self._write_lock:
            self._artifacts.put_heads(NAME, [record])
