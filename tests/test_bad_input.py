"""A corpus of bad input through the real command: every case is embedded, cut or skipped
with a counted reason in the one-line summary, and nothing crashes."""

from __future__ import annotations

import codecs
import json
import os
import unicodedata

import pytest
from embedlab.store import Store
from embedlab.store.documents import MAX_TEXT_CHARS

from tests.conftest import invoke_cli

DIMS = 128
CAFE_NFC = unicodedata.normalize("NFC", "café crème brûlée")
CAFE_NFD = unicodedata.normalize("NFD", CAFE_NFC)


@pytest.fixture
def env(gemini) -> dict[str, str]:
    return {"GOOGLE_GEMINI_BASE_URL": gemini.url}


def ingest(store_path, env, *args: str):
    done = invoke_cli(["--store", str(store_path), "ingest", *args, "--dims", str(DIMS)], env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout.strip().splitlines()[-1]


def stored_texts(store_path) -> dict[str, str]:
    with Store.open_local(store_path) as store:
        (space,) = store.spaces()
        got = store.collection(space)._col.get(include=["documents"])
    return dict(zip(got["ids"], got["documents"]))


def test_a_folder_of_bad_files(tmp_path, gemini, env):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_text("  \n\t \r\n  ")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200))
    (folder / "huge.txt").write_text("all work and no play " * 500_000)  # 10.5 MB
    (folder / "latin1.txt").write_bytes("Gödel, Escher, Bach à la française".encode("latin-1"))
    utf16 = codecs.BOM_UTF16_LE + "UTF-16 text, ünïcödé".encode("utf-16-le")
    (folder / "utf16.txt").write_bytes(utf16)
    (folder / "emoji.txt").write_text("🎉🔥🚀")
    (folder / "nfc.txt").write_text(CAFE_NFC)
    (folder / "nfd.txt").write_text(CAFE_NFD)
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the corpus")
    os.symlink(outside, folder / "link.txt")

    summary = ingest(tmp_path / "store", env, "files", str(folder))
    assert summary.startswith(
        "6 documents: 0 cached, 6 embedded, 1 request (5 unique texts sent), 1 truncated, "
        "1 cut to 100,000 chars, 4 skipped (1 binary file, 2 empty text, "
        "1 link outside the folder)"
    )

    texts = stored_texts(tmp_path / "store")
    by_name = {doc_id.rsplit("/", 1)[1]: text for doc_id, text in texts.items()}
    assert by_name["latin1.txt"] == "Gödel, Escher, Bach à la française"
    assert by_name["utf16.txt"] == "UTF-16 text, ünïcödé"
    assert by_name["emoji.txt"] == "🎉🔥🚀"
    assert by_name["nfc.txt"] == by_name["nfd.txt"] == CAFE_NFC  # one text, one embedding
    assert len(by_name["huge.txt"]) == MAX_TEXT_CHARS
    sent = [t for r in gemini.requests for t in r.texts]
    assert sent.count(CAFE_NFC) == 1 and "not for the corpus" not in sent
    assert max(len(t) for t in sent) <= 8192  # the Gemini input limit, not 10 MB


def test_a_csv_with_missing_cells_quoted_newlines_bad_rows_and_duplicate_ids(tmp_path, env):
    csv_path = tmp_path / "rows.csv"
    csv_path.write_bytes(
        (
            "id,text,label\n"
            '1,"first line\nsecond line",a\n'
            "2,,b\n"  # missing text
            ",orphan text,a\n"  # missing id
            "3,one,two,three,four\n"  # too many cells
            "4,plain text,\n"  # missing label
            "1,same id other text,a\n"
            "5,caf\xe9 in latin-1,b\n"
        ).encode("latin-1")
    )
    summary = ingest(
        tmp_path / "store", env, "csv", str(csv_path), "--id-col", "id", "--label-col", "label"
    )
    assert summary.startswith("3 documents: 0 cached, 3 embedded, 1 request")
    assert (
        "4 skipped (1 CSV row with the wrong number of fields, 1 duplicate id, 1 empty text, "
        "1 missing id)"
    ) in summary
    texts = stored_texts(tmp_path / "store")
    assert texts["csv/rows/1"] == "first line\nsecond line"  # the first of a repeated id wins
    assert texts["csv/rows/5"] == "café in latin-1"


def test_a_jsonl_with_broken_lines_and_variants_of_one_text(tmp_path, gemini, env):
    lines = [
        json.dumps({"id": "a", "text": CAFE_NFC}),
        json.dumps({"id": "b", "text": CAFE_NFD}),  # same text, other normal form
        json.dumps({"id": "c", "text": CAFE_NFC + "\r\n"}),  # same text, CRLF and blanks
        '{"id": "d", "text": "unterminated',
        "[1, 2, 3]",
        json.dumps({"id": "e", "body": "no text key"}),
        json.dumps({"id": "f", "text": 42}),
        json.dumps({"id": "a", "text": "same id, other text"}),
        json.dumps({"id": "g", "text": "\u200b \n "}),  # a zero-width space is still text
        json.dumps({"id": "h", "text": " \t\n"}),
        "\xff\xfe not json at all",
    ]
    path = tmp_path / "posts.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
    summary = ingest(tmp_path / "store", env, "jsonl", str(path), "--id-key", "id")
    assert summary.startswith(
        "4 documents: 0 cached, 4 embedded, 1 request (2 unique texts sent), 7 skipped "
        "(1 duplicate id, 1 empty text, 2 line not JSON, 1 line not a JSON object, "
        "2 no text in 'text')"
    )
    sent = [t for r in gemini.requests for t in r.texts]
    assert sorted(sent) == sorted([CAFE_NFC, "\u200b"])


def test_files_over_the_size_cap_are_skipped_without_reading_them(tmp_path, env, monkeypatch):
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "ok.txt").write_text("fine")
    with open(folder / "sparse.txt", "wb") as fh:  # 80 MB, but sparse: no disk used
        fh.seek(80 * 2**20)
        fh.write(b"end")
    summary = ingest(tmp_path / "store", env, "files", str(folder))
    assert summary.startswith("1 document: 0 cached, 1 embedded")
    assert "1 skipped (1 file over 64 MB)" in summary


def test_two_files_with_one_name_never_overwrite_each_other(tmp_path, gemini, env):
    """Two posts.csv in different folders used to share ids and overwrite each other."""
    for folder, text in (("a", "first"), ("b", "second")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "posts.csv").write_text(f"id,text\n1,{text} export\n2,{text} more\n")
    store = tmp_path / "store"
    assert ingest(store, env, "csv", str(tmp_path / "a" / "posts.csv"), "--id-col", "id")
    refused = invoke_cli(
        ["--store", str(store), "ingest", "csv", str(tmp_path / "b" / "posts.csv"), "--id-col",
         "id", "--dims", str(DIMS)], env=env)  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "csv/posts already names" in refused.stderr and "--name" in refused.stderr
    assert stored_texts(store)["csv/posts/1"] == "first export"  # untouched
    summary = ingest(store, env, "csv", str(tmp_path / "b" / "posts.csv"), "--id-col", "id",
                     "--name", "posts-b")  # fmt: skip
    assert summary.startswith("2 documents: 0 cached, 2 embedded")
    texts = stored_texts(store)
    assert texts["csv/posts/1"] == "first export" and texts["csv/posts-b/1"] == "second export"


def test_changed_texts_are_announced_before_and_after_they_are_paid(tmp_path, gemini, env):
    path = tmp_path / "posts.csv"
    path.write_text("id,text\n1,one\n2,two\n3,three\n")
    store = tmp_path / "store"
    ingest(store, env, "csv", str(path), "--id-col", "id")
    path.write_text("id,text\n1,one changed\n2,two changed\n3,three\n")
    dry = ingest(store, env, "csv", str(path), "--id-col", "id", "--dry-run")
    assert dry.startswith("dry run: 3 documents: 1 cached, 2 to embed in 1 request")
    assert "2 existing documents changed text: would be re-embedded" in dry
    done = ingest(store, env, "csv", str(path), "--id-col", "id")
    assert "2 existing documents changed text: re-embedded" in done
    assert stored_texts(store)["csv/posts/1"] == "one changed"


def test_another_newsgroups_cleaning_gets_its_own_ids_and_the_same_sample(tmp_path):
    from embedlab.ingest.newsgroups import newsgroups_documents

    from tests.builders import make_newsgroups

    archive = make_newsgroups(tmp_path)
    notebook = newsgroups_documents(archive, "train", per_class=1, seed=0)
    sklearn = newsgroups_documents(archive, "train", per_class=1, seed=0, clean="sklearn")
    assert all(d.id.startswith("newsgroups/train/") for d in notebook)
    assert [d.id for d in sklearn] == [
        d.id.replace("newsgroups/", "newsgroups-sklearn/", 1) for d in notebook
    ]
    assert {d.source for d in sklearn} == {"newsgroups-sklearn/train"}


def test_a_changed_or_removed_label_reaches_the_store_without_paying(tmp_path, gemini, env):
    """Chroma's upsert merges metadata, and unchanged texts were skipped: a corrected label
    used to be dropped without a word."""
    path = tmp_path / "posts.csv"
    path.write_text("id,text,label\n1,one,a\n2,two,b\n3,three,c\n")
    store = tmp_path / "store"
    ingest(store, env, "csv", str(path), "--id-col", "id", "--label-col", "label")
    sent = len(gemini.requests)
    path.write_text("id,text,label\n1,one,z\n2,two,\n3,three,c\n")
    summary = ingest(store, env, "csv", str(path), "--id-col", "id", "--label-col", "label")
    assert "3 cached, 0 embedded, 0 requests" in summary
    assert "2 labels or sources updated (no embedding)" in summary
    assert len(gemini.requests) == sent
    with Store.open_local(store) as opened:
        (space,) = opened.spaces()
        got = opened.collection(space)._col.get(include=["metadatas"])
    labels = {i: m.get("label") for i, m in zip(got["ids"], got["metadatas"])}
    assert labels == {"csv/posts/1": "z", "csv/posts/2": None, "csv/posts/3": "c"}
