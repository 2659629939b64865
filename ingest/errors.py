"""Errors a user can fix, raised by sources and shown by the CLI as one line."""


class SourceError(Exception):
    """A user-facing, one-line problem with an input."""
