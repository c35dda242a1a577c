"""Per-stage time accounting (a plain accumulator owned by one job, never shared globally)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class StageTimes:
    """Milliseconds spent per named stage, summed over calls."""

    ms: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, seconds: float) -> None:
        self.ms[stage] = self.ms.get(stage, 0.0) + seconds * 1000.0

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body of a ``with`` block under ``name``."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)


@contextmanager
def timed(times: "StageTimes | None", name: str) -> Iterator[None]:
    """Like ``times.stage(name)`` but a no-op when ``times`` is None."""
    if times is None:
        yield
    else:
        with times.stage(name):
            yield
