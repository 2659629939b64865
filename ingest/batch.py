"""Half-price embeddings: submit texts to Gemini's Batch API, collect whenever they finish.

The order of work is what makes it safe to pay for a batch exactly once:
1. plan against the cache *and* the open batch jobs of the space: a text already
   embedded, or already in a pending job, is never submitted again;
2. refuse before recording anything when the job could not be made (no key, a
   rejected key, an unknown model);
3. record the intent (a key, the texts' hashes) and the documents waiting for them,
   then create the job with the key in its display name, then record its name: a crash
   between the last two is recovered by listing the provider's jobs and adopting the one
   that carries the key (`reconcile`); creation is not idempotent at the provider;
4. collect: a SUCCEEDED job's vectors are written under the same cache keys as online
   vectors (interchangeable), its failed lines and FAILED/CANCELLED/EXPIRED jobs release
   their texts (eligible again), and a collected job is never collected twice.

The SDK marks `batches.create_embeddings` experimental (a warning kept out of the output
here) and drops a job's top-level `error`: the state and the per-line errors are read.
"""

from __future__ import annotations

import io
import json
import math
import secrets
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ..errors import (
    EmbedlabError,
    InvalidRequest,
    NotFound,
    ProviderKeyError,
    TransientError,
)
from ..progress import CancelToken, plural
from ..store import Document, Space, Store
from ..store.batches import (
    CANCELLED,
    COLLECTED,
    EXPIRED,
    FAILED,
    INTENT,
    PENDING,
    RELEASED,
    RUNNING,
    SUCCEEDED,
    BatchRecord,
    BatchRecords,
    WaitingDocument,
    now_iso,
)
from ..store.ledger import BATCH_KIND, COST, PriceTable, estimate_tokens, usd
from ..store.ledger import entry as ledger_entry
from .pipeline import (
    IngestCancelled,
    IngestError,
    IngestReport,
    _write_reused,
    check_owners,
    clear_stale_fields,
    metadata_updates,
    plan_ingest,
    unique_documents,
)
from .providers import (
    CHARS_PER_TOKEN,
    GEMINI_MODELS,
    _http_exceptions,
    _map_api_error,
    gemini_api_key,
)

INLINE_LIMIT_BYTES = 20_000_000  # the Batch API's limit on a job's inlined requests
INLINE_MARGIN_BYTES = 1_000_000  # JSON overhead beyond the texts themselves, kept free
FILE_LIMIT_BYTES = 2_000_000_000  # an input file's limit
REQUEST_OVERHEAD_BYTES = 160  # per request line: keys, task type, dims, quoting
DEFAULT_JOB_TEXTS = 50_000  # texts per job by default (--batch-size changes it)
DISPLAY_PREFIX = "embedlab-"
INTENT_GRACE_S = 900.0  # on a shared (server) store, how old an unmatched intent must be
POLL_INITIAL_S = 5.0
POLL_MAX_S = 120.0
POLL_FACTOR = 1.5
LIST_PAGE = 100

JOB_STATES = {
    "JOB_STATE_PENDING": PENDING,
    "JOB_STATE_QUEUED": PENDING,
    "JOB_STATE_RUNNING": RUNNING,
    "JOB_STATE_SUCCEEDED": SUCCEEDED,
    "JOB_STATE_FAILED": FAILED,
    "JOB_STATE_CANCELLED": CANCELLED,
    "JOB_STATE_CANCELLING": RUNNING,
    "JOB_STATE_EXPIRED": EXPIRED,
}


def no_batch_api(space: Space) -> str | None:
    """Why `space` cannot be embedded through a batch API (None: it can)."""
    if space.provider == "gemini":
        return None
    if space.provider == "local":
        return (
            "the local model has no batch API (and costs nothing): drop <<batch>> "
            "to embed now, or use <<provider='gemini'>>"
        )
    return f"{space.describe()} holds vectors made outside embedlab: nothing can embed into it"


# -- the provider ------------------------------------------------------------------------------


@dataclass
class JobView:
    """A provider job as read now: its state, and for a finished one its lines."""

    name: str
    display_name: str
    state: str  # ours (pending, running, succeeded, failed, cancelled, expired)
    provider_state: str
    lines: list[Any] | None = None  # per request: a vector (list of floats) or None (error)
    errors: list[str] = field(default_factory=list)  # one message per failed line


class GeminiBatches:
    """Gemini's Batch and Files APIs through the google-genai SDK (one API key)."""

    def __init__(self, timeout_s: float = 120.0):
        key = gemini_api_key()
        if not key:
            raise ProviderKeyError(
                "no Gemini API key: set GEMINI_API_KEY where embedlab runs to use the Batch API"
            )
        from google import genai
        from google.genai import _common, types

        # experimental: said once in docs/batch.md, never in the user's output
        warnings.filterwarnings(
            "ignore", message=r"batches\.create_embeddings", category=_common.ExperimentalWarning
        )
        self._types = types
        self._client = genai.Client(
            api_key=key, http_options=types.HttpOptions(timeout=int(timeout_s * 1000))
        )
        self._checked: set[str] = set()

    def _call(self, what: str, call: Callable[[], Any], model: str = "") -> Any:
        from google.genai import errors

        timeouts, transports = _http_exceptions()
        try:
            return call()
        except errors.APIError as exc:
            raise _map_api_error(exc, model) from None
        except timeouts:
            raise TransientError(f"Gemini did not answer in time ({what})") from None
        except transports as exc:
            raise TransientError(f"cannot reach Gemini ({type(exc).__name__}, {what})") from None
        except ValueError as exc:
            raise TransientError(f"Gemini sent a malformed reply ({what}: {exc})") from None

    def check(self, space: Space) -> None:
        """The key and the model, asked before anything is recorded (one cheap GET)."""
        if space.model in self._checked:
            return
        self._call("model check", lambda: self._client.models.get(model=space.model), space.model)
        self._checked.add(space.model)

    def create(self, space: Space, display_name: str, texts: list[str], mode: str) -> JobView:
        """Create one job: inlined requests, or a JSONL file uploaded first."""
        if mode == "inline":
            src: Any = {  # the SDK's EmbeddingsBatchJobSourceDict, as a plain dict
                "inlined_requests": {
                    "contents": texts,
                    "config": {
                        "task_type": space.task_type,
                        "output_dimensionality": space.dims,
                    },
                }
            }
        else:
            data = jsonl_requests(space, texts)
            uploaded = self._call(
                "file upload",
                lambda: self._client.files.upload(
                    file=io.BytesIO(data),
                    config={"mime_type": "application/jsonl", "display_name": display_name},
                ),
                space.model,
            )
            src = {"file_name": uploaded.name}
        job = self._call(
            "batch create",
            lambda: self._client.batches.create_embeddings(
                model=space.model, src=src, config={"display_name": display_name}
            ),
            space.model,
        )
        view = _view(job)
        if mode != "inline":
            view.errors = [src["file_name"]]  # where the input went (recorded by the caller)
        return view

    def get(self, name: str, with_lines: bool = True) -> JobView:
        job = self._call("batch get", lambda: self._get_or_none(name))
        if job is None:  # deleted at the provider (or long gone): nothing will come back
            return JobView(name, "", EXPIRED, "NOT_FOUND")
        view = _view(job)
        if view.state == SUCCEEDED and with_lines:
            self._lines(job, view)
        return view

    def _get_or_none(self, name: str) -> Any:
        from google.genai import errors

        try:
            return self._client.batches.get(name=name)
        except errors.APIError as exc:
            if getattr(exc, "code", None) == 404:
                return None
            raise

    def list(self) -> list[JobView]:
        """Every job the key can see (all pages)."""
        pager = self._call(
            "batch list", lambda: self._client.batches.list(config={"page_size": LIST_PAGE})
        )
        return [_view(job) for job in self._call("batch list", lambda: list(pager))]

    def cancel(self, name: str) -> None:
        self._call("batch cancel", lambda: self._client.batches.cancel(name=name))

    def _lines(self, job: Any, view: JobView) -> None:
        dest = job.dest
        items = None
        if dest is not None:
            items = dest.inlined_embed_content_responses
            if items is None:  # every line failed: the SDK leaves them as generic responses
                items = dest.inlined_responses
        if items is not None:
            view.lines = []
            for item in items:
                response = getattr(item, "response", None)
                embedding = getattr(response, "embedding", None) if response else None
                values = getattr(embedding, "values", None) if embedding else None
                if values:
                    view.lines.append(list(values))
                else:
                    view.lines.append(None)
                    view.errors.append(_line_error(getattr(item, "error", None)))
            return
        file_name = getattr(dest, "file_name", None) if dest is not None else None
        if file_name is None:
            raise TransientError(f"{view.name} SUCCEEDED but carries no result yet")
        data = self._call("result download", lambda: self._client.files.download(file=file_name))
        by_key: dict[str, Any] = {}
        for raw in data.decode("utf-8").splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            values = ((line.get("response") or {}).get("embedding") or {}).get("values")
            by_key[str(line.get("key"))] = values or _line_error(line.get("error"))
        count = max((int(k) for k in by_key if k.isdigit()), default=-1) + 1
        view.lines = []
        for i in range(count):
            got = by_key.get(str(i), "no result line")
            if isinstance(got, str):
                view.lines.append(None)
                view.errors.append(got)
            else:
                view.lines.append(got)


def _line_error(error: Any) -> str:
    if error is None:
        return "no embedding in the reply"
    if isinstance(error, dict):
        return f"{error.get('code', '?')} {error.get('message', '')}".strip()
    return f"{getattr(error, 'code', '?')} {getattr(error, 'message', '') or ''}".strip()


def _view(job: Any) -> JobView:
    raw = job.state.value if hasattr(job.state, "value") else str(job.state or "")
    return JobView(
        name=job.name or "",
        display_name=job.display_name or "",
        state=JOB_STATES.get(raw, PENDING),
        provider_state=raw,
    )


def jsonl_requests(space: Space, texts: list[str]) -> bytes:
    """The input file of a file job: one request a line, keyed by its position."""
    lines = []
    for i, text in enumerate(texts):
        request = {
            "content": {"parts": [{"text": text}]},
            "taskType": space.task_type,
            "outputDimensionality": space.dims,
        }
        lines.append(json.dumps({"key": str(i), "request": request}, ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


# -- submitting --------------------------------------------------------------------------------


@dataclass
class BatchIngestReport(IngestReport):
    """An ingest with batch=True: what was submitted (nothing is embedded online)."""

    batch: bool = True
    submitted: int = 0  # unique texts sent in new batch jobs
    jobs: list[str] = field(default_factory=list)  # the new jobs (provider names)
    in_pending: int = 0  # unique texts already in a pending job of the space: not sent
    waiting: int = 0  # documents that get a vector when their jobs are collected
    submitted_chars: int = 0
    planned_jobs: int = 0
    job_modes: list[str] = field(default_factory=list)
    awaiting: list[str] = field(default_factory=list)  # every open job its documents wait on

    def __repr__(self) -> str:
        verb = "would submit" if self.dry_run else "submitted"
        return (
            f"BatchIngestReport({self.space.describe()}: {self.documents} documents, "
            f"{self.cached + self.reused} cached, {verb} {self.submitted} texts in "
            f"{self.planned_jobs if self.dry_run else len(self.jobs)} batch jobs {self.jobs}, "
            f"{self.in_pending} already pending, {self.seconds:.1f} s)"
        )

    def to_dict(self, prices: PriceTable | None = None) -> dict[str, Any]:
        prices = prices or PriceTable()
        data = super().to_dict(prices)
        tokens = estimate_tokens(self.submitted_chars)
        data.update(
            batch=True,
            submitted=self.submitted,
            jobs=list(self.jobs),
            awaiting=list(self.awaiting),
            in_pending=self.in_pending,
            waiting=self.waiting,
            planned_jobs=self.planned_jobs,
            job_modes=list(self.job_modes),
            submitted_chars=self.submitted_chars,
            estimated_batch_usd=round(prices.batch_dollars(self.space, tokens), 6),
            estimated_online_usd=round(prices.dollars(self.space, tokens), 6),
            estimated_usd=0.0,  # nothing is paid at submission; the ledger books collection
        )
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchIngestReport:
        base = IngestReport.from_dict(data)
        report = cls(space=base.space)
        report.__dict__.update({k: v for k, v in base.__dict__.items() if k != "batch"})
        for name in ("submitted", "jobs", "in_pending", "waiting", "planned_jobs"):
            setattr(report, name, data.get(name, getattr(report, name)))
        report.job_modes = list(data.get("job_modes") or [])
        report.awaiting = list(data.get("awaiting") or [])
        report.submitted_chars = data.get("submitted_chars", 0)
        return report

    def summary(self, prices: PriceTable | None = None) -> str:
        """The one line the CLI prints: submitted N texts in M batch jobs, est. $X ..."""
        prices = prices or PriceTable()
        tokens = estimate_tokens(self.submitted_chars)
        batch, online = prices.batch_dollars(self.space, tokens), prices.dollars(self.space, tokens)
        jobs = self.planned_jobs if self.dry_run else len(self.jobs)
        verb = "would submit" if self.dry_run else "submitted"
        line = (
            f"{verb} {self.submitted} texts in {jobs} batch job{'s' if jobs != 1 else ''}, "
            f"est. {usd(batch)} at the batch price (online: {usd(online)})"
        )
        extra = [f"{plural(self.documents, 'document')}: {self.cached + self.reused} cached"]
        if self.reused or self.planned_reuse and self.dry_run:
            extra.append(f"{self.reused or self.planned_reuse} reused from identical texts")
        if self.in_pending:
            extra.append(f"{self.in_pending} texts already in a pending batch job (not sent)")
        if self.waiting and not self.dry_run:
            extra.append(f"{self.waiting} documents wait for `embedlab batches` to collect")
        if self.relabelled:
            extra.append(f"{self.relabelled} labels or sources updated")
        if self.fields_updated:
            extra.append(f"fields of {plural(self.fields_updated, 'document')} updated")
        if self.pruned:
            extra.append(f"{self.pruned} no longer in the input removed")
        if self.skipped:
            extra.append(f"{sum(self.skipped.values())} skipped")
        return f"{line}; {', '.join(extra)}, {self.seconds:.1f} s"


def split_jobs(texts: list[str], job_texts: int) -> list[tuple[int, int, str]]:
    """(start, stop, mode) per job: at most `job_texts` texts each, inline while the
    requests stay under the inline limit, else a file (cut to stay under its limit)."""
    jobs: list[tuple[int, int, str]] = []
    start = 0
    inline_room = INLINE_LIMIT_BYTES - INLINE_MARGIN_BYTES
    while start < len(texts):
        stop, size = start, 0
        while stop < len(texts) and stop - start < job_texts:
            # as on the wire: JSON-escaped (a non-ASCII character can take 6 bytes)
            line = len(json.dumps(texts[stop])) + REQUEST_OVERHEAD_BYTES
            if size + line > FILE_LIMIT_BYTES and stop > start:
                break
            size += line
            stop += 1
        jobs.append((start, stop, "inline" if size <= inline_room else "file"))
        start = stop
    return jobs


def max_chars(space: Space) -> int:
    known = GEMINI_MODELS.get(space.model)
    return (known.input_tokens if known else 2048) * CHARS_PER_TOKEN


def submit(
    docs: Iterable[Document],
    store: Store | None,
    records: BatchRecords | None,
    space: Space,
    api: Callable[[], GeminiBatches],
    job_texts: int | None = None,
    dry_run: bool = False,
    skipped: Any = None,
    started: float | None = None,
    cancel: CancelToken | None = None,
    local_store: bool = True,
    on_progress: Callable[[BatchIngestReport], None] | None = None,
    replace: bool = False,
) -> BatchIngestReport:
    """Submit what the cache and the open jobs of `space` lack; embed nothing online.

    Another source's documents are refused (Conflict) unless `replace`, as online.

    Raises ProviderError (no key, rejected key, unknown model: nothing recorded) and
    IngestError (a job could not be created; the jobs made before it stand).
    """
    report = BatchIngestReport(space=space, dry_run=dry_run)
    if started is not None:
        report.started = started
    if skipped is not None:
        report.skipped = skipped
    notify = on_progress or (lambda _r: None)
    job_texts = job_texts or DEFAULT_JOB_TEXTS
    documents = unique_documents(docs, report.skipped)
    report.documents = len(documents)
    report.ids = [d.id for d in documents]
    report.cut = sum(d.cut for d in documents)

    collection = store.collection(space, create=False) if store is not None else None
    stored_meta = collection.metadata_by_id(report.ids) if collection is not None else {}
    report.replaced = check_owners(documents, stored_meta, replace)
    documents = clear_stale_fields(documents, stored_meta)
    stored = {doc_id: meta["content_hash"] for doc_id, meta in stored_meta.items()}
    wanted = {d.content_hash for d in documents if stored.get(d.id) != d.content_hash}
    if dry_run or collection is None:
        vectors: dict[str, np.ndarray] = {}
        known = collection.hashes_present(wanted) if collection is not None else set()
    else:
        vectors = collection.vectors_by_hash(wanted)
        known = set(vectors)
    plan = plan_ingest(documents, stored, known)
    report.cached = len(plan.unchanged)
    report.cached_chars = sum(len(d.text) for d in plan.unchanged)
    report.changed = sum(1 for d in documents if d.id in stored and stored[d.id] != d.content_hash)
    relabel, report.relabelled, report.fields_updated = metadata_updates(
        plan.unchanged, stored_meta
    )
    report.planned_reuse = len(plan.reusable)
    report.planned_embed = sum(len(g) for g in plan.to_embed)

    needs_api = bool(plan.to_embed) and not dry_run
    client = api() if needs_api else None  # no key: refused here, nothing recorded
    if client is not None and records is not None:
        reconcile(records, client, space.collection_name, local_store)
    in_batch = records.open_jobs_by_hash(space.collection_name) if records is not None else {}
    groups = [g for g in plan.to_embed if g[0].content_hash not in in_batch]
    report.awaiting = sorted(
        {in_batch[g[0].content_hash] for g in plan.to_embed if g[0].content_hash in in_batch}
    )
    report.in_pending = len(plan.to_embed) - len(groups)
    texts = [g[0].text[: max_chars(space)] for g in groups]
    truncated = [len(g[0].text) > max_chars(space) for g in groups]
    report.submitted = len(groups)
    report.submitted_chars = sum(len(t) for t in texts)
    report.planned_chars = report.submitted_chars
    layout = split_jobs(texts, job_texts)
    report.planned_jobs = report.planned_requests = len(layout)
    report.job_modes = [mode for _s, _e, mode in layout]
    report.waiting = report.planned_embed
    notify(report)
    if dry_run:
        report.seconds = time.monotonic() - report.started
        return report
    assert store is not None and records is not None, "only a dry run may go without a store"
    if client is not None and groups:
        client.check(space)  # a rejected key or an unknown model: refused, nothing recorded

    if collection is None:
        collection = store.collection(space, create=True)
    for start in range(0, len(relabel), 1000):
        chunk = relabel[start : start + 1000]
        collection.relabel(chunk, [bool(stored_meta[d.id].get("truncated")) for d in chunk])
    _write_reused(collection, plan.reusable, vectors, report, lambda _r: None)
    if plan.reusable:
        collection.persist_index(plan.reusable[-1].id)

    submission = new_key()
    already = {
        (d.id, d.content_hash)
        for docs in records.waiting(space.collection_name).values()
        for d in docs
    }
    waiting = [
        WaitingDocument(d.id, d.text, d.source, d.label, d.content_hash, stored.get(d.id))
        for group in plan.to_embed
        for d in group
        if (d.id, d.content_hash) not in already  # a re-run while pending: kept once
    ]
    records.add_waiting(submission, space, waiting)
    try:
        for start, stop, mode in layout:
            if cancel is not None and cancel.cancelled:
                break
            record = _create_job(
                records, client, space, submission, texts[start:stop], groups[start:stop],
                truncated[start:stop], mode, report,
            )  # fmt: skip
            report.jobs.append(record.job)
            report.awaiting.append(record.job)
            notify(report)
    except KeyboardInterrupt:  # the jobs made so far are recorded; a job half made is an
        report.seconds = time.monotonic() - report.started  # intent the next run settles
        raise IngestCancelled("interrupted", report, interrupted=True) from None
    report.seconds = time.monotonic() - report.started
    return report


def _create_job(
    records: BatchRecords,
    client: GeminiBatches | None,
    space: Space,
    submission: str,
    texts: list[str],
    groups: list[list[Document]],
    truncated: list[bool],
    mode: str,
    report: BatchIngestReport,
) -> BatchRecord:
    """Intent, create, record the name: the order that makes a crash recoverable."""
    assert client is not None
    key = new_key()
    record = BatchRecord(
        key=key,
        space=space.to_dict(),
        space_collection=space.collection_name,
        submission=submission,
        display_name=f"{DISPLAY_PREFIX}{key}",
        texts=len(texts),
        chars=sum(len(t) for t in texts),
        mode=mode,
    )
    hashes = [g[0].content_hash for g in groups]
    records.add_intent(record, hashes, truncated, [len(t) for t in texts])
    try:
        job = client.create(space, record.display_name, texts, mode)
    except TransientError as exc:
        # It may exist: the next run lists the provider's jobs and adopts or releases it.
        record.note = f"creation unconfirmed ({exc}); the next `embedlab batches` checks"
        records.save(record)
        raise IngestError(
            f"{exc}; the batch job may or may not exist: run `embedlab batches` to check "
            "(it is adopted if it does, released if not); nothing is paid twice",
            report,
        ) from None
    except EmbedlabError as exc:
        record.state, record.finished = RELEASED, now_iso()
        record.note = f"refused by the provider: {exc}"
        records.save(record)
        raise IngestError(str(exc), report) from exc
    record_created(records, record, job)
    return record


def record_created(records: BatchRecords, record: BatchRecord, job: JobView) -> None:
    """The moment a job exists, its name goes into the store."""
    record.name = job.name
    record.state, record.provider_state = job.state, job.provider_state
    if record.mode == "file" and job.errors:
        record.input_file = job.errors[0]
    record.note = "submitted"
    records.save(record)


def new_key() -> str:
    return f"{datetime.now(timezone.utc):%Y%m%d%H%M%S}-{secrets.token_hex(5)}"


# -- recovering and collecting -----------------------------------------------------------------


def reconcile(
    records: BatchRecords,
    client: GeminiBatches,
    space_collection: str | None = None,
    local_store: bool = True,
) -> list[str]:
    """Intents without a provider name: adopt the job whose display name carries the
    key, or release the intent when none does (it was never created). On a store other
    processes may write to, only intents older than INTENT_GRACE_S are released."""
    intents = [r for r in records.all(space_collection) if r.state == INTENT]
    if not intents:
        return []
    by_display = {job.display_name: job for job in client.list()}
    lines = []
    for record in intents:
        job = by_display.get(record.display_name)
        if job is not None:
            record_created(records, record, job)
            record.note = "adopted after an interrupted submission"
            records.save(record)
            lines.append(f"{job.name}: adopted (its submission was interrupted); no new job made")
            continue
        age = (datetime.now(timezone.utc) - datetime.fromisoformat(record.created)).total_seconds()
        if not local_store and age < INTENT_GRACE_S:
            continue
        record.state, record.finished = RELEASED, now_iso()
        record.note = "never created at the provider: its texts are eligible again"
        records.save(record)
        lines.append(f"{record.key}: never created; {record.texts} texts released")
    return lines


@dataclass
class CollectReport:
    """What one `collect` did: a line per event, and the counts behind them."""

    checked: int = 0  # open jobs asked about
    collected: int = 0  # jobs whose vectors were written now
    written: int = 0  # documents given a vector now
    failed_lines: int = 0  # texts released because their line failed
    released: int = 0  # texts released because their job ended without vectors
    pending: int = 0  # jobs still running at the provider
    lines: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def summary(self) -> str:
        line = (
            f"{self.checked} open batch job{'s' if self.checked != 1 else ''} checked: "
            f"{self.collected} collected ({self.written} documents written), "
            f"{self.pending} still pending"
        )
        if self.failed_lines or self.released:
            line += f", {self.failed_lines + self.released} texts released (submit them again)"
        return f"{line}, {self.seconds:.1f} s"

    def to_dict(self) -> dict[str, Any]:
        return {
            k: getattr(self, k)
            for k in (
                "checked collected written failed_lines released pending lines seconds interrupted"
            ).split()
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CollectReport:
        report = cls()
        for key, value in data.items():
            if hasattr(report, key):
                setattr(report, key, value)
        return report


def collect_once(
    store: Store,
    records: BatchRecords,
    client: Callable[[], GeminiBatches],
    report: CollectReport,
    local_store: bool = True,
) -> int:
    """One pass: ask about every open job, write what finished. Returns the jobs left open."""
    open_records = [r for r in records.all() if r.open]
    if not open_records:
        return 0
    api = client()
    if any(r.state == INTENT for r in open_records):
        report.lines += reconcile(records, api, None, local_store)
        open_records = [r for r in records.all() if r.open]
    spaces: dict[str, Space] = {}
    left = 0
    fresh: dict[str, dict[str, tuple[np.ndarray, bool]]] = {}
    for record in open_records:
        if record.name is None:  # an intent kept for its grace period
            left += 1
            continue
        report.checked += 1
        view = api.get(record.name)
        record.provider_state = view.provider_state
        spaces[record.space_collection] = record.space_value()
        if view.state in (PENDING, RUNNING):
            if view.state != record.state:
                record.state = view.state
                records.save(record)
            left += 1
            report.pending += 1
            continue
        if view.state == SUCCEEDED:
            got = _vectors(records, record, view)
            fresh.setdefault(record.space_collection, {}).update(got)
            written = _settle(store, records, record.space_value(), fresh[record.space_collection])
            failed = record.texts - len(got)
            record.state, record.finished = COLLECTED, now_iso()
            record.vectors, record.failed_lines, record.written = len(got), failed, written
            record.note = f"{len(got)} vectors written to {written} documents" + (
                f"; {failed} lines failed ({view.errors[0] if view.errors else 'malformed'}): "
                "those texts are released"
                if failed
                else ""
            )
            chars = _chars_of(records, record, got)
            cost = ledger_entry(record.space_value(), BATCH_KIND, len(got), chars)
            cost["id"] = f"batch-{record.key}"  # collecting twice books it once
            store.artifacts.put_heads(COST, [cost])
            records.save(record)
            report.collected += 1
            report.written += written
            report.failed_lines += failed
            report.lines.append(f"{record.job}: SUCCEEDED, {record.note}")
        else:
            record.state, record.finished = view.state, now_iso()
            record.note = (
                f"{view.provider_state.replace('JOB_STATE_', '')}: its {record.texts} texts are "
                "released (submit them again)"
            )
            records.save(record)
            report.released += record.texts
            report.lines.append(f"{record.job}: {record.note}")
    for collection_name, space in spaces.items():
        _settle(store, records, space, fresh.get(collection_name, {}))
    return left


def _vectors(
    records: BatchRecords, record: BatchRecord, view: JobView
) -> dict[str, tuple[np.ndarray, bool]]:
    """content hash -> (unit vector, cut to fit) for the lines that came back whole."""
    hashes, truncated = records.hashes(record.key)
    lines = view.lines or []
    got: dict[str, tuple[np.ndarray, bool]] = {}
    dims = record.space["dims"]
    for i, content_hash in enumerate(hashes):
        values = lines[i] if i < len(lines) else None
        if values is None:
            continue
        vector = np.asarray(values, dtype=np.float32)
        norm = float(np.linalg.norm(vector)) if vector.shape == (dims,) else 0.0
        if not math.isfinite(norm) or norm == 0:
            continue  # a malformed line counts as failed: its text is released
        got[content_hash] = (vector / norm, truncated[i] if i < len(truncated) else False)
    return got


def _chars_of(records: BatchRecords, record: BatchRecord, got: dict[str, Any]) -> int:
    """Characters of the texts that came back with a vector (what the ledger books)."""
    hashes, _cut = records.hashes(record.key)
    chars = records.chars(record.key)
    if len(chars) != len(hashes):  # not kept: in proportion
        return int(round(record.chars * len(got) / record.texts)) if record.texts else 0
    return sum(n for h, n in zip(hashes, chars) if h in got)


def _settle(
    store: Store,
    records: BatchRecords,
    space: Space,
    fresh: dict[str, tuple[np.ndarray, bool]],
) -> int:
    """Give every waiting document of `space` its vector where one exists now (just
    collected, or in the cache), drop those whose text is in no open job any more
    (released: eligible again) and those whose id holds another text since. Returns the
    documents written."""
    waiting = records.waiting(space.collection_name)
    if not waiting:
        return 0
    collection = store.collection(space, create=True)
    open_hashes = records.pending_hashes(space.collection_name)
    newest: dict[str, str] = {}  # id -> the newest submission naming it (waiting is newest first)
    for submission, docs in waiting.items():
        for doc in docs:
            newest.setdefault(doc.id, submission)
    every = [d for sub, docs in waiting.items() for d in docs if newest[d.id] == sub]
    stored = {
        i: m["content_hash"] for i, m in collection.metadata_by_id([d.id for d in every]).items()
    }
    need_cache = {d.content_hash for d in every if d.content_hash not in fresh}
    cached = collection.vectors_by_hash(need_cache) if need_cache else {}
    written = 0
    for submission, docs in waiting.items():
        keep: list[WaitingDocument] = []
        write_docs, write_vectors, write_cut = [], [], []
        for doc in docs:
            now = stored.get(doc.id)
            if newest[doc.id] != submission:
                continue  # a later ingest gave this id a text of its own
            if now == doc.content_hash:
                continue  # already there (collected before, or embedded online since)
            if now != doc.previous:
                continue  # the id holds another text since this submission: leave it
            if doc.content_hash in fresh:
                vector, cut = fresh[doc.content_hash]
            elif doc.content_hash in cached:
                vector, cut = cached[doc.content_hash], False
            elif doc.content_hash in open_hashes:
                keep.append(doc)
                continue
            else:
                continue  # released: the next ingest submits it again
            write_docs.append(Document(doc.id, doc.text, doc.source, doc.label))
            write_vectors.append(vector)
            write_cut.append(cut)
        for start in range(0, len(write_docs), 1000):
            collection.write(
                write_docs[start : start + 1000],
                np.stack(write_vectors[start : start + 1000]),
                write_cut[start : start + 1000],
            )
        if write_docs:
            collection.persist_index(write_docs[-1].id)
            written += len(write_docs)
        if len(keep) != len(docs):
            records.set_waiting(submission, space, keep)
    return written


def cancel_job(records: BatchRecords, client: GeminiBatches, job: str) -> BatchRecord:
    """Ask the provider to cancel one open job (by name or key); the next collect
    releases its texts."""
    record = records.find(job)
    if record is None:
        raise NotFound(f"no batch job {job!r} in this store (the batches listing names them)")
    if not record.open:
        raise InvalidRequest(f"batch job {record.job} already ended ({record.state})")
    if record.name is None:
        reconcile(records, client, record.space_collection)
        record = records.find(record.key) or record
        if record.name is None:
            return record
    client.cancel(record.name)
    return record
