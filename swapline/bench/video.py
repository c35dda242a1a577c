"""``swapline benchmark --video``: the streaming pipeline against the traditional one.

Both run on the same clip with the same models, settings and machine, each in a fresh process
(so each peak RSS is its own):

* **streaming** — this project's pipeline: one decode, stages overlapping on threads, detection
  every k frames with mesh following in between, audio packets copied;
* **traditional** — what older tools do: extract every frame to PNG files, process them one at a
  time (batch 1, detection and a full analysis on every frame, no overlap), then read the files
  back, encode them and mux the audio in.

Figures: end-to-end fps, busy time and share per stage, peak RSS, the streaming/traditional
ratio, and flicker: the mean absolute frame-to-frame change inside the face box of the output,
divided by the same figure for the input (1.0 = as steady as the input).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..config import RuntimeConfig, SwapConfig, VideoConfig
from ..video.frames import bgr_to_frame, frame_to_bgr


def _streaming(clip: str, source: str, output: str, runtime: RuntimeConfig, video: VideoConfig,
               parse: bool = True) -> dict[str, Any]:
    from ..api import Session
    from ..pipeline.image import read_image

    with Session(SwapConfig(face_parsing=parse), runtime) as session:
        src = session.load_source(read_image(source, "source"))
        report = session.swap_video(src, clip, output, video=video, force=True)
    total = sum(m.busy_s for m in report.stages) or 1.0
    return {
        "frames": report.frames,
        "seconds": report.seconds,
        "fps": report.fps,
        "peak_rss_mb": report.peak_rss_mb,
        "stages": {m.name: {"busy_s": round(m.busy_s, 3), "share": round(m.busy_s / total, 3),
                            "max_queue": m.max_queue} for m in report.stages},
        "steps_ms_per_frame": {k: round(v / max(1, report.frames), 2) for k, v in report.stage_ms.items()},
    }


def _traditional(clip: str, source: str, output: str, runtime: RuntimeConfig, video: VideoConfig) -> dict[str, Any]:
    import av

    from ..api import Session
    from ..face.select import order_faces, select_faces
    from ..pipeline.frame import swap_faces
    from ..pipeline.image import read_image
    from ..pipeline.video import peak_rss_mb
    from ..runtime.timing import StageTimes

    busy = StageTimes()
    work = Path(tempfile.mkdtemp(prefix="swapline-traditional-"))
    started = time.perf_counter()
    try:
        cfg = SwapConfig()
        with Session(cfg, runtime) as session:
            src = session.load_source(read_image(source, "source"))
            analyser = session.analyser
            # 1. extract every frame to an image file
            with busy.stage("extract"), av.open(clip) as inp:
                stream = inp.streams.video[0]
                rate, time_base = stream.average_rate, stream.time_base
                count = 0
                for frame in inp.decode(stream):
                    cv2.imwrite(str(work / f"in_{count:06d}.png"), frame_to_bgr(frame))
                    count += 1
            # 2. one frame at a time: full analysis on every frame, swap, write
            steps = StageTimes()
            reference = None
            for i in range(count):
                with busy.stage("read"):
                    image = cv2.imread(str(work / f"in_{i:06d}.png"))
                with busy.stage("analyse"):
                    faces = analyser.analyse([image], embed=True, times=steps)[0]
                    if reference is None and faces:
                        reference = order_faces(faces, cfg.face_selector_order)[0].embedding
                    chosen = select_faces(faces, cfg.face_selector_mode, cfg.face_selector_order,
                                          reference=reference, max_distance=cfg.reference_face_distance)
                with busy.stage("swap"):
                    out, _ = swap_faces(image, chosen, src, cfg, steps)
                with busy.stage("write"):
                    cv2.imwrite(str(work / f"out_{i:06d}.png"), out)
        # 3. encode the files and mux the audio back in
        with busy.stage("encode"), av.open(clip) as inp, av.open(output, "w") as outc:
            vs = outc.add_stream("libx264", rate=Fraction(rate))
            vs.pix_fmt = "yuv420p"
            vs.options = {"crf": str(video.quality), "preset": video.preset}
            first = cv2.imread(str(work / "out_000000.png"))
            vs.width, vs.height = first.shape[1], first.shape[0]
            audio_in = inp.streams.audio[0] if inp.streams.audio else None
            audio_out = outc.add_stream_from_template(audio_in) if audio_in is not None else None
            for i in range(count):
                img = cv2.imread(str(work / f"out_{i:06d}.png"))
                outc.mux(vs.encode(bgr_to_frame(img)))
            outc.mux(vs.encode(None))
            if audio_in is not None and audio_out is not None:
                for packet in inp.demux(audio_in):
                    if packet.dts is None:
                        continue
                    packet.stream = audio_out
                    outc.mux(packet)
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(busy.ms.values()) or 1.0
    return {
        "frames": count,
        "seconds": seconds,
        "fps": count / seconds,
        "peak_rss_mb": peak_rss_mb(),
        "stages": {k: {"busy_s": round(v / 1000, 3), "share": round(v / total, 3)} for k, v in busy.ms.items()},
        "steps_ms_per_frame": {k: round(v / max(1, count), 2) for k, v in steps.ms.items()},
        "time_base": str(time_base),
    }


def _in_child(fn_name: str, *args: Any) -> dict[str, Any]:
    """Run ``fn_name`` in a fresh process and return its result (peak RSS is the child's)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(_call, (fn_name, *args))


def _call(fn_name: str, *args: Any) -> dict[str, Any]:
    return {"streaming": _streaming, "traditional": _traditional}[fn_name](*args)


def flicker(clip: str | Path, swapped: str | Path, boxes: list[np.ndarray | None]) -> float:
    """Mean absolute frame-to-frame change inside the face box of ``swapped`` divided by the same
    figure for ``clip``. ``boxes[i]`` is the face box (x1, y1, x2, y2) of frame i, or None."""
    import av

    def changes(path: str | Path) -> list[float]:
        out, prev = [], None
        with av.open(str(path)) as c:
            for i, frame in enumerate(c.decode(video=0)):
                img = frame.to_ndarray(format="gray").astype(np.int16)
                if prev is not None and i < len(boxes) and boxes[i] is not None and boxes[i - 1] is not None:
                    a, b = boxes[i], boxes[i - 1]
                    x0, y0 = int(max(a[0], b[0], 0)), int(max(a[1], b[1], 0))
                    x1, y1 = int(min(a[2], b[2])), int(min(a[3], b[3]))
                    if x1 > x0 and y1 > y0:
                        out.append(float(np.abs(img[y0:y1, x0:x1] - prev[y0:y1, x0:x1]).mean()))
                    else:
                        out.append(float("nan"))
                elif prev is not None:
                    out.append(float("nan"))
                prev = img
        return out

    a, b = np.array(changes(clip)), np.array(changes(swapped))
    n = min(len(a), len(b))
    ok = ~np.isnan(a[:n]) & ~np.isnan(b[:n])
    return float(b[:n][ok].mean() / max(a[:n][ok].mean(), 1e-6)) if ok.any() else float("nan")


def face_boxes(clip: str | Path, runtime: RuntimeConfig) -> list[np.ndarray | None]:
    """The largest face's box in every frame of ``clip`` (detector only)."""
    import av

    from ..api import Session

    boxes: list[np.ndarray | None] = []
    with Session(SwapConfig(), runtime) as session, av.open(str(clip)) as c:
        for frame in c.decode(video=0):
            faces = session.analyser.detector.detect([frame_to_bgr(frame)])[0]
            boxes.append(max(faces, key=lambda f: f.area).box if faces else None)
    return boxes


def bench_video(clip: Path, source: Path, runtime: RuntimeConfig, video: VideoConfig = VideoConfig(),
                long_clip: Path | None = None) -> dict[str, Any]:
    """Run both pipelines on ``clip`` (and the streaming one on ``long_clip`` for the memory
    figure) and return the report."""
    with tempfile.TemporaryDirectory(prefix="swapline-bench-") as tmp:
        out_s, out_t = str(Path(tmp) / "streaming.mp4"), str(Path(tmp) / "traditional.mp4")
        streaming = _in_child("streaming", str(clip), str(source), out_s, runtime, video)
        plain = _in_child("streaming", str(clip), str(source), str(Path(tmp) / "plain.mp4"), runtime, video, False)
        traditional = _in_child("traditional", str(clip), str(source), out_t, runtime, video)
        boxes = face_boxes(clip, runtime)
        report: dict[str, Any] = {
            "clip": str(clip),
            "streaming": streaming,
            "streaming_no_parser": plain,
            "traditional": traditional,
            "speedup": streaming["fps"] / traditional["fps"],
            "flicker": {"streaming": flicker(clip, out_s, boxes), "traditional": flicker(clip, out_t, boxes)},
        }
        if long_clip is not None:
            out_l = str(Path(tmp) / "long.mp4")
            long = _in_child("streaming", str(long_clip), str(source), out_l, runtime, video)
            report["long"] = {"clip": str(long_clip), "frames": long["frames"], "fps": long["fps"],
                              "peak_rss_mb": long["peak_rss_mb"],
                              "rss_growth": long["peak_rss_mb"] / streaming["peak_rss_mb"] - 1.0}
    return report


def loop_clip(clip: Path, times: int, output: Path) -> Path:
    """``clip`` played ``times`` times in a row (video re-encoded, audio packets shifted)."""
    import av

    from ..video.clip import write_clip

    with av.open(str(clip)) as c:
        rate = c.streams.video[0].average_rate
        frames = [frame_to_bgr(f) for f in c.decode(video=0)]
    write_clip((frames[i % len(frames)] for i in range(len(frames) * times)), output, fps=Fraction(rate))
    return output


def format_video_report(report: dict[str, Any]) -> str:
    """A readable summary of :func:`bench_video`'s report."""
    lines = [f"clip: {report['clip']}"]
    for name in ("streaming", "streaming_no_parser", "traditional"):
        r = report[name]
        shares = ", ".join(f"{k} {v['busy_s']:.2f}s ({v['share'] * 100:.0f}%)" for k, v in r["stages"].items())
        lines.append(f"{name:<20} {r['frames']} frames in {r['seconds']:.2f}s = {r['fps']:.1f} fps, "
                     f"peak RSS {r['peak_rss_mb']:.0f} MiB")
        lines.append(f"{'':<20} busy: {shares}")
        lines.append(f"{'':<20} per frame ms: " + ", ".join(f"{k} {v}" for k, v in r["steps_ms_per_frame"].items()))
    lines.append(f"speed-up streaming/traditional: {report['speedup']:.2f}x")
    lines.append(f"flicker (output change / input change in the face box): streaming "
                 f"{report['flicker']['streaming']:.3f}, traditional {report['flicker']['traditional']:.3f}")
    if "long" in report:
        lg = report["long"]
        lines.append(f"long clip {lg['frames']} frames: {lg['fps']:.1f} fps, peak RSS {lg['peak_rss_mb']:.0f} MiB "
                     f"({lg['rss_growth'] * 100:+.1f}% vs the short clip)")
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(report, indent=2, default=str))


def run_video_benchmark(clip: str, source: Path | None, runtime: RuntimeConfig, video: VideoConfig,
                        loops: int = 0, json_path: Path | None = None) -> int:
    """The ``benchmark --video`` command: print the report, optionally write JSON."""
    from .portraits import demo_portraits
    from ..pipeline.image import write_image
    from ..video.clip import write_clip, zoom_pan_frames

    with tempfile.TemporaryDirectory(prefix="swapline-bench-in-") as tmp:
        folder = Path(tmp)
        astronaut, hopper = demo_portraits()
        if source is None:
            source = folder / "astronaut.png"
            write_image(source, astronaut)
        if clip == "demo":
            path = folder / "hopper_720p.mp4"
            write_clip(zoom_pan_frames(hopper, 250, (1280, 720), zoom=1.3, center=(256, 230)), path, fps=25)
        else:
            path = Path(clip)
        long_clip = loop_clip(path, loops, folder / "long.mp4") if loops > 1 else None
        report = bench_video(path, source, runtime, video, long_clip)
    print(format_video_report(report))
    if json_path is not None:
        write_json(report, json_path)
    return 0
