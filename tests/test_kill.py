"""SIGKILL mid-ingest, many times over: the store reopens whole, holds no duplicate or
partial record, and a re-run finishes the job without embedding anything twice."""

from embedlab.store import Store

from tests.chaos import audit_store, kill_loop, write_jsonl
from tests.conftest import invoke_cli, jsonl_ingest_args
from tests.fake_gemini import VALID_KEY, FakeGemini

N_DOCS = 1500
BATCH = 20
DIMS = 128
KILLS = 15


def test_repeated_sigkill_loses_nothing_and_duplicates_nothing(tmp_path):
    corpus = tmp_path / "posts.jsonl"
    expected = write_jsonl(corpus, N_DOCS)
    store_path = tmp_path / "store"
    with FakeGemini(latency=0.05) as server:
        env = {"GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": VALID_KEY}
        args = jsonl_ingest_args(
            store_path, corpus, "--batch-size", str(BATCH), "--dims", str(DIMS)
        )
        loop = kill_loop(args, env, server, runs=KILLS, seed=7)
        assert loop.killed >= KILLS - 2 and loop.finished == 0

        audit = audit_store(store_path, expected, DIMS)  # opens after the last kill
        assert (audit.duplicates, audit.corrupt, audit.unknown) == (0, 0, 0)
        assert 0 < audit.stored < N_DOCS
        # at most the batches in flight at each kill were paid for and not saved
        assert loop.delivered_texts - audit.stored <= loop.killed * 4 * BATCH
        # the kills are real processes; the check and the re-run that follow are not what
        # is tested as processes, so they run in this one (repair still runs each Chroma
        # step in a child of its own)
        check = invoke_cli(["--store", str(store_path), "repair", "--check"])
        assert check.returncode == 0 and "0 damaged" in check.stdout, check.stdout

        rerun = invoke_cli(args, env=env)
        assert rerun.returncode == 0, rerun.stderr
        summary = f"{N_DOCS} documents: {audit.stored} cached, {N_DOCS - audit.stored} embedded"
        assert summary in rerun.stdout
        sent = sum(len(r.texts) for r in server.ok_requests)
        assert sent - loop.delivered_texts == N_DOCS - audit.stored  # nothing stored re-sent
    assert audit_store(store_path, expected, DIMS).stored == N_DOCS
    with Store.open_local(store_path) as store:
        (space,) = store.spaces()
        config = store.collection(space)._col.configuration["hnsw"]
        assert config["sync_threshold"] == 100  # a kill while persisting is healed
