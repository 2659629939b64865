"""What an ingest skipped, counted by reason, with the first few named.

A reader counts each record it cannot use (one bad row must not cost the rest of a paid
ingest); a count alone leaves the user to hunt for the rows, so `Skips` also keeps where
the first MAX_EXAMPLES were: an id, a line number, a file. A plain Counter still works
wherever one was passed (`skip` counts into either).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

MAX_EXAMPLES = 5


class Skips(Counter[str]):
    """A Counter of skip reasons that also keeps where the first few skips were."""

    def __init__(self, counts: Mapping[str, int] | None = None, examples: Any = None):
        super().__init__(counts or {})
        self.examples: list[tuple[str, str]] = [
            (str(e["where"]), str(e["reason"])) for e in (examples or [])
        ][:MAX_EXAMPLES]

    def add(self, reason: str, where: str) -> None:
        self[reason] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((where, reason))

    def merge(self, other: Mapping[str, int] | None) -> None:
        """Add another count (its examples too, where it has them)."""
        self.update(other or {})
        for example in getattr(other, "examples", []):
            if len(self.examples) < MAX_EXAMPLES:
                self.examples.append(example)


def merge(into: Counter[str], other: Mapping[str, int] | None) -> None:
    """Add `other`'s counts (and its named skips, where both keep them) to `into`."""
    if isinstance(into, Skips):
        into.merge(other)
    else:
        into.update(other or {})


def skip(skipped: Counter[str], reason: str, where: str) -> None:
    """Count one skip in `skipped` (and where it was, when it is a Skips)."""
    if isinstance(skipped, Skips):
        skipped.add(reason, where)
    else:
        skipped[reason] += 1


def examples(skipped: Mapping[str, int]) -> list[dict[str, str]]:
    """The named skips as JSON-ready data: [{"where", "reason"}, ...] (the first few)."""
    return [{"where": w, "reason": r} for w, r in getattr(skipped, "examples", [])]


def examples_line(skipped: Mapping[str, int]) -> str | None:
    """`skipped: line 3 (line not JSON), ...` for the CLI; None when none is named."""
    named = getattr(skipped, "examples", [])
    if not named:
        return None
    total = sum(skipped.values())
    more = f" (first {len(named)} of {total})" if total > len(named) else ""
    return "skipped" + more + ": " + ", ".join(f"{w} ({r})" for w, r in named)
