"""What every executor shares: one queue of tasks across all jobs, outcomes, the interface.

An executor (:class:`~swapline.distributed.local.LocalExecutor`,
:class:`~swapline.distributed.ray_executor.RayExecutor`) takes tasks from a :class:`TaskQueue`
as its workers come free, and reports each task's :class:`Outcome` (a small descriptor or a
one-line error; never frames) and its progress to the driver, on the driver's thread.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from .. import errors as errors_mod
from ..errors import SwaplineError
from ..jobs.events import CancelToken
from .manifest import SegmentDescriptor
from .segment import SegmentTask

EXIT_INTERNAL = 70


@dataclass(frozen=True)
class Outcome:
    """How a task ended: its descriptor, or its error as one line.

    Attributes:
        task: the task.
        descriptor: what the worker wrote (None when it failed).
        error: the one-line message (``""`` when it worked).
        error_type: the error's type name (``"InputError"``; ``"WorkerDied"`` when the worker
            process died more often than retries allow).
        exit_code: the exit code the CLI gives that error.
    """

    task: SegmentTask
    descriptor: SegmentDescriptor | None = None
    error: str = ""
    error_type: str = ""
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        return self.descriptor is not None and not self.error


def failed(task: SegmentTask, exc: BaseException) -> Outcome:
    """The outcome of a task that raised ``exc`` (a typed error keeps its message and code)."""
    if isinstance(exc, SwaplineError):
        return Outcome(task, error=str(exc) or type(exc).__name__, error_type=type(exc).__name__,
                       exit_code=exc.exit_code)
    line = f"internal error in a worker: {type(exc).__name__}: {exc}".splitlines()[0]
    return Outcome(task, error=line, error_type="InternalError", exit_code=EXIT_INTERNAL)


def worker_died(task: SegmentTask, times: int, detail: str = "") -> Outcome:
    """The outcome of a task whose worker died ``times`` times running it."""
    what = f"the worker running {task.key} died {times} time{'s' if times != 1 else ''}"
    return Outcome(task, error=f"{what}{f' ({detail})' if detail else ''}; giving up on this segment",
                   error_type="WorkerDied", exit_code=EXIT_INTERNAL)


def typed_error(error_type: str, message: str, exit_code: int) -> SwaplineError:
    """The :mod:`swapline.errors` error named ``error_type`` (an outcome carries only its name);
    other names (``WorkerDied``, ``InternalError``) give a SwaplineError that keeps the name in
    ``kind`` and the exit code."""
    cls = getattr(errors_mod, error_type, None)
    if isinstance(cls, type) and issubclass(cls, SwaplineError):
        exc = cls(message)
    else:
        exc = SwaplineError(message)
        exc.exit_code = exit_code
    exc.kind = error_type  # type: ignore[attr-defined]
    return exc


class TaskQueue:
    """One queue of tasks across all jobs of a batch, in order; thread-safe.

    The driver drops a failed job's tasks (:meth:`drop_job`); an executor puts a task back at
    the front to retry it (:meth:`retry`).
    """

    def __init__(self, tasks: Iterable[SegmentTask] = ()) -> None:
        self._tasks: deque[SegmentTask] = deque(sorted(tasks, key=lambda t: t.order))
        self._dropped: set[str] = set()
        self._lock = threading.Lock()

    def next(self) -> SegmentTask | None:
        """The next task to run, or None when none is left."""
        with self._lock:
            while self._tasks:
                task = self._tasks.popleft()
                if task.job_key not in self._dropped:
                    return task
            return None

    def retry(self, task: SegmentTask) -> None:
        """Put ``task`` back at the front (its worker died)."""
        with self._lock:
            if task.job_key not in self._dropped:
                self._tasks.appendleft(task)

    def drop_job(self, job_key: str) -> None:
        """Run none of this job's tasks that are still waiting."""
        with self._lock:
            self._dropped.add(job_key)
            self._tasks = deque(t for t in self._tasks if t.job_key != job_key)

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)


OutcomeSink = Callable[[Outcome], None]
TaskProgress = Callable[[str, int], None]
"""``on_progress(task_key, frames_written)``: the frames written so far by the task's current
attempt (a retried task starts from 0 again)."""


class Executor(Protocol):
    """Runs a queue of tasks on its workers (see the module's docs)."""

    name: str

    @property
    def worker_count(self) -> int:
        """Workers (processes or actors) in the pool."""
        ...

    def encoder(self, ext: str) -> str:
        """What the encoder ``auto`` resolves to on the workers, for an ``ext`` output."""
        ...

    def run(self, queue: TaskQueue, on_outcome: OutcomeSink, on_progress: TaskProgress,
            cancel: CancelToken) -> None:
        """Run every task of ``queue``; return when all have an outcome.

        Raises:
            JobCancelled: ``cancel`` was used (running tasks stop within a frame batch; their
                segments are not written).
        """
        ...

    def close(self) -> None:
        """Stop the workers."""
        ...
