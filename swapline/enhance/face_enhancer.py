"""GFPGAN / CodeFormer / GPEN / RestoreFormer++ face enhancers over ONNX Runtime.

For every face: align it to the model's template (``spec.template`` at ``spec.size`` px), scale
RGB to [-1, 1] NCHW, run all faces of the call as **one batch** (one call per face when the model's
batch is fixed at 1), clip and scale back to uint8, and hand back a patch for
:func:`swapline.blend.paste.paste_back`.

The patch is built from the *change* the model made, not from the restored crop itself:
``patch = region + blend * warp_back(restored - crop)``. Where the model returns its input the
change is exactly zero and the patch is bit-identical to the frame (no resampling loss from the
warp there and back); elsewhere it equals the warped-back restored face up to the detail the
round trip would have blurred anyway, and a face larger than the model's crop keeps the frame's
finer detail. The alpha is a feathered box over the crop, warped into the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from ..blend.masks import box_mask
from ..blend.paste import crop_with_padding, paste_back
from ..errors import ModelError
from ..face.align import crop_box_in_frame, invert_affine, warp_to_template
from ..face.types import Face
from ..models.catalog import Normalisation
from ..models.enhance_catalog import EnhancerSpec
from ..runtime.model import ModelRunner, tensor_info

Patch = tuple[np.ndarray, np.ndarray, tuple[int, int]]

def to_tensor(crops: Sequence[np.ndarray], norm: Normalisation, dtype: Any = np.float32) -> np.ndarray:
    """``N`` BGR uint8 crops ``(S, S, 3)`` -> ``(N, 3, S, S)`` ``dtype`` (or NHWC per
    ``norm.layout``)."""
    x: np.ndarray = np.stack(crops).astype(np.float32)
    if norm.channels == "rgb":
        x = x[..., ::-1]
    x = (x - np.asarray(norm.mean, np.float32)) / np.asarray(norm.std, np.float32)
    if norm.layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x, dtype=dtype)


def from_tensor(y: np.ndarray, norm: Normalisation, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """``(N, 3, S, S)`` model output in ``[lo, hi]`` -> ``(N, S, S, 3)`` BGR uint8 (clipped, rounded)."""
    y = np.clip(np.asarray(y, np.float32), lo, hi)
    if norm.layout == "nchw":
        y = y.transpose(0, 2, 3, 1)
    y = y * np.asarray(norm.std, np.float32) + np.asarray(norm.mean, np.float32)
    if norm.channels == "rgb":
        y = y[..., ::-1]
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def crop_to_region(m: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
    """Affine ``(2, 3)`` taking crop pixels to the pixels of a frame region at ``origin``."""
    inv = invert_affine(m)
    inv[:, 2] -= np.asarray(origin, np.float64)
    return inv


class FaceEnhancer:
    """A loaded enhancer: ``session`` is an ``onnxruntime.InferenceSession`` (or anything with
    ``get_inputs``, ``get_outputs`` and ``run``), ``spec`` its :class:`EnhancerSpec`. The session
    runs through a :class:`~swapline.runtime.model.ModelRunner` (input types, a batch fixed at 1,
    at most ``max_batch`` faces per call)."""

    def __init__(self, session: Any, spec: EnhancerSpec, *, mask_blur: float = 0.1,
                 mask_padding: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0),
                 max_batch: int | None = None) -> None:
        self.session = session
        self.spec = spec
        self.mask_blur = float(mask_blur)
        self.mask_padding = mask_padding
        inputs = [tensor_info(i) for i in session.get_inputs()]
        by_name = {i.name: i for i in inputs}
        image = next((by_name[n] for n in spec.image_inputs if n in by_name), None)
        if image is None:
            four_d = [i for i in inputs if len(i.shape) == 4]
            if len(four_d) != 1:
                raise ModelError(f"{spec.name}: cannot tell the image input among "
                                 f"{[i.name for i in inputs]}")
            image = four_d[0]
        self._image = image
        self._weight = next((by_name[n] for n in spec.weight_inputs if n in by_name), None)
        if spec.weight_inputs and self._weight is None:
            others = [i for i in inputs if i.name != image.name]
            self._weight = others[0] if len(others) == 1 else None
        extra = [i.name for i in inputs if i.name not in (image.name, getattr(self._weight, "name", None))]
        if extra:
            raise ModelError(f"{spec.name}: unexpected model inputs {extra}")
        shared = (self._weight.name,) if self._weight is not None else ()
        self.runner = ModelRunner(session, name=spec.name, shared=shared, max_batch=max_batch)
        names = [o.name for o in self.runner.outputs]
        if spec.output_name is not None and spec.output_name in names:
            self._output = spec.output_name
        else:
            images = [o.name for o in self.runner.outputs if len(o.shape) == 4]
            self._output = images[0] if images else names[0]
        self._alpha: np.ndarray | None = None

    @property
    def batch_one(self) -> bool:
        """Whether the model's batch axis is fixed at 1 (one call per face)."""
        return self.runner.batch_one

    @property
    def calls(self) -> int:
        """Model calls made so far (for tests and metrics)."""
        return self.runner.calls

    # -- model ---------------------------------------------------------------------------------
    def _weight_feed(self, weight: float) -> np.ndarray:
        w = self._weight
        assert w is not None
        if len(w.shape) == 0:
            return np.asarray(weight, dtype=np.float64)
        # Both known exports declare ``[1]`` (one weight for the whole batch).
        return np.full((1,) * len(w.shape), weight, dtype=np.float64)

    def run(self, crops: Sequence[np.ndarray], weight: float = 0.5) -> list[np.ndarray]:
        """Restore aligned BGR uint8 crops ``(S, S, 3)``; returns restored crops of the same size."""
        if not crops:
            return []
        feeds = {self._image.name: to_tensor(crops, self.spec.normalisation)}
        if self._weight is not None:
            feeds[self._weight.name] = self._weight_feed(weight)  # cast to the model's type by the runner
        y = self.runner.run(feeds, [self._output])[0]
        size = self.spec.size
        out: list[np.ndarray] = []
        for img in from_tensor(y, self.spec.normalisation):
            if img.shape[:2] != (size, size):
                img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
            out.append(img)
        return out

    # -- frames --------------------------------------------------------------------------------
    def crop_alpha(self) -> np.ndarray:
        """The feathered box ``(S, S) float32`` over the model's crop (cached)."""
        if self._alpha is None:
            s = self.spec.size
            self._alpha = box_mask((s, s), (0.0, 0.0, float(s), float(s)), self.mask_padding, self.mask_blur)
        return self._alpha

    def enhance(self, frame: np.ndarray, faces: Sequence[Face], *, blend: float = 0.8,
                weight: float = 0.5) -> list[Patch]:
        """Enhance every face of ``frame`` ``(H, W, 3) uint8`` BGR.

        ``blend`` (``--face-enhancer-blend`` / 100): 0 keeps the original, 1 the model's face.
        ``weight``: CodeFormer's fidelity weight (ignored by models without that input).
        Returns one ``(patch (h, w, 3) uint8, alpha (h, w) float32, origin (x0, y0))`` per face,
        in order, for :func:`~swapline.blend.paste.paste_back`; ``alpha`` is exactly 0 outside
        the face's crop, so nothing else in the frame changes.
        """
        if not 0.0 <= blend <= 1.0:
            raise ValueError(f"blend must be in 0..1, got {blend}")
        size, template = self.spec.size, self.spec.template
        aligned = [warp_to_template(frame, f.kps, template, size) for f in faces]
        restored = self.run([c for c, _ in aligned], weight) if blend > 0.0 else [None] * len(aligned)
        patches: list[Patch] = []
        for (crop, m), new in zip(aligned, restored):
            x0, y0, x1, y1 = crop_box_in_frame(m, size)
            region, origin = crop_with_padding(frame, (x0, y0, x1, y1))
            shape = (x1 - x0, y1 - y0)
            to_region = crop_to_region(m, origin)
            alpha = cv2.warpAffine(self.crop_alpha(), to_region, shape, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
            if new is None:
                patches.append((region, alpha, origin))
                continue
            delta: np.ndarray = new.astype(np.float32) - crop.astype(np.float32)
            delta = cv2.warpAffine(delta, to_region, shape, flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0, 0.0, 0.0))
            patch = region.astype(np.float32) + np.float32(blend) * delta
            patches.append((np.clip(np.rint(patch), 0, 255).astype(np.uint8), alpha, origin))
        return patches

    def enhance_frame(self, frame: np.ndarray, faces: Sequence[Face], *, blend: float = 0.8,
                      weight: float = 0.5) -> np.ndarray:
        """:meth:`enhance` and paste every patch back; returns a new frame."""
        out = frame.copy()
        for patch, alpha, origin in self.enhance(frame, faces, blend=blend, weight=weight):
            paste_back(out, patch, alpha, origin, out=out)
        return out
