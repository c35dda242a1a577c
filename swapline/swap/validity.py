"""Which texels of a face can be trusted, and what the skin there would look like.

For the source (once per source face): a weight 0..1 per texel of its texture from

- visibility: the mesh normal against the view direction (grazing and back-facing → 0);
- distance to the face outline, wider at the hairline (background and hair sit there);
- the source's own skin model (robust colour statistics of its cheeks, nose and chin, on the
  texture divided by its fitted shading so that shadows are not mistaken for hair) applied to
  the forehead, temple and jaw bands, where hair, background and hands intrude (eyes, brows,
  nose and lips are never tested). A texel there is foreign when it is unlike skin *and* more
  like what surrounds the face (its hair and background, sampled on a ring outside the outline)
  than like skin — a shaded cheek edge or a ruddy forehead is unlike the cheeks' tight
  statistics but still nearer to them than to hair — or when it is far from skin whatever
  surrounds the face (a painted stain, a hand).

Invalid texels are filled from the mirrored texel (:data:`swapline.face.mesh_mirror.MIRROR`)
where that one is valid; what stays invalid is left to the target by the blend.

For a target (every frame): the same skin model flags what is *in front* of its face — hair, a
fringe, glasses frames, hands — so the blend keeps it (:func:`occluder_keep`).

Skin distance: chroma (log B/G, log R/G) by its robust spread, and luminance only when darker
than skin (highlights are skin too), in units of the robust standard deviation.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial import cKDTree

from ..blend.masks import area_mask, disc
from ..blend.relight import fit_lighting, shading
from ..face import mesh_topology as topo
from ..face.mesh_mirror import MIRROR
from ..face.normals import FACE_TRIANGLES, vertex_normals
from .mesh_warp import dense_maps, rasterize_ids, triangle_affines

VALIDITY_SOFT, VALIDITY_SOFT_PARSED = 0.012, 0.03  # blur of the validity's edge, face-width fractions
PARSED_RAMP = 0.02  # a parsed face part's texels reach full weight this far inside it (face widths)
RATIO_SCALE = 4096.0  # uint16 fixed point of the albedo ratio (1.0 → 4096; up to 16)
_OVAL = topo.as_array(topo.FACE_OVAL)
_BROW_TOPS = topo.as_array((70, 63, 105, 66, 107, 336, 296, 334, 293, 300))
_SKIN_PATCHES = tuple(topo.as_array(p) for p in (topo.CHEEK_LEFT, topo.CHEEK_RIGHT, topo.NOSE_BRIDGE, topo.CHIN))
RATIO_RANGE = (0.02, 3.0)  # a texel's colour over its predicted skin colour, clipped to this
SKIN_SOFT, SKIN_HARD = 2.5, 4.5  # skin distance where a texel starts / stops being skin
FAR_SOFT, FAR_HARD = 8.0, 12.0  # skin distance beyond which a texel is foreign whatever surrounds it
NEARER_SOFT = 2.0  # how much nearer (in robust sds) to the surroundings than to skin makes it foreign
SURROUND_RING = (0.015, 0.10)  # the ring outside the face sampled as "not skin", face-width fractions
SURROUND_SAMPLES = 1500
# weight on darkness in the target's occluder test: creases and the shade under the nose are
# darker than the smooth lighting predicts, hair is several times darker still
OCCLUDER_DARK_WEIGHT = 0.5
FOREHEAD_DARK_WEIGHT = 1.5  # above the brows (no creases or nose shade there): hair is darker than skin
OCCLUDER_OPEN, OCCLUDER_GROW, OCCLUDER_SOFT = 0.015, 0.02, 0.008  # fractions of the face width
OCCLUDER_ANCHOR = 0.04  # an occluder must reach this close to the face's outline (face widths)


def _feature_vertices() -> np.ndarray:
    pts: set[int] = set()
    for loop in (topo.LEFT_EYE, topo.RIGHT_EYE, topo.LIPS_OUTER, topo.LIPS_INNER, topo.LEFT_BROW,
                 topo.RIGHT_BROW, topo.NOSE):
        pts.update(loop)
    return np.array(sorted(pts), np.int64)


def _ring_distance(seeds: np.ndarray) -> np.ndarray:
    """``(468,) int``: edges from each vertex to the nearest of ``seeds`` over the mesh."""
    nbrs: list[set[int]] = [set() for _ in range(topo.N_POINTS)]
    for a, b, c in FACE_TRIANGLES:
        for u, v in ((a, b), (b, c), (c, a)):
            nbrs[int(u)].add(int(v))
            nbrs[int(v)].add(int(u))
    dist = np.full(topo.N_POINTS, 10**6, np.int64)
    todo = deque(int(s) for s in seeds)
    dist[seeds] = 0
    while todo:
        u = todo.popleft()
        for v in nbrs[u]:
            if dist[v] > dist[u] + 1:
                dist[v] = dist[u] + 1
                todo.append(v)
    return dist


_FEATURE_V = np.zeros(topo.N_POINTS, bool)
_FEATURE_V[_feature_vertices()] = True
#: (T,) bool per face triangle: touches an eye, brow, the nose or the lips (never skin-tested).
FEATURE_TRIANGLES: np.ndarray = _FEATURE_V[FACE_TRIANGLES].any(1)
#: (T,) bool: within two rings of the outline (temples, jaw, cheek edge).
EDGE_TRIANGLES: np.ndarray = (_ring_distance(_OVAL)[FACE_TRIANGLES] <= 2).any(1)
# Parts of the face surface, per triangle (what the skin tests and lighting fits look at).
FEATURE, EDGE, CENTRE = 1, 2, 3
#: (T,) uint8 part of each face triangle: FEATURE, else EDGE, else CENTRE.
TRIANGLE_PARTS: np.ndarray = np.where(FEATURE_TRIANGLES, FEATURE, np.where(EDGE_TRIANGLES, EDGE, CENTRE)).astype(np.uint8)


def draw_order(mesh: np.ndarray) -> np.ndarray:
    """``(T,) int`` order of :data:`FACE_TRIANGLES` far to near (smaller z is nearer)."""
    return np.argsort(-np.asarray(mesh, np.float64)[:, 2][FACE_TRIANGLES].mean(1), kind="stable")


def skin_statistics(ratio: np.ndarray, where: np.ndarray) -> np.ndarray | None:
    """Robust skin statistics of a shading-divided image.

    Args:
        ratio: ``(H, W, 3) float32`` colour divided by the fitted skin shading (≈1 on skin).
        where: ``(H, W) bool`` skin patches to learn from.
    Returns:
        ``(2, 3) float32``: medians and robust spreads of (log B/G, log R/G, log luminance), or
        None with fewer than 16 pixels.
    """
    feats = _skin_features(ratio[where])
    if len(feats) < 16:
        return None
    med = np.median(feats, 0)
    mad = np.median(np.abs(feats - med), 0) * 1.4826
    return np.stack([med, np.maximum(mad, [0.03, 0.03, 0.06])]).astype(np.float32)


def _skin_features(pixels: np.ndarray) -> np.ndarray:
    """``(..., 3)`` BGR ratios → ``(..., 3) float32`` log B/G, log R/G, log mean."""
    p = np.maximum(np.asarray(pixels, np.float32), np.float32(1e-3))
    lum = p.sum(-1, keepdims=True) * np.float32(1.0 / 3.0)
    logs = np.log(np.concatenate([p, lum], -1))
    return np.stack([logs[..., 0] - logs[..., 1], logs[..., 2] - logs[..., 1], logs[..., 3]], -1)


def skin_distance(ratio: np.ndarray, stats: np.ndarray, dark_weight: float = 1.0) -> np.ndarray:
    """``(H, W) float32``: how far each pixel of ``ratio`` ``(H, W, 3)`` is from skin, in robust
    standard deviations (chroma both ways, luminance only darker than skin, by ``dark_weight``)."""
    z = (_skin_features(ratio) - stats[0]) / stats[1]
    chroma = np.sqrt(z[..., 0] ** 2 + z[..., 1] ** 2)
    return np.maximum(chroma, -dark_weight * z[..., 2]).astype(np.float32)


def foreign_weight(ratio: np.ndarray, stats: np.ndarray, test: np.ndarray, surround: np.ndarray | None) -> np.ndarray:
    """How foreign (hair, background, a stain) each tested texel of a face is, by a two-class
    comparison: its skin distance against its distance to the nearest clearly-not-skin sample
    from around the face.

    Args:
        ratio: ``(H, W, 3) float32`` colour over fitted skin shading (≈1 on skin).
        stats: ``(2, 3)`` skin statistics (:func:`skin_statistics`).
        test: ``(H, W) bool`` texels to judge.
        surround: ``(H, W) bool`` pixels around the face (hair, background, ears...); those
            unlike skin become the samples of "not skin". None: only the far test.
    Returns:
        ``(H, W) float32`` 0 (skin) .. 1 (foreign), 0 outside ``test``.
    """
    out = np.zeros(test.shape, np.float32)
    if not test.any():
        return out
    z = (_skin_features(ratio[test]) - stats[0]) / stats[1]
    d_skin = np.maximum(np.hypot(z[:, 0], z[:, 1]), -z[:, 2])  # as skin_distance
    unlike = _smoothstep(d_skin, SKIN_SOFT, SKIN_HARD)
    foreign = _smoothstep(d_skin, FAR_SOFT, FAR_HARD)
    ys, xs = np.nonzero(surround) if surround is not None else ((), ())
    if len(ys):
        pick = np.linspace(0, len(ys) - 1, min(len(ys), 4 * SURROUND_SAMPLES)).astype(np.int64)
        zs = (_skin_features(ratio[ys[pick], xs[pick]]) - stats[0]) / stats[1]
        zs = zs[np.maximum(np.hypot(zs[:, 0], zs[:, 1]), -zs[:, 2]) > SKIN_HARD][:: max(1, len(zs) // SURROUND_SAMPLES)]
        ask = (unlike > 0) & (foreign < 1)  # skin needs no neighbour search
        if len(zs) and ask.any():
            d_other = cKDTree(zs).query(z[ask], k=1)[0]
            foreign[ask] = np.maximum(foreign[ask], unlike[ask] * _smoothstep(d_skin[ask] - d_other, 0.0, NEARER_SOFT))
    out[test] = foreign
    return out


def _anchored(occ: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """``occ`` ``(h, w) float32`` 0..1 with only the occluders (connected areas above 0.5, and
    their soft rims) that touch ``anchor`` ``(h, w) bool``."""
    count, labels = cv2.connectedComponents((occ > 0.5).view(np.uint8), connectivity=8)
    if count <= 1:
        return occ
    kept = np.zeros(count, bool)
    kept[np.unique(labels[anchor])] = True
    kept[0] = False
    rim = cv2.dilate(kept[labels].view(np.uint8), np.ones((3, 3), np.uint8), iterations=2).view(bool)
    return np.where(rim, occ, np.float32(0.0))


def _smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((np.asarray(x, np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def skin_patches(shape: tuple[int, int], mesh: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: cheek, nose-bridge and chin patches of ``mesh`` ``(468, 2+)``."""
    canvas = np.zeros(shape, np.uint8)
    hulls = [cv2.convexHull(np.round(mesh[idx, :2] * 16).astype(np.int32)) for idx in _SKIN_PATCHES]
    cv2.fillPoly(canvas, hulls, 1, cv2.LINE_8, 4)
    return canvas.view(bool)


def forehead_zone(shape: tuple[int, int], mesh: np.ndarray) -> np.ndarray:
    """``(H, W) bool``: above the line through the brows' upper edge of ``mesh`` (following
    head roll), where hair would be."""
    pts = mesh[_BROW_TOPS, :2].astype(np.float64)
    a, b = np.polyfit(pts[:, 0], pts[:, 1], 1)
    line = a * np.arange(shape[1], dtype=np.float32) + np.float32(b - 0.02 * float(np.ptp(mesh[_OVAL, 0])))
    return np.arange(shape[0], dtype=np.float32)[:, None] < line[None, :]


@dataclass(frozen=True, eq=False)
class PreparedTexture:
    """A source texture made ready for the swap (see :func:`prepare_texture`).

    Attributes:
        filled: ``(h, w, 3) uint8`` BGR, invalid texels replaced from their mirror (in the
            source's own lighting).
        validity: ``(h, w) float32`` 0..1 after the mirror fill: how much of each texel the
            swap may use.
        ratio: ``(h, w, 4) uint16``: the filled texture divided by the source's fitted shading
            (B, G, R, ×:data:`RATIO_SCALE`; ≈1 on skin) and the validity (×:data:`RATIO_SCALE`).
        lighting: ``(9, 3) float32`` the source's SH lighting (None if it could not be fitted).
        raw_validity: ``(h, w) float32`` the weight before the mirror fill.
        shade: ``(h, w, 3) float32`` the source's fitted skin shading (its mean off the face):
            ``filled ≈ ratio × shade``.
    """

    filled: np.ndarray
    validity: np.ndarray
    ratio: np.ndarray
    lighting: np.ndarray | None
    raw_validity: np.ndarray
    shade: np.ndarray


def prepare_texture(image: np.ndarray, mesh: np.ndarray, *, use_validity: bool = True,
                    exclude: np.ndarray | None = None) -> PreparedTexture:
    """Validity, mirror fill and shading ratio of a source face.

    Args:
        image: ``(h, w, 3) uint8`` BGR crop holding the face.
        mesh: ``(468, 3)`` its FaceMesh in crop pixels.
        use_validity: False trusts every texel (the ratio and lighting are still made).
        exclude: ``(h, w) bool`` texels known not to be face (the face parser's hair, hat,
            glasses, background...), or None. Given, it replaces the colour skin test.
    """
    h, w = image.shape[:2]
    mesh = np.asarray(mesh, np.float64)
    width = float(np.ptp(mesh[_OVAL, 0]))
    order = draw_order(mesh)
    tris = FACE_TRIANGLES[order]
    normals = vertex_normals(mesh).astype(np.float64)
    mirror_xy = mesh[MIRROR, :2]
    attrs = np.concatenate([mirror_xy, normals, np.zeros((len(mesh), 1))], 1)  # mx my nx ny nz 0
    ids = rasterize_ids(mesh[tris, :2], (h, w))
    maps = dense_maps(ids, triangle_affines(mesh[tris, :2], attrs[tris]))
    inside = ids > 0
    n = maps[2:5].transpose(1, 2, 0)
    n /= np.maximum(np.linalg.norm(n, axis=2, keepdims=True), 1e-6)
    part = np.concatenate([[0], TRIANGLE_PARTS[order]])[ids]
    edge = part == EDGE

    img = image.astype(np.float32)
    visible = _smoothstep(-n[..., 2], 0.15, 0.45) * inside
    dist = cv2.distanceTransform(inside.view(np.uint8), cv2.DIST_L2, 5)
    forehead = forehead_zone((h, w), mesh)
    outline = np.where(forehead, _smoothstep(dist, 0.0, 0.08 * width), _smoothstep(dist, 0.0, 0.04 * width))
    prior = visible * outline

    # lighting from the central skin (no features; not the forehead or the edge bands, where
    # hair would pass for shading), weighted by the geometric validity
    step = max(1, int(np.sqrt(inside.sum() / 6000.0)))
    sel = ((part == CENTRE) & ~forehead)[::step, ::step] & (prior[::step, ::step] > 0.3)
    lighting = fit_lighting(n[::step, ::step][sel], img[::step, ::step][sel], prior[::step, ::step][sel])
    mean = img[inside].mean(0) if inside.any() else img.reshape(-1, 3).mean(0)
    shade = np.where(inside[..., None], shading(n, lighting), mean).astype(np.float32) if lighting is not None \
        else np.full((h, w, 3), mean, np.float32)
    ratio = np.clip(img / np.maximum(shade, 1.0), RATIO_RANGE[0], RATIO_RANGE[1])

    if use_validity:
        stats = skin_statistics(ratio, skin_patches((h, w), mesh) & inside)
        skin = np.ones((h, w), np.float32)
        if exclude is not None:  # the parser knows hair from shadow; the colour model does not
            # a ramp inside the face part, so that own and mirrored texels blend, never meet in a seam
            inner = cv2.distanceTransform((~np.asarray(exclude, bool)).view(np.uint8), cv2.DIST_L2, 5)
            skin = _smoothstep(inner, 0.0, PARSED_RAMP * width)
            if stats is not None:  # what no parse class names: a stain, a sticker, a hand
                skin *= 1.0 - _far_chroma(ratio, stats, inside, mesh, width)
        elif stats is not None:  # features by their own outlines here: brow triangles reach far up
            features = area_mask((h, w), mesh[:, :2], ("eyes", "brows", "nose", "mouth")) > 0.5
            bands = inside & ~features & (forehead | edge)
            near, far = (cv2.dilate(inside.view(np.uint8), disc(f * width)).view(bool) for f in SURROUND_RING)
            above_mouth = np.arange(h)[:, None] < mesh[13, 1]  # not the neck, skin too
            foreign = foreign_weight(ratio, stats, bands, far & ~near & above_mouth)
            # grown, not blurred: a thin dark strand must not be averaged away with the skin
            k = max(1, int(round(0.008 * width)))
            skin = np.where(bands, 1.0 - cv2.dilate(foreign, np.ones((2 * k + 1, 2 * k + 1), np.uint8)), 1.0)
        valid = (prior * skin).astype(np.float32)
    else:
        valid = inside.astype(np.float32)

    # mirrored completion: a texel's own value where valid, its mirror's where that one is
    mx, my = maps[0], maps[1]
    valid_m = cv2.remap(valid, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) * inside
    ratio_m = cv2.remap(ratio, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    use_m = ((1.0 - valid) * valid_m)[..., None]
    total = valid[..., None] + use_m
    filled_ratio = np.where(total > 1e-3, (ratio * valid[..., None] + ratio_m * use_m) / np.maximum(total, 1e-3),
                            ratio)
    if use_validity:  # a soft fade, never a cut: blurred, and never beyond the face surface
        # wider where the parser cut a whole area out (a fringe, glasses): the target shows
        # through there, and a long soft ramp hides where its skin meets the source's
        soft = VALIDITY_SOFT_PARSED if exclude is not None else VALIDITY_SOFT
        validity = cv2.GaussianBlur(np.clip(total[..., 0], 0.0, 1.0), (0, 0), max(0.5, soft * width)) * inside
    else:
        validity = inside.astype(np.float32)
    if use_validity:
        filled = np.where(inside[..., None], filled_ratio * np.maximum(shade, 1.0), img)
        filled8 = np.clip(filled + 0.5, 0, 255).astype(np.uint8)
    else:
        filled8 = image
    ratio16 = np.empty((h, w, 4), np.uint16)
    ratio16[..., :3] = np.clip(np.where(inside[..., None], filled_ratio, 1.0) * RATIO_SCALE + 0.5, 0, 65535)
    ratio16[..., 3] = np.clip(validity * RATIO_SCALE + 0.5, 0, 65535)
    return PreparedTexture(filled=filled8, validity=validity.astype(np.float32), ratio=ratio16,
                           lighting=lighting, raw_validity=valid, shade=shade)


def _far_chroma(ratio: np.ndarray, stats: np.ndarray, inside: np.ndarray, mesh: np.ndarray,
                width: float) -> np.ndarray:
    """``(h, w) float32`` 0..1: texels of the face surface (``inside``, not its eyes, brows,
    nose or lips) whose colour — chroma only, so that no shadow counts — is far from the skin's
    (``stats``, :func:`skin_statistics`), grown a little so a patch goes whole."""
    test = inside & ~(area_mask(ratio.shape[:2], mesh[:, :2], ("eyes", "brows", "nose", "mouth")) > 0.5)
    out = np.zeros(inside.shape, np.float32)
    if test.any():
        z = (_skin_features(ratio[test]) - stats[0]) / stats[1]
        out[test] = _smoothstep(np.hypot(z[:, 0], z[:, 1]), FAR_SOFT, FAR_HARD)
        out = cv2.dilate(out, disc(0.015 * width))
    return out


def occluder_keep(image: np.ndarray, shade: np.ndarray, skin_where: np.ndarray, testable: np.ndarray,
                  face_width: float, dark_weight: np.ndarray | float = OCCLUDER_DARK_WEIGHT,
                  anchor: np.ndarray | None = None) -> np.ndarray:
    """What of a target face must stay in front of the swap: its hair, fringe, glasses frames,
    hands — whatever is not skin where skin should be.

    Args:
        image: ``(h, w, 3) uint8`` the target face (canvas size is enough).
        shade: ``(h, w, 3) float32`` its fitted skin shading (:func:`swapline.blend.relight.shading_map`).
        skin_where: ``(h, w) bool`` cheek, nose and chin patches (the skin model's samples).
        testable: ``(h, w) bool`` face surface that is not an eye, brow, nose or lip.
        face_width: the face's width in these pixels.
        dark_weight: how much darker-than-skin counts, everywhere or per pixel ``(h, w)``.
        anchor: ``(h, w) bool`` where an occluder reaches from (the face's border): only
            occluders connected to it are kept (hair, glasses and hands come from outside the
            face; a shaded eye socket or a blotch on the cheek does not). None: all are kept.
    Returns:
        ``(h, w) float32``: 1 where the swap may go, falling to 0 over occluders.
    """
    ratio = cv2.divide(image, cv2.max(shade, 1.0), dtype=cv2.CV_32F)
    stats = skin_statistics(ratio, skin_where & testable)
    keep = np.ones(image.shape[:2], np.float32)
    if stats is None:
        return keep
    occ = np.zeros(image.shape[:2], np.float32)  # only where the test applies
    dark = dark_weight[testable] if isinstance(dark_weight, np.ndarray) else dark_weight
    occ[testable] = _smoothstep(skin_distance(ratio[testable], stats, dark), SKIN_SOFT, SKIN_HARD)
    if anchor is not None:
        occ = _anchored(occ, anchor)
    # specks are noise, an occluder has extent: open (thin strands survive), grow past the soft
    # edge so the occluder's own pixels stay whole, then soften
    occ = cv2.morphologyEx(occ, cv2.MORPH_OPEN, disc(OCCLUDER_OPEN * face_width))
    occ = cv2.dilate(occ, disc(OCCLUDER_GROW * face_width))
    occ = cv2.GaussianBlur(occ, (0, 0), max(0.5, OCCLUDER_SOFT * face_width))
    return np.clip(1.0 - occ, 0.0, 1.0, out=keep)
