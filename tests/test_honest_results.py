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
from embedlab.store import Store

from tests.builders import grouped_corpus
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
