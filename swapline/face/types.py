"""The face record every stage passes along."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in one image, in that image's pixel coordinates.

    Attributes:
        box: ``(4,) float32`` x1, y1, x2, y2.
        score: detector confidence in 0..1.
        kps: ``(5, 2) float32`` left eye, right eye, nose tip, left mouth corner, right mouth
            corner (left/right as seen in the image).
        mesh: ``(468, 3) float32`` FaceMesh points (x, y in image pixels, z in the same scale,
            smaller z is nearer the camera), or ``None`` before landmarking.
        mesh_score: face-presence probability reported by the mesh model (0..1), or ``None``.
        embedding: ``(128,) float32`` unit-length SFace identity embedding, or ``None``.
        track_id: id given by a tracker in video, or ``None``.
    """

    box: np.ndarray
    score: float
    kps: np.ndarray
    mesh: np.ndarray | None = None
    mesh_score: float | None = None
    embedding: np.ndarray | None = None
    track_id: int | None = None

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return float(self.box[0] + self.box[2]) / 2, float(self.box[1] + self.box[3]) / 2

    def with_(self, **changes: object) -> "Face":
        """A copy with some fields replaced (faces are immutable)."""
        return replace(self, **changes)
