"""Placing new documents on a stored map, by the method that drew it, old points fixed.

The map's reference data (what `reference.py` stores beside an analysis) is small and
portable: PCA components, a perplexity, UMAP's curve parameters. The old points' own
high-dimensional rows are not stored; they are the vectors the store keeps, projected
again with the stored components, so placement reads nothing the analysis does not own.

- t-SNE: openTSNE's `TSNEEmbedding.transform` (Policar et al. 2019's recipe for adding
  points: a perplexity-5 neighbourhood in the reference data, low-learning-rate steps
  against the fixed reference map; 25 of them, not the recipe's 250: with `settle`
  after them, 25, 50, 100 and 250 keep as many neighbours on four local-model corpora,
  docs/update.md, and each step costs ~9 ms at 11,314 old points). Its affinities
  are computed here by exact search against the old rows, so no nearest-neighbour
  index of the whole corpus is rebuilt.
  `transform` re-centres the embedding it is called on in place: it runs on a copy and
  the new points are shifted back into the stored frame.
- UMAP: what `UMAP.transform` does: the new point's fuzzy neighbourhood among the old
  points, the membership-weighted mean of their map positions, then UMAP's own layout
  optimisation with the old points held still.
- PCA: the stored components and mean.

After t-SNE's and UMAP's placement each new point is *settled* (`settle`): both layouts
stop in local minima, and openTSNE's transform in particular leaves a new point on top
of one old point (median distance 0.13 map units on the local demo, where old points sit
0.82 apart), away from most of its neighbours. Settling looks at a few candidate spots
(where it was put, and midway between any two of the map positions of its nearest old
documents and that spot) and takes the one whose nearest old points on the map are most
of its nearest old documents by cosine similarity of their vectors; ties keep the spot
nearest to where it was put, so a point already well placed does not move. On the local
model's demo this lifts the placed points' neighbourhood preservation from 0.36 to about
the old points' 0.43 (docs/update.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

TRANSFORM_PERPLEXITY = 5.0  # openTSNE's advice for transform (its default)
TRANSFORM_K = 25  # neighbours for the median initialisation
TRANSFORM_ITER = 25  # settle() does the fine placing: more steps keep no more neighbours
SETTLE_K = 10  # neighbours a settled point tries to have about it on the map
SETTLE_BLOCK = 256  # new points settled at once (bounds a block's candidate arrays)
BLOCK = 2048  # rows per block of an exact neighbour search


def project(vectors: np.ndarray, components: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Rows of `vectors` in the stored PCA basis (as PCA.transform, without whitening):
    (x - mean) C^T, computed as x C^T - mean C^T, with no centred copy of the rows."""
    basis = components.astype(np.float32).T
    return np.asarray(vectors, dtype=np.float32) @ basis - mean.astype(np.float32) @ basis


def nearest(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    metric: str = "euclidean",
    among: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, distances) of the k nearest reference rows of each query, nearest first,
    by exact blockwise search (euclidean, or cosine distance on unit rows).

    `among`: search only these rows of `reference`, and give indices into `among` (the
    same answer as `nearest(queries, reference[among], k)` without that copy of the
    rows, 139 MB at 11,314 x 3072)."""
    if among is not None and reference.shape[1] <= 3:
        reference = reference[among]  # a map's rows: small
        among = None
    queries = np.asarray(queries, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    k = min(k, len(reference) if among is None else len(among))
    if metric != "cosine" and reference.shape[1] <= 3 and k:  # a map: a k-d tree is exact
        from scipy.spatial import cKDTree

        found, where = cKDTree(reference).query(queries, k=k)
        where = np.asarray(where, dtype=np.int64).reshape(len(queries), k)
        return where, np.asarray(found, dtype=np.float64).reshape(len(queries), k)
    # |r|^2 only where euclidean: no n x dims temporary for a cosine search
    ref_sq = np.einsum("ij,ij->i", reference, reference) if metric != "cosine" else None
    if ref_sq is not None and among is not None:
        ref_sq = ref_sq[among]
    indices = np.empty((len(queries), k), dtype=np.int64)
    distances = np.empty((len(queries), k), dtype=np.float64)
    for start in range(0, len(queries), BLOCK):
        q = queries[start : start + BLOCK]
        dots = q @ reference.T
        if among is not None:
            dots = dots[:, among]
        if metric == "cosine":
            d = 1.0 - dots
        else:
            assert ref_sq is not None
            d = np.einsum("ij,ij->i", q, q)[:, None] + ref_sq[None, :] - 2.0 * dots
        part = (
            np.argpartition(d, k - 1, axis=1)[:, :k]
            if k < d.shape[1]
            else np.tile(np.arange(d.shape[1]), (len(q), 1))
        )
        picked = np.take_along_axis(d, part, axis=1)
        order = np.argsort(picked, axis=1, kind="stable")
        indices[start : start + len(q)] = np.take_along_axis(part, order, axis=1)
        chosen = np.take_along_axis(picked, order, axis=1).clip(min=0.0)
        distances[start : start + len(q)] = chosen if metric == "cosine" else np.sqrt(chosen)
    return indices, distances


def place_pca(new_vectors: np.ndarray, reference: dict[str, Any]) -> np.ndarray:
    """New points on a PCA map: the stored components and mean."""
    arrays = reference["arrays"]
    return project(new_vectors, arrays["map_components"], arrays["map_mean"])


def place_tsne(
    old_rows: np.ndarray,
    old_coords: np.ndarray,
    new_rows: np.ndarray,
    seed: int = 0,
    perplexity: float = TRANSFORM_PERPLEXITY,
    **transform: Any,
) -> np.ndarray:
    """New points on a t-SNE map with every old point fixed (openTSNE's transform).

    `old_rows`/`new_rows` are in the space t-SNE read (the stored PCA basis); `transform`
    overrides openTSNE's transform settings. (Tried on the local model's demo and not
    kept: further rounds against the old and the other new points, perplexity 15 or 30,
    500 steps without exaggeration, the weighted start, the vectors instead of PCA-50:
    none placed points with better-kept neighbourhoods; docs/update.md.)"""
    old_rows = np.ascontiguousarray(old_rows, dtype=np.float32)
    new_rows = np.ascontiguousarray(new_rows, dtype=np.float32)
    stored = np.asarray(old_coords, dtype=np.float64)
    return _transform(old_rows, stored, new_rows, seed, None, None, perplexity, transform)


def settle(
    old_vectors: np.ndarray,
    old_coords: np.ndarray,
    new_vectors: np.ndarray,
    placed: np.ndarray,
    among: np.ndarray | None = None,
) -> np.ndarray:
    """Each placed point moved to the candidate spot where most of its SETTLE_K nearest
    old documents (cosine on the unit vectors, as every lookup ranks them; rows must be
    unit, as a Corpus' are) are among its
    SETTLE_K nearest old points on the map. Candidates: the placed spot, and the midpoint
    of every pair among it and the map positions of those documents (never an old point's
    own spot, so no new point hides one). Ties keep the spot nearest to the placed one.
    Deterministic: no random step. `among`: the old documents are these rows of
    `old_vectors` (as `nearest`'s)."""
    from scipy.spatial import cKDTree

    placed = np.asarray(placed, dtype=np.float64)
    k = min(SETTLE_K, len(old_coords))
    if k == 0 or not len(placed):
        return placed
    old_coords = np.asarray(old_coords, dtype=np.float64)
    wanted, _ = nearest(new_vectors, old_vectors, k, metric="cosine", among=among)
    tree = cKDTree(old_coords)
    first, second = np.triu_indices(k + 1, 1)
    out = placed.copy()
    for start in range(0, len(placed), SETTLE_BLOCK):
        block = slice(start, start + SETTLE_BLOCK)
        here, want = placed[block], wanted[block]
        anchors = np.concatenate([here[:, None, :], old_coords[want]], axis=1)
        spots = np.concatenate(
            [here[:, None, :], (anchors[:, first] + anchors[:, second]) / 2], axis=1
        )  # (b, 1 + pairs, 2)
        _, near = tree.query(spots.reshape(-1, spots.shape[-1]), k=k)
        near = np.asarray(near).reshape(len(here), spots.shape[1], k)
        found = (near[:, :, :, None] == want[:, None, None, :]).any(axis=3).sum(axis=2)
        moved = ((spots - here[:, None, :]) ** 2).sum(axis=2)
        moved[found < found.max(axis=1, keepdims=True)] = np.inf
        out[block] = spots[np.arange(len(here)), moved.argmin(axis=1)]
    return out


def _transform(
    ref_rows: np.ndarray,
    ref_coords: np.ndarray,
    rows: np.ndarray,
    seed: int,
    start: np.ndarray | None,
    skip: np.ndarray | None,
    perplexity: float,
    options: dict[str, Any] | None = None,
) -> np.ndarray:
    """openTSNE's transform of `rows` against the fixed map (`ref_rows`, `ref_coords`);
    `skip[j]`: a reference row that row j must not count as its neighbour (itself)."""
    from openTSNE import TSNEEmbedding
    from openTSNE.affinity import Affinities, joint_probabilities_nn

    n_ref = len(ref_rows)

    class _Exact(Affinities):
        """Affinities of new rows to the reference rows by exact search (no kNN index)."""

        def __init__(self) -> None:
            super().__init__()
            self.P = _identity_shape(n_ref)

        def to_new(self, data, perplexity=TRANSFORM_PERPLEXITY, return_distances=False):
            k = min(n_ref - (0 if skip is None else 1), max(TRANSFORM_K, int(3 * perplexity)))
            perplexity = min(perplexity, k / 3)
            if skip is None:
                neighbours, distances = nearest(data, ref_rows, k)
            else:  # one more, then drop the row itself
                neighbours, distances = nearest(data, ref_rows, k + 1)
                keep = neighbours != skip[:, None]
                order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
                neighbours = np.take_along_axis(neighbours, order, axis=1)
                distances = np.take_along_axis(distances, order, axis=1)
            P = joint_probabilities_nn(
                neighbours,
                distances,
                [perplexity],
                symmetrize=False,
                normalization="point-wise",
                n_reference_samples=n_ref,
            )
            return (P, neighbours, distances) if return_distances else P

    centre = (ref_coords.max(axis=0) + ref_coords.min(axis=0)) / 2
    # a copy: transform re-centres the embedding it is called on (FACTS.md)
    embedding = TSNEEmbedding(ref_coords.copy(), _Exact(), random_state=seed, n_jobs=1)
    options = {"initialization": "median", "k": TRANSFORM_K, "n_iter": TRANSFORM_ITER,
               **(options or {})}  # fmt: skip
    if start is not None:
        options["initialization"] = np.asarray(start, dtype=np.float64) - centre
    placed = embedding.transform(rows, perplexity=perplexity, **options)
    # transform moved the reference by -centre; the new points live in that frame
    return np.asarray(placed, dtype=np.float64) + centre


def _identity_shape(n: int) -> Any:
    """An empty n x n sparse P: TSNEEmbedding checks P's shape; transform never reads it."""
    import scipy.sparse as sp

    return sp.csr_matrix((n, n))


def place_umap(
    old_vectors: np.ndarray,
    old_coords: np.ndarray,
    new_vectors: np.ndarray,
    reference: dict[str, Any],
    seed: int = 0,
    among: np.ndarray | None = None,
) -> np.ndarray:
    """New points on a UMAP map, as UMAP.transform: fuzzy neighbourhood, weighted-mean
    start, then UMAP's layout epochs against the fixed old points (`among`: the old
    documents are these rows of `old_vectors`, as `nearest`'s)."""
    from umap.layouts import optimize_layout_euclidean
    from umap.umap_ import compute_membership_strengths, make_epochs_per_sample, smooth_knn_dist

    settings = reference["settings"]
    k = min(int(settings.get("umap_neighbours", 15)), len(old_coords))
    a, b = float(settings["umap_a"]), float(settings["umap_b"])
    indices, distances = nearest(new_vectors, old_vectors, k, metric="cosine", among=among)
    distances = distances.astype(np.float32)
    sigmas, rhos = smooth_knn_dist(distances, float(k), local_connectivity=1.0)
    rows, cols, vals, _ = compute_membership_strengths(
        indices.astype(np.int32), distances, sigmas, rhos, bipartite=True
    )
    import scipy.sparse as sp

    graph = sp.coo_matrix((vals, (rows, cols)), shape=(len(new_vectors), len(old_coords)))
    csr = graph.tocsr()
    csr.eliminate_zeros()
    weights = csr.multiply(1.0 / np.asarray(csr.sum(axis=1)).clip(min=1e-12)).tocsr()
    old = np.asarray(old_coords, dtype=np.float32)
    start = np.asarray(weights @ old, dtype=np.float32)
    empty = np.asarray(csr.sum(axis=1)).ravel() == 0
    start[empty] = old[indices[empty, 0]]
    n_epochs = 100  # UMAP.transform's n_epochs // 3 for small data (its default 200 -> 30..100)
    graph = graph.tocoo()
    graph.data[graph.data < graph.data.max() / float(n_epochs)] = 0.0
    graph.eliminate_zeros()
    if graph.nnz == 0:
        return start
    epochs_per_sample = make_epochs_per_sample(graph.data, n_epochs)
    rng_state = (
        np.random.RandomState(seed)
        .randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1, 3)
        .astype(np.int64)
    )
    head = np.ascontiguousarray(start.copy())
    tail = np.ascontiguousarray(old.copy())
    placed = optimize_layout_euclidean(
        head, tail, graph.row, graph.col, n_epochs, len(old), epochs_per_sample, a, b,
        rng_state, 1.0, 0.25, 5.0, parallel=False, move_other=False,
    )  # fmt: skip
    return np.asarray(placed, dtype=np.float64)
