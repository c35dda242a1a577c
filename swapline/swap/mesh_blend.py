"""The blend chain for one face of the built-in (mesh) swap: mask → colour match → alpha or Poisson.

Works on the face's region only (never the whole frame). Pasting into the frame is left to
:func:`swapline.blend.paste.paste_where`, with the region mask this module returns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..blend.color import (apply_tone_gain, lab_apply, lab_statistics, match_color, monochrome_tone,
                           skin_tone_gain, with_tone, yuv_luma)
from ..blend.detail import detail_sigma, soften
from ..blend.masks import area_mask, box_mask, combine_min, disc, feather, polygon_mask
from ..blend.multiband import multiband_blend, multiband_reach
from ..blend.poisson import poisson_blend
from ..blend.relight import fit_face_lighting, low_light_gain, mean_shading, shading_map
from ..config import SwapConfig
from ..face import mesh_topology as topo
from .mesh import COARSE_STEP, MeshSwap
from .validity import (CENTRE, EDGE, FEATURE, FOREHEAD_DARK_WEIGHT, OCCLUDER_ANCHOR, OCCLUDER_DARK_WEIGHT,
                       RATIO_SCALE, forehead_zone, occluder_keep, skin_patches)

_OVAL = topo.as_array(topo.FACE_OVAL)
_NOSE_BASE = 2
_INNER_LIPS = topo.as_array(topo.LIPS_INNER)
# the target's own brows and eyes (their sockets) are never occluders: grown by these fractions
# of the face width
OWN_BROWS_GROW, OWN_EYES_GROW = 0.01, 0.05
TONE_MIN_SKIN = 0.15  # the skin seen must cover this much of the face width squared for the tone and light match
LOW_LIGHT_SIGMA = 0.15  # fraction of the face width: the scale of the light ``light_match`` takes from the target
YUV_DETAIL_SIGMA = 0.05  # fraction of the face width: coarser luminance comes from the target


def skin_stats_mask(shape: tuple[int, int], mesh: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: cheek, nose-bridge and chin patches of ``mesh`` ``(468, 2+)``, where
    colour statistics are taken (skin only: no eyes, brows, lips or hair)."""
    return skin_patches(shape, mesh)


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


def needs_geometry(config: SwapConfig) -> bool:
    """Whether the blend needs the target's normals and feature areas from the swapper."""
    return config.relight > 0 or config.keep_occluders


@dataclass(frozen=True, eq=False)
class FaceLight:
    """The target's lighting for one swapped face.

    Attributes:
        coeffs: ``(9, 3) float32`` SH lighting fitted on the target's central skin.
        normals: ``(6, hs, ws) float32`` the target's and the drawn mesh's normals on the coarse
            grid (:attr:`FaceMaps.normals`).
        drawn_shade: ``(hs, ws, 3) float32`` the light on the drawn (new) mesh's normals: what
            the relit source is multiplied by.
    """

    coeffs: np.ndarray
    normals: np.ndarray
    drawn_shade: np.ndarray

    def target_shade(self) -> np.ndarray:
        """``(hs, ws, 3) float32``: what the target's skin looks like under this light at its own
        mesh's normals (for the occluder test)."""
        return shading_map(self.normals[0:3], self.coeffs)


def _grid_points(points: np.ndarray, region: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Region pixel coordinates ``(N, 2)`` → coordinates on the coarse normals grid ``(hs, ws)``
    of a region ``(h, w)`` (cell j holds canvas pixel ``j * k + k // 2``)."""
    (h, w), (hs, ws) = region, grid
    return ((points + 0.5) * np.array([ws / w, hs / h], np.float32) - 0.5).astype(np.float32)


def target_light(swap: MeshSwap, steady_light: Callable[[np.ndarray], np.ndarray] | None) -> FaceLight | None:
    """Fit the target's SH lighting from its central skin (not the forehead, where a fringe
    would pass for shading), smoothed over time by ``steady_light``; None without normals or
    enough skin."""
    geo = swap.geometry
    if geo.normals is None or geo.parts is None:
        return None
    hs, ws = geo.normals.shape[1:]
    k = COARSE_STEP
    small = cv2.resize(swap.target, (ws, hs), interpolation=cv2.INTER_LINEAR)  # the fit is robust to aliasing
    mesh_g = _grid_points(swap.mesh[:, :2], swap.target.shape[:2], (hs, ws))
    parts = geo.parts[k // 2::k, k // 2::k][:hs, :ws]
    usable = (parts == CENTRE) & ~forehead_zone((hs, ws), mesh_g)
    coeffs = fit_face_lighting(small, geo.normals[0:3], usable)
    if coeffs is None:
        return None
    if steady_light is not None:
        coeffs = steady_light(coeffs)
    return FaceLight(coeffs, geo.normals, shading_map(geo.normals[3:6], coeffs))


def find_occluders(swap: MeshSwap, light: FaceLight) -> np.ndarray:
    """``(h, w) float32`` 0..1 over the region, in the target's own (unwarped) pixels: what
    stands in front of its face — hair or a fringe over the forehead and temples, glasses frames
    at the eyes and nose bridge, hands over the edges — found by the target's skin model on the
    canvas. The lower centre is left alone (smile creases and the shade under the nose would
    pass for occluders); the outline ring is tested where it lies inside the target's own face,
    so a fringe the new outline would move stays where it is. Only what reaches in from the
    face's border counts (an island of dark skin is no occluder), and the target's own brows and
    eye sockets never do."""
    geo = swap.geometry
    ch, cw = geo.parts.shape
    h, w = swap.target.shape[:2]
    sx, sy = cw / w, ch / h
    small = cv2.resize(swap.target, (cw, ch), interpolation=cv2.INTER_LINEAR)
    shade = cv2.resize(light.target_shade(), (cw, ch), interpolation=cv2.INTER_LINEAR)
    mesh_c = swap.mesh[:, :2] * np.array([sx, sy], np.float32)
    upper = np.arange(ch, dtype=np.float32)[:, None] < mesh_c[_NOSE_BASE, 1]
    # canvas pixel → canvas position in the original target it shows (tx, ty at canvas size)
    tx = (geo.maps[0] + 0.5) * np.float32(sx) - 0.5
    ty = (geo.maps[1] + 0.5) * np.float32(sy) - 0.5
    own = polygon_mask((ch, cw), geo.target_mesh[_OVAL, :2] * np.array([sx, sy], np.float32))
    own_w = cv2.remap(own, tx, ty, cv2.INTER_LINEAR) > 0.5  # the target's own face, as drawn
    mouth = polygon_mask((ch, cw), mesh_c[_INNER_LIPS]) > 0.5  # the open mouth is the target's anyway
    ring = (geo.parts == 0) & (geo.changed_canvas > 0) & (geo.face_canvas < 0.5) & own_w & ~mouth
    forehead = forehead_zone((ch, cw), mesh_c)
    # above the brows the features by their own outlines (brow triangles reach far up), below
    # them by their triangles (eye sockets and the nose's sides are shaded more than the smooth
    # light predicts)
    brows = area_mask((ch, cw), mesh_c, ("brows",)) > 0.5
    width = float(np.ptp(mesh_c[_OVAL, 0]))
    # the target's own brows and eye sockets, where the warp moved them, are its face, not an
    # occluder (raised or made-up brows, painted or deep-set sockets)
    own_mesh = geo.target_mesh[:, :2] * np.array([sx, sy], np.float32)
    own_features = np.maximum(
        cv2.dilate(area_mask((ch, cw), own_mesh, ("brows",)), disc(OWN_BROWS_GROW * width)),
        cv2.dilate(area_mask((ch, cw), own_mesh, ("eyes",)), disc(OWN_EYES_GROW * width)))
    own_features = cv2.remap(own_features, tx, ty, cv2.INTER_LINEAR) > 0.5
    testable = ((geo.parts == EDGE) | ((geo.parts == CENTRE) & (upper | forehead))
                | ((geo.parts == FEATURE) & forehead & ~brows) | ring) & ~own_features
    # above the brows nothing but hair is much darker than the light predicts
    dark = np.where(forehead & ~brows, np.float32(FOREHEAD_DARK_WEIGHT), np.float32(OCCLUDER_DARK_WEIGHT))
    # hair, glasses and hands reach in from the face's border; a shaded eye socket or a blotch
    # on the cheek is an island
    border = ~cv2.erode(own_w.view(np.uint8), disc(OCCLUDER_ANCHOR * width)).view(bool)
    occ_w = 1.0 - occluder_keep(small, shade, skin_patches((ch, cw), mesh_c), testable, width, dark,
                                anchor=border)
    # back to the target's own pixels: q shows what the warp put at q - (T(q) - q)
    gx, gy = np.meshgrid(np.arange(cw, dtype=np.float32), np.arange(ch, dtype=np.float32))
    occ = cv2.remap(occ_w, 2.0 * gx - tx, 2.0 * gy - ty, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return cv2.resize(occ, (w, h), interpolation=cv2.INTER_LINEAR)


def blend_face(swap: MeshSwap, config: SwapConfig,
               steady: Callable[[np.ndarray], np.ndarray] | None = None,
               steady_detail: Callable[[np.ndarray], np.ndarray] | None = None,
               extra_masks: Sequence[np.ndarray] = (),
               steady_light: Callable[[np.ndarray], np.ndarray] | None = None,
               occluders: np.ndarray | None = None, skin: np.ndarray | None = None,
               steady_tone: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Blend the swapped face into its region.

    The chain: the face mask (narrowed by the source texels' validity and by what stands in
    front of the target's face: ``occluders`` from its parse, else with ``keep_occluders`` the
    colour test) → the target's lighting
    (``relight``: the source's shading ratio times the target's SH shading) and/or the LAB colour
    match → detail match → a monochrome target's tone (grey or sepia stays so) → alpha, multi-band
    or Poisson blend.

    ``occluders``: ``(h, w) float32`` 0..1 over the region, 1 where the target's own pixels stay
    (bit for bit) in front of the swap (:func:`swapline.blend.parsing.occluder_mask`).

    ``skin``: ``(h, w) bool`` the target's skin by its parse; given, the face takes the target's
    low-frequency light (``light_match`` of it, at :data:`LOW_LIGHT_SIGMA` of the face width,
    measured on that skin: :func:`~swapline.blend.relight.low_light_gain`) and then its mean skin
    colour (:func:`~swapline.blend.color.skin_tone_gain`, smoothed over time by
    ``steady_tone``), after the SH relight and colour match.

    ``steady`` (video) smooths the LAB colour statistics ``(4, 3)`` over time for this face,
    ``steady_detail`` the detail blur, ``steady_light`` the SH lighting ``(9, 3)``, so nothing
    flickers from frame to frame.

    Returns:
        ``(region (h, w, 3) uint8, where (h, w) bool)``: the finished region and where it may
        differ from the original frame, for ``paste_where``.
    """
    mask = face_mask(swap, config, extra_masks)
    out = swap.target  # the swap's own buffer: blended in place, no copy
    where = swap.changed
    h, w = mask.shape
    width = float(np.ptp(swap.mesh[_OVAL, 0]))
    lit = target_light(swap, steady_light) if needs_geometry(config) else None
    occ = occluders
    if lit is not None and config.keep_occluders:  # the colour test too: hands, strands the parse missed
        by_colour = find_occluders(swap, lit)
        occ = by_colour if occ is None else np.maximum(occ, by_colour)
    x0, y0, bw, bh = cv2.boundingRect((mask > 0).view(np.uint8))
    if bw == 0 or bh == 0:
        return _restore(out, swap.original, occ), where
    y1, x1 = y0 + bh, x0 + bw
    if config.blend == "multiband":  # the wide band reaches past the mask: room for it, and paste it
        r = multiband_reach(width)
        x0, y0, x1, y1 = max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, w), min(y1 + r, h)
        grown = cv2.dilate((mask > 0).view(np.uint8), cv2.getStructuringElement(cv2.MORPH_RECT, (2 * r + 1, 2 * r + 1)))
        where = where | grown.view(bool)
    sub = (slice(y0, y1), slice(x0, x1))
    target, m = swap.target[sub], mask[sub]
    mesh = swap.mesh[:, :2] - np.array([x0, y0], np.float32)
    relight = config.relight if lit is not None and swap.source_lighting is not None else 0.0
    # below relight 1 the rest is the source in its own light, colour-matched: by default
    # (``lab``) scaled to the target's mean skin colour inside the same shading map (one multiply
    # per pixel); another ``color_match`` is a second image, mixed in
    mixed = 0.0 < relight < 1.0 and config.color_match != "lab"
    if relight > 0:
        # the source's albedo ratio under the target's light (on the drawn mesh's normals)
        ratio = swap.sample_ratio(sub)
        shade = lit.drawn_shade
        if relight < 1.0 and not mixed:  # own light: the source's shading on the same coarse grid
            k = COARSE_STEP
            hs, ws = shade.shape[:2]
            grid = tuple(m_[k // 2::k, k // 2::k][:hs, :ws] for m_ in swap.geometry.maps[2:4])
            gain = mean_shading(lit.coeffs) / np.maximum(mean_shading(swap.source_lighting), 1e-3)
            own = swap.source_shade_at(grid) * ((1.0 - relight) * gain).astype(np.float32)
            shade = cv2.addWeighted(shade, relight, own, 1.0, 0.0)
        # four channels in one multiply to uint8: the colour, and the validity (× 255)
        shade = cv2.merge([*cv2.split(shade), np.full(shade.shape[:2], 255.0, np.float32)])
        shade = cv2.resize(shade, (w, h), interpolation=cv2.INTER_LINEAR)[sub]
        face4 = cv2.multiply(ratio, shade, scale=1.0 / RATIO_SCALE, dtype=cv2.CV_8U)
        face = cv2.cvtColor(face4, cv2.COLOR_BGRA2BGR)
        if mixed:
            own_face = _colour_matched(swap, sub, target, mesh, config, steady)
            face = cv2.addWeighted(face, relight, own_face, 1.0 - relight, 0.0)
    else:
        face4 = swap.sample("bgr", sub, alpha=True)
        face = _colour_matched(swap, sub, target, mesh, config, steady)
    m = cv2.multiply(m, face4[..., 3], scale=1.0 / 255.0, dtype=cv2.CV_32F)  # the texels' validity
    seen = skin[sub] & (m > 0.5) if skin is not None else None
    # the target's light and skin tone, measured where the parse says skin and the swap shows
    # (not for a swap that shows little skin, e.g. the mouth alone: its colour match decides)
    if seen is not None and np.count_nonzero(seen) >= TONE_MIN_SKIN * width * width:
        light_gain = low_light_gain(face, target, seen, LOW_LIGHT_SIGMA * width, config.light_match)
        if light_gain is not None:
            face = cv2.multiply(face, cv2.merge([light_gain] * 3), dtype=cv2.CV_8U)
        gain = skin_tone_gain(face, target, seen)
        if gain is not None:
            face = apply_tone_gain(face, steady_tone(gain) if steady_tone is not None else gain)
    if config.detail_match:  # after the colour match, which can raise contrast
        sigma = detail_sigma(face, target, m > 0.5)
        if steady_detail is not None:
            sigma = float(steady_detail(np.array([sigma]))[0])
        face = soften(face, sigma)
    tone = monochrome_tone(target, m > 0.5)
    if tone is not None:  # a black-and-white (or toned) target stays so: no colour from the source
        face = with_tone(face, tone)
    if config.blend == "poisson":
        out[sub] = poisson_blend(face, target, m)
    elif config.blend == "multiband":
        out[sub] = multiband_blend(face, target, m, width)
    else:
        out[sub] = cv2.blendLinear(face, target, m, 1.0 - m)
    return _restore(out, swap.original, occ), where


def _restore(region: np.ndarray, original: np.ndarray, occ: np.ndarray | None) -> np.ndarray:
    """Put the target's occluders back: ``region`` ``(h, w, 3) uint8`` (written in place) takes
    ``original`` where ``occ`` ``(h, w) float32`` is 1 (bit for bit), mixed where between."""
    if occ is None:
        return region
    x, y, bw, bh = cv2.boundingRect((occ > 0.002).view(np.uint8))
    if bw and bh:
        box = (slice(y, y + bh), slice(x, x + bw))
        a = occ[box]
        region[box] = cv2.blendLinear(original[box], region[box], a, 1.0 - a)
    return region
def _colour_matched(swap: MeshSwap, sub: tuple[slice, slice], target: np.ndarray, mesh: np.ndarray,
                    config: SwapConfig, steady: Callable[[np.ndarray], np.ndarray] | None) -> np.ndarray:
    """The source texture over ``sub`` with the ``color_match`` the config asks for:
    ``(h, w, 3) uint8``."""
    skin = skin_stats_mask(target.shape[:2], mesh)
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
    elif config.color_match not in ("lab", "none"):
        face = match_color(config.color_match, face, target, skin)
    return face
