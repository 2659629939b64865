"""Exact nearest neighbours over vectors a long-running service already holds in memory.

Why not Chroma's query path: it spends most of its ~3-8 ms per query outside its HNSW
search, waits for the index writes of a running ingest (seconds), and its HNSW answers
are approximate (on the fake server's structureless vectors its recall@10 is far from
1). Why not a plain float32 scan: at 11,314 x 3072 it reads 139 MB per query, 12-25 ms
on this 2-core machine. So a query, rounded to int8 itself, scans an int8 copy (4x
fewer bytes, faiss's int8 x int8 SIMD kernel, GIL released) for a short list of
candidates, re-scores them with the float32 vectors, and proves the list holds the true
top k: every row's quantisation error is known, and the query's, so a row left out
scores at most `candidate floor + slack`; when the k-th exact score is above that bound
the answer is exactly the exact search's. When it
is not (rare), the list grows, and at last the float32 scan answers. The answer is the
same as a full scan's; similarities equal to 6 places (what the API shows; float32
sums differ in the last bit with the order BLAS adds in) are ordered by row, the order
the space was read in.

Without faiss (an optional speed-up) every query is the float32 scan, re-scored with
numpy: the same hits in the same order, except that two similarities within a few units
of float32's last place around a 6th-decimal boundary may swap (the two add in another
order).
"""

from __future__ import annotations

import fnmatch
import threading
from typing import Any

import numpy as np

EXACT_FLOATS = 8_000_000  # up to here a float32 scan is as fast as anything (32 MB)
# Up to here the int8 scan beats Chroma's query path (measured: 11,314 x 3072 in ~1.5 ms
# vs ~3-8 ms); above it, a held space is still searched here while an ingest writes it.
FAST_FLOATS = 64_000_000
DECIMALS = 6  # similarities are shown to 6 places; equal ones are ordered by row
# int8 candidates of a first round. On 11,314 x 3072 fake-server vectors (structureless:
# the 10th best similarity ~0.058, the 512th ~0.030) 512 proved 99% of by-id answers at
# once, 2.5 ms a query in all (384: 86%, 3.0 ms; 128 proves none: the bound's slack,
# ~0.022 with the query's rounding, is wider than the gap); few are re-scored (see
# `_rank_candidates`). Real embeddings have far wider gaps.
FIRST_CANDIDATES = 512
MARGIN = 1e-4  # float32 rounding of the exact re-scores (~1e-7 in practice)
PAGE_ROWS = 1024  # rows encoded at a time: temporaries of 12 MB at 3072 dims
_faiss_lock = threading.Lock()


def _faiss() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    with _faiss_lock:
        if faiss.omp_get_max_threads() != 1:  # one query per request thread: no nested pools
            faiss.omp_set_num_threads(1)
    return faiss


class MemoryIndex:
    """Unit vectors (one row per document) with their labels and sources."""

    def __init__(self, vectors: np.ndarray, metadatas: list[dict[str, Any]]):
        self.vectors = vectors
        self.labels, self.sources = MemoryIndex._columns(metadatas)
        self._coarse: Any = None
        self._scale = 1.0  # int8 code = round(x * scale): one scale for every component
        self._max_norm = 1.0  # the longest row (unit rows: 1 up to rounding)
        self._max_err = 0.0  # max over rows of |x - decoded(x)|: bounds |x.q - coarse score|
        rows, dims = vectors.shape
        if rows * dims > EXACT_FLOATS:
            self._build_coarse()

    def extended(self, vectors: np.ndarray, new_metadatas: list[dict[str, Any]]) -> MemoryIndex:
        """A new index over `vectors`: these rows, then the new ones (`new_metadatas`
        are theirs). The int8 copy is this one's, cloned, with only the new rows
        encoded (its value range stays: a new row outside it is clipped, and its larger
        error is measured into the bound like every row's). This index is not changed:
        lookups may be running on it."""
        old = len(self.vectors)
        if self._coarse is None:  # a float32 scan (or a first int8 copy past its size)
            return MemoryIndex(vectors, [*self._metadatas_view(), *new_metadatas])
        faiss = _faiss()
        assert faiss is not None  # this index has an int8 copy: faiss made it
        grown = MemoryIndex.__new__(MemoryIndex)
        grown.vectors = vectors
        added = MemoryIndex._columns(new_metadatas)
        grown.labels = np.concatenate([self.labels, added[0]])
        grown.sources = np.concatenate([self.sources, added[1]])
        grown._coarse = faiss.clone_index(self._coarse)
        grown._scale = self._scale
        err, longest = grown._add_coarse(vectors[old:])
        grown._max_err, grown._max_norm = max(self._max_err, err), max(self._max_norm, longest)
        return grown

    def _metadatas_view(self) -> list[dict[str, Any]]:
        return [{"label": lab, "source": src} for lab, src in zip(self.labels, self.sources)]

    @staticmethod
    def _columns(metadatas: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        return (
            np.array([m.get("label") for m in metadatas], dtype=object),
            np.array([m.get("source") for m in metadatas], dtype=object),
        )

    def _add_coarse(self, rows: np.ndarray) -> tuple[float, float]:
        """Encode `rows` into the int8 copy: (the largest |x - decoded(x)|, the longest
        |x|) among them, both read in the same pass.

        The codes are rounded here, to whole numbers faiss stores as they are (its own
        encoder for direct codes truncates, and wraps what is out of range); a row
        outside the scale's range is clipped, and its larger error is measured like
        every row's."""
        worst = longest = 0.0
        for block in MemoryIndex._pages(rows):  # a page at a time: no 2nd full copy
            longest = max(longest, float(np.linalg.norm(block, axis=1).max()))
            codes = np.rint(block * self._scale)
            np.clip(codes, -127, 127, out=codes)
            self._coarse.add(codes)
            codes /= self._scale
            np.subtract(block, codes, out=codes)
            worst = max(worst, float(np.linalg.norm(codes, axis=1).max()))
        return worst, longest

    @staticmethod
    def _pages(rows: np.ndarray) -> Any:
        return (rows[start : start + PAGE_ROWS] for start in range(0, len(rows), PAGE_ROWS))

    @staticmethod
    def worth_it(rows: int, dims: int) -> bool:
        """Whether searching here beats Chroma when no ingest is writing the space."""
        if rows * dims <= EXACT_FLOATS:
            return True
        return rows * dims <= FAST_FLOATS and _faiss() is not None

    @property
    def quantised(self) -> bool:
        return self._coarse is not None

    def _build_coarse(self) -> None:
        faiss = _faiss()
        if faiss is None or len(self.vectors) == 0:
            return
        # Direct codes (decoded by a plain cast, not an affine map per component): the
        # scan of 11,314 x 3072 takes ~1.3 ms against ~2.4 for QT_8bit_uniform, with the
        # same step (one range for every component, symmetric here)
        index = faiss.IndexScalarQuantizer(
            self.vectors.shape[1],
            faiss.ScalarQuantizer.QT_8bit_direct_signed,
            faiss.METRIC_INNER_PRODUCT,
        )
        largest = max(float(np.abs(block).max()) for block in self._pages(self.vectors))
        self._scale = 127.0 / largest if largest > 0 else 1.0
        self._coarse = index
        self._max_err, self._max_norm = self._add_coarse(self.vectors)

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
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
        if self._coarse is not None:
            found = self._search_coarse(query, k, exclude, mask)
            if found is not None:
                return found
        return self._scan(query, k, exclude, mask)

    def _scan(
        self, query: np.ndarray, k: int, exclude: int | None, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self.vectors @ query
        if mask is not None:
            scores[~mask] = -np.inf
        if exclude is not None:
            scores[exclude] = -np.inf
        k = min(k, int(np.isfinite(scores).sum()))
        if k == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        # every row within MARGIN of the k-th score by this scan, re-scored and ordered
        # like the int8 path's: more rows equal to 6 places than a fixed few (copies of
        # one text, a zero query) are then all there, and the lowest rows come first
        kth = float(np.partition(scores, len(scores) - k)[len(scores) - k])
        candidates = np.flatnonzero(scores >= kth - MARGIN)
        return self._rank(candidates, query, k)

    def _rank(self, rows: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best `k` of `rows` by exact similarity, equal ones (to 6 places) by row.

        One function on every path, so equal rows score equal sums (not BLAS: OpenBLAS's
        threads spin for milliseconds on a busy machine)."""
        exact = self._exact(rows, query)
        order = np.lexsort((rows, -np.round(exact, DECIMALS)))[:k]
        return rows[order], exact[order]

    def _exact(self, rows: np.ndarray, query: np.ndarray) -> np.ndarray:
        """Exact similarities of `rows` to `query`: faiss reads the rows where they lie
        (gathering ~300 rows of 3072 floats first cost more than the sums), else einsum."""
        faiss = _faiss()
        if faiss is None or not self.vectors.flags.c_contiguous or self.vectors.dtype != np.float32:
            return np.einsum("ij,j->i", self.vectors[rows], query)
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty(len(ids), dtype=np.float32)
        faiss.fvec_inner_products_by_idx(
            faiss.swig_ptr(out), faiss.swig_ptr(query), faiss.swig_ptr(self.vectors),
            faiss.swig_ptr(ids), self.vectors.shape[1], 1, len(ids),
        )  # fmt: skip
        return out

    def _rank_candidates(
        self, rows: np.ndarray, coarse: np.ndarray, query: np.ndarray, k: int, slack: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """`_rank` of the candidates `rows` (best coarse score first), re-scoring only
        those that can matter: the first 4k + 16 give a k-th exact score, and a candidate
        whose coarse score + `slack` is below it cannot be among the best k."""
        head = min(len(rows), 4 * k + 16)
        best, exact = self._rank(rows[:head], query, k)
        if head == len(rows) or len(exact) < k:
            return best, exact
        rest = rows[head:][coarse[head:] + slack >= float(exact[-1]) - MARGIN]
        if len(rest) == 0:
            return best, exact
        return self._rank(np.concatenate([best, rest]), query, k)

    def _search_coarse(
        self, query: np.ndarray, k: int, exclude: int | None, mask: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The exact answer from int8 candidates, or None when it cannot be proven."""
        faiss = _faiss()
        if faiss is None:  # no faiss: the float32 scan answers
            return None
        rows = len(self.vectors)
        allowed = rows if mask is None else int(mask.sum())
        if exclude is not None and (mask is None or mask[exclude]):
            allowed -= 1
        k = min(k, allowed)
        if k <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        params = None
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")
            params = faiss.SearchParameters(sel=faiss.IDSelectorBitmap(rows, faiss.swig_ptr(bits)))
        wanted = max(FIRST_CANDIDATES, 4 * k + 16)
        # faiss's kernel for direct codes may cast the query to int8 (its SIMD kernels
        # do, for most dims): the query is rounded here to whole numbers in [-127, 127],
        # at its own scale, so every kernel computes the same integer dot product, and
        # the rounding joins the bound. q.x = q'.x' + (q - q').x + q'.(x - x'), so a row
        # scores at most its coarse score + |q - q'| |x| + |q'| max|x - x'|, plus what
        # adding d products in float32 can lose (faiss's scalar kernel; d 2^-24 |q'||x'|)
        largest = float(np.abs(query).max())
        if largest == 0:
            return None
        query_scale = 127.0 / largest
        codes = np.rint(query * np.float32(query_scale))
        decoded = codes / np.float32(query_scale)
        decoded_norm = float(np.linalg.norm(decoded))
        slack = (
            float(np.linalg.norm(query - decoded)) * self._max_norm
            + decoded_norm * self._max_err
            + len(query) * 2.0**-24 * decoded_norm * (self._max_norm + self._max_err)
        )
        unit = 1.0 / (query_scale * self._scale)  # coarse scores back in cosine units
        while wanted < rows // 4:
            scores, found = self._coarse.search(codes[None, :], wanted, params=params)
            floor = float(scores[0][-1]) * unit  # no row left out scores above this..
            keep = found[0] >= 0
            complete = int(keep.sum()) < wanted  # every allowed row is a candidate
            if exclude is not None:
                keep &= found[0] != exclude
            found, coarse = found[0][keep], scores[0][keep] * unit
            if len(found) < k:
                return None
            best, exact = self._rank_candidates(found, coarse, query, k, slack)
            if complete or float(exact[-1]) > floor + slack + MARGIN:  # ..+ the slack
                return best, exact
            wanted *= 4
        return None
