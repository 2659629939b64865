"""Ingest: consult the cache, embed only what is missing, write each batch as it returns.

The order of work is what makes ingest cheap and safe:
1. plan: split documents into unchanged (same id, same text), reusable (text already
   embedded in this space under some other id) and new texts (each unique text once);
2. copy reusable vectors, with no provider call;
3. embed new texts in batches, a bounded number in flight, retrying transient
   failures with exponential backoff and jitter (or the server's Retry-After);
4. write every batch to the store the moment it returns, so a crash or Ctrl-C
   loses at most the batches in flight and a re-run embeds only the rest.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ..errors import Cancelled, Conflict, EmbedlabError, ProviderKeyError, RequestRefused
from ..progress import CancelToken
from ..store import Document, Space, SpaceCollection, Store, StoreError
from ..store.documents import stored_fields
from ..store.ledger import PriceTable, estimate_tokens, usd
from ..store.ledger import entry as ledger_entry
from .providers import DEFAULT_BATCH_SIZE, Embedded, Provider, ProviderError, TransientError
from .skips import Skips, skip
from .skips import examples as skip_examples
from .skips import examples_line as skipped_examples_line

WRITE_CHUNK = 1000
CANCEL_POLL_S = 0.1
# An ingest planned above either is one to confirm first (the CLI asks on a terminal,
# and refuses elsewhere without --yes): texts already cached cost nothing and do not count.
ASK_ABOVE_TEXTS = 5000
ASK_ABOVE_USD = 1.0


def skipped_clause(skipped: Mapping[str, int]) -> str:
    """ ", N skipped (n why, ...)" for a summary line; "" when nothing was skipped."""
    if not skipped:
        return ""
    reasons = ", ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
    return f", {sum(skipped.values())} skipped ({reasons})"


@dataclass
class RetryPolicy:
    """Exponential backoff with jitter; a server's Retry-After wins when it sends one.

    Jitter only spreads out retries in time; it never changes what gets stored, so its
    seed (None = fresh per run) is there for tests that want exact sleeps.
    """

    attempts: int = 6  # including the first try
    initial_delay: float = 1.0
    max_delay: float = 60.0
    exp_base: float = 2.0
    jitter: float = 0.5  # up to +50% of the delay, random
    seed: int | None = None

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        base = min(self.initial_delay * self.exp_base**retry, self.max_delay)
        return base * (1 + self.jitter * rng.random())


@dataclass
class IngestReport:
    """Running totals, updated as work lands; also what the summary line prints."""

    space: Space
    documents: int = 0
    cached: int = 0  # same id, same text: nothing to do
    reused: int = 0  # text already embedded under another id: vector copied
    embedded: int = 0  # documents whose vector came from the provider in this run
    texts_embedded: int = 0  # unique texts sent to the provider
    requests: int = 0  # provider calls, retries included
    retries: int = 0
    truncated: int = 0
    cut: int = 0  # texts over MAX_TEXT_CHARS, kept cut to it
    planned_requests: int = 0
    planned_embed: int = 0  # documents whose text must be sent (dry run: would be)
    planned_reuse: int = 0  # documents whose text is stored under another id
    changed: int = 0  # ids already stored with another text: re-embedded or reused
    relabelled: int = 0  # same text, another label or source: metadata rewritten
    fields_updated: int = 0  # same text, other fields of its own: metadata rewritten
    fields_dropped: int = 0  # documents with fields past MAX_FIELDS: those not kept
    pruned: int = 0  # stored documents of the input's sources it no longer holds: removed
    in_batch: int = 0  # documents whose text an open batch job embeds: not paid again now
    restored: int = 0  # documents repair kept without a vector, embedded (or reused) again
    pending: list[str] = field(default_factory=list)  # their ids, when the ingest began
    replaced: int = 0  # documents of another source this input replaced (replace=True)
    encodings: Counter[str] = field(default_factory=Counter)  # files read not as UTF-8
    cached_chars: int = 0  # characters of the documents served from the cache
    chars_embedded: int = 0  # characters of the unique texts sent to the provider
    planned_chars: int = 0  # characters of the unique texts to send (dry run: would send)
    ids: list[str] = field(default_factory=list)  # every document id of this call
    ledger: list[dict] = field(default_factory=list)  # provider calls not yet recorded
    skipped: Counter[str] = field(default_factory=Skips)  # by reason; the first few named
    dry_run: bool = False
    last_written: str | None = None  # any id written in this run (to persist the index)
    estimates: dict[str, float] = field(default_factory=dict)  # the service's, in --server mode
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    @property
    def done(self) -> int:
        return self.cached + self.reused + self.embedded

    def __repr__(self) -> str:
        return (
            f"IngestReport({self.space.describe()}: {self.documents} documents, "
            f"{self.cached + self.reused} cached, {self.embedded} embedded, "
            f"{self.requests} requests, {sum(self.skipped.values())} skipped"
            + (f", {self.changed} existing documents changed text" if self.changed else "")
            + (f", {self.relabelled} relabelled" if self.relabelled else "")
            + (f", {self.fields_updated} fields updated" if self.fields_updated else "")
            + f", {self.seconds:.1f} s)"
        )

    def _repr_html_(self) -> str:
        """The notebook's view: the summary line and the counts."""
        from ..htmltable import esc, table

        counts = [
            ("documents", self.documents),
            ("cached", self.cached),
            ("reused from identical texts", self.reused),
            ("embedded", self.embedded),
            ("requests", self.requests),
        ]
        counts += [
            (name, value)
            for name, value in (
                ("retries", self.retries),
                ("truncated", self.truncated),
                ("changed text", self.changed),
                ("relabelled", self.relabelled),
                ("fields updated", self.fields_updated),
                ("fields past the first 32 dropped", self.fields_dropped),
                ("removed (no longer in the input)", self.pruned),
                ("skipped", sum(self.skipped.values())),
            )
            if value
        ]
        return (
            f"<div><p><b>ingest into {esc(self.space.describe())}</b><br>"
            f"{esc(self.summary())}</p>{table(['', 'count'], counts)}</div>"
        )

    def to_dict(self, prices: PriceTable | None = None) -> dict[str, Any]:
        """The report as JSON-ready data (the service's ingest report), costs estimated."""
        prices = prices or PriceTable()
        tokens = estimate_tokens(self.chars_embedded)
        saved = estimate_tokens(self.cached_chars)
        return {
            "space": {
                **self.space.to_dict(),
                "name": self.space.describe(),
            },
            "documents": self.documents,
            "cached": self.cached,
            "reused": self.reused,
            "embedded": self.embedded,
            "texts_embedded": self.texts_embedded,
            "requests": self.requests,
            "retries": self.retries,
            "truncated": self.truncated,
            "cut": self.cut,
            "changed": self.changed,
            "relabelled": self.relabelled,
            "fields_updated": self.fields_updated,
            "fields_dropped": self.fields_dropped,
            "pruned": self.pruned,
            "restored": self.restored,
            "in_batch": self.in_batch,
            "replaced": self.replaced,
            "encodings": dict(self.encodings),
            "planned_requests": self.planned_requests,
            "planned_embed": self.planned_embed,
            "planned_reuse": self.planned_reuse,
            "skipped": dict(self.skipped),
            "skipped_examples": skip_examples(self.skipped),
            "dry_run": self.dry_run,
            "seconds": round(self.seconds, 3),
            "estimated_tokens": tokens,
            "estimated_usd": round(prices.dollars(self.space, tokens), 6),
            "estimated_tokens_saved": saved,
            "estimated_usd_saved": round(prices.dollars(self.space, saved), 6),
            "planned_estimated_usd": round(
                prices.dollars(self.space, estimate_tokens(self.planned_chars)), 6
            ),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IngestReport:
        """A report sent by the service, for the CLI's --server mode (same summary line)."""
        space = Space.from_dict(data["space"])
        report = cls(space=space)
        for name in (
            "documents cached reused embedded texts_embedded requests retries truncated cut "
            "changed relabelled planned_requests planned_embed planned_reuse dry_run seconds"
        ).split():
            setattr(report, name, data[name])
        report.pruned = data.get("pruned", 0)
        report.fields_updated = data.get("fields_updated", 0)
        report.fields_dropped = data.get("fields_dropped", 0)
        report.restored = data.get("restored", 0)
        report.in_batch = data.get("in_batch", 0)
        report.replaced = data.get("replaced", 0)
        report.encodings = Counter(data.get("encodings") or {})
        report.skipped = Skips(data.get("skipped") or {}, data.get("skipped_examples"))
        report.estimates = {
            k: v for k, v in data.items() if k.startswith(("estimated", "planned_estimated"))
        }
        return report

    def summary(self, prices: PriceTable | None = None) -> str:
        """One line: documents, cached, embedded, requests, seconds (plus skips when any):
        what the CLI prints after an ingest."""
        from ..progress import plural
        from ..store.documents import MAX_FIELDS, MAX_TEXT_CHARS

        call = "request" if self.space.provider == "gemini" else "model batch"
        if self.dry_run:
            reuse = self.planned_reuse
            line = (
                f"dry run: {plural(self.documents, 'document')}: {self.cached + reuse} cached"
                + (f" ({reuse} reused from identical texts)" if reuse else "")
                + f", {self.planned_embed} to embed in {plural(self.planned_requests, call)}"
            )
        else:
            line = (
                f"{plural(self.documents, 'document')}: {self.cached + self.reused} cached, "
                f"{self.embedded} embedded, {plural(self.requests, call)}"
            )
            if self.reused:
                line += f" ({self.reused} reused from identical texts)"
            if self.texts_embedded < self.embedded:
                line += f" ({plural(self.texts_embedded, 'unique text')} sent)"
            if self.retries:
                line += f", {plural(self.retries, 'retry')}"
            if self.truncated:
                line += f", {self.truncated} truncated"
        if self.changed:
            verb = "would be re-embedded" if self.dry_run else "re-embedded"
            line += f", {self.changed} existing documents changed text: {verb}"
        if self.relabelled:
            verb = "would be updated" if self.dry_run else "updated"
            line += f", {self.relabelled} labels or sources {verb} (no embedding)"
        if self.fields_updated:
            verb = "would be updated" if self.dry_run else "updated"
            line += f", fields of {plural(self.fields_updated, 'document')} {verb} (no embedding)"
        if self.fields_dropped:
            line += (
                f", {plural(self.fields_dropped, 'document')} with more than {MAX_FIELDS} "
                f"fields (the first {MAX_FIELDS} kept)"
            )
        if self.pruned:
            verb = "would be removed" if self.dry_run else "removed"
            line += f", {self.pruned} no longer in the input {verb}"
        if self.in_batch:
            line += (
                f", {self.in_batch} wait for an open batch job (not paid again: collect it with "
                "`embedlab batches`, then ingest again, free)"
            )
        if self.restored:
            verb = "would get" if self.dry_run else "got"
            line += f", {self.restored} kept by repair without a vector {verb} it back"
        if self.replaced:
            verb = "would be replaced" if self.dry_run else "replaced"
            line += f", {plural(self.replaced, 'document')} of another source {verb}"
        if self.cut:
            line += f", {self.cut} cut to {MAX_TEXT_CHARS:,} chars"
        line += skipped_clause(self.skipped)
        if self.encodings:
            files = sum(self.encodings.values())
            how = ", ".join(f"{n} as {name}" for name, n in sorted(self.encodings.items()))
            line += f", {plural(files, 'file')} not UTF-8 (read {how})"
        return f"{line}{self.cost_line(prices)}, {self.seconds:.1f} s"

    def skipped_line(self) -> str | None:
        """`skipped: line 3 (line not JSON), ...`: where the first few skips were (None
        when nothing was skipped or none is named); the CLI prints it after the summary."""
        return skipped_examples_line(self.skipped)

    def spend_to_confirm(self, prices: PriceTable | None = None) -> str | None:
        """Why this plan (a dry run's report) is one to confirm before running it: more
        than ASK_ABOVE_TEXTS texts to embed, or more than ASK_ABOVE_USD estimated; None
        when it is below both. Cached texts are free and not counted."""
        data = self.estimates or self.to_dict(prices)
        dollars = float(data.get("planned_estimated_usd") or 0.0)
        reasons = []
        if self.planned_embed > ASK_ABOVE_TEXTS:
            reasons.append(f"{self.planned_embed:,} texts to embed (over {ASK_ABOVE_TEXTS:,})")
        if dollars > ASK_ABOVE_USD:
            reasons.append(f"est. {usd(dollars)} (over {usd(ASK_ABOVE_USD)})")
        return " and ".join(reasons) or None

    def cost_line(self, prices: PriceTable | None = None) -> str:
        """The summary's cost clause (est. $X spent, $Y saved) for providers that charge."""
        data = self.estimates or self.to_dict(prices)
        if (prices or PriceTable()).price(self.space) == 0:
            return ""
        if self.dry_run:
            return f", would cost est. {usd(data['planned_estimated_usd'])}"
        spent, saved = usd(data["estimated_usd"]), usd(data["estimated_usd_saved"])
        return f", est. {spent} spent, {saved} saved by the cache"


class IngestError(EmbedlabError):
    """Ingest stopped; everything in `report` up to now is safely stored."""

    def __init__(self, message: str, report: IngestReport):
        super().__init__(message)
        self.report = report


class IngestKeyError(IngestError, ProviderKeyError):
    """The provider refused the key mid-ingest: `except ProviderKeyError` catches it too."""


class IngestCancelled(IngestError, Cancelled):
    """Cancelled (a token, or Ctrl-C): the batches already written stay written."""

    def __init__(self, message: str, report: IngestReport, interrupted: bool = False):
        super().__init__(message, report)
        self.interrupted = interrupted  # Ctrl-C: the process wants out at once


IngestInterrupted = IngestCancelled  # the name the CLI and older callers use


@dataclass
class Plan:
    documents: list[Document]
    unchanged: list[Document]
    reusable: list[Document]
    to_embed: list[list[Document]]  # one group per unique text, in input order


def unique_documents(docs: Iterable[Document], skipped: Counter[str]) -> list[Document]:
    """Drop empty texts and repeated ids (first one wins), counting each drop."""
    seen: set[str] = set()
    kept = []
    for doc in docs:
        if not doc.text:
            skip(skipped, "empty text", doc.id)
        elif doc.id in seen:
            skip(skipped, "duplicate id", doc.id)
        else:
            seen.add(doc.id)
            kept.append(doc)
    return kept


def plan_ingest(documents: list[Document], stored: dict[str, str], known_hashes: set[str]) -> Plan:
    """Classify documents given `stored` (id -> hash in the space) and the hashes it holds."""
    unchanged: list[Document] = []
    pending: list[Document] = []
    for doc in documents:
        (unchanged if stored.get(doc.id) == doc.content_hash else pending).append(doc)
    reusable = [d for d in pending if d.content_hash in known_hashes]
    groups: dict[str, list[Document]] = {}
    for doc in pending:
        if doc.content_hash not in known_hashes:
            groups.setdefault(doc.content_hash, []).append(doc)
    return Plan(documents, unchanged, reusable, list(groups.values()))


def ingest(
    docs: Iterable[Document],
    store: Store | None,
    space: Space,
    make_provider: Callable[[], Provider],
    batch_size: int | None = None,
    concurrency: int | None = None,
    retry: RetryPolicy | None = None,
    dry_run: bool = False,
    on_progress: Callable[[IngestReport], None] | None = None,
    skipped: Counter[str] | None = None,
    started: float | None = None,
    cancel: CancelToken | None = None,
    replace: bool = False,
    in_batch: set[str] | None = None,
) -> IngestReport:
    """Make `store` hold a vector for every document in `space`, embedding only what is new.

    Texts whose hash is in `in_batch` (an open batch job embeds them) are not sent: they
    are counted, and a later ingest, once the job is collected, copies their vectors.

    `make_provider` is called only when some text really needs embedding, so a fully
    cached run never loads a model or opens a connection. Cancelling `cancel` stops new
    requests and retries at once, writes what has returned, and raises IngestCancelled.

    A document belongs to the source that wrote it: an input of another source with the
    same id is refused (Conflict, nothing written) unless `replace`. Documents that
    repair kept without their vector join every ingest of their space, so the next one
    embeds exactly those. The space's collection is made only when something is written:
    an ingest that fails first (no key, a refused request) leaves the store as it was.
    """
    cancel = cancel or CancelToken()
    report = IngestReport(space=space, dry_run=dry_run)
    if started is not None:  # the caller's clock: reading the source counts too
        report.started = started
    if skipped is not None:
        report.skipped = skipped
    notify = on_progress or (lambda _report: None)
    documents = unique_documents(docs, report.skipped)
    report.documents = len(documents)
    report.ids = [d.id for d in documents]
    report.cut = sum(doc.cut for doc in documents)
    report.fields_dropped = sum(doc.dropped_fields > 0 for doc in documents)

    collection = store.collection(space, create=False) if store is not None else None
    pending: list[Document] = []
    if collection is not None:
        pending = _pending_documents(collection)
        report.pending = [d.id for d in pending]
        given = {d.id for d in documents}
        documents += [d for d in pending if d.id not in given]
        report.documents = len(documents)
        report.ids = [d.id for d in documents]
        report.restored = len(pending)  # planned; what landed is counted at the end
    stored_meta = (
        collection.metadata_by_id([d.id for d in documents]) if collection is not None else {}
    )
    owners = {d.id: {"source": d.source} for d in pending}  # they belong to theirs too
    report.replaced = check_owners(documents, {**owners, **stored_meta}, replace)
    documents = clear_stale_fields(documents, stored_meta)
    stored = {doc_id: meta["content_hash"] for doc_id, meta in stored_meta.items()}
    pending_hashes = {d.content_hash for d in documents if stored.get(d.id) != d.content_hash}
    if dry_run or collection is None:
        vectors = {}
        known = collection.hashes_present(pending_hashes) if collection is not None else set()
    else:
        vectors = collection.vectors_by_hash(pending_hashes)
        known = set(vectors)
    plan = plan_ingest(documents, stored, known)
    if in_batch:  # paid for once already, in a job not yet collected
        held = [group for group in plan.to_embed if group[0].content_hash in in_batch]
        plan.to_embed = [group for group in plan.to_embed if group[0].content_hash not in in_batch]
        report.in_batch = sum(len(group) for group in held)
    report.cached = len(plan.unchanged)
    report.cached_chars = sum(len(d.text) for d in plan.unchanged)
    report.changed = sum(1 for d in documents if d.id in stored and stored[d.id] != d.content_hash)
    # Same text, new label, source or fields: a metadata update, no embedding.
    relabel, report.relabelled, report.fields_updated = metadata_updates(
        plan.unchanged, stored_meta
    )
    report.planned_reuse = len(plan.reusable)
    report.planned_embed = sum(len(group) for group in plan.to_embed)
    report.planned_chars = sum(len(group[0].text) for group in plan.to_embed)
    size = batch_size or DEFAULT_BATCH_SIZE.get(space.provider, 100)
    report.planned_requests = math.ceil(len(plan.to_embed) / size)
    notify(report)
    if dry_run:
        return _finish(report)

    if collection is None:
        assert store is not None, "only a dry run may go without a store"
        collection = cast(SpaceCollection, _CreatedOnWrite(store, space))  # stands in for one
    try:
        for start in range(0, len(relabel), WRITE_CHUNK):
            chunk = relabel[start : start + WRITE_CHUNK]
            collection.relabel(chunk, [bool(stored_meta[d.id].get("truncated")) for d in chunk])
        _write_reused(collection, plan.reusable, vectors, report, notify)
        if plan.to_embed:
            provider = make_provider()
            if batch_size and batch_size > provider.max_batch_size:
                raise RequestRefused(  # the request's fault: a 400 on the service
                    f"<<batch_size={batch_size}>> is more than {space.provider} accepts "
                    f"({provider.max_batch_size})"
                )
            size = batch_size or provider.default_batch_size
            report.planned_requests = math.ceil(len(plan.to_embed) / size)
            _embed_groups(
                plan.to_embed,
                provider,
                collection,
                size,
                concurrency or provider.default_concurrency,
                retry or RetryPolicy(),
                report,
                notify,
                cancel,
            )
    except IngestCancelled as exc:
        if not exc.interrupted:  # Ctrl-C wants out now; the next open replays the tail
            _persist(collection, report)
        raise
    except IngestError:
        _persist(collection, report)
        raise
    except StoreError as exc:  # a write failed: what was written before it stays
        raise IngestError(str(exc), _finish(report)) from None
    _persist(collection, report)
    return _finish(report)


def _typed(fields: Mapping[str, Any]) -> dict[str, tuple[str, Any]]:
    """Fields compared with their types (1 and True, or 2001 and "2001", differ)."""
    return {k: (type(v).__name__, v) for k, v in fields.items() if v is not None}


def clear_stale_fields(
    documents: list[Document], stored_meta: Mapping[str, Mapping[str, Any]]
) -> list[Document]:
    """`documents`, each one whose stored copy has fields it no longer has given them as
    None: Chroma merges metadata, and only an explicit None removes a key."""
    from dataclasses import replace

    out = []
    for doc in documents:
        stale = set(stored_fields(stored_meta.get(doc.id))) - set(doc.fields)
        if stale:
            doc = replace(doc, fields={**doc.fields, **dict.fromkeys(sorted(stale))})
        out.append(doc)
    return out


def metadata_updates(
    unchanged: list[Document], stored_meta: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Document], int, int]:
    """(the documents whose text is stored as it is but whose metadata is not, how many
    of them have another label or source, how many other fields of their own)."""
    update: list[Document] = []
    relabelled = refielded = 0
    for doc in unchanged:
        meta = stored_meta[doc.id]
        relabel = (meta.get("label"), meta.get("source")) != (doc.label, doc.source)
        refield = _typed(stored_fields(meta)) != _typed(doc.fields)
        if relabel or refield:
            update.append(doc)
        relabelled += relabel
        refielded += refield
    return update, relabelled, refielded


def _persist(collection: SpaceCollection, report: IngestReport) -> None:
    if report.last_written is not None:
        collection.persist_index(report.last_written)
    if report.pending:  # those that have their vector now are pending no more
        restored = list(collection.metadata_by_id(report.pending))
        collection.clear_pending(restored)
        report.restored = len(restored)


def _pending_documents(collection: SpaceCollection) -> list[Document]:
    """The documents repair kept without a vector."""
    return [
        Document(
            doc_id,
            text,
            str(meta.get("source") or ""),
            meta.get("label"),
            fields=stored_fields(meta),
        )
        for doc_id, text, meta in collection.pending()
    ]


def check_owners(
    documents: list[Document], stored: dict[str, dict[str, Any]], replace: bool
) -> int:
    """How many documents replace another source's; refused (Conflict) unless `replace`."""
    foreign = [
        (doc, stored[doc.id].get("source"))
        for doc in documents
        if doc.id in stored and stored[doc.id].get("source") not in (None, "", doc.source)
    ]
    if foreign and not replace:
        doc, owner = foreign[0]
        more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
        raise Conflict(
            f"document {doc.id}{more} belongs to source {owner}, and this input is source "
            f"{doc.source}; nothing was written. Give the documents ids of their own, or "
            "pass <<replace=True>> to replace them"
        )
    return len(foreign)


class _CreatedOnWrite:
    """A space's collection made at its first write, so a failed ingest leaves no space."""

    def __init__(self, store: Store, space: Space):
        self._store = store
        self._space = space
        self._made: SpaceCollection | None = None

    def __getattr__(self, name: str) -> Any:
        if self._made is None:
            self._made = self._store.collection(self._space, create=True)
        return getattr(self._made, name)


def _finish(report: IngestReport) -> IngestReport:
    report.seconds = time.monotonic() - report.started
    return report


def _write_reused(
    collection: SpaceCollection,
    docs: list[Document],
    vectors: dict[str, np.ndarray],
    report: IngestReport,
    notify: Callable[[IngestReport], None],
) -> None:
    for start in range(0, len(docs), WRITE_CHUNK):
        chunk = docs[start : start + WRITE_CHUNK]
        collection.write(
            chunk, np.stack([vectors[d.content_hash] for d in chunk]), [False] * len(chunk)
        )
        report.reused += len(chunk)
        report.cached_chars += sum(len(d.text) for d in chunk)
        report.last_written = chunk[-1].id
        notify(report)


def _embed_groups(
    groups: list[list[Document]],
    provider: Provider,
    collection: SpaceCollection,
    batch_size: int,
    concurrency: int,
    policy: RetryPolicy,
    report: IngestReport,
    notify: Callable[[IngestReport], None],
    cancel: CancelToken,
) -> None:
    """Run batches through the provider, `concurrency` at a time; write each on arrival.

    The loop wakes every CANCEL_POLL_S to notice a cancel; requests already in flight
    are not waited for (their threads end within one request timeout).
    """
    batches = iter([groups[i : i + batch_size] for i in range(0, len(groups), batch_size)])
    caller = RetryingEmbedder(provider, policy, report, cancel)
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="embed")
    in_flight: dict[Future[Embedded], list[list[Document]]] = {}

    def submit_next() -> None:
        batch = next(batches, None)
        if batch is not None:
            in_flight[pool.submit(caller, [g[0].text for g in batch])] = batch

    failure: BaseException | None = None
    try:
        for _ in range(concurrency):
            submit_next()
        while in_flight:
            done, _ = wait(in_flight, timeout=CANCEL_POLL_S, return_when=FIRST_COMPLETED)
            for future in done:
                batch = in_flight.pop(future)
                try:
                    result = future.result()
                except Cancelled:
                    continue
                except ProviderError as exc:
                    failure = failure or exc  # keep draining: finished batches still get saved
                    continue
                _write_batch(collection, batch, result, report)
                notify(report)
                if failure is None and not cancel.cancelled:
                    submit_next()
            if cancel.cancelled:
                _write_landed(in_flight, collection, report)
                raise IngestCancelled("cancelled", _finish(report))
    except KeyboardInterrupt:
        cancel.cancel()  # wakes retry sleeps, so the process can exit promptly
        pool.shutdown(wait=False, cancel_futures=True)
        _write_landed(in_flight, collection, report)
        raise IngestCancelled("interrupted", _finish(report), interrupted=True) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    if failure is not None:
        kind = IngestKeyError if isinstance(failure, ProviderKeyError) else IngestError
        template = getattr(failure, "template", str(failure))  # its arguments, per front end
        raise kind(template, _finish(report)) from failure


def _write_landed(
    in_flight: dict[Future[Embedded], list[list[Document]]],
    collection: SpaceCollection,
    report: IngestReport,
) -> None:
    """Write the batches that returned after the last write: they were paid for."""
    for future in [f for f in in_flight if f.done() and not f.cancelled()]:
        batch = in_flight.pop(future)
        if future.exception() is None:
            _write_batch(collection, batch, future.result(), report)


def _write_batch(
    collection: SpaceCollection, batch: list[list[Document]], result: Embedded, report: IngestReport
) -> None:
    docs: list[Document] = []
    rows: list[int] = []
    truncated: list[bool] = []
    for row, group in enumerate(batch):
        docs.extend(group)
        rows.extend([row] * len(group))
        truncated.extend([result.truncated[row]] * len(group))
    collection.write(docs, result.vectors[rows], truncated)
    report.embedded += len(docs)
    report.last_written = docs[-1].id
    report.texts_embedded += len(batch)
    report.chars_embedded += sum(len(group[0].text) for group in batch)
    report.truncated += sum(result.truncated)


class RetryingEmbedder:
    """Calls provider.embed with retries; validates and L2-normalises what comes back.

    Used by ingest for every batch and by neighbours for a query: one retry policy.
    """

    def __init__(
        self,
        provider: Provider,
        policy: RetryPolicy,
        report: IngestReport,
        cancel: CancelToken | None = None,
        kind: str = "embed",
    ):
        self._provider = provider
        self._kind = kind
        self._policy = policy
        self._report = report
        self._cancel = cancel or CancelToken()
        self._lock = threading.Lock()
        self._rng = random.Random(policy.seed)

    def __call__(self, texts: list[str]) -> Embedded:
        for attempt in range(self._policy.attempts):
            if self._cancel.cancelled:
                raise Cancelled("cancelled before the request was sent")
            with self._lock:
                self._report.requests += 1
                self._report.retries += attempt > 0
            try:
                result = _checked(self._provider.embed(texts), len(texts), self._provider.space)
            except TransientError as exc:
                if attempt + 1 >= self._policy.attempts:
                    raise TransientError(
                        f"{exc}; gave up after {self._policy.attempts} attempts"
                    ) from None
                with self._lock:
                    pause = self._policy.delay(attempt, exc.retry_after, self._rng)
                if self._cancel.sleep(pause):
                    raise Cancelled("cancelled while waiting to retry") from None
            else:
                chars = sum(len(t) for t in texts)
                self._report.ledger.append(
                    ledger_entry(self._provider.space, self._kind, len(texts), chars, attempt)
                )
                return result
        raise AssertionError("unreachable")


def _checked(result: Embedded, n_texts: int, space: Space) -> Embedded:
    """Reject replies of the wrong shape; unit-normalise (truncated Gemini vectors are not)."""
    vectors = np.asarray(result.vectors, dtype=np.float32)
    if vectors.shape != (n_texts, space.dims) or len(result.truncated) != n_texts:
        raise TransientError(
            f"{space.provider} returned {vectors.shape[0] if vectors.ndim else 0} vectors of "
            f"{vectors.shape[1] if vectors.ndim == 2 else '?'} dims for {n_texts} texts "
            f"of {space.dims} dims"
        )
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise TransientError(f"{space.provider} returned empty or non-finite vectors")
    return Embedded(vectors / norms, list(result.truncated))
