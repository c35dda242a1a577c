"""The face parser's classes, per face, and what the swap reads from them.

BiSeNet (face-parsing.PyTorch; CelebAMask-HQ's 19 classes,
:data:`~swapline.models.enhance_catalog.PARSER_CLASSES`) runs on each face aligned to its
template; a :class:`FaceParse` keeps the class of every crop pixel and the image -> crop affine.
From one parse:

* :func:`clean_source`: a source face without its glasses frames (painted over from the skin
  around them; the eyes behind the lenses are its own), and the texels that are not face (hair,
  hat, ears, earrings, neck, cloth, background): never pasted;
* :func:`occluder_mask`: what of a target stays in front of the swap: its hair and hat, and the
  frames of its glasses (the lens area, where the eye shows through, is swapped);
* :func:`region_mask`: FaceFusion's region mask (``--face-mask-types region``);
* :func:`carry`: a parse made on a detection frame, moved with the face's mesh to a later frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import ConfigError
from ..face import mesh_topology as topo
from ..face.align import warp_to_template
from ..face.types import Face
from ..models.enhance_catalog import PARSER_CLASSES, REGIONS
from .mask_models import MaskModel, region_affine, tighten, warp_mask
from .masks import area_mask, disc

_C = PARSER_CLASSES
#: classes a source texel may come from: skin, brows, eyes, nose, mouth, lips
SOURCE_CLASSES: tuple[int, ...] = tuple(sorted(_C[n] for n in (
    "skin", "left-eyebrow", "right-eyebrow", "left-eye", "right-eye", "nose", "mouth", "upper-lip", "lower-lip")))
#: classes of a target that stay in front of the swap whole
OCCLUDER_CLASSES: tuple[int, ...] = (_C["hair"], _C["hat"])
GLASSES: int = _C["glasses"]
SKIN: int = _C["skin"]
# a glasses pixel is frame (kept) when its CIELAB distance from the target's skin is above this:
# chroma both ways, lightness only darker than skin (a lens' glint is no frame)
FRAME_DISTANCE = 22.0
FRAME_DARK_WEIGHT = 0.7
# a thin frame: off the local median (over this fraction of the face width) by this much (8-bit LAB)
FRAME_DETAIL_SIZE, FRAME_DETAIL = 0.05, 12.0
FRAME_RIM = 0.03  # a thick rim: within this fraction of the face width of the glasses' outline
# fractions of the face width: the eyes (with lashes) are never frame; specks below OPEN are
# noise; occluders grow by GROW so their own edge pixels stay whole, then soften over SOFT
EYES_GROW, OPEN, GROW, SOFT = 0.02, 0.006, 0.006, 0.005
RIM_BAND = 0.035  # a source's glasses are painted over this far inside their outline (face widths)
INPAINT_GROW = 0.012  # a source's frames are painted over this far around (face widths)
_OVAL = topo.as_array(topo.FACE_OVAL)


@dataclass(frozen=True, eq=False)
class FaceParse:
    """The parser's classes for one face.

    Attributes:
        labels: ``(S, S) uint8`` class of each pixel of the aligned crop.
        crop_from_image: ``(2, 3) float64`` image -> crop affine.
        mesh: ``(468, 2) float32`` the face's mesh when it was parsed (image pixels), for
            :func:`carry`; None for a face without a mesh.
    """

    labels: np.ndarray
    crop_from_image: np.ndarray
    mesh: np.ndarray | None = None

    def mask(self, classes: Sequence[int], shape: tuple[int, int], origin: Sequence[float] = (0, 0)) -> np.ndarray:
        """``(h, w) float32`` 0..1: where the class is one of ``classes``, over a region of
        ``shape`` whose top-left image pixel is ``origin`` (bilinear; 0 beyond the crop)."""
        hit = np.isin(self.labels, np.asarray(classes, np.uint8)).astype(np.float32)
        return warp_mask(hit, self.crop_from_image, shape, region_affine(origin))


class FaceParser(MaskModel):
    """BiSeNet: ``(N, 19, S, S)`` logits -> one :class:`FaceParse` per face (arg-max class)."""

    def _decode(self, y: np.ndarray) -> list[np.ndarray]:
        return list(np.asarray(y).argmax(axis=1).astype(np.uint8))

    def parse(self, frame: np.ndarray, faces: Sequence[Face]) -> list[FaceParse]:
        """Parse each face of ``frame`` ``(H, W, 3) uint8`` BGR (one batch through the model)."""
        if not faces:
            return []
        s = self.spec.size
        aligned = [warp_to_template(frame, f.kps, self.spec.template, s) for f in faces]
        out = []
        for face, (_, m), lab in zip(faces, aligned, self._forward([c for c, _ in aligned])):
            if lab.shape != (s, s):
                lab = cv2.resize(lab, (s, s), interpolation=cv2.INTER_NEAREST)
            mesh = None if face.mesh is None else np.asarray(face.mesh[:, :2], np.float32)
            out.append(FaceParse(lab, np.asarray(m, np.float64), mesh))
        return out


def similarity_2d(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``(2, 3) float64`` least-squares similarity (scale, rotation, shift) taking ``src``
    ``(N, 2)`` onto ``dst`` ``(N, 2)``."""
    a = np.asarray(src, np.float64)[:, 0] + 1j * np.asarray(src, np.float64)[:, 1]
    b = np.asarray(dst, np.float64)[:, 0] + 1j * np.asarray(dst, np.float64)[:, 1]
    am, bm = a.mean(), b.mean()
    k = np.vdot(a - am, b - bm) / max(float(np.vdot(a - am, a - am).real), 1e-12)  # b ≈ k a + t
    t = bm - k * am
    return np.array([[k.real, -k.imag, t.real], [k.imag, k.real, t.imag]])


def carry(parse: FaceParse, mesh: np.ndarray) -> FaceParse:
    """The parse of a face that has moved to ``mesh`` ``(468, 2+)`` since it was parsed: the
    crop affine composed with the similarity from the new mesh to the old one."""
    if parse.mesh is None:
        return parse
    now = np.asarray(mesh, np.float32)[:, :2]
    back = np.vstack([similarity_2d(now, parse.mesh), [0.0, 0.0, 1.0]])        # now -> then
    m = np.vstack([parse.crop_from_image, [0.0, 0.0, 1.0]]) @ back             # now -> crop
    return FaceParse(parse.labels, m[:2], now)


def region_mask(parse: FaceParse, regions: Sequence[str], smooth: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """FaceFusion's region mask: ``(mask (S, S) float32, M image -> crop)``, 1 where the class is
    one of ``regions`` (:data:`~swapline.models.enhance_catalog.REGIONS`), its edge tightened and
    softened by ``smooth`` of the crop side (:func:`~swapline.blend.mask_models.tighten`).

    Raises:
        ConfigError: an unknown region name, or none.
    """
    unknown = [r for r in regions if r not in REGIONS]
    if unknown or not regions:
        raise ConfigError(f"face mask regions: unknown {unknown or 'none given'}; choose from " + ", ".join(REGIONS))
    ids = sorted({c for r in regions for c in REGIONS[r]})
    hit = np.isin(parse.labels, np.asarray(ids, np.uint8)).astype(np.float32)
    return tighten(hit, smooth * parse.labels.shape[0]), parse.crop_from_image


def source_exclude(parse: FaceParse, shape: tuple[int, int], origin: Sequence[float] = (0, 0)) -> np.ndarray:
    """``(h, w) bool``: source texels that are not face (the parser's hair, hat, glasses, ears,
    earring, neck, cloth or background, and everything beyond its crop)."""
    return parse.mask(SOURCE_CLASSES, shape, origin) < 0.5


def clean_source(image: np.ndarray, parse: FaceParse, origin: Sequence[float], mesh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A source face made ready to paste: its glasses frames (:func:`glasses_frames`, and the band
    of :data:`RIM_BAND` along the glasses' outline) painted over from the skin around them (the
    eyes behind the lenses are the source's own and stay), and what is not face.

    Args:
        image: ``(h, w, 3) uint8`` BGR region of the source image around the face.
        parse: the face's parse. origin: ``(x0, y0)`` of the region in image pixels.
        mesh: ``(468, 2+)`` the face's mesh in region pixels.
    Returns:
        ``(image (h, w, 3) uint8 without frames, exclude (h, w) bool)``: ``exclude`` marks
        hair, hat, ears, earrings, neck, cloth, background and beyond the parser's crop.
    """
    shape = image.shape[:2]
    exclude = parse.mask((*SOURCE_CLASSES, GLASSES), shape, origin) < 0.5
    glasses = parse.mask((GLASSES,), shape, origin) > 0.5
    if not glasses.any():
        return image, exclude
    width = max(float(np.ptp(np.asarray(mesh)[_OVAL, 0])), 1.0)
    skin = parse.mask((SKIN,), shape, origin) > 0.5
    eyes = cv2.dilate(area_mask(shape, np.asarray(mesh)[:, :2], ("eyes",)), disc(EYES_GROW * width)) > 0.5
    frames = glasses_frames(image, glasses, skin, eyes, width)
    # and the band along the glasses' outline, whatever its colour (a rim of amber or clear plastic
    # passes the colour tests; it lies there by definition)
    frames |= (cv2.distanceTransform(glasses.view(np.uint8), cv2.DIST_L2, 3) < RIM_BAND * width) & glasses & ~eyes
    if not frames.any():
        return image, exclude
    frames = cv2.dilate(frames.view(np.uint8), disc(INPAINT_GROW * width))  # the rim's shadow and glint too
    return cv2.inpaint(image, frames, max(2.0, 0.02 * width), cv2.INPAINT_TELEA), exclude


def glasses_frames(image: np.ndarray, glasses: np.ndarray, skin: np.ndarray, eyes: np.ndarray,
                   width: float) -> np.ndarray:
    """``(h, w) bool``: the frames among the ``glasses`` pixels of ``image`` ``(h, w, 3) uint8``
    BGR, never the ``eyes``: a thin line unlike what is around it (lightness or colour off its
    local median over :data:`FRAME_DETAIL_SIZE` of the face ``width`` by more than
    :data:`FRAME_DETAIL`: wire rims, light or dark), or a thick rim unlike the face's ``skin``
    (CIELAB distance from its median above :data:`FRAME_DISTANCE`, lightness counted only
    darker) along the glasses' outline (:data:`FRAME_RIM`). What lies behind a lens is skin and eye, seen through glass: not a frame. Masks
    ``(h, w) bool``."""
    out = np.zeros_like(glasses)
    if not (glasses & ~eyes).any():
        return out
    k = max(3, int(FRAME_DETAIL_SIZE * width) | 1)
    # the glasses' box (and room for the median around it): the rest of the region is no frame
    x, y, bw, bh = cv2.boundingRect(glasses.view(np.uint8))
    x0, y0 = max(x - k, 0), max(y - k, 0)
    box = (slice(y0, min(y + bh + k, glasses.shape[0])), slice(x0, min(x + bw + k, glasses.shape[1])))
    glasses, skin_all, eyes = glasses[box], skin, eyes[box]
    ask = glasses & ~eyes
    lab = cv2.cvtColor(image[box], cv2.COLOR_BGR2LAB)
    local = cv2.medianBlur(lab, min(k, 255))
    d = lab[ask].astype(np.float32) - local[ask].astype(np.float32)
    detail = np.sqrt((d * d).sum(1))
    frame = detail > FRAME_DETAIL
    if skin_all.sum() >= 32:  # a thick rim lies along the glasses' outline; a lens' glint does not
        skin_lab = cv2.cvtColor(image[skin_all].reshape(-1, 1, 3), cv2.COLOR_BGR2LAB).reshape(-1, 3)
        rim = cv2.distanceTransform(glasses.view(np.uint8), cv2.DIST_L2, 3)[ask] < FRAME_RIM * width
        e = lab[ask].astype(np.float32) - np.median(skin_lab.astype(np.float32), 0)
        chroma = np.hypot(e[:, 1], e[:, 2])
        frame |= rim & (np.maximum(chroma, chroma - FRAME_DARK_WEIGHT * e[:, 0] * (100.0 / 255.0)) > FRAME_DISTANCE)
    out[box][ask] = frame
    return out


def occluder_mask(parse: FaceParse, image: np.ndarray, origin: Sequence[float], mesh: np.ndarray) -> np.ndarray:
    """What of a target face stays in front of the swap, over a region of the frame.

    Args:
        parse: the target face's parse.
        image: ``(h, w, 3) uint8`` BGR the target's own pixels in the region.
        origin: ``(x0, y0)`` of the region in frame pixels.
        mesh: ``(468, 2+)`` the face's mesh in region pixels.
    Returns:
        ``(h, w) float32`` 0..1: 1 on hair, hat and glasses frames (and their grown edge, so the
        occluder's own pixels stay whole), softened outward; 0 elsewhere.
    """
    shape = image.shape[:2]
    width = max(float(np.ptp(np.asarray(mesh)[_OVAL, 0])), 1.0)
    occ = parse.mask(OCCLUDER_CLASSES, shape, origin) > 0.5
    glasses = parse.mask((GLASSES,), shape, origin) > 0.5
    if glasses.any():
        skin = parse.mask((SKIN,), shape, origin) > 0.5
        eyes = cv2.dilate(area_mask(shape, np.asarray(mesh)[:, :2], ("eyes",)), disc(EYES_GROW * width)) > 0.5
        occ |= glasses_frames(image, glasses, skin, eyes, width)
    if not occ.any():
        return np.zeros(shape, np.float32)
    m = cv2.morphologyEx(occ.view(np.uint8), cv2.MORPH_OPEN, disc(OPEN * width))
    m = cv2.dilate(m, disc(GROW * width)).astype(np.float32)
    m = cv2.GaussianBlur(m, (0, 0), max(0.5, SOFT * width))
    grow = disc(GROW * width)
    np.maximum(m, cv2.erode(cv2.dilate(occ.view(np.uint8), grow), grow), out=m)  # ⊇ occ: exactly 1 there
    return np.clip(m, 0.0, 1.0, out=m)
