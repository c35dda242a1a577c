"""The local executor: a pool of worker processes on this machine, each with one loaded Session.

The same plan, tasks and descriptors as on a Ray cluster, without Ray: ``swapline batch``
without ``--ray``. Each worker is a spawned process (no fork of a process with threads) that
keeps its :class:`~swapline.distributed.segment.SegmentWorker` (models loaded) for every task
it is given. A worker that dies mid-task (killed, out of memory) is started again, up to
``max_restarts`` times per worker, and its task retried, up to ``max_task_retries`` times per
task: the local counterpart of Ray's ``max_restarts`` / ``max_task_retries``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import signal
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from ..errors import ConfigError, JobCancelled
from ..jobs.events import CancelToken
from .executor import Outcome, OutcomeSink, TaskProgress, TaskQueue, failed, worker_died
from .segment import SegmentTask, SegmentWorker, WorkerSettings

POLL_S = 0.2
STOP_WAIT_S = 10.0


def _serve(conn: Connection, settings: WorkerSettings, cancel: Any) -> None:
    """A worker process: run the tasks that arrive on ``conn`` until ``None`` arrives."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides when workers stop
    worker = SegmentWorker(settings)
    try:
        while True:
            try:
                task = conn.recv()
            except EOFError:
                return
            if task is None:
                return
            try:
                key = task.key

                def progress(frames: int, key: str = key) -> None:
                    conn.send(("progress", key, frames))

                desc = worker.run(task, on_progress=progress, cancel=cancel.is_set)
                conn.send(("done", task.key, desc))
            except BaseException as exc:  # noqa: BLE001 - every error goes back as an outcome
                outcome = failed(task, exc)
                conn.send(("error", task.key, (outcome.error, outcome.error_type, outcome.exit_code)))
    finally:
        worker.close()


@dataclass
class _Slot:
    """One worker process and what it is doing."""

    number: int
    process: Any = None
    conn: Connection | None = None
    task: SegmentTask | None = None
    restarts: int = 0
    dead: bool = False  # restarts used up


@dataclass
class LocalExecutor:
    """A pool of ``workers`` processes on this machine (see the module's docs).

    Attributes:
        workers: processes (each loads the models once).
        settings: what each worker runs with; with ``runtime.intra_op_threads`` 0, each worker
            gets an equal share of this machine's cores.
        max_restarts: times each worker process is started again after dying.
        max_task_retries: times a task is run again after its worker died running it.
    """

    workers: int = 1
    settings: WorkerSettings = field(default_factory=WorkerSettings)
    max_restarts: int = 3
    max_task_retries: int = 3
    name: str = "local"

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ConfigError(f"--workers must be 1 or more (got {self.workers})")
        if self.max_restarts < 0 or self.max_task_retries < 0:
            raise ConfigError("restarts and retries must be 0 or more")
        if self.settings.runtime.intra_op_threads == 0:
            from ..runtime.session import default_threads

            threads = max(1, default_threads() // self.workers)
            runtime = dataclasses.replace(self.settings.runtime, intra_op_threads=threads)
            self.settings = dataclasses.replace(self.settings, runtime=runtime)
        self._ctx = mp.get_context("spawn")
        self._cancel = self._ctx.Event()
        self._slots = [_Slot(i) for i in range(self.workers)]

    # -- the pool ----------------------------------------------------------------------------
    def _start(self, slot: _Slot) -> None:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_serve, args=(child, self.settings, self._cancel),
                                    name=f"swapline-worker-{slot.number}", daemon=True)
        process.start()
        child.close()
        slot.process, slot.conn, slot.task = process, parent, None

    @property
    def worker_count(self) -> int:
        return self.workers

    def _alive(self) -> list[_Slot]:
        return [s for s in self._slots if not s.dead]

    def encoder(self, ext: str) -> str:
        return SegmentWorker(self.settings).encoder(ext)

    def close(self) -> None:
        """Ask every worker to stop; kill those that do not within a few seconds."""
        for slot in self._slots:
            if slot.conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    slot.conn.send(None)
        for slot in self._slots:
            if slot.process is not None:
                slot.process.join(STOP_WAIT_S)
                if slot.process.is_alive():
                    slot.process.kill()
                    slot.process.join()
            if slot.conn is not None:
                slot.conn.close()
            slot.process = slot.conn = slot.task = None

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running -------------------------------------------------------------------------------
    def run(self, queue: TaskQueue, on_outcome: OutcomeSink, on_progress: TaskProgress,
            cancel: CancelToken) -> None:
        """See :meth:`swapline.distributed.executor.Executor.run`."""
        self._cancel.clear()
        for slot in self._alive():
            if slot.process is None or not slot.process.is_alive():
                self._start(slot)
        deaths: dict[str, int] = {}
        cancelling = False
        while True:
            if cancel.cancelled and not cancelling:
                cancelling = True
                self._cancel.set()  # running tasks stop within a frame batch
            if not cancelling:
                for slot in self._alive():
                    if slot.task is None:
                        task = queue.next()
                        if task is None:
                            break
                        slot.task = task
                        assert slot.conn is not None
                        slot.conn.send(task)
            busy = [s for s in self._alive() if s.task is not None]
            if not busy:
                if cancelling:
                    raise JobCancelled("cancelled")
                if not len(queue):
                    return
                if not self._alive():  # every worker used up its restarts: fail what is left
                    while (task := queue.next()) is not None:
                        on_outcome(worker_died(task, deaths.get(task.key, 0), "no worker left"))
                    return
            handles: list[Any] = [s.conn for s in self._alive()] + [s.process.sentinel for s in self._alive()]
            ready = set(wait(handles, timeout=POLL_S))
            for slot in self._alive():
                assert slot.conn is not None
                if slot.conn in ready or slot.process.sentinel in ready:
                    self._drain(slot, queue, on_outcome, on_progress, deaths)

    def _drain(self, slot: _Slot, queue: TaskQueue, on_outcome: OutcomeSink, on_progress: TaskProgress,
               deaths: dict[str, int]) -> None:
        """Read what ``slot``'s worker sent; handle its death."""
        assert slot.conn is not None
        try:
            while slot.conn.poll():
                kind, key, payload = slot.conn.recv()
                task = slot.task
                if task is None or key != task.key:
                    continue
                if kind == "progress":
                    on_progress(key, int(payload))
                elif kind == "done":
                    slot.task = None
                    on_outcome(Outcome(task, descriptor=payload))
                else:
                    slot.task = None
                    error, error_type, code = payload
                    on_outcome(Outcome(task, error=error, error_type=error_type, exit_code=code))
        except (EOFError, OSError):
            pass
        if slot.process.is_alive():
            return
        # the worker died: start it again (if it may) and retry its task (if it may)
        slot.process.join()
        code = slot.process.exitcode
        task, slot.task = slot.task, None
        slot.conn.close()
        slot.process = slot.conn = None
        if slot.restarts < self.max_restarts:
            slot.restarts += 1
            self._start(slot)
        else:
            slot.dead = True
        if task is not None:
            deaths[task.key] = deaths.get(task.key, 0) + 1
            if deaths[task.key] <= self.max_task_retries:
                on_progress(task.key, 0)
                queue.retry(task)
            else:
                on_outcome(worker_died(task, deaths[task.key], f"exit code {code}"))


def default_workers() -> int:
    """One worker per two usable cores (at least one): each worker's stages use several threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // 2)



@dataclass
class InProcessExecutor:
    """Runs the tasks one after another in this process, with one worker: no processes to
    start, so it suits debugging, tests and a machine that runs one job at a time. A crash here
    is the driver's crash (nothing to restart)."""

    settings: WorkerSettings = field(default_factory=WorkerSettings)
    name: str = "in-process"

    def __post_init__(self) -> None:
        self._worker = SegmentWorker(self.settings)

    @property
    def worker_count(self) -> int:
        return 1

    def encoder(self, ext: str) -> str:
        return self._worker.encoder(ext)

    def close(self) -> None:
        self._worker.close()

    def __enter__(self) -> "InProcessExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, queue: TaskQueue, on_outcome: OutcomeSink, on_progress: TaskProgress,
            cancel: CancelToken) -> None:
        """See :meth:`swapline.distributed.executor.Executor.run`."""
        while (task := queue.next()) is not None:
            if cancel.cancelled:
                raise JobCancelled("cancelled")
            def progress(frames: int, key: str = task.key) -> None:
                on_progress(key, frames)

            try:
                desc = self._worker.run(task, on_progress=progress, cancel=lambda: cancel.cancelled)
            except JobCancelled:
                raise
            except Exception as exc:  # noqa: BLE001 - every error becomes the task's outcome
                on_outcome(failed(task, exc))
                continue
            on_outcome(Outcome(task, descriptor=desc))
