"""2-D maps of the vectors, for looking at; clustering never uses them."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from ..errors import InvalidRequest

METHODS = ("tsne", "pca", "umap")
PCA_BEFORE_TSNE = 50
# scikit-learn's Barnes-Hut t-SNE grows worse than linearly (47 s at 11k points here);
# above this, openTSNE's FFT-accelerated t-SNE (on both cores, deterministic for a seed)
# makes the same kind of map in linear time: at 11,314 x 50 it took 0.65x of
# scikit-learn's time (bench/first_fit.py also compares trustworthiness). Below it,
# scikit-learn's is as fast and the maps stay the ones made before.
OPENTSNE_ABOVE = 5_000


MAP_CACHE_VERSION = 1  # bump when reduce_2d would draw a different map for the same input


def map_key(space_key: str, hashes: list[str], method: str, seed: int) -> str:
    """Cache key of a map: the space, the documents' content hashes in row order, the
    method with every parameter reduce_2d derives from them, and the seed."""
    digest = hashlib.sha256()
    settings = [MAP_CACHE_VERSION, space_key, method, seed, PCA_BEFORE_TSNE, OPENTSNE_ABOVE]
    digest.update(json.dumps(settings).encode())
    for content_hash in hashes:
        digest.update(content_hash.encode())
    return digest.hexdigest()


def reduce_2d(
    vectors: np.ndarray, method: str = "tsne", seed: int = 0, keep: dict | None = None
) -> tuple[np.ndarray, str]:
    """(n x 2 coordinates, a line saying what ran). Seeded, so maps repeat exactly.
    `keep` receives the fitted PCA (what placing new points needs: reference.py)."""
    n = len(vectors)
    if n < 3:
        return np.zeros((n, 2), dtype=np.float32), "too few points for a map"
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed)
        coords = pca.fit_transform(vectors)
        if keep is not None:
            keep["pca"] = pca
        return coords, "PCA"
    if method == "umap":
        return _umap(vectors, seed)
    if method != "tsne":
        raise InvalidRequest(f"unknown reduction {method!r}; use one of {', '.join(METHODS)}")
    note = "t-SNE"
    if vectors.shape[1] > PCA_BEFORE_TSNE and n > PCA_BEFORE_TSNE:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=PCA_BEFORE_TSNE, random_state=seed)
        vectors = pca.fit_transform(vectors)
        if keep is not None:
            keep["pca"] = pca
        note = f"t-SNE after PCA to {PCA_BEFORE_TSNE} dims"
    perplexity = float(min(30, max(2, (n - 1) // 3)))
    if n > OPENTSNE_ABOVE:
        note = note.replace("t-SNE", "openTSNE (FFT t-SNE)", 1)
        return _opentsne(vectors, perplexity, seed), f"{note} (perplexity {perplexity:g})"
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(vectors), f"{note} (perplexity {perplexity:g})"


def _opentsne(vectors: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    from openTSNE import TSNE

    model = TSNE(n_components=2, perplexity=perplexity, random_state=seed, n_jobs=-1)
    return np.asarray(model.fit(np.ascontiguousarray(vectors, dtype=np.float64)))


def _umap(vectors: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    try:
        import umap
    except ImportError:
        raise InvalidRequest("<<reduce='umap'>> needs umap-learn: pip install umap-learn") from None
    neighbours = min(15, len(vectors) - 1)
    model = umap.UMAP(  # a seed makes UMAP single-threaded: say so, and it warns nothing
        n_components=2, n_neighbors=neighbours, metric="cosine", random_state=seed, n_jobs=1
    )
    return model.fit_transform(vectors), f"UMAP (cosine, {neighbours} neighbours)"
