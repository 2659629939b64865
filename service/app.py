"""`embedlab serve`: the HTTP API over one Lab.

Like Chroma's own FastAPI server, one API object (`Service`) sits behind every route and
library errors become HTTP statuses in one place (`problems.py`). A route parses its
input, calls one Lab method (directly for reads, through a job for ingests and
analyses), and renders the typed result as JSON; none decides anything. Sync routes run
in the server's thread pool, so reads never wait for a running job.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Body, FastAPI, Query, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ..errors import Cancelled, EmbedlabError, Forbidden, InvalidRequest, ProviderError, code_of
from ..lab import Lab
from ..options import (
    ANALYZE,
    COMPARE,
    DOCUMENT_PAGE,
    INGEST,
    NEIGHBOURS_OPTIONS,
    SEED_MAX,
    request_model,
)
from ..progress import CancelToken, Progress
from ..store.selection import parse_globs
from .batch_poller import add_batch_routes, batch_result, cancel_waiting, check_batch_options
from .docs import install_docs
from .jobs import FINAL, WAITING, JobFailed, JobManager
from .problems import Guard, install_problem_handlers, jsonable, status_of

API = "/api/v1"
MAX_BODY = 64 * 1024 * 1024
_K = NEIGHBOURS_OPTIONS["k"]  # the neighbours' k, declared once (options.py)
SSE_POLL_S = 0.1
WAIT_LIMIT_S = 3600.0
GZIP_LOOKUPS_FROM = 64 * 1024  # bytes of a neighbours body from which it is compressed


@dataclass
class ServiceSettings:
    read_only: bool = False
    token: str | None = None
    max_body: int = MAX_BODY
    cors: list[str] = field(default_factory=list)
    analysis_workers: int = 2
    follow: bool = False  # update each space's newest analysis after ingests (updates.py)


# -- request bodies --------------------------------------------------------------------------


class DocumentIn(BaseModel):
    """One document; its other fields (any name, or in "fields") are its own: the scalar
    ones are stored with it (ingest.framing.item_fields), the rest ignored."""

    model_config = ConfigDict(extra="allow")
    id: str = Field(min_length=1, max_length=1000)
    text: str
    label: str | None = None
    source: str | None = Field(None, min_length=1, max_length=200)
    fields: dict[str, str | int | float | bool | None] | None = None


class _EmbeddingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(None, min_length=1, max_length=200)
    task_type: str | None = Field("CLUSTERING", min_length=1, max_length=64)


# provider, dims, batch_size, concurrency, dry_run, prune, replace, batch (Gemini's Batch
# API: the job waits, state "waiting", until collected): declared once in options.INGEST
if TYPE_CHECKING:  # built at run time from the table: a type checker sees any fields
    EmbeddingOptions = Any
else:
    EmbeddingOptions = request_model("EmbeddingOptions", INGEST, _EmbeddingBody)


class IngestRequest(EmbeddingOptions):
    documents: list[DocumentIn] = Field(min_length=1)


class _NeighboursBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | None = None
    vector: list[float] | None = None
    labels: list[str] | str | None = None
    sources: list[str] | str | None = None
    space: str | None = None
    analysis: str | None = None
    spend: bool = True  # false: a text that needs a provider request is refused (403)


class DocumentsRequest(BaseModel):
    """Lab.documents' selection: the service's Lab samples (the same ids as locally)."""

    model_config = ConfigDict(extra="forbid")
    space: str | None = None
    labels: list[str] | str | None = None
    sources: list[str] | str | None = None
    per_class: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0, le=SEED_MAX)
    limit: int | None = Field(None, ge=1)


class SourceClaim(BaseModel):
    """A default source name bound to one input (Lab._claim_source), for a client that
    reads files on its side: two inputs never share a default name's ids."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=1, max_length=200)
    origin: str = Field(min_length=1, max_length=4000)
    dry_run: bool = True


if TYPE_CHECKING:  # built at run time from the table: a type checker sees any fields
    NeighboursRequest = Any
else:
    NeighboursRequest = request_model("NeighboursRequest", NEIGHBOURS_OPTIONS, _NeighboursBody)


class _AnalysisBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: list[str] | str | None = None
    sources: list[str] | str | None = None
    space: str | None = None
    name_clusters: bool = False  # one Gemini call per cluster not named before
    naming_model: str | None = Field(None, min_length=1, max_length=100)


# per_class, seed, limit, algorithm, k, reduce, min_cluster_size, eps, text_weight (k-means
# on vectors + words), cluster_dims (hdbscan on a UMAP reduction): declared once in
# options.ANALYZE, with the CLI's and the library's
if TYPE_CHECKING:  # built at run time from the table: a type checker sees any fields
    AnalysisRequest = Any
else:
    AnalysisRequest = request_model("AnalysisRequest", ANALYZE, _AnalysisBody)


class _ComparisonBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    space_a: str = Field(min_length=1, max_length=300)
    space_b: str = Field(min_length=1, max_length=300)
    labels: list[str] | str | None = None
    sources: list[str] | str | None = None


# per_class, limit, seed, k, neighbours, reduce: options.COMPARE
if TYPE_CHECKING:  # built at run time from the table: a type checker sees any fields
    ComparisonRequest = Any
else:
    ComparisonRequest = request_model("ComparisonRequest", COMPARE, _ComparisonBody)


# -- the API object --------------------------------------------------------------------------


class Service:
    """Everything the routes do, over one Lab and its jobs."""

    warming = False  # embedlab serve's warm-up is reading the spaces into memory

    def __init__(self, lab: Lab, settings: ServiceSettings):
        self.lab = lab
        self.settings = settings
        self.jobs = JobManager(lab.store, settings.analysis_workers)
        self.batch_poller: Any = None  # started by add_batch_routes

    def check_writable(self, what: str) -> None:
        if self.settings.read_only:
            raise Forbidden(f"the service is read-only: {what} is refused")

    # ingest

    def embedding_choice(self, options: dict[str, Any]) -> Any:
        """The space an ingest with `options` writes to. A model or dims the provider
        cannot do is the request's fault: 400 now, not a failed job later."""
        try:
            return self.lab.embedding_choice(
                options.get("provider") or "auto",
                options.get("model"),
                options.get("task_type"),
                options.get("dims"),
            )
        except ProviderError as exc:
            raise InvalidRequest(exc.say("http")) from None

    def ingest_documents(self, request: IngestRequest) -> str:
        self.check_writable("ingest")
        documents = [d.model_dump(exclude_none=True) for d in request.documents]
        self.lab.check_ids(d["id"] for d in documents)  # 400 now, not a failed job later
        options = request.model_dump(exclude={"documents"})
        choice = self.embedding_choice(options)
        check_batch_options(choice, options)
        summary = {
            "documents": len(documents),
            "format": "json",
            **_options_summary(options, choice),
        }

        def run(cancel: CancelToken, on_progress) -> dict[str, Any]:
            return self._ingest(
                lambda **o: self.lab.ingest(documents, source="api", **o),
                options,
                cancel,
                on_progress,
            )

        return self.jobs.submit("ingest", "ingest", run, summary).id

    def ingest_upload(self, body: bytes, kind: str, params: dict[str, Any]) -> str:
        """An NDJSON or CSV body, read here, at once, by the library's own readers (same
        ids as the CLI's `ingest jsonl|csv --name NAME`; a bad upload is a 400 now)."""
        from collections import Counter

        from ..ingest.skips import Skips
        from ..ingest.sources import read_path

        self.check_writable("ingest")
        if not body.strip():
            raise InvalidRequest("the request body is empty; send NDJSON lines or CSV rows")
        options = {k: params[k] for k in EmbeddingOptions.model_fields if k in params}
        EmbeddingOptions(**options)  # validated like the JSON form
        choice = self.embedding_choice(options)
        check_batch_options(choice, options)
        name = params.get("name") or "upload"
        skipped: Counter[str] = Skips()
        encodings: Counter[str] = Counter()
        with tempfile.TemporaryDirectory(prefix="embedlab-upload-") as folder:
            path = os.path.join(folder, f"upload.{'jsonl' if kind == 'jsonl' else 'csv'}")
            with open(path, "wb") as file:
                file.write(body)
            try:
                docs, _source, _origin = read_path(
                    path,
                    params.get("text") or "text",
                    params.get("id"),
                    params.get("label"),
                    "*",
                    name,
                    kind,
                    skipped,
                    encodings=encodings,
                    defaults=True,  # the JSON body's field names, unless named
                )
            except InvalidRequest as exc:
                raise InvalidRequest(exc.say("http").replace(path, "the upload")) from None
        if not docs:
            raise InvalidRequest(f"the upload holds no document ({dict(skipped)} skipped)")
        summary = {"documents": len(docs), "format": kind, "name": name}
        summary.update(_options_summary(options, choice))

        def run(cancel: CancelToken, on_progress) -> dict[str, Any]:
            result = self._ingest(
                lambda **o: self.lab.ingest_documents(docs, skipped=skipped, **o),
                options,
                cancel,
                on_progress,
            )
            result["report"]["encodings"] = dict(encodings)  # the upload was not UTF-8
            return result

        return self.jobs.submit("ingest", "ingest", run, summary).id

    def _ingest(self, call, options: dict[str, Any], cancel, on_progress) -> dict[str, Any]:
        from .. import IngestCancelled, IngestError  # the package's own names

        try:
            report = call(cancel=cancel, on_progress=on_progress, quiet=True, **options)
        except IngestCancelled as exc:
            shutdown = cancel.reason == "shutdown"
            why = "the service was stopped" if shutdown else "cancelled"
            raise JobFailed(
                f"{why}: what was embedded before is saved; submit again to finish",
                state="interrupted" if shutdown else "cancelled",
                report=exc.report.to_dict(self.lab.prices),
            ) from None
        except IngestError as exc:
            cause = exc.__cause__
            said = cause.say("http") if isinstance(cause, EmbedlabError) else str(exc)
            raise JobFailed(
                f"{said} (everything embedded so far is saved; submit again to resume)",
                status=status_of(cause) if isinstance(cause, EmbedlabError) else None,
                code=code_of(cause) if isinstance(cause, EmbedlabError) else None,
                report=exc.report.to_dict(self.lab.prices),
            ) from None
        if getattr(report, "batch", False) and not report.dry_run:
            return batch_result(self.lab, report)
        return {"report": report.to_dict(self.lab.prices)}

    # analyses

    def submit_analysis(self, request: AnalysisRequest) -> str:
        self.check_writable("analysis")
        arguments = request.model_dump()
        self.lab.check_analysis(  # a wrong space or options that do not go together: a 4xx now
            arguments["space"], request.algorithm, request.k, request.reduce, request.seed,
            request.min_cluster_size, request.eps, request.text_weight,
            request.name_clusters, request.naming_model, request.cluster_dims,
        )  # fmt: skip

        def run(cancel: CancelToken, on_progress) -> dict[str, Any]:
            def progress(event: Progress) -> None:
                if cancel.cancelled:  # an analysis stops at its next stage
                    raise Cancelled("cancelled")
                on_progress(event)

            analysis = self.lab.analyze(quiet=True, on_progress=progress, **arguments)
            result: dict[str, Any] = {"analysis": analysis.id, "summary": analysis.summary()}
            if analysis.reused:  # identical to a stored analysis: nothing new was stored
                result["reused"] = True
                result["notes"] = analysis.notes
                result["naming"] = analysis.naming  # this run's counts: nothing requested
            return result

        return self.jobs.submit("analysis", "analysis", run, arguments).id

    # comparisons

    def submit_comparison(self, request: ComparisonRequest) -> str:
        self.check_writable("comparison")
        arguments = request.model_dump()
        self.lab.check_comparison(  # a wrong space or option is a 4xx now, not a failed job
            request.space_a, request.space_b, request.k, request.neighbours, request.reduce,
            request.seed,
        )  # fmt: skip

        def run(cancel: CancelToken, on_progress) -> dict[str, Any]:
            def progress(event: Progress) -> None:
                if cancel.cancelled:  # a comparison stops at its next stage
                    raise Cancelled("cancelled")
                on_progress(event)

            comparison = self.lab.compare(quiet=True, on_progress=progress, **arguments)
            return {"comparison": comparison.id, "documents": len(comparison.ids)}

        return self.jobs.submit("comparison", "analysis", run, arguments).id

    def wait(self, job_id: str) -> dict[str, Any]:
        job = self.jobs.wait(job_id, WAIT_LIMIT_S)
        if job["state"] in ("done", WAITING):  # waiting: a batch ingest, submitted
            return job
        error = job.get("error") or job["state"]
        cause = self.jobs.get(job_id).exception
        if isinstance(cause, EmbedlabError) and not isinstance(cause, JobFailed):
            cause.job = job  # type: ignore[attr-defined]  # the body carries the job
            raise cause
        if job["state"] in ("cancelled", "interrupted"):
            raise JobCancelled(error, job)
        raise JobError(error, job, getattr(cause, "status", None))


class JobError(EmbedlabError):
    """A job waited for (?wait=true) failed; the body carries the job (its report)."""

    def __init__(self, message: str, job: dict[str, Any], status: int | None = None):
        super().__init__(message)
        self.job = job
        self.status = status or (409 if isinstance(self, Cancelled) else 502)
        self.code = job.get("code") or code_of(self)  # the cause's: the client rebuilds it


class JobCancelled(JobError, Cancelled):
    pass


def _options_summary(options: dict[str, Any], choice: Any) -> dict[str, Any]:
    """The options a job records, its task type the chosen space's: "none" for the local
    model and own vectors (they have no task types), whatever the request's default."""
    summary = {k: v for k, v in options.items() if v is not None}
    if "task_type" in summary or choice.space.task_type == "none":
        summary["task_type"] = choice.space.task_type
    return summary


def _split(value: str | None) -> list[str] | None:
    return parse_globs(value)


def _neighbours_response(hits: list[Any], requests: int, space: Any) -> Response:
    """The neighbours body straight from the hits: no DataFrame, no jsonable walk
    (similarities are finite, clusters ints or None), one json.dumps."""
    rows = [h.row() for h in hits]
    body = {"neighbours": rows, "requests": requests, "space": space.describe()}
    content = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    payload = content.encode("utf-8")
    # gzip took 1.7 ms for the ~15 KB of ten posts (as long as the search): a lookup's
    # body is sent as it is unless it is large (k in the hundreds)
    headers = {"Content-Encoding": "identity"} if len(payload) < GZIP_LOOKUPS_FROM else None
    return Response(payload, media_type="application/json", headers=headers)


def _space_body(space: Any, documents: int | None = None) -> dict[str, Any]:
    body = {
        "name": space.name,
        **space.to_dict(),
        "description": space.describe(),
    }
    if documents is not None:
        body["documents"] = documents
    return body


# -- the app ---------------------------------------------------------------------------------

UPLOAD_TYPES = {
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/ndjson": "jsonl",
    "text/csv": "csv",
}


def create_app(lab: Lab, settings: ServiceSettings | None = None) -> FastAPI:
    """The FastAPI app over `lab`; `app.state.service` is the API object."""
    settings = settings or ServiceSettings()
    service = Service(lab, settings)
    app = FastAPI(
        title="embedlab",
        version="1",
        description="Embedding cache, neighbours and cluster analyses over one store.",
        docs_url=None,  # served from the package instead (service/docs.py): no CDN
        redoc_url=None,
    )
    app.state.service = service
    install_problem_handlers(app)
    install_docs(app)
    app.add_middleware(Guard, token=settings.token, max_body=settings.max_body)
    app.add_middleware(GZipMiddleware, minimum_size=2000, compresslevel=5)
    from .readers import Readers, ReadersMiddleware

    app.state.readers = Readers()  # the requests in flight: an ingest's writes make room
    app.add_middleware(ReadersMiddleware, readers=app.state.readers)
    if settings.cors:  # outermost: a browser's preflight carries no token
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

    from .pages import add_map_routes

    add_map_routes(app, lab, settings.read_only)
    add_batch_routes(app, service, settings)
    from .updates import add_update_routes

    add_update_routes(app, service, lab, settings.follow)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness; `warming` is true while `embedlab serve` reads the spaces into memory."""
        return {"status": "ok", "warming": service.warming}

    @app.get(f"{API}/stats")
    def stats() -> JSONResponse:
        return JSONResponse(jsonable(lab.stats()))

    @app.get(f"{API}/spaces")
    def spaces() -> JSONResponse:
        body = [_space_body(space, n) for space, n in lab.space_sizes().items()]
        return JSONResponse({"spaces": body})

    @app.delete(f"{API}/spaces/{{space:path}}")
    def delete_space(space: str) -> JSONResponse:
        """Delete a space (`provider:model:dims`) with its documents and analyses."""
        service.check_writable("deleting a space")
        gone = lab.delete_space(space)
        app.state.maps.forget()
        return JSONResponse(gone)

    @app.get(f"{API}/embedding-choice")
    def embedding_choice(
        provider: Literal["auto", "gemini", "local"] = "auto",
        model: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        task_type: Annotated[str | None, Query(min_length=1, max_length=64)] = "CLUSTERING",
        dims: Annotated[int | None, Query(ge=1, le=65536)] = None,
    ) -> JSONResponse:
        options = dict(provider=provider, model=model, task_type=task_type, dims=dims)
        choice = service.embedding_choice(options)
        return JSONResponse({"space": _space_body(choice.space), "reason": choice.reason})

    # ingest -----------------------------------------------------------------------------

    @app.post(f"{API}/sources/claim", include_in_schema=False)
    def claim_source(request: Annotated[SourceClaim, Body()]) -> JSONResponse:
        if not request.dry_run:
            service.check_writable("ingest")
        lab._claim_source(request.source, request.origin, request.dry_run)
        return JSONResponse({"source": request.source, "origin": request.origin})

    @app.post(
        f"{API}/ingest",
        status_code=202,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/IngestRequest"}},
                    "application/x-ndjson": {"schema": {"type": "string"}},
                    "text/csv": {"schema": {"type": "string"}},
                },
            }
        },
    )
    async def ingest(
        request: Request,
        wait: bool = False,
        name: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        text: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        id: Annotated[str | None, Query(min_length=1, max_length=200)] = None,  # noqa: A002
        label: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        provider: Literal["auto", "gemini", "local"] = "auto",
        model: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        task_type: Annotated[str | None, Query(min_length=1, max_length=64)] = "CLUSTERING",
        dims: Annotated[int | None, Query(ge=1, le=65536)] = None,
        batch_size: Annotated[int | None, Query(ge=1, le=10000)] = None,
        concurrency: Annotated[int | None, Query(ge=1, le=64)] = None,
        prune: bool = False,
        replace: bool = False,
        batch: bool = False,
    ) -> JSONResponse:
        """Embed documents: a JSON body `{"documents": [...]}`, or an NDJSON or CSV
        upload (`?name=` names it in ids; `?text=&id=&label=` pick its fields, by default
        those of the JSON body: "text", and "id" and "label" where the upload has them)."""
        service.check_writable("ingest")
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        body = await request.body()
        if media in UPLOAD_TYPES:
            params: dict[str, Any] = dict(name=name, text=text, id=id, label=label)
            params.update(provider=provider)
            params.update(model=model, task_type=task_type, dims=dims)
            params.update(batch_size=batch_size, concurrency=concurrency, prune=prune)
            params.update(replace=replace)
            params.update(batch=batch)
            job_id = await asyncio.to_thread(
                service.ingest_upload, body, UPLOAD_TYPES[media], params
            )
        elif media in ("application/json", ""):
            try:
                data = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise InvalidRequest(
                    f'the body is not JSON ({exc}); send {{"documents": [...]}}'
                ) from None
            parsed = IngestRequest.model_validate(data)
            job_id = await asyncio.to_thread(service.ingest_documents, parsed)
        else:
            raise UnsupportedMedia(
                f"content type {media!r} is not accepted; send application/json, "
                "application/x-ndjson or text/csv"
            )
        if not wait:
            return JSONResponse({"job": job_id}, status_code=202)
        job = await asyncio.to_thread(service.wait, job_id)
        return JSONResponse(jsonable({"job": job_id, **job["report"]}))

    # jobs -------------------------------------------------------------------------------

    @app.get(f"{API}/jobs")
    def jobs() -> JSONResponse:
        return JSONResponse(jsonable({"jobs": service.jobs.list()}))

    @app.get(f"{API}/jobs/{{job_id}}")
    def job(job_id: str) -> JSONResponse:
        return JSONResponse(jsonable(service.jobs.snapshot(job_id)[0]))

    @app.delete(f"{API}/jobs/{{job_id}}")
    def cancel_job(job_id: str) -> JSONResponse:
        if service.jobs.get(job_id).state == WAITING:  # a batch ingest: its batch jobs
            return JSONResponse(jsonable(cancel_waiting(service, job_id)), status_code=202)
        service.check_writable("cancelling a job")
        return JSONResponse(jsonable(service.jobs.cancel(job_id)), status_code=202)

    @app.get(
        f"{API}/jobs/{{job_id}}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def job_events(job_id: str, request: Request) -> StreamingResponse:
        """Server-Sent Events: `progress` on every change, then one `end` event."""
        service.jobs.get(job_id)  # 404 before the stream starts

        async def stream():
            seen = -1
            while True:
                snapshot, version = service.jobs.snapshot(job_id)
                final = snapshot["state"] in FINAL or snapshot["state"] == WAITING
                if version != seen or final:
                    data = json.dumps(jsonable(snapshot))
                    yield f"event: {'end' if final else 'progress'}\ndata: {data}\n\n"
                    seen = version
                if final or await request.is_disconnected():
                    return
                await asyncio.sleep(SSE_POLL_S)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    # documents --------------------------------------------------------------------------

    @app.get(f"{API}/documents")
    def documents(
        labels: str | None = None,
        sources: str | None = None,
        space: str | None = None,
        limit: int = DOCUMENT_PAGE["limit"].default,
        offset: int = DOCUMENT_PAGE["offset"].default,
    ) -> JSONResponse:
        # the limits are the library's (options.DOCUMENT_PAGE): its message, a 400
        total, page = lab.document_page(_split(labels), _split(sources), offset, limit, space)
        rows = page.drop(columns=["content_hash"]).to_dict(orient="records")
        return JSONResponse(
            jsonable({"documents": rows, "total": total, "offset": offset, "limit": limit})
        )

    @app.delete(f"{API}/documents")
    def delete_documents(
        ids: Annotated[list[str] | None, Query()] = None,
        sources: str | None = None,
        labels: str | None = None,
        dry_run: bool = False,
        space: str | None = None,
    ) -> JSONResponse:
        """Remove documents by id (repeat `ids`) or by source/label globs; `not_found`
        names the ids the store does not hold."""
        if not dry_run:
            service.check_writable("deleting documents")
        removed = lab.delete(
            ids=ids, sources=_split(sources), labels=_split(labels), space=space, dry_run=dry_run
        )
        if removed and not dry_run:
            app.state.maps.forget()  # their notes now count the deleted documents
        return JSONResponse(
            {"removed": removed, "not_found": removed.not_found, "dry_run": dry_run}
        )

    @app.get(f"{API}/export")
    def export(
        labels: str | None = None, sources: str | None = None, space: str | None = None
    ) -> Response:
        """Lab.export as one parquet file: ids, labels, sources, texts, float32 vectors
        (the CLI's `export --server` writes it in any format)."""
        with tempfile.TemporaryDirectory(prefix="embedlab-export-") as folder:
            path = os.path.join(folder, "export.parquet")
            lab.export(path, "parquet", labels=_split(labels), sources=_split(sources), space=space)
            with open(path, "rb") as file:
                data = file.read()
        return Response(data, media_type="application/vnd.apache.parquet")

    @app.post(f"{API}/documents/select")
    def select_documents(request: Annotated[DocumentsRequest, Body()]) -> JSONResponse:
        """Lab.documents: the selection (sampled by per_class/seed/limit), id order."""
        table = lab.documents(**request.model_dump())
        return JSONResponse(jsonable({"documents": table.to_dict(orient="records")}))

    @app.get(f"{API}/documents/{{doc_id:path}}")
    def document(doc_id: str, space: str | None = None) -> JSONResponse:
        return JSONResponse(jsonable(lab.document(doc_id, space)))

    # neighbours -------------------------------------------------------------------------

    @app.get(f"{API}/neighbours")
    def neighbours_by_id(
        id: Annotated[str, Query(min_length=1)],  # noqa: A002
        k: Annotated[int, Query(ge=_K.minimum, le=_K.maximum)] = _K.default,
        labels: str | None = None,
        sources: str | None = None,
        space: str | None = None,
        analysis: str | None = None,
    ) -> Response:
        found = lab.neighbour_hits(
            id,
            k=k,
            labels=_split(labels),
            sources=_split(sources),
            space=space,
            analysis=analysis,
        )
        return _neighbours_response(*found)

    @app.post(f"{API}/neighbours")
    def neighbours(request: Annotated[NeighboursRequest, Body()]) -> Response:
        found = lab.neighbour_hits(
            text=request.text,
            vector=request.vector,
            k=request.k,
            labels=request.labels,
            sources=request.sources,
            space=request.space,
            analysis=request.analysis,
            spend=request.spend and not settings.read_only,
        )
        return _neighbours_response(*found)

    # analyses ---------------------------------------------------------------------------

    @app.post(f"{API}/analyses", status_code=202)
    def analyze(request: Annotated[AnalysisRequest, Body()], wait: bool = False) -> JSONResponse:
        job_id = service.submit_analysis(request)
        if not wait:
            return JSONResponse({"job": job_id}, status_code=202)
        job = service.wait(job_id)
        return JSONResponse(jsonable({"job": job_id, "analysis": job["analysis"]}))

    @app.get(f"{API}/analyses")
    def analyses(space: str | None = None) -> JSONResponse:
        table = lab.analyses(space)
        return JSONResponse(jsonable({"analyses": table.to_dict(orient="records")}))

    @app.get(f"{API}/analyses/{{analysis_id}}")
    def analysis(analysis_id: str) -> JSONResponse:
        found = lab.analysis(analysis_id)
        body = found.summary()
        body.update(
            metrics=found.metrics,
            clusters=found.clusters,
            notes=found.notes,
            map_cached=found.map_cached,
            timings=found.timings,
        )
        return JSONResponse(jsonable(body))

    @app.get(f"{API}/analyses/{{analysis_id}}/points")
    def points(
        analysis_id: str,
        format: Literal["json", "csv", "arrow", "binary"] = "json",  # noqa: A002
    ) -> Response:
        if format == "binary":  # what the map reads: see GET .../map for the layout
            body = app.state.maps.get(analysis_id)[1]
            return Response(body, media_type="application/octet-stream")
        frame = lab.analysis(analysis_id).points
        if format == "csv":
            return Response(frame.to_csv(index=False), media_type="text/csv")
        if format == "arrow":
            return Response(_arrow(frame), media_type="application/vnd.apache.arrow.stream")
        columns = {
            "id": frame["id"].tolist(),
            "x": frame["x"].astype(float).tolist(),
            "y": frame["y"].astype(float).tolist(),
            "cluster": frame["cluster"].astype(int).tolist(),
            "label": frame["label"].tolist(),
        }
        return JSONResponse(jsonable(columns))

    @app.get(f"{API}/analyses/{{analysis_id}}/record", include_in_schema=False)
    def analysis_record(analysis_id: str) -> Response:
        """The stored analysis as the library keeps it (the CLI's --server mode writes its
        report files from it)."""
        import base64

        head, payload = lab.analysis(analysis_id).to_record()
        body = {"head": head, "payload": base64.b64encode(payload).decode("ascii")}
        return JSONResponse(jsonable(body))

    @app.get(f"{API}/analyses/{{analysis_id}}/map-data", include_in_schema=False)
    def analysis_map_data(analysis_id: str) -> JSONResponse:
        """What a saved map.html carries beyond the record: the texts and each point's
        neighbours (a client saving the analysis with html writes the same file)."""
        texts, neighbours = lab.analysis(analysis_id).map_data()
        positions, similarities = neighbours if neighbours is not None else (None, None)
        body = {"texts": texts, "neighbours": positions, "similarities": similarities}
        return JSONResponse(jsonable(body))

    @app.delete(f"{API}/analyses/{{analysis_id}}")
    def delete_analysis(analysis_id: str) -> JSONResponse:
        service.check_writable("deleting an analysis")
        lab.delete_analysis(analysis_id)
        app.state.maps.forget(analysis_id)
        return JSONResponse({"deleted": analysis_id})

    # comparisons ------------------------------------------------------------------------

    @app.post(f"{API}/comparisons", status_code=202)
    def compare(request: Annotated[ComparisonRequest, Body()], wait: bool = False) -> JSONResponse:
        """Compare two spaces on the documents both hold, as a job (`?wait=true`: 200
        when it is done)."""
        job_id = service.submit_comparison(request)
        if not wait:
            return JSONResponse({"job": job_id}, status_code=202)
        job = service.wait(job_id)
        return JSONResponse(jsonable({"job": job_id, "comparison": job["comparison"]}))

    @app.get(f"{API}/comparisons")
    def comparisons() -> JSONResponse:
        """Stored comparisons, newest first."""
        table = lab.comparisons()
        return JSONResponse(jsonable({"comparisons": table.to_dict(orient="records")}))

    @app.get(f"{API}/comparisons/{{comparison_id}}")
    def comparison(comparison_id: str) -> JSONResponse:
        """comparison.json's content, and per document both maps (B aligned onto A),
        both clusters and the Jaccard of its neighbourhoods (columns)."""
        found = lab.comparison(comparison_id)
        points = {
            "id": found.ids,
            "label": found.labels,
            "jaccard": found.jaccard,
            "a": {
                "x": found.coords_a[:, 0],
                "y": found.coords_a[:, 1],
                "cluster": found.clusters_a,
            },
            "b": {
                "x": found.coords_b[:, 0],
                "y": found.coords_b[:, 1],
                "cluster": found.clusters_b,
            },
        }
        body = {"id": found.id, "created": found.created, **found.to_dict(), "points": points}
        return JSONResponse(jsonable(body))

    @app.get(f"{API}/comparisons/{{comparison_id}}/record", include_in_schema=False)
    def comparison_record(comparison_id: str) -> Response:
        """The stored comparison as the library keeps it (for the CLI's --server mode)."""
        import base64

        head, payload = lab.comparison(comparison_id).to_record()
        body = {"head": head, "payload": base64.b64encode(payload).decode("ascii")}
        return JSONResponse(jsonable(body))

    # costs ------------------------------------------------------------------------------

    @app.get(f"{API}/costs")
    def costs() -> JSONResponse:
        rows = lab.costs().to_dict(orient="records")
        total = {
            key: sum(r[key] for r in rows)
            for key in ("requests", "texts_embedded", "estimated_tokens", "estimated_usd")
        }
        total["estimated_usd_saved"] = sum(r["estimated_usd_saved"] for r in rows)
        total["texts_batched"] = sum(r["texts_batched"] for r in rows)
        return JSONResponse(
            jsonable(
                {
                    "estimated": True,
                    "note": "tokens are estimated at 4 characters each; dollars at list prices",
                    "spaces": rows,
                    "total": total,
                }
            )
        )

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


class UnsupportedMedia(InvalidRequest):
    """A body in a format the route does not read (415)."""

    status = 415


def _arrow(frame: Any) -> bytes:
    try:
        import pyarrow as pa
    except ImportError:
        raise InvalidRequest(
            "format=arrow needs pyarrow on the server (pip install pyarrow); "
            "use format=json or format=csv"
        ) from None
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The generated schema plus the ingest body's models (the route reads it by hand,
    because the same route also takes NDJSON and CSV uploads)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        model_schema = IngestRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components["IngestRequest"] = model_schema
        app.openapi_schema = schema
    return app.openapi_schema
