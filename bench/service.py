"""The service under load: neighbours by id through `embedlab serve` vs a raw `chroma run`.

On the 11,314 training posts at 3072 dims (fake-server vectors), side by side in one run:
1. neighbours (k=10) by id through the service, 1 and 8 concurrent clients, against a raw
   `chroma run` server on a copy of the same store answering the same queries by vector
   (chromadb's HttpClient): queries/s and p50/p99;
2. the same through the service while an ingest job of 2,000 new documents runs: errors,
   p99, and the ingest's documents/s against the same ingest alone;
3. two analyses through the API of an already-loaded space: the second reads no vector
   from Chroma (the service keeps each space's vectors in memory once read).

Run: .venv/bin/python bench/service.py [--archive PATH] [--store PATH] [--seconds S]
(`--store` keeps the filled store between runs.)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import DEFAULT_ARCHIVE, ingest_training_set  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.fake_gemini import VALID_KEY  # noqa: E402


def wait_for(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{url} exited {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit(f"{url} did not start")


def load(call, ids: list[str], clients: int, seconds: float) -> dict:
    """`clients` threads calling `call(id)` for `seconds`: throughput, p50/p99, errors."""
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(n: int) -> None:
        rng = random.Random(n)
        mine = []
        while time.monotonic() < stop:
            doc_id = rng.choice(ids)
            started = time.perf_counter()
            try:
                call(doc_id)
            except Exception:  # noqa: BLE001 - counted, not fatal
                with lock:
                    errors[0] += 1
                continue
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    begun = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - begun
    p50, p99 = np.percentile(np.array(latencies) * 1000, [50, 99]) if latencies else (0, 0)
    return {"qps": len(latencies) / elapsed, "p50": p50, "p99": p99, "errors": errors[0]}


def line(name: str, r: dict) -> str:
    return (
        f"{name:<44} {r['qps']:7.1f} q/s  p50 {r['p50']:6.1f} ms  p99 {r['p99']:6.1f} ms"
        f"  errors {r['errors']}"
    )


def new_documents(n: int, run: str) -> list[dict]:
    """`n` texts no store holds yet (`run` makes them new on every run)."""
    words = "orbit launch vaccine doctor circuit voltage cipher key rocket patient".split()
    rng = random.Random(1)
    return [
        {
            "id": f"new/{run}/{i}",
            "text": " ".join(rng.choice(words) for _ in range(60)) + f" #{run}-{i}",
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--store", type=Path, help="Keep the filled store here.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Per load phase.")
    parser.add_argument("--new-docs", type=int, default=2000)
    args = parser.parse_args()
    import chromadb

    tmp = Path(tempfile.mkdtemp(prefix="embedlab-bench-service-"))
    store = args.store or tmp / "store"
    procs: list[subprocess.Popen] = []
    with fake_gemini_process() as fake_url:
        env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": fake_url, "GEMINI_API_KEY": VALID_KEY}
        env["PYTHONPATH"] = str(REPO)
        try:
            if not (store / "embedlab.json").is_file():
                seconds, summary = ingest_training_set(args.archive, store, fake_url)
                print(f"store filled in {seconds:.0f} s: {summary}")
            # both servers work on copies: the kept store stays at the 11,314 posts, and
            # the service holds its copy's lock
            shutil.copytree(store / "chroma", tmp / "raw-chroma", dirs_exist_ok=True)
            shutil.copytree(store, tmp / "served", dirs_exist_ok=True)
            (tmp / "served" / ".embedlab.lock").unlink(missing_ok=True)
            store = tmp / "served"
            import embedlab

            with embedlab.open(store, quiet=True) as lab:
                ids, vectors = lab.vectors()
                collection_name = lab.spaces()[0].collection_name
            picks = random.Random(0).sample(ids, 1000)
            by_id = {i: vectors[ids.index(i)].tolist() for i in picks}
            del vectors

            raw_port, service_port = free_port(), free_port()
            chroma_bin = Path(sys.executable).parent / "chroma"
            procs.append(
                subprocess.Popen(
                    [
                        str(chroma_bin),
                        "run",
                        "--path",
                        str(tmp / "raw-chroma"),
                        "--port",
                        str(raw_port),
                    ],  # fmt: skip
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "embedlab.cli",
                        "--store",
                        str(store),
                        "serve",
                        "--port",
                        str(service_port),
                    ],  # fmt: skip
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            raw_url, url = f"http://127.0.0.1:{raw_port}", f"http://127.0.0.1:{service_port}"
            wait_for(f"{raw_url}/api/v2/heartbeat", procs[0])
            wait_for(f"{url}/health", procs[1])

            raw = chromadb.HttpClient(host="127.0.0.1", port=raw_port)
            raw_col = raw.get_collection(collection_name)
            http = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=32))

            def raw_query(doc_id: str) -> None:
                raw_col.query(
                    query_embeddings=[by_id[doc_id]],
                    n_results=11,
                    include=["metadatas", "documents", "distances"],
                )

            def service_query(doc_id: str) -> None:
                response = http.get("/api/v1/neighbours", params={"id": doc_id, "k": 10})
                response.raise_for_status()

            for warm in picks[:50]:  # load both indexes before timing
                raw_query(warm)
                service_query(warm)
            print(f"\n## neighbours k=10 by id, {len(ids)} documents x 3072 dims")
            results = {}
            for clients in (1, 8):
                results[("raw", clients)] = load(raw_query, picks, clients, args.seconds)
                results[("svc", clients)] = load(service_query, picks, clients, args.seconds)
                print(
                    line(
                        f"raw chroma run, by vector, {clients} client(s)", results[("raw", clients)]
                    )
                )
                print(
                    line(f"embedlab serve, by id, {clients} client(s)", results[("svc", clients)])
                )
                ratio = results[("svc", clients)]["qps"] / results[("raw", clients)]["qps"]
                print(f"throughput ratio service/raw at {clients} client(s): {ratio:.2f}x")

            docs = new_documents(args.new_docs, f"{time.time_ns():x}")
            print(f"\n## while an ingest job of {len(docs)} new documents runs (8 clients)")
            job = http.post("/api/v1/ingest", json={"documents": docs}).json()["job"]
            busy = load(service_query, picks, 8, args.seconds)
            final = wait_job(http, job)
            print(line("embedlab serve, by id, 8 clients, during ingest", busy))
            with_load = final["report"]["documents"] / final["report"]["seconds"]
            alone_docs = [
                {**d, "id": f"alone/{d['id']}", "text": d["text"] + " alone"} for d in docs
            ]
            alone = wait_job(
                http, http.post("/api/v1/ingest", json={"documents": alone_docs}).json()["job"]
            )
            alone_rate = alone["report"]["documents"] / alone["report"]["seconds"]
            print(
                f"ingest: {with_load:.0f} docs/s under read load, {alone_rate:.0f} docs/s alone "
                f"({with_load / alone_rate:.2f}x)"
            )

            print(
                "\n## two analyses through the API (PCA map; the service held the vectors "
                "since it started, so neither reads them from Chroma)"
            )
            for k in (4, 8):
                started = time.perf_counter()
                job = http.post("/api/v1/analyses", json={"k": k, "reduce": "pca"}).json()["job"]
                done = wait_job(http, job)
                timings = http.get(f"/api/v1/analyses/{done['analysis']}").json()["timings"]
                stages = ", ".join(f"{name} {sec:.2f} s" for name, sec in timings.items())
                print(f"analysis k={k}: {time.perf_counter() - started:.1f} s ({stages})")
            print("\nsummary: " + ", ".join(
                f"{c} client(s) {results[('svc', c)]['qps'] / results[('raw', c)]['qps']:.2f}x raw"
                f" (p99 {results[('svc', c)]['p99']:.0f} ms)" for c in (1, 8)
            ) + f"; during ingest p99 {busy['p99']:.0f} ms, {busy['errors']} errors, ingest "
                f"{with_load / alone_rate:.2f}x of alone")  # fmt: skip
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def fake_gemini_process():
    """The fake Gemini server in a process of its own: encoding 3072-dim vectors as JSON
    holds a GIL, and it must not be the bench clients' (nor the service's)."""
    port = free_port()
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from tests.fake_gemini import FakeGemini;"
        "server = FakeGemini(port=int(sys.argv[2])).__enter__(); time.sleep(1e9)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(port)])
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the fake Gemini server did not start") from None
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_job(http: httpx.Client, job_id: str) -> dict:
    while True:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.2)


if __name__ == "__main__":
    main()
