"""The Session's parts: the table of processor kinds and their loader
(swapline.pipeline.processors), the engine (swapline.runtime.engine), the swapper's source input
cache (swapline.swap.source) and the whole catalogue's status rows (swapline.models.registry)."""

from __future__ import annotations

import argparse
import dataclasses
import gc
import inspect
import io
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from swapline.cli import models as cli_models
from swapline.api import Session
from swapline.config import MASK_TYPES, RuntimeConfig, SwapConfig, VideoConfig
from swapline.errors import ConfigError
from swapline.models.registry import (
    BUILTIN_SWAPPER,
    catalogue_status,
    full_catalog,
    loose_models,
)
from swapline.models.status import NOT_AT_HAND, UNVERIFIED
from swapline.models.store import ModelStore
from swapline.pipeline.frame import frame_path
from swapline.pipeline.processors import (
    ENHANCER,
    KINDS,
    OCCLUDER,
    PARSER,
    SWAPPER,
    ModelProcessors,
    Processors,
)
from swapline.runtime import engine as engine_module
from swapline.runtime.device import DevicePath
from swapline.runtime.engine import Engine
from swapline.runtime.memory import MAX_BATCH
from swapline.swap.source import SourceInputs

from .tiny_models import make_image_model

CPU = DevicePath(ops="numpy", models="ort-cpu")


# ---------------------------------------------------------------------------- the table of kinds

def test_every_kind_is_data_that_points_at_the_catalogue() -> None:
    fields = {f.name for f in dataclasses.fields(SwapConfig)}
    known = set(full_catalog()) | set(loose_models())
    assert len({k.name for k in KINDS}) == len(KINDS)
    for kind in KINDS:
        assert kind.specs, kind.name
        assert kind.option is None or kind.option in fields, kind.name
        assert kind.mask_type is None or kind.mask_type in MASK_TYPES, kind.name
        assert kind.stage != "mask" or kind.mask_type is not None, kind.name
        assert kind.mask_type is None or kind.stage in ("mask", "parse"), kind.name  # the parse gives the region mask
        assert (kind.stage == "retouch") == (kind.apply is not None), kind.name
        for spec in kind.specs.values():  # one catalogue entry per model: fetched or --model-dir
            assert spec.name in known, (kind.name, spec.name)
            converter = getattr(spec, "converter", None)
            recognizer = getattr(spec, "recognizer", None)
            assert converter is None or converter in known
            assert recognizer is None or recognizer in known


def test_model_names_come_from_the_config() -> None:
    cfg = SwapConfig()
    assert [k.model_name(cfg) for k in (SWAPPER, ENHANCER, OCCLUDER, PARSER)] == [None, None, None, "bisenet_resnet_18"]
    assert PARSER.model_name(SwapConfig(face_parsing=False)) is None  # the colour model instead
    cfg = SwapConfig(face_swapper_model="inswapper_128", face_enhancer_model="codeformer",
                     face_mask_types=("oval", "region"), face_parsing=False, face_parser_model="bisenet_resnet_34")
    assert SWAPPER.model_name(cfg) == "inswapper_128" and ENHANCER.model_name(cfg) == "codeformer"
    assert OCCLUDER.model_name(cfg) is None and PARSER.model_name(cfg) == "bisenet_resnet_34"  # the region mask asks
    with pytest.raises(ConfigError, match="unknown face swapper 'x'; choose from builtin, inswapper_128"):
        SWAPPER.spec("x")
    with pytest.raises(ConfigError, match="unknown occlusion mask model 'bisenet_resnet_34'; choose from xseg"):
        OCCLUDER.spec("bisenet_resnet_34")


def test_what_the_device_path_cannot_run_comes_from_the_table() -> None:
    models = {"parser": object(), "enhancer": object(), "occluder": object()}
    p = Processors(models=models, device="cuda:0")
    assert [k.name for k, _ in p.loaded()] == ["enhancer", "occluder", "parser"]  # table order
    assert [k.name for k, _ in p.loaded("mask")] == ["occluder"]
    assert [k.name for k, _ in p.loaded("parse")] == ["parser"]
    assert p.off_device() == ["a face enhancer", "an occlusion mask model", "a face parser"]
    assert p.get("parser") is models["parser"] and p.get("swapper") is None
    assert frame_path(SwapConfig(), p) == "numpy"
    assert Processors(device="cuda:0").off_device() == []


# ---------------------------------------------------------------------------- loading

def _tiny_session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class TinyProcessors(ModelProcessors):
    """Serves tiny stand-ins instead of catalogue files; records what was opened."""

    def __init__(self, store: ModelStore, engine: Engine, folder: Path) -> None:
        super().__init__(store, engine)
        self.folder = folder
        self.opened: list[str] = []

    def open(self, name: str) -> tuple[Any, Path]:
        self.opened.append(name)
        path = self.folder / f"{name}.onnx"
        if not path.exists():
            if name.startswith("xseg"):
                make_image_model(path, {"in": ["n", 256, 256, 3]}, {"out": ["n", 256, 256, 1]}, "noise")
            elif name.startswith("bisenet"):
                make_image_model(path, {"in": ["n", 3, 512, 512]}, {"out": ["n", 19, 512, 512]}, "noise")
            else:
                make_image_model(path, {"input": ["n", 3, 512, 512]}, {"output": ["n", 3, 512, 512]})
        return _tiny_session(path), path


@pytest.fixture()
def loader(tmp_path: Path) -> TinyProcessors:
    runtime = RuntimeConfig(home=tmp_path / "home")
    return TinyProcessors(ModelStore(runtime, progress=False), Engine(runtime, device_path=CPU), tmp_path)


def test_processors_are_loaded_once_by_kind_model_and_variant(loader: TinyProcessors) -> None:
    cfg = SwapConfig(face_enhancer_model="gfpgan_1.4", face_mask_types=("oval", "occlusion", "region"),
                     face_occluder_model="xseg")
    first = loader.processors(cfg)
    assert first.swapper is None and first.source_input is None and first.device is None
    assert list(first.models) == ["enhancer", "occluder", "parser"]
    assert loader.opened == ["gfpgan_1.4", "xseg", "bisenet_resnet_18"]
    assert first.models["enhancer"].runner.max_batch == MAX_BATCH  # from the engine
    again = loader.processors(cfg)
    assert all(again.models[k] is first.models[k] for k in first.models) and len(loader.opened) == 3
    fewer = loader.processors(dataclasses.replace(cfg, face_mask_regions=("skin",)))
    assert fewer.models["parser"] is first.models["parser"]  # one parse serves every choice of regions
    assert fewer.models["occluder"] is first.models["occluder"]
    other = loader.processors(dataclasses.replace(cfg, face_parser_model="bisenet_resnet_34"))
    assert other.models["parser"] is not first.models["parser"]
    loader.clear()
    assert loader.processors(cfg).models["enhancer"] is not first.models["enhancer"]


def test_unknown_models_are_config_errors(loader: TinyProcessors) -> None:
    with pytest.raises(ConfigError, match="unknown face enhancer 'nope'"):
        loader.processors(SwapConfig(face_enhancer_model="nope"))
    with pytest.raises(ConfigError, match="unknown face parser 'xseg'"):
        loader.processors(SwapConfig(face_mask_types=("region",), face_parser_model="xseg"))
    assert loader.opened == []


# ---------------------------------------------------------------------------- the engine

def test_engine_on_the_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    eng = Engine(RuntimeConfig(), device_path=CPU)
    assert eng.path is CPU and eng.device is None
    assert eng.max_batch == MAX_BATCH  # no TensorRT: the general limit
    monkeypatch.setattr(engine_module, "free_device_memory", lambda device_id=0: None)
    assert eng.fit_batch(VideoConfig(batch_size=3)).batch_size == 3  # nothing known: as configured
    monkeypatch.setattr(engine_module, "free_device_memory", lambda device_id=0: 2 * engine_module.FRAME_BYTES)
    assert eng.fit_batch(VideoConfig(batch_size=3)).batch_size == 1  # 75 % of two frames
    assert not eng.release_after_job
    assert Engine(RuntimeConfig(video_memory_strategy="strict"), device_path=CPU).release_after_job
    path = make_image_model(tmp_path / "m.onnx", {"x": ["n", 3, 8, 8]}, {"y": ["n", 3, 8, 8]})
    session = eng.load(path, optimized_dir=tmp_path / "optimized")
    assert session.run(None, {"x": np.ones((2, 3, 8, 8), np.float32)})[0].shape == (2, 3, 8, 8)
    assert Engine(RuntimeConfig(), device_path=DevicePath("torch", "ort-device", "cuda:1")).device == "cuda:1"


def test_engine_loads_through_torch_when_the_path_says_so(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from swapline.runtime.torch_backend import TorchSession, onnx2torch_available

    if not onnx2torch_available():
        pytest.skip("onnx2torch is not installed")
    eng = Engine(RuntimeConfig(), device_path=DevicePath(ops="torch", models="torch", device="cpu"))
    path = make_image_model(tmp_path / "m.onnx", {"x": ["n", 3, 8, 8]}, {"y": ["n", 3, 8, 8]})
    assert isinstance(eng.load(path), TorchSession)


# ---------------------------------------------------------------------------- source inputs

class _Spec:
    def __init__(self, name: str, kind: str = "embedding") -> None:
        self.name, self.source_kind, self.recognizer = name, kind, "arcface_w600k_r50"


class _Swapper:
    def __init__(self, name: str) -> None:
        self.spec = _Spec(name)

    def source_input(self, embedding: np.ndarray) -> np.ndarray:
        return np.asarray(embedding, np.float32).reshape(1, -1)


class _Recognizer:
    def __init__(self) -> None:
        self.calls = 0

    def embed(self, image: np.ndarray, faces: list, *, normalise: bool = True) -> np.ndarray:
        self.calls += 1
        assert not normalise and len(faces) == 1 and faces[0].kps.shape == (5, 2)
        return np.full((1, 512), float(image.mean()), np.float32)


class _Source:
    def __init__(self) -> None:
        self.levels = (np.full((64, 64, 3), 7, np.uint8),)
        self.mesh = np.random.default_rng(0).random((468, 3)).astype(np.float32) * 60


def test_source_inputs_are_made_once_per_source_and_swapper() -> None:
    cache, rec = SourceInputs(), _Recognizer()
    source = _Source()
    names: list[str] = []

    def recognizer(name: str) -> _Recognizer:
        names.append(name)
        return rec

    a = cache.get(_Swapper("one"), source, recognizer)
    assert a.shape == (1, 512) and a[0, 0] == 7.0
    assert cache.get(_Swapper("one"), source, recognizer) is a and rec.calls == 1
    cache.get(_Swapper("two"), source, recognizer)
    assert rec.calls == 2 and names == ["arcface_w600k_r50"] * 2
    del source
    gc.collect()
    assert len(cache) == 0  # a dropped source takes its entries along


# ---------------------------------------------------------------------------- the Session facade

def test_session_keeps_its_public_api() -> None:
    sig = inspect.signature(Session.__init__)
    assert list(sig.parameters)[:3] == ["self", "config", "runtime"]
    assert {"store", "progress", "device_path", "options"} <= set(sig.parameters)
    video = inspect.signature(Session.swap_video).parameters
    assert video["on_progress"].kind is inspect.Parameter.KEYWORD_ONLY and "cancel" in video
    for name in ("close", "processors", "analyse", "load_source", "swap", "swap_video"):
        assert callable(getattr(Session, name)), name
    assert isinstance(Session.analyser, property)


def test_session_parts_share_one_engine(tmp_path: Path) -> None:
    with Session(runtime=RuntimeConfig(home=tmp_path), device_path=CPU) as s:
        assert s.models.engine is s.engine and s.factory is s.engine.factory
        assert s.processors(SwapConfig()).device is None
        assert s.processors(SwapConfig(face_parsing=False)).models == {}


# ---------------------------------------------------------------------------- the whole catalogue

def test_catalogue_status_lists_every_model_once(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "ghost_1_256.onnx").write_bytes(b"not checked")
    store = ModelStore(RuntimeConfig(home=tmp_path / "home", model_dir=mine), progress=False, catalog=full_catalog())
    rows = catalogue_status(store)
    names = [r.name for r in rows]
    assert len(names) == len(set(names))
    assert set(names) == set(full_catalog()) | set(loose_models()) | {"builtin"}
    by = {r.name: r for r in rows}
    assert by["builtin"] == BUILTIN_SWAPPER and names.index("builtin") < names.index("inswapper_128")
    assert by["yunet"].source == "package" and not by["yunet"].downloadable and by["yunet"].default
    assert by["facemesh"].source == "wheel" and by["facemesh"].downloadable
    assert by["inswapper_128"].downloadable and by["inswapper_128"].verified
    assert by["ghost_1_256"].state == UNVERIFIED and by["ghost_1_256"].where == str(mine / "ghost_1_256.onnx")
    assert by["simswap_256"].state == NOT_AT_HAND and not by["simswap_256"].downloadable
    assert not by["simswap_256"].verified and "simswap_256.onnx" in by["simswap_256"].where
    assert by["gfpgan_1.2"].licence.startswith("Apache-2.0")


def test_models_list_shows_the_whole_catalogue(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli_models.register(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    assert cli_models.run(parser.parse_args(["models", "list"]), RuntimeConfig(home=tmp_path), out=out) == 0
    table = out.getvalue()
    header = table.splitlines()[0].split()
    assert header == ["name", "role", "state", "size", "download", "licence", "where"]
    for word in ("yunet *", "builtin *", "built in", "inswapper_128", "not downloaded", "in a package",
                 "yes (PyPI)", "no: --model-dir", "hyperswap_1a_256", "xseg_3", "non-commercial"):
        assert word in table, word
