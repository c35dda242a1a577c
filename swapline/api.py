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
import shutil
import sys
import weakref
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import RuntimeConfig, SwapConfig, VideoConfig
from .errors import ConfigError, NoFaceError
from .blend.mask_models import OcclusionMasker, RegionMasker
from .enhance.face_enhancer import FaceEnhancer
from .face.align import kps_from_mesh
from .face.analyse import FaceAnalyser
from .face.arcface import ArcFace
from .face.select import order_faces
from .face.types import Face
from .gpu import DevicePath
from .models.enhance_catalog import ENHANCERS, MASKERS, MaskerSpec
from .models.neural_catalog import SWAPPERS, SwapperSpec
from .models.registry import full_catalog, model_file
from .models.store import ModelStore
from .pipeline.frame import Processors
from .pipeline.video import JobReport, ProgressCallback, swap_still, swap_video
from .pipeline.image import read_image
from .runtime.memory import MemoryConfig, free_device_memory, plan_batch, should_release
from .runtime.session import ProviderOptions, SessionFactory
from .runtime.timing import StageTimes
from .swap.mesh import SourceFace, merge_sources, prepare_source
from .swap.onnx_swapper import NeuralSwapper

ImageLike = str | os.PathLike[str] | np.ndarray


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
        self.factory = SessionFactory.from_config(
            self.runtime, ProviderOptions(fp16=self.runtime.fp16),
            MemoryConfig(self.runtime.video_memory_strategy, self.runtime.max_video_memory))
        if device_path is not None:  # else detected on first use
            self._device_path = device_path
        self._analyser: FaceAnalyser | None = None
        self._models: dict[tuple[str, ...], Any] = {}  # neural model objects by (kind, name, ...)
        # swapper inputs per source object (weak: a source that is dropped takes its entry along)
        self._source_inputs: weakref.WeakKeyDictionary[SourceFace, dict[str, np.ndarray]] = \
            weakref.WeakKeyDictionary()

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the model sessions (they are created again on next use)."""
        self._analyser = None
        self._models.clear()
        self._source_inputs.clear()

    # -- neural models -----------------------------------------------------------------------
    def _session(self, name: str) -> Any:
        """A neural model's session: ONNX Runtime, or the torch backend (fp16 with ``--fp16``,
        CUDA graphs) when the device path runs models through torch (a CUDA device, and an
        onnxruntime without a GPU provider)."""
        path = model_file(self.store, name)
        where = self._path()
        if where.models == "torch":
            from .runtime.torch_backend import TorchSession

            return TorchSession(path, device=where.device, fp16=self.runtime.fp16,
                                cuda_graph=where.device.startswith("cuda")), path
        return self.factory.create(path, optimized_dir=self.store.root / "optimized"), path

    def _model(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        if key not in self._models:
            self._models[key] = make()
        return self._models[key]

    def processors(self, config: SwapConfig, source: SourceFace | None = None) -> Processors:
        """The neural models ``config`` asks for (loaded once per session), with the swapper's
        source input prepared from ``source``.

        Raises:
            ConfigError: an unknown model name. ModelError: a model cannot be had.
        """
        swapper = enhancer = occluder = parser = None
        source_input = None
        if config.face_swapper_model != "builtin":
            spec = SWAPPERS.get(config.face_swapper_model)
            if spec is None:
                raise ConfigError(f"unknown face swapper {config.face_swapper_model!r}; choose from builtin, "
                                  + ", ".join(SWAPPERS))
            swapper = self._model(("swapper", spec.name), lambda: self._make_swapper(spec))
            if source is not None:
                source_input = self._source_input(swapper, source)
        if config.face_enhancer_model:
            espec = ENHANCERS.get(config.face_enhancer_model)
            if espec is None:
                raise ConfigError(f"unknown face enhancer {config.face_enhancer_model!r}; choose from "
                                  + ", ".join(ENHANCERS))
            enhancer = self._model(("enhancer", espec.name), lambda: FaceEnhancer(self._session(espec.name)[0], espec))
        if "occlusion" in config.face_mask_types:
            ospec = _masker(config.face_occluder_model, "occlusion")
            occluder = self._model(("occluder", ospec.name),
                                   lambda: OcclusionMasker(self._session(ospec.name)[0], ospec))
        if "region" in config.face_mask_types:
            pspec = _masker(config.face_parser_model, "region")
            regions = tuple(config.face_mask_regions)
            parser = self._model(("parser", pspec.name, *regions),
                                 lambda: RegionMasker(self._session(pspec.name)[0], pspec, regions))
        return Processors(swapper=swapper, source_input=source_input, enhancer=enhancer,
                          occluder=occluder, parser=parser, device=self._device())

    def _device(self) -> str | None:
        """The torch device for frame operations when a CUDA device and torch are there, else
        None (the CPU path)."""
        where = self._path()
        return where.device if where.on_device else None

    def _path(self) -> DevicePath:
        """Where frame work and neural models run. Decided once per session; cheap and silent
        without a GPU."""
        if not hasattr(self, "_device_path"):
            from .gpu import detect_device_path

            if not (Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi")):  # no NVIDIA driver:
                self._device_path = DevicePath(ops="numpy", models="ort-cpu")   # don't even import torch
            else:
                self._device_path = detect_device_path(list(self.factory.providers), self.runtime.execution_device_id)
        return self._device_path

    def _make_swapper(self, spec: SwapperSpec) -> NeuralSwapper:
        session, path = self._session(spec.name)
        emap = NeuralSwapper.read_emap(path) if spec.source_kind == "embedding_emap" else None
        converter = self._session(spec.converter)[0] if spec.converter else None
        return NeuralSwapper(session, spec, emap=emap, converter=converter)

    def _source_input(self, swapper: NeuralSwapper, source: SourceFace) -> np.ndarray:
        """The swapper's source tensor for ``source`` (from its texture and mesh: no need to keep
        the source photos), cached per source."""
        cached = self._source_inputs.setdefault(source, {})
        if swapper.spec.name not in cached:
            texture = source.levels[0]
            kps = kps_from_mesh(source.mesh)
            spec = swapper.spec
            if spec.source_kind == "image":
                value = swapper.source_input(swapper.align_source(texture, kps))
            else:
                recognizer = self._model(("recognizer", spec.recognizer or ""),
                                         lambda: ArcFace(self._session(spec.recognizer or "")[0]))
                face = Face(box=np.zeros(4, np.float32), score=1.0, kps=kps)
                value = swapper.source_input(recognizer.embed(texture, [face], normalise=False)[0])
            cached[swapper.spec.name] = value
        return cached[swapper.spec.name]

    @property
    def analyser(self) -> FaceAnalyser:
        """The face analyser, loaded on first use."""
        if self._analyser is None:
            self._analyser = FaceAnalyser.from_store(self.store, self.factory, self.config.face_detector_score)
        return self._analyser

    def analyse(self, image: ImageLike) -> list[Face]:
        """Every face of ``image`` with box, landmarks, mesh and identity."""
        return self._analyse(_as_image(image, "image"), self.config)

    def load_source(self, sources: ImageLike | Sequence[ImageLike]) -> SourceFace:
        """Prepare the source identity from one or more images (the largest face of each).

        Raises:
            NoFaceError: an image has no face.
        """
        items = [sources] if isinstance(sources, (str, os.PathLike, np.ndarray)) else list(sources)
        if not items:
            raise ConfigError("give at least one source image")
        prepared = []
        for item in items:
            image = _as_image(item, "source")
            faces = self._analyse(image, self.config)
            if not faces:
                raise NoFaceError(f"no face found in the source image{_name(item)}")
            prepared.append(prepare_source(image, order_faces(faces, "large-small")[0], validity=self.config.source_validity))
        return merge_sources(prepared)

    def swap(self, source: SourceFace, target: ImageLike, config: SwapConfig | None = None, *,
             reference: np.ndarray | None = None) -> SwapResult:
        """Swap ``source`` into the selected faces of ``target``.

        ``reference`` is an identity embedding ``(128,)`` for ``reference`` mode; without it the
        face at ``reference_face_position`` of the target is the reference.
        """
        cfg = config or self.config
        image = _as_image(target, "target")
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
        video = self._fit_batch(video or VideoConfig())
        try:
            return swap_video(self.analyser, source, Path(target), Path(output), cfg, video,
                              reference=reference, force=force, progress=progress,
                              processors=self.processors(cfg, source), on_progress=on_progress, cancel=cancel)
        finally:
            self._after_job()

    def _fit_batch(self, video: VideoConfig) -> VideoConfig:
        """The detect stage's batch size fitted to the device memory the strategy allows (on a
        CPU there is no figure and the configured size stays)."""
        free = free_device_memory()
        if free is None:
            return video
        cap = int(self.runtime.max_video_memory * 2**30) if self.runtime.max_video_memory else None
        per_frame = 4 * 3 * 1920 * 1080  # one float32 1080p frame on the device
        batch = plan_batch(free, per_frame, self.runtime.video_memory_strategy, cap, default=video.batch_size)
        return dataclasses.replace(video, batch_size=batch)

    def _after_job(self) -> None:
        """``strict`` memory strategy: release every model session once a job is done (they are
        loaded again by the next job); ``moderate`` and ``tolerant`` keep them for reuse."""
        if should_release(self.runtime.video_memory_strategy, stage_done=True, used_later=True):
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


def _as_image(item: ImageLike, what: str) -> np.ndarray:
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise ConfigError(f"{what} array must be (H, W, 3) uint8 BGR, got {item.shape} {item.dtype}")
        return item
    return read_image(item, what)


def _name(item: ImageLike) -> str:
    return f" {Path(item)}" if isinstance(item, (str, os.PathLike)) else ""


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def _masker(name: str, kind: str) -> MaskerSpec:
    spec = MASKERS.get(name)
    if spec is None or spec.kind != kind:
        names = ", ".join(n for n, m in MASKERS.items() if m.kind == kind)
        raise ConfigError(f"unknown {kind} mask model {name!r}; choose from {names}")
    return spec


def _tell(line: str) -> None:
    print(f"swapline: {line}", file=sys.stderr)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
