"""GPU-facing runtime logic that is checkable on a CPU machine: provider option dictionaries,
TensorRT profile shapes, --fp16 conversion, IO binding, memory strategy, the torch backend and
the choice of device path."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from swapline.config import RuntimeConfig
from swapline.errors import ConfigError, ModelError
from swapline.gpu import plan_device_path
from swapline.runtime import memory
from swapline.runtime.fp16 import convert_fp16, fp16_path
from swapline.runtime.io_binding import run_bound
from swapline.runtime.memory import MemoryConfig, plan_batch, should_release
from swapline.runtime.session import (
    ProviderOptions, SessionFactory, SessionPool, build_provider_list, cuda_options, model_inputs,
    profile_shapes, tensorrt_options,
)
from swapline.runtime.torch_backend import TorchSession, cuda_available, onnx2torch_available, torch_available

needs_fp16 = pytest.mark.skipif(importlib.util.find_spec("onnxconverter_common") is None,
                                reason="--fp16 needs onnxconverter-common (pip install onnxconverter-common)")
FP16_ATOL = 2e-2  # stated tolerance: float16 outputs vs float32, relative to the output's scale


def _conv_model(folder: Path, name: str = "conv.onnx", batch: str | int = "N") -> Path:
    """x (N, 3, 32, 32) -> conv 3x3 (8) -> relu -> conv 3x3 (4) -> global average: (N, 4, 1, 1)."""
    rng = np.random.default_rng(7)
    w1 = numpy_helper.from_array((rng.normal(size=(8, 3, 3, 3)) * 0.3).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(size=(8,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array((rng.normal(size=(4, 8, 3, 3)) * 0.2).astype(np.float32), "w2")
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c2"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4, 1, 1])], [w1, b1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / name
    onnx.save(model, str(path))
    return path


def _cpu(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# --- provider options ---------------------------------------------------------------------------

def test_tensorrt_options_have_caches_fp16_and_profiles(tmp_path: Path) -> None:
    opts = tensorrt_options(1, fp16=True, cache_dir=tmp_path, profile=("x:1x3x8x8", "x:4x3x8x8", "x:8x3x8x8"),
                            workspace_bytes=2 << 30)
    assert opts == {
        "device_id": "1", "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True", "trt_engine_cache_path": str(tmp_path / "trt"),
        "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(tmp_path / "trt"),
        "trt_profile_min_shapes": "x:1x3x8x8", "trt_profile_opt_shapes": "x:4x3x8x8",
        "trt_profile_max_shapes": "x:8x3x8x8", "trt_max_workspace_size": str(2 << 30),
    }
    assert tensorrt_options(0, fp16=False) == {"device_id": "0", "trt_fp16_enable": "False"}
    assert all(isinstance(v, str) for v in opts.values())


def test_cuda_options_and_the_provider_list_in_order() -> None:
    assert cuda_options(2, cudnn_search="EXHAUSTIVE", arena="kSameAsRequested", mem_limit_bytes=1 << 30) == {
        "device_id": "2", "cudnn_conv_algo_search": "EXHAUSTIVE", "arena_extend_strategy": "kSameAsRequested",
        "gpu_mem_limit": str(1 << 30)}
    options = ProviderOptions(cuda_mem_limit_gb=1.5, cudnn_search="DEFAULT")
    lst = build_provider_list(["tensorrt", "cuda", "rocm", "openvino", "directml", "cpu"], 3, options)
    names = [p[0] if isinstance(p, tuple) else p for p in lst]
    assert names == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider",
                     "OpenVINOExecutionProvider", "DmlExecutionProvider", "CPUExecutionProvider"]
    assert lst[1][1]["gpu_mem_limit"] == str(int(1.5 * (1 << 30))) and lst[1][1]["device_id"] == "3"
    assert lst[1][1]["cudnn_conv_algo_search"] == "DEFAULT"
    assert lst[2][1]["device_id"] == "3" and lst[4][1] == {"device_id": "3"}


def test_provider_options_validate_and_follow_the_memory_strategy() -> None:
    with pytest.raises(ConfigError):
        ProviderOptions(cudnn_search="FAST")
    with pytest.raises(ConfigError):
        ProviderOptions(trt_max_batch=0)
    with pytest.raises(ConfigError):
        ProviderOptions(cuda_mem_limit_gb=0)
    strict = ProviderOptions().with_memory(MemoryConfig("strict", 3.0))
    assert strict.cuda_arena == "kSameAsRequested" and strict.cuda_mem_limit_gb == 3.0
    assert ProviderOptions(cuda_mem_limit_gb=2.0).with_memory(MemoryConfig("tolerant", 3.0)).cuda_mem_limit_gb == 2.0
    assert ProviderOptions().with_memory(None) == ProviderOptions()


def test_profile_shapes_cover_the_dynamic_batch(tmp_path: Path) -> None:
    inputs = model_inputs(_conv_model(tmp_path))
    assert inputs == [("x", ["N", 3, 32, 32])]
    assert profile_shapes(inputs, 8) == ("x:1x3x32x32", "x:8x3x32x32", "x:8x3x32x32")
    assert profile_shapes(inputs, 8, opt_batch=4)[1] == "x:4x3x32x32"
    two = [("img", [None, 3, "h", "w"]), ("scale", ["B", 2])]
    assert profile_shapes(two, 4) is None  # h, w unknown: TensorRT builds for the shapes it sees
    assert profile_shapes(two, 4, dims={"h": 640, "w": 480}) == (
        "img:1x3x640x480,scale:1x2", "img:4x3x640x480,scale:4x2", "img:4x3x640x480,scale:4x2")
    assert profile_shapes(model_inputs(_conv_model(tmp_path, "fixed.onnx", batch=1)), 8) is None


def test_factory_passes_profiles_and_caches_to_tensorrt(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    factory = SessionFactory(RuntimeConfig(execution_device_id=1), ("tensorrt", "cuda", "cpu"), (),
                             ProviderOptions(trt_max_batch=16))
    lst = factory.provider_list(tmp_path / "cache", model)
    trt = lst[0][1]
    assert trt["trt_profile_max_shapes"] == "x:16x3x32x32" and trt["device_id"] == "1"
    assert trt["trt_engine_cache_path"] == str(tmp_path / "cache" / "trt")
    assert lst[1][0] == "CUDAExecutionProvider" and lst[-1] == "CPUExecutionProvider"
    assert factory.optimized_path(model, tmp_path) is None  # GPU providers keep no ORT-optimised copy


@needs_fp16
def test_asking_for_gpu_providers_with_fp16_on_cpu_warns_once_and_runs(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factory = SessionFactory.from_config(RuntimeConfig(execution_providers=("tensorrt", "cuda")),
                                             ProviderOptions(fp16=True), MemoryConfig("strict", 2.0))
        sessions = [factory.create(model, optimized_dir=tmp_path / "cache") for _ in range(2)]
    assert len([w for w in caught if "not available" in str(w.message)]) == 1
    x = np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32)
    ref = _cpu(model).run(None, {"x": x})[0]
    for s in sessions:
        out = s.run(None, {"x": x})[0]
        assert out.dtype == np.float32
        assert np.abs(out - ref).max() <= FP16_ATOL * max(1.0, float(np.abs(ref).max()))


# --- fp16 ---------------------------------------------------------------------------------------

@needs_fp16
def test_fp16_conversion_keeps_float32_io_and_outputs_within_tolerance(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    dst = convert_fp16(model, tmp_path / "out" / "conv.fp16.onnx")
    converted = onnx.load(str(dst))
    assert converted.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert converted.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert all(i.data_type == TensorProto.FLOAT16 for i in converted.graph.initializer)
    assert dst.stat().st_size < model.stat().st_size
    x = np.random.default_rng(1).random((3, 3, 32, 32)).astype(np.float32)
    ref, got = _cpu(model).run(None, {"x": x})[0], _cpu(dst).run(None, {"x": x})[0]
    assert np.abs(got - ref).max() <= FP16_ATOL * max(1.0, float(np.abs(ref).max()))
    with pytest.raises(ModelError, match="cannot load model"):
        bad = tmp_path / "bad.onnx"
        bad.write_bytes(b"\x00garbage")
        convert_fp16(bad, tmp_path / "bad16.onnx")


def test_host_constants_are_shapes_and_scales_not_weights(tmp_path: Path) -> None:
    """The constants kept on the host for the torch backend on CUDA: integer shapes and the
    scales Resize reads in Python, never a weight that takes part in the maths."""
    if not (torch_available() and onnx2torch_available()):
        pytest.skip("torch and onnx2torch not installed")
    from swapline.runtime.torch_backend import _host_constants

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
         helper.make_node("Reshape", ["m", "shape"], ["r"], name="rs"),
         helper.make_node("Resize", ["r", "roi", "scales"], ["y"], mode="nearest", name="up"),
         helper.make_node("Mul", ["y", "gain"], ["z"], name="gain")],
        "consts", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 1, 8, 8])],
        [numpy_helper.from_array(np.ones((16, 16), np.float32), "w"),
         numpy_helper.from_array(np.array([-1, 1, 4, 4], np.int64), "shape"),
         numpy_helper.from_array(np.array([], np.float32), "roi"),
         numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
         numpy_helper.from_array(np.array([2.0], np.float32), "gain")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "consts.onnx"
    onnx.save(model, str(path))
    sess = TorchSession(path)
    kept = {tuple(getattr(owner, attr).tolist()) for owner, attr in _host_constants(sess.module)}
    assert kept == {(-1, 1, 4, 4), (), (1.0, 1.0, 2.0, 2.0)}  # shape, roi, scales; not w, not gain
    x = np.random.default_rng(0).random((2, 16)).astype(np.float32)
    want = np.repeat(np.repeat((x @ np.ones((16, 16), np.float32)).reshape(-1, 1, 4, 4), 2, 2), 2, 3) * 2
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-5)


@needs_fp16
def test_fp16_conversion_of_unnamed_nodes_kept_in_float32(tmp_path: Path) -> None:
    """Two unnamed Resize nodes (kept float32, so wrapped in Casts), the last one giving the graph
    output: onnxconverter-common would name both Casts alike (the model would not load) and leave
    the output float16; swapline names the nodes first and casts the output back."""
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    up = numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "up")
    w = numpy_helper.from_array(np.full((3, 3, 1, 1), 0.5, np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "roi", "up"], ["a"], mode="nearest"),
         helper.make_node("Conv", ["a", "w"], ["b"]),
         helper.make_node("Resize", ["b", "roi", "up"], ["y"], mode="nearest")],
        "two_resizes", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, 32, 32])], [roi, up, w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src = tmp_path / "two_resizes.onnx"
    onnx.save(model, str(src))
    dst = convert_fp16(src, tmp_path / "two_resizes.fp16.onnx")
    x = np.random.default_rng(2).random((2, 3, 8, 8)).astype(np.float32)
    ref, got = _cpu(src).run(None, {"x": x})[0], _cpu(dst).run(None, {"x": x})[0]
    assert got.dtype == np.float32 and np.abs(got - ref).max() <= FP16_ATOL * max(1.0, float(np.abs(ref).max()))
    assert [n.name for n in onnx.load(str(src)).graph.node] == ["", "", ""]  # the source file is untouched


@needs_fp16
def test_fp16_copy_is_made_once_and_cached_beside_the_optimised_graph(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    cache = tmp_path / "cache"
    factory = SessionFactory.from_config(RuntimeConfig(execution_providers=("cpu",)), ProviderOptions(fp16=True))
    first = factory.create(model, optimized_dir=cache)
    copy = fp16_path(model, cache)
    assert copy.exists()
    optimised = factory.optimized_path(copy, cache)
    assert optimised is not None and optimised.exists()
    stamp = copy.stat().st_mtime_ns
    second = factory.create(model, optimized_dir=cache)
    assert copy.stat().st_mtime_ns == stamp
    x = np.random.default_rng(2).random((1, 3, 32, 32)).astype(np.float32)
    assert np.allclose(first.run(None, {"x": x})[0], second.run(None, {"x": x})[0], atol=1e-6)
    copy.write_bytes(b"damaged")  # converted again, never used damaged
    optimised.unlink()
    third = factory.create(model, optimized_dir=cache)
    assert np.allclose(third.run(None, {"x": x})[0], first.run(None, {"x": x})[0], atol=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "conv.onnx"]


@needs_fp16
@pytest.mark.parametrize("name", ["sface", "yunet"])
def test_fp16_on_real_models_stays_within_tolerance(name: str, model_home: Path, tmp_path: Path) -> None:
    from swapline.models.store import ModelStore

    path = ModelStore(RuntimeConfig(home=model_home)).path(name)
    dst = convert_fp16(path, tmp_path / f"{name}.fp16.onnx")
    ref_s, got_s = _cpu(path), _cpu(dst)
    feeds = {}
    for arg in ref_s.get_inputs():
        shape = [d if isinstance(d, int) else (1 if i == 0 else 160) for i, d in enumerate(arg.shape)]
        feeds[arg.name] = np.random.default_rng(4).random(shape).astype(np.float32) * 255
    for ref, got in zip(ref_s.run(None, feeds), got_s.run(None, feeds)):
        assert got.dtype == ref.dtype
        scale = max(1.0, float(np.abs(ref).max()))
        assert np.abs(got - ref).mean() <= FP16_ATOL * scale, name
        if name == "sface":  # the identity embedding keeps its direction
            cos = float((ref.ravel() @ got.ravel()) / np.linalg.norm(ref) / np.linalg.norm(got))
            assert cos > 0.999


# --- IO binding ---------------------------------------------------------------------------------

def test_io_binding_on_cpu_equals_run_and_chains_without_copies(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    s = _cpu(model)
    x = np.random.default_rng(3).random((2, 3, 32, 32)).astype(np.float32)
    ref = s.run(None, {"x": x})
    got = run_bound(s, {"x": x})
    assert len(got) == 1 and np.array_equal(got[0], ref[0])
    kept = run_bound(s, {"x": x}, keep_outputs_on_device=True)
    assert isinstance(kept[0], ort.OrtValue) and np.array_equal(kept[0].numpy(), ref[0])
    value = ort.OrtValue.ortvalue_from_numpy(x)
    assert np.array_equal(run_bound(s, {"x": value})[0], ref[0])


def test_io_binding_with_torch_tensors(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed")
    s = _cpu(_conv_model(tmp_path))
    x = np.random.default_rng(5).random((2, 3, 32, 32)).astype(np.float32)
    ref = s.run(None, {"x": x})[0]
    out = torch.empty((2, 4, 1, 1), dtype=torch.float32)
    got = run_bound(s, {"x": torch.from_numpy(x)}, out={"y": out})
    assert got[0] is out and np.allclose(out.numpy(), ref)


# --- memory strategy ----------------------------------------------------------------------------

def test_batch_size_follows_free_memory_strategy_and_limit() -> None:
    gib = 1 << 30
    per = 256 << 20
    assert plan_batch(8 * gib, per, "strict") == 16
    assert plan_batch(8 * gib, per, "moderate") == 24
    assert plan_batch(8 * gib, per, "tolerant") == 28
    assert plan_batch(8 * gib, per, "tolerant", max_bytes=2 * gib) == 8
    assert plan_batch(8 * gib, per, "moderate", fixed_bytes=4 * gib) == 8
    assert plan_batch(100 << 20, per, "tolerant") == 1  # never below one
    assert plan_batch(None, per, "moderate") == memory.DEFAULT_BATCH
    assert plan_batch(None, per, "moderate", max_bytes=gib) == 4  # only the limit is known
    assert plan_batch(80 * gib, 1 << 20, "tolerant", upper=32) == 32
    with pytest.raises(ConfigError):
        plan_batch(gib, per, "greedy")


def test_release_decisions_by_strategy() -> None:
    assert should_release("strict", True) and should_release("strict", True, used_later=True)
    assert should_release("moderate", True) and not should_release("moderate", True, used_later=True)
    assert not should_release("tolerant", True)
    assert not any(should_release(s, False) for s in memory.STRATEGIES)
    assert memory.arena_strategy("strict") == "kSameAsRequested"
    with pytest.raises(ConfigError):
        MemoryConfig("loose")
    with pytest.raises(ConfigError):
        MemoryConfig(max_video_memory_gb=0)
    assert MemoryConfig(max_video_memory_gb=1.5).max_bytes == int(1.5 * (1 << 30))


def test_session_pool_releases_by_strategy(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    factory = SessionFactory.from_config(RuntimeConfig(execution_providers=("cpu",)))
    for strategy, used_later, released in [("strict", True, True), ("moderate", True, False),
                                           ("moderate", False, True), ("tolerant", False, False)]:
        pool = SessionPool(factory, MemoryConfig(strategy))
        s = pool.get(model)
        assert pool.get(model) is s and model in pool
        assert pool.done(model, used_later=used_later) is released
        assert (model in pool) is not released
        pool.clear()
        assert len(pool) == 0


def test_free_device_memory_is_none_quickly_without_a_device() -> None:
    t = time.perf_counter()
    free = memory.free_device_memory()
    assert free is None or free > 0
    assert time.perf_counter() - t < 3.0
    assert memory.parse_nvidia_smi("NVIDIA H100 80GB HBM3, 80000, 81559\nbad line\n") == [
        {"name": "NVIDIA H100 80GB HBM3", "free_bytes": 80000 << 20, "total_bytes": 81559 << 20}]


# --- torch backend and device path --------------------------------------------------------------

def test_importing_swapline_runtime_and_gpu_does_not_import_torch() -> None:
    code = ("import sys, swapline.runtime.session, swapline.runtime.torch_backend, swapline.gpu, "
            "swapline.gpu.report, swapline.runtime.io_binding; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_device_path_is_chosen_only_when_available() -> None:
    cpu = plan_device_path(cuda_device=False, torch_ok=True, onnx2torch_ok=True, ort_providers=["cpu"])
    assert cpu.ops == "numpy" and cpu.models == "ort-cpu" and not cpu.on_device
    ort_gpu = plan_device_path(cuda_device=True, torch_ok=True, onnx2torch_ok=True, ort_providers=["cuda", "cpu"],
                               device_id=1)
    assert (ort_gpu.ops, ort_gpu.models, ort_gpu.device) == ("torch", "ort-device", "cuda:1")
    torch_only = plan_device_path(cuda_device=True, torch_ok=True, onnx2torch_ok=True, ort_providers=["cpu"])
    assert torch_only.models == "torch"
    forced = plan_device_path(cuda_device=True, torch_ok=True, onnx2torch_ok=True, ort_providers=["cuda", "cpu"],
                              want="cpu")
    assert forced.ops == "numpy" and forced.models == "ort-cpu"
    no_torch = plan_device_path(cuda_device=True, torch_ok=False, onnx2torch_ok=False, ort_providers=["cuda", "cpu"])
    assert no_torch.ops == "numpy" and no_torch.models == "ort-device"
    with pytest.raises(ValueError):
        plan_device_path(cuda_device=False, torch_ok=False, onnx2torch_ok=False, ort_providers=[], want="gpu")


def test_runtime_report_describes_this_machine() -> None:
    from swapline.gpu.report import runtime_report

    rep = runtime_report(("tensorrt", "cuda", "cpu"), probe_codecs=False)
    assert "cpu" in rep["providers_available"] and rep["providers_used"][-1] == "cpu"
    assert set(rep["providers_missing"]) <= {"tensorrt", "cuda"}
    assert isinstance(rep["cuda_devices"], list) and rep["codecs"] is None
    if not rep["cuda_devices"]:
        assert rep["free_device_memory"] is None and rep["device_path"]["ops"] == "numpy"


@pytest.mark.skipif(not (torch_available() and onnx2torch_available()), reason="torch and onnx2torch not installed")
def test_torch_session_matches_onnxruntime(tmp_path: Path) -> None:
    model = _conv_model(tmp_path)
    x = np.random.default_rng(6).random((2, 3, 32, 32)).astype(np.float32)
    ref = _cpu(model).run(None, {"x": x})[0]
    ts = TorchSession(model)
    assert [i.name for i in ts.get_inputs()] == ["x"] and [o.name for o in ts.get_outputs()] == ["y"]
    got = ts.run(None, {"x": x})[0]
    assert got.dtype == np.float32 and np.allclose(got, ref, atol=1e-4)
    assert np.allclose(ts.run(["y"], {"x": x})[0], ref, atol=1e-4)
    half = TorchSession(model, fp16=True).run(None, {"x": x})[0]
    assert half.dtype == np.float32
    assert np.abs(half - ref).max() <= FP16_ATOL * max(1.0, float(np.abs(ref).max()))
    if not cuda_available():
        with pytest.raises(ModelError, match="CUDA"):
            TorchSession(model, device="cuda")


def test_torch_session_without_torch_stack_is_a_clear_model_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from swapline.runtime import torch_backend

    monkeypatch.setattr(torch_backend, "onnx2torch_available", lambda: False)
    if torch_available():
        with pytest.raises(ModelError, match="onnx2torch"):
            TorchSession(_conv_model(tmp_path))
    monkeypatch.setattr(torch_backend, "torch_available", lambda: False)
    with pytest.raises(ModelError, match="PyTorch"):
        TorchSession(_conv_model(tmp_path))
    assert torch_backend.cuda_available() is False
