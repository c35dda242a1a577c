"""Encode frames in-process with PyAV and copy the input's audio packets unchanged.

The output is written to a temporary file beside it (``.<name>.<pid>.part<ext>``) and renamed into
place by :meth:`VideoWriter.close`; :meth:`VideoWriter.abort` (or an exception inside ``with``)
deletes the temporary file, so nothing ever appears under the final name half-written.

Timing: the output video stream keeps the input's average frame rate and time base (where the
container allows: .mkv/.webm use 1/1000) and the input pts, shifted so that with a trim the first
written frame starts where the input's first frame started. Audio packets of the input's first
audio stream are muxed as they are (payload bytes untouched), interleaved as video is written;
with a trim only the packets inside the trimmed span are kept, shifted by the same offset.
Rotation: the input's display matrix is written on the output video stream.
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

__all__ = ["OUTPUT_VIDEO_EXTENSIONS", "EncodeOptions", "VideoWriter", "probe_hardware"]

OUTPUT_VIDEO_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".webm")

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
    ``threads``: encoder threads, 0 = the codec's default.
    """

    encoder: str = "libx264"
    crf: int = 18
    preset: str = "veryfast"
    threads: int = 0

    def resolved_encoder(self) -> str:
        """The encoder to open: ``auto`` resolved by :func:`probe_hardware`."""
        if self.encoder == "auto":
            return "h264_nvenc" if probe_hardware()["nvenc"] else "libx264"
        return self.encoder

    def codec_options(self, encoder: str) -> dict[str, str]:
        """FFmpeg private options for ``encoder`` from crf and preset."""
        crf = str(int(self.crf))
        if encoder.endswith("_nvenc"):
            preset = _NVENC_PRESETS.get(self.preset, self.preset)
            return {"rc": "vbr", "cq": crf, "preset": preset}
        if encoder in ("libx264", "libx265"):
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


class VideoWriter:
    """Encode ``(H, W, 3) uint8`` BGR frames (coded orientation) to a video file; use with ``with``.

    ``info`` is the input's :class:`VideoInfo` (size, rate, time base, rotation). ``audio_from``:
    a file whose first audio stream is copied packet by packet (usually ``info.path``; ``None``:
    no audio). ``trim_start``/``trim_end``: the input frame range being written, so the audio
    is cut to the same span.

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
    ) -> None:
        self.path = Path(path)
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
        self._pending: Any = None  # the next audio packet, read but not yet muxed
        self._done = False
        self._count = 0
        self._last_pts: int | None = None
        self._offset: int | None = None  # video pts shift (input → output), set by the first write
        self._audio_start: int | None = None  # input audio pts range kept, in the audio time base
        self._audio_offset = 0
        try:
            with open(self.temp_path, "wb"):  # proves the folder is writable before any work
                pass
            self._open(ext, audio_from)
        except BaseException:
            self.abort()
            raise

    # -- setup -------------------------------------------------------------------------------------
    def _open(self, ext: str, audio_from: Path | None) -> None:
        encoder = self.options.resolved_encoder()
        try:
            self._out = av.open(str(self.temp_path), "w")
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
        stream.pix_fmt = "yuv420p"
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        stream.codec_context.framerate = info.fps
        if self.options.threads:
            stream.codec_context.thread_count = self.options.threads
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
        if not self._audio_in.streams.audio:
            self._audio_in.close()
            self._audio_in = None
            return
        src = self._audio_in.streams.audio[0]
        if src.codec_context.name not in supported:
            raise OutputError(
                f"{ext} files cannot hold the input's {src.codec_context.name} audio (copied unchanged); "
                "use .mp4, .mov or .mkv"
            )
        self._audio = self._out.add_stream_from_template(src)
        self._audio_tb = Fraction(src.time_base)
        self._audio_packets = self._audio_in.demux(src)

    # -- timing ---------------------------------------------------------------------------------
    def _input_time(self, out_pts: int) -> Fraction:
        """Input-timeline time (seconds) of the start of a frame written with ``out_pts``."""
        return (out_pts + (self._offset or 0)) * self.info.time_base

    def _start(self, first_input_pts: int) -> None:
        info = self.info
        if self.trim_start > 0:
            self._offset = first_input_pts - info.start_pts
            if self._audio_packets is not None:
                start_s = first_input_pts * info.time_base
                self._audio_start = round(start_s / self._audio_tb)
                self._audio_offset = round(self._offset * info.time_base / self._audio_tb)
        else:
            self._offset = 0

    # -- audio ------------------------------------------------------------------------------------
    def _next_audio(self) -> Any:
        if self._pending is None and self._audio_packets is not None:
            for packet in self._audio_packets:
                if packet.size == 0 or packet.pts is None and packet.dts is None:
                    continue
                if self._audio_start is not None and self._ts(packet) < self._audio_start:
                    continue
                self._pending = packet
                break
            else:
                self._audio_packets = None
        return self._pending

    @staticmethod
    def _ts(packet: Any) -> int:
        return int(packet.pts if packet.pts is not None else packet.dts)

    def _mux_audio(self, until: Fraction | None) -> None:
        """Mux audio packets that start before ``until`` (input seconds); ``None``: all the rest."""
        while (packet := self._next_audio()) is not None:
            if until is not None and self._ts(packet) * self._audio_tb >= until:
                return
            self._pending = None
            if self._audio_offset:
                if packet.pts is not None:
                    packet.pts -= self._audio_offset
                if packet.dts is not None:
                    packet.dts -= self._audio_offset
            packet.stream = self._audio
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
