"""Where a run does its work: frame operations on the CPU (numpy) or a CUDA device (torch), and
models through ONNX Runtime (CPU or GPU provider) or the torch backend.

:func:`plan_device_path` is a pure function of what exists; :func:`detect_device_path` asks this
machine (importing torch only when it is installed). :mod:`swapline.gpu` re-exports these names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DevicePath:
    """Where a run does its work.

    ``ops``: ``"torch"`` (frames stay on the device: NV12->RGB, warp, masks, colour, blend, paste
    in :mod:`swapline.gpu.ops`) or ``"numpy"`` (the CPU path). ``models``: ``"ort-device"``
    (onnxruntime-gpu with IO binding), ``"torch"`` (:class:`~swapline.runtime.torch_backend.TorchSession`)
    or ``"ort-cpu"``. ``device``: the torch device string for ``ops == "torch"``.
    """

    ops: str
    models: str
    device: str = "cpu"

    @property
    def on_device(self) -> bool:
        return self.ops == "torch"


def plan_device_path(*, cuda_device: bool, torch_ok: bool, onnx2torch_ok: bool,
                     ort_providers: list[str] | tuple[str, ...], device_id: int = 0,
                     want: str = "auto") -> DevicePath:
    """Decide the path from what exists (a pure function).

    ``want``: ``"auto"`` (the device path when a CUDA device and torch are there), ``"cpu"``
    (force the CPU path), ``"torch"`` (models through the torch backend even if onnxruntime has
    a GPU provider). ``ort_providers``: the session factory's chosen short names.
    """
    if want not in ("auto", "cpu", "torch"):
        raise ValueError(f"device path {want!r}: use auto, cpu or torch")
    ort_gpu = any(p in ("tensorrt", "cuda") for p in ort_providers)
    device = cuda_device and torch_ok and want != "cpu"
    if not device:
        return DevicePath(ops="numpy", models="ort-device" if ort_gpu and want != "cpu" else "ort-cpu")
    if want == "torch" and onnx2torch_ok:
        models = "torch"
    elif ort_gpu:
        models = "ort-device"
    elif onnx2torch_ok:
        models = "torch"
    else:
        models = "ort-cpu"
    return DevicePath(ops="torch", models=models, device=f"cuda:{int(device_id)}")


def detect_device_path(ort_providers: list[str] | tuple[str, ...], device_id: int = 0,
                       want: str = "auto") -> DevicePath:
    """:func:`plan_device_path` for this machine (imports torch only when it is installed)."""
    from .torch_backend import cuda_available, onnx2torch_available, torch_available

    torch_ok = torch_available()
    return plan_device_path(cuda_device=torch_ok and want != "cpu" and cuda_available(), torch_ok=torch_ok,
                            onnx2torch_ok=onnx2torch_available(), ort_providers=ort_providers,
                            device_id=device_id, want=want)
