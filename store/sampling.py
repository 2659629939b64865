"""Reproducible, nested, stratified sampling of document ids.

It lives in the store layer because both ingest (what to embed) and analyze (what
to cluster) select documents the same way, and analyze must never import ingest.
"""

from __future__ import annotations

import hashlib


def sample_rank(doc_id: str, seed: int) -> bytes:
    """A seeded pseudo-random rank that depends on nothing but the id and the seed.

    The posts of another newsgroups cleaning (`newsgroups-sklearn/...`) rank like the
    same posts' notebook ids, so a sample picks the same posts whatever the cleaning.
    """
    if doc_id.startswith("newsgroups-"):
        doc_id = "newsgroups/" + doc_id.split("/", 1)[1]
    return hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()


def stratified_sample(ids_by_label: dict[str, list[str]], per_class: int, seed: int) -> set[str]:
    """The `per_class` lowest-ranked ids of each label.

    Ranking by a seeded hash of the id (not by shuffling the population) makes samples
    nested (a bigger N keeps the smaller sample) and population-independent: sampling
    150 per class from the archive or from a store holding 155 per class of it picks the
    same 150 posts, so `analyze --per-class 150` finds exactly what ingest embedded.
    """
    chosen: set[str] = set()
    for ids in ids_by_label.values():
        chosen.update(sorted(ids, key=lambda doc_id: sample_rank(doc_id, seed))[:per_class])
    return chosen
