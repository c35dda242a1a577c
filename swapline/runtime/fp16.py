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
    try:
        with warnings.catch_warnings():  # one line per tiny weight clamped to 1e-7: not news
            warnings.filterwarnings("ignore", message=".*will be truncated", category=UserWarning)
            return float16.convert_float_to_float16(
                model, keep_io_types=True, op_block_list=block, max_finite_val=MAX_FINITE,
                check_fp16_ready=False,
            )
    except Exception as exc:  # the converter raises assorted types on unusual graphs
        raise ModelError(f"cannot convert model {model.graph.name or '?'} to float16: {exc}") from exc


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
