"""Errors a user can fix, raised by sources and shown by the CLI as one line."""

from ..errors import InvalidRequest


class SourceError(InvalidRequest):
    """A user-facing, one-line problem with an input."""
