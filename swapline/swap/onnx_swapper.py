"""Neural face swappers from the catalogue (inswapper, hyperswap, simswap, ghost, blendswap, uniface).

One class drives every family; :class:`~swapline.models.neural_catalog.SwapperSpec` says how a
model is fed. For each target face:

1. the frame is warped to the spec's template at ``size * pixel_boost`` px (the face's ``kps``);
2. pixel boost splits that crop into ``pixel_boost**2`` tiles of the model size by interleaved
   sub-sampling (tile ``(i, j)`` holds pixels ``[i::b, j::b]``), so each tile is a whole face at
   model resolution;
3. the tiles of *all* faces run as one batch (one session call); a graph whose batch axis is fixed
   at 1 is called once per tile instead - the catalogue's ``dynamic_batch`` conversion re-exports
   such models once, so that is only met with files loaded by path;
4. outputs are de-normalised, re-interleaved into the crop, and warped back into the frame's box
   around the face (inverse affine) with a feathered box mask in crop space.

``weight`` (``--face-swapper-weight``) blends the result with the original frame: the returned
alpha is the mask times ``weight``, so 0 leaves the frame bit-identical and 1 pastes the model's
output. (FaceFusion's weight instead mixes source and target embeddings; here it is a pixel blend
that works the same for image-source models.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..blend.masks import box_mask
from ..errors import ModelError
from ..face.align import TEMPLATES, fit_similarity
from ..face.types import Face
from ..models.neural_catalog import EXTRA_TEMPLATES, SwapperSpec
from ..runtime.model import ModelRunner


def template_points(name: str, size: int) -> np.ndarray:
    """``(5, 2) float32`` points of template ``name`` (align's or the swappers' extra ones) at ``size``."""
    table = TEMPLATES if name in TEMPLATES else EXTRA_TEMPLATES
    try:
        return table[name] * np.float32(size)
    except KeyError:
        raise ModelError(f"unknown warp template {name!r}") from None


def warp_face(image: np.ndarray, kps: np.ndarray, template: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(crop (size, size, 3) uint8, M (2, 3) image -> crop)`` aligned to ``template``."""
    m = fit_similarity(kps, template_points(template, size))
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def implode_pixel_boost(crop: np.ndarray, boost: int) -> np.ndarray:
    """``(S*b, S*b, C)`` -> ``(b*b, S, S, C)``; tile ``i*b + j`` is ``crop[i::b, j::b]``."""
    n = crop.shape[0] // boost
    c = crop.shape[2]
    return crop.reshape(n, boost, n, boost, c).transpose(1, 3, 0, 2, 4).reshape(boost * boost, n, n, c)


def explode_pixel_boost(tiles: np.ndarray, boost: int) -> np.ndarray:
    """Inverse of :func:`implode_pixel_boost`: ``(b*b, S, S, C)`` -> ``(S*b, S*b, C)``."""
    n, c = tiles.shape[1], tiles.shape[3]
    return tiles.reshape(boost, boost, n, n, c).transpose(2, 0, 3, 1, 4).reshape(n * boost, n * boost, c)


@dataclass(frozen=True)
class SwapPatch:
    """One swapped face ready for :func:`swapline.blend.paste.paste_back`.

    ``patch``: ``(h, w, 3) uint8`` covering the box of the warped crop (clipped to the frame);
    ``alpha``: ``(h, w) float32`` 0..1 (mask times weight); ``origin``: ``(x0, y0)`` in the frame;
    ``crop``: the swapped face in crop space ``(S*b, S*b, 3) uint8``; ``matrix``: frame -> crop.
    """

    patch: np.ndarray
    alpha: np.ndarray
    origin: tuple[int, int]
    crop: np.ndarray
    matrix: np.ndarray

    def __iter__(self):  # (patch, alpha, origin) unpacking
        return iter((self.patch, self.alpha, self.origin))


class NeuralSwapper:
    """A neural swapper session driven by its :class:`SwapperSpec`.

    ``session``: an ONNX Runtime session (or anything with ``run``, ``get_inputs``,
    ``get_outputs``), run through a :class:`~swapline.runtime.model.ModelRunner` (input types,
    a batch fixed at 1, at most ``max_batch`` tiles per call). ``emap``: inswapper's
    ``(512, 512)`` projection (the graph's last initializer, see :meth:`read_emap`); required for
    ``embedding_emap`` specs. ``converter``: the embedding-converter session for
    ``embedding_converted`` specs.
    """

    def __init__(self, session: Any, spec: SwapperSpec, *, emap: np.ndarray | None = None,
                 converter: Any | None = None, max_batch: int | None = None):
        self.session = session
        self.spec = spec
        self.runner = ModelRunner(session, name=spec.name, max_batch=max_batch)
        for need in (spec.target_input, spec.source_input):
            self.runner.input(need)
        if spec.source_kind == "embedding_emap":
            if emap is None:
                raise ModelError(f"{spec.name}: needs the emap matrix (last initializer of its graph)")
            emap = np.asarray(emap, np.float32)
            if emap.shape != (spec.embedding_size, spec.embedding_size):
                raise ModelError(f"{spec.name}: emap has shape {emap.shape}, expected 512 x 512")
        if spec.source_kind == "embedding_converted" and converter is None:
            raise ModelError(f"{spec.name}: needs its embedding converter {spec.converter}")
        self.emap = emap
        self.converter = ModelRunner(converter, name=spec.converter or "converter") if converter is not None else None

    @property
    def fixed_batch_one(self) -> bool:
        """Whether the graph's batch axis is fixed at 1 (one call per tile)."""
        return self.runner.batch_one

    @property
    def calls(self) -> int:
        """Model calls made so far."""
        return self.runner.calls

    # -- loading ---------------------------------------------------------------------------------
    @staticmethod
    def read_emap(model_path: Path | str) -> np.ndarray:
        """inswapper's emap: the last initializer of the graph, ``(512, 512) float32`` (read once)."""
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(model_path))
        if not model.graph.initializer:
            raise ModelError(f"{Path(model_path).name} has no initializers (not an inswapper graph)")
        return numpy_helper.to_array(model.graph.initializer[-1]).astype(np.float32)

    @classmethod
    def from_file(cls, model_path: Path | str, spec: SwapperSpec, factory: Any | None = None, *,
                  converter_path: Path | str | None = None, optimized_dir: Path | None = None) -> NeuralSwapper:
        """Load a swapper (and its converter) from files; ``factory`` is a ``SessionFactory``
        (plain CPU onnxruntime when ``None``). Also how unverified catalogue models are used from a
        file the user trusts."""
        def make(path: Path | str) -> Any:
            if factory is not None:
                return factory.create(Path(path), optimized_dir=optimized_dir)
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.log_severity_level = 3
            return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

        emap = cls.read_emap(model_path) if spec.source_kind == "embedding_emap" else None
        converter = make(converter_path) if converter_path is not None else None
        return cls(make(model_path), spec, emap=emap, converter=converter)

    # -- source identity -------------------------------------------------------------------------
    def align_source(self, image: np.ndarray, kps: np.ndarray) -> np.ndarray:
        """Aligned source crop ``(s, s, 3) uint8`` BGR for image-source specs."""
        spec = self.spec
        if spec.source_kind != "image":
            raise ModelError(f"{spec.name} takes an embedding, not a source image")
        return warp_face(image, kps, spec.source_template or "", spec.source_size)[0]

    def source_input(self, source: np.ndarray) -> np.ndarray:
        """The model's source tensor ``(1, ...) float32`` for one identity.

        ``source``: an ArcFace-512 embedding ``(512,)`` (unit or raw: it is normalised where the
        model wants it; converters get it as given - FaceFusion feeds them the raw vector) for
        embedding specs, or an aligned source crop ``(s, s, 3) uint8`` BGR (:meth:`align_source`)
        for image specs.
        """
        spec = self.spec
        src = np.asarray(source)
        if spec.source_kind == "image":
            if src.shape != (spec.source_size, spec.source_size, 3):
                raise ModelError(f"{spec.name}: source must be an aligned {spec.source_size}px crop, got {src.shape}")
            x = src[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / np.float32(255.0)
            return np.ascontiguousarray(x)
        emb = src.reshape(1, -1).astype(np.float32)
        if emb.shape[1] != spec.embedding_size:
            raise ModelError(f"{spec.name}: embedding must have {spec.embedding_size} values, got {emb.shape[1]}")
        if spec.source_kind == "embedding_emap":
            latent = (emb / (np.linalg.norm(emb) + 1e-12)) @ self.emap
            return (latent / (np.linalg.norm(latent) + 1e-12)).astype(np.float32)
        if spec.source_kind == "embedding":
            return (emb / (np.linalg.norm(emb) + 1e-12)).astype(np.float32)
        conv = self.converter
        assert conv is not None  # checked in __init__
        out = conv.run({next(iter(conv.inputs)): emb})[0].reshape(1, -1).astype(np.float32)
        if spec.normalise_converted:
            out /= np.linalg.norm(out) + 1e-12
        return out

    # -- swapping --------------------------------------------------------------------------------
    def _normalise(self, tiles: np.ndarray) -> np.ndarray:
        """``(N, S, S, 3) uint8`` BGR -> ``(N, 3, S, S) float32`` model input."""
        mean = np.asarray(self.spec.mean, np.float32)
        std = np.asarray(self.spec.std, np.float32)
        x = tiles[..., ::-1].astype(np.float32) / np.float32(255.0)
        x = (x - mean) / std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def _denormalise(self, y: np.ndarray) -> np.ndarray:
        """``(N, 3, S, S)`` model output -> ``(N, S, S, 3) float32`` BGR in 0..255."""
        ostd = np.asarray(self.spec.output_std, np.float32)
        omean = np.asarray(self.spec.output_mean, np.float32)
        rgb = y.astype(np.float32).transpose(0, 2, 3, 1) * ostd + omean
        np.clip(rgb, 0.0, 1.0, out=rgb)
        return rgb[..., ::-1] * np.float32(255.0)

    def run(self, target: np.ndarray, source: np.ndarray) -> np.ndarray:
        """Run the model on ``target`` ``(N, 3, S, S)`` and ``source`` ``(N, ...)``; first output.

        One call for the whole batch (split at ``max_batch``), or one per sample when the graph's
        batch is fixed at 1; inputs are cast to the model's types (float16 models included).
        """
        spec = self.spec
        return self.runner.run({spec.target_input: target, spec.source_input: source})[0]

    def swap(self, frame: np.ndarray, faces: Sequence[Face], source_input: np.ndarray | Sequence[np.ndarray], *,
             weight: float = 1.0, pixel_boost: int = 1, mask_blur: float = 0.3,
             mask_padding: Sequence[float] = (0.0, 0.0, 0.0, 0.0), keep_detail: bool = False) -> list[SwapPatch]:
        """Swap every face of ``faces`` in ``frame`` (``(H, W, 3) uint8`` BGR).

        ``source_input``: from :meth:`source_input` - one for all faces, or a sequence with one per
        face. ``weight``: 0..1 blend with the original (0 = unchanged frame, 1 = model output).
        ``pixel_boost``: crop at ``size * pixel_boost`` and run its ``pixel_boost**2`` tiles as one
        batch with every other face's. ``mask_blur`` / ``mask_padding``: the feathered box mask
        (fraction of the crop; padding top, right, bottom, left). ``keep_detail``: paste the
        model's *change* (output minus input crop, warped back) onto the full-resolution frame
        instead of the output itself, so detail finer than the crop survives (and a model that
        returns its input leaves the frame exactly as it was); the default pastes the output, as
        FaceFusion does, which cannot carry the target's own fine detail into the swapped face. Returns one :class:`SwapPatch` per
        face, in order (paste with :func:`swapline.blend.paste.paste_back`).
        """
        spec = self.spec
        boost = int(pixel_boost)
        if boost < 1 or boost > spec.max_pixel_boost:
            raise ModelError(f"{spec.name}: pixel boost must be 1..{spec.max_pixel_boost}, got {pixel_boost}")
        if not faces:
            return []
        weight = float(np.clip(weight, 0.0, 1.0))
        if isinstance(source_input, np.ndarray):
            sources = [source_input] * len(faces)
        else:
            sources = list(source_input)
            if len(sources) != len(faces):
                raise ModelError(f"{len(sources)} source inputs for {len(faces)} faces")
        size = spec.size * boost
        crops, mats = [], []
        for face in faces:
            crop, m = warp_face(frame, face.kps, spec.template, size)
            crops.append(crop)
            mats.append(m)
        tiles = np.concatenate([implode_pixel_boost(c, boost) for c in crops])  # (F*b*b, S, S, 3)
        per = boost * boost
        src_batch = np.concatenate([np.repeat(np.asarray(s, np.float32).reshape(1, *spec.source_shape()), per, axis=0)
                                    for s in sources])
        out = self._denormalise(self.run(self._normalise(tiles), src_batch))
        mask = box_mask((size, size), (0, 0, size, size), padding=mask_padding, blur=mask_blur)
        if weight < 1.0:
            mask = mask * np.float32(weight)
        results = []
        for k, m in enumerate(mats):
            swapped = explode_pixel_boost(out[k * per:(k + 1) * per], boost)
            swapped_u8 = np.clip(swapped + 0.5, 0, 255).astype(np.uint8)
            delta = (swapped - crops[k].astype(np.float32)) if keep_detail else None
            results.append(self._warp_back(frame, swapped_u8, mask, m, delta))
        return results

    @staticmethod
    def _warp_back(frame: np.ndarray, crop: np.ndarray, mask: np.ndarray, m: np.ndarray,
                   delta: np.ndarray | None = None) -> SwapPatch:
        """Inverse-warp ``crop`` (or, with ``delta``, frame + warped ``delta``) and ``mask`` into
        the frame box that the crop covers."""
        found = patch_box(m, crop.shape[0], frame.shape[:2])
        if found is None:
            return SwapPatch(np.zeros((0, 0, 3), np.uint8), np.zeros((0, 0), np.float32), (0, 0), crop, m)
        (x0, y0, x1, y1), shifted = found
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        w, h = x1 - x0, y1 - y0
        if delta is None:
            patch = cv2.warpAffine(crop, shifted, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
        else:
            d = cv2.warpAffine(delta, shifted, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
            patch = np.clip(frame[y0:y1, x0:x1].astype(np.float32) + d + 0.5, 0, 255).astype(np.uint8)
        alpha = cv2.warpAffine(mask, shifted, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
        return SwapPatch(patch, alpha.astype(np.float32), (x0, y0), crop, m)


def patch_box(m: np.ndarray, size: int, frame_shape: tuple[int, int]
              ) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Where a ``size`` px crop taken with ``m`` (``(2, 3)`` frame -> crop) lands in a frame of
    ``frame_shape`` ``(H, W)``: ``((x0, y0, x1, y1), shifted)``, the box clipped to the frame and
    ``shifted`` ``(2, 3) float64`` taking box pixels to crop pixels; None when the box is empty."""
    H, W = frame_shape
    inv = cv2.invertAffineTransform(np.asarray(m, np.float64))
    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]], np.float64)
    pts = corners @ inv[:, :2].T + inv[:, 2]
    x0 = max(int(np.floor(pts[:, 0].min())), 0)
    y0 = max(int(np.floor(pts[:, 1].min())), 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 1, W)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 1, H)
    if x1 <= x0 or y1 <= y0:
        return None
    # box pixel (u, v) is frame pixel (u + x0, v + y0): crop = m @ [u + x0, v + y0, 1]
    shifted = np.asarray(m, np.float64).copy()
    shifted[:, 2] += shifted[:, :2] @ np.array([x0, y0], np.float64)
    return (x0, y0, x1, y1), shifted


def paste_all(frame: np.ndarray, patches: Sequence[SwapPatch]) -> np.ndarray:
    """``frame`` with every patch pasted (a new array; ``frame`` untouched)."""
    from ..blend.paste import paste_back

    out = frame.copy()
    for p in patches:
        if p.patch.size:
            paste_back(out, p.patch, p.alpha, p.origin, out=out)
    return out
