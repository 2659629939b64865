"""Hygiene: the API key never leaves the environment; foreign stores and spaces are refused,
not mixed; document text cannot inject into reports or plots; file sources stay inside
their folder."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
from embedlab.analyze.run import AnalysisOptions, analyze_corpus
from embedlab.analyze.select import Selection, load_corpus
from embedlab.store import Document, Space, Store, StoreError

from tests.conftest import invoke_cli, run_cli
from tests.fake_gemini import FakeGemini, Fault

SECRET = "AIzaSy-SECRET-never-print-me-0123456789"
WRONG = "AIzaSy-WRONG-never-print-me-either-987"


def everything_written(*folders) -> bytes:
    return b"".join(
        path.read_bytes() for folder in folders for path in folder.rglob("*") if path.is_file()
    )


def test_the_api_key_is_never_printed_reported_or_stored(tmp_path, capfd, caplog, fast_retries):
    corpus = tmp_path / "posts.jsonl"
    corpus.write_text(
        "\n".join(
            json.dumps({"id": i, "text": f"post {i} topic:t{i % 2}", "label": f"t{i % 2}"})
            for i in range(40)
        )
    )
    store = ["--store", str(tmp_path / "store")]
    outputs = []
    with FakeGemini(valid_key=SECRET) as server:
        env = {"GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": SECRET}
        server.faults.extend([Fault(status=500), Fault(status=429, retry_after=0)])
        server.faults.append(Fault(reset=True))
        ingest = [*store, "ingest", "jsonl", str(corpus), "--id-key", "id", "--label-key", "label"]
        for args in (
            [*ingest, "--dims", "128", "--batch-size", "10"],
            [*store, "stats", "--json"],
            [*store, "analyze", "--k", "2", "--reduce", "pca", "--out", str(tmp_path / "report")],
            [*store, "neighbours", "post about t1", "-k", "3"],
            [*store, "repair", "--check"],
        ):
            done = invoke_cli(args, env=env)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout + done.stderr)
        rejected = invoke_cli([*ingest, "--dims", "256"], env={**env, "GEMINI_API_KEY": WRONG})
        assert rejected.returncode == 1
        assert "Gemini rejected the API key: check GEMINI_API_KEY" in rejected.stderr
        outputs.append(rejected.stdout + rejected.stderr)
        assert {r.api_key for r in server.requests} == {SECRET, WRONG}  # it was really used
    # in process, so also whatever reached the real stdout/stderr and every log record
    outside = capfd.readouterr()
    printed = "\n".join([*outputs, outside.out, outside.err, caplog.text])
    written = everything_written(tmp_path / "store", tmp_path / "report")
    for key in (SECRET, WRONG):
        assert key not in printed
        assert key.encode() not in written


def test_a_store_from_another_version_is_refused_untouched(tmp_path):
    root = tmp_path / "store"
    with Store.open_local(root, create=True):
        pass
    (root / "embedlab.json").write_text(json.dumps({"format": 99}))
    before = everything_written(root)
    done = run_cli(["--store", str(root), "stats"])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "written by another embedlab version (store format 99" in done.stderr
    assert everything_written(root) == before


def test_a_collection_holding_another_space_is_refused_not_mixed(store):
    wanted = Space("gemini", "gemini-embedding-001", "CLUSTERING", 768)
    impostor = Space("gemini", "gemini-embedding-001", "RETRIEVAL_DOCUMENT", 768)
    store.client.create_collection(
        wanted.collection_name,
        metadata={"embedlab_format": 1, **{k: v for k, v in vars(impostor).items()}},
        embedding_function=None,
    )
    with pytest.raises(StoreError, match="does not hold gemini:gemini-embedding-001"):
        store.collection(wanted, create=True)


def test_labels_and_text_cannot_inject_into_plots_or_report(store, tmp_path):
    space = Space("fake", "m", "none", 8)
    labels = [r"$\notacommand$ 5", "_hidden", "<b>bold</b>", "a|b"]
    docs = [
        Document(
            f"x/{i}",
            f"text {i} ![img](http://evil/{i}) <img src=x onerror=alert(1)>",
            "x",
            labels[i % 4],
        )  # fmt: skip
        for i in range(40)
    ]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.collection(space, create=True).write(docs, vectors, [False] * 40)
    out = tmp_path / "out"
    analyze_corpus(load_corpus(store, space, Selection()), AnalysisOptions(k=4), out)
    assert (out / "map_by_label.png").stat().st_size > 0 and (out / "confusion.png").is_file()
    report = (out / "report.md").read_text()
    assert not re.search(r"(?<!\\)[<>]", report)  # no raw HTML: every bracket escaped
    assert "](http" not in report and "\\<img src=x" in report
    assert "a\\|b" in report


def test_file_sources_never_leave_their_folder(tmp_path, gemini):
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "keys.txt").write_text("private notes")
    folder = tmp_path / "corpus"
    (folder / "inner").mkdir(parents=True)
    (folder / "inner" / "ok.txt").write_text("a public post")
    os.symlink(outside, folder / "linked-dir")
    os.symlink(outside / "keys.txt", folder / "inner" / "linked-file.txt")
    os.symlink(folder / "inner" / "ok.txt", folder / "alias.txt")  # inside: fine
    done = run_cli(
        ["--store", str(tmp_path / "store"), "ingest", "files", str(folder), "--dims", "128"],
        env={"GOOGLE_GEMINI_BASE_URL": gemini.url},
    )
    assert done.returncode == 0, done.stderr
    sent = {t for r in gemini.requests for t in r.texts}
    assert sent == {"a public post"}
    assert "1 skipped (1 link outside the folder)" in done.stdout
