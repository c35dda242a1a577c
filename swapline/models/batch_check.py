"""The proof behind the dynamic-batch step (:mod:`.batch_axis`): a batch of random inputs run at
once must give what each input run alone gives (:class:`BatchProbe`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import ModelProto, helper

from ..errors import ModelError


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
