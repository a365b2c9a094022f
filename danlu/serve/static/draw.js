"use strict";
// The draw-a-digit canvas and the test-sample buttons, shared by `danlu serve`'s page and the studio's "try it".
// A drawing is sent as a PNG like an uploaded file, so the server preprocesses it exactly as training did
// (grayscale, resized to the model's input, normalized with the training statistics). White on black, as MNIST.
window.danluDraw = function (container, onImage) {
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = 280;
  canvas.className = "draw";
  canvas.id = "draw-canvas";
  canvas.setAttribute("aria-label", "draw a digit here");
  const ctx = canvas.getContext("2d");
  const clear = () => { ctx.fillStyle = "#000"; ctx.fillRect(0, 0, 280, 280); };
  clear();
  let down = false, last = null;
  const at = e => { const r = canvas.getBoundingClientRect(); return [(e.clientX - r.left) * 280 / r.width, (e.clientY - r.top) * 280 / r.height]; };
  canvas.addEventListener("pointerdown", e => { down = true; last = at(e); canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener("pointermove", e => {
    if (!down) return;
    const p = at(e);
    ctx.strokeStyle = "#fff"; ctx.lineWidth = 22; ctx.lineCap = "round"; ctx.lineJoin = "round";
    ctx.beginPath(); ctx.moveTo(last[0], last[1]); ctx.lineTo(p[0], p[1]); ctx.stroke();
    last = p;
  });
  const up = () => { if (down) { down = false; onImage(canvas.toDataURL("image/png"), "drawing"); } };
  canvas.addEventListener("pointerup", up);
  canvas.addEventListener("pointerleave", up);
  const reset = document.createElement("button");
  reset.type = "button"; reset.id = "draw-clear"; reset.textContent = "Clear drawing";
  reset.addEventListener("click", clear);
  const box = document.createElement("div");
  box.className = "draw-box";
  const hint = document.createElement("p");
  hint.className = "muted small"; hint.textContent = "Draw a digit (release to predict)";
  box.append(hint, canvas, document.createElement("br"), reset);
  container.appendChild(box);
  return canvas;
};

// Buttons for test-set samples: samples = [{name, input}] as the server's samples route gives them.
window.danluSamples = function (container, samples, kind, onPick) {
  const box = document.createElement("div");
  box.className = "samples";
  box.id = "samples";
  for (const s of samples) {
    const b = document.createElement("button");
    b.type = "button"; b.className = "sample"; b.title = s.name;
    if (kind === "image") {
      const img = document.createElement("img"); img.src = s.input; img.alt = s.name; b.appendChild(img);
    } else {
      b.textContent = kind === "text" ? String(s.input).slice(0, 40) : s.name;
    }
    b.addEventListener("click", () => onPick(s));
    box.appendChild(b);
  }
  if (samples.length) {
    const p = document.createElement("p"); p.className = "muted small"; p.textContent = "Or try a test-set sample:";
    container.append(p, box);
  }
};

// A small grayscale image model (MNIST-like): the canvas is offered for these.
window.danluDrawable = function (kind, shape) {
  return kind === "image" && Array.isArray(shape) && shape[0] === 1 && shape[1] <= 64 && shape[2] <= 64;
};
