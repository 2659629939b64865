"""A process killed while Chroma persists its HNSW index (store/rebuild.py): the torn
index is rebuilt the next time the store opens, from the vectors still on disk, with
nothing lost and nothing embedded again; a tear that did lose a vector is left to
`embedlab repair`, which says what it kept.

The tear is made exactly as the kill makes it. Chroma's hnswlib writes the header with
the new element count first, then the rows (`persistDirty`), and its label mapping and
the write-ahead log's mark only after both: so a kill in between leaves the header
counting rows the files do not hold yet, while the write-ahead log still holds every
write since the last complete persist. Here the writes after the first 200 documents go
to the log only (no persist), and the header is then rewritten with their count.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from embedlab.errors import StoreDamaged
from embedlab.store import Store
from embedlab.store.index_files import (
    catalogue_all_ids,
    index_problem,
    read_header,
    readable_vectors,
    torn_persist,
)
from embedlab.store.layout import CHROMA_DIR, QUARANTINE_DIR

from tests.conftest import (
    FAKE_SPACE,
    KEPT_ROWS,
    LOGGED,
    PERSISTED,
    hash_vector,
    invoke_cli,
    vector_folder,
)


def test_a_torn_index_is_rebuilt_on_open_with_every_vector(torn_store, caplog):
    store_path, docs, provider = torn_store
    folder = vector_folder(store_path)
    problem = index_problem(folder)
    assert torn_persist(folder) and problem is not None and "shorter than" in problem
    calls = len(provider.calls)

    with caplog.at_level(logging.WARNING, "embedlab.store"):
        with Store.open_local(store_path) as store:
            col = store.collection(FAKE_SPACE)  # Chroma would have read past the files
            got = col._col.get(include=["embeddings", "documents"])
            hits = col._col.query(query_embeddings=[got["embeddings"][7]], n_results=1)
    assert sorted(got["ids"]) == sorted(d.id for d in docs)
    texts = {d.id: d.text for d in docs}
    for doc_id, text, vector in zip(got["ids"], got["documents"], got["embeddings"]):
        assert text == texts[doc_id]
        assert np.allclose(vector, hash_vector(text, FAKE_SPACE.dims), atol=1e-6)
    assert hits["ids"][0] == [got["ids"][7]]  # the rebuilt index answers
    assert len(provider.calls) == calls  # nothing embedded again
    (message,) = [r.getMessage() for r in caplog.records if r.name == "embedlab.store"]
    assert f"rebuilt from its {PERSISTED + LOGGED} stored vectors (nothing lost" in message
    (kept,) = (store_path / QUARANTINE_DIR).iterdir()  # the torn files, set aside
    assert (kept / "header.bin").is_file()
    assert index_problem(vector_folder(store_path)) is None
    # and nothing else is left in Chroma's folder: only the rebuilt index's files
    assert [p for p in (store_path / CHROMA_DIR).iterdir() if p.is_dir()] == [
        vector_folder(store_path)
    ]


def test_the_cli_says_it_healed_the_index_and_goes_on(torn_store):
    store_path, docs, _provider = torn_store
    args = ["--store", str(store_path), "neighbours", "--id", docs[0].id, "-k", "3", "--json"]
    result = invoke_cli(args)
    assert result.returncode == 0, result.stderr
    assert "was left half-written by an interrupted process; rebuilt from its 300" in (
        result.stderr
    )
    hits = json.loads(result.stdout)
    assert len(hits) == 3 and docs[0].id not in [hit["id"] for hit in hits]
    again = invoke_cli(args)
    assert again.returncode == 0 and "half-written" not in again.stderr  # healed once
    assert json.loads(again.stdout) == hits


def test_a_tear_that_lost_a_vector_is_left_to_repair(torn_store):
    store_path, _docs, _provider = torn_store
    folder = vector_folder(store_path)
    header = read_header(folder)
    assert not isinstance(header, str) and header is not None
    with open(folder / "data_level0.bin", "r+b") as fh:  # and persisted rows gone too
        fh.truncate(KEPT_ROWS * header.per_element)
    # (the write-ahead log may still hold the last persisted write or two: the rows cut
    # are far more than that, so vectors are lost for real)
    readable = readable_vectors(store_path / CHROMA_DIR, FAKE_SPACE.collection_name)
    ids = catalogue_all_ids(store_path / CHROMA_DIR, FAKE_SPACE.collection_name)
    assert len(ids) == 300 and len(set(ids) - set(readable)) >= PERSISTED - KEPT_ROWS - 2
    with Store.open_local(store_path) as store:
        with pytest.raises(StoreDamaged, match="embedlab repair"):
            store.collection(FAKE_SPACE)
    assert not (store_path / QUARANTINE_DIR).exists()  # nothing touched
    header = read_header(folder)
    assert not isinstance(header, str) and header is not None and header.count == 300
