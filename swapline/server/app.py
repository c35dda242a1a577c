"""The FastAPI app: routes, error mapping, the token check, the page, and the job core's life.

    >>> from swapline.server import ServerSettings, create_app
    >>> app = create_app(ServerSettings(data_dir=Path("server-data")))

At start-up (FastAPI lifespan) the app opens the job store ``<data_dir>/jobs.sqlite`` and starts
one :class:`~swapline.jobs.worker.JobWorker` (which first puts back in the queue the jobs a dead
server left running); at shutdown it stops the worker (a running job goes back to the queue) and
closes the store and both runners. All of it lives in ``app.state.server``. The live page's
sessions live in ``app.state.live`` (:class:`~.live.LiveManager`); shutdown ends them first.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..config import RuntimeConfig
from ..errors import ConfigError
from .auth import TokenAuth
from .errors import install_error_handlers
from .live import LiveManager, LiveSettings
from .pages import STATIC_DIR
from .routes import live as live_routes
from .routes import routers
from .settings import DEFAULT_MAX_UPLOAD_BYTES, ServerSettings, is_loopback
from .state import ServerState
from .uploads import UploadStore

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "STATIC_DIR", "RunnerFactory", "ServerSettings", "create_app"]

RunnerFactory = Callable[[RuntimeConfig], object]


def _default_runner(runtime: RuntimeConfig) -> object:
    from ..jobs.runner import Runner

    return Runner(runtime)


def create_app(settings: ServerSettings, *, runner_factory: RunnerFactory | None = None,
               job_runner_factory: RunnerFactory | None = None,
               live: LiveSettings | None = None) -> FastAPI:
    """The app for ``settings``.

    Args:
        settings: where the data goes, the bind address (decides the token check), limits.
        runner_factory: makes a runner from the runtime config (default
            :class:`~swapline.jobs.runner.Runner`); called twice, for the worker and for previews
            (and once more by the first live session).
        job_runner_factory: makes the queue's runner instead (e.g. a
            :class:`~swapline.distributed.cluster.ClusterRunner` that hands each job to a cluster);
            default ``runner_factory``.
        live: the live page's limits (default: :meth:`LiveSettings.from_env`).

    Raises:
        ConfigError: a non-loopback ``host`` without a token.
    """
    if not is_loopback(settings.host) and not settings.token:
        raise ConfigError(f"a token is required to listen on {settings.host} (not loopback): give --token")
    if settings.max_upload_bytes < 1:
        raise ConfigError(f"the upload cap must be 1 byte or more (got {settings.max_upload_bytes})")
    factory = runner_factory or _default_runner
    job_factory = job_runner_factory or factory
    live_settings = live or LiveSettings.from_env()

    closing = threading.Event()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        closing.clear()
        state = _start(settings, factory, closing, job_factory)
        app.state.server = state
        app.state.live = LiveManager(live_settings, state, factory)
        try:
            yield
        finally:
            closing.set()
            try:
                await app.state.live.close_all()
            finally:
                _stop(state)

    app = FastAPI(title="swapline", version=__version__, lifespan=lifespan,
                  description="Face swap jobs over HTTP: upload, preview, queue, follow, download.")
    install_error_handlers(app)
    for router in (*routers, live_routes.router):
        app.include_router(router)
    if settings.token_required:
        app.add_middleware(TokenAuth, token=settings.token or "")
    # the page (written beside this module); check_dir=False: an install without it still serves the API
    app.mount("/", StaticFiles(directory=STATIC_DIR, html=True, check_dir=False), name="static")
    app.state.closing = closing  # set it to end open event streams (a server about to stop)
    return app


def _start(settings: ServerSettings, factory: RunnerFactory, closing: threading.Event,
           job_factory: RunnerFactory | None = None) -> ServerState:
    """Open the store, make the runners, start the worker."""
    from ..jobs.store import JobStore
    from ..jobs.worker import JobWorker

    data = Path(settings.data_dir)
    (data / "jobs").mkdir(parents=True, exist_ok=True)
    _sweep(data)
    store = JobStore(data / "jobs.sqlite")
    try:
        job_runner = (job_factory or factory)(settings.runtime)
        preview_runner = factory(settings.runtime)
        worker = JobWorker(store, job_runner)  # type: ignore[arg-type]
        state = ServerState(settings=settings, store=store, worker=worker, job_runner=job_runner,  # type: ignore[arg-type]
                            preview_runner=preview_runner, uploads=UploadStore(data / "uploads"),  # type: ignore[arg-type]
                            closing=closing)
        worker.start()
    except BaseException:
        store.close()
        raise
    return state


def _sweep(data: Path) -> None:
    """What a killed server left: temporary outputs of dead writers in the job folders, and
    uploads that never completed."""
    from .. import tempfiles

    for folder in (data / "jobs").iterdir():
        if folder.is_dir():
            tempfiles.sweep(folder)
    UploadStore(data / "uploads").sweep()


def _stop(state: ServerState) -> None:
    """Stop the worker (its running job goes back to the queue), close runners and store."""
    try:
        state.worker.stop(wait=True, interrupt=True)
    finally:
        for runner in (state.job_runner, state.preview_runner):
            close = getattr(runner, "close", None)
            if callable(close):
                close()
        state.store.close()
