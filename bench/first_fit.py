"""First-fit benchmark (issue 22 item 5): a full analysis against scikit-learn's recipe.

Part 1, timing, side by side in one process: the 11,314 training posts at 3072 dims
(fake-server vectors, random per text: times only), k=20, t-SNE:
  - scikit-learn's recipe (the anchor, 1.00x): PCA to 50 dims then Barnes-Hut TSNE
    (perplexity 30, init "pca"), plus KMeans(k=20, n_init=10) on the vectors;
  - `lab.analyze(k=20, reduce="tsne")`: ratio to the anchor (target <= 0.6x);
  - the maps' trustworthiness (10 neighbours, on a seeded 3,000-point sample, against
    the PCA-50 input both maps read), and whether a second fit repeats the map exactly.
Part 2, clustering quality on real structure: the same 11,314 posts as unit LSA-100
features of their TF-IDF (20 labelled groups), spherical k-means k=20 with its restarts
on all documents (before) and on a seeded sample (now): Hungarian accuracy, ARI, seconds.

Run: .venv/bin/python bench/first_fit.py [--archive PATH] [--skip-timing] [--skip-quality]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import DEFAULT_ARCHIVE, ingest_training_set  # noqa: E402

SEEDS = 5


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start


def trust(reference, coords, seed: int = 0, n: int = 3000) -> float:
    import numpy as np
    from sklearn.manifold import trustworthiness

    rows = np.random.RandomState(seed).choice(len(coords), size=min(n, len(coords)), replace=False)
    return float(trustworthiness(reference[rows], coords[rows], n_neighbors=10))


def timing_part(archive: Path) -> None:
    import embedlab
    import numpy as np
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from tests.fake_gemini import VALID_KEY, FakeGemini

    with tempfile.TemporaryDirectory() as tmp, FakeGemini() as fake:
        store_path = Path(tmp) / "store"
        seconds, summary = ingest_training_set(archive, store_path, fake.url)
        print(f"store filled in {seconds:.0f} s: {summary}")
        os.environ.update(GOOGLE_GEMINI_BASE_URL=fake.url, GEMINI_API_KEY=VALID_KEY)
        with embedlab.open(store_path, quiet=True) as lab:
            ids, vectors = lab.vectors()
            print(f"\n## {len(ids):,} x {vectors.shape[1]}, k=20, t-SNE")
            reduced, pca_s = timed(PCA(n_components=50, random_state=0).fit_transform, vectors)
            tsne = TSNE(n_components=2, perplexity=30, init="pca", random_state=0)
            sk_map, tsne_s = timed(tsne.fit_transform, reduced)
            kmeans = KMeans(n_clusters=20, n_init=10, random_state=0)
            _, kmeans_s = timed(kmeans.fit_predict, vectors)
            anchor = pca_s + tsne_s + kmeans_s
            print(
                f"scikit-learn recipe:   {anchor:6.1f} s  1.00x  (PCA-50 {pca_s:.1f}, "
                f"TSNE {tsne_s:.1f}, KMeans n_init=10 {kmeans_s:.1f})"
            )
            a, full_s = timed(lab.analyze, k=20, reduce="tsne", seed=0)
            stages = ", ".join(f"{k} {v:.1f}" for k, v in a.timings.items() if v >= 0.05)
            print(f"embedlab analyze:      {full_s:6.1f} s  {full_s / anchor:.2f}x  ({stages})")
            print(f"  map: {a.metrics['params']['map']}")
            order = {doc_id: i for i, doc_id in enumerate(ids)}
            rows = np.array([order[i] for i in a.ids])
            ours = np.asarray(a.coords, dtype=np.float64)
            print(
                f"trustworthiness (10 nn, 3,000 sample, vs PCA-50): scikit-learn "
                f"{trust(reduced, sk_map):.3f}, embedlab {trust(reduced[rows], ours):.3f}"
            )
            b, again_s = timed(lab.analyze, k=20, reduce="tsne", seed=1)
            lab.delete_analysis(b.id)
            repeat = lab.analyze(k=20, reduce="tsne", seed=1)
            same = np.array_equal(np.asarray(b.coords), np.asarray(repeat.coords))
            print(f"seed 1 twice ({again_s:.1f} s): map repeats exactly: {same}")


def quality_part(archive: Path) -> None:
    import numpy as np
    from embedlab.analyze import cluster
    from embedlab.analyze.evaluate import evaluate
    from embedlab.ingest.newsgroups import newsgroups_documents
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics import adjusted_rand_score

    docs = newsgroups_documents(archive, "train", None, None, 0, "notebook")
    labels = np.array([d.label for d in docs])
    tfidf = TfidfVectorizer(max_df=0.5, min_df=2, stop_words="english").fit_transform(
        [d.text for d in docs]
    )
    features = TruncatedSVD(100, random_state=0).fit_transform(tfidf).astype(np.float32)
    print(f"\n## clustering quality: {len(docs):,} real posts, unit LSA-100 of TF-IDF, k=20")
    saved = cluster.SAMPLED_STARTS_ABOVE
    for name, above in (
        ("restarts on all documents (before)", 10**9),
        ("restarts on a sample (now)", saved),
    ):
        cluster.SAMPLED_STARTS_ABOVE = above
        runs = []
        for seed in range(SEEDS):
            found, seconds = timed(cluster.spherical_kmeans, features, 20, seed)
            score = evaluate(features, found, list(labels), seed)["hungarian_accuracy"]
            runs.append((seconds, score, adjusted_rand_score(labels, found)))
        mean = np.mean(runs, axis=0)
        print(
            f"{name:36s} {mean[0]:5.1f} s  Hungarian {mean[1]:.3f}  ARI {mean[2]:.3f}  "
            f"(mean of seeds 0-{SEEDS - 1}; Hungarian per seed "
            + " ".join(f"{r[1]:.3f}" for r in runs)
            + ")"
        )
    cluster.SAMPLED_STARTS_ABOVE = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    if not args.skip_quality:
        quality_part(args.archive)
    if not args.skip_timing:
        timing_part(args.archive)


if __name__ == "__main__":
    main()
