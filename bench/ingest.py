"""Ingest benchmark on the real 20 Newsgroups archive; every ratio is measured in this run.

1. Requests and wall time for 600 posts: our batched, concurrent ingest vs the
   notebook's one `embed_content` call per post (real SDK, fake server, 100 ms latency).
2. Local provider docs/s vs a bare `SentenceTransformer.encode` of the same texts.
3. Wall time of a fully cached re-ingest of the whole training set (11,314 posts),
   as a whole `embedlab` command and inside the pipeline.

Run: .venv/bin/python bench/ingest.py [--archive PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedlab.ingest.newsgroups import newsgroups_documents  # noqa: E402
from embedlab.ingest.pipeline import ingest, unique_documents  # noqa: E402
from embedlab.ingest.providers import GeminiProvider, LocalProvider, gemini_space, local_space  # noqa: E402
from embedlab.store import Store  # noqa: E402

from bench.common import DEFAULT_ARCHIVE, ingest_training_set  # noqa: E402
from tests.fake_gemini import VALID_KEY, FakeGemini  # noqa: E402


def sample_600(archive: Path):
    docs = newsgroups_documents(archive, "train", ["sci.*"], per_class=150, seed=0)
    return unique_documents(docs, Counter())


def bench_requests(archive: Path, tmp: Path) -> None:
    docs = sample_600(archive)
    with FakeGemini(latency=0.1) as server:
        os.environ.update(GOOGLE_GEMINI_BASE_URL=server.url, GEMINI_API_KEY=VALID_KEY)
        space = gemini_space(None, "CLUSTERING", None)
        start = time.perf_counter()
        with Store.open_local(tmp / "batched", create=True) as store:
            report = ingest(docs, store, space, lambda: GeminiProvider(space))
        ours_s, ours_requests = time.perf_counter() - start, len(server.requests)

        provider = GeminiProvider(space)  # the notebook: one call per post, one after another
        start = time.perf_counter()
        for doc in docs:
            provider.embed([doc.text])
        naive_s = time.perf_counter() - start
        naive_requests = len(server.requests) - ours_requests
    print(f"## Gemini requests for {len(docs)} posts (fake server, 100 ms latency per request)")
    rows = [
        ("embedlab batched (100/request, 4 in flight)", ours_requests, ours_s),
        ("one request per post (notebook)", naive_requests, naive_s),
    ]
    for name, requests, seconds in rows:
        print(f"{name + ':':45s} {requests:5d} requests {seconds:7.2f} s")
    print(
        f"ratio: {naive_requests / ours_requests:.0f}x fewer requests, "
        f"{naive_s / ours_s:.1f}x faster; stored {report.embedded}\n"
    )


def bench_local(archive: Path) -> None:
    docs = sample_600(archive)
    texts = [d.text for d in docs]
    provider = LocalProvider(local_space(None, None))
    provider.embed(texts[:4])  # load the model outside the timings
    model = provider._model
    start = time.perf_counter()
    bare = model.encode(texts, batch_size=32, normalize_embeddings=True)
    bare_s = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(0, len(texts), provider.default_batch_size):
        provider.embed(texts[i : i + provider.default_batch_size])
    ours_s = time.perf_counter() - start
    tokens = model.tokenizer(texts, add_special_tokens=False)["input_ids"]
    over = sum(len(t) > 254 for t in tokens)
    print(f"## Local all-MiniLM-L6-v2 on {len(texts)} posts (CPU, {os.cpu_count()} cores)")
    print(f"bare SentenceTransformer.encode (first 256 tokens): {len(texts) / bare_s:6.1f} docs/s")
    print(f"embedlab local provider (whole post, chunked):      {len(texts) / ours_s:6.1f} docs/s")
    print(
        f"ratio: {bare_s / ours_s:.2f}x of bare speed; {over}/{len(texts)} posts exceed 256 tokens "
        f"(mean {sum(map(len, tokens)) / len(tokens):.0f} tokens), so bare encode ignores their "
        f"tail; result shape {bare.shape}\n"
    )


def bench_cached_reingest(archive: Path, tmp: Path) -> None:
    with FakeGemini() as server:
        first_s, first = ingest_training_set(archive, tmp / "full", server.url)
        again_s, again = ingest_training_set(archive, tmp / "full", server.url)
        requests = len(server.requests)
    print("## Whole training set, gemini-embedding-001 at 3072 dims (fake server, no latency)")
    print(f"first ingest:       {first_s:7.2f} s  -> {first}")
    print(f"cached re-ingest:   {again_s:7.2f} s  -> {again}")
    print(f"requests in total: {requests} (all from the first run)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--skip", nargs="*", default=[], choices=["requests", "local", "cached"])
    args = parser.parse_args()
    if not args.archive.is_file():
        sys.exit(f"archive not found: {args.archive}")
    with tempfile.TemporaryDirectory() as tmp:
        if "requests" not in args.skip:
            bench_requests(args.archive, Path(tmp))
        if "local" not in args.skip:
            bench_local(args.archive)
        if "cached" not in args.skip:
            bench_cached_reingest(args.archive, Path(tmp))


if __name__ == "__main__":
    main()
