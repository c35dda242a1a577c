"""``swapline serve``: the REST API and web page (FastAPI on uvicorn, in this process).

``register(subparsers)`` adds the command to the main parser; ``run(args, runtime)`` serves until
interrupted and returns the exit code. It listens on 127.0.0.1 by default; any other address
needs a bearer token, and one is generated (and printed once) when ``--token`` is not given.
"""

from __future__ import annotations

import argparse
import secrets
import socket
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from ..config import RuntimeConfig
from ..errors import ConfigError
from .options import add_runtime_options, swapline_home

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8188


def register(subparsers: Any) -> None:
    """Add ``serve`` (with the shared runtime options) to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "serve",
        help="run the REST API and the web page",
        description="Serve the REST API (OpenAPI at /docs) and the web page: upload, preview, queue jobs, "
                    "follow their progress, download. Jobs persist in DATA_DIR/jobs.sqlite and run one at "
                    "a time; a job running when the server stopped is queued again at the next start.",
        epilog="Example: swapline serve --port 8188, then open http://127.0.0.1:8188/",
    )
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to listen on (default: %(default)s); any address that is not loopback "
                        "requires a bearer token")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s; 0: any free port)")
    p.add_argument("--token", metavar="T",
                   help="bearer token clients must give ('Authorization: Bearer T' or ?token=T); generated "
                        "and printed once when the address is not loopback and none is given")
    p.add_argument("--data-dir", type=Path, metavar="DIR",
                   help="folder for the job queue, uploads and outputs (default: <swapline home>/server)")
    p.add_argument("--max-upload-mb", type=float, default=2048, metavar="N",
                   help="largest upload per request in MiB (default: %(default)g)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="hand queued jobs to a Ray cluster (ADDRESS, or 'local' for one in this process) as "
                        "'swapline batch --ray' does: videos cut at keyframes and swapped on its actors; "
                        "previews stay here (needs pip install \"swapline[ray]\")")
    p.add_argument("--ray-workers", type=int, default=0, metavar="N",
                   help="actors for --ray (default: one per two CPUs of the cluster)")
    add_runtime_options(p)


def run(args: argparse.Namespace, runtime: RuntimeConfig, *, out: TextIO | None = None) -> int:
    """Serve until interrupted (Ctrl-C, SIGTERM); 0 on a clean stop."""
    import uvicorn

    from ..server import ServerSettings, create_app, is_loopback

    stream = out if out is not None else sys.stdout
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535 (got {args.port})")
    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be more than 0 (got {args.max_upload_mb:g})")
    token = args.token
    if token is not None and not token.strip():
        raise ConfigError("--token must not be empty")
    generated = token is None and not is_loopback(args.host)
    if generated:
        token = secrets.token_urlsafe(24)
    data_dir = (args.data_dir if args.data_dir is not None else swapline_home() / "server").absolute()
    _check_data_dir(data_dir)
    sock = _listen(args.host, args.port)
    port = sock.getsockname()[1]
    settings = ServerSettings(data_dir=data_dir, host=args.host, port=port, token=token,
                              max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), runtime=runtime)
    try:
        app = create_app(settings, job_runner_factory=_cluster_factory(args))
        config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                                timeout_graceful_shutdown=5)
        server = _uvicorn_server(config, app.state.closing)
        if generated:
            print(f"swapline serve: token {token} (give it as 'Authorization: Bearer <token>' or ?token=<token>)",
                  file=stream)
        print(f"swapline serve: {_url(args.host, port)}", file=stream, flush=True)
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn re-raises the stop signal once it has shut down
            pass
    finally:
        sock.close()
    if not server.started:
        raise ConfigError("the server did not start (see the message above)")
    return 0


def _uvicorn_server(config: Any, closing: threading.Event) -> Any:
    """A :class:`uvicorn.Server` whose stop signal also ends the open event streams at once
    (rather than after uvicorn's grace period), so a stop is quick and quiet."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            closing.set()
            super().handle_exit(sig, frame)

    return Server(config)


def _check_data_dir(data_dir: Path) -> None:
    """The data folder can be made and its job store opened (one line here, not a traceback from
    the server's start-up).

    Raises:
        OutputError: the folder cannot be made. ConfigError: the store cannot be used.
    """
    from ..errors import OutputError
    from ..jobs.store import JobStore

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"--data-dir {data_dir} cannot be created: {exc.strerror or exc}") from None
    if not data_dir.is_dir():
        raise OutputError(f"--data-dir {data_dir} is not a folder")
    JobStore(data_dir / "jobs.sqlite").close()


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (bound here, so a taken port is one clear line).

    Raises:
        ConfigError: the address cannot be used.
    """
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: {exc.strerror or exc}") from None
    family, _, _, _, address = infos[0]
    try:
        return socket.create_server(address, family=family, backlog=128)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {_url(host, port)}: {exc.strerror or exc}") from None


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/"


def _cluster_factory(args: argparse.Namespace) -> Any:
    """With ``--ray``: a factory of the queue's runner that hands each job to the cluster; else
    None (jobs run in this process)."""
    if not getattr(args, "ray", None):
        return None

    def make(runtime: RuntimeConfig) -> Any:
        from ..distributed.cluster import ClusterRunner
        from ..distributed.ray_executor import RayExecutor
        from ..distributed.segment import WorkerSettings

        executor = RayExecutor(address=args.ray, workers=args.ray_workers, cpus_per_worker=2.0,
                               settings=WorkerSettings(runtime=runtime))
        return ClusterRunner(executor)

    return make
