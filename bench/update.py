"""Update benchmark (issue 22): an analysis following a growing corpus, against a refit.

Part 1, the whole training set (11,314 posts) at 3072 dims with fake-server vectors
(random per text: times only), k=20, t-SNE, all in one process, side by side:
  - the full analysis (the anchor, 1.00x);
  - lab.update after +1% (113 posts of the test split), and after +10% (1,131),
    each from the first analysis; ratio to the full analysis (targets <= 0.05x, <= 0.25x);
    also with the vectors already in memory (what `embedlab serve` does: keep_vectors);
  - lab.update(refit=True) after +10%: Procrustes disparity of the old documents and the
    share keeping their cluster number (expect >= 0.9);
  - the reference data's size per analysis at 11,314 documents.
Part 2, the local model's demo (600 sci.* posts of the training split) plus 60 new from
the test split (15 per group): the updated analysis' per-class shares against a full
analysis of the same 660 (target: within 0.02), and the placed points' neighbourhood
preservation against the old points' (target: within 0.05).

Run: .venv/bin/python bench/update.py [--archive PATH] [--skip-local] [--skip-full]
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


def test_posts(archive: Path, n: int, categories=None, per_class=None, seed: int = 0):
    """`n` posts of the test split (a seeded sample), cleaned as the training posts."""
    import numpy as np
    from embedlab.ingest.newsgroups import newsgroups_documents

    docs = newsgroups_documents(archive, "test", categories, per_class, seed, "notebook")
    if n < len(docs):
        keep = np.random.default_rng(seed).permutation(len(docs))[:n]
        docs = [docs[i] for i in sorted(keep)]
    return docs


def timed(func, *args, **kwargs):
    start = time.perf_counter()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - start


def stages(analysis) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in analysis.timings.items() if v >= 0.01)


def full_part(archive: Path) -> None:
    import embedlab
    from embedlab.analyze.reference import size_bytes
    from embedlab.lab import ANALYSIS, Lab

    from tests.fake_gemini import VALID_KEY, FakeGemini

    with tempfile.TemporaryDirectory() as tmp, FakeGemini() as fake:
        store_path = Path(tmp) / "store"
        seconds, summary = ingest_training_set(archive, store_path, fake.url)
        print(f"store filled in {seconds:.0f} s: {summary}")
        os.environ.update(GOOGLE_GEMINI_BASE_URL=fake.url, GEMINI_API_KEY=VALID_KEY)
        extra = test_posts(archive, 1131, seed=1)
        one, rest = extra[:113], extra[113:]
        with embedlab.open(store_path, quiet=True) as lab:
            a, full_s = timed(lab.analyze, k=20, reduce="tsne", seed=0)
            print(f"\n## {len(a.ids):,} x {a.space.dims}, k=20, t-SNE")
            print(f"full analysis:           {full_s:6.1f} s  1.00x  ({stages(a)})")
            ref = size_bytes(a.reference)
            head, payload = a.to_record()
            found = lab.store.artifacts.get(ANALYSIS, a.id)
            names = ", ".join(sorted(a.reference["arrays"]))
            print(
                f"reference data: {ref / 1e6:.2f} MB of arrays ({names}); "
                f"whole stored analysis payload {len(payload) / 1e6:.2f} MB "
                f"(read back: {found is not None})"
            )
            lab.ingest_documents(one, provider="gemini", quiet=True)
            b, one_s = timed(lab.update, a)
            print(
                f"update +1% ({b.update_report['added']} added): {one_s:6.2f} s  "
                f"{one_s / full_s:.3f}x  (target <= 0.05x; {stages(b)})"
            )
            held = Lab(lab.store, quiet=True, keep_vectors=True)
            held.vectors(a.space)  # read once, as `embedlab serve` does at start
            b2, held_s = timed(held.update, a)
            print(
                f"  same, vectors in memory (serve): {held_s:6.2f} s  {held_s / full_s:.3f}x  "
                f"({stages(b2)})"
            )
            held.ingest_documents(rest, provider="gemini", quiet=True)  # its memory follows
            c, ten_s = timed(lab.update, a)
            print(
                f"update +10% ({c.update_report['added']} added): {ten_s:6.2f} s  "
                f"{ten_s / full_s:.3f}x  (target <= 0.25x; {stages(c)})"
            )
            c2, held10_s = timed(held.update, a)
            print(f"  same, vectors in memory (serve): {held10_s:6.2f} s  {held10_s / full_s:.3f}x")
            drift = c.update_report["drift"]
            print(
                f"drift after +10%: placed share {drift['placed_share']:.3f}, similarity new "
                f"{drift.get('similarity_new')} vs old {drift.get('similarity_old')}, "
                f"preservation new {drift.get('preservation_new')} vs old "
                f"{drift.get('preservation_old')}, refit advised {c.update_report['refit_advised']}"
            )
            r, refit_s = timed(lab.update, a, refit=True)
            rr = r.update_report
            print(
                f"refit after +10%: {refit_s:6.1f} s  {refit_s / full_s:.2f}x; Procrustes "
                f"disparity of the old documents {rr['disparity']:.3f}; "
                f"{rr['kept_cluster_share']:.3f} keep their cluster number (expect >= 0.9)"
            )


def local_part(archive: Path) -> None:
    import embedlab
    import numpy as np
    from embedlab.analyze.update import preservation

    with tempfile.TemporaryDirectory() as tmp:
        with embedlab.open(Path(tmp) / "store", quiet=True) as lab:
            _, ingest_s = timed(
                lab.ingest_newsgroups, archive, "train", ["sci.*"], 150, 0, provider="local"
            )
            a = lab.analyze(labels="sci.*", k=4, reduce="tsne", seed=0)
            print(f"\n## local model demo: {len(a.ids)} sci.* posts (embedded in {ingest_s:.0f} s)")
            new = test_posts(archive, 60, ["sci.*"], 15, seed=0)
            lab.ingest_documents(new, provider="local", quiet=True)
            b, update_s = timed(lab.update, a)
            full, full_s = timed(
                lab.analyze, labels="sci.*", k=4, reduce="tsne", seed=0, fresh=True
            )
            print(
                f"update +{b.update_report['added']}: {update_s:.2f} s; full analysis of the "
                f"same {len(full.ids)}: {full_s:.2f} s ({update_s / full_s:.2f}x)"
            )
            rows = []
            worst = 0.0
            for name, row in b.metrics["per_class"].items():
                other = full.metrics["per_class"][name]["share"]
                worst = max(worst, abs(row["share"] - other))
                rows.append(f"{name} {row['share']:.3f} vs {other:.3f}")
            print("per-class share, updated vs full refit: " + "; ".join(rows))
            print(f"largest per-class difference {worst:.3f} (target <= 0.02)")
            print(
                f"Hungarian accuracy updated {b.metrics['hungarian_accuracy']:.3f}, full refit "
                f"{full.metrics['hungarian_accuracy']:.3f}"
            )
            # neighbourhood preservation of every placed point and every old point
            ids, vectors = lab.vectors(a.space, labels="sci.*")
            assert ids == b.ids
            placed = np.array([b.ids.index(i) for i in b.placed])
            old = np.array([i for i in range(len(b.ids)) if b.ids[i] not in set(b.placed)])
            p_new = preservation(vectors, b.coords, placed)
            p_old = preservation(vectors, b.coords, old)
            p_full = preservation(vectors, full.coords, np.arange(len(full.ids)))
            print(
                f"neighbourhood preservation (10 nearest): placed {p_new:.3f}, old {p_old:.3f} "
                f"(gap {p_old - p_new:+.3f}; target within 0.05); a full refit's map {p_full:.3f}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.skip_full:
        full_part(args.archive)
    if not args.skip_local:
        local_part(args.archive)


if __name__ == "__main__":
    main()
