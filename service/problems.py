"""Errors as HTTP: every library error maps to one status here, in one place.

Every 4xx body is `application/problem+json` (RFC 9457: type, title, status, detail),
and `detail` says what to do; a library error's body also has `code`, its class's stable
name (`errors.CODES`), from which a client rebuilds the same class. A 500 means a bug
in embedlab; the body then names no internals, and the log has the traceback.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    BodyTooLarge,
    Cancelled,
    Conflict,
    EmbedlabError,
    Forbidden,
    InvalidRequest,
    NotFound,
    ProviderError,
    ProviderKeyError,
    ServiceStopping,
    StoreBusy,
    StoreDamaged,
    StoreError,
    TransientError,
    Unauthorized,
    code_of,
)
from ..jsonout import jsonable  # noqa: F401 - the service's modules import it from here

log = logging.getLogger("embedlab.service")
PROBLEM = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Invalid request",
    500: "Internal error",
    502: "Embedding provider error",
    503: "Unavailable",
}


def status_of(exc: EmbedlabError) -> int:
    """The HTTP status of a library error (the one mapping, as in Chroma's server).

    An error of the service's own says its status in `status` (BodyTooLarge 413, the
    app's UnsupportedMedia 415, a failed job's JobError its cause's), so this module
    imports nothing of the app's.
    """
    if isinstance(getattr(exc, "status", None), int):
        return exc.status  # type: ignore[attr-defined]
    for kind, status in (
        (Unauthorized, 401),
        (BodyTooLarge, 413),
        (ServiceStopping, 503),
        (Forbidden, 403),
        (NotFound, 404),
        (Conflict, 409),
        (InvalidRequest, 400),
        (Cancelled, 409),
        (StoreBusy, 503),
        (StoreDamaged, 503),
        (TransientError, 503),
        (ProviderKeyError, 503),  # the operator's to set: the service cannot embed now
        (ProviderError, 502),
        (StoreError, 503),
    ):
        if isinstance(exc, kind):
            return status
    return 400


def problem(status: int, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        **extra,
    }
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(jsonable(body), status_code=status, media_type=PROBLEM, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(EmbedlabError)
    async def library_error(request: Request, exc: EmbedlabError) -> JSONResponse:
        extra = {}
        job = getattr(exc, "job", None)
        if job is not None:
            extra["job"] = job
        return problem(status_of(exc), exc.say("http"), code=code_of(exc), **extra)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return problem(422, _validation_detail(exc.errors()))

    @app.exception_handler(ValidationError)
    async def invalid_body(request: Request, exc: ValidationError) -> JSONResponse:
        return problem(422, _validation_detail(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.url.path}; see /docs for the API"
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /docs"
        return problem(exc.status_code, detail)

    @app.exception_handler(Exception)
    async def bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return problem(500, "internal error in embedlab; the service log has the details")


def _validation_detail(errors: Sequence[Any]) -> str:  # pydantic's and FastAPI's error dicts
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more + "; see /docs for the request's schema"


class Guard:
    """ASGI middleware: the bearer token on /api routes, and the request-body limit."""

    def __init__(self, app: Any, token: str | None, max_body: int):
        self.app = app
        self.token = token.encode() if token else None
        self.max_body = max_body

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.token is not None and scope["path"].startswith("/api"):
            given = headers.get(b"authorization", b"")
            scheme, _, credentials = given.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(
                credentials.strip(), self.token
            ):
                response = problem(
                    401,
                    "this service needs a token: send 'Authorization: Bearer <token>'",
                    code=Unauthorized.code,
                )
                await response(scope, receive, send)
                return
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            response = problem(413, self._too_large(), code=BodyTooLarge.code)
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise BodyTooLarge(self._too_large())
            return message

        await self.app(scope, limited_receive, send)

    def _too_large(self) -> str:
        return (
            f"the request body is over {self.max_body:,} bytes; send it in smaller parts "
            "(or start the service with a larger --max-body)"
        )
