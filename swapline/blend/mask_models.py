"""Model-made masks: XSeg occlusion (and the plumbing the face parser shares).

Mask models work on the face aligned to the model's template (``spec.template`` at ``spec.size`` px) and
give a ``(S, S) float32`` 0..1 mask in that crop, together with the image -> crop affine. Where the
mask is wanted — a frame region, a swapper's canvas, another crop — :func:`warp_mask` takes it
there; everywhere the model did not see (outside its crop) the mask is exactly 0. Combine these
with the other masks by their minimum (:func:`swapline.blend.masks.combine_min`).

* Occlusion (``--face-mask-types occlusion``): the mask is the probability that a pixel shows
  the unoccluded face (hands, hair, glasses in front of the face read 0). FaceFusion's XSeg
  exports output that directly; VisoMaster's DFL file outputs the occluder probability, which
  is inverted (``spec.inverted``).
* Region (``--face-mask-types region``): from the face parser's classes
  (:func:`swapline.blend.parsing.region_mask`).

The edge of either mask is tightened and softened as FaceFusion does: blur (sigma ≈ 1 % of the
crop side), keep the part above 0.5 and stretch it back to 0..1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..errors import ModelError
from ..face.align import crop_box_in_frame, invert_affine, warp_to_template
from ..face.types import Face
from ..models.catalog import Normalisation
from ..models.enhance_catalog import MaskerSpec
from ..runtime.model import ModelRunner

CropMask = tuple[np.ndarray, np.ndarray]            # (mask (S, S) float32, M image -> crop (2, 3))
RegionMask = tuple[np.ndarray, tuple[int, int]]     # (mask (h, w) float32, origin (x0, y0))


def warp_mask(mask: np.ndarray, crop_from_image: np.ndarray, shape: tuple[int, int],
              image_to_target: np.ndarray | None = None) -> np.ndarray:
    """Take a crop mask into another coordinate frame.

    ``mask``: ``(S, S) float32`` over a crop with image -> crop affine ``crop_from_image``
    ``(2, 3)``. ``image_to_target``: ``(2, 3)`` affine from image pixels to the target frame
    (``None``: the image itself; for a region at ``(x0, y0)`` use :func:`region_affine`; for a
    swapper's aligned crop its own ``M``). ``shape``: ``(h, w)`` of the target. Returns
    ``(h, w) float32`` 0..1, bilinear, exactly 0 where the crop does not reach.
    """
    back = invert_affine(crop_from_image)                       # crop -> image
    if image_to_target is not None:
        a = np.vstack([np.asarray(image_to_target, np.float64), [0.0, 0.0, 1.0]])
        b = np.vstack([back, [0.0, 0.0, 1.0]])
        back = (a @ b)[:2]
    out = cv2.warpAffine(np.asarray(mask, np.float32), back, (int(shape[1]), int(shape[0])),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return np.clip(out, 0.0, 1.0, out=out)


def region_affine(origin: Sequence[float]) -> np.ndarray:
    """Image -> region affine for a region whose top-left pixel is ``origin`` ``(x0, y0)``."""
    return np.array([[1.0, 0.0, -float(origin[0])], [0.0, 1.0, -float(origin[1])]])


def tighten(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Blur by ``sigma`` px, keep the part above 0.5, stretch to 0..1 (FaceFusion's edge rule);
    an all-0 or all-1 mask is unchanged. ``sigma <= 0`` returns the mask clipped to 0..1."""
    m: np.ndarray = np.clip(np.asarray(mask, np.float32), 0.0, 1.0)
    if sigma <= 0:
        return m
    m = cv2.GaussianBlur(m, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE)
    m = (m - 0.5) * 2.0
    m[m > 1.0 - 1e-5] = 1.0  # the blur's rounding must not turn a flat 1 into 0.9999999
    return np.clip(m, 0.0, 1.0, out=m)


class MaskModel:
    """Shared plumbing: input layout and size from the session, alignment; the session runs
    through a :class:`~swapline.runtime.model.ModelRunner` (input type, a batch fixed at 1, at
    most ``max_batch`` faces per call)."""

    def __init__(self, session: Any, spec: MaskerSpec, smooth: float = 0.01, *,
                 max_batch: int | None = None) -> None:
        self.session = session
        self.spec = spec
        self.smooth = float(smooth)
        self.runner = ModelRunner(session, name=spec.name, max_batch=max_batch)
        inputs = list(self.runner.inputs.values())
        if len(inputs) != 1:
            raise ModelError(f"{spec.name}: expected one input, got {[i.name for i in inputs]}")
        self._input = inputs[0]
        shape = list(self._input.shape)
        layout = spec.normalisation.layout
        if len(shape) == 4 and shape[1] == 3 and shape[3] != 3:
            layout = "nchw"
        elif len(shape) == 4 and shape[3] == 3 and shape[1] != 3:
            layout = "nhwc"
        self.layout = layout
        side = shape[2] if layout == "nchw" else shape[1] if len(shape) == 4 else None
        self.model_size = side if isinstance(side, int) and side > 0 else spec.size
        self._output = self.runner.outputs[0].name

    @property
    def batch_one(self) -> bool:
        """Whether the model's batch axis is fixed at 1 (one call per face)."""
        return self.runner.batch_one

    @property
    def calls(self) -> int:
        """Model calls made so far."""
        return self.runner.calls

    def _tensor(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """``N`` BGR uint8 crops -> ``(N, 3, s, s)`` or ``(N, s, s, 3) float32`` at the model's
        side ``s`` (cast to the model's type by the runner)."""
        norm: Normalisation = self.spec.normalisation
        s = self.model_size
        x: np.ndarray = np.stack([c if c.shape[0] == s else cv2.resize(c, (s, s), interpolation=cv2.INTER_AREA)
                      for c in crops]).astype(np.float32)
        if norm.channels == "rgb":
            x = x[..., ::-1]
        x = (x - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
        if self.layout == "nchw":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def _forward(self, crops: Sequence[np.ndarray]) -> list[np.ndarray]:
        y = np.asarray(self.runner.run({self._input.name: self._tensor(crops)}, [self._output])[0])
        return self._decode(y)

    def _decode(self, y: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def crop_masks(self, frame: np.ndarray, faces: Sequence[Face]) -> list[CropMask]:
        """One ``(mask (S, S) float32, M image -> crop)`` per face, in the model's aligned crop."""
        if not faces:
            return []
        s = self.spec.size
        aligned = [warp_to_template(frame, f.kps, self.spec.template, s) for f in faces]
        raw = self._forward([c for c, _ in aligned])
        out: list[CropMask] = []
        for (_, m), r in zip(aligned, raw):
            r = np.asarray(r, np.float32)
            if r.shape != (s, s):
                r = cv2.resize(r, (s, s), interpolation=cv2.INTER_LINEAR)
            out.append((tighten(r, self.smooth * s), m))
        return out

    def masks(self, frame: np.ndarray, faces: Sequence[Face]) -> list[RegionMask]:
        """One ``(mask (h, w) float32, origin (x0, y0))`` per face over the frame region its crop
        covers (may stick out of the frame, as :func:`~swapline.blend.paste.paste_back` allows);
        0 outside the crop."""
        out: list[RegionMask] = []
        for mask, m in self.crop_masks(frame, faces):
            x0, y0, x1, y1 = crop_box_in_frame(m, self.spec.size)
            out.append((warp_mask(mask, m, (y1 - y0, x1 - x0), region_affine((x0, y0))), (x0, y0)))
        return out


class OcclusionMasker(MaskModel):
    """XSeg: ``(N, S, S, 1)`` or ``(N, 1, S, S)`` probability -> keep mask (1 = visible face)."""

    def _decode(self, y: np.ndarray) -> list[np.ndarray]:
        if y.ndim == 4:
            y = y[..., 0] if y.shape[-1] == 1 else y[:, 0]
        y = np.clip(y.astype(np.float32), 0.0, 1.0)
        if self.spec.inverted:
            y = 1.0 - y
        return list(y)
