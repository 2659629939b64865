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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InvalidRequest

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


TEXT_PROVIDERS = ("gemini", "local")  # providers whose vectors embedlab makes from texts


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

    @property
    def embeds_text(self) -> bool:
        """Whether embedlab makes this space's vectors from the texts (Gemini, the local
        model): a text's vector then never changes while its hash does not. Vectors a
        user brings (`ingest_vectors`) can change under the same text."""
        return self.provider in TEXT_PROVIDERS

    @property
    def name(self) -> str:
        """ "provider:model:dims", as `embedlab spaces` lists it (and --space takes it)."""
        return f"{self.provider}:{self.model}:{self.dims}"

    def spec(self) -> str:
        """The whole space as text: "provider:model:dims", then ":TASK_TYPE" unless the
        provider ignores it; `Space.parse(space.spec()).exact() == space`."""
        return self.name if self.task_type == "none" else f"{self.name}:{self.task_type}"

    @staticmethod
    def parse(text: str) -> SpaceQuery:
        """What "provider[:model[:dims[:task_type]]]" asks for (parts left out match any
        space); InvalidRequest, naming the text, when it is not of that form."""
        return SpaceQuery.parse(text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "model": self.model,
            "task_type": self.task_type,
            "dims": self.dims,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Space:
        """The space of a `to_dict()` (a record's, a service's body; extra keys ignored)."""
        return cls(data["provider"], data["model"], data["task_type"], int(data["dims"]))


@dataclass(frozen=True)
class SpaceQuery:
    """Which spaces a filter (--provider/--model/--task-type/--dims, or a spec) matches."""

    provider: str | None = None
    model: str | None = None
    task_type: str | None = None
    dims: int | None = None

    @classmethod
    def parse(cls, text: str) -> SpaceQuery:
        parts = [p.strip() for p in str(text).split(":")]
        if len(parts) > 4 or not parts[0]:
            raise InvalidRequest(f"space {text!r}: use provider:model[:dims]")
        dims = None
        if len(parts) >= 3:
            try:
                dims = int(parts[2])
            except ValueError:
                raise InvalidRequest(f"space {text!r}: dims must be a number") from None
        model = parts[1] if len(parts) > 1 else None
        task_type = parts[3] if len(parts) > 3 and parts[3] else None
        return cls(parts[0], model, task_type, dims)

    def matches(self, space: Space) -> bool:
        """A model matches by its name or its last path part ("models/x" is "x")."""
        return (
            (self.provider is None or space.provider == self.provider)
            and (
                self.model is None
                or space.model == self.model
                or space.model.endswith("/" + self.model)
            )
            and (self.task_type is None or space.task_type.upper() == self.task_type.upper())
            and (self.dims is None or space.dims == self.dims)
        )

    def exact(self) -> Space | None:
        """The one Space this names when every part is given (a missing task type: "none")."""
        if self.provider is None or self.model is None or self.dims is None:
            return None
        return Space(self.provider, self.model, self.task_type or "none", self.dims)
