"""The reference data an analysis keeps so that new documents can join it later.

Small, portable arrays and a few numbers (no pickled models): what `update.py` needs to
place a new document on the stored map and give it a stored cluster.

    hashes            n x 32 bytes    each document's content hash (a changed text is seen)
    map_components    c x dims        t-SNE: the PCA-50 basis t-SNE read; PCA map: its 2 axes
    map_mean          dims            the PCA mean
    centroids         k x features    k-means: unit centroids in the features clustered
    centroid_ids      k               their cluster numbers
    text_vocabulary   bytes           k-means with the words' view: the TF-IDF terms
    text_idf          terms           their idf
    text_components   lsa x terms     the LSA basis (float16)
    radius, radius_ids                agglomerative/HDBSCAN: each cluster's fitted distance
                                      (cosine): the widest nearest-member gap of its members
settings: map method, t-SNE perplexity, UMAP's a/b/neighbours, text weight, DBSCAN eps,
documents at the last fit and placed since.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..store.vector_memory import unit_rows
from .placement import nearest

REFERENCE_VERSION = 1
RADIUS_SAMPLE = 500  # members per cluster whose nearest-member gap is measured (seeded)
PREFIX = "ref_"  # of the reference arrays in an analysis' stored payload


def hash_bytes(hashes: list[str]) -> np.ndarray:
    """Hex sha256 digests as an n x 32 uint8 array ("" -> zeros: unknown)."""
    out = np.zeros((len(hashes), 32), dtype=np.uint8)
    for i, digest in enumerate(hashes):
        if digest and len(digest) == 64:
            out[i] = np.frombuffer(bytes.fromhex(digest), dtype=np.uint8)
    return out


def hash_hex(array: np.ndarray) -> list[str]:
    """The inverse of hash_bytes (zeros -> "")."""
    array = np.ascontiguousarray(array, np.uint8)
    if not array.size:
        return [""] * len(array)
    width = 2 * array.shape[1]
    text = array.tobytes().hex()
    known = np.any(array, axis=1).astype(bool).tolist()
    return [text[i * width : (i + 1) * width] if known[i] else "" for i in range(len(array))]


def size_bytes(reference: dict[str, Any] | None) -> int:
    """Bytes of the reference arrays (before the store compresses them)."""
    if not reference:
        return 0
    return int(sum(np.asarray(a).nbytes for a in reference["arrays"].values()))


def build_reference(
    vectors: np.ndarray,
    hashes: list[str],
    cluster_labels: np.ndarray,
    options: dict[str, Any],
    clustering_params: dict[str, Any],
    cluster_keep: dict[str, Any],
    map_keep: dict[str, Any],
    seed: int = 0,
    ids: list[str] | None = None,
) -> dict[str, Any]:
    """{"settings": JSON-ready numbers, "arrays": name -> array} for one fitted analysis.

    With `ids`, also the drift sample (`neighbour_sample`): its documents' nearest
    documents, which an update then only merges the new documents into.

    `cluster_keep`/`map_keep` hold what clustering and the map fitted (cluster.py and
    reduce.py fill them); a map read from the cache has no PCA, so it is fitted here
    (the same seeded PCA the map would have used)."""
    n = len(vectors)
    method = options.get("reduce", "tsne")
    algorithm = options.get("algorithm", "kmeans")
    settings: dict[str, Any] = {
        "version": REFERENCE_VERSION,
        "map": method,
        "algorithm": algorithm,
        "fitted_documents": n,
        "placed_since_fit": 0,
    }
    arrays: dict[str, np.ndarray] = {"hashes": hash_bytes(hashes)}
    # -- the map
    if n >= 3:
        from .reduce import PCA_BEFORE_TSNE

        pca = map_keep.get("pca")
        if method == "tsne":
            settings["perplexity"] = float(min(30, max(2, (n - 1) // 3)))
            uses_pca = vectors.shape[1] > PCA_BEFORE_TSNE and n > PCA_BEFORE_TSNE
            settings["map_pca"] = uses_pca
            if uses_pca and pca is None:
                from sklearn.decomposition import PCA

                pca = PCA(n_components=PCA_BEFORE_TSNE, random_state=seed).fit(vectors)
        elif method == "pca" and pca is None:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=2, random_state=seed).fit(vectors)
        elif method == "umap":
            from umap.umap_ import find_ab_params

            a, b = find_ab_params(1.0, 0.1)  # UMAP's defaults: spread 1, min_dist 0.1
            settings.update(umap_a=float(a), umap_b=float(b), umap_neighbours=min(15, n - 1))
        if pca is not None and method in ("tsne", "pca") and settings.get("map_pca", True):
            arrays["map_components"] = pca.components_.astype(np.float32)
            arrays["map_mean"] = pca.mean_.astype(np.float32)
    # -- the clusters
    labels = np.asarray(cluster_labels)
    clusters = sorted({int(c) for c in labels.tolist() if c != -1})
    if algorithm == "kmeans":
        features = cluster_keep.get("features")
        if features is None:
            features = unit_rows(np.asarray(vectors, dtype=np.float32))
        centroids = np.stack([features[labels == c].sum(axis=0) for c in clusters])
        arrays["centroids"] = unit_rows(centroids).astype(np.float32)
        arrays["centroid_ids"] = np.array(clusters, dtype=np.int32)
        weight = float(clustering_params.get("text_weight") or 0.0)
        vectoriser, svd = cluster_keep.get("vectoriser"), cluster_keep.get("svd")
        if weight > 0 and vectoriser is not None and svd is not None:
            terms = vectoriser.get_feature_names_out().tolist()
            arrays["text_vocabulary"] = np.frombuffer("\n".join(terms).encode(), dtype=np.uint8)
            arrays["text_idf"] = vectoriser.idf_.astype(np.float32)
            arrays["text_components"] = svd.components_.astype(np.float16)
            settings["text_weight"] = weight
    elif algorithm in ("agglomerative", "hdbscan") or clustering_params.get("cluster_dims"):
        # DBSCAN on a UMAP reduction too: its eps is a distance there, not between vectors
        radius = [_radius(vectors, labels == c, seed) for c in clusters]
        arrays["radius"] = np.array(radius, dtype=np.float32)
        arrays["radius_ids"] = np.array(clusters, dtype=np.int32)
    elif algorithm == "dbscan":
        settings["eps"] = float(clustering_params.get("eps", options.get("eps", 0.5)))
    if ids is not None:
        arrays.update(neighbour_sample(vectors, ids, np.arange(n), seed))
    return {"settings": settings, "arrays": arrays}


# -- the drift sample -----------------------------------------------------------------------

SAMPLE_SIZE = 300  # old documents whose neighbourhoods the drift figure compares
SAMPLE_NEIGHBOURS = 10  # their nearest documents kept (update.NEIGHBOURS)


def neighbour_sample(
    vectors: np.ndarray, ids: list[str], among: np.ndarray, seed: int
) -> dict[str, np.ndarray]:
    """The drift sample: of the rows `among`, the SAMPLE_SIZE first by their seeded
    `sample_rank` (a document stays in it while it stays; chance picks no other), with
    each one's SAMPLE_NEIGHBOURS nearest documents among all rows (cosine, unit rows, not
    itself) and their similarities: "sample_rows", "sample_neighbours" (row numbers),
    "sample_similarity". Kept so that an update computes only the new documents' part
    of the figure (300 exact searches over 11,314 x 3072 are ~0.2 s)."""
    from ..store.sampling import sample_rank

    among = np.asarray(among, dtype=np.int64)
    ranked = sorted(among.tolist(), key=lambda row: sample_rank(ids[row], seed))
    rows = np.sort(np.array(ranked[:SAMPLE_SIZE], dtype=np.int64))
    return _sample_arrays(rows, *nearest_others(vectors, rows))


def _sample_arrays(
    rows: np.ndarray, neighbours: np.ndarray, similarity: np.ndarray
) -> dict[str, np.ndarray]:
    """The drift sample as the reference stores it."""
    return {
        "sample_rows": rows.astype(np.int32),
        "sample_neighbours": neighbours.astype(np.int32),
        "sample_similarity": similarity.astype(np.float32),
    }


def nearest_others(vectors: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each of `rows`' SAMPLE_NEIGHBOURS nearest rows of `vectors` (cosine, unit rows),
    not itself, nearest first: (row numbers, similarities)."""
    k = min(SAMPLE_NEIGHBOURS, max(0, len(vectors) - 1))
    if not len(rows) or k == 0:
        return np.empty((len(rows), k), np.int64), np.empty((len(rows), k), np.float32)
    found, distance = nearest(vectors[rows], vectors, k + 1, metric="cosine")
    others = found != np.asarray(rows)[:, None]
    order = np.argsort(~others, axis=1, kind="stable")[:, :k]  # itself out, order kept
    return (
        np.take_along_axis(found, order, axis=1),
        (1.0 - np.take_along_axis(distance, order, axis=1)).astype(np.float32),
    )


def carried_sample(
    vectors: np.ndarray,
    ids: list[str],
    old_rows: np.ndarray,
    new_rows: np.ndarray,
    previous: dict[str, np.ndarray] | None,
    to_now: np.ndarray | None,
    seed: int,
) -> dict[str, np.ndarray]:
    """The drift sample after an update: `previous` (the parent's arrays) with its rows
    renumbered by `to_now` (parent row -> row now, -1 for a document removed or changed),
    the new documents merged into each one's nearest (exact up to ties between equal
    similarities: a document not among the nearest before can only enter by being
    new), searched again where one of its nearest is gone, and dropped where it is
    itself gone. A fresh sample of `old_rows` where
    there is none, or where fewer than half of it is left."""
    if previous is None or to_now is None or "sample_rows" not in previous:
        return neighbour_sample(vectors, ids, old_rows, seed)
    rows = to_now[previous["sample_rows"]]
    neighbours = to_now[previous["sample_neighbours"]]
    similarity = previous["sample_similarity"].astype(np.float32)
    alive = rows >= 0
    if alive.sum() < len(rows) / 2:
        return neighbour_sample(vectors, ids, old_rows, seed)
    rows, neighbours, similarity = rows[alive], neighbours[alive], similarity[alive]
    whole = (neighbours >= 0).all(axis=1) & (neighbours.shape[1] == SAMPLE_NEIGHBOURS)
    if len(new_rows) and whole.any():
        new_rows = np.asarray(new_rows, dtype=np.int64)
        merged_rows = np.concatenate(
            [neighbours[whole], np.broadcast_to(new_rows, (int(whole.sum()), len(new_rows)))],
            axis=1,
        )
        dots = vectors[rows[whole]] @ vectors[new_rows].T
        merged_similarity = np.concatenate(
            [similarity[whole], (1.0 - (1.0 - dots).astype(np.float64)).astype(np.float32)],
            axis=1,
        )  # rounded as `nearest`'s 1 - distance, so equal documents compare equal
        best = np.argsort(-merged_similarity, axis=1, kind="stable")[:, :SAMPLE_NEIGHBOURS]
        neighbours[whole] = np.take_along_axis(merged_rows, best, axis=1)
        similarity[whole] = np.take_along_axis(merged_similarity, best, axis=1)
    if not whole.all():
        again, again_similarity = nearest_others(vectors, rows[~whole])
        if again.shape[1] == neighbours.shape[1]:
            neighbours[~whole], similarity[~whole] = again, again_similarity
        else:  # fewer documents than neighbours: a fresh sample
            return neighbour_sample(vectors, ids, old_rows, seed)
    return _sample_arrays(rows, neighbours, similarity)


def _radius(vectors: np.ndarray, members: np.ndarray, seed: int) -> float:
    """A cluster's fitted distance: the largest cosine distance from a member to its
    nearest fellow member (on a seeded sample of RADIUS_SAMPLE members)."""
    x = unit_rows(np.asarray(vectors[members], dtype=np.float32))
    if len(x) < 2:
        return 0.0
    rng = np.random.RandomState(seed)
    sample = np.arange(len(x))
    if len(x) > RADIUS_SAMPLE:
        sample = np.sort(rng.choice(len(x), RADIUS_SAMPLE, replace=False))
    sims = x[sample] @ x.T
    sims[np.arange(len(sample)), sample] = -np.inf  # not itself
    return float((1.0 - sims.max(axis=1)).max())


def text_features(texts: list[str], reference: dict[str, Any]) -> np.ndarray | None:
    """The stored words' view of `texts` (the fitted TF-IDF, then the stored LSA), unit
    rows, or None when the analysis clustered the vectors alone."""
    arrays = reference["arrays"]
    if "text_components" not in arrays:
        return None
    from scipy.sparse import diags
    from sklearn.feature_extraction.text import CountVectorizer

    terms = bytes(arrays["text_vocabulary"]).decode().split("\n")
    counts = CountVectorizer(vocabulary={t: i for i, t in enumerate(terms)}).transform(
        [t or "" for t in texts]
    )
    counts = counts.astype(np.float64)
    counts.data = 1.0 + np.log(counts.data)  # sublinear tf, as cluster.text_view
    tfidf = counts @ diags(arrays["text_idf"].astype(np.float64))
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1))).ravel().clip(min=1e-12)
    tfidf = diags(1.0 / norms) @ tfidf
    view = np.asarray(tfidf @ arrays["text_components"].astype(np.float32).T, dtype=np.float32)
    return unit_rows(view)


def kmeans_features(vectors: np.ndarray, texts: list[str], reference: dict[str, Any]):
    """The features k-means read for these documents: unit vectors, joined with the
    weighted words' view where the analysis used it (cluster.with_text_view)."""
    x = unit_rows(np.asarray(vectors, dtype=np.float32))
    view = text_features(texts, reference)
    if view is None:
        return x
    weight = np.float32(reference["settings"]["text_weight"])
    return np.hstack([x, weight * view])
