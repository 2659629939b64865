"""Issue 25 (first use without a stumble): small wording and recording fixes."""

import json

from click.testing import CliRunner
from embedlab.cli import cli

from tests.conftest import jsonl_ingest_args


def invoke(args):
    return CliRunner().invoke(cli, args, catch_exceptions=False)


def test_one_document_reads_singular(store_path, gemini, tmp_path):
    corpus = tmp_path / "one.jsonl"
    corpus.write_text(json.dumps({"id": 1, "text": "a single post"}) + "\n")
    result = invoke(jsonl_ingest_args(store_path, corpus))
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("1 document: 0 cached, 1 embedded, 1 request"), last
    dry = invoke(jsonl_ingest_args(store_path, corpus) + ["--dry-run"])
    assert "dry run: 1 document: 1 cached" in dry.output, dry.output


def test_demo_help_says_what_demo_runs():
    text = " ".join(invoke(["demo", "--help"]).output.split())
    assert "KMeans k=4" in text
    assert "TF-IDF text view" in text  # the local model's k-means mixes in the words


def test_stored_options_carry_the_text_weight_used(store_path):
    import embedlab
    from embedlab.store import Space, Store

    from tests.builders import grouped_corpus

    local = Space("local", "mini-model", "none", 16)  # the local model's default: 1.0
    with Store.open_local(store_path, create=True) as store:
        grouped_corpus(store, per_group=10, space=local)
    with embedlab.open(store_path, quiet=True) as lab:
        analysis = lab.analyze(space=local, k=3, seed=0, reduce="pca")
        assert analysis.options["text_weight"] == 1.0
        assert lab.analysis(analysis.id).options["text_weight"] == 1.0
        plain = lab.analyze(space=local, k=3, seed=0, reduce="pca", text_weight=0)
        assert plain.options["text_weight"] == 0.0


def test_cancelling_a_running_job_answers_cancelling(tmp_path):
    from tests.fake_gemini import FakeGemini
    from tests.service_helpers import InProcessService, documents

    with FakeGemini(latency=0.15) as fake:
        service = InProcessService(tmp_path / "store", fake)
        try:
            slow = service.ingest(documents(200, 1000), wait=False, batch_size=5, dims=128)
            service.wait_embedded(slow["job"], 10)
            cancelled = service.http.delete(f"/api/v1/jobs/{slow['job']}")
            assert cancelled.status_code == 202
            assert cancelled.json()["state"] == "cancelling"
            assert service.wait_job(slow["job"])["state"] == "cancelled"
        finally:
            assert service.stop() == 0


def test_an_id_of_only_spaces_is_refused_over_http_and_in_python(tmp_path, store_path):
    import embedlab
    import pytest
    from embedlab.errors import InvalidRequest

    from tests.fake_gemini import FakeGemini
    from tests.service_helpers import InProcessService

    with FakeGemini() as fake:
        service = InProcessService(tmp_path / "served", fake)
        try:
            answer = service.http.post(
                "/api/v1/ingest", json={"documents": [{"id": "   ", "text": "a post"}]}
            )
            assert answer.status_code == 400, answer.text
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert "only spaces" in answer.json()["detail"]
            assert fake.requests == []
        finally:
            assert service.stop() == 0
    with embedlab.open(store_path, quiet=True) as lab:
        with pytest.raises(InvalidRequest, match="only spaces"):
            lab.ingest([{"id": "  ", "text": "a post"}], provider="local", dry_run=True)
