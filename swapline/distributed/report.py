"""A batch's report: one summary per job and the totals, as JSON."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .manifest import write_json_atomic


@dataclass(frozen=True)
class JobSummary:
    """One job's line of the report.

    Attributes:
        state: ``done``, ``skipped`` (done by an earlier run), ``failed`` or ``cancelled``.
        frames: frames in the output. segments: segments planned (0: run whole).
        segments_run: tasks this run gave to workers. segments_reused: finished by an earlier run.
        retries: task starts beyond the first (workers that died mid-segment).
        seconds: wall time from the batch's start to the job's end. fps: frames / seconds.
        worker_fps: frames / the workers' summed time on the job.
        plan_seconds, join_seconds: the driver's time to scan and plan, and to join.
        preroll_frames: warm-up frames run and not written (the pre-roll's cost).
        swapped: faces swapped, summed over frames. copied_through: no face swapped anywhere, the
        target was copied through. error: a one-line message (failed jobs); error_type: its kind.
        workers: the workers that ran its segments.
    """

    target: str
    output: str
    state: str
    frames: int = 0
    segments: int = 0
    segments_run: int = 0
    segments_reused: int = 0
    retries: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    worker_fps: float = 0.0
    plan_seconds: float = 0.0
    join_seconds: float = 0.0
    preroll_frames: int = 0
    swapped: int = 0
    copied_through: bool = False
    error: str = ""
    error_type: str = ""
    exit_code: int = 0
    warnings: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["warnings"], out["workers"] = list(self.warnings), list(self.workers)
        for k in ("seconds", "fps", "worker_fps", "plan_seconds", "join_seconds"):
            out[k] = round(out[k], 3)
        return out


@dataclass(frozen=True)
class BatchReport:
    """What a batch did: per-job summaries and totals (see :meth:`to_dict`)."""

    jobs: tuple[JobSummary, ...]
    executor: str
    workers: int
    seconds: float
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return sum(j.frames for j in self.jobs if j.state == "done")

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> tuple[JobSummary, ...]:
        return tuple(j for j in self.jobs if j.state in ("failed", "cancelled"))

    def to_dict(self) -> dict[str, Any]:
        return {"executor": self.executor, "workers": self.workers, "seconds": round(self.seconds, 3),
                "frames": self.frames, "fps": round(self.fps, 2),
                "done": sum(j.state == "done" for j in self.jobs),
                "skipped": sum(j.state == "skipped" for j in self.jobs),
                "failed": len(self.failed), "retries": sum(j.retries for j in self.jobs),
                "segments_run": sum(j.segments_run for j in self.jobs),
                "peak_rss_mb": {k: round(v, 1) for k, v in self.peak_rss_mb.items()},
                "jobs": [j.to_dict() for j in self.jobs]}

    def write(self, path: Path) -> None:
        """The report as JSON at ``path`` (temporary name, then renamed)."""
        write_json_atomic(Path(path), self.to_dict())


def report_json(report: BatchReport) -> str:
    """The report as indented JSON text."""
    return json.dumps(report.to_dict(), indent=1)
