"""The Ray executor: a pool of Ray actors, each holding one loaded Session (``pip install "swapline[ray]"``).

Ray Core does the distributed work: it places the actors (``num_gpus`` 1 or a fraction, so two
or more share a GPU; ``num_cpus`` each), restarts an actor whose process died
(``max_restarts``) and runs the call it was in again on the restarted actor
(``max_task_retries``). The driver keeps one queue of segments across all jobs and gives each
actor its next segment as it comes free; a call returns a small descriptor (frame count,
first/last pts, sha256), never frames: the frames go from the shared storage the inputs are on,
through the actor, to a segment file on the same shared storage.

Progress travels through a small board actor (no CPU of its own) that the workers tell how far
they are and that the driver reads; a cancel is posted there too and seen by the workers within
a frame batch.

``address``: ``"local"`` (or None) starts an in-process cluster on this machine (loopback only)
unless Ray is already initialised; anything else is the address of a running cluster
(``ray://host:10001``, ``host:6379`` or ``auto``). Every node needs swapline installed and the
job's files (inputs, work folder, outputs) at the same paths.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any

from ..errors import ConfigError, JobCancelled
from ..jobs.events import CancelToken
from .executor import Outcome, OutcomeSink, TaskProgress, TaskQueue, failed, worker_died
from .segment import SegmentTask, SegmentWorker, WorkerSettings

POLL_S = 0.25
PROGRESS_EVERY_S = 0.5


def ray_available() -> bool:
    """Whether Ray can be imported here."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


class ProgressBoard:
    """A Ray actor body: what each task has written so far, and the cancel flag."""

    def __init__(self) -> None:
        self._done: dict[str, int] = {}
        self._cancelled = False

    def report(self, key: str, frames: int) -> None:
        self._done[key] = frames

    def snapshot(self) -> dict[str, int]:
        out, self._done = self._done, {}
        return out

    def cancel(self, value: bool = True) -> None:
        self._cancelled = value

    def cancelled(self) -> bool:
        return self._cancelled


class SegmentActor:
    """A Ray actor body: one :class:`SegmentWorker` (its Session loaded at start). Its constructor
    takes only the small settings (kept inline by Ray, so a restart can always rebuild it)."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.worker = SegmentWorker(settings)
        self.worker.load()

    def info(self, ext: str = ".mp4") -> dict[str, Any]:
        from ..pipeline.video import peak_rss_mb

        return {"worker": self.worker.identity, "encoder": self.worker.encoder(ext), "peak_rss_mb": peak_rss_mb()}

    def run(self, task: SegmentTask, board: Any) -> Outcome:
        """Run ``task``, telling ``board`` (a :class:`ProgressBoard` actor) how far it is."""
        import ray

        checked = [0.0, False]

        def cancel() -> bool:
            now = time.monotonic()
            if now - checked[0] >= PROGRESS_EVERY_S:
                checked[0] = now
                checked[1] = bool(ray.get(board.cancelled.remote()))
            return bool(checked[1])

        def progress(frames: int) -> None:
            board.report.remote(task.key, frames)

        try:
            return Outcome(task, descriptor=self.worker.run(task, on_progress=progress, cancel=cancel))
        except Exception as exc:  # noqa: BLE001 - every error goes back as an outcome (a crash is Ray's)
            return failed(task, exc)


@dataclasses.dataclass
class RayExecutor:
    """A pool of Ray actors (see the module's docs).

    Attributes:
        address: ``"local"``/None for an in-process cluster, else a cluster's address.
        workers: actors; 0: as many as the cluster's GPUs (``gpus_per_worker`` > 0) or CPUs
            (else) allow.
        gpus_per_worker: GPUs per actor (1, or a fraction such as 0.5 for two per GPU; 0: none;
            None: 1 when the cluster has GPUs, else 0).
        cpus_per_worker: CPUs per actor (its ONNX Runtime threads, unless the runtime sets them).
        max_restarts: times Ray starts an actor again after its process died.
        max_task_retries: times Ray runs a call again on the restarted actor.
        settings: what each worker runs with.
        init: extra ``ray.init`` arguments for an in-process cluster (``num_cpus``,
            ``object_store_memory``, ...).
    """

    address: str | None = "local"
    workers: int = 0
    gpus_per_worker: float | None = None
    cpus_per_worker: float = 1.0
    max_restarts: int = 3
    max_task_retries: int = 3
    settings: WorkerSettings = dataclasses.field(default_factory=WorkerSettings)
    init: dict[str, Any] = dataclasses.field(default_factory=dict)
    name: str = "ray"

    def __post_init__(self) -> None:
        if not ray_available():
            raise ConfigError('Ray is not installed: pip install "swapline[ray]" (or pip install ray)')
        if (self.gpus_per_worker is not None and self.gpus_per_worker < 0) or self.cpus_per_worker <= 0:
            raise ConfigError("--gpus-per-worker must be 0 or more and --cpus-per-worker above 0")
        if self.max_restarts < 0 or self.max_task_retries < 0:
            raise ConfigError("restarts and retries must be 0 or more")
        if self.settings.runtime.intra_op_threads == 0:
            runtime = dataclasses.replace(self.settings.runtime,
                                          intra_op_threads=max(1, math.floor(self.cpus_per_worker)))
            self.settings = dataclasses.replace(self.settings, runtime=runtime)
        self._started_ray = False
        self._actors: list[Any] = []
        self._board: Any = None
        self._connect()

    # -- the pool ----------------------------------------------------------------------------
    def _connect(self) -> None:
        import ray

        if not ray.is_initialized():
            local = self.address in (None, "", "local")
            kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING,
                                      "log_to_driver": False, **self.init}
            if local:
                kwargs.setdefault("_node_ip_address", "127.0.0.1")  # listen on loopback only
            else:
                kwargs["address"] = self.address
            try:
                ray.init(**kwargs)
            except Exception as exc:  # ConnectionError, ValueError, RuntimeError …
                raise ConfigError(f"cannot start or reach the Ray cluster {self.address or 'local'}: {exc}") from exc
            self._started_ray = True
        resources = ray.cluster_resources()
        if self.gpus_per_worker is None:
            self.gpus_per_worker = 1.0 if resources.get("GPU", 0) >= 1 else 0.0
        count = self.workers
        if count <= 0:
            if self.gpus_per_worker > 0:
                count = math.floor(resources.get("GPU", 0) / self.gpus_per_worker + 1e-9)
            else:
                count = math.floor(resources.get("CPU", 1) / self.cpus_per_worker + 1e-9)
            count = max(1, count)
        if self.gpus_per_worker > 0 and resources.get("GPU", 0) < self.gpus_per_worker:
            raise ConfigError(f"the Ray cluster has {resources.get('GPU', 0):g} GPUs; "
                              f"a worker asks for {self.gpus_per_worker:g}")
        board_cls = ray.remote(num_cpus=0)(ProgressBoard)
        actor_cls = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                               max_restarts=self.max_restarts, max_task_retries=self.max_task_retries)(SegmentActor)
        self._board = board_cls.remote()
        self._actors = [actor_cls.remote(self.settings) for _ in range(count)]
        self._alive = [True] * count

    @property
    def worker_count(self) -> int:
        return len(self._actors)

    def info(self, ext: str = ".mp4") -> list[dict[str, Any]]:
        """Each live actor's ``{"worker", "encoder", "peak_rss_mb"}`` (waits for them to start)."""
        import ray

        refs = [a.info.remote(ext) for a, alive in zip(self._actors, self._alive) if alive]
        return list(ray.get(refs))

    def encoder(self, ext: str) -> str:
        import ray

        for actor, alive in zip(self._actors, self._alive):
            if alive:
                return str(ray.get(actor.info.remote(ext))["encoder"])
        return SegmentWorker(self.settings).encoder(ext)

    def close(self) -> None:
        import ray

        for actor in self._actors:
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._actors = []
        if self._started_ray and ray.is_initialized():
            ray.shutdown()
        self._started_ray = False

    def __enter__(self) -> "RayExecutor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running -------------------------------------------------------------------------------
    def run(self, queue: TaskQueue, on_outcome: OutcomeSink, on_progress: TaskProgress,
            cancel: CancelToken) -> None:
        """See :meth:`swapline.distributed.executor.Executor.run`."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        unavailable: Any = getattr(ray.exceptions, "ActorUnavailableError", ())  # () catches nothing
        tries: dict[str, int] = {}

        ray.get(self._board.cancel.remote(False))
        inflight: dict[Any, tuple[int, SegmentTask]] = {}
        busy: set[int] = set()
        cancelling = False
        last_progress = 0.0
        while True:
            if cancel.cancelled and not cancelling:
                cancelling = True
                ray.get(self._board.cancel.remote(True))
            if not cancelling:
                for i, alive in enumerate(self._alive):
                    if alive and i not in busy:
                        task = queue.next()
                        if task is None:
                            break
                        inflight[self._actors[i].run.remote(task, self._board)] = (i, task)
                        busy.add(i)
            if not inflight:
                if cancelling:
                    raise JobCancelled("cancelled")
                if not len(queue):
                    return
                if not any(self._alive):
                    while (task := queue.next()) is not None:
                        on_outcome(worker_died(task, 1 + self.max_task_retries, "no worker left"))
                    return
                continue
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=POLL_S)
            now = time.monotonic()
            if now - last_progress >= PROGRESS_EVERY_S:
                last_progress = now
                for key, frames in ray.get(self._board.snapshot.remote()).items():
                    on_progress(key, frames)
            for ref in ready:
                i, task = inflight.pop(ref)
                busy.discard(i)
                try:
                    outcome = ray.get(ref)
                except unavailable:  # restarting and the call not retried by Ray: the driver retries it
                    tries[task.key] = tries.get(task.key, 0) + 1
                    if tries[task.key] <= self.max_task_retries:
                        on_progress(task.key, 0)
                        queue.retry(task)
                        continue
                    outcome = worker_died(task, tries[task.key], "the worker stayed unavailable")
                except RayActorError as exc:  # died more often than restarts and retries allow
                    self._alive[i] = False
                    outcome = worker_died(task, 1 + self.max_task_retries, type(exc).__name__)
                except RayTaskError as exc:
                    outcome = failed(task, exc.cause if isinstance(exc.cause, BaseException) else exc)
                on_outcome(outcome)
