"""Builders several test files share: corpora with known groups written straight into a
real store, a tiny 20 Newsgroups archive. Fixtures live in conftest.py; these are plain
functions a test calls with its own store or folder."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from embedlab.store import Document, Space, Store

SPACE = Space("fake", "fake-model", "none", 16)

# -- three groups of documents around known centres (analysis tests) ------------------------

WORDS = {
    "space": "rocket orbit launch shuttle",
    "med": "doctor patient disease treatment",
    "crypt": "encryption key cipher privacy",
}


def grouped_corpus(store: Store, per_group: int = 30, labelled: bool = True, space: Space = SPACE):
    """`per_group` documents in each of WORDS' three groups, their vectors near one centre
    per group, written into `store` under `space`; the documents are returned."""
    rng = np.random.default_rng(0)
    centres = {g: rng.normal(size=space.dims) * 3 for g in WORDS}
    docs, vectors = [], []
    for group, words in WORDS.items():
        for i in range(per_group):
            text = f"{words} note {i} " + " ".join(rng.choice(words.split(), 3))
            docs.append(
                Document(f"syn/{group}/{i:03d}", text, "synthetic", group if labelled else None)
            )
            vectors.append(centres[group] + rng.normal(size=space.dims))
    vectors = np.array(vectors, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    store.collection(space, create=True).write(docs, vectors, [False] * len(docs))
    return docs


# -- the same three groups, written in slices (update tests) --------------------------------

GROUPS = WORDS
CENTRES = {g: np.random.default_rng(7).normal(size=(3, 16))[i] * 3 for i, g in enumerate(GROUPS)}


def docs_for(group: str, start: int, n: int, seed: int = 0):
    """Documents `start`..`start+n` of `group` and their unit vectors (16 dims)."""
    rng = np.random.default_rng(seed * 1000 + start + len(group))
    words = GROUPS[group]
    docs, vectors = [], []
    for i in range(start, start + n):
        text = f"{words} note {i} " + " ".join(rng.choice(words.split(), 3))
        docs.append(Document(f"syn/{group}/{i:03d}", text, "synthetic", group))
        vectors.append(CENTRES[group] + rng.normal(size=16))
    vectors = np.array(vectors, dtype=np.float32)
    return docs, vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def write(store: Store, group: str, start: int, n: int, seed: int = 0):
    """docs_for(...) written into `store` under SPACE."""
    docs, vectors = docs_for(group, start, n, seed)
    store.collection(SPACE, create=True).write(docs, vectors, [False] * len(docs))
    return docs, vectors


# -- a tiny 20 Newsgroups archive ------------------------------------------------------------

POST = (
    "From: jdoe@cs.example.edu (John Doe)\nSubject: Re: orbits\n"
    "Organization: Example\n\nThe shuttle orbit (low) decays. Mail me at x@y.org\n"
)


def make_newsgroups(tmp_path: Path, per_group: int = 6) -> Path:
    """A tiny bydate-layout archive: 3 groups x per_group posts in train, 2 in test."""
    path = tmp_path / "20news-bydate.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for subset, count in (("train", per_group), ("test", 2)):
            for group in ("sci.space", "sci.med", "rec.autos"):
                for n in range(count):
                    data = f"{POST}{group} post {n} in {subset}\n".encode("latin-1")
                    info = tarfile.TarInfo(f"20news-bydate-{subset}/{group}/{1000 + n}")
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
    return path
