"""The unit that flows from sources through ingest into the store and out to analysis."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .keys import content_hash, normalise_text

if TYPE_CHECKING:
    import pandas as pd

# No embedding model reads more than a few thousand tokens; beyond this a text only
# weighs on the store and the reports (a 10 MB log file, say), so it is cut here,
# before hashing, and counted.
MAX_TEXT_CHARS = 100_000


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
    content_hash: str = field(init=False)
    cut: bool = field(init=False)  # longer than MAX_TEXT_CHARS, and cut to it

    def __post_init__(self) -> None:
        text = normalise_text(self.text)
        object.__setattr__(self, "cut", len(text) > MAX_TEXT_CHARS)
        text = text[:MAX_TEXT_CHARS]
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "content_hash", content_hash(text))

    def metadata(self, truncated: bool = False) -> dict[str, str | int | bool | None]:
        """Chroma metadata: everything later analysis needs besides the text and vector.

        `label` is always present: Chroma's upsert merges metadata, and only an explicit
        None removes a label that the source no longer gives.
        """
        return {
            "source": self.source,
            "content_hash": self.content_hash,
            "chars": len(self.text),
            "truncated": truncated,
            "label": self.label,
        }


def documents_frame(ids: list[str], metadatas: list[dict], texts: list[str]) -> pd.DataFrame:
    """Stored documents as a frame: id, label, source, text, content_hash, chars."""
    import pandas as pd

    return pd.DataFrame(
        {
            "id": ids,
            "label": [m.get("label") for m in metadatas],
            "source": [m.get("source") for m in metadatas],
            "text": texts,
            "content_hash": [m.get("content_hash") for m in metadatas],
            "chars": [m.get("chars") for m in metadatas],
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
