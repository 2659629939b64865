"""One analysis: corpus -> clusters, map, metrics, descriptions -> files in `out`.

Nothing here can embed: the corpus comes out of the store, and this package never
imports `ingest`, so re-analysis is free by construction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import plots, report
from .cluster import cluster
from .describe import describe_clusters
from .evaluate import evaluate
from .reduce import reduce_2d
from .select import Corpus


@dataclass
class AnalysisOptions:
    algorithm: str = "kmeans"
    k: int | str | None = 4
    reduce: str = "tsne"
    seed: int = 0
    min_cluster_size: int | None = None
    eps: float = 0.5


@dataclass
class AnalysisResult:
    metrics: dict[str, Any]
    clusters: list[dict[str, Any]]
    cluster_labels: np.ndarray
    coords: np.ndarray
    files: list[str]
    timings: dict[str, float] = field(default_factory=dict)


def _timed(timings: dict[str, float], name: str, func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    timings[name] = time.perf_counter() - start
    return result


def analyze_corpus(corpus: Corpus, options: AnalysisOptions, out: Path | None) -> AnalysisResult:
    timings: dict[str, float] = {}
    clustering = _timed(
        timings,
        "cluster",
        cluster,
        corpus.vectors,
        options.algorithm,
        options.k,
        options.seed,
        options.min_cluster_size,
        options.eps,
    )
    labels = clustering.labels
    coords, map_note = _timed(
        timings, "map", reduce_2d, corpus.vectors, options.reduce, options.seed
    )
    metrics = _timed(
        timings, "evaluate", evaluate, corpus.vectors, labels, corpus.labels, options.seed
    )
    described = _timed(
        timings,
        "describe",
        describe_clusters,
        corpus.vectors,
        labels,
        corpus.ids,
        corpus.texts,
        corpus.labels,
    )
    metrics["space"] = {
        "provider": corpus.space.provider,
        "model": corpus.space.model,
        "task_type": corpus.space.task_type,
        "dims": corpus.space.dims,
    }
    metrics["params"] = {
        "algorithm": clustering.algorithm,
        "clustering": clustering.params,
        "map": map_note,
        "seed": options.seed,
        "documents": len(corpus.ids),
    }
    if clustering.k_scores:
        metrics["k_silhouette"] = {str(k): round(v, 6) for k, v in clustering.k_scores.items()}
    result = AnalysisResult(metrics, described, labels, coords, [], timings)
    if out is not None:
        _timed(timings, "write", write_outputs, corpus, result, clustering.k_scores, Path(out))
    return result


def write_outputs(
    corpus: Corpus, result: AnalysisResult, k_scores: dict[int, float], out: Path
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cluster_names = ["noise" if c == -1 else f"cluster {c}" for c in result.cluster_labels.tolist()]
    report.write_points(
        out / "points.csv", corpus.ids, corpus.labels, result.cluster_labels, result.coords
    )
    report.write_json(out / "metrics.json", result.metrics)
    report.write_json(out / "clusters.json", result.clusters)
    images = []
    map_note = result.metrics["params"]["map"]
    if corpus.has_labels:
        plots.scatter_map(
            result.coords,
            [str(x) for x in corpus.labels],
            f"{map_note}, coloured by label",
            out / "map_by_label.png",
        )
        images.append("map_by_label.png")
    plots.scatter_map(
        result.coords, cluster_names, f"{map_note}, coloured by cluster", out / "map_by_cluster.png"
    )
    images.append("map_by_cluster.png")
    if "confusion" in result.metrics:
        plots.confusion_plot(result.metrics["confusion"], out / "confusion.png")
        images.append("confusion.png")
    if k_scores:
        plots.silhouette_plot(
            k_scores, result.metrics["params"]["clustering"]["k"], out / "silhouette.png"
        )
        images.append("silhouette.png")
    report.write_markdown(out / "report.md", result.metrics, result.clusters, images)
    result.files = ["points.csv", "metrics.json", "clusters.json", *images, "report.md"]
