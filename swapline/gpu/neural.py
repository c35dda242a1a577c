"""A neural face swapper's frame work on the device: crop, normalise, model, de-normalise, warp
back, mask and paste, with the frame and the model's tensors on the device.

The device version of :meth:`swapline.swap.onnx_swapper.NeuralSwapper.swap` followed by
:func:`swapline.pipeline.frame._swap_neural` (mesh masks, paste): the crop matrices, the boxes the
crops land in and the mesh masks are small and made on the CPU with the same helpers; every
full-resolution step runs where the frame is. The model must run through the torch backend
(:class:`~swapline.runtime.torch_backend.TorchSession`, or anything with ``run_torch``), so its
input and output never leave the device.

Not done here (the CPU path is used instead, see :func:`neural_unsupported`): pixel boost above
1, and any other processor whose kind is not marked ``on_device`` in
:data:`swapline.pipeline.processors.KINDS` (face enhancers, occlusion / region mask models).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from ..swap.mesh_blend import mesh_area_masks
from ..blend.masks import box_mask
from ..config import SwapConfig
from ..face.align import fit_similarity
from ..face.types import Face
from ..swap.onnx_swapper import NeuralSwapper, patch_box, template_points
from . import ops

MASK_BLUR = 0.3  # NeuralSwapper.swap's default box-mask blur, as the CPU path uses it


def neural_unsupported(config: SwapConfig, swapper: NeuralSwapper, off_device: Sequence[str] = ()) -> list[str]:
    """What keeps a neural swap off the device path (empty: it can run there).

    ``off_device``: the other processors in use that the device path does not run, as their
    kinds' table says (:meth:`swapline.pipeline.processors.Processors.off_device`).
    """
    bad = []
    if not hasattr(swapper.session, "run_torch"):
        bad.append("a model session without the torch backend")
    if config.face_swapper_pixel_boost != 1:
        bad.append(f"face_swapper_pixel_boost={config.face_swapper_pixel_boost}")
    bad.extend(off_device)
    return bad


def _run(swapper: NeuralSwapper, x: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """The model's first output for ``x`` ``(N, 3, S, S)`` on the device (one call, or one per
    sample for a graph whose batch is fixed at 1: the swapper's
    :class:`~swapline.runtime.model.ModelRunner` splits it)."""
    spec = swapper.spec
    return swapper.runner.run_torch({spec.target_input: x, spec.source_input: source})[0]


def swap_faces_neural_torch(frame: torch.Tensor, faces: Sequence[Face], swapper: NeuralSwapper,
                            source_input: np.ndarray, config: SwapConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap ``source_input`` into ``faces`` of ``frame`` with ``swapper``, on ``frame``'s device.

    Args:
        frame: ``(H, W, 3) uint8`` BGR on any torch device; not modified.
        faces: target faces (5 key points; the mesh, when there, gives the mesh masks).
        swapper: a :class:`NeuralSwapper` whose session has ``run_torch``.
        source_input: from :meth:`NeuralSwapper.source_input`.
        config: weight and mask options (``face_swapper_weight``, ``face_mask_types``, ...).
    Returns:
        ``(out (H, W, 3) uint8, changed (H, W) bool)`` on the frame's device; every pixel outside
        ``changed`` is bit-identical to ``frame``.
    """
    spec = swapper.spec
    dev = frame.device
    out = frame.clone()
    changed = torch.zeros(frame.shape[:2], dtype=torch.bool, device=dev)
    if not faces:
        return out, changed
    size, (H, W) = spec.size, frame.shape[:2]
    weight = float(np.clip(config.face_swapper_weight, 0.0, 1.0))
    mats = np.stack([fit_similarity(f.kps, template_points(spec.template, size)) for f in faces])
    with torch.inference_mode():
        img = ops.to_nchw(frame).float().expand(len(faces), -1, -1, -1)
        crops = ops.warp_affine(img, torch.from_numpy(mats).to(dev), (size, size), border="replicate")
        crops = crops.round().clamp(0, 255)  # the CPU path's uint8 crops
        mean = torch.tensor(spec.mean, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(spec.std, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
        x = (crops.flip(1) / 255.0 - mean) / std  # BGR -> RGB, normalised
        src = np.repeat(np.asarray(source_input, np.float32).reshape(1, *spec.source_shape()), len(faces), axis=0)
        y = _run(swapper, x, torch.from_numpy(src).to(dev)).float()
        ostd = torch.tensor(spec.output_std, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
        omean = torch.tensor(spec.output_mean, device=dev, dtype=torch.float32).view(1, 3, 1, 1)
        swapped = ((y * ostd + omean).clamp(0.0, 1.0).flip(1) * 255.0).round()  # BGR 0..255
        mask = torch.from_numpy(box_mask((size, size), (0, 0, size, size), padding=(0, 0, 0, 0),
                                         blur=MASK_BLUR)).to(dev)[None, None]
        for k, face in enumerate(faces):
            found = patch_box(mats[k], size, (H, W))
            if found is None:
                continue
            (x0, y0, x1, y1), shifted = found
            back = torch.from_numpy(cv2.invertAffineTransform(shifted)).to(dev)  # crop -> box
            box = (x1 - x0, y1 - y0)
            patch = ops.warp_affine(swapped[k:k + 1], back, box, border="replicate")
            patch_u8 = ops.to_hwc(patch.round().clamp(0, 255).to(torch.uint8))[0]
            alpha = ops.warp_affine(mask, back, box, border="constant")[0, 0] * weight
            if face.mesh is not None:
                local = face.mesh[:, :2] - np.array([x0, y0], np.float32)
                for m in mesh_area_masks((box[1], box[0]), local, config):
                    alpha = torch.minimum(alpha, torch.from_numpy(m).to(dev) * weight)
            ops.paste(out, patch_u8, alpha, (x0, y0), inplace=True)
            changed[y0:y1, x0:x1] |= alpha > 0
    return out, changed
