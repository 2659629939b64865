"""Neighbour lookup latency by id in an 11,314-document store (3072 dims), p50 and p95.

Whole command: `embedlab neighbors --id ...` as a fresh process, start-up included.
In process: `find_neighbours` on an open store, after the index is loaded.
The store is filled once through the fake Gemini server.

Run: .venv/bin/python bench/neighbors.py [--archive PATH] [--runs N]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedlab.store import Store  # noqa: E402
from embedlab.store.neighbours import find_neighbours  # noqa: E402

from bench.analyze import DEFAULT_ARCHIVE, fill_store  # noqa: E402


def percentiles(seconds: list[float]) -> str:
    p50, p95 = np.percentile(np.array(seconds) * 1000, [50, 95])
    return f"p50 {p50:7.1f} ms, p95 {p95:7.1f} ms ({len(seconds)} runs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store"
        fill_store(args.archive, store_path)
        with Store.open_local(store_path) as store:
            (space,) = store.spaces()
            col = store.collection(space)
            ids = sorted(i for i, _ in col.iter_metadata())
        picks = random.Random(0).sample(ids, args.runs)

        whole = []
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        for doc_id in picks:
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cli",
                    "--store",
                    str(store_path),
                    "neighbors",
                    "--id",
                    doc_id,
                    "-k",
                    "10",
                ],
                env=env,
                capture_output=True,
                check=True,
                cwd=REPO,
            )
            whole.append(time.perf_counter() - start)

        with Store.open_local(store_path) as store:
            col = store.collection(space)
            start = time.perf_counter()
            find_neighbours(col, col.get_one(picks[0])[0], 10, exclude_id=picks[0])
            first = time.perf_counter() - start
            inproc = []
            for doc_id in random.Random(1).sample(ids, 200):
                start = time.perf_counter()
                find_neighbours(col, col.get_one(doc_id)[0], 10, exclude_id=doc_id)
                inproc.append(time.perf_counter() - start)
    print(f"## neighbors --id, k=10, {len(ids)} documents x {space.dims} dims")
    print(f"whole command (new process):   {percentiles(whole)}")
    print(f"in process, first lookup:      {first * 1000:7.1f} ms (loads the HNSW index)")
    print(f"in process, warm lookups:      {percentiles(inproc)}")


if __name__ == "__main__":
    main()
