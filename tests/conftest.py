"""Shared fixtures: an isolated store, a counting fake provider, the fake Gemini server."""

from __future__ import annotations

import hashlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
from embedlab.ingest.providers import Embedded, TransientError
from embedlab.store import Document, Space, Store

from tests.fake_gemini import VALID_KEY, FakeGemini

REPO = Path(__file__).resolve().parent.parent
SHARED_ARCHIVE = REPO.parent / "shared" / "data" / "20news-bydate.tar.gz"
FAKE_SPACE = Space("fake", "fake-model", "none", 8)


class CountingProvider:
    """Deterministic vectors from text hashes; records every call so tests count exactly.

    `failures` is a list consumed one per call: an exception to raise, or None to answer.
    """

    max_batch_size = 1000
    default_batch_size = 10
    default_concurrency = 1

    def __init__(self, space: Space = FAKE_SPACE, failures: list | None = None):
        self.space = space
        self.calls: list[list[str]] = []
        self.failures = list(failures or [])
        self._lock = threading.Lock()

    @property
    def texts_embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def embed(self, texts: list[str]) -> Embedded:
        with self._lock:
            self.calls.append(list(texts))
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        return Embedded(
            np.stack([hash_vector(t, self.space.dims) for t in texts]), [False] * len(texts)
        )


def hash_vector(text: str, dims: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).normal(size=dims).astype(np.float32)
    return vector / np.linalg.norm(vector)


def make_docs(n: int, start: int = 0, source: str = "test", labels: int = 3) -> list[Document]:
    return [
        Document(
            f"{source}/{i}",
            f"document number {i} about subject {i % labels}",
            source,
            f"label{i % labels}",
        )
        for i in range(start, start + n)
    ]


@pytest.fixture(autouse=True)
def _own_working_folder(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test runs in an empty folder of its own, never the checkout: `make demo`
    leaves ./embedlab-store and ./demo-report there, and the CLI's default store is
    ./embedlab-store. Nor does a store, server or token from the caller's environment
    reach a test."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    for name in ("EMBEDLAB_STORE", "EMBEDLAB_CHROMA_URL", "EMBEDLAB_SERVER", "EMBEDLAB_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def store(store_path: Path):
    with Store.open_local(store_path, create=True) as opened:
        yield opened


@pytest.fixture
def provider() -> CountingProvider:
    return CountingProvider()


@pytest.fixture
def gemini(monkeypatch: pytest.MonkeyPatch):
    """The fake Gemini server, with the real SDK pointed at it through the environment."""
    with FakeGemini() as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.url)
        monkeypatch.setenv("GEMINI_API_KEY", VALID_KEY)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        yield server


def transient(message: str = "boom", retry_after: float | None = 0.0) -> TransientError:
    return TransientError(message, retry_after)


def jsonl_ingest_args(store_path, corpus, *extra: str) -> list[str]:
    """`--store S ingest jsonl FILE --id-key id ...`: the ingest most CLI tests run."""
    return ["--store", str(store_path), "ingest", "jsonl", str(corpus), "--id-key", "id", *extra]


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **(extra or {})}


def spawn_cli(args: list[str], env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """The real command, started in the background (to signal or kill it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "embedlab.cli", *args], env=cli_env(env), **kwargs
    )


def _forked_cli_main(args: list[str], env: dict[str, str], log: str) -> None:
    """The body of a `ForkedCli` child: the real `embedlab` main, as `python -m
    embedlab.cli` runs it, in a process forked from an interpreter that has already
    imported it (see `forked_cli`)."""
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    from embedlab.cli import cli

    cli.main(args, prog_name="embedlab")  # exits (SystemExit) with the command's status


class ForkedCli:
    """A `subprocess.Popen`-like handle on one real `embedlab` process (its own pid, real
    signals, its exit status), forked by `forked_cli` instead of started from scratch."""

    def __init__(self, process) -> None:
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired("embedlab", timeout or 0)
        return self._process.exitcode


@pytest.fixture(scope="session")
def forked_cli():
    """`spawn(args, env, stdout=..., stderr=...)` like `spawn_cli`, for tests that start
    the command many times only to signal or kill it: each run is a real process forked
    from a server process that imported `embedlab.cli`, Chroma and the Gemini SDK once
    (multiprocessing's forkserver), so a run skips Python's start-up and the ~2 s of
    imports, which no kill can damage a store in. Output goes to a log file (or nowhere:
    stdout=subprocess.DEVNULL). Not for tests of a normal exit: the child leaves through
    multiprocessing's os._exit, not the interpreter's own shutdown."""
    import multiprocessing

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        [
            "embedlab.cli",
            "embedlab.store.chroma_store",
            "chromadb",
            "google.genai",
            "tests.conftest",
        ]
    )

    # by the name the forkserver imports it under (pytest may load this file as another)
    target = importlib.import_module("tests.conftest")._forked_cli_main

    def spawn(args: list[str], env: dict[str, str] | None = None, **kwargs) -> ForkedCli:
        log = kwargs.pop("log", os.devnull)
        unsupported = {k: v for k, v in kwargs.items() if v is not subprocess.DEVNULL}
        assert not unsupported, f"forked_cli takes log=PATH, not {sorted(unsupported)}"
        env = {"PYTHONPATH": str(REPO), **(env or {})}
        process = context.Process(target=target, args=(list(args), env, log))
        process.start()
        return ForkedCli(process)

    return spawn


def run_cli(
    args: list[str], env: dict[str, str] | None = None, **kwargs
) -> subprocess.CompletedProcess:
    """The real command in a child process (for exit codes, signals, import checks)."""
    return subprocess.run(
        [sys.executable, "-m", "embedlab.cli", *args],
        env=cli_env(env),
        capture_output=True,
        text=True,
        **kwargs,
    )


class CliResult:
    """What `invoke_cli` returns: the fields of a `subprocess.CompletedProcess` the
    tests read (returncode, stdout, stderr), so a test reads either the same way."""

    def __init__(self, args: list[str], returncode: int, stdout: str, stderr: str):
        self.args = args
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    def __repr__(self) -> str:
        return f"CliResult(args={self.args!r}, returncode={self.returncode})"


def invoke_cli(
    args: list[str], env: dict[str, str] | None = None, cwd: Path | str | None = None
) -> CliResult:
    """The real `embedlab` command run in this process (click's CliRunner): the same
    parsing, output and exit status as `run_cli`, without starting Python and importing
    the libraries again. For tests where the process itself is not what is tested.

    `env` is applied on top of this process's environment for the call (as `run_cli`
    gives the child); `cwd` is the working folder for the call. An exception that
    escapes the command is written to stderr as Python would, with status 1."""
    from click.testing import CliRunner
    from embedlab.cli import cli

    previous = os.getcwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner(env=dict(env or {})).invoke(cli, list(args), prog_name="embedlab")
    finally:
        os.chdir(previous)
    stderr = result.stderr
    code = result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(*result.exc_info))
        code = 1
    return CliResult(list(args), code, result.stdout, stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    port = free_port()
    chroma = Path(sys.executable).parent / "chroma"
    server = subprocess.Popen(
        [
            str(chroma),
            "run",
            "--path",
            str(tmp_path / "server-data"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        server.kill()
        pytest.fail("chroma run did not start")
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch):
    """Retries in this process wait 10 ms, not 1 s, doubling (a server's Retry-After
    still wins): for in-process CLI runs whose faults are there to take the retry
    paths, not to time the backoff. Attempts, jitter and the cap are unchanged."""
    from dataclasses import dataclass

    from embedlab.ingest import pipeline

    @dataclass
    class FastRetryPolicy(pipeline.RetryPolicy):
        initial_delay: float = 0.01

    monkeypatch.setattr(pipeline, "RetryPolicy", FastRetryPolicy)
    return FastRetryPolicy


@pytest.fixture(scope="session")
def local_model():
    """The real all-MiniLM-L6-v2, loaded (weights checked) once for the session."""
    from embedlab.ingest.providers import load_local_model

    return load_local_model()


@pytest.fixture
def local_model_once(local_model, monkeypatch: pytest.MonkeyPatch):
    """Commands run in this process get the session's real model instead of loading it
    again (each command builds its own LocalProvider, which loads it on first use)."""
    from embedlab.ingest import providers

    monkeypatch.setattr(providers, "load_local_model", lambda: local_model)
    return local_model


@pytest.fixture
def recorded_demo_vectors(monkeypatch: pytest.MonkeyPatch):
    """LocalProvider.embed answers the demo's 600 posts with the real model's recorded
    vectors (tests/local_vectors.py says why and how they are checked); any other text
    still goes to the real model. Returns the counts of recorded and computed texts."""
    from embedlab.ingest.providers import LocalProvider

    from tests.local_vectors import Stats, load_recording, recorded_embed

    stats = Stats()
    monkeypatch.setattr(LocalProvider, "embed", recorded_embed(load_recording(), stats))
    return stats


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """Where the browser tests' screenshots go: $EMBEDLAB_SCREENSHOTS, else a temp folder
    (never the checkout)."""
    where = os.environ.get("EMBEDLAB_SCREENSHOTS")
    path = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def browser():
    """One Chromium per module (tests.browser_helpers: skipped off CI without it)."""
    from tests.browser_helpers import CHROMIUM, _browser_or_skip

    sync_playwright = _browser_or_skip()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


# -- an index torn by a kill mid-persist (test_rebuild, test_chroma_child) ---------------

PERSISTED, LOGGED = 200, 100
KEPT_ROWS = 100  # of the persisted rows, in the tear that lost vectors


def vector_folder(store_path: Path) -> Path:
    """The HNSW folder of FAKE_SPACE's collection."""
    from embedlab.store.index_files import vector_segment_folders

    (folder,) = vector_segment_folders(store_path / "chroma", FAKE_SPACE.collection_name)
    return folder


def tear(folder: Path, count: int) -> None:
    """Rewrite the header as persistDirty's first write does: `count` elements."""
    from embedlab.store.index_files import HEADER

    fields = list(HEADER.unpack((folder / "header.bin").read_bytes()))
    fields[2] = max(fields[2], count)  # max_elements
    fields[3] = count  # cur_element_count
    (folder / "header.bin").write_bytes(HEADER.pack(*fields))


@pytest.fixture
def torn_store(store_path, monkeypatch):
    """PERSISTED documents in the index files, LOGGED more in the write-ahead log only,
    and a header that counts them all: the files a kill mid-persist leaves."""
    from embedlab.ingest.pipeline import ingest
    from embedlab.store.chroma_store import SpaceCollection
    from embedlab.store.index_files import read_header

    provider = CountingProvider()
    docs = make_docs(PERSISTED + LOGGED)
    with Store.open_local(store_path, create=True) as store:
        ingest(docs[:PERSISTED], store, FAKE_SPACE, lambda: provider, batch_size=50)
    with monkeypatch.context() as patch:  # the next writes reach the log, not the files
        patch.setattr(SpaceCollection, "persist_index", lambda self, doc_id: None)
        with Store.open_local(store_path) as store:
            col = store.collection(FAKE_SPACE)
            col._col.modify(configuration={"hnsw": {"sync_threshold": 100_000}})
            ingest(docs[PERSISTED:], store, FAKE_SPACE, lambda: provider, batch_size=50)
    folder = vector_folder(store_path)
    header = read_header(folder)
    assert not isinstance(header, str) and header is not None
    assert header.count == PERSISTED  # the last complete persist
    tear(folder, PERSISTED + LOGGED)
    return store_path, docs, provider
