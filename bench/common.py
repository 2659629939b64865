"""What the benchmarks share: the real archive and a full training-set ingest."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_ARCHIVE = REPO.parent / "shared" / "data" / "20news-bydate.tar.gz"


def ingest_training_set(archive: Path, store_path: Path, gemini_url: str) -> tuple[float, str]:
    """`embedlab ingest newsgroups --subset train` (all 20 groups, every post: 11,314)
    against a fake Gemini server, as a fresh
    process: (wall seconds, its summary line)."""
    from tests.fake_gemini import VALID_KEY

    env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": gemini_url, "GEMINI_API_KEY": VALID_KEY}
    args = [sys.executable, "-m", "embedlab.cli", "--store", str(store_path),
            "ingest", "newsgroups", "--source", str(archive), "--subset", "train",
            "--categories", "*", "--per-class", "all", "--yes"]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(args, env=env, capture_output=True, text=True, cwd=REPO, check=True)
    return time.perf_counter() - start, done.stdout.strip()
