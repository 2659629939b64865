"""A fake Gemini embedding endpoint on 127.0.0.1 that the real google-genai SDK talks to.

It answers `POST /{version}/models/{model}:batchEmbedContents` like the real API:
deterministic vectors per text (unit length at 3072 dims, not unit when truncated,
as gemini-embedding-001 does), and records every request so tests can assert counts,
batch sizes, task type and dimensions. Faults are scripted per request: an HTTP
status (with Retry-After), a delay, or a malformed reply.

Vectors carry topic structure when a text contains `topic:<name>`: the vector is
the topic's direction plus per-text noise, so clustering tests have groups to find.

It also answers `POST /{version}/models/{model}:generateContent` (cluster names): the
reply is `fake_name(prompt)`, quoted as a chatty model would, recorded in
`generations`; `generate_faults` scripts faults for those requests the same way.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

FULL_DIMS = 3072
VALID_KEY = "test-key-123"


@dataclass
class Fault:
    """What to do to one request instead of (or before) answering it normally."""

    status: int | None = None  # answer with this HTTP status
    retry_after: float | None = None
    delay: float = 0.0  # seconds to wait before answering
    body: str | None = None  # raw reply body (malformed JSON, say)
    drop_vectors: int = 0  # answer with this many vectors too few
    wrong_dims: bool = False
    reset: bool = False  # close the connection without answering

    @property
    def kind(self) -> str | None:
        """A short name for reports ("429", "slow", "non-JSON" ...); None for no fault."""
        if self.status is not None:
            return str(self.status)
        if self.body is not None:
            return "bad JSON" if self.body.startswith("{") else "non-JSON"
        for name, on in (
            ("reset", self.reset),
            ("too few vectors", self.drop_vectors),
            ("wrong dims", self.wrong_dims),
            ("slow", self.delay),
        ):
            if on:
                return name
        return None


@dataclass
class RecordedRequest:
    model: str
    texts: list[str]
    task_types: list[str]
    dims: list[int | None]
    api_key: str | None
    status: int = 200
    fault: str | None = None  # Fault.kind injected into this request

    @property
    def delivered(self) -> bool:
        """Answered with good vectors (a slow answer may still have reached no one)."""
        return self.status == 200 and self.fault is None


@dataclass
class RecordedGeneration:
    model: str
    prompt: str
    api_key: str | None
    status: int = 200
    fault: str | None = None


GENERATION_MODELS = {"gemini-2.5-flash-lite", "gemini-2.5-flash"}


def fake_name(prompt: str) -> str:
    """The name the fake model gives a prompt: its first term and a digest of the prompt
    (the same prompt always gets the same name; another prompt, another name)."""
    terms = next(
        (line.split(":", 1)[1] for line in prompt.splitlines() if line.startswith("Terms:")), ""
    )
    first = terms.split(",")[0].strip() or "untitled"
    return f"{first.title()} talk {hashlib.sha256(prompt.encode()).hexdigest()[:6]}"


def _dumps(reply: dict) -> bytes:
    """The reply as JSON: orjson (Chroma's dependency) writes 100 x 3072 floats ~10x
    faster than json, the same numbers, so a bench's "provider at 0 ms" is near that."""
    try:
        import orjson
    except ImportError:
        return json.dumps(reply).encode()
    return orjson.dumps(reply)


def fake_vector(text: str, dims: int = FULL_DIMS) -> np.ndarray:
    """Deterministic per text; texts sharing `topic:X` share a dominant direction."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).normal(size=FULL_DIMS)
    vector /= np.linalg.norm(vector)
    if "topic:" in text:
        topic = text.split("topic:", 1)[1].split()[0]
        topic_seed = int.from_bytes(hashlib.sha256(topic.encode()).digest()[:8], "little")
        direction = np.random.default_rng(topic_seed).normal(size=FULL_DIMS)
        vector = 0.5 * vector + direction / np.linalg.norm(direction)
    vector /= np.linalg.norm(vector)
    return vector[:dims]


# -- the Batch API and the Files API (asyncBatchEmbedContent, batches, files) -------------

BATCH_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
BATCH_FINAL = {"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"}


@dataclass
class FakeBatch:
    """One batch job as the fake holds it; `requests` are the lines it was given."""

    name: str  # "batches/<id>"
    display_name: str
    model: str
    source: str  # "inline" or "file"
    requests: list[dict]  # {"key", "text", "taskType", "outputDimensionality"}
    input_file: str | None = None
    state: str = "PENDING"  # without the BATCH_STATE_ prefix
    script: list[str] = field(default_factory=list)  # states the next gets step through
    gets: int = 0
    output_file: str | None = None
    failed_lines: int = 0

    @property
    def texts(self) -> list[str]:
        return [r["text"] for r in self.requests]


class FakeBatchAPI:
    """The Batch and Files endpoints the google-genai SDK uses for embedding batches.

    - `POST /{v}/models/{m}:asyncBatchEmbedContent` (inlined requests or an uploaded
      JSONL file) creates a job; every accepted create is in `batch_creates`.
    - `GET /{v}/batches/{id}`, `GET /{v}/batches` (paged), `POST .../{id}:cancel`.
    - `POST /upload/{v}/files` starts a resumable upload and answers an
      `X-Goog-Upload-URL` on this server; the chunks go there (the SDK sends them without
      the key: `upload_chunk_keys` records what they carried). `GET /{v}/files/{id}:download`.
    - `GET /{v}/models/{m}` (the key and model check a client may make first).

    A job stays PENDING until a test moves it: `finish_batches(state)`, or a per-job
    `script` of states that successive gets step through (`batch_script` is the script
    new jobs get). A SUCCEEDED job answers every line with `fake_vector`, except the
    lines whose text is in `failing_texts` (a per-line error). FAILED jobs carry a
    top-level `error` (which the SDK drops), as the real API does.
    """

    def _init_batches(self) -> None:
        self.batches: dict[str, FakeBatch] = {}
        self.batch_creates: list[FakeBatch] = []
        self.batch_gets = 0
        self.batch_lists = 0
        self.batch_cancels: list[str] = []
        self.batch_script: list[str] = []
        self.failing_texts: set[str] = set()
        self.files: dict[str, bytes] = {}
        self.uploads: dict[str, dict] = {}
        self.upload_chunk_keys: list[str | None] = []
        self.downloads = 0
        self.model_gets = 0
        self.list_page_size = 3  # small pages, so paging is exercised
        self.create_fault: Fault | None = None  # the next create answers this instead
        self._batch_seq = 0

    # -- scripting ------------------------------------------------------------------------

    def finish_batches(self, state: str = "SUCCEEDED", names: list[str] | None = None) -> None:
        """Move every unfinished job (or those named) to `state`."""
        with self._lock:
            for batch in self.batches.values():
                if (names is None or batch.name in names) and batch.state not in BATCH_FINAL:
                    self._set_state(batch, state)

    def batch_texts(self) -> list[str]:
        """Every text sent in a created batch job, in order."""
        return [t for b in self.batch_creates for t in b.texts]

    def _set_state(self, batch: FakeBatch, state: str) -> None:
        batch.state = state
        if state == "SUCCEEDED" and batch.source == "file" and batch.output_file is None:
            lines = []
            for request in batch.requests:
                line: dict = {"key": request["key"]}
                line.update(self._line_result(request))
                lines.append(json.dumps(line))
            batch.output_file = f"files/batch-output-{batch.name.split('/')[-1]}"
            self.files[batch.output_file] = ("\n".join(lines) + "\n").encode()

    def _line_result(self, request: dict) -> dict:
        if request["text"] in self.failing_texts:
            return {"error": {"code": 400, "message": "injected line error", "status": "INVALID"}}
        dims = request.get("outputDimensionality") or FULL_DIMS
        return {"response": {"embedding": {"values": fake_vector(request["text"], dims).tolist()}}}

    # -- routing --------------------------------------------------------------------------

    def _batch_route(self, http: BaseHTTPRequestHandler, method: str) -> bool:
        """Answer a Batch/Files API request; False for any other path."""
        path, _, query = http.path.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        parts = path.strip("/").split("/")
        key = http.headers.get("x-goog-api-key")
        if method == "POST" and path.startswith("/upload-session/"):
            self._upload_chunk(http, parts[-1])
        elif method == "POST" and len(parts) >= 2 and parts[0] == "upload":
            self._upload_start(http, key)
        elif method == "POST" and path.endswith(":asyncBatchEmbedContent"):
            self._create_batch(http, key, parts[-1].split(":", 1)[0])
        elif method == "POST" and len(parts) == 3 and parts[1] == "batches":
            self._cancel_batch(http, key, parts[2].split(":", 1)[0])
        elif method == "GET" and len(parts) == 2 and parts[1] == "batches":
            self._list_batches(http, key, params)
        elif method == "GET" and len(parts) == 3 and parts[1] == "batches":
            self._get_batch(http, key, parts[2])
        elif method == "GET" and len(parts) == 3 and parts[1] == "files":
            self._download(http, key, parts[2].split(":", 1)[0])
        elif method == "GET" and len(parts) == 3 and parts[1] == "models":
            self._get_model(http, key, parts[2])
        else:
            return False
        return True

    def _refuse(self, http, key: str | None, model: str | None = None) -> bool:
        """Answer 400 (bad key) or 404 (unknown model) like the real API; True if so."""
        if self.valid_key is not None and key != self.valid_key:
            self._send_error(http, 400, "API key not valid. Please pass a valid API key.")
            return True
        if model is not None and model not in self.known_models:
            self._send_error(http, 404, f"models/{model} is not found")
            return True
        return False

    def _send_error(self, http, status: int, message: str) -> None:
        names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}
        reply = {"error": {"code": status, "message": message, "status": names.get(status, "X")}}
        self._send(http, status, json.dumps(reply).encode())

    def _body(self, http) -> bytes:
        return http.rfile.read(int(http.headers.get("Content-Length", 0) or 0))

    # -- batches --------------------------------------------------------------------------

    def _create_batch(self, http, key: str | None, model: str) -> None:
        body = json.loads(self._body(http) or b"{}")
        if self._refuse(http, key, model):
            return
        with self._lock:
            fault, self.create_fault = self.create_fault, None
        if fault is not None and fault.status is not None:
            return self._send_error(http, fault.status, "injected")
        batch = body.get("batch") or {}
        config = batch.get("inputConfig") or {}
        file_name = config.get("file_name") or config.get("fileName")
        if file_name is not None:
            data = self.files.get(file_name)
            if data is None:
                return self._send_error(http, 404, f"{file_name} is not found")
            requests = []
            for line in data.decode().splitlines():
                if line.strip():
                    item = json.loads(line)
                    requests.append(_request_line(item["request"], item.get("key")))
            source = "file"
        else:
            inlined = (config.get("requests") or {}).get("requests") or []
            requests = [_request_line(r["request"], None) for r in inlined]
            source = "inline"
        if not requests:
            return self._send_error(http, 400, "the batch holds no request")
        with self._lock:
            self._batch_seq += 1
            name = f"batches/fake{self._batch_seq:04d}"
            created = FakeBatch(
                name=name,
                display_name=batch.get("displayName") or "",
                model=model,
                source=source,
                requests=requests,
                input_file=file_name,
                script=list(self.batch_script),
            )
            self.batches[name] = created
            self.batch_creates.append(created)
            reply = self._batch_json(created)
        self._send(http, 200, json.dumps(reply).encode())

    def _batch_json(self, batch: FakeBatch) -> dict:
        metadata: dict = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch",
            "model": f"models/{batch.model}",
            "displayName": batch.display_name,
            "state": f"BATCH_STATE_{batch.state}",
            "createTime": "2026-01-01T00:00:00Z",
            "updateTime": "2026-01-01T00:00:01Z",
        }
        reply: dict = {"name": batch.name, "metadata": metadata}
        if batch.state in BATCH_FINAL:
            reply["done"] = True
            metadata["endTime"] = "2026-01-01T00:00:02Z"
        if batch.state == "SUCCEEDED":
            if batch.source == "file":
                metadata["output"] = {"responsesFile": batch.output_file}
            else:
                responses = [self._line_result(r) for r in batch.requests]
                metadata["output"] = {"inlinedResponses": {"inlinedResponses": responses}}
        elif batch.state == "FAILED":
            reply["error"] = {"code": 13, "message": "injected job failure"}
        return reply

    def _get_batch(self, http, key: str | None, batch_id: str) -> None:
        if self._refuse(http, key):
            return
        with self._lock:
            self.batch_gets += 1
            batch = self.batches.get(f"batches/{batch_id}")
            if batch is not None:
                batch.gets += 1
                if batch.script and batch.state not in BATCH_FINAL:
                    self._set_state(batch, batch.script.pop(0))
                reply = self._batch_json(batch)
        if batch is None:
            return self._send_error(http, 404, f"batches/{batch_id} is not found")
        self._send(http, 200, json.dumps(reply).encode())

    def _list_batches(self, http, key: str | None, params: dict) -> None:
        if self._refuse(http, key):
            return
        size = int(params.get("pageSize") or self.list_page_size)
        start = int(params.get("pageToken") or 0)
        with self._lock:
            self.batch_lists += 1
            newest_first = list(reversed(self.batches.values()))
            page = [self._batch_json(b) for b in newest_first[start : start + size]]
            more = start + size < len(newest_first)
        reply: dict = {"operations": page}
        if more:
            reply["nextPageToken"] = str(start + size)
        self._send(http, 200, json.dumps(reply).encode())

    def _cancel_batch(self, http, key: str | None, batch_id: str) -> None:
        self._body(http)
        if self._refuse(http, key):
            return
        with self._lock:
            batch = self.batches.get(f"batches/{batch_id}")
            if batch is not None:
                self.batch_cancels.append(batch.name)
                if batch.state not in BATCH_FINAL:
                    self._set_state(batch, "CANCELLED")
        if batch is None:
            return self._send_error(http, 404, f"batches/{batch_id} is not found")
        self._send(http, 200, b"{}")

    def _get_model(self, http, key: str | None, model: str) -> None:
        with self._lock:
            self.model_gets += 1
        if self._refuse(http, key, model):
            return
        reply = {"name": f"models/{model}", "displayName": model, "version": "001"}
        self._send(http, 200, json.dumps(reply).encode())

    # -- files ----------------------------------------------------------------------------

    def _upload_start(self, http, key: str | None) -> None:
        body = json.loads(self._body(http) or b"{}")
        if self._refuse(http, key):
            return
        if http.headers.get("X-Goog-Upload-Protocol") != "resumable":
            return self._send_error(http, 400, "only resumable uploads are emulated")
        with self._lock:
            self._batch_seq += 1
            upload_id = f"u{self._batch_seq:04d}"
            self.uploads[upload_id] = {
                "name": f"files/fake-input-{self._batch_seq:04d}",
                "size": int(http.headers.get("X-Goog-Upload-Header-Content-Length") or 0),
                "mime": http.headers.get("X-Goog-Upload-Header-Content-Type"),
                "display_name": (body.get("file") or {}).get("displayName"),
                "data": bytearray(),
            }
        headers = {"X-Goog-Upload-URL": f"{self.url}/upload-session/{upload_id}"}
        headers["X-Goog-Upload-Status"] = "active"
        self._send(http, 200, b"", headers)

    def _upload_chunk(self, http, upload_id: str) -> None:
        chunk = self._body(http)
        command = http.headers.get("X-Goog-Upload-Command", "")
        with self._lock:
            self.upload_chunk_keys.append(http.headers.get("x-goog-api-key"))
            upload = self.uploads.get(upload_id)
            if upload is not None:
                if int(http.headers.get("X-Goog-Upload-Offset") or 0) != len(upload["data"]):
                    upload = None
                else:
                    upload["data"].extend(chunk)
        if upload is None:
            return self._send_error(http, 400, "unknown upload session or wrong offset")
        if "finalize" not in command:
            return self._send(http, 200, b"", {"X-Goog-Upload-Status": "active"})
        with self._lock:
            self.files[upload["name"]] = bytes(upload["data"])
        info = {
            "name": upload["name"],
            "mimeType": upload["mime"],
            "sizeBytes": str(len(upload["data"])),
            "state": "ACTIVE",
            "source": "UPLOADED",
        }
        if upload["display_name"]:
            info["displayName"] = upload["display_name"]
        body = json.dumps({"file": info}).encode()
        self._send(http, 200, body, {"X-Goog-Upload-Status": "final"})

    def _download(self, http, key: str | None, file_id: str) -> None:
        if self._refuse(http, key):
            return
        with self._lock:
            self.downloads += 1
            data = self.files.get(f"files/{file_id}")
        if data is None:
            return self._send_error(http, 404, f"files/{file_id} is not found")
        try:
            http.send_response(200)
            http.send_header("Content-Type", "application/octet-stream")
            http.send_header("Content-Length", str(len(data)))
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


def _request_line(request: dict, key: str | None) -> dict:
    parts = (request.get("content") or {}).get("parts") or [{}]
    return {
        "key": key,
        "text": parts[0].get("text", ""),
        "taskType": request.get("taskType") or request.get("task_type"),
        "outputDimensionality": request.get("outputDimensionality")
        or request.get("output_dimensionality"),
    }


class FakeGemini(FakeBatchAPI):
    """Start with `with FakeGemini() as server:`; point the SDK at `server.url`."""

    def __init__(
        self, latency: float = 0.0, valid_key: str | None = VALID_KEY, port: int = 0
    ) -> None:
        self.latency = latency
        self.valid_key = valid_key
        self.known_models = {"gemini-embedding-001", "text-embedding-004"}
        self.requests: list[RecordedRequest] = []
        self.faults: deque[Fault] = deque()
        self.generations: list[RecordedGeneration] = []
        self.generate_faults: deque[Fault] = deque()
        self.chaos: Callable[[], Fault] | None = None  # faults for requests the deque leaves
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._init_batches()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        # a short poll: shutdown() waits for the loop to look (0.5 s by default, per server)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def ok_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.status == 200]

    @property
    def ok_generations(self) -> list[RecordedGeneration]:
        return [g for g in self.generations if g.status == 200 and g.fault is None]

    def __enter__(self) -> FakeGemini:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                if fake._batch_route(self, "POST"):
                    return
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake._answer(self)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def do_GET(self) -> None:  # noqa: N802
                if not fake._batch_route(self, "GET"):
                    fake._send(self, 404, b'{"error": {"code": 404, "message": "no route"}}')

        return Handler

    def _answer(self, http: BaseHTTPRequestHandler) -> None:
        body = json.loads(http.rfile.read(int(http.headers.get("Content-Length", 0))) or b"{}")
        model = http.path.rsplit("/", 1)[-1].split(":", 1)[0]
        if http.path.endswith(":generateContent"):
            return self._generate(http, model, body)
        requests = body.get("requests", [])
        record = RecordedRequest(
            model=model,
            texts=[r["content"]["parts"][0]["text"] for r in requests],
            task_types=[r.get("taskType") for r in requests],
            dims=[r.get("outputDimensionality") for r in requests],
            api_key=http.headers.get("x-goog-api-key"),
        )
        with self._lock:
            self.requests.append(record)
            if self.faults:
                fault = self.faults.popleft()
            else:
                fault = self.chaos() if self.chaos else Fault()
            record.fault = fault.kind
        time.sleep(self.latency + fault.delay)
        if fault.reset:  # the client sees the connection drop mid-request
            http.close_connection = True
            http.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.valid_key is not None and record.api_key != self.valid_key:
            return self._error(http, record, 400, "API key not valid. Please pass a valid API key.")
        if model not in self.known_models:
            return self._error(http, record, 404, f"models/{model} is not found")
        if fault.status is not None:
            return self._error(http, record, fault.status, "injected", fault.retry_after)
        if fault.body is not None:
            return self._send(http, 200, fault.body.encode())
        vectors = [
            fake_vector(text, (dims or FULL_DIMS) + (1 if fault.wrong_dims else 0)).tolist()
            for text, dims in zip(record.texts, record.dims)
        ]
        vectors = vectors[: len(vectors) - fault.drop_vectors]
        reply = {"embeddings": [{"values": v} for v in vectors]}
        self._send(http, 200, _dumps(reply))

    def _generate(self, http: BaseHTTPRequestHandler, model: str, body: dict) -> None:
        """One generateContent request: the fake name of its prompt, or a scripted fault."""
        parts = (body.get("contents") or [{}])[0].get("parts") or [{}]
        record = RecordedGeneration(
            model=model, prompt=parts[0].get("text", ""), api_key=http.headers.get("x-goog-api-key")
        )
        with self._lock:
            self.generations.append(record)
            fault = self.generate_faults.popleft() if self.generate_faults else Fault()
            record.fault = fault.kind
        time.sleep(self.latency + fault.delay)
        if fault.reset:
            http.close_connection = True
            http.connection.shutdown(socket.SHUT_RDWR)
            return
        if self.valid_key is not None and record.api_key != self.valid_key:
            return self._error(http, record, 400, "API key not valid. Please pass a valid API key.")
        if model not in GENERATION_MODELS:
            return self._error(http, record, 404, f"models/{model} is not found")
        if fault.status is not None:
            return self._error(http, record, fault.status, "injected", fault.retry_after)
        if fault.body is not None:
            return self._send(http, 200, fault.body.encode())
        reply = {
            "candidates": [
                {
                    "content": {
                        "parts": [{"text": f'"{fake_name(record.prompt)}"\n'}],
                        "role": "model",
                    },
                    "finishReason": "STOP",
                }
            ],
            "usageMetadata": {
                "promptTokenCount": len(record.prompt) // 4,
                "candidatesTokenCount": 4,
                "totalTokenCount": len(record.prompt) // 4 + 4,
            },
        }
        self._send(http, 200, json.dumps(reply).encode())

    def _error(self, http, record, status, message, retry_after=None) -> None:
        record.status = status
        names = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 429: "RESOURCE_EXHAUSTED"}
        reply = {
            "error": {"code": status, "message": message, "status": names.get(status, "INTERNAL")}
        }
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self._send(http, status, json.dumps(reply).encode(), headers)

    @staticmethod
    def _send(http, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            http.send_response(status)
            http.send_header("Content-Type", "application/json")
            http.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                http.send_header(name, value)
            http.end_headers()
            http.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout test): nothing to answer
