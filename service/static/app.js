// ViewBait studio: creates operations with `Prefer: respond-async`, follows their event
// streams with EventSource and shows what the service says, as it says it.
"use strict";

const EVENT_TYPES = ["operation", "step", "retry", "progress", "result", "error"];
const CURRENT_KEY = "viewbait.current";
const TOKEN_KEY = "viewbait.token";

const $ = (id) => document.getElementById(id);

// The service: this page's own origin, or `?api=<origin>` when the page is served from
// another one (the service then lists this page's origin in CORS_ORIGINS).
const API_BASE = new URL(new URLSearchParams(location.search).get("api") || location.origin);
const apiUrl = (path) => new URL(path, API_BASE).href;

const state = {
  token: null,
  op: null,          // {id, kind, eventsUrl}
  lastId: 0,         // the highest event id applied; older or equal ids are ignored
  es: null,
  finished: false,
  dropped: false,
  manualRetries: 0,
  reconnectTimer: null,
  steps: [],         // planned step keys, in order
  countdownTimer: null,
};

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super(body.error || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || `HTTP_${status}`;
    this.retryable = Boolean(body.retryable);
    this.retryAfter = retryAfter;
  }
}

async function api(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (state.token) init.headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(apiUrl(path), init);
  const text = await response.text();
  let data = {};
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text }; }
  }
  if (!response.ok) {
    const header = response.headers.get("Retry-After");
    const retryAfter = header !== null ? Number(header) : data.retry_after;
    throw new ApiError(response.status, data, Number.isFinite(retryAfter) ? retryAfter : null);
  }
  return { status: response.status, data };
}

// -- account and authentication -------------------------------------------------------

async function authenticate() {
  // Dev mode (no AUTH_JWT_SECRET): the service offers a demo user's token. With a real
  // secret that endpoint does not exist and the page asks for a token instead.
  try {
    const response = await fetch(apiUrl("/v1/dev/token"), { method: "POST" });
    if (response.ok) {
      state.token = (await response.json()).token;
      $("account").dataset.mode = "dev";
      return true;
    }
  } catch { /* the service is unreachable: handled by the account request below */ }
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) {
    state.token = saved;
    return true;
  }
  $("auth-card").hidden = false;
  return false;
}

async function refreshAccount() {
  try {
    const { data } = await api("GET", "/v1/account");
    $("account-user").textContent = data.user_id + ($("account").dataset.mode === "dev" ? " (dev)" : "");
    $("account-tier").textContent = data.tier;
    $("account-credits").textContent = data.credits_remaining;
    $("account").dataset.state = "ready";
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      $("auth-card").hidden = false;
    }
    showError(err);
    return false;
  }
}

// -- notices: errors and rate limits --------------------------------------------------

function showError(err, { status } = {}) {
  const notice = $("notice");
  const code = err.code || "NETWORK_ERROR";
  notice.hidden = false;
  notice.dataset.code = code;
  notice.dataset.kind = code.startsWith("RATE_LIMIT") ? "rate" : "error";
  $("notice-code").textContent = code;
  $("notice-status").textContent = status ?? (err.status ? `HTTP ${err.status}` : "");
  $("notice-message").textContent = err.message || String(err);
  $("resume").hidden = true;
  if (err.retryAfter && (err.status === 429 || err.status === 503)) {
    startCountdown(Math.ceil(err.retryAfter));
  } else {
    stopCountdown();
    $("countdown").hidden = true;
  }
}

function clearNotice() {
  $("notice").hidden = true;
  $("countdown").hidden = true;
  stopCountdown();
}

function startCountdown(seconds) {
  stopCountdown();
  const until = Date.now() + seconds * 1000;
  setCreateEnabled(false);
  $("countdown").hidden = false;
  const tick = () => {
    const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
    $("countdown-seconds").textContent = left;
    if (left === 0) {
      stopCountdown();
      $("countdown").hidden = true;
      $("notice-message").textContent += " You can try again now.";
    }
  };
  tick();
  state.countdownTimer = setInterval(tick, 250);
}

function stopCountdown() {
  if (state.countdownTimer) clearInterval(state.countdownTimer);
  state.countdownTimer = null;
  setCreateEnabled(true);
}

function setCreateEnabled(enabled) {
  for (const button of document.querySelectorAll("button.create, .thumb button")) {
    button.disabled = !enabled;
  }
}

// -- connection state -----------------------------------------------------------------

function setConn(stateName, text) {
  const el = $("conn");
  el.dataset.state = stateName;
  el.textContent = text || stateName;
}

function logConn(message) {
  const li = document.createElement("li");
  li.textContent = `${new Date().toLocaleTimeString()} ${message}`;
  $("conn-log").append(li);
  li.scrollIntoView({ block: "nearest" });
}

// -- the timeline ---------------------------------------------------------------------

function resetRun(op) {
  closeStream();
  state.op = op;
  state.lastId = 0;
  state.finished = false;
  state.dropped = false;
  state.manualRetries = 0;
  state.steps = [];
  $("timeline").replaceChildren();
  $("conn-log").replaceChildren();
  $("op-id").textContent = op.id;
  $("op-kind").textContent = op.kind || "";
  setOpStatus("pending");
  $("cancel").hidden = false;
  updateProgress();
  saveCurrent();
}

function setOpStatus(status) {
  $("op-status").textContent = status;
  $("op-status").dataset.status = status;
}

function stepRow(key) {
  let row = document.querySelector(`#timeline li[data-step="${CSS.escape(key)}"]`);
  if (!row) {
    row = document.createElement("li");
    row.dataset.step = key;
    row.dataset.status = "pending";
    row.innerHTML = '<span class="key"></span><span class="detail"></span><span class="status">pending</span>';
    row.querySelector(".key").textContent = key;
    $("timeline").append(row);
    if (!state.steps.includes(key)) state.steps.push(key);
  }
  return row;
}

function setStep(key, status, detail) {
  const row = stepRow(key);
  row.dataset.status = status;
  row.querySelector(".status").textContent = status;
  if (detail !== undefined) row.querySelector(".detail").textContent = detail;
  updateProgress();
}

function updateProgress() {
  const rows = [...document.querySelectorAll("#timeline li")];
  const done = rows.filter((r) => ["completed", "failed", "skipped"].includes(r.dataset.status));
  const pct = rows.length ? Math.round((100 * done.length) / rows.length) : 0;
  $("progress-bar").style.width = `${pct}%`;
  $("progress-bar").dataset.value = pct;
}

function describeOutput(key, output) {
  if (!output) return "";
  if (output.credits_remaining !== undefined && output.charged !== undefined) {
    return `reserved ${output.charged} credits · ${output.credits_remaining} left`;
  }
  if (output.credits_used !== undefined) {
    return `charged ${output.credits_used} credits · ${output.credits_remaining} left`;
  }
  if (output.width && output.height) return `${output.width}×${output.height} by ${output.provider || "provider"}`;
  if (output.image_400w_key || output.image_400w_url) return "400w and 800w variants";
  if (output.thumbnail_id) return `thumbnail ${output.thumbnail_id.slice(0, 8)}`;
  return "";
}

// -- events ---------------------------------------------------------------------------

function applySnapshot(snapshot) {
  $("op-kind").textContent = snapshot.kind;
  setOpStatus(snapshot.status);
  for (const step of snapshot.steps) {
    const status = step.status === "running" ? "started" : step.status;
    const row = stepRow(step.key);
    if (row.dataset.status === "pending" || step.status !== "pending") {
      setStep(step.key, status, step.attempts ? `attempt ${step.attempts}` : "");
    }
  }
  placeholders(snapshot);
}

function onEvent(type, message) {
  const id = Number(message.lastEventId);
  if (!Number.isFinite(id) || id <= state.lastId) return; // already shown (a replay)
  state.lastId = id;
  saveCurrent();
  const data = JSON.parse(message.data);
  switch (type) {
    case "operation":
      applySnapshot(data.operation);
      setOpStatus("running");
      break;
    case "step": {
      const detail = {
        started: `attempt ${data.attempt}`,
        completed: describeOutput(data.step, data.output) || `attempt ${data.attempt}`,
        failed: data.error ? `${data.error.code}: ${data.error.message}` : `attempt ${data.attempt} failed`,
        skipped: "not run",
      }[data.status];
      setStep(data.step, data.status, detail);
      updatePlaceholder(data.step, data.status, data.output);
      break;
    }
    case "retry":
      setStep(data.step, "retrying",
        `attempt ${data.attempt} failed (${data.error?.code}: ${data.error?.message}); ` +
        `retrying in ${Number(data.delay_s).toFixed(1)} s`);
      break;
    case "progress":
      stepRow(data.step).querySelector(".detail").textContent = `${data.done} / ${data.total}`;
      break;
    case "result":
      finish(data.operation.status);
      showResult(data.operation);
      break;
    case "error":
      finish("failed");
      setOpStatus(data.code === "OPERATION_CANCELLED" ? "cancelled" : "failed");
      showError({ code: data.code, message: data.message, retryAfter: data.retry_after },
        { status: data.retryable ? "retryable" : "not retryable" });
      $("resume").hidden = !data.retryable;
      clearPlaceholders();
      break;
  }
}

function finish(status) {
  state.finished = true;
  setOpStatus(status);
  $("cancel").hidden = true;
  closeStream();
  setConn("closed", "closed · finished");
  logConn(`operation ${status}; stream closed after event ${state.lastId}`);
  updateProgress();
  saveCurrent();
  refreshAccount();
}

// -- the stream -----------------------------------------------------------------------

function withCursor(url, cursor) {
  const u = new URL(url, API_BASE);
  u.searchParams.delete("last_event_id");
  if (cursor > 0) u.searchParams.set("last_event_id", String(cursor));
  return u.href;
}

function connect() {
  closeStream();
  const es = new EventSource(withCursor(state.op.eventsUrl, state.lastId));
  state.es = es;
  setConn(state.lastId ? "reconnecting" : "connecting",
    state.lastId ? `reconnecting after event ${state.lastId}` : "connecting");
  es.onopen = () => {
    if (state.es !== es) return;
    setConn("connected", "connected · live");
    if (state.dropped) logConn(`reconnected; resuming after event ${state.lastId}`);
    else logConn("connected");
    state.dropped = false;
    state.manualRetries = 0;
  };
  es.onerror = (e) => {
    // An `event: error` of the stream (the run's terminal error) reaches this handler
    // too, as a MessageEvent: that is no connection trouble.
    if (e instanceof MessageEvent || state.es !== es || state.finished) return;
    if (!state.dropped) {
      state.dropped = true;
      logConn(`stream dropped after event ${state.lastId}; reconnecting with Last-Event-ID ${state.lastId}`);
    }
    if (es.readyState === EventSource.CONNECTING) {
      setConn("reconnecting", `reconnecting (Last-Event-ID ${state.lastId})`);
      return;
    }
    // The browser gave up (an HTTP error such as an expired link or a 503): retry here.
    closeStream();
    scheduleReconnect();
  };
  for (const type of EVENT_TYPES) {
    es.addEventListener(type, (m) => {
      if (m instanceof MessageEvent) onEvent(type, m);
    });
  }
}

function closeStream() {
  if (state.reconnectTimer) clearTimeout(state.reconnectTimer);
  state.reconnectTimer = null;
  if (state.es) state.es.close();
  state.es = null;
}

function scheduleReconnect() {
  state.manualRetries += 1;
  if (state.manualRetries > 20) {
    setConn("closed", "closed · gave up");
    logConn("could not reconnect; reload the page to try again");
    return;
  }
  const delay = Math.min(10000, 500 * 2 ** Math.min(state.manualRetries, 5));
  setConn("reconnecting", `reconnecting in ${Math.round(delay / 1000)} s (Last-Event-ID ${state.lastId})`);
  state.reconnectTimer = setTimeout(reconnect, delay);
}

async function reconnect() {
  const op = state.op;
  try {
    const { data: snapshot } = await api("GET", `/v1/operations/${op.id}`);
    if (state.op !== op) return;
    if (["succeeded", "partial", "failed", "cancelled"].includes(snapshot.status)) {
      applySnapshot(snapshot);
      showFinished(snapshot);
      return;
    }
    if (state.manualRetries > 1) {
      // The events link may have expired: resume (a no-op for a live run) gives a fresh one.
      const { data } = await api("POST", `/v1/operations/${op.id}/resume`,
        { headers: { Prefer: "respond-async", "Last-Event-ID": String(state.lastId) } });
      state.op.eventsUrl = data.links.events;
      saveCurrent();
    }
    connect();
  } catch (err) {
    if (state.op !== op) return;
    if (err instanceof ApiError && !err.retryable && err.status !== 503) {
      setConn("closed", "closed");
      showError(err);
      return;
    }
    scheduleReconnect();
  }
}

function showFinished(snapshot) {
  if (snapshot.status === "succeeded" || snapshot.status === "partial") {
    finish(snapshot.status);
    showResult(snapshot);
  } else {
    finish(snapshot.status);
    const error = snapshot.error || {};
    showError({ code: error.code, message: error.message },
      { status: error.retryable ? "retryable" : "not retryable" });
    $("resume").hidden = !(snapshot.status === "failed" && error.retryable);
    clearPlaceholders();
  }
}

function saveCurrent() {
  if (!state.op) return;
  sessionStorage.setItem(CURRENT_KEY, JSON.stringify({ ...state.op, lastId: state.lastId,
    finished: state.finished }));
}

// After a reload: show the operation as it is now, then follow it from the last event seen
// (`?last_event_id=`: a new EventSource sends no Last-Event-ID header).
async function restoreCurrent() {
  const saved = JSON.parse(sessionStorage.getItem(CURRENT_KEY) || "null");
  if (!saved) return;
  let snapshot;
  try {
    ({ data: snapshot } = await api("GET", `/v1/operations/${saved.id}`));
  } catch {
    sessionStorage.removeItem(CURRENT_KEY);
    return;
  }
  resetRun({ id: saved.id, kind: snapshot.kind, eventsUrl: saved.eventsUrl });
  applySnapshot(snapshot);
  state.lastId = saved.lastId || 0;
  if (["succeeded", "partial", "failed", "cancelled"].includes(snapshot.status)) {
    showFinished(snapshot);
    return;
  }
  state.dropped = true;
  logConn(`page reloaded; resuming after event ${state.lastId}`);
  connect();
}

// -- creating operations --------------------------------------------------------------

async function create(path, body) {
  clearNotice();
  setCreateEnabled(false);
  try {
    const { data } = await api("POST", path, {
      body, headers: { Prefer: "respond-async", "Idempotency-Key": crypto.randomUUID() },
    });
    resetRun({ id: data.operation_id, kind: "", eventsUrl: data.links.events });
    setOpStatus(data.status);
    connect();
  } catch (err) {
    showError(err);
  } finally {
    if (!state.countdownTimer) setCreateEnabled(true);
  }
}

function formBody(form) {
  const f = new FormData(form);
  const body = {
    title: f.get("title"),
    resolution: f.get("resolution"),
    aspect_ratio: f.get("aspect_ratio"),
    variations: Number(f.get("variations")),
  };
  const text = String(f.get("thumbnail_text") || "").trim();
  if (text) body.thumbnail_text = text;
  return body;
}

// -- results --------------------------------------------------------------------------

function placeholders(snapshot) {
  if (!state.op || snapshot.id !== state.op.id) return;
  if (!snapshot.kind.startsWith("thumbnail.") || snapshot.status === "succeeded") return;
  const groups = new Set();
  for (const step of snapshot.steps) {
    const match = /^(v\d+)\/render$/.exec(step.key);
    if (match) groups.add(match[1]);
    else if (step.key === "render") groups.add("render");
  }
  for (const group of groups) {
    if (document.querySelector(`.thumb[data-op="${snapshot.id}"][data-group="${group}"]`)) continue;
    const figure = document.createElement("figure");
    figure.className = "thumb pending";
    figure.dataset.op = snapshot.id;
    figure.dataset.group = group;
    figure.innerHTML = '<div class="placeholder">queued</div><figcaption></figcaption>';
    figure.querySelector("figcaption").textContent = group === "render" ? "edit" : group;
    $("thumbnails").prepend(figure);
  }
  $("results-empty").hidden = true;
}

function updatePlaceholder(stepKey, status, output) {
  if (!state.op) return;
  const [group, step] = stepKey.includes("/") ? stepKey.split("/") : ["render", stepKey];
  const figure = document.querySelector(`.thumb[data-op="${state.op.id}"][data-group="${group}"]`);
  if (!figure) return;
  const box = figure.querySelector(".placeholder");
  if (output && output.image_400w_url && box) {
    const img = document.createElement("img");
    img.src = apiUrl(output.image_400w_url);
    img.alt = group;
    box.replaceWith(img);
    return;
  }
  if (!box) return;
  const words = { render: "rendering", variants: "resizing", record: "saving" };
  if (status === "started") box.textContent = `${words[step] || step}…`;
  else if (status === "completed") box.textContent = step === "record" ? "ready" : `${step} done`;
  else box.textContent = status;
}

function clearPlaceholders() {
  if (!state.op) return;
  for (const el of document.querySelectorAll(`.thumb.pending[data-op="${state.op.id}"]`)) el.remove();
}

function showResult(snapshot) {
  clearPlaceholders();
  const result = snapshot.result || {};
  for (const thumb of (result.thumbnails || []).slice().reverse()) addThumbnail(thumb, snapshot.kind);
  if (result.heatmap_url) {
    const div = extra(`Heatmap · ${snapshot.id.slice(0, 8)}`);
    const img = document.createElement("img");
    img.src = apiUrl(result.heatmap_url);
    img.alt = "attention heatmap";
    img.className = "heatmap";
    div.append(img);
  }
  if (result.analytics) {
    const div = extra(`Video analysis · ${snapshot.id.slice(0, 8)}`);
    const dl = document.createElement("dl");
    for (const [name, value] of Object.entries(result.analytics)) {
      const dt = document.createElement("dt");
      dt.textContent = name.replaceAll("_", " ");
      const dd = document.createElement("dd");
      dd.textContent = Array.isArray(value) ? value.map(describeNamed).join("; ") : String(value);
      dl.append(dt, dd);
    }
    div.append(dl);
  }
  if (result.credits_remaining !== undefined) $("account-credits").textContent = result.credits_remaining;
  $("results-empty").hidden = true;
}

// A character or place of a video analysis: "name (part: what happens, …)".
function describeNamed(item) {
  if (typeof item !== "object" || item === null) return String(item);
  const scenes = (item.scenes || []).map((scene) => `${scene.part}: ${scene.description}`);
  return scenes.length ? `${item.name} (${scenes.join(", ")})` : String(item.name);
}

function extra(title) {
  const div = document.createElement("div");
  div.className = "extra";
  const h = document.createElement("h3");
  h.textContent = title;
  div.append(h);
  $("extras").prepend(div);
  return div;
}

function addThumbnail(thumb, kind) {
  if (document.querySelector(`.thumb[data-id="${thumb.id}"]`)) return;
  const figure = document.createElement("figure");
  figure.className = "thumb";
  figure.dataset.id = thumb.id;
  const img = document.createElement("img");
  img.src = apiUrl(thumb.image_400w_url);
  img.alt = `thumbnail ${thumb.id}`;
  img.addEventListener("click", () => openLightbox(apiUrl(thumb.image_url)));
  const caption = document.createElement("figcaption");
  caption.append(`${thumb.width}×${thumb.height}${kind === "thumbnail.edit" ? " · edit" : ""}`);
  const edit = document.createElement("button");
  edit.textContent = "Edit";
  edit.className = "edit";
  edit.addEventListener("click", () => {
    const prompt = window.prompt("Describe the edit (≤ 500 characters)");
    if (prompt) create(`/v1/thumbnails/${thumb.id}/edits`, { prompt });
  });
  const heatmap = document.createElement("button");
  heatmap.textContent = "Heatmap";
  heatmap.className = "heatmap";
  heatmap.addEventListener("click", () => create("/v1/heatmaps", { thumbnail_id: thumb.id }));
  const full = document.createElement("a");
  full.href = apiUrl(thumb.image_url);
  full.target = "_blank";
  full.textContent = "full size";
  caption.append(edit, heatmap, full);
  figure.append(img, caption);
  $("thumbnails").prepend(figure);
}

function openLightbox(url) {
  $("lightbox-img").src = url;
  $("lightbox").showModal();
}

// -- wiring ---------------------------------------------------------------------------

async function start() {
  $("generate-form").addEventListener("submit", (e) => {
    e.preventDefault();
    create("/v1/thumbnails", formBody(e.target));
  });
  $("video-form").addEventListener("submit", (e) => {
    e.preventDefault();
    create("/v1/videos/analyses", { video: $("video").value.trim() });
  });
  $("token-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    state.token = $("token-input").value.trim();
    if (await refreshAccount()) {
      sessionStorage.setItem(TOKEN_KEY, state.token);
      $("auth-card").hidden = true;
      clearNotice();
      document.body.dataset.ready = "true";
      await restoreCurrent();
    }
  });
  $("cancel").addEventListener("click", async () => {
    try {
      await api("POST", `/v1/operations/${state.op.id}/cancel`);
      logConn("cancel requested");
    } catch (err) { showError(err); }
  });
  $("resume").addEventListener("click", async () => {
    const op = state.op;
    clearNotice();
    try {
      const { data } = await api("POST", `/v1/operations/${op.id}/resume`,
        { headers: { Prefer: "respond-async" } });
      state.finished = false;
      state.dropped = false;
      state.op.eventsUrl = data.links.events;
      $("cancel").hidden = false;
      logConn("resumed");
      connect();
    } catch (err) { showError(err); }
  });
  $("lightbox").addEventListener("click", (e) => {
    if (e.target === $("lightbox")) $("lightbox").close();
  });
  if (await authenticate() && await refreshAccount()) {
    document.body.dataset.ready = "true";
    await restoreCurrent();
  }
}

start();
