"""Fault benchmark: how much work and money faults cost, and proof that none is lost.

1. API fault storms (real SDK, fake Gemini server): each request faulted with some
   probability, cycling through 429 (Retry-After), 500, 503, slow past the client
   timeout, non-JSON, bad JSON, too few vectors, wrong dimensions and dropped
   connections. Runs are repeated until the corpus is stored; each run completes or
   stops cleanly. Prints faults injected, runs, documents lost and duplicated, and the
   extra requests spent on retries.
2. SIGKILL loop: the real `embedlab ingest`, killed at random moments many times, then
   re-run to completion. Prints kills, documents lost and duplicated, and the texts paid
   for but not saved (batches in flight at a kill).

Run: .venv/bin/python bench/faults.py [--docs 2000] [--kills 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedlab.ingest.pipeline import IngestError, RetryPolicy, ingest  # noqa: E402
from embedlab.ingest.providers import GeminiProvider, gemini_space  # noqa: E402
from embedlab.store import Document, Store  # noqa: E402

from tests.chaos import SLOW_S, Storm, audit_store, kill_loop, write_jsonl  # noqa: E402
from tests.conftest import jsonl_ingest_args, run_cli  # noqa: E402
from tests.fake_gemini import VALID_KEY, FakeGemini  # noqa: E402

DIMS = 128
BATCH = 20


def storm(tmp: Path, n_docs: int, rate: float, attempts: int) -> None:
    space = gemini_space(None, "CLUSTERING", DIMS)
    expected = {f"bench/{i}": f"storm document {i} topic:t{i % 7}" for i in range(n_docs)}
    docs = [Document(k, v, "bench") for k, v in expected.items()]
    store_path = tmp / f"storm-{rate}-{attempts}"
    policy = RetryPolicy(attempts=attempts, initial_delay=0.01, max_delay=0.2, seed=0)
    with FakeGemini() as server:
        os.environ.update(GOOGLE_GEMINI_BASE_URL=server.url, GEMINI_API_KEY=VALID_KEY)
        server.chaos = chaos = Storm(rate=rate, seed=0)
        runs = stopped = 0
        while True:
            runs += 1
            with Store.open_local(store_path, create=True) as store:
                try:
                    ingest(
                        docs,
                        store,
                        space,
                        lambda: GeminiProvider(space, timeout_s=SLOW_S / 2),
                        batch_size=BATCH,
                        retry=policy,
                    )
                    break
                except IngestError:
                    stopped += 1
        audit = audit_store(store_path, expected, DIMS)
        requests = len(server.requests)
    minimum = -(-n_docs // BATCH)
    print(
        f"| {rate:.0%} | {attempts} | {sum(chaos.injected.values())} | {runs} | {stopped} | "
        f"{n_docs - audit.stored} | {audit.duplicates} | {audit.corrupt} | "
        f"{requests - minimum} ({(requests - minimum) / minimum:.0%}) |"
    )
    return chaos.injected


def kills(tmp: Path, n_docs: int, n_kills: int) -> None:
    corpus = tmp / "posts.jsonl"
    expected = write_jsonl(corpus, n_docs)
    store_path = tmp / "killed"
    with FakeGemini(latency=0.05) as server:
        env = {"GOOGLE_GEMINI_BASE_URL": server.url, "GEMINI_API_KEY": VALID_KEY}
        args = jsonl_ingest_args(store_path, corpus, "--batch-size", str(BATCH), "--dims", "128")
        loop = kill_loop(args, env, server, runs=n_kills, seed=1)
        after_kills = audit_store(store_path, expected, DIMS)
        rerun = run_cli(args, env=env)
        final = audit_store(store_path, expected, DIMS)
        sent = sum(len(r.texts) for r in server.ok_requests)
    print(f"runs {loop.runs}, SIGKILLed {loop.killed}, finished on their own {loop.finished}")
    print(
        f"after the kills: {after_kills.stored} stored, {after_kills.duplicates} duplicated, "
        f"{after_kills.corrupt} corrupt; re-run exit {rerun.returncode}: "
        f"{rerun.stdout.strip().splitlines()[-1]}"
    )
    print(
        f"final: {final.stored}/{n_docs} stored, {n_docs - final.stored} lost, "
        f"{final.duplicates} duplicated, {final.corrupt} corrupt; texts paid for: {sent} "
        f"({sent - n_docs} paid but lost in flight at a kill, "
        f"{(sent - n_docs) / max(loop.killed, 1):.1f} per kill)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"## API fault storms: {args.docs} documents, {BATCH} per request, 4 in flight")
        print("| fault rate | attempts | faults injected | runs | stopped cleanly | lost | "
              "duplicated | corrupt | extra requests |")  # fmt: skip
        print("|---|---|---|---|---|---|---|---|---|")
        kinds = {}
        for rate, attempts in ((0.1, 6), (0.3, 6), (0.5, 3), (0.8, 6)):
            kinds = storm(Path(tmp), args.docs, rate, attempts)
        print("fault kinds (last storm): " + ", ".join(f"{k} {v}" for k, v in kinds.items()))
        print(f"\n## SIGKILL loop: {args.docs} documents, {args.kills} runs")
        kills(Path(tmp), args.docs, args.kills)


if __name__ == "__main__":
    main()
