// The status page: renders the snapshot it was served with (the #snapshot
// data block), then each one the daemon sends over server-sent events. The
// moment the feed drops (an error, the stream closed, or no event nor
// heartbeat for WATCHDOG_MS) everything shown is marked stale, until a
// reconnected stream brings a fresh snapshot. Every string from the daemon
// goes into the page as text (textContent, attributes), never as HTML.
"use strict";

const HEARTBEAT_MS = 5000;
const WATCHDOG_MS = 2.5 * HEARTBEAT_MS;
const SUBSCRIBE_URL = `/api/sensord/v1/status/subscribe?heartbeat=${HEARTBEAT_MS}`;
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
  // state: the sensor's last reported state; null when it is warm and unarmed (idle).
  fill("devices", "no-devices", devices.map((d) => row(
    {"data-device-id": d.deviceId, "data-status": d.status, "data-state": d.state ?? "Idle"},
    [el("img", {"class": "icon", "src": d.iconUrl, "alt": d.interfaceType, "title": d.interfaceType,
                "width": 24, "height": 24}),
     d.name, d.modelName, d.sensor ?? "none", d.status, d.state ?? "Idle",
     d.battery === null ? "mains" : `${Math.round(d.battery)} %`])));
}

// A session's worklist binding: "bound", "unmatched" (it names a step the worklist
// does not have, with the reason) or "none" (it names none, or no worklist).
function binding(s) {
  const w = s.worklist;
  if (!w) return ["none", ""];
  if (w.bound) return ["bound", `bound · ${w.accessionNumber ?? w.scheduledProcedureStepId}`];
  if (w.accessionNumber || w.scheduledProcedureStepId) return ["unmatched", `not matched: ${w.reason}`];
  return ["none", ""];
}

function renderSessions(sessions, devices) {
  const names = new Map(devices.map((d) => [d.deviceId, d.name]));
  fill("sessions", "no-sessions", sessions.map((s) => {
    const [bound, text] = binding(s);
    return row(
      {"data-session-id": s.sessionId, "data-device-id": s.deviceId, "data-state": s.state,
       "data-ready": s.ready, "data-images": s.totalImages, "data-worklist": bound},
      [shortId(s.sessionId), s.clientName, names.get(s.deviceId) ?? s.deviceId,
       s.ready ? `${s.state} (armed)` : s.state,
       String(s.totalImages), localTime(s.createdOn), text]);
  }));
}

function renderWorklist(worklist) {
  const section = document.getElementById("worklist");
  section.hidden = !worklist || !worklist.configured;
  if (section.hidden) return;
  section.dataset.error = worklist.error ? "yes" : "no";
  const state = document.getElementById("worklist-state");
  const shown = worklist.items.length < worklist.count ? ` (the first ${worklist.items.length} shown)` : "";
  const count = worklist.answered ? `${worklist.count} scheduled today${shown}` : "no answer yet";
  state.textContent = `${worklist.peer}: ${count}` +
    (worklist.error ? ` · does not answer: ${worklist.error}` : "");
  state.className = worklist.error ? "error" : "";
  fill("worklist-items", "no-worklist-items", worklist.items.map((i) => row(
    {"data-accession": i.accessionNumber, "data-step-id": i.scheduledProcedureStepId},
    [i.scheduledStart.slice(11, 16) || i.scheduledStart, i.patientName, i.patientId, i.accessionNumber,
     [i.scheduledProcedureStepId, i.scheduledProcedureStepDescription].filter(Boolean).join(" · "),
     i.requestedProcedureDescription])));
  if (!worklist.answered) document.getElementById("no-worklist-items").hidden = true;
}

function renderImages(images) {
  const box = document.getElementById("thumbnails");
  // Keep the figures already shown: their images stay loaded.
  const shown = new Map([...box.children].map((fig) => [fig.dataset.imageId, fig]));
  // A thumbnail opens the full image, windowed (/view/...).
  box.replaceChildren(...images.map((image) => shown.get(image.imageId) || el("figure",
    {"data-image-id": image.imageId, "data-session-id": image.sessionId},
    el("a", {"href": image.viewUrl, "title": "open the full image"},
       el("img", {"src": image.previewUrl, "alt": `image ${image.imageId}`, "data-image-id": image.imageId})),
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
  renderTargets(outbox.targets || []);
}

function age(iso) {
  const seconds = Math.max(0, Math.floor((Date.now() - new Date(iso)) / 1000));
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.floor(seconds / 60)} min`;
  return `${Math.floor(seconds / 3600)} h ${Math.floor(seconds / 60) % 60} min`;
}

// One row per forward target: its entries by state, how long the oldest one
// not yet delivered has waited, and the last error the target gave.
function renderTargets(targets) {
  fill("targets", "no-targets", targets.map((t) => {
    const n = (state) => String(t.counts[state] || 0);
    const error = t.lastError;
    const health = t.counts.dead ? "dead" : error && t.counts.pending ? "failing" : "ok";
    return row(
      {"data-target": t.name, "data-health": health, "data-pending": t.counts.pending || 0,
       "data-dead": t.counts.dead || 0, "data-delivered": t.counts.delivered || 0,
       "class": health === "ok" ? "" : health === "dead" ? "dead" : "waiting"},
      [t.configured ? t.name : `${t.name} (no longer configured)`, t.kind ?? "",
       n("pending"), n("committing"), n("delivered"), n("dead"),
       el("span", {"class": "age", "data-since": t.oldestPending}, t.oldestPending ? age(t.oldestPending) : ""),
       error ? `${error.message} (${localTime(error.at)}, entry ${error.entryId})` : ""]);
  }));
}

function tickTargets() {
  for (const span of document.querySelectorAll("#targets .age[data-since]")) {
    span.textContent = age(span.dataset.since);
  }
}

// The MPPS messages (null when [mpps] is off): waiting, held behind a failed one, dead.
function renderMpps(mpps) {
  const node = document.getElementById("mpps-counts");
  node.hidden = !mpps;
  if (!mpps) return;
  const counts = Object.entries(mpps.counts);
  node.dataset.dead = mpps.counts.dead || 0;
  node.textContent = "MPPS messages: " + (counts.length ? counts.map(([s, n]) => `${s}: ${n}`).join(", ") : "none");
}

function render(snapshot) {
  document.getElementById("service").textContent = snapshot.service;
  document.getElementById("host").textContent = `on ${snapshot.host}`;
  document.getElementById("version").textContent = `version ${snapshot.version}`;
  document.title = `${snapshot.service} on ${snapshot.host}`;
  startedOn = new Date(snapshot.startedOn);
  renderDevices(snapshot.devices);
  renderSessions(snapshot.sessions, snapshot.devices);
  renderWorklist(snapshot.worklist);
  renderImages(snapshot.images);
  renderOutbox(snapshot.outbox);
  renderMpps(snapshot.mpps);
  tick();
}

function tick() {
  // Stale: the uptime and the ages stay as they were when the feed dropped.
  if (!startedOn || document.body.dataset.live === "stale") return;
  const seconds = Math.max(0, Math.floor((Date.now() - startedOn) / 1000));
  const [d, h, m, s] = [Math.floor(seconds / 86400), Math.floor(seconds / 3600) % 24,
                        Math.floor(seconds / 60) % 60, seconds % 60];
  document.getElementById("uptime").textContent =
    `· up ${d ? d + "d " : ""}${h}h ${String(m).padStart(2, "0")}m ${String(s).padStart(2, "0")}s`;
  tickTargets();
}

function connection(state) {
  const node = document.getElementById("connection");
  node.dataset.state = state;
  node.textContent = state;
}

// Live: the page shows the daemon as it is. Stale: the feed dropped at
// `since`; what is shown is the last the daemon said, greyed under a banner.
function live() {
  connection("connected");
  document.body.dataset.live = "live";
  document.getElementById("stale-banner").hidden = true;
}

function stale(since) {
  connection("disconnected");
  if (document.body.dataset.live === "stale") return;     // stale since the first drop
  document.body.dataset.live = "stale";
  document.body.dataset.drops = Number(document.body.dataset.drops || 0) + 1;
  const banner = document.getElementById("stale-banner");
  banner.textContent = `Not live since ${since.toLocaleTimeString()}: the daemon does not answer. ` +
    "Everything below is as it was then; the page reconnects by itself.";
  banner.hidden = false;
}

let source = null;
let watchdog = null;
let lastHeard = new Date();     // the last moment the daemon was heard from (the page's load, then events)

function connect() {
  // A stream that errs is closed here and a new one started a little later:
  // EventSource would retry by itself only after some errors, and the page
  // must count as live again only once a fresh snapshot came.
  source = new EventSource(SUBSCRIBE_URL);
  const mine = source;
  const drop = () => {
    if (source !== mine) return;      // this stream was dropped already
    source = null;
    mine.close();
    clearTimeout(watchdog);
    stale(lastHeard);
    setTimeout(connect, 2000);
  };
  // Every event, the heartbeats too, proves the stream alive; silence past
  // WATCHDOG_MS (a daemon hung, a connection half open) is a drop.
  const alive = () => {
    lastHeard = new Date();
    clearTimeout(watchdog);
    watchdog = setTimeout(drop, WATCHDOG_MS);
  };
  source.onopen = alive;
  source.onerror = drop;
  source.addEventListener("heartbeat", alive);
  source.addEventListener("status", (event) => {
    alive();
    live();
    render(JSON.parse(event.data));
  });
}

// The snapshot served with the page: the tables are filled before the feed's first event.
const served = JSON.parse(document.getElementById("snapshot").textContent);
if (served) render(served);
setInterval(tick, 1000);
connect();
