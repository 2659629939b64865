"""Cache keys: what makes two documents "the same text" and two vectors "the same space".

A vector is reusable exactly when both the normalised text and the embedding space
match. Keeping both definitions here, in one place, is what lets ingest promise
"never embed the same text twice" and analyze promise "never compare across spaces".
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass

_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def normalise_text(text: str) -> str:
    """Canonical form used both for hashing and for what gets embedded.

    NFC folds composed/decomposed accents into one form; line endings and trailing
    blanks are editor noise, not content. Embedding the normalised text (not the raw
    one) keeps the hash and the vector describing exactly the same string.
    """
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _TRAILING_SPACE.sub("\n", text)
    return text.strip()


def content_hash(normalised_text: str) -> str:
    """sha256 hex digest of already-normalised text."""
    return hashlib.sha256(normalised_text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Space:
    """An embedding space: vectors are comparable only within one.

    `task_type` is "none" for providers that ignore it (the local model), so that
    asking the local model for another task type does not duplicate its vectors.
    """

    provider: str
    model: str
    task_type: str
    dims: int

    @property
    def collection_name(self) -> str:
        """A Chroma-legal, human-readable, collision-free collection name."""
        slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", f"{self.model}-{self.task_type}-{self.dims}")
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return f"embedlab-{slug.strip('-._')[:400]}-{digest[:8]}"

    def describe(self) -> str:
        task = "" if self.task_type == "none" else f", {self.task_type}"
        return f"{self.provider}:{self.model} ({self.dims} dims{task})"
