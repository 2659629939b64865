"""The real local model's vectors for the demo's 600 posts, recorded once and checked.

Two tests run the demo's protocol end to end on a fresh store (the notebook, in a Jupyter
kernel, and `embedlab demo`); each used to spend ~52 s of its ~60 s in all-MiniLM-L6-v2
turning the same 600 posts (1,150 windows, 211,000 tokens) into the same vectors. Both
now get those vectors from tests/data/sci-demo-local.npz: what `LocalProvider.embed`
returned for each text when the demo ran with the real model, keyed by the sha256 of the
exact text the provider was given. Everything around the model stays real and is what
the tests look at: the pipeline still calls the provider for every post (600 embedded,
the batches, the store, the analysis).

The recording cannot go stale unnoticed:
- a text the recording does not hold (a cleaning change, other posts) goes to the real
  model, so a test is only ever slower, never given a wrong vector;
- tests/test_local_model.py::test_recorded_demo_vectors_are_the_real_model_s embeds a
  sample of the recorded posts (the longest, which take the window and truncation paths,
  and a seeded draw of the rest) with the real model and compares.

Regenerate after changing the model, the windows or the pooling:
    .venv/bin/python -m tests.local_vectors
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np

RECORDING = Path(__file__).parent / "data" / "sci-demo-local.npz"


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def load_recording(path: Path = RECORDING) -> dict[str, tuple[np.ndarray, bool]]:
    """sha256(text) -> (the model's unit vector, whether the text was cut)."""
    if not path.is_file():
        return {}
    with np.load(path) as data:
        keys = [str(k) for k in data["keys"]]
        return {k: (v, bool(t)) for k, v, t in zip(keys, data["vectors"], data["truncated"])}


class Stats:
    """How many texts came from the recording and how many went to the real model."""

    def __init__(self) -> None:
        self.recorded = 0
        self.computed = 0


def recorded_embed(recording: dict[str, tuple[np.ndarray, bool]], stats: Stats | None = None):
    """A LocalProvider.embed that answers recorded texts from the recording and sends the
    rest to the real method (the model loads only if something is missing)."""
    from embedlab.ingest.providers import Embedded, LocalProvider

    real = LocalProvider.embed

    def embed(self, texts: list[str]) -> Embedded:
        found = [recording.get(text_key(t)) for t in texts]
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            computed = real(self, [texts[i] for i in missing])
            for j, i in enumerate(missing):
                found[i] = (computed.vectors[j], computed.truncated[j])
        if stats is not None:
            stats.computed += len(missing)
            stats.recorded += len(texts) - len(missing)
        vectors = np.stack([f[0] for f in found]).astype(np.float32)  # type: ignore[index]
        return Embedded(vectors, [f[1] for f in found])  # type: ignore[index]

    embed.real = real  # type: ignore[attr-defined]
    return embed


def install(path: Path = RECORDING) -> Stats:
    """Patch LocalProvider.embed in this process (the notebook's kernel calls this)."""
    from embedlab.ingest.providers import LocalProvider

    stats = Stats()
    LocalProvider.embed = recorded_embed(load_recording(path), stats)  # type: ignore[method-assign]
    return stats


def record(archive: Path, out: Path = RECORDING) -> int:
    """Run the demo's ingest with the real model, keeping what the provider returned."""
    import tempfile

    import embedlab
    from embedlab.ingest.providers import LocalProvider

    real = LocalProvider.embed
    keys: list[str] = []
    vectors: list[np.ndarray] = []
    truncated: list[bool] = []

    def recording_embed(self, texts):
        result = real(self, texts)
        keys.extend(text_key(t) for t in texts)
        vectors.extend(result.vectors)
        truncated.extend(result.truncated)
        return result

    LocalProvider.embed = recording_embed  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lab = embedlab.open(Path(tmp) / "store")
            try:  # the notebook's and `embedlab demo`'s ingest
                lab.ingest_newsgroups(archive, provider="local")
            finally:
                lab.close()
    finally:
        LocalProvider.embed = real  # type: ignore[method-assign]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        keys=np.array(keys),
        vectors=np.stack(vectors).astype(np.float32),
        truncated=np.array(truncated, dtype=bool),
    )
    return len(keys)


if __name__ == "__main__":
    archive = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else (
            Path(__file__).resolve().parents[1].parent / "shared" / "data" / "20news-bydate.tar.gz"
        )
    )
    print(f"recorded {record(archive)} vectors in {RECORDING}")
