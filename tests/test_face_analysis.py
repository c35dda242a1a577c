"""Detection, landmarks, identity, alignment and selection on real photos and synthetic data."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from swapline.face.align import TEMPLATES, fit_similarity, kps_from_mesh, warp_to_template
from swapline.face.detect import decode_yunet, letterbox, nms
from swapline.face.recognize import cosine
from swapline.face.select import order_faces, select_faces
from swapline.face.types import Face

from .conftest import read


def test_letterbox_keeps_aspect_and_pads_to_32() -> None:
    img = np.full((300, 600, 3), 200, np.uint8)
    canvas, scale = letterbox(img, 640)
    assert canvas.shape == (320, 640, 3) and scale == pytest.approx(640 / 600)
    img = np.full((1080, 1920, 3), 200, np.uint8)
    canvas, scale = letterbox(img, 640)
    assert canvas.shape == (384, 640, 3)
    assert canvas[:360].mean() == pytest.approx(200, abs=1) and canvas[360:].max() == 0


def test_decode_places_a_box_on_its_grid_cell() -> None:
    size = 64  # width; height 32
    outs = {}
    for s in (8, 16, 32):
        n = (size // s) * (32 // s)
        outs |= {f"cls_{s}": np.zeros((n, 1)), f"obj_{s}": np.zeros((n, 1)),
                 f"bbox_{s}": np.zeros((n, 4)), f"kps_{s}": np.zeros((n, 10))}
    cell = 2 * (size // 8) + 3  # row 2, column 3 at stride 8
    outs["cls_8"][cell] = outs["obj_8"][cell] = 0.81
    outs["bbox_8"][cell] = [0.5, 0.5, np.log(2.0), np.log(3.0)]
    boxes, scores, kps = decode_yunet(outs, size, 0.5)
    assert scores == pytest.approx([0.81])
    cx, cy = (3 + 0.5) * 8, (2 + 0.5) * 8
    assert boxes[0] == pytest.approx([cx - 8, cy - 12, cx + 8, cy + 12])
    assert kps[0, 0] == pytest.approx([24, 16])


def test_nms_drops_overlaps() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.3)
    assert sorted(keep.tolist()) == [0, 2]


@pytest.mark.parametrize(("name", "count"), [
    ("src_obama.jpg", 1), ("src_biden.jpg", 1), ("bench_obama_1080p.jpg", 1),
    ("multi_two_people_obama_biden.jpg", 2), ("multi_t1_group6.jpg", 6),
])
def test_detector_and_mesh_find_every_face(session, name: str, count: int) -> None:  # noqa: ANN001
    image = read(name)
    faces = session.analyse(image)
    assert len(faces) == count
    for f in faces:
        assert f.score > 0.5 and f.mesh_score > 0.9
        x0, y0, x1, y1 = f.box
        # the mesh lies on the detected face: its centre inside the box, its width comparable
        cx, cy = f.mesh[:, :2].mean(0)
        assert x0 < cx < x1 and y0 < cy < y1
        assert 0.6 < np.ptp(f.mesh[:, 0]) / (x1 - x0) < 1.6
        # the detector's eyes agree with the mesh's eyes
        assert np.linalg.norm(kps_from_mesh(f.mesh)[:2] - f.kps[:2], axis=1).max() < 0.12 * (x1 - x0)


def test_mesh_follows_a_shifted_and_rotated_image(session) -> None:  # noqa: ANN001
    image = read("src_obama.jpg")
    base = session.analyse(image)[0]
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 15, 1.0)
    m[:, 2] += [40, -25]
    moved = cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    got = session.analyse(moved)[0]
    expected = base.mesh[:, :2] @ m[:, :2].T + m[:, 2]
    err = np.linalg.norm(got.mesh[:, :2] - expected, axis=1).mean() / np.ptp(base.mesh[:, 0])
    assert err < 0.03


def test_identity_same_person_beats_strangers(session) -> None:  # noqa: ANN001
    emb = {n: session.analyse(read(n))[0].embedding for n in
           ("src_obama.jpg", "id_obama2.jpg", "src_biden.jpg", "id_biden2.jpg")}
    same = [cosine(emb["src_obama.jpg"], emb["id_obama2.jpg"]), cosine(emb["src_biden.jpg"], emb["id_biden2.jpg"])]
    diff = [cosine(emb["src_obama.jpg"], emb["src_biden.jpg"]), cosine(emb["id_obama2.jpg"], emb["id_biden2.jpg"])]
    assert min(same) > 0.55 and max(diff) < 0.35
    for e in emb.values():
        assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-4)



def test_no_face_in_a_flat_image(session) -> None:  # noqa: ANN001
    assert session.analyse(np.full((480, 640, 3), 127, np.uint8)) == []


def test_similarity_fit_and_aligned_crop() -> None:
    pts = TEMPLATES["arcface_112_v2"] * 112
    m = np.array([[0.5, -0.2, 30.0], [0.2, 0.5, 10.0]])
    moved = pts @ m[:, :2].T + m[:, 2]
    back = fit_similarity(moved, pts)
    assert np.allclose(back[:, :2] @ m[:, :2], np.eye(2), atol=1e-9)
    img = np.zeros((200, 200, 3), np.uint8)
    for p in moved:
        cv2.circle(img, tuple(np.round(p).astype(int)), 2, (255, 255, 255), -1)
    crop, _ = warp_to_template(img, moved.astype(np.float32), "arcface_112_v2", 112)
    for p in pts:
        x, y = np.round(p).astype(int)
        assert crop[y - 1:y + 2, x - 1:x + 2].max() > 100


def _face(x: float, y: float, size: float, score: float, emb: np.ndarray | None = None) -> Face:
    return Face(box=np.array([x, y, x + size, y + size], np.float32), score=score,
                kps=np.zeros((5, 2), np.float32), embedding=emb)


def test_ordering_and_modes() -> None:
    e = np.eye(3, dtype=np.float32)
    faces = [_face(100, 0, 50, 0.7, e[0]), _face(0, 50, 80, 0.9, e[1]), _face(200, 10, 20, 0.8, e[0])]
    assert [f.box[0] for f in order_faces(faces, "left-right")] == [0, 100, 200]
    assert [f.box[0] for f in order_faces(faces, "right-left")] == [200, 100, 0]
    assert [f.box[0] for f in order_faces(faces, "large-small")] == [0, 100, 200]
    assert [f.box[0] for f in order_faces(faces, "small-large")] == [200, 100, 0]
    assert [f.box[0] for f in order_faces(faces, "top-bottom")] == [200, 100, 0]  # centres y 20, 25, 90
    assert [f.box[0] for f in order_faces(faces, "best-worst")] == [0, 200, 100]
    assert len(select_faces(faces, "many", "left-right")) == 3
    assert [f.box[0] for f in select_faces(faces, "one", "left-right")] == [0]
    picked = select_faces(faces, "reference", "left-right", reference=e[0], max_distance=0.3)
    assert [f.box[0] for f in picked] == [100, 200]
    assert select_faces(faces, "reference", "left-right", reference=None) == []

