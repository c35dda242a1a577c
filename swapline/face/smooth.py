"""Temporal filters so swapped faces hold still: One-Euro landmarks and EMA colour statistics per track.

Face-mesh smoothing is *scale-free*: the One-Euro speed term is measured in face sizes per second
(speed in pixels divided by the face's size, ``sqrt(w * h)`` of its box), so the filter treats a
60-px and a 400-px face alike (the filter is linear in ``x`` for a given cutoff, so this equals
filtering coordinates divided by the face size, without the noise a per-frame division by a
jittering size would add).

Defaults (:data:`MESH_MIN_CUTOFF`, :data:`MESH_BETA`, chosen on synthetic tracks at 30 fps with
landmark noise of 0.5 % of the face size and head motion of 0.25–2 face sizes per second):
``min_cutoff = 0.5 Hz`` cuts the frame-to-frame jitter of a still face about 8x; ``beta = 10``
(per face size) opens the cutoff to about 5.5 Hz at 0.5 face/s and 20 Hz at 2 face/s, so the
steady lag of a moving face, ``v / (2 pi (min_cutoff + beta v))``, never exceeds
``1 / (2 pi beta)`` = 1.6 % of its size (measured: about 1 %).
"""

from __future__ import annotations

import math

import numpy as np

from .types import Face

# Chosen on real clips (2026-11-25): on the 720p talking clip the output's flicker (frame-to-frame
# change in the face box / the input's) went 1.14 -> 1.08 (Biden as source) against (0.5, 10);
# on the head-turning Intel clip the 95th percentile of the output-vs-input landmark error grew
# only 2.6 -> 2.8 % of the face width. The lag bound is 1 / (2 pi beta) = 5 % of the face size.
MESH_MIN_CUTOFF = 0.2  # Hz: smoothing of a still face
MESH_BETA = 3.0  # per (face size per second): how fast the cutoff opens with motion
MESH_D_CUTOFF = 1.0  # Hz: smoothing of the speed estimate


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    """Smoothing factor of a first-order low-pass with ``cutoff`` Hz over ``dt`` seconds."""
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro filter (Casiez et al. 2012) over arrays of any shape (e.g. a (468, 3) mesh or
    (5, 2) points), every value with its own adaptive cutoff, all at once (vectorised).

    ``cutoff = min_cutoff + beta * |smoothed speed| / scale`` per value: ``min_cutoff`` (Hz) sets
    the smoothing at rest, ``beta`` how fast it opens with speed (in ``scale`` units per second;
    ``scale=1`` means the units of ``x``), ``d_cutoff`` (Hz) the smoothing of the speed itself.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0):
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next call returns its input."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """The filtered ``x`` at time ``t`` (seconds, increasing). The first call (or one after a
        shape change) returns ``x``; a call with no time elapsed returns the last output.
        ``scale``: the size that speeds are measured in (e.g. the face size in pixels)."""
        x = np.asarray(x)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        xf = x.astype(np.float64)
        if self._x is None or self._x.shape != xf.shape:
            self._x, self._dx, self._t = xf.copy(), np.zeros_like(xf), float(t)
            return xf.astype(dtype)
        dt = float(t) - self._t
        if dt <= 0:
            return self._x.astype(dtype)
        speed = (xf - self._x) / dt
        self._dx += _alpha(self.d_cutoff, dt) * (speed - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx) / max(float(scale), 1e-9)
        self._x += _alpha(cutoff, dt) * (xf - self._x)
        self._t = float(t)
        return self._x.astype(dtype)


class EmaStats:
    """Exponential moving average of small statistic vectors (e.g. LAB mean/std of skin) per
    track, so colour transfer does not flicker. The first call (or one after a shape change)
    returns its input; then ``y += alpha * (x - y)``."""

    def __init__(self, alpha: float = 0.2):
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = float(alpha)
        self._y: np.ndarray | None = None

    def reset(self) -> None:
        self._y = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
        if self._y is None or self._y.shape != x.shape:
            self._y = x.astype(np.float64)
        else:
            self._y += self.alpha * (x.astype(np.float64) - self._y)
        return self._y.astype(dtype)


class _TrackState:
    __slots__ = ("colour", "kps", "last_seen", "mesh")

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float, colour_alpha: float, frame: int):
        self.mesh = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.kps = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.colour = EmaStats(colour_alpha)
        self.last_seen = frame


def face_scale(face: Face) -> float:
    """The face's size in pixels, ``sqrt(w * h)`` of its box (at least 1)."""
    return max(math.sqrt(max(face.width, 0.0) * max(face.height, 0.0)), 1.0)


def _follow_box(box: np.ndarray, raw: np.ndarray, smoothed: np.ndarray) -> np.ndarray:
    """``box`` moved and scaled the way the points ``raw (n, 2)`` became ``smoothed``."""
    c_raw, c_new = raw.mean(0), smoothed.mean(0)
    spread_raw = float(np.sqrt(((raw - c_raw) ** 2).sum(1).mean()))
    spread_new = float(np.sqrt(((smoothed - c_new) ** 2).sum(1).mean()))
    k = spread_new / spread_raw if spread_raw > 1e-6 else 1.0
    box = np.asarray(box, dtype=np.float64).reshape(2, 2)
    return ((box - c_raw) * k + c_new).reshape(4).astype(np.float32)


class TrackSmoother:
    """One OneEuroFilter for the mesh, one for the five points and an EmaStats for colour
    statistics per track id; ids not seen for ``forget_after`` frames are forgotten.

    ``min_cutoff`` is in Hz, ``beta`` per face size (speeds are divided by :func:`face_scale`),
    so faces of any size are smoothed alike (see the module notes for the defaults).
    """

    def __init__(self, fps: float, min_cutoff: float = MESH_MIN_CUTOFF, beta: float = MESH_BETA,
                 forget_after: int = 60, d_cutoff: float = MESH_D_CUTOFF, colour_alpha: float = 0.2):
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.fps = float(fps)
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.forget_after = int(forget_after)
        self.colour_alpha = float(colour_alpha)
        self._states: dict[int, _TrackState] = {}
        self._frame = 0

    @property
    def track_ids(self) -> list[int]:
        """Ids with filter state."""
        return sorted(self._states)

    def _state(self, track_id: int, frame: int) -> _TrackState:
        state = self._states.get(track_id)
        if state is None:
            state = _TrackState(self.min_cutoff, self.beta, self.d_cutoff, self.colour_alpha, frame)
            self._states[track_id] = state
        return state

    def _forget(self, frame: int) -> None:
        self._frame = max(self._frame, frame)
        for k in [k for k, s in self._states.items() if self._frame - s.last_seen > self.forget_after]:
            del self._states[k]

    def smooth(self, face: Face, frame_index: int) -> Face:
        """``face`` with its mesh and five points smoothed over time (its box moved and scaled
        as its points were), by its ``track_id``; a face without one is returned unchanged."""
        if face.track_id is None:
            return face
        self._forget(frame_index)
        state = self._state(face.track_id, frame_index)
        if frame_index < state.last_seen:  # time went back (a new clip): start over
            state.mesh.reset()
            state.kps.reset()
        state.last_seen = frame_index
        t, scale = frame_index / self.fps, face_scale(face)
        kps = state.kps(face.kps, t, scale)
        changes: dict[str, object] = {"kps": kps}
        if face.mesh is not None:
            mesh = state.mesh(face.mesh, t, scale)
            changes["mesh"] = mesh
            raw_pts, new_pts = face.mesh[:, :2], mesh[:, :2]
        else:
            raw_pts, new_pts = face.kps, kps
        changes["box"] = _follow_box(face.box, np.asarray(raw_pts, np.float64), np.asarray(new_pts, np.float64))
        return face.with_(**changes)

    def colour(self, track_id: int, stats: np.ndarray) -> np.ndarray:
        """EMA of colour statistics (e.g. ``(2, 3)`` LAB mean/std) for ``track_id``."""
        state = self._state(track_id, self._frame)
        return state.colour(stats)
