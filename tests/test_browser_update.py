"""An open map follows the store: with `embedlab serve --follow`, a document ingested
through the service appears on the page without a reload, marked as new, the view kept
(real headless Chromium through Playwright, real service, fake Gemini vectors)."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from tests.browser_helpers import DIMS, Watched, corpus
from tests.fake_gemini import FakeGemini
from tests.service_helpers import InProcessService

pytestmark = pytest.mark.slow


def test_followed_map_loads_the_successor_live_and_marks_new_points(browser, tmp_path):
    with FakeGemini() as fake:
        service = InProcessService(tmp_path / "store", fake, "--follow")
        try:
            assert service.ingest(corpus(), dims=DIMS)["embedded"] == 91
            response = service.http.post(
                "/api/v1/analyses", params={"wait": "true"}, json={"k": 3, "reduce": "pca"}
            )
            first = response.json()["analysis"]
            page = Watched(browser, service.url, bypass_csp=True)
            page.open(service.url + "/")
            assert page.state()["analysis"] == first and page.state()["points"] == 91
            # the reader zooms in somewhere: the update must not move the view
            canvas = page.page.locator("#map").bounding_box()
            page.page.mouse.move(canvas["x"] + 300, canvas["y"] + 300)
            page.page.mouse.wheel(0, -400)
            time.sleep(0.3)
            view = page.state()["view"]
            time.sleep(2.5)  # the page's event stream is open by now

            new_docs = [
                {"id": "space/new1", "text": "topic:space rockets orbit launch shuttle fresh",
                 "label": "space"},
                {"id": "med/new2", "text": "topic:med doctors patients clinic disease fresh",
                 "label": "med"},
            ]  # fmt: skip
            job = service.ingest(new_docs, dims=DIMS)
            assert job["embedded"] == 2
            jobs = service.http.get("/api/v1/jobs").json()["jobs"]
            ingest_end = max(j["finished"] for j in jobs if j["kind"] == "ingest")
            page.page.wait_for_function("window.embedlab.state().successors >= 1", timeout=20000)
            state = page.state()
            assert state["analysis"] != first and state["points"] == 93
            assert state["view"] == view  # the view stayed where the reader left it
            fresh_ids = sorted(page.page.evaluate(f"window.embedlab.idOf({i})")
                               for i in state["fresh"])  # fmt: skip
            assert fresh_ids == ["med/new2", "space/new1"]
            latency = state["successorAt"] / 1000 - datetime.fromisoformat(ingest_end).timestamp()
            # the figure (2 s) is printed, not asserted: no timed assertions here
            print(f"new points on the open map {latency:.2f} s after the ingest job ended")
            assert latency > 0
            # legend and evaluation follow the new analysis
            summary = service.http.get(f"/api/v1/analyses/{state['analysis']}").json()
            assert summary["parent"] == first
            legend = page.page.locator("#legend").inner_text()
            assert "space" in legend
            assert page.page.locator("#fresh").inner_text().startswith("2 new points marked")
            # hovering a marked point clears its mark; the button clears the rest
            page.page.locator("#reset-view").click()
            index = page.index_of("space/new1")
            page.page.mouse.move(*page.point_on_screen(index))
            page.page.wait_for_function(
                f"!window.embedlab.state().fresh.includes({index})", timeout=5000
            )
            assert len(page.state()["fresh"]) == 1
            page.page.locator("#fresh-clear").click()
            assert page.state()["fresh"] == []
            page.close()
        finally:
            service.stop()
