"""A private network namespace for tests that listen (servers, WebRTC, Ray, streams): ``unshare -n``
with only the loopback interface up, so nothing a test starts can be reached from, or reach, any
other machine. Where the system does not allow one (unprivileged users often may not), tests fall
back to plain processes bound to 127.0.0.1, or skip when they need the isolation."""

from __future__ import annotations

import functools
import shutil
import subprocess

_WRAP = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh"]


@functools.lru_cache(maxsize=1)
def namespace_available() -> bool:
    """Whether ``unshare -n`` with loopback up works here."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    try:
        proc = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True, timeout=10,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


def isolated(command: list[str]) -> list[str]:
    """``command`` run in its own network namespace with loopback up, where one can be made;
    else ``command`` unchanged."""
    return [*_WRAP, *command] if namespace_available() else list(command)
