"""What the browser map reads, without a browser: the binary points and their head, the
self-contained map.html's data block, the neighbours it carries, and text search."""

from __future__ import annotations

import json
import re

import numpy as np
from embedlab.analyze.analysis import Analysis
from embedlab.analyze.html import render_map_html
from embedlab.analyze.mapdata import (
    NO_LABEL,
    find_in,
    map_head,
    map_points,
    nearest_rows,
)
from embedlab.store import Space

SPACE = Space("gemini", "gemini-embedding-001", "CLUSTERING", 8)


def analysis(n: int, labels: list[str | None], clusters: list[int], seed: int = 0) -> Analysis:
    rng = np.random.default_rng(seed)
    return Analysis(
        space=SPACE,
        ids=[f"doc/{i}" for i in range(n)],
        labels=labels,
        cluster_labels=np.array(clusters),
        coords=rng.normal(size=(n, 2)).astype(np.float32),
        metrics={"params": {"map": "PCA"}},
        clusters=[{"cluster": c, "terms": [f"t{c}a", f"t{c}b"]} for c in sorted(set(clusters))],
        options={"algorithm": "kmeans"},
        selection={},
        id="a1",
    )


def decode(head: dict, body: bytes) -> dict[str, np.ndarray]:
    """The page's own reading of the points (web/app.js loadAnalysis), in numpy."""
    n, code = head["documents"], np.dtype(head["encoding"]["code"]).newbyteorder("<")
    assert len(body) == head["encoding"]["bytes"] == n * (8 + 2 * code.itemsize)
    return {
        "x": np.frombuffer(body, "<f4", n, 0),
        "y": np.frombuffer(body, "<f4", n, 4 * n),
        "label": np.frombuffer(body, code, n, 8 * n),
        "cluster": np.frombuffer(body, code, n, 8 * n + code.itemsize * n),
    }


def test_points_decode_to_the_analysis_with_noise_and_missing_labels():
    labels = ["b", "a", None, "b", "a", None, "c"]
    clusters = [0, 1, -1, 0, 2, -1, 1]
    found = analysis(7, labels, clusters)
    head, body = map_head(found), map_points(found)
    points = decode(head, body)
    assert np.array_equal(points["x"], found.coords[:, 0])
    assert np.array_equal(points["y"], found.coords[:, 1])
    names = [row["name"] for row in head["labels"]]
    assert names == ["a", "b", "c", NO_LABEL]
    assert [names[c] for c in points["label"]] == [x or NO_LABEL for x in labels]
    assert [row["size"] for row in head["labels"]] == [2, 2, 1, 2]
    numbers = [row["cluster"] for row in head["clusters"]]
    assert numbers == [-1, 0, 1, 2]  # noise first
    assert [numbers[c] for c in points["cluster"]] == clusters
    assert head["clusters"][0]["name"] == "noise"
    assert head["clusters"][1]["name"] == "t0a, t0b"  # terms when nobody named it
    assert head["clusters"][2]["size"] == 2
    assert head["bounds"] == [
        *found.coords.min(axis=0).tolist(),
        *found.coords.max(axis=0).tolist(),
    ]


def test_more_than_256_categories_take_two_bytes_each():
    n = 600
    labels = [f"label-{i % 300:03d}" for i in range(n)]
    found = analysis(n, labels, [i % 3 for i in range(n)])
    head, body = map_head(found), map_points(found)
    assert head["encoding"]["code"] == "uint16"
    points = decode(head, body)
    names = [row["name"] for row in head["labels"]]
    assert [names[c] for c in points["label"]] == labels
    assert len(body) == n * 12


def test_an_empty_analysis_still_has_a_head_and_no_points():
    found = analysis(0, [], [])
    head = map_head(found)
    assert head["documents"] == 0 and map_points(found) == b""
    assert head["bounds"] == [0.0, 0.0, 1.0, 1.0]


def test_map_html_keeps_every_text_as_data():
    texts = [
        "</script><script>window.__pwned = 1</script>",
        "%SCRIPT% and %DATA% and %CSP%",
        "<!-- comment --> & <b>bold</b>",
    ]
    found = analysis(3, ["a", "b", "a"], [0, 1, 0])
    page = render_map_html(
        found, texts, nearest_rows(np.eye(3, dtype=np.float32), np.arange(3), 3, 2)
    )
    block = re.search(
        r'<script type="application/json" id="embedlab-data">(.*?)</script>', page, re.S
    )
    data = json.loads(block.group(1))
    assert data["texts"] == texts and data["ids"] == found.ids
    assert "<" not in block.group(1)  # nothing in the data can open or close an element
    assert page.count("<script") == 2  # the data block and the page's own script
    assert page.count("%SCRIPT%") == 1 and "%DATA%" in page  # only inside the data, escaped
    assert "connect-src 'none'" in page


def brute_force(vectors: np.ndarray, k: int) -> list[list[int]]:
    sims = vectors @ vectors.T
    out = []
    for i in range(len(vectors)):
        order = sorted((j for j in range(len(vectors)) if j != i), key=lambda j: (-sims[i, j], j))
        out.append(order[:k])
    return out


def test_neighbours_are_exact_with_ties_to_the_lower_row():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(5, 16)).astype(np.float32)
    vectors = np.repeat(base, 4, axis=0)  # every vector four times: many ties
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    positions, sims = nearest_rows(vectors, np.arange(20), 20, 6)
    assert positions.tolist() == brute_force(vectors, 6)
    assert np.allclose(sims[:, :3], 1.0, atol=1e-5)  # its three twins first


def test_neighbours_skip_missing_documents_and_pad_when_few():
    vectors = np.eye(3, dtype=np.float32)
    rows = np.array([0, 2, 3])  # position 1 of 4 has no vector (deleted)
    positions, _ = nearest_rows(vectors, rows, 4, 5)
    assert positions[1].tolist() == [-1] * 5
    assert all(row[2:].tolist() == [-1] * 3 for i, row in enumerate(positions) if i != 1)
    assert set(positions[0][:2].tolist()) == {2, 3}
    single, _ = nearest_rows(vectors[:1], np.array([0]), 1, 3)
    assert single.tolist() == [[-1, -1, -1]]


def test_text_search_finds_every_word_in_any_order_and_an_id_first():
    ids = ["a/1", "a/2", "b/1", "rocket"]
    texts = ["Rockets and ENGINES", "engines only", "rocket engine", "nothing"]
    assert find_in(ids, texts, "engines rocket") == [0]
    assert find_in(ids, texts, "ENGINE") == [0, 1, 2]
    assert find_in(ids, texts, "rocket") == [3, 0, 2]  # the exact id first
    assert find_in(ids, texts, "a/") == [0, 1]
    assert find_in(ids, texts, "   ") == []
    assert find_in(ids, texts, "engine", limit=2) == [0, 1]


def test_a_cluster_wears_its_class_colour_only_when_half_its_documents_carry_it():
    # cluster 0: 9 of 10 "autos"; cluster 1: 12 documents over 6 labels, matched to
    # "mideast" (2 of 12) by elimination; cluster 2: half "med" (the bound), -1 noise
    labels = ["autos"] * 9 + ["med"] + [f"l{i % 5}" for i in range(10)] + ["mideast"] * 2
    labels += ["med"] * 3 + ["autos"] * 2 + [None] + ["l0"] * 3
    clusters = [0] * 10 + [1] * 12 + [2] * 6 + [-1] * 3
    found = analysis(len(labels), labels, clusters)
    found.metrics["cluster_to_class"] = {"0": "autos", "1": "mideast", "2": "med"}
    rows = {row["cluster"]: row for row in map_head(found)["clusters"]}
    assert rows[0]["match"] == {"label": "autos", "share": 0.9, "wears_colour": True}
    poor = {"label": "mideast", "share": round(2 / 12, 6), "wears_colour": False}
    assert rows[1]["match"] == poor
    assert rows[2]["match"] == {"label": "med", "share": 0.5, "wears_colour": True}
    assert rows[-1]["match"] is None
    found.metrics.pop("cluster_to_class")  # no labels to match: no match
    assert all(row["match"] is None for row in map_head(found)["clusters"])


def test_the_png_maps_give_a_poorly_matched_cluster_its_own_colour_and_none_grey():
    # 16 classes (tab20, whose greys were classes 14 and 15); cluster i holds class i,
    # cluster 16 one document of each, matched to c15 by elimination; cluster 15 unmatched
    classes = [f"c{i:02d}" for i in range(16)]
    labels = [name for name in classes for _ in range(5)] + classes
    clusters = [i for i in range(16) for _ in range(5)] + [16] * 16
    found = analysis(len(labels), labels, clusters)
    found.metrics["cluster_to_class"] = {str(i): classes[i] for i in range(15)} | {"16": "c15"}

    def drawn(kind: str) -> dict[str, tuple[float, ...]]:
        axes = found.figure(kind).axes[0]
        return {
            c.get_label().rsplit(" (", 1)[0]: tuple(c.get_facecolor()[0][:3])
            for c in axes.collections
        }

    by_label, by_cluster = drawn("label"), drawn("cluster")
    assert len(set(by_label.values())) == 16
    assert all(len({round(v, 3) for v in rgb}) > 1 for rgb in by_label.values())  # no grey
    cluster = {int(name.split(":")[0][len("cluster ") :]): rgb for name, rgb in by_cluster.items()}
    for i in range(15):
        assert cluster[i] == by_label[classes[i]]
    assert cluster[16] not in by_label.values() and cluster[15] not in by_label.values()
    assert cluster[16] != cluster[15]
    assert all(len({round(v, 3) for v in rgb}) > 1 for rgb in cluster.values())


def test_metadata_fields_are_coded_per_point_with_the_bookkeeping_left_out():
    import base64

    from embedlab.analyze.mapdata import FIELD_VALUES, map_fields

    ids = ["a", "b", "c", "d", "gone"]
    stored = {
        "a": {"source": "feed-x", "label": "l", "content_hash": "h", "chars": 3, "team": 2},
        "b": {"source": "feed-y", "label": "l", "content_hash": "h", "chars": 4, "team": 2},
        "c": {"source": "feed-y", "label": None, "content_hash": "h", "chars": 5, "team": None},
        "d": {"source": "feed-y", "label": "m", "content_hash": "h", "chars": 6, "truncated": True},
    }
    found = map_fields(ids, stored)
    assert found["documents"] == 5
    fields = {f["name"]: f for f in found["fields"]}
    assert sorted(fields) == ["source", "team"]  # a user column too; label and hash not

    def codes(field):
        return list(base64.b64decode(field["codes"]))

    source, team = fields["source"], fields["team"]
    assert [(v["name"], v["size"]) for v in source["values"]] == [
        ("feed-y", 3),
        ("feed-x", 1),
        ("(none)", 1),  # a document no longer stored
    ]
    assert codes(source) == [1, 0, 0, 0, 2]
    assert [(v["name"], v["size"]) for v in team["values"]] == [("2", 2), ("(none)", 3)]
    assert codes(team) == [0, 0, 1, 1, 1]
    # past FIELD_VALUES values: the biggest FIELD_VALUES - 1 and one "other"
    many = [f"d{i}" for i in range(200)]
    wide = map_fields(
        many, {d: {"user": f"v{i // 2}" if i < 10 else f"w{i}"} for i, d in enumerate(many)}
    )
    (user,) = wide["fields"]
    assert len(user["values"]) == FIELD_VALUES
    assert user["values"][0] == {"code": 0, "name": "v0", "size": 2}
    assert (
        user["values"][-1]["name"] == f"other ({195 - (FIELD_VALUES - 1)} values)"
    )  # 195 distinct
    assert sum(v["size"] for v in user["values"]) == 200
