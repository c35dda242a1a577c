"""Faces over time: detection cadence, mesh following, tracking, smoothing and selection.

Detection runs every ``detect_interval`` frames (in the detect stage, ahead of time). In between,
each face is followed by re-running the mesh on a crop predicted from its previous mesh; when the
mesh loses a face (low presence) the frame is detected again on the spot. The tracker gives
every face an id over time, identities are computed once per new face, meshes are smoothed per
track, and the selector follows the chosen faces by track id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..blend.parsing import FaceParse
from ..config import SwapConfig
from ..face.align import kps_from_mesh
from ..face.analyse import FaceAnalyser
from ..face.landmarks import roi_differs, roi_from_face, roi_from_mesh
from ..face.select import identity_distance, order_faces
from ..face.smooth import TrackSmoother
from ..face.track import FaceTracker, TrackerConfig
from ..face.types import Face
from ..runtime.timing import StageTimes, timed

PRESENCE = 0.5  # mesh presence under which a followed face counts as lost


@dataclass
class FrameWork:
    """One frame on its way through the stages.

    Attributes:
        index: position in the output (0-based).
        pts: the input's presentation time stamp (or None for images).
        image: ``(H, W, 3) uint8`` BGR target frame.
        detections: the detector's faces when this frame was a detection frame, else None.
        faces: tracked (smoothed) faces with meshes, after the follow stage.
        chosen: the faces to swap.
        output: the swapped frame, after the swap stage.
        changed: ``(H, W) bool`` pixels that may differ from ``image``.
        parses: per chosen face its :class:`~swapline.blend.parsing.FaceParse`, after the
            parse stage (None: no face parser in use).
        times: per-stage milliseconds spent on this frame.
    """

    index: int
    pts: int | None
    image: np.ndarray
    detections: list[Face] | None = None
    faces: list[Face] = field(default_factory=list)
    chosen: list[Face] = field(default_factory=list)
    output: np.ndarray | None = None
    changed: np.ndarray | None = None
    parses: list[FaceParse | None] | None = None
    times: StageTimes = field(default_factory=StageTimes)


def mesh_box(mesh: np.ndarray) -> np.ndarray:
    """``(4,) float32`` x1 y1 x2 y2 around a ``(468, 2+)`` mesh."""
    pts = mesh[:, :2]
    return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class TrackSelector:
    """Which tracked faces to swap, decided once and then followed by track id.

    ``one`` locks onto the first face in order and follows it; ``reference`` takes the identity
    of the face at ``reference_face_position`` in the first frame with enough faces (or a given
    embedding) and swaps every face whose track identity is within ``reference_face_distance``;
    ``many`` swaps all faces.
    """

    def __init__(self, config: SwapConfig, reference: np.ndarray | None = None):
        self.config = config
        self.reference = reference
        self.reference_track: int | None = None
        self.locked: int | None = None

    @property
    def needs_identity(self) -> bool:
        """Whether faces must carry identities for this selection."""
        return self.config.face_selector_mode == "reference"

    def choose(self, faces: Sequence[Face], tracker: FaceTracker) -> list[Face]:
        cfg = self.config
        ordered = order_faces(faces, cfg.face_selector_order)
        if cfg.face_selector_mode == "many":
            return ordered
        if cfg.face_selector_mode == "one":
            if self.locked is None or all(f.track_id != self.locked for f in ordered):
                self.locked = ordered[0].track_id if ordered else None
            return [f for f in ordered if f.track_id == self.locked]
        if self.reference is None and self.reference_track is None and len(ordered) > cfg.reference_face_position:
            ref_face = ordered[cfg.reference_face_position]
            self.reference_track = ref_face.track_id
            ident = tracker.identity(ref_face.track_id) if ref_face.track_id is not None else None
            self.reference = ident if ident is not None else ref_face.embedding
        chosen = []
        for f in ordered:
            if self.reference_track is not None and f.track_id == self.reference_track:
                chosen.append(f)
                continue
            ident = tracker.identity(f.track_id) if f.track_id is not None else None
            ident = ident if ident is not None else f.embedding
            if self.reference is not None and ident is not None and \
                    identity_distance(ident, self.reference) <= cfg.reference_face_distance:
                chosen.append(f)
        return chosen


class FaceFollower:
    """The sequential part of the analysis: follow, track, identify, smooth and select.

    One instance per job (its state is the previous frame's faces, the tracker and the smoother).
    """

    def __init__(self, analyser: FaceAnalyser, config: SwapConfig, *, fps: float,
                 reference: np.ndarray | None = None, still: bool = False):
        self.analyser = analyser
        self.config = config
        self.still = still
        # ByteTrack's two stages: detections from `low` up to the detector score can only extend
        # existing tracks (a face half hidden for a moment); at or above it they may start one
        self.low = min(0.3, config.face_detector_score)
        self.tracker = FaceTracker(TrackerConfig(high_score=config.face_detector_score, low_score=self.low))
        self.smoother = TrackSmoother(fps=fps)
        self.selector = TrackSelector(config, reference)
        self._previous: list[Face] = []

    def detect(self, image: np.ndarray) -> list[Face]:
        """The detector's faces of ``image`` (the detect stage calls this ahead of time); in
        video also the low-score ones, which may only extend a track."""
        threshold = self.config.face_detector_score if self.still else self.low
        return self.analyser.detector.detect([image], threshold, self.config.face_detector_size)[0]

    def process(self, work: FrameWork) -> FrameWork:
        """Find, track, smooth and select the faces of ``work`` (in place; returns it)."""
        image, times = work.image, work.times
        faces: list[Face] = []
        if work.detections is None and self._previous:
            with timed(times, "mesh"):
                faces = self._follow(image, self._previous, work.index)
            if len(faces) < len(self._previous):  # a face got away: look again now
                with timed(times, "detect"):
                    work.detections = self.detect(image)
        if work.detections is not None:
            with timed(times, "mesh"):
                faces, new = self._landmark_detections(image, work.detections, self._previous)
            if new and self._wants_identities(faces):
                with timed(times, "embed"):
                    embedded = self.analyser.recognizer.embed(image, [faces[i] for i in new])
                for i, f in zip(new, embedded):
                    faces[i] = f
        with timed(times, "track"):
            tracked = [f for f in self.tracker.update(faces, work.index) if f.mesh is not None]
            # follow unconfirmed faces too, so a face that appears mid-video can be confirmed
            # between detection frames; only confirmed ones are smoothed and swapped
            self._previous = tracked + [f for f in self.tracker.pending if f.mesh is not None]
            work.faces = [self.smoother.smooth(f, work.index) for f in tracked] if not self.still else tracked
            if self.selector.needs_identity and len(work.faces) > 1:
                self._identify_missing(image, work, times)
            work.chosen = self.selector.choose(work.faces, self.tracker)
        return work

    def _wants_identities(self, faces: Sequence[Face]) -> bool:
        # videos: always (re-identification keeps ids over exits); stills: only when it decides
        if not self.still:
            return True
        return self.selector.needs_identity and (len(faces) > 1 or self.selector.reference is not None)

    def _identify_missing(self, image: np.ndarray, work: FrameWork, times: StageTimes) -> None:
        missing = [i for i, f in enumerate(work.faces)
                   if f.embedding is None and (f.track_id is None or self.tracker.identity(f.track_id) is None)]
        if missing:
            with timed(times, "embed"):
                done = self.analyser.recognizer.embed(image, [work.faces[i] for i in missing])
            for i, f in zip(missing, done):
                work.faces[i] = f

    def _follow(self, image: np.ndarray, previous: Sequence[Face], frame_index: int) -> list[Face]:
        """Re-run the mesh on crops predicted from the previous meshes: each moved by its
        track's Kalman-predicted motion, so a fast-moving face stays inside its crop."""
        predicted = dict(self.tracker.predict(frame_index))
        rois = []
        for f in previous:
            shift = np.zeros(2)
            if f.track_id in predicted:
                box = predicted[f.track_id]
                shift = (box[:2] + box[2:]) / 2 - (f.box[:2] + f.box[2:]) / 2
            moved = f.mesh.copy()
            moved[:, :2] += shift.astype(np.float32)
            rois.append(roi_from_mesh(moved))
        meshes, scores = self.analyser.mesh.run([image] * len(rois), rois)
        out = []
        for prev, m, s in zip(previous, meshes, scores):
            if s >= PRESENCE:
                out.append(Face(box=mesh_box(m), score=float(s), kps=kps_from_mesh(m), mesh=m,
                                mesh_score=float(s), embedding=prev.embedding, track_id=prev.track_id))
        return out

    def _landmark_detections(self, image: np.ndarray, detections: Sequence[Face],
                             previous: Sequence[Face]) -> tuple[list[Face], list[int]]:
        """Meshes for this frame's detections: a detection that overlaps a face of the previous
        frame is cropped from that face's mesh (one pass, steady), a new one from its box (with
        the refining second pass). Returns the faces and the indices of the new ones."""
        rois, new, carried = [], [], []
        strong = self.config.face_detector_score
        kept = []
        for det in detections:
            best = max(previous, key=lambda p: _iou(mesh_box(p.mesh), det.box), default=None)
            overlaps = best is not None and _iou(mesh_box(best.mesh), det.box) > 0.3
            if det.score < strong and not overlaps:
                continue  # a weak detection may only extend a face we already follow
            kept.append((det, best if overlaps else None))
        detections = [d for d, _ in kept]
        for i, (det, best) in enumerate(kept):
            if best is not None:
                rois.append(roi_from_mesh(best.mesh))
                carried.append(best)
            else:
                rois.append(roi_from_face(det))
                carried.append(None)
                new.append(i)
        if not rois:
            return [], []
        meshes, scores = self.analyser.mesh.run([image] * len(rois), rois)
        # refine a new face from its first mesh when that mesh implies a different crop
        redo = [i for i in new if roi_differs(rois[i], roi_from_mesh(meshes[i]))]
        if redo:
            m2, s2 = self.analyser.mesh.run([image] * len(redo), [roi_from_mesh(meshes[i]) for i in redo])
            meshes[redo], scores[redo] = m2, s2
        faces = []
        keep_new = []
        for i, (det, m, s, prev) in enumerate(zip(detections, meshes, scores, carried)):
            if s < PRESENCE:
                continue
            if i in new:
                keep_new.append(len(faces))
            # boxes come from the mesh in every frame (detection or not), so tracking sees one
            # kind of box; the detector's five points stay for the identity crop
            faces.append(det.with_(box=mesh_box(m), mesh=m, mesh_score=float(s),
                                   embedding=prev.embedding if prev is not None else None))
        return faces, keep_new
