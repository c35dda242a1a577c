"""The batch driver: plan every job, run all segments on one executor, validate, join once per job.

    >>> from swapline.distributed import BatchDriver, LocalExecutor
    >>> with LocalExecutor(workers=2) as pool:
    ...     report = BatchDriver(pool).run(jobs)      # jobs: swapline.jobs.Job objects
    >>> report.write("report.json")

For each job the driver (on one machine; the workers may be anywhere):

1. finds its work folder by its key (:mod:`~swapline.distributed.manifest`); a job whose recorded
   result still matches its output is done already and is left alone;
2. plans it: a video is scanned (demux only) and cut into segments at keyframes
   (:mod:`~swapline.distributed.plan`); images, trimmed jobs and videos without timestamps run
   whole through the job core's runner on a worker;
3. puts every segment not done yet (a descriptor that matches its file, or a file a dead worker
   finished) into one queue across all jobs, which the executor drains;
4. validates each descriptor against the plan and the file (frame count, first/last pts,
   size, sha256) before recording it — a segment is accepted once;
5. joins the job's segments once all are there (on a thread of its own, while other jobs'
   segments go on), copying the target through instead when no face was swapped anywhere, and
   records the result.

It reports the job core's :class:`~swapline.jobs.events.JobEvent` per job (``started``,
``progress``, ``warning``, one final event), draws one progress bar over all frames of the batch,
and returns a :class:`BatchReport` (JSON: per-job fps, retries, failures as one-line errors).
:class:`~swapline.distributed.cluster.ClusterRunner` wraps it as a job-core runner, so the
server's job queue can hand a job to the cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, JobCancelled, OutputError, SwaplineError
from ..formats import IMAGE_EXTENSIONS, VIDEO_OUTPUT_EXTENSIONS
from ..jobs.events import CancelToken, JobEvent
from ..jobs.job import Job, options_to_dict
from ..jobs.runner import target_kind
from ..tempfiles import sweep
from .executor import Executor, Outcome, TaskQueue, typed_error
from .join import join_segments
from .manifest import (
    WORK_FOLDER,
    JobFolder,
    SegmentDescriptor,
    describe_video,
    file_identity,
    file_sha256,
    job_key,
    read_json,
    write_json_atomic,
)
from .plan import DEFAULT_SEGMENT_SECONDS, DEFAULT_WARMUP_SECONDS, VideoPlan, plan_segments, scan_video
from .report import BatchReport, JobSummary
from .segment import SegmentTask

PLAN_VERSION = 1
EVENT_EVERY_S = 0.25

BatchEventSink = Callable[[int, JobEvent], None]
"""``on_event(job_number, event)``: a job's event (``job_number``: its position in the batch)."""


@dataclass(frozen=True)
class BatchOptions:
    """How a batch is cut up and where its work goes.

    Attributes:
        segment_seconds: about how long a segment is (cut at the first keyframe after it).
        warmup_seconds: pre-roll run before each segment's start (tracker and smoothing warm-up).
        work_dir: the root of the jobs' work folders; must be shared storage for a cluster
            (None: ``<each output's folder>/.swapline-batch``).
        keep_segments: keep the segment files after the join (their descriptors stay anyway).
    """

    segment_seconds: float = DEFAULT_SEGMENT_SECONDS
    warmup_seconds: float = DEFAULT_WARMUP_SECONDS
    work_dir: Path | None = None
    keep_segments: bool = False

    def __post_init__(self) -> None:
        if not self.segment_seconds > 0:
            raise ConfigError(f"--segment-seconds must be above 0 (got {self.segment_seconds})")
        if not self.warmup_seconds >= 0:
            raise ConfigError(f"--preroll-seconds must be 0 or more (got {self.warmup_seconds})")


@dataclass
class _JobState:
    """The driver's view of one job while the batch runs."""

    number: int
    job: Job
    key: str = ""
    folder: JobFolder | None = None
    plan: VideoPlan | None = None
    whole: bool = False
    tasks: dict[str, SegmentTask] = field(default_factory=dict)  # not yet accepted, by task key
    done: dict[int, SegmentDescriptor] = field(default_factory=dict)  # accepted segments
    total: int = 0
    progress: dict[str, int] = field(default_factory=dict)  # frames written by running tasks
    state: str = "pending"
    error: str = ""
    error_type: str = ""
    exit_code: int = 0
    warnings: list[str] = field(default_factory=list)
    plan_seconds: float = 0.0
    join_seconds: float = 0.0
    segments_run: int = 0
    segments_reused: int = 0
    retries: int = 0
    frames: int = 0
    swapped: int = 0
    copied_through: bool = False
    ended: float = 0.0
    last_event: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def done_frames(self) -> int:
        return sum(d.frames for d in self.done.values()) + sum(self.progress.values())


class BatchDriver:
    """Runs a batch of jobs on an executor (see the module's docs).

    Args:
        executor: where the segments run (:class:`~swapline.distributed.local.LocalExecutor`,
            :class:`~swapline.distributed.ray_executor.RayExecutor`).
        options: how jobs are cut up and where their work goes.
        progress: draw one progress bar over all frames of the batch (stderr).
        on_event: receives every job's events.
    """

    def __init__(self, executor: Executor, options: BatchOptions | None = None, *, progress: bool = False,
                 on_event: BatchEventSink | None = None) -> None:
        self.executor = executor
        self.options = options or BatchOptions()
        self.progress = progress
        self.on_event = on_event
        self._lock = threading.RLock()  # the driver loop and the join thread share the states
        self._encoders: dict[str, str] = {}

    # -- events ------------------------------------------------------------------------------
    def _emit(self, state: _JobState, event: JobEvent) -> None:
        if event.kind == "warning":
            state.warnings.append(event.message)
        if self.on_event is not None:
            self.on_event(state.number, event)

    def _end(self, state: _JobState, kind: str, *, error: BaseException | None = None, message: str = "") -> None:
        """Finish a job with ``kind`` (done / skipped / failed / cancelled) and its final event."""
        with self._lock:
            if state.state in ("done", "skipped", "failed", "cancelled"):
                return
            state.state = kind
            state.ended = time.perf_counter()
            if error is not None:
                state.error = (str(error) or type(error).__name__).splitlines()[0]
                state.error_type = getattr(error, "kind", type(error).__name__)
                state.exit_code = getattr(error, "exit_code", 1)
            if kind == "failed":
                self._emit(state, JobEvent("failed", message=state.error, error=state.error_type,
                                           exit_code=state.exit_code))
            elif kind == "cancelled":
                self._emit(state, JobEvent("cancelled", message="cancelled", error="JobCancelled", exit_code=130))
            else:
                self._emit(state, JobEvent("done", done=state.frames, total=state.frames, message=message))

    def _fail(self, state: _JobState, error_type: str, message: str, exit_code: int) -> None:
        """End a job with a worker's error (its type by name; its other segments are dropped)."""
        self._queue.drop_job(state.key)
        self._end(state, "failed", error=typed_error(error_type, message, exit_code))

    # -- planning ----------------------------------------------------------------------------
    def _encoder(self, job: Job) -> str:
        ext = job.output.suffix.lower()
        if job.video.encoder != "auto":
            return job.video.encoder
        if ext not in self._encoders:
            self._encoders[ext] = self.executor.encoder(ext)
        return self._encoders[ext]

    def _prepare(self, state: _JobState, order: list[int]) -> None:
        """Key, folder, plan and tasks of one job (or its end: done before, or an error)."""
        from ..video.writer import EncodeOptions

        job = state.job
        started = time.perf_counter()
        for p in (job.target, *job.sources):
            if not Path(p).is_file():
                raise InputError(f"{'target' if p == job.target else 'source'} not found: {p}")
        kind = target_kind(job.target)
        ext = job.output.suffix.lower()
        if kind == "video" and ext not in VIDEO_OUTPUT_EXTENSIONS:
            raise OutputError(f"the target is a video: give a video output ({', '.join(VIDEO_OUTPUT_EXTENSIONS)}), "
                              f"not {job.output}")
        if kind == "image" and ext not in IMAGE_EXTENSIONS:
            raise OutputError(f"the target {job.target.name} is an image: give an image output "
                              f"({', '.join(IMAGE_EXTENSIONS)}), not {job.output}")
        out_dir = job.output.parent if str(job.output.parent) else Path(".")
        if not out_dir.is_dir():
            raise OutputError(f"output folder does not exist: {out_dir}")
        encoder = self._encoder(job) if kind == "video" else ""
        parts = {"version": PLAN_VERSION, "target": file_identity(job.target),
                 "sources": [file_identity(p) for p in job.sources], "output": str(job.output.resolve()),
                 "options": options_to_dict(job.config, job.video), "quality": job.quality,
                 "max_pixels": job.max_pixels, "encoder": encoder, "segment_seconds": self.options.segment_seconds,
                 "warmup_seconds": self.options.warmup_seconds}
        state.key = job_key(parts)
        root = self.options.work_dir if self.options.work_dir is not None else out_dir / WORK_FOLDER
        state.folder = folder = JobFolder(Path(root) / state.key)
        folder.create()
        sweep(folder.root)  # what killed workers on this machine left
        if (done := folder.done_result(job.output)) is not None:
            state.frames, state.result = int(done.get("frames", 0)), done
            self._emit(state, JobEvent("started", total=state.frames))
            self._end(state, "skipped", message=f"already done → {job.output}")
            return
        if job.output.exists() and not job.force:
            raise OutputError(f"output exists: {job.output} (use --force to overwrite)")
        write_json_atomic(folder.root / "job.json", {**parts, "job": job.to_dict()})
        plan = None
        trimmed = job.video.trim_start > 0 or job.video.trim_end is not None
        if kind == "video" and not trimmed:
            data = read_json(folder.plan)
            if isinstance(data, dict):
                try:
                    plan = VideoPlan.from_dict(data)
                except (KeyError, TypeError, ValueError):
                    plan = None
            if plan is None:
                try:
                    plan = plan_segments(scan_video(job.target), segment_seconds=self.options.segment_seconds,
                                         warmup_seconds=self.options.warmup_seconds)
                except InputError as exc:
                    if "cannot split" not in str(exc):
                        raise
                    self._emit(state, JobEvent("warning", message=f"{exc}; it is swapped whole"))
                else:
                    write_json_atomic(folder.plan, plan.to_dict())
        state.plan_seconds = time.perf_counter() - started
        if plan is None:  # run whole through the job core
            state.whole = True
            task = SegmentTask(job=job, job_key=state.key, folder=folder.root, segment=None, encode=None,
                               order=len(order))
            order.append(0)
            state.tasks[task.key] = task
            state.total = 1 if kind == "image" else _frame_estimate(job)
            return
        state.plan = plan
        state.total = sum(s.frames for s in plan.segments)
        encode = EncodeOptions(encoder=encoder, crf=job.video.quality, preset=job.video.preset, closed_gop=True)
        for seg in plan.segments:
            task = SegmentTask(job=job, job_key=state.key, folder=folder.root, segment=seg, encode=encode,
                               time_base=plan.time_base, order=len(order))
            order.append(0)
            desc = folder.done_segment(seg.index) or self._adopt(task)
            if desc is not None:
                state.done[seg.index] = desc
                state.segments_reused += 1
            else:
                state.tasks[task.key] = task

    def _adopt(self, task: SegmentTask) -> SegmentDescriptor | None:
        """A segment file a worker finished without its descriptor being recorded (the driver or
        the worker died in between): described, validated and accepted, or None."""
        assert task.segment is not None
        path = task.path
        if not path.is_file():
            return None
        try:
            frames, first, last = describe_video(path, Fraction(task.time_base))
            desc = SegmentDescriptor(key=task.key, path=str(path), frames=frames, first_pts=first, last_pts=last,
                                     sha256=file_sha256(path), size=path.stat().st_size, swapped=-1,
                                     worker="adopted")
        except Exception:  # noqa: BLE001 - an unreadable leftover is redone
            return None
        if self._invalid(task, desc):
            return None
        write_json_atomic(JobFolder(task.folder).descriptor(task.segment.index), desc.to_dict())
        return desc

    # -- validation ----------------------------------------------------------------------------
    @staticmethod
    def _invalid(task: SegmentTask, desc: SegmentDescriptor) -> str:
        """Why ``desc`` does not match the plan and the file (``""`` when it does)."""
        seg = task.segment
        path = Path(desc.path)
        if seg is not None:
            if path != task.path:
                return f"written to {path}, not {task.path}"
            damaged = desc.damaged_packets > 0
            if desc.frames != seg.frames and not (damaged and desc.frames < seg.frames):
                return f"{desc.frames} frames, the plan says {seg.frames}"
            if not damaged and (desc.first_pts != seg.start or desc.last_pts != seg.last_pts):
                return (f"frames from pts {desc.first_pts} to {desc.last_pts}, the plan says {seg.start} to "
                        f"{seg.last_pts}")
        try:
            if path.stat().st_size != desc.size:
                return f"{path.name} is {path.stat().st_size} bytes, the worker wrote {desc.size}"
            if file_sha256(path) != desc.sha256:
                return f"{path.name} does not match the worker's sha256"
        except OSError as exc:
            return f"cannot read {path}: {exc.strerror or exc}"
        return ""

    # -- running -------------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job], cancel: CancelToken | None = None) -> BatchReport:
        """Run ``jobs`` (see the module's docs); failures are in the report, not raised.

        Raises:
            JobCancelled: ``cancel`` was used (finished segments stay for a later run).
        """
        from tqdm import tqdm

        token = cancel or CancelToken()
        started = time.perf_counter()
        self._started = started
        self._queue = TaskQueue()
        states = [_JobState(number=i, job=job) for i, job in enumerate(jobs)]
        order: list[int] = []
        tasks: list[SegmentTask] = []
        for state in states:
            try:
                self._prepare(state, order)
            except SwaplineError as exc:
                self._emit(state, JobEvent("started", total=0))
                self._end(state, "failed", error=exc)
                continue
            if state.state == "skipped":
                continue
            self._emit(state, JobEvent("started", total=state.total))
            tasks.extend(state.tasks.values())
        self._queue = TaskQueue(tasks)
        by_key = {s.key: s for s in states if s.key}
        total = sum(s.total for s in states if s.state == "pending")
        bar = tqdm(total=total, unit="frame", desc="batch", disable=not self.progress, dynamic_ncols=True)
        bar.update(sum(s.done_frames for s in states if s.state == "pending"))
        joins = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swapline-join")
        pending_joins: list[Future[None]] = []
        workers: dict[str, float] = {}

        def refresh() -> None:
            n = sum(s.done_frames for s in states if s.state == "pending") + \
                sum(s.frames for s in states if s.state == "done" and s.total)
            bar.update(n - bar.n)

        def on_progress(key: str, frames: int) -> None:
            state = by_key.get(key.split("/", 1)[0])
            with self._lock:
                if state is None or state.state != "pending" or key not in state.tasks:
                    return
                state.progress[key] = frames
                self._progress_event(state)
            refresh()

        def on_outcome(outcome: Outcome) -> None:
            state = by_key[outcome.task.job_key]
            desc = outcome.descriptor
            if desc is not None and desc.worker:
                workers[desc.worker] = max(workers.get(desc.worker, 0.0), desc.peak_rss_mb)
            with self._lock:
                if state.state != "pending" or outcome.task.key not in state.tasks:
                    return
                state.progress.pop(outcome.task.key, None)
                if outcome.error_type == "JobCancelled":
                    return  # the batch is being cancelled: the job ends as cancelled, not failed
                state.segments_run += 1
                if not outcome.ok:
                    self._fail(state, outcome.error_type, outcome.error, outcome.exit_code)
                    return
                assert desc is not None
                state.retries += max(0, desc.attempt - 1)
                why = self._invalid(outcome.task, desc)
                if why:
                    self._fail(state, "OutputError", f"segment {outcome.task.key} is wrong: {why}", 3)
                    return
                del state.tasks[outcome.task.key]
                if outcome.task.segment is None:
                    self._finish_whole(state, desc)
                else:
                    assert state.folder is not None
                    write_json_atomic(state.folder.descriptor(outcome.task.segment.index), desc.to_dict())
                    state.done[outcome.task.segment.index] = desc
                    self._progress_event(state)
                    if not state.tasks:
                        pending_joins.append(joins.submit(self._join, state))
            refresh()

        # jobs whose segments were all done by an earlier run: join now
        for state in states:
            if state.state == "pending" and not state.tasks and state.plan is not None:
                pending_joins.append(joins.submit(self._join, state))
        try:
            if len(self._queue):
                self.executor.run(self._queue, on_outcome, on_progress, token)
        except JobCancelled:
            for f in pending_joins:
                f.cancel()
            joins.shutdown(wait=True)
            for state in states:
                if state.state == "pending":
                    self._end(state, "cancelled")
            raise
        finally:
            for f in pending_joins:
                if not f.cancelled():
                    f.result()  # _join records its own errors; this only waits
            joins.shutdown(wait=True)
            refresh()
            bar.close()
        for state in states:  # nothing left to run, no join pending: a bug, said as one line
            if state.state == "pending":
                self._end(state, "failed", error=SwaplineError("the job ended without all its segments"))
        seconds = time.perf_counter() - started
        return BatchReport(jobs=tuple(self._summary(s) for s in states), executor=self.executor.name,
                           workers=self.executor.worker_count, seconds=seconds, peak_rss_mb=workers)

    def _progress_event(self, state: _JobState) -> None:
        now = time.perf_counter()
        done = state.done_frames
        if now - state.last_event < EVENT_EVERY_S and done < state.total:
            return
        state.last_event = now
        elapsed = max(1e-6, now - self._started)
        fps = done / elapsed
        eta = (state.total - done) / fps if fps > 0 and state.total >= done else None
        self._emit(state, JobEvent("progress", done=done, total=state.total, fps=round(fps, 2),
                                   eta_s=None if eta is None else round(eta, 1)))

    # -- the end of a job ------------------------------------------------------------------------
    def _finish_whole(self, state: _JobState, desc: SegmentDescriptor) -> None:
        for line in desc.warnings:
            self._emit(state, JobEvent("warning", message=line))
        state.frames, state.swapped = desc.frames, desc.swapped
        state.done[0] = desc
        state.copied_through = desc.swapped == 0
        self._record(state)
        self._end(state, "done", message=f"{desc.frames} frame(s), {desc.swapped} face(s) swapped → {state.job.output}")

    def _join(self, state: _JobState) -> None:
        """Join a job's segments into its output (on the join thread); errors end the job."""
        try:
            self._join_now(state)
        except SwaplineError as exc:
            self._end(state, "failed", error=exc)
        except Exception as exc:  # noqa: BLE001 - a bug: the job fails with one line, the batch goes on
            self._end(state, "failed", error=SwaplineError(f"internal error in the join: {type(exc).__name__}: {exc}"))

    def _join_now(self, state: _JobState) -> None:
        assert state.plan is not None and state.folder is not None
        job, plan, folder = state.job, state.plan, state.folder
        started = time.perf_counter()
        descs = [state.done[s.index] for s in plan.segments]
        paths = [Path(d.path) for d in descs]
        swapped = sum(max(0, d.swapped) for d in descs)
        unknown = any(d.swapped < 0 for d in descs)  # adopted segments: not known
        report = None
        if swapped == 0 and not unknown:
            try:  # no face anywhere: the target's own packets, as a whole run does
                report = join_segments(job.target, [job.target], job.output, force=True)
                state.copied_through = True
                self._emit(state, JobEvent("warning", message=f"no face was swapped in {job.target} (none found or "
                                                              "none matched the selection); its packets were "
                                                              "copied unchanged"))
            except OutputError:
                report = None
        if report is None:
            report = join_segments(job.target, paths, job.output, force=True)
        expected = sum(d.frames for d in descs) if not state.copied_through else plan.frames
        if report.frames != expected:
            raise OutputError(f"the join of {job.output} holds {report.frames} frames, its segments {expected}")
        for what in report.dropped:
            self._emit(state, JobEvent("warning", message=f"left out the input's {what}"))
        damaged = sum(d.damaged_packets for d in descs)
        if damaged:
            self._emit(state, JobEvent("warning", message=f"{job.target} is damaged: {damaged} damaged video "
                                                          "packet(s) skipped"))
        state.join_seconds = time.perf_counter() - started
        state.frames, state.swapped = report.frames, swapped
        self._record(state)
        if not self.options.keep_segments:
            folder.remove_segments(len(plan.segments))
        sweep(folder.root)  # temporary files of workers that died on this machine
        rate = state.frames / max(1e-6, time.perf_counter() - self._started)
        self._end(state, "done", message=f"{state.frames} frames in {len(plan.segments)} segment(s), {swapped} face(s) "
                                         f"swapped, {rate:.1f} fps → {job.output}")

    def _record(self, state: _JobState) -> None:
        """Write the job's result record (what makes a later run leave it alone)."""
        assert state.folder is not None
        out = state.job.output
        st = out.stat()
        state.result = {"output": str(out), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                        "sha256": file_sha256(out), "frames": state.frames, "swapped": state.swapped,
                        "copied_through": state.copied_through}
        write_json_atomic(state.folder.result, state.result)

    def _summary(self, state: _JobState) -> JobSummary:
        end = state.ended or time.perf_counter()
        seconds = max(0.0, end - self._started) if state.state == "done" else 0.0
        work = sum(d.seconds for d in state.done.values() if d.worker != "adopted")
        run_frames = sum(d.frames for d in state.done.values() if d.worker != "adopted")
        return JobSummary(
            target=str(state.job.target), output=str(state.job.output), state=state.state, frames=state.frames,
            segments=len(state.plan.segments) if state.plan is not None else 0, segments_run=state.segments_run,
            segments_reused=state.segments_reused, retries=state.retries, seconds=seconds,
            fps=state.frames / seconds if seconds > 0 else 0.0, worker_fps=run_frames / work if work > 0 else 0.0,
            plan_seconds=state.plan_seconds, join_seconds=state.join_seconds,
            preroll_frames=sum(d.preroll_frames for d in state.done.values()), swapped=state.swapped,
            copied_through=state.copied_through, error=state.error, error_type=state.error_type,
            exit_code=state.exit_code, warnings=tuple(state.warnings),
            workers=tuple(sorted({d.worker for d in state.done.values() if d.worker and d.worker != "adopted"})))


def _frame_estimate(job: Job) -> int:
    """Frames a whole-run video job writes, as its container says (progress totals only)."""
    from ..video.reader import probe

    try:
        info = probe(job.target)
    except SwaplineError:
        return 1
    end = info.frame_count if job.video.trim_end is None else min(job.video.trim_end, info.frame_count)
    return max(1, end - job.video.trim_start)
