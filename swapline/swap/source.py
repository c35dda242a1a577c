"""A neural swapper's source input, made from a prepared source face and cached per source.

The built-in swapper works from the :class:`~swapline.swap.mesh.SourceFace` itself (texture and
mesh). A neural swapper wants a tensor: an aligned source crop for ``image`` specs, or an
ArcFace-512 identity embedding (through the swapper's emap or converter) for the others. Both
are made from the source's texture and mesh, so the source photos need not be kept.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

import numpy as np

from ..face.align import kps_from_mesh
from ..face.arcface import ArcFace
from ..face.types import Face
from .mesh import SourceFace
from .onnx_swapper import NeuralSwapper

#: gives the recognizer called ``name`` (``SwapperSpec.recognizer``), loaded once by its caller
RecognizerFor = Callable[[str], ArcFace]


def swapper_source_input(swapper: NeuralSwapper, source: SourceFace, recognizer: RecognizerFor) -> np.ndarray:
    """The tensor ``swapper`` takes as its source, ``(1, ...) float32`` (see
    :meth:`NeuralSwapper.source_input`), from ``source``'s full-resolution texture and the five
    key points of its mesh."""
    texture = source.levels[0]
    kps = kps_from_mesh(source.mesh)
    spec = swapper.spec
    if spec.source_kind == "image":
        return swapper.source_input(swapper.align_source(texture, kps))
    face = Face(box=np.zeros(4, np.float32), score=1.0, kps=kps)
    embedding = recognizer(spec.recognizer or "").embed(texture, [face], normalise=False)[0]
    return swapper.source_input(embedding)


class SourceInputs:
    """:func:`swapper_source_input` cached per source object and swapper (weakly: a source that
    is dropped takes its entries along). Safe to share between threads."""

    def __init__(self) -> None:
        self._cache: weakref.WeakKeyDictionary[SourceFace, dict[str, np.ndarray]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, swapper: NeuralSwapper, source: SourceFace, recognizer: RecognizerFor) -> np.ndarray:
        """The swapper's source tensor for ``source`` (made on first use)."""
        name = swapper.spec.name
        with self._lock:
            found = self._cache.get(source, {}).get(name)
        if found is not None:
            return found
        value = swapper_source_input(swapper, source, recognizer)
        with self._lock:
            return self._cache.setdefault(source, {}).setdefault(name, value)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)
