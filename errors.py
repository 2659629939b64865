"""One exception family for every layer, so each front end maps errors in one place.

The CLI turns an `EmbedlabError` into one line and an exit code, the service into a
problem+json body with a 4xx status, and a notebook shows it as it is. Anything that
is not an `EmbedlabError` is a bug and is allowed to surface as one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# An argument named in a message: `<<source>>` or `<<replace=True>>`. Each front end
# names it in its own language: `source=` in Python, `"source"` over HTTP, `--source` on
# the command line, so a library message never gives advice for another front end.
# `<<text|--text-col>>` gives the command line's flag where it is not `--<argument>`.
SHELL_SAFE = re.compile(r"[\w.:/-]+")
ARGUMENT = re.compile(r"<<(\w+)(?:\|(--[\w/-]+))?(?:=([^>]*))?>>")


def speak(message: str, front: str = "python", flags: Mapping[str, str] | None = None) -> str:
    """`message` with its arguments named for `front` ("python", "http" or "cli")."""

    def name(match: re.Match[str]) -> str:
        arg, flag, value = match.group(1), match.group(2), match.group(3)
        if front == "http":
            if value is None:
                return f'"{arg}"'
            shown = {"True": "true", "False": "false", "None": "null"}.get(value, value)
            if len(shown) > 1 and shown[0] == shown[-1] == "'":
                shown = f'"{shown[1:-1]}"'  # a Python string, as JSON writes it
            return f'"{arg}": {shown}'
        if front == "cli":
            flag = flag or (flags or {}).get(arg, "--" + arg.replace("_", "-"))
            if value in (None, "True"):
                return flag
            plain = value.strip(chr(34) + chr(39))
            # quotes go where the shell needs none (--provider local), stay where it does
            return f"{flag} {plain if SHELL_SAFE.fullmatch(plain) else value}"
        return f"{arg}=" if value is None else f"{arg}={value}"

    return ARGUMENT.sub(name, message)


class EmbedlabError(Exception):
    """Something the user can act on; the message says what and how.

    A message may name arguments as `<<name>>` or `<<name=value>>`: `str(exc)` names
    them as Python does, and `exc.say("http")` / `exc.say("cli", flags)` as the service
    and the command line do.

    `code` names the class in a stable word: the service puts it in every problem+json
    body (and in a failed job), and `error_for(code)` rebuilds the same class on the
    other side of HTTP.
    """

    code = "error"

    def __init__(self, message: str = "", *args: object):
        super().__init__(speak(message), *args)
        self.template = message

    def say(self, front: str = "python", flags: Mapping[str, str] | None = None) -> str:
        """The message in the words of one front end."""
        template = getattr(self, "template", None)
        if not isinstance(template, str) or speak(template) != str(self):
            return str(self)  # a message rewritten after construction
        return speak(template, front, flags)


class InvalidRequest(EmbedlabError, ValueError):
    """An option, a selection or an input the request cannot be served with."""

    code = "invalid_request"


class NotFound(EmbedlabError, LookupError):
    """A store, space, document or analysis that does not exist."""

    code = "not_found"


class DocumentNotFound(NotFound):
    """No stored document has the id asked for (in the space asked for)."""

    code = "document_not_found"


class Conflict(InvalidRequest):
    """The request would overwrite what another input owns (another source's documents)."""

    code = "conflict"


class StoreError(EmbedlabError):
    """A problem with the store itself (cannot open, refused write, wrong format)."""

    code = "store_error"


class StoreBusy(StoreError):
    """Another process holds the embedded store."""

    code = "store_busy"


class StoreDamaged(StoreError):
    """The store's vector index cannot be read; `embedlab repair` rebuilds it."""

    code = "store_damaged"


class ProviderError(EmbedlabError):
    """The embedding or generation provider refused, in a way retrying will not fix."""

    code = "provider_error"


class ProviderKeyError(ProviderError):
    """The provider's API key is missing or rejected where embedlab runs: whoever runs it
    (the service's operator, over HTTP) must set it; retrying will not help."""

    code = "provider_key"


class RequestRefused(ProviderError, InvalidRequest):
    """The provider refused what was asked (an unknown model, bad dims or task type):
    the request's fault, not the provider's, so the service answers it with a 4xx."""

    code = "request_refused"


class TransientError(ProviderError):
    """A failure worth retrying (429, 5xx, timeout, dropped connection, garbled reply)."""

    code = "transient"

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(EmbedlabError):
    """The caller cancelled the work; what was finished before is kept."""

    code = "cancelled"


class Forbidden(EmbedlabError):
    """The request would write or spend, and this front end is read-only."""

    code = "forbidden"


class Unauthorized(EmbedlabError):
    """The service needs a token and the request sent none, or another one (401)."""

    code = "unauthorized"


class JobFinished(Conflict):
    """A cancel for a job that has already ended (409)."""

    code = "job_finished"


class ServiceStopping(EmbedlabError):
    """The service is shutting down and takes no new jobs (503): submit again later."""

    code = "service_stopping"


class BodyTooLarge(InvalidRequest):
    """The request body is over the service's limit (413): send it in smaller parts."""

    code = "body_too_large"


CODES: dict[str, type[EmbedlabError]] = {
    kind.code: kind
    for kind in (
        EmbedlabError,
        InvalidRequest,
        NotFound,
        DocumentNotFound,
        Conflict,
        StoreError,
        StoreBusy,
        StoreDamaged,
        ProviderError,
        ProviderKeyError,
        RequestRefused,
        TransientError,
        Cancelled,
        Forbidden,
        Unauthorized,
        JobFinished,
        ServiceStopping,
        BodyTooLarge,
    )
}


def error_for(code: str | None) -> type[EmbedlabError]:
    """The library's exception class for a `code` (EmbedlabError for one it does not
    know: a newer service's, or none)."""
    return CODES.get(code or "", EmbedlabError)


def code_of(exc: BaseException) -> str:
    """The stable code of an exception: the nearest library class's ("internal" for
    anything that is not an EmbedlabError: a bug)."""
    if not isinstance(exc, EmbedlabError):
        return "internal"
    if getattr(exc, "code", None) in CODES:
        return exc.code
    for kind in type(exc).__mro__:
        code = kind.__dict__.get("code")
        if isinstance(code, str) and code in CODES:
            return code
    return EmbedlabError.code
