"""The video job (and the one-frame image job): decode → detect → follow → swap → encode.

    decode (reader thread) ─► detect (batches, every k-th frame) ─► follow (mesh, track, smooth,
    select) ─► swap (mesh swap, colour, blend, paste) ─► encode (caller's thread, audio copied)

Each arrow is a bounded queue (``VideoConfig.queue_size``), so memory does not grow with the
video's length. Ctrl-C or an error in any stage stops all stages and removes the partial output.
"""

from __future__ import annotations

import math
import resource
import threading
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..blend.parsing import FaceParse, FaceParser, carry
from ..config import SwapConfig, VideoConfig
from ..errors import JobCancelled, OutputError
from ..face.analyse import FaceAnalyser
from ..face.smooth import EmaStats
from ..face.types import Face
from ..runtime.timing import timed
from ..swap.mesh import SourceFace
from .follow import FaceFollower, FrameWork
from .frame import NO_PROCESSORS, Processors, Steadiers, swap_faces
from .image import check_output_path
from .stages import Pipeline, Stage, StageMetrics

from ..formats import VIDEO_OUTPUT_EXTENSIONS as VIDEO_EXTENSIONS

if TYPE_CHECKING:
    from ..video.reader import FrameSpan
    from ..video.writer import EncodeOptions

ProgressCallback = Callable[[int, int, dict[str, float]], None]
"""``on_progress(done, total, busy)``: frames written, frames expected (0 when not known), and
each stage's busy share of the elapsed time so far (0..1, by stage name)."""


@dataclass(frozen=True)
class JobReport:
    """What a job did and how fast.

    Attributes:
        frames: frames written.
        swapped: faces swapped, summed over frames.
        seconds: wall time from the first decoded frame to the finished file.
        stages: busy time, items and queue depth per stage (decode first, encode last).
        stage_ms: milliseconds per step summed over frames (detect, mesh, embed, track, swap,
            blend).
        peak_rss_mb: the process's peak resident memory so far.
        copied: streams copied from the target, by kind (``{"audio": 2, "subtitle": 1, "data": 0}``).
        dropped: the target's subtitle/data streams the output container cannot hold (left out).
        damaged_packets: video packets of the target that could not be decoded (skipped).
        concealed_frames: frames FFmpeg decoded with concealed errors (kept).
        missing_frames: frames the target's container announced past where its stream ends (a
            file cut short: the frames before were swapped).
        remuxed: no frame changed, so the target's packets were copied unchanged (no re-encode).
        preroll_frames: frames run through the stages before a span's start and not written
            (the warm-up of a segment of a split video).
    """

    frames: int
    swapped: int
    seconds: float
    stages: tuple[StageMetrics, ...]
    stage_ms: dict[str, float]
    peak_rss_mb: float
    copied: dict[str, int] = field(default_factory=dict)
    dropped: tuple[str, ...] = ()
    damaged_packets: int = 0
    concealed_frames: int = 0
    missing_frames: int = 0
    remuxed: bool = False
    preroll_frames: int = 0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    On Linux this is ``VmHWM`` of ``/proc/self/status``: unlike ``getrusage``'s ``ru_maxrss``,
    it starts afresh in a new program, so a child's figure is its own, not its parent's.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def frame_stages(analyser: FaceAnalyser, source: SourceFace, config: SwapConfig, video: VideoConfig, *,
                 fps: float, reference: np.ndarray | None = None, still: bool = False,
                 processors: Processors = NO_PROCESSORS, live: bool = False) -> list[Stage]:
    """The detect, follow, parse (with a face parser) and swap stages for one job (each stage's
    state is its own). ``live``: frames never wait for the parser (see :func:`parse_stage`)."""
    follower = FaceFollower(analyser, config, fps=fps, reference=reference, still=still)
    interval = 1 if still else video.detect_interval

    def detect(batch: list[FrameWork]) -> list[FrameWork]:
        for work in batch:
            if work.index % interval == 0:
                with timed(work.times, "detect"):
                    work.detections = follower.detect(work.image)
        return batch

    def follow(batch: list[FrameWork]) -> list[FrameWork]:
        return [follower.process(work) for work in batch]

    # the swap stage's own state: colour statistics, detail blur, lighting and skin tone per track
    colour: dict[int, EmaStats] = {}
    detail: dict[int, EmaStats] = {}
    light: dict[int, EmaStats] = {}
    tone: dict[int, EmaStats] = {}

    def steady(face: Face) -> Steadiers:
        if still or face.track_id is None:
            return None, None, None, None
        tid = face.track_id
        return (colour.setdefault(tid, EmaStats()), detail.setdefault(tid, EmaStats()),
                light.setdefault(tid, EmaStats()), tone.setdefault(tid, EmaStats()))

    def swap(batch: list[FrameWork]) -> list[FrameWork]:
        for work in batch:
            work.output, work.changed = swap_faces(work.image, work.chosen, source, config, work.times, steady,
                                                   processors, parses=work.parses)
        return batch

    q = video.queue_size
    stages = [Stage("detect", detect, batch_size=video.batch_size, queue_size=q),
              Stage("follow", follow, queue_size=q)]
    parser = processors.get("parser")
    if parser is not None:
        stages.append(Stage("parse", parse_stage(parser, still=still, background=live), queue_size=q))
    return [*stages, Stage("swap", swap, queue_size=q, workers=swap_workers(video, processors))]


def parse_stage(parser: FaceParser, *, still: bool = False,
                background: bool = False) -> Callable[[list[FrameWork]], list[FrameWork]]:
    """The parse stage's work: the chosen faces of a detection frame are parsed; on the frames
    between, each tracked face's last parse is carried along by its mesh
    (:func:`~swapline.blend.parsing.carry`), and only a face without one is parsed.

    ``background`` (live): the parser runs on its own thread and no frame waits for it: a
    detection frame's faces are handed to it when it is free, and every frame takes the newest
    parse there is, carried to where the face is now (a face not parsed yet has none: the
    colour-free default blend until its parse is ready, a few frames later)."""
    if background:
        return _background_parse(parser)
    last: dict[int, FaceParse] = {}

    def run(batch: list[FrameWork]) -> list[FrameWork]:
        for work in batch:
            fresh = still or work.detections is not None
            parses: list[FaceParse | None] = []
            ask = []
            for i, face in enumerate(work.chosen):
                old = None if fresh or face.track_id is None else last.get(face.track_id)
                parses.append(carry(old, face.mesh) if old is not None and face.mesh is not None else None)
                if parses[-1] is None:
                    ask.append(i)
            if ask:
                with timed(work.times, "parse"):
                    for i, p in zip(ask, parser.parse(work.image, [work.chosen[i] for i in ask])):
                        parses[i] = p
            last.clear()
            last.update({f.track_id: p for f, p in zip(work.chosen, parses) if f.track_id is not None and p is not None})
            work.parses = parses
        return batch

    return run


def _background_parse(parser: FaceParser) -> Callable[[list[FrameWork]], list[FrameWork]]:
    """:func:`parse_stage` with ``background``: one worker thread, never waited for."""
    from concurrent.futures import Future, ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swapline-parse")
    lock = threading.Lock()
    last: dict[int, FaceParse] = {}
    pending: list[Future[None]] = []

    def parse(image: np.ndarray, faces: list[Face]) -> None:
        done = parser.parse(image, faces)
        with lock:
            last.update({f.track_id: p for f, p in zip(faces, done) if f.track_id is not None})

    def run(batch: list[FrameWork]) -> list[FrameWork]:
        for work in batch:
            with lock:
                known = dict(last)
                busy = bool(pending) and not pending[0].done()
            tracked = [f for f in work.chosen if f.track_id is not None]
            stale = any(f.track_id not in known for f in tracked)
            if tracked and not busy and (work.detections is not None or stale):
                pending[:] = [pool.submit(parse, work.image, tracked)]
            work.parses = [carry(known[f.track_id], f.mesh)
                           if f.track_id in known and f.mesh is not None else None for f in work.chosen]
        return batch

    return run


def swap_workers(video: VideoConfig, processors: Processors) -> int:
    """Threads for the swap stage: one for the built-in swapper (its colour and detail smoothing
    runs in frame order); for a neural swapper, which keeps no state between frames,
    ``video.swap_workers`` or, when 0, a quarter of the usable cores (1 to 4)."""
    if processors.swapper is None:
        return 1
    if video.swap_workers:
        return video.swap_workers
    from ..runtime.session import default_threads

    return max(1, min(4, default_threads() // 4))


def swap_still(analyser: FaceAnalyser, source: SourceFace, image: np.ndarray, config: SwapConfig, *,
               reference: np.ndarray | None = None, processors: Processors = NO_PROCESSORS) -> FrameWork:
    """Swap one image through the same stages as a video (a one-frame video)."""
    done: list[FrameWork] = []
    stages = frame_stages(analyser, source, config, VideoConfig(queue_size=1), fps=1.0, reference=reference,
                          still=True, processors=processors)
    Pipeline([FrameWork(index=0, pts=None, image=image)], stages, done.append).run_inline()
    return done[0]


def swap_video(analyser: FaceAnalyser, source: SourceFace, target: Path, output: Path, config: SwapConfig,
               video: VideoConfig, *, reference: np.ndarray | None = None, force: bool = False,
               progress: bool = True, processors: Processors = NO_PROCESSORS,
               on_progress: ProgressCallback | None = None, cancel: Callable[[], bool] | None = None,
               span: FrameSpan | None = None, encode: EncodeOptions | None = None) -> JobReport:
    """Swap ``source`` into the video ``target`` and write ``output`` (audio, subtitle and data
    streams copied). When no face is swapped in any frame, the target's packets are copied
    unchanged instead of the re-encoded frames (where the output container can hold them and
    no trim is asked); damaged packets of the target are skipped and counted (see JobReport).
    ``on_progress`` is called after each written frame; ``cancel()`` is asked before each frame
    is read and after each is written. ``span`` and ``encode``: see :func:`run_video`.

    Raises:
        JobCancelled: ``cancel()`` said True; every stage stopped and nothing is left under
            ``output``.
        InputError: the target is not a readable video (or is truncated / corrupt).
        OutputError: the output cannot be written; nothing is left under its name.
    """
    from ..video.reader import probe

    check_output_path(output, force=force, extensions=VIDEO_EXTENSIONS)
    info = probe(target)
    fps = float(info.fps) if info.fps else 25.0
    stages = frame_stages(analyser, source, config, video, fps=fps, reference=reference, processors=processors)
    return run_video(target, output, stages, video, force=force, progress=progress, on_progress=on_progress,
                     cancel=cancel, span=span, encode=encode)


def run_video(target: Path, output: Path, stages: Sequence[Stage], video: VideoConfig, *, force: bool = False,
              progress: bool = True, on_progress: ProgressCallback | None = None,
              cancel: Callable[[], bool] | None = None, span: FrameSpan | None = None,
              encode: EncodeOptions | None = None) -> JobReport:
    """Run ``target``'s frames through ``stages`` (which set each :class:`FrameWork`'s
    ``output``) and encode the results to ``output``; see :func:`swap_video`.

    ``span``: only that part of the video (a segment of a split video): its pre-roll frames go
    through the stages but are not written, the output keeps the target's timestamps and gets no
    audio, subtitle or data streams, and is never replaced by a packet copy. ``encode``: the
    encoder settings (default: from ``video``).
    """
    from tqdm import tqdm

    from ..video.reader import VideoReader, probe
    from ..video.writer import EncodeOptions, VideoWriter

    out = check_output_path(output, force=force, extensions=VIDEO_EXTENSIONS)
    if out.exists() and out.resolve() == Path(target).resolve():
        raise OutputError(f"output would overwrite the target: {out}")
    info = probe(target)
    reader = VideoReader(target, trim_start=video.trim_start, trim_end=video.trim_end, queue_size=video.queue_size,
                         span=span)
    if span is not None:
        total = reader.output_frame_count
    else:
        end = info.frame_count if video.trim_end is None else min(video.trim_end, info.frame_count)
        total = max(0, end - video.trim_start)
    options = encode or EncodeOptions(encoder=video.encoder, crf=video.quality, preset=video.preset)
    swapped = 0
    written = 0
    preroll = 0
    stage_ms: dict[str, float] = {}
    bar = tqdm(total=total, unit="frame", desc="swapping", disable=not progress, leave=False, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        with VideoWriter(out, info, options, audio_from=None if span is not None else Path(target),
                         trim_start=video.trim_start, trim_end=video.trim_end,
                         container_options=exact_start_options(out, info.time_base) if span is not None else None
                         ) as writer:

            def sink(work: FrameWork) -> None:
                nonlocal swapped, written, preroll
                assert work.output is not None
                if span is not None and work.pts is not None and work.pts < span.start:
                    preroll += 1  # warmed the stages up; not part of this span
                    return
                writer.write(work.output, work.pts)
                written += 1
                swapped += len(work.chosen)
                for k, v in work.times.ms.items():
                    stage_ms[k] = stage_ms.get(k, 0.0) + v
                bar.update(1)
                if on_progress is not None:
                    elapsed = max(1e-6, time.perf_counter() - started)
                    busy = {m.name: min(1.0, m.busy_s / elapsed) for m in pipeline.metrics()}
                    on_progress(written, total, busy)
                if cancel is not None and cancel():
                    raise JobCancelled("cancelled")

            def frames() -> Iterator[FrameWork]:
                for f in reader:
                    if cancel is not None and cancel():
                        raise JobCancelled("cancelled")
                    yield FrameWork(index=f.index, pts=f.pts, image=f.image)

            pipeline = Pipeline(frames(), stages, sink)
            pipeline.run()
            copied, dropped = dict(writer.copied), tuple(writer.dropped)
            remuxed = span is None and swapped == 0 and writer.finish_as_copy(Path(target))
    finally:
        reader.close()
        bar.close()
    seconds = time.perf_counter() - started
    return JobReport(frames=written, swapped=swapped, seconds=seconds,
                     stages=tuple(pipeline.metrics()), stage_ms=stage_ms, peak_rss_mb=peak_rss_mb(),
                     copied=copied, dropped=dropped, damaged_packets=reader.damaged_packets,
                     concealed_frames=reader.concealed_frames, missing_frames=reader.missing_frames,
                     remuxed=remuxed, preroll_frames=preroll)


def exact_start_options(path: Path, *time_bases: Fraction) -> dict[str, str]:
    """Muxer options that keep first timestamps above 0 exact: an MP4/MOV stores a stream's start
    as an edit list in the movie's time scale (1/1000 s by default, which rounds it); a scale
    that is a multiple of every stream's (``time_bases``) does not."""
    if path.suffix.lower() not in (".mp4", ".mov", ".m4v") or not time_bases:
        return {}
    scale = 1
    for tb in time_bases:
        scale = math.lcm(scale, Fraction(tb).denominator)
    if scale >= 2**31:
        scale = Fraction(time_bases[0]).denominator
    return {"movie_timescale": str(scale)} if 0 < scale < 2**31 else {}
