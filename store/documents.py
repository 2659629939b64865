"""The unit that flows from sources through ingest into the store and out to analysis."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .keys import content_hash, normalise_text

if TYPE_CHECKING:
    import pandas as pd

# No embedding model reads more than a few thousand tokens; beyond this a text only
# weighs on the store and the reports (a 10 MB log file, say), so it is cut here,
# before hashing, and counted.
MAX_TEXT_CHARS = 100_000

# A document's own fields (a CSV's or JSON object's other columns) are stored beside the
# bookkeeping under this prefix, so no column name can ever overwrite a bookkeeping key.
USER_PREFIX = "user:"
MAX_FIELDS = 32  # per document; the columns past the first 32 are dropped, and counted
MAX_FIELD_CHARS = 200  # a longer string value is cut to this

Scalar = str | int | float | bool


def user_fields(
    record: Mapping[Any, Any], exclude: Iterable[Any] = ()
) -> tuple[dict[str, Scalar], int]:
    """(the fields to keep, how many were dropped past MAX_FIELDS) of one input record:
    every entry not in `exclude` whose value is a str, int, float or bool (numpy scalars
    too); None, NaN and empty strings are no value, longer strings are cut to
    MAX_FIELD_CHARS, other values (lists, objects) are not kept."""
    skip = {str(name) for name in exclude if name is not None}
    kept: dict[str, Scalar] = {}
    dropped = 0
    for name, value in record.items():
        name = str(name)
        if name in skip or name in kept or not name:
            continue
        value = _scalar(value)
        if value is None:
            continue
        if len(kept) >= MAX_FIELDS:
            dropped += 1
            continue
        kept[name] = value
    return kept, dropped


def _scalar(value: Any) -> Scalar | None:
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # a numpy scalar
        try:
            value = value.item()
        except (TypeError, ValueError):
            return None
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, str):
        value = value.strip()
        return value[:MAX_FIELD_CHARS] if value else None
    return None


def stored_fields(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored document's own fields (its metadata under USER_PREFIX), by their names,
    in name order: Chroma gives a record's metadata in no fixed order (an updated field
    can come back last), and an export or a listing must not depend on it."""
    return {
        key[len(USER_PREFIX) :]: value
        for key, value in sorted((meta or {}).items())
        if key.startswith(USER_PREFIX) and value is not None
    }


@dataclass(frozen=True)
class Document:
    """One text with its identity.

    `text` is normalised on construction so that every consumer (hashing, embedding,
    storing) sees the same string; `content_hash` is derived from it, never passed in.
    """

    id: str
    text: str
    source: str
    label: str | None = None
    # the input's other scalar fields (user_fields); a None value (set by ingest only)
    # removes a field the document had stored and no longer has
    fields: dict[str, Scalar | None] = field(default_factory=dict, hash=False)
    dropped_fields: int = 0  # fields past MAX_FIELDS, not kept
    content_hash: str = field(init=False)
    cut: bool = field(init=False)  # longer than MAX_TEXT_CHARS, and cut to it

    def __post_init__(self) -> None:
        text = normalise_text(self.text)
        object.__setattr__(self, "cut", len(text) > MAX_TEXT_CHARS)
        text = text[:MAX_TEXT_CHARS]
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "content_hash", content_hash(text))

    def metadata(self, truncated: bool = False) -> dict[str, str | int | float | bool | None]:
        """Chroma metadata: everything later analysis needs besides the text and vector.

        `label` is always present: Chroma's upsert merges metadata, and only an explicit
        None removes a label that the source no longer gives. The document's own fields
        follow under USER_PREFIX: none can take a bookkeeping key's place.
        """
        meta: dict[str, str | int | float | bool | None] = {
            f"{USER_PREFIX}{name}": value for name, value in self.fields.items()
        }
        meta.update(
            {
                "source": self.source,
                "content_hash": self.content_hash,
                "chars": len(self.text),
                "truncated": truncated,
                "label": self.label,
            }
        )
        return meta


def documents_frame(ids: list[str], metadatas: list[dict], texts: list[str]) -> pd.DataFrame:
    """Stored documents as a frame: id, label, source, text, content_hash, chars, and
    fields (a dict per row of the document's own fields, {} when it has none)."""
    import pandas as pd

    return pd.DataFrame(
        {
            "id": ids,
            "label": [m.get("label") for m in metadatas],
            "source": [m.get("source") for m in metadatas],
            "text": texts,
            "content_hash": [m.get("content_hash") for m in metadatas],
            "chars": [m.get("chars") for m in metadatas],
            "fields": [stored_fields(m) for m in metadatas],
        }
    )


def pending_records(
    pending: list[tuple[str, str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """(id, metadata) of documents waiting for their vector (`SpaceCollection.pending`)."""
    return [(doc_id, meta) for doc_id, _text, meta in pending]


class Removed(list[str]):
    """What a delete removed (or would, dry run): the ids, a list, and `not_found`, the
    ids asked for by name that no space of the store holds (every front end names them)."""

    def __init__(self, ids: list[str] | None = None, not_found: list[str] | None = None):
        super().__init__(ids or [])
        self.not_found: list[str] = list(not_found or [])
