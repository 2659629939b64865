"""Who is waiting on the service right now: an ingest's writes make room only for them.

Chroma's embedded upsert holds the GIL for its whole HNSW insert, so while requests are
being answered the ingest writes in short slices with pauses between (the request
threads run then); with nobody waiting it writes each batch in one call, at full speed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

RECENT_S = 0.05  # a request that ended this recently counts: clients come straight back
UNCOUNTED = ("/health", "/api/v1/jobs")  # watching a job is no reason to slow it down


class Readers:
    """The HTTP requests in flight, counted by ReadersMiddleware."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.active = 0
        self.last_end = 0.0

    def begin(self) -> None:
        with self._lock:
            self.active += 1

    def end(self) -> None:
        with self._lock:
            self.active -= 1
            self.last_end = time.monotonic()

    def waiting(self) -> bool:
        """True while a request is answered, or one ended RECENT_S ago."""
        return self.active > 0 or time.monotonic() - self.last_end < RECENT_S


class ReadersMiddleware:
    """ASGI middleware: every HTTP request counted while it runs."""

    def __init__(self, app: Any, readers: Readers):
        self.app = app
        self.readers = readers

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.endswith("/events") or path.startswith(UNCOUNTED):
            await self.app(scope, receive, send)  # SSE streams, health and job polls
            return
        self.readers.begin()
        try:
            await self.app(scope, receive, send)
        finally:
            self.readers.end()
