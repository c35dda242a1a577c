"""Tiny ONNX models with the real input/output names, shapes and layout of the neural models.

Generic: :func:`make_image_model` builds a graph from ``{name: shape}`` dicts (a dim may be an int
or a symbolic name such as ``"N"``). Specific: :func:`make_inswapper`, :func:`make_swapper` (reads
a :class:`~swapline.models.neural_catalog.SwapperSpec`, so every catalogue entry is covered),
:func:`make_converter`, :func:`make_arcface`. Weights are random (seeded) and small.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

Shape = Sequence[int | str]
OPSET = 17


def _vi(name: str, shape: Shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def _per_channel(value: float | Sequence[float], channels: int) -> np.ndarray:
    v = np.broadcast_to(np.asarray(value, np.float32), (channels,))
    return v.reshape(1, channels, 1, 1).astype(np.float32)


def make_image_model(
    path: Path | str,
    inputs: dict[str, Shape],
    outputs: dict[str, Shape],
    fn: str = "identity",
    *,
    image_input: str | None = None,
    scale: float | Sequence[float] = 1.0,
    bias: float | Sequence[float] = 0.0,
    echo: dict[str, str] | None = None,
    last_initializers: Sequence[tuple[str, np.ndarray]] = (),
    seed: int = 0,
) -> Path:
    """Write a tiny model and return its path.

    Every output whose rank is 4 is computed from ``image_input`` (default: the first rank-4
    input) by ``fn``: ``"identity"`` = ``x * scale + bias`` (per channel), ``"negative"`` =
    ``x * -scale + bias`` (``bias`` 1.0 gives ``1 - x``), ``"noise"`` = a random 3x3 conv and a
    sigmoid. Every other output ``[N, D]`` is a random projection of the pooled image (a toy
    embedding). ``echo`` maps extra output names to inputs copied through unchanged (so a test can
    read what the model was fed). ``last_initializers`` are appended after every other initializer
    (inswapper keeps its emap last).
    """
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    image_input = image_input or next(n for n, s in inputs.items() if len(s) == 4)
    c, h = int(inputs[image_input][1]), int(inputs[image_input][2])
    out_vis = []
    for k, (name, shape) in enumerate(outputs.items()):
        out_vis.append(_vi(name, shape))
        if len(shape) == 4:
            if fn in ("identity", "negative"):
                sgn = -1.0 if fn == "negative" else 1.0
                inits += [numpy_helper.from_array(sgn * _per_channel(scale, c), f"scale{k}"),
                          numpy_helper.from_array(_per_channel(bias, c), f"bias{k}")]
                nodes += [helper.make_node("Mul", [image_input, f"scale{k}"], [f"mul{k}"]),
                          helper.make_node("Add", [f"mul{k}", f"bias{k}"], [name])]
            elif fn == "noise":
                w = (rng.standard_normal((int(shape[1]), c, 3, 3)) * 0.3).astype(np.float32)
                inits.append(numpy_helper.from_array(w, f"conv{k}"))
                nodes += [helper.make_node("Conv", [image_input, f"conv{k}"], [f"c{k}"], pads=[1, 1, 1, 1]),
                          helper.make_node("Sigmoid", [f"c{k}"], [name])]
            else:
                raise ValueError(f"unknown fn {fn!r}")
        else:
            cells = 8
            kernel = max(h // cells, 1)
            pooled = (h // kernel) ** 2 * c
            w = (rng.standard_normal((pooled, int(shape[-1]))) / np.sqrt(pooled)).astype(np.float32)
            inits.append(numpy_helper.from_array(w, f"proj{k}"))
            nodes += [helper.make_node("AveragePool", [image_input], [f"p{k}"], kernel_shape=[kernel, kernel],
                                       strides=[kernel, kernel]),
                      helper.make_node("Flatten", [f"p{k}"], [f"f{k}"], axis=1),
                      helper.make_node("MatMul", [f"f{k}", f"proj{k}"], [name])]
    for out_name, in_name in (echo or {}).items():
        nodes.append(helper.make_node("Identity", [in_name], [out_name]))
        out_vis.append(_vi(out_name, inputs[in_name]))
    for name, value in last_initializers:
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
    graph = helper.make_graph(nodes, "tiny", [_vi(n, s) for n, s in inputs.items()], out_vis, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def make_inswapper(path: Path | str, fn: str = "identity", *, batch: int | str = "N", echo_source: bool = False,
                   seed: int = 0) -> Path:
    """inswapper_128: ``target`` [N,3,128,128] (RGB 0..1), ``source`` [N,512] -> ``output``
    [N,3,128,128] (0..1); the last initializer is a 512x512 ``emap``."""
    emap = np.random.default_rng(seed + 1).standard_normal((512, 512)).astype(np.float32) / np.sqrt(512)
    return make_image_model(
        path, {"target": [batch, 3, 128, 128], "source": [batch, 512]}, {"output": [batch, 3, 128, 128]},
        fn, bias=1.0 if fn == "negative" else 0.0, echo={"source_echo": "source"} if echo_source else None,
        last_initializers=[("emap", emap)], seed=seed,
    )


def make_swapper(path: Path | str, spec, fn: str = "identity", *, batch: int | str = "N",
                 echo_source: bool = False, seed: int = 0) -> Path:
    """A tiny model for catalogue entry ``spec`` (a ``SwapperSpec``) with its I/O names and shapes.

    ``"identity"`` returns the target *as an image* (its output normalisation undoes its input
    normalisation); ``"negative"`` returns ``1 - image``; ``"noise"`` anything.
    """
    s = spec.size
    mean, std = np.asarray(spec.mean), np.asarray(spec.std)
    omean, ostd = np.asarray(spec.output_mean), np.asarray(spec.output_std)
    # image = x * std + mean; output y with y * ostd + omean = image (or 1 - image)
    if fn == "negative":
        scale, bias = std / ostd, (1.0 - mean - omean) / ostd
    else:
        scale, bias = std / ostd, (mean - omean) / ostd
    last = []
    if spec.source_kind == "embedding_emap":
        last = [("emap", np.random.default_rng(seed + 1).standard_normal((512, 512)).astype(np.float32) / np.sqrt(512))]
    return make_image_model(
        path, {spec.target_input: [batch, 3, s, s], spec.source_input: [batch, *spec.source_shape()]},
        {"output": [batch, 3, s, s]}, fn, image_input=spec.target_input, scale=scale.tolist(), bias=bias.tolist(),
        echo={"source_echo": spec.source_input} if echo_source else None, last_initializers=last, seed=seed,
    )


def make_converter(path: Path | str, *, seed: int = 0) -> Path:
    """crossface-style embedding converter: ``input`` [N,512] -> ``output`` [N,512] (random linear)."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["input", "w"], ["output"])], "converter",
                              [_vi("input", ["N", 512])], [_vi("output", ["N", 512])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Path(path)


def make_arcface(path: Path | str, *, batch: int | str = "N", seed: int = 0) -> Path:
    """ArcFace w600k_r50-like: ``input.1`` [N,3,112,112] -> ``683`` [N,512] (raw, not unit length)."""
    return make_image_model(path, {"input.1": [batch, 3, 112, 112]}, {"683": [batch, 512]}, "noise", seed=seed)
