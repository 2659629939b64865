"""A real `embedlab serve` in a child process, on a free loopback port, for the tests."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, spawn_cli
from tests.fake_gemini import VALID_KEY, FakeGemini

START_TIMEOUT_S = 90


class RunningService:
    """`embedlab --store STORE serve ...`, its log in a file, an httpx client on it."""

    def __init__(
        self,
        store: Path,
        fake: FakeGemini | None,
        *args: str,
        env: dict[str, str] | None = None,
        token: str | None = None,
        store_args: list[str] | None = None,
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(store).parent / f"serve-{self.port}.log"
        self.env = dict(env or {})
        if fake is not None:
            self.env.update(GOOGLE_GEMINI_BASE_URL=fake.url, GEMINI_API_KEY=VALID_KEY)
        self.env.setdefault("HF_HUB_OFFLINE", "1")
        where = store_args or ["--store", str(store)]
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = spawn_cli(
            [*where, "serve", "--port", str(self.port), *args],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"embedlab serve exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.proc.kill()
        pytest.fail(f"embedlab serve did not start: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def ingest(self, documents: list[dict], wait: bool = True, **options) -> dict:
        response = self.http.post(
            "/api/v1/ingest",
            params={"wait": "true"} if wait else None,
            json={"documents": documents, **options},
        )
        assert response.status_code == (200 if wait else 202), response.text
        return response.json()

    def wait_embedded(self, job_id: str, at_least: int, timeout: float = 60) -> None:
        """Until the running job has embedded `at_least` documents."""
        deadline = time.monotonic() + timeout
        while (
            self.http.get(f"/api/v1/jobs/{job_id}").json()["progress"].get("embedded", 0) < at_least
        ):
            assert time.monotonic() < deadline, f"job {job_id} embedded too little"
            time.sleep(0.05)

    def wait_job(self, job_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.http.get(f"/api/v1/jobs/{job_id}").json()
            if job["state"] not in ("queued", "running"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} still {job['state']}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._log.close()
        return code


def events(response: httpx.Response) -> list[tuple[str, dict]]:
    """The Server-Sent Events of a streamed response, parsed."""
    found, event, data = [], "message", []
    for line in response.iter_lines():
        if not line:
            if data:
                found.append((event, json.loads("\n".join(data))))
                if event == "end":
                    break
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return found


def documents(n: int, start: int = 0, prefix: str = "doc") -> list[dict]:
    """`n` distinct labelled documents about two topics."""
    topics = ["rockets orbit launch space", "doctors medicine patients clinic"]
    return [
        {
            "id": f"{prefix}{i}",
            "text": f"{prefix} {i}: {topics[i % 2]} " + "word " * (i % 7),
            "label": ["space", "med"][i % 2],
        }
        for i in range(start, start + n)
    ]
