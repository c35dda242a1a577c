"""The shared model-session wrapper (swapline.runtime.model.ModelRunner) on tiny ONNX models built
here: a batch fixed at 1, a dynamic batch, a float16 input, batch splitting, a fixed batch larger
than 1 (padded), inputs fed whole, and the errors it gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from swapline.errors import ModelError
from swapline.runtime.model import ModelRunner, TensorInfo, tensor_info

from .tiny_models import OPSET, make_image_model


def _session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class Counting:
    """A session proxy that records the batch of every call."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.inner = session
        self.batches: list[int] = []
        self.dtypes: list[np.dtype] = []

    def get_inputs(self):
        return self.inner.get_inputs()

    def get_outputs(self):
        return self.inner.get_outputs()

    def run(self, names, feeds):
        first = next(iter(feeds.values()))
        self.batches.append(first.shape[0])
        self.dtypes.append(first.dtype)
        return self.inner.run(names, feeds)


def _model(tmp_path: Path, batch: int | str, name: str = "m") -> Counting:
    """``x`` [batch, 3, 8, 8] -> ``y`` = 2x + 1 (same shape) and ``e`` [batch, 4] (a projection)."""
    path = make_image_model(tmp_path / f"{name}.onnx", {"x": [batch, 3, 8, 8]},
                            {"y": [batch, 3, 8, 8], "e": [batch, 4]}, "identity", scale=2.0, bias=1.0)
    return Counting(_session(path))


def _items(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 8, 8), dtype=np.float32)


def test_dynamic_batch_is_one_call(tmp_path: Path) -> None:
    session = _model(tmp_path, "N")
    runner = ModelRunner(session, name="dyn")
    x = _items(5)
    y, e = runner.run({"x": x})
    assert session.batches == [5] and runner.calls == 1
    assert not runner.batch_one and runner.fixed_batch is None
    np.testing.assert_allclose(y, 2 * x + 1, rtol=1e-6)
    assert e.shape == (5, 4)
    only_y = runner.run({"x": x}, ["y"])
    assert len(only_y) == 1 and only_y[0].shape == (5, 3, 8, 8)


def test_batch_fixed_at_one_runs_item_by_item(tmp_path: Path) -> None:
    dyn = ModelRunner(_model(tmp_path, "N", "dyn"))
    session = _model(tmp_path, 1, "one")
    runner = ModelRunner(session, name="one", max_batch=64)
    assert runner.batch_one and runner.fixed_batch == 1 and runner.piece == 1
    x = _items(4)
    y, e = runner.run({"x": x})
    assert session.batches == [1, 1, 1, 1] and runner.calls == 4
    y2, e2 = dyn.run({"x": x})
    np.testing.assert_allclose(y, y2, rtol=1e-6)
    np.testing.assert_allclose(e, e2, rtol=1e-5, atol=1e-6)
    # one item: one call, nothing split
    runner.run({"x": x[:1]})
    assert session.batches[-1] == 1 and runner.calls == 5


def test_large_batches_are_split_at_max_batch(tmp_path: Path) -> None:
    session = _model(tmp_path, "N")
    runner = ModelRunner(session, max_batch=2)
    x = _items(5)
    y, e = runner.run({"x": x})
    assert session.batches == [2, 2, 1] and runner.calls == 3
    whole_y, whole_e = ModelRunner(_model(tmp_path, "N", "whole")).run({"x": x})
    np.testing.assert_allclose(y, whole_y, rtol=1e-6)
    np.testing.assert_allclose(e, whole_e, rtol=1e-5, atol=1e-6)
    runner.run({"x": x[:2]})
    assert session.batches[-1] == 2  # at the limit: one call


def test_a_fixed_batch_above_one_is_padded(tmp_path: Path) -> None:
    session = _model(tmp_path, 3)
    runner = ModelRunner(session)
    x = _items(4)
    (y, e) = runner.run({"x": x})
    assert session.batches == [3, 3] and y.shape == (4, 3, 8, 8) and e.shape == (4, 4)
    np.testing.assert_allclose(y, 2 * x + 1, rtol=1e-6)


def _fp16_model(path: Path) -> Path:
    """``x`` float16 [N, 3, 8, 8] -> ``y`` float16 = x * 0.5."""
    half = numpy_helper.from_array(np.array(0.5, np.float16), "half")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "half"], ["y"])], "fp16",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["N", 3, 8, 8])], [half])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_float16_inputs_are_cast_to_the_model_type(tmp_path: Path) -> None:
    session = Counting(_session(_fp16_model(tmp_path / "half.onnx")))
    runner = ModelRunner(session, name="half")
    assert runner.input("x").dtype is np.float16 and runner.input("x").is_fp16
    x = _items(3)  # float32 in
    (y,) = runner.run({"x": x})
    assert session.dtypes == [np.dtype(np.float16)]
    assert y.dtype == np.float16
    np.testing.assert_allclose(y.astype(np.float32), x * 0.5, atol=1e-3)
    assert runner.cast({"x": x})["x"].flags["C_CONTIGUOUS"]


def _weighted_model(path: Path, batch: int | str) -> Path:
    """``x`` [batch, 3, 8, 8] and a weight ``w`` double [1] -> ``y`` = x * w (CodeFormer's shape)."""
    graph = helper.make_graph(
        [helper.make_node("Cast", ["w"], ["wf"], to=TensorProto.FLOAT),
         helper.make_node("Mul", ["x", "wf"], ["y"])], "weighted",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8]),
         helper.make_tensor_value_info("w", TensorProto.DOUBLE, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("batch", ["N", 1])
def test_shared_inputs_are_fed_whole_to_every_call(tmp_path: Path, batch: int | str) -> None:
    session = Counting(_session(_weighted_model(tmp_path / "w.onnx", batch)))
    runner = ModelRunner(session, shared=("w",), max_batch=2)
    assert runner.input("w").dtype is np.float64
    # the weight's [1] does not make the model "batch one"; the image input decides
    assert runner.fixed_batch == (None if batch == "N" else 1)
    x = _items(3)
    (y,) = runner.run({"x": x, "w": np.full((1,), 0.25, np.float32)})  # float32 cast to double
    assert session.batches == ([2, 1] if batch == "N" else [1, 1, 1])
    np.testing.assert_allclose(y, x * 0.25, rtol=1e-6)


def test_errors_name_the_model(tmp_path: Path) -> None:
    runner = ModelRunner(_model(tmp_path, "N"), name="tiny")
    with pytest.raises(ModelError, match="tiny: the model has no input 'z'"):
        runner.input("z")
    with pytest.raises(ModelError, match="no input 'z'"):
        ModelRunner(_model(tmp_path, "N", "b"), name="tiny", shared=("z",))
    with pytest.raises(ValueError, match="max_batch"):
        ModelRunner(_model(tmp_path, "N", "c"), max_batch=0)

    class Lying:
        """Declares a batch axis but answers with one row whatever it is fed."""

        def get_inputs(self):
            from swapline.runtime.torch_backend import NodeArg

            return [NodeArg("x", ["N", 3])]

        def run(self, names, feeds):
            return [np.zeros((1, 3), np.float32)]

    with pytest.raises(ModelError, match="liar: 4 items in, 1 out"):
        ModelRunner(Lying(), name="liar").run({"x": np.zeros((4, 3), np.float32)})


def test_inputs_of_different_batch_sizes_are_refused(tmp_path: Path) -> None:
    path = make_image_model(tmp_path / "two.onnx", {"a": ["N", 3, 8, 8], "b": ["N", 4]}, {"y": ["N", 3, 8, 8]},
                            image_input="a")
    runner = ModelRunner(_session(path), name="two")
    with pytest.raises(ModelError, match="different batch sizes"):
        runner.run({"a": _items(2), "b": np.zeros((3, 4), np.float32)})


def test_tensor_info_reads_ort_and_torch_backend_args(tmp_path: Path) -> None:
    from swapline.runtime.torch_backend import NodeArg

    (arg,) = _session(_fp16_model(tmp_path / "h.onnx")).get_inputs()
    info = tensor_info(arg)
    assert info == TensorInfo("x", ("N", 3, 8, 8), np.float16) and info.fixed_batch is None
    assert tensor_info(NodeArg("t", [1, 3, 4, 4])).fixed_batch == 1
    assert tensor_info(NodeArg("t", [])).fixed_batch is None
    assert tensor_info(NodeArg("t", [2], "tensor(weird)")).dtype is None


def test_run_torch_splits_and_joins_on_the_device() -> None:
    torch = pytest.importorskip("torch")
    from swapline.runtime.torch_backend import NodeArg

    class Doubling:
        def __init__(self) -> None:
            self.batches: list[int] = []

        def get_inputs(self) -> list[NodeArg]:
            return [NodeArg("x", [1, 3]), NodeArg("s", ["N", 2])]

        def run_torch(self, feeds):
            self.batches.append(int(feeds["x"].shape[0]))
            return [feeds["x"] * 2, feeds["s"][:, :1]]

    session = Doubling()
    runner = ModelRunner(session)
    x = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    s = torch.ones(4, 2)
    y, t = runner.run_torch({"x": x, "s": s})
    assert session.batches == [1, 1, 1, 1] and runner.calls == 4
    assert torch.equal(y, x * 2) and t.shape == (4, 1)
