"""The update through the CLI, the route (in process), and `embedlab serve --follow` with
its event stream (a real uvicorn on loopback, the real SDK against the fake Gemini)."""

from __future__ import annotations

import json
import threading
import time

import embedlab
import httpx
import pytest
from click.testing import CliRunner
from embedlab.cli import cli
from embedlab.lab import Lab

from tests.builders import GROUPS, write
from tests.fake_gemini import FakeGemini
from tests.service_helpers import InProcessService, documents

DIMS = 128


@pytest.fixture
def lab(store):
    for group in GROUPS:
        write(store, group, 0, 30)
    return Lab(store, quiet=True)


def test_cli_update_latest_prints_the_report_and_writes_files(store_path, store, lab, tmp_path):
    a = lab.analyze(k=3, reduce="pca")
    write(store, "space", 30, 4)
    store.close()
    out = tmp_path / "report"
    runner = CliRunner()
    result = runner.invoke(
        cli, ["--store", str(store_path), "analyze", "--update", "latest", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"update of analysis {a.id}: kept 90, added 4, removed 0, changed 0" in result.output
    assert "drift: 4.3% of the documents placed since the last fit" in result.output
    assert "refit advised: no" in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith(f"updated {a.id} -> ") and "90 kept, 4 added" in last
    assert (out / "points.csv").read_text().count("\n") == 95  # header + 94 documents
    # bad uses: one line saying what to do, no traceback
    result = runner.invoke(
        cli, ["--store", str(store_path), "analyze", "--update", "latest", "--k", "5"]
    )
    assert result.exit_code == 2 and "drop --k" in result.output
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["--store", str(store_path), "analyze", "--update", "nope"])
    assert result.exit_code == 1 and "no stored analysis 'nope'" in result.output
    result = runner.invoke(cli, ["--store", str(store_path), "analyze", "--refit"])
    assert result.exit_code == 2 and "--refit goes with --update" in result.output


def test_cli_analyze_again_starts_from_the_earlier_analysis_unless_fresh(store_path, store, lab):
    a = lab.analyze(k=3, reduce="pca")
    write(store, "med", 30, 3)
    store.close()
    runner = CliRunner()
    args = ["--store", str(store_path), "analyze", "--k", "3", "--reduce", "pca", "--out"]
    result = runner.invoke(cli, [*args, str(store_path.parent / "r1")])
    assert result.exit_code == 0, result.output
    assert f"update of analysis {a.id}: kept 90, added 3, removed 0, changed 0" in result.output
    assert f"refit: started from analysis {a.id}" in result.output
    assert "100.0% keep their cluster number" in result.output
    result = runner.invoke(cli, [*args, str(store_path.parent / "r2"), "--fresh"])
    assert result.exit_code == 0, result.output
    assert "update of analysis" not in result.output and "stored as analysis" in result.output
    result = runner.invoke(
        cli, ["--store", str(store_path), "analyze", "--update", "latest", "--fresh"]
    )
    assert result.exit_code == 2 and "drop --fresh" in result.output


def test_latest_names_the_newest_analysis_the_same_way_in_the_lab_and_the_cli(
    store_path, store, lab
):
    """The word "latest" is resolved by the library (both twins share it); the CLI prints."""
    from embedlab.errors import NotFound

    with pytest.raises(NotFound, match="no stored analysis of .* to update"):
        lab.analysis_to_update("latest")
    store.close()
    runner = CliRunner()
    result = runner.invoke(cli, ["--store", str(store_path), "analyze", "--update", "latest"])
    assert result.exit_code == 1 and "to update; run `embedlab analyze` first" in result.output
    assert "Traceback" not in result.output
    lab = embedlab.open(store_path, quiet=True)
    first = lab.analyze(k=3, reduce="pca")
    second = lab.analyze(k=2, reduce="pca")
    assert lab.analysis_to_update("latest") == second.id != first.id
    assert lab.analysis_to_update(first.id) == first.id
    assert first.update_lines() == []  # not an update: nothing to say
    updated = lab.update(first)
    lines = updated.update_lines()
    assert lines[0] == (
        f"update of analysis {first.id}: kept 90, added 0, removed 0, changed 0 "
        f"(stored as analysis {updated.id})"
    )
    assert lines[-1] == "refit advised: no"


def test_cli_refit_reports_disparity(store_path, store, lab, tmp_path):
    a = lab.analyze(k=3, reduce="pca")
    write(store, "med", 30, 4)
    store.close()
    result = CliRunner().invoke(
        cli,
        ["--store", str(store_path), "analyze", "--update", a.id, "--refit",
         "--out", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "refit: asked" in result.output
    assert "Procrustes disparity" in result.output and "100.0% keep their cluster" in result.output
    assert result.output.strip().splitlines()[-1].startswith(f"refitted {a.id} -> ")


def test_update_route_in_process(lab, store):
    from embedlab.service.app import create_app
    from starlette.testclient import TestClient

    a = lab.analyze(k=3, reduce="pca")
    write(store, "crypt", 30, 2)
    with TestClient(create_app(lab)) as http:
        response = http.post(f"/api/v1/analyses/{a.id}/update", params={"wait": "true"}, json={})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["parent"] == a.id and body["documents"] == 92
        assert body["update_report"]["added"] == 2 and body["update_report"]["kept"] == 90
        assert http.get(f"/api/v1/analyses/{a.id}/successor").json()["successor"] == body["id"]
        head = http.get(f"/api/v1/analyses/{body['id']}").json()
        assert head["parent"] == a.id
        missing = http.post("/api/v1/analyses/nope/update", json={"refit": False})
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        bad = http.post(f"/api/v1/analyses/{a.id}/update", json={"refit": "maybe"})
        assert bad.status_code in (400, 422)
        assert bad.headers["content-type"].startswith("application/problem+json")
        queued = http.post(f"/api/v1/analyses/{a.id}/update", json={"refit": True})
        assert queued.status_code == 202 and "job" in queued.json()
        http.app.state.service.jobs.wait(queued.json()["job"], 60)  # before the store closes


@pytest.mark.slow
def test_serve_follow_updates_the_newest_analysis_and_streams_events(tmp_path):
    with FakeGemini() as fake:
        service = InProcessService(tmp_path / "store", fake, "--follow")
        try:
            service.ingest(documents(40), dims=DIMS)
            response = service.http.post(
                "/api/v1/analyses", params={"wait": "true"}, json={"k": 2, "reduce": "pca"}
            )
            assert response.status_code == 200, response.text
            first = response.json()["analysis"]
            seen: list[tuple[str, dict]] = []
            opened = threading.Event()

            def listen() -> None:
                with httpx.stream("GET", f"{service.url}/api/v1/events", timeout=60) as stream:
                    event = None
                    for line in stream.iter_lines():
                        if line.startswith("event:"):
                            event = line[6:].strip()
                        elif line.startswith("data:"):
                            seen.append((event, json.loads(line[5:])))
                            opened.set()
                            if event == "analysis-updated":
                                return

            reader = threading.Thread(target=listen, daemon=True)
            reader.start()
            assert opened.wait(30)
            requests_before = len(fake.ok_requests)
            service.ingest(documents(3, 40), dims=DIMS)
            assert len(fake.ok_requests) == requests_before + 1  # the 3 new texts only
            reader.join(60)
            kinds = [kind for kind, _ in seen]
            assert kinds[0] == "hello" and "ingest" in kinds and kinds[-1] == "analysis-updated"
            ingest = dict(seen)["ingest"]
            assert ingest["changed"] is True and ingest["documents"] == 3
            updated = dict(seen)["analysis-updated"]
            assert updated["parent"] == first
            successor = service.http.get(f"/api/v1/analyses/{first}/successor").json()
            assert successor["successor"] == updated["analysis"]
            body = service.http.get(f"/api/v1/analyses/{updated['analysis']}").json()
            assert body["documents"] == 43 and body["update_report"]["added"] == 3
            assert len(fake.ok_requests) == requests_before + 1  # the update asked nothing
            # the HTTP client answers the same call with the same result
            from embedlab.client import RemoteLab

            remote = RemoteLab(service.url).update(first)
            assert remote.parent == first and remote.update_report["added"] == 3
            assert remote.update_report["kept"] == 40
            # an ingest that changes nothing updates nothing
            service.ingest(documents(3, 40), dims=DIMS)
            time.sleep(1.0)
            newest = service.http.get(f"/api/v1/analyses/{first}/successor").json()
            assert newest["successor"] == remote.id  # no follow-up update after a no-op
        finally:
            service.stop()
