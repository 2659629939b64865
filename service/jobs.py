"""Background jobs: ingests and analyses run off the request thread, observable and stoppable.

A job is a `Lab` call run on a small pool: ingests on one worker (the Lab writes one
space at a time anyway, so the others wait in "queued"), analyses on their own workers,
so a long ingest never holds up an analysis and neither blocks reads. Every state change
(and progress, at most once a second) is written to the store, so after a restart the
past jobs are still listed, and a job that was running when the process died says
"interrupted": submitting it again embeds exactly what is missing.
"""

from __future__ import annotations

import builtins
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..errors import Cancelled, EmbedlabError, JobFinished, NotFound, ServiceStopping, code_of
from ..progress import CancelToken, Progress

log = logging.getLogger("embedlab.service")

JOB = "job"
QUEUED, RUNNING, DONE, FAILED, CANCELLED, INTERRUPTED = (
    "queued",
    "running",
    "done",
    "failed",
    "cancelled",
    "interrupted",
)
FINAL = {DONE, FAILED, CANCELLED, INTERRUPTED}
# A batch ingest, submitted: the provider works (hours); the service's batch poller
# ends it (done) once every batch job it waits for has ended. It outlives restarts.
WAITING = "waiting"
PERSIST_EVERY_S = 1.0
KEPT_IN_MEMORY = 500  # finished jobs listed from memory; older ones stay in the store

# run(cancel, on_progress) -> the job's result fields (e.g. {"report": {...}})
JobRun = Callable[[CancelToken, Callable[[Progress], None]], dict[str, Any]]


class JobFailed(Exception):
    """Raised by a job's run with the fields to keep (a partial report) and a message."""

    def __init__(
        self,
        message: str,
        state: str = FAILED,
        status: int | None = None,
        code: str | None = None,
        **result: Any,
    ):
        super().__init__(message)
        self.state = state
        self.status = status  # the HTTP status a waiting request gets, when not 502
        self.code = code or ("cancelled" if state != FAILED else "error")  # errors.CODES
        self.result = result


@dataclass
class Job:
    id: str
    kind: str
    created: str
    request: dict[str, Any] = field(default_factory=dict)
    state: str = QUEUED
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    code: str | None = None  # the error's stable code (errors.CODES): rebuilt by a client
    started: str | None = None
    finished: str | None = None
    version: int = 0
    cancel: CancelToken = field(default_factory=CancelToken, repr=False)
    future: Future | None = field(default=None, repr=False)
    exception: BaseException | None = field(default=None, repr=False)  # why it failed
    persisted_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "progress": self.progress,
            "request": self.request,
        }
        data.update(self.result)
        if self.error is not None:
            data["error"] = self.error
            data["code"] = self.code or ("cancelled" if self.state != FAILED else "error")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        known = {"id", "kind", "state", "created", "started", "finished", "progress", "request"}
        job = cls(id=data["id"], kind=data["kind"], created=data["created"])
        job.state, job.started, job.finished = data["state"], data["started"], data["finished"]
        job.progress, job.request = data.get("progress") or {}, data.get("request") or {}
        job.error, job.code = data.get("error"), data.get("code")
        job.result = {k: v for k, v in data.items() if k not in known | {"error", "code"}}
        return job


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class JobManager:
    """Runs, tracks, persists and cancels the jobs of one service."""

    def __init__(self, store: Any, analysis_workers: int = 2):
        self._store = store  # the Lab's Store: jobs are kept in its artifacts
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, Job] = {}
        self._pools = {
            "ingest": ThreadPoolExecutor(1, thread_name_prefix="job-ingest"),
            "analysis": ThreadPoolExecutor(analysis_workers, thread_name_prefix="job-analysis"),
        }
        self._accepting = True
        # called with a job's final state (service/updates.py: events, --follow)
        self.on_final: list[Callable[[dict[str, Any]], None]] = []
        self._load_past()

    # -- persistence ---------------------------------------------------------------------

    def _load_past(self) -> None:
        """Past jobs from the store; one left running by a dead process is "interrupted"."""
        orphans = []
        for head in reversed(self._store.artifacts.heads(JOB)[:KEPT_IN_MEMORY]):
            job = Job.from_dict(head)
            if job.state not in FINAL and job.state != WAITING:
                job.state, job.finished = INTERRUPTED, _now()
                job.error = (
                    "the service stopped while this job ran; everything written before stays "
                    "written: submit it again and only what is missing is embedded"
                )
                orphans.append(job)
            self._jobs[job.id] = job
        for job in orphans:
            self._persist(job)

    def _persist(self, job: Job) -> None:
        head = job.to_dict()
        head["created"] = job.created  # artifacts sort by it
        try:
            self._store.artifacts.put_heads(JOB, [head])
            job.persisted_at = time.monotonic()
        except EmbedlabError as exc:  # a job's record must never fail the job itself
            log.warning("could not record job %s: %s", job.id, exc)

    # -- submitting ----------------------------------------------------------------------

    def submit(self, kind: str, pool: str, run: JobRun, request: dict[str, Any]) -> Job:
        now = datetime.now(timezone.utc)
        job = Job(
            id=f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(4)}",
            kind=kind,
            created=now.isoformat(timespec="microseconds"),
            request=request,
            progress={"task": kind, "done": 0, "total": None, "status": "queued"},
        )
        with self._lock:
            if not self._accepting:
                raise ServiceStopping("the service is shutting down; submit the job again later")
            self._jobs[job.id] = job
        self._persist(job)
        job.future = self._pools[pool].submit(self._run, job, run)
        return job

    def _run(self, job: Job, run: JobRun) -> None:
        with self._changed:
            if job.cancel.cancelled or job.state != QUEUED:
                return  # cancelled while queued: already final
            job.state, job.started = RUNNING, _now()
            job.progress = {**job.progress, "status": "started"}
            self._bump(job)
        self._persist(job)

        def on_progress(event: Progress) -> None:
            progress = {"task": event.task, "done": event.done, "total": event.total}
            progress["status"] = event.status
            report = event.detail.get("report")
            if report is not None:
                progress.update(
                    cached=report.cached + report.reused,
                    embedded=report.embedded,
                    requests=report.requests,
                    retries=report.retries,
                )
            with self._changed:
                job.progress = progress
                self._bump(job)
            if time.monotonic() - job.persisted_at >= PERSIST_EVERY_S:
                self._persist(job)

        state, error, result, code = DONE, None, {}, None
        try:
            result = run(job.cancel, on_progress)
        except JobFailed as exc:
            state, error, result, code = exc.state, str(exc), exc.result, exc.code
            job.exception = exc
        except Cancelled as exc:
            state, error, code = CANCELLED, str(exc) or "cancelled", code_of(exc)
        except EmbedlabError as exc:
            state, error, code = FAILED, exc.say("http"), code_of(exc)
            job.exception = exc
        except Exception as exc:  # a bug: the job fails, the service lives on
            log.exception("job %s failed", job.id)
            state, error = FAILED, f"internal error ({type(exc).__name__}); see the service log"
            code = "internal"
        if state == CANCELLED and job.cancel.reason == "shutdown":
            state = INTERRUPTED
        if state == DONE and result.pop("waiting", False):
            state = WAITING  # a batch ingest: submitted, the provider works on it
        with self._changed:
            job.state, job.error, job.finished = state, error, _now()
            job.code, job.result = code, result
            self._bump(job)
        self._persist(job)
        for hook in list(self.on_final):
            try:
                hook(job.to_dict())
            except Exception:  # a listener never fails the job
                log.exception("job %s: a listener failed", job.id)

    def _bump(self, job: Job) -> None:
        job.version += 1
        self._changed.notify_all()

    # -- reading -------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r} (list them with GET /api/v1/jobs)")
        return job

    def snapshot(self, job_id: str) -> tuple[dict[str, Any], int]:
        job = self.get(job_id)
        with self._lock:
            return job.to_dict(), job.version

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            jobs = sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)
            return [j.to_dict() for j in jobs]

    def wait(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Block until the job is final (or `timeout`), then its state."""
        job = self.get(job_id)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while job.state not in FINAL and job.state != WAITING:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._changed.wait(left)
            return job.to_dict()

    # -- stopping ------------------------------------------------------------------------

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop: a queued one never starts, a running one stops at its next
        batch (what returned is written). A finished job is refused (JobFinished)."""
        job = self.get(job_id)
        with self._changed:
            if job.state in FINAL:
                raise JobFinished(f"job {job_id} already ended ({job.state}); nothing to cancel")
            job.cancel.cancel()
            queued = job.state == QUEUED
            if queued:
                job.state, job.finished, job.error = CANCELLED, _now(), "cancelled before it ran"
                self._bump(job)
        if queued:
            self._persist(job)
            return job.to_dict()
        # a running job stops at its next batch: say so, not "running"
        return {**job.to_dict(), "state": "cancelling"}

    def stop(self) -> None:
        """Stop accepting work and ask every job to stop (safe from a signal handler)."""
        self._accepting = False
        for job in list(self._jobs.values()):
            if job.state not in FINAL:
                job.cancel.cancel(reason="shutdown")

    def shutdown(self, timeout: float) -> None:
        """Stop, wait up to `timeout` seconds for running jobs, record the rest."""
        self.stop()
        deadline = time.monotonic() + timeout
        for job in list(self._jobs.values()):
            if job.future is not None and job.state not in FINAL:
                try:
                    job.future.result(timeout=max(0.0, deadline - time.monotonic()))
                except Exception:  # noqa: BLE001 - a timeout or the job's own error
                    pass
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        for job in list(self._jobs.values()):
            if job.state not in FINAL and job.state != WAITING:
                with self._changed:
                    job.state, job.finished = INTERRUPTED, _now()
                    job.error = "the service stopped before this job finished; submit it again"
                    self._bump(job)
                self._persist(job)

    # -- batch ingests -------------------------------------------------------------------

    def waiting(self) -> builtins.list[Job]:  # list: JobManager.list in this class
        """The batch ingests whose provider jobs have not all ended."""
        with self._lock:
            return [j for j in self._jobs.values() if j.state == WAITING]

    def finish_waiting(
        self, job_id: str, state: str, result: dict[str, Any], error: str | None = None
    ) -> None:
        """End a waiting batch ingest (the poller calls it once its batch jobs ended)."""
        job = self.get(job_id)
        with self._changed:
            if job.state != WAITING:
                return
            job.state, job.finished, job.error = state, _now(), error
            job.result = {**job.result, **result}
            self._bump(job)
        self._persist(job)
