"""One comparison of two spaces as a typed result: DataFrames for a notebook, files for a
report, a dict for JSON.

A `Comparison` is what `Lab.compare` returns and what `Lab.comparison(id)` reopens from
the store; comparison.json, report.md, the PNGs and the service's bodies render it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidRequest
from ..store import Space
from ..store.artifacts import pack_arrays, unpack_arrays
from ..store.selection import NO_LABEL
from . import plots, report
from .records import space_dict

if TYPE_CHECKING:
    import pandas as pd

# Every file a comparison may write: a reused --out folder loses the ones not written.
OUTPUT_FILES = (
    "comparison.json",
    "points.csv",
    "maps.png",
    "maps_by_agreement.png",
    "agreement.png",
    "report.md",
)
FIGURES = ("maps", "agreement", "histogram")
MOST_DIFFERENT = 10
SHOWN_NEIGHBOURS = 3  # nearest ids shown per side for a document whose neighbours differ
SCORE_NAMES = {
    "hungarian_accuracy": "Hungarian accuracy",
    "ari": "ARI",
    "nmi": "NMI",
    "silhouette": "silhouette (cosine)",
}


@dataclass
class Comparison:
    """Two spaces on the same documents: neighbourhoods, clusterings, scores, maps."""

    space_a: Space
    space_b: Space
    ids: list[str]
    labels: list[str | None]
    snippets: list[str]
    jaccard: np.ndarray  # per document: Jaccard of its neighbour sets in A and B
    shared: np.ndarray  # per document: neighbours in both sets
    crossed: np.ndarray  # per document: similarity of its neighbours in the other space
    neighbours_a: np.ndarray  # n x k row numbers, most similar first
    neighbours_b: np.ndarray
    clusters_a: np.ndarray
    clusters_b: np.ndarray
    coords_a: np.ndarray
    coords_b: np.ndarray  # aligned onto coords_a
    summary: dict[str, Any]
    documents: dict[str, int]
    options: dict[str, Any]
    selection: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    id: str | None = None
    created: str | None = None
    files: list[str] = field(default_factory=list)

    # -- views -----------------------------------------------------------------------------

    @property
    def has_labels(self) -> bool:
        return len({label for label in self.labels if label is not None}) > 1

    @property
    def neighbourhoods(self) -> pd.DataFrame:
        """One row per document: id, label, jaccard, shared (of k neighbours), crossed (see
        most_different), snippet."""
        import pandas as pd

        return pd.DataFrame(
            {
                "id": self.ids,
                "label": self.labels,
                "jaccard": self.jaccard.astype(float),
                "shared": self.shared.astype(int),
                "crossed": self.crossed.astype(float),
                "snippet": self.snippets,
            }
        )

    def most_different(self, n: int = MOST_DIFFERENT) -> pd.DataFrame:
        """The documents whose neighbourhoods differ most, with their nearest documents in
        each space: lowest Jaccard first, then (ties are many when spaces disagree) the
        lowest `crossed` similarity, the documents whose neighbours moved furthest."""
        import pandas as pd

        order = sorted(
            range(len(self.ids)),
            key=lambda r: (float(self.jaccard[r]), float(self.crossed[r]), self.ids[r]),
        )
        rows = []
        for r in order[:n]:
            rows.append(
                {
                    "id": self.ids[r],
                    "label": self.labels[r],
                    "jaccard": round(float(self.jaccard[r]), 6),
                    "shared": int(self.shared[r]),
                    "crossed": round(float(self.crossed[r]), 6),
                    "nearest_a": [self.ids[j] for j in self.neighbours_a[r][:SHOWN_NEIGHBOURS]],
                    "nearest_b": [self.ids[j] for j in self.neighbours_b[r][:SHOWN_NEIGHBOURS]],
                    "snippet": self.snippets[r],
                }
            )
        columns = ["id", "label", "jaccard", "shared", "crossed", "nearest_a", "nearest_b"]
        columns.append("snippet")
        return pd.DataFrame(rows, columns=columns)

    @property
    def scores(self) -> pd.DataFrame:
        """Each space's scores side by side (rows: metric; columns a, b, winner)."""
        import pandas as pd

        evaluation = self.summary["evaluation"]
        rows = [
            {
                "metric": name,
                "a": evaluation["a"].get(name),
                "b": evaluation["b"].get(name),
                "winner": evaluation["winners"].get(name),
            }
            for name in SCORE_NAMES
        ]
        return pd.DataFrame(rows, columns=["metric", "a", "b", "winner"]).set_index("metric")

    @property
    def per_class(self) -> pd.DataFrame:
        """Per class: its size and the share in its majority cluster, in A and in B."""
        import pandas as pd

        columns = ["class", "size", "share_a", "share_b", "winner"]
        rows = self.summary["evaluation"]["per_class"]
        return pd.DataFrame(rows, columns=columns).set_index("class")

    @property
    def points(self) -> pd.DataFrame:
        """One row per document: both maps (B aligned onto A), both clusters, agreement."""
        import pandas as pd

        return pd.DataFrame(
            {
                "id": self.ids,
                "label": self.labels,
                "cluster_a": self.clusters_a.astype(int),
                "cluster_b": self.clusters_b.astype(int),
                "x_a": self.coords_a[:, 0],
                "y_a": self.coords_a[:, 1],
                "x_b": self.coords_b[:, 0],
                "y_b": self.coords_b[:, 1],
                "jaccard": self.jaccard.astype(float),
            }
        )

    def headline(self) -> str:
        """The comparison in one line."""
        hood, clusterings = self.summary["neighbourhoods"], self.summary["clusterings"]
        line = (
            f"Jaccard@{hood['k']} mean {hood['jaccard_mean']:.3f} "
            f"(chance {hood['chance_jaccard']:.3f}); clusterings at k={clusterings['k']}: "
            f"ARI {clusterings['ari']:.3f}, NMI {clusterings['nmi']:.3f}"
        )
        winners = self.summary["evaluation"]["winners"]
        if "hungarian_accuracy" in winners:
            a = self.summary["evaluation"]["a"]["hungarian_accuracy"]
            b = self.summary["evaluation"]["b"]["hungarian_accuracy"]
            line += f"; Hungarian accuracy A {a:.3f}, B {b:.3f}"
        return line

    def lines(self) -> list[str]:
        """The comparison as terminal text (`embedlab compare`): what was compared,
        agreement, scores, outliers."""
        docs, hood = self.documents, self.summary["neighbourhoods"]
        clusterings = self.summary["clusterings"]
        left = [
            f"{docs[key]} {what}"
            for key, what in (
                ("only_in_a", "only in A"),
                ("only_in_b", "only in B"),
                ("text_differs", "with another text in each"),
            )
            if docs.get(key)
        ]
        lines = [
            f"A: {self.space_a.describe()}",
            f"B: {self.space_b.describe()}",
            f"documents held by both: {docs['compared']}"
            + _by_content(docs)
            + (f" (left out: {', '.join(left)})" if left else ""),
            f"neighbourhoods ({hood['k']} nearest, exact): "
            f"Jaccard mean {hood['jaccard_mean']:.3f}, "
            f"median {hood['jaccard_median']:.3f} (p10 {hood['jaccard_quantiles']['p10']:.3f}, "
            f"p90 {hood['jaccard_quantiles']['p90']:.3f}; chance {hood['chance_jaccard']:.3f}); "
            f"{hood['shared_mean']:.2f} of {hood['k']} neighbours shared on average",
            f"clusterings (k-means, k={clusterings['k']}): ARI {clusterings['ari']:.3f}, "
            f"NMI {clusterings['nmi']:.3f} between A and B",
            "",
        ]
        scores = self.scores.dropna(how="all", subset=["a", "b"])
        width = max(len("metric"), *(len(name) for name in scores.index))
        lines.append(f"{'metric':<{width}}  {'A':>6}  {'B':>6}  better")
        for name, row in scores.iterrows():
            a, b = (f"{v:.3f}" if v is not None and v == v else "-" for v in (row["a"], row["b"]))
            lines.append(f"{name:<{width}}  {a:>6}  {b:>6}  {(row['winner'] or '-').upper()}")
        if not self.summary["evaluation"]["labelled"]:
            lines.append(f"({self.summary['evaluation']['labels']})")
        table = self.per_class
        if len(table):
            width = max(len("class"), *(len(str(name)) for name in table.index))
            lines += ["", f"{'class':<{width}}  {'A':>6}  {'B':>6}  better"]
            for name, row in table.iterrows():
                lines.append(
                    f"{name:<{width}}  {row['share_a']:>6.3f}  {row['share_b']:>6.3f}  "
                    f"{(row['winner'] or '-').upper()}"
                )
        lines += ["", "documents whose neighbourhoods differ most:"]
        for row in self.most_different(5).itertuples(index=False):
            lines.append(f"  {row.jaccard:.3f}  {row.id}  [{row.label or '-'}]  {row.snippet[:70]}")
        return lines

    def __repr__(self) -> str:
        stored = f"id={self.id!r}, " if self.id else ""
        return (
            f"<Comparison {stored}A={self.space_a.describe()} B={self.space_b.describe()}: "
            f"{len(self.ids)} documents; {self.headline()}>"
        )

    def _repr_html_(self) -> str:
        """The notebook's view: headline, scores, per-class table, both maps."""
        from .rich import comparison_html

        return comparison_html(self)

    def figure(self, kind: str = "maps") -> Any:
        """A matplotlib Figure: "maps" (side by side, by label, or by A's clusters without
        labels), "agreement" (the maps coloured by Jaccard) or "histogram"."""
        titles = (f"A: {self.space_a.describe()}", f"B: {self.space_b.describe()} (aligned)")
        if kind == "maps":
            if self.has_labels:
                groups = [NO_LABEL if x is None else str(x) for x in self.labels]
                fonts, note = plots.glyph_fonts(sorted(set(groups)))
                if note and note not in self.notes:
                    self.notes.append(note)
                what = "label"
            else:
                groups = [f"cluster {c}" for c in self.clusters_a.tolist()]
                fonts, what = None, f"cluster in A (k={self.options['k']})"
            return plots.paired_maps(
                self.coords_a, self.coords_b, groups, titles, f"coloured by {what}", fonts
            )
        if kind == "agreement":
            k = self.summary["neighbourhoods"]["k"]
            return plots.paired_values(
                self.coords_a, self.coords_b, self.jaccard, titles, f"Jaccard@{k} of neighbours"
            )
        if kind == "histogram":
            hood = self.summary["neighbourhoods"]
            return plots.shared_histogram(hood["shared_histogram"], hood["k"], hood["shared_mean"])
        raise InvalidRequest(f"unknown figure {kind!r}; use one of {', '.join(FIGURES)}")

    # -- JSON and files --------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """comparison.json: everything but the per-document arrays (no timestamps, so the
        same store and options give the same file)."""
        different = self.most_different().to_dict(orient="records")
        summary = dict(self.summary)
        summary["neighbourhoods"] = {**summary["neighbourhoods"], "most_different": different}
        return {
            "spaces": {
                "a": {**space_dict(self.space_a), "name": self.space_a.describe()},
                "b": {**space_dict(self.space_b), "name": self.space_b.describe()},
            },
            "documents": self.documents,
            "selection": self.selection,
            "options": self.options,
            **summary,
            "notes": list(self.notes),
        }

    def save(self, out: str | os.PathLike[str]) -> list[str]:
        """Write comparison.json, points.csv, report.md and the PNGs into `out`."""
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise InvalidRequest(f"--out {out} is a file; give a folder for the comparison")
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name in OUTPUT_FILES:  # this comparison owns the folder's files
                (out / name).unlink(missing_ok=True)
            files = self._write(out)
        except OSError as exc:
            raise InvalidRequest(f"cannot write the comparison to {out}: {exc}") from None
        self.files = files
        return files

    def _write(self, out: Path) -> list[str]:
        images = []
        for kind, name in (
            ("maps", "maps.png"),
            ("agreement", "maps_by_agreement.png"),
            ("histogram", "agreement.png"),
        ):
            plots.save_figure(self.figure(kind), out / name)
            images.append(name)
        report.write_json(out / "comparison.json", self.to_dict())
        self.points.to_csv(out / "points.csv", index=False, float_format="%.5f")
        (out / "report.md").write_text(self.markdown(images), encoding="utf-8")
        return ["comparison.json", "points.csv", *images, "report.md"]

    def markdown(self, images: list[str] | None = None) -> str:
        """report.md: the figures, the tables, and the documents that moved most."""
        esc = report.escape_markdown
        docs, hood = self.documents, self.summary["neighbourhoods"]
        clusterings, evaluation = self.summary["clusterings"], self.summary["evaluation"]
        maps = self.summary["maps"]
        lines = [
            "# embedlab comparison",
            "",
            f"- A: {self.space_a.describe()}",
            f"- B: {self.space_b.describe()}",
            f"- documents compared (held by both, same text): {docs['compared']}"
            + _by_content(docs)
            + _left_out(docs),
            "",
            f"## Neighbourhoods ({hood['k']} nearest, exact, in the original spaces)",
            "",
            f"Jaccard@{hood['k']} between each document's neighbours in A and in B: mean "
            f"{hood['jaccard_mean']:.3f}, median {hood['jaccard_median']:.3f} "
            f"(p10 {hood['jaccard_quantiles']['p10']:.3f}, "
            f"p90 {hood['jaccard_quantiles']['p90']:.3f}); two random sets would give "
            f"{hood['chance_jaccard']:.3f}. On average {hood['shared_mean']:.2f} of "
            f"{hood['k']} neighbours are shared; {hood['identical_share']:.1%} of documents "
            f"keep all of them, {hood['disjoint_share']:.1%} none.",
            "",
            "| shared neighbours | documents |",
            "|---|---|",
        ]
        lines += [f"| {s} | {c} |" for s, c in enumerate(hood["shared_histogram"])]
        lines += [
            "",
            f"## Clusterings (k-means, k={clusterings['k']}, seed {clusterings['seed']})",
            "",
            f"Agreement between the two clusterings: ARI {clusterings['ari']:.3f}, "
            f"NMI {clusterings['nmi']:.3f}.",
            "",
            "## Scores",
            "",
        ]
        if not evaluation["labelled"]:
            lines += [f"({esc(evaluation['labels'])})", ""]
        lines += ["| metric | A | B | better |", "|---|---|---|---|"]
        for name, row in self.scores.iterrows():
            if row["a"] is None and row["b"] is None:
                continue
            lines.append(
                f"| {SCORE_NAMES[name]} | {_num(row['a'])} | {_num(row['b'])} | "
                f"{_side(row['winner'])} |"
            )
        lines += [
            "",
            "Silhouette is measured in each space's own geometry; the label scores compare "
            "each clustering with the same labels.",
            "",
        ]
        if evaluation["per_class"]:
            lines += [
                "### Share of each class in its majority cluster",
                "",
                "| class | documents | A | B | better |",
                "|---|---|---|---|---|",
            ]
            for row in evaluation["per_class"]:
                lines.append(
                    f"| {esc(row['class'])} | {row['size']} | {row['share_a']:.3f} | "
                    f"{row['share_b']:.3f} | {_side(row['winner'])} |"
                )
            lines.append("")
        disparity = maps["procrustes_disparity"]
        lines += [
            "## Maps",
            "",
            f"A: {maps['a']}; B: {maps['b']}, aligned onto A by Procrustes"
            + (f" (disparity {disparity:.3f}; 0 = same layout)" if disparity is not None else "")
            + ".",
            "",
        ]
        lines += [f"![{name}]({name})" for name in images or []] + [""]
        lines += [
            "## Documents whose neighbourhoods differ most",
            "",
            "| id | label | Jaccard | shared | nearest in A | nearest in B | text |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in self.most_different().to_dict(orient="records"):
            lines.append(
                f"| {esc(row['id'])} | {esc(str(row['label'] or '-'))} | {row['jaccard']:.3f} | "
                f"{row['shared']} | {esc(', '.join(row['nearest_a']))} | "
                f"{esc(', '.join(row['nearest_b']))} | {esc(row['snippet'])} |"
            )
        lines.append("")
        if self.notes:
            lines += ["## Notes", ""] + [f"- {esc(note)}" for note in self.notes] + [""]
        return "\n".join(lines)

    # -- storage ---------------------------------------------------------------------------

    def to_record(self) -> tuple[dict[str, Any], bytes]:
        """(head, payload) for the store: comparison.json's content, and the arrays."""
        head = {
            **self.to_dict(),
            "id": self.id,
            "created": self.created,
            "space_collection": self.space_a.collection_name,
            "space_b_collection": self.space_b.collection_name,
            "timings": self.timings,
            "summary_full": self.summary,
        }
        payload = pack_arrays(
            ids=np.array(self.ids, dtype=str),
            labels=np.array(["" if x is None else x for x in self.labels], dtype=str),
            labelled=np.array([x is not None for x in self.labels], dtype=bool),
            snippets=np.array(self.snippets, dtype=str),
            jaccard=self.jaccard.astype(np.float32),
            shared=self.shared.astype(np.int32),
            crossed=self.crossed.astype(np.float32),
            neighbours_a=self.neighbours_a.astype(np.int32),
            neighbours_b=self.neighbours_b.astype(np.int32),
            clusters_a=self.clusters_a.astype(np.int32),
            clusters_b=self.clusters_b.astype(np.int32),
            coords_a=self.coords_a.astype(np.float32),
            coords_b=self.coords_b.astype(np.float32),
        )
        return head, payload

    @classmethod
    def from_record(cls, head: dict[str, Any], payload: bytes) -> Comparison:
        arrays = unpack_arrays(payload)
        labels = [
            str(x) if ok else None
            for x, ok in zip(arrays["labels"].tolist(), arrays["labelled"].tolist())
        ]

        def space(side: str) -> Space:
            s = head["spaces"][side]
            return Space.from_dict(s)

        return cls(
            space_a=space("a"),
            space_b=space("b"),
            ids=[str(x) for x in arrays["ids"].tolist()],
            labels=labels,
            snippets=[str(x) for x in arrays["snippets"].tolist()],
            jaccard=arrays["jaccard"],
            shared=arrays["shared"],
            crossed=arrays["crossed"],
            neighbours_a=arrays["neighbours_a"].astype(np.int64),
            neighbours_b=arrays["neighbours_b"].astype(np.int64),
            clusters_a=arrays["clusters_a"].astype(int),
            clusters_b=arrays["clusters_b"].astype(int),
            coords_a=arrays["coords_a"],
            coords_b=arrays["coords_b"],
            summary=head["summary_full"],
            documents=head["documents"],
            options=head["options"],
            selection=head["selection"],
            notes=list(head.get("notes") or []),
            timings=dict(head.get("timings") or {}),
            id=head["id"],
            created=head["created"],
        )


def _by_content(docs: dict[str, int]) -> str:
    """How many pairs were made by their text (their ids differ); '' when none."""
    n = docs.get("paired_by_content")
    return f" (paired by content: {n}, the same text under another id in B)" if n else ""


def _left_out(docs: dict[str, int]) -> str:
    parts = []
    if docs.get("only_in_a"):
        parts.append(f"{docs['only_in_a']} selected only in A")
    if docs.get("only_in_b"):
        parts.append(f"{docs['only_in_b']} only in B")
    if docs.get("text_differs"):
        parts.append(f"{docs['text_differs']} with another text in each")
    return f" (left out: {', '.join(parts)})" if parts else ""


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _side(winner: str | None) -> str:
    return {"a": "A", "b": "B", "tie": "tie"}.get(winner or "", "-")
