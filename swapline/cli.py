"""Command line: ``swapline swap | demo | benchmark | doctor | models | serve | jobs | batch | live``.

A thin layer over the job core (:mod:`swapline.jobs`) and :mod:`swapline.api`: it parses options
into the frozen configs, and turns any :class:`~swapline.errors.SwaplineError` into one line on
stderr and a non-zero exit code. Set ``SWAPLINE_DEBUG=1`` to see tracebacks.

Exit codes: 0 done, 2 bad input or option, 3 output problem, 4 no face in the source, 5 model
problem (including a model cache folder that cannot be used), 70 a bug, 130 interrupted (SIGINT,
SIGTERM or SIGHUP, however often they come), 141 the reader of stdout went away (a broken pipe
ends quietly, as with ``swapline doctor | head -1``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from types import FrameType
from collections.abc import Sequence
from pathlib import Path

# Signals that come while Python is still importing swapline (a second or more on a busy machine)
# are only noted here; main() then ends with the one "interrupted" line instead of a traceback.
# Only when this process is the swapline command: importing the module installs nothing.
_EARLY_STOPS: list[int] = []
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _launched_as_command() -> bool:
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return argv0.name == "swapline" or (argv0.name == "__main__.py" and argv0.parent.name == "swapline")


if _launched_as_command():
    try:
        for _sig in _STOP_SIGNALS:
            signal.signal(_sig, lambda signum, frame: _EARLY_STOPS.append(signum))
    except ValueError:  # not the main thread
        pass

from . import __version__, tempfiles
from .config import (
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
from .errors import ConfigError, SwaplineError
from .models.enhance_catalog import ENHANCERS, MASKERS, REGIONS
from .models.neural_catalog import SWAPPERS
from .runtime.providers import PROVIDER_NAMES

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe
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


def _pixels(text: str) -> int:
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
                   help="model for --face-mask-types region: "
                        + ", ".join(n for n, m in MASKERS.items() if m.kind == "region") + " (default: %(default)s)")
    g.add_argument("--face-mask-regions", nargs="+", default=list(d.face_mask_regions), metavar="REGION",
                   choices=tuple(REGIONS),
                   help="face-parser regions kept by the region mask (default: "
                        f"{' '.join(d.face_mask_regions)})")
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
                   help="keep what is not skin in front of the target's face (hair, a fringe, glasses "
                        "frames, hands) in front of the swap; looks more real, reads a little less "
                        "like the source to a face recognizer (+8 ms)")
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
    return VideoConfig(detect_interval=args.detect_interval, batch_size=args.batch_size,
                       queue_size=args.queue_size, swap_workers=args.swap_workers, encoder=args.output_video_encoder,
                       quality=args.output_video_quality, preset=args.output_video_preset,
                       trim_start=args.trim_frame_start, trim_end=args.trim_frame_end)


def swap_config_from_args(args: argparse.Namespace) -> SwapConfig:
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
        face_mask_regions=tuple(args.face_mask_regions),
        blend=args.blend,
    )


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"swapline: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from . import cli_batch, cli_jobs, cli_live, cli_models, cli_serve

    parser = _Parser(
        prog="swapline",
        description="Swap the face of a source photo into target photos and videos. "
                    "Runs on the CPU with models that ship inside its dependencies; uses a GPU "
                    "through ONNX Runtime when one is there.",
        epilog="Start with 'swapline demo'. Every command has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"swapline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("swap", help="swap a source face into a target photo or video",
                       description="Swap the face of SOURCE into TARGET and write OUTPUT.",
                       epilog="Example: swapline swap -s face.jpg -t photo.jpg -o result.jpg")
    p.add_argument("-s", "--source", nargs="+", action="extend", required=True, type=Path, metavar="SOURCE",
                   help="source image(s) of one person; several are averaged into one identity")
    p.add_argument("-t", "--target", required=True, type=Path, help="target image or video")
    p.add_argument("-o", "--output", required=True, type=Path,
                   help="output image (.jpg, .png, .webp, .bmp, .tif) or video (.mp4, .mov, .mkv, "
                        ".webm, .m4v); written to a temporary name and renamed when complete")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.add_argument("--output-image-quality", type=int, default=95, metavar="Q",
                   help="JPEG/WebP quality 1..100 (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--max-pixels", type=_pixels, default=_image_limits()[0], metavar="N",
                   help="refuse images larger than N pixels, read from the file's header before "
                        f"decoding (decompression bombs); k/M/G suffixes, at most {_image_limits()[1]} "
                        "(default: %(default)s)")
    add_progress_option(p)
    add_swap_options(p)
    add_video_options(p)
    add_runtime_options(p)

    p = sub.add_parser("demo", help="swap two public-domain portraits that ship with the dependencies",
                       description="Swap scikit-image's astronaut (Eileen Collins) and matplotlib's "
                                   "Grace Hopper into each other and write the results to a folder.")
    p.add_argument("-o", "--output-dir", type=Path, default=Path("swapline-demo"),
                   help="folder for the results (default: %(default)s)")
    add_progress_option(p)
    add_runtime_options(p)

    p = sub.add_parser("benchmark", help="time the image swap per stage, the video pipelines, or judge realism",
                       description="--image (default): per-stage milliseconds (detect, mesh, embed, swap, "
                                   "blend) on a 720p and a 1080p frame made from the demo portraits (face "
                                   "≈400 px at 1080p). --video: the streaming pipeline against the "
                                   "traditional one (frames to files, one at a time) on the same clip. "
                                   "--quality: identity, lighting, edge and background figures of the "
                                   "built-in swap's variants on hard cases from the shared test media, and "
                                   "a contact sheet.")
    p.add_argument("--image", action="store_true", help="benchmark the image swap (the default)")
    p.add_argument("--video", nargs="?", const="demo", metavar="CLIP",
                   help="benchmark the video pipelines on CLIP (default: a 10 s 720p zoom-and-pan clip "
                        "made from the demo portrait)")
    p.add_argument("--source", type=Path, metavar="IMAGE", help="source face for --video (default: the astronaut)")
    p.add_argument("--long", type=int, default=0, metavar="N",
                   help="with --video: also run the streaming pipeline on the clip looped N times and "
                        "report how peak memory grows")
    p.add_argument("--repeat", type=int, default=20, metavar="N", help="timed runs per image case (default: %(default)s)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    g = p.add_argument_group("--quality")
    g.add_argument("--quality", action="store_true",
                   help="realism of the built-in swap per variant (before, +validity, +occluders, +relight, "
                        "+multiband, after, poisson) over press photos, hard photos and video frames of "
                        "../shared/media: identity cosines, lighting correlation, edge ratio, background PSNR")
    g.add_argument("--quick", action="store_true", help="with --quality: four cases instead of all")
    g.add_argument("--sheet", type=Path, default=Path("swapline-quality.png"), metavar="PNG",
                   help="with --quality: contact sheet path (default: %(default)s)")
    g.add_argument("--sheet-variants", nargs="+", default=["before", "after"], metavar="NAME",
                   help="with --quality: variants shown on the contact sheet (default: before after)")
    g.add_argument("--media", type=Path, metavar="DIR", help="with --quality: the test media folder "
                   "(default: ../shared/media beside the repository)")
    g.add_argument("--verbose", action="store_true", help="with --quality: also print every case's rows")
    add_video_options(p)
    add_runtime_options(p)

    p = sub.add_parser("doctor", help="show providers, models and versions")
    add_runtime_options(p)

    cli_models.register(sub)
    cli_serve.register(sub)
    cli_jobs.register(sub)
    cli_batch.register(sub)
    cli_live.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swapline`` console script; returns the exit code."""
    stops = _StopSignals()
    args: argparse.Namespace | None = None
    debug = os.environ.get("SWAPLINE_DEBUG") == "1"
    try:
        try:
            if _EARLY_STOPS:  # a signal came while Python was still importing swapline
                stops.name = signal.Signals(_EARLY_STOPS[0]).name
                raise KeyboardInterrupt
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # --help, --version, usage errors: already printed; return, don't exit
                return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            if args.command is None:
                parser.print_help()
                return 2
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return _dispatch(args)
        finally:
            sys.stdout.flush()  # inside the try: a reader gone before the last line is a broken pipe too
    except BrokenPipeError:
        _quiet_broken_pipe()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return _interrupted(stops)
    except SwaplineError as exc:
        if stops.name is not None and not debug:  # what the stop signal cut short failed after it
            return _interrupted(stops)
        if debug:
            raise
        return _say_error(f"swapline: error: {exc}", exc.exit_code)
    except MemoryError:
        return _say_error("swapline: error: out of memory", EXIT_INTERNAL)
    except OSError as exc:  # a file-system cause swapline can name: still one line, with its code
        if stops.name is not None and not debug:
            return _interrupted(stops)
        known = _known_os_error(exc, args) if args is not None else None
        if known is None:
            if debug:
                raise
            return _say_error(f"swapline: internal error: {type(exc).__name__}: {exc} "
                              "(set SWAPLINE_DEBUG=1 for details)", EXIT_INTERNAL)
        return _say_error(f"swapline: error: {known}", known.exit_code)
    except Exception as exc:  # a bug: still one line, with how to see more
        if stops.name is not None and not debug:
            return _interrupted(stops)
        if debug:
            raise
        return _say_error(f"swapline: internal error: {type(exc).__name__}: {exc} (set SWAPLINE_DEBUG=1 for details)",
                          EXIT_INTERNAL)
    finally:
        stops.restore()


def _interrupted(stops: _StopSignals) -> int:
    """The one line and exit code of a run stopped by a signal (or Ctrl-C)."""
    stops.ignore_more()  # a second Ctrl-C must not cut the clean-up short
    how = f" ({stops.name})" if stops.name not in (None, "SIGINT") else ""
    return _say_error(f"swapline: interrupted{how}; no output was written", EXIT_INTERRUPTED)


def _say_error(line: str, code: int) -> int:
    """Print the one error line; a closed stderr (``2>&1 | head``) is no reason for a traceback."""
    try:
        print(line, file=sys.stderr)
        sys.stderr.flush()
    except (BrokenPipeError, ValueError, OSError):
        _quiet_broken_pipe()
    return code


def _quiet_broken_pipe() -> None:
    """Point stdout and stderr at /dev/null so the interpreter's final flush cannot complain."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(null, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass
    os.close(null)


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP stop a run the way Ctrl-C does (stages stop, the temporary
    output is removed): the first one raises KeyboardInterrupt in the main thread, later ones are
    only counted, so two Ctrl-C a few milliseconds apart cannot interrupt the clean-up. The
    previous handlers come back when the run ends, unless a signal came: then the process is
    about to exit, the stop signals are ignored, and a late one cannot kill it during its exit."""

    def __init__(self) -> None:
        import threading

        self.name: str | None = None
        self.count = 0
        self._previous: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.name = signal.Signals(signum).name
            self._interrupt(frame)

    def _interrupt(self, frame: FrameType | None) -> None:
        """Raise KeyboardInterrupt in the main thread, unless it is importing a module: an
        interrupt there can leave a native module half made (onnxruntime's then fails to import,
        or the process crashes at exit) or be swallowed by importlib's clean-up (the run would go
        on). Then it is raised a few milliseconds later, once the import is done."""
        if _importing(frame) and hasattr(signal, "setitimer"):
            signal.signal(signal.SIGALRM, lambda signum, later: self._interrupt(later))
            signal.setitimer(signal.ITIMER_REAL, _RETRY_INTERRUPT_S)
            return
        raise KeyboardInterrupt

    def ignore_more(self) -> None:
        if self.count == 0:
            self.count = 1  # an interrupt raised by other means: later signals are counted too

    def restore(self) -> None:
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)  # no interrupt still waiting for an import
        if self.name is not None:
            # The process is on its way out: ignore further stop signals at the C level, since
            # interpreter finalization resets Python-level handlers to the default (death by signal).
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
            # A KeyboardInterrupt that ended code run from a string (dataclasses and namedtuples
            # build methods with exec) leaves CPython's "unhandled KeyboardInterrupt" flag set even
            # though it was caught, and ``python -m swapline`` would then kill itself with SIGINT
            # instead of exiting 130. Every string evaluation resets that flag when it starts.
            eval("None")  # noqa: S307 - a constant
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]


_RETRY_INTERRUPT_S = 0.01


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` or one of its callers is importing: a module's top-level code (other
    than ``__main__``'s) or importlib's own."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib") or (
                code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__"):
            return True
        frame = frame.f_back
    return False


def _known_os_error(exc: OSError, args: argparse.Namespace) -> SwaplineError | None:
    """An OSError about the output's folder (3) or the model cache (5), as swapline's error."""
    from .errors import ModelError, OutputError

    name = exc.filename if isinstance(exc.filename, (str, bytes, os.PathLike)) else None
    if name is None:
        return None
    where = Path(os.fsdecode(name)).absolute()
    reason = exc.strerror or str(exc)
    output = getattr(args, "output", None) or getattr(args, "output_dir", None)
    if output is not None:
        folder = Path(output).absolute() if getattr(args, "output_dir", None) is not None else Path(output).absolute().parent
        if where == folder or folder in where.parents:
            return OutputError(f"cannot write in {folder}: {reason}")
    home = _home(args)
    if where == home or home in where.parents:
        return ModelError(f"model cache folder {home} (SWAPLINE_HOME) cannot be used: {reason}: {where}")
    return None


def _home(args: argparse.Namespace) -> Path:
    from .models.store import default_root

    return default_root(RuntimeConfig()).absolute()


def _check_home(home: Path) -> None:
    """The model cache root must be a folder swapline can create; exit 5 with its name if not."""
    from .errors import ModelError

    if home.exists() and not home.is_dir():
        raise ModelError(f"model cache folder {home} (SWAPLINE_HOME) is a file, not a folder")
    try:
        home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"model cache folder {home} (SWAPLINE_HOME) cannot be created: "
                         f"{exc.strerror or exc}") from None


def _check_writable_folder(folder: Path) -> None:
    """Fail early (exit 3) when the output's folder exists but cannot be written."""
    from .errors import OutputError

    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {folder}: permission denied or read-only")


def _image_limits() -> tuple[int, int]:
    from .pipeline.image import DEFAULT_MAX_PIXELS, MAX_PIXELS_CEILING

    return DEFAULT_MAX_PIXELS, MAX_PIXELS_CEILING


def _show_progress(mode: str, *, quiet: bool) -> bool:
    """``--progress``: bars ``always``, ``never``, or (``auto``) only when stderr is a terminal
    (bars in a log file are carriage-return noise); never with ``--quiet``."""
    return not quiet and (mode == "always" or (mode == "auto" and _stderr_is_terminal()))


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    print(f"swapline: warning: {message}", file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    from . import cli_batch, cli_jobs, cli_live, cli_models, cli_serve
    from .commands import run_demo, run_doctor

    runtime = runtime_from_args(args)
    if args.command == "swap":
        if not 1 <= args.output_image_quality <= 100:
            raise ConfigError(f"--output-image-quality must be between 1 and 100 (got {args.output_image_quality})")
        return _swap(args, runtime)
    if args.command == "demo":
        _check_home(_home(args))
        tempfiles.sweep(args.output_dir)
        return run_demo(args.output_dir, runtime, progress=_show_progress(args.progress, quiet=False))
    if args.command == "benchmark":
        if args.quality:
            from .bench.quality import run_quality_benchmark

            return run_quality_benchmark(runtime, quick=args.quick, sheet=args.sheet, json_path=args.json,
                                         verbose=args.verbose, sheet_variants=args.sheet_variants,
                                         media=args.media)
        if args.video:
            from .bench.video import run_video_benchmark

            return run_video_benchmark(args.video, args.source, runtime, video_config_from_args(args),
                                       loops=args.long, json_path=args.json)
        from .bench.image import run_benchmark  # here: it loads ONNX Runtime and ONNX

        return run_benchmark(runtime, repeat=args.repeat, json_path=args.json)
    if args.command == "doctor":
        return run_doctor(runtime)
    if args.command == "models":
        return cli_models.run(args, runtime)
    if args.command == "serve":
        return cli_serve.run(args, runtime)
    if args.command == "jobs":
        return cli_jobs.run(args, runtime)
    if args.command == "batch":
        return cli_batch.run(args, runtime)
    if args.command == "live":
        return cli_live.run(args, runtime)
    raise AssertionError(args.command)


def _swap(args: argparse.Namespace, runtime: RuntimeConfig) -> int:
    """``swapline swap``: the checks that need no model, then the job (image or video, by the
    target's content)."""
    from .commands import run_swap
    from .pipeline.image import check_max_pixels

    config, video = swap_config_from_args(args), video_config_from_args(args)
    out_folder = args.output.parent if str(args.output.parent) else Path(".")
    tempfiles.sweep(out_folder)  # what killed runs (SIGKILL, power cut) left behind
    _check_writable_folder(out_folder)
    _check_home(_home(args))
    return run_swap(args.source, args.target, args.output, config, runtime, force=args.force,
                    quality=args.output_image_quality, quiet=args.quiet, video=video,
                    max_pixels=check_max_pixels(args.max_pixels),
                    progress=_show_progress(args.progress, quiet=args.quiet))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
