"""Clustering on the full, unit-length vectors (cosine geometry), never on the 2-D map."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidRequest
from ..store.vector_memory import row_norms, unit_rows

ALGORITHMS = ("kmeans", "hdbscan", "dbscan", "agglomerative")
AUTO_K_RANGE = (2, 12)
# Above this many documents exact methods stop fitting in minutes or in memory:
# KMeans becomes MiniBatchKMeans, and agglomerative (an n x n distance matrix) is refused.
LARGE_N = 20_000
SETTLED_SHARE = 1e-3  # spherical k-means stops when at most this share of rows moves
# Above this many documents spherical k-means runs its restarts on a seeded sample of
# STARTS_SAMPLE documents and only the best start on all (spherical_kmeans says why).
SAMPLED_STARTS_ABOVE = 5_000
STARTS_SAMPLE = 2_500
MINIBATCH_SIZE = 4096
# The words' view beside the vectors (k-means only): LSA of the texts' TF-IDF, as in
# scikit-learn's 20 Newsgroups clustering example (100 dimensions, max_df 0.5).
TEXT_DIMS = 100
MAX_TEXT_WEIGHT = 10.0
# On by default only where it was measured to help (issue #14, bench/quality.py): the
# local all-MiniLM-L6-v2 clusters better on every sample with it. Gemini's vectors were
# not measured with it (the notebook's table is theirs alone), so they cluster alone.
DEFAULT_TEXT_WEIGHT = {"local": 1.0}
# HDBSCAN and DBSCAN find density on a seeded UMAP reduction of the vectors (cosine), as
# BERTopic does: in hundreds of dimensions every point is about as far from every other,
# and on the full vectors their defaults left 62% / 52% of the notebook's 600 posts as
# noise (issue 25 item 7; bench/quality.py --density, docs/quality.md). 10 dims beat 5
# on both sci samples and tie on rec. 0 = the full vectors. Too few documents for a
# reduction (UMAP's spectral layout needs more rows than dimensions + neighbours)
# cluster on the full vectors, and the params say so.
DEFAULT_CLUSTER_DIMS = 10
MAX_CLUSTER_DIMS = 100
UMAP_NEIGHBOURS = 15
MIN_REDUCED_ROWS = 20


@dataclass
class Clustering:
    labels: np.ndarray  # cluster per row; -1 = noise (density methods)
    algorithm: str
    params: dict[str, object]
    k_scores: dict[int, float] = field(default_factory=dict)  # --k auto: silhouette per k


def cosine_silhouette(vectors: np.ndarray, labels: np.ndarray, seed: int = 0) -> float | None:
    """Mean cosine silhouette of every row, or None when it is undefined (one cluster, or
    all singletons). `seed` is kept for callers; nothing here is random.

    Exact and linear: with unit rows, the mean cosine distance from x to the members of a
    cluster C is 1 - x.sum(C)/|C| (less x itself in its own cluster), so a(i) and b(i)
    come from n x k products with the clusters' sums instead of the n x n distances
    scikit-learn's silhouette_score computes (it sampled 5,000 rows above that: 0.7-0.9 s
    at 11,314 x 3072, against ~0.1 s here for all of them). Singletons score 0, as there.
    """
    del seed
    labels = np.asarray(labels)
    names, member_of = np.unique(labels, return_inverse=True)
    if len(names) < 2 or len(names) >= len(labels):
        return None
    sizes = np.bincount(member_of).astype(np.float64)
    x = np.asarray(vectors, dtype=np.float32)
    norms = row_norms(x).astype(np.float64).clip(min=1e-12)
    inverse = (1.0 / norms).astype(np.float32)
    sums32 = _sums(x, member_of, len(names), inverse).astype(np.float32)  # of unit rows
    scores = np.empty(len(labels), dtype=np.float64)
    rows = np.arange(len(labels))
    for start in range(0, len(labels), 4096):  # a block at a time: no n x dims copy
        block = slice(start, start + 4096)
        scale = inverse[block].astype(np.float64)
        # x . sum(C) for every cluster C, of the unit rows
        dots = (x[block] @ sums32.T).astype(np.float64) * scale[:, None]
        own = member_of[block]
        here = rows[block] - start
        self_dot = (row_norms(x[block]).astype(np.float64) * scale) ** 2  # 1; a zero row 0
        inside = sizes[own] - 1
        with np.errstate(divide="ignore", invalid="ignore"):
            a = (inside - (dots[here, own] - self_dot)) / inside
            mean_distance = 1.0 - dots / sizes[None, :]
            mean_distance[here, own] = np.inf
            b = mean_distance.min(axis=1)
            s = (b - a) / np.maximum(a, b)
        s[inside == 0] = 0.0  # a singleton's silhouette is 0
        scores[block] = np.nan_to_num(s)
    return float(scores.mean())


def default_text_weight(provider: str, algorithm: str) -> float:
    """The words' weight an analysis uses unless told: DEFAULT_TEXT_WEIGHT, k-means only."""
    return DEFAULT_TEXT_WEIGHT.get(provider, 0.0) if algorithm == "kmeans" else 0.0


def text_view(
    texts: list[str], seed: int = 0, dims: int = TEXT_DIMS, keep: dict | None = None
) -> np.ndarray | None:
    """Unit-length LSA vectors of the texts (TF-IDF, then a seeded truncated SVD: Deerwester
    et al. 1990), or None when the texts share too few terms to give one.

    A small sentence model reads a post through 256-token windows and blurs near topics
    (rec.autos and rec.motorcycles); the words the posts share (bike, car, ride) still
    tell them apart. Terms in over half the documents carry no topic and are dropped.
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectoriser = TfidfVectorizer(sublinear_tf=True, min_df=2, max_df=0.5, stop_words="english")
    try:
        tfidf = vectoriser.fit_transform(texts)
    except ValueError:  # no term left (empty texts, stop words only, too few documents)
        return None
    dims = min(dims, tfidf.shape[1] - 1, len(texts) - 1)
    if dims < 2:
        return None
    svd = TruncatedSVD(dims, random_state=seed)
    view = svd.fit_transform(tfidf).astype(np.float32)
    if keep is not None:  # what placing new documents in this view needs (reference.py)
        keep.update(vectoriser=vectoriser, svd=svd)
    return unit_rows(view)


def with_text_view(
    vectors: np.ndarray, texts: list[str], weight: float, seed: int = 0, keep: dict | None = None
) -> tuple[np.ndarray, int]:
    """(the unit vectors side by side with `weight` x the texts' unit LSA vectors, the LSA
    dimensions used; 0 when the texts gave none and the vectors are returned alone).

    On unit rows the cosine of two joined rows is (v.v' + w^2 l.l') / (1 + w^2): weight 1
    gives the meaning (vectors) and the words (LSA) equal say.
    """
    x = unit_rows(np.asarray(vectors, dtype=np.float32))
    if weight <= 0:
        return x, 0
    if len(texts) != len(x):
        raise InvalidRequest(f"{len(texts)} texts for {len(x)} vectors")
    view = text_view([t or "" for t in texts], seed, keep=keep)
    if view is None:
        return x, 0
    return np.hstack([x, np.float32(weight) * view]), view.shape[1]


def umap_reduction(vectors: np.ndarray, dims: int, seed: int = 0) -> tuple[np.ndarray | None, str]:
    """(the rows reduced by UMAP to `dims` dimensions, cosine metric, seeded; what was
    done), or (None, why not) when the reduction does not apply."""
    n, width = vectors.shape
    if dims <= 0:
        return None, "the full vectors"
    if width <= dims:
        return None, f"the full vectors ({width} dims: no fewer to reduce to)"
    if n < max(MIN_REDUCED_ROWS, dims + 2):
        return None, f"the full vectors ({n} documents: too few for a UMAP reduction)"
    try:
        import umap
    except ImportError:
        raise InvalidRequest(
            "density clustering on a reduction needs umap-learn: pip install umap-learn, or "
            "<<cluster_dims=0>> for the full vectors"
        ) from None
    neighbours = min(UMAP_NEIGHBOURS, n - 1)
    model = umap.UMAP(  # a seed makes UMAP single-threaded: say so, and it warns nothing
        n_components=dims, n_neighbors=neighbours, metric="cosine", min_dist=0.0,
        random_state=seed, n_jobs=1,
    )  # fmt: skip
    reduced = np.asarray(model.fit_transform(vectors), dtype=np.float32)
    return reduced, f"UMAP to {dims} dims (cosine, {neighbours} neighbours)"


def cluster(
    vectors: np.ndarray,
    algorithm: str = "kmeans",
    k: int | str | None = None,
    seed: int = 0,
    min_cluster_size: int | None = None,
    eps: float = 0.5,
    texts: list[str] | None = None,
    text_weight: float = 0.0,
    keep: dict | None = None,
    cluster_dims: int | None = None,
) -> Clustering:
    """Cluster the rows of `vectors`. With `texts` and `text_weight` > 0 (k-means only),
    k-means runs on the vectors joined with the texts' words (with_text_view).
    `cluster_dims` (hdbscan, dbscan): cluster on a UMAP reduction to that many dimensions
    (umap_reduction; dbscan's eps is then a euclidean distance there, not a cosine one
    between the vectors); 0 or None: on the full vectors (AnalysisOptions.checked makes
    DEFAULT_CLUSTER_DIMS the default of an analysis)."""
    n = len(vectors)
    if text_weight and algorithm != "kmeans":
        raise InvalidRequest(f"text_weight applies to kmeans only, not {algorithm}")
    if not 0 <= text_weight <= MAX_TEXT_WEIGHT:
        raise InvalidRequest(f"text_weight must be between 0 and {MAX_TEXT_WEIGHT:g}")
    if text_weight and texts is None:
        raise InvalidRequest("text_weight needs the documents' texts")
    text_params: dict[str, object] = {}
    if text_weight:
        vectors, dims = with_text_view(vectors, texts or [], text_weight, seed, keep=keep)
        text_params = {"text_weight": float(text_weight) if dims else 0.0, "text_dims": dims}
    if keep is not None:  # the features clustered, for the stored centroids (reference.py)
        keep["features"] = vectors
    if algorithm in ("kmeans", "agglomerative"):
        if k == "auto":
            found = _auto_k(vectors, algorithm, seed)
            found.params.update(text_params)
            return found
        k = int(k or 4)
        if not 1 <= k <= n:
            raise InvalidRequest(f"k={k} needs at least {k} documents; the selection has {n}")
        if algorithm == "agglomerative" and n < 2:
            raise InvalidRequest(f"agglomerative needs at least 2 documents; the selection has {n}")
        method = method_for(algorithm, n)
        params = {"k": k, "seed": seed, "method": method, **text_params}
        return Clustering(_fit(vectors, method, k, seed), algorithm, params)
    if algorithm == "hdbscan":
        from sklearn.cluster import HDBSCAN

        size = min_cluster_size or max(5, n // 100)
        if n < size:
            raise InvalidRequest(
                f"hdbscan needs at least min_cluster_size={size} documents; "
                f"the selection has {n} (lower min_cluster_size or select more)"
            )
        reduced, on = umap_reduction(np.asarray(vectors, dtype=np.float32), cluster_dims or 0, seed)
        features = vectors if reduced is None else reduced
        labels = HDBSCAN(min_cluster_size=size, copy=True).fit_predict(features)
        dims = 0 if reduced is None else int(reduced.shape[1])
        return Clustering(
            labels, algorithm, {"min_cluster_size": size, "cluster_dims": dims, "on": on}
        )
    if algorithm == "dbscan":
        from sklearn.cluster import DBSCAN

        size = min_cluster_size or 5
        if n < 2:
            raise InvalidRequest(f"dbscan needs at least 2 documents; the selection has {n}")
        reduced, on = umap_reduction(np.asarray(vectors, dtype=np.float32), cluster_dims or 0, seed)
        if reduced is None:  # eps: a cosine distance between the vectors
            labels = DBSCAN(eps=eps, min_samples=size, metric="cosine").fit_predict(vectors)
        else:  # eps: a distance on the reduction (UMAP's own, euclidean)
            labels = DBSCAN(eps=eps, min_samples=size).fit_predict(reduced)
        dims = 0 if reduced is None else int(reduced.shape[1])
        params = {"eps": eps, "min_samples": size, "cluster_dims": dims, "on": on}
        return Clustering(labels, algorithm, params)
    raise InvalidRequest(f"unknown <<algorithm='{algorithm}'>>; use one of {', '.join(ALGORITHMS)}")


def method_for(algorithm: str, n: int) -> str:
    """The estimator that runs `algorithm` on `n` documents (the scalable one when n is large)."""
    if algorithm == "kmeans":
        return "MiniBatchKMeans" if n > LARGE_N else "SphericalKMeans"
    if algorithm == "agglomerative":
        if n > LARGE_N:
            raise InvalidRequest(
                f"agglomerative clustering needs an n x n distance matrix; {n} documents are "
                f"more than {LARGE_N}: use <<algorithm='kmeans'>>, or <<limit>> / <<per_class>>"
            )
        return "AgglomerativeClustering"
    return algorithm


def _fit(vectors: np.ndarray, method: str, k: int, seed: int) -> np.ndarray:
    """Fit the estimator `method` (a method_for() name) with k clusters."""
    if method == "SphericalKMeans":
        return spherical_kmeans(vectors, k, seed)
    if method == "MiniBatchKMeans":
        from sklearn.cluster import MiniBatchKMeans

        model = MiniBatchKMeans(
            n_clusters=k, batch_size=MINIBATCH_SIZE, n_init=10, random_state=seed
        )
        return model.fit_predict(vectors)
    from sklearn.cluster import AgglomerativeClustering

    return AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(
        vectors
    )


def spherical_kmeans(
    vectors: np.ndarray, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 100
) -> np.ndarray:
    """k-means in cosine geometry (Dhillon & Modha 2001): unit-length centroids, each
    document assigned to the centroid of highest cosine similarity.

    Euclidean k-means on unit vectors scores a document against a centroid by
    ||x - c||^2 = 1 + ||c||^2 - 2 x.c, so a diffuse cluster (short centroid) wins every
    document that fits no topic well and becomes a catch-all; with unit centroids only the
    direction counts. Seeded k-means++ starts, `n_init` of them, the best total
    similarity wins.

    Above SAMPLED_STARTS_ABOVE documents the `n_init` starts run to convergence on a
    seeded sample of STARTS_SAMPLE documents (Bradley & Fayyad 1998: refining starts on
    subsamples); each start's centroids are scored on every document, and the best is
    run to convergence on all of them. At 11,314 x 3072 the restarts were 9 of every 10
    rounds of the fit (bench/first_fit.py measures time and quality both ways).
    """
    x = np.asarray(vectors, dtype=np.float32)
    x = x / np.linalg.norm(x, axis=1, keepdims=True).clip(min=1e-12)
    rng = np.random.RandomState(seed)
    if len(x) > SAMPLED_STARTS_ABOVE and n_init > 1:
        rows = np.sort(rng.choice(len(x), size=STARTS_SAMPLE, replace=False))
        sample = x[rows]
        best_centres, best_score = None, -np.inf
        for _ in range(n_init):
            labels, _ = _lloyd(sample, _kmeans_plusplus(sample, k, rng), max_iter)
            centres = unit_rows(_sums(sample, labels, k))
            score = float((x @ centres.T).max(axis=1).sum())  # on every document
            if score > best_score:
                best_centres, best_score = centres, score
        assert best_centres is not None
        return _lloyd(x, best_centres, max_iter)[0]
    best_labels, best_score = np.zeros(len(x), dtype=np.int64), -np.inf
    for _ in range(n_init):
        labels, centres = _lloyd(x, _kmeans_plusplus(x, k, rng), max_iter)
        score = float((x @ unit_rows(centres).T).max(axis=1).sum())
        if score > best_score:
            best_labels, best_score = labels, score
    return best_labels


def _lloyd(x: np.ndarray, centres: np.ndarray, max_iter: int) -> tuple[np.ndarray, np.ndarray]:
    """Spherical Lloyd rounds on unit rows from `centres` (k x dims) until settled:
    (labels, the centroid sums of the round before the last assignment)."""
    k = len(centres)
    # Converged when at most 0.1% of the documents move (none below 1,000 documents):
    # on 11k vectors without clear groups, waiting for no move at all ran 100 rounds.
    settled = int(len(x) * SETTLED_SHARE)
    labels: np.ndarray | None = None
    for _ in range(max(1, max_iter)):
        sims = x @ unit_rows(centres).T
        new = sims.argmax(axis=1)
        if labels is not None and int((new != labels).sum()) <= settled:
            return new, centres
        labels = new
        centres = _sums(x, labels, k)
        empties = np.flatnonzero(np.bincount(labels, minlength=k) == 0)
        # an emptied cluster restarts on a document that fits its centroid worst
        worst = np.argsort(sims.max(axis=1), kind="stable")[: len(empties)]
        for empty, doc in zip(empties, worst):
            centres[empty], labels[doc] = x[doc], empty
    assert labels is not None
    return labels, centres


def _kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.RandomState) -> np.ndarray:
    """Greedy k-means++ starts (Arthur & Vassilvitskii 2007) on unit rows, where the squared
    distance is 2 - 2 cos: each next centre is the best of a few D^2-sampled candidates.
    (scikit-learn's kmeans_plusplus upcasts to float64 and took 47 s at 11k x 3072.)"""
    n = len(x)
    trials = 2 + int(np.log(k))
    centres = np.empty((k, x.shape[1]), dtype=x.dtype)
    centres[0] = x[rng.randint(n)]
    closest = np.clip(2.0 - 2.0 * (x @ centres[0]), 0.0, None)
    for c in range(1, k):
        total = closest.sum()
        if total <= 0:  # every row sits on a centre already
            centres[c] = x[rng.randint(n)]
            continue
        picks = np.searchsorted(np.cumsum(closest), rng.uniform(size=trials) * total)
        picks = np.minimum(picks, n - 1)
        dists = np.clip(2.0 - 2.0 * (x[picks] @ x.T), 0.0, None)  # trials x n
        candidates = np.minimum(closest[None, :], dists)
        best = int(candidates.sum(axis=1).argmin())
        centres[c], closest = x[picks[best]], candidates[best]
    return centres


def _sums(
    x: np.ndarray, labels: np.ndarray, k: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """Per-cluster sums of the rows of x, each row times its weight (one sparse product:
    no Python loop, no copy of a cluster's rows); rows labelled -1 count nowhere."""
    from scipy.sparse import csr_matrix

    labels = np.asarray(labels)
    rows = np.flatnonzero(labels >= 0)
    values = np.ones(len(rows), dtype=x.dtype) if weights is None else weights[rows]
    onehot = csr_matrix((values, (labels[rows], rows)), shape=(k, len(labels)))
    return np.asarray(onehot @ x)


def _auto_k(vectors: np.ndarray, algorithm: str, seed: int) -> Clustering:
    """The k in AUTO_K_RANGE with the best cosine silhouette; every score is kept."""
    low, high = AUTO_K_RANGE
    # at least ~10 documents per cluster on average: on small selections silhouette
    # otherwise favours many tiny clusters
    high = min(high, len(vectors) - 1, max(low, len(vectors) // 10))
    if high < low:
        raise InvalidRequest(
            f"k=auto needs at least {low + 1} documents; the selection has {len(vectors)}"
        )
    method = method_for(algorithm, len(vectors))
    scores: dict[int, float] = {}
    fits: dict[int, np.ndarray] = {}
    for k in range(low, high + 1):
        fits[k] = _fit(vectors, method, k, seed)
        score = cosine_silhouette(vectors, fits[k], seed)
        scores[k] = -1.0 if score is None else score  # undefined ranks last; 0.0 stays 0.0
    best = max(scores, key=lambda k: (scores[k], -k))
    params = {"k": best, "k_auto_range": [low, high], "seed": seed, "method": method}
    return Clustering(fits[best], algorithm, params, scores)
