"""One-time model conversions: plain functions over ``onnx.ModelProto`` (and one over files).

* :func:`fold_dequantize` turns weight-only int8 quantisation (``DequantizeLinear`` over
  initializers, including opset-21 *block* quantisation) into fp32 initializers, which every
  ONNX Runtime provider accepts.
* :func:`drop_initializer_inputs` removes graph inputs that are really weights (old exporters
  listed them; SFace has 174) or that nothing reads.
* :func:`dynamic_batch` makes dim 0 of inputs and outputs symbolic (``"N"``), rewrites
  ``Reshape`` shape constants that bake batch 1 where needed, and proves that a batch of 3
  different inputs gives what three batch-1 runs give. The catalogue's ``dynamic_batch`` step is
  :func:`batch_or_fixed`: a model whose batch cannot be freed stays at batch 1 (declared so, and
  marked in its metadata) and is run one item at a time, rather than failing the run.
* :func:`tflite_to_onnx` converts a TFLite file with ``tflite2onnx``.

:data:`CONVERSIONS` maps the step names used in the catalogue to these functions;
:func:`run_recipe` (and :func:`apply_conversions`) runs a recipe from one file to another.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import ModelProto, helper, numpy_helper

from ..errors import ModelError

ModelStep = Callable[[ModelProto], ModelProto]
FileStep = Callable[[Path, Path], None]

log = logging.getLogger(__name__)

# Bump when any conversion's output changes: cached conversions with another version are redone.
# 3: the dynamic-batch step rewrites batch-1 Reshapes, proves the result numerically and keeps a
#    model it cannot free at batch 1 (recorded as ``fixed_batch``) instead of failing.
RECIPE_VERSION = 3


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
    """Make dim 0 of every graph input and output ``"N"`` and prove the result computes, for a
    batch of ``check_batch`` different random inputs, what ``check_batch`` runs of the original
    at batch 1 compute (within float tolerance) -- not only that the output shapes follow.

    Graphs that bake batch 1 into a ``Reshape`` (``[1, C, 1, 1]`` after a Gemm, common in
    exported models) are tried again with the leading 1 of such shape constants rewritten: to 0
    (copy the input's batch) and, failing that, to -1 (see :func:`free_reshape_batch`). Stale
    ``value_info`` shapes (inferred for batch 1) are cleared. ``check_batch=0`` skips the proof.

    Raises:
        ModelError: no variant passes ("dynamic batch: the model does not run with batch 3 ...",
            or gives other numbers than its batch-1 runs). :func:`batch_or_fixed` keeps such a
            model at batch 1 instead.
    """
    free = free_batch_dims(model)
    if not check_batch:
        return free
    probe = BatchProbe(free, check_batch)
    last: ModelError | None = None
    for lead in (None, 0, -1):
        candidate = free if lead is None else free_reshape_batch(free, lead)
        if candidate is None:
            continue
        try:
            probe.check(candidate)
            return candidate
        except ModelError as exc:
            last = exc  # the most rewritten variant's problem is the one worth telling
    assert last is not None
    raise last


def batch_or_fixed(model: ModelProto) -> ModelProto:
    """:func:`dynamic_batch`, or -- when the batch cannot be freed -- the model with its batch
    declared fixed at 1 (so every runner calls it one item at a time) and the metadata entry
    :data:`FIXED_BATCH_KEY` saying so. A conversion never fails a run that batch 1 could do."""
    try:
        return dynamic_batch(model)
    except ModelError as exc:
        log.info("%s; keeping the model at batch 1 (fixed in the graph)", exc)
        return fix_batch_one(model)


#: ONNX metadata key set on a model whose batch stays fixed at 1 after the dynamic-batch step
FIXED_BATCH_KEY = "swapline.fixed_batch"


def fix_batch_one(model: ModelProto) -> ModelProto:
    """``model`` with dim 0 of every graph input and output declared 1 and :data:`FIXED_BATCH_KEY`
    set to ``"1"`` in its metadata. Returns a new model."""
    out = ModelProto()
    out.CopyFrom(model)
    g = out.graph
    inits = {t.name for t in g.initializer}
    for vi in list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.name in inits or len(dims) == 0:
            continue
        dims[0].Clear()
        dims[0].dim_value = 1
    del g.value_info[:]
    props = {p.key: p.value for p in out.metadata_props}
    helper.set_model_props(out, {**props, FIXED_BATCH_KEY: "1"})
    return out


def fixed_batch_of(model: ModelProto) -> int | None:
    """The batch a conversion left fixed in ``model`` (:data:`FIXED_BATCH_KEY`), or None."""
    for prop in model.metadata_props:
        if prop.key == FIXED_BATCH_KEY:
            return int(prop.value)
    return None


def free_batch_dims(model: ModelProto) -> ModelProto:
    """``model`` with dim 0 of every graph input and output declared ``"N"`` (and stale
    ``value_info`` cleared): the declaration only, nothing proven. Returns a new model."""
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
    return out


def free_reshape_batch(model: ModelProto, lead: int) -> ModelProto | None:
    """``model`` with each ``Reshape`` whose constant target shape starts with a 1 (and has more
    than one axis) given ``lead`` there instead: 0 copies the input's first axis (the batch, when
    it is one), -1 lets the size follow. A shape that already has a -1 only takes 0; under
    ``allowzero=1`` only -1 works. Shapes from ``Constant`` nodes and initializers are rewritten
    (a new initializer each, so other readers keep theirs); computed shapes are left alone.
    The new shapes go before every other initializer, so the last one stays last (inswapper's
    ``emap`` is read from there). Returns a new model, or None when no Reshape could be rewritten."""
    if lead not in (0, -1):
        raise ValueError("lead must be 0 or -1")
    out = ModelProto()
    out.CopyFrom(model)
    g = out.graph
    consts = _shape_constants(g)
    names = {t.name for t in g.initializer} | {o for n in g.node for o in n.output}
    replaced: set[str] = set()
    added: list[onnx.TensorProto] = []
    changed = 0
    for node in g.node:
        if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        shape = consts.get(node.input[1])
        if shape is None or shape.ndim != 1 or len(shape) < 2 or shape[0] != 1:
            continue
        allowzero = any(a.name == "allowzero" and a.i == 1 for a in node.attribute)
        has_free = bool((shape[1:] == -1).any())
        value: int | None = lead
        if value == 0 and allowzero:
            value = -1
        if value == -1 and has_free:
            value = 0 if not allowzero else None
        if value is None:
            continue
        new = shape.copy()
        new[0] = value
        name = fresh_name(f"{node.input[1]}__batch", names)
        added.append(numpy_helper.from_array(new.astype(np.int64), name))
        replaced.add(node.input[1])
        node.input[1] = name
        changed += 1
    if not changed:
        return None
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output} | _subgraph_inputs(g)
    keep = [t for t in g.initializer if t.name in read or t.name not in replaced]
    del g.initializer[:]
    g.initializer.extend(added + keep)  # new ones first: the last initializer (inswapper's emap) stays last
    return out


def _shape_constants(g: onnx.GraphProto) -> dict[str, np.ndarray]:
    """int64 1-D constants of ``g``: initializers and ``Constant`` node outputs, by name."""
    found: dict[str, np.ndarray] = {}
    for t in g.initializer:
        if t.data_type == onnx.TensorProto.INT64 and len(t.dims) == 1:
            found[t.name] = numpy_helper.to_array(t)
    for node in g.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == onnx.TensorProto.INT64 and len(a.t.dims) == 1:
                    found[node.output[0]] = numpy_helper.to_array(a.t)
                elif a.name == "value_ints":
                    found[node.output[0]] = np.asarray(list(a.ints), np.int64)
    return found


def fresh_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base2``, ``base3`` … when taken in a graph's names; the result is added to
    ``taken``."""
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}{k}"
    taken.add(name)
    return name


#: the size the batch check gives free spatial axes (axis 2 on) of its inputs: a multiple of 32,
#: like a small image, so strided models run; free axis 1 gets 1
FREE_SIZE = 64


class BatchProbe:
    """Random inputs for ``batch`` items and what ``original`` gives for each alone (a model whose
    batch axis is declared free, so that the candidate that only declares it needs no second
    session).

    :meth:`check` runs a candidate on the whole batch and compares every output with the
    original's batch-1 runs: equal shapes with one row per item, values within float tolerance
    (float16 outputs: 1e-2 relative; float32: 1e-4), other types exactly.
    """

    def __init__(self, original: ModelProto, batch: int) -> None:
        self.batch = batch
        self._feeds = self._inputs(original, batch)
        self._original = original
        try:
            self._reference = _session(original)
            per_item = [self._reference.run(None, {k: v[i:i + 1] for k, v in self._feeds.items()})
                        for i in range(batch)]
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"dynamic batch: the model does not run at batch 1 for the check: {exc}"
                             .replace("\n", " ")) from exc
        self.expected = [np.concatenate([run[k] for run in per_item]) for k in range(len(per_item[0]))]

    @staticmethod
    def _inputs(model: ModelProto, batch: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(0)
        inits = {t.name for t in model.graph.initializer}
        feeds: dict[str, np.ndarray] = {}
        for vi in model.graph.input:
            if vi.name in inits:
                continue
            tt = vi.type.tensor_type
            dims = tt.shape.dim
            shape = [batch] + [d.dim_value if d.HasField("dim_value") and d.dim_value > 0
                               else (FREE_SIZE if axis >= 2 else 1)
                               for axis, d in enumerate(dims) if axis > 0]
            dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
            feeds[vi.name] = rng.random(shape).astype(dtype)
        return feeds

    def check(self, candidate: ModelProto) -> None:
        """Raise :class:`ModelError` unless ``candidate`` reproduces the batch-1 runs at once."""
        batch = self.batch
        try:
            session = self._reference if candidate is self._original else _session(candidate)
            outs = session.run(None, self._feeds)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"dynamic batch: the model does not run with batch {batch}: {exc}"
                             .replace("\n", " ")) from exc
        bad = [o.shape for o in outs if o.ndim == 0 or o.shape[0] != batch]
        if bad:
            raise ModelError(f"dynamic batch: outputs {bad} do not follow batch {batch}")
        for got, want in zip(outs, self.expected, strict=True):
            if got.shape != want.shape or not _close(got, want):
                raise ModelError(f"dynamic batch: with batch {batch} the model computes other numbers than "
                                 f"{batch} runs at batch 1 (it mixes the items)")


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    if not np.issubdtype(want.dtype, np.floating):
        return bool(np.array_equal(got, want))
    tol = 1e-2 if want.dtype == np.float16 else 1e-4
    a, b = got.astype(np.float64), want.astype(np.float64)
    finite = np.isfinite(b)
    scale = float(np.abs(b[finite]).max()) if finite.any() else 1.0
    return bool(np.allclose(a, b, rtol=tol, atol=tol * max(scale, 1.0), equal_nan=True))


def _session(model: ModelProto) -> Any:
    """A CPU ``onnxruntime.InferenceSession`` over ``model``'s bytes."""
    import onnxruntime as ort  # local: conversions run once, the import is not free

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 4  # a variant that fails is expected here: no error lines on stderr
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


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
    "dynamic_batch": batch_or_fixed,  # the catalogue's step: batch 1 stays when it cannot be freed
    "dynamic_size": dynamic_size,
}
# Steps that work on files (source path, ONNX path) rather than on a loaded ModelProto.
FILE_STEPS: dict[str, FileStep] = {
    "tflite_to_onnx": tflite_to_onnx,
}
CONVERSIONS: dict[str, ModelStep | FileStep] = {**MODEL_STEPS, **FILE_STEPS}


@dataclass(frozen=True)
class Converted:
    """What :func:`run_recipe` wrote: the sha256 of the bytes (hashed before they reached the
    disk) and the batch the graph stays fixed at when the dynamic-batch step could not free it."""

    sha256: str
    fixed_batch: int | None = None


def run_recipe(src: Path, dst: Path, steps: Sequence[str]) -> Converted:
    """Run ``steps`` (names in :data:`CONVERSIONS`) on ``src`` and write the result to ``dst``.

    A file step may only come first (it turns a non-ONNX file into ONNX). The result is checked
    with ``onnx.checker`` and written to a temporary name first, then renamed onto ``dst``. The
    returned sha256 lets the caller prove (by hashing ``dst``) that the file holds the bytes and
    record it in the manifest (:mod:`swapline.models.manifest`), with ``fixed_batch``.
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
    return Converted(hashlib.sha256(data).hexdigest(), fixed_batch_of(model))


def apply_conversions(src: Path, dst: Path, steps: Sequence[str]) -> str:
    """:func:`run_recipe`, returning only the sha256 of the bytes written."""
    return run_recipe(src, dst, steps).sha256
