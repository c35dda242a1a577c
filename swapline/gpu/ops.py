"""Image operations in torch: the device versions of the CPU path's OpenCV/numpy steps.

They run on any torch device (tests use CPU tensors and compare with OpenCV). Conventions:

* frames as they come from the decoder: ``(H, W, 3) uint8`` (HWC), see :func:`nv12_to_rgb`,
  :func:`paste`, :func:`alpha_blend`;
* crops being warped and matched: ``(B, C, H, W)`` float in 0..255 (NCHW), see
  :func:`warp_affine`, :func:`remap`, :func:`lab_transfer`; :func:`to_nchw` / :func:`to_hwc`
  convert between the two.

Pixel coordinates are OpenCV's: integer coordinates are pixel centres; affine matrices map source
to destination like ``cv2.warpAffine``'s ``M``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# BT.601 limited ("video") range, as cv2.COLOR_YUV2RGB_NV12.
_CY = 255.0 / 219.0
_CVR = 1.402 * 255.0 / 224.0
_CVG = -0.714136 * 255.0 / 224.0
_CUG = -0.344136 * 255.0 / 224.0
_CUB = 1.772 * 255.0 / 224.0

MIN_PIXELS = 16  # as swapline.blend.color
STD_RATIO_RANGE = (0.5, 2.0)


# --- layout -----------------------------------------------------------------------------------

def to_nchw(img: torch.Tensor) -> torch.Tensor:
    """``(H, W, C)`` or ``(B, H, W, C)`` (any dtype) -> ``(B, C, H, W)`` float32."""
    if img.ndim == 3:
        img = img.unsqueeze(0)
    return img.permute(0, 3, 1, 2).float()


def to_hwc(img: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W)`` float 0..255 -> ``(B, H, W, C)`` uint8 (rounded, saturated)."""
    return img.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# --- colour conversion ------------------------------------------------------------------------

def nv12_to_rgb(y: torch.Tensor, uv: torch.Tensor, *, bgr: bool = False) -> torch.Tensor:
    """NV12 planes -> ``(H, W, 3) uint8`` RGB (BGR with ``bgr``), BT.601 limited range like
    ``cv2.cvtColor(..., cv2.COLOR_YUV2RGB_NV12)``; chroma is shared by each 2x2 block.

    ``y``: ``(H, W) uint8``; ``uv``: ``(H/2, W/2, 2) uint8`` (U, V interleaved) or the raw
    ``(H/2, W) uint8`` plane.
    """
    h, w = y.shape
    if uv.ndim == 2:
        uv = uv.reshape(h // 2, w // 2, 2)
    yf = (y.float() - 16.0) * _CY
    c = uv.float() - 128.0
    c = c.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)[:h, :w]
    u, v = c[..., 0], c[..., 1]
    r = yf + _CVR * v
    g = yf + _CVG * v + _CUG * u
    b = yf + _CUB * u
    out = torch.stack((b, g, r) if bgr else (r, g, b), dim=-1)
    return out.round().clamp(0, 255).to(torch.uint8)


# --- geometry ---------------------------------------------------------------------------------

def _as_batch(m: torch.Tensor, b: int) -> torch.Tensor:
    m = torch.as_tensor(m)
    if m.ndim == 2:
        m = m.unsqueeze(0)
    return m.expand(b, 2, 3) if m.shape[0] == 1 and b > 1 else m


def invert_affine(m: torch.Tensor) -> torch.Tensor:
    """Inverse of ``(B, 2, 3)`` affine matrices (float64)."""
    m = m.double()
    a = m[:, :, :2]
    t = m[:, :, 2:]
    ai = torch.linalg.inv(a)
    return torch.cat([ai, -ai @ t], dim=2)


def _normalise(x: torch.Tensor, y: torch.Tensor, in_w: int, in_h: int) -> torch.Tensor:
    """Pixel coordinates -> grid_sample's [-1, 1] (align_corners=True: -1 and 1 are the centres
    of the first and last pixel)."""
    gx = x * (2.0 / max(in_w - 1, 1)) - 1.0
    gy = y * (2.0 / max(in_h - 1, 1)) - 1.0
    return torch.stack((gx, gy), dim=-1)


def _sample(img: torch.Tensor, grid: torch.Tensor, border: str, mode: str) -> torch.Tensor:
    if border not in ("constant", "replicate", "reflect"):
        raise ValueError(f"border {border!r}: use constant, replicate or reflect")
    padding = {"constant": "zeros", "replicate": "border", "reflect": "reflection"}[border]
    out = F.grid_sample(img.float(), grid.to(torch.float32), mode=mode, padding_mode=padding,
                        align_corners=True)
    return out


def warp_affine(img: torch.Tensor, m: torch.Tensor, out_size: Sequence[int], *,
                border: str = "constant", mode: str = "bilinear") -> torch.Tensor:
    """Like ``cv2.warpAffine(img, M, out_size, flags=INTER_LINEAR)`` for a batch.

    ``img``: ``(B, C, H, W)`` float; ``m``: ``(B, 2, 3)`` or ``(2, 3)`` source->destination;
    ``out_size``: ``(width, height)`` as in OpenCV. ``border``: ``constant`` (zeros),
    ``replicate`` or ``reflect``. Returns ``(B, C, height, width)`` float32.
    """
    b, _, in_h, in_w = img.shape
    out_w, out_h = int(out_size[0]), int(out_size[1])
    inv = invert_affine(_as_batch(m, b).to(img.device))
    ys, xs = torch.meshgrid(torch.arange(out_h, device=img.device, dtype=torch.float64),
                            torch.arange(out_w, device=img.device, dtype=torch.float64), indexing="ij")
    sx = inv[:, 0, 0, None, None] * xs + inv[:, 0, 1, None, None] * ys + inv[:, 0, 2, None, None]
    sy = inv[:, 1, 0, None, None] * xs + inv[:, 1, 1, None, None] * ys + inv[:, 1, 2, None, None]
    return _sample(img, _normalise(sx, sy, in_w, in_h), border, mode)


def remap(img: torch.Tensor, map_x: torch.Tensor, map_y: torch.Tensor, *, border: str = "constant",
          mode: str = "bilinear") -> torch.Tensor:
    """Like ``cv2.remap(img, map_x, map_y, INTER_LINEAR)``: ``out[y, x] = img[map_y[y, x],
    map_x[y, x]]``. ``img``: ``(B, C, H, W)``; maps: ``(H', W')`` or ``(B, H', W')`` float pixel
    coordinates. Returns ``(B, C, H', W')`` float32."""
    b, _, in_h, in_w = img.shape
    mx, my = torch.as_tensor(map_x, device=img.device), torch.as_tensor(map_y, device=img.device)
    if mx.ndim == 2:
        mx, my = mx.expand(b, *mx.shape), my.expand(b, *my.shape)
    return _sample(img, _normalise(mx.double(), my.double(), in_w, in_h), border, mode)


# --- masks ------------------------------------------------------------------------------------

def _disk(radius: float, device: torch.device) -> torch.Tensor:
    r = int(math.floor(radius))
    ax = torch.arange(-r, r + 1, device=device, dtype=torch.float32)
    return ((ax[:, None] ** 2 + ax[None, :] ** 2) <= radius * radius).float()


def erode(binary: torch.Tensor, radius: float) -> torch.Tensor:
    """Keep pixels whose every neighbour within ``radius`` (Euclidean) is inside; outside the
    image counts as outside. ``binary``: ``(B, 1, H, W)`` float 0/1."""
    if radius <= 0:
        return binary.clone()
    k = _disk(radius, binary.device)
    r = k.shape[-1] // 2
    outside = F.pad(1.0 - binary, (r, r, r, r), value=1.0)
    hits = F.conv2d(outside, k[None, None])
    return (hits < 0.5).float()


def gaussian_blur(img: torch.Tensor, ksize: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian like ``cv2.GaussianBlur(..., borderType=BORDER_CONSTANT)``.
    ``img``: ``(B, C, H, W)`` float."""
    r = ksize // 2
    ax = torch.arange(-r, r + 1, device=img.device, dtype=torch.float64)
    g = torch.exp(-0.5 * (ax / sigma) ** 2)
    g = (g / g.sum()).float()
    c = img.shape[1]
    out = F.conv2d(F.pad(img, (r, r, 0, 0)), g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r)), g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def feather_mask(mask: torch.Tensor, erode_px: float, blur_px: float) -> torch.Tensor:
    """The device version of ``swapline.blend.masks.feather``: erode by ``erode_px + blur_px/2``,
    blur with sigma ``blur_px / 4`` (kernel radius ``blur_px / 2``), zero outside the mask eroded
    by ``erode_px``. ``mask``: ``(H, W)`` or ``(B, 1, H, W)``, bool / uint8 / float (> 0.5 is
    inside). Returns float32 0..1 of the same layout."""
    squeeze = mask.ndim == 2
    m = mask[None, None] if squeeze else mask
    if m.dtype == torch.bool:
        binary = m.float()
    elif m.dtype == torch.uint8:
        binary = (m > (127 if int(m.max()) > 1 else 0)).float()
    else:
        binary = (m > 0.5).float()
    erode_px, blur_px = max(float(erode_px), 0.0), max(float(blur_px), 0.0)
    radius = blur_px / 2.0
    core = erode(binary, erode_px + radius)
    if radius < 0.5:
        out = core
    else:
        k = 2 * int(math.floor(radius)) + 1
        out = gaussian_blur(core, k, radius / 2.0)
        inner = erode(binary, erode_px) if erode_px > 0 else binary
        out = (out * inner).clamp(0.0, 1.0)
    return out[0, 0] if squeeze else out


# --- colour matching --------------------------------------------------------------------------

_RGB2XYZ = torch.tensor([[0.412453, 0.357580, 0.180423],
                         [0.212671, 0.715160, 0.072169],
                         [0.019334, 0.119193, 0.950227]], dtype=torch.float64)
_WHITE = (0.950456, 1.0, 1.088754)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB 0..1 -> CIELAB (L 0..100), OpenCV's float formulas (D65)."""
    lin = torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055).clamp(min=0) ** 2.4)
    xyz = torch.einsum("ij,bjhw->bihw", _RGB2XYZ.to(rgb.device, rgb.dtype), lin)
    xyz = xyz / torch.tensor(_WHITE, device=rgb.device, dtype=rgb.dtype).view(1, 3, 1, 1)
    f = torch.where(xyz > 0.008856, xyz.clamp(min=1e-12) ** (1 / 3), 7.787 * xyz + 16 / 116)
    y = xyz[:, 1:2]
    L = torch.where(y > 0.008856, 116 * f[:, 1:2] - 16, 903.3 * y)
    a = 500 * (f[:, 0:1] - f[:, 1:2])
    b = 200 * (f[:, 1:2] - f[:, 2:3])
    return torch.cat([L, a, b], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_lab`; RGB clipped to 0..1."""
    L, a, b = lab[:, 0:1], lab[:, 1:2], lab[:, 2:3]
    fy = (L + 16) / 116
    fx, fz = fy + a / 500, fy - b / 200
    def finv(f: torch.Tensor) -> torch.Tensor:
        return torch.where(f > 6 / 29, f ** 3, (f - 16 / 116) / 7.787)
    y = torch.where(L > 903.3 * 0.008856, fy ** 3, L / 903.3)
    xyz = torch.cat([finv(fx), y, finv(fz)], dim=1)
    xyz = xyz * torch.tensor(_WHITE, device=lab.device, dtype=lab.dtype).view(1, 3, 1, 1)
    lin = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(_RGB2XYZ).to(lab.device, lab.dtype), xyz).clamp(0, 1)
    return torch.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055).clamp(0, 1)


def lab_transfer(face: torch.Tensor, target: torch.Tensor, stats_mask: torch.Tensor, *,
                 bgr: bool = True) -> torch.Tensor:
    """Reinhard LAB mean/std transfer like ``swapline.blend.color.lab_transfer``, batched.

    ``face``, ``target``: ``(B, 3, H, W)`` float 0..255 (BGR unless ``bgr=False``);
    ``stats_mask``: ``(B, 1, H, W)`` or ``(B, H, W)`` (> 0.5 or True: statistics pixels). Per
    channel ``out = (face - mean_f) * clip(std_t / std_f, 0.5, 2) + mean_t`` over the mask, in
    float CIELAB. Items with fewer than 16 mask pixels are returned unchanged. Returns float
    0..255, same layout.
    """
    mask = stats_mask if stats_mask.ndim == 4 else stats_mask[:, None]
    mask = (mask > 0.5).to(torch.float64) if mask.dtype != torch.bool else mask.to(torch.float64)
    order = [2, 1, 0] if bgr else [0, 1, 2]
    lab_f = rgb_to_lab(face.double()[:, order] / 255.0)
    lab_t = rgb_to_lab(target.double()[:, order] / 255.0)
    n = mask.sum(dim=(2, 3), keepdim=True)
    safe = n.clamp(min=1)
    def stats(lab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = (lab * mask).sum(dim=(2, 3), keepdim=True) / safe
        var = (((lab - mean) ** 2) * mask).sum(dim=(2, 3), keepdim=True) / safe
        return mean, var.sqrt()
    mean_f, std_f = stats(lab_f)
    mean_t, std_t = stats(lab_t)
    ratio = (std_t / std_f.clamp(min=1e-3)).clamp(*STD_RATIO_RANGE)
    lab = (lab_f - mean_f) * ratio + mean_t
    # the range OpenCV's 8-bit LAB (the CPU path) can hold: L 0..100, a and b -128..127
    lab = torch.cat([lab[:, :1].clamp(0, 100), lab[:, 1:].clamp(-128, 127)], dim=1)
    moved = lab_to_rgb(lab)[:, order] * 255.0
    keep = (n < MIN_PIXELS).view(-1, 1, 1, 1)
    return torch.where(keep, face.double(), moved).to(face.dtype if face.is_floating_point() else torch.float32)


# --- blending ---------------------------------------------------------------------------------

def alpha_blend(fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``fg * alpha + bg * (1 - alpha)`` with ``alpha`` broadcast over channels (float out).
    For uint8 images use :func:`paste`, which rounds like the CPU path."""
    a = alpha.float()
    if a.ndim == fg.ndim - 1:
        a = a.unsqueeze(-1) if fg.shape[-1] in (1, 3, 4) and fg.shape[:-1] == a.shape else a.unsqueeze(-3)
    return fg.float() * a + bg.float() * (1.0 - a)


def blend_u8(background: torch.Tensor, patch: torch.Tensor, alpha8: torch.Tensor) -> torch.Tensor:
    """Bit-exact device version of ``swapline.blend.paste.blend_u8`` (HWC uint8)."""
    a = alpha8.to(torch.int32).unsqueeze(-1)
    x = patch.to(torch.int32) * a + background.to(torch.int32) * (255 - a) + 128
    x = (x + (x >> 8)) >> 8
    return x.to(torch.uint8)


def paste(frame: torch.Tensor, patch: torch.Tensor, alpha: torch.Tensor, origin: Sequence[int], *,
          inplace: bool = False) -> torch.Tensor:
    """Blend ``patch`` into ``frame`` at ``origin`` like ``swapline.blend.paste.paste_back``.

    ``frame``: ``(H, W, C) uint8``; ``patch``: ``(h, w, C) uint8``; ``alpha``: ``(h, w)`` float
    0..1 (quantised to 0..255 with rounding, as the CPU path); ``origin``: ``(x0, y0)``, the part
    outside the frame is dropped. Returns a new frame, or ``frame`` itself with ``inplace``.
    """
    out = frame if inplace else frame.clone()
    H, W = frame.shape[:2]
    h, w = patch.shape[:2]
    x0, y0 = int(origin[0]), int(origin[1])
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + w, W), min(y0 + h, H)
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    px0, py0 = fx0 - x0, fy0 - y0
    px1, py1 = px0 + (fx1 - fx0), py0 + (fy1 - fy0)
    a8 = (alpha[py0:py1, px0:px1].float().clamp(min=0) * 255.0).round().clamp(max=255).to(torch.uint8)
    region = out[fy0:fy1, fx0:fx1]
    region.copy_(blend_u8(region, patch[py0:py1, px0:px1], a8))
    return out
