"""What ``swapline doctor`` prints about the runtime: providers, devices, codecs, free memory."""

from __future__ import annotations

import sys
from typing import Any


def runtime_report(requested: tuple[str, ...] = (), device_id: int = 0, *, probe_codecs: bool = True) -> dict[str, Any]:
    """A plain dict (JSON-ready) describing this machine's inference setup.

    Keys: ``onnxruntime`` (version), ``providers_available`` / ``providers_used`` /
    ``providers_missing`` (short names, for ``requested``), ``torch`` (version or None),
    ``onnx2torch`` (bool), ``cuda_devices`` (``[{"index", "name", "free_bytes", "total_bytes"}]``
    from torch if it is already imported or installed, else ``nvidia-smi``; empty without any),
    ``free_device_memory`` (bytes on ``device_id`` or None), ``codecs`` (``{"nvenc", "nvdec"}``,
    None when not probed), ``device_path`` (see :func:`swapline.gpu.plan_device_path`).
    """
    import onnxruntime as ort

    from ..runtime.memory import free_device_memory, nvidia_smi_gpus
    from ..runtime.session import available_providers, resolve_providers
    from ..runtime.torch_backend import onnx2torch_available, torch_available
    from . import detect_device_path

    avail = available_providers()
    used, missing = resolve_providers(requested, avail)
    report: dict[str, Any] = {
        "onnxruntime": ort.__version__,
        "providers_available": avail,
        "providers_used": used,
        "providers_missing": missing,
        "torch": None,
        "onnx2torch": onnx2torch_available(),
        "cuda_devices": [],
    }
    devices: list[dict[str, Any]] = []
    if torch_available():
        try:
            import torch

            report["torch"] = torch.__version__
            if torch.cuda.is_available():
                for i in range(torch.cuda.device_count()):
                    free, total = torch.cuda.mem_get_info(i)
                    devices.append({"index": i, "name": torch.cuda.get_device_name(i),
                                    "free_bytes": int(free), "total_bytes": int(total)})
        except Exception:  # noqa: BLE001 - a broken torch reads as "no torch devices"
            devices = []
    if not devices:
        for i, gpu in enumerate(nvidia_smi_gpus() or []):
            devices.append({"index": i, **gpu})
    report["cuda_devices"] = devices
    report["free_device_memory"] = devices[device_id]["free_bytes"] if device_id < len(devices) else free_device_memory(device_id)
    codecs = None
    if probe_codecs:
        try:
            from ..video.probe import probe_hardware

            codecs = probe_hardware()
        except Exception:  # noqa: BLE001 - PyAV missing or broken: report unknown
            codecs = None
    report["codecs"] = codecs
    path = detect_device_path(used, device_id)
    report["device_path"] = {"ops": path.ops, "models": path.models, "device": path.device}
    report["python"] = sys.version.split()[0]
    return report
