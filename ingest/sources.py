"""Generic sources: a folder of text files, a CSV, a JSON Lines file.

Each yields `Document`s with ids `<kind>/<name>/<key>` so two inputs never collide,
and counts what it had to skip (and why) in a shared Counter instead of failing:
one bad row must not cost the rest of a paid ingest.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, NotFound
from ..store import Document
from ..store.documents import user_fields
from .encoding import UNICODE_BOMS, UTF8, decode
from .errors import SourceError
from .skips import skip

BINARY_SNIFF_BYTES = 8192
MAX_FILE_BYTES = 64 * 1024 * 1024  # beyond any embedding model's input many times over


# The fields of a document in the API's JSON body ({"id", "text", "label", "source"}):
# every reader that takes field names by default (Python objects, NDJSON and CSV uploads)
# takes these, so one record is read alike whichever way it is sent.
DEFAULT_FIELDS = {"text": "text", "id": "id", "label": "label"}


def default_fields(
    present: Iterable[str],
    text: str | None,
    id: str | None,
    label: str | None,  # noqa: A002
) -> tuple[str, str | None, str | None]:
    """(text, id, label) field names: those given, else the JSON body's names ("text",
    and "id" and "label" where the input has such a field)."""
    names = set(present)
    return (
        text or DEFAULT_FIELDS["text"],
        id or (DEFAULT_FIELDS["id"] if DEFAULT_FIELDS["id"] in names else None),
        label or (DEFAULT_FIELDS["label"] if DEFAULT_FIELDS["label"] in names else None),
    )


def decode_text(raw: bytes, encodings: Counter[str] | None = None) -> str:
    """The text of a file's bytes (ingest.encoding's rules); each file not read as UTF-8
    is counted in `encodings` by the encoding used, for the ingest's summary."""
    text, encoding = decode(raw)
    if encodings is not None and encoding != UTF8:
        encodings[encoding] += 1
    return text


def looks_binary(raw: bytes) -> bool:
    """NUL bytes mean binary, unless a byte-order mark says UTF-16/32 text."""
    if any(raw.startswith(bom) for bom, _ in UNICODE_BOMS):
        return False
    return b"\x00" in raw[:BINARY_SNIFF_BYTES]


def file_documents(
    folder: str | Path,
    pattern: str = "*",
    skipped: Counter[str] | None = None,
    name: str | None = None,
    encodings: Counter[str] | None = None,
) -> Iterator[Document]:
    """Every non-hidden file under `folder` (label = its parent folder's name).

    Links are never followed out of `folder`: a source must not read what it was not given.
    """
    root = Path(folder)
    if not root.is_dir():
        if not root.exists():
            raise SourceError(f"{root} does not exist")
        raise SourceError(f"{root} is not a folder; give the folder that holds the text files")
    root_real = root.resolve()
    source = f"files/{name or root_real.name}"
    skipped = skipped if skipped is not None else Counter()
    matched = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            if filename.startswith(".") or not path.match(pattern):
                continue
            matched += 1
            real = path.resolve()
            rel = path.relative_to(root)
            where = rel.as_posix()
            if not real.is_relative_to(root_real):
                skip(skipped, "link outside the folder", where)
                continue
            if not real.is_file():
                skip(skipped, "not a regular file", where)
                continue
            if real.stat().st_size > MAX_FILE_BYTES:
                skip(skipped, f"file over {MAX_FILE_BYTES // 2**20} MB", where)
                continue
            raw = real.read_bytes()
            if looks_binary(raw):
                skip(skipped, "binary file", where)
                continue
            label = rel.parent.name if rel.parent != Path(".") else None
            yield Document(
                f"{source}/{rel.as_posix()}",
                decode_text(raw, encodings),
                source=source,
                label=label,
            )
    if not matched:
        raise SourceError(
            f"no file under {root} matches <<glob={pattern!r}>>; a glob like '*.txt' or "
            "'**/*.md' names the files to read"
        )


def csv_documents(
    path: str | Path,
    text_col: str = "text",
    id_col: str | None = None,
    label_col: str | None = None,
    skipped: Counter[str] | None = None,
    name: str | None = None,
    vector_col: str | None = None,
    vectors: dict[str, Any] | None = None,
    encodings: Counter[str] | None = None,
    defaults: bool = False,
) -> Iterator[Document]:
    """Rows of a CSV file: every record ends as a document or as a counted skip.

    With `defaults`, the columns not named are those of the API's JSON body where the
    header has them (default_fields): "id" and "label".

    Quoted newlines are kept. A record with the wrong number of fields is counted; when
    it spans several lines (an unclosed quote swallowing the rows after it), only its
    first line is counted as malformed and reading resumes on the next line, so the
    rows the quote swallowed are not lost. With `vector_col`, each document's raw vector
    cell goes into `vectors` by id (the first row of a repeated id wins, as in ingest).
    """
    path = Path(path)
    skipped = skipped if skipped is not None else Counter()
    text = decode_text(_read_source(path, "CSV"), encodings)
    lines = io.StringIO(text, newline="").readlines()  # \n, \r\n or \r, as csv reads them
    delimiter = _delimiter(lines[0] if lines else "")
    header_rows = list(_csv_records(lines[:1], 0, 1, delimiter))
    header = header_rows[0][1] if header_rows and header_rows[0][1] else []
    if defaults:
        text_col, id_col, label_col = default_fields(header, text_col, id_col, label_col)
    _check_columns(path, header, text_col, id_col, label_col, vector_col)
    position = {column: header.index(column) for column in header}  # a repeated name: first
    source = f"csv/{name or path.stem}"
    named = (text_col, id_col, label_col, vector_col)  # the other columns are its fields
    rows = _csv_rows(lines, len(header), skipped, delimiter)
    for row_number, (line_number, row) in enumerate(rows, start=1):
        key = row[position[id_col]].strip() if id_col else str(row_number)
        if not key:
            skip(skipped, "missing id", f"line {line_number}")
            continue
        label = row[position[label_col]].strip() if label_col else None
        own, dropped = user_fields({column: row[i] for column, i in position.items()}, named)
        doc = Document(
            f"{source}/{key}",
            row[position[text_col]],
            source=source,
            label=label or None,
            fields=dict(own),
            dropped_fields=dropped,
        )
        if vector_col is not None and vectors is not None:
            vectors.setdefault(doc.id, row[position[vector_col]])
        yield doc


def parquet_documents(
    path: str | Path,
    text_col: str = "text",
    id_col: str | None = None,
    label_col: str | None = None,
    skipped: Counter[str] | None = None,
    name: str | None = None,
    vector_col: str | None = None,
    vectors: dict[str, Any] | None = None,
    encodings: Counter[str] | None = None,
) -> Iterator[Document]:
    """Rows of a Parquet file (read by pandas), with the CSV reader's ids and checks (and
    its `vector_col`, e.g. a list column of floats)."""
    import pandas as pd

    path = Path(path)
    skipped = skipped if skipped is not None else Counter()
    if not path.is_file():
        raise SourceError(f"{path} does not exist")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise SourceError(f"{path} is not a readable Parquet file ({exc})") from None
    _check_columns(path, [str(c) for c in frame.columns], text_col, id_col, label_col, vector_col)
    source = f"parquet/{name or path.stem}"
    texts = frame[text_col].tolist()
    keys = frame[id_col].tolist() if id_col else range(1, len(frame) + 1)
    labels = frame[label_col].tolist() if label_col else [None] * len(frame)
    raws = frame[vector_col].tolist() if vector_col else [None] * len(frame)
    others = frame.drop(
        columns=[c for c in (text_col, id_col, label_col, vector_col) if c is not None]
    ).to_dict(orient="records")
    rows = zip(keys, texts, labels, raws, others)
    for row_number, (key, body, label, raw, other) in enumerate(rows, 1):
        if not isinstance(body, str):
            missing = body is None or body != body  # None, or pandas' NaN for a null cell
            skip(skipped, "no text" if missing else "text not a string", f"row {row_number}")
            continue
        key = "" if key is None else str(key).strip()
        if not key:
            skip(skipped, "missing id", f"row {row_number}")
            continue
        tag = None if label is None or label != label else str(label).strip() or None
        own, dropped = user_fields(other)
        doc = Document(
            f"{source}/{key}",
            body,
            source=source,
            label=tag,
            fields=dict(own),
            dropped_fields=dropped,
        )
        if vector_col is not None and vectors is not None:
            vectors.setdefault(doc.id, raw)
        yield doc


def _check_columns(
    path: Path,
    columns: list[str],
    text_col: str,
    id_col: str | None,
    label_col: str | None,
    vector_col: str | None = None,
) -> None:
    """Refuse a missing column in one line that names the columns there are."""
    found = ", ".join(columns) or "none"
    for option, column in (
        ("<<text|--text-col>>", text_col),
        ("<<id|--id-col>>", id_col),
        ("<<label|--label-col>>", label_col),
        ("<<vector|--vector-col>>", vector_col),
    ):
        if column is not None and column not in columns:
            raise SourceError(f"{path} has no column {column!r} (columns: {found}); set {option}")


def _delimiter(header: str) -> str:
    """The header's separator: a comma, else a semicolon, tab or bar when the header has
    more of those (spreadsheets in many locales write `;`)."""
    counts = {sep: header.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda sep: (counts[sep], sep == ","))
    return best if counts[best] else ","


def _csv_rows(
    lines: list[str], width: int, skipped: Counter[str], delimiter: str = ","
) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each well-formed data row; every other record is counted
    in `skipped`, by its line number."""
    start = 1  # line 0 is the header
    while start < len(lines):
        for first, fields, spanned in _csv_records(lines, start, len(lines), delimiter):
            if fields is not None and len(fields) == width:
                yield first + 1, fields
            elif fields is not None and spanned == 1:
                skip(skipped, "CSV row with the wrong number of fields", f"line {first + 1}")
            else:  # an open quote ran over the lines after it: resync on the next line
                skip(skipped, "malformed CSV row (unbalanced quote)", f"line {first + 1}")
                start = first + 1
                break
        else:
            return


def _csv_records(
    lines: list[str], start: int, stop: int, delimiter: str = ","
) -> Iterator[tuple[int, list[str] | None, int]]:
    """(first line index, fields, lines spanned) of each CSV record in lines[start:stop];
    fields is None for a record whose quote stays open to the end of the file."""
    csv.field_size_limit(MAX_FILE_BYTES)  # a long post is one cell, not a dropped row
    reader = csv.reader(lines[start:stop], strict=False, delimiter=delimiter)
    consumed = 0
    while True:
        first = start + consumed
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield first, None, 2
            return
        spanned = reader.line_num - consumed
        consumed = reader.line_num
        if spanned > 1 and first + spanned >= stop and _unterminated(lines[first:stop]):
            yield first, None, spanned
            return
        if fields:  # a blank line is no record
            yield first, fields, spanned


def _unterminated(record_lines: list[str]) -> bool:
    """True when the quotes in these lines are unbalanced (the csv module then reads to
    the end of the file and returns the rest as one field)."""
    return sum(line.count('"') for line in record_lines) % 2 == 1


def _read_source(path: Path, kind: str) -> bytes:
    if path.is_dir():
        raise SourceError(f"{path} is a folder; give a {kind} file (or use `ingest files`)")
    if not path.is_file():
        raise SourceError(f"{path} does not exist")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise SourceError(
            f"{path} is over {MAX_FILE_BYTES // 2**20} MB; split it into smaller files"
        )
    return path.read_bytes()


def jsonl_documents(
    path: str | Path,
    text_key: str = "text",
    id_key: str | None = None,
    label_key: str | None = None,
    skipped: Counter[str] | None = None,
    name: str | None = None,
    vector_key: str | None = None,
    vectors: dict[str, Any] | None = None,
    encodings: Counter[str] | None = None,
    defaults: bool = False,
) -> Iterator[Document]:
    """One JSON object per line; broken lines are counted and skipped, not fatal.

    With `defaults`, the keys not named are those of the API's JSON body where some line
    has them (default_fields): "id" and "label".

    The file is decoded whole (a UTF-16/32 byte-order mark only starts the first line),
    and every key asked for must exist on some line: a mistyped --label-key would
    otherwise drop every label without a word.
    """
    path = Path(path)
    skipped = skipped if skipped is not None else Counter()
    text = decode_text(_read_source(path, "JSON Lines"), encodings)
    source = f"jsonl/{name or path.stem}"
    keys_seen: set[str] = set()
    documents = []
    lines: list[tuple[int, dict[str, Any]]] = []
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except RecursionError:
            skip(skipped, "line nested too deep", f"line {line_number}")
            continue
        except ValueError:
            skip(skipped, "line not JSON", f"line {line_number}")
            continue
        if not isinstance(record, dict):
            skip(skipped, "line not a JSON object", f"line {line_number}")
            continue
        keys_seen.update(record)
        lines.append((line_number, record))
    if defaults:
        text_key, id_key, label_key = default_fields(keys_seen, text_key, id_key, label_key)
    for line_number, record in lines:
        body = record.get(text_key)
        if not isinstance(body, str):
            skip(skipped, f"no text in {text_key!r}", f"line {line_number}")
            continue
        key = record.get(id_key) if id_key else line_number
        if key is None or str(key).strip() == "":
            skip(skipped, "missing id", f"line {line_number}")
            continue
        label = record.get(label_key) if label_key else None
        own, dropped = user_fields(record, (text_key, id_key, label_key, vector_key))
        doc = Document(
            f"{source}/{key}",
            body,
            source=source,
            label=None if label is None else str(label),
            fields=dict(own),
            dropped_fields=dropped,
        )
        if vector_key is not None and vectors is not None:
            vectors.setdefault(doc.id, record.get(vector_key))
        documents.append(doc)
    found = ", ".join(sorted(keys_seen)) or "none"
    for option, key in (
        ("<<text|--text-key>>", text_key),
        ("<<id|--id-key>>", id_key),
        ("<<label|--label-key>>", label_key),
        ("<<vector|--vector-key>>", vector_key),
    ):
        if key is not None and keys_seen and key not in keys_seen:
            raise SourceError(
                f"{path} has no key {key!r} on any line (keys: {found}); set {option}"
            )
    if not documents and skipped.get("line not JSON") and not keys_seen:
        raise SourceError(
            f"no line of {path} is JSON; give a JSON Lines file (one object per line)"
        )
    yield from documents


def read_path(
    path: str | os.PathLike[str],
    text: str,
    id: str | None,  # noqa: A002
    label: str | None,
    glob: str,
    name: str | None,
    kind: str | None,
    skipped: Counter[str],
    vector: str | None = None,
    vectors: dict[str, Any] | None = None,
    encodings: Counter[str] | None = None,
    defaults: bool = False,
) -> tuple[list[Document], str, str]:
    """(documents, source name, the input's real path) of a folder, .csv or .jsonl file.

    `kind` ("files", "csv", "jsonl") overrides the guess from the path; the source name
    is `<kind>/<name or the file's stem or the folder's name>`. `vector` names the
    column (key) of vectors computed elsewhere; they are put in `vectors` by id. Files
    not read as UTF-8 are counted in `encodings` by the encoding used. With `defaults`
    (an upload), a csv's or jsonl's fields not named are the JSON body's (default_fields).
    """
    target = Path(path)
    if kind is None:
        suffix = target.suffix.lower()
        kind = (
            "files"
            if target.is_dir()
            else {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(
                suffix
            )
        )
    if kind is None:
        if not target.exists():
            raise NotFound(f"{target} does not exist")
        raise InvalidRequest(f"{target}: give a folder, a .csv, .jsonl or .parquet file")
    if vector is not None and kind == "files":
        raise InvalidRequest(
            "a folder of text files has no vector column; give a csv, jsonl or parquet file"
        )
    if kind == "files":
        docs: Iterable[Document] = file_documents(target, glob, skipped, name, encodings)
        default = target.resolve().name
    elif kind == "csv":
        docs = csv_documents(
            target, text, id, label, skipped, name, vector, vectors, encodings, defaults
        )
        default = target.stem
    elif kind == "jsonl":
        docs = jsonl_documents(
            target, text, id, label, skipped, name, vector, vectors, encodings, defaults
        )
        default = target.stem
    elif kind == "parquet":
        docs = parquet_documents(target, text, id, label, skipped, name, vector, vectors)
        default = target.stem
    else:
        raise InvalidRequest(f"unknown kind {kind!r}; use files, csv, jsonl or parquet")
    return list(docs), f"{kind}/{name or default}", str(target.resolve())
