"use strict";
// An explanation drawn (the JSON answer of `danlu serve`'s POST /v1/explain, and of the studio's
// /api/runs/NAME/explain): the heat map over the image, the tokens shaded by sign and strength, or signed
// bars for a table row's strongest columns. Shared by the serve page's "Why?" toggle and the studio's "try it".
(function () {
  const METHOD_NAMES = { gradcam: "Grad-CAM", guided_gradcam: "Guided Grad-CAM", ig: "Integrated gradients",
    occlusion: "Occlusion", saliency: "Saliency", shap: "KernelSHAP" };
  const ABOUT = { gradcam: "where the last convolution looked",
    guided_gradcam: "the pixels behind what the last convolution looked at",
    ig: "what moved the output away from an empty input", shap: "each column's share, by KernelSHAP",
    occlusion: "how much the answer dropped with each part removed" };

  function shade(score, scale) {
    // green pushes toward the explained label, red away; stronger is more opaque
    const s = scale > 0 ? Math.min(1, Math.abs(score) / scale) : 0;
    return score >= 0 ? `rgba(42, 157, 75, ${0.08 + 0.6 * s})` : `rgba(209, 73, 91, ${0.08 + 0.6 * s})`;
  }

  function caption(row) {
    const t = row.target || {};
    const value = t.probability !== undefined ? `${(t.probability * 100).toFixed(1)}%` :
      (t.value !== undefined && t.value !== null ? Number(t.value).toPrecision(4) : "");
    let text = `${METHOD_NAMES[row.method] || row.method} · explaining ${t.label} ${value}`;
    if (row.convergence_delta !== undefined) text += ` · completeness error ${(row.completeness_error * 100).toFixed(1)}%`;
    if (row.warning) text += ` · ${row.warning}`;
    return text;
  }

  function tokenView(pairs) {
    const p = document.createElement("p");
    p.className = "tokens";
    if (pairs.some(([t]) => t.length > 1 && /^[\x00-\x7f]+$/.test(t))) p.classList.add("spaced");
    const scale = Math.max(0, ...pairs.map(([, s]) => Math.abs(s)));
    for (const [token, score] of pairs) {
      const span = document.createElement("span");
      span.className = "token";
      span.textContent = token;
      span.title = score.toFixed(4);
      span.dataset.score = String(score);
      span.style.backgroundColor = shade(score, scale);
      p.append(span);
    }
    return p;
  }

  function featureView(pairs, shown = 12) {
    const list = document.createElement("ol");
    list.className = "attributions";
    const strongest = [...pairs].sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, shown);
    const scale = Math.max(0, ...strongest.map(([, s]) => Math.abs(s)));
    for (const [name, score] of strongest) {
      const li = document.createElement("li");
      li.className = `attribution ${score >= 0 ? "for" : "against"}`;
      const label = document.createElement("span");
      label.className = "name";
      label.textContent = name;
      label.title = name;
      const axis = document.createElement("div");
      axis.className = "axis";
      const push = document.createElement("div");
      push.className = "push";
      push.style.width = `${scale > 0 ? (Math.abs(score) / scale) * 50 : 0}%`;
      axis.append(push);
      const value = document.createElement("span");
      value.className = "score";
      value.textContent = score.toPrecision(3);
      li.append(label, axis, value);
      list.append(li);
    }
    return list;
  }

  // { status: a line naming the method, items: one <figure> per explained input }
  window.danluExplanation = function (result, names) {
    const status = `${METHOD_NAMES[result.method] || result.method}: ${ABOUT[result.method] || "attributions"}`;
    const items = result.explanations.map((row, i) => {
      const item = document.createElement("figure");
      item.className = "explain-item";
      if (row.heatmap_png) {
        const img = document.createElement("img");
        img.className = row.map && row.map.bands_hz ? "heatmap spectral" : "heatmap";  // sound: a drawn figure
        img.alt = `heat map for ${names ? names[i] : `input ${i + 1}`}`;
        img.src = `data:image/png;base64,${row.heatmap_png}`;
        item.append(img);
      } else if (row.tokens) {
        item.append(tokenView(row.tokens));
      } else if (row.features) {
        item.append(featureView(row.features));
      }
      const cap = document.createElement("figcaption");
      cap.textContent = (names && result.explanations.length > 1 ? `${names[i]}: ` : "") + caption(row);
      item.append(cap);
      return item;
    });
    return { status, items };
  };
})();
