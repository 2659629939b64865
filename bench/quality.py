"""Cluster quality of the offline default, before and after issue #14, on many samples.

The notebook's protocol (20 Newsgroups train, the four sci.* groups, 150 posts each,
seed 0, k = number of groups) and samples nobody tuned on: seeds 0-4, 300 posts per
group, the test split, the rec.*, comp.* and talk.* groups (these four: 100 posts per
group drawn from a seeded pool of 200, which halves the embedding), and all 20 groups
at k=20 (50 posts per group from a pool of 100), a row added after the defaults were
chosen. For each sample, the per-class majority-cluster share (the notebook's table:
mean and min over the classes) and the Hungarian-matched accuracy, as mean ± std over
the 5 seeds where there are 5.

- before: the notebook's cleaning, Euclidean KMeans (n_init=10) on the unit vectors,
  the old defaults;
- after: the defaults now (`default_clean("local")`, the notebook's cleaning again, and
  `analyze.cluster.cluster`: spherical k-means on the vectors joined with the posts' words,
  `text_weight` = `default_text_weight("local", "kmeans")`).

`--ablation` adds each lever alone and the defaults issue #14 had first (the `embedding`
cleaning and spherical k-means on the vectors alone), which lost on the test split.

Both embed with the local all-MiniLM-L6-v2 into a persistent store (`--store`, default
/tmp/quality-store): every post is embedded once per cleaning, so a re-run only clusters
(the first full run embeds about 11,500 posts: 30-40 minutes on 2 busy cores).

Then the Gemini path on vectors from the fake server (random per text: the figures only
show that it still runs, and that it keeps the notebook's cleaning and ids).

`--density` (issue 25 item 7) compares HDBSCAN and DBSCAN at their defaults on the full
vectors (before) and on UMAP reductions (cosine; 10 dims, the default now): noise share,
clusters, Hungarian accuracy and ARI on the clustered documents, per-class share.

Run: .venv/bin/python bench/quality.py [--quick] [--ablation] [--no-gemini] [--density]
[--store DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import DEFAULT_ARCHIVE  # noqa: E402

SEEDS = (0, 1, 2, 3, 4)


POOL_SEED = 100


@dataclass(frozen=True)
class Sample:
    """`per_class` posts per group, one sample per seed. With `pool`, the samples are drawn
    from one seeded pool of `pool` posts per group (half the posts to embed; the samples
    overlap more than independent ones, so their spread is, if anything, too small)."""

    name: str
    subset: str
    groups: str
    per_class: int
    seeds: tuple[int, ...]
    pool: int | None = None


SAMPLES = [
    Sample("sci train 150/class seed 0 (the notebook)", "train", "sci.*", 150, (0,)),
    Sample("sci train 150/class", "train", "sci.*", 150, SEEDS),
    Sample("sci train 300/class", "train", "sci.*", 300, SEEDS),
    Sample("sci test 100/class of 200", "test", "sci.*", 100, SEEDS, pool=200),
    Sample("rec train 100/class of 200", "train", "rec.*", 100, SEEDS, pool=200),
    Sample("comp train 100/class of 200 (k=5)", "train", "comp.*", 100, SEEDS, pool=200),
    Sample("talk train 100/class of 200", "train", "talk.*", 100, SEEDS, pool=200),
    # added after the defaults were chosen, to check them on groups and a k nothing was
    # chosen on (the pool of 100 nests in the pools of 200 above: 700 posts are new)
    Sample("all 20 groups train 50/class of 100 (k=20)", "train", "*", 50, SEEDS, pool=100),
]
QUICK = SAMPLES[:2]


def euclidean_kmeans(vectors: np.ndarray, k: int, texts: list[str]) -> np.ndarray:
    """The clustering before issue #14: scikit-learn's KMeans on the unit vectors."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(vectors)


def default_clustering(vectors: np.ndarray, k: int, texts: list[str]) -> np.ndarray:
    """What an analysis of the local model's vectors runs now."""
    from embedlab.analyze.cluster import cluster, default_text_weight

    weight = default_text_weight("local", "kmeans")
    return cluster(vectors, "kmeans", k, seed=0, texts=texts, text_weight=weight).labels


def spherical_only(vectors: np.ndarray, k: int, texts: list[str]) -> np.ndarray:
    """Spherical k-means on the vectors alone (the words' view off)."""
    from embedlab.analyze.cluster import cluster

    return cluster(vectors, "kmeans", k, seed=0, text_weight=0.0).labels


def words_kmeans(vectors: np.ndarray, k: int, texts: list[str]) -> np.ndarray:
    """The words' view with scikit-learn's Euclidean KMeans instead of spherical k-means."""
    from embedlab.analyze.cluster import with_text_view
    from sklearn.cluster import KMeans

    joined, _ = with_text_view(vectors, texts, 1.0, seed=0)
    return KMeans(n_clusters=k, n_init=10, random_state=0).fit_predict(joined)


@dataclass(frozen=True)
class Variant:
    name: str
    clean: str
    clustering: Callable[[np.ndarray, int, list[str]], np.ndarray]


def variants() -> list[Variant]:
    from embedlab.ingest.newsgroups import default_clean

    both = [
        Variant("before", "notebook", euclidean_kmeans),
        Variant("after", default_clean("local"), default_clustering),
    ]
    if not ARGS.ablation:
        return both
    return [
        *both,
        Variant("notebook+spherical", "notebook", spherical_only),
        Variant("notebook+words+KMeans", "notebook", words_kmeans),
        Variant("embedding+spherical (first #14)", "embedding", spherical_only),
        Variant("embedding+spherical+words", "embedding", default_clustering),
    ]


def prefix(clean: str) -> str:
    return "newsgroups" if clean == "notebook" else f"newsgroups-{clean}"


def ingest(lab, clean: str, sample: Sample, seed: int) -> None:
    """Embed the sample (or its pool) unless the store holds it already."""
    per_class, seed = (sample.per_class, seed) if sample.pool is None else (sample.pool, POOL_SEED)
    lab.ingest_newsgroups(
        ARGS.archive, sample.subset, [sample.groups], per_class, seed,
        clean=clean, provider="local", quiet=True,
    )  # fmt: skip


def score(lab, variant: Variant, sample: Sample, seed: int) -> dict:
    """Embed what is missing (cached otherwise), cluster, evaluate one sample."""
    from embedlab.analyze.evaluate import evaluate

    ingest(lab, variant.clean, sample, seed)
    selection = dict(
        labels=[sample.groups], sources=[f"{prefix(variant.clean)}/{sample.subset}"],
        per_class=sample.per_class, seed=seed, space="local",
    )  # fmt: skip
    ids, vectors = lab.vectors(**selection)
    docs = lab.documents(**selection)
    assert list(docs["id"]) == ids
    labels = list(docs["label"])
    k = len(set(labels))
    metrics = evaluate(vectors, variant.clustering(vectors, k, list(docs["text"])), labels)
    shares = {name: row["share"] for name, row in metrics["per_class"].items()}
    values = np.array(list(shares.values()))
    return {
        "mean": values.mean(),
        "min": values.min(),
        "hungarian": metrics["hungarian_accuracy"],
        "shares": shares,
    }


def spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def signed(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:+.3f}"
    return f"{np.mean(values):+.3f} ± {np.std(values):.3f}"


def local_table(samples: list[Sample]) -> None:
    import embedlab

    results: dict[tuple[str, str], list[dict]] = {}
    started = time.perf_counter()
    with embedlab.open(ARGS.store, quiet=True) as lab:
        for sample in samples:
            for variant in variants():
                results[sample.name, variant.name] = [
                    score(lab, variant, sample, seed) for seed in sample.seeds
                ]
    names = [v.name for v in variants()]
    after = variants()[1]
    print("## Local all-MiniLM-L6-v2: per-class majority-cluster share (mean, min over classes)")
    print(
        f"before: notebook cleaning, KMeans; after: {after.clean} cleaning, default kmeans "
        "(spherical, vectors + words)"
    )
    print("(mean ± std over seeds 0-4 where there are 5; change: after - before on the same")
    print("sample, mean ± std over the seeds)\n")
    header = ["sample", "seeds"]
    for name in names[:2]:
        header += [f"{name}: mean", f"{name}: min", f"{name}: Hungarian"]
    header += ["change: mean", "change: min"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for sample in samples:
        row = [sample.name, "0" if len(sample.seeds) == 1 else "0-4"]
        for name in names[:2]:
            runs = results[sample.name, name]
            row += [spread([r[key] for r in runs]) for key in ("mean", "min", "hungarian")]
        before, now = results[sample.name, names[0]], results[sample.name, names[1]]
        for key in ("mean", "min"):
            row.append(signed([b[key] - a[key] for a, b in zip(before, now)]))
        print("| " + " | ".join(row) + " |")
    if len(names) > 2:
        print("\nablation: mean / min share (mean over the seeds)\n")
        print("| sample | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for sample in samples:
            cells = []
            for name in names:
                runs = results[sample.name, name]
                cells.append(
                    f"{np.mean([r['mean'] for r in runs]):.3f} / "
                    f"{np.mean([r['min'] for r in runs]):.3f}"
                )
            print(f"| {sample.name} | " + " | ".join(cells) + " |")
    first = samples[0]
    print(f"\nper class, {first.name}:\n")
    print("| class | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for cls in results[first.name, names[0]][0]["shares"]:
        cells = [f"{results[first.name, n][0]['shares'][cls]:.3f}" for n in names]
        print(f"| {cls} | " + " | ".join(cells) + " |")
    print(f"\n({time.perf_counter() - started:.0f} s, store {ARGS.store})\n")


def gemini_block() -> None:
    """The Gemini path, default cleaning, against the fake server: it runs, unchanged."""
    import embedlab

    from tests.fake_gemini import VALID_KEY, FakeGemini

    saved = {k: os.environ.get(k) for k in ("GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY")}
    with FakeGemini() as server, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(GOOGLE_GEMINI_BASE_URL=server.url, GEMINI_API_KEY=VALID_KEY)
        try:
            with embedlab.open(Path(tmp) / "store", quiet=True) as lab:
                report = lab.ingest_newsgroups(
                    ARGS.archive, "train", ["sci.*"], 150, 0, provider="gemini", quiet=True
                )
                analysis = lab.analyze(labels=["sci.*"], k=4, reduce="pca", quiet=True)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
    ids = analysis.ids
    cleaning = "notebook (ids newsgroups/...)" if ids[0].startswith("newsgroups/") else ids[0]
    per_class = analysis.metrics["per_class"]
    shares = ", ".join(f"{name} {row['share']:.3f}" for name, row in per_class.items())
    print("## Gemini path, fake server (random vectors per text: only shows it runs)")
    print(f"ingest: {report.documents} posts, {report.requests} requests; cleaning {cleaning}")
    from embedlab.analyze.report import method_line

    print(f"analysis: {method_line(analysis.metrics)}; {shares}")
    print("(the words' view stays off for Gemini: its vectors were not measured with it)")


# -- density: the full vectors against a UMAP reduction (issue 25 item 7) ---------------------

DENSITY_SAMPLES = [SAMPLES[0], SAMPLES[3], SAMPLES[4]]  # the notebook's; sci test; rec
# 0: the full vectors (before); 10: the default now
DENSITY_RUNS = [
    ("hdbscan", 0), ("hdbscan", 5), ("hdbscan", 10), ("dbscan", 0), ("dbscan", 5), ("dbscan", 10),
]  # fmt: skip


def density_score(lab, sample: Sample, seed: int, algorithm: str, dims: int) -> dict:
    """HDBSCAN or DBSCAN at its defaults (the library's: min_cluster_size, eps 0.5) on the
    sample, on the full vectors or a UMAP reduction."""
    from embedlab.analyze.cluster import cluster
    from embedlab.analyze.evaluate import evaluate
    from embedlab.ingest.newsgroups import default_clean

    clean = default_clean("local")
    ingest(lab, clean, sample, seed)
    selection = dict(
        labels=[sample.groups], sources=[f"{prefix(clean)}/{sample.subset}"],
        per_class=sample.per_class, seed=seed, space="local",
    )  # fmt: skip
    ids, vectors = lab.vectors(**selection)
    labels = list(lab.documents(**selection)["label"])
    found = cluster(vectors, algorithm, seed=seed, cluster_dims=dims)
    metrics = evaluate(vectors, found.labels, labels, seed)
    shares = [row["share"] for row in (metrics.get("per_class") or {}).values()]
    return {
        "documents": len(ids),
        "noise": metrics["noise"] / len(ids),
        "clusters": len(set(found.labels.tolist()) - {-1}),
        "hungarian": metrics.get("hungarian_accuracy", 0.0),
        "ari": metrics.get("ari", 0.0),
        "mean_share": float(np.mean(shares)) if shares else 0.0,
    }


def density_table(samples: list[Sample]) -> None:
    import embedlab

    print("## Density at its defaults: full vectors (before) vs a UMAP reduction (cosine)")
    print("(noise: share of documents left as noise; Hungarian, ARI: agreement on the")
    print("clustered documents; share: mean per-class majority share, noise counted against")
    print("the class; mean ± std over the seeds where there are several)\n")
    print("| sample | seeds | algorithm | space | documents | noise | clusters | Hungarian | ARI |"
          " share |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    with embedlab.open(ARGS.store, quiet=True) as lab:
        for sample in samples:
            for algorithm, dims in DENSITY_RUNS:
                rows = [density_score(lab, sample, seed, algorithm, dims) for seed in sample.seeds]
                where = "full vectors" if dims == 0 else f"UMAP {dims} dims"
                cells = [sample.name, str(len(sample.seeds)), algorithm, where]
                cells.append(str(rows[0]["documents"]))
                for key in ("noise", "clusters", "hungarian", "ari", "mean_share"):
                    cells.append(spread([r[key] for r in rows]))
                print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--store", type=Path, default=Path("/tmp/quality-store"))
    parser.add_argument("--quick", action="store_true", help="sci train only (seed 0, 0-4)")
    parser.add_argument("--no-gemini", action="store_true", help="skip the fake-Gemini block")
    parser.add_argument(
        "--ablation", action="store_true", help="also each change alone (cleaning, clustering)"
    )
    parser.add_argument(
        "--density", action="store_true",
        help="only HDBSCAN/DBSCAN on the full vectors vs a UMAP reduction (issue 25 item 7)",
    )  # fmt: skip
    ARGS = parser.parse_args()
    if ARGS.density:
        density_table(DENSITY_SAMPLES[:1] if ARGS.quick else DENSITY_SAMPLES)
        return
    local_table(QUICK if ARGS.quick else SAMPLES)
    if not ARGS.no_gemini:
        gemini_block()


ARGS: argparse.Namespace

if __name__ == "__main__":
    main()
