"""lab.update: new documents placed on the stored map and clusters, old points fixed.

A generated corpus of three known groups written straight into a real embedded store;
real openTSNE / UMAP / scikit-learn. Vectors are written by the test, never embedded:
the Lab has no provider here, so an update that tried to embed would fail.
"""

import numpy as np
import pytest
from embedlab.analyze.update import NOISE
from embedlab.errors import InvalidRequest, NotFound
from embedlab.lab import Lab
from embedlab.store import Document, Space

from tests.builders import CENTRES, GROUPS, SPACE, docs_for, write


@pytest.fixture
def lab(store):
    for group in GROUPS:
        write(store, group, 0, 30)
    return Lab(store, quiet=True)


def rows(analysis):
    return {i: (tuple(analysis.coords[j].tolist()), int(analysis.cluster_labels[j]))
            for j, i in enumerate(analysis.ids)}  # fmt: skip


def test_update_places_new_documents_and_keeps_old_ones_exactly(lab, store):
    a = lab.analyze(k=3, reduce="tsne", seed=0)
    write(store, "space", 30, 3)
    write(store, "med", 30, 2)
    store.collection(SPACE).delete(["syn/crypt/000"])
    b = lab.update(a)
    assert b.parent == a.id and b.id != a.id
    report = b.update_report
    assert (report["kept"], report["added"], report["removed"], report["changed"]) == (
        89, 5, 1, 0,
    )  # fmt: skip
    assert report["refit_advised"] is False, report["drift"]
    old, new = rows(a), rows(b)
    for doc_id in old:
        if doc_id != "syn/crypt/000":
            assert new[doc_id] == old[doc_id]  # bit for bit: same float32 coords, same cluster
    assert "syn/crypt/000" not in new and len(b.ids) == 94
    # the new documents join their group's cluster and land beside their group on the map
    cluster_of = {g: old[f"syn/{g}/001"][1] for g in GROUPS}
    for doc_id in ("syn/space/030", "syn/space/031", "syn/space/032", "syn/med/030"):
        group = doc_id.split("/")[1]
        assert new[doc_id][1] == cluster_of[group]
        point = np.array(new[doc_id][0])
        dists = np.linalg.norm(a.coords - point, axis=1)
        nearest = [a.ids[j].split("/")[1] for j in np.argsort(dists)[:5]]
        assert nearest.count(group) >= 4, nearest
    assert sorted(b.placed) == ["syn/med/030", "syn/med/031", "syn/space/030",
                                "syn/space/031", "syn/space/032"]  # fmt: skip
    assert b.metrics["per_class"]["space"]["size"] == 33
    assert b.metrics["params"]["update"] == {"parent": a.id, "placed": 5, "refit": False}
    # stored, and reopened with its parent and report
    lab._analyses.clear()
    again = lab.analysis(b.id)
    assert again.parent == a.id and again.update_report == report
    assert rows(again) == new
    assert lab.successor(a.id) == b.id and lab.successor(b.id) is None


def test_update_without_change_equals_its_parent(lab):
    a = lab.analyze(k=3, reduce="pca", seed=0)
    b = lab.update(a.id)
    assert (b.update_report["kept"], b.update_report["added"]) == (90, 0)
    assert b.ids == a.ids
    assert np.array_equal(b.coords, a.coords)
    assert np.array_equal(b.cluster_labels, a.cluster_labels)
    for key in ("hungarian_accuracy", "ari", "nmi", "per_class", "confusion", "silhouette"):
        assert b.metrics[key] == a.metrics[key]
    assert [c["terms"] for c in b.clusters] == [c["terms"] for c in a.clusters]


def test_changed_text_is_placed_again(lab, store):
    a = lab.analyze(k=3, reduce="pca", seed=0)
    # syn/med/005 now reads like a space post: new text, new vector, same id
    docs, vectors = docs_for("space", 5, 1, seed=3)
    moved = Document("syn/med/005", docs[0].text, "synthetic", "med")
    store.collection(SPACE).write([moved], vectors, [False])
    b = lab.update(a)
    assert (b.update_report["changed"], b.update_report["kept"]) == (1, 89)
    j = b.ids.index("syn/med/005")
    space_cluster = rows(a)["syn/space/001"][1]
    assert int(b.cluster_labels[j]) == space_cluster
    assert b.placed == ["syn/med/005"]


def test_pca_placement_is_the_stored_projection(lab, store):
    from sklearn.decomposition import PCA

    a = lab.analyze(k=3, reduce="pca", seed=0)
    _, old_vectors = (None, lab.vectors()[1])
    write(store, "crypt", 30, 4)
    b = lab.update(a)
    pca = PCA(n_components=2, random_state=0).fit(old_vectors)
    docs, vectors = docs_for("crypt", 30, 4)
    expected = pca.transform(vectors)
    got = b.coords[[b.ids.index(d.id) for d in docs]]
    assert np.allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("algorithm", ["hdbscan", "dbscan", "dbscan-full", "agglomerative"])
def test_density_and_hierarchical_assign_nearest_cluster_or_noise(lab, store, algorithm):
    extra = {"min_cluster_size": 5} if algorithm != "agglomerative" else {"k": 3}
    if algorithm == "dbscan-full":  # eps a cosine distance between the vectors
        algorithm, extra["eps"], extra["cluster_dims"] = "dbscan", 0.3, 0
    a = lab.analyze(algorithm=algorithm, reduce="pca", seed=0, **extra)
    write(store, "space", 30, 2)
    # a document far from every group: noise
    far = np.zeros((1, 16), dtype=np.float32)
    far[0, :] = -np.sum([CENTRES[g] for g in GROUPS], axis=0)
    far /= np.linalg.norm(far)
    store.collection(SPACE).write([Document("syn/far", "nothing alike", "synthetic", "space")],
                                  far, [False])  # fmt: skip
    b = lab.update(a)
    assert b.update_report["added"] == 3
    new = rows(b)
    assert new["syn/far"][1] == NOISE
    space_cluster = rows(a)["syn/space/001"][1]
    assert space_cluster != NOISE
    assert new["syn/space/030"][1] == space_cluster
    assert b.update_report["drift"]["noise_new"] == pytest.approx(1 / 3, abs=1e-6)


def test_umap_placement_lands_by_the_group(lab, store):
    a = lab.analyze(k=3, reduce="umap", seed=0)
    write(store, "med", 30, 3)
    b = lab.update(a)
    old, new = rows(a), rows(b)
    assert all(new[i] == old[i] for i in old)
    med = np.array([a.coords[j] for j, i in enumerate(a.ids) if "/med/" in i])
    others = np.array([a.coords[j] for j, i in enumerate(a.ids) if "/med/" not in i])
    for i in ("syn/med/030", "syn/med/031", "syn/med/032"):
        point = np.array(new[i][0])
        assert (
            np.linalg.norm(med - point, axis=1).min() < np.linalg.norm(others - point, axis=1).min()
        )


def test_words_view_features_use_the_stored_vocabulary(lab, store):
    a = lab.analyze(k=3, reduce="pca", seed=0, text_weight=1.0)
    assert "text_components" in a.reference["arrays"]
    write(store, "crypt", 30, 3)
    b = lab.update(a)
    crypt = rows(a)["syn/crypt/001"][1]
    assert [rows(b)[f"syn/crypt/{i:03d}"][1] for i in (30, 31, 32)] == [crypt] * 3


def test_refit_keeps_cluster_numbers_and_reports_disparity(lab, store):
    a = lab.analyze(k=3, reduce="tsne", seed=0)
    for group in GROUPS:
        write(store, group, 30, 3)
    c = lab.update(a, refit=True)
    report = c.update_report
    assert report["added"] == 9 and report["refit"] == "asked"
    assert report["kept_cluster_share"] == 1.0
    assert 0.0 <= report["disparity"] < 0.5
    assert c.placed == [] and c.reference["settings"]["placed_since_fit"] == 0
    old = rows(a)
    kept = [c.ids.index(i) for i in old]
    assert [int(c.cluster_labels[j]) for j in kept] == [old[i][1] for i in old]


def test_a_new_analysis_of_a_selection_analysed_before_starts_from_it(lab, store):
    a = lab.analyze(k=3, reduce="tsne", seed=0)
    for group in GROUPS:
        write(store, group, 30, 3)
    b = lab.analyze(k=3, reduce="tsne", seed=0)  # the documents changed: fit from a
    assert b.parent == a.id and b.id != a.id and not b.reused
    report = b.update_report
    assert (report["kept"], report["added"], report["removed"]) == (90, 9, 0)
    assert report["refit"].startswith(f"started from analysis {a.id}")
    assert report["kept_cluster_share"] == 1.0 and 0.0 <= report["disparity"] < 0.5
    old = rows(a)
    kept = [b.ids.index(i) for i in old]
    assert [int(b.cluster_labels[j]) for j in kept] == [old[i][1] for i in old]
    # the same request again is identical to b: reused, nothing computed
    again = lab.analyze(k=3, reduce="tsne", seed=0)
    assert again.reused and again.id == b.id
    # fresh=True fits from scratch: what an analysis with no history gives
    fresh = lab.analyze(k=3, reduce="tsne", seed=0, fresh=True)
    assert fresh.parent is None and fresh.update_report is None and not fresh.reused
    other = Lab(store, quiet=True)
    for head in other.records.analyses.heads(SPACE.collection_name):
        other.delete_analysis(head["id"])
    scratch = other.analyze(k=3, reduce="tsne", seed=0)
    assert scratch.parent is None
    assert np.array_equal(scratch.cluster_labels, fresh.cluster_labels)
    assert np.array_equal(scratch.coords, fresh.coords)


def test_other_options_or_k_auto_start_afresh(lab, store):
    lab.analyze(k=3, reduce="pca", seed=0)
    write(store, "med", 30, 2)
    assert lab.analyze(k=4, reduce="pca", seed=0).parent is None  # other options
    assert lab.analyze(k=3, reduce="pca", seed=1).parent is None  # another seed
    assert lab.analyze(k=3, reduce="pca", seed=0, labels="space").parent is None
    auto = lab.analyze(k="auto", reduce="pca", seed=0)
    write(store, "med", 32, 2)
    assert lab.analyze(k="auto", reduce="pca", seed=0).parent is None  # k stays free
    with pytest.raises(InvalidRequest, match="fresh must be true or false"):
        lab.analyze(k=3, reduce="pca", fresh="yes")
    assert auto.parent is None


def test_analysis_stored_before_updates_is_refitted(lab, store):
    a = lab.analyze(k=3, reduce="pca", seed=0)
    # what an analysis stored before this change looks like: no reference data
    head, payload = a.to_record()
    head.pop("reference")
    from embedlab.lab import ANALYSIS
    from embedlab.store.artifacts import pack_arrays, unpack_arrays

    arrays = {k: v for k, v in unpack_arrays(payload).items() if not k.startswith("ref_")}
    store.artifacts.put(ANALYSIS, a.id, head, pack_arrays(**arrays))
    lab._analyses.clear()
    old = lab.analysis(a.id)
    assert old.reference is None
    write(store, "med", 30, 2)
    b = lab.update(old)
    assert b.update_report["refit"].startswith("needed: it was stored before updates")
    assert b.update_report["added"] == 2 and b.update_report["kept_cluster_share"] == 1.0
    assert b.reference is not None  # and the next update can place


def test_drift_advises_a_refit_past_the_share(lab, store):
    a = lab.analyze(k=3, reduce="pca", seed=0)
    write(store, "space", 30, 25)  # 25 of 115 placed: over MAX_PLACED_SHARE
    b = lab.update(a)
    drift = b.update_report["drift"]
    assert drift["placed_share"] == pytest.approx(25 / 115, abs=1e-6)
    assert b.update_report["refit_advised"] is True
    assert 0 <= drift["preservation_new"] <= 1 and 0 <= drift["preservation_old"] <= 1
    assert drift["similarity_new"] > 0.5


def test_bad_updates_are_clear_errors(lab):
    with pytest.raises(NotFound):
        lab.update("no-such-analysis")
    a = lab.analyze(k=3, reduce="pca", seed=0)
    with pytest.raises(InvalidRequest, match="refit must be true or false"):
        lab.update(a, refit="yes")
    with pytest.raises(InvalidRequest, match="an Analysis or its id"):
        lab.update(42)


def test_cluster_names_come_from_the_cache_by_members_never_a_request(lab, store, monkeypatch):
    from embedlab.ingest.naming import PROMPT_VERSION
    from embedlab.store.names import NameCache, name_key

    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    a = lab.analyze(k=3, reduce="pca", seed=0)
    hashes = {m["id"]: m["content_hash"] for m in lab.documents().to_dict("records")}
    cache = NameCache(store.artifacts)
    for cluster in {int(c) for c in a.cluster_labels}:
        members = [hashes[i] for i, c in zip(a.ids, a.cluster_labels) if c == cluster]
        cache.put(name_key(members, PROMPT_VERSION, "m"), f"name {cluster}", "m", PROMPT_VERSION)
    a.naming = {"model": "m"}
    write(store, "space", 30, 1)
    b = lab.update(a)
    space = rows(a)["syn/space/001"][1]
    names = {int(c["cluster"]): (c["name"], c["name_source"]) for c in b.clusters}
    for cluster, (name, source) in names.items():
        if cluster == space:
            assert source == "terms"  # its members changed: no cached name, no request
        else:
            assert (name, source) == (f"name {cluster}", "m")
    assert b.naming["reused"] == 2 and b.naming["kept_terms"] == 1 and b.naming["requests"] == 0


def test_an_analysis_reusing_a_cached_map_keeps_its_pca_basis(store):
    # 60 documents of 64 dims: t-SNE reads a PCA-50 basis, which the map cache keeps too
    space = Space("fake", "wide", "none", 64)
    rng = np.random.default_rng(3)
    docs = [Document(f"w/{i:03d}", f"text {i}", "w", f"g{i % 3}") for i in range(60)]
    vectors = rng.normal(size=(60, 64)).astype(np.float32)
    store.collection(space, create=True).write(docs, vectors, [False] * 60)
    lab = Lab(store, quiet=True)
    a = lab.analyze(k=3, reduce="tsne", seed=0, space=space)
    b = lab.analyze(k=2, reduce="tsne", seed=0, space=space)
    assert b.map_cached and not a.map_cached
    assert a.reference["arrays"]["map_components"].shape == (50, 64)
    assert np.array_equal(
        a.reference["arrays"]["map_components"], b.reference["arrays"]["map_components"]
    )


def _two_groups_on_a_map(per_group: int = 40):
    """Old documents of two groups (unit vectors near e0 and e1, 8 dims) drawn as two
    blobs of a map, left and right, each laid out by two of its vectors' other
    coordinates (so map neighbours are mostly vector neighbours); seeded."""
    rng = np.random.default_rng(3)
    vectors, coords = [], []
    for axis, centre in ((0, (-10.0, 0.0)), (1, (10.0, 0.0))):
        v = rng.normal(scale=0.3, size=(per_group, 8))
        v[:, axis] += 3.0
        vectors.append(v)
        coords.append(np.array(centre) + 5 * v[:, 2:4])
    vectors = np.concatenate(vectors)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True), np.concatenate(coords)


def test_settle_moves_a_misplaced_point_among_its_nearest_documents():
    from embedlab.analyze.placement import SETTLE_K, nearest, settle

    old_vectors, old_coords = _two_groups_on_a_map()
    # a new document of the right-hand group, left by its layout among the left-hand group
    new = old_vectors[45] * 0.9 + old_vectors[46] * 0.1
    new = (new / np.linalg.norm(new))[None, :]
    wrong = old_coords[3][None, :] + 0.01
    settled = settle(old_vectors, old_coords, new, wrong)
    want, _ = nearest(new, old_vectors, SETTLE_K, metric="cosine")
    on_map, _ = nearest(settled, old_coords.astype(np.float32), SETTLE_K)
    before, _ = nearest(wrong, old_coords.astype(np.float32), SETTLE_K)
    assert len(set(before[0]) & set(want[0])) == 0  # where it was, none of them near
    # as many as the old documents of its blob keep about them on this map, on average
    own, _ = nearest(old_vectors[40:], old_vectors, SETTLE_K + 1, metric="cosine")
    drawn, _ = nearest(old_coords[40:].astype(np.float32), old_coords.astype(np.float32), 11)
    kept = np.mean([len(set(o[1:]) & set(d[1:])) for o, d in zip(own, drawn)])
    assert len(set(on_map[0]) & set(want[0])) >= kept, (on_map, want, kept)
    assert settled[0, 0] > 0  # on the right-hand blob
    # never on an old point's own spot (it would hide it), and the same answer every time
    assert np.linalg.norm(old_coords - settled[0], axis=1).min() > 0
    assert np.array_equal(settle(old_vectors, old_coords, new, wrong), settled)


def test_settle_leaves_a_well_placed_point_exactly_where_it_was():
    """A map that is the vectors' own geometry (points on a small cap of the sphere laid
    out by their two tilted coordinates): a new point put where its vector lies already
    has its 10 nearest documents about it, so no spot does better and it stays put."""
    from embedlab.analyze.placement import settle

    rng = np.random.default_rng(5)
    coords = rng.uniform(-1, 1, size=(200, 2))

    def on_cap(xy):
        v = np.zeros((len(xy), 8))
        v[:, 0], v[:, 1:3] = 1.0, 0.01 * xy
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    spots = np.array([[0.1, 0.2], [-0.5, 0.4], [0.7, -0.7]])
    settled = settle(on_cap(coords), coords, on_cap(spots), spots)
    assert np.array_equal(settled, spots)
    # the same points put far off are brought back among the same documents
    wrong = spots[::-1] * -1.0 + 0.05
    moved = settle(on_cap(coords), coords, on_cap(spots), wrong)
    assert np.all(np.linalg.norm(moved - spots, axis=1) < 0.25)
    assert settle(on_cap(coords), coords, on_cap(spots)[:0], spots[:0]).shape == (0, 2)


LOCAL = Space("local", "test-model", "none", 16)  # a space embedlab embeds from texts


def _write(store, space, group, start, n, seed=0):
    docs, vectors = docs_for(group, start, n, seed)
    store.collection(space, create=True).write(docs, vectors, [False] * len(docs))


@pytest.fixture
def counted_loads(monkeypatch):
    """The ids each SpaceCollection.load read from Chroma (the real load, counted)."""
    from embedlab.store.chroma_store import SpaceCollection

    read: list[str] = []
    real = SpaceCollection.load

    def counting(self, ids, *args, **kwargs):
        read.extend(ids)
        return real(self, ids, *args, **kwargs)

    monkeypatch.setattr(SpaceCollection, "load", counting)
    return read


def test_an_update_after_an_analysis_reads_only_what_is_new(store, counted_loads, monkeypatch):
    """The Lab keeps the corpus it last read: the update after an analysis reads from
    Chroma the vectors of new and changed documents only, and its result is what a
    fresh Lab (reading everything) computes. (No margin on the metadata read: the
    relabel and the deletion below are seen by their stamps and the ids alone.)"""
    from embedlab.store import chroma_store

    monkeypatch.setattr(chroma_store, "SOLE_WRITER_MARGIN_S", 0.0)
    for group in GROUPS:
        _write(store, LOCAL, group, 0, 30)
    lab = Lab(store, quiet=True)
    a = lab.analyze(space=LOCAL, k=3, reduce="tsne", seed=0)
    _write(store, LOCAL, "space", 30, 3)  # three new documents
    _write(store, LOCAL, "med", 0, 1, seed=1)  # syn/med/000's text (and vector) changed
    store.collection(LOCAL).delete(["syn/crypt/000"])
    vectors, _, texts = store.collection(LOCAL).load(["syn/space/001"])
    relabelled = Document("syn/space/001", texts[0], "synthetic", "astro")  # same text
    store.collection(LOCAL).write([relabelled], vectors, [False])
    counted_loads.clear()
    b = lab.update(a)
    assert sorted(counted_loads) == [
        "syn/med/000", "syn/space/030", "syn/space/031", "syn/space/032",
    ]  # fmt: skip
    assert b.update_report["changed"] == 1 and b.update_report["added"] == 3
    assert b.labels[b.ids.index("syn/space/001")] == "astro"  # labels as the store has them now
    counted_loads.clear()
    fresh = Lab(store, quiet=True).update(a)
    assert len(counted_loads) == len(fresh.ids) == 92  # a new Lab reads every document
    assert fresh.ids == b.ids and fresh.labels == b.labels
    assert np.array_equal(fresh.coords, b.coords)
    assert np.array_equal(fresh.cluster_labels, b.cluster_labels)
    assert fresh.metrics == b.metrics
    assert fresh.clusters == b.clusters


def test_vectors_a_user_brought_are_read_again_on_every_load(lab, store, counted_loads):
    """In a space of the user's own vectors one text can get a new vector (same hash):
    the Lab reads every vector again, so the update sees the new one."""
    a = lab.analyze(k=3, reduce="pca", seed=0)
    vectors, _, texts = store.collection(SPACE).load(["syn/space/001"])
    moved = -vectors  # same text, another vector: it now belongs nowhere near space
    store.collection(SPACE).write(
        [Document("syn/space/001", texts[0], "synthetic", "space")], moved, [False]
    )
    counted_loads.clear()
    b = lab.update(a)
    assert len(counted_loads) == 90  # every vector read again, the moved one among them
    assert b.update_report["changed"] == 0  # same text: it keeps its place on the map
    assert b.metrics["silhouette"] != a.metrics["silhouette"]  # measured with the new vector
    assert b.metrics == Lab(store, quiet=True).update(a).metrics


def test_the_drift_sample_carried_through_updates_stays_exact(store, monkeypatch):
    """The old documents' neighbourhoods the drift figure compares are kept in the
    reference and only merged with what changed: after an update that adds, changes and
    removes documents (one of them among a sampled document's nearest), every sampled
    document's nearest are exactly what a search over the corpus now finds, and the
    figure is the one computed from scratch."""
    from embedlab.analyze import reference
    from embedlab.analyze.reference import nearest_others
    from embedlab.analyze.update import preservation

    monkeypatch.setattr(reference, "SAMPLE_SIZE", 40)  # 40 of the 90 documents
    for group in GROUPS:
        _write(store, LOCAL, group, 0, 30)
    lab = Lab(store, quiet=True)
    a = lab.analyze(space=LOCAL, k=3, reduce="tsne", seed=0)
    before = a.reference["arrays"]
    assert before["sample_neighbours"].shape == (40, 10)
    gone = a.ids[int(before["sample_neighbours"][0][0])]  # someone's nearest document
    _write(store, LOCAL, "space", 30, 6)  # new, near the space documents
    _write(store, LOCAL, "med", 0, 2, seed=1)  # changed texts
    store.collection(LOCAL).delete([gone])
    b = lab.update(a)
    after = b.reference["arrays"]
    ids, vectors = lab.vectors(LOCAL)
    assert ids == b.ids
    rows = after["sample_rows"]
    sampled = {b.ids[r] for r in rows.tolist()}
    old_sampled = {a.ids[r] for r in before["sample_rows"].tolist()}
    assert sampled == old_sampled - {gone, "syn/med/000", "syn/med/001"}  # the same documents
    expected, similarity = nearest_others(vectors, rows)
    assert [set(r) for r in after["sample_neighbours"].tolist()] == [
        set(r) for r in expected.tolist()
    ]
    assert np.allclose(
        np.sort(after["sample_similarity"], axis=1), np.sort(similarity, axis=1), atol=1e-6
    )
    new_rows = {b.ids.index(i) for i in b.placed}
    assert any(set(r) & new_rows for r in after["sample_neighbours"].tolist())  # merged in
    assert b.update_report["drift"]["preservation_old"] == preservation(vectors, b.coords, rows)
