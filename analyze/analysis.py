"""One analysis as a typed result: DataFrames and arrays for a notebook, files for a report.

An `Analysis` is what `Lab.analyze` returns and what `Lab.analysis(id)` reopens from the
store; the report files, terminal tables and (later) JSON bodies are renderings of it.
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
from . import evaluate, plots, report
from .describe import with_names
from .records import space_dict as space_dict  # re-exported: run, update use it from here

if TYPE_CHECKING:
    import pandas as pd

# Every file an analysis may write: a reused --out folder loses the ones not written this
# time (an old confusion.png beside a report without labels would mislead).
OUTPUT_FILES = (
    "points.csv",
    "metrics.json",
    "clusters.json",
    "map_by_label.png",
    "map_by_cluster.png",
    "confusion.png",
    "silhouette.png",
    "report.md",
    "map.html",
)
FIGURES = ("label", "cluster", "confusion", "silhouette")


@dataclass
class Analysis:
    """Clusters, map, metrics and descriptions of one selection of one space."""

    space: Space
    ids: list[str]
    labels: list[str | None]
    cluster_labels: np.ndarray
    coords: np.ndarray
    metrics: dict[str, Any]
    clusters: list[dict[str, Any]]
    options: dict[str, Any]
    selection: dict[str, Any]
    k_scores: dict[int, float] = field(default_factory=dict)
    map_cached: bool = False
    id: str | None = None
    created: str | None = None
    timings: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the figures could not do
    # what map.html carries beyond the analysis: its documents' texts and each point's
    # nearest points (positions int32 n x k, similarities float32), as plain data, or
    # (map_extras) a reader of them, set by whoever holds the store: a Lab reads it,
    # a RemoteLab asks its service (GET .../map-data); `map_data()` gives either
    map_texts: list[str] | None = field(default=None, repr=False, compare=False)
    map_neighbours: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, repr=False, compare=False
    )
    map_extras: Any = field(default=None, repr=False, compare=False)
    naming: dict[str, Any] = field(default_factory=dict)  # cluster names: model, counts, note
    # updates (analyze/update.py): the analysis this one updates, what the update did,
    # the reference data new documents are placed with, and the ids placed by this update
    parent: str | None = None
    update_report: dict[str, Any] | None = None
    reference: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    placed: list[str] = field(default_factory=list, repr=False)
    # analysis_identity (run.py): the documents, options, seed and naming it was made of;
    # `reused`: Lab.analyze returned this stored analysis for an identical request
    identity: str | None = field(default=None, repr=False)
    reused: bool = False

    # -- views -----------------------------------------------------------------------------

    @property
    def has_labels(self) -> bool:
        return len({label for label in self.labels if label is not None}) > 1

    @property
    def points(self) -> pd.DataFrame:
        """One row per document: id, label, cluster, x, y."""
        import pandas as pd

        return pd.DataFrame(
            {
                "id": self.ids,
                "label": self.labels,
                "cluster": self.cluster_labels.astype(int),
                "x": self.coords[:, 0],
                "y": self.coords[:, 1],
            }
        )

    @property
    def cluster_names(self) -> dict[int, str]:
        """Each cluster's name: a model's when it was named (name_clusters=True), else
        its first terms; noise (-1) is "noise"."""
        return {int(c["cluster"]): c["name"] for c in with_names(self.clusters)}

    @property
    def per_class(self) -> pd.DataFrame:
        """The notebook's table: each class, its majority cluster and the share there, the
        share in the cluster the Hungarian matching gave it, and the other classes with the
        same majority cluster (`merged` when there are any: one cluster holds them all)."""
        import pandas as pd

        rows = [
            {"class": name, "shares_cluster_with": [], "merged": False, **row}
            for name, row in (self.metrics.get("per_class") or {}).items()
        ]
        columns = [
            "class",
            "majority_cluster",
            "share",
            "size",
            "hungarian_share",
            "shares_cluster_with",
            "merged",
        ]
        return pd.DataFrame(rows, columns=columns).set_index("class")

    @property
    def confusion(self) -> pd.DataFrame:
        """Documents per class (rows) and cluster (columns); empty without labels."""
        import pandas as pd

        confusion = self.metrics.get("confusion")
        if not confusion:
            return pd.DataFrame()
        return pd.DataFrame(
            confusion["matrix"],
            index=pd.Index(confusion["classes"], name="class"),
            columns=pd.Index(confusion["clusters"], name="cluster"),
        )

    def figure(self, kind: str = "cluster") -> Any:
        """A matplotlib Figure ("label", "cluster", "confusion" or "silhouette")."""
        note = self.metrics["params"]["map"]
        if kind == "label":
            if not self.has_labels:
                raise InvalidRequest("these documents have no labels to colour the map by")
            names = [NO_LABEL if x is None else str(x) for x in self.labels]
            return plots.scatter_map(
                self.coords, names, f"{note}, coloured by label", self._colours(), self._fonts()
            )
        if kind == "cluster":
            legend = {
                c: "noise" if c == -1 else f"cluster {c}: {name}"
                for c, name in self.cluster_names.items()
            }
            names = [legend[c] for c in self.cluster_labels.tolist()]
            colours = self._colours()
            by_legend = {legend[c]: colours[f"cluster {c}"] for c in legend if c != -1}
            fonts, missing = plots.glyph_fonts(sorted(set(legend.values())))
            if missing and missing not in self.notes:
                self.notes.append(missing)
            return plots.scatter_map(
                self.coords, names, f"{note}, coloured by cluster", by_legend, fonts
            )
        if kind == "confusion":
            if "confusion" not in self.metrics:
                raise InvalidRequest("no confusion matrix: these documents have no labels")
            return plots.confusion_plot(self.metrics["confusion"], self._fonts())
        if kind == "silhouette":
            if not self.k_scores:
                raise InvalidRequest("no silhouette curve: k was not chosen with k='auto'")
            return plots.silhouette_plot(self.k_scores, self.metrics["params"]["clustering"]["k"])
        raise InvalidRequest(f"unknown figure {kind!r}; use one of {', '.join(FIGURES)}")

    def _fonts(self) -> list[str]:
        """Fonts that can draw the labels (checked once; a note when none can)."""
        fonts, note = plots.glyph_fonts(sorted({x for x in self.labels if x is not None}))
        if note and note not in self.notes:
            self.notes.append(note)
        return fonts

    def _colours(self) -> dict[str, int]:
        """One palette index per class and per cluster: a cluster matched to a class (the
        Hungarian matching) takes that class's colour when enough of its documents carry
        it (evaluate.cluster_matches, as on the browser map), so the two maps read alike;
        any other cluster gets a colour of its own, past the classes'."""
        classes = sorted({x for x in self.labels if x is not None})
        colours = {name: i for i, name in enumerate(classes)}
        matches = evaluate.cluster_matches(
            self.cluster_labels, list(self.labels), self.metrics.get("cluster_to_class") or {}
        )
        spare = len(classes)
        for cluster in sorted({c for c in self.cluster_labels.tolist() if c != -1}):
            match = matches.get(cluster)
            if match and match["wears_colour"] and match["label"] in colours:
                colours[f"cluster {cluster}"] = colours[match["label"]]
            else:
                colours[f"cluster {cluster}"] = spare
                spare += 1
        return colours

    def __repr__(self) -> str:
        n_clusters = len({c for c in self.cluster_labels.tolist() if c != -1})
        head = report.headline(self.metrics)
        stored = f"id={self.id!r}, " if self.id else ""
        method = report.method_line(self.metrics)
        tail = f"; {head}" if head else ""
        return (
            f"<Analysis {stored}{self.space.describe()}: {len(self.ids)} documents, "
            f"{n_clusters} clusters ({method}){tail}>"
        )

    def _repr_html_(self) -> str:
        """The notebook's view: headline, per-class table, clusters, a map thumbnail."""
        from .rich import analysis_html

        return analysis_html(self)

    def map_data(self) -> tuple[list[str] | None, tuple[np.ndarray, np.ndarray] | None]:
        """(texts, (neighbour positions, similarities)) for map.html: the plain fields
        when set, else read now by `map_extras`; (None, None) for an analysis that no
        store stands behind (the page then shows ids, labels and clusters only)."""
        if self.map_texts is not None or self.map_extras is None:
            return self.map_texts, self.map_neighbours
        texts, neighbours = self.map_extras()
        return list(texts), neighbours

    # -- renderings: the text a front end prints (report.py writes it) ----------------------

    def method_line(self) -> str:
        """The clustering and the map method, in one line."""
        return report.method_line(self.metrics)

    def per_class_table(self) -> str:
        """Each label's majority cluster and share, as aligned text."""
        return report.per_class_table(self.metrics)

    def verdict(self) -> str:
        """The metrics in one line."""
        return report.verdict(self.metrics)

    def cluster_table(self) -> str:
        """Each cluster's number, size and name, as aligned text."""
        return report.cluster_table(self.clusters)

    def naming_line(self) -> str | None:
        """Who named the clusters (None: their top terms did)."""
        return report.naming_line(self.naming)

    # -- files -----------------------------------------------------------------------------

    def save(self, out: str | os.PathLike[str], html: bool = False) -> list[str]:
        """Write the report files into `out` (created; files of an older analysis removed);
        with `html`, also `map.html`, the interactive map as one self-contained file."""
        import time

        started = time.perf_counter()
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise InvalidRequest(f"--out {out} is a file; give a folder for the report")
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name in OUTPUT_FILES:  # this analysis owns the folder's report files
                (out / name).unlink(missing_ok=True)
            files = self._write(out)
            if html:
                from .html import write_map_html

                texts, neighbours = self.map_data()
                write_map_html(out / "map.html", self, texts, neighbours)
                files.append("map.html")
        except PermissionError as exc:
            raise InvalidRequest(f"cannot write the report to {out}: {exc.strerror}") from None
        except OSError as exc:
            raise InvalidRequest(f"cannot write the report to {out}: {exc}") from None
        self.files = files
        self.timings["write"] = time.perf_counter() - started
        return files

    def _write(self, out: Path) -> list[str]:
        report.write_points(
            out / "points.csv",
            self.ids,
            self.labels,
            self.cluster_labels,
            self.coords,
            self.cluster_names,
        )
        report.write_json(out / "metrics.json", self.metrics)
        report.write_json(out / "clusters.json", self.clusters)
        images = []
        kinds = [("label", "map_by_label.png")] if self.has_labels else []
        kinds.append(("cluster", "map_by_cluster.png"))
        if "confusion" in self.metrics:
            kinds.append(("confusion", "confusion.png"))
        if self.k_scores:
            kinds.append(("silhouette", "silhouette.png"))
        for kind, name in kinds:
            plots.save_figure(self.figure(kind), out / name)
            images.append(name)
        report.write_markdown(
            out / "report.md", self.metrics, with_names(self.clusters), images, self.naming
        )
        return ["points.csv", "metrics.json", "clusters.json", *images, "report.md"]

    def update_lines(self) -> list[str]:
        """The update report in words: counts, refit, drift figures and the advice (empty
        for an analysis that is not an update)."""
        r = self.update_report
        if not r:
            return []
        d = r.get("drift", {})
        lines = [
            f"update of analysis {self.parent}: kept {r['kept']}, added {r['added']}, "
            f"removed {r['removed']}, changed {r['changed']} (stored as analysis {self.id})"
        ]
        if r.get("refit"):
            lines.append(f"refit: {r['refit']}")
            if r.get("disparity") is not None:
                lines.append(
                    "old documents between the two maps: Procrustes disparity "
                    f"{r['disparity']:.3f}; {r.get('kept_cluster_share', 0):.1%} keep their "
                    "cluster number"
                )
        lines.append(
            f"drift: {d.get('placed_share', 0):.1%} of the documents placed since the last fit; "
            f"similarity to their cluster centroid new {_figure(d.get('similarity_new'))} vs old "
            f"{_figure(d.get('similarity_old'))}; noise new {_share(d.get('noise_new'))} vs old "
            f"{_share(d.get('noise_old'))}; map neighbourhoods kept new "
            f"{_figure(d.get('preservation_new'))} vs old {_figure(d.get('preservation_old'))}"
        )
        lines.append(
            "refit advised: yes (see docs/update.md)" if r["refit_advised"] else "refit advised: no"
        )
        return lines

    # -- storage ---------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """What a listing shows: id, created, space, selection, options, headline metrics,
        and how the clusters were named (None: by their terms)."""
        return {
            "id": self.id,
            "created": self.created,
            "space": space_dict(self.space),
            "documents": len(self.ids),
            "selection": self.selection,
            "options": self.options,
            "clusters": len({c for c in self.cluster_labels.tolist() if c != -1}),
            "metrics": {
                key: self.metrics.get(key)
                for key in ("hungarian_accuracy", "ari", "nmi", "silhouette")
            },
            "naming": self.naming or None,
            "parent": self.parent,
            "update_report": self.update_report,
        }

    def to_record(self) -> tuple[dict[str, Any], bytes]:
        """(head, payload) for the store: JSON for what is small, arrays for the rest."""
        head = {
            **self.summary(),
            "space_collection": self.space.collection_name,
            "metrics_full": self.metrics,
            "described": self.clusters,
            "k_scores": {str(k): v for k, v in self.k_scores.items()},
            "map_cached": self.map_cached,
            "timings": self.timings,
            "notes": list(self.notes),  # what the figures could not do, as computed
            "identity": self.identity,
        }
        extra: dict[str, np.ndarray] = {}
        if self.reference:
            from .reference import PREFIX

            head["reference"] = self.reference["settings"]
            extra = {PREFIX + k: v for k, v in self.reference["arrays"].items()}
        if self.placed:
            extra["placed"] = np.array(self.placed, dtype=str)
        payload = pack_arrays(
            ids=np.array(self.ids, dtype=str),
            labels=np.array(["" if x is None else x for x in self.labels], dtype=str),
            labelled=np.array([x is not None for x in self.labels], dtype=bool),
            cluster=self.cluster_labels.astype(np.int32),
            coords=self.coords.astype(np.float32),
            **extra,
        )
        return head, payload

    @classmethod
    def from_record(cls, head: dict[str, Any], payload: bytes) -> Analysis:
        arrays = unpack_arrays(payload)
        labels = [
            str(x) if ok else None
            for x, ok in zip(arrays["labels"].tolist(), arrays["labelled"].tolist())
        ]
        space = head["space"]
        reference = None
        if head.get("reference") is not None:
            from .reference import PREFIX

            reference = {
                "settings": head["reference"],
                "arrays": {k[len(PREFIX) :]: v for k, v in arrays.items() if k.startswith(PREFIX)},
            }
        return cls(
            space=Space.from_dict(space),
            ids=[str(x) for x in arrays["ids"].tolist()],
            labels=labels,
            cluster_labels=arrays["cluster"].astype(int),
            coords=arrays["coords"],
            metrics=head["metrics_full"],
            clusters=with_names(head["described"]),
            options=head["options"],
            selection=head["selection"],
            k_scores={int(k): v for k, v in head.get("k_scores", {}).items()},
            map_cached=bool(head.get("map_cached")),
            id=head["id"],
            created=head["created"],
            timings=dict(head.get("timings") or {}),
            notes=[str(n) for n in head.get("notes") or []],
            naming=dict(head.get("naming") or {}),
            parent=head.get("parent"),
            update_report=head.get("update_report"),
            reference=reference,
            placed=[str(x) for x in arrays["placed"].tolist()] if "placed" in arrays else [],
            identity=head.get("identity"),
        )


def _figure(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _share(x: float | None) -> str:
    return "–" if x is None else f"{x:.1%}"
