"""Several processes at once: two ingests on one embedded store (the second is told the
store is busy, or waits with --wait), and several clients of one Chroma server."""

from __future__ import annotations

import subprocess
import time

from tests.chaos import audit_store, write_jsonl
from tests.conftest import invoke_cli, spawn_cli
from tests.fake_gemini import VALID_KEY, FakeGemini

DIMS = 128


def corpus_slice(folder, start: int, stop: int) -> tuple:
    """Documents start..stop-1 under ids shared by every slice (one --name: successive
    exports of one dataset)."""
    folder.mkdir()
    path = folder / "posts.jsonl"
    expected = write_jsonl(path, stop)
    lines = path.read_text().splitlines()[start:stop]
    path.write_text("\n".join(lines))
    return path, {k: v for k, v in expected.items() if int(k.rsplit("/", 1)[1]) >= start}


def ingest_args(store: list[str], corpus, *extra: str) -> list[str]:
    return [*store, *extra, "ingest", "jsonl", str(corpus), "--id-key", "id", "--name", "posts",
            "--dims", str(DIMS), "--batch-size", "20"]  # fmt: skip


def start_and_wait_for_first_request(args, env, server):
    first = spawn_cli(args, env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not server.requests and first.poll() is None:
        time.sleep(0.01)
    return first


def test_second_ingest_on_an_embedded_store_is_busy_or_waits(tmp_path):
    corpus_a, expected_a = corpus_slice(tmp_path / "a", 0, 600)
    corpus_b, expected_b = corpus_slice(tmp_path / "b", 300, 900)
    store = ["--store", str(tmp_path / "store")]
    with FakeGemini(latency=0.05) as server:
        env = {"GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": VALID_KEY}
        first = start_and_wait_for_first_request(ingest_args(store, corpus_a), env, server)
        busy = invoke_cli(ingest_args(store, corpus_b), env=env)  # a second process: this one
        assert busy.returncode == 1 and "Traceback" not in busy.stderr
        (line,) = [x for x in busy.stderr.splitlines() if x.startswith("Error:")]
        assert "is busy" in line and f"pid {first.pid}" in line and "--wait" in line
        assert first.wait(timeout=120) == 0

        server.requests.clear()
        corpus_c, expected_c = corpus_slice(tmp_path / "c", 900, 1200)
        first = start_and_wait_for_first_request(ingest_args(store, corpus_c), env, server)
        waited = invoke_cli(ingest_args(store, corpus_b, "--wait", "120"), env=env)
        assert first.wait(timeout=120) == 0
        assert waited.returncode == 0, waited.stderr
        assert "600 documents: 300 cached, 300 embedded" in waited.stdout
        sent = [t for r in server.requests for t in r.texts]
        assert len(sent) == len(set(sent)) == 600  # corpus c, then b's new half; once each
    audit = audit_store(tmp_path / "store", expected_a | expected_b | expected_c, DIMS)
    assert (audit.stored, audit.duplicates, audit.corrupt, audit.unknown) == (1200, 0, 0, 0)


def test_several_clients_of_one_chroma_server(tmp_path, chroma_server):
    slices = [corpus_slice(tmp_path / f"c{i}", i * 200, i * 200 + 400) for i in range(3)]
    expected = {k: v for _, part in slices for k, v in part.items()}
    store = ["--chroma-url", chroma_server]
    with FakeGemini(latency=0.05) as server:
        env = {"GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": VALID_KEY}
        clients = [
            spawn_cli(ingest_args(store, path), env, stdout=subprocess.PIPE, text=True)
            for path, _ in slices
        ]
        outputs = [c.communicate(timeout=180)[0] for c in clients]
        assert [c.returncode for c in clients] == [0, 0, 0], outputs
        sent = [t for r in server.ok_requests for t in r.texts]
    assert set(sent) == set(expected.values())
    audit = audit_store(chroma_server, expected, DIMS)
    assert (audit.stored, audit.duplicates, audit.corrupt, audit.unknown) == (800, 0, 0, 0)
    # a re-run by any client finds everything cached
    again = invoke_cli(ingest_args(store, slices[1][0]), env=env)  # not a process test
    assert "400 documents: 400 cached, 0 embedded, 0 requests" in again.stdout
