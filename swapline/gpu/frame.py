"""The built-in swapper's per-face pixel work in torch: warp, mask, colour match, blend and paste
on the frame's device.

The device version of :func:`swapline.pipeline.frame._swap_builtin` (mesh swap + blend chain +
``paste_where``). The geometry stays on the CPU, where it is small: the pose, the triangle
rasterisation and the dense maps are computed at the swapper's canvas size (at most
``swap_resolution`` px) with the same helpers as :func:`swapline.swap.mesh.swap_mesh`; the maps,
the canvas face mask and the skin-statistics mask are uploaded, and everything at the face
region's full resolution (map resize, both remaps, feathering, LAB transfer, alpha blend, paste)
runs on the device.

Supported options: ``color_match`` ``"lab"`` or ``"none"``, ``blend="alpha"``,
``face_mask_types`` ``oval`` / ``box`` / ``area`` (box and area masks are drawn on the CPU and
uploaded). Not supported: ``color_match`` ``"histogram"`` / ``"yuv-luma"``, ``keep_occluders``,
``source_validity``, ``relight``,
``detail_match``, ``blend="poisson"``, mask models (occluder / parser), the video colour
smoother: :func:`swap_faces_torch` raises :class:`~swapline.errors.ConfigError` naming the option
(no silent CPU fallback; :func:`unsupported_options` lets a caller pick the CPU path instead).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..swap.mesh_blend import _OVAL as _CHAIN_OVAL
from ..swap.mesh_blend import mesh_area_masks, skin_stats_mask
from ..config import SwapConfig
from ..errors import ConfigError
from ..face.types import Face
from ..swap.mesh import FaceMaps, SourceFace, face_maps
from . import ops

__all__ = ["FaceMaps", "face_maps", "swap_faces_torch", "unsupported_options"]


def unsupported_options(config: SwapConfig) -> list[str]:
    """The options of ``config`` the device path cannot do (empty: all supported)."""
    bad = []
    if config.color_match not in ("lab", "none"):
        bad.append(f"color_match={config.color_match!r}")
    if config.keep_occluders:
        bad.append("keep_occluders")
    if config.source_validity:
        bad.append("source_validity")
    if config.relight > 0:
        bad.append(f"relight={config.relight:g}")
    if config.detail_match:
        bad.append("detail_match")
    if config.blend != "alpha":
        bad.append(f"blend={config.blend!r}")
    return bad


def _resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``(C, h, w)`` -> ``(C, rh, rw)`` like ``cv2.resize`` (INTER_LINEAR / INTER_NEAREST)."""
    rw, rh = size
    if x.shape[-2:] == (rh, rw):
        return x
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x[None], size=(rh, rw), mode=mode, **kw)[0]


def _crop(frame: torch.Tensor, origin: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """``(rh, rw, 3)`` region of ``frame`` at ``origin``, edges replicated outside the frame."""
    H, W = frame.shape[:2]
    x0, y0 = origin
    rw, rh = size
    if x0 >= 0 and y0 >= 0 and x0 + rw <= W and y0 + rh <= H:
        return frame[y0:y0 + rh, x0:x0 + rw]
    ys = torch.arange(y0, y0 + rh, device=frame.device).clamp(0, H - 1)
    xs = torch.arange(x0, x0 + rw, device=frame.device).clamp(0, W - 1)
    return frame[ys[:, None], xs[None, :]]


def _bbox(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the true pixels of ``(h, w) bool``, or None (like ``cv2.boundingRect``)."""
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    if rows.numel() == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _texture(source: SourceFace, level: int, device: torch.device, cache: dict | None) -> torch.Tensor:
    """The source pyramid level as ``(1, 3, h, w)`` float32 on ``device`` (uploaded once per source)."""
    key = (id(source), level, str(device))
    if cache is not None:
        hit = cache.get(key)
        if hit is not None and hit[0] is source:  # an id can be reused by a new object
            return hit[1]
    tex = ops.to_nchw(torch.from_numpy(np.ascontiguousarray(source.levels[level])).to(device))
    if cache is not None:
        cache[key] = (source, tex)
    return tex


def _swap_one(out: torch.Tensor, changed: torch.Tensor, face: Face, source: SourceFace, config: SwapConfig,
              texture_cache: dict | None) -> None:
    dev = out.device
    fm = face_maps(face, source, shape_weight=config.face_shape_weight,
                   keep_target_expression=config.expression == "target", resolution=config.swap_resolution)
    rw, rh = fm.size
    # geometry at full region resolution, on the device
    maps = _resize(torch.from_numpy(fm.maps).to(dev), fm.size, "bilinear")
    tx, ty, sx, sy = maps[0], maps[1], maps[2], maps[3]
    face_canvas = torch.from_numpy(fm.face_canvas).to(dev)
    face_region = _resize(face_canvas[None], fm.size, "bilinear")[0]
    where = _resize(torch.from_numpy(fm.changed_canvas).to(dev)[None].float(), fm.size, "nearest")
    where = F.max_pool2d(where[None], 3, stride=1, padding=1)[0, 0] > 0.5
    # the target region with its surroundings warped to the new outline
    region = ops.to_nchw(_crop(out, fm.origin, fm.size))
    target = ops.remap(region, tx, ty, border="replicate").round().clamp(0, 255)
    # the blend mask: the feathered face surface (on the canvas, like mesh_blend._feather_face) ...
    width = float(np.ptp(fm.mesh[_CHAIN_OVAL, 0]))
    s = fm.face_canvas.shape[1] / rw
    mask = ops.feather_mask(face_canvas, config.face_mask_erode * width * s, config.face_mask_blur * width * s)
    mask = _resize(mask[None], fm.size, "bilinear")[0]
    # ... narrowed by the box / area masks (drawn on the CPU)
    types = [t for t in ("oval", "box", "area") if t in config.face_mask_types]
    if any(t != "oval" for t in types):
        for kind, area in zip(types, mesh_area_masks((rh, rw), fm.mesh[:, :2], config)):
            if kind != "oval":
                mask = torch.minimum(mask, torch.from_numpy(area).to(dev))
    box = _bbox(mask > 0)
    if box is not None:
        bx0, by0, bx1, by1 = box
        # the source texture, only over the face surface's bounding box (as swap_mesh)
        fbox = _bbox(face_region > 0)
        src_face = torch.zeros_like(target)
        if fbox is not None:
            fx0, fy0, fx1, fy1 = fbox
            tex = _texture(source, fm.level, dev, texture_cache)
            src_face[:, :, fy0:fy1, fx0:fx1] = ops.remap(tex, sx[fy0:fy1, fx0:fx1], sy[fy0:fy1, fx0:fx1],
                                                         border="replicate").round().clamp(0, 255)
        f = src_face[:, :, by0:by1, bx0:bx1]
        t = target[:, :, by0:by1, bx0:bx1]
        m = mask[by0:by1, bx0:bx1]
        if config.color_match == "lab":
            skin = skin_stats_mask((by1 - by0, bx1 - bx0), fm.mesh[:, :2] - np.array([bx0, by0], np.float32))
            skin_t = torch.from_numpy(np.ascontiguousarray(skin)).to(dev)[None]
            f = ops.lab_transfer(f, t, skin_t).round().clamp(0, 255)
        target[:, :, by0:by1, bx0:bx1] = ops.alpha_blend(f, t, m[None, None]).round().clamp(0, 255)
    new = target[0].permute(1, 2, 0).to(torch.uint8)
    # paste where the swap may have changed the region (clipped to the frame)
    H, W = out.shape[:2]
    x0, y0 = fm.origin
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + rw, W), min(y0 + rh, H)
    if fx1 <= fx0 or fy1 <= fy0:
        return
    sub = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    w = where[sub]
    dst = out[fy0:fy1, fx0:fx1]
    dst.copy_(torch.where(w[..., None], new[sub], dst))
    changed[fy0:fy1, fx0:fx1] |= w


def swap_faces_torch(frame: torch.Tensor, faces: Sequence[Face], source: SourceFace, config: SwapConfig,
                     texture_cache: dict | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap ``source`` into each of ``faces`` of ``frame`` on ``frame``'s device.

    The device counterpart of :func:`swapline.pipeline.frame.swap_faces` with the built-in swapper
    and no mask models or enhancer.

    Args:
        frame: ``(H, W, 3) uint8`` BGR on any torch device; not modified.
        faces: target faces with meshes (frame pixels), already selected.
        source: from :func:`swapline.swap.mesh.prepare_source`.
        texture_cache: a dict kept by the caller across calls (e.g. a video job), so each source
            pyramid level is uploaded once; None uploads per call.
    Returns:
        ``(out (H, W, 3) uint8, changed (H, W) bool)`` on the frame's device; every pixel outside
        ``changed`` is bit-identical to ``frame``.
    Raises:
        ConfigError: ``config`` asks for something the device path does not do (see
            :func:`unsupported_options`).
    """
    bad = unsupported_options(config)
    if bad:
        raise ConfigError("not supported on the device (torch) swap path: " + ", ".join(bad)
                          + " (use the CPU path, or turn them off)")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != torch.uint8:
        raise ValueError(f"frame must be (H, W, 3) uint8, got {tuple(frame.shape)} {frame.dtype}")
    out = frame.clone()
    changed = torch.zeros(frame.shape[:2], dtype=torch.bool, device=frame.device)
    with torch.no_grad():
        for face in faces:
            _swap_one(out, changed, face, source, config, texture_cache)
    return out, changed
