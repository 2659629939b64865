"""Export a selection's ids, labels, sources, texts and float32 vectors, for use without
Chroma: one .parquet file, one .jsonl file, or ("npy") a folder holding vectors.npy and
documents.jsonl in the same row order. Reads nothing but what it is given.

When some document has fields of its own (a CSV's other columns), every row carries
"fields": an object in JSON Lines, a JSON text in Parquet's "fields" column."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidRequest

FORMATS = ("parquet", "npy", "jsonl")


def check_format(format: str) -> None:  # noqa: A002 - the CLI's --format
    if format not in FORMATS:
        raise InvalidRequest(f"format must be parquet, npy or jsonl, not {format!r}")


def read_parquet_export(data: bytes) -> tuple[list[dict[str, Any]], np.ndarray, int]:
    """(rows, vectors, dims) of a parquet export's bytes (a service sends one), to write
    it again in any format here (write_export)."""
    import io

    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    dims = table.schema.field("vector").type.list_size
    rows = table.select(["id", "label", "source", "text"]).to_pylist()
    if "fields" in table.column_names:
        for row, fields in zip(rows, table.column("fields").to_pylist()):
            row["fields"] = json.loads(fields) if fields else {}
    flat = table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return rows, np.asarray(flat, dtype=np.float32).reshape(len(rows), dims), dims


def export_rows(
    ids: list[str], labels: list[Any], texts: list[str], metadata_by_id: dict[str, dict]
) -> list[dict[str, Any]]:
    """One row per document: id, label, source, text, and its fields when any document
    of the export has some."""
    from .documents import stored_fields

    rows = [
        {
            "id": doc_id,
            "label": label,
            "source": metadata_by_id[doc_id].get("source"),
            "text": text,
            "fields": stored_fields(metadata_by_id[doc_id]),
        }
        for doc_id, label, text in zip(ids, labels, texts)
    ]
    if not any(row["fields"] for row in rows):
        for row in rows:
            del row["fields"]
    return rows


def write_export(
    path: str | os.PathLike[str],
    format: str,  # noqa: A002 - the CLI's --format
    rows: list[dict[str, Any]],
    vectors: np.ndarray,
    dims: int,
) -> int:
    """Write `rows` and their `vectors` (same order) at `path`; returns the row count.
    A path of the wrong kind (a file for npy, a folder otherwise) is InvalidRequest."""
    target = Path(path)
    if format == "npy" and target.exists() and not target.is_dir():
        raise InvalidRequest(f"{target} is a file; npy export writes a folder, give another path")
    if format != "npy" and target.is_dir():
        raise InvalidRequest(f"{target} is a folder; give a file path for {format} export")
    try:
        (target if format == "npy" else target.parent).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidRequest(f"cannot write {target}: {exc.strerror}") from None
    if format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                **{key: [r[key] for r in rows] for key in ("id", "label", "source", "text")},
                **(
                    {"fields": [json.dumps(r["fields"], ensure_ascii=False) for r in rows]}
                    if rows and "fields" in rows[0]
                    else {}
                ),
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(vectors.reshape(-1), type=pa.float32()), dims
                ),
            }
        )
        pq.write_table(table, target)
    elif format == "jsonl":
        with target.open("w", encoding="utf-8") as file:
            for row, vector in zip(rows, vectors):
                row = {**row, "vector": [float(x) for x in vector]}
                file.write(json.dumps(row, ensure_ascii=False) + "\n")
    else:
        np.save(target / "vectors.npy", vectors.astype(np.float32))
        with (target / "documents.jsonl").open("w", encoding="utf-8") as file:
            for row in rows:
                file.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)
