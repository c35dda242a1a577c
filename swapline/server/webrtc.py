"""The aiortc side of a live session: the browser's camera in, the swapped frames out.

Nothing here queues frames. aiortc hands the decoded camera frames to an unbounded queue inside
its remote track; :func:`pump_newest` reads that queue as fast as frames come and, when several
are waiting, skips to the newest before converting it, so the queue never grows. The live
engine's own newest-frame slot then drops whatever the swap is too slow for. The outgoing
:class:`SwappedTrack` asks the engine for its newest swapped frame each time aiortc's sender wants
one (after the previous frame was encoded and sent).

The outgoing frames are converted to I420 once (:func:`video_frame`) and encoded by aiortc's VP8
encoder with cheaper libvpx settings than aiortc's own (:class:`Vp8Options`, installed on the
sender by :func:`use_vp8_options`).

ICE uses host candidates only (no STUN or TURN server: nothing is asked of the outside world). A
server listening on loopback offers loopback candidates only, so the media never touches a
network interface; other servers offer the machine's own addresses.

aiortc is imported here, and this module is imported only when a live session starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.vpx import Vp8Encoder, number_of_threads
from aiortc.mediastreams import MediaStreamError

from ..video.frames import bgr_to_frame

if TYPE_CHECKING:
    from ..live.engine import LiveEngine, LiveFrame

log = logging.getLogger("swapline.server.live")

VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)
PREFERRED_CODEC = "video/VP8"
LATEST_WAIT_S = 0.25  # how long one wait for a swapped frame lasts before the track looks at its state


def new_peer_connection() -> RTCPeerConnection:
    """A peer connection with no STUN or TURN server (host candidates only)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def gather_only(pc: RTCPeerConnection, addresses: Sequence[str]) -> bool:
    """Make ``pc`` offer host candidates on ``addresses`` only (e.g. ``["127.0.0.1"]``).

    aioice leaves loopback addresses out of its host candidates; a loopback-only server needs
    exactly those. Call it after the remote offer is set and before the local answer (gathering
    happens in ``setLocalDescription``). Returns False, leaving aioice's own gathering, where
    aioice's connection does not have the expected shape (another aioice version).
    """
    done = False
    for transceiver in pc.getTransceivers():
        gatherer = transceiver.receiver.transport.transport.iceGatherer
        connection = getattr(gatherer, "_connection", None)
        needed = ("_local_candidates_start", "_local_candidates", "_local_candidates_end", "_components",
                  "get_component_candidates")
        if connection is None or not all(hasattr(connection, name) for name in needed):
            log.warning("aioice has an unexpected shape: its default ICE candidates are used")
            return False
        connection.gather_candidates = _gatherer(connection, list(addresses))
        done = True
    return done


def _gatherer(connection: Any, addresses: list[str]) -> Callable[[], Any]:
    async def gather_candidates() -> None:
        if connection._local_candidates_start:
            return
        connection._local_candidates_start = True
        for component in connection._components:
            connection._local_candidates += await connection.get_component_candidates(
                component=component, addresses=addresses)
        connection._local_candidates_end = True

    return gather_candidates


def prefer_codec(transceiver: RTCRtpTransceiver, mime_type: str = PREFERRED_CODEC) -> None:
    """Negotiate ``mime_type`` first (then its retransmission codec, then the others), so both
    directions use it where the offer has it.

    Set it before the remote offer is applied: aiortc picks the codecs there."""
    codecs = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    first = [c for c in codecs if c.mimeType.lower() == mime_type.lower()]
    rtx = [c for c in codecs if c.mimeType.lower() == f"{transceiver.kind}/rtx"]
    rest = [c for c in codecs if c not in first and c not in rtx]
    if first:
        transceiver.setCodecPreferences(first + rtx + rest)


@dataclass
class TransportCounts:
    """What the transport did (besides the engine's own figures).

    Attributes:
        received: camera frames aiortc decoded.
        skipped: of those, frames passed over because a newer one was already waiting (never
            converted, never given to the engine).
        sent: swapped frames handed to aiortc's encoder.
    """

    received: int = 0
    skipped: int = 0
    sent: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"received": self.received, "skipped": self.skipped, "sent": self.sent}


def _newest_waiting(track: MediaStreamTrack, frame: av.VideoFrame) -> tuple[av.VideoFrame | None, int]:
    """The newest frame already in aiortc's queue of ``track`` (``frame`` when none is waiting),
    and how many were passed over; None when the track ended meanwhile."""
    queue: asyncio.Queue | None = getattr(track, "_queue", None)
    skipped = 0
    while queue is not None and not queue.empty():
        nxt = queue.get_nowait()
        if nxt is None:  # aiortc's end-of-track mark
            return None, skipped
        frame = nxt
        skipped += 1
    return frame, skipped


async def pump_newest(track: MediaStreamTrack, engine: LiveEngine, counts: TransportCounts,
                      frame_type: Callable[..., LiveFrame]) -> None:
    """Read ``track`` until it ends, giving the engine the newest frame each time.

    aiortc's queue behind ``track`` is unbounded; this reads it as fast as frames arrive, and
    when several are waiting only the newest is converted and submitted (the engine's slot drops
    older unswapped frames in turn).
    """
    index = 0
    while True:
        try:
            received = await track.recv()
        except MediaStreamError:
            return
        if not isinstance(received, av.VideoFrame):  # a video track gives video frames
            continue
        frame, skipped = _newest_waiting(track, received)
        counts.received += 1 + skipped
        counts.skipped += skipped
        if frame is None:
            return
        captured = time.monotonic()
        image = frame_image(frame)
        engine.submit(frame_type(image=image, index=index, captured=captured, pts=frame.pts,
                                 time_base=frame.time_base))
        index += 1


def frame_image(frame: av.VideoFrame) -> np.ndarray:
    """A decoded camera frame as the engine's ``(H, W, 3) uint8`` BGR image."""
    return frame.to_ndarray(format="bgr24")


def video_frame(image: np.ndarray) -> av.VideoFrame:
    """A swapped ``(H, W, 3) uint8`` BGR image as the ``yuv420p`` frame the VP8 encoder takes.

    OpenCV's BT.601 conversion (the range and matrix swscale uses, the chroma averaged over each
    2 × 2 block) costs half of PyAV's BGR frame plus the encoder's own ``reformat`` (0.7 against
    1.6 ms at 640 × 480) and keeps the colours closer (BGR → YUV → BGR mean error 1.0 against
    2.0 levels). Odd sizes, which I420 cannot hold, take PyAV's way."""
    return bgr_to_frame(image)


@dataclass(frozen=True)
class Vp8Options:
    """libvpx settings of the outgoing VP8 stream where they differ from aiortc's.

    aiortc (1.x) encodes with ``cpu-used -6`` and libvpx's temporal denoiser on (``noise-
    sensitivity 4``, meant for raw camera noise). The swapped frames come from a camera stream the
    browser has already compressed: measured on the browser benchmark's 480p clip after the swap
    (500 kbit/s and 1.5 Mbit/s, aiortc's bit-rate range), the denoiser costs ≈ 1 ms of CPU a frame
    and 3 to 6 dB of PSNR against the swapped frame (it smears the swap's own detail), and
    ``cpu-used -12`` saves ≈ 0.6 ms more for ≈ 0.5 dB, still well above aiortc's settings
    (4.4 → 2.9 ms and 45.1 → 47.6 dB at 500 kbit/s; 6.1 → 2.8 ms and 46.1 → 51.5 dB at 1.5 Mbit/s;
    ``benchmarks/bench_live_cpu.py --vp8``).

    Attributes:
        cpu_used: libvpx's speed (-16 fastest … 16; negative: fixed speed in real time).
        noise_sensitivity: the temporal denoiser's strength (0: off).
    """

    cpu_used: int = -12
    noise_sensitivity: int = 0


class TunedVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder with :class:`Vp8Options` in place of its own speed and denoiser
    settings; everything else (the bit rate and its control, packetising) is aiortc's.

    It opens libvpx itself, set up as aiortc does but with ``options``; aiortc's ``encode`` then
    finds a codec of the right size and rate and keeps it."""

    def __init__(self, options: Vp8Options | None = None) -> None:
        super().__init__()
        self.options = options or Vp8Options()

    def encode(self, frame: av.VideoFrame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        if self.codec is None or _reopen(self.codec, frame, self.target_bitrate):
            self.codec = _open_vp8(frame, self.target_bitrate, self.options)
        return super().encode(frame, force_keyframe)


def _reopen(codec: Any, frame: av.VideoFrame, bitrate: int) -> bool:
    """aiortc's test for a new codec: another size, or the bit rate moved by more than 10 %."""
    return (frame.width != codec.width or frame.height != codec.height
            or abs(bitrate - codec.bit_rate) / codec.bit_rate > 0.1)


def _open_vp8(frame: av.VideoFrame, bitrate: int, settings: Vp8Options) -> Any:
    """A libvpx encoder set up as aiortc's ``Vp8Encoder`` sets it up, but with ``settings``."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.bit_rate = bitrate
    codec.pix_fmt = "yuv420p"
    codec.gop_size = 3000
    codec.qmin, codec.qmax = 2, 56
    codec.options = {
        "bufsize": str(bitrate), "cpu-used": str(settings.cpu_used), "deadline": "realtime",
        "lag-in-frames": "0", "minrate": str(bitrate), "maxrate": str(bitrate),
        "noise-sensitivity": str(settings.noise_sensitivity), "overshoot-pct": "15", "partitions": "0",
        "static-thresh": "1", "undershoot-pct": "100",
    }
    codec.thread_count = number_of_threads(frame.width * frame.height, os.cpu_count() or 1)
    return codec


def use_vp8_options(transceiver: RTCRtpTransceiver, options: Vp8Options | None = None) -> bool:
    """Make ``transceiver``'s sender encode with a :class:`TunedVp8Encoder` (``options``).

    aiortc has no public way to set its encoder: the sender makes one at its first frame unless
    it has one already. Call it after the remote offer is set (the codec is chosen there) and
    before media flows. Returns False, leaving aiortc's encoder, when the negotiated codec is not
    VP8 or the sender does not have the expected shape (another aiortc version)."""
    codecs = getattr(transceiver, "_codecs", None)
    if not codecs or codecs[0].mimeType.lower() != "video/vp8":
        return False
    sender = transceiver.sender
    slot = "_RTCRtpSender__encoder"
    if getattr(sender, slot, False) is not None:
        log.warning("aiortc's sender has an unexpected shape: its own VP8 settings are used")
        return False
    setattr(sender, slot, TunedVp8Encoder(options))
    return True


class SwappedTrack(MediaStreamTrack):
    """The outgoing video: the engine's newest swapped frame each time aiortc asks.

    A frame is reported delivered (``engine.delivered``) when aiortc asks for the next one,
    that is once it has been encoded and its packets sent. Timestamps follow the frames'
    capture times on a 90 kHz clock, so the browser plays them with the camera's own pacing.
    """

    kind = "video"

    def __init__(self, engine: LiveEngine, counts: TransportCounts, on_end: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._engine = engine
        self._counts = counts
        self._on_end = on_end
        self._start: float | None = None
        self._last_pts = -1
        self._last_index: int | None = None
        self._pending: LiveFrame | None = None

    async def recv(self) -> av.VideoFrame:
        if self._pending is not None:  # aiortc asks again: the previous frame has gone out
            self._engine.delivered(self._pending)
            self._pending = None
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await asyncio.to_thread(self._engine.latest, LATEST_WAIT_S)
            if frame is None and not getattr(self._engine, "running", True):  # stopped, or failed for good
                self.stop()
                if self._on_end is not None:
                    self._on_end()
                raise MediaStreamError
            if frame is not None and frame.index != self._last_index:
                break
        self._last_index = frame.index
        video = video_frame(frame.image)
        if self._start is None:
            self._start = frame.captured
        pts = max(round((frame.captured - self._start) * VIDEO_CLOCK), self._last_pts + 1)
        self._last_pts = pts
        video.pts = pts
        video.time_base = VIDEO_TIME_BASE
        self._pending = frame
        self._counts.sent += 1
        return video
