"""The service's side of the Batch API: batch ingest jobs, their poller, /api/v1/batches.

`POST /api/v1/ingest` with `"batch": true` submits and leaves its job "waiting"; the
poller here asks the provider about the open batch jobs every $EMBEDLAB_BATCH_POLL_S
seconds (60 by default), writes what finished (`Lab.collect`), and ends each waiting job
whose batch jobs have all ended: "done", or "failed" when none brought vectors back.
Waiting jobs and batch records are in the store, so a restarted service goes on where
the last one stopped.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from ..errors import EmbedlabError, InvalidRequest, ProviderError, speak
from .problems import jsonable

log = logging.getLogger("embedlab.service")
API = "/api/v1"
SERVICE_POLL_S = 60.0


def check_batch_options(choice: Any, options: dict[str, Any]) -> None:
    """A batch ingest the service cannot do is refused now (400), not in a failed job."""
    if not options.get("batch"):
        return
    from ..ingest.batch import no_batch_api
    from ..ingest.providers import gemini_api_key

    why = no_batch_api(choice.space)
    if why is not None:
        raise InvalidRequest(speak(why, "http"))
    if not options.get("dry_run") and gemini_api_key() is None:
        raise InvalidRequest(
            "the service has no Gemini API key, so it cannot use the Batch API: set "
            "GEMINI_API_KEY where `embedlab serve` runs"
        )


def batch_result(lab: Any, report: Any) -> dict[str, Any]:
    """A submitted batch ingest's job result: waiting while any batch job it needs is open."""
    return {
        "report": report.to_dict(lab.prices),
        "batches": list(report.awaiting),
        "waiting": bool(report.awaiting),
    }


def poll_interval() -> float:
    try:
        return float(os.environ.get("EMBEDLAB_BATCH_POLL_S") or SERVICE_POLL_S)
    except ValueError:
        return SERVICE_POLL_S


class BatchPoller:
    """A daemon thread: collect finished batch jobs, end the waiting ingests."""

    def __init__(self, service: Any, interval: float | None = None):
        self.service = service
        self.interval = poll_interval() if interval is None else interval
        self._stop = threading.Event()
        self._tick_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="batch-poller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling and wait for a round in progress to end: the Lab closes right
        after, and a round still inside Chroma when the process exits can crash it
        (a service stopped by SIGTERM mid-round exited with SIGSEGV once)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the poller must outlive any one failure
                if self._stop.is_set() or self.service.lab.store.closed:
                    return  # stopped, or its Lab was closed under it (an in-process app)
                log.warning("batch poller: %s", exc)
            if self._stop.wait(self.interval):
                return

    def tick(self) -> Any:
        """One round: collect (when anything is open), then end the waiting ingests."""
        lab, jobs = self.service.lab, self.service.jobs
        with self._tick_lock:
            records = lab._batch_records()
            waiting = jobs.waiting()
            report = None
            if waiting or any(r.open for r in records.all()):
                try:
                    report = lab.collect(wait=False, quiet=True)
                    self.last_error = None
                except EmbedlabError as exc:  # no key, the provider down: said, retried later
                    self.last_error = str(exc)
                    log.warning("batch poller could not collect: %s", exc)
                for line in report.lines if report is not None else []:
                    log.info("batch: %s", line)
            for job in waiting:
                self._finish_if_ended(records, job)
            return report

    def _finish_if_ended(self, records: Any, job: Any) -> None:
        from ..store.batches import CANCELLED, COLLECTED

        found = [records.find(name) for name in job.result.get("batches") or []]
        if any(r is not None and r.open for r in found):
            return
        ended = [r for r in found if r is not None]
        outcome = {r.job: r.state for r in ended}
        written = sum(r.written for r in ended)
        result = {"batch_outcome": outcome, "written": written}
        if not ended or any(r.state == COLLECTED for r in ended):
            self.service.jobs.finish_waiting(job.id, "done", result)
        elif all(r.state == CANCELLED for r in ended):
            self.service.jobs.finish_waiting(
                job.id, "cancelled", result, "its batch jobs were cancelled; texts released"
            )
        else:
            states = ", ".join(sorted({r.state for r in ended}))
            self.service.jobs.finish_waiting(
                job.id,
                "failed",
                result,
                f"every batch job ended without vectors ({states}); their texts are released: "
                "submit the ingest again",
            )


def cancel_waiting(service: Any, job_id: str) -> dict[str, Any]:
    """DELETE /api/v1/jobs/{id} of a waiting batch ingest: cancel its open batch jobs
    at the provider; the poller then ends the job ("cancelled")."""
    service.check_writable("cancelling a job")
    job = service.jobs.get(job_id)
    records = service.lab._batch_records()
    for name in job.result.get("batches") or []:
        record = records.find(name)
        if record is not None and record.open:
            service.lab.cancel_batch(name)
    if service.batch_poller is not None:
        service.batch_poller.tick()
    return service.jobs.snapshot(job_id)[0]


def add_batch_routes(app: FastAPI, service: Any, settings: Any) -> None:
    """GET /api/v1/batches, POST /api/v1/batches/collect, DELETE /api/v1/batches/{job};
    and the poller (not on a read-only service, which writes nothing)."""
    lab = service.lab
    if not settings.read_only:
        service.batch_poller = BatchPoller(service)
        service.batch_poller.start()

    @app.get(f"{API}/batches")
    def batches(refresh: bool = False) -> JSONResponse:
        """The store's Batch API jobs, newest first (`refresh=true` asks the provider)."""
        refresh_error = None
        try:
            frame = lab.batches(refresh=refresh)
        except ProviderError as exc:  # the provider unreachable: the stored states, said so
            frame, refresh_error = lab.batches(), str(exc)
        rows = frame.to_dict(orient="records")
        poller = service.batch_poller
        body = {"batches": rows, "poll_s": poller.interval if poller else None}
        body["refresh_error"] = refresh_error
        body["poller_error"] = poller.last_error if poller else None
        return JSONResponse(jsonable(body))

    @app.post(f"{API}/batches/collect")
    def collect() -> JSONResponse:
        """Collect now what finished (the poller does it on its own every poll_s)."""
        service.check_writable("collecting batches")
        poller = service.batch_poller
        report = poller.tick() if poller is not None else lab.collect(wait=False, quiet=True)
        if report is None:
            from ..ingest.batch import CollectReport

            report = CollectReport()
        return JSONResponse(jsonable(report.to_dict()))

    @app.delete(f"{API}/batches/{{job:path}}")
    def cancel(job: str) -> JSONResponse:
        """Cancel one open batch job (its name, e.g. batches/abc, or its key)."""
        service.check_writable("cancelling a batch job")
        row = lab.cancel_batch(job)
        if service.batch_poller is not None:
            service.batch_poller.tick()
        return JSONResponse(jsonable(row), status_code=202)
