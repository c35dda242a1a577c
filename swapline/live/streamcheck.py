"""Checking a stream path end to end: play a clip with frame numbers to a stream, read a stream
back and match the numbers (latency per frame). Used by the tests and the benchmark; also a
way to check a live setup by hand:

    sender:   play_clip("clip.mp4", "udp://127.0.0.1:5000?pkt_size=1316", seconds=10, sent=sent)
    receiver: frames = receive("udp://127.0.0.1:5001", seconds=12)
    latency:  [f.received - sent[f.code] for f in frames if f.code in sent]

Both ends use ``time.monotonic()`` (one clock for every process of a machine).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from ..video.frames import bgr_to_frame, frame_to_bgr
from .framecode import read_code, stamp_code
from .inputs import LOW_LATENCY_OPTIONS
from .outputs import end_marked, stream_format, stream_options

__all__ = ["Received", "clip_frames", "play_clip", "receive"]

_MS = Fraction(1, 1000)


@dataclass(frozen=True)
class Received:
    """A frame read back: its stamped ``code`` (None when unreadable), when it was decoded
    (``time.monotonic()``), and its image ``(H, W, 3) uint8`` BGR when it was kept."""

    code: int | None
    received: float
    image: np.ndarray | None = None


def clip_frames(path: Path, limit: int | None = None) -> tuple[list[np.ndarray], float]:
    """The first ``limit`` (default: all) frames of a clip, ``(H, W, 3) uint8`` BGR, and its rate."""
    out: list[np.ndarray] = []
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        fps = float(stream.average_rate or 30)
        for f in c.decode(stream):
            out.append(frame_to_bgr(f))
            if limit is not None and len(out) >= limit:
                break
        return out, fps


def play_clip(path: str | Path, url: str, *, seconds: float, sent: dict[int, float],
              stop: threading.Event | None = None, fps: float | None = None, gop: int = 15,
              frames: list[np.ndarray] | None = None) -> int:
    """Send ``path``'s frames (looped) to ``url`` at their real rate for ``seconds``, each with
    its number stamped (:func:`~swapline.live.framecode.stamp_code`), as low-latency H.264 in
    MPEG-TS (udp/tcp/srt) or FLV (rtmp). ``sent[number]`` is set to the time each frame was
    handed to the encoder. Returns the number of frames sent."""
    if frames is None:
        frames, clip_fps = clip_frames(Path(path))
    else:
        clip_fps = 30.0
    rate = fps or clip_fps
    h, w = frames[0].shape[:2]
    marked = stream_format(url) == "mpegts"
    out = av.open(url, "w", format=stream_format(url), container_options=stream_options(url))
    try:
        stream = out.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001),
                                options={"tune": "zerolatency", "preset": "ultrafast", "crf": "18", "bf": "0"})
        stream.width, stream.height, stream.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.time_base = _MS
        stop = stop or threading.Event()
        start = time.monotonic()
        n = 0
        while True:
            due = start + n / rate
            if due - start >= seconds:
                break
            if stop.wait(max(0.0, due - time.monotonic())):
                break
            image = stamp_code(frames[n % len(frames)][: h - h % 2, : w - w % 2].copy(), n)
            vf = bgr_to_frame(image)
            now = time.monotonic()
            vf.pts, vf.time_base = round((now - start) * 1000), _MS
            sent[n] = now
            for packet in stream.encode(vf):
                out.mux(end_marked(packet) if marked else packet)
            n += 1
        for packet in stream.encode(None):
            out.mux(end_marked(packet) if marked else packet)
        return n
    finally:
        out.close()


def receive(url: str, *, seconds: float, keep: Callable[[int | None], bool] | None = None,
            timeout: float = 30.0, ready: threading.Event | None = None) -> list[Received]:
    """Read ``url`` for ``seconds`` (or until it ends or stays silent for 5 s) and return every
    decoded frame's code and arrival time, with its image where ``keep(code)`` says so.
    ``ready`` is set just before the stream is opened (its socket is about to listen)."""
    options = dict(LOW_LATENCY_OPTIONS)
    if url.startswith("udp:"):
        options.update(overrun_nonfatal="1", fifo_size="50000")
    if ready is not None:
        ready.set()
    got: list[Received] = []
    try:
        container = av.open(url, "r", options=options, timeout=(timeout, 5.0))
    except av.error.ExitError:
        return got
    try:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        end = time.monotonic() + seconds
        for packet in container.demux(stream):
            try:
                decoded = packet.decode()
            except av.error.InvalidDataError:
                continue
            for frame in decoded:
                now = time.monotonic()
                image = frame_to_bgr(frame)
                code = read_code(image)
                got.append(Received(code, now, image if keep is not None and keep(code) else None))
            if time.monotonic() > end:
                break
    except (av.error.ExitError, av.error.EOFError):
        pass
    finally:
        container.close()
    return got

