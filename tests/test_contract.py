"""One contract (`api.LabAPI`): `embedlab.open(path)` and `embedlab.connect(url)` give
the same results for the same arguments and the same exception class for the same
mistake, and neither drops an argument.

"remote" is a real uvicorn on a loopback port serving `create_app(Lab(...))` in this
process, over its own store; "local" opens another store. Both embed with the real SDK
against the fake Gemini server, whose vectors depend on the text alone, so the two
stores hold the same vectors and every answer can be compared.
"""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
import threading
import time
from pathlib import Path

import embedlab
import numpy as np
import pandas as pd
import pytest
from embedlab import api
from embedlab.client import RemoteLab
from embedlab.errors import (
    CODES,
    Conflict,
    EmbedlabError,
    InvalidRequest,
    NotFound,
    ProviderKeyError,
    error_for,
)
from embedlab.lab import Lab

from tests.conftest import free_port
from tests.fake_gemini import VALID_KEY, FakeGemini

DIMS = 128
GROUPS = ("space", "medicine", "cars")
WORDS = {
    "space": "orbit rocket launch moon nasa shuttle planet",
    "medicine": "doctor patient disease treatment clinic vaccine",
    "cars": "engine brake wheel dealer sedan gearbox",
}
SIDES = ("local", "remote")


def corpus() -> list[dict[str, str]]:
    rows = []
    for group in GROUPS:
        words = WORDS[group].split()
        for i in range(8):
            text = f"{' '.join(words[i % 3 :])} note {i} of {group}"
            rows.append({"id": f"{group}/{i}", "text": text, "label": group})
    return rows


class ThreadedService:
    """`create_app(Lab(...))` under a real uvicorn in a daemon thread."""

    def __init__(self, store: Path):
        import uvicorn
        from embedlab.service.app import create_app

        self.lab = embedlab.open(store, quiet=True, keep_vectors=True)
        self.app = create_app(self.lab)
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.app.state.service.jobs.stop()
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.lab.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Both front ends, each over a store that ingested the same corpus through it."""
    folder = tmp_path_factory.mktemp("contract")
    with FakeGemini() as fake, pytest.MonkeyPatch.context() as env:
        env.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        env.setenv("GEMINI_API_KEY", VALID_KEY)
        env.delenv("GOOGLE_API_KEY", raising=False)
        env.setenv("HF_HUB_OFFLINE", "1")
        service = ThreadedService(folder / "served")
        labs = {
            "local": embedlab.open(folder / "local", quiet=True),
            "remote": embedlab.connect(service.url),
        }
        reports = {
            side: lab.ingest(corpus(), provider="gemini", dims=DIMS, batch_size=10)
            for side, lab in labs.items()
        }
        try:
            yield {"labs": labs, "reports": reports, "env": env, "service": service, "fake": fake}
        finally:
            labs["remote"].close()
            labs["local"].close()
            service.stop()


def both(world, call):
    """`call(lab)` on each side: {"local": ..., "remote": ...}."""
    return {side: call(world["labs"][side]) for side in SIDES}


def side_of(lab) -> str:
    """ "local" or "remote": the side `lab` is."""
    return "remote" if isinstance(lab, RemoteLab) else "local"


def raised(world, call) -> dict[str, BaseException]:
    """The exception `call(lab)` raises on each side (each must raise one)."""
    found = {}
    for side in SIDES:
        with pytest.raises(EmbedlabError) as info:
            call(world["labs"][side])
        found[side] = info.value
    return found


def same_class(found: dict[str, BaseException], expected: type[BaseException]) -> None:
    local, remote = found["local"], found["remote"]
    assert isinstance(local, expected), local
    assert isinstance(remote, expected), remote
    # the remote one is rebuilt as the class the local code names (errors.CODES)
    assert type(remote) is error_for(type(local).code) or type(remote) is type(local), (
        type(local),
        type(remote),
    )


# -- the contract itself -----------------------------------------------------------------


def test_both_implement_every_contract_method_with_the_same_signature():
    assert len(api.CONTRACT) >= 30
    for name in api.CONTRACT:
        if name == "location":
            assert isinstance(getattr(Lab, name), property)
            assert isinstance(getattr(RemoteLab, name), property)
            continue
        wanted = inspect.signature(getattr(api.LabAPI, name))
        for kind in (Lab, RemoteLab):
            got = inspect.signature(getattr(kind, name))
            assert got == wanted, f"{kind.__name__}.{name}{got} is not LabAPI.{name}{wanted}"
            assert not any(
                p.kind is p.VAR_KEYWORD and not name.startswith("ingest")
                for p in got.parameters.values()
            ), f"{kind.__name__}.{name} takes **kwargs: an argument could be dropped"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")
def test_a_type_checker_finds_both_classes_implement_the_contract():
    """mypy on the package (api.py's `_implementations` returns a Lab and a RemoteLab as
    LabAPIs: a method missing or with other parameters on either side is an error there).
    Exactly `make lint`'s command and configuration, so it shares lint's incremental cache:
    a fresh clone's `make test` has just checked everything (~20 s cold), this run ~2 s."""
    repo = Path(api.__file__).resolve().parent
    link = repo / "build" / "mypy" / "embedlab"  # pyproject's mypy_path names the package here
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("..", ".."))
    checked = subprocess.run(
        [sys.executable, "-m", "mypy"], capture_output=True, text=True, cwd=repo, timeout=300
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "api.py" not in checked.stdout, checked.stdout


def test_connect_gives_the_http_client_and_both_are_lab_apis(world):
    remote = embedlab.connect("http://127.0.0.1:9", token="t")
    try:
        assert isinstance(remote, RemoteLab)
        assert remote._http.headers["Authorization"] == "Bearer t"
    finally:
        remote.close()
    assert isinstance(world["labs"]["local"], api.LabAPI)
    assert isinstance(world["labs"]["remote"], api.LabAPI)


def test_every_error_class_has_a_stable_code_that_rebuilds_it():
    assert len(set(CODES)) == len(CODES)
    for code, kind in CODES.items():
        assert kind.code == code
        assert error_for(code) is kind
    assert error_for("no-such-code") is EmbedlabError


def test_every_code_crosses_http_as_its_own_class(world):
    """A library error raised in a route comes back from RemoteLab as the same class,
    whatever its HTTP status (StoreBusy and TransientError are both 503, and stay apart)."""
    from embedlab.errors import StoreBusy, TransientError

    app = world["service"].app

    def boom(code: str) -> None:
        kind = error_for(code)
        raise kind("x") if kind is not TransientError else kind("x", retry_after=1.0)

    app.add_api_route("/api/v1/contract-boom/{code}", boom, methods=["GET"])
    remote = world["labs"]["remote"]
    for code, kind in CODES.items():
        with pytest.raises(EmbedlabError) as info:
            remote._request("GET", f"/contract-boom/{code}")
        if kind is EmbedlabError:  # no closer class: the status suggests one
            assert isinstance(info.value, InvalidRequest)
            continue
        assert type(info.value) is kind, (code, type(info.value))
    with pytest.raises(StoreBusy):
        remote._request("GET", "/contract-boom/store_busy")


# -- same arguments, same results ----------------------------------------------------------


def test_ingest_reports_count_the_same(world):
    local, remote = (world["reports"][side] for side in SIDES)
    assert local.embedded == remote.embedded == len(corpus())
    assert (local.cached, local.requests) == (remote.cached, remote.requests)
    again = both(world, lambda lab: lab.ingest(corpus(), provider="gemini", dims=DIMS))
    assert again["local"].cached == again["remote"].cached == len(corpus())
    assert again["local"].embedded == again["remote"].embedded == 0


def test_documents_sampled_by_per_class_and_seed_are_the_same_documents(world):
    for arguments in (
        {"labels": ["space", "cars"], "per_class": 3, "seed": 3},
        {"labels": "space,cars", "per_class": 3, "seed": 7},
        {"limit": 5, "seed": 11},
        {"sources": "python", "labels": ["med*"]},
    ):
        frames = both(world, lambda lab, a=arguments: lab.documents(**a))
        local, remote = frames["local"], frames["remote"]
        assert list(local["id"]) == list(remote["id"]), arguments
        assert list(local.columns) == list(remote.columns)
        assert local.to_dict(orient="records") == remote.to_dict(orient="records")
    seeds = both(world, lambda lab: lab.documents(per_class=2, seed=1)["id"].tolist())
    other = both(world, lambda lab: lab.documents(per_class=2, seed=2)["id"].tolist())
    assert seeds["local"] == seeds["remote"] and other["local"] == other["remote"]
    assert seeds["local"] != other["local"]  # the seed is used, on both sides


def test_a_selection_stands_for_its_keywords_on_both(world):
    from embedlab.store.selection import Selection

    chosen = Selection.of(labels="space,cars", per_class=3, seed=7)
    by_selection = both(world, lambda lab: lab.documents(selection=chosen)["id"].tolist())
    by_keywords = both(world, lambda lab: lab.documents(labels="space,cars", per_class=3, seed=7))
    assert by_selection["local"] == by_selection["remote"]
    assert by_selection["local"] == by_keywords["local"]["id"].tolist()
    by_ids = Selection.of(ids=["cars/1"])
    same_class(raised(world, lambda lab: lab.documents(selection=by_ids)), InvalidRequest)


def test_one_document_and_a_dry_run_delete_are_the_same(world):
    found = both(world, lambda lab: lab.document("cars/3"))
    assert found["local"] == found["remote"]
    removed = both(world, lambda lab: lab.delete(labels=["cars"], dry_run=True))
    assert removed["local"] == removed["remote"] == [f"cars/{i}" for i in range(8)]


def test_delete_and_neighbours_take_a_selection_for_their_filters_on_both(world):
    from embedlab.store.selection import Selection

    cars = Selection.of(labels="cars")
    removed = both(world, lambda lab: lab.delete(selection=cars, dry_run=True))
    assert removed["local"] == removed["remote"] == [f"cars/{i}" for i in range(8)]
    two = Selection.of(ids=["cars/1", "space/2"])
    removed = both(world, lambda lab: lab.delete(selection=two, dry_run=True))
    assert sorted(removed["local"]) == sorted(removed["remote"]) == ["cars/1", "space/2"]
    frames = both(world, lambda lab: lab.neighbours("space/2", k=4, selection=cars))
    by_keywords = both(world, lambda lab: lab.neighbours("space/2", k=4, labels="cars"))
    for side in SIDES:
        assert list(frames[side]["id"]) == list(by_keywords[side]["id"])
        assert set(frames[side]["label"]) == {"cars"}
    # a sample, a seed or a limit means nothing to either: refused by name, not dropped
    sampled = Selection.of(labels="cars", per_class=2)
    found = raised(world, lambda lab: lab.delete(selection=sampled, dry_run=True))
    same_class(found, InvalidRequest)
    assert "not per_class" in str(found["local"]) and "not per_class" in str(found["remote"])
    found = raised(world, lambda lab: lab.neighbours("space/2", selection=two))
    same_class(found, InvalidRequest)
    assert "not ids" in str(found["remote"])


def test_neighbours_by_id_and_by_text_are_the_same(world):
    for call in (
        lambda lab: lab.neighbours("space/2", k=5),
        lambda lab: lab.neighbours(text="rocket launch to the moon", k=4, labels=["space"]),
        lambda lab: lab.neighbours(vector=np.ones(DIMS, dtype=np.float32), k=3),
    ):
        frames = both(world, call)
        local, remote = frames["local"], frames["remote"]
        assert list(local["id"]) == list(remote["id"])
        np.testing.assert_allclose(local["similarity"], remote["similarity"], atol=1e-5)
        assert local.attrs["space"] == remote.attrs["space"]


def test_analyses_are_the_same_and_a_reopened_one_writes_its_map_with_texts(world, tmp_path):
    made = both(world, lambda lab: lab.analyze(k=3, reduce="pca", per_class=6, seed=5))
    local, remote = made["local"], made["remote"]
    assert local.ids == remote.ids
    assert local.cluster_labels.tolist() == remote.cluster_labels.tolist()
    assert local.metrics == remote.metrics
    assert local.selection == remote.selection
    for side, lab in world["labs"].items():
        assert lab.latest_analysis().id == made[side].id
        assert lab.analyses()["id"].iloc[0] == made[side].id
    found = both(world, lambda lab: lab.find(made[side_of(lab)].id, "rocket", limit=50))
    assert found["local"] == found["remote"] and found["local"]
    assert both(world, lambda lab: lab.successor(made[side_of(lab)].id)) == {
        "local": None,
        "remote": None,
    }
    texts = world["labs"]["local"].documents(per_class=6, seed=5)["text"].tolist()
    for side, lab in world["labs"].items():
        reopened = lab.analysis(made[side].id)
        out = tmp_path / side
        reopened.save(out, html=True)
        page = (out / "map.html").read_text(encoding="utf-8")
        # texts ride inside the page's JSON: look for words every text shares
        assert all(t.split(" note ")[0].split()[0] in page for t in texts), side
        written = reopened.map_data()
        assert written[0] is not None and sorted(written[0]) == sorted(texts), side
        assert written[1] is not None and written[1][0].shape[0] == len(texts), side


def test_an_update_after_an_ingest_is_the_same_on_both(world):
    """lab.update places what was ingested since the analysis, the same on both sides:
    the same documents kept, placed and counted, the same points and clusters."""
    made = both(world, lambda lab: lab.analyze(labels=["space", "cars"], k=2, reduce="pca"))
    extra = [
        {"id": f"space/extra{i}", "text": f"orbit rocket probe {i} of space", "label": "space"}
        for i in range(3)
    ]
    both(world, lambda lab: lab.ingest(extra, provider="gemini", dims=DIMS))
    try:
        updated = both(world, lambda lab: lab.update(made[side_of(lab)].id))
        local, remote = updated["local"], updated["remote"]
        assert local.update_report["added"] == remote.update_report["added"] == 3
        for key in ("kept", "removed", "changed", "refit_advised", "drift"):
            assert local.update_report[key] == remote.update_report[key], key
        assert local.ids == remote.ids and sorted(local.placed) == sorted(remote.placed)
        assert local.cluster_labels.tolist() == remote.cluster_labels.tolist()
        assert np.allclose(local.coords, remote.coords)
        assert {local.parent, remote.parent} == {made["local"].id, made["remote"].id}
        for side in (local, remote):  # each names its own parent
            assert side.metrics["params"]["update"].pop("parent") == side.parent
        assert local.metrics == remote.metrics
    finally:
        both(world, lambda lab: lab.delete(ids=[e["id"] for e in extra]))


# -- same mistake, same exception class ----------------------------------------------------


def test_an_unknown_analysis_is_not_found_on_both(world):
    same_class(raised(world, lambda lab: lab.analysis("20990101-000000-000000-dead")), NotFound)
    same_class(raised(world, lambda lab: lab.delete_analysis("no-such-analysis")), NotFound)


def test_an_unknown_document_or_label_is_not_found_on_both(world):
    same_class(raised(world, lambda lab: lab.document("nope/1")), NotFound)
    same_class(raised(world, lambda lab: lab.documents(labels=["zzz*"])), NotFound)


def test_a_job_that_fails_raises_its_own_class_on_both(world):
    """An analysis job whose selection matches nothing fails on the service with
    NotFound: the job carries the code, and the client raises NotFound (not a generic
    InvalidRequest); an update of no stored analysis is NotFound too."""
    found = raised(world, lambda lab: lab.analyze(labels=["zzz*"], k=2, reduce="pca"))
    same_class(found, NotFound)
    same_class(raised(world, lambda lab: lab.update("no-such-analysis")), NotFound)
    space = world["labs"]["local"].spaces()[0]
    same_class(raised(world, lambda lab: lab.compare(space, space, reduce="pca")), InvalidRequest)


def test_an_unknown_space_is_the_same_mistake_on_both(world):
    for call in (
        lambda lab: lab.space("gemini:no-such-model:7"),
        lambda lab: lab.delete_space("gemini:no-such-model:7"),
        lambda lab: lab.documents(space="gemini:no-such-model:7"),
        lambda lab: lab.neighbours("space/1", space="gemini:no-such-model:7"),
    ):
        found = raised(world, call)
        assert type(found["local"]).code == type(found["remote"]).code, found
        same_class(found, error_for(type(found["local"]).code))
    assert both(world, lambda lab: lab.space()) == {
        "local": world["labs"]["local"].spaces()[0],
        "remote": world["labs"]["local"].spaces()[0],
    }


def test_bad_options_are_invalid_requests_on_both(world):
    same_class(raised(world, lambda lab: lab.delete()), InvalidRequest)
    same_class(raised(world, lambda lab: lab.documents(per_class=0)), InvalidRequest)
    same_class(raised(world, lambda lab: lab.analyze(algorithm="nope")), InvalidRequest)
    same_class(raised(world, lambda lab: lab.analyze(k=3, reduce="pca", eps=0.5)), InvalidRequest)
    same_class(raised(world, lambda lab: lab.analyze(k=3, fresh="yes")), InvalidRequest)


def test_a_conflict_of_sources_is_a_conflict_on_both(world):
    taken = [{"id": "space/1", "text": "another text for a taken id", "label": "space"}]
    found = raised(
        world, lambda lab: lab.ingest(taken, source="intruder", provider="gemini", dims=DIMS)
    )
    same_class(found, Conflict)


def test_two_files_with_one_default_name_are_refused_on_both(world, tmp_path):
    """A default source name (the file's stem) belongs to the first file ingested under
    it: another file of that name needs a name of its own, through a service too."""
    import json

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        row = {"id": f"{folder}1", "text": f"orbit note from folder {folder}", "label": "space"}
        (tmp_path / folder / "notes.jsonl").write_text(json.dumps(row) + "\n")
    for lab in world["labs"].values():
        lab.ingest_path(tmp_path / "a" / "notes.jsonl", id="id", provider="gemini", dims=DIMS)
    found = raised(
        world,
        lambda lab: lab.ingest_path(
            tmp_path / "b" / "notes.jsonl", id="id", provider="gemini", dims=DIMS
        ),
    )
    same_class(found, InvalidRequest)
    assert all("a name of its own" in str(e) for e in found.values()), found


def test_a_missing_key_is_a_provider_key_error_on_both(world):
    new = [{"id": "fresh/1", "text": "a text no store holds yet", "label": "space"}]
    env = world["env"]
    env.delenv("GEMINI_API_KEY")
    try:
        found = raised(world, lambda lab: lab.ingest(new, provider="gemini", dims=DIMS))
    finally:
        env.setenv("GEMINI_API_KEY", VALID_KEY)
    same_class(found, ProviderKeyError)


def test_a_cancel_token_stops_the_ingest_on_both(world):
    """`cancel` reaches the service (it cancels the job): IngestCancelled on both sides,
    with what was embedded before it kept."""
    from embedlab import CancelToken, IngestCancelled

    from tests.fake_gemini import Fault

    new = [{"id": f"slow/{i}", "text": f"slow text number {i}", "label": "cars"} for i in range(12)]
    world["fake"].chaos = lambda: Fault(delay=0.4)
    found = {}
    try:
        for side, lab in world["labs"].items():
            token = CancelToken()

            def progress(event, token=token) -> None:
                if event.done > 0:
                    token.cancel()

            with pytest.raises(IngestCancelled) as info:
                lab.ingest(new, provider="gemini", dims=DIMS, batch_size=2, concurrency=1,
                           cancel=token, on_progress=progress)  # fmt: skip
            found[side] = info.value
    finally:
        world["fake"].chaos = None
    for side, exc in found.items():
        assert 0 < exc.report.embedded < len(new), (side, exc.report.embedded)


def test_what_cannot_work_remotely_is_refused_by_name(world, tmp_path):
    remote = world["labs"]["remote"]
    with pytest.raises(InvalidRequest, match="max_attempts"):
        remote.ingest(corpus()[:1], provider="gemini", dims=DIMS, max_attempts=2)
    with pytest.raises(InvalidRequest, match="repair"):
        remote.repair()


def test_export_takes_a_selection_like_vectors(world, tmp_path):
    """`export(selection=)`: a sample is the rows `documents(selection=)` gives, ids are
    exactly those rows in their order, an unknown id is named."""
    import json

    from embedlab.errors import DocumentNotFound
    from embedlab.store.selection import Selection

    local = world["labs"]["local"]
    sample = Selection.of(labels="space,cars", per_class=2, seed=5)
    assert local.export(tmp_path / "a.jsonl", "jsonl", selection=sample) == 4
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == local.documents(selection=sample)["id"].tolist()
    by_ids = Selection.of(ids=["cars/5", "space/0"])
    assert local.export(tmp_path / "b.jsonl", "jsonl", selection=by_ids) == 2
    rows = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["cars/5", "space/0"]
    ids, vectors = local.vectors(selection=by_ids)
    assert np.allclose(np.array([r["vector"] for r in rows]), vectors, atol=1e-6)
    with pytest.raises(DocumentNotFound, match="nope"):
        local.export(tmp_path / "c.jsonl", "jsonl", selection=Selection.of(ids=["nope"]))
    remote = world["labs"]["remote"]  # the service exports by globs: a sample is refused by name
    with pytest.raises(InvalidRequest, match="per_class"):
        remote.export(tmp_path / "d.jsonl", "jsonl", selection=sample)
    assert not (tmp_path / "d.jsonl").exists()


def test_export_works_on_both_and_a_delete_names_the_ids_it_did_not_find(world, tmp_path):
    """Issue 25 item 13: export over the service writes what the store writes (every
    format); a delete of an unknown id names it (`not_found`) on both sides."""
    import pyarrow.parquet as pq

    for fmt, name in (("parquet", "out.parquet"), ("jsonl", "out.jsonl"), ("npy", "npy")):
        written = both(world, lambda lab, fmt=fmt, name=name: (
            lab.export(tmp_path / side_of(lab) / name, fmt, labels=["space"])
        ))  # fmt: skip
        assert written == {"local": 8, "remote": 8}
    tables = {side: pq.read_table(tmp_path / side / "out.parquet") for side in SIDES}
    assert tables["local"].equals(tables["remote"])
    for name in ("out.jsonl", "npy/documents.jsonl", "npy/vectors.npy"):
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()
    removed = both(world, lambda lab: lab.delete(ids=["space/1", "nope"], dry_run=True))
    assert {side: (list(r), r.not_found) for side, r in removed.items()} == {
        "local": (["space/1"], ["nope"]),
        "remote": (["space/1"], ["nope"]),
    }


def test_a_documents_own_fields_cross_http_and_update_without_embedding(world, tmp_path):
    """A DataFrame's other columns (one named "text": its text is `body`) are stored with
    each document over the service as here; a changed one costs no request on both."""
    frame = pd.DataFrame(
        {
            "id": ["f/1", "f/2"],
            "body": ["fields one of space", "fields two of cars"],
            "text": ["a column named text", "another"],
            "year": [2001, 2002],
        }
    )
    try:
        both(world, lambda lab: lab.ingest(frame, text="body", source="fielded", dims=DIMS))
        found = both(world, lambda lab: lab.document("f/1"))
        assert found["local"] == found["remote"]
        assert found["local"]["fields"] == {"text": "a column named text", "year": 2001}
        changed = frame.assign(year=[2001, 2003])
        again = both(
            world, lambda lab: lab.ingest(changed, text="body", source="fielded", dims=DIMS)
        )
        for report in again.values():
            assert (report.requests, report.fields_updated) == (0, 1)
        frames = both(world, lambda lab: lab.documents(sources="fielded"))
        assert frames["local"].to_dict(orient="records") == frames["remote"].to_dict(
            orient="records"
        )
        assert frames["local"].set_index("id").loc["f/2", "fields"]["year"] == 2003
        written = both(world, lambda lab: (
            lab.export(tmp_path / side_of(lab) / "f.jsonl", "jsonl", sources="fielded")
        ))  # fmt: skip
        assert written == {"local": 2, "remote": 2}
        local, remote = (tmp_path / side / "f.jsonl" for side in SIDES)
        assert local.read_bytes() == remote.read_bytes()
        assert '"fields": {"text": "a column named text", "year": 2001}' in local.read_text()
    finally:
        both(world, lambda lab: lab.delete(sources="fielded"))
