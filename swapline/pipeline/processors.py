"""The neural model processors a job uses: one table of kinds, loaded once per session.

A *kind* of processor (swapper, recognizer, enhancer, occluder, parser) is one row of
:data:`KINDS`: its catalogue table, the :class:`~swapline.config.SwapConfig` option that names
the model, how its object is built from a model session, and where it acts in a frame:

* ``"swap"``: the face swapper (at most one; :attr:`Processors.swapper`, with its source input);
* ``"identity"``: made on behalf of another kind (the ArcFace recognizer a swapper names);
* ``"mask"``: ``crop_masks(frame, faces)`` per face, combined with the other masks by their
  minimum, when the kind's ``mask_type`` is among ``face_mask_types``;
* ``"retouch"``: patches pasted over the swapped faces (``apply``), in table order;
* ``"parse"``: the face parser (:class:`~swapline.blend.parsing.FaceParser`): its classes decide
  which source texels are face, what of a target stays in front, and the region mask. Wanted by
  ``face_parsing`` or by the ``region`` mask type; when only ``face_parsing`` wants it and it
  cannot be had, the job goes on without it and says so once (:meth:`ModelProcessors.take_notices`).

:class:`ModelProcessors` loads what a config asks for through the model store and an
:class:`~swapline.runtime.engine.Engine` (the kind's module does the rest), caches the objects,
and hands the frame code a :class:`Processors`. Nothing here names a kind outside its row: the
frame code, the device path's list of what it cannot run and the session go by the table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..blend.mask_models import OcclusionMasker
from ..blend.parsing import FaceParser
from ..config import SwapConfig
from ..enhance.face_enhancer import FaceEnhancer, Patch
from ..errors import ConfigError, ModelError
from ..face.arcface import ArcFace
from ..face.types import Face
from ..models.enhance_catalog import ENHANCERS, MASKERS
from ..models.neural_catalog import RECOGNIZERS, SWAPPERS
from ..models.registry import model_file
from ..models.store import ModelStore
from ..runtime.engine import Engine
from ..swap.mesh import SourceFace
from ..swap.onnx_swapper import NeuralSwapper
from ..swap.source import SourceInputs

Stage = Literal["swap", "identity", "mask", "retouch", "parse"]
#: the weight-free mesh swapper's name in ``face_swapper_model``: no model to load
BUILTIN = "builtin"


@dataclass(frozen=True)
class ProcessorKind:
    """One kind of neural processor (see the module docstring).

    Attributes:
        name: the key of its objects in :attr:`Processors.models` and in messages' plumbing.
        stage: where it acts (``"swap"``, ``"identity"``, ``"mask"``, ``"retouch"``).
        title: what users call it (``"face enhancer"``), for errors.
        specs: its catalogue table, model name -> spec (``spec.name`` is the store's name).
        make: builds the object from ``(loader, spec, config)``.
        option: the ``SwapConfig`` field naming the model; None when another kind names it.
        mask_type: for ``"mask"`` kinds, the ``face_mask_types`` value that turns it on.
        variant: config values that change the object (its cache key beyond the model name).
        apply: for ``"retouch"`` kinds, ``(object, frame, faces, config) -> patches``.
        timing: the :class:`~swapline.runtime.timing.StageTimes` key its work is counted under.
        on_device: whether the device path (frames on the GPU) runs it; a loaded processor
            without it keeps the frame on the CPU path.
        builtin: a value of ``option`` that means "no model" (the mesh swapper's ``builtin``).
        wanted: whether a config wants this kind at all (beside ``mask_type``), or None.
        optional: it may be missing when only ``wanted`` asks for it (not its ``mask_type``):
            the job goes on without it and says so.
    """

    name: str
    stage: Stage
    title: str
    specs: Mapping[str, Any]
    make: Callable[[ModelProcessors, Any, SwapConfig], Any]
    option: str | None = None
    mask_type: str | None = None
    variant: Callable[[SwapConfig], tuple[str, ...]] = lambda config: ()
    apply: Callable[[Any, np.ndarray, Sequence[Face], SwapConfig], list[Patch]] | None = None
    timing: str = ""
    on_device: bool = False
    builtin: str | None = None
    wanted: Callable[[SwapConfig], bool] | None = None
    optional: bool = False

    def model_name(self, config: SwapConfig) -> str | None:
        """The model ``config`` asks for, or None (not asked, or the built-in value)."""
        if self.option is None:
            return None
        asked = self.mask_type is not None and self.mask_type in config.face_mask_types
        if self.wanted is not None:
            if not (asked or self.wanted(config)):
                return None
        elif self.mask_type is not None and not asked:
            return None
        name = getattr(config, self.option)
        return None if not name or name == self.builtin else str(name)

    def spec(self, name: str) -> Any:
        """The catalogue entry called ``name``.

        Raises:
            ConfigError: no such model of this kind (the message lists the choices).
        """
        found = self.specs.get(name)
        if found is None:
            choices = ([self.builtin] if self.builtin else []) + list(self.specs)
            raise ConfigError(f"unknown {self.title} {name!r}; choose from {', '.join(choices)}")
        return found


# -- the kinds -----------------------------------------------------------------------------------

def _make_swapper(loader: ModelProcessors, spec: Any, config: SwapConfig) -> NeuralSwapper:
    session, path = loader.open(spec.name)
    emap = NeuralSwapper.read_emap(path) if spec.source_kind == "embedding_emap" else None
    converter = loader.open(spec.converter)[0] if spec.converter else None
    return NeuralSwapper(session, spec, emap=emap, converter=converter, max_batch=loader.max_batch)


def _enhance(model: FaceEnhancer, frame: np.ndarray, faces: Sequence[Face], config: SwapConfig) -> list[Patch]:
    return model.enhance(frame, faces, blend=config.face_enhancer_blend, weight=config.face_enhancer_weight)


SWAPPER = ProcessorKind(
    name="swapper", stage="swap", title="face swapper", specs=SWAPPERS, make=_make_swapper,
    option="face_swapper_model", builtin=BUILTIN, timing="swap", on_device=True)
RECOGNIZER = ProcessorKind(
    name="recognizer", stage="identity", title="face recognizer", specs=RECOGNIZERS,
    make=lambda loader, spec, config: ArcFace(loader.open(spec.name)[0], max_batch=loader.max_batch))
ENHANCER = ProcessorKind(
    name="enhancer", stage="retouch", title="face enhancer", specs=ENHANCERS,
    make=lambda loader, spec, config: FaceEnhancer(loader.open(spec.name)[0], spec, max_batch=loader.max_batch),
    option="face_enhancer_model", apply=_enhance, timing="enhance")
OCCLUDER = ProcessorKind(
    name="occluder", stage="mask", title="occlusion mask model",
    specs={n: m for n, m in MASKERS.items() if m.kind == "occlusion"},
    make=lambda loader, spec, config: OcclusionMasker(loader.open(spec.name)[0], spec, max_batch=loader.max_batch),
    option="face_occluder_model", mask_type="occlusion", timing="mask")
PARSER = ProcessorKind(
    name="parser", stage="parse", title="face parser",
    specs={n: m for n, m in MASKERS.items() if m.kind == "region"},
    make=lambda loader, spec, config: FaceParser(loader.open(spec.name)[0], spec, max_batch=loader.max_batch),
    option="face_parser_model", mask_type="region", wanted=lambda config: config.face_parsing, timing="parse",
    optional=True)

#: every kind, in the order they are loaded and (within a stage) applied
KINDS: tuple[ProcessorKind, ...] = (SWAPPER, RECOGNIZER, ENHANCER, OCCLUDER, PARSER)
KINDS_BY_NAME: dict[str, ProcessorKind] = {k.name: k for k in KINDS}


# -- what a job gets -----------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Processors:
    """The neural models a job uses (all optional).

    ``swapper``: the neural swapper (None: the built-in mesh swapper). ``source_input``: its
    prepared source identity (see :meth:`NeuralSwapper.source_input`), made once per job.
    ``models``: every other processor by kind name (``{"enhancer": FaceEnhancer, ...}``, see
    :data:`KINDS`). ``device``: the torch device for frame operations (``"cuda:0"``), None for the
    CPU path. ``textures``: the device path's uploaded source textures.
    """

    swapper: NeuralSwapper | None = None
    source_input: np.ndarray | None = None
    models: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None
    textures: dict[str, Any] = field(default_factory=dict)

    def get(self, kind: str) -> Any | None:
        """The processor of kind ``kind`` (``"swapper"`` included), or None."""
        return self.swapper if kind == SWAPPER.name else self.models.get(kind)

    def loaded(self, stage: Stage | None = None) -> list[tuple[ProcessorKind, Any]]:
        """``(kind, object)`` of every processor in ``models`` (of ``stage``), in table order."""
        return [(k, self.models[k.name]) for k in KINDS
                if k.name in self.models and (stage is None or k.stage == stage)]

    def off_device(self) -> list[str]:
        """What of ``models`` the device path does not run (``"a face enhancer"``, ...)."""
        return [("an " if k.title[0] in "aeiou" else "a ") + k.title for k, _ in self.loaded() if not k.on_device]


NO_PROCESSORS = Processors()


# -- loading -------------------------------------------------------------------------------------

class ModelProcessors:
    """Loads and keeps the processors configs ask for: model files from ``store``, sessions from
    ``engine``; objects cached by kind, model and variant. Safe to share between threads."""

    def __init__(self, store: ModelStore, engine: Engine) -> None:
        self.store = store
        self.engine = engine
        self.sources = SourceInputs()
        self._objects: dict[tuple[str, ...], Any] = {}
        self._missing: dict[tuple[str, str], str] = {}  # optional kinds that could not be had
        self._notices: list[str] = []
        self._lock = threading.RLock()

    @property
    def max_batch(self) -> int:
        """Most items per model call (see :attr:`Engine.max_batch`)."""
        return self.engine.max_batch

    def open(self, name: str) -> tuple[Any, Path]:
        """A new session for model ``name`` and its file (verified by the store, or the user's
        own copy from ``--model-dir`` for models with no published hash)."""
        path = model_file(self.store, name)
        return self.engine.load(path, optimized_dir=self.store.optimized_dir), path

    def load(self, kind: ProcessorKind, name: str, config: SwapConfig) -> Any:
        """The ``kind`` processor for model ``name`` (built on first use).

        Raises:
            ConfigError: an unknown model name. ModelError: the model cannot be had.
        """
        spec = kind.spec(name)
        key = (kind.name, spec.name, *kind.variant(config))
        with self._lock:
            found = self._objects.get(key)
            if found is None:
                found = self._objects[key] = kind.make(self, spec, config)
            return found

    def load_optional(self, kind: ProcessorKind, config: SwapConfig) -> Any | None:
        """The ``kind`` processor ``config`` asks for, or None: not asked, or an optional kind
        asked only by its ``wanted`` rule that cannot be had (said once, as a notice).

        Raises:
            ConfigError: an unknown model name. ModelError: a model asked for by its mask type
                cannot be had.
        """
        name = kind.model_name(config)
        if name is None:
            return None
        if not kind.optional or (kind.mask_type is not None and kind.mask_type in config.face_mask_types):
            return self.load(kind, name, config)
        key = (kind.name, name)
        with self._lock:
            if key in self._missing:
                return None
            try:
                return self.load(kind, name, config)
            except ModelError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                self._missing[key] = reason
                self._notices.append(f"{kind.title} {name} not available ({reason}); "
                                     "hair, glasses and shadows are judged by colour instead")
                return None

    def take_notices(self) -> list[str]:
        """The one-line notices since the last call (an optional model that could not be had)."""
        with self._lock:
            out, self._notices = self._notices, []
            return out

    def parser(self, config: SwapConfig) -> FaceParser | None:
        """The face parser ``config`` asks for, or None (see :meth:`load_optional`)."""
        return self.load_optional(PARSER, config)

    def recognizer(self, name: str) -> ArcFace:
        """The identity recognizer called ``name`` (a swapper's ``spec.recognizer``)."""
        return self.load(RECOGNIZER, name, SwapConfig())

    def processors(self, config: SwapConfig, source: SourceFace | None = None) -> Processors:
        """The processors ``config`` asks for, with the swapper's source input made from
        ``source`` (cached per source).

        Raises:
            ConfigError: an unknown model name. ModelError: a model cannot be had.
        """
        swapper: NeuralSwapper | None = None
        source_input = None
        models: dict[str, Any] = {}
        for kind in KINDS:
            name = kind.model_name(config)
            if name is None:
                continue
            model = self.load_optional(kind, config) if kind.optional else self.load(kind, name, config)
            if model is None:
                continue
            if kind is SWAPPER:
                swapper = model
                if source is not None:
                    source_input = self.sources.get(model, source, self.recognizer)
            else:
                models[kind.name] = model
        return Processors(swapper=swapper, source_input=source_input, models=models, device=self.engine.device)

    def clear(self) -> None:
        """Drop every processor and cached source input (made again on next use)."""
        with self._lock:
            self._objects.clear()
            self._missing.clear()
        self.sources.clear()
