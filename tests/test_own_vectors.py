"""Bringing your own vectors (issue 13, part 3): checked, normalised, stored once, used by
analysis, neighbours and comparisons, never embedded into."""

from __future__ import annotations

import json

import embedlab
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from embedlab.cli import cli
from embedlab.client import RemoteLab
from embedlab.store import Space
from embedlab.store.chroma_store import SpaceCollection

from tests.fake_gemini import fake_vector

MODEL = Space("custom", "my-model", "none", 16)
TOPICS = ["space", "med", "crypt"]


def vector_frame(n: int = 30, scale: float = 3.0) -> pd.DataFrame:
    """Grouped vectors of length `scale` (not unit), one topic per third of the rows."""
    rng = np.random.default_rng(0)
    centres = {t: rng.normal(size=16) * 3 for t in TOPICS}
    rows = []
    for i in range(n):
        topic = TOPICS[i % 3]
        vector = centres[topic] + rng.normal(size=16)
        rows.append(
            {
                "id": f"post-{i}",
                "body": f"post {i} about {topic}",
                "topic": topic,
                "emb": vector / np.linalg.norm(vector) * scale,
            }
        )
    return pd.DataFrame(rows)


@pytest.fixture
def no_provider(monkeypatch):
    """Any attempt to build a provider fails the test (given vectors cost nothing)."""
    import embedlab.ingest.providers

    def forbidden(*args, **kwargs):
        raise AssertionError("storing given vectors touched a provider")

    monkeypatch.setattr(embedlab.ingest.providers, "LocalProvider", forbidden)
    monkeypatch.setattr(embedlab.ingest.providers, "GeminiProvider", forbidden)


@pytest.fixture
def writes(monkeypatch) -> list[int]:
    """Rows per SpaceCollection.write call."""
    calls: list[int] = []
    original = SpaceCollection.write

    def counted(self, docs, vectors, truncated):
        calls.append(len(docs))
        return original(self, docs, vectors, truncated)

    monkeypatch.setattr(SpaceCollection, "write", counted)
    return calls


def test_vectors_are_stored_unit_length_once_and_replaced_when_changed(
    store_path, no_provider, writes
):
    frame = vector_frame()
    given = np.stack(frame["emb"].tolist())
    with embedlab.open(store_path, quiet=True) as lab:
        report = lab.ingest(
            frame, text="body", id="id", label="topic", vector="emb", space="my-model", dims=16
        )
        assert report.space == MODEL and lab.spaces() == [MODEL]
        assert (report.documents, report.stored, report.cached, report.normalised) == (
            30,
            30,
            0,
            30,
        )
        assert (report.requests, report.embedded) == (0, 0) and writes == [30]
        ids, stored = lab.vectors(space="custom:my-model")
        assert ids == sorted(frame["id"])
        expected = given / np.linalg.norm(given, axis=1, keepdims=True)
        order = [frame["id"].tolist().index(i) for i in ids]
        assert np.allclose(stored, expected[order], atol=1e-6)

        again = lab.ingest(
            frame, text="body", id="id", label="topic", vector="emb", space="my-model"
        )
        assert (again.cached, again.stored, again.changed) == (30, 0, 0) and writes == [30]

        frame.at[3, "emb"] = -frame.at[3, "emb"]
        frame.at[4, "emb"] = frame.at[5, "emb"] * 0.5  # another length is the same direction
        frame.at[6, "topic"] = "other"
        changed = lab.ingest(
            frame, text="body", id="id", label="topic", vector="emb", space="my-model"
        )
        assert (changed.cached, changed.stored, changed.changed) == (28, 2, 2)
        assert changed.relabelled == 1 and writes == [30, 2]
        ids, stored = lab.vectors(space=MODEL)
        row = ids.index("post-3")
        assert np.allclose(stored[row], -expected[3], atol=1e-6)
        assert lab.document("post-6", space=MODEL)["label"] == "other"
        assert "2 stored (2 with a changed vector or text)" in changed.summary()

        fewer = frame.drop(index=[0, 1])
        dry = lab.ingest(
            fewer, text="body", id="id", label="topic", vector="emb", space="my-model",
            prune=True, dry_run=True,
        )  # fmt: skip
        assert (dry.pruned, len(lab.vectors(space=MODEL)[0])) == (2, 30)
        pruned = lab.ingest(
            fewer, text="body", id="id", label="topic", vector="emb", space="my-model", prune=True
        )
        assert (pruned.pruned, pruned.stored, writes) == (2, 0, [30, 2])
        assert "post-0" not in lab.vectors(space=MODEL)[0]


@pytest.mark.parametrize(
    "fault, message",
    [
        (lambda v: v[:15], "1 of another length; e.g. post-7: 15 numbers, not 16"),
        (lambda v: np.full(16, np.nan), "1 not finite (NaN or infinity); e.g. post-7"),
        (lambda v: np.zeros(16), "1 all zeros; e.g. post-7"),
        (lambda v: None, "1 no vector; e.g. post-7"),
        (lambda v: "not numbers", "1 not a list of numbers; e.g. post-7"),
    ],
)
def test_one_bad_vector_refuses_the_input_and_names_it(store_path, no_provider, fault, message):
    frame = vector_frame()
    frame.at[7, "emb"] = fault(frame.at[7, "emb"])
    with embedlab.open(store_path, quiet=True) as lab:
        with pytest.raises(embedlab.InvalidRequest, match="nothing was stored") as refused:
            lab.ingest(frame, text="body", id="id", vector="emb", space="my-model", dims=16)
        assert message in str(refused.value)
        assert lab.spaces() == []


def test_options_that_do_not_go_with_given_vectors_are_refused(store_path):
    frame = vector_frame(6)
    with embedlab.open(store_path, quiet=True) as lab:
        with pytest.raises(embedlab.InvalidRequest, match="provider .--provider. does not apply"):
            lab.ingest(frame, text="body", vector="emb", space="m", provider="gemini")
        with pytest.raises(embedlab.InvalidRequest, match="need a space name"):
            lab.ingest(frame, text="body", vector="emb")
        with pytest.raises(embedlab.InvalidRequest, match="give --vector-col COL"):
            lab.ingest(frame, text="body", space="m")
        with pytest.raises(embedlab.InvalidRequest, match="no ':'"):
            lab.ingest(frame, text="body", vector="emb", space="a:b")
        with pytest.raises(embedlab.InvalidRequest, match="no vector column 'nope'"):
            lab.ingest(frame, text="body", vector="nope", space="m")
        assert lab.spaces() == []
    remote = RemoteLab("http://127.0.0.1:9")  # refused before any request is made
    with pytest.raises(embedlab.InvalidRequest, match="the service does not take them"):
        remote.ingest(frame, text="body", vector="emb", space="m")


def test_cli_csv_jsonl_parquet_vectors_and_one_line_errors(store_path, tmp_path, no_provider):
    frame = vector_frame(12)
    with open(tmp_path / "v.jsonl", "w") as file:
        for row in frame.itertuples(index=False):
            line = {"id": row.id, "text": row.body, "label": row.topic, "emb": row.emb.tolist()}
            file.write(json.dumps(line) + "\n")
    text_frame = frame.rename(columns={"body": "text", "topic": "label"})
    text_frame.assign(emb=[" ".join(str(float(x)) for x in v) for v in frame["emb"]]).to_csv(
        tmp_path / "v.csv", index=False
    )
    text_frame.assign(emb=[v.tolist() for v in frame["emb"]]).to_parquet(tmp_path / "v.parquet")
    store = ["--store", str(store_path), "ingest"]
    runner = CliRunner()
    for kind, option, key in (("jsonl", "--vector-key", "--id-key"), ("csv", "--vector-col",
                              "--id-col"), ("parquet", "--vector-col", "--id-col")):  # fmt: skip
        args = [*store, kind, str(tmp_path / f"v.{kind}"), key, "id", option, "emb"]
        args += ["--label-col" if kind != "jsonl" else "--label-key", "label"]
        result = runner.invoke(cli, [*args, "--space-name", "my-model", "--dims", "16"])
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[-1].startswith(
            "12 documents: 0 unchanged, 12 stored, 12 not unit length: stored normalised, "
            "no embedding calls"
        )
    again = runner.invoke(cli, [*args, "--space-name", "my-model"])
    assert again.output.splitlines()[-1].startswith("12 documents: 12 unchanged, 0 stored")
    stats = json.loads(runner.invoke(cli, ["--store", str(store_path), "stats", "--json"]).output)
    (space,) = stats["spaces"]
    assert (space["provider"], space["model"], space["dims"], space["documents"]) == (
        "custom",
        "my-model",
        16,
        36,
    )
    assert sorted(space["by_source"]) == ["csv/v", "jsonl/v", "parquet/v"]
    for extra, message in (
        (["--space-name", "my-model", "--dims", "9"], "12 of 12 vectors cannot be stored"),
        (["--space-name", "x", "--provider", "gemini"], "provider (--provider) does not apply"),
        ([], "need a space name"),
    ):
        result = runner.invoke(cli, [*args, *extra])
        assert result.exit_code == 1 and message in result.output, result.output
        assert "Traceback" not in result.output
    result = runner.invoke(cli, [*store, "csv", str(tmp_path / "v.csv"), "--space-name", "x"])
    assert result.exit_code == 1 and "give --vector-col COL" in result.output


def test_a_custom_space_is_searched_analysed_but_never_embedded_into(store_path, no_provider):
    frame = vector_frame()
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest(frame, text="body", id="id", label="topic", vector="emb", space="my-model")
        by_id = lab.neighbours("post-0", k=3, space=MODEL)
        assert by_id.attrs["requests"] == 0 and "post-0" not in by_id["id"].tolist()
        by_vector = lab.neighbours(vector=frame.at[0, "emb"], k=1, space=MODEL)
        assert by_vector["id"].tolist() == ["post-0"]
        same_text = lab.neighbours(text="post 0 about space", k=1, space=MODEL)
        assert same_text["id"].tolist() == ["post-0"] and same_text.attrs["requests"] == 0
        with pytest.raises(embedlab.InvalidRequest, match="cannot embed a text into it"):
            lab.neighbours(text="a new question", space=MODEL)
        analysis = lab.analyze(space=MODEL, k=3, reduce="pca")
        assert analysis.metrics["hungarian_accuracy"] == 1.0
    result = CliRunner().invoke(cli, ["--store", str(store_path), "neighbors", "anything"])
    assert result.exit_code == 1 and "holds vectors made outside embedlab" in result.output


def test_own_vectors_compare_with_the_gemini_space_they_came_from(store_path, gemini):
    """Vectors exported from one model and brought back agree with it exactly."""
    frame = pd.DataFrame(
        {
            "id": [f"t{i}" for i in range(24)],
            "text": [f"note {i} topic:{TOPICS[i % 3]}" for i in range(24)],
            "label": [TOPICS[i % 3] for i in range(24)],
        }
    )
    frame["emb"] = [fake_vector(t, 768) for t in frame["text"]]
    with embedlab.open(store_path, quiet=True) as lab:
        lab.ingest(frame.drop(columns="emb"), dims=768)
        assert len(gemini.requests) == 1
        lab.ingest(frame, vector="emb", space="exported-gemini-768")
        assert len(gemini.requests) == 1  # given vectors cost no request
        result = lab.compare("gemini:gemini-embedding-001:768", "custom", k=3, reduce="pca")
    assert result.documents["compared"] == 24
    assert result.summary["neighbourhoods"]["jaccard_mean"] == 1.0
    assert result.summary["clusterings"]["ari"] == 1.0
