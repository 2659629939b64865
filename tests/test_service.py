"""`embedlab serve` through a real uvicorn on a loopback port, with real HTTP, the real
SDK against the fake Gemini server, and a real embedded Chroma store."""

from __future__ import annotations

import csv
import io
import itertools
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import embedlab
import httpx
import numpy as np
import pyarrow
import pyarrow.ipc
import pytest
from embedlab.errors import Unauthorized

from tests.conftest import invoke_cli
from tests.fake_gemini import VALID_KEY, FakeGemini
from tests.service_helpers import (
    InProcessService,
    RunningService,
    alive,
    chroma_children,
    documents,
    events,
)

DIMS = 128
pytestmark = pytest.mark.slow


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


def texts_sent(fake: FakeGemini) -> int:
    return sum(len(r.texts) for r in fake.ok_requests)


def test_ingest_by_json_ndjson_and_csv_costs_exactly_the_new_texts(tmp_path, fake):
    service = InProcessService(tmp_path / "store", fake)
    try:
        first = service.ingest(documents(30), batch_size=10, dims=DIMS)
        assert (first["embedded"], first["requests"], first["cached"]) == (30, 3, 0)
        assert len(fake.ok_requests) == 3

        again = service.ingest(documents(30), batch_size=10, dims=DIMS)
        assert (again["cached"], again["embedded"], again["requests"]) == (30, 0, 0)
        assert len(fake.ok_requests) == 3  # nothing paid twice

        changed = documents(30)
        changed[24]["text"] += " (edited)"
        changed[27]["text"] += " (edited)"
        third = service.ingest(changed, batch_size=10, dims=DIMS)
        assert (third["embedded"], third["changed"], third["requests"]) == (2, 2, 1)
        assert texts_sent(fake) == 32

        # NDJSON: 5 texts already stored under other ids (reused, free) and 5 new ones
        lines = [
            json.dumps({"key": f"n{i}", "body": d["text"], "group": d["label"]})
            for i, d in enumerate(documents(5, 0) + documents(5, 100))
        ]
        response = service.http.post(
            "/api/v1/ingest",
            params={"wait": "true", "name": "feed", "id": "key", "text": "body", "label": "group"}
            | {"dims": DIMS},
            content="\n".join(lines).encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 200, response.text
        ndjson = response.json()
        assert (ndjson["documents"], ndjson["reused"], ndjson["embedded"]) == (10, 5, 5)
        assert ndjson["requests"] == 1 and texts_sent(fake) == 37

        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["id", "text", "label"])
        writer.writerows([["r1", "a csv row, with a comma", "x"], ["r2", "another row", "y"]])
        response = service.http.post(
            "/api/v1/ingest",
            params={"wait": "true", "name": "sheet", "id": "id", "label": "label", "dims": DIMS},
            content=rows.getvalue().encode(),
            headers={"Content-Type": "text/csv"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["embedded"] == 2 and texts_sent(fake) == 39

        doc = service.http.get("/api/v1/documents/csv/sheet/r1").json()  # a slash in the id
        assert (doc["text"], doc["label"], doc["source"]) == (
            "a csv row, with a comma",
            "x",
            "csv/sheet",
        )
        listed = service.http.get("/api/v1/documents", params={"sources": "jsonl/*"}).json()
        assert listed["total"] == 10
        assert sorted(d["id"] for d in listed["documents"])[0] == "jsonl/feed/n0"

        costs = service.http.get("/api/v1/costs").json()
        (row,) = costs["spaces"]
        assert costs["estimated"] is True
        assert (row["requests"], row["texts_embedded"]) == (len(fake.ok_requests), 39)
        assert row["cache_hits"] == 30 + 28 + 5  # re-run, the unchanged 28, the reused 5
        assert row["estimated_usd"] > 0 and row["estimated_usd_saved"] > 0
        assert row["usd_per_1m_tokens"] == 0.15
    finally:
        assert service.stop() == 0
    with embedlab.open(tmp_path / "store", quiet=True) as lab:  # the same ledger, offline
        assert lab.costs()["requests"].tolist() == [len(fake.ok_requests)]


def test_jobs_report_progress_as_server_sent_events_and_cancel(tmp_path):
    with FakeGemini(latency=0.15) as fake:
        service = InProcessService(tmp_path / "store", fake)
        try:
            job_id = service.ingest(
                documents(40), wait=False, batch_size=5, concurrency=1, dims=DIMS
            )["job"]  # one request at a time: 8 batches, 8 progress steps to see
            with service.http.stream("GET", f"/api/v1/jobs/{job_id}/events") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                seen = events(response)
            assert seen[-1][0] == "end" and seen[-1][1]["state"] == "done"
            done = [data["progress"]["done"] for kind, data in seen if kind == "progress"]
            assert (
                len(done) >= 3 and done == sorted(done) and seen[-1][1]["report"]["embedded"] == 40
            )

            finished = service.http.delete(f"/api/v1/jobs/{job_id}")
            assert finished.status_code == 409 and "already ended (done)" in finished.text
            assert finished.json()["code"] == "job_finished"
            slow = service.ingest(documents(200, 1000), wait=False, batch_size=5, dims=DIMS)
            service.wait_embedded(slow["job"], 10)
            cancelled = service.http.delete(f"/api/v1/jobs/{slow['job']}")
            assert cancelled.status_code == 202
            job = service.wait_job(slow["job"])
            assert job["state"] == "cancelled"
            kept = job["report"]["embedded"]
            assert 10 <= kept < 200
            stats = service.http.get("/api/v1/stats").json()
            assert stats["spaces"][0]["documents"] == 40 + kept  # what returned was written

            listed = [j["id"] for j in service.http.get("/api/v1/jobs").json()["jobs"]]
            assert listed[:2] == [slow["job"], job_id]  # newest first

            before = texts_sent(fake)
            fake.latency = 0.0  # slow answers were for the progress steps and the cancel
            rerun = service.ingest(documents(200, 1000), batch_size=5, dims=DIMS)
            assert (rerun["cached"], rerun["embedded"]) == (kept, 200 - kept)
            assert texts_sent(fake) - before == 200 - kept  # exactly what was missing
        finally:
            assert service.stop() == 0


def test_reads_are_answered_while_an_ingest_runs_and_match_the_library(tmp_path):
    with FakeGemini(latency=0.1) as fake:
        service = InProcessService(tmp_path / "store", fake)
        try:
            service.ingest(documents(60), batch_size=20, dims=DIMS)
            analysis = service.http.post(
                "/api/v1/analyses", params={"wait": "true"}, json={"k": 2, "reduce": "pca"}
            ).json()["analysis"]
            by_id = service.http.get("/api/v1/neighbours", params={"id": "doc3", "k": 5}).json()
            assert by_id["requests"] == 0 and len(by_id["neighbours"]) == 5
            assert all(n["cluster"] in (0, 1) for n in by_id["neighbours"])
            by_text = service.http.post(
                "/api/v1/neighbours", json={"text": "rockets in orbit", "k": 5}
            ).json()
            assert by_text["requests"] == 1
            repeat = service.http.post(
                "/api/v1/neighbours", json={"text": "rockets in orbit", "k": 5}
            ).json()
            assert repeat["requests"] == 0 and repeat["neighbours"] == by_text["neighbours"]

            job = service.ingest(documents(300, 500), wait=False, batch_size=10, dims=DIMS)
            errors, latencies = [], []

            def read(i: int) -> None:
                started = time.monotonic()
                path, params = [
                    ("/api/v1/neighbours", {"id": f"doc{i % 60}", "k": 5}),
                    ("/api/v1/stats", None),
                    ("/api/v1/documents", {"limit": 5}),
                    (f"/api/v1/analyses/{analysis}/points", None),
                ][i % 4]
                response = readers.get(service.url + path, params=params)
                latencies.append(time.monotonic() - started)
                if response.status_code != 200:
                    errors.append(response.text)

            # one pooled client for the 8 readers (httpx.get builds an SSL context per call:
            # ~0.1 s of CPU each, taken from the server it shares this process with)
            with httpx.Client(timeout=30) as readers, ThreadPoolExecutor(8) as pool:
                list(pool.map(read, range(80)))
            running = service.http.get(f"/api/v1/jobs/{job['job']}").json()["state"]
            assert errors == [] and running in ("running", "done")
            assert max(latencies) < 10
            fake.latency = 0.0  # the reads are done: the rest of the ingest need not be slow
            assert service.wait_job(job["job"])["state"] == "done"
            points = service.http.get(f"/api/v1/analyses/{analysis}/points").json()
            assert set(points) == {"id", "x", "y", "cluster", "label"} and len(points["id"]) == 60
            arrow = service.http.get(
                f"/api/v1/analyses/{analysis}/points", params={"format": "arrow"}
            )
            table = pyarrow.ipc.open_stream(arrow.content).read_all()
            assert table.column("id").to_pylist() == points["id"]
            assert np.allclose(table.column("x").to_numpy(), points["x"])
            as_csv = service.http.get(
                f"/api/v1/analyses/{analysis}/points", params={"format": "csv"}
            )
            assert as_csv.headers["content-type"].startswith("text/csv")
            assert as_csv.text.splitlines()[0] == "id,label,cluster,x,y"
            assert len(as_csv.text.splitlines()) == 61
            by_id = service.http.get("/api/v1/neighbours", params={"id": "doc3", "k": 5}).json()
            by_text = service.http.post(
                "/api/v1/neighbours", json={"text": "rockets in orbit", "k": 5}
            ).json()
        finally:
            assert service.stop() == 0
    with embedlab.open(tmp_path / "store", quiet=True) as lab:  # the library agrees
        library = lab.neighbours("doc3", k=5)
        assert library["id"].tolist() == [n["id"] for n in by_id["neighbours"]]
        assert np.allclose(library["similarity"], [n["similarity"] for n in by_id["neighbours"]])
        assert library["cluster"].tolist() == [n["cluster"] for n in by_id["neighbours"]]
        text = lab.neighbours(text="rockets in orbit", k=5)
        assert text.attrs["requests"] == 0  # the service cached the query in the store
        assert text["id"].tolist() == [n["id"] for n in by_text["neighbours"]]


def test_sigkill_mid_ingest_then_restart_shows_interrupted_and_finishes_without_paying_twice(
    tmp_path,
):
    store = tmp_path / "store"
    with FakeGemini(latency=0.1) as fake:
        service = RunningService(store, fake)
        job = service.ingest(documents(300), wait=False, batch_size=5, concurrency=1, dims=DIMS)
        service.wait_embedded(job["job"], 30)
        (chroma,) = chroma_children(service.proc.pid)  # Chroma's writes run in a child
        service.stop(signal.SIGKILL)
        delivered = texts_sent(fake)
        deadline = time.monotonic() + 10  # and it dies with the service: nothing orphaned
        while alive(chroma) and time.monotonic() < deadline:  # writes to the folder
            time.sleep(0.05)
        assert not alive(chroma)
        fake.latency = 0.0  # slow answers were for the kill to land mid-ingest

        again = RunningService(store, fake)
        try:
            past = again.http.get(f"/api/v1/jobs/{job['job']}").json()
            assert past["state"] == "interrupted" and "submit it again" in past["error"]
            stored = again.http.get("/api/v1/stats").json()["spaces"][0]["documents"]
            assert 30 <= stored < 300
            assert delivered - stored <= 5  # at most the one batch in flight was lost
            rerun = again.ingest(documents(300), batch_size=5, concurrency=1, dims=DIMS)
            assert (rerun["cached"], rerun["embedded"]) == (stored, 300 - stored)
            assert texts_sent(fake) - delivered == 300 - stored  # nothing stored is re-sent
        finally:
            assert again.stop() == 0


def test_sigterm_cancels_the_running_job_records_it_and_exits_0_within_10_s(tmp_path):
    store = tmp_path / "store"
    with FakeGemini(latency=0.2) as fake:
        service = RunningService(store, fake)
        job = service.ingest(documents(400), wait=False, batch_size=5, concurrency=1, dims=DIMS)
        service.wait_embedded(job["job"], 10)
        started = time.monotonic()
        assert service.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
        assert "stopped after" in service.log()
        with embedlab.open(store, quiet=True) as lab:
            stored = lab.stats()["spaces"][0]["documents"]
            (head,) = [h for h in lab.store.artifacts.heads("job") if h["id"] == job["job"]]
        assert head["state"] == "interrupted" and head["report"]["embedded"] == stored > 0


def test_token_read_only_body_limit_and_loopback_rules(tmp_path, fake):
    refused = invoke_cli(["--store", str(tmp_path / "s0"), "serve", "--host", "0.0.0.0"])
    assert refused.returncode != 0 and "without a token" in refused.stderr
    assert "Traceback" not in refused.stderr

    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    service = InProcessService(
        tmp_path / "store",
        fake,
        "--token-file",
        str(token_file),
        "--max-body",
        "2000",
        token="s3cret-token",
    )
    try:
        anonymous = httpx.get(f"{service.url}/api/v1/stats")
        assert anonymous.status_code == 401
        assert anonymous.headers["content-type"] == "application/problem+json"
        assert "Bearer" in anonymous.json()["detail"]
        assert anonymous.json()["code"] == "unauthorized"
        with pytest.raises(Unauthorized, match="EMBEDLAB_TOKEN"):
            embedlab.connect(service.url, token="not-the-token").stats()
        wrong = httpx.get(
            f"{service.url}/api/v1/stats", headers={"Authorization": "Bearer s3cret-tokeX"}
        )
        assert wrong.status_code == 401
        assert httpx.get(f"{service.url}/health").status_code == 200  # no secret in it
        assert service.http.get("/api/v1/stats").status_code == 200

        big = service.http.post("/api/v1/ingest", json={"documents": documents(100)})
        assert big.status_code == 413 and "--max-body" in big.json()["detail"]
        assert big.json()["code"] == "body_too_large"
        small = service.ingest(documents(3), dims=DIMS)
        assert small["embedded"] == 3
    finally:
        assert service.stop() == 0

    read_only = InProcessService(tmp_path / "store", fake, "--read-only")
    try:
        for method, path, body in [
            ("POST", "/api/v1/ingest", {"documents": documents(1)}),
            ("POST", "/api/v1/analyses", {"k": 2}),
            ("POST", "/api/v1/neighbours", {"text": "a query never embedded", "k": 2}),
        ]:
            response = read_only.http.request(method, path, json=body)
            assert response.status_code == 403, (path, response.text)
            assert response.json()["title"] == "Forbidden"
        assert read_only.http.get("/api/v1/neighbours", params={"id": "doc1"}).status_code == 200
    finally:
        assert read_only.stop() == 0
    for log in tmp_path.glob("serve-*.log"):
        assert VALID_KEY not in log.read_text()
    assert len(fake.ok_requests) == 1


def test_every_error_is_problem_json_and_never_500(tmp_path, fake):
    service = InProcessService(tmp_path / "store", fake)
    try:
        service.ingest(documents(10), dims=DIMS)
        cases = [
            ("GET", "/api/v1/documents/nope", None, 404),
            ("GET", "/api/v1/neighbours?id=nope", None, 404),
            ("GET", "/api/v1/neighbours", None, 422),
            ("POST", "/api/v1/neighbours", {"k": 3}, 400),
            ("POST", "/api/v1/neighbours", {"vector": [1.0, 2.0]}, 400),
            ("POST", "/api/v1/neighbours", {"text": "x", "k": 0}, 422),
            ("POST", "/api/v1/ingest", {"documents": []}, 422),
            ("POST", "/api/v1/ingest", {"documents": [{"id": "a"}]}, 422),
            ("POST", "/api/v1/analyses", {"k": 50}, None),
            ("GET", "/api/v1/analyses/nope", None, 404),
            ("GET", "/api/v1/jobs/nope", None, 404),
            ("DELETE", "/api/v1/analyses/nope", None, 404),
            ("GET", "/api/v1/nowhere", None, 404),
            ("PUT", "/api/v1/stats", None, 405),
            ("POST", "/api/v1/analyses", {"space": "nope:nothing"}, 404),
            ("POST", "/api/v1/analyses", {"algorithm": "hdbscan", "k": 3}, 400),
            ("POST", "/api/v1/analyses", {"algorithm": "hdbscan", "text_weight": 1}, 400),
            ("POST", "/api/v1/analyses", {"text_weight": -1}, 422),
        ]
        for method, path, body, status in cases:
            response = service.http.request(method, path, json=body)
            assert response.status_code < 500, (path, response.text)
            if status is not None:
                assert response.status_code == status, (path, response.text)
            if response.status_code >= 400:
                problem = response.json()
                assert response.headers["content-type"] == "application/problem+json"
                assert {"type", "title", "status", "detail"} <= set(problem)
                assert problem["status"] == response.status_code and problem["detail"]
        raw = service.http.post(
            "/api/v1/ingest", content=b"{not json", headers={"Content-Type": "application/json"}
        )
        assert raw.status_code == 400 and "not JSON" in raw.json()["detail"]
        xml = service.http.post(
            "/api/v1/ingest", content=b"<a/>", headers={"Content-Type": "application/xml"}
        )
        assert xml.status_code == 415
        assert "Traceback" not in service.log()
    finally:
        assert service.stop() == 0


# the routes whose every request is a valid one (no parameter but a path segment, which
# any string is, and no body): the schema fuzz has no negative case to make for them
NOTHING_TO_NEGATE = {
    "GET /health", "GET /api/v1/stats", "GET /api/v1/spaces", "GET /api/v1/costs",
    "GET /api/v1/jobs", "GET /api/v1/comparisons", "POST /api/v1/batches/collect",
    "GET /api/v1/jobs/{job_id}", "DELETE /api/v1/jobs/{job_id}",
    "GET /api/v1/jobs/{job_id}/events", "DELETE /api/v1/batches/{job}",
    "DELETE /api/v1/spaces/{space}", "GET /api/v1/comparisons/{comparison_id}",
    "GET /api/v1/analyses/{analysis_id}", "DELETE /api/v1/analyses/{analysis_id}",
    "GET /api/v1/analyses/{analysis_id}/map", "GET /api/v1/analyses/{analysis_id}/map.html",
    "GET /api/v1/analyses/{analysis_id}/ids", "GET /api/v1/analyses/{analysis_id}/fields",
    "GET /api/v1/analyses/{analysis_id}/successor",
}  # fmt: skip


def nothing_to_negate(operation) -> bool:
    """No body, and every parameter an unconstrained string in the path."""
    raw = operation.definition.raw
    return "requestBody" not in raw and all(
        p["in"] == "path"
        and set(p["schema"]) <= {"type", "title"}
        and p["schema"]["type"] == "string"
        for p in raw.get("parameters", [])
    )


def test_schema_fuzz_finds_no_server_error(tmp_path, fake):
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.checks import not_a_server_error

    service = InProcessService(tmp_path / "store", fake)
    try:
        service.ingest(documents(20), dims=DIMS)
        schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
        failures: list[str] = []
        unsatisfiable: list[str] = []
        lock = threading.Lock()
        modes = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
        for operation, mode in itertools.product(schema.get_all_operations(), modes):
            op = operation.ok()
            if mode == schemathesis.GenerationMode.NEGATIVE and nothing_to_negate(op):
                # no invalid request exists: hypothesis would spend ~460 draws (~1 s) to
                # say so (Unsatisfiable), as it did for these before
                unsatisfiable.append(f"{op.method.upper()} {op.path}")
                continue

            @settings(
                max_examples=15,  # per route and mode (~800 requests in all)
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
            )
            @given(case=op.as_strategy(generation_mode=mode))
            def check(case) -> None:
                response = case.call(base_url=service.url, timeout=60)
                try:
                    case.validate_response(response, checks=[not_a_server_error])
                except BaseException as exc:  # noqa: BLE001 - collect all, report together
                    with lock:
                        failures.append(f"{case.method} {case.formatted_path}: {exc}"[:1500])

            try:
                check()
            except Unsatisfiable:  # nothing to get wrong (a route without parameters)
                assert mode == schemathesis.GenerationMode.NEGATIVE
                unsatisfiable.append(f"{op.method.upper()} {op.path}")
        # every route is fuzzed both ways but those with no parameter but a path string
        assert set(unsatisfiable) == NOTHING_TO_NEGATE, sorted(unsatisfiable)
        assert failures == [], "\n".join(failures) + service.log()[-3000:]
        assert "Traceback" not in service.log()
    finally:
        assert service.stop(timeout=60) == 0


def test_cli_server_mode_prints_what_the_store_mode_prints(tmp_path, fake):
    store = tmp_path / "store"
    corpus = tmp_path / "posts.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in documents(24)) + "\n")
    service = InProcessService(store, fake)
    env = {"GOOGLE_GEMINI_BASE_URL": fake.url, "GEMINI_API_KEY": VALID_KEY}
    remote = ["--server", service.url]
    try:
        busy = invoke_cli(["--store", str(store), "stats"], env=env)
        assert busy.returncode == 1 and f"--server {service.url}" in busy.stderr

        ingest = invoke_cli(
            [*remote, "ingest", "jsonl", str(corpus), "--id-key", "id", "--label-key", "label"]
            + ["--dims", str(DIMS), "--batch-size", "10"],
            env=env,
        )
        assert ingest.returncode == 0, ingest.stderr
        assert "24 documents: 0 cached, 24 embedded, 3 requests" in ingest.stdout
        rerun = invoke_cli(
            [*remote, "ingest", "jsonl", str(corpus), "--id-key", "id", "--label-key", "label"]
            + ["--dims", str(DIMS)],
            env=env,
        )
        assert "24 documents: 24 cached, 0 embedded, 0 requests" in rerun.stdout
        analyze = invoke_cli(
            [*remote, "analyze", "--k", "2", "--reduce", "pca", "--out", str(tmp_path / "r")]
        )
        assert analyze.returncode == 0, analyze.stderr
        assert (
            tmp_path / "r" / "report.md"
        ).is_file() and "24 documents, 2 clusters" in analyze.stdout
        remote_stats = invoke_cli([*remote, "stats", "--json"])
        remote_hits = invoke_cli(
            [*remote, "neighbors", "--id", "jsonl/posts/doc3", "-k", "4", "--json"]
        )
        remote_costs = invoke_cli([*remote, "costs", "--json"])
        assert remote_hits.returncode == 0, remote_hits.stderr
    finally:
        assert service.stop() == 0
    local_stats = invoke_cli(["--store", str(store), "stats", "--json"])
    local_hits = invoke_cli(
        ["--store", str(store), "neighbors", "--id", "jsonl/posts/doc3", "-k", "4", "--json"]
    )
    assert json.loads(remote_stats.stdout)["spaces"] == json.loads(local_stats.stdout)["spaces"]
    assert json.loads(remote_hits.stdout) == json.loads(local_hits.stdout)
    assert json.loads(remote_costs.stdout)[0]["requests"] == 3
    gone = invoke_cli([*remote, "stats"])
    assert gone.returncode == 1 and "no embedlab service answers" in gone.stderr


def test_serve_over_a_chroma_server_keeps_no_state_of_its_own(tmp_path, fake, chroma_server):
    service = RunningService(tmp_path / "unused", fake, store_args=["--chroma-url", chroma_server])
    try:
        report = service.ingest(documents(12), dims=DIMS)
        assert (report["embedded"], report["requests"]) == (12, 1)
        job = service.http.get("/api/v1/jobs").json()["jobs"][0]
        hits = service.http.get("/api/v1/neighbours", params={"id": "doc2", "k": 3}).json()
        assert len(hits["neighbours"]) == 3
    finally:
        assert service.stop() == 0
    assert not (tmp_path / "unused").exists()  # jobs, costs and vectors live in Chroma
    with embedlab.open(chroma_url=chroma_server, quiet=True) as lab:
        assert lab.costs()["texts_embedded"].tolist() == [12]
        assert [h["id"] for h in lab.store.artifacts.heads("job")] == [job["id"]]
        assert lab.neighbours("doc2", k=3)["id"].tolist() == [n["id"] for n in hits["neighbours"]]
