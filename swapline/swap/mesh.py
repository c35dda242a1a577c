"""The built-in swapper: the source face's texture and shape on the target's dense mesh.

No weights: the source's 468-point mesh is posed onto the target's (3-D similarity fitted on
stable upper-face points), mixed with the target's shape by ``face_shape_weight`` while the
target keeps its mouth and eye opening, and the source's texture is mapped triangle by triangle
onto that new mesh. A ring of triangles around the face outline warps the target's own
surroundings to the new outline, and the inner mouth is taken from the target so its teeth and
tongue show. All of it is one dense remap per image, computed in a small canvas and resized to
the face's region at full resolution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ..blend.color import lab_with_error
from ..blend.parsing import FaceParse, clean_source
from ..face import mesh_topology as topo
from ..face.mesh_triangles import TRIANGLES
from ..face.types import Face
from .validity import TRIANGLE_PARTS, PreparedTexture, prepare_texture
from ..face.normals import FACE_TRIANGLES, vertex_normals
from .mesh_warp import (
    dense_maps,
    expand_loop,
    fit_similarity_3d,
    rasterize_ids,
    ring_strip,
    triangle_affines,
)

RING_FACTOR = 1.25  # the surrounding ring reaches 25 % beyond the face outline
_OVAL = topo.as_array(topo.FACE_OVAL)
_STABLE = topo.as_array(topo.STABLE_UPPER_FACE)
_FACE_TRIS = FACE_TRIANGLES  # the face's triangles and the eye fill, consistently oriented
_N = topo.N_POINTS
# Extended vertex list: 468 mesh points, then the 36 outer-ring points.
_RING = ring_strip(len(_OVAL))
_RING_TRIS = np.where(_RING < len(_OVAL), _OVAL[_RING % len(_OVAL)], _N + _RING - len(_OVAL)).astype(np.int32)
_ALL_TRIS = np.concatenate([_RING_TRIS, topo.MOUTH_FILL, _FACE_TRIS]).astype(np.int32)
_N_BACK = len(_RING_TRIS) + len(topo.MOUTH_FILL)  # drawn first, never the source's texture
COARSE_STEP = 3  # canvas pixels per cell of the normals' grid (odd: cells centred on pixels)
_PARTS = np.concatenate([np.zeros(_N_BACK, np.uint8), TRIANGLE_PARTS])  # per triangle of _ALL_TRIS


def _expression_points() -> np.ndarray:
    """Indices whose displacement follows their neighbours when the target's expression is
    kept: both eye loops and every lip point."""
    pts = set(topo.LEFT_EYE) | set(topo.RIGHT_EYE) | set(topo.LIPS_OUTER) | set(topo.LIPS_INNER)
    # lips' middle row (between outer and inner loops) from the triangulation
    lips = set(topo.LIPS_OUTER) | set(topo.LIPS_INNER)
    for tri in TRIANGLES:
        if sum(int(v) in lips for v in tri) == 3:
            pts.update(int(v) for v in tri)
    return np.array(sorted(pts), np.int64)


_EXPRESSION = _expression_points()
_OTHERS = np.setdiff1d(np.arange(_N), _EXPRESSION)


@dataclass(frozen=True, eq=False)
class Texture:
    """One level of a source's texture pyramid in the forms the swap samples from.

    Four channels each, because OpenCV's bilinear ``remap`` has a vector path for four channels
    (about 2.5x faster than for three); the fourth carries the texel's validity (0..255, see
    :mod:`swapline.swap.validity`) in ``bgr`` and ``lab``.

    Attributes:
        bgr: ``(h, w, 4) uint8`` B, G, R, validity.
        lab: ``(h, w, 4) uint8`` OpenCV's 8-bit L, a, b of ``bgr``, validity.
        lab_error: ``(h, w, 4) uint8`` 128 + ``bgr`` - BGR(``lab``) (saturated), 128: what the
            8-bit LAB round trip loses, so a colour transfer made in LAB adds it back and the
            texture's own colours come through unchanged when the transfer is the identity.
    """

    bgr: np.ndarray
    lab: np.ndarray
    lab_error: np.ndarray


def make_texture(image: np.ndarray, validity: np.ndarray | None = None) -> Texture:
    """The sampling forms of ``image`` ``(h, w, 3) uint8`` BGR (see :class:`Texture`);
    ``validity`` ``(h, w) uint8`` 0..255 goes in the fourth channel (default 255)."""
    lab, error = lab_with_error(image)
    alpha = np.full(image.shape[:2], 255, np.uint8) if validity is None else validity
    return Texture(bgr=cv2.merge([image, alpha]), lab=cv2.merge([lab, alpha]),
                   lab_error=cv2.cvtColor(error, cv2.COLOR_BGR2BGRA))


@dataclass(frozen=True, eq=False)
class SourceFace:
    """A source face prepared once: its texture pyramid and mesh, and its identity.

    Attributes:
        levels: texture images ``(h, w, 3) uint8`` BGR, each half the size of the previous.
        mesh: ``(468, 3) float32`` the face's mesh in level-0 pixels.
        width: face width (outline extent) in level-0 pixels.
        embedding: ``(128,) float32`` unit identity embedding (mean of several sources allowed).
        validity: judge each texel (hair, background, grazing angles) and fill the invalid ones
            from the mirrored side (:mod:`swapline.swap.validity`); False trusts every texel.
        exclude: ``(h, w) bool`` level-0 texels the face parser says are not face (hair, hat,
            glasses, ...), or None (the colour skin model judges).
        prepared: level 0 after that: filled texture, validity, shading ratio, SH lighting.
        textures: the filled ``levels`` in the forms the swap samples, validity in channel 4.
        ratios: ``(h, w, 4) uint16`` per level: the texture divided by the source's shading and
            the validity, ×4096 (:data:`swapline.swap.validity.RATIO_SCALE`).
    """

    levels: tuple[np.ndarray, ...]
    mesh: np.ndarray
    width: float
    embedding: np.ndarray | None
    validity: bool = True
    exclude: np.ndarray | None = field(default=None, repr=False)
    prepared: PreparedTexture = field(init=False, repr=False)
    textures: tuple[Texture, ...] = field(init=False, repr=False)
    ratios: tuple[np.ndarray, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        prep = prepare_texture(self.levels[0], self.mesh, use_validity=self.validity, exclude=self.exclude)
        filled = _pyramid(prep.filled, len(self.levels))
        alpha = _pyramid(np.clip(prep.validity * 255.0 + 0.5, 0, 255).astype(np.uint8), len(self.levels))
        object.__setattr__(self, "prepared", prep)
        object.__setattr__(self, "textures", tuple(make_texture(f, a) for f, a in zip(filled, alpha)))
        object.__setattr__(self, "ratios", _pyramid(prep.ratio, len(self.levels)))

    @property
    def lighting(self) -> np.ndarray | None:
        """``(9, 3) float32`` the source's SH lighting (None when it could not be fitted)."""
        return self.prepared.lighting


def prepare_source(image: np.ndarray, face: Face, embedding: np.ndarray | None = None, *,
                   validity: bool = True, parse: FaceParse | None = None) -> SourceFace:
    """Cut the source face (with room for the outer ring) out of ``image`` and build its
    texture pyramid. ``face`` must carry a mesh. ``validity``: see :class:`SourceFace`;
    ``parse``: the face's parse in ``image``, whose non-face classes are never pasted."""
    if face.mesh is None:
        raise ValueError("prepare_source needs a face with a mesh")
    oval = face.mesh[_OVAL, :2]
    outer = expand_loop(oval, RING_FACTOR + 0.1)
    x0, y0 = np.floor(outer.min(0)).astype(int) - 2
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 2
    crop = cv2.copyMakeBorder(
        image[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)],
        max(-y0, 0), max(y1 - image.shape[0], 0), max(-x0, 0), max(x1 - image.shape[1], 0),
        cv2.BORDER_REPLICATE,
    )
    mesh = face.mesh.copy()
    mesh[:, 0] -= x0
    mesh[:, 1] -= y0
    width = float(np.ptp(oval[:, 0]))
    exclude = None
    if parse is not None and validity:
        crop, exclude = clean_source(crop, parse, (x0, y0), mesh)
    return SourceFace(levels=_pyramid(crop), mesh=mesh, width=width,
                      embedding=embedding if embedding is not None else face.embedding, validity=validity,
                      exclude=exclude)


def pose_mesh(source: np.ndarray, target: np.ndarray, weight: float, keep_target_expression: bool = True) -> np.ndarray:
    """The mesh to draw: the source's face shape posed like the target.

    Args:
        source: ``(468, 3)`` source mesh (any pixel scale).
        target: ``(468, 3)`` target mesh in the target's pixels.
        weight: 0 keeps the target's shape, 1 takes the source's posed shape.
        keep_target_expression: eye loops and lips follow the displacement of the points around
            them instead of their own, so the target's mouth and eye opening are kept.
    Returns:
        ``(468, 3) float32`` in the target's pixels.
    """
    scale, rot, t = fit_similarity_3d(source[_STABLE], target[_STABLE])
    posed = (scale * (rot @ source.T.astype(np.float64))).T + t
    delta = (posed - target) * weight
    if keep_target_expression:
        width = np.ptp(target[_OVAL, 0]) + 1e-6
        e, o = target[_EXPRESSION, :2], target[_OTHERS, :2]
        d2 = (e * e).sum(1)[:, None] + (o * o).sum(1)[None, :] - 2.0 * e @ o.T
        wts = np.exp(d2 * (-0.5 / (0.08 * width) ** 2))
        wts /= wts.sum(1, keepdims=True) + 1e-12
        delta[_EXPRESSION] = wts @ delta[_OTHERS]
    return (target + delta).astype(np.float32)


@dataclass(frozen=True, eq=False)
class MeshSwap:
    """What the mesh swapper made for one target face, in a region of the target frame.

    Attributes:
        origin: ``(x0, y0)`` of the region in frame pixels (may be negative near borders).
        target: ``(h, w, 3) uint8`` the target region with its surroundings warped to the new
            outline (and the inner mouth following the new lips).
        face_region: ``(h, w) float32`` 1 on the face surface (outline minus inner mouth).
        changed: ``(h, w) bool`` pixels of ``target`` that may differ from the original frame.
        mesh: ``(468, 3) float32`` the new mesh in region pixels.
        canvas_face: ``(ch, cw) float32`` ``face_region`` at the canvas size the maps were
            computed at (masks can be feathered there and resized once).
        source_maps: ``(sx, sy)`` each ``(h, w) float32``: where each region pixel reads the
            source texture (meaningful on the face surface).
        texture: the source pyramid level the maps read.
        ratio: ``(sh, sw, 4) uint16`` that level's shading ratio and validity (see
            :attr:`SourceFace.ratios`).
        geometry: the canvas-size maps this swap was made from (normals and feature areas
            included when asked for).
        original: ``(h, w, 3) uint8`` the target region as it was (not warped; read only).
        source_lighting: ``(9, 3) float32`` the source's SH lighting, or None.
        source_shade: ``(sh, sw, 3) float32`` the source's fitted shading at pyramid level 0
            (see :class:`swapline.swap.validity.PreparedTexture`), or None.
        level: the pyramid level ``source_maps`` read.
    """

    origin: tuple[int, int]
    target: np.ndarray
    face_region: np.ndarray
    changed: np.ndarray
    mesh: np.ndarray
    canvas_face: np.ndarray
    source_maps: tuple[np.ndarray, np.ndarray]
    texture: Texture
    ratio: np.ndarray
    geometry: "FaceMaps"
    original: np.ndarray
    source_lighting: np.ndarray | None = None
    source_shade: np.ndarray | None = None
    level: int = 0

    def source_shade_at(self, points: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The source's shading ``(..., 3) float32`` at source-map coordinates ``points`` (x, y
        in the sampled level's pixels, as in ``source_maps``)."""
        k = np.float32(2.0**self.level)
        return cv2.remap(self.source_shade, (points[0] + 0.5) * k - 0.5, (points[1] + 0.5) * k - 0.5,
                         cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def sample(self, form: str = "bgr", box: tuple[slice, slice] | None = None, *, alpha: bool = False) -> np.ndarray:
        """The source texture on the new mesh: ``form`` is ``"bgr"``, ``"lab"`` or
        ``"lab_error"`` (see :class:`Texture`), over ``box`` of the region (default: all of it).
        Returns ``(h, w, 3) uint8`` (``(h, w, 4)`` with the validity when ``alpha``), meaningful
        where ``face_region`` is 1."""
        sx, sy = self.source_maps
        if box is not None:
            sx, sy = sx[box], sy[box]
        image = getattr(self.texture, form)
        out = cv2.remap(image, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out if alpha else cv2.cvtColor(out, cv2.COLOR_BGRA2BGR)

    def sample_ratio(self, box: tuple[slice, slice] | None = None) -> np.ndarray:
        """The source's shading ratio on the new mesh over ``box``: ``(h, w, 4) uint16``
        (B, G, R ratio and validity, ×4096)."""
        sx, sy = self.source_maps
        if box is not None:
            sx, sy = sx[box], sy[box]
        return cv2.remap(self.ratio, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _region(points: np.ndarray, pad: int = 2) -> tuple[int, int, int, int]:
    x0, y0 = np.floor(points.min(0)).astype(int) - pad
    x1, y1 = np.ceil(points.max(0)).astype(int) + pad
    return int(x0), int(y0), int(x1), int(y1)


def _crop(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    h, w = frame.shape[:2]
    inner = frame[max(y0, 0):min(max(y1, 0), h), max(x0, 0):min(max(x1, 0), w)]
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return inner
    return cv2.copyMakeBorder(inner, max(-y0, 0), max(y1 - h, 0), max(-x0, 0), max(x1 - w, 0), cv2.BORDER_REPLICATE)


@dataclass(frozen=True, eq=False)
class FaceMaps:
    """The geometry of one face's mesh swap, at canvas size (what :func:`swap_mesh` remaps with;
    the device path in :mod:`swapline.gpu.frame` uses it too).

    Attributes:
        origin: ``(x0, y0)`` of the region in frame pixels (may be negative near borders).
        size: ``(rw, rh)`` of the region at full resolution.
        level: the source pyramid level the source maps read from.
        maps: ``(4, ch, cw) float32`` tx, ty (into the target region) and sx, sy (into the source
            level), in full-resolution pixels, sampled at the canvas; resize to ``size`` linearly.
        face_canvas: ``(ch, cw) float32`` 1 on the face surface.
        changed_canvas: ``(ch, cw) uint8`` 1 where any triangle is drawn.
        mesh: ``(468, 3) float32`` the new mesh in region pixels.
        normals: ``(6, hs, ws) float32`` on a coarse grid (every :data:`COARSE_STEP`-th canvas
            pixel, from the second): the target mesh's normals (3) and the drawn mesh's (3), not
            unit length between vertices, 0 off the face; None unless asked for.
        target_mesh: ``(468, 3) float32`` the target's own mesh in region pixels.
        parts: ``(ch, cw) uint8`` what each canvas pixel is: 0 off the face surface, then
            :data:`swapline.swap.validity.FEATURE` (eyes, brows, nose, lips), ``EDGE`` (two
            rings along the outline) or ``CENTRE``; None unless normals were asked for.
    """

    origin: tuple[int, int]
    size: tuple[int, int]
    level: int
    maps: np.ndarray
    face_canvas: np.ndarray
    changed_canvas: np.ndarray
    mesh: np.ndarray
    normals: np.ndarray | None = None
    parts: np.ndarray | None = None
    target_mesh: np.ndarray | None = None


def face_maps(target: Face, source: SourceFace, *, shape_weight: float = 0.75,
              keep_target_expression: bool = True, resolution: int = 256, normals: bool = False) -> FaceMaps:
    """Pose the source's shape on ``target`` and compute the dense warp maps on a canvas of at
    most ``resolution`` px: one rasterisation of triangle ids (far to near), one closed-form
    solve of all triangle affines, one lookup per pixel. ``normals`` also interpolates the
    target's and the drawn mesh's normals over a coarse grid (lighting is smooth) and labels the
    canvas's face parts (for relighting and the occluder test)."""
    if target.mesh is None:
        raise ValueError("swap_mesh needs a target face with a mesh")
    tmesh = target.mesh.astype(np.float64)
    new = pose_mesh(source.mesh, tmesh, shape_weight, keep_target_expression).astype(np.float64)
    outer_t = expand_loop(tmesh[_OVAL, :2], RING_FACTOR)
    x0, y0, x1, y1 = _region(np.concatenate([outer_t, new[_OVAL, :2]]))
    rw, rh = x1 - x0, y1 - y0
    off = np.array([x0, y0], np.float64)

    # extended vertex sets (mesh + outer ring) in region pixels: destination, target, source
    dst = np.concatenate([new[:, :2], outer_t]) - off
    src_t = np.concatenate([tmesh[:, :2], outer_t]) - off
    level = _texture_level(source, float(np.ptp(new[_OVAL, 0])))
    k = 0.5**level
    src_s = np.concatenate([source.mesh[:, :2], expand_loop(source.mesh[_OVAL, :2], RING_FACTOR)]) * k

    # far-to-near order for the face triangles (smaller z is nearer the camera)
    zf = new[:, 2][_FACE_TRIS].mean(1)
    order = np.concatenate([np.arange(_N_BACK), _N_BACK + np.argsort(-zf)])
    tris = _ALL_TRIS[order]

    scale = min(1.0, resolution / max(rw, rh))
    cw, ch = max(1, round(rw * scale)), max(1, round(rh * scale))
    per_axis = np.array([cw / rw, ch / rh])  # exact ratios of the final resize
    ids = rasterize_ids((dst[tris] + 0.5) * per_axis - 0.5, (ch, cw))
    points = [src_t, src_s]
    if normals:  # target and drawn vertex normals, 0 on the outer ring; two pads (one solve for all)
        nrm = np.zeros((len(dst), 8))
        nrm[:_N, 0:3] = vertex_normals(tmesh)
        nrm[:_N, 4:7] = vertex_normals(new)
        points.append(nrm)
    affines = triangle_affines(dst[tris], np.concatenate(points, 1)[tris])
    maps = dense_maps(ids, affines[..., :4], (cw / rw, ch / rh))
    coarse = parts = None
    if normals:
        k = COARSE_STEP
        grid = dense_maps(ids[k // 2::k, k // 2::k], affines[..., 4:], (cw / rw / k, ch / rh / k))
        coarse = np.concatenate([grid[0:3], grid[4:7]])
        parts = np.concatenate([[0], _PARTS[order]])[ids]
    mesh = new.copy()
    mesh[:, :2] -= off
    return FaceMaps(origin=(int(x0), int(y0)), size=(int(rw), int(rh)), level=level, maps=maps,
                    face_canvas=(ids > _N_BACK).astype(np.float32), changed_canvas=(ids > 0).astype(np.uint8),
                    mesh=mesh.astype(np.float32), normals=coarse, parts=parts,
                    target_mesh=np.concatenate([tmesh[:, :2] - off, tmesh[:, 2:]], 1).astype(np.float32))


def swap_mesh(frame: np.ndarray, target: Face, source: SourceFace, *, shape_weight: float = 0.75,
              keep_target_expression: bool = True, resolution: int = 256, normals: bool = False) -> MeshSwap:
    """Map ``source`` onto the face ``target`` of ``frame``.

    Args:
        frame: ``(H, W, 3) uint8`` BGR target image (not modified).
        target: the target face, with its mesh.
        source: from :func:`prepare_source`.
        shape_weight: how much of the source's face shape to take (0..1).
        keep_target_expression: keep the target's mouth and eye opening.
        resolution: side of the canvas the maps are computed in (they are resized to the
            region's full resolution for the remap).
        normals: also the target's normals and feature areas on the canvas (see
            :func:`face_maps`).
    """
    fm = face_maps(target, source, shape_weight=shape_weight, keep_target_expression=keep_target_expression,
                   resolution=resolution, normals=normals)
    (x0, y0), (rw, rh) = fm.origin, fm.size
    if fm.maps.shape[1:] != (rh, rw):
        tx, ty, sx, sy = (cv2.resize(m, fm.size, interpolation=cv2.INTER_LINEAR) for m in fm.maps)
        face_region = cv2.resize(fm.face_canvas, fm.size, interpolation=cv2.INTER_LINEAR)
        changed = cv2.resize(fm.changed_canvas, fm.size, interpolation=cv2.INTER_NEAREST)
    else:
        tx, ty, sx, sy = fm.maps
        face_region, changed = fm.face_canvas, fm.changed_canvas
    changed = cv2.dilate(changed, np.ones((3, 3), np.uint8)).astype(bool)

    region = _crop(frame, (x0, y0, x0 + rw, y0 + rh))
    # outside `changed` the map is the identity (up to float rounding): never pasted anyway.
    # Four channels: OpenCV's remap has a vector path for them (the padding costs far less).
    warped_t = cv2.cvtColor(cv2.remap(cv2.cvtColor(region, cv2.COLOR_BGR2BGRA), tx, ty, cv2.INTER_LINEAR,
                                      borderMode=cv2.BORDER_REPLICATE), cv2.COLOR_BGRA2BGR)
    return MeshSwap(origin=(x0, y0), target=warped_t, face_region=face_region, changed=changed, mesh=fm.mesh,
                    canvas_face=fm.face_canvas, source_maps=(sx, sy), texture=source.textures[fm.level],
                    ratio=source.ratios[fm.level], geometry=fm, original=region, source_lighting=source.lighting,
                    source_shade=source.prepared.shade, level=fm.level)


def _texture_level(source: SourceFace, target_width: float) -> int:
    """The coarsest pyramid level whose face is still at least as wide as the target's."""
    level = 0
    while level + 1 < len(source.levels) and source.width * 0.5 ** (level + 1) >= target_width:
        level += 1
    return level


def merge_sources(sources: list[SourceFace]) -> SourceFace:
    """One source from several photos of a person: the mean of their posed face shapes, the
    mean of their textures mapped onto that shape, and the mean of their identities.

    The first source sets the frame (its crop and pose); the others are warped into it.
    """
    if len(sources) == 1:
        return sources[0]
    base = sources[0]
    ref = base.mesh.astype(np.float64)
    posed = []
    for s in sources:
        scale, rot, t = fit_similarity_3d(s.mesh[_STABLE], ref[_STABLE])
        posed.append((scale * (rot @ s.mesh.T.astype(np.float64))).T + t)
    mean_mesh = np.mean(posed, axis=0)
    h, w = base.levels[0].shape[:2]
    dst = np.concatenate([mean_mesh[:, :2], expand_loop(mean_mesh[_OVAL, :2], RING_FACTOR)])
    tris = np.concatenate([_RING_TRIS, topo.MOUTH_FILL, _FACE_TRIS])
    ids = rasterize_ids(dst[tris], (h, w))
    face = ids > _N_BACK
    # each photo's texels weighted by its own validity (after its mirror fill): hair or glasses
    # in one photo do not come through where another shows the face
    acc = np.zeros((h, w, 3), np.float32)
    weight = np.zeros((h, w), np.float32)
    for s in sources:
        src = np.concatenate([s.mesh[:, :2], expand_loop(s.mesh[_OVAL, :2], RING_FACTOR)])
        mx, my = dense_maps(ids, triangle_affines(dst[tris], src[tris]))
        v = cv2.remap(s.prepared.validity, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) + 1e-3
        acc += cv2.remap(s.prepared.filled, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) * v[..., None]
        weight += v
    texture = base.levels[0].copy()
    texture[face] = np.clip(acc[face] / weight[face, None] + 0.5, 0, 255).astype(np.uint8)
    exclude = None
    if any(s.exclude is not None for s in sources):  # what no photo shows as face stays excluded
        exclude = ~face | (weight < 0.5)
    embs = [s.embedding for s in sources if s.embedding is not None]
    emb = None
    if embs:
        m = np.mean(embs, axis=0)
        emb = (m / (np.linalg.norm(m) + 1e-12)).astype(np.float32)
    return SourceFace(levels=_pyramid(texture), mesh=mean_mesh.astype(np.float32), width=base.width, embedding=emb,
                      validity=base.validity, exclude=exclude)


def _pyramid(image: np.ndarray, count: int | None = None, smallest: int = 64) -> tuple[np.ndarray, ...]:
    """``image`` and its halvings (``cv2.pyrDown``): ``count`` levels in all, or while the short
    side exceeds ``smallest``."""
    levels = [image]
    while (len(levels) < count) if count is not None else (min(levels[-1].shape[:2]) > smallest):
        levels.append(cv2.pyrDown(levels[-1]))
    return tuple(levels)
