/* embedlab map: every point of one analysis, drawn with WebGL2 (or a 2-D canvas when
 * WebGL2 is missing), with hover, neighbours, search, box selection and the evaluation.
 *
 * Two data sources behind one interface: ApiSource talks to `embedlab serve` (points
 * arrive as raw float32/uint8 arrays; ids, texts and neighbours on demand), EmbeddedSource
 * reads the data a self-contained map.html carries. Document text is only ever put into
 * the page as text (textContent), never as markup.
 */
(() => {
  "use strict";

  // ---------------------------------------------------------------- small helpers
  const $ = (sel) => document.querySelector(sel);
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
  const count = (n) => Number(n).toLocaleString("en");
  const firstLines = (text, lines = 6, chars = 420) => {
    const head = String(text || "").split("\n").filter((l) => l.trim()).slice(0, lines).join("\n");
    return head.length > chars ? head.slice(0, chars - 1) + "…" : head;
  };
  const oneLine = (text, chars = 140) => {
    const flat = String(text || "").split(/\s+/).join(" ").trim();
    return flat.length > chars ? flat.slice(0, chars - 1) + "…" : flat;
  };

  // Categorical colours for many categories, chosen as Glasbey's method does: after
  // Tableau's first five, each colour is the one farthest (CIE L*a*b*) from those before,
  // from white and from the noise grey, among colours dark enough to read on white and
  // far from grey (L* 42-78, chroma 38+). The first 14 differ by at least 38 (Delta E 1976),
  // the first 20 by 32, all 30 by 27; more
  // categories cycle through them darker, then lighter. No class is ever grey.
  const BASE_COLOURS = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#9000fc", "#fc009c", "#ccc000",
    "#846024", "#00d8c0", "#e47890", "#0060fc", "#f060fc", "#a8cc84", "#187854", "#00d800",
    "#fca878", "#3cccf0", "#60780c", "#fc84d8", "#cc0054", "#a8b4fc", "#cc9018", "#90cc00",
    "#006cd8", "#a84800", "#b4249c", "#00d884", "#9048d8", "#fc0000",
  ];
  function colourOf(code) {
    return BASE_COLOURS[code % BASE_COLOURS.length];
  }
  const NOISE_COLOUR = 255; // palette slot of DBSCAN/HDBSCAN noise: light grey
  function rgbOf(code) {
    if (code === NOISE_COLOUR) return [0.74, 0.74, 0.74];
    const hex = colourOf(code);
    const shade = Math.floor(code / BASE_COLOURS.length) % 3; // 0 as is, 1 darker, 2 lighter
    const rgb = [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16) / 255);
    return rgb.map((c) => (shade === 1 ? c * 0.65 : shade === 2 ? c + (1 - c) * 0.45 : c));
  }
  const cssOf = (code) => {
    const [r, g, b] = rgbOf(code).map((c) => Math.round(c * 255));
    return `rgb(${r},${g},${b})`;
  };

  class SourceError extends Error {
    constructor(message, status, fallback) {
      super(message);
      this.status = status;
      this.fallback = fallback; // free-text search cannot embed here: use text search
    }
  }

  // ---------------------------------------------------------------- data sources
  class ApiSource {
    constructor(token) {
      this.token = token;
      this.live = true;
      this.docs = new Map();
    }
    async request(path, options = {}) {
      const headers = Object.assign({}, options.headers || {});
      if (this.token) headers.Authorization = `Bearer ${this.token}`;
      let response;
      try {
        response = await fetch(path, Object.assign({}, options, { headers }));
      } catch (error) {
        throw new SourceError(`the service did not answer (${error.message})`, 0);
      }
      if (!response.ok) {
        let detail = response.statusText;
        try {
          const body = await response.json();
          detail = body.detail || body.title || detail;
        } catch (_) { /* not JSON */ }
        throw new SourceError(detail, response.status);
      }
      return response;
    }
    async json(path, options) {
      return (await this.request(path, options)).json();
    }
    async analyses() {
      return (await this.json("/api/v1/analyses")).analyses;
    }
    async spaces() {
      return (await this.json("/api/v1/spaces")).spaces;
    }
    async head(id) {
      return this.json(`/api/v1/analyses/${encodeURIComponent(id)}/map`);
    }
    async points(id) {
      return (await this.request(`/api/v1/analyses/${encodeURIComponent(id)}/points?format=binary`)).arrayBuffer();
    }
    async ids(id) {
      return (await this.json(`/api/v1/analyses/${encodeURIComponent(id)}/ids`)).ids;
    }
    async fields(id) { // metadata fields to colour by: source, any stored column
      return (await this.json(`/api/v1/analyses/${encodeURIComponent(id)}/fields`)).fields;
    }
    async document(docId, space) {
      if (this.docs.has(docId)) return this.docs.get(docId);
      const found = this.json(`/api/v1/documents/${encodeURIComponent(docId)}?space=${encodeURIComponent(space)}`);
      this.docs.set(docId, found);
      found.catch(() => this.docs.delete(docId));
      return found;
    }
    async neighbours(docId, space, analysis) {
      const query = new URLSearchParams({ id: docId, k: "10", space, analysis });
      return (await this.json(`/api/v1/neighbours?${query}`)).neighbours;
    }
    async semantic(text, space, analysis) {
      try {
        const body = JSON.stringify({ text, k: 25, space, analysis });
        const headers = { "Content-Type": "application/json" };
        return (await this.json("/api/v1/neighbours", { method: "POST", body, headers })).neighbours;
      } catch (error) {
        if (error.status && error.status !== 400 && error.status !== 404) error.fallback = true;
        throw error;
      }
    }
    async find(analysis, text) {
      const query = new URLSearchParams({ q: text });
      return this.json(`/api/v1/analyses/${encodeURIComponent(analysis)}/find?${query}`);
    }
    async startAnalysis(options) {
      const headers = { "Content-Type": "application/json" };
      return this.json("/api/v1/analyses", { method: "POST", body: JSON.stringify(options), headers });
    }
    async job(id) {
      return this.json(`/api/v1/jobs/${encodeURIComponent(id)}`);
    }
  }

  function decodeBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  class EmbeddedSource {
    constructor(data) {
      this.live = false;
      this.data = data;
      this.k = data.k || 0;
      this.neighbourRows = data.neighbours ? new Int32Array(decodeBase64(data.neighbours)) : null;
      this.similarities = data.similarities ? new Float32Array(decodeBase64(data.similarities)) : null;
      this.index = new Map(data.ids.map((id, i) => [id, i]));
    }
    async analyses() {
      const h = this.data.head;
      return [{ id: h.id, created: h.created, space: h.space.name, documents: h.documents,
        algorithm: h.options.algorithm, k: h.clusters.filter((c) => c.cluster >= 0).length,
        hungarian_accuracy: (h.metrics || {}).hungarian_accuracy, notes: h.notes || [] }];
    }
    async spaces() { return [this.data.head.space]; }
    async head() { return this.data.head; }
    async points() { return decodeBase64(this.data.points); }
    async ids() { return this.data.ids; }
    async fields() { return this.data.fields || []; }
    async document(docId) {
      const i = this.index.get(docId);
      if (i === undefined) throw new SourceError(`${docId} is not in this file`, 404);
      return { id: docId, text: this.data.texts[i], cut: !!(this.data.cut || [])[i] };
    }
    async neighbours(docId) {
      const i = this.index.get(docId);
      if (!this.neighbourRows || i === undefined) return [];
      const rows = [];
      for (let r = 0; r < this.k; r++) {
        const j = this.neighbourRows[i * this.k + r];
        if (j < 0) continue;
        rows.push({ rank: r + 1, id: this.data.ids[j], similarity: this.similarities[i * this.k + r],
          text: this.data.texts[j] });
      }
      return rows;
    }
    async semantic() {
      throw new SourceError("a saved map.html cannot embed a query", 0, true);
    }
    async find(_analysis, text) { // as the service's: id contains it, or text has every word
      const needle = text.trim().toLocaleLowerCase(), words = needle.split(/\s+/).filter(Boolean);
      const found = [];
      const exact = this.index.get(text.trim());
      if (exact !== undefined) found.push(exact);
      for (let i = 0; i < this.data.ids.length && found.length < 1000; i++) {
        if (i === exact) continue;
        const folded = this.data.texts[i].toLocaleLowerCase();
        if (this.data.ids[i].toLocaleLowerCase().includes(needle) || words.every((w) => folded.includes(w))) found.push(i);
      }
      return { indices: found, snippets: found.slice(0, 200).map((i) => oneLine(this.data.texts[i], 160)) };
    }
  }

  // ---------------------------------------------------------------- renderers
  const FLAG_HIDDEN = 1, FLAG_HIGHLIGHT = 2, FLAG_FOCUS = 4;

  class WebGLRenderer {
    constructor(canvas) {
      const gl = canvas.getContext("webgl2", { antialias: false });
      if (!gl) throw new Error("no WebGL2");
      this.gl = gl;
      this.name = "WebGL2";
      const vertex = `#version 300 es
        in vec2 a_pos; in float a_code; in float a_flag;
        uniform vec2 u_scale; uniform vec2 u_offset; uniform float u_size; uniform int u_pass;
        uniform float u_dim; uniform sampler2D u_palette;
        out vec4 v_colour; out float v_ring;
        void main() {
          int flag = int(a_flag + 0.5);
          bool hidden = (flag & 1) != 0;
          bool lit = (flag & 6) != 0;
          if (hidden || (u_pass == 0 && lit) || (u_pass == 1 && !lit)) {
            gl_Position = vec4(2.0, 2.0, 2.0, 1.0); gl_PointSize = 0.0; v_colour = vec4(0.0); v_ring = 0.0; return;
          }
          gl_Position = vec4(a_pos * u_scale + u_offset, 0.0, 1.0);
          vec4 c = texelFetch(u_palette, ivec2(int(a_code + 0.5) % 256, 0), 0);
          bool focus = (flag & 4) != 0;
          gl_PointSize = lit ? max(u_size * 2.0, 7.0) + (focus ? 5.0 : 0.0) : u_size;
          v_ring = lit ? 1.0 : 0.0;
          v_colour = (u_dim > 0.5 && !lit) ? vec4(mix(c.rgb, vec3(0.86), 0.72), 1.0) : c;
        }`;
      const fragment = `#version 300 es
        precision mediump float;
        in vec4 v_colour; in float v_ring; out vec4 colour;
        void main() {
          vec2 d = gl_PointCoord - vec2(0.5);
          float r = dot(d, d);
          if (r > 0.25) discard;
          colour = (v_ring > 0.5 && r > 0.12) ? vec4(0.05, 0.05, 0.05, 1.0) : v_colour;
        }`;
      const program = gl.createProgram();
      for (const [type, source] of [[gl.VERTEX_SHADER, vertex], [gl.FRAGMENT_SHADER, fragment]]) {
        const shader = gl.createShader(type);
        gl.shaderSource(shader, source);
        gl.compileShader(shader);
        if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
        gl.attachShader(program, shader);
      }
      gl.linkProgram(program);
      if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
      this.program = program;
      this.loc = {};
      for (const name of ["a_pos", "a_code", "a_flag"]) this.loc[name] = gl.getAttribLocation(program, name);
      for (const name of ["u_scale", "u_offset", "u_size", "u_pass", "u_dim", "u_palette"]) {
        this.loc[name] = gl.getUniformLocation(program, name);
      }
      this.vao = gl.createVertexArray();
      this.buffers = { pos: gl.createBuffer(), code: gl.createBuffer(), flag: gl.createBuffer() };
      const palette = new Uint8Array(256 * 4);
      for (let c = 0; c < 256; c++) {
        rgbOf(c).forEach((v, j) => { palette[c * 4 + j] = Math.round(v * 255); });
        palette[c * 4 + 3] = 255;
      }
      this.texture = gl.createTexture();
      gl.bindTexture(gl.TEXTURE_2D, this.texture);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA, 256, 1, 0, gl.RGBA, gl.UNSIGNED_BYTE, palette);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    }
    setPoints(xy) {
      const gl = this.gl;
      gl.bindVertexArray(this.vao);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.pos);
      gl.bufferData(gl.ARRAY_BUFFER, xy, gl.STATIC_DRAW);
      gl.enableVertexAttribArray(this.loc.a_pos);
      gl.vertexAttribPointer(this.loc.a_pos, 2, gl.FLOAT, false, 0, 0);
      this.count = xy.length / 2;
    }
    setCodes(codes) {
      const gl = this.gl;
      gl.bindVertexArray(this.vao);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.code);
      gl.bufferData(gl.ARRAY_BUFFER, codes, gl.STATIC_DRAW);
      gl.enableVertexAttribArray(this.loc.a_code);
      const type = codes instanceof Uint16Array ? gl.UNSIGNED_SHORT : gl.UNSIGNED_BYTE;
      gl.vertexAttribPointer(this.loc.a_code, 1, type, false, 0, 0);
    }
    setFlags(flags) {
      const gl = this.gl;
      gl.bindVertexArray(this.vao);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.flag);
      gl.bufferData(gl.ARRAY_BUFFER, flags, gl.DYNAMIC_DRAW);
      gl.enableVertexAttribArray(this.loc.a_flag);
      gl.vertexAttribPointer(this.loc.a_flag, 1, gl.UNSIGNED_BYTE, false, 0, 0);
    }
    draw(view, width, height, ratio, size, dim) {
      const gl = this.gl;
      gl.viewport(0, 0, gl.drawingBufferWidth, gl.drawingBufferHeight);
      gl.clearColor(1, 1, 1, 1);
      gl.clear(gl.COLOR_BUFFER_BIT);
      gl.useProgram(this.program);
      gl.bindVertexArray(this.vao);
      gl.activeTexture(gl.TEXTURE0);
      gl.bindTexture(gl.TEXTURE_2D, this.texture);
      gl.uniform1i(this.loc.u_palette, 0);
      const sx = (2 * view.k) / width, sy = (2 * view.k) / height;
      gl.uniform2f(this.loc.u_scale, sx, sy);
      gl.uniform2f(this.loc.u_offset, -view.cx * sx, -view.cy * sy);
      gl.uniform1f(this.loc.u_size, size * ratio);
      gl.uniform1f(this.loc.u_dim, dim ? 1 : 0);
      for (const pass of [0, 1]) {
        gl.uniform1i(this.loc.u_pass, pass);
        gl.drawArrays(gl.POINTS, 0, this.count);
      }
    }
  }

  // Points rasterised by hand into one ImageData: on a machine without a GPU this beats
  // software WebGL (SwiftShader) several times over, and it needs nothing but a 2-D canvas.
  class CanvasRenderer {
    constructor(canvas) {
      this.ctx = canvas.getContext("2d");
      this.name = "2-D canvas";
      const little = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
      const pack = (r, g, b) => (little ? (255 << 24) | (b << 16) | (g << 8) | r : (r << 24) | (g << 16) | (b << 8) | 255) >>> 0;
      this.colours = new Uint32Array(256);
      this.dimmed = new Uint32Array(256);
      for (let c = 0; c < 256; c++) {
        const rgb = rgbOf(c).map((v) => Math.round(v * 255));
        this.colours[c] = pack(...rgb);
        this.dimmed[c] = pack(...rgb.map((v) => Math.round(v + (219 - v) * 0.72)));
      }
      this.white = pack(255, 255, 255);
    }
    setPoints(xy) { this.xy = xy; this.count = xy.length / 2; }
    setCodes(codes) { this.codes = codes; }
    setFlags(flags) { this.flags = flags; }
    stamp(size) {
      if (this.stampSize === size) return this.offsets;
      const offsets = [], r = size / 2;
      for (let dy = 0; dy < size; dy++) {
        for (let dx = 0; dx < size; dx++) {
          const cx = dx + 0.5 - r, cy = dy + 0.5 - r;
          if (size <= 3 || cx * cx + cy * cy <= r * r) offsets.push([dx - Math.floor(r), dy - Math.floor(r)]);
        }
      }
      this.stampSize = size;
      this.offsets = offsets;
      return offsets;
    }
    draw(view, width, height, ratio, size, dim) {
      const ctx = this.ctx, w = ctx.canvas.width, h = ctx.canvas.height;
      if (!this.image || this.image.width !== w || this.image.height !== h) {
        this.image = ctx.createImageData(w, h);
        this.pixels = new Uint32Array(this.image.data.buffer);
      }
      const pixels = this.pixels, xy = this.xy, flags = this.flags, codes = this.codes;
      const palette = dim ? this.dimmed : this.colours;
      pixels.fill(this.white);
      const k = view.k * ratio, ox = w / 2 - view.cx * k, oy = h / 2 + view.cy * k;
      const s = Math.max(1, Math.round(size * ratio)), offsets = this.stamp(s);
      const lit = [];
      for (let i = 0; i < this.count; i++) {
        const flag = flags[i];
        if (flag & FLAG_HIDDEN) continue;
        if (flag & (FLAG_HIGHLIGHT | FLAG_FOCUS)) { lit.push(i); continue; }
        const px = (ox + xy[2 * i] * k) | 0, py = (oy - xy[2 * i + 1] * k) | 0;
        if (px < -s || py < -s || px >= w + s || py >= h + s) continue;
        const colour = palette[codes[i] & 255];
        for (let j = 0; j < offsets.length; j++) {
          const x = px + offsets[j][0], y = py + offsets[j][1];
          if (x >= 0 && y >= 0 && x < w && y < h) pixels[y * w + x] = colour;
        }
      }
      ctx.putImageData(this.image, 0, 0);
      for (const i of lit) {
        const r = (Math.max(size * 2, 7) + (flags[i] & FLAG_FOCUS ? 5 : 0)) * ratio / 2;
        ctx.beginPath();
        ctx.arc(ox + xy[2 * i] * k, oy - xy[2 * i + 1] * k, r, 0, 2 * Math.PI);
        ctx.fillStyle = cssOf(codes[i]);
        ctx.fill();
        ctx.lineWidth = 1.5 * ratio;
        ctx.strokeStyle = "#111";
        ctx.stroke();
      }
    }
  }

  // ---------------------------------------------------------------- spatial grid (hover)
  class Grid {
    constructor(xy, bounds) {
      const n = xy.length / 2;
      this.side = Math.max(8, Math.min(512, Math.ceil(Math.sqrt(n / 3))));
      this.x0 = bounds[0]; this.y0 = bounds[1];
      this.w = Math.max(bounds[2] - bounds[0], 1e-9); this.h = Math.max(bounds[3] - bounds[1], 1e-9);
      const cells = this.side * this.side;
      const cellOf = new Int32Array(n);
      const start = new Int32Array(cells + 1);
      for (let i = 0; i < n; i++) {
        const c = this.cell(xy[2 * i], xy[2 * i + 1]);
        cellOf[i] = c;
        start[c + 1]++;
      }
      for (let c = 0; c < cells; c++) start[c + 1] += start[c];
      const fill = start.slice(0, cells);
      const items = new Int32Array(n);
      for (let i = 0; i < n; i++) items[fill[cellOf[i]]++] = i;
      this.start = start; this.items = items; this.xy = xy;
    }
    col(x) { return Math.min(this.side - 1, Math.max(0, Math.floor(((x - this.x0) / this.w) * this.side))); }
    row(y) { return Math.min(this.side - 1, Math.max(0, Math.floor(((y - this.y0) / this.h) * this.side))); }
    cell(x, y) { return this.row(y) * this.side + this.col(x); }
    nearest(x, y, radius, skip) {
      let best = -1, bestD = radius * radius;
      const c0 = this.col(x - radius), c1 = this.col(x + radius), r0 = this.row(y - radius), r1 = this.row(y + radius);
      for (let r = r0; r <= r1; r++) {
        for (let c = c0; c <= c1; c++) {
          const cell = r * this.side + c;
          for (let j = this.start[cell]; j < this.start[cell + 1]; j++) {
            const i = this.items[j];
            if (skip(i)) continue;
            const dx = this.xy[2 * i] - x, dy = this.xy[2 * i + 1] - y, d = dx * dx + dy * dy;
            if (d <= bestD) { bestD = d; best = i; }
          }
        }
      }
      return best;
    }
  }

  // ---------------------------------------------------------------- the app
  const embedded = document.getElementById("embedlab-data");
  const params = new URLSearchParams(location.hash.slice(1));
  if (params.has("token")) { // a link with the token: keep it for this tab, not in the URL
    sessionStorage.setItem("embedlab-token", params.get("token"));
    params.delete("token");
    history.replaceState(null, "", `${location.pathname}${location.search}#${params}`);
  }
  const source = embedded
    ? new EmbeddedSource(JSON.parse(embedded.textContent))
    : new ApiSource(sessionStorage.getItem("embedlab-token"));
  // WebGL2 where a GPU draws it; the 2-D canvas where WebGL would be software-rendered
  // (SwiftShader, llvmpipe) or is missing. ?renderer=webgl|canvas chooses by hand.
  function softwareWebGL() {
    try {
      const gl = document.createElement("canvas").getContext("webgl2");
      if (!gl) return "no WebGL2";
      const info = gl.getExtension("WEBGL_debug_renderer_info");
      const name = info ? String(gl.getParameter(info.UNMASKED_RENDERER_WEBGL)) : "";
      gl.getExtension("WEBGL_lose_context")?.loseContext();
      return /swiftshader|llvmpipe|software|softpipe/i.test(name) ? "WebGL2 here is software-rendered" : null;
    } catch (_) {
      return "no WebGL2";
    }
  }
  const asked = new URLSearchParams(location.search).get("renderer");
  const canvas = $("#map");
  let renderer, rendererReason = "";
  try {
    if (asked === "canvas") throw new Error("asked for the 2-D canvas");
    if (asked !== "webgl") {
      const why = softwareWebGL();
      if (why) throw new Error(why);
    }
    renderer = new WebGLRenderer(canvas);
  } catch (error) {
    rendererReason = error.message;
    renderer = new CanvasRenderer(canvas);
  }

  const state = {
    analysis: null, head: null, n: 0, xy: null, codes: { label: null, cluster: null },
    colourBy: params.get("c") === "cluster" ? "cluster" : "label",
    wantedColour: params.get("c"), fields: new Map(), // metadata fields: name -> { values, codes }
    hidden: { label: new Set(), cluster: new Set() },
    flags: null, highlight: null, highlightWhat: "", focus: -1, walk: [], neighbours: null,
    selection: [], ids: null, idIndex: null, grid: null,
    view: { cx: 0, cy: 0, k: 1 }, drawn: 0, frames: 0, firstPaintMs: null,
    search: { text: params.get("q") || "", mode: params.get("m") === "text" ? "text" : "meaning" },
    notice: "", loadToken: 0, density: "off", densityMs: null, densityBands: 0,
    fresh: null, successorAt: null, successors: 0, // points new since the map was opened (updates)
  };
  let readyResolve;
  const ready = new Promise((resolve) => { readyResolve = resolve; });

  function setStatus() {
    if (!state.head) return;
    const shown = state.drawn === state.n ? `${count(state.n)} points` : `${count(state.drawn)} of ${count(state.n)} points shown`;
    const bits = [shown, renderer.name + (rendererReason ? ` (${rendererReason})` : "")];
    if (state.firstPaintMs !== null) bits.push(`shown in ${Math.round(state.firstPaintMs)} ms`);
    if (state.highlight) bits.push(`${count(state.highlight.length)} highlighted (${state.highlightWhat})`);
    if (state.fresh && state.fresh.size) bits.push(`${count(state.fresh.size)} new since opened`);
    $("#status").textContent = bits.join(" · ");
  }
  function notice(text) { // a note that goes away by itself
    const box = $("#message");
    box.hidden = false;
    box.textContent = text;
    setTimeout(() => { if (box.textContent === text) box.hidden = true; }, 8000);
  }
  function showMessage(text) {
    const box = $("#message");
    box.hidden = !text;
    box.textContent = text || "";
  }

  // The URL is the view: opening a document or an analysis adds a history entry (Back
  // returns to the one before); everything else replaces the current entry.
  function writeHash(push = false) {
    const out = new URLSearchParams();
    if (state.analysis) out.set("a", state.analysis);
    out.set("c", state.colourBy);
    if (state.focus >= 0 && state.ids) out.set("p", state.ids[state.focus]);
    if (state.search.text) { out.set("q", state.search.text); out.set("m", state.search.mode); }
    const url = `${location.pathname}${location.search}#${out}`;
    if (url === `${location.pathname}${location.search}${location.hash}`) return;
    if (push) history.pushState(null, "", url);
    else history.replaceState(null, "", url);
  }

  // -- sizes and view
  function size() {
    const rect = canvas.getBoundingClientRect();
    return { width: Math.max(1, rect.width), height: Math.max(1, rect.height), ratio: window.devicePixelRatio || 1 };
  }
  function fitView() {
    if (!state.head) return;
    const [x0, y0, x1, y1] = state.head.bounds;
    const { width, height } = size();
    state.view = { cx: (x0 + x1) / 2, cy: (y0 + y1) / 2,
      k: 0.88 * Math.min(width / Math.max(x1 - x0, 1e-9), height / Math.max(y1 - y0, 1e-9)) };
    state.fitted = true;
  }
  function toScreen(x, y) {
    const { width, height } = size();
    return [(x - state.view.cx) * state.view.k + width / 2, height / 2 - (y - state.view.cy) * state.view.k];
  }
  function toData(sx, sy) {
    const { width, height } = size();
    return [(sx - width / 2) / state.view.k + state.view.cx, state.view.cy - (sy - height / 2) / state.view.k];
  }
  function pointSize() {
    const base = state.n > 50000 ? 2 : state.n > 10000 ? 3 : state.n > 2000 ? 4 : 6;
    return Math.min(base * 3, base * Math.max(1, Math.sqrt(state.view.k / (state.baseK || state.view.k))));
  }

  let frameAsked = false;
  function requestDraw() {
    if (frameAsked) return;
    frameAsked = true;
    requestAnimationFrame(drawNow);
  }
  function drawNow() {
    frameAsked = false;
    if (!state.xy) return;
    const { width, height, ratio } = size();
    const w = Math.round(width * ratio), h = Math.round(height * ratio);
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    renderer.draw(state.view, width, height, ratio, pointSize(), !!state.highlight);
    drawDensity(width, height);
    state.drawn = countDrawn();
    state.frames++;
    placeNames();
    showFocus();
  }

  // -- density: the shown points binned on a 4-px grid, smoothed (three box blurs, about a
  // Gaussian), in seven log-scaled bands of one blue, drawn over (multiplied with) the
  // points or instead of them; O(points + pixels / 16) a frame, so 100,000 points pan freely.
  const DENSITY_CELL = 4, DENSITY_BANDS = 7;
  const DENSITY_RAMP = [[222, 235, 247], [198, 219, 239], [158, 202, 225], [107, 174, 214],
    [66, 146, 198], [33, 113, 181], [8, 69, 148]];
  function boxBlur(grid, w, h, r) {
    const line = new Float32Array(Math.max(w, h));
    for (let pass = 0; pass < 2; pass++) { // rows, then columns
      const [len, lines, step, stride] = pass === 0 ? [w, h, 1, w] : [h, w, w, 1];
      for (let l = 0; l < lines; l++) {
        const base = l * stride;
        let sum = 0;
        for (let j = 0; j < Math.min(r, len); j++) sum += grid[base + j * step];
        for (let j = 0; j < len; j++) {
          if (j + r < len) sum += grid[base + (j + r) * step];
          if (j - r - 1 >= 0) sum -= line[j - r - 1];
          line[j] = grid[base + j * step];
          grid[base + j * step] = sum / (2 * r + 1);
        }
      }
    }
  }
  function drawDensity(width, height) {
    const layer = $("#density"), mode = state.density;
    layer.hidden = mode === "off";
    canvas.classList.toggle("density-only", mode === "only");
    if (mode === "off") return;
    const started = performance.now();
    const cell = DENSITY_CELL, w = Math.ceil(width / cell), h = Math.ceil(height / cell);
    const grid = new Float32Array(w * h);
    const k = state.view.k, ox = width / 2 - state.view.cx * k, oy = height / 2 + state.view.cy * k;
    const xy = state.xy, flags = state.flags;
    for (let i = 0; i < state.n; i++) {
      if (flags[i] & FLAG_HIDDEN) continue;
      const gx = Math.floor((ox + xy[2 * i] * k) / cell), gy = Math.floor((oy - xy[2 * i + 1] * k) / cell);
      if (gx >= 0 && gy >= 0 && gx < w && gy < h) grid[gy * w + gx]++;
    }
    for (let pass = 0; pass < 3; pass++) boxBlur(grid, w, h, 2);
    let top = 0;
    for (let c = 0; c < grid.length; c++) if (grid[c] > top) top = grid[c];
    if (layer.width !== w || layer.height !== h) { layer.width = w; layer.height = h; }
    const ctx = layer.getContext("2d");
    const image = ctx.createImageData(w, h), px = image.data;
    const scale = Math.log1p(top) || 1, floor = 0.02; // less than 1/50 of a point per cell: empty
    const alpha = mode === "only" ? 255 : 150;
    const bands = new Uint8Array(w * h);
    for (let c = 0; c < grid.length; c++) {
      if (grid[c] < floor) continue;
      const band = Math.min(DENSITY_BANDS, 1 + Math.floor((Math.log1p(grid[c]) / scale) * DENSITY_BANDS));
      bands[c] = band;
      const [r, g, b] = DENSITY_RAMP[band - 1];
      px[4 * c] = r; px[4 * c + 1] = g; px[4 * c + 2] = b; px[4 * c + 3] = alpha;
    }
    ctx.putImageData(image, 0, 0);
    state.densityBands = new Set(bands).size - (bands.includes(0) ? 1 : 0);
    state.densityMs = performance.now() - started;
  }
  function setDensity(mode) {
    state.density = ["off", "both", "only"].includes(mode) ? mode : "off";
    $("#density-mode").value = state.density;
    requestDraw();
  }

  function countDrawn() {
    let drawn = 0;
    for (let i = 0; i < state.n; i++) if (!(state.flags[i] & FLAG_HIDDEN)) drawn++;
    return drawn;
  }

  // -- flags: hidden (legend), highlighted, focused
  function rebuildFlags() {
    const codes = state.codes[state.colourBy];
    const hidden = state.hidden[state.colourBy];
    const flags = state.flags;
    flags.fill(0);
    if (hidden.size) for (let i = 0; i < state.n; i++) if (hidden.has(codes[i])) flags[i] = FLAG_HIDDEN;
    if (state.highlight) for (const i of state.highlight) flags[i] |= FLAG_HIGHLIGHT;
    if (state.fresh) for (const i of state.fresh) if (!(flags[i] & FLAG_HIDDEN)) flags[i] |= FLAG_HIGHLIGHT;
    if (state.focus >= 0) flags[state.focus] |= FLAG_FOCUS;
    renderer.setFlags(flags);
    state.drawn = countDrawn();
    requestDraw();
    setStatus();
  }
  function setHighlight(indices, what) {
    state.highlight = indices && indices.length ? Int32Array.from(indices) : null;
    state.highlightWhat = state.highlight ? what : "";
    rebuildFlags();
  }

  // -- categories and legend
  const fieldOf = (mode) => (mode.startsWith("field:") ? state.fields.get(mode.slice(6)) : null);
  function categories() {
    const field = fieldOf(state.colourBy);
    if (field) return field.values.map((v) => ({ code: v.code, name: v.name, size: v.size }));
    if (state.colourBy === "label") return state.head.labels.map((l) => ({ code: l.code, name: l.name, size: l.size }));
    return state.head.clusters.map((c) => ({ code: c.code, name: c.cluster < 0 ? "noise" : `${c.cluster}: ${c.name}`,
      size: c.size, match: matchText(c) }));
  }
  // a long name wraps after its dots, dashes and slashes (comp.sys.|ibm.|pc.|hardware)
  function breakable(text) {
    return String(text).split(/(?<=[./_-])/).flatMap((part, i) => (i ? [el("wbr"), part] : [part]));
  }
  function renderLegend() {
    const list = $("#legend");
    list.replaceChildren();
    $("#legend-title").textContent = state.colourBy === "label" ? "Labels"
      : state.colourBy === "cluster" ? "Clusters" : state.colourBy.slice(6);
    const hidden = state.hidden[state.colourBy];
    for (const cat of categories()) {
      const button = el("button", { type: "button", "aria-pressed": String(!hidden.has(cat.code)),
        "data-code": cat.code, title: `Show or hide ${cat.name}`,
        onclick: () => {
          if (hidden.has(cat.code)) hidden.delete(cat.code); else hidden.add(cat.code);
          button.setAttribute("aria-pressed", String(!hidden.has(cat.code)));
          rebuildFlags();
        } },
      el("span", { class: "swatch" }),
      el("span", { class: "name", title: cat.match ? `${cat.name} (${cat.match})` : cat.name }, breakable(cat.name),
        cat.match ? el("span", { class: "match" }, breakable(cat.match)) : null),
      el("span", { class: "count" }, count(cat.size)));
      button.firstChild.style.background = cssOf(state.colourOf(cat.code));
      list.append(el("li", {}, button));
    }
  }
  // A cluster wears the colour of its matched class when the service says enough of its
  // documents carry it (head.clusters[].match, analyze/evaluate.cluster_matches); any
  // other cluster gets a colour of its own, none of the classes'; noise is grey.
  function clusterColours() {
    const { head } = state;
    const labelCode = new Map(head.labels.map((l) => [l.name, l.code]));
    const colours = head.clusters.map((c) => {
      if (c.cluster < 0) return NOISE_COLOUR;
      const m = head.has_labels && c.match;
      return m && m.wears_colour && labelCode.has(m.label) ? labelCode.get(m.label) % NOISE_COLOUR : -1;
    });
    const taken = new Set(head.has_labels ? head.labels.map((l) => l.code % NOISE_COLOUR) : []);
    let next = 0;
    colours.forEach((colour, j) => {
      if (colour >= 0) return;
      while (taken.has(next) && next < NOISE_COLOUR - 1) next++;
      colours[j] = next % NOISE_COLOUR;
      taken.add(next);
    });
    return colours;
  }
  function matchText(c) { // "matched to sci.med, 92%"; under half: the cluster's own colour
    const m = state.head.has_labels && c.match;
    if (!m) return c.cluster < 0 ? "" : state.head.has_labels ? "matched to no class" : "";
    return `matched to ${m.label}, ${Math.round(100 * m.share)}%${m.wears_colour ? "" : " (own colour)"}`;
  }
  // Colour slots 0..254 cycle through the palette; 255 is noise only.
  function colourCodes(mode) {
    if (fieldOf(mode)) { // a field's values take the palette in order (at most 64 of them)
      return { codes: state.codes[mode], colour: (code) => code % NOISE_COLOUR };
    }
    if (mode === "label") {
      if (state.head.labels.length <= NOISE_COLOUR) return { codes: state.codes.label, colour: (code) => code };
      const codes = new Uint8Array(state.n);
      for (let i = 0; i < state.n; i++) codes[i] = state.codes.label[i] % NOISE_COLOUR;
      return { codes, colour: (code) => code % NOISE_COLOUR };
    }
    const colours = clusterColours();
    const codes = new Uint8Array(state.n);
    for (let i = 0; i < state.n; i++) codes[i] = colours[state.codes.cluster[i]];
    return { codes, colour: (code) => colours[code] };
  }
  function setColourBy(mode) {
    if (mode === "label" && !state.head.has_labels) mode = "cluster";
    if (mode !== "label" && mode !== "cluster" && !fieldOf(mode)) mode = state.head.has_labels ? "label" : "cluster";
    if (!state.hidden[mode]) state.hidden[mode] = new Set();
    state.colourBy = mode;
    $("#colour-by").value = mode;
    const { codes, colour } = colourCodes(mode);
    state.colourOf = colour;
    renderer.setCodes(codes);
    renderLegend();
    rebuildFlags();
    writeHash();
  }

  // -- cluster names on the map
  // Names at their cluster's median point; a name that would overlap a bigger cluster's
  // name stays hidden until zooming in separates them.
  function placeNames() {
    const layer = $("#names");
    if (!state.head) return;
    if (layer.dataset.analysis !== state.analysis) {
      layer.replaceChildren(...state.head.clusters.map((c) => el("span", {}, c.cluster < 0 ? "noise" : c.name)));
      layer.dataset.analysis = state.analysis;
      for (const span of layer.children) { span.dataset.w = span.offsetWidth; span.dataset.h = span.offsetHeight; }
    }
    const { width, height } = size();
    const placed = [];
    const order = state.head.clusters.map((c, i) => i).sort((a, b) => state.head.clusters[b].size - state.head.clusters[a].size);
    for (const i of order) {
      const c = state.head.clusters[i], span = layer.children[i];
      const hidden = state.colourBy === "cluster" && state.hidden.cluster.has(c.code);
      if (!c.at || c.cluster < 0 || hidden) { span.hidden = true; continue; }
      let [sx, sy] = toScreen(c.at[0], c.at[1]);
      const at = sx;
      const w = Number(span.dataset.w) / 2 + 2, h = Number(span.dataset.h) / 2 + 1;
      sx = Math.min(Math.max(sx, w), width - w); // a name near the edge stays whole
      const clash = placed.some(([x, y, pw, ph]) => Math.abs(x - sx) < w + pw && Math.abs(y - sy) < h + ph);
      span.hidden = clash || at < 0 || sy < 0 || at > width || sy > height;
      if (!span.hidden) placed.push([sx, sy, w, h]);
      span.style.left = `${sx}px`;
      span.style.top = `${sy}px`;
    }
  }

  // -- loading an analysis
  async function loadAnalysis(id, keepView = false) {
    const token = ++state.loadToken;
    showMessage("");
    const started = performance.now();
    const [head, buffer] = await Promise.all([source.head(id), source.points(id)]);
    if (token !== state.loadToken) return;
    const n = head.documents;
    const codeType = head.encoding.code === "uint16" ? Uint16Array : Uint8Array;
    const xs = new Float32Array(buffer, 0, n), ys = new Float32Array(buffer, 4 * n, n);
    const width = codeType.BYTES_PER_ELEMENT;
    const labelCodes = new codeType(buffer.slice(8 * n, 8 * n + width * n));
    const clusterCodes = new codeType(buffer.slice(8 * n + width * n, 8 * n + 2 * width * n));
    const xy = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) { xy[2 * i] = xs[i]; xy[2 * i + 1] = ys[i]; }
    Object.assign(state, { analysis: id, head, n, xy, codes: { label: labelCodes, cluster: clusterCodes },
      flags: new Uint8Array(n), highlight: null, focus: -1, walk: [], neighbours: null, selection: [], ids: null, idIndex: null,
      hidden: { label: new Set(), cluster: new Set() } });
    renderer.setPoints(xy);
    if (!keepView) { fitView(); state.baseK = state.view.k; state.fresh = null; } else state.fitted = false;
    if (fieldOf(state.colourBy)) { state.wantedColour = state.colourBy; state.colourBy = head.has_labels ? "label" : "cluster"; }
    state.fields = new Map();
    if (!head.has_labels) state.colourBy = "cluster";
    setColourBy(state.colourBy);
    await new Promise((resolve) => requestAnimationFrame(() => { drawNow(); resolve(); }));
    state.firstPaintMs = performance.now() - started;
    state.shownAt = performance.now(); // since navigation: what the benchmark reads
    setStatus();
    $("#analysis-pick").value = id;
    formOnScreenSpace();
    if (!n) showMessage("This analysis has no documents.");
    if (head.search && !head.search.meaning && !params.get("m")) $("#search-mode").value = "text";
    // after the first paint: ids (for hover, links and export), the grid, the panels
    state.grid = new Grid(xy, head.bounds);
    renderEvaluation();
    renderClusters();
    renderSelection();
    const ids = await source.ids(id);
    if (token !== state.loadToken) return;
    state.ids = ids;
    state.idIndex = new Map(ids.map((docId, i) => [docId, i]));
    renderClusters(); // their documents can now be found on the map
    await loadFields(id, token).catch((error) => notice(`Metadata fields unavailable: ${error.message}`));
    writeHash();
    readyResolve();
  }

  // Colour by any metadata field the documents carry: the choices follow the analysis.
  async function loadFields(id, token) {
    const fields = await source.fields(id);
    if (token !== state.loadToken) return;
    state.fields = new Map();
    const pick = $("#colour-by");
    for (const option of [...pick.options]) if (option.value.startsWith("field:")) option.remove();
    for (const field of fields) {
      const bytes = decodeBase64(field.codes);
      state.codes[`field:${field.name}`] = field.encoding === "uint16" ? new Uint16Array(bytes) : new Uint8Array(bytes);
      state.fields.set(field.name, field);
      pick.append(el("option", { value: `field:${field.name}` }, field.name));
    }
    pick.value = state.colourBy;
    const wanted = state.wantedColour;
    state.wantedColour = null;
    if (wanted && wanted.startsWith("field:") && fieldOf(wanted)) setColourBy(wanted);
  }

  async function loadAnalysisList(preferred) {
    const pick = $("#analysis-pick");
    let [analyses, spaces] = await Promise.all([source.analyses(), source.live ? source.spaces() : []]);
    const spacePick = $("#space-pick");
    if (source.live) {
      const current = spacePick.value;
      spacePick.replaceChildren(el("option", { value: "" }, "all spaces"),
        ...spaces.map((s) => el("option", { value: s.description || s.name }, `${s.name} (${count(s.documents)} docs)`)));
      spacePick.value = current;
      if (spacePick.value) analyses = analyses.filter((a) => a.space === spacePick.value);
      fillSpaces(spaces);
      $("#compare-link").hidden = spaces.length < 2; // comparing needs two spaces
    }
    pick.replaceChildren(...analyses.map((a) => el("option", { value: a.id, title: (a.notes || []).join("\n") || undefined },
      `${String(a.created || "").slice(0, 16).replace("T", " ")} · ${a.space} · ${count(a.documents)} docs · ` +
      `${a.algorithm} k=${a.k}` + (a.hungarian_accuracy !== null && a.hungarian_accuracy !== undefined
        ? ` · accuracy ${fmt(a.hungarian_accuracy)}` : "") +
      ((a.notes || []).length ? ` · ${a.notes.length} note${a.notes.length > 1 ? "s" : ""}` : ""))));
    if (!analyses.length) {
      showMessage(source.live
        ? "No analysis in this store yet. Start one with “New analysis…”, or run `embedlab analyze`."
        : "This file holds no analysis.");
      return null;
    }
    const wanted = preferred && analyses.some((a) => a.id === preferred) ? preferred : analyses[0].id;
    pick.value = wanted;
    return wanted;
  }

  // -- hover
  const tooltip = $("#tooltip");
  let hoverIndex = -1, hoverToken = 0;
  function hiddenAt(i) { return (state.flags[i] & FLAG_HIDDEN) !== 0; }
  function labelName(i) { return state.head.labels[state.codes.label[i]].name; }
  function clusterOf(i) { return state.head.clusters[state.codes.cluster[i]]; }
  function clusterText(i) {
    const c = clusterOf(i);
    return c.cluster < 0 ? "noise" : `${c.cluster} (${c.name})`;
  }
  function pointAt(sx, sy) {
    if (!state.grid) return -1;
    const [x, y] = toData(sx, sy);
    return state.grid.nearest(x, y, Math.max(6, pointSize()) / state.view.k, hiddenAt);
  }
  async function hover(sx, sy) {
    const started = performance.now();
    const i = pointAt(sx, sy);
    if (i === hoverIndex) { if (i >= 0) placeTooltip(sx, sy); return; }
    hoverIndex = i;
    if (i < 0) { tooltip.hidden = true; return; }
    if (state.fresh && state.fresh.delete(i)) { rebuildFlags(); requestDraw(); renderFresh(); }
    const docId = state.ids ? state.ids[i] : `point ${i}`;
    const text = el("div", { class: "text" }, "…");
    tooltip.replaceChildren(el("strong", {}, docId),
      el("div", { class: "meta" }, `label ${labelName(i)} · cluster ${clusterText(i)}`), text);
    tooltip.hidden = false;
    tooltip.dataset.index = String(i);
    delete tooltip.dataset.loaded;
    placeTooltip(sx, sy);
    state.hoverShownMs = performance.now() - started;
    if (!state.ids) return;
    const token = ++hoverToken;
    try {
      const doc = await source.document(state.ids[i], state.head.space.name);
      if (token === hoverToken) {
        text.textContent = firstLines(doc.text);
        tooltip.dataset.loaded = String(i);
        state.hoverTextMs = performance.now() - started;
      }
    } catch (error) {
      if (token === hoverToken) text.textContent = `(text unavailable: ${error.message})`;
    }
  }
  function placeTooltip(sx, sy) {
    const { width, height } = size();
    const box = tooltip.getBoundingClientRect();
    tooltip.style.left = `${Math.min(sx + 14, width - box.width - 4)}px`;
    tooltip.style.top = `${sy + 14 + box.height > height ? Math.max(0, sy - box.height - 10) : sy + 14}px`;
  }

  // -- the document panel: whole text and its neighbours in the original space
  function showTab(name) {
    fold("right", true); // what was asked for is shown
    for (const tab of document.querySelectorAll("[role=tab]")) {
      const on = tab.id === `tab-${name}`;
      tab.setAttribute("aria-selected", String(on));
      $(`#${tab.getAttribute("aria-controls")}`).hidden = !on;
    }
  }
  function hitList(rows, onPick) {
    return el("ol", { class: "hits" }, rows.map((row) => {
      const i = state.idIndex ? state.idIndex.get(row.id) : undefined;
      const where = i === undefined ? " · not on this map" : ` · cluster ${clusterText(i)}`;
      return el("li", {}, el("button", { type: "button", "data-id": row.id, onclick: () => onPick(row, i) },
        el("span", {}, `${row.rank ? row.rank + ". " : ""}${row.id}`),
        el("span", { class: "snip" }, `${row.similarity !== undefined ? "similarity " + fmt(row.similarity) + " · " : ""}` +
          `${row.label ? "label " + row.label : ""}${where}`),
        el("span", { class: "snip" }, oneLine(row.text))));
    }));
  }
  async function focusDocument(docId, index, push = true, stepping = false) {
    const panel = $("#panel-document");
    showTab("document");
    state.focus = index === undefined ? -1 : index;
    if (!stepping) state.walk = state.focus >= 0 ? [state.focus] : [];
    showFocus();
    writeHash(push);
    const meta = index === undefined ? "not on this map"
      : `label ${labelName(index)} · cluster ${clusterText(index)}`;
    const text = el("div", { class: "doc-text" }, "…");
    const near = el("div", {}, el("p", { class: "hint" }, "Finding its nearest neighbours…"));
    panel.replaceChildren(el("h3", { class: "doc-id" }, ...breakable(docId)), el("div", { class: "doc-meta" }, meta), text,
      el("h4", {}, "10 nearest neighbours (original space)"), near);
    panel.dataset.id = docId;
    rebuildFlags();
    try {
      const doc = await source.document(docId, state.head.space.name);
      if (panel.dataset.id === docId) text.textContent = doc.text + (doc.cut ? "\n…(cut short in this file)" : "");
    } catch (error) {
      text.textContent = `(text unavailable: ${error.message})`;
    }
    try {
      const rows = await source.neighbours(docId, state.head.space.name, state.analysis);
      if (panel.dataset.id !== docId) return;
      near.replaceChildren(hitList(rows, (row, i) => focusDocument(row.id, i)));
      near.dataset.ids = rows.map((r) => r.id).join("\n");
      state.neighbours = { id: docId, rows };
      const onMap = rows.map((r) => state.idIndex && state.idIndex.get(r.id)).filter((i) => i !== undefined);
      setHighlight(onMap, `neighbours of ${docId}`);
    } catch (error) {
      near.replaceChildren(el("p", { class: "note" }, `Neighbours unavailable: ${error.message}`));
    }
  }

  // -- keyboard stepping: n / Shift+N walk to the nearest neighbour (original space) not
  // yet visited and back; ] / [ the next / previous point of the same cluster. The focused
  // point wears a ring that follows it, and the map pans to keep it in view.
  function startPoint() { // nothing focused yet: the shown point nearest the view's centre
    const { width, height } = size();
    const [x, y] = toData(width / 2, height / 2);
    let best = -1, bestD = Infinity;
    for (let i = 0; i < state.n; i++) {
      if (hiddenAt(i)) continue;
      const d = (state.xy[2 * i] - x) ** 2 + (state.xy[2 * i + 1] - y) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    return best;
  }
  function stepTo(i) {
    if (i < 0 || !state.ids) return;
    const [sx, sy] = toScreen(state.xy[2 * i], state.xy[2 * i + 1]);
    const { width, height } = size();
    if (sx < 20 || sy < 20 || sx > width - 20 || sy > height - 20) { // keep it in view
      state.fitted = false;
      state.view.cx = state.xy[2 * i];
      state.view.cy = state.xy[2 * i + 1];
      requestDraw();
    }
    focusDocument(state.ids[i], i, true, true);
  }
  async function stepNeighbour(back) {
    if (!state.ids) return;
    if (state.focus < 0) { state.walk = []; const i = startPoint(); if (i >= 0) state.walk.push(i); stepTo(i); return; }
    if (back) {
      if (state.walk.length > 1) { state.walk.pop(); stepTo(state.walk[state.walk.length - 1]); }
      return;
    }
    const docId = state.ids[state.focus];
    let rows = state.neighbours && state.neighbours.id === docId ? state.neighbours.rows : null;
    if (!rows) rows = await source.neighbours(docId, state.head.space.name, state.analysis);
    const seen = new Set(state.walk);
    for (const row of rows) {
      const i = state.idIndex.get(row.id);
      if (i === undefined || seen.has(i) || hiddenAt(i)) continue;
      state.walk.push(i);
      stepTo(i);
      return;
    }
    notice(`Every one of the ${rows.length} nearest neighbours of ${docId} was visited on this walk.`);
  }
  function stepCluster(direction) {
    if (!state.ids) return;
    if (state.focus < 0) { const i = startPoint(); state.walk = [i]; stepTo(i); return; }
    const code = state.codes.cluster[state.focus];
    for (let j = 1; j <= state.n; j++) {
      const i = (state.focus + direction * j + state.n * 2) % state.n;
      if (state.codes.cluster[i] === code && !hiddenAt(i)) { state.walk = [i]; stepTo(i); return; }
    }
  }
  function showFocus() { // the ring over the focused point, and what the keys do
    const ring = $("#focus-ring"), note = $("#focus-note");
    const i = state.focus;
    if (i < 0 || !state.xy) { ring.hidden = true; note.hidden = true; return; }
    const [sx, sy] = toScreen(state.xy[2 * i], state.xy[2 * i + 1]);
    const { width, height } = size();
    ring.hidden = sx < 0 || sy < 0 || sx > width || sy > height;
    ring.style.left = `${sx}px`;
    ring.style.top = `${sy}px`;
    const docId = state.ids ? state.ids[i] : `point ${i}`;
    const text = `Focus: ${docId} · cluster ${clusterText(i)} — n next neighbour, Shift+N back, ] [ next/previous in cluster, Esc clear`;
    if (note.textContent !== text) note.textContent = text;
    note.hidden = false;
  }

  // -- search
  async function runSearch(text, mode) {
    state.search = { text, mode };
    writeHash();
    const panel = $("#panel-search");
    showTab("search");
    if (!text.trim()) { setHighlight(null); panel.replaceChildren(el("p", { class: "hint" }, "Type something to search.")); return; }
    await ready;
    const exact = state.idIndex.get(text.trim());
    if (exact !== undefined) { // an id: go to that document
      panel.replaceChildren(el("p", {}, `Document ${text.trim()}.`));
      focusDocument(text.trim(), exact);
      return;
    }
    let note = null;
    const cannot = state.head.search && !state.head.search.meaning ? state.head.search.reason : null;
    if (mode === "meaning" && cannot) {
      note = el("p", { class: "note" }, `Search by meaning is not available here (${cannot}); showing documents whose id or text contains “${text}” instead.`);
    } else if (mode === "meaning") {
      panel.replaceChildren(el("p", { class: "hint" }, `Embedding “${text}” and searching… (the service's first query may load a model)`));
      try {
        const rows = await source.semantic(text, state.head.space.name, state.analysis);
        const onMap = rows.map((r) => state.idIndex.get(r.id)).filter((i) => i !== undefined);
        panel.replaceChildren(el("p", {}, `${rows.length} nearest documents to “${text}” (${onMap.length} on this map).`),
          hitList(rows, (row, i) => focusDocument(row.id, i)));
        panel.dataset.mode = "meaning";
        setHighlight(onMap, "search");
        return;
      } catch (error) {
        if (!error.fallback) {
          panel.replaceChildren(el("p", { class: "note" }, `Search failed: ${error.message}`));
          return;
        }
        note = el("p", { class: "note" }, `Search by meaning is not available here (${error.message}); showing documents whose id or text contains “${text}” instead.`);
      }
    }
    const result = await source.find(state.analysis, text);
    const found = result.indices;
    const rows = found.slice(0, 200).map((i, j) => ({ id: state.ids[i], label: labelName(i), text: result.snippets[j] || "" }));
    const words = text.trim().split(/\s+/).length > 1 ? "all the words of" : "";
    const many = found.length === 1 ? "document contains" : "documents contain";
    panel.replaceChildren(...[note, el("p", {}, `${count(found.length)}${found.length >= 1000 ? "+" : ""} ${many} ${words} “${text}”.`),
      hitList(rows, (row, i) => focusDocument(row.id, i))].filter(Boolean));
    panel.dataset.mode = "text";
    setHighlight(found, "search");
  }

  // -- box selection
  const boxEl = $("#box");
  let boxMode = false;
  function selectBox(a, b) {
    const [x0, y1] = toData(Math.min(a[0], b[0]), Math.min(a[1], b[1]));
    const [x1, y0] = toData(Math.max(a[0], b[0]), Math.max(a[1], b[1]));
    const chosen = [];
    for (let i = 0; i < state.n; i++) {
      if (state.flags[i] & FLAG_HIDDEN) continue;
      const x = state.xy[2 * i], y = state.xy[2 * i + 1];
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1) chosen.push(i);
    }
    select(chosen, "box");
  }
  function select(chosen, how) {
    state.selection = chosen;
    state.selectedBy = how;
    setHighlight(chosen, "selection");
    renderSelection();
    showTab("selection");
  }
  // -- lasso selection: the points inside a drawn outline (even-odd rule, in data space)
  const lassoEl = $("#lasso"), lassoLine = lassoEl.querySelector("polygon");
  let lassoMode = false;
  function insidePolygon(x, y, poly) {
    let inside = false;
    for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
      const [xa, ya] = poly[a], [xb, yb] = poly[b];
      if ((ya > y) !== (yb > y) && x < ((xb - xa) * (y - ya)) / (yb - ya) + xa) inside = !inside;
    }
    return inside;
  }
  function selectLasso(path) {
    const poly = path.map(([sx, sy]) => toData(sx, sy));
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const [x, y] of poly) { x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y); }
    const chosen = [];
    for (let i = 0; i < state.n; i++) {
      if (state.flags[i] & FLAG_HIDDEN) continue;
      const x = state.xy[2 * i], y = state.xy[2 * i + 1];
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1 && insidePolygon(x, y, poly)) chosen.push(i);
    }
    select(chosen, "lasso");
  }
  function setSelectMode(mode) { // "box", "lasso" or null: one at a time
    boxMode = mode === "box";
    lassoMode = mode === "lasso";
    $("#box-mode").setAttribute("aria-pressed", String(boxMode));
    $("#lasso-mode").setAttribute("aria-pressed", String(lassoMode));
    canvas.classList.toggle("boxing", boxMode);
    canvas.classList.toggle("lassoing", lassoMode);
  }
  function selectionRows() {
    return state.selection.map((i) => {
      const c = clusterOf(i);
      return { id: state.ids ? state.ids[i] : String(i), label: state.head.labels[state.codes.label[i]].name,
        cluster: c.cluster, cluster_name: c.name, x: state.xy[2 * i], y: state.xy[2 * i + 1] };
    });
  }
  function download(name, text, type) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  const csvCell = (v) => {
    if (typeof v === "number") return String(v);
    let s = String(v);
    if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`; // a spreadsheet must not run it as a formula
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  function renderSelection() {
    const panel = $("#panel-selection");
    if (!state.selection.length) {
      panel.replaceChildren(el("p", { class: "hint" }, "Drag a box (Box, or Shift+drag) or draw a lasso (Lasso, or Alt+drag) to select points."));
      return;
    }
    const rows = selectionRows();
    const mix = (key) => {
      const counts = new Map();
      for (const r of rows) counts.set(r[key], (counts.get(r[key]) || 0) + 1);
      const name = (k) => (key === "cluster" ? `${k} (${rows.find((r) => r.cluster === k).cluster_name})` : k);
      return [...counts.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${name(k)}: ${v}`).join(" · ");
    };
    const table = el("table", { id: "selection-table" },
      el("colgroup", {}, el("col", { class: "id" }), el("col", { class: "label" }), el("col", { class: "cluster" })),
      el("tr", {}, el("th", {}, "id"), el("th", {}, "label"), el("th", {}, "cluster")),
      rows.slice(0, 300).map((r) => el("tr", {}, el("td", { title: r.id }, el("button", { type: "button", onclick: () => focusDocument(r.id, state.idIndex && state.idIndex.get(r.id)) }, r.id)),
        el("td", { title: r.label }, r.label), el("td", { title: `${r.cluster}: ${r.cluster_name}` }, String(r.cluster)))));
    panel.replaceChildren(
      el("p", {}, `${count(rows.length)} documents selected.`),
      el("p", { class: "doc-meta" }, `Labels: ${mix("label")}`),
      el("p", { class: "doc-meta" }, `Clusters: ${mix("cluster")}`),
      el("div", { class: "row-tools" },
        el("button", { type: "button", id: "export-csv", onclick: () => {
          const head = "id,label,cluster,cluster_name,x,y\n";
          download("selection.csv", head + selectionRows().map((r) => [r.id, r.label, r.cluster, r.cluster_name, r.x, r.y].map(csvCell).join(",")).join("\n") + "\n", "text/csv");
        } }, "Export CSV"),
        el("button", { type: "button", id: "export-jsonl", onclick: () => {
          download("selection.jsonl", selectionRows().map((r) => JSON.stringify(r)).join("\n") + "\n", "application/x-ndjson");
        } }, "Export JSONL"),
        el("button", { type: "button", onclick: () => { state.selection = []; setHighlight(null); renderSelection(); } }, "Clear")),
      table, rows.length > 300 ? el("p", { class: "hint" }, `First 300 of ${count(rows.length)} shown; the exports hold all.`) : null);
  }

  // -- evaluation and clusters
  function renderEvaluation() {
    const panel = $("#panel-evaluation");
    const m = state.head.metrics || {};
    // with noise, lead with how much was clustered: the figures after it score only that
    const pct = (share) => { for (const d of [0, 1]) { const s = (100 * share).toFixed(d); if (Number(s) < 100) return `${s}%`; } return "over 99.9%"; };
    const lead = m.noise ? `clustered ${pct(m.coverage)} of documents (${count(m.noise)} noise documents not scored) · ` : "";
    const parts = [el("p", { id: "evaluation-headline" }, `${lead}Hungarian accuracy ${fmt(m.hungarian_accuracy)} · ARI ${fmt(m.ari)} · NMI ${fmt(m.nmi)} · silhouette ${fmt(m.silhouette)}`)];
    const notes = state.head.notes || []; // e.g. documents deleted from the store since
    if (notes.length) parts.unshift(el("ul", { class: "notes", id: "analysis-notes" }, notes.map((n) => el("li", {}, `note: ${n}`))));
    if (!m.per_class) {
      parts.push(el("p", { class: "hint" }, "These documents have no labels to evaluate against."));
      panel.replaceChildren(...parts);
      return;
    }
    parts.push(el("h4", {}, "Share of each class in its majority cluster"),
      el("table", { id: "per-class" }, el("tr", {}, el("th", {}, "class"), el("th", {}, "majority cluster"), el("th", {}, "share"),
        el("th", { title: "share of the class in the cluster the one-to-one Hungarian matching gave it" }, "matched share"),
        el("th", {}, "size"), el("th", {}, "merged")),
        Object.entries(m.per_class).map(([name, row]) => {
          const others = row.shares_cluster_with || [];
          return el("tr", { class: others.length ? "merged" : null }, el("td", {}, name), el("td", {}, String(row.majority_cluster)),
            el("td", {}, fmt(row.share)), el("td", {}, fmt(row.hungarian_share)), el("td", {}, String(row.size)),
            el("td", {}, others.length ? `⚠ shares cluster ${row.majority_cluster} with ${others.join(", ")}` : ""));
        })));
    const conf = m.confusion;
    if (conf) {
      const labelCode = new Map(state.head.labels.map((l) => [l.name, l.code]));
      const clusterCode = new Map(state.head.clusters.map((c) => [c.cluster, c.code]));
      parts.push(el("h4", {}, "Confusion matrix (click a cell to highlight its documents)"),
        el("table", { id: "confusion" }, el("tr", {}, el("th", {}, "class \\ cluster"), conf.clusters.map((c) => el("th", {}, String(c)))),
          conf.classes.map((cls, r) => el("tr", {}, el("th", {}, cls), conf.clusters.map((cl, c) => el("td", {},
            el("button", { type: "button", "data-class": cls, "data-cluster": cl,
              "aria-label": `${conf.matrix[r][c]} documents of ${cls} in cluster ${cl}`,
              onclick: () => {
                const lc = labelCode.get(cls), cc = clusterCode.get(Number(cl));
                const hits = [];
                for (let i = 0; i < state.n; i++) if (state.codes.label[i] === lc && state.codes.cluster[i] === cc) hits.push(i);
                setHighlight(hits, `${cls} in cluster ${cl}`);
              } }, String(conf.matrix[r][c]))))))));
    }
    panel.replaceChildren(...parts);
  }
  function renderClusters() {
    const panel = $("#panel-clusters");
    panel.replaceChildren(...state.head.clusters.map((c) => el("div", { class: "cluster-card" },
      el("button", { type: "button", "data-cluster": c.cluster, onclick: () => {
        const hits = [];
        for (let i = 0; i < state.n; i++) if (state.codes.cluster[i] === c.code) hits.push(i);
        setHighlight(hits, `cluster ${c.cluster}`);
      } }, el("span", { class: "swatch" }), `${c.cluster < 0 ? "noise" : c.cluster}: ${c.name} (${count(c.size)})`),
      el("div", { class: "terms" }, (c.terms || []).join(", ")),
      c.representatives.length ? hitList(c.representatives.map((r) => ({ id: r.id, label: r.label, similarity: r.similarity, text: r.snippet })),
        (row, i) => focusDocument(row.id, i)) : null)));
  }

  // -- new analysis (service only)
  // The form offers every space, and starts on the one whose map is on screen.
  function fillSpaces(spaces) {
    const form = $("#new-form");
    let select = form.elements.space;
    if (!select) {
      select = el("select", { name: "space", "aria-label": "Space of the new analysis" });
      form.prepend(el("label", {}, "Space ", select));
    }
    const chosen = select.value;
    select.replaceChildren(...spaces.map((s) => el("option", { value: s.name }, s.name)));
    if (chosen && spaces.some((s) => s.name === chosen)) select.value = chosen;
    formOnScreenSpace();
  }
  function formOnScreenSpace() {
    const select = $("#new-form").elements.space;
    if (!select || !state.head) return;
    const name = state.head.space.name;
    if ([...select.options].some((o) => o.value === name)) select.value = name;
  }
  async function startAnalysis(event) {
    event.preventDefault();
    const form = event.target;
    const status = $("#job-status");
    const body = { algorithm: form.elements.algorithm.value, reduce: form.elements.reduce.value,
      seed: Number(form.elements.seed.value || 0) };
    if (form.elements.space) body.space = form.elements.space.value;
    const labels = form.elements.labels.value.trim();
    if (labels) body.labels = labels.split(",").map((s) => s.trim()).filter(Boolean);
    for (const key of ["per_class", "limit"]) if (form.elements[key].value) body[key] = Number(form.elements[key].value);
    const k = form.elements.k.value.trim();
    if (k && k !== "auto" && !(/^\d+$/.test(k) && Number(k) >= 2)) {
      status.textContent = `k must be a whole number of clusters, 2 or more, or "auto" (blank: the default); not “${k}”.`;
      return;
    }
    // blank is what the box shows: "auto" (density algorithms find their own number)
    const density = ["hdbscan", "dbscan"].includes(body.algorithm);
    if (k) body.k = k === "auto" ? "auto" : Number(k);
    else if (!density) body.k = "auto";
    try {
      const { job } = await source.startAnalysis(body);
      status.textContent = "queued…";
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 400));
        const snapshot = await source.job(job);
        const p = snapshot.progress || {};
        status.textContent = `${snapshot.state}${p.status ? ": " + p.status : ""}${p.total ? ` (${p.done}/${p.total})` : ""}`;
        if (snapshot.state === "done") {
          status.textContent = `done: analysis ${snapshot.analysis}`;
          const id = await loadAnalysisList(snapshot.analysis);
          await loadAnalysis(id);
          return;
        }
        if (["failed", "cancelled", "interrupted"].includes(snapshot.state)) {
          status.textContent = `${snapshot.state}: ${snapshot.error || ""}`;
          return;
        }
      }
    } catch (error) {
      status.textContent = `Could not start: ${error.message}`;
    }
  }

  // -- pointer and keyboard
  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    const r = canvas.getBoundingClientRect();
    const at = [event.clientX - r.left, event.clientY - r.top];
    const lasso = !event.shiftKey && (lassoMode || event.altKey);
    drag = { start: at, last: at, box: !lasso && (boxMode || event.shiftKey), lasso, path: [at], moved: false };
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    const r = canvas.getBoundingClientRect();
    const at = [event.clientX - r.left, event.clientY - r.top];
    if (!drag) { hover(at[0], at[1]); return; }
    if (Math.abs(at[0] - drag.start[0]) + Math.abs(at[1] - drag.start[1]) > 3) drag.moved = true;
    if (drag.lasso) {
      const [px, py] = drag.path[drag.path.length - 1];
      if (Math.abs(at[0] - px) + Math.abs(at[1] - py) >= 2) drag.path.push(at);
      lassoEl.hidden = false;
      lassoLine.setAttribute("points", drag.path.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(" "));
    } else if (drag.box) {
      boxEl.hidden = false;
      Object.assign(boxEl.style, { left: `${Math.min(at[0], drag.start[0])}px`, top: `${Math.min(at[1], drag.start[1])}px`,
        width: `${Math.abs(at[0] - drag.start[0])}px`, height: `${Math.abs(at[1] - drag.start[1])}px` });
    } else {
      state.fitted = false;
      state.view.cx -= (at[0] - drag.last[0]) / state.view.k;
      state.view.cy += (at[1] - drag.last[1]) / state.view.k;
      tooltip.hidden = true;
      requestDraw();
    }
    drag.last = at;
  });
  canvas.addEventListener("pointerup", (event) => {
    if (!drag) return;
    const r = canvas.getBoundingClientRect();
    const at = [event.clientX - r.left, event.clientY - r.top];
    const done = drag;
    drag = null;
    boxEl.hidden = true;
    lassoEl.hidden = true;
    if (done.lasso && done.moved) { done.path.push(at); if (done.path.length >= 3) selectLasso(done.path); return; }
    if (done.box && done.moved) { selectBox(done.start, at); return; }
    if (!done.moved) {
      const i = pointAt(at[0], at[1]);
      if (i >= 0 && state.ids) focusDocument(state.ids[i], i);
    }
  });
  canvas.addEventListener("pointerleave", () => { tooltip.hidden = true; hoverIndex = -1; });
  function zoom(factor, sx, sy) {
    state.fitted = false;
    const [x, y] = toData(sx, sy);
    state.view.k *= factor;
    const [x2, y2] = toData(sx, sy);
    state.view.cx += x - x2;
    state.view.cy += y - y2;
    requestDraw();
  }
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const r = canvas.getBoundingClientRect();
    tooltip.hidden = true;
    zoom(Math.exp(-event.deltaY * 0.0015), event.clientX - r.left, event.clientY - r.top);
  }, { passive: false });
  canvas.addEventListener("keydown", (event) => {
    const { width, height } = size();
    const step = 60 / state.view.k;
    const keys = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
    if (keys[event.key]) {
      state.fitted = false;
      state.view.cx += keys[event.key][0];
      state.view.cy += keys[event.key][1];
      requestDraw();
    } else if (event.key === "+" || event.key === "=") zoom(1.25, width / 2, height / 2);
    else if (event.key === "-") zoom(0.8, width / 2, height / 2);
    else if (event.key === "0") { fitView(); requestDraw(); }
    else if (event.key === "b") $("#box-mode").click();
    else if (event.key === "l") $("#lasso-mode").click();
    else if (event.key === "d") setDensity({ off: "both", both: "only", only: "off" }[state.density]);
    else if (event.key === "Escape") { state.focus = -1; state.walk = []; setHighlight(null); showFocus(); writeHash(); }
    else if (event.key === "n" || event.key === "N") stepNeighbour(event.key === "N").catch((e) => notice(`Neighbours unavailable: ${e.message}`));
    else if (event.key === "]" || event.key === "[") stepCluster(event.key === "]" ? 1 : -1);
    else return;
    event.preventDefault();
  });
  window.addEventListener("resize", () => {
    if (state.fitted) fitView(); // still the whole map: keep it whole
    requestDraw();
  });

  $("#colour-by").addEventListener("change", (e) => setColourBy(e.target.value));
  $("#density-mode").addEventListener("change", (e) => setDensity(e.target.value));
  $("#legend-all").addEventListener("click", () => { state.hidden[state.colourBy].clear(); renderLegend(); rebuildFlags(); });
  $("#legend-none").addEventListener("click", () => {
    for (const c of categories()) state.hidden[state.colourBy].add(c.code);
    renderLegend(); rebuildFlags();
  });
  $("#box-mode").addEventListener("click", () => setSelectMode(boxMode ? null : "box"));
  $("#lasso-mode").addEventListener("click", () => setSelectMode(lassoMode ? null : "lasso"));
  $("#reset-view").addEventListener("click", () => { fitView(); requestDraw(); });
  function fold(side, open) { // a side panel folded away gives the map its width
    const main = document.querySelector("main");
    if (open === undefined) open = main.classList.contains(`${side}-folded`);
    main.classList.toggle(`${side}-folded`, !open);
    $(`#fold-${side}`).setAttribute("aria-expanded", String(open));
  }
  $("#fold-left").addEventListener("click", () => fold("left"));
  $("#fold-right").addEventListener("click", () => fold("right"));
  new ResizeObserver(() => { if (state.fitted) fitView(); requestDraw(); }).observe($("#stage"));
  $("#search").addEventListener("submit", (event) => {
    event.preventDefault();
    runSearch($("#search-text").value, $("#search-mode").value);
  });
  $("#analysis-pick").addEventListener("change", (e) => {
    state.focus = -1;
    history.pushState(null, "", location.href); // Back returns to the analysis before
    loadAnalysis(e.target.value).catch(fail);
  });
  window.addEventListener("popstate", async () => { // Back and Forward: the view in the URL
    const wanted = new URLSearchParams(location.hash.slice(1));
    const analysis = wanted.get("a");
    if (analysis && analysis !== state.analysis) await loadAnalysis(analysis).catch(fail);
    if (wanted.get("c") && wanted.get("c") !== state.colourBy) setColourBy(wanted.get("c"));
    const point = wanted.get("p");
    if (point && state.idIndex && state.idIndex.has(point)) focusDocument(point, state.idIndex.get(point), false);
    else if (!point && state.focus >= 0) { state.focus = -1; setHighlight(null); }
  });
  $("#space-pick").addEventListener("change", async () => {
    const id = await loadAnalysisList(null);
    if (id) await loadAnalysis(id);
  });
  $("#new-analysis").addEventListener("click", (e) => {
    const form = $("#new-form");
    form.hidden = !form.hidden;
    if (!form.hidden) formOnScreenSpace(); // a new analysis of the space on screen
    e.target.setAttribute("aria-expanded", String(!form.hidden));
  });
  $("#new-form").addEventListener("submit", startAnalysis);
  for (const tab of document.querySelectorAll("[role=tab]")) {
    tab.addEventListener("click", () => showTab(tab.id.slice(4)));
  }
  if (!source.live) for (const node of document.querySelectorAll(".live-only")) node.hidden = true;

  function fail(error) {
    showMessage(`Could not load the map: ${error.message}`);
  }

  // -- following the store: an analysis that gets a successor (an update, `serve --follow`)
  // is replaced by it in place: the view stays, the new and re-placed points are marked
  // until hovered or cleared, the legend and evaluation follow.
  function renderFresh() {
    let box = $("#fresh");
    if (!box) {
      box = el("div", { id: "fresh", role: "status", "aria-live": "polite" });
      $("#status").after(box);
    }
    const n = state.fresh ? state.fresh.size : 0;
    box.hidden = !n;
    box.replaceChildren(...(n ? [`${count(n)} new point${n === 1 ? "" : "s"} marked `,
      el("button", { type: "button", id: "fresh-clear", onclick: clearFresh }, "clear marks")] : []));
    setStatus();
  }
  function clearFresh() {
    state.fresh = null;
    rebuildFlags(); requestDraw(); renderFresh();
  }
  async function loadSuccessor(nextId) {
    if (!nextId || nextId === state.analysis) return;
    const oldIds = new Set(state.ids || []);
    const before = state.analysis;
    const kept = state.fresh ? new Set(Array.from(state.fresh, (i) => state.ids && state.ids[i])) : new Set();
    await loadAnalysis(nextId, true);
    if (state.analysis !== nextId || !state.ids) return;
    const fresh = new Set();
    const placed = new Set(state.head.parent === before ? state.head.placed || [] : []);
    state.ids.forEach((docId, i) => {
      if (!oldIds.has(docId) || placed.has(i) || kept.has(docId)) fresh.add(i);
    });
    state.fresh = fresh;
    state.successors++;
    state.successorAt = Date.now();
    rebuildFlags(); requestDraw(); renderFresh();
    await loadAnalysisList(nextId).catch(() => null);
    notice(`Updated: ${count(fresh.size)} new point${fresh.size === 1 ? "" : "s"} on the map (analysis ${nextId}).`);
  }
  async function follow() {
    // fetch() rather than EventSource: the stream needs the token header
    let last = null, bye = false;
    for (;;) {
      bye = false;
      try {
        if (state.analysis) { // what happened while away
          const found = await source.json(`/api/v1/analyses/${encodeURIComponent(state.analysis)}/successor`);
          if (found.successor) await loadSuccessor(found.successor);
        }
        const headers = source.token ? { Authorization: `Bearer ${source.token}` } : {};
        if (last !== null) headers["Last-Event-ID"] = String(last);
        const response = await fetch("/api/v1/events", { headers });
        if (!response.ok || !response.body) throw new Error(`events: HTTP ${response.status}`);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            let kind = "message", data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event:")) kind = line.slice(6).trim();
              else if (line.startsWith("data:")) data += line.slice(5).trim();
              else if (line.startsWith("id:")) last = Number(line.slice(3).trim());
            }
            if (kind === "bye") bye = true;
            if (!data) continue;
            const body = JSON.parse(data);
            if (kind === "analysis-updated" && body.parent && body.parent === state.analysis) {
              await loadSuccessor(body.analysis).catch(fail);
            } else if (kind === "analysis-created" || kind === "analysis-deleted") {
              loadAnalysisList(state.analysis).catch(() => null);
            }
          }
        }
      } catch (error) {
        // the service restarted or the network blinked: try again shortly
      }
      // the service said it stops: wait longer before asking again
      await new Promise((resolve) => setTimeout(resolve, bye ? 15000 : 2000));
    }
  }

  // What tests and benchmarks read: the page's own state, never pixels.
  window.embedlab = {
    ready,
    renderer: () => renderer.name,
    rendererReason: () => rendererReason,
    state: () => ({
      analysis: state.analysis, points: state.n, drawn: state.drawn, frames: state.frames,
      colourBy: state.colourBy, hidden: [...state.hidden[state.colourBy]],
      highlighted: state.highlight ? Array.from(state.highlight) : [], focus: state.focus,
      walk: (state.walk || []).slice(),
      selection: state.selection.slice(), selectedBy: state.selectedBy || null, firstPaintMs: state.firstPaintMs, view: Object.assign({}, state.view),
      shownAt: state.shownAt, hoverShownMs: state.hoverShownMs, hoverTextMs: state.hoverTextMs,
      fresh: state.fresh ? Array.from(state.fresh) : [], successorAt: state.successorAt,
      successors: state.successors, density: state.density, densityMs: state.densityMs,
      densityBands: state.densityBands,
    }),
    clearFresh: () => clearFresh(),
    // frames per second while the view zooms and pans on every animation frame
    panZoomFps: (seconds) => new Promise((resolve) => {
      let frames = 0, first = null;
      const step = (now) => {
        if (first === null) first = now;
        const phase = Math.floor(frames / 30) % 2;
        state.view.k *= phase ? 0.97 : 1.03;
        state.view.cx += 3 / state.view.k;
        drawNow();
        frames++;
        if (now - first < seconds * 1000) requestAnimationFrame(step);
        else resolve((frames - 1) * 1000 / (now - first));
      };
      requestAnimationFrame(step);
    }),
    idOf: (i) => (state.ids ? state.ids[i] : null),
    indexOf: (docId) => (state.idIndex ? state.idIndex.get(docId) : undefined),
    screenOf: (i) => toScreen(state.xy[2 * i], state.xy[2 * i + 1]),
    toScreen: (x, y) => toScreen(x, y),
    dataOf: (sx, sy) => toData(sx, sy),
  };

  (async () => {
    const preferred = params.get("a");
    const listing = loadAnalysisList(preferred);
    let id = null;
    let missing = null;
    if (preferred) { // the link's analysis loads while the list arrives
      try {
        await loadAnalysis(preferred);
        id = preferred;
      } catch (error) {
        missing = error.message;
      }
    }
    const newest = await listing;
    if (!id) {
      if (!newest) { readyResolve(); return; }
      id = newest;
      await loadAnalysis(id);
      if (missing) notice(`The link's analysis ${preferred} is not in this store (${missing}); showing the newest.`);
    }
    $("#analysis-pick").value = id;
    const point = params.get("p");
    if (point && state.idIndex.has(point)) focusDocument(point, state.idIndex.get(point));
    if (state.search.text) {
      $("#search-text").value = state.search.text;
      $("#search-mode").value = state.search.mode;
      if (!point) runSearch(state.search.text, state.search.mode);
    }
    if (source.live) follow();
  })().catch(fail);
})();
