"""The store: one Chroma database, one collection per embedding space.

Everything that touches Chroma lives here, so that the rest of embedlab deals in
documents, spaces and float32 arrays, and Chroma's quirks are handled once:
- always pass embeddings explicitly (the default embedding function can download a model);
- `get` returns float64 built from Python lists, so reads are paged and cast to float32;
- the embedded client is not process-safe, so a local store is guarded by a file lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import itertools
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload
from urllib.parse import urlparse

import numpy as np

from ..errors import StoreBusy, StoreDamaged, StoreError

if TYPE_CHECKING:
    from .artifacts import Artifacts
    from .chroma_child import PrivateChroma
from .chroma_calls import _first_line, _retry_busy, not_found
from .documents import Document
from .keys import Space
from .layout import (
    CHROMA_DIR,
    PAGE_SIZE,
    PERSIST_NOW_THRESHOLD,
    SYNC_THRESHOLD,
    chroma_settings,
)

STORE_FORMAT = 1
log = logging.getLogger("embedlab.store")
MARKER_FILE = "embedlab.json"
LOCK_FILE = ".embedlab.lock"
WRITE_DELETE_CHUNK = 1000
SERVICE_FILE = ".embedlab-service.json"  # written by `embedlab serve` while it holds the store
LOCK_POLL_S = 0.1
FILTER_CHUNK = 500  # values per `$in` filter / ids per lookup
HTTP_PAGE_SIZE = 100  # vectors per `get` from a Chroma server (see SpaceCollection.load)
# Metadata key: when embedlab last wrote the document (time.time() of the writing process).
# `SpaceCollection.all_metadata` reads again only what was written since its last read.
WRITTEN = "written"
# Where other processes write the same collection (a Chroma server shared by replicas), a
# write stamped before a read can land after it: re-read that much further back (clock
# skew between machines plus one write call's length; docs/update.md).
OTHER_WRITERS_MARGIN_S = 300.0
SOLE_WRITER_MARGIN_S = 2.0  # this process writes alone (and its stamps never go back)
# Over a shared server, everything is read again this often anyway: a writer whose clock
# is off by more than the margin, or one that stamps nothing (an older embedlab, or
# Chroma's own client), is caught up with at the latest then.
FULL_METADATA_READ_S = 600.0
_stamp_lock = threading.Lock()
_last_stamp = 0.0


def write_stamp() -> float:
    """time.time(), never less than a stamp this process gave before (a clock stepped
    back would otherwise stamp writes earlier than a read that came before them)."""
    global _last_stamp
    with _stamp_lock:
        _last_stamp = max(time.time(), _last_stamp)
        return _last_stamp


# Chroma's embedded upsert holds the GIL for its whole HNSW insert (~17 ms per 3072-dim
# document into 11,314 here): every other thread of the process stops meanwhile. A
# service writes in slices of this many floats with a pause between (share_writes).
_WRITE_SHARING: dict[str, Any] = {"floats": 0, "pause_s": 0.0, "waiting": lambda: True}


def share_writes(
    floats_per_call: int, pause_s: float, waiting: Callable[[], bool] | None = None
) -> None:
    """Make every later write of this process slice its upserts (about `floats_per_call`
    numbers each) and sleep `pause_s` between slices, so request threads get the GIL
    while an ingest writes; only while `waiting()` says someone waits, when given.
    0 floats: one call per write (the CLI's default)."""
    _WRITE_SHARING.update(floats=int(floats_per_call), pause_s=float(pause_s))
    _WRITE_SHARING["waiting"] = waiting or (lambda: True)


class Store:
    """A handle on an embedlab store, embedded (a folder) or a Chroma server (a URL)."""

    def __init__(self, client: Any, location: str, path: Path | None, lock_fd: int | None):
        self._client = client
        self.location = location
        self.path = path
        self._lock_fd = lock_fd
        self._connect_lock = threading.Lock()
        self._closed = False
        self._index_checked: set[str] = set()
        self._damaged: dict[str, tuple[str, str]] = {}  # folder: (its files, the problem)
        self._collections: dict[str, tuple[Any, SpaceCollection]] = {}  # by name, per client
        self._artifacts: Artifacts | None = None
        self._artifacts_client: Any = None
        self.own_server = False  # serve the folder from a private `chroma run` child
        self._check_lock = threading.Lock()  # one check (and heal) of an index at a time
        self._handles_lock = threading.Lock()
        self._private: PrivateChroma | None = None

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open_local(
        cls,
        path: str | os.PathLike[str],
        create: bool = False,
        connect: bool = True,
        wait: float = 0.0,
        own_server: bool = False,
    ) -> Store:
        """Open (or with `create`, initialise) the store in folder `path`, exclusively.

        Chroma's embedded client is not process-safe, so a second process waits up to
        `wait` seconds for the first to finish, then gets StoreBusy. `connect=False`
        takes the lock without starting Chroma (repair works on the store from child
        processes). `own_server=True` runs Chroma in a private `chroma run` child over
        the folder (store/chroma_child.py: its writes then never hold this process's
        GIL; what a service wants) once every index has passed its check.
        """
        root = Path(path).absolute()  # resolved once, against the caller's folder
        _check_local_root(root, create)
        lock_fd = _acquire_lock(root, wait)
        store = cls(None, str(path), root, lock_fd)
        store.own_server = own_server
        if connect:
            try:
                store.connect()
            except StoreError:
                store.close()
                raise
        return store

    def connect(self) -> None:
        """Start the embedded Chroma client (a no-op when it runs already)."""
        with self._connect_lock:
            if self._closed:
                raise StoreError(f"the store {self.location} is closed; open it again")
            if self._client is not None or self.path is None:
                return
            try:
                self._client = embedded_client(self.path / CHROMA_DIR)
            except Exception as exc:  # Chroma raises many types; the user needs one line.
                raise StoreError(f"cannot open the Chroma database in {self.path}: {exc}") from exc
            if self.own_server:
                self._start_private_server()

    def _start_private_server(self) -> None:
        """Check (and heal) every space's index with the embedded client, then hand the
        folder to a private `chroma run` child. A space whose index is damaged would
        crash that server as it loads: then Chroma stays in this process, where the
        damaged space is refused with the way out and the others are served."""
        from .chroma_child import PrivateChroma
        from .index_files import index_problem, vector_segment_folders

        assert self.path is not None and self._client is not None
        for space in self.spaces():
            try:
                self.collection(space)
            except StoreDamaged as exc:
                log.warning("embedlab: Chroma stays in this process: %s", exc)
                return
        for col in self._client.list_collections():  # side collections too (never healed)
            for folder in vector_segment_folders(self.path / CHROMA_DIR, col.name):
                problem = index_problem(folder)
                if problem is not None:
                    log.warning(
                        "embedlab: Chroma stays in this process: %s: %s (run `embedlab "
                        "repair`)", col.name, problem,
                    )  # fmt: skip
                    return
        self._client.close()
        self._client = None
        self._collections.clear()
        self._artifacts = None
        assert self._lock_fd is not None
        private = PrivateChroma(self.path / CHROMA_DIR, self._lock_fd)
        try:
            self._client = private.connect()
        except StoreError:
            private.stop()
            raise
        self._private = private

    @property
    def embedded(self) -> bool:
        """Chroma runs inside this process (its index files are this process's to check)."""
        return self.path is not None and self._private is None

    def disconnect(self) -> None:
        """Stop the embedded client but keep the lock (repair reads from child processes)."""
        with self._connect_lock:
            if self._client is not None and self.path is not None:
                self._client.close()
                self._client = None
            self._stop_private_server()

    def _stop_private_server(self) -> None:
        if self._private is not None:
            self._private.stop()
            self._private = None
            self._collections.clear()
            self._artifacts = None
            self._index_checked.clear()  # what the child wrote is checked on the next open

    @classmethod
    def open_server(cls, url: str) -> Store:
        """Connect to a running `chroma run` server."""
        parsed = urlparse(url if "://" in url else f"http://{url}")
        if not parsed.hostname:
            raise StoreError(f"--chroma-url {url!r} is not a URL; use e.g. http://127.0.0.1:8000")
        port = parsed.port or (443 if parsed.scheme == "https" else 8000)
        try:
            import chromadb

            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=port,
                ssl=parsed.scheme == "https",
                settings=chroma_settings(),
            )
            client.heartbeat()
        except Exception as exc:
            raise StoreError(
                f"the Chroma server at {url} does not answer ({type(exc).__name__}); "
                f"start one with `chroma run --path DIR --host {parsed.hostname} --port {port}`"
            ) from exc
        return cls(client, url, None, None)

    def close(self) -> None:
        """Stop Chroma, then release the lock.

        Chroma shares one system per path within a process; without closing it, a
        later open in this process would reuse index state that another process has
        since changed (and fail with "Error finding id").
        """
        with self._connect_lock:
            self._closed = True
            if self._client is not None:
                self._client.close()
                self._client = None
            self._stop_private_server()  # before the lock: nothing writes the folder after
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def closed(self) -> bool:
        """True once close() ran: background threads (the batch poller) stop quietly."""
        return self._closed

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def client(self) -> Any:
        client = self._client
        if client is None:
            self.connect()
            client = self._client
        if client is None:
            raise StoreError(f"the store {self.location} is closed; open it again")
        return client

    @property
    def artifacts(self) -> Artifacts:
        """Stored analyses and map caches, beside the vectors."""
        from .artifacts import Artifacts

        client = self.client
        if self._artifacts is None or self._artifacts_client is not client:
            # one handle per client: it keeps its collection instead of looking it up per call
            self._artifacts, self._artifacts_client = Artifacts(client), client
        return self._artifacts

    # -- spaces ----------------------------------------------------------------------------

    def spaces(self) -> list[Space]:
        """Every embedding space in this store, sorted for stable output."""
        found = []
        for col in self.client.list_collections():
            space = space_of(col)
            if space is not None:
                found.append(space)
        return sorted(found, key=lambda s: (s.provider, s.model, s.task_type, s.dims))

    @overload
    def collection(self, space: Space, create: Literal[True]) -> SpaceCollection: ...
    @overload
    def collection(self, space: Space, create: bool = False) -> SpaceCollection | None: ...
    def collection(self, space: Space, create: bool = False) -> SpaceCollection | None:
        """The collection holding `space`, or None when it does not exist and not `create`."""
        name = space.collection_name
        client = self.client
        held = self._collections.get(name)
        if held is not None and held[0] is client:  # a long-running service asks often
            return held[1]
        self._check_no_repair_pending(space)
        if create:
            col = client.get_or_create_collection(
                name,
                configuration={"hnsw": {"space": "cosine", "sync_threshold": SYNC_THRESHOLD}},
                metadata=_space_metadata(space),
                embedding_function=None,
            )
        else:
            try:
                col = client.get_collection(name, embedding_function=None)
            except Exception as exc:
                if not_found(exc):
                    return None
                # Unknown is not absent: reading it as "nothing stored" would pay again.
                raise StoreError(
                    f"cannot read {space.describe()} from the store ({_first_line(exc)}); "
                    "nothing was changed, try again"
                ) from exc
        _check_collection_space(col, space)
        if self.embedded and name not in self._index_checked:
            with self._check_lock:  # two threads never heal one index at once
                if name not in self._index_checked and self._check_index_files(space):
                    col = client.get_collection(name, embedding_function=None)  # healed
        found = SpaceCollection(
            _DamageGuard(col, space),
            space,
            client,
            self.embedded,
            sole_writer=self.path is not None,
        )
        with self._handles_lock:  # one handle per collection: its writes in flight are
            held = self._collections.get(name)  # all there for its metadata reads
            if held is not None and held[0] is client:
                return held[1]
            self._collections[name] = (client, found)
        return found

    def catalogue_count(self, space: Space) -> int:
        """Documents of a space without loading its index (a damaged one would crash)."""
        from .index_files import record_count

        if self.path is None:
            return self.client.get_collection(space.collection_name).count()
        return record_count(self.path / CHROMA_DIR, space.collection_name)

    def _check_no_repair_pending(self, space: Space) -> None:
        """Refuse a space whose repair was interrupted: writing to it, or making a new one
        under its name, would mix with records the next repair puts back."""
        name = space.collection_name
        interrupted = self.path is not None and (self.path / "repair" / f"{name}.npz").is_file()
        if not interrupted:
            names = {c.name for c in self.client.list_collections()}
            interrupted = f"{name}-rebuild" in names or f"{name}-old" in names
        if interrupted:
            raise damaged(space, "a repair of it did not finish")

    def forget_collection(self, name: str) -> None:
        """Drop the handle on a deleted collection (a new one may take its name)."""
        self._collections.pop(name, None)
        self._index_checked.discard(name)

    def _check_index_files(self, space: Space, heal: bool = True) -> bool:
        """Refuse, with the way out, an index whose files would crash Chroma on load; heal
        one that a process killed mid-persist left torn (rebuild.heal_torn_index), when
        every vector is still on disk. True when it healed (the collection was rebuilt).

        Checked once per process, and not at all when the files are those a check passed
        on before (same sizes and times): an unchanged 100,000-vector index costs nothing.
        """
        from .index_files import (
            checked_before,
            index_problem,
            remember_checked,
            signature_of,
            vector_segment_folders,
        )

        assert self.path is not None
        chroma_dir = self.path / CHROMA_DIR
        healed = False
        for folder in vector_segment_folders(chroma_dir, space.collection_name):
            if checked_before(self.path, folder):
                continue
            signature = json.dumps(signature_of(folder))
            known = self._damaged.get(folder.name)
            problem = known[1] if known and known[0] == signature else index_problem(folder)
            if problem is not None and heal and not (known and known[0] == signature):
                from .rebuild import heal_torn_index

                try:
                    done = heal_torn_index(self.path, self.client, space.collection_name)
                except Exception as exc:  # noqa: BLE001 - a failed heal is still damage
                    self._damaged[folder.name] = (signature, problem)
                    raise damaged(space, f"{problem}; healing it failed ({exc})") from exc
                if done is not None:
                    self._damaged.pop(folder.name, None)
                    healed = True
                    break
            if problem is not None:
                self._damaged[folder.name] = (signature, problem)  # not read again per request
                raise damaged(space, problem)
            remember_checked(self.path, folder)
        if healed:  # the rebuilt index is checked like any other
            return self._check_index_files(space, heal=False) or True
        self._index_checked.add(space.collection_name)
        return healed

    def disk_bytes(self) -> int | None:
        """Bytes on disk for an embedded store; None for a server (not ours to measure)."""
        if self.path is None:
            return None
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())


class SpaceCollection:
    """The documents and vectors of one space, with the lookups the cache needs."""

    def __init__(
        self,
        collection: Any,
        space: Space,
        client: Any = None,
        embedded: bool = True,
        sole_writer: bool = False,
    ):
        self._col = collection
        self.space = space
        self._client = client
        self._embedded = embedded
        self._count: tuple[float, int] | None = None
        # a local store is locked to this process: every write to it passes through here
        self._sole_writer = sole_writer
        self._writes_lock = threading.Lock()
        self._writing: dict[int, float] = {}  # writes in flight: token -> their stamp
        self._tokens = itertools.count()
        self._known_lock = threading.Lock()
        self._known: tuple[float, dict[str, dict[str, Any]]] | None = None  # see all_metadata
        self._full_at = 0.0  # time.monotonic() of the last full metadata read

    def _write_started(self) -> tuple[int, float]:
        """A stamp for the metadata of a write about to run, registered as in flight."""
        with self._writes_lock:
            token, stamp = next(self._tokens), write_stamp()
            self._writing[token] = stamp
        return token, stamp

    def _write_ended(self, token: int) -> None:
        with self._writes_lock:
            self._writing.pop(token, None)

    @contextlib.contextmanager
    def _stamped_write(self) -> Iterator[float]:
        """The stamp of a write, registered as in flight while the block runs."""
        token, stamp = self._write_started()
        try:
            yield stamp
        finally:
            self._write_ended(token)

    def all_metadata(self) -> dict[str, dict[str, Any]]:
        """Every document's metadata by id (do not change the dicts: they are kept).

        The first call reads it all (~0.5 s at 11,314 documents: Chroma builds a dict per
        document); later calls read every id (~0.02 s) and the metadata of documents
        written since the last call only: each write stamps WRITTEN, and Chroma filters
        on it with its index. Ids not seen before are read by id whatever their stamp, so
        no new document is missed; a document rewritten in place is found by its stamp.
        On a local store this process is the only writer, its stamps never go back
        (`write_stamp`), and a write in flight when a read starts is read again next
        time, so nothing is missed. Over a Chroma server others write too: the read goes
        OTHER_WRITERS_MARGIN_S back, and all is read again every FULL_METADATA_READ_S."""
        with self._known_lock:
            started = write_stamp()
            with self._writes_lock:
                since = min([started, *self._writing.values()])
            stale = (
                not self._sole_writer and time.monotonic() - self._full_at > FULL_METADATA_READ_S
            )
            if self._known is None or stale:
                records = dict(self.iter_metadata())
                self._full_at = time.monotonic()
            else:
                last, known = self._known
                last -= SOLE_WRITER_MARGIN_S if self._sole_writer else OTHER_WRITERS_MARGIN_S
                ids_now = self.all_ids()
                # the ids first, then their metadata by id: pages by offset would skip rows
                # when a delete lands between two pages
                written = self._col.get(where={WRITTEN: {"$gte": last}}, include=[])["ids"]
                wanted = set(written).union(i for i in ids_now if i not in known)
                changed = self.metadata_by_id(sorted(wanted))
                records = {}
                for doc_id in ids_now:
                    meta = changed.get(doc_id) or known.get(doc_id)
                    if meta is not None:  # deleted since the ids were read: left out
                        records[doc_id] = meta
            self._known = (since, records)
            return records

    def all_ids(self) -> list[str]:
        """Every document's id, in one call (no metadata: ~0.02 s per 10,000; pages by
        offset could skip ids when a delete lands between two)."""
        return list(self._col.get(include=[])["ids"])

    def persist_index(self, doc_id: str) -> None:
        """Write the vector index to disk now, so the next process need not rebuild its tail.

        Chroma persists its HNSW index every `sync_threshold` writes (SYNC_THRESHOLD for
        our collections) and replays the writes since then on every open: up to ~0.3 s
        per command at 3072 dims. Dropping the threshold for one rewrite of an unchanged
        record makes Chroma persist the tail at the end of an ingest.
        """
        if not self._embedded:  # a server keeps its index in memory and persists it itself
            return
        got = self._col.get(ids=[doc_id], include=["embeddings", "metadatas", "documents"])
        if not got["ids"]:
            return
        with warnings.catch_warnings():  # Chroma flags collections without an embedding function
            warnings.filterwarnings(
                "ignore", "legacy embedding function config", DeprecationWarning
            )
            threshold = self._col.configuration["hnsw"]["sync_threshold"]
            if threshold == PERSIST_NOW_THRESHOLD:  # left behind by a process killed here
                threshold = SYNC_THRESHOLD
            self._col.modify(configuration={"hnsw": {"sync_threshold": PERSIST_NOW_THRESHOLD}})
            try:
                self._col.upsert(
                    ids=got["ids"],
                    embeddings=got["embeddings"],
                    metadatas=got["metadatas"],
                    documents=got["documents"],
                )
            finally:
                self._col.modify(configuration={"hnsw": {"sync_threshold": threshold}})

    # -- lookups for neighbours ------------------------------------------------------------

    def get_one(self, doc_id: str) -> tuple[np.ndarray, dict[str, Any]] | None:
        """A stored document's vector and metadata, or None."""
        got = self._col.get(ids=[doc_id], include=["embeddings", "metadatas"])
        if not got["ids"]:
            return None
        return np.asarray(got["embeddings"][0], dtype=np.float32), got["metadatas"][0]

    def nearest(
        self, vector: np.ndarray, n: int, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float, dict[str, Any], str]]:
        """(id, cosine similarity, metadata, text) of the `n` nearest, through Chroma's index."""
        got = self._col.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=n,
            where=where,
            include=["distances", "metadatas", "documents"],
        )
        return [
            (doc_id, 1.0 - float(distance), meta, text)
            for doc_id, distance, meta, text in zip(
                got["ids"][0], got["distances"][0], got["metadatas"][0], got["documents"][0]
            )
        ]

    # -- side collection: the query-embedding cache ----------------------------------------

    @overload
    def _side(self, kind: str, create: Literal[True]) -> Any: ...
    @overload
    def _side(self, kind: str, create: bool) -> Any | None: ...
    def _side(self, kind: str, create: bool) -> Any | None:
        name = f"{self._col.name}-{kind}"
        if create:
            return self._client.get_or_create_collection(
                name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embedlab_side": kind},
                embedding_function=None,
            )
        try:
            return self._client.get_collection(name, embedding_function=None)
        except Exception as exc:
            if not_found(exc):
                return None
            raise StoreError(f"cannot read {name} ({_first_line(exc)})") from exc

    def cached_query(self, text_hash: str) -> np.ndarray | None:
        """A free-text query's vector embedded earlier in this space, if any."""
        side = self._side("queries", create=False)
        if side is None:
            return None
        # another request may have made the collection a moment ago (TRANSIENT)
        read = functools.partial(side.get, ids=[text_hash], include=["embeddings"])
        got = _retry_busy(read, "read of the cached query vectors")
        if not got["ids"]:
            return None
        return np.asarray(got["embeddings"][0], dtype=np.float32)

    def save_query(self, text_hash: str, text: str, vector: np.ndarray) -> None:
        self._side("queries", create=True).upsert(
            ids=[text_hash], embeddings=np.asarray([vector], dtype=np.float32), documents=[text]
        )

    # -- side collection: documents whose vector repair could not read ---------------------

    def pending(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, text, metadata) of every document repair kept without its vector.

        They live beside the space, not in it, so no search, analysis or cache lookup can
        ever meet a placeholder vector; the next ingest of the space embeds them.
        """
        side = self._side("pending", create=False)
        if side is None:
            return []
        found: list[tuple[str, str, dict[str, Any]]] = []
        while True:
            got = side.get(include=["documents", "metadatas"], limit=PAGE_SIZE, offset=len(found))
            if not got["ids"]:
                break
            found += list(zip(got["ids"], got["documents"], got["metadatas"]))
        # one that has its vector again (an ingest stopped before clearing it) is not
        # pending, whatever the side collection still says: never counted twice
        present = self.metadata_by_id([doc_id for doc_id, _text, _meta in found])
        return [record for record in found if record[0] not in present]

    def pending_count(self) -> int:
        return len(self.pending())

    def clear_pending(self, ids: Sequence[str]) -> None:
        """Forget pending documents (embedded again, or deleted)."""
        side = self._side("pending", create=False)
        if side is None or not ids:
            return
        for chunk in _chunks(list(ids), WRITE_DELETE_CHUNK):
            _retry_busy(functools.partial(side.delete, ids=chunk), "delete")

    def labels_and_sources(self) -> tuple[set[str], set[str]]:
        """Distinct labels and sources (one metadata pass), for resolving globs."""
        labels: set[str] = set()
        sources: set[str] = set()
        for _id, meta in self.iter_metadata():
            if "label" in meta:
                labels.add(meta["label"])
            sources.add(meta.get("source", ""))
        return labels, sources

    def count(self) -> int:
        return self._col.count()

    def count_cached(self, max_age_s: float = 1.0) -> int:
        """count(), trusted for `max_age_s` (a lookup only needs it to bound k)."""
        now = time.monotonic()
        if self._count is None or now - self._count[0] > max_age_s:
            self._count = (now, self._col.count())
        return self._count[1]

    def metadata_by_id(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Stored metadata of each of `ids` that is stored (missing ids are absent)."""
        found: dict[str, dict[str, Any]] = {}
        for chunk in _chunks(list(ids), FILTER_CHUNK):
            got = self._col.get(ids=chunk, include=["metadatas"])
            found.update(zip(got["ids"], got["metadatas"]))
        return found

    def relabel(self, docs: Sequence[Document], truncated: Sequence[bool]) -> None:
        """Rewrite the metadata (label, source) of stored documents; vectors untouched."""
        if docs:
            with self._stamped_write() as stamp:
                metadatas = [{**d.metadata(t), WRITTEN: stamp} for d, t in zip(docs, truncated)]
                _retry_busy(
                    lambda: self._col.update(ids=[d.id for d in docs], metadatas=metadatas),
                    "metadata update",
                )

    def vectors_by_hash(self, hashes: Iterable[str]) -> dict[str, np.ndarray]:
        """One stored vector for each of `hashes` that any document already has."""
        found: dict[str, np.ndarray] = {}
        for chunk in _chunks(sorted(set(hashes)), FILTER_CHUNK):
            got = self._col.get(
                where={"content_hash": {"$in": chunk}}, include=["metadatas", "embeddings"]
            )
            for meta, vector in zip(got["metadatas"], got["embeddings"]):
                found.setdefault(meta["content_hash"], np.asarray(vector, dtype=np.float32))
        return found

    def hashes_present(self, hashes: Iterable[str]) -> set[str]:
        """Which of `hashes` some stored document already has (metadata only, no vectors)."""
        present: set[str] = set()
        for chunk in _chunks(sorted(set(hashes)), FILTER_CHUNK):
            got = self._col.get(where={"content_hash": {"$in": chunk}}, include=["metadatas"])
            present.update(meta["content_hash"] for meta in got["metadatas"])
        return present

    def write(
        self, docs: Sequence[Document], vectors: np.ndarray, truncated: Sequence[bool]
    ) -> None:
        """Insert or replace `docs` with their vectors in one Chroma call (in slices,
        with pauses, where `share_writes` asked for it)."""
        if not docs:
            return
        self._count = None
        vectors = np.asarray(vectors, dtype=np.float32)
        waiting, small = _WRITE_SHARING["waiting"], len(docs)
        if _WRITE_SHARING["floats"] and self._embedded:  # a server's insert holds no GIL here
            small = max(1, _WRITE_SHARING["floats"] // max(1, vectors.shape[1]))
        start = 0
        while start < len(docs):
            # a slice while requests wait (then a pause), else up to 16 slices at once
            shared = small < len(docs) and waiting()
            part = slice(start, start + (small if shared else 16 * small))
            start = part.stop
            with self._stamped_write() as stamp:
                _retry_busy(
                    functools.partial(
                        self._col.upsert,
                        ids=[d.id for d in docs[part]],
                        embeddings=vectors[part],
                        documents=[d.text for d in docs[part]],
                        metadatas=[
                            {**d.metadata(t), WRITTEN: stamp}
                            for d, t in zip(docs[part], truncated[part])
                        ],
                    ),
                    "write",
                )
            if shared and start < len(docs):
                time.sleep(_WRITE_SHARING["pause_s"])  # the GIL is free meanwhile

    def delete(self, ids: Sequence[str]) -> None:
        """Remove documents (their vectors, texts and metadata) by id."""
        self._count = None
        for chunk in _chunks(list(ids), WRITE_DELETE_CHUNK):
            _retry_busy(functools.partial(self._col.delete, ids=chunk), "delete")
        self.clear_pending(ids)

    def load(
        self, ids: Sequence[str], with_text: bool = True, page_size: int | None = None
    ) -> tuple[np.ndarray, list[dict[str, Any]], list[str]]:
        """Vectors (float32, one row per id, in `ids` order), metadatas and texts.

        Chroma hands back float64 built from Python lists; fetching a page at a time
        into a preallocated float32 array keeps the peak near the final array's size.
        From a server, pages are smaller: each page's JSON is decoded in one call that
        holds the interpreter's lock (~0.7 s for 1,000 x 3072 floats), and a service's
        readers wait for it.
        """
        if page_size is None:
            page_size = PAGE_SIZE if self._embedded else HTTP_PAGE_SIZE
        vectors = np.empty((len(ids), self.space.dims), dtype=np.float32)
        metadatas: list[dict[str, Any]] = [{}] * len(ids)
        texts: list[str] = [""] * len(ids)
        row_of = {doc_id: row for row, doc_id in enumerate(ids)}
        include = ["embeddings", "metadatas"] + (["documents"] if with_text else [])
        for chunk in _chunks(list(ids), page_size):
            got = self._col.get(ids=chunk, include=include)
            rows = [row_of[doc_id] for doc_id in got["ids"]]
            if len(rows) != len(chunk):
                missing = sorted(set(chunk) - set(got["ids"]))[:3]
                raise StoreError(f"documents vanished while loading: {', '.join(missing)}")
            vectors[rows] = np.asarray(got["embeddings"], dtype=np.float32)
            for i, row in enumerate(rows):
                metadatas[row] = got["metadatas"][i]
                if with_text:
                    texts[row] = got["documents"][i]
        return vectors, metadatas, texts

    def records(self, ids: Sequence[str]) -> tuple[list[dict[str, Any]], list[str]]:
        """Metadatas and texts of `ids` (in `ids` order), without their vectors."""
        metadatas: list[dict[str, Any]] = [{}] * len(ids)
        texts: list[str] = [""] * len(ids)
        row_of = {doc_id: row for row, doc_id in enumerate(ids)}
        for chunk in _chunks(list(ids), PAGE_SIZE):
            got = self._col.get(ids=chunk, include=["metadatas", "documents"])
            for doc_id, meta, text in zip(got["ids"], got["metadatas"], got["documents"]):
                metadatas[row_of[doc_id]] = meta
                texts[row_of[doc_id]] = text
        return metadatas, texts

    def iter_metadata(self, page_size: int = PAGE_SIZE) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, metadata) for every document, paged so memory stays flat."""
        offset = 0
        while True:
            got = self._col.get(include=["metadatas"], limit=page_size, offset=offset)
            if not got["ids"]:
                return
            yield from zip(got["ids"], got["metadatas"])
            offset += len(got["ids"])


# -- helpers -------------------------------------------------------------------------------

# What Chroma says when the index it loads is garbled (seen: "Failed to apply logs to the
# hnsw segment writer", "Error loading hnsw index"): damage, not a bug. ("Error finding
# id" is not: it is also Chroma's word for stale state in one process.)
DAMAGE_PATTERN = re.compile(
    r"hnsw (index|segment)|apply logs|segment (reader|writer)|loading hnsw", re.I
)


def damaged(space: Space, problem: str) -> StoreDamaged:
    """The one line for a damaged space, with the way out."""
    return StoreDamaged(
        f"the vector index of {space.describe()} is damaged ({problem}); rebuild it with "
        "`embedlab repair` (in Python: lab.repair(check=False)); every text is kept, and "
        "vectors that cannot be read are embedded again by the next ingest"
    )


def is_damage(exc: BaseException) -> bool:
    """Chroma's own failure on a damaged index segment (any other error is not damage)."""
    return isinstance(exc, StoreDamaged) or bool(DAMAGE_PATTERN.search(str(exc)))


class _DamageGuard:
    """A Chroma collection whose failures on a damaged index become StoreDamaged.

    Every call a SpaceCollection makes goes through here, so no command shows Chroma's
    traceback for a garbled segment: it says, in one line, to run `embedlab repair`.
    """

    def __init__(self, collection: Any, space: Space):
        self._collection = collection
        self._space = space

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._collection, name)
        if not callable(attr):
            return attr

        def guarded(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except StoreDamaged:
                raise
            except Exception as exc:
                if is_damage(exc):
                    raise damaged(self._space, _first_line(exc)) from None
                raise

        return guarded


def _check_local_root(root: Path, create: bool) -> None:
    marker = root / MARKER_FILE
    if root.exists() and not root.is_dir():
        raise StoreError(f"store path {root} is a file; give a folder (new or an embedlab store)")
    if marker.is_file():
        try:
            fmt = json.loads(marker.read_text()).get("format")
        except (OSError, ValueError, AttributeError) as exc:
            raise StoreError(
                f"{marker} is damaged ({exc}); restore it or use another --store"
            ) from None
        if fmt != STORE_FORMAT:
            raise StoreError(
                f"{root} was written by another embedlab version (store format {fmt}, "
                f"this one reads {STORE_FORMAT}); upgrade embedlab or use another --store"
            )
        return
    if root.is_dir() and any(root.iterdir()):
        raise StoreError(
            f"{root} is not an embedlab store (no {MARKER_FILE}) and not empty; "
            "pass --store with a new or empty folder"
        )
    if not create:
        raise StoreError(f"no embedlab store at {root}; run `embedlab --store {root} ingest ...`")
    root.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"format": STORE_FORMAT}) + "\n")


def _acquire_lock(root: Path, wait: float = 0.0) -> int:
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                waited = f" after waiting {wait:g} s" if wait else ""
                url = served_at(root, holder)
                if url:
                    raise StoreBusy(
                        f"store {root} is held by `embedlab serve` at {url} (pid {holder}); "
                        f"use it with --server {url}"
                    ) from None
                raise StoreBusy(
                    f"store {root} is busy{waited}: another embedlab process (pid {holder}) "
                    "is using it; wait for it (--wait SECONDS), or serve the store with "
                    "`chroma run` and use --chroma-url"
                ) from None
            time.sleep(LOCK_POLL_S)
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def served_at(root: Path, pid: str) -> str | None:
    """The URL of the `embedlab serve` process `pid` holding the store, if it is one."""
    try:
        found = json.loads((root / SERVICE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found.get("url") if str(found.get("pid")) == pid else None


def embedded_client(chroma_dir: str | os.PathLike[str]) -> Any:
    """Chroma's embedded client on `chroma_dir`, telemetry off."""
    import chromadb

    return chromadb.PersistentClient(path=str(chroma_dir), settings=chroma_settings())


def space_of(col: Any) -> Space | None:
    """The space an embedlab collection holds; None for side collections, others' ones,
    and a copy mid-repair (same metadata, another name)."""
    meta = col.metadata or {}
    if "embedlab_format" not in meta:
        return None
    space = _space_from_metadata(meta)
    return space if col.name == space.collection_name else None


def _space_metadata(space: Space) -> dict[str, str | int]:
    return {
        "embedlab_format": STORE_FORMAT,
        **space.to_dict(),
    }


def _space_from_metadata(meta: dict[str, Any]) -> Space:
    return Space.from_dict(meta)


def _check_collection_space(col: Any, space: Space) -> None:
    """Refuse a same-named collection that holds another space or another store format."""
    meta = col.metadata or {}
    if meta.get("embedlab_format") != STORE_FORMAT or _space_from_metadata(meta) != space:
        raise StoreError(
            f"collection {col.name} does not hold {space.describe()} in store format "
            f"{STORE_FORMAT} (found {meta}); use another --store"
        )


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
