/* embedlab compare: the two maps of a stored comparison side by side (B aligned onto A
 * by Procrustes), linked: hovering or selecting documents in one marks the same documents
 * in the other. Data from GET /api/v1/comparisons/{id}; text is only ever set as text.
 */
(() => {
  "use strict";

  const $ = (sel) => document.querySelector(sel);
  // the map's palette (web/app.js): many categories far apart, none grey; grey is noise
  const COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#9000fc", "#fc009c", "#ccc000",
    "#846024", "#00d8c0", "#e47890", "#0060fc", "#f060fc", "#a8cc84", "#187854", "#00d800",
    "#fca878", "#3cccf0", "#60780c", "#fc84d8", "#cc0054", "#a8b4fc", "#cc9018", "#90cc00",
    "#006cd8", "#a84800", "#b4249c", "#00d884", "#9048d8", "#fc0000",
  ];
  const NOISE = "#bdbdbd";
  const AGREEMENT = ["#b2182b", "#ef8a62", "#fddbc7", "#d1e5f0", "#67a9cf", "#2166ac"]; // low -> high
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) { // keep it for this tab, never in the address bar or history
    sessionStorage.setItem("embedlab-token", params.get("token"));
    params.delete("token");
    history.replaceState(null, "", `${location.pathname}#${params}`);
  }
  const token = sessionStorage.getItem("embedlab-token");

  async function api(path) {
    const response = await fetch(path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(body.detail || response.statusText);
    return body;
  }

  const state = { data: null, n: 0, colour: "label", selected: null, hover: -1, drawn: { a: 0, b: 0 } };
  let readyResolve;
  const ready = new Promise((resolve) => { readyResolve = resolve; });

  class Side {
    constructor(name) {
      this.name = name;
      this.canvas = $(`#map-${name}`);
      this.ctx = this.canvas.getContext("2d");
      this.box = this.canvas.parentElement.querySelector(".box");
    }
    setPoints(xs, ys) {
      this.xs = xs; this.ys = ys;
      let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (let i = 0; i < xs.length; i++) {
        x0 = Math.min(x0, xs[i]); x1 = Math.max(x1, xs[i]); y0 = Math.min(y0, ys[i]); y1 = Math.max(y1, ys[i]);
      }
      this.bounds = [x0, y0, x1, y1];
    }
    fit(bounds) { // both sides share A's frame, so aligned documents sit in the same place
      const rect = this.canvas.getBoundingClientRect();
      const [x0, y0, x1, y1] = bounds;
      this.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2,
        k: 0.9 * Math.min(rect.width / Math.max(x1 - x0, 1e-9), rect.height / Math.max(y1 - y0, 1e-9)) };
    }
    toScreen(i) {
      const rect = this.canvas.getBoundingClientRect();
      return [(this.xs[i] - this.view.cx) * this.view.k + rect.width / 2, rect.height / 2 - (this.ys[i] - this.view.cy) * this.view.k];
    }
    toData(sx, sy) {
      const rect = this.canvas.getBoundingClientRect();
      return [(sx - rect.width / 2) / this.view.k + this.view.cx, this.view.cy - (sy - rect.height / 2) / this.view.k];
    }
    nearest(sx, sy, radius = 8) {
      let best = -1, bestD = radius * radius;
      for (let i = 0; i < this.xs.length; i++) {
        const [x, y] = this.toScreen(i);
        const d = (x - sx) ** 2 + (y - sy) ** 2;
        if (d <= bestD) { bestD = d; best = i; }
      }
      return best;
    }
    draw() {
      const rect = this.canvas.getBoundingClientRect(), ratio = window.devicePixelRatio || 1;
      const w = Math.round(rect.width * ratio), h = Math.round(rect.height * ratio);
      if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
      const ctx = this.ctx;
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = "#fff";
      ctx.fillRect(0, 0, rect.width, rect.height);
      const size = state.n > 5000 ? 2 : state.n > 1000 ? 3 : 5;
      const lit = [];
      let drawn = 0;
      for (let i = 0; i < state.n; i++) {
        if (state.selected && state.selected.has(i)) { lit.push(i); continue; }
        const [x, y] = this.toScreen(i);
        ctx.fillStyle = state.selected ? "#d8dadd" : colourOf(i);
        ctx.fillRect(x - size / 2, y - size / 2, size, size);
        drawn++;
      }
      for (const i of lit.concat(state.hover >= 0 ? [state.hover] : [])) {
        const [x, y] = this.toScreen(i);
        ctx.beginPath();
        ctx.arc(x, y, i === state.hover ? 7 : 4, 0, 2 * Math.PI);
        ctx.fillStyle = colourOf(i);
        ctx.fill();
        ctx.strokeStyle = "#111";
        ctx.lineWidth = i === state.hover ? 2 : 1;
        ctx.stroke();
      }
      state.drawn[this.name] = drawn + lit.length;
    }
  }
  const sides = { a: new Side("a"), b: new Side("b") };

  // Each point's category in the colour mode (a key into legendEntries()).
  function categoryOf(i) {
    const p = state.data.points;
    if (state.colour === "jaccard") return Math.min(AGREEMENT.length - 1, Math.floor(p.jaccard[i] * AGREEMENT.length));
    if (state.colour === "cluster_a") return p.a.cluster[i];
    if (state.colour === "cluster_b") return p.b.cluster[i];
    return state.labelCode[i];
  }
  function colourOfCategory(key) {
    if (state.colour === "jaccard") return AGREEMENT[key];
    if (state.colour === "label") return COLOURS[key % COLOURS.length];
    return key < 0 ? NOISE : COLOURS[key % COLOURS.length];
  }
  function colourOf(i) { return colourOfCategory(categoryOf(i)); }

  // -- the legend: what each colour means, with counts; a click selects those documents
  function legendEntries() {
    const counts = new Map();
    for (let i = 0; i < state.n; i++) { const key = categoryOf(i); counts.set(key, (counts.get(key) || 0) + 1); }
    if (state.colour === "jaccard") {
      return AGREEMENT.map((_, b) => ({ key: b, size: counts.get(b) || 0,
        name: `${(b / AGREEMENT.length).toFixed(2)}–${((b + 1) / AGREEMENT.length).toFixed(2)}${b === 0 ? " (least alike)" : b === AGREEMENT.length - 1 ? " (most alike)" : ""}` }));
    }
    const keys = [...counts.keys()].sort((a, b) => a - b);
    if (state.colour === "label") return keys.map((key) => ({ key, size: counts.get(key), name: state.labels[key] || "(no label)" }));
    return keys.map((key) => ({ key, size: counts.get(key), name: key < 0 ? "noise" : `cluster ${key}` }));
  }
  const LEGEND_TITLES = { label: "Labels", cluster_a: "Clusters in A", cluster_b: "Clusters in B" };
  function renderLegend() {
    const title = state.colour === "jaccard"
      ? `Neighbourhood agreement (Jaccard@${state.data.neighbourhoods.k})` : LEGEND_TITLES[state.colour];
    $("#compare-legend-title").textContent = title;
    $("#compare-legend").replaceChildren(...legendEntries().map((entry) => {
      const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
      swatch.style.background = colourOfCategory(entry.key);
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.key = String(entry.key);
      button.setAttribute("aria-pressed", "false");
      button.title = `Select the ${entry.size} documents of ${entry.name}`;
      button.append(swatch, Object.assign(document.createElement("span"), { className: "name", textContent: entry.name }),
        Object.assign(document.createElement("span"), { className: "count", textContent: String(entry.size) }));
      button.addEventListener("click", () => {
        const chosen = new Set();
        for (let i = 0; i < state.n; i++) if (categoryOf(i) === entry.key) chosen.add(i);
        state.selected = chosen.size ? chosen : null;
        for (const other of $("#compare-legend").querySelectorAll("button")) other.setAttribute("aria-pressed", String(other === button));
        summarise();
        drawBoth();
      });
      const item = document.createElement("li");
      item.append(button);
      return item;
    }));
  }
  function drawBoth() { sides.a.draw(); sides.b.draw(); }

  function summarise() {
    const out = $("#compare-summary"), details = $("#compare-details");
    const p = state.data.points;
    const mean = (idx) => idx.reduce((s, i) => s + p.jaccard[i], 0) / Math.max(1, idx.length);
    if (!state.selected) {
      out.textContent = `${state.n} documents · mean Jaccard@${state.data.neighbourhoods.k} ${mean([...Array(state.n).keys()]).toFixed(3)}`;
      details.replaceChildren();
      return;
    }
    const idx = [...state.selected];
    out.textContent = `${idx.length} selected · mean Jaccard ${mean(idx).toFixed(3)}`;
    const rows = idx.slice(0, 200).map((i) => {
      const tr = document.createElement("tr");
      for (const v of [p.id[i], p.label[i] ?? "", p.a.cluster[i], p.b.cluster[i], p.jaccard[i].toFixed(2)]) {
        const td = document.createElement("td");
        td.textContent = String(v);
        tr.append(td);
      }
      return tr;
    });
    const table = document.createElement("table");
    table.id = "compare-selection";
    const head = document.createElement("tr");
    for (const name of ["id", "label", "cluster A", "cluster B", "Jaccard"]) {
      const th = document.createElement("th");
      th.textContent = name;
      head.append(th);
    }
    table.append(head, ...rows);
    details.replaceChildren(table);
  }

  function select(side, a, b) {
    const [x0, y1] = side.toData(Math.min(a[0], b[0]), Math.min(a[1], b[1]));
    const [x1, y0] = side.toData(Math.max(a[0], b[0]), Math.max(a[1], b[1]));
    const chosen = new Set();
    for (let i = 0; i < state.n; i++) {
      if (side.xs[i] >= x0 && side.xs[i] <= x1 && side.ys[i] >= y0 && side.ys[i] <= y1) chosen.add(i);
    }
    state.selected = chosen.size ? chosen : null;
    summarise();
    drawBoth();
  }

  const tooltip = $("#tooltip");
  let boxMode = false;
  for (const side of Object.values(sides)) {
    let drag = null;
    const at = (e) => { const r = side.canvas.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };
    side.canvas.addEventListener("pointerdown", (e) => {
      drag = { start: at(e) };
      side.canvas.setPointerCapture(e.pointerId);
      drag.box = boxMode || e.shiftKey;
    });
    side.canvas.addEventListener("pointermove", (e) => {
      const p = at(e);
      if (drag && drag.box) {
        side.box.hidden = false;
        Object.assign(side.box.style, { left: `${Math.min(p[0], drag.start[0])}px`, top: `${Math.min(p[1], drag.start[1])}px`,
          width: `${Math.abs(p[0] - drag.start[0])}px`, height: `${Math.abs(p[1] - drag.start[1])}px` });
        return;
      }
      const i = side.nearest(p[0], p[1]);
      if (i !== state.hover) {
        state.hover = i;
        drawBoth();
      }
      if (i < 0) { tooltip.hidden = true; return; }
      const d = state.data.points;
      tooltip.replaceChildren(
        Object.assign(document.createElement("strong"), { textContent: d.id[i] }),
        Object.assign(document.createElement("div"), { className: "meta",
          textContent: `label ${d.label[i] ?? "–"} · cluster A ${d.a.cluster[i]} · cluster B ${d.b.cluster[i]} · Jaccard ${d.jaccard[i].toFixed(2)}` }));
      tooltip.hidden = false;
      tooltip.style.left = `${e.clientX + 14}px`;
      tooltip.style.top = `${e.clientY + 14}px`;
    });
    side.canvas.addEventListener("pointerup", (e) => {
      if (drag && drag.box) {
        side.box.hidden = true;
        const p = at(e);
        if (Math.abs(p[0] - drag.start[0]) + Math.abs(p[1] - drag.start[1]) > 3) select(side, drag.start, p);
      }
      drag = null;
    });
    side.canvas.addEventListener("pointerleave", () => { tooltip.hidden = true; });
  }
  $("#compare-box").addEventListener("click", (e) => {
    boxMode = !boxMode;
    e.target.setAttribute("aria-pressed", String(boxMode));
  });
  $("#compare-clear").addEventListener("click", () => { state.selected = null; summarise(); renderLegend(); drawBoth(); });
  $("#compare-colour").addEventListener("change", (e) => { state.colour = e.target.value; renderLegend(); drawBoth(); });
  $("#comparison-pick").addEventListener("change", (e) => load(e.target.value));
  window.addEventListener("resize", drawBoth);

  async function load(id) {
    const data = await api(`/api/v1/comparisons/${encodeURIComponent(id)}`);
    state.data = data;
    state.n = data.points.id.length;
    state.selected = null;
    state.hover = -1;
    // the map's order: label names sorted, documents without a label last
    const named = [...new Set(data.points.label.filter((l) => l !== null && l !== undefined))].sort();
    state.labels = data.points.label.some((l) => l === null || l === undefined) ? [...named, ""] : named;
    state.labelCode = data.points.label.map((l) => state.labels.indexOf(l ?? ""));
    sides.a.setPoints(data.points.a.x, data.points.a.y);
    sides.b.setPoints(data.points.b.x, data.points.b.y);
    sides.a.fit(sides.a.bounds);
    sides.b.fit(sides.a.bounds);
    $("#title-a").textContent = $("#title-a").title = `A: ${data.spaces.a.name}`;
    $("#title-b").textContent = $("#title-b").title = `B: ${data.spaces.b.name} (aligned onto A)`;
    history.replaceState(null, "", `${location.pathname}#c=${encodeURIComponent(id)}`);
    summarise();
    renderLegend();
    drawBoth();
    readyResolve();
  }

  window.embedlabCompare = {
    ready,
    state: () => ({ comparison: state.data && state.data.id, points: state.n, drawn: Object.assign({}, state.drawn),
      selected: state.selected ? [...state.selected] : [], hover: state.hover }),
    screenOf: (side, i) => sides[side].toScreen(i),
    dataOf: (side, sx, sy) => sides[side].toData(sx, sy),
    idOf: (i) => state.data.points.id[i],
    categoryOf: (i) => categoryOf(i),
  };

  (async () => {
    const list = (await api("/api/v1/comparisons")).comparisons;
    const pick = $("#comparison-pick");
    pick.replaceChildren(...list.map((c) => Object.assign(document.createElement("option"), { value: c.id,
      textContent: `${String(c.created).slice(0, 16).replace("T", " ")} · ${c.space_a} vs ${c.space_b} · ${c.documents} docs · Jaccard ${Number(c.jaccard_mean).toFixed(3)}` })));
    if (!list.length) {
      $("#compare-summary").textContent = "No comparison stored yet.";
      $("#compare-details").textContent = "A comparison needs two embedding spaces holding the same documents " +
        "(ingest them with two providers, models or sizes), then `embedlab compare --space A --space B` " +
        "or POST /api/v1/comparisons. It then shows here: both maps side by side, linked.";
      for (const node of document.querySelectorAll("main.pair, #compare-legend-panel, #compare-box, #compare-clear, #compare-colour")) node.hidden = true;
      readyResolve();
      return;
    }
    const wanted = params.get("c");
    const id = wanted && list.some((c) => c.id === wanted) ? wanted : list[0].id;
    pick.value = id;
    await load(id);
  })().catch((error) => { $("#compare-summary").textContent = `Could not load: ${error.message}`; readyResolve(); });
})();
