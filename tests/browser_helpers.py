"""What the two browser test files share: Playwright and Debian's Chromium (or a skip
saying how to get them), a page whose console errors and requests are recorded, and the
corpus the map is drawn from."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
TOPICS = {
    "space": "topic:space rockets orbit launch shuttle",
    "med": "topic:med doctors patients clinic disease",
    "crypt": "topic:crypt keys cipher encryption privacy",
}
EVIL_ID = "evil/1"
EVIL_TEXT = (
    'topic:space <script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    " <b>not bold</b> %SCRIPT% %DATA% orbit"
)
DIMS = 128


def _browser_or_skip():
    """Playwright and Debian's Chromium, or a skip saying how to get them (never in CI)."""
    reason = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = "playwright is not installed (pip install -e '.[dev]')"
    if reason is None and not Path(CHROMIUM).exists():
        reason = "no /usr/bin/chromium (apt-get install -y chromium)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests cannot run in CI: {reason}")
        pytest.skip(f"browser tests skipped: {reason}")
    return sync_playwright


def corpus() -> list[dict]:
    docs = []
    for i in range(90):
        label = list(TOPICS)[i % 3]
        text = f"Subject: post {i} about {label}\n{TOPICS[label]} note {i}\nsecond line {i}"
        docs.append({"id": f"{label}/{i}", "text": text, "label": label})
    docs.append({"id": EVIL_ID, "text": EVIL_TEXT, "label": "space"})
    return docs


class Watched:
    """A page whose console errors and requests are recorded for the final checks."""

    def __init__(self, browser, origin: str, **context_options):
        self.context = browser.new_context(
            viewport={"width": 1280, "height": 800}, **context_options
        )
        self.page = self.context.new_page()
        self.origin = origin
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_function("window.embedlab !== undefined")
        self.page.evaluate("window.embedlab.ready")

    def state(self) -> dict:
        return self.page.evaluate("window.embedlab.state()")

    def point_on_screen(self, index: int) -> tuple[float, float]:
        x, y = self.page.evaluate(f"window.embedlab.screenOf({index})")
        box = self.page.locator("#map").bounding_box()
        return box["x"] + x, box["y"] + y

    def index_of(self, doc_id: str) -> int:
        return self.page.evaluate(f"window.embedlab.indexOf({json.dumps(doc_id)})")

    def close(self) -> None:
        """Fail on any console error or any request outside the origin."""
        self.context.close()
        assert self.errors == []
        foreign = [u for u in self.requests if not u.startswith(self.origin)]
        assert foreign == [], f"requests left {self.origin}: {foreign}"
