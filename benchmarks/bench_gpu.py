"""GPU figures, on a machine where torch sees a CUDA device (prints, never asserts).

Run: ``python benchmarks/bench_gpu.py [--frames N] [--json FILE]``. Three parts:

1. The built-in swap's per-face pixel work at 1080p (face ≈400 px, demo portraits): the CPU
   path (OpenCV / numpy) against the device path (:mod:`swapline.gpu.frame`, frame uploaded and
   downloaded around it), both with the options the device path has (no detail matching).
2. A neural face swapper through the torch backend (:class:`~swapline.runtime.torch_backend.TorchSession`):
   fp32, fp16 and fp16 + CUDA graphs, batch 1 and 8: ms per call and per face, peak device memory.
3. The streaming video pipeline end to end on a 1080p clip made from the demo portrait (10 s,
   25 fps): the built-in swapper, and the neural swapper on the device.

The neural swapper is a *proxy*: no real weights can be fetched where this runs, so the script
builds a network with inswapper_128's inputs and outputs (``target`` [N,3,128,128], ``source``
[N,512], a 512x512 ``emap`` as the last initializer) and about its size: ~139 M parameters in
six AdaIN style blocks of 1024 channels at 32x32 (0.33 TFLOP per face, likely more than the real
model). Random weights: the speed stands for a model of that size, the pictures mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapline.api import Session  # noqa: E402
from swapline.bench.image import FACE_PX, portrait_frame  # noqa: E402
from swapline.bench.portraits import demo_portraits  # noqa: E402
from swapline.config import RuntimeConfig, SwapConfig, VideoConfig  # noqa: E402
from swapline.models.registry import full_catalog  # noqa: E402
from swapline.models.store import ModelStore  # noqa: E402


def proxy_inswapper(path: Path, width: int = 1024, blocks: int = 6, seed: int = 0) -> tuple[Path, int, float]:
    """Write the proxy swapper (see the module docstring) to ``path``. Returns ``(path,
    parameters, GFLOP per face)``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits: list[Any] = []
    nodes: list[Any] = []
    params = 0
    flops = 0.0

    def weight(name: str, shape: tuple[int, ...], scale: float) -> str:
        nonlocal params
        inits.append(numpy_helper.from_array((rng.standard_normal(shape, dtype=np.float32) * scale), name))
        params += int(np.prod(shape))
        return name

    def conv(x: str, cin: int, cout: int, k: int, stride: int, hw: int, name: str, act: str | None = "Relu") -> str:
        nonlocal flops
        w = weight(f"{name}_w", (cout, cin, k, k), (2.0 / (cin * k * k)) ** 0.5)
        b = weight(f"{name}_b", (cout,), 0.0)
        nodes.append(helper.make_node("Conv", [x, w, b], [f"{name}_c"], kernel_shape=[k, k], strides=[stride] * 2,
                                      pads=[k // 2] * 4))
        out_hw = hw // stride
        flops += 2.0 * cin * cout * k * k * out_hw * out_hw
        if act is None:
            return f"{name}_c"
        nodes.append(helper.make_node(act, [f"{name}_c"], [f"{name}_a"]))
        return f"{name}_a"

    def adain(x: str, c: int, name: str) -> str:
        inits.append(numpy_helper.from_array(np.ones(c, np.float32), f"{name}_one"))
        inits.append(numpy_helper.from_array(np.zeros(c, np.float32), f"{name}_zero"))
        nodes.append(helper.make_node("InstanceNormalization", [x, f"{name}_one", f"{name}_zero"], [f"{name}_n"],
                                      epsilon=1e-5))
        g = weight(f"{name}_g", (512, 2 * c), 0.02)
        nodes.append(helper.make_node("MatMul", ["latent", g], [f"{name}_gb"]))
        nodes.append(helper.make_node("Reshape", [f"{name}_gb", "style_shape"], [f"{name}_gb4"]))
        nodes.append(helper.make_node("Split", [f"{name}_gb4", "halves"], [f"{name}_gam", f"{name}_bet"], axis=1))
        nodes.append(helper.make_node("Mul", [f"{name}_n", f"{name}_gam"], [f"{name}_m"]))
        nodes.append(helper.make_node("Add", [f"{name}_m", f"{name}_n"], [f"{name}_m1"]))
        nodes.append(helper.make_node("Add", [f"{name}_m1", f"{name}_bet"], [f"{name}_o"]))
        return f"{name}_o"

    c0 = width // 8
    inits.append(numpy_helper.from_array(np.array([-1, 2 * width, 1, 1], np.int64), "style_shape"))
    inits.append(numpy_helper.from_array(np.array([width, width], np.int64), "halves"))
    nodes.append(helper.make_node("Identity", ["source"], ["latent"]))
    x = conv("target", 3, c0, 7, 1, 128, "e0")
    x = conv(x, c0, 2 * c0, 3, 2, 128, "e1")
    x = conv(x, 2 * c0, 4 * c0, 3, 2, 64, "e2")
    x = conv(x, 4 * c0, width, 3, 1, 32, "e3")
    for i in range(blocks):
        h = conv(x, width, width, 3, 1, 32, f"b{i}a", act=None)
        h = adain(h, width, f"b{i}a")
        nodes.append(helper.make_node("Relu", [h], [f"b{i}r"]))
        h = conv(f"b{i}r", width, width, 3, 1, 32, f"b{i}b", act=None)
        h = adain(h, width, f"b{i}b")
        nodes.append(helper.make_node("Add", [x, h], [f"b{i}o"]))
        x = f"b{i}o"
    roi = numpy_helper.from_array(np.array([], np.float32), "roi")
    inits.append(roi)
    scales = numpy_helper.from_array(np.array([1.0, 1.0, 2.0, 2.0], np.float32), "up")
    inits.append(scales)
    nodes.append(helper.make_node("Resize", [x, "roi", "up"], ["u1"], mode="nearest"))
    x = conv("u1", width, 4 * c0, 3, 1, 64, "d1")
    nodes.append(helper.make_node("Resize", [x, "roi", "up"], ["u2"], mode="nearest"))
    x = conv("u2", 4 * c0, 2 * c0, 3, 1, 128, "d2")
    x = conv(x, 2 * c0, 3, 7, 1, 128, "d3", act="Sigmoid")
    nodes.append(helper.make_node("Identity", [x], ["output"]))
    emap = (rng.standard_normal((512, 512), dtype=np.float32) / np.sqrt(512)).astype(np.float32)
    inits.append(numpy_helper.from_array(emap, "emap"))  # inswapper keeps it as the last initializer
    graph = helper.make_graph(
        nodes, "inswapper_proxy",
        [helper.make_tensor_value_info("target", TensorProto.FLOAT, ["N", 3, 128, 128]),
         helper.make_tensor_value_info("source", TensorProto.FLOAT, ["N", 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 3, 128, 128])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path, params, flops / 1e9


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _median_ms(fn: Any, repeat: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def bench_frame(session: Session, repeat: int) -> dict[str, float]:
    """Part 1: per-frame ms of the built-in swap at 1080p, CPU path against device path."""
    from swapline.pipeline.frame import NO_PROCESSORS, Processors, swap_faces

    astronaut, hopper = demo_portraits()
    source = session.load_source(astronaut)
    face = session.analyse(hopper)[0]
    frame = portrait_frame(hopper, 1920, 1080, FACE_PX / face.width, face.center)
    faces = session.analyse(frame)[:1]
    import torch

    from swapline.gpu.frame import swap_faces_torch
    from swapline.swap.mesh import face_maps

    cfg = SwapConfig(detail_match=False, keep_occluders=False, source_validity=False, relight=0.0, blend="alpha")
    device = Processors(device="cuda:0")
    resident = torch.from_numpy(frame).to("cuda:0")
    cache: dict = {}
    return {
        "face_px": float(faces[0].width),
        "cpu_ms": _median_ms(lambda: swap_faces(frame, faces, source, cfg, processors=NO_PROCESSORS), repeat),
        "device_ms": _median_ms(lambda: swap_faces(frame, faces, source, cfg, processors=device), repeat),
        # the frame already on the device, nothing copied back: what a GPU-resident pipeline pays
        "device_resident_ms": _median_ms(lambda: swap_faces_torch(resident, faces, source, cfg, cache), repeat),
        # the geometry both paths compute on the CPU (pose, triangle ids, dense maps at canvas size)
        "geometry_ms": _median_ms(lambda: face_maps(faces[0], source, shape_weight=cfg.face_shape_weight,
                                                    resolution=cfg.swap_resolution), repeat),
    }


def bench_model(path: Path, repeat: int) -> list[dict[str, Any]]:
    """Part 2: the proxy swapper through TorchSession in each precision and batch."""
    import torch

    from swapline.runtime.torch_backend import TorchSession

    rows = []
    for label, kw in (("fp32", {}), ("fp16", {"fp16": True}), ("fp16+graph", {"fp16": True, "cuda_graph": True})):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        sess = TorchSession(path, device="cuda", **kw)
        for batch in (1, 8):
            feeds = {"target": torch.rand(batch, 3, 128, 128, device="cuda"),
                     "source": torch.randn(batch, 512, device="cuda")}
            ms = _median_ms(lambda: sess.run_torch(feeds), repeat)
            rows.append({"precision": label, "batch": batch, "ms_per_call": ms, "ms_per_face": ms / batch,
                         "peak_mib": torch.cuda.max_memory_allocated() / 2**20})
        del sess
    return rows


def proxy_home(home: Path, folder: Path) -> Path:
    """A cache of the benchmark's own in ``folder``, holding copies of ``home``'s default models:
    the proxy models and what is made from them never land in the user's cache."""
    import shutil

    from swapline.models.catalog import DEFAULT_MODELS

    own = folder / "home"
    (own / "models").mkdir(parents=True, exist_ok=True)
    for path in ModelStore(RuntimeConfig(home=home), progress=False).prepare(DEFAULT_MODELS):
        for f in (path, path.with_name(path.name + ".json")):
            if f.exists():
                shutil.copy2(f, own / "models" / f.name)
    return own


def _proxy_store(home: Path, folder: Path, model: Path) -> ModelStore:
    """A store whose catalogue serves the proxy as inswapper_128 and a small random ArcFace
    (``home``: from :func:`proxy_home`)."""
    arc = folder / "w600k_r50.onnx"
    _tiny_arcface(arc)
    catalog = full_catalog()
    for name, path in {"inswapper_128": model, "arcface_w600k_r50": arc}.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        catalog[name] = dataclasses.replace(catalog[name], file_name=path.name, sha256=digest,
                                            size=path.stat().st_size, sources=())
    return ModelStore(RuntimeConfig(home=home, model_dir=folder), progress=False, catalog=catalog)


def _tiny_arcface(path: Path) -> None:
    """ArcFace w600k's interface (``input.1`` [N,3,112,112] -> [N,512]) with a random linear map
    (run once per source; its speed does not matter here)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 512)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input.1"], ["pool"]),
         helper.make_node("Flatten", ["pool"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["683"])],
        "arcface", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])], [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def bench_frame_neural(home: Path, folder: Path, model: Path, repeat: int) -> dict[str, float]:
    """Per-frame ms of the neural proxy's swap at 1080p (one face, fp16): frame work on the
    device against frame work on the CPU (model on the device in both)."""
    from swapline.gpu import DevicePath

    astronaut, hopper = demo_portraits()
    cfg = SwapConfig(face_swapper_model="inswapper_128")
    row: dict[str, float] = {}
    for label, where in (("device_ms", DevicePath(ops="torch", models="torch", device="cuda:0")),
                         ("cpu_ms", DevicePath(ops="numpy", models="torch", device="cuda:0"))):
        with Session(cfg, RuntimeConfig(home=home, model_dir=folder, fp16=True),
                     store=_proxy_store(home, folder, model), device_path=where) as session:
            source = session.load_source(astronaut)
            face = session.analyse(hopper)[0]
            frame = portrait_frame(hopper, 1920, 1080, FACE_PX / face.width, face.center)
            for _ in range(3):
                session.swap(source, frame)
            times = [session.swap(source, frame).times_ms for _ in range(repeat)]
            row[label] = statistics.median(t.get("swap", 0.0) + t.get("blend", 0.0) for t in times)
    return row


def bench_video(clip: Path, home: Path, folder: Path, model: Path) -> list[dict[str, Any]]:
    """Part 3: the streaming pipeline end to end on ``clip``: the built-in swapper (CPU path with
    its default options), and the neural proxy (a) with its frame work on the device, (b) with
    the model on the device but crops, warps and paste on the CPU (a round trip per frame)."""
    import torch

    from swapline.gpu import DevicePath

    astronaut, _ = demo_portraits()
    neural = SwapConfig(face_swapper_model="inswapper_128")
    resident = DevicePath(ops="torch", models="torch", device="cuda:0")
    round_trip = DevicePath(ops="numpy", models="torch", device="cuda:0")
    rows = []
    for label, cfg, fp16, where in (("builtin (CPU path)", SwapConfig(), False, None),
                                    ("neural proxy fp16, device frame work", neural, True, resident),
                                    ("neural proxy fp16, CPU frame work", neural, True, round_trip),
                                    ("neural proxy fp32, device frame work", neural, False, resident)):
        runtime = RuntimeConfig(home=home, model_dir=folder, fp16=fp16)
        torch.cuda.reset_peak_memory_stats()
        store = _proxy_store(home, folder, model) if cfg.face_swapper_model != "builtin" else None
        with Session(cfg, runtime, store=store, device_path=where) as session:
            source = session.load_source(astronaut)
            report = session.swap_video(source, clip, folder / "out.mp4", video=VideoConfig(), force=True)
        busy = {m.name: round(m.busy_s / report.seconds, 2) for m in report.stages} if report.seconds else {}
        per_frame = {k: round(v / max(report.frames, 1), 2) for k, v in report.stage_ms.items()}
        rows.append({"pipeline": label, "frames": report.frames, "fps": round(report.fps, 1), "busy_share": busy,
                     "ms_per_frame": per_frame, "peak_device_mib": round(torch.cuda.max_memory_allocated() / 2**20),
                     "peak_rss_mib": round(report.peak_rss_mb)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250, help="frames of the 1080p clip")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("torch sees no CUDA device: nothing to measure", file=sys.stderr)
        return 1
    from swapline.video.clip import write_clip, zoom_pan_frames

    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    print(f"device: {report['device']}, torch {report['torch']}", flush=True)
    with tempfile.TemporaryDirectory() as tmp, Session() as session:
        folder = Path(tmp)

        def part(name: str, fn: Any) -> Any:
            try:
                return fn()
            except Exception as exc:  # noqa: BLE001 - report and go on with the other parts
                print(f"{name}: failed: {type(exc).__name__}: {exc}", flush=True)
                return {"error": f"{type(exc).__name__}: {exc}"}

        report["frame"] = part("frame", lambda: bench_frame(session, args.repeat))
        print("built-in swap, 1080p, one face: " + json.dumps(report["frame"]), flush=True)
        model, params, gflop = proxy_inswapper(folder / "inswapper_proxy.onnx")
        report["proxy"] = {"parameters_m": params / 1e6, "gflop_per_face": gflop}
        print(f"proxy swapper: {params / 1e6:.0f} M parameters, {gflop:.0f} GFLOP per face", flush=True)
        report["model"] = part("model", lambda: bench_model(model, args.repeat))
        for row in report["model"] if isinstance(report["model"], list) else []:
            print("  " + json.dumps(row), flush=True)
        home = proxy_home(session.store.root, folder)
        report["frame_neural"] = part("frame_neural", lambda: bench_frame_neural(home, folder, model, args.repeat))
        print("neural proxy swap, 1080p, one face, fp16: " + json.dumps(report["frame_neural"]), flush=True)
        _, hopper = demo_portraits()
        clip = folder / "clip_1080p.mp4"
        write_clip(zoom_pan_frames(hopper, args.frames, (1920, 1080), zoom=1.3, center=(256, 230)), clip, fps=25)
        report["video"] = part("video", lambda: bench_video(clip, home, folder, model))
        for row in report["video"] if isinstance(report["video"], list) else []:
            print("  " + json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
