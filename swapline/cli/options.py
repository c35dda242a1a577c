"""The options that several commands share, and their conversion to the frozen configs.

Runtime options (where models come from, how they run) become a :class:`~swapline.config.RuntimeConfig`,
the face selection, swapper, mask, colour and blend options a :class:`~swapline.config.SwapConfig`,
the video options a :class:`~swapline.config.VideoConfig`; with them the checks that need no model
(the model cache folder, ``--max-pixels``, ``--progress``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..config import (
    BLEND_MODES,
    COLOR_MATCHES,
    ENCODERS,
    EXPRESSIONS,
    FACE_ORDERS,
    MASK_AREAS,
    MASK_TYPES,
    PRESETS,
    SELECTOR_MODES,
    RuntimeConfig,
    SwapConfig,
    VideoConfig,
)
from ..errors import ConfigError, ModelError
from ..models.enhance_catalog import ENHANCERS, MASKERS, REGIONS
from ..models.neural_catalog import SWAPPERS
from ..models.store import default_root
from ..runtime.providers import PROVIDER_NAMES

PROGRESS_MODES = ("auto", "always", "never")
_DEFAULTS = SwapConfig()


def _padding(values: list[float]) -> tuple[float, float, float, float]:
    """CSS-like padding: 1 value for all sides, 2 for vertical/horizontal, 4 for t r b l."""
    if len(values) == 1:
        return (values[0],) * 4  # type: ignore[return-value]
    if len(values) == 2:
        return (values[0], values[1], values[0], values[1])
    if len(values) == 4:
        return tuple(values)  # type: ignore[return-value]
    raise ConfigError(f"--face-mask-padding: give 1, 2 or 4 values, not {len(values)}")


def add_runtime_options(p: argparse.ArgumentParser) -> None:
    """Where models come from and how they run (shared by every command that runs models)."""
    g = p.add_argument_group("models and execution")
    g.add_argument("--execution-providers", nargs="+", metavar="NAME", default=[],
                   choices=list(PROVIDER_NAMES),
                   help="inference providers in order of preference (%(choices)s); missing ones are "
                        "skipped with a warning; default: the best this onnxruntime build has")
    g.add_argument("--execution-device-id", type=int, default=0, metavar="N", help="GPU index (default 0)")
    g.add_argument("--execution-thread-count", type=int, default=0, metavar="N",
                   help="CPU threads per model (default: all usable cores)")
    g.add_argument("--model-dir", type=Path, metavar="DIR",
                   help="folder of model files you already have (checked by sha256 before use)")
    g.add_argument("--offline", action="store_true", help="never download; fail with where to put the file")
    g.add_argument("--fp16", action="store_true",
                   help="run the models in half precision (each is converted once and cached; inputs "
                        "and outputs stay fp32)")
    g.add_argument("--video-memory-strategy", choices=("strict", "moderate", "tolerant"), default="moderate",
                   help="strict releases model sessions and caches as soon as no stage needs them; "
                        "tolerant keeps everything (default: %(default)s)")
    g.add_argument("--max-video-memory", type=float, metavar="GIB",
                   help="cap on the GPU memory swapline plans to use; batch sizes adapt to it")


def runtime_from_args(args: argparse.Namespace) -> RuntimeConfig:
    """The :class:`RuntimeConfig` of :func:`add_runtime_options`' arguments, checked (exit 2 if bad)."""
    if args.execution_thread_count < 0:
        raise ConfigError(f"--execution-thread-count must be 0 (all cores) or more (got {args.execution_thread_count})")
    cores = usable_cores()
    if args.execution_thread_count > 4 * cores:
        raise ConfigError(f"--execution-thread-count must be at most 4 × the {cores} usable core(s) = {4 * cores} "
                          f"(got {args.execution_thread_count})")
    if args.execution_device_id < 0:
        raise ConfigError(f"--execution-device-id must be 0 or more (got {args.execution_device_id})")
    if args.model_dir is not None:
        if not args.model_dir.exists():
            raise ConfigError(f"--model-dir folder does not exist: {args.model_dir}")
        if not args.model_dir.is_dir():
            raise ConfigError(f"--model-dir is not a folder: {args.model_dir}")
    return RuntimeConfig(
        execution_providers=tuple(args.execution_providers),
        execution_device_id=args.execution_device_id,
        intra_op_threads=args.execution_thread_count,
        model_dir=args.model_dir,
        offline=args.offline,
        fp16=args.fp16,
        video_memory_strategy=args.video_memory_strategy,
        max_video_memory=args.max_video_memory,
    )


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the system has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def pixel_count(text: str) -> int:
    """``--max-pixels``: an integer, or with a k / M / G suffix (``100M``)."""
    scale = {"k": 10**3, "m": 10**6, "g": 10**9}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid pixel count: {text!r} (e.g. 100000000 or 100M)") from None
    if value != value or value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more (got {text!r})")
    return int(value)


def add_progress_option(p: argparse.ArgumentParser) -> None:
    """``--progress``: when to show progress bars."""
    p.add_argument("--progress", choices=PROGRESS_MODES, default="auto",
                   help="progress bars: auto (only when stderr is a terminal, so logs stay clean), "
                        "always or never (default: %(default)s)")


def add_swap_options(p: argparse.ArgumentParser) -> None:
    """Face selection, swapper, mask, colour and blend options."""
    d = _DEFAULTS
    g = p.add_argument_group("face selection")
    g.add_argument("--face-selector-mode", choices=SELECTOR_MODES, default=d.face_selector_mode,
                   help="reference: the face at --reference-face-position and every face like it; "
                        "one: the first face in order; many: every face (default: %(default)s)")
    g.add_argument("--face-selector-order", choices=FACE_ORDERS, default=d.face_selector_order,
                   metavar="ORDER", help=f"how faces are ordered: {', '.join(FACE_ORDERS)} "
                                         "(default: %(default)s)")
    g.add_argument("--reference-face-position", type=int, default=d.reference_face_position, metavar="N",
                   help="which face (in order, from 0) is the reference (default: %(default)s)")
    g.add_argument("--reference-face-distance", type=float, default=d.reference_face_distance, metavar="D",
                   help="faces within this identity distance (1 - cosine) of the reference are swapped "
                        "(default: %(default)s; same person ≈ 0.3, strangers ≈ 0.8-1.0)")
    g.add_argument("--face-detector-score", type=float, default=d.face_detector_score, metavar="S",
                   help="minimum detection confidence 0..1 (default: %(default)s)")
    g.add_argument("--face-detector-size", type=int, default=d.face_detector_size, metavar="PX",
                   help="long side the image is scaled to for detection, multiple of 32; smaller is "
                        "faster, larger finds smaller faces (default: %(default)s)")
    g = p.add_argument_group("built-in swapper")
    g.add_argument("--face-shape-weight", type=float, default=d.face_shape_weight, metavar="W",
                   help="how much of the source's face shape to take, 0..1 (default: %(default)s)")
    g.add_argument("--expression", choices=EXPRESSIONS, default=d.expression,
                   help="keep the target's mouth and eye opening, or take the source's (default: %(default)s)")
    g.add_argument("--swap-resolution", type=int, default=d.swap_resolution, metavar="PX",
                   help="canvas side for the warp maps; the texture is always sampled at full "
                        "resolution (default: %(default)s)")
    g = p.add_argument_group("neural models (downloaded on first use; their licences vary)")
    g.add_argument("--face-swapper-model", default=d.face_swapper_model, metavar="NAME",
                   choices=("builtin", *SWAPPERS),
                   help="builtin: the weight-free mesh swapper (default); or a neural swapper: "
                        + ", ".join(SWAPPERS))
    g.add_argument("--face-swapper-weight", type=float, default=d.face_swapper_weight, metavar="W",
                   help="how much of the neural swapper's output to paste, 0..1 (default: %(default)s)")
    g.add_argument("--face-swapper-pixel-boost", type=int, default=d.face_swapper_pixel_boost,
                   choices=(1, 2, 3, 4), metavar="N",
                   help="run the neural swapper on an N-times larger crop, as N×N tiles in one batch "
                        "(default: %(default)s)")
    g.add_argument("--face-enhancer-model", default=None, metavar="NAME", choices=tuple(ENHANCERS),
                   help="restore the swapped faces with: " + ", ".join(ENHANCERS))
    g.add_argument("--face-enhancer-blend", type=float, default=d.face_enhancer_blend, metavar="B",
                   help="how much of the enhanced face to keep, 0..1 (default: %(default)s)")
    g.add_argument("--face-enhancer-weight", type=float, default=d.face_enhancer_weight, metavar="W",
                   help="CodeFormer's fidelity weight, 0..1 (default: %(default)s)")
    g.add_argument("--face-occluder-model", default=d.face_occluder_model, metavar="NAME",
                   help="model for --face-mask-types occlusion: "
                        + ", ".join(n for n, m in MASKERS.items() if m.kind == "occlusion") + " (default: %(default)s)")
    g.add_argument("--face-parser-model", default=d.face_parser_model, metavar="NAME",
                   help="face parser (which source pixels are face; the target's hair, hat and glasses "
                        "frames stay in front; --face-mask-types region): "
                        + ", ".join(n for n, m in MASKERS.items() if m.kind == "region") + " (default: %(default)s)")
    g.add_argument("--no-face-parser", dest="face_parsing", action="store_false",
                   help="judge hair, glasses and shadows by colour instead of the face parser (no model "
                        "fetched; faster, less real)")
    g.add_argument("--face-mask-regions", nargs="+", default=list(d.face_mask_regions), metavar="REGION",
                   choices=tuple(REGIONS),
                   help="face-parser classes the region mask keeps, by FaceFusion's names and a few "
                        f"pairs: {', '.join(REGIONS)} (default: {' '.join(d.face_mask_regions)})")
    g = p.add_argument_group("masks")
    g.add_argument("--face-mask-types", nargs="+", choices=MASK_TYPES, default=list(d.face_mask_types),
                   metavar="TYPE", help="masks combined by their minimum: box (feathered face box), oval "
                   "(the face outline), area (mesh areas, see --face-mask-areas), occlusion (a model "
                   "that finds hands, hair, glasses in front of the face), region (face-parser regions) "
                   f"(default: {' '.join(d.face_mask_types)})")
    g.add_argument("--face-mask-areas", nargs="+", choices=MASK_AREAS, default=list(d.face_mask_areas),
                   metavar="AREA", help=f"areas of the area mask: {', '.join(MASK_AREAS)} "
                                        f"(default: {' '.join(d.face_mask_areas)})")
    g.add_argument("--face-mask-blur", type=float, default=d.face_mask_blur, metavar="F",
                   help="width of the soft edge as a fraction of the face width (default: %(default)s)")
    g.add_argument("--face-mask-erode", type=float, default=d.face_mask_erode, metavar="F",
                   help="how far the mask edge moves in, fraction of the face width (default: %(default)s)")
    g.add_argument("--face-mask-padding", type=float, nargs="+", default=[0.0], metavar="F",
                   help="box mask padding: 1, 2 or 4 fractions (top right bottom left)")
    g.add_argument("--keep-occluders", dest="keep_occluders", action="store_true",
                   help="also keep what is not skin by colour in front of the target's face (hands, strands "
                        "the parser misses; without the parser: hair, a fringe, glasses frames too) (+8 ms); "
                        "the face parser keeps hair, hat and glasses frames in front always")
    g.add_argument("--occlusion-gate", dest="keep_occluders", action="store_true",
                   help="old name of --keep-occluders (the column-wise gate it named is gone)")
    g.add_argument("--no-source-validity", dest="source_validity", action="store_false",
                   help="use every texel of the source face (by default hair, background and grazing "
                        "texels at the edge of the source's face are replaced from the mirrored side "
                        "or left to the target)")
    g = p.add_argument_group("colour and blending")
    g.add_argument("--color-match", choices=COLOR_MATCHES, default=d.color_match,
                   help="for the part --relight leaves: lab: the target's skin colour (default; with "
                        "--relight 0 a LAB mean/std transfer from cheek, nose and chin, ≈2 ms); "
                        "histogram: smoothed per-channel histogram matching (+4 ms); yuv-luma: the "
                        "target's lighting with the source's detail and colour (+5 ms); none "
                        "(costs: 2 CPU cores, 1080p, 400 px face)")
    g.add_argument("--relight", type=float, default=d.relight, metavar="R",
                   help="0..1: how much of the target's lighting (spherical harmonics fitted from the "
                        "face mesh's normals) replaces the source's shading and colour cast; the rest "
                        "is the source in its own light, colour-matched by --color-match (lab: scaled "
                        "to the target's skin colour in the same step) (default: %(default)s)")
    g.add_argument("--light-match", type=float, default=d.light_match, metavar="R",
                   help="0..1, with the face parser: how much of the target's broad light and shade "
                        "(measured on its skin) the swapped face takes, so that no shadow of the source "
                        "comes along; less keeps more of the source's look (default: %(default)s)")
    g.add_argument("--no-detail-match", dest="detail_match", action="store_false",
                   help="keep the source's full sharpness (by default the face is softened to the "
                        "target's level of detail, so it does not look pasted on or shimmer in video)")
    g.add_argument("--blend", choices=BLEND_MODES, default=d.blend,
                   help="alpha: feathered mask (default, ≈1 ms); multiband: Laplacian-pyramid blend, low "
                        "frequencies across a wide band and detail across a narrow one (+9 ms); poisson: "
                        "gradient-domain blend solved "
                        "on the face region only (+6 ms; evens out lighting at the edge, can wash out "
                        "a bright forehead)")


def add_video_options(p: argparse.ArgumentParser) -> None:
    """Video decoding, staging and encoding options."""
    d = VideoConfig()
    g = p.add_argument_group("video")
    g.add_argument("--output-video-encoder", choices=ENCODERS, default=d.encoder, metavar="ENCODER",
                   help=f"{', '.join(ENCODERS)}; auto: NVENC when a GPU has it, else libx264 "
                        "(default: %(default)s)")
    g.add_argument("--output-video-quality", type=int, default=d.quality, metavar="CRF",
                   help="constant rate factor 0..51, lower is better (default: %(default)s)")
    g.add_argument("--output-video-preset", choices=PRESETS, default=d.preset, metavar="PRESET",
                   help=f"encoder speed/size trade-off: {', '.join(PRESETS)} (default: %(default)s)")
    g.add_argument("--trim-frame-start", type=int, default=d.trim_start, metavar="N",
                   help="first frame to process (default: 0)")
    g.add_argument("--trim-frame-end", type=int, default=None, metavar="N",
                   help="frame to stop before (default: the end)")
    g.add_argument("--detect-interval", type=int, default=d.detect_interval, metavar="K",
                   help="run the face detector every K frames and follow faces with the mesh in "
                        "between; a lost face is detected again at once (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, metavar="N",
                   help="frames per batch in the detection stage (default: %(default)s)")
    g.add_argument("--queue-size", type=int, default=d.queue_size, metavar="N",
                   help="frames each stage may hold waiting; bounds memory (default: %(default)s)")
    g.add_argument("--swap-workers", type=int, default=d.swap_workers, metavar="N",
                   help="frames a neural swapper works on at once; 0: a quarter of the cores, 1 to 4 "
                        "(the built-in swapper smooths colour in frame order and uses one) "
                        "(default: %(default)s)")


def video_config_from_args(args: argparse.Namespace) -> VideoConfig:
    """The :class:`VideoConfig` of :func:`add_video_options`' arguments."""
    return VideoConfig(detect_interval=args.detect_interval, batch_size=args.batch_size,
                       queue_size=args.queue_size, swap_workers=args.swap_workers, encoder=args.output_video_encoder,
                       quality=args.output_video_quality, preset=args.output_video_preset,
                       trim_start=args.trim_frame_start, trim_end=args.trim_frame_end)


def swap_config_from_args(args: argparse.Namespace) -> SwapConfig:
    """The :class:`SwapConfig` of :func:`add_swap_options`' arguments."""
    return SwapConfig(
        face_selector_mode=args.face_selector_mode,
        face_selector_order=args.face_selector_order,
        reference_face_position=args.reference_face_position,
        reference_face_distance=args.reference_face_distance,
        face_detector_score=args.face_detector_score,
        face_detector_size=args.face_detector_size,
        face_shape_weight=args.face_shape_weight,
        expression=args.expression,
        swap_resolution=args.swap_resolution,
        face_mask_types=tuple(args.face_mask_types),
        face_mask_areas=tuple(args.face_mask_areas),
        face_mask_blur=args.face_mask_blur,
        face_mask_erode=args.face_mask_erode,
        face_mask_padding=_padding(args.face_mask_padding),
        keep_occluders=args.keep_occluders,
        source_validity=args.source_validity,
        relight=args.relight,
        light_match=args.light_match,
        color_match=args.color_match,
        detail_match=args.detail_match,
        face_swapper_model=args.face_swapper_model,
        face_swapper_weight=args.face_swapper_weight,
        face_swapper_pixel_boost=args.face_swapper_pixel_boost,
        face_enhancer_model=args.face_enhancer_model,
        face_enhancer_blend=args.face_enhancer_blend,
        face_enhancer_weight=args.face_enhancer_weight,
        face_occluder_model=args.face_occluder_model,
        face_parser_model=args.face_parser_model,
        face_parsing=args.face_parsing,
        face_mask_regions=tuple(args.face_mask_regions),
        blend=args.blend,
    )


def swapline_home() -> Path:
    """The swapline home, where the model cache lives (``SWAPLINE_HOME``), absolute."""
    return default_root(RuntimeConfig()).absolute()


def check_home(home: Path) -> None:
    """The model cache root must be a folder swapline can create; exit 5 with its name if not."""
    if home.exists() and not home.is_dir():
        raise ModelError(f"model cache folder {home} (SWAPLINE_HOME) is a file, not a folder")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"model cache folder {home} (SWAPLINE_HOME) cannot be created: "
                         f"{exc.strerror or exc}") from None


def image_limits() -> tuple[int, int]:
    """``--max-pixels``' default and ceiling (read here, not at import: the image pipeline loads OpenCV)."""
    from ..pipeline.image import DEFAULT_MAX_PIXELS, MAX_PIXELS_CEILING

    return DEFAULT_MAX_PIXELS, MAX_PIXELS_CEILING


def show_progress(mode: str, *, quiet: bool) -> bool:
    """``--progress``: bars ``always``, ``never``, or (``auto``) only when stderr is a terminal
    (bars in a log file are carriage-return noise); never with ``--quiet``."""
    return not quiet and (mode == "always" or (mode == "auto" and stderr_is_terminal()))


def stderr_is_terminal() -> bool:
    """Whether stderr is a terminal (False when it is closed or not a real stream)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
