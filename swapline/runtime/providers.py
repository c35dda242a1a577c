"""ONNX Runtime execution providers by their short names (``cuda`` → ``CUDAExecutionProvider``).

Kept apart from :mod:`swapline.runtime.session` so the command line can offer the choices
without importing ONNX Runtime and ONNX (seconds on a small machine).
"""

from __future__ import annotations

PROVIDER_NAMES: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
