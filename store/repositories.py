"""Typed repositories over the store's artifacts (store.artifacts), one per kind.

`Artifacts` addresses records by a string kind and a key; these classes name each kind
once and give its reads and writes typed methods, so no caller spells a kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .ledger import COST

ANALYSIS = "analysis"
# per space, when documents were last deleted: an analysis made after that cannot miss
# any, so reopening it checks nothing (a check reads every id: 13 s at 100,000)
DELETION = "deletion"
COMPARISON = "comparison"
MAP = "map"
MAP_BASIS = MAP + "-basis"
SOURCE = "source"
JOB = "job"  # the service's jobs (service/jobs.py)

if TYPE_CHECKING:
    from .artifacts import Artifacts
    from .chroma_store import Store


class _Records:
    """Records of one kind in a store's artifacts (the handle is looked up per call: a
    repair reconnects the store, and a Lab opened lazily has no client yet)."""

    kind: str

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def _artifacts(self) -> Artifacts:
        return self._store.artifacts

    def heads(self, space_collection: str | None = None) -> list[dict[str, Any]]:
        """Every record's head (of one space when given), newest first."""
        return self._artifacts.heads(self.kind, space_collection)


class AnalysisRecords(_Records):
    """Stored analyses: a head (what `Lab.analyses` lists) and the arrays' payload."""

    kind = ANALYSIS

    def put(self, analysis_id: str, head: dict[str, Any], payload: bytes) -> None:
        self._artifacts.put(self.kind, analysis_id, head, payload)

    def get(self, analysis_id: str) -> tuple[dict[str, Any], bytes] | None:
        return self._artifacts.get(self.kind, analysis_id)

    def delete(self, analysis_id: str) -> bool:
        """False when there was none."""
        return self._artifacts.delete(self.kind, analysis_id)


class ComparisonRecords(AnalysisRecords):
    """Stored comparisons of two spaces, kept as analyses are."""

    kind = COMPARISON


class SourceClaims(_Records):
    """Which real input (a file's or folder's path) a default source name belongs to."""

    kind = SOURCE

    def origin(self, source: str) -> str | None:
        head = self._artifacts.head(self.kind, source)
        return None if head is None else head["origin"]

    def claim(self, source: str, origin: str) -> None:
        self._artifacts.put(self.kind, source, {"origin": origin}, b"")


class DeletionMarks(_Records):
    """Per space, when documents were last deleted from it (ISO, microseconds)."""

    kind = DELETION

    def mark(self, space_collection: str, created: str) -> None:
        """Written before the documents go, so a delete is never missed."""
        mark = {"id": space_collection, "space_collection": space_collection}
        mark["created"] = created
        self._artifacts.put_heads(self.kind, [mark])

    def last(self, space_collection: str) -> str | None:
        head = self._artifacts.head(self.kind, space_collection)
        return None if head is None else head["created"]


class CostLedger(_Records):
    """The cost ledger's entries (store.ledger.entry), one record each."""

    kind = COST

    def add(self, entries: list[dict[str, Any]]) -> None:
        self._artifacts.put_heads(self.kind, entries)

    def entries(self) -> list[dict[str, Any]]:
        return self.heads()


class JobRecords(_Records):
    """The service's jobs, as it recorded them (service/jobs.py writes them)."""

    kind = JOB


@dataclass(frozen=True)
class Repositories:
    """Every typed repository of one store."""

    analyses: AnalysisRecords
    comparisons: ComparisonRecords
    sources: SourceClaims
    deletions: DeletionMarks
    costs: CostLedger
    jobs: JobRecords

    @classmethod
    def of(cls, store: Store) -> Repositories:
        return cls(
            AnalysisRecords(store),
            ComparisonRecords(store),
            SourceClaims(store),
            DeletionMarks(store),
            CostLedger(store),
            JobRecords(store),
        )
