"""The map page in headless Chromium: time to points, bytes first, hover, frames, memory.

Two analyses served by one `embedlab serve` (its own process) and opened in Debian's
Chromium (no GPU: WebGL2 is software-rendered) through Playwright, each in a fresh
browser context (cold cache):
- the 11,314 training posts (fake-Gemini vectors, 3072 dims, t-SNE map, k=20);
- 100,000 synthetic points (16-dim vectors in 20 groups brought as vectors, PCA map).
Printed per analysis: ms from navigation until the points are drawn, bytes transferred
before that (every response that ended before the first paint, headers included), hover
latency (tooltip with id/label/cluster, then the text from the API; median of 20), frames
per second while zooming and panning on every frame, and the service's resident memory
before and after serving the analysis.

    .venv/bin/python bench/browser.py [--store /tmp/browser-bench-store]

The store is kept at --store, so later runs skip the ingests and analyses.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import DEFAULT_ARCHIVE, ingest_training_set  # noqa: E402
from bench.service import fake_gemini_process, wait_for  # noqa: E402
from tests.conftest import free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
SYNTHETIC = 100_000
SYNTHETIC_SPACE = "synthetic-mixture"
GROUPS = 20


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic_frame(n: int, seed: int = 0):
    """n points in GROUPS Gaussian groups in 16 dims, with short texts and labels."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(GROUPS, 16)) * 3
    group = rng.integers(0, GROUPS, size=n)
    vectors = centres[group] + rng.normal(size=(n, 16))
    return pd.DataFrame(
        {
            "id": [f"synthetic/{i}" for i in range(n)],
            "text": [f"synthetic point {i} of group {g}" for i, g in enumerate(group)],
            "label": [f"group-{g:02d}" for g in group],
            "vector": list(vectors.astype("float32")),
        }
    )


def prepare(store: Path, archive: Path) -> tuple[str, str]:
    """(training analysis id, synthetic analysis id), made once and kept in the store."""
    import embedlab

    if not (store / "embedlab.json").is_file():
        with fake_gemini_process() as fake_url:
            seconds, summary = ingest_training_set(archive, store, fake_url)
        print(f"training posts ingested in {seconds:.0f} s: {summary}")
    with embedlab.open(store, quiet=True) as lab:
        spaces = {s.provider: s for s in lab.spaces()}
        if "custom" not in spaces:
            started = time.perf_counter()
            lab.ingest(synthetic_frame(SYNTHETIC), vector="vector", space=SYNTHETIC_SPACE)
            print(f"{SYNTHETIC:,} synthetic points stored in {time.perf_counter() - started:.0f} s")
            spaces = {s.provider: s for s in lab.spaces()}
        ids = {}
        for provider, reduce in (("gemini", "tsne"), ("custom", "pca")):
            found = lab.latest_analysis(spaces[provider])
            if found is None:
                started = time.perf_counter()
                found = lab.analyze(space=spaces[provider], k=20, reduce=reduce)
                print(f"{provider} analysed in {time.perf_counter() - started:.0f} s")
            ids[provider] = found.id
    return ids["gemini"], ids["custom"]


def settle(url: str, limit_s: float = 300.0) -> None:
    """Wait until the service's warm-up holds every space in memory, so the memory
    figures count what serving the map adds, not the warm-up."""
    import httpx

    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if not httpx.get(f"{url}/health").json().get("warming"):
            return
        time.sleep(0.5)
    raise SystemExit(f"the service did not warm up in {limit_s:.0f} s")


def measure(browser, url: str, analysis: str, service_pid: int, query: str = "") -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    before = rss_mb(service_pid)
    started = time.perf_counter()
    page.goto(f"{url}/{query}#a={analysis}")
    page.wait_for_function("window.embedlab && window.embedlab.state().shownAt", timeout=60_000)
    wall_ms = (time.perf_counter() - started) * 1000
    state = page.evaluate("window.embedlab.state()")
    first_bytes = page.evaluate(
        """(shownAt) => performance.getEntriesByType('navigation').concat(
               performance.getEntriesByType('resource'))
             .filter(e => e.responseEnd <= shownAt)
             .reduce((sum, e) => sum + e.transferSize, 0)""",
        state["shownAt"],
    )
    page.evaluate("window.embedlab.ready")
    box = page.locator("#map").bounding_box()
    shown, texts = [], []
    n = state["points"]
    for j in range(20):
        index = (j * 7919) % n
        x, y = page.evaluate(f"window.embedlab.screenOf({index})")
        if not (0 < x < box["width"] and 0 < y < box["height"]):
            continue
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.wait_for_function(
            "document.querySelector('#tooltip').dataset.loaded !== undefined", timeout=10_000
        )
        hovered = page.evaluate("window.embedlab.state()")
        shown.append(hovered["hoverShownMs"])
        texts.append(hovered["hoverTextMs"])
        page.mouse.move(box["x"] + 2, box["y"] + 2)
    fps = page.evaluate("window.embedlab.panZoomFps(3)")
    after = rss_mb(service_pid)
    renderer = page.evaluate("window.embedlab.renderer()")
    context.close()
    return {
        "points": n,
        "drawn": state["drawn"],
        "renderer": renderer,
        "shown_ms": state["shownAt"],
        "wall_ms": wall_ms,
        "first_bytes": first_bytes,
        "hover_shown_ms": statistics.median(shown),
        "hover_text_ms": statistics.median(texts),
        "hovers": len(shown),
        "fps": fps,
        "rss_before_mb": before,
        "rss_after_mb": after,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--store", type=Path, default=Path("/tmp/browser-bench-store"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    training, synthetic = prepare(args.store, args.archive)
    served = Path(shutil.copytree(args.store, Path("/tmp") / f"browser-bench-{os.getpid()}"))
    (served / ".embedlab.lock").unlink(missing_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    env.pop("GEMINI_API_KEY", None)
    log = open(served.parent / f"browser-bench-{os.getpid()}.log", "w")  # noqa: SIM115
    service = subprocess.Popen(
        [sys.executable, "-m", "embedlab.cli", "--store", str(served), "serve"]
        + ["--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(url, service)
        settle(url)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            version = browser.version
            rows = [
                ("11,314 training posts", measure(browser, url, training, service.pid)),
                ("100,000 synthetic points", measure(browser, url, synthetic, service.pid)),
                (
                    "100,000 synthetic points, ?renderer=webgl",
                    measure(browser, url, synthetic, service.pid, "?renderer=webgl"),
                ),
            ]
            browser.close()
    finally:
        service.terminate()
        service.wait(timeout=30)
        log.close()
        shutil.rmtree(served, ignore_errors=True)

    print(f"Chromium {version}, headless, no GPU (software WebGL2); one run")
    print(
        "| analysis | renderer | points drawn | shown after navigation | bytes before points | "
        "hover: tooltip / text | pan+zoom | service RSS before -> after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {r['renderer']} | {r['drawn']:,} of {r['points']:,} | "
            f"{r['shown_ms']:.0f} ms "
            f"(wall {r['wall_ms']:.0f} ms) | {r['first_bytes'] / 1e6:.2f} MB | "
            f"{r['hover_shown_ms']:.1f} / {r['hover_text_ms']:.1f} ms (median of {r['hovers']}) | "
            f"{r['fps']:.0f} frames/s | {r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MB "
            f"(+{r['rss_after_mb'] - r['rss_before_mb']:.0f} MB) |"
        )
    print(
        "targets: shown <= 1.5 s (11,314) and <= 2 s (100,000); hover <= 100 ms; >= 30 frames/s "
        "at 100,000; <= 1.5 MB before the points at 100,000; <= +500 MB serving 100,000"
    )


if __name__ == "__main__":
    main()
