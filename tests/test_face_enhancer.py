"""Face enhancers driven end to end by tiny ONNX models with the real I/O names, shapes and layout.

Bodies: identity (the model returns its input), negative (``-x``), CodeFormer's weight painted as
a flat image. The landmarks are fixed (YuNet's on these photos), so no detector is needed.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from swapline.blend.paste import paste_back
from swapline.enhance.face_enhancer import FaceEnhancer, crop_box_in_frame
from swapline.face.align import warp_to_template
from swapline.models.catalog import ArchiveSource, ModelSpec, UrlSource
from swapline.models.enhance_catalog import (
    ENHANCERS,
    MASKERS,
    EnhancerSpec,
    catalog_entries,
)

from .conftest import read
from .faces import OBAMA_KPS, TWO_KPS
from .faces import face_from_kps as _face

# --- tiny models --------------------------------------------------------------------------------

def _model(nodes: list, inputs: list, outputs: list, inits: list | None = None) -> bytes:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=inits or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _img(name: str, size: int, batch: int | str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, 3, size, size])


def enhancer_model(spec: EnhancerSpec, body: str = "identity", batch: int | str = "n") -> bytes:
    """A model with ``spec``'s real I/O: GFPGAN / GPEN / RestoreFormer++ ``input`` -> ``output``
    (RestoreFormer++: a decoy 4-D output first, the image as ``2359``); CodeFormer ``x`` + ``w``
    (double [1]) -> ``y``."""
    s = spec.size
    image_in = "x" if spec.family == "codeformer" else "input"
    image_out = spec.output_name or ("y" if spec.family == "codeformer" else "output")
    inputs = [_img(image_in, s, batch)]
    nodes: list = []
    inits: list = []
    outputs = []
    src = image_in
    if spec.family == "codeformer":
        inputs.append(helper.make_tensor_value_info("w", TensorProto.DOUBLE, [1]))
        nodes.append(helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT))
        if body == "weight":  # a flat image of value w: output = x * 0 + w
            inits.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
            nodes.append(helper.make_node("Mul", [image_in, "zero"], ["x0"]))
            nodes.append(helper.make_node("Add", ["x0", "wf"], [image_out]))
        else:  # the weight is used but changes nothing: x + 0 * w
            inits.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
            nodes.append(helper.make_node("Mul", ["wf", "zero"], ["w0"]))
            nodes.append(helper.make_node("Add", [image_in, "w0"], ["xw"]))
            src = "xw"
    if body != "weight":
        nodes.append(helper.make_node("Identity" if body == "identity" else "Neg", [src], [image_out]))
    if spec.output_name is not None:  # RestoreFormer++: many outputs, the image is not the first
        nodes.insert(0, helper.make_node("Neg", [image_in], ["1228"]))
        outputs.append(_img("1228", s, batch))
    outputs.append(_img(image_out, s, batch))
    return _model(nodes, inputs, outputs, inits)


class Counting:
    """A session proxy that counts ``run`` calls."""

    def __init__(self, model: bytes) -> None:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.inner = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        self.calls = 0
        self.batches: list[int] = []

    def get_inputs(self):
        return self.inner.get_inputs()

    def get_outputs(self):
        return self.inner.get_outputs()

    def run(self, names, feeds):
        self.calls += 1
        self.batches.append(next(iter(feeds.values())).shape[0])
        return self.inner.run(names, feeds)


def _enhancer(name: str, body: str = "identity", batch: int | str = "n") -> tuple[FaceEnhancer, Counting]:
    spec = ENHANCERS[name]
    session = Counting(enhancer_model(spec, body, batch))
    return FaceEnhancer(session, spec), session


FAMILIES = ["gfpgan_1.4", "codeformer", "gpen_bfr_256", "restoreformer_plus_plus"]


# --- tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FAMILIES)
def test_identity_model_leaves_the_face_exactly_as_it_was(name: str) -> None:
    frame = read("src_obama.jpg")
    enh, session = _enhancer(name)
    patches = enh.enhance(frame, [_face(OBAMA_KPS)], blend=1.0)
    assert session.calls == 1 and len(patches) == 1
    patch, alpha, origin = patches[0]
    assert patch.shape[:2] == alpha.shape and alpha.dtype == np.float32
    assert alpha.max() == pytest.approx(1.0, abs=1e-3) and alpha.min() == 0.0
    out = paste_back(frame, patch, alpha, origin)
    assert np.array_equal(out, frame)  # crop, [-1, 1], back and paste: exact


@pytest.mark.parametrize("name", FAMILIES)
def test_negative_model_changes_only_the_face_region(name: str) -> None:
    frame = read("src_obama.jpg")
    enh, _ = _enhancer(name, "negative")
    face = _face(OBAMA_KPS)
    out = enh.enhance_frame(frame, [face], blend=1.0)
    x0, y0, x1, y1 = crop_box_in_frame(warp_to_template(frame, face.kps, enh.spec.template, enh.spec.size)[1],
                                       enh.spec.size)
    outside = np.ones(frame.shape[:2], bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert np.array_equal(out[outside], frame[outside])
    # the face centre is the photographic negative
    cx, cy = np.mean(OBAMA_KPS, axis=0).astype(int)
    centre = (slice(cy - 20, cy + 20), slice(cx - 20, cx + 20))
    neg = 255 - frame[centre].astype(int)
    assert np.abs(out[centre].astype(int) - neg).mean() < 6.0
    # half blend is half way
    half = enh.enhance_frame(frame, [face], blend=0.5)
    mid = (frame[centre].astype(int) + neg) / 2
    assert np.abs(half[centre].astype(int) - mid).mean() < 4.0


@pytest.mark.parametrize("name", ["gfpgan_1.4", "codeformer"])
def test_blend_zero_is_bit_identical_and_skips_the_model(name: str) -> None:
    frame = read("src_obama.jpg")
    enh, session = _enhancer(name, "negative")
    out = enh.enhance_frame(frame, [_face(OBAMA_KPS)], blend=0.0)
    assert np.array_equal(out, frame)
    assert session.calls == 0


def test_codeformer_weight_reaches_the_model_as_a_double() -> None:
    frame = read("src_obama.jpg")
    enh, _ = _enhancer("codeformer", "weight")
    assert enh._weight is not None and enh._weight.name == "w"
    cx, cy = np.mean(OBAMA_KPS, axis=0).astype(int)
    centre = (slice(cy - 10, cy + 10), slice(cx - 10, cx + 10))
    for w in (0.5, -0.2):
        out = enh.enhance_frame(frame, [_face(OBAMA_KPS)], blend=1.0, weight=w)
        expect = round((w + 1.0) * 127.5)
        # the patch is frame + warped change: detail the crop round trip loses stays (a few levels)
        diff = np.abs(out[centre].astype(int) - expect)
        assert diff.mean() < 1.5 and diff.max() <= 8


def test_facefusion_style_codeformer_names_work_too() -> None:
    """FaceFusion's export calls the inputs ``input`` and ``weight``."""
    s = 512
    nodes = [helper.make_node("Cast", ["weight"], ["wf"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["wf", "zero"], ["w0"]),
             helper.make_node("Add", ["input", "w0"], ["output"])]
    model = _model(nodes, [_img("input", s, 1), helper.make_tensor_value_info("weight", TensorProto.DOUBLE, [1])],
                   [_img("output", s, 1)], [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    enh = FaceEnhancer(Counting(model), ENHANCERS["codeformer"])
    frame = read("src_obama.jpg")
    assert np.array_equal(enh.enhance_frame(frame, [_face(OBAMA_KPS)], blend=1.0), frame)


def test_two_faces_run_as_one_batch() -> None:
    frame = read("multi_two_people_obama_biden.jpg")
    faces = [_face(k) for k in TWO_KPS]
    enh, session = _enhancer("gfpgan_1.4", "negative")
    batched = enh.enhance(frame, faces, blend=1.0)
    assert session.calls == 1 and session.batches == [2]
    single, s1 = _enhancer("gfpgan_1.4", "negative", batch=1)  # fixed batch 1: one call per face
    assert single.batch_one
    each = single.enhance(frame, faces, blend=1.0)
    assert s1.calls == 2 and s1.batches == [1, 1]
    for (p, a, o), (q, b, r) in zip(batched, each):
        assert o == r and np.array_equal(p, q) and np.array_equal(a, b)
    # both faces changed, the rest of the picture not
    out = frame.copy()
    for p, a, o in batched:
        paste_back(out, p, a, o, out=out)
    for kps in TWO_KPS:
        cx, cy = np.mean(kps, axis=0).astype(int)
        assert np.abs(out[cy - 5:cy + 5, cx - 5:cx + 5].astype(int) - frame[cy - 5:cy + 5, cx - 5:cx + 5]).mean() > 30
    assert np.array_equal(out[:, 560:600], frame[:, 560:600])  # between the two faces


def test_no_faces_no_call() -> None:
    enh, session = _enhancer("gpen_bfr_256")
    assert enh.enhance(read("src_obama.jpg"), [], blend=1.0) == []
    assert session.calls == 0


# --- catalogue ------------------------------------------------------------------------------

ISSUE_ENHANCERS = {"gfpgan_1.2", "gfpgan_1.3", "gfpgan_1.4", "codeformer", "gpen_bfr_256", "gpen_bfr_512",
                   "restoreformer_plus_plus"}


def test_catalogue_names_sizes_licences_and_urls() -> None:
    assert set(ENHANCERS) == ISSUE_ENHANCERS
    assert {"xseg", "bisenet_resnet_34"} <= set(MASKERS)
    for table in (ENHANCERS, MASKERS):
        for name, e in table.items():
            assert e.name == name and e.licence and e.licence != "unknown"
            assert e.approx_mb > 1 and e.url.startswith("https://")
            archive = e.model is not None and isinstance(e.model.sources[0], ArchiveSource)
            if archive:  # a member of a source archive, converted: the runnable file is file_name
                m: ModelSpec = e.model
                (src,) = m.sources
                assert src.project in e.url and src.member.endswith("/" + m.file_name) and len(src.sha256) == 64
                assert m.convert and m.runnable_name == e.file_name
            else:
                assert e.url.endswith(e.file_name)
            if e.model is not None:
                m = e.model
                assert m.size > 1_000_000 and m.licence == e.licence and len(m.sha256) == 64
                assert archive or (m.sources == (UrlSource(e.url),) and m.file_name == e.file_name)
                assert m.input_size == (e.size, e.size) and m.template == e.template
    assert ENHANCERS["codeformer"].weight_inputs and not ENHANCERS["gfpgan_1.4"].weight_inputs
    assert ENHANCERS["gpen_bfr_256"].size == 256
    entries = catalog_entries()
    assert set(entries) == {n for t in (ENHANCERS, MASKERS) for n, e in t.items() if e.model is not None}
    assert "gfpgan_1.2" not in entries  # no public sha256: --model-dir only
    files = [s.file_name for s in entries.values()]
    assert len(files) == len(set(files))
