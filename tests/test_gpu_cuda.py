"""The device path on a real CUDA device: the checks the CPU-tensor tests make, now on the GPU.

Skipped wherever torch sees no CUDA device (CI has none); run on a GPU machine with
``python -m pytest -q tests/test_gpu_cuda.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("torch sees no CUDA device", allow_module_level=True)

import onnxruntime as ort  # noqa: E402

from swapline.blend.color import lab_transfer as cpu_lab_transfer  # noqa: E402
from swapline.gpu import detect_device_path, ops  # noqa: E402
from swapline.gpu.frame import swap_faces_torch  # noqa: E402
from swapline.pipeline.frame import swap_faces  # noqa: E402
from swapline.runtime.torch_backend import TorchSession, onnx2torch_available  # noqa: E402

from .conftest import read  # noqa: E402
from .test_gpu_frame import CPU_LIKE, MEAN_TOL, P99_TOL  # noqa: E402
from .tiny_models import make_inswapper  # noqa: E402

CUDA = torch.device("cuda:0")


@pytest.fixture(scope="module")
def source(session):  # noqa: ANN001, ANN201
    return dataclasses.replace(session.load_source(read("src_obama.jpg")), validity=False)


@pytest.fixture(scope="module")
def two(session):  # noqa: ANN001, ANN201
    image = read("multi_two_people_obama_biden.jpg")
    return image, session.analyse(image)


def test_the_device_path_is_chosen_here() -> None:
    path = detect_device_path(["cpu"])
    assert path.on_device and path.device == "cuda:0"


def test_swap_faces_on_cuda_matches_the_cpu_path(two, source) -> None:  # noqa: ANN001
    image, faces = two
    ref, ref_changed = swap_faces(image, faces, source, CPU_LIKE)
    out_t, changed_t = swap_faces_torch(torch.from_numpy(image).to(CUDA), faces, source, CPU_LIKE, {})
    assert out_t.device.type == "cuda"
    out, changed = out_t.cpu().numpy(), changed_t.cpu().numpy()
    assert np.array_equal(out[~changed], image[~changed])
    assert np.count_nonzero(changed ^ ref_changed) <= 1e-3 * np.count_nonzero(ref_changed) + 8
    union = changed | ref_changed
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16)).max(-1)[union]
    assert diff.mean() < MEAN_TOL and np.percentile(diff, 99) < P99_TOL


def test_ops_on_cuda_match_the_same_ops_on_cpu_tensors() -> None:
    image = read("src_biden.jpg")[:512, :512]
    target = read("src_obama.jpg")[:512, :512]
    skin = np.zeros((512, 512), bool)
    skin[200:300, 150:350] = True
    cpu = ops.to_nchw(torch.from_numpy(image))
    m = torch.tensor([[0.9, 0.1, 12.0], [-0.1, 0.9, 30.0]])
    a = ops.warp_affine(cpu.float(), m, (300, 280))
    b = ops.warp_affine(cpu.float().to(CUDA), m.to(CUDA), (300, 280)).cpu()
    assert (a - b).abs().max() < 1e-2
    want = cpu_lab_transfer(image, target, skin).astype(np.float32)
    got = ops.lab_transfer(ops.to_nchw(torch.from_numpy(image)).to(CUDA), ops.to_nchw(torch.from_numpy(target)).to(CUDA),
                           torch.from_numpy(skin)[None].to(CUDA))
    got = ops.to_hwc(got.round().clamp(0, 255).to(torch.uint8))[0].cpu().numpy().astype(np.float32)
    assert np.abs(got - want).mean() < 1.5
    mask = torch.zeros(1, 1, 200, 200)
    mask[..., 50:150, 40:160] = 1.0
    fa = ops.feather_mask(mask, 4.0, 6.0)
    fb = ops.feather_mask(mask.to(CUDA), 4.0, 6.0).cpu()
    assert (fa - fb).abs().max() < 1e-4


@pytest.mark.skipif(not onnx2torch_available(), reason="onnx2torch is not installed")
def test_torch_session_on_cuda_matches_onnxruntime(tmp_path) -> None:  # noqa: ANN001
    path = make_inswapper(tmp_path / "inswapper_noise.onnx", "noise")
    rng = np.random.default_rng(0)
    feeds = {"target": rng.random((4, 3, 128, 128), dtype=np.float32),
             "source": rng.standard_normal((4, 512)).astype(np.float32)}
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    fp32 = TorchSession(path, device="cuda").run(None, feeds)[0]
    np.testing.assert_allclose(fp32, want, atol=1e-3)
    half = TorchSession(path, device="cuda", fp16=True).run(None, feeds)[0]
    assert half.dtype == np.float32 and np.abs(half - want).max() < 5e-2
    graphed = TorchSession(path, device="cuda", cuda_graph=True)
    first = graphed.run(None, feeds)[0]
    other = {k: v[::-1].copy() for k, v in feeds.items()}
    second = graphed.run(None, other)[0]  # the same captured graph, new inputs copied in
    np.testing.assert_allclose(first, fp32, atol=1e-5)
    np.testing.assert_allclose(second, fp32[::-1], atol=1e-3)


def _reshape_model(path, shape_from_input: bool):  # noqa: ANN001, ANN202
    """x [N, 8] -> relu(reshape(x, [-1, 2, 4])); the shape is a constant, or (uncapturable)
    computed on the device from the input's own shape."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []
    if shape_from_input:  # Shape(x) -> [N, 8]: an identity reshape whose shape lives on the device
        nodes.append(helper.make_node("Shape", ["x"], ["shape"]))
        out_shape = ["N", 8]
    else:
        inits.append(numpy_helper.from_array(np.array([-1, 2, 4], np.int64), "shape"))
        out_shape = ["N", 2, 4]
    nodes += [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("Relu", ["r"], ["y"])]
    graph = helper.make_graph(nodes, "reshape", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.skipif(not onnx2torch_available(), reason="onnx2torch is not installed")
def test_constant_shapes_stay_on_the_host_so_the_model_is_captured(tmp_path) -> None:  # noqa: ANN001
    import warnings

    path = _reshape_model(tmp_path / "reshape.onnx", shape_from_input=False)
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    sess = TorchSession(path, device="cuda", cuda_graph=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "cannot run as a CUDA graph"
        for k in range(3):  # the first run checks, the second captures, the third replays
            np.testing.assert_allclose(sess.run(None, {"x": x * (k + 1)})[0],
                                       np.maximum((x * (k + 1)).reshape(-1, 2, 4), 0))
    assert sess.cuda_graph and sess._graphs


@pytest.mark.skipif(not onnx2torch_available(), reason="onnx2torch is not installed")
def test_constant_resize_scales_stay_on_the_host_so_the_model_is_captured(tmp_path) -> None:  # noqa: ANN001
    import warnings

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "roi", "scales"], ["y"], mode="nearest")], "resize",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [numpy_helper.from_array(np.array([], np.float32), "roi"),
         numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "resize.onnx"
    onnx.save(model, str(path))
    x = np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4)
    sess = TorchSession(path, device="cuda", cuda_graph=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=RuntimeWarning)
        for k in range(3):
            np.testing.assert_allclose(sess.run(None, {"x": x + k})[0], np.repeat(np.repeat(x + k, 2, 2), 2, 3))
    assert sess.cuda_graph and sess._graphs


@pytest.mark.skipif(not onnx2torch_available(), reason="onnx2torch is not installed")
def test_a_model_that_cannot_be_captured_runs_without_graphs(tmp_path) -> None:  # noqa: ANN001
    """A shape computed on the device is read on the host by onnx2torch's Reshape, which a CUDA
    graph cannot hold: the session warns once, runs eagerly and gives the eager result."""
    path = _reshape_model(tmp_path / "reshape_dyn.onnx", shape_from_input=True)
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    sess = TorchSession(path, device="cuda", cuda_graph=True)
    with pytest.warns(RuntimeWarning, match="CUDA graph"):  # on the first attempt to capture
        first = sess.run(None, {"x": x})[0]
        second = sess.run(None, {"x": -x})[0]
    np.testing.assert_allclose(first, np.maximum(x, 0))
    np.testing.assert_allclose(second, np.maximum(-x, 0))
    assert not sess.cuda_graph
    np.testing.assert_allclose(sess.run(None, {"x": 2 * x})[0], np.maximum(2 * x, 0))


def test_neural_swap_on_cuda_matches_the_cpu_path(two) -> None:  # noqa: ANN001
    from swapline.config import SwapConfig
    from swapline.pipeline.frame import Processors, frame_path
    from swapline.swap.onnx_swapper import NeuralSwapper

    from .test_gpu_neural import SPEC, TorchNegative

    image, faces = two
    emap = np.random.default_rng(0).standard_normal((512, 512)).astype(np.float32) / np.sqrt(512)
    swapper = NeuralSwapper(TorchNegative(), SPEC, emap=emap)
    source = swapper.source_input(np.random.default_rng(1).standard_normal(512).astype(np.float32))
    cfg = SwapConfig(face_swapper_model="inswapper_128")
    on_gpu = Processors(swapper=swapper, source_input=source, device="cuda:0")
    assert frame_path(cfg, on_gpu) == "torch-neural"
    ref, ref_changed = swap_faces(image, faces, None, cfg, processors=Processors(swapper=swapper, source_input=source))
    out, changed = swap_faces(image, faces, None, cfg, processors=on_gpu)
    assert np.array_equal(out[~changed], image[~changed])
    assert np.count_nonzero(changed ^ ref_changed) <= 2e-3 * np.count_nonzero(ref_changed) + 16
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16)).max(-1)[changed | ref_changed]
    assert diff.mean() < 0.5 and np.percentile(diff, 99) <= 3
