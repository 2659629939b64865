"""Analyze benchmark: 600 posts and the whole training set (11,314), 3072-dim vectors.

Prints, per size: time to load vectors from the store (our paged float32 path vs a plain
`collection.get(include=["embeddings"])`, side by side, with peak memory of each), and
the time of t-SNE, clustering, evaluation, description and files, with peak memory.
Each measurement runs in a fresh child process so its peak RSS is its own.

Then re-analysis through the library (`Lab.analyze`) on the whole training set: k=4,
then k=8 on the same selection with t-SNE, in one process. The second run finds the
map in the store's map cache; the ratio second/first is printed (target <= 0.35).

The store is filled once through the fake Gemini server (vectors are random per text,
so cluster quality here means nothing; only time and memory are measured).

Run: .venv/bin/python bench/analyze.py [--archive PATH] [--reanalysis-only]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import DEFAULT_ARCHIVE, ingest_training_set  # noqa: E402

SIZES = {"600": dict(labels=["sci.*"], per_class=150), "11314": dict()}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reanalysis(store_path: str) -> dict:
    """Lab.analyze k=4, then k=8 on the same documents: the second reuses the stored map."""
    import embedlab

    runs = []
    with embedlab.open(store_path, quiet=True) as lab:
        for k in (4, 8):
            start = time.perf_counter()
            analysis = lab.analyze(k=k, reduce="tsne", seed=0)
            runs.append(
                {
                    "k": k,
                    "seconds": time.perf_counter() - start,
                    "map_cached": analysis.map_cached,
                    "timings": analysis.timings,
                    "documents": len(analysis.ids),
                }
            )
    return {"runs": runs, "peak_mb": peak_mb()}


def print_reanalysis(result: dict) -> None:
    first, second = result["runs"]
    print(f"## re-analysis through Lab.analyze, {first['documents']} posts x 3072 dims, t-SNE")
    for run in result["runs"]:
        stages = ", ".join(f"{name} {sec:.2f} s" for name, sec in run["timings"].items())
        cached = "map reused from the store" if run["map_cached"] else "map computed"
        print(f"k={run['k']}: {run['seconds']:6.2f} s ({cached}; {stages})")
    print(f"second/first: {second['seconds'] / first['seconds']:.2f}x (target <= 0.35x)\n")


def worker(store_path: str, size: str, mode: str) -> dict:
    if mode == "reanalysis":
        return reanalysis(store_path)
    from embedlab.analyze.run import AnalysisOptions, analyze_corpus
    from embedlab.analyze.select import Selection, load_corpus, pick_space, select_ids
    from embedlab.store import Store

    with Store.open_local(store_path) as store:
        space = pick_space(store)
        selection = Selection(**SIZES[size])
        if mode == "plain":
            import numpy as np

            ids = select_ids(store, space, selection)
            before = peak_mb()
            start = time.perf_counter()
            got = store.collection(space)._col.get(ids=ids, include=["embeddings"])
            vectors = np.asarray(got["embeddings"], dtype=np.float32)
            return {
                "load_s": time.perf_counter() - start,
                "rows": len(vectors),
                "peak_mb": peak_mb(),
                "before_mb": before,
            }
        ids = select_ids(store, space, selection)
        before = peak_mb()
        start = time.perf_counter()
        corpus = load_corpus(store, space, selection)
        load_s = time.perf_counter() - start
        load_peak = peak_mb()
    if mode == "load":
        return {"load_s": load_s, "rows": len(ids), "peak_mb": load_peak, "before_mb": before}
    with tempfile.TemporaryDirectory() as out:
        result = analyze_corpus(corpus, AnalysisOptions(k=4 if size == "600" else 20), Path(out))
    return {
        "load_s": load_s,
        **{f"{k}_s": v for k, v in result.timings.items()},
        "map": result.metrics["params"]["map"],
        "rows": len(ids),
        "peak_mb": peak_mb(),
    }


def run_worker(store_path: Path, size: str, mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(store_path), size, mode],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def fill_store(archive: Path, store_path: Path) -> None:
    from tests.fake_gemini import FakeGemini

    with FakeGemini() as server:
        _, summary = ingest_training_set(archive, store_path, server.url)
    print(f"store filled: {summary}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--worker", nargs=3, metavar=("STORE", "SIZE", "MODE"))
    parser.add_argument("--reanalysis-only", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(*args.worker)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store"
        fill_store(args.archive, store_path)
        print_reanalysis(run_worker(store_path, "11314", "reanalysis"))
        if args.reanalysis_only:
            return
        for size in SIZES:
            plain = run_worker(store_path, size, "plain")
            ours_load = run_worker(store_path, size, "load")
            full = run_worker(store_path, size, "full")
            print(f"## {full['rows']} posts x 3072 dims")
            print(
                f"load, plain collection.get(embeddings): {plain['load_s']:7.2f} s, "
                f"+{plain['peak_mb'] - plain['before_mb']:6.0f} MB peak"
            )
            print(
                f"load, embedlab paged float32:           {ours_load['load_s']:7.2f} s, "
                f"+{ours_load['peak_mb'] - ours_load['before_mb']:6.0f} MB peak"
            )
            plain_extra = plain["peak_mb"] - plain["before_mb"]
            ours_extra = max(1.0, ours_load["peak_mb"] - ours_load["before_mb"])
            print(
                f"load ratio plain/ours: time {plain['load_s'] / ours_load['load_s']:.2f}x, "
                f"extra memory {plain_extra / ours_extra:.1f}x"
            )
            stages = [
                ("cluster (KMeans)", full["cluster_s"]),
                (f"map ({full['map']})", full["map_s"]),
                ("evaluate", full["evaluate_s"]),
                ("describe", full["describe_s"]),
                ("files+plots", full["write_s"]),
            ]
            print(" | ".join(f"{name} {seconds:.2f} s" for name, seconds in stages))
            print(f"whole analysis peak RSS: {full['peak_mb']:.0f} MB\n")


if __name__ == "__main__":
    main()
