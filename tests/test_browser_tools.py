"""The map's tools and layout (issue 25, items 6, 8, 16, 17, 18) in a real headless
Chromium against a real `embedlab serve` on loopback: one service, one store and one page
load (at 1100 x 800, the width the client measured) shared by the module.

The store holds two spaces, with the analysis of the second one (alphabetically) on
screen, 14 labels with 20 Newsgroups' long names, two sources, and one topic whose
documents are spread over 12 labels (a cluster that matches no class well).
Screenshots go to $EMBEDLAB_SCREENSHOTS (default: the test's temp folder).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import pytest

from tests.browser_helpers import Watched
from tests.fake_gemini import FakeGemini
from tests.service_helpers import InProcessService

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 1100, 800
GOOD = {"autos": "rec.autos", "med": "sci.med"}  # a topic, all of one label
SPREAD = [  # the third topic's documents, spread over these labels
    "alt.atheism",
    "comp.graphics",
    "comp.os.ms-windows.misc",
    "comp.sys.ibm.pc.hardware",
    "comp.sys.mac.hardware",
    "comp.windows.x",
    "misc.forsale",
    "rec.motorcycles",
    "sci.crypt",
    "sci.electronics",
    "soc.religion.christian",
    "talk.politics.mideast",
]


def corpus() -> list[dict]:
    docs = []
    for topic, label in GOOD.items():
        for i in range(20):
            docs.append(
                {
                    "id": f"{label}/{topic}-document-{i:03d}",
                    "text": f"topic:{topic} post {i} about {topic}\nline two {i}",
                    "label": label,
                    "source": "feed-a" if i % 2 else "feed-b",
                    "author": "ann" if i < 12 else "bob",  # a field of its own
                }
            )
    for i in range(48):
        label = SPREAD[i % len(SPREAD)]
        docs.append(
            {
                "id": f"{label}/mideast-document-{i:03d}",
                "text": f"topic:mideast post {i} armenian turkish\nline two {i}",
                "label": label,
                "source": "feed-c",
                **({"author": "cy"} if i < 30 else {}),
            }
        )
    return docs


@pytest.fixture(scope="module")
def served(tmp_path_factory, browser) -> Iterator[dict]:
    """Two spaces (128 and 256 dims) of the same 88 documents; a k=3 analysis of the
    256-dims one (the newest: on screen); a comparison of the two."""
    store = tmp_path_factory.mktemp("tools") / "store"
    with FakeGemini() as fake:
        service = InProcessService(store, fake)
        try:
            for dims in (128, 256):
                assert service.ingest(corpus(), dims=dims)["embedded"] == 88
            spaces = sorted(s["name"] for s in service.http.get("/api/v1/spaces").json()["spaces"])
            assert len(spaces) == 2
            compared = service.http.post(
                "/api/v1/comparisons",
                params={"wait": "true"},
                json={"space_a": spaces[0], "space_b": spaces[1], "k": 3, "reduce": "pca"},
            )
            assert compared.status_code == 200, compared.text
            response = service.http.post(
                "/api/v1/analyses",
                params={"wait": "true"},
                json={"k": 3, "seed": 0, "reduce": "pca", "space": spaces[1]},
            )
            assert response.status_code == 200, response.text
            yield {
                "service": service,
                "analysis": response.json()["analysis"],
                "comparison": compared.json()["comparison"],
                "spaces": spaces,
            }
        finally:
            service.stop()


@pytest.fixture(scope="module")
def page(browser, served) -> Iterator[Watched]:
    """One page for the module, at 1100 x 800 (wait_for_function needs bypass_csp)."""
    watched = Watched(browser, served["service"].url, accept_downloads=True, bypass_csp=True)
    watched.page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    watched.open(served["service"].url + "/")
    assert watched.state()["analysis"] == served["analysis"]
    yield watched
    watched.close()


def api(served, path: str, **params):
    response = served["service"].http.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def head(served) -> dict:
    return api(served, f"/api/v1/analyses/{served['analysis']}/map")


def rgb(css: str) -> tuple[int, int, int]:
    """'rgb(1, 2, 3)' (a computed style) as numbers."""
    r, g, b = (int(float(v)) for v in css[css.index("(") + 1 : css.index(")")].split(",")[:3])
    return r, g, b


def lab(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    """CIE L*a*b* (D65) of an sRGB colour."""

    def linear(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(c) for c in colour)
    x = (0.4124 * r + 0.3576 * g + 0.1805 * b) / 0.95047
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    z = (0.0193 * r + 0.1192 * g + 0.9505 * b) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def distance(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    return math.dist(lab(a), lab(b))


def chroma(colour: tuple[int, int, int]) -> float:
    _, a, b = lab(colour)
    return math.hypot(a, b)


def swatches(page: Watched) -> dict[str, tuple[int, int, int]]:
    """The legend as shown: each entry's name and its swatch colour."""
    rows = page.page.evaluate(
        """[...document.querySelectorAll('#legend button')].map((b) => [
            b.querySelector('.name').textContent,
            getComputedStyle(b.querySelector('.swatch')).backgroundColor])"""
    )
    return {name: rgb(colour) for name, colour in rows}


# -- 16: "New analysis…" starts on the space on screen ------------------------------------


def test_new_analysis_form_starts_on_the_space_on_screen(page, served):
    on_screen = head(served)["space"]["name"]
    assert on_screen == served["spaces"][1]  # not the first alphabetically
    page.page.click("#new-analysis")
    assert page.page.input_value("#new-form select[name=space]") == on_screen
    offered = page.page.eval_on_selector_all(
        "#new-form select[name=space] option", "(options) => options.map((o) => o.value)"
    )
    assert sorted(offered) == served["spaces"]
    page.page.click("#new-analysis")  # closed again
    assert page.page.locator("#new-form").is_hidden()


# -- 18: layout and palette ---------------------------------------------------------------


def map_width(page: Watched) -> float:
    return page.page.locator("#map").bounding_box()["width"]


def test_the_map_gets_most_of_1100_px_and_side_panels_fold_away(page, shots):
    assert page.page.evaluate("window.innerWidth") == WIDTH
    assert map_width(page) >= 650
    page.page.screenshot(path=str(shots / "map-1100.png"))
    page.page.click("#fold-right")
    assert page.page.locator("#right").is_hidden()
    page.page.wait_for_function(f"document.querySelector('#map').width >= {WIDTH - 240}")
    left = page.page.locator("#left").bounding_box()["width"]
    assert map_width(page) >= WIDTH - left - 4
    assert page.page.get_attribute("#fold-right", "aria-expanded") == "false"
    page.page.click("#fold-left")
    assert map_width(page) >= WIDTH - 4
    page.page.click("#fold-left")
    page.page.click("#fold-right")
    assert page.page.locator("#right").is_visible() and map_width(page) >= 650


def select_everything(page: Watched) -> None:
    box = page.page.locator("#map").bounding_box()
    page.page.click("#box-mode")
    page.page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.page.mouse.down()
    page.page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=4)
    page.page.mouse.up()
    page.page.click("#box-mode")


def test_the_selection_table_fits_its_panel(page, shots):
    select_everything(page)
    assert len(page.state()["selection"]) == 88
    panel = page.page.locator("#panel-selection")
    fits = page.page.evaluate(
        """(() => {
            const panel = document.querySelector('#panel-selection');
            const right = panel.getBoundingClientRect().left + panel.clientWidth;
            const heads = [...document.querySelectorAll('#selection-table th')];
            return { scroll: panel.scrollWidth, client: panel.clientWidth,
                     heads: heads.map((th) => [
                         th.textContent, th.getBoundingClientRect().right <= right + 0.5]) };
        })()"""
    )
    assert fits["scroll"] <= fits["client"], fits
    assert fits["heads"] == [["id", True], ["label", True], ["cluster", True]]
    # a cut cell still says all of it
    cell = panel.locator("#selection-table td").nth(1)
    assert cell.get_attribute("title") == cell.text_content()
    page.page.screenshot(path=str(shots / "selection-1100.png"))
    panel.locator("button:has-text('Clear')").click()
    assert page.state()["selection"] == []


def test_fourteen_labels_get_colours_far_apart_and_none_grey(page, shots):
    page.page.select_option("#colour-by", "label")
    shown = swatches(page)
    assert len(shown) == 14
    colours = list(shown.values())
    grey = (189, 189, 189)  # noise
    assert all(chroma(c) >= 25 and distance(c, grey) >= 25 for c in colours), shown
    closest = min(
        (distance(a, b), x, y)
        for i, (x, a) in enumerate(shown.items())
        for y, b in list(shown.items())[i + 1 :]
    )
    assert closest[0] >= 25, closest
    # names wrap only at their dots: no piece of a name is cut across two lines
    cut = page.page.evaluate(
        """() => [...document.querySelectorAll('#legend .name')].flatMap((name) =>
            [...name.childNodes].filter((n) => n.nodeType === 3).filter((n) => {
              const range = document.createRange(); range.selectNodeContents(n);
              return range.getClientRects().length > 1;
            }).map((n) => n.textContent))"""
    )
    assert cut == [], cut
    page.page.screenshot(path=str(shots / "labels-1100.png"))


# -- 6: a cluster wears its class's colour only when it matches it well -------------------


def test_a_cluster_wears_its_class_colour_only_when_it_matches_it(page, served, shots):
    page.page.select_option("#colour-by", "label")
    by_label = swatches(page)
    rows = {c["cluster"]: c for c in head(served)["clusters"]}
    good = {c: row for c, row in rows.items() if row["match"]["wears_colour"]}
    poor = [row for row in rows.values() if not row["match"]["wears_colour"]]
    assert sorted(row["match"]["label"] for row in good.values()) == sorted(GOOD.values())
    assert len(poor) == 1 and poor[0]["match"]["label"] in SPREAD
    assert poor[0]["match"]["share"] == pytest.approx(4 / 48, abs=1e-6)

    page.page.select_option("#colour-by", "cluster")
    legend = page.page.locator("#legend button")
    shown = swatches(page)
    names = list(shown)
    for code, row in enumerate(sorted(rows.values(), key=lambda r: r["code"])):
        colour = shown[names[code]]
        text = legend.nth(code).inner_text()
        assert f"matched to {row['match']['label']}, {round(100 * row['match']['share'])}%" in text
        if row["match"]["wears_colour"]:
            assert colour == by_label[row["match"]["label"]]
        else:  # a colour of its own: none of the 14 classes', not grey
            assert min(distance(colour, c) for c in by_label.values()) >= 25
            assert chroma(colour) >= 25 and "own colour" in text
    page.page.screenshot(path=str(shots / "clusters-1100.png"))


# -- 17: a lasso, keyboard stepping, colour by a metadata field, density, /compare legend --


def inside(x: float, y: float, polygon: list[tuple[float, float]]) -> bool:
    """Even-odd rule, as a reference for the page's own test."""
    hit = False
    for (xa, ya), (xb, yb) in zip(polygon, polygon[-1:] + polygon[:-1]):
        if (ya > y) != (yb > y) and x < (xb - xa) * (y - ya) / (yb - ya) + xa:
            hit = not hit
    return hit


def on_screen(page: Watched) -> list[tuple[float, float]]:
    return [
        tuple(p)
        for p in page.page.evaluate(
            "[...Array(window.embedlab.state().points).keys()]"
            ".map((i) => window.embedlab.screenOf(i))"
        )
    ]


def test_a_lasso_selects_the_points_inside_it_into_the_selection_table(page, shots):
    box = page.page.locator("#map").bounding_box()
    w, h = box["width"], box["height"]
    # a triangle over the map's upper-left half: a box around it would take every point
    triangle = [(4.0, 4.0), (w - 4, 4.0), (4.0, h - 4)]
    expected = sorted(i for i, (x, y) in enumerate(on_screen(page)) if inside(x, y, triangle))
    assert 0 < len(expected) < 88
    page.page.click("#lasso-mode")
    assert page.page.get_attribute("#lasso-mode", "aria-pressed") == "true"
    mouse = page.page.mouse
    mouse.move(box["x"] + triangle[0][0], box["y"] + triangle[0][1])
    mouse.down()
    for x, y in triangle[1:] + [(triangle[0][0], triangle[0][1] + 2)]:
        mouse.move(box["x"] + x, box["y"] + y, steps=12)
        if (x, y) == triangle[1]:
            assert page.page.locator("#lasso").is_visible()  # the outline follows the pointer
    mouse.up()
    state = page.state()
    assert sorted(state["selection"]) == expected and state["selectedBy"] == "lasso"
    assert page.page.locator("#lasso").is_hidden()
    rows = page.page.locator("#selection-table tr")
    assert rows.count() == len(expected) + 1
    assert (
        page.page.locator("#panel-selection")
        .inner_text()
        .startswith(f"{len(expected)} documents selected.")
    )
    page.page.screenshot(path=str(shots / "lasso-1100.png"))
    page.page.click("#lasso-mode")  # off again; a plain drag pans
    assert page.page.get_attribute("#lasso-mode", "aria-pressed") == "false"
    page.page.locator("#panel-selection button:has-text('Clear')").click()
    assert page.state()["selection"] == []


def neighbours_of(served, doc_id: str) -> list[str]:
    space = head(served)["space"]["name"]
    rows = api(served, "/api/v1/neighbours", id=doc_id, k=10, space=space)["neighbours"]
    return [row["id"] for row in rows]


def press(page: Watched, key: str) -> str:
    """Press `key` on the map and wait for the focus to move; the focused id."""
    before = page.state()["focus"]
    page.page.keyboard.press(key)
    page.page.wait_for_function(f"window.embedlab.state().focus !== {before}")
    return page.page.evaluate("window.embedlab.idOf(window.embedlab.state().focus)")


def topic(doc_id: str) -> str:
    return doc_id.split("/")[1].split("-document-")[0]


def test_keys_step_through_neighbours_and_the_cluster_with_a_visible_focus(page, served, shots):
    page.page.focus("#map")
    page.page.keyboard.press("Escape")
    assert page.state()["focus"] == -1
    first = press(page, "]")  # nothing focused: the point nearest the centre
    second = press(page, "]")
    assert second != first and topic(second) == topic(first)  # the same cluster
    assert press(page, "[") == first
    # n: the nearest neighbour (original space) not yet visited; again; Shift+N: back
    one = press(page, "n")
    assert one == next(d for d in neighbours_of(served, first) if d != first)
    two = press(page, "n")
    assert two == next(d for d in neighbours_of(served, one) if d not in (first, one))
    assert page.state()["walk"] == [page.index_of(d) for d in (first, one, two)]
    assert press(page, "Shift+N") == one
    # the focus is visible: a ring on the point, a note naming it, the canvas keeps the keys
    focus = page.state()["focus"]
    ring = page.page.locator("#focus-ring").bounding_box()
    x, y = page.point_on_screen(focus)
    assert abs(ring["x"] + ring["width"] / 2 - x) < 1.5
    assert abs(ring["y"] + ring["height"] / 2 - y) < 1.5
    assert ring["width"] >= 20
    assert one in page.page.locator("#focus-note").inner_text()
    assert page.page.evaluate("document.activeElement.id") == "map"
    # the document panel's title (a long id) wraps inside the panel rather than running out
    title = page.page.locator("#right .doc-id")
    assert title.inner_text().replace("\n", "") == one
    width = page.page.evaluate("document.querySelector('#right .doc-id').scrollWidth")
    assert width <= title.bounding_box()["width"] + 1
    page.page.screenshot(path=str(shots / "focus-1100.png"))
    page.page.keyboard.press("Escape")
    assert page.state()["focus"] == -1
    assert page.page.locator("#focus-ring").is_hidden()


def test_points_can_be_coloured_by_a_metadata_field_with_its_legend(page, served, shots):
    offered = page.page.eval_on_selector_all(
        "#colour-by option", "(options) => options.map((o) => [o.value, o.textContent])"
    )
    assert ["field:source", "source"] in offered
    page.page.select_option("#colour-by", "field:source")
    assert page.state()["colourBy"] == "field:source"
    assert page.page.inner_text("#legend-title") == "source"
    shown = swatches(page)
    assert list(shown) == ["feed-c", "feed-a", "feed-b"]  # the most common first
    counts = page.page.locator("#legend .count").all_inner_texts()
    assert counts == ["48", "20", "20"]
    colours = list(shown.values())
    assert min(distance(a, b) for i, a in enumerate(colours) for b in colours[i + 1 :]) >= 25
    assert "c=field%3Asource" in page.page.url  # the URL keeps the view
    # the legend hides a value's points
    page.page.locator("#legend button", has_text="feed-c").click()
    assert page.state()["drawn"] == 40
    page.page.screenshot(path=str(shots / "source-1100.png"))
    page.page.click("#legend-all")
    assert page.state()["drawn"] == 88
    page.page.select_option("#colour-by", "label")


def test_a_documents_own_field_sent_over_http_colours_the_map(page, served, shots):
    """The JSON body's "author" (no field of embedlab's) is stored with each document and
    offered by its own name, with its legend."""
    offered = page.page.eval_on_selector_all(
        "#colour-by option", "(options) => options.map((o) => [o.value, o.textContent])"
    )
    assert ["field:author", "author"] in offered
    page.page.select_option("#colour-by", "field:author")
    assert page.page.inner_text("#legend-title") == "author"
    shown = swatches(page)
    assert list(shown) == ["cy", "ann", "bob", "(none)"]  # the most common first, none last
    assert page.page.locator("#legend .count").all_inner_texts() == ["30", "24", "16", "18"]
    page.page.locator("#legend button", has_text="cy").click()
    assert page.state()["drawn"] == 58
    page.page.screenshot(path=str(shots / "author-1100.png"))
    page.page.click("#legend-all")
    assert page.state()["drawn"] == 88
    page.page.select_option("#colour-by", "label")


BIG = 100_000
BLOBS = [(-10.0, 0.0), (10.0, 0.0), (0.0, 12.0)]


def synthetic(real: dict) -> tuple[dict, bytes]:
    """A 100,000-point map (three dense blobs, a sparse background) in the real head's shape."""
    import numpy as np

    rng = np.random.default_rng(0)
    parts = [rng.normal(centre, 1.0, size=(30_000, 2)) for centre in BLOBS]
    parts.append(rng.uniform((-20, -10), (20, 22), size=(BIG - 90_000, 2)))
    xy = np.concatenate(parts).astype("<f4")
    cluster = np.repeat(np.arange(4), [30_000, 30_000, 30_000, BIG - 90_000]).astype("<u1")
    label = (np.arange(BIG) % len(real["labels"])).astype("<u1")
    body = xy[:, 0].tobytes() + xy[:, 1].tobytes() + label.tobytes() + cluster.tobytes()
    fake = dict(real, id="synthetic", documents=BIG)
    fake["encoding"] = dict(real["encoding"], code="uint8", bytes=len(body))
    fake["bounds"] = [*xy.min(axis=0).tolist(), *xy.max(axis=0).tolist()]
    fake["labels"] = [dict(row, size=int((label == row["code"]).sum())) for row in real["labels"]]
    fake["clusters"] = [
        {
            "code": c,
            "cluster": c,
            "name": f"blob {c}",
            "size": int((cluster == c).sum()),
            "terms": [],
            "labels": {},
            "match": None,
            "representatives": [],
            "at": xy[cluster == c].mean(axis=0).tolist(),
        }
        for c in range(4)
    ]
    return fake, body


def test_density_shading_draws_100k_points_quickly_and_readably(browser, served, shots):
    fake, body = synthetic(head(served))
    url = served["service"].url
    watched = Watched(browser, url, bypass_csp=True)
    watched.page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    replies = {
        "/api/v1/analyses/synthetic/map": (json.dumps(fake), "application/json"),
        "/api/v1/analyses/synthetic/points?format=binary": (body, "application/octet-stream"),
        "/api/v1/analyses/synthetic/ids": (
            json.dumps({"ids": [f"s{i}" for i in range(BIG)]}),
            "application/json",
        ),
        "/api/v1/analyses/synthetic/fields": (json.dumps({"fields": []}), "application/json"),
        "/api/v1/analyses/synthetic/successor": (
            json.dumps({"successor": None}),
            "application/json",
        ),
    }

    def reply(route):
        found = replies[route.request.url[len(url) :]]
        route.fulfill(status=200, body=found[0], content_type=found[1])

    watched.page.route("**/api/v1/analyses/synthetic/**", reply)
    try:
        watched.open(url + "/#a=synthetic")
        assert watched.state()["points"] == BIG
        for mode in ("both", "only"):
            frames = watched.state()["frames"]
            watched.page.select_option("#density-mode", mode)
            watched.page.wait_for_function(
                f"window.embedlab.state().frames > {frames}", timeout=5_000
            )
            state = watched.state()
            assert state["density"] == mode
            assert state["densityMs"] < 1000, state["densityMs"]  # a frame's work, not a hang
        assert watched.page.locator("#density").is_visible()
        assert state["densityBands"] >= 5  # shading in steps, not one blob

        def darkness(x: float, y: float) -> float:  # of the drawn page, 0 white .. 765 black
            sx, sy = watched.page.evaluate(f"window.embedlab.toScreen({x}, {y})")
            pixel = watched.page.evaluate(
                f"""(() => {{ const c = document.querySelector('#density');
                const r = c.getBoundingClientRect(), k = c.width / r.width;
                const d = c.getContext('2d').getImageData(Math.floor({sx} * k),
                    Math.floor({sy} * k), 1, 1).data;
                return [d[0], d[1], d[2], d[3]]; }})()"""
            )
            return (765 - sum(pixel[:3])) * pixel[3] / 255

        centres = [darkness(x, y) for x, y in BLOBS]
        between = darkness(0.0, 0.0)  # between the two lower blobs: only the background
        outside = darkness(-60.0, 60.0)  # off the data
        assert min(centres) > 2 * between > 0, (centres, between)
        assert outside == 0
        watched.page.screenshot(path=str(shots / "density-100k.png"))
        panned = watched.state()["frames"]
        watched.page.focus("#map")
        watched.page.keyboard.press("ArrowLeft")  # it follows the view
        watched.page.wait_for_function(f"window.embedlab.state().frames > {panned}")
        watched.page.select_option("#density-mode", "off")
        watched.page.wait_for_function("document.querySelector('#density').hidden")
    finally:
        watched.close()


def test_compare_has_a_legend_for_each_colouring(browser, served, shots):
    url = served["service"].url
    found = api(served, f"/api/v1/comparisons/{served['comparison']}")
    n = len(found["points"]["id"])
    watched = Watched(browser, url)
    watched.page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
    try:
        watched.page.goto(f"{url}/compare#c={served['comparison']}")
        watched.page.wait_for_function("window.embedlabCompare !== undefined")
        watched.page.evaluate("window.embedlabCompare.ready")
        legend = watched.page.locator("#compare-legend button")
        expected = {
            "label": ("Labels", 14),
            "cluster_a": ("Clusters in A", 3),
            "cluster_b": ("Clusters in B", 3),
            "jaccard": ("Neighbourhood agreement (Jaccard@", 6),
        }
        for mode, (title, entries) in expected.items():
            watched.page.select_option("#compare-colour", mode)
            assert watched.page.inner_text("#compare-legend-title").startswith(title)
            assert legend.count() == entries
            rows = watched.page.evaluate(
                """[...document.querySelectorAll('#compare-legend button')].map((b) => [
                    Number(b.dataset.key), b.querySelector('.name').textContent,
                    Number(b.querySelector('.count').textContent),
                    getComputedStyle(b.querySelector('.swatch')).backgroundColor])"""
            )
            assert sum(row[2] for row in rows) == n
            category = watched.page.evaluate(
                f"[...Array({n}).keys()].map((i) => window.embedlabCompare.categoryOf(i))"
            )
            drawn = watched.page.evaluate(
                f"""[...Array({n}).keys()].map((i) => {{
                    const [x, y] = window.embedlabCompare.screenOf('a', i);
                    const d = document.querySelector('#map-a').getContext('2d')
                        .getImageData(Math.round(x), Math.round(y), 1, 1).data;
                    return [d[0], d[1], d[2]]; }})"""
            )
            for key, name, size, colour in rows:
                members = [i for i, c in enumerate(category) if c == key]
                assert len(members) == size, (mode, name)
                if size:  # the swatch is the colour its points are drawn in
                    assert rgb(colour) in {tuple(drawn[i]) for i in members}, (mode, name)
            if mode == "label":
                assert [row[1] for row in rows] == sorted(row[1] for row in rows)
                assert all(chroma(rgb(row[3])) >= 25 for row in rows)  # no grey class
        watched.page.screenshot(path=str(shots / "compare-legend-1100.png"))
        # a click on an entry selects its documents in both maps
        watched.page.select_option("#compare-colour", "cluster_a")
        legend.nth(0).click()
        selected = watched.page.evaluate("window.embedlabCompare.state().selected")
        assert len(selected) == int(legend.nth(0).locator(".count").inner_text())
        assert watched.page.locator("#compare-selection tr").count() == len(selected) + 1
        assert legend.nth(0).get_attribute("aria-pressed") == "true"
    finally:
        watched.close()


# -- 8: a blank k box runs what it shows, "auto" (runs last: it changes the page's map) ----


def test_a_blank_k_box_runs_k_auto_as_it_shows(page, served):
    page.page.click("#new-analysis")
    assert page.page.get_attribute("#new-form input[name=k]", "placeholder") == "auto"
    page.page.fill("#new-form input[name=k]", "")
    page.page.select_option("#new-form select[name=reduce]", "pca")
    with page.page.expect_request(
        lambda r: r.url.endswith("/api/v1/analyses") and r.method == "POST"
    ) as sent:
        page.page.click("#new-form button[type=submit]")
    assert json.loads(sent.value.post_data)["k"] == "auto"
    page.page.wait_for_function(
        f"window.embedlab.state().analysis !== {json.dumps(served['analysis'])}", timeout=90_000
    )
    analysis = page.state()["analysis"]
    found = api(served, f"/api/v1/analyses/{analysis}")
    assert found["options"]["k"] == "auto"
    assert found["metrics"]["params"]["clustering"]["k_auto_range"]  # k chosen by silhouette
    served["service"].http.delete(f"/api/v1/analyses/{analysis}")
