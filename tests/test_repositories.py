"""store.repositories: the typed records of a store's artifacts, on a real store."""

from __future__ import annotations

from embedlab.store import Store
from embedlab.store.repositories import ANALYSIS, COMPARISON, Repositories


def test_each_kind_keeps_its_own_records(store_path):
    with Store.open_local(store_path, create=True) as store:
        records = Repositories.of(store)
        assert records.analyses.heads() == [] and records.analyses.get("a1") is None
        head = {"id": "a1", "created": "2026-01-01T00:00:00", "space_collection": "col-x"}
        records.analyses.put("a1", head, b"payload-1")
        records.comparisons.put("c1", {**head, "id": "c1"}, b"payload-2")
        assert records.analyses.get("a1") == (head, b"payload-1")
        assert [h["id"] for h in records.analyses.heads("col-x")] == ["a1"]
        assert records.analyses.heads("col-y") == []
        assert [h["id"] for h in records.comparisons.heads()] == ["c1"]
        assert records.comparisons.get("a1") is None  # kinds never mix
        # the same records as the untyped artifacts hold them
        assert store.artifacts.get(ANALYSIS, "a1") == (head, b"payload-1")
        assert store.artifacts.head(COMPARISON, "c1")["id"] == "c1"
        assert records.analyses.delete("a1") is True
        assert records.analyses.delete("a1") is False
        assert records.analyses.get("a1") is None

        assert records.sources.origin("posts") is None
        records.sources.claim("posts", "/data/posts.csv")
        assert records.sources.origin("posts") == "/data/posts.csv"

        assert records.deletions.last("col-x") is None
        records.deletions.mark("col-x", "2026-01-02T00:00:00.000001")
        records.deletions.mark("col-x", "2026-01-03T00:00:00.000001")  # the latest stands
        assert records.deletions.last("col-x") == "2026-01-03T00:00:00.000001"

        entry = {"id": "e1", "created": "2026-01-01", "space": "s", "requests": 2}
        records.costs.add([entry])
        records.costs.add([])  # nothing to write: nothing written
        assert records.costs.entries() == [entry]
        assert records.jobs.heads() == []


def test_records_follow_a_reconnected_store(store_path):
    with Store.open_local(store_path, create=True) as store:
        records = Repositories.of(store)
        records.sources.claim("notes", "/data/notes")
        store.disconnect()  # what a repair does: a new client, a new artifacts handle
        assert records.sources.origin("notes") == "/data/notes"


def test_the_lab_names_what_front_ends_read_of_the_store(store_path):
    import embedlab
    from embedlab.store import Space
    from embedlab.store.repositories import JOB

    with embedlab.open(store_path, quiet=True) as lab:
        space = Space("gemini", "gemini-embedding-001", "CLUSTERING", 768)
        listed = lab.prices.price(space)
        lab.set_prices({"gemini-embedding-001": listed * 10})
        assert lab.prices.price(space) == listed * 10
        assert lab.recorded_jobs() == []
        job = {"id": "job-1", "created": "2026-01-01T00:00:00", "state": "done"}
        lab.store.artifacts.put_heads(JOB, [job])
        assert lab.recorded_jobs() == [job]
