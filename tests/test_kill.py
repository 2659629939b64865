"""SIGKILL mid-ingest, repeatedly: the store reopens whole and a re-run finishes the job."""

import json
import random
import signal
import subprocess
import time

import numpy as np

from store import Store
from tests.conftest import jsonl_ingest_args, run_cli, spawn_cli
from tests.fake_gemini import VALID_KEY, FakeGemini, fake_vector

N_DOCS = 400
BATCH = 20


def test_repeated_sigkill_loses_nothing_and_duplicates_nothing(tmp_path):
    corpus = tmp_path / "posts.jsonl"
    corpus.write_text(
        "\n".join(json.dumps({"id": i, "text": f"post number {i}"}) for i in range(N_DOCS))
    )
    store_path = tmp_path / "store"
    rng = random.Random(7)
    with FakeGemini(latency=0.05) as server:
        env = {"GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": VALID_KEY}
        args = jsonl_ingest_args(
            store_path, corpus, "--batch-size", str(BATCH), "--dims", "128", "--concurrency", "2"
        )
        kills = 0
        for _ in range(6):
            child = spawn_cli(args, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            target = len(server.ok_requests) + rng.randint(1, 4)  # kill after 1-4 answers
            while len(server.ok_requests) < target and child.poll() is None:
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))  # land anywhere: mid-write, mid-request, idle
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                kills += 1
            child.wait()
        assert kills >= 3
        sent_before_rerun = sum(len(r.texts) for r in server.ok_requests)

        with Store.open_local(store_path) as store:  # opens after the kills
            (space,) = store.spaces()
            col = store.collection(space)._col
            got = col.get(include=["metadatas", "documents", "embeddings"])
            assert len(got["ids"]) == len(set(got["ids"]))
            for text, meta, vector in zip(got["documents"], got["metadatas"], got["embeddings"]):
                expected = fake_vector(text, 128)
                np.testing.assert_allclose(vector, expected / np.linalg.norm(expected), atol=1e-5)
                assert meta["content_hash"] and meta["chars"] == len(text)
            saved = len(got["ids"])
            if saved:  # the vector index answers queries after the crash
                hits = col.query(query_embeddings=[got["embeddings"][0]], n_results=1)
                assert hits["ids"][0][0] == got["ids"][0]

        rerun = run_cli(args, env=env)
        assert rerun.returncode == 0, rerun.stderr
        assert f"{N_DOCS} documents: {saved} cached, {N_DOCS - saved} embedded" in rerun.stdout
        embedded_by_rerun = sum(len(r.texts) for r in server.ok_requests) - sent_before_rerun
        assert embedded_by_rerun == N_DOCS - saved  # nothing stored was embedded again
        with Store.open_local(store_path) as store:
            assert store.collection(space).count() == N_DOCS
