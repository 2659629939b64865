"""Check a store and rebuild the vector index of a space whose index is damaged.

Chroma keeps texts and metadata in SQLite and the vectors only in its HNSW files, and a
crash while those files are written can leave them unloadable (chroma #7090, #5925).
Repair reads every record it still can, writes them into a fresh collection, and swaps
it in; records whose vector cannot be read are dropped and named, so that re-running
the ingest re-embeds exactly those (everything else stays cached). Unloadable index
files are moved to `<store>/quarantine/`, never deleted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chroma_store import (
    CHROMA_DIR,
    PAGE_SIZE,
    SYNC_THRESHOLD,
    Store,
    StoreError,
    embedded_client,
    space_of,
)
from .index_files import vector_segment_folders
from .keys import Space

REBUILD_SUFFIX = "-rebuild"
QUARANTINE_DIR = "quarantine"
UNIT_TOLERANCE = 1e-3


@dataclass
class SpaceHealth:
    space: Space
    documents: int = 0
    problems: list[str] = field(default_factory=list)
    kept: int = 0  # records copied into the rebuilt index
    dropped: list[str] = field(default_factory=list)  # ids whose vector was unreadable
    quarantined: list[str] = field(default_factory=list)
    rebuilt: bool = False

    @property
    def healthy(self) -> bool:
        return not self.problems


def check_store(store: Store, fix: bool = False) -> list[SpaceHealth]:
    """Health of every space; with `fix`, rebuild the damaged ones.

    A damaged HNSW file can crash Chroma's native code outright (a segfault, not an
    exception), so for an embedded store every read of a space runs in a child
    process while this one holds the store's lock (and no Chroma client); a crash
    there is a finding, not the end of the repair.
    """
    if store.path is None:
        return [_check_in_process(store.client, space, fix) for space in store.spaces()]
    root = store.path
    listing = _child(root, "list")
    if isinstance(listing, dict):
        raise StoreError(f"cannot list the spaces of {root}: {listing['error']}")
    results = []
    for name, space in listing:
        health = SpaceHealth(Space(*space))
        probe = _child(root, "probe", name)
        health.problems = [probe["error"]] if "error" in probe else probe["problems"]
        health.documents = probe.get("documents", 0)
        if health.problems and fix:
            salvaged = _child(root, "salvage", name)
            if "error" in salvaged:  # the index cannot even be read: set it aside, retry
                health.quarantined = _quarantine_vector_segment(root, name)
                salvaged = _child(root, "salvage", name)
            if "error" in salvaged:
                raise StoreError(f"cannot rebuild {name}: {salvaged['error']}")
            health.kept, health.dropped = salvaged["kept"], salvaged["dropped"]
            health.rebuilt = True
        results.append(health)
    return results


def _check_in_process(client: Any, space: Space, fix: bool) -> SpaceHealth:
    """A server store: its crashes are the server's, so no child process is needed."""
    col = client.get_collection(space.collection_name, embedding_function=None)
    health = SpaceHealth(space, **_probe(col))
    if health.problems and fix:
        salvaged = _salvage(client, col)
        health.kept, health.dropped, health.rebuilt = salvaged["kept"], salvaged["dropped"], True
    return health


def _child(root: Path, step: str, name: str | None = None) -> Any:
    """One step of the repair in a child process: its JSON answer, or {"error": why}."""
    # The path is made absolute here, and the child runs in the caller's folder: a
    # relative --store must name the same store for parent and child.
    args = [sys.executable, "-m", "embedlab.store.repair", str((root / CHROMA_DIR).resolve()), step]
    done = subprocess.run(args + ([name] if name else []), capture_output=True, text=True)
    if done.returncode == 0:
        return json.loads(done.stdout.strip().splitlines()[-1])
    if done.returncode < 0:
        return {"error": f"Chroma crashed reading the index (signal {-done.returncode})"}
    return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def _run_step(chroma_dir: str, step: str, name: str | None) -> Any:
    """What a child process does: one step against Chroma, answered as JSON."""
    client = embedded_client(chroma_dir)
    if step == "list":
        _finish_interrupted_rebuilds(client)
        spaces = [(col.name, space_of(col)) for col in client.list_collections()]
        return sorted((name, astuple(space)) for name, space in spaces if space is not None)
    col = client.get_collection(name, embedding_function=None)
    if step == "probe":
        return _probe(col)
    return _salvage(client, col)


def _probe(col: Any) -> dict[str, Any]:
    """Every vector readable, and the index answering a query with a record's own vector."""
    try:
        ids = _all_ids(col)
    except Exception as exc:
        return {"problems": [f"cannot read the collection ({_short(exc)})"]}
    unreadable = 0
    sample = None
    for start in range(0, len(ids), PAGE_SIZE):
        chunk = ids[start : start + PAGE_SIZE]
        try:
            got = col.get(ids=chunk, include=["embeddings"])
        except Exception:
            unreadable += len(chunk)
            continue
        good = [is_unit_vector(np.asarray(v)) for v in got["embeddings"]]
        unreadable += len(chunk) - sum(good)
        if sample is None and good and good[0]:
            sample = (got["ids"][0], got["embeddings"][0])
    problems = []
    if unreadable:
        problems.append(f"{unreadable} of {len(ids)} vectors unreadable or damaged")
    if sample is not None:
        try:
            hits = col.query(query_embeddings=[sample[1]], n_results=1, include=["distances"])
            if hits["ids"][0][:1] != [sample[0]]:
                problems.append("the vector index does not find a record by its own vector")
        except Exception as exc:
            problems.append(f"the vector index fails to answer ({_short(exc)})")
    return {"documents": len(ids), "problems": problems}


def _quarantine_vector_segment(root: Path, name: str) -> list[str]:
    """Move the collection's HNSW folder aside so Chroma can open the collection again."""
    moved = []
    for folder in vector_segment_folders(root / CHROMA_DIR, name):
        if folder.is_dir():
            target = root / QUARANTINE_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{folder.name}"
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(folder), str(target))
            moved.append(str(target))
    return moved


def _salvage(client: Any, col: Any) -> dict[str, Any]:
    """Copy every readable record into a new collection, then swap it in under the old name."""
    name = col.name
    temp_name = name + REBUILD_SUFFIX
    _drop_if_exists(client, temp_name)
    fresh = client.create_collection(
        temp_name,
        configuration={"hnsw": {"space": "cosine", "sync_threshold": SYNC_THRESHOLD}},
        metadata=col.metadata,
        embedding_function=None,
    )
    ids = _all_ids(col)
    kept, dropped = 0, []
    for start in range(0, len(ids), PAGE_SIZE):
        records = _readable_records(col, ids[start : start + PAGE_SIZE], dropped)
        if records["ids"]:
            fresh.upsert(**records)
            kept += len(records["ids"])
    client.delete_collection(name)
    fresh.modify(name=name)
    return {"kept": kept, "dropped": dropped}


def _readable_records(col: Any, chunk: list[str], dropped: list[str]) -> dict[str, list]:
    """The records of `chunk` with their vectors; one id at a time when the page fails."""
    include = ["embeddings", "metadatas", "documents"]
    try:
        got = col.get(ids=chunk, include=include)
        pages = [got] if len(got["ids"]) == len(chunk) else None
    except Exception:
        pages = None
    if pages is None:
        pages = []
        for doc_id in chunk:
            try:
                got = col.get(ids=[doc_id], include=include)
            except Exception:
                got = {"ids": []}
            if got["ids"]:
                pages.append(got)
            else:
                dropped.append(doc_id)
    out: dict[str, list] = {"ids": [], "embeddings": [], "metadatas": [], "documents": []}
    for page in pages:
        for doc_id, vector, meta, text in zip(
            page["ids"], page["embeddings"], page["metadatas"], page["documents"]
        ):
            vector = np.asarray(vector, dtype=np.float32)
            if not is_unit_vector(vector):  # read from a damaged file: garbage, not a vector
                dropped.append(doc_id)
                continue
            out["ids"].append(doc_id)
            out["embeddings"].append(vector)
            out["metadatas"].append(meta)
            out["documents"].append(text)
    return out


def is_unit_vector(vector: np.ndarray) -> bool:
    """embedlab stores every vector at unit length, so anything else was damaged on disk."""
    norm = float(np.linalg.norm(vector))
    return bool(np.all(np.isfinite(vector))) and abs(norm - 1.0) < UNIT_TOLERANCE


def _finish_interrupted_rebuilds(client: Any) -> None:
    """A repair killed mid-way leaves `<name>-rebuild`: finish the swap, or start over."""
    names = {c.name for c in client.list_collections()}
    for temp_name in [n for n in names if n.endswith(REBUILD_SUFFIX)]:
        name = temp_name[: -len(REBUILD_SUFFIX)]
        if name in names:  # died before the swap: the original is still whole
            client.delete_collection(temp_name)
        else:  # died between delete and rename: the copy is complete
            client.get_collection(temp_name, embedding_function=None).modify(name=name)


def _drop_if_exists(client: Any, name: str) -> None:
    try:
        client.delete_collection(name)
    except Exception:
        pass


def _all_ids(col: Any) -> list[str]:
    ids: list[str] = []
    while True:
        got = col.get(include=[], limit=PAGE_SIZE * 10, offset=len(ids))
        if not got["ids"]:
            return ids
        ids += got["ids"]


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    print(json.dumps(_run_step(sys.argv[1], sys.argv[2], (sys.argv[3:] or [None])[0])))
