"""The stream path, driven end to end (run as a script, inside a private network namespace):

    this script's player ─ udp://127.0.0.1:P1 ─► swapline live (a real process) ─ udp://127.0.0.1:P2 ─►
    this script's reader

The player sends a shared clip at its real rate with each frame's number stamped in a corner;
the reader decodes what comes back, reads the numbers and keeps a few frames. Results (numbers
and send / receive times) go to ``WORK/result.json``, the kept frames and the frames sent with
the same numbers to ``WORK/got_N.png`` / ``WORK/sent_N.png``; the test checks them.

Usage: python live_stream_driver.py MEDIA_DIR WORK_DIR SECONDS
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLIP = "vid_lp_d18_talking_480.mp4"
SOURCE = "src_biden.jpg"
IN_PORT, OUT_PORT = 23001, 23002
KEEP_EVERY = 40


def drive(media: Path, work: Path, seconds: float) -> dict[str, Any]:
    import cv2

    from swapline.live.framecode import stamp_code
    from swapline.live.streamcheck import clip_frames, play_clip, receive

    frames, _ = clip_frames(media / CLIP)
    cmd = [sys.executable, "-m", "swapline", "live", "-s", str(media / SOURCE),
           "--input", f"udp://127.0.0.1:{IN_PORT}", "--output", f"udp://127.0.0.1:{OUT_PORT}?pkt_size=1316",
           "--duration", str(seconds + 1.0)]
    log = open(work / "live.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    result: dict[str, Any] = {}
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline().strip()  # "swapline live: opening udp://…": models are loaded
        result["first_line"] = first
        got: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: got.setdefault("frames", receive(
            f"udp://127.0.0.1:{OUT_PORT}", seconds=seconds + 3.0, timeout=30.0,
            keep=lambda code: code is not None and code % KEEP_EVERY == 0)))
        reader.start()
        time.sleep(0.5)  # the live process binds its input socket right after that line
        sent: dict[int, float] = {}
        result["sent"] = play_clip(media / CLIP, f"udp://127.0.0.1:{IN_PORT}?pkt_size=1316", seconds=seconds,
                                   sent=sent, frames=frames, fps=30.0)
        reader.join(seconds + 30)
        out, err = proc.communicate(timeout=60)
        log.write(first + "\n" + err)
        result.update(exit_code=proc.returncode, stdout=out, stderr=err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    received = got.get("frames", [])
    result["received"] = [[r.code, r.received - sent[r.code] if r.code in sent else None] for r in received]
    kept = []
    for r in received:
        if r.image is not None and r.code is not None and r.code in sent:
            original = stamp_code(frames[r.code % len(frames)].copy(), r.code)
            cv2.imwrite(str(work / f"got_{r.code}.png"), r.image)
            cv2.imwrite(str(work / f"sent_{r.code}.png"), original)
            kept.append(r.code)
    result["kept"] = kept
    return result


def main(argv: list[str]) -> int:
    media, work, seconds = Path(argv[1]), Path(argv[2]), float(argv[3])
    os.environ.pop("SWAPLINE_DEBUG", None)
    result = drive(media, work, seconds)
    (work / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
