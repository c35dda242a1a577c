"""``swapline serve``: a REST API (FastAPI) and a web page over the job core.

The app is built by :func:`create_app` from :class:`ServerSettings`; it holds all its state in
``app.state.server`` (a :class:`~swapline.server.state.ServerState`): the persistent job store,
one job worker (one job at a time, the rest queued), a second runner for previews under a lock,
and the upload folder. Nothing here re-implements a job: the runner and the worker do the work.
"""

from __future__ import annotations

from .app import create_app
from .settings import DEFAULT_MAX_UPLOAD_BYTES, ServerSettings, is_loopback

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "ServerSettings", "create_app", "is_loopback"]
