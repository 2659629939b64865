"""`embedlab batches`: the Batch API jobs of a store, collected as they finish.

`ingest ... --batch` submits and returns; this command says where every job stands,
writes the vectors of those that finished (`--wait` keeps polling until all have
ended), and cancels one (`--cancel JOB`). Kept beside cli.py, which registers it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import click

from .progress import TerminalBar

DEFAULT_WAIT_S = 48 * 3600.0  # `--wait` alone: as long as a job can live (they expire at 48 h)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def add_batches_command(group: click.Group, user_errors: Callable) -> None:
    """Register `embedlab batches` on the CLI group (cli.py calls it with its error
    wrapper; kept here so that cli.py only grows by two lines)."""

    @click.command("batches")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @click.option(
        "--wait",
        "wait_s",
        type=click.FloatRange(min=0),
        is_flag=False,
        flag_value=DEFAULT_WAIT_S,
        default=None,
        metavar="[SECONDS]",
        help="Poll (with backoff) until every job has ended, or SECONDS pass (default 48 h); "
        "Ctrl-C stops waiting and keeps what was collected.",
    )
    @click.option("--cancel", "cancel_job", metavar="JOB", help="Cancel this job (name or key).")
    @click.pass_obj
    @user_errors
    def batches_command(
        store_opts: Any, as_json: bool, wait_s: float | None, cancel_job: str | None
    ) -> None:
        """Batch API jobs: their state; the vectors of those that finished are written now."""
        with contextlib.ExitStack() as stack:
            lab = stack.enter_context(store_opts.open())
            if cancel_job:
                row = lab.cancel_batch(cancel_job)
                click.echo(f"{row['job']}: cancel asked ({row.get('state')})", err=True)
            bar = TerminalBar(stack, "batch jobs ended", at_least_one=True)
            on_progress = bar if wait_s is not None else (lambda event: None)

            wait = wait_s if wait_s is not None else False
            report = lab.collect(wait=wait, on_progress=on_progress)
            table = lab.batches()
        if bar.shown:
            click.echo("", err=True)
        if as_json:
            from .jsonout import dumps, records

            body = {"jobs": records(table), "collect": report.to_dict()}
            click.echo(dumps(body))
        else:
            for line in report.lines:
                click.echo(line, err=True)
            for row in table.itertuples(index=False):
                click.echo(
                    f"{row.job}  {row.state:<9}  {_n(int(row.texts), 'text')}  {row.space}  "
                    f"{row.mode}  submitted {str(row.submitted)[:19]}"
                    + (f"  {row.note}" if row.note else "")
                )
        states = table["state"].value_counts().to_dict() if len(table) else {}
        counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items())) or "none"
        summary = f"{_n(len(table), 'batch job')} ({counts}); {report.summary()}"
        if report.interrupted:
            click.echo(f"interrupted: {summary}; run `embedlab batches --wait` to go on", err=True)
            sys.exit(130)
        click.echo(summary, err=as_json)

    group.add_command(batches_command)
