"""The aiortc side of a live session: the browser's camera in, the swapped frames out.

Nothing here queues frames. aiortc hands the decoded camera frames to an unbounded queue inside
its remote track; :func:`pump_newest` reads that queue as fast as frames come and, when several
are waiting, skips to the newest before converting it, so the queue never grows. The live
engine's own newest-frame slot then drops whatever the swap is too slow for. The outgoing
:class:`SwappedTrack` asks the engine for its newest swapped frame each time aiortc's sender wants
one (after the previous frame was encoded and sent).

ICE uses host candidates only (no STUN or TURN server: nothing is asked of the outside world). A
server listening on loopback offers loopback candidates only, so the media never touches a
network interface; other servers offer the machine's own addresses.

aiortc is imported here, and this module is imported only when a live session starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.mediastreams import MediaStreamError

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
        image = frame.to_ndarray(format="bgr24")
        engine.submit(frame_type(image=image, index=index, captured=captured, pts=frame.pts,
                                 time_base=frame.time_base))
        index += 1


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
        video = av.VideoFrame.from_ndarray(frame.image, format="bgr24")
        if self._start is None:
            self._start = frame.captured
        pts = max(round((frame.captured - self._start) * VIDEO_CLOCK), self._last_pts + 1)
        self._last_pts = pts
        video.pts = pts
        video.time_base = VIDEO_TIME_BASE
        self._pending = frame
        self._counts.sent += 1
        return video
