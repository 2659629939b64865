"""What a use case works on: one space and the documents chosen in it.

`Selection` is the one value every front end builds (the CLI from its options, the
service from a request body, the notebook from keywords) and every use case takes, so a
glob list is parsed once (`parse_globs`) and the rules of choosing live in one place.
Store is the lowest layer, so every layer can use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from ..errors import InvalidRequest
from .keys import Space

NO_LABEL = "(no label)"  # how a document without a label is shown and counted


def parse_globs(value: str | Iterable[str] | None) -> list[str] | None:
    """Globs as a list: one string may hold several, comma-separated; none is None."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    globs = [g.strip() for item in items for g in str(item).split(",") if g.strip()]
    return globs or None


@dataclass(frozen=True)
class Selection:
    """Documents by source and label globs, then a per-class sample, then a limit (a
    seeded sample); or exactly `ids`. `space` is what the caller asked for (a Space, a
    spec, or None for the store's only space) until a use case resolves it."""

    sources: list[str] | None = None  # globs on the `source` field
    labels: list[str] | None = None  # globs on the label
    per_class: int | None = None
    seed: int = 0
    limit: int | None = None
    space: Space | str | None = None
    ids: tuple[str, ...] | None = None

    @classmethod
    def of(
        cls,
        space: Space | str | None = None,
        labels: str | Iterable[str] | None = None,
        sources: str | Iterable[str] | None = None,
        per_class: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        ids: Iterable[str] | None = None,
    ) -> Selection:
        """A selection from what a front end was given (globs comma-separated or lists)."""
        return cls(
            parse_globs(sources),
            parse_globs(labels),
            per_class,
            seed,
            limit,
            space,
            None if ids is None else tuple(ids),
        )

    globs = staticmethod(parse_globs)

    def only_globs(self) -> Selection:
        """The same source/label filters, without sampling or a limit."""
        return Selection(sources=self.sources, labels=self.labels, space=self.space)

    def with_space(self, space: Space | str | None) -> Selection:
        return replace(self, space=space)

    def as_dict(self) -> dict[str, object]:
        """What an analysis records of its selection (the space is recorded apart)."""
        return {
            "sources": self.sources,
            "labels": self.labels,
            "per_class": self.per_class,
            "seed": self.seed,
            "limit": self.limit,
        }

    def parts(self) -> tuple[Any, ...]:
        """(labels, sources, per_class, seed, limit): Lab's keywords, in their order.

        A selection by `ids` is refused by name here rather than read as "everything":
        analyze, documents and compare select by globs and samples."""
        if self.ids is not None:
            raise InvalidRequest(
                "this call selects by labels, sources, per_class, seed and limit, not by "
                "ids: leave Selection.ids out"
            )
        return self.labels, self.sources, self.per_class, self.seed, self.limit

    def filters(
        self, use: str, with_ids: bool = False
    ) -> tuple[list[str] | None, list[str] | None, tuple[str, ...] | None]:
        """(labels, sources, ids) for a use case that filters but never samples (delete,
        neighbours): a per-class sample, a seed or a limit is refused by name, as are ids
        where the use case takes none, rather than dropped."""
        given = [
            name
            for name, value in (
                ("per_class", self.per_class),
                ("seed", self.seed or None),
                ("limit", self.limit),
                ("ids", None if with_ids else self.ids),
            )
            if value is not None
        ]
        if given:
            takes = "labels, sources, ids and space" if with_ids else "labels, sources and space"
            raise InvalidRequest(
                f"{use} takes a selection's {takes}, not {', '.join(given)}: leave "
                f"Selection.{given[0]} out"
            )
        return self.labels, self.sources, self.ids

    def keywords(self) -> dict[str, Any]:
        """The keywords of Lab's use cases that this selection stands for."""
        return {
            "labels": self.labels,
            "sources": self.sources,
            "per_class": self.per_class,
            "seed": self.seed,
            "limit": self.limit,
        }
