"""Reproducible, nested, stratified sampling of document ids.

It lives in the store layer because both ingest (what to embed) and analyze (what
to cluster) select documents the same way, and analyze must never import ingest.
"""

from __future__ import annotations

import zlib

import numpy as np


def stratified_sample(ids_by_label: dict[str, list[str]], per_class: int, seed: int) -> set[str]:
    """Up to `per_class` ids from each label; nested: a bigger N keeps the smaller sample.

    Each label gets its own permutation of its sorted ids (seeded by `seed` and the
    label), and the first N are taken, so growing N only adds documents.
    """
    chosen: set[str] = set()
    for label, ids in ids_by_label.items():
        rng = np.random.default_rng([seed, zlib.crc32(label.encode())])
        ordered = sorted(ids)
        chosen.update(ordered[i] for i in rng.permutation(len(ordered))[:per_class])
    return chosen
