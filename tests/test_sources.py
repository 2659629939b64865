"""Sources on small corpora the tests make themselves."""

import json
import tarfile
from collections import Counter

import pytest
from embedlab.ingest.errors import SourceError
from embedlab.ingest.newsgroups import (
    clean_for_embedding,
    clean_notebook,
    default_clean,
    newsgroups_documents,
)
from embedlab.ingest.sources import csv_documents, file_documents, jsonl_documents
from embedlab.store.sampling import stratified_sample

from tests.builders import POST, make_newsgroups


def test_notebook_cleaning_matches_the_notebook():
    cleaned = clean_notebook(POST)
    assert "@" not in cleaned and "(John Doe)" not in cleaned and "(low)" not in cleaned
    assert cleaned.startswith(" Re: orbits\nOrganization: Example")
    assert len(clean_notebook("x" * 6000)) == 5000


REPLY = (
    "From: jdoe@cs.example.edu (John Doe)\nSubject: Re: Re: Shuttle orbits\n"
    "Organization: Example University\nLines: 14\nNNTP-Posting-Host: cs.example.edu\n"
    "Distribution: world\nReply-To: jdoe@cs.example.edu\nKeywords: orbit, decay\n\n"
    "In article <1993Apr1.1234@nasa.gov>, smith@nasa.gov (Al Smith) writes:\n"
    "> Why does a low orbit decay?\n>> Drag, I thought.\n  AS> Even at 300 km?\n\n"
    "Atmospheric drag slows the shuttle; write to me at jdoe@cs.example.edu.\n"
    "\n--\nJohn Doe, Dept. of Physics  |  'Ad astra'\n"
)


def test_embedding_cleaning_keeps_what_the_post_says_and_drops_the_rest():
    cleaned = clean_for_embedding(REPLY)
    assert cleaned.split("\n")[:2] == ["Shuttle orbits", "orbit, decay"]  # subject, keywords
    for noise in ("From", "Organization", "Lines", "NNTP-Posting-Host", "Distribution",
                  "Reply-To", "Example University", "John Doe", "Ad astra", "@",
                  "In article", "writes:", "Re:", ">"):  # fmt: skip
        assert noise not in cleaned, noise
    # quoted replies are kept, unmarked: they say what the post answers
    assert "Why does a low orbit decay?\nDrag, I thought.\nEven at 300 km?" in cleaned
    assert cleaned.endswith("Atmospheric drag slows the shuttle; write to me at")
    assert clean_for_embedding("no headers here\n\n> quoted") == "no headers here\n\nquoted"
    assert len(clean_for_embedding("Subject: x\n\n" + "y" * 6000)) == 5000


def test_each_provider_has_its_default_cleaning_and_its_own_ids(tmp_path):
    # issue #14: the notebook's cleaning for both (the same ids, so spaces compare)
    assert (default_clean("local"), default_clean("gemini")) == ("notebook", "notebook")
    docs = newsgroups_documents(
        make_newsgroups(tmp_path), "train", ["sci.space"], clean="embedding"
    )
    assert docs[0].id.startswith("newsgroups-embedding/train/sci.space/")
    assert docs[0].source == "newsgroups-embedding/train"
    assert (
        docs[0].text
        == "orbits\nThe shuttle orbit (low) decays. Mail me at\nsci.space post 0 in train"
    )
    with pytest.raises(SourceError, match="unknown cleaning 'nope'"):
        newsgroups_documents(make_newsgroups(tmp_path), "train", clean="nope")


def test_newsgroups_archive_ids_labels_and_category_globs(tmp_path):
    docs = newsgroups_documents(make_newsgroups(tmp_path), "train", ["sci.*"])
    assert len(docs) == 12
    assert {d.label for d in docs} == {"sci.space", "sci.med"}
    assert docs[0].id.startswith("newsgroups/train/sci.")
    assert all(d.source == "newsgroups/train" for d in docs)
    both = newsgroups_documents(make_newsgroups(tmp_path), "all", ["rec.autos"])
    assert {d.id.split("/")[1] for d in both} == {"train", "test"} and len(both) == 8


def test_newsgroups_folder_gives_the_same_documents_as_the_archive(tmp_path):
    archive = make_newsgroups(tmp_path)
    extracted = tmp_path / "extracted"
    with tarfile.open(archive) as tar:
        tar.extractall(extracted, filter="data")
    from_tar = newsgroups_documents(archive, "train")
    from_dir = newsgroups_documents(extracted, "train")
    assert [(d.id, d.content_hash) for d in from_tar] == [(d.id, d.content_hash) for d in from_dir]


def test_per_class_sample_is_stratified_reproducible_and_nested(tmp_path):
    archive = make_newsgroups(tmp_path, per_group=20)
    small = newsgroups_documents(archive, "train", per_class=5, seed=3)
    again = newsgroups_documents(archive, "train", per_class=5, seed=3)
    bigger = newsgroups_documents(archive, "train", per_class=8, seed=3)
    other_seed = newsgroups_documents(archive, "train", per_class=5, seed=4)
    assert Counter(d.label for d in small) == {"sci.space": 5, "sci.med": 5, "rec.autos": 5}
    assert [d.id for d in small] == [d.id for d in again]
    assert {d.id for d in small} < {d.id for d in bigger}
    assert {d.id for d in small} != {d.id for d in other_seed}


def test_stratified_sample_takes_all_when_a_class_is_small():
    chosen = stratified_sample({"a": ["a1", "a2"], "b": [f"b{i}" for i in range(10)]}, 3, seed=0)
    assert {"a1", "a2"} <= chosen and len(chosen) == 5


def test_unknown_category_names_the_groups_found(tmp_path):
    with pytest.raises(SourceError, match="groups found: rec.autos, sci.med, sci.space"):
        newsgroups_documents(make_newsgroups(tmp_path), "train", ["comp.*"])


def test_missing_source_says_what_to_give(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        newsgroups_documents(tmp_path / "nope.tar.gz", "train")


def test_files_labels_encodings_and_skips(tmp_path):
    root = tmp_path / "posts"
    (root / "space").mkdir(parents=True)
    (root / "med").mkdir()
    (root / "space" / "a.txt").write_text("orbit talk")
    (root / "med" / "b.txt").write_bytes("caf\xe9 latin-1".encode("latin-1"))
    (root / "med" / "c.bin").write_bytes(b"\x00\x01binary")
    (root / "med" / ".hidden").write_text("secret")
    (root / "top.txt").write_text("no folder label")
    outside = tmp_path / "outside.txt"
    outside.write_text("must not be read")
    (root / "space" / "link.txt").symlink_to(outside)
    skipped = Counter()
    docs = {d.id: d for d in file_documents(root, skipped=skipped)}
    assert set(docs) == {"files/posts/space/a.txt", "files/posts/med/b.txt", "files/posts/top.txt"}
    assert docs["files/posts/space/a.txt"].label == "space"
    assert docs["files/posts/med/b.txt"].text == "café latin-1"
    assert docs["files/posts/top.txt"].label is None
    assert skipped == Counter({"binary file": 1, "link outside the folder": 1})


def test_csv_columns_quoted_newlines_and_missing_cells(tmp_path):
    path = tmp_path / "posts.csv"
    path.write_text('id,body,topic\n1,"first line\nsecond line",a\n2,,b\n,orphan,c\n3,third,\n')
    skipped = Counter()
    docs = list(csv_documents(path, "body", "id", "topic", skipped))
    assert [(d.id, d.text, d.label) for d in docs] == [
        ("csv/posts/1", "first line\nsecond line", "a"),
        ("csv/posts/2", "", "b"),  # empty: the pipeline skips and counts it
        ("csv/posts/3", "third", None),
    ]
    assert skipped == Counter({"missing id": 1})


def test_csv_missing_column_names_the_columns_found(tmp_path):
    path = tmp_path / "posts.csv"
    path.write_text("id,body\n1,x\n")
    with pytest.raises(SourceError, match=r"no column 'text' \(columns: id, body\); set text="):
        list(csv_documents(path))


def test_jsonl_broken_lines_are_counted_not_fatal(tmp_path):
    path = tmp_path / "posts.jsonl"
    lines = [
        json.dumps({"id": "a", "text": "alpha", "label": "x"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": "b", "text": 42}),
        "",
        json.dumps({"id": "c", "text": "gamma"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    skipped = Counter()
    docs = list(jsonl_documents(path, "text", "id", "label", skipped))
    assert [(d.id, d.label) for d in docs] == [("jsonl/posts/a", "x"), ("jsonl/posts/c", None)]
    assert skipped == Counter(
        {"line not JSON": 1, "line not a JSON object": 1, "no text in 'text'": 1}
    )


def test_jsonl_missing_key_names_the_keys_found(tmp_path):
    path = tmp_path / "posts.jsonl"
    path.write_text(json.dumps({"id": 1, "body": "x"}) + "\n")
    with pytest.raises(SourceError, match=r"no key 'text' on any line \(keys: body, id\)"):
        list(jsonl_documents(path, "text", "id"))


def test_sklearn_cleaning_strips_headers_and_quotes(tmp_path):
    docs = newsgroups_documents(make_newsgroups(tmp_path), "train", ["sci.space"], clean="sklearn")
    assert docs and all("Subject" not in d.text and "Organization" not in d.text for d in docs)
    assert docs[0].text.startswith("The shuttle orbit (low) decays.")


def test_sample_is_the_same_from_any_population_that_contains_it():
    population = {"a": [f"a{i}" for i in range(100)], "b": [f"b{i}" for i in range(50)]}
    sample = stratified_sample(population, 10, seed=0)
    bigger = stratified_sample(population, 15, seed=0)
    assert (
        stratified_sample(
            {
                "a": sorted(x for x in bigger if x[0] == "a"),
                "b": sorted(x for x in bigger if x[0] == "b"),
            },
            10,
            seed=0,
        )
        == sample
    )


def test_csv_every_record_is_a_document_or_a_counted_skip(tmp_path):
    """An unclosed quote no longer swallows the rows after it, a long cell keeps its row,
    and rows with too many or too few fields are counted (they used to crash)."""
    path = tmp_path / "posts.csv"
    long_cell = "x" * 200_000
    path.write_text(
        "id,text\n"
        '1,"an unclosed quote\n'
        "2,second\n"
        "3,third\n"
        "4,fourth\n"
        "5,fifth\n"
        f"6,{long_cell}\n"
        "7,too,many,fields\n"
        "8\n"
        '9,"quoted, with a comma"\n'
    )
    skipped = Counter()
    docs = list(csv_documents(path, "text", "id", None, skipped))
    assert [d.id for d in docs] == [f"csv/posts/{i}" for i in (2, 3, 4, 5, 6, 9)]
    assert len(docs[4].text) == 100_000  # cut by Document to MAX_TEXT_CHARS, not dropped
    assert docs[5].text == "quoted, with a comma"
    assert skipped == Counter(
        {"malformed CSV row (unbalanced quote)": 1, "CSV row with the wrong number of fields": 2}
    )


def test_csv_and_jsonl_sources_refuse_a_folder_with_one_line(tmp_path):
    with pytest.raises(SourceError, match="is a folder; give a CSV file"):
        list(csv_documents(tmp_path))
    with pytest.raises(SourceError, match="is a folder; give a JSON Lines file"):
        list(jsonl_documents(tmp_path))


def test_jsonl_utf16_deep_nesting_and_a_mistyped_label_key(tmp_path):
    path = tmp_path / "posts.jsonl"
    lines = [json.dumps({"id": i, "text": f"post {i}", "label": "x"}) for i in range(3)]
    lines.insert(1, "[" * 100_000 + "]" * 100_000)
    path.write_bytes("\n".join(lines).encode("utf-16"))
    skipped = Counter()
    docs = list(jsonl_documents(path, "text", "id", "label", skipped))
    assert [(d.id, d.label) for d in docs] == [(f"jsonl/posts/{i}", "x") for i in range(3)]
    assert skipped == Counter({"line nested too deep": 1})
    with pytest.raises(SourceError, match=r"no key 'lable' on any line .*set label="):
        list(jsonl_documents(path, "text", "id", "lable"))
