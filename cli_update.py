"""`embedlab analyze --update ID|latest [--refit]`: the CLI side of lab.update.

Kept beside cli.py (not in it) so the command's printing lives in one small module.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

# analyze options that describe a new analysis: an update keeps its parent's
ANALYSIS_FLAGS = {
    "sources": "--source",
    "labels": "--labels",
    "per_class": "--per-class",
    "limit": "--limit",
    "algo": "--algo",
    "k": "--k",
    "reduce": "--reduce",
    "min_cluster_size": "--min-cluster-size",
    "eps": "--eps",
    "text_weight": "--text-weight",
    "cluster_dims": "--cluster-dims",
    "name_clusters": "--name-clusters",
    "naming_model": "--naming-model",
    "seed": "--seed",
    "fresh": "--fresh",
}


def run_update(
    store_opts: Any, space_filter: tuple, update_of: str | None, refit: bool, out: str, html: bool
) -> None:
    """Update the analysis `update_of` ("latest": the space's newest), print what changed
    and write the report files into `out`."""
    ctx = click.get_current_context()
    if update_of is None:
        raise click.UsageError("--refit goes with --update ID|latest")
    given = [
        flag
        for name, flag in ANALYSIS_FLAGS.items()
        if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(
            f"--update keeps the analysis' own selection and options; drop {', '.join(given)} "
            "(or run a new `embedlab analyze` without --update)"
        )
    started = time.monotonic()
    with store_opts.open() as lab:
        updated = lab.update(
            lab.analysis_to_update(update_of, *space_filter), refit=refit, out=Path(out), html=html
        )
    for line in updated.update_lines():
        click.echo(line, err=True)
    from .analyze import report

    click.echo(report.per_class_table(updated.metrics))
    click.echo(report.verdict(updated.metrics))
    click.echo(report.cluster_table(updated.clusters))
    if "map.html" in updated.files:
        click.echo(f"interactive map: {Path(out) / 'map.html'} (opens from disk)", err=True)
    r = updated.update_report
    how = "refitted" if r.get("refit") else "updated"
    advice = "; a refit is advised (--update ID --refit)" if r["refit_advised"] else ""
    click.echo(
        f"{how} {updated.parent} -> {updated.id}: {r['kept']} kept, {r['added']} added, "
        f"{r['removed']} removed, {r['changed']} changed, {len(updated.files)} files in {out}, "
        f"{time.monotonic() - started:.1f} s{advice}"
    )
