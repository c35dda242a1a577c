// swapline web page: pick inputs, preview the swap as options change, run jobs and follow them.
// Plain ES module, no build step and nothing fetched from outside this server.

import { authHeaders, withToken } from "./token.js";

const $ = (id) => document.getElementById(id);

const PREVIEW_DELAY_MS = 300;
const ACTIVE = new Set(["queued", "running"]);
const EVENT_TYPES = ["started", "progress", "warning", "done", "failed", "cancelled"];
// model states (swapline.models.store) whose model can run now; others are listed but disabled
const AT_HAND = new Set(["verified", "original only", "at hand, unverified", "built in", "ready"]);
// the models the occlusion and region masks use by default (SwapConfig.face_occluder_model / face_parser_model)
const MASK_MODELS = { occlusion: "xseg", region: "bisenet_resnet_18" };

const state = {
  sources: [],          // upload records: {id, kind, name, width, height, frames, size}
  target: null,         // upload record
  faces: [],            // [{position, box: [x, y, w, h], score}]
  referencePosition: 0,
  uploading: { source: false, target: false },
  jobs: new Map(),      // job id -> {record, row, es}
  names: new Map(),     // upload id -> file name (to label job rows)
};

// ------------------------------------------------------------------ errors: one line in the alert area
let errorOrigin = null;

function showError(message, origin = "general") {
  const line = String(message || "something went wrong").split("\n")[0];
  $("error-text").textContent = line;
  $("error").hidden = false;
  errorOrigin = origin;
}

function clearError(origin) {
  if (origin === undefined || origin === errorOrigin) {
    $("error").hidden = true;
    $("error-text").textContent = "";
    errorOrigin = null;
  }
}

class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

function detailText(body, status, statusText) {
  if (status === 401) return "this server needs its access token: open the page as …/?token=YOUR_TOKEN";
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail) && detail.length) {
    // FastAPI's validation errors: [{loc: [...], msg}]
    return detail.map((d) => `${(d.loc || []).slice(-1)[0] ?? "request"}: ${d.msg}`).join("; ");
  }
  return `request failed: ${status} ${statusText || ""}`.trim();
}

async function api(path, { method = "GET", json, signal } = {}) {
  const init = { method, signal, headers: { ...authHeaders() } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("cannot reach the swapline server (is `swapline serve` still running?)", 0);
  }
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(detailText(body, response.status, response.statusText), response.status);
  }
  return response;
}

// ------------------------------------------------------------------ uploads with progress
function uploadFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/uploads");
    for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => {
      if (e.lengthComputable) onProgress(e.loaded, e.total);
    });
    xhr.upload.addEventListener("load", () => onProgress(file.size, file.size, true));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300 && xhr.response && xhr.response.id) {
        resolve(xhr.response);
      } else {
        reject(new ApiError(`${file.name}: ${detailText(xhr.response, xhr.status, xhr.statusText)}`, xhr.status));
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError(`${file.name}: upload failed (connection lost)`, 0)));
    xhr.addEventListener("abort", () => reject(new ApiError(`${file.name}: upload cancelled`, 0)));
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

function formatBytes(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${Math.round(n / 1e3)} kB`;
  return `${n} B`;
}

// Uploads files one after the other, showing one bar for all of them.
async function uploadAll(files, which) {
  const box = $(`${which}-upload`);
  const bar = $(`${which}-progress`);
  const text = $(`${which}-upload-text`);
  const total = files.reduce((s, f) => s + f.size, 0) || 1;
  let before = 0;
  state.uploading[which] = true;
  updateStart();
  box.hidden = false;
  bar.value = 0;
  const records = [];
  try {
    for (const file of files) {
      text.textContent = `uploading ${file.name}…`;
      const record = await uploadFile(file, (loaded, size, finished) => {
        bar.value = Math.min(1, (before + loaded) / total);
        const pct = Math.round(bar.value * 100);
        text.textContent = finished
          ? `checking ${file.name}…`
          : `uploading ${file.name}… ${pct} % of ${formatBytes(total)}`;
      });
      before += file.size;
      state.names.set(record.id, record.name || file.name);
      records.push(record);
    }
    clearError("upload");
  } catch (err) {
    showError(err.message, "upload");
  } finally {
    box.hidden = true;
    state.uploading[which] = false;
    updateStart();
  }
  return records;
}

// ------------------------------------------------------------------ sources
function thumbUrl(record) {
  return withToken(`/uploads/${encodeURIComponent(record.id)}/thumbnail`);
}

function renderSources() {
  const list = $("source-thumbs");
  list.replaceChildren();
  for (const record of state.sources) {
    const li = document.createElement("li");
    const img = document.createElement("img");
    img.src = thumbUrl(record);
    img.alt = `Source: ${record.name}`;
    img.title = `${record.name} — ${record.width}×${record.height}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `Remove source ${record.name}`);
    remove.addEventListener("click", () => {
      state.sources = state.sources.filter((s) => s !== record);
      renderSources();
      inputsChanged();
    });
    li.append(img, remove);
    list.append(li);
  }
}

$("source-input").addEventListener("change", async (e) => {
  const files = Array.from(e.target.files || []);
  if (!files.length) return;
  const records = await uploadAll(files, "source");
  e.target.value = "";
  const videos = records.filter((r) => r.kind !== "image");
  if (videos.length) showError(`${videos[0].name}: a source must be a photo`, "upload");
  const photos = records.filter((r) => r.kind === "image");
  if (!photos.length) return;
  state.sources.push(...photos);
  renderSources();
  inputsChanged();
});

// ------------------------------------------------------------------ target and its faces
$("target-input").addEventListener("change", async (e) => {
  const files = Array.from(e.target.files || []).slice(0, 1);
  if (!files.length) return;
  const [record] = await uploadAll(files, "target");
  e.target.value = "";
  if (!record) return;
  setTarget(record);
});

function setTarget(record) {
  state.target = record;
  state.faces = [];
  state.referencePosition = 0;
  $("target-box").hidden = false;
  $("target-thumb").src = thumbUrl(record);
  $("target-thumb").alt = `Target: ${record.name}`;
  const isVideo = record.kind === "video";
  const size = `${record.width}×${record.height}`;
  const frames = isVideo && Number.isFinite(record.frames) && record.frames > 0 ? record.frames : 0;
  $("target-meta").textContent = isVideo
    ? `${record.name} — video, ${size}, ${frames ? `${frames} frames` : "frame count unknown"}`
    : `${record.name} — photo, ${size}`;
  $("video-options").hidden = !isVideo;
  if (isVideo) {
    $("trim_start").value = 0;
    $("trim_end").value = "";
    $("preview_frame").value = 0;
    $("preview-frame-value").textContent = "0";
    if (frames) {
      $("trim_start").max = frames - 1;
      $("trim_end").max = frames;
      $("preview_frame").max = frames - 1;
      $("frame-count").textContent = `The video has ${frames} frames (0 to ${frames - 1}); the end frame is not included.`;
    } else {
      for (const id of ["trim_start", "trim_end"]) $(id).removeAttribute("max");
      $("preview_frame").max = 0;
      $("frame-count").textContent = "The video's frame count is not known; the end frame is not included.";
    }
  }
  renderFaces();
  loadFaces();
  inputsChanged();
}

let facesController = null;

async function loadFaces() {
  if (!state.target) return;
  facesController?.abort();
  const controller = (facesController = new AbortController());
  $("faces-hint").textContent = "looking for faces…";
  const options = encodeURIComponent(JSON.stringify(readOptions({ forFaces: true })));
  try {
    const response = await api(`/uploads/${encodeURIComponent(state.target.id)}/faces?frame=0&options=${options}`,
      { signal: controller.signal });
    const body = await response.json();
    if (controller !== facesController) return;
    state.faces = Array.isArray(body) ? body : body.faces || [];
    if (state.referencePosition >= state.faces.length) state.referencePosition = 0;
    renderFaces();
    clearError("faces");
  } catch (err) {
    if (err.name === "AbortError") return;
    $("faces-hint").textContent = "";
    showError(err.message, "faces");
  }
}

function renderFaces() {
  const layer = $("target-faces");
  layer.replaceChildren();
  const t = state.target;
  if (!t) return;
  const mode = $("face_selector_mode").value;
  state.faces.forEach((face, i) => {
    const position = face.position ?? i;
    const [x, y, w, h] = face.box;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "face";
    button.style.left = `${(100 * x) / t.width}%`;
    button.style.top = `${(100 * y) / t.height}%`;
    button.style.width = `${(100 * w) / t.width}%`;
    button.style.height = `${(100 * h) / t.height}%`;
    const chosen = mode === "reference" && position === state.referencePosition;
    const swapped = chosen || mode === "many" || (mode === "one" && i === 0);
    button.classList.toggle("chosen", chosen);
    button.classList.toggle("swapped", swapped);
    button.setAttribute("aria-pressed", String(chosen));
    const score = typeof face.score === "number" ? ` (score ${face.score.toFixed(2)})` : "";
    button.setAttribute("aria-label", `Face ${position + 1}${score}: use as the reference face`);
    button.dataset.testid = "face";
    button.dataset.position = String(position);
    const tag = document.createElement("span");
    tag.textContent = String(position + 1);
    button.append(tag);
    button.addEventListener("click", () => {
      $("face_selector_mode").value = "reference";
      state.referencePosition = position;
      renderFaces();
      optionsChanged();
    });
    layer.append(button);
  });
  const n = state.faces.length;
  let hint;
  if (!n) hint = t.kind === "video"
    ? "No face found in the first frame; faces that appear later are still swapped."
    : "No face found: the target would be copied through unchanged.";
  else if (mode === "reference") hint = `${n} face${n > 1 ? "s" : ""} found; face ${state.referencePosition + 1} is the reference${n > 1 ? " (click another to change)" : ""}.`;
  else if (mode === "many") hint = `${n} face${n > 1 ? "s" : ""} found; all are swapped.`;
  else hint = `${n} face${n > 1 ? "s" : ""} found; the first in the chosen order is swapped.`;
  $("faces-hint").textContent = hint;
}

// ------------------------------------------------------------------ options
const form = $("options");

function readOptions({ forFaces = false } = {}) {
  const options = {
    face_selector_mode: $("face_selector_mode").value,
    reference_face_position: state.referencePosition,
    face_selector_order: $("face_selector_order").value,
    face_detector_score: Number($("face_detector_score").value),
  };
  if (forFaces) return options;
  Object.assign(options, {
    face_swapper_model: $("face_swapper_model").value || "builtin",
    face_mask_types: Array.from(form.querySelectorAll('input[name="face_mask_types"]:checked'), (c) => c.value),
    color_match: $("color_match").value,
    blend: $("blend").value,
    relight: Number($("relight").value),
    light_match: Number($("light_match").value),
    source_validity: $("source_validity").checked,
    face_parsing: $("face_parsing").checked,
    keep_occluders: $("keep_occluders").checked,
    expression: $("expression").value,
    face_shape_weight: Number($("face_shape_weight").value),
    face_mask_blur: Number($("face_mask_blur").value),
    detail_match: $("detail_match").checked,
  });
  if (options.face_mask_types.includes("region")) {
    options.face_mask_regions = Array.from(form.querySelectorAll('input[name="face_mask_regions"]:checked'), (c) => c.value);
  }
  const enhancer = $("face_enhancer_model").value;
  if (enhancer) options.face_enhancer_model = enhancer;
  if (state.target && state.target.kind === "video") {
    const start = parseInt($("trim_start").value, 10);
    const end = parseInt($("trim_end").value, 10);
    if (Number.isFinite(start) && start > 0) options.trim_start = start;
    if (Number.isFinite(end)) options.trim_end = end;
  }
  return options;
}

// One line describing what is wrong with the options, or null.
function optionsProblem(options) {
  if (!options.face_mask_types.length) return "choose at least one mask";
  if (options.face_mask_regions && !options.face_mask_regions.length) return "choose at least one face region for the region mask";
  if (state.target && state.target.kind === "video") {
    const frames = state.target.frames || 0;
    const start = options.trim_start ?? 0;
    if (start < 0 || (frames && start >= frames)) return `trim start must be between 0 and ${frames - 1}`;
    if (options.trim_end !== undefined) {
      if (options.trim_end <= start) return "trim end must come after trim start";
      if (frames && options.trim_end > frames) return `trim end must be at most ${frames} (the frame count)`;
    }
  }
  return null;
}

function showRangeValue(input) {
  const out = $(`${input.id}-value`);
  if (!out) return;
  const step = input.step || "1";
  const decimals = step.includes(".") ? Math.max(2, step.split(".")[1].length) : 0;
  out.textContent = Number(input.value).toFixed(decimals);
}

form.addEventListener("submit", (e) => e.preventDefault());
form.addEventListener("input", (e) => {
  if (e.target.type === "range") showRangeValue(e.target);
  if (e.target.id === "preview_frame") return; // handled below
  if (e.target.type === "range" || e.target.type === "number") optionsChanged(e.target);
});
form.addEventListener("change", (e) => {
  if (e.target.id === "preview_frame") return;
  if (e.target.type !== "range" && e.target.type !== "number") optionsChanged(e.target);
});
$("preview_frame").addEventListener("input", (e) => {
  $("preview-frame-value").textContent = e.target.value;
  schedulePreview();
});

function optionsChanged(control) {
  if (control && control.id === "mask_region") $("regions").hidden = !control.checked;
  if (control && ["face_selector_mode"].includes(control.id)) renderFaces();
  if (control && ["face_selector_order", "face_detector_score"].includes(control.id)) loadFaces();
  schedulePreview();
}

function inputsChanged() {
  updateStart();
  schedulePreview();
}

// ------------------------------------------------------------------ models
const isAtHand = (row) => AT_HAND.has(String(row.state ?? "").toLowerCase());

async function loadModels() {
  let rows;
  try {
    const body = await (await api("/models")).json();
    rows = Array.isArray(body) ? body : body.models || [];
  } catch (err) {
    showError(`model list: ${err.message}`, "models");
    return;
  }
  const fill = (select, role, keepFirst) => {
    const current = select.value;
    select.replaceChildren(keepFirst);
    const ofRole = rows.filter((row) => (row.role ?? row.kind) === role && row.name !== "builtin");
    ofRole.sort((a, b) => Number(isAtHand(b)) - Number(isAtHand(a))); // at hand first, catalogue order kept
    for (const row of ofRole) {
      const option = document.createElement("option");
      option.value = row.name;
      const atHand = isAtHand(row);
      option.disabled = !atHand;
      const licence = row.licence ? ` · ${row.licence}` : "";
      option.textContent = atHand ? `${row.name}${licence}` : `${row.name} — ${row.state || "not at hand"}`;
      select.append(option);
    }
    if ([...select.options].some((o) => o.value === current && !o.disabled)) select.value = current;
  };
  // the occlusion and region masks need a model: say so, and disable them when it is not at hand
  for (const [mask, model] of Object.entries(MASK_MODELS)) {
    const row = rows.find((r) => r.name === model);
    const box = form.querySelector(`input[name="face_mask_types"][value="${mask}"]`);
    if (!row || !box) continue;
    // a model swapline can fetch (and check) is fetched on first use: usable too
    const atHand = isAtHand(row) || row.downloadable === true;
    box.disabled = !atHand && !box.checked;
    const label = box.parentElement;
    label.title = atHand ? `uses the ${model} model${isAtHand(row) ? "" : " (fetched on first use)"}`
      : `needs the ${model} model (${row.state})`;
    let note = label.querySelector(".mask-note");
    if (!note) {
      note = document.createElement("span");
      note.className = "hint mask-note";
      label.append(note);
    }
    note.textContent = atHand ? "" : ` (needs ${model})`;
  }
  const builtin = new Option("built-in (no weights)", "builtin");
  fill($("face_swapper_model"), "swapper", builtin);
  fill($("face_enhancer_model"), "enhancer", new Option("none", ""));
}

// ------------------------------------------------------------------ preview
let previewTimer = null;
let previewController = null;
let previewCount = 0;

const canPreview = () => state.sources.length > 0 && state.target !== null;

function schedulePreview() {
  clearTimeout(previewTimer);
  if (!canPreview()) return;
  previewController?.abort(); // stale: the inputs it was asked for have changed
  previewController = null;
  $("preview-status").textContent = "waiting…";
  previewTimer = setTimeout(renderPreview, PREVIEW_DELAY_MS);
}

async function renderPreview() {
  if (!canPreview()) return;
  const options = readOptions();
  const problem = optionsProblem(options);
  if (problem) {
    showError(problem, "options");
    $("preview-status").textContent = "";
    return;
  }
  clearError("options");
  previewController?.abort();
  const controller = (previewController = new AbortController());
  const frame = state.target.kind === "video" ? parseInt($("preview_frame").value, 10) || 0 : 0;
  const request = {
    sources: state.sources.map((s) => s.id),
    target: state.target.id,
    options,
    frame,
  };
  $("preview-box").setAttribute("aria-busy", "true");
  $("preview-status").textContent = "rendering…";
  const started = performance.now();
  try {
    const response = await api("/preview", { method: "POST", json: request, signal: controller.signal });
    const blob = await response.blob();
    if (controller !== previewController) return;
    const img = $("preview");
    const old = img.src;
    img.src = URL.createObjectURL(blob);
    img.hidden = false;
    img.dataset.rev = String(++previewCount);
    $("preview-placeholder").hidden = true;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    const ms = Math.round(performance.now() - started);
    $("preview-status").textContent = `frame ${frame} rendered in ${ms} ms`;
    clearError("preview");
  } catch (err) {
    if (err.name === "AbortError") return;
    if (controller !== previewController) return;
    $("preview-status").textContent = "preview failed";
    showError(err.message, "preview");
  } finally {
    if (controller === previewController) {
      $("preview-box").setAttribute("aria-busy", "false");
      previewController = null;
    }
  }
}

// ------------------------------------------------------------------ jobs
function updateStart() {
  const busy = state.uploading.source || state.uploading.target;
  $("start").disabled = busy || !canPreview();
}

$("start").addEventListener("click", async () => {
  if (!canPreview()) return;
  const options = readOptions();
  const problem = optionsProblem(options);
  if (problem) {
    showError(problem, "options");
    return;
  }
  const button = $("start");
  button.disabled = true;
  try {
    const response = await api("/jobs", {
      method: "POST",
      json: { sources: state.sources.map((s) => s.id), target: state.target.id, options },
    });
    const record = await response.json();
    record.target_name = state.target.name;
    record.target_upload = state.target.id;
    upsertJob(record, { prepend: true });
    clearError("jobs");
  } catch (err) {
    showError(err.message, "jobs");
  } finally {
    updateStart();
  }
});

function formatDuration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${m}:${ss}`;
}

// The upload id a job's target came from (the server keeps uploads as …/uploads/<id>/file.ext).
function targetUploadId(record) {
  if (record.target_upload) return record.target_upload;
  const path = record.job && record.job.target;
  const match = typeof path === "string" && /[\\/]uploads[\\/]([0-9A-Za-z_-]+)[\\/][^\\/]+$/.exec(path);
  return match ? match[1] : null;
}

const pendingNames = new Set();

// Asks once for the display name of an upload a job names (after a page reload).
async function lookUpName(uploadId) {
  if (!uploadId || state.names.has(uploadId) || pendingNames.has(uploadId)) return;
  pendingNames.add(uploadId);
  try {
    const upload = await (await api(`/uploads/${encodeURIComponent(uploadId)}`)).json();
    state.names.set(uploadId, upload.name);
    for (const job of state.jobs.values()) {
      if (targetUploadId(job.record) === uploadId) renderJob(job);
    }
  } catch {
    state.names.set(uploadId, null); // gone: the job keeps its plain label
  }
}

function jobLabel(record) {
  const uploadId = targetUploadId(record);
  const name = record.target_name || (uploadId && state.names.get(uploadId));
  if (name) return name;
  lookUpName(uploadId);
  const created = record.created ? new Date(record.created * 1000) : null;
  const when = created && !Number.isNaN(created.getTime()) ? ` (${created.toLocaleString()})` : "";
  return `job ${String(record.id).slice(0, 8)}${when}`;
}

function makeRow(record) {
  const li = document.createElement("li");
  li.className = "job";
  li.dataset.testid = "job-row";
  li.dataset.jobId = record.id;
  li.innerHTML = `
    <div class="job-head">
      <img class="job-thumb" alt="" hidden>
      <span class="job-name"></span>
      <span class="badge" data-testid="job-state"></span>
    </div>
    <progress data-testid="job-progress" max="1" value="0"></progress>
    <div class="job-foot">
      <span class="job-stats"></span>
      <span class="job-actions">
        <a class="button" data-testid="download" download hidden>Download</a>
        <button type="button" data-testid="cancel" class="danger" hidden>Cancel</button>
        <button type="button" data-testid="remove" class="link" hidden>Remove</button>
      </span>
    </div>
    <p class="job-message" hidden></p>`;
  li.querySelector('[data-testid="cancel"]').addEventListener("click", () => deleteJob(record.id, "cancel"));
  li.querySelector('[data-testid="remove"]').addEventListener("click", () => deleteJob(record.id, "remove"));
  return li;
}

function renderJob(job) {
  const r = job.record;
  const row = job.row;
  const name = jobLabel(r);
  row.dataset.state = r.state;
  row.querySelector(".job-name").textContent = name;
  const uploadId = targetUploadId(r);
  const thumb = row.querySelector(".job-thumb");
  if (uploadId && !thumb.dataset.upload) {
    thumb.dataset.upload = uploadId;
    thumb.addEventListener("load", () => { thumb.hidden = false; }, { once: true });
    thumb.src = withToken(`/uploads/${encodeURIComponent(uploadId)}/thumbnail`);
  }
  const badge = row.querySelector('[data-testid="job-state"]');
  badge.textContent = r.state;
  badge.className = `badge state-${r.state}`;
  const bar = row.querySelector("progress");
  let fraction = Number.isFinite(r.fraction) ? r.fraction : (r.total ? r.done / r.total : 0);
  if (r.state === "done") fraction = 1;
  bar.value = Math.max(0, Math.min(1, fraction || 0));
  bar.setAttribute("aria-label", `Progress of ${name}`);
  const stats = [];
  if (r.total) stats.push(`${r.done ?? 0} / ${r.total} frame${r.total === 1 ? "" : "s"}`);
  stats.push(`${Math.round(bar.value * 100)} %`);
  const fps = Number.isFinite(job.fps) ? job.fps : r.fps;
  const eta = Number.isFinite(job.eta) ? job.eta : r.eta_s;
  if (r.state === "running" && Number.isFinite(fps) && fps > 0) stats.push(`${fps.toFixed(1)} fps`);
  if (r.state === "running" && Number.isFinite(eta) && eta >= 0) stats.push(`${formatDuration(eta)} left`);
  row.querySelector(".job-stats").textContent = stats.join(" · ");
  const download = row.querySelector('[data-testid="download"]');
  download.hidden = r.state !== "done";
  if (r.state === "done") download.href = withToken(`/jobs/${encodeURIComponent(r.id)}/output`);
  download.setAttribute("aria-label", `Download the result of ${name}`);
  const cancel = row.querySelector('[data-testid="cancel"]');
  cancel.hidden = !ACTIVE.has(r.state);
  cancel.setAttribute("aria-label", `Cancel ${name}`);
  const remove = row.querySelector('[data-testid="remove"]');
  remove.hidden = ACTIVE.has(r.state);
  remove.setAttribute("aria-label", `Remove ${name} from the list`);
  const message = row.querySelector(".job-message");
  const text = r.state === "failed" ? (r.error || "failed") : (job.warning || "");
  message.textContent = text;
  message.hidden = !text;
  message.className = `job-message${r.state === "failed" ? " failed" : ""}`;
  $("jobs-empty").hidden = state.jobs.size > 0;
}

function upsertJob(record, { prepend = false } = {}) {
  let job = state.jobs.get(record.id);
  if (!job) {
    job = { record, row: makeRow(record), es: null, fps: NaN, eta: NaN, warning: "" };
    state.jobs.set(record.id, job);
    const list = $("job-list");
    if (prepend) list.prepend(job.row);
    else list.append(job.row);
  } else {
    job.record = { ...job.record, ...record };
  }
  renderJob(job);
  if (ACTIVE.has(job.record.state)) follow(job);
  else unfollow(job);
  return job;
}

function follow(job) {
  if (job.es) return;
  const es = new EventSource(withToken(`/jobs/${encodeURIComponent(job.record.id)}/events`));
  job.es = es;
  for (const type of EVENT_TYPES) {
    es.addEventListener(type, (ev) => onJobEvent(job, type, ev));
  }
  es.addEventListener("message", (ev) => onJobEvent(job, "progress", ev));
  es.addEventListener("error", () => {
    // The browser reconnects by itself (sending Last-Event-ID); when it gives up, ask for the record.
    if (es.readyState === EventSource.CLOSED) {
      job.es = null;
      setTimeout(() => refreshJob(job.record.id), 1000);
    }
  });
}

function unfollow(job) {
  if (job.es) {
    job.es.close();
    job.es = null;
  }
}

function onJobEvent(job, type, ev) {
  let data = {};
  try { data = JSON.parse(ev.data || "{}"); } catch { /* keep-alive or plain text */ }
  const r = job.record;
  if (Number.isFinite(data.done)) r.done = data.done;
  if (Number.isFinite(data.total)) r.total = data.total;
  if (Number.isFinite(data.fps)) job.fps = data.fps;
  if (data.eta_s === null || Number.isFinite(data.eta_s)) job.eta = data.eta_s ?? NaN;
  if (Number.isFinite(data.fraction)) r.fraction = data.fraction;
  else if (r.total) r.fraction = r.done / r.total;
  switch (type) {
    case "started":
    case "progress":
      if (data.state && typeof data.state === "string") r.state = data.state;
      else r.state = "running";
      break;
    case "warning":
      job.warning = data.message || "";
      break;
    case "done":
      r.state = "done";
      r.fraction = 1;
      break;
    case "failed":
      r.state = "failed";
      r.error = data.message || data.error || r.error || "failed";
      showError(`${jobLabel(r)}: ${r.error}`, `job-${r.id}`);
      break;
    case "cancelled":
      r.state = "cancelled";
      break;
    default:
      break;
  }
  renderJob(job);
  if (!ACTIVE.has(r.state)) {
    unfollow(job);
    refreshJob(r.id);
  }
}

async function refreshJob(id) {
  try {
    const record = await (await api(`/jobs/${encodeURIComponent(id)}`)).json();
    const job = state.jobs.get(id);
    if (job) upsertJob(record);
  } catch (err) {
    if (err.status === 404) dropJob(id);
  }
}

function dropJob(id) {
  const job = state.jobs.get(id);
  if (!job) return;
  unfollow(job);
  job.row.remove();
  state.jobs.delete(id);
  $("jobs-empty").hidden = state.jobs.size > 0;
}

async function deleteJob(id, what) {
  try {
    const response = await api(`/jobs/${encodeURIComponent(id)}`, { method: "DELETE" });
    if (what === "remove") {
      dropJob(id);
    } else {
      let record = null;
      try { record = await response.json(); } catch { /* 204 */ }
      if (record && record.id) upsertJob(record);
      else refreshJob(id);
    }
    clearError(`job-${id}`);
  } catch (err) {
    if (err.status === 404) dropJob(id);
    else showError(err.message, "jobs");
  }
}

async function loadJobs() {
  try {
    const body = await (await api("/jobs")).json();
    const jobs = Array.isArray(body) ? body : body.jobs || [];
    for (const record of jobs) upsertJob(record);
  } catch (err) {
    showError(`job list: ${err.message}`, "jobs");
  }
  $("jobs-empty").hidden = state.jobs.size > 0;
}

// ------------------------------------------------------------------ start
$("error-close").addEventListener("click", () => clearError());
for (const input of form.querySelectorAll('input[type="range"]')) showRangeValue(input);
loadModels();
loadJobs();
updateStart();
