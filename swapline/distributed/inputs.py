"""The jobs of a batch: from a manifest (JSON lines or JSON) or a folder of videos.

A manifest lists one job per entry: ``{"source": "face.jpg", "target": "clip.mp4", "output":
"out/clip.mp4"}``; ``source`` may be a list (several photos of one person, or ``sources``),
``output`` may be left out (then ``<output dir>/<target's name>``), ``options`` may set any
job option for that job (``{"face_selector_mode": "many"}``) over the command line's. Relative
paths are relative to the manifest's folder. ``.jsonl`` files hold one JSON object a line
(blank lines and lines starting with ``#`` are skipped); other files hold a JSON list of
entries or ``{"jobs": [...]}``.

A folder gives one job per video in it (by extension, sorted by name), all with the command
line's source, written to ``<output dir>/<name>`` (default output dir: ``<folder>/swapped``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import SwapConfig, VideoConfig
from ..errors import ConfigError, InputError
from ..formats import VIDEO_INPUT_EXTENSIONS, VIDEO_OUTPUT_EXTENSIONS
from ..jobs.job import Job, options_from_dict, options_to_dict

DEFAULT_FOLDER_OUTPUT = "swapped"


def read_batch(path: Path, *, sources: Sequence[Path] = (), output_dir: Path | None = None,
               config: SwapConfig | None = None, video: VideoConfig | None = None, force: bool = False) -> list[Job]:
    """The jobs of a manifest file or a folder of videos (see the module's docs).

    Raises:
        InputError: ``path`` is missing, unreadable, or a folder without videos.
        ConfigError: a bad manifest entry (named by its line or position), no source for a
            job, or two jobs writing one output.
    """
    path = Path(path)
    config, video = config or SwapConfig(), video or VideoConfig()
    if path.is_dir():
        jobs = _folder_jobs(path, sources, output_dir, config, video, force)
    elif path.is_file():
        jobs = _manifest_jobs(path, sources, output_dir, config, video, force)
    else:
        raise InputError(f"batch manifest or folder not found: {path}")
    seen: dict[Path, Path] = {}
    for job in jobs:
        out = job.output.resolve()
        if out in seen:
            raise ConfigError(f"two jobs write {job.output} (targets {seen[out]} and {job.target})")
        seen[out] = job.target
    return jobs


def _folder_jobs(folder: Path, sources: Sequence[Path], output_dir: Path | None, config: SwapConfig,
                 video: VideoConfig, force: bool) -> list[Job]:
    if not sources:
        raise ConfigError("a folder of videos needs a source face: -s SOURCE")
    targets = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_INPUT_EXTENSIONS
                     and not p.name.startswith("."))
    if not targets:
        raise InputError(f"no videos in {folder} (looked for {', '.join(VIDEO_INPUT_EXTENSIONS)})")
    out_dir = output_dir or folder / DEFAULT_FOLDER_OUTPUT
    return [Job(sources=tuple(sources), target=t, output=_output_for(t, out_dir), config=config, video=video,
                force=force) for t in targets]


def _output_for(target: Path, out_dir: Path) -> Path:
    """``<out_dir>/<target's name>`` (``.mp4`` when swapline cannot write the target's extension;
    ``-swapped`` added when the output folder is the target's)."""
    suffix = target.suffix if target.suffix.lower() in VIDEO_OUTPUT_EXTENSIONS else ".mp4"
    stem = target.stem
    if out_dir.resolve() == target.parent.resolve():
        stem += "-swapped"
    return out_dir / f"{stem}{suffix}"


def _entries(path: Path) -> list[tuple[str, Any]]:
    """``(where, entry)`` pairs of a manifest (``where`` names a line or a position)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the batch manifest {path}: {exc}") from exc
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                out.append((f"{path.name} line {n}", json.loads(line)))
            except ValueError as exc:
                raise ConfigError(f"{path.name} line {n}: not JSON ({exc})") from None
        return out
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path.name}: not JSON ({exc}); give a JSON list of jobs or JSON lines (.jsonl)") from None
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        data = data["jobs"]
    if not isinstance(data, list):
        raise ConfigError(f"{path.name}: give a JSON list of jobs, or {{\"jobs\": [...]}}")
    return [(f"{path.name} job {i + 1}", entry) for i, entry in enumerate(data)]


def _manifest_jobs(path: Path, sources: Sequence[Path], output_dir: Path | None, config: SwapConfig,
                   video: VideoConfig, force: bool) -> list[Job]:
    base = path.parent
    jobs = []
    defaults = options_to_dict(config, video)
    for where, entry in _entries(path):
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: a job is a JSON object with source, target and output")
        unknown = set(entry) - {"source", "sources", "target", "output", "options"}
        if unknown:
            raise ConfigError(f"{where}: unknown field {sorted(unknown)[0]!r} (use source, target, output, options)")
        raw = entry.get("sources", entry.get("source"))
        srcs = [raw] if isinstance(raw, str) else list(raw or [])
        if not all(isinstance(s, str) for s in srcs):
            raise ConfigError(f"{where}: source must be a path or a list of paths")
        job_sources = tuple(_resolve(base, s) for s in srcs) or tuple(sources)
        if not job_sources:
            raise ConfigError(f"{where}: no source (give one in the manifest or with -s)")
        if not isinstance(entry.get("target"), str):
            raise ConfigError(f"{where}: target must be a path")
        target = _resolve(base, entry["target"])
        if isinstance(entry.get("output"), str):
            output = _resolve(base, entry["output"])
        elif entry.get("output") is None:
            output = _output_for(target, output_dir or base / DEFAULT_FOLDER_OUTPUT)
        else:
            raise ConfigError(f"{where}: output must be a path")
        options = entry.get("options") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: options must be a JSON object")
        try:
            job_config, job_video = options_from_dict({**defaults, **options})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        jobs.append(Job(sources=job_sources, target=target, output=output, config=job_config, video=job_video,
                        force=force))
    if not jobs:
        raise InputError(f"the batch manifest {path} lists no jobs")
    return jobs


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p
