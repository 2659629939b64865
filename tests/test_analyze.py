"""Analyze on a generated corpus with known groups, written straight into a real store."""

import csv
import json
import re
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from embedlab.analyze import report
from embedlab.analyze.run import AnalysisOptions, analyze_corpus
from embedlab.analyze.select import AnalyzeError, Selection, load_corpus, pick_space
from embedlab.cli import cli
from embedlab.store import Document, Space, Store
from sklearn import metrics as skm

from tests.builders import SPACE, WORDS, grouped_corpus
from tests.conftest import REPO


@pytest.fixture
def corpus(store):
    grouped_corpus(store)
    return load_corpus(store, SPACE, Selection())


def test_kmeans_recovers_known_groups(corpus):
    result = analyze_corpus(corpus, AnalysisOptions(k=3, reduce="pca"), None)
    assert result.metrics["hungarian_accuracy"] == 1.0
    assert {row["share"] for row in result.metrics["per_class"].values()} == {1.0}
    majority = {row["majority_cluster"] for row in result.metrics["per_class"].values()}
    assert len(majority) == 3


def test_spherical_kmeans_groups_by_direction_with_unit_centroids():
    from embedlab.analyze.cluster import spherical_kmeans

    rng = np.random.default_rng(0)
    x = np.repeat(np.eye(3, 16), 30, axis=0) + 0.3 * rng.normal(size=(90, 16))
    truth = np.repeat(np.arange(3), 30)
    labels = spherical_kmeans(x, 3, seed=0)
    assert skm.adjusted_rand_score(truth, labels) == 1.0
    # only directions count: rescaled rows give the same clusters, and the seed fixes them
    scaled = x * rng.uniform(0.1, 10.0, size=(90, 1))
    assert np.array_equal(spherical_kmeans(scaled, 3, seed=0), labels)
    # every document sits with the unit centroid it is most similar to (cosine)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    centroids = np.array([unit[labels == c].sum(axis=0) for c in range(3)])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    assert np.array_equal((unit @ centroids.T).argmax(axis=1), labels)
    assert sorted(spherical_kmeans(x[:4], 4, seed=0)) == [0, 1, 2, 3]  # k = n


def test_metrics_match_scikit_learn(corpus):
    result = analyze_corpus(corpus, AnalysisOptions(k=5, seed=1, reduce="pca"), None)
    truth, found = corpus.labels, result.cluster_labels
    m = result.metrics
    assert m["ari"] == pytest.approx(skm.adjusted_rand_score(truth, found), abs=1e-6)
    assert m["nmi"] == pytest.approx(skm.normalized_mutual_info_score(truth, found), abs=1e-6)
    assert m["homogeneity"] == pytest.approx(skm.homogeneity_score(truth, found), abs=1e-6)
    assert m["completeness"] == pytest.approx(skm.completeness_score(truth, found), abs=1e-6)
    assert m["v_measure"] == pytest.approx(skm.v_measure_score(truth, found), abs=1e-6)
    assert m["silhouette"] == pytest.approx(
        skm.silhouette_score(corpus.vectors, found, metric="cosine"), abs=1e-6
    )
    confusion = np.array(m["confusion"]["matrix"])
    order = m["confusion"]["clusters"]  # columns: clusters in the order of their matched class
    assert sorted(order) == sorted(set(found.tolist()))
    expected = skm.cluster.contingency_matrix(truth, found)[:, order]
    np.testing.assert_array_equal(confusion, expected)
    matched = [int(c) for c, _ in sorted(m["cluster_to_class"].items(), key=lambda kv: kv[1])]
    assert order[:3] == matched  # the matched clusters first, one per class: a diagonal
    # k=5 over 3 groups: a perfect one-to-one matching can cover at most 3 clusters
    assert m["hungarian_accuracy"] <= 1.0 and len(m["cluster_to_class"]) == 3


def test_outputs_exist_parse_and_describe_clusters(corpus, tmp_path):
    out = tmp_path / "report"
    result = analyze_corpus(corpus, AnalysisOptions(k=3, reduce="pca"), out)
    assert sorted(result.files) == sorted(
        [
            "points.csv",
            "metrics.json",
            "clusters.json",
            "map_by_label.png",
            "map_by_cluster.png",
            "confusion.png",
            "report.md",
        ]
    )
    rows = list(csv.DictReader(open(out / "points.csv")))
    assert len(rows) == 90 and list(rows[0]) == ["id", "label", "cluster", "x", "y", "cluster_name"]
    names = {c["cluster"]: c["name"] for c in result.clusters}  # terms' names without a model
    assert all(row["cluster_name"] == names[int(row["cluster"])] for row in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "per_class",
        "ari",
        "nmi",
        "homogeneity",
        "completeness",
        "v_measure",
        "hungarian_accuracy",
        "silhouette",
        "confusion",
        "params",
        "space",
    ):
        assert key in metrics
    clusters = json.loads((out / "clusters.json").read_text())
    for info in clusters:
        group = next(iter(info["labels"]))
        assert set(info["terms"][:4]) == set(WORDS[group].split())
        assert all(rep["id"].startswith(f"syn/{group}/") for rep in info["representatives"])
        assert len(info["representatives"]) == 3
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| space | " in (out / "report.md").read_text()


def test_same_inputs_give_byte_identical_files(corpus, tmp_path):
    for name in ("a", "b"):
        analyze_corpus(corpus, AnalysisOptions(k=3, seed=7), tmp_path / name)
    for name in ("points.csv", "metrics.json", "clusters.json", "report.md"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_k_auto_picks_the_best_silhouette_and_plots_it(corpus, tmp_path):
    result = analyze_corpus(corpus, AnalysisOptions(k="auto", reduce="pca"), tmp_path / "auto")
    scores = {int(k): v for k, v in result.metrics["k_silhouette"].items()}
    assert result.metrics["params"]["clustering"]["k"] == max(scores, key=scores.get) == 3
    assert (tmp_path / "auto" / "silhouette.png").is_file()


@pytest.mark.parametrize("algorithm", ["agglomerative", "hdbscan", "dbscan"])
def test_other_algorithms_find_the_groups(corpus, algorithm):
    options = AnalysisOptions(algorithm=algorithm, k=3, eps=0.3, min_cluster_size=5, reduce="pca")
    result = analyze_corpus(corpus, options, None)
    assert result.metrics["v_measure"] > 0.9


def test_pca_and_umap_maps(corpus):
    import warnings

    for method in ("pca", "umap"):
        with warnings.catch_warnings():  # a seeded UMAP leaks no n_jobs UserWarning
            warnings.simplefilter("error", UserWarning)
            result = analyze_corpus(corpus, AnalysisOptions(k=3, reduce=method), None)
        assert result.coords.shape == (90, 2) and np.isfinite(result.coords).all()


def test_unlabelled_documents_skip_evaluation_with_a_note(store, tmp_path):
    grouped_corpus(store, labelled=False)
    corpus = load_corpus(store, SPACE, Selection())
    result = analyze_corpus(corpus, AnalysisOptions(k=3, reduce="pca"), tmp_path / "out")
    assert "skipped" in result.metrics["labels"] and "per_class" not in result.metrics
    assert result.metrics["silhouette"] > 0.5
    assert not (tmp_path / "out" / "map_by_label.png").exists()


def test_selection_by_label_source_sample_and_limit(store):
    grouped_corpus(store)
    assert len(load_corpus(store, SPACE, Selection(labels=["sp*", "med"])).ids) == 60
    assert len(load_corpus(store, SPACE, Selection(sources=["synth*"], per_class=7)).ids) == 21
    # --limit is a seeded sample across labels, not the first N ids (one label's documents)
    limited = load_corpus(store, SPACE, Selection(limit=9)).ids
    assert len(limited) == 9 and limited == sorted(limited)
    assert len({doc_id.split("/")[1] for doc_id in limited}) > 1
    assert load_corpus(store, SPACE, Selection(limit=9)).ids == limited
    assert load_corpus(store, SPACE, Selection(limit=9, seed=1)).ids != limited
    with pytest.raises(AnalyzeError, match="no documents"):
        load_corpus(store, SPACE, Selection(labels=["nothing"]))


def test_space_choice_errors(store):
    with pytest.raises(AnalyzeError, match="is empty"):
        pick_space(store)
    grouped_corpus(store)
    grouped_corpus(store, space=Space("fake", "fake-model", "none", 8))
    with pytest.raises(AnalyzeError, match="2 spaces match"):
        pick_space(store)
    assert pick_space(store, dims=8).dims == 8
    with pytest.raises(AnalyzeError, match="no space matches"):
        pick_space(store, model="other")


def test_report_escapes_document_text(store, tmp_path):
    evil = "<script>alert(1)</script> [click](http://evil) | rocket orbit"
    docs = [Document(f"e/{i}", f"{evil} {i}", "evil", "x" if i else "y") for i in range(3)]
    vectors = np.eye(3, SPACE.dims, dtype=np.float32) + 1
    store.collection(SPACE, create=True).write(docs, vectors, [False] * 3)
    analyze_corpus(load_corpus(store, SPACE, Selection()), AnalysisOptions(k=1), tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert text.count("\\<script\\>") == 3  # every representative shown, escaped
    assert "<script>" not in text and "](http" not in text


def test_cli_analyze_never_builds_a_provider_nor_calls_the_api(
    store_path, gemini, monkeypatch, tmp_path
):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    import embedlab.ingest.providers

    def forbidden(*args, **kwargs):
        raise AssertionError("analyze touched a provider")

    monkeypatch.setattr(embedlab.ingest.providers, "make_provider", forbidden)
    monkeypatch.setattr(embedlab.ingest.providers, "LocalProvider", forbidden)
    result = CliRunner().invoke(
        cli,
        ["--store", str(store_path), "analyze", "--k", "3", "--reduce", "pca",
         "--out", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "hungarian_accuracy 1.000" in result.output
    assert (
        result.output.strip().splitlines()[-1].startswith("90 documents, 3 clusters, 7 files in ")
    )
    assert gemini.requests == []


def test_analyze_package_never_imports_ingest():
    code = (
        "import sys, embedlab.analyze.run, embedlab.analyze.select, embedlab.analyze.plots; "
        "print(sorted(m for m in sys.modules if m.startswith('embedlab.ingest')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "--k", "500"], "k=500 needs at least 500 documents"),
        (["analyze", "--k", "zero"], "use a number of clusters or 'auto'"),
        (["analyze", "--labels", "nope*"], "no documents in fake:fake-model"),
        (["analyze", "--dims", "99"], "no space matches"),
    ],
)
def test_cli_analyze_bad_input_is_one_line(store_path, tmp_path, args, message):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    result = CliRunner().invoke(
        cli, ["--store", str(store_path), *args, "--out", str(tmp_path / "r")]
    )
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_large_selections_switch_to_scalable_methods_and_say_so(corpus, monkeypatch, tmp_path):
    import embedlab.analyze.cluster
    import embedlab.analyze.reduce
    from embedlab.analyze.report import method_line

    small = analyze_corpus(corpus, AnalysisOptions(k=3), None)
    assert method_line(small.metrics).startswith("SphericalKMeans k=3; map: t-SNE (perplexity")
    monkeypatch.setattr(embedlab.analyze.cluster, "LARGE_N", 50)  # the corpus has 90 documents
    monkeypatch.setattr(embedlab.analyze.reduce, "OPENTSNE_ABOVE", 50)
    large = analyze_corpus(corpus, AnalysisOptions(k=3), tmp_path / "out")
    assert method_line(large.metrics) == (
        "MiniBatchKMeans k=3; map: openTSNE (FFT t-SNE) (perplexity 29)"
    )
    assert large.metrics["hungarian_accuracy"] == 1.0
    assert large.coords.shape == (90, 2) and np.isfinite(large.coords).all()
    with pytest.raises(ValueError, match="agglomerative clustering needs an n x n"):
        analyze_corpus(corpus, AnalysisOptions(algorithm="agglomerative", k=3), None)


def test_noise_is_not_a_cluster_and_is_reported_as_coverage(store):
    grouped_corpus(store)
    rng = np.random.default_rng(5)
    outliers = [Document(f"syn/out/{i}", f"stray {i}", "synthetic", "med") for i in range(12)]
    vectors = rng.normal(size=(12, SPACE.dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.collection(SPACE).write(outliers, vectors, [False] * 12)
    corpus = load_corpus(store, SPACE, Selection())
    result = analyze_corpus(corpus, AnalysisOptions("dbscan", None, eps=0.35, reduce="pca"), None)
    m = result.metrics
    noise = result.cluster_labels == -1
    assert 0 < noise.sum() < len(noise)
    assert m["noise"] == int(noise.sum()) and m["coverage"] == round(1 - noise.mean(), 6)
    # agreement metrics score the clustered documents only
    kept = ~noise
    truth = [corpus.labels[i] for i in np.flatnonzero(kept)]
    assert m["ari"] == pytest.approx(skm.adjusted_rand_score(truth, result.cluster_labels[kept]))
    assert "-1" not in m["cluster_to_class"]
    # a class's share counts its noise against it, and its noise share is said
    med = m["per_class"]["med"]
    med_rows = [i for i, label in enumerate(corpus.labels) if label == "med"]
    in_majority = sum(result.cluster_labels[i] == med["majority_cluster"] for i in med_rows)
    assert med["share"] == round(in_majority / len(med_rows), 6) and med["size"] == 42
    assert med["noise"] == round(noise[med_rows].mean(), 6) > 0
    assert m["confusion"]["clusters"][-1] == -1
    assert np.array(m["confusion"]["matrix"]).sum() == len(corpus.ids)
    assert "noise" in report.per_class_table(m).splitlines()[0]
    assert f"({m['noise']} noise documents not scored)" in report.headline(m)


def test_everything_noise_says_so_instead_of_a_single_cluster(store_path, tmp_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    result = CliRunner().invoke(
        cli,
        ["--store", str(store_path), "analyze", "--algo", "dbscan", "--eps", "0.0001",
         "--reduce", "pca", "--out", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no clusters: every document is noise" in result.output
    assert "a single cluster" not in result.output


def test_cluster_terms_read_any_script_and_skip_stop_words_and_headers():
    from embedlab.analyze.describe import top_terms

    texts = [
        "Organization: University of Alaska\nLines: 12\nDie Rakete und der Orbit ist hoch, "
        "een raket\nIn article <x@y> bob writes:\n> quoted reply about alaska\ncafé rakete",
        "Organization: University of Alaska\nDie Rakete fliegt\nrakete orbit space",
        "Лекарство против болезни, лекарство помогает; the doctor treats patients",
        "лекарство и врач; doctor patient",
    ]
    terms = top_terms(np.array([0, 0, 1, 1]), texts, [0, 1])
    assert terms[0][:2] == ["rakete", "orbit"] and "café" in terms[0]
    assert "лекарство" in terms[1] and "doctor" in terms[1]
    every = set(terms[0]) | set(terms[1])
    for noise in ("alaska", "organization", "lines", "die", "der", "und", "een", "writes"):
        assert noise not in every


def test_cluster_terms_are_scikit_learns_c_tf_idf_from_cached_counts(monkeypatch):
    """top_terms counts each text once per process (TermCounts) and weighs the clusters'
    sums as TfidfVectorizer(sublinear_tf=True) weighs their joined texts: the same terms
    in the same order, for a new labelling of texts it has counted before too."""
    from embedlab.analyze import describe
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

    rng = np.random.default_rng(0)
    words = "orbit rocket launch doctor patient cipher key privacy café 日本語の文章 ракета".split()
    texts = [" ".join(rng.choice(words, rng.integers(1, 30))) for _ in range(60)]
    texts[5] = "Organization: Alaska\nIn article <x@y> bob writes:\n> quoted\nrocket rocket"

    def word_loop(text):  # terms_of as it was before its fast path, word by word
        terms = []
        for match in re.finditer(r"(?u)\w+", text):
            for part in describe._CJK_SPLIT.split(match[0]):
                if describe._CJK_SPLIT.fullmatch(part):
                    pairs = (part[i : i + 2] for i in range(len(part) - 1))
                    terms += [b for b in pairs if not describe._HIRAGANA.match(b)]
                elif re.fullmatch(r"(?u)[^\W\d_]{3,}", part):
                    terms.append(part)
        return terms

    def reference(labels, clusters):
        joined = [" ".join(describe.term_text(t) for t, c in zip(texts, labels) if c == k)
                  for k in clusters]  # fmt: skip
        vectoriser = TfidfVectorizer(
            stop_words=sorted(ENGLISH_STOP_WORDS | describe.EXTRA_STOP_WORDS),
            tokenizer=word_loop, token_pattern=None, sublinear_tf=True,
        )  # fmt: skip
        weights = vectoriser.fit_transform(joined).toarray()
        vocabulary = vectoriser.get_feature_names_out()
        return {
            k: [str(vocabulary[i]) for i in np.lexsort((vocabulary, -weights[row]))[:10]
                if weights[row, i] > 0]
            for row, k in enumerate(clusters)
        }  # fmt: skip

    tokenized = []
    real = describe.terms_of
    monkeypatch.setattr(describe, "terms_of", lambda t: tokenized.append(t) or real(t))
    for labels in (rng.integers(0, 3, 60), rng.integers(-1, 5, 60), np.zeros(60, int)):
        clusters = sorted(set(labels.tolist()))
        assert describe.top_terms(labels, texts, clusters) == reference(labels, clusters)
    assert len(tokenized) == len(set(texts))  # each text counted once, then reused
    # more texts than the counts keep: counted on their own, the same terms
    monkeypatch.setattr(describe, "TERM_COUNTS", describe.TermCounts(max_documents=7))
    labels = rng.integers(0, 3, 60)
    clusters = sorted(set(labels.tolist()))
    assert describe.top_terms(labels, texts, clusters) == reference(labels, clusters)


def test_labels_no_font_can_draw_are_said_once_not_silent_boxes(store, tmp_path):
    from embedlab.analyze import plots

    fonts, note = plots.glyph_fonts(["sci.space", "café"])
    assert fonts[0] == "DejaVu Sans" and note is None
    docs = grouped_corpus(store)
    relabelled = [
        Document(d.id, d.text, d.source, {"space": "太空", "med": "医学"}.get(d.label, d.label))
        for d in docs
    ]
    collection = store.collection(SPACE)
    vectors, _, _ = collection.load([d.id for d in docs])
    collection.write(relabelled, vectors, [False] * len(docs))
    result = analyze_corpus(
        load_corpus(store, SPACE, Selection()), AnalysisOptions(k=3, reduce="pca")
    )
    result.save(tmp_path / "r")
    fonts, expected = plots.glyph_fonts(["太空", "医学"])
    if expected is None:  # a CJK font is installed: it is used, and nothing is said
        assert len(fonts) == 2 and result.notes == []
    else:
        assert result.notes == [expected] and "太" in expected


def test_cosine_silhouette_equals_scikit_learns_with_zero_rows_and_singletons():
    """The linear silhouette (cluster sums) is scikit-learn's cosine silhouette over every
    row, an all-zero row (a provider's empty answer) and a singleton cluster included."""
    from embedlab.analyze.cluster import cosine_silhouette
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 8)).astype(np.float32) * rng.uniform(0.5, 3, size=(60, 1))
    x[[4, 17]] = 0.0
    labels = np.repeat([0, 1, 2], 20)
    labels[59] = 3  # a cluster of one
    assert cosine_silhouette(x, labels) == pytest.approx(
        silhouette_score(x, labels, metric="cosine"), abs=1e-6
    )
