"""The command line: summaries, JSON stats, one-line errors, no tracebacks."""

import json
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from embedlab.cli import cli

from tests.conftest import (
    REPO,
    cli_env,
    invoke_cli,
    jsonl_ingest_args,
    spawn_cli,
)
from tests.fake_gemini import VALID_KEY, FakeGemini


def invoke(args, **kwargs):
    result = CliRunner().invoke(cli, args, catch_exceptions=False, **kwargs)
    return result


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "posts.jsonl"
    rows = [
        {"id": i, "text": f"post {i} topic:{'ab'[i % 2]}", "label": "ab"[i % 2]} for i in range(250)
    ]
    rows.append({"id": 999, "text": "   "})
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    return path


def test_ingest_summary_and_cached_rerun(store_path, gemini, corpus):
    args = jsonl_ingest_args(store_path, corpus, "--label-key", "label")
    first = invoke(args + ["--dims", "256"])
    assert first.exit_code == 0, first.output
    assert (
        "provider: gemini:gemini-embedding-001 (256 dims, CLUSTERING) (GEMINI_API_KEY is set)"
        in first.output
    )
    last = first.output.strip().splitlines()[-1]
    assert last.startswith(
        "250 documents: 0 cached, 250 embedded, 3 requests, "
        "2 skipped (1 empty text, 1 line not JSON), "
    )
    assert last.endswith(" s")
    second = invoke(args + ["--dims", "256"])
    assert "250 documents: 250 cached, 0 embedded, 0 requests" in second.output
    assert len(gemini.requests) == 3


def test_dry_run_counts_requests_and_embeds_nothing(store_path, gemini, corpus):
    args = jsonl_ingest_args(store_path, corpus)
    result = invoke(args + ["--dry-run"])
    assert "dry run: 250 documents: 0 cached, 250 to embed in 3 requests" in result.output
    assert gemini.requests == [] and not store_path.exists()


def test_stats_json_lists_spaces_sources_labels_and_disk(store_path, gemini, corpus):
    base = jsonl_ingest_args(store_path, corpus, "--label-key", "label")
    invoke(base + ["--dims", "256"])
    invoke(base + ["--dims", "128"])
    result = invoke(["--store", str(store_path), "stats", "--json"])
    stats = json.loads(result.output)
    assert [s["dims"] for s in stats["spaces"]] == [128, 256]
    space = stats["spaces"][0]
    assert (space["provider"], space["model"], space["task_type"]) == (
        "gemini",
        "gemini-embedding-001",
        "CLUSTERING",
    )
    assert space["documents"] == 250
    assert space["by_source"] == {"jsonl/posts": 250}
    assert space["by_label"] == {"a": 125, "b": 125}
    assert stats["disk_bytes"] > 0
    text = invoke(["--store", str(store_path), "stats"]).output
    assert "2 spaces, 500 records (250 + 250 across spaces)" in text.splitlines()[-1]


def test_store_env_var_is_the_default(tmp_path, gemini, corpus, monkeypatch):
    monkeypatch.setenv("EMBEDLAB_STORE", str(tmp_path / "from-env"))
    invoke(["ingest", "jsonl", str(corpus), "--provider", "gemini", "--dims", "128"])
    assert (tmp_path / "from-env" / "embedlab.json").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["ingest", "jsonl", "{corpus}", "--text-key", "body"], "has no key 'body' on any line"),
        (["ingest", "csv", "{tmp}/missing.csv"], "missing.csv does not exist"),
        (["ingest", "jsonl", "{corpus}", "--dims", "5000"], "does not support --dims 5000"),
        (
            ["ingest", "jsonl", "{corpus}", "--model", "gemini-nope"],
            "unknown Gemini model 'gemini-nope'",
        ),
        (
            ["ingest", "jsonl", "{corpus}", "--provider", "local", "--dims", "10"],
            "embeds into 384 dims",
        ),
        (["ingest", "jsonl", "{corpus}", "--batch-size", "500"], "more than gemini accepts (100)"),
        (["ingest", "newsgroups", "--source", "{tmp}/nope.tgz"], "does not exist; give the 20news"),
    ],
)
def test_bad_input_is_one_line_without_traceback(
    store_path, gemini, corpus, tmp_path, args, message
):
    args = [a.format(corpus=corpus, tmp=tmp_path) for a in args]
    result = CliRunner().invoke(cli, ["--store", str(store_path), *args])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output and result.exception.__class__ is SystemExit


def test_store_paths_that_are_not_stores(tmp_path, gemini, corpus):
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    result = CliRunner().invoke(cli, ["--store", str(stray), "ingest", "jsonl", str(corpus)])
    assert result.exit_code == 1 and "is not an embedlab store" in result.output
    assert sorted(p.name for p in stray.iterdir()) == ["notes.txt"]  # nothing written
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = CliRunner().invoke(cli, ["--store", str(afile), "stats"])
    assert "is a file" in result.output
    result = CliRunner().invoke(cli, ["--store", str(tmp_path / "none"), "stats"])
    assert "no embedlab store at" in result.output


def test_chroma_url_that_does_not_answer(corpus):
    result = CliRunner().invoke(cli, ["--chroma-url", "http://127.0.0.1:9", "stats"])
    assert result.exit_code == 1
    assert "does not answer" in result.output and "chroma run" in result.output


def test_help_is_fast_because_heavy_libraries_are_not_imported():
    heavy = "{'torch', 'sklearn', 'chromadb', 'matplotlib', 'google.genai', 'pandas'}"
    code = f"import sys, embedlab.cli; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_cached_rerun_never_loads_the_local_model(tmp_path, local_model_once):
    """The model is loaded for the first run only; the re-run prints 0 embedded without torch."""
    posts = tmp_path / "posts"
    (posts / "g").mkdir(parents=True)
    for i in range(3):
        (posts / "g" / f"{i}.txt").write_text(f"short post number {i}")
    store = str(tmp_path / "store")
    # the first run in this process: only the re-run's process is under test
    first = invoke_cli(["--store", store, "ingest", "files", str(posts), "--provider", "local"])
    assert first.returncode == 0, first.stderr
    probe = (
        "import sys\nimport embedlab.cli as cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n"
    )
    args = ["--store", store, "ingest", "files", str(posts), "--provider", "local"]
    second = subprocess.run(
        [sys.executable, "-c", probe, *args], capture_output=True, text=True, env=cli_env()
    )
    assert "3 documents: 3 cached, 0 embedded" in second.stdout
    assert second.stdout.strip().endswith("torch not loaded")


def test_ctrl_c_mid_ingest_keeps_finished_batches_and_rerun_finishes(tmp_path, corpus):
    with FakeGemini(latency=0.1) as server:  # 20 batches to go at SIGINT: 2 s
        env = {"GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": VALID_KEY}
        store = str(tmp_path / "store")
        args = jsonl_ingest_args(
            store, corpus, "--batch-size", "10", "--concurrency", "1", "--dims", "128"
        )
        child = spawn_cli(
            args,
            env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # a background shell starts us with SIGINT ignored, which children inherit
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        while len(server.ok_requests) < 5:
            time.sleep(0.05)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
        assert child.returncode == 130, err
        assert "interrupted:" in err and "re-run to finish" in err
        done = len(server.ok_requests)
        server.latency = 0.0  # the latency only had to keep the child mid-ingest
        rerun = invoke_cli(args, env=env)  # the re-run's process is not under test
        assert rerun.returncode == 0, rerun.stderr
        summary = rerun.stdout.strip().splitlines()[-1]
        cached = int(summary.split(" cached")[0].split()[-1])
        embedded = int(summary.split(" embedded")[0].split()[-1])
        assert cached + embedded == 250
        assert cached >= (done - 1) * 10  # at most the one batch in flight was lost
        texts = [t for r in server.ok_requests for t in r.texts]
        assert (
            len(set(texts)) == 250
        )  # every text embedded, and re-run repeated at most the lost batch
        assert len(texts) - 250 <= 10
