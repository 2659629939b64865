"""The library API (`import embedlab`), tested directly: real Chroma, real SDK + fake server."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import embedlab
import numpy as np
import pandas as pd
import pytest
from embedlab.ingest.pipeline import IngestCancelled
from embedlab.store import Store

from tests.builders import SPACE, grouped_corpus
from tests.conftest import CountingProvider, make_docs
from tests.fake_gemini import Fault


def topic_frame(n: int, prefix: str = "") -> pd.DataFrame:
    topics = ["space", "med", "crypt"]
    return pd.DataFrame(
        {
            "id": [f"{prefix}post-{i}" for i in range(n)],
            "body": [f"post {i} about topic:{topics[i % 3]} {prefix}" for i in range(n)],
            "topic": [topics[i % 3] for i in range(n)],
        }
    )


@pytest.fixture
def grouped_lab(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    with embedlab.open(store_path, quiet=True) as lab:
        yield lab


def test_dataframe_ingest_through_the_real_sdk_costs_exact_requests(store_path, gemini):
    frame = topic_frame(250)
    with embedlab.open(store_path, quiet=True) as lab:
        report = lab.ingest(frame, text="body", id="id", label="topic", batch_size=100)
        assert (report.documents, report.embedded, report.requests) == (250, 250, 3)
        assert report.ids == [f"post-{i}" for i in range(250)]
        assert sorted(len(r.texts) for r in gemini.requests) == [50, 100, 100]
        assert {t for r in gemini.requests for t in r.task_types} == {"CLUSTERING"}

        again = lab.ingest(frame, text="body", id="id", label="topic")
        assert (again.cached, again.embedded, again.requests) == (250, 0, 0)
        assert len(gemini.requests) == 3

        frame.loc[[3, 7], "body"] = ["a new text topic:med", "another new text topic:space"]
        changed = lab.ingest(frame, text="body", id="id", label="topic")
        assert (changed.embedded, changed.requests, changed.changed) == (2, 1, 2)
        assert gemini.requests[-1].texts == ["a new text topic:med", "another new text topic:space"]

        docs = lab.documents()
        assert len(docs) == 250 and list(docs.columns) == [
            "id",
            "label",
            "source",
            "text",
            "content_hash",
            "chars",
            "fields",  # each one's own fields: none here (every column is named)
        ]
        assert docs.set_index("id").loc["post-3", "fields"] == {}
        assert docs.set_index("id").loc["post-3", "text"] == "a new text topic:med"
        assert docs.set_index("id").loc["post-4", "label"] == "med"
        ids, vectors = lab.vectors(labels="med")
        assert len(ids) == 83 and vectors.dtype == np.float32 and vectors.shape == (83, 3072)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_plain_strings_and_dicts(store_path, gemini):
    with embedlab.open(store_path, quiet=True) as lab:
        report = lab.ingest(["first text", "second text", "first text", "   "])
        assert report.documents == 2 and report.skipped == {"empty text": 1, "duplicate id": 1}
        assert all(i.startswith("text/") for i in report.ids)
        rows = [
            {"id": "a", "text": "alpha topic:x", "label": "x"},
            {"id": "b", "text": None},
            {"id": "c", "text": "gamma topic:y", "label": "y"},
        ]
        report = lab.ingest(rows)
        assert report.ids == ["a", "c"] and report.skipped == {"no text": 1}
        assert report.requests == 1  # both new texts in one batch
        docs = lab.documents(labels=["x", "y"]).set_index("id")
        assert docs.loc["a", "label"] == "x" and docs.loc["c", "source"] == "python"
        with pytest.raises(embedlab.InvalidRequest, match="no text column 'body'"):
            lab.ingest(pd.DataFrame({"text": ["x"]}), text="body")
        with pytest.raises(embedlab.InvalidRequest):
            lab.ingest("just one string, not a list")


def test_stored_analysis_round_trip_and_listing(grouped_lab, store_path, tmp_path):
    a = grouped_lab.analyze(k=3, seed=0, reduce="pca")  # the map is not the subject
    assert a.id and a.created
    assert a.metrics["hungarian_accuracy"] == 1.0
    assert list(a.points.columns) == ["id", "label", "cluster", "x", "y"] and len(a.points) == 90
    assert a.per_class["share"].tolist() == [1.0, 1.0, 1.0]
    assert a.confusion.values.sum() == 90
    assert repr(a).startswith(f"<Analysis id={a.id!r}, fake:fake-model")
    grouped_lab.close()

    with embedlab.open(store_path, quiet=True) as lab:  # another process would see the same
        b = lab.analysis(a.id)
        pd.testing.assert_frame_equal(a.points, b.points)
        assert b.metrics == a.metrics and b.clusters == a.clusters
        assert b.options == a.options and b.selection == a.selection
        listed = lab.analyses()
        assert listed["id"].tolist() == [a.id]
        assert listed.loc[0, "hungarian_accuracy"] == 1.0 and listed.loc[0, "k"] == 3
        files = b.save(tmp_path / "report")
        assert "report.md" in files and (tmp_path / "report" / "points.csv").is_file()
        lab.delete_analysis(a.id)
        assert lab.analyses().empty
        with pytest.raises(embedlab.NotFound):
            lab.analysis(a.id)
        with pytest.raises(embedlab.NotFound):
            lab.delete_analysis(a.id)


def test_second_analysis_of_the_same_documents_reuses_the_map(grouped_lab):
    # PCA: the cache is the subject, not the method (the key holds the method: map_key)
    first = grouped_lab.analyze(k=3, seed=0, reduce="pca")
    second = grouped_lab.analyze(k=5, seed=0, reduce="pca")
    assert not first.map_cached and second.map_cached
    assert second.timings["map"] == 0.0
    assert np.array_equal(first.coords, second.coords)
    assert len(set(second.cluster_labels.tolist())) == 5
    other_seed = grouped_lab.analyze(k=3, seed=1, reduce="pca")
    other_docs = grouped_lab.analyze(k=3, seed=0, labels=["space", "med"], reduce="pca")
    assert not other_seed.map_cached and not other_docs.map_cached
    hdb = grouped_lab.analyze(algorithm="hdbscan", seed=0, reduce="pca")
    assert hdb.map_cached  # the algorithm does not change the map
    assert [row for row in grouped_lab.analyses()["id"]][0] == hdb.id  # newest first


def test_neighbours_take_clusters_from_the_chosen_analysis(grouped_lab, monkeypatch):
    import embedlab.ingest.providers

    monkeypatch.setattr(
        embedlab.ingest.providers, "make_provider", lambda *a, **k: pytest.fail("provider built")
    )
    found = grouped_lab.neighbours(id="syn/med/004", k=5)
    assert list(found.columns) == ["rank", "id", "similarity", "label", "cluster", "text"]
    assert found["label"].tolist() == ["med"] * 5 and found["cluster"].isna().all()
    assert "syn/med/004" not in found["id"].tolist() and found.attrs["requests"] == 0
    three = grouped_lab.analyze(k=3, reduce="pca")  # the map is not the subject
    two = grouped_lab.analyze(k=2, reduce="pca")
    latest = grouped_lab.neighbours(id="syn/med/004", k=5)
    by_three = grouped_lab.neighbours(id="syn/med/004", k=5, analysis=three.id)
    cluster_of = dict(zip(two.ids, two.cluster_labels.tolist()))
    assert latest["cluster"].tolist() == [cluster_of[i] for i in latest["id"]]
    cluster_of = dict(zip(three.ids, three.cluster_labels.tolist()))
    assert by_three["cluster"].tolist() == [cluster_of[i] for i in by_three["id"]]

    _, vectors = grouped_lab.vectors()
    ids, _ = grouped_lab.vectors()
    by_vector = grouped_lab.neighbours(vector=vectors[ids.index("syn/med/004")] * 3.0, k=3)
    assert by_vector["id"].iloc[0] == "syn/med/004" and by_vector["similarity"].iloc[0] > 0.999
    with pytest.raises(embedlab.InvalidRequest, match="exactly one"):
        grouped_lab.neighbours(id="syn/med/004", text="x")
    with pytest.raises(embedlab.InvalidRequest, match="16 finite numbers"):
        grouped_lab.neighbours(vector=[1.0, 2.0])
    with pytest.raises(embedlab.NotFound):
        grouped_lab.neighbours(id="no/such/id")
    with pytest.raises(embedlab.InvalidRequest, match="empty"):
        grouped_lab.neighbours(text="   ")


def test_text_queries_build_the_provider_once(store_path, gemini, monkeypatch):
    import embedlab.ingest.providers as providers

    built = []
    real = providers.make_provider
    monkeypatch.setattr(
        providers, "make_provider", lambda *a, **k: built.append(a) or real(*a, **k)
    )
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest(topic_frame(30), text="body", label="topic")
        first = lab.neighbours(text="a question about topic:med", k=3)
        second = lab.neighbours(text="another question about topic:space", k=3)
        repeat = lab.neighbours(text="a question about topic:med", k=3)
    assert len(built) == 1  # one provider for the ingest and every query
    assert (first.attrs["requests"], second.attrs["requests"], repeat.attrs["requests"]) == (
        1,
        1,
        0,
    )
    assert set(first["label"]) == {"med"} and set(second["label"]) == {"space"}


def test_options_are_validated_with_specific_errors(grouped_lab):
    cases = [
        (dict(algorithm="hdbscan", k=3), "k does not apply to hdbscan"),
        (dict(algorithm="kmeans", eps=0.3), "eps applies to dbscan only"),
        (dict(k=0), "k must be a number of clusters"),
        (dict(algorithm="spectral"), "unknown algorithm 'spectral'"),
        (dict(reduce="mds"), "unknown map method 'mds'"),
        (dict(limit=0), "limit must be at least 1"),
        (dict(k=500), "k=500 needs at least 500 documents"),
        (dict(labels=["nope*"]), "no documents in fake:fake-model"),
        (dict(space="gemini:gemini-embedding-001"), "no space matches"),
    ]
    for kwargs, message in cases:
        with pytest.raises(embedlab.InvalidRequest, match=message):
            grouped_lab.analyze(**kwargs)
    assert issubclass(embedlab.NotFound, embedlab.EmbedlabError)
    assert issubclass(embedlab.StoreBusy, embedlab.EmbedlabError)
    assert issubclass(IngestCancelled, embedlab.Cancelled)


def test_figures_leave_pyplot_and_the_backend_alone(grouped_lab):
    import matplotlib
    import matplotlib.pyplot as plt

    backend = matplotlib.get_backend()
    before = plt.get_fignums()
    a = grouped_lab.analyze(k=3, reduce="pca")  # the figures are the subject, not the map
    for kind in ("label", "cluster", "confusion"):
        fig = a.figure(kind)
        assert isinstance(fig, matplotlib.figure.Figure) and fig.axes
    assert plt.get_fignums() == before and matplotlib.get_backend() == backend
    with pytest.raises(embedlab.InvalidRequest, match="k='auto'"):
        a.figure("silhouette")


def test_progress_goes_to_the_callback_or_nowhere(grouped_lab, capsys):
    events = []
    grouped_lab.analyze(k=3, reduce="pca", on_progress=events.append)
    assert [e.status for e in events] == [
        "load",
        "cluster",
        "map",
        "evaluate",
        "describe",
        "store",
        "done",
    ]
    assert events[-1].done == events[-1].total == 6
    grouped_lab.analyze(k=3, reduce="pca", quiet=True)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


class SlowProvider(CountingProvider):
    """Each call takes `delay` seconds; counts calls like CountingProvider."""

    def __init__(self, delay: float):
        super().__init__()
        self.delay = delay

    def embed(self, texts):
        time.sleep(self.delay)
        return super().embed(texts)


def use_provider(lab, provider) -> None:
    """Make `lab` embed with a counting fake, as it would with a provider it had built."""
    lab._providers[(provider.space, 60.0)] = provider
    lab.embedding_choice = lambda *a, **k: embedlab.EmbeddingChoice(provider.space, "test")


def test_cancel_stops_an_ingest_keeps_what_returned_and_resumes(store_path):
    provider = SlowProvider(0.2)
    docs = make_docs(200)
    cancel = embedlab.CancelToken()
    with embedlab.open(store_path, quiet=True) as lab:
        use_provider(lab, provider)
        threading.Timer(0.7, cancel.cancel).start()
        started = time.monotonic()
        with pytest.raises(IngestCancelled) as raised:
            lab.ingest_documents(docs, batch_size=10, concurrency=2, cancel=cancel)
        assert time.monotonic() - started < 0.7 + 0.2 + 0.5  # about one request, not all
        saved = raised.value.report.embedded
        assert 0 < saved < 200 and saved % 10 == 0
        assert len(lab.documents(space=provider.space)) == saved
        sent_before = len(provider.texts_embedded)
        assert sent_before <= saved + 2 * 10  # at most the two batches in flight were lost
        kept = set(lab.documents(space=provider.space)["text"])

        provider.delay = 0.0  # the delay only had to keep the first ingest mid-way
        rest = lab.ingest_documents(docs, batch_size=10, concurrency=2)
        assert (rest.cached, rest.embedded) == (saved, 200 - saved)
        stored = set(lab.documents(space=provider.space)["text"])
        assert stored == {d.text for d in docs}
        resent = set(provider.texts_embedded[:sent_before]) & set(
            provider.texts_embedded[sent_before:]
        )
        # only texts whose answer never landed were paid for again (with two requests in
        # flight, the later one may have landed and the earlier not: go by what was kept)
        assert resent.isdisjoint(kept)


def test_a_retry_storm_is_cancelled_within_one_request(store_path, gemini):
    gemini.faults.extend([Fault(status=503, retry_after=30)] * 20)
    cancel = embedlab.CancelToken()
    with embedlab.open(store_path, quiet=True) as lab:
        threading.Timer(0.5, cancel.cancel).start()
        started = time.monotonic()
        with pytest.raises(IngestCancelled):
            lab.ingest(topic_frame(20), text="body", cancel=cancel, timeout=5)
        assert time.monotonic() - started < 3  # not the 30 s Retry-After


def test_reads_run_while_an_ingest_writes(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    provider = SlowProvider(0.05)
    with embedlab.open(store_path, quiet=True) as lab:
        lab.analyze(k=3, reduce="pca")  # the map is not the subject
        use_provider(lab, provider)
        result = {}
        writer = threading.Thread(
            target=lambda: result.setdefault(
                "report", lab.ingest_documents(make_docs(400), batch_size=10)
            )
        )
        writer.start()
        reads = 0
        while writer.is_alive():
            assert len(lab.neighbours(id="syn/med/004", k=5, space=SPACE)) == 5
            assert lab.stats()["spaces"]
            assert len(lab.documents(space=SPACE)) == 90
            assert len(lab.analyses()) == 1
            reads += 1
        writer.join()
        assert reads >= 3, "the ingest ended before the reads could overlap it"
        assert result["report"].embedded == 400


def test_one_import_name_survives_a_folder_with_its_own_store_and_cli(tmp_path):
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "__init__.py").write_text("raise ImportError('the user store')\n")
    (tmp_path / "cli.py").write_text("raise ImportError('the user cli')\n")
    (tmp_path / "analyze").mkdir()
    (tmp_path / "analyze" / "__init__.py").write_text("X = 'the user analyze'\n")
    code = (
        "import embedlab, embedlab.cli, embedlab.store, embedlab.analyze.run, analyze; "
        "print(embedlab.store.Store.__module__, analyze.X)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "embedlab.store.chroma_store the user analyze"


def test_the_same_api_over_a_chroma_server(chroma_server, gemini):
    """Analyses, the map cache and neighbours live in the store: a Chroma server too."""
    with embedlab.open(chroma_url=chroma_server, quiet=True) as lab:
        report = lab.ingest(topic_frame(60), text="body", label="topic")
        assert (report.embedded, report.requests) == (60, 1)
        first = lab.analyze(k=3, reduce="pca")
        assert first.metrics["hungarian_accuracy"] == 1.0
    with embedlab.open(chroma_url=chroma_server, quiet=True) as lab:
        second = lab.analyze(k=2, reduce="pca")
        assert second.map_cached and np.array_equal(first.coords, second.coords)
        assert lab.analyses()["id"].tolist() == [second.id, first.id]
        again = lab.analysis(first.id)
        pd.testing.assert_frame_equal(again.points, first.points)
        hits = lab.neighbours(id="post-4", k=3, analysis=first.id)
        cluster_of = dict(zip(first.ids, first.cluster_labels.tolist()))
        assert hits["cluster"].tolist() == [cluster_of[i] for i in hits["id"]]
        assert set(hits["label"]) == {"med"}


def test_frames_without_ids_never_overwrite_each_other(store_path, gemini):
    with embedlab.open(store_path, quiet=True) as lab:
        first = lab.ingest(pd.DataFrame({"text": ["alpha topic:a", "beta topic:b"]}))
        second = lab.ingest(pd.DataFrame({"text": ["gamma topic:c", "delta topic:d"]}))
        dicts = lab.ingest([{"text": "epsilon topic:e"}])
        assert second.changed == 0 and set(first.ids).isdisjoint(second.ids)
        assert all(i.startswith("text/") for i in first.ids + second.ids + dicts.ids)
        assert len(lab.documents()) == 5


def test_vectors_held_in_memory_answer_like_chroma_and_follow_ingests(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    with embedlab.open(store_path, quiet=True) as plain:
        expected = {
            (doc, labels): plain.neighbours(
                doc, k=7, labels=list(labels) if isinstance(labels, tuple) else labels, space=SPACE
            )
            for doc in ("syn/med/004", "syn/space/011")
            for labels in (None, "s*", ("med", "crypt"))
        }
    with embedlab.open(store_path, quiet=True, keep_vectors=True) as lab:
        assert lab.hold_vectors(SPACE)
        for (doc, labels), frame in expected.items():
            chosen = list(labels) if isinstance(labels, tuple) else labels
            held = lab.neighbours(doc, k=7, labels=chosen, space=SPACE)
            assert held["id"].tolist() == frame["id"].tolist()
            assert np.allclose(held["similarity"], frame["similarity"], atol=1e-5)
        provider = SlowProvider(0.0)
        use_provider(lab, provider)
        lab.ingest_documents(make_docs(30), batch_size=10)
        assert lab.hold_vectors(provider.space)
        lab.ingest_documents(make_docs(20, start=30), batch_size=10)
        # the new documents are in memory at once: a lookup by one of them finds its peers
        fresh = make_docs(20, start=30)[3].id
        assert lab._memory.vector(provider.space, fresh) is not None
        hits = lab.neighbours(fresh, k=5, space=provider.space)
        assert len(hits) == 5 and fresh not in hits["id"].tolist()
        ids, vectors = lab.vectors(space=provider.space)
        assert len(ids) == 50 and vectors.shape == (50, provider.space.dims)
