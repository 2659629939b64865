"""Naming clusters without labels: distinctive terms and the most central documents."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..store.neighbours import snippet

TOP_TERMS = 10
REPRESENTATIVES = 3


def top_terms(
    cluster_labels: np.ndarray, texts: list[str], clusters: list[int]
) -> dict[int, list[str]]:
    """Class-based TF-IDF: each cluster's texts joined into one document, then TF-IDF.

    A term scores high when it is frequent in one cluster and rare in the others.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    joined = [" ".join(t for t, c in zip(texts, cluster_labels) if c == k) for k in clusters]
    vectoriser = TfidfVectorizer(
        stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]{2,}\b", sublinear_tf=True
    )
    try:
        weights = vectoriser.fit_transform(joined).toarray()
    except ValueError:  # nothing but stop words
        return {k: [] for k in clusters}
    vocabulary = vectoriser.get_feature_names_out()
    result = {}
    for row, k in enumerate(clusters):
        order = np.lexsort((vocabulary, -weights[row]))[:TOP_TERMS]
        result[k] = [str(vocabulary[i]) for i in order if weights[row, i] > 0]
    return result


def describe_clusters(
    vectors: np.ndarray,
    cluster_labels: np.ndarray,
    ids: list[str],
    texts: list[str],
    labels: list[str | None],
) -> list[dict[str, Any]]:
    """Per cluster: size, label counts, top terms, and the documents nearest its centroid."""
    clusters = sorted(set(cluster_labels.tolist()))
    terms = top_terms(cluster_labels, texts, clusters)
    described = []
    for k in clusters:
        rows = np.flatnonzero(cluster_labels == k)
        centroid = vectors[rows].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        similarity = vectors[rows] @ centroid
        nearest = rows[np.lexsort((rows, -similarity))[:REPRESENTATIVES]]
        label_counts: dict[str, int] = {}
        for row in rows:
            key = labels[row] if labels[row] is not None else "(none)"
            label_counts[key] = label_counts.get(key, 0) + 1
        described.append(
            {
                "cluster": int(k),
                "size": int(len(rows)),
                "labels": dict(sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                "terms": terms[k],
                "representatives": [
                    {
                        "id": ids[row],
                        "label": labels[row],
                        "similarity": round(float(vectors[row] @ centroid), 6),
                        "snippet": snippet(texts[row]),
                    }
                    for row in nearest
                ],
            }
        )
    return described
