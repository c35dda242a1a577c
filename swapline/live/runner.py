"""One live run: a capture thread, the engine and an output pump, until the input ends, a
duration passes, an error, or an interrupt.

:func:`run_live` is what ``swapline live`` does after parsing its options (the benchmark calls
it too). It owns the order of things: start the engine (models loaded), start the capture and
wait for the first frame (its size), open the outputs at that size, pump, and on the way out stop
the capture, the engine and the pump in that order, then finish the outputs (the recording is
renamed into place) or, after an error, abort them (nothing is left).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .engine import LiveEngine, LiveStats
from .inputs import Capture
from .outputs import OutputPump, Recorder, Sink, wait_until

__all__ = ["LiveOutcome", "run_live"]

StatusCallback = Callable[[LiveStats], None]


@dataclass(frozen=True)
class LiveOutcome:
    """How a run ended: ``reason`` is ``"duration"``, ``"input ended"`` (with the input's own
    words in ``detail``); ``stats`` the engine's figures at the end."""

    reason: str
    detail: str
    stats: LiveStats


def run_live(engine: LiveEngine, capture: Capture, sinks: Sequence[Sink], record: Recorder | None = None, *,
             duration: float | None = None, on_status: StatusCallback | None = None, status_every: float = 0.5,
             on_open: Callable[[int, int], None] | None = None, first_timeout: float | None = None) -> LiveOutcome:
    """Run until the input ends or ``duration`` seconds (from the first frame) passed.

    ``on_status`` gets the engine's stats every ``status_every`` seconds; ``on_open(width,
    height)`` is called once the first frame came and the outputs are open.

    Raises:
        InputError: the input could not be opened or read (before its first frame).
        OutputError, ConfigError: an output could not be opened or written.
        SwaplineError: the engine stopped on repeated failures (its error).
        KeyboardInterrupt: after everything stopped and the outputs were finished (the recording
            is kept: a live recording up to the interrupt is complete).
    """
    opened: list[Sink] = []
    pump: OutputPump | None = None
    ok = False
    try:
        engine.start()
        capture.start()
        capture.wait_first(first_timeout)
        for sink in [*sinks, *([record] if record is not None else [])]:
            sink.open(capture.width, capture.height)
            opened.append(sink)
        pump = OutputPump(engine, sinks, record)
        pump.start()
        if on_open is not None:
            on_open(capture.width, capture.height)
        started = time.monotonic()
        next_status = started + status_every
        reason, detail = "input ended", ""
        while True:
            if pump.error is not None:
                raise pump.error
            if engine.error is not None:
                raise _engine_error(engine.error)
            if duration is not None and time.monotonic() - started >= duration:
                reason = "duration"
                break
            if capture.done.is_set():
                if capture.error is not None:
                    raise capture.error
                detail = capture.ended
                # the last frames on their way: wait until the engine worked on them and they went out
                wait_until(lambda: engine.pending == 0, 5.0)
                time.sleep(0.05)  # the output pump's own frame in hand
                break
            if on_status is not None and time.monotonic() >= next_status:
                on_status(engine.stats())
                next_status += status_every
            time.sleep(0.02)
        ok = True
    except KeyboardInterrupt:
        ok = True  # an interrupt ends a live run: what went out and was recorded stands
        raise
    finally:
        capture.stop()
        engine.stop()
        free = pump.stop() if pump is not None else True
        if not free:  # the pump is stuck writing to a stream (a client that stopped reading): leave it
            opened = [sink for sink in opened if sink is record]
        for sink in opened:
            if ok:
                try:
                    sink.close()
                except Exception:
                    ok = False
                    _abort_all(opened)
                    raise
            else:
                sink.abort()
        capture.join(1.0)
    if pump is not None and pump.error is not None:
        raise pump.error
    return LiveOutcome(reason=reason, detail=detail, stats=engine.stats())


def _abort_all(sinks: Sequence[Sink]) -> None:
    for sink in sinks:
        try:
            sink.abort()
        except Exception:  # noqa: BLE001 - already failing for another reason
            pass


def _engine_error(exc: BaseException) -> BaseException:
    from ..errors import SwaplineError

    if isinstance(exc, SwaplineError):
        return exc
    return SwaplineError(f"the live swap failed on every frame: {type(exc).__name__}: {exc}")
