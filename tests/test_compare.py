"""Comparing two spaces (issue 13, part 1): real Chroma, library, CLI and service."""

from __future__ import annotations

import json

import embedlab
import numpy as np
import pytest
from click.testing import CliRunner
from embedlab.analyze.compare import chance_jaccard, jaccard, nearest_rows
from embedlab.cli import cli
from embedlab.store import Document, Space, Store

from tests.builders import SPACE, grouped_corpus
from tests.conftest import invoke_cli
from tests.service_helpers import InProcessService

ROTATED = Space("fake", "fake-rotated", "none", 16)  # SPACE's vectors, rotated: same cosines
NOISE = Space("fake", "fake-noise", "none", 32)  # random vectors: no structure
CHANGED = "syn/crypt/029"  # another text in ROTATED: not the same document
EXTRA = 5  # documents only ROTATED holds


def three_spaces(store: Store) -> list[Document]:
    """SPACE (90 grouped documents), ROTATED (the same geometry; one text changed, 5
    more documents) and NOISE (the same 90 documents, random vectors)."""
    docs = grouped_corpus(store)
    ids = [d.id for d in docs]
    vectors = store.collection(SPACE).load(ids, with_text=False)[0]
    rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))
    rotated = [
        Document(d.id, "a different text", d.source, d.label) if d.id == CHANGED else d
        for d in docs
    ]
    rotated += [Document(f"extra/{i}", f"extra text {i}", "extra", "space") for i in range(EXTRA)]
    extra_vectors = np.random.default_rng(2).normal(size=(EXTRA, 16))
    rows = np.concatenate([vectors @ rotation, extra_vectors]).astype(np.float32)
    store.collection(ROTATED, create=True).write(rotated, rows, [False] * len(rotated))
    noise = np.random.default_rng(3).normal(size=(len(docs), 32)).astype(np.float32)
    store.collection(NOISE, create=True).write(docs, noise, [False] * len(docs))
    return docs


@pytest.fixture
def compared_store(store_path, monkeypatch):
    with Store.open_local(store_path, create=True) as store:
        three_spaces(store)

    import embedlab.ingest.providers

    def forbidden(*args, **kwargs):
        raise AssertionError("a comparison touched a provider")

    monkeypatch.setattr(embedlab.ingest.providers, "make_provider", forbidden)
    return store_path


def test_nearest_rows_are_exact_with_ties_to_the_lower_row():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 12))
    x[7] = x[3]  # identical documents: a tie wherever they rank
    x[41] = x[3]
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    sims = x @ x.T
    expected = []
    for i in range(len(x)):
        others = sorted((j for j in range(len(x)) if j != i), key=lambda j: (-sims[i, j], j))
        expected.append(others[:5])
    for chunk in (7, 1000):  # the answer does not depend on how the rows are chunked
        assert nearest_rows(x, 5, chunk=chunk).tolist() == expected
    assert nearest_rows(x, 5)[3][:2].tolist() == [7, 41]


def test_jaccard_and_its_chance_level():
    index, shared = jaccard(np.array([[1, 2, 3], [1, 2, 3]]), np.array([[3, 4, 5], [2, 3, 1]]))
    assert shared.tolist() == [1, 3] and index.tolist() == [0.2, 1.0]
    assert chance_jaccard(601, 10) == pytest.approx((100 / 600) / (20 - 100 / 600))


def test_same_geometry_agrees_fully_and_noise_at_chance(compared_store, tmp_path):
    with embedlab.open(compared_store, quiet=True) as lab:
        same = lab.compare(SPACE, ROTATED, k=3, reduce="pca", out=tmp_path / "same")
        assert same.documents == {
            "compared": 89,
            "selected_a": 90,
            "selected_b": 95,
            "only_in_a": 0,
            "only_in_b": EXTRA,
            "text_differs": 1,
            "label_differs": 0,
            "paired_by_content": 0,  # issue 25 item 10: every pair here is by id
        }
        assert CHANGED not in same.ids and not any(i.startswith("extra/") for i in same.ids)
        hood = same.summary["neighbourhoods"]
        assert (hood["jaccard_mean"], hood["identical_share"], hood["k"]) == (1.0, 1.0, 10)
        assert hood["shared_histogram"] == [0] * 10 + [89]
        assert same.summary["clusterings"]["ari"] == 1.0
        assert same.summary["clusterings"]["nmi"] == 1.0
        assert same.scores.loc["hungarian_accuracy"].tolist() == [1.0, 1.0, "tie"]
        assert same.summary["maps"]["procrustes_disparity"] < 0.01  # the same map, turned
        assert np.abs(same.coords_a - same.coords_b).max() < 0.1 * np.ptp(same.coords_a)

        noise = lab.compare(SPACE, NOISE, k=3, per_class=20, seed=4, reduce="pca")
        assert noise.documents["compared"] == 60
        assert noise.per_class["size"].tolist() == [20, 20, 20]
        assert noise.summary["neighbourhoods"]["jaccard_mean"] < 0.3
        assert noise.summary["neighbourhoods"]["chance_jaccard"] == round(chance_jaccard(60, 10), 6)
        assert noise.summary["evaluation"]["winners"]["hungarian_accuracy"] == "a"
        assert noise.per_class["winner"].tolist() == ["a", "a", "a"]
        worst = noise.most_different(3)
        assert worst["jaccard"].tolist() == sorted(noise.jaccard.tolist())[:3]
        assert len(worst["nearest_a"][0]) == 3 and worst["snippet"][0]
        ranked = noise.neighbourhoods.sort_values(["jaccard", "crossed", "id"])
        assert worst["id"].tolist() == ranked["id"].tolist()[:3]  # ties: furthest moved first

        reopened = lab.comparison(same.id)
        assert reopened.to_dict() == same.to_dict()
        assert reopened.points.equals(same.points)
    files = sorted(p.name for p in (tmp_path / "same").iterdir())
    assert files == sorted(same.files) == sorted(
        ["comparison.json", "points.csv", "maps.png", "maps_by_agreement.png", "agreement.png",
         "report.md"]
    )  # fmt: skip
    written = json.loads((tmp_path / "same" / "comparison.json").read_text())
    assert written["documents"]["compared"] == 89 and written["neighbourhoods"]["k"] == 10
    assert written["spaces"]["b"]["model"] == "fake-rotated"
    report = (tmp_path / "same" / "report.md").read_text()
    assert "| Hungarian accuracy | 1.000 | 1.000 | tie |" in report
    assert "5 only in B, 1 with another text in each" in report


def test_refusals_say_what_to_do(compared_store, store_path):
    with Store.open_local(store_path) as store:  # a space sharing no id with the others
        other = Space("fake", "other", "none", 16)
        docs = [Document(f"other/{i}", f"other {i}", "other", "x") for i in range(5)]
        vectors = np.random.default_rng(5).normal(size=(5, 16)).astype(np.float32)
        store.collection(other, create=True).write(docs, vectors, [False] * 5)
    with embedlab.open(store_path, quiet=True) as lab:
        with pytest.raises(embedlab.InvalidRequest, match="hold no document in common"):
            lab.compare(SPACE, "fake:other")
        with pytest.raises(embedlab.InvalidRequest, match="give two different spaces"):
            lab.compare(SPACE, "fake:fake-model")
        with pytest.raises(embedlab.InvalidRequest, match="k=500 needs at least 500"):
            lab.compare(SPACE, ROTATED, k=500)
        with pytest.raises(embedlab.InvalidRequest, match="neighbours must be 1..100"):
            lab.compare(SPACE, ROTATED, neighbours=0)
        assert lab.store.artifacts.heads("comparison") == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--space", "fake:fake-model"], "give --space twice"),
        (["--space", "fake:fake-model", "--space", "fake:nope"], "no space matches"),
        (["--space", "fake:fake-model", "--space", "fake:fake-noise", "--labels", "zz*"],
         "hold no document in common"),
    ],
)  # fmt: skip
def test_cli_compare_bad_input_is_one_line(compared_store, tmp_path, args, message):
    result = CliRunner().invoke(
        cli, ["--store", str(compared_store), "compare", *args, "--out", str(tmp_path / "c")]
    )
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_cli_compare_prints_the_tables_and_writes_the_files(compared_store, tmp_path):
    out = tmp_path / "cmp"
    args = ["--store", str(compared_store), "compare", "--space", "fake:fake-model"]
    args += ["--space", "fake:fake-noise", "--k", "3", "--reduce", "pca", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert "A: fake:fake-model (16 dims)" in lines and "B: fake:fake-noise (32 dims)" in lines
    assert "documents held by both: 90" in lines
    assert any(line.startswith("hungarian_accuracy   1.000") for line in lines)
    assert lines[-1].startswith("90 documents compared, 6 files in ")
    assert json.loads((out / "comparison.json").read_text())["options"]["k"] == 3


def test_service_compares_as_a_job_and_serves_both_maps(compared_store, tmp_path):
    service = InProcessService(compared_store, None)
    try:
        body = {
            "space_a": "fake:fake-model",
            "space_b": "fake:fake-rotated",
            "k": 3,
            "reduce": "pca",
        }
        done = service.http.post("/api/v1/comparisons", params={"wait": "true"}, json=body)
        assert done.status_code == 200, done.text
        found = service.http.get(f"/api/v1/comparisons/{done.json()['comparison']}").json()
        assert found["documents"]["compared"] == 89
        assert found["neighbourhoods"]["jaccard_mean"] == 1.0
        points = found["points"]
        assert len(points["id"]) == len(points["a"]["x"]) == len(points["b"]["y"]) == 89
        assert set(points["a"]) == {"x", "y", "cluster"} and len(points["jaccard"]) == 89

        queued = service.http.post("/api/v1/comparisons", json={**body, "labels": ["space"]})
        assert queued.status_code == 202
        job = service.wait_job(queued.json()["job"])
        assert job["state"] == "done" and job["documents"] == 30

        same = service.http.post("/api/v1/comparisons", json={**body, "space_b": body["space_a"]})
        assert same.status_code == 400 and "two different spaces" in same.json()["detail"]
        missing = service.http.get("/api/v1/comparisons/nope")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")

        cli_args = ["--server", service.url, "compare", "--space", "fake:fake-model"]
        cli_args += ["--space", "fake:fake-noise", "--reduce", "pca", "--out", str(tmp_path / "r")]
        remote = invoke_cli(cli_args)
        assert remote.returncode == 0, remote.stderr
        assert "documents held by both: 90" in remote.stdout
        assert (tmp_path / "r" / "comparison.json").is_file()
    finally:
        assert service.stop() == 0
