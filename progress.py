"""Progress and cancellation, shared by every layer and shown by each front end its own way.

Work reports `Progress` events to one callback; the notebook shows them as a tqdm bar
(which renders in Jupyter and in terminals), the CLI as its own bar, the service as
job state and Server-Sent Events. A `CancelToken` lets any front end stop long work.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Progress:
    """One step of long work: `done` of `total` units of `task`, with a short status."""

    task: str  # "ingest", "analyze"
    done: int
    total: int
    status: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[Progress], None]


class CancelToken:
    """Set once to ask running work to stop; work checks it and sleeps on it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def cancel(self, reason: str = "cancelled") -> None:
        """Ask for a stop; `reason` says who asked (a user, or "shutdown")."""
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking at once on cancel; True when cancelled."""
        return self._event.wait(seconds)

    def __repr__(self) -> str:
        return f"CancelToken(cancelled={self.cancelled})"


# a bar's line without the rate: counts and elapsed time only
COUNTS_ONLY = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def did_no_work(event: Progress) -> bool:
    """True when an ingest's progress counts only documents it found cached (or reused):
    nothing was embedded, so a rate (documents per second) would be meaningless."""
    report = event.detail.get("report")
    return report is not None and getattr(report, "embedded", 0) == 0


class TqdmProgress:
    """A progress callback drawing a tqdm bar (tqdm.auto: a widget in Jupyter, which needs
    ipywidgets). A bar that did no work (everything cached) shows counts, not a rate."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._task: str | None = None

    def __call__(self, event: Progress) -> None:
        if self._bar is None or event.task != self._task or event.total != self._bar.total:
            self.close()
            from tqdm.auto import tqdm

            self._bar = tqdm(total=event.total, desc=event.task, leave=True)
            self._task = event.task
        if did_no_work(event):
            self._bar.bar_format = COUNTS_ONLY
        else:
            self._bar.bar_format = None
        self._bar.n = event.done
        if event.status:
            self._bar.set_postfix_str(event.status, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def reporter(quiet: bool, on_progress: ProgressCallback | None) -> tuple[ProgressCallback, Any]:
    """(callback, closer): the user's callback, a tqdm bar, or nothing when quiet."""
    if on_progress is not None:
        return on_progress, lambda: None
    if quiet:
        return (lambda _event: None), lambda: None
    bar = TqdmProgress()
    return bar, bar.close


def plural(n: int, noun: str) -> str:
    """ "1 document", "2 documents", "3 retries": the counts of every summary line."""
    if n == 1:
        return f"1 {noun}"
    if noun.endswith("is"):  # analysis -> analyses
        return f"{n} {noun[:-2]}es"
    if noun.endswith("y"):
        return f"{n} {noun[:-1]}ies"
    return f"{n} {noun}es" if noun.endswith("ch") else f"{n} {noun}s"


class TerminalBar:
    """A `Progress` callback drawing one click bar on stderr, opened at the first event
    (when the total is known) and closed with `stack` (a contextlib.ExitStack); with
    `status`, each event's status is shown beside it. The CLI's one progress bar.
    Off a terminal (a pipe, a log file) it draws nothing: click would print its bare
    label there, and the summary line that follows says what was done."""

    def __init__(self, stack: Any, label: str, status: bool = True, at_least_one: bool = False):
        self.stack, self.label, self.status, self.at_least_one = stack, label, status, at_least_one
        self.bar: Any = None

    @property
    def shown(self) -> bool:
        return self.bar is not None

    def __call__(self, event: Progress) -> None:
        if self.bar is None:
            import sys

            import click

            isatty = getattr(sys.stderr, "isatty", None)
            if isatty is None or not isatty():
                return

            total = max(event.total, 1) if self.at_least_one else event.total
            shown = (lambda s: s) if self.status else None
            bar = click.progressbar(
                length=total, label=self.label, file=sys.stderr, item_show_func=shown
            )
            self.bar = self.stack.enter_context(bar)
        if self.status:
            self.bar.update(event.done - self.bar.pos, current_item=event.status)
        else:
            self.bar.update(event.done - self.bar.pos)


terminal_bar = TerminalBar
