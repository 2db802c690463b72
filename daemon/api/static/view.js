// The view of one full image: the daemon renders it as a JPEG windowed on
// the server (/api/sensord/v1/sessions/{sid}/images/{iid}/jpeg); the sliders
// and inputs set the window's center and width and ask for it again. One
// request at a time: while one loads, only the latest setting waits.
"use strict";

const image = JSON.parse(document.getElementById("image").textContent);
const img = document.getElementById("full");
const inputs = {
  center: [document.getElementById("center-range"), document.getElementById("center")],
  width: [document.getElementById("width-range"), document.getElementById("width")],
};
let loading = false;
let wanted = null;

function clamp(value, low, high) {
  return Math.min(high, Math.max(low, value));
}

function windowUrl(w) {
  const query = new URLSearchParams({center: String(w.center), width: String(w.width), size: String(image.size)});
  return `${image.jpegUrl}?${query}`;
}

function load() {
  if (loading || wanted === null) return;
  const w = wanted;
  wanted = null;
  loading = true;
  document.getElementById("loading").hidden = false;
  img.onload = () => {
    img.dataset.center = w.center;
    img.dataset.width = w.width;
    img.dataset.loads = Number(img.dataset.loads || 0) + 1;
    document.getElementById("view-error").hidden = true;
    done();
  };
  img.onerror = () => {
    const error = document.getElementById("view-error");
    error.textContent = "The image could not be loaded (its session may have ended, or the daemon is busy).";
    error.hidden = false;
    done();
  };
  img.src = windowUrl(w);
}

function done() {
  loading = false;
  document.getElementById("loading").hidden = wanted === null;
  load();
}

// Grays as typed, or as the image's own window says (a half gray at times).
function gray(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}

function setWindow(w, from) {
  const center = clamp(w.center, 0, image.grayMax);
  const width = clamp(w.width, 1, image.grayMax + 1);
  for (const [name, value] of [["center", center], ["width", width]]) {
    for (const input of inputs[name]) {
      if (input !== from) input.value = String(value);
    }
  }
  document.getElementById("caption").textContent =
    `window center ${gray(center)}, width ${gray(width)} (grays ${gray(center - width / 2)} to ${gray(center + width / 2)})`;
  wanted = {center, width};
  load();
}

function current(from) {
  return {center: Number(inputs.center[from].value), width: Number(inputs.width[from].value)};
}

for (const [name, pair] of Object.entries(inputs)) {
  const [range, number] = pair;
  range.min = name === "center" ? "0" : "1";
  range.max = String(name === "center" ? image.grayMax : image.grayMax + 1);
  range.addEventListener("input", () => setWindow(current(0), range));
  number.addEventListener("change", () => {
    if (number.value !== "" && Number.isFinite(Number(number.value))) setWindow(current(1), number);
  });
}
document.getElementById("window").addEventListener("submit", (event) => event.preventDefault());
document.getElementById("reset").addEventListener("click", () => setWindow(image.window, null));

document.getElementById("title").textContent = `image ${image.imageId.slice(0, 8)}`;
document.title = `sensord image ${image.imageId.slice(0, 8)}`;
document.getElementById("meta").textContent =
  `session ${image.sessionId.slice(0, 8)} · ${image.clientName ?? ""} · ${image.width}x${image.height}` +
  (image.createdOn ? ` · ${new Date(image.createdOn).toLocaleString()}` : "") +
  (image.lutApplied ? " · display LUT applied" : "");
setWindow(image.window, null);
