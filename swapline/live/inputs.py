"""Live inputs: a capture thread per input that submits decoded frames to the live engine.

Three kinds, told apart by :func:`parse_input`:

* a **file** (``clip.mp4``), played as fast as it decodes or, with ``realtime``, at its own rate
  (each frame is submitted at its presentation time; ``loop`` starts it again at the end);
* a **stream** PyAV opens (``rtsp://``, ``rtmp://``, ``udp://``, ``tcp://``, ``srt://``, ``http://``
  where the bundled FFmpeg has the protocol), opened with low-latency options (no input
  buffering, low-delay decoding, a small probe) and decoded with slice threads (frame threads
  would hold frames back). ``rtmp://host:port/app/key?listen=1`` waits for a publisher (OBS,
  ffmpeg) instead of connecting to a server;
* a local **camera** (``/dev/video0``) through FFmpeg's v4l2 input.

A frame is *captured* when it is submitted (``time.monotonic()``); latency runs from there.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import av

from ..errors import InputError
from ..video.frames import frame_to_bgr
from .engine import LiveFrame

__all__ = ["LOW_LATENCY_OPTIONS", "Capture", "InputSpec", "parse_input"]

InputKind = Literal["file", "stream", "camera"]

#: FFmpeg options for a stream: no input buffer, low-delay decoding, a short probe at the start
#: (32 KiB, 0.1 s). With ``nobuffer`` the packets read while probing are not decoded, so a
#: stream starts at its next keyframe (the outputs here send one every half second).
LOW_LATENCY_OPTIONS: dict[str, str] = {"fflags": "nobuffer", "flags": "low_delay", "probesize": "32768",
                                       "analyzeduration": "100000"}
_PER_PROTOCOL: dict[str, dict[str, str]] = {
    "udp": {"overrun_nonfatal": "1", "fifo_size": "50000"},  # ≈ 9 MB of 188-byte packets, bounded
    "rtsp": {"rtsp_flags": "prefer_tcp"},
}
_V4L2 = ("v4l2", "video4linux2")


@dataclass(frozen=True)
class InputSpec:
    """What to open and how.

    Attributes:
        kind: ``file``, ``stream`` or ``camera``.
        target: the path, URL or device as FFmpeg gets it.
        format: the FFmpeg input format to force (``v4l2`` for a camera), else None.
        options: FFmpeg options for opening it.
    """

    kind: InputKind
    target: str
    format: str | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.target


def parse_input(text: str, *, options: Mapping[str, str] | None = None, fps: float | None = None) -> InputSpec:
    """The input ``text`` names: a camera device, a stream URL or a file.

    ``options`` are extra FFmpeg options (``video_size=1280x720``, ``input_format=mjpeg`` for a
    camera); ``fps`` is the frame rate asked of a camera.

    Raises:
        InputError: a missing file or camera, or an FFmpeg build without v4l2.
    """
    extra = dict(options or {})
    if text.startswith("/dev/"):
        return _camera(text, extra, fps)
    scheme = urlsplit(text).scheme.lower()
    if len(scheme) > 1 and "://" in text:  # (a one-letter "scheme" is a Windows drive)
        if scheme == "file":
            return _file(urlsplit(text).path)
        return _stream(text, scheme, extra)
    return _file(text)


def _file(path: str) -> InputSpec:
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p}")
    if p.is_dir():
        raise InputError(f"input is a folder, not a video: {p}")
    return InputSpec("file", str(p))


def _stream(url: str, scheme: str, extra: dict[str, str]) -> InputSpec:
    opts = {**LOW_LATENCY_OPTIONS, **_PER_PROTOCOL.get(scheme, {})}
    if scheme in ("rtmp", "rtmps"):  # FFmpeg's RTMP takes 'listen' as an option, not from the URL
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        listen = [v for k, v in query if k == "listen"]
        if listen:
            opts["listen"] = listen[-1] or "1"
            url = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query if k != "listen"])))
    opts.update(extra)
    return InputSpec("stream", url, None, opts)


def v4l2_format() -> str | None:
    """The name of FFmpeg's v4l2 input in this PyAV build, or None when it has none."""
    for name in _V4L2:
        try:
            av.format.ContainerFormat(name, "r")
            return name
        except (ValueError, av.error.FFmpegError):
            continue
    return None


def _camera(device: str, extra: dict[str, str], fps: float | None) -> InputSpec:
    fmt = v4l2_format()
    if fmt is None:
        raise InputError(f"cannot open camera {device}: this FFmpeg build (PyAV {av.__version__}) has no v4l2 "
                         "input; install a PyAV wheel built with libavdevice's v4l2, or stream the camera "
                         "with ffmpeg to udp:// and give that as --input")
    if not os.path.exists(device):
        raise InputError(f"no camera at {device}: no such device (is a camera connected, and is /dev/video* "
                         "passed to this machine or container?)")
    opts: dict[str, str] = {}
    if fps:
        opts["framerate"] = f"{fps:g}"
    opts.update(extra)
    return InputSpec("camera", device, fmt, opts)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (av.error.FFmpegError, OSError)):
        return exc.strerror or str(exc)
    return str(exc) or type(exc).__name__


class Capture:
    """Reads an input on its own thread and hands every decoded frame to ``submit``.

    Args:
        spec: what to open (:func:`parse_input`).
        submit: called with each :class:`~swapline.live.engine.LiveFrame` (usually
            ``engine.submit``: a newest-frame slot, so a slow engine drops, never queues).
        realtime: a file is played at its own rate, not as fast as it decodes.
        loop: a file starts again at its end (indices and pts keep growing).
        timeout: seconds to wait for a stream or camera to open, and for its next packet before
            it counts as ended.

    After :meth:`start`, :meth:`wait_first` says when the first frame arrived (its size is then
    in :attr:`width` and :attr:`height`); :attr:`done` is set when the input ended, failed or was
    stopped, with :attr:`error` set on failure and :attr:`ended` saying why it ended.
    """

    def __init__(self, spec: InputSpec, submit: Callable[[LiveFrame], None], *, realtime: bool = False,
                 loop: bool = False, timeout: float = 10.0, clock: Callable[[], float] = time.monotonic):
        if not timeout > 0:
            raise InputError(f"the input timeout must be more than 0 s (got {timeout:g})")
        self.spec = spec
        self._submit = submit
        self.realtime = realtime and spec.kind == "file"
        self.loop = loop and spec.kind == "file"
        self.timeout = float(timeout)
        self._clock = clock
        self._stop = threading.Event()
        self.first = threading.Event()
        self.done = threading.Event()
        self.error: InputError | None = None
        self.ended = ""
        self.frames = 0
        self.damaged = 0
        self.width = 0
        self.height = 0
        self.fps: Fraction | None = None
        self._thread: threading.Thread | None = None

    # -- control ------------------------------------------------------------------------------
    def start(self) -> None:
        # Not a daemon: a read blocked on a silent stream cannot be cut short from Python, and a
        # daemon thread still inside it when the interpreter finalizes crashed the process (PyAV's
        # timeout callback takes the GIL from FFmpeg's thread). Python's exit waits for it
        # instead: at most the read timeout after ``stop``.
        self._thread = threading.Thread(target=self._run, name="swapline-live-capture", daemon=False)
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (a read blocked on a silent stream ends at its timeout)."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_first(self, timeout: float | None = None) -> bool:
        """Wait for the first frame: True once it came, False on timeout.

        Raises:
            InputError: the input could not be opened or read, or ended before its first frame.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.first.is_set():
            if self.done.is_set():
                if self.error is not None:
                    raise self.error
                raise InputError(f"{self.spec.label}: no video frame came ({self.ended or 'input ended'})")
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return False
            self.first.wait(left)
        return True

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._read_all()
        except InputError as exc:
            self.error = exc
            self.ended = str(exc)
        except Exception as exc:  # noqa: BLE001 - becomes one line for the front end
            self.error = InputError(f"{self.spec.label}: {_reason(exc)}")
            self.ended = str(self.error)
        finally:
            self.done.set()

    def _open(self) -> Any:
        spec = self.spec
        timeout = None if spec.kind == "file" else (self.timeout, self.timeout)
        try:
            return av.open(spec.target, "r", format=spec.format, options=dict(spec.options), timeout=timeout)
        except av.error.ProtocolNotFoundError:
            scheme = urlsplit(spec.target).scheme
            raise InputError(f"this FFmpeg build (PyAV {av.__version__}) cannot open {scheme}:// streams "
                             "(no such protocol)") from None
        except av.error.ExitError:
            raise InputError(f"nothing came from {spec.label} within {self.timeout:g} s (--input-timeout)") from None
        except av.error.PermissionError:
            raise InputError(f"cannot open {spec.label}: permission denied"
                             + (" (is this user in the 'video' group?)" if spec.kind == "camera" else "")) from None
        except av.error.FileNotFoundError:
            what = "no camera at" if spec.kind == "camera" else "not found:"
            raise InputError(f"{what} {spec.label}") from None
        except (av.error.FFmpegError, OSError) as exc:
            raise InputError(f"cannot open {spec.label}: {_reason(exc)}") from None

    def _read_all(self) -> None:
        index = 0
        step = 1
        pts_offset = 0  # a looped file's pts keep growing
        media_offset = 0.0  # seconds of media already played (loops)
        start: float | None = None  # the clock at media time 0 (realtime pacing)
        while not self._stop.is_set():
            container = self._open()
            try:
                if not container.streams.video:
                    raise InputError(f"{self.spec.label} has no video stream")
                stream = container.streams.video[0]
                if self.spec.kind != "file":
                    stream.thread_type = "SLICE"  # frame threads hold frames back
                else:
                    stream.thread_type = "AUTO"
                self.fps = stream.average_rate or stream.base_rate or self.fps
                step = round(1 / (self.fps * stream.time_base)) if self.fps and stream.time_base else 1
                first_time: float | None = None
                last_time = 0.0
                last_pts = None
                for packet in container.demux(stream):
                    if self._stop.is_set():
                        self.ended = "stopped"
                        return
                    try:
                        frames = packet.decode()
                    except av.error.InvalidDataError:
                        self.damaged += 1
                        continue
                    for frame in frames:
                        t = float(frame.time) if frame.time is not None else index / float(self.fps or 30)
                        if first_time is None:
                            first_time = t
                        last_time = t - first_time
                        if self.realtime:
                            now = self._clock()
                            if start is None:
                                start = now
                            due = start + media_offset + last_time
                            if due > now and self._stop.wait(due - now):
                                self.ended = "stopped"
                                return
                        image = frame_to_bgr(frame)
                        pts = None if frame.pts is None else int(frame.pts) + pts_offset
                        last_pts = frame.pts
                        tb = Fraction(frame.time_base) if frame.time_base is not None else None
                        if index == 0:
                            self.height, self.width = image.shape[:2]
                        self._submit(LiveFrame(image=image, index=index, captured=self._clock(), pts=pts,
                                               time_base=tb))
                        index += 1
                        self.frames = index
                        if index == 1:
                            self.first.set()
            except av.error.ExitError:
                if index == 0:
                    raise InputError(f"nothing came from {self.spec.label} within {self.timeout:g} s "
                                     "(--input-timeout)") from None
                self.ended = f"no data from {self.spec.label} for {self.timeout:g} s: taken as its end"
                return
            except av.error.EOFError:
                pass
            except (av.error.FFmpegError, OSError) as exc:
                if index == 0:
                    raise InputError(f"cannot read {self.spec.label}: {_reason(exc)}") from None
                self.ended = f"{self.spec.label}: {_reason(exc)}: taken as its end"
                return
            finally:
                container.close()
            if not self.loop or index == 0:
                self.ended = self.ended or "end of input"
                return
            fps = float(self.fps or 30)
            media_offset += last_time + 1.0 / fps
            if last_pts is not None:
                pts_offset += int(last_pts) + max(1, step)
        self.ended = "stopped"
