"""The Lab's reads for a reader at full speed: nearest neighbours by id, text or vector,
and what the map asks of an analysis (its texts, a search, each point's neighbours).

A part of the Lab (a mixin, like lab_naming): it answers from the vectors the Lab keeps in
memory where it keeps them, else from Chroma; a free text is embedded once (ingest.query)
and remembered. Nothing here writes to the store but the cost of such a query.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DocumentNotFound, InvalidRequest, NotFound
from .store.keys import content_hash, normalise_text
from .store.vector_memory import normalise_rows

if TYPE_CHECKING:
    import pandas as pd

    from .analyze.analysis import Analysis
    from .ingest.providers import Provider
    from .store import Space, Store
    from .store.cache import BoundedCache
    from .store.repositories import Repositories
    from .store.selection import Selection
    from .store.vector_memory import VectorMemory

    SpaceSpec = Space | str | None

ANALYSIS_CACHE = 8  # reopened analyses kept in memory (neighbours read their clusters)


class Lookups:
    """Neighbour lookups and the map's reads, over the Lab's store, memory and caches."""

    store: Store
    records: Repositories
    _memory: VectorMemory | None
    _writing: set[Space]
    _queries: BoundedCache[tuple[Space, str], np.ndarray]
    _analysis_texts: BoundedCache[str, list[str]]

    if TYPE_CHECKING:  # the Lab's own, which these reads use

        def space(self, space: SpaceSpec = None) -> Space: ...
        def provider(self, space: Space, timeout: float = 60.0) -> Provider: ...
        def analysis(self, analysis_id: str) -> Analysis: ...
        def _analysis_heads(self, collection: str) -> list[dict[str, Any]]: ...
        def _cluster_map(self, analysis: Analysis) -> dict[str, int]: ...

    # -- neighbours ------------------------------------------------------------------------

    def neighbours(
        self,
        id: str | None = None,  # noqa: A002
        *,
        text: str | None = None,
        vector: np.ndarray | Sequence[float] | None = None,
        k: int = 10,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        analysis: str | None = None,
        spend: bool = True,
        selection: Selection | None = None,
    ) -> pd.DataFrame:
        """Nearest documents (cosine) to a stored document, a free text, or a vector.

        Columns: rank, id, similarity, label, cluster, text; `.attrs["requests"]` says how
        many provider requests it cost (0 by id or vector, or for a text seen before).
        Clusters come from `analysis` (default: the space's latest analysis).
        `spend=False` refuses (Forbidden) a text that would need a provider request.
        `selection` (its labels, sources and space) stands for the filters.
        """
        if selection is not None:  # a selection stands for the filters
            labels, sources, _ = selection.filters("neighbours")
            space = space if selection.space is None else selection.space
        import pandas as pd

        hits, requests, chosen = self.neighbour_hits(
            id, text=text, vector=vector, k=k, labels=labels, sources=sources, space=space,
            analysis=analysis, spend=spend,
        )  # fmt: skip
        from .store.neighbours import NEIGHBOUR_COLUMNS

        frame = pd.DataFrame([h.row() for h in hits], columns=list(NEIGHBOUR_COLUMNS))
        frame.attrs["requests"] = requests
        frame.attrs["space"] = chosen.describe()
        return frame

    def neighbour_hits(
        self,
        id: str | None = None,  # noqa: A002
        *,
        text: str | None = None,
        vector: np.ndarray | Sequence[float] | None = None,
        k: int = 10,
        labels: Sequence[str] | str | None = None,
        sources: Sequence[str] | str | None = None,
        space: SpaceSpec = None,
        analysis: str | None = None,
        spend: bool = True,
    ) -> tuple[list[Any], int, Space]:
        """What `neighbours` returns, as (Neighbour rows, provider requests, space): the
        service's hot path, without building a DataFrame per request."""
        from .store.neighbours import as_neighbours, find_neighbours

        given = [
            name for name, v in (("id", id), ("text", text), ("vector", vector)) if v is not None
        ]
        if len(given) != 1:
            raise InvalidRequest("give exactly one of id, text or vector")
        from .options import NEIGHBOURS_OPTIONS, validate

        validate(NEIGHBOURS_OPTIONS, {"k": k})
        chosen = self.space(space)
        collection = self.store.collection(chosen)
        if collection is None:
            raise NotFound(f"the store has no {chosen.describe()}")
        requests = 0
        if id is not None:
            query = self._memory.vector(chosen, id) if self._memory is not None else None
            if query is None:
                found = collection.get_one(id)
                if found is None:
                    raise DocumentNotFound(f"no document {id!r} in {chosen.describe()}")
                query = found[0]
        elif text is not None:
            if not normalise_text(text):
                raise InvalidRequest("the query text is empty; give some words to search for")
            query = self._known_query(chosen, text)
            if query is None:
                from .ingest.query import query_vector

                query, spent = query_vector(
                    collection, text, lambda: self.provider(chosen), spend=spend
                )
                if spent:
                    self.records.costs.add(spent)
                requests = sum(e["requests"] for e in spent)
                self._remember_query(chosen, text, query)
        else:
            query = np.asarray(vector, dtype=np.float32).reshape(-1)
            if query.shape != (chosen.dims,) or not np.all(np.isfinite(query)):
                raise InvalidRequest(
                    f"the vector must have {chosen.dims} finite numbers ({chosen.describe()})"
                )
            norm = float(np.linalg.norm(query))
            if norm == 0:
                raise InvalidRequest("the vector is all zeros")
            query = query / norm
        clusters = self._clusters_of(chosen, analysis)
        held = None
        if self._memory is not None:
            busy = chosen in self._writing
            held = self._memory.neighbours(
                chosen, query, k, id, _list(labels), _list(sources), busy=busy
            )
        if held is not None:
            hits = as_neighbours(held, clusters)
        else:
            hits = find_neighbours(
                collection, query, k, id, _list(labels), _list(sources), clusters_of=clusters
            )
        return hits, requests, chosen

    def _known_query(self, space: Space, text: str) -> np.ndarray | None:
        """A query vector this service already has (asked before, or a held document's
        text): no Chroma read, so a text lookup costs what one by id does."""
        if self._memory is None:
            return None
        key = content_hash(normalise_text(text))
        found = self._queries.get((space, key))
        return found if found is not None else self._memory.vector_by_hash(space, key)

    def _remember_query(self, space: Space, text: str, vector: np.ndarray) -> None:
        if self._memory is None:
            return
        self._queries.put((space, content_hash(normalise_text(text))), vector, tags=(space,))

    def _clusters_of(self, space: Space, analysis_id: str | None):
        """Clusters from `analysis_id`, or from the newest analyses of the space that hold
        the documents (an analysis of another selection does not blank the column)."""
        if analysis_id:
            chosen = self.analysis(analysis_id)
            if chosen.space != space:
                raise InvalidRequest(f"analysis {analysis_id} is of {chosen.space.describe()}")
            candidates = [chosen]
        else:
            heads = self._analysis_heads(space.collection_name)
            candidates = [self.analysis(h["id"]) for h in heads[:ANALYSIS_CACHE]]
        maps = [self._cluster_map(a) for a in candidates]

        def clusters(ids: list[str]) -> dict[str, int]:
            for by_id in maps:  # newest first; the first that holds any of the ids
                if any(i in by_id for i in ids):
                    return {i: int(by_id[i]) for i in ids if i in by_id}
            return {}

        return clusters if maps else None

    # -- the map ---------------------------------------------------------------------------

    def analysis_texts(self, analysis_id: str) -> list[str]:
        """The texts of an analysis' documents, in its order ("" for one deleted since);
        the last few are kept, so a page searching as someone types reads Chroma once."""
        found = self._analysis_texts.get(analysis_id)
        if found is not None:
            return found
        generation = self._analysis_texts.generation  # a delete meanwhile: not kept
        analysis = self.analysis(analysis_id)
        texts = self.analysis_texts_of(analysis)
        self._analysis_texts.put(analysis_id, texts, tags=(analysis.space,), generation=generation)
        return texts

    def analysis_texts_of(self, analysis: Analysis) -> list[str]:
        """The texts of `analysis`' documents, read now ("" for one deleted since)."""
        collection = self.store.collection(analysis.space)
        if collection is None:
            return [""] * len(analysis.ids)
        return collection.records(analysis.ids)[1]

    def query_unavailable(self, space: SpaceSpec = None) -> str | None:
        """Why a free text cannot be embedded into the space here (None: it can)."""
        from .ingest.providers import query_unavailable

        return query_unavailable(self.space(space))

    def find(self, analysis_id: str, query: str, limit: int = 1000) -> list[int]:
        """Positions (in the analysis' order) of the documents whose id or text contains
        `query`, ignoring case; an exact id comes first. No embedding, no provider."""
        from .analyze.mapdata import find_in

        if not query.strip():
            raise InvalidRequest("give some words or an id to find")
        _check_positive(limit=limit)
        analysis = self.analysis(analysis_id)
        return find_in(analysis.ids, self.analysis_texts(analysis_id), query, limit)

    def map_fields(self, analysis_id: str) -> dict[str, Any]:
        """The metadata fields an analysis' documents carry, coded per point for the map
        to colour by (analyze.mapdata.map_fields); none when its space is gone."""
        from .analyze.mapdata import map_fields

        analysis = self.analysis(analysis_id)
        collection = self.store.collection(analysis.space)
        present = collection.metadata_by_id(analysis.ids) if collection is not None else {}
        return map_fields(list(analysis.ids), present)

    def map_neighbours(self, analysis: Analysis, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Each point's `k` nearest other points of the analysis in the original space
        (exact cosine): (positions int32 n x k, -1 where fewer; similarities float32).

        What `map.html` carries, so a file opened from disk lists neighbours too.
        """
        from .analyze.mapdata import nearest_rows

        collection = self.store.collection(analysis.space)
        n = len(analysis.ids)
        if collection is None:  # the space is gone: no neighbours to list
            return np.full((n, k), -1, dtype=np.int32), np.zeros((n, k), dtype=np.float32)
        present = collection.metadata_by_id(analysis.ids)
        rows = [i for i, doc_id in enumerate(analysis.ids) if doc_id in present]
        vectors = collection.load([analysis.ids[i] for i in rows], with_text=False)[0]
        normalise_rows(vectors)
        return nearest_rows(vectors, np.asarray(rows, dtype=np.int64), len(analysis.ids), k)


def _list(value: Sequence[str] | str | None) -> list[str] | None:
    """Globs as a list: one string may hold several, comma-separated."""
    from .store.selection import parse_globs

    return parse_globs(value)


def _check_positive(**values: int | None) -> None:
    from .options import positive

    positive(**values)
