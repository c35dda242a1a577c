"""The cluster as a job-core runner: the server's queue (or any front end) hands it one job."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from ..formats import IMAGE_EXTENSIONS
from ..jobs.events import CancelToken, JobEvent
from ..jobs.job import Job
from ..jobs.runner import JobResult
from .batch import BatchDriver, BatchOptions
from .executor import Executor, typed_error


class ClusterRunner:
    """A job-core runner that hands each job to an executor: ``run(job, on_event, cancel)`` like
    :class:`~swapline.jobs.runner.Runner`, so :class:`~swapline.jobs.worker.JobWorker` (the
    server's queue) can run its jobs on a cluster. One job at a time.

    Raises (from :meth:`run`): the job's typed :class:`~swapline.errors.SwaplineError`
    (``failed`` reported first), :class:`~swapline.errors.JobCancelled` when cancelled.
    """

    def __init__(self, executor: Executor, options: BatchOptions | None = None) -> None:
        self.executor = executor
        self.options = options or BatchOptions()

    def close(self) -> None:
        self.executor.close()

    def __enter__(self) -> "ClusterRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, job: Job, on_event: Callable[[JobEvent], None] | None = None,
            cancel: CancelToken | None = None) -> JobResult:
        sink = (lambda _n, event: on_event(event)) if on_event is not None else None
        report = BatchDriver(self.executor, self.options, on_event=sink).run([job], cancel)
        summary = report.jobs[0]
        if summary.state in ("failed", "cancelled"):
            raise typed_error(summary.error_type, summary.error, summary.exit_code)
        kind_name: Literal["image", "video"] = "image" if job.output.suffix.lower() in IMAGE_EXTENSIONS else "video"
        text = (f"{summary.frames} frames, {summary.swapped} face(s) swapped, {summary.fps:.1f} fps "
                f"on {report.workers} {report.executor} worker(s) → {job.output}")
        return JobResult(kind=kind_name, output=job.output, faces=summary.swapped, swapped=summary.swapped,
                         frames=summary.frames, seconds=summary.seconds or report.seconds,
                         copied_through=summary.copied_through, summary=text, warnings=summary.warnings)
