"""Swap the selected faces of one frame: swap (built-in mesh or a neural model), masks, blend,
paste, and the retouching processors (a face enhancer) — shared by the image job and the video
pipeline's swap stage. Which neural processors take part, and at which step, is read from the
table of kinds in :mod:`swapline.pipeline.processors`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from ..swap.mesh_blend import blend_face, mesh_area_masks, needs_geometry
from ..blend.mask_models import region_affine, warp_mask
from ..blend.parsing import SKIN, FaceParse, occluder_mask, region_mask
from ..blend.paste import crop_with_padding, paste_back, paste_where
from ..config import SwapConfig
from ..face.types import Face
from ..runtime.timing import StageTimes, timed
from ..swap.mesh import SourceFace, swap_mesh
from .processors import NO_PROCESSORS, Processors

__all__ = ["NO_PROCESSORS", "Processors", "Steadiers", "frame_path", "swap_faces"]

Steady = Callable[[np.ndarray], np.ndarray]
# per face: smoothers over time of its colour statistics, detail blur, lighting and skin tone (or None)
Steadiers = tuple[Steady | None, Steady | None, Steady | None, Steady | None]


def frame_path(config: SwapConfig, processors: Processors) -> str:
    """Where this frame's swap runs: ``"torch"`` (the built-in swap on the device: a device is
    set, no neural or mask model is in use, every option is one the device path has),
    ``"torch-neural"`` (a neural swapper run through the torch backend, with its crops, warps and
    paste on the device; no enhancer, no mask models, no pixel boost), else ``"numpy"``."""
    if processors.device is None:
        return "numpy"
    if processors.swapper is not None:
        if processors.source_input is None:
            return "numpy"
        from ..gpu.neural import neural_unsupported

        bad = neural_unsupported(config, processors.swapper, processors.off_device())
        return "numpy" if bad else "torch-neural"
    if processors.loaded():  # the built-in swap on the device runs no model
        return "numpy"
    from ..gpu.frame import unsupported_options

    return "numpy" if unsupported_options(config) else "torch"


def _model_masks(frame: np.ndarray, faces: Sequence[Face], config: SwapConfig,
                 processors: Processors, times: StageTimes | None,
                 parses: Sequence[FaceParse | None]) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """Per face, the masks of the ``"mask"`` processors the config turns on and the region mask
    of its parse (``region`` among the mask types), as ``(crop mask, M)``."""
    per_face: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in faces]
    for kind, model in processors.loaded("mask"):
        if kind.mask_type in config.face_mask_types and faces:
            with timed(times, kind.timing or kind.name):
                for i, cm in enumerate(model.crop_masks(frame, faces)):
                    per_face[i].append(cm)
    if "region" in config.face_mask_types:
        with timed(times, "mask"):
            for i, parse in enumerate(parses):
                if parse is not None:
                    per_face[i].append(region_mask(parse, config.face_mask_regions))
    return per_face


def frame_parses(frame: np.ndarray, faces: Sequence[Face], processors: Processors,
                 times: StageTimes | None = None) -> list[FaceParse | None]:
    """The parse of each face (None per face without a face parser)."""
    parser = processors.get("parser")
    if parser is None or not faces:
        return [None] * len(faces)
    with timed(times, "parse"):
        return list(parser.parse(frame, faces))


def swap_faces(frame: np.ndarray, faces: Sequence[Face], source: SourceFace, config: SwapConfig,
               times: StageTimes | None = None,
               steady: Callable[[Face], Steadiers] | None = None,
               processors: Processors = NO_PROCESSORS,
               parses: Sequence[FaceParse | None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Swap ``source`` into each of ``faces`` of ``frame``, then enhance them if asked.

    Args:
        frame: ``(H, W, 3) uint8`` BGR; not modified.
        faces: target faces with meshes, already selected.
        steady: gives, per face, smoothers of its colour statistics, detail blur and lighting
            over time (video), or None.
        processors: the neural swapper / enhancer / mask models / face parser in use.
        parses: each face's parse (a video's parse stage carries them between detection
            frames); None: parsed here when a face parser is in use.
    Returns:
        ``(out (H, W, 3) uint8, changed (H, W) bool)``: the new frame and the pixels that may
        differ from ``frame`` (every other pixel is bit-identical).
    """
    path = frame_path(config, processors) if faces else "numpy"
    if path == "torch":
        with timed(times, "swap"):
            return _swap_on_device(frame, faces, source, config, processors)
    if path == "torch-neural":
        with timed(times, "swap"):
            return _swap_neural_on_device(frame, faces, config, processors)
    out = frame.copy()
    changed = np.zeros(frame.shape[:2], bool)
    if not faces:
        return out, changed
    if parses is None or len(parses) != len(faces):
        parses = frame_parses(frame, faces, processors, times)
    model_masks = _model_masks(frame, faces, config, processors, times, parses)
    if processors.swapper is not None and processors.source_input is not None:
        _swap_neural(out, changed, faces, processors, config, model_masks, times, parses)
    else:
        _swap_builtin(out, changed, faces, source, config, model_masks, times, steady, parses)
    for kind, model in processors.loaded("retouch"):
        assert kind.apply is not None
        with timed(times, kind.timing or kind.name):
            for patch, alpha, origin in kind.apply(model, out, faces, config):
                paste_back(out, patch, alpha, origin, out=out)
                _mark(changed, alpha > 0, origin)
    return out, changed


def _swap_on_device(frame: np.ndarray, faces: Sequence[Face], source: SourceFace, config: SwapConfig,
                    processors: Processors) -> tuple[np.ndarray, np.ndarray]:
    """The built-in swap with the frame on the device (one upload, one download)."""
    import torch

    from ..gpu.frame import swap_faces_torch

    frame_t = torch.from_numpy(frame).to(processors.device or "cpu", non_blocking=True)
    out, changed = swap_faces_torch(frame_t, faces, source, config, texture_cache=processors.textures)
    return out.cpu().numpy(), changed.cpu().numpy()


def _swap_neural_on_device(frame: np.ndarray, faces: Sequence[Face], config: SwapConfig,
                           processors: Processors) -> tuple[np.ndarray, np.ndarray]:
    """A neural swap with the frame on the device (one upload, one download)."""
    import torch

    from ..gpu.neural import swap_faces_neural_torch

    assert processors.swapper is not None and processors.source_input is not None
    frame_t = torch.from_numpy(frame).to(processors.device or "cpu", non_blocking=True)
    out, changed = swap_faces_neural_torch(frame_t, faces, processors.swapper, processors.source_input, config)
    return out.cpu().numpy(), changed.cpu().numpy()


def _swap_builtin(out: np.ndarray, changed: np.ndarray, faces: Sequence[Face], source: SourceFace,
                  config: SwapConfig, model_masks: list[list[tuple[np.ndarray, np.ndarray]]],
                  times: StageTimes | None,
                  steady: Callable[[Face], Steadiers] | None,
                  parses: Sequence[FaceParse | None]) -> None:
    for face, masks, parse in zip(faces, model_masks, parses):
        t0 = time.perf_counter()
        swap = swap_mesh(out, face, source, shape_weight=config.face_shape_weight,
                         keep_target_expression=config.expression == "target",
                         resolution=config.swap_resolution, normals=needs_geometry(config))
        t1 = time.perf_counter()
        colour, detail, light, tone = steady(face) if steady is not None else (None, None, None, None)
        extra = [warp_mask(m, mat, swap.face_region.shape, region_affine(swap.origin)) for m, mat in masks]
        occ = skin = None
        if parse is not None and face.mesh is not None:  # the target's hair, hat, glasses frames in front
            occ = occluder_mask(parse, swap.original, swap.origin, face.mesh[:, :2] - np.asarray(swap.origin, np.float32))
            skin = parse.mask((SKIN,), swap.original.shape[:2], swap.origin) > 0.5
        region, where = blend_face(swap, config, colour, detail, extra_masks=extra, steady_light=light,
                                   occluders=occ, skin=skin, steady_tone=tone)
        paste_where(out, region, where, swap.origin)
        _mark(changed, where, swap.origin)
        t2 = time.perf_counter()
        if times is not None:
            times.add("swap", t1 - t0)
            times.add("blend", t2 - t1)


def _swap_neural(out: np.ndarray, changed: np.ndarray, faces: Sequence[Face], processors: Processors,
                 config: SwapConfig, model_masks: list[list[tuple[np.ndarray, np.ndarray]]],
                 times: StageTimes | None, parses: Sequence[FaceParse | None]) -> None:
    assert processors.swapper is not None and processors.source_input is not None
    with timed(times, "swap"):
        patches = processors.swapper.swap(out, faces, processors.source_input, weight=config.face_swapper_weight,
                                          pixel_boost=config.face_swapper_pixel_boost)
    with timed(times, "blend"):
        for face, patch, masks, parse in zip(faces, patches, model_masks, parses):
            shape = patch.alpha.shape
            alpha = patch.alpha.copy()
            mesh = face.mesh[:, :2] - np.asarray(patch.origin, np.float32) if face.mesh is not None else None
            for m in mesh_area_masks(shape, mesh, config) if mesh is not None else []:
                np.minimum(alpha, m * config.face_swapper_weight, out=alpha)
            for m, mat in masks:
                np.minimum(alpha, warp_mask(m, mat, shape, region_affine(patch.origin)), out=alpha)
            if parse is not None and mesh is not None:  # the target's hair, hat, glasses frames in front
                x0, y0 = (int(v) for v in patch.origin)
                below = crop_with_padding(out, (x0, y0, x0 + shape[1], y0 + shape[0]))[0]
                np.minimum(alpha, 1.0 - occluder_mask(parse, below, patch.origin, mesh), out=alpha)
            paste_back(out, patch.patch, alpha, patch.origin, out=out)
            _mark(changed, alpha > 0, patch.origin)


def _mark(changed: np.ndarray, where: np.ndarray, origin: tuple[int, int]) -> None:
    """``changed |= where`` for a region at ``origin`` (clipped to the frame)."""
    h, w = changed.shape
    x0, y0 = int(origin[0]), int(origin[1])
    rh, rw = where.shape
    ys, xs = slice(max(y0, 0), min(y0 + rh, h)), slice(max(x0, 0), min(x0 + rw, w))
    if ys.start < ys.stop and xs.start < xs.stop:
        changed[ys, xs] |= where[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
