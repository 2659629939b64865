"""Naming clusters without labels: distinctive terms and the most central documents."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..store.neighbours import snippet
from ..store.selection import NO_LABEL

TOP_TERMS = 10
REPRESENTATIVES = 3
# Words in any script, at least 3 letters, no digits or underscores ("café", "Überzahl",
# "космос" are terms; "3d", "__init__" are not).
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"
# Chinese, Japanese and Korean runs have no spaces between words: a whole sentence would
# be one "word". They are cut into overlapping character bigrams instead (the usual
# dictionary-free segmentation for CJK retrieval); bigrams of hiragana alone are mostly
# particles and endings (です, ます, して) and are dropped.
_CJK = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af\uff66-\uff9f"
_CJK_SPLIT = re.compile(f"([{_CJK}]+)")
_HIRAGANA = re.compile("^[\u3040-\u309f]+$")
_RUN = re.compile(r"(?u)\w+")
_LETTERS = re.compile(r"(?u)[^\W\d_]{3,}")
# Residual news headers (the notebook's cleaning keeps them) and quoting boilerplate:
# dropped before counting, so a cluster is not named after its posters' organisation.
_HEADER_LINE = re.compile(
    r"^\s*(?:organization|lines|nntp-posting-host|distribution|reply-to|keywords|summary|"
    r"article-i\.d|x-[\w-]+|expires|followup-to|message-id|references|sender|"
    r"in-reply-to|originator|news-software|path|newsgroups|date)\s*:.*$",
    re.IGNORECASE | re.MULTILINE,
)
_QUOTE_INTRO = re.compile(r"^.*\b(?:writes|wrote)\s*:\s*$|^\s*>.*$", re.IGNORECASE | re.MULTILINE)
# Frequent words that say nothing about a topic: newsgroup chatter, and the commonest
# function words of the languages that show up in Usenet and web corpora besides English.
EXTRA_STOP_WORDS = frozenset(
    """
    article writes wrote posting posted host university organization lines subject reply
    edu com net org gov don doesn didn isn wasn aren won just like know think does
    people use used using make way good time said say going really want need
    der die das und ist ich nicht ein eine einen dem den des mit sich auf für von sie
    wir ihr aber auch als wie noch nur oder wenn dass sind war hat bei aus zum zur
    een het van dat niet zijn wordt voor met ook maar als bij door nog wel naar deze
    les des une est pas que qui dans pour sur avec sont mais par plus ont cette aux
    los las una por con para como más pero sus esta este del entre cuando muy sin
    """.split()
)


def term_text(text: str) -> str:
    """What c-TF-IDF counts: the text without header lines and quoted replies."""
    return _QUOTE_INTRO.sub(" ", _HEADER_LINE.sub(" ", text))


def terms_of(text: str) -> list[str]:
    """The terms of a text: words of 3 letters or more in any spaced script (the
    TOKEN_PATTERN), and character bigrams of CJK runs."""
    terms: list[str] = []
    for match in _RUN.finditer(text):
        for part in _CJK_SPLIT.split(match[0]):
            if not part:
                continue
            if _CJK_SPLIT.fullmatch(part):
                bigrams = (part[i : i + 2] for i in range(len(part) - 1))
                terms += [b for b in bigrams if not _HIRAGANA.match(b)]
            elif _LETTERS.fullmatch(part):
                terms.append(part)
    return terms


def top_terms(
    cluster_labels: np.ndarray, texts: list[str], clusters: list[int]
) -> dict[int, list[str]]:
    """Class-based TF-IDF: each cluster's texts joined into one document, then TF-IDF.

    A term scores high when it is frequent in one cluster and rare in the others.
    """
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

    joined = [
        " ".join(term_text(t) for t, c in zip(texts, cluster_labels) if c == k) for k in clusters
    ]
    vectoriser = TfidfVectorizer(
        stop_words=sorted(ENGLISH_STOP_WORDS | EXTRA_STOP_WORDS),
        tokenizer=terms_of,
        token_pattern=None,
        sublinear_tf=True,
    )
    try:
        weights = vectoriser.fit_transform(joined).toarray()
    except ValueError:  # nothing but stop words
        return {k: [] for k in clusters}
    vocabulary = vectoriser.get_feature_names_out()
    result = {}
    for row, k in enumerate(clusters):
        order = np.lexsort((vocabulary, -weights[row]))[:TOP_TERMS]
        result[k] = [str(vocabulary[i]) for i in order if weights[row, i] > 0]
    return result


NAME_TERMS = 3  # terms in a cluster's default name
TERMS = "terms"  # the name_source of a name made of terms (a model's name says its model)


def terms_name(cluster: int, terms: list[str]) -> str:
    """The name a cluster has until a model names it: "noise", its first terms, or its
    number when it has no terms."""
    if cluster == -1:
        return "noise"
    return ", ".join(terms[:NAME_TERMS]) or f"cluster {cluster}"


def with_names(described: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every cluster with a name and a name_source (analyses stored before names had
    none: they get their terms' name)."""
    for info in described:
        if not info.get("name"):
            info["name"] = terms_name(int(info["cluster"]), list(info.get("terms") or []))
            info["name_source"] = TERMS
        info.setdefault("name_source", TERMS)
    return described


def describe_clusters(
    vectors: np.ndarray,
    cluster_labels: np.ndarray,
    ids: list[str],
    texts: list[str],
    labels: list[str | None],
) -> list[dict[str, Any]]:
    """Per cluster: size, label counts, top terms, a name (its terms' until a model names
    it), and the documents nearest its centroid."""
    clusters = sorted(set(cluster_labels.tolist()))
    terms = top_terms(cluster_labels, texts, clusters)
    described = []
    for k in clusters:
        rows = np.flatnonzero(cluster_labels == k)
        centroid = vectors[rows].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        similarity = vectors[rows] @ centroid
        nearest = rows[np.lexsort((rows, -similarity))[:REPRESENTATIVES]]
        label_counts: dict[str, int] = {}
        for row in rows:
            label = labels[row]
            key = label if label is not None else NO_LABEL
            label_counts[key] = label_counts.get(key, 0) + 1
        described.append(
            {
                "cluster": int(k),
                "size": int(len(rows)),
                "labels": dict(sorted(label_counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                "terms": terms[k],
                "name": terms_name(int(k), terms[k]),
                "name_source": TERMS,
                "representatives": [
                    {
                        "id": ids[row],
                        "label": labels[row],
                        "similarity": round(float(vectors[row] @ centroid), 6),
                        "snippet": snippet(texts[row]),
                    }
                    for row in nearest
                ],
            }
        )
    return described
