"""Nearest-neighbour lookups by id and by text, against a real embedded Chroma."""

import csv
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from embedlab.cli import cli
from embedlab.ingest.pipeline import ingest
from embedlab.ingest.providers import GeminiProvider, gemini_space
from embedlab.store import Store
from embedlab.store.neighbours import find_neighbours

from tests.builders import SPACE, grouped_corpus
from tests.conftest import make_docs

SPACE_768 = gemini_space(None, None, 768)


def invoke(store_path, *args):
    return CliRunner().invoke(cli, ["--store", str(store_path), *args])


@pytest.fixture
def grouped_store(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    return store_path


def test_by_id_leaves_itself_out_and_matches_exact_search(grouped_store, monkeypatch):
    import embedlab.ingest.providers

    monkeypatch.setattr(
        embedlab.ingest.providers, "make_provider", lambda *a: pytest.fail("provider built")
    )
    with Store.open_local(grouped_store) as store:
        col = store.collection(SPACE)
        ids = sorted(i for i, _ in col.iter_metadata())
        vectors, _, _ = col.load(ids)
        query = ids.index("syn/med/004")
        hits = find_neighbours(col, vectors[query], 10, exclude_id="syn/med/004")
    sims = vectors @ vectors[query]
    sims[query] = -np.inf
    exact = [ids[i] for i in np.argsort(-sims)[:10]]
    assert [h.id for h in hits] == exact
    assert [h.rank for h in hits] == list(range(1, 11))
    assert all(a.similarity >= b.similarity for a, b in zip(hits, hits[1:]))
    np.testing.assert_allclose([h.similarity for h in hits], np.sort(sims)[::-1][:10], atol=1e-4)
    assert all(h.id.startswith("syn/med/") and h.label == "med" for h in hits)


def test_cli_json_and_csv_show_fields_and_clusters_after_analyze(grouped_store, tmp_path):
    before = json.loads(
        invoke(grouped_store, "neighbors", "--id", "syn/space/001", "-k", "3", "--json").stdout
    )
    assert [set(r) for r in before] == [
        {"rank", "id", "label", "similarity", "text", "cluster"}
    ] * 3
    assert all(r["cluster"] is None for r in before)
    analysed = invoke(grouped_store, "analyze", "--k", "3", "--out", str(tmp_path / "r"))
    assert analysed.exit_code == 0, analysed.output
    after = json.loads(
        invoke(grouped_store, "neighbors", "--id", "syn/space/001", "-k", "3", "--json").stdout
    )
    points = {
        row["id"]: int(row["cluster"])
        for row in csv.DictReader(open(tmp_path / "r" / "points.csv"))
    }
    assert [r["cluster"] for r in after] == [points[r["id"]] for r in after]
    table = invoke(grouped_store, "neighbors", "--id", "syn/space/001", "-k", "3", "--csv").stdout
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [r["id"] for r in rows] == [r["id"] for r in after]


def test_label_filter_and_k_up_to_the_collection_size(grouped_store):
    out = invoke(
        grouped_store,
        "neighbors",
        "--id",
        "syn/space/001",
        "-k",
        "200",
        "--labels",
        "c*,med",
        "--json",
    )
    hits = json.loads(out.stdout)
    assert len(hits) == 60 and {h["label"] for h in hits} == {"crypt", "med"}
    everything = json.loads(
        invoke(grouped_store, "neighbors", "--id", "syn/space/001", "-k", "500", "--json").stdout
    )
    assert len(everything) == 89  # all but itself


def test_free_text_query_costs_one_request_then_none(store_path, gemini):
    with Store.open_local(store_path, create=True) as store:
        ingest(make_docs(30), store, SPACE_768, lambda: GeminiProvider(SPACE_768))
    sent = len(gemini.requests)
    first = invoke(store_path, "neighbors", "document number 7 about subject 1", "-k", "3")
    assert first.exit_code == 0, first.output
    assert "0 requests" in first.output.splitlines()[-1]  # a stored text reuses its vector
    assert "test/7" in first.output.splitlines()[0]
    novel = invoke(store_path, "neighbors", "a brand new question", "-k", "3")
    again = invoke(store_path, "neighbors", "a brand new question", "-k", "3")
    assert "1 request" in novel.output.splitlines()[-1]
    assert "0 requests" in again.output.splitlines()[-1]
    assert [r.texts for r in gemini.requests[sent:]] == [["a brand new question"]]
    assert gemini.requests[-1].task_types == ["CLUSTERING"] and gemini.requests[-1].dims == [768]


@pytest.mark.parametrize(
    "args, message",
    [
        (["neighbors", "--id", "nope/1"], "no document 'nope/1'"),
        (["neighbors"], "give a QUERY text or --id"),
        (["neighbors", "text", "--id", "syn/space/001"], "give a QUERY text or --id, not both"),
        (["neighbors", "--id", "syn/space/001", "--labels", "zz*"], "no label in"),
        (["neighbors", "--id", "syn/space/001", "--dims", "3"], "no space matches"),
    ],
)
def test_bad_lookups_are_one_line(grouped_store, args, message):
    result = invoke(grouped_store, *args)
    assert result.exit_code != 0 and message in result.output and "Traceback" not in result.output


def test_empty_store_and_several_spaces(store_path):
    with Store.open_local(store_path, create=True):
        pass
    assert "is empty" in invoke(store_path, "neighbors", "--id", "x").output
    with Store.open_local(store_path) as store:
        grouped_corpus(store)
        grouped_corpus(store, space=SPACE.__class__("fake", "fake-model", "none", 8))
    assert "2 spaces match" in invoke(store_path, "neighbors", "--id", "syn/med/001").output
    assert invoke(store_path, "neighbors", "--id", "syn/med/001", "--dims", "8").exit_code == 0
