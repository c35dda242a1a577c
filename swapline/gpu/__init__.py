"""Device (CUDA) versions of the frame operations.

Importing this package never imports torch: :mod:`swapline.gpu.ops` does, and is imported only
when the device path is taken (a CUDA device seen by torch). The choice of where a run does its
work (:class:`DevicePath`, :func:`plan_device_path`, :func:`detect_device_path`) lives in
:mod:`swapline.runtime.device`, below the model wrappers that need it, and is re-exported here.
The CPU path (OpenCV / numpy, ONNX Runtime on the CPU) stays the default wherever there is no
device.
"""

from __future__ import annotations

from ..runtime.device import DevicePath, detect_device_path, plan_device_path

__all__ = ["DevicePath", "detect_device_path", "plan_device_path"]
