"""Regression tests for issue 11: nothing overwritten, dropped or mis-scored without a word,
and no tracebacks. Each test failed on the code before the fix."""

from __future__ import annotations

import json
import re

import click
import embedlab
import numpy as np
import pytest
from click.testing import CliRunner
from embedlab.cli import cli
from embedlab.store import Store

from tests.builders import SPACE, grouped_corpus
from tests.conftest import (
    REPO,
    SHARED_ARCHIVE,
    CountingProvider,
    invoke_cli,
    jsonl_ingest_args,
    make_docs,
)
from tests.fake_gemini import VALID_KEY


@pytest.fixture
def grouped_store(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    return store_path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_repair_resolves_a_relative_store_against_the_callers_folder(tmp_path):
    """repair's child processes used to run in the install folder: `--store ./lab` named
    another store there."""
    from embedlab.ingest.pipeline import ingest

    name = f"lab-{tmp_path.name}"  # no folder of the checkout has it, whatever it holds
    with Store.open_local(tmp_path / name, create=True) as store:
        ingest(make_docs(120), store, CountingProvider().space, CountingProvider, batch_size=50)
    done = invoke_cli(["--store", f"./{name}", "repair", "--check"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "120 documents, ok" in done.stdout
    assert not (REPO / name).exists()


def test_an_unknown_chroma_error_is_not_read_as_an_empty_store(grouped_store, monkeypatch):
    """A server hiccup used to read as "nothing stored": ingest then paid for everything."""
    provider = CountingProvider(SPACE)
    with embedlab.open(grouped_store, quiet=True) as lab:
        client = lab.store.client

        def hiccup(*args, **kwargs):
            raise RuntimeError("HTTP 503 from the server")

        monkeypatch.setattr(client, "get_collection", hiccup)
        lab._providers[(SPACE, 60.0)] = provider
        lab.embedding_choice = lambda *a, **k: embedlab.EmbeddingChoice(SPACE, "test")
        with pytest.raises(embedlab.StoreError, match="cannot read .* nothing was changed"):
            lab.ingest_documents(make_docs(5))
    assert provider.calls == []


def test_auto_k_keeps_a_silhouette_of_exactly_zero(monkeypatch):
    """`score or -1.0` turned a silhouette of 0.0 into -1."""
    import embedlab.analyze.cluster as cluster

    scores = {2: None, 3: 0.0}
    monkeypatch.setattr(cluster, "AUTO_K_RANGE", (2, 3))
    monkeypatch.setattr(
        cluster, "cosine_silhouette", lambda v, labels, seed: scores[len(set(labels.tolist()))]
    )
    vectors = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    result = cluster.cluster(vectors, "kmeans", "auto")
    assert result.k_scores == {2: -1.0, 3: 0.0} and result.params["k"] == 3


def test_a_dry_run_counts_reusable_texts_as_cached(tmp_path, gemini):
    corpus = tmp_path / "posts.jsonl"
    corpus.write_text('{"id": "a", "text": "one"}\n{"id": "b", "text": "two"}\n')
    store = tmp_path / "store"
    assert invoke_cli(jsonl_ingest_args(store, corpus), env={}).returncode == 0
    copy = tmp_path / "copy.jsonl"
    copy.write_text('{"id": "c", "text": "one"}\n{"id": "d", "text": "three"}\n')
    dry = invoke_cli(jsonl_ingest_args(store, copy, "--dry-run"), env={})
    summary = dry.stdout.strip().splitlines()[-1]
    assert summary.startswith(
        "dry run: 2 documents: 1 cached (1 reused from identical texts), 1 to embed in 1 request"
    )


def test_auto_provider_names_the_key_that_is_set(tmp_path, gemini, monkeypatch):
    corpus = tmp_path / "posts.jsonl"
    corpus.write_text('{"id": "a", "text": "one"}\n')
    env = {"GEMINI_API_KEY": "", "GOOGLE_API_KEY": VALID_KEY}
    done = invoke_cli(jsonl_ingest_args(tmp_path / "store", corpus), env=env)
    assert done.returncode == 0, done.stderr
    assert "(GOOGLE_API_KEY is set)" in done.stderr and "GEMINI_API_KEY is set" not in done.stderr


def test_a_reused_out_folder_loses_the_old_reports_files(grouped_store, tmp_path):
    out = str(tmp_path / "report")
    first = invoke(
        "--store", str(grouped_store), "analyze", "--k", "auto", "--reduce", "pca", "--out", out
    )
    assert first.exit_code == 0 and (tmp_path / "report" / "silhouette.png").is_file()
    (tmp_path / "report" / "notes.txt").write_text("the user's own file")
    second = invoke(
        "--store", str(grouped_store), "analyze", "--k", "3", "--reduce", "pca", "--out", out
    )
    assert second.exit_code == 0, second.output
    assert not (tmp_path / "report" / "silhouette.png").exists()
    assert (tmp_path / "report" / "notes.txt").is_file()  # only report files are ours


@pytest.mark.parametrize("where", ["file", "under a file"])
def test_an_out_that_cannot_be_a_folder_is_one_line(grouped_store, tmp_path, where):
    blocker = tmp_path / "taken"
    blocker.write_text("x")
    out = blocker if where == "file" else blocker / "report"
    args = ["analyze", "--k", "3", "--reduce", "pca", "--out", str(out)]  # the map: not the subject
    result = invoke("--store", str(grouped_store), *args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "Error:" in result.output and str(out) in result.output


def test_demo_on_a_busy_store_is_one_line(tmp_path):
    with Store.open_local(tmp_path / "lab", create=True):
        done = invoke_cli(["--store", str(tmp_path / "lab"), "demo", "--source", "nowhere.tgz"])
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "is busy" in done.stderr


def test_analyze_takes_the_store_once(grouped_store, tmp_path, monkeypatch):
    """analyze re-opened the store after t-SNE (and met "busy" when an ingest had started)."""
    opened = []
    real = Store.open_local.__func__
    monkeypatch.setattr(
        Store,
        "open_local",
        classmethod(lambda cls, *a, **k: opened.append(a) or real(cls, *a, **k)),
    )
    result = invoke("--store", str(grouped_store), "analyze", "--k", "3", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert len(opened) == 1


def test_a_programming_error_is_not_dressed_up_as_a_user_error(grouped_store, monkeypatch):
    import embedlab.analyze.run as run

    def broken(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr(run, "cluster", broken)
    result = invoke("--store", str(grouped_store), "analyze", "--k", "3")
    assert isinstance(result.exception, ValueError)  # surfaces in tests, not as one line


def test_an_unknown_provider_is_refused_before_anything_runs(tmp_path):
    with embedlab.open(tmp_path / "store", quiet=True) as lab:
        with pytest.raises(embedlab.ProviderError, match="unknown provider 'gemni'"):
            lab.ingest(["text"], provider="gemni")


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "--algo", "hdbscan", "--k", "3"], "k does not apply to hdbscan"),
        (["analyze", "--algo", "kmeans", "--eps", "0.2"], "eps applies to dbscan only"),
        (["analyze", "--algo", "hdbscan", "--limit", "2"], "hdbscan needs at least"),
        (["analyze", "--algo", "agglomerative", "--k", "1", "--limit", "1"], "at least 2"),
        (["neighbors", "--id", "syn/med/001", "--json", "--csv"], "--json or --csv, not both"),
        (["neighbors", "  "], "query text is empty"),
    ],
)
def test_confusing_options_get_a_clear_line(grouped_store, tmp_path, args, message):
    out = ["--out", str(tmp_path / "r")] if args[0] == "analyze" else []
    result = invoke("--store", str(grouped_store), *args, *out)
    assert result.exit_code != 0 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_glob_that_matches_nothing_says_so(tmp_path):
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "a.txt").write_text("hello")
    done = invoke_cli(
        ["--store", str(tmp_path / "s"), "ingest", "files", str(tmp_path / "posts"), "--glob", "["]
    )
    assert done.returncode == 1 and "no file under" in done.stderr and "--glob '['" in done.stderr


def test_every_option_is_described_and_neighbours_is_listed_once():
    def options(command: click.Command, path: str):
        if isinstance(command, click.Group):
            for name, sub in command.commands.items():
                yield from options(sub, f"{path} {name}")
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                yield path, param

    for path, option in options(cli, "embedlab"):
        assert option.help, f"{path} {option.opts[0]} has no help"
        has_default = option.default not in (None, False) and "UNSET" not in repr(option.default)
        if has_default and not option.is_flag:
            shown = option.show_default or "[default:" in option.help
            assert shown, f"{path} {option.opts[0]} hides its default"
    listing = invoke("--help").output
    assert re.search(r"^\s+neighbors\s", listing, re.M) and "neighbours" not in listing
    assert invoke("neighbours", "--help").exit_code == 0  # the other spelling still works


@pytest.mark.integration
def test_the_readme_neighbours_example_names_a_post_its_ingest_stores():
    from embedlab.ingest.newsgroups import default_clean, newsgroups_documents

    if not SHARED_ARCHIVE.is_file():
        pytest.skip("needs ../shared/data/20news-bydate.tar.gz")
    readme = (REPO / "README.md").read_text()
    (example,) = re.findall(r"neighbors --id (newsgroups\S*/\S+)", readme)
    ingest = re.search(r"ingest newsgroups .*?--per-class (\d+) --seed (\d+)", readme, re.S)
    per_class, seed = int(ingest.group(1)), int(ingest.group(2))
    clean = default_clean("local")  # the example's ingest picks the local model without a key
    docs = newsgroups_documents(SHARED_ARCHIVE, "train", ["sci.*"], per_class, seed, clean)
    assert example in {d.id for d in docs}


def test_labelled_documents_are_scored_and_the_unlabelled_counted(store_path):
    from embedlab.analyze import report
    from embedlab.store import Document

    with Store.open_local(store_path, create=True) as store:
        docs = grouped_corpus(store)
        collection = store.collection(SPACE)
        vectors, _, _ = collection.load([d.id for d in docs[:10]])
        unlabelled = [Document(d.id, d.text, d.source, None) for d in docs[:10]]
        collection.write(unlabelled, vectors, [False] * 10)
    with embedlab.open(store_path, quiet=True) as lab:
        a = lab.analyze(k=3, reduce="pca")
    assert a.metrics["unlabelled"] == 10 and a.metrics["hungarian_accuracy"] == 1.0
    assert sum(row["size"] for row in a.metrics["per_class"].values()) == 80
    assert "(10 documents without a label were not scored)" in report.per_class_table(a.metrics)


def test_clusters_wear_the_colour_of_the_class_they_match(grouped_store):
    with embedlab.open(grouped_store, quiet=True) as lab:
        a = lab.analyze(k=4, reduce="pca", seed=0)
    colours = a._colours()
    for cluster, name in a.metrics["cluster_to_class"].items():
        assert colours[f"cluster {cluster}"] == colours[name]
    (spare,) = {c for c in a.cluster_labels.tolist()} - {
        int(c) for c in a.metrics["cluster_to_class"]
    }
    assert colours[f"cluster {spare}"] == 3  # past the three classes' colours
    fig = a.figure("cluster")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert len(legend) == 4


def test_new_user_findings(grouped_store, tmp_path):
    """What a first try found: clusters for neighbours outside the latest analysis, a CLI
    listing of analyses, auto k capped on small selections, dbscan's hint, messages."""
    store = str(grouped_store)
    assert (
        invoke(
            "--store", store, "analyze", "--k", "3", "--reduce", "pca", "--out", str(tmp_path / "a")
        ).exit_code
        == 0
    )
    small = invoke(
        "--store",
        store,
        "analyze",
        "--labels",
        "space",
        "--k",
        "auto",
        "--reduce",
        "pca",
        "--out",
        str(tmp_path / "b"),
    )
    assert small.exit_code == 0, small.output
    assert "(chosen by silhouette among 2..3" in small.output  # 30 documents: 3 at most
    hits = invoke("--store", store, "neighbors", "--id", "syn/med/004", "-k", "3", "--json")
    rows = json.loads(hits.stdout)
    assert all(row["cluster"] is not None for row in rows)  # from the k=3 analysis
    listing = invoke("--store", store, "analyses")
    assert listing.exit_code == 0 and listing.output.strip().endswith(f"2 analyses in {store}")
    noise = invoke(
        "--store",
        store,
        "analyze",
        "--algo",
        "dbscan",
        "--eps",
        "0.0001",
        "--reduce",
        "pca",
        "--out",
        str(tmp_path / "c"),
    )
    assert "try a larger --eps" in noise.output
    assert (
        "at most 2" in invoke("--store", store, "analyze", "--algo", "dbscan", "--eps", "3").output
    )
    assert "give a QUERY text or --id" in invoke("--store", store, "neighbors").output
    bogus = invoke("--store", store, "neighbors", "--id", "syn/med/004", "--analysis", "nope")
    assert "`embedlab analyses`" in bogus.output


def test_semicolon_csv_and_a_file_that_is_not_json_lines(tmp_path):
    from collections import Counter

    from embedlab.errors import InvalidRequest
    from embedlab.ingest.sources import csv_documents, jsonl_documents

    semi = tmp_path / "semi.csv"
    semi.write_text("id;text;label\n1;hello, world;a\n2;second;b\n")
    docs = list(csv_documents(semi, "text", "id", "label", Counter()))
    assert [(d.id, d.text, d.label) for d in docs] == [
        ("csv/semi/1", "hello, world", "a"),
        ("csv/semi/2", "second", "b"),
    ]
    with pytest.raises(InvalidRequest, match="no line of .* is JSON"):
        list(jsonl_documents(semi))
