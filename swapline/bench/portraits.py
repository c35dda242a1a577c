"""The two public-domain portraits that ship inside swapline's dependencies, the inputs of the
demo and of the benchmarks."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def demo_portraits() -> tuple[np.ndarray, np.ndarray]:
    """The two public-domain demo portraits as ``(H, W, 3) uint8`` BGR: scikit-image's
    astronaut (Eileen Collins, NASA) and matplotlib's Grace Hopper (US Navy)."""
    import cv2
    from matplotlib import cbook
    from skimage import data

    from ..pipeline.image import read_image

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    hopper_path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return astronaut, read_image(Path(str(hopper_path)), "demo portrait")
