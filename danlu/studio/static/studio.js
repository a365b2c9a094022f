"use strict";
// The studio page: hash routes #/ (runs), #/run/NAME, #/compare/A,B,..., #/studies, #/study/NAME.
// All data comes from /api (JSON read from the run folders); figures are fetched as blobs so an API key
// header can go with them. Nothing is inlined: the page's CSP allows only its own scripts.
const $ = (sel, root = document) => root.querySelector(sel);
const view = () => $("#view");
let key = sessionStorage.getItem("danlu-studio-key") || "";
let timer = null;
const listState = { sort: "run", asc: false, recipe: "", status: "", text: "" };

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

// replaceChildren(null) shows the text "null": optional parts of a page are dropped here first
const present = (...items) => items.filter(x => x !== null && x !== undefined && x !== false);

function askKey() {
  return new Promise(resolve => {
    const d = $("#key-dialog");
    $("#key-form").onsubmit = () => { key = $("#key-input").value; sessionStorage.setItem("danlu-studio-key", key); resolve(); };
    d.showModal();
  });
}

async function api(path, init = {}) {
  for (;;) {
    const headers = Object.assign({}, init.headers || {}, key ? { "X-API-Key": key } : {});
    const r = await fetch(path, Object.assign({}, init, { headers }));
    if (r.status === 401) { await askKey(); continue; }
    if (!r.ok) {
      let msg = r.statusText;
      try { const j = await r.json(); msg = j.error + (j.detail ? ` (${typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail)})` : ""); } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r;
  }
}
const getJSON = async path => (await api(path)).json();

async function figure(src, alt) {
  const img = h("img", { class: "figure", alt });
  api(src).then(r => r.blob()).then(b => { img.src = URL.createObjectURL(b); }).catch(() => { img.alt = `${alt} (missing)`; });
  return img;
}

function fmt(v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toFixed(4);
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}
const duration = s => s === null || s === undefined ? "–" : s < 90 ? `${s.toFixed(1)} s` : `${(s / 60).toFixed(1)} min`;
const showError = e => { const el = $("#error"); el.textContent = e ? String(e.message || e) : ""; el.hidden = !e; };

// ------------------------------------------------------------------ the list of runs

const COLUMNS = [
  ["run", "run", r => r.run], ["recipe", "recipe", r => r.recipe || ""], ["status", "status", r => r.status],
  ["model", "model", r => r.model || ""], ["accuracy", "accuracy", r => r.key.accuracy], ["f1_macro", "F1 macro", r => r.key.f1_macro],
  ["r2", "R²", r => r.key.r2], ["mae", "MAE", r => r.key.mae], ["duration", "duration", r => r.duration_s],
];

// a column's first click: names A to Z, metrics best first (lower MAE is better), newest runs and longest first
const ASCENDING = new Set(["recipe", "status", "model", "mae"]);

async function showRuns() {
  const data = await getJSON("api/runs");
  const runs = data.runs;
  const recipes = [...new Set(runs.map(r => r.recipe).filter(Boolean))].sort();
  const statuses = [...new Set(runs.map(r => r.status))].sort();
  const select = (id, values, field) => {
    const s = h("select", { id, onchange: () => { listState[field] = s.value; render(); } },
      h("option", { value: "" }, "all"), values.map(v => h("option", { value: v, selected: listState[field] === v }, v)));
    return s;
  };
  const text = h("input", { id: "filter-text", type: "search", placeholder: "name contains…", value: listState.text,
    oninput: () => { listState.text = text.value; render(); } });
  const compareBtn = h("button", { id: "compare", type: "button", onclick: () => {
    const chosen = [...document.querySelectorAll("input.pick:checked")].map(c => c.value);
    if (chosen.length < 2) { showError("pick two or more runs to compare"); return; }
    location.hash = "#/compare/" + chosen.map(encodeURIComponent).join(",");
  } }, "Compare selected");
  const table = h("table", { id: "runs" });
  view().replaceChildren(
    h("div", { class: "filters" }, h("label", {}, "recipe ", select("filter-recipe", recipes, "recipe")),
      h("label", {}, "status ", select("filter-status", statuses, "status")), text, compareBtn,
      h("span", { id: "count", class: "muted" })),
    runs.length ? table : h("p", { class: "muted" }, "No runs here yet: danlu train digits-mlp --runs-dir ", data.runs_dir || ""));

  function render() {
    const col = COLUMNS.find(c => c[0] === listState.sort) || COLUMNS[0];
    let shown = runs.filter(r => (!listState.recipe || r.recipe === listState.recipe)
      && (!listState.status || r.status === listState.status) && (!listState.text || r.run.includes(listState.text)));
    shown = shown.slice().sort((a, b) => {
      const x = col[2](a), y = col[2](b);
      if (x === y) return 0;
      if (x === undefined || x === null || x === "") return 1;
      if (y === undefined || y === null || y === "") return -1;
      return (x < y ? -1 : 1) * (listState.asc ? 1 : -1);
    });
    const head = h("tr", {}, h("th", {}, ""), COLUMNS.map(([id, label]) => h("th", {
      "data-col": id, class: id === listState.sort ? (listState.asc ? "sorted asc" : "sorted") : "",
      onclick: () => { listState.asc = listState.sort === id ? !listState.asc : ASCENDING.has(id); listState.sort = id; render(); },
    }, label)));
    const rows = shown.map(r => h("tr", { class: r.status === "damaged" ? "damaged" : "", "data-run": r.run },
      h("td", {}, h("input", { type: "checkbox", class: "pick", value: r.run, "aria-label": `pick ${r.run}` })),
      h("td", {}, h("a", { href: `#/run/${encodeURIComponent(r.run)}` }, r.run),
        r.problems.length ? h("div", { class: "problems small" }, r.problems.join("; ")) : null),
      h("td", {}, r.recipe || "–"), h("td", {}, h("span", { class: `status ${r.status}` }, r.status,
        r.status === "training" && r.epochs ? ` ${r.epoch || 0}/${r.epochs}` : "")),
      h("td", {}, r.model || "–"),
      ["accuracy", "f1_macro", "r2", "mae"].map(k => h("td", { class: "num" }, fmt(r.key[k]))),
      h("td", { class: "num" }, duration(r.duration_s))));
    table.replaceChildren(h("thead", {}, head), h("tbody", {}, rows));
    $("#count").textContent = `${shown.length} of ${runs.length} runs`;
  }
  if (runs.length) render();
}

// ------------------------------------------------------------------ one run

function curveCharts(histories, names) {
  // loss: train solid, validation dashed; the validation metric every run logged
  const first = histories.find(h => h.length) || [];
  const metric = ["val_accuracy", "val_r2", "val_mae", "val_f1_macro"].find(m => histories.every(h => !h.length || m in h[0]));
  const loss = [], met = [];
  histories.forEach((hist, i) => {
    const color = danluColors[i % danluColors.length];
    const name = names[i];
    loss.push({ name: `${name} train`, color, points: hist.map(r => [r.epoch, r.train_loss]) });
    if (first.length && "val_loss" in (hist[0] || {})) loss.push({ name: `${name} val`, color, dashed: true, points: hist.map(r => [r.epoch, r.val_loss]) });
    if (metric) met.push({ name, color, points: hist.map(r => [r.epoch, r[metric]]) });
  });
  const legend = h("div", { class: "legend small" }, names.map((n, i) => h("span", {}, h("i", { style: null, "data-color": i }), n)));
  legend.querySelectorAll("i").forEach(el => { el.style.background = danluColors[Number(el.dataset.color) % danluColors.length]; });
  return h("div", {}, danluChart(loss, { title: "loss (solid: train, dashed: validation)", id: "chart-loss" }),
    metric ? danluChart(met, { title: metric, id: "chart-metric" }) : null, legend);
}

async function showRun(name) {
  const d = await getJSON(`api/runs/${encodeURIComponent(name)}`);
  const curves = h("div", { id: "curves" }, curveCharts([d.history], [d.run]));
  const live = h("p", { id: "live", class: "muted small" });
  const report = d.report || {};
  const metrics = report.metrics || {};
  const perClass = report.per_class || {};
  const cards = [
    h("section", { class: "card" }, h("h2", {}, "Learning curves"), live, curves),
    h("section", { class: "card" }, h("h2", {}, "Test metrics"),
      Object.keys(metrics).length ? h("table", { id: "metrics" }, Object.entries(metrics).map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, fmt(v)))))
        : h("p", { class: "muted" }, "No test report (yet)."),
      Object.keys(perClass).length ? h("div", {}, h("h2", {}, "Per class"), h("table", { id: "per-class" },
        h("tr", {}, ["class", "precision", "recall", "F1", "support"].map(x => h("th", {}, x))),
        Object.entries(perClass).map(([c, m]) => h("tr", {}, h("td", {}, c), ["precision", "recall", "f1", "support"].map(k => h("td", { class: "num" }, fmt(m[k]))))))) : null),
  ];
  // the live chart above draws the learning curves; their PNG (for reports) is not shown a second time
  for (const f of d.figures.filter(f => f !== "learning_curves")) {
    cards.push(h("section", { class: "card" }, h("h2", {}, f.replaceAll("_", " ")),
      await figure(`api/runs/${encodeURIComponent(name)}/figures/${f}.png`, f)));
  }
  cards.push(h("section", { class: "card" }, h("h2", {}, "Recipe (resolved)"), h("pre", { id: "recipe" }, d.recipe_yaml || "(no recipe.yaml)")));
  if (d.predictable) cards.push(tryIt(d));
  view().replaceChildren(...present(
    h("h1", {}, d.run, " ", h("span", { id: "run-status", class: `status ${d.status}` }, d.status)),
    d.problems.length ? h("p", { class: "problems", id: "problems" }, "Problems: ", d.problems.join("; ")) : null,
    d.error ? h("p", { class: "problems" }, "Error: ", d.error) : null,
    h("div", { class: "grid" }, cards)));
  let rows = d.history.slice();
  const poll = async () => {
    try {
      const m = await getJSON(`api/runs/${encodeURIComponent(name)}/metrics?after=${rows.length}`);
      if (m.rows.length) { rows = rows.concat(m.rows); curves.replaceChildren(curveCharts([rows], [d.run])); }
      if (m.more) { timer = setTimeout(poll, 0); return; }  // a long history comes a page at a time
      if (d.status === "training" || d.status === "evaluating") live.textContent = `live: ${m.status}, epoch ${m.epoch || rows.length}/${m.epochs || "?"}`;
      if (m.status === "training" || m.status === "evaluating") timer = setTimeout(poll, 1000);
      else if (m.status !== d.status) route();  // finished: show the report and figures
    } catch (e) { live.textContent = `live updates stopped: ${e.message}`; }
  };
  if (d.status === "training" || d.status === "evaluating" || d.history_more) poll();
}

// "Why?": the input on screen explained by POST api/runs/NAME/explain, drawn by serve's shared explain.js
function whyToggle(d) {
  const toggle = h("input", { type: "checkbox", id: "try-explain-toggle" });
  const status = h("p", { id: "try-explain-status", class: "muted small" });
  const shown = h("div", { id: "try-explain-view" });
  const box = h("div", { id: "try-explanation", hidden: true }, status, shown);
  let input = null, latest = 0;  // only the newest input's explanation is shown
  const explain = async () => {
    const mine = ++latest;
    shown.replaceChildren();
    box.hidden = !(input && toggle.checked);
    if (box.hidden) return;
    status.textContent = "Explaining…";
    try {
      const r = await api(`api/runs/${encodeURIComponent(d.run)}/explain`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ inputs: input.inputs, top_k: 3 }) });
      const j = await r.json();
      if (mine !== latest) return;
      const { status: line, items } = danluExplanation(j, [input.label]);
      status.textContent = line;
      shown.replaceChildren(...items);
    } catch (e) {
      if (mine !== latest) return;
      status.textContent = "";
      shown.replaceChildren(h("p", { class: "problems" }, e.message));
    }
  };
  toggle.addEventListener("change", explain);
  const label = h("label", { class: "small", title: "Show which pixels, words or features the prediction rests on" }, toggle, " Why?");
  return { label, box, show: (inputs, name) => { input = inputs ? { inputs, label: name } : null; explain(); } };
}

function tryIt(d) {
  const out = h("div", { id: "try-results" });
  const why = whyToggle(d);
  const card = h("section", { class: "card", id: "try" }, h("h2", {}, "Try it ", why.label));
  const send = async (inputs, label) => {
    out.replaceChildren(h("p", { class: "muted" }, `predicting ${label}…`));
    why.show(null);
    try {
      const r = await api(`api/runs/${encodeURIComponent(d.run)}/predict`, {
        method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ inputs, top_k: 3 }) });
      const j = await r.json();
      const row = j.predictions[0];
      out.replaceChildren(h("p", { class: "muted small" }, label), h("div", {},
        row.top ? row.top.map(t => h("div", { class: "bar" }, h("span", { class: "label" }, t.label),
          h("div", {}, h("div", { class: "fill", style: null, "data-p": t.probability })), h("span", { class: "num prob" }, (t.probability * 100).toFixed(1) + " %")))
          : h("pre", {}, JSON.stringify(row.prediction, null, 1))));
      out.querySelectorAll(".fill").forEach(el => { el.style.width = `${Number(el.dataset.p) * 100}%`; });
      why.show(inputs, label);
    } catch (e) { out.replaceChildren(h("p", { class: "problems" }, e.message)); }
  };
  if (d.kind === "image") {
    const file = h("input", { type: "file", id: "try-file", accept: "image/*", onchange: () => {
      const f = file.files[0]; if (!f) return;
      const reader = new FileReader(); reader.onload = () => send([reader.result], f.name); reader.readAsDataURL(f);
    } });
    card.append(file);
    if (danluDrawable(d.kind, d.input_shape)) danluDraw(card, url => send([url], "your drawing"));
  } else if (d.kind === "text") {
    const t = h("textarea", { id: "try-text", rows: 3, placeholder: "type a text" });
    card.append(t, h("button", { type: "button", id: "try-send", onclick: () => send([t.value], "your text") }, "Predict"));
  } else {
    const feats = d.features || [];
    const inputs = feats.map(f => h("input", { "data-feature": f, placeholder: f, size: 8 }));
    card.append(h("div", {}, inputs.map((e, i) => h("label", { class: "small" }, feats[i], " ", e, " "))),
      h("button", { type: "button", id: "try-send", onclick: () => {
        const row = {}; inputs.forEach(e => { row[e.dataset.feature] = e.value === "" ? null : (isNaN(Number(e.value)) ? e.value : Number(e.value)); });
        send([row], "your row");
      } }, "Predict"));
  }
  const samples = h("div", {});
  card.append(samples, out, why.box);
  getJSON(`api/runs/${encodeURIComponent(d.run)}/samples`).then(j => danluSamples(samples, j.samples, d.kind,
    s => send([s.input], s.name))).catch(() => {});
  return card;
}

// ------------------------------------------------------------------ compare

async function showCompare(names) {
  const q = names.map(n => `runs=${encodeURIComponent(n)}`).join("&");
  const c = await getJSON(`api/compare?${q}`);
  const heads = c.runs.map((r, i) => String.fromCharCode(65 + i));
  const metrics = h("table", { id: "deltas" }, h("tr", {}, h("th", {}, "metric"), heads.map(x => h("th", {}, x))),
    Object.entries(c.metrics).map(([k, row]) => h("tr", {}, h("td", {}, k), row.values.map((v, i) => h("td", { class: "num" },
      fmt(v), i > 0 && row.deltas[i] !== null ? h("span", { class: "muted small delta" }, ` (${row.deltas[i] >= 0 ? "+" : ""}${row.deltas[i].toFixed(4)})`) : null)))));
  const diffKeys = Object.keys(c.recipe_diff);
  const diff = diffKeys.length ? h("table", { id: "recipe-diff" }, h("tr", {}, h("th", {}, "recipe key"), heads.map(x => h("th", {}, x))),
    diffKeys.map(k => h("tr", {}, h("td", {}, k), c.recipe_diff[k].map(v => h("td", {}, fmt(v))))))
    : h("p", { id: "recipe-diff", class: "muted" }, "The recipes are the same.");
  view().replaceChildren(h("h1", {}, "Compare"),
    h("ol", { type: "A" }, c.runs.map(r => h("li", {}, h("a", { href: `#/run/${encodeURIComponent(r)}` }, r)))),
    h("div", { class: "grid" },
      h("section", { class: "card" }, h("h2", {}, "Learning curves"), curveCharts(c.runs.map(r => c.histories[r]), heads.map((x, i) => `${x} ${c.runs[i]}`))),
      h("section", { class: "card" }, h("h2", {}, "Test metrics (delta against A)"), metrics),
      h("section", { class: "card" }, h("h2", {}, "Recipe diff"), diff)));
}

// ------------------------------------------------------------------ tuning studies

async function showStudies() {
  const data = await getJSON("api/runs");
  view().replaceChildren(h("h1", {}, "Tuning studies"), data.studies.length ? h("table", { id: "studies" },
    h("tr", {}, ["study", "metric", "best", "trials"].map(x => h("th", {}, x))),
    data.studies.map(s => h("tr", {}, h("td", {}, h("a", { href: `#/study/${encodeURIComponent(s.study)}` }, s.study),
      s.problems.length ? h("div", { class: "problems small" }, s.problems.join("; ")) : null),
      h("td", {}, s.metric || "–"), h("td", { class: "num" }, s.best ? fmt(s.best.value) : "–"), h("td", {}, fmt(s.counts)))))
    : h("p", { class: "muted" }, "No studies here: danlu tune digits-mlp --trials 10"));
}

async function showStudy(name) {
  const s = await getJSON(`api/studies/${encodeURIComponent(name)}`);
  const trials = s.trials || [];
  const params = [...new Set(trials.flatMap(t => Object.keys(t.params || {})))];
  const table = h("table", { id: "trials" }, h("tr", {}, ["trial", "state", "value", ...params, "run"].map(x => h("th", {}, x))),
    trials.map(t => h("tr", { class: s.best && s.best.trial === t.trial ? "best" : "" }, h("td", {}, t.trial), h("td", {}, t.state),
      h("td", { class: "num" }, fmt(t.value)), params.map(p => h("td", { class: "num" }, fmt((t.params || {})[p]))),
      h("td", { class: "small" }, t.run ? String(t.run).split("/").pop() : "–"))));
  const plots = [];
  for (const p of s.plots) plots.push(h("section", { class: "card" }, h("h2", {}, p.replaceAll("_", " ")),
    await figure(`api/studies/${encodeURIComponent(name)}/plots/${p}.png`, p)));
  view().replaceChildren(...present(h("h1", {}, "Study ", name),
    s.problems.length ? h("p", { class: "problems" }, s.problems.join("; ")) : null,
    s.best ? h("p", { id: "best" }, `best: trial ${s.best.trial}, ${s.metric} ${fmt(s.best.value)}`) : null,
    table, h("div", { class: "grid" }, plots),
    s.best_yaml ? h("section", { class: "card" }, h("h2", {}, "Best recipe"), h("pre", {}, s.best_yaml)) : null));
}

// ------------------------------------------------------------------ routing

async function route() {
  clearTimeout(timer);
  showError(null);
  const [, page, arg] = (location.hash || "#/").match(/^#\/([^/]*)\/?(.*)$/) || [];
  try {
    if (page === "run") await showRun(decodeURIComponent(arg));
    else if (page === "compare") await showCompare(arg.split(",").map(decodeURIComponent));
    else if (page === "studies") await showStudies();
    else if (page === "study") await showStudy(decodeURIComponent(arg));
    else await showRuns();
  } catch (e) { showError(e); }
}

window.addEventListener("hashchange", route);
getJSON("api/info").then(i => { $("#root").textContent = i.runs_dir; }).catch(() => {});
route();
