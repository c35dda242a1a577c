"""One-time model conversions: plain functions over ``onnx.ModelProto`` (and one over files).

* :func:`fold_dequantize` turns weight-only int8 quantisation (``DequantizeLinear`` over
  initializers, including opset-21 *block* quantisation) into fp32 initializers, which every
  ONNX Runtime provider accepts.
* :func:`drop_initializer_inputs` removes graph inputs that are really weights (old exporters
  listed them; SFace has 174) or that nothing reads.
* :func:`dynamic_batch` makes dim 0 of inputs and outputs symbolic (``"N"``) and checks the
  model really runs with a batch of 3.
* :func:`tflite_to_onnx` converts a TFLite file with ``tflite2onnx``.

:data:`CONVERSIONS` maps the step names used in the catalogue to these functions;
:func:`apply_conversions` runs a recipe from one file to another.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import ModelProto, helper, numpy_helper

from ..errors import ModelError

ModelStep = Callable[[ModelProto], ModelProto]
FileStep = Callable[[Path, Path], None]

# Bump when any conversion's output changes: cached conversions with another version are redone.
RECIPE_VERSION = 2


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int,
                block_size: int) -> np.ndarray:
    """``(x - zero) * scale`` with ONNX's broadcasting rules for DequantizeLinear.

    Per-tensor: ``scale`` is a scalar. Per-axis: ``scale`` has shape ``[x.shape[axis]]``.
    Blocked (opset 21): ``scale`` has ``x``'s shape except ``ceil(x.shape[axis] / block_size)``
    on ``axis``; each scale covers ``block_size`` consecutive elements along ``axis``.
    Returns float32 with ``x``'s shape.
    """
    xf = x.astype(np.float32)
    s = scale.astype(np.float32)
    z = np.zeros_like(s) if zero is None else zero.astype(np.float32)
    if s.size == 1 and block_size == 0:
        return ((xf - z.reshape(())) * s.reshape(())).astype(np.float32)
    axis = axis % max(xf.ndim, 1)
    if block_size:
        if s.ndim != xf.ndim:
            raise ModelError(f"blocked DequantizeLinear: scale rank {s.ndim} != input rank {xf.ndim}")
        s = np.repeat(s, block_size, axis=axis)
        z = np.repeat(z, block_size, axis=axis)
        cut = [slice(None)] * xf.ndim
        cut[axis] = slice(0, xf.shape[axis])
        s, z = s[tuple(cut)], z[tuple(cut)]
        if s.shape != xf.shape:
            raise ModelError(f"blocked DequantizeLinear: scale shape {scale.shape} does not cover {x.shape}")
        return ((xf - z) * s).astype(np.float32)
    shape = [1] * xf.ndim
    shape[axis] = -1
    return ((xf - z.reshape(shape)) * s.reshape(shape)).astype(np.float32)


def fold_dequantize(model: ModelProto) -> ModelProto:
    """Replace every ``DequantizeLinear`` whose inputs are all initializers by an fp32 initializer.

    Honours the ``axis`` and ``block_size`` attributes (opset 21 block quantisation). Initializers
    left unused are removed, and so are graph inputs that shadow removed or folded tensors.
    Returns a new model; ``model`` is not changed.
    """
    out = ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name: t for t in g.initializer}
    keep_nodes = []
    folded: list[onnx.TensorProto] = []
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.domain in ("", "ai.onnx") and all(
            i in inits for i in node.input if i
        ):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            x, scale = (numpy_helper.to_array(inits[i]) for i in node.input[:2])
            zero = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 and node.input[2] else None
            y = _dequantize(x, scale, zero, int(attrs.get("axis", 1)), int(attrs.get("block_size", 0)))
            folded.append(numpy_helper.from_array(y, node.output[0]))
        else:
            keep_nodes.append(node)
    del g.node[:]
    g.node.extend(keep_nodes)
    g.initializer.extend(folded)
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    used |= _subgraph_inputs(g)
    keep_inits = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep_inits)
    names = {t.name for t in g.initializer}
    keep_inputs = [i for i in g.input if i.name not in names]
    del g.input[:]
    g.input.extend(keep_inputs)
    # value_info of tensors that became initializers may carry int8 types: drop them.
    keep_vi = [v for v in g.value_info if v.name not in names]
    del g.value_info[:]
    g.value_info.extend(keep_vi)
    return out


def _subgraph_inputs(g: onnx.GraphProto) -> set[str]:
    """Names read inside subgraphs (If/Loop bodies) of ``g``'s nodes."""
    names: set[str] = set()
    for node in g.node:
        for a in node.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sub in subs:
                names |= {i for n in sub.node for i in n.input}
                names |= _subgraph_inputs(sub)
    return names


def drop_initializer_inputs(model: ModelProto) -> ModelProto:
    """Remove graph inputs that are initializers, are produced by a node, or that nothing reads.

    SFace lists its 174 weights as inputs (an old exporter's habit); ONNX Runtime then either
    treats them as overridable or asks for them. Returns a new model.
    """
    out = ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name for t in g.initializer}
    produced = {o for n in g.node for o in n.output}
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output} | _subgraph_inputs(g)
    keep = [i for i in g.input if i.name not in inits and i.name not in produced and i.name in read]
    del g.input[:]
    g.input.extend(keep)
    return out


def dynamic_batch(model: ModelProto, *, check_batch: int = 3) -> ModelProto:
    """Make dim 0 of every graph input and output ``"N"`` and prove it runs with ``check_batch``.

    Stale ``value_info`` shapes (inferred for batch 1) are cleared. The check feeds random
    inputs of shape ``[check_batch, ...]`` to ONNX Runtime (CPU) and requires every output's
    dim 0 to be ``check_batch``; :class:`ModelError` otherwise (YuNet, for one, has Reshapes with
    batch 1 baked in and must stay at batch 1). Returns a new model.
    """
    out = ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name for t in g.initializer}
    for vi in list(g.input) + list(g.output):
        if vi.name in inits:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) == 0:
            raise ModelError(f"dynamic batch: {vi.name!r} has no shape")
        dims[0].Clear()
        dims[0].dim_param = "N"
    del g.value_info[:]
    if check_batch:
        _check_runs_with_batch(out, check_batch)
    return out


def dynamic_size(model: ModelProto) -> ModelProto:
    """Make the height and width of the (single, NCHW) image input free, and every output's
    anchor axis (dim 1) with them; prove it runs at a non-square size.

    YuNet's graph is size-agnostic (its Reshapes use -1) but declares 640 × 640; freeing the
    declaration lets a 16:9 frame be letterboxed to 640 × 384 instead of 640 × 640.
    Returns a new model.
    """
    out = ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name for t in g.initializer}
    inputs = [vi for vi in g.input if vi.name not in inits]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise ModelError("dynamic size: the model must have one NCHW image input")
    dims = inputs[0].type.tensor_type.shape.dim
    for i, name in ((2, "H"), (3, "W")):
        dims[i].Clear()
        dims[i].dim_param = name
    for vi in g.output:
        odims = vi.type.tensor_type.shape.dim
        if len(odims) >= 2:
            odims[1].Clear()
            odims[1].dim_param = "anchors"
    del g.value_info[:]
    _check_runs(out, {inputs[0].name: (1, 3, 96, 160)})
    return out


def _check_runs(model: ModelProto, shapes: dict[str, tuple[int, ...]]) -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        sess.run(None, {k: np.random.default_rng(0).random(v).astype(np.float32) for k, v in shapes.items()})
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"dynamic size: the model does not run at {shapes}: {exc}".replace("\n", " ")) from exc


def _check_runs_with_batch(model: ModelProto, batch: int) -> None:
    import onnxruntime as ort  # local: conversions run once, the import is not free

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feed = {}
        for inp in sess.get_inputs():
            shape = [batch] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
            dtype = helper.tensor_dtype_to_np_dtype(
                next(i for i in model.graph.input if i.name == inp.name).type.tensor_type.elem_type
            )
            feed[inp.name] = rng.random(shape).astype(dtype)
        outs = sess.run(None, feed)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelError(f"dynamic batch: the model does not run with batch {batch}: {exc}".replace("\n", " ")) from exc
    bad = [o.shape for o in outs if o.ndim == 0 or o.shape[0] != batch]
    if bad:
        raise ModelError(f"dynamic batch: outputs {bad} do not follow batch {batch}")


def tflite_to_onnx(tflite_path: Path | str, onnx_path: Path | str) -> None:
    """Convert a TFLite model to ONNX with ``tflite2onnx`` (NHWC inputs become NCHW)."""
    try:
        import tflite2onnx
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise ModelError("converting TFLite models needs tflite2onnx: pip install tflite2onnx==0.4.1") from exc
    # tflite2onnx logs a warning per fp16 tensor and an INFO line per file: keep them out of sight
    tlog = logging.getLogger("tflite2onnx")
    level = tlog.level
    tlog.setLevel(logging.ERROR)
    try:
        tflite2onnx.convert(str(tflite_path), str(onnx_path))
    except Exception as exc:  # tflite2onnx raises plain exceptions of many kinds
        raise ModelError(f"tflite2onnx could not convert {Path(tflite_path).name}: {exc}".replace("\n", " ")) from exc
    finally:
        tlog.setLevel(level)


MODEL_STEPS: dict[str, ModelStep] = {
    "fold_dequantize": fold_dequantize,
    "drop_initializer_inputs": drop_initializer_inputs,
    "dynamic_batch": dynamic_batch,
    "dynamic_size": dynamic_size,
}
# Steps that work on files (source path, ONNX path) rather than on a loaded ModelProto.
FILE_STEPS: dict[str, FileStep] = {
    "tflite_to_onnx": tflite_to_onnx,
}
CONVERSIONS: dict[str, ModelStep | FileStep] = {**MODEL_STEPS, **FILE_STEPS}


def apply_conversions(src: Path, dst: Path, steps: Sequence[str]) -> str:
    """Run ``steps`` (names in :data:`CONVERSIONS`) on ``src`` and write the result to ``dst``.

    A file step may only come first (it turns a non-ONNX file into ONNX). The result is checked
    with ``onnx.checker`` and written to a temporary name first, then renamed onto ``dst``.
    Returns the sha256 of the bytes written, hashed before they reached the disk, so the caller
    can prove (by hashing ``dst``) that the file holds them and record it in the manifest
    (:mod:`swapline.models.manifest`).
    """
    unknown = [s for s in steps if s not in CONVERSIONS]
    if unknown:
        raise ModelError(f"unknown conversion step {unknown[0]!r}; known: {', '.join(CONVERSIONS)}")
    if any(s in FILE_STEPS for s in steps[1:]):
        raise ModelError("a file conversion step (tflite_to_onnx) can only come first")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix=".convert-") as tmp:
        current = src
        rest = list(steps)
        if rest and rest[0] in FILE_STEPS:
            current = Path(tmp) / "step0.onnx"
            FILE_STEPS[rest.pop(0)](src, current)
        model = onnx.load(str(current))
        for name in rest:
            model = MODEL_STEPS[name](model)
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError as exc:
            raise ModelError(f"converted {src.name} is not a valid ONNX model: {exc}".replace("\n", " ")) from exc
        data = model.SerializeToString()
        out = Path(tmp) / "result.onnx"
        out.write_bytes(data)
        os.replace(out, dst)
    return hashlib.sha256(data).hexdigest()
