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
from pathlib import Path

import cv2
import numpy as np

from ..config import RuntimeConfig, SwapConfig
from ..runtime.session import default_threads

STAGES = ("detect", "mesh", "embed", "swap", "blend")
FACE_PX = 400  # face width in the 1080p frame


def portrait_frame(image: np.ndarray, width: int, height: int, scale: float) -> np.ndarray:
    """``image`` scaled by ``scale`` and centred on a black ``(height, width, 3)`` frame
    (cropped where it is larger)."""
    resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    frame = np.zeros((height, width, 3), np.uint8)
    rh, rw = resized.shape[:2]
    sy, sx = max(0, (rh - height) // 2), max(0, (rw - width) // 2)
    dy, dx = max(0, (height - rh) // 2), max(0, (width - rw) // 2)
    h, w = min(rh, height), min(rw, width)
    frame[dy:dy + h, dx:dx + w] = resized[sy:sy + h, sx:sx + w]
    return frame


def bench_image(runtime: RuntimeConfig, repeat: int = 20) -> dict[str, object]:
    """Run the cases and return the figures (no printing)."""
    from ..api import Session
    from ..commands import demo_portraits

    astronaut, hopper = demo_portraits()
    variants = {"alpha": SwapConfig(), "poisson": SwapConfig(blend="poisson")}
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {default_threads()} threads, {platform.python_version()}",
        "cases": {},
    }
    with Session(SwapConfig(), runtime) as session:
        source = session.load_source(astronaut)
        face_width = session.analyse(hopper)[0].width
        cases = {"720p": portrait_frame(hopper, 1280, 720, FACE_PX * 720 / 1080 / face_width),
                 "1080p": portrait_frame(hopper, 1920, 1080, FACE_PX / face_width)}
        for case, frame in cases.items():
            for vname, cfg in variants.items():
                session.swap(source, frame, cfg)  # warm-up
                runs = [session.swap(source, frame, cfg) for _ in range(repeat)]
                med = {s: float(np.median([r.times_ms.get(s, 0.0) for r in runs])) for s in STAGES}
                face = runs[0].swapped[0] if runs[0].swapped else None
                med["analysis"] = med["detect"] + med["mesh"]
                med["swap+blend"] = med["swap"] + med["blend"]
                med["total"] = sum(med[s] for s in STAGES)
                report["cases"][f"{case} {vname}"] = {  # type: ignore[index]
                    "face_px": round(face.width) if face else 0,
                    "ms": {k: round(v, 2) for k, v in med.items()},
                }
    report["config"] = dataclasses.asdict(SwapConfig())
    return report


def format_report(report: dict[str, object]) -> str:
    """A plain table of the figures."""
    cols = ["detect", "mesh", "embed", "swap", "blend", "analysis", "swap+blend", "total"]
    lines = [f"machine: {report['machine']}", f"{'case':<16}{'face':>6}" + "".join(f"{c:>11}" for c in cols)]
    for name, row in report["cases"].items():  # type: ignore[union-attr]
        lines.append(f"{name:<16}{row['face_px']:>5}p" + "".join(f"{row['ms'][c]:>11.2f}" for c in cols))
    lines.append("(ms per frame, one face, median; analysis = detect + mesh; embed is only needed for "
                 "reference selection)")
    return "\n".join(lines)


def run_benchmark(runtime: RuntimeConfig, repeat: int = 20, json_path: Path | None = None) -> int:
    """The ``benchmark`` command: print the table, optionally write JSON."""
    report = bench_image(runtime, repeat)
    print(format_report(report))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2))
    return 0
