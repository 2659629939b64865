"""`embedlab repair`: damaged HNSW files (the crash Chroma #7090/#5925 describe) are found,
set aside and rebuilt; what cannot be read is named, and the next ingest re-embeds
exactly that."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from embedlab.ingest.pipeline import ingest
from embedlab.store import Store
from embedlab.store.chroma_store import CHROMA_DIR
from embedlab.store.repair import REBUILD_SUFFIX

from tests.conftest import (
    FAKE_SPACE,
    CountingProvider,
    hash_vector,
    invoke_cli,
    make_docs,
    run_cli,
)

N = 550


def fill(store_path, provider):
    with Store.open_local(store_path, create=True) as store:
        return ingest(make_docs(N), store, FAKE_SPACE, lambda: provider, batch_size=50)


@pytest.fixture(scope="module")
def filled_once(tmp_path_factory):
    """One store filled as `fill` does (N documents in batches of 50), built once for the
    module; `filled` gives each test its own copy. No test asserts on this first ingest."""
    path = tmp_path_factory.mktemp("filled") / "store"
    fill(path, CountingProvider())
    return path


@pytest.fixture
def filled(filled_once, store_path):
    shutil.copytree(filled_once, store_path)
    return store_path


def vector_folder(store_path):
    (folder,) = [p for p in (store_path / CHROMA_DIR).iterdir() if p.is_dir()]
    return folder


def damage(store_path, how: str) -> None:
    folder = vector_folder(store_path)
    if how == "truncated":
        with open(folder / "data_level0.bin", "r+b") as fh:
            fh.truncate(1000)
    elif how == "garbage header":
        (folder / "header.bin").write_bytes(bytes(range(100)))
    else:
        shutil.rmtree(folder)


@pytest.mark.parametrize("how", ["truncated", "garbage header", "deleted"])
def test_damaged_index_is_found_rebuilt_and_the_rest_re_embedded(filled, how):
    store_path = filled
    damage(store_path, how)
    args = ["--store", str(store_path), "repair"]

    # in process: repair runs each Chroma step in a child of its own (store/repair.py)
    check = invoke_cli([*args, "--check"])
    assert check.returncode == 1 and "Traceback" not in check.stderr
    assert check.stdout.strip().endswith("s") and "1 damaged" in check.stdout

    fixed = invoke_cli(args)
    assert fixed.returncode == 0, fixed.stderr
    assert "index rebuilt" in fixed.stdout and "1 repaired" in fixed.stdout
    if how == "garbage header":
        assert list((store_path / "quarantine").iterdir())  # set aside, not deleted

    with Store.open_local(store_path) as store:
        got = store.collection(FAKE_SPACE)._col.get(include=["documents", "embeddings"])
        kept = len(got["ids"])
        for text, vector in zip(got["documents"], got["embeddings"]):
            np.testing.assert_allclose(vector, hash_vector(text, FAKE_SPACE.dims), atol=1e-5)
        provider = CountingProvider()
        report = ingest(make_docs(N), store, FAKE_SPACE, lambda: provider)
    assert (report.cached, report.embedded) == (kept, N - kept)
    assert len(provider.texts_embedded) == N - kept  # exactly the dropped ones
    assert f"re-embed exactly these {N - kept}" in fixed.stdout

    again = invoke_cli([*args, "--check"])
    assert again.returncode == 0 and "0 damaged" in again.stdout


def test_healthy_store_is_left_alone(filled):
    store_path = filled
    before = sorted(p.name for p in vector_folder(store_path).iterdir())
    done = invoke_cli(["--store", str(store_path), "repair"])
    assert done.returncode == 0 and f"{N} documents, ok" in done.stdout
    assert "0 repaired" in done.stdout and "rebuilt" not in done.stdout
    assert sorted(p.name for p in vector_folder(store_path).iterdir()) == before


def test_a_repair_killed_before_its_swap_is_cleaned_up(filled):
    store_path = filled
    with Store.open_local(store_path) as store:
        original = store.collection(FAKE_SPACE)._col
        leftover = store.client.create_collection(
            original.name + REBUILD_SUFFIX, metadata=original.metadata, embedding_function=None
        )
        leftover.add(ids=["x"], embeddings=np.ones((1, FAKE_SPACE.dims), dtype=np.float32))
        assert store.spaces() == [FAKE_SPACE]  # the half-built copy is not a second space
    done = invoke_cli(["--store", str(store_path), "repair", "--check"])
    assert done.returncode == 0, done.stdout + done.stderr
    with Store.open_local(store_path) as store:
        names = [c.name for c in store.client.list_collections()]
        assert names == [FAKE_SPACE.collection_name]
        assert store.collection(FAKE_SPACE).count() == N


@pytest.mark.parametrize("how", ["truncated", "garbage header"])
@pytest.mark.parametrize(
    "command", [["stats"], ["neighbors", "--id", "test/1"], ["analyze", "--k", "3"]]
)
def test_commands_on_a_damaged_index_say_repair_instead_of_crashing(filled, tmp_path, how, command):
    store_path = filled
    damage(store_path, how)
    out = ["--out", str(tmp_path / "r")] if command[0] == "analyze" else []
    # a real process: what is tested is that it exits 1 and does not die of a signal
    done = run_cli(["--store", str(store_path), *command, *out])
    assert done.returncode == 1, (done.returncode, done.stderr)  # not -11 (a segfault)
    assert "is damaged" in done.stderr and "repair" in done.stderr
    assert "Traceback" not in done.stderr
