"""Exact nearest neighbours among unit vectors, the one way `compare` and the map use.

A leaf module (numpy only): the comparison of two spaces and the map's neighbour lists
both read it, so neither imports the other.
"""

from __future__ import annotations

import numpy as np

CHUNK_ROWS = 1024  # rows of the similarity matrix held at once (1024 x 11k floats: 46 MB)


def nearest_rows(vectors: np.ndarray, m: int, chunk: int = CHUNK_ROWS) -> np.ndarray:
    """The `m` most similar other rows of each row (cosine on unit rows), exact, most
    similar first.

    Brute force in chunks of rows, so memory stays at `chunk` x n similarities. Ties at
    the m-th place go to the lower row number, the same way in every space, so two
    identical texts never make two spaces look different.
    """
    n = len(vectors)
    out = np.empty((n, m), dtype=np.int64)
    x = np.asarray(vectors, dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        sims = x[start:stop] @ x.T
        sims[np.arange(stop - start), np.arange(start, stop)] = -np.inf  # never itself
        kth = np.partition(sims, n - m, axis=1)[:, n - m]  # the m-th largest of each row
        chosen = sims >= kth[:, None]
        for r in range(stop - start):
            cols = np.flatnonzero(chosen[r])
            # most similar first; ties (at the boundary too) to the lower row
            out[start + r] = cols[np.lexsort((cols, -sims[r, cols]))][:m]
    return out
