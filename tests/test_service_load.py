"""Issue 23: the service answers exactly, and keeps answering while it writes.

The in-memory search against a brute-force reference (real faiss, real numpy); a real
`embedlab serve` under concurrent load against the library; readers during an ingest
whose provider hangs; two `embedlab serve` replicas over one real `chroma run`.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import embedlab
import numpy as np
import pytest
from embedlab.store import memory_index
from embedlab.store.memory_index import MemoryIndex

from tests.builders import SPACE, docs_for
from tests.fake_gemini import FakeGemini, fake_vector
from tests.service_helpers import InProcessService, RunningService

DIMS = 128
pytestmark = pytest.mark.slow


def reference(vectors, query, k, exclude=None, mask=None):
    """Brute force: every row scored the same way, best first, equal scores (to the 6
    places the API shows) by row."""
    scores = np.einsum("ij,j->i", vectors, query)
    allowed = np.ones(len(vectors), dtype=bool) if mask is None else mask.copy()
    if exclude is not None:
        allowed[exclude] = False
    rows = np.flatnonzero(allowed)
    order = np.lexsort((rows, -np.round(scores[rows], 6)))[:k]
    return rows[order]


def test_the_int8_prescan_gives_exactly_the_brute_force_answer(monkeypatch):
    pytest.importorskip("faiss")
    monkeypatch.setattr(memory_index, "EXACT_FLOATS", 0)  # the pre-scan even for 4,000 rows
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(8, DIMS))
    vectors = centres[rng.integers(0, 8, 4000)] * 0.7 + rng.normal(size=(4000, DIMS))
    vectors = vectors.astype(np.float32)
    vectors[100] = vectors[200] = vectors[300]  # exact ties: ordered by row
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    metadatas = [{"label": f"l{i % 5}", "source": f"s{i % 3}"} for i in range(4000)]
    index = MemoryIndex(vectors, metadatas)
    assert index.quantised
    checked = 0
    for i in list(range(0, 4000, 37)) + [100, 200, 300]:
        for k, exclude, labels, sources in [
            (10, i, None, None),
            (1, None, None, None),
            (50, i, ["l1", "l2"], None),
            (7, None, None, ["s0"]),
            (1000, i, ["l3"], ["s1"]),
        ]:
            mask = index.mask(labels, sources)
            rows, scores = index.search(vectors[i], k, exclude, mask)
            expected = reference(vectors, vectors[i], k, exclude, mask)
            assert rows.tolist() == expected.tolist()
            assert np.all(np.diff(scores) <= 1e-6)
            checked += 1
    assert checked == 5 * 112
    rows, _ = index.search(vectors[300], 3)
    assert rows.tolist() == [100, 200, 300]  # the three copies, by row


def test_an_extended_index_answers_as_one_built_from_scratch(monkeypatch):
    """After an ingest the held index is extended (the int8 copy cloned, only the new
    rows encoded, one of them far outside the value range it was trained on): it still
    gives exactly the brute-force answer, and the index it came from is unchanged."""
    pytest.importorskip("faiss")
    monkeypatch.setattr(memory_index, "EXACT_FLOATS", 0)
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(3000, DIMS)).astype(np.float32)
    vectors[2990] = 0.0
    vectors[2990, :3] = (40.0, -30.0, 1.0)  # new, spiky: clipped by the old range
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    metadatas = [{"label": f"l{i % 4}", "source": "s"} for i in range(3000)]
    old = MemoryIndex(vectors[:2500], metadatas[:2500])
    grown = old.extended(vectors, metadatas[2500:])
    assert grown.quantised and grown._max_err > old._max_err  # the spike's error counts
    assert len(old.labels) == 2500 and old._coarse.ntotal == 2500  # untouched
    for i in list(range(0, 3000, 61)) + [2990]:
        for k, labels in ((10, None), (25, ["l2"])):
            mask = grown.mask(labels, None)
            rows, _ = grown.search(vectors[i], k, i, mask)
            assert rows.tolist() == reference(vectors, vectors[i], k, i, mask).tolist()
    # new rows far outside the trained range, near each other: their order among
    # themselves rests on the bound taking in their (large) quantisation error
    spiky = np.zeros((40, DIMS), dtype=np.float32)
    spiky[:, 0] = 1.0
    spiky[:, 1:] = rng.normal(scale=0.02, size=(40, DIMS - 1))
    spiky /= np.linalg.norm(spiky, axis=1, keepdims=True)
    every = np.concatenate([vectors[:2500], spiky])
    wider = old.extended(every, [{"label": "l9", "source": "s"}] * 40)
    assert wider._max_err > 10 * old._max_err
    for i in range(2500, 2540, 3):
        rows, _ = wider.search(every[i], 10)
        assert rows.tolist() == reference(every, every[i], 10).tolist()


def test_a_query_rounded_to_int8_keeps_the_answer_exact(monkeypatch):
    """The query is rounded to int8 for the scan, to its own scale. Here it is one large
    component and 3,071 small ones, each under half a step: rounded, it keeps only the
    large one. The true best row lies along the small part (its int8 score is among the
    lowest); the bound takes the query's rounding error in, so the answer is still the
    brute-force one. With that error left out of the bound, this test fails."""
    pytest.importorskip("faiss")
    monkeypatch.setattr(memory_index, "EXACT_FLOATS", 0)
    rng, dims, n = np.random.default_rng(5), 3072, 4000  # a small part's error adds up
    small = 0.0035 * rng.choice([-1.0, 1.0], size=dims - 1)  # under half of 1/127
    query = np.concatenate([[1.0], small]).astype(np.float32)
    query /= np.linalg.norm(query)
    first = np.full(n, 0.2)
    first[30:] = rng.uniform(0.10, 0.15, size=n - 30)
    rest = rng.normal(size=(n, dims - 1))
    rest[-1] = small  # along the query's small part
    first[-1] = 0.05
    rest *= (np.sqrt(1 - first**2) / np.linalg.norm(rest, axis=1))[:, None]
    vectors = np.column_stack([first, rest]).astype(np.float32)
    index = MemoryIndex(vectors, [{"label": "l", "source": "s"}] * n)
    for k in (1, 10, 40):
        rows, _ = index.search(query, k)
        assert rows.tolist() == reference(vectors, query, k).tolist()
        assert rows[0] == n - 1


def test_many_equal_rows_come_lowest_row_first_on_the_float32_scan():
    """More rows equal to 6 places than the scan's few spare candidates (40 copies of
    one document; a zero query, where every row scores 0): the lowest rows come first,
    as on the int8 path, not whichever rows a partial sort kept."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 64)).astype(np.float32)
    vectors[100:140] = vectors[100]
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = MemoryIndex(vectors, [{"label": "l", "source": "s"}] * 3000)
    assert not index.quantised  # the float32 scan
    rows, _ = index.search(vectors[100], 10)
    assert rows.tolist() == list(range(100, 110))
    rows, _ = index.search(vectors[100], 10, exclude=100)
    assert rows.tolist() == list(range(101, 111))
    rows, scores = index.search(np.zeros(64, dtype=np.float32), 5)
    assert rows.tolist() == [0, 1, 2, 3, 4] and not scores.any()


def _held_then_added(store, group, held, added):
    """A VectorMemory holding `held` documents of `group`; `added` more written after:
    (memory, (held docs, vectors), (added docs, vectors))."""
    from embedlab.store.vector_memory import VectorMemory

    first = docs_for(group, 0, held)
    store.collection(SPACE, create=True).write(*first, [False] * held)
    memory = VectorMemory()
    assert memory.hold(store, SPACE)
    later = docs_for(group, held, added)
    store.collection(SPACE).write(*later, [False] * added)
    return memory, first, later


def _refresh_held_mid_read(memory, store, paused_loads):
    """A refresh started on a thread and held while it reads Chroma: (thread, go_on)."""
    reading, go_on = paused_loads()
    refresh = threading.Thread(target=memory.update, args=(store, SPACE))
    refresh.start()
    assert reading.wait(10)  # the refresh is reading Chroma now
    return refresh, go_on


@pytest.fixture
def paused_loads(monkeypatch):
    """pause() -> (reading, go_on): from then on every SpaceCollection.load (the real
    one) sets `reading`, then waits for `go_on` before it reads Chroma: a refresh held
    mid-read."""
    from embedlab.store.chroma_store import SpaceCollection

    def pause():
        reading, go_on = threading.Event(), threading.Event()
        real = SpaceCollection.load

        def paused(self, ids, *args, **kwargs):
            reading.set()
            assert go_on.wait(10)
            return real(self, ids, *args, **kwargs)

        monkeypatch.setattr(SpaceCollection, "load", paused)
        return reading, go_on

    return pause


def test_lookups_during_a_refresh_are_answered_from_memory(store, paused_loads):
    """A refresh (after an ingest) reads Chroma and builds the next snapshot beside the
    held one: lookups meanwhile answer from memory at once, never from Chroma; the
    new documents are found once it is swapped in."""
    memory, (docs, _), (new_docs, new_vectors) = _held_then_added(store, "space", 40, 5)
    refresh, go_on = _refresh_held_mid_read(memory, store, paused_loads)
    started = time.monotonic()
    hits = memory.neighbours(SPACE, new_vectors[0], 45, None, None, None)
    assert time.monotonic() - started < 1.0 and hits is not None
    assert {h[0] for h in hits} == {d.id for d in docs}  # the held snapshot
    go_on.set()
    refresh.join(10)
    hits = memory.neighbours(SPACE, new_vectors[0], 3, None, None, None)
    assert hits is not None and hits[0][0] == new_docs[0].id  # swapped in
    # documents marked changed and not yet re-read: Chroma answers the space meanwhile
    memory.forget(SPACE, [docs[0].id])
    assert memory.neighbours(SPACE, new_vectors[0], 3, None, None, None) is None
    assert memory.vector(SPACE, docs[0].id) is None
    memory.update(store, SPACE)
    assert memory.neighbours(SPACE, new_vectors[0], 3, None, None, None) is not None
    # an ingest that failed marks documents it never wrote: the re-read still succeeds
    memory.forget(SPACE, ["never/written", docs[1].id])
    memory.update(store, SPACE)
    hits = memory.neighbours(SPACE, new_vectors[0], 50, None, None, None)
    assert hits is not None and len(hits) == 45
    rows = memory.rows(store, SPACE, lambda records: sorted(i for i, _ in records))
    assert rows is not None and len(rows.ids) == 45


def test_a_snapshot_frozen_after_the_warm_up_is_freed_when_replaced(store):
    """The service freezes what its warm-up built (gc.freeze: full collections no longer
    walk it), and frozen objects in a reference cycle would never be freed. A held
    snapshot is not in one: once an ingest's re-read replaces it, it is gone."""
    import gc
    import weakref

    from embedlab.service.server import _settle_garbage_collector

    memory, _, _ = _held_then_added(store, "space", 40, 5)
    first = memory._spaces[SPACE]
    gone = (
        weakref.ref(first),
        weakref.ref(first.vectors.base if first.vectors.base is not None else first.vectors),
    )
    del first
    _settle_garbage_collector()
    try:
        memory.update(store, SPACE)
        assert len(memory._spaces[SPACE].ids) == 45
        assert gone[0]() is None and gone[1]() is None
    finally:
        gc.unfreeze()


def posts(n: int, start: int = 0, topic: str = "space") -> list[dict]:
    """`n` documents of one fake-server topic (their vectors cluster: cosine ~0.8 within
    a topic, ~0 across), so another topic's documents never enter their neighbours."""
    return [
        {"id": f"{topic}/{i}", "text": f"topic:{topic} post {i} " + "w " * (i % 5), "label": topic}
        for i in range(start, start + n)
    ]


def same_up_to_near_ties(served: list[tuple], found: list[tuple]) -> None:
    """The same documents with the same fields, at the same similarity rank by rank;
    two whose similarities are within 2e-6 (Chroma's float32 sums and numpy's differ in
    the last bits) may stand in either order."""
    position = {row[0]: j for j, row in enumerate(found)}
    assert set(position) == {row[0] for row in served}
    for i, row in enumerate(served):
        twin = found[position[row[0]]]
        assert row[1:4] == twin[1:4]
        assert abs(row[4] - twin[4]) <= 2e-6
        assert abs(row[4] - found[i][4]) <= 2e-6


def rows_of(body: dict) -> list[tuple]:
    return [(n["rank"], n["id"], n["label"], n["cluster"], n["text"]) for n in body["neighbours"]]


def test_answers_under_load_are_the_librarys(tmp_path):
    queries = []
    with FakeGemini() as fake:
        service = InProcessService(tmp_path / "store", fake)
        try:
            service.ingest(posts(150) + posts(150, topic="med"), dims=DIMS)
            service.http.post(
                "/api/v1/analyses", params={"wait": "true"}, json={"k": 2, "reduce": "pca"}
            ).raise_for_status()
            asks = []
            for i in range(0, 300, 3):
                topic, n = ("space", i // 2) if i % 2 else ("med", i // 2)
                asks.append(("GET", {"id": f"{topic}/{n}", "k": 1 + i % 12}))
                asks.append(("POST", {"text": f"topic:{topic} question {i % 9}", "k": 5}))
                vector = fake_vector(f"topic:{topic} free {i}", DIMS).tolist()
                asks.append(("POST", {"vector": vector, "k": 8, "labels": [topic]}))

            def ask(spec):
                method, params = spec
                if method == "GET":
                    response = service.http.get("/api/v1/neighbours", params=params)
                else:
                    response = service.http.post("/api/v1/neighbours", json=params)
                assert response.status_code == 200, response.text
                return spec, response.json()

            with ThreadPoolExecutor(8) as pool:  # every query twice, 8 at a time
                queries = list(pool.map(ask, asks + asks))
        finally:
            assert service.stop() == 0
    first = {}
    for (method, params), body in queries:  # the repeats answered the same
        key = repr((method, params))
        first.setdefault(key, body)
        assert rows_of(body) == rows_of(first[key])
    with embedlab.open(tmp_path / "store", quiet=True) as lab:
        for (_method, params), body in queries[: len(queries) // 2]:
            options = {k: v for k, v in params.items() if k not in ("id", "text", "vector")}
            asked = {k: v for k, v in params.items() if k in ("text", "vector")}
            library = lab.neighbours(params.get("id"), **asked, **options)
            served = [
                (n["id"], n["label"], n["cluster"], n["text"], n["similarity"])
                for n in body["neighbours"]
            ]
            found = list(
                zip(library["id"], library["label"], library["cluster"], library["text"],
                    library["similarity"])
            )  # fmt: skip
            same_up_to_near_ties(served, found)
            assert [n["rank"] for n in body["neighbours"]] == library["rank"].tolist()
            np.testing.assert_allclose(
                library["similarity"], [n["similarity"] for n in body["neighbours"]], atol=2e-6
            )
            assert library.attrs["requests"] == 0  # the service paid for each text once
            assert body["space"] == library.attrs["space"]


def test_readers_during_an_ingest_with_a_hung_provider_get_200s_and_the_same_answers(
    tmp_path,
):
    with FakeGemini() as fake:
        service = InProcessService(tmp_path / "store", fake)
        try:
            service.ingest(posts(200), dims=DIMS)
            ids = [f"space/{i}" for i in range(0, 200, 7)]
            before = {
                doc_id: service.http.get("/api/v1/neighbours", params={"id": doc_id}).json()
                for doc_id in ids
            }
            texts = {
                doc_id: service.http.get(f"/api/v1/documents/{doc_id}").json()["text"]
                for doc_id in ids
            }
            fake.latency = 8.0  # every embedding request now hangs for 8 s
            job = service.ingest(posts(300, topic="med"), wait=False, batch_size=20, dims=DIMS)
            deadline = time.monotonic() + 30
            while not fake.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            assert fake.requests, "the ingest never asked the provider"
            answers, lock = [], threading.Lock()

            def read(n: int) -> None:
                doc_id = ids[n % len(ids)]
                if n % 2:
                    response = service.http.get("/api/v1/neighbours", params={"id": doc_id})
                else:
                    vector = fake_vector(texts[doc_id], DIMS)
                    response = service.http.post(
                        "/api/v1/neighbours", json={"vector": vector.tolist(), "k": 10}
                    )
                with lock:
                    answers.append((n, doc_id, response.status_code, response.json()))

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(read, range(160)))
            state = service.http.get(f"/api/v1/jobs/{job['job']}").json()["state"]
            assert state == "running"  # every read was answered while the ingest hung
            assert [a[2] for a in answers] == [200] * 160
            for n, doc_id, _, body in answers:
                if n % 2:
                    assert rows_of(body) == rows_of(before[doc_id])
                else:  # by its vector: the document itself first, then the same ten
                    assert body["neighbours"][0]["id"] == doc_id
            service.http.delete(f"/api/v1/jobs/{job['job']}")
        finally:
            assert service.stop() == 0


def test_a_document_ingested_through_one_replica_is_found_by_the_other_within_2_s(
    tmp_path, chroma_server
):
    where = ["--chroma-url", chroma_server]
    with FakeGemini() as fake:
        # two processes over one server: this one (the CLI on a thread) and a child
        first = InProcessService(tmp_path / "a", fake, store_args=where)
        second = None
        try:
            first.ingest(posts(40), dims=DIMS)
            second = RunningService(tmp_path / "b", fake, store_args=where)
            deadline = time.monotonic() + 60
            while second.http.get("/health").json()["warming"]:
                assert time.monotonic() < deadline, "the second replica never warmed up"
                time.sleep(0.1)
            new = {"id": "space/new", "text": "topic:space the one just written", "label": "x"}
            vector = fake_vector(new["text"], DIMS).tolist()
            miss = second.http.post("/api/v1/neighbours", json={"vector": vector, "k": 1})
            assert miss.json()["neighbours"][0]["id"] != "space/new"
            first.ingest([new], dims=DIMS)
            written = time.monotonic()
            while True:
                found = second.http.post("/api/v1/neighbours", json={"vector": vector, "k": 3})
                assert found.status_code == 200, found.text
                top = found.json()["neighbours"][0]
                if top["id"] == "space/new":
                    break
                assert time.monotonic() - written < 2.0, "the second replica did not see it"
                time.sleep(0.05)
            assert top["label"] == "x" and top["text"] == new["text"]
            assert top["similarity"] == pytest.approx(1.0, abs=1e-5)
            by_id = second.http.get("/api/v1/neighbours", params={"id": "space/new", "k": 40})
            assert by_id.status_code == 200 and len(by_id.json()["neighbours"]) == 40
        finally:
            assert first.stop() == 0
            if second is not None:
                assert second.stop() == 0


def test_a_drop_during_a_refresh_is_not_undone_by_it(store, paused_loads):
    """Documents deleted while a refresh reads Chroma: the drop waits for the refresh,
    so the refresh cannot publish its older snapshot over it afterwards."""
    memory, (_, vectors), (more, _) = _held_then_added(store, "med", 20, 2)
    memory.forget(SPACE, [d.id for d in more])
    refresh, go_on = _refresh_held_mid_read(memory, store, paused_loads)
    drop = threading.Thread(target=memory.drop, args=(SPACE,))
    drop.start()
    drop.join(0.3)
    assert drop.is_alive()  # it waits for the refresh
    go_on.set()
    refresh.join(10)
    drop.join(10)
    assert memory.neighbours(SPACE, vectors[0], 3, None, None, None) is None  # dropped
