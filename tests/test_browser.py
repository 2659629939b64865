"""The map page in a real headless Chromium (Debian's), driven by Playwright, against a
real `embedlab serve` on a loopback port over a real store (fake Gemini vectors).

Every assertion reads the page's own state (`window.embedlab`) or its DOM and compares it
with the service's JSON API; nothing is read from pixels. Screenshots go to
$EMBEDLAB_SCREENSHOTS (default: the test's temp folder).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser_helpers import (
    DIMS,
    EVIL_ID,
    EVIL_TEXT,
    Watched,
    corpus,
)
from tests.conftest import invoke_cli
from tests.fake_gemini import FakeGemini
from tests.service_helpers import InProcessService

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory, browser) -> Iterator[dict]:
    """One service over a store with 91 documents in 3 topics and one k=3 analysis."""
    store = tmp_path_factory.mktemp("browser") / "store"
    with FakeGemini() as fake:
        service = InProcessService(store, fake)
        try:
            assert service.ingest(corpus(), dims=DIMS)["embedded"] == 91
            response = service.http.post(
                "/api/v1/analyses",
                params={"wait": "true"},
                json={"k": 3, "seed": 0, "reduce": "pca"},
            )
            assert response.status_code == 200, response.text
            analysis = response.json()["analysis"]
            yield {"service": service, "analysis": analysis, "fake": fake, "store": store}
        finally:
            service.stop()


@pytest.fixture
def page(browser, served):
    # Playwright's wait_for_function evaluates strings, which the page's CSP forbids;
    # the first test runs under the CSP (it needs no waiting on strings).
    watched = Watched(browser, served["service"].url, accept_downloads=True, bypass_csp=True)
    yield watched
    watched.close()


def api(served, path: str, **params):
    response = served["service"].http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def points(served) -> dict:
    return api(served, f"/api/v1/analyses/{served['analysis']}/points")


def test_page_draws_every_point_and_hover_shows_the_document(browser, served, shots):
    policy = served["service"].http.get("/").headers["content-security-policy"]
    assert "connect-src 'self'" in policy and "frame-ancestors 'none'" in policy
    page = Watched(browser, served["service"].url)  # under the page's own CSP
    page.open(served["service"].url + "/")
    state = page.state()
    summary = api(served, f"/api/v1/analyses/{served['analysis']}")
    assert state["analysis"] == served["analysis"]  # the newest analysis, at once
    assert state["points"] == state["drawn"] == summary["documents"] == 91
    # headless without a GPU, WebGL2 is software-rendered: the page draws on a 2-D canvas
    assert page.page.evaluate("window.embedlab.renderer()") == "2-D canvas"
    assert "software-rendered" in page.page.evaluate("window.embedlab.rendererReason()")

    expected = points(served)
    for doc_id in ("med/4", "crypt/44"):
        index = page.index_of(doc_id)
        assert expected["id"][index] == doc_id
        page.page.mouse.move(*page.point_on_screen(index))
        tooltip = page.page.locator(f'#tooltip[data-loaded="{index}"]')
        tooltip.wait_for(state="visible")
        text = tooltip.inner_text()
        assert doc_id in text and f"label {expected['label'][index]}" in text
        assert f"second line {doc_id.split('/')[1]}" in text  # the text, from the API
    page.page.screenshot(path=str(shots / "hover.png"))
    page.close()


def test_click_lists_the_same_neighbours_as_the_api_and_highlights_them(page, served, shots):
    page.open(served["service"].url + "/")
    index = page.index_of("space/3")
    page.page.mouse.click(*page.point_on_screen(index))
    panel = page.page.locator("#panel-document")
    page.page.wait_for_function("document.querySelector('#panel-document [data-ids]') !== null")
    shown = panel.locator("[data-ids]").get_attribute("data-ids").split("\n")
    space = api(served, f"/api/v1/analyses/{served['analysis']}/map")["space"]["name"]
    from_api = api(
        served, "/api/v1/neighbours", id="space/3", k=10, space=space, analysis=served["analysis"]
    )["neighbours"]
    assert shown == [row["id"] for row in from_api]
    assert len(shown) == 10
    state = page.state()
    assert state["focus"] == index
    assert sorted(state["highlighted"]) == sorted(page.index_of(i) for i in shown)
    assert "second line 3" in panel.locator(".doc-text").inner_text()
    page.page.screenshot(path=str(shots / "neighbours.png"))

    # each neighbour is clickable in turn
    page.page.locator(f'#panel-document button[data-id="{shown[0]}"]').click()
    page.page.wait_for_function(
        f"document.querySelector('#panel-document').dataset.id == {json.dumps(shown[0])}"
    )
    assert page.state()["focus"] == page.index_of(shown[0])

    page.page.go_back()  # Back returns to the document opened before
    page.page.wait_for_function("document.querySelector('#panel-document').dataset.id == 'space/3'")
    assert page.state()["focus"] == index


def test_box_selection_exports_exactly_the_ids_inside(page, served):
    page.open(served["service"].url + "/")
    box = page.page.locator("#map").bounding_box()
    cx, cy = page.page.evaluate(f"window.embedlab.screenOf({page.index_of('med/4')})")
    corner_a, corner_b = (cx - 25, cy - 20), (cx + 30, cy + 25)  # part of one cluster
    (x0, y1), (x1, y0) = (
        page.page.evaluate(f"window.embedlab.dataOf({corner_a[0]}, {corner_a[1]})"),
        page.page.evaluate(f"window.embedlab.dataOf({corner_b[0]}, {corner_b[1]})"),
    )
    expected = points(served)
    inside = {
        doc_id
        for doc_id, x, y in zip(expected["id"], expected["x"], expected["y"])
        if x0 <= x <= x1 and y0 <= y <= y1
    }
    assert 0 < len(inside) < 91  # the box holds some points, not all

    page.page.click("#box-mode")
    page.page.mouse.move(box["x"] + corner_a[0], box["y"] + corner_a[1])
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + corner_b[0], box["y"] + corner_b[1], steps=5)
    page.page.mouse.up()
    selected = {page.page.evaluate(f"window.embedlab.idOf({i})") for i in page.state()["selection"]}
    assert selected == inside
    assert f"{len(inside)} documents selected" in page.page.locator("#panel-selection").inner_text()

    with page.page.expect_download() as download:
        page.page.click("#export-csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert {row["id"] for row in rows} == inside and len(rows) == len(inside)
    by_id = dict(zip(expected["id"], expected["label"]))
    assert all(row["label"] == by_id[row["id"]] for row in rows)

    with page.page.expect_download() as download:
        page.page.click("#export-jsonl")
    lines = Path(download.value.path()).read_text().splitlines()
    assert {json.loads(line)["id"] for line in lines} == inside and len(lines) == len(inside)


def test_colour_switch_and_legend_toggles(page, served, shots):
    page.open(served["service"].url + "/")
    head = api(served, f"/api/v1/analyses/{served['analysis']}/map")
    legend = page.page.locator("#legend button")
    assert legend.count() == len(head["labels"]) == 3
    space = [lb["name"] for lb in head["labels"]].index("space")
    assert legend.nth(space).inner_text().split() == ["space", "31"]  # 30 and the evil one

    page.page.select_option("#colour-by", "cluster")
    assert page.state()["colourBy"] == "cluster"
    assert legend.count() == len(head["clusters"]) == 3
    first = head["clusters"][0]
    legend.nth(0).click()
    state = page.state()
    assert state["hidden"] == [first["code"]]
    assert state["drawn"] == 91 - first["size"]
    assert legend.nth(0).get_attribute("aria-pressed") == "false"
    page.page.screenshot(path=str(shots / "legend-toggled.png"))
    legend.nth(0).press("Enter")  # keyboard reachable
    assert page.state()["drawn"] == 91
    page.page.click("#legend-none")
    assert page.state()["drawn"] == 0
    page.page.click("#legend-all")
    assert page.state()["drawn"] == 91


def test_confusion_cell_highlights_its_documents(page, served, shots):
    page.open(served["service"].url + "/")
    page.page.click("#tab-evaluation")
    expected = points(served)
    metrics = api(served, f"/api/v1/analyses/{served['analysis']}")["metrics"]
    confusion = metrics["confusion"]
    row = confusion["classes"].index("med")
    column = max(range(len(confusion["clusters"])), key=lambda c: confusion["matrix"][row][c])
    cluster = confusion["clusters"][column]
    page.page.locator(f'#confusion button[data-class="med"][data-cluster="{cluster}"]').click()
    highlighted = {
        page.page.evaluate(f"window.embedlab.idOf({i})") for i in page.state()["highlighted"]
    }
    wanted = {
        doc_id
        for doc_id, label, c in zip(expected["id"], expected["label"], expected["cluster"])
        if label == "med" and c == int(cluster)
    }
    assert highlighted == wanted and len(wanted) == confusion["matrix"][row][column]
    per_class = page.page.locator("#per-class").inner_text()
    assert "med" in per_class and f"{metrics['per_class']['med']['share']:.3f}" in per_class
    # the Hungarian-matched share and the merged flag (issue 25 item 5) are columns too
    header = page.page.locator("#per-class tr").first.inner_text()
    assert "matched share" in header and "merged" in header
    med = page.page.locator("#per-class tr", has_text="med").inner_text()
    assert f"{metrics['per_class']['med']['hungarian_share']:.3f}" in med
    assert ("\u26a0" in med) == bool(metrics["per_class"]["med"]["shares_cluster_with"])
    page.page.screenshot(path=str(shots / "evaluation.png"))

    page.page.click("#tab-clusters")
    page.page.locator(f'#panel-clusters button[data-cluster="{cluster}"]').click()
    members = {
        page.page.evaluate(f"window.embedlab.idOf({i})") for i in page.state()["highlighted"]
    }
    assert members == {d for d, c in zip(expected["id"], expected["cluster"]) if c == int(cluster)}
    # a representative document opens on the map (found once the ids have arrived)
    first = page.page.locator("#panel-clusters ol.hits button").first
    rep_id = first.get_attribute("data-id")
    assert "not on this map" not in first.inner_text()
    first.click()
    page.page.wait_for_function(
        f"document.querySelector('#panel-document').dataset.id == {json.dumps(rep_id)}"
    )
    assert page.state()["focus"] == page.index_of(rep_id)
    assert "p=" in page.page.url


def test_injected_script_stays_inert_and_shows_as_text(page, served):
    page.open(served["service"].url + "/")
    index = page.index_of(EVIL_ID)
    page.page.mouse.move(*page.point_on_screen(index))
    page.page.wait_for_function(f"document.querySelector('#tooltip').dataset.loaded == '{index}'")
    assert "<script>window.__pwned = 1</script>" in page.page.locator("#tooltip").inner_text()
    page.page.mouse.click(*page.point_on_screen(index))
    text = page.page.locator("#panel-document .doc-text")
    page.page.wait_for_function(
        "document.querySelector('#panel-document .doc-text').textContent.includes('onerror')"
    )
    assert text.inner_text().strip() == EVIL_TEXT
    assert page.page.evaluate("window.__pwned") is None
    assert page.page.locator("#right img, #right b, #tooltip img").count() == 0


def test_search_by_meaning_by_id_and_by_text(page, served):
    page.open(served["service"].url + "/")
    space = api(served, f"/api/v1/analyses/{served['analysis']}/map")["space"]["name"]
    page.page.fill("#search-text", "topic:crypt keys cipher")
    page.page.click("#search button[type=submit]")
    page.page.wait_for_function("document.querySelector('#panel-search').dataset.mode == 'meaning'")
    response = served["service"].http.post(
        "/api/v1/neighbours",
        json={"text": "topic:crypt keys cipher", "k": 25, "space": space},
    )
    wanted = {row["id"] for row in response.json()["neighbours"]}
    highlighted = {
        page.page.evaluate(f"window.embedlab.idOf({i})") for i in page.state()["highlighted"]
    }
    assert highlighted == wanted

    page.page.select_option("#search-mode", "text")
    page.page.fill("#search-text", "71 NOTE")  # every word, in any order, any case
    page.page.click("#search button[type=submit]")
    page.page.wait_for_function("document.querySelector('#panel-search').dataset.mode == 'text'")
    highlighted = {
        page.page.evaluate(f"window.embedlab.idOf({i})") for i in page.state()["highlighted"]
    }
    wanted = {d["id"] for d in corpus() if all(w in d["text"].lower() for w in ("note", "71"))}
    assert highlighted == wanted and 0 < len(wanted) < 10

    page.page.fill("#search-text", "med/10")  # an id opens that document
    page.page.click("#search button[type=submit]")
    page.page.wait_for_function("document.querySelector('#panel-document').dataset.id == 'med/10'")
    assert page.state()["focus"] == page.index_of("med/10")


def test_the_url_holds_the_state(page, served):
    page.open(served["service"].url + "/")
    page.page.select_option("#colour-by", "cluster")
    page.page.mouse.click(*page.point_on_screen(page.index_of("crypt/2")))
    page.page.wait_for_function("location.hash.includes('p=crypt')")
    link = page.page.url
    assert f"a={served['analysis']}" in link and "c=cluster" in link
    again = page.context.new_page()
    again.goto(link)
    again.wait_for_function("window.embedlab !== undefined")
    again.evaluate("window.embedlab.ready")
    again.wait_for_function("document.querySelector('#panel-document').dataset.id == 'crypt/2'")
    state = again.evaluate("window.embedlab.state()")
    assert state["analysis"] == served["analysis"] and state["colourBy"] == "cluster"
    assert state["focus"] == page.index_of("crypt/2")


def test_a_new_analysis_started_from_the_page_opens_when_done(page, served):
    page.open(served["service"].url + "/")
    page.page.click("#new-analysis")
    page.page.fill("#new-form input[name=k]", "2")
    page.page.select_option("#new-form select[name=reduce]", "pca")
    page.page.fill("#new-form input[name=labels]", "space, med")
    page.page.click("#new-form button[type=submit]")
    page.page.wait_for_function(
        f"window.embedlab.state().analysis !== {json.dumps(served['analysis'])}", timeout=60_000
    )
    state = page.state()
    head = api(served, f"/api/v1/analyses/{state['analysis']}/map")
    assert state["points"] == state["drawn"] == head["documents"] == 61
    assert len(head["clusters"]) == 2 and head["options"]["reduce"] == "pca"
    listed = page.page.locator("#analysis-pick option")
    assert listed.count() == 2 and listed.first.get_attribute("value") == state["analysis"]
    # the fixture's analysis is still the one other tests expect
    served["service"].http.delete(f"/api/v1/analyses/{state['analysis']}")


def test_webgl2_draws_and_hovers_when_asked_for(page, served):
    page.open(served["service"].url + "/?renderer=webgl")
    assert page.page.evaluate("window.embedlab.renderer()") == "WebGL2"
    assert page.state()["drawn"] == 91
    index = page.index_of("med/7")
    page.page.mouse.move(*page.point_on_screen(index))
    page.page.wait_for_function(f"document.querySelector('#tooltip').dataset.loaded == '{index}'")
    assert "med/7" in page.page.locator("#tooltip").inner_text()


def test_without_a_key_search_by_meaning_falls_back_to_text(tmp_path, browser):
    store = tmp_path / "store"
    with FakeGemini() as fake:
        service = InProcessService(store, fake)
        try:
            service.ingest(corpus()[:30], dims=DIMS)
            service.http.post(
                "/api/v1/analyses", params={"wait": "true"}, json={"k": 3, "reduce": "pca"}
            )
        finally:
            service.stop()
    offline = InProcessService(store, None, env={"GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""})
    watched = Watched(browser, offline.url, bypass_csp=True)
    try:
        watched.open(offline.url + "/")
        # the page knows this space cannot embed here: it offers text search first
        assert watched.page.input_value("#search-mode") == "text"
        watched.page.select_option("#search-mode", "meaning")
        watched.page.fill("#search-text", "orbit")
        watched.page.click("#search button[type=submit]")
        watched.page.wait_for_function(
            "document.querySelector('#panel-search').dataset.mode == 'text'"
        )
        panel = watched.page.locator("#panel-search").inner_text()
        assert "not available here" in panel
        highlighted = watched.state()["highlighted"]
        assert len(highlighted) == sum("orbit" in d["text"] for d in corpus()[:30]) == 10
    finally:
        offline.stop()
        watched.close()


def test_map_html_works_from_a_file_with_no_server(tmp_path, browser, shots):
    store = tmp_path / "store"
    with FakeGemini() as fake:
        service = InProcessService(store, fake)
        try:
            service.ingest(corpus(), dims=DIMS)
        finally:
            service.stop()
    out = tmp_path / "report"
    done = invoke_cli(
        [
            "--store",
            str(store),
            "analyze",
            "--k",
            "3",
            "--reduce",
            "pca",
            "--html",
            "--out",
            str(out),
        ]
    )
    assert done.returncode == 0, done.stderr
    assert (out / "map.html").exists() and "map.html" in done.stdout + done.stderr

    import embedlab

    with embedlab.open(store) as lab:
        analysis = lab.latest_analysis()
        wanted = list(lab.neighbours("space/3", k=10)["id"])
    watched = Watched(browser, "file://", bypass_csp=True)
    page = watched.page
    try:
        watched.open((out / "map.html").as_uri())
        assert watched.state()["drawn"] == len(analysis.ids) == 91
        index = watched.index_of("space/3")
        page.mouse.move(*watched.point_on_screen(index))
        page.wait_for_function(f"document.querySelector('#tooltip').dataset.loaded == '{index}'")
        assert "second line 3" in page.locator("#tooltip").inner_text()
        page.mouse.click(*watched.point_on_screen(index))
        page.wait_for_function("document.querySelector('#panel-document [data-ids]') !== null")
        shown = page.locator("#panel-document [data-ids]").get_attribute("data-ids").split("\n")
        assert shown == wanted  # precomputed in the original space, same as the library
        page.screenshot(path=str(shots / "map-html.png"))

        assert page.input_value("#search-mode") == "text"
        page.select_option("#search-mode", "meaning")
        page.fill("#search-text", "orbit")
        page.click("#search button[type=submit]")
        page.wait_for_function("document.querySelector('#panel-search').dataset.mode == 'text'")
        assert "not available here" in page.locator("#panel-search").inner_text()
        highlighted = watched.state()["highlighted"]
        assert len(highlighted) == sum("orbit" in d["text"] for d in corpus())

        index = watched.index_of(EVIL_ID)
        page.mouse.click(*watched.point_on_screen(index))
        page.wait_for_function(
            "document.querySelector('#panel-document .doc-text').textContent.includes('onerror')"
        )
        assert page.evaluate("window.__pwned") is None
        page.select_option("#colour-by", "cluster")
        page.locator("#legend button").nth(0).click()
        assert watched.state()["drawn"] < 91
    finally:
        watched.close()
    assert all(u.startswith("file://") for u in watched.requests)
    shutil.copy(out / "map.html", shots / "map.html")


def test_compare_page_links_the_two_maps(page, served, shots):
    """Runs last: it adds a second space to the shared store."""
    service = served["service"]
    assert service.ingest(corpus(), dims=256)["embedded"] == 91
    spaces = [s["name"] for s in api(served, "/api/v1/spaces")["spaces"]]
    assert len(spaces) == 2
    response = service.http.post(
        "/api/v1/comparisons",
        params={"wait": "true"},
        json={"space_a": spaces[0], "space_b": spaces[1], "k": 3, "reduce": "pca"},
    )
    assert response.status_code == 200, response.text
    comparison = response.json()["comparison"]
    found = api(served, f"/api/v1/comparisons/{comparison}")
    listed = api(served, "/api/v1/comparisons")["comparisons"]
    assert [c["id"] for c in listed] == [comparison]

    page.page.goto(service.url + "/compare")
    page.page.wait_for_function("window.embedlabCompare !== undefined")
    page.page.evaluate("window.embedlabCompare.ready")
    state = page.page.evaluate("window.embedlabCompare.state()")
    assert state["comparison"] == comparison
    assert state["points"] == found["documents"]["compared"] == 91
    assert state["drawn"] == {"a": 91, "b": 91}

    # a box in A selects documents; B marks exactly the same ones
    box = page.page.locator("#map-a").bounding_box()
    x, y = page.page.evaluate("window.embedlabCompare.screenOf('a', 0)")
    page.page.click("#compare-box")
    page.page.mouse.move(box["x"] + x - 30, box["y"] + y - 30)
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + x + 30, box["y"] + y + 30, steps=4)
    page.page.mouse.up()
    selected = page.page.evaluate("window.embedlabCompare.state().selected")
    x0, y1 = page.page.evaluate(f"window.embedlabCompare.dataOf('a', {x - 30}, {y - 30})")
    x1, y0 = page.page.evaluate(f"window.embedlabCompare.dataOf('a', {x + 30}, {y + 30})")
    ax, ay = found["points"]["a"]["x"], found["points"]["a"]["y"]
    inside = {i for i in range(91) if x0 <= ax[i] <= x1 and y0 <= ay[i] <= y1}
    assert 0 in selected and set(selected) == inside, (x0, x1, y0, y1, ax[0], ay[0])
    rows = page.page.locator("#compare-selection tr")
    assert rows.count() == len(selected) + 1  # the same documents listed once, for both maps
    listed_ids = set(page.page.locator("#compare-selection td:first-child").all_inner_texts())
    assert listed_ids == {found["points"]["id"][i] for i in selected}

    # hovering a document in B marks it in both maps
    bx, by = page.page.evaluate("window.embedlabCompare.screenOf('b', 5)")
    box_b = page.page.locator("#map-b").bounding_box()
    page.page.mouse.move(box_b["x"] + bx, box_b["y"] + by)
    hovered = page.page.evaluate("window.embedlabCompare.state().hover")
    bxs, bys = found["points"]["b"]["x"], found["points"]["b"]["y"]
    assert hovered >= 0 and (bxs[hovered], bys[hovered]) == (bxs[5], bys[5])
    assert found["points"]["id"][hovered] in page.page.locator("#tooltip").inner_text()
    page.page.screenshot(path=str(shots / "compare.png"))


def test_api_docs_render_offline_from_the_package(browser, served):
    """/docs and /redoc draw the API from assets the service serves itself (FastAPI's
    defaults load them from a CDN: a blank page offline)."""
    origin = served["service"].url
    for path, selector in (
        ("/docs", ".swagger-ui .info .title"),
        ("/redoc", "h1:has-text('embedlab')"),
    ):
        watched = Watched(browser, origin)
        watched.page.goto(origin + path)
        title = watched.page.wait_for_selector(selector, timeout=30_000)
        assert "embedlab" in title.inner_text()
        if path == "/docs":  # the operations are listed, so the schema was read
            assert watched.page.locator(".opblock").count() > 20
        # no console error, no request outside the service (redoc's search runs in a
        # worker made from a blob of the page's own origin)
        watched.requests = [u.removeprefix("blob:") for u in watched.requests]
        watched.close()
