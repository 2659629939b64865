"""Check a store and rebuild the vector index of a space whose index is damaged.

Chroma keeps texts and metadata in SQLite and the vectors in its HNSW files, and a crash
while those files are written, or bytes damaged on disk, can leave them unloadable
(chroma #7090, #5925) or loadable into a crash. Repair loses only what the damage took:

1. every whole vector is read back from the files themselves, in plain numpy (no native
   code to crash), plus Chroma's write-ahead log for the writes after the last sync;
2. the damaged files are moved to `<store>/quarantine/`, never deleted;
3. every record (id, text, label, source, hash) is copied into a fresh collection with
   its vector, and swapped in; a record whose vector was not whole keeps everything
   else, beside the space, marked "needs its vector" (`SpaceCollection.pending`): the
   next ingest of the space, or `repair --reembed`, embeds exactly those.

For an embedded store every Chroma step runs in a child process while this one holds the
store's lock: a crash there is a finding, not the end of the repair.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import astuple, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .chroma_store import Store, StoreError, embedded_client, space_of
from .index_files import catalogue_ids, index_problem, record_count, vector_segment_folders
from .keys import Space
from .layout import CHROMA_DIR, PAGE_SIZE, QUARANTINE_DIR, SALVAGE_DIR
from .rebuild import (
    OLD_SUFFIX,
    PENDING_SUFFIX,
    REBUILD_SUFFIX,
    all_ids,
    drop_replayed_folders,
    is_unit_vector,
    quarantine_vector_segment,
    rebuild_collection,
    save_readable,
)

__all__ = ["REBUILD_SUFFIX", "SpaceHealth", "check_store", "is_unit_vector"]


@dataclass
class SpaceHealth:
    space: Space
    documents: int = 0
    problems: list[str] = field(default_factory=list)
    kept: int = 0  # records copied into the rebuilt index with their vector
    needs_vector: list[str] = field(default_factory=list)  # ids kept without a vector
    quarantined: list[str] = field(default_factory=list)
    rebuilt: bool = False

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def dropped(self) -> list[str]:
        """Nothing is dropped any more; the name older callers used for `needs_vector`."""
        return self.needs_vector


def check_store(store: Store, fix: bool = False) -> list[SpaceHealth]:
    """Health of every space, and the documents that need their vector; with `fix`,
    rebuild the damaged ones."""
    if store.path is None:
        if fix:
            _finish_interrupted_rebuilds(store.client)
        return [_check_in_process(store.client, space, fix) for space in store.spaces()]
    root = store.path
    chroma_dir = root / CHROMA_DIR
    listing = _child(root, "list")
    if isinstance(listing, dict):
        raise StoreError(f"cannot list the spaces of {root}: {listing['error']}")
    results = []
    for name, space in listing:
        health = SpaceHealth(Space(*space))
        # the files first, in plain numpy: damage found there never reaches Chroma
        problems = [p for f in vector_segment_folders(chroma_dir, name) if (p := index_problem(f))]
        if (root / SALVAGE_DIR / f"{name}.npz").is_file():
            problems.append("an earlier repair did not finish")
        if problems:  # loading this index could crash even a child: count, read nothing
            probe: dict[str, Any] = {
                "documents": record_count(chroma_dir, name),
                "problems": problems,
            }
        else:
            probe = _child(root, "probe", name)
        health.problems = [probe["error"]] if "error" in probe else probe["problems"]
        health.documents = probe.get("documents", 0)
        if health.problems and fix:
            save_readable(root, name)
            health.quarantined = quarantine_vector_segment(root, name)
            salvaged = _child(root, "salvage", name)
            if "error" in salvaged:
                raise StoreError(
                    f"cannot rebuild {name}: {salvaged['error']}; nothing was lost (the "
                    f"index files are in {root / QUARANTINE_DIR}, the vectors read back in "
                    f"{root / SALVAGE_DIR}): run repair again"
                )
            health.kept = salvaged["kept"]
            health.rebuilt = True
            (root / SALVAGE_DIR / f"{name}.npz").unlink(missing_ok=True)
            drop_replayed_folders(root, health.quarantined)
        pending = _child(root, "pending", name).get("ids", [])
        present = catalogue_ids(chroma_dir, name, pending)  # those with a vector again
        health.needs_vector = [doc_id for doc_id in pending if doc_id not in present]
        # every document: those with their vector and those waiting for it
        main = health.kept if health.rebuilt else health.documents
        health.documents = main + len(health.needs_vector)
        results.append(health)
    return results


def _check_in_process(client: Any, space: Space, fix: bool) -> SpaceHealth:
    """A server store: its crashes are the server's, so no child process is needed."""
    col = client.get_collection(space.collection_name, embedding_function=None)
    health = SpaceHealth(space, **_probe(col))
    if health.problems and fix:
        salvaged = rebuild_collection(client, col, None)
        health.kept, health.rebuilt = salvaged["kept"], True
    health.needs_vector = _pending_ids(client, space.collection_name)
    return health


def _child(root: Path, step: str, name: str | None = None) -> Any:
    """One step of the repair in a child process: its JSON answer, or {"error": why}.

    The child is forked from a fork server that imported Chroma once (a step costs a
    fork, not ~1.5 s of imports), and is still a process of its own: Chroma crashing on
    a damaged index kills the child, and is reported as a finding."""
    # The path is made absolute here: the child must name the same store as the caller
    # whatever folder either runs in (a relative --store).
    chroma_dir = str((root / CHROMA_DIR).resolve())
    context = _fork_server()
    if context is None:  # no fork server here: a fresh interpreter per step
        return _child_interpreter(chroma_dir, step, name)
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_step_in_child, args=(send, chroma_dir, step, name))
    child.start()
    send.close()
    try:
        answer = receive.recv()
    except EOFError:  # it died before answering
        answer = None
    finally:
        receive.close()
        child.join()
    if child.exitcode is not None and child.exitcode < 0:
        return {"error": f"Chroma crashed reading the index (signal {-child.exitcode})"}
    return answer if answer is not None else {"error": f"the repair step {step} stopped"}


_fork_context: Any = None


def _fork_server() -> Any:
    """A fork server that preloaded this module and Chroma (None off POSIX)."""
    global _fork_context
    if _fork_context is None:
        import multiprocessing

        if "forkserver" not in multiprocessing.get_all_start_methods():
            return None
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["embedlab.store.repair", "chromadb"])
        _fork_context = context
    return _fork_context


def _step_in_child(send: Any, chroma_dir: str, step: str, name: str | None) -> None:
    """In the forked child: quiet (Chroma's warnings are not the user's), one step, its
    answer or its error's last line sent back."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        answer = _run_step(chroma_dir, step, name)
    except Exception as exc:  # noqa: BLE001 - any failure of the step is its answer
        answer = {"error": (str(exc).splitlines() or [type(exc).__name__])[-1][:200]}
    send.send(json.loads(json.dumps(answer)))
    send.close()


def _child_interpreter(chroma_dir: str, step: str, name: str | None) -> Any:
    args = [sys.executable, "-m", "embedlab.store.repair", chroma_dir, step]
    done = subprocess.run(args + ([name] if name else []), capture_output=True, text=True)
    if done.returncode == 0:
        return json.loads(done.stdout.strip().splitlines()[-1])
    if done.returncode < 0:
        return {"error": f"Chroma crashed reading the index (signal {-done.returncode})"}
    return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:200]}


def _run_step(chroma_dir: str, step: str, name: str | None) -> Any:
    """What a child process does: one step against Chroma, answered as JSON."""
    client = embedded_client(chroma_dir)
    if step == "list":
        _finish_interrupted_rebuilds(client)
        spaces = [(col.name, space_of(col)) for col in client.list_collections()]
        return sorted((name, astuple(space)) for name, space in spaces if space is not None)
    assert name is not None
    if step == "pending":
        return {"ids": _pending_ids(client, name)}
    col = client.get_collection(name, embedding_function=None)
    if step == "probe":
        return _probe(col)
    saved = Path(chroma_dir).parent / SALVAGE_DIR / f"{name}.npz"
    return rebuild_collection(client, col, saved)


def _probe(col: Any) -> dict[str, Any]:
    """Every vector readable, and the index answering a query with a record's own vector."""
    try:
        ids = all_ids(col)
    except Exception as exc:
        return {"problems": [f"cannot read the collection ({_short(exc)})"]}
    unreadable = 0
    sample = None
    for start in range(0, len(ids), PAGE_SIZE):
        chunk = ids[start : start + PAGE_SIZE]
        try:
            got = col.get(ids=chunk, include=["embeddings"])
        except Exception:
            unreadable += len(chunk)
            continue
        good = [is_unit_vector(np.asarray(v)) for v in got["embeddings"]]
        unreadable += len(chunk) - sum(good)
        if sample is None and good and good[0]:
            sample = (got["ids"][0], got["embeddings"][0])
    problems = []
    if unreadable:
        problems.append(f"{unreadable} of {len(ids)} vectors unreadable or damaged")
    if sample is not None:
        try:
            hits = col.query(query_embeddings=[sample[1]], n_results=1, include=["distances"])
            if hits["ids"][0][:1] != [sample[0]]:
                problems.append("the vector index does not find a record by its own vector")
        except Exception as exc:
            problems.append(f"the vector index fails to answer ({_short(exc)})")
    return {"documents": len(ids), "problems": problems}


def _pending_ids(client: Any, name: str) -> list[str]:
    """Ids of the documents of a space that need their vector, sorted."""
    try:
        side = client.get_collection(name + PENDING_SUFFIX, embedding_function=None)
    except Exception:
        return []
    ids: list[str] = []
    while True:
        got = side.get(include=[], limit=PAGE_SIZE * 10, offset=len(ids))
        if not got["ids"]:
            return sorted(ids)
        ids += got["ids"]


def _finish_interrupted_rebuilds(client: Any) -> None:
    """A repair killed mid-way leaves `<name>-rebuild` and/or `<name>-old`: finish the swap
    where the copy is complete, else drop the copy (the original holds every record, and
    the vectors read back wait in `<store>/repair/` for the repair to run again)."""
    names = {c.name for c in client.list_collections()}
    for old_name in [n for n in names if n.endswith(OLD_SUFFIX)]:
        name = old_name[: -len(OLD_SUFFIX)]
        if name not in names and name + REBUILD_SUFFIX in names:  # between steps 1 and 2
            client.get_collection(name + REBUILD_SUFFIX, embedding_function=None).modify(name=name)
            names = (names - {name + REBUILD_SUFFIX}) | {name}
        if name in names:  # the copy is in place: the original can go
            client.delete_collection(old_name)
    for temp_name in [n for n in names if n.endswith(REBUILD_SUFFIX)]:
        name = temp_name[: -len(REBUILD_SUFFIX)]
        if name in names:  # died while copying: the original is still whole
            client.delete_collection(temp_name)
        else:  # an older repair died between delete and rename: the copy is complete
            client.get_collection(temp_name, embedding_function=None).modify(name=name)


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__


if __name__ == "__main__":
    print(json.dumps(_run_step(sys.argv[1], sys.argv[2], sys.argv[3] if sys.argv[3:] else None)))
