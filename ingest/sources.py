"""Generic sources: a folder of text files, a CSV, a JSON Lines file.

Each yields `Document`s with ids `<kind>/<name>/<key>` so two inputs never collide,
and counts what it had to skip (and why) in a shared Counter instead of failing:
one bad row must not cost the rest of a paid ingest.
"""

from __future__ import annotations

import codecs
import io
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from ..store import Document
from .errors import SourceError

BINARY_SNIFF_BYTES = 8192
MAX_FILE_BYTES = 64 * 1024 * 1024  # beyond any embedding model's input many times over
UNICODE_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM is its prefix
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def decode_text(raw: bytes) -> str:
    """UTF-16/32 by their byte-order mark, else UTF-8, else latin-1 (which decodes any bytes)."""
    for bom, encoding in UNICODE_BOMS:
        if raw.startswith(bom):
            return raw.decode(encoding, errors="replace")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def looks_binary(raw: bytes) -> bool:
    """NUL bytes mean binary, unless a byte-order mark says UTF-16/32 text."""
    if any(raw.startswith(bom) for bom, _ in UNICODE_BOMS):
        return False
    return b"\x00" in raw[:BINARY_SNIFF_BYTES]


def file_documents(
    folder: str | Path, pattern: str = "*", skipped: Counter[str] | None = None
) -> Iterator[Document]:
    """Every non-hidden file under `folder` (label = its parent folder's name).

    Links are never followed out of `folder`: a source must not read what it was not given.
    """
    root = Path(folder)
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder; give the folder that holds the text files")
    root_real = root.resolve()
    skipped = skipped if skipped is not None else Counter()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or not path.match(pattern):
                continue
            real = path.resolve()
            if not real.is_relative_to(root_real):
                skipped["link outside the folder"] += 1
                continue
            if not real.is_file():
                skipped["not a regular file"] += 1
                continue
            if real.stat().st_size > MAX_FILE_BYTES:
                skipped[f"file over {MAX_FILE_BYTES // 2**20} MB"] += 1
                continue
            raw = real.read_bytes()
            if looks_binary(raw):
                skipped["binary file"] += 1
                continue
            rel = path.relative_to(root)
            label = rel.parent.name if rel.parent != Path(".") else None
            yield Document(
                f"files/{root_real.name}/{rel.as_posix()}",
                decode_text(raw),
                source=f"files/{root_real.name}",
                label=label,
            )


def csv_documents(
    path: str | Path,
    text_col: str = "text",
    id_col: str | None = None,
    label_col: str | None = None,
    skipped: Counter[str] | None = None,
) -> Iterator[Document]:
    """Rows of a CSV file; quoted newlines are pandas' to handle, bad rows are counted."""
    import pandas as pd

    path = Path(path)
    skipped = skipped if skipped is not None else Counter()
    try:
        frame = pd.read_csv(
            io.StringIO(decode_text(path.read_bytes())),
            dtype=str,
            keep_default_na=False,
            engine="python",  # the engine that can count bad rows instead of failing
            on_bad_lines=lambda _fields: skipped.update(["malformed CSV row"]),
        )
    except FileNotFoundError:
        raise SourceError(f"{path} does not exist") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read {path} as CSV ({str(exc).splitlines()[0]})") from None
    found = ", ".join(map(str, frame.columns)) or "none"
    for option, column in (
        ("--text-col", text_col),
        ("--id-col", id_col),
        ("--label-col", label_col),
    ):
        if column is not None and column not in frame.columns:
            raise SourceError(f"{path} has no column {column!r} (columns: {found}); set {option}")
    source = f"csv/{path.stem}"
    for row_number, row in enumerate(frame.itertuples(index=False), start=1):
        record = dict(zip(frame.columns, row))
        key = record[id_col].strip() if id_col else str(row_number)
        if not key:
            skipped["missing id"] += 1
            continue
        label = record[label_col].strip() if label_col else None
        yield Document(f"{source}/{key}", record[text_col], source=source, label=label or None)


def jsonl_documents(
    path: str | Path,
    text_key: str = "text",
    id_key: str | None = None,
    label_key: str | None = None,
    skipped: Counter[str] | None = None,
) -> Iterator[Document]:
    """One JSON object per line; broken lines are counted and skipped, not fatal."""
    path = Path(path)
    skipped = skipped if skipped is not None else Counter()
    if not path.is_file():
        raise SourceError(f"{path} does not exist")
    source = f"jsonl/{path.stem}"
    keys_seen: set[str] = set()
    with open(path, "rb") as fh:
        for line_number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(decode_text(raw))
            except ValueError:
                skipped["line not JSON"] += 1
                continue
            if not isinstance(record, dict):
                skipped["line not a JSON object"] += 1
                continue
            keys_seen.update(record)
            text = record.get(text_key)
            if not isinstance(text, str):
                skipped[f"no text in {text_key!r}"] += 1
                continue
            key = record.get(id_key) if id_key else line_number
            if key is None or str(key).strip() == "":
                skipped["missing id"] += 1
                continue
            label = record.get(label_key) if label_key else None
            yield Document(
                f"{source}/{key}", text, source=source, label=None if label is None else str(label)
            )
    found = ", ".join(sorted(keys_seen)) or "none"
    for option, key in (("--text-key", text_key), ("--id-key", id_key)):
        if key is not None and keys_seen and key not in keys_seen:
            raise SourceError(
                f"{path} has no key {key!r} on any line (keys: {found}); set {option}"
            )
