"""Milliseconds per call of each blend function on a 450x550 face crop (median of 30 runs).

Run: ``python benchmarks/bench_blend.py``. Uses the real portrait from ../shared/media when
present (synthetic arrays otherwise). Prints figures only; nothing is asserted.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapline.blend import color, masks, multiband, paste, poisson  # noqa: E402
from swapline.face.mesh_topology import FACE_OVAL  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
H, W = 550, 450
RUNS = 30


def _inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a, b = MEDIA / "src_obama.jpg", MEDIA / "src_biden.jpg"
    if a.is_file() and b.is_file():
        face = cv2.resize(cv2.imread(str(a))[0:480, 320:700], (W, H))
        target = cv2.resize(cv2.imread(str(b))[80:580, 370:770], (W, H))
        source = "real portraits"
    else:
        rng = np.random.default_rng(0)
        face = rng.integers(60, 200, (H, W, 3), dtype=np.uint8)
        target = rng.integers(60, 200, (H, W, 3), dtype=np.uint8)
        source = "synthetic"
    print(f"inputs: {source}, crop {W}x{H}, cv2 threads {cv2.getNumThreads()}")
    return face, target, _mesh()


def _mesh() -> np.ndarray:
    """A plausible frontal mesh for the named outlines (see tests/test_blend_masks.py)."""
    tests = Path(__file__).resolve().parents[1] / "tests"
    sys.path.insert(0, str(tests))
    from test_blend_masks import synthetic_mesh  # noqa: PLC0415

    return synthetic_mesh() * np.array([W / 320.0, H / 400.0])


def _time(fn, *args, **kwargs) -> float:
    fn(*args, **kwargs)
    samples = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fn(*args, **kwargs)
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000.0


def main() -> None:
    face, target, mesh = _inputs()
    shape = (H, W)
    oval = masks.area_mask(shape, mesh, ["face"])
    width = float(np.ptp(mesh[list(FACE_OVAL), 0]))
    soft = masks.feather(oval, 0.03 * width, 0.035 * width)
    skin = np.zeros(shape, bool)
    skin[int(0.55 * H):int(0.65 * H), int(0.25 * W):int(0.35 * W)] = True
    skin[int(0.55 * H):int(0.65 * H), int(0.65 * W):int(0.75 * W)] = True
    frame = np.zeros((1080, 1920, 3), np.uint8)
    rows = [
        ("polygon_mask (face oval)", masks.polygon_mask, (shape, mesh[:36])),
        ("hull_mask (nose)", masks.hull_mask, (shape, mesh[:24])),
        ("box_mask (blur 3.5 %)", masks.box_mask, (shape, (40, 50, 410, 500), (0.05, 0, 0, 0), 0.035)),
        ("area_mask face", masks.area_mask, (shape, mesh, ["face"])),
        ("area_mask all 7", masks.area_mask, (shape, mesh, ["face", "upper-face", "lower-face", "eyes",
                                                             "brows", "nose", "mouth"])),
        ("feather (erode 3 %, blur 3.5 %)", masks.feather, (oval, 0.03 * width, 0.035 * width)),
        ("combine_min (3 masks)", masks.combine_min, ([oval, soft, oval],)),
        ("lab_transfer", color.lab_transfer, (face, target, skin)),
        ("histogram_match", color.histogram_match, (face, target, skin)),
        ("yuv_luma", color.yuv_luma, (face, target, skin)),
        ("poisson_blend (feathered mask)", poisson.poisson_blend, (face, target, soft)),
        ("multiband_blend (feathered mask)", multiband.multiband_blend, (face, target, soft, width)),
        ("seamlessClone (reference)", cv2.seamlessClone,
         (face, target, (oval > 0.5).astype(np.uint8) * 255, (W // 2, H // 2), cv2.NORMAL_CLONE)),
        ("paste_back into 1080p", paste.paste_back, (frame, target, soft, (700, 200))),
        ("crop_with_padding (inside)", paste.crop_with_padding, (frame, (700, 200, 700 + W, 200 + H))),
        ("crop_with_padding (over edge)", paste.crop_with_padding, (frame, (-100, 700, -100 + W, 700 + H))),
    ]
    for name, fn, args in rows:
        print(f"{name:34s} {_time(fn, *args):8.2f} ms")


if __name__ == "__main__":
    main()
