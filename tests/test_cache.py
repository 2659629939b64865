"""store.cache.BoundedCache: the one bounded cache of the Lab and the service."""

from __future__ import annotations

import threading

import pytest
from embedlab.store.cache import BoundedCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_least_recently_used_goes_first_and_size_is_bounded():
    cache: BoundedCache[str, int] = BoundedCache(3)
    for n, key in enumerate("abc"):
        cache.put(key, n)
    assert cache.get("a") == 0  # "a" is now the most recent: "b" is the oldest
    cache.put("d", 3)
    assert len(cache) == 3
    assert "b" not in cache
    assert cache.keys() == ["c", "a", "d"]
    cache.put("c", 20)  # a put refreshes too
    cache.put("e", 4)
    assert cache.keys() == ["d", "c", "e"]
    assert cache.get("c") == 20 and cache.get("a") is None
    assert cache.get("missing", -1) == -1


def test_pop_forget_clear_and_tags():
    cache: BoundedCache[str, int] = BoundedCache(10)
    cache.put("x1", 1, tags=("space-x",))
    cache.put("x2", 2, tags=("space-x",))
    cache.put("y1", 3, tags=("space-y",))
    cache.put("y2", 40, tags=("space-y",))
    assert cache.pop("x1") == 1 and cache.pop("x1") is None
    assert cache.forget(tag="space-y", predicate=lambda key, value: value > 10) == 1
    assert cache.keys() == ["x2", "y1"]
    assert cache.forget(predicate=lambda key, value: key.startswith("x")) == 1
    assert cache.keys() == ["y1"]
    cache.clear()
    assert len(cache) == 0


def test_a_value_read_before_a_removal_is_not_kept():
    cache: BoundedCache[str, str] = BoundedCache(4)
    generation = cache.generation
    cache.forget(tag="anything")  # an invalidation while the value was computed
    assert cache.put("k", "stale", generation=generation) is False
    assert "k" not in cache
    assert cache.put("k", "fresh", generation=cache.generation) is True
    assert cache.get("k") == "fresh"


def test_ttl_says_what_is_fresh():
    clock = Clock()
    cache: BoundedCache[str, int] = BoundedCache(2, ttl_s=2.0, clock=clock)
    cache.put("k", 1)
    clock.now += 1.5
    value, age = cache.get_aged("k")
    assert (value, age) == (1, 1.5) and cache.is_fresh(age)
    assert cache.get("k", fresh=True) == 1
    clock.now += 1.0
    assert cache.get("k", fresh=True) is None  # stale: absent when freshness is asked
    assert cache.get("k") == 1  # still held (a service answers from it meanwhile)
    assert not cache.is_fresh(cache.get_aged("k")[1])


def test_many_threads_never_exceed_the_bound():
    cache: BoundedCache[int, int] = BoundedCache(50)

    def work(start: int) -> None:
        for n in range(start, start + 500):
            cache.put(n, n)
            cache.get(n - 3)
            if n % 97 == 0:
                cache.forget(predicate=lambda key, value: key % 2 == 0)

    threads = [threading.Thread(target=work, args=(i * 1000,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) <= 50
    assert all(cache.get(k) == k for k in cache.keys())


def test_a_size_under_one_is_refused():
    with pytest.raises(ValueError):
        BoundedCache(0)


# -- the Lab's one invalidation path, with a real store ----------------------------------


def test_the_lab_forgets_what_a_write_changed(store_path):
    import embedlab
    from embedlab.store import Store

    from .test_analyze import SPACE, grouped_corpus

    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    with embedlab.open(store_path, quiet=True, keep_vectors=True) as lab:
        analysis = lab.analyze(k=3, reduce="pca")
        texts = lab.analysis_texts(analysis.id)
        assert lab.analysis_texts(analysis.id) is texts  # kept
        lab.neighbours(analysis.ids[0], k=3)  # its cluster map is kept
        assert analysis.id in lab._analysis_texts and analysis.id in lab._cluster_maps
        assert lab.hold_vectors(SPACE)
        assert lab._memory.vector(SPACE, analysis.ids[0]) is not None

        lab.delete(ids=[analysis.ids[1]])  # its space's analyses and texts are dropped
        assert analysis.id not in lab._analysis_texts and analysis.id not in lab._analyses
        assert lab._memory.vector(SPACE, analysis.ids[0]) is None  # read again on next use
        reopened = lab.analysis(analysis.id)
        assert any("deleted from the store" in note for note in reopened.notes)
        assert lab.analysis_texts(analysis.id)[1] == ""  # read again: the deleted one

        lab.delete_analysis(analysis.id)  # every cache of it goes, its texts too
        for cache in (lab._analyses, lab._analysis_texts, lab._cluster_maps):
            assert analysis.id not in cache
        assert len(lab._heads) == 0

        again = lab.analyze(k=3, reduce="pca")
        lab.analysis_texts(again.id)
        assert lab.hold_vectors(SPACE)
        lab.repair(check=True)  # the store changed under it: everything is dropped
        assert len(lab._analysis_texts) == 0 and len(lab._analyses) == 0
        assert lab._memory.vector(SPACE, again.ids[0]) is None
        assert lab.analysis(again.id).id == again.id
