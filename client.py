"""A running `embedlab serve`, used through the same calls as a `Lab`.

The CLI's `--server URL` mode builds a `RemoteLab` instead of opening the store, calls
the same methods and prints the same output. Documents are read from files here, by
the library's own readers (so ids are the same as a local ingest), and sent as JSON;
the service does the embedding, the analysis and the bookkeeping.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .errors import (
    CODES,
    BodyTooLarge,
    Cancelled,
    DocumentNotFound,
    EmbedlabError,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProviderError,
    ProviderKeyError,
    StoreError,
    Unauthorized,
    error_for,
)
from .inputs import Inputs
from .progress import CancelToken, Progress, ProgressCallback, reporter
from .store import Document, Space
from .store.documents import Removed
from .store.selection import Selection

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from .analyze.analysis import Analysis
    from .analyze.comparison import Comparison
    from .ingest.batch import CollectReport
    from .ingest.pipeline import IngestReport
    from .lab import EmbeddingChoice
    from .store.repair import SpaceHealth

SpaceSpec = Space | str | None

API = "/api/v1"


class ServiceError(EmbedlabError):
    """The service answered with an error this client has no closer name for."""


# what an answer without a known `code` (a proxy's, an older service's) is rebuilt as
BY_STATUS: dict[int, type[EmbedlabError]] = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Cancelled,
    413: BodyTooLarge,
    415: InvalidRequest,
    422: InvalidRequest,
    502: ProviderError,
    503: StoreError,
}


def _error(status: int, detail: str, code: str | None = None) -> EmbedlabError:
    """The library's own exception for an error answer: the class its `code` names (the
    same class the Lab raised on the service), else the one its status suggests."""
    if status == 401:
        return Unauthorized(f"{detail} (set $EMBEDLAB_TOKEN to the service's token)")
    if code in CODES and code != EmbedlabError.code:
        return error_for(code)(detail)
    if status == 404 and detail.startswith("no document "):  # a service without codes
        return DocumentNotFound(detail)
    return BY_STATUS.get(status, ServiceError)(detail)


def _job_error(job: dict[str, Any]) -> EmbedlabError:
    """The exception a failed or cancelled job (not an ingest) stands for."""
    error = job.get("error") or job["state"]
    if job["state"] in ("cancelled", "interrupted"):
        return Cancelled(error)
    code = job.get("code")
    if code in CODES and code != EmbedlabError.code:
        return error_for(code)(error)
    return ServiceError(error)


def _local_only(**given: tuple[Any, Any]) -> None:
    """Refuse, by name, an argument set to something only a Lab on the store can do."""
    named = [name for name, (value, default) in given.items() if value != default]
    if named:
        raise InvalidRequest(
            f"{', '.join(named)} cannot be set through a service (its own settings apply); "
            "drop it, or open the store with embedlab.open(path)"
        )


class RemoteLab(Inputs):
    """A running `embedlab serve`, through the same calls as a `Lab` (`api.LabAPI`).

    The same arguments give the same results: the service runs them on its Lab. An
    argument that cannot work remotely is refused by name, never dropped; an error
    comes back as the class the Lab raised (its `code` in the problem+json body).
    """

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
            code = None
            try:
                body = response.json()
                detail, code = body.get("detail") or response.text, body.get("code")
            except (ValueError, AttributeError):
                detail = response.text or response.reason_phrase
            raise _error(response.status_code, str(detail), code)
        return response.content if raw else response.json()

    def _follow(
        self,
        job_id: str,
        on_progress: ProgressCallback | None,
        cancel: CancelToken | None = None,
        quiet: bool | None = None,
    ) -> dict[str, Any]:
        """The job's final state, passing its progress events on as they come (to
        `on_progress`, else a progress bar unless quiet, as a Lab does); a `cancel`
        token cancelled meanwhile cancels the job on the service."""
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)
        try:
            return self._follow_events(job_id, notify, cancel)
        finally:
            close_bar()

    def _follow_events(
        self, job_id: str, on_progress: ProgressCallback | None, cancel: CancelToken | None
    ) -> dict[str, Any]:
        import threading

        import httpx

        done = threading.Event()
        if cancel is not None:

            def watch() -> None:
                while not done.is_set():
                    if cancel.sleep(0.1):
                        try:
                            self._http.request("DELETE", f"{API}/jobs/{job_id}")
                        except httpx.HTTPError:
                            pass
                        return

            threading.Thread(target=watch, daemon=True).start()
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
        finally:
            done.set()
        return self._request("GET", f"/jobs/{job_id}")

    # -- reading -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/stats")

    def spaces(self) -> list[Space]:
        return [Space.from_dict(s) for s in self._request("GET", "/spaces")["spaces"]]

    def space(self, space: SpaceSpec = None) -> Space:
        from .analyze.select import resolve_space_spec

        return resolve_space_spec(self.spaces(), self.location, space)

    def space_sizes(self) -> dict[Space, int]:
        return {
            Space.from_dict(s): s["documents"] for s in self._request("GET", "/spaces")["spaces"]
        }

    def delete_space(self, space: SpaceSpec) -> dict[str, Any]:
        chosen = self.space(space)  # resolved as a Lab resolves it (None: the only space)
        name = chosen.name
        return self._request("DELETE", f"/spaces/{urllib.parse.quote(name, safe=':')}")

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
        selection: Selection | None = None,
    ) -> pd.DataFrame:
        if selection is not None:  # a selection stands for the filters
            labels, sources, _ = selection.filters("neighbours")
            space = space if selection.space is None else selection.space
        import pandas as pd

        from .store.neighbours import NEIGHBOUR_COLUMNS

        spec = _space_spec(space)
        if id is not None and text is None and vector is None:
            params = {"id": id, "k": k, "space": spec, "analysis": analysis}
            params.update(labels=_joined(labels), sources=_joined(sources))
            body = self._request("GET", "/neighbours", params=_present(params))
        else:
            payload: dict[str, Any] = {"text": text, "k": k, "labels": _listed(labels)}
            payload.update(sources=_listed(sources), space=spec, analysis=analysis, id=id)
            if vector is not None:
                payload["vector"] = [float(v) for v in vector]
            if not spend:
                payload["spend"] = False
            body = self._request("POST", "/neighbours", json=_present(payload))
        frame = pd.DataFrame(body["neighbours"], columns=list(NEIGHBOUR_COLUMNS))
        frame.attrs["requests"] = body["requests"]
        frame.attrs["space"] = body["space"]
        return frame

    def analyses(self, space: SpaceSpec = None) -> pd.DataFrame:
        import pandas as pd

        from .lab import ANALYSIS_COLUMNS

        rows = self._request("GET", "/analyses", params=_present({"space": _space_spec(space)}))
        return pd.DataFrame(rows["analyses"], columns=list(ANALYSIS_COLUMNS))

    def analysis(self, analysis_id: str) -> Analysis:
        from .analyze.analysis import Analysis

        path = f"/analyses/{urllib.parse.quote(analysis_id, safe='')}"
        found = self._request("GET", f"{path}/record")
        analysis = Analysis.from_record(found["head"], base64.b64decode(found["payload"]))
        analysis.map_extras = lambda: self._map_data(path)  # read when a map.html is saved
        return analysis

    def _map_data(self, path: str) -> tuple[list[str], tuple[np.ndarray, np.ndarray]]:
        """The texts and neighbours a map.html carries, as the service's Lab reads them."""
        import numpy as np

        found = self._request("GET", f"{path}/map-data")
        positions = np.asarray(found["neighbours"], dtype=np.int32)
        similarities = np.asarray(found["similarities"], dtype=np.float32)
        return found["texts"], (positions, similarities)

    def latest_analysis(self, space: SpaceSpec = None) -> Analysis | None:
        table = self.analyses(self.space(space))
        return self.analysis(str(table["id"].iloc[0])) if len(table) else None

    def successor(self, analysis_id: str) -> str | None:
        path = f"/analyses/{urllib.parse.quote(analysis_id, safe='')}/successor"
        return self._request("GET", path)["successor"]

    def find(self, analysis_id: str, query: str, limit: int = 1000) -> list[int]:
        path = f"/analyses/{urllib.parse.quote(analysis_id, safe='')}/find"
        return self._request("GET", path, params={"q": query, "limit": limit})["indices"]

    def delete_analysis(self, analysis_id: str) -> None:
        self._request("DELETE", f"/analyses/{urllib.parse.quote(analysis_id, safe='')}")

    def costs(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self._request("GET", "/costs")["spaces"])

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
        import pandas as pd

        if selection is not None:  # as Lab.documents reads it
            labels, sources, per_class, seed, limit = selection.parts()
            space = space if selection.space is None else selection.space
        body = _present(
            {
                "space": _space_spec(space),
                "labels": _listed(labels),
                "sources": _listed(sources),
                "per_class": per_class,
                "seed": seed,
                "limit": limit,
            }
        )
        rows = self._request("POST", "/documents/select", json=body)["documents"]
        columns = ["id", "label", "source", "text", "content_hash", "chars", "fields"]
        table = pd.DataFrame(rows, columns=columns)
        table["fields"] = [f if isinstance(f, dict) else {} for f in table["fields"]]
        return table

    def document(self, id: str, space: SpaceSpec = None) -> dict[str, Any]:  # noqa: A002
        path = f"/documents/{urllib.parse.quote(id, safe='/')}"
        return self._request("GET", path, params=_present({"space": _space_spec(space)}))

    def delete(
        self,
        ids: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        labels: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        dry_run: bool = False,
        selection: Selection | None = None,
    ) -> Removed:
        if selection is not None:  # a selection stands for the filters
            labels, sources, chosen_ids = selection.filters("delete", with_ids=True)
            ids = ids if chosen_ids is None else list(chosen_ids)
            space = space if selection.space is None else selection.space
        params: dict[str, Any] = _present(
            {
                "sources": _joined(sources),
                "labels": _joined(labels),
                "space": _space_spec(space),
                "dry_run": dry_run,
            }
        )
        if ids:
            params["ids"] = [ids] if isinstance(ids, str) else list(ids)
        answer = self._request("DELETE", "/documents", params=params)
        return Removed(answer["removed"], answer.get("not_found"))

    def export(
        self,
        path: str | os.PathLike[str],
        format: str = "parquet",  # noqa: A002 - the CLI's --format
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        selection: Selection | None = None,
    ) -> int:
        """The service's export (one parquet file, sent whole), written here in `format`."""
        from .store.export import check_format, read_parquet_export, write_export

        check_format(format)
        if selection is not None:  # the service's export takes globs: a sample is refused by name
            labels, sources, _ = selection.filters("export")
            space = space if selection.space is None else selection.space
        params = _present(
            {"labels": _joined(labels), "sources": _joined(sources), "space": _space_spec(space)}
        )
        data = self._request("GET", "/export", raw=True, params=params)
        rows, vectors, dims = read_parquet_export(data)
        return write_export(path, format, rows, vectors, dims)

    def repair(self, check: bool = True) -> list[SpaceHealth]:
        raise InvalidRequest(
            f"repair works on the store itself: stop the service at {self.url}, then run "
            "`embedlab --store PATH repair`"
        )

    # -- ingest --------------------------------------------------------------------------

    def _claim_source(self, source: str, origin: str, dry_run: bool) -> None:
        """Bind a default source name to one input, in the service's store (as a Lab
        does in its own): another input with the same default name is refused."""
        body = {"source": source, "origin": origin, "dry_run": dry_run}
        self._request("POST", "/sources/claim", json=body)

    def embedding_choice(
        self,
        provider: str = "auto",
        model: str | None = None,
        task_type: str | None = "CLUSTERING",
        dims: int | None = None,
    ) -> EmbeddingChoice:
        from .lab import EmbeddingChoice

        params = _present({"provider": provider, "model": model, "task_type": task_type})
        if dims is not None:
            params["dims"] = dims
        found = self._request("GET", "/embedding-choice", params=params)
        s = found["space"]
        space = Space.from_dict(s)
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
        from .ingest.pipeline import IngestCancelled, IngestError, IngestKeyError

        # the service retries and times out its provider calls by its own settings
        _local_only(max_attempts=(max_attempts, 6), timeout=(timeout, 60.0))
        started = time.monotonic() if started is None else started
        body: dict[str, Any] = {
            "documents": [
                _present(
                    {
                        "id": d.id,
                        "text": d.text,
                        "label": d.label,
                        "source": d.source,
                        "fields": {k: v for k, v in d.fields.items() if v is not None} or None,
                    }
                )
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
            job = self._follow(job_id, on_progress, cancel, quiet)
        except KeyboardInterrupt:
            self._request("DELETE", f"/jobs/{job_id}")
            job = self._request("GET", f"/jobs/{job_id}")
            report = _report(job, skipped, started)
            raise IngestCancelled("interrupted", report, interrupted=True) from None
        if batch and job["state"] in ("waiting", "done") and job.get("report"):
            return _batch_report(job, skipped, started)  # submitted; the service collects
        if job["state"] != "done" and job.get("report") is None:
            raise _job_error(job)  # refused before anything was embedded (as a Lab raises)
        report = _report(job, skipped, started)
        if job["state"] == "done":
            return report
        if job["state"] in ("cancelled", "interrupted"):
            raise IngestCancelled(job.get("error") or job["state"], report)
        kind = IngestKeyError if job.get("code") == ProviderKeyError.code else IngestError
        raise kind(job.get("error") or "the ingest failed", report)

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
        cancel: CancelToken | None = None,
    ) -> CollectReport:
        """Have the service collect what finished now; with `wait`, again (with backoff)
        until no job is open or the time is up. The service's poller collects on its own."""
        from .ingest.batch import POLL_FACTOR, POLL_MAX_S, CollectReport
        from .lab_batches import poll_seconds

        limit = float("inf") if wait is True else float(wait or 0)
        started, pause, total = time.monotonic(), poll_seconds(poll), CollectReport()
        notify, close_bar = reporter(self.quiet if quiet is None else quiet, on_progress)
        try:
            while True:
                got = CollectReport.from_dict(self._request("POST", "/batches/collect"))
                for name in ("collected", "written", "failed_lines", "released"):
                    setattr(total, name, getattr(total, name) + getattr(got, name))
                total.lines += got.lines
                total.checked, total.pending = got.checked, got.pending
                rows = self.batches()
                left = int(rows["state"].isin(["intent", "pending", "running", "succeeded"]).sum())
                notify(Progress("batches", len(rows) - left, len(rows), f"{left} open"))
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
        finally:
            close_bar()
        total.seconds = time.monotonic() - started
        return total

    def cancel_batch(self, job: str) -> dict[str, Any]:
        """Ask the service to cancel one open batch job (its name or key)."""
        return self._request("DELETE", f"/batches/{job}")

    # -- analysis ------------------------------------------------------------------------

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
        """Lab.analyze, run by the service (POST /analyses, a job)."""
        if selection is not None:  # as Lab.analyze reads it
            labels, sources, per_class, seed, limit = selection.parts()
            space = space if selection.space is None else selection.space
        body = _present(
            {
                "labels": _listed(labels),
                "sources": _listed(sources),
                "per_class": per_class,
                "seed": seed,
                "limit": limit,
                "space": _space_spec(space),
                "algorithm": algorithm,
                "k": k,
                "reduce": reduce,
                "min_cluster_size": min_cluster_size,
                "eps": eps,
                "name_clusters": name_clusters,
                "naming_model": naming_model,
                "text_weight": text_weight,
                "cluster_dims": cluster_dims,
                "fresh": None if fresh is False else fresh,
            }
        )
        job_id = self._request("POST", "/analyses", json=body)["job"]
        job = self._follow(job_id, on_progress, quiet=quiet)
        if job["state"] != "done":
            raise _job_error(job)
        analysis = self.analysis(job["analysis"])
        if job.get("reused"):  # as Lab.analyze marks an identical analysis it returns
            analysis = dataclasses.replace(
                analysis,
                reused=True,
                notes=list(job.get("notes") or analysis.notes),
                naming=dict(job.get("naming") or analysis.naming),
            )
        if out is not None:
            analysis.save(out, html=html)  # map.html with the service's texts, neighbours
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
        if analysis_id is None:
            raise InvalidRequest("this analysis is not stored; update a stored one (its id)")
        path = f"/analyses/{urllib.parse.quote(analysis_id, safe='')}/update"
        job_id = self._request("POST", path, json={"refit": refit})["job"]
        job = self._follow(job_id, on_progress, quiet=quiet)
        if job["state"] != "done":
            raise _job_error(job)
        updated = self.analysis(job["analysis"])
        if out is not None:
            updated.save(out, html=html)
        return updated

    # -- comparisons ---------------------------------------------------------------------

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
        """Lab.compare, run by the service (POST /comparisons, a job)."""
        if selection is not None:  # as Lab.compare reads it
            labels, sources, per_class, seed, limit = selection.parts()
        body = _present(
            {
                "space_a": _space_spec(space_a),
                "space_b": _space_spec(space_b),
                "labels": _listed(labels),
                "sources": _listed(sources),
                "per_class": per_class,
                "seed": seed,
                "limit": limit,
                "k": k,
                "neighbours": neighbours,
                "reduce": reduce,
            }
        )
        job_id = self._request("POST", "/comparisons", json=body)["job"]
        job = self._follow(job_id, on_progress, quiet=quiet)
        if job["state"] != "done":
            raise _job_error(job)
        comparison = self.comparison(job["comparison"])
        if out is not None:
            comparison.save(out)
        return comparison

    def comparisons(self) -> pd.DataFrame:
        import pandas as pd

        rows = self._request("GET", "/comparisons")["comparisons"]
        columns = ["id", "created", "space_a", "space_b", "documents", "jaccard_mean", "ari"]
        return pd.DataFrame(rows, columns=columns)

    def comparison(self, comparison_id: str) -> Comparison:
        from .analyze.comparison import Comparison

        path = f"/comparisons/{urllib.parse.quote(comparison_id, safe='')}/record"
        found = self._request("GET", path)
        return Comparison.from_record(found["head"], base64.b64decode(found["payload"]))


def _batch_report(job: dict[str, Any], skipped: Counter[str] | None, started: float) -> Any:
    from .ingest.batch import BatchIngestReport
    from .ingest.skips import merge as merge_skips

    report = BatchIngestReport.from_dict(job["report"])
    merge_skips(report.skipped, skipped)
    report.seconds = time.monotonic() - started
    return report


def _report(job: dict[str, Any], skipped: Counter[str] | None, started: float) -> IngestReport:
    from .ingest.pipeline import IngestReport
    from .ingest.skips import merge as merge_skips

    data = job.get("report")
    if data is None:
        raise ServiceError(job.get("error") or f"the ingest job ended {job['state']}")
    report = IngestReport.from_dict(data)
    merge_skips(report.skipped, skipped)
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


def _space_spec(space: SpaceSpec) -> str | None:
    if isinstance(space, Space):
        return space.name
    return space


def _listed(values: Sequence[str] | str | None) -> list[str] | str | None:
    """As given (the service's Lab reads globs as a Lab does), as JSON can carry it."""
    if values is None or isinstance(values, str):
        return values
    return list(values)


def _joined(values: Sequence[str] | str | None) -> str | None:
    if values is None or isinstance(values, str):
        return values
    return ",".join(values)


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
