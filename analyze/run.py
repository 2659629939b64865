"""One analysis: corpus -> clusters, map, metrics, descriptions -> files in `out`.

Nothing here can embed: the corpus comes out of the store, and this package never
imports `ingest`, so re-analysis is free by construction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .analysis import Analysis, space_dict
from .cluster import DEFAULT_CLUSTER_DIMS, cluster, default_text_weight
from .describe import describe_clusters
from .evaluate import evaluate
from .reduce import map_key, reduce_2d
from .reference import build_reference
from .select import Corpus
from .threads import sized_threads

STAGES = ("cluster", "map", "evaluate", "describe")
# part of every analysis identity: raise it when the same options come to give another
# analysis (a new default, a changed method), so an older stored one is not reused
IDENTITY_VERSION = 2  # 2: density clustering on a UMAP reduction (cluster_dims)


@dataclass
class AnalysisOptions:
    algorithm: str = "kmeans"
    k: int | str | None = 4
    reduce: str = "tsne"
    seed: int = 0
    min_cluster_size: int | None = None
    eps: float = 0.5
    # weight of the documents' words beside their vectors in k-means; None: the space's
    # default (cluster.DEFAULT_TEXT_WEIGHT), 0: the vectors alone
    text_weight: float | None = None
    # hdbscan, dbscan: the dims of the UMAP reduction they cluster on (0: the full
    # vectors); None for the other algorithms, and in analyses stored before it existed
    # (the full vectors)
    cluster_dims: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def checked(
        cls,
        algorithm: str = "kmeans",
        k: int | str | None = None,
        reduce: str = "tsne",
        seed: int = 0,
        min_cluster_size: int | None = None,
        eps: float | None = None,
        text_weight: float | None = None,
        cluster_dims: int | None = None,
    ) -> AnalysisOptions:
        """Every analysis option validated in one place (options.ANALYZE: the CLI's and
        the service's declarations are built from the same table), messages naming the
        option."""
        from ..options import ANALYZE, validate

        v = validate(ANALYZE, dict(
            algorithm=algorithm, k=k, reduce=reduce, seed=seed,
            min_cluster_size=min_cluster_size, eps=eps, text_weight=text_weight,
            cluster_dims=cluster_dims,
        ))  # fmt: skip
        dims = None
        if v["algorithm"] in ("hdbscan", "dbscan"):
            dims = DEFAULT_CLUSTER_DIMS if v["cluster_dims"] is None else v["cluster_dims"]
        density = v["algorithm"] in ("hdbscan", "dbscan")
        return cls(
            v["algorithm"],
            None if density else (4 if v["k"] is None else v["k"]),
            v["reduce"],
            v["seed"],
            v["min_cluster_size"],
            0.5 if v["eps"] is None else float(v["eps"]),
            None if v["text_weight"] is None else float(v["text_weight"]),
            dims,
        )


def resolved_options(options: AnalysisOptions, space_provider: str) -> AnalysisOptions:
    """The options as the analysis runs them (a default text weight made explicit)."""
    weight = options.text_weight
    if weight is None:
        weight = default_text_weight(space_provider, options.algorithm)
    return replace(options, text_weight=float(weight))


def analysis_identity(corpus: Corpus, options: AnalysisOptions, naming: str | None = None) -> str:
    """What makes two analyses the same analysis: the space's collection, the documents
    (sorted id, content hash and label of each, and their vectors), the options as run
    (seed included) and how the clusters are named (None: by their terms). sha256, hex."""
    import hashlib
    import json

    digest = hashlib.sha256()
    settings = {
        "version": IDENTITY_VERSION,
        "collection": corpus.space.collection_name,
        "options": resolved_options(options, corpus.space.provider).as_dict(),
        "naming": naming,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    order = sorted(range(len(corpus.ids)), key=lambda i: corpus.ids[i])
    for i in order:
        label = corpus.labels[i]
        row = [corpus.ids[i], corpus.hashes[i], label]
        digest.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
    vectors = np.ascontiguousarray(np.asarray(corpus.vectors, dtype=np.float32)[order])
    digest.update(vectors.tobytes())
    return digest.hexdigest()


class MapCache(Protocol):
    """Where 2-D maps are kept between analyses (the Lab keeps them in the store)."""

    def get(self, key: str) -> tuple[np.ndarray, str] | None: ...

    def put(self, key: str, coords: np.ndarray, note: str) -> None: ...


def _timed(timings: dict[str, float], name: str, func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    timings[name] = time.perf_counter() - start
    return result


def _cached_basis(map_cache: Any, key: str, map_keep: dict[str, Any]) -> None:
    """The PCA basis a cached map was drawn from (kept beside it), so the reference data
    of an analysis that reuses a map costs no new PCA."""
    found = map_cache.get_basis(key) if hasattr(map_cache, "get_basis") else None
    if found is not None:
        from types import SimpleNamespace

        map_keep["pca"] = SimpleNamespace(components_=found[0], mean_=found[1])


@sized_threads
def analyze_corpus(
    corpus: Corpus,
    options: AnalysisOptions,
    out: Path | None = None,
    map_cache: MapCache | None = None,
    on_stage: Callable[[str, int], None] | None = None,
    selection: dict[str, Any] | None = None,
) -> Analysis:
    """Cluster, map, score and describe `corpus`; with `out`, also write the report there.

    The map is looked up in `map_cache` by (space, the documents' content hashes, method,
    seed) first, so a second analysis of the same documents with another k or algorithm
    skips t-SNE. `on_stage(name, index)` is called as each stage starts.
    """
    timings: dict[str, float] = {}
    stage = on_stage or (lambda _name, _index: None)
    stage("cluster", 0)
    options = resolved_options(options, corpus.space.provider)  # stored: the weight used
    text_weight = options.text_weight
    cluster_keep: dict[str, Any] = {}  # what placing new documents needs (reference.py)
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
        texts=corpus.texts,
        text_weight=text_weight,
        keep=cluster_keep,
        cluster_dims=options.cluster_dims,
    )
    labels = clustering.labels
    stage("map", 1)
    map_keep: dict[str, Any] = {}
    key = map_key(corpus.space.collection_name, corpus.hashes, options.reduce, options.seed)
    cached = map_cache.get(key) if map_cache is not None else None
    if cached is not None:
        coords, map_note = cached
        timings["map"] = 0.0
        _cached_basis(map_cache, key, map_keep)
    else:
        coords, map_note = _timed(
            timings, "map", reduce_2d, corpus.vectors, options.reduce, options.seed, map_keep
        )
        if map_cache is not None:
            map_cache.put(key, coords, map_note)
            if "pca" in map_keep and hasattr(map_cache, "put_basis"):  # for later updates
                pca = map_keep["pca"]
                map_cache.put_basis(key, pca.components_, pca.mean_)
    stage("evaluate", 2)
    metrics = _timed(
        timings, "evaluate", evaluate, corpus.vectors, labels, corpus.labels, options.seed
    )
    stage("describe", 3)
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
    # what a later update places new documents with (reference.py; analyze/update.py)
    reference = _timed(
        timings, "reference", build_reference, corpus.vectors, corpus.hashes, labels,
        options.as_dict(), clustering.params, cluster_keep, map_keep, options.seed,
        corpus.ids,
    )  # fmt: skip
    del cluster_keep, map_keep
    metrics["space"] = space_dict(corpus.space)
    metrics["params"] = {
        "algorithm": clustering.algorithm,
        "clustering": clustering.params,
        "map": map_note,
        "seed": options.seed,
        "documents": len(corpus.ids),
    }
    if clustering.k_scores:
        metrics["k_silhouette"] = {str(k): round(v, 6) for k, v in clustering.k_scores.items()}
    analysis = Analysis(
        space=corpus.space,
        ids=list(corpus.ids),
        labels=list(corpus.labels),
        cluster_labels=labels,
        coords=np.asarray(coords, dtype=np.float32),
        metrics=metrics,
        clusters=described,
        options=options.as_dict(),
        selection=selection or {},
        k_scores=clustering.k_scores,
        map_cached=cached is not None,
        timings=timings,
        reference=reference,
    )
    if out is not None:
        analysis.save(out)
    return analysis
