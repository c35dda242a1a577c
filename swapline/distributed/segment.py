"""Swap one segment of a video into its own file (the work a worker does).

A segment is swapped by the same pipeline as a whole video (:func:`swapline.pipeline.video.swap_video`)
over a :class:`~swapline.video.reader.FrameSpan`: its pre-roll frames warm the tracker and the
smoothers up and are not written, its own frames are encoded with the job's encoder settings
and closed GOPs, keep the source's timestamps, and the file gets no audio (the join copies the
source's once). The file is written to a temporary name and renamed to its deterministic path,
then described (frame count, first/last pts, sha256) for the driver to validate.

Jobs that are not split (images, videos whose packets carry no timestamps) run whole through
the job core's :class:`~swapline.jobs.runner.Runner`, straight to their output.

A worker (:class:`SegmentWorker`) keeps one :class:`~swapline.api.Session` loaded for every
segment it is given, of any job.
"""

from __future__ import annotations

import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import RuntimeConfig
from ..jobs.job import Job
from .manifest import JobFolder, SegmentDescriptor, describe_video, file_sha256
from .plan import Segment

if TYPE_CHECKING:
    from ..jobs.runner import Runner
    from ..pipeline.stages import Stage
    from ..video.writer import EncodeOptions

StagesFactory = Callable[[Job, float], "Sequence[Stage]"]
"""``make(job, fps)`` → the frame stages to run instead of the swap (they must set each
frame's ``output``); must be picklable (a module-level function) to reach other processes."""

REFERENCE_SECONDS = 10.0  # how far into a video the reference face is looked for
PROGRESS_EVERY_S = 0.25


def passthrough_stages(job: Job, fps: float) -> "list[Stage]":
    """One stage that hands every frame on unchanged: with a lossless encoder the split and the
    join can be checked bit for bit."""
    from ..pipeline.stages import Stage

    def copy(batch: list[Any]) -> list[Any]:
        for work in batch:
            work.output = work.image
        return batch

    return [Stage("copy", copy)]


@dataclass(frozen=True)
class WorkerSettings:
    """How a worker is set up (sent to every worker process or actor).

    Attributes:
        runtime: where models come from and run (threads per worker included).
        stages: frame stages instead of the swap (tests, diagnostics); None: the swap.
        fault_flag: testing only: when this file exists as a segment runs, the worker deletes
            it and exits at once (a crash mid-segment, to exercise restarts and retries).
    """

    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    stages: StagesFactory | None = None
    fault_flag: str | None = None


@dataclass(frozen=True)
class SegmentTask:
    """One unit of work: a segment of a job, or a whole job (``segment`` None).

    Attributes:
        job: the job the segment belongs to.
        job_key: the job's work key (see :mod:`swapline.distributed.manifest`).
        folder: the job's work folder.
        segment: the segment, or None to run the job whole to its output.
        encode: the encoder settings every segment of the job shares (None for a whole job).
        time_base: the source video stream's time base (``"num/den"``), for the descriptor.
        order: position in the batch's queue (jobs in order, segments in order).
    """

    job: Job
    job_key: str
    folder: Path
    segment: Segment | None
    encode: "EncodeOptions | None"
    time_base: str = "1/1"
    order: int = 0

    @property
    def key(self) -> str:
        return f"{self.job_key}/{'whole' if self.segment is None else self.segment.index}"

    @property
    def frames(self) -> int:
        """Frames this task writes, as planned (1 for a whole job: its size is not known)."""
        return self.segment.frames if self.segment is not None else 1

    @property
    def path(self) -> Path:
        """The file this task writes."""
        return self.job.output if self.segment is None else JobFolder(self.folder).segment(self.segment.index)


ProgressSink = Callable[[int], None]
"""``on_progress(frames_written)`` of the task being run."""


class SegmentWorker:
    """Runs tasks with one loaded :class:`~swapline.api.Session` (see the module's docs).

    Not thread-safe: one task at a time (a process-pool worker or a Ray actor each hold one).
    """

    def __init__(self, settings: WorkerSettings | None = None) -> None:
        self.settings = settings or WorkerSettings()
        self._runner: Runner | None = None
        self._references: OrderedDict[str, np.ndarray | None] = OrderedDict()
        self.identity = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def runner(self) -> "Runner":
        """The job-core runner holding this worker's session (made on first use)."""
        if self._runner is None:
            from ..jobs.runner import Runner

            self._runner = Runner(self.settings.runtime)
        return self._runner

    def load(self) -> None:
        """Load the models now (a worker warms up before its first segment arrives)."""
        if self.settings.stages is None:
            _ = self.runner.session.analyser

    def close(self) -> None:
        if self._runner is not None:
            self._runner.close()
            self._runner = None

    def encoder(self, ext: str = ".mp4") -> str:
        """What ``--output-video-encoder auto`` means on this worker for an ``ext`` file."""
        from ..video.writer import EncodeOptions

        return EncodeOptions(encoder="auto").resolved_encoder(ext)

    # -- work --------------------------------------------------------------------------------
    def run(self, task: SegmentTask, on_progress: ProgressSink | None = None,
            cancel: Callable[[], bool] | None = None) -> SegmentDescriptor:
        """Carry out ``task``; returns the descriptor of the file written.

        Raises:
            SwaplineError: the typed error of what went wrong (nothing left under the path).
        """
        started = time.perf_counter()
        if task.segment is None:
            return self._run_whole(task, on_progress, cancel, started)
        return self._run_segment(task, task.segment, on_progress, cancel, started)

    def _progress(self, on_progress: ProgressSink | None) -> Callable[[int, int, dict[str, float]], None]:
        """The pipeline's progress callback: throttled to the sink, and the fault hook."""
        last = [0.0]
        flag = self.settings.fault_flag

        def report(done: int, total: int, busy: dict[str, float]) -> None:
            if flag is not None and done >= 2 and os.path.exists(flag):
                os.unlink(flag)
                os._exit(17)  # testing: die mid-segment, leaving a half-written temporary file
            now = time.monotonic()
            if on_progress is not None and (now - last[0] >= PROGRESS_EVERY_S or done >= total):
                last[0] = now
                on_progress(done)

        return report

    def _run_segment(self, task: SegmentTask, segment: Segment, on_progress: ProgressSink | None,
                     cancel: Callable[[], bool] | None, started: float) -> SegmentDescriptor:
        from ..pipeline.video import run_video, swap_video
        from ..video.reader import probe

        folder = JobFolder(task.folder)
        attempt = folder.count_attempt(segment.index)
        job = task.job
        path = folder.segment(segment.index)
        progress = self._progress(on_progress)
        if self.settings.stages is not None:
            info = probe(job.target)
            stages = self.settings.stages(job, float(info.fps) if info.fps else 25.0)
            report = run_video(job.target, path, stages, job.video, force=True, progress=False,
                               on_progress=progress, cancel=cancel, span=segment.span(), encode=task.encode)
        else:
            runner = self.runner
            session = runner.session
            source = runner.source(job.sources, job.config, max_pixels=job.max_pixels)
            reference = self._reference(task)
            # the models stay loaded between segments (whatever the memory strategy): a worker
            # exists to run many segments with one session
            video = session.engine.fit_batch(job.video)
            report = swap_video(session.analyser, source, job.target, path, job.config, video,
                                reference=reference, force=True, progress=False,
                                processors=session.processors(job.config, source), on_progress=progress,
                                cancel=cancel, span=segment.span(), encode=task.encode)
        frames, first, last = describe_video(path, Fraction(task.time_base))
        return SegmentDescriptor(key=task.key, path=str(path), frames=frames, first_pts=first, last_pts=last,
                                 sha256=file_sha256(path), size=path.stat().st_size, swapped=report.swapped,
                                 preroll_frames=report.preroll_frames, seconds=time.perf_counter() - started,
                                 peak_rss_mb=report.peak_rss_mb, worker=self.identity, attempt=attempt,
                                 damaged_packets=report.damaged_packets, concealed_frames=report.concealed_frames)

    def _run_whole(self, task: SegmentTask, on_progress: ProgressSink | None, cancel: Callable[[], bool] | None,
                   started: float) -> SegmentDescriptor:
        from ..jobs.events import CancelToken, JobEvent
        from ..pipeline.video import peak_rss_mb

        token = CancelToken()
        warnings: list[str] = []

        def on_event(event: JobEvent) -> None:
            if event.kind == "warning":
                warnings.append(event.message)
            elif event.kind == "progress" and on_progress is not None:
                on_progress(event.done)
            if cancel is not None and cancel():
                token.cancel()

        result = self.runner.run(replace(task.job, force=True), on_event=on_event, cancel=token)
        path = result.output
        return SegmentDescriptor(key=task.key, path=str(path), frames=result.frames, first_pts=None, last_pts=None,
                                 sha256=file_sha256(path), size=path.stat().st_size, swapped=result.swapped,
                                 seconds=time.perf_counter() - started, peak_rss_mb=peak_rss_mb(),
                                 worker=self.identity, warnings=tuple(warnings))

    def _reference(self, task: SegmentTask) -> np.ndarray | None:
        """The job's reference identity, the same for every segment (cached per job)."""
        if task.job_key in self._references:
            return self._references[task.job_key]
        ref = job_reference(self.runner, task.job)
        self._references[task.job_key] = ref
        while len(self._references) > 8:
            self._references.popitem(last=False)
        return ref


def job_reference(runner: "Runner", job: Job) -> np.ndarray | None:
    """``(D,) float32`` identity of the reference face of a ``reference``-mode job: the face at
    ``reference_face_position`` (in the selector's order) of the first frame with enough faces
    within :data:`REFERENCE_SECONDS` (detection frames only). Every worker finds the same one,
    so all segments of a job swap the same person. None in other modes, or when no frame has
    enough faces (each segment then picks its own, as a whole run would at its start)."""
    from ..face.select import order_faces
    from ..video.reader import VideoReader

    cfg = job.config
    if cfg.face_selector_mode != "reference":
        return None
    analyser = runner.session.analyser
    with VideoReader(job.target, queue_size=2) as reader:
        limit = max(1, round(REFERENCE_SECONDS * float(reader.info.fps or 25)))
        for frame in reader:
            if frame.index >= limit:
                break
            if frame.index % job.video.detect_interval:
                continue
            faces = analyser.analyse([frame.image], embed=True, score_threshold=cfg.face_detector_score,
                                     detector_size=cfg.face_detector_size)[0]
            ordered = order_faces(faces, cfg.face_selector_order)
            if len(ordered) > cfg.reference_face_position:
                emb = ordered[cfg.reference_face_position].embedding
                return None if emb is None else np.asarray(emb, np.float32)
    return None
