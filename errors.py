"""One exception family for every layer, so each front end maps errors in one place.

The CLI turns an `EmbedlabError` into one line and an exit code, the service into a
problem+json body with a 4xx status, and a notebook shows it as it is. Anything that
is not an `EmbedlabError` is a bug and is allowed to surface as one.
"""

from __future__ import annotations


class EmbedlabError(Exception):
    """Something the user can act on; the message says what and how."""


class InvalidRequest(EmbedlabError, ValueError):
    """An option, a selection or an input the request cannot be served with."""


class NotFound(EmbedlabError, LookupError):
    """A store, space, document or analysis that does not exist."""


class StoreError(EmbedlabError):
    """A problem with the store itself (cannot open, refused write, wrong format)."""


class StoreBusy(StoreError):
    """Another process holds the embedded store."""


class StoreDamaged(StoreError):
    """The store's vector index cannot be read; `embedlab repair` rebuilds it."""


class ProviderError(EmbedlabError):
    """The embedding or generation provider refused, in a way retrying will not fix."""


class RequestRefused(ProviderError, InvalidRequest):
    """The provider refused what was asked (an unknown model, bad dims or task type):
    the request's fault, not the provider's, so the service answers it with a 4xx."""


class TransientError(ProviderError):
    """A failure worth retrying (429, 5xx, timeout, dropped connection, garbled reply)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Cancelled(EmbedlabError):
    """The caller cancelled the work; what was finished before is kept."""


class Forbidden(EmbedlabError):
    """The request would write or spend, and this front end is read-only."""
