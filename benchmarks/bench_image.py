"""Per-stage milliseconds of the image swap on the shared test photos (prints, never asserts).

Run: ``python benchmarks/bench_image.py [--repeat N]``. Source: src_biden.jpg. Targets: the
Obama portrait letterboxed to 720p and 1080p (face ≈190 / 290 px), the same portrait scaled so
the face is ≈400 px in a 1080p frame, and the six-face group photo with ``many``. The source's
analysis is done once and not counted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapline.api import Session  # noqa: E402
from swapline.bench.image import VARIANTS, format_report, machine, measure, portrait_frame  # noqa: E402
from swapline.config import SwapConfig  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if not MEDIA.is_dir():
        print(f"no test media at {MEDIA}", file=sys.stderr)
        return 1
    read = lambda name: cv2.imread(str(MEDIA / name))  # noqa: E731
    with Session() as session:
        source = read("src_biden.jpg")
        portrait = read("src_obama.jpg")
        face = session.analyse(portrait)[0]
        rows = measure(session, source, {
            "720p": read("bench_obama_720p.jpg"),
            "1080p": read("bench_obama_1080p.jpg"),
            "1080p-400": portrait_frame(portrait, 1920, 1080, 400 / face.width, face.center),
        }, VARIANTS, args.repeat)
        rows |= measure(session, source, {"group6": read("multi_t1_group6.jpg")},
                        {"many": SwapConfig(face_selector_mode="many")}, args.repeat)
    report = {"machine": machine(), "cases": rows}
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
