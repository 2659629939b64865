"""Things computed from the vectors and kept beside them: stored analyses and map caches.

They live in the store itself (one side collection), not in files next to it, so a
notebook, the CLI and a service over a Chroma server all see the same history, and a
service keeps no state of its own.

Each artifact is a head record (a flat JSON document) plus its binary payload cut into
part records. Parts are written first and the head last, in one upsert: a crash or two
writers at once can leave orphan parts, never a head pointing at a half-written payload.
Readers list heads only.
"""

from __future__ import annotations

import base64
import functools
import json
import zlib
from typing import Any, Literal, overload

import numpy as np

from ..errors import StoreError
from .chroma_calls import _retry_busy, not_found

COLLECTION = "embedlab-artifacts"
PART_CHARS = 1_000_000  # base64 characters per part record (Chroma takes far more)
_DUMMY = [[1.0]]  # Chroma wants a vector per record; artifacts are not searched by one


class Artifacts:
    """Artifacts of one store, addressed by (kind, key)."""

    def __init__(self, client: Any):
        self._client = client
        self._col: Any = None

    @overload
    def _collection(self, create: Literal[True]) -> Any: ...
    @overload
    def _collection(self, create: bool) -> Any | None: ...
    def _collection(self, create: bool) -> Any | None:
        if self._col is None:
            if create:
                self._col = self._client.get_or_create_collection(
                    COLLECTION, metadata={"embedlab_side": "artifacts"}, embedding_function=None
                )
            else:
                try:
                    self._col = self._client.get_collection(COLLECTION, embedding_function=None)
                except Exception as exc:
                    if not_found(exc):
                        return None
                    raise StoreError(f"cannot read stored analyses ({exc})") from exc
        return self._col

    def put(self, kind: str, key: str, head: dict[str, Any], payload: bytes) -> None:
        """Store `payload` under (kind, key); `head` is a JSON-ready dict listed by `heads`."""
        col = self._collection(create=True)
        text = base64.b64encode(zlib.compress(payload, 6)).decode("ascii")
        parts = [text[i : i + PART_CHARS] for i in range(0, len(text), PART_CHARS)] or [""]
        for i, part in enumerate(parts):
            _retry_busy(
                functools.partial(  # bound now: a lambda in a loop would see the last part
                    col.upsert,
                    ids=[f"{kind}/{key}/part/{i}"],
                    embeddings=_DUMMY,
                    metadatas=[{"kind": f"{kind}-part", "key": key, "part": i, "data": part}],
                ),
                f"write of {kind} {key}",
            )
        meta = {
            "kind": kind,
            "key": key,
            "parts": len(parts),
            "space": str(head.get("space_collection", "")),
            "created": str(head.get("created", "")),
            "head": json.dumps(head, sort_keys=True),
        }
        _retry_busy(
            lambda: col.upsert(ids=[f"{kind}/{key}"], embeddings=_DUMMY, metadatas=[meta]),
            f"write of {kind} {key}",
        )

    def put_heads(self, kind: str, heads: list[dict[str, Any]]) -> None:
        """Store payload-less records (each head's "id" is its key) in one upsert."""
        if not heads:
            return
        col = self._collection(create=True)
        metas = [
            {
                "kind": kind,
                "key": h["id"],
                "parts": 0,
                "space": str(h.get("space_collection", "")),
                "created": str(h.get("created", "")),
                "head": json.dumps(h, sort_keys=True),
            }
            for h in heads
        ]
        _retry_busy(
            lambda: col.upsert(
                ids=[f"{kind}/{h['id']}" for h in heads],
                embeddings=_DUMMY * len(heads),
                metadatas=metas,
            ),
            f"write of {kind} records",
        )

    def _head_record(self, kind: str, key: str) -> tuple[Any, dict[str, Any]] | None:
        """(collection, head record metadata) of (kind, key), or None when absent."""
        col = self._collection(create=False)
        if col is None:
            return None
        got = col.get(ids=[f"{kind}/{key}"], include=["metadatas"])
        return (col, got["metadatas"][0]) if got["ids"] else None

    def head(self, kind: str, key: str) -> dict[str, Any] | None:
        found = self._head_record(kind, key)
        return json.loads(found[1]["head"]) if found else None

    def get(self, kind: str, key: str) -> tuple[dict[str, Any], bytes] | None:
        """(head, payload), or None when absent."""
        found = self._head_record(kind, key)
        if found is None:
            return None
        col, meta = found
        part_ids = _part_ids(kind, key, meta)
        parts = col.get(ids=part_ids, include=["metadatas"])
        by_id = dict(zip(parts["ids"], parts["metadatas"]))
        if set(by_id) != set(part_ids):
            raise StoreError(f"stored {kind} {key} is incomplete; delete it and compute it again")
        text = "".join(by_id[i]["data"] for i in part_ids)
        return json.loads(meta["head"]), zlib.decompress(base64.b64decode(text))

    def heads(self, kind: str, space_collection: str | None = None) -> list[dict[str, Any]]:
        """Every head of `kind` (of one space when given), newest first."""
        col = self._collection(create=False)
        if col is None:
            return []
        where: dict[str, Any] = {"kind": kind}
        if space_collection is not None:
            where = {"$and": [where, {"space": space_collection}]}
        got = col.get(where=where, include=["metadatas"])
        heads = [json.loads(m["head"]) for m in got["metadatas"]]
        return sorted(heads, key=lambda h: (h.get("created", ""), h.get("id", "")), reverse=True)

    def delete(self, kind: str, key: str) -> bool:
        """Remove (kind, key); False when it was not there. The head goes first."""
        found = self._head_record(kind, key)
        if found is None:
            return False
        col, meta = found
        _retry_busy(lambda: col.delete(ids=[f"{kind}/{key}"]), f"delete of {kind} {key}")
        part_ids = _part_ids(kind, key, meta)
        _retry_busy(lambda: col.delete(ids=part_ids), f"delete of {kind} {key}")
        return True


def _part_ids(kind: str, key: str, head_record: dict[str, Any]) -> list[str]:
    return [f"{kind}/{key}/part/{i}" for i in range(int(head_record["parts"]))]


def pack_arrays(**arrays: np.ndarray) -> bytes:
    """Arrays to bytes (npz, no pickles), for an artifact's payload."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
    return buffer.getvalue()


def unpack_arrays(payload: bytes) -> dict[str, np.ndarray]:
    import io

    with np.load(io.BytesIO(payload), allow_pickle=False) as data:
        return {name: data[name] for name in data.files}
