"""What a server is started with, and the loopback test that decides whether it needs a token."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RuntimeConfig

DEFAULT_MAX_UPLOAD_BYTES = 2 * 1024**3  # 2 GiB per request


@dataclass(frozen=True)
class ServerSettings:
    """How one server runs.

    Attributes:
        data_dir: the server's folder: ``jobs.sqlite`` (the queue), ``uploads/`` and ``jobs/``.
        host: the address it listens on (decides whether a token is required, see
            :func:`is_loopback`).
        port: the port it listens on (informative for the app itself).
        token: the bearer token clients give; required (non-empty) when ``host`` is not loopback.
        max_upload_bytes: the most file bytes one request may upload (413 above).
        runtime: where models come from and how they run.
        poll_s: how often the event stream looks for new events.
        keepalive_s: seconds between keep-alive comments on an idle event stream.
    """

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 8188
    token: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    poll_s: float = 0.2
    keepalive_s: float = 15.0

    @property
    def token_required(self) -> bool:
        """A token is checked when one is given, and must be given off loopback."""
        return bool(self.token) or not is_loopback(self.host)


def is_loopback(host: str) -> bool:
    """``True`` for ``localhost``, 127.0.0.0/8 and ``::1`` (the machine itself only)."""
    name = host.strip().strip("[]").lower()
    if name in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
