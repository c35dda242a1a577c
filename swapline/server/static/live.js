// swapline live page: the camera goes to the server over WebRTC and comes back swapped.
// Plain ES module, no build step and nothing fetched from outside this server. No STUN server:
// the peer connection uses this machine's own addresses only.

import { authHeaders, withToken } from "./token.js";

const $ = (id) => document.getElementById(id);

const STATS_EVERY_MS = 1000;
const OPTIONS_DELAY_MS = 150;
const GATHER_TIMEOUT_MS = 3000;

// the camera size picked (applies at the next start)
function cameraConstraints() {
  const [width, height] = $("camera_size").value.split("x").map(Number);
  return { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } };
}

const state = {
  source: null,        // upload record {id, name, ...}
  sessionId: null,
  pc: null,
  stream: null,
  statsTimer: null,
  statsInFlight: null, // the stats request under way (stop waits for it, so it never asks after the end)
  optionsTimer: null,
  starting: false,
  browserFrames: null, // {frames, at}: the last inbound-rtp framesDecoded reading
};

// ------------------------------------------------------------------ errors: one line in the alert area
function showError(message) {
  $("live-error-text").textContent = String(message || "something went wrong").split("\n")[0];
  $("live-error").hidden = false;
}

function clearError() {
  $("live-error").hidden = true;
  $("live-error-text").textContent = "";
}

function detailText(body, status, statusText) {
  if (status === 401) return "this server needs its access token: open the page as …/live?token=YOUR_TOKEN";
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    return detail.map((d) => `${(d.loc || []).slice(-1)[0] ?? "request"}: ${d.msg}`).join("; ");
  }
  return `request failed: ${status} ${statusText || ""}`.trim();
}

async function api(path, { method = "GET", json, body, keepalive = false } = {}) {
  const init = { method, keepalive, headers: { ...authHeaders() } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new Error("cannot reach the swapline server (is `swapline serve` still running?)");
  }
  if (!response.ok) {
    let data = null;
    try { data = await response.json(); } catch { /* not JSON */ }
    const error = new Error(detailText(data, response.status, response.statusText));
    error.status = response.status;
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

// ------------------------------------------------------------------ the source photo
async function pickSource(file) {
  clearError();
  $("source-state").textContent = `uploading ${file.name}…`;
  const form = new FormData();
  form.append("file", file, file.name);
  let upload;
  try {
    upload = await api("/uploads", { method: "POST", body: form });
    if (upload.kind !== "image") throw new Error(`${file.name} is a ${upload.kind}; the source must be a photo`);
  } catch (err) {
    showError(`${file.name}: ${err.message}`);
    describeSource();
    return;
  }
  const previous = state.source;
  state.source = upload;
  if (state.sessionId) {
    try {
      await api(`/live/${state.sessionId}/source`, { method: "POST", json: { source: upload.id } });
    } catch (err) {
      state.source = previous;
      showError(`${file.name}: ${err.message}`);
    }
  }
  describeSource();
}

async function clearSource() {
  state.source = null;
  $("live-source-input").value = "";
  if (state.sessionId) {
    try {
      await api(`/live/${state.sessionId}/source`, { method: "POST", json: { source: null } });
    } catch (err) {
      showError(err.message);
    }
  }
  describeSource();
}

function describeSource() {
  const box = $("source-box");
  if (!state.source) {
    box.hidden = true;
    $("source-thumb").removeAttribute("src");
    $("source-state").textContent = "No source: the camera passes through unchanged.";
    return;
  }
  $("source-thumb").src = withToken(`/uploads/${state.source.id}/thumbnail`);
  $("source-thumb").alt = `Source: ${state.source.name}`;
  box.hidden = false;
  $("source-state").textContent = state.sessionId ? `Swapping in ${state.source.name}.` : `Source: ${state.source.name}.`;
}

// ------------------------------------------------------------------ options
function currentOptions() {
  return {
    face_selector_mode: $("face_selector_mode").value,
    color_match: $("color_match").value,
    relight: Number($("relight").value),
  };
}

function optionsChanged() {
  $("relight-value").textContent = Number($("relight").value).toFixed(2);
  if (!state.sessionId) return;
  clearTimeout(state.optionsTimer);
  state.optionsTimer = setTimeout(async () => {
    if (!state.sessionId) return;
    try {
      await api(`/live/${state.sessionId}/options`, { method: "POST", json: currentOptions() });
    } catch (err) {
      showError(err.message);
    }
  }, OPTIONS_DELAY_MS);
}

// ------------------------------------------------------------------ WebRTC
function preferVp8(transceiver) {
  const caps = window.RTCRtpReceiver && RTCRtpReceiver.getCapabilities && RTCRtpReceiver.getCapabilities("video");
  if (!caps || !transceiver.setCodecPreferences) return;
  const vp8 = caps.codecs.filter((c) => c.mimeType.toLowerCase() === "video/vp8");
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== "video/vp8");
  if (vp8.length) transceiver.setCodecPreferences([...vp8, ...rest]);
}

function gatheringDone(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, GATHER_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function setRunning(running) {
  $("live-start").disabled = running;
  $("live-stop").disabled = !running;
  $("camera_size").disabled = running;
  document.body.dataset.liveSession = running && state.sessionId ? state.sessionId : "";
}

async function start() {
  if (state.starting || state.sessionId) return;
  state.starting = true;
  clearError();
  $("live-start").disabled = true;
  $("live-state").textContent = "Asking for the camera…";
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: cameraConstraints(), audio: false });
  } catch (err) {
    state.starting = false;
    $("live-start").disabled = false;
    $("live-state").textContent = "Stopped.";
    showError(`the camera is not available: ${err.message || err.name}`);
    return;
  }
  $("live-local").srcObject = state.stream;
  try {
    const pc = new RTCPeerConnection({ iceServers: [] });
    state.pc = pc;
    const track = state.stream.getVideoTracks()[0];
    const transceiver = pc.addTransceiver(track, { direction: "sendrecv", streams: [state.stream] });
    preferVp8(transceiver);
    // the swap needs the camera's pixels: under load, send fewer frames rather than smaller ones
    const params = transceiver.sender.getParameters();
    params.degradationPreference = "maintain-resolution";
    await transceiver.sender.setParameters(params).catch(() => {});
    if ("jitterBufferTarget" in transceiver.receiver) transceiver.receiver.jitterBufferTarget = 0;
    pc.addEventListener("track", (event) => {
      $("live-remote").srcObject = event.streams[0] || new MediaStream([event.track]);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== state.pc) return;
      if (pc.connectionState === "connected") $("live-state").textContent = "Live.";
      if (pc.connectionState === "failed") {
        showError("the connection to the server failed");
        stop();
      }
    });
    $("live-state").textContent = "Connecting…";
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringDone(pc);
    const answer = await api("/live/offer", {
      method: "POST",
      json: { sdp: pc.localDescription.sdp, type: pc.localDescription.type,
              source: state.source ? state.source.id : null, options: currentOptions() },
    });
    if (pc !== state.pc) { // stopped meanwhile: end the session the server just opened
      api(`/live/${answer.id}`, { method: "DELETE" }).catch(() => {});
      return;
    }
    state.sessionId = answer.id;
    await pc.setRemoteDescription({ type: answer.type, sdp: answer.sdp });
    setRunning(true);
    describeSource();
    state.statsTimer = setInterval(() => {
      if (state.statsInFlight) return;
      state.statsInFlight = pollStats().finally(() => { state.statsInFlight = null; });
    }, STATS_EVERY_MS);
  } catch (err) {
    showError(err.message || String(err));
    await stop();
  } finally {
    state.starting = false;
  }
}

async function stop() {
  const { sessionId, pc, stream } = state;
  state.sessionId = null;
  state.pc = null;
  state.stream = null;
  state.browserFrames = null;
  clearInterval(state.statsTimer);
  clearTimeout(state.optionsTimer);
  setRunning(false);
  $("live-state").textContent = "Stopping…";
  if (state.statsInFlight) await state.statsInFlight.catch(() => {});
  // the server first (closing the connection first would end the session there by itself)
  if (sessionId) {
    try {
      await api(`/live/${sessionId}`, { method: "DELETE" });
    } catch (err) {
      if (err.status !== 404) showError(err.message);
    }
  }
  if (pc) pc.close();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  $("live-local").srcObject = null;
  $("live-remote").srcObject = null;
  $("live-state").textContent = "Stopped.";
  describeSource();
}

// ------------------------------------------------------------------ figures
const ms = (v) => (v === null || v === undefined ? "–" : `${Math.round(v)} ms`);

async function pollStats() {
  const id = state.sessionId;
  if (!id) return;
  let stats;
  try {
    stats = await api(`/live/${id}/stats`);
  } catch (err) {
    if (err.status === 404 && id === state.sessionId) {
      showError("the live session ended on the server");
      stop();
    }
    return;
  }
  if (id !== state.sessionId) return;
  $("live-fps").textContent = `${(stats.fps ?? 0).toFixed(1)} fps`;
  $("live-latency").textContent = `${ms(stats.latency_p50_ms)} / ${ms(stats.latency_p95_ms)}`;
  $("live-dropped").textContent = `${stats.dropped ?? 0} of ${stats.captured ?? 0}`;
  $("live-swap").textContent = ms(stats.swap_ms);
  await browserFigures();
}

async function browserFigures() {
  const pc = state.pc;
  if (!pc) return;
  const report = await pc.getStats();
  report.forEach((s) => {
    if (s.type !== "inbound-rtp" || s.kind !== "video") return;
    const now = performance.now();
    const last = state.browserFrames;
    state.browserFrames = { frames: s.framesDecoded || 0, at: now };
    const buffer = s.jitterBufferEmittedCount ? (1000 * s.jitterBufferDelay) / s.jitterBufferEmittedCount : null;
    if (last && now > last.at) {
      const fps = (1000 * ((s.framesDecoded || 0) - last.frames)) / (now - last.at);
      $("live-browser").textContent = `${fps.toFixed(1)} fps · buffer ${ms(buffer)}`;
    }
  });
}

// ------------------------------------------------------------------ wiring
$("live-source-input").addEventListener("change", (e) => {
  const file = e.target.files && e.target.files[0];
  if (file) pickSource(file);
});
$("source-clear").addEventListener("click", clearSource);
$("live-options").addEventListener("input", optionsChanged);
$("live-options").addEventListener("change", optionsChanged);
$("live-options").addEventListener("submit", (e) => e.preventDefault());
$("live-start").addEventListener("click", start);
$("live-stop").addEventListener("click", stop);
$("live-error-close").addEventListener("click", clearError);
window.addEventListener("pagehide", () => {
  if (state.sessionId) api(`/live/${state.sessionId}`, { method: "DELETE", keepalive: true }).catch(() => {});
});
if (!window.RTCPeerConnection || !navigator.mediaDevices) {
  $("live-start").disabled = true;
  showError("this browser has no WebRTC or camera access (a page on plain http needs localhost)");
}
