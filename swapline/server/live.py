"""Live sessions of the ``/live`` page: a browser camera in over WebRTC, swapped frames back.

One :class:`LiveManager` per app (``app.state.live``) holds the open sessions, at most
:attr:`LiveSettings.max_sessions` at once. A session is one aiortc peer connection and one
:class:`~swapline.live.engine.LiveEngine`: the camera track feeds the engine's newest-frame
slot and the engine's newest swapped frame goes back (see :mod:`.webrtc`). All sessions share one
runner (models loaded once, made on first use from the server's runner factory); sources are
prepared from uploads with it (``Runner.source``, cached).

A session ends when the browser asks (``DELETE /live/{id}``), when its peer connection fails or
closes, when the camera track ends, and at server shutdown.

aiortc and the engine are imported when the first session starts, so a server that never goes
live neither needs nor loads them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from ..config import RuntimeConfig, SwapConfig, VideoConfig
from ..errors import ConfigError
from ..jobs.job import options_from_dict, options_to_dict
from .errors import InvalidRequestError, NotFoundError, UnsupportedMediaError
from .settings import is_loopback

if TYPE_CHECKING:
    from aiortc import RTCPeerConnection

    from ..live.engine import LiveEngine
    from ..swap.mesh import SourceFace
    from .state import ServerState
    from .webrtc import SwappedTrack, TransportCounts

log = logging.getLogger("swapline.server.live")

DEFAULT_MAX_SESSIONS = 2
TEST_HOOKS_ENV = "SWAPLINE_TEST_HOOKS"
MAX_SESSIONS_ENV = "SWAPLINE_LIVE_MAX_SESSIONS"
SWAP_DELAY_HOOK = "_swap_delay_s"
_SWAP_FIELDS = frozenset(f.name for f in dataclasses.fields(SwapConfig))

EngineFactory = Callable[..., "LiveEngine"]


class TooManySessionsError(Exception):
    """Every live slot is taken (HTTP 429)."""


@dataclass(frozen=True)
class LiveSettings:
    """How the live page's sessions run.

    Attributes:
        max_sessions: live sessions open at once (429 beyond).
        fps: the frame rate the engine expects from a browser camera.
        test_hooks: accept options meant for tests (``_swap_delay_s``: a swap slowed by that
            many seconds); off unless ``SWAPLINE_TEST_HOOKS=1``.
        engine_factory: makes the engine, called as ``LiveEngine`` is (default: the real one).
        onnx_threads: ONNX Runtime intra-op threads of the live runner's models where the
            server's runtime leaves them to the default (``intra_op_threads`` 0); 0: that default.
        opencv_threads: OpenCV's threads while a live session is open (0: leave OpenCV's own
            setting). OpenCV's setting is the whole process's: jobs running meanwhile get it too,
            and it is put back when the last live session closes.

    A live frame is one small image through small models, on cores the codecs and often the
    browser share. Measured on 2 cores (the live engine's stages on the browser benchmark's
    clip, the four settings in interleaved runs), a second ONNX Runtime thread cost 2.4 ms of
    CPU per frame and a second OpenCV thread 2.7 ms (together 23.1 → 27.5 ms) to save 3.4 ms of
    wall time: one each lets more frames through (``benchmarks/bench_live_cpu.py`` compares the
    tuned live path with the untuned one).
    """

    max_sessions: int = DEFAULT_MAX_SESSIONS
    fps: float = 30.0
    test_hooks: bool = False
    engine_factory: EngineFactory | None = None
    onnx_threads: int = 1
    opencv_threads: int = 1

    def __post_init__(self) -> None:
        if self.max_sessions < 1:
            raise ConfigError(f"live sessions at once must be 1 or more (got {self.max_sessions})")
        if self.onnx_threads < 0 or self.opencv_threads < 0:
            raise ConfigError("live thread counts must be 0 (the default) or more")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> LiveSettings:
        """Settings from ``SWAPLINE_LIVE_MAX_SESSIONS`` and ``SWAPLINE_TEST_HOOKS``."""
        env = os.environ if environ is None else environ
        raw = env.get(MAX_SESSIONS_ENV, "").strip()
        try:
            most = int(raw) if raw else DEFAULT_MAX_SESSIONS
        except ValueError:
            raise ConfigError(f"{MAX_SESSIONS_ENV} must be a whole number (got {raw!r})") from None
        return cls(max_sessions=most, test_hooks=env.get(TEST_HOOKS_ENV, "") == "1")


@dataclass(frozen=True)
class LiveOptions:
    """A live session's options: the swap's config and, with test hooks on, a slowed swap (None:
    not given)."""

    config: SwapConfig
    swap_delay_s: float | None = None


def parse_live_options(options: dict[str, Any] | None, *, test_hooks: bool) -> LiveOptions:
    """``{"face_selector_mode": "many", "relight": 0.5}`` → :class:`LiveOptions`.

    Raises:
        ConfigError: an unknown option (a video job's option is not a live one), a bad value.
    """
    options = dict(options or {})
    delay = None
    if SWAP_DELAY_HOOK in options and test_hooks:
        value = options.pop(SWAP_DELAY_HOOK)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 5.0:
            raise ConfigError(f"{SWAP_DELAY_HOOK} must be between 0 and 5 seconds (got {value!r})")
        delay = float(value)
    for name in options:
        if name not in _SWAP_FIELDS:
            raise ConfigError(f"unknown live option {name!r}")
    config, _ = options_from_dict(options)
    return LiveOptions(config, delay)


@dataclass
class LiveSession:
    """One open live session."""

    id: str
    pc: RTCPeerConnection
    engine: LiveEngine
    output: SwappedTrack
    counts: TransportCounts
    options: LiveOptions
    source_upload: str | None
    created: float = field(default_factory=time.monotonic)
    pump: asyncio.Task[None] | None = None
    closed: bool = False

    def info(self) -> dict[str, Any]:
        """What the API shows about the session."""
        error = getattr(self.engine, "error", None)
        return {"id": self.id, "connection": self.pc.connectionState, "source": self.source_upload,
                "options": options_to_dict(self.options.config, VideoConfig()),
                "age_s": round(time.monotonic() - self.created, 3), "transport": self.counts.to_dict(),
                "error": f"{type(error).__name__}: {error}" if error is not None else None}


class LiveManager:
    """The app's live sessions (``app.state.live``).

    Args:
        settings: limits and hooks.
        server: the app's state (uploads, runtime settings, bind address).
        runner_factory: makes the shared live runner on first use (the server's factory).
    """

    def __init__(self, settings: LiveSettings, server: ServerState,
                 runner_factory: Callable[[RuntimeConfig], object]) -> None:
        self.settings = settings
        self._server = server
        self._runner_factory = runner_factory
        self._runner: Any = None
        self._runner_lock = threading.Lock()  # the runner's source cache is not thread-safe
        self._sessions: dict[str, LiveSession] = {}
        self._opening = 0
        self._closing = False
        self._tasks: set[asyncio.Task[bool]] = set()  # closes in progress (kept referenced)
        self._opencv_before: int | None = None  # OpenCV's threads before the first session opened

    # -- the runner and sources ---------------------------------------------------------------
    def _live_runner(self) -> Any:
        if self._runner is None:
            self._runner = self._runner_factory(live_runtime(self._server.settings.runtime, self.settings))
        return self._runner

    def _source_path(self, upload_id: str) -> Path:
        try:
            media = self._server.uploads.get(upload_id).media
        except NotFoundError:
            raise InvalidRequestError(f"source: no upload {upload_id!r} (POST the photo to /uploads first)") from None
        if media.kind != "image":
            raise UnsupportedMediaError(f"source {media.name!r} is a {media.kind}; a source must be a photo")
        return media.path

    def _prepare(self, upload_id: str | None, config: SwapConfig) -> tuple[Any, SourceFace | None]:
        """The runner's session and the prepared source (None: no source, frames pass through).

        Raises:
            NoFaceError: no face in the photo. InvalidRequestError, UnsupportedMediaError: a bad
            upload id. ModelError: models cannot be had.
        """
        path = self._source_path(upload_id) if upload_id else None
        with self._runner_lock:
            runner = self._live_runner()
            source = runner.source([path], config) if path is not None else None
            return runner.session, source

    # -- sessions -----------------------------------------------------------------------------
    def get(self, session_id: str) -> LiveSession:
        """The open session ``session_id``.

        Raises:
            NotFoundError: no such session (or it has ended).
        """
        session = self._sessions.get(session_id)
        if session is None or session.closed:
            raise NotFoundError(f"no live session {session_id!r} (it may have ended)")
        return session

    def __len__(self) -> int:
        return len(self._sessions)

    async def open(self, sdp: str, kind: str, source: str | None, options: dict[str, Any] | None) -> tuple[LiveSession, str, str]:
        """Answer a browser's offer: start an engine and a peer connection.

        Returns the session, and the answer's SDP and type.

        Raises:
            TooManySessionsError: every slot is taken. ConfigError: bad options. InputError and
            server errors: a bad source upload (see :meth:`_prepare`); a bad offer (422).
        """
        if self._closing:
            raise TooManySessionsError("the server is stopping")
        if len(self._sessions) + self._opening >= self.settings.max_sessions:
            raise TooManySessionsError(f"{self.settings.max_sessions} live session(s) are open already; "
                                       "stop one first")
        self._opening += 1
        try:
            parsed = parse_live_options(options, test_hooks=self.settings.test_hooks)
            swap_session, prepared = await run_in_threadpool(self._prepare, source, parsed.config)
            return await self._connect(sdp, kind, source, parsed, swap_session, prepared)
        finally:
            self._opening -= 1

    async def _connect(self, sdp: str, kind: str, source: str | None, options: LiveOptions, swap_session: Any,
                       prepared: SourceFace | None) -> tuple[LiveSession, str, str]:
        from aiortc import RTCSessionDescription
        from aiortc.exceptions import InvalidAccessError, OperationError

        from ..live.engine import LiveEngine, LiveFrame
        from . import webrtc

        factory = self.settings.engine_factory or LiveEngine
        engine = factory(swap_session, prepared, options.config, fps=self.settings.fps,
                         swap_delay_s=options.swap_delay_s or 0.0)
        counts = webrtc.TransportCounts()
        pc = webrtc.new_peer_connection()
        session_id = secrets.token_hex(8)
        output = webrtc.SwappedTrack(engine, counts, on_end=lambda: self._close_soon(session_id))
        session = LiveSession(id=session_id, pc=pc, engine=engine, output=output, counts=counts,
                              options=options, source_upload=source)

        @pc.on("track")
        def on_track(track: Any) -> None:
            if track.kind == "video" and session.pump is None:
                session.pump = asyncio.create_task(self._pump(session, track, LiveFrame))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(session.id)

        try:
            # made before the offer is read, so the offer's video takes it (and its codec choice)
            transceiver = pc.addTransceiver(output, direction="sendrecv")
            webrtc.prefer_codec(transceiver)
            try:
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type=kind))
            except (ValueError, TypeError, InvalidAccessError, OperationError) as exc:  # SDP aiortc cannot use
                raise InvalidRequestError(f"the offer cannot be used: {exc or type(exc).__name__}") from None
            if transceiver.mid is None:
                raise InvalidRequestError("the offer has no video: give the camera track")
            webrtc.use_vp8_options(transceiver)  # a cheaper encoder setting (see Vp8Options)
            if is_loopback(self._server.settings.host):
                webrtc.gather_only(pc, ["::1"] if ":" in self._server.settings.host else ["127.0.0.1"])
            await run_in_threadpool(engine.start)
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except BaseException:
            session.closed = True
            output.stop()
            if session.pump is not None:
                session.pump.cancel()
            await pc.close()
            await run_in_threadpool(engine.stop)
            raise
        self._sessions[session.id] = session
        self._use_opencv_threads()
        log.info("live session %s opened (source %s)", session.id, source or "none")
        return session, pc.localDescription.sdp, pc.localDescription.type

    async def _pump(self, session: LiveSession, track: Any, frame_type: Any) -> None:
        from . import webrtc

        try:
            await webrtc.pump_newest(track, session.engine, session.counts, frame_type)
        except Exception:  # noqa: BLE001 - a broken pump ends its session, not the server
            log.exception("live session %s: reading the camera failed", session.id)
        if not session.closed:  # the camera track ended: the session is over
            self._close_soon(session.id)

    def _close_soon(self, session_id: str) -> None:
        """Close a session from one of its own tasks (the close runs as a task of its own)."""
        session = self._sessions.get(session_id)
        if session is not None and not session.closed:
            task = asyncio.get_running_loop().create_task(self.close(session_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def set_source(self, session_id: str, upload_id: str | None) -> LiveSession:
        """Swap another source in (None: frames pass through) without a restart."""
        session = self.get(session_id)

        def apply() -> None:  # preparing stages may load models: off the event loop
            _, prepared = self._prepare(upload_id, session.options.config)
            session.engine.set_source(prepared)

        await run_in_threadpool(apply)
        session.source_upload = upload_id
        return session

    async def set_options(self, session_id: str, options: dict[str, Any] | None) -> LiveSession:
        """New options from now on (the whole set: options not given take their defaults).

        The source is prepared again where the new options shape it differently (cached)."""
        session = self.get(session_id)
        parsed = parse_live_options(options, test_hooks=self.settings.test_hooks)
        if parsed.swap_delay_s is not None and parsed.swap_delay_s != (session.options.swap_delay_s or 0.0):
            _set_swap_delay(session.engine, parsed.swap_delay_s)
        else:
            parsed = dataclasses.replace(parsed, swap_delay_s=session.options.swap_delay_s)

        def apply() -> None:  # preparing stages may load models: off the event loop
            _, prepared = self._prepare(session.source_upload, parsed.config)
            session.engine.set_config(parsed.config)
            session.engine.set_source(prepared)

        await run_in_threadpool(apply)
        session.options = parsed
        return session

    async def close(self, session_id: str) -> bool:
        """End a session: its tracks, its peer connection and its engine. False when it was not open."""
        session = self._sessions.pop(session_id, None)
        if session is None or session.closed:
            return False
        session.closed = True
        session.output.stop()
        if session.pump is not None and session.pump is not asyncio.current_task():
            session.pump.cancel()
        try:
            await session.pc.close()
        finally:
            await run_in_threadpool(session.engine.stop)
            if not self._sessions:
                self._restore_opencv_threads()
        log.info("live session %s closed: %s", session_id, _summary(session.engine))
        return True

    def _use_opencv_threads(self) -> None:
        """OpenCV's thread count for live (:attr:`LiveSettings.opencv_threads`), the old one kept."""
        if self.settings.opencv_threads and self._opencv_before is None:
            import cv2

            self._opencv_before = cv2.getNumThreads()
            cv2.setNumThreads(self.settings.opencv_threads)

    def _restore_opencv_threads(self) -> None:
        """Put OpenCV's thread count back (the last live session has closed)."""
        if self._opencv_before is not None:
            import cv2

            cv2.setNumThreads(self._opencv_before)
            self._opencv_before = None

    async def close_all(self) -> None:
        """Server shutdown: end every session and release the live runner."""
        self._closing = True
        for session_id in list(self._sessions):
            try:
                await self.close(session_id)
            except Exception:  # noqa: BLE001 - the others still close
                log.exception("live session %s did not close cleanly", session_id)
        if self._runner is not None:
            close = getattr(self._runner, "close", None)
            if callable(close):
                await run_in_threadpool(close)
            self._runner = None


def live_runtime(runtime: RuntimeConfig, settings: LiveSettings) -> RuntimeConfig:
    """The live runner's runtime: the server's, with :attr:`LiveSettings.onnx_threads` where the
    server leaves the thread count to the default."""
    if runtime.intra_op_threads or not settings.onnx_threads:
        return runtime
    return dataclasses.replace(runtime, intra_op_threads=settings.onnx_threads)


def _set_swap_delay(engine: Any, delay: float) -> None:
    """The test hook: slow the running engine's swap (where the engine lets it be changed)."""
    setter = getattr(engine, "set_swap_delay", None)
    if callable(setter):
        setter(delay)
    elif hasattr(engine, "swap_delay_s"):
        engine.swap_delay_s = delay
    else:
        raise ConfigError(f"{SWAP_DELAY_HOOK} cannot be changed while this engine runs; give it when starting")


def _summary(engine: Any) -> str:
    try:
        return str(engine.summary())
    except Exception:  # noqa: BLE001 - a summary is informative only
        return "no summary"
