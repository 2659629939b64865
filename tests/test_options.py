"""Options declared once (options.py): the CLI's click options, the service's request
bodies and the library's checks are built from one table, so they agree on defaults,
choices, limits and messages. And the value objects: Space specs, Selection globs."""

from __future__ import annotations

import embedlab
import numpy as np
import pytest
from click.testing import CliRunner
from embedlab.cli import cli
from embedlab.options import (
    ANALYZE,
    COMPARE,
    INGEST,
    NEIGHBOURS_OPTIONS,
    Option,
    Table,
    validate,
)
from embedlab.service.app import (
    AnalysisRequest,
    ComparisonRequest,
    EmbeddingOptions,
    IngestRequest,
    NeighboursRequest,
)
from embedlab.store import Space, Store
from embedlab.store.selection import NO_LABEL, Selection, parse_globs
from fastapi.testclient import TestClient

from tests.test_analyze import grouped_corpus

COMMANDS = [("analyze", ANALYZE, AnalysisRequest), ("compare", COMPARE, ComparisonRequest)]
COMMANDS += [("neighbors", NEIGHBOURS_OPTIONS, NeighboursRequest)]
COMMANDS += [("ingest jsonl", INGEST, EmbeddingOptions), ("ingest files", INGEST, IngestRequest)]


def _click_param(command: str, name: str):
    found = cli
    for part in command.split():
        found = found.commands[part]
    for param in found.params:
        if param.name in (name, {"algorithm": "algo"}.get(name)):
            return param
    raise AssertionError(f"{command} has no option for {name}")


@pytest.mark.parametrize("command, table, model", COMMANDS)
def test_click_and_pydantic_declarations_carry_the_tables_rules(command, table, model):
    schema = model.model_json_schema()["properties"]
    for option in table:
        if not option.http:
            assert option.name not in model.model_fields or option.name in ("model", "task_type")
            continue
        field = model.model_fields[option.name]
        assert field.default == option.default, option.name
        assert schema[option.name].get("minimum") == (
            None if option.above_minimum else option.minimum
        )
        assert schema[option.name].get("maximum") == option.maximum
        assert schema[option.name].get("enum") == (list(option.choices or []) or None)
    for option in table:
        if not option.cli:
            continue
        param = _click_param(command, option.name)
        assert param.default == option.default and param.help.startswith(option.help)
        assert param.opts == list(option.cli_flags)
        if option.choices:
            assert param.type.get_metavar(param) == f"[{'|'.join(option.choices)}]"


BAD = [
    ("analyze", ["--eps", "5", "--algo", "dbscan"], dict(eps=5, algorithm="dbscan")),
    ("analyze", ["--text-weight", "11"], dict(text_weight=11)),
    ("analyze", ["--min-cluster-size", "1", "--algo", "hdbscan"], dict(min_cluster_size=1)),
    ("analyze", ["--per-class", "0"], dict(per_class=0)),
    ("analyze", ["--algo", "spectral"], dict(algorithm="spectral")),
    ("analyze", ["--reduce", "mds"], dict(reduce="mds")),
    ("analyze", ["--seed", "-1"], dict(seed=-1)),
    ("compare", ["--neighbours", "101"], dict(neighbours=101)),
    ("compare", ["--k", "0"], dict(k=0)),
    ("ingest", ["--concurrency", "65"], dict(concurrency=65)),
    ("ingest", ["--batch-size", "0"], dict(batch_size=0)),
    ("ingest", ["--dims", "70000"], dict(dims=70000)),
    ("ingest", ["--provider", "openai"], dict(provider="openai")),
]


@pytest.mark.parametrize("command, args, values", BAD)
def test_a_bad_value_says_the_same_on_every_front_end(store_path, tmp_path, command, args, values):
    table = {"analyze": ANALYZE, "compare": COMPARE, "ingest": INGEST}[command]
    with pytest.raises(embedlab.InvalidRequest) as library:
        validate(table, values)
    message = str(library.value)
    assert message.startswith((next(iter(values)), "unknown "))

    before = {
        "analyze": ["analyze"],
        "compare": ["compare", "--space", "a:b", "--space", "c:d"],
        "ingest": ["ingest", "jsonl", str(tmp_path / "nowhere.jsonl")],
    }[command]
    after = [] if command == "ingest" else ["--out", str(tmp_path / "r")]
    result = CliRunner().invoke(cli, ["--store", str(store_path), *before, *args, *after])
    assert result.exit_code == 2 and message in result.output, result.output

    body = {
        "analyze": {},
        "compare": {"space_a": "a:b", "space_b": "c:d"},
        "ingest": {"documents": [{"id": "a", "text": "a text"}]},
    }[command] | values
    route = {"analyze": "analyses", "compare": "comparisons", "ingest": "ingest"}[command]
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    with embedlab.open(store_path, quiet=True) as lab:
        response = TestClient(create_app_for(lab)).post(f"/api/v1/{route}", json=body)
    assert response.status_code == 422 and message in response.json()["detail"], response.text


def create_app_for(lab):
    from embedlab.service.app import create_app

    return create_app(lab)


def test_rules_between_options_are_the_librarys_on_every_front_end(store_path, tmp_path):
    message = "k does not apply to hdbscan"
    with pytest.raises(embedlab.InvalidRequest, match=message):
        validate(ANALYZE, dict(algorithm="hdbscan", k=3))
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    args = ["--store", str(store_path), "analyze", "--algo", "hdbscan", "--k", "3"]
    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code != 0 and message in result.output
    with embedlab.open(store_path, quiet=True) as lab:
        body = {"algorithm": "hdbscan", "k": 3}
        response = TestClient(create_app_for(lab)).post("/api/v1/analyses", json=body)
    assert response.status_code == 400 and message in response.json()["detail"]


def test_validate_coerces_and_fills_defaults():
    values = validate(ANALYZE, {"k": "7", "eps": None})
    assert values["k"] == 7 and values["algorithm"] == "kmeans" and values["seed"] == 0
    assert validate(ANALYZE, {"k": "auto"})["k"] == "auto"
    assert validate(COMPARE, {})["k"] == 4
    with pytest.raises(embedlab.InvalidRequest, match="the same for both spaces, not None"):
        validate(COMPARE, {"k": None})
    table = Table((Option("n", int, None, minimum=1, check=lambda v: "odd" if v % 2 else None),))
    with pytest.raises(embedlab.InvalidRequest, match="^odd$"):
        validate(table, {"n": 3})
    with pytest.raises(embedlab.InvalidRequest, match="^n must be at least 1, not 0$"):
        validate(table, {"n": 0})
    assert validate(table, {"n": 4}) == {"n": 4}


SPACES = [
    Space("gemini", "gemini-embedding-001", "CLUSTERING", 768),
    Space("gemini", "models/text-embedding-004", "RETRIEVAL_DOCUMENT", 3072),
    Space("local", "all-MiniLM-L6-v2", "none", 384),
    Space("custom", "my-vectors", "none", 3),
]


@pytest.mark.parametrize("space", SPACES)
def test_a_space_round_trips_through_its_spec_and_its_dict(space):
    assert Space.parse(space.spec()).exact() == space
    assert Space.parse(space.spec()).matches(space)
    assert Space.from_dict(space.to_dict()) == space
    assert Space.from_dict({**space.to_dict(), "dims": str(space.dims), "x": 1}) == space
    assert space.name == f"{space.provider}:{space.model}:{space.dims}"
    others = [s for s in SPACES if s != space]
    assert not any(Space.parse(space.spec()).matches(s) for s in others)


def test_a_space_spec_may_leave_parts_out_and_says_what_is_wrong():
    query = Space.parse("gemini")
    assert query.exact() is None and sum(query.matches(s) for s in SPACES) == 2
    assert Space.parse("gemini:text-embedding-004").matches(SPACES[1])  # the last path part
    with pytest.raises(embedlab.InvalidRequest, match="dims must be a number"):
        Space.parse("gemini:m:many")
    with pytest.raises(embedlab.InvalidRequest, match="use provider:model"):
        Space.parse(":m")


def test_glob_lists_are_parsed_once_the_same_way():
    assert parse_globs("sci.*, rec.autos,,") == ["sci.*", "rec.autos"]
    assert parse_globs(["a,b", " c "]) == ["a", "b", "c"]
    assert parse_globs("") is None and parse_globs(None) is None and parse_globs(" , ") is None
    assert Selection.globs("x") == ["x"]
    chosen = Selection.of(labels="a,b", sources=["s*"], per_class=3, seed=2, limit=9, ids=["i"])
    assert (chosen.labels, chosen.sources, chosen.ids) == (["a", "b"], ["s*"], ("i",))
    assert chosen.only_globs() == Selection(labels=["a", "b"], sources=["s*"])
    assert chosen.as_dict() == {
        "sources": ["s*"], "labels": ["a", "b"], "per_class": 3, "seed": 2, "limit": 9,
    }  # fmt: skip
    assert NO_LABEL == "(no label)"


def test_the_library_refuses_an_ingest_option_with_the_tables_message(store_path):
    with embedlab.open(store_path, quiet=True) as lab:
        with pytest.raises(embedlab.InvalidRequest, match=r"^concurrency must be 1\.\.64, not 65$"):
            lab.ingest_documents([], provider="local", concurrency=65)
        with pytest.raises(embedlab.InvalidRequest, match="timeout must be more than 0 seconds"):
            lab.ingest_documents([], provider="local", timeout=0)


def test_lab_use_cases_take_one_selection_as_their_keywords(store_path):
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    with embedlab.open(store_path, quiet=True) as lab:
        chosen = Selection.of(labels="sp*,med", per_class=5, seed=3)
        by_selection = lab.documents(selection=chosen)
        by_keywords = lab.documents(labels=["sp*", "med"], per_class=5, seed=3)
        assert list(by_selection["id"]) == list(by_keywords["id"]) and len(by_selection) == 10
        assert set(by_selection["label"]) == {"space", "med"}
        space = lab.space()
        assert len(lab.documents(selection=Selection.of(space=space.spec(), limit=4))) == 4
        with pytest.raises(embedlab.InvalidRequest, match="limit must be at least 1, not 0"):
            lab.documents(selection=Selection(limit=0))
        ids, vectors = lab.vectors(selection=chosen)
        assert ids == list(by_keywords["id"]) and vectors.shape[0] == 10
        wanted = ["syn/med/003", "syn/space/001"]
        ids, vectors = lab.vectors(selection=Selection.of(ids=wanted))
        assert ids == wanted and vectors.shape[0] == 2
        whole_ids, whole = lab.vectors()
        np.testing.assert_array_equal(vectors[0], whole[whole_ids.index("syn/med/003")])
        with pytest.raises(embedlab.InvalidRequest, match="not per_class"):
            lab.vectors(selection=Selection.of(ids=wanted, per_class=2))
        with pytest.raises(embedlab.NotFound, match="no document 'syn/none'"):
            lab.vectors(selection=Selection.of(ids=["syn/none", "syn/med/003"]))


@pytest.mark.parametrize(
    "values, message",
    [
        ({"offset": -1}, "offset must be at least 0, not -1"),
        ({"limit": 0}, "limit must be 1..10000, not 0"),
        ({"limit": 10001}, "limit must be 1..10000, not 10001"),
    ],
)
def test_a_bad_documents_page_says_the_tables_message_in_the_library_and_over_http(
    store_path, values, message
):
    """The page's limits are DOCUMENT_PAGE's, whichever front end asks."""
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store)
    with embedlab.open(store_path, quiet=True) as lab:
        with pytest.raises(embedlab.InvalidRequest) as info:
            lab.document_page(**values)
        assert str(info.value) == message
        response = TestClient(create_app_for(lab)).get("/api/v1/documents", params=values)
        assert 400 <= response.status_code < 500 and response.json()["detail"] == message
        total, page = lab.document_page(offset=2, limit=3)
        assert len(page) == 3 and total > 3
