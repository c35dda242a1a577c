"""``swapline benchmark``: per-stage timings of the image swap (the default), the streaming video
pipeline against the traditional one (``--video``), or the realism of the built-in swap's variants
(``--quality``). The work is :mod:`swapline.bench`'s; this module parses and picks.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import RuntimeConfig
from .options import add_runtime_options, add_video_options, video_config_from_args


def register(subparsers: Any) -> None:
    """Add ``benchmark`` (with the video and runtime options) to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "benchmark", help="time the image swap per stage, the video pipelines, or judge realism",
        description="--image (default): per-stage milliseconds (detect, mesh, embed, swap, "
                    "blend) on a 720p and a 1080p frame made from the demo portraits (face "
                    "≈400 px at 1080p). --video: the streaming pipeline against the "
                    "traditional one (frames to files, one at a time) on the same clip. "
                    "--quality: identity, lighting, edge and background figures of the "
                    "built-in swap's variants on hard cases from the shared test media, and "
                    "a contact sheet."
    )
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
                        "+multiband, colour (no face parser), after, relight-0/0.6/1, poisson) over press "
                        "photos, hard photos, a group and video frames of ../shared/media: identity cosines, "
                        "lighting correlation, edge ratio, background PSNR, skin tone (ΔE), ms per face")
    g.add_argument("--quick", action="store_true", help="with --quality: four cases instead of all")
    g.add_argument("--sheet", type=Path, default=Path("swapline-quality.png"), metavar="PNG",
                   help="with --quality: contact sheet path (default: %(default)s)")
    g.add_argument("--sheet-variants", nargs="+", metavar="NAME",
                   help="with --quality: variants shown on the contact sheet (default: colour after)")
    g.add_argument("--variants", nargs="+", metavar="NAME",
                   help="with --quality: run only these variants (default: all)")
    g.add_argument("--cases", nargs="+", metavar="NAME",
                   help="with --quality: run only these cases (names as the table prints them)")
    g.add_argument("--media", type=Path, metavar="DIR", help="with --quality: the test media folder "
                   "(default: ../shared/media beside the repository)")
    g.add_argument("--verbose", action="store_true", help="with --quality: also print every case's rows")
    add_video_options(p)
    add_runtime_options(p)


def run(args: argparse.Namespace, runtime: RuntimeConfig) -> int:
    """Run the benchmark the options ask for."""
    if args.quality:
        from ..bench.quality import SHEET_VARIANTS, run_quality_benchmark

        sheet_variants = args.sheet_variants or [v for v in SHEET_VARIANTS if not args.variants or v in args.variants]
        return run_quality_benchmark(runtime, quick=args.quick, sheet=args.sheet, json_path=args.json,
                                     verbose=args.verbose, sheet_variants=sheet_variants,
                                     media=args.media, cases=args.cases, variants=args.variants)
    if args.video:
        from ..bench.video import run_video_benchmark

        return run_video_benchmark(args.video, args.source, runtime, video_config_from_args(args),
                                   loops=args.long, json_path=args.json)
    from ..bench.image import run_benchmark  # here: it loads ONNX Runtime and ONNX

    return run_benchmark(runtime, repeat=args.repeat, json_path=args.json)
