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
from dataclasses import dataclass
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


class FakeGemini:
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
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

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
                with fake._lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake._answer(self)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

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
