"""Records of Batch API work: what was sent to a provider's batch endpoint, and who waits.

A batch job is paid for once, when the provider runs it, so the store has to know about
a job *before* it exists and for as long as it runs (up to 48 h, across restarts):
- `BatchRecord` (kind "batch", a head only): one provider job, from the intent (a key,
  no provider name yet) through its life to "collected" or released;
- its texts (kind "batch-texts", a payload): the content hashes it carries, in the
  order sent, and which were cut to the model's input limit;
- waiting documents (kind "batch-docs", a payload per submission): the documents that
  get a vector when one of those hashes comes back (an ingest's own documents, and
  those of a later ingest whose texts were already in a pending job).

Everything lives in the artifacts collection beside the vectors, like the cost ledger,
so a CLI, a notebook and a service on the same store see the same pending jobs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from .artifacts import Artifacts
from .keys import Space

BATCH = "batch"
BATCH_TEXTS = "batch-texts"
BATCH_DOCS = "batch-docs"

# our states; the provider's JOB_STATE_* are mapped onto the middle ones
INTENT = "intent"  # recorded, not (known to be) created at the provider
PENDING = "pending"
RUNNING = "running"
SUCCEEDED = "succeeded"  # finished at the provider, vectors not written yet
COLLECTED = "collected"  # vectors written into the store
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"
RELEASED = "released"  # an intent no provider job carries: it was never created
OPEN = (INTENT, PENDING, RUNNING, SUCCEEDED)
ENDED_WITHOUT_VECTORS = (FAILED, CANCELLED, EXPIRED, RELEASED)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class BatchRecord:
    """One provider batch job (or the intent to create one), as the store keeps it."""

    key: str  # ours, made before the job exists; the job's display name carries it
    space: dict[str, Any]  # provider, model, task_type, dims
    space_collection: str
    submission: str  # the batch-docs record of the ingest that made it
    display_name: str
    texts: int
    chars: int
    mode: str  # "inline" or "file"
    created: str = field(default_factory=now_iso)
    name: str | None = None  # the provider's job name ("batches/..."), once it exists
    state: str = INTENT
    provider_state: str | None = None  # the last JOB_STATE_* seen
    input_file: str | None = None
    finished: str | None = None
    written: int = 0  # documents given a vector when collected
    vectors: int = 0  # texts that came back with a vector
    failed_lines: int = 0  # texts that came back with an error (released)
    note: str = ""  # what happened, in one line

    @property
    def open(self) -> bool:
        return self.state in OPEN

    @property
    def job(self) -> str:
        """How a user names it: the provider's name, or our key before there is one."""
        return self.name or self.key

    def space_value(self) -> Space:
        s = self.space
        return Space.from_dict(s)

    def to_head(self) -> dict[str, Any]:
        head = asdict(self)
        head["id"] = self.key
        return head

    @classmethod
    def from_head(cls, head: dict[str, Any]) -> BatchRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in head.items() if k in names})


@dataclass
class WaitingDocument:
    """A document that gets its vector when its text's batch job is collected.

    `previous` is the hash its id held in the store when it was submitted (None: a new
    id): a vector is written only while the id still holds that (or this) text, so a
    later ingest of another text under the same id is never overwritten by old work.
    """

    id: str
    text: str
    source: str
    label: str | None
    content_hash: str
    previous: str | None = None


class BatchRecords:
    """The batch records of one store (reads and writes go through its artifacts)."""

    def __init__(self, artifacts: Artifacts):
        self._artifacts = artifacts

    # -- jobs ------------------------------------------------------------------------------

    def add_intent(
        self,
        record: BatchRecord,
        hashes: list[str],
        truncated: list[bool],
        chars: list[int] | None = None,
    ) -> None:
        """Record a job before it is created: its texts first, then its head."""
        data = {"hashes": hashes, "truncated": truncated, "chars": chars or []}
        payload = json.dumps(data).encode()
        self._artifacts.put(BATCH_TEXTS, record.key, {"created": record.created}, payload)
        self.save(record)

    def save(self, record: BatchRecord) -> None:
        self._artifacts.put_heads(BATCH, [record.to_head()])

    def all(self, space_collection: str | None = None) -> list[BatchRecord]:
        """Every job, newest first (of one space when given)."""
        heads = self._artifacts.heads(BATCH, space_collection)
        return [BatchRecord.from_head(h) for h in heads]

    def find(self, job: str) -> BatchRecord | None:
        """A job by its provider name (with or without "batches/") or by our key."""
        for record in self.all():
            if job in (record.key, record.name) or (
                record.name and record.name.split("/")[-1] == job
            ):
                return record
        return None

    def hashes(self, key: str) -> tuple[list[str], list[bool]]:
        """(content hashes in the order sent, cut-to-fit flags) of job `key`."""
        found = self._artifacts.get(BATCH_TEXTS, key)
        if found is None:
            return [], []
        data = json.loads(found[1])
        return list(data["hashes"]), list(data["truncated"])

    def chars(self, key: str) -> list[int]:
        """Characters sent per text of job `key` (in the order sent; [] when unknown)."""
        found = self._artifacts.get(BATCH_TEXTS, key)
        return list(json.loads(found[1]).get("chars") or []) if found is not None else []

    def pending_hashes(self, space_collection: str) -> set[str]:
        """Hashes carried by the open jobs of a space: not to be submitted again."""
        return set(self.open_jobs_by_hash(space_collection))

    def open_jobs_by_hash(self, space_collection: str) -> dict[str, str]:
        """content hash -> the open job (name, or key before it has one) carrying it."""
        found: dict[str, str] = {}
        for record in self.all(space_collection):
            if record.open:
                for content_hash in self.hashes(record.key)[0]:
                    found[content_hash] = record.job
        return found

    # -- waiting documents -----------------------------------------------------------------

    def add_waiting(
        self, submission: str, space: Space, documents: Iterable[WaitingDocument]
    ) -> int:
        docs = [asdict(d) for d in documents]
        if docs:
            head = {
                "id": submission,
                "space_collection": space.collection_name,
                "created": now_iso(),
                "documents": len(docs),
            }
            self._artifacts.put(BATCH_DOCS, submission, head, json.dumps(docs).encode())
        return len(docs)

    def waiting(self, space_collection: str) -> dict[str, list[WaitingDocument]]:
        """The documents still waiting for a vector, by submission."""
        found: dict[str, list[WaitingDocument]] = {}
        for head in self._artifacts.heads(BATCH_DOCS, space_collection):
            got = self._artifacts.get(BATCH_DOCS, head["id"])
            if got is not None:
                found[head["id"]] = [WaitingDocument(**d) for d in json.loads(got[1])]
        return found

    def set_waiting(self, submission: str, space: Space, documents: list[WaitingDocument]) -> None:
        """Keep only `documents` waiting in `submission` (none left: the record goes)."""
        if documents:
            self.add_waiting(submission, space, documents)
        else:
            self._artifacts.delete(BATCH_DOCS, submission)
