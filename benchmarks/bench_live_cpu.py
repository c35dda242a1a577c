"""CPU time per frame of the ``/live`` server's work, stage by stage (prints, never asserts).

Run: ``python benchmarks/bench_live_cpu.py [--frames 150] [--rounds 6] [--chunk 30] [--json FILE]``

The browser loop's server work, done in one thread without a browser or a network, so the
figures are CPU time (``time.process_time``: every thread of this process) rather than wall
time, and stay comparable while other work shares the machine:

1. ``decode``: aiortc's VP8 decoder on the camera stream (the browser benchmark's fake camera:
   the clip padded to 640×480 and stamped with frame codes, VP8-encoded beforehand by aiortc's
   encoder, as a browser would send it).
2. ``to_bgr``: the decoded frame as the engine's BGR image (:func:`swapline.server.webrtc.frame_image`).
3. ``swap``: the live engine's stages (detect every few frames, follow, swap) for one frame.
4. ``to_frame``: the swapped image as the outgoing ``av.VideoFrame``.
5. ``encode``: the server's VP8 encoder on it.

Two setups, run in alternating chunks of frames so that other work on the machine weighs on both
alike (the median and the lowest chunk are printed):

- ``live``: the server's live path now (:class:`~swapline.server.live.LiveSettings`' ONNX
  Runtime and OpenCV threads, the engine's detection every third of a second,
  :func:`~swapline.server.webrtc.video_frame`, :class:`~swapline.server.webrtc.TunedVp8Encoder`).
- ``aiortc``: the same swap with the runtime's default threads, OpenCV's own threads, detection
  every 5th frame, PyAV's BGR frame and aiortc's own encoder settings (the live path before it
  was tuned; the swap's own code and the models' graph rewrite are today's in both).

Every frame is worked on (none dropped), so the total is what one delivered frame costs; at
30 fps the server needs ``total × 30`` ms of CPU per second. ``--vp8`` also prints the encoder
settings' CPU and fidelity (PSNR of the decoded frame against the swapped one) at aiortc's
lowest and highest bit rate.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
CLIP_480 = "vid_lp_d18_talking_480.mp4"
SOURCE = "src_obama.jpg"
STAGES = ("decode", "to_bgr", "swap", "to_frame", "encode")
TIME_BASE = Fraction(1, 90_000)


def camera_frames(frames: int) -> list[np.ndarray]:
    """The fake camera's first ``frames`` frames, ``(480, 640, 3) uint8`` BGR each."""
    from tests.live_harness import make_y4m

    keep: list[np.ndarray] = []
    with tempfile.TemporaryDirectory() as tmp:
        make_y4m(MEDIA / CLIP_480, Path(tmp) / "cam.y4m", frames=frames, keep=keep)
    return keep


def camera_packets(images: list[np.ndarray]) -> list[tuple[bytes, int]]:
    """``images`` VP8-encoded as aiortc would send them: ``(encoded frame, 90 kHz timestamp)``."""
    import av
    from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload

    encoder = Vp8Encoder()
    out = []
    for i, image in enumerate(images):
        frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p")
        frame.pts, frame.time_base = i * 3000, TIME_BASE
        payloads, timestamp = encoder.encode(frame)
        out.append((b"".join(vp8_depayload(p) for p in payloads), timestamp))
    return out


@dataclass
class Setup:
    """One way of running the server's work, with its own models, codecs and figures."""

    name: str
    opencv_threads: int  # 0: OpenCV's own
    chain: Any
    decoder: Any
    encoder: Any
    to_frame: Any
    index: int = 0
    chunks: list[dict[str, float]] = field(default_factory=list)


def make_setup(name: str, *, tuned: bool, source_image: np.ndarray) -> Setup:
    import av
    from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder

    from swapline.api import Session
    from swapline.config import RuntimeConfig, SwapConfig
    from swapline.live.engine import DETECT_EVERY_S, LiveEngine
    from swapline.server import webrtc
    from swapline.server.live import LiveSettings, live_runtime

    live = LiveSettings()
    runtime = live_runtime(RuntimeConfig(), live) if tuned else RuntimeConfig()
    session = Session(runtime=runtime)
    source = session.load_source(source_image)
    _ = session.analyser
    every = DETECT_EVERY_S if tuned else 5 / 30.0  # the video job's every 5th frame before
    chain = LiveEngine(session, source, SwapConfig(), fps=30.0, detect_every_s=every)._prepare(source, SwapConfig())
    if tuned:
        return Setup(name, live.opencv_threads, chain, Vp8Decoder(), webrtc.TunedVp8Encoder(), webrtc.video_frame)
    return Setup(name, 0, chain, Vp8Decoder(), Vp8Encoder(),
                 lambda image: av.VideoFrame.from_ndarray(image, format="bgr24"))


def run_chunk(setup: Setup, packets: list[tuple[bytes, int]], count: int) -> None:
    """``count`` frames through ``setup``; their CPU milliseconds per frame per stage go to
    ``setup.chunks``."""
    import cv2
    from aiortc.jitterbuffer import JitterFrame

    from swapline.live.engine import LiveFrame
    from swapline.server import webrtc

    before = cv2.getNumThreads()
    if setup.opencv_threads:
        cv2.setNumThreads(setup.opencv_threads)
    spent = dict.fromkeys(STAGES, 0.0)
    wall0 = time.perf_counter()
    for _ in range(count):
        index = setup.index
        setup.index += 1
        data, _stamp = packets[index % len(packets)]
        t = time.process_time()
        decoded = setup.decoder.decode(JitterFrame(data, index * 3000))
        t = _lap(t, spent, "decode")
        for frame in decoded:
            image = webrtc.frame_image(frame)
            t = _lap(t, spent, "to_bgr")
            swapped = setup.chain.run(LiveFrame(image=image, index=index, captured=0.0, pts=frame.pts,
                                                time_base=frame.time_base))
            t = _lap(t, spent, "swap")
            video = setup.to_frame(swapped)
            video.pts, video.time_base = index * 3000, TIME_BASE
            t = _lap(t, spent, "to_frame")
            setup.encoder.encode(video)
            t = _lap(t, spent, "encode")
    cv2.setNumThreads(before)
    figures = {k: 1000 * v / count for k, v in spent.items()}
    figures["total"] = sum(figures.values())
    figures["wall"] = 1000 * (time.perf_counter() - wall0) / count
    setup.chunks.append(figures)


def _lap(t: float, spent: dict[str, float], stage: str) -> float:
    now = time.process_time()
    spent[stage] += now - t
    return now


def vp8_sweep(images: list[np.ndarray]) -> list[dict[str, Any]]:
    """CPU per frame, PSNR (Y, against the encoded frame) and bit rate of VP8 encoder settings
    on ``images`` (the swapped frames), at aiortc's lowest and highest bit rate."""
    import av
    from aiortc.codecs.vpx import MAX_BITRATE, MIN_BITRATE, Vp8Decoder
    from aiortc.jitterbuffer import JitterFrame

    from swapline.server import webrtc

    frames = [webrtc.video_frame(im) for im in images]
    planes = [f.to_ndarray()[: im.shape[0]].astype(np.float64) for f, im in zip(frames, images)]
    rows = []
    for bitrate in (MIN_BITRATE * 2, MAX_BITRATE):  # 500 kbit/s (aiortc's start) and its most
        for cpu_used, noise in ((-6, 4), (-6, 0), (-12, 4), (-12, 0), (-16, 0)):
            encoder = webrtc.TunedVp8Encoder(webrtc.Vp8Options(cpu_used=cpu_used, noise_sensitivity=noise))
            encoder.target_bitrate = bitrate
            decoder = Vp8Decoder()
            spent, size, psnr = 0.0, 0, []
            for i, frame in enumerate(frames):
                frame.pts, frame.time_base = i * 3000, TIME_BASE
                t = time.process_time()
                payloads, _ = encoder.encode(frame)
                spent += time.process_time() - t
                data = b"".join(p[_descriptor_size(p):] for p in payloads)
                size += len(data)
                for out in decoder.decode(JitterFrame(data, i * 3000)):
                    assert isinstance(out, av.VideoFrame)
                    mse = float(((out.to_ndarray()[: planes[i].shape[0]] - planes[i]) ** 2).mean())
                    psnr.append(10 * np.log10(255.0**2 / max(mse, 1e-9)))
            rows.append({"kbit_s": bitrate // 1000, "cpu_used": cpu_used, "noise_sensitivity": noise,
                         "encode_ms": round(1000 * spent / len(frames), 2),
                         "psnr_y_db": round(float(np.mean(psnr[10:])), 2),
                         "sent_kbit_s": round(size * 8 / (len(frames) / 30) / 1000)})
    return rows


def _descriptor_size(payload: bytes) -> int:
    from aiortc.codecs.vpx import VpxPayloadDescriptor

    _, rest = VpxPayloadDescriptor.parse(payload)
    return len(payload) - len(rest)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=150, help="camera frames, looped (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=6, help="chunks per setup (default: %(default)s)")
    p.add_argument("--chunk", type=int, default=30, help="frames per chunk (default: %(default)s)")
    p.add_argument("--vp8", action="store_true", help="also compare VP8 encoder settings")
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()

    import cv2

    images = camera_frames(args.frames)
    packets = camera_packets(images)
    print(f"live server CPU per frame · {len(packets)} camera frames 640x480, {args.rounds} chunks of {args.chunk} "
          f"per setup · {os.cpu_count()} CPU(s) · load {os.getloadavg()[0]:.2f}\n"
          "(CPU time of this process in ms per frame; other work on the machine changes it less than wall time)")
    source = cv2.imread(str(MEDIA / SOURCE))
    setups = [make_setup("live", tuned=True, source_image=source), make_setup("aiortc", tuned=False, source_image=source)]
    for r in range(args.rounds + 1):  # the first round warms up and is not counted
        for setup in setups if r % 2 == 0 else setups[::-1]:
            run_chunk(setup, packets, args.chunk)
    report: dict[str, Any] = {"cpus": os.cpu_count(), "load": os.getloadavg()}
    for setup in setups:
        chunks = setup.chunks[1:]
        median = {k: float(np.median([c[k] for c in chunks])) for k in chunks[0]}
        low = {k: float(np.min([c[k] for c in chunks])) for k in chunks[0]}
        report[setup.name] = {"median": median, "lowest": low}
        print(f"  {setup.name:7s} median " + " · ".join(f"{k} {median[k]:.2f}" for k in (*STAGES, "total"))
              + f" | lowest total {low['total']:.2f} | wall {median['wall']:.1f}")
    if args.vp8:
        live = setups[0]
        swapped = [live.chain.run(_frame(im, 10_000 + i)) for i, im in enumerate(images)]
        report["vp8"] = vp8_sweep(swapped)
        for row in report["vp8"]:
            print(f"  VP8 {row['kbit_s']:>5} kbit/s cpu-used {row['cpu_used']:>3} noise {row['noise_sensitivity']}: "
                  f"{row['encode_ms']:.2f} ms, Y PSNR {row['psnr_y_db']:.2f} dB, {row['sent_kbit_s']} kbit/s sent")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def _frame(image: np.ndarray, index: int) -> Any:
    from swapline.live.engine import LiveFrame

    return LiveFrame(image=image, index=index, captured=0.0)


if __name__ == "__main__":
    sys.exit(main())
