"""k-means on the vectors joined with the documents' words (issue #14): the words' view is
seeded, validated in one place, on by default for the local model only, and said."""

import math

import numpy as np
import pytest
from click.testing import CliRunner
from embedlab.analyze.cluster import cluster, text_view, with_text_view
from embedlab.analyze.report import method_line
from embedlab.analyze.run import AnalysisOptions, analyze_corpus
from embedlab.analyze.select import Selection, load_corpus
from embedlab.cli import cli
from embedlab.errors import InvalidRequest
from embedlab.store import Document, Space, Store

LOCAL = Space("local", "sentence-transformers/all-MiniLM-L6-v2", "none", 16)
OTHER = Space("fake", "fake-model", "none", 16)
TOPICS = {
    "cars": "engine brake clutch gearbox tyre sedan",
    "bikes": "helmet saddle throttle fairing kickstand leathers",
    "boats": "hull keel sail mast rudder anchor",
}


def blurred_corpus(per_topic: int = 20, seed: int = 0) -> tuple[np.ndarray, list[str], list[str]]:
    """Vectors that cannot tell the topics apart (noise around one direction), texts that
    can (each topic its own words): only the words' view finds the topics."""
    rng = np.random.default_rng(seed)
    common = rng.normal(size=16)
    vectors, texts, labels = [], [], []
    for topic, words in TOPICS.items():
        for _ in range(per_topic):
            vectors.append(common + rng.normal(size=16))
            texts.append(" ".join(rng.choice(words.split(), 5)) + " today again")
            labels.append(topic)
    vectors = np.array(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), texts, labels


def purity(labels: list[str], clusters: np.ndarray) -> float:
    """Share of documents in their cluster's majority topic."""
    total = 0
    for c in set(clusters.tolist()):
        members = [label for label, k in zip(labels, clusters) if k == c]
        total += max(members.count(t) for t in set(members))
    return total / len(labels)


def test_the_words_view_is_seeded_unit_length_and_none_without_shared_terms():
    _, texts, _ = blurred_corpus()
    first, again = text_view(texts, seed=3), text_view(texts, seed=3)
    assert first is not None and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, rtol=1e-5)
    assert first.shape == (60, min(100, first.shape[1])) and 2 <= first.shape[1] <= 59
    assert text_view(["alpha", "beta", "gamma"]) is None  # no term in two documents
    assert text_view(["", "", ""]) is None
    assert text_view(["the and of", "the and of"]) is None  # stop words only


def test_joined_rows_give_meaning_and_words_the_weighted_say():
    vectors, texts, _ = blurred_corpus()
    joined, dims = with_text_view(vectors, texts, 2.0, seed=0)
    assert joined.shape == (60, 16 + dims)
    np.testing.assert_allclose(joined[:, :16], vectors, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(joined[:, 16:], axis=1), 2.0, rtol=1e-5)
    alone, none = with_text_view(vectors, ["x"] * 60, 1.0)
    assert none == 0 and alone.shape == (60, 16)  # no words to add: the vectors alone
    with pytest.raises(InvalidRequest, match="59 texts for 60 vectors"):
        with_text_view(vectors, texts[:59], 1.0)


def test_words_find_topics_the_vectors_blur_and_the_same_seed_gives_the_same_clusters():
    vectors, texts, labels = blurred_corpus()
    alone = cluster(vectors, "kmeans", 3, seed=0)
    with_words = cluster(vectors, "kmeans", 3, seed=0, texts=texts, text_weight=1.0)
    assert purity(labels, alone.labels) < 0.7
    assert purity(labels, with_words.labels) == 1.0
    assert with_words.params["text_weight"] == 1.0 and with_words.params["text_dims"] >= 2
    assert "text_weight" not in alone.params
    again = cluster(vectors, "kmeans", 3, seed=0, texts=texts, text_weight=1.0)
    np.testing.assert_array_equal(with_words.labels, again.labels)
    auto = cluster(vectors, "kmeans", "auto", seed=0, texts=texts, text_weight=1.0)
    assert auto.params["k"] == 3 and auto.params["text_weight"] == 1.0
    without = cluster(vectors, "kmeans", 3, seed=0, texts=["x"] * 60, text_weight=1.0)
    assert without.params["text_weight"] == 0.0 and without.params["text_dims"] == 0


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(text_weight=-0.5), "text_weight must be between 0 (vectors alone) and 10"),
        (dict(text_weight=10.5), "text_weight must be between 0 (vectors alone) and 10"),
        (dict(text_weight=math.nan), "text_weight must be between 0"),
        (dict(text_weight=True), "text_weight must be a number"),
        (dict(text_weight="1"), "text_weight must be a number"),
        (dict(algorithm="hdbscan", text_weight=1.0), "text_weight applies to kmeans only"),
        (dict(algorithm="agglomerative", k=3, text_weight=0.5), "applies to kmeans only"),
    ],
)
def test_text_weight_is_validated_in_one_place(options, message):
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace(")", r"\)")):
        AnalysisOptions.checked(**options)
    assert AnalysisOptions.checked(algorithm="hdbscan", text_weight=0).text_weight == 0.0


def test_cluster_itself_refuses_what_it_cannot_do():
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(InvalidRequest, match="between 0 and 10"):
        cluster(x, "kmeans", 2, texts=["a b"] * 4, text_weight=11.0)
    with pytest.raises(InvalidRequest, match="applies to kmeans only, not agglomerative"):
        cluster(x, "agglomerative", 2, texts=["a b"] * 4, text_weight=1.0)
    with pytest.raises(InvalidRequest, match="needs the documents' texts"):
        cluster(x, "kmeans", 2, text_weight=1.0)


def write(store: Store, space: Space) -> list[str]:
    vectors, texts, labels = blurred_corpus()
    docs = [Document(f"t/{i:03d}", t, "synthetic", label)
            for i, (t, label) in enumerate(zip(texts, labels))]  # fmt: skip
    store.collection(space, create=True).write(docs, vectors, [False] * len(docs))
    return labels


def test_the_local_model_clusters_with_words_by_default_and_other_spaces_without(store):
    write(store, LOCAL)
    write(store, OTHER)
    local = analyze_corpus(load_corpus(store, LOCAL, Selection()), AnalysisOptions(k=3))
    other = analyze_corpus(load_corpus(store, OTHER, Selection()), AnalysisOptions(k=3))
    assert local.metrics["params"]["clustering"]["text_weight"] == 1.0
    assert local.metrics["hungarian_accuracy"] == 1.0
    assert "text_weight" not in other.metrics["params"]["clustering"]
    assert other.metrics["hungarian_accuracy"] < 0.7
    assert " on vectors + words (LSA " in method_line(local.metrics)
    assert "words" not in method_line(other.metrics)
    asked = AnalysisOptions.checked(k=3, text_weight=0.5)
    words = analyze_corpus(load_corpus(store, OTHER, Selection()), asked)
    assert words.metrics["params"]["clustering"]["text_weight"] == 0.5
    assert words.options["text_weight"] == 0.5
    off = AnalysisOptions.checked(k=3, text_weight=0)
    vectors_only = analyze_corpus(load_corpus(store, LOCAL, Selection()), off)
    assert "text_weight" not in vectors_only.metrics["params"]["clustering"]


def test_cli_text_weight_is_passed_on_and_bad_values_are_one_line(store_path, tmp_path):
    with Store.open_local(store_path, create=True) as store:
        write(store, OTHER)
    runner = CliRunner()
    base = ["--store", str(store_path), "analyze", "--k", "3", "--reduce", "pca"]
    done = runner.invoke(cli, [*base, "--text-weight", "1", "--out", str(tmp_path / "r")])
    assert done.exit_code == 0, done.output
    assert "on vectors + words (LSA" in done.output and "weight 1)" in done.output
    bad = runner.invoke(cli, [*base, "--text-weight", "11", "--out", str(tmp_path / "b")])
    assert bad.exit_code != 0 and "--text-weight" in bad.output and "Traceback" not in bad.output
    dbscan = ["--store", str(store_path), "analyze", "--algo", "dbscan", "--text-weight", "1"]
    wrong = runner.invoke(cli, [*dbscan, "--out", str(tmp_path / "d")])
    assert wrong.exit_code != 0 and "text_weight applies to kmeans only" in wrong.output
    assert "Traceback" not in wrong.output
