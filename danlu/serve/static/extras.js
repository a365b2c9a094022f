"use strict";
// Test-set samples one click away and, for small grayscale image models, a canvas to draw on. Both feed
// the page's own inputs (the file input, the text box), so they are predicted exactly like an upload.
function dataUrlToFile(url, name) {
  const [head, data] = url.split(",");
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return new File([bytes], name, { type: head.slice(5).split(";")[0] || "image/png" });
}

function feedImage(url, name) {
  const input = document.getElementById("file");
  const dt = new DataTransfer();
  dt.items.add(dataUrlToFile(url, name));
  input.files = dt.files;
  input.dispatchEvent(new Event("change"));
}

window.danluExtras = async function (card, api) {
  const box = document.getElementById(card.kind === "image" ? "image-input" : card.kind === "text" ? "text-input" : "");
  if (!box) return;
  if (card.kind === "image" && danluDrawable(card.kind, (card.input || {}).shape)) {
    danluDraw(box, (url) => feedImage(url, "drawing.png"));
  }
  let samples = [];
  try { samples = (await api("v1/samples")).samples; } catch { return; }
  danluSamples(box, samples, card.kind, (s) => {
    if (card.kind === "image") feedImage(s.input, `${s.name}.png`);
    else { document.getElementById("text").value = s.input; box.requestSubmit(); }
  });
};
