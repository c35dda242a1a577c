"""Exact graph rewrites made before ONNX Runtime optimises a model for the CPU.

One today: ``PRelu(x, slope)`` with a constant per-channel slope becomes
``Relu(x) + Min(x, 0) · slope``. ONNX Runtime's CPU ``PRelu`` broadcasts a ``(1, C, 1, 1)``
slope element by element and is not part of its blocked (NCHWc) layout; the four plain
element-wise kernels are: FaceMesh's 23 PRelu layers took ≈ 2.2 of its 5 ms, the rewritten model
runs in ≈ 3.1 ms (one thread). The result is the same float for float: where ``x ≥ 0`` it is
``x + 0·slope = x``, where ``x < 0`` it is ``0 + x·slope``, the product PRelu itself computes
(only the sign of a zero may differ).

Applied to CPU-only sessions (:mod:`.session`), whose optimised copy is cached: the copy's name
carries :data:`REWRITE_VERSION`, so a change here makes new copies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..models.convert import fresh_name

__all__ = ["REWRITE_VERSION", "cpu_rewritten", "split_prelu"]

#: bump when a rewrite's output changes (it names the cached optimised copies)
REWRITE_VERSION = "1"
#: the default-domain opset from which Min, Mul and Add broadcast as PRelu does
_MIN_OPSET = 8


def split_prelu(model: onnx.ModelProto) -> int:
    """Replace, in place, every ``PRelu`` of ``model``'s main graph whose slope is an
    initializer by ``Relu(x) + Min(x, 0) · slope``; returns how many were replaced (0 for
    opsets before 8, where Min does not broadcast)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < _MIN_OPSET:
        return 0
    graph = model.graph
    slopes = {init.name: init for init in graph.initializer}
    taken = {name for node in graph.node for name in (*node.input, *node.output)} | set(slopes)
    zeros: dict[int, str] = {}  # one zero constant per element type
    nodes: list[onnx.NodeProto] = []
    replaced = 0
    for node in graph.node:
        slope = slopes.get(node.input[1]) if node.op_type == "PRelu" and len(node.input) == 2 else None
        if slope is None:
            nodes.append(node)
            continue
        if slope.data_type not in zeros:
            name = fresh_name(f"prelu_zero_{slope.data_type}", taken)
            dtype = helper.tensor_dtype_to_np_dtype(slope.data_type)
            graph.initializer.append(numpy_helper.from_array(np.zeros((), dtype), name))
            zeros[slope.data_type] = name
        x, (y,) = node.input[0], node.output
        pos, neg, scaled = (fresh_name(f"{y}/{part}", taken) for part in ("relu", "min", "scaled"))
        nodes += [helper.make_node("Relu", [x], [pos]),
                  helper.make_node("Min", [x, zeros[slope.data_type]], [neg]),
                  helper.make_node("Mul", [neg, node.input[1]], [scaled]),
                  helper.make_node("Add", [pos, scaled], [y], name=node.name)]
        replaced += 1
    if replaced:
        del graph.node[:]
        graph.node.extend(nodes)
    return replaced


def cpu_rewritten(model_path: Path) -> bytes | None:
    """The serialised model at ``model_path`` after the rewrites, or None when none applies
    (also for models whose weights lie in external files: they are loaded as they are)."""
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except Exception:  # noqa: BLE001 - ONNX Runtime gives the real error when it loads the file
        return None
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer):
        return None
    if not split_prelu(model):
        return None
    return model.SerializeToString()
