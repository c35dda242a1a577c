"""One-time model conversions: the catalogue's recipes, run from one file to another.

The steps are plain functions over ``onnx.ModelProto`` (and one over files):

* :func:`~swapline.models.graph_steps.fold_dequantize` turns weight-only int8 quantisation
  (``DequantizeLinear`` over initializers, including opset-21 *block* quantisation) into fp32
  initializers, which every ONNX Runtime provider accepts.
* :func:`~swapline.models.graph_steps.drop_initializer_inputs` removes graph inputs that are really
  weights (old exporters listed them; SFace has 174) or that nothing reads.
* :func:`~swapline.models.batch_axis.dynamic_batch` makes dim 0 of inputs and outputs symbolic
  (``"N"``), rewrites ``Reshape`` shape constants that bake batch 1 where needed, and proves that
  a batch of 3 different inputs gives what three batch-1 runs give. The catalogue's
  ``dynamic_batch`` step is :func:`~swapline.models.batch_axis.batch_or_fixed`: a model whose
  batch cannot be freed stays at batch 1 (declared so, and marked in its metadata) and is run one
  item at a time, rather than failing the run.
* :func:`~swapline.models.graph_steps.dynamic_size` frees a detector's input height and width.
* :func:`tflite_to_onnx` converts a TFLite file with ``tflite2onnx``.
* :func:`~swapline.models.bisenet_graph.checkpoint_to_onnx` builds the BiSeNet face parser's
  graph from its PyTorch checkpoint, without torch.

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

import onnx
from onnx import ModelProto

from ..errors import ModelError
from .batch_axis import batch_or_fixed, fixed_batch_of, fresh_name
from .bisenet_graph import checkpoint_to_onnx
from .graph_steps import drop_initializer_inputs, dynamic_size, fold_dequantize

# fresh_name is re-exported: swapline.runtime.rewrite names the tensors it adds with it
__all__ = ["CONVERSIONS", "FILE_STEPS", "MODEL_STEPS", "RECIPE_VERSION", "Converted", "apply_conversions",
           "fresh_name", "run_recipe", "tflite_to_onnx"]

ModelStep = Callable[[ModelProto], ModelProto]
FileStep = Callable[[Path, Path], None]

# Bump when any conversion's output changes: cached conversions with another version are redone.
# 3: the dynamic-batch step rewrites batch-1 Reshapes, proves the result numerically and keeps a
#    model it cannot free at batch 1 (recorded as ``fixed_batch``) instead of failing.
RECIPE_VERSION = 3


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
    "bisenet_to_onnx": checkpoint_to_onnx,
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
        raise ModelError(f"a file conversion step ({', '.join(FILE_STEPS)}) can only come first")
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
