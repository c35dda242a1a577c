"""The runtime layer: provider choice and fallback, threads, the optimised-model cache."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from swapline.config import RuntimeConfig
from swapline.errors import ModelError
from swapline.runtime.session import SessionFactory, default_threads, resolve_providers


def test_resolve_keeps_the_users_order_and_ends_with_cpu() -> None:
    chosen, missing = resolve_providers(("cuda", "tensorrt", "cpu"), ["tensorrt", "cuda", "cpu"])
    assert chosen == ["cuda", "tensorrt", "cpu"] and missing == []
    chosen, missing = resolve_providers(("tensorrt", "cuda"), ["cpu"])
    assert chosen == ["cpu"] and missing == ["tensorrt", "cuda"]
    chosen, _ = resolve_providers((), ["cuda", "cpu"])
    assert chosen == ["cuda", "cpu"]
    with pytest.raises(ModelError, match="unknown execution provider 'gpu'"):
        resolve_providers(("gpu",), ["cpu"])


def test_missing_providers_warn_once_and_still_run(tmp_path: Path) -> None:
    model = _tiny_model(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        factory = SessionFactory.from_config(RuntimeConfig(execution_providers=("tensorrt", "cuda", "cpu")))
        a = factory.create(model)
        b = factory.create(model)
    relevant = [w for w in caught if "not available" in str(w.message)]
    assert len(relevant) == 1 and "tensorrt, cuda" in str(relevant[0].message)
    x = np.ones((2, 4), np.float32)
    assert np.allclose(a.run(None, {"x": x})[0], b.run(None, {"x": x})[0])


def test_threads_fit_the_machine() -> None:
    assert default_threads() >= 1
    factory = SessionFactory.from_config(RuntimeConfig(intra_op_threads=1))
    assert factory.config.intra_op_threads == 1


def test_optimised_graph_is_cached_and_gives_the_same_outputs(tmp_path: Path) -> None:
    model = _tiny_model(tmp_path)
    factory = SessionFactory.from_config(RuntimeConfig(execution_providers=("cpu",)))
    cache = tmp_path / "cache"
    cached = factory.optimized_path(model, cache)
    assert cached is not None and not cached.exists()
    first = factory.create(model, optimized_dir=cache)
    assert cached.exists()
    assert not list(cached.parent.glob(".*.part"))
    stamp = cached.stat().st_mtime_ns
    second = factory.create(model, optimized_dir=cache)
    assert cached.stat().st_mtime_ns == stamp  # loaded, not written again
    x = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    assert np.allclose(first.run(None, {"x": x})[0], second.run(None, {"x": x})[0], atol=1e-6)
    # a damaged cached copy is replaced, never used
    cached.write_bytes(b"not a model")
    third = factory.create(model, optimized_dir=cache)
    assert np.allclose(third.run(None, {"x": x})[0], first.run(None, {"x": x})[0], atol=1e-6)
    assert cached.stat().st_size > 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "tiny.onnx"]  # nothing beside the model


def test_unloadable_model_is_a_model_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    factory = SessionFactory.from_config(RuntimeConfig())
    with pytest.raises(ModelError, match="cannot load model bad.onnx"):
        factory.create(bad)


def _tiny_model(folder: Path) -> Path:
    """x (N, 4) → relu(x @ W + b) @ W2: enough nodes for the optimiser to fuse something."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(size=(4, 8)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(8,)).astype(np.float32), "b")
    w2 = numpy_helper.from_array(rng.normal(size=(8, 2)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [w, b, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "tiny.onnx"
    onnx.save(model, str(path))
    return path
