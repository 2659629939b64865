"""The Lab: every use case of embedlab, wired once, for every front end.

The CLI, a notebook (`import embedlab`) and the service each parse their input, call one
`Lab` method and present the typed result; none of them decides anything. The Lab is
the only module that imports both `ingest` and `analyze`: data still flows one way,
sources -> ingest -> store -> analyze, and analysis never reaches a provider.

One Lab serves many threads: reads (neighbours, documents, stats, analyses) run while
one write (an ingest, storing an analysis, a repair) holds the write lock.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DocumentNotFound, EmbedlabError, InvalidRequest, NotFound
from .inputs import Inputs
from .lab_batches import BatchUseCases
from .lab_lookups import ANALYSIS_CACHE, Lookups, _check_positive, _list
from .lab_naming import ClusterNaming
from .progress import CancelToken, Progress, ProgressCallback, reporter
from .store import Document, Space, Store
from .store.cache import BoundedCache
from .store.documents import Removed, documents_frame, pending_records, stored_fields
from .store.map_cache import StoreMapCache
from .store.repositories import (
    ANALYSIS,
    COMPARISON,
    DELETION,
    MAP,
    SOURCE,  # noqa: F401 - where front ends found the kinds
    Repositories,
)
from .store.vector_memory import MEMORY_BUDGET, VectorMemory, normalise_rows  # noqa: F401

if TYPE_CHECKING:
    import pandas as pd

    from .analyze.analysis import Analysis
    from .analyze.comparison import Comparison
    from .ingest.pipeline import IngestReport
    from .ingest.providers import Provider
    from .ingest.vectors import VectorReport
    from .store.repair import SpaceHealth
    from .store.selection import Selection

HEADS_TTL_S = 2.0  # how long a list of stored analyses is trusted (other writers' appear)
KEPT_CORPUS_BYTES = MEMORY_BUDGET // 4  # the last corpus a Lab read (vectors and texts)
QUERY_CACHE = 10_000  # free-text query vectors a service keeps (120 MB at 3072 dims)
HEADS_CACHE = 256  # spaces whose lists of stored analyses are kept
SpaceSpec = Space | str | None


@dataclass(frozen=True)
class EmbeddingChoice:
    """The space an ingest will write to, and why that provider was chosen."""

    space: Space
    reason: str

    def ignores_task_type(self, task_type: str | None) -> bool:
        """Whether a task type asked for (other than the default) means nothing to the
        chosen provider (the local model and own vectors have none)."""
        return self.space.task_type == "none" and (task_type or "").upper() != "CLUSTERING"


def open(  # noqa: A001 - embedlab.open() is the public name
    path: str | os.PathLike[str] | None = None,
    *,
    chroma_url: str | None = None,
    create: bool = True,
    wait: float = 0.0,
    quiet: bool = False,
    keep_vectors: bool = False,
    prices: Mapping[str, float] | None = None,
    own_chroma: bool = False,
) -> Lab:
    """Open a store: a folder (embedded Chroma, created when missing) or a Chroma server.

    An embedded store is held by one process at a time; `wait` seconds are spent waiting
    for another one before StoreBusy. `quiet=True` silences progress bars.
    `keep_vectors=True` keeps each space's vectors in memory once read (what a
    long-running service wants: re-analysis then reads nothing from Chroma). `prices`
    overrides the cost ledger's USD per 1M tokens by model. `own_chroma=True` (an
    embedded store) runs Chroma in a private `chroma run` child over the folder, so its
    writes never stall this process's other threads (what `embedlab serve` does).
    """
    if chroma_url:
        store = Store.open_server(chroma_url)
    else:
        if path is None:
            path = os.environ.get("EMBEDLAB_STORE", "./embedlab-store")
        store = Store.open_local(
            path, create=create, connect=False, wait=wait, own_server=own_chroma
        )
    return Lab(store, quiet=quiet, keep_vectors=keep_vectors, prices=prices)


class Lab(Inputs, BatchUseCases, ClusterNaming, Lookups):
    """One open store and everything done with it."""

    def __init__(
        self,
        store: Store,
        quiet: bool = False,
        keep_vectors: bool = False,
        prices: Mapping[str, float] | None = None,
    ):
        from .store.ledger import PriceTable

        self.store = store
        self.records = Repositories.of(store)  # the store's artifacts, by kind
        self.quiet = quiet
        self.prices = PriceTable(dict(prices or {}))
        self._memory = VectorMemory() if keep_vectors else None
        self._last_corpus: Any = None  # the last selection read from Chroma (_corpus)
        self._write_lock = threading.RLock()
        self._providers: dict[tuple[Space, float], Provider] = {}
        self._provider_keys: dict[tuple[Space, float], str] = {}  # a hash of the key used
        self._provider_lock = threading.Lock()
        # what this Lab keeps of the store, each dropped by `_invalidate` alone
        self._analyses: BoundedCache[str, Analysis] = BoundedCache(ANALYSIS_CACHE)
        # stored analyses' heads by space collection, trusted HEADS_TTL_S
        self._heads: BoundedCache[str, list[dict[str, Any]]] = BoundedCache(
            HEADS_CACHE, ttl_s=HEADS_TTL_S
        )
        self._cluster_maps: BoundedCache[str, dict[str, int]] = BoundedCache(ANALYSIS_CACHE)
        # by analysis id, for text search
        self._analysis_texts: BoundedCache[str, list[str]] = BoundedCache(ANALYSIS_CACHE)
        self._spaces: tuple[float, list[Space]] | None = None
        self._writing: set[Space] = set()  # spaces an ingest is writing now
        self._later_lock = threading.Lock()
        self._loading: set[str] = set()  # what _later is reloading now
        # free-text query vectors by (space, content hash)
        self._queries: BoundedCache[tuple[Space, str], np.ndarray] = BoundedCache(QUERY_CACHE)

    # -- lifetime --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop Chroma and release the store (waits for a running write)."""
        with self._write_lock:
            self.store.close()

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def location(self) -> str:
        """Where the store is (a folder, or a Chroma server's URL)."""
        return self.store.location

    def __repr__(self) -> str:
        kind = "Chroma server" if self.store.path is None else "embedded store"
        return f"<embedlab.Lab {kind} {self.store.location}>"

    # -- spaces and stats ------------------------------------------------------------------

    def spaces(self) -> list[Space]:
        """Every embedding space in the store (a list kept HEADS_TTL_S: services ask on
        every request; this Lab's own ingests refresh it)."""
        now = time.monotonic()
        held = self._spaces
        if held is not None and now - held[0] < HEADS_TTL_S:
            return list(held[1])
        if held is not None and self._memory is not None:  # a service: never wait on Chroma
            self._later("spaces", self._reload_spaces)  # (it may be busy with a write)
            return list(held[1])
        return list(self._reload_spaces())

    def _reload_spaces(self) -> list[Space]:
        now = time.monotonic()
        found = self.store.spaces()
        self._spaces = (now, found)
        return found

    def _later(self, key: str, load: Any) -> None:
        """Run `load()` on a thread of its own unless one for `key` runs already: a
        service answers from what it holds meanwhile (stale by seconds at most)."""
        with self._later_lock:
            if key in self._loading:
                return
            self._loading.add(key)

        def run() -> None:
            try:
                load()
            except Exception:  # noqa: BLE001 - the next read tries again
                pass
            finally:
                with self._later_lock:
                    self._loading.discard(key)

        threading.Thread(target=run, name=f"refresh-{key}", daemon=True).start()

    def space(self, space: SpaceSpec = None) -> Space:
        """Resolve `space` (a Space, "provider:model[:dims]", or None for the only one)."""
        from .analyze.select import resolve_space_spec

        return resolve_space_spec(self.spaces(), self.location, space)

    def preload_providers(self) -> None:
        """Import now what the first embedding call needs (the Gemini SDK): a service
        does it while it warms up, not inside its first ingest, whose imports would hold
        the interpreter's lock for about a second while readers wait."""
        from .ingest.providers import preload_gemini

        preload_gemini()

    def hold_vectors(self, space: SpaceSpec = None) -> bool:
        """Read a space's vectors into memory now (with keep_vectors; a service calls it
        at start). False when it does not fit the memory budget."""
        if self._memory is None:
            raise InvalidRequest("open the store with keep_vectors=True to hold vectors")
        return self._memory.hold(self.store, self.space(space))

    def follow_writes(self, space: SpaceSpec = None) -> bool:
        """Re-read a held space another writer changed (its count moved); a service over
        a Chroma server calls it every half second. True when something was read."""
        if self._memory is None:
            raise InvalidRequest("open the store with keep_vectors=True to hold vectors")
        return self._memory.follow(self.store, self.space(space))

    def space_sizes(self) -> dict[Space, int]:
        """Documents per space (counts only; `stats` reads every record's metadata). A
        damaged space is counted from Chroma's catalogue: one never hides the others."""
        from .errors import StoreDamaged

        sizes = {}
        for space in self.spaces():
            try:
                sizes[space] = self.store.collection(space).count()
            except StoreDamaged:
                sizes[space] = self.store.catalogue_count(space)
        return sizes

    def stats(self) -> dict[str, Any]:
        """Spaces, documents per source and label, size on disk (`embedlab stats --json`)."""
        from .store.stats import store_stats

        return store_stats(self.store)

    # -- ingest ----------------------------------------------------------------------------

    def embedding_choice(
        self,
        provider: str = "auto",
        model: str | None = None,
        task_type: str | None = "CLUSTERING",
        dims: int | None = None,
    ) -> EmbeddingChoice:
        """Which space an ingest with these options writes to (loads nothing)."""
        from .ingest.providers import choose_provider, resolve_space

        name, reason = choose_provider(provider)
        return EmbeddingChoice(resolve_space(name, model, task_type, dims), reason)

    def _claim_source(self, source: str, origin: str, dry_run: bool) -> None:
        """Bind a source name to one real input, so two `posts.csv` never share ids."""
        claimed = self.records.sources.origin(source)
        if claimed is not None and claimed != origin:
            raise InvalidRequest(
                f"{source} already names {claimed}; give {origin} a name of its own "
                "(--name NAME, or name= in Python)"
            )
        if claimed is None and not dry_run:
            with self._write_lock:
                self.records.sources.claim(source, origin)

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
    ) -> IngestReport:
        """The one ingest every front end runs: plan against the cache, embed the rest.

        `prune=True` then removes the stored documents of the input's sources that the
        input no longer holds (a dry run counts them), so the store mirrors the input.
        A document another source wrote is never replaced (Conflict) unless `replace=True`.
        `batch=True` embeds nothing now: the missing texts go to the provider's Batch API
        at half price (`collect()` writes them when they finish; see lab_batches.py).
        Raises IngestError (stopped; its report says what is saved), IngestCancelled
        (cancelled or Ctrl-C; what returned is saved), ProviderError, InvalidRequest.
        """
        from .ingest.pipeline import RetryPolicy, ingest
        from .options import INGEST, validate

        if batch:
            validate(INGEST, {"batch_size": batch_size}, ["batch_size"])
            online_only = [
                name
                for name, value, default in (
                    ("concurrency", concurrency, None),
                    ("max_attempts", max_attempts, 6),
                    ("timeout", timeout, 60.0),
                )
                if value != default
            ]
            if online_only:  # the provider runs a batch job: none of these would apply
                named = ", ".join(f"<<{name}>>" for name in online_only)
                raise InvalidRequest(
                    f"{named} does not apply to a batch ingest; drop it, or drop <<batch>>"
                )
            return self._ingest_batch(
                documents, skipped, provider, model, task_type, dims, batch_size, dry_run,
                quiet, on_progress, started, prune, cancel, replace,
            )  # fmt: skip

        numbers = dict(
            batch_size=batch_size, concurrency=concurrency, max_attempts=max_attempts,
            timeout=timeout,
        )  # fmt: skip
        validate(INGEST, numbers, numbers)
        started = time.monotonic() if started is None else started
        space = self.embedding_choice(provider, model, task_type, dims).space
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)

        latest: list[IngestReport] = []

        def on_report(report: IngestReport) -> None:
            if not latest:
                latest.append(report)
            self._record_costs(report)
            status = f"{report.cached + report.reused} cached, {report.embedded} embedded"
            notify(Progress("ingest", report.done, report.documents, status, {"report": report}))

        documents = list(documents)
        if prune and not any(d.text for d in documents):
            raise InvalidRequest(
                "no document was read from the input, so --prune would remove every stored "
                "document of its source; nothing was done (fix the input, or use "
                "`embedlab delete --source ...` to empty a source)"
            )
        with self._write_lock:
            self._writing.add(space)
            try:
                report = ingest(
                    documents,
                    self.store,
                    space,
                    lambda: self.provider(space, timeout),
                    batch_size=batch_size,
                    concurrency=concurrency,
                    retry=RetryPolicy(attempts=max_attempts),
                    dry_run=dry_run,
                    on_progress=on_report,
                    skipped=skipped,
                    started=started,
                    cancel=cancel,
                    replace=replace,
                    in_batch=self._texts_in_batch(space),
                )
                if prune:
                    report.pruned = len(self._prune(space, documents, dry_run))
                return report
            finally:
                self._writing.discard(space)
                close_bar()
                # the ingest may have made a space; what it wrote is read again
                self._invalidate(space, ids=latest[0].ids if latest else ())
                if latest:
                    self._record_costs(latest[0], final=True)
                    if self._memory is not None:
                        try:  # a service answers from memory again at once
                            self._memory.update(self.store, space)
                        except EmbedlabError:  # the ingest stands; the next read retries
                            pass

    def ingest_vectors(
        self,
        documents: Iterable[Document],
        vectors: Mapping[str, Any],
        space: str,
        dims: int | None = None,
        skipped: Counter[str] | None = None,
        dry_run: bool = False,
        prune: bool = False,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        started: float | None = None,
        cancel: CancelToken | None = None,
        replace: bool = False,
    ) -> VectorReport:
        """Store vectors computed elsewhere (`vectors`: raw vector by document id) in the
        space `custom:<space>:<dims>`; no provider is called, ever.

        Every vector is checked first (length `dims`, or the first one's; finite; not all
        zeros) and stored unit length; one bad vector refuses the input, naming the rows.
        The same ids, texts and vectors again write nothing; a changed vector replaces the
        stored one. `prune` as in `ingest_documents`.
        """
        from .ingest.vectors import store_vectors

        started = time.monotonic() if started is None else started
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)

        def on_report(report: VectorReport) -> None:
            notify(Progress("ingest", report.done, report.documents, "vectors", {"report": report}))

        documents = list(documents)
        if prune and not any(d.text for d in documents):
            raise InvalidRequest(
                "no document was read from the input, so --prune would remove every stored "
                "document of its source; nothing was done"
            )
        written: VectorReport | None = None
        with self._write_lock:
            try:
                written = store_vectors(
                    documents,
                    dict(vectors),
                    self.store,
                    space,
                    dims,
                    dry_run=dry_run,
                    skipped=skipped,
                    started=started,
                    on_progress=on_report,
                    replace=replace,
                )
                if prune:
                    written.pruned = len(self._prune(written.space, documents, dry_run))
                    written.seconds = time.monotonic() - started
                return written
            finally:
                close_bar()
                if written is None or dry_run:
                    self._invalidate(catalogue=True)  # the ingest may have made a space
                else:
                    self._invalidate(written.space, ids=written.ids)
                if written is not None and not dry_run and self._memory is not None:
                    try:
                        self._memory.update(self.store, written.space)
                    except EmbedlabError:  # the ingest stands; the next read retries
                        pass

    def _prune(self, space: Space, documents: list[Document], dry_run: bool) -> list[str]:
        """Ids of the input's sources, stored in `space`, that the input no longer has."""
        collection = self.store.collection(space)
        if collection is None:
            return []
        sources = {d.source for d in documents}
        kept = {d.id for d in documents}
        records = [*collection.iter_metadata(), *pending_records(collection.pending())]
        gone = [
            doc_id
            for doc_id, meta in records
            if meta.get("source") in sources and doc_id not in kept
        ]
        if gone and not dry_run:
            self.delete(ids=gone)
        return gone

    def _record_costs(self, report: IngestReport, final: bool = False) -> None:
        """Write the provider calls made so far (and, at the end, the cache hits) to the
        store's cost ledger, batch by batch, so a crash loses no record of money spent."""
        from .store.ledger import entry

        if report.dry_run:
            return
        entries = []
        while report.ledger:
            entries.append(report.ledger.pop(0))
        hits = report.cached + report.reused
        if final and hits:
            entries.append(entry(report.space, "cache", hits, report.cached_chars))
        self.records.costs.add(entries)

    def set_prices(self, prices: Mapping[str, float]) -> None:
        """Price the cost ledger at these USD per 1M tokens by model from now on (what
        `embedlab costs --price MODEL=USD` does), over the default list prices."""
        self.prices.overrides = dict(prices)

    def recorded_jobs(self) -> list[dict[str, Any]]:
        """The jobs a service over this store recorded, newest first (their heads)."""
        return self.records.jobs.heads()

    def costs(self) -> pd.DataFrame:
        """Per space: provider requests, texts embedded, estimated tokens and USD spent,
        and the estimated USD saved by cache hits (at `self.prices`). Cluster names have a
        row per naming model ("gemini:<model> (cluster names)")."""
        import pandas as pd

        from .store.ledger import summarise

        rows = summarise(self.records.costs.entries(), self.prices)
        columns = [
            "space",
            "provider",
            "model",
            "dims",
            "requests",
            "retries",
            "texts_embedded",
            "queries_embedded",
            "names_generated",
            "names_reused",
            "estimated_tokens",
            "estimated_usd",
            "cache_hits",
            "estimated_tokens_saved",
            "estimated_usd_saved",
            "usd_per_1m_tokens",
            "texts_batched",  # Batch API vectors, at the batch price
            "batch_estimated_tokens",
            "batch_usd_per_1m_tokens",
        ]
        return pd.DataFrame(rows, columns=columns)

    def provider(self, space: Space, timeout: float = 60.0) -> Provider:
        """The provider of `space`, built once per Lab (the local model loads once), and
        again when the API key changes (a key set after a refused one is used at once)."""
        import hashlib

        from .ingest.providers import gemini_api_key, make_provider

        with self._provider_lock:
            api_key = gemini_api_key() if space.provider == "gemini" else None
            fingerprint = hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""
            key = (space, timeout)
            if key in self._providers and self._provider_keys.get(key, "") != fingerprint:
                del self._providers[key]
            if key not in self._providers:
                self._providers[key] = make_provider(space, timeout_s=timeout)
                self._provider_keys[key] = fingerprint
            return self._providers[key]

    # -- reading documents -----------------------------------------------------------------

    def _selection(self, labels, sources, per_class, seed, limit) -> Any:
        from .store.selection import Selection

        _check_positive(per_class=per_class, limit=limit)
        return Selection.of(
            labels=labels, sources=sources, per_class=per_class, seed=seed, limit=limit
        )

    def documents(
        self,
        space: SpaceSpec = None,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        per_class: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        selection: Selection | None = None,
    ) -> pd.DataFrame:
        """The selected documents: id, label, source, text, content_hash, chars, and
        fields (each one's own fields, a dict: {} when none) (`selection`, a Selection,
        stands for the other arguments)."""

        from .analyze.select import select_ids

        if selection is not None:
            labels, sources, per_class, seed, limit = selection.parts()
            space = space if selection.space is None else selection.space

        chosen = self.space(space)
        ids = select_ids(
            self.store, chosen, self._selection(labels, sources, per_class, seed, limit)
        )
        return documents_frame(ids, *self.store.collection(chosen).records(ids))

    def document_page(
        self,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        offset: int = 0,
        limit: int = 100,
        space: SpaceSpec = None,
    ) -> tuple[int, pd.DataFrame]:
        """(how many match, one page of them in id order): for listings that page."""

        from .analyze.select import select_ids
        from .options import DOCUMENT_PAGE, validate

        page_options = validate(DOCUMENT_PAGE, {"offset": offset, "limit": limit})
        offset, limit = page_options["offset"], page_options["limit"]
        chosen = self.space(space)
        selection = self._selection(labels, sources, None, 0, None)
        try:
            ids = select_ids(self.store, chosen, selection)
        except NotFound:  # a filter that matches nothing is NotFound, as everywhere
            if selection.labels or selection.sources:
                raise
            ids = []  # an empty space: an empty page
        page = ids[offset : offset + limit]
        return len(ids), documents_frame(page, *self.store.collection(chosen).records(page))

    def document(self, id: str, space: SpaceSpec = None) -> dict[str, Any]:  # noqa: A002
        """One stored document: id, label, source, text, content_hash, chars, truncated,
        fields (its own, a dict), space."""
        chosen = self.space(space)
        (found,), texts = self.store.collection(chosen).records([id])
        if not found:  # records() leaves {} for an id it does not hold
            raise DocumentNotFound(f"no document {id!r} in {chosen.describe()}")
        return {
            "id": id,
            "label": found.get("label"),
            "source": found.get("source"),
            "text": texts[0],
            "content_hash": found.get("content_hash"),
            "chars": found.get("chars"),
            "truncated": bool(found.get("truncated")),
            "fields": stored_fields(found),
            "space": chosen.describe(),
        }

    def delete(
        self,
        ids: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        labels: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        dry_run: bool = False,
        selection: Selection | None = None,
    ) -> Removed:
        """Remove documents by id, or by source/label globs, from every space (or one).

        Returns the ids removed (or, with dry_run, that would be), a list whose
        `not_found` names the ids asked for that the store does not hold. Their embeddings go
        with them: ingesting the same text again pays again. Stored analyses that held
        them say so when reopened. `selection` (its labels, sources, ids and space) stands
        for the filters; a sample, seed or limit in it is refused by name.
        """
        if selection is not None:  # a selection stands for the filters
            labels, sources, chosen_ids = selection.filters("delete", with_ids=True)
            ids = ids if chosen_ids is None else list(chosen_ids)
            space = space if selection.space is None else selection.space
        from .analyze.select import Selection, select_ids

        wanted = set(_list(ids) or [])
        if not wanted and not sources and not labels:
            raise InvalidRequest("say what to delete: ids, or sources/labels globs")
        if wanted and (sources or labels):
            raise InvalidRequest(
                "give ids, or sources/labels globs, not both (the globs select together: "
                "documents matching the sources and the labels)"
            )
        spaces = [self.space(space)] if space is not None else self.spaces()
        removed: set[str] = set()
        with self._write_lock:
            for chosen in spaces:
                collection = self.store.collection(chosen)
                if collection is None:
                    continue
                found = set(collection.metadata_by_id(sorted(wanted))) if wanted else set()
                pending = collection.pending()  # documents waiting for their vector
                found |= {doc_id for doc_id, _text, _meta in pending if doc_id in wanted}
                if sources or labels:
                    selection = Selection(_list(sources), _list(labels))
                    try:
                        found |= set(select_ids(self.store, chosen, selection))
                    except InvalidRequest:  # nothing matches in this space
                        pass
                    found |= set(
                        select_ids(self.store, chosen, selection, pending_records(pending), True)
                    )
                if found and not dry_run:
                    now = datetime.now(timezone.utc).isoformat(timespec="microseconds")
                    self.records.deletions.mark(chosen.collection_name, now)  # before: never missed
                    collection.delete(sorted(found))
                    self._invalidate(chosen, deleted=True)
                removed |= found
        return Removed(sorted(removed), sorted(wanted - removed))

    def export(
        self,
        path: str | os.PathLike[str],
        format: str = "parquet",  # noqa: A002 - the CLI's --format
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        selection: Selection | None = None,
    ) -> int:
        """Write ids, labels, sources, texts and float32 vectors of a selection, for use
        without Chroma: one .parquet file, one .jsonl file, or ("npy") a folder holding
        vectors.npy and documents.jsonl in the same row order. Returns the row count.
        `selection` stands for the other filters (a sample, or exactly its ids in order)."""
        from .store.export import check_format, export_rows, write_export

        check_format(format)
        corpus = self._selected(
            "export", space, labels, sources, None, 0, None, selection, with_text=True
        )
        sources_of = self.store.collection(corpus.space).metadata_by_id(corpus.ids)
        rows = export_rows(corpus.ids, corpus.labels, corpus.texts, sources_of)
        return write_export(path, format, rows, corpus.vectors, corpus.space.dims)

    def vectors(
        self,
        space: SpaceSpec = None,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        per_class: int | None = None,
        seed: int = 0,
        limit: int | None = None,
        selection: Selection | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """(ids, float32 unit vectors with one row per id, in ids order). `selection`
        stands for the other arguments; a selection by ids gives exactly those, in order."""
        corpus = self._selected(
            "vectors", space, labels, sources, per_class, seed, limit, selection
        )
        return corpus.ids, corpus.vectors

    def _selected(
        self,
        use: str,
        space: SpaceSpec,
        labels: Sequence[str] | str | None,
        sources: Sequence[str] | str | None,
        per_class: int | None,
        seed: int,
        limit: int | None,
        selection: Selection | None,
        with_text: bool = False,
    ) -> Any:
        """The corpus a call's filters, or its `selection`, pick: globs and samples, or
        exactly a selection's ids in their order (unknown ids are DocumentNotFound)."""
        ids = None
        if selection is not None:
            space = space if selection.space is None else selection.space
            if selection.ids is not None:
                selection.filters(f"{use} by ids", with_ids=True)  # ids alone
                if selection.labels or selection.sources:
                    raise InvalidRequest("give ids, or labels/sources globs, not both")
                ids = list(selection.ids)
            else:
                labels, sources, per_class, seed, limit = selection.parts()
        chosen = self.space(space)
        if ids is not None:
            missing = sorted(set(ids) - set(self.store.collection(chosen).metadata_by_id(ids)))
            if missing:
                shown = ", ".join(repr(i) for i in missing[:5])
                raise DocumentNotFound(f"no document {shown} in {chosen.describe()}")
            everything = self._selection(None, None, None, 0, None)
            return self._corpus(chosen, everything, with_text, ids)
        chosen_rows = self._selection(labels, sources, per_class, seed, limit)
        return self._corpus(chosen, chosen_rows, with_text)

    def _corpus(
        self, space: Space, selection: Any, with_text: bool = True, ids: list[str] | None = None
    ) -> Any:
        """The selection's vectors (or exactly `ids`'): from memory when this Lab keeps
        them, else Chroma."""
        from .analyze.select import Corpus, load_corpus, select_ids

        if self._memory is not None:
            rows = self._memory.rows(
                self.store,
                space,
                lambda records: select_ids(self.store, space, selection, records),
                ids,
            )
            if rows is not None:
                return Corpus(space=space, **vars(rows))
            # over the budget: read what the analysis needs, keep nothing
            return load_corpus(self.store, space, selection, ids=ids)
        previous = self._last_corpus
        if previous is not None and previous.space != space:
            previous = self._last_corpus = None  # one corpus at a time: let it go first
        corpus = load_corpus(
            self.store, space, selection, with_text=with_text, ids=ids, previous=previous
        )
        # kept for the next load of this space (an update after an analysis reads only
        # what is new): one corpus with its texts, up to a quarter of the held budget
        size = corpus.vectors.nbytes + sum(len(t) for t in corpus.texts)
        keep = space.embeds_text and with_text and ids is None and size <= KEPT_CORPUS_BYTES
        if keep:  # (a load of some ids, or without texts, leaves the kept one as it is)
            corpus.vectors.flags.writeable = False  # shared with the next load: never changed
            self._last_corpus = corpus
        return corpus

    # -- analyses --------------------------------------------------------------------------

    def check_analysis(
        self,
        space: SpaceSpec = None,
        algorithm: str = "kmeans",
        k: int | str | None = None,
        reduce: str = "tsne",
        seed: int = 0,
        min_cluster_size: int | None = None,
        eps: float | None = None,
        text_weight: float | None = None,
        name_clusters: bool = False,
        naming_model: str | None = None,
        cluster_dims: int | None = None,
    ) -> None:
        """Refuse now what `analyze` would refuse (the space, options that do not go
        together, the naming model), without doing any work: a service answers 400
        before it queues a job."""
        from .analyze.run import AnalysisOptions
        from .ingest.naming import check_naming

        self.space(space)
        AnalysisOptions.checked(
            algorithm, k, reduce, seed, min_cluster_size, eps, text_weight, cluster_dims
        )
        check_naming(name_clusters, naming_model)

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
    ) -> Analysis:
        """Cluster, map and score the selection; the analysis is stored and returned.

        Never embeds. A map computed before for the same documents, method and seed is
        reused (`analysis.map_cached`). With `out`, the report files are written there.
        `name_clusters=True` names each cluster with one call to a Gemini text model
        (`naming_model`, default gemini-2.5-flash-lite), cached in the store by its
        members: a cluster named before costs nothing (`analysis.naming` counts both).
        `html=True` (with `out`) also writes map.html, the interactive map in one file.
        `text_weight`: k-means on the vectors joined with the documents' words (TF-IDF,
        LSA) at this weight; 0 = the vectors alone; None = the space's default (1 for the
        local model, where it was measured to help: bench/quality.py; 0 otherwise).
        `selection` (a Selection) stands for labels..limit, and the space when it has one.
        `cluster_dims` (hdbscan, dbscan): density is found on a UMAP reduction (cosine) to this
        many dims, 10 unless told; 0 = on the full vectors.
        An identical request (same documents, options, seed, naming) returns the stored
        analysis (`analysis.reused`), computing, storing and calling nothing.
        A request for a selection and options analysed before, whose documents have
        changed since, fits again starting from the newest such analysis (its map and
        clusters, cluster numbers matched: what `update(earlier, refit=True)` does), so
        points stay where they were; `.parent` names it. `fresh=True` fits from scratch.
        """
        from .analyze.run import (
            AnalysisOptions,
            analysis_identity,
            analyze_corpus,
            resolved_options,
        )
        from .ingest.naming import check_naming, naming_identity
        from .options import ANALYZE, validate

        if selection is not None:
            labels, sources, per_class, seed, limit = selection.parts()
            space = space if selection.space is None else selection.space
        options = AnalysisOptions.checked(
            algorithm, k, reduce, seed, min_cluster_size, eps, text_weight, cluster_dims
        )
        naming = check_naming(name_clusters, naming_model)
        validate(ANALYZE, {"fresh": fresh}, names=["fresh"])
        selection = self._selection(labels, sources, per_class, seed, limit)
        chosen = self.space(space)
        stages = ["load", "cluster", "map", "evaluate", "describe", "store"]
        if naming is not None:
            stages.insert(5, "name")
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)

        def stage(name: str, index: int) -> None:
            notify(Progress("analyze", index, len(stages), name))

        try:
            stage("load", 0)
            started = time.perf_counter()
            corpus = self._corpus(chosen, selection)
            load_s = time.perf_counter() - started
            identity = analysis_identity(corpus, options, naming_identity(naming))
            same = self._identical_analysis(chosen, identity, from_scratch=fresh)
            earlier = None
            if same is None and not fresh and options.k != "auto":
                run_as = resolved_options(options, chosen.provider).as_dict()
                earlier = self._earlier_analysis(chosen, selection.as_dict(), run_as)
                if earlier is not None and not _documents_changed(earlier, corpus):
                    earlier = None  # the same documents (other naming): a fit from scratch
            if same is None:
                fitted = None if earlier is None else self._fit_from(earlier, corpus, stage)
                if fitted is not None:
                    analysis = fitted
                else:
                    analysis = analyze_corpus(
                        corpus,
                        options,
                        map_cache=StoreMapCache(self.store, chosen, self._write_lock),
                        on_stage=lambda name, i: stage(name, i + 1),
                        selection=selection.as_dict(),
                    )
                analysis.timings = {"load": load_s, **analysis.timings}
                analysis.identity = identity
                if naming is not None:
                    stage("name", 5)
                    naming_started = time.perf_counter()
                    self._name_clusters(analysis, corpus, naming, notify, len(stages))
                    analysis.timings["name"] = time.perf_counter() - naming_started
                stage("store", len(stages) - 1)
                self._store_analysis(analysis)
            notify(Progress("analyze", len(stages), len(stages), "done"))
        finally:
            close_bar()
        if same is not None:  # identical to a stored one: nothing computed, stored or called
            if naming is not None:
                self._names_reused(same, naming)
            same.timings = {"load": load_s}
            if out is not None:
                same.save(out, html=html)
            return same
        self._attach_map_extras(analysis)
        self._emit("analysis-created", {"analysis": analysis.id})
        if out is not None:
            analysis.save(out, html=html)
        return analysis

    def _earlier_analysis(
        self, space: Space, selection: dict[str, Any], options: dict[str, Any]
    ) -> Analysis | None:
        """The newest stored analysis (or update) of the same selection and options, which
        a new analysis of them starts from; None when there is none. k='auto' always
        starts afresh (starting from the old clusters would keep the old k)."""
        for head in self.records.analyses.heads(space.collection_name):
            if head.get("selection") != selection or head.get("options") != options:
                continue
            try:
                return self.analysis(head["id"])
            except NotFound:  # deleted meanwhile
                continue
        return None

    def _fit_from(
        self, earlier: Analysis, corpus: Any, stage: Callable[[str, int], None]
    ) -> Analysis | None:
        """A full fit of `corpus` started from `earlier`'s map and clusters; None when
        that cannot be (then the analysis fits from scratch)."""
        from .analyze.update import update_corpus

        try:
            analysis = update_corpus(earlier, corpus, True, on_stage=lambda n, i: stage(n, i + 1))
        except InvalidRequest:  # e.g. a state it cannot start from: fit from scratch
            return None
        assert analysis.update_report is not None  # update_corpus reports every fit
        analysis.update_report["refit"] = (
            f"started from analysis {earlier.id}, the newest of this selection and options "
            "(fresh=True fits from scratch)"
        )
        return analysis

    def _identical_analysis(
        self, space: Space, identity: str, from_scratch: bool = False
    ) -> Analysis | None:
        """A stored analysis made of the same documents, options, seed and naming (see
        analyze.run.analysis_identity), as a copy marked `reused`; None when there is
        none. One whose naming left clusters with their terms is not reused (a rerun is
        how those get their names); with `from_scratch`, nor one fitted from an earlier
        analysis."""
        import dataclasses

        for head in self.records.analyses.heads(space.collection_name):
            if head.get("identity") != identity:  # updates have none
                continue
            if from_scratch and head.get("parent") is not None:  # fitted from an earlier one
                continue
            if (head.get("naming") or {}).get("kept_terms"):
                continue
            try:
                stored = self.analysis(head["id"])
            except NotFound:  # deleted meanwhile
                continue
            note = f"identical to analysis {stored.id}: reused, nothing new stored"
            return dataclasses.replace(
                stored,
                reused=True,
                notes=[*stored.notes, note],
                naming=dict(stored.naming),
                timings={},
                files=[],
            )
        return None

    def _attach_map_extras(self, analysis: Analysis) -> None:
        """Let `analysis.save(..., html=True)` read its texts and neighbours from here."""

        def extras() -> tuple[list[str], tuple[np.ndarray, np.ndarray]]:
            return self.analysis_texts_of(analysis), self.map_neighbours(analysis)

        analysis.map_extras = extras

    def _store_analysis(self, analysis: Analysis) -> None:
        now = datetime.now(timezone.utc)
        # microseconds, so "newest first" holds for analyses made within one second
        analysis.created = now.isoformat(timespec="microseconds")
        analysis.id = f"{now:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(2)}"
        head, payload = analysis.to_record()
        with self._write_lock:
            self.records.analyses.put(analysis.id, head, payload)
        self._invalidate(analysis_id=analysis.id)

    def analyses(self, space: SpaceSpec = None) -> pd.DataFrame:
        """Stored analyses, newest first: id, created, space, documents, options, metrics,
        and notes (what the figures could not do; documents deleted since)."""
        import pandas as pd

        collection = self.space(space).collection_name if space is not None else None
        rows = []
        for head in self.records.analyses.heads(collection):
            options, metrics = head["options"], head["metrics"]
            notes = list(head.get("notes") or [])
            deleted = self.records.deletions.last(head.get("space_collection") or "")
            if deleted is not None and deleted >= _read_at_of(head["created"], head.get("timings")):
                notes = list(self.analysis(head["id"]).notes)  # counts what was deleted
            rows.append(
                {
                    "id": head["id"],
                    "created": head["created"],
                    "space": _describe(head["space"]),
                    "documents": head["documents"],
                    "algorithm": options["algorithm"],
                    "k": head["clusters"],
                    "reduce": options["reduce"],
                    "seed": options["seed"],
                    "labels": head["selection"].get("labels"),
                    "sources": head["selection"].get("sources"),
                    **metrics,
                    "notes": notes,
                }
            )
        return pd.DataFrame(rows, columns=list(ANALYSIS_COLUMNS))

    def analysis(self, analysis_id: str) -> Analysis:
        """A stored analysis as it was computed (a read, nothing recomputed)."""
        from .analyze.analysis import Analysis

        cached = self._analyses.get(analysis_id)
        if cached is not None:
            return cached
        generation = self._analyses.generation  # a delete meanwhile: not kept
        found = self.records.analyses.get(analysis_id)
        if found is None:
            raise NotFound(
                f"no stored analysis {analysis_id!r} (list them with `embedlab analyses` "
                "or lab.analyses())"
            )
        analysis = Analysis.from_record(*found)
        self._attach_map_extras(analysis)
        collection = self.store.collection(analysis.space)
        deleted = self.records.deletions.last(analysis.space.collection_name)
        if collection is None:
            gone = len(analysis.ids)
        elif deleted is None or deleted < _read_at(analysis):
            gone = 0  # nothing was deleted from the space since the analysis read it
        else:
            gone = len(analysis.ids) - len(collection.metadata_by_id(analysis.ids))
        if gone:
            analysis.notes.append(
                f"{gone} of its {len(analysis.ids)} documents were deleted from the store "
                "since; analyse again for the current documents"
            )
        # stored analyses never change: keep a few in memory
        self._analyses.put(analysis_id, analysis, tags=(analysis.space,), generation=generation)
        return analysis

    def _analysis_heads(self, collection: str) -> list[dict[str, Any]]:
        """The space's stored analyses, newest first; a service asks on every neighbours
        call, so the list is kept HEADS_TTL_S (and dropped when this Lab stores one)."""
        held = self._heads.get_aged(collection)
        if held is not None and self._heads.is_fresh(held[1]):
            return held[0]
        if held is not None and self._memory is not None:  # a service: never wait on Chroma
            self._later(f"heads:{collection}", lambda: self._reload_heads(collection))
            return held[0]
        return self._reload_heads(collection)

    def _reload_heads(self, collection: str) -> list[dict[str, Any]]:
        generation = self._heads.generation
        heads = self.records.analyses.heads(collection)
        self._heads.put(collection, heads, generation=generation)
        return heads

    def _cluster_map(self, analysis: Analysis) -> dict[str, int]:
        """id -> cluster of a stored analysis, built once."""
        key = analysis.id or str(id(analysis))
        found = self._cluster_maps.get(key)
        if found is None:
            found = dict(zip(analysis.ids, analysis.cluster_labels.tolist()))
            self._cluster_maps.put(key, found)
        return found

    def delete_analysis(self, analysis_id: str) -> None:
        with self._write_lock:
            if not self.records.analyses.delete(analysis_id):
                raise NotFound(
                    f"no stored analysis {analysis_id!r} (list them with `embedlab analyses` "
                    "or lab.analyses())"
                )
            self._invalidate(analysis_id=analysis_id)
        self._emit("analysis-deleted", {"analysis": analysis_id})

    def latest_analysis(self, space: SpaceSpec = None) -> Analysis | None:
        """The newest stored analysis of the space, or None."""
        heads = self._analysis_heads(self.space(space).collection_name)
        return self.analysis(heads[0]["id"]) if heads else None

    def update(
        self,
        analysis: Analysis | str,
        refit: bool = False,
        out: str | os.PathLike[str] | None = None,
        html: bool = False,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Analysis:
        """The analysis updated for its selection as the store holds it now; stored and
        returned (`.parent` is the old id, `.update_report` says what changed).

        Documents that now match are placed on the stored map and given stored clusters;
        deleted ones leave; every other document keeps its coordinates and cluster
        exactly. Never embeds. `refit=True` fits again from the old state (cluster numbers
        matched to the old ones, `update_report["disparity"]` of the old documents); an
        analysis stored before updates existed is always refitted. See docs/update.md.
        """
        from .analyze.select import Selection
        from .analyze.update import update_corpus

        if isinstance(refit, str) or not isinstance(refit, bool):
            raise InvalidRequest(f"refit must be true or false, not {refit!r}")
        parent = self.analysis(analysis) if isinstance(analysis, str) else analysis
        if not isinstance(parent, _analysis_type()):
            raise InvalidRequest(f"update takes an Analysis or its id, not {analysis!r}")
        if parent.id is None:
            raise InvalidRequest("this analysis is not stored; update a stored one (its id)")
        chosen = self.space(parent.space)
        known = {k: parent.selection.get(k) for k in ("sources", "labels", "per_class", "limit")}
        selection = Selection(**known, seed=int(parent.selection.get("seed", 0) or 0))
        stages = ["load", "place", "refit", "evaluate", "describe", "drift", "store"]
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)

        def stage(name: str, index: int) -> None:
            notify(Progress("update", index, len(stages), name))

        try:
            stage("load", 0)
            started = time.perf_counter()
            corpus = self._corpus(chosen, selection)
            load_s = time.perf_counter() - started
            updated = update_corpus(
                parent, corpus, refit, on_stage=lambda name, i: stage(name, i + 1)
            )
            updated.timings = {"load": load_s, **updated.timings}
            if (parent.naming or {}).get("model"):
                self._cached_names(updated, corpus.hashes, parent.naming["model"])
            assert updated.update_report is not None  # update_corpus reports every update
            updated.update_report["seconds"] = round(updated.update_report["seconds"] + load_s, 3)
            stage("store", len(stages) - 1)
            self._store_analysis(updated)
            notify(Progress("update", len(stages), len(stages), "done"))
        finally:
            close_bar()
        self._attach_map_extras(updated)
        self._emit("analysis-updated", {"analysis": updated.id, "parent": parent.id})
        if out is not None:
            updated.save(out, html=html)
        return updated

    def successor(self, analysis_id: str) -> str | None:
        """The id of the newest analysis that updates `analysis_id` (directly or through
        later updates), or None: what an open map loads next."""
        found = self.analysis(analysis_id)
        heads = self._analysis_heads(found.space.collection_name)
        children: dict[str, list[str]] = {}
        for head in heads:  # newest first
            if head.get("parent"):
                children.setdefault(head["parent"], []).append(head["id"])
        current, seen = analysis_id, {analysis_id}
        while children.get(current):
            nxt = children[current][0]
            if nxt in seen:
                break
            seen.add(nxt)
            current = nxt
        return None if current == analysis_id else current

    def add_listener(self, listener: Any) -> None:
        """`listener(kind, data)` is called after analyses are created, updated or deleted
        (the service turns these into GET /api/v1/events)."""
        self.__dict__.setdefault("_listeners", []).append(listener)

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        for listener in list(self.__dict__.get("_listeners", [])):
            try:
                listener(kind, data)
            except Exception:  # noqa: BLE001 - a listener never fails the use case
                pass

    # -- comparisons of two spaces ---------------------------------------------------------

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
    ) -> Comparison:
        """Compare two spaces on the documents both hold: the same id and text, or the
        same text under another id (`documents["paired_by_content"]` counts those; A's
        ids are shown).

        Exact Jaccard of each document's `neighbours` nearest in A and in B, agreement
        (ARI, NMI) of k-means clusterings at the same `k`, each side's scores against the
        labels, and the two maps with B aligned onto A. Never embeds. Sampling
        (`per_class`, `limit`) draws from the shared documents, so both sides see the
        same rows. The comparison is stored (`lab.comparison(id)`); with `out`, its
        files are written there. `selection` (a Selection) stands for labels..limit.
        """
        from .analyze.compare import CompareOptions, compare_corpora, shared_ids

        if selection is not None:
            labels, sources, per_class, seed, limit = selection.parts()
        options = CompareOptions.checked(k, neighbours, reduce, seed)
        selection = self._selection(labels, sources, per_class, seed, limit)
        a, b = self.comparison_spaces(space_a, space_b)
        stages = ["load", "neighbours", "cluster", "map", "evaluate", "store"]
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)

        def stage(name: str, index: int) -> None:
            notify(Progress("compare", index, len(stages), name))

        try:
            stage("load", 0)
            started = time.perf_counter()
            shared = shared_ids(self.store, a, b, selection)
            corpus_a = self._corpus(a, selection, ids=shared.ids)
            corpus_b = self._corpus(b, selection, ids=shared.ids_b or shared.ids)
            if shared.ids_b is not None:  # some paired by their text: B's rows under A's ids
                corpus_b.ids = list(shared.ids)
            load_s = time.perf_counter() - started
            comparison = compare_corpora(
                corpus_a,
                corpus_b,
                options,
                shared,
                map_caches=(
                    StoreMapCache(self.store, a, self._write_lock),
                    StoreMapCache(self.store, b, self._write_lock),
                ),
                on_stage=lambda name, i: stage(name, i + 1),
                selection=selection.as_dict(),
            )
            comparison.timings = {"load": load_s, **comparison.timings}
            stage("store", 5)
            now = datetime.now(timezone.utc)
            comparison.created = now.isoformat(timespec="microseconds")
            comparison.id = f"{now:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(2)}"
            head, payload = comparison.to_record()
            with self._write_lock:
                self.records.comparisons.put(comparison.id, head, payload)
            notify(Progress("compare", len(stages), len(stages), "done"))
        finally:
            close_bar()
        if out is not None:
            comparison.save(out)
        return comparison

    def check_comparison(
        self,
        space_a: SpaceSpec,
        space_b: SpaceSpec,
        k: int = 4,
        neighbours: int = 10,
        reduce: str = "tsne",
        seed: int = 0,
    ) -> None:
        """Refuse now what `compare` would refuse (either space, the options), doing no
        work: a service answers 400 before it queues a job."""
        from .analyze.compare import CompareOptions

        self.comparison_spaces(space_a, space_b)
        CompareOptions.checked(k, neighbours, reduce, seed)

    def comparison_spaces(self, space_a: SpaceSpec, space_b: SpaceSpec) -> tuple[Space, Space]:
        """The two spaces a comparison of `space_a` with `space_b` reads (two different)."""
        a, b = self.space(space_a), self.space(space_b)
        if a == b:
            raise InvalidRequest(f"both sides are {a.describe()}; give two different spaces")
        return a, b

    def comparisons(self) -> pd.DataFrame:
        """Stored comparisons, newest first: id, created, both spaces, documents, mean
        Jaccard of the neighbourhoods and ARI between the two clusterings."""
        import pandas as pd

        rows = [
            {
                "id": head["id"],
                "created": head["created"],
                "space_a": head["spaces"]["a"]["name"],
                "space_b": head["spaces"]["b"]["name"],
                "documents": head["documents"]["compared"],
                "jaccard_mean": head["neighbourhoods"]["jaccard_mean"],
                "ari": head["clusterings"]["ari"],
            }
            for head in self.records.comparisons.heads()
        ]
        columns = ["id", "created", "space_a", "space_b", "documents", "jaccard_mean", "ari"]
        return pd.DataFrame(rows, columns=columns)

    def comparison(self, comparison_id: str) -> Comparison:
        """A stored comparison as it was computed (a read, nothing recomputed)."""
        from .analyze.comparison import Comparison

        found = self.records.comparisons.get(comparison_id)
        if found is None:
            raise NotFound(f"no stored comparison {comparison_id!r}")
        return Comparison.from_record(*found)

    # -- repair ----------------------------------------------------------------------------

    def repair(self, check: bool = True) -> list[SpaceHealth]:
        """Check every space (and with check=False rebuild a damaged index).

        Nothing but vectors is ever lost: a document whose vector cannot be read keeps
        its text, label, source and hash, and is listed in `needs_vector`; the next
        ingest of its space embeds it (or `reembed` does, now).
        """
        from .store.repair import check_store

        with self._write_lock:
            self.store.disconnect()  # an embedded store is read from child processes
            self._invalidate()
            return check_store(self.store, fix=not check)

    def _invalidate(
        self,
        space: Space | None = None,
        *,
        ids: Iterable[str] | None = None,
        deleted: bool = False,
        analysis_id: str | None = None,
        catalogue: bool = False,
    ) -> None:
        """The one path by which this Lab drops what it keeps of the store, after a write.

        - no argument: everything (a repair, a deleted space: the store changed under it);
        - `catalogue=True`: the list of spaces (an ingest may have made one);
        - `space` and `ids`: those documents were written (the list of spaces too);
        - `space` and `deleted=True`: documents were deleted from it (its held vectors,
          and every analysis of it kept: their notes count the deleted ones);
        - `space` alone: anything in it may have changed (a batch collected);
        - `analysis_id`: an analysis was stored or deleted (its entries, and the lists
          of stored analyses).
        Any write to a space also drops the texts of its analyses kept for text search.
        """
        everything = space is None and analysis_id is None and not catalogue
        if everything:  # a repair, a deleted space: let the kept corpus go too (a write
            self._last_corpus = None  # needs not: the next load checks each row's hash)
        if everything or catalogue or (space is not None and not deleted):
            self._spaces = None
        if analysis_id is not None:
            self._analyses.pop(analysis_id)
            self._cluster_maps.pop(analysis_id)
            self._analysis_texts.pop(analysis_id)
            self._heads.clear()
        if everything:
            for cache in (self._analyses, self._cluster_maps, self._heads):
                cache.clear()
            self._analysis_texts.clear()
            self._queries.clear()
            if self._memory is not None:
                self._memory.drop_all()
        elif space is not None:
            self._analysis_texts.forget(tag=space)  # a text may have changed, or gone
            if deleted:
                self._analyses.forget(tag=space)
            if self._memory is not None:
                if ids is not None and not deleted:
                    self._memory.forget(space, ids)
                else:
                    self._memory.drop(space)

    def reembed(
        self, space: SpaceSpec = None, dry_run: bool = False, **options: Any
    ) -> IngestReport:
        """Embed now the documents of `space` that repair kept without a vector (what the
        next ingest of the space would do anyway). `dry_run=True` says what it would cost.
        Options as for `ingest` (batch_size, concurrency, timeout, ...)."""
        target = self.space(space)
        if target.provider not in ("gemini", "local"):
            raise InvalidRequest(
                f"{target.describe()} holds vectors made outside embedlab: ingest them again "
                "with <<vector>> to restore the documents that need theirs"
            )
        return self.ingest_documents(
            [],
            provider=target.provider,
            model=target.model,
            task_type=target.task_type if target.provider == "gemini" else None,
            dims=target.dims,
            dry_run=dry_run,
            **options,
        )

    def delete_space(self, space: SpaceSpec) -> dict[str, Any]:
        """Delete a space on purpose: its documents, vectors, cached queries, documents
        waiting for a vector, and the analyses and comparisons made in it. Returns what
        went: {"space", "documents", "analyses", "comparisons"}."""
        from .store.spaces import delete_space

        target = self.space(space)
        with self._write_lock:
            gone = delete_space(self.store, target, (ANALYSIS, COMPARISON, MAP, DELETION))
            self._invalidate()
        return {"space": target.describe(), **gone}


def _documents_changed(earlier: Analysis, corpus: Any) -> bool:
    """Whether `corpus` holds other documents (or texts) than `earlier` was made of."""
    from .analyze.update import diff

    changes = diff(earlier, corpus)
    return bool(changes["added"] or changes["removed"] or changes["changed"])


def _analysis_type() -> type:
    from .analyze.analysis import Analysis

    return Analysis


# the columns of Lab.analyses (and of RemoteLab.analyses, from the service's rows)
ANALYSIS_COLUMNS = (
    "id", "created", "space", "documents", "algorithm", "k", "reduce", "seed", "labels",
    "sources", "hungarian_accuracy", "ari", "nmi", "silhouette", "notes",
)  # fmt: skip


def _read_at(analysis: Analysis) -> str:
    """When the analysis read its documents (ISO): it is stored when done, so take off
    how long it ran (and a second), lest a delete made meanwhile go unnoticed."""
    return _read_at_of(analysis.created, analysis.timings)


def _read_at_of(created: str | None, timings: dict[str, Any] | None) -> str:
    if not created:
        return ""
    took = sum(float(v) for v in (timings or {}).values()) + 1.0
    read = datetime.fromisoformat(created) - timedelta(seconds=took)
    return read.isoformat(timespec="microseconds")


def _describe(space: dict[str, Any]) -> str:
    return Space.from_dict(space).describe()


def __getattr__(name: str) -> Any:
    """`embedlab.lab.python_documents`, where it was before it moved to ingest.framing
    (imported on first use: importing embedlab never imports the ingest layer)."""
    if name == "python_documents":
        from .ingest.framing import python_documents

        return python_documents
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
