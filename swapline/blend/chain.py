"""The blend chain for one swapped face: mask → colour match → alpha or Poisson.

Works on the face's region only (never the whole frame). Pasting into the frame is left to
:func:`swapline.blend.paste.paste_where`, with the region mask this module returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from ..config import SwapConfig
from ..face import mesh_topology as topo
from ..swap.mesh import MeshSwap
from .color import lab_apply, lab_statistics, match_color, yuv_luma
from .detail import detail_sigma, soften
from .masks import area_mask, box_mask, combine_min, feather, occlusion_gate, polygon_mask
from .poisson import poisson_blend

_SKIN_PATCHES = tuple(topo.as_array(p) for p in (topo.CHEEK_LEFT, topo.CHEEK_RIGHT, topo.NOSE_BRIDGE, topo.CHIN))
_OVAL = topo.as_array(topo.FACE_OVAL)
YUV_DETAIL_SIGMA = 0.05  # fraction of the face width: coarser luminance comes from the target


def skin_stats_mask(shape: tuple[int, int], mesh: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: cheek, nose-bridge and chin patches of ``mesh`` ``(468, 2+)``, where
    colour statistics are taken (skin only: no eyes, brows, lips or hair)."""
    canvas = np.zeros(shape, np.uint8)
    hulls = [cv2.convexHull(np.round(mesh[idx, :2] * 16).astype(np.int32)) for idx in _SKIN_PATCHES]
    cv2.fillPoly(canvas, hulls, 1, cv2.LINE_8, 4)
    return canvas.view(bool)


_BROW_TOPS = topo.as_array((70, 63, 105, 66, 107, 336, 296, 334, 293, 300))


def forehead_zone(shape: tuple[int, int], mesh: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: the image above the line through the brows' upper edge of ``mesh``
    (following head roll), where a fringe would hang."""
    pts = mesh[_BROW_TOPS, :2].astype(np.float64)
    (a, b) = np.polyfit(pts[:, 0], pts[:, 1], 1)
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    return ys < a * xs + b - 0.02 * float(np.ptp(mesh[_OVAL, 0]))


def feather_scaled(mask: np.ndarray, erode_px: float, blur_px: float, max_side: int = 256) -> np.ndarray:
    """:func:`feather` computed at most ``max_side`` px on the long side and resized back: a
    soft edge has no detail worth the full resolution. ``(H, W) float32`` 0..1."""
    h, w = mask.shape
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return feather(mask, erode_px, blur_px)
    small = cv2.resize(mask, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return cv2.resize(feather(small, erode_px * s, blur_px * s), (w, h), interpolation=cv2.INTER_LINEAR)


def _feather_face(swap: MeshSwap, erode_px: float, blur_px: float) -> np.ndarray:
    """The feathered face surface, computed on the swapper's canvas (no downscale needed)."""
    h, w = swap.face_region.shape
    ch, cw = swap.canvas_face.shape
    if (ch, cw) == (h, w):
        return feather(swap.face_region, erode_px, blur_px)
    s = cw / w
    return cv2.resize(feather(swap.canvas_face, erode_px * s, blur_px * s), (w, h), interpolation=cv2.INTER_LINEAR)


def mesh_area_masks(shape: tuple[int, int], mesh: np.ndarray, config: SwapConfig, *,
                    oval: bool = True) -> list[np.ndarray]:
    """The mesh-based masks ``face_mask_types`` asks for, over any region: ``(h, w) float32``
    each, for ``mesh`` ``(468, 2)`` in that region's pixels. ``oval`` is the feathered face
    outline, ``box`` the feathered box around it, ``area`` the union of ``face_mask_areas``."""
    width = float(np.ptp(mesh[_OVAL, 0]))
    masks = []
    if oval and "oval" in config.face_mask_types:
        outline = polygon_mask(shape, mesh[_OVAL])
        masks.append(feather_scaled(outline, config.face_mask_erode * width, config.face_mask_blur * width))
    if "box" in config.face_mask_types:
        lo, hi = mesh[_OVAL].min(0), mesh[_OVAL].max(0)
        box = np.array([lo[0], lo[1], hi[0], hi[1]], np.float32)
        masks.append(box_mask(shape, box, config.face_mask_padding, config.face_mask_blur))
    if "area" in config.face_mask_types:
        areas = area_mask(shape, mesh, config.face_mask_areas)
        masks.append(feather_scaled(areas, 0.0, config.face_mask_blur * width))
    return masks


def face_mask(swap: MeshSwap, config: SwapConfig, extra: Sequence[np.ndarray] = ()) -> np.ndarray:
    """The blend mask ``(h, w) float32`` 0..1 of a face swapped by the mesh swapper.

    The feathered face surface (outline less the inner mouth, eroded by ``face_mask_erode`` and
    softened over ``face_mask_blur`` of the face width) is always part of it, since the source's
    texture exists only there; the chosen ``face_mask_types`` (and ``extra`` masks from mask
    models, in region pixels) narrow it further (minimum).
    """
    shape = swap.face_region.shape
    mesh = swap.mesh[:, :2]
    width = float(np.ptp(mesh[_OVAL, 0]))
    base = _feather_face(swap, config.face_mask_erode * width, config.face_mask_blur * width)
    # the swapped surface already is the oval: only the other mesh masks narrow it
    return combine_min([base, *mesh_area_masks(shape, mesh, config, oval=False), *extra])


def _gate(face: np.ndarray, mask: np.ndarray, skin: np.ndarray, mesh: np.ndarray, max_side: int = 256) -> np.ndarray:
    """:func:`occlusion_gate` with the forehead as its top zone, decided on a copy at most
    ``max_side`` px large (the cut is soft, so its position needs no more) and applied to the
    full-size mask."""
    h, w = mask.shape
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return occlusion_gate(face, mask, skin, top_zone=forehead_zone(mask.shape, mesh))
    size = (max(1, round(w * s)), max(1, round(h * s)))
    small_mask = cv2.resize(mask, size, interpolation=cv2.INTER_AREA)
    gated = occlusion_gate(cv2.resize(face, size, interpolation=cv2.INTER_AREA), small_mask,
                           cv2.resize(skin.view(np.uint8), size, interpolation=cv2.INTER_NEAREST).view(bool),
                           top_zone=forehead_zone((size[1], size[0]), mesh * s))
    keep = np.where(small_mask > 1e-3, gated / np.maximum(small_mask, 1e-3), 1.0).astype(np.float32)
    return mask * np.clip(cv2.resize(keep, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)


def blend_face(swap: MeshSwap, config: SwapConfig,
               steady: Callable[[np.ndarray], np.ndarray] | None = None,
               steady_detail: Callable[[np.ndarray], np.ndarray] | None = None,
               extra_masks: Sequence[np.ndarray] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Blend the swapped face into its region.

    ``steady`` (video) smooths the LAB colour statistics ``(4, 3)`` over time for this face, so
    the colour transfer does not flicker from frame to frame.

    Returns:
        ``(region (h, w, 3) uint8, where (h, w) bool)``: the finished region and where it may
        differ from the original frame, for ``paste_where``.
    """
    mask = face_mask(swap, config, extra_masks)
    out = swap.target  # the swap's own buffer: blended in place, no copy
    where = swap.changed
    x0, y0, bw, bh = cv2.boundingRect((mask > 0).view(np.uint8))
    if bw == 0 or bh == 0:
        return out, where
    y1, x1 = y0 + bh, x0 + bw
    sub = (slice(y0, y1), slice(x0, x1))
    target, m = swap.target[sub], mask[sub]
    mesh = swap.mesh[:, :2] - np.array([x0, y0], np.float32)
    skin = skin_stats_mask(m.shape, mesh)
    if config.occlusion_gate:  # decided on the source's own colours
        m = _gate(swap.sample("bgr", sub), m, skin, mesh)
    face: np.ndarray | None = None
    if config.color_match == "lab":  # straight from the source's LAB texture: no conversion here
        lab_f = swap.sample("lab", sub)
        stats = lab_statistics(lab_f, target, skin)
        if stats is not None:
            face = lab_apply(lab_f, swap.sample("lab_error", sub), steady(stats) if steady is not None else stats)
    if face is None:
        face = swap.sample("bgr", sub)
    if config.color_match == "yuv-luma":
        # the target's lighting (luminance below ~5 % of the face width), the source's detail
        face = yuv_luma(face, target, skin, detail_sigma=YUV_DETAIL_SIGMA * float(np.ptp(mesh[_OVAL, 0])))
    elif config.color_match != "lab":
        face = match_color(config.color_match, face, target, skin)
    if config.detail_match:  # after the colour match, which can raise contrast
        sigma = detail_sigma(face, target, m > 0.5)
        if steady_detail is not None:
            sigma = float(steady_detail(np.array([sigma]))[0])
        face = soften(face, sigma)
    if config.blend == "poisson":
        out[sub] = poisson_blend(face, target, m)
    else:
        out[sub] = cv2.blendLinear(face, target, m, 1.0 - m)
    return out, where
