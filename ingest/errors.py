"""Errors a user can fix, raised by sources and shown by the CLI as one line."""

from ..errors import InvalidRequest, NotFound


class SourceError(InvalidRequest):
    """A user-facing, one-line problem with an input."""


class SourceMissing(NotFound, SourceError):
    """The input named does not exist: NotFound on every front end (404 over HTTP)."""
