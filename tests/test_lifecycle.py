"""The cache's lifecycle through the real CLI and a real embedded Chroma: list, export,
delete, prune, Parquet input (issue 13, part 3)."""

from __future__ import annotations

import json

import embedlab
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from click.testing import CliRunner
from embedlab.cli import cli

from tests.fake_gemini import VALID_KEY, FakeGemini

DIMS = 128


def run(args, env):
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code == 0, result.output
    return result.output


def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def posts(n, start=0):
    return [
        {
            "id": f"p{i}",
            "text": f"post {i} on {['space', 'med'][i % 2]} matters",
            "topic": ["space", "med"][i % 2],
        }
        for i in range(start, start + n)
    ]


def test_list_export_delete_and_prune(tmp_path):
    store = str(tmp_path / "store")
    corpus = tmp_path / "feed.jsonl"
    with FakeGemini() as fake:
        env = {"GOOGLE_GEMINI_BASE_URL": fake.url, "GEMINI_API_KEY": VALID_KEY}
        ingest = ["--store", store, "ingest", "jsonl", str(corpus), "--id-key", "id"]
        ingest += ["--label-key", "topic", "--dims", str(DIMS)]
        write_jsonl(corpus, posts(10))
        assert "10 documents: 0 cached, 10 embedded" in run(ingest, env)

        listed = run(["--store", store, "documents", "--labels", "med", "--jsonl"], env)
        rows = [json.loads(line) for line in listed.splitlines() if line.startswith("{")]
        assert sorted(r["id"] for r in rows) == [f"jsonl/feed/p{i}" for i in (1, 3, 5, 7, 9)]
        assert {r["label"] for r in rows} == {"med"}

        # the input lost p0..p2 and gained p10: --dry-run says so first, then --prune does it
        write_jsonl(corpus, posts(7, 3) + posts(1, 10))
        dry = run([*ingest, "--prune", "--dry-run"], env)
        assert "3 no longer in the input would be removed" in dry
        assert len(fake.ok_requests) == 1
        pruned = run([*ingest, "--prune"], env)
        assert "8 documents: 7 cached, 1 embedded" in pruned
        assert "3 no longer in the input removed" in pruned
        assert sum(len(r.texts) for r in fake.ok_requests) == 11  # only p10 paid

        with embedlab.open(store, quiet=True) as lab:
            analysis = lab.analyze(k=2, reduce="pca")
            ids, vectors = lab.vectors()
        assert len(ids) == 8 and "jsonl/feed/p0" not in ids

        out = tmp_path / "out.parquet"
        assert "exported 8 documents" in run(["--store", store, "export", "--out", str(out)], env)
        table = pq.read_table(out)
        assert table.column("id").to_pylist() == ids
        exported = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
        assert exported.dtype == np.float32 and np.allclose(exported, vectors, atol=1e-6)
        run(["--store", store, "export", "--format", "npy", "--out", str(tmp_path / "npy")], env)
        assert np.allclose(np.load(tmp_path / "npy" / "vectors.npy"), vectors)
        lines = (tmp_path / "npy" / "documents.jsonl").read_text().splitlines()
        assert [json.loads(x)["id"] for x in lines] == ids
        run(
            ["--store", store, "export", "--format", "jsonl", "--out", str(tmp_path / "x.jsonl")],
            env,
        )
        first = json.loads((tmp_path / "x.jsonl").read_text().splitlines()[0])
        assert first["id"] == ids[0] and len(first["vector"]) == DIMS

        dry = run(["--store", store, "delete", "--labels", "space", "--dry-run"], env)
        assert "4 documents would be removed (dry run)" in dry
        assert "4 documents removed" in run(["--store", store, "delete", "--labels", "space"], env)
        assert "1 document removed" in run(
            ["--store", store, "delete", "--id", "jsonl/feed/p3"], env
        )
        with embedlab.open(store, quiet=True) as lab:
            assert sorted(lab.documents()["id"]) == [f"jsonl/feed/p{i}" for i in (5, 7, 9)]
            reopened = lab.analysis(analysis.id)
            assert any("5 of its 8 documents were deleted" in note for note in reopened.notes)
        again = run(ingest, env)  # deleted texts are paid again, nothing else
        assert "8 documents: 3 cached, 5 embedded" in again
        assert sum(len(r.texts) for r in fake.ok_requests) == 16


def test_parquet_input_has_csv_like_ids_and_clear_errors(tmp_path):
    path = tmp_path / "table.parquet"
    pd.DataFrame(
        {
            "key": ["a", "b", "c"],
            "body": ["first text", None, "third text"],
            "tag": ["x", "y", None],
        }
    ).to_parquet(path)
    store = str(tmp_path / "store")
    with FakeGemini() as fake:
        env = {"GOOGLE_GEMINI_BASE_URL": fake.url, "GEMINI_API_KEY": VALID_KEY}
        args = ["--store", store, "ingest", "parquet", str(path), "--text-col", "body"]
        out = run([*args, "--id-col", "key", "--label-col", "tag", "--dims", str(DIMS)], env)
        assert "3 documents" not in out and "2 documents: 0 cached, 2 embedded" in out
        assert "1 skipped (1 no text)" in out
        with embedlab.open(store, quiet=True) as lab:
            docs = lab.documents().set_index("id")
        assert docs.loc["parquet/table/a", "label"] == "x"
        assert pd.isna(docs.loc["parquet/table/c", "label"])
        bad = CliRunner().invoke(cli, [*args, "--id-col", "nope"], env=env)
        assert bad.exit_code == 1 and "has no column 'nope' (columns: key, body, tag)" in bad.output


def test_lifecycle_commands_refuse_what_would_go_wrong(tmp_path):
    store = str(tmp_path / "store")
    corpus = tmp_path / "feed.jsonl"
    write_jsonl(corpus, posts(4))
    with FakeGemini() as fake:
        env = {"GOOGLE_GEMINI_BASE_URL": fake.url, "GEMINI_API_KEY": VALID_KEY}
        ingest = ["--store", store, "ingest", "jsonl", str(corpus), "--id-key", "id"]
        run([*ingest, "--dims", str(DIMS)], env)

        (tmp_path / "a-file").write_text("x")
        for fmt, out in (("npy", tmp_path / "a-file"), ("jsonl", tmp_path)):
            args = ["--store", store, "export", "--format", fmt, "--out", str(out)]
            bad = CliRunner().invoke(cli, args, env=env)
            assert bad.exit_code == 1 and bad.output.startswith("Error: "), bad.output
        deep = tmp_path / "new" / "dir" / "x.parquet"
        assert "exported 4 documents" in run(["--store", store, "export", "--out", str(deep)], env)

        delete = ["--store", store, "delete", "--id", "jsonl/feed/p1"]
        both = CliRunner().invoke(cli, [*delete, "--labels", "x"], env=env)
        assert both.exit_code == 1 and "not both" in both.output
        some = CliRunner().invoke(cli, [*delete, "--id", "nope"], env=env)
        assert "1 document removed" in some.output and "not in the store (1): nope" in some.output

        corpus.write_text('{"id": "zz", "text": "   "}\n')  # every line broken
        refused = CliRunner().invoke(cli, [*ingest, "--dims", str(DIMS), "--prune"], env=env)
        assert refused.exit_code == 1 and "would remove every stored document" in refused.output
        with embedlab.open(store, quiet=True) as lab:
            assert len(lab.documents()) == 3  # nothing pruned
