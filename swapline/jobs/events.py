"""What a running job tells its front end: progress, warnings, the end.

Events are plain frozen data with a JSON form, so the same stream feeds a progress bar, a
server-sent-event stream and a row in the job store.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import JobCancelled

EventKind = Literal["started", "progress", "warning", "done", "failed", "cancelled"]
EVENT_KINDS: tuple[str, ...] = ("started", "progress", "warning", "done", "failed", "cancelled")
FINAL_KINDS: tuple[str, ...] = ("done", "failed", "cancelled")


@dataclass(frozen=True)
class JobEvent:
    """One thing a job reports.

    Attributes:
        kind: ``started`` (``total`` known), ``progress``, ``warning`` (``message``), and one of
            ``done`` / ``failed`` / ``cancelled`` last.
        done: frames (or images) finished so far.
        total: frames (or images) in the job; 0 when not known yet.
        fps: frames per second since the start.
        eta_s: seconds left at the current rate, or None.
        busy: each stage's busy share of the elapsed time, 0..1 (``{"detect": 0.4, "swap": 0.9}``).
        message: a one-line text for warnings and the final events (the error's message for
            ``failed``, the result's summary for ``done``).
        error: the error type's name for ``failed`` (``"InputError"``), else ``""``.
        exit_code: the exit code the CLI gives this end (0 done, the error's code, 130 cancelled).
    """

    kind: EventKind
    done: int = 0
    total: int = 0
    fps: float = 0.0
    eta_s: float | None = None
    busy: dict[str, float] = field(default_factory=dict)
    message: str = ""
    error: str = ""
    exit_code: int = 0

    @property
    def final(self) -> bool:
        return self.kind in FINAL_KINDS

    @property
    def fraction(self) -> float:
        """Progress 0..1 (1 once done)."""
        if self.kind == "done":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobEvent":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


EventSink = Callable[[JobEvent], None]


class CancelToken:
    """A cancel handle: any thread calls :meth:`cancel`; the job checks it between frame batches
    and stops with :class:`JobCancelled`."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if cancel was asked."""
        if self._event.is_set():
            raise JobCancelled("cancelled")
