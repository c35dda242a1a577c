"""Join a split video: remux the segments' video packets in order and the source's audio,
subtitle and data packets once, into one file; nothing is decoded or encoded.

Every packet keeps its bytes and its timestamps (rescaled exactly to the output stream's time
base), so the joined video has the segments' frames at the source's presentation times, and the
copied streams are the source's own packets. FFmpeg's concat demuxer is not used: it re-times
each file from its duration and drifts on variable frame rates.

The segments must come from one encoder with one setting (same codec, size and parameter sets);
the join checks this and refuses otherwise. With closed GOPs each segment decodes on its own, so
the packet sequence decodes straight across every border; a decode timestamp that would step
back at a border (an encoder's B-frame delay differs between two segments of a variable-rate
video) is moved forward to keep the stream valid, never past its presentation time.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from ..errors import InputError, OutputError
from ..formats import VIDEO_OUTPUT_EXTENSIONS
from ..pipeline.image import check_output_path
from ..pipeline.video import exact_start_options
from ..tempfiles import temp_name
from ..video.writer import COPIED_KINDS, _can_hold, _regenerated


@dataclass(frozen=True)
class JoinReport:
    """What a join wrote.

    Attributes:
        output: the file. frames: video packets (frames) written. first_pts, last_pts: in the
        output's video time base (``time_base``). copied: packets copied per stream kind
        (``{"audio": 412, "subtitle": 0, "data": 0}``). dropped: the source's streams the output
        container cannot hold. retimed: decode timestamps moved forward at borders. seconds:
        wall time.
    """

    output: Path
    frames: int
    first_pts: int | None
    last_pts: int | None
    time_base: str
    copied: dict[str, int]
    dropped: tuple[str, ...]
    retimed: int
    seconds: float


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (av.error.FFmpegError, OSError)):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def _signature(stream: Any) -> tuple[Any, ...]:
    ctx = stream.codec_context
    return ctx.name, ctx.width, ctx.height, bytes(ctx.extradata or b""), ctx.format.name if ctx.format else None


def _check_segments(segments: Sequence[Path]) -> None:
    """All segments share one codec, size and parameter set (else their packets cannot be joined)."""
    first: tuple[Any, ...] | None = None
    for path in segments:
        try:
            with av.open(str(path)) as c:
                if not c.streams.video:
                    raise InputError(f"segment {path} has no video stream")
                sig = _signature(c.streams.video[0])
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot read segment {path}: {_reason(exc)}") from exc
        if first is None:
            first = sig
        elif sig != first:
            raise OutputError(f"segment {path.name} was encoded differently from the first "
                              f"({sig[0]} {sig[1]}x{sig[2]} vs {first[0]} {first[1]}x{first[2]}, or other "
                              "encoder settings): the segments of one video cannot be joined")


def _video_packets(segments: Sequence[Path]) -> Iterator[Any]:
    """The segments' video packets, file after file, in decode order (empty ones left out)."""
    for path in segments:
        with av.open(str(path)) as c:
            for packet in c.demux(c.streams.video[0]):
                if packet.size and (packet.pts is not None or packet.dts is not None):
                    yield packet


def _when(packet: Any) -> Fraction:
    ts = packet.dts if packet.dts is not None else packet.pts
    return ts * Fraction(packet.time_base)


def join_segments(source: Path, segments: Sequence[Path], output: Path, *, force: bool = False) -> JoinReport:
    """Write ``output``: the video packets of ``segments`` (in order) and ``source``'s audio,
    subtitle and data packets (see the module's docs). Written to a temporary name beside
    ``output`` and renamed into place. ``join_segments(source, [source], out)`` copies ``source``
    through unchanged (a job that swapped no face).

    Raises:
        InputError: a segment or the source cannot be read.
        OutputError: the output cannot be written, its container cannot hold the video or the
            source's audio, or the segments were encoded differently (nothing is left behind).
    """
    started = time.perf_counter()
    if not segments:
        raise InputError("no segments to join")
    out_path = check_output_path(output, force=force, extensions=VIDEO_OUTPUT_EXTENSIONS)
    _check_segments(segments)
    tmp = temp_name(out_path, ext=out_path.suffix)
    try:
        report = _write(source, segments, out_path, tmp)
        os.replace(tmp, out_path)
    except av.error.FFmpegError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {out_path}: {_reason(exc)}") from exc
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {out_path}: {_reason(exc)}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return JoinReport(**{**report, "output": out_path, "seconds": time.perf_counter() - started})


def _write(source: Path, segments: Sequence[Path], out_path: Path, tmp: Path) -> dict[str, Any]:
    ext = out_path.suffix
    copied = {kind: 0 for kind in COPIED_KINDS}
    dropped: list[str] = []
    try:
        src = av.open(str(source))
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot read {source}: {_reason(exc)}") from exc
    with av.open(str(segments[0])) as first:
        bases = [Fraction(tb) for tb in (first.streams.video[0].time_base,) if tb is not None]
    bases += [Fraction(s.time_base) for s in src.streams if s.type in COPIED_KINDS and s.time_base is not None]
    with src, av.open(str(segments[0])) as first, \
            av.open(str(tmp), "w", options=exact_start_options(out_path, *bases) or None) as out:
        supported = out.supported_codecs
        template = first.streams.video[0]
        if template.codec_context.name not in supported:
            raise OutputError(f"{ext} files cannot hold {template.codec_context.name} video; use .mp4, .mov or .mkv")
        video = out.add_stream_from_template(template)
        targets: dict[int, Any] = {}
        for s in src.streams:
            if s.type not in COPIED_KINDS:
                continue
            name = s.codec_context.name if s.codec_context is not None else None
            if s.type == "audio" and name not in supported:
                raise OutputError(f"{ext} files cannot hold the source's {name} audio (copied unchanged); "
                                  "use .mp4, .mov or .mkv")
            if s.type != "audio" and (name is None or name not in supported) and not _can_hold(out.format.name, s):
                dropped.append(f"{s.type} stream #{s.index} ({name or 'unknown codec'}): {ext} files cannot hold it")
                continue
            targets[s.index] = out.add_stream_from_template(s)
        chosen = [s for s in src.streams if s.index in targets]

        def others() -> Iterator[Any]:
            if not chosen:
                return
            for packet in src.demux(*chosen):
                if packet.size == 0 or (packet.pts is None and packet.dts is None):
                    continue
                if _regenerated(packet, out.format.name):
                    continue
                yield packet

        frames, lo, hi, retimed = 0, None, None, 0
        last_dts: Fraction | None = None
        streams = [(_video_packets(segments), 0), (others(), 1)]
        heap: list[tuple[Fraction, int, int, Any, Iterator[Any]]] = []
        seq = 0
        for it, kind in streams:
            packet = next(it, None)
            if packet is not None:
                heapq.heappush(heap, (_when(packet), kind, seq, packet, it))
                seq += 1
        while heap:
            _, kind, _, packet, it = heapq.heappop(heap)
            if kind == 0:
                tb = Fraction(packet.time_base)
                if packet.dts is not None:
                    dts = packet.dts * tb
                    if last_dts is not None and dts <= last_dts:
                        moved = int(last_dts / tb) + 1
                        if packet.pts is not None and moved > packet.pts:
                            raise OutputError(f"cannot join the segments into {out_path}: decode times step back "
                                              "at a segment border")
                        packet.dts = moved
                        retimed += 1
                    last_dts = packet.dts * tb
                packet.stream = video
                out.mux(packet)
                frames += 1
                if packet.pts is not None:
                    p = int(packet.pts)
                    lo = p if lo is None else min(lo, p)
                    hi = p if hi is None else max(hi, p)
            else:
                target = targets[packet.stream.index]
                copied[packet.stream.type] += 1
                packet.stream = target
                out.mux(packet)
            nxt = next(it, None)
            if nxt is not None:
                heapq.heappush(heap, (_when(nxt), kind, seq, nxt, it))
                seq += 1
        tb_out = Fraction(video.time_base or 1)
    return {"frames": frames, "first_pts": lo, "last_pts": hi, "time_base": f"{tb_out.numerator}/{tb_out.denominator}",
            "copied": copied, "dropped": tuple(dropped), "retimed": retimed}
