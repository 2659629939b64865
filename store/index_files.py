"""Chroma's HNSW files, read by us in plain numpy: checked before Chroma loads them, and
read back vector by vector when they are damaged.

Chroma's native code segfaults on a damaged index (a truncated file, chroma #7090,
#5925, or random bytes in `data_level0.bin`: a link that points past the end), so a
command that simply opened the collection would die with signal 11. Every structure
the native loader trusts is checked here first (header, sizes, link counts and targets,
labels, unit-length vectors), and a failure becomes a StoreDamaged error that names the
way out: `embedlab repair`. A check that passed is remembered by the files' sizes and
modification times, so an unchanged index is not read twice.

Repair reads the same files to recover every vector that is still whole, whatever the
graph's state: hnswlib keeps each element's vector and label side by side, so damage to
one element's bytes costs that element only.

Layout (hnswlib, as Chroma's fork persists it):
- header.bin: HEADER below.
- data_level0.bin: per element, `size_data_per_element` bytes: a uint32 whose low 16 bits
  count its level-0 links (byte 2 is the deleted mark), `maxM0` uint32 links, the vector
  (float32 x dims) at `offsetData`, and a uint64 label at `label_offset`.
- link_lists.bin: per element, a uint32 byte size, then that many bytes: one block per
  upper level (a uint32 count, `maxM` uint32 links).
- length.bin: one float32 per element (the vector's norm before normalising).
- index_metadata.pickle: {"id_to_label", "label_to_id", ...}: Chroma's id for each label.
"""

from __future__ import annotations

import json
import os
import pickle
import sqlite3
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# hnswlib's header as Chroma writes it (format version 1): version, offsetLevel0,
# max_elements, cur_element_count, size_data_per_element, label_offset, offsetData,
# maxlevel, enterpoint_node, maxM, maxM0, M, mult, ef_construction.
HEADER = struct.Struct("<iQQQQQQiIQQQdQ")
HEADER_VERSION = 1
LABEL_BYTES = 4  # length.bin holds one 4-byte value per element
INDEX_FILES = ("header.bin", "data_level0.bin", "link_lists.bin", "length.bin")
MAPPING_FILE = "index_metadata.pickle"
UNIT_TOLERANCE = 1e-3
MAX_LEVELS = 64  # hnswlib's levels grow with log(n); anything near this is garbage
CHECKED_FILE = ".embedlab-index-checked.json"  # in the store folder: checks that passed
DELETED_MARK = 0x01
CHECK_ROWS = 4096  # elements checked at a time (50 MB at 3072 dims)


def vector_segment_folders(chroma_dir: Path, collection_name: str) -> list[Path]:
    """The HNSW folders of a collection; Chroma names them after the vector segment's id,
    which only its SQLite catalogue knows."""
    return [chroma_dir / segment for segment, _ in _vector_segments(chroma_dir, collection_name)]


def _vector_segments(chroma_dir: Path, collection_name: str) -> list[tuple[str, str]]:
    """(vector segment id, collection id) of a collection, read-only from Chroma's catalogue."""
    database = chroma_dir / "chroma.sqlite3"
    if not database.is_file():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT s.id, c.id FROM segments s JOIN collections c ON s.collection = c.id "
            "WHERE c.name = ? AND s.scope = 'VECTOR'",
            (collection_name,),
        ).fetchall()


# A collection's records in Chroma's catalogue (its metadata segment), by collection name.
_RECORDS = (
    "FROM embeddings e JOIN segments s ON e.segment_id = s.id "
    "JOIN collections c ON s.collection = c.id WHERE c.name = ? AND s.scope = 'METADATA'"
)


def record_count(chroma_dir: Path, collection_name: str) -> int:
    """How many records a collection holds, from Chroma's catalogue (no index is loaded:
    a damaged one would crash the reader)."""
    database = chroma_dir / "chroma.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        row = db.execute(f"SELECT COUNT(*) {_RECORDS}", (collection_name,)).fetchone()
    return int(row[0]) if row else 0


def catalogue_ids(chroma_dir: Path, collection_name: str, ids: list[str]) -> set[str]:
    """Which of `ids` a collection holds, from Chroma's catalogue (loads no index)."""
    database = chroma_dir / "chroma.sqlite3"
    found: set[str] = set()
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT e.embedding_id {_RECORDS} AND e.embedding_id IN ({marks})",
                (collection_name, *chunk),
            )
            found.update(row[0] for row in rows)
    return found


def catalogue_all_ids(chroma_dir: Path, collection_name: str) -> list[str]:
    """Every record id of a collection, from Chroma's catalogue (loads no index)."""
    database = chroma_dir / "chroma.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute(f"SELECT e.embedding_id {_RECORDS}", (collection_name,))
        return [row[0] for row in rows]


@dataclass
class Header:
    max_elements: int
    count: int
    per_element: int
    label_offset: int
    data_offset: int
    max_level: int
    entry_point: int
    max_m: int
    max_m0: int

    @property
    def dims(self) -> int:
        return (self.label_offset - self.data_offset) // 4


def read_header(folder: Path) -> Header | str | None:
    """The header, a reason it is unusable, or None when the index was never persisted."""
    header_file = folder / "header.bin"
    if not header_file.is_file():
        return None
    raw = header_file.read_bytes()
    if len(raw) != HEADER.size:
        return f"index header is {len(raw)} bytes, not {HEADER.size}"
    version, _, max_elements, count, size, label_at, data_at, level, entry, m, m0, *_ = (
        HEADER.unpack(raw)
    )
    sane = (
        version == HEADER_VERSION
        and count <= max_elements
        and 0 < size < 1 << 24
        and 4 + 4 * m0 <= data_at < label_at
        and label_at + 8 <= size
        and (label_at - data_at) % 4 == 0
        and -1 <= level < MAX_LEVELS  # -1: empty
        and 0 < m <= m0 < 1 << 15
        and (count == 0 or (level >= 0 and entry < count))
    )
    if not sane:
        return "index header is unreadable"
    return Header(max_elements, count, size, label_at, data_at, level, entry, m, m0)


def index_problem(folder: Path) -> str | None:
    """Why the HNSW files in `folder` cannot be loaded safely, or None when they are whole.

    A folder without a header has not been persisted yet (Chroma writes it after
    `sync_threshold` writes): that is not damage.
    """
    header = read_header(folder)
    if header is None or isinstance(header, str):
        return header
    for name, expected in (
        ("data_level0.bin", header.count * header.per_element),
        ("length.bin", header.count * LABEL_BYTES),
    ):
        path = folder / name
        size = path.stat().st_size if path.is_file() else None
        # The header can lag the data (it is rewritten at persist time), so only a file
        # shorter than the header's element count is damage: that is the read past the
        # end that segfaults.
        if size is None or size < expected:
            found = "missing" if size is None else f"{size} bytes"
            return f"index file {name} is {found}, shorter than the {expected} bytes it holds"
    if not (folder / "link_lists.bin").is_file():
        return "index file link_lists.bin is missing"
    # links may point at elements written after the header was (it lags the data): the
    # loader reads those from the file, so only a link past the file's end, or past the
    # room the loader allocates (max_elements), is damage
    on_disk = (folder / "data_level0.bin").stat().st_size // header.per_element
    limit = min(max(header.count, on_disk), header.max_elements)
    mapping = read_mapping(folder)
    if isinstance(mapping, str):
        return mapping
    known = np.fromiter(mapping, dtype=np.uint64) if mapping is not None else None
    rows: np.ndarray = np.memmap(folder / "data_level0.bin", dtype=np.uint8, mode="r")
    rows = rows[: header.count * header.per_element].reshape(header.count, header.per_element)
    for start in range(0, header.count, CHECK_ROWS):  # in blocks: memory stays flat
        block = np.array(rows[start : start + CHECK_ROWS])
        problem = _level0_problem(block, header, limit)
        if problem is not None:
            return problem
        if known is not None:
            live = _labels(block, header)[(block[:, 2] & DELETED_MARK) == 0]
            unknown = int(np.sum(~np.isin(live, known)))
            if unknown:
                return f"{unknown} index entries carry an unknown label"
    return _upper_levels_problem(folder, header, limit)


def torn_persist(folder: Path) -> bool:
    """Whether `folder` holds the index a kill left mid-persist: a sane header, but
    `data_level0.bin`, `length.bin` or `link_lists.bin` shorter than its element count.

    Chroma's hnswlib persists in place, header first, then the changed rows of each file
    in turn (`persistDirty`), so a process killed in between leaves exactly this: the
    rows written before are whole and the rest of the writes are in the write-ahead log.
    """
    header = read_header(folder)
    if not isinstance(header, Header) or isinstance(read_mapping(folder), str):
        return False
    sizes = {}
    for name in INDEX_FILES[1:]:
        path = folder / name
        if not path.is_file():
            return False  # a file gone is not a write cut short
        sizes[name] = path.stat().st_size
    if sizes["data_level0.bin"] < header.count * header.per_element:
        return True
    if sizes["length.bin"] < header.count * LABEL_BYTES:
        return True
    raw = (folder / "link_lists.bin").read_bytes()
    pos = 0
    for _element in range(header.count):
        if pos + 4 > len(raw):
            return True
        pos += 4 + int.from_bytes(raw[pos : pos + 4], "little")
        if pos > len(raw):
            return True
    return False


def _rows(folder: Path, header: Header) -> np.ndarray:
    size = header.count * header.per_element
    data = np.fromfile(folder / "data_level0.bin", dtype=np.uint8, count=size)
    return data.reshape(header.count, header.per_element)


def _vectors(rows: np.ndarray, header: Header) -> np.ndarray:
    raw = np.ascontiguousarray(rows[:, header.data_offset : header.label_offset])
    return raw.view(np.float32)


def _labels(rows: np.ndarray, header: Header) -> np.ndarray:
    raw = np.ascontiguousarray(rows[:, header.label_offset : header.label_offset + 8])
    return raw.view(np.uint64).ravel()


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Which rows are whole vectors: embedlab stores every vector at unit length, so a
    row that is not finite or not unit length was damaged on disk."""
    with np.errstate(all="ignore"):
        finite = np.all(np.isfinite(vectors), axis=1)
        norms = np.linalg.norm(np.where(np.isfinite(vectors), vectors, 0), axis=1)
    return finite & (np.abs(norms - 1.0) < UNIT_TOLERANCE)


def _level0_problem(rows: np.ndarray, header: Header, limit: int) -> str | None:
    if len(rows) == 0:
        return None
    counts = np.ascontiguousarray(rows[:, 0:2]).view(np.uint16).ravel()
    if int(counts.max()) > header.max_m0:
        bad = int(np.sum(counts > header.max_m0))
        return f"{bad} index entries have more links than the index allows"
    links = np.ascontiguousarray(rows[:, 4 : 4 + 4 * header.max_m0]).view(np.uint32)
    used = np.arange(header.max_m0)[None, :] < counts[:, None]
    if np.any(links[used] >= limit):
        bad = int(np.sum(np.any((links >= limit) & used, axis=1)))
        return f"{bad} index entries link past the end of the index"
    whole = unit_rows(_vectors(rows, header))
    if not whole.all():
        return f"{int(np.sum(~whole))} vectors in the index are damaged"
    return None


def _upper_levels_problem(folder: Path, header: Header, limit: int) -> str | None:
    raw = (folder / "link_lists.bin").read_bytes()
    block = 4 + 4 * header.max_m
    pos = 0
    for _element in range(header.count):
        if pos + 4 > len(raw):
            return "index file link_lists.bin is shorter than the index"
        size = int.from_bytes(raw[pos : pos + 4], "little")
        pos += 4
        if size % block or size // block > header.max_level or pos + size > len(raw):
            return "index file link_lists.bin is damaged"
        if size:
            blocks = np.frombuffer(raw, dtype=np.uint32, count=size // 4, offset=pos)
            blocks = blocks.reshape(-1, 1 + header.max_m)
            counts = blocks[:, 0] & 0xFFFF
            if np.any(counts > header.max_m):
                return "index file link_lists.bin is damaged"
            used = np.arange(header.max_m)[None, :] < counts[:, None]
            if np.any(blocks[:, 1:][used] >= limit):
                return "index file link_lists.bin links past the end of the index"
        pos += size
    return None


class _PlainUnpickler(pickle.Unpickler):
    """Chroma's mapping is dicts of ints and strings: refuse anything that names a class,
    so a damaged (or planted) file can never run code."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"unexpected {module}.{name} in the index mapping")


def read_mapping(folder: Path) -> dict[int, str] | str | None:
    """Chroma's id of each label, a reason it is unreadable, or None when there is none."""
    path = folder / MAPPING_FILE
    if not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            data = _PlainUnpickler(fh).load()
        mapping = data["label_to_id"]
        return {int(label): str(doc_id) for label, doc_id in mapping.items()}
    except Exception:  # any damage to the file: a finding, never a crash
        return f"index file {MAPPING_FILE} is unreadable"


def readable_vectors(chroma_dir: Path, collection_name: str) -> dict[str, np.ndarray]:
    """Every whole vector of a collection, by document id, read without Chroma.

    The persisted index gives the vectors up to its last sync; Chroma's write-ahead log
    (in its SQLite file) holds the writes after that, which are applied on top. A vector
    that is not whole, or whose label cannot be mapped to an id, is left out: its
    document keeps everything but the vector.
    """
    found: dict[str, np.ndarray] = {}
    for segment, collection_id in _vector_segments(chroma_dir, collection_name):
        folder = chroma_dir / segment
        header = read_header(folder)
        mapping = read_mapping(folder)
        if isinstance(header, Header) and isinstance(mapping, dict):
            size = (folder / "data_level0.bin").stat().st_size
            whole_rows = min(header.count, size // header.per_element)
            header.count = whole_rows
            rows = _rows(folder, header)
            vectors = _vectors(rows, header)
            whole = unit_rows(vectors) & ((rows[:, 2] & DELETED_MARK) == 0)
            for row, label in enumerate(_labels(rows, header).tolist()):
                doc_id = mapping.get(int(label))
                if whole[row] and doc_id is not None:
                    found[doc_id] = vectors[row].copy()
        _apply_log(chroma_dir, segment, collection_id, found)
    return found


def _apply_log(chroma_dir: Path, segment: str, collection_id: str, found: dict) -> None:
    """Chroma's write-ahead log after the index's last sync: upserts and deletes, in order."""
    database = chroma_dir / "chroma.sqlite3"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        synced = db.execute("SELECT seq_id FROM max_seq_id WHERE segment_id = ?", (segment,))
        row = synced.fetchone()
        after = int(row[0]) if row and isinstance(row[0], int) else -1
        log = db.execute(
            "SELECT operation, id, vector, encoding FROM embeddings_queue "
            "WHERE topic LIKE ? AND seq_id > ? ORDER BY seq_id",
            (f"%/{collection_id}", after),
        )
        for operation, doc_id, blob, encoding in log:
            if operation == 3:  # delete
                found.pop(doc_id, None)
            elif blob is not None and (encoding or "FLOAT32").upper() == "FLOAT32":
                vector = np.frombuffer(blob, dtype=np.float32).copy()
                if unit_rows(vector[None, :])[0]:
                    found[doc_id] = vector
                else:
                    found.pop(doc_id, None)


# -- remembering checks that passed ---------------------------------------------------------


def signature_of(folder: Path) -> list[list[Any]]:
    out = []
    for name in (*INDEX_FILES, MAPPING_FILE):
        try:
            stat = (folder / name).stat()
            # ctime too: `touch -d` or a restore with old times can set mtime back, but
            # not ctime, so a file changed behind our back never passes for checked
            out.append([name, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino])
        except OSError:
            out.append([name, None, None, None, None])
    return out


def checked_before(root: Path, folder: Path) -> bool:
    """Whether `folder`'s files are exactly those a check passed on."""
    try:
        known = json.loads((root / CHECKED_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(known, dict) and known.get(folder.name) == signature_of(folder)


def remember_checked(root: Path, folder: Path) -> None:
    """Note that `folder`'s files passed the check (written atomically; a lost note only
    costs one more check)."""
    path = root / CHECKED_FILE
    try:
        known = json.loads(path.read_text())
        known = known if isinstance(known, dict) else {}
    except (OSError, ValueError):
        known = {}
    known[folder.name] = signature_of(folder)
    temp = path.with_suffix(".tmp")
    try:
        temp.write_text(json.dumps(known))
        os.replace(temp, path)
    except OSError:
        pass
