"""SpaceCollection.all_metadata: after a first full read, only what was written since.

Each write stamps its documents' metadata (`written`); a later read takes every id and
the metadata of documents stamped since the last read (plus any id not seen before), so
an update after an ingest does not rebuild 11,314 metadata dicts. What must never
happen: a new, relabelled or deleted document missed, on a local store (this process
the only writer, writes in flight included) or over a Chroma server shared by replicas.
"""

from __future__ import annotations

import numpy as np
import pytest
from embedlab.store import Document, Store, chroma_store
from embedlab.store.chroma_store import WRITTEN

from tests.builders import SPACE
from tests.conftest import hash_vector, make_docs


def _write(col, docs):
    col.write(docs, np.stack([hash_vector(d.text, SPACE.dims) for d in docs]), [False] * len(docs))


@pytest.fixture
def metadata_rows(monkeypatch):
    """How many documents' metadata each Chroma `get` of the collection returned."""
    rows: list[int] = []

    def wrap(col):
        real = col._col.get

        def counting(*args, **kwargs):
            got = real(*args, **kwargs)
            if "metadatas" in (kwargs.get("include") or []):
                rows.append(len(got["ids"]))
            return got

        monkeypatch.setattr(col._col, "get", counting, raising=False)
        return col

    return rows, wrap


def _truth(col) -> dict[str, str | None]:
    return {doc_id: meta.get("label") for doc_id, meta in col.iter_metadata()}


def test_a_second_read_takes_only_what_was_written_since(store, metadata_rows, monkeypatch):
    monkeypatch.setattr(chroma_store, "SOLE_WRITER_MARGIN_S", 0.0)
    rows, wrap = metadata_rows
    col = wrap(store.collection(SPACE, create=True))
    _write(col, make_docs(40))
    first = col.all_metadata()
    assert len(first) == 40 and sum(rows) == 40
    rows.clear()
    _write(col, make_docs(2, start=40))  # two new
    col.relabel([Document("test/3", "document number 3 about subject 0", "test", "moved")], [False])
    col.delete(["test/5"])
    second = col.all_metadata()
    assert sum(rows) == 3  # the two new and the relabelled one: nothing else was read again
    assert {i: m.get("label") for i, m in second.items()} == _truth(col)
    assert second["test/3"]["label"] == "moved" and "test/5" not in second
    assert len(second) == 41
    rows.clear()
    assert col.all_metadata() == second and sum(rows) == 0  # nothing written: nothing read


def test_a_write_in_flight_while_it_reads_is_read_the_next_time(store, monkeypatch):
    """A write stamped before a read starts but landing after it ends (another thread's
    upsert) is found next time: the read goes back to the oldest write in flight."""
    monkeypatch.setattr(chroma_store, "SOLE_WRITER_MARGIN_S", 0.0)
    col = store.collection(SPACE, create=True)
    _write(col, make_docs(10))
    col.all_metadata()

    def late_relabel(label: str, register: bool):
        token, stamp = col._write_started()  # stamped now..
        if not register:
            col._write_ended(token)
        seen = col.all_metadata()  # ..a read runs meanwhile..
        doc = Document("test/1", "document number 1 about subject 1", "test", label)
        col._col.upsert(  # ..and the write lands after it, with its stamp
            ids=[doc.id],
            embeddings=[hash_vector(doc.text, SPACE.dims)],
            documents=[doc.text],
            metadatas=[{**doc.metadata(False), WRITTEN: stamp}],
        )
        col._write_ended(token)
        return seen

    assert late_relabel("first", register=True)["test/1"]["label"] == "label1"
    assert col.all_metadata()["test/1"]["label"] == "first"
    # the same write not registered as in flight is missed: what the registry is for
    late_relabel("second", register=False)
    assert col.all_metadata()["test/1"]["label"] == "first"
    assert _truth(col)["test/1"] == "second"


def test_replicas_over_one_chroma_server_see_each_others_writes(chroma_server):
    """Two stores over one server: what one writes (new, relabelled, deleted), the
    other's next read has, its last read's stamp taken OTHER_WRITERS_MARGIN_S back."""
    with Store.open_server(chroma_server) as one, Store.open_server(chroma_server) as two:
        a = one.collection(SPACE, create=True)
        _write(a, make_docs(20))
        b = two.collection(SPACE)
        assert b is not None and len(b.all_metadata()) == 20
        _write(a, make_docs(1, start=20))
        a.relabel(
            [Document("test/2", "document number 2 about subject 2", "test", "moved")], [False]
        )
        a.delete(["test/4"])
        seen = b.all_metadata()
        assert {i: m.get("label") for i, m in seen.items()} == _truth(a)
        assert seen["test/2"]["label"] == "moved" and "test/4" not in seen and "test/20" in seen


def test_one_handle_per_collection_whoever_asks_first(store):
    """Threads asking for a collection at once get one handle: a write registered on a
    handle the reads never see would be missed."""
    import threading

    store.collection(SPACE, create=True)
    store._collections.clear()  # as at a service's start: nobody holds a handle yet
    barrier = threading.Barrier(4)
    got = []

    def ask():
        barrier.wait()
        got.append(store.collection(SPACE))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in got}) == 1


def test_a_clock_stepped_back_still_stamps_after_the_last_read(store, monkeypatch):
    """A write after a read carries a later stamp even when the clock went back
    meanwhile (NTP, a resumed VM): otherwise the next read would not look for it."""
    import time as real_time

    monkeypatch.setattr(chroma_store, "SOLE_WRITER_MARGIN_S", 0.0)
    monkeypatch.setattr(chroma_store, "_last_stamp", chroma_store._last_stamp)  # put back after
    col = store.collection(SPACE, create=True)
    _write(col, make_docs(5))
    now = [real_time.time() + 1000]  # the clock as the store sees it
    monkeypatch.setattr(chroma_store.time, "time", lambda: now[0])
    col.all_metadata()
    now[0] -= 100  # stepped back
    col.relabel([Document("test/2", "document number 2 about subject 2", "test", "moved")], [False])
    assert col.all_metadata()["test/2"]["label"] == "moved"


def test_over_a_server_everything_is_read_again_now_and_then(chroma_server, monkeypatch):
    """A writer that stamps nothing (Chroma's own client) is caught up with by the full
    read every FULL_METADATA_READ_S; until then the stamps are what is read."""
    monkeypatch.setattr(chroma_store, "OTHER_WRITERS_MARGIN_S", 0.0)  # its stamp is older
    with Store.open_server(chroma_server) as one:
        col = one.collection(SPACE, create=True)
        _write(col, make_docs(6))
        assert col.all_metadata()["test/1"]["label"] == "label1"
        col._col.update(ids=["test/1"], metadatas=[{"label": "unstamped"}])  # no stamp
        assert col.all_metadata()["test/1"]["label"] == "label1"  # not looked for yet
        monkeypatch.setattr(chroma_store, "FULL_METADATA_READ_S", 0.0)
        assert col.all_metadata()["test/1"]["label"] == "unstamped"
