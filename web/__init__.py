"""The browser map: one HTML template, one script, one style sheet, no third-party code.

`embedlab serve` serves them at `/` and `/static/`; `analyze/html.py` inlines them into a
self-contained `map.html`. Nothing is fetched from any other host (no CDN, no web fonts).
"""

from __future__ import annotations

from importlib import resources

ASSETS = ("app.js", "app.css", "compare.js")


def asset(name: str) -> str:
    """The text of one of the pages' files (index.html, compare.html and ASSETS)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
