"""Batch API benchmark on the real 20 Newsgroups archive; every ratio is measured in this run.

The same posts into two fresh stores, side by side, through the real SDK and the fake
server (no latency): online (`ingest`) and through the Batch API (`ingest(batch=True)`,
the fake finishes the jobs, `collect()`). Printed: the estimated dollars both ways (the
anchor: online), the provider requests, the wall time of submit + collect against the
online ingest, whether the vectors are the same, and the full training set's dry run.

Run: .venv/bin/python bench/batch.py [--archive PATH] [--per-class N]
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

import embedlab  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import DEFAULT_ARCHIVE  # noqa: E402
from tests.fake_gemini import VALID_KEY, FakeGemini  # noqa: E402

DIMS = 768


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--per-class", type=int, default=100)
    args = parser.parse_args()
    opts = {"provider": "gemini", "dims": DIMS, "categories": ["*"], "per_class": args.per_class}
    with FakeGemini() as fake, tempfile.TemporaryDirectory() as tmp:
        os.environ.update(GOOGLE_GEMINI_BASE_URL=fake.url, GEMINI_API_KEY=VALID_KEY)
        os.environ.pop("GOOGLE_API_KEY", None)
        with embedlab.open(Path(tmp) / "online", quiet=True) as lab:
            start = time.perf_counter()
            online = lab.ingest_newsgroups(args.archive, **opts)
            online_s = time.perf_counter() - start
            online_ids, online_vectors = lab.vectors()
            online_usd = float(lab.costs()["estimated_usd"].sum())
        requests_online = len(fake.requests)
        with embedlab.open(Path(tmp) / "batch", quiet=True) as lab:
            start = time.perf_counter()
            submitted = lab.ingest_newsgroups(args.archive, batch=True, **opts)
            submit_s = time.perf_counter() - start
            fake.finish_batches()
            start = time.perf_counter()
            collected = lab.collect()
            collect_s = time.perf_counter() - start
            batch_ids, batch_vectors = lab.vectors()
            batch_usd = float(lab.costs()["estimated_usd"].sum())
            dry = lab.ingest_newsgroups(
                args.archive, batch=True, dry_run=True, provider="gemini", categories=None,
                per_class=None,
            )  # fmt: skip
        same = batch_ids == online_ids and np.allclose(batch_vectors, online_vectors, atol=1e-6)
        print(f"{online.documents} posts ({args.per_class} per group, all 20 groups), {DIMS} dims")
        print(
            f"online: {online.requests} requests, est. ${online_usd:.6f}, {online_s:.1f} s (anchor)"
        )
        print(
            f"batch:  {len(fake.batch_creates)} job ({submitted.job_modes[0]}), "
            f"{submitted.submitted} texts, {collected.written} written, est. ${batch_usd:.6f} "
            f"= {batch_usd / online_usd:.2f} x online; submit {submit_s:.1f} s + collect "
            f"{collect_s:.1f} s = {(submit_s + collect_s) / online_s:.2f} x online wall time"
        )
        print(f"online requests during the batch run: {len(fake.requests) - requests_online}")
        print(f"same ids and vectors both ways: {same}")
        print(f"whole training set, dry run: {dry.summary()}")


if __name__ == "__main__":
    main()
