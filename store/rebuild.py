"""Rebuild a space's vector index from the vectors its files still hold, losing nothing.

Shared by `embedlab repair` (store/repair.py, which runs each Chroma step in a child
process) and by the store itself, which heals on open the one damage a crash leaves
behind in normal use: a process killed while Chroma persisted its HNSW index.

Chroma's fork of hnswlib persists in place (`persistDirty`): the header with the new
element count first, then the changed rows of `data_level0.bin`, `length.bin` and
`link_lists.bin`; its label mapping and the write-ahead log's high-water mark are written
only after all of them. A SIGKILL in between leaves files shorter than their header says,
which Chroma's loader would read past (a segfault), while every vector is still on disk:
in the rows written before, or in the write-ahead log, which keeps every write since the
last complete persist. Such an index is rebuilt from those vectors at once (no repair to
run, nothing embedded again); any other damage, or one that lost a vector, is left to
`embedlab repair`, which says what it kept.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .index_files import (
    catalogue_all_ids,
    readable_vectors,
    torn_persist,
    unit_rows,
    vector_segment_folders,
)
from .layout import CHROMA_DIR, PAGE_SIZE, QUARANTINE_DIR, SALVAGE_DIR, SYNC_THRESHOLD

REBUILD_SUFFIX = "-rebuild"
OLD_SUFFIX = "-old"  # the original, renamed while the rebuilt copy takes its name
PENDING_SUFFIX = "-pending"  # SpaceCollection's side collection of documents without a vector

log = logging.getLogger("embedlab.store")


@dataclass(frozen=True)
class Healed:
    """A torn index rebuilt on open: how many vectors it holds, where the old files went."""

    collection: str
    vectors: int
    quarantined: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"the vector index of {self.collection} was left half-written by an interrupted "
            f"process; rebuilt from its {self.vectors} stored vectors (nothing lost, nothing "
            f"embedded again; the old files are in {', '.join(self.quarantined)})"
        )


def heal_torn_index(root: Path, client: Any, name: str) -> Healed | None:
    """Rebuild collection `name` when its index files are torn by a kill mid-persist and
    every record's vector can still be read; None (nothing touched) otherwise.

    The caller holds the store's lock and has not let Chroma load this index.
    """
    chroma_dir = root / CHROMA_DIR
    folders = vector_segment_folders(chroma_dir, name)
    if not folders or not all(torn_persist(folder) for folder in folders):
        return None
    if (root / SALVAGE_DIR / f"{name}.npz").is_file():
        return None  # a repair did not finish: it has its own way back
    readable = readable_vectors(chroma_dir, name)
    ids = catalogue_all_ids(chroma_dir, name)
    if any(doc_id not in readable for doc_id in ids):
        return None  # healing would lose a vector: repair says which, and keeps the text
    save_readable(root, name, readable)
    del readable  # the saved copy is what the rebuild reads: one copy in memory at a time
    moved = quarantine_vector_segment(root, name)
    col = client.get_collection(name, embedding_function=None)
    done = rebuild_collection(client, col, root / SALVAGE_DIR / f"{name}.npz")
    (root / SALVAGE_DIR / f"{name}.npz").unlink(missing_ok=True)
    drop_replayed_folders(root, moved)
    healed = Healed(name, int(done["kept"]), tuple(moved))
    log.warning("embedlab: %s", healed.describe())
    return healed


def save_readable(root: Path, name: str, found: dict[str, np.ndarray] | None = None) -> None:
    """Read every whole vector out of the files (or take `found`, read already) before
    they are set aside, and keep them on disk until the rebuilt index holds them (a
    repair killed here loses none)."""
    path = root / SALVAGE_DIR / f"{name}.npz"
    if found is None:
        found = readable_vectors(root / CHROMA_DIR, name)
    if path.is_file():  # an earlier repair stopped after setting the files aside
        earlier = np.load(path)
        for doc_id, vector in zip(earlier["ids"].tolist(), earlier["vectors"]):
            found.setdefault(str(doc_id), vector)
    path.parent.mkdir(exist_ok=True)
    ids = sorted(found)
    vectors = np.stack([found[i] for i in ids]) if ids else np.zeros((0, 0), np.float32)
    temp = path.with_name(path.stem + ".tmp.npz")
    np.savez(temp, ids=np.array(ids, dtype=str), vectors=vectors.astype(np.float32))
    temp.replace(path)


def drop_replayed_folders(root: Path, quarantined: list[str] | tuple[str, ...]) -> None:
    """Remove what Chroma wrote under a quarantined folder's name while the records were
    copied (it replays the old collection's write-ahead log into a new folder there): that
    collection is deleted now, so the folder belongs to nothing. The quarantined originals
    stay where they are."""
    live = {segment for (segment,) in _all_vector_segments(root / CHROMA_DIR)}
    for moved in quarantined:
        segment = Path(moved).name.split("-", 2)[-1]
        folder = root / CHROMA_DIR / segment
        if segment not in live and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def _all_vector_segments(chroma_dir: Path) -> list[tuple[str]]:
    with sqlite3.connect(f"file:{chroma_dir / 'chroma.sqlite3'}?mode=ro", uri=True) as db:
        return db.execute("SELECT id FROM segments WHERE scope = 'VECTOR'").fetchall()


def quarantine_vector_segment(root: Path, name: str) -> list[str]:
    """Move the collection's HNSW folder aside so Chroma can open the collection again."""
    moved = []
    for folder in vector_segment_folders(root / CHROMA_DIR, name):
        if folder.is_dir():
            target = root / QUARANTINE_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{folder.name}"
            target.parent.mkdir(exist_ok=True)
            shutil.move(str(folder), str(target))
            moved.append(str(target))
    return moved


def rebuild_collection(client: Any, col: Any, saved: Path | None) -> dict[str, Any]:
    """Copy every record into a new collection, then swap it in under the old name.

    Vectors come from `saved` (read back from the damaged files) where given, else from
    Chroma record by record; a record with no whole vector keeps its text, label, source
    and hash beside the space, as needing its vector. No record is ever dropped.
    """
    name = col.name
    temp_name = name + REBUILD_SUFFIX
    drop_if_exists(client, temp_name)
    fresh = client.create_collection(
        temp_name,
        configuration={"hnsw": {"space": "cosine", "sync_threshold": SYNC_THRESHOLD}},
        metadata=col.metadata,
        embedding_function=None,
    )
    recovered: dict[str, np.ndarray] | None = None
    if saved is not None and saved.is_file():
        data = np.load(saved)
        recovered = dict(zip(data["ids"].tolist(), data["vectors"]))
    ids = all_ids(col)
    kept, documents = 0, 0
    for start in range(0, len(ids), PAGE_SIZE):
        chunk = ids[start : start + PAGE_SIZE]
        got = col.get(ids=chunk, include=["metadatas", "documents"])
        vectors = _vectors_for(col, got["ids"], recovered)
        whole = [i for i, v in enumerate(vectors) if v is not None]
        lost = [i for i, v in enumerate(vectors) if v is None]
        if whole:
            fresh.upsert(
                ids=[got["ids"][i] for i in whole],
                embeddings=np.stack([v for v in vectors if v is not None]),  # rows `whole`
                metadatas=[got["metadatas"][i] for i in whole],
                documents=[got["documents"][i] for i in whole],
            )
        if lost:
            pending_collection(client, name).upsert(
                ids=[got["ids"][i] for i in lost],
                embeddings=[[1.0]] * len(lost),
                metadatas=[got["metadatas"][i] for i in lost],
                documents=[got["documents"][i] for i in lost],
            )
        kept += len(whole)
        documents += len(got["ids"])
    # the swap in three steps, each of which leaves a state the next repair finishes
    # (_finish_interrupted_rebuilds): never a moment without every record under a name
    col.modify(name=name + OLD_SUFFIX)
    fresh.modify(name=name)
    client.delete_collection(name + OLD_SUFFIX)
    return {"kept": kept, "documents": documents}


def _vectors_for(
    col: Any, ids: list[str], recovered: dict[str, np.ndarray] | None
) -> list[np.ndarray | None]:
    """The whole vector of each id, or None."""
    if recovered is not None:
        return [recovered.get(doc_id) for doc_id in ids]
    out: list[np.ndarray | None] = []
    for doc_id in ids:
        try:
            got = col.get(ids=[doc_id], include=["embeddings"])
            vector = np.asarray(got["embeddings"][0], dtype=np.float32) if got["ids"] else None
        except Exception:
            vector = None
        out.append(vector if vector is not None and is_unit_vector(vector) else None)
    return out


def pending_collection(client: Any, name: str) -> Any:
    return client.get_or_create_collection(
        name + PENDING_SUFFIX,
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"embedlab_side": "pending"},
        embedding_function=None,
    )


def is_unit_vector(vector: np.ndarray) -> bool:
    """embedlab stores every vector at unit length, so anything else was damaged on disk."""
    return bool(unit_rows(np.asarray(vector, dtype=np.float32).reshape(1, -1))[0])


def drop_if_exists(client: Any, name: str) -> None:
    try:
        client.delete_collection(name)
    except Exception:
        pass


def all_ids(col: Any) -> list[str]:
    ids: list[str] = []
    while True:
        got = col.get(include=[], limit=PAGE_SIZE * 10, offset=len(ids))
        if not got["ids"]:
            return ids
        ids += got["ids"]
