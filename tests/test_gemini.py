"""The real google-genai SDK against our fake Gemini server on 127.0.0.1."""

import numpy as np
import pytest
from embedlab.ingest.pipeline import IngestError, RetryPolicy, ingest
from embedlab.ingest.providers import GeminiProvider, ProviderError, gemini_space, resolve_space

from tests.conftest import make_docs
from tests.fake_gemini import Fault, fake_vector

FAST = RetryPolicy(attempts=4, initial_delay=0.01, max_delay=0.5, seed=0)


def run(store, space, docs, timeout_s=10.0, **kwargs):
    kwargs.setdefault("retry", FAST)
    return ingest(docs, store, space, lambda: GeminiProvider(space, timeout_s=timeout_s), **kwargs)


def test_600_documents_cost_6_requests_of_100_with_task_type_and_dims(store, gemini):
    space = gemini_space(None, "CLUSTERING", None)
    report = run(store, space, make_docs(600))
    assert [len(r.texts) for r in gemini.requests] == [100] * 6
    assert {t for r in gemini.requests for t in r.task_types} == {"CLUSTERING"}
    assert {d for r in gemini.requests for d in r.dims} == {3072}
    assert (report.requests, report.embedded) == (6, 600)
    again = run(store, space, make_docs(600))
    assert len(gemini.requests) == 6 and again.cached == 600


def test_truncated_dims_are_normalised_and_stored_as_returned_direction(store, gemini):
    space = gemini_space(None, None, 768)
    run(store, space, make_docs(3))
    got = store.collection(space)._col.get(ids=["test/1"], include=["embeddings", "documents"])
    vector = np.asarray(got["embeddings"][0])
    raw = fake_vector(got["documents"][0], 768)
    assert np.linalg.norm(raw) < 0.99  # the server's truncated vector is not unit length
    np.testing.assert_allclose(vector, raw / np.linalg.norm(raw), atol=1e-5)


def test_429_with_retry_after_then_500_then_success(store, gemini):
    gemini.faults.extend([Fault(status=429, retry_after=0.2), Fault(status=500)])
    report = run(store, gemini_space(None, None, 768), make_docs(5))
    assert [r.status for r in gemini.requests] == [429, 500, 200]
    assert (report.requests, report.retries, report.embedded) == (3, 2, 5)


def test_slow_answer_times_out_and_is_retried(store, gemini):
    gemini.faults.append(Fault(delay=1.5))
    report = run(store, gemini_space(None, None, 768), make_docs(2), timeout_s=0.5)
    assert report.retries == 1 and report.embedded == 2


def test_malformed_replies_are_retried_then_reported(store, gemini):
    gemini.faults.extend([Fault(body="not json"), Fault(drop_vectors=1), Fault(wrong_dims=True)])
    report = run(store, gemini_space(None, None, 768), make_docs(4))
    assert report.retries == 3 and report.embedded == 4
    gemini.faults.extend([Fault(body="{}")] * 4)
    with pytest.raises(IngestError, match="gave up after 4 attempts"):
        run(store, gemini_space(None, None, 768), make_docs(4, start=10))


def test_giving_up_saves_finished_batches(store, gemini):
    gemini.faults.extend([Fault()] + [Fault(status=503)] * 4)
    space = gemini_space(None, None, 768)
    with pytest.raises(IngestError, match="503; gave up"):
        run(store, space, make_docs(300), concurrency=1)
    assert store.collection(space).count() == 100
    report = run(store, space, make_docs(300), concurrency=1)
    assert (report.cached, report.embedded, report.requests) == (100, 200, 2)


def test_concurrency_is_bounded(store, gemini):
    gemini.latency = 0.05
    run(store, gemini_space(None, None, 128), make_docs(800), concurrency=3)
    assert gemini.max_in_flight == 3


def test_long_texts_are_cut_to_the_input_limit_and_counted(store, gemini):
    docs = make_docs(2)
    long = docs[0].__class__("long/1", "word " * 5000, "long")
    report = run(store, gemini_space(None, None, 768), [*docs, long])
    assert report.truncated == 1
    assert max(len(t) for t in gemini.requests[0].texts) == 8192
    meta = store.collection(gemini_space(None, None, 768))._col.get(ids=["long/1"])["metadatas"][0]
    assert meta["truncated"] is True


def test_rejected_key_is_one_clear_error_without_the_key(store, gemini, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "sk-secret-value")
    with pytest.raises(IngestError) as failed:
        run(store, gemini_space(None, None, 768), make_docs(1))
    assert "GEMINI_API_KEY" in str(failed.value) and "sk-secret" not in str(failed.value)
    assert len(gemini.requests) == 1  # not retried


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    with pytest.raises(ProviderError, match="GEMINI_API_KEY"):
        GeminiProvider(gemini_space(None, None, None))


def test_unknown_model_and_unsupported_dims_are_refused_before_any_request(gemini):
    with pytest.raises(ProviderError, match="unknown Gemini model 'gemini-nope'"):
        resolve_space("gemini", "gemini-nope")
    with pytest.raises(ProviderError, match="does not support dims=4096"):
        resolve_space("gemini", None, None, 4096)
    with pytest.raises(ProviderError, match="unknown task_type='SORTING'"):
        resolve_space("gemini", None, "SORTING")
    assert gemini.requests == []


def test_model_the_server_does_not_know_is_a_clear_error(store, gemini):
    space = resolve_space("gemini", "gemini-embedding-999", None, 768)
    with pytest.raises(IngestError, match="does not know model 'gemini-embedding-999'"):
        run(store, space, make_docs(1))


def test_providers_share_one_tls_context_and_follow_ssl_cert_file(monkeypatch):
    """The SDK reads the CA bundle for every client it builds (three times, ~50 ms each);
    embedlab hands it one context per certificate setting, the one the SDK would make."""
    import certifi
    from embedlab.ingest.providers import GeminiProvider, tls_context
    from embedlab.store.keys import Space

    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    space = Space("gemini", "gemini-embedding-001", "CLUSTERING", 3072)
    first, second = GeminiProvider(space), GeminiProvider(space)
    shared = tls_context(None, None)
    for provider in (first, second):
        api = provider._client._api_client
        assert api._httpx_client._transport._pool._ssl_context is shared
        assert api._websocket_ssl_ctx["ssl"] is shared
    assert shared.cert_store_stats()["x509_ca"] > 0  # certifi's roots are loaded

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    third = GeminiProvider(space)._client._api_client._httpx_client._transport._pool._ssl_context
    assert third is tls_context(certifi.where(), None) and third is not shared


def test_replies_are_parsed_fast_with_the_stdlib_values(gemini):
    """The SDK's models module parses replies with orjson (one 100 x 3072 reply held the
    interpreter's lock ~110 ms in the stdlib's parser, ~18 ms in orjson): the vectors are
    exactly the server's, and what orjson refuses is still the stdlib's to decide."""
    import json

    from embedlab.ingest.providers import fast_reply_parsing
    from google.genai import models

    space = gemini_space(None, "CLUSTERING", None)
    texts = [f"post {i} topic:space" for i in range(3)]
    provider = GeminiProvider(space)
    assert fast_reply_parsing() and models.json is not json
    fast = models.json._fast
    parsed = []
    models.json._fast = lambda text: parsed.append(len(text)) or fast(text)
    try:
        vectors = provider.embed(texts).vectors
    finally:
        models.json._fast = fast
    assert len(parsed) == 1 and parsed[0] > 3 * 3072 * 5  # the reply went through orjson
    expected = np.array([fake_vector(t) for t in texts], dtype=np.float32)
    assert np.array_equal(vectors, expected)
    body = '{"v": [0.1, 1e-7, 123456789.123456789, -0.0]}'
    assert models.json.loads(body) == json.loads(body)
    nan = models.json.loads("[NaN]")[0]  # orjson refuses NaN; the stdlib reads it
    assert nan != nan
    with pytest.raises(json.JSONDecodeError):
        models.json.loads("not json")
    assert models.json.dumps({"a": 1}) == json.dumps({"a": 1})
