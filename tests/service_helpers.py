"""A real `embedlab serve` on a free loopback port, for the tests: in a child process
(`RunningService`, where the process is what is tested: signals, kill, restart, two
replicas) or in this process (`InProcessService`: the same command, the same uvicorn
and the same HTTP, on a thread, without a new Python importing everything again)."""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port, spawn_cli
from tests.fake_gemini import VALID_KEY, FakeGemini

START_TIMEOUT_S = 90


class ServiceCalls:
    """The calls the tests make on a running service, however it runs."""

    url: str
    http: httpx.Client

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


class RunningService(ServiceCalls):
    """`embedlab --store STORE serve ...` in a child process, its log in a file, an
    httpx client on it."""

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
                time.sleep(0.05)
        self.proc.kill()
        pytest.fail(f"embedlab serve did not start: {self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

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


class InProcessService(ServiceCalls):
    """The same `embedlab --store STORE serve ...` command, run by the CLI on a thread of
    this process: the real option parsing, store opening, uvicorn on a loopback port and
    HTTP, without a child Python importing everything again. Its log (uvicorn's and
    embedlab's loggers) goes to a file as `RunningService`'s does.

    For tests where the process is not what is tested: `stop()` asks the server to exit
    as SIGTERM or Ctrl-C would (the service's own handler runs: jobs wind down and are
    recorded) and answers 0 when the command returned normally. A SIGKILL, a second
    replica or a restart of the process need `RunningService`."""

    def __init__(
        self,
        store: Path,
        fake: FakeGemini | None,
        *args: str,
        env: dict[str, str] | None = None,
        token: str | None = None,
        store_args: list[str] | None = None,
    ):
        from embedlab.store import chroma_store

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(store).parent / f"serve-{self.port}.log"
        self.env = dict(env or {})
        if fake is not None:
            self.env.update(GOOGLE_GEMINI_BASE_URL=fake.url, GEMINI_API_KEY=VALID_KEY)
        self.env.setdefault("HF_HUB_OFFLINE", "1")
        # what `serve` changes for its whole process, put back by stop()
        self._saved_env = {name: os.environ.get(name) for name in self.env}
        self._saved_switch = sys.getswitchinterval()
        self._saved_sharing = dict(chroma_store._WRITE_SHARING)
        os.environ.update(self.env)
        self._handler = logging.FileHandler(self.log_path)
        self._handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self._loggers: list[logging.Logger] = []
        self.code: int | None = None
        self.error: str | None = None
        where = store_args or ["--store", str(store)]
        self._thread = threading.Thread(
            target=self._run,
            args=([*where, "serve", "--port", str(self.port), *args],),
            name=f"embedlab-serve-{self.port}",
            daemon=True,
        )
        self._thread.start()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=60)
        try:
            self._wait_until_up()
            self._server = self._find_server()
        except BaseException:
            self._restore()
            raise
        # uvicorn configures its loggers when it starts: log to the file from now on
        for name in ("uvicorn", "uvicorn.access", ""):
            logger = logging.getLogger(name)
            logger.addHandler(self._handler)
            self._loggers.append(logger)

    def _run(self, args: list[str]) -> None:
        import click
        from embedlab.cli import cli

        try:
            code = cli.main(args, prog_name="embedlab", standalone_mode=False)
            self.code = code if isinstance(code, int) else 0
        except click.ClickException as exc:
            self.error = exc.format_message()
            self.code = exc.exit_code
        except SystemExit as exc:
            self.code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 - reported by stop() and the start-up check
            import traceback

            self.error = traceback.format_exc()
            self.code = 1
        if self.error:
            with open(self.log_path, "a") as log:
                log.write(self.error + "\n")

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if not self._thread.is_alive():
                pytest.fail(f"embedlab serve returned {self.code}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        pytest.fail(f"embedlab serve did not start: {self.log()}")

    def _find_server(self):
        """The uvicorn server the command runs: found on its thread's stack."""
        import uvicorn

        frame = sys._current_frames().get(self._thread.ident)
        while frame is not None:
            found = frame.f_locals.get("self")
            if isinstance(found, uvicorn.Server):
                return found
            frame = frame.f_back
        for found in gc.get_objects():  # not on the stack: look among all objects
            if isinstance(found, uvicorn.Server) and found.config.port == self.port:
                return found
        raise AssertionError("no uvicorn server found for the in-process service")

    def log(self) -> str:
        self._handler.flush()
        return self.log_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if sig not in (signal.SIGTERM, signal.SIGINT):
            raise ValueError("only a child process can take that signal: use RunningService")
        try:
            deadline = time.monotonic() + 10  # let the warm-up finish before the store closes
            while time.monotonic() < deadline and self._thread.is_alive():
                try:
                    if not self.http.get("/health").json().get("warming"):
                        break
                except (httpx.HTTPError, ValueError):
                    break
                time.sleep(0.05)
            self.http.close()
            if self._thread.is_alive():
                self._server.handle_exit(sig, None)  # what the signal handler does
            self._thread.join(timeout)
            if self._thread.is_alive():
                return -int(signal.SIGKILL)  # did not stop in time; a daemon thread lingers
            return self.code if self.code is not None else 1
        finally:
            self._restore()

    def _restore(self) -> None:
        from embedlab.store import chroma_store

        for logger in self._loggers:
            logger.removeHandler(self._handler)
        self._loggers = []
        self._handler.close()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        sys.setswitchinterval(self._saved_switch)
        chroma_store._WRITE_SHARING.clear()
        chroma_store._WRITE_SHARING.update(self._saved_sharing)


def chroma_children(pid: int) -> list[int]:
    """The `chroma run` processes whose parent is `pid` (a service's private Chroma)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid and b"run" in cmdline and any(b"chroma" in part for part in cmdline):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


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
