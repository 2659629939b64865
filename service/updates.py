"""Analyses that follow the store: the update route, the store's event stream, --follow.

- `POST /api/v1/analyses/{id}/update` `{"refit": false}`: a job running lab.update
  (`?wait=true`: 200 with the updated analysis' id, summary and update report).
- `GET /api/v1/events`: Server-Sent Events of what changes in the store: `ingest` (an
  ingest job ended, with its space and counts), `analysis-created`, `analysis-updated`
  (with its parent), `analysis-deleted`; the stream opens with `hello` and ends with
  `bye` when the service stops. Each event has an `id`; a client that
  reconnects with `Last-Event-ID` (EventSource does) gets what it missed, as long as it
  is among the last EVENTS_KEPT.
- `GET /api/v1/analyses/{id}/successor`: the newest analysis that updates this one (what
  an open map loads when it was away).
- `embedlab serve --follow`: after every ingest job that changed a space, the newest
  analysis of that space is updated (one update per space at a time; ingests that end
  while one runs are folded into one more update).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict

from ..errors import Cancelled
from ..lab import Lab
from ..progress import CancelToken, Progress
from .problems import jsonable

if TYPE_CHECKING:
    from ..store import Space

API = "/api/v1"
EVENTS_KEPT = 1000
SSE_POLL_S = 0.1
KEEPALIVE_S = 15.0
log = logging.getLogger("embedlab.service")


class UpdateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refit: bool = False


class EventHub:
    """The last EVENTS_KEPT store events, numbered, for any number of SSE readers."""

    def __init__(self) -> None:
        self._events: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=EVENTS_KEPT)
        self._next = 1
        self._lock = threading.Lock()

    def publish(self, kind: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._events.append((self._next, kind, dict(data)))
            self._next += 1

    def since(self, last: int) -> list[tuple[int, str, dict[str, Any]]]:
        with self._lock:
            return [e for e in self._events if e[0] > last]

    @property
    def last(self) -> int:
        with self._lock:
            return self._next - 1


def changed_space(job: dict[str, Any]) -> dict[str, Any] | None:
    """The space an ended ingest job wrote to, when it changed what the space holds."""
    report = (job.get("report") or {}) if isinstance(job, dict) else {}
    space = report.get("space")
    if not space:
        return None
    moved = sum(
        int(report.get(key) or 0)
        for key in ("embedded", "reused", "changed", "relabelled", "pruned", "written")
    )
    return space if moved else None


class Follower:
    """--follow: keeps the newest analysis of each changed space updated."""

    def __init__(self, service: Any, lab: Lab) -> None:
        self.service = service
        self.lab = lab
        self._lock = threading.Lock()
        self._running: set[Space] = set()
        self._again: set[Space] = set()

    def space_changed(self, space: dict[str, Any]) -> None:
        from ..store import Space

        key = Space.from_dict(space)
        self._space_changed(key)

    def _space_changed(self, space_name: Space) -> None:
        with self._lock:
            if space_name in self._running:
                self._again.add(space_name)
                return
            self._running.add(space_name)
        self._submit(space_name)

    def _submit(self, space_name: Space) -> None:
        def run(cancel: CancelToken, on_progress) -> dict[str, Any]:
            try:
                latest = self.lab.latest_analysis(space_name)
                if latest is None:
                    return {"analysis": None, "note": "no analysis of this space to follow"}
                updated = self.lab.update(latest, quiet=True, on_progress=on_progress)
                return {"analysis": updated.id, "parent": latest.id,
                        "update_report": updated.update_report}  # fmt: skip
            finally:
                with self._lock:
                    again = space_name in self._again
                    self._again.discard(space_name)
                    if not again:
                        self._running.discard(space_name)
                if again:
                    self._submit(space_name)

        request = {"space": space_name.describe(), "follow": True}
        self.service.jobs.submit("update", "analysis", run, request)


def add_update_routes(app: FastAPI, service: Any, lab: Lab, follow: bool = False) -> EventHub:
    """The routes above on `app`; `app.state.events` is the hub."""
    hub = app.state.events = EventHub()
    follower = Follower(service, lab) if follow else None

    def on_lab_event(kind: str, data: dict[str, Any]) -> None:
        hub.publish(kind, data)
        if kind in ("analysis-updated", "analysis-deleted"):
            maps = getattr(app.state, "maps", None)
            if maps is not None and kind == "analysis-deleted":
                maps.forget(data.get("analysis"))

    lab.add_listener(on_lab_event)

    def on_job_final(job: dict[str, Any]) -> None:
        if job.get("kind") != "ingest":
            return
        space = changed_space(job) if job.get("state") == "done" else None
        report = job.get("report") or {}
        hub.publish(
            "ingest",
            {
                "job": job.get("id"),
                "state": job.get("state"),
                "space": (report.get("space") or {}).get("name"),
                "documents": report.get("documents"),
                "changed": space is not None,
            },
        )
        if follower is not None and space is not None:
            follower.space_changed(space)

    service.jobs.on_final.append(on_job_final)

    @app.post(f"{API}/analyses/{{analysis_id}}/update", status_code=202)
    def update_analysis(
        analysis_id: str,
        request: Annotated[UpdateRequest | None, Body()] = None,
        wait: bool = False,
    ) -> JSONResponse:
        """Update a stored analysis for the documents now (lab.update), as a job;
        `?wait=true`: 200 with the updated analysis."""
        service.check_writable("updating an analysis")
        lab.analysis(analysis_id)  # 404 now, not a failed job
        refit = bool(request.refit) if request is not None else False

        def run(cancel: CancelToken, on_progress) -> dict[str, Any]:
            def progress(event: Progress) -> None:
                if cancel.cancelled:
                    raise Cancelled("cancelled")
                on_progress(event)

            updated = lab.update(analysis_id, refit=refit, quiet=True, on_progress=progress)
            return {"analysis": updated.id, "summary": updated.summary()}

        job_id = service.jobs.submit(
            "update", "analysis", run, {"analysis": analysis_id, "refit": refit}
        ).id
        if not wait:
            return JSONResponse({"job": job_id}, status_code=202)
        job = service.wait(job_id)
        body = {"job": job_id, "analysis": job["analysis"], **job["summary"]}
        return JSONResponse(jsonable(body))

    @app.get(f"{API}/analyses/{{analysis_id}}/successor")
    def successor(analysis_id: str) -> JSONResponse:
        """The newest analysis updating this one (null when there is none)."""
        return JSONResponse({"analysis": analysis_id, "successor": lab.successor(analysis_id)})

    # not in the OpenAPI schema: a stream that never ends is no request/response pair
    # (schema fuzzers and generated clients would wait on it forever); docs/update.md
    @app.get(f"{API}/events", response_class=StreamingResponse, include_in_schema=False)
    async def events(request: Request, since: int | None = None) -> StreamingResponse:
        """Server-Sent Events of store changes (see the module docstring). Starts with
        what comes next; `Last-Event-ID` or `?since=N` replays the kept events after N."""
        header = request.headers.get("last-event-id")
        last = since if since is not None else None
        if last is None and header and header.strip().isdigit():
            last = int(header)
        if last is None:
            last = hub.last

        async def stream():
            seen = last
            yield f"event: hello\ndata: {json.dumps({'last': seen})}\n\n"
            quiet = 0.0
            while True:
                for number, kind, data in hub.since(seen):
                    yield f"id: {number}\nevent: {kind}\ndata: {json.dumps(jsonable(data))}\n\n"
                    seen, quiet = number, 0.0
                if await request.is_disconnected():
                    return
                if not getattr(service.jobs, "_accepting", True):  # shutting down: end cleanly
                    yield "event: bye\ndata: {}\n\n"
                    return
                await asyncio.sleep(SSE_POLL_S)
                quiet += SSE_POLL_S
                if quiet >= KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    quiet = 0.0

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    return hub
