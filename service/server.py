"""Running the service: where it listens, who may call it, and how it stops.

It listens on loopback unless told otherwise, and refuses any other address without a
token. SIGTERM or Ctrl-C stops taking work, cancels running jobs (what they embedded
is written), records them, and exits 0 within seconds. A SIGKILL loses nothing that
was written: every batch is stored as it lands, and the job shows "interrupted" after
the restart.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest
from ..lab import Lab
from .app import ServiceSettings, create_app

FOLLOW_S = 0.5  # how often a replica over a Chroma server checks for others' writes
SWITCH_INTERVAL_S = 0.001  # the GIL hand-over: a reader waits ~1 ms, not 5, for an ingest
WRITE_SLICE_FLOATS = 3072  # one 3072-dim document: ~20 ms of Chroma's GIL-held insert
WRITE_PAUSE_S = 0.005  # then the request threads run (only while requests are answered)
SHUTDOWN_JOBS_S = 5.0  # waiting for jobs to stop; uvicorn's own drain is bounded too
DRAIN_S = 2
log = logging.getLogger("embedlab.service")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(token_file: str | None) -> str | None:
    """The token from --token-file, else $EMBEDLAB_TOKEN; None when neither is set."""
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise InvalidRequest(f"cannot read --token-file {token_file}: {exc.strerror}") from None
        if not token:
            raise InvalidRequest(f"--token-file {token_file} is empty; put a token in it")
        return token
    return os.environ.get("EMBEDLAB_TOKEN", "").strip() or None


def check_host(host: str, token: str | None) -> None:
    if not is_loopback(host) and token is None:
        raise InvalidRequest(
            f"refusing to listen on {host} without a token: anyone who can reach it could "
            "spend your embedding budget. Set $EMBEDLAB_TOKEN or --token-file (e.g. "
            f"`python -c 'import secrets; print(secrets.token_urlsafe())' > token`), "
            "or keep the default --host 127.0.0.1"
        )


def serve(
    lab: Lab,
    host: str = "127.0.0.1",
    port: int = 8000,
    settings: ServiceSettings | None = None,
    log_level: str = "info",
    on_started: Any = None,
) -> None:
    """Serve `lab` until SIGTERM/SIGINT; `on_started(url)` runs once it listens."""
    import uvicorn

    settings = settings or ServiceSettings()
    check_host(host, settings.token)
    app = create_app(lab, settings)
    service = app.state.service
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    service_file = lab.store.path / ".embedlab-service.json" if lab.store.path else None

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            """uvicorn re-raises SIGTERM after its shutdown, which kills the process
            before the jobs are recorded and makes the exit status 143; a service that
            was asked to stop and did should exit 0."""
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            signals = (signal.SIGINT, signal.SIGTERM)
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in signals}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

        def handle_exit(self, sig: int, frame: Any) -> None:
            service.jobs.stop()  # jobs start winding down at once, streams end
            super().handle_exit(sig, frame)

        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                if service_file is not None:
                    service_file.write_text(json.dumps({"url": url, "pid": os.getpid()}))
                if on_started is not None:
                    on_started(url)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=DRAIN_S,
        lifespan="off",
    )
    server = Server(config)
    # An ingest's Python work (the SDK's parsing, the conversions) holds the GIL for the
    # interpreter's switch interval at a time; readers then wait that long per hand-over.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    # and Chroma's upsert holds it for its whole insert: write in short slices
    from ..store.chroma_store import share_writes

    share_writes(WRITE_SLICE_FLOATS, WRITE_PAUSE_S, app.state.readers.waiting)
    service.warming = True
    stopping = threading.Event()  # the warm-up and the write follower end when it is set
    warm = threading.Thread(
        target=_warm_up, args=(lab, service, stopping), name="warm-up", daemon=True
    )
    warm.start()
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind
        if server.started:
            raise
    finally:
        if service.batch_poller is not None:  # batch ingests stay "waiting" for the next start
            service.batch_poller.stop()
        service.jobs.shutdown(SHUTDOWN_JOBS_S)
        # the Lab closes when this returns: a thread still inside Chroma then can crash
        # the process on its way out, so the background threads end first
        stopping.set()
        warm.join(SHUTDOWN_JOBS_S)
        if service_file is not None:
            service_file.unlink(missing_ok=True)
    if not server.started:
        raise InvalidRequest(f"could not listen on {host}:{port} (in use?); pick another --port")


def _warm_up(lab: Lab, service: Any, stopping: threading.Event) -> None:
    """Read every space's vectors into memory (within the budget) while requests are
    already answered from Chroma; lookups switch to memory once a space is held.
    `GET /health` says `"warming": true` until it is done."""
    try:
        try:
            lab.preload_providers()
        except Exception as exc:  # noqa: BLE001 - an optimisation: the first ingest imports
            log.warning("could not preload the embedding SDK: %s", exc)
        _hold_every_space(lab, stopping)
        _settle_garbage_collector()
    finally:
        service.warming = False
    if lab.store.path is None:  # a Chroma server: other replicas may write to it
        _follow_writes(lab, stopping)


def _settle_garbage_collector() -> None:
    """Move what the warm-up built (modules, the SDK's models, every held document's
    metadata: ~180,000 objects) out of the collector's sight. A full collection walked
    them all, 80-130 ms with the interpreter's lock held, every reader stopped (seen
    every ~10 s under 8 readers); after `gc.freeze` it takes ~1 ms. Frozen objects are
    still freed when nothing refers to them."""
    import gc

    gc.collect()
    gc.freeze()


def _follow_writes(lab: Lab, stopping: threading.Event, every: float = FOLLOW_S) -> None:
    """Forever: re-read what another writer added to a held space (its count moved),
    so a document ingested through another replica is found here within a second."""
    while not stopping.wait(every):
        try:
            for space in lab.spaces():
                lab.follow_writes(space)
        except Exception as exc:  # noqa: BLE001 - the server may be restarting; go on
            log.debug("following writes: %s", exc)


def _hold_every_space(lab: Lab, stopping: threading.Event) -> None:
    for space in lab.spaces():
        if stopping.is_set():
            return
        try:
            held = lab.hold_vectors(space)
        except Exception as exc:  # noqa: BLE001 - warming is an optimisation, never fatal
            log.warning("could not hold %s in memory: %s", space.describe(), exc)
            continue
        if held:
            log.info("holding %s in memory", space.describe())
