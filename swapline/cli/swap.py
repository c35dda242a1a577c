"""``swapline swap``: the face of one person's source photo(s) into a target photo or video.

The checks that need no model come first (options, the output's folder, the model cache); then
the job core runs the image or the video job, chosen by the target's content, with warning lines,
a progress bar and a summary line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from .. import tempfiles
from ..config import RuntimeConfig, SwapConfig, VideoConfig
from ..errors import ConfigError, OutputError
from ..jobs import Job, JobEvent, Runner
from .options import (
    add_progress_option,
    add_runtime_options,
    add_swap_options,
    add_video_options,
    check_home,
    image_limits,
    pixel_count,
    show_progress,
    swap_config_from_args,
    swapline_home,
    video_config_from_args,
)


def register(subparsers: Any) -> None:
    """Add ``swap`` (with the swap, video and runtime options) to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("swap", help="swap a source face into a target photo or video",
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
    p.add_argument("--max-pixels", type=pixel_count, default=image_limits()[0], metavar="N",
                   help="refuse images larger than N pixels, read from the file's header before "
                        f"decoding (decompression bombs); k/M/G suffixes, at most {image_limits()[1]} "
                        "(default: %(default)s)")
    add_progress_option(p)
    add_swap_options(p)
    add_video_options(p)
    add_runtime_options(p)


def run(args: argparse.Namespace, runtime: RuntimeConfig) -> int:
    """``swapline swap``: the checks that need no model, then the job (image or video, by the
    target's content)."""
    if not 1 <= args.output_image_quality <= 100:
        raise ConfigError(f"--output-image-quality must be between 1 and 100 (got {args.output_image_quality})")
    from ..pipeline.image import check_max_pixels  # here, not at the top: it loads OpenCV

    config, video = swap_config_from_args(args), video_config_from_args(args)
    out_folder = args.output.parent if str(args.output.parent) else Path(".")
    tempfiles.sweep(out_folder)  # what killed runs (SIGKILL, power cut) left behind
    _check_writable_folder(out_folder)
    check_home(swapline_home())
    return run_swap(args.source, args.target, args.output, config, runtime, force=args.force,
                    quality=args.output_image_quality, quiet=args.quiet, video=video,
                    max_pixels=check_max_pixels(args.max_pixels),
                    progress=show_progress(args.progress, quiet=args.quiet))


def _check_writable_folder(folder: Path) -> None:
    """Fail early (exit 3) when the output's folder exists but cannot be written."""
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write in {folder}: permission denied or read-only")


def _say(quiet: bool, text: str) -> None:
    """A line on stderr, unless ``--quiet``."""
    if not quiet:
        print(text, file=sys.stderr)


def run_swap(sources: list[Path], target: Path, output: Path, config: SwapConfig, runtime: RuntimeConfig, *,
             force: bool = False, quality: int = 95, quiet: bool = False, video: VideoConfig | None = None,
             max_pixels: int, progress: bool | None = None) -> int:
    """Swap ``sources`` into ``target`` and write ``output`` through the job core (the image or
    the video job, chosen by the target's content); warnings, a progress bar and the summary
    line go to stderr. ``progress`` shows bars (default: unless ``quiet``). Returns the exit
    code; errors are raised as their typed :class:`~swapline.errors.SwaplineError`."""
    bars = not quiet if progress is None else progress
    job = Job(sources=tuple(sources), target=target, output=output, config=config, video=video or VideoConfig(),
              force=force, quality=quality, max_pixels=max_pixels)
    printer = _EventPrinter(quiet=quiet, bars=bars)
    try:
        with Runner(runtime, progress=bars) as runner:
            result = runner.run(job, on_event=printer)
    finally:
        printer.close()
    if not (result.kind == "image" and result.faces == 0):  # else the warning said it all
        _say(quiet, result.summary)
    return 0


class _EventPrinter:
    """A job's events on a terminal: warning lines and (for videos) a progress bar."""

    def __init__(self, *, quiet: bool, bars: bool) -> None:
        self.quiet = quiet
        self.bars = bars
        self.bar: Any = None
        self.kind_video = False

    def __call__(self, event: JobEvent) -> None:
        if event.kind == "warning":
            _say(self.quiet, f"swapline: warning: {event.message}")
        elif event.kind == "started" and self.bars and event.total > 1:
            from tqdm import tqdm

            self.bar = tqdm(total=event.total, unit="frame", desc="swapping", leave=False, dynamic_ncols=True)
        elif event.kind == "progress" and self.bar is not None:
            self.bar.update(max(0, event.done - self.bar.n))

    def close(self) -> None:
        """Take the progress bar off the terminal."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

