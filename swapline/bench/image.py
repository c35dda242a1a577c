"""``swapline benchmark --image``: per-stage milliseconds of the image swap.

Frames are made from the demo portraits (public domain): Grace Hopper scaled so her face is
about 400 px wide in a 1080p frame (267 px in 720p) and centred on it, the astronaut as the
source. The source's analysis is done once and not
counted. Figures are medians over ``repeat`` runs after one warm-up run.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from typing import TYPE_CHECKING

from ..config import RuntimeConfig, SwapConfig
from ..runtime.session import default_threads

if TYPE_CHECKING:
    from ..api import Session
    from ..swap.mesh import SourceFace

STAGES = ("detect", "mesh", "embed", "parse", "swap", "blend")
FACE_PX = 400  # face width in the 1080p frame


def portrait_frame(image: np.ndarray, width: int, height: int, scale: float,
                   center: tuple[float, float] | None = None) -> np.ndarray:
    """``image`` scaled by ``scale`` on a black ``(height, width, 3)`` frame, with the point
    ``center`` (image pixels; default the image centre) at the frame's centre; what does not fit
    is cropped."""
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    cx, cy = ((image.shape[1] / 2, image.shape[0] / 2) if center is None else center)
    # frame pixel (x, y) shows resized pixel (x + ox, y + oy)
    ox, oy = round(cx * scale - width / 2), round(cy * scale - height / 2)
    frame = np.zeros((height, width, 3), np.uint8)
    rh, rw = resized.shape[:2]
    x0, y0 = max(0, -ox), max(0, -oy)
    x1, y1 = min(width, rw - ox), min(height, rh - oy)
    if x1 > x0 and y1 > y0:
        frame[y0:y1, x0:x1] = resized[y0 + oy:y1 + oy, x0 + ox:x1 + ox]
    return frame


VARIANTS: dict[str, SwapConfig] = {
    "default": SwapConfig(),
    "poisson": SwapConfig(blend="poisson"),
    "histogram": SwapConfig(color_match="histogram", relight=0.0),
    "yuv-luma": SwapConfig(color_match="yuv-luma", relight=0.0),
    "multiband": SwapConfig(blend="multiband"),
    "no-relight": SwapConfig(relight=0.0),
    "relight-1": SwapConfig(relight=1.0),
    "occluders": SwapConfig(keep_occluders=True),
    "old-default": SwapConfig(source_validity=False, relight=0.0, blend="alpha", face_parsing=False),
    "no-detail": SwapConfig(detail_match=False),
    "no-parser": SwapConfig(face_parsing=False),
}


def measure(session: "Session", source_image: np.ndarray, cases: dict[str, np.ndarray],
            variants: dict[str, SwapConfig], repeat: int) -> dict[str, dict[str, object]]:
    """Median per-stage milliseconds of ``session.swap`` for each frame and variant (and the
    best swap + blend), the variants interleaved round by round; ``source``: preparing the
    source from ``source_image`` as the variant does (analysis, parse, validity), timed once per
    round; ``photo``: source + the target's stages, the whole of a one-photo job once models are
    loaded.

    One warm-up run per case and variant is not counted. Returns ``{"<case> <variant>": {"face_px", "faces",
    "ms": {stage: ms}}}``.
    """
    from ..pipeline.source import load_source

    def prepare(cfg: SwapConfig) -> "SourceFace":
        return load_source(session.analyser, [source_image], cfg, session.models.parser(cfg))

    rows: dict[str, dict[str, object]] = {}
    for case, frame in cases.items():
        sources = {v: prepare(cfg) for v, cfg in variants.items()}  # the source as each variant makes it
        for vname, cfg in variants.items():
            session.swap(sources[vname], frame, cfg)  # warm-up
        # rounds interleave the variants, so a noisy spell on the machine hits them alike; keep
        # the figures only: holding every output frame would grow the heap on each run, and the
        # fresh pages' faults (~2000 per 1080p run) would be timed as swap work
        times: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
        swapped: dict[str, tuple] = {}
        for _ in range(repeat):
            for vname, cfg in variants.items():
                started = time.perf_counter()
                prepare(cfg)
                made = (time.perf_counter() - started) * 1000.0
                result = session.swap(sources[vname], frame, cfg)
                times[vname].append({**result.times_ms, "source": made})
                swapped[vname] = result.swapped
                del result
        for vname in variants:
            med = {s: float(np.median([t.get(s, 0.0) for t in times[vname]])) for s in STAGES}
            med["analysis"] = med["detect"] + med["mesh"]
            med["swap+blend"] = med["swap"] + med["blend"]
            med["total"] = sum(med[s] for s in STAGES)
            med["source"] = float(np.median([t["source"] for t in times[vname]]))
            med["photo"] = float(np.median([t["source"] + sum(t.get(s, 0.0) for s in STAGES) for t in times[vname]]))
            med["best swap+blend"] = float(min(t.get("swap", 0.0) + t.get("blend", 0.0) for t in times[vname]))
            rows[f"{case} {vname}"] = {
                "face_px": round(max(f.width for f in swapped[vname])) if swapped[vname] else 0,
                "faces": len(swapped[vname]),
                "ms": {k: round(v, 2) for k, v in med.items()},
            }
    return rows


def machine() -> str:
    """A one-line description of this machine for reports."""
    return f"{platform.machine()} {platform.processor() or ''}, {default_threads()} threads, Python {platform.python_version()}"


def bench_image(runtime: RuntimeConfig, repeat: int = 20) -> dict[str, object]:
    """Run the cases on the demo portraits and return the figures (no printing)."""
    from ..api import Session
    from .portraits import demo_portraits

    astronaut, hopper = demo_portraits()
    with Session(SwapConfig(), runtime) as session:
        face = session.analyse(hopper)[0]
        cases = {}
        for name, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
            goal = FACE_PX * h / 1080
            scale = goal / face.width
            # the detector's box does not scale exactly with the image: correct once
            found = session.analyse(portrait_frame(hopper, w, h, scale, face.center))[0]
            cases[name] = portrait_frame(hopper, w, h, scale * goal / found.width, face.center)
        variants = {k: VARIANTS[k] for k in ("default", "no-parser", "old-default", "poisson")}
        rows = measure(session, astronaut, {"720p": cases["720p"]}, variants, repeat)
        rows |= measure(session, astronaut, {"1080p": cases["1080p"]}, VARIANTS, repeat)
    return {"machine": machine(), "cases": rows, "config": dataclasses.asdict(SwapConfig())}


def format_report(report: dict[str, object]) -> str:
    """A plain table of the figures."""
    cols = ["detect", "mesh", "embed", "parse", "swap", "blend", "analysis", "swap+blend", "best swap+blend", "total",
            "source", "photo"]
    heads = [c.replace("best swap+blend", "best s+b") for c in cols]
    lines = [f"machine: {report['machine']}", f"{'case':<22}{'face':>6}" + "".join(f"{c:>11}" for c in heads)]
    for name, row in report["cases"].items():  # type: ignore[union-attr]
        lines.append(f"{name:<22}{row['face_px']:>5}p" + "".join(f"{row['ms'][c]:>11.2f}" for c in cols))
    lines.append("(ms per frame, median over rounds that interleave the variants; best s+b: the fastest "
                 "swap + blend; swap and blend are summed over the frame's swapped faces; analysis = detect "
                 "+ mesh; embed is only needed for reference selection; parse: the face parser on the target; "
                 "total: the target's stages; source: preparing the source photo; photo: source + total, a "
                 "one-photo job with the models loaded)")
    return "\n".join(lines)


def run_benchmark(runtime: RuntimeConfig, repeat: int = 20, json_path: Path | None = None) -> int:
    """The ``benchmark`` command: print the table, optionally write JSON."""
    report = bench_image(runtime, repeat)
    print(format_report(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2))
    return 0
