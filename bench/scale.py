"""Scale benchmark: synthetic corpora of 10k, 30k and 100k documents, 3072-dim vectors.

For each size, in a fresh store:
- ingest: the real `embedlab ingest jsonl` command, real SDK, vectors from the fake
  Gemini server (its JSON work runs in this process and shares the 2 cores);
- load: every vector out of the store (paged float32);
- cluster: KMeans k=20 (MiniBatchKMeans above 20k documents);
- map: t-SNE after PCA to 50 dims (openTSNE above 20k documents);
- the rest of `analyze` (evaluation, description, files and plots).
Each step runs in its own child process and reports its own wall time and peak RSS;
the last table gives each step's growth exponent, log(t2/t1) / log(n2/n1): 1.0 is linear.

Documents are "topic:tN" texts with per-topic words, so clusters and labels exist.

Run: .venv/bin/python bench/scale.py [--sizes 10000,30000,100000] [--dims 3072]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

TOPICS = 20
STEPS = ("ingest", "load", "cluster", "map", "rest")


def write_corpus(path: Path, n: int, seed: int = 0) -> None:
    """n JSONL documents over TOPICS topics, each with words typical of its topic."""
    rng = random.Random(seed)
    vocab = [[f"w{t}x{j}" for j in range(40)] for t in range(TOPICS)]
    common = [f"common{j}" for j in range(200)]
    with open(path, "w") as fh:
        for i in range(n):
            topic = i % TOPICS
            words = rng.choices(vocab[topic], k=12) + rng.choices(common, k=20)
            text = f"document {i} topic:t{topic} " + " ".join(words)
            fh.write(json.dumps({"id": i, "text": text, "label": f"t{topic}"}) + "\n")


def run_ingest(store: Path, corpus: Path, url: str) -> dict:
    from tests.fake_gemini import VALID_KEY

    env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": VALID_KEY}
    args = [sys.executable, __file__, "--ingest-worker", str(store), str(corpus)]
    out = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"ingest failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def ingest_worker(store: str, corpus: str) -> dict:
    """`embedlab ingest jsonl` in this process, so its peak RSS is measured alone."""
    import resource

    from click.testing import CliRunner
    from embedlab.cli import cli

    start = time.perf_counter()
    args = ["--store", store, "ingest", "jsonl", corpus, "--id-key", "id", "--label-key", "label"]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return {
        "ingest_s": time.perf_counter() - start,
        "ingest_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "summary": result.output.strip().splitlines()[-1],
    }


def analyze_worker(store: str) -> dict:
    """Load, cluster, map and the rest, timed apart; peak RSS read after each step."""
    import resource

    from embedlab.analyze.cluster import cluster
    from embedlab.analyze.reduce import reduce_2d
    from embedlab.analyze.run import AnalysisOptions, analyze_corpus
    from embedlab.analyze.select import Selection, load_corpus, pick_space
    from embedlab.store import Store

    def peak() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    result: dict = {}
    start = time.perf_counter()
    with Store.open_local(store) as opened:
        corpus = load_corpus(opened, pick_space(opened), Selection())
    result.update(load_s=time.perf_counter() - start, load_mb=peak())
    start = time.perf_counter()
    clustering = cluster(corpus.vectors, "kmeans", TOPICS, seed=0)
    result.update(cluster_s=time.perf_counter() - start, cluster_mb=peak())
    result["cluster_method"] = clustering.params["method"]
    start = time.perf_counter()
    _, result["map_method"] = reduce_2d(corpus.vectors, "tsne", seed=0)
    result.update(map_s=time.perf_counter() - start, map_mb=peak())
    # The whole analysis once more, to time what is left (evaluation, description, files).
    with tempfile.TemporaryDirectory() as out:
        options = AnalysisOptions(k=TOPICS, reduce="pca")
        full = analyze_corpus(corpus, options, Path(out))
    timings = full.timings
    result["rest_s"] = timings["evaluate"] + timings["describe"] + timings["write"]
    result["rest_mb"] = peak()
    result["hungarian"] = full.metrics.get("hungarian_accuracy")
    return result


def growth(t1: float, t2: float, n1: int, n2: int) -> float:
    return math.log(t2 / t1) / math.log(n2 / n1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--ingest-worker", nargs=2, metavar=("STORE", "CORPUS"))
    parser.add_argument("--analyze-worker", metavar="STORE")
    args = parser.parse_args()
    if args.ingest_worker:
        print(json.dumps(ingest_worker(*args.ingest_worker)))
        return
    if args.analyze_worker:
        print(json.dumps(analyze_worker(args.analyze_worker)))
        return

    from tests.fake_gemini import FakeGemini

    sizes = [int(s) for s in args.sizes.split(",")]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp, FakeGemini() as server:
        for n in sizes:
            corpus, store = Path(tmp) / f"corpus{n}.jsonl", Path(tmp) / f"store{n}"
            write_corpus(corpus, n)
            row = run_ingest(store, corpus, server.url)
            out = subprocess.run(
                [sys.executable, __file__, "--analyze-worker", str(store)],
                cwd=REPO,
                capture_output=True,
                text=True,
            )
            if out.returncode != 0:
                raise SystemExit(f"analysis of {n} failed:\n{out.stderr[-2000:]}")
            row.update(json.loads(out.stdout.strip().splitlines()[-1]))
            row["disk_mb"] = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 1e6
            rows[n] = row
            print(f"## {n} documents x 3072 dims: {row['summary']}")
            print(
                f"   clustering: {row['cluster_method']} k={TOPICS} "
                f"(Hungarian accuracy vs topics {row['hungarian']:.3f}); map: {row['map_method']}"
            )
            print(
                "   "
                + " | ".join(f"{s} {row[f'{s}_s']:.1f} s, {row[f'{s}_mb']:.0f} MB" for s in STEPS)
                + f" | store {row['disk_mb']:.0f} MB on disk",
                flush=True,
            )
            for path in (corpus, store):
                subprocess.run(["rm", "-rf", str(path)], check=True)

    print("\n| step | " + " | ".join(f"{n:,} docs" for n in sizes) + " | growth exponent |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for step in STEPS:
        cells = [f"{rows[n][f'{step}_s']:.1f} s / {rows[n][f'{step}_mb']:.0f} MB" for n in sizes]
        exps = [
            f"{growth(rows[a][f'{step}_s'], rows[b][f'{step}_s'], a, b):.2f}"
            for a, b in zip(sizes, sizes[1:])
        ]
        print(f"| {step} | " + " | ".join(cells) + f" | {', '.join(exps)} |")
    print("(time / peak RSS of the step's process; growth exponent per size step, 1.0 = linear)")


if __name__ == "__main__":
    main()
