"""Multi-face tracking over video frames: ByteTrack-style association plus identity re-identification.

Each track carries a constant-velocity Kalman filter on the box ``(cx, cy, w, h)`` (8-dim state
with velocities, as in SORT/ByteTrack; noise scaled by the box size so small and large faces
behave alike) and, when its faces have embeddings, a running-mean identity.

One :meth:`FaceTracker.update` per frame associates that frame's faces with the tracks:

1. **High-score faces** (``score >= high_score``) against confirmed tracks (tracked and lost),
   on the Kalman-*predicted* boxes (so crossing faces follow their velocity). Cost
   ``(1 - IoU) + IDENTITY_WEIGHT * identity distance`` (the identity term only where face and
   track both have an embedding, else the neutral ``reid_distance``); a pair is allowed only if
   ``IoU >= match_iou`` and, with embeddings on both sides, identity distance
   ``<= IDENTITY_GATE`` (two strangers never share a track however close their boxes).
2. **Low-score faces** (``low_score <= score < high_score``) against the confirmed tracks left
   over, by IoU alone (their embeddings are unreliable) with the stricter ``LOW_MATCH_IOU``
   (ByteTrack's 0.5: these faces are less trustworthy, and they can only *extend* a track; they
   never start one and never update its identity).
3. Remaining high-score faces against tentative tracks (``IoU >= match_iou``); a tentative track
   becomes confirmed after ``birth_frames`` consecutive matches, and is dropped at its first miss.
4. Remaining high-score faces with an embedding are re-identified against lost tracks and
   recently removed ones (``identity distance <= reid_distance``, within ``reid_memory`` frames of
   removal): the face takes over that id, confirmed at once, its Kalman state restarted at the
   face. The others start tentative tracks.

Assignments are optimal (a small Hungarian solver, :func:`hungarian`) on the gated cost matrix:
the number of allowed pairs is maximised first, then the total cost.

A confirmed track that is not matched keeps predicting (bridging missed detections) and is
removed after ``max_lost`` frames unmatched; its identity is then remembered for ``reid_memory``
frames.

**First-frame rule**: faces of the tracker's *first* ``update`` call (frame 0 of a video, or a
single image) start confirmed tracks at once, low-score ones included (there is nothing to
extend yet, and the caller asked for those faces) — as ByteTrack activates first-frame tracks.
After that, a new face is returned only once its track is confirmed (``birth_frames``
consecutive updates with it). :attr:`FaceTracker.pending` holds the faces of tentative tracks
and :meth:`FaceTracker.predict` lists tentative tracks too, so a caller that follows faces
between detections can follow a new face until it is confirmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .types import Face

IDENTITY_WEIGHT = 0.5  # identity distance (0..2) weight against 1 - IoU (0..1) in the first-stage cost
IDENTITY_GATE = 0.8  # faces this far (1 - cosine) from a track's identity never join it by IoU
LOW_MATCH_IOU = 0.5  # second stage (low-score faces): stricter IoU, no identity term
IDENTITY_WINDOW = 30  # running mean of embeddings over at most this many faces (then an EMA of 1/30)
_BLOCKED = 1e6  # cost of a forbidden pair


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker thresholds.

    Attributes:
        high_score: faces at or above this score take part in the first stage and may start tracks.
        low_score: faces from this score up to ``high_score`` only extend confirmed tracks
            (second stage, IoU at least ``LOW_MATCH_IOU`` = 0.5); lower ones are ignored.
        match_iou: least IoU between a face and a track's predicted box to associate them
            (first and third stages).
        birth_frames: consecutive matches after which a new track is confirmed (hysteresis).
        max_lost: frames unmatched after which a confirmed track is removed; until then its
            Kalman prediction continues, bridging missed detections.
        reid_distance: identity distance (1 - cosine) under which a new face takes over a lost
            or removed track's id.
        reid_memory: frames a removed track's identity is remembered for re-identification.
    """

    high_score: float = 0.6
    low_score: float = 0.3
    match_iou: float = 0.3
    birth_frames: int = 2
    max_lost: int = 30
    reid_distance: float = 0.45
    reid_memory: int = 300


# --------------------------------------------------------------------------- assignment


def hungarian(cost: np.ndarray) -> list[tuple[int, int]]:
    """Minimum-cost assignment of a rectangular ``(n, m)`` cost matrix (Kuhn–Munkres with
    potentials, O(n²m)). Returns ``min(n, m)`` ``(row, column)`` pairs sorted by row."""
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2 or cost.size == 0:
        return []
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    n, m = cost.shape
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)  # p[j]: row (1-based) assigned to column j; column 0 is virtual
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = p[j0]
            free = ~used
            free[0] = False
            reduced = np.empty(m + 1)
            reduced[0] = np.inf
            reduced[1:] = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (reduced < minv)
            minv[better] = reduced[better]
            way[better] = j0
            masked = np.where(free, minv, np.inf)
            j1 = int(np.argmin(masked))
            delta = masked[j1]
            u[p[used]] += delta
            v[used] -= delta
            minv[free] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
    pairs = [(int(p[j]) - 1, j - 1) for j in range(1, m + 1) if p[j]]
    if transposed:
        pairs = [(c, r) for r, c in pairs]
    return sorted(pairs)


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """Optimal pairs of a gated cost matrix (forbidden pairs hold ``_BLOCKED``), forbidden ones left out."""
    return [(r, c) for r, c in hungarian(cost) if cost[r, c] < _BLOCKED]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a (n, 4)`` with every box of ``b (m, 4)`` (x1 y1 x2 y2)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    return (x / (np.linalg.norm(x) + 1e-12)).astype(np.float32)


# --------------------------------------------------------------------------- Kalman filter

_STD_POS = 1.0 / 20  # position noise, relative to the box size (ByteTrack's weights)
_STD_VEL = 1.0 / 160  # velocity noise, relative to the box size
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)


def _to_xywh(box: np.ndarray) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)])


def _to_box(xywh: np.ndarray) -> np.ndarray:
    cx, cy, w, h = xywh[:4]
    w, h = max(w, 1e-3), max(h, 1e-3)
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dtype=np.float32)


def _size(mean: np.ndarray) -> np.ndarray:
    w, h = max(mean[2], 1.0), max(mean[3], 1.0)
    return np.array([w, h, w, h])


def _kf_init(box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = _to_xywh(box)
    mean = np.concatenate([z, np.zeros(4)])
    s = _size(mean)
    std = np.concatenate([2 * _STD_POS * s, 10 * _STD_VEL * s])
    return mean, np.diag(std**2)


def _kf_predict(mean: np.ndarray, cov: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(max(int(steps), 0)):
        s = _size(mean)
        q = np.diag(np.concatenate([_STD_POS * s, _STD_VEL * s]) ** 2)
        mean = _F @ mean
        cov = _F @ cov @ _F.T + q
    return mean, cov


def _kf_update(mean: np.ndarray, cov: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = _to_xywh(box)
    r = np.diag((_STD_POS * _size(mean)) ** 2)
    s = _H @ cov @ _H.T + r
    gain = np.linalg.solve(s, (cov @ _H.T).T).T
    mean = mean + gain @ (z - _H @ mean)
    cov = cov - gain @ s @ gain.T
    return mean, (cov + cov.T) / 2


# --------------------------------------------------------------------------- tracker


class _Track:
    """One track's state: Kalman mean/covariance at ``frame``, hit count and identity."""

    __slots__ = ("confirmed", "cov", "embedding", "frame", "hits", "id", "last_seen", "mean", "n_embeddings")

    def __init__(self, track_id: int, face: Face, frame: int, confirmed: bool):
        self.id = track_id
        self.mean, self.cov = _kf_init(face.box)
        self.frame = frame
        self.last_seen = frame
        self.hits = 1
        self.confirmed = confirmed
        self.embedding: np.ndarray | None = None
        self.n_embeddings = 0

    def advance(self, frame: int) -> None:
        self.mean, self.cov = _kf_predict(self.mean, self.cov, frame - self.frame)
        self.frame = max(self.frame, frame)

    def predicted(self, frame: int) -> np.ndarray:
        mean, _ = _kf_predict(self.mean, self.cov, frame - self.frame)
        return _to_box(mean)

    def correct(self, face: Face, frame: int, *, restart: bool = False) -> None:
        if restart:
            self.mean, self.cov = _kf_init(face.box)
        else:
            self.mean, self.cov = _kf_update(self.mean, self.cov, face.box)
        self.frame = frame
        self.last_seen = frame

    def add_identity(self, embedding: np.ndarray) -> None:
        e = _unit(embedding)
        if self.embedding is None:
            self.embedding, self.n_embeddings = e, 1
            return
        self.n_embeddings += 1
        w = 1.0 / min(self.n_embeddings, IDENTITY_WINDOW)
        self.embedding = _unit((1 - w) * self.embedding + w * e)


def _identity_distances(embeddings: Sequence[np.ndarray | None], identities: Sequence[np.ndarray | None]) -> np.ndarray:
    """``(n, m)`` 1 - cosine of unit-normalised embeddings; NaN where either side is missing."""
    out = np.full((len(embeddings), len(identities)), np.nan)
    rows = [i for i, e in enumerate(embeddings) if e is not None]
    cols = [j for j, e in enumerate(identities) if e is not None]
    if rows and cols:
        a = np.stack([_unit(e) for e in embeddings if e is not None])
        b = np.stack([_unit(e) for e in identities if e is not None])
        out[np.ix_(rows, cols)] = 1.0 - a @ b.T
    return out


class FaceTracker:
    """Gives faces stable ids over the frames of one video (see the module notes for the rules).

    Faces' incoming ``track_id`` is ignored (the tracker decides); feed frames in increasing
    ``frame_index`` order (gaps are fine: the Kalman prediction spans them).
    """

    def __init__(self, config: TrackerConfig = TrackerConfig()):
        self.config = config
        self._tracks: list[_Track] = []
        self._memory: dict[int, tuple[np.ndarray, int]] = {}  # removed id -> (identity, frame removed)
        self._next_id = 0
        self._updates = 0
        self._pending: list[Face] = []

    # ------------------------------------------------------------------ queries

    @property
    def live_ids(self) -> list[int]:
        """Ids of every live track: confirmed ones (tracked or lost) and tentative ones."""
        return sorted(t.id for t in self._tracks)

    def predict(self, frame_index: int) -> list[tuple[int, np.ndarray]]:
        """``(track_id, predicted box (4,) float32)`` of every live track (tentative ones included,
        so new faces can be followed until confirmed) at ``frame_index``; state is not changed."""
        return [(t.id, t.predicted(frame_index)) for t in sorted(self._tracks, key=lambda t: t.id)]

    def identity(self, track_id: int) -> np.ndarray | None:
        """The track's mean identity (unit ``(128,)`` float32), also for recently removed
        tracks; None when the track has seen no embedding (or is unknown)."""
        for t in self._tracks:
            if t.id == track_id:
                return None if t.embedding is None else t.embedding.copy()
        if track_id in self._memory:
            return self._memory[track_id][0].copy()
        return None

    @property
    def pending(self) -> list[Face]:
        """The last update's faces that joined *tentative* tracks (not returned by ``update``),
        with ``track_id`` and filtered box set: a caller that follows faces between detections
        should follow these too, or a new face seen only on detection frames never gets the
        ``birth_frames`` consecutive matches that confirm it."""
        return list(self._pending)

    def is_confirmed(self, track_id: int) -> bool:
        """Whether ``track_id`` is a live, confirmed track."""
        return any(t.id == track_id and t.confirmed for t in self._tracks)

    # ------------------------------------------------------------------ update

    def update(self, faces: Sequence[Face], frame_index: int) -> list[Face]:
        """Associate this frame's faces with tracks.

        Returns, in input order, the faces of confirmed tracks (and, on the first call, every
        face with ``score >= low_score``), each with ``track_id`` set and its box replaced by the
        Kalman-filtered box. High-score faces with an embedding update their track's identity.
        """
        cfg = self.config
        first = self._updates == 0
        self._updates += 1
        self._expire(frame_index, before=True)
        for t in self._tracks:
            t.advance(frame_index)

        faces = list(faces)
        high = [i for i, f in enumerate(faces) if f.score >= cfg.high_score]
        low = [i for i, f in enumerate(faces) if cfg.low_score <= f.score < cfg.high_score]
        owner: dict[int, _Track] = {}  # face index -> track

        if first:  # first-frame rule: every usable face starts a confirmed track
            for i in sorted(high + low):
                owner[i] = self._birth(faces[i], frame_index, confirmed=True)
            return self._finish(faces, owner, frame_index)

        confirmed = [t for t in self._tracks if t.confirmed]
        tentative = [t for t in self._tracks if not t.confirmed]

        # 1. high-score faces vs confirmed tracks, IoU on predicted boxes + identity
        left_tracks = self._match(faces, high, confirmed, owner, frame_index, cfg.match_iou, use_identity=True)
        # 2. low-score faces extend the remaining confirmed tracks, by IoU alone
        self._match(faces, low, left_tracks, owner, frame_index, LOW_MATCH_IOU, use_identity=False)
        # 3. remaining high-score faces vs tentative tracks
        rest = [i for i in high if i not in owner]
        self._match(faces, rest, tentative, owner, frame_index, cfg.match_iou, use_identity=True)
        for t in tentative:
            if t.last_seen == frame_index:
                t.hits += 1
                t.confirmed = t.hits >= cfg.birth_frames
            else:  # a tentative track dies at its first miss
                self._tracks.remove(t)
        # 4. re-identification, then births
        rest = [i for i in high if i not in owner]
        self._reidentify(faces, rest, owner, frame_index)
        for i in rest:
            if i not in owner:
                owner[i] = self._birth(faces[i], frame_index, confirmed=cfg.birth_frames <= 1)
        return self._finish(faces, owner, frame_index)

    # ------------------------------------------------------------------ steps

    def _match(self, faces: list[Face], rows: list[int], tracks: list[_Track], owner: dict[int, _Track],
               frame: int, min_iou: float, *, use_identity: bool) -> list[_Track]:
        """Assign ``faces[rows]`` to ``tracks`` (gated Hungarian); records matches in ``owner``,
        corrects the matched tracks and returns the tracks left unmatched."""
        if not rows or not tracks:
            return list(tracks)
        boxes = np.stack([faces[i].box for i in rows])
        iou = iou_matrix(boxes, np.stack([_to_box(t.mean) for t in tracks]))
        cost = 1.0 - iou
        allowed = iou >= min_iou
        if use_identity:
            dist = _identity_distances([faces[i].embedding for i in rows], [t.embedding for t in tracks])
            known = ~np.isnan(dist)
            cost = cost + IDENTITY_WEIGHT * np.where(known, dist, self.config.reid_distance)
            allowed &= ~known | (np.nan_to_num(dist) <= IDENTITY_GATE)
        cost = np.where(allowed, cost, _BLOCKED)
        matched = set()
        for r, c in _assign(cost):
            i, t = rows[r], tracks[c]
            t.correct(faces[i], frame)
            embedding = faces[i].embedding
            if use_identity and embedding is not None and faces[i].score >= self.config.high_score:
                t.add_identity(embedding)
            owner[i] = t
            matched.add(c)
        return [t for c, t in enumerate(tracks) if c not in matched]

    def _reidentify(self, faces: list[Face], rows: list[int], owner: dict[int, _Track], frame: int) -> None:
        """New faces whose identity is near a lost or remembered track take that track's id."""
        rows = [i for i in rows if faces[i].embedding is not None]
        lost = [t for t in self._tracks if t.confirmed and t.last_seen < frame and t.embedding is not None]
        remembered = list(self._memory.items())
        if not rows or not (lost or remembered):
            return
        identities = [t.embedding for t in lost] + [e for _, (e, _) in remembered]
        dist = _identity_distances([faces[i].embedding for i in rows], identities)
        cost = np.where(dist <= self.config.reid_distance, dist, _BLOCKED)
        for r, c in _assign(cost):
            i = rows[r]
            new_embedding = faces[i].embedding
            assert new_embedding is not None
            if c < len(lost):
                t = lost[c]
                t.correct(faces[i], frame, restart=True)  # it may re-enter anywhere
            else:
                track_id, (embedding, _) = remembered[c - len(lost)]
                del self._memory[track_id]
                t = _Track(track_id, faces[i], frame, confirmed=True)
                t.embedding, t.n_embeddings = embedding, IDENTITY_WINDOW
                self._tracks.append(t)
            t.confirmed = True
            t.add_identity(new_embedding)
            owner[i] = t

    def _birth(self, face: Face, frame: int, *, confirmed: bool) -> _Track:
        t = _Track(self._next_id, face, frame, confirmed)
        self._next_id += 1
        if face.embedding is not None:
            t.add_identity(face.embedding)
        self._tracks.append(t)
        return t

    def _expire(self, frame: int, *, before: bool) -> None:
        """Remove tracks unmatched for ``max_lost`` frames (more than that before association,
        so a track may still match on its ``max_lost``-th missed frame); forget old identities."""
        cfg = self.config
        keep = []
        for t in self._tracks:
            missed = frame - t.last_seen
            if missed > cfg.max_lost or (not before and missed >= cfg.max_lost):
                if t.confirmed and t.embedding is not None:
                    self._memory[t.id] = (t.embedding, frame)
            else:
                keep.append(t)
        self._tracks = keep
        self._memory = {k: v for k, v in self._memory.items() if frame - v[1] <= cfg.reid_memory}

    def _finish(self, faces: list[Face], owner: dict[int, _Track], frame: int) -> list[Face]:
        self._expire(frame, before=False)
        out: list[Face] = []
        self._pending = []
        for i, f in enumerate(faces):
            t = owner.get(i)
            if t is not None:
                (out if t.confirmed else self._pending).append(f.with_(track_id=t.id, box=_to_box(t.mean)))
        return out
