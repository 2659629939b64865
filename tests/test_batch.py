"""Issue 24: the Gemini Batch API, through the real google-genai SDK against the fake server.

Real Chroma (embedded) in a temp dir, the real SDK (inline and file jobs, uploads and
downloads on the wire), the fake's scripted states and per-line errors.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import warnings

import embedlab
import numpy as np
import pytest
from embedlab.errors import InvalidRequest, ProviderError, RequestRefused
from embedlab.ingest import batch as batch_module
from embedlab.ingest.pipeline import IngestCancelled
from embedlab.store.ledger import COST

from tests.conftest import invoke_cli, spawn_cli
from tests.fake_gemini import VALID_KEY, fake_vector

DIMS = 128
OPTS = {"provider": "gemini", "dims": DIMS}


def docs(n: int, start: int = 0, prefix: str = "d") -> list[dict]:
    return [
        {"id": f"{prefix}{i}", "text": f"text number {i} topic:{i % 3}", "label": f"l{i % 3}"}
        for i in range(start, start + n)
    ]


@pytest.fixture
def lab(tmp_path, gemini):
    with embedlab.open(tmp_path / "store", quiet=True) as opened:
        yield opened


def reopen(tmp_path):
    return embedlab.open(tmp_path / "store", quiet=True)


def test_submit_sends_exactly_the_missing_texts_and_a_rerun_while_pending_sends_nothing(
    lab, gemini
):
    lab.ingest(docs(4), **OPTS)  # 4 embedded online first
    online = len(gemini.requests)
    batch = docs(10) + [{"id": "copy", "text": "text number 7 topic:1"}]  # a repeated text
    report = lab.ingest(batch, batch=True, **OPTS)
    assert len(gemini.requests) == online  # nothing online
    assert len(gemini.batch_creates) == 1 and report.jobs == ["batches/fake0001"]
    sent = gemini.batch_creates[0]
    assert sent.texts == [f"text number {i} topic:{i % 3}" for i in range(4, 10)]
    assert {r["taskType"] for r in sent.requests} == {"CLUSTERING"}
    assert {r["outputDimensionality"] for r in sent.requests} == {DIMS}
    assert sent.display_name.startswith("embedlab-") and sent.source == "inline"
    assert (report.submitted, report.cached, report.waiting) == (6, 4, 7)

    again = lab.ingest(batch, batch=True, **OPTS)
    assert len(gemini.batch_creates) == 1
    assert (again.submitted, again.in_pending, again.jobs) == (0, 6, [])
    frame = lab.batches()
    assert frame[["job", "state", "texts"]].values.tolist() == [["batches/fake0001", "pending", 6]]


def test_collected_vectors_are_the_online_ones_and_collecting_twice_writes_nothing(
    lab, gemini, tmp_path
):
    lab.ingest(docs(6), batch=True, **OPTS)
    assert lab.collect().written == 0  # still pending: nothing to write
    gemini.finish_batches("SUCCEEDED")
    first = lab.collect()
    assert (first.collected, first.written, first.failed_lines) == (1, 6, 0)
    assert first.lines == ["batches/fake0001: SUCCEEDED, 6 vectors written to 6 documents"]
    ids, vectors = lab.vectors()
    for doc_id, vector in zip(ids, vectors):
        raw = fake_vector(f"text number {doc_id[1:]} topic:{int(doc_id[1:]) % 3}", DIMS)
        np.testing.assert_allclose(vector, raw / np.linalg.norm(raw), atol=1e-6)
    second = lab.collect()
    assert (second.checked, second.collected, second.written) == (0, 0, 0)
    batch_entries = [e for e in lab.store.artifacts.heads(COST) if e["kind"] == "batch"]
    assert len(batch_entries) == 1 and batch_entries[0]["texts"] == 6
    # interchangeable: an online ingest of the same texts under new ids pays nothing
    before = len(gemini.requests)
    report = lab.ingest(docs(6, prefix="other"), **OPTS)
    assert len(gemini.requests) == before and report.reused == 6


def test_failed_lines_stay_uncached_and_exactly_they_are_submitted_again(lab, gemini):
    gemini.failing_texts = {"text number 1 topic:1", "text number 4 topic:1"}
    lab.ingest(docs(6), batch=True, **OPTS)
    gemini.finish_batches("SUCCEEDED")
    collected = lab.collect()
    assert (collected.written, collected.failed_lines) == (4, 2)
    assert "2 lines failed (400 injected line error)" in collected.lines[0]
    assert sorted(lab.documents()["id"]) == ["d0", "d2", "d3", "d5"]
    (booked,) = [e for e in lab.store.artifacts.heads(COST) if e["kind"] == "batch"]
    assert (booked["texts"], booked["chars"]) == (
        4,
        sum(len(docs(6)[i]["text"]) for i in (0, 2, 3, 5)),
    )
    gemini.failing_texts = set()
    again = lab.ingest(docs(6), batch=True, **OPTS)
    assert again.submitted == 2 and again.cached == 4
    assert gemini.batch_creates[-1].texts == ["text number 1 topic:1", "text number 4 topic:1"]
    gemini.finish_batches()
    assert lab.collect().written == 2
    assert len(lab.documents()) == 6


@pytest.mark.parametrize("state", ["FAILED", "CANCELLED", "EXPIRED"])
def test_a_job_that_ends_without_vectors_releases_all_its_texts(lab, gemini, state):
    lab.ingest(docs(5), batch=True, batch_size=2, **OPTS)  # 3 jobs of 2, 2 and 1
    assert [len(b.requests) for b in gemini.batch_creates] == [2, 2, 1]
    gemini.finish_batches(state, names=["batches/fake0002"])
    gemini.finish_batches("SUCCEEDED", names=["batches/fake0001", "batches/fake0003"])
    report = lab.collect()
    assert (report.collected, report.written, report.released) == (2, 3, 2)
    word = state
    assert f"batches/fake0002: {word}: its 2 texts are released (submit them again)" in report.lines
    assert lab.batches().set_index("job")["state"]["batches/fake0002"] == state.lower()
    heads = [lab.store.artifacts.heads(k) for k in ("batch", "batch-docs", "batch-texts", COST)]
    assert VALID_KEY not in json.dumps(heads)  # the key is never stored
    again = lab.ingest(docs(5), batch=True, **OPTS)
    assert again.submitted == 2 and gemini.batch_creates[-1].texts == [
        "text number 2 topic:2",
        "text number 3 topic:0",
    ]


def test_a_crash_between_create_and_record_is_adopted_never_paid_twice(
    tmp_path, gemini, monkeypatch
):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies right after the job exists

    with reopen(tmp_path) as lab, monkeypatch.context() as patch:
        patch.setattr(batch_module, "record_created", crash)
        with pytest.raises(IngestCancelled):
            lab.ingest(docs(5), batch=True, **OPTS)
    assert len(gemini.batch_creates) == 1
    with reopen(tmp_path) as lab:
        assert lab.batches()["state"].tolist() == ["intent"]
        again = lab.ingest(docs(5), batch=True, **OPTS)  # lists the jobs, adopts, sends nothing
        assert again.submitted == 0 and again.in_pending == 5
        assert len(gemini.batch_creates) == 1 and gemini.batch_lists >= 1
        frame = lab.batches()
        assert frame[["job", "state"]].values.tolist() == [["batches/fake0001", "pending"]]
        gemini.finish_batches()
        assert lab.collect().written == 5


def test_an_intent_never_created_is_released_and_submitted_once(tmp_path, gemini, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # died after recording the intent, before the request

    with reopen(tmp_path) as lab, monkeypatch.context() as patch:
        patch.setattr(batch_module.GeminiBatches, "create", crash)
        with pytest.raises(IngestCancelled):
            lab.ingest(docs(3), batch=True, **OPTS)
    assert gemini.batch_creates == []
    with reopen(tmp_path) as lab:
        again = lab.ingest(docs(3), batch=True, **OPTS)
        assert again.submitted == 3 and len(gemini.batch_creates) == 1
        states = sorted(lab.batches()["state"])
        assert states == ["pending", "released"]


def test_a_large_job_goes_as_an_uploaded_file_and_comes_back_as_one(lab, gemini, monkeypatch):
    monkeypatch.setattr(batch_module, "INLINE_LIMIT_BYTES", 1_000)
    monkeypatch.setattr(batch_module, "INLINE_MARGIN_BYTES", 0)
    gemini.failing_texts = {"text number 3 topic:0"}
    report = lab.ingest(docs(12), batch=True, **OPTS)  # 12 * ~180 bytes > 1,000
    created = gemini.batch_creates[0]
    assert report.job_modes == ["file"] and created.source == "file"
    assert created.input_file in gemini.files and len(created.requests) == 12
    assert gemini.upload_chunk_keys == [None]  # chunks go to the upload URL, without the key
    gemini.finish_batches()
    collected = lab.collect()
    assert (collected.written, collected.failed_lines) == (11, 1) and gemini.downloads == 1
    assert "d3" not in set(lab.documents()["id"])


def test_refusals_come_before_anything_is_recorded(lab, gemini, monkeypatch):
    with pytest.raises(InvalidRequest, match="the local model has no batch API"):
        lab.ingest(docs(2), batch=True, provider="local")
    monkeypatch.setenv("GEMINI_API_KEY", "wrong")
    with pytest.raises(ProviderError, match="rejected the API key"):
        lab.ingest(docs(2), batch=True, **OPTS)
    monkeypatch.setenv("GEMINI_API_KEY", VALID_KEY)
    with pytest.raises(RequestRefused, match="does not know model 'gemini-embedding-009'"):
        lab.ingest(docs(2), batch=True, provider="gemini", model="gemini-embedding-009", dims=64)
    with pytest.raises(InvalidRequest, match=r"concurrency= does not apply to a batch ingest"):
        lab.ingest(docs(2), batch=True, concurrency=4, **OPTS)
    assert gemini.batch_creates == [] and lab.batches().empty
    assert lab.store.artifacts.heads("batch-docs") == []


def test_no_key_is_refused_before_recording(tmp_path, gemini, monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY")
    with reopen(tmp_path) as lab:
        with pytest.raises(ProviderError, match="no Gemini API key"):
            lab.ingest(docs(2), batch=True, **OPTS)
        assert lab.batches().empty


def test_dry_run_says_what_and_both_prices_and_records_nothing(lab, gemini):
    lab.ingest(docs(2), **OPTS)
    report = lab.ingest(docs(10), batch=True, dry_run=True, batch_size=3, **OPTS)
    assert (report.submitted, report.planned_jobs, report.cached) == (8, 3, 2)
    chars = sum(len(d["text"]) for d in docs(10)[2:])
    tokens = round(chars / 4)
    assert report.summary().startswith(
        f"would submit 8 texts in 3 batch jobs, est. ${0.075 * tokens / 1e6:.6f}".rstrip("0")
    )
    assert f"(online: ${0.15 * tokens / 1e6:.6f}".rstrip("0") in report.summary()
    assert gemini.batch_creates == [] and gemini.model_gets == 0 and lab.batches().empty


def test_the_ledger_books_batches_at_the_batch_price_and_price_overrides_both(lab, gemini):
    lab.ingest(docs(8), batch=True, **OPTS)
    gemini.finish_batches()
    lab.collect()
    row = lab.costs().iloc[0]
    tokens = round(sum(len(d["text"]) for d in docs(8)) / 4)
    assert (row.texts_batched, row.batch_estimated_tokens, row.texts_embedded) == (8, tokens, 0)
    assert row.batch_usd_per_1m_tokens == 0.075
    assert row.estimated_usd == round(0.075 * tokens / 1e6, 6)
    lab.prices.overrides = {"gemini-embedding-001": 0.4}
    assert lab.costs().iloc[0].batch_usd_per_1m_tokens == 0.2  # half the online price
    lab.prices.overrides = {"gemini-embedding-001": 0.4, "gemini-embedding-001:batch": 0.01}
    assert lab.costs().iloc[0].batch_usd_per_1m_tokens == 0.01


def test_cancel_releases_and_a_later_online_ingest_is_not_overwritten(lab, gemini):
    lab.ingest(docs(3), batch=True, **OPTS)
    row = lab.cancel_batch("batches/fake0001")
    assert row["state"] == "cancelled" and gemini.batch_cancels == ["batches/fake0001"]
    with pytest.raises(InvalidRequest, match="already ended"):
        lab.cancel_batch("fake0001")
    # a document re-texted online while its batch job runs keeps the newer text
    lab.ingest(docs(2, start=10), batch=True, **OPTS)
    lab.ingest([{"id": "d10", "text": "a newer text"}], **OPTS)
    gemini.finish_batches()
    lab.collect()
    texts = dict(zip(lab.documents()["id"], lab.documents()["text"]))
    assert texts == {"d10": "a newer text", "d11": "text number 11 topic:2"}


@pytest.mark.slow  # real child processes
def test_cli_batch_ingest_then_batches_wait_collects(tmp_path, gemini, capfd):
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs(5)))
    env = {"EMBEDLAB_BATCH_POLL_S": "0.05"}
    args = ["--store", str(tmp_path / "s"), "ingest", "jsonl", str(corpus), "--id-key", "id"]
    args += ["--provider", "gemini", "--dims", str(DIMS), "--batch"]
    # in process: every warning is recorded (not only a module's first), and the SDK's
    # 'experimental' notice is looked for there and on the real stdout/stderr too
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        done = invoke_cli(args, env=env)
    assert done.returncode == 0, done.stderr
    tokens = round(sum(len(d["text"]) for d in docs(5)) / 4)
    assert done.stdout.startswith(
        f"submitted 5 texts in 1 batch job, est. ${0.075 * tokens / 1e6:.6f}".rstrip("0")
        + f" at the batch price (online: ${0.15 * tokens / 1e6:.6f}".rstrip("0")
    )
    assert "xperimental" not in done.stdout + done.stderr
    gemini.batches["batches/fake0001"].script = ["RUNNING", "RUNNING", "SUCCEEDED"]
    with warnings.catch_warnings(record=True) as caught_more:
        warnings.simplefilter("always")
        listed = invoke_cli(["--store", str(tmp_path / "s"), "batches", "--json"], env=env)
        waited = invoke_cli(["--store", str(tmp_path / "s"), "batches", "--wait", "60"], env=env)
    caught += caught_more
    assert json.loads(listed.stdout)["jobs"][0]["state"] == "running"
    assert waited.returncode == 0, waited.stderr
    assert "batches/fake0001: SUCCEEDED, 5 vectors written to 5 documents" in waited.stderr
    lines = waited.stdout.strip().splitlines()
    assert lines[0].startswith("batches/fake0001  collected  5 texts  gemini:gemini-embedding-001")
    assert lines[-1].startswith("1 batch job (1 collected); 1 open batch job checked: 1 collected")
    assert "xperimental" not in waited.stdout + waited.stderr
    outside = capfd.readouterr()
    assert "xperimental" not in outside.out + outside.err + "".join(str(w.message) for w in caught)


@pytest.mark.slow  # real child processes
def test_ctrl_c_during_wait_keeps_what_was_collected(tmp_path, gemini):
    with reopen(tmp_path) as lab:
        lab.ingest(docs(4), batch=True, batch_size=2, **OPTS)
    gemini.finish_batches(names=["batches/fake0001"])  # the other one never finishes
    env = {"EMBEDLAB_BATCH_POLL_S": "0.1"}
    proc = spawn_cli(
        ["--store", str(tmp_path / "store"), "batches", "--wait"],
        env=env,
        # Ctrl-C reaches it even where this process ignores SIGINT (as test_cli's does)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while gemini.batch_gets < 4:  # it has collected the first and polls the second
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:  # a failed wait leaves no child polling behind
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted: 2 batch jobs (1 collected, 1 pending)" in err
    with reopen(tmp_path) as lab:
        assert sorted(lab.documents()["id"]) == ["d0", "d1"]
        gemini.finish_batches()
        assert lab.collect().written == 2


def test_a_job_gone_at_the_provider_releases_its_texts(lab, gemini):
    lab.ingest(docs(3), batch=True, **OPTS)
    del gemini.batches["batches/fake0001"]  # deleted in AI Studio, say
    report = lab.collect()
    assert report.released == 3 and lab.batches()["state"].tolist() == ["expired"]
    assert "NOT_FOUND: its 3 texts are released" in report.lines[0]


@pytest.mark.slow  # a real `chroma run` server
def test_on_a_chroma_server_an_unmatched_intent_waits_out_its_grace(
    chroma_server, gemini, monkeypatch
):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with embedlab.open(chroma_url=chroma_server, quiet=True) as lab, monkeypatch.context() as p:
        p.setattr(batch_module.GeminiBatches, "create", crash)
        with pytest.raises(IngestCancelled):
            lab.ingest(docs(3), batch=True, **OPTS)
    with embedlab.open(chroma_url=chroma_server, quiet=True) as lab:
        # another process may be creating it right now: held, not released, not resent
        held = lab.ingest(docs(3), batch=True, **OPTS)
        assert (held.submitted, held.in_pending) == (0, 3) and gemini.batch_creates == []
        monkeypatch.setattr(batch_module, "INTENT_GRACE_S", 0.0)
        again = lab.ingest(docs(3), batch=True, **OPTS)
        assert again.submitted == 3 and len(gemini.batch_creates) == 1


def test_jobs_are_split_by_count_and_go_as_files_past_the_inline_limit(monkeypatch):
    from embedlab.ingest.batch import split_jobs

    assert split_jobs(["a"] * 5, 2) == [(0, 2, "inline"), (2, 4, "inline"), (4, 5, "inline")]
    monkeypatch.setattr(batch_module, "INLINE_LIMIT_BYTES", 2_000)
    monkeypatch.setattr(batch_module, "INLINE_MARGIN_BYTES", 0)
    ascii_text, accented = "x" * 300, "é" * 300  # 300 vs 1,800 bytes as escaped JSON
    assert split_jobs([ascii_text] * 4, 10) == [(0, 4, "inline")]
    assert split_jobs([accented] * 2, 10) == [(0, 2, "file")]
    monkeypatch.setattr(batch_module, "FILE_LIMIT_BYTES", 4_000)
    assert split_jobs([accented] * 5, 10) == [(0, 2, "file"), (2, 4, "file"), (4, 5, "inline")]


def test_an_online_ingest_while_a_batch_is_pending_does_not_pay_for_its_texts_again(lab, gemini):
    """Found in a new-user trial: the online ingest paid for texts a pending job carried."""
    lab.ingest(docs(12), batch=True, **OPTS)
    online = len(gemini.requests)
    report = lab.ingest(docs(4) + docs(2, start=40), **OPTS)  # 4 in the job, 2 new
    assert (report.in_batch, report.embedded) == (4, 2)
    assert [t for r in gemini.requests[online:] for t in r.texts] == [
        "text number 40 topic:1",
        "text number 41 topic:2",
    ]
    gemini.finish_batches("SUCCEEDED")
    lab.collect()
    after = len(gemini.requests)
    again = lab.ingest(docs(4), **OPTS)  # collected: the same texts cost nothing now
    assert (again.cached + again.reused, again.embedded, len(gemini.requests)) == (4, 0, after)


def test_a_rejected_key_mid_ingest_is_a_provider_key_error(tmp_path, gemini, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "a-wrong-key")
    with embedlab.open(tmp_path / "store", quiet=True) as opened:
        with pytest.raises(embedlab.ProviderKeyError) as refused:
            opened.ingest(["a", "b"], **OPTS)
    assert isinstance(refused.value, embedlab.IngestError)  # its report says what is saved
