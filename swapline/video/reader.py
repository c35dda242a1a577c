"""Read a video in-process with PyAV: probe it, then decode its frames on a background thread.

Frames come out as ``(H, W, 3) uint8`` BGR arrays in the coded orientation (the display rotation
is *not* applied; :class:`~swapline.video.writer.VideoWriter` copies the rotation metadata to
the output instead), each with its 0-based output index and its input ``pts``.

Policy on damaged inputs: FFmpeg's decoders conceal damage where they can (the frame comes out,
flagged corrupt, and is counted in :attr:`VideoReader.concealed_frames`); a packet the decoder
rejects is skipped and counted in :attr:`VideoReader.damaged_packets`, and the job goes on.
Only a container that cannot be read (a demux error, no decodable frame at all) or a video that
ends before the frame count its container announces raises :class:`~swapline.errors.InputError`
in the consumer — a truncated video is reported, not silently shortened.
"""

from __future__ import annotations

import contextlib
import os
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Self, TypeVar

import av
import numpy as np

from ..errors import ConfigError, InputError
from ..formats import VIDEO_INPUT_EXTENSIONS as VIDEO_EXTENSIONS
from .frames import frame_to_bgr
from .probe import probe_hardware

_T = TypeVar("_T")
# Demuxers FFmpeg uses for still images: a file they open is a picture, not a video.
_IMAGE_FORMATS = ("image2", "gif", "apng", "webp")


def is_video_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a video extension swapline reads (:data:`swapline.formats.VIDEO_INPUT_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


@dataclass(frozen=True)
class VideoInfo:
    """What swapline needs to know about a video's first video stream.

    ``width``/``height`` are the coded size (before rotation). ``fps`` is the average frame rate,
    ``time_base`` the stream's; ``pts`` values are in ``time_base`` units. ``frame_count`` is
    exact when ``frame_count_exact`` (the container says so), else ``duration * fps`` rounded.
    ``rotation`` is the counter-clockwise display rotation in degrees (0, 90, 180, 270);
    ``display_matrix`` the raw 3×3 display matrix (9 ints, FFmpeg layout) when the stream has one,
    so flips survive too. ``start_pts`` is the pts of the first frame.
    """

    path: Path
    width: int
    height: int
    fps: Fraction
    time_base: Fraction
    frame_count: int
    duration: float
    rotation: int
    has_audio: bool
    codec: str
    start_pts: int = 0
    frame_count_exact: bool = True
    display_matrix: tuple[int, ...] | None = None

    @property
    def frame_duration(self) -> int:
        """Nominal duration of one frame in ``time_base`` units (at least 1)."""
        return max(1, round(1 / (self.fps * self.time_base)))


@dataclass(frozen=True)
class Frame:
    """One decoded frame: ``image`` is ``(H, W, 3) uint8`` BGR, coded orientation.

    ``index`` is 0-based in the output (after trim); ``pts`` the input pts in ``VideoInfo.time_base``.
    ``preroll``: read only to warm up the stages before a :class:`FrameSpan` starts (not written).
    """

    index: int
    pts: int | None
    image: np.ndarray
    preroll: bool = False


@dataclass(frozen=True)
class FrameSpan:
    """A part of a video chosen by presentation time (a segment of a split video).

    Decoding starts at the packet with pts ``decode_from`` (a keyframe; ``None``: the first
    packet). Frames with ``warmup_from <= pts < start`` are pre-roll (yielded with
    ``preroll=True``, to warm up trackers; ``warmup_from=None``: none), frames with
    ``start <= pts < end`` are the span's own (``end=None``: to the end); others are dropped.
    All pts are in the stream's ``time_base``. ``first_index`` is the frame number (display
    order, 0-based in the whole video) of the first frame yielded, so indices match a run over
    the whole video. ``frames``: how many frames the span holds, when known (progress totals).
    """

    start: int
    end: int | None = None
    decode_from: int | None = None
    warmup_from: int | None = None
    first_index: int = 0
    frames: int | None = None

    def keeps(self, pts: int) -> bool:
        """Whether the frame with ``pts`` belongs to the span (not pre-roll, not past its end)."""
        return pts >= self.start and (self.end is None or pts < self.end)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, av.error.FFmpegError):
        return exc.strerror or str(exc)
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def _check_file(p: Path) -> None:
    if not p.exists():
        raise InputError(f"video not found: {p}")
    if p.is_dir():
        raise InputError(f"video is a folder, not a file: {p}")


def _not_a_video(p: Path, why: str) -> InputError:
    return InputError(f"{p} is not a video swapline can read: {why}")


def _open_input(p: Path, hwaccel: Any = None) -> av.container.InputContainer:
    try:
        if hwaccel is not None:
            return av.open(str(p), "r", hwaccel=hwaccel)
        return av.open(str(p), "r")
    except av.error.InvalidDataError as exc:
        raise _not_a_video(p, f"{_reason(exc)} (corrupt or truncated file?)") from exc
    except av.error.FFmpegError as exc:
        raise _not_a_video(p, _reason(exc)) from exc
    except OSError as exc:
        raise InputError(f"cannot read video {p}: {_reason(exc)}") from exc


def display_matrix(side_data: Any) -> tuple[int, ...] | None:
    """The display matrix (9 ints, FFmpeg's layout) of a frame's side data, or None if it has none.

    ``side_data`` is a frame's ``side_data`` in either shape PyAV has given it: a mapping of
    side-data type to side data, whose iteration yields the types (av 18.1 and later), or a
    container whose iteration yields the side-data objects (av 18.0, which calls itself a
    mapping too). A display matrix shorter than 36 bytes reads as none.
    """
    for item in side_data or ():
        sd = item if hasattr(item, "type") else side_data[item]
        if str(getattr(sd.type, "name", sd.type)).upper().endswith("DISPLAYMATRIX"):
            raw = bytes(sd)
            return tuple(struct.unpack("<9i", raw[:36])) if len(raw) >= 36 else None
    return None


def _normalise_rotation(degrees: float) -> int:
    return round(degrees / 90.0) * 90 % 360


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Describe a video without decoding it all (demuxer header plus the first frame).

    Raises:
        InputError: missing file, not a video (images included), no video stream, or a first
            frame that cannot be decoded.
    """
    p = Path(path)
    _check_file(p)
    container = _open_input(p)
    try:
        fmt = container.format.name
        if fmt in _IMAGE_FORMATS or fmt.endswith("_pipe"):
            raise _not_a_video(p, f"it is a still image ({fmt})")
        if not container.streams.video:
            raise _not_a_video(p, "no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if stream.time_base is None or not ctx.width or not ctx.height:
            raise _not_a_video(p, "the video stream has no size or time base")
        time_base = Fraction(stream.time_base)
        fps = stream.average_rate or stream.guessed_rate or stream.base_rate
        if not fps:
            raise _not_a_video(p, "the video stream has no frame rate")
        fps = Fraction(fps)

        # The first frame: proves the stream decodes and carries the display matrix (FFmpeg puts
        # the stream's coded side data on the frames; av 18 has no stream-level getter).
        first = _first_frame(p, container, stream)
        matrix = display_matrix(first.side_data)
        rotation = _normalise_rotation(first.rotation) if matrix is not None else 0

        if stream.duration:
            duration = float(stream.duration * time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        else:
            duration = 0.0
        exact = bool(stream.frames and stream.frames > 0)
        frame_count = int(stream.frames) if exact else max(1, round(duration * fps))
        if stream.start_time is not None:
            start_pts = int(stream.start_time)
        else:
            start_pts = int(first.pts) if first.pts is not None else 0
        return VideoInfo(
            path=p,
            width=int(ctx.width),
            height=int(ctx.height),
            fps=fps,
            time_base=time_base,
            frame_count=frame_count,
            duration=duration,
            rotation=rotation,
            has_audio=bool(container.streams.audio),
            codec=ctx.name,
            start_pts=start_pts,
            frame_count_exact=exact,
            display_matrix=matrix,
        )
    finally:
        container.close()


def _first_frame(p: Path, container: av.container.InputContainer, stream: Any) -> Any:
    """The first frame that decodes, skipping up to ``_PROBE_PACKETS`` damaged packets."""
    last: Exception | None = None
    packets = container.demux(stream)
    for i, packet in enumerate(packets):
        if i >= _PROBE_PACKETS:
            break
        try:
            for frame in packet.decode():
                return frame
        except av.error.FFmpegError as exc:
            if isinstance(exc, av.error.EOFError):
                break
            last = exc
    if last is not None:
        raise _not_a_video(p, f"no frame can be decoded ({_reason(last)})") from last
    raise _not_a_video(p, "no frame can be decoded")


_PROBE_PACKETS = 250
_END = object()
_SHORTFALL_TOLERANCE = 2


class VideoReader:
    """Decode a video on a background thread; iterate to get :class:`Frame` objects.

    ``trim_start``/``trim_end`` select input frames ``[trim_start, trim_end)`` (``trim_end=None``:
    to the end); output indices restart at 0. Up to ``queue_size`` decoded frames wait in a
    bounded queue. With ``hwaccel`` NVDEC is used when :func:`probe_hardware` finds it, else
    software decoding (silently; also when NVDEC fails on the file, from the frame it failed
    at). Use as a context manager, or call :meth:`close`.

    Damage: packets the decoder rejects are skipped (``damaged_packets``), frames it repaired by
    error concealment are yielded (``concealed_frames``), and a stream that ends before the frame
    count its container announces is read to its end (``missing_frames``); all are final once
    iteration ends.

    Raises (from ``__init__``): InputError for an unreadable video, ConfigError for a bad trim.
    Raises (while iterating): InputError("corrupt or truncated video <path>: <reason>") when the
    container cannot be read on, or not one frame decodes.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        trim_start: int = 0,
        trim_end: int | None = None,
        queue_size: int = 8,
        hwaccel: bool = True,
        span: FrameSpan | None = None,
    ) -> None:
        self.info: VideoInfo = probe(path)
        if span is not None and (trim_start or trim_end is not None):
            raise ConfigError("a frame span and a trim cannot be combined")
        self.span = span
        self.path = self.info.path
        if trim_start < 0:
            raise ConfigError(f"--trim-frame-start must be 0 or more, not {trim_start}")
        if trim_end is not None and trim_end <= trim_start:
            raise ConfigError(f"--trim-frame-end ({trim_end}) must be greater than --trim-frame-start ({trim_start})")
        if self.info.frame_count_exact and trim_start >= self.info.frame_count:
            raise ConfigError(
                f"--trim-frame-start {trim_start} is past the last frame of {self.path} "
                f"({self.info.frame_count} frames)"
            )
        self.trim_start = trim_start
        self.trim_end = trim_end
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, queue_size))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._hardware = False  # NVDEC in use (set by _open)
        self._seen = 0  # input frames decoded (and handed on, when past trim_start)
        self.damaged_packets = 0  # video packets the decoder rejected (skipped)
        self.concealed_frames = 0  # frames decoded with concealed errors (kept)
        self._packets = 0  # video packets with data the demuxer delivered
        self._last_span_pts: int | None = None  # pts of the last frame of a span handed on
        self.missing_frames = 0  # frames the container announced that never came (cut short)
        self._container = self._open(hwaccel)

    # -- setup -------------------------------------------------------------------------------
    def _open(self, hwaccel: bool) -> av.container.InputContainer:
        if hwaccel and probe_hardware()["nvdec"]:
            from av.codec.hwaccel import HWAccel

            with contextlib.suppress(Exception):  # fall back to software, silently
                container = av.open(str(self.path), "r", hwaccel=HWAccel("cuda", allow_software_fallback=True))
                self._hardware = True
                return container
        return _open_input(self.path)

    @property
    def output_frame_count(self) -> int:
        """Frames this reader will yield (estimated when the container gives no exact count; for
        a span its ``frames``, pre-roll not counted)."""
        if self.span is not None:
            return self.span.frames if self.span.frames is not None else self.info.frame_count
        end = self.info.frame_count if self.trim_end is None else min(self.trim_end, self.info.frame_count)
        return max(0, end - self.trim_start)

    # -- decode thread -------------------------------------------------------------------------
    def _put(self, item: Any) -> bool:
        """Put into the queue unless asked to stop; ``False`` when stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _decode(self) -> None:
        with self._errors_handed_on():
            if self.span is not None:
                span = self.span
                if self._software_after_nvdec(lambda: self._decode_span(self._container, span)):
                    self._put(_END)
                return
            # NVDEC failed (seen mid-file on a GPU machine whose 256 px probe decoded fine): the
            # file is decoded in software, skipping the frames already handed on
            n = self._software_after_nvdec(lambda: self._decode_from(self._container),
                                           lambda: self._decode_from(self._container, skip=self._seen))
            stop_at = self.trim_end
            expected = self.info.frame_count if stop_at is None else min(stop_at, self.info.frame_count)
            # A couple of frames may legitimately go missing (edit lists, decoder delay quirks);
            # more than that means the file ends early.
            short = n is not None and self.info.frame_count_exact and n + self.damaged_packets < expected - _SHORTFALL_TOLERANCE
            if short and self.trim_start == 0 and stop_at is None and self._packets >= expected - _SHORTFALL_TOLERANCE:
                # every frame's packet arrived, so the file is whole: the decoder dropped the frames
                # it could not rebuild (those that needed a damaged keyframe) — damage, not an end
                self.damaged_packets += expected - n - self.damaged_packets
                short = False
            if short and n == 0:
                raise InputError(f"corrupt or truncated video {self.path}: not one of its {expected} frames decodes")
            if short:  # the container was read, the stream ends early: the frames there are swapped
                self.missing_frames = expected - n - self.damaged_packets
            if n is not None:
                self._put(_END)

    @contextlib.contextmanager
    def _errors_handed_on(self) -> Iterator[None]:
        """The decode thread's errors go to the consumer (an :class:`InputError`, others wrapped
        in one); the container is closed at the end either way."""
        try:
            yield
        except InputError as exc:
            self._put(exc)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer as an InputError
            err = InputError(f"corrupt or truncated video {self.path}: {_reason(exc)}")
            err.__cause__ = exc
            self._put(err)
        finally:
            with contextlib.suppress(Exception):
                self._container.close()

    def _software_after_nvdec(self, first: Callable[[], _T], again: Callable[[], _T] | None = None) -> _T:
        """``first()``; when it fails while NVDEC decodes, the file is opened again for software
        decoding and ``again()`` (default: ``first()`` once more) runs; any other failure is raised."""
        try:
            return first()
        except Exception:
            if not self._hardware:
                raise
            with contextlib.suppress(Exception):
                self._container.close()
            self._container, self._hardware = _open_input(self.path), False
            return (again or first)()

    def _decode_from(self, container: av.container.InputContainer, skip: int = 0) -> int | None:
        """Decode ``container`` into the queue, leaving out its first ``skip`` input frames
        (already handed on). Returns the input frames seen, or None when asked to stop."""
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n = 0  # input frame index
        stop_at = self.trim_end
        # NVDEC's failures must reach _decode (which falls back to software); in software a
        # packet the decoder rejects is damage: skip it, count it, go on.
        tolerant = not self._hardware
        for packet in container.demux(stream):
            if self._stop.is_set():
                return None
            if packet.size:
                self._packets += 1
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                if not tolerant:
                    raise
                if n >= max(self.trim_start, skip) and (stop_at is None or n < stop_at):
                    self.damaged_packets += 1
                continue
            for vf in decoded:
                if stop_at is not None and n >= stop_at:
                    break
                if n >= max(self.trim_start, skip):
                    if getattr(vf, "is_corrupt", False):
                        self.concealed_frames += 1
                    frame = Frame(index=n - self.trim_start, pts=vf.pts, image=frame_to_bgr(vf))
                    if not self._put(frame):
                        return None
                n += 1
                self._seen = max(self._seen, n)
            if stop_at is not None and n >= stop_at:
                break
        return n

    # -- a span (a segment of a split video) -----------------------------------------------------
    def _span_packets(self, container: av.container.InputContainer, span: FrameSpan) -> Iterator[Any]:
        """The video packets from the keyframe with pts ``span.decode_from`` on: a seek there,
        then a demux from the start when the seek landed past it (demuxing is cheap)."""
        stream = container.streams.video[0]
        if span.decode_from is None:
            yield from container.demux(stream)
            return
        target = span.decode_from
        first: Any = None
        try:
            container.seek(target, stream=stream, backward=True, any_frame=False)
            packets = container.demux(stream)
            for packet in packets:
                if packet.pts is not None and packet.pts > target and packet.is_keyframe:
                    break  # the seek landed past the keyframe: read from the start instead
                if packet.pts == target:
                    first = packet
                    break
        except av.error.FFmpegError:
            first = None
        if first is not None:
            yield first
            yield from packets
            return
        with contextlib.suppress(Exception):
            container.close()
        self._container = fresh = _open_input(self.path)  # closed by _errors_handed_on
        found = False
        for packet in fresh.demux(fresh.streams.video[0]):
            found = found or packet.pts == target
            if found:
                yield packet
        if not found:
            raise InputError(f"corrupt or truncated video {self.path}: no packet at pts {target} to start from")

    def _decode_span(self, container: av.container.InputContainer, span: FrameSpan) -> bool:
        """Decode the frames of ``span`` into the queue (pre-roll flagged). Frames at or before
        the last one handed on (a software retry after NVDEC failed) are left out. Returns False
        when asked to stop."""
        container.streams.video[0].thread_type = "AUTO"
        tolerant = not self._hardware
        index = span.first_index
        last = self._last_span_pts

        def hand_on(vf: Any) -> bool | None:
            """True: go on; False: stopped; None: the span is complete."""
            nonlocal index, last
            pts = vf.pts
            if pts is None:
                raise InputError(f"cannot split {self.path}: a frame carries no timestamp")
            if span.end is not None and pts >= span.end:
                return None
            low = span.warmup_from if span.warmup_from is not None else span.start
            if pts < low or (last is not None and pts <= last):
                return True
            if getattr(vf, "is_corrupt", False) and span.keeps(pts):
                self.concealed_frames += 1
            frame = Frame(index=index, pts=pts, image=frame_to_bgr(vf), preroll=pts < span.start)
            if not self._put(frame):
                return False
            index += 1
            last = self._last_span_pts = pts
            self._seen += 1
            return True

        codec: Any = None  # the decoder the packets go to (flushed at the end)
        for packet in self._span_packets(container, span):
            if self._stop.is_set():
                return False
            codec = packet.stream.codec_context
            if packet.size:
                self._packets += 1
            try:
                decoded = packet.decode()
            except av.error.FFmpegError:
                if not tolerant:
                    raise
                if packet.pts is not None and span.keeps(packet.pts):
                    self.damaged_packets += 1
                continue
            for vf in decoded:
                state = hand_on(vf)
                if state is None:
                    return True
                if not state:
                    return False
        if codec is None:
            return True
        # the end of the file: flush the decoder's delayed frames
        with contextlib.suppress(av.error.EOFError):
            for vf in codec.decode(None):
                state = hand_on(vf)
                if not state:
                    return state is None
        return True

    # -- consumer side ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Frame]:
        if self._closed or self._thread is not None:
            raise RuntimeError("a VideoReader can be iterated once")
        self._thread = threading.Thread(target=self._decode, name=f"decode:{self.path.name}", daemon=True)
        self._thread.start()
        return self._frames()

    def _frames(self) -> Iterator[Frame]:
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Stop the decode thread (even mid-file) and close the input. Idempotent, never hangs."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is None:
            with contextlib.suppress(Exception):
                self._container.close()
            return
        while thread.is_alive():
            try:  # free a producer blocked on a full queue
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)
        while not self._queue.empty():
            self._queue.get_nowait()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
