"""Damage benchmark: what a store keeps, and which commands survive, when its index is hit.

For each seed, a fresh store of 824 documents (384-dim unit vectors from a deterministic
provider, as the local model gives) has 3,000 random bytes written into its space's
`data_level0.bin` at 25-60% of the file. Then, as separate processes (a crash is a
finding, not the end of the run): `stats`, `neighbors --id`, `documents`, `analyze
--reduce pca` before repair; `repair`; the same commands after; and one ingest of a single
new document, which re-embeds whatever repair marked as needing its vector.

Prints one row per seed: where the bytes landed, each command's outcome before repair
(ok, "1 line": a one-line error, "trace": a traceback, "sig N": killed by signal N),
documents kept after repair (with and without their vector), vectors re-embedded by the
next ingest, and the commands' outcomes after repair.

Run: .venv/bin/python bench/damage.py [--seeds 10] [--docs 824]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from embedlab.ingest.pipeline import ingest  # noqa: E402
from embedlab.store import Document, Space, Store  # noqa: E402
from embedlab.store.chroma_store import CHROMA_DIR  # noqa: E402

from tests.conftest import CountingProvider, make_docs, run_cli  # noqa: E402

SPACE = Space("fake", "fake-model", "none", 384)
DAMAGE_BYTES = 3000


def outcome(done) -> str:
    if done.returncode < 0:
        return f"sig {-done.returncode}"
    if done.returncode == 0:
        return "ok"
    if "Traceback" in done.stderr:
        return "trace"
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return "1 line" if len(lines) == 1 else f"{len(lines)} lines"


def commands(store: Path) -> dict[str, str]:
    base = ["--store", str(store)]
    runs = {
        "stats": [*base, "stats"],
        "neighbors": [*base, "neighbors", "--id", "test/5", "-k", "5"],
        "documents": [*base, "documents", "--limit", "3"],
        "analyze": [*base, "analyze", "--k", "4", "--reduce", "pca"],
    }
    return {name: outcome(run_cli(args, timeout=300)) for name, args in runs.items()}


def vector_file(store: Path) -> Path:
    (found,) = (store / CHROMA_DIR).glob("*/data_level0.bin")
    return found


def trial(tmp: Path, seed: int, n_docs: int) -> dict[str, object]:
    store = tmp / f"store-{seed}"
    with Store.open_local(store, create=True) as opened:
        ingest(make_docs(n_docs, labels=4), opened, SPACE, lambda: CountingProvider(SPACE))
    target = vector_file(store)
    size = target.stat().st_size
    rng = np.random.default_rng(seed)
    offset = int(rng.uniform(0.25, 0.60) * size)
    with open(target, "r+b") as fh:
        fh.seek(offset)
        fh.write(rng.integers(0, 256, DAMAGE_BYTES, dtype=np.uint8).tobytes())
    before = commands(store)
    repaired = run_cli(["--store", str(store), "repair"], timeout=600)
    after = commands(store)
    with Store.open_local(store) as opened:
        collection = opened.collection(SPACE)
        with_vector = collection.count() if collection is not None else 0
        provider = CountingProvider(SPACE)
        new = [Document("extra/1", "one new document after the repair", "extra", "label0")]
        ingest(new, opened, SPACE, lambda: provider)
        kept_now = opened.collection(SPACE).count()
    return {
        "seed": seed,
        "offset": f"{offset / size:.0%}",
        "before": before,
        "repair": outcome(repaired),
        "with_vector": with_vector,
        "re_embedded": len(provider.texts_embedded) - 1,
        "after_ingest": kept_now - 1,
        "after": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--docs", type=int, default=824)
    args = parser.parse_args()
    names = ["stats", "neighbors", "documents", "analyze"]
    print(
        f"{args.docs} documents, {SPACE.dims} dims; {DAMAGE_BYTES} random bytes at 25-60% of "
        "data_level0.bin; commands as separate processes"
    )
    header = (
        "seed | at  | before repair: " + " / ".join(names) + " | repair | kept with vector"
        " | re-embedded by next ingest | documents after | after repair"
    )
    print(header)
    crashed_before = crashed_after = 0
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            row = trial(Path(tmp), seed, args.docs)
            before, after = row["before"], row["after"]
            crashed_before += sum(v != "ok" and v != "1 line" for v in before.values())
            crashed_after += sum(v != "ok" and v != "1 line" for v in after.values())
            print(
                f"{seed:4} | {row['offset']:>3} | "
                + " / ".join(before[n] for n in names)
                + f" | {row['repair']} | {row['with_vector']}/{args.docs}"
                f" | {row['re_embedded']} | {row['after_ingest']}/{args.docs} | "
                + " / ".join(after[n] for n in names),
                flush=True,
            )
    print(
        f"commands that crashed or printed a traceback: {crashed_before} before repair, "
        f"{crashed_after} after (of {4 * args.seeds} each)"
    )


if __name__ == "__main__":
    main()
