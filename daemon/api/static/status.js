// The status page: renders each snapshot the daemon sends over server-sent
// events. Every string from the daemon goes into the page as text
// (textContent, attributes), never as HTML.
"use strict";

const SUBSCRIBE_URL = "/api/sensord/v1/status/subscribe";
let startedOn = null;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function row(attrs, cells) {
  return el("tr", attrs, ...cells.map((cell) => el("td", {}, cell)));
}

function shortId(id) {
  return String(id).slice(0, 8);
}

function localTime(iso) {
  const when = new Date(iso);
  return isNaN(when) ? "" : when.toLocaleTimeString();
}

function fill(tableId, emptyId, rows) {
  const table = document.getElementById(tableId);
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = rows.length === 0;
  document.getElementById(emptyId).hidden = rows.length > 0;
}

function renderDevices(devices) {
  fill("devices", "no-devices", devices.map((d) => row(
    {"data-device-id": d.deviceId, "data-status": d.status, "data-state": d.state ?? ""},
    [d.name, d.modelName, d.sensor ?? "none", d.status, d.state ?? "idle",
     d.battery === null ? "mains" : `${Math.round(d.battery)} %`])));
}

function renderSessions(sessions, devices) {
  const names = new Map(devices.map((d) => [d.deviceId, d.name]));
  fill("sessions", "no-sessions", sessions.map((s) => row(
    {"data-session-id": s.sessionId, "data-device-id": s.deviceId, "data-state": s.state,
     "data-ready": s.ready, "data-images": s.totalImages},
    [shortId(s.sessionId), s.clientName, names.get(s.deviceId) ?? s.deviceId,
     s.ready ? `${s.state} (armed)` : s.state,
     String(s.totalImages), localTime(s.createdOn)])));
}

function renderImages(images) {
  const box = document.getElementById("thumbnails");
  // Keep the figures already shown: their images stay loaded.
  const shown = new Map([...box.children].map((fig) => [fig.dataset.imageId, fig]));
  box.replaceChildren(...images.map((image) => shown.get(image.imageId) || el("figure",
    {"data-image-id": image.imageId, "data-session-id": image.sessionId},
    el("img", {"src": image.previewUrl, "alt": `image ${image.imageId}`, "data-image-id": image.imageId}),
    el("figcaption", {}, `${shortId(image.sessionId)} · ${localTime(image.createdOn)}`))));
  document.getElementById("no-images").hidden = images.length > 0;
}

function renderOutbox(outbox) {
  const counts = Object.entries(outbox.counts);
  const pending = outbox.counts.pending || 0;
  const counter = document.getElementById("outbox-counts");
  counter.textContent = counts.length
    ? `${pending} waiting · ` + counts.map(([state, n]) => `${state}: ${n}`).join(", ")
    : "empty";
  document.getElementById("outbox").dataset.pending = pending;
  fill("failures", "no-failures", outbox.failures.map((f) => row(
    {"data-entry-id": f.id, "data-state": f.state, "class": f.state === "dead" ? "dead" : "waiting"},
    [String(f.id), f.target, shortId(f.imageId), f.state, String(f.attempts), f.lastError ?? "",
     localTime(f.updatedOn)])));
}

function render(snapshot) {
  document.getElementById("service").textContent = snapshot.service;
  document.getElementById("host").textContent = `on ${snapshot.host}`;
  document.getElementById("version").textContent = `version ${snapshot.version}`;
  document.title = `${snapshot.service} on ${snapshot.host}`;
  startedOn = new Date(snapshot.startedOn);
  renderDevices(snapshot.devices);
  renderSessions(snapshot.sessions, snapshot.devices);
  renderImages(snapshot.images);
  renderOutbox(snapshot.outbox);
  tick();
}

function tick() {
  if (!startedOn) return;
  const seconds = Math.max(0, Math.floor((Date.now() - startedOn) / 1000));
  const [d, h, m, s] = [Math.floor(seconds / 86400), Math.floor(seconds / 3600) % 24,
                        Math.floor(seconds / 60) % 60, seconds % 60];
  document.getElementById("uptime").textContent =
    `· up ${d ? d + "d " : ""}${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s`;
}

function connection(state) {
  const node = document.getElementById("connection");
  node.dataset.state = state;
  node.textContent = state;
}

function connect() {
  // EventSource reconnects by itself after a dropped connection; after an
  // error answer (503: too many streams, or the daemon is stopping) it gives
  // up, so we start a new one a little later.
  const source = new EventSource(SUBSCRIBE_URL);
  source.onopen = () => connection("connected");
  source.onerror = () => {
    connection("disconnected");
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 5000);
  };
  source.addEventListener("status", (event) => {
    connection("connected");
    render(JSON.parse(event.data));
  });
}

setInterval(tick, 1000);
connect();
