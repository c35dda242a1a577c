"""The browser loop of the ``/live`` page, driven for tests and benchmarks.

A clip becomes a Y4M file whose every frame carries its number as black and white blocks
(:mod:`swapline.live.framecode`, in the bottom-left corner, outside the face); Chromium plays it
as a fake camera. The page sends the camera to ``swapline serve`` over WebRTC and shows what
comes back. A probe injected into the page reads the code of every frame the two ``<video>``
elements present (``requestVideoFrameCallback``): a frame's latency is the time the swapped
stream shows a code minus the time the camera preview showed the same code, both taken the same
way in the same page (so the browser's own display delay cancels out). The probe also counts the
distinct frames that come back, the codes that go backwards, and keeps a few full frames.

:func:`drive` runs one server and one browser through a list of phases and returns plain
figures; run it inside a private network namespace (``unshare -n`` with loopback up; see
:func:`in_namespace`) so nothing can leave the machine. As a script
(``python tests/live_harness.py CONFIG.json RESULT.json``) it does the same in a child process.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.netns import isolated, namespace_available

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from swapline.live.framecode import stamp_code  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking flags Chromium keeps calling home, which floods a closed network
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    # a fake camera fed from a file, allowed without asking; WebRTC over loopback with plain addresses
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]
PAD_GREY = 110

# The probe: reads the frame code (swapline.live.framecode's layout) of every presented frame of
# #live-local and #live-remote. Exposed as window.__liveProbe.
PROBE_JS = r"""
(() => {
  const BITS = 16, COLUMNS = 48;
  function cells(w, h) {
    const b = w / COLUMNS, out = [];
    for (let row = 0; row < 2; row++) {
      const y0 = h - (3 - row) * b;
      for (let bit = 0; bit < BITS; bit++) {
        const x0 = (1 + bit) * b;
        out.push([row, Math.round(y0), Math.round(y0 + b), Math.round(x0), Math.round(x0 + b)]);
      }
    }
    return out;
  }
  function readCode(ctx, w, h) {
    const b = w / COLUMNS, top = Math.max(0, Math.floor(h - 3 * b) - 1), bottom = Math.min(h, Math.ceil(h - b) + 1);
    // ctx holds only the code's strip (rows top..bottom of the frame, see strip())
    const data = ctx.getImageData(0, 0, Math.ceil((BITS + 2) * b), bottom - top);
    const rows = [[], []];
    for (const [row, y0, y1, x0, x1] of cells(w, h)) {
      const dy = Math.max(1, Math.floor((y1 - y0) / 4)), dx = Math.max(1, Math.floor((x1 - x0) / 4));
      let sum = 0, n = 0;
      for (let y = y0 + dy; y < y1 - dy; y++) {
        for (let x = x0 + dx; x < x1 - dx; x++) {
          const i = ((y - top) * data.width + x) * 4;
          sum += (data.data[i] + data.data[i + 1] + data.data[i + 2]) / 3;
          n++;
        }
      }
      const level = sum / Math.max(1, n);
      if (level > 80 && level < 175) return null;
      rows[row].push(level >= 128 ? 1 : 0);
    }
    let value = 0;
    for (let i = 0; i < BITS; i++) {
      if (rows[0][i] === rows[1][i]) return null;
      value = value * 2 + rows[0][i];
    }
    return value;
  }
  const probe = {
    local: new Map(),      // code -> when the camera preview last showed it
    events: [],            // remote frames: [code, shown at, latency ms or null]
    remoteFrames: 0, localFrames: 0, unreadable: 0, backwards: 0, lastRemote: null,
    snaps: [], wantSnaps: 0, loop: 216,
    generation: 0,         // each start() arms new watchers; older ones stop
  };
  function strip(w, h) {  // the frame's rows and columns that hold the code: [top, width, height]
    const b = w / COLUMNS, top = Math.max(0, Math.floor(h - 3 * b) - 1), bottom = Math.min(h, Math.ceil(h - b) + 1);
    return [top, Math.min(w, Math.ceil((BITS + 2) * b)), bottom - top];
  }
  function watch(video, role, generation) {
    if (!video.requestVideoFrameCallback) return;
    // only the code's strip is read back each frame: a whole frame's readback costs the browser
    // the CPU the page it measures needs (the full frame is drawn only for a snapshot)
    const canvas = document.createElement("canvas");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const step = (now, meta) => {
      if (generation !== probe.generation) return;
      const w = video.videoWidth, h = video.videoHeight;
      if (w && h) {
        const [top, sw, sh] = strip(w, h);
        if (canvas.width !== sw || canvas.height !== sh) { canvas.width = sw; canvas.height = sh; }
        // a snapshot and its code must come from one drawing of the video (it may move on between two)
        const full = role === "remote" && probe.wantSnaps > 0 ? document.createElement("canvas") : null;
        if (full) {
          full.width = w; full.height = h;
          full.getContext("2d").drawImage(video, 0, 0, w, h);
        }
        ctx.drawImage(full || video, 0, top, sw, sh, 0, 0, sw, sh);
        const code = readCode(ctx, w, h);
        const at = meta.expectedDisplayTime || now;
        if (code === null) {
          if (role === "remote") probe.unreadable++;
        } else if (role === "local") {
          probe.local.set(code, at);
          probe.localFrames++;
        } else if (code !== probe.lastRemote) {
          const last = probe.lastRemote;
          if (last !== null) {
            const step = (code - last + probe.loop) % probe.loop;
            if (step > probe.loop / 2) probe.backwards++;
          }
          probe.lastRemote = code;
          probe.remoteFrames++;
          const sent = probe.local.get(code);
          const latency = sent !== undefined && at >= sent && at - sent < 3000 ? at - sent : null;
          probe.events.push([code, at, latency]);
          if (full && latency !== null) {
            probe.wantSnaps--;
            probe.snaps.push({ code, png: full.toDataURL("image/png") });
          }
        }
      }
      video.requestVideoFrameCallback(step);
    };
    video.requestVideoFrameCallback(step);
  }
  probe.start = (loop) => {  // after each start of the camera (a video's pending callbacks may be gone)
    probe.loop = loop;
    probe.generation++;
    probe.lastRemote = null;
    watch(document.getElementById("live-local"), "local", probe.generation);
    watch(document.getElementById("live-remote"), "remote", probe.generation);
  };
  probe.reset = (clearLocal) => {
    if (clearLocal) probe.local.clear();
    probe.events = []; probe.remoteFrames = 0; probe.localFrames = 0; probe.unreadable = 0;
    probe.backwards = 0; probe.snaps = []; probe.wantSnaps = 0;
  };
  window.__liveProbe = probe;
})();
"""


# ------------------------------------------------------------------------------------ the camera


def make_y4m(clip: Path, out: Path, *, size: tuple[int, int] = (640, 480), frames: int | None = None,
             fps: int = 30, keep: list[np.ndarray] | None = None) -> int:
    """Write ``clip`` as a Y4M camera file of ``size`` (the clip scaled to the height, against
    the right edge, padded with grey on the left so the code in the bottom-left corner stays
    clear of the face), every frame stamped with its number. Returns the number of frames;
    ``keep`` receives them (BGR) as written, to compare with what comes back."""
    import av

    width, height = size
    count = 0
    with av.open(str(clip)) as container, out.open("wb") as fh:
        fh.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for index, frame in enumerate(container.decode(video=0)):
            if frames is not None and index >= frames:
                break
            image = frame.to_ndarray(format="bgr24")
            scale = height / image.shape[0]
            image = cv2.resize(image, (round(image.shape[1] * scale), height), interpolation=cv2.INTER_AREA)
            canvas = np.full((height, width, 3), PAD_GREY, np.uint8)
            x0 = max(0, width - image.shape[1])
            canvas[:, x0:x0 + min(width, image.shape[1])] = image[:, :width]
            stamp_code(canvas, index)
            if keep is not None:
                keep.append(canvas)
            count += 1
            fh.write(b"FRAME\n")
            fh.write(cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes())
    return count


# ------------------------------------------------------------------------------------ the server


@contextmanager
def serve(data_dir: Path, log: Path, model_home: Path | None, *, test_hooks: bool = True) -> Iterator[str]:
    """``python -m swapline serve --port 0`` on loopback; yields its URL; stops it after."""
    env = {k: v for k, v in os.environ.items() if k != "SWAPLINE_DEBUG"}
    if model_home is not None:
        env["SWAPLINE_HOME"] = str(model_home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if test_hooks:
        env["SWAPLINE_TEST_HOOKS"] = "1"
    with log.open("ab") as err:
        proc = subprocess.Popen([sys.executable, "-m", "swapline", "serve", "--port", "0", "--data-dir", str(data_dir)],
                                stdout=subprocess.PIPE, stderr=err, cwd=REPO, env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("swapline serve: http://"):
            raise RuntimeError(f"the server did not start: {line!r}; log: {log.read_text(errors='replace')[-3000:]}")
        yield line.split(": ", 1)[1].rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ------------------------------------------------------------------------------------ the phases


@dataclass
class Phase:
    """One run of the page: start the camera, measure ``seconds``, stop.

    Attributes:
        name: the phase's key in the result.
        source: a photo to pick first (None: no source, the frames pass through).
        options: extra options slipped into the page's offer (e.g. ``{"_swap_delay_s": 0.15}``).
        seconds: how long to measure, from the first frame that comes back.
        snaps: full frames of the swapped stream to keep (as PNG).
        screenshot: where to save a screenshot of the page mid-phase.
        change_options: options the page's form is set to mid-phase (field id → value).
        clear_source: remove the page's source first (the frames pass through).
        change_source: a photo picked once the frames come back, before measuring (the source
            changes while it runs; measuring starts a second after the change was applied).
        camera: the page's camera size (``"1280x720"``; None: the page's default, 640×480).
    """

    name: str
    source: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    seconds: float = 8.0
    snaps: int = 0
    screenshot: str | None = None
    change_options: dict[str, str] = field(default_factory=dict)
    clear_source: bool = False
    change_source: str | None = None
    camera: str | None = None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return float(np.percentile(np.array(values, dtype=np.float64), q))


def _status(url: str) -> int:
    """The HTTP status of a GET (no proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _get_json(url: str) -> dict[str, Any]:
    """A GET's JSON body (no proxy)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return dict(json.loads(response.read()))


def _run_phase(page: Any, url: str, phase: Phase, loop: int) -> dict[str, Any]:
    """One phase on an open ``/live`` page; its figures."""
    if phase.clear_source and page.locator("#source-box").is_visible():
        page.locator("#source-clear").click()
        page.wait_for_function("() => document.getElementById('source-box').hidden")
    if phase.source:
        page.get_by_test_id("live-source-input").set_input_files(phase.source)
        page.wait_for_function("() => !document.getElementById('source-box').hidden", timeout=60_000)

    def add_options(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        body["options"] = {**(body.get("options") or {}), **phase.options}
        route.continue_(post_data=json.dumps(body))

    if phase.camera:
        page.locator("#camera_size").select_option(phase.camera)
    page.route("**/live/offer", add_options)
    page.evaluate("() => window.__liveProbe.reset(true)")
    started = time.monotonic()
    page.get_by_test_id("live-start").click()
    page.wait_for_function("() => document.body.dataset.liveSession", timeout=120_000)
    session_id = page.evaluate("() => document.body.dataset.liveSession")
    page.evaluate("(loop) => window.__liveProbe.start(loop)", loop)
    page.wait_for_function("() => window.__liveProbe.remoteFrames > 0", timeout=60_000)
    for _ in range(3):  # a video element may drop the watchers armed while its stream was replaced: arm again
        try:
            page.wait_for_function("() => window.__liveProbe.localFrames > 0", timeout=5_000)
            break
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError
            page.evaluate("(loop) => window.__liveProbe.start(loop)", loop)
    first_frame_s = time.monotonic() - started
    source_before = None
    if phase.change_source:
        source_before = _get_json(f"{url}/live/{session_id}/stats").get("source")
        page.get_by_test_id("live-source-input").set_input_files(phase.change_source)
        name = Path(phase.change_source).name
        page.wait_for_function("(name) => document.getElementById('source-state').textContent"
                               ".includes(`Swapping in ${name}`)", arg=name, timeout=60_000)
        time.sleep(1.0)
    page.evaluate("(n) => { window.__liveProbe.reset(); window.__liveProbe.wantSnaps = n; }", phase.snaps)
    t0 = time.monotonic()
    changed = False
    shot = False
    decoded: list[float] = []  # the page's own "in the browser" figure: frames decoded per second
    next_sample = t0 + 2.0
    while (elapsed := time.monotonic() - t0) < phase.seconds:
        if time.monotonic() >= next_sample:
            text = page.evaluate("() => document.getElementById('live-browser').textContent")
            if text and text.split()[0].replace(".", "", 1).isdigit():
                decoded.append(float(text.split()[0]))
            next_sample += 1.0
        if phase.change_options and not changed and elapsed > phase.seconds / 2:
            page.evaluate("""(values) => { for (const [id, value] of Object.entries(values)) {
                const el = document.getElementById(id); el.value = value;
                el.dispatchEvent(new Event("input", {bubbles: true})); el.dispatchEvent(new Event("change", {bubbles: true}));
            } }""", phase.change_options)
            changed = True
        if phase.screenshot and not shot and elapsed > phase.seconds * 0.6:
            page.screenshot(path=phase.screenshot, full_page=True)
            shot = True
        time.sleep(0.1)
    measured = time.monotonic() - t0
    probe = page.evaluate("""() => { const p = window.__liveProbe;
        return {events: p.events, remoteFrames: p.remoteFrames, localFrames: p.localFrames,
                unreadable: p.unreadable, backwards: p.backwards, snaps: p.snaps,
                size: [document.getElementById("live-remote").videoWidth,
                       document.getElementById("live-remote").videoHeight]}; }""")
    stats = page.evaluate("async (id) => (await fetch(`/live/${id}/stats`)).json()", session_id)
    shown = {key: page.get_by_test_id(key).inner_text() for key in ("live-fps", "live-latency")}
    error_shown = page.get_by_test_id("live-error").is_visible()
    page.get_by_test_id("live-stop").click()
    page.wait_for_function("() => !document.body.dataset.liveSession", timeout=30_000)
    page.unroute("**/live/offer")
    gone = _status(f"{url}/live/{session_id}/stats")
    latencies = [e[2] for e in probe["events"] if e[2] is not None]
    half = len(probe["events"]) // 2
    first_half = [e[2] for e in probe["events"][:half] if e[2] is not None]
    second_half = [e[2] for e in probe["events"][half:] if e[2] is not None]
    return {
        "name": phase.name, "session": session_id, "seconds": measured, "first_frame_s": first_frame_s,
        "frames_back": probe["remoteFrames"], "fps_back": probe["remoteFrames"] / measured,
        "decoded_fps": _percentile(decoded, 50),
        "camera_frames": probe["localFrames"], "unreadable": probe["unreadable"], "backwards": probe["backwards"],
        "matched": len(latencies),
        "latency_p50_ms": _percentile(latencies, 50), "latency_p95_ms": _percentile(latencies, 95),
        "latency_max_ms": max(latencies) if latencies else None,
        "latency_p50_first_half_ms": _percentile(first_half, 50),
        "latency_p50_second_half_ms": _percentile(second_half, 50),
        "latency_p95_first_half_ms": _percentile(first_half, 95),
        "latency_p95_second_half_ms": _percentile(second_half, 95),
        "source_before": source_before,
        "codes": [e[0] for e in probe["events"]],
        "size": probe["size"],
        "snaps": probe["snaps"], "server": stats, "shown": shown, "error_shown": error_shown,
        "stats_after_stop": gone,
    }


def drive(config: dict[str, Any]) -> dict[str, Any]:
    """Start a server and Chromium, run the phases, return the figures.

    ``config``: ``work`` (a folder), ``y4m``, ``loop`` (frames in the Y4M), ``model_home``,
    ``phases`` (:class:`Phase` fields), ``viewport``.
    """
    from playwright.sync_api import sync_playwright

    work = Path(config["work"])
    work.mkdir(parents=True, exist_ok=True)
    phases = [Phase(**p) for p in config["phases"]]
    problems: list[str] = []
    result: dict[str, Any] = {"phases": {}, "problems": problems}
    model_home = Path(config["model_home"]) if config.get("model_home") else None
    with serve(work / "data", work / "server.log", model_home) as url, sync_playwright() as p:
        result["url"] = url
        args = [*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={config['y4m']}"]
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            context = browser.new_context(viewport=config.get("viewport", {"width": 1280, "height": 900}))
            context.add_init_script(PROBE_JS)
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.goto(url + "/live")
            result["title"] = page.title()
            for phase in phases:
                result["phases"][phase.name] = _run_phase(page, url, phase, int(config["loop"]))
        finally:
            browser.close()
    result["server_log"] = (work / "server.log").read_text(errors="replace")[-4000:]
    return result


# ------------------------------------------------------------------------------------ namespace


in_namespace = isolated  # the name the benchmark and the browser test use


def run_isolated(config: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """:func:`drive` in a child process inside a private network namespace; its result."""
    work = Path(config["work"])
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.json").write_text(json.dumps(config))
    command = in_namespace([sys.executable, str(Path(__file__).resolve()), str(work / "config.json"),
                            str(work / "result.json")])
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False)
    if proc.returncode != 0 or not (work / "result.json").exists():
        log = (work / "server.log").read_text(errors="replace")[-4000:] if (work / "server.log").exists() else ""
        raise RuntimeError(f"the live browser driver failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-6000:]}\n{log}")
    return json.loads((work / "result.json").read_text())


def decode_png(data_url: str) -> np.ndarray:
    """A ``data:image/png;base64,…`` URL → ``(H, W, 3) uint8`` BGR."""
    raw = base64.b64decode(data_url.split(",", 1)[1])
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a PNG"
    return image


def summary(phase: dict[str, Any]) -> str:
    """One line of a phase's figures."""
    def ms(v: float | None) -> str:
        return "–" if v is None else f"{v:.0f}"

    s = phase["server"]
    return (f"{phase['name']}: {phase['frames_back']} frames back in {phase['seconds']:.1f} s "
            f"({phase['fps_back']:.1f} fps), capture→shown p50 {ms(phase['latency_p50_ms'])} ms, "
            f"p95 {ms(phase['latency_p95_ms'])} ms (matched {phase['matched']}); server: delivered "
            f"{s.get('fps')} fps, p50 {s.get('latency_p50_ms')} / p95 {s.get('latency_p95_ms')} ms, "
            f"dropped {s.get('dropped')} of {s.get('captured')}, swap {s.get('swap_ms')} ms")


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    result = drive(config)
    Path(argv[2]).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))


__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "PROBE_JS", "Phase", "decode_png", "drive", "in_namespace", "make_y4m",
           "namespace_available", "run_isolated", "serve", "summary"]
