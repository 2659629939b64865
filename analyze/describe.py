"""Naming clusters without labels: distinctive terms and the most central documents."""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from typing import Any

import numpy as np

from ..store.neighbours import snippet
from ..store.selection import NO_LABEL
from ..store.vector_memory import unit_rows
from .cluster import _sums

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
_HAS_CJK = re.compile(f"[{_CJK}]")
_TERM = re.compile(TOKEN_PATTERN)
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
    TOKEN_PATTERN), and character bigrams of CJK runs. A text with no CJK character
    (most) is one C-level findall: the same terms, ~10x faster than the word loop."""
    if not _HAS_CJK.search(text):
        return _TERM.findall(text)
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


class TermCounts:
    """Each document's term counts, kept by its text's digest for the life of the process.

    c-TF-IDF needs every member's terms; tokenizing is most of its cost (about 2 s for
    11,314 posts here) and a text's terms never change. So an update, a second analysis
    of the same documents, or a service's next analysis tokenizes only the texts it has
    not seen. At most MAX_DOCUMENTS are kept (then it starts afresh: ~1 KB each, columns
    and counts as int32); the vocabulary is shared (term -> column)."""

    MAX_DOCUMENTS = 100_000

    def __init__(self, max_documents: int = MAX_DOCUMENTS) -> None:
        self.max_documents = max_documents
        self._lock = threading.Lock()
        self._counts: dict[bytes, np.ndarray] = {}  # digest -> [columns..., counts...]
        self._vocabulary: dict[str, int] = {}
        self._stop: frozenset[str] | None = None
        self.generation = 0  # moves when the kept counts are dropped (columns renumbered)

    def _stop_words(self) -> frozenset[str]:
        if self._stop is None:
            from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

            self._stop = frozenset(ENGLISH_STOP_WORDS | EXTRA_STOP_WORDS)
        return self._stop

    def of(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, counts) of a text's terms: header lines and quotes dropped
        (`term_text`), lowercased, `terms_of`, stop words left out."""
        key = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        found = self._counts.get(key)
        if found is None:
            stop = self._stop_words()
            counted = Counter(t for t in terms_of(term_text(text).lower()) if t not in stop)
            with self._lock:
                if len(self._counts) >= self.max_documents:
                    self._counts.clear()
                    self._vocabulary.clear()
                    self.generation += 1
                vocabulary = self._vocabulary
                found = np.fromiter(
                    (vocabulary.setdefault(t, len(vocabulary)) for t in counted),
                    dtype=np.int32, count=len(counted),
                )  # fmt: skip
                found = np.concatenate([found, np.fromiter(counted.values(), np.int32)])
                self._counts[key] = found
        half = len(found) // 2
        return found[:half], found[half:]

    def terms(self) -> np.ndarray:
        """Every column's term (an object array, column order)."""
        with self._lock:
            return np.array(list(self._vocabulary), dtype=object)


TERM_COUNTS = TermCounts()


def top_terms(
    cluster_labels: np.ndarray, texts: list[str], clusters: list[int]
) -> dict[int, list[str]]:
    """Class-based TF-IDF: each cluster's texts counted as one document, then TF-IDF.

    A term scores high when it is frequent in one cluster and rare in the others. The
    weights are scikit-learn's TfidfVectorizer(sublinear_tf=True) on the clusters'
    joined texts (1 + ln tf, smooth idf), computed from each text's cached counts; ties
    go to the term first in alphabetical order.
    """
    import scipy.sparse as sp

    position = {k: i for i, k in enumerate(clusters)}
    counter = TERM_COUNTS
    generation = counter.generation
    counted = [counter.of(t) for t in texts]
    if counter.generation != generation:  # it started afresh meanwhile (too many texts)
        counter = TermCounts(len(texts) + 1)  # one numbering: these texts on their own
        counted = [counter.of(t) for t in texts]
    terms = counter.terms()  # after counting: every column is named
    rows = np.fromiter((position.get(int(c), -1) for c in cluster_labels), np.int64, len(texts))
    lengths = np.array([len(c[0]) for c in counted], dtype=np.int64)
    keep = np.repeat(rows >= 0, lengths)
    columns = np.concatenate([c[0] for c in counted]) if counted else np.empty(0, np.int32)
    counts = np.concatenate([c[1] for c in counted]) if counted else np.empty(0, np.int32)
    tf = sp.csr_matrix(
        (counts[keep].astype(np.float64), (np.repeat(rows, lengths)[keep], columns[keep])),
        shape=(len(clusters), len(terms)),
    )  # duplicates (one term in several texts of a cluster) are summed
    tf.sum_duplicates()
    df = np.bincount(tf.indices, minlength=len(terms)).astype(np.float64)
    idf = np.log((len(clusters) + 1) / (df + 1)) + 1
    result = {}
    for row, k in enumerate(clusters):
        cols = tf.indices[tf.indptr[row] : tf.indptr[row + 1]]
        weights = (np.log(tf.data[tf.indptr[row] : tf.indptr[row + 1]]) + 1) * idf[cols]
        if len(weights) > TOP_TERMS:  # only the best and their ties are sorted by name
            floor = np.partition(weights, len(weights) - TOP_TERMS)[len(weights) - TOP_TERMS]
            best = np.flatnonzero(weights >= floor)
            cols, weights = cols[best], weights[best]
        order = np.lexsort((terms[cols], -weights))[:TOP_TERMS]
        result[k] = [str(terms[cols[i]]) for i in order if weights[i] > 0]
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
    # every cluster's centroid in one sparse product, every row's similarity to its own
    # in one n x clusters product: no copy of a cluster's rows
    position = np.searchsorted(clusters, cluster_labels)
    centroids = unit_rows(_sums(vectors, position, len(clusters)).astype(np.float32))
    own = (vectors @ centroids.T)[np.arange(len(position)), position]
    for index, k in enumerate(clusters):
        rows = np.flatnonzero(position == index)
        similarity = own[rows]
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
                        "similarity": round(float(own[row]), 6),
                        "snippet": snippet(texts[row]),
                    }
                    for row in nearest
                ],
            }
        )
    return described
