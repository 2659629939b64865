"""Cluster names from Gemini (issue 13 part 2): one generate_content call per cluster,
paid once. The real google-genai SDK talks to tests/fake_gemini.py; the store is real
Chroma; call counts are exact."""

from __future__ import annotations

import csv
import json

import embedlab
import numpy as np
import pytest
from click.testing import CliRunner
from embedlab.cli import cli
from embedlab.ingest.naming import DEFAULT_NAMING_MODEL, clean_name
from embedlab.store import Document, Store
from embedlab.store.names import name_key

from tests.builders import SPACE, grouped_corpus
from tests.fake_gemini import VALID_KEY, Fault, fake_name

MODEL = DEFAULT_NAMING_MODEL
ANALYSIS = dict(k=3, reduce="pca", seed=0)


@pytest.fixture
def grouped_store(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    return store_path


def model_names(gemini) -> set[str]:
    """The names the fake model gave, one per delivered request."""
    return {fake_name(g.prompt) for g in gemini.ok_generations}


def test_one_call_per_cluster_then_none_on_a_rerun(grouped_store, gemini):
    with embedlab.open(grouped_store, quiet=True) as lab:
        first = lab.analyze(**ANALYSIS, name_clusters=True)
        assert len(gemini.generations) == 3
        assert {g.model for g in gemini.generations} == {MODEL}
        assert first.naming["requested"] == 3 and first.naming["reused"] == 0
        assert set(first.cluster_names.values()) == model_names(gemini)
        assert {c["name_source"] for c in first.clusters} == {MODEL}
        prompt = gemini.generations[0].prompt  # terms and representatives, never labels
        assert "Terms: " in prompt and "syn/" not in prompt

        again = lab.analyze(**ANALYSIS, name_clusters=True)
        assert len(gemini.generations) == 3  # not one more call
        assert again.naming["requested"] == 0 and again.naming["reused"] == 3
        assert again.cluster_names == first.cluster_names

        other_map = lab.analyze(k=3, reduce="tsne", seed=0, name_clusters=True)
        assert len(gemini.generations) == 3  # same members, another map: still free
        assert other_map.naming["reused"] == 3

        costs = lab.costs().set_index("model").loc[MODEL]
        assert costs["requests"] == 3 and costs["names_generated"] == 3
        assert costs["names_reused"] == 6 and costs["estimated_usd"] > 0


def test_only_a_cluster_whose_members_changed_is_named_again(grouped_store, gemini):
    with embedlab.open(grouped_store, quiet=True) as lab:
        first = lab.analyze(**ANALYSIS, name_clusters=True)
        ids, vectors = lab.vectors()
        space_rows = [i for i, doc_id in enumerate(ids) if doc_id.startswith("syn/space/")]
        centre = vectors[space_rows].mean(axis=0)
        rng = np.random.default_rng(1)
        new = rng.normal(size=(2, SPACE.dims)) * 0.05 + centre
        docs = [
            Document(f"syn/space/new-{i}", f"rocket orbit launch new {i}", "synthetic", "space")
            for i in range(2)
        ]
        lab.store.collection(SPACE).write(docs, new.astype(np.float32), [False, False])

        second = lab.analyze(**ANALYSIS, name_clusters=True)
        assert len(second.ids) == 92
        assert len(gemini.generations) == 4  # the space cluster only
        assert second.naming["requested"] == 1 and second.naming["reused"] == 2
        space_cluster = second.cluster_labels[second.ids.index("syn/space/new-0")]
        unchanged = {n for c, n in second.cluster_names.items() if c != space_cluster}
        assert unchanged <= set(first.cluster_names.values())
        assert second.cluster_names[space_cluster] == fake_name(gemini.generations[-1].prompt)


def test_names_reach_the_report_points_legend_and_a_reopened_analysis(
    grouped_store, gemini, tmp_path
):
    out = tmp_path / "report"
    with embedlab.open(grouped_store, quiet=True) as lab:
        a = lab.analyze(**ANALYSIS, name_clusters=True, out=out)
        names = a.cluster_names
        report = (out / "report.md").read_text()
        for cluster, name in names.items():
            assert f"### cluster {cluster}: {name} (30 documents)" in report
        assert f"- cluster names: 3 of 3 by {MODEL} (prompt v1)" in report
        rows = list(csv.DictReader(open(out / "points.csv")))
        assert all(row["cluster_name"] == names[int(row["cluster"])] for row in rows)
        described = json.loads((out / "clusters.json").read_text())
        assert {c["name"] for c in described} == set(names.values())
        legend = [t.get_text() for t in a.figure("cluster").axes[0].get_legend().get_texts()]
        assert sorted(legend) == sorted(f"cluster {c}: {n} (30)" for c, n in names.items())
        first_report = report

    with embedlab.open(grouped_store, quiet=True) as lab:  # as another process sees it
        reopened = lab.analysis(a.id)
        assert reopened.cluster_names == names and reopened.naming == a.naming
        again = lab.analyze(**ANALYSIS, name_clusters=True, out=out)
    assert again.naming["reused"] == 3
    assert (out / "report.md").read_text() == first_report  # report files stay identical


def test_an_analysis_stored_before_names_opens_with_its_terms(grouped_store):
    with embedlab.open(grouped_store, quiet=True) as lab:
        a = lab.analyze(**ANALYSIS)
        head, payload = a.to_record()
        for cluster in head["described"]:
            del cluster["name"], cluster["name_source"]
        head.pop("naming")
        head["id"] = "old-one"
        lab.store.artifacts.put("analysis", "old-one", head, payload)
        old = lab.analysis("old-one")
    assert old.cluster_names == {c["cluster"]: ", ".join(c["terms"][:3]) for c in a.clusters} and {
        c["name_source"] for c in old.clusters
    } == {"terms"}
    assert old.naming == {}


def test_offline_the_terms_stay_the_names_and_cached_names_are_still_free(
    grouped_store, gemini, monkeypatch
):
    monkeypatch.delenv("GEMINI_API_KEY")
    with embedlab.open(grouped_store, quiet=True) as lab:
        offline = lab.analyze(**ANALYSIS, name_clusters=True)
        assert gemini.generations == []
        assert {c["name_source"] for c in offline.clusters} == {"terms"}
        assert offline.naming["kept_terms"] == 3 and offline.naming["requested"] == 0
        assert offline.notes == [
            "no GEMINI_API_KEY: 3 clusters keep their terms as names (set the key to name them)"
        ]

        monkeypatch.setenv("GEMINI_API_KEY", VALID_KEY)
        named = lab.analyze(**ANALYSIS, name_clusters=True)
        assert len(gemini.generations) == 3

        monkeypatch.delenv("GEMINI_API_KEY")
        cached = lab.analyze(**ANALYSIS, name_clusters=True)
    # identical to `named` (issue 25 item 9): reused, and no note about the missing key
    reused = f"identical to analysis {named.id}: reused, nothing new stored"
    assert len(gemini.generations) == 3 and cached.notes == [reused]
    assert cached.cluster_names == named.cluster_names and cached.naming["reused"] == 3


def test_a_429_is_retried_after_its_retry_after(grouped_store, gemini):
    gemini.generate_faults.append(Fault(status=429, retry_after=0))
    with embedlab.open(grouped_store, quiet=True) as lab:
        a = lab.analyze(**ANALYSIS, name_clusters=True)
        assert [g.status for g in gemini.generations] == [429, 200, 200, 200]
        assert a.naming["requested"] == 3 and a.naming["retries"] == 1
        assert {c["name_source"] for c in a.clusters} == {MODEL} and a.notes == []
        costs = lab.costs().set_index("model").loc[MODEL]
        assert (costs["requests"], costs["retries"]) == (4, 1)


def test_a_lasting_failure_keeps_the_terms_and_the_analysis(grouped_store, gemini):
    gemini.generate_faults.extend(Fault(status=500, retry_after=0) for _ in range(6))
    with embedlab.open(grouped_store, quiet=True) as lab:
        failed = lab.analyze(**ANALYSIS, name_clusters=True)
        # the first cluster's six attempts, then no more calls for the other two
        assert len(gemini.generations) == 6
        assert {c["name_source"] for c in failed.clusters} == {"terms"}
        assert failed.naming["kept_terms"] == 3 and failed.naming["requested"] == 0
        assert failed.notes == [
            "Gemini answered 500; gave up after 6 attempts: 3 clusters keep their terms as "
            "names; run again to retry"
        ]
        assert lab.analysis(failed.id).cluster_names == failed.cluster_names  # stored

        retried = lab.analyze(**ANALYSIS, name_clusters=True)
        assert len(gemini.generations) == 9 and retried.naming["requested"] == 3


def test_a_rejected_key_or_an_unknown_model_costs_one_request(grouped_store, gemini, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "wrong-key-456")
    with embedlab.open(grouped_store, quiet=True) as lab:
        rejected = lab.analyze(**ANALYSIS, name_clusters=True)
        assert len(gemini.generations) == 1
        assert rejected.notes == [
            "Gemini rejected the API key: check GEMINI_API_KEY: 3 clusters keep their terms "
            "as names; run again to retry"
        ]
        monkeypatch.setenv("GEMINI_API_KEY", VALID_KEY)
        unknown = lab.analyze(**ANALYSIS, name_clusters=True, naming_model="gemini-nope")
        assert len(gemini.generations) == 2 and gemini.generations[-1].status == 404
        assert "Gemini refused to name clusters with 'gemini-nope' (404)" in unknown.notes[0]
        assert {c["name_source"] for c in unknown.clusters} == {"terms"}


def test_naming_options_are_checked_before_any_work(grouped_store, gemini):
    with embedlab.open(grouped_store, quiet=True) as lab:
        refused = "naming_model= applies with name_clusters=True only"
        with pytest.raises(embedlab.InvalidRequest, match=refused):
            lab.analyze(**ANALYSIS, naming_model=MODEL)
        with pytest.raises(embedlab.InvalidRequest, match="is not a model name"):
            lab.analyze(**ANALYSIS, name_clusters=True, naming_model="../models/x")
        assert lab.analyses().empty and gemini.generations == []


def test_the_cli_prints_names_and_what_they_cost_and_never_the_key(
    grouped_store, gemini, tmp_path, caplog
):
    out = tmp_path / "report"
    args = ["--store", str(grouped_store), "analyze", "--k", "3", "--reduce", "pca"]
    args += ["--out", str(out), "--name-clusters"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert f"cluster names ({MODEL}): 3 names requested, 0 reused from the cache" in first.output
    for name in model_names(gemini):
        assert f"  {name} *" in first.output  # the summary table
    second = CliRunner().invoke(cli, args)
    assert f"cluster names ({MODEL}): 0 names requested, 3 reused from the cache" in second.output
    assert len(gemini.generations) == 3
    costs = CliRunner().invoke(cli, ["--store", str(grouped_store), "costs"])
    assert f"gemini:{MODEL} (cluster names): 3 requests" in costs.output
    assert "+ 3 cluster names" in costs.output

    bad = CliRunner().invoke(cli, [*args[:-1], "--naming-model", MODEL])
    assert bad.exit_code == 1 and "--naming-model applies with --name-clusters only" in bad.output
    assert "Traceback" not in bad.output

    key = VALID_KEY.encode()
    outputs = first.output + second.output + costs.output + caplog.text
    assert VALID_KEY not in outputs
    for folder in (grouped_store, out):
        for path in folder.rglob("*"):
            assert not path.is_file() or key not in path.read_bytes(), path
    assert all(g.api_key == VALID_KEY for g in gemini.generations)  # it was sent, though


def test_the_service_names_clusters_on_request(grouped_store, gemini):
    from embedlab.service.app import create_app
    from starlette.testclient import TestClient

    with embedlab.open(grouped_store, quiet=True, keep_vectors=True) as lab:
        with TestClient(create_app(lab)) as http:
            body = {"k": 3, "reduce": "pca", "name_clusters": True}
            done = http.post("/api/v1/analyses?wait=true", json=body)
            assert done.status_code == 200, done.text
            found = http.get(f"/api/v1/analyses/{done.json()['analysis']}").json()
            names = {c["name"] for c in found["clusters"]}
            assert names == model_names(gemini) and len(gemini.generations) == 3
            assert found["naming"]["requested"] == 3

            refused = http.post("/api/v1/analyses", json={"k": 3, "naming_model": MODEL})
            assert refused.status_code == 400
            assert refused.headers["content-type"] == "application/problem+json"
            plain = http.post("/api/v1/analyses?wait=true", json={"k": 3, "reduce": "pca"})
            unnamed = http.get(f"/api/v1/analyses/{plain.json()['analysis']}").json()
            assert {c["name_source"] for c in unnamed["clusters"]} == {"terms"}
            assert unnamed["naming"] is None and len(gemini.generations) == 3


def test_clean_name_and_the_cache_key():
    assert clean_name('"Space Exploration".\n') == "Space Exploration"
    assert clean_name("\n\n**Name:** Medical  research\nbecause ...") == "Medical research"
    assert clean_name("  \n") == "" and clean_name(None) == ""
    assert len(clean_name("word " * 40)) == 60
    key = name_key(["b", "a"], 1, MODEL)
    assert key == name_key(["a", "b"], 1, MODEL)  # members, not their order
    assert key != name_key(["a", "b"], 2, MODEL) and key != name_key(["a", "b"], 1, "other")
    assert key != name_key(["a", "c"], 1, MODEL)
