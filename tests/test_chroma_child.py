"""A store served by a private `chroma run` child (store/chroma_child.py, what `embedlab
serve` runs): the same documents, vectors and answers as the embedded client, the child
gone when the store closes, every index checked (and a torn one healed) before the child
gets the folder, and a damaged one kept in this process, where it is refused with the
way out instead of crashing the server."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from embedlab.errors import StoreDamaged
from embedlab.ingest.pipeline import ingest
from embedlab.store import Store
from embedlab.store.index_files import read_header

from tests.conftest import (
    FAKE_SPACE,
    KEPT_ROWS,
    CountingProvider,
    hash_vector,
    make_docs,
    vector_folder,
)
from tests.service_helpers import alive, chroma_children

N = 200


def test_a_child_served_store_writes_and_answers_as_the_embedded_one(tmp_path):
    docs = make_docs(N)
    provider = CountingProvider()
    with Store.open_local(tmp_path / "child", create=True, own_server=True) as store:
        ingest(docs, store, FAKE_SPACE, lambda: provider, batch_size=50)
        assert not store.embedded
        (child,) = chroma_children(os.getpid())
        col = store.collection(FAKE_SPACE)
        got = col._col.get(include=["embeddings", "documents"])
        probe = hash_vector(docs[3].text, FAKE_SPACE.dims)
        served = col.nearest(probe, 5)
    assert not alive(child)  # stopped with the store, before its lock went
    texts = {d.id: d.text for d in docs}
    assert sorted(got["ids"]) == sorted(texts)
    for doc_id, text, vector in zip(got["ids"], got["documents"], got["embeddings"]):
        assert text == texts[doc_id]
        assert np.allclose(vector, hash_vector(text, FAKE_SPACE.dims), atol=1e-6)
    with Store.open_local(tmp_path / "embedded", create=True) as store:
        ingest(docs, store, FAKE_SPACE, lambda: CountingProvider(), batch_size=50)
        here = store.collection(FAKE_SPACE).nearest(probe, 5)
    assert [hit[0] for hit in served] == [hit[0] for hit in here] and served[0][0] == docs[3].id
    np.testing.assert_allclose([h[1] for h in served], [h[1] for h in here], atol=1e-6)
    # and what the child wrote is the folder's: the embedded client reads it all back
    with Store.open_local(tmp_path / "child") as store:
        assert store.embedded and store.collection(FAKE_SPACE).count() == N


def test_a_torn_index_is_healed_before_the_child_gets_the_folder(torn_store, caplog):
    store_path, docs, _provider = torn_store
    with caplog.at_level(logging.WARNING, "embedlab.store"):
        with Store.open_local(store_path, own_server=True) as store:
            assert store.collection(FAKE_SPACE).count() == len(docs)
            assert not store.embedded
    assert any("rebuilt from its 300 stored vectors" in r.getMessage() for r in caplog.records)


def test_a_damaged_index_keeps_chroma_in_this_process(torn_store, caplog):
    store_path, _docs, _provider = torn_store
    folder = vector_folder(store_path)
    header = read_header(folder)
    assert not isinstance(header, str) and header is not None
    with open(folder / "data_level0.bin", "r+b") as fh:  # vectors lost: repair's to handle
        fh.truncate(KEPT_ROWS * header.per_element)
    with caplog.at_level(logging.WARNING, "embedlab.store"):
        with Store.open_local(store_path, own_server=True) as store:
            assert store.spaces() == [FAKE_SPACE]
            assert store.embedded and chroma_children(os.getpid()) == []
            with pytest.raises(StoreDamaged, match="embedlab repair"):
                store.collection(FAKE_SPACE)
    assert any("Chroma stays in this process" in r.getMessage() for r in caplog.records)
    assert not (store_path / "quarantine").exists()
