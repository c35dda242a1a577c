"""Engine choice for a session: execution providers, the device path, model sessions and the
video-memory plan, decided once from a :class:`~swapline.config.RuntimeConfig`.

:class:`Engine` is what a :class:`~swapline.api.Session` (or any other front end) asks *where and
how* models run; it knows nothing of which models a job uses (that is
:mod:`swapline.pipeline.processors`) nor of faces.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path
from typing import Any

from ..config import RuntimeConfig, VideoConfig
from .device import DevicePath
from .memory import (
    MAX_BATCH,
    MemoryConfig,
    free_device_memory,
    plan_batch,
    should_release,
)
from .session import ProviderOptions, SessionFactory

#: bytes of one float32 1080p frame on the device: what the detect stage's batch is planned by
FRAME_BYTES = 4 * 3 * 1920 * 1080


class Engine:
    """Providers, device path and memory plan for one :class:`RuntimeConfig`.

    ``device_path``: where frame work and neural models run (:class:`DevicePath`); None detects
    it on first use (a CUDA device seen by torch, else the CPU; silent and without importing torch
    when there is no NVIDIA driver). Safe to share between threads.
    """

    def __init__(self, runtime: RuntimeConfig, *, device_path: DevicePath | None = None) -> None:
        self.runtime = runtime
        self.factory = SessionFactory.from_config(
            runtime, ProviderOptions(fp16=runtime.fp16),
            MemoryConfig(runtime.video_memory_strategy, runtime.max_video_memory))
        self._path = device_path
        self._lock = threading.Lock()

    # -- where things run ------------------------------------------------------------------------
    @property
    def path(self) -> DevicePath:
        """Where frame work and neural models run; decided once."""
        with self._lock:
            if self._path is None:
                self._path = self._detect()
            return self._path

    def _detect(self) -> DevicePath:
        if not (Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi")):  # no NVIDIA driver:
            return DevicePath(ops="numpy", models="ort-cpu")                    # don't even import torch
        from .device import detect_device_path

        return detect_device_path(list(self.factory.providers), self.runtime.execution_device_id)

    @property
    def device(self) -> str | None:
        """The torch device for frame operations (``"cuda:0"``), or None for the CPU path."""
        where = self.path
        return where.device if where.on_device else None

    @property
    def max_batch(self) -> int:
        """The most items one model call takes: the TensorRT profile's largest batch when
        TensorRT runs the models, else :data:`~swapline.runtime.memory.MAX_BATCH`."""
        if "tensorrt" in self.factory.providers:
            return int(self.factory.options.trt_max_batch)
        return MAX_BATCH

    # -- model sessions --------------------------------------------------------------------------
    def load(self, model_path: Path, *, optimized_dir: Path | None = None) -> Any:
        """A session for the ONNX file ``model_path``: ONNX Runtime (graph-optimised and float16
        copies kept in ``optimized_dir``), or the torch backend (float16 with ``--fp16``, CUDA
        graphs on a CUDA device) when the device path runs models through torch."""
        where = self.path
        if where.models == "torch":
            from .torch_backend import TorchSession

            return TorchSession(model_path, device=where.device, fp16=self.runtime.fp16,
                                cuda_graph=where.device.startswith("cuda"))
        return self.factory.create(model_path, optimized_dir=optimized_dir)

    # -- memory ----------------------------------------------------------------------------------
    def fit_batch(self, video: VideoConfig) -> VideoConfig:
        """``video`` with the detect stage's batch size fitted to the device memory the strategy
        allows (on a CPU there is no figure and the configured size stays)."""
        free = free_device_memory(self.runtime.execution_device_id)
        if free is None:
            return video
        cap = int(self.runtime.max_video_memory * 2**30) if self.runtime.max_video_memory else None
        batch = plan_batch(free, FRAME_BYTES, self.runtime.video_memory_strategy, cap, default=video.batch_size)
        return dataclasses.replace(video, batch_size=batch)

    @property
    def release_after_job(self) -> bool:
        """Whether model sessions are dropped once a job is done (``strict``; ``moderate`` and
        ``tolerant`` keep them for the next job)."""
        return should_release(self.runtime.video_memory_strategy, stage_done=True, used_later=True)
