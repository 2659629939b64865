"""The Lab's Batch API use cases: submit at half price, list, collect, cancel.

A mixin of `Lab` (lab.py), kept in its own module: `ingest(..., batch=True)` submits,
`batches()` lists the jobs, `collect()` writes every finished job's vectors, and
`cancel_batch(job)` stops one. The work itself is in `ingest.batch`; the records in
`store.batches`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import InvalidRequest
from .progress import CancelToken, Progress, ProgressCallback, reporter
from .store import Document, Space

if TYPE_CHECKING:
    import pandas as pd

    from .ingest.batch import BatchIngestReport, CollectReport, GeminiBatches
    from .store.batches import BatchRecords

POLL_ENV = "EMBEDLAB_BATCH_POLL_S"  # first pause between polls (tests and services set it)
BATCH_COLUMNS = [
    "job",
    "state",
    "texts",
    "submitted",
    "finished",
    "space",
    "mode",
    "written",
    "failed_lines",
    "estimated_usd",
    "key",
    "provider_state",
    "note",
]


def poll_seconds(poll: float | None = None) -> float:
    """The first pause between polls: `poll`, else $EMBEDLAB_BATCH_POLL_S, else 5 s."""
    from .ingest.batch import POLL_INITIAL_S

    if poll is not None:
        return float(poll)
    try:
        return float(os.environ.get(POLL_ENV) or POLL_INITIAL_S)
    except ValueError:
        return POLL_INITIAL_S


class BatchUseCases:
    """Batch API use cases over the Lab's store (needs `store`, `prices`, `quiet`,
    `_write_lock`, `embedding_choice`, `_record_costs`, `_prune` and `_invalidate`)."""

    store: Any
    prices: Any
    quiet: bool
    _write_lock: Any

    def _texts_in_batch(self, space: Space) -> set[str]:
        """Content hashes an open batch job of `space` embeds: an online ingest meanwhile
        does not pay for them again."""
        if space.provider != "gemini":
            return set()
        return self._batch_records().pending_hashes(space.collection_name)

    def _batch_records(self) -> BatchRecords:
        from .store.batches import BatchRecords

        return BatchRecords(self.store.artifacts)

    def _batch_api(self) -> GeminiBatches:
        """One Batch API client per Lab (refuses without a key, before any record)."""
        from .ingest.batch import GeminiBatches
        from .ingest.providers import gemini_api_key

        lock = self.__dict__.setdefault("_batch_api_lock", threading.Lock())
        with lock:
            key = gemini_api_key()  # a key changed since (a notebook's os.environ): a new client
            held = self.__dict__.get("_batch_client")
            if held is None or held[0] != key:
                held = (key, GeminiBatches())
                self.__dict__["_batch_client"] = held
            return held[1]

    def _ingest_batch(
        self,
        documents: Iterable[Document],
        skipped: Any,
        provider: str,
        model: str | None,
        task_type: str | None,
        dims: int | None,
        batch_size: int | None,
        dry_run: bool,
        quiet: bool | None,
        on_progress: ProgressCallback | None,
        started: float | None,
        prune: bool,
        cancel: CancelToken | None,
        replace: bool = False,
    ) -> BatchIngestReport:
        """`ingest(..., batch=True)`: submit what is missing to the Batch API, embed
        nothing online, and return at once (`report.submitted`, `report.jobs`).
        `batch_size` is texts per batch job here. Refused in one line, before anything
        is recorded: the local model, no key, a rejected key, an unknown model."""
        from .ingest.batch import no_batch_api, submit

        started = time.monotonic() if started is None else started
        space = self.embedding_choice(provider, model, task_type, dims).space  # type: ignore[attr-defined]
        why = no_batch_api(space)
        if why is not None:
            raise InvalidRequest(why)
        documents = list(documents)
        if prune and not any(d.text for d in documents):
            raise InvalidRequest(
                "no document was read from the input, so --prune would remove every stored "
                "document of its source; nothing was done"
            )
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)

        def on_report(report: BatchIngestReport) -> None:
            notify(Progress("submit", len(report.jobs), report.planned_jobs, "batch jobs"))

        with self._write_lock:
            try:
                report = submit(
                    documents,
                    self.store,
                    self._batch_records(),
                    space,
                    self._batch_api,
                    job_texts=batch_size,
                    dry_run=dry_run,
                    skipped=skipped,
                    started=started,
                    cancel=cancel,
                    local_store=self.store.path is not None,
                    on_progress=on_report,
                    replace=replace,
                )
                if prune:
                    report.pruned = len(self._prune(space, documents, dry_run))  # type: ignore[attr-defined]
            finally:
                close_bar()
                # the submission may have made a space
                self._invalidate(catalogue=True)  # type: ignore[attr-defined]
            self._record_costs(report, final=True)  # type: ignore[attr-defined]
            if report.reused or report.relabelled:  # documents it wrote: read them again
                self._invalidate(space, ids=report.ids)  # type: ignore[attr-defined]
            return report

    def batches(self, refresh: bool = False) -> pd.DataFrame:
        """Every batch job of this store, newest first: job (the provider's name), state
        (intent, pending, running, succeeded, collected, failed, cancelled, expired,
        released), texts, submitted, finished, space, mode (inline or file), written
        (documents given a vector), failed_lines, estimated_usd (at the batch price), key,
        provider_state, note. `refresh=True` asks the provider for the state of the open
        jobs first (writes no vectors: `collect` does)."""
        import pandas as pd

        from .store.ledger import estimate_tokens

        records = self._batch_records()
        if refresh:
            self._refresh_states(records)
        rows = []
        for r in records.all():
            rows.append(
                {
                    "job": r.job,
                    "state": r.state,
                    "texts": r.texts,
                    "submitted": r.created,
                    "finished": r.finished,
                    "space": r.space_value().describe(),
                    "mode": r.mode,
                    "written": r.written,
                    "failed_lines": r.failed_lines,
                    "estimated_usd": round(
                        self.prices.batch_dollars(r.space, estimate_tokens(r.chars)), 6
                    ),
                    "key": r.key,
                    "provider_state": r.provider_state,
                    "note": r.note,
                }
            )
        return pd.DataFrame(rows, columns=BATCH_COLUMNS)

    def _refresh_states(self, records: BatchRecords) -> None:
        from .ingest.batch import reconcile

        open_records = [r for r in records.all() if r.open]
        if not open_records:
            return
        api = self._batch_api()
        if any(r.name is None for r in open_records):
            reconcile(records, api, None, self.store.path is not None)
        for record in records.all():
            if record.open and record.name is not None:
                view = api.get(record.name, with_lines=False)
                if (view.state, view.provider_state) != (record.state, record.provider_state):
                    record.state, record.provider_state = view.state, view.provider_state
                    records.save(record)

    def collect(
        self,
        wait: bool | float = False,
        poll: float | None = None,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> CollectReport:
        """Write every finished batch job's vectors into the store (the same cache keys
        as online vectors); release the texts of failed lines and of FAILED, CANCELLED
        and EXPIRED jobs (the next ingest submits them again). Collecting twice writes
        nothing twice. `wait=True` (or a number of seconds) polls, with backoff from
        `poll` seconds, until every job has ended or the time is up; Ctrl-C or `cancel`
        stops the wait and keeps everything collected so far (`report.interrupted`)."""
        from .errors import TransientError
        from .ingest.batch import POLL_FACTOR, POLL_MAX_S, CollectReport, collect_once

        if wait is True:
            limit = float("inf")
        elif wait is False or wait is None:
            limit = 0.0
        else:
            limit = float(wait)
            if limit < 0:
                raise InvalidRequest(f"wait must be 0 or more seconds, not {wait}")
        cancel = cancel or CancelToken()
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)
        report = CollectReport()
        started = time.monotonic()
        pause = poll_seconds(poll)
        records = self._batch_records()
        local = self.store.path is not None
        try:
            while True:
                with self._write_lock:
                    try:
                        left = collect_once(self.store, records, self._batch_api, report, local)
                    except TransientError as exc:  # waiting: a hiccup is retried next poll
                        if limit == 0:
                            raise
                        report.lines.append(f"{exc}; trying again at the next poll")
                        left = -1
                    if report.written:
                        for space in {r.space_value() for r in records.all()}:
                            self._invalidate(space)  # type: ignore[attr-defined]
                    else:
                        self._invalidate(catalogue=True)  # type: ignore[attr-defined]
                total = len(records.all())
                if left >= 0:
                    notify(Progress("batches", total - left, total, f"{left} still open"))
                elapsed = time.monotonic() - started
                if left == 0 or elapsed >= limit:
                    break
                if cancel.sleep(min(pause, max(0.0, limit - elapsed))):
                    report.interrupted = True
                    break
                pause = min(pause * POLL_FACTOR, POLL_MAX_S)
                report.pending = 0  # counted again by the next pass
                report.checked = 0
        except KeyboardInterrupt:
            report.interrupted = True  # everything collected before stays written
        finally:
            close_bar()
            report.seconds = time.monotonic() - started
        return report

    def cancel_batch(self, job: str) -> dict[str, Any]:
        """Ask the provider to cancel one open batch job (its name, or our key); the
        collect that follows releases its texts. Returns the job's row."""
        from .ingest.batch import cancel_job

        records = self._batch_records()
        with self._write_lock:
            record = cancel_job(records, self._batch_api(), job)
        self.collect(wait=False, quiet=True)
        frame = self.batches()
        rows = frame[frame["key"] == record.key].to_dict(orient="records")
        return rows[0] if rows else {"job": job}
