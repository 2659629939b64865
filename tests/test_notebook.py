"""docs/notebook.ipynb runs top to bottom in a real Jupyter kernel and shows real results.

The notebook is executed as a user would run it (cwd docs/, kernel python3 of this
interpreter), against a fresh store and the real 20 Newsgroups archive, with the local
model offline. A check cell is appended in memory only (the file stays clean): it reads
the kernel's variables and prints a JSON summary the test asserts on.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_ARCHIVE

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = REPO / "docs" / "notebook.ipynb"
SCI = ["sci.crypt", "sci.electronics", "sci.med", "sci.space"]
SUMMARY_MARK = "NOTEBOOK-SUMMARY "
# Run first, in memory only: the model's vectors for the 600 posts come from their
# recording (tests/local_vectors.py: checked against the real model there), so the kernel
# spends its time on what the notebook does, not on re-running the model.
SETUP_CELL = f"""\
import sys as _sys
_sys.path.insert(0, {str(REPO)!r})
from tests.local_vectors import install as _install
_recorded = _install()
"""
CHECK_CELL = f"""\
import json, sys
print({SUMMARY_MARK!r} + json.dumps({{
    "executable": sys.executable,
    "prefix": sys.prefix,
    "cwd": os.getcwd(),
    "n": len(a.ids),
    "embedded": report.embedded,
    "documents": report.documents,
    "mean_share": float(a.per_class["share"].mean()),
    "classes": sorted(a.per_class.index),
    "analysis_id": a.id,
    "recorded": _recorded.recorded,
    "computed": _recorded.computed,
}}))
"""


def cell_index(nb, shows: str) -> int:
    """The one code cell whose last line (the value it shows) is `shows`."""
    found = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and cell.source.strip().splitlines()[-1].strip() == shows
    ]
    assert len(found) == 1, f"expected one cell ending {shows!r}, found {len(found)}"
    return found[0]


def result(cell, mime: str = "text/plain") -> str:
    """The cell's execute_result in `mime` (the value it shows)."""
    for output in cell.outputs:
        if output.output_type == "execute_result" and mime in output.data:
            return output.data[mime]
    raise AssertionError(f"no {mime} result in cell {cell.source!r}: {cell.outputs}")


def test_notebook_is_saved_clean():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source


@pytest.mark.integration
@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    if not SHARED_ARCHIVE.exists():
        pytest.skip(f"{SHARED_ARCHIVE} is missing")
    store = tmp_path / "notebook-store"
    monkeypatch.setenv("EMBEDLAB_NOTEBOOK_STORE", str(store))
    monkeypatch.setenv("EMBEDLAB_NEWSGROUPS", str(SHARED_ARCHIVE))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    # This interpreter's kernelspec first (a user-wide "python3" could name another
    # Python); its argv "python" is replaced by sys.executable when the kernel starts.
    monkeypatch.setenv("JUPYTER_PATH", str(Path(sys.prefix) / "share" / "jupyter"))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(SETUP_CELL))
    nb.cells.append(nbformat.v4.new_code_cell(CHECK_CELL))
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(REPO / "docs")}},
    )
    client.execute()  # raises CellExecutionError on the first cell that fails

    for cell in nb.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{cell.source!r} failed: {errors}"

    # The summary from the kernel's own variables.
    printed = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.output_type == "stream")
    line = next(x for x in printed.splitlines() if x.startswith(SUMMARY_MARK))
    summary = json.loads(line[len(SUMMARY_MARK) :])
    assert summary["prefix"] == sys.prefix, "the kernel runs another Python"
    assert Path(summary["executable"]).parent == Path(sys.executable).parent
    assert Path(summary["cwd"]).resolve() == (REPO / "docs").resolve()
    assert summary["n"] == 600
    assert summary["documents"] == 600
    assert summary["embedded"] == 600  # a fresh store: every post embedded once
    assert (summary["recorded"], summary["computed"]) == (600, 0)  # the model's recorded vectors
    assert summary["classes"] == SCI
    assert summary["mean_share"] > 0.85, summary
    assert store.is_dir()

    # The progress bars are widgets (ipywidgets is installed), never tqdm's text fallback.
    ingest_cell = nb.cells[cell_index(nb, "report")]
    widgets = [
        o
        for o in ingest_cell.outputs
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widgets, f"the ingest shows no widget bar: {ingest_cell.outputs}"
    for cell in nb.cells:
        if cell.cell_type == "code":
            streams = "".join(o.get("text", "") for o in cell.outputs)
            assert "IProgress not found" not in streams, streams

    # What the reader sees, cell by cell.
    shown = result(nb.cells[cell_index(nb, "report")])
    assert "600 documents" in shown and "600 embedded" in shown, shown
    shown = result(nb.cells[cell_index(nb, "a")])
    assert "600 documents, 4 clusters" in shown, shown
    page = result(nb.cells[cell_index(nb, "a")], "text/html")
    assert "600 documents, 4 clusters" in page and "<svg" in page, page[:500]

    per_class = result(nb.cells[cell_index(nb, "a.per_class")])
    for name in SCI:
        row = next((x for x in per_class.splitlines() if x.startswith(name)), None)
        assert row is not None, f"{name} missing from per_class:\n{per_class}"
        share = float(row.split()[2])  # class, majority_cluster, share, size
        assert 0.5 < share <= 1.0, row
    assert "<table" in result(nb.cells[cell_index(nb, "a.per_class")], "text/html")

    confusion = result(nb.cells[cell_index(nb, "a.confusion")])
    assert all(name in confusion for name in SCI), confusion

    for source in ('a.figure("label")', 'a.figure("confusion")'):
        cell = nb.cells[cell_index(nb, source)]
        pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert pngs, f"{source} shows no image: {cell.outputs}"

    neighbours = nb.cells[
        cell_index(
            nb, 'lab.neighbours(id=a.ids[0], k=5)[["rank", "id", "similarity", "label", "cluster"]]'
        )
    ]
    html = result(neighbours, "text/html")
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    assert body.count("<tr>") == 5, html
    # from the HTML table: the plain-text one wraps its columns once ids are long
    head = re.findall(r"<th>(\w*)</th>", html.split("<tbody>", 1)[0])
    assert head[-5:] == ["rank", "id", "similarity", "label", "cluster"], html
    rows = [re.findall(r"<td>([^<]*)</td>", row) for row in body.split("</tr>")[:-1]]
    assert all(row[3].startswith("sci.") for row in rows), rows
    assert [int(row[0]) for row in rows] == [1, 2, 3, 4, 5], rows

    analyses = result(
        nb.cells[
            cell_index(
                nb, 'lab.analyses()[["id", "documents", "algorithm", "k", "hungarian_accuracy"]]'
            )
        ]
    )
    assert summary["analysis_id"] in analyses and "kmeans" in analyses, analyses
