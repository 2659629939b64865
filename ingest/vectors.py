"""Vectors computed elsewhere: checked, normalised and stored in a space of their own.

Analysis, neighbours and maps work on any model's embeddings once they sit in a space.
Such a space's provider is `custom` and its model is the name the user gives: embedlab
never embeds into it (a free-text query there is refused), so its vectors are exactly
the ones given, made unit length (cosine geometry, as everywhere in embedlab).

Every vector is checked before anything is written: one of the wrong length, not
finite or all zeros refuses the whole input, with the rows at fault named; a silently
skipped row would leave a hole in the space that no later analysis would explain.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidRequest
from ..progress import plural
from ..store import Document, Space, Store
from .errors import SourceError
from .pipeline import (
    WRITE_CHUNK,
    IngestReport,
    check_owners,
    clear_stale_fields,
    metadata_updates,
    skipped_clause,
    unique_documents,
)
from .skips import Skips

if TYPE_CHECKING:
    from ..store.ledger import PriceTable

CUSTOM = "custom"
UNIT_TOLERANCE = 1e-3  # |norm - 1| above this: the vector was not unit length
SAME_TOLERANCE = 1e-6  # a stored unit vector this close to the given one is unchanged
MAX_NAME = 200
_SEPARATORS = re.compile(r"[\s,;]+")


def custom_space(name: str, dims: int) -> Space:
    """The space of vectors made by `name` (a model's name, in the user's words)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidRequest(
            "name the space of the vectors (<<space|--space-name>>): the model "
            "that made them, e.g. 'openai-3-small'"
        )
    name = name.strip()
    if ":" in name or len(name) > MAX_NAME:
        raise InvalidRequest(
            f"space name {name[:40]!r}: use up to {MAX_NAME} characters and no ':' "
            "(spaces are named provider:model:dims)"
        )
    return Space(CUSTOM, name, "none", dims)


def parse_vector(raw: Any) -> np.ndarray | None:
    """A 1-D float64 array from a list, an array, or text ("[0.1, 0.2]", "0.1 0.2",
    "0.1,0.2"); None when `raw` is no list of numbers."""
    if raw is None or isinstance(raw, bool | int | float | dict):
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    if isinstance(raw, str):
        text = raw.strip()
        if not text:
            return None
        if text.startswith("["):
            try:
                raw = json.loads(text)
            except ValueError:
                return None
        else:
            parts = [p for p in _SEPARATORS.split(text) if p]
            try:
                return np.array([float(p) for p in parts], dtype=np.float64)
            except ValueError:
                return None
    try:
        vector = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return vector if vector.ndim == 1 and vector.size else None


def checked_vectors(
    documents: Sequence[Document], raw_by_id: dict[str, Any], dims: int | None
) -> tuple[np.ndarray, int, np.ndarray]:
    """(unit float32 rows in `documents` order, dims, which rows were not unit length).

    `dims` None takes the first vector's length. Raises SourceError naming the faults
    when any vector is missing, of another length, not finite or all zeros.
    """
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims < 1):
        raise InvalidRequest(f"dims must be a whole number of 1 or more, not {dims!r}")
    problems: Counter[str] = Counter()
    examples: list[str] = []
    rows: list[np.ndarray] = []
    for doc in documents:
        raw = raw_by_id.get(doc.id)
        vector = parse_vector(raw)
        if vector is not None and dims is None:
            dims = len(vector)
        if vector is None:
            kind = detail = "no vector" if raw is None else "not a list of numbers"
        elif len(vector) != dims:
            kind, detail = "of another length", f"{len(vector)} numbers, not {dims}"
        elif not np.all(np.isfinite(vector)):
            kind = detail = "not finite (NaN or infinity)"
        elif not np.any(vector):
            kind = detail = "all zeros"
        else:
            rows.append(vector)
            continue
        problems[kind] += 1
        if len(examples) < 3:
            examples.append(f"{doc.id}: {detail}")
    if problems:
        kinds = ", ".join(f"{n} {kind}" for kind, n in problems.most_common())
        raise SourceError(
            f"{sum(problems.values())} of {len(documents)} vectors cannot be stored ({kinds}; "
            f"e.g. {'; '.join(examples)}); nothing was stored. Every row needs {dims or 'N'} "
            "finite numbers, not all zero (check <<vector|--vector-col>> and <<dims>>)"
        )
    if not rows:
        raise SourceError("no document with a text was read from the input; nothing was stored")
    matrix = np.stack(rows)
    norms = np.linalg.norm(matrix, axis=1)
    not_unit = np.abs(norms - 1.0) > UNIT_TOLERANCE
    return (matrix / norms[:, None]).astype(np.float32), int(len(matrix[0])), not_unit


@dataclass
class VectorReport(IngestReport):
    """What storing given vectors did: `stored` new or changed, `cached` unchanged."""

    stored: int = 0  # documents to write (new ids, changed vectors or texts)
    written: int = 0  # of those, written so far
    normalised: int = 0  # of those, given at another length than 1 (stored unit length)

    @property
    def done(self) -> int:
        return self.cached + self.written

    def __repr__(self) -> str:
        return (
            f"VectorReport({self.space.describe()}: {self.documents} documents, "
            f"{self.cached} unchanged, {self.stored} stored"
            + (f" ({self.changed} changed)" if self.changed else "")
            + (f", {self.normalised} normalised" if self.normalised else "")
            + f", {sum(self.skipped.values())} skipped, {self.seconds:.1f} s)"
        )

    def summary(self, prices: PriceTable | None = None) -> str:
        """The CLI's summary line (given vectors cost nothing: `prices` is not read)."""
        verb = "to store" if self.dry_run else "stored"
        line = (
            f"{plural(self.documents, 'document')}: {self.cached} unchanged, {self.stored} {verb}"
        )
        if self.dry_run:
            line = "dry run: " + line
        if self.changed:
            line += f" ({self.changed} with a changed vector or text)"
        if self.relabelled:
            line += f", {self.relabelled} labels or sources updated"
        if self.fields_updated:
            line += f", fields of {plural(self.fields_updated, 'document')} updated"
        if self.normalised:
            verb = "would be" if self.dry_run else "stored"
            line += f", {self.normalised} not unit length: {verb} normalised"
        if self.pruned:
            verb = "would be removed" if self.dry_run else "removed"
            line += f", {self.pruned} no longer in the input {verb}"
        line += skipped_clause(self.skipped)
        return f"{line}, no embedding calls, {self.seconds:.1f} s"


def store_vectors(
    documents: Sequence[Document],
    raw_by_id: dict[str, Any],
    store: Store | None,
    name: str,
    dims: int | None = None,
    dry_run: bool = False,
    skipped: Counter[str] | None = None,
    started: float | None = None,
    on_progress: Callable[[VectorReport], None] | None = None,
    replace: bool = False,
) -> VectorReport:
    """Check every vector, then write what is new or changed into the `custom` space.

    The same ids with the same texts and vectors cost nothing (no write); a changed
    vector or text replaces the stored one; a new label or source is a metadata update.
    """
    skipped = skipped if skipped is not None else Skips()
    kept = unique_documents(documents, skipped)
    vectors, dims, not_unit = checked_vectors(kept, raw_by_id, dims)
    space = custom_space(name, dims)
    report = VectorReport(space=space, dry_run=dry_run, skipped=skipped)
    if started is not None:
        report.started = started
    report.documents = len(kept)
    report.ids = [d.id for d in kept]
    report.cut = sum(d.cut for d in kept)
    notify = on_progress or (lambda _report: None)
    collection = store.collection(space) if store is not None else None
    stored = collection.metadata_by_id(report.ids) if collection is not None else {}
    owners = {doc_id: meta for doc_id, _text, meta in collection.pending()} if collection else {}
    report.replaced = check_owners(kept, {**owners, **stored}, replace)  # another's: refused
    kept = clear_stale_fields(kept, stored)
    hashes = {doc_id: meta.get("content_hash") for doc_id, meta in stored.items()}
    same_text = [i for i, d in enumerate(kept) if hashes.get(d.id) == d.content_hash]
    unchanged = set()
    if same_text and collection is not None:  # same text: it was stored, so it exists
        held, _, _ = collection.load([kept[i].id for i in same_text], with_text=False)
        close = np.abs(held - vectors[same_text]).max(axis=1) <= SAME_TOLERANCE
        unchanged = {i for i, same in zip(same_text, close.tolist()) if same}
    write = [i for i in range(len(kept)) if i not in unchanged]
    relabel, report.relabelled, report.fields_updated = metadata_updates(
        [kept[i] for i in sorted(unchanged)], stored
    )
    report.cached = len(unchanged)
    report.changed = sum(1 for i in write if kept[i].id in stored)
    report.stored = len(write)
    report.normalised = int(not_unit[write].sum())
    report.planned_embed = 0
    notify(report)
    if dry_run or (not write and not relabel):
        report.seconds = time.monotonic() - report.started
        return report
    assert store is not None, "only a dry run may go without a store"
    collection = store.collection(space, create=True)
    if relabel:
        collection.relabel(relabel, [False] * len(relabel))
    for start in range(0, len(write), WRITE_CHUNK):
        rows = write[start : start + WRITE_CHUNK]
        collection.write([kept[i] for i in rows], vectors[rows], [False] * len(rows))
        report.last_written = kept[rows[-1]].id
        report.written += len(rows)
        notify(report)
    if report.last_written is not None:
        collection.persist_index(report.last_written)
    # the vectors repair could not read are back, for the documents written
    collection.clear_pending([kept[i].id for i in write])
    report.seconds = time.monotonic() - report.started
    return report
