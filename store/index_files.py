"""A cheap, in-process look at a collection's HNSW files before Chroma loads them.

Chroma's native code segfaults on a truncated index file (chroma #7090, #5925), so a
command that simply opened a damaged collection would die with signal 11. Reading the
files' header and sizes first (no Chroma, microseconds) turns that into a StoreDamaged
error that names the way out: `embedlab repair`. `repair` itself still probes every
vector in child processes; this check only has to catch what would crash.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

# hnswlib's header as Chroma writes it (format version 1): version, offsetLevel0,
# max_elements, cur_element_count, size_data_per_element, label_offset, offsetData,
# maxlevel, enterpoint_node, maxM, maxM0, M, mult, ef_construction.
HEADER = struct.Struct("<iQQQQQQiIQQQdQ")
HEADER_VERSION = 1
LABEL_BYTES = 4  # length.bin holds one uint32 per element


def vector_segment_folders(chroma_dir: Path, collection_name: str) -> list[Path]:
    """The HNSW folders of a collection; Chroma names them after the vector segment's id,
    which only its SQLite catalogue knows (the one place embedlab reads Chroma's tables)."""
    database = chroma_dir / "chroma.sqlite3"
    if not database.is_file():
        return []
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
            "WHERE c.name = ? AND s.scope = 'VECTOR'",
            (collection_name,),
        ).fetchall()
    return [chroma_dir / segment_id for (segment_id,) in rows]


def index_problem(folder: Path) -> str | None:
    """Why the HNSW files in `folder` cannot be loaded safely, or None when they look whole.

    A folder without a header has not been persisted yet (Chroma writes it after
    `sync_threshold` writes): that is not damage.
    """
    header_file = folder / "header.bin"
    if not header_file.is_file():
        return None
    raw = header_file.read_bytes()
    if len(raw) != HEADER.size:
        return f"index header is {len(raw)} bytes, not {HEADER.size}"
    version, _, max_elements, count, per_element, *_ = HEADER.unpack(raw)
    if version != HEADER_VERSION or count > max_elements or not 0 < per_element < 1 << 24:
        return "index header is unreadable"
    for name, expected in (
        ("data_level0.bin", count * per_element),
        ("length.bin", count * LABEL_BYTES),
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
    return None
