"""The service under load: every figure of issue 23, side by side in one run.

On the 11,314 training posts at 3072 dims (fake-server vectors; the fake runs in a process
of its own, answering at once), same queries, k=10, same fields (ids, similarities,
metadata, texts):
1. anchor: a raw `chroma run` server on a copy of the store, queried by vector (chromadb's
   HttpClient), 1 and 8 clients; the service by id, 1 and 8 clients; queries/s, p50/p99;
   and how many of Chroma's hits are the exact ones (the service's answers are exact);
2. the service by text (cached query vectors), 1 and 8 clients;
3. 8 clients for as long as an ingest job of 2,000 real posts (test split) runs: errors,
   p99, throughput against (1); the ingest's documents/s against the same ingest alone;
4. the same while an ingest waits on a provider that answers in 30 s (a second service);
5. ingest alone (provider at 0 ms) against raw Chroma `upsert` of the same vectors and
   metadata (PersistentClient, batches of 100) into a copy of the same collection, and
   into an empty one, documents/s; the CPU each process (service, its Chroma child, the
   fake provider) spent over the ingest alone and under the readers;
6. resident memory of the service at 11,314 documents (measured) and at 100,000 (the
   held structures built for 100,000 synthetic documents, plus Chroma's index, estimated);
7. two analyses through the API of an already-loaded space.

Run: .venv/bin/python bench/service.py [--archive PATH] [--store PATH] [--seconds S]
     [--new-docs N] [--quick] [--embedded-chroma]
(`--store` keeps the filled store between runs; `--quick`: 3 s phases, 500 new posts.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
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


def load(
    call, ids: list[str], clients: int, seconds: float, until: threading.Event | None = None
) -> dict:
    """`clients` threads calling `call(id)` for `seconds` (or until `until` is set):
    throughput, p50/p99, errors."""
    latencies: list[float] = []
    errors = [0]
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def client(n: int) -> None:
        rng = random.Random(n)
        mine = []
        while time.monotonic() < stop and not (until is not None and until.is_set()):
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


def test_posts(archive: Path, n: int, skip: int = 0) -> list[dict]:
    """`n` real posts of the test split (shuffled with seed 0), as the API's documents."""
    from embedlab.ingest.newsgroups import newsgroups_documents

    docs = newsgroups_documents(archive, "test")
    random.Random(0).shuffle(docs)
    return [
        {"id": f"bench/{d.id}", "text": d.text, "label": d.label}
        for d in docs[skip : skip + n]
        if d.text
    ]


SERVE_FLAGS: list[str] = []  # --embedded-chroma: the service before its Chroma child


def start_service(store: Path, port: int, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "embedlab.cli",
            "--store",
            str(store),
            "serve",
            "--port",
            str(port),
            *SERVE_FLAGS,
        ],  # fmt: skip
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(service_log(store), "ab"),  # noqa: SIM115 - the child owns it
    )


def service_log(store: Path) -> Path:
    """Where a service started by the bench writes its log (kept after the run)."""
    return Path(tempfile.gettempdir()) / f"embedlab-bench-{store.name}.service.log"


def wait_warm(url: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not httpx.get(f"{url}/health", timeout=5).json().get("warming"):
            return
        time.sleep(0.5)
    raise SystemExit(f"{url} still warming after {timeout} s")


FAKE_PIDS: dict[str, int] = {}  # the fake provider's process, by its URL


def cpu_seconds(pid: int, others: dict[str, int] | None = None) -> dict[str, float]:
    """CPU seconds (user + system) used so far by `pid` ("service") and each of its
    children, by command name (its Chroma child: "chroma"), and by `others` (name: pid)."""
    named = {p: n for n, p in (others or {}).items()}
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        own = int(entry.name)
        if own == pid or int(fields[1]) == pid or own in named:  # fields[1]: its parent
            key = "service" if own == pid else named.get(own, name)
            used[key] = used.get(key, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_line(before: dict[str, float], after: dict[str, float], seconds: float) -> str:
    """Each process's CPU over a phase, and the cores they kept busy together."""
    spent = {k: after[k] - before.get(k, 0.0) for k in after}
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(spent.items()))
    return f"{parts} (together {sum(spent.values()) / seconds:.2f} cores over {seconds:.1f} s)"


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return float("nan")


def raw_upsert_rate(docs: list[dict], folder: Path, name: str = "raw") -> float:
    """documents/s of Chroma's own upsert (PersistentClient, batches of 100) of the same
    vectors and metadata embedlab writes, vectors computed before the clock starts, into
    collection `name` of `folder` (a copy of the served one, or a new empty one)."""
    import chromadb
    from embedlab.store import Document

    from tests.fake_gemini import fake_vector

    client = chromadb.PersistentClient(path=str(folder))
    col = client.get_or_create_collection(
        name, configuration={"hnsw": {"space": "cosine", "sync_threshold": 100}},
        embedding_function=None,
    )  # fmt: skip
    prepared = [Document(d["id"], d["text"], source="api", label=d.get("label")) for d in docs]
    vectors = np.array([fake_vector(d.text) for d in prepared], dtype=np.float32)
    started = time.perf_counter()
    for i in range(0, len(prepared), 100):
        batch = prepared[i : i + 100]
        col.upsert(
            ids=[d.id for d in batch],
            embeddings=vectors[i : i + 100],
            documents=[d.text for d in batch],
            metadatas=[d.metadata(False) for d in batch],
        )
    return len(prepared) / (time.perf_counter() - started)


def memory_model(n: int, texts: list[str]) -> float:
    """RSS (MB) of a fresh process holding what the service holds for `n` documents at
    3072 dims (vectors, int8 pre-scan, ids, metadata, texts), without Chroma."""
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "from embedlab.store.memory_index import MemoryIndex;"
        "import json; n = int(sys.argv[2]); texts = json.load(open(sys.argv[3]));"
        "rng = np.random.default_rng(0); v = np.empty((n, 3072), np.float32)\n"
        "for i in range(0, n, 4096): b = rng.standard_normal((min(4096, n - i), 3072),"
        " dtype=np.float32); b /= np.linalg.norm(b, axis=1, keepdims=True); v[i:i+len(b)] = b\n"
        "ids = [f'newsgroups/x/{i}' for i in range(n)];"
        "meta = [{'source': 'newsgroups/train', 'label': 'rec.x', 'content_hash': '%064x' % i,"
        " 'chars': 1000, 'truncated': False} for i in range(n)];"
        "tx = [texts[i % len(texts)] + str(i) for i in range(n)];"
        "row_of = {d: r for r, d in enumerate(ids)}; index = MemoryIndex(v, meta);"
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(texts, f)
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(REPO), str(n), f.name],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        os.unlink(f.name)
    return int(out.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--store", type=Path, help="Keep the filled store here.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Per load phase.")
    parser.add_argument("--new-docs", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="3 s phases, 500 new posts.")
    parser.add_argument(
        "--embedded-chroma",
        action="store_true",
        help="Serve with Chroma inside the service process (as before its Chroma child).",
    )
    args = parser.parse_args()
    if args.embedded_chroma:
        SERVE_FLAGS.append("--embedded-chroma")
    if args.quick:
        args.seconds, args.new_docs = 3.0, 500
    import chromadb

    tmp = Path(tempfile.mkdtemp(prefix="embedlab-bench-service-"))
    store = args.store or tmp / "store"
    procs: list[subprocess.Popen] = []
    with fake_gemini_process() as fake_url, fake_gemini_process(latency=30.0) as slow_url:
        env = {**os.environ, "GOOGLE_GEMINI_BASE_URL": fake_url, "GEMINI_API_KEY": VALID_KEY}
        env["PYTHONPATH"] = str(REPO)
        try:
            if not (store / "embedlab.json").is_file():
                seconds, summary = ingest_training_set(args.archive, store, fake_url)
                print(f"store filled in {seconds:.0f} s: {summary}")
            # every server works on a copy: the kept store stays at the 11,314 posts, and
            # each service holds its copy's lock
            shutil.copytree(store / "chroma", tmp / "raw-chroma", dirs_exist_ok=True)
            shutil.copytree(store, tmp / "served", dirs_exist_ok=True)
            shutil.copytree(store, tmp / "slow", dirs_exist_ok=True)
            for copy in ("served", "slow"):
                (tmp / copy / ".embedlab.lock").unlink(missing_ok=True)
            store = tmp / "served"
            import embedlab

            with embedlab.open(store, quiet=True) as lab:
                ids, vectors = lab.vectors()
                collection_name = lab.spaces()[0].collection_name
                texts_sample = [t for t in lab.documents()["text"].head(500)]
            picks = random.Random(0).sample(ids, 1000)
            row = {doc_id: i for i, doc_id in enumerate(ids)}
            by_id = {i: vectors[row[i]].tolist() for i in picks}
            del vectors

            raw_port, service_port, slow_port = free_port(), free_port(), free_port()
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
            procs.append(start_service(store, service_port, env))
            raw_url, url = f"http://127.0.0.1:{raw_port}", f"http://127.0.0.1:{service_port}"
            wait_for(f"{raw_url}/api/v2/heartbeat", procs[0])
            wait_for(f"{url}/health", procs[1])
            started = time.perf_counter()
            wait_warm(url)
            warm_s = time.perf_counter() - started

            raw = chromadb.HttpClient(host="127.0.0.1", port=raw_port)
            raw_col = raw.get_collection(collection_name)
            http = httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=32))

            def raw_query(doc_id: str) -> list[str]:
                got = raw_col.query(
                    query_embeddings=[by_id[doc_id]],
                    n_results=11,
                    include=["metadatas", "documents", "distances"],
                )
                return [i for i in got["ids"][0] if i != doc_id][:10]

            def service_query(doc_id: str, client: httpx.Client = http) -> list[str]:
                response = client.get("/api/v1/neighbours", params={"id": doc_id, "k": 10})
                response.raise_for_status()
                return [n["id"] for n in response.json()["neighbours"]]

            queries = [f"question {i} about {picks[i][-12:]}" for i in range(200)]
            for q in queries:  # one provider request each, then cached
                http.post("/api/v1/neighbours", json={"text": q, "k": 10}).raise_for_status()

            def text_query(doc_id: str) -> None:
                q = queries[hash(doc_id) % len(queries)]
                response = http.post("/api/v1/neighbours", json={"text": q, "k": 10})
                response.raise_for_status()

            agree = []
            for warm in picks[:200]:  # load both indexes before timing; compare answers
                raw_ids, svc_ids = raw_query(warm), service_query(warm)
                agree.append(len(set(raw_ids) & set(svc_ids)) / 10)
            mode = "Chroma in the service process" if SERVE_FLAGS else "Chroma in a child"
            print(
                f"\n## neighbours k=10, {len(ids)} documents x 3072 dims, {mode} (machine: "
                f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start)"
            )
            print(f"service warm-up (every vector read, pre-scan built): {warm_s:.1f} s")
            print(f"raw Chroma's hits that are the exact 10 (the service's): "
                  f"{np.mean(agree):.2f} on 200 queries")  # fmt: skip
            results = {}
            for clients in (1, 8):
                results[("raw", clients)] = load(raw_query, picks, clients, args.seconds)
                results[("svc", clients)] = load(service_query, picks, clients, args.seconds)
                results[("txt", clients)] = load(text_query, picks, clients, args.seconds)
                raw_r = results[("raw", clients)]
                print(line(f"raw chroma run, by vector, {clients} client(s)", raw_r))
                for key, name in (("svc", "by id"), ("txt", "by cached text")):
                    r = results[(key, clients)]
                    print(line(f"embedlab serve, {name}, {clients} client(s)", r)
                          + f"  {r['qps'] / raw_r['qps']:.2f}x raw")  # fmt: skip
            rss_11k = rss_mb(procs[1].pid)

            def ingest_cpu() -> dict[str, float]:
                return cpu_seconds(procs[1].pid, {"fake provider": FAKE_PIDS[fake_url]})

            docs = test_posts(args.archive, args.new_docs)
            print(f"\n## while an ingest job of {len(docs)} real test posts runs (8 clients)")
            cpu_before, cpu_started = ingest_cpu(), time.monotonic()
            job = http.post("/api/v1/ingest", json={"documents": docs}).json()["job"]
            # the readers run for the whole ingest: its speed is the speed under load
            ingested = threading.Event()
            finished: dict = {}

            def watch(job_id: str = job) -> None:
                try:
                    finished.update(wait_job(http, job_id))
                except SystemExit as failed:  # a thread's SystemExit would go unseen
                    finished["failed"] = str(failed)
                finally:
                    ingested.set()

            watcher = threading.Thread(target=watch)
            watcher.start()
            busy = load(service_query, picks, 8, 600, until=ingested)
            watcher.join()
            final = finished
            if "report" not in final:
                raise SystemExit(final.get("failed", f"ingest job {job} did not finish"))
            loaded_cpu = cpu_line(cpu_before, ingest_cpu(), time.monotonic() - cpu_started)
            print(line("embedlab serve, by id, 8 clients, during ingest", busy)
                  + f"  {busy['qps'] / results[('svc', 8)]['qps']:.2f}x of alone")  # fmt: skip
            with_load = final["report"]["documents"] / final["report"]["seconds"]
            alone_docs = test_posts(args.archive, args.new_docs, skip=args.new_docs)
            cpu_before, cpu_started = ingest_cpu(), time.monotonic()
            alone = wait_job(
                http, http.post("/api/v1/ingest", json={"documents": alone_docs}).json()["job"]
            )
            alone_cpu = cpu_line(cpu_before, ingest_cpu(), time.monotonic() - cpu_started)
            alone_rate = alone["report"]["documents"] / alone["report"]["seconds"]
            print(
                f"ingest: {with_load:.0f} docs/s under read load, {alone_rate:.0f} docs/s alone "
                f"({with_load / alone_rate:.2f}x)"
            )
            print(f"CPU, the ingest alone (the whole job): {alone_cpu}")
            print(f"CPU, the ingest under the 8 readers (the service answers both): {loaded_cpu}")
            shutil.copytree(args.store or tmp / "store", tmp / "raw-same", dirs_exist_ok=True)
            raw_rate = raw_upsert_rate(alone_docs, tmp / "raw-same" / "chroma", collection_name)
            empty_rate = raw_upsert_rate(alone_docs, tmp / "raw-empty")
            print(
                f"ingest alone {alone_rate:.0f} docs/s vs raw Chroma upsert of the same "
                f"vectors and metadata into a copy of the same {len(ids)}-document "
                f"collection {raw_rate:.0f} docs/s ({alone_rate / raw_rate:.2f}x); into an "
                f"empty collection {empty_rate:.0f} docs/s ({alone_rate / empty_rate:.2f}x)"
            )

            print("\n## during an ingest whose provider answers in 30 s (a second service)")
            slow_env = {**env, "GOOGLE_GEMINI_BASE_URL": slow_url}
            procs.append(start_service(tmp / "slow", slow_port, slow_env))
            slow_http = httpx.Client(base_url=f"http://127.0.0.1:{slow_port}", timeout=60,
                                     limits=httpx.Limits(max_connections=32))  # fmt: skip
            wait_for(f"http://127.0.0.1:{slow_port}/health", procs[-1])
            wait_warm(f"http://127.0.0.1:{slow_port}")
            procs[1].terminate()  # the first service is done: it must not share the cores
            procs[1].wait(timeout=30)
            slow_docs = test_posts(args.archive, 200, skip=2 * args.new_docs)
            slow_job = slow_http.post("/api/v1/ingest", json={"documents": slow_docs}).json()
            hung = load(lambda i: service_query(i, slow_http), picks, 8, args.seconds)
            print(line("embedlab serve, by id, 8 clients, provider hung", hung)
                  + f"  (p99 {busy['p99']:.0f} ms during the fast ingest)")  # fmt: skip
            slow_http.delete(f"/api/v1/jobs/{slow_job['job']}")

            print("\n## resident memory of the service (3072 dims)")
            model_11k = memory_model(len(ids), texts_sample)
            model_100k = memory_model(100_000, texts_sample)
            chroma_100k = 100_000 * (3072 * 4 + 16 * 2 * 4 + 64) / 2**20  # its HNSW, estimated
            print(
                f"at {len(ids)} documents: {rss_11k:.0f} MB measured (embedlab's held "
                f"structures alone: {model_11k:.0f} MB)"
            )
            print(f"at 100,000 documents: ~{rss_11k - model_11k + model_100k + chroma_100k:.0f} MB"
                  f" estimated = held structures {model_100k:.0f} MB (measured, synthetic "
                  f"documents) + Chroma's HNSW index ~{chroma_100k:.0f} MB + the rest as at "
                  f"{len(ids)} ({rss_11k - model_11k:.0f} MB)")  # fmt: skip

            print("\n## two analyses through the API of the held space (PCA map)")
            for k in (4, 8):
                started = time.perf_counter()
                job = slow_http.post("/api/v1/analyses", json={"k": k, "reduce": "pca"}).json()
                done = wait_job(slow_http, job["job"])
                if "analysis" not in done:  # say why, and go on to the summary
                    print(f"analysis k={k}: job {done.get('state')}: {done.get('error')}")
                    continue
                timings = slow_http.get(f"/api/v1/analyses/{done['analysis']}").json()["timings"]
                stages = ", ".join(f"{name} {sec:.2f} s" for name, sec in timings.items())
                print(f"analysis k={k}: {time.perf_counter() - started:.1f} s ({stages})")
            ratio = {c: results[("svc", c)]["qps"] / results[("raw", c)]["qps"] for c in (1, 8)}
            parts = [f"by id {c} client(s) {ratio[c]:.2f}x raw (p99 "
                     f"{results[('svc', c)]['p99']:.0f} ms)" for c in (1, 8)]  # fmt: skip
            parts.append(f"by text {results[('txt', 1)]['qps'] / results[('svc', 1)]['qps']:.2f}x"
                         " of by id")  # fmt: skip
            parts.append(f"during ingest {busy['qps'] / results[('svc', 8)]['qps']:.2f}x of "
                         f"alone, p99 {busy['p99']:.0f} ms, {busy['errors']} errors")  # fmt: skip
            parts.append(f"ingest {with_load / alone_rate:.2f}x of alone, alone "
                         f"{alone_rate / raw_rate:.2f}x raw upsert")  # fmt: skip
            parts.append(f"provider hung p99 {hung['p99']:.0f} ms")
            print("\nsummary: " + "; ".join(parts))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=30)
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def fake_gemini_process(latency: float = 0.0):
    """The fake Gemini server in a process of its own: encoding 3072-dim vectors as JSON
    holds a GIL, and it must not be the bench clients' (nor the service's)."""
    port = free_port()
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from tests.fake_gemini import FakeGemini;"
        "server = FakeGemini(port=int(sys.argv[2]), latency=float(sys.argv[3])).__enter__();"
        "time.sleep(1e9)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(REPO), str(port), str(latency)])
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
        FAKE_PIDS[f"http://127.0.0.1:{port}"] = proc.pid
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def wait_job(http: httpx.Client, job_id: str) -> dict:
    """The finished job; one that did not end "done" stops the bench with its error."""
    while True:
        job = http.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] not in ("queued", "running"):
            if job["state"] != "done":
                raise SystemExit(
                    f"job {job_id} ended {job['state']}: {json.dumps(job)[:2000]} "
                    f"(the services' logs: {service_log(Path('served'))} and the like)"
                )
            return job
        time.sleep(0.2)


if __name__ == "__main__":
    main()
