"""The Python API; the command line is a thin layer over it.

    >>> import swapline
    >>> out = swapline.swap_image("face.jpg", "photo.jpg")            # (H, W, 3) uint8 BGR
    >>> with swapline.Session(face_selector_mode="many") as s:        # keeps models loaded
    ...     src = s.load_source(["face.jpg", "face2.jpg"])
    ...     a = s.swap(src, "one.jpg").image
    ...     b = s.swap(src, "two.jpg").image
"""

from __future__ import annotations

import dataclasses
import os
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import RuntimeConfig, SwapConfig, VideoConfig
from .errors import ConfigError
from .face.analyse import FaceAnalyser
from .face.select import order_faces
from .face.types import Face
from .models.registry import full_catalog
from .models.store import ModelStore
from .pipeline.processors import ModelProcessors, Processors
from .pipeline.source import ImageLike, as_image, load_source
from .pipeline.video import JobReport, ProgressCallback, swap_still, swap_video
from .runtime.device import DevicePath
from .runtime.engine import Engine
from .runtime.timing import StageTimes
from .swap.mesh import SourceFace

__all__ = ["ImageLike", "Session", "SwapResult", "swap_image"]


@dataclass(frozen=True, eq=False)
class SwapResult:
    """The outcome of swapping one image.

    Attributes:
        image: ``(H, W, 3) uint8`` BGR result (a copy of the target when nothing was swapped).
        faces: every face found in the target, in the configured order (with embeddings only
            where identity decided the selection).
        swapped: the faces that were swapped.
        changed: ``(H, W) bool`` pixels that may differ from the target; all others are
            bit-identical.
        times_ms: milliseconds per stage: ``detect``, ``mesh``, ``embed``, ``swap``, ``blend``.
    """

    image: np.ndarray
    faces: tuple[Face, ...]
    swapped: tuple[Face, ...]
    changed: np.ndarray
    times_ms: dict[str, float]


class Session:
    """Models loaded once, reused for any number of swaps.

    Keyword options are the fields of :class:`SwapConfig` and :class:`RuntimeConfig`
    (``face_selector_mode="many"``, ``execution_providers=("cuda", "cpu")``, ...), or pass
    ``config=`` / ``runtime=`` objects directly. ``device_path`` says where frame work and neural
    models run (:class:`swapline.gpu.DevicePath`); by default it is detected on first use (a
    CUDA device seen by torch, else the CPU).

    A thin facade over three parts: the engine (:class:`~swapline.runtime.engine.Engine`:
    providers, device path, memory plan), the model processors
    (:class:`~swapline.pipeline.processors.ModelProcessors`: the neural models a config asks
    for, loaded once) and source preparation (:func:`~swapline.pipeline.source.load_source`).
    Loading is guarded by locks, so threads may share a session.
    """

    def __init__(self, config: SwapConfig | None = None, runtime: RuntimeConfig | None = None, *,
                 store: ModelStore | None = None, progress: bool = False,
                 device_path: DevicePath | None = None, **options: Any):
        swap_kw = {k: _frozen(v) for k, v in options.items() if k in _fields(SwapConfig)}
        run_kw = {k: _frozen(v) for k, v in options.items() if k in _fields(RuntimeConfig)}
        unknown = sorted(set(options) - set(swap_kw) - set(run_kw))
        if unknown:
            raise ConfigError(f"unknown option {unknown[0]!r}")
        self.config = dataclasses.replace(config or SwapConfig(), **swap_kw)
        self.runtime = dataclasses.replace(runtime or RuntimeConfig(), **run_kw)
        self.store = store or ModelStore(self.runtime, progress=progress, catalog=full_catalog(),
                                         notify=_tell if progress else None)
        self.engine = Engine(self.runtime, device_path=device_path)
        self.factory = self.engine.factory
        self.models = ModelProcessors(self.store, self.engine)
        self._analyser: FaceAnalyser | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the model sessions (they are created again on next use)."""
        with self._lock:
            self._analyser = None
        self.models.clear()

    def processors(self, config: SwapConfig, source: SourceFace | None = None) -> Processors:
        """The neural models ``config`` asks for (loaded once per session), with the swapper's
        source input prepared from ``source``.

        Raises:
            ConfigError: an unknown model name. ModelError: a model cannot be had.
        """
        return self.models.processors(config, source)

    @property
    def analyser(self) -> FaceAnalyser:
        """The face analyser, loaded on first use."""
        with self._lock:
            if self._analyser is None:
                self._analyser = FaceAnalyser.from_store(self.store, self.factory, self.config.face_detector_score)
            return self._analyser

    def analyse(self, image: ImageLike) -> list[Face]:
        """Every face of ``image`` with box, landmarks, mesh and identity."""
        return self._analyse(as_image(image, "image"), self.config)

    def load_source(self, sources: ImageLike | Sequence[ImageLike]) -> SourceFace:
        """Prepare the source identity from one or more images (the largest face of each).

        Raises:
            NoFaceError: an image has no face.
        """
        return load_source(self.analyser, sources, self.config, self.models.parser(self.config))

    def swap(self, source: SourceFace, target: ImageLike, config: SwapConfig | None = None, *,
             reference: np.ndarray | None = None) -> SwapResult:
        """Swap ``source`` into the selected faces of ``target``.

        ``reference`` is an identity embedding ``(128,)`` for ``reference`` mode; without it the
        face at ``reference_face_position`` of the target is the reference.
        """
        cfg = config or self.config
        image = as_image(target, "target")
        try:
            work = swap_still(self.analyser, source, image, cfg, reference=reference,
                              processors=self.processors(cfg, source))
        finally:
            self._after_job()
        assert work.output is not None and work.changed is not None
        return SwapResult(image=work.output, faces=tuple(order_faces(work.faces, cfg.face_selector_order)),
                          swapped=tuple(work.chosen), changed=work.changed, times_ms=dict(work.times.ms))

    def swap_video(self, source: SourceFace, target: str | os.PathLike[str], output: str | os.PathLike[str],
                   config: SwapConfig | None = None, video: VideoConfig | None = None, *,
                   reference: np.ndarray | None = None, force: bool = False, progress: bool = False,
                   on_progress: ProgressCallback | None = None,
                   cancel: Callable[[], bool] | None = None) -> JobReport:
        """Swap ``source`` into the video ``target`` and write ``output`` (audio copied, written to
        a temporary name and renamed when complete). Returns the job's figures.

        ``on_progress(done, total, busy)`` is called after each written frame; ``cancel()`` is
        asked as often, and when it says True the job stops with
        :class:`~swapline.errors.JobCancelled` and nothing is left under ``output``."""
        cfg = config or self.config
        video = self.engine.fit_batch(video or VideoConfig())
        try:
            return swap_video(self.analyser, source, Path(target), Path(output), cfg, video,
                              reference=reference, force=force, progress=progress,
                              processors=self.processors(cfg, source), on_progress=on_progress, cancel=cancel)
        finally:
            self._after_job()

    def _after_job(self) -> None:
        """``strict`` memory strategy: release every model session once a job is done (they are
        loaded again by the next job); ``moderate`` and ``tolerant`` keep them for reuse."""
        if self.engine.release_after_job:
            self.close()

    def _analyse(self, image: np.ndarray, cfg: SwapConfig, times: StageTimes | None = None, *,
                 embed: bool = True) -> list[Face]:
        return self.analyser.analyse([image], embed=embed, score_threshold=cfg.face_detector_score,
                                     detector_size=cfg.face_detector_size, times=times)[0]


def swap_image(source: ImageLike | Sequence[ImageLike], target: ImageLike, **options: Any) -> np.ndarray:
    """Swap the face of ``source`` (one image, or several of one person) into ``target``.

    Returns the result as ``(H, W, 3) uint8`` BGR. Options are :class:`SwapConfig` and
    :class:`RuntimeConfig` fields. For many images, use a :class:`Session`.
    """
    with Session(**options) as session:
        return session.swap(session.load_source(source), target).image


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _tell(line: str) -> None:
    print(f"swapline: {line}", file=sys.stderr)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
