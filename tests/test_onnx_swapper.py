"""Neural swappers end to end with tiny ONNX models that have the real I/O names and shapes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from swapline.errors import ModelError
from swapline.face.arcface import ArcFace
from swapline.face.types import Face
from swapline.models.catalog import CATALOG, check_file_names
from swapline.models.batch_axis import dynamic_batch
from swapline.models.neural_catalog import (
    CONVERTERS,
    RECOGNIZERS,
    SWAPPERS,
    catalog_entries,
    merged_catalog,
    to_model_spec,
    unverified,
)
from swapline.swap.onnx_swapper import (
    NeuralSwapper,
    explode_pixel_boost,
    implode_pixel_boost,
    paste_all,
    template_points,
    warp_face,
)

from .conftest import read
from .tiny_models import make_arcface, make_converter, make_inswapper, make_swapper

# Five points found by YuNet on the shared photos (fixed here so the tests need no detector).
OBAMA = np.array([[439.7, 213.7], [555.2, 213.8], [496.0, 267.1], [440.2, 318.2], [546.7, 320.9]], np.float32)
TWO = [
    np.array([[289.7, 96.9], [361.5, 99.0], [331.3, 135.2], [289.5, 166.5], [350.9, 168.9]], np.float32),
    np.array([[839.5, 132.9], [905.7, 132.2], [876.9, 176.9], [842.2, 203.0], [895.6, 204.9]], np.float32),
]
OBAMA_BOX = (369, 91, 611, 421)


def _face(kps: np.ndarray) -> Face:
    lo, hi = kps.min(0), kps.max(0)
    pad = (hi - lo) * 0.6
    return Face(box=np.concatenate([lo - pad, hi + pad]).astype(np.float32), score=0.9, kps=kps)


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Recorder:
    """Wraps a session: counts calls, keeps what was fed and what came out."""

    def __init__(self, session: ort.InferenceSession):
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []
        self.outputs: list[list[np.ndarray]] = []

    def get_inputs(self):
        return self.session.get_inputs()

    def get_outputs(self):
        return self.session.get_outputs()

    def run(self, names, feed):
        self.feeds.append({k: np.array(v) for k, v in feed.items()})
        out = self.session.run(None, feed)
        self.outputs.append(out)
        return out if names is None else [out[[o.name for o in self.get_outputs()].index(n)] for n in names]


def _inswapper(tmp_path: Path, fn: str = "identity", **kw) -> tuple[NeuralSwapper, Recorder, Path]:
    path = make_inswapper(tmp_path / f"inswapper_{fn}.onnx", fn, **kw)
    rec = Recorder(_session(path))
    return NeuralSwapper(rec, SWAPPERS["inswapper_128"], emap=NeuralSwapper.read_emap(path)), rec, path


def _round_trip_reference(frame: np.ndarray, kps: np.ndarray, template: str, size: int, patch) -> np.ndarray:
    """The unmodified aligned crop warped back by an independent route (cv2 inverse + full frame)."""
    crop, m = warp_face(frame, kps, template, size)
    H, W = frame.shape[:2]
    back = cv2.warpAffine(crop, cv2.invertAffineTransform(m), (W, H), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    x0, y0 = patch.origin
    h, w = patch.alpha.shape
    return back[y0:y0 + h, x0:x0 + w]


def test_identity_model_is_exact(tmp_path: Path) -> None:
    frame = read("src_obama.jpg")
    sw, rec, _ = _inswapper(tmp_path)
    src = sw.source_input(np.ones(512, np.float32))
    # Detail-keeping paste: a model returning its input changes nothing at all.
    patches = sw.swap(frame, [_face(OBAMA)], src, keep_detail=True)
    assert np.abs(paste_all(frame, patches).astype(int) - frame).max() <= 1
    # Plain paste: the crop comes back exactly (normalise -> model -> de-normalise) and is warped
    # back onto the same pixels as an independent inverse warp of the unmodified crop.
    (p,) = sw.swap(frame, [_face(OBAMA)], src)
    crop, _ = warp_face(frame, OBAMA, "arcface_128", 128)
    assert np.abs(p.crop.astype(int) - crop).max() <= 1
    ref = _round_trip_reference(frame, OBAMA, "arcface_128", 128, p)
    core = p.alpha > 0.5
    assert np.abs(p.patch.astype(int) - ref)[core].max() <= 1
    assert rec.feeds[0]["target"].shape == (1, 3, 128, 128) and rec.feeds[0]["source"].shape == (1, 512)
    assert 0.0 <= rec.feeds[0]["target"].min() and rec.feeds[0]["target"].max() <= 1.0


def test_negative_model_changes_only_the_face_box(tmp_path: Path) -> None:
    frame = read("src_obama.jpg")
    sw, _, _ = _inswapper(tmp_path, "negative")
    src = sw.source_input(np.ones(512, np.float32))
    (p,) = sw.swap(frame, [_face(OBAMA)], src)
    out = paste_all(frame, [p])
    changed = np.abs(out.astype(int) - frame).max(-1) > 0
    x, y, w, h = cv2.boundingRect(changed.view(np.uint8))
    x0, y0, x1, y1 = OBAMA_BOX
    fw, fh = x1 - x0, y1 - y0
    assert x >= x0 - 0.5 * fw and y >= y0 - 0.5 * fh and x + w <= x1 + 0.5 * fw and y + h <= y1 + 0.5 * fh
    core = p.alpha > 0.999
    assert core.sum() > 0.2 * fw * fh
    # Geometry: inside the core the result is the negative of the (resampled) original.
    ref = _round_trip_reference(frame, OBAMA, "arcface_128", 128, p)
    px, py = p.origin
    region = out[py:py + p.alpha.shape[0], px:px + p.alpha.shape[1]]
    assert np.abs(region.astype(int) - (255 - ref.astype(int)))[core].max() <= 1
    # Weight 0 leaves the frame bit-identical; 0.5 lands between.
    assert np.array_equal(paste_all(frame, sw.swap(frame, [_face(OBAMA)], src, weight=0.0)), frame)
    half = paste_all(frame, sw.swap(frame, [_face(OBAMA)], src, weight=0.5)).astype(int)
    full_d = np.abs(out.astype(int) - frame).sum()
    half_d = np.abs(half - frame).sum()
    assert 0.4 * full_d < half_d < 0.6 * full_d


def test_emap_projection_is_fed_to_the_model(tmp_path: Path) -> None:
    frame = read("src_obama.jpg")
    sw, rec, path = _inswapper(tmp_path, echo_source=True)
    emb = np.random.default_rng(3).standard_normal(512).astype(np.float32) * 7.0  # a raw embedding
    emap = numpy_helper.to_array(onnx.load(str(path)).graph.initializer[-1])
    assert emap.shape == (512, 512)
    expected = (emb / np.linalg.norm(emb)) @ emap
    expected /= np.linalg.norm(expected)
    sw.swap(frame, [_face(OBAMA)], sw.source_input(emb))
    echoed = rec.outputs[-1][1]
    assert echoed.shape == (1, 512)
    np.testing.assert_allclose(echoed[0], expected, atol=1e-5)


def test_pixel_boost_is_one_batch_and_matches_boost_one(tmp_path: Path) -> None:
    frame = read("multi_two_people_obama_biden.jpg")
    faces = [_face(k) for k in TWO]
    sw, rec, _ = _inswapper(tmp_path)
    src = sw.source_input(np.ones(512, np.float32))
    boosted = sw.swap(frame, faces, src, pixel_boost=2)
    assert len(rec.feeds) == 1 and rec.feeds[0]["target"].shape == (8, 3, 128, 128)
    assert rec.feeds[0]["source"].shape == (8, 512)
    plain = sw.swap(frame, faces, src, pixel_boost=1)
    assert len(rec.feeds) == 2 and rec.feeds[1]["target"].shape == (2, 3, 128, 128)
    a, b = paste_all(frame, boosted).astype(int), paste_all(frame, plain).astype(int)
    assert boosted[0].crop.shape == (256, 256, 3)
    diff = np.abs(a - b)
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 12  # interpolation only


def test_pixel_boost_tiles_interleave() -> None:
    crop = np.arange(8 * 8 * 3).reshape(8, 8, 3)
    tiles = implode_pixel_boost(crop, 2)
    assert tiles.shape == (4, 4, 4, 3)
    assert np.array_equal(tiles[1], crop[0::2, 1::2]) and np.array_equal(tiles[2], crop[1::2, 0::2])
    assert np.array_equal(explode_pixel_boost(tiles, 2), crop)


def test_batch_one_model_falls_back_and_dynamic_export_matches(tmp_path: Path) -> None:
    frame = read("multi_two_people_obama_biden.jpg")
    faces = [_face(k) for k in TWO]
    path = make_inswapper(tmp_path / "b1.onnx", "noise", batch=1)
    spec = SWAPPERS["inswapper_128"]
    emap = NeuralSwapper.read_emap(path)
    rec1 = Recorder(_session(path))
    sw1 = NeuralSwapper(rec1, spec, emap=emap)
    assert sw1.fixed_batch_one
    src = sw1.source_input(np.ones(512, np.float32))
    one = sw1.swap(frame, faces, src, pixel_boost=2)
    assert len(rec1.feeds) == 8  # one call per tile
    dyn_path = tmp_path / "dyn.onnx"
    onnx.save(dynamic_batch(onnx.load(str(path))), str(dyn_path))
    assert np.allclose(NeuralSwapper.read_emap(dyn_path), emap)  # emap stays the last initializer
    rec2 = Recorder(_session(dyn_path))
    sw2 = NeuralSwapper(rec2, spec, emap=emap)
    assert not sw2.fixed_batch_one
    many = sw2.swap(frame, faces, src, pixel_boost=2)
    assert len(rec2.feeds) == 1
    batched = rec2.outputs[0][0]
    per_call = np.concatenate([o[0] for o in rec1.outputs])
    np.testing.assert_allclose(batched, per_call, atol=1e-5)
    for p, q in zip(one, many):
        assert np.abs(p.patch.astype(int) - q.patch).max() <= 1


def _source_for(sw: NeuralSwapper, frame: np.ndarray) -> np.ndarray:
    if sw.spec.source_kind == "image":
        crop = sw.align_source(frame, OBAMA)
        assert crop.shape == (sw.spec.source_size, sw.spec.source_size, 3)
        return sw.source_input(crop)
    return sw.source_input(np.random.default_rng(0).standard_normal(512).astype(np.float32) * 20)


@pytest.mark.parametrize("name", sorted(SWAPPERS))
def test_every_catalogue_swapper_runs_end_to_end(tmp_path: Path, name: str) -> None:
    spec = SWAPPERS[name]
    frame = read("multi_two_people_obama_biden.jpg")
    source_frame = read("src_obama.jpg")
    faces = [_face(k) for k in TWO]
    converter = None
    if spec.converter:
        converter = _session(make_converter(tmp_path / f"{spec.converter}.onnx"))
    results = {}
    for fn in ("identity", "negative"):
        path = make_swapper(tmp_path / f"{name}_{fn}.onnx", spec, fn, echo_source=True)
        rec = Recorder(_session(path))
        emap = NeuralSwapper.read_emap(path) if spec.source_kind == "embedding_emap" else None
        sw = NeuralSwapper(rec, spec, emap=emap, converter=converter)
        src = _source_for(sw, source_frame)
        patches = sw.swap(frame, faces, src, keep_detail=True)
        assert len(rec.feeds) == 1
        feed = rec.feeds[0]
        assert feed[spec.target_input].shape == (2, 3, spec.size, spec.size)
        assert feed[spec.source_input].shape == (2, *spec.source_shape())
        np.testing.assert_allclose(rec.outputs[0][1], np.repeat(src, 2, axis=0), atol=1e-6)
        if spec.source_kind in ("embedding", "embedding_emap") or (spec.converter and spec.normalise_converted):
            assert np.allclose(np.linalg.norm(src), 1.0, atol=1e-5)
        if spec.source_kind == "image":
            assert 0.0 <= src.min() and src.max() <= 1.0
        results[fn] = paste_all(frame, patches)
    assert np.abs(results["identity"].astype(int) - frame).max() <= 1  # (de)normalisation exact
    changed = np.abs(results["negative"].astype(int) - frame).max(-1) > 8
    assert changed.sum() > 1000
    # pixel boost sizes follow the model size
    assert spec.pixel_boost_sizes[0] == spec.size


def test_swapper_checks_its_inputs(tmp_path: Path) -> None:
    path = make_inswapper(tmp_path / "i.onnx")
    spec = SWAPPERS["inswapper_128"]
    with pytest.raises(ModelError, match="emap"):
        NeuralSwapper(_session(path), spec)
    with pytest.raises(ModelError, match="no input"):
        NeuralSwapper(_session(path), replace(SWAPPERS["blendswap_256"], target_input="image"))
    sw = NeuralSwapper(_session(path), spec, emap=NeuralSwapper.read_emap(path))
    with pytest.raises(ModelError, match="pixel boost"):
        sw.swap(np.zeros((64, 64, 3), np.uint8), [_face(OBAMA)], sw.source_input(np.ones(512)), pixel_boost=9)
    assert sw.swap(np.zeros((64, 64, 3), np.uint8), [], sw.source_input(np.ones(512))) == []


def test_arcface_embeds_a_batch_of_aligned_112_crops(tmp_path: Path) -> None:
    frame = read("multi_two_people_obama_biden.jpg")
    faces = [_face(k) for k in TWO]
    rec = Recorder(_session(make_arcface(tmp_path / "arcface.onnx")))
    arc = ArcFace(rec)
    emb = arc.embed(frame, faces)
    assert emb.shape == (2, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert len(rec.feeds) == 1
    blob = rec.feeds[0]["input.1"]
    assert blob.shape == (2, 3, 112, 112) and -1.0 <= blob.min() and blob.max() <= 1.0
    crop0 = cv2.warpAffine(frame, cv2.estimateAffinePartial2D(TWO[0], template_points("arcface_112_v2", 112),
                                                                   ransacReprojThreshold=100)[0],
                           (112, 112))
    expected = (crop0[..., ::-1].transpose(2, 0, 1).astype(np.float32) - 127.5) / 127.5
    assert np.abs(blob[0] - expected).mean() < 0.05  # aligned to arcface_112_v2
    raw = arc.embed(frame, faces, normalise=False)
    np.testing.assert_allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), emb, atol=1e-5)
    rec1 = Recorder(_session(make_arcface(tmp_path / "arcface1.onnx", batch=1)))
    np.testing.assert_allclose(ArcFace(rec1).embed(frame, faces), emb, atol=1e-5)
    assert len(rec1.feeds) == 2


def test_catalogue_entries() -> None:
    merged = merged_catalog()
    check_file_names(merged)
    assert set(CATALOG) < set(merged)
    verified = catalog_entries()
    assert {"inswapper_128", "arcface_w600k_r50"} <= set(verified)
    assert verified["inswapper_128"].convert == ("dynamic_batch",)
    assert "non-commercial" in verified["inswapper_128"].licence
    assert "non-commercial" in verified["arcface_w600k_r50"].licence
    for f in unverified().values():
        assert f.sha256 is None and f.urls
        with pytest.raises(ValueError, match="model-dir"):
            to_model_spec(f)
    for spec in SWAPPERS.values():
        template_points(spec.template, spec.size)
        assert spec.file.licence and spec.file.urls
        assert spec.recognizer in (None, *RECOGNIZERS)
        assert spec.converter in (None, *CONVERTERS)
    expected = {"inswapper_128", "inswapper_128_fp16", "hyperswap_1a_256", "hyperswap_1b_256", "hyperswap_1c_256",
                "simswap_256", "simswap_unofficial_512", "ghost_1_256", "ghost_2_256", "ghost_3_256",
                "blendswap_256", "uniface_256"}
    assert expected <= set(SWAPPERS)
