"use strict";
// Line charts as SVG, drawn here (no chart library, no CDN): series = [{name, color, points: [[x, y]], dashed}].
window.danluChart = function (series, opts) {
  const NS = "http://www.w3.org/2000/svg";
  const W = 560, H = 260, L = 52, R = 12, T = 22, B = 34;
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  if (opts.id) svg.id = opts.id;
  const pts = series.flatMap(s => s.points).filter(p => Number.isFinite(p[1]));
  const el = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  el("text", { x: L, y: 14 }, opts.title || "");
  if (!pts.length) { el("text", { x: W / 2 - 40, y: H / 2 }, "no epochs yet"); return svg; }
  let [x0, x1] = [Math.min(...pts.map(p => p[0])), Math.max(...pts.map(p => p[0]))];
  let [y0, y1] = [Math.min(...pts.map(p => p[1])), Math.max(...pts.map(p => p[1]))];
  if (x1 === x0) { x0 -= 1; x1 += 1; }
  if (y1 === y0) { y0 -= 0.5; y1 += 0.5; }
  const pad = (y1 - y0) * 0.05; y0 -= pad; y1 += pad;
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  el("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" });
  el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" });
  for (const [y, label] of danluTicks(y0, y1, 5)) el("text", { x: 4, y: sy(y) + 4, class: "tick" }, label);
  el("text", { x: L, y: H - 8 }, String(x0));
  el("text", { x: W - R - 20, y: H - 8 }, String(x1));
  el("text", { x: W / 2 - 15, y: H - 8 }, opts.xlabel || "epoch");
  for (const s of series) {
    const good = s.points.filter(p => Number.isFinite(p[1]));
    if (!good.length) continue;
    const path = el("polyline", {
      points: good.map(p => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "),
      fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.name,
    });
    if (s.dashed) path.setAttribute("stroke-dasharray", "5 4");
    for (const p of good) el("circle", { cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 2.5, fill: s.color });
  }
  return svg;
};
window.danluColors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];

// "Nice" tick values (1, 2 or 5 times a power of ten apart) inside [lo, hi], each labelled with just enough
// decimals to tell it from its neighbours: five ticks at 3 significant digits once read 0.987, 0.988,
// 0.988, 0.988, 0.989.
window.danluTicks = function (lo, hi, most) {
  const power = Math.pow(10, Math.floor(Math.log10((hi - lo) / most)));
  const count = s => Math.floor(hi / s + 1e-9) - Math.ceil(lo / s - 1e-9) + 1;
  const step = [1, 2, 2.5, 5, 10, 20].map(m => m * power).find(s => count(s) <= most) || 20 * power;
  let decimals = 0;
  const scaled = d => step * 10 ** d;
  while (decimals < 20 && (Math.round(scaled(decimals)) === 0
         || Math.abs(Math.round(scaled(decimals)) - scaled(decimals)) > 1e-6 * scaled(decimals))) decimals++;
  const ticks = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) {
    const v = k * step;
    ticks.push([v, (k === 0 ? 0 : v).toFixed(decimals)]);
  }
  return ticks;
};
