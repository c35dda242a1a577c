"""The worker that drains a :class:`~swapline.jobs.store.JobStore`: one job at a time.

A machine holds one GPU job at a time, so a worker claims the oldest queued job, runs it with a
:class:`~swapline.jobs.runner.Runner`, records its events and its end in the store, and only
then claims the next. It runs on its own daemon thread (:meth:`JobWorker.start`, for the server)
or on the caller's thread until the queue is empty (:meth:`JobWorker.run_pending`, for
``swapline jobs run``).

Cancel reaches a running job two ways: :meth:`JobWorker.cancel` in the same process cancels its
token at once, and a cancel asked through the store by another process (``swapline jobs cancel``)
is seen by a watcher that polls the store's flag, and at every event the job reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from ..errors import JobCancelled, SwaplineError
from .events import CancelToken, JobEvent
from .job import Job
from .store import EXIT_CANCELLED, JobRecord, JobStore

EXIT_INTERNAL = 70
log = logging.getLogger(__name__)


class JobRunner(Protocol):
    """What the worker needs of a runner (:class:`swapline.jobs.runner.Runner` is one)."""

    def run(self, job: Job, on_event: Callable[[JobEvent], None] | None = None,
            cancel: CancelToken | None = None) -> Any: ...


FinishHook = Callable[[JobRecord], None]


class JobWorker:
    """Runs the store's queued jobs one at a time.

    Args:
        store: the queue.
        runner: runs one job: ``run(job, on_event, cancel)`` returns a result with ``to_dict()``
            or raises a :class:`~swapline.errors.SwaplineError` (``JobCancelled`` when cancelled).
        poll_s: how often an idle worker looks for new jobs, and a running job's cancel flag is
            read from the store.
        progress_every_s: at most one ``progress`` event per this many seconds is stored (the
            last one skipped is stored before the next other event, so the figures end right);
            other events are always stored.
    """

    def __init__(self, store: JobStore, runner: JobRunner, *, poll_s: float = 0.2,
                 progress_every_s: float = 0.25) -> None:
        self.store = store
        self.runner = runner
        self.poll_s = poll_s
        self.progress_every_s = progress_every_s
        self._lock = threading.Lock()  # guards _current and _thread
        self._run_lock = threading.Lock()  # one job at a time, whichever thread runs it
        self._current: tuple[str, CancelToken] | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by notify(): a job was queued
        self._thread: threading.Thread | None = None
        self._interrupt = False

    # ------------------------------------------------------------------------------ control

    def start(self) -> None:
        """Put back jobs a dead worker left running, then run the queue on a daemon thread
        (no-op when already started)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self.store.requeue_running()
            self._stop.clear()
            self._interrupt = False
            self._thread = threading.Thread(target=self._loop, name="swapline-job-worker", daemon=True)
            self._thread.start()

    def stop(self, wait: bool = True, *, interrupt: bool = False) -> None:
        """Take no more jobs. ``wait``: return once the thread ended (after its current job).
        ``interrupt``: also stop the current job now and put it back in the queue (a server
        shutting down), instead of letting it finish."""
        with self._lock:
            thread = self._thread
            self._interrupt = interrupt
            self._stop.set()
            self._wake.set()
            if interrupt and self._current is not None:
                self._current[1].cancel()
        if wait and thread is not None:
            thread.join()

    def notify(self) -> None:
        """A job was just queued: an idle worker claims it now instead of at its next poll."""
        self._wake.set()

    @property
    def running(self) -> bool:
        """Whether the worker's thread is alive."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def current_job(self) -> str | None:
        """The id of the job running now, or None."""
        current = self._current
        return current[0] if current else None

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: queued → cancelled at once; running here → its token is cancelled now
        (running in another process → flagged, that worker stops it). Raises KeyError for an
        unknown id."""
        record = self.store.request_cancel(job_id)
        with self._lock:
            if self._current is not None and self._current[0] == job_id:
                self._current[1].cancel()
        return record

    # ------------------------------------------------------------------------------ running

    def run_pending(self, on_finish: FinishHook | None = None) -> int:
        """Run queued jobs on this thread until none is left; returns how many ran.
        ``on_finish(record)`` is called with each job's final record."""
        self.store.requeue_running()
        count = 0
        while (record := self.run_next()) is not None:
            count += 1
            if on_finish is not None:
                on_finish(record)
        return count

    def run_next(self) -> JobRecord | None:
        """Claim the oldest queued job and run it to its end; returns its final record, or None
        when the queue is empty. Never raises for the job's own errors (they end it as failed);
        a KeyboardInterrupt puts the job back in the queue and is raised on."""
        with self._run_lock:
            record = self.store.claim_next()
            if record is None:
                return None
            self._run(record)
            return self.store.get(record.id)

    def _loop(self) -> None:
        """The thread: claim → run until stopped; nothing a job or the store does ends it."""
        while not self._stop.is_set():
            try:
                ran = self.run_next()
            except Exception:  # the store itself failed (disk full, locked too long): wait, go on
                log.exception("job worker: store error; trying again")
                ran = None
            if ran is None:
                self._wake.wait(self.poll_s)
                self._wake.clear()

    def _run(self, record: JobRecord) -> None:
        """Run one claimed job and record its end."""
        token = CancelToken()
        with self._lock:
            self._current = (record.id, token)
            if self._interrupt:
                token.cancel()
        recorder = _EventRecorder(self.store, record.id, token, self.progress_every_s,
                                  put_back=lambda: self._interrupt and not self.store.cancel_requested(record.id))
        watcher = _CancelWatcher(self.store, record.id, token, self.poll_s)
        watcher.start()
        try:
            self._finish(record.id, recorder, self._outcome(record, recorder, token))
        except KeyboardInterrupt:
            self._put_back(record.id, "the worker was interrupted; queued again")
            raise
        finally:
            watcher.stop()
            with self._lock:
                self._current = None

    def _outcome(self, record: JobRecord, recorder: "_EventRecorder", token: CancelToken) -> "_Outcome":
        """Call the runner; its return or its error as an outcome."""
        try:
            result = self.runner.run(record.job, on_event=recorder, cancel=token)
        except JobCancelled as exc:
            return _Outcome("cancelled", str(exc) or "cancelled", EXIT_CANCELLED)
        except SwaplineError as exc:
            return _Outcome("failed", str(exc), int(exc.exit_code), error_type=type(exc).__name__)
        except Exception as exc:  # a bug in the runner: the job fails, the worker goes on
            log.exception("job %s: unexpected error", record.id)
            return _Outcome("failed", f"internal error: {type(exc).__name__}: {exc}", EXIT_INTERNAL,
                            error_type=type(exc).__name__)
        return _Outcome("done", "", 0, result=_result_dict(result))

    def _finish(self, job_id: str, recorder: "_EventRecorder", outcome: "_Outcome") -> None:
        """Store the final event (unless the runner sent one) and the job's end. A job the
        worker was told to interrupt (stop(interrupt=True)) goes back to the queue instead."""
        if outcome.state == "cancelled" and self._interrupt and not self.store.cancel_requested(job_id):
            self._put_back(job_id, "the worker was stopped; queued again")
            return
        recorder.flush()
        if recorder.final is None:
            recorder(outcome.event())
        self.store.finish(job_id, outcome.state, error=outcome.message if outcome.state == "failed" else "",
                          exit_code=outcome.exit_code, result=outcome.result)

    def _put_back(self, job_id: str, reason: str) -> None:
        try:
            self.store.release(job_id, reason)
        except (KeyError, ValueError):
            pass


class _Outcome:
    """How a run ended: the state, its one line, exit code, the result dict when done."""

    def __init__(self, state: str, message: str, exit_code: int, *, error_type: str = "",
                 result: dict[str, Any] | None = None) -> None:
        self.state = state
        self.message = " ".join(message.split())
        self.exit_code = exit_code
        self.error_type = error_type
        self.result = result

    def event(self) -> JobEvent:
        """The final event for a runner that did not send one."""
        return JobEvent(self.state, message=self.message, error=self.error_type,  # type: ignore[arg-type]
                        exit_code=self.exit_code)


class _EventRecorder:
    """The runner's ``on_event``: stores events (progress throttled) and reads the cancel flag.
    ``put_back()`` tells that a ``cancelled`` event is the worker being stopped, not the job's
    end: it is not stored."""

    def __init__(self, store: JobStore, job_id: str, token: CancelToken, every_s: float, *,
                 put_back: Callable[[], bool] = lambda: False,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.put_back = put_back
        self.job_id = job_id
        self.token = token
        self.every_s = every_s
        self.clock = clock
        self.final: JobEvent | None = None
        self._last_stored: float | None = None
        self._pending: JobEvent | None = None
        self._lock = threading.Lock()

    def __call__(self, event: JobEvent) -> None:
        with self._lock:
            if self.final is not None:
                return  # nothing after the end
            if event.kind == "progress":
                self._progress(event)
            elif event.kind == "cancelled" and self.put_back():
                self.final = event  # not the end: the job goes back to the queue (stop(interrupt=True))
            else:
                self._flush()
                self.store.add_event(self.job_id, event)
                if event.final:
                    self.final = event
        if not self.token.cancelled and self.store.cancel_requested(self.job_id):
            self.token.cancel()

    def flush(self) -> None:
        """Store the last progress event held back by the throttle."""
        with self._lock:
            self._flush()

    def _progress(self, event: JobEvent) -> None:
        now = self.clock()
        if self._last_stored is not None and now - self._last_stored < self.every_s:
            self._pending = event
            return
        self._pending = None
        self._last_stored = now
        self.store.add_event(self.job_id, event)

    def _flush(self) -> None:
        if self._pending is not None:
            self.store.add_event(self.job_id, self._pending)
            self._pending = None


class _CancelWatcher:
    """Polls the store's cancel flag while a job runs (a cancel from another process reaches a
    runner that reports no events for a while, e.g. while it loads models)."""

    def __init__(self, store: JobStore, job_id: str, token: CancelToken, every_s: float) -> None:
        self._store = store
        self._job_id = job_id
        self._token = token
        self._every_s = max(0.01, every_s)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"swapline-cancel-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._done.wait(self._every_s):
            try:
                if self._store.cancel_requested(self._job_id):
                    self._token.cancel()
                    return
            except Exception:  # a closed or busy store: the job's own events still check
                log.debug("cancel watcher: store not readable", exc_info=True)


def _result_dict(result: Any) -> dict[str, Any] | None:
    """The runner's result as JSON-ready data (``to_dict()`` when it has one)."""
    if result is None:
        return None
    if isinstance(result, dict):
        return result
    to_dict = getattr(result, "to_dict", None)
    return to_dict() if callable(to_dict) else {"summary": str(result)}
