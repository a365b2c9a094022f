// danlu's model page: reads the model card, builds the input for the run's kind, shows predictions as bars,
// and with "Why?" on, the explanation: a heat map over the image, coloured tokens, or signed feature bars.
// Plain browser JavaScript, no build step. Everything the server sent is shown with textContent, never as HTML.
"use strict";

const KEY_STORE = "danlu-api-key";
const $ = (id) => document.getElementById(id);

class ApiError extends Error {
  constructor(message, detail) { super(message); this.detail = detail; }
}

// ---------------------------------------------------------------- API key and requests

function askForKey(message) {
  const dialog = $("key-dialog");
  $("key-message").textContent = message;
  $("key-input").value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const key = $("key-input").value.trim();
      if (key) sessionStorage.setItem(KEY_STORE, key);
      resolve();
    }, { once: true });
    if (!dialog.open) dialog.showModal();
    $("key-input").focus();
  });
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = sessionStorage.getItem(KEY_STORE);
  if (key) headers.set("X-API-Key", key);
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch {
    throw new ApiError("Cannot reach the server.", "Is danlu serve still running?");
  }
  if (response.status === 401) {
    const hadKey = Boolean(key);
    sessionStorage.removeItem(KEY_STORE);
    await askForKey(hadKey ? "That key was not accepted. Try again." :
      "This server asks for an API key. It is kept in this tab only.");
    return api(path, options);
  }
  let body;
  try { body = await response.json(); } catch { body = { error: `HTTP ${response.status}` }; }
  if (!response.ok) throw new ApiError(body.error || `HTTP ${response.status}`, body.detail);
  return body;
}

// ---------------------------------------------------------------- the model card

function formatMetric(name, value) {
  if (typeof value !== "number") return String(value);
  const asPercent = /accuracy|precision|recall|f1|auc/.test(name);
  return asPercent ? `${(value * 100).toFixed(2)}%` : value.toPrecision(4);
}

function fact(dl, term, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  const dd = document.createElement("dd");
  dt.textContent = term;
  dd.textContent = value;
  dl.append(dt, dd);
}

function inputSummary(card) {
  const spec = card.input || {};
  if (card.kind === "image" && spec.shape) {
    const [c, h, w] = spec.shape;
    return `${w}×${h} ${c === 1 ? "grayscale" : "RGB"} image`;
  }
  if (card.kind === "recommendation") return `${card.users} users × ${card.items} items`;
  if (card.kind === "tabular") return `${(spec.features || []).length} features`;
  if (card.kind === "audio" && spec.audio) return `${spec.audio.seconds} s of sound at ${spec.audio.sample_rate} Hz`;
  return spec.max_length ? `text, up to ${spec.max_length} tokens` : "text";
}

function showCard(card) {
  document.title = `danlu · ${card.recipe}`;
  $("model-name").textContent = card.recipe;
  $("model-description").textContent = card.description || "";
  $("backend").textContent = card.backend === "onnx" ? "ONNX Runtime" : "PyTorch";
  $("backend").hidden = false;

  const facts = $("facts");
  facts.replaceChildren();
  fact(facts, "Task", card.task);
  fact(facts, "Input", inputSummary(card));
  fact(facts, "Model", card.model);
  fact(facts, "Data", card.source);
  fact(facts, "Test samples", card.test_samples);
  fact(facts, "Run", card.run);

  const rows = $("metrics").tBodies[0];
  rows.replaceChildren();
  const metrics = Object.entries(card.metrics || {}).filter(([, v]) => typeof v === "number");
  for (const [name, value] of metrics) {
    const tr = rows.insertRow();
    tr.insertCell().textContent = name.replaceAll("_", " ");
    tr.insertCell().textContent = formatMetric(name, value);
  }
  $("no-metrics").hidden = metrics.length > 0;

  const regression = card.task === "regression";
  $("classes-heading").textContent = regression ? "Targets" : "Classes";
  $("top-k-label").hidden = regression;

  const chips = $("classes");
  chips.replaceChildren();
  const names = card.classes || card.targets || [];
  for (const name of names.slice(0, 40)) {
    const li = document.createElement("li");
    li.textContent = name;
    chips.append(li);
  }
  if (names.length > 40) {
    const li = document.createElement("li");
    li.textContent = `+${names.length - 40} more`;
    chips.append(li);
  }
}

// ---------------------------------------------------------------- results

function showError(error) {
  const box = $("error");
  box.replaceChildren(document.createTextNode(error.message));
  if (error.detail) {
    const small = document.createElement("small");
    small.textContent = typeof error.detail === "string" ? error.detail : JSON.stringify(error.detail);
    box.append(small);
  }
  box.hidden = false;
}

function bars(top) {
  const list = document.createElement("ol");
  list.className = "bars";
  for (const { label, probability } of top) {
    const li = document.createElement("li");
    li.className = "bar";
    const name = document.createElement("span");
    name.className = "label";
    name.textContent = label;
    name.title = label;
    const track = document.createElement("div");
    track.className = "track";
    const fill = document.createElement("div");
    fill.className = "fill";
    track.append(fill);
    const value = document.createElement("span");
    value.className = "probability";
    value.textContent = `${(probability * 100).toFixed(1)}%`;
    li.append(name, track, value);
    list.append(li);
    requestAnimationFrame(() => { fill.style.width = `${Math.max(probability * 100, 0.5)}%`; });
  }
  return list;
}

function verdict({ label, probability }) {
  const p = document.createElement("p");
  p.className = "verdict";
  const name = document.createElement("strong");
  name.textContent = label;
  const confidence = document.createElement("span");
  confidence.className = "muted";
  confidence.textContent = `${(probability * 100).toFixed(1)}% probability`;
  p.append(name, confidence);
  return p;
}

function values(prediction) {
  const dl = document.createElement("dl");
  dl.className = "values";
  for (const [name, value] of Object.entries(prediction)) {
    const row = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value === null ? "—" : Number(value).toPrecision(5);
    row.append(dt, dd);
    dl.append(row);
  }
  return dl;
}

function showPredictions(predictions, names) {
  const results = $("results");
  results.replaceChildren();
  predictions.forEach((row, i) => {
    const block = document.createElement("div");
    block.className = "result";
    if (predictions.length > 1 || names) {
      const title = document.createElement("h3");
      title.textContent = names ? names[i] : `input ${i + 1}`;
      block.append(title);
    }
    if (row.top && row.top.length) block.append(verdict(row.top[0]), bars(row.top));
    else block.append(values(row.prediction || {}));
    results.append(block);
  });
}

// ---------------------------------------------------------------- explanations (POST /v1/explain)

let lastInput = null; // { make: () => Promise<inputs>, names } for the input on screen
let latestExplain = 0;

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new ApiError(`Cannot read ${file.name}.`));
    reader.readAsDataURL(file);
  });
}

function showExplanations(result, names) {
  const { status, items } = danluExplanation(result, names);
  $("explain-status").textContent = status;
  $("explain-view").replaceChildren(...items);
}

function hideExplanation() {
  latestExplain += 1; // an answer on its way is no longer wanted
  $("explanation").hidden = true;
  $("explain-view").replaceChildren();
}

async function explain() {
  if (!lastInput || !$("explain-toggle").checked) return;
  const mine = ++latestExplain;
  const { make, names } = lastInput;
  $("explanation").hidden = false;
  $("explain-view").replaceChildren();
  $("explain-status").textContent = "Explaining…";
  try {
    const inputs = await make();
    const result = await api("v1/explain", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ inputs, top_k: topK() }) });
    if (mine !== latestExplain) return;
    showExplanations(result, names);
  } catch (error) {
    if (mine !== latestExplain) return;
    $("explain-status").textContent = "";
    const p = document.createElement("p");
    p.className = "error";
    p.textContent = error.message + (error.detail ? ` (${typeof error.detail === "string" ? error.detail :
      JSON.stringify(error.detail)})` : "");
    $("explain-view").replaceChildren(p);
  }
}

let latestRequest = 0; // only the newest input's answer is shown, whichever answer arrives last

// the input forms' buttons, not the key dialog's: it must stay usable while a prediction waits for a key
const inputButtons = () => document.querySelectorAll("main button[type=submit]");

function clearResults() {
  $("results").replaceChildren();
  $("timing").textContent = "";
  $("error").hidden = true;
}

function fail(message, detail) {
  latestRequest += 1; // an answer still on its way is no longer the latest
  lastInput = null;
  hideExplanation();
  $("status").hidden = true;
  clearResults();
  showError(new ApiError(message, detail));
}

async function predict(body, names, explainInputs) {
  const mine = ++latestRequest;
  lastInput = explainInputs ? { make: explainInputs, names } : null;
  hideExplanation();
  $("error").hidden = true;
  $("status").hidden = false;
  $("status").textContent = "Predicting…";
  inputButtons().forEach((b) => { b.disabled = true; });
  const t0 = performance.now();
  try {
    const result = await api("v1/predict", { method: "POST", ...body });
    if (mine !== latestRequest) return;
    $("status").hidden = true;
    $("timing").textContent = `${Math.round(performance.now() - t0)} ms`;
    showPredictions(result.predictions, names);
    explain();
  } catch (error) {
    if (mine !== latestRequest) return;
    $("status").hidden = true;
    clearResults();
    showError(error);
  } finally {
    if (mine === latestRequest) inputButtons().forEach((b) => { b.disabled = false; });
  }
}

const topK = () => Number($("top-k").value);

function jsonBody(inputs) {
  return { headers: { "Content-Type": "application/json" }, body: JSON.stringify({ inputs, top_k: topK() }) };
}

// ---------------------------------------------------------------- inputs per kind

// Whether a chosen file is over the server's body limit (said on the page, nothing sent): shared by the
// image drop and the audio drop (audio.js).
function refusedAsTooBig(files, card, hint) {
  const limit = (card.limits || {}).max_body_mb;
  const big = limit ? files.find((f) => f.size > limit * 1024 * 1024) : null;
  if (big) fail(`${big.name} is over this server's ${limit} MiB limit.`, hint);
  return Boolean(big);
}

function setUpImage(card) {
  $("image-input").hidden = false;
  const drop = $("drop");
  let last = null;

  const send = (files) => {
    if (!files.length || refusedAsTooBig(files, card, "Choose a smaller image.")) return;
    last = files;
    const preview = $("preview");
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(files[0]);
    preview.onload = () => { preview.classList.toggle("pixelated", preview.naturalWidth < 64); };
    preview.hidden = false;
    $("drop-text").hidden = true;
    $("file-name").textContent = files.length === 1 ? files[0].name : `${files[0].name} and ${files.length - 1} more`;
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    form.append("top_k", String(topK()));
    predict({ body: form }, files.map((f) => f.name), () => Promise.all(files.map(readAsDataUrl)));
  };

  $("file").addEventListener("change", (e) => send([...e.target.files]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const dropped = [...e.dataTransfer.files];
    const images = dropped.filter((f) => f.type.startsWith("image/") || !f.type);
    if (dropped.length && !images.length) {
      fail(`${dropped[0].name} is not an image.`, "Drop a JPEG, PNG, GIF, BMP or WebP file.");
      return;
    }
    send(images);
  });
  $("top-k").addEventListener("change", () => { if (last) send(last); });
}

function setUpText() {
  const form = $("text-input");
  form.hidden = false;
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("text").value;
    if (text.trim()) predict(jsonBody([text]), null, async () => [text]);
    else fail("The text is empty.", "Type something to classify.");
  });
  $("text").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
}

function setUpTabular(spec) {
  const form = $("tabular-input");
  form.hidden = false;
  const box = $("features");
  const categories = spec.categories || {};
  const defaults = spec.defaults || {};
  for (const name of spec.features || []) {
    const label = document.createElement("label");
    const caption = document.createElement("span");
    caption.textContent = name;
    caption.title = name;
    let field;
    if (categories[name]) {
      field = document.createElement("select");
      field.append(new Option("(missing)", ""));
      for (const c of categories[name]) field.append(new Option(c, c));
    } else {
      field = document.createElement("input");
      field.type = "number";
      field.step = "any";
      if (name in defaults) field.placeholder = String(defaults[name]);
    }
    field.dataset.feature = name;
    label.append(caption, field);
    box.append(label);
  }
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const row = {};
    for (const field of box.querySelectorAll("[data-feature]")) {
      const v = field.value.trim();
      row[field.dataset.feature] = v === "" ? null : (field.tagName === "SELECT" ? v : Number(v));
    }
    predict(jsonBody([row]), null, async () => [row]);
  });
  form.addEventListener("reset", () => { latestRequest += 1; lastInput = null; hideExplanation(); clearResults(); });
}

async function main() {
  try {
    const card = await api("v1/model");
    showCard(card);
    $("explain-toggle").addEventListener("change", (e) => { if (e.target.checked) explain(); else hideExplanation(); });
    if (card.kind === "recommendation") setUpRecommend(card);  // recommend.js: catalogue search, picks, top-k
    else if (card.kind === "image") setUpImage(card);
    else if (card.kind === "audio") setUpAudio(card);  // audio.js: file drop and the record button
    else if (card.kind === "text") setUpText();
    else setUpTabular(card.input || {});
    if (window.danluExtras) window.danluExtras(card, api);  // samples and the draw canvas (extras.js)
  } catch (error) {
    $("model-name").textContent = "Model unavailable";
    showError(error);
  }
}

main();
