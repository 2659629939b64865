"""PNG figures: maps coloured by label and by cluster, the confusion matrix, silhouette by k."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..store.selection import NO_LABEL


def _figure(figsize: tuple[float, float], dpi: int = 110):
    """A Figure outside pyplot: no global state, and the user's backend is left alone."""
    from matplotlib.figure import Figure

    _show_figures_in_jupyter(Figure)
    return Figure(figsize=figsize, dpi=dpi)


def _show_figures_in_jupyter(figure_type: type) -> None:
    """Let Jupyter draw our Figures as PNG without `%matplotlib inline`.

    IPython only knows how to show a Figure once pyplot's inline backend registered a
    formatter; ours never touch pyplot, so we register the same PNG formatter for the
    Figure type (a no-op outside IPython, and it changes no backend).
    """
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    if not _has_type(formatter, figure_type):  # keep one %matplotlib inline registered
        formatter.for_type(figure_type, _png_bytes)


def _has_type(formatter, figure_type: type) -> bool:
    try:
        formatter.lookup_by_type(figure_type)
    except KeyError:
        return False
    return True


def _png_bytes(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def glyph_fonts(texts: list[str]) -> tuple[list[str], str | None]:
    """(font families to draw `texts` with, a note when some characters have no font).

    DejaVu Sans (matplotlib's default) has no CJK glyphs: Chinese labels came out as
    boxes. An installed font that has the missing characters is added as a fallback;
    when none has them, the note says so (once per analysis) instead of silent boxes.
    """
    from matplotlib import font_manager

    default = "DejaVu Sans"
    wanted = {ord(ch) for text in texts for ch in text if not ch.isspace()}
    missing = wanted - _charmap(font_manager.findfont(default))
    if not missing:
        return [default], None
    for entry in font_manager.fontManager.ttflist:
        try:
            if missing <= _charmap(entry.fname):
                return [default, entry.name], None
        except (OSError, RuntimeError):  # a font file FreeType cannot read
            continue
    sample = "".join(sorted(chr(c) for c in missing)[:5])
    return [default], (
        f"no installed font can draw some label characters (e.g. {sample!r}); they show as "
        "boxes in the PNGs: install a font that has them (e.g. Debian's fonts-noto-cjk)"
    )


@functools.lru_cache(maxsize=256)
def _charmap(path: str) -> frozenset[int]:
    from matplotlib.ft2font import FT2Font

    return frozenset(FT2Font(path).get_charmap())


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


# tab10's and tab20's greys: noise and unlabelled documents are grey, nothing else is
_GREYS = {"tab10": {7}, "tab20": {14, 15}}


def group_palette(needed: int) -> list[tuple[float, float, float, float]]:
    """The colours groups are drawn in: tab10, or tab20 past 10 groups, less their greys
    (so no class or cluster looks like noise)."""
    name = "tab20" if needed > 9 else "tab10"
    cmap = _cmap(name)
    return [cmap(i) for i in range(cmap.N) if i not in _GREYS[name]]


def save_figure(fig, path: Path) -> None:
    fig.savefig(path)


def plain(text: str) -> str:
    """Labels come from documents: show `$` as a dollar sign, never parse it as mathtext
    (an unbalanced `$x` would otherwise make matplotlib fail), and keep a leading `_`
    (which matplotlib takes as "leave out of the legend") visible."""
    text = text.replace("$", r"\$")
    return "\u200b" + text if text.startswith("_") else text


def point_size(n: int) -> float:
    """Big enough to see 600 points, small enough that 20,000 do not become a blob."""
    return float(np.clip(6000 / max(n, 1), 1.0, 30.0))


def scatter_map(
    coords: np.ndarray,
    groups: list[str],
    title: str,
    colours: dict[str, int] | None = None,
    fonts: list[str] | None = None,
):
    """The 2-D map, one colour per group (label or cluster), with counts in the legend.

    `colours` gives a group its palette index (so a cluster can wear its class's colour).
    """
    names = sorted(set(groups))
    fig = _figure((9, 7))
    ax = fig.subplots()
    _draw_groups(ax, coords, groups, colours)
    ax.set_title(plain(title))
    ax.set_xticks([])
    ax.set_yticks([])
    if len(names) <= 25:
        ax.legend(
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            markerscale=max(1, 6 / point_size(len(coords))),
            prop={"family": fonts or ["DejaVu Sans"], "size": 8},
            frameon=False,
        )
    fig.tight_layout()
    return fig


def _draw_groups(ax, coords: np.ndarray, groups: list[str], colours: dict[str, int] | None):
    """One scatter per group, in a stable palette; noise and unlabelled in grey."""
    names = sorted(set(groups))
    colours = colours or {}
    needed = max([len(names), *(i + 1 for i in colours.values())])
    palette = group_palette(needed)
    for i, name in enumerate(names):
        rows = [r for r, g in enumerate(groups) if g == name]
        index = colours.get(name, i)
        colour = "lightgrey" if name in ("noise", NO_LABEL) else palette[index % len(palette)]
        ax.scatter(
            coords[rows, 0],
            coords[rows, 1],
            s=point_size(len(coords)),
            color=colour,
            label=plain(f"{name} ({len(rows)})"),
            alpha=0.8,
            linewidths=0,
        )


def confusion_plot(confusion: dict, fonts: list[str] | None = None):
    """Classes x clusters, coloured by the share of each class."""
    matrix = np.array(confusion["matrix"])
    shares = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
    fig = _figure((max(5.0, 2.5 + 0.6 * matrix.shape[1]), 1.8 + 0.45 * matrix.shape[0]))
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ticks = ["noise" if c == -1 else str(c) for c in confusion["clusters"]]
    ax.set_xticks(range(matrix.shape[1]), ticks)
    ax.set_yticks(range(matrix.shape[0]), [plain(str(c)) for c in confusion["classes"]])
    for tick in ax.get_yticklabels():
        tick.set_fontfamily(fonts or ["DejaVu Sans"])
    ax.set_xlabel("cluster (ordered by the class it matches)")
    ax.set_ylabel("class")
    ax.set_title("Classes x clusters (colour: share of class)", fontsize=10)
    if matrix.size <= 400:
        for (r, c), value in np.ndenumerate(matrix):
            ax.text(
                c,
                r,
                str(value),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares[r, c] > 0.5 else "black",
            )
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    return fig


def silhouette_plot(scores: dict[int, float], best: int):
    """Mean cosine silhouette for each k tried by `--k auto`."""
    ks = sorted(scores)
    fig = _figure((6, 4))
    ax = fig.subplots()
    ax.plot(ks, [scores[k] for k in ks], marker="o")
    ax.axvline(best, color="grey", linestyle="--", label=f"chosen k = {best}")
    ax.set_xlabel("k")
    ax.set_ylabel("mean cosine silhouette")
    ax.set_title("Choosing k by silhouette")
    ax.legend()
    fig.tight_layout()
    return fig


# -- comparisons of two spaces -------------------------------------------------------------


def _paired_axes(titles: tuple[str, str], coords_a: np.ndarray, coords_b: np.ndarray):
    """A figure with two map panels sharing their limits (map B is aligned onto map A)."""
    fig = _figure((15, 6.8))
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    for ax, title in zip(axes, titles):
        ax.set_title(plain(title), fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    both = np.concatenate([coords_a, coords_b]) if len(coords_a) else np.zeros((1, 2))
    low, high = both.min(axis=0), both.max(axis=0)
    pad = (high - low) * 0.03 + 1e-6
    axes[0].set_xlim(low[0] - pad[0], high[0] + pad[0])
    axes[0].set_ylim(low[1] - pad[1], high[1] + pad[1])
    return fig, axes


def paired_maps(
    coords_a: np.ndarray,
    coords_b: np.ndarray,
    groups: list[str],
    titles: tuple[str, str],
    subtitle: str,
    fonts: list[str] | None = None,
):
    """Two maps side by side, the same colour per group in both, one legend."""
    fig, axes = _paired_axes(titles, coords_a, coords_b)
    for ax, coords in zip(axes, (coords_a, coords_b)):
        _draw_groups(ax, coords, groups, None)
    if len(set(groups)) <= 25:
        axes[1].legend(
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            markerscale=max(1, 6 / point_size(len(coords_a))),
            prop={"family": fonts or ["DejaVu Sans"], "size": 8},
            frameon=False,
        )
    fig.suptitle(plain(subtitle), fontsize=11)
    fig.tight_layout()
    return fig


def paired_values(
    coords_a: np.ndarray,
    coords_b: np.ndarray,
    values: np.ndarray,
    titles: tuple[str, str],
    what: str,
):
    """Two maps side by side, each point coloured by a value in 0..1 (one colour bar)."""
    fig, axes = _paired_axes(titles, coords_a, coords_b)
    image = None
    for ax, coords in zip(axes, (coords_a, coords_b)):
        image = ax.scatter(
            coords[:, 0],
            coords[:, 1],
            c=values,
            cmap="viridis",
            vmin=0,
            vmax=1,
            s=point_size(len(coords)),
            linewidths=0,
        )
    if image is not None:
        fig.colorbar(image, ax=list(axes), fraction=0.03, label=what)
    fig.suptitle(f"Each document coloured by {what} (dark: neighbours differ)", fontsize=11)
    return fig


def shared_histogram(counts: list[int], k: int, mean: float):
    """How many documents keep 0..k of their k nearest neighbours from one space to the other."""
    fig = _figure((7, 4))
    ax = fig.subplots()
    ax.bar(range(k + 1), counts, color=_cmap("tab10")(0))
    ax.axvline(mean, color="grey", linestyle="--", label=f"mean {mean:.2f}")
    ax.set_xticks(range(k + 1))
    ax.set_xlabel(f"neighbours shared, of the {k} nearest")
    ax.set_ylabel("documents")
    ax.set_title("Neighbourhood agreement between the two spaces")
    ax.legend()
    fig.tight_layout()
    return fig
