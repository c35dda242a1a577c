"""``--fp16``: convert an ONNX model to float16 once, keeping float32 inputs and outputs.

The converted copy is cached beside the optimised-graph cache (see
``SessionFactory.create``) under a name that pins the source file's size and time, so callers
feed and read float32 arrays exactly as before. Conversion uses onnxconverter-common's
``convert_float_to_float16`` (pure Python: numpy, onnx, protobuf); ops that must stay float32
(index and shape arithmetic such as Resize scales, Range, TopK, NonMaxSuppression, and reductions
prone to overflow) are kept there, with Cast nodes around them.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import onnx

from ..errors import ModelError

# Beyond onnxconverter-common's own block list: ops whose float inputs are shapes, scales or
# indices, and reductions whose float16 sums overflow.
EXTRA_BLOCK_LIST: tuple[str, ...] = (
    "Resize", "Upsample", "Range", "TopK", "NonMaxSuppression", "RoiAlign", "CumSum",
    "ReduceSumSquare", "ReduceLogSumExp", "RandomNormalLike", "RandomUniformLike", "Einsum",
)
# Values beyond float16's range are clamped to this when weights are converted.
MAX_FINITE = 65504.0


def fp16_path(model_path: Path, cache_dir: Path) -> Path:
    """Where the float16 copy of ``model_path`` lives in ``cache_dir``: the name pins the source
    file's size and modification time, so a changed model makes a new copy."""
    st = model_path.stat()
    return cache_dir / f"{model_path.stem}.{st.st_size}-{st.st_mtime_ns}.fp16.onnx"


def convert_model(model: onnx.ModelProto, *, block_ops: tuple[str, ...] = ()) -> onnx.ModelProto:
    """A float16 copy of ``model`` whose graph inputs and outputs stay float32."""
    try:
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ModelError(
            "--fp16 needs the onnxconverter-common package (pip install onnxconverter-common)"
        ) from exc
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(EXTRA_BLOCK_LIST) | set(block_ops))
    model = _named_nodes(model)
    try:
        with warnings.catch_warnings():  # one line per tiny weight clamped to 1e-7: not news
            warnings.filterwarnings("ignore", message=".*will be truncated", category=UserWarning)
            converted = float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=block, max_finite_val=MAX_FINITE,
                check_fp16_ready=False,
            )
    except Exception as exc:  # the converter raises assorted types on unusual graphs
        raise ModelError(f"cannot convert model {model.graph.name or '?'} to float16: {exc}") from exc
    return _float32_outputs(converted, model)


def _float32_outputs(converted: onnx.ModelProto, original: onnx.ModelProto) -> onnx.ModelProto:
    """Cast back to float32 every graph output the converter left in float16 (it does so when
    the output comes straight from an op kept in float32, e.g. a final Resize)."""
    was = {o.name: o.type.tensor_type.elem_type for o in original.graph.output}
    for out in converted.graph.output:
        if out.type.tensor_type.elem_type != onnx.TensorProto.FLOAT16 or was.get(out.name) != onnx.TensorProto.FLOAT:
            continue
        half = f"{out.name}_fp16"
        for node in converted.graph.node:
            node.output[:] = [half if o == out.name else o for o in node.output]
            node.input[:] = [half if i == out.name else i for i in node.input]
        converted.graph.node.append(onnx.helper.make_node("Cast", [half], [out.name], to=onnx.TensorProto.FLOAT,
                                                          name=f"{out.name}_to_float32"))
        out.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return converted


def _named_nodes(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with a unique name on every node (a copy when any was missing): the converter
    names the Cast nodes it puts around a kept-float32 node after that node, so two unnamed ones
    (two Resize, say) would define the same tensor twice and the model would not load."""
    taken = {n.name for n in model.graph.node if n.name}
    if len(taken) == len(model.graph.node):
        return model
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
    return model


def convert_fp16(src: Path, dst: Path, *, block_ops: tuple[str, ...] = ()) -> Path:
    """Convert ``src`` to float16 (float32 I/O) and write it atomically to ``dst``; returns ``dst``.

    Raises :class:`ModelError` when the model cannot be read or converted.
    """
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors and OSError alike
        raise ModelError(f"cannot load model {Path(src).name}: {str(exc).splitlines()[0] if str(exc) else exc!r}") from exc
    converted = convert_model(model, block_ops=block_ops)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.part")
    try:
        onnx.save(converted, str(tmp))
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return dst
