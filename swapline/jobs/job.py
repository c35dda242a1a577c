"""A job: what to swap into what, with which options, written where.

A :class:`Job` is plain data (frozen), so any front end can build one, store it as JSON
(:meth:`Job.to_dict` / :meth:`Job.from_dict`) and hand it to a :class:`~swapline.jobs.runner.Runner`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SwapConfig, VideoConfig
from ..errors import ConfigError
from ..pipeline.image import DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class Job:
    """One swap: ``sources`` (one or more photos of one person) into ``target`` (an image or a
    video, told apart by its content), written to ``output``.

    Attributes:
        sources: source image paths (at least one).
        target: the image or video to swap into.
        output: where the result goes (written to a temporary name and renamed when complete).
        config: how faces are chosen, swapped and blended.
        video: how a video target is read and written (ignored for images).
        force: overwrite an existing output.
        quality: JPEG/WebP quality of an image output, 1..100.
        max_pixels: the largest image (in pixels) read, checked from its header before decoding.
    """

    sources: tuple[Path, ...]
    target: Path
    output: Path
    config: SwapConfig = field(default_factory=SwapConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    force: bool = False
    quality: int = 95
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("give at least one source image")
        object.__setattr__(self, "sources", tuple(Path(p) for p in self.sources))
        object.__setattr__(self, "target", Path(self.target))
        object.__setattr__(self, "output", Path(self.output))
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"output image quality must be between 1 and 100 (got {self.quality})")

    def to_dict(self) -> dict[str, Any]:
        """The job as JSON-ready data (paths as strings, options as dicts of non-default fields)."""
        return {
            "sources": [str(p) for p in self.sources],
            "target": str(self.target),
            "output": str(self.output),
            "options": options_to_dict(self.config, self.video),
            "force": self.force,
            "quality": self.quality,
            "max_pixels": self.max_pixels,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        """The inverse of :meth:`to_dict`. Raises ConfigError on unknown or bad options."""
        config, video = options_from_dict(data.get("options") or {})
        return cls(sources=tuple(Path(p) for p in data["sources"]), target=Path(data["target"]),
                   output=Path(data["output"]), config=config, video=video, force=bool(data.get("force", False)),
                   quality=int(data.get("quality", 95)), max_pixels=int(data.get("max_pixels", DEFAULT_MAX_PIXELS)))


_SWAP_FIELDS = {f.name: f for f in dataclasses.fields(SwapConfig)}
_VIDEO_FIELDS = {f.name: f for f in dataclasses.fields(VideoConfig)}


def option_names() -> tuple[str, ...]:
    """Every option a job takes by name: the fields of SwapConfig and VideoConfig."""
    return (*_SWAP_FIELDS, *_VIDEO_FIELDS)


def options_from_dict(options: dict[str, Any]) -> tuple[SwapConfig, VideoConfig]:
    """``{"face_selector_mode": "many", "relight": 0.5, "trim_end": 100}`` → (SwapConfig,
    VideoConfig), validated. Lists become tuples.

    Raises:
        ConfigError: an unknown option name or a bad value (one line naming it).
    """
    if not isinstance(options, dict):
        raise ConfigError("options must be a JSON object of option names and values")
    swap_kw: dict[str, Any] = {}
    video_kw: dict[str, Any] = {}
    for name, value in options.items():
        if isinstance(value, list):
            value = tuple(value)
        if name in _SWAP_FIELDS:
            swap_kw[name] = value
        elif name in _VIDEO_FIELDS:
            video_kw[name] = value
        else:
            raise ConfigError(f"unknown option {name!r}")
    try:
        return SwapConfig(**swap_kw), VideoConfig(**video_kw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad option value: {exc}") from None


def options_to_dict(config: SwapConfig, video: VideoConfig) -> dict[str, Any]:
    """The options that differ from the defaults, JSON-ready (tuples as lists)."""
    out: dict[str, Any] = {}
    for obj, default in ((config, SwapConfig()), (video, VideoConfig())):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if value != getattr(default, f.name):
                out[f.name] = list(value) if isinstance(value, tuple) else value
    return out
