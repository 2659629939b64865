"""Scoring clusters against labels: the notebook's table plus the standard metrics.

Two rules make the figures honest:
- Noise (-1, from hdbscan/dbscan) is not a cluster. Agreement metrics (Hungarian
  accuracy, ARI, NMI, ...) score the clustered documents, `coverage` says what share
  that is, and the per-class share counts noise against the class, so leaving
  documents out can never raise a class's share.
- Labels: the labelled documents are evaluated, and how many had no label is said.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .cluster import cosine_silhouette

NOISE = -1


def per_class_majority(
    classes: list[str],
    clusters: list[int],
    confusion: np.ndarray,
    sizes: np.ndarray,
    mapping: dict[str, str] | None = None,
) -> dict:
    """For each class: the cluster holding most of it, the share of the whole class there
    (noise included in the whole), and the share of the class left as noise.

    Two more columns keep a merged group from reading as two good classes: the share of
    the class in the cluster the Hungarian matching gave it (`hungarian_share`, 0 when no
    cluster was left for it), and the other classes whose majority cluster is the same
    one (`shares_cluster_with`; `merged` says it is not empty)."""
    matched = {name: int(c) for c, name in (mapping or {}).items()}
    column = {int(c): j for j, c in enumerate(clusters)}
    table: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(classes):
        row = confusion[i]
        size = int(sizes[i])
        cluster = matched.get(name)
        hungarian_share = (
            0.0 if cluster is None or not size else round(float(row[column[cluster]] / size), 6)
        )
        if row.sum() == 0:  # every document of the class is noise
            table[name] = {"majority_cluster": None, "share": 0.0, "size": size, "noise": 1.0}
        else:
            j = int(np.argmax(row))
            table[name] = {
                "majority_cluster": int(clusters[j]),
                "share": round(float(row[j] / size), 6),
                "size": size,
                "noise": round(float((size - row.sum()) / size), 6),
            }
        table[name]["hungarian_cluster"] = cluster
        table[name]["hungarian_share"] = hungarian_share
    for name, entry in table.items():
        others = [
            other
            for other, row in table.items()
            if other != name
            and entry["majority_cluster"] is not None
            and row["majority_cluster"] == entry["majority_cluster"]
        ]
        entry["shares_cluster_with"] = others
        entry["merged"] = bool(others)
    return table


def hungarian(confusion: np.ndarray, clusters: list[int], classes: list[str]) -> tuple[float, dict]:
    """Best one-to-one cluster->class matching and the accuracy it gives."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-confusion)
    accuracy = float(confusion[rows, cols].sum() / confusion.sum())
    mapping = {str(clusters[c]): classes[r] for r, c in zip(rows, cols)}
    return round(accuracy, 6), dict(sorted(mapping.items(), key=lambda kv: int(kv[0])))


MATCH_SHARE = 0.5  # a cluster wears its matched class's colour from this share of its members


def cluster_matches(
    cluster_labels: np.ndarray, true_labels: list[str | None], mapping: dict[str, str]
) -> dict[int, dict[str, Any]]:
    """Each matched cluster's class (the Hungarian `mapping`, as in `cluster_to_class`),
    the share of the cluster's documents (all of them, unlabelled ones too) carrying that
    class, and whether that is enough (MATCH_SHARE) for the cluster to be drawn in the
    class's colour: a cluster of another topic matched to a class by elimination is not.
    Noise and unmatched clusters have no entry."""
    found = np.asarray(cluster_labels)
    labels = np.array(["" if x is None else str(x) for x in true_labels], dtype=object)
    matches = {}
    for cluster, name in mapping.items():
        members = found == int(cluster)
        size = int(members.sum())
        if int(cluster) == NOISE or not size:
            continue
        share = float((labels[members] == name).sum() / size)
        matches[int(cluster)] = {
            "label": name,
            "share": round(share, 6),
            "wears_colour": share >= MATCH_SHARE,
        }
    return matches


def matched_order(clusters: list[int], classes: list[str], mapping: dict[str, str]) -> list[int]:
    """Clusters in the order of the classes they match (a diagonal when the clustering is
    good), then the unmatched ones."""
    by_class = {name: int(c) for c, name in mapping.items()}
    matched = [by_class[name] for name in classes if name in by_class]
    return matched + [c for c in clusters if c not in matched]


def evaluate(
    vectors: np.ndarray, cluster_labels: np.ndarray, true_labels: list[str | None], seed: int = 0
) -> dict[str, Any]:
    """All metrics under plain keys (see the module docstring for noise and labels)."""
    from sklearn import metrics
    from sklearn.metrics.cluster import contingency_matrix

    clustered = cluster_labels != NOISE
    n_noise = int((~clustered).sum())
    result: dict[str, Any] = {
        "documents": len(cluster_labels),
        "noise": n_noise,
        "coverage": round(float(clustered.mean()), 6) if len(cluster_labels) else 0.0,
    }
    if clustered.all():  # no copy of the vectors (k-means: every document is clustered)
        silhouette = cosine_silhouette(vectors, cluster_labels, seed)
    else:
        silhouette = cosine_silhouette(vectors[clustered], cluster_labels[clustered], seed)
    result["silhouette"] = None if silhouette is None else round(silhouette, 6)
    if not clustered.any():
        result["labels"] = "no clusters: every document is noise"
        return result
    labelled = np.array([label is not None for label in true_labels], dtype=bool)
    result["unlabelled"] = int((~labelled).sum())
    classes = sorted({label for label in true_labels if label is not None})
    if len(classes) < 2:
        result["labels"] = "fewer than 2 labels: evaluation against labels skipped"
        return result
    scored = clustered & labelled
    # scored documents are labelled: no None among them
    truth = [t for t in (true_labels[i] for i in np.flatnonzero(scored)) if t is not None]
    found = cluster_labels[scored]
    clusters = sorted(set(found.tolist()))
    class_index = {name: i for i, name in enumerate(classes)}
    confusion = np.zeros((len(classes), len(clusters)), dtype=int)
    if len(truth):
        table = contingency_matrix(truth, found)  # rows: sorted classes present in truth
        present = sorted(set(truth))
        for r, name in enumerate(present):
            confusion[class_index[name]] = table[r]
    sizes = np.array([sum(1 for x in true_labels if x == name) for name in classes])
    accuracy, mapping = hungarian(confusion, clusters, classes)
    h, c, v = metrics.homogeneity_completeness_v_measure(truth, found)
    order = matched_order(clusters, classes, mapping)
    columns = [clusters.index(k) for k in order]
    shown = confusion[:, columns]
    noise_by_class = sizes - confusion.sum(axis=1)
    if n_noise:
        shown = np.column_stack([shown, noise_by_class])
        order = [*order, NOISE]
    result.update(
        {
            "per_class": per_class_majority(classes, clusters, confusion, sizes, mapping),
            "hungarian_accuracy": accuracy,
            "cluster_to_class": mapping,
            "ari": round(float(metrics.adjusted_rand_score(truth, found)), 6),
            "nmi": round(float(metrics.normalized_mutual_info_score(truth, found)), 6),
            "homogeneity": round(float(h), 6),
            "completeness": round(float(c), 6),
            "v_measure": round(float(v), 6),
            "confusion": {"classes": classes, "clusters": order, "matrix": shown.tolist()},
        }
    )
    return result
