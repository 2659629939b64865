"""What Chroma's writes cost the other threads of the writing process: embedded client
against a `chroma run` child over the same kind of folder, side by side in one run.

A thread that sleeps 1 ms in a loop measures how late it wakes (the time it waits for the
GIL) while the main thread upserts 10 x 100 random unit 3072-dim vectors into a
collection already holding `--fill` of them. Prints the upsert rate and the waking
thread's lag (p50, p99, max) for each.

Run: .venv/bin/python bench/chroma_gil.py [--fill 3000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

DIMS = 3072


def measure(client, rng: np.random.Generator, fill: int) -> tuple[float, np.ndarray]:
    def vectors(n: int) -> np.ndarray:
        v = rng.normal(size=(n, DIMS)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    col = client.create_collection(
        "bench-gil", configuration={"hnsw": {"space": "cosine", "sync_threshold": 100}}
    )
    for start in range(0, fill, 500):
        col.upsert(
            ids=[f"a{start + j}" for j in range(500)], embeddings=vectors(500),
            metadatas=[{"x": 1}] * 500, documents=["some text " * 50] * 500,
        )  # fmt: skip
    lags: list[float] = []
    stop = threading.Event()

    def wake() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            time.sleep(0.001)
            lags.append(time.perf_counter() - started - 0.001)

    sys.setswitchinterval(0.001)
    thread = threading.Thread(target=wake)
    thread.start()
    started = time.perf_counter()
    for batch in range(10):
        col.upsert(
            ids=[f"b{batch}-{j}" for j in range(100)], embeddings=vectors(100),
            metadatas=[{"x": 1}] * 100, documents=["some text " * 50] * 100,
        )  # fmt: skip
    rate = 1000 / (time.perf_counter() - started)
    stop.set()
    thread.join()
    return rate, np.array(lags) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=int, default=3000)
    args = parser.parse_args()
    import chromadb
    from chromadb.config import Settings

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.conftest import free_port

    settings = Settings(anonymized_telemetry=False)
    tmp = Path(tempfile.mkdtemp(prefix="embedlab-bench-gil-"))
    try:
        embedded = chromadb.PersistentClient(str(tmp / "embedded"), settings=settings)
        results = {"embedded client": measure(embedded, np.random.default_rng(0), args.fill)}
        port = free_port()
        chroma = Path(sys.executable).parent / "chroma"
        child = subprocess.Popen(
            [str(chroma), "run", "--path", str(tmp / "child"), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            while True:
                try:
                    http = chromadb.HttpClient(host="127.0.0.1", port=port, settings=settings)
                    http.heartbeat()
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.05)
            results["chroma run child"] = measure(http, np.random.default_rng(0), args.fill)
        finally:
            child.send_signal(signal.SIGTERM)
            child.wait(30)
        print(f"upserts of 10 x 100 x {DIMS} dims into {args.fill} ({os.cpu_count()} cores)")
        for name, (rate, lags) in results.items():
            print(
                f"{name:18s} {rate:6.0f} docs/s; a 1 ms sleeper wakes late by p50 "
                f"{np.percentile(lags, 50):.2f} ms, p99 {np.percentile(lags, 99):.1f} ms, "
                f"max {lags.max():.0f} ms"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
