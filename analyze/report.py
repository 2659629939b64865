"""Writing results: points.csv, metrics.json, clusters.json, report.md, and terminal tables.

Output is deterministic (fixed float formats, sorted keys, no timestamps), so the same
store, options and seed give byte-identical files.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

HEADLINE = (
    "hungarian_accuracy",
    "ari",
    "nmi",
    "homogeneity",
    "completeness",
    "v_measure",
    "silhouette",
)
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def escape_markdown(text: str) -> str:
    """Document text shown in report.md can carry no links, HTML or table breaks."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text.replace("\n", " "))


def write_points(
    path: Path,
    ids,
    labels,
    clusters: np.ndarray,
    coords: np.ndarray,
    names: dict[int, str] | None = None,
) -> None:
    """One row per document; `cluster_name` (the last column) is its cluster's name."""
    names = names or {}
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "label", "cluster", "x", "y", "cluster_name"])
        for doc_id, label, cluster, (x, y) in zip(ids, labels, clusters, coords):
            cluster = int(cluster)
            writer.writerow(
                [
                    doc_id,
                    "" if label is None else label,
                    cluster,
                    f"{x:.5f}",
                    f"{y:.5f}",
                    names.get(cluster, "noise" if cluster == -1 else ""),
                ]
            )


def write_json(path: Path, data: Any) -> None:
    path.write_text(
        json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def merged_note(row: dict) -> str:
    """A merged class's flag, e.g. `⚠ shares cluster 1 with rec.motorcycles`; else ''."""
    others = row.get("shares_cluster_with") or []
    if not others:
        return ""
    return f"\u26a0 shares cluster {row['majority_cluster']} with {', '.join(others)}"


def _matched(row: dict[str, Any]) -> str:
    """The Hungarian-matched share as shown; '-' for an analysis stored before it existed."""
    share = row.get("hungarian_share")
    return "-" if share is None else f"{share:.3f}"


def per_class_table(metrics: dict[str, Any]) -> str:
    """The notebook's table as aligned text, with the share in the Hungarian-matched
    cluster beside the majority share and a flag on classes that share a majority cluster."""
    rows = metrics.get("per_class", {})
    if not rows:
        return f"({metrics.get('labels', 'no labels: evaluation against labels skipped')})"
    noise = any(row.get("noise") for row in rows.values())
    width = max(len("class"), *(len(name) for name in rows))
    lines = [
        f"{'class':<{width}}  majority cluster  share  matched" + ("  noise" if noise else ""),
        f"{'-' * width}  ----------------  -----  -------" + ("  -----" if noise else ""),
    ]
    for name, row in rows.items():
        majority = "-" if row["majority_cluster"] is None else row["majority_cluster"]
        line = f"{name:<{width}}  {majority:>16}  {row['share']:.3f}  {_matched(row):>7}"
        line += f"  {row['noise']:.3f}" if noise else ""
        flag = merged_note(row)
        lines.append(line + (f"  {flag}" if flag else ""))
    if any(row.get("merged") for row in rows.values()):
        lines.append(
            "(matched: the share in the cluster the one-to-one Hungarian matching gave the "
            "class; classes sharing a majority cluster are merged there)"
        )
    if metrics.get("unlabelled"):
        lines.append(f"({metrics['unlabelled']} documents without a label were not scored)")
    return "\n".join(lines)


def coverage_lead(metrics: dict[str, Any]) -> str | None:
    """With noise, "clustered 37% of documents (435 noise documents not scored)": the
    agreement figures after it score only the clustered documents. None without."""
    if not metrics.get("noise"):
        return None
    coverage = float(metrics.get("coverage", 0.0))
    share = f"{coverage:.0%}"
    if share == "100%":  # some noise: never "all"
        share = f"{coverage:.1%}" if f"{coverage:.1%}" != "100.0%" else "over 99.9%"
    return f"clustered {share} of documents ({metrics['noise']} noise documents not scored)"


def headline(metrics: dict[str, Any]) -> str:
    """The metrics in one line; with noise, led by the share of documents clustered."""
    parts = [f"{key} {metrics[key]:.3f}" for key in HEADLINE if metrics.get(key) is not None]
    line = ", ".join(parts)
    lead = coverage_lead(metrics)
    if lead is None:
        return line
    return f"{lead}; {line}" if line else lead


def verdict(metrics: dict[str, Any]) -> str:
    """The headline, or why there is none."""
    if metrics.get("coverage") == 0:
        lever = (
            "a larger --eps"
            if metrics.get("params", {}).get("algorithm") == "dbscan"
            else ("a smaller --min-cluster-size")
        )
        return f"no clusters: every document is noise (try {lever})"
    return headline(metrics) or "no metrics (a single cluster)"


def method_line(metrics: dict[str, Any]) -> str:
    """What actually ran, e.g. `MiniBatchKMeans k=20; map: openTSNE ...` (large N switches)."""
    params = metrics["params"]
    clustering = params["clustering"]
    method = clustering.get("method", params["algorithm"])
    k = f" k={clustering['k']}" if "k" in clustering else ""
    if "k_auto_range" in clustering:
        low, high = clustering["k_auto_range"]
        best = metrics.get("k_silhouette", {}).get(str(clustering["k"]))
        if clustering.get("text_weight"):
            # k was scored on vectors + words, a figure unlike the headline's silhouette
            # (the vectors alone): one silhouette is printed, the headline's
            k += f" (chosen by silhouette of vectors + words among {low}..{high})"
        else:  # the same figure as the headline's silhouette (same vectors, sample, seed)
            score = f", silhouette {best:.3f}" if best is not None else ""
            k += f" (chosen by silhouette among {low}..{high}{score})"
    if clustering.get("cluster_dims"):
        k += f" on {clustering.get('on', 'a UMAP reduction')}"
    if clustering.get("text_weight"):
        weight, dims = clustering["text_weight"], clustering["text_dims"]
        k += f" on vectors + words (LSA {dims} dims, weight {weight:g})"
    return f"{method}{k}; map: {params['map']}"


def naming_line(naming: dict[str, Any] | None) -> str | None:
    """What naming this run cost: "cluster names (gemini-2.5-flash-lite): 3 names
    requested, 1 reused from the cache"; None when names were not asked for."""
    if not naming:
        return None
    line = (
        f"cluster names ({naming['model']}): {naming['requested']} names requested, "
        f"{naming['reused']} reused from the cache"
    )
    if naming.get("kept_terms"):
        line += f", {naming['kept_terms']} kept their terms"
    if naming.get("retries"):
        line += f" ({naming['retries']} retries)"
    return line


def cluster_table(clusters: list[dict[str, Any]]) -> str:
    """Each cluster's number, size and name, as aligned text (the CLI's table)."""
    width = max([len("cluster"), *(len(str(c["cluster"])) for c in clusters)])
    sizes = max([len("size"), *(len(str(c["size"])) for c in clusters)])
    lines = [f"{'cluster':>{width}}  {'size':>{sizes}}  name"]
    lines.append(f"{'-' * width}  {'-' * sizes}  ----")
    for info in clusters:
        number = "noise" if info["cluster"] == -1 else str(info["cluster"])
        source = "" if info.get("name_source", "terms") == "terms" else " *"
        lines.append(f"{number:>{width}}  {info['size']:>{sizes}}  {info['name']}{source}")
    if any(c.get("name_source", "terms") != "terms" for c in clusters):
        lines.append("(* named by a model; without a star, by the cluster's top terms)")
    return "\n".join(lines)


def write_markdown(
    path: Path,
    metrics: dict,
    clusters: list[dict],
    images: list[str],
    naming: dict[str, Any] | None = None,
) -> None:
    space = metrics["space"]
    params = metrics["params"]
    lines = [
        "# embedlab analysis",
        "",
        f"- space: {space['provider']}:{space['model']} "
        f"({space['dims']} dims, task {space['task_type']})",
        f"- documents: {params['documents']}; clustering: {params['algorithm']} "
        f"{json.dumps(params['clustering'], sort_keys=True)}; map: {params['map']}",
        f"- metrics: {verdict(metrics)}",
    ]
    if naming:  # who named the clusters; this run's counts are not here (files stay identical)
        by_model = sum(1 for c in clusters if c.get("name_source") == naming["model"])
        rest = ", the others by their top terms" if by_model < naming["clusters"] else ""
        lines.append(
            f"- cluster names: {by_model} of {naming['clusters']} by {naming['model']} "
            f"(prompt v{naming['prompt_version']}){rest}"
        )
    lines.append("")
    if metrics.get("per_class"):
        lines += [
            "## Classes and their majority cluster",
            "",
            "| class | majority cluster | share | Hungarian-matched share | shares cluster |",
            "|---|---|---|---|---|",
        ]
        for name, row in metrics["per_class"].items():
            majority = "-" if row["majority_cluster"] is None else row["majority_cluster"]
            lines.append(
                f"| {escape_markdown(name)} | {majority} | {row['share']:.3f} | "
                f"{_matched(row)} | {escape_markdown(merged_note(row))} |"
                + (f" {row['noise']:.3f} noise |" if row.get("noise") else "")
            )
        lines.append("")
    lines += [f"![{name}]({name})" for name in images] + [""]
    lines += ["## Clusters", ""]
    for info in clusters:
        number = "noise" if info["cluster"] == -1 else f"cluster {info['cluster']}"
        named = "" if info["cluster"] == -1 else f": {escape_markdown(info['name'])}"
        lines.append(f"### {number}{named} ({info['size']} documents)")
        lines.append("")
        labels = ", ".join(
            f"{escape_markdown(str(k))} {v}" for k, v in list(info["labels"].items())[:5]
        )
        lines.append(f"- labels: {labels}")
        lines.append(f"- terms: {escape_markdown(', '.join(info['terms'])) or '(none)'}")
        for rep in info["representatives"]:
            lines.append(f"- {escape_markdown(rep['id'])}: {escape_markdown(rep['snippet'])}")
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")
