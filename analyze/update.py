"""Updating an analysis for the corpus as it is now: new documents placed, old ones kept.

`update_corpus(parent, corpus)` compares the parent's documents with the selection now
(kept: same id and content hash; changed: same id, new text; added; removed). Kept
documents keep exactly their coordinates and cluster; added and changed ones are placed
on the stored map (placement.py) and given a stored cluster (`assign`), from the
parent's reference data (reference.py). Evaluation, the per-class table, the confusion
matrix and cluster terms are recomputed for the new membership. Nothing here embeds.

With `refit=True` (or when the parent has no reference data: an analysis stored before
updates existed) the selection is fitted again, starting from the parent: the map from
the stored coordinates plus the placed ones, k-means from the parent's clusters, and
cluster numbers matched to the parent's by their members (Hungarian), so cluster 3
stays cluster 3 where it still exists. The refitted map is turned, scaled and moved onto
the old one (orthogonal Procrustes) so an open view stays where it was.

Drift (see docs/update.md for the thresholds) says when placement stops being honest.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InvalidRequest
from ..store.vector_memory import unit_rows
from .analysis import Analysis, space_dict
from .cluster import _sums, cluster, default_text_weight
from .describe import describe_clusters
from .evaluate import evaluate
from .placement import nearest, place_pca, place_tsne, place_umap, project, settle
from .reference import (
    SAMPLE_NEIGHBOURS,
    SAMPLE_SIZE,
    build_reference,
    carried_sample,
    hash_hex,
    kmeans_features,
    nearest_others,
    neighbour_sample,
    size_bytes,
)
from .select import Corpus
from .threads import sized_threads

NOISE = -1
# refit_advised when any of these is passed (docs/update.md says why)
MAX_PLACED_SHARE = 0.2  # documents placed since the last fit, of all documents
MIN_SIMILARITY_RATIO = 0.85  # new documents' similarity to their centroid / old members'
MAX_EXTRA_NOISE = 0.15  # share of placed documents left as noise, above the old share
MAX_PRESERVATION_GAP = 0.15  # old points' neighbourhood preservation minus the placed ones'
MIN_PLACED = 30  # the similarity/preservation tests need this many placed documents
NEIGHBOURS = SAMPLE_NEIGHBOURS  # 10
PRESERVATION_SAMPLE = SAMPLE_SIZE  # points per group whose neighbourhoods are compared


def diff(parent: Analysis, corpus: Corpus) -> dict[str, list[str]]:
    """kept / changed / added / removed ids between the parent and the corpus now."""
    old_hashes = _parent_hashes(parent)
    now = dict(zip(corpus.ids, corpus.hashes))
    kept, changed, added = [], [], []
    for doc_id, digest in now.items():
        if doc_id not in old_hashes:
            added.append(doc_id)
        elif old_hashes[doc_id] and digest and old_hashes[doc_id] != digest:
            changed.append(doc_id)
        else:
            kept.append(doc_id)
    removed = [i for i in parent.ids if i not in now]
    return {"kept": kept, "changed": changed, "added": added, "removed": removed}


def _parent_hashes(parent: Analysis) -> dict[str, str]:
    ref = parent.reference
    if ref and "hashes" in ref["arrays"]:
        return dict(zip(parent.ids, hash_hex(ref["arrays"]["hashes"])))
    return {i: "" for i in parent.ids}


def can_place(parent: Analysis) -> str | None:
    """None when the parent can be updated without a refit, else why not."""
    if not parent.reference:
        return "it was stored before updates existed (no reference data)"
    if parent.options.get("reduce") in ("tsne", "pca") and parent.reference["settings"].get(
        "map_pca", True
    ):
        if "map_components" not in parent.reference["arrays"] and len(parent.ids) >= 3:
            return "its map has no stored components"
    if len(parent.ids) < 3:
        return "it has too few documents for a map"
    return None


@sized_threads
def update_corpus(
    parent: Analysis,
    corpus: Corpus,
    refit: bool = False,
    on_stage: Callable[[str, int], None] | None = None,
) -> Analysis:
    """The parent updated to `corpus` (see the module docstring); not stored yet."""
    started = time.perf_counter()
    stage = on_stage or (lambda _name, _index: None)
    timings: dict[str, float] = {}
    seed = int(parent.options.get("seed", 0))
    changes = diff(parent, corpus)
    why_not = can_place(parent)
    if not changes["kept"]:
        why_not = why_not or "none of its documents is left in the selection"
    forced = why_not is not None and not refit
    index = {doc_id: i for i, doc_id in enumerate(corpus.ids)}
    old_pos = {doc_id: i for i, doc_id in enumerate(parent.ids)}
    kept_rows = np.array([index[i] for i in changes["kept"]], dtype=np.int64)
    kept_old = np.array([old_pos[i] for i in changes["kept"]], dtype=np.int64)
    new_ids = sorted(changes["added"] + changes["changed"])
    new_rows = np.array([index[i] for i in new_ids], dtype=np.int64)
    n = len(corpus.ids)

    coords = np.zeros((n, 2), dtype=np.float32)
    labels = np.full(n, NOISE, dtype=np.int64)
    if len(kept_rows):
        coords[kept_rows] = parent.coords[kept_old]
        labels[kept_rows] = parent.cluster_labels[kept_old]
    stage("place", 0)
    if why_not is None and len(new_rows):
        t0 = time.perf_counter()
        coords[new_rows] = _place(parent, corpus, kept_rows, new_rows, coords[kept_rows], seed)
        timings["place"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels[new_rows] = assign(parent, corpus, kept_rows, new_rows, labels[kept_rows])
        timings["assign"] = time.perf_counter() - t0
    placed = coords.copy()
    placed_labels = labels.copy()
    report: dict[str, Any] = {
        "kept": len(changes["kept"]),
        "added": len(changes["added"]),
        "removed": len(changes["removed"]),
        "changed": len(changes["changed"]),
    }
    refitted = refit or forced
    keeps: tuple[dict, dict] = ({}, {})
    clustering_params = dict(parent.metrics.get("params", {}).get("clustering", {}))
    map_note = parent.metrics.get("params", {}).get("map", "")
    k_scores = dict(parent.k_scores)
    if refitted:
        stage("refit", 1)
        t0 = time.perf_counter()
        start = placed if why_not is None else None
        start_labels = placed_labels if why_not is None else None
        labels, coords, clustering_params, map_note, k_scores, keeps = _refit(
            parent, corpus, start, start_labels, seed
        )
        if len(kept_rows):
            labels = match_clusters(parent.cluster_labels[kept_old], labels[kept_rows], labels)
            coords = align(coords, parent.coords[kept_old], kept_rows)
            report["disparity"] = disparity(parent.coords[kept_old], coords[kept_rows])
            same = labels[kept_rows] == parent.cluster_labels[kept_old]
            report["kept_cluster_share"] = round(float(same.mean()), 6)
        report["refit"] = "asked" if refit else f"needed: {why_not}"
        timings["refit"] = time.perf_counter() - t0
    stage("evaluate", 2)
    t0 = time.perf_counter()
    metrics = evaluate(corpus.vectors, labels, corpus.labels, seed)
    timings["evaluate"] = time.perf_counter() - t0
    stage("describe", 3)
    t0 = time.perf_counter()
    described = describe_clusters(corpus.vectors, labels, corpus.ids, corpus.texts, corpus.labels)
    timings["describe"] = time.perf_counter() - t0
    settings = (parent.reference or {}).get("settings", {})
    if refitted:
        reference = build_reference(
            corpus.vectors, corpus.hashes, labels, parent.options, clustering_params,
            keeps[0], keeps[1], seed, corpus.ids,
        )  # fmt: skip
    else:
        reference = {
            "settings": {
                **settings,
                "placed_since_fit": int(settings.get("placed_since_fit", 0)) + len(new_rows),
            },
            "arrays": dict((parent.reference or {})["arrays"]),
        }
        from .reference import hash_bytes

        reference["arrays"]["hashes"] = hash_bytes(corpus.hashes)
    stage("drift", 4)
    t0 = time.perf_counter()
    is_new = np.zeros(n, dtype=bool)
    is_new[new_rows] = True
    if refitted:
        sample = reference["arrays"]
        drift = drift_figures(corpus.vectors, coords, labels, np.zeros(n, bool), 0, n, seed, sample)
    else:
        # the parent's drift sample, carried over (its stored similarities hold only
        # where a stored vector never changes under the same text)
        to_now = np.full(len(parent.ids), -1, dtype=np.int64)
        to_now[kept_old] = kept_rows
        stored = (parent.reference or {}).get("arrays")
        carried = stored if corpus.space.embeds_text else None
        sample = carried_sample(
            corpus.vectors, corpus.ids, kept_rows, new_rows, carried, to_now, seed
        )
        reference["arrays"].update(sample)
        drift = drift_figures(
            corpus.vectors, coords, labels, is_new,
            reference["settings"]["placed_since_fit"], n, seed, sample,
        )  # fmt: skip
    timings["drift"] = time.perf_counter() - t0
    report["drift"] = drift
    report["refit_advised"] = (not refitted) and advise(drift)
    report["reference_bytes"] = size_bytes(reference)
    metrics["space"] = space_dict(corpus.space)
    params = dict(parent.metrics.get("params", {}))
    params.update(clustering=clustering_params, map=map_note, documents=n)
    params["update"] = {"parent": parent.id, "placed": 0 if refitted else len(new_rows)}
    params["update"]["refit"] = refitted
    metrics["params"] = params
    if k_scores:
        metrics["k_silhouette"] = {str(k): round(v, 6) for k, v in k_scores.items()}
    report["seconds"] = round(time.perf_counter() - started, 3)
    return Analysis(
        space=corpus.space,
        ids=list(corpus.ids),
        labels=list(corpus.labels),
        cluster_labels=labels,
        coords=np.asarray(coords, dtype=np.float32),
        metrics=metrics,
        clusters=described,
        options=dict(parent.options),
        selection=dict(parent.selection),
        k_scores=k_scores,
        timings=timings,
        parent=parent.id,
        update_report=report,
        reference=reference,
        placed=[corpus.ids[i] for i in new_rows] if not refitted else [],
    )


# -- placement and assignment ---------------------------------------------------------------


def _place(parent, corpus, kept_rows, new_rows, kept_coords, seed) -> np.ndarray:
    """New rows' coordinates on the parent's map, by the method that drew it, then
    settled among their nearest old documents (t-SNE and UMAP; `settle` says why)."""
    method = parent.options.get("reduce", "tsne")
    ref = parent.reference
    vectors = corpus.vectors
    new = vectors[new_rows]
    if method == "pca":
        return place_pca(new, ref)
    # the old rows are searched where they are (`among`): no copy of them
    if method == "umap":
        placed = place_umap(vectors, kept_coords, new, ref, seed, among=kept_rows)
    elif ref["settings"].get("map_pca"):
        comps, mean = ref["arrays"]["map_components"], ref["arrays"]["map_mean"]
        projected = project(vectors, comps, mean)  # every row: 50 columns, no copy of rows
        placed = place_tsne(projected[kept_rows], kept_coords, projected[new_rows], seed)
    else:
        placed = place_tsne(vectors[kept_rows], kept_coords, new, seed)
    return settle(vectors, kept_coords, new, placed, among=kept_rows)


def assign(parent, corpus, kept_rows, new_rows, kept_labels) -> np.ndarray:
    """New rows' clusters among the parent's: k-means, the nearest stored centroid in the
    features it clustered; HDBSCAN, its nearest old document's cluster within that
    cluster's fitted distance (noise when that document is noise, or too far);
    agglomerative and DBSCAN, the nearest clustered old document's within the fitted
    distance (the cluster's radius; DBSCAN's eps on the full vectors), else noise."""
    algorithm = parent.options.get("algorithm", "kmeans")
    ref = parent.reference
    vectors = corpus.vectors
    if algorithm == "kmeans":
        texts = [corpus.texts[i] for i in new_rows] if corpus.texts else [""] * len(new_rows)
        features = kmeans_features(vectors[new_rows], texts, ref)
        centroids = ref["arrays"]["centroids"]
        if features.shape[1] != centroids.shape[1]:
            raise InvalidRequest("the stored centroids do not match the features; refit")
        ids = ref["arrays"]["centroid_ids"]
        return ids[(features @ centroids.T).argmax(axis=1)].astype(np.int64)
    kept_labels = np.asarray(kept_labels)
    if algorithm == "hdbscan":
        idx, dist = nearest(vectors[new_rows], vectors, 1, metric="cosine", among=kept_rows)
        found = kept_labels[idx[:, 0]]
        radius = dict(zip(ref["arrays"]["radius_ids"].tolist(), ref["arrays"]["radius"].tolist()))
        limit = np.array([radius.get(int(c), -1.0) for c in found])
        return np.where((found != NOISE) & (dist[:, 0] <= limit), found, NOISE).astype(np.int64)
    clustered = np.flatnonzero(kept_labels != NOISE)
    if not len(clustered):
        return np.full(len(new_rows), NOISE, dtype=np.int64)
    among = np.asarray(kept_rows)[clustered]
    idx, dist = nearest(vectors[new_rows], vectors, 1, metric="cosine", among=among)
    found = kept_labels[clustered][idx[:, 0]]
    if algorithm == "dbscan" and "radius" not in ref["arrays"]:  # on the full vectors
        limit = np.full(len(found), float(ref["settings"].get("eps", 0.5)))
    else:
        radius = dict(zip(ref["arrays"]["radius_ids"].tolist(), ref["arrays"]["radius"].tolist()))
        limit = np.array([radius.get(int(c), -1.0) for c in found])
    return np.where(dist[:, 0] <= limit, found, NOISE).astype(np.int64)


# -- refit ----------------------------------------------------------------------------------


def _refit(parent, corpus, start_coords, start_labels, seed):
    """Cluster and map the corpus again, from the parent's state where there is one."""
    from .run import AnalysisOptions

    options = AnalysisOptions(**{k: v for k, v in parent.options.items() if k in _FIELDS})
    text_weight = options.text_weight
    if text_weight is None:
        text_weight = default_text_weight(corpus.space.provider, options.algorithm)
    cluster_keep: dict[str, Any] = {}
    k_scores: dict[int, float] = {}
    if options.algorithm == "kmeans" and start_labels is not None:
        # k-means from the parent's clusters (placed documents included): one start
        from .cluster import with_text_view

        features, dims = with_text_view(
            corpus.vectors, corpus.texts, text_weight, seed, keep=cluster_keep
        )
        cluster_keep["features"] = features
        labels = spherical_kmeans_from(features, start_labels)
        params = dict(parent.metrics.get("params", {}).get("clustering", {}))
        params["k"] = len({c for c in labels.tolist()})
        params["start"] = "the parent's clusters"
        if text_weight:
            params.update(text_weight=float(text_weight) if dims else 0.0, text_dims=dims)
        k_scores = dict(parent.k_scores)
    else:
        k = options.k
        found = cluster(
            corpus.vectors, options.algorithm, k, seed, options.min_cluster_size, options.eps,
            texts=corpus.texts, text_weight=text_weight, keep=cluster_keep,
            cluster_dims=options.cluster_dims,  # None in analyses from before: full vectors
        )  # fmt: skip
        labels, params, k_scores = found.labels, found.params, found.k_scores
    map_keep: dict[str, Any] = {}
    coords, note = map_from(corpus.vectors, options.reduce, seed, start_coords, map_keep)
    return np.asarray(labels, np.int64), coords, params, note, k_scores, (cluster_keep, map_keep)


_FIELDS = (
    "algorithm", "k", "reduce", "seed", "min_cluster_size", "eps", "text_weight", "cluster_dims",
)  # fmt: skip


def spherical_kmeans_from(features: np.ndarray, start_labels: np.ndarray, max_iter: int = 100):
    """Spherical k-means (cluster.spherical_kmeans) started from a membership instead of
    k-means++: the centroids of `start_labels`' clusters. Labels keep their numbers."""
    x = unit_rows(np.asarray(features, dtype=np.float32))
    start = np.asarray(start_labels)
    ids = np.array(sorted({int(c) for c in start.tolist() if c != NOISE}), dtype=np.int64)
    if not len(ids):
        raise InvalidRequest("no cluster to start k-means from")
    k = len(ids)
    centres = np.stack([x[start == c].sum(axis=0) for c in ids])
    labels = None
    settled = int(len(x) * 1e-3)
    for _ in range(max_iter):
        new = (x @ unit_rows(centres).T).argmax(axis=1)
        if labels is not None and int((new != labels).sum()) <= settled:
            labels = new
            break
        labels = new
        centres = _sums(x, labels, k)
        empty = np.bincount(labels, minlength=k) == 0
        if empty.any():  # an emptied cluster keeps its old centre
            centres[empty] = np.stack([x[start == c].sum(axis=0) for c in ids[empty]])
    return ids[labels]


def map_from(
    vectors: np.ndarray, method: str, seed: int, start: np.ndarray | None, keep: dict
) -> tuple[np.ndarray, str]:
    """reduce.reduce_2d, started from `start` (old coordinates plus placed ones)."""
    from .reduce import OPENTSNE_ABOVE, PCA_BEFORE_TSNE, reduce_2d

    n = len(vectors)
    if start is None or method == "pca" or n < 3:
        return reduce_2d(vectors, method, seed, keep=keep)
    init = np.asarray(start, dtype=np.float64)
    if method == "umap":
        import umap

        neighbours = min(15, n - 1)
        model = umap.UMAP(
            n_components=2, n_neighbors=neighbours, metric="cosine", random_state=seed,
            init=init, n_jobs=1,
        )  # fmt: skip
        return model.fit_transform(vectors), f"UMAP (cosine, {neighbours} neighbours)"
    note = "t-SNE"
    rows = vectors
    if vectors.shape[1] > PCA_BEFORE_TSNE and n > PCA_BEFORE_TSNE:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=PCA_BEFORE_TSNE, random_state=seed)
        rows = pca.fit_transform(vectors)
        keep["pca"] = pca
        note = f"t-SNE after PCA to {PCA_BEFORE_TSNE} dims"
    perplexity = float(min(30, max(2, (n - 1) // 3)))
    # the start's shape, at the small scale t-SNE's own PCA start has (std 1e-4), and no
    # early exaggeration: it exists to untangle a start that means nothing, and it
    # scrambles one that does (the local demo +60: Procrustes disparity 0.208 with it,
    # 0.048 without, trustworthiness@10 0.956 and 0.953)
    init = init - init.mean(axis=0)
    init = init / max(float(init[:, 0].std()), 1e-12) * 1e-4
    note = f"{note} (perplexity {perplexity:g}), started from the parent's map"
    if n > OPENTSNE_ABOVE:
        from openTSNE import TSNE as OpenTSNE

        model = OpenTSNE(
            n_components=2, perplexity=perplexity, random_state=seed, n_jobs=-1,
            initialization=init, early_exaggeration=1.0,
        )  # fmt: skip
        return np.asarray(model.fit(np.ascontiguousarray(rows, dtype=np.float64))), note
    from sklearn.manifold import TSNE

    tsne = TSNE(
        n_components=2, perplexity=perplexity, init=init, random_state=seed, early_exaggeration=1.0
    )
    return tsne.fit_transform(rows), note


def match_clusters(old: np.ndarray, new_of_old: np.ndarray, new: np.ndarray) -> np.ndarray:
    """`new` renumbered so each new cluster takes the number of the old cluster it shares
    most members with (Hungarian matching on the kept documents); the rest get numbers
    above the old ones. Noise stays noise."""
    from scipy.optimize import linear_sum_assignment

    old_ids = sorted({int(c) for c in old.tolist() if c != NOISE})
    new_ids = sorted({int(c) for c in new.tolist() if c != NOISE})
    if not old_ids or not new_ids:
        return new
    overlap = np.zeros((len(new_ids), len(old_ids)), dtype=np.int64)
    npos = {c: i for i, c in enumerate(new_ids)}
    opos = {c: i for i, c in enumerate(old_ids)}
    for a, b in zip(new_of_old.tolist(), old.tolist()):
        if a != NOISE and b != NOISE:
            overlap[npos[int(a)], opos[int(b)]] += 1
    rows, cols = linear_sum_assignment(-overlap)
    mapping = {new_ids[r]: old_ids[c] for r, c in zip(rows, cols) if overlap[r, c] > 0}
    spare = max(old_ids) + 1
    for c in new_ids:
        if c not in mapping:
            mapping[c] = spare
            spare += 1
    mapping[NOISE] = NOISE
    return np.array([mapping[int(c)] for c in new.tolist()], dtype=np.int64)


def align(coords: np.ndarray, old_coords: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """`coords` turned, scaled and moved so that `coords[rows]` lie as close as they can to
    `old_coords` (orthogonal Procrustes): a refitted map opens where the old one was."""
    from scipy.linalg import orthogonal_procrustes

    a = np.asarray(coords[rows], dtype=np.float64)
    b = np.asarray(old_coords, dtype=np.float64)
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    a0, b0 = a - ma, b - mb
    if not np.linalg.norm(a0) or not np.linalg.norm(b0):
        return coords
    rotation, scale = orthogonal_procrustes(a0, b0)
    scale /= (a0 * a0).sum()
    return ((np.asarray(coords, np.float64) - ma) @ rotation * scale + mb).astype(np.float32)


def disparity(old: np.ndarray, new: np.ndarray) -> float | None:
    """Procrustes disparity (scipy.spatial.procrustes) of the same documents on two maps:
    0 = the same shape up to turning, scaling and moving; 1 = unrelated."""
    from scipy.spatial import procrustes

    if len(old) < 3:
        return None
    return round(float(procrustes(np.asarray(old, np.float64), np.asarray(new, np.float64))[2]), 6)


# -- drift ----------------------------------------------------------------------------------


def drift_figures(
    vectors: np.ndarray,
    coords: np.ndarray,
    labels: np.ndarray,
    is_new: np.ndarray,
    placed_since_fit: int,
    n: int,
    seed: int = 0,
    sample: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """How far placement can be trusted (docs/update.md): the share placed since the last
    fit; the new documents' mean cosine similarity to their cluster's centroid against the
    old members'; the noise shares; and neighbourhood preservation on the map (the share
    of each point's 10 nearest neighbours in the vectors that are among its 10 nearest on
    the map), for placed points against the drift sample of old ones (`sample`, the
    reference's `neighbour_sample`; made here when not given). Rows of `vectors` are
    unit length, as a Corpus' are."""
    out: dict[str, Any] = {
        "placed_share": round(placed_since_fit / n, 6) if n else 0.0,
        "placed_now": int(is_new.sum()),
    }
    x = np.asarray(vectors, dtype=np.float32)  # unit rows, as a Corpus' are
    clustered = labels != NOISE
    old_members = clustered & ~is_new
    ids = sorted({int(c) for c in labels[old_members].tolist()})
    if ids:
        position = {c: i for i, c in enumerate(ids)}
        # each old member's place in `ids` (sorted, and holding every old member's
        # cluster); every other row -1
        of_old = np.where(old_members, np.searchsorted(ids, labels), -1)
        centroids = unit_rows(_sums(x, of_old, len(ids)))

        def similarity(mask: np.ndarray) -> float | None:
            total, count = 0.0, 0
            for c in ids:  # one product per cluster: no n x dims gather of centroids
                rows = np.flatnonzero(mask & (labels == c))
                if len(rows):
                    total += float((x[rows] @ centroids[position[c]]).sum())
                    count += len(rows)
            return round(total / count, 6) if count else None

        out["similarity_old"] = similarity(~is_new)
        out["similarity_new"] = similarity(is_new)
        if out["similarity_new"] is not None and out["similarity_old"]:
            out["similarity_ratio"] = round(out["similarity_new"] / out["similarity_old"], 6)
    old_noise = float((~clustered & ~is_new).sum() / max(1, (~is_new).sum()))
    out["noise_old"] = round(old_noise, 6)
    if is_new.any():
        out["noise_new"] = round(float((~clustered & is_new).sum() / is_new.sum()), 6)
    rng = np.random.RandomState(seed)
    new_rows = np.flatnonzero(is_new)
    if len(new_rows) > PRESERVATION_SAMPLE:
        new_rows = np.sort(rng.choice(new_rows, PRESERVATION_SAMPLE, replace=False))
    if n > NEIGHBOURS + 1:
        if sample is None:
            sample = neighbour_sample(x, [str(i) for i in range(n)], np.flatnonzero(~is_new), seed)
        out["preservation_old"] = preservation_of(
            sample["sample_rows"], sample["sample_neighbours"], coords
        )
        if len(new_rows):
            out["preservation_new"] = preservation(x, coords, new_rows)
    return out


def preservation(x: np.ndarray, coords: np.ndarray, rows: np.ndarray) -> float | None:
    """Mean share of each row's NEIGHBOURS nearest documents (cosine, all documents) that
    are among its NEIGHBOURS nearest on the map."""
    if not len(rows):
        return None
    high, _ = nearest_others(x, np.asarray(rows))
    return preservation_of(rows, high, coords)


def preservation_of(rows: np.ndarray, high: np.ndarray, coords: np.ndarray) -> float | None:
    """`preservation` of `rows` whose nearest documents (not themselves) are `high`."""
    if not len(rows):
        return None
    rows = np.asarray(rows, dtype=np.int64)
    k = NEIGHBOURS + 1  # itself first
    low, _ = nearest(np.asarray(coords[rows], np.float32), np.asarray(coords, np.float32), k)
    shares = []
    for r, h, lo in zip(rows.tolist(), np.asarray(high).tolist(), low.tolist()):
        hs = h[:NEIGHBOURS]
        ls = {i for i in lo if i != r}
        shares.append(len(set(hs) & ls) / max(1, len(hs)))
    return round(float(np.mean(shares)), 6)


def advise(drift: dict[str, Any]) -> bool:
    """True past any documented threshold (module constants; docs/update.md)."""
    if drift.get("placed_share", 0.0) > MAX_PLACED_SHARE:
        return True
    if drift.get("placed_now", 0) < MIN_PLACED:  # too few to tell from chance
        return False
    ratio = drift.get("similarity_ratio")
    if ratio is not None and ratio < MIN_SIMILARITY_RATIO:
        return True
    if drift.get("noise_new", 0.0) - drift.get("noise_old", 0.0) > MAX_EXTRA_NOISE:
        return True
    old, new = drift.get("preservation_old"), drift.get("preservation_new")
    return old is not None and new is not None and old - new > MAX_PRESERVATION_GAP
