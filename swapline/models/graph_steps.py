"""Conversion steps that rewrite a graph without touching its batch axis: plain functions over
``onnx.ModelProto``.

* :func:`fold_dequantize` turns weight-only int8 quantisation (``DequantizeLinear`` over
  initializers, including opset-21 *block* quantisation) into fp32 initializers, which every
  ONNX Runtime provider accepts.
* :func:`drop_initializer_inputs` removes graph inputs that are really weights (old exporters
  listed them; SFace has 174) or that nothing reads.
* :func:`dynamic_size` frees the height and width of a detector's image input.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import ModelProto, helper, numpy_helper

from ..errors import ModelError


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
    used |= subgraph_inputs(g)
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


def subgraph_inputs(g: onnx.GraphProto) -> set[str]:
    """Names read inside subgraphs (If/Loop bodies) of ``g``'s nodes."""
    names: set[str] = set()
    for node in g.node:
        for a in node.attribute:
            subs = [a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)
            for sub in subs:
                names |= {i for n in sub.node for i in n.input}
                names |= subgraph_inputs(sub)
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
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output} | subgraph_inputs(g)
    keep = [i for i in g.input if i.name not in inits and i.name not in produced and i.name in read]
    del g.input[:]
    g.input.extend(keep)
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
