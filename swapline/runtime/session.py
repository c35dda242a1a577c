"""The one place that knows ONNX Runtime: providers with fallback, threads, graph optimisation.

Provider names are short and lower-case on the command line (``tensorrt cuda cpu``); this module
maps them to ONNX Runtime's names, keeps the user's order, skips the ones this onnxruntime build
does not have (one warning), and always ends with the CPU so a session can be made.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..config import RuntimeConfig
from ..errors import ModelError

log = logging.getLogger(__name__)

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
# When the user names nothing: the fastest the build has, best first.
DEFAULT_ORDER: tuple[str, ...] = ("tensorrt", "cuda", "rocm", "coreml", "directml", "cpu")


def available_providers() -> list[str]:
    """Short names of the providers this onnxruntime build offers, e.g. ``["cpu"]``."""
    have = set(ort.get_available_providers())
    return [short for short, full in PROVIDER_NAMES.items() if full in have]


def resolve_providers(requested: tuple[str, ...] | list[str], available: list[str]) -> tuple[list[str], list[str]]:
    """Keep the requested providers that exist, in the user's order; CPU always last.

    Returns ``(chosen, missing)`` in short names. An empty request means the best available
    order (``DEFAULT_ORDER`` filtered by what exists).
    """
    unknown = [p for p in requested if p not in PROVIDER_NAMES]
    if unknown:
        raise ModelError(
            f"unknown execution provider {unknown[0]!r}; choose from {', '.join(PROVIDER_NAMES)}"
        )
    wanted = list(requested) if requested else [p for p in DEFAULT_ORDER if p in available]
    chosen: list[str] = []
    missing: list[str] = []
    for p in wanted:
        if p in available and p not in chosen:
            chosen.append(p)
        elif p not in available:
            missing.append(p)
    if "cpu" not in chosen:
        chosen.append("cpu")
    return chosen, missing


def default_threads() -> int:
    """Intra-op threads that suit this machine: its usable cores (at least one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class SessionFactory:
    """Makes ``ort.InferenceSession`` objects the same way everywhere.

    The provider fallback warning is given once per factory, not once per model.
    """

    config: RuntimeConfig
    providers: tuple[str, ...]
    missing: tuple[str, ...]

    @classmethod
    def from_config(cls, config: RuntimeConfig) -> "SessionFactory":
        chosen, missing = resolve_providers(config.execution_providers, available_providers())
        if missing:
            warnings.warn(
                f"execution provider(s) {', '.join(missing)} not available in this onnxruntime "
                f"build; using {', '.join(chosen)}",
                RuntimeWarning,
                stacklevel=2,
            )
        return cls(config=config, providers=tuple(chosen), missing=tuple(missing))

    def provider_list(self, cache_dir: Path | None = None) -> list[Any]:
        """ONNX Runtime's provider argument: names with their options, in order."""
        out: list[Any] = []
        dev = str(self.config.execution_device_id)
        for p in self.providers:
            full = PROVIDER_NAMES[p]
            if p == "tensorrt":
                opts: dict[str, str] = {"device_id": dev, "trt_fp16_enable": "True"}
                if cache_dir is not None:
                    opts.update(
                        trt_engine_cache_enable="True",
                        trt_engine_cache_path=str(cache_dir / "trt"),
                        trt_timing_cache_enable="True",
                        trt_timing_cache_path=str(cache_dir / "trt"),
                    )
                out.append((full, opts))
            elif p in ("cuda", "rocm"):
                out.append((full, {"device_id": dev, "cudnn_conv_algo_search": "HEURISTIC"}))
            else:
                out.append(full)
        return out

    def optimized_path(self, model_path: Path, cache_dir: Path) -> Path | None:
        """Where the graph-optimised copy of ``model_path`` is cached in ``cache_dir``, or None
        when it is not cached (only CPU-only sessions: other providers fuse nodes of their own,
        and TensorRT keeps its own engine cache). The name pins the model file's size and time,
        the onnxruntime version and the providers, so any change makes a new copy."""
        if self.providers != ("cpu",):
            return None
        st = model_path.stat()
        tag = f"{st.st_size}-{st.st_mtime_ns}-ort{ort.__version__}-{'-'.join(self.providers)}"
        return cache_dir / f"{model_path.stem}.{tag}.onnx"

    def create(self, model_path: Path, *, threads: int | None = None,
               optimized_dir: Path | None = None) -> ort.InferenceSession:
        """An inference session for ``model_path`` with this factory's providers and threads.

        With ``optimized_dir`` (the model store's cache), CPU sessions keep the optimised graph
        there (see :meth:`optimized_path`) and load it directly next time.
        """
        cached = self.optimized_path(model_path, optimized_dir) if optimized_dir is not None else None
        if cached is not None and cached.exists():
            try:
                return self._session(cached, threads, optimize=False)
            except ModelError:
                cached.unlink(missing_ok=True)  # damaged or stale: optimise again
        return self._session(model_path, threads, optimize=True, save_to=cached)

    def _session(self, model_path: Path, threads: int | None, *, optimize: bool,
                 save_to: Path | None = None) -> ort.InferenceSession:
        so = ort.SessionOptions()
        so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                       else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        tmp: Path | None = None
        if save_to is not None:
            try:
                save_to.parent.mkdir(parents=True, exist_ok=True)
                tmp = save_to.with_name(f".{save_to.name}.{os.getpid()}.part")
                so.optimized_model_filepath = str(tmp)
            except OSError:
                tmp = None  # a read-only cache only costs the optimisation time
        n = threads or self.config.intra_op_threads or default_threads()
        so.intra_op_num_threads = n
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # Several sessions run one after another on the same cores: a finished session's
        # threads must not spin-wait and steal the next one's CPU (2x slower on 2 cores).
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(
                str(model_path), sess_options=so, providers=self.provider_list(model_path.parent)
            )
        except Exception as exc:  # onnxruntime raises many unrelated types
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise ModelError(f"cannot load model {model_path.name}: {str(exc).splitlines()[0]}") from exc
        if tmp is not None and save_to is not None and tmp.exists():
            os.replace(tmp, save_to)
        return session


def run(session: ort.InferenceSession, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``session`` on ``feeds`` and return every output as a numpy array."""
    return session.run(None, feeds)
