"""Named parts of the 468-point FaceMesh: region outlines and the triangulation.

The index data below is derived from MediaPipe's ``face_mesh_connections.py``
(mediapipe 0.10.21), Copyright 2021 The MediaPipe Authors, licensed under the Apache License,
Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0). Outlines are the connection sets
chained into ordered loops; ``TRIANGLES`` (in ``mesh_triangles.py``) are the 3-cliques of
``FACEMESH_TESSELATION``.

"Left" and "right" are the subject's: ``LEFT_EYE`` is on the image's right in a frontal photo.
"""

from __future__ import annotations

import numpy as np

N_POINTS = 468

FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)
LIPS_OUTER: tuple[int, ...] = (
    0, 37, 39, 40, 185, 61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267,
)
LIPS_INNER: tuple[int, ...] = (
    13, 82, 81, 80, 191, 78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312,
)
LEFT_EYE: tuple[int, ...] = (
    249, 263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390,
)
RIGHT_EYE: tuple[int, ...] = (
    7, 33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163,
)
# Upper and lower eyelid runs of each eye loop, corner to corner (for filling the eye hole).
LEFT_EYE_UPPER: tuple[int, ...] = (263, 466, 388, 387, 386, 385, 384, 398, 362)
LEFT_EYE_LOWER: tuple[int, ...] = (263, 249, 390, 373, 374, 380, 381, 382, 362)
RIGHT_EYE_UPPER: tuple[int, ...] = (33, 246, 161, 160, 159, 158, 157, 173, 133)
RIGHT_EYE_LOWER: tuple[int, ...] = (33, 7, 163, 144, 145, 153, 154, 155, 133)
# Upper and lower inner-lip runs, mouth corner to mouth corner (for the inner-mouth fill).
LIPS_INNER_UPPER: tuple[int, ...] = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
LIPS_INNER_LOWER: tuple[int, ...] = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# Brows and nose are not simple loops in MediaPipe's data: use their points' convex hull.
LEFT_BROW: tuple[int, ...] = (276, 283, 282, 295, 285, 293, 300, 296, 334, 336)
RIGHT_BROW: tuple[int, ...] = (46, 53, 52, 65, 55, 63, 70, 66, 105, 107)
NOSE: tuple[int, ...] = (
    1, 4, 5, 195, 197, 6, 168, 2, 94, 19, 45, 220, 115, 48, 64, 98, 97,
    275, 440, 344, 278, 294, 327, 326,
)
# Points whose position hardly moves with expression: used to pose one mesh onto another.
STABLE_UPPER_FACE: tuple[int, ...] = (
    10, 109, 67, 103, 338, 297, 332, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1,
    33, 133, 263, 362, 127, 356, 234, 454, 93, 323, 162, 389, 21, 251,
)
# Cheek, nose and chin patches: skin statistics for colour transfer.
CHEEK_LEFT: tuple[int, ...] = (425, 411, 280, 352, 346, 347, 330, 266)
CHEEK_RIGHT: tuple[int, ...] = (205, 187, 50, 123, 117, 118, 101, 36)
NOSE_BRIDGE: tuple[int, ...] = (168, 6, 197, 195, 5, 4, 45, 275, 51, 281)
CHIN: tuple[int, ...] = (152, 175, 199, 200, 18, 83, 313, 377, 148, 171, 396)


def as_array(indices: tuple[int, ...]) -> np.ndarray:
    """``(K,) int64`` index array for fancy indexing a ``(468, D)`` mesh."""
    return np.asarray(indices, dtype=np.int64)


def strip(upper: tuple[int, ...], lower: tuple[int, ...]) -> np.ndarray:
    """Triangles ``(K, 3) int32`` filling the gap between two runs of equal length that share
    their end points (an eyelid pair, the inner lips); degenerate triangles are dropped."""
    if len(upper) != len(lower):
        raise ValueError("runs must have the same length")
    tris = []
    for i in range(len(upper) - 1):
        for t in ((upper[i], upper[i + 1], lower[i + 1]), (upper[i], lower[i + 1], lower[i])):
            if len(set(t)) == 3:
                tris.append(t)
    return np.asarray(tris, dtype=np.int32)


EYE_FILL: np.ndarray = np.concatenate(
    [strip(LEFT_EYE_UPPER, LEFT_EYE_LOWER), strip(RIGHT_EYE_UPPER, RIGHT_EYE_LOWER)]
)
MOUTH_FILL: np.ndarray = strip(LIPS_INNER_UPPER, LIPS_INNER_LOWER)
