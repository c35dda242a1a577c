"""Live mode figures: delivered fps, capture → output latency and dropped frames.

Run: ``python benchmarks/bench_live.py [--seconds 20] [--slow-seconds 60] [--no-stream]``
(prints, never asserts; a JSON copy with ``--json FILE``).

1. File input at its real rate (30 fps, looped) → live engine (built-in swapper) → null output,
   at 480p (``vid_lp_d18_talking_480.mp4``) and 720p (``vid_lp_s18_scene_720p.mp4``): delivered
   fps, latency p50 / p95 (from capture to the output's write), dropped frames, swap time.
2. 720p with the swap slowed to 150 ms for ``--slow-seconds``: latency p95 per 10 s window
   (dropping works when it stays flat, ≈ one swap plus one frame interval).
3. The stream path at 480p: this script plays the clip with frame codes to ``udp://P1`` →
   ``swapline live`` (a real process) → ``udp://P2`` → this script's reader; latency per frame
   from the player's encoder to the reader's decoder (p50 / p95). Runs in a private network
   namespace (``unshare -n``) where one can be had.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
CLIP_480 = "vid_lp_d18_talking_480.mp4"
CLIP_720 = "vid_lp_s18_scene_720p.mp4"
SOURCE = "src_biden.jpg"
IN_PORT, OUT_PORT = 23101, 23102


class _TimedSink:
    """A null output that notes each frame's latency and when it went out."""

    name = "none"

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (sent at, latency s)

    def open(self, width: int, height: int) -> None:
        pass

    def write(self, frame: Any) -> None:
        now = time.monotonic()
        self.samples.append((now, now - frame.captured))

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def _run_file(session: Any, source: Any, clip: str, seconds: float, delay: float = 0.0) -> dict[str, Any]:
    from swapline.config import SwapConfig
    from swapline.live.engine import LiveEngine
    from swapline.live.inputs import Capture, parse_input
    from swapline.live.runner import run_live

    engine = LiveEngine(session, source, SwapConfig(), fps=30.0, swap_delay_s=delay)
    capture = Capture(parse_input(str(MEDIA / clip)), engine.submit, realtime=True, loop=True)
    sink = _TimedSink()
    swap_ms: list[float] = []
    outcome = run_live(engine, capture, [sink], duration=seconds, on_status=lambda s: swap_ms.append(s.swap_ms))
    s = outcome.stats
    lat = np.array([x for _, x in sink.samples]) * 1000
    t0 = sink.samples[0][0] if sink.samples else 0.0
    windows = []
    for k in range(int(seconds // 10)):
        part = [x * 1000 for t, x in sink.samples if 10 * k <= t - t0 < 10 * (k + 1)]
        if part:
            windows.append(round(float(np.percentile(part, 95)), 1))
    return {"clip": clip, "size": f"{capture.width}x{capture.height}", "seconds": seconds, "swap_delay_ms": delay * 1000,
            "captured": s.captured, "delivered": s.delivered, "dropped": s.dropped,
            "fps": round(engine.mean_fps(), 2),
            "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
            "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
            "latency_max_ms": round(float(lat.max()), 1) if lat.size else None,
            "swap_ms_median": round(float(np.median(swap_ms)), 1) if swap_ms else None,
            "p95_per_10s_ms": windows}


# ---------------------------------------------------------------------------------- stream path


def _stream_driver(seconds: float, out: Path) -> None:
    """Inside the namespace: player → swapline live → reader; writes the figures to ``out``."""
    from swapline.live.streamcheck import clip_frames, play_clip, receive

    frames, _ = clip_frames(MEDIA / CLIP_480)
    cmd = [sys.executable, "-m", "swapline", "live", "-s", str(MEDIA / SOURCE), "--input",
           f"udp://127.0.0.1:{IN_PORT}", "--output", f"udp://127.0.0.1:{OUT_PORT}?pkt_size=1316",
           "--duration", str(seconds + 1.0)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stderr is not None
    proc.stderr.readline()  # "opening …": the models are loaded
    got: dict[str, Any] = {}
    reader = threading.Thread(target=lambda: got.setdefault(
        "frames", receive(f"udp://127.0.0.1:{OUT_PORT}", seconds=seconds + 3.0)))
    reader.start()
    time.sleep(0.5)
    sent: dict[int, float] = {}
    n = play_clip(MEDIA / CLIP_480, f"udp://127.0.0.1:{IN_PORT}?pkt_size=1316", seconds=seconds, sent=sent,
                  frames=frames, fps=30.0)
    reader.join(seconds + 30)
    stdout, stderr = proc.communicate(timeout=60)
    received = got.get("frames", [])
    lat = np.array([(r.received - sent[r.code]) * 1000 for r in received if r.code in sent])
    codes = [r.code for r in received if r.code is not None]
    first = codes[0] if codes else n
    out.write_text(json.dumps({
        "sent": n, "received": len(received), "received_after_start": len(codes), "first_code": first,
        "in_order": codes == sorted(set(codes)),
        "latency_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "latency_p95_ms": round(float(np.percentile(lat, 95)), 1) if lat.size else None,
        "live_summary": stdout.strip(), "live_exit": proc.returncode, "live_stderr": stderr[-2000:]}))


def _stream_path(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stream.json"
        driver = [sys.executable, str(Path(__file__).resolve()), "--stream-driver", str(seconds), str(out)]
        namespace = shutil.which("unshare") is not None and shutil.which("ip") is not None and subprocess.run(
            ["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, check=False).returncode == 0
        if namespace:
            driver = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *driver]
        proc = subprocess.run(driver, capture_output=True, text=True, timeout=seconds + 180, cwd=REPO, check=False,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        if proc.returncode != 0 or not out.exists():
            return {"error": (proc.stderr or proc.stdout)[-2000:]}
        result = json.loads(out.read_text())
        result["namespace"] = namespace
        return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="seconds per file run (default: %(default)g)")
    p.add_argument("--slow-seconds", type=float, default=60.0,
                   help="seconds of the 720p run with the swap slowed to 150 ms (default: %(default)g)")
    p.add_argument("--stream-seconds", type=float, default=15.0, help="seconds of the stream path (default: %(default)g)")
    p.add_argument("--no-stream", action="store_true", help="skip the stream path")
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--stream-driver", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.stream_driver:
        _stream_driver(float(args.stream_driver[0]), Path(args.stream_driver[1]))
        return 0

    import cv2

    from swapline.api import Session

    print(f"swapline live benchmark · {os.cpu_count()} CPU(s) · load average {os.getloadavg()[0]:.2f} "
          "(other work on the machine changes these figures)")
    report: dict[str, Any] = {"cpus": os.cpu_count(), "load_before": os.getloadavg()}
    with Session() as session:
        source = session.load_source(cv2.imread(str(MEDIA / SOURCE)))
        runs = [("480p, 30 fps file, real time", CLIP_480, args.seconds, 0.0),
                ("720p, 30 fps file, real time", CLIP_720, args.seconds, 0.0),
                ("720p, swap slowed to 150 ms", CLIP_720, args.slow_seconds, 0.15)]
        for title, clip, seconds, delay in runs:
            r = _run_file(session, source, clip, seconds, delay)
            report[title] = r
            print(f"{title:32s} {r['size']:>9s}: {r['fps']:5.1f} fps delivered · latency p50 {r['latency_p50_ms']} ms, "
                  f"p95 {r['latency_p95_ms']} ms, max {r['latency_max_ms']} ms · dropped {r['dropped']}/{r['captured']}"
                  f" · swap {r['swap_ms_median']} ms")
            if delay:
                print(f"{'':32s} p95 per 10 s window: {r['p95_per_10s_ms']} ms")
    if not args.no_stream:
        r = _stream_path(args.stream_seconds)
        report["stream path 480p"] = r
        if "error" in r:
            print(f"stream path: failed: {r['error']}")
        else:
            where = "private network namespace" if r["namespace"] else "host loopback"
            print(f"{'stream path 480p (UDP→live→UDP)':32s}: latency p50 {r['latency_p50_ms']} ms, p95 "
                  f"{r['latency_p95_ms']} ms · {r['received_after_start']} of {r['sent'] - r['first_code']} frames "
                  f"after the start came back, in order: {r['in_order']} ({where})")
            print(f"{'':32s} swapline live: {r['live_summary'].removeprefix('swapline live: ')}")
    report["load_after"] = os.getloadavg()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
