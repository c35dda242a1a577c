"""``swapline batch MANIFEST|FOLDER``: many jobs and long videos on a local process pool or on Ray.

Every video is cut at keyframes into segments (``--segment-seconds``), the segments of all jobs
go through one queue to the workers (each keeps its models loaded), and each job's segments are
joined by remuxing packets, with the audio copied once. Without ``--ray`` the workers are local
processes; ``--ray local`` starts an in-process Ray cluster, ``--ray ADDRESS`` uses a running
one (every node needs swapline and the files at the same paths; ``--work-dir`` on shared
storage). A second run of the same batch redoes nothing that is done, and resumes what is not.

``register(subparsers)`` adds the command to the main parser; ``run(args, runtime)`` carries it
out and returns the exit code: 0 when every job is done, else the first failed job's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from ..config import RuntimeConfig
from ..errors import ConfigError
from .options import (
    add_progress_option,
    add_runtime_options,
    add_swap_options,
    add_video_options,
    show_progress,
    swap_config_from_args,
    video_config_from_args,
)


def register(subparsers: Any) -> None:
    """Add ``batch`` (with the swap, video and runtime options) to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "batch",
        help="swap many videos (or long ones) on a local process pool or a Ray cluster",
        description="Swap every job of MANIFEST (JSON lines or JSON: source, target, output per job) or every "
                    "video of FOLDER (with -s SOURCE). Videos are cut at keyframes into segments that workers "
                    "swap in parallel, each keeping its models loaded, and joined back frame- and "
                    "timestamp-exact with the audio copied once. A second run redoes nothing that is done.",
        epilog="Examples: swapline batch clips/ -s face.jpg --workers 2;  "
               "swapline batch jobs.jsonl --ray auto --gpus-per-worker 0.5 --report report.json",
    )
    p.add_argument("batch", type=Path, metavar="MANIFEST|FOLDER",
                   help="a manifest (.jsonl: one {\"source\", \"target\", \"output\"} a line; .json: a list) "
                        "or a folder of videos")
    p.add_argument("-s", "--source", nargs="+", action="extend", type=Path, default=[], metavar="SOURCE",
                   help="source image(s) for the jobs that name none (every video of a FOLDER)")
    p.add_argument("--output-dir", type=Path, metavar="DIR",
                   help="where outputs go when a job names none (default: <FOLDER or manifest's folder>/swapped)")
    p.add_argument("-f", "--force", action="store_true",
                   help="overwrite outputs that exist (not written by this batch)")
    g = p.add_argument_group("scale-out")
    g.add_argument("--ray", metavar="ADDRESS",
                   help="run on Ray: 'local' (an in-process cluster on this machine) or a cluster's address "
                        "('auto', 'host:6379', 'ray://host:10001'); default: a local process pool")
    g.add_argument("--workers", type=int, default=0, metavar="N",
                   help="workers, each with its models loaded (default: local: one per two cores; Ray: as many "
                        "as the cluster's GPUs or CPUs allow)")
    g.add_argument("--segment-seconds", type=float, default=20.0, metavar="S",
                   help="cut videos into segments of about S seconds, at keyframes (default: %(default)s)")
    g.add_argument("--preroll-seconds", type=float, default=1.0, metavar="S",
                   help="frames before each segment run through the tracker and smoothing, not written, so faces "
                        "do not jump at a border (default: %(default)s)")
    g.add_argument("--gpus-per-worker", type=float, default=None, metavar="F",
                   help="Ray: GPUs per worker, 1 or a fraction (0.5: two workers share a GPU) (default: 1 when "
                        "the cluster has GPUs, else 0)")
    g.add_argument("--cpus-per-worker", type=float, default=None, metavar="C",
                   help="Ray: CPUs per worker (default: 2)")
    g.add_argument("--max-restarts", type=int, default=3, metavar="N",
                   help="times a worker that died is started again (default: %(default)s)")
    g.add_argument("--max-task-retries", type=int, default=3, metavar="N",
                   help="times a segment whose worker died is run again (default: %(default)s)")
    g.add_argument("--work-dir", type=Path, metavar="DIR",
                   help="where segments and the resume records go; shared storage on a cluster (default: "
                        "<each output's folder>/.swapline-batch)")
    g.add_argument("--keep-segments", action="store_true", help="keep the segment files after the join")
    g.add_argument("--report", type=Path, metavar="FILE", help="write the batch's report as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    add_progress_option(p)
    add_swap_options(p)
    add_video_options(p)
    add_runtime_options(p)


def run(args: argparse.Namespace, runtime: RuntimeConfig, *, out: TextIO | None = None) -> int:
    """Run the batch; print one line per job and a summary (see the module's docs)."""
    from ..distributed.batch import BatchDriver, BatchOptions
    from ..distributed.inputs import read_batch
    from ..distributed.segment import WorkerSettings

    stream = out if out is not None else sys.stdout
    if args.workers < 0:
        raise ConfigError(f"--workers must be 0 (automatic) or more (got {args.workers})")
    options = BatchOptions(segment_seconds=args.segment_seconds, warmup_seconds=args.preroll_seconds,
                           work_dir=args.work_dir.absolute() if args.work_dir is not None else None,
                           keep_segments=args.keep_segments)
    jobs = read_batch(args.batch, sources=[p.absolute() for p in args.source],
                      output_dir=args.output_dir.absolute() if args.output_dir is not None else None,
                      config=swap_config_from_args(args), video=video_config_from_args(args), force=args.force)
    jobs = [_absolute(job) for job in jobs]
    for folder in sorted({j.output.parent for j in jobs}):
        folder.mkdir(parents=True, exist_ok=True)
    settings = WorkerSettings(runtime=runtime)
    executor = _executor(args, settings)
    try:
        driver = BatchDriver(executor, options, progress=show_progress(args.progress, quiet=args.quiet))
        report = driver.run(jobs)
    finally:
        executor.close()
    if args.report is not None:
        report.write(args.report)
    if not args.quiet:
        for job in report.jobs:
            print(_job_line(job), file=stream)
        retries = sum(j.retries for j in report.jobs)
        print(f"batch: {sum(j.state in ('done', 'skipped') for j in report.jobs)} of {len(report.jobs)} job(s) done "
              f"({sum(j.state == 'skipped' for j in report.jobs)} already), {report.frames} frames in "
              f"{report.seconds:.1f} s ({report.fps:.1f} fps) on {report.workers} {report.executor} worker(s)"
              f"{f', {retries} retried segment(s)' if retries else ''}", file=stream)
    for job in report.jobs:
        if job.state == "failed":
            print(f"swapline: error: {job.target}: {job.error}", file=sys.stderr)
    failed = [j for j in report.jobs if j.state in ("failed", "cancelled")]
    return (failed[0].exit_code or 1) if failed else 0


def _absolute(job: Any) -> Any:
    import dataclasses

    return dataclasses.replace(job, sources=tuple(Path(p).absolute() for p in job.sources),
                               target=Path(job.target).absolute(), output=Path(job.output).absolute())


def _executor(args: argparse.Namespace, settings: Any) -> Any:
    if args.ray is None:
        from ..distributed.local import LocalExecutor, default_workers

        if args.gpus_per_worker is not None or args.cpus_per_worker is not None:
            raise ConfigError("--gpus-per-worker and --cpus-per-worker are for --ray")
        return LocalExecutor(workers=args.workers or default_workers(), settings=settings,
                             max_restarts=args.max_restarts, max_task_retries=args.max_task_retries)
    from ..distributed.ray_executor import RayExecutor

    return RayExecutor(address=args.ray, workers=args.workers, gpus_per_worker=args.gpus_per_worker,
                       cpus_per_worker=args.cpus_per_worker or 2.0, max_restarts=args.max_restarts,
                       max_task_retries=args.max_task_retries, settings=settings)


def _job_line(job: Any) -> str:
    name = Path(job.target).name
    if job.state == "failed":
        return f"failed   {name}: {job.error}"
    if job.state == "cancelled":
        return f"cancelled {name}"
    if job.state == "skipped":
        return f"done     {name} → {job.output} (already done)"
    extra = f", {job.retries} retried" if job.retries else ""
    parts = f"{job.segments} segment(s)" if job.segments else "whole"
    return f"done     {name} → {job.output}: {job.frames} frames, {parts}{extra}, {job.fps:.1f} fps"
