"""The ``/live`` browser loop: delivered fps and capture → shown latency (prints, never asserts).

Run: ``python benchmarks/bench_live_browser.py [--seconds 20] [--hd] [--slow 60]``

One ``swapline serve`` and the system Chromium run together in a private network namespace
(``unshare -n``, loopback only). Chromium's fake camera plays a shared clip as a 30 fps Y4M file
whose every frame carries its number in the bottom-left corner (``tests/live_harness.py``). The
page sends it over WebRTC (VP8), the server swaps it (built-in swapper, the live engine) and sends
it back; a probe in the page reads the number of every frame both ``<video>`` elements present.

Figures per phase:

- frames back / fps: distinct frames the swapped ``<video>`` presented, per second.
- decoded in the browser: the page's own "in the browser" figure (WebRTC ``framesDecoded`` of
  the incoming video per second), sampled each second, median: what reached the browser, before
  its rendering on the same cores drops any.
- capture → shown p50 / p95: for each frame that came back, the time the swapped ``<video>``
  presented it minus the time the camera preview ``<video>`` presented the same frame
  (``requestVideoFrameCallback``'s ``expectedDisplayTime`` on both; the preview shows a frame a
  few ms after Chromium captures it, so this is the loop's latency less that display delay:
  browser encode, network, server decode, swap, server encode, network, browser jitter buffer,
  decode, display).
- server: the engine's own figures (frames delivered per second; arrival → sent p50 / p95;
  frames dropped; the last swap's time).

Phases: ``swap`` (480p, a source face), ``transport`` (480p, no source: the frames pass
through, the transport alone); with ``--hd`` the same swap with a 1280×720 camera; with
``--slow S`` a swap slowed to 150 ms per frame for S seconds (latency must not grow), at 480p
and, with ``--hd``, at 720p.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.live_harness import make_y4m, namespace_available, run_isolated  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CLIP_480 = "vid_lp_d18_talking_480.mp4"  # 480×480 talking head, padded to 640×480
CLIP_720 = "vid_lp_s18_scene_720p.mp4"   # 1280×720, a face right of centre
SOURCE = "src_obama.jpg"
SLOW_SWAP_S = 0.15


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def _fps(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _row(phase: dict[str, Any]) -> str:
    s = phase["server"]
    return (f"  {phase['name']:<10} {phase['size'][0]}x{phase['size'][1]}: {phase['frames_back']:>4} frames back in "
            f"{phase['seconds']:.1f} s = {phase['fps_back']:5.1f} fps | capture→shown p50 {_ms(phase['latency_p50_ms'])} ms, "
            f"p95 {_ms(phase['latency_p95_ms'])} ms, max {_ms(phase['latency_max_ms'])} ms "
            f"({phase['matched']} matched, {phase['unreadable']} unreadable, {phase['backwards']} out of order)\n"
            f"  {'':<10} camera preview showed {phase['camera_frames']} frames; transport: "
            f"{s['transport']['received']} received, {s['transport']['skipped']} skipped unread, "
            f"{s['transport']['sent']} sent; decoded in the browser {_fps(phase.get('decoded_fps'))} fps (median)\n"
            f"  {'':<10} server: {s['delivered']} delivered ({s['fps']:.1f} fps now), arrival→sent p50 "
            f"{s['latency_p50_ms']:.0f} / p95 {s['latency_p95_ms']:.0f} ms, dropped {s['dropped']} of {s['captured']} "
            f"captured, swap {s['swap_ms']:.0f} ms\n"
            f"  {'':<10} capture→shown by half: p50 {_ms(phase['latency_p50_first_half_ms'])} → "
            f"{_ms(phase['latency_p50_second_half_ms'])} ms, p95 {_ms(phase['latency_p95_first_half_ms'])} → "
            f"{_ms(phase['latency_p95_second_half_ms'])} ms")


def _run(work: Path, clip: str, size: tuple[int, int], phases: list[dict[str, Any]], frames: int | None) -> dict[str, Any]:
    y4m = work / f"camera-{size[0]}x{size[1]}.y4m"
    count = make_y4m(MEDIA / clip, y4m, size=size, frames=frames)
    config = {"work": str(work / f"run-{size[1]}p"), "y4m": str(y4m), "loop": count, "model_home": None,
              "phases": phases}
    total = sum(p["seconds"] for p in phases) + 60 * len(phases) + 60
    try:
        return run_isolated(config, timeout=total)
    finally:
        y4m.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per phase (default: %(default)s)")
    parser.add_argument("--hd", action="store_true", help="also a 1280×720 camera")
    parser.add_argument("--slow", type=float, default=0.0, metavar="S",
                        help="also a swap slowed to 150 ms per frame, measured S seconds")
    args = parser.parse_args()

    print(f"live browser loop: {os.cpu_count()} CPU(s), load {os.getloadavg()[0]:.2f}; network namespace: "
          f"{'yes' if namespace_available() else 'NO (plain loopback)'}")
    source = str(MEDIA / SOURCE)
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(tmp)
        phases = [{"name": "swap", "source": source, "seconds": args.seconds, "camera": "640x480"},
                  {"name": "transport", "clear_source": True, "seconds": args.seconds, "camera": "640x480"}]
        if args.slow > 0:
            phases.append({"name": "slow", "source": source, "seconds": args.slow, "camera": "640x480",
                           "options": {"_swap_delay_s": SLOW_SWAP_S}})
        started = time.monotonic()
        result = _run(work, CLIP_480, (640, 480), phases, None)
        print(f"480p camera ({CLIP_480} padded to 640×480, 30 fps), {time.monotonic() - started:.0f} s:")
        for phase in result["phases"].values():
            print(_row(phase))
        if args.hd:
            started = time.monotonic()
            hd_phases = [{"name": "swap-720p", "source": source, "seconds": args.seconds, "camera": "1280x720"}]
            if args.slow > 0:
                hd_phases.append({"name": "slow-720p", "source": source, "seconds": args.slow, "camera": "1280x720",
                                  "options": {"_swap_delay_s": SLOW_SWAP_S}})
            hd = _run(work, CLIP_720, (1280, 720), hd_phases, 150)
            print(f"720p camera ({CLIP_720}, 30 fps), {time.monotonic() - started:.0f} s:")
            for phase in hd["phases"].values():
                print(_row(phase))
    return 0


if __name__ == "__main__":
    sys.exit(main())
