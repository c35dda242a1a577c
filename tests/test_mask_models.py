"""XSeg occlusion masks and BiSeNet parses (region masks) from tiny ONNX models with the real I/O layout."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from swapline.blend.mask_models import (
    OcclusionMasker,
    region_affine,
    warp_mask,
)
from swapline.blend.parsing import FaceParser, region_mask
from swapline.errors import ConfigError
from swapline.models.enhance_catalog import MASKERS, PARSER_CLASSES

from .conftest import read
from .faces import OBAMA_KPS, TWO_KPS
from .faces import face_from_kps as _face

def _session(nodes: list, inputs: list, outputs: list, inits: list) -> ort.InferenceSession:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def xseg_model(value: float, layout: str = "nhwc", batch: int | str = "n") -> ort.InferenceSession:
    """XSeg-shaped: FaceFusion's ``[N, 256, 256, 3]`` -> ``[N, 256, 256, 1]`` or VisoMaster's
    ``in_face:0`` ``[1, 3, 256, 256]`` -> ``out_mask:0`` ``[1, 1, 256, 256]``; output = ``value``."""
    nhwc = layout == "nhwc"
    name_in, name_out = ("input", "output") if nhwc else ("in_face:0", "out_mask:0")
    shape_in = [batch, 256, 256, 3] if nhwc else [batch, 3, 256, 256]
    shape_out = [batch, 256, 256, 1] if nhwc else [batch, 1, 256, 256]
    axis = 3 if nhwc else 1
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("value", TensorProto.FLOAT, [], [value]),
             helper.make_tensor("s", TensorProto.INT64, [1], [0]),
             helper.make_tensor("e", TensorProto.INT64, [1], [1]),
             helper.make_tensor("ax", TensorProto.INT64, [1], [axis])]
    nodes = [helper.make_node("Slice", [name_in, "s", "e", "ax"], ["one_channel"]),
             helper.make_node("Mul", ["one_channel", "zero"], ["z"]),
             helper.make_node("Add", ["z", "value"], [name_out])]
    return _session(nodes, [helper.make_tensor_value_info(name_in, TensorProto.FLOAT, shape_in)],
                    [helper.make_tensor_value_info(name_out, TensorProto.FLOAT, shape_out)], inits)


def bisenet_model(left: int, right: int) -> ort.InferenceSession:
    """BiSeNet-shaped ``input`` ``[N, 3, 512, 512]`` -> ``output`` ``[N, 19, 512, 512]`` logits whose
    arg-max is class ``left`` on the crop's left half and ``right`` on its right half."""
    logits = np.zeros((1, 19, 1, 512), np.float32)
    logits[0, left, 0, :256] = 5.0
    logits[0, right, 0, 256:] = 5.0
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("s", TensorProto.INT64, [1], [0]),
             helper.make_tensor("e", TensorProto.INT64, [1], [1]),
             helper.make_tensor("ax", TensorProto.INT64, [1], [1]),
             onnx.numpy_helper.from_array(logits, "logits")]
    nodes = [helper.make_node("Slice", ["input", "s", "e", "ax"], ["c0"]),
             helper.make_node("Mul", ["c0", "zero"], ["z"]),          # [N, 1, 512, 512] zeros
             helper.make_node("Add", ["z", "logits"], ["output"])]    # broadcast to [N, 19, 512, 512]
    return _session(nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 512, 512])],
                    [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 19, 512, 512])], inits)


def _footprint(frame: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """Where the crop lies in the frame: 1 inside, fractional on its edge, 0 outside."""
    return warp_mask(np.ones((size, size), np.float32), m, frame.shape[:2])


def _in_frame(mask: np.ndarray, origin: tuple[int, int], shape: tuple[int, ...]) -> np.ndarray:
    canvas = np.zeros(shape[:2], np.float32)
    h, w = mask.shape
    x0, y0 = origin
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, shape[1]), min(y0 + h, shape[0])
    canvas[fy0:fy1, fx0:fx1] = mask[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
    return canvas


@pytest.mark.parametrize("layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("value", [1.0, 0.0])
def test_occlusion_mask_is_the_model_inside_the_crop_and_zero_outside(layout: str, value: float) -> None:
    frame = read("src_obama.jpg")
    # FaceFusion's NHWC export gives the face probability, VisoMaster's NCHW DFL file the
    # occluder probability (inverted to a keep mask)
    spec = MASKERS["xseg_1"] if layout == "nhwc" else MASKERS["xseg"]
    batch = "n" if layout == "nhwc" else 1
    masker = OcclusionMasker(xseg_model(value, layout, batch), spec)
    assert masker.layout == layout and masker.model_size == 256
    if spec.inverted:
        value = 1.0 - value
    (crop_mask, m), = masker.crop_masks(frame, [_face(OBAMA_KPS)])
    assert crop_mask.shape == (256, 256) and np.all(crop_mask == value)
    (mask, origin), = masker.masks(frame, [_face(OBAMA_KPS)])
    full = _in_frame(mask, origin, frame.shape)
    foot = _footprint(frame, m, 256)
    assert np.all(full[foot == 0] == 0.0)  # exactly 0 outside the crop
    inside = foot >= 1.0 - 1e-6
    assert inside.sum() > 100_000
    assert np.allclose(full[inside], value, atol=1e-5)
    assert full.dtype == np.float32 and full.max() <= 1.0


def test_occlusion_batches_faces_or_calls_once_per_face() -> None:
    frame = read("multi_two_people_obama_biden.jpg")
    faces = [_face(k) for k in TWO_KPS]
    batched = OcclusionMasker(xseg_model(1.0, "nhwc", "n"), MASKERS["xseg_1"])
    single = OcclusionMasker(xseg_model(0.0, "nchw", 1), MASKERS["xseg"])  # inverted: keep all
    a, b = batched.masks(frame, faces), single.masks(frame, faces)
    assert (batched.calls, single.calls) == (1, 2)
    assert len(a) == len(b) == 2
    for (ma, oa), (mb, ob) in zip(a, b):
        assert oa == ob and np.array_equal(ma, mb)


def test_region_mask_selects_only_the_chosen_classes() -> None:
    frame = read("src_obama.jpg")
    session = bisenet_model(PARSER_CLASSES["skin"], PARSER_CLASSES["hair"])
    parse, = FaceParser(session, MASKERS["bisenet_resnet_34"]).parse(frame, [_face(OBAMA_KPS)])
    assert parse.labels.shape == (512, 512) and parse.labels.dtype == np.uint8
    assert np.all(parse.labels[:, :256] == PARSER_CLASSES["skin"]) and np.all(parse.labels[:, 256:] == PARSER_CLASSES["hair"])
    skin, hair, both, lips = (region_mask(parse, r) for r in (("skin",), ("hair",), ("skin", "hair"), ("lips", "eyes")))
    for mask, m in (skin, hair, both, lips):
        assert mask.shape == (512, 512) and mask.dtype == np.float32 and m is parse.crop_from_image
    assert np.all(skin[0][:, :230] >= 0.999) and np.all(skin[0][:, 282:] == 0)
    assert np.all(hair[0][:, :230] == 0) and np.all(hair[0][:, 282:] >= 0.999)
    assert np.all(both[0] >= 0.999)
    assert np.all(lips[0] == 0)
    # in the frame: the chosen half of the crop, nothing outside it
    full = warp_mask(skin[0], skin[1], frame.shape[:2])
    foot = _footprint(frame, skin[1], 512)
    assert np.all(full[foot == 0] == 0)
    left_half = warp_mask(np.pad(np.ones((512, 200), np.float32), ((0, 0), (0, 312))), skin[1], frame.shape[:2])
    assert np.all(full[left_half >= 1.0 - 1e-6] >= 0.999)
    # the parse's own class masks, over a region of the frame
    region = parse.mask((PARSER_CLASSES["hair"],), (300, 300), (350, 100))
    assert np.allclose(region, parse.mask((PARSER_CLASSES["hair"],), frame.shape[:2])[100:400, 350:650], atol=1e-6)


def test_masks_in_another_crop_frame() -> None:
    """``warp_mask`` takes a crop mask into any frame given that frame's image -> target affine."""
    frame = read("src_obama.jpg")
    masker = OcclusionMasker(xseg_model(1.0), MASKERS["xseg_1"])
    (mask, m), = masker.crop_masks(frame, [_face(OBAMA_KPS)])
    region = warp_mask(mask, m, (300, 300), region_affine((350, 100)))
    whole = warp_mask(mask, m, frame.shape[:2])
    assert np.allclose(region, whole[100:400, 350:650], atol=1e-6)
    same = warp_mask(mask, m, (256, 256), m)  # back into its own crop
    assert np.allclose(same[2:-2, 2:-2], 1.0, atol=1e-5)


def test_unknown_region_is_a_config_error() -> None:
    frame = read("src_obama.jpg")
    parse, = FaceParser(bisenet_model(1, 17), MASKERS["bisenet_resnet_34"]).parse(frame, [_face(OBAMA_KPS)])
    with pytest.raises(ConfigError):
        region_mask(parse, ("beard",))
