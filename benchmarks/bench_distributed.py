"""Scale-out overhead: one long clip as one job, against the same clip cut into segments on actors.

Makes a ``--seconds`` clip (default 60 s) by looping a shared talking clip (480×480, 30 fps; a
keyframe every 2 s, its audio looped too), then swaps it

1. as one job, in a process of its own (``Runner``: the plain ``swapline swap`` path, every core);
2. cut into ``--segments`` segments (default 4) on ``--workers`` Ray actors (default 2) of a
   local Ray cluster (``swapline batch --ray local``), each actor one CPU and one ONNX Runtime
   thread; with ``--local`` also on the local process pool (``swapline batch`` without Ray).

and prints wall time, frames per second, the overheads as a share of the distributed run (actor
start with model load, the demux-only plan, the pre-roll frames swapped and not written, the
join) and the peak memory of each actor. Prints only; asserts nothing.

    python benchmarks/bench_distributed.py [--seconds 60] [--segments 4] [--workers 2] [--local]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MEDIA = REPO.parent / "shared" / "media"
CLIP = MEDIA / "vid_lp_d18_talking_480.mp4"
SOURCE = MEDIA / "src_obama.jpg"


def make_long_clip(dst: Path, seconds: float, gop_seconds: float = 2.0) -> int:
    """Loop CLIP to ``seconds`` (re-encoded, a keyframe every ``gop_seconds``; audio packets
    looped with shifted times). Returns the frame count."""
    with av.open(str(CLIP)) as inp:
        vin = inp.streams.video[0]
        rate, tb = vin.average_rate, vin.time_base
        frames = [f.reformat(format="yuv420p") for f in inp.decode(vin)]
    with av.open(str(CLIP)) as inp:
        ain = inp.streams.audio[0]
        audio = [p for p in inp.demux(ain) if p.size]
        atb = ain.time_base
    step = round(1 / (rate * tb))
    loop_ticks = len(frames) * step
    total = round(seconds * rate)
    gop = round(gop_seconds * rate)
    with av.open(str(CLIP)) as inp, av.open(str(dst), "w") as out:
        v = out.add_stream("libx264", rate=rate)
        v.width, v.height, v.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        v.time_base = v.codec_context.time_base = tb
        v.options = {"preset": "veryfast", "crf": "20", "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        a = out.add_stream_from_template(inp.streams.audio[0])
        ai = 0
        for i in range(total):
            loop, k = divmod(i, len(frames))
            f = frames[k]
            f.pts, f.time_base = loop * loop_ticks + k * step, tb
            f.pict_type = av.video.frame.PictureType.NONE
            out.mux(v.encode(f))
            now = (i + 1) * step * tb
            while True:  # audio up to this frame's end, looped
                aloop, ak = divmod(ai, len(audio))
                shift = round(aloop * loop_ticks * tb / atb)
                src = audio[ak]
                if (src.pts + shift) * atb >= now:
                    break
                pkt = av.Packet(bytes(src))
                pkt.pts, pkt.dts, pkt.time_base, pkt.stream = src.pts + shift, src.dts + shift, atb, a
                out.mux(pkt)
                ai += 1
        out.mux(v.encode(None))
    return total


def _single(target: str, output: str, home: str, queue: Any) -> None:
    """In a process of its own: the clip as one job (Runner), its figures into ``queue``."""
    from swapline.config import RuntimeConfig, VideoConfig
    from swapline.jobs.job import Job
    from swapline.jobs.runner import Runner

    started = time.perf_counter()
    with Runner(RuntimeConfig(home=Path(home))) as runner:
        _ = runner.session.analyser
        loaded = time.perf_counter() - started
        t = time.perf_counter()
        result = runner.run(Job(sources=(SOURCE,), target=Path(target), output=Path(output), force=True,
                                video=VideoConfig(encoder="libx264")))
        queue.put({"load_s": loaded, "run_s": time.perf_counter() - t, "frames": result.frames,
                   "peak_rss_mb": result.report.peak_rss_mb if result.report else 0.0})


def run_single(target: Path, output: Path, home: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_single, args=(str(target), str(output), str(home), queue))
    proc.start()
    figures = queue.get()
    proc.join()
    return figures


def run_split(kind: str, target: Path, output: Path, home: Path, work: Path, segment_s: float, workers: int
              ) -> dict[str, Any]:
    from swapline.config import RuntimeConfig, VideoConfig
    from swapline.distributed import BatchDriver, BatchOptions, WorkerSettings
    from swapline.jobs.job import Job

    settings = WorkerSettings(runtime=RuntimeConfig(home=home, intra_op_threads=1))
    t0 = time.perf_counter()
    if kind == "ray":
        from swapline.distributed.ray_executor import RayExecutor

        pool: Any = RayExecutor(address="local", workers=workers, cpus_per_worker=1, gpus_per_worker=0,
                                settings=settings, init={"num_cpus": workers, "object_store_memory": 80 * 2**20})
        info = pool.info()  # waits until every actor has loaded its models
    else:
        from swapline.distributed.local import LocalExecutor

        pool = LocalExecutor(workers=workers, settings=settings)
        info = []
    start_s = time.perf_counter() - t0
    job = Job(sources=(SOURCE,), target=target, output=output, force=True, video=VideoConfig(encoder="libx264"))
    t = time.perf_counter()
    try:
        report = BatchDriver(pool, BatchOptions(segment_seconds=segment_s, warmup_seconds=1.0, work_dir=work,
                                                keep_segments=True)).run([job])
    finally:
        pool.close()
    run_s = time.perf_counter() - t
    summary = report.jobs[0]
    folder = next(p for p in work.iterdir() if p.is_dir())
    segs = [json.loads(p.read_text()) for p in sorted(folder.glob("seg-*.json"))]
    return {"start_s": start_s, "run_s": run_s, "summary": summary.to_dict(), "segments": segs,
            "peak_rss_mb": report.peak_rss_mb, "actors": info}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--local", action="store_true", help="also run the local process pool")
    ap.add_argument("--no-ray", action="store_true", help="skip Ray")
    ap.add_argument("--keep", type=Path, help="keep the work in this folder")
    args = ap.parse_args()
    if not CLIP.exists():
        print(f"needs {CLIP}")
        return 2
    from swapline.config import RuntimeConfig
    from swapline.models.store import ModelStore

    tmp = Path(args.keep or tempfile.mkdtemp(prefix="swapline-bench-dist-"))
    tmp.mkdir(parents=True, exist_ok=True)
    home = Path(os.environ.get("SWAPLINE_HOME") or tmp / "home")
    ModelStore(RuntimeConfig(home=home), progress=False).prepare()
    clip = tmp / "long.mp4"
    t = time.perf_counter()
    frames = make_long_clip(clip, args.seconds)
    print(f"clip: {clip.name}, {frames} frames ({args.seconds:g} s, 480×480, 30 fps, keyframe every 2 s), "
          f"made in {time.perf_counter() - t:.1f} s; cores here: {os.cpu_count()}")

    single = run_single(clip, tmp / "single.mp4", home)
    fps1 = single["frames"] / single["run_s"]
    print(f"\n1 job, one process (all cores): {single['run_s']:.1f} s, {fps1:.1f} fps "
          f"(+ {single['load_s']:.1f} s model load), peak {single['peak_rss_mb']:.0f} MiB")

    segment_s = args.seconds / args.segments
    kinds = ([] if args.no_ray else ["ray"]) + (["local"] if args.local else [])
    for kind in kinds:
        r = run_split(kind, clip, tmp / f"{kind}.mp4", home, tmp / f"work-{kind}", segment_s, args.workers)
        s = r["summary"]
        wall = r["run_s"]
        segs = r["segments"]
        work_s = sum(d["seconds"] for d in segs)
        kept = sum(d["frames"] for d in segs)
        pre = sum(d["preroll_frames"] for d in segs)
        per_frame = work_s / max(1, kept + pre)
        pre_s = pre * per_frame  # the pre-roll's share of the workers' time
        label = "Ray actors" if kind == "ray" else "local worker processes"
        print(f"\n{s['segments']} segments on {args.workers} {label} (1 CPU, 1 thread each): "
              f"{wall:.1f} s, {s['frames'] / wall:.1f} fps ({s['frames']} frames), state {s['state']}"
              f"{' ' + s['error'] if s['error'] else ''}")
        print(f"  start of the pool (processes, model load): {r['start_s']:.1f} s"
              f"{' (before the run; not in its time)' if kind == 'ray' else ' (lazy: inside the run)'}")
        print(f"  plan (demux-only scan): {s['plan_seconds']:.3f} s = "
              f"{100 * s['plan_seconds'] / wall:.2f} % of the run")
        print(f"  pre-roll: {pre} frames swapped and not written ({pre / max(1, kept):.1%} more frames), "
              f"≈ {pre_s:.1f} s of worker time = {100 * pre_s / max(1e-9, work_s):.1f} % of it")
        print(f"  join (remux, audio copied once): {s['join_seconds']:.3f} s = "
              f"{100 * s['join_seconds'] / wall:.2f} % of the run")
        print("  segments: " + ", ".join(f"{d['frames']}+{d['preroll_frames']} fr {d['seconds']:.1f} s "
                                          f"({d['worker']})" for d in segs))
        memory = sorted(r["peak_rss_mb"].items())
        print("  peak memory per worker: " + ", ".join(f"{w} {mb:.0f} MiB" for w, mb in memory))
        print(f"  speed-up over 1 job: {fps1 and (s['frames'] / wall) / fps1:.2f}×")
    print(f"\nwork in {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
