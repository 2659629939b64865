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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import EmbedlabError, InvalidRequest, NotFound, StoreError
from .inputs import Inputs
from .lab_batches import BatchUseCases
from .progress import CancelToken, Progress, ProgressCallback, reporter
from .store import Document, Space, Store
from .store.keys import content_hash, normalise_text

if TYPE_CHECKING:
    import pandas as pd

    from .analyze.analysis import Analysis
    from .analyze.comparison import Comparison
    from .ingest.pipeline import IngestReport
    from .ingest.providers import Provider
    from .ingest.vectors import VectorReport
    from .store.repair import SpaceHealth

ANALYSIS = "analysis"
# per space, when documents were last deleted: an analysis made after that cannot miss
# any, so reopening it checks nothing (a check reads every id: 13 s at 100,000)
DELETION = "deletion"
COMPARISON = "comparison"
MAP = "map"
SOURCE = "source"
ANALYSIS_CACHE = 8  # reopened analyses kept in memory (neighbours read their clusters)
MEMORY_BUDGET = 2 * 1024**3  # bytes of vectors a keep_vectors Lab holds, all spaces together
HEADS_TTL_S = 2.0  # how long a list of stored analyses is trusted (other writers' appear)
QUERY_CACHE = 10_000  # free-text query vectors a service keeps (120 MB at 3072 dims)
SpaceSpec = Space | str | None


@dataclass(frozen=True)
class EmbeddingChoice:
    """The space an ingest will write to, and why that provider was chosen."""

    space: Space
    reason: str


def open(  # noqa: A001 - embedlab.open() is the public name
    path: str | os.PathLike[str] | None = None,
    *,
    chroma_url: str | None = None,
    create: bool = True,
    wait: float = 0.0,
    quiet: bool = False,
    keep_vectors: bool = False,
    prices: Mapping[str, float] | None = None,
) -> Lab:
    """Open a store: a folder (embedded Chroma, created when missing) or a Chroma server.

    An embedded store is held by one process at a time; `wait` seconds are spent waiting
    for another one before StoreBusy. `quiet=True` silences progress bars.
    `keep_vectors=True` keeps each space's vectors in memory once read (what a
    long-running service wants: re-analysis then reads nothing from Chroma). `prices`
    overrides the cost ledger's USD per 1M tokens by model.
    """
    if chroma_url:
        store = Store.open_server(chroma_url)
    else:
        if path is None:
            path = os.environ.get("EMBEDLAB_STORE", "./embedlab-store")
        store = Store.open_local(path, create=create, connect=False, wait=wait)
    return Lab(store, quiet=quiet, keep_vectors=keep_vectors, prices=prices)


class Lab(Inputs, BatchUseCases):
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
        self.quiet = quiet
        self.prices = PriceTable(dict(prices or {}))
        self._memory = _VectorMemory() if keep_vectors else None
        self._write_lock = threading.RLock()
        self._providers: dict[tuple[Space, float], Provider] = {}
        self._provider_keys: dict[tuple[Space, float], str] = {}  # a hash of the key used
        self._provider_lock = threading.Lock()
        self._analyses: dict[str, Analysis] = {}
        self._analyses_lock = threading.Lock()
        self._heads: dict[str, tuple[float, list[dict[str, Any]]]] = {}  # by space collection
        self._cluster_maps: dict[str, dict[str, int]] = {}  # by analysis id
        self._analysis_texts: dict[str, list[str]] = {}  # by analysis id, for text search
        self._spaces: tuple[float, list[Space]] | None = None
        self._writing: set[Space] = set()  # spaces an ingest is writing now
        self._later_lock = threading.Lock()
        self._loading: set[str] = set()  # what _later is reloading now
        self._queries: dict[tuple[Space, str], np.ndarray] = {}  # query vectors, newest last

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
        head = self.store.artifacts.head(SOURCE, source)
        if head is not None and head["origin"] != origin:
            raise InvalidRequest(
                f"{source} already names {head['origin']}; give {origin} a name of its own "
                "(--name NAME, or name= in Python)"
            )
        if head is None and not dry_run:
            with self._write_lock:
                self.store.artifacts.put(SOURCE, source, {"origin": origin}, b"")

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

        if batch:
            _check_positive(batch_size=batch_size)
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

        _check_positive(batch_size=batch_size, concurrency=concurrency, max_attempts=max_attempts)
        if timeout <= 0:
            raise InvalidRequest(f"timeout must be more than 0 seconds, not {timeout}")
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
                self._spaces = None  # the ingest may have made a space
                if latest:
                    self._record_costs(latest[0], final=True)
                    if self._memory is not None:
                        self._memory.forget(space, latest[0].ids)
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
                self._spaces = None  # the ingest may have made a space
                if written is not None and not dry_run and self._memory is not None:
                    self._memory.forget(written.space, written.ids)
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
        records = [*collection.iter_metadata(), *_records(collection.pending())]
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
        from .store.ledger import COST, entry

        if report.dry_run:
            return
        entries = []
        while report.ledger:
            entries.append(report.ledger.pop(0))
        hits = report.cached + report.reused
        if final and hits:
            entries.append(entry(report.space, "cache", hits, report.cached_chars))
        self.store.artifacts.put_heads(COST, entries)

    def costs(self) -> pd.DataFrame:
        """Per space: provider requests, texts embedded, estimated tokens and USD spent,
        and the estimated USD saved by cache hits (at `self.prices`). Cluster names have a
        row per naming model ("gemini:<model> (cluster names)")."""
        import pandas as pd

        from .store.ledger import COST, summarise

        rows = summarise(self.store.artifacts.heads(COST), self.prices)
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
        from .analyze.select import Selection

        _check_positive(per_class=per_class, limit=limit)
        return Selection(_list(sources), _list(labels), per_class, seed, limit)

    def documents(
        self,
        space: SpaceSpec = None,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        per_class: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> pd.DataFrame:
        """The selected documents: id, label, source, text, content_hash, chars."""

        from .analyze.select import select_ids

        chosen = self.space(space)
        ids = select_ids(
            self.store, chosen, self._selection(labels, sources, per_class, seed, limit)
        )
        return _documents_frame(ids, *self.store.collection(chosen).records(ids))

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

        if offset < 0:
            raise InvalidRequest(f"offset must be 0 or more, not {offset}")
        _check_positive(limit=limit)
        chosen = self.space(space)
        selection = self._selection(labels, sources, None, 0, None)
        try:
            ids = select_ids(self.store, chosen, selection)
        except NotFound:  # a filter that matches nothing is NotFound, as everywhere
            if selection.labels or selection.sources:
                raise
            ids = []  # an empty space: an empty page
        page = ids[offset : offset + limit]
        return len(ids), _documents_frame(page, *self.store.collection(chosen).records(page))

    def document(self, id: str, space: SpaceSpec = None) -> dict[str, Any]:  # noqa: A002
        """One stored document: id, label, source, text, content_hash, chars, space."""
        chosen = self.space(space)
        (found,), texts = self.store.collection(chosen).records([id])
        if not found:  # records() leaves {} for an id it does not hold
            raise NotFound(f"no document {id!r} in {chosen.describe()}")
        return {
            "id": id,
            "label": found.get("label"),
            "source": found.get("source"),
            "text": texts[0],
            "content_hash": found.get("content_hash"),
            "chars": found.get("chars"),
            "truncated": bool(found.get("truncated")),
            "space": chosen.describe(),
        }

    def delete(
        self,
        ids: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        labels: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        dry_run: bool = False,
    ) -> list[str]:
        """Remove documents by id, or by source/label globs, from every space (or one).

        Returns the ids removed (or, with dry_run, that would be). Their embeddings go
        with them: ingesting the same text again pays again. Stored analyses that held
        them say so when reopened.
        """
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
                    found |= set(select_ids(self.store, chosen, selection, _records(pending), True))
                if found and not dry_run:
                    name = chosen.collection_name
                    mark = {"id": name, "space_collection": name}
                    mark["created"] = datetime.now(timezone.utc).isoformat(timespec="microseconds")
                    self.store.artifacts.put_heads(DELETION, [mark])  # before: never missed
                    collection.delete(sorted(found))
                    if self._memory is not None:
                        self._memory.drop(chosen)
                removed |= found
            if removed and not dry_run:
                with self._analyses_lock:
                    self._analyses.clear()
                    self._analysis_texts.clear()
        return sorted(removed)

    def export(
        self,
        path: str | os.PathLike[str],
        format: str = "parquet",  # noqa: A002 - the CLI's --format
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
    ) -> int:
        """Write ids, labels, sources, texts and float32 vectors of a selection, for use
        without Chroma: one .parquet file, one .jsonl file, or ("npy") a folder holding
        vectors.npy and documents.jsonl in the same row order. Returns the row count."""
        import json as json_module

        from .analyze.select import load_corpus

        if format not in ("parquet", "npy", "jsonl"):
            raise InvalidRequest(f"format must be parquet, npy or jsonl, not {format!r}")
        chosen = self.space(space)
        corpus = load_corpus(self.store, chosen, self._selection(labels, sources, None, 0, None))
        sources_of = self.store.collection(chosen).metadata_by_id(corpus.ids)
        rows = [
            {
                "id": doc_id,
                "label": label,
                "source": sources_of[doc_id].get("source"),
                "text": text,
            }
            for doc_id, label, text in zip(corpus.ids, corpus.labels, corpus.texts)
        ]
        target = Path(path)
        if format == "npy" and target.exists() and not target.is_dir():
            raise InvalidRequest(
                f"{target} is a file; npy export writes a folder, give another path"
            )
        if format != "npy" and target.is_dir():
            raise InvalidRequest(f"{target} is a folder; give a file path for {format} export")
        try:
            (target if format == "npy" else target.parent).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidRequest(f"cannot write {target}: {exc.strerror}") from None
        if format == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table(
                {
                    **{key: [r[key] for r in rows] for key in ("id", "label", "source", "text")},
                    "vector": pa.FixedSizeListArray.from_arrays(
                        pa.array(corpus.vectors.reshape(-1), type=pa.float32()), chosen.dims
                    ),
                }
            )
            pq.write_table(table, target)
        elif format == "jsonl":
            with target.open("w", encoding="utf-8") as file:
                for row, vector in zip(rows, corpus.vectors):
                    row = {**row, "vector": [float(x) for x in vector]}
                    file.write(json_module.dumps(row, ensure_ascii=False) + "\n")
        else:
            np.save(target / "vectors.npy", corpus.vectors.astype(np.float32))
            with (target / "documents.jsonl").open("w", encoding="utf-8") as file:
                for row in rows:
                    file.write(json_module.dumps(row, ensure_ascii=False) + "\n")
        return len(rows)

    def vectors(
        self,
        space: SpaceSpec = None,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        per_class: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """(ids, float32 unit vectors with one row per id, in ids order)."""
        chosen = self.space(space)
        selection = self._selection(labels, sources, per_class, seed, limit)
        corpus = self._corpus(chosen, selection, with_text=False)
        return corpus.ids, corpus.vectors

    def _corpus(
        self, space: Space, selection: Any, with_text: bool = True, ids: list[str] | None = None
    ) -> Any:
        """The selection's vectors (or exactly `ids`'): from memory when this Lab keeps
        them, else Chroma."""
        from .analyze.select import load_corpus

        if self._memory is not None:
            return self._memory.corpus(self.store, space, selection, ids)
        return load_corpus(self.store, space, selection, with_text=with_text, ids=ids)

    # -- analyses --------------------------------------------------------------------------

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
        """
        from .analyze.run import AnalysisOptions, analyze_corpus
        from .ingest.naming import check_naming

        options = AnalysisOptions.checked(
            algorithm, k, reduce, seed, min_cluster_size, eps, text_weight
        )
        naming = check_naming(name_clusters, naming_model)
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
            analysis = analyze_corpus(
                corpus,
                options,
                map_cache=_StoreMapCache(self.store, chosen, self._write_lock),
                on_stage=lambda name, i: stage(name, i + 1),
                selection=selection.as_dict(),
            )
            analysis.timings = {"load": load_s, **analysis.timings}
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
        self._attach_map_extras(analysis)
        self._emit("analysis-created", {"analysis": analysis.id})
        if out is not None:
            analysis.save(out, html=html)
        return analysis

    def _attach_map_extras(self, analysis: Analysis) -> None:
        """Let `analysis.save(..., html=True)` read its texts and neighbours from here."""

        def extras() -> tuple[list[str], tuple[np.ndarray, np.ndarray]]:
            return self.analysis_texts_of(analysis), self.map_neighbours(analysis)

        analysis.map_extras = extras

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
        from .store.ledger import COST
        from .store.names import NameCache, name_key

        members: dict[int, list[str]] = {}
        for cluster, digest in zip(analysis.cluster_labels.tolist(), corpus.hashes):
            members.setdefault(int(cluster), []).append(digest)
        keys = {c: name_key(hashes, PROMPT_VERSION, model) for c, hashes in members.items()}

        def on_spent(entry: dict[str, Any]) -> None:
            with self._write_lock:
                self.store.artifacts.put_heads(COST, [entry])

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

    def _store_analysis(self, analysis: Analysis) -> None:
        now = datetime.now(timezone.utc)
        # microseconds, so "newest first" holds for analyses made within one second
        analysis.created = now.isoformat(timespec="microseconds")
        analysis.id = f"{now:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(2)}"
        head, payload = analysis.to_record()
        with self._write_lock:
            self.store.artifacts.put(ANALYSIS, analysis.id, head, payload)
        with self._analyses_lock:
            self._heads.clear()

    def analyses(self, space: SpaceSpec = None) -> pd.DataFrame:
        """Stored analyses, newest first: id, created, space, documents, options, metrics."""
        import pandas as pd

        collection = self.space(space).collection_name if space is not None else None
        rows = []
        for head in self.store.artifacts.heads(ANALYSIS, collection):
            options, metrics = head["options"], head["metrics"]
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
                }
            )
        columns = ["id", "created", "space", "documents", "algorithm", "k", "reduce", "seed"]
        columns += ["labels", "sources", "hungarian_accuracy", "ari", "nmi", "silhouette"]
        return pd.DataFrame(rows, columns=columns)

    def analysis(self, analysis_id: str) -> Analysis:
        """A stored analysis as it was computed (a read, nothing recomputed)."""
        from .analyze.analysis import Analysis

        with self._analyses_lock:
            cached = self._analyses.get(analysis_id)
        if cached is not None:
            return cached
        found = self.store.artifacts.get(ANALYSIS, analysis_id)
        if found is None:
            raise NotFound(
                f"no stored analysis {analysis_id!r} (list them with `embedlab analyses` "
                "or lab.analyses())"
            )
        analysis = Analysis.from_record(*found)
        self._attach_map_extras(analysis)
        collection = self.store.collection(analysis.space)
        deleted = self.store.artifacts.head(DELETION, analysis.space.collection_name)
        if collection is None:
            gone = len(analysis.ids)
        elif deleted is None or deleted["created"] < _read_at(analysis):
            gone = 0  # nothing was deleted from the space since the analysis read it
        else:
            gone = len(analysis.ids) - len(collection.metadata_by_id(analysis.ids))
        if gone:
            analysis.notes.append(
                f"{gone} of its {len(analysis.ids)} documents were deleted from the store "
                "since; analyse again for the current documents"
            )
        with self._analyses_lock:  # stored analyses never change: keep a few in memory
            if len(self._analyses) >= ANALYSIS_CACHE:
                self._analyses.pop(next(iter(self._analyses)))
            self._analyses[analysis_id] = analysis
        return analysis

    def _analysis_heads(self, collection: str) -> list[dict[str, Any]]:
        """The space's stored analyses, newest first; a service asks on every neighbours
        call, so the list is kept HEADS_TTL_S (and dropped when this Lab stores one)."""
        now = time.monotonic()
        with self._analyses_lock:
            held = self._heads.get(collection)
            if held is not None and now - held[0] < HEADS_TTL_S:
                return held[1]
        if held is not None and self._memory is not None:  # a service: never wait on Chroma
            self._later(f"heads:{collection}", lambda: self._reload_heads(collection))
            return held[1]
        return self._reload_heads(collection)

    def _reload_heads(self, collection: str) -> list[dict[str, Any]]:
        now = time.monotonic()
        heads = self.store.artifacts.heads(ANALYSIS, collection)
        with self._analyses_lock:
            self._heads[collection] = (now, heads)
        return heads

    def _cluster_map(self, analysis: Analysis) -> dict[str, int]:
        """id -> cluster of a stored analysis, built once."""
        key = analysis.id or str(id(analysis))
        with self._analyses_lock:
            found = self._cluster_maps.get(key)
        if found is None:
            found = dict(zip(analysis.ids, analysis.cluster_labels.tolist()))
            with self._analyses_lock:
                if len(self._cluster_maps) >= ANALYSIS_CACHE:
                    self._cluster_maps.pop(next(iter(self._cluster_maps)))
                self._cluster_maps[key] = found
        return found

    def delete_analysis(self, analysis_id: str) -> None:
        with self._write_lock:
            if not self.store.artifacts.delete(ANALYSIS, analysis_id):
                raise NotFound(
                    f"no stored analysis {analysis_id!r} (list them with `embedlab analyses` "
                    "or lab.analyses())"
                )
            with self._analyses_lock:
                self._analyses.pop(analysis_id, None)
                self._cluster_maps.pop(analysis_id, None)
                self._heads.clear()
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
    ) -> Comparison:
        """Compare two spaces on the documents both hold (same id, same text).

        Exact Jaccard of each document's `neighbours` nearest in A and in B, agreement
        (ARI, NMI) of k-means clusterings at the same `k`, each side's scores against the
        labels, and the two maps with B aligned onto A. Never embeds. Sampling
        (`per_class`, `limit`) draws from the shared documents, so both sides see the
        same rows. The comparison is stored (`lab.comparison(id)`); with `out`, its
        files are written there.
        """
        from .analyze.compare import CompareOptions, compare_corpora, shared_ids

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
            corpus_b = self._corpus(b, selection, ids=shared.ids)
            load_s = time.perf_counter() - started
            comparison = compare_corpora(
                corpus_a,
                corpus_b,
                options,
                shared,
                map_caches=(
                    _StoreMapCache(self.store, a, self._write_lock),
                    _StoreMapCache(self.store, b, self._write_lock),
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
                self.store.artifacts.put(COMPARISON, comparison.id, head, payload)
            notify(Progress("compare", len(stages), len(stages), "done"))
        finally:
            close_bar()
        if out is not None:
            comparison.save(out)
        return comparison

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
            for head in self.store.artifacts.heads(COMPARISON)
        ]
        columns = ["id", "created", "space_a", "space_b", "documents", "jaccard_mean", "ari"]
        return pd.DataFrame(rows, columns=columns)

    def comparison(self, comparison_id: str) -> Comparison:
        """A stored comparison as it was computed (a read, nothing recomputed)."""
        from .analyze.comparison import Comparison

        found = self.store.artifacts.get(COMPARISON, comparison_id)
        if found is None:
            raise NotFound(f"no stored comparison {comparison_id!r}")
        return Comparison.from_record(*found)

    # -- neighbours ------------------------------------------------------------------------

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
    ) -> pd.DataFrame:
        """Nearest documents (cosine) to a stored document, a free text, or a vector.

        Columns: rank, id, similarity, label, cluster, text; `.attrs["requests"]` says how
        many provider requests it cost (0 by id or vector, or for a text seen before).
        Clusters come from `analysis` (default: the space's latest analysis).
        `spend=False` refuses (Forbidden) a text that would need a provider request.
        """
        import pandas as pd

        hits, requests, chosen = self.neighbour_hits(
            id, text=text, vector=vector, k=k, labels=labels, sources=sources, space=space,
            analysis=analysis, spend=spend,
        )  # fmt: skip
        from .store.neighbours import NEIGHBOUR_COLUMNS

        frame = pd.DataFrame([h.row() for h in hits], columns=list(NEIGHBOUR_COLUMNS))
        frame.attrs["requests"] = requests
        frame.attrs["space"] = chosen.describe()
        return frame

    def neighbour_hits(
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
    ) -> tuple[list[Any], int, Space]:
        """What `neighbours` returns, as (Neighbour rows, provider requests, space): the
        service's hot path, without building a DataFrame per request."""
        from .store.neighbours import as_neighbours, find_neighbours

        given = [
            name for name, v in (("id", id), ("text", text), ("vector", vector)) if v is not None
        ]
        if len(given) != 1:
            raise InvalidRequest("give exactly one of id, text or vector")
        _check_positive(k=k)
        chosen = self.space(space)
        collection = self.store.collection(chosen)
        if collection is None:
            raise NotFound(f"the store has no {chosen.describe()}")
        requests = 0
        if id is not None:
            query = self._memory.vector(chosen, id) if self._memory is not None else None
            if query is None:
                found = collection.get_one(id)
                if found is None:
                    raise NotFound(f"no document {id!r} in {chosen.describe()}")
                query = found[0]
        elif text is not None:
            if not normalise_text(text):
                raise InvalidRequest("the query text is empty; give some words to search for")
            query = self._known_query(chosen, text)
            if query is None:
                from .ingest.query import query_vector

                query, spent = query_vector(
                    collection, text, lambda: self.provider(chosen), spend=spend
                )
                if spent:
                    from .store.ledger import COST

                    self.store.artifacts.put_heads(COST, spent)
                requests = sum(e["requests"] for e in spent)
                self._remember_query(chosen, text, query)
        else:
            query = np.asarray(vector, dtype=np.float32).reshape(-1)
            if query.shape != (chosen.dims,) or not np.all(np.isfinite(query)):
                raise InvalidRequest(
                    f"the vector must have {chosen.dims} finite numbers ({chosen.describe()})"
                )
            norm = float(np.linalg.norm(query))
            if norm == 0:
                raise InvalidRequest("the vector is all zeros")
            query = query / norm
        clusters = self._clusters_of(chosen, analysis)
        held = None
        if self._memory is not None:
            busy = chosen in self._writing
            held = self._memory.neighbours(
                chosen, query, k, id, _list(labels), _list(sources), busy=busy
            )
        if held is not None:
            hits = as_neighbours(held, clusters)
        else:
            hits = find_neighbours(
                collection, query, k, id, _list(labels), _list(sources), clusters_of=clusters
            )
        return hits, requests, chosen

    def _known_query(self, space: Space, text: str) -> np.ndarray | None:
        """A query vector this service already has (asked before, or a held document's
        text): no Chroma read, so a text lookup costs what one by id does."""
        if self._memory is None:
            return None
        key = content_hash(normalise_text(text))
        found = self._queries.get((space, key))
        return found if found is not None else self._memory.vector_by_hash(space, key)

    def _remember_query(self, space: Space, text: str, vector: np.ndarray) -> None:
        if self._memory is None:
            return
        with self._later_lock:
            self._queries[(space, content_hash(normalise_text(text)))] = vector
            while len(self._queries) > QUERY_CACHE:
                self._queries.pop(next(iter(self._queries)))

    def _clusters_of(self, space: Space, analysis_id: str | None):
        """Clusters from `analysis_id`, or from the newest analyses of the space that hold
        the documents (an analysis of another selection does not blank the column)."""
        if analysis_id:
            chosen = self.analysis(analysis_id)
            if chosen.space != space:
                raise InvalidRequest(f"analysis {analysis_id} is of {chosen.space.describe()}")
            candidates = [chosen]
        else:
            heads = self._analysis_heads(space.collection_name)
            candidates = [self.analysis(h["id"]) for h in heads[:ANALYSIS_CACHE]]
        maps = [self._cluster_map(a) for a in candidates]

        def clusters(ids: list[str]) -> dict[str, int]:
            for by_id in maps:  # newest first; the first that holds any of the ids
                if any(i in by_id for i in ids):
                    return {i: int(by_id[i]) for i in ids if i in by_id}
            return {}

        return clusters if maps else None

    # -- the map ---------------------------------------------------------------------------

    def analysis_texts(self, analysis_id: str) -> list[str]:
        """The texts of an analysis' documents, in its order ("" for one deleted since);
        the last few are kept, so a page searching as someone types reads Chroma once."""
        with self._analyses_lock:
            found = self._analysis_texts.get(analysis_id)
        if found is not None:
            return found
        texts = self.analysis_texts_of(self.analysis(analysis_id))
        with self._analyses_lock:
            if len(self._analysis_texts) >= ANALYSIS_CACHE:
                self._analysis_texts.pop(next(iter(self._analysis_texts)))
            self._analysis_texts[analysis_id] = texts
        return texts

    def analysis_texts_of(self, analysis: Analysis) -> list[str]:
        """The texts of `analysis`' documents, read now ("" for one deleted since)."""
        collection = self.store.collection(analysis.space)
        if collection is None:
            return [""] * len(analysis.ids)
        return collection.records(analysis.ids)[1]

    def query_unavailable(self, space: SpaceSpec = None) -> str | None:
        """Why a free text cannot be embedded into the space here (None: it can)."""
        from .ingest.providers import query_unavailable

        return query_unavailable(self.space(space))

    def find(self, analysis_id: str, query: str, limit: int = 1000) -> list[int]:
        """Positions (in the analysis' order) of the documents whose id or text contains
        `query`, ignoring case; an exact id comes first. No embedding, no provider."""
        from .analyze.mapdata import find_in

        if not query.strip():
            raise InvalidRequest("give some words or an id to find")
        _check_positive(limit=limit)
        analysis = self.analysis(analysis_id)
        return find_in(analysis.ids, self.analysis_texts(analysis_id), query, limit)

    def map_neighbours(self, analysis: Analysis, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Each point's `k` nearest other points of the analysis in the original space
        (exact cosine): (positions int32 n x k, -1 where fewer; similarities float32).

        What `map.html` carries, so a file opened from disk lists neighbours too.
        """
        from .analyze.mapdata import nearest_rows

        collection = self.store.collection(analysis.space)
        n = len(analysis.ids)
        if collection is None:  # the space is gone: no neighbours to list
            return np.full((n, k), -1, dtype=np.int32), np.zeros((n, k), dtype=np.float32)
        present = collection.metadata_by_id(analysis.ids)
        rows = [i for i, doc_id in enumerate(analysis.ids) if doc_id in present]
        vectors = collection.load([analysis.ids[i] for i in rows], with_text=False)[0]
        _normalise_rows(vectors)
        return nearest_rows(vectors, np.asarray(rows, dtype=np.int64), len(analysis.ids), k)

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
            self._forget_everything()
            return check_store(self.store, fix=not check)

    def _forget_everything(self) -> None:
        """Drop every cache of what the store held (after a repair or a deleted space)."""
        with self._analyses_lock:
            self._analyses.clear()
            self._cluster_maps.clear()
            self._heads.clear()
            self._analysis_texts.clear()
        self._spaces = None
        if self._memory is not None:
            self._memory.drop_all()

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
            self._forget_everything()
        return {"space": target.describe(), **gone}


class _VectorMemory:
    """Every vector, label and text of a space, read from Chroma once and kept.

    A long-running service answers many analyses of the same spaces; reading 11,314
    vectors of 3072 dims back out of Chroma each time costs seconds. Documents this Lab
    writes are re-read on next use; a count that moved (another writer on a Chroma
    server) reloads the space.
    """

    def __init__(self, budget_bytes: int = MEMORY_BUDGET) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[Space, dict[str, Any]] = {}
        self._stale: dict[Space, set[str]] = {}
        self.budget_bytes = budget_bytes

    def _fits(self, space: Space, count: int) -> bool:
        held = sum(h["vectors"].nbytes for s, h in self._spaces.items() if s != space)
        return held + count * space.dims * 4 <= self.budget_bytes

    def hold(self, store: Store, space: Space) -> bool:
        """Read the space into memory now (a service warms up with it); False when it
        is over the memory budget."""
        with self._lock:
            return self._refresh(store, space) is not None

    def drop_all(self) -> None:
        """Forget every space (the store changed under them: a repair, a deleted space)."""
        with self._lock:
            self._spaces.clear()
            self._stale.clear()

    def update(self, store: Store, space: Space) -> None:
        """Re-read what this Lab wrote (after an ingest); a space the ingest created is
        held from now on, so a service answers it from memory too."""
        with self._lock:
            self._refresh(store, space)

    def neighbours(
        self,
        space: Space,
        query: np.ndarray,
        k: int,
        exclude_id: str | None,
        labels: list[str] | None,
        sources: list[str] | None,
        busy: bool = False,
    ) -> list[tuple[str, float, dict[str, Any], str]] | None:
        """Hits from memory, or None when the space is not held or not current.

        A large space is searched here only while `busy` (an ingest is writing it):
        Chroma then makes queries wait for its index writes, seconds at a time, while a
        scan of the held snapshot takes milliseconds.
        """
        from .store.memory_index import MemoryIndex

        if not self._lock.acquire(blocking=False):
            return None  # being refreshed after an ingest: Chroma answers meanwhile
        try:
            held = self._spaces.get(space)
            if held is None or self._stale.get(space):
                return None
            if not busy and not MemoryIndex.worth_it(*held["vectors"].shape):
                return None
            if held.get("index") is None:
                held["index"] = MemoryIndex(held["vectors"], held["metadatas"])
            index, ids = held["index"], held["ids"]
            metadatas, texts = held["metadatas"], held["texts"]
            exclude = held["row_of"].get(exclude_id) if exclude_id is not None else None
        finally:
            self._lock.release()
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        norm = float(np.linalg.norm(query))
        if norm > 0 and abs(norm - 1.0) > 1e-6:  # held rows are unit: cosine needs a unit query
            query = query / norm
        mask = index.mask(labels, sources)
        rows, scores = index.search(query, k, exclude, mask)
        return [(ids[r], float(s), metadatas[r], texts[r]) for r, s in zip(rows, scores)]

    def vector_by_hash(self, space: Space, key: str) -> np.ndarray | None:
        """The unit vector of a held document whose text hashes to `key`, else None."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            held = self._spaces.get(space)
            if held is None or self._stale.get(space):
                return None
            by_hash = held.get("row_of_hash")
            if by_hash is None:
                by_hash = {m.get("content_hash"): r for r, m in enumerate(held["metadatas"])}
                held["row_of_hash"] = by_hash
            row = by_hash.get(key)
            return None if row is None else held["vectors"][row].copy()
        finally:
            self._lock.release()

    def follow(self, store: Store, space: Space) -> bool:
        """Re-read a held space whose count moved (another replica wrote to the Chroma
        server); True when it did. The count is read without the lock, so lookups are
        answered from memory meanwhile."""
        held = self._spaces.get(space)
        if held is None:
            return self.hold(store, space)
        collection = store.collection(space)
        if collection is None or collection.count() == len(held["row_of"]):
            return False
        with self._lock:
            self._refresh(store, space)
        return True

    def drop(self, space: Space) -> None:
        """Let go of a space (documents were deleted); it is read again on next use."""
        with self._lock:
            self._spaces.pop(space, None)
            self._stale.pop(space, None)

    def forget(self, space: Space, ids: Iterable[str]) -> None:
        with self._lock:
            if space in self._spaces:
                self._stale.setdefault(space, set()).update(ids)

    def vector(self, space: Space, doc_id: str) -> np.ndarray | None:
        """A document's vector if it is held and current (no Chroma call), else None."""
        if not self._lock.acquire(blocking=False):
            return None  # being refreshed: never make a lookup wait for it
        try:
            held = self._spaces.get(space)
            if held is None or doc_id in self._stale.get(space, ()):
                return None
            row = held["row_of"].get(doc_id)
            return None if row is None else held["vectors"][row].copy()
        finally:
            self._lock.release()

    def corpus(self, store: Store, space: Space, selection: Any, ids: Any = None) -> Any:
        from .analyze.select import Corpus, load_corpus, select_ids

        with self._lock:
            held = self._refresh(store, space)
            if held is None:  # over the budget: read what the analysis needs, keep nothing
                return load_corpus(store, space, selection, ids=ids)
            row_of = held["row_of"]
            if ids is None:
                ids = select_ids(
                    store, space, selection, ((i, held["metadatas"][row_of[i]]) for i in row_of)
                )
            elif any(i not in row_of for i in ids):
                missing = [i for i in ids if i not in row_of][:3]
                raise StoreError(f"documents vanished while loading: {', '.join(missing)}")
            rows = np.fromiter((row_of[i] for i in ids), dtype=np.int64, count=len(ids))
            return Corpus(
                space=space,
                ids=ids,
                vectors=held["vectors"][rows],
                labels=[held["metadatas"][r].get("label") for r in rows],
                texts=[held["texts"][r] for r in rows],
                hashes=[held["metadatas"][r].get("content_hash", "") for r in rows],
            )

    def _refresh(self, store: Store, space: Space) -> dict[str, Any] | None:
        collection = store.collection(space)
        if collection is None:
            raise NotFound(f"the store has no {space.describe()}")
        held = self._spaces.get(space)
        stale = self._stale.pop(space, set())
        expected = None if held is None else len(held["row_of"].keys() | stale)
        count = collection.count()
        if not self._fits(space, count):
            self._spaces.pop(space, None)
            return None
        # another replica added (expected is None exactly when held is)
        if held is not None and expected is not None and not stale and count > expected:
            ids = [doc_id for doc_id, _ in collection.iter_metadata()]
            new = [doc_id for doc_id in ids if doc_id not in held["row_of"]]
            if len(new) == count - expected:  # only additions: read just those
                stale = set(new)
        if held is None or (expected != count and not stale):
            ids = [doc_id for doc_id, _ in collection.iter_metadata()]
            vectors, metadatas, texts = collection.load(ids)
            held = {"row_of": {i: r for r, i in enumerate(ids)}, "vectors": vectors}
            held.update(metadatas=metadatas, texts=texts, ids=ids, index=None)
            _normalise_rows(held["vectors"])
            self._spaces[space] = held
        elif stale:
            known = sorted(stale & held["row_of"].keys())
            new = sorted(stale - held["row_of"].keys())
            if known:
                vectors, metadatas, texts = collection.load(known)
                _normalise_rows(vectors)
                for j, doc_id in enumerate(known):
                    row = held["row_of"][doc_id]
                    held["vectors"][row] = vectors[j]
                    held["metadatas"][row], held["texts"][row] = metadatas[j], texts[j]
            if new:
                vectors, metadatas, texts = collection.load(new)
                _normalise_rows(vectors)
                start = len(held["row_of"])
                held["vectors"] = np.concatenate([held["vectors"], vectors])
                held["metadatas"] = held["metadatas"] + metadatas
                held["texts"] = held["texts"] + texts
                held["row_of"].update({doc_id: start + j for j, doc_id in enumerate(new)})
                held["ids"] = held["ids"] + new
            held["index"] = None
            held.pop("row_of_hash", None)
        if held.get("index") is None:  # built now, while lookups go to Chroma
            from .store.memory_index import MemoryIndex

            held["index"] = MemoryIndex(held["vectors"], held["metadatas"])
        return held


def _analysis_type() -> type:
    from .analyze.analysis import Analysis

    return Analysis


def _read_at(analysis: Analysis) -> str:
    """When the analysis read its documents (ISO): it is stored when done, so take off
    how long it ran (and a second), lest a delete made meanwhile go unnoticed."""
    if not analysis.created:
        return ""
    took = sum(float(v) for v in (analysis.timings or {}).values()) + 1.0
    read = datetime.fromisoformat(analysis.created) - timedelta(seconds=took)
    return read.isoformat(timespec="microseconds")


def _normalise_rows(vectors: np.ndarray) -> None:
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(min=1e-12)


class _StoreMapCache:
    """2-D maps kept in the store, keyed by analyze.reduce.map_key."""

    def __init__(self, store: Store, space: Space, write_lock: threading.RLock):
        self._store = store
        self._space = space
        self._write_lock = write_lock

    def get(self, key: str) -> tuple[np.ndarray, str] | None:
        from .store.artifacts import unpack_arrays

        try:
            found = self._store.artifacts.get(MAP, key)
        except StoreError:
            return None  # an incomplete cache entry is recomputed, never trusted
        if found is None:
            return None
        head, payload = found
        return unpack_arrays(payload)["coords"], head["note"]

    def put(self, key: str, coords: np.ndarray, note: str) -> None:
        from .store.artifacts import pack_arrays

        head = {"note": note, "space_collection": self._space.collection_name}
        try:
            with self._write_lock:
                payload = pack_arrays(coords=coords.astype(np.float32))
                self._store.artifacts.put(MAP, key, head, payload)
        except StoreError:
            pass  # only a cache: the analysis stands, the next one recomputes the map

    def put_basis(self, key: str, components: np.ndarray, mean: np.ndarray) -> None:
        """The PCA basis the map `key` was drawn from (what an update places with)."""
        from .store.artifacts import pack_arrays

        head = {"space_collection": self._space.collection_name}
        payload = pack_arrays(
            components=components.astype(np.float32), mean=mean.astype(np.float32)
        )
        try:
            with self._write_lock:
                self._store.artifacts.put(MAP + "-basis", key, head, payload)
        except StoreError:
            pass  # only a cache

    def get_basis(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        from .store.artifacts import unpack_arrays

        try:
            found = self._store.artifacts.get(MAP + "-basis", key)
        except StoreError:
            return None
        if found is None:
            return None
        arrays = unpack_arrays(found[1])
        return arrays["components"], arrays["mean"]


def python_documents(
    data: Any,
    text: str,
    id: str | None,  # noqa: A002
    label: str | None,
    source: str,
    skipped: Counter[str],
    vector: str | None = None,
    vectors: dict[str, Any] | None = None,
) -> Iterable[Document]:
    """Documents from a DataFrame, a list of strings, or a list of dicts. With `vector`
    (a column or key of vectors computed elsewhere), each one's vector goes in `vectors`."""
    import pandas as pd

    if isinstance(data, pd.DataFrame):
        yield from _frame_documents(data, text, id, label, source, skipped, vector, vectors)
        return
    if isinstance(data, str | bytes) or not isinstance(data, Iterable):
        raise InvalidRequest("give a DataFrame, a list of strings, or a list of dicts")
    for n, item in enumerate(data):
        if isinstance(item, str) and vector is not None:
            raise InvalidRequest(
                f"item {n} is a string; with vector= give dicts or a DataFrame with a "
                f"{vector!r} key or column"
            )
        if isinstance(item, str):
            yield Document(_content_id(item), item, source)
        elif isinstance(item, dict):
            body = item.get(text)
            if not isinstance(body, str):
                skipped["no text" if body is None else "text not a string"] += 1
                continue
            key = item.get(id or "id")
            tag = item.get(label or "label")
            doc_id = _content_id(body) if key is None else str(key)  # never a list position
            if vector is not None and vectors is not None:
                vectors.setdefault(doc_id, item.get(vector))
            yield Document(
                doc_id,
                body,
                str(item.get("source") or source),
                None if tag is None else str(tag),
            )
        else:
            raise InvalidRequest(f"item {n} is a {type(item).__name__}; give strings or dicts")


def _frame_documents(  # noqa: A002
    frame, text, id, label, source, skipped, vector=None, vectors=None
) -> Iterable[Document]:
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    for role, name in (("text", text), ("id", id), ("label", label), ("vector", vector)):
        if name is not None and name not in frame.columns:
            raise InvalidRequest(
                f"the DataFrame has no {role} column {name!r}; its columns: {', '.join(columns)}"
            )
    # without an id column, ids come from the text: a default index (0, 1, 2...) would
    # make the next DataFrame overwrite this one's documents
    ids = frame[id] if id else (frame["id"] if "id" in frame.columns else None)
    tags = frame[label] if label else (frame["label"] if "label" in frame.columns else None)
    raws = frame[vector].tolist() if vector is not None else None
    for row, body in enumerate(frame[text].tolist()):
        if not isinstance(body, str):
            skipped["no text" if body is None or pd.isna(body) else "text not a string"] += 1
            continue
        tag = None if tags is None else tags.iloc[row]
        tag = None if tag is None or (not isinstance(tag, str) and pd.isna(tag)) else str(tag)
        doc_id = _content_id(body) if ids is None else str(ids.iloc[row])
        if raws is not None and vectors is not None:
            vectors.setdefault(doc_id, raws[row])
        yield Document(doc_id, body, source, tag)


def _documents_frame(ids: list[str], metadatas: list[dict], texts: list[str]) -> pd.DataFrame:
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


def _records(pending: list[tuple[str, str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(doc_id, meta) for doc_id, _text, meta in pending]


def _content_id(text: str) -> str:
    """An id for a text given without one: the same text always gets the same id."""
    return f"text/{content_hash(normalise_text(text))[:16]}"


def _list(value: Sequence[str] | str | None) -> list[str] | None:
    """Globs as a list: one string may hold several, comma-separated."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    globs = [g.strip() for item in items for g in str(item).split(",") if g.strip()]
    return globs or None


def _check_positive(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise InvalidRequest(f"{name} must be a whole number, not {value!r}")
        if value is not None and value < 1:
            raise InvalidRequest(f"{name} must be at least 1, not {value}")


def _describe(space: dict[str, Any]) -> str:
    return Space(
        space["provider"], space["model"], space["task_type"], int(space["dims"])
    ).describe()
