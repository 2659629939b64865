"""Nearest neighbours over vectors a long-running service already holds in memory.

For a space of up to EXACT_FLOATS numbers (e.g. 2,600 documents at 3072 dims, 20,000 at
384) one matrix-vector product is exact and takes well under Chroma's ~8 ms per query
(most of which is spent outside its HNSW search). Larger spaces stay with Chroma's
index: a full scan is bound by memory bandwidth and gains nothing there (a PCA-projected
candidate scan was tried: on structureless vectors its recall@10 fell to 0.28, so it
was dropped rather than shipped unmeasured on real ones).
"""

from __future__ import annotations

import fnmatch
from typing import Any

import numpy as np

EXACT_FLOATS = 8_000_000  # 32 MB of float32


class MemoryIndex:
    """Unit vectors (one row per document) with their labels and sources."""

    def __init__(self, vectors: np.ndarray, metadatas: list[dict[str, Any]]):
        self.vectors = vectors
        self.labels = np.array([m.get("label") for m in metadatas], dtype=object)
        self.sources = np.array([m.get("source") for m in metadatas], dtype=object)

    @staticmethod
    def worth_it(rows: int, dims: int) -> bool:
        return rows * dims <= EXACT_FLOATS

    def mask(self, labels: list[str] | None, sources: list[str] | None) -> np.ndarray | None:
        """Rows whose label and source match the globs (None: every row)."""
        if not labels and not sources:
            return None
        keep = np.ones(len(self.vectors), dtype=bool)
        for values, globs in ((self.labels, labels), (self.sources, sources)):
            if globs:
                known = {v for v in set(values.tolist()) if v is not None}
                wanted = [v for v in known if any(fnmatch.fnmatchcase(v, g) for g in globs)]
                keep &= np.isin(values, np.array(wanted, dtype=object))
        return keep

    def search(
        self, vector: np.ndarray, k: int, exclude: int | None = None, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cosine similarities) of the exact `k` best rows, best first."""
        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        if mask is not None:
            scores[~mask] = -np.inf
        if exclude is not None:
            scores[exclude] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        if k == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        best = best[np.lexsort((best, -scores[best]))]  # ties: by row, stable
        return best, scores[best]
