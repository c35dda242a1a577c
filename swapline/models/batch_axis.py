"""The dynamic-batch conversion step: free dim 0 of a graph's inputs and outputs and prove that
a batch computes what one item at a time computes (:func:`dynamic_batch`), or keep the graph at
batch 1, declared and marked so (:func:`batch_or_fixed`, the catalogue's ``dynamic_batch`` step).
Plain functions over ``onnx.ModelProto``; the proof runs in :mod:`.batch_check`.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import ModelProto, helper, numpy_helper

from ..errors import ModelError
from .batch_check import BatchProbe
from .graph_steps import subgraph_inputs

log = logging.getLogger(__name__)


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
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output} | subgraph_inputs(g)
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
