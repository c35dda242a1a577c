"""Source preparation: images (paths or arrays) in, one prepared source identity out.

Each source image's largest face is found, its texture and mesh prepared for the built-in
swapper (:func:`~swapline.swap.mesh.prepare_source`), and several images of one person are
merged into one :class:`~swapline.swap.mesh.SourceFace`. What a neural swapper needs from that
source is made (and cached) by :class:`~swapline.swap.source.SourceInputs`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..blend.parsing import FaceParser
from ..config import SwapConfig
from ..errors import ConfigError, NoFaceError
from ..face.analyse import FaceAnalyser
from ..face.select import order_faces
from ..swap.mesh import SourceFace, merge_sources, prepare_source
from .image import read_image

ImageLike = str | os.PathLike[str] | np.ndarray


def as_image(item: ImageLike, what: str) -> np.ndarray:
    """``item`` as ``(H, W, 3) uint8`` BGR: an array is checked and returned as it is, a path is
    read (:func:`~swapline.pipeline.image.read_image`). ``what`` names it in errors."""
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[2] != 3 or item.dtype != np.uint8:
            raise ConfigError(f"{what} array must be (H, W, 3) uint8 BGR, got {item.shape} {item.dtype}")
        return item
    return read_image(item, what)


def load_source(analyser: FaceAnalyser, sources: ImageLike | Sequence[ImageLike], config: SwapConfig,
                parser: FaceParser | None = None) -> SourceFace:
    """The source identity from one or more images (the largest face of each), prepared with
    ``config``'s detector settings and ``source_validity``; with a face ``parser``, only what it
    classes as face (skin, brows, eyes, nose, mouth, lips) is pasted.

    Raises:
        ConfigError: no image given, or an array that is not ``(H, W, 3) uint8``.
        NoFaceError: an image has no face.
    """
    items = [sources] if isinstance(sources, (str, os.PathLike, np.ndarray)) else list(sources)
    if not items:
        raise ConfigError("give at least one source image")
    prepared = []
    for item in items:
        image = as_image(item, "source")
        faces = analyser.analyse([image], score_threshold=config.face_detector_score,
                                 detector_size=config.face_detector_size)[0]
        if not faces:
            raise NoFaceError(f"no face found in the source image{_name(item)}")
        face = order_faces(faces, "large-small")[0]
        parse = parser.parse(image, [face])[0] if parser is not None and config.source_validity else None
        prepared.append(prepare_source(image, face, validity=config.source_validity, parse=parse))
    return merge_sources(prepared)


def _name(item: ImageLike) -> str:
    return f" {Path(item)}" if isinstance(item, (str, os.PathLike)) else ""
