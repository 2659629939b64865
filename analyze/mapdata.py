"""One analysis as the browser map reads it: a small JSON head and a compact binary body.

The page must show 100,000 points within a second or two and ship at most 1.5 MB first,
so the points travel as raw little-endian arrays (float32 x, float32 y, then one label
code and one cluster code per point, uint8 when every category fits, uint16 otherwise);
ids, texts and neighbours are fetched after the points are drawn. The same head and body
are embedded (base64) in the self-contained `map.html`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..store.selection import NO_LABEL
from .evaluate import cluster_matches
from .knn import nearest_rows as exact_rows
from .records import space_dict

if TYPE_CHECKING:
    from .analysis import Analysis

NOISE = -1


def _code_dtype(*counts: int) -> np.dtype:
    """One byte per code while every category fits in one, else two."""
    return np.dtype("<u1") if max(counts, default=0) <= 256 else np.dtype("<u2")


def label_codes(analysis: Analysis) -> tuple[list[str], np.ndarray]:
    """Sorted label names (NO_LABEL last when some documents have none) and each point's
    index into them."""
    present = sorted({label for label in analysis.labels if label is not None})
    names = present + ([NO_LABEL] if any(x is None for x in analysis.labels) else [])
    index = {name: i for i, name in enumerate(names)}
    codes = np.array(
        [index[NO_LABEL if label is None else label] for label in analysis.labels], dtype=np.int64
    )
    return names, codes


def cluster_codes(analysis: Analysis) -> tuple[list[int], np.ndarray]:
    """Sorted cluster numbers (noise, -1, first when present) and each point's index."""
    numbers = sorted({int(c) for c in analysis.cluster_labels.tolist()})
    index = {c: i for i, c in enumerate(numbers)}
    codes = np.array([index[int(c)] for c in analysis.cluster_labels.tolist()], dtype=np.int64)
    return numbers, codes


def map_head(analysis: Analysis) -> dict[str, Any]:
    """Everything but the points: categories with counts and names, bounds, metrics."""
    labels, label_code = label_codes(analysis)
    clusters, cluster_code = cluster_codes(analysis)
    dtype = _code_dtype(len(labels), len(clusters))
    coords = np.asarray(analysis.coords, dtype=np.float32).reshape(-1, 2)
    described = {int(c["cluster"]): c for c in analysis.clusters}
    matches = cluster_matches(
        analysis.cluster_labels,
        list(analysis.labels),
        (analysis.metrics or {}).get("cluster_to_class") or {},
    )
    cluster_rows = []
    for code, number in enumerate(clusters):
        members = coords[cluster_code == code]
        found = described.get(number, {})
        terms = list(found.get("terms") or [])
        name = found.get("name") or (
            "noise" if number == NOISE else ", ".join(terms[:3]) or f"cluster {number}"
        )
        cluster_rows.append(
            {
                "code": code,
                "cluster": number,
                "name": name,
                "name_source": found.get("name_source", "terms"),
                "size": int(len(members)),
                "terms": terms,
                "labels": found.get("labels") or {},
                # its matched class, the share of its documents there, and whether that
                # is enough to wear the class's colour (None: noise, unmatched, no labels)
                "match": matches.get(number),
                "representatives": found.get("representatives") or [],
                "at": np.median(members, axis=0).round(5).tolist() if len(members) else None,
            }
        )
    label_counts = np.bincount(label_code, minlength=len(labels)).tolist()
    space = space_dict(analysis.space)
    space["name"] = f"{space['provider']}:{space['model']}:{space['dims']}"
    metrics = analysis.metrics or {}
    if len(coords):
        bounds = [*coords.min(axis=0).tolist(), *coords.max(axis=0).tolist()]
    else:
        bounds = [0.0, 0.0, 1.0, 1.0]
    return {
        "id": analysis.id,
        "created": analysis.created,
        "space": space,
        "documents": len(analysis.ids),
        "selection": analysis.selection,
        "options": analysis.options,
        "notes": list(analysis.notes),
        "map": (metrics.get("params") or {}).get("map"),
        # updates (analyze/update.py): the analysis this one updates and the positions of
        # the documents it placed (a live map marks them)
        "parent": getattr(analysis, "parent", None),
        "placed": _positions(analysis.ids, getattr(analysis, "placed", None) or []),
        "encoding": {
            "layout": ["x:float32", "y:float32", f"label:{dtype.name}", f"cluster:{dtype.name}"],
            "code": dtype.name,
            "bytes": points_size(len(analysis.ids), dtype),
        },
        "bounds": bounds,
        "labels": [
            {"code": i, "name": name, "size": int(n)}
            for i, (name, n) in enumerate(zip(labels, label_counts))
        ],
        "has_labels": analysis.has_labels,
        "clusters": cluster_rows,
        "metrics": {
            key: metrics.get(key)
            for key in (
                "hungarian_accuracy",
                "ari",
                "nmi",
                "silhouette",
                "per_class",
                "confusion",
                "mean_majority_share",
                "coverage",
                "noise",
            )
            if metrics.get(key) is not None
        },
    }


def _positions(ids: list[str], wanted: list[str]) -> list[int]:
    if not wanted:
        return []
    wanted_set = set(wanted)
    return [i for i, doc_id in enumerate(ids) if doc_id in wanted_set]


def points_size(count: int, dtype: np.dtype) -> int:
    """Bytes of `map_points` for `count` points: two float32 and two codes each."""
    return count * (8 + 2 * dtype.itemsize)


def map_points(analysis: Analysis) -> bytes:
    """x[N] float32, y[N] float32, label[N], cluster[N] (codes as in map_head)."""
    labels, label_code = label_codes(analysis)
    clusters, cluster_code = cluster_codes(analysis)
    dtype = _code_dtype(len(labels), len(clusters))
    coords = np.asarray(analysis.coords, dtype="<f4").reshape(-1, 2)
    return b"".join(
        [
            np.ascontiguousarray(coords[:, 0]).tobytes(),
            np.ascontiguousarray(coords[:, 1]).tobytes(),
            label_code.astype(dtype).tobytes(),
            cluster_code.astype(dtype).tobytes(),
        ]
    )


# Stored metadata the map does not offer to colour by: the label has its own mode; the
# rest is bookkeeping (a hash, a length, a flag, when it was written).
INTERNAL_FIELDS = frozenset({"label", "content_hash", "chars", "truncated", "written"})
FIELD_VALUES = 64  # past this many values a field shows its biggest 63 and "other"
MISSING = "(none)"


def map_fields(ids: list[str], metadata: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each metadata field the documents carry (source, and their own fields, stored
    under USER_PREFIX and named without it), as the map colours by it: its values (name,
    count; the most common first, "(none)" for documents without one, "other" for the
    values past FIELD_VALUES - 1) and each point's code into them, base64 little-endian
    (`encoding`), in the order of `ids`. `metadata` is the stored metadata by id; a
    document no longer stored has none."""
    import base64
    from collections import Counter

    from ..store.documents import USER_PREFIX

    rows = [metadata.get(doc_id) or {} for doc_id in ids]
    keys = {key for row in rows for key in row} - INTERNAL_FIELDS
    # a document's own fields go by their names; one named like another field (source)
    # keeps its prefix, so neither hides the other
    shown = {
        key: key[len(USER_PREFIX) :]
        if key.startswith(USER_PREFIX) and key[len(USER_PREFIX) :] not in keys
        else key
        for key in keys
    }
    fields = []
    for key, name in sorted(shown.items(), key=lambda kv: kv[1]):
        values = [MISSING if row.get(key) is None else str(row[key]) for row in rows]
        counts = Counter(values)
        ranked = sorted(counts, key=lambda v: (v == MISSING, -counts[v], v))
        if len(ranked) > FIELD_VALUES:
            kept, rest = ranked[: FIELD_VALUES - 1], ranked[FIELD_VALUES - 1 :]
            other = f"other ({len(rest)} values)"
            folded = set(rest)
            values = [other if v in folded else v for v in values]
            counts = Counter(values)
            ranked = kept + [other]
        index = {value: code for code, value in enumerate(ranked)}
        codes = np.array([index[v] for v in values], dtype="<u1")
        fields.append(
            {
                "name": name,
                "values": [{"code": i, "name": v, "size": counts[v]} for i, v in enumerate(ranked)],
                "encoding": "uint8",
                "codes": base64.b64encode(codes.tobytes()).decode("ascii"),
            }
        )
    return {"documents": len(ids), "fields": fields}


def find_in(ids: list[str], texts: list[str], query: str, limit: int = 1000) -> list[int]:
    """Indices of the documents whose id contains `query`, or whose text contains every
    word of it (case-insensitive, in any order); an exact id first."""
    needle = query.strip().casefold()
    words = needle.split()
    if not words:
        return []
    exact = [i for i, doc_id in enumerate(ids) if doc_id == query.strip()]
    found = exact[:]
    for i, (doc_id, text) in enumerate(zip(ids, texts)):
        if len(found) >= limit:
            break
        if i in exact:
            continue
        folded = text.casefold()
        if needle in doc_id.casefold() or all(word in folded for word in words):
            found.append(i)
    return found


def nearest_rows(
    vectors: np.ndarray, rows: np.ndarray, total: int, k: int, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest neighbours among unit `vectors` (cosine), excluding each point
    itself, ties to the lower row as in `compare` (so map.html lists what the library
    does). `rows[j]` is vector j's position among `total` points; positions without a
    vector get -1 rows. Returns (positions int32 total x k, similarities float32)."""
    positions = np.full((total, k), -1, dtype=np.int32)
    similarities = np.zeros((total, k), dtype=np.float32)
    take = min(k, len(vectors) - 1)
    if take <= 0:
        return positions, similarities
    top = exact_rows(vectors, take)
    for start in range(0, len(vectors), chunk):
        block = top[start : start + chunk]
        sims = np.einsum("nd,nkd->nk", vectors[start : start + chunk], vectors[block])
        positions[rows[start : start + chunk], :take] = rows[block]
        similarities[rows[start : start + chunk], :take] = sims
    return positions, similarities
