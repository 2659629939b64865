"""A running `embedlab serve`, used through the same calls as a `Lab`.

The CLI's `--server URL` mode builds a `RemoteLab` instead of opening the store, calls
the same methods and prints the same output. Documents are read from files here, by
the library's own readers (so ids are the same as a local ingest), and sent as JSON;
the service does the embedding, the analysis and the bookkeeping.
"""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import (
    Cancelled,
    EmbedlabError,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProviderError,
    StoreError,
)
from .inputs import Inputs
from .progress import Progress, ProgressCallback
from .store import Document, Space

if TYPE_CHECKING:
    import pandas as pd

    from .analyze.analysis import Analysis
    from .analyze.comparison import Comparison
    from .ingest.pipeline import IngestReport

API = "/api/v1"


class ServiceError(EmbedlabError):
    """The service answered with an error this client has no closer name for."""


def _error(status: int, detail: str) -> EmbedlabError:
    if status == 401:
        return ServiceError(f"{detail} (set $EMBEDLAB_TOKEN to the service's token)")
    kind: type[EmbedlabError] = {
        400: InvalidRequest,
        403: Forbidden,
        404: NotFound,
        409: Cancelled,
        413: InvalidRequest,
        415: InvalidRequest,
        422: InvalidRequest,
        502: ProviderError,
        503: StoreError,
    }.get(status, ServiceError)
    return kind(detail)


class RemoteLab(Inputs):
    """The Lab calls the CLI makes, answered by a service over HTTP."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 600.0):
        import httpx

        self.url = url.rstrip("/")
        token = token if token is not None else os.environ.get("EMBEDLAB_TOKEN") or None
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.quiet = True

    @property
    def location(self) -> str:
        return self.url

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP ----------------------------------------------------------------------------

    def _request(self, method: str, path: str, raw: bool = False, **kwargs: Any) -> Any:
        """The route's JSON (or, with raw, its bytes); an error status raises the
        library's own exception for it."""
        import httpx

        try:
            response = self._http.request(method, f"{API}{path}", **kwargs)
        except httpx.TransportError as exc:
            raise StoreError(
                f"no embedlab service answers at {self.url} ({exc}); start one with "
                "`embedlab serve`, or drop --server to open the store directly"
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.text
            except ValueError:
                detail = response.text or response.reason_phrase
            raise _error(response.status_code, str(detail))
        return response.content if raw else response.json()

    def _follow(self, job_id: str, on_progress: ProgressCallback | None) -> dict[str, Any]:
        """The job's final state, passing its progress events on as they come."""
        import httpx

        try:
            with self._http.stream("GET", f"{API}/jobs/{job_id}/events") as response:
                for event, data in _sse(response.iter_lines()):
                    if event == "end":
                        return data
                    progress = data.get("progress") or {}
                    if on_progress is not None and progress.get("total") is not None:
                        on_progress(
                            Progress(
                                progress.get("task", data["kind"]),
                                int(progress.get("done", 0)),
                                int(progress["total"]),
                                str(progress.get("status", "")),
                            )
                        )
        except httpx.TransportError:
            pass  # the stream broke: ask for the job's state instead
        return self._request("GET", f"/jobs/{job_id}")

    # -- reading -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/stats")

    def spaces(self) -> list[Space]:
        return [
            Space(s["provider"], s["model"], s["task_type"], s["dims"])
            for s in self._request("GET", "/spaces")["spaces"]
        ]

    def space(self, space: Space | str | None = None) -> Space:
        from .analyze.select import resolve_space_spec

        return resolve_space_spec(self.spaces(), self.location, space)

    def space_sizes(self) -> dict[Space, int]:
        return {
            Space(s["provider"], s["model"], s["task_type"], s["dims"]): s["documents"]
            for s in self._request("GET", "/spaces")["spaces"]
        }

    def delete_space(self, space: Space | str) -> dict[str, Any]:
        name = f"{space.provider}:{space.model}:{space.dims}" if isinstance(space, Space) else space
        return self._request("DELETE", f"/spaces/{urllib.parse.quote(name, safe=':')}")

    def neighbours(
        self,
        id: str | None = None,  # noqa: A002
        *,
        text: str | None = None,
        vector: Sequence[float] | None = None,
        k: int = 10,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        space: Space | str | None = None,
        analysis: str | None = None,
    ) -> pd.DataFrame:
        import pandas as pd

        spec = _space_spec(space)
        if id is not None:
            params = {"id": id, "k": k, "space": spec, "analysis": analysis}
            params.update(labels=_joined(labels), sources=_joined(sources))
            body = self._request("GET", "/neighbours", params=_present(params))
        else:
            payload: dict[str, Any] = {"text": text, "k": k, "labels": labels, "sources": sources}
            payload.update(space=spec, analysis=analysis)
            if vector is not None:
                payload["vector"] = [float(v) for v in vector]
            body = self._request("POST", "/neighbours", json=_present(payload))
        columns = ["rank", "id", "similarity", "label", "cluster", "text"]
        frame = pd.DataFrame(body["neighbours"], columns=columns)
        frame.attrs["requests"] = body["requests"]
        frame.attrs["space"] = body["space"]
        return frame

    def analyses(self, space: Space | str | None = None) -> pd.DataFrame:
        import pandas as pd

        rows = self._request("GET", "/analyses", params=_present({"space": _space_spec(space)}))
        columns = ["id", "created", "space", "documents", "algorithm", "k", "reduce", "seed"]
        columns += ["labels", "sources", "hungarian_accuracy", "ari", "nmi", "silhouette"]
        return pd.DataFrame(rows["analyses"], columns=columns)

    def analysis(self, analysis_id: str) -> Analysis:
        from .analyze.analysis import Analysis

        found = self._request("GET", f"/analyses/{analysis_id}/record")
        analysis = Analysis.from_record(found["head"], base64.b64decode(found["payload"]))
        return analysis

    def delete_analysis(self, analysis_id: str) -> None:
        self._request("DELETE", f"/analyses/{analysis_id}")

    def costs(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self._request("GET", "/costs")["spaces"])

    def documents(
        self,
        space: Space | str | None = None,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        limit: int | None = None,
        **_ignored: Any,
    ) -> pd.DataFrame:
        import pandas as pd

        rows, offset = [], 0
        params = {
            "space": _space_spec(space),
            "labels": _joined(labels),
            "sources": _joined(sources),
        }
        while True:
            page = self._request(
                "GET", "/documents", params=_present({**params, "offset": offset, "limit": 1000})
            )
            rows += page["documents"]
            offset += len(page["documents"])
            if not page["documents"] or offset >= page["total"]:
                break
        if limit is not None and len(rows) > limit:  # the same seeded sample as Lab.documents
            from .store.sampling import sample_rank

            keep = set(sorted((r["id"] for r in rows), key=lambda i: sample_rank(i, 0))[:limit])
            rows = [r for r in rows if r["id"] in keep]
        frame = pd.DataFrame(rows, columns=["id", "label", "source", "text", "chars"])
        frame.insert(4, "content_hash", None)
        return frame

    def delete(
        self,
        ids: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        labels: Sequence[str] | str | None = None,
        dry_run: bool = False,
        **_ignored: Any,
    ) -> list[str]:
        params: dict[str, Any] = _present(
            {"sources": _joined(sources), "labels": _joined(labels), "dry_run": dry_run}
        )
        if ids:
            params["ids"] = [ids] if isinstance(ids, str) else list(ids)
        return self._request("DELETE", "/documents", params=params)["removed"]

    def export(self, *args: Any, **kwargs: Any) -> int:
        raise InvalidRequest(
            f"export reads vectors from the store itself: stop the service at {self.url}, "
            "then run `embedlab --store PATH export ...`"
        )

    def repair(self, check: bool = True) -> list:
        raise InvalidRequest(
            f"repair works on the store itself: stop the service at {self.url}, then run "
            "`embedlab --store PATH repair`"
        )

    # -- ingest --------------------------------------------------------------------------

    def embedding_choice(
        self,
        provider: str = "auto",
        model: str | None = None,
        task_type: str | None = "CLUSTERING",
        dims: int | None = None,
    ) -> Any:
        from .lab import EmbeddingChoice

        params = _present({"provider": provider, "model": model, "task_type": task_type})
        if dims is not None:
            params["dims"] = dims
        found = self._request("GET", "/embedding-choice", params=params)
        s = found["space"]
        space = Space(s["provider"], s["model"], s["task_type"], s["dims"])
        return EmbeddingChoice(space, f"{found['reason']}, on the service")

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
        dry_run: bool = False,
        on_progress: ProgressCallback | None = None,
        started: float | None = None,
        prune: bool = False,
        replace: bool = False,
        batch: bool = False,
        **_local_only: Any,  # max_attempts, timeout: the service's own settings apply
    ) -> IngestReport:
        from .ingest.pipeline import IngestCancelled, IngestError

        started = time.monotonic() if started is None else started
        body: dict[str, Any] = {
            "documents": [
                _present({"id": d.id, "text": d.text, "label": d.label, "source": d.source})
                for d in documents
            ],
            "provider": provider,
            "dry_run": dry_run,
            "prune": prune,
            "replace": replace,
        }
        body.update(_present({"model": model, "task_type": task_type, "dims": dims}))
        body.update(_present({"batch_size": batch_size, "concurrency": concurrency}))
        if batch:
            body["batch"] = True
        if not body["documents"]:
            raise InvalidRequest("no documents to ingest")
        job_id = self._request("POST", "/ingest", json=body)["job"]
        try:
            job = self._follow(job_id, on_progress)
        except KeyboardInterrupt:
            self._request("DELETE", f"/jobs/{job_id}")
            job = self._request("GET", f"/jobs/{job_id}")
            report = _report(job, skipped, started)
            raise IngestCancelled("interrupted", report, interrupted=True) from None
        if batch and job["state"] in ("waiting", "done") and job.get("report"):
            return _batch_report(job, skipped, started)  # submitted; the service collects
        report = _report(job, skipped, started)
        if job["state"] == "done":
            return report
        if job["state"] in ("cancelled", "interrupted"):
            raise IngestCancelled(job.get("error") or job["state"], report)
        raise IngestError(job.get("error") or "the ingest failed", report)

    # -- batches -------------------------------------------------------------------------

    def batches(self, refresh: bool = False) -> pd.DataFrame:
        """The service's Batch API jobs (the same columns as `Lab.batches`)."""
        import pandas as pd

        from .lab_batches import BATCH_COLUMNS

        params = {"refresh": "true"} if refresh else None
        rows = self._request("GET", "/batches", params=params)["batches"]
        return pd.DataFrame(rows, columns=BATCH_COLUMNS)

    def collect(
        self,
        wait: bool | float = False,
        poll: float | None = None,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        cancel: Any = None,
    ) -> Any:
        """Have the service collect what finished now; with `wait`, again (with backoff)
        until no job is open or the time is up. The service's poller collects on its own."""
        from .ingest.batch import POLL_FACTOR, POLL_MAX_S, CollectReport
        from .lab_batches import poll_seconds

        limit = float("inf") if wait is True else float(wait or 0)
        started, pause, total = time.monotonic(), poll_seconds(poll), CollectReport()
        try:
            while True:
                got = CollectReport.from_dict(self._request("POST", "/batches/collect"))
                for name in ("collected", "written", "failed_lines", "released"):
                    setattr(total, name, getattr(total, name) + getattr(got, name))
                total.lines += got.lines
                total.checked, total.pending = got.checked, got.pending
                rows = self.batches()
                left = int(rows["state"].isin(["intent", "pending", "running", "succeeded"]).sum())
                if on_progress is not None:
                    on_progress(Progress("batches", len(rows) - left, len(rows), f"{left} open"))
                elapsed = time.monotonic() - started
                if left == 0 or elapsed >= limit:
                    break
                if cancel is not None and cancel.sleep(min(pause, limit - elapsed)):
                    total.interrupted = True
                    break
                if cancel is None:
                    time.sleep(min(pause, limit - elapsed))
                pause = min(pause * POLL_FACTOR, POLL_MAX_S)
        except KeyboardInterrupt:
            total.interrupted = True
        total.seconds = time.monotonic() - started
        return total

    def cancel_batch(self, job: str) -> dict[str, Any]:
        """Ask the service to cancel one open batch job (its name or key)."""
        return self._request("DELETE", f"/batches/{job}")

    # -- analysis ------------------------------------------------------------------------

    def analyze(
        self,
        space: Space | str | None = None,
        out: str | os.PathLike[str] | None = None,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        **arguments: Any,
    ) -> Analysis:
        html = bool(arguments.pop("html", False))
        body = _present({**arguments, "space": _space_spec(space)})
        for key in ("labels", "sources"):
            if isinstance(body.get(key), str):
                body[key] = [g.strip() for g in body[key].split(",") if g.strip()]
        job_id = self._request("POST", "/analyses", json=body)["job"]
        job = self._follow(job_id, on_progress)
        if job["state"] != "done":
            error = job.get("error") or job["state"]
            raise (Cancelled if job["state"] != "failed" else InvalidRequest)(error)
        analysis = self.analysis(job["analysis"])
        if out is not None:
            analysis.save(out)
            if html:  # the service reads texts and vectors; the file comes back whole
                page = self._request("GET", f"/analyses/{analysis.id}/map.html", raw=True)
                Path(out, "map.html").write_bytes(page)
                analysis.files.append("map.html")
        return analysis

    def update(
        self,
        analysis: Analysis | str,
        refit: bool = False,
        out: str | os.PathLike[str] | None = None,
        html: bool = False,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Analysis:
        """Lab.update through the service (POST /analyses/{id}/update, a job)."""
        analysis_id = analysis if isinstance(analysis, str) else analysis.id
        path = f"/analyses/{analysis_id}/update"
        job_id = self._request("POST", path, json={"refit": refit})["job"]
        job = self._follow(job_id, on_progress)
        if job["state"] != "done":
            error = job.get("error") or job["state"]
            raise (Cancelled if job["state"] != "failed" else InvalidRequest)(error)
        updated = self.analysis(job["analysis"])
        if out is not None:
            updated.save(out)
            if html:
                page = self._request("GET", f"/analyses/{updated.id}/map.html", raw=True)
                Path(out, "map.html").write_bytes(page)
                updated.files.append("map.html")
        return updated

    # -- comparisons ---------------------------------------------------------------------

    def compare(
        self,
        space_a: Space | str,
        space_b: Space | str,
        out: str | os.PathLike[str] | None = None,
        quiet: bool | None = None,
        on_progress: ProgressCallback | None = None,
        **arguments: Any,
    ) -> Comparison:
        body = _present(
            {**arguments, "space_a": _space_spec(space_a), "space_b": _space_spec(space_b)}
        )
        for key in ("labels", "sources"):
            if isinstance(body.get(key), str):
                body[key] = [g.strip() for g in body[key].split(",") if g.strip()]
        job_id = self._request("POST", "/comparisons", json=body)["job"]
        job = self._follow(job_id, on_progress)
        if job["state"] != "done":
            error = job.get("error") or job["state"]
            raise (Cancelled if job["state"] != "failed" else InvalidRequest)(error)
        comparison = self.comparison(job["comparison"])
        if out is not None:
            comparison.save(out)
        return comparison

    def comparison(self, comparison_id: str) -> Comparison:
        from .analyze.comparison import Comparison

        found = self._request("GET", f"/comparisons/{comparison_id}/record")
        return Comparison.from_record(found["head"], base64.b64decode(found["payload"]))


def _batch_report(job: dict[str, Any], skipped: Counter[str] | None, started: float) -> Any:
    from .ingest.batch import BatchIngestReport

    report = BatchIngestReport.from_dict(job["report"])
    report.skipped.update(skipped or {})
    report.seconds = time.monotonic() - started
    return report


def _report(job: dict[str, Any], skipped: Counter[str] | None, started: float) -> IngestReport:
    from .ingest.pipeline import IngestReport

    data = job.get("report")
    if data is None:
        raise ServiceError(job.get("error") or f"the ingest job ended {job['state']}")
    report = IngestReport.from_dict(data)
    report.skipped.update(skipped or {})
    report.seconds = time.monotonic() - started
    return report


def _sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    event, data = "message", list[str]()
    for line in lines:
        if not line:
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def _space_spec(space: Space | str | None) -> str | None:
    if isinstance(space, Space):
        return f"{space.provider}:{space.model}:{space.dims}"
    return space


def _joined(values: Sequence[str] | str | None) -> str | None:
    if values is None or isinstance(values, str):
        return values
    return ",".join(values)


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
