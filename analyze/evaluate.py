"""Scoring clusters against labels: the notebook's table plus the standard metrics."""

from __future__ import annotations

from typing import Any

import numpy as np

from .cluster import cosine_silhouette


def per_class_majority(classes: list[str], clusters: list[int], confusion: np.ndarray) -> dict:
    """For each class: the cluster holding most of it, and the share of the class there."""
    table = {}
    for i, name in enumerate(classes):
        row = confusion[i]
        j = int(np.argmax(row))
        table[name] = {
            "majority_cluster": int(clusters[j]),
            "share": round(float(row[j] / row.sum()), 6),
            "size": int(row.sum()),
        }
    return table


def hungarian(confusion: np.ndarray, clusters: list[int], classes: list[str]) -> tuple[float, dict]:
    """Best one-to-one cluster->class matching and the accuracy it gives."""
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(-confusion)
    accuracy = float(confusion[rows, cols].sum() / confusion.sum())
    mapping = {str(clusters[c]): classes[r] for r, c in zip(rows, cols)}
    return round(accuracy, 6), dict(sorted(mapping.items(), key=lambda kv: int(kv[0])))


def evaluate(
    vectors: np.ndarray, cluster_labels: np.ndarray, true_labels: list[str | None], seed: int = 0
) -> dict[str, Any]:
    """All metrics under plain keys; label metrics only when every document has a label."""
    from sklearn import metrics
    from sklearn.metrics.cluster import contingency_matrix

    silhouette = cosine_silhouette(vectors, cluster_labels, seed)
    result: dict[str, Any] = {"silhouette": None if silhouette is None else round(silhouette, 6)}
    if any(label is None for label in true_labels) or len(set(true_labels)) < 2:
        result["labels"] = "missing: evaluation against labels skipped"
        return result
    classes = sorted(set(true_labels))
    clusters = sorted(set(cluster_labels.tolist()))
    confusion = contingency_matrix(true_labels, cluster_labels)  # rows: sorted classes
    accuracy, mapping = hungarian(confusion, clusters, classes)
    h, c, v = metrics.homogeneity_completeness_v_measure(true_labels, cluster_labels)
    result.update(
        {
            "per_class": per_class_majority(classes, clusters, confusion),
            "hungarian_accuracy": accuracy,
            "cluster_to_class": mapping,
            "ari": round(float(metrics.adjusted_rand_score(true_labels, cluster_labels)), 6),
            "nmi": round(
                float(metrics.normalized_mutual_info_score(true_labels, cluster_labels)), 6
            ),
            "homogeneity": round(float(h), 6),
            "completeness": round(float(c), 6),
            "v_measure": round(float(v), 6),
            "confusion": {
                "classes": classes,
                "clusters": clusters,
                "matrix": confusion.tolist(),
            },
        }
    )
    return result
