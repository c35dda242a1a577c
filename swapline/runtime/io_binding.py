"""IO binding: run a session with its inputs and outputs in place on a device.

``run_bound(session, feeds, device="cuda")`` copies numpy feeds to the device once, binds the
outputs there, and with ``keep_outputs_on_device=True`` returns ONNX Runtime ``OrtValue``s that
stay on the device and can be fed straight to the next model (no copy back to the host between
models). Feeds may be numpy arrays, ``OrtValue``s, or torch tensors (bound by data pointer, no
copy; they must be contiguous and on ``device``). On ``device="cpu"`` the results equal
``session.run``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

# torch dtype name -> numpy dtype (for binding torch tensors by pointer)
_TORCH_TO_NUMPY = {
    "torch.float32": np.float32, "torch.float16": np.float16, "torch.float64": np.float64,
    "torch.uint8": np.uint8, "torch.int8": np.int8, "torch.int32": np.int32, "torch.int64": np.int64,
    "torch.bool": np.bool_,
}


def _is_torch_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "data_ptr")


def bind_inputs(binding: ort.IOBinding, feeds: Mapping[str, Any], device: str, device_id: int) -> None:
    for name, value in feeds.items():
        if isinstance(value, ort.OrtValue):
            binding.bind_ortvalue_input(name, value)
        elif _is_torch_tensor(value):
            t = value.contiguous()
            dev = "cuda" if t.device.type == "cuda" else "cpu"
            idx = (t.device.index or 0) if dev == "cuda" else 0
            binding.bind_input(name, dev, idx, _TORCH_TO_NUMPY[str(t.dtype)], list(t.shape), t.data_ptr())
        else:
            arr = np.ascontiguousarray(value)
            if device == "cpu":
                binding.bind_cpu_input(name, arr)
            else:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, device, device_id))


def run_bound(session: ort.InferenceSession, feeds: Mapping[str, Any], device: str = "cpu",
              device_id: int = 0, keep_outputs_on_device: bool = False,
              output_names: Sequence[str] | None = None,
              out: Mapping[str, Any] | None = None) -> list[Any]:
    """Run ``session`` with IO binding; outputs are allocated on ``device`` (``"cpu"`` or
    ``"cuda"``). Returns numpy arrays, or ``OrtValue``s with ``keep_outputs_on_device``.

    ``out`` maps output names to preallocated torch tensors of the right shape and dtype that
    the session writes into (bound by pointer: the torch GPU path reads them with no copy);
    those outputs are returned as the given tensors.
    """
    binding = session.io_binding()
    bind_inputs(binding, feeds, device, device_id)
    names = list(output_names) if output_names is not None else [o.name for o in session.get_outputs()]
    out = out or {}
    for name in names:
        t = out.get(name)
        if t is not None:
            dev = "cuda" if t.device.type == "cuda" else "cpu"
            idx = (t.device.index or 0) if dev == "cuda" else 0
            binding.bind_output(name, dev, idx, _TORCH_TO_NUMPY[str(t.dtype)], list(t.shape), t.data_ptr())
        else:
            binding.bind_output(name, device, device_id)
    session.run_with_iobinding(binding)
    if out:
        got = binding.get_outputs()
        return [out[n] if n in out else (got[i] if keep_outputs_on_device else got[i].numpy())
                for i, n in enumerate(names)]
    if keep_outputs_on_device:
        return list(binding.get_outputs())
    return list(binding.copy_outputs_to_cpu())


def to_torch(value: ort.OrtValue) -> Any:
    """An ``OrtValue`` as a torch tensor. CPU values share memory; device values go through
    DLPack where this onnxruntime build offers it (else bind torch outputs with ``out=``)."""
    import torch

    if value.device_name().lower() == "cpu":
        return torch.from_numpy(value.numpy())
    c_value = value._get_c_value()
    if not hasattr(c_value, "to_dlpack"):
        from ..errors import ModelError

        raise ModelError("this onnxruntime build cannot export device values; pass out= tensors to run_bound")
    return torch.utils.dlpack.from_dlpack(c_value.to_dlpack())
