"""Face tracker on synthetic box sequences: crossings, missed detections, exits and re-entries."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from swapline.face.track import FaceTracker, TrackerConfig, hungarian, iou_matrix
from swapline.face.types import Face

SIZE = 80.0


def face(cx: float, cy: float, *, score: float = 0.9, emb: np.ndarray | None = None, size: float = SIZE,
         rng: np.random.Generator | None = None, noise: float = 0.0) -> Face:
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2], np.float32)
    if rng is not None and noise:
        box = box + rng.normal(0, noise, 4).astype(np.float32)
    kps = np.tile(np.array([[cx, cy]], np.float32), (5, 1))
    return Face(box=box, score=score, kps=kps, embedding=emb)


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def embeddings(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` orthonormal identities."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(128, n)))
    return [q[:, i].astype(np.float32) for i in range(n)]


def noisy(e: np.ndarray, rng: np.random.Generator, amount: float = 0.3) -> np.ndarray:
    """``e`` plus noise: identity distance about 0.04 for amount 0.3."""
    return unit(e + rng.normal(0, amount / np.sqrt(128), 128))


def centre(f: Face) -> np.ndarray:
    return np.array(f.center)


# --------------------------------------------------------------------------- Hungarian


def brute_force(cost: np.ndarray) -> float:
    n, m = cost.shape
    if n <= m:
        return min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
    return brute_force(cost.T)


def test_hungarian_hand_made() -> None:
    # greedy (cheapest pair first: 0-0 at 1, then 2-1 at 3, then 1-2 at 9) totals 13;
    # the optimum is 0-1, 1-0, 2-2 at 2 + 2 + 3 = 7
    cost = np.array([[1.0, 2.0, 9.0],
                     [2.0, 9.0, 9.0],
                     [9.0, 3.0, 3.0]])
    pairs = hungarian(cost)
    assert pairs == [(0, 1), (1, 0), (2, 2)]
    assert sum(cost[r, c] for r, c in pairs) == pytest.approx(brute_force(cost)) == 7.0


@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (5, 2), (4, 6), (1, 1), (6, 6)])
def test_hungarian_optimal_random(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(5):
        cost = rng.uniform(0, 10, shape)
        pairs = hungarian(cost)
        assert len(pairs) == min(shape)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == min(shape)
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(brute_force(cost))


def test_hungarian_empty_and_iou() -> None:
    assert hungarian(np.zeros((0, 3))) == []
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    b = np.array([[5, 0, 15, 10]], float)
    assert iou_matrix(a, b)[:, 0] == pytest.approx([50 / 150, 0.0])


# --------------------------------------------------------------------------- crossing


def run_crossing(*, with_embeddings: bool, noise: float, dy: float, seed: int) -> None:
    """Face A moves right, face B left along (nearly) the same row; their boxes overlap for
    about 16 frames. Input order is shuffled every frame."""
    rng = np.random.default_rng(seed)
    ids = embeddings(2, seed)
    tracker = FaceTracker()
    seen: dict[str, set[int]] = {"A": set(), "B": set()}
    for k in range(41):
        truth = {"A": (100 + 10 * k, 200.0), "B": (500 - 10 * k, 200.0 + dy)}
        names = ["A", "B"] if rng.random() < 0.5 else ["B", "A"]
        faces = [face(*truth[n], rng=rng, noise=noise,
                      emb=noisy(ids[n == "B"], rng) if with_embeddings else None) for n in names]
        out = tracker.update(faces, k)
        assert len(out) == 2
        for n, f in zip(names, out):
            seen[n].add(f.track_id)
            assert np.linalg.norm(centre(f) - truth[n]) < 4 * noise + 3
    assert len(seen["A"]) == 1 and len(seen["B"]) == 1 and seen["A"] != seen["B"]


@pytest.mark.parametrize("with_embeddings", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_crossing_faces_keep_ids(with_embeddings: bool, seed: int) -> None:
    run_crossing(with_embeddings=with_embeddings, noise=2.0, dy=10.0, seed=seed)
    run_crossing(with_embeddings=with_embeddings, noise=2.0, dy=0.0, seed=seed + 10)


def test_identity_keeps_ids_when_motion_misleads() -> None:
    """Two faces meet and both turn back: the velocity predicts a crossing that does not
    happen; the identity term (and gate) keeps each face on its own track."""
    rng = np.random.default_rng(8)
    ids = embeddings(2, 21)
    tracker = FaceTracker()
    seen: dict[int, set[int]] = {0: set(), 1: set()}
    for k in range(40):
        step = k if k <= 15 else 30 - k
        truth = [(100 + 10 * step, 200.0), (400 - 10 * step, 205.0)]
        out = tracker.update([face(*truth[i], emb=noisy(ids[i], rng), rng=rng, noise=1.0) for i in range(2)], k)
        for i, f in enumerate(out):
            seen[i].add(f.track_id)
    assert seen == {0: {0}, 1: {1}}


# --------------------------------------------------------------------------- missed detections


@pytest.mark.parametrize("gap", [1, 3, 5])
def test_missed_detections_are_bridged(gap: int) -> None:
    rng = np.random.default_rng(gap)
    tracker = FaceTracker()
    path = lambda k: (100 + 6 * k, 150 + 2 * k)
    ids = set()
    for k in range(30):
        missing = 12 <= k < 12 + gap
        if missing:
            predicted = dict(tracker.predict(k))
            assert list(predicted) == tracker.live_ids == list(ids)
            box = predicted[next(iter(ids))]
            assert box.dtype == np.float32 and box.shape == (4,)
            assert np.linalg.norm(np.array([box[0] + box[2], box[1] + box[3]]) / 2 - path(k)) < 0.1 * SIZE
            assert tracker.update([], k) == []
            continue
        out = tracker.update([face(*path(k), rng=rng, noise=1.5)], k)
        assert len(out) == 1
        ids.add(out[0].track_id)
    assert len(ids) == 1


def test_predict_does_not_change_state() -> None:
    tracker = FaceTracker()
    for k in range(5):
        tracker.update([face(100 + 5 * k, 100)], k)
    a = tracker.predict(9)
    b = tracker.predict(9)
    assert np.array_equal(a[0][1], b[0][1])
    out = tracker.update([face(125, 100)], 5)
    assert np.allclose(centre(out[0]), (125, 100), atol=2)


def test_lost_track_is_removed_after_max_lost() -> None:
    tracker = FaceTracker(TrackerConfig(max_lost=10))
    tracker.update([face(100, 100)], 0)
    for k in range(1, 10):
        tracker.update([], k)
    assert tracker.live_ids == [0]  # 9 frames unmatched: still bridging
    assert tracker.update([face(100, 100)], 10)[0].track_id == 0  # the 10th missed frame may still match
    for k in range(11, 21):
        tracker.update([], k)
    assert tracker.live_ids == []


# --------------------------------------------------------------------------- re-identification


def test_face_that_leaves_and_returns_keeps_its_id() -> None:
    rng = np.random.default_rng(3)
    me, other = embeddings(2, 7)
    tracker = FaceTracker()
    first = tracker.update([face(100, 100, emb=noisy(me, rng))], 0)[0].track_id
    for k in range(1, 20):
        tracker.update([face(100 + 3 * k, 100, emb=noisy(me, rng))], k)
    for k in range(20, 70):  # 50 frames away: removed after 30, remembered
        tracker.update([], k)
    assert tracker.live_ids == []
    assert tracker.identity(first) is not None
    back = tracker.update([face(500, 300, emb=noisy(me, rng))], 70)  # elsewhere in the frame
    assert [f.track_id for f in back] == [first]
    # a stranger arriving gets a new id (after birth hysteresis)
    stranger = face(200, 400, emb=noisy(other, rng))
    assert [f.track_id for f in tracker.update([face(500, 300, emb=noisy(me, rng)), stranger], 71)] == [first]
    out = tracker.update([face(500, 300, emb=noisy(me, rng)), face(200, 400, emb=noisy(other, rng))], 72)
    assert out[0].track_id == first and out[1].track_id not in (None, first)


def test_lost_track_reidentified_elsewhere() -> None:
    rng = np.random.default_rng(4)
    me, = embeddings(1, 9)
    tracker = FaceTracker()
    tid = tracker.update([face(100, 100, emb=noisy(me, rng))], 0)[0].track_id
    for k in range(1, 10):
        tracker.update([], k)  # lost, not removed
    out = tracker.update([face(600, 400, emb=noisy(me, rng))], 10)  # no IoU with the prediction
    assert [f.track_id for f in out] == [tid]


def test_identity_is_a_unit_running_mean() -> None:
    rng = np.random.default_rng(5)
    me, = embeddings(1, 11)
    tracker = FaceTracker()
    for k in range(40):
        out = tracker.update([face(100, 100, emb=noisy(me, rng, 1.0))], k)
    ident = tracker.identity(out[0].track_id)
    assert ident is not None and ident.shape == (128,)
    assert np.linalg.norm(ident) == pytest.approx(1.0, abs=1e-5)
    assert float(ident @ me) > 0.97  # the mean is nearer the identity than any single noisy sample
    assert tracker.identity(12345) is None


def test_stranger_in_a_tracks_place_does_not_take_it() -> None:
    rng = np.random.default_rng(6)
    a, b = embeddings(2, 13)
    tracker = FaceTracker()
    tid = tracker.update([face(100, 100, emb=noisy(a, rng))], 0)[0].track_id
    tracker.update([face(100, 100, emb=noisy(a, rng))], 1)
    # same place, different person (identity gate): not track tid
    assert tracker.update([face(100, 100, emb=noisy(b, rng))], 2) == []
    out = tracker.update([face(100, 100, emb=noisy(b, rng))], 3)
    assert len(out) == 1 and out[0].track_id != tid


# --------------------------------------------------------------------------- birth rules


def test_first_frame_faces_are_returned_at_once() -> None:
    tracker = FaceTracker()
    faces = [face(100, 100, score=0.95), face(300, 100, score=0.4), face(500, 100, score=0.1)]
    out = tracker.update(faces, 0)  # first update: every face with score >= low_score, confirmed
    assert [f.track_id for f in out] == [0, 1]
    assert np.allclose(out[0].box, faces[0].box, atol=1e-3)
    assert tracker.is_confirmed(0) and tracker.is_confirmed(1)


def test_single_spurious_detection_creates_no_confirmed_track() -> None:
    tracker = FaceTracker()
    tracker.update([face(100, 100)], 0)
    tracker.update([face(100, 100)], 1)
    out = tracker.update([face(100, 100), face(400, 300)], 2)  # spurious one at (400, 300)
    assert [f.track_id for f in out] == [0]
    assert len(tracker.live_ids) == 2  # tentative, so a caller can follow it via predict() / pending
    assert [f.track_id for f in tracker.pending] == [tracker.live_ids[1]]
    assert not tracker.is_confirmed(tracker.live_ids[1])
    for k in range(3, 6):
        assert [f.track_id for f in tracker.update([face(100, 100)], k)] == [0]
    assert tracker.live_ids == [0]


def test_new_face_confirmed_after_birth_frames() -> None:
    tracker = FaceTracker(TrackerConfig(birth_frames=3))
    tracker.update([face(100, 100)], 0)
    counts = [len(tracker.update([face(100, 100), face(300 + 4 * k, 200)], k)) for k in range(1, 6)]
    assert counts == [1, 1, 2, 2, 2]
    assert tracker.pending == []


def test_low_score_faces_only_extend_tracks() -> None:
    tracker = FaceTracker()
    tracker.update([face(100, 100)], 0)
    # a new low-score face never becomes a track ...
    for k in range(1, 10):
        out = tracker.update([face(100 + 2 * k, 100), face(400, 300, score=0.45)], k)
        assert [f.track_id for f in out] == [0]
    assert tracker.live_ids == [0]
    # ... but a tracked face whose score drops keeps its track
    for k in range(10, 15):
        out = tracker.update([face(100 + 2 * k, 100, score=0.4)], k)
        assert [f.track_id for f in out] == [0]
    # below low_score: ignored
    assert tracker.update([face(130, 100, score=0.2)], 15) == []
