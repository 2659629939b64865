"""`map.html`: one analysis as a self-contained page, openable from disk with no server.

The page is the service's own (web/), with its script, style and data inlined: points as
base64 float32/uint8 arrays, ids, texts (cut to TEXT_CHARS) and each point's nearest
neighbours computed in the original space. A Content-Security-Policy forbids every
request, and the data sits in a JSON block whose `<` are escaped, so a post holding
`</script><script>...` stays text.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .mapdata import map_head, map_points

if TYPE_CHECKING:
    from .analysis import Analysis

TEXT_CHARS = 2000
FILE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; connect-src 'none'; base-uri 'none'; form-action 'none'"
)
SERVER_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'"
)


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def script_json(data: object) -> str:
    """JSON that is safe inside a <script> element: no `<`, `>` or `&` left raw. Keys are
    sorted, so an analysis written again from the store gives the same bytes."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page(csp: str, style: str, script: str, data: str = "", template: str = "index.html") -> str:
    """A page's template (web/index.html or web/compare.html) with its holes filled."""
    from ..web import asset

    values = {"CSP": csp, "STYLE": style, "DATA": data, "SCRIPT": script}
    # one pass: a document holding "%SCRIPT%" inside DATA must stay text
    return re.sub(r"%(CSP|STYLE|DATA|SCRIPT)%", lambda m: values[m[1]], asset(template))


def render_map_html(
    analysis: Analysis,
    texts: list[str] | None = None,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> str:
    """The whole page as a string (texts and neighbours are optional: without them the
    page shows ids, labels and clusters only)."""
    from ..web import asset

    n = len(analysis.ids)
    texts = list(texts) if texts is not None else [""] * n
    head = map_head(analysis)
    head["search"] = {"meaning": False, "reason": "a saved map.html has no model to embed a query"}
    data: dict[str, Any] = {
        "head": head,
        "points": base64.b64encode(map_points(analysis)).decode("ascii"),
        "ids": list(analysis.ids),
        "texts": [t[:TEXT_CHARS] for t in texts],
        "cut": [len(t) > TEXT_CHARS for t in texts],
    }
    if neighbours is not None:
        positions, similarities = neighbours
        data.update(
            k=int(positions.shape[1]),
            neighbours=_b64(positions.astype("<i4")),
            similarities=_b64(similarities.astype("<f4")),
        )
    style = f"<style>\n{asset('app.css')}</style>"
    script_text = asset("app.js")
    if "</script" in script_text.lower():  # would end the inline script early
        raise RuntimeError("web/app.js must not contain '</script'")
    script = f"<script>\n{script_text}</script>"
    block = f'<script type="application/json" id="embedlab-data">{script_json(data)}</script>'
    return page(FILE_CSP, style, script, block)


def write_map_html(
    path: Path,
    analysis: Analysis,
    texts: list[str] | None = None,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Write `render_map_html` to `path` (UTF-8)."""
    path.write_text(render_map_html(analysis, texts, neighbours), encoding="utf-8")
