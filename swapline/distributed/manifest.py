"""A batch's state on (shared) storage: deterministic paths, segment descriptors, resume.

Every job gets a work folder named by its *key* (a hash of its inputs' paths, sizes and
modification times, its options and the plan's settings), so a changed input or option never
reuses stale work, and a new driver finds what an earlier one finished::

    <work root>/<key>/plan.json          the segments (written once)
                      seg-00003.mp4       a finished segment (temporary name + atomic rename)
                      seg-00003.json      its descriptor, written by the driver once validated
                      seg-00003.attempts  how many times a worker started it
                      result.json         the job is done: the output's size, mtime and sha256

A segment counts as done when its descriptor is there and matches the file (size and sha256);
a file without a descriptor (a worker died after the rename) is described and validated by the
driver and adopted. A job counts as done when ``result.json`` matches its output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..errors import OutputError
from ..tempfiles import temp_name

SEGMENT_EXT = ".mp4"
WORK_FOLDER = ".swapline-batch"


@dataclass(frozen=True)
class SegmentDescriptor:
    """What a worker reports for a finished segment (small; never frames).

    Attributes:
        key: ``<job key>/<segment index>`` (``<job key>/whole`` for a job run whole).
        path: the file written.
        frames: video frames in the file.
        first_pts, last_pts: smallest and largest pts, in the *source's* time base (None for an
            image).
        sha256: hex digest of the file. size: its bytes.
        swapped: faces swapped, summed over frames. preroll_frames: warm-up frames run, not written.
        seconds: the worker's wall time for it. fps: frames / seconds.
        peak_rss_mb: the worker process's peak resident memory so far.
        worker: ``host:pid`` of the worker. attempt: which start of this segment made it (1: first).
        damaged_packets, concealed_frames: damage the decoder met inside the segment.
        warnings: lines the job core reported (whole jobs).
    """

    key: str
    path: str
    frames: int
    first_pts: int | None
    last_pts: int | None
    sha256: str
    size: int
    swapped: int = 0
    preroll_frames: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    worker: str = ""
    attempt: int = 1
    damaged_packets: int = 0
    concealed_frames: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SegmentDescriptor":
        kw = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        kw["warnings"] = tuple(kw.get("warnings", ()))
        return cls(**kw)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def describe_video(path: Path, time_base: Fraction) -> tuple[int, int | None, int | None]:
    """``(frames, first_pts, last_pts)`` of ``path``'s first video stream, by demux only; pts
    rescaled to ``time_base`` (exactly, when the file's time base divides it)."""
    import av

    frames, lo, hi = 0, None, None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.time_base is None:
            raise ValueError(f"{path}: the video stream has no time base")
        tb = Fraction(stream.time_base)
        for packet in container.demux(stream):
            if not packet.size or packet.pts is None:
                continue
            frames += 1
            p = round(packet.pts * tb / time_base)
            lo = p if lo is None else min(lo, p)
            hi = p if hi is None else max(hi, p)
    return frames, lo, hi


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON to a temporary name beside ``path``, then rename it into place.

    Raises:
        OutputError: the folder cannot be written.
    """
    tmp = temp_name(path, unique=True)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when it is missing or unreadable (treated as not done)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def job_key(parts: dict[str, Any]) -> str:
    """A short stable hash of ``parts`` (JSON-ready: paths, sizes, options, plan settings)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def file_identity(path: Path) -> dict[str, Any]:
    """``{"path", "size", "mtime_ns"}`` of a file (the inputs' part of a job key)."""
    st = Path(path).stat()
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


@dataclass(frozen=True)
class JobFolder:
    """The deterministic paths of one job's work (see the module's docs)."""

    root: Path

    @property
    def plan(self) -> Path:
        return self.root / "plan.json"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    def segment(self, index: int) -> Path:
        return self.root / f"seg-{index:05d}{SEGMENT_EXT}"

    def descriptor(self, index: int) -> Path:
        return self.root / f"seg-{index:05d}.json"

    def attempts(self, index: int) -> Path:
        return self.root / f"seg-{index:05d}.attempts"

    def create(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create the work folder {self.root}: {exc.strerror or exc}") from exc

    def count_attempt(self, index: int) -> int:
        """Record one more start of segment ``index``; returns its number (1 for the first)."""
        path = self.attempts(index)
        try:
            n = int(path.read_text().strip() or 0) + 1
        except (OSError, ValueError):
            n = 1
        tmp = temp_name(path, unique=True)
        tmp.write_text(str(n))
        os.replace(tmp, path)
        return n

    def attempts_made(self, index: int) -> int:
        try:
            return int(self.attempts(index).read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def done_segment(self, index: int) -> SegmentDescriptor | None:
        """The descriptor of segment ``index`` when it is done and its file matches it."""
        data = read_json(self.descriptor(index))
        if not isinstance(data, dict):
            return None
        try:
            desc = SegmentDescriptor.from_dict(data)
        except (KeyError, TypeError):
            return None
        path = self.segment(index)
        try:
            if path.stat().st_size != desc.size or file_sha256(path) != desc.sha256:
                return None
        except OSError:
            return None
        return desc

    def done_result(self, output: Path) -> dict[str, Any] | None:
        """The recorded result when the job is done and ``output`` is still what it wrote
        (same size and modification time)."""
        data = read_json(self.result)
        if not isinstance(data, dict):
            return None
        try:
            st = Path(output).stat()
        except OSError:
            return None
        recorded = (data.get("output"), data.get("size"), data.get("mtime_ns"))
        if recorded != (str(output), st.st_size, st.st_mtime_ns):
            return None
        return data

    def remove_segments(self, count: int) -> None:
        """Delete the segment files (their descriptors stay: the record of what was done)."""
        for i in range(count):
            with contextlib.suppress(OSError):
                self.segment(i).unlink()
