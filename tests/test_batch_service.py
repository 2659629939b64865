"""Issue 24 on the service: `"batch": true` ingest jobs wait until the provider finishes,
the service's own poller collects (also after a restart), /api/v1/batches, and the
`RemoteLab` answering batches()/collect()/ingest(batch=True)."""

from __future__ import annotations

import json
import signal
import time

import embedlab
import pytest
from embedlab.client import RemoteLab
from embedlab.errors import NotFound
from embedlab.service.app import create_app
from fastapi.testclient import TestClient

from tests.fake_gemini import FakeGemini
from tests.service_helpers import RunningService, documents

DIMS = 128
BATCH = {"provider": "gemini", "dims": DIMS, "batch": True}


@pytest.fixture
def fake():
    with FakeGemini() as server:
        yield server


def test_a_batch_ingest_job_waits_then_is_done_once_collected(tmp_path, gemini, monkeypatch):
    monkeypatch.setenv("EMBEDLAB_BATCH_POLL_S", "3600")  # this test collects by hand
    with embedlab.open(tmp_path / "store", quiet=True) as lab:
        client = TestClient(create_app(lab))
        body = {"documents": documents(6), **BATCH}
        answer = client.post("/api/v1/ingest", params={"wait": "true"}, json=body)
        assert answer.status_code == 200, answer.text
        assert (answer.json()["submitted"], answer.json()["jobs"]) == (6, ["batches/fake0001"])
        job_id = answer.json()["job"]
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert (job["state"], job["batches"]) == ("waiting", ["batches/fake0001"])
        listed = client.get("/api/v1/batches").json()["batches"]
        assert [(b["job"], b["state"], b["texts"]) for b in listed] == [
            ("batches/fake0001", "pending", 6)
        ]
        gemini.finish_batches()
        collected = client.post("/api/v1/batches/collect").json()
        assert (collected["collected"], collected["written"]) == (1, 6)
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert (job["state"], job["written"]) == ("done", 6)
        assert job["batch_outcome"] == {"batches/fake0001": "collected"}
        costs = client.get("/api/v1/costs").json()
        row = costs["spaces"][0]
        assert (row["texts_batched"], row["batch_usd_per_1m_tokens"]) == (6, 0.075)
        assert costs["total"]["texts_batched"] == 6

        lines = "".join(
            json.dumps({"key": f"u{i}", "text": f"upload {i}"}) + "\n" for i in range(3)
        )
        uploaded = client.post(
            "/api/v1/ingest",
            params={
                "wait": "true",
                "batch": "true",
                "provider": "gemini",
                "dims": DIMS,
                "id": "key",
            },
            content=lines,
            headers={"content-type": "application/x-ndjson"},
        )
        assert uploaded.status_code == 200, uploaded.text
        assert (uploaded.json()["submitted"], uploaded.json()["jobs"]) == (3, ["batches/fake0002"])

        refused = client.post(
            "/api/v1/ingest", json={"documents": documents(2), "provider": "local", "batch": True}
        )
        assert refused.status_code == 400
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert "the local model has no batch API" in refused.json()["detail"]


def test_a_failed_batch_job_fails_the_waiting_ingest(tmp_path, gemini, monkeypatch):
    monkeypatch.setenv("EMBEDLAB_BATCH_POLL_S", "3600")
    with embedlab.open(tmp_path / "store", quiet=True) as lab:
        client = TestClient(create_app(lab))
        body = {"documents": documents(3), **BATCH}
        job_id = client.post("/api/v1/ingest", params={"wait": "true"}, json=body).json()["job"]
        gemini.finish_batches("EXPIRED")
        client.post("/api/v1/batches/collect")
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert job["state"] == "failed" and "ended without vectors (expired)" in job["error"]

        body = {"documents": documents(3), **BATCH}  # released: submitted again, then cancelled
        job_id = client.post("/api/v1/ingest", params={"wait": "true"}, json=body).json()["job"]
        assert len(gemini.batch_creates) == 2
        cancelled = client.delete(f"/api/v1/jobs/{job_id}")
        assert cancelled.status_code == 202 and cancelled.json()["state"] == "cancelled"
        assert gemini.batch_cancels == ["batches/fake0002"]
        states = [b["state"] for b in client.get("/api/v1/batches").json()["batches"]]
        assert states == ["cancelled", "expired"]


@pytest.mark.slow  # two real `embedlab serve` processes
def test_the_poller_collects_across_a_restart_and_the_remote_lab_answers(tmp_path, fake):
    env = {"EMBEDLAB_BATCH_POLL_S": "0.2"}
    store = tmp_path / "store"
    service = RunningService(store, fake, env=env)
    try:
        remote = RemoteLab(service.url)
        report = remote.ingest(documents(8), batch=True, provider="gemini", dims=DIMS)
        assert (report.submitted, report.jobs) == (8, ["batches/fake0001"])
        assert "submitted 8 texts in 1 batch job" in report.summary()
        job = service.http.get("/api/v1/jobs").json()["jobs"][0]
        assert job["state"] == "waiting"
        assert remote.batches()["state"].tolist() == ["pending"]
        again = remote.ingest(documents(8), batch=True, provider="gemini", dims=DIMS)
        assert again.submitted == 0 and len(fake.batch_creates) == 1
        remote.close()
    finally:
        assert service.stop(signal.SIGTERM) == 0
    fake.finish_batches()  # the provider finishes while the service is down

    service = RunningService(store, fake, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            jobs = service.http.get("/api/v1/jobs").json()["jobs"]
            if all(j["state"] == "done" for j in jobs):
                break
            assert time.monotonic() < deadline, jobs
            time.sleep(0.2)
        assert len(jobs) == 2 and all(j["written"] == 8 for j in jobs)
        assert service.http.get("/api/v1/documents").json()["total"] == 8
        remote = RemoteLab(service.url)
        assert remote.batches()["state"].tolist() == ["collected"]
        assert remote.collect().written == 0  # collected once, by the poller
        with pytest.raises(NotFound, match="no batch job"):
            remote.cancel_batch("batches/nope")
        remote.close()
    finally:
        service.stop()
    assert len(fake.batch_creates) == 1
