"""Exact graph rewrites of CPU sessions: the PRelu split gives the same floats, leaves what it
cannot rewrite, and its graph is what the optimised cache keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from swapline.config import RuntimeConfig
from swapline.models.manifest import Manifest
from swapline.runtime.rewrite import REWRITE_VERSION, cpu_rewritten, split_prelu
from swapline.runtime.session import SessionFactory

def _prelu_model(path: Path, *, opset: int = 17) -> Path:
    """Conv → PRelu (per-channel slopes of both signs, some above 1) → Add → PRelu, as FaceMesh."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.linspace(-1.1, 1.5, 8, dtype=np.float32).reshape(1, 8, 1, 1), "a1"),
             numpy_helper.from_array(rng.normal(size=(1, 8, 1, 1)).astype(np.float32), "a2")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["c", "a1"], ["p"], name="first"),
             helper.make_node("Add", ["p", "c"], ["s"]),
             helper.make_node("PRelu", ["s", "a2"], ["y"])]
    graph = helper.make_graph(nodes, "prelu", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, 16, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return path


def _run(model: str | bytes, x: np.ndarray, level: ort.GraphOptimizationLevel) -> np.ndarray:
    so = ort.SessionOptions()
    so.graph_optimization_level = level
    so.intra_op_num_threads = 1
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_prelu_split_gives_the_same_floats(tmp_path: Path) -> None:
    path = _prelu_model(tmp_path / "m.onnx")
    rewritten = cpu_rewritten(path)
    assert rewritten is not None
    ops = [n.op_type for n in onnx.load_from_string(rewritten).graph.node]
    assert "PRelu" not in ops and ops.count("Min") == 2
    x = np.random.default_rng(1).normal(size=(2, 3, 16, 16)).astype(np.float32)
    x[0, 0, :4] = 0.0
    for level in (ort.GraphOptimizationLevel.ORT_DISABLE_ALL, ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        want = _run(str(path), x, level)  # (the optimised convolution rounds a little differently)
        assert (want < 0).any() and (want > 0).any()
        assert np.array_equal(_run(rewritten, x, level), want)


def test_prelu_split_leaves_what_it_cannot_rewrite(tmp_path: Path) -> None:
    assert cpu_rewritten(_prelu_model(tmp_path / "old.onnx", opset=7)) is None  # Min does not broadcast there
    model = onnx.load(str(_prelu_model(tmp_path / "m.onnx")))
    model.graph.node[1].input[1] = "p_slope"  # a computed slope: left alone
    model.graph.node.insert(1, helper.make_node("Identity", ["a1"], ["p_slope"]))
    assert split_prelu(model) == 1 and [n.op_type for n in model.graph.node].count("PRelu") == 1
    (tmp_path / "none.onnx").write_bytes(b"not a model")
    assert cpu_rewritten(tmp_path / "none.onnx") is None


def test_cpu_sessions_cache_the_rewritten_graph(tmp_path: Path) -> None:
    path = _prelu_model(tmp_path / "m.onnx")
    factory = SessionFactory.from_config(RuntimeConfig(execution_providers=("cpu",), intra_op_threads=1))
    cache = tmp_path / "cache"
    cached = factory.optimized_path(path, cache)
    assert cached is not None and cached.name.endswith(f"-r{REWRITE_VERSION}.onnx")
    x = np.random.default_rng(2).normal(size=(1, 3, 16, 16)).astype(np.float32)
    want = _run(str(path), x, ort.GraphOptimizationLevel.ORT_ENABLE_ALL)  # as optimised without the rewrite
    first = factory.create(path, optimized_dir=cache)
    assert cached.exists() and "PRelu" not in {n.op_type for n in onnx.load(str(cached)).graph.node}
    entry = Manifest(cache).entry(cached)
    assert entry is not None and entry.steps[0] == f"rewrite {REWRITE_VERSION}"
    second = factory.create(path, optimized_dir=cache)  # loaded from the cache
    assert np.array_equal(first.run(None, {"x": x})[0], want)
    assert np.array_equal(second.run(None, {"x": x})[0], want)


