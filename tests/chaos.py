"""Fault injection shared by the fault tests and `bench/faults.py`.

- `Storm`: a seeded source of API faults for the fake Gemini server (every kind in turn);
- `audit_store`: what a store holds against what it should (lost, duplicated, corrupt);
- `kill_loop`: start the real `embedlab ingest`, SIGKILL it at a random moment, repeat.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from embedlab.store import Store

from tests.conftest import spawn_cli
from tests.fake_gemini import FakeGemini, Fault, fake_vector

SLOW_S = 1.0  # a "slow" answer takes this long; clients under test time out sooner


def fault_menu() -> list[Fault]:
    """One of every API fault the issue lists (connection refused is a dead port instead)."""
    return [
        Fault(status=429, retry_after=0.05),
        Fault(status=500),
        Fault(status=503),
        Fault(delay=SLOW_S),
        Fault(body="<html>502 Bad Gateway</html>"),
        Fault(body='{"embeddings": [{"values": "nope"}]}'),
        Fault(drop_vectors=1),
        Fault(wrong_dims=True),
        Fault(reset=True),
    ]


@dataclass
class Storm:
    """Each request is faulted with probability `rate`; faulted ones cycle through the menu."""

    rate: float
    seed: int = 0
    menu: list[Fault] = field(default_factory=fault_menu)
    injected: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._next = 0

    def __call__(self) -> Fault:  # FakeGemini calls this under its lock
        if self._rng.random() >= self.rate:
            return Fault()
        fault = self.menu[self._next % len(self.menu)]
        self._next += 1
        self.injected[fault.kind or "?"] += 1
        return fault


@dataclass
class Audit:
    stored: int
    duplicates: int  # ids stored more than once
    corrupt: int  # a record whose text, metadata or vector is not what its document says
    unknown: int  # ids no document has


def audit_store(location: Path | str, expected: dict[str, str], dims: int) -> Audit:
    """Open the store (a folder, or a server's URL) as after a crash, and check every
    record against `expected` (id -> text)."""
    is_url = str(location).startswith("http")
    opened = Store.open_server(str(location)) if is_url else Store.open_local(location)
    with opened as store:
        spaces = store.spaces()
        if not spaces:
            return Audit(0, 0, 0, 0)
        (space,) = spaces
        col = store.collection(space)._col
        got = col.get(include=["metadatas", "documents", "embeddings"])
        corrupt = unknown = 0
        for doc_id, text, meta, vector in zip(
            got["ids"], got["documents"], got["metadatas"], got["embeddings"]
        ):
            if doc_id not in expected:
                unknown += 1
                continue
            want = fake_vector(expected[doc_id], dims)
            ok_vector = np.allclose(vector, want / np.linalg.norm(want), atol=1e-5)
            ok_meta = meta.get("chars") == len(text) and bool(meta.get("content_hash"))
            corrupt += not (text == expected[doc_id] and ok_vector and ok_meta)
        if got["ids"]:  # the vector index still answers after whatever happened
            hits = col.query(query_embeddings=[got["embeddings"][0]], n_results=1)
            corrupt += hits["ids"][0][0] != got["ids"][0]
        ids = got["ids"]
        return Audit(len(set(ids)), len(ids) - len(set(ids)), corrupt, unknown)


def write_jsonl(path: Path, n: int, prefix: str = "post") -> dict[str, str]:
    """n JSONL documents; returns the store ids they get, mapped to their texts."""
    texts = {i: f"{prefix} number {i} about topic:t{i % 5}" for i in range(n)}
    path.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in texts.items()))
    return {f"jsonl/{path.stem}/{i}": t for i, t in texts.items()}


@dataclass
class KillLoop:
    runs: int = 0
    killed: int = 0
    finished: int = 0
    delivered_texts: int = 0  # texts the server answered, over all runs


def kill_loop(
    args: list[str], env: dict[str, str], server: FakeGemini, runs: int, seed: int = 0
) -> KillLoop:
    """Start the ingest `runs` times, each SIGKILLed after a random few answers and a random
    pause (so kills land mid-request, mid-write, at start-up or while persisting)."""
    rng = random.Random(seed)
    result = KillLoop()
    for _ in range(runs):
        child = spawn_cli(args, env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        target = len(server.ok_requests) + rng.randint(0, 4)
        while len(server.ok_requests) < target and child.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.3))
        result.runs += 1
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            result.killed += 1
        else:
            result.finished += child.returncode == 0
        child.wait()
    result.delivered_texts = sum(len(r.texts) for r in server.ok_requests)
    return result
