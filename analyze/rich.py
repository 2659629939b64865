"""How results show themselves in a notebook (`_repr_html_`): a headline, a table or two
and, where it helps, a small map thumbnail (inline SVG of the stored 2-D coordinates,
coloured by cluster). Every piece of document text (labels, cluster names, ids, snippets)
goes through `html.escape`: text is always shown as text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..htmltable import esc, table

if TYPE_CHECKING:
    from .analysis import Analysis
    from .comparison import Comparison

PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
NOISE = "#c8c8c8"
THUMB_POINTS = 1500  # at most this many points drawn (a fixed sample): the SVG stays small
THUMB_W, THUMB_H = 180, 135


def thumbnail(coords: np.ndarray, clusters: np.ndarray, title: str = "map") -> str:
    """An inline SVG of `coords` (n x 2) coloured by cluster (noise grey); at most
    THUMB_POINTS points (a fixed, evenly spaced sample), so a few tens of KB at most."""
    coords = np.asarray(coords, dtype=float)
    clusters = np.asarray(clusters).astype(int)
    if len(coords) == 0 or coords.ndim != 2 or coords.shape[1] < 2:
        return ""
    if len(coords) > THUMB_POINTS:
        keep = np.linspace(0, len(coords) - 1, THUMB_POINTS).astype(int)
        coords, clusters = coords[keep], clusters[keep]
    finite = np.isfinite(coords[:, :2]).all(axis=1)
    coords, clusters = coords[finite, :2], clusters[finite]
    if len(coords) == 0:
        return ""
    low, high = coords.min(axis=0), coords.max(axis=0)
    span = np.where(high - low > 0, high - low, 1.0)
    pad = 4
    x = pad + (coords[:, 0] - low[0]) / span[0] * (THUMB_W - 2 * pad - 2)
    y = pad + (high[1] - coords[:, 1]) / span[1] * (THUMB_H - 2 * pad - 2)
    paths = []
    for cluster in sorted(set(clusters.tolist())):
        mask = clusters == cluster
        colour = NOISE if cluster < 0 else PALETTE[cluster % len(PALETTE)]
        d = "".join(f"M{a:.0f} {b:.0f}h2v2h-2z" for a, b in zip(x[mask], y[mask]))
        paths.append(f'<path fill="{colour}" d="{d}"/>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{THUMB_W}" height="{THUMB_H}" '
        f'viewBox="0 0 {THUMB_W} {THUMB_H}" role="img" '
        f'style="border:1px solid #ddd;background:#fff;margin:0.3em 0.3em 0.3em 0">'
        f"<title>{esc(title)}</title>{''.join(paths)}</svg>"
    )


def _figure(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


def analysis_html(analysis: Analysis) -> str:
    """The headline (space, documents, clusters, method, metrics), the per-class table,
    the clusters (size and name) and a thumbnail of the map coloured by cluster."""
    from . import report

    n_clusters = len({c for c in analysis.cluster_labels.tolist() if c != -1})
    stored = f"analysis {analysis.id}" if analysis.id else "analysis (not stored)"
    parts = [
        f"<div><p><b>{esc(stored)}</b>: {esc(analysis.space.describe())}, "
        f"{len(analysis.ids)} documents, {n_clusters} clusters<br>"
        f"{esc(report.method_line(analysis.metrics))}<br>"
        f"{esc(report.verdict(analysis.metrics))}</p>"
    ]
    per_class = analysis.metrics.get("per_class") or {}
    tables = []
    if per_class:
        rows = [
            (
                name,
                "-" if row["majority_cluster"] is None else row["majority_cluster"],
                f"{row['share']:.3f}",
                row.get("size", ""),
            )
            for name, row in per_class.items()
        ]
        tables.append(table(["class", "majority cluster", "share", "size"], rows))
    clusters = [
        ("noise" if c["cluster"] == -1 else c["cluster"], c["size"], c["name"])
        for c in analysis_clusters(analysis)
    ]
    if clusters:
        tables.append(table(["cluster", "size", "name"], clusters))
    thumb = thumbnail(analysis.coords, analysis.cluster_labels, "map coloured by cluster")
    parts.append(
        '<div style="display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap">'
        + thumb
        + "".join(f"<div>{t}</div>" for t in tables)
        + "</div>"
    )
    if analysis.notes:
        parts.append("".join(f"<p><i>{esc(note)}</i></p>" for note in analysis.notes))
    return "".join(parts) + "</div>"


def analysis_clusters(analysis: Analysis) -> list[dict[str, Any]]:
    from .describe import with_names

    return with_names(analysis.clusters)


def comparison_html(comparison: Comparison) -> str:
    """The headline, the scores of both spaces, the per-class table and both maps
    (B aligned onto A) coloured by A's clusters."""
    stored = f"comparison {comparison.id}" if comparison.id else "comparison (not stored)"
    parts = [
        f"<div><p><b>{esc(stored)}</b>: A = {esc(comparison.space_a.describe())}, "
        f"B = {esc(comparison.space_b.describe())}, {len(comparison.ids)} documents<br>"
        f"{esc(comparison.headline())}</p>"
    ]
    scores = comparison.scores.dropna(how="all", subset=["a", "b"])
    tables = [
        table(
            ["metric", "A", "B", "better"],
            [
                (name, _figure(row["a"]), _figure(row["b"]), (row["winner"] or "-").upper())
                for name, row in scores.iterrows()
            ],
        )
    ]
    per_class = comparison.per_class
    if len(per_class):
        tables.append(
            table(
                ["class", "size", "A", "B", "better"],
                [
                    (
                        name,
                        row["size"],
                        _figure(row["share_a"]),
                        _figure(row["share_b"]),
                        (row["winner"] or "-").upper(),
                    )
                    for name, row in per_class.iterrows()
                ],
            )
        )
    thumbs = thumbnail(comparison.coords_a, comparison.clusters_a, "A") + thumbnail(
        comparison.coords_b, comparison.clusters_a, "B (aligned onto A)"
    )
    parts.append(
        '<div style="display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap">'
        f"<div>{thumbs}</div>" + "".join(f"<div>{t}</div>" for t in tables) + "</div>"
    )
    return "".join(parts) + "</div>"
