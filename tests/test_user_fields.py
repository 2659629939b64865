"""A document's own fields (a CSV's or JSON object's other columns): stored beside the
bookkeeping under their prefix, updated without an embedding, offered to the map."""

from __future__ import annotations

import csv
import io
import json
import math

import embedlab
import pandas as pd
from embedlab.store.documents import MAX_FIELD_CHARS, MAX_FIELDS, USER_PREFIX, user_fields

from tests.conftest import invoke_cli

AUTHORS = ["ann", "bob", "cy"]


def write_csv(path, authors):
    lines = ["id,text,label,year,author"]
    for i, author in enumerate(authors):
        topic = ["space", "med"][i % 2]
        lines.append(f"d{i},post {i} about topic:{topic},{topic},{2000 + i % 3},{author}")
    path.write_text("\n".join(lines) + "\n")


def stored_metadata(lab) -> dict:
    space = lab.space(None)
    collection = lab.store.collection(space)
    return dict(collection.iter_metadata())


def fields_of(lab) -> dict:
    return lab.documents().set_index("id")["fields"].to_dict()


def test_csv_columns_are_kept_mapped_and_updated_without_embedding(store_path, gemini, tmp_path):
    posts = tmp_path / "posts.csv"
    authors = [AUTHORS[i % 3] for i in range(9)]
    write_csv(posts, authors)
    with embedlab.open(store_path, quiet=True) as lab:
        first = lab.ingest_path(posts, id="id", label="label")
        assert first.embedded == 9
        assert fields_of(lab)["csv/posts/d4"] == {"year": "2001", "author": "bob"}  # text
        meta = stored_metadata(lab)["csv/posts/d4"]
        assert meta["label"] == "space" and meta[f"{USER_PREFIX}author"] == "bob"

        analysis = lab.analyze(k=2, seed=0, reduce="pca")
        fields = {f["name"]: f for f in lab.map_fields(analysis.id)["fields"]}
        assert sorted(fields) == ["author", "source", "year"]  # by their own names
        assert [(v["name"], v["size"]) for v in fields["author"]["values"]] == [
            ("ann", 3),
            ("bob", 3),
            ("cy", 3),
        ]

        before = stored_metadata(lab)
        requests = len(gemini.requests)
        authors[4] = "dee"
        write_csv(posts, authors)
        again = lab.ingest_path(posts, id="id", label="label")
        assert len(gemini.requests) == requests and again.requests == 0
        assert (again.cached, again.fields_updated, again.relabelled) == (9, 1, 0)
        assert "fields of 1 document updated (no embedding)" in again.summary()
        after = stored_metadata(lab)
        changed = {i for i in after if after[i] != before[i]}
        assert changed == {"csv/posts/d4"}
        assert after["csv/posts/d4"][f"{USER_PREFIX}author"] == "dee"

        unchanged = lab.ingest_path(posts, id="id", label="label")
        assert (unchanged.requests, unchanged.fields_updated) == (0, 0)
        assert stored_metadata(lab) == after


def test_jsonl_fields_keep_their_types_and_a_dropped_field_is_removed(store_path, gemini, tmp_path):
    path = tmp_path / "notes.jsonl"
    rows = [
        {"id": "a", "text": "alpha topic:x", "year": 1999, "author": "ann", "score": 0.5},
        {"id": "b", "text": "beta topic:y", "year": 2001, "author": None, "tags": ["t"]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest_path(path, id="id")
        found = fields_of(lab)
        # None and a list are no field; numbers stay numbers
        assert found == {
            "jsonl/notes/a": {"year": 1999, "author": "ann", "score": 0.5},
            "jsonl/notes/b": {"year": 2001},
        }
        del rows[0]["score"]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        again = lab.ingest_path(path, id="id")
        assert (again.requests, again.fields_updated) == (0, 1)
        assert fields_of(lab)["jsonl/notes/a"] == {"year": 1999, "author": "ann"}
        assert f"{USER_PREFIX}score" not in stored_metadata(lab)["jsonl/notes/a"]


def test_a_field_named_like_bookkeeping_cannot_overwrite_it(store_path, gemini, tmp_path):
    path = tmp_path / "evil.jsonl"
    row = {
        "id": "e",
        "text": "a text topic:z",
        "content_hash": "forged",
        "chars": 99999,
        "truncated": True,
        "source": "someone-else",
        "label": "sneaky",
    }
    path.write_text(json.dumps(row) + "\n")
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest_path(path, id="id")  # no label column named: "label" is a field too
        meta = stored_metadata(lab)["jsonl/evil/e"]
        assert meta["source"] == "jsonl/evil" and meta["chars"] == len("a text topic:z")
        assert meta["content_hash"] != "forged" and meta["truncated"] is False
        assert "label" not in meta  # no label
        assert meta[f"{USER_PREFIX}content_hash"] == "forged"
        assert meta[f"{USER_PREFIX}source"] == "someone-else"
        again = lab.ingest_path(path, id="id")  # the real hash still matches: free
        assert (again.cached, again.requests, again.fields_updated) == (1, 0, 0)
        analysis = lab.analyze(k=1, seed=0, reduce="pca")
        names = [f["name"] for f in lab.map_fields(analysis.id)["fields"]]
        # the user's "source" keeps its prefix beside the real source
        assert sorted(names) == sorted(
            ["chars", "content_hash", "label", "source", "truncated", f"{USER_PREFIX}source"]
        )


def test_dataframes_and_dicts_keep_their_other_columns(store_path, gemini):
    frame = pd.DataFrame(
        {
            "id": ["p1", "p2"],
            "body": ["first topic:a", "second topic:b"],
            "year": [2001, 2002],
            "rating": [4.5, float("nan")],
            "note": ["x" * 500, None],
        }
    )
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest(frame, text="body")
        lab.ingest(
            [{"id": "q", "text": "third topic:c", "source": "mine", "team": "red", "ok": True}]
        )
        found = fields_of(lab)
        assert found["p1"] == {"year": 2001, "rating": 4.5, "note": "x" * MAX_FIELD_CHARS}
        assert found["p2"] == {"year": 2002}  # NaN and None are no value
        assert found["q"] == {"team": "red", "ok": True}  # "source" is the document's source
        assert lab.document("q")["fields"] == {"team": "red", "ok": True}


def test_fields_past_the_limit_are_dropped_and_counted(store_path, gemini):
    wide = {"id": "w", "text": "wide topic:w", **{f"c{i:02d}": i for i in range(MAX_FIELDS + 5)}}
    kept, dropped = user_fields(wide, ("id", "text"))
    assert list(kept) == [f"c{i:02d}" for i in range(MAX_FIELDS)] and dropped == 5
    assert user_fields({"x": math.inf, "y": " ", "z": {"a": 1}}) == ({}, 0)
    with embedlab.open(store_path, quiet=True) as lab:
        report = lab.ingest([wide])
        assert report.fields_dropped == 1
        assert f"1 document with more than {MAX_FIELDS} fields" in report.summary()
        assert len(lab.document("w")["fields"]) == MAX_FIELDS


def test_export_carries_the_fields(store_path, gemini, tmp_path):
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest([{"id": "a", "text": "one topic:a", "year": 2001}, {"id": "b", "text": "two"}])
        lab.export(tmp_path / "out.jsonl", format="jsonl")
        rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert {r["id"]: r["fields"] for r in rows} == {"a": {"year": 2001}, "b": {}}
        lab.export(tmp_path / "out.parquet", format="parquet")
        table = pd.read_parquet(tmp_path / "out.parquet").set_index("id")
        assert json.loads(table.loc["a", "fields"]) == {"year": 2001}


def test_the_cli_ingests_a_csvs_columns_and_lists_them(store_path, gemini, tmp_path):
    posts = tmp_path / "posts.csv"
    write_csv(posts, ["ann", "bob"])
    ingested = invoke_cli(
        ["--store", str(store_path), "ingest", "csv", str(posts), "--id-col", "id"]
        + ["--label-col", "label", "--yes"]
    )
    assert ingested.returncode == 0, ingested.stderr
    listed = invoke_cli(["--store", str(store_path), "documents", "--csv"])
    assert listed.returncode == 0, listed.stderr
    rows = list(csv.DictReader(io.StringIO(listed.stdout)))
    assert json.loads(rows[1]["fields"]) == {"year": "2001", "author": "bob"}
    as_json = json.loads(invoke_cli(["--store", str(store_path), "documents", "--json"]).stdout)
    assert as_json[0]["fields"] == {"year": "2000", "author": "ann"}


def test_own_vectors_keep_fields_and_a_changed_one_is_a_metadata_update(store_path):
    rows = [
        {"id": "v1", "text": "one", "emb": [1.0, 0.0], "team": "red"},
        {"id": "v2", "text": "two", "emb": [0.0, 1.0], "team": "blue"},
    ]
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest(rows, vector="emb", space="mine")
        rows[1]["team"] = "green"
        again = lab.ingest(rows, vector="emb", space="mine")
        assert (again.stored, again.fields_updated) == (0, 1)
        assert lab.document("v2", space="custom:mine:2")["fields"] == {"team": "green"}
