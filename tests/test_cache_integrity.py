"""Damaged cache files are noticed, rebuilt once, and then a clear error (issue 9, part 1).

Every file swapline writes under ``$SWAPLINE_HOME`` (originals, converted models, optimised graphs,
float16 copies) has a manifest record with its sha256 (:mod:`swapline.models.manifest`). These
tests flip bytes in such files and check that the next load notices, that the file is made again
once and the run still works, that a file still bad after that is a :class:`ModelError` naming it
(exit 5, one line, from the real command line), that ``swapline models verify`` re-hashes
``optimized/`` and that a hand-written record is not trusted. Tiny ONNX models are built here;
the end-to-end run uses the default models prepared once (no network beyond pip's own index).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from swapline.cli import models as cli_models
from swapline.config import RuntimeConfig
from swapline.errors import ModelError
from swapline.models import manifest as manifest_mod
from swapline.models.catalog import CATALOG
from swapline.models.convert import RECIPE_VERSION
from swapline.models.manifest import Entry, Manifest, sidecar
from swapline.models.store import ModelStore
from swapline.runtime.session import SessionFactory

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
OBAMA = MEDIA / "src_obama.jpg"
BIDEN = MEDIA / "src_biden.jpg"


# ------------------------------------------------------------------------------------------ helpers


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _flip(path: Path, *, at: float = 0.5, count: int = 8, keep_mtime: bool = False) -> None:
    """XOR ``count`` bytes around ``at`` (a fraction of the size): same size, other content.
    The mtime moves on by a second (damage comes later than the write), or stays with
    ``keep_mtime`` (damage that only a full hash can see)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    start = min(int(len(data) * at), len(data) - count)
    for i in range(start, start + count):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    mtime = st.st_mtime_ns if keep_mtime else st.st_mtime_ns + 1_000_000_000
    os.utime(path, ns=(st.st_atime_ns, mtime))


def _tiny_model(folder: Path) -> Path:
    """x (N, 64) -> relu(x @ W + b) @ W2 with enough weight bytes that a flip lands in them."""
    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.normal(size=(64, 64)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=(64,)).astype(np.float32), "b")
    w2 = numpy_helper.from_array(rng.normal(size=(64, 8)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Add", ["h", "b"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])], [w, b, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny.onnx"
    onnx.save(model, str(path))
    return path


def _reference(model: Path, x: np.ndarray) -> np.ndarray:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _cpu_factory() -> SessionFactory:
    return SessionFactory.from_config(RuntimeConfig(execution_providers=("cpu",), intra_op_threads=1))


def _flaky_disk(monkeypatch: pytest.MonkeyPatch, folder_name: str) -> list[Path]:
    """Make every file recorded in a folder named ``folder_name`` go bad right after its record
    is written (a disk that does not keep what it was given); returns the files it damaged."""
    real = Manifest.record
    damaged: list[Path] = []

    def record(self: Manifest, path: Path, **fields: object):  # noqa: ANN202 - Entry
        entry = real(self, path, **fields)
        if Path(path).parent.name == folder_name:
            _flip(Path(path), keep_mtime=True)
            damaged.append(Path(path))
        return entry

    monkeypatch.setattr(Manifest, "record", record)
    return damaged


# ------------------------------------------------------------------------------------ the manifest


def test_a_record_is_checked_by_size_and_mtime_and_verify_rehashes(tmp_path: Path) -> None:
    book = Manifest(tmp_path)
    f = tmp_path / "m.onnx"
    f.write_bytes(os.urandom(4096))
    entry = book.record(f, kind="converted", original="m.tflite", original_sha256="a" * 64,
                        recipe="convert", recipe_version=2, steps=("tflite_to_onnx",))
    data = json.loads(sidecar(f).read_text())
    assert data["sha256"] == _sha(f) == entry.sha256 and data["size"] == 4096 and data["mac"]
    assert data["original_sha256"] == "a" * 64 and data["recipe_version"] == "2"  # issue 14's fields
    assert book.check(f) is None and book.check(f, full=True) is None

    calls: list[Path] = []
    real = manifest_mod.sha256_file
    try:
        manifest_mod.sha256_file = lambda p: calls.append(p) or real(p)  # type: ignore[assignment]
        assert Manifest(tmp_path).check(f) is None  # a new process: size and mtime only
        assert calls == []
        _flip(f, keep_mtime=True)
        assert Manifest(tmp_path).check(f) is None  # the cheap check cannot see this ...
        assert "sha256" in str(Manifest(tmp_path).check(f, full=True))  # ... a full one does
        assert len(calls) == 1
    finally:
        manifest_mod.sha256_file = real  # type: ignore[assignment]
    _flip(f, at=0.2)  # damage that moves the mtime: a load hashes and notices
    assert "sha256" in str(Manifest(tmp_path).check(f))
    f.write_bytes(b"short")
    assert "bytes" in str(Manifest(tmp_path).check(f))


@pytest.mark.parametrize("how", ["wrong sha256", "another key", "no mac"])
def test_hand_written_record_is_not_trusted(tmp_path: Path, how: str) -> None:
    book = Manifest(tmp_path)
    f = tmp_path / "m.onnx"
    f.write_bytes(os.urandom(2048))
    book.record(f, kind="optimized")
    data = json.loads(sidecar(f).read_text())
    real_sha = data["sha256"]
    data["sha256"] = "0" * 64  # size and mtime stay right: only a hash can tell
    if how == "another key":  # signed, but not with this folder's key (copied from elsewhere)
        data["mac"] = manifest_mod._mac(os.urandom(32), Entry.from_json(json.dumps(data)))
    elif how == "no mac":
        data.pop("mac")
    sidecar(f).write_text(json.dumps(data))
    assert "its manifest says 000000000000" in str(Manifest(tmp_path).check(f))
    # a hand-written record that does match the bytes is accepted after a full hash, and signed
    data["sha256"] = real_sha
    sidecar(f).write_text(json.dumps(data))
    assert Manifest(tmp_path).check(f) is None
    again = Manifest(tmp_path)
    assert again.signed(again.entry(f))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- optimised graphs (sessions)


def test_damaged_optimised_graph_is_noticed_and_rebuilt(tmp_path: Path) -> None:
    model = _tiny_model(tmp_path / "models")
    cache = tmp_path / "optimized"
    factory = _cpu_factory()
    x = np.random.default_rng(0).random((3, 64)).astype(np.float32)
    ref = _reference(model, x)
    factory.create(model, optimized_dir=cache)
    cached = factory.optimized_path(model, cache)
    assert cached is not None and cached.exists()
    entry = Manifest(cache).entry(cached)
    assert entry is not None and entry.kind == "optimized" and entry.sha256 == _sha(cached)
    assert entry.original == "tiny.onnx" and entry.original_sha256 == _sha(model)
    good = cached.read_bytes()

    _flip(cached, at=0.6)
    bad = _sha(cached)
    session = _cpu_factory().create(model, optimized_dir=cache)

    assert np.allclose(session.run(None, {"x": x})[0], ref, atol=1e-5)
    assert _sha(cached) != bad and cached.read_bytes() == good  # made again, the same bytes
    assert Manifest(cache).check(cached, full=True) is None
    # and the rebuilt copy is what the next load uses
    again = _cpu_factory().create(model, optimized_dir=cache)
    assert np.allclose(again.run(None, {"x": x})[0], ref, atol=1e-5)


def test_unlisted_or_hand_listed_optimised_graph_is_not_loaded(tmp_path: Path) -> None:
    model = _tiny_model(tmp_path / "models")
    cache = tmp_path / "optimized"
    factory = _cpu_factory()
    factory.create(model, optimized_dir=cache)
    cached = factory.optimized_path(model, cache)
    assert cached is not None
    record = sidecar(cached).read_text()
    # a damaged copy with a hand-written record that claims the damaged bytes' size and mtime
    _flip(cached, at=0.6)
    data = json.loads(record)
    data.update(size=cached.stat().st_size, mtime_ns=cached.stat().st_mtime_ns)
    sidecar(cached).write_text(json.dumps(data))
    x = np.ones((1, 64), np.float32)
    out = _cpu_factory().create(model, optimized_dir=cache).run(None, {"x": x})[0]
    assert np.allclose(out, _reference(model, x), atol=1e-5)
    assert Manifest(cache).check(cached, full=True) is None and _sha(cached) == json.loads(record)["sha256"]
    # a copy with no record at all (an older swapline's) is made again too
    sidecar(cached).unlink()
    _flip(cached, at=0.6)
    out = _cpu_factory().create(model, optimized_dir=cache).run(None, {"x": x})[0]
    assert np.allclose(out, _reference(model, x), atol=1e-5) and sidecar(cached).exists()


def test_optimised_graph_still_bad_after_the_rebuild_is_a_model_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _tiny_model(tmp_path / "models")
    cache = tmp_path / "optimized"
    _cpu_factory().create(model, optimized_dir=cache)
    cached = _cpu_factory().optimized_path(model, cache)
    assert cached is not None
    _flip(cached, at=0.6)
    damaged = _flaky_disk(monkeypatch, "optimized")

    with pytest.raises(ModelError, match=f"{cached.name}.*right after it was written"):
        _cpu_factory().create(model, optimized_dir=cache)

    assert damaged == [cached]  # rebuilt once, not in a loop
    assert not cached.exists() and not sidecar(cached).exists()  # nothing bad left to load


def test_damaged_float16_copy_is_noticed_and_converted_again(tmp_path: Path) -> None:
    pytest.importorskip("onnxconverter_common")
    from swapline.runtime.fp16 import fp16_path
    from swapline.runtime.session import ProviderOptions

    model = _tiny_model(tmp_path / "models")
    cache = tmp_path / "optimized"
    factory = SessionFactory.from_config(RuntimeConfig(execution_providers=("cpu",), intra_op_threads=1),
                                         ProviderOptions(fp16=True))
    x = np.random.default_rng(3).random((2, 64)).astype(np.float32)
    first = factory.create(model, optimized_dir=cache).run(None, {"x": x})[0]
    copy = fp16_path(model, cache)
    entry = Manifest(cache).entry(copy)
    assert entry is not None and entry.kind == "fp16" and entry.original_sha256 == _sha(model)
    good = _sha(copy)

    _flip(copy, at=0.6)
    again = factory.create(model, optimized_dir=cache).run(None, {"x": x})[0]

    assert _sha(copy) == good and np.allclose(again, first, atol=1e-6)


# ---------------------------------------------------------------------------- converted models


def _yunet_store(home: Path) -> ModelStore:
    return ModelStore(RuntimeConfig(home=home), progress=False, catalog={"yunet": CATALOG["yunet"]})


def test_damaged_converted_model_is_noticed_and_rebuilt(tmp_path: Path) -> None:
    path = _yunet_store(tmp_path).path("yunet")
    good = _sha(path)
    entry = Manifest(path.parent).entry(path)
    assert entry is not None and entry.kind == "converted" and entry.original_sha256 == CATALOG["yunet"].sha256
    assert entry.recipe == "convert" and entry.recipe_version is not None and entry.steps

    calls: list[Path] = []
    real = manifest_mod.sha256_file
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(manifest_mod, "sha256_file", lambda p: calls.append(Path(p)) or real(p))
        assert _yunet_store(tmp_path).path("yunet") == path
    assert path not in calls  # an intact, signed file is not re-hashed on load

    _flip(path, at=0.7)
    again = _yunet_store(tmp_path).path("yunet")

    assert again == path and _sha(path) == good  # converted again (the fold is deterministic)
    factory = _cpu_factory()
    session = factory.create(path, optimized_dir=tmp_path / "optimized")
    out = session.run(None, {session.get_inputs()[0].name: np.zeros((1, 3, 64, 64), np.float32)})
    assert all(np.isfinite(o).all() for o in out)


def test_hand_written_record_beside_a_converted_model_is_not_trusted(tmp_path: Path) -> None:
    path = _yunet_store(tmp_path).path("yunet")
    good = _sha(path)
    _flip(path, at=0.7)
    data = json.loads(sidecar(path).read_text())
    data.update(sha256=_sha(path)[:-4] + "beef", size=path.stat().st_size, mtime_ns=path.stat().st_mtime_ns)
    sidecar(path).write_text(json.dumps(data))
    assert _yunet_store(tmp_path).path("yunet") == path and _sha(path) == good


def test_record_of_an_older_swapline_is_hashed_once_then_signed(tmp_path: Path) -> None:
    path = _yunet_store(tmp_path).path("yunet")
    spec = CATALOG["yunet"]
    old = {"model": "yunet", "sha256": _sha(path), "original": spec.file_name, "original_sha256": spec.sha256,
           "steps": list(spec.convert), "recipe": RECIPE_VERSION}  # the format before the manifest module
    sidecar(path).write_text(json.dumps(old))
    stamp = path.stat().st_mtime_ns
    assert _yunet_store(tmp_path).path("yunet") == path and path.stat().st_mtime_ns == stamp  # kept
    book = Manifest(path.parent)
    entry = book.entry(path)
    assert entry is not None and book.signed(entry) and entry.size == path.stat().st_size


def test_converted_model_still_bad_after_the_rebuild_is_a_model_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _yunet_store(tmp_path).path("yunet")
    _flip(path, at=0.7)
    damaged = _flaky_disk(monkeypatch, "models")
    damaged.clear()

    with pytest.raises(ModelError, match=f"{path.name}.*right after it was converted"):
        _yunet_store(tmp_path).path("yunet")

    assert path in damaged and damaged.count(path) == 1
    assert not path.exists() and not sidecar(path).exists()


# ---------------------------------------------------------------------------- models verify


def _verify(home: Path) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    cli_models.register(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    code = cli_models.run(parser.parse_args(["models", "verify"]), RuntimeConfig(home=home), out=out)
    return code, out.getvalue()


def test_models_verify_rehashes_the_optimised_copies(tmp_path: Path) -> None:
    home = tmp_path / "home"
    model = _tiny_model(tmp_path / "mine")
    cache = home / "optimized"
    _cpu_factory().create(model, optimized_dir=cache)
    cached = _cpu_factory().optimized_path(model, cache)
    assert cached is not None

    code, text = _verify(home)
    assert code == 0 and f"{cached}: ok" in text

    _flip(cached, at=0.6, keep_mtime=True)  # invisible to the per-load check
    stray = cache / "stray.onnx"
    stray.write_bytes(b"not listed anywhere")
    code, text = _verify(home)

    assert code == 1
    bad = [line for line in text.splitlines() if line.startswith("BAD")]
    assert len(bad) == 2, text
    assert any(str(cached) in line and "sha256" in line for line in bad)
    assert any(str(stray) in line and "not listed" in line for line in bad)
    assert not cached.exists() and not sidecar(cached).exists() and not stray.exists()
    assert _verify(home)[0] == 0


# ------------------------------------------------------------------ the real command line (exit 5)


@pytest.fixture(scope="module")
def prepared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default models fetched and converted once for this module."""
    home = tmp_path_factory.mktemp("swapline-home")
    ModelStore(RuntimeConfig(home=home), progress=False).prepare()
    return home


def _swap(home: Path, out: Path, *wrap: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SWAPLINE_DEBUG"}
    env["SWAPLINE_HOME"] = str(home)
    head = [sys.executable, *wrap] if wrap else [sys.executable, "-m", "swapline"]
    return subprocess.run([*head, "swap", "-s", str(OBAMA), "-t", str(BIDEN), "-o", str(out)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)


FLAKY_DISK = '''
import os, runpy, sys
from pathlib import Path
from swapline.models.manifest import Manifest

real = Manifest.record

def record(self, path, **fields):
    entry = real(self, path, **fields)
    if Path(path).parent.name == "optimized":  # this disk does not keep what it is given
        data = bytearray(Path(path).read_bytes())
        data[len(data) // 2] ^= 0x5A
        st = os.stat(path)
        Path(path).write_bytes(bytes(data))
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    return entry

Manifest.record = record
sys.argv = ["swapline", *sys.argv[1:]]
runpy.run_module("swapline", run_name="__main__", alter_sys=True)
'''


@pytest.mark.skipif(not (OBAMA.is_file() and BIDEN.is_file()), reason=f"test photos not found in {MEDIA}")
def test_swap_rebuilds_a_damaged_cache_and_exits_5_when_it_stays_bad(prepared_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(prepared_home, home)  # copy2 keeps the mtimes: the records still hold
    out = tmp_path / "out"
    out.mkdir()
    first = _swap(home, out / "a.png")
    assert first.returncode == 0, first.stderr
    assert "swapped 1 of 1" in first.stdout + first.stderr
    optimized = home / "optimized"
    detector = next(optimized.glob("face_detection_yunet*.onnx"))
    mesh = next(optimized.glob("face_landmark*.onnx"))
    assert Manifest(optimized).check(detector, full=True) is None

    # the report's damage: a few bytes flipped in the optimised detector and in the mesh
    _flip(detector, at=0.5, count=16)
    _flip(mesh, at=0.5, count=16)
    second = _swap(home, out / "b.png")
    assert second.returncode == 0, second.stderr
    assert "swapped 1 of 1" in second.stdout + second.stderr and "Traceback" not in second.stderr
    a = cv2.imread(str(out / "a.png")).astype(np.int16)
    b = cv2.imread(str(out / "b.png")).astype(np.int16)
    assert np.abs(a - b).max() <= 1  # the same result as with the intact cache
    assert Manifest(optimized).check(detector, full=True) is None
    assert Manifest(optimized).check(mesh, full=True) is None

    # a disk that damages the rebuilt file too: one line naming the file, exit 5, no output
    _flip(detector, at=0.5, count=16)
    script = tmp_path / "flaky_disk.py"
    script.write_text(FLAKY_DISK)
    third = _swap(home, out / "c.png", str(script))
    assert third.returncode == 5, third.stderr
    assert "Traceback" not in third.stderr
    lines = third.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swapline: error: "), third.stderr
    assert detector.name in lines[0]
    assert not (out / "c.png").exists()
