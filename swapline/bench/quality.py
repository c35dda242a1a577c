"""``swapline benchmark --quality``: how real the built-in swap looks, over hard cases.

Each case swaps a source photo into a target (a photo or a frame of a video) with every variant
of :data:`VARIANTS` and measures, against the target:

- identity: SFace cosine of the output's main (largest) face to the source's main face and to
  the target's main face, and the margin ``cos(out, source) − cos(out, target)``;
- lighting: Pearson correlation over the target's face (its mesh's oval polygon, eroded by 5 %
  of the face width) of the result's and the target's low-frequency luminance (grey image,
  Gaussian blur with sigma = 0.08 × face width);
- edge: mean Sobel gradient magnitude (grey) of the result over that of the target, on the band
  within ±2 % of the face width of the oval's boundary (1.0: no new edge);
- background: PSNR of the result against the target over the pixels farther than 25 % of the
  face width outside the oval (99 dB when identical), and the largest absolute difference there;
- skin tone: CIELAB distance (ΔE 1976) between the mean colour of the result's and of the
  target's skin, over the pixels of the target's face that the face parser classes as skin in
  both (NaN without the parser); ``skin_dl`` the difference in L*;
- ms per face: ``times_ms`` of swap, blend and parse per swapped face.

The face width is the x extent of the target's oval polygon. The regions are the target's (the
same for every variant). A contact sheet shows, per case, the source, the target and the
variants named by ``sheet_variants``, cropped around the target's face.

The media are the shared test files (``../shared/media`` beside the repository); cases whose
source or target has no face are skipped and reported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from ..blend.masks import polygon_mask
from ..blend.parsing import SKIN
from ..config import RuntimeConfig, SwapConfig
from ..face import mesh_topology as topo
from ..face.recognize import cosine
from ..runtime.session import default_threads

if TYPE_CHECKING:
    from ..api import Session
    from ..face.types import Face
    from ..swap.mesh import SourceFace

MEDIA = Path(__file__).resolve().parents[2].parent / "shared" / "media"

# -- variants (rows of the table) ------------------------------------------------------------
BEFORE = SwapConfig(source_validity=False, keep_occluders=False, relight=0.0, blend="alpha", face_parsing=False)
COLOUR = SwapConfig(face_parsing=False)  # today's defaults without the face parser (the colour skin model)
VARIANTS: dict[str, SwapConfig] = {
    "before": BEFORE,  # the first default
    "+validity": dataclasses.replace(BEFORE, source_validity=True),
    "+occluders": dataclasses.replace(BEFORE, keep_occluders=True),
    "+relight": dataclasses.replace(BEFORE, relight=1.0),
    "+multiband": dataclasses.replace(BEFORE, blend="multiband"),
    "colour": COLOUR,
    "after": SwapConfig(),  # the current defaults (the face parser on)
    "relight-0": SwapConfig(relight=0.0),
    "relight-0.6": SwapConfig(relight=0.6),
    "relight-1": SwapConfig(relight=1.0),
    "light-match-0": SwapConfig(light_match=0.0),
    "light-match-1": SwapConfig(light_match=1.0),
    "poisson": SwapConfig(blend="poisson"),
}
SHEET_VARIANTS: tuple[str, ...] = ("colour", "after")

# -- targets printed beside the table ----------------------------------------------------------
LIGHTING_TARGET = 0.90
SKIN_TONE_TARGET = 4.0  # ΔE of the mean skin colour, on every face
BACKGROUND_TARGET_DB = 45.0
MARGIN_SLACK = 0.05  # identity margin may be at most this much below the "before" row's

# -- metric geometry, fractions of the face width ------------------------------------------
INNER_ERODE = 0.05
LOW_PASS_SIGMA = 0.08
WIDE_SIGMA = 0.2  # the second lighting figure: blur at the scale of the face's lighting
EDGE_BAND = 0.02
BACKGROUND_GAP = 0.25
PSNR_IDENTICAL = 99.0

# -- contact sheet -----------------------------------------------------------------------------
CROP_GROW = 1.6   # crop side = this × the larger extent of the target's face oval
TILE_PX = 256
HEADER_PX = 28


@dataclass(frozen=True)
class Case:
    """One swap to judge.

    ``source`` and ``target`` are file names in the media folder; ``frame`` is the frame index
    when ``target`` is a video. ``kind``: ``pair`` (press photos of two people), ``hard-target``,
    ``hard-source``, ``video`` or ``group`` (every face swapped; skin tone judged on each).
    """

    name: str
    kind: str
    source: str
    target: str
    frame: int | None = None


def _pair(src: str, tgt: str, kind: str, frame: int | None = None) -> Case:
    short = {
        "src_obama.jpg": "obama", "src_biden.jpg": "biden", "src_astronaut_eileen_collins.png": "collins",
        "id_obama2.jpg": "obama2", "id_biden2.jpg": "biden2", "hard_curls_glasses.jpg": "curls_glasses",
        "hard_painting_child.jpg": "painting_child", "hard_beard_outdoor.jpg": "beard_outdoor",
        "hard_cameraman_profile_gray.png": "cameraman", "vid_lp_d9_glasses_fringe_512x480.mp4": "d9",
        "vid_lp_d10_expressions_512.mp4": "d10",
    }
    name = f"{short.get(src, Path(src).stem)}→{short.get(tgt, Path(tgt).stem)}"
    return Case(name + (f"#{frame}" if frame is not None else ""), kind, src, tgt, frame)


D9, D10 = "vid_lp_d9_glasses_fringe_512x480.mp4", "vid_lp_d10_expressions_512.mp4"
CASES: tuple[Case, ...] = (
    # (a) press photos of different people
    _pair("src_obama.jpg", "src_biden.jpg", "pair"),
    _pair("src_biden.jpg", "id_obama2.jpg", "pair"),
    _pair("src_astronaut_eileen_collins.png", "id_biden2.jpg", "pair"),
    _pair("id_obama2.jpg", "src_astronaut_eileen_collins.png", "pair"),
    _pair("id_biden2.jpg", "src_obama.jpg", "pair"),
    _pair("src_obama.jpg", "src_astronaut_eileen_collins.png", "pair"),
    # (b) hard photos as the target (frontal press source) and as the source (press target)
    _pair("src_obama.jpg", "hard_curls_glasses.jpg", "hard-target"),
    _pair("src_astronaut_eileen_collins.png", "hard_painting_child.jpg", "hard-target"),
    _pair("src_biden.jpg", "hard_beard_outdoor.jpg", "hard-target"),
    _pair("src_obama.jpg", "hard_cameraman_profile_gray.png", "hard-target"),
    _pair("hard_curls_glasses.jpg", "src_biden.jpg", "hard-source"),
    _pair("hard_painting_child.jpg", "src_obama.jpg", "hard-source"),
    _pair("hard_beard_outdoor.jpg", "src_astronaut_eileen_collins.png", "hard-source"),
    # (c) video frames spread over the clips (587 and 448 frames)
    *(_pair("src_astronaut_eileen_collins.png", D9, "video", i) for i in (98, 293, 489)),
    *(_pair("src_obama.jpg", D10, "video", i) for i in (75, 224, 373)),
    # (d) a group in warm indoor light, small faces (60-130 px): every face swapped and judged
    _pair("src_biden.jpg", "multi_t1_group6.jpg", "group"),
)
QUICK: tuple[str, ...] = ("obama→biden", "obama→curls_glasses", "curls_glasses→biden", "collins→d9#293")


def select_cases(quick: bool = False, names: Sequence[str] | None = None) -> list[Case]:
    """The cases to run: ``names`` (in that order) if given, else :data:`QUICK` with ``quick``,
    else all of :data:`CASES`.

    Raises:
        KeyError: an unknown case name.
    """
    by_name = {c.name: c for c in CASES}
    wanted = names if names is not None else (QUICK if quick else None)
    if wanted is None:
        return list(CASES)
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise KeyError(f"unknown case {unknown[0]!r}; cases: " + ", ".join(by_name))
    return [by_name[n] for n in wanted]


# -- metrics -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FaceRegions:
    """The target face's regions the metrics are taken over.

    Attributes:
        face: ``(H, W) bool`` inside the oval polygon.
        inner: ``(H, W) bool`` the face eroded by ``INNER_ERODE`` × width (lighting).
        band: ``(H, W) bool`` within ``EDGE_BAND`` × width of the oval's boundary (edge).
        background: ``(H, W) bool`` farther than ``BACKGROUND_GAP`` × width outside the oval.
        width: face width in pixels (x extent of the oval polygon).
    """

    face: np.ndarray
    inner: np.ndarray
    band: np.ndarray
    background: np.ndarray
    width: float


def face_width(mesh: np.ndarray) -> float:
    """x extent of the face oval of ``mesh`` ``(468, 2 or 3) float32`` pixel coordinates."""
    return float(np.ptp(mesh[topo.as_array(topo.FACE_OVAL), 0]))


def face_regions(shape: tuple[int, ...], oval: np.ndarray, width: float | None = None) -> FaceRegions:
    """Regions of an image of ``shape`` ``(H, W, ...)`` around the polygon ``oval`` ``(K, 2)``
    float ``x, y`` pixels (the face oval). ``width`` defaults to the polygon's x extent.

    Distances are Euclidean (distance transforms), so the bands have the same width all round.
    """
    h, w = int(shape[0]), int(shape[1])
    width = float(np.ptp(oval[:, 0])) if width is None else float(width)
    face = polygon_mask((h, w), oval) > 0.5
    inside = cv2.distanceTransform(face.astype(np.uint8), cv2.DIST_L2, 5)       # to the nearest outside px
    outside = cv2.distanceTransform((~face).astype(np.uint8), cv2.DIST_L2, 5)   # to the nearest face px
    inner = inside > INNER_ERODE * width
    band = np.where(face, inside, outside) <= max(EDGE_BAND * width, 1.0)
    background = ~face & (outside > BACKGROUND_GAP * width)
    return FaceRegions(face=face, inner=inner, band=band, background=background, width=width)


def regions_for_face(shape: tuple[int, ...], mesh: np.ndarray) -> FaceRegions:
    """:func:`face_regions` for a face mesh ``(468, 3) float32`` in pixels."""
    return face_regions(shape, mesh[topo.as_array(topo.FACE_OVAL), :2].astype(np.float64))


def _roi(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Bounding box of ``mask`` ``(H, W) bool`` grown by ``margin`` px, clipped to the image."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return slice(0, 0), slice(0, 0)
    h, w = mask.shape
    return (slice(max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)),
            slice(max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)))


def _grey(image: np.ndarray) -> np.ndarray:
    """``(h, w, 3) uint8`` BGR (or ``(h, w)``) → ``(h, w) float32`` luminance 0..255."""
    if image.ndim == 2:
        return image.astype(np.float32)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def lighting_agreement(result: np.ndarray, target: np.ndarray, regions: FaceRegions,
                       sigma_frac: float = LOW_PASS_SIGMA) -> float:
    """Pearson correlation over ``regions.inner`` of the low-frequency luminance (grey image,
    Gaussian blur with sigma ``sigma_frac`` × width) of ``result`` and ``target``
    ``(H, W, 3) uint8`` BGR. 1.0: the same shading. NaN when the region is empty; when either
    side is flat, 1.0 if both are equal there, else 0.0."""
    sigma = max(sigma_frac * regions.width, 0.5)
    rows, cols = _roi(regions.inner, int(math.ceil(3 * sigma)) + 1)
    mask = regions.inner[rows, cols]
    if not mask.any():
        return float("nan")
    a = cv2.GaussianBlur(_grey(result[rows, cols]), (0, 0), sigma)[mask].astype(np.float64)
    b = cv2.GaussianBlur(_grey(target[rows, cols]), (0, 0), sigma)[mask].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if den < 1e-9:
        return 1.0 if np.allclose(a, b, atol=1e-3) else 0.0
    return float((a * b).sum() / den)


def _gradient(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude ``(h, w) float32`` of the grey image."""
    g = _grey(image)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def edge_ratio(result: np.ndarray, target: np.ndarray, regions: FaceRegions) -> float:
    """Mean Sobel gradient magnitude of ``result`` over that of ``target`` (``(H, W, 3) uint8``)
    on ``regions.band`` (the oval's boundary ± ``EDGE_BAND`` × width). 1.0: no new edge; above
    1: a seam shows. NaN when the band is empty."""
    rows, cols = _roi(regions.band, 2)
    mask = regions.band[rows, cols]
    if not mask.any():
        return float("nan")
    num = float(_gradient(result[rows, cols])[mask].mean())
    den = float(_gradient(target[rows, cols])[mask].mean())
    if den < 1e-9:
        return 1.0 if num < 1e-9 else float("inf")
    return num / den


def background_psnr(result: np.ndarray, target: np.ndarray, regions: FaceRegions) -> tuple[float, int]:
    """PSNR (dB, peak 255, over all channels) of ``result`` against ``target``
    (``(H, W, 3) uint8``) on ``regions.background``, and the largest absolute difference there.
    Identical (or an empty region): ``(PSNR_IDENTICAL, 0)``; never above ``PSNR_IDENTICAL``."""
    if not regions.background.any():
        return PSNR_IDENTICAL, 0
    diff = result[regions.background].astype(np.int16) - target[regions.background].astype(np.int16)
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    peak = int(np.abs(diff).max())
    if mse == 0.0:
        return PSNR_IDENTICAL, 0
    return min(PSNR_IDENTICAL, 10.0 * math.log10(255.0 ** 2 / mse)), peak


# -- running the cases -------------------------------------------------------------------------
@dataclass
class _Prepared:
    """A case ready to swap: images ``(H, W, 3) uint8`` BGR, main faces, regions."""

    case: Case
    source_image: np.ndarray
    target: np.ndarray
    sources: dict[tuple[bool, bool], "SourceFace"]  # by (face_parsing, source_validity), shared per source file
    source_face: "Face"
    target_face: "Face"
    regions: FaceRegions
    target_skins: list[tuple["Face", np.ndarray]] = field(default_factory=list)  # faces judged for skin tone
    tiles: dict[str, np.ndarray] = field(default_factory=dict)


def read_video_frames(path: Path, indices: Sequence[int]) -> dict[int, np.ndarray]:
    """Decode the frames at ``indices`` (0-based) of the video at ``path`` with PyAV:
    ``{index: (H, W, 3) uint8 BGR}``; indices past the end are missing from the result."""
    import av

    want, out = set(indices), {}
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in want:
                out[i] = frame.to_ndarray(format="bgr24")
                if len(out) == len(want):
                    break
    return out


def _main_face(faces: Sequence["Face"]) -> "Face | None":
    return max(faces, key=lambda f: f.area) if faces else None


def crop_around(image: np.ndarray, mesh: np.ndarray, grow: float = CROP_GROW, size: int = TILE_PX) -> np.ndarray:
    """A square crop of ``image`` ``(H, W, 3) uint8`` centred on the face oval of ``mesh``
    ``(468, 3)``, side ``grow`` × the oval's larger extent (padded grey beyond the image),
    resized to ``(size, size, 3) uint8``."""
    oval = mesh[topo.as_array(topo.FACE_OVAL), :2]
    (x0, y0), (x1, y1) = oval.min(0), oval.max(0)
    side = max(x1 - x0, y1 - y0, 8.0) * grow
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    n = int(round(side))
    h, w = image.shape[:2]
    pad = max(0, -left, -top, left + n - w, top + n - h)
    padded = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(64, 64, 64)) if pad else image
    crop = padded[top + pad:top + pad + n, left + pad:left + pad + n]
    interp = cv2.INTER_AREA if n > size else cv2.INTER_CUBIC
    return cv2.resize(crop, (size, size), interpolation=interp)


def _prepare(session: "Session", case: Case, media: Path, frames: dict[tuple[str, int], np.ndarray],
             sources: dict[str, tuple[np.ndarray, "Face | None", "SourceFace | None"]]) -> "_Prepared | str":
    """Load a case; a string says why it is skipped."""
    from ..pipeline.image import read_image

    if case.source not in sources:
        image = read_image(media / case.source, "source")
        face = _main_face(session.analyse(image))
        sources[case.source] = (image, face, {})
    source_image, source_face, made = sources[case.source]
    if source_face is None:
        return f"no face in the source {case.source}"
    if case.frame is None:
        target = read_image(media / case.target, "target")
    else:
        target = frames.get((case.target, case.frame))
        if target is None:
            return f"{case.target} has no frame {case.frame}"
    target_face = _main_face(session.analyse(target))
    if target_face is None or target_face.mesh is None:
        return f"no face in the target {case.target}" + (f" frame {case.frame}" if case.frame is not None else "")
    regions = regions_for_face(target.shape, target_face.mesh)
    judged = [target_face]
    if case.kind == "group":  # every face is swapped, every face is judged
        judged = [f for f in session.analyse(target) if f.mesh is not None]
    skins = []
    for face in judged:
        skin = skin_pixels(session, target, face, regions_for_face(target.shape, face.mesh))
        if skin is not None:
            skins.append((face, skin))
    return _Prepared(case, source_image, target, made, source_face, target_face, regions, target_skins=skins)


def skin_pixels(session: "Session", image: np.ndarray, face: "Face", regions: FaceRegions) -> np.ndarray | None:
    """``(H, W) bool``: the face parser's skin class on ``face`` of ``image``, inside
    ``regions.face`` (None without a parser)."""
    parser = session.models.parser(SwapConfig())
    if parser is None:
        return None
    parse = parser.parse(image, [face])[0]
    return (parse.mask((SKIN,), image.shape[:2]) > 0.5) & regions.face


def skin_tone(result: np.ndarray, target: np.ndarray, skin: np.ndarray) -> tuple[float, float]:
    """``(ΔE, ΔL*)``: CIELAB distance between the mean colours of ``result`` and ``target``
    ``(H, W, 3) uint8`` BGR over ``skin`` ``(H, W) bool``, and the difference in L* (result minus
    target). NaN with fewer than 32 pixels."""
    if skin.sum() < 32:
        return float("nan"), float("nan")
    def mean_lab(image: np.ndarray) -> np.ndarray:
        px = image[skin].reshape(-1, 1, 3).astype(np.float32) / np.float32(255.0)
        return cv2.cvtColor(px, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float64).mean(0)
    a, b = mean_lab(result), mean_lab(target)
    return float(np.linalg.norm(a - b)), float(a[0] - b[0])


def source_for(session: "Session", prep: _Prepared, cfg: SwapConfig) -> "SourceFace":
    """The source prepared as ``cfg`` asks (with or without the parser, validity on or off),
    made once per source file and kind."""
    from ..pipeline.source import load_source

    key = (cfg.face_parsing, cfg.source_validity)
    if key not in prep.sources:
        prep.sources[key] = load_source(session.analyser, [prep.source_image], cfg, session.models.parser(cfg))
    return prep.sources[key]


def measure_case(session: "Session", prep: _Prepared, cfg: SwapConfig) -> dict[str, Any]:
    """Swap one case with ``cfg`` and measure it. Returns the metrics (floats; NaN where not
    measurable) and the result image under ``"image"`` ``(H, W, 3) uint8``."""
    source = source_for(session, prep, cfg)
    if prep.case.kind == "group":
        cfg = dataclasses.replace(cfg, face_selector_mode="many")
    r = session.swap(source, prep.target, cfg)
    out = _main_face(session.analyse(r.image))
    src_e, tgt_e = prep.source_face.embedding, prep.target_face.embedding
    nan = float("nan")
    to_src = cosine(out.embedding, src_e) if out is not None and out.embedding is not None and src_e is not None else nan
    to_tgt = cosine(out.embedding, tgt_e) if out is not None and out.embedding is not None and tgt_e is not None else nan
    psnr, peak = background_psnr(r.image, prep.target, prep.regions)
    faces = max(1, len(r.swapped))
    tone, tone_l = float("nan"), float("nan")
    for face, skin in prep.target_skins:  # the worst face; the result parsed where the target's face is
        both = skin_pixels(session, r.image, face, regions_for_face(r.image.shape, face.mesh))
        if both is not None:
            de, dl = skin_tone(r.image, prep.target, both & skin)
            if not math.isfinite(tone) or de > tone:
                tone, tone_l = de, dl
    return {
        "swapped": len(r.swapped),
        "cos_source": to_src,
        "cos_target": to_tgt,
        "margin": to_src - to_tgt,
        "lighting": lighting_agreement(r.image, prep.target, prep.regions),
        # at the scale of the lighting itself (SH order 2 varies over the face, not over an eye)
        "lighting_wide": lighting_agreement(r.image, prep.target, prep.regions, WIDE_SIGMA),
        "edge": edge_ratio(r.image, prep.target, prep.regions),
        "bg_psnr": psnr,
        "bg_max": peak,
        "skin_de": tone,
        "skin_dl": tone_l,
        "ms": sum(r.times_ms.get(k, 0.0) for k in ("swap", "blend", "parse")) / faces,
        "image": r.image,
    }


METRICS = ("cos_source", "cos_target", "margin", "lighting", "lighting_wide", "edge", "bg_psnr", "bg_max",
           "skin_de", "skin_de_max", "skin_dl", "ms")


def _summary(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Means over cases (NaN ignored); ``bg_max`` is the largest, ``ms`` the median."""
    def values(key: str) -> np.ndarray:
        v = np.array([r[key] for r in rows if "error" not in r], dtype=np.float64)
        return v[np.isfinite(v)]

    out: dict[str, float] = {}
    for key in METRICS:
        v = values("skin_de" if key == "skin_de_max" else key)
        if len(v) == 0:
            out[key] = float("nan")
        elif key in ("bg_max", "skin_de_max"):
            out[key] = float(v.max())
        elif key == "ms":
            out[key] = float(np.median(v))
        else:
            out[key] = float(v.mean())
    out["cases"] = float(sum(1 for r in rows if "error" not in r))
    return out


def _changed_fields(cfg: SwapConfig) -> dict[str, Any]:
    """The fields of ``cfg`` that differ from the defaults."""
    d = SwapConfig()
    return {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(d, f.name)}


def bench_quality(session: "Session", cases: Sequence[Case], variants: dict[str, SwapConfig], media: Path,
                  sheet_variants: Sequence[str] = SHEET_VARIANTS,
                  log: Any = None) -> tuple[dict[str, Any], np.ndarray | None]:
    """Run every case with every variant. Returns the report (JSON-ready: machine, variants,
    per-case metrics, means per variant, skipped cases) and the contact sheet ``(H, W, 3)
    uint8`` BGR (None when no case ran). ``log``: a callable given one line per case, or None.
    A variant that raises is recorded as an error for that case, not fatal."""
    started = time.perf_counter()
    frames: dict[tuple[str, int], np.ndarray] = {}
    for video in sorted({c.target for c in cases if c.frame is not None}):
        got = read_video_frames(media / video, [c.frame for c in cases if c.target == video and c.frame is not None])
        frames.update({(video, i): f for i, f in got.items()})
    sources: dict[str, tuple[np.ndarray, Face | None, dict[tuple[bool, bool], SourceFace]]] = {}
    prepared: list[_Prepared] = []
    skipped: dict[str, str] = {}
    for case in cases:
        prep = _prepare(session, case, media, frames, sources)
        if isinstance(prep, str):
            skipped[case.name] = prep
        else:
            prepared.append(prep)
    if prepared:  # warm-up, not counted (first-call costs would be timed as swap work)
        try:
            cfg0 = next(iter(variants.values()))
            session.swap(source_for(session, prepared[0], cfg0), prepared[0].target, cfg0)
        except Exception:  # noqa: BLE001, S110 - reported per variant below
            pass
    per_case: list[dict[str, Any]] = []
    by_variant: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    for prep in prepared:
        results: dict[str, dict[str, Any]] = {}
        for vname, cfg in variants.items():
            try:
                m = measure_case(session, prep, cfg)
            except Exception as exc:  # noqa: BLE001 - a broken variant must not stop the others
                m = {"error": f"{type(exc).__name__}: {exc}"}
            image = m.pop("image", None)
            if vname in sheet_variants and image is not None:
                prep.tiles[vname] = crop_around(image, prep.target_face.mesh)
            results[vname] = m
            by_variant[vname].append(m)
        per_case.append({"case": prep.case.name, "kind": prep.case.kind, "source": prep.case.source,
                         "target": prep.case.target, "frame": prep.case.frame,
                         "face_px": round(prep.regions.width), "results": results})
        if log is not None:
            log(f"  {prep.case.name}: " + ", ".join(
                f"{v} {r['margin']:+.2f}/{r['lighting']:.2f}" if "error" not in r else f"{v} error"
                for v, r in results.items()))
    report = {
        "machine": machine(),
        "variants": {k: _changed_fields(v) for k, v in variants.items()},
        "cases": per_case,
        "skipped": skipped,
        "means": {v: _summary(rows) for v, rows in by_variant.items()},
        "targets": {"lighting": LIGHTING_TARGET, "bg_psnr": BACKGROUND_TARGET_DB, "margin_slack": MARGIN_SLACK,
                    "skin_de": SKIN_TONE_TARGET},
        "seconds": round(time.perf_counter() - started, 1),
    }
    sheet = contact_sheet(prepared, sheet_variants) if prepared else None
    return report, sheet


# -- output ------------------------------------------------------------------------------------
def _label(tile: np.ndarray, text: str, scale: float = 0.5) -> None:
    """Write ``text`` on the top-left of ``tile`` ``(h, w, 3) uint8`` in place (white on a dark
    outline, readable on any picture)."""
    org = (6, 18)
    cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def contact_sheet(prepared: Sequence[_Prepared], sheet_variants: Sequence[str], size: int = TILE_PX) -> np.ndarray:
    """One row per case: source | target | each of ``sheet_variants`` (crops around the target's
    face, ``size`` px square), under a header strip naming the columns. Returns
    ``(HEADER_PX + rows × size, (2 + len(sheet_variants)) × size, 3) uint8`` BGR."""
    columns = ["source", "target", *sheet_variants]
    header = np.full((HEADER_PX, size * len(columns), 3), 32, np.uint8)
    for i, name in enumerate(columns):
        cv2.putText(header, name, (i * size + 8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    rows = [header]
    for prep in prepared:
        tiles = [crop_around(prep.source_image, prep.source_face.mesh, size=size),
                 crop_around(prep.target, prep.target_face.mesh, size=size)]
        for v in sheet_variants:
            tile = prep.tiles.get(v)
            if tile is None:
                tile = np.full((size, size, 3), 64, np.uint8)
                _label(tile, f"{v}: failed")
            tiles.append(tile.copy())
        _label(tiles[0], prep.case.name.replace("→", " -> "))  # Hershey fonts are ASCII only
        rows.append(np.hstack(tiles))
    return np.vstack(rows)


def _fmt(value: float, spec: str) -> str:
    return format(value, spec) if math.isfinite(value) else "n/a"


def _meets(row: dict[str, float], before: dict[str, float] | None) -> str:
    marks = [
        "L" if row["lighting"] >= LIGHTING_TARGET else "-",
        "B" if row["bg_psnr"] >= BACKGROUND_TARGET_DB else "-",
        "T" if math.isfinite(row.get("skin_de_max", float("nan"))) and row["skin_de_max"] <= SKIN_TONE_TARGET else "-",
        "I" if before is None or not math.isfinite(before["margin"])
        or row["margin"] >= before["margin"] - MARGIN_SLACK else "-",
    ]
    return "".join(marks)


_HEAD = (f"{'':<24}{'cos src':>8}{'cos tgt':>8}{'margin':>8}{'light':>7}{'light.2':>8}{'edge':>7}{'bg dB':>7}"
         f"{'bg max':>7}{'ΔE':>6}{'ΔE max':>7}{'ΔL':>6}{'ms':>7}")


def _line(name: str, m: dict[str, Any]) -> str:
    return (f"{name:<24}{_fmt(m['cos_source'], '.3f'):>8}{_fmt(m['cos_target'], '.3f'):>8}"
            f"{_fmt(m['margin'], '+.3f'):>8}{_fmt(m['lighting'], '.3f'):>7}{_fmt(m.get('lighting_wide', float('nan')), '.3f'):>8}"
            f"{_fmt(m['edge'], '.2f'):>7}"
            f"{_fmt(m['bg_psnr'], '.1f'):>7}{_fmt(float(m['bg_max']), '.0f'):>7}"
            f"{_fmt(m.get('skin_de', float('nan')), '.1f'):>6}"
            f"{_fmt(m.get('skin_de_max', m.get('skin_de', float('nan'))), '.1f'):>7}"
            f"{_fmt(m.get('skin_dl', float('nan')), '+.1f'):>6}{_fmt(m['ms'], '.1f'):>7}")


def format_quality(report: dict[str, Any], verbose: bool = False) -> str:
    """The table: one row per variant (means over the cases; ``bg max`` the largest, ``ms`` the
    median), the targets beside it; with ``verbose`` every case's rows first."""
    lines = [f"machine: {report['machine']}"]
    if verbose:
        for case in report["cases"]:
            lines.append(f"{case['case']} ({case['kind']}, face {case['face_px']} px)")
            lines.append(_HEAD)
            for v, m in case["results"].items():
                lines.append(f"  {v:<22}error: {m['error']}" if "error" in m else _line("  " + v, m))
        lines.append("")
    means: dict[str, dict[str, float]] = report["means"]
    n = max((int(m["cases"]) for m in means.values()), default=0)
    lines.append(f"means over {n} cases ({report['seconds']} s)")
    lines.append(f"{'variant':<24}" + _HEAD[24:] + "  targets")
    before = means.get("before")
    for v, m in means.items():
        failed = sum(1 for c in report["cases"] if "error" in c["results"].get(v, {}))
        extra = f"  ({failed} failed)" if failed else ""
        lines.append(_line(v, m) + f"  {_meets(m, before)}{extra}")
    lines.append(f"targets: L lighting ≥ {LIGHTING_TARGET:.2f}, B background ≥ {BACKGROUND_TARGET_DB:.0f} dB, "
                 f"T skin ΔE ≤ {SKIN_TONE_TARGET:.0f} on every face, "
                 f"I margin ≥ before's − {MARGIN_SLACK:.2f} ('-' = missed)")
    lines.append("cos src/tgt: SFace cosine of the output's face to the source's / target's; margin = "
                 "their difference; light: Pearson r of low-pass luminance over the face (sigma 0.08 of the "
                 "face width; light.2: sigma 0.2, the scale of the lighting itself); edge: "
                 "gradient at the oval ÷ the target's (1 = no seam); bg dB / bg max: PSNR and largest "
                 "difference beyond 25 % of the face width outside the oval (max over cases); ΔE / ΔE max / "
                 "ΔL: CIELAB distance of the mean skin colour (result vs target, on the skin both parses agree "
                 "on; mean, largest), and its L* part; ms: swap + blend + parse per face (median)")
    for name, why in report["skipped"].items():
        lines.append(f"skipped {name}: {why}")
    for case in report["cases"]:
        for v, m in case["results"].items():
            if "error" in m and not verbose:
                lines.append(f"failed {case['case']} {v}: {m['error']}")
    if report.get("sheet"):
        lines.append(f"contact sheet: {report['sheet']}")
    return "\n".join(lines)


def machine() -> str:
    """A one-line description of this machine for reports."""
    import platform

    return f"{platform.machine()} {platform.processor() or ''}, {default_threads()} threads, Python {platform.python_version()}"


def _json_safe(value: Any) -> Any:
    """NaN / inf → None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run_quality_benchmark(runtime: RuntimeConfig, *, quick: bool = False, sheet: Path | None = Path("swapline-quality.png"),
                          json_path: Path | None = None, verbose: bool = False,
                          sheet_variants: Sequence[str] = SHEET_VARIANTS, media: Path | None = None,
                          cases: Sequence[str] | None = None,
                          variants: Sequence[str] | None = None) -> int:
    """The ``benchmark --quality`` command: print the table, write the contact sheet PNG to
    ``sheet`` (None: none) and optionally the figures as JSON. ``cases`` / ``variants`` limit the
    run to those names. Returns the exit code (1 when the media folder is missing)."""
    import sys

    from ..api import Session
    from ..errors import ConfigError

    media = MEDIA if media is None else Path(media)
    if not media.is_dir():
        print(f"swapline: no test media at {media} (the shared media folder sits beside the repository)",
              file=sys.stderr)
        return 1
    chosen = dict(VARIANTS) if variants is None else {}
    for name in variants or ():
        if name not in VARIANTS:
            raise ConfigError(f"unknown variant {name!r}; choose from " + ", ".join(VARIANTS))
        chosen[name] = VARIANTS[name]
    for name in sheet_variants:
        if name not in chosen:
            raise ConfigError(f"--sheet-variants: {name!r} is not among the variants run: " + ", ".join(chosen))
    try:
        selected = select_cases(quick, cases)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None
    with Session(SwapConfig(), runtime) as session:
        report, image = bench_quality(session, selected, chosen, media, sheet_variants)
    if sheet is not None and image is not None:
        sheet = Path(sheet)
        sheet.parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(sheet), image):
            raise OSError(f"could not write {sheet}")
        report["sheet"] = str(sheet)
    print(format_quality(report, verbose))
    if json_path is not None:
        Path(json_path).write_text(json.dumps(_json_safe(report), indent=2))
    return 0
