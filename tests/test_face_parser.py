"""The face parser's pieces that need no network: a PyTorch checkpoint read without torch, and
the BiSeNet graph built from it without torch, equal to the same weights run in PyTorch."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from swapline.errors import ModelError
from swapline.models.bisenet_graph import CLASSES, bisenet_onnx
from swapline.models.torch_checkpoint import read_checkpoint, state_dict

torch = pytest.importorskip("torch")


def _tensors() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 8, generator=g)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=g),
        "view.t": base.t(),  # a transposed view: strides that are not C order
        "view.slice": base[2:5, 1:7],  # an offset into a shared storage
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "half": torch.randn(5, generator=g).half(),
        "mask": torch.tensor([True, False, True]),
    }


@pytest.mark.parametrize("zip_layout", [False, True], ids=["legacy", "zip"])
def test_checkpoint_tensors_are_read_without_torch(tmp_path: Path, zip_layout: bool) -> None:
    tensors = _tensors()
    path = tmp_path / "ckpt.pth"
    torch.save(tensors, path, _use_new_zipfile_serialization=zip_layout)
    got = state_dict(path)
    assert list(got) == list(tensors)
    for key, want in tensors.items():
        assert got[key].dtype == want.numpy().dtype and got[key].shape == tuple(want.shape), key
        assert np.array_equal(got[key], want.numpy()), key
        assert got[key].flags.c_contiguous
    # a nested state dict is found under "state_dict"
    torch.save({"state_dict": tensors, "epoch": 3}, path, _use_new_zipfile_serialization=zip_layout)
    assert np.array_equal(state_dict(path)["view.slice"], tensors["view.slice"].numpy())


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, ("echo pwned",)


def test_a_checkpoint_that_would_run_code_or_is_cut_short_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"w": _Evil()}, protocol=2))
    with pytest.raises(ModelError, match="os.system|posix.system"):
        read_checkpoint(evil)
    legacy = tmp_path / "legacy.pth"
    torch.save(_tensors(), legacy, _use_new_zipfile_serialization=False)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(legacy.read_bytes()[:-100])
    with pytest.raises(ModelError, match="cut.pth|ends inside"):
        read_checkpoint(cut)
    notes = tmp_path / "notes.pth"
    notes.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ModelError):
        read_checkpoint(notes)


def _random_bisenet() -> object:
    from .bisenet_reference import BiSeNet

    torch.manual_seed(0)
    net = BiSeNet(CLASSES)
    with torch.no_grad():  # batch norms with statistics of their own, so that folding them is tested
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def test_the_bisenet_graph_equals_the_network_in_pytorch(tmp_path: Path) -> None:
    net = _random_bisenet()
    path = tmp_path / "bisenet.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)  # the published layout
    model = bisenet_onnx(state_dict(path), size=128)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).normal(size=(2, 3, 128, 128)).astype(np.float32)
    got = session.run(None, {"input": x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape == (2, CLASSES, 128, 128)
    scale = float(np.abs(want).max())
    assert np.abs(got - want).max() <= 1e-4 * max(scale, 1.0)
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.999


def test_the_graph_names_what_the_checkpoint_lacks() -> None:
    net = _random_bisenet()
    tensors = {k: v.numpy() for k, v in net.state_dict().items() if not k.startswith("ffm.")}
    with pytest.raises(ModelError, match="ffm.convblk.conv.weight"):
        bisenet_onnx(tensors, size=128)
    with pytest.raises(ModelError, match="multiple of 32"):
        bisenet_onnx({k: v.numpy() for k, v in net.state_dict().items()}, size=100)


def test_io_of_the_graph() -> None:
    model = bisenet_onnx({k: v.numpy() for k, v in _random_bisenet().state_dict().items()}, size=64)
    (inp,), (out,) = model.graph.input, model.graph.output
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert inp.name == "input" and dims == ["N", 3, 64, 64]
    assert out.name == "logits" and [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == [
        "N", CLASSES, 64, 64]
    assert model.ByteSize() > 1_000_000  # the weights are in it
