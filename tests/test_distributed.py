"""Scale-out (swapline.distributed): plan, segments, join, resume, the local pool, Ray, the CLI.

Split and join are checked without Ray on synthetic clips made here with PyAV (CFR with
B-frames, VFR, an open GOP; all with AAC audio): a pass-through "swap" encoded losslessly gives
bit-identical decoded frames, the same pts, every audio packet identical and monotonic dts. The
driver's resume and validation run on an in-process executor; the local process pool restarts a
worker that dies mid-segment. Ray runs in a subprocess inside a private network namespace
(``unshare -n``, loopback only) where the system allows one: a batch of three real clips on two
actors gives the frames of the local pool's run, a worker killed on its first segment is
restarted with the same result, and a second run redoes nothing. Face continuity: the shared
talking clip cut into 3 segments, swapped for real through ``swapline batch``: the face moves no
more at a border than between neighbouring frames inside a segment.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from swapline.config import RuntimeConfig, VideoConfig
from swapline.distributed import (
    BatchDriver,
    BatchOptions,
    ClusterRunner,
    JobFolder,
    SegmentTask,
    SegmentWorker,
    WorkerSettings,
    join_segments,
    passthrough_stages,
    plan_segments,
    read_batch,
    scan_video,
)
from swapline.distributed.local import InProcessExecutor, LocalExecutor

from tests.netns import isolated
from swapline.errors import ConfigError, InputError, OutputError
from swapline.jobs.events import JobEvent
from swapline.jobs.job import Job
from swapline.video.reader import VideoReader
from swapline.video.writer import EncodeOptions

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
TALKING = "vid_lp_d18_talking_480.mp4"  # 480×480, 216 frames at 30 fps, one keyframe, AAC audio
SOURCE = "src_obama.jpg"
LOSSLESS = EncodeOptions(encoder="libx264rgb", crf=0, preset="ultrafast", closed_gop=True)
W, H = 96, 64


# ------------------------------------------------------------------------------------ clips


def _pattern(i: int) -> np.ndarray:
    """``(H, W, 3) uint8`` frame ``i``: moving gradients, every frame different."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.empty((H, W, 3), np.uint8)
    img[..., 0] = (x * 2 + i * 5) % 256
    img[..., 1] = (y * 3 + i * 7) % 256
    img[..., 2] = ((x + y) * 2 + i * 11) % 256
    return img


def make_clip(path: Path, *, frames: int = 60, fps: int = 25, gop: int = 10, bframes: int = 2,
              open_gop: bool = False, vfr: bool = False, audio: bool = True) -> Path:
    """A tiny H.264 MP4: ``gop``-frame GOPs with ``bframes`` B-frames (open GOPs: leading
    B-frames refer to the GOP before), variable frame durations with ``vfr``, mono AAC."""
    tb = Fraction(1, fps * 512)
    step = round(1 / (fps * tb))
    rng = np.random.default_rng(7)
    with av.open(str(path), "w") as out:
        v = out.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        params = f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
        if open_gop:
            params += ":open-gop=1"
            v.codec_context.flags = 0  # libx264 defaults to +cgop (closed GOPs)
        v.options = {"preset": "veryfast", "x264-params": params}
        v.time_base = v.codec_context.time_base = tb
        a = out.add_stream("aac", rate=8000) if audio else None
        if a is not None:
            a.layout = "mono"
        pts = apts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(_pattern(i), format="bgr24").reformat(format="yuv420p")
            frame.pts, frame.time_base = pts, tb
            out.mux(v.encode(frame))
            pts += int(step * rng.choice([0.5, 1.0, 1.7, 2.3])) if vfr else step
            while a is not None and apts / 8000 < pts * tb:
                t = (np.arange(1024) + apts) / 8000
                samples = (np.sin(2 * np.pi * 440 * t) * 0.3).astype(np.float32)[None]
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                af.sample_rate, af.pts = 8000, apts
                out.mux(a.encode(af))
                apts += 1024
        out.mux(v.encode(None))
        if a is not None:
            out.mux(a.encode(None))
    return path


def cut_real_clip(src: Path, dst: Path, *, gop: int, start: int = 0, frames: int | None = None,
                  size: int | None = None) -> Path:
    """Frames ``[start, start + frames)`` of ``src`` re-encoded with a keyframe every ``gop``
    frames (optionally scaled to ``size``²), its audio packets of that span copied."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        v = out.add_stream("libx264", rate=vin.average_rate)
        v.width = v.height = size or vin.codec_context.width
        v.pix_fmt = "yuv420p"
        v.time_base = v.codec_context.time_base = vin.time_base
        v.options = {"preset": "veryfast", "crf": "20", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        a = out.add_stream_from_template(ain) if ain is not None else None
        step = max(1, round(1 / (vin.average_rate * vin.time_base)))  # one frame, in time_base units
        n, first, span = 0, None, [None, None]
        for packet in inp.demux(*[s for s in (vin, ain) if s is not None]):
            if packet.stream.type == "video":
                for f in packet.decode():
                    if n >= start and (frames is None or n < start + frames):
                        first = f.pts if first is None else first
                        span[0] = span[0] if span[0] is not None else f.pts * vin.time_base
                        span[1] = (f.pts + step) * vin.time_base
                        g = f.reformat(width=v.width, height=v.height, format="yuv420p")
                        g.pts, g.time_base = f.pts - first, vin.time_base
                        g.pict_type = av.video.frame.PictureType.NONE
                        out.mux(v.encode(g))
                    n += 1
            elif a is not None and packet.size and span[0] is not None:
                t = packet.pts * ain.time_base
                if span[0] <= t < span[1]:
                    shift = round(span[0] / ain.time_base)
                    packet.pts -= shift
                    packet.dts -= shift
                    packet.stream = a
                    out.mux(packet)
        out.mux(v.encode(None))
    return dst


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {"cfr": make_clip(d / "cfr.mp4"), "vfr": make_clip(d / "vfr.mp4", vfr=True),
            "open": make_clip(d / "open.mp4", open_gop=True, bframes=3)}


def decoded(path: Path) -> list[tuple[Fraction, np.ndarray]]:
    """``(pts in seconds, (H, W, 3) uint8 BGR)`` of every frame, as swapline's reader gives them."""
    with VideoReader(path, hwaccel=False) as reader:
        tb = reader.info.time_base
        return [(f.pts * tb, f.image) for f in reader]


def packets(path: Path, kind: str) -> list[tuple[bytes, Fraction, Fraction]]:
    """``(payload, pts s, dts s)`` of the first ``kind`` stream's packets (decode order)."""
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        if not streams:
            return []
        tb = Fraction(streams[0].time_base)
        return [(bytes(p), p.pts * tb, p.dts * tb) for p in c.demux(streams[0]) if p.size]


def same_frames(a: Path, b: Path) -> bool:
    fa, fb = decoded(a), decoded(b)
    return len(fa) == len(fb) and all(x[0] == y[0] and np.array_equal(x[1], y[1]) for x, y in zip(fa, fb))


def split_and_join(src: Path, work: Path, out: Path, *, seconds: float, warmup: float,
                   encode: EncodeOptions = LOSSLESS) -> tuple[Any, list[Any]]:
    """Plan ``src``, swap every segment with the pass-through into ``work``, join into ``out``."""
    plan = plan_segments(scan_video(src), segment_seconds=seconds, warmup_seconds=warmup)
    job = Job(sources=(src,), target=src, output=out)
    worker = SegmentWorker(WorkerSettings(stages=passthrough_stages))
    descs = [worker.run(SegmentTask(job=job, job_key="k", folder=work, segment=seg, encode=encode,
                                    time_base=plan.time_base)) for seg in plan.segments]
    join_segments(src, [Path(d.path) for d in descs], out)
    return plan, descs


# ------------------------------------------------------------------------------- plan, join


@pytest.mark.parametrize("kind", ["cfr", "vfr", "open"])
def test_plan_cuts_at_keyframes_and_keeps_every_frame_once(clips: dict[str, Path], kind: str) -> None:
    scan = scan_video(clips[kind])
    plan = plan_segments(scan, segment_seconds=0.5, warmup_seconds=0.2)
    segs = plan.segments
    assert len(segs) >= 3 and plan.frames == 60
    assert sum(s.frames for s in segs) == 60  # every frame once
    keys = set(scan.keyframes.tolist())
    for a, b in zip(segs, segs[1:]):
        assert a.end == b.start and b.start in keys  # cut at keyframes only, never mid-GOP
        assert b.decode_from in keys and b.decode_from < b.start  # decoded from an earlier keyframe
        assert b.warmup_from is not None and b.decode_from <= b.warmup_from < b.start
        assert b.start_index - b.first_index == b.preroll_frames == round(0.2 * plan.fps)  # 0.2 s of frames
    if kind == "open":
        assert plan.open_gops >= 2
        no_warmup = plan_segments(scan, segment_seconds=0.5, warmup_seconds=0.0)
        for s in no_warmup.segments[1:]:
            if s.start in {int(k) for k, o in zip(scan.keyframes, scan.open_gop) if o}:
                assert s.decode_from is not None and s.decode_from < s.start  # the keyframe before
    assert segs[-1].end is None and segs[0].decode_from is None


def test_plan_segment_length_and_short_tail() -> None:
    from swapline.distributed.plan import VideoScan

    n = 300  # 12 s at 25 fps, a keyframe every second
    scan = VideoScan(pts=np.arange(n, dtype=np.int64) * 512, keyframes=np.arange(0, n, 25, dtype=np.int64) * 512,
                     open_gop=np.zeros(12, bool), cut_ok=np.ones(12, bool), time_base=Fraction(1, 12800),
                     fps=Fraction(25))
    assert [s.frames for s in plan_segments(scan, segment_seconds=5).segments] == [125, 175]  # 2 s tail joined
    assert [s.frames for s in plan_segments(scan, segment_seconds=4).segments] == [100, 100, 100]
    assert len(plan_segments(scan, segment_seconds=60).segments) == 1
    with pytest.raises(ConfigError):
        plan_segments(scan, segment_seconds=0)


@pytest.mark.parametrize("kind", ["cfr", "vfr", "open"])
def test_split_and_join_with_a_passthrough_is_exact(clips: dict[str, Path], tmp_path: Path, kind: str) -> None:
    src, out = clips[kind], tmp_path / "joined.mp4"
    plan, descs = split_and_join(src, tmp_path, out, seconds=0.5, warmup=0.2)
    source, joined = decoded(src), decoded(out)
    assert len(joined) == len(source) == 60
    assert [t for t, _ in joined] == [t for t, _ in source]  # the same pts
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(source, joined))  # bit-identical frames
    audio = packets(src, "audio")
    assert audio and packets(out, "audio") == audio  # every audio packet, once, unchanged
    dts = [d for _, _, d in packets(out, "video")]
    assert all(a < b for a, b in zip(dts, dts[1:]))  # monotonic decode times
    for seg, desc in zip(plan.segments, descs):  # descriptors: what the plan said
        assert (desc.frames, desc.first_pts, desc.last_pts) == (seg.frames, seg.start, seg.last_pts)
        assert desc.preroll_frames == seg.preroll_frames


def test_segment_file_has_closed_gops_source_timestamps_and_no_audio(clips: dict[str, Path], tmp_path: Path) -> None:
    src = clips["open"]
    plan, descs = split_and_join(src, tmp_path, tmp_path / "j.mp4", seconds=0.5, warmup=0.2,
                                 encode=EncodeOptions(encoder="libx264", crf=18, preset="veryfast", closed_gop=True))
    source_pts = decoded(src)
    for seg, desc in zip(plan.segments, descs):
        path = Path(desc.path)
        assert path == JobFolder(tmp_path).segment(seg.index)
        with av.open(str(path)) as c:
            assert [s.type for s in c.streams] == ["video"]
            vs = c.streams.video[0]
            rows = [(p.pts, bool(p.is_keyframe)) for p in c.demux(vs) if p.size]
        assert rows[0][1]  # starts on a keyframe
        last_key = None
        for pts, key in rows:  # closed GOPs: nothing after a keyframe is shown before it
            if key:
                last_key = pts
            assert pts >= last_key
        mine = [t for t, _ in decoded(path)]
        assert mine == [t for t, _ in source_pts[seg.start_index:seg.start_index + seg.frames]]
    leftovers = [p.name for p in tmp_path.iterdir() if ".part" in p.name]
    assert not leftovers


def test_join_refuses_segments_from_different_encoders(clips: dict[str, Path], tmp_path: Path) -> None:
    plan = plan_segments(scan_video(clips["cfr"]), segment_seconds=0.5, warmup_seconds=0)
    job = Job(sources=(clips["cfr"],), target=clips["cfr"], output=tmp_path / "o.mp4")
    worker = SegmentWorker(WorkerSettings(stages=passthrough_stages))
    paths = []
    for seg, enc in zip(plan.segments[:2], (LOSSLESS, EncodeOptions(encoder="libx264", closed_gop=True))):
        desc = worker.run(SegmentTask(job=job, job_key="k", folder=tmp_path, segment=seg, encode=enc,
                                      time_base=plan.time_base))
        paths.append(Path(desc.path))
    with pytest.raises(OutputError, match="encoded differently"):
        join_segments(clips["cfr"], paths, tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


# ------------------------------------------------------------------------------- the driver


def invert_stages(job: Job, fps: float) -> list[Any]:
    """A stand-in swap: every frame inverted, one "face" swapped per frame (so the driver joins
    the segments instead of copying the target through)."""
    from swapline.pipeline.stages import Stage

    def invert(batch: list[Any]) -> list[Any]:
        for work in batch:
            work.output = 255 - work.image
            work.chosen = [None]
        return batch

    return [Stage("invert", invert)]


#: lossless H.264 (CRF 0) for outputs compared frame for frame: PyAV's libx264 can encode the same
#: frames to different files from run to run (its output depends on the state of the heap)
EXACT_VIDEO = VideoConfig(encoder="libx264", quality=0)


def _jobs(clips: dict[str, Path], out: Path) -> list[Job]:
    out.mkdir(exist_ok=True)
    return [Job(sources=(clips["cfr"],), target=clips[k], output=out / f"{k}.mp4", video=EXACT_VIDEO)
            for k in ("cfr", "vfr", "open")]


def test_driver_runs_resumes_and_redoes_nothing(clips: dict[str, Path], tmp_path: Path) -> None:
    jobs = _jobs(clips, tmp_path / "out")
    opts = BatchOptions(segment_seconds=0.5, warmup_seconds=0.2, keep_segments=True)
    events: list[tuple[int, JobEvent]] = []
    with InProcessExecutor(WorkerSettings(stages=invert_stages)) as ex:
        report = BatchDriver(ex, opts, on_event=lambda n, e: events.append((n, e))).run(jobs)
        assert [j.state for j in report.jobs] == ["done"] * 3, report.to_dict()
        for job, summary in zip(jobs, report.jobs):
            assert summary.frames == 60 and summary.segments >= 3 and summary.segments_run == summary.segments
            assert summary.swapped == 60 and not summary.copied_through and summary.retries == 0
            src, out = decoded(job.target), decoded(job.output)
            assert [t for t, _ in out] == [t for t, _ in src]
            assert np.mean([np.abs(255 - a.astype(int) - b).mean() for (_, a), (_, b) in zip(src, out)]) < 3
            assert packets(job.output, "audio") == packets(job.target, "audio")
        for n in range(3):  # the job core's events, per job, one final event
            kinds = [e.kind for m, e in events if m == n]
            assert kinds[0] == "started" and kinds[-1] == "done" and kinds.count("done") == 1
            assert [e for m, e in events if m == n][-2].done == 60
        d = report.to_dict()
        assert d["frames"] == 180 and d["done"] == 3 and d["failed"] == 0 and d["segments_run"] >= 9
        json.dumps(d)

        # a second run of the same batch redoes nothing
        mtimes = [j.output.stat().st_mtime_ns for j in jobs]
        again = BatchDriver(ex, opts).run(jobs)
        assert [j.state for j in again.jobs] == ["skipped"] * 3
        assert sum(j.segments_run for j in again.jobs) == 0
        assert [j.output.stat().st_mtime_ns for j in jobs] == mtimes

        # a lost output is joined again from the segments; a segment whose descriptor was never
        # recorded (a driver that died) is adopted after validation, not swapped again
        first, before = report.jobs[0], decoded(jobs[0].output)
        jobs[0].output.unlink()
        folder = next(p for p in (tmp_path / "out" / ".swapline-batch").iterdir()
                      if json.loads((p / "job.json").read_text())["job"]["target"] == str(jobs[0].target))
        (folder / "seg-00001.json").unlink()
        third = BatchDriver(ex, opts).run(jobs)
        assert [j.state for j in third.jobs] == ["done", "skipped", "skipped"]
        assert third.jobs[0].segments_run == 0 and third.jobs[0].segments_reused == first.segments
        after = decoded(jobs[0].output)
        assert [t for t, _ in after] == [t for t, _ in before]
        assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(after, before))


def test_driver_reports_failures_as_one_line_and_goes_on(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    jobs = _jobs(clips, out)
    jobs[1] = dataclasses.replace(jobs[1], target=tmp_path / "missing.mp4")
    (out / "open.mp4").write_bytes(b"not ours")  # exists, no --force
    with InProcessExecutor(WorkerSettings(stages=invert_stages)) as ex:
        report = BatchDriver(ex, BatchOptions(segment_seconds=0.5)).run(jobs)
    states = [(j.state, j.error_type) for j in report.jobs]
    assert states == [("done", ""), ("failed", "InputError"), ("failed", "OutputError")]
    for j in report.jobs[1:]:
        assert j.error and "\n" not in j.error and j.exit_code in (2, 3)
    assert (out / "open.mp4").read_bytes() == b"not ours"


def test_cancel_stops_the_batch_and_leaves_no_output(clips: dict[str, Path], tmp_path: Path) -> None:
    from swapline.errors import JobCancelled
    from swapline.jobs.events import CancelToken

    jobs = _jobs(clips, tmp_path / "out")
    token = CancelToken()
    kinds: list[tuple[int, str]] = []

    def on_event(n: int, event: JobEvent) -> None:
        kinds.append((n, event.kind))
        if event.kind == "progress":
            token.cancel()

    with InProcessExecutor(WorkerSettings(stages=invert_stages)) as ex, pytest.raises(JobCancelled):
        BatchDriver(ex, BatchOptions(segment_seconds=0.5), on_event=on_event).run(jobs, token)
    assert [k for n, k in kinds if k in ("done", "failed", "cancelled")] == ["cancelled"] * 3
    assert not [p.name for p in (tmp_path / "out").iterdir() if p.suffix == ".mp4"]
    assert not [p for p in (tmp_path / "out").rglob("*.part*")]


def test_a_faceless_video_is_copied_through(clips: dict[str, Path], tmp_path: Path) -> None:
    job = Job(sources=(clips["cfr"],), target=clips["open"], output=tmp_path / "o.mp4")
    with InProcessExecutor(WorkerSettings(stages=passthrough_stages)) as ex:
        report = BatchDriver(ex, BatchOptions(segment_seconds=0.5)).run([job])
    assert report.jobs[0].copied_through and any("copied unchanged" in w for w in report.jobs[0].warnings)
    assert packets(job.output, "video") == packets(job.target, "video")


def test_cluster_runner_serves_the_job_queue(clips: dict[str, Path], tmp_path: Path) -> None:
    from swapline.jobs.store import JobStore
    from swapline.jobs.worker import JobWorker

    job = Job(sources=(clips["cfr"],), target=clips["vfr"], output=tmp_path / "o.mp4",
              video=VideoConfig(encoder="libx264"))
    executor = InProcessExecutor(WorkerSettings(stages=invert_stages))
    runner = ClusterRunner(executor, BatchOptions(segment_seconds=0.5))
    with JobStore(tmp_path / "jobs.sqlite") as store, runner:
        record = store.submit(job)
        assert JobWorker(store, runner).run_pending() == 1
        done = store.get(record.id)
        assert done is not None and done.state == "done", done
        kinds = [e.kind for _, e in store.events(record.id)]
        assert kinds[0] == "started" and kinds[-1] == "done" and "progress" in kinds
    assert len(decoded(job.output)) == 60


def test_local_pool_restarts_a_worker_that_dies_mid_segment(clips: dict[str, Path], tmp_path: Path) -> None:
    jobs = _jobs(clips, tmp_path / "ref")[:2]
    opts = BatchOptions(segment_seconds=0.5, warmup_seconds=0.2)
    with InProcessExecutor(WorkerSettings(stages=invert_stages)) as ex:
        BatchDriver(ex, opts).run(jobs)
    crash_jobs = [dataclasses.replace(j, output=tmp_path / "crash" / j.output.name) for j in jobs]
    (tmp_path / "crash").mkdir()
    flag = tmp_path / "die.flag"
    flag.write_text("the first worker to see this exits mid-segment")
    with LocalExecutor(workers=2, settings=WorkerSettings(stages=invert_stages, fault_flag=str(flag))) as pool:
        report = BatchDriver(pool, opts).run(crash_jobs)
    assert not flag.exists()
    assert [j.state for j in report.jobs] == ["done", "done"], report.to_dict()
    assert sum(j.retries for j in report.jobs) == 1
    for a, b in zip(jobs, crash_jobs):
        assert same_frames(a.output, b.output)
    assert not [p for p in (tmp_path / "crash").rglob("*.part*")]  # the dead worker's temporary file swept


# ------------------------------------------------------------------------------- inputs


def test_manifest_and_folder_inputs(tmp_path: Path) -> None:
    (tmp_path / "v").mkdir()
    for name in ("b.mp4", "a.mov", "notes.txt"):
        (tmp_path / "v" / name).write_bytes(b"x")
    face = tmp_path / "face.jpg"
    face.write_bytes(b"x")
    jobs = read_batch(tmp_path / "v", sources=[face])
    assert [j.target.name for j in jobs] == ["a.mov", "b.mp4"]
    assert [j.output for j in jobs] == [tmp_path / "v" / "swapped" / "a.mov", tmp_path / "v" / "swapped" / "b.mp4"]
    with pytest.raises(ConfigError, match="-s SOURCE"):
        read_batch(tmp_path / "v")

    lines = [{"source": "face.jpg", "target": "v/a.mov", "output": "o/a.mp4"},
             {"sources": ["face.jpg", "face.jpg"], "target": "v/b.mp4", "options": {"face_selector_mode": "many"}}]
    (tmp_path / "m.jsonl").write_text("# jobs\n" + "\n".join(json.dumps(x) for x in lines) + "\n\n")
    jobs = read_batch(tmp_path / "m.jsonl", output_dir=tmp_path / "outs")
    assert jobs[0].output == tmp_path / "o" / "a.mp4" and jobs[1].output == tmp_path / "outs" / "b.mp4"
    assert jobs[1].config.face_selector_mode == "many" and len(jobs[1].sources) == 2
    (tmp_path / "m.json").write_text(json.dumps({"jobs": lines}))
    assert [j.target for j in read_batch(tmp_path / "m.json")] == [j.target for j in jobs]

    for bad, match in (('{"target": "v/a.mov"}', "line 1: no source"),
                       ('{"source": "f", "target": "v/a.mov", "options": {"nope": 1}}', "unknown option"),
                       ('{"source": "f", "target": "v/a.mov", "extra": 1}', "unknown field"),
                       ("[1", "not JSON")):
        (tmp_path / "bad.jsonl").write_text(bad)
        with pytest.raises(ConfigError, match=match):
            read_batch(tmp_path / "bad.jsonl")
    (tmp_path / "dup.jsonl").write_text("\n".join(json.dumps({"source": "f", "target": t, "output": "o.mp4"})
                                                  for t in ("v/a.mov", "v/b.mp4")))
    with pytest.raises(ConfigError, match="two jobs write"):
        read_batch(tmp_path / "dup.jsonl")
    with pytest.raises(InputError):
        read_batch(tmp_path / "nothing.jsonl")


# ------------------------------------------------------------------- real swaps: CLI, Ray


def _media(name: str) -> Path:
    path = MEDIA / name
    if not path.exists():
        pytest.skip(f"test media {name} not found in {MEDIA}")
    return path


def _landmark_steps(session: Any, frames: list[np.ndarray]) -> list[float]:
    """Mean landmark motion between consecutive frames of the largest face, in face sizes."""
    meshes = []
    for image in frames:
        faces = session.analyse(image)
        assert faces, "a face in every frame"
        face = max(faces, key=lambda f: float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])))
        meshes.append(np.asarray(face.mesh)[:, :2])
    size = float(np.sqrt(np.prod(meshes[0].max(0) - meshes[0].min(0))))
    return [float(np.linalg.norm(b - a, axis=1).mean()) / size for a, b in zip(meshes, meshes[1:])]


def test_cli_batch_swaps_the_talking_clip_without_jumps_at_borders(tmp_path: Path, model_home: Path,
                                                                   session: Any) -> None:
    from swapline import cli

    clip = cut_real_clip(_media(TALKING), tmp_path / "talking.mp4", gop=36)  # keyframes every 1.2 s
    source = _media(SOURCE)
    manifest = tmp_path / "jobs.jsonl"
    photo = _media("src_biden.jpg")  # an image target runs whole, through the job core, on a worker
    manifest.write_text(json.dumps({"source": str(source), "target": "talking.mp4", "output": "out/talking.mp4"})
                        + "\n" + json.dumps({"source": str(source), "target": str(photo), "output": "out/biden.jpg"}))
    report_path = tmp_path / "report.json"
    # lossless, so that the landmark steps measure the swap, not the encoder's noise
    code = cli.main(["batch", str(manifest), "--workers", "2", "--segment-seconds", "2.4", "--report",
                     str(report_path), "--output-video-encoder", "libx264", "--output-video-quality", "0",
                     "--progress", "never", "-q"])
    assert code == 0
    report = json.loads(report_path.read_text())
    job = report["jobs"][0]
    assert job["state"] == "done" and job["segments"] == 3 and job["frames"] == 216 and job["swapped"] >= 216
    image = report["jobs"][1]
    assert image["state"] == "done" and image["segments"] == 0 and image["swapped"] == 1, image
    assert (tmp_path / "out" / "biden.jpg").is_file()
    assert report["executor"] == "local" and report["workers"] == 2 and len(report["peak_rss_mb"]) >= 1
    out = tmp_path / "out" / "talking.mp4"
    assert packets(out, "audio") == packets(clip, "audio")
    target, swapped = decoded(clip), decoded(out)
    assert [t for t, _ in swapped] == [t for t, _ in target]

    plan = plan_segments(scan_video(clip), segment_seconds=2.4)
    borders = [s.start_index for s in plan.segments[1:]]
    assert borders == [72, 144]
    for b in borders:  # frames b-11 .. b+10: 10 steps inside each segment around the border step
        steps = _landmark_steps(session, [img for _, img in swapped[b - 11:b + 11]])
        border, inside = steps[10], steps[:10] + steps[11:]
        assert border <= max(inside), (b, border, inside)

    # the CLI says one line per job, and a second run redoes nothing
    code = cli.main(["batch", str(manifest), "--workers", "1", "--segment-seconds", "2.4", "--report",
                     str(report_path), "--output-video-encoder", "libx264", "--output-video-quality", "0",
                     "--progress", "never", "-q"])
    assert code == 0 and [j["state"] for j in json.loads(report_path.read_text())["jobs"]] == ["skipped"] * 2


def _ray_clips(work: Path) -> list[Job]:
    """Three short 240×240 clips of the talking clip (keyframes every 12 frames), one job each."""
    talking, source = _media(TALKING), _media(SOURCE)
    jobs = []
    for i, start in enumerate((0, 60, 120)):
        clip = cut_real_clip(talking, work / f"clip{i}.mp4", gop=12, start=start, frames=48, size=240)
        jobs.append(Job(sources=(source,), target=clip, output=work / "out" / clip.name,
                        video=EXACT_VIDEO))
    return jobs


RAY_OPTIONS = {"segment_seconds": 0.8, "warmup_seconds": 0.4}


def ray_driver(work: Path) -> dict[str, Any]:
    """Inside the namespace: an in-process Ray cluster, three jobs on two actors; then the same
    with a worker that dies on its first segment; then the first batch again."""
    import ray

    from swapline.distributed.ray_executor import RayExecutor

    jobs = [Job.from_dict(d) for d in json.loads((work / "jobs.json").read_text())]
    try:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 2**20, _node_ip_address="127.0.0.1",
                 logging_level="WARNING", log_to_driver=False)
    except Exception as exc:  # noqa: BLE001 - the test skips, saying why
        return {"ray_start_error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    result: dict[str, Any] = {"resources": ray.cluster_resources()}
    flag = work / "die.flag"
    settings = WorkerSettings(runtime=RuntimeConfig(home=Path(os.environ["SWAPLINE_HOME"]), intra_op_threads=1),
                              fault_flag=str(flag))
    started = time.perf_counter()
    with RayExecutor(workers=2, cpus_per_worker=1, gpus_per_worker=0, settings=settings) as pool:
        first = BatchDriver(pool, BatchOptions(**RAY_OPTIONS, work_dir=work / "w1")).run(jobs)
        result["first"] = first.to_dict()
        flag.write_text("die")
        crash_jobs = [dataclasses.replace(j, output=work / "crash" / j.output.name) for j in jobs]
        (work / "crash").mkdir()
        result["crash"] = BatchDriver(pool, BatchOptions(**RAY_OPTIONS, work_dir=work / "w2")).run(crash_jobs).to_dict()
        result["flag_left"] = flag.exists()
        result["again"] = BatchDriver(pool, BatchOptions(**RAY_OPTIONS, work_dir=work / "w1")).run(jobs).to_dict()
    result["seconds"] = time.perf_counter() - started
    ray.shutdown()
    return result


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'swapline[ray]')")
def test_ray_batch_matches_the_local_run_survives_a_crash_and_resumes(tmp_path: Path, model_home: Path) -> None:
    from swapline.models.store import ModelStore

    ModelStore(RuntimeConfig(home=model_home), progress=False).prepare()
    jobs = _ray_clips(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "jobs.json").write_text(json.dumps([j.to_dict() for j in jobs]))
    env = {**os.environ, "SWAPLINE_HOME": str(model_home), "PYTHONPATH": str(REPO), "RAY_AUTH_MODE": "disabled"}
    driver = [sys.executable, str(Path(__file__).resolve()), "--ray-driver", str(tmp_path)]
    driver = isolated(driver)  # its own network namespace where the system allows one
    proc = subprocess.run(driver, check=False, env=env, capture_output=True, text=True, timeout=240, cwd=REPO)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads((tmp_path / "result.json").read_text())
    if "ray_start_error" in result:
        pytest.skip(f"Ray cannot start here: {result['ray_start_error']}")

    first, crash, again = result["first"], result["crash"], result["again"]
    assert first["executor"] == "ray" and first["workers"] == 2 and first["done"] == 3, first
    assert all(j["segments"] == 2 and j["frames"] == 48 and j["swapped"] > 0 for j in first["jobs"])
    assert len(first["peak_rss_mb"]) == 2  # both actors worked
    assert crash["done"] == 3 and crash["retries"] == 1 and not result["flag_left"], crash
    assert again["skipped"] == 3 and again["segments_run"] == 0

    local_jobs = [dataclasses.replace(j, output=tmp_path / "local" / j.output.name) for j in jobs]
    (tmp_path / "local").mkdir()
    settings = WorkerSettings(runtime=RuntimeConfig(home=model_home, intra_op_threads=1))
    with LocalExecutor(workers=2, settings=settings) as pool:
        local = BatchDriver(pool, BatchOptions(**RAY_OPTIONS)).run(local_jobs)
    assert [j.state for j in local.jobs] == ["done"] * 3
    for job, local_job in zip(jobs, local_jobs):
        assert same_frames(job.output, local_job.output)  # actors swap what the local pool swaps
        assert same_frames(job.output, tmp_path / "crash" / job.output.name)  # a crash changes nothing
        assert packets(job.output, "audio") == packets(job.target, "audio")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--ray-driver":
        work = Path(sys.argv[2])
        (work / "result.json").write_text(json.dumps(ray_driver(work)))
        sys.exit(0)
    sys.exit(2)
