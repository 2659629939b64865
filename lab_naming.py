"""The Lab's cluster naming: names asked of a Gemini text model for a new analysis, and
names read back from the store's cache (never a request) for an update.

A part of the Lab (a mixin, like lab_batches): it wires ingest.naming (the requests) to
the analysis (analyze/) and the name cache and cost ledger (store/).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from .progress import Progress, ProgressCallback

if TYPE_CHECKING:
    from .analyze.analysis import Analysis
    from .store import Store
    from .store.repositories import Repositories


class ClusterNaming:
    """Cluster names for the Lab's analyses, cached in the store by their members."""

    store: Store
    records: Repositories
    _write_lock: threading.RLock

    def _name_clusters(
        self,
        analysis: Analysis,
        corpus: Any,
        model: str,
        notify: ProgressCallback,
        n_stages: int,
    ) -> None:
        """Name the analysis' clusters (ingest.naming), with names cached in the store by
        their members' content hashes and every request written to the cost ledger."""
        from .ingest.naming import PROMPT_VERSION, GeminiNamer, name_clusters
        from .store.names import NameCache, name_key

        members: dict[int, list[str]] = {}
        for cluster, digest in zip(analysis.cluster_labels.tolist(), corpus.hashes):
            members.setdefault(int(cluster), []).append(digest)
        keys = {c: name_key(hashes, PROMPT_VERSION, model) for c, hashes in members.items()}

        def on_spent(entry: dict[str, Any]) -> None:
            with self._write_lock:
                self.records.costs.add([entry])

        def on_named(done: int, total: int) -> None:
            status = f"name {done}/{total}"
            notify(Progress("analyze", n_stages - 2, n_stages, status))

        report = name_clusters(
            analysis.clusters,
            keys,
            NameCache(self.store.artifacts, self._write_lock),
            model,
            lambda: GeminiNamer(model),
            on_named=on_named,
            on_spent=on_spent,
        )
        analysis.naming = report.as_dict()
        if report.note:
            analysis.notes.append(report.note)

    def _names_reused(self, analysis: Analysis, model: str) -> None:
        """An identical stored analysis returned again: its names are reused, nothing is
        requested. The counts say so (requested 0, reused = its named clusters) and the
        ledger records the reused names as a cache hit would."""
        from .ingest.naming import naming_prompt
        from .store.ledger import generation_entry

        named = [
            c for c in analysis.clusters if c["cluster"] != -1 and c.get("name_source") == model
        ]
        analysis.naming = {**analysis.naming, "requested": 0, "reused": len(named),
                           "requests": 0, "retries": 0, "note": None}  # fmt: skip
        if named:
            chars = sum(len(naming_prompt(c)) for c in named)
            with self._write_lock:
                self.records.costs.add([generation_entry(model, "name-cache", len(named), chars)])

    def _cached_names(self, analysis: Analysis, hashes: list[str], model: str) -> None:
        """Model names for an update's clusters from the store's name cache alone (keyed by
        their members, as `_name_clusters`): a cluster whose members did not change keeps
        its name; the others keep their terms. Never a request."""
        from .analyze.describe import TERMS, with_names
        from .ingest.naming import PROMPT_VERSION
        from .store.names import NameCache, name_key

        members: dict[int, list[str]] = {}
        for cluster, digest in zip(analysis.cluster_labels.tolist(), hashes):
            members.setdefault(int(cluster), []).append(digest)
        cache = NameCache(self.store.artifacts, self._write_lock)
        reused = kept = 0
        for info in analysis.clusters:
            number = int(info["cluster"])
            if number == -1:
                continue
            found = cache.get(name_key(members.get(number, []), PROMPT_VERSION, model))
            if found:
                info["name"], info["name_source"] = found, model
                reused += 1
            else:
                info["name"], info["name_source"] = None, TERMS
                kept += 1
        with_names(analysis.clusters)
        analysis.naming = {"model": model, "prompt_version": PROMPT_VERSION, "requested": 0,
                           "reused": reused, "kept_terms": kept, "requests": 0,
                           "clusters": reused + kept}  # fmt: skip
        if kept:
            analysis.naming["note"] = (
                f"{kept} cluster(s) changed members in the update and keep their terms "
                "(analyze with --name-clusters to name them)"
            )
