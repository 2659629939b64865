"""Comparing two embedding spaces on the documents both hold.

"Is 768 dims as good as 3072 for my corpus? Is the offline model good enough?" is
answered in the original spaces, not on 2-D pictures: how far each document keeps its
nearest neighbours (exact Jaccard@k), how far two clusterings at the same k agree
(ARI, NMI), and, with labels, each space's evaluation side by side. The two maps are
drawn aligned (Procrustes), so the same document sits in the same place where it can.

Like `run.py`, nothing here can embed: both corpora come out of the store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..errors import InvalidRequest
from ..options import NEIGHBOURS
from ..store import Space, Store
from .cluster import cluster
from .comparison import Comparison
from .evaluate import evaluate
from .knn import CHUNK_ROWS as CHUNK_ROWS  # re-exported: its home is knn.py now
from .knn import nearest_rows
from .reduce import map_key, reduce_2d
from .run import MapCache
from .select import AnalyzeError, Corpus, Selection, select_ids
from .threads import sized_threads

SCORES = ("hungarian_accuracy", "ari", "nmi", "silhouette")  # higher is better, each
MOST_DIFFERENT = 10
STAGES = ("neighbours", "cluster", "map", "evaluate")


@dataclass
class CompareOptions:
    k: int = 4
    neighbours: int = NEIGHBOURS
    reduce: str = "tsne"
    seed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def checked(
        cls, k: int | str = 4, neighbours: int = NEIGHBOURS, reduce: str = "tsne", seed: int = 0
    ) -> CompareOptions:
        """Every comparison option validated in one place (options.COMPARE, the table
        the CLI's and the service's declarations are built from)."""
        from ..options import COMPARE, validate

        v = validate(COMPARE, dict(k=k, neighbours=neighbours, reduce=reduce, seed=seed))
        return cls(v["k"], v["neighbours"], v["reduce"], v["seed"])


@dataclass
class Shared:
    """The documents two spaces both hold, after the selection, and what was left out.

    A document is held by both when B has the same id with the same text, or, failing
    that, the same text under another id (your own vectors ingested under another
    prefix): `ids_b` is B's id of each of `ids` (A's), `by_content` how many were paired
    by their text alone."""

    ids: list[str]
    selected_a: int  # documents of A matching the selection's globs
    selected_b: int
    only_a: int  # selected in A, with no partner in B (by id or by text)
    only_b: int
    text_differs: int  # same id in both, another text in each, and no partner by text
    label_differs: int  # same text, another label (A's is used)
    ids_b: list[str] | None = None  # B's id of each of `ids` (None: the same ids)
    by_content: int = 0  # pairs whose ids differ: paired by the same text

    def as_dict(self) -> dict[str, int]:
        return {
            "compared": len(self.ids),
            "selected_a": self.selected_a,
            "selected_b": self.selected_b,
            "only_in_a": self.only_a,
            "only_in_b": self.only_b,
            "text_differs": self.text_differs,
            "label_differs": self.label_differs,
            "paired_by_content": self.by_content,
        }


def pair_documents(
    a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]
) -> tuple[dict[str, str], int]:
    """A's id -> B's id of each document both hold: by id where the text is the same,
    then by content hash (the same text) among the documents left on both sides, one to
    one in id order (a text held twice on one side pairs as often as the other side
    holds it too). Returns the pairs and how many were paired by content."""
    pairs = {
        i: i
        for i in sorted(a.keys() & b.keys())
        if a[i].get("content_hash") == b[i].get("content_hash")
    }
    paired_b = set(pairs.values())
    left_b: dict[str, list[str]] = {}
    for i in sorted(b.keys() - paired_b):
        digest = b[i].get("content_hash")
        if digest:
            left_b.setdefault(digest, []).append(i)
    by_content = 0
    for i in sorted(a.keys() - pairs.keys()):
        waiting = left_b.get(a[i].get("content_hash") or "")
        if waiting:
            pairs[i] = waiting.pop(0)
            by_content += 1
    return pairs, by_content


def shared_ids(store: Store, space_a: Space, space_b: Space, selection: Selection) -> Shared:
    """Documents both spaces hold (same id and text, else the same text under another
    id: pair_documents), matching the selection's globs, then sampled (per class, limit)
    among those, so both sides always see the same rows.

    Reads metadata only. Refuses, saying why, when no document is shared.
    """
    globs = selection.only_globs()
    metas = {}
    for space in (space_a, space_b):
        collection = store.collection(space)
        records = collection.iter_metadata() if collection is not None else iter(())
        metas[space] = dict(records)
    kept = {}
    for space in (space_a, space_b):
        try:
            chosen = select_ids(store, space, globs, metas[space].items())
        except AnalyzeError:
            chosen = []
        kept[space] = {i: metas[space][i] for i in chosen}
    a, b = kept[space_a], kept[space_b]
    pairs, by_content = pair_documents(a, b)
    paired_b = set(pairs.values())
    differs = {i for i in a.keys() & b.keys() if i not in pairs and i not in paired_b}
    counts = dict(
        selected_a=len(a),
        selected_b=len(b),
        only_a=len(a.keys() - pairs.keys() - differs),
        only_b=len(b.keys() - paired_b - differs),
        text_differs=len(differs),
    )
    if not pairs:
        raise AnalyzeError(
            f"the two spaces hold no document in common: {counts['selected_a']} selected in "
            f"{space_a.describe()}, {counts['selected_b']} in {space_b.describe()}, "
            f"{len(a.keys() & b.keys())} shared ids, {counts['text_differs']} of them with "
            "another text, "
            "and no text held by both under other ids. "
            "Ingest the same input into both (newsgroups ids depend on --clean: give both "
            "the same --clean), and check --labels/--source"
        )
    ids = select_ids(store, space_a, selection, ((i, a[i]) for i in sorted(pairs)))
    ids_b = [pairs[i] for i in ids]
    label_differs = sum(1 for i, j in zip(ids, ids_b) if a[i].get("label") != b[j].get("label"))
    sampled_by_content = sum(1 for i, j in zip(ids, ids_b) if i != j)
    return Shared(
        ids,
        label_differs=label_differs,
        ids_b=None if not by_content else ids_b,
        by_content=sampled_by_content,
        **counts,
    )


# -- neighbourhoods ------------------------------------------------------------------------


def jaccard(rows_a: np.ndarray, rows_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Jaccard index, shared count) of each row's two neighbour sets (sets of equal size)."""
    m = rows_a.shape[1]
    both = np.sort(np.concatenate([rows_a, rows_b], axis=1), axis=1)
    shared = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return shared / (2 * m - shared), shared


def crossed_similarity(
    a: np.ndarray, b: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray
) -> np.ndarray:
    """Per document: how similar its neighbours in one space are to it in the other (the
    mean cosine of its A-neighbours in B and of its B-neighbours in A). Among documents
    sharing no neighbour, the lowest moved furthest."""
    total = np.zeros(len(a), dtype=np.float64)
    for j in range(rows_a.shape[1]):  # one column at a time: n x dims, not n x k x dims
        total += np.einsum("nd,nd->n", b, b[rows_a[:, j]])
        total += np.einsum("nd,nd->n", a, a[rows_b[:, j]])
    return total / (2 * rows_a.shape[1])


def chance_jaccard(n: int, m: int) -> float:
    """The expected Jaccard of two random m-sets out of the n - 1 other documents."""
    if n <= 1 or m == 0:
        return 0.0
    expected_shared = m * m / (n - 1)
    return expected_shared / (2 * m - expected_shared)


# -- maps ----------------------------------------------------------------------------------


def align(coords_a: np.ndarray, coords_b: np.ndarray) -> tuple[np.ndarray, float | None]:
    """(map B rotated or reflected onto map A, at A's size and centre; Procrustes disparity).

    B keeps its own shape: only rotation, reflection, one overall scale and a shift are
    applied (the least-squares scale would shrink an unrelated map to a dot). The
    disparity is scipy's: the sum of squared differences once both maps are centred,
    scaled to unit size and B is fitted onto A; 0 for the same layout, near 1 for
    unrelated ones. None when a map has no spread (fewer than 3 documents).
    """
    from scipy.linalg import orthogonal_procrustes
    from scipy.spatial import procrustes

    a = np.asarray(coords_a, dtype=np.float64)
    b = np.asarray(coords_b, dtype=np.float64)
    centre_a, centre_b = a.mean(axis=0), b.mean(axis=0)
    size_a, size_b = np.linalg.norm(a - centre_a), np.linalg.norm(b - centre_b)
    if len(a) < 3 or size_a == 0 or size_b == 0:
        return b.astype(np.float32), None
    unit_a, unit_b = (a - centre_a) / size_a, (b - centre_b) / size_b
    rotation, _ = orthogonal_procrustes(unit_b, unit_a)
    disparity = procrustes(a, b)[2]
    return (unit_b @ rotation * size_a + centre_a).astype(np.float32), float(disparity)


# -- the comparison ------------------------------------------------------------------------


@sized_threads
def compare_corpora(
    corpus_a: Corpus,
    corpus_b: Corpus,
    options: CompareOptions,
    shared: Shared | None = None,
    map_caches: tuple[MapCache | None, MapCache | None] = (None, None),
    on_stage: Callable[[str, int], None] | None = None,
    selection: dict[str, Any] | None = None,
) -> Comparison:
    """Compare two corpora of the same documents (same ids, same row order).

    `on_stage(name, index)` is called as each of STAGES starts.
    """
    from sklearn import metrics

    if corpus_a.ids != corpus_b.ids:
        raise InvalidRequest("both corpora must hold the same documents in the same order")
    n = len(corpus_a.ids)
    if n < 2:
        raise InvalidRequest(
            f"a comparison needs at least 2 documents both spaces hold; there is {n}"
        )
    stage = on_stage or (lambda _name, _index: None)
    timings: dict[str, float] = {}
    notes: list[str] = []

    stage("neighbours", 0)
    started = time.perf_counter()
    m = min(options.neighbours, n - 1)
    if m < options.neighbours:
        notes.append(f"{n} documents: neighbourhoods of {m}, not {options.neighbours}")
    rows_a = nearest_rows(corpus_a.vectors, m)
    rows_b = nearest_rows(corpus_b.vectors, m)
    index, shared_count = jaccard(rows_a, rows_b)
    crossed = crossed_similarity(corpus_a.vectors, corpus_b.vectors, rows_a, rows_b)
    timings["neighbours"] = time.perf_counter() - started

    stage("cluster", 1)
    started = time.perf_counter()
    fit_a = cluster(corpus_a.vectors, "kmeans", options.k, options.seed)
    fit_b = cluster(corpus_b.vectors, "kmeans", options.k, options.seed)
    timings["cluster"] = time.perf_counter() - started

    stage("map", 2)
    started = time.perf_counter()
    coords_a, note_a, cached_a = _map(corpus_a, options, map_caches[0])
    coords_b, note_b, cached_b = _map(corpus_b, options, map_caches[1])
    aligned_b, disparity = align(coords_a, coords_b)
    timings["map"] = time.perf_counter() - started

    stage("evaluate", 3)
    started = time.perf_counter()
    eval_a = evaluate(corpus_a.vectors, fit_a.labels, corpus_a.labels, options.seed)
    eval_b = evaluate(corpus_b.vectors, fit_b.labels, corpus_a.labels, options.seed)
    timings["evaluate"] = time.perf_counter() - started

    summary = {
        "neighbourhoods": _neighbourhood_summary(index, shared_count, m, n),
        "clusterings": {
            "algorithm": "kmeans",
            "method": fit_a.params.get("method"),
            "k": options.k,
            "seed": options.seed,
            "ari": round(float(metrics.adjusted_rand_score(fit_a.labels, fit_b.labels)), 6),
            "nmi": round(
                float(metrics.normalized_mutual_info_score(fit_a.labels, fit_b.labels)), 6
            ),
        },
        "evaluation": _evaluation(eval_a, eval_b),
        "maps": {
            "a": note_a,
            "b": note_b,
            "aligned": "b rotated or reflected onto a, at a's size and centre",
            "procrustes_disparity": None if disparity is None else round(disparity, 6),
            "reused": {"a": cached_a, "b": cached_b},
        },
    }
    if shared is not None and shared.by_content:
        notes.append(
            f"{shared.by_content} of the {n} documents were paired by their text (the same "
            f"text under another id in {corpus_b.space.describe()}); A's ids are shown"
        )
    if shared is not None and shared.label_differs:
        notes.append(
            f"{shared.label_differs} documents carry another label in "
            f"{corpus_b.space.describe()}; the labels of {corpus_a.space.describe()} are used"
        )
    return Comparison(
        space_a=corpus_a.space,
        space_b=corpus_b.space,
        ids=list(corpus_a.ids),
        labels=list(corpus_a.labels),
        snippets=[_snippet(t) for t in corpus_a.texts],
        jaccard=index.astype(np.float32),
        shared=shared_count.astype(np.int32),
        crossed=crossed.astype(np.float32),
        neighbours_a=rows_a,
        neighbours_b=rows_b,
        clusters_a=np.asarray(fit_a.labels, dtype=int),
        clusters_b=np.asarray(fit_b.labels, dtype=int),
        coords_a=np.asarray(coords_a, dtype=np.float32),
        coords_b=aligned_b,
        summary=summary,
        documents=(shared.as_dict() if shared is not None else {"compared": n}),
        options=options.as_dict(),
        selection=selection or {},
        notes=notes,
        timings=timings,
    )


def _map(
    corpus: Corpus, options: CompareOptions, cache: MapCache | None
) -> tuple[np.ndarray, str, bool]:
    """The corpus's map, from the analyses' map cache when one was drawn before."""
    key = map_key(corpus.space.collection_name, corpus.hashes, options.reduce, options.seed)
    found = cache.get(key) if cache is not None else None
    if found is not None:
        return np.asarray(found[0], dtype=np.float32), found[1], True
    coords, note = reduce_2d(corpus.vectors, options.reduce, options.seed)
    if cache is not None:
        cache.put(key, np.asarray(coords, dtype=np.float32), note)
    return np.asarray(coords, dtype=np.float32), note, False


def _neighbourhood_summary(index: np.ndarray, shared: np.ndarray, m: int, n: int) -> dict[str, Any]:
    quantiles = np.quantile(index, [0.1, 0.25, 0.5, 0.75, 0.9])
    counts = np.bincount(shared, minlength=m + 1)
    return {
        "k": m,
        "exact": True,
        "jaccard_mean": round(float(index.mean()), 6),
        "jaccard_median": round(float(quantiles[2]), 6),
        "jaccard_quantiles": {
            name: round(float(q), 6)
            for name, q in zip(("p10", "p25", "p50", "p75", "p90"), quantiles)
        },
        "shared_mean": round(float(shared.mean()), 6),
        "shared_histogram": [int(c) for c in counts],  # documents sharing 0, 1, ... k
        "identical_share": round(float((shared == m).mean()), 6),
        "disjoint_share": round(float((shared == 0).mean()), 6),
        "chance_jaccard": round(chance_jaccard(n, m), 6),
    }


def winner(a: float | None, b: float | None, digits: int = 3) -> str | None:
    """Which side scores higher ("a", "b", or "tie" when equal at `digits`); None without
    both scores."""
    if a is None or b is None:
        return None
    a, b = round(a, digits), round(b, digits)
    return "tie" if a == b else ("a" if a > b else "b")


def _evaluation(eval_a: dict[str, Any], eval_b: dict[str, Any]) -> dict[str, Any]:
    """Each side's scores, and which space wins each (silhouette even without labels)."""
    result: dict[str, Any] = {}
    for side, found in (("a", eval_a), ("b", eval_b)):
        result[side] = {key: found.get(key) for key in SCORES}
        result[side]["per_class"] = found.get("per_class")
        result[side]["confusion"] = found.get("confusion")
    result["labelled"] = "per_class" in eval_a
    if not result["labelled"]:
        result["labels"] = eval_a.get("labels", "no labels: evaluation against labels skipped")
    result["winners"] = {
        key: winner(eval_a.get(key), eval_b.get(key))
        for key in SCORES
        if eval_a.get(key) is not None and eval_b.get(key) is not None
    }
    classes = []
    for name, row_a in (eval_a.get("per_class") or {}).items():
        row_b = eval_b["per_class"][name]
        classes.append(
            {
                "class": name,
                "size": row_a["size"],
                "share_a": row_a["share"],
                "share_b": row_b["share"],
                "winner": winner(row_a["share"], row_b["share"]),
            }
        )
    result["per_class"] = classes
    return result


def _snippet(text: str) -> str:
    from ..store.neighbours import snippet

    return snippet(text)
