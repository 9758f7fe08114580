"use strict";
// The live dashboard: points arrive as server-sent events from dashboard/events
// (one a second: rates per second, quantiles of the interval, gauges; see
// hotpath/gateway/_dashboard_series.py) and are drawn as inline SVG. No
// dependencies, no build step.
(() => {
  const SVG = "http://www.w3.org/2000/svg";
  const C = {
    blue: "#5b9cf6", green: "#3ecf8e", amber: "#f2b84b", red: "#f0626e",
    purple: "#a98bf5", cyan: "#44c4d6", pink: "#ef7fbf", lime: "#a8d672",
    orange: "#f08a4b", grey: "#6b7486", teal: "#2fb3a0", sand: "#d9c38c",
  };
  const PALETTE = [C.blue, C.amber, C.purple, C.cyan, C.pink, C.lime, C.orange, C.teal, C.sand, C.red];
  const TIERS = { memory: C.green, redis: C.purple, sqlite: C.cyan, cache: C.teal };
  const BREAKER = [
    { name: "closed", color: "#2a8f64" },
    { name: "open", color: C.red },
    { name: "half-open", color: C.amber },
  ];

  let points = [];
  let meta = { interval: 1, history: 300, scope: "this process" };
  let hover = null; // the time under the pointer, shared by every chart

  // -- formatting --------------------------------------------------------------

  const num = (x, digits) => x.toLocaleString("en-US", { maximumFractionDigits: digits });

  function count(x) {
    if (x == null || !isFinite(x)) return "–";
    const a = Math.abs(x);
    if (a >= 1e9) return num(x / 1e9, 1) + "G";
    if (a >= 1e6) return num(x / 1e6, 1) + "M";
    if (a >= 1e4) return num(x / 1e3, 1) + "k";
    if (a >= 100) return num(x, 0);
    if (a >= 10) return num(x, 1);
    return num(x, 2);
  }
  const rate = (x) => (x == null ? "–" : count(x) + "/s");

  function duration(s) {
    if (s == null || !isFinite(s)) return "–";
    if (s >= 10) return num(s, 0) + " s";
    if (s >= 1) return num(s, 2) + " s";
    const ms = s * 1000;
    if (ms >= 100) return num(ms, 0) + " ms";
    if (ms >= 10) return num(ms, 1) + " ms";
    return num(ms, 2) + " ms";
  }

  function usd(x) {
    if (x == null || !isFinite(x)) return "–";
    const a = Math.abs(x);
    if (a === 0) return "$0";
    if (a >= 100) return "$" + num(x, 0);
    if (a >= 1) return "$" + num(x, 2);
    if (a >= 0.01) return "$" + x.toFixed(3);
    return "$" + x.toPrecision(2);
  }

  const percent = (x) => (x == null || !isFinite(x) ? "–" : num(x * 100, x >= 0.995 || x < 0.1 ? 1 : 0) + "%");

  function clock(t) {
    const d = new Date(t * 1000);
    return d.toTimeString().slice(0, 8);
  }

  // -- window helpers ------------------------------------------------------------

  const sum = (obj) => Object.values(obj || {}).reduce((a, b) => a + b, 0);

  function keysOf(field) {
    const seen = new Set();
    for (const p of points) for (const k of Object.keys(p[field] || {})) seen.add(k);
    return [...seen].sort();
  }

  function recent(n) {
    return points.slice(Math.max(0, points.length - n));
  }

  function mean(values) {
    const kept = values.filter((v) => v != null && isFinite(v));
    return kept.length ? kept.reduce((a, b) => a + b, 0) / kept.length : null;
  }

  function lastValue(values) {
    for (let i = values.length - 1; i >= 0; i--) if (values[i] != null) return values[i];
    return null;
  }

  function hitRatio(pts) {
    let hits = 0;
    let lookups = 0;
    for (const p of pts) {
      const h = sum(p.hits) * p.dt;
      hits += h;
      lookups += h + p.misses * p.dt;
    }
    return lookups > 0 ? hits / lookups : null;
  }

  function colorFor(chart, key, fixed) {
    if (fixed && fixed[key]) return fixed[key];
    if (!chart.colors[key]) chart.colors[key] = PALETTE[Object.keys(chart.colors).length % PALETTE.length];
    return chart.colors[key];
  }

  // -- the charts ------------------------------------------------------------------

  const CHARTS = [
    {
      id: "requests", title: "Request rate", format: rate,
      series: () => [
        { name: "requests", color: C.blue, fill: true, values: points.map((p) => p.rps) },
        { name: "in flight", color: C.grey, dash: true, values: points.map((p) => p.in_flight), format: count },
      ],
      now: () => `<b>${rate(mean(recent(5).map((p) => p.rps)))}</b> · 5 s mean`,
    },
    {
      id: "latency", title: "Latency", format: duration, log: true,
      series: () => quantileSeries("latency"),
      now: () => `p95 <b>${duration(lastValue(points.map((p) => p.latency[1])))}</b>`,
    },
    {
      id: "ttft", title: "Time to first token", format: duration, log: true,
      series: () => quantileSeries("ttft"),
      now: () => `p95 <b>${duration(lastValue(points.map((p) => p.ttft[1])))}</b>`,
    },
    {
      id: "cache", title: "Cache lookups by tier", format: rate, stacked: true,
      series: (chart) => [
        ...keysOf("hits").map((tier) => ({
          name: tier + " hit", color: colorFor(chart, tier, TIERS), values: points.map((p) => p.hits[tier] || 0),
        })),
        { name: "miss", color: C.grey, values: points.map((p) => p.misses) },
        ...(points.some((p) => p.bypass > 0)
          ? [{ name: "bypass", color: "#3c4456", values: points.map((p) => p.bypass) }]
          : []),
      ],
      now: () => `hit ratio <b>${percent(hitRatio(recent(60)))}</b> · last minute`,
    },
    {
      id: "tokens", title: "Tokens billed upstream", format: rate,
      series: (chart) => ["prompt", "completion", "cached"].map((kind, i) => ({
        name: kind, color: [C.purple, C.cyan, C.lime][i], values: points.map((p) => p.tokens[kind] || 0),
      })).concat(keysOf("tokens").filter((k) => !["prompt", "completion", "cached"].includes(k)).map((kind) => ({
        name: kind, color: colorFor(chart, kind), values: points.map((p) => p.tokens[kind] || 0),
      }))),
      now: () => `<b>${rate(mean(recent(5).map((p) => sum(p.tokens))))}</b> · 5 s mean`,
    },
    {
      id: "cost", title: "Spent and saved, per minute", format: usd,
      series: () => [
        { name: "spent", color: C.amber, fill: true, values: points.map((p) => p.cost * 60) },
        { name: "saved by the cache", color: C.green, fill: true, values: points.map((p) => p.saved * 60) },
      ],
      now: () => {
        const last = points[points.length - 1];
        return last ? `spent <b>${usd(last.total.cost)}</b> · saved <b>${usd(last.total.saved)}</b>` : "";
      },
    },
    {
      id: "errors", title: "Errors by kind", format: rate,
      series: (chart) => keysOf("errors").map((kind) => ({
        name: kind, color: colorFor(chart, kind, { "rate limited": C.amber, shed: C.orange, "breaker open": C.red }),
        values: points.map((p) => p.errors[kind] || 0),
      })),
      empty: "no errors in the window",
      now: () => `<b>${rate(mean(recent(5).map((p) => sum(p.errors))))}</b> · 5 s mean`,
    },
    {
      id: "breakers", title: "Circuit breakers", timeline: true,
      empty: "no deployment has reported a breaker yet",
      now: () => {
        const last = points[points.length - 1];
        if (!last) return "";
        const states = Object.values(last.breakers);
        const open = states.filter((s) => s === 1).length;
        const half = states.filter((s) => s === 2).length;
        if (!states.length) return "";
        return open || half ? `<b>${open}</b> open · <b>${half}</b> half-open` : `all <b>${states.length}</b> closed`;
      },
    },
    {
      id: "limits", title: "Concurrency limits", format: count,
      series: (chart) => keysOf("limits").map((name) => ({
        name, color: colorFor(chart, name), values: points.map((p) => (name in p.limits ? p.limits[name] : null)),
      })),
      empty: "no adaptive limit reported yet",
      now: () => {
        const last = points[points.length - 1];
        return last && Object.keys(last.limits).length ? `total <b>${count(sum(last.limits))}</b>` : "";
      },
    },
  ];

  function quantileSeries(field) {
    return ["p50", "p95", "p99"].map((name, i) => ({
      name, color: [C.green, C.amber, C.red][i], values: points.map((p) => p[field][i]),
    }));
  }

  const TILES = [
    { id: "rps", label: "Requests", value: () => rate(mean(recent(5).map((p) => p.rps))), hint: () => `${count(total("requests"))} since start` },
    {
      id: "hit", label: "Cache hit ratio", value: () => percent(hitRatio(recent(60))),
      hint: () => { const t = last()?.total; return t && t.lookups ? `${percent(t.hits / t.lookups)} since start` : "no lookups yet"; },
      tone: () => { const r = hitRatio(recent(60)); return r == null ? "" : r >= 0.5 ? "good" : ""; },
    },
    { id: "p95", label: "Latency p95", value: () => duration(lastValue(points.map((p) => p.latency[1]))), hint: () => `p50 ${duration(lastValue(points.map((p) => p.latency[0])))}` },
    { id: "ttft", label: "First token p95", value: () => duration(lastValue(points.map((p) => p.ttft[1]))), hint: () => `p50 ${duration(lastValue(points.map((p) => p.ttft[0])))}` },
    { id: "spent", label: "Spent", value: () => usd(total("cost")), hint: () => `${count(total("tokens"))} tokens upstream` },
    { id: "saved", label: "Saved by the cache", value: () => usd(total("saved")), tone: () => (total("saved") > 0 ? "good" : ""), hint: () => savedShare() },
    {
      id: "errors", label: "Errors", value: () => rate(mean(recent(5).map((p) => sum(p.errors)))),
      hint: () => `${count(total("errors"))} since start`,
      tone: () => (mean(recent(5).map((p) => sum(p.errors))) > 0 ? "bad" : ""),
    },
    { id: "inflight", label: "In flight", value: () => count(last()?.in_flight), hint: () => meta.scope },
  ];

  const last = () => points[points.length - 1];
  const total = (name) => (last() ? last().total[name] : null);

  function savedShare() {
    const spent = total("cost");
    const saved = total("saved");
    if (!spent && !saved) return "nothing priced yet";
    return `${percent(saved / (spent + saved))} of the bill avoided`;
  }

  // -- DOM -----------------------------------------------------------------------

  function el(tag, attrs, parent) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else node.setAttribute(k, v);
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  const tilesEl = document.getElementById("tiles");
  for (const tile of TILES) {
    const box = el("div", { class: "tile", id: "tile-" + tile.id }, tilesEl);
    el("div", { class: "label", text: tile.label }, box);
    tile.valueEl = el("div", { class: "value", text: "–" }, box);
    tile.hintEl = el("div", { class: "hint", text: " " }, box);
    tile.box = box;
  }

  const grid = document.getElementById("grid");
  for (const chart of CHARTS) {
    chart.colors = {};
    const panel = el("section", { class: "panel", id: "panel-" + chart.id }, grid);
    const head = el("header", {}, panel);
    el("h2", { text: chart.title }, head);
    chart.nowEl = el("span", { class: "now" }, head);
    chart.svg = el("svg:svg", { class: "chart", role: "img", "aria-label": chart.title }, panel);
    chart.legendEl = el("div", { class: "legend" }, panel);
    chart.svg.addEventListener("mousemove", (event) => {
      const box = chart.svg.getBoundingClientRect();
      const x = event.clientX - box.left;
      const frame = chart.frame;
      if (!frame) return;
      const t = frame.t0 + ((x - frame.left) / frame.width) * frame.span;
      hover = Math.min(frame.t1, Math.max(frame.t0, t));
      draw();
    });
    chart.svg.addEventListener("mouseleave", () => {
      hover = null;
      draw();
    });
  }

  // -- drawing -------------------------------------------------------------------

  // A linear axis from 0: about four round steps up to at least ``max``.
  function linearAxis(max) {
    if (!(max > 0)) return { top: 1, ticks: [0, 0.5, 1] };
    const raw = max / 4;
    const exp = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * exp).find((v) => v >= raw * 0.999);
    const top = Math.ceil(max / step - 1e-9) * step;
    const ticks = [];
    for (let v = 0; v <= top + step / 2; v += step) ticks.push(v);
    return { top, ticks };
  }

  // A log axis over whole decades (latencies: a hit is 100x faster than a miss).
  function logAxis(low, high) {
    const floor = 1e-4;
    if (!(high > 0)) return { lo: 1e-3, hi: 1, ticks: [1e-3, 1e-2, 1e-1, 1] };
    let lo = Math.pow(10, Math.floor(Math.log10(Math.max(floor, low))));
    const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(high, lo * 10))));
    if (hi / lo < 100) lo = hi / 100;
    const ticks = [];
    for (let v = lo; v <= hi * 1.001; v *= 10) ticks.push(v);
    return { lo, hi, ticks };
  }

  function frameOf(chart) {
    const box = chart.svg.getBoundingClientRect();
    const width = Math.max(120, Math.round(box.width));
    const height = Math.max(60, Math.round(box.height));
    const t1 = points.length ? points[points.length - 1].t : Date.now() / 1000;
    // The time the points held cover (a minute at least).
    const held = points.length ? t1 - points[0].t + points[0].dt : 0;
    const span = Math.max(60, held);
    const left = chart.timeline ? 150 : 56;
    return {
      width: width - left - (chart.timeline ? 84 : 10), height: height - 22, left, top: 6, span, t0: t1 - span, t1,
      full: width, fullHeight: height,
    };
  }

  function hoverIndex() {
    if (hover == null || !points.length) return points.length - 1;
    let best = 0;
    for (let i = 1; i < points.length; i++) {
      if (Math.abs(points[i].t - hover) < Math.abs(points[best].t - hover)) best = i;
    }
    return best;
  }

  // Time labels at round steps, far enough apart for the chart's width.
  function xAxis(svg, f, y) {
    let step = 600;
    for (const s of [5, 10, 15, 30, 60, 120, 300, 600]) {
      if ((s / f.span) * f.width >= (s < 60 ? 64 : 44)) {
        step = s;
        break;
      }
    }
    const first = Math.ceil(f.t0 / step) * step;
    for (let t = first; t <= f.t1; t += step) {
      const x = f.left + ((t - f.t0) / f.span) * f.width;
      if (x < f.left + 18 || x > f.left + f.width - 18) continue;
      el("svg:text", { x: x.toFixed(1), y: y ?? f.top + f.height + 15, "text-anchor": "middle", text: clock(t).slice(0, step < 60 ? 8 : 5) }, svg);
    }
  }

  // Time no point covers (a stalled sampler, a restart): the line breaks there.
  function gapAfter(i) {
    return i + 1 < points.length && points[i + 1].t - points[i].t > points[i + 1].dt + 2 * meta.interval;
  }

  function drawSeriesChart(chart) {
    const svg = chart.svg;
    const f = frameOf(chart);
    chart.frame = f;
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${f.full} ${f.fullHeight}`);
    const series = chart.series(chart);
    const n = points.length;
    const xs = points.map((p) => f.left + ((p.t - f.t0) / f.span) * f.width);

    // Stacked charts draw cumulative sums; others the values themselves.
    const base = new Array(n).fill(0);
    const drawn = series.map((s) => {
      const lower = base.slice();
      const upper = s.values.map((v, i) => (chart.stacked ? (base[i] += v || 0) : v));
      return { ...s, lower, upper };
    });
    let top = 0;
    let low = Infinity;
    for (const s of drawn) {
      for (const v of s.upper) {
        if (v == null || !isFinite(v)) continue;
        top = Math.max(top, v);
        if (v > 0) low = Math.min(low, v);
      }
    }
    let y;
    let ticks;
    if (chart.log) {
      const axis = logAxis(low, top);
      const span = Math.log10(axis.hi / axis.lo);
      y = (v) => f.top + f.height - (Math.log10(Math.max(v, axis.lo) / axis.lo) / span) * f.height;
      ticks = axis.ticks;
    } else {
      const axis = linearAxis(top);
      y = (v) => f.top + f.height - (v / axis.top) * f.height;
      ticks = axis.ticks;
    }
    for (const v of ticks) {
      const yy = Math.round(y(v)) + 0.5;
      el("svg:line", { class: "gridline", x1: f.left, x2: f.left + f.width, y1: yy, y2: yy }, svg);
      el("svg:text", { x: f.left - 6, y: yy + 3.5, "text-anchor": "end", text: chart.format(v) }, svg);
    }
    xAxis(svg, f);

    let segments = 0;
    for (const s of drawn.slice().reverse()) {
      let line = "";
      let area = "";
      let run = [];
      const flush = () => {
        if (run.length && (s.fill || chart.stacked)) {
          const upper = run.map((i) => `${xs[i].toFixed(1)},${y(s.upper[i]).toFixed(1)}`);
          const lower = run.slice().reverse().map((i) => `${xs[i].toFixed(1)},${y(s.lower[i]).toFixed(1)}`);
          area += `M${upper.join("L")}L${lower.join("L")}Z`;
        }
        run = [];
      };
      for (let i = 0; i < n; i++) {
        const v = s.upper[i];
        if (v == null || !isFinite(v) || (chart.log && v <= 0)) {
          flush();
          continue;
        }
        line += `${run.length ? "L" : "M"}${xs[i].toFixed(1)},${y(v).toFixed(1)}`;
        run.push(i);
        segments += 1;
        if (gapAfter(i)) flush();
      }
      flush();
      if (area) el("svg:path", { d: area, fill: s.color, "fill-opacity": chart.stacked ? 0.55 : 0.14, stroke: "none" }, svg);
      if (line) {
        el("svg:path", {
          d: line, fill: "none", stroke: s.color, "stroke-width": 1.6, "stroke-linejoin": "round",
          "stroke-dasharray": s.dash ? "4 3" : "none",
        }, svg);
      }
    }
    svg.dataset.segments = String(segments);
    if (!n || (!drawn.length && chart.empty)) {
      el("svg:text", { class: "empty", x: f.left + f.width / 2, y: f.top + f.height / 2, "text-anchor": "middle", text: n ? chart.empty : "waiting for data…" }, svg);
    } else if (chart.empty && top === 0) {
      el("svg:text", { class: "empty", x: f.left + f.width / 2, y: f.top + f.height / 2 - 6, "text-anchor": "middle", text: chart.empty }, svg);
    }

    const at = hoverIndex();
    if (hover != null && at >= 0) {
      el("svg:line", { class: "cursor", x1: xs[at], x2: xs[at], y1: f.top, y2: f.top + f.height }, svg);
    }
    legend(chart, drawn.map((s) => ({ name: s.name, color: s.color, value: at >= 0 ? s.values[at] : null, format: s.format })), at);
  }

  function drawTimeline(chart) {
    const svg = chart.svg;
    const names = keysOf("breakers");
    svg.style.height = Math.max(60, Math.min(names.length, 12) * 22 + 30) + "px";
    const f = frameOf(chart);
    chart.frame = f;
    svg.replaceChildren();
    svg.setAttribute("viewBox", `0 0 ${f.full} ${f.fullHeight}`);
    const rows = Math.min(names.length, 12);
    if (rows) xAxis(svg, f, f.top + rows * 22 + 10);
    const at = hoverIndex();
    let segments = 0;
    names.slice(0, 12).forEach((name, row) => {
      const yy = f.top + row * 22;
      const shown = name.length > 22 ? name.slice(0, 21) + "…" : name;
      el("svg:text", { class: "row", x: 0, y: yy + 12, text: shown }, svg);
      el("svg:rect", { x: f.left, y: yy, width: f.width, height: 16, fill: "#1b2029", rx: 3 }, svg);
      let start = null;
      let state = null;
      const close = (end) => {
        if (start == null || state == null) return;
        const x0 = f.left + ((start - f.t0) / f.span) * f.width;
        const x1 = f.left + ((end - f.t0) / f.span) * f.width;
        el("svg:rect", { x: Math.max(f.left, x0).toFixed(1), y: yy, width: Math.max(1, x1 - Math.max(f.left, x0)).toFixed(1), height: 16, fill: BREAKER[state]?.color || C.grey, rx: 2 }, svg);
        segments += 1;
      };
      for (const p of points) {
        const s = name in p.breakers ? p.breakers[name] : null;
        if (s !== state) {
          close(p.t - p.dt);
          start = p.t - p.dt;
          state = s;
        }
      }
      if (points.length) close(points[points.length - 1].t);
      const now = at >= 0 && name in points[at].breakers ? points[at].breakers[name] : null;
      const label = el("svg:text", {
        class: "state", x: f.left + f.width + 10, y: yy + 12,
        text: now == null ? "–" : BREAKER[now]?.name || String(now),
      }, svg);
      label.style.fill = now ? BREAKER[now]?.color || C.grey : C.green;
    });
    svg.dataset.segments = String(segments);
    if (!names.length) {
      el("svg:text", { class: "empty", x: f.left + f.width / 2, y: 30, "text-anchor": "middle", text: points.length ? chart.empty : "waiting for data…" }, svg);
    }
    if (hover != null && at >= 0 && rows) {
      const x = f.left + ((points[at].t - f.t0) / f.span) * f.width;
      el("svg:line", { class: "cursor", x1: x, x2: x, y1: f.top, y2: f.top + rows * 22 - 6 }, svg);
    }
    legend(chart, BREAKER.map((b) => ({ name: b.name, color: b.color })), at);
  }

  function legend(chart, items, at) {
    const box = chart.legendEl;
    box.replaceChildren();
    for (const item of items) {
      const span = el("span", {}, box);
      const swatch = el("i", {}, span);
      swatch.style.background = item.color;
      span.appendChild(document.createTextNode(item.name));
      if (item.value !== undefined) el("b", { text: (item.format || chart.format)(item.value) }, span);
    }
    if (hover != null && at >= 0) el("span", { class: "when", text: clock(points[at].t) }, box);
  }

  function draw() {
    for (const chart of CHARTS) {
      if (chart.timeline) drawTimeline(chart);
      else drawSeriesChart(chart);
      chart.nowEl.innerHTML = points.length ? chart.now() : "";
    }
    for (const tile of TILES) {
      tile.valueEl.textContent = points.length ? tile.value() : "–";
      tile.hintEl.textContent = points.length ? tile.hint() : " ";
      tile.box.className = "tile " + (points.length && tile.tone ? tile.tone() : "");
    }
    document.body.dataset.points = String(points.length);
  }

  function footer() {
    const cost = meta.sample_cost_us ? ` · a reading takes ${num(meta.sample_cost_us, 0)} µs of CPU (median)` : "";
    const up = meta.upstreams && meta.upstreams.length ? ` · upstreams: ${meta.upstreams.join(", ")}` : "";
    const idle = meta.idle_interval > meta.interval ? ` (every ${num(meta.idle_interval, 0)} s while no dashboard is open)` : "";
    document.getElementById("foot").textContent =
      `Read every ${num(meta.interval, 2)} s${idle} from the metrics of ${meta.scope} (pid ${meta.pid}) · ` +
      `the last ${meta.history} readings${cost}${up}`;
  }

  // -- the stream ----------------------------------------------------------------

  const statusEl = document.getElementById("status");
  const statusText = document.getElementById("status-text");
  let lastArrival = 0;

  function status(state, text, link) {
    statusEl.dataset.state = state;
    statusText.textContent = text;
    if (link) {
      statusText.append(" — ");
      el("a", { href: "dashboard", text: link }, statusText);
    }
  }

  let pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      draw();
    });
  }

  function applyHistory(body) {
    meta = body.meta;
    points = body.points;
    footer();
    lastArrival = Date.now();
    draw();
  }

  // The points so far come inside the page; the stream sends them again, then
  // each new one.
  try {
    applyHistory(JSON.parse(document.getElementById("history").textContent));
  } catch (error) {
    draw();
  }
  // The stream carries on after the last point the page came with.
  const after = meta.run ? `?after=${meta.run}-${points.length ? points[points.length - 1].seq : meta.seq}` : "";
  const source = new EventSource("dashboard/events" + after);
  source.onopen = () => status("live", "live");
  source.addEventListener("history", (event) => applyHistory(JSON.parse(event.data)));
  source.addEventListener("meta", (event) => {
    meta = JSON.parse(event.data);
    footer();
  });
  source.onmessage = (event) => {
    points.push(JSON.parse(event.data));
    if (points.length > meta.history) points.splice(0, points.length - meta.history);
    lastArrival = Date.now();
    status("live", "live");
    schedule();
  };
  source.addEventListener("expired", () => {
    source.close();
    status("closed", "session expired", "sign in again");
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) status("closed", "disconnected", "sign in again");
    else status("reconnecting", "reconnecting…");
  };
  setInterval(() => {
    if (statusEl.dataset.state === "live" && Date.now() - lastArrival > meta.interval * 3000 + 2000) {
      status("stalled", "no new samples");
    }
  }, 1000);
  window.addEventListener("resize", schedule);
})();
