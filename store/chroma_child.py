"""A private `chroma run` over a store's own folder: Chroma's writes in another process.

Chroma's embedded client holds the GIL through each `upsert`'s whole HNSW insert (about
17 ms per 3072-dim document into 11,314; measured: a thread that wakes every 1 ms waited
306 ms at the 99th percentile while 100 documents were upserted). In a service that
stalls every reader for as long as an ingest writes. The same Chroma, run as a server
in a child process over the same folder, does that work outside this interpreter: the
same 100-document upserts left the waking thread a p99 of 1.4 ms, and wrote as fast
(bench/service.py prints the figures on the real workload).

The child is this store's alone: it listens on a free loopback port, dies with the
process that started it (PR_SET_PDEATHSIG on Linux, so a SIGKILLed service leaves no
server behind writing to the folder), and is stopped before the store's lock is
released. It holds the store's lock too (the lock's descriptor is passed to it): should
it ever outlive its parent, no other process opens the folder while it still writes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .layout import chroma_settings

START_S = 60.0  # a cold start imports Chroma's native library: ~1 s here, more when loaded
STOP_S = 10.0
PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prctl() -> Any:
    """libc's prctl, looked up in the parent (a child between fork and exec must not
    import or load libraries); None where there is none."""
    try:
        import ctypes

        return ctypes.CDLL(None).prctl
    except (OSError, AttributeError):
        return None


def _die_with_parent(prctl: Any) -> Any:
    """What the child runs before exec: ask Linux for SIGTERM when the thread that
    started it ends (even by SIGKILL of the process)."""

    def ask() -> None:  # pragma: no cover - runs in the child
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return ask


def chroma_command() -> list[str]:
    """`chroma`, from the same environment as this Python."""
    beside = Path(sys.executable).parent / "chroma"
    if beside.is_file():
        return [str(beside)]
    return [sys.executable, "-c", "from chromadb.cli.cli import app; app()"]


class PrivateChroma:
    """A `chroma run` child serving `chroma_dir` on a free loopback port."""

    def __init__(self, chroma_dir: Path, lock_fd: int) -> None:
        self.chroma_dir = chroma_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        prctl = _prctl() if os.name == "posix" else None
        preexec = _die_with_parent(prctl) if prctl is not None else None
        self._log = open(chroma_dir.parent / ".embedlab-chroma.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [*chroma_command(), "run", "--path", str(chroma_dir), "--host", "127.0.0.1",
             "--port", str(self.port)],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            close_fds=True, pass_fds=(lock_fd,), preexec_fn=preexec,
        )  # fmt: skip

    def connect(self) -> Any:
        """Chroma's HTTP client on the child, once it answers; StoreError when it never
        does (its last log line says why)."""
        import chromadb

        deadline = time.monotonic() + START_S
        while True:
            if self.process.poll() is not None:
                raise StoreError(
                    f"Chroma's server for {self.chroma_dir} stopped at start "
                    f"(exit {self.process.returncode}): {self._last_log_line()}"
                )
            try:
                client = chromadb.HttpClient(
                    host="127.0.0.1", port=self.port, settings=chroma_settings()
                )
                client.heartbeat()
                return client
            except Exception as exc:  # noqa: BLE001 - not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise StoreError(
                        f"Chroma's server for {self.chroma_dir} did not answer within "
                        f"{START_S:g} s ({type(exc).__name__})"
                    ) from exc
                time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; what it persisted stays, and a write it
        left half-persisted is healed on the next open (store/rebuild.py)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_S)
        self._log.close()

    def _last_log_line(self) -> str:
        try:
            lines = (self.chroma_dir.parent / ".embedlab-chroma.log").read_text().splitlines()
        except OSError:
            return "no log"
        return (lines or ["no log"])[-1][:200]
