"""A store of record under real damage and careless input (issue 20): repair keeps every
text, a damaged index never crashes a command, no input overwrites another's documents,
a failed ingest leaves the store as it was, inputs in other encodings read right, and
errors speak the caller's language."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import embedlab
import numpy as np
import pytest
from embedlab.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    ProviderKeyError,
    StoreDamaged,
    speak,
)
from embedlab.ingest.pipeline import ingest
from embedlab.store import Document, Space, Store
from embedlab.store.chroma_store import CHROMA_DIR, _DamageGuard
from embedlab.store.index_files import HEADER, read_mapping
from starlette.testclient import TestClient

from tests.conftest import CountingProvider, hash_vector, invoke_cli, make_docs, run_cli
from tests.fake_gemini import VALID_KEY, FakeGemini

SPACE = Space("fake", "fake-model", "none", 64)
N = 300
DAMAGE = 3000


def build(store_path: Path, space: Space = SPACE, n: int = N) -> None:
    with Store.open_local(store_path, create=True) as store:
        ingest(make_docs(n, labels=3), store, space, lambda: CountingProvider(space))


@pytest.fixture(scope="module")
def built_once(tmp_path_factory) -> Path:
    """`build`'s store (N documents under SPACE), built once for the module."""
    path = tmp_path_factory.mktemp("built") / "store"
    build(path)
    return path


@pytest.fixture
def built(built_once, store_path) -> Path:
    """This test's own copy of `build`'s store, at `store_path`."""
    shutil.copytree(built_once, store_path)
    return store_path


def index_folder(store_path: Path, space: Space = SPACE) -> Path:
    from embedlab.store.index_files import vector_segment_folders

    (folder,) = vector_segment_folders(store_path / CHROMA_DIR, space.collection_name)
    return folder


def damage(folder: Path, seed: int) -> set[str]:
    """3,000 random bytes at 25-60% of data_level0.bin; the ids whose element they hit."""
    target = folder / "data_level0.bin"
    header = HEADER.unpack((folder / "header.bin").read_bytes())
    per_element, label_at = header[4], header[5]
    size = target.stat().st_size
    rng = np.random.default_rng(seed)
    offset = int(rng.uniform(0.25, 0.60) * size)
    raw = bytearray(target.read_bytes())
    mapping = read_mapping(folder)
    hit = set()
    for row in range(offset // per_element, (offset + DAMAGE) // per_element + 1):
        start = row * per_element
        label = int.from_bytes(raw[start + label_at : start + label_at + 8], "little")
        hit.add(mapping[label])
    raw[offset : offset + DAMAGE] = rng.integers(0, 256, DAMAGE, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(raw))
    return hit


def one_line_damage_error(done) -> None:
    assert done.returncode == 1, (done.returncode, done.stderr)  # not a signal
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "damaged" in lines[0] and "embedlab repair" in lines[0], lines


@pytest.mark.parametrize("seed", [0, 1])
def test_random_bytes_in_the_index_cost_only_the_vectors_they_hit(built, seed):
    store_path = built
    hit = damage(index_folder(store_path), seed)

    for args in (["stats"], ["neighbors", "--id", "test/5", "-k", "3"]):  # a real process:
        one_line_damage_error(run_cli(["--store", str(store_path), *args]))  # no signal

    # in process: repair runs each Chroma step in a child of its own (store/repair.py)
    check = invoke_cli(["--store", str(store_path), "repair", "--check"])
    assert check.returncode == 1 and f"{N} documents" in check.stdout, check.stdout
    fixed = invoke_cli(["--store", str(store_path), "repair"])
    assert fixed.returncode == 0, fixed.stderr

    with Store.open_local(store_path) as store:
        collection = store.collection(SPACE)
        got = collection._col.get(include=["documents", "embeddings", "metadatas"])
        pending = {doc_id: text for doc_id, text, _meta in collection.pending()}
        # nothing lost: every document is there, with or without its vector
        assert len(got["ids"]) + len(pending) == N
        assert set(got["ids"]) | set(pending) == {f"test/{i}" for i in range(N)}
        # only the elements the bytes hit lost their vector; every kept vector is exact
        assert pending and set(pending) <= hit
        for text, vector in zip(got["documents"], got["embeddings"]):
            np.testing.assert_allclose(vector, hash_vector(text, SPACE.dims), atol=1e-6)
        assert f"{len(pending)} documents need their vector" in fixed.stdout
        assert f"{N} documents kept, {N - len(pending)} with their vector" in fixed.stdout

        # the next ingest of the space, of anything, embeds exactly those texts
        provider = CountingProvider(SPACE)
        new = Document("extra/1", "a document after the repair", "extra", "label0")
        report = ingest([new], store, SPACE, lambda: provider)
        assert sorted(provider.texts_embedded) == sorted([*pending.values(), new.text])
        assert report.restored == len(pending)
        assert collection.pending() == [] and collection.count() == N + 1

    for args in (["stats"], ["neighbors", "--id", "test/5", "-k", "3"]):
        assert invoke_cli(["--store", str(store_path), *args]).returncode == 0
    again = invoke_cli(["--store", str(store_path), "repair", "--check"])
    assert again.returncode == 0 and "0 damaged" in again.stdout


def test_stats_counts_documents_waiting_for_their_vector(waiting_store):
    store_path, _waiting = waiting_store
    with embedlab.open(store_path, quiet=True) as lab:
        stats = lab.stats()["spaces"][0]
        waiting = lab.repair(check=True)[0].needs_vector
    assert stats["documents"] == N and stats["needs_vector"] == len(waiting) > 0
    shown = invoke_cli(["--store", str(store_path), "stats"])
    assert f"{N} documents ({len(waiting)} need their vector" in shown.stdout


def test_chroma_failing_on_a_damaged_segment_is_store_damaged():
    from chromadb.errors import InternalError

    class Garbled:
        name = "col"

        def query(self, **_):
            raise InternalError(
                "Error executing plan: Failed to apply logs to the hnsw segment writer"
            )

        def get(self, **_):
            raise ValueError("an ordinary bug")

    guarded = _DamageGuard(Garbled(), SPACE)
    with pytest.raises(StoreDamaged, match="embedlab repair"):
        guarded.query(query_embeddings=[[1.0]])
    with pytest.raises(ValueError, match="ordinary"):  # not damage: not dressed up as one
        guarded.get()
    assert guarded.name == "col"


def test_service_answers_503_for_a_damaged_space_and_serves_the_others(store_path):
    from embedlab.service.app import create_app

    other = Space("fake", "other-model", "none", 16)
    build(store_path)
    build(store_path, other, 50)
    damage(index_folder(store_path), 0)
    with embedlab.open(store_path, quiet=True) as lab, TestClient(create_app(lab)) as http:
        bad = http.get("/api/v1/neighbours", params={"id": "test/1", "space": "fake:fake-model"})
        good = http.get("/api/v1/neighbours", params={"id": "test/1", "space": "fake:other-model"})
    assert bad.status_code == 503 and bad.headers["content-type"] == "application/problem+json"
    assert "embedlab repair" in bad.json()["detail"]
    assert good.status_code == 200 and len(good.json()["neighbours"]) == 10


# -- a document belongs to its source ------------------------------------------------------


@pytest.fixture
def csv_lab(tmp_path, store_path, gemini):
    path = tmp_path / "utf8.csv"
    path.write_text("id,text,label\ne1,first post topic:a,news\ne2,second post topic:b,news\n")
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest_path(path, id="id", label="label", dims=128)
        yield lab, path


def test_another_source_never_overwrites_a_document_unless_asked(csv_lab, gemini):
    lab, _path = csv_lab
    sent = len(gemini.requests)
    evil = [{"id": "csv/utf8/e1", "text": "OVERWRITTEN", "label": "spam"}]
    with pytest.raises(Conflict) as refused:
        lab.ingest(evil, dims=128)
    message = str(refused.value)
    assert "csv/utf8/e1" in message and "csv/utf8" in message and "python" in message
    assert "replace=True" in message
    assert lab.document("csv/utf8/e1")["text"] == "first post topic:a"
    assert lab.document("csv/utf8/e1")["label"] == "news"
    assert len(gemini.requests) == sent  # refused before anything was paid for

    report = lab.ingest(evil, dims=128, replace=True)
    assert (report.replaced, report.embedded) == (1, 1)
    assert lab.document("csv/utf8/e1")["text"] == "OVERWRITTEN"


def test_the_same_source_still_updates_its_own_documents(csv_lab):
    lab, path = csv_lab
    path.write_text(
        'id,text,label\ne1,"first post, edited topic:a",news\ne2,second post topic:b,news\n'
    )
    report = lab.ingest_path(path, id="id", label="label", dims=128)
    assert (report.changed, report.embedded, report.replaced) == (1, 1, 0)
    assert lab.document("csv/utf8/e1")["text"] == "first post, edited topic:a"


def test_http_refuses_with_409_and_names_the_request_field(csv_lab):
    from embedlab.service.app import create_app

    lab, _path = csv_lab
    body = {"documents": [{"id": "csv/utf8/e1", "text": "OVERWRITTEN", "label": "spam"}]}
    body["dims"] = 128
    with TestClient(create_app(lab)) as http:
        refused = http.post("/api/v1/ingest", params={"wait": "true"}, json=body)
        assert refused.status_code == 409, refused.text
        assert '"replace": true' in refused.json()["detail"]
        assert "replace=True" not in refused.json()["detail"]
        replaced = http.post(
            "/api/v1/ingest", params={"wait": "true"}, json={**body, "replace": True}
        )
        assert replaced.status_code == 200, replaced.text
    assert lab.document("csv/utf8/e1")["text"] == "OVERWRITTEN"


# -- a failed ingest changes nothing -------------------------------------------------------


def test_an_ingest_without_a_key_leaves_no_space_and_claims_no_name(
    tmp_path, store_path, monkeypatch
):
    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    first, second = tmp_path / "a" / "posts.csv", tmp_path / "b" / "posts.csv"
    for path in (first, second):
        path.parent.mkdir()
        path.write_text("text\nhello there\n")
    with embedlab.open(store_path, quiet=True) as lab:
        with pytest.raises(ProviderKeyError, match="GEMINI_API_KEY"):
            lab.ingest_path(first, provider="gemini", dims=128)
        assert lab.spaces() == []
        with FakeGemini() as fake:
            monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
            monkeypatch.setenv("GEMINI_API_KEY", "a-wrong-key")
            with pytest.raises(embedlab.EmbedlabError):
                lab.ingest_path(first, provider="gemini", dims=128)
            assert lab.spaces() == []
            monkeypatch.setenv("GEMINI_API_KEY", VALID_KEY)
            # the name posts was never claimed by the failed ingests of the other file
            report = lab.ingest_path(second, provider="gemini", dims=128)
        assert report.embedded == 1 and len(lab.spaces()) == 1


def test_a_missing_key_over_http_is_503_and_says_what_to_set(store_path, monkeypatch):
    from embedlab.service.app import create_app

    for var in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    body = {"documents": [{"id": "a", "text": "hello"}], "provider": "gemini", "dims": 128}
    with embedlab.open(store_path, quiet=True) as lab, TestClient(create_app(lab)) as http:
        answer = http.post("/api/v1/ingest", params={"wait": "true"}, json=body)
        spaces = http.get("/api/v1/spaces").json()["spaces"]
    assert answer.status_code == 503, answer.text
    detail = answer.json()["detail"]
    assert "GEMINI_API_KEY" in detail and '"provider": "local"' in detail and "--" not in detail
    assert spaces == []


def test_a_space_is_deleted_on_purpose_with_what_was_made_from_it(store_path, gemini):
    from embedlab.service.app import ServiceSettings, create_app

    frame = [
        {"id": f"d{i}", "text": f"post {i} topic:{'ab'[i % 2]}", "label": "ab"[i % 2]}
        for i in range(40)
    ]
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest(frame, dims=128)
        lab.analyze(k=2, reduce="pca")
        space = lab.space()
        with TestClient(create_app(lab, ServiceSettings(read_only=True))) as http:
            refused = http.delete(f"/api/v1/spaces/{space.provider}:{space.model}:{space.dims}")
        assert refused.status_code == 403
        gone = lab.delete_space(space)
        assert (gone["documents"], gone["analyses"]) == (40, 1)
        assert lab.spaces() == [] and len(lab.analyses()) == 0
        again = lab.ingest(frame, dims=128)  # a new space of the same name starts empty
        assert again.embedded == 40


def test_the_spaces_command_lists_and_deletes_only_when_told(store_path):
    build(store_path, n=20)
    args = ["--store", str(store_path), "spaces"]
    listed = invoke_cli([*args, "--json"])
    assert json.loads(listed.stdout)["spaces"][0]["documents"] == 20
    refused = invoke_cli([*args, "--delete", "fake:fake-model"])
    assert (
        refused.returncode == 1 and "--yes" in refused.stderr and "Traceback" not in refused.stderr
    )
    done = invoke_cli([*args, "--delete", "fake:fake-model", "--yes"])
    assert done.returncode == 0 and "deleted fake:fake-model (64 dims): 20 documents" in done.stdout
    assert json.loads(invoke_cli([*args, "--json"]).stdout)["spaces"] == []


# -- encodings -----------------------------------------------------------------------------


def test_files_in_other_encodings_are_read_right_and_counted(tmp_path, store_path, gemini):
    folder = tmp_path / "posts"
    (folder / "fr").mkdir(parents=True)
    (folder / "ja").mkdir()
    western = "Café crème “smart” — €5"
    japanese = "日本語のテキストです。東京は晴れ。"
    (folder / "fr" / "a.txt").write_bytes(western.encode("cp1252"))
    (folder / "ja" / "b.txt").write_bytes(japanese.encode("shift_jis"))
    (folder / "fr" / "c.txt").write_text("plain utf-8 ✓", encoding="utf-8")
    table = tmp_path / "rows.csv"
    table.write_bytes(f"text\n{western}\n".encode("cp1252"))
    with embedlab.open(store_path, quiet=True) as lab:
        report = lab.ingest_path(folder, dims=128)
        assert dict(report.encodings) == {"cp1252": 1, "shift_jis": 1}
        texts = set(lab.documents()["text"])
        assert {western, japanese, "plain utf-8 ✓"} <= texts
        rows = lab.ingest_path(table, dims=128)
        assert dict(rows.encodings) == {"cp1252": 1}
    env = {"GOOGLE_GEMINI_BASE_URL": gemini.url, "GEMINI_API_KEY": VALID_KEY}
    args = ["--store", str(store_path), "ingest", "files", str(folder), "--dims", "128"]
    done = run_cli(args, env=env)
    assert done.returncode == 0, done.stderr
    assert "2 files not UTF-8 (read 1 as cp1252, 1 as shift_jis)" in done.stdout


# -- errors in the caller's words ----------------------------------------------------------


def test_messages_name_arguments_for_each_front_end():
    error = InvalidRequest("pass <<source>> with the archive, or <<replace=True>>")
    assert str(error) == "pass source= with the archive, or replace=True"
    assert error.say("http") == 'pass "source" with the archive, or "replace": true'
    assert error.say("cli") == "pass --source with the archive, or --replace"
    assert speak("<<text|--text-col>>", "cli") == "--text-col"
    assert speak("<<text|--text-col>>", "http") == '"text"'


def test_a_selection_that_matches_nothing_is_not_found_everywhere(store_path):
    from embedlab.service.app import create_app

    build(store_path, n=30)
    with embedlab.open(store_path, quiet=True) as lab:
        with pytest.raises(NotFound, match="label0"):
            lab.analyze(labels="zzz", reduce="pca")
        with pytest.raises(NotFound):
            lab.neighbours("test/1", labels="zzz*")
        with pytest.raises(NotFound):
            lab.documents(labels="zzz")
        with pytest.raises(NotFound, match="source="):
            lab.ingest_newsgroups(source=store_path / "missing.tar.gz")
        with TestClient(create_app(lab)) as http:
            listed = http.get("/api/v1/documents", params={"labels": "zzz"})
            found = http.get("/api/v1/neighbours", params={"id": "test/1", "labels": "zzz*"})
    assert listed.status_code == 404 and found.status_code == 404
    assert listed.headers["content-type"] == "application/problem+json"


def test_an_upload_missing_its_column_names_the_query_field(store_path, gemini):
    from embedlab.service.app import create_app

    with embedlab.open(store_path, quiet=True) as lab, TestClient(create_app(lab)) as http:
        answer = http.post(
            "/api/v1/ingest",
            params={"text": "body", "dims": 128},
            content=b"text,label\nhello,a\n",
            headers={"content-type": "text/csv"},
        )
    assert answer.status_code == 400, answer.text
    detail = answer.json()["detail"]
    assert '"text"' in detail and "--text-col" not in detail


def test_repair_reembed_says_the_cost_asks_and_embeds_exactly_the_lost_vectors(store_path, gemini):
    docs = [{"id": f"p{i}", "text": f"post {i} topic:{'abc'[i % 3]}"} for i in range(120)]
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest(docs, dims=128)
        space = lab.space()
    hit = damage(index_folder(store_path, space), 2)
    env = {"GOOGLE_GEMINI_BASE_URL": gemini.url, "GEMINI_API_KEY": VALID_KEY}
    args = ["--store", str(store_path), "repair", "--reembed"]
    sent = len(gemini.requests)

    refused = invoke_cli(args, env=env)  # not a terminal, no --yes: it says so and spends nothing
    assert refused.returncode == 1 and "--yes" in refused.stderr, refused.stderr
    assert "texts to embed, would cost est. $" in refused.stdout
    assert len(gemini.requests) == sent

    done = invoke_cli([*args, "--yes"], env=env)
    assert done.returncode == 0, done.stderr
    with embedlab.open(store_path, quiet=True) as lab:
        assert lab.repair(check=True)[0].needs_vector == []
        assert len(lab.documents()) == 120
    again = [t for r in gemini.requests[sent:] for t in r.texts]
    assert again and set(again) <= {d["text"] for d in docs if d["id"] in hit}
    assert len(again) == len(set(again))  # each lost vector paid for once


def test_an_upload_in_cp1252_is_read_right_over_http(store_path, gemini):
    from embedlab.service.app import create_app

    western = "Café crème “smart” — €5"
    with embedlab.open(store_path, quiet=True) as lab, TestClient(create_app(lab)) as http:
        answer = http.post(
            "/api/v1/ingest",
            params={"wait": "true", "dims": 128, "name": "shop"},
            content=f"text\n{western}\n".encode("cp1252"),
            headers={"content-type": "text/csv"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["encodings"] == {"cp1252": 1}
        assert list(lab.documents()["text"]) == [western]


# -- found in review: the edges of the pending documents and of repair ----------------------


def repaired(store_path: Path, seed: int = 0) -> dict[str, tuple[str, dict]]:
    """`store_path`'s store (as `build` left it) damaged and repaired: its documents that
    need their vector, by id."""
    damage(index_folder(store_path), seed)
    assert invoke_cli(["--store", str(store_path), "repair"]).returncode == 0
    with Store.open_local(store_path) as store:
        return {i: (t, m) for i, t, m in store.collection(SPACE).pending()}


@pytest.fixture(scope="module")
def repaired_once(built_once, tmp_path_factory) -> tuple[Path, dict[str, tuple[str, dict]]]:
    """`build`'s store damaged (seed 0) and repaired, once for the module."""
    path = tmp_path_factory.mktemp("repaired") / "store"
    shutil.copytree(built_once, path)
    return path, repaired(path)


@pytest.fixture
def waiting_store(repaired_once, store_path) -> tuple[Path, dict[str, tuple[str, dict]]]:
    """This test's own copy of the repaired store, and its documents waiting for a vector."""
    shutil.copytree(repaired_once[0], store_path)
    assert repaired_once[1]  # the damage left documents waiting, or these tests test nothing
    return store_path, dict(repaired_once[1])


def test_a_document_waiting_for_its_vector_still_belongs_to_its_source(waiting_store):
    store_path, waiting = waiting_store
    doc_id = sorted(waiting)[0]
    with Store.open_local(store_path) as store:
        provider = CountingProvider(SPACE)
        evil = Document(doc_id, "OVERWRITTEN", "evil", "spam")
        with pytest.raises(Conflict, match="belongs to source test"):
            ingest([evil], store, SPACE, lambda: provider)
        assert provider.calls == [] and doc_id in {
            i for i, _t, _m in store.collection(SPACE).pending()
        }


def test_deleting_a_source_deletes_its_documents_waiting_for_a_vector(waiting_store):
    store_path, waiting = waiting_store
    one, *rest = sorted(waiting)
    with embedlab.open(store_path, quiet=True) as lab:
        assert lab.delete(ids=[one]) == [one]
        removed = lab.delete(sources="test")
        assert set(rest) <= set(removed) and len(removed) == N - 1
        assert lab.stats()["spaces"][0]["documents"] == 0
    with Store.open_local(store_path) as store:
        provider = CountingProvider(SPACE)
        ingest([Document("x/1", "new", "x")], store, SPACE, lambda: provider)
        assert provider.texts_embedded == ["new"]  # nothing deleted comes back, or is paid


def test_an_interrupted_swap_is_finished_and_refuses_writes_until_then(store_path):
    build(store_path)
    name = SPACE.collection_name
    with Store.open_local(store_path) as store:  # the state a repair killed mid-swap leaves
        client = store.client
        col = client.get_collection(name)
        got = col.get(include=["embeddings", "documents", "metadatas"])
        copy = client.create_collection(name + "-rebuild", metadata=col.metadata)
        copy.upsert(**{k: got[k] for k in ("ids", "embeddings", "documents", "metadatas")})
        col.modify(name=name + "-old")
    with Store.open_local(store_path) as store:
        with pytest.raises(StoreDamaged, match="did not finish"):
            ingest(make_docs(5, start=N), store, SPACE, lambda: CountingProvider(SPACE))
    fixed = run_cli(["--store", str(store_path), "repair"])
    assert fixed.returncode == 0, fixed.stderr
    with Store.open_local(store_path) as store:
        assert store.collection(SPACE).count() == N
        names = {c.name for c in store.client.list_collections()}
        assert name + "-old" not in names and name + "-rebuild" not in names


def test_damage_behind_restored_file_times_is_still_caught(store_path):
    import os

    build(store_path)
    assert run_cli(["--store", str(store_path), "stats"]).returncode == 0  # checked, noted
    target = index_folder(store_path) / "data_level0.bin"
    before = target.stat()
    damage(index_folder(store_path), 4)
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    one_line_damage_error(run_cli(["--store", str(store_path), "neighbors", "--id", "test/1"]))


def test_a_damaged_space_is_listed_counted_and_can_be_deleted(store_path):
    other = Space("fake", "other-model", "none", 16)
    build(store_path)
    build(store_path, other, 50)
    damage(index_folder(store_path), 5)
    with embedlab.open(store_path, quiet=True) as lab:
        assert lab.space_sizes() == {SPACE: N, other: 50}
        stats = {s["model"]: s for s in lab.stats()["spaces"]}
        assert "embedlab repair" in stats["fake-model"]["damaged"]
        assert stats["other-model"]["documents"] == 50 and "damaged" not in stats["other-model"]
        gone = lab.delete_space(SPACE)
        assert gone["documents"] == N and lab.spaces() == [other]


def test_api_docs_reference_only_the_service_itself(store_path):
    import re

    from embedlab.service.app import create_app

    with embedlab.open(store_path, quiet=True) as lab, TestClient(create_app(lab)) as http:
        for page in ("/docs", "/redoc"):
            html = http.get(page).text
            urls = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
            assert urls and all(u.startswith("/") for u in urls), urls
            for url in urls:
                assert http.get(url).status_code == 200, url
