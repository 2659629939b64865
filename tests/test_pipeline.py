"""Cache behaviour of ingest against a real embedded Chroma, with a counting fake provider."""

from collections import Counter

import numpy as np
import pytest
from embedlab.ingest.pipeline import IngestError, RetryPolicy, ingest
from embedlab.ingest.providers import ProviderError
from embedlab.store import Document, Space, Store, StoreBusy
from embedlab.store.chroma_store import SYNC_THRESHOLD

from tests.conftest import FAKE_SPACE, CountingProvider, hash_vector, make_docs, transient

FAST = RetryPolicy(attempts=3, initial_delay=0.001, max_delay=0.01, seed=0)


def run(store, provider, docs, **kwargs):
    kwargs.setdefault("retry", FAST)
    return ingest(docs, store, provider.space, lambda: provider, **kwargs)


def stored(store: Store, space: Space = FAKE_SPACE) -> dict:
    col = store.collection(space)
    got = col._col.get(include=["metadatas", "documents", "embeddings"])
    return {
        i: (m, d, np.asarray(e))
        for i, m, d, e in zip(got["ids"], got["metadatas"], got["documents"], got["embeddings"])
    }


def test_first_ingest_embeds_each_document_once_in_batches(store, provider):
    report = run(store, provider, make_docs(25), batch_size=10)
    assert [len(c) for c in provider.calls] == [10, 10, 5]
    assert (report.documents, report.cached, report.embedded, report.requests) == (25, 0, 25, 3)
    rows = stored(store)
    assert len(rows) == 25
    meta, text, vector = rows["test/7"]
    assert text == "document number 7 about subject 1"
    assert meta["label"] == "label1" and meta["source"] == "test" and meta["chars"] == len(text)
    np.testing.assert_allclose(vector, hash_vector(text, 8), atol=1e-6)


def test_rerun_makes_no_calls_and_never_builds_the_provider(store, provider):
    run(store, provider, make_docs(30))

    def must_not_build():
        raise AssertionError("provider constructed on a fully cached run")

    report = ingest(make_docs(30), store, FAKE_SPACE, must_not_build)
    assert (report.cached, report.embedded, report.requests) == (30, 0, 0)


def test_incremental_ingest_embeds_exactly_the_new_documents(store, provider):
    run(store, provider, make_docs(600), batch_size=100)
    provider.calls.clear()
    report = run(store, provider, make_docs(610), batch_size=100)
    assert sorted(provider.texts_embedded) == sorted(d.text for d in make_docs(10, start=600))
    assert (report.cached, report.embedded, report.requests) == (600, 10, 1)
    assert store.collection(FAKE_SPACE).count() == 610


def test_changed_text_replaces_only_that_vector(store, provider):
    docs = make_docs(5)
    run(store, provider, docs)
    before = stored(store)
    docs[2] = Document(docs[2].id, "a completely rewritten post", "test", "label2")
    provider.calls.clear()
    report = run(store, provider, docs)
    assert provider.calls == [["a completely rewritten post"]]
    assert (report.cached, report.embedded) == (4, 1)
    after = stored(store)
    assert len(after) == 5
    assert after["test/2"][1] == "a completely rewritten post"
    np.testing.assert_allclose(
        after["test/2"][2], hash_vector("a completely rewritten post", 8), atol=1e-6
    )
    for key in ("test/0", "test/1", "test/3", "test/4"):
        assert after[key][0] == before[key][0]
        np.testing.assert_array_equal(after[key][2], before[key][2])


def test_same_text_under_another_id_or_source_reuses_the_vector(store, provider):
    run(store, provider, [Document("a/1", "shared words", "a", "x")])
    provider.calls.clear()
    report = run(store, provider, [Document("b/9", "shared words\r\n", "b", "y")])
    assert provider.calls == []
    assert (report.reused, report.embedded) == (1, 0)
    rows = stored(store)
    assert rows["b/9"][0]["source"] == "b" and rows["b/9"][0]["label"] == "y"
    np.testing.assert_array_equal(rows["b/9"][2], rows["a/1"][2])


def test_duplicate_texts_in_one_run_are_embedded_once(store, provider):
    docs = [Document(f"d/{i}", "same text" if i % 2 else f"text {i}", "d") for i in range(6)]
    report = run(store, provider, docs)
    assert sorted(provider.texts_embedded) == ["same text", "text 0", "text 2", "text 4"]
    assert (report.embedded, report.texts_embedded) == (6, 4)
    assert store.collection(FAKE_SPACE).count() == 6


def test_empty_texts_and_repeated_ids_are_skipped_and_counted(store, provider):
    docs = [Document("e/1", "   ", "e"), Document("e/2", "ok", "e"), Document("e/2", "other", "e")]
    report = run(store, provider, docs)
    assert report.skipped == Counter({"empty text": 1, "duplicate id": 1})
    assert provider.texts_embedded == ["ok"]


def test_spaces_never_mix(store):
    small = CountingProvider(Space("fake", "fake-model", "none", 8))
    other_task = CountingProvider(Space("fake", "fake-model", "CLUSTERING", 8))
    wide = CountingProvider(Space("fake", "fake-model", "none", 16))
    for p in (small, other_task, wide):
        run(store, p, make_docs(4))
        assert len(p.texts_embedded) == 4  # nothing borrowed from another space
    assert sorted(s.dims for s in store.spaces()) == [8, 8, 16]
    assert all(store.collection(p.space).count() == 4 for p in (small, other_task, wide))


def test_transient_errors_are_retried_and_counted(store):
    provider = CountingProvider(failures=[transient(), transient(), None])
    report = run(store, provider, make_docs(5))
    assert (report.requests, report.retries, report.embedded) == (3, 2, 5)


def test_failure_after_retries_keeps_finished_batches_and_rerun_finishes(store):
    provider = CountingProvider(failures=[None, None, transient(), transient(), transient()])
    with pytest.raises(IngestError, match="gave up after 3 attempts") as failed:
        run(store, provider, make_docs(50), batch_size=10)
    assert failed.value.report.embedded == 20
    assert store.collection(FAKE_SPACE).count() == 20
    provider.calls.clear()
    report = run(store, provider, make_docs(50), batch_size=10)
    assert (report.cached, report.embedded) == (20, 30)
    assert len(provider.texts_embedded) == 30


def test_permanent_error_is_not_retried(store):
    provider = CountingProvider(failures=[ProviderError("bad key")])
    with pytest.raises(IngestError, match="bad key"):
        run(store, provider, make_docs(3))
    assert len(provider.calls) == 1


def test_wrong_shaped_reply_is_rejected_not_stored(store):
    class ShortProvider(CountingProvider):
        def embed(self, texts):
            result = super().embed(texts)
            result.vectors = result.vectors[:-1]
            return result

    with pytest.raises(IngestError, match="returned 2 vectors of 8 dims for 3 texts"):
        run(store, ShortProvider(), make_docs(3))
    assert store.collection(FAKE_SPACE) is None  # nothing written: not even an empty space


def test_vectors_are_stored_unit_length(store):
    class ScaledProvider(CountingProvider):
        def embed(self, texts):
            result = super().embed(texts)
            result.vectors = result.vectors * 3.0
            return result

    run(store, ScaledProvider(), make_docs(4))
    norms = [np.linalg.norm(v) for _, _, v in stored(store).values()]
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)


def test_concurrency_bounds_calls_in_flight(store):
    import threading
    import time

    class SlowProvider(CountingProvider):
        active = peak = 0
        guard = threading.Lock()

        def embed(self, texts):
            with self.guard:
                SlowProvider.active += 1
                SlowProvider.peak = max(SlowProvider.peak, SlowProvider.active)
            time.sleep(0.02)
            with self.guard:
                SlowProvider.active -= 1
            return super().embed(texts)

    report = run(store, SlowProvider(), make_docs(40), batch_size=2, concurrency=3)
    assert report.embedded == 40 and SlowProvider.peak == 3


def test_dry_run_counts_and_writes_nothing(store, provider):
    run(store, provider, make_docs(10))
    provider.calls.clear()
    report = run(store, provider, make_docs(25), dry_run=True, batch_size=10)
    assert provider.calls == []
    assert (report.cached, report.documents - report.cached, report.planned_requests) == (10, 15, 2)
    assert store.collection(FAKE_SPACE).count() == 10


def test_a_second_process_on_the_same_store_is_told_it_is_busy(store_path, store):
    with pytest.raises(StoreBusy, match="busy"):
        Store.open_local(store_path)


def test_ingest_persists_the_index_without_changing_records_or_settings(store, provider):
    run(store, provider, make_docs(40))
    col = store.collection(FAKE_SPACE)
    assert col._col.configuration["hnsw"]["sync_threshold"] == SYNC_THRESHOLD  # restored
    rows = stored(store)
    assert len(rows) == 40
    for doc in make_docs(40):
        np.testing.assert_allclose(rows[doc.id][2], hash_vector(doc.text, 8), atol=1e-6)
        assert rows[doc.id][1] == doc.text
