"""``swapline jobs list | submit | run | retry | cancel | delete``: the job queue on the command line.

The same SQLite store the server uses (``<swapline home>/jobs/jobs.sqlite`` unless ``--store``),
for headless batch work: queue swaps with ``submit``, then ``run`` them in the foreground; a
running server (or another ``jobs run``) drains the same queue.

``register(subparsers)`` adds the command to the main parser; ``run(args, runtime)`` carries it
out and returns the exit code. Errors are :class:`~swapline.errors.SwaplineError`s that the main
CLI prints as one line (an unknown job id: exit 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..config import RuntimeConfig
from ..errors import ConfigError, InputError, OutputError
from ..jobs.job import Job
from ..jobs.store import JOB_STATES, JobRecord, JobStore, default_store_path
from .options import (
    add_runtime_options,
    add_swap_options,
    add_video_options,
    image_limits,
    pixel_count,
    stderr_is_terminal,
    swap_config_from_args,
    video_config_from_args,
)

JOBS_COMMANDS = ("list", "submit", "run", "retry", "cancel", "delete")


def register(subparsers: Any) -> None:
    """Add ``jobs`` with its sub-commands to an ``argparse`` sub-parser collection."""
    parser = subparsers.add_parser(
        "jobs",
        help="queue swaps and run them: list, submit, run, retry, cancel, delete",
        description="A persistent job queue (SQLite, shared with 'swapline serve'): submit swaps, run "
                    "them in the foreground, and see, retry, cancel or delete them.",
    )
    sub = parser.add_subparsers(dest="jobs_command", metavar="{" + ",".join(JOBS_COMMANDS) + "}")
    sub.required = True
    _add_list(sub)
    _add_submit(sub)
    _add_run(sub)
    for name, text in (("retry", "queue a failed or cancelled job again"),
                       ("cancel", "cancel a queued job, or stop a running one within a frame batch"),
                       ("delete", "remove a job that is not running (and the files the store keeps for it)")):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("job_id", metavar="ID", help="the job's id (see 'swapline jobs list')")
        _add_common(p)


def _add_list(sub: Any) -> None:
    p = sub.add_parser("list", help="show the jobs, newest first",
                       description="Show the jobs, newest first: id, state, progress, age, target → output.")
    p.add_argument("--state", action="append", choices=JOB_STATES, metavar="STATE",
                   help=f"only jobs in this state ({', '.join(JOB_STATES)}); may be repeated")
    p.add_argument("--limit", type=int, default=200, metavar="N", help="at most N jobs (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print the jobs as a JSON array")
    _add_common(p)


def _add_submit(sub: Any) -> None:
    p = sub.add_parser("submit", help="queue a swap (the options of 'swapline swap'); prints its id",
                       description="Queue the swap of SOURCE into TARGET, written to OUTPUT, with the options "
                                   "of 'swapline swap'. Prints the job's id. Paths are stored absolute.",
                       epilog="Example: swapline jobs submit -s face.jpg -t clip.mp4 -o out.mp4 && swapline jobs run")
    p.add_argument("-s", "--source", nargs="+", action="extend", required=True, type=Path, metavar="SOURCE",
                   help="source image(s) of one person; several are averaged into one identity")
    p.add_argument("-t", "--target", required=True, type=Path, help="target image or video")
    p.add_argument("-o", "--output", required=True, type=Path,
                   help="output image or video; written to a temporary name and renamed when complete")
    p.add_argument("-f", "--force", action="store_true", help="overwrite OUTPUT if it exists when the job runs")
    p.add_argument("--output-image-quality", type=int, default=95, metavar="Q",
                   help="JPEG/WebP quality 1..100 (default: %(default)s)")
    p.add_argument("--max-pixels", type=pixel_count, default=image_limits()[0], metavar="N",
                   help="refuse images larger than N pixels (k/M/G suffixes; default: %(default)s)")
    add_swap_options(p)
    add_video_options(p)
    _add_common(p)


def _add_run(sub: Any) -> None:
    p = sub.add_parser("run", help="run every queued job in the foreground, one at a time",
                       description="Run the queued jobs one at a time until none is left, one line per "
                                   "job. Exit code 0 when all are done, else the first failure's code.")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    _add_common(p, runtime=False)
    add_runtime_options(p)


def _add_common(p: argparse.ArgumentParser, *, runtime: bool = True) -> None:
    """``--store``, and the runtime options' defaults where the command takes none (the main CLI
    builds a RuntimeConfig for every command)."""
    p.add_argument("--store", type=Path, metavar="PATH",
                   help="the job store file (default: <swapline home>/jobs/jobs.sqlite)")
    if runtime:
        p.set_defaults(**_runtime_defaults())


def _runtime_defaults() -> dict[str, Any]:
    probe = argparse.ArgumentParser(add_help=False)
    add_runtime_options(probe)
    return vars(probe.parse_args([]))


# ---------------------------------------------------------------------------------------- running


def run(args: argparse.Namespace, runtime: RuntimeConfig, *, out: TextIO | None = None) -> int:
    """Carry out ``args.jobs_command``; returns the exit code."""
    stream = out if out is not None else sys.stdout
    command = getattr(args, "jobs_command", None) or "list"
    with JobStore(store_path(args, runtime)) as store:
        if command == "list":
            return _list(store, args, stream)
        if command == "submit":
            return _submit(store, args, stream)
        if command == "run":
            return _run(store, runtime, quiet=bool(getattr(args, "quiet", False)), out=stream)
        if command == "retry":
            record = _known(store.retry, args.job_id)
            print(f"{record.id}  queued again", file=stream)
            return 0
        if command == "cancel":
            record = _known(store.request_cancel, args.job_id)
            print(f"{record.id}  {_cancel_line(record)}", file=stream)
            return 0
        if command == "delete":
            _known(store.delete, args.job_id)
            print(f"{args.job_id}  deleted", file=stream)
            return 0
    raise ConfigError(f"unknown jobs command {command!r}")


def store_path(args: argparse.Namespace, runtime: RuntimeConfig) -> Path:
    """``--store``, else the default store in the swapline home (``SWAPLINE_HOME``)."""
    from ..models.store import default_root

    given = getattr(args, "store", None)
    return Path(given).absolute() if given is not None else default_store_path(default_root(runtime).absolute())


def _known(action: Any, job_id: str) -> Any:
    """``action(job_id)``, an unknown id (KeyError) or a refused change (ValueError) as one-line
    errors (exit 2)."""
    try:
        return action(job_id)
    except KeyError:
        raise ConfigError(f"no job with id {job_id!r} (see 'swapline jobs list')") from None
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _cancel_line(record: JobRecord) -> str:
    if record.state == "cancelled":
        return "cancelled"
    if record.state == "running":
        return "cancel asked; the worker running it stops it within a frame batch"
    return f"already {record.state}; nothing to cancel"


def _list(store: JobStore, args: argparse.Namespace, out: TextIO) -> int:
    records = store.list(args.state, limit=args.limit)
    if args.json:
        print(json.dumps([r.to_dict() for r in records], indent=2), file=out)
    elif records:
        print(format_records(records), file=out)
    else:
        print("no jobs", file=out)
    return 0


def _submit(store: JobStore, args: argparse.Namespace, out: TextIO) -> int:
    job = job_from_args(args)
    record = store.submit(job)
    print(record.id, file=out)
    return 0


def job_from_args(args: argparse.Namespace) -> Job:
    """The :class:`Job` of ``jobs submit``'s arguments, paths absolute. Checks what can be
    checked before the job runs: the inputs are files, the output's folder exists, the options.

    Raises:
        InputError: a source or the target is not a file (exit 2).
        OutputError: the output's folder does not exist, or the output exists without
            ``--force`` (exit 3).
        ConfigError: a bad option (exit 2).
    """
    from ..pipeline.image import check_max_pixels

    sources = tuple(Path(p).absolute() for p in args.source)
    target = Path(args.target).absolute()
    output = Path(args.output).absolute()
    for path in (*sources, target):
        if not path.is_file():
            raise InputError(f"not a file: {path}")
    if not output.parent.is_dir():
        raise OutputError(f"output folder does not exist: {output.parent}")
    if output.exists() and not args.force:
        raise OutputError(f"output exists: {output} (use --force to overwrite it)")
    return Job(sources=sources, target=target, output=output, config=swap_config_from_args(args),
               video=video_config_from_args(args), force=bool(args.force), quality=args.output_image_quality,
               max_pixels=check_max_pixels(args.max_pixels))


def _run(store: JobStore, runtime: RuntimeConfig, *, quiet: bool, out: TextIO) -> int:
    """``jobs run``: every queued job, one line each; 0 if all done, else the first failure's code."""
    from ..jobs.runner import Runner
    from ..jobs.worker import JobWorker

    codes: list[int] = []

    def report(record: JobRecord) -> None:
        codes.append(record.exit_code if record.exit_code is not None else 1)
        if not quiet or record.state != "done":
            print(summary_line(record), file=out if record.state == "done" else sys.stderr, flush=True)

    runner = Runner(runtime, progress=not quiet and stderr_is_terminal())
    try:
        count = JobWorker(store, runner).run_pending(on_finish=report)
    finally:
        runner.close()
    if count == 0 and not quiet:
        print("no queued jobs", file=out)
    return next((c for c in codes if c != 0), 0)


def summary_line(record: JobRecord) -> str:
    """One line for a finished job: state, id, target → output, time, and the error if any."""
    took = f"{record.finished - record.started:.1f} s" if record.finished and record.started else "-"
    line = f"{record.state:<9} {record.id}  {record.job.target.name} → {record.job.output}  ({took})"
    if record.state == "failed":
        line += f": {record.error} (exit {record.exit_code})"
    return line


def format_records(records: Sequence[JobRecord]) -> str:
    """A plain-text table: id, state, progress, age, target → output, error."""
    now = time.time()
    header = ("id", "state", "progress", "age", "job")
    rows = [header] + [
        (r.id, r.state + (" (cancel asked)" if r.cancel_requested and r.state == "running" else ""),
         _progress(r), _age(now - r.created),
         f"{r.job.target.name} → {r.job.output}" + (f"  [{r.error}]" if r.error else ""))
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    return "\n".join("  ".join([c.ljust(w) for c, w in zip(row[:-1], widths, strict=True)] + [row[-1]]).rstrip()
                     for row in rows)


def _progress(record: JobRecord) -> str:
    if record.total:
        return f"{100 * record.fraction:.0f}% {record.done}/{record.total}"
    return "100%" if record.state == "done" else "-"


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"
