"""``swapline live``: swap a camera, a stream or a file in real time, to a stream, a virtual
camera or nowhere, optionally recording.

``register(subparsers)`` adds the command to the main parser; ``run(args, runtime)`` runs until
the input ends, ``--duration`` passes or it is interrupted, and returns the exit code: 0 at the
end of the input or the duration, 130 when interrupted (Ctrl-C, SIGTERM; the recording so far is
kept). A live status line (fps, latency p50 / p95, dropped frames) is shown on a terminal; the
summary line is printed at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from ..config import RuntimeConfig
from ..errors import ConfigError
from .options import (
    add_runtime_options,
    add_swap_options,
    check_home,
    stderr_is_terminal,
    swap_config_from_args,
    swapline_home,
)

EXIT_INTERRUPTED = 130
OUTPUT_NONE = "none"
OUTPUT_VIRTUAL_CAM = "virtual-cam"


def register(subparsers: Any) -> None:
    """Add ``live`` (with the swap and runtime options) to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "live",
        help="swap a camera, a stream or a file in real time",
        description="Swap the face of SOURCE into a live input and send the result on as it comes. Frames "
                    "pass through newest-frame slots, never queues: when the swap is slower than the input, "
                    "old frames are dropped (and counted) so latency stays bounded.",
        epilog="Examples: swapline live -s face.jpg --input /dev/video0 --output virtual-cam | "
               "swapline live -s face.jpg --input 'udp://127.0.0.1:5000' --output "
               "'udp://127.0.0.1:5001?pkt_size=1316' | swapline live -s face.jpg --input clip.mp4 --realtime "
               "--loop --output 'tcp://127.0.0.1:9000?listen=1' (OBS: Media Source, input tcp://127.0.0.1:9000)",
    )
    p.add_argument("-s", "--source", nargs="+", action="extend", type=Path, metavar="SOURCE",
                   help="source image(s) of one person; without, frames pass through unchanged")
    p.add_argument("-i", "--input", required=True, metavar="INPUT",
                   help="a camera (/dev/video0), a stream (rtsp://, rtmp://, udp://, tcp://, srt:// where this "
                        "FFmpeg has it; rtmp://HOST:PORT/APP/KEY?listen=1 waits for a publisher such as OBS) "
                        "or a video file")
    p.add_argument("--realtime", action="store_true",
                   help="play a file input at its own frame rate (default: as fast as it decodes)")
    p.add_argument("--loop", action="store_true", help="start a file input again at its end")
    p.add_argument("--input-option", action="append", default=[], metavar="KEY=VALUE",
                   help="an FFmpeg option for opening the input, e.g. video_size=1280x720 or input_format=mjpeg "
                        "for a camera (repeatable)")
    p.add_argument("--input-timeout", type=float, default=10.0, metavar="S",
                   help="seconds to wait for a stream or camera to start, and for its next data before it "
                        "counts as ended (default: %(default)g)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="udp://HOST:PORT?pkt_size=1316 or srt:// (MPEG-TS), tcp://HOST:PORT?listen=1 (MPEG-TS "
                        "served to one client: OBS can pull it), rtmp://HOST/APP/KEY (FLV, pushed to a server), "
                        "virtual-cam (pyvirtualcam; v4l2loopback on Linux) or none")
    p.add_argument("--record", type=Path, metavar="FILE",
                   help="also record what goes out (.mp4, .mkv, .mov; written to a temporary name and renamed "
                        "when the run ends, also after Ctrl-C)")
    p.add_argument("-f", "--force", action="store_true", help="overwrite the --record file if it exists")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds (from the first frame)")
    p.add_argument("--fps", type=float, default=30.0, metavar="N",
                   help="frame rate asked of a camera and announced by the outputs (default: %(default)g)")
    p.add_argument("--swap-delay-ms", type=float, default=0.0, metavar="MS",
                   help="testing: pad each frame's swap to at least MS milliseconds, to see frames dropped "
                        "instead of delayed (default: 0)")
    p.add_argument("-q", "--quiet", action="store_true", help="no status line and no summary; errors only")
    add_swap_options(p)
    add_runtime_options(p)


def run(args: argparse.Namespace, runtime: RuntimeConfig, *, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """Run live until the input ends, ``--duration`` passes or an interrupt; the exit code."""
    stdout = out if out is not None else sys.stdout
    stderr = err if err is not None else sys.stderr
    config = swap_config_from_args(args)
    options = _input_options(args.input_option)
    if args.duration is not None and not args.duration > 0:
        raise ConfigError(f"--duration must be more than 0 s (got {args.duration:g})")
    if not 0 < args.fps <= 240:
        raise ConfigError(f"--fps must be between 0 and 240 (got {args.fps:g})")
    if args.swap_delay_ms < 0:
        raise ConfigError(f"--swap-delay-ms must be 0 or more (got {args.swap_delay_ms:g})")
    if not args.input_timeout > 0:
        raise ConfigError(f"--input-timeout must be more than 0 s (got {args.input_timeout:g})")

    from ..live.inputs import Capture, parse_input
    from ..live.outputs import (
        NullOutput,
        Recorder,
        StreamOutput,
        VirtualCamOutput,
        check_virtual_cam,
    )

    # everything that needs no model is checked before the models load
    spec = parse_input(args.input, options=options, fps=args.fps)
    sink: Any
    if args.output == OUTPUT_NONE:
        sink = NullOutput()
    elif args.output == OUTPUT_VIRTUAL_CAM:
        check_virtual_cam()
        sink = VirtualCamOutput(args.fps)
    else:
        sink = StreamOutput(args.output, args.fps)
    record = None
    if args.record is not None:
        from .. import tempfiles
        from ..formats import VIDEO_OUTPUT_EXTENSIONS
        from ..pipeline.image import check_output_path

        path = check_output_path(args.record, force=args.force,
                                 extensions=tuple(e for e in VIDEO_OUTPUT_EXTENSIONS if e != ".webm"))
        tempfiles.sweep(path.parent if str(path.parent) else Path("."))
        record = Recorder(path, args.fps)
    check_home(swapline_home())

    from ..api import Session
    from ..live.engine import LiveEngine
    from ..live.runner import run_live

    session = Session(config, runtime)
    source = session.load_source(list(args.source)) if args.source else None
    engine = LiveEngine(session, source, config, fps=args.fps, swap_delay_s=args.swap_delay_ms / 1000.0)
    capture = Capture(spec, engine.submit, realtime=args.realtime, loop=args.loop, timeout=args.input_timeout)
    status = _StatusLine(stderr, enabled=not args.quiet and stderr_is_terminal())

    def opened(width: int, height: int) -> None:
        if not args.quiet:
            extra = f" + recording {record.path}" if record is not None else ""
            print(f"swapline live: {spec.label} ({width}x{height}) → {sink.name}{extra}", file=stderr, flush=True)

    if not args.quiet:
        waits = f"; {sink.name} waits for a client" if getattr(sink, "listening", False) else ""
        print(f"swapline live: opening {spec.label}{waits}", file=stderr, flush=True)
    try:
        outcome = run_live(engine, capture, [sink], record, duration=args.duration, on_status=status.show,
                           on_open=opened)
    except KeyboardInterrupt:
        status.end()
        if not args.quiet:
            print(f"swapline live: {engine.summary()}", file=stdout, flush=True)
            kept = f"; recording kept: {record.path}" if record is not None and record.path.exists() else ""
            print(f"swapline live: interrupted{kept}", file=stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        session.close()
    status.end()
    if not args.quiet:
        if outcome.reason != "duration" and outcome.detail and outcome.detail != "end of input":
            print(f"swapline live: {outcome.detail}", file=stderr)
        print(f"swapline live: {engine.summary()}", file=stdout, flush=True)
    return 0


def _input_options(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--input-option takes KEY=VALUE (got {item!r})")
        out[key.strip()] = value
    return out


class _StatusLine:
    """The live figures on one terminal line, rewritten in place."""

    def __init__(self, stream: TextIO, *, enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self.shown = False

    def show(self, stats: Any) -> None:
        if not self.enabled:
            return
        line = (f"live: {stats.fps:5.1f} fps · latency p50 {stats.latency_p50_ms:4.0f} ms p95 "
                f"{stats.latency_p95_ms:4.0f} ms · swap {stats.swap_ms:4.0f} ms · dropped {stats.dropped}")
        try:
            self.stream.write("\r" + line + "\x1b[K")
            self.stream.flush()
            self.shown = True
        except (OSError, ValueError):
            self.enabled = False

    def end(self) -> None:
        if self.shown:
            try:
                self.stream.write("\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self.shown = False
