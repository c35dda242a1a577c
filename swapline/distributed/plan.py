"""Cut a video into segments at its keyframes, from a demux-only scan (no frame is decoded).

A segment is the frames with pts in ``[start, end)``, where ``start`` is the pts of a keyframe
(and ``end`` the next segment's start). It is never cut mid-GOP, so it decodes from its own
keyframe; it is decoded from an earlier keyframe (its *pre-roll*) when

* the tracker and smoothers should be warm at its first frame (``warmup_seconds`` of frames
  before ``start`` go through the stages without being written), or
* its keyframe opens an *open* GOP: pictures after it in decode order are shown before it (their
  pts are below ``start``: they belong to the previous segment, which decodes on past its end
  to get them) and refer to the GOP before, so the decoder starts at the keyframe before.

A keyframe is a valid cut only when no packet before it in decode order is shown at or after
it (true of every ordinary encoder's output); the plan checks, and cuts elsewhere otherwise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..video.reader import FrameSpan

DEFAULT_SEGMENT_SECONDS = 20.0
DEFAULT_WARMUP_SECONDS = 1.0


@dataclass(frozen=True)
class VideoScan:
    """What a demux-only pass over a video's first video stream found.

    Attributes:
        pts: ``(N,) int64`` the frames' pts in display order (sorted), ``time_base`` units.
        keyframes: ``(K,) int64`` pts of the keyframes, in decode order.
        open_gop: ``(K,) bool`` whether each keyframe has leading pictures (shown before it,
            decoded after it: an open GOP).
        cut_ok: ``(K,) bool`` whether each keyframe is a valid cut (no packet before it in
            decode order is shown at or after it).
        time_base: the stream's time base. fps: its average frame rate.
    """

    pts: np.ndarray
    keyframes: np.ndarray
    open_gop: np.ndarray
    cut_ok: np.ndarray
    time_base: Fraction
    fps: Fraction

    @property
    def frames(self) -> int:
        return int(self.pts.shape[0])

    def seconds(self, pts: int) -> float:
        """Seconds from the first frame to ``pts``."""
        return float((int(pts) - int(self.pts[0])) * self.time_base) if self.frames else 0.0


def scan_video(path: Path) -> VideoScan:
    """Demux (never decode) ``path``'s first video stream: every packet's pts and keyframe flag.

    Raises:
        InputError: not a readable video, no video packets, or packets without timestamps
            (such a video cannot be split; it is swapped whole).
    """
    import av

    from ..video.reader import probe

    info = probe(path)  # the reader's checks and messages for files that are not videos
    pts: list[int] = []
    keys: list[int] = []
    opens: list[bool] = []
    cut_ok: list[bool] = []
    shown_max: int | None = None  # the largest pts of the packets so far (decode order)
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                if packet.pts is None:
                    raise InputError(f"cannot split {path}: its video packets carry no timestamps")
                p = int(packet.pts)
                if opens and p < keys[-1]:
                    opens[-1] = True  # a leading picture of the last keyframe
                if packet.is_keyframe:
                    keys.append(p)
                    opens.append(False)
                    cut_ok.append(shown_max is None or shown_max < p)
                pts.append(p)
                shown_max = p if shown_max is None else max(shown_max, p)
    except av.error.FFmpegError as exc:
        raise InputError(f"cannot scan {path}: {exc.strerror or exc}") from exc
    if not pts:
        raise InputError(f"{path} has no video packets")
    return VideoScan(pts=np.unique(np.asarray(pts, np.int64)), keyframes=np.asarray(keys, np.int64),
                     open_gop=np.asarray(opens, bool), cut_ok=np.asarray(cut_ok, bool),
                     time_base=info.time_base, fps=info.fps)


@dataclass(frozen=True)
class Segment:
    """One segment of a planned video (pts in the stream's time base).

    Attributes:
        index: position in the video, from 0.
        start: pts of its first frame (a keyframe's, except the first segment: the first frame's).
        end: pts where the next segment starts (None: to the end).
        decode_from: pts of the keyframe decoding starts at (None: the first packet).
        warmup_from: pts of the first pre-roll frame (None: no pre-roll).
        first_index: frame number (display order, whole video) of the first frame decoded and
            used (pre-roll included).
        start_index: frame number of its first own frame.
        frames: its own frames (pre-roll not counted).
        last_pts: pts of its last frame.
    """

    index: int
    start: int
    end: int | None
    decode_from: int | None
    warmup_from: int | None
    first_index: int
    start_index: int
    frames: int
    last_pts: int

    @property
    def preroll_frames(self) -> int:
        """Frames decoded and run through the stages before ``start`` (not written)."""
        return self.start_index - self.first_index

    def span(self) -> FrameSpan:
        """The reader's view of this segment."""
        return FrameSpan(start=self.start, end=self.end, decode_from=self.decode_from,
                         warmup_from=self.warmup_from, first_index=self.first_index, frames=self.frames)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Segment":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class VideoPlan:
    """A video cut into segments.

    Attributes:
        segments: in order; together they hold every frame once.
        frames: frames of the video (by the scan).
        time_base: the stream's, as ``"num/den"``.
        fps: average frame rate.
        keyframes: keyframes found. open_gops: how many of them open an open GOP.
        seconds: the video's length (first to last frame).
    """

    segments: tuple[Segment, ...]
    frames: int
    time_base: str
    fps: float
    keyframes: int
    open_gops: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"segments": [s.to_dict() for s in self.segments], "frames": self.frames,
                "time_base": self.time_base, "fps": self.fps, "keyframes": self.keyframes,
                "open_gops": self.open_gops, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VideoPlan":
        return cls(segments=tuple(Segment.from_dict(s) for s in data["segments"]), frames=int(data["frames"]),
                   time_base=str(data["time_base"]), fps=float(data["fps"]), keyframes=int(data["keyframes"]),
                   open_gops=int(data["open_gops"]), seconds=float(data["seconds"]))


def plan_segments(scan: VideoScan, *, segment_seconds: float = DEFAULT_SEGMENT_SECONDS,
                  warmup_seconds: float = DEFAULT_WARMUP_SECONDS) -> VideoPlan:
    """Cut the scanned video into segments of about ``segment_seconds`` (at least that long,
    except the whole video; a last piece shorter than half of it joins the segment before),
    each with ``warmup_seconds`` of pre-roll (see the module's docs).

    Raises:
        ConfigError: ``segment_seconds`` not above 0, or ``warmup_seconds`` below 0.
    """
    if not segment_seconds > 0:
        raise ConfigError(f"segment length must be above 0 seconds (got {segment_seconds})")
    if not warmup_seconds >= 0:
        raise ConfigError(f"pre-roll must be 0 seconds or more (got {warmup_seconds})")
    pts = scan.pts
    first = int(pts[0])
    # valid cuts: keyframes past the first frame, in display order
    cuts = sorted({int(k) for k, ok in zip(scan.keyframes, scan.cut_ok) if ok and int(k) > first})
    starts = [first]
    for k in cuts:
        if scan.seconds(k) - scan.seconds(starts[-1]) >= segment_seconds:
            starts.append(k)
    if len(starts) > 1 and scan.seconds(int(pts[-1])) - scan.seconds(starts[-1]) < segment_seconds / 2:
        starts.pop()  # a short tail joins the segment before
    decodable = sorted({int(k) for k, ok in zip(scan.keyframes, scan.cut_ok) if ok})
    open_keys = {int(k) for k, o in zip(scan.keyframes, scan.open_gop) if o}
    warm = max(0, round(warmup_seconds * float(scan.fps)))
    segments = []
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else None
        start_index = int(np.searchsorted(pts, start))
        stop_index = int(np.searchsorted(pts, end)) if end is not None else len(pts)
        if i == 0:
            decode_from = warmup_from = None
            first_index = start_index
        else:
            first_index = max(0, start_index - warm)
            warmup_from = int(pts[first_index]) if first_index < start_index else None
            earliest = warmup_from if warmup_from is not None else start
            decode_from = _keyframe_at_or_before(decodable, earliest)
            if start in open_keys and decode_from == start:
                decode_from = _keyframe_at_or_before(decodable, start - 1)
        segments.append(Segment(index=i, start=start, end=end, decode_from=decode_from, warmup_from=warmup_from,
                                first_index=first_index, start_index=start_index, frames=stop_index - start_index,
                                last_pts=int(pts[stop_index - 1])))
    tb = scan.time_base
    return VideoPlan(segments=tuple(segments), frames=scan.frames, time_base=f"{tb.numerator}/{tb.denominator}",
                     fps=float(scan.fps), keyframes=int(scan.keyframes.shape[0]), open_gops=len(open_keys),
                     seconds=scan.seconds(int(pts[-1])))


def _keyframe_at_or_before(keys: list[int], pts: int) -> int | None:
    """The last of the sorted ``keys`` at or before ``pts`` (None: decode from the first packet)."""
    i = int(np.searchsorted(np.asarray(keys, np.int64), pts, side="right")) - 1
    return keys[i] if i >= 0 else None
