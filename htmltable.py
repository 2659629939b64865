"""HTML pieces every result type shows itself with in a notebook (`_repr_html_`): one
escaping rule and one small table, shared by analyze's results and ingest's report (so
neither imports the other). Every value goes through `html.escape`: text is shown as text.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

STYLE = "border-collapse:collapse;margin:0.3em 0"
CELL = "padding:1px 8px;text-align:left"


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A small HTML table, every cell escaped."""
    head = "".join(f'<th style="{CELL}">{esc(h)}</th>' for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td style="{CELL}">{esc(v)}</td>' for v in row) + "</tr>" for row in rows
    )
    return f'<table style="{STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
