"""The runner: carries out a :class:`~swapline.jobs.job.Job` for any front end.

    >>> from swapline.jobs import Job, Runner
    >>> with Runner() as runner:
    ...     result = runner.run(Job(sources=("me.jpg",), target="clip.mp4", output="out.mp4"),
    ...                         on_event=print)

A run reports ``started``, ``progress`` (at most every ``progress_interval`` seconds, and the
last frame), ``warning`` lines and exactly one final event (``done``, ``failed`` or
``cancelled``). Errors are the typed :class:`~swapline.errors.SwaplineError` kinds the CLI maps
to exit codes; cancel (a :class:`~swapline.jobs.events.CancelToken`) stops a video within one
frame batch and leaves nothing under the output's name. When no face is found the target is
copied through: an image byte for byte where the format allows, a video packet for packet.

A runner keeps its models loaded between jobs and is not thread-safe: one job (or preview) at a
time per runner.
"""

from __future__ import annotations

import contextlib
import time
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ..config import RuntimeConfig, SwapConfig
from ..errors import JobCancelled, NoFaceError, OutputError, SwaplineError
from ..formats import IMAGE_EXTENSIONS, VIDEO_INPUT_EXTENSIONS, VIDEO_OUTPUT_EXTENSIONS
from ..pipeline.image import (
    DEFAULT_MAX_PIXELS,
    atomic_write_bytes,
    check_output_path,
    read_image,
    read_image_with_alpha,
    write_image,
)
from .events import CancelToken, EventSink, JobEvent
from .job import Job

if TYPE_CHECKING:
    from ..api import Session
    from ..pipeline.video import JobReport
    from ..swap.mesh import SourceFace

SOURCE_CACHE_SIZE = 4  # prepared sources kept for previews (a few people, one after another)


@dataclass(frozen=True)
class JobResult:
    """What a finished job did.

    Attributes:
        kind: ``"image"`` or ``"video"`` (by the target's content).
        output: the file written.
        faces: faces found in the target (images; for videos, faces swapped summed over frames).
        swapped: faces swapped (summed over frames for videos).
        frames: frames written (1 for an image).
        seconds: wall time of the job.
        copied_through: no face was swapped and the target was copied through.
        summary: the one-line summary the CLI prints last.
        warnings: the warning lines the job reported.
        report: the video job's full figures (None for images).
    """

    kind: Literal["image", "video"]
    output: Path
    faces: int
    swapped: int
    frames: int
    seconds: float
    copied_through: bool
    summary: str
    warnings: tuple[str, ...] = ()
    report: JobReport | None = field(default=None, compare=False, repr=False)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (the full video report's copied streams and damage included)."""
        out: dict[str, Any] = {"kind": self.kind, "output": str(self.output), "faces": self.faces,
                               "swapped": self.swapped, "frames": self.frames, "seconds": round(self.seconds, 3),
                               "fps": round(self.fps, 2), "copied_through": self.copied_through,
                               "summary": self.summary, "warnings": list(self.warnings)}
        if self.report is not None:
            r = self.report
            out.update(copied=dict(r.copied), dropped=list(r.dropped), damaged_packets=r.damaged_packets,
                       concealed_frames=r.concealed_frames, missing_frames=r.missing_frames,
                       peak_rss_mb=round(r.peak_rss_mb, 1))
        return out


class _Reporter:
    """Turns a job's progress into events: throttled progress, rate and ETA, one final event."""

    def __init__(self, sink: EventSink | None, interval: float) -> None:
        self.sink = sink
        self.interval = interval
        self.started = time.perf_counter()
        self.total = 0
        self._last = -1e9
        self.warnings: list[str] = []
        self.final_sent = False
        self._busy: dict[str, float] = {}

    def emit(self, event: JobEvent) -> None:
        if event.final:
            self.final_sent = True
        if self.sink is not None:
            self.sink(event)

    def start(self, total: int) -> None:
        self.started = time.perf_counter()
        self.total = total
        self.emit(JobEvent("started", total=total))

    def progress(self, done: int, total: int, busy: dict[str, float] | None = None, *, force: bool = False) -> None:
        now = time.perf_counter()
        last = bool(total) and done >= total
        if not (force or last) and now - self._last < self.interval:
            return
        self._last = now
        self.total = total or self.total
        if busy:
            self._busy = {k: round(v, 3) for k, v in busy.items()}
        elapsed = max(1e-6, now - self.started)
        fps = done / elapsed
        eta = (self.total - done) / fps if fps > 0 and self.total >= done else None
        self.emit(JobEvent("progress", done=done, total=self.total, fps=round(fps, 2),
                           eta_s=None if eta is None else round(eta, 1),
                           busy=dict(self._busy)))

    def warn(self, line: str) -> None:
        self.warnings.append(line)
        self.emit(JobEvent("warning", message=line))


class Runner:
    """Runs jobs with models loaded once (see the module's docs).

    Args:
        runtime: where models come from and run.
        progress: show the model store's download bars (a terminal front end).
        progress_interval: the least seconds between two ``progress`` events.
        session: a :class:`~swapline.api.Session` to use (default: one made on first use).
    """

    def __init__(self, runtime: RuntimeConfig | None = None, *, progress: bool = False,
                 progress_interval: float = 0.25, session: "Session | None" = None) -> None:
        self.runtime = runtime or RuntimeConfig()
        self.progress = progress
        self.progress_interval = progress_interval
        self._session = session
        self._sources: OrderedDict[tuple[Any, ...], SourceFace] = OrderedDict()
        self._frames: OrderedDict[tuple[Any, ...], np.ndarray] = OrderedDict()

    def __enter__(self) -> "Runner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the models (loaded again by the next job)."""
        if self._session is not None:
            self._session.close()
        self._sources.clear()
        self._frames.clear()

    @property
    def session(self) -> "Session":
        """The runner's session (made on first use; models stay loaded across jobs)."""
        if self._session is None:
            from ..api import Session

            self._session = Session(None, self.runtime, progress=self.progress)
        return self._session

    @contextlib.contextmanager
    def _configured(self, config: SwapConfig) -> Iterator["Session"]:
        """The session with ``config`` as its own for the calls that read it (source preparation
        and analysis), restored afterwards."""
        session = self.session
        saved = session.config
        session.config = config
        try:
            yield session
        finally:
            session.config = saved

    def _prepare(self, config: SwapConfig, paths: list[Path], images: list[np.ndarray]) -> "SourceFace":
        with self._configured(config) as session:
            return _load_source(session, paths, images)

    # -- jobs --------------------------------------------------------------------------------
    def run(self, job: Job, on_event: EventSink | None = None, cancel: CancelToken | None = None) -> JobResult:
        """Carry out ``job``; the target's content decides between the image and the video job.

        Raises:
            SwaplineError: the typed error of what went wrong (``failed`` was reported first);
                :class:`~swapline.errors.JobCancelled` when ``cancel`` was used (``cancelled``
                reported, nothing left under the output's name).
        """
        reporter = _Reporter(on_event, self.progress_interval)
        token = cancel or CancelToken()
        try:
            token.check()
            if target_kind(job.target) == "video":
                result = self._run_video(job, reporter, token)
            else:
                result = self._run_image(job, reporter, token)
        except JobCancelled as exc:
            reporter.emit(JobEvent("cancelled", message="cancelled", error=type(exc).__name__,
                                   exit_code=exc.exit_code))
            raise
        except SwaplineError as exc:
            reporter.emit(JobEvent("failed", message=str(exc), error=type(exc).__name__, exit_code=exc.exit_code))
            raise
        reporter.emit(JobEvent("done", done=result.frames, total=result.frames, fps=round(result.fps, 2),
                               message=result.summary))
        return result

    def _run_image(self, job: Job, reporter: _Reporter, token: CancelToken) -> JobResult:
        started = time.perf_counter()
        target, output = job.target, job.output
        if output.suffix.lower() in VIDEO_INPUT_EXTENSIONS:
            raise OutputError(f"the target {target.name} is an image: give an image output "
                              f"({', '.join(IMAGE_EXTENSIONS)}), not {output}")
        out = check_output_path(output, force=job.force, extensions=IMAGE_EXTENSIONS)
        _check_not_an_input(out, [*job.sources, target])
        target_image, alpha = read_image_with_alpha(target, "target", max_pixels=job.max_pixels)
        source_images = [read_image(p, "source", max_pixels=job.max_pixels) for p in job.sources]
        reporter.start(1)
        source = self._prepare(job.config, list(job.sources), source_images)
        token.check()
        result = self.session.swap(source, target_image, job.config)
        for line in self.session.models.take_notices():
            reporter.warn(line)
        token.check()
        copied = False
        if not result.faces:
            reporter.warn(f"no face found in the target {target}; copied it through unchanged")
            if target.suffix.lower() == out.suffix.lower():
                atomic_write_bytes(out, target.read_bytes())
            else:
                write_image(out, target_image, quality=job.quality, alpha=alpha)
            copied = True
            summary = f"no face found; copied the target through → {out}"
        else:
            if not result.swapped:
                reporter.warn(f"{len(result.faces)} face(s) in the target but none matched the selection "
                              f"({job.config.face_selector_mode}); copied it through unchanged")
                copied = True
            write_image(out, result.image, quality=job.quality, alpha=alpha)  # swapped colour, the target's alpha
            summary = f"swapped {len(result.swapped)} of {len(result.faces)} face(s) → {out}"
        reporter.progress(1, 1, force=True)
        return JobResult(kind="image", output=out, faces=len(result.faces), swapped=len(result.swapped), frames=1,
                         seconds=time.perf_counter() - started, copied_through=copied, summary=summary,
                         warnings=tuple(reporter.warnings))

    def _run_video(self, job: Job, reporter: _Reporter, token: CancelToken) -> JobResult:
        from ..video.reader import probe

        started = time.perf_counter()
        target, output = job.target, job.output
        if output.suffix.lower() in IMAGE_EXTENSIONS:
            raise OutputError(f"the target is a video: give a video output ({', '.join(VIDEO_OUTPUT_EXTENSIONS)}), "
                              f"not {output}")
        out = check_output_path(output, force=job.force, extensions=VIDEO_OUTPUT_EXTENSIONS)
        _check_not_an_input(out, [*job.sources, target])
        info = probe(target)  # a target that is not a video fails here, before any model loads
        deep = deep_video_warning(target)
        if deep:
            reporter.warn(deep)
        source_images = [read_image(p, "source", max_pixels=job.max_pixels) for p in job.sources]
        end = info.frame_count if job.video.trim_end is None else min(job.video.trim_end, info.frame_count)
        reporter.start(max(0, end - job.video.trim_start))
        source = self._prepare(job.config, list(job.sources), source_images)
        token.check()
        for line in self.session.models.take_notices():
            reporter.warn(line)
        report = self.session.swap_video(source, target, out, job.config, job.video, force=job.force, progress=False,
                                    on_progress=reporter.progress, cancel=lambda: token.cancelled)
        if report.damaged_packets or report.concealed_frames or report.missing_frames:
            reporter.warn(f"{target} is damaged: {damage_text(report)}")
        for what in report.dropped:
            reporter.warn(f"left out the input's {what}")
        if report.swapped == 0:
            how = ("its packets were copied unchanged" if report.remuxed
                   else "the video was re-encoded (a trimmed or converted video cannot be copied packet by packet)")
            reporter.warn(f"no face was swapped in {target} (none found or none matched the selection); {how}")
        reporter.progress(report.frames, report.frames, force=True)
        summary = (f"{report.frames} frames, {report.swapped} face(s) swapped, {report.fps:.1f} fps, "
                   f"{streams_text(report.copied)} → {out}")
        return JobResult(kind="video", output=out, faces=report.swapped, swapped=report.swapped, frames=report.frames,
                         seconds=time.perf_counter() - started, copied_through=report.swapped == 0, summary=summary,
                         warnings=tuple(reporter.warnings), report=report)

    # -- previews ----------------------------------------------------------------------------
    def source(self, sources: Sequence[Path], config: SwapConfig, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> "SourceFace":
        """The prepared source for these files (cached by path, size, mtime and the options that
        shape it, so a preview after an option change does not prepare it again)."""
        paths = [Path(p) for p in sources]
        key = (tuple(_file_key(p) for p in paths), config.source_validity, config.face_detector_score,
               config.face_detector_size)
        if key in self._sources:
            self._sources.move_to_end(key)
            return self._sources[key]
        images = [read_image(p, "source", max_pixels=max_pixels) for p in paths]
        prepared = self._prepare(config, paths, images)
        self._sources[key] = prepared
        while len(self._sources) > SOURCE_CACHE_SIZE:
            self._sources.popitem(last=False)
        return prepared

    def frame(self, target: Path, *, frame: int = 0, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """Frame ``frame`` of a video target, or the image itself: ``(H, W, 3) uint8`` BGR (the
        last few are kept)."""
        key = (_file_key(Path(target)), frame)
        if key in self._frames:
            self._frames.move_to_end(key)
            return self._frames[key]
        if target_kind(Path(target)) == "video":
            image = read_video_frame(Path(target), frame)
        else:
            image = read_image(target, "target", max_pixels=max_pixels)
        self._frames[key] = image
        while len(self._frames) > 2:
            self._frames.popitem(last=False)
        return image

    def preview(self, sources: Sequence[Path], target: Path, config: SwapConfig, *, frame: int = 0) -> np.ndarray:
        """Frame ``frame`` of ``target`` (the image itself for a photo) with ``sources`` swapped
        in: ``(H, W, 3) uint8`` BGR (the target unchanged when no face is found).

        Raises:
            NoFaceError: no face in a source. InputError: unreadable inputs.
        """
        source = self.source(sources, config)
        image = self.frame(target, frame=frame)
        return self.session.swap(source, image, config).image

    def faces(self, target: Path, config: SwapConfig, *, frame: int = 0) -> list[dict[str, Any]]:
        """The faces of ``target`` (frame ``frame`` of a video) in the selector's order, as
        ``{"position": i, "box": [x, y, w, h], "score": s}`` (pixels of the target); ``position``
        is what ``reference_face_position`` takes."""
        from ..face.select import order_faces

        image = self.frame(target, frame=frame)
        with self._configured(config) as session:
            found = order_faces(session.analyse(image), config.face_selector_order)
        out = []
        for i, face in enumerate(found):
            x1, y1, x2, y2 = (float(v) for v in face.box)
            out.append({"position": i, "box": [round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)],
                        "score": round(float(face.score), 3)})
        return out


# -- helpers ---------------------------------------------------------------------------------
def target_kind(target: Path) -> Literal["image", "video"]:
    """``"video"`` or ``"image"`` by the target's content (its magic bytes; its extension only
    when they say nothing). A missing file counts by its name (the job then reports it)."""
    from ..media_type import sniff

    kind = sniff(target) if Path(target).is_file() else "unknown"
    if kind == "video" or (kind == "unknown" and Path(target).suffix.lower() in VIDEO_INPUT_EXTENSIONS):
        return "video"
    return "image"


def read_video_frame(path: Path, index: int) -> np.ndarray:
    """Frame ``index`` of the video ``path`` as ``(H, W, 3) uint8`` BGR (the last frame when the
    video is shorter).

    Raises:
        InputError: not a readable video.
    """
    from ..errors import InputError
    from ..video.reader import VideoReader

    last = None
    with VideoReader(path, trim_start=max(0, index), trim_end=max(0, index) + 1, queue_size=1) as reader:
        for f in reader:
            last = f.image
            break
    if last is None:
        with VideoReader(path, queue_size=1) as reader:
            for f in reader:
                last = f.image
    if last is None:
        raise InputError(f"no frame could be read from {path}")
    return last


def _file_key(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def _check_not_an_input(out: Path, inputs: list[Path]) -> None:
    for p in inputs:
        if p.exists() and out.exists() and p.resolve() == out.resolve():
            raise OutputError(f"output would overwrite an input: {out}")


def _load_source(session: "Session", sources: list[Path], images: list[np.ndarray]) -> "SourceFace":
    try:
        return session.load_source(images if len(images) > 1 else images[0])
    except NoFaceError:  # the API sees arrays; name the file that has no face
        faceless = [p for p, img in zip(sources, images) if not session.analyse(img)]
        raise NoFaceError(f"no face found in the source image {faceless[0] if faceless else sources[0]}") from None


def deep_video_warning(path: Path) -> str:
    """The warning for a target video with more than 8 bits per sample, or ``""``. Says nothing
    when the file cannot be opened: the video job reports that."""
    try:
        import av

        with av.open(str(path)) as container:
            fmt = container.streams.video[0].codec_context.format
            bits = max(c.bits for c in fmt.components) if fmt is not None else 8
            name = fmt.name if fmt is not None else ""
    except Exception:  # noqa: BLE001 - only a warning; the job itself reports unreadable files
        return ""
    if bits > 8:
        return f"target {path.name} is {bits}-bit video ({name}); swapline works with 8 bits and writes 8-bit video"
    return ""


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def damage_text(report: "JobReport") -> str:
    """``"2 damaged video packets skipped, 5 damaged frames repaired by error concealment"``."""
    parts = []
    if report.damaged_packets:
        parts.append(f"{_plural(report.damaged_packets, 'damaged video packet')} skipped")
    if report.missing_frames:
        parts.append(f"it ends {_plural(report.missing_frames, 'frame')} early (cut short?)")
    if report.concealed_frames:
        parts.append(f"{_plural(report.concealed_frames, 'damaged frame')} repaired by error concealment")
    return ", ".join(parts)


def streams_text(copied: dict[str, int]) -> str:
    """``"2 audio tracks, 1 subtitle stream and 1 data stream copied"``, or ``"no audio"``."""
    names = {"audio": "audio track", "subtitle": "subtitle stream", "data": "data stream"}
    parts = [_plural(copied[k], names[k]) for k in names if copied.get(k)]
    if not parts:
        return "no audio"
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{text} copied"
