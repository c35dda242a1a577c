"""``swapline demo``: swap two public-domain portraits that ship with the dependencies into each
other, and the astronaut into a short clip made from Grace Hopper's portrait.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import tempfiles
from ..bench.portraits import demo_portraits
from ..config import RuntimeConfig, SwapConfig
from .options import add_progress_option, add_runtime_options, check_home, show_progress, swapline_home

DEMO_CLIP_SECONDS = 4
DEMO_CLIP_FPS = 25


def register(subparsers: Any) -> None:
    """Add ``demo`` (with the runtime options) to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("demo", help="swap two public-domain portraits that ship with the dependencies",
                              description="Swap scikit-image's astronaut (Eileen Collins) and matplotlib's "
                                          "Grace Hopper into each other and write the results to a folder.")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("swapline-demo"),
                   help="folder for the results (default: %(default)s)")
    add_progress_option(p)
    add_runtime_options(p)


def run(args: argparse.Namespace, runtime: RuntimeConfig) -> int:
    """``swapline demo``: the model cache must be usable; leftovers of killed runs are swept."""
    check_home(swapline_home())
    tempfiles.sweep(args.output_dir)
    return run_demo(args.output_dir, runtime, progress=show_progress(args.progress, quiet=False))


def run_demo(output_dir: Path, runtime: RuntimeConfig, *, progress: bool = True) -> int:
    """Swap the two demo portraits into each other, make a short zoom-and-pan clip of Grace
    Hopper and swap the astronaut into it; write inputs and results to ``output_dir``."""
    from ..api import Session
    from ..pipeline.image import write_image
    from ..video.clip import write_clip, zoom_pan_frames

    output_dir.mkdir(parents=True, exist_ok=True)
    astronaut, hopper = demo_portraits()
    print(f"swapline demo: preparing models (first run only) and swapping into {output_dir}/", file=sys.stderr)
    written: list[Path] = []
    with Session(SwapConfig(), runtime, progress=progress) as session:
        a = session.load_source(astronaut)
        h = session.load_source(hopper)
        into_hopper = session.swap(a, hopper)
        into_astronaut = session.swap(h, astronaut)
        for line in session.models.take_notices():  # e.g. the face parser could not be fetched
            print(f"swapline demo: {line}", file=sys.stderr)
        files = {
            "astronaut.png": astronaut,
            "grace_hopper.jpg": hopper,
            "astronaut_into_grace_hopper.jpg": into_hopper.image,
            "grace_hopper_into_astronaut.png": into_astronaut.image,
            "side_by_side.jpg": _side_by_side(astronaut, hopper, into_hopper.image, into_astronaut.image),
        }
        for name, img in files.items():
            write_image(output_dir / name, img)
            written.append(output_dir / name)
        clip = output_dir / "grace_hopper_clip.mp4"
        face = into_hopper.swapped[0] if into_hopper.swapped else None
        count = DEMO_CLIP_SECONDS * DEMO_CLIP_FPS
        write_clip(zoom_pan_frames(hopper, count, (640, 480), zoom=1.3, center=face.center if face else None),
                   clip, fps=DEMO_CLIP_FPS)
        swapped = output_dir / "astronaut_into_grace_hopper_clip.mp4"
        report = session.swap_video(a, clip, swapped, force=True, progress=progress)
        written += [clip, swapped]
    for path in written:
        print(path)
    print(f"video: {report.frames} frames at {report.fps:.1f} fps", file=sys.stderr)
    return 0


def _side_by_side(a: np.ndarray, b: np.ndarray, ab: np.ndarray, ba: np.ndarray) -> np.ndarray:
    """One picture: the two portraits on top, the two swaps under them, each 400 px high."""
    import cv2

    def fit(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (round(img.shape[1] * 400 / img.shape[0]), 400), interpolation=cv2.INTER_AREA)
    top = np.hstack([fit(a), fit(b)])
    bottom = np.hstack([fit(ba), fit(ab)])
    return np.vstack([top, bottom])

