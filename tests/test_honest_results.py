"""Issue 25, the "honest results" items: figures that do not hide what happened.

- merged classes are flagged and the Hungarian-matched share stands beside the majority
  share (item 5);
- an identical analysis is reused, not stored again (item 9);
- compare pairs documents by content when their ids differ (item 10);
- HDBSCAN clusters on a UMAP reduction by default, and the headline leads with coverage
  when there is noise (item 7).
"""

from __future__ import annotations

import embedlab
import pytest
from embedlab.store import Space, Store

from tests.builders import SPACE, grouped_corpus
from tests.conftest import invoke_cli


@pytest.fixture
def grouped_lab(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    with embedlab.open(store_path, quiet=True) as lab:
        yield lab


# -- item 5: merged groups are flagged -------------------------------------------------------


def merged_pair(per_class: dict) -> tuple[list[str], str]:
    """The two classes k=2 puts in one cluster, and the class left alone."""
    by_cluster: dict = {}
    for name, row in per_class.items():
        by_cluster.setdefault(row["majority_cluster"], []).append(name)
    (merged,) = [names for names in by_cluster.values() if len(names) == 2]
    (alone,) = [names[0] for names in by_cluster.values() if len(names) == 1]
    return sorted(merged), alone


def test_classes_sharing_a_majority_cluster_are_flagged_everywhere(grouped_lab, tmp_path):
    # three clean groups in two clusters: two classes read 1.000 in "their" cluster, yet
    # it is one cluster, and the one-to-one matching can give it to only one of them
    analysis = grouped_lab.analyze(k=2, seed=0, reduce="pca", out=tmp_path / "r")
    rows = analysis.metrics["per_class"]
    (a, b), alone = merged_pair(rows)
    assert rows[a]["share"] == rows[b]["share"] == 1.0
    assert rows[a]["shares_cluster_with"] == [b] and rows[b]["shares_cluster_with"] == [a]
    assert rows[a]["merged"] and rows[b]["merged"] and not rows[alone]["merged"]
    assert rows[alone]["shares_cluster_with"] == [] and rows[alone]["hungarian_share"] == 1.0
    # one of the merged two got the shared cluster in the matching, the other nothing
    assert sorted([rows[a]["hungarian_share"], rows[b]["hungarian_share"]]) == [0.0, 1.0]
    assert analysis.metrics["hungarian_accuracy"] == pytest.approx(2 / 3, abs=1e-6)

    frame = analysis.per_class
    assert list(frame.columns[:3]) == ["majority_cluster", "share", "size"]  # as before
    assert frame.loc[a, "merged"] and frame.loc[a, "shares_cluster_with"] == [b]
    assert sorted(frame["hungarian_share"].tolist()) == [0.0, 1.0, 1.0]

    cluster = rows[a]["majority_cluster"]
    flag = f"\u26a0 shares cluster {cluster} with {b}"
    table = analysis.per_class_table()
    assert "matched" in table.splitlines()[0]
    line_a = next(line for line in table.splitlines() if line.startswith(a))
    assert flag in line_a
    assert "\u26a0" not in next(line for line in table.splitlines() if line.startswith(alone))

    report_md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "Hungarian-matched share" in report_md
    row_md = next(line for line in report_md.splitlines() if line.startswith(f"| {a} |"))
    assert flag in row_md and f"| {rows[a]['hungarian_share']:.3f} |" in row_md

    reopened = grouped_lab.analysis(analysis.id)  # stored with the analysis
    assert reopened.metrics["per_class"][a]["shares_cluster_with"] == [b]


def test_the_cli_table_flags_merged_classes(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    result = invoke_cli(["--store", str(store_path), "analyze", "--k", "2", "--reduce", "pca"])
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if line.startswith("class "))
    assert "share  matched" in header
    flagged = [line for line in result.stdout.splitlines() if "\u26a0 shares cluster" in line]
    assert len(flagged) == 2


def test_a_clean_clustering_flags_nothing(grouped_lab):
    analysis = grouped_lab.analyze(k=3, seed=0, reduce="pca")
    rows = analysis.metrics["per_class"].values()
    assert {row["hungarian_share"] for row in rows} == {1.0}
    assert not any(row["merged"] for row in rows)
    assert "\u26a0" not in analysis.per_class_table()


def test_a_stored_analysis_from_before_still_renders(grouped_lab):
    analysis = grouped_lab.analyze(k=3, seed=0, reduce="pca")
    for row in analysis.metrics["per_class"].values():  # as an older analysis stored it
        for key in ("hungarian_cluster", "hungarian_share", "shares_cluster_with", "merged"):
            del row[key]
    assert "-" in analysis.per_class_table().splitlines()[2]
    assert not analysis.per_class["merged"].any()


# -- item 9: an identical analysis is reused ------------------------------------------------


def test_an_identical_analysis_is_reused_not_stored_again(grouped_lab, tmp_path):
    first = grouped_lab.analyze(k=3, seed=0, reduce="pca")
    assert not first.reused and first.identity
    second = grouped_lab.analyze(k=3, seed=0, reduce="pca", out=tmp_path / "again")
    assert second.reused and second.id == first.id
    assert f"identical to analysis {first.id}: reused, nothing new stored" in second.notes
    assert not any("identical" in note for note in grouped_lab.analysis(first.id).notes)
    assert len(grouped_lab.analyses()) == 1
    assert (tmp_path / "again" / "report.md").exists()  # --out still writes the files
    assert second.cluster_labels.tolist() == first.cluster_labels.tolist()

    other_seed = grouped_lab.analyze(k=3, seed=1, reduce="pca")
    assert not other_seed.reused and other_seed.id != first.id
    other_k = grouped_lab.analyze(k=4, seed=0, reduce="pca")
    assert not other_k.reused
    assert len(grouped_lab.analyses()) == 3


def test_a_new_document_makes_a_new_analysis(grouped_lab):
    import numpy as np
    from embedlab.store import Document

    first = grouped_lab.analyze(k=3, seed=0, reduce="pca")
    vector = np.full((1, SPACE.dims), 0.25, dtype=np.float32)
    doc = Document("syn/space/new", "rocket orbit launch new", "synthetic", "space")
    grouped_lab.store.collection(SPACE).write([doc], vector, [False])
    second = grouped_lab.analyze(k=3, seed=0, reduce="pca")
    assert not second.reused and second.id != first.id and len(second.ids) == 91
    third = grouped_lab.analyze(k=3, seed=0, reduce="pca")
    assert third.reused and third.id == second.id


def test_the_cli_says_an_identical_analysis_was_reused(store_path, tmp_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    args = ["--store", str(store_path), "analyze", "--k", "3", "--reduce", "pca"]
    first = invoke_cli([*args, "--out", str(tmp_path / "a")])
    again = invoke_cli([*args, "--out", str(tmp_path / "b")])
    assert first.returncode == again.returncode == 0, again.stderr
    assert "stored as analysis" in first.stderr and "reused" not in first.stderr
    assert "reused, nothing new stored" in again.stderr
    assert (tmp_path / "b" / "report.md").read_text() == (tmp_path / "a" / "report.md").read_text()
    listing = invoke_cli(["--store", str(store_path), "analyses"])
    assert listing.returncode == 0 and listing.stdout.count("kmeans") == 1, listing.stdout


# -- item 10: compare pairs documents by their text when the ids differ ---------------------

MINE = Space("fake", "fake-mine", "none", 16)  # your own vectors, ingested under another prefix


def test_compare_pairs_the_same_texts_under_other_ids(store_path):
    import numpy as np
    from embedlab.store import Document

    with Store.open_local(store_path, create=True) as store:
        docs = grouped_corpus(store)
        ids = [d.id for d in docs]
        vectors = store.collection(SPACE).load(ids, with_text=False)[0]
        rotation, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))
        # the first 10 keep their ids; the rest come back as parquet/mine/... ids
        mine = [
            d if n < 10 else Document(f"parquet/mine/newsgroups/{d.id}", d.text, "mine", d.label)
            for n, d in enumerate(docs)
        ]
        mine.append(Document("parquet/mine/other", "a text only B holds", "mine", "space"))
        rows = np.concatenate([vectors @ rotation, np.ones((1, 16))]).astype(np.float32)
        store.collection(MINE, create=True).write(mine, rows, [False] * len(mine))
    with embedlab.open(store_path, quiet=True) as lab:
        result = lab.compare(SPACE, MINE, k=3, reduce="pca")
    docs_counts = result.documents
    assert docs_counts["compared"] == 90 and docs_counts["paired_by_content"] == 80
    assert docs_counts["only_in_a"] == 0 and docs_counts["only_in_b"] == 1
    assert result.ids == sorted(ids)  # shown under A's ids
    # the pairs are the right rows: the same geometry, so every neighbourhood agrees
    assert result.summary["neighbourhoods"]["jaccard_mean"] == 1.0
    assert result.summary["clusterings"]["ari"] == 1.0
    assert any("80 of the 90 documents were paired by their text" in n for n in result.notes)
    assert "paired by content: 80" in "\n".join(result.lines())


def test_pairing_by_content_is_one_to_one():
    from embedlab.analyze.compare import pair_documents

    a = {"a1": {"content_hash": "x"}, "a2": {"content_hash": "x"}, "s": {"content_hash": "y"}}
    b = {"b1": {"content_hash": "x"}, "s": {"content_hash": "y"}, "b3": {"content_hash": "z"}}
    pairs, by_content = pair_documents(a, b)
    assert pairs == {"s": "s", "a1": "b1"} and by_content == 1


# -- item 7: HDBSCAN on a UMAP reduction; the headline leads with coverage ------------------

WIDE = Space("fake", "fake-wide", "none", 256)  # wide, diffuse groups: density fades


def diffuse_groups(store: Store) -> None:
    """3 groups of 60 in 256 dims, each spread widely around its centre: on the full
    vectors HDBSCAN calls most of them noise (measured: 160 of 180)."""
    import numpy as np
    from embedlab.store import Document

    rng = np.random.default_rng(0)
    docs, rows = [], []
    for g, centre in enumerate(rng.normal(size=(3, WIDE.dims))):
        for i in range(60):
            docs.append(Document(f"wide/{g}/{i:02d}", f"group {g} post {i}", "wide", f"g{g}"))
            rows.append(centre + 4.0 * rng.normal(size=WIDE.dims))
    vectors = np.array(rows, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.collection(WIDE, create=True).write(docs, vectors, [False] * len(docs))


def test_hdbscan_clusters_on_a_umap_reduction_by_default(store_path):
    with Store.open_local(store_path, create=True) as store:
        diffuse_groups(store)
    with embedlab.open(store_path, quiet=True) as lab:
        reduced = lab.analyze(algorithm="hdbscan", reduce="pca")
        full = lab.analyze(algorithm="hdbscan", reduce="pca", cluster_dims=0)
    assert reduced.options["cluster_dims"] == 10 and full.options["cluster_dims"] == 0
    params = reduced.metrics["params"]["clustering"]
    assert params["cluster_dims"] == 10 and "UMAP to 10 dims (cosine" in reduced.method_line()
    assert "UMAP" not in full.method_line()
    # the groups are found on the reduction; the full vectors leave most as noise
    assert reduced.metrics["coverage"] >= 0.9 and reduced.metrics["hungarian_accuracy"] >= 0.9
    assert full.metrics["coverage"] <= 0.5
    # with noise, the headline leads with how much was clustered
    share = f"{full.metrics['coverage']:.0%}"
    assert full.verdict().startswith(
        f"clustered {share} of documents ({full.metrics['noise']} noise documents not scored); "
        "hungarian_accuracy"
    )


def test_dbscan_clusters_on_a_umap_reduction_by_default(store_path):
    with Store.open_local(store_path, create=True) as store:
        diffuse_groups(store)
    with embedlab.open(store_path, quiet=True) as lab:
        reduced = lab.analyze(algorithm="dbscan", reduce="pca")
        full = lab.analyze(algorithm="dbscan", reduce="pca", cluster_dims=0)
    assert reduced.options["cluster_dims"] == 10 and full.options["cluster_dims"] == 0
    assert "UMAP to 10 dims (cosine" in reduced.method_line()
    # eps 0.5 as a cosine distance between these vectors leaves most as noise; as a
    # distance on the reduction it clusters most (measured: 84% of documents, into
    # groups; eps is coarse here: Hungarian 0.68 where HDBSCAN's is over 0.9)
    assert full.metrics["coverage"] <= 0.5
    assert reduced.metrics["coverage"] >= 0.8 and len(set(reduced.cluster_labels) - {-1}) >= 2


def test_the_headline_leads_with_coverage_only_when_there_is_noise():
    from embedlab.analyze import report

    clean = {"hungarian_accuracy": 0.9, "noise": 0, "coverage": 1.0}
    assert report.headline(clean) == "hungarian_accuracy 0.900"
    noisy = {"hungarian_accuracy": 0.95, "noise": 435, "coverage": 0.369565}
    assert report.headline(noisy) == (
        "clustered 37% of documents (435 noise documents not scored); hungarian_accuracy 0.950"
    )
    almost = {"noise": 1, "coverage": 0.9995}
    assert report.headline(almost).startswith("clustered over 99.9% of documents")


def test_cluster_dims_is_checked_in_the_library(grouped_lab):
    from embedlab.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match="cluster_dims applies to hdbscan and dbscan only"):
        grouped_lab.analyze(k=3, cluster_dims=5)
    with pytest.raises(InvalidRequest, match="cluster_dims must be 0"):
        grouped_lab.analyze(algorithm="hdbscan", cluster_dims=-1)


def test_cluster_dims_is_checked_in_the_cli(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    result = invoke_cli(["--store", str(store_path), "analyze", "--k", "3", "--cluster-dims", "5"])
    assert result.returncode != 0
    assert "cluster_dims applies to hdbscan and dbscan only" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
