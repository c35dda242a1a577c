"""Encode frames in-process with PyAV and copy the input's audio packets unchanged.

The output is written to a temporary file beside it (``.<name>.<pid>.part<ext>``) and renamed into
place by :meth:`VideoWriter.close`; :meth:`VideoWriter.abort` (or an exception inside ``with``)
deletes the temporary file, so nothing ever appears under the final name half-written.

Timing: the output video stream keeps the input's average frame rate and time base (where the
container allows: .mkv/.webm use 1/1000) and the input pts, shifted so that with a trim the first
written frame starts where the input's first frame started. The packets of every audio, subtitle
and data stream of the input are muxed as they are (payload bytes untouched), interleaved as
video is written; with a trim only the packets inside the trimmed span are kept, shifted by the
same offset. A subtitle or data stream the output container cannot hold is left out and named
in :attr:`VideoWriter.dropped`; an audio stream it cannot hold is an error.
Rotation: the input's display matrix is written on the output video stream.
Size: the output has exactly the input's size. H.264/HEVC cannot code an odd width or height in
4:2:0 (not even with cropping, which is in 2-pixel steps there), so odd sizes are coded 4:4:4.
:meth:`VideoWriter.finish_as_copy` replaces the encoded frames by the input's own packets (a
job that changed no frame is remuxed, not re-encoded).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Self

import av
import numpy as np

from ..errors import ConfigError, OutputError
from .frames import bgr_to_frame
from .probe import probe_hardware
from .reader import VideoInfo

__all__ = ["OUTPUT_VIDEO_EXTENSIONS", "EncodeOptions", "VideoWriter", "pixel_format", "probe_hardware"]

# Stream kinds copied packet by packet from the input (besides the video, which is encoded).
COPIED_KINDS: tuple[str, ...] = ("audio", "subtitle", "data")

from ..formats import VIDEO_OUTPUT_EXTENSIONS as OUTPUT_VIDEO_EXTENSIONS

_X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
# x264 preset names → NVENC p1 (fastest) … p7 (best)
_NVENC_PRESETS = {
    "ultrafast": "p1",
    "superfast": "p1",
    "veryfast": "p2",
    "faster": "p3",
    "fast": "p3",
    "medium": "p4",
    "slow": "p5",
    "slower": "p6",
    "veryslow": "p7",
}


@dataclass(frozen=True)
class EncodeOptions:
    """Video encoder settings (``--output-video-encoder``, ``--output-video-quality``, ``--output-video-preset``).

    ``encoder``: an FFmpeg encoder name (libx264, libx265, h264_nvenc, hevc_nvenc, libvpx-vp9,
    libaom-av1, ...) or ``"auto"`` (h264_nvenc when usable, else libx264). ``crf``: 0 (lossless)
    … 51 (worst); NVENC gets it as ``cq``. ``preset``: x264 names; mapped to p1…p7 for NVENC.
    ``threads``: encoder threads, 0 = the codec's default. ``closed_gop``: no frame refers across
    a keyframe (each part of a split video decodes on its own and joins with the next).
    """

    encoder: str = "libx264"
    crf: int = 18
    preset: str = "veryfast"
    threads: int = 0
    closed_gop: bool = False

    def resolved_encoder(self, ext: str = ".mp4") -> str:
        """The encoder to open for a file with extension ``ext``: ``auto`` is VP9 for WebM
        (which holds no H.264), else H.264 by NVENC when :func:`probe_hardware` finds it, else
        libx264."""
        if self.encoder == "auto":
            if ext.lower() == ".webm":
                return "libvpx-vp9"
            return "h264_nvenc" if probe_hardware()["nvenc"] else "libx264"
        return self.encoder

    def codec_options(self, encoder: str) -> dict[str, str]:
        """FFmpeg private options for ``encoder`` from crf and preset."""
        crf = str(int(self.crf))
        if encoder.endswith("_nvenc"):
            preset = _NVENC_PRESETS.get(self.preset, self.preset)
            return {"rc": "vbr", "cq": crf, "preset": preset}
        if encoder in ("libx264", "libx264rgb", "libx265"):
            return {"crf": crf, "preset": self.preset}
        if encoder == "libvpx-vp9":
            return {"crf": crf, "b": "0", "deadline": "realtime" if self.preset in _X26X_PRESETS[:4] else "good"}
        if encoder in ("libaom-av1", "libsvtav1"):
            return {"crf": crf}
        return {}

    def validate(self) -> None:
        """Raises ConfigError for an unknown encoder or quality out of range."""
        if not 0 <= int(self.crf) <= 51:
            raise ConfigError(f"--output-video-quality must be between 0 and 51, not {self.crf}")
        if self.threads < 0:
            raise ConfigError(f"encoder threads must be 0 or more, not {self.threads}")
        if self.encoder == "auto":
            return
        try:
            codec = av.codec.Codec(self.encoder, "w")
        except Exception as exc:  # UnknownCodecError and friends
            raise ConfigError(f"unknown video encoder {self.encoder!r} (try libx264, libx265 or h264_nvenc)") from exc
        if codec.type != "video":
            raise ConfigError(f"{self.encoder!r} is not a video encoder")
        if self.encoder.endswith("_nvenc") and not probe_hardware()["nvenc"]:
            raise ConfigError(f"video encoder {self.encoder} is not usable here (no NVIDIA GPU/driver); use libx264 or auto")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (av.error.FFmpegError, OSError)):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


def pixel_format(encoder: str, width: int, height: int) -> str:
    """The pixel format to encode a ``width`` × ``height`` video with ``encoder``.

    ``yuv420p`` (what every player plays) for even sizes. For an odd width or height, 4:2:0
    cannot be coded by H.264/HEVC encoders (x264, x265, NVENC fail with "Generic error in an
    external library"; the bitstream's cropping is in 2-pixel steps in 4:2:0), so the first
    4:4:4 format the encoder takes is used: the size stays exact, nothing is resized. VP9 and
    AV1 code odd sizes in 4:2:0 and keep ``yuv420p``.
    """
    try:
        codec = av.codec.Codec(encoder, "w")
    except Exception:  # noqa: BLE001 - validated elsewhere; let the encoder's own error speak
        return "yuv420p"
    formats = [f.name for f in (codec.video_formats or ())]
    if formats and "yuv420p" not in formats and "bgr24" in formats:
        return "bgr24"  # an RGB encoder (libx264rgb): the BGR frames go in as they are
    if width % 2 == 0 and height % 2 == 0:
        return "yuv420p"
    if codec.name not in ("h264", "hevc", "libx264", "libx265") and not encoder.endswith(("_nvenc", "_qsv", "_vaapi")):
        return "yuv420p"
    for name in ("yuv444p", "gbrp", "bgr0"):
        if name in formats:
            return name
    return "yuv420p"


def _can_hold(format_name: str, template: Any) -> bool:
    """Whether an output of ``format_name`` accepts a stream copied from ``template`` (tried on a
    throw-away in-memory file: some muxers only refuse a codec when the header is written)."""
    import io

    try:
        with av.open(io.BytesIO(), "w", format=format_name) as probe_out:
            probe_out.add_stream_from_template(template)
            probe_out.start_encoding()
        return True
    except Exception:  # noqa: BLE001 - any refusal means "cannot hold"
        return False


def _regenerated(packet: Any, format_name: str) -> bool:
    """An empty end-of-cue sample of a mov_text stream going into an MP4/MOV file: that muxer
    writes its own (it ends every cue before the next packet of any stream), so copying the
    input's would double them."""
    if packet.size != 2 or packet.stream.type != "subtitle" or format_name not in _MOV_MUXERS:
        return False
    ctx = packet.stream.codec_context
    return ctx is not None and ctx.name == "mov_text" and bytes(packet) == b"\0\0"


_MOV_MUXERS = ("mp4", "mov", "ipod", "ismv", "3gp", "3g2", "psp", "f4v")
_CLOSED_GOP = -(1 << 31)  # AV_CODEC_FLAG_CLOSED_GOP (1U << 31) as the signed int PyAV keeps


def _describe(stream: Any) -> str:
    name = stream.codec_context.name if stream.codec_context is not None else getattr(stream, "name", None)
    return f"{stream.type} stream #{stream.index} ({name or 'unknown codec'})"


class VideoWriter:
    """Encode ``(H, W, 3) uint8`` BGR frames (coded orientation) to a video file; use with ``with``.

    ``info`` is the input's :class:`VideoInfo` (size, rate, time base, rotation). ``audio_from``:
    a file whose audio, subtitle and data streams are copied packet by packet (usually
    ``info.path``; ``None``: none). ``trim_start``/``trim_end``: the input frame range being
    written, so the copied streams are cut to the same span. ``container_options``: the muxer's
    options (``{"movie_timescale": "12800"}`` keeps an MP4's start time exact). After construction ``copied``
    counts the streams copied per kind (``{"audio": 2, "subtitle": 1, "data": 0}``) and
    ``dropped`` describes the subtitle/data streams the container cannot hold.

    Raises (from ``__init__``): OutputError (unsupported extension, missing folder, folder not
    writable, codec the container cannot hold), ConfigError (bad encoder options).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        info: VideoInfo,
        options: EncodeOptions = EncodeOptions(),
        *,
        audio_from: Path | None = None,
        trim_start: int = 0,
        trim_end: int | None = None,
        container_options: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.container_options = dict(container_options or {})
        self.info = info
        self.options = options
        self.trim_start = trim_start
        self.trim_end = trim_end
        options.validate()
        ext = self.path.suffix.lower()
        if ext not in OUTPUT_VIDEO_EXTENSIONS:
            raise OutputError(
                f"unsupported output extension {self.path.suffix or '(none)'!r} for {self.path}; "
                f"use one of {', '.join(OUTPUT_VIDEO_EXTENSIONS)}"
            )
        parent = self.path.parent if str(self.path.parent) else Path(".")
        if not parent.is_dir():
            raise OutputError(f"output folder does not exist: {parent}")
        if self.path.is_dir():
            raise OutputError(f"output is a folder: {self.path}")
        self.temp_path = parent / f".{self.path.name}.{os.getpid()}.part{ext}"

        self._out: Any = None
        self._audio_in: Any = None
        self._audio_packets: Iterator[Any] | None = None
        self._pending: Any = None  # the next copied packet, read but not yet muxed
        self._targets: dict[int, Any] = {}  # input stream index → output stream (copied streams)
        self.copied: dict[str, int] = {kind: 0 for kind in COPIED_KINDS}
        self.dropped: list[str] = []
        self._done = False
        self._count = 0
        self._last_pts: int | None = None
        self._offset: int | None = None  # video pts shift (input → output), set by the first write
        self._copy_start: Fraction | None = None  # input time (s) where the copied span starts (trim)
        self._copy_offset = Fraction(0)  # seconds subtracted from copied packets' times (trim)
        try:
            with open(self.temp_path, "wb"):  # proves the folder is writable before any work
                pass
            self._open(ext, audio_from)
        except BaseException:
            self.abort()
            raise

    # -- setup -------------------------------------------------------------------------------------
    def _open(self, ext: str, audio_from: Path | None) -> None:
        encoder = self.options.resolved_encoder(ext)
        try:
            self._out = av.open(str(self.temp_path), "w", options=self.container_options or None)
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from exc
        supported = self._out.supported_codecs
        codec_name = av.codec.Codec(encoder, "w").name
        if codec_name not in supported and encoder not in supported:
            raise OutputError(f"{ext} files cannot hold {encoder} video; use .mp4, .mov or .mkv")

        info = self.info
        stream = self._out.add_stream(encoder, rate=info.fps, options=self.options.codec_options(encoder))
        stream.width = info.width
        stream.height = info.height
        stream.pix_fmt = pixel_format(encoder, info.width, info.height)
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        stream.codec_context.framerate = info.fps
        if self.options.threads:
            stream.codec_context.thread_count = self.options.threads
        if self.options.closed_gop:
            stream.codec_context.flags |= _CLOSED_GOP
        if info.display_matrix is not None:
            stream.set_display_matrix(info.display_matrix)
        elif info.rotation:
            stream.set_display_rotation(info.rotation)
        self._video = stream

        if audio_from is None:
            return
        try:
            self._audio_in = av.open(str(audio_from), "r")
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot read the audio of {audio_from}: {_reason(exc)}") from exc
        sources = [s for s in self._audio_in.streams if s.type in COPIED_KINDS]
        for src in sources:
            if src.type == "audio":
                if src.codec_context.name not in supported:
                    raise OutputError(
                        f"{ext} files cannot hold the input's {src.codec_context.name} audio (copied unchanged); "
                        "use .mp4, .mov or .mkv"
                    )
            else:
                name = src.codec_context.name if src.codec_context is not None else None
                if (name is None or name not in supported) and not _can_hold(self._out.format.name, src):
                    self.dropped.append(f"{_describe(src)}: {ext} files cannot hold it")
                    continue
            try:
                self._targets[src.index] = self._out.add_stream_from_template(src)
            except (av.error.FFmpegError, ValueError) as exc:
                if src.type == "audio":
                    raise OutputError(f"cannot copy the input's audio into {self.path}: {_reason(exc)}") from exc
                self.dropped.append(f"{_describe(src)}: {_reason(exc)}")
                continue
            self.copied[src.type] += 1
        if not self._targets:
            self._audio_in.close()
            self._audio_in = None
            return
        chosen = [s for s in sources if s.index in self._targets]
        self._audio_packets = self._audio_in.demux(*chosen)

    # -- timing ---------------------------------------------------------------------------------
    def _input_time(self, out_pts: int) -> Fraction:
        """Input-timeline time (seconds) of the start of a frame written with ``out_pts``."""
        return (out_pts + (self._offset or 0)) * self.info.time_base

    def _start(self, first_input_pts: int) -> None:
        info = self.info
        if self.trim_start > 0:
            self._offset = first_input_pts - info.start_pts
            if self._audio_packets is not None:
                self._copy_start = first_input_pts * info.time_base
                self._copy_offset = self._offset * info.time_base
        else:
            self._offset = 0

    # -- copied streams (audio, subtitles, data) ----------------------------------------------------
    def _next_audio(self) -> Any:
        if self._pending is None and self._audio_packets is not None:
            for packet in self._audio_packets:
                if packet.size == 0 or packet.pts is None and packet.dts is None:
                    continue
                if _regenerated(packet, self._out.format.name):
                    continue
                if self._copy_start is not None and self._seconds(packet) < self._copy_start:
                    continue
                self._pending = packet
                break
            else:
                self._audio_packets = None
        return self._pending

    @staticmethod
    def _ts(packet: Any) -> int:
        return int(packet.pts if packet.pts is not None else packet.dts)

    def _seconds(self, packet: Any) -> Fraction:
        return self._ts(packet) * Fraction(packet.stream.time_base)

    def _mux_audio(self, until: Fraction | None) -> None:
        """Mux copied packets (audio, subtitles, data; in file order) that start before ``until``
        (input seconds); ``None``: all the rest."""
        while (packet := self._next_audio()) is not None:
            if until is not None and self._seconds(packet) >= until:
                return
            self._pending = None
            target = self._targets[packet.stream.index]
            if self._copy_offset:
                shift = round(self._copy_offset / Fraction(packet.stream.time_base))
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
            packet.stream = target
            self._out.mux(packet)

    # -- public -------------------------------------------------------------------------------------
    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Encode one ``(H, W, 3) uint8`` BGR frame; ``pts`` is the input pts (``None``: by index)."""
        if self._done:
            raise RuntimeError("VideoWriter is closed")
        info = self.info
        if image.shape != (info.height, info.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"frame must be ({info.height}, {info.width}, 3) uint8, got {image.shape} {image.dtype}"
            )
        if self._offset is None:
            first = pts if pts is not None else info.start_pts + self.trim_start * info.frame_duration
            self._start(first)
        if pts is None:
            out_pts = info.start_pts + self._count * info.frame_duration
        else:
            out_pts = int(pts) - (self._offset or 0)
        if self._last_pts is not None and out_pts <= self._last_pts:
            out_pts = self._last_pts + 1  # keep pts strictly increasing for the encoder
        if self._video.pix_fmt == "bgr24":
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
        else:
            frame = bgr_to_frame(image)
        frame.pts = out_pts
        frame.time_base = info.time_base
        try:
            for packet in self._video.encode(frame):
                self._out.mux(packet)
            self._mux_audio(self._input_time(out_pts))
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from exc
        self._last_pts = out_pts
        self._count += 1

    @property
    def frames_written(self) -> int:
        return self._count

    def finish_as_copy(self, source: Path) -> bool:
        """Finish with ``source``'s own packets instead of the encoded frames: the video and the
        copied (audio, subtitle, data) streams are remuxed unchanged, then renamed into place.

        Used when a job changed no pixel. Only without a trim (a packet copy cannot cut between
        keyframes). Returns ``False``, and changes nothing, when the copy cannot be made (a trim,
        a video codec the output container cannot hold, a muxer that refuses the packets); the
        caller then finishes the encoded file with :meth:`close`.
        """
        if self._done or self._out is None:
            return False
        info = self.info
        if self.trim_start > 0 or (
            self.trim_end is not None and (not info.frame_count_exact or self.trim_end < info.frame_count)
        ):
            return False
        copy_path = self.temp_path.with_name(self.temp_path.name + ".copy")
        try:
            _remux(source, copy_path, self._out.format.name, set(self._targets))
        except (av.error.FFmpegError, OSError, ValueError, OutputError):
            with contextlib.suppress(OSError):
                os.unlink(copy_path)
            return False
        try:
            with contextlib.suppress(Exception):
                self._out.close()  # the encoded frames are not wanted
            self._out = None
            self._close_audio()
            os.replace(copy_path, self.path)
            with contextlib.suppress(OSError):
                os.unlink(self.temp_path)
            self._done = True
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(copy_path)
            self.abort()
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from exc
        return True

    def close(self) -> None:
        """Flush the encoder, mux the remaining audio, finalize and rename into place.

        Raises OutputError (the temporary file is removed) when the file cannot be finished.
        """
        if self._done:
            return
        try:
            if self._count == 0:
                raise OutputError(f"no frames were written to {self.path}")
            for packet in self._video.encode(None):
                self._out.mux(packet)
            until: Fraction | None = None
            cut_end = self.trim_end is not None and (
                not self.info.frame_count_exact or self.trim_end < self.info.frame_count
            )
            if cut_end and self._last_pts is not None:
                until = self._input_time(self._last_pts + self.info.frame_duration)
            self._mux_audio(until)
            self._out.close()
            self._out = None
            self._close_audio()
            os.replace(self.temp_path, self.path)
            self._done = True
        except (av.error.FFmpegError, OSError) as exc:
            self.abort()
            raise OutputError(f"cannot write {self.path}: {_reason(exc)}") from exc
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop everything: close the containers and delete the temporary file. Never raises."""
        self._done = True
        if self._out is not None:
            with contextlib.suppress(Exception):
                self._out.close()
            self._out = None
        self._close_audio()
        with contextlib.suppress(OSError):
            os.unlink(self.temp_path)

    def _close_audio(self) -> None:
        self._audio_packets = None
        self._pending = None
        if self._audio_in is not None:
            with contextlib.suppress(Exception):
                self._audio_in.close()
            self._audio_in = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _remux(source: Path, path: Path, format_name: str, copied: set[int]) -> None:
    """Write ``source``'s first video stream and the streams with index in ``copied`` to ``path``
    (format ``format_name``), every packet unchanged (payload, pts, dts, flags)."""
    with av.open(str(source), "r") as src:
        video = src.streams.video[0]
        chosen = [video, *(s for s in src.streams if s.index in copied)]
        with av.open(str(path), "w", format=format_name) as out:
            supported = out.supported_codecs
            if video.codec_context.name not in supported:
                raise OutputError(f"{path.suffix} files cannot hold {video.codec_context.name} video")
            targets = {s.index: out.add_stream_from_template(s) for s in chosen}
            for packet in src.demux(*chosen):
                if packet.size == 0 or packet.dts is None and packet.pts is None:
                    continue
                if _regenerated(packet, format_name):
                    continue
                packet.stream = targets[packet.stream.index]
                out.mux(packet)
