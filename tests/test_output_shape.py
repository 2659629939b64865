"""One shape for every output (issue 25, items 11-14 and 4): `--json` is one JSON document
with the API's field names, uploads read the JSON body's field names, unknown and skipped
ids are named, a stored analysis can be written again, and a large ingest asks first."""

from __future__ import annotations

import json

import embedlab
import pytest
from embedlab.service.app import create_app
from embedlab.store import Store
from starlette.testclient import TestClient

from tests.builders import grouped_corpus
from tests.conftest import invoke_cli


@pytest.fixture
def grouped_store(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    return store_path


def cli(store_path, *args, env=None):
    result = invoke_cli(["--store", str(store_path), *args], env=env)
    assert result.returncode == 0, result.stderr
    return result


# -- 11: --json is one document, with the API's names -----------------------------------


def test_every_json_output_is_one_document_with_the_apis_field_names(grouped_store, tmp_path):
    listed = json.loads(cli(grouped_store, "documents", "--json").stdout)
    assert isinstance(listed, list) and len(listed) == 90
    assert set(listed[0]) == {"id", "label", "source", "text", "chars", "fields"}
    streamed = cli(grouped_store, "documents", "--jsonl").stdout.splitlines()
    assert [json.loads(line) for line in streamed] == listed

    hits = json.loads(cli(grouped_store, "neighbors", "--id", "syn/med/004", "--json").stdout)
    with embedlab.open(grouped_store, quiet=True) as lab, TestClient(create_app(lab)) as http:
        api = http.get("/api/v1/neighbours", params={"id": "syn/med/004"}).json()["neighbours"]
    assert hits == api  # the same rows, field names and full texts
    assert list(hits[0]) == ["rank", "id", "similarity", "label", "cluster", "text"]

    analysed = invoke_cli(
        ["--store", str(grouped_store), "analyze", "--k", "3", "--reduce", "pca"]
        + ["--source", "synth*,csv/none", "--out", str(tmp_path / "r")]
    )
    assert analysed.returncode == 0, analysed.stderr
    for command in (["analyses"], ["costs"], ["stats"], ["spaces"]):
        text = cli(grouped_store, *command, "--json").stdout
        json.loads(text)  # one document
        assert "\\/" not in text
    rows = json.loads(cli(grouped_store, "analyses", "--json").stdout)
    assert rows[0]["sources"] == ["synth*", "csv/none"]


# -- 12: uploads read the JSON body's field names by default -------------------------------


def test_ndjson_and_csv_uploads_read_id_and_label_like_the_json_body(store_path, gemini):
    ndjson = "".join(
        json.dumps({"id": f"p{i}", "text": f"post {i} on orbits", "label": "space"}) + "\n"
        for i in range(2)
    )
    sheet = "label,text,id\nmed,a post on doctors,r7\n"
    with embedlab.open(store_path, quiet=True) as lab, TestClient(create_app(lab)) as http:
        for body, media, name in (
            (ndjson, "application/x-ndjson", "feed"),
            (sheet, "text/csv", "sheet"),
        ):
            answer = http.post(
                "/api/v1/ingest",
                params={"wait": "true", "dims": 128, "name": name},
                content=body.encode(),
                headers={"content-type": media},
            )
            assert answer.status_code == 200, answer.text
        table = lab.documents().set_index("id")
    assert table["label"].to_dict() == {
        "jsonl/feed/p0": "space",
        "jsonl/feed/p1": "space",
        "csv/sheet/r7": "med",
    }


# -- 13: unknown ids and skipped rows are named ---------------------------------------------


def test_a_delete_over_http_names_the_unknown_ids(grouped_store):
    with embedlab.open(grouped_store, quiet=True) as lab, TestClient(create_app(lab)) as http:
        answer = http.delete("/api/v1/documents", params={"ids": ["nope", "syn/med/001"]})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert (body["removed"], body["not_found"]) == (["syn/med/001"], ["nope"])
        assert lab.delete(ids=["syn/med/002", "gone"]).not_found == ["gone"]
    said = invoke_cli(["--store", str(grouped_store), "delete", "--id", "nope2"])
    assert "not in the store (1): nope2" in said.stderr


def test_skipped_rows_are_named_by_line_in_the_report_and_the_cli(tmp_path, store_path, gemini):
    feed = tmp_path / "feed.jsonl"
    good = [json.dumps({"id": f"p{i}", "text": f"post {i}"}) for i in range(3)]
    feed.write_text("\n".join([good[0], "{broken", good[1], json.dumps({"id": "p9"}), good[2]]))
    said = cli(store_path, "ingest", "jsonl", str(feed), "--id-key", "id", "--dims", "128")
    assert "2 skipped" in said.stdout
    assert "skipped: line 2 (line not JSON), line 4 (no text in 'text')" in said.stderr

    with embedlab.open(store_path, quiet=True) as lab, TestClient(create_app(lab)) as http:
        answer = http.post(
            "/api/v1/ingest",
            params={"wait": "true", "dims": 128, "name": "up"},
            content=f"{good[0]}\n[1, 2]\n".encode(),
            headers={"content-type": "application/x-ndjson"},
        )
    assert answer.status_code == 200, answer.text
    assert answer.json()["skipped_examples"] == [
        {"where": "line 2", "reason": "line not a JSON object"}
    ]


# -- 14: a stored analysis reopened from the CLI --------------------------------------------


def test_analyses_export_writes_the_same_files_again_and_the_list_shows_notes(
    grouped_store, tmp_path
):
    first, again = tmp_path / "a", tmp_path / "b"
    cli(grouped_store, "analyze", "--k", "3", "--reduce", "pca", "--html", "--out", str(first))
    (row,) = json.loads(cli(grouped_store, "analyses", "--json").stdout)
    said = cli(grouped_store, "analyses", "--export", row["id"], "--out", str(again), "--html")
    assert f"analysis {row['id']}: " in said.stdout
    names = sorted(p.name for p in first.iterdir())
    assert "map.html" in names and sorted(p.name for p in again.iterdir()) == names
    for name in names:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name

    cli(grouped_store, "delete", "--id", "syn/med/001", "--id", "syn/med/002")
    listed = cli(grouped_store, "analyses").stdout
    assert "note: 2 of its 90 documents were deleted from the store since" in listed
    (row,) = json.loads(cli(grouped_store, "analyses", "--json").stdout)
    assert any("2 of its 90 documents were deleted" in n for n in row["notes"])
    latest = cli(grouped_store, "analyses", "--export", "latest", "--out", str(tmp_path / "c"))
    assert "2 of its 90 documents were deleted" in latest.stderr
    with embedlab.open(grouped_store, quiet=True) as lab, TestClient(create_app(lab)) as http:
        (listed_row,) = http.get("/api/v1/analyses").json()["analyses"]
        head = http.get(f"/api/v1/analyses/{row['id']}/map").json()
    assert listed_row["notes"] == row["notes"] and head["notes"] == row["notes"]


@pytest.mark.slow  # Chromium
def test_the_browser_shows_an_analysis_notes(grouped_store, tmp_path):
    from tests.browser_helpers import CHROMIUM, Watched, _browser_or_skip

    sync_playwright = _browser_or_skip()
    cli(grouped_store, "analyze", "--k", "3", "--reduce", "pca", "--out", str(tmp_path / "a"))
    cli(grouped_store, "delete", "--id", "syn/med/001")
    out = tmp_path / "reopened"
    cli(grouped_store, "analyses", "--export", "latest", "--out", str(out), "--html")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        watched = Watched(chromium, "file://", bypass_csp=True)
        try:
            watched.open((out / "map.html").as_uri())
            notes = watched.page.locator("#analysis-notes").inner_text()
            option = watched.page.locator("#analysis-pick option").first.inner_text()
        finally:
            watched.close()
            chromium.close()
    assert "1 of its 90 documents were deleted from the store since" in notes
    assert option.endswith("· 1 note")


# -- 4: one default sample of the newsgroups; a large ingest asks first ------------------------


def test_newsgroups_default_is_the_same_sample_in_the_cli_and_in_python(tmp_path, store_path):
    from tests.builders import make_newsgroups

    archive = make_newsgroups(tmp_path, per_group=7)
    said = cli(store_path, "ingest", "newsgroups", "--source", str(archive), "--dry-run")
    with embedlab.open(tmp_path / "py", quiet=True) as lab:
        plan = lab.ingest_newsgroups(archive, provider="local", dry_run=True)
    assert plan.documents == 14  # sci.med and sci.space, not rec.autos
    assert said.stdout.startswith(f"dry run: {plan.documents} documents")
    every = cli(
        store_path, "ingest", "newsgroups", "--source", str(archive), "--dry-run",
        "--categories", "*", "--per-class", "all",
    )  # fmt: skip
    assert every.stdout.startswith("dry run: 21 documents")


def big_feed(tmp_path, n=5001):
    feed = tmp_path / "big.jsonl"
    feed.write_text("".join(json.dumps({"id": i, "text": f"post {i}"}) + "\n" for i in range(n)))
    return feed


def test_an_ingest_over_the_threshold_asks_first_and_refuses_without_a_terminal(
    tmp_path, store_path, gemini, monkeypatch
):
    import embedlab.cli
    from embedlab.ingest.pipeline import ASK_ABOVE_TEXTS

    args = ["--store", str(store_path), "ingest", "jsonl", str(big_feed(tmp_path)), "--dims", "128"]
    refused = invoke_cli(args)
    assert refused.returncode == 1
    assert f"5,001 texts to embed (over {ASK_ABOVE_TEXTS:,})" in refused.stderr
    assert "estimate: dry run: 5001 documents: 0 cached, 5001 to embed" in refused.stderr
    assert "pass --yes to go ahead without a terminal" in refused.stderr
    assert gemini.requests == []

    monkeypatch.setattr(embedlab.cli, "_interactive", lambda: True)
    from click.testing import CliRunner

    declined = CliRunner().invoke(embedlab.cli.cli, args, input="n\n")
    assert declined.exit_code == 1 and "embed them now?" in declined.output
    assert gemini.requests == []

    small = tmp_path / "small.jsonl"
    small.write_text(json.dumps({"id": 1, "text": "post 1"}) + "\n")
    cli(store_path, "ingest", "jsonl", str(small), "--dims", "128")  # under it: never asked
    assert len(gemini.requests) == 1


@pytest.mark.slow  # embeds 5,001 texts through the fake Gemini
def test_yes_goes_ahead_over_the_threshold(tmp_path, store_path, gemini, monkeypatch):
    from embedlab.ingest import pipeline

    # the threshold lowered to 50: the size is not the subject (the test above asks at 5,001)
    monkeypatch.setattr(pipeline, "ASK_ABOVE_TEXTS", 50)
    feed = str(big_feed(tmp_path, n=51))
    refused = invoke_cli(["--store", str(store_path), "ingest", "jsonl", feed, "--dims", "128"])
    assert "51 texts to embed (over 50)" in refused.stderr  # over it: without --yes, asked
    said = cli(store_path, "ingest", "jsonl", feed, "--dims", "128", "--yes")
    assert "51 embedded" in said.stdout and "estimate:" not in said.stderr
