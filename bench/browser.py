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
        [--peer-latentscope URL [--peer-pid PID]]

The store is kept at --store, so later runs skip the ingests and analyses.

A peer side by side, in the same run and the same browser: latentscope (PyPI) showing
the same 100,000 points. Prepare and start it beforehand (its own venv; its embedding
step would download a model, so bench/latentscope_peer.py imports our vectors, map and
clusters into its data directory instead; ls-serve writes a .env in its working
directory, hence the cd):

    python3 -m venv /tmp/ls-venv && /tmp/ls-venv/bin/pip install latentscope
    .venv/bin/python bench/latentscope_peer.py --store /tmp/browser-bench-store \
        --data-dir /tmp/ls-data --ls-python /tmp/ls-venv/bin/python
    (cd /tmp/ls-data && exec /tmp/ls-venv/bin/ls-serve /tmp/ls-data \
        --host 127.0.0.1 --port 5055) &
    .venv/bin/python bench/browser.py \
        --peer-latentscope http://127.0.0.1:5055/datasets/synthetic/explore/scopes-001 \
        --peer-pid $(pgrep -f 'ls-serve /tmp/ls-data')

Measured on the peer's page from outside: ms from navigation until its points are
drawn, bytes transferred before that and, with --peer-pid, its server's resident memory
before and after; hover and frames/s need the page's own hooks, so they say n/a.
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

# Installed before any page script runs on the peer's page. The signal "points drawn":
# latentscope (1.0) draws its scatter with regl as ONE gl.drawArrays(POINTS, 0, n) over
# every point, so the time is performance.now() (since navigation, like our shownAt)
# right after the first WebGL draw call that covers >= `expected` vertices (count x
# instances; drawElements and the instanced variants are wrapped too). Our shownAt is
# likewise taken right after our draw call; neither waits for the compositor. A
# screenshot afterwards confirms that the canvas shows coloured pixels.
PEER_HOOK = """(expected) => {
  const peer = (window.__peerBench = {expected, drawnAt: null, drawn: 0, draws: 0,
    context: null});
  const seen = (vertices) => {
    peer.draws += 1;
    if (vertices > peer.drawn) peer.drawn = vertices;
    if (peer.drawnAt === null && vertices >= expected) peer.drawnAt = performance.now();
  };
  const wrap = (proto, name, count, instances) => {
    const original = proto && proto[name];
    if (!original) return;
    proto[name] = function (...args) {
      const result = original.apply(this, args);
      seen(args[count] * (instances === undefined ? 1 : args[instances]));
      return result;
    };
  };
  for (const proto of [self.WebGLRenderingContext, self.WebGL2RenderingContext]) {
    if (!proto) continue;
    wrap(proto.prototype, "drawArrays", 2);
    wrap(proto.prototype, "drawElements", 1);
    wrap(proto.prototype, "drawArraysInstanced", 2, 3);
    wrap(proto.prototype, "drawElementsInstanced", 1, 4);
    const getExtension = proto.prototype.getExtension;
    proto.prototype.getExtension = function (name) {
      const ext = getExtension.call(this, name);
      if (ext && name === "ANGLE_instanced_arrays" && !ext.__peerBench) {
        ext.__peerBench = true;
        wrap(ext, "drawArraysInstancedANGLE", 2, 3);
        wrap(ext, "drawElementsInstancedANGLE", 1, 4);
      }
      return ext;
    };
  }
  const getContext = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (type, ...rest) {
    const context = getContext.call(this, type, ...rest);
    if (context && type.startsWith("webgl")) peer.context = type;
    return context;
  };
}"""

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


def coloured_share(png: bytes) -> float:
    """Share of a screenshot's pixels that differ from its most common colour."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colours, counts = np.unique(pixels, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((pixels != background).any(axis=1).mean())


def measure_peer(browser, page_url: str, expected: int, peer_pid: int | None) -> dict:
    """The peer's map page, from outside: see PEER_HOOK for the "drawn" signal."""
    import httpx

    origin = "/".join(page_url.split("/")[:3])
    try:
        version = httpx.get(f"{origin}/api/version", timeout=10).text.strip()
    except httpx.HTTPError:
        version = "?"
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    context.add_init_script(f"({PEER_HOOK})({expected})")
    page = context.new_page()
    before = rss_mb(peer_pid) if peer_pid else None
    started = time.perf_counter()
    page.goto(page_url)
    page.wait_for_function("window.__peerBench.drawnAt !== null", timeout=120_000)
    wall_ms = (time.perf_counter() - started) * 1000
    state = page.evaluate("window.__peerBench")
    first_bytes = page.evaluate(
        """(shownAt) => performance.getEntriesByType('navigation').concat(
               performance.getEntriesByType('resource'))
             .filter(e => e.responseEnd <= shownAt)
             .reduce((sum, e) => sum + e.transferSize, 0)""",
        state["drawnAt"],
    )
    page.wait_for_timeout(1000)  # let it settle before the memory figure and screenshot
    canvases = page.locator("canvas")
    boxes = [canvases.nth(i).bounding_box() for i in range(canvases.count())]
    box = max((b for b in boxes if b), key=lambda b: b["width"] * b["height"])
    share = coloured_share(page.screenshot(clip=box))
    after = rss_mb(peer_pid) if peer_pid else None
    context.close()
    return {
        "version": version,
        "points": expected,
        "drawn": state["drawn"],
        "renderer": state["context"] or "?",
        "shown_ms": state["drawnAt"],
        "wall_ms": wall_ms,
        "first_bytes": first_bytes,
        "coloured": share,
        "rss_before_mb": before,
        "rss_after_mb": after,
    }


def peer_row(r: dict) -> str:
    memory = (
        f"{r['rss_before_mb']:.0f} -> {r['rss_after_mb']:.0f} MB "
        f"(+{r['rss_after_mb'] - r['rss_before_mb']:.0f} MB)"
        if r["rss_before_mb"] is not None
        else "n/a (no --peer-pid)"
    )
    return (
        f"| latentscope {r['version']} (peer), {r['points']:,} synthetic points | "
        f"{r['renderer']} (regl) | {r['drawn']:,} of {r['points']:,} in one draw call "
        f"({r['coloured']:.0%} of the canvas coloured) | {r['shown_ms']:.0f} ms "
        f"(wall {r['wall_ms']:.0f} ms) | {r['first_bytes'] / 1e6:.2f} MB | "
        "n/a (no hook in its page for tooltip timing) | "
        "n/a (no hook in its page for frame timing) | "
        f"{memory} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, default=DEFAULT_ARCHIVE)
    parser.add_argument("--store", type=Path, default=Path("/tmp/browser-bench-store"))
    parser.add_argument(
        "--peer-latentscope",
        metavar="URL",
        help="latentscope's map page for the same 100,000 points, started beforehand",
    )
    parser.add_argument("--peer-pid", type=int, help="the peer server's process id (memory)")
    parser.add_argument(
        "--peer-points", type=int, default=SYNTHETIC, help="points the peer's page shows"
    )
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
            peer = None
            if args.peer_latentscope:
                peer = measure_peer(browser, args.peer_latentscope, args.peer_points, args.peer_pid)
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
    if peer is not None:
        print(peer_row(peer))
    print(
        "targets: shown <= 1.5 s (11,314) and <= 2 s (100,000); hover <= 100 ms; >= 30 frames/s "
        "at 100,000; <= 1.5 MB before the points at 100,000; <= +500 MB serving 100,000"
    )


if __name__ == "__main__":
    main()
