"""Threads benchmark: one analysis step on a small corpus (k-means k=4, n_init 10, and
t-SNE), on every OpenMP thread (the anchor: scikit-learn's default) and on one thread
(what analyze/threads.py picks below SMALL_WORK), alone and beside a busy neighbour (a
second process doing numpy work, as a service answering lookups or an ingest does).

Prints seconds per step and the ratio default/one-thread for each case, measured side by
side in one run. Vectors are seeded random unit vectors (only time is measured).

Run: .venv/bin/python bench/threads.py [--n 600] [--dims 384]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time

import numpy as np


def busy(stop: multiprocessing.synchronize.Event) -> None:
    a = np.random.default_rng(0).normal(size=(400, 400))
    while not stop.is_set():
        a @ a


def step_seconds(vectors: np.ndarray, one_thread: bool, repeats: int) -> dict[str, float]:
    from sklearn.cluster import KMeans
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    def run() -> dict[str, float]:
        started = time.perf_counter()
        for seed in range(repeats):
            KMeans(4, n_init=10, random_state=seed).fit(vectors)
        kmeans = (time.perf_counter() - started) / repeats
        started = time.perf_counter()
        TSNE(n_components=2, perplexity=30, init="pca", random_state=0).fit_transform(vectors)
        return {"kmeans": kmeans, "tsne": time.perf_counter() - started}

    if one_thread:
        with threadpool_limits(limits=1, user_api="openmp"):
            return run()
    return run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.n, args.dims)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    step_seconds(vectors[:50], False, 1)  # imports and OpenMP start-up, not measured
    print(f"{args.n} documents x {args.dims} dims, {multiprocessing.cpu_count()} CPUs")
    for neighbour in (False, True):
        stop = multiprocessing.Event()
        other = None
        if neighbour:
            other = multiprocessing.Process(target=busy, args=(stop,), daemon=True)
            other.start()
            time.sleep(0.5)
        default = step_seconds(vectors, False, args.repeats)
        single = step_seconds(vectors, True, args.repeats)
        stop.set()
        if other is not None:
            other.join()
        where = "beside a busy process" if neighbour else "alone"
        for name in ("kmeans", "tsne"):
            print(
                f"{name:6s} {where:22s} all threads {default[name]:7.3f} s   one thread "
                f"{single[name]:7.3f} s   ratio {default[name] / single[name]:5.2f}x"
            )


if __name__ == "__main__":
    main()
