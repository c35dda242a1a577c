"""One wrapper over a model session: input types, fixed batches and batch splitting, done once.

Every neural model wrapper (swappers, enhancers, mask models, ArcFace) feeds its session through
a :class:`ModelRunner` instead of repeating the ONNX setup:

* the inputs' names, shapes and element types are read once from the session;
* each input is cast to the type the model declares (``float16`` models get ``float16``, an
  input of unknown type is passed as given);
* the items of a call are split into pieces: a model whose batch axis is fixed (``[1, 3, S, S]``)
  takes exactly that many per call (the last piece is padded by repeating its last item, and the
  padding is dropped from the outputs), a dynamic one at most ``max_batch`` per call;
* the pieces' outputs are joined along the batch axis, and every output is checked to have one
  row per item.

The session is an ONNX Runtime ``InferenceSession``, the torch backend's
:class:`~swapline.runtime.torch_backend.TorchSession`, or anything with ``get_inputs()`` and
``run(names, feeds)`` (``get_outputs()`` is read only when needed; ``run_torch(feeds)`` for
:meth:`ModelRunner.run_torch`). Inputs named in ``shared`` (CodeFormer's fidelity weight) are not
split: every call gets them whole.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelError

#: ONNX element type strings (as ``NodeArg.type`` gives them) -> numpy types.
ONNX_TYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class TensorInfo:
    """One model input or output: ``name``, ``shape`` (ints, symbolic names or None per axis)
    and ``dtype`` (the numpy type it is declared with; None when the session does not say)."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: type[np.generic] | None

    @property
    def fixed_batch(self) -> int | None:
        """The batch axis's size when the model fixes it (``[1, 3, 512, 512]`` -> 1), else None
        (a symbolic batch, or a scalar)."""
        if not self.shape:
            return None
        first = self.shape[0]
        return first if isinstance(first, int) and first > 0 else None

    @property
    def is_fp16(self) -> bool:
        return self.dtype is np.float16


def tensor_info(arg: Any) -> TensorInfo:
    """A :class:`TensorInfo` from an ONNX Runtime ``NodeArg`` (or the torch backend's)."""
    shape = tuple(getattr(arg, "shape", None) or ())
    return TensorInfo(name=str(arg.name), shape=shape, dtype=ONNX_TYPES.get(str(getattr(arg, "type", ""))))


Feeds = Mapping[str, Any]


class ModelRunner:
    """A model session with its inputs read once; see the module docstring.

    Args:
        session: the model session (see the module docstring for what it must offer).
        name: the model's name, for error messages.
        shared: inputs fed whole to every call instead of split by item.
        max_batch: the most items a call takes for a model with a dynamic batch (None: all).
    """

    def __init__(self, session: Any, *, name: str = "model", shared: Collection[str] = (),
                 max_batch: int | None = None) -> None:
        if max_batch is not None and int(max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.session = session
        self.name = name
        self.inputs: dict[str, TensorInfo] = {}
        for arg in session.get_inputs():
            info = tensor_info(arg)
            self.inputs[info.name] = info
        unknown = [n for n in shared if n not in self.inputs]
        if unknown:
            raise ModelError(f"{name}: the model has no input {unknown[0]!r} (inputs: {', '.join(self.inputs)})")
        self.shared = frozenset(shared)
        self.max_batch = None if max_batch is None else int(max_batch)
        fixed = [i.fixed_batch for n, i in self.inputs.items() if n not in self.shared and i.fixed_batch]
        #: the batch every call must have (the model fixes it), or None
        self.fixed_batch: int | None = min(fixed) if fixed else None
        self.calls = 0  # session calls made (for tests and metrics)
        self._outputs: list[TensorInfo] | None = None

    # -- what the model declares -----------------------------------------------------------------
    @property
    def outputs(self) -> list[TensorInfo]:
        """The model's outputs (read from the session on first use)."""
        if self._outputs is None:
            self._outputs = [tensor_info(o) for o in self.session.get_outputs()]
        return self._outputs

    @property
    def batch_one(self) -> bool:
        """Whether the model's batch axis is fixed at 1 (one item per call)."""
        return self.fixed_batch == 1

    @property
    def piece(self) -> int | None:
        """Items per call: the fixed batch, else ``max_batch`` (None: all at once)."""
        return self.fixed_batch if self.fixed_batch is not None else self.max_batch

    def input(self, name: str) -> TensorInfo:
        """The input called ``name``; :class:`ModelError` naming the inputs there are if none."""
        try:
            return self.inputs[name]
        except KeyError:
            raise ModelError(f"{self.name}: the model has no input {name!r} "
                             f"(inputs: {', '.join(self.inputs)})") from None

    def cast(self, feeds: Feeds) -> dict[str, np.ndarray]:
        """``feeds`` as contiguous arrays of the types the model declares (unknown: as given)."""
        out: dict[str, np.ndarray] = {}
        for key, value in feeds.items():
            info = self.inputs.get(key)
            dtype = info.dtype if info is not None else None
            out[key] = np.ascontiguousarray(value, dtype=dtype) if dtype is not None else np.asarray(value)
        return out

    # -- running ---------------------------------------------------------------------------------
    def run(self, feeds: Feeds, outputs: Sequence[str] | None = None) -> list[np.ndarray]:
        """Run the model on ``feeds`` (numpy arrays, ``(N, ...)`` for every input not in
        ``shared``); returns the ``outputs`` asked for (None: all), each ``(N, ...)``."""
        names = list(outputs) if outputs is not None else None
        return self._pieces(self.cast(feeds), lambda f: list(self.session.run(names, f)),
                            lambda xs: np.concatenate(xs), _pad_numpy)

    def run_torch(self, feeds: Feeds) -> list[Any]:
        """:meth:`run` for the torch backend: tensors in (any device), the session's every output
        as tensors on its device (the session casts floating inputs to its own type)."""
        import torch

        return self._pieces(dict(feeds), lambda f: list(self.session.run_torch(f)),
                            lambda xs: torch.cat(xs), _pad_torch)

    def _pieces(self, feeds: dict[str, Any], call: Callable[[dict[str, Any]], list[Any]],
                concat: Callable[[list[Any]], Any], pad: Callable[[Any, int], Any]) -> list[Any]:
        """Call the model on pieces of the batch and join the outputs (see the module docstring)."""
        split = [k for k in feeds if k not in self.shared]
        sizes = {len(feeds[k]) for k in split}
        if len(sizes) > 1:
            raise ModelError(f"{self.name}: inputs of different batch sizes "
                             + ", ".join(f"{k} {len(feeds[k])}" for k in split))
        n = sizes.pop() if sizes else 1
        step = self.piece or max(n, 1)
        if not split or n == 0 or (n <= step and (self.fixed_batch is None or n == self.fixed_batch)):
            self.calls += 1
            return self._checked(call(feeds), n)
        joined: list[list[Any]] = []
        for start in range(0, n, step):
            stop = min(start + step, n)
            part = {k: (v[start:stop] if k in split else v) for k, v in feeds.items()}
            missing = (self.fixed_batch - (stop - start)) if self.fixed_batch is not None else 0
            if missing > 0:
                part = {k: (pad(v, missing) if k in split else v) for k, v in part.items()}
            self.calls += 1
            outs = self._checked(call(part), stop - start + max(missing, 0))
            if missing > 0:
                outs = [o[:stop - start] for o in outs]
            joined.append(outs)
        if len(joined) == 1:
            return joined[0]
        return [concat([piece[i] for piece in joined]) for i in range(len(joined[0]))]

    def _checked(self, outs: list[Any], n: int) -> list[Any]:
        for y in outs:
            if len(y.shape) >= 1 and y.shape[0] != n:
                raise ModelError(f"{self.name}: {n} items in, {y.shape[0]} out")
        return outs


def _pad_numpy(x: np.ndarray, missing: int) -> np.ndarray:
    """``x`` with its last row repeated ``missing`` more times."""
    return np.concatenate([x, np.repeat(x[-1:], missing, axis=0)])


def _pad_torch(x: Any, missing: int) -> Any:
    import torch

    return torch.cat([x, x[-1:].expand(missing, *x.shape[1:])])
