"""The live engine: newest-frame slots around the video job's own stages, one frame at a time.

    capture ─► [newest slot] ─► worker: detect → follow → swap (the video job's stages and
    tracker, called on one frame) ─► [newest slot] ─► output (takes the newest at its own pace,
    reports when a frame really went out)

When the swap is slower than the source, the capture side replaces the frame the worker has not
taken yet, so a frame waits at most one swap before it is worked on or dropped: latency stays
bounded (≈ two swap times) and the dropped frames are counted. Capture → output latency is
measured per frame when the output calls :meth:`LiveEngine.delivered`.

A new source or config is prepared on the caller's thread (its errors are the caller's) and
taken by the worker at the next frame boundary; its stages start afresh (a new tracker), so
``reference`` mode picks its person again from the next frame.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import SwapConfig, VideoConfig
from ..errors import ConfigError
from ..pipeline.follow import FrameWork
from ..pipeline.stages import Stage
from ..pipeline.video import frame_stages
from ..swap.mesh import SourceFace
from .slot import NewestSlot

if TYPE_CHECKING:
    from ..api import Session

__all__ = ["LATENCY_WINDOW", "LiveEngine", "LiveFrame", "LiveStats"]

#: frames whose latency makes the p50 / p95 (a bounded window: the last this many)
LATENCY_WINDOW = 600
#: seconds over which the delivered frame rate is measured
FPS_WINDOW_S = 2.0
#: frames in a row whose swap fails before the engine gives up (a lone failure passes the frame
#: through unchanged)
MAX_FAILURES_IN_A_ROW = 30
#: seconds between two detections while the mesh follows the faces (every 10th frame at 30 fps;
#: the video job detects every 5th). A face the mesh loses is looked for at once, so this only
#: decides how soon a new face is found. Measured on the browser benchmark's 480p clip: 1.2 ms
#: less CPU per frame (1 detection costs ≈ 17 ms), output within 0.04 levels on average of
#: every 5th frame's and no less steady (frame-to-frame change 0.791 against 0.792 levels).
DETECT_EVERY_S = 1 / 3


@dataclass(frozen=True)
class LiveFrame:
    """One frame of a live stream.

    Attributes:
        image: ``(H, W, 3) uint8`` BGR.
        index: capture order, from 0.
        captured: ``time.monotonic()`` when it was captured.
        pts: the input's presentation time stamp, when it has one (in ``time_base`` units).
        time_base: the unit of ``pts``.
    """

    image: np.ndarray
    index: int
    captured: float
    pts: int | None = None
    time_base: Fraction | None = None


@dataclass(frozen=True)
class LiveStats:
    """Where a live run stands.

    Attributes:
        captured: frames submitted by the capture side.
        delivered: frames the output reported as sent.
        dropped: frames replaced before they were worked on, or before the output took them.
        fps: delivered frames per second over the last :data:`FPS_WINDOW_S` seconds.
        latency_p50_ms, latency_p95_ms: capture → output latency over the last
            :data:`LATENCY_WINDOW` delivered frames (0 before any).
        swap_ms: the last frame's time in the worker (detect, follow, swap; with the artificial
            delay).
    """

    captured: int
    delivered: int
    dropped: int
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    swap_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return {"captured": self.captured, "delivered": self.delivered, "dropped": self.dropped,
                "fps": round(self.fps, 2), "latency_p50_ms": round(self.latency_p50_ms, 1),
                "latency_p95_ms": round(self.latency_p95_ms, 1), "swap_ms": round(self.swap_ms, 1)}


class _Chain:
    """The detect, follow and swap stages for one source and config, fed one frame at a time
    (as :meth:`~swapline.pipeline.stages.Pipeline.run_inline` does), with their own tracker."""

    def __init__(self, stages: list[Stage]):
        self.stages = stages
        self.count = 0  # frames this chain has worked on: its detection cadence and its clock

    def run(self, frame: LiveFrame) -> np.ndarray:
        """The swapped ``(H, W, 3) uint8`` BGR image of ``frame``."""
        items: list[Any] = [FrameWork(index=self.count, pts=frame.pts, image=frame.image)]
        self.count += 1
        for stage in self.stages:
            items = list(stage.fn(items))
        work = items[0]
        return work.output if work.output is not None else frame.image


class LiveEngine:
    """Swap a live stream with bounded latency (see the module docstring).

    Args:
        session: loaded models (its analyser and processors are used).
        source: the identity to swap in; None passes frames through unchanged.
        config: swap options (``face_selector_mode`` ``many`` swaps every face, ``reference``
            follows one person by track id, as in video).
        fps: the expected frame rate (the tracker's and smoother's clock).
        swap_delay_s: for tests and benchmarks: every frame's work is padded to at least this
            many seconds (a swap "slowed to" it); the attribute of that name may be changed while
            running.
        detect_every_s: seconds between detections while faces are followed (at least every
            frame; see :data:`DETECT_EVERY_S`).

    Errors: ``start``, ``set_source`` and ``set_config`` raise what preparing the stages raises
    (ConfigError, ModelError). A frame whose swap fails is passed through unchanged and counted
    in :attr:`failures`; :data:`MAX_FAILURES_IN_A_ROW` in a row stop the engine with
    :attr:`error` set (then :meth:`latest` returns None).
    """

    def __init__(self, session: Session, source: SourceFace | None, config: SwapConfig, *,
                 fps: float = 30.0, swap_delay_s: float = 0.0, detect_every_s: float = DETECT_EVERY_S):
        if not fps > 0:
            raise ConfigError(f"the live frame rate must be more than 0 (got {fps})")
        if swap_delay_s < 0:
            raise ConfigError(f"the swap delay must be 0 s or more (got {swap_delay_s})")
        if detect_every_s < 0:
            raise ConfigError(f"the time between detections must be 0 s or more (got {detect_every_s})")
        self._session = session
        self._fps = float(fps)
        self._video = VideoConfig(queue_size=1, detect_interval=min(1000, max(1, round(fps * detect_every_s))))
        self.swap_delay_s = float(swap_delay_s)  # read at every frame: may be changed while running
        self._inbox: NewestSlot[LiveFrame] = NewestSlot()
        self._outbox: NewestSlot[LiveFrame] = NewestSlot()
        self._lock = threading.Lock()
        self._source = source
        self._config = config
        self._chain: _Chain | None = None
        self._next: tuple[_Chain | None] | None = None  # prepared, taken at the next frame boundary
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._sent_at: deque[float] = deque(maxlen=4096)
        self._delivered = 0
        self._first_sent: float | None = None
        self._last_sent: float | None = None
        self._swap_ms = 0.0
        self.processed = 0
        self.failures = 0
        self.error: BaseException | None = None

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Load the models and start the worker thread.

        Raises:
            ConfigError, ModelError: the stages cannot be prepared.
            RuntimeError: already started.
        """
        if self._thread is not None:
            raise RuntimeError("the live engine was already started")
        _ = self._session.analyser  # load the face models here, not at the first frame
        chain = self._prepare(self._source, self._config)
        with self._lock:
            self._chain, self._next = chain, None
        self._thread = threading.Thread(target=self._work, name="swapline-live", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker (it finishes the frame in hand); :meth:`latest` then returns None once
        the last swapped frame was taken. Safe to call more than once."""
        self._stopping.set()
        self._inbox.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30.0)
        self._outbox.close()

    @property
    def pending(self) -> int:
        """Frames on their way: waiting for the worker, in its hands, or swapped and not yet taken."""
        unprocessed = self._inbox.put_count - self._inbox.dropped - self.processed
        return max(0, unprocessed) + len(self._outbox)

    @property
    def running(self) -> bool:
        """Whether the worker is working (started, not stopped, no fatal error)."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopping.is_set()

    # -- capture side -------------------------------------------------------------------------
    def submit(self, frame: LiveFrame) -> None:
        """Hand a captured frame to the worker; an older frame it has not taken is dropped."""
        self._inbox.put(frame)

    # -- output side --------------------------------------------------------------------------
    def latest(self, timeout: float | None = None) -> LiveFrame | None:
        """The newest swapped frame not yet taken (its image replaced; index, captured, pts
        kept), waiting up to ``timeout`` seconds. None on timeout or once stopped."""
        return self._outbox.get(timeout)

    def delivered(self, frame: LiveFrame) -> None:
        """Report that ``frame`` really went out now; its capture → output latency is counted."""
        now = time.monotonic()
        with self._lock:
            self._latencies.append(max(0.0, now - frame.captured))
            self._sent_at.append(now)
            self._delivered += 1
            if self._first_sent is None:
                self._first_sent = now
            self._last_sent = now

    # -- changes while running ----------------------------------------------------------------
    def set_source(self, source: SourceFace | None) -> None:
        """Swap ``source`` in from the next frame (None: pass frames through); no restart.

        Raises:
            ModelError: a neural swapper's source input cannot be made.
        """
        with self._lock:
            config = self._config
        self._offer(source, config)

    def set_config(self, config: SwapConfig) -> None:
        """Use ``config`` from the next frame; no restart.

        Raises:
            ConfigError, ModelError: the models it names cannot be had.
        """
        with self._lock:
            source = self._source
        self._offer(source, config)

    def _offer(self, source: SourceFace | None, config: SwapConfig) -> None:
        chain = self._prepare(source, config)
        with self._lock:
            self._source, self._config = source, config
            if self._thread is None:
                self._chain = chain
            else:
                self._next = (chain,)

    def _prepare(self, source: SourceFace | None, config: SwapConfig) -> _Chain | None:
        """Stages for ``source`` and ``config`` (None without a source: frames pass through)."""
        if source is None:
            return None
        session = self._session
        stages = frame_stages(session.analyser, source, config, self._video, fps=self._fps,
                              processors=session.processors(config, source), live=True)
        return _Chain(stages)

    # -- figures ------------------------------------------------------------------------------
    def stats(self) -> LiveStats:
        """The figures so far (see :class:`LiveStats`)."""
        now = time.monotonic()
        with self._lock:
            latencies = np.array(self._latencies, dtype=np.float64)
            recent = [t for t in self._sent_at if t > now - FPS_WINDOW_S]
            delivered, swap_ms = self._delivered, self._swap_ms
        fps = 0.0
        if len(recent) >= 2 and recent[-1] > recent[0]:
            fps = (len(recent) - 1) / (recent[-1] - recent[0])
        p50 = float(np.percentile(latencies, 50)) * 1000 if latencies.size else 0.0
        p95 = float(np.percentile(latencies, 95)) * 1000 if latencies.size else 0.0
        return LiveStats(captured=self._inbox.put_count, delivered=delivered,
                         dropped=self._inbox.dropped + self._outbox.dropped, fps=fps,
                         latency_p50_ms=p50, latency_p95_ms=p95, swap_ms=swap_ms)

    def mean_fps(self) -> float:
        """Delivered frames per second from the first delivery to the last."""
        with self._lock:
            if self._first_sent is None or self._last_sent is None or self._delivered < 2:
                return 0.0
            span = self._last_sent - self._first_sent
            return (self._delivered - 1) / span if span > 0 else 0.0

    def summary(self) -> str:
        """One line: frames captured / delivered / dropped, fps, latency p50 / p95."""
        s = self.stats()
        line = (f"frames captured {s.captured}, delivered {s.delivered}, dropped {s.dropped}; "
                f"{self.mean_fps():.1f} fps; latency p50 {s.latency_p50_ms:.0f} ms, p95 {s.latency_p95_ms:.0f} ms")
        if self.failures:
            line += f"; {self.failures} frame(s) passed through after a failed swap"
        return line

    # -- the worker ---------------------------------------------------------------------------
    def _work(self) -> None:
        in_a_row = 0
        while True:
            frame = self._inbox.get(timeout=0.2)
            if frame is None:
                if self._inbox.closed:
                    break
                continue
            with self._lock:
                if self._next is not None:
                    (self._chain,), self._next = self._next, None
                chain = self._chain
            t0 = time.perf_counter()
            image = frame.image
            if chain is not None:
                try:
                    image = chain.run(frame)
                    in_a_row = 0
                except Exception as exc:  # noqa: BLE001 - one bad frame passes through; many stop
                    self.failures += 1
                    in_a_row += 1
                    if in_a_row >= MAX_FAILURES_IN_A_ROW:
                        self.error = exc
                        self._stopping.set()
                        self._inbox.close()
                        self._outbox.close()
                        break
            spent = time.perf_counter() - t0
            delay = self.swap_delay_s
            if spent < delay:
                time.sleep(delay - spent)
                spent = time.perf_counter() - t0
            self._swap_ms = spent * 1000
            self.processed += 1
            self._outbox.put(replace(frame, image=image))
