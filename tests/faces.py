"""Faces known without running the detector: the five key points of the faces in two shared
photos (from YuNet on ``src_obama.jpg`` and ``multi_two_people_obama_biden.jpg``)."""

from __future__ import annotations

import numpy as np

from swapline.face.types import Face

OBAMA_KPS = [[439.7, 213.7], [555.2, 213.8], [496.0, 267.1], [440.2, 318.2], [546.7, 320.9]]
TWO_KPS = [
    [[289.7, 96.9], [361.5, 99.0], [331.3, 135.2], [289.5, 166.5], [350.9, 168.9]],
    [[839.5, 132.9], [905.7, 132.2], [876.9, 176.9], [842.2, 203.0], [895.6, 204.9]],
]


def face_from_kps(kps: list[list[float]]) -> Face:
    """A :class:`Face` with these key points and a box 40 px around them."""
    k = np.array(kps, np.float32)
    return Face(box=np.r_[k.min(0) - 40, k.max(0) + 40].astype(np.float32), score=0.9, kps=k)
