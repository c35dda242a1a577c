"""Models a user brings (issue 14): trusting a file on request, graphs that bake batch 1, derived
files tied to their original.

* A stand-in with inswapper's interface but another SHA-256 (as FaceFusion's re-export has) is
  refused from ``--model-dir`` with one line naming ``swapline models trust`` (exit 5); once
  trusted, a swap with pixel boost 2 and ``--batch-size 4`` runs and says once that the file is
  the user's; ``models list`` and ``verify`` show it; ``untrust`` brings the refusal back.
* Files that do not fit (a 64 px input for a 128 px model, a missing output, no emap) are refused
  at trust time with the mismatch named, and nothing is recorded.
* The dynamic-batch conversion rewrites a ``Reshape`` to ``[1, C, 1, 1]`` and proves the result
  equal to batch-1 runs; a graph whose batch is folded into another axis stays at batch 1, is
  run one tile at a time, and equals its batch-1 runs; ``models list`` and ``doctor`` say
  "batch 1 (fixed in the graph)".
* A derived file next to a hand-written manifest that names no known original is made again.

Tiny ONNX models are built here (no downloads); the end-to-end swaps use the default models
prepared once for the test session (``model_home``), copied into a home of each test's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from swapline.cli import models as cli_models
from swapline.cli import main
from swapline.config import RuntimeConfig
from swapline.errors import ModelError
from swapline.face.types import Face
from swapline.models.catalog import ModelSpec
from swapline.models.batch_axis import (
    FIXED_BATCH_KEY,
    batch_or_fixed,
    dynamic_batch,
    fixed_batch_of,
)
from swapline.models.convert import RECIPE_VERSION
from swapline.models.converted import FIXED_BATCH_NOTE
from swapline.models.manifest import Manifest, sidecar
from swapline.models.neural_catalog import SWAPPERS
from swapline.models.registry import full_catalog, model_file, trust_model, untrust_model
from swapline.models.status import TRUSTED
from swapline.models.store import ModelStore
from swapline.runtime.model import ModelRunner
from swapline.runtime.session import SessionFactory
from swapline.swap.onnx_swapper import NeuralSwapper

from .conftest import media, read
from .tiny_models import OPSET, make_arcface, make_image_model, make_inswapper, make_swapper

TRUST_WORDS = "a file you trust"
# Five points YuNet finds on src_obama.jpg (fixed, so the per-tile test needs no detector).
OBAMA = np.array([[439.7, 213.7], [555.2, 213.8], [496.0, 267.1], [440.2, 318.2], [546.7, 320.9]], np.float32)


# ------------------------------------------------------------------------------------------ helpers


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _save(graph: onnx.GraphProto, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _vi(name: str, shape: list[int | str]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def gemm_reshape_model(path: Path) -> Path:
    """x [1, 4, 8, 8] -> global pool -> Flatten -> Gemm -> Reshape to the constant [1, 6, 1, 1]
    (batch 1 baked in, as exporters write it after a Gemm) -> y [1, 6, 1, 1]."""
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 6)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, 6, 1, 1], np.int64), "shape")]
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"]), helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["g"]), helper.make_node("Reshape", ["g", "shape"], ["y"])]
    return _save(helper.make_graph(nodes, "gemm_reshape", [_vi("x", [1, 4, 8, 8])], [_vi("y", [1, 6, 1, 1])],
                                   inits), path)


def folded_inswapper(path: Path) -> Path:
    """inswapper's interface (``target``, ``source`` -> ``output``, emap last) with the batch
    folded into the channel axis: ``target`` [1, 3, 128, 128] is reshaped to [3, 16384] (a shape
    that does not start with the batch), scaled per channel and reshaped back. No rewrite of a
    leading 1 can make that take a batch: it stays at batch 1."""
    rng = np.random.default_rng(2)
    emap = (rng.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float32)
    inits = [numpy_helper.from_array(np.array([3, 128 * 128], np.int64), "fold"),
             numpy_helper.from_array(np.array([[0.5], [-1.0], [0.25]], np.float32), "k"),
             numpy_helper.from_array(np.array([1, 3, 128, 128], np.int64), "unfold"),
             numpy_helper.from_array(np.float32(0.0), "zero"),
             numpy_helper.from_array(emap, "emap")]
    nodes = [helper.make_node("Reshape", ["target", "fold"], ["t2"]), helper.make_node("Mul", ["t2", "k"], ["m"]),
             helper.make_node("Reshape", ["m", "unfold"], ["r"]),
             helper.make_node("ReduceSum", ["source"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "zero"], ["s0"]), helper.make_node("Add", ["r", "s0"], ["output"])]
    graph = helper.make_graph(nodes, "folded", [_vi("target", [1, 3, 128, 128]), _vi("source", [1, 512])],
                              [_vi("output", [1, 3, 128, 128])], inits)
    return _save(graph, path)


def mixing_model(path: Path) -> Path:
    """x [1, 6] -> Reshape [1, 2, 3] -> Transpose (1, 0, 2) -> Reshape [1, 6]: rewriting the
    leading 1s to -1 runs with a batch and gives the right shapes, but mixes the items."""
    inits = [numpy_helper.from_array(np.array([1, 2, 3], np.int64), "s3"),
             numpy_helper.from_array(np.array([1, 6], np.int64), "s2")]
    nodes = [helper.make_node("Reshape", ["x", "s3"], ["a"]), helper.make_node("Transpose", ["a"], ["b"], perm=[1, 0, 2]),
             helper.make_node("Reshape", ["b", "s2"], ["y"])]
    return _save(helper.make_graph(nodes, "mixing", [_vi("x", [1, 6])], [_vi("y", [1, 6])], inits), path)


def _ort(model: onnx.ModelProto | Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _per_item(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """What the original file gives for each item alone, joined."""
    session = _ort(path)
    n = len(next(iter(feeds.values())))
    runs = [session.run(None, {k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return [np.concatenate([r[k] for r in runs]) for k in range(len(runs[0]))]


def _spec(name: str, path: Path, convert: tuple[str, ...] = ("dynamic_batch",)) -> ModelSpec:
    """A throwaway catalogue entry for ``path`` (its own hash), converted by ``convert``."""
    return ModelSpec(name=name, role="swapper", file_name=path.name, sha256=_sha(path), size=path.stat().st_size,
                     sources=(), convert=convert, converted_name=f"{path.stem}.dynbatch.onnx", licence="test")


def _store(home: Path, *specs: ModelSpec, model_dir: Path | None = None, notify=None) -> ModelStore:
    catalog = {s.name: s for s in specs} if specs else full_catalog()
    return ModelStore(RuntimeConfig(home=home, model_dir=model_dir, offline=True), progress=False, catalog=catalog,
                      notify=notify)


def _models(home: Path, *argv: str) -> tuple[int, str]:
    """``swapline models ...`` in process, against ``home``; (exit code, stdout)."""
    parser = argparse.ArgumentParser()
    cli_models.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", *argv])
    out = io.StringIO()
    runtime = RuntimeConfig(home=home, model_dir=getattr(args, "model_dir", None))
    return cli_models.run(args, runtime, out=out), out.getvalue()


@pytest.fixture()
def home(tmp_path: Path, model_home: Path) -> Path:
    """A home of this test's own (trust records must not leak), seeded with the default models
    prepared once for the session, so nothing is fetched or converted again."""
    ModelStore(RuntimeConfig(home=model_home), progress=False).prepare()
    mine = tmp_path / "home"
    mine.mkdir()
    for part in ("models", "wheels"):
        if (model_home / part).is_dir():
            shutil.copytree(model_home / part, mine / part, ignore=shutil.ignore_patterns("trusted"))
    return mine


@pytest.fixture()
def facefusion(tmp_path: Path) -> Path:
    """A FaceFusion-like model folder: a stand-in inswapper (batch 1 declared, as the real one)
    under ``inswapper_128.onnx`` and an ArcFace under FaceFusion's name ``arcface_w600k_r50.onnx``."""
    folder = tmp_path / "facefusion" / ".assets" / "models"
    folder.mkdir(parents=True)
    make_inswapper(folder / "inswapper_128.onnx", "negative", batch=1, seed=3)
    make_arcface(folder / "arcface_w600k_r50.onnx", batch=1)
    return folder


# ------------------------------------------------------------------------ trust: the whole command line


def test_a_copy_is_refused_then_trusted_then_untrusted(home: Path, facefusion: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("SWAPLINE_HOME", str(home))
    target = media("src_biden.jpg")
    out = tmp_path / "out.png"
    swap = ["swap", "-s", str(media("src_obama.jpg")), "-t", str(target), "-o", str(out), "--force",
            "--face-swapper-model", "inswapper_128", "--face-swapper-pixel-boost", "2", "--batch-size", "4",
            "--model-dir", str(facefusion), "--offline"]
    stand_in = facefusion / "inswapper_128.onnx"

    assert main(swap) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not match model inswapper_128" in err[0], err
    assert f"swapline models trust {stand_in} --as inswapper_128" in err[0]
    assert not out.exists()

    assert main(["models", "trust", str(stand_in), "--as", "inswapper_128"]) == 0
    assert main(["models", "trust", str(facefusion / "arcface_w600k_r50.onnx"), "--as", "arcface_w600k_r50"]) == 0
    said = capsys.readouterr().out
    assert f"trusted {stand_in} as inswapper_128" in said and "untrust" in said

    assert main(swap) == 0
    err = capsys.readouterr().err.strip().splitlines()
    trust_lines = [line for line in err if TRUST_WORDS in line]
    expected = (f"swapline: warning: model inswapper_128: using {stand_in}, a file you trust (swapline models "
                "trust); not verified against a published sha256")
    assert [line for line in trust_lines if "model inswapper_128:" in line] == [expected]
    assert len(trust_lines) == 2 and any("model arcface_w600k_r50:" in line for line in trust_lines)  # one per file
    assert any("swapped 1 of 1" in line for line in err), err
    result, before = cv2.imread(str(out)), read("src_biden.jpg")
    assert result.shape == before.shape and np.abs(result.astype(int) - before).mean() > 1  # the negative model ran

    assert main(["models", "list", "--model-dir", str(facefusion)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.strip()}
    assert TRUSTED in rows["inswapper_128"] and TRUSTED in rows["arcface_w600k_r50"]
    assert main(["models", "verify", "--model-dir", str(facefusion)]) == 0
    checked = capsys.readouterr().out
    assert f"model-dir {stand_in}: ok (trusted by you, not verified)" in checked

    assert main(["models", "untrust", "inswapper_128"]) == 0
    capsys.readouterr()
    assert main(swap) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "models trust" in err[0] and "inswapper_128" in err[0], err


def test_trusted_file_is_used_from_where_it_was_trusted_and_said_once(tmp_path: Path) -> None:
    folder = tmp_path / "deep-live-cam" / "models"
    folder.mkdir(parents=True)
    stand_in = make_inswapper(folder / "inswapper_128_fp16.onnx", "identity", batch=1)  # Deep-Live-Cam's name
    home = tmp_path / "home"
    told: list[str] = []

    with pytest.raises(ModelError) as refused:  # the name is recognised: the file is found, and refused
        _store(home, model_dir=folder).path("inswapper_128_fp16")
    assert "models trust" in str(refused.value) and "inswapper_128_fp16.onnx" in str(refused.value)

    entry, line = trust_model(_store(home), stand_in, "inswapper_128_fp16")
    assert entry is not None and entry.sha256 == _sha(stand_in) and "trusted" in line

    store = _store(home, notify=told.append)  # no --model-dir: the store takes it from where it was trusted
    first = store.path("inswapper_128_fp16")
    assert store.path("inswapper_128_fp16") == first and store.original("inswapper_128_fp16") == stand_in
    trust_lines = [line for line in told if TRUST_WORDS in line]
    assert len(told) == 2 and any(line.startswith("converting model inswapper_128_fp16") for line in told)
    assert len(trust_lines) == 1 and trust_lines[0].startswith(f"model inswapper_128_fp16: using {stand_in}")
    record = Manifest(first.parent).entry(first)
    assert record is not None and record.original_sha256 == _sha(stand_in) and record.fixed_batch is None

    assert untrust_model(_store(home), "inswapper_128_fp16").startswith("forgot")
    with pytest.raises(ModelError, match="not available offline"):
        _store(home).path("inswapper_128_fp16")  # the copy made from it is no longer used either
    with pytest.raises(ModelError, match="no file is trusted"):
        untrust_model(_store(home), "inswapper_128_fp16")


def test_a_changed_trusted_file_is_no_longer_used_and_verify_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    stand_in = make_inswapper(folder / "inswapper_128.onnx", "identity")
    home = tmp_path / "home"
    trust_model(_store(home), stand_in, "inswapper_128")
    with pytest.warns(RuntimeWarning, match=TRUST_WORDS):  # no notify: said as a warning (the CLI prints it)
        assert _store(home, model_dir=folder).original("inswapper_128") == stand_in

    make_inswapper(stand_in, "negative", seed=9)  # other bytes under the same name
    with pytest.raises(ModelError, match="changed since you trusted it"):
        _store(home, model_dir=folder).original("inswapper_128")
    code, text = _models(home, "verify")
    assert code == 1 and f"trusted {stand_in}: changed since you trusted it" in text


def test_a_hand_written_trust_record_trusts_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    stand_in = make_inswapper(folder / "inswapper_128.onnx", "identity")
    home = tmp_path / "home"
    record = home / "models" / "trusted" / "inswapper_128.json"
    record.parent.mkdir(parents=True)
    st = stand_in.stat()
    record.write_text(json.dumps({"file": stand_in.name, "kind": "trusted", "sha256": _sha(stand_in),
                                  "size": st.st_size, "mtime_ns": st.st_mtime_ns, "model": "inswapper_128",
                                  "original": str(stand_in)}))
    with pytest.raises(ModelError, match="models trust"):
        _store(home, model_dir=folder).original("inswapper_128")


def test_a_model_without_a_published_hash_can_be_trusted_too(tmp_path: Path) -> None:
    spec = SWAPPERS["hyperswap_1a_256"]
    folder = tmp_path / "mine"
    folder.mkdir()
    path = make_swapper(folder / spec.file.file_name, spec)
    home = tmp_path / "home"
    told: list[str] = []
    with pytest.warns(RuntimeWarning, match="no published SHA-256"):
        assert model_file(_store(home, model_dir=folder), spec.name) == path
    trust_model(_store(home), path, spec.name)
    assert model_file(_store(home, model_dir=folder, notify=told.append), spec.name) == path
    assert len(told) == 1 and TRUST_WORDS in told[0]
    code, text = _models(home, "list")
    assert code == 0 and TRUSTED in next(line for line in text.splitlines() if line.startswith(spec.name))


# ----------------------------------------------------------------------- trust: interface mismatches


def _inswapper_like(path: Path, *, size: int = 128, output: str = "output", emap: bool = True) -> Path:
    last = [("emap", np.eye(512, dtype=np.float32))] if emap else []
    return make_image_model(path, {"target": [1, 3, size, size], "source": [1, 512]},
                            {output: [1, 3, size, size]}, last_initializers=last)


@pytest.mark.parametrize(("kind", "named"), [
    ("size 64", ["input 'target'", "[1, 3, 64, 64]", "[N, 3, 128, 128]"]),
    ("no output", ["no output 'output'", "'swapped'"]),
    ("no emap", ["last initializer (the emap)", "[512, 512]"]),
])
def test_a_file_that_does_not_fit_is_refused_at_trust_time(tmp_path: Path, kind: str, named: list[str]) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    bad = folder / "inswapper_128.onnx"
    if kind == "size 64":
        _inswapper_like(bad, size=64)
    elif kind == "no output":
        _inswapper_like(bad, output="swapped")
    else:
        _inswapper_like(bad, emap=False)
    home = tmp_path / "home"

    with pytest.raises(ModelError) as err:
        trust_model(_store(home), bad, "inswapper_128")
    message = str(err.value)
    assert "\n" not in message and str(bad) in message and "interface of model inswapper_128" in message
    for words in named:
        assert words in message, message
    assert _store(home).trusted("inswapper_128") is None  # nothing recorded


def test_trust_from_the_command_line_names_the_mismatch_and_exits_5(tmp_path: Path, capsys,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPLINE_HOME", str(tmp_path / "home"))
    bad = _inswapper_like(tmp_path / "inswapper_128.onnx", size=64)
    assert main(["models", "trust", str(bad), "--as", "inswapper_128"]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "input 'target'" in err[0] and "64" in err[0], err
    assert main(["models", "trust", str(bad), "--as", "yunet"]) == 5  # a default model: nothing to trust
    assert main(["models", "trust", str(bad), "--as", "nope"]) == 5
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "unknown model 'nope'" in err[1]


def test_the_published_file_needs_no_trust(tmp_path: Path) -> None:
    path = make_inswapper(tmp_path / "inswapper_128.onnx")
    catalog = full_catalog()
    catalog["inswapper_128"] = dataclasses.replace(catalog["inswapper_128"], sha256=_sha(path))
    store = ModelStore(RuntimeConfig(home=tmp_path / "home"), progress=False, catalog=catalog)
    entry, line = trust_model(store, path, "inswapper_128")
    assert entry is None and "nothing to trust" in line and store.trusted("inswapper_128") is None


# ----------------------------------------------------------------------------- graphs that bake batch 1


def test_reshape_to_1_c_1_1_is_rewritten_and_equals_batch_one_runs(tmp_path: Path) -> None:
    path = gemm_reshape_model(tmp_path / "gemm.onnx")
    converted = dynamic_batch(onnx.load(str(path)))
    shapes = {t.name: numpy_helper.to_array(t).tolist() for t in converted.graph.initializer if t.data_type == 7}
    reshape = next(n for n in converted.graph.node if n.op_type == "Reshape")
    assert shapes[reshape.input[1]][0] in (0, -1) and shapes[reshape.input[1]][1:] == [6, 1, 1]
    assert fixed_batch_of(converted) is None

    x = np.random.default_rng(7).standard_normal((5, 4, 8, 8)).astype(np.float32)
    got = _ort(converted).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, _per_item(path, {"x": x})[0], rtol=1e-5, atol=1e-5)

    # through the store: converted once, recorded as a free batch, listed without a note
    store = _store(tmp_path / "home", _spec("gemm", path), model_dir=tmp_path)
    runnable = store.path("gemm")
    entry = Manifest(runnable.parent).entry(runnable)
    assert entry is not None and entry.fixed_batch is None and entry.original_sha256 == _sha(path)
    assert store.status()[0].note == "" and ModelRunner(_ort(runnable), name="gemm").fixed_batch is None


def test_a_reshape_that_cannot_be_rewritten_stays_at_batch_one_and_runs_per_tile(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = folded_inswapper(tmp_path / "inswapper_128.onnx")
    with pytest.raises(ModelError, match="batch 3"):
        dynamic_batch(onnx.load(str(path)))
    kept = batch_or_fixed(onnx.load(str(path)))  # the catalogue's step: no failure, batch 1 kept
    assert fixed_batch_of(kept) == 1 and any(p.key == FIXED_BATCH_KEY for p in kept.metadata_props)

    home = tmp_path / "home"
    trust_model(_store(home), path, "inswapper_128")
    store = _store(home, model_dir=tmp_path, notify=lambda line: None)
    runnable = store.path("inswapper_128")  # a conversion never fails a run that batch 1 can do
    entry = Manifest(runnable.parent).entry(runnable)
    assert entry is not None and entry.fixed_batch == 1
    row = next(r for r in store.status() if r.name == "inswapper_128")
    assert row.state == TRUSTED and row.note == FIXED_BATCH_NOTE
    assert row.shown_state == f"{TRUSTED}, batch 1 (fixed in the graph)"

    # one call per item, and the same numbers as the original's batch-1 runs
    runner = ModelRunner(_ort(runnable), name="inswapper_128", max_batch=8)
    assert runner.batch_one
    rng = np.random.default_rng(8)
    feeds = {"target": rng.random((5, 3, 128, 128), np.float32), "source": rng.random((5, 512), np.float32)}
    got = runner.run(feeds)[0]
    assert runner.calls == 5
    np.testing.assert_allclose(got, _per_item(path, feeds)[0], rtol=1e-6, atol=1e-6)

    # the swapper runs it per tile: pixel boost 2 on one face is four calls
    frame = read("src_obama.jpg")
    lo, hi = OBAMA.min(0), OBAMA.max(0)
    face = Face(box=np.concatenate([lo - (hi - lo) * 0.6, hi + (hi - lo) * 0.6]).astype(np.float32), score=0.9,
                kps=OBAMA)
    swapper = NeuralSwapper(_ort(runnable), SWAPPERS["inswapper_128"], emap=NeuralSwapper.read_emap(runnable))
    reference = NeuralSwapper(_ort(path), SWAPPERS["inswapper_128"], emap=NeuralSwapper.read_emap(path))
    source = swapper.source_input(np.ones(512, np.float32))
    patches = swapper.swap(frame, [face], source, pixel_boost=2)
    assert swapper.calls == 4 and swapper.fixed_batch_one
    assert np.array_equal(patches[0].patch, reference.swap(frame, [face], source, pixel_boost=2)[0].patch)

    # models list and doctor say so
    code, text = _models(home, "list", "--model-dir", str(tmp_path))
    assert code == 0
    assert "batch 1 (fixed in the graph)" in next(line for line in text.splitlines() if line.startswith("inswapper_128 "))
    from swapline.cli.doctor import run_doctor

    capsys.readouterr()
    assert run_doctor(RuntimeConfig(home=home, model_dir=tmp_path)) == 0
    doctor = capsys.readouterr().out
    assert "batch 1 (fixed in the graph)" in next(line for line in doctor.splitlines() if "inswapper_128 " in line)


def test_a_batch_that_mixes_items_is_caught_by_the_numbers(tmp_path: Path) -> None:
    path = mixing_model(tmp_path / "mixing.onnx")
    with pytest.raises(ModelError, match="other numbers"):
        dynamic_batch(onnx.load(str(path)))
    kept = batch_or_fixed(onnx.load(str(path)))
    assert fixed_batch_of(kept) == 1
    dims = kept.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1


def test_emap_stays_the_last_initializer_after_a_rewrite(tmp_path: Path) -> None:
    path = make_inswapper(tmp_path / "i.onnx", batch=1)
    model = onnx.load(str(path))
    shape = numpy_helper.from_array(np.array([1, 3, 128, 128], np.int64), "shape")
    model.graph.initializer.insert(0, shape)
    out = next(o for o in model.graph.output if o.name == "output")
    node = next(n for n in model.graph.node if n.output[0] == "output")
    node.output[0] = "pre"
    model.graph.node.append(helper.make_node("Reshape", ["pre", "shape"], ["output"]))  # same output name
    assert out.name == "output"
    converted = dynamic_batch(model)
    assert converted.graph.initializer[-1].name == "emap"
    assert any(n.op_type == "Reshape" and n.input[1] != "shape" for n in converted.graph.node)


# --------------------------------------------------------------------------------- derived files


def _hand_write(path: Path, **fields: object) -> None:
    """A record beside ``path`` as a person would write it: right hash, size and mtime, no mac."""
    st = path.stat()
    data = {"file": path.name, "kind": "converted", "sha256": _sha(path), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "recipe": "convert", "recipe_version": str(RECIPE_VERSION),
            "steps": ["dynamic_batch"], **fields}
    sidecar(path).write_text(json.dumps(data))


@pytest.mark.parametrize("original", [None, "7" * 64])
def test_a_derived_file_with_a_hand_written_manifest_is_rebuilt(tmp_path: Path, original: str | None) -> None:
    path = gemm_reshape_model(tmp_path / "gemm.onnx")
    spec = _spec("gemm", path)
    home = tmp_path / "home"
    made = _store(home, spec, model_dir=tmp_path).path("gemm")
    good = _sha(made)
    # someone else's file in its place, with a record that is right about its bytes
    make_image_model(made, {"x": ["N", 4, 8, 8]}, {"y": ["N", 4, 8, 8]}, "negative")
    _hand_write(made, **({"original_sha256": original} if original else {}))

    again = _store(home, spec, model_dir=tmp_path).path("gemm")

    assert again == made and _sha(made) == good  # made again from the verified original
    entry = Manifest(made.parent).entry(made)
    assert entry is not None and entry.original_sha256 == spec.sha256 and Manifest(made.parent).signed(entry)


def test_a_derived_file_in_model_dir_with_a_hand_written_manifest_is_ignored(tmp_path: Path) -> None:
    path = gemm_reshape_model(tmp_path / "gemm.onnx")
    spec = _spec("gemm", path)
    theirs = tmp_path / spec.converted_name  # type: ignore[operator]
    make_image_model(theirs, {"x": ["N", 4, 8, 8]}, {"y": ["N", 4, 8, 8]}, "negative")
    _hand_write(theirs)
    made = _store(tmp_path / "home", spec, model_dir=tmp_path).path("gemm")
    assert made == tmp_path / "home" / "models" / theirs.name and theirs.exists()  # the user's file is left alone


def test_an_optimised_copy_with_a_hand_written_manifest_is_rebuilt(tmp_path: Path) -> None:
    path = gemm_reshape_model(tmp_path / "gemm.onnx")
    model_dir = tmp_path / "mine"
    model_dir.mkdir()
    source = model_dir / "net.onnx"
    onnx.save(dynamic_batch(onnx.load(str(path))), str(source))
    cache = tmp_path / "optimized"
    factory = SessionFactory.from_config(RuntimeConfig(execution_providers=("cpu",), intra_op_threads=1))
    x = np.random.default_rng(3).standard_normal((2, 4, 8, 8)).astype(np.float32)
    want = factory.create(source, optimized_dir=cache).run(None, {"x": x})[0]
    cached = factory.optimized_path(source, cache)
    assert cached is not None and cached.exists()
    # another graph under the copy's name, listed by hand with no original
    make_image_model(cached, {"x": ["N", 4, 8, 8]}, {"y": ["N", 6, 1, 1]}, "noise")
    st = cached.stat()
    sidecar(cached).write_text(json.dumps({"file": cached.name, "kind": "optimized", "sha256": _sha(cached),
                                           "size": st.st_size, "mtime_ns": st.st_mtime_ns}))

    got = factory.create(source, optimized_dir=cache).run(None, {"x": x})[0]

    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    entry = Manifest(cache).entry(cached)
    assert entry is not None and entry.original_sha256 == _sha(source)


# ------------------------------------------------------------------ the interfaces fit the real layouts


def test_every_stand_in_with_the_real_layout_fits_its_interface(tmp_path: Path) -> None:
    """The interfaces are as strict as the runners and no stricter: a tiny model with the real
    inputs and outputs of each catalogue entry (the stand-ins the runtime tests run) passes."""
    from swapline.models.enhance_catalog import ENHANCERS
    from swapline.models.interface import check_interface
    from swapline.models.neural_catalog import CONVERTERS, RECOGNIZERS

    from .test_face_enhancer import enhancer_model
    from .tiny_models import make_converter

    for name, spec in SWAPPERS.items():
        check_interface(make_swapper(tmp_path / f"{name}.onnx", spec, batch=1), name)
    for name in RECOGNIZERS:
        check_interface(make_arcface(tmp_path / f"{name}.onnx"), name)
    for name in CONVERTERS:
        check_interface(make_converter(tmp_path / f"{name}.onnx"), name)
    for name, enhancer in ENHANCERS.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(enhancer_model(enhancer))
        check_interface(path, name)
    xseg = make_image_model(tmp_path / "xseg.onnx", {"input": ["n", 256, 256, 3]}, {"output": ["n", 256, 256, 1]},
                            "noise")
    check_interface(xseg, "xseg_1")
    check_interface(make_inswapper(tmp_path / "echo.onnx", echo_source=True), "inswapper_128")  # extra outputs: fine
    with pytest.raises(ModelError, match="no output 'output' first"):  # the runner reads the first output
        check_interface(_reordered_outputs(tmp_path), "inswapper_128")


def _reordered_outputs(tmp_path: Path) -> Path:
    """An inswapper stand-in whose first output is the echoed source, not the image."""
    path = make_inswapper(tmp_path / "reordered.onnx", echo_source=True)
    model = onnx.load(str(path))
    outputs = list(model.graph.output)
    del model.graph.output[:]
    model.graph.output.extend(outputs[::-1])
    onnx.save(model, str(path))
    return path


def test_fixed_batch_is_signed_only_when_set(tmp_path: Path) -> None:
    """Records without ``fixed_batch`` sign the same payload as before it existed (issue 9's
    signatures stay valid); a record that has it cannot lose it unnoticed."""
    book = Manifest(tmp_path)
    f = tmp_path / "m.onnx"
    f.write_bytes(os.urandom(1024))
    plain = book.record(f, kind="converted", original_sha256="a" * 64)
    assert "fixed_batch" not in plain.payload() and book.signed(plain)
    fixed = book.record(f, kind="converted", original_sha256="a" * 64, fixed_batch=1)
    data = json.loads(sidecar(f).read_text())
    assert data["fixed_batch"] == 1 and book.signed(fixed)
    data.pop("fixed_batch")
    sidecar(f).write_text(json.dumps(data))
    entry = Manifest(tmp_path).entry(f)
    assert entry is not None and entry.fixed_batch is None and not Manifest(tmp_path).signed(entry)
