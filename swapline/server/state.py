"""What a running app holds (``app.state.server``): built at start-up, closed at shutdown."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from .settings import ServerSettings
from .uploads import UploadStore

if TYPE_CHECKING:
    from ..jobs.runner import Runner
    from ..jobs.store import JobStore
    from ..jobs.worker import JobWorker


@dataclass
class ServerState:
    """The app's state.

    Attributes:
        settings: how the server was started.
        store: the persistent job queue (``<data_dir>/jobs.sqlite``).
        worker: runs queued jobs one at a time with ``job_runner``.
        job_runner: the worker's runner (models loaded once).
        preview_runner: a second runner for previews and face lists (runners are not
            thread-safe: it is used under ``preview_lock`` only).
        uploads: the ``uploads/`` folder.
        closing: set when the server begins to stop (open event streams end).
    """

    settings: ServerSettings
    store: JobStore
    worker: JobWorker
    job_runner: Runner
    preview_runner: Runner
    uploads: UploadStore
    preview_lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)

    @property
    def jobs_dir(self) -> Path:
        """``<data_dir>/jobs``: one folder per job (its multipart inputs and its output)."""
        return self.settings.data_dir / "jobs"


def get_state(request: Request) -> ServerState:
    """The app's :class:`ServerState` (a FastAPI dependency)."""
    return request.app.state.server


StateDep = Annotated[ServerState, Depends(get_state)]
"""A route parameter typed ``StateDep`` receives the app's :class:`ServerState`."""
