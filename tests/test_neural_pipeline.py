"""Neural models through the whole product: a Session (and the CLI) with tiny stand-ins that
have the real models' inputs, outputs and layout, served by the model store from --model-dir."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest

from swapline.api import Session
from swapline.config import RuntimeConfig, SwapConfig, VideoConfig
from swapline.errors import ConfigError, ModelError
from swapline.gpu import DevicePath
from swapline.models.enhance_catalog import ENHANCERS, PARSER_CLASSES
from swapline.models.registry import full_catalog
from swapline.models.store import ModelStore
from swapline.video.reader import probe

from .conftest import media, read
from .test_face_enhancer import enhancer_model

from .tiny_models import make_arcface, make_image_model, make_inswapper


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _store(model_home: Path, folder: Path, files: dict[str, Path]) -> ModelStore:
    """A store whose catalogue points the named models at tiny files in ``folder`` (--model-dir)."""
    catalog = full_catalog()
    for name, path in files.items():
        spec = catalog[name]
        if "bisenet_to_onnx" in spec.convert:  # the stand-in is ONNX already, not a checkpoint
            spec = dataclasses.replace(spec, convert=(), converted_name=None)
        catalog[name] = dataclasses.replace(spec, file_name=path.name, sha256=_sha(path),
                                            size=path.stat().st_size, sources=())
    return ModelStore(RuntimeConfig(home=model_home, model_dir=folder), progress=False, catalog=catalog)


@pytest.fixture(scope="module")
def neural_home(tmp_path_factory: pytest.TempPathFactory, model_home: Path) -> Path:
    """A cache of its own (the stand-ins must never land in the shared one), seeded with the
    shared cache's default models so nothing is fetched again."""
    import shutil

    home = tmp_path_factory.mktemp("neural-home")
    ModelStore(RuntimeConfig(home=model_home), progress=False).prepare()
    shutil.copytree(model_home / "models", home / "models")
    return home


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny-models")
    out = {
        "inswapper_negative": make_inswapper(folder / "inswapper_negative.onnx", "negative"),
        "inswapper_identity": make_inswapper(folder / "inswapper_identity.onnx", "identity"),
        "arcface_w600k_r50": make_arcface(folder / "w600k_r50.onnx"),
        "xseg_zero": make_image_model(folder / "xseg_zero.onnx", {"input": ["n", 256, 256, 3]},
                                      {"output": ["n", 256, 256, 1]}, "noise", scale=0.0, bias=0.0),
    }
    for name, cls in (("bisenet_hair", PARSER_CLASSES["hair"]), ("bisenet_skin", PARSER_CLASSES["skin"])):
        out[name] = _parser_model(folder / f"{name}.onnx", cls)
    gfpgan = folder / "gfpgan_negative.onnx"
    gfpgan.write_bytes(enhancer_model(ENHANCERS["gfpgan_1.4"], "negative"))
    out["gfpgan_negative"] = gfpgan
    out["folder"] = folder
    return out


def _parser_model(path: Path, cls: int) -> Path:
    """A BiSeNet stand-in with the real I/O (``input`` [N, 3, 512, 512] -> ``output`` [N, 19,
    512, 512] logits) whose every pixel is class ``cls``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    logits = np.zeros((1, 19, 1, 1), np.float32)
    logits[0, cls] = 5.0
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("s", TensorProto.INT64, [1], [0]), helper.make_tensor("e", TensorProto.INT64, [1], [1]),
             helper.make_tensor("ax", TensorProto.INT64, [1], [1]), numpy_helper.from_array(logits, "logits")]
    nodes = [helper.make_node("Slice", ["input", "s", "e", "ax"], ["c0"]),
             helper.make_node("Mul", ["c0", "zero"], ["z"]),
             helper.make_node("Add", ["z", "logits"], ["output"])]
    graph = helper.make_graph(nodes, "tiny-bisenet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 512, 512])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 19, 512, 512])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _session(neural_home: Path, tiny: dict[str, Path], device_path: DevicePath | None = None,
             **models: str) -> Session:
    files = {name: tiny[key] for name, key in models.items()}
    return Session(store=_store(neural_home, tiny["folder"], files), device_path=device_path)


def _face_box(session: Session, image: np.ndarray) -> tuple[slice, slice]:
    f = max(session.analyse(image), key=lambda x: x.area)
    x0, y0, x1, y1 = np.round(f.box).astype(int)
    return slice(y0, y1), slice(x0, x1)


def test_neural_swapper_changes_the_face_and_nothing_else(neural_home: Path, tiny: dict[str, Path]) -> None:
    target = read("src_biden.jpg")
    with _session(neural_home, tiny, inswapper_128="inswapper_negative", arcface_w600k_r50="arcface_w600k_r50") as s:
        source = s.load_source(read("src_obama.jpg"))
        result = s.swap(source, target, SwapConfig(face_swapper_model="inswapper_128"))
        assert len(result.swapped) == 1
        box = _face_box(s, target)
        inner = tuple(slice(b.start + (b.stop - b.start) // 4, b.stop - (b.stop - b.start) // 4) for b in box)
        assert np.abs(result.image[inner].astype(int) - target[inner]).mean() > 40  # the negative model ran
        assert np.array_equal(result.image[~result.changed], target[~result.changed])
        ys, xs = np.nonzero(result.changed)
        assert ys.min() >= box[0].start - 0.5 * (box[0].stop - box[0].start)
        assert ys.max() <= box[0].stop + 0.5 * (box[0].stop - box[0].start)
        # weight 0: nothing is pasted
        none = s.swap(source, target, SwapConfig(face_swapper_model="inswapper_128", face_swapper_weight=0.0))
        assert np.array_equal(none.image, target)


def test_torch_backend_runs_the_neural_swapper_like_onnxruntime(neural_home: Path, tiny: dict[str, Path]) -> None:
    """Where the device path runs models through torch (a CUDA device without onnxruntime-gpu),
    the Session builds TorchSessions; here on the CPU, with the same result as ONNX Runtime."""
    pytest.importorskip("torch")
    from swapline.runtime.torch_backend import TorchSession, onnx2torch_available

    if not onnx2torch_available():
        pytest.skip("onnx2torch is not installed")
    target = read("src_biden.jpg")
    cfg = SwapConfig(face_swapper_model="inswapper_128")
    models = {"inswapper_128": "inswapper_negative", "arcface_w600k_r50": "arcface_w600k_r50"}
    with _session(neural_home, tiny, **models) as s:
        want = s.swap(s.load_source(read("src_obama.jpg")), target, cfg)
    with _session(neural_home, tiny, DevicePath(ops="torch", models="torch", device="cpu"), **models) as s:
        source = s.load_source(read("src_obama.jpg"))
        assert isinstance(s.processors(cfg, source).swapper.session, TorchSession)
        got = s.swap(source, target, cfg)
    assert np.array_equal(got.changed, want.changed)
    diff = np.abs(got.image.astype(int) - want.image)[got.changed]
    assert diff.max() <= 2, diff.max()


def test_identity_swapper_keeps_the_face(neural_home: Path, tiny: dict[str, Path]) -> None:
    """A model that returns its input: the face comes back as it was, up to the 128 px crop."""
    target = read("src_biden.jpg")
    with _session(neural_home, tiny, inswapper_128="inswapper_identity", arcface_w600k_r50="arcface_w600k_r50") as s:
        result = s.swap(s.load_source(read("src_obama.jpg")), target, SwapConfig(face_swapper_model="inswapper_128"))
        box = _face_box(s, target)
        assert np.abs(result.image[box].astype(int) - target[box]).mean() < 12  # measured ≈7 (128 px round trip)


def test_neural_swapper_on_a_video_keeps_timing_and_audio(neural_home: Path, tiny: dict[str, Path],
                                                          tmp_path: Path) -> None:
    clip = media("vid_lp_d18_talking_480.mp4")
    out = tmp_path / "neural.mp4"
    with _session(neural_home, tiny, inswapper_128="inswapper_negative", arcface_w600k_r50="arcface_w600k_r50") as s:
        report = s.swap_video(s.load_source(read("src_obama.jpg")), clip, out,
                              SwapConfig(face_swapper_model="inswapper_128", face_swapper_pixel_boost=2),
                              VideoConfig(trim_end=30))
    assert report.frames == 30 == probe(out).frame_count and probe(out).has_audio
    assert report.swapped >= 28


def test_several_swap_workers_give_the_frames_one_gives(neural_home: Path, tiny: dict[str, Path],
                                                       tmp_path: Path) -> None:
    """A neural swapper keeps no state between frames, so its stage may run several frames at
    once; the output is the same video, frame for frame."""
    import av

    from swapline.pipeline.video import swap_workers

    clip = media("vid_lp_d18_talking_480.mp4")
    frames = {}
    with _session(neural_home, tiny, inswapper_128="inswapper_negative", arcface_w600k_r50="arcface_w600k_r50") as s:
        source = s.load_source(read("src_obama.jpg"))
        cfg = SwapConfig(face_swapper_model="inswapper_128")
        for workers in (1, 3):
            out = tmp_path / f"w{workers}.mp4"
            # lossless (CRF 0): the decoded frames are the swapped frames, whatever the encoder's
            # own choices (x264's output for the same frames varies now and then between runs)
            report = s.swap_video(source, clip, out, cfg, VideoConfig(trim_end=40, swap_workers=workers, quality=0))
            swap_stage = next(m for m in report.stages if m.name == "swap")
            assert report.frames == 40 and swap_stage.items == 40
            with av.open(str(out)) as c:
                frames[workers] = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
        processors = s.processors(cfg, source)
    assert len(frames[1]) == len(frames[3]) == 40
    assert all(np.array_equal(a, b) for a, b in zip(frames[1], frames[3]))
    assert swap_workers(VideoConfig(swap_workers=3), processors) == 3
    assert 1 <= swap_workers(VideoConfig(), processors) <= 4
    from swapline.pipeline.frame import NO_PROCESSORS

    assert swap_workers(VideoConfig(swap_workers=3), NO_PROCESSORS) == 1  # the built-in swapper: in order
    with pytest.raises(ConfigError, match="swap_workers"):
        VideoConfig(swap_workers=-1)


def test_enhancer_runs_after_the_builtin_swap(neural_home: Path, tiny: dict[str, Path]) -> None:
    target = read("src_biden.jpg")
    with _session(neural_home, tiny, **{"gfpgan_1.4": "gfpgan_negative"}) as s:
        source = s.load_source(read("src_obama.jpg"))
        plain = s.swap(source, target)
        enhanced = s.swap(source, target, SwapConfig(face_enhancer_model="gfpgan_1.4", face_enhancer_blend=1.0))
        box = _face_box(s, target)
        assert np.abs(enhanced.image[box].astype(int) - plain.image[box]).mean() > 40
        outside = ~enhanced.changed
        assert np.array_equal(enhanced.image[outside], target[outside])


def test_occlusion_model_that_sees_only_occluders_keeps_the_target(neural_home: Path, tiny: dict[str, Path]) -> None:
    """An XSeg stand-in that says "nothing here is face" (keep-mask 0): nothing may be pasted."""
    target = read("src_biden.jpg")
    with _session(neural_home, tiny, xseg="xseg_zero") as s:
        source = s.load_source(read("src_obama.jpg"))
        spec = s.store.catalog["xseg"]
        assert spec.sha256 == _sha(tiny["xseg_zero"])
        result = s.swap(source, target, SwapConfig(face_mask_types=("oval", "occlusion"), face_occluder_model="xseg"))
        box = _face_box(s, target)
        # the VisoMaster XSeg outputs occluder probability (inverted): 0 means "all face", so the
        # swap goes through; the FaceFusion layout (xseg_1) would read 0 as "no face"
        assert np.abs(result.image[box].astype(int) - target[box]).mean() > 5


def test_a_neural_swap_keeps_the_targets_hair_in_front_and_takes_region_masks(neural_home: Path,
                                                                              tiny: dict[str, Path]) -> None:
    """The face parser acts on a neural swapper too: what it classes as the target's hair stays
    in front (a parser that sees only hair: nothing is pasted), and the region mask keeps only
    the chosen classes (FaceFusion's names)."""
    target = read("src_biden.jpg")
    swap = SwapConfig(face_swapper_model="inswapper_128")
    with _session(neural_home, tiny, inswapper_128="inswapper_negative", arcface_w600k_r50="arcface_w600k_r50",
                  bisenet_resnet_18="bisenet_hair") as s:
        source = s.load_source(read("src_obama.jpg"))
        box = _face_box(s, target)
        hair = s.swap(source, target, swap)
        diff = np.abs(hair.image[box].astype(int) - target[box])
        assert diff.max() <= 1, (diff.max(), (diff > 0).mean())  # all of it is the target's hair
        without = s.swap(source, target, dataclasses.replace(swap, face_parsing=False))
        assert np.abs(without.image[box].astype(int) - target[box]).mean() > 20
    with _session(neural_home, tiny, inswapper_128="inswapper_negative", arcface_w600k_r50="arcface_w600k_r50",
                  bisenet_resnet_18="bisenet_skin") as s:
        source = s.load_source(read("src_obama.jpg"))
        regions = dataclasses.replace(swap, face_mask_types=("oval", "region"))
        skin = s.swap(source, target, dataclasses.replace(regions, face_mask_regions=("skin",)))
        assert np.abs(skin.image[box].astype(int) - target[box]).mean() > 20
        lips = s.swap(source, target, dataclasses.replace(regions, face_mask_regions=("upper-lip", "lower-lip")))
        assert np.array_equal(lips.image, target)  # no pixel is lips: nothing pasted


def test_unknown_and_unavailable_models_are_clear_errors(model_home: Path, tmp_path: Path) -> None:
    with Session(runtime=RuntimeConfig(home=model_home, offline=True, model_dir=tmp_path)) as s:
        source = s.load_source(read("src_obama.jpg"))
        with pytest.raises(ConfigError, match="unknown face swapper 'faceswapper9000'"):
            s.swap(source, read("src_biden.jpg"), SwapConfig(face_swapper_model="faceswapper9000"))
        with pytest.raises(ModelError, match="simswap_256.onnx"):
            s.swap(source, read("src_biden.jpg"), SwapConfig(face_swapper_model="simswap_256"))
        with pytest.raises(ModelError, match="inswapper_128"):
            s.swap(source, read("src_biden.jpg"), SwapConfig(face_swapper_model="inswapper_128"))


def test_cli_names_a_missing_neural_model_in_one_line(model_home: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    from swapline.cli import main

    code = main(["swap", "-s", str(media("src_obama.jpg")), "-t", str(media("src_biden.jpg")),
                 "-o", str(tmp_path / "out.jpg"), "--face-swapper-model", "ghost_1_256", "--offline"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 5 and len(err) == 1 and "ghost_1_256" in err[0] and "--model-dir" in err[0]
    assert not (tmp_path / "out.jpg").exists()


def test_tiny_models_have_the_real_io() -> None:
    """The stand-ins really have inswapper's I/O: target/source in, emap as last initializer."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        m = onnx.load(str(make_inswapper(Path(d) / "i.onnx")))
        assert [i.name for i in m.graph.input] == ["target", "source"]
        assert onnx.numpy_helper.to_array(m.graph.initializer[-1]).shape == (512, 512)


def test_strict_memory_strategy_releases_sessions_after_a_job(model_home: Path) -> None:
    with Session(runtime=RuntimeConfig(home=model_home, video_memory_strategy="strict")) as s:
        s.swap(s.load_source(read("src_obama.jpg")), read("src_biden.jpg"))
        assert s._analyser is None  # released; the next job loads it again
        assert s.swap(s.load_source(read("src_obama.jpg")), read("src_biden.jpg")).swapped
    with Session(runtime=RuntimeConfig(home=model_home)) as s:  # moderate keeps them
        s.swap(s.load_source(read("src_obama.jpg")), read("src_biden.jpg"))
        assert s._analyser is not None
