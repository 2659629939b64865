"""`LabAPI`: the one contract a notebook, the CLI and a script use, wherever the store is.

`embedlab.open(path)` gives a `Lab` (the store itself); `embedlab.connect(url)` gives a
`client.RemoteLab` (a running `embedlab serve`). Both implement `LabAPI` with the same
parameters: the same arguments give the same results, the same mistake raises the same
exception class (across HTTP by its `code`, see errors.CODES), and an argument that
cannot work remotely is refused by name, never dropped. mypy checks both classes against
it (`_implementations` below); tests/test_contract.py checks the signatures at run time
and the behaviours against a real service.

What a Lab does beyond the contract (vectors in memory, `vectors()`, `reembed`, the
service's own hooks) works on the store only.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .analyze.analysis import Analysis
    from .analyze.comparison import Comparison
    from .client import RemoteLab
    from .ingest.batch import CollectReport
    from .ingest.pipeline import IngestReport
    from .lab import EmbeddingChoice, Lab
    from .progress import CancelToken, ProgressCallback
    from .store import Document, Space
    from .store.documents import Removed
    from .store.repair import SpaceHealth
    from .store.selection import Selection

    SpaceSpec = Space | str | None


@runtime_checkable
class LabAPI(Protocol):
    """The use cases of one store, local or behind a service."""

    @property
    def location(self) -> str: ...

    def close(self) -> None: ...

    # spaces and the store

    def stats(self) -> dict[str, Any]: ...

    def spaces(self) -> list[Space]: ...

    def space(self, space: SpaceSpec = None) -> Space: ...

    def space_sizes(self) -> dict[Space, int]: ...

    def pick_space(
        self,
        provider: str | None = None,
        model: str | None = None,
        task_type: str | None = None,
        dims: int | None = None,
    ) -> Space: ...

    def delete_space(self, space: SpaceSpec) -> dict[str, Any]: ...

    def costs(self) -> pd.DataFrame: ...

    def repair(self, check: bool = True) -> list[SpaceHealth]: ...

    # ingest

    def embedding_choice(
        self,
        provider: str = "auto",
        model: str | None = None,
        task_type: str | None = "CLUSTERING",
        dims: int | None = None,
    ) -> EmbeddingChoice: ...

    def ingest_documents(
        self,
        documents: Iterable[Document],
        skipped: Counter[str] | None = None,
        provider: str = "auto",
        model: str | None = None,
        task_type: str | None = "CLUSTERING",
        dims: int | None = None,
        batch_size: int | None = None,
        concurrency: int | None = None,
        max_attempts: int = 6,
        timeout: float = 60.0,
        dry_run: bool = False,
        cancel: CancelToken | None = None,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        started: float | None = None,
        prune: bool = False,
        replace: bool = False,
        batch: bool = False,
    ) -> IngestReport: ...

    def ingest(
        self,
        data: Any,
        text: str = "text",
        id: str | None = None,  # noqa: A002
        label: str | None = None,
        source: str = "python",
        vector: str | None = None,
        space: str | None = None,
        **options: Any,
    ) -> IngestReport: ...

    def ingest_newsgroups(
        self,
        source: str | os.PathLike[str] | None = None,
        subset: str = "train",
        categories: Sequence[str] | None = ("sci.*",),
        per_class: int | None = 150,
        seed: int = 0,
        clean: str | None = None,
        **options: Any,
    ) -> IngestReport: ...

    def ingest_path(
        self,
        path: str | os.PathLike[str],
        text: str = "text",
        id: str | None = None,  # noqa: A002
        label: str | None = None,
        glob: str = "*",
        name: str | None = None,
        kind: str | None = None,
        vector: str | None = None,
        space: str | None = None,
        **options: Any,
    ) -> IngestReport: ...

    # batches

    def batches(self, refresh: bool = False) -> pd.DataFrame: ...

    def collect(
        self,
        wait: bool | float = False,
        poll: float | None = None,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> CollectReport: ...

    def cancel_batch(self, job: str) -> dict[str, Any]: ...

    # documents

    def documents(
        self,
        space: SpaceSpec = None,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        per_class: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        selection: Selection | None = None,
    ) -> pd.DataFrame: ...

    def document(self, id: str, space: SpaceSpec = None) -> dict[str, Any]: ...  # noqa: A002

    def delete(
        self,
        ids: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        labels: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        dry_run: bool = False,
        selection: Selection | None = None,
    ) -> Removed: ...

    def export(
        self,
        path: str | os.PathLike[str],
        format: str = "parquet",  # noqa: A002
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        selection: Selection | None = None,
    ) -> int: ...

    def neighbours(
        self,
        id: str | None = None,  # noqa: A002
        *,
        text: str | None = None,
        vector: np.ndarray | Sequence[float] | None = None,
        k: int = 10,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        analysis: str | None = None,
        spend: bool = True,
        selection: Selection | None = None,
    ) -> pd.DataFrame: ...

    # analyses

    def analyze(
        self,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        per_class: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        space: SpaceSpec = None,
        algorithm: str = "kmeans",
        k: int | str | None = None,
        reduce: str = "tsne",
        min_cluster_size: int | None = None,
        eps: float | None = None,
        out: str | os.PathLike[str] | None = None,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        name_clusters: bool = False,
        naming_model: str | None = None,
        html: bool = False,
        text_weight: float | None = None,
        selection: Selection | None = None,
        cluster_dims: int | None = None,
        fresh: bool = False,
    ) -> Analysis: ...

    def analyses(self, space: SpaceSpec = None) -> pd.DataFrame: ...

    def analysis(self, analysis_id: str) -> Analysis: ...

    def latest_analysis(self, space: SpaceSpec = None) -> Analysis | None: ...

    def delete_analysis(self, analysis_id: str) -> None: ...

    def analysis_to_update(
        self,
        which: str,
        provider: str | None = None,
        model: str | None = None,
        task_type: str | None = None,
        dims: int | None = None,
    ) -> str: ...

    def successor(self, analysis_id: str) -> str | None: ...

    def find(self, analysis_id: str, query: str, limit: int = 1000) -> list[int]: ...

    def update(
        self,
        analysis: Analysis | str,
        refit: bool = False,
        out: str | os.PathLike[str] | None = None,
        html: bool = False,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Analysis: ...

    # comparisons

    def compare(
        self,
        space_a: SpaceSpec,
        space_b: SpaceSpec,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        per_class: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        k: int = 4,
        neighbours: int = 10,
        reduce: str = "tsne",
        out: str | os.PathLike[str] | None = None,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        selection: Selection | None = None,
    ) -> Comparison: ...

    def comparisons(self) -> pd.DataFrame: ...

    def comparison(self, comparison_id: str) -> Comparison: ...


# the names of the contract, for tests and docs (the Protocol's own members)
CONTRACT: tuple[str, ...] = tuple(
    name
    for name in LabAPI.__dict__
    if not name.startswith("_") and (callable(LabAPI.__dict__[name]) or name == "location")
)


def _implementations(lab: Lab, remote: RemoteLab) -> tuple[LabAPI, LabAPI]:
    """Never called: mypy checks here that both classes implement the contract."""
    return lab, remote
