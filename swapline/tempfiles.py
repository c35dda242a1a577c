"""Temporary files that carry their writer's pid, and the sweep that removes orphans.

An output is written to ``.<name>.<pid>[-<token>].part[<ext>]`` beside it and renamed into place.
A run killed with SIGKILL (or a power cut) cannot remove its temporary file, so the next run
sweeps the output folder: a temporary file whose pid is no longer a running process is removed.
Files of live processes (another swapline writing into the same folder) are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable
import re
import secrets
import shutil
from pathlib import Path

# .<name>.<pid>.part<ext> (videos; the remux copy adds .copy) and .<name>.<pid>-<token>.part (images)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d{1,10})(?:-[0-9a-f]{4,32})?\.part(?:\.[A-Za-z0-9]{1,8}){0,2}$")


def temp_name(final: str | os.PathLike[str], *, ext: str = "", unique: bool = False) -> Path:
    """The temporary path for ``final``: ``.<name>.<pid>.part<ext>`` beside it; ``unique`` adds a
    random token so one process may write several at once."""
    p = Path(final)
    parent = p.parent if str(p.parent) else Path(".")
    token = f"-{secrets.token_hex(4)}" if unique else ""
    return parent / f".{p.name}.{os.getpid()}{token}.part{ext}"


def create_temp(final: str | os.PathLike[str]) -> tuple[int, Path]:
    """Create (exclusively, mode 0600) a unique temporary file for ``final``; returns ``(fd, path)``."""
    for _ in range(100):
        path = temp_name(final, unique=True)
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {final}")


def writer_pid(name: str) -> int | None:
    """The pid in a temporary file's name, or None when ``name`` is not one of ours."""
    m = _TEMP.match(name)
    return int(m.group("pid")) if m else None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (one of another user counts as running)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _dead(folder: str | os.PathLike[str], pid_of: Callable[[str], int | None]) -> list[os.DirEntry[str]]:
    """The entries of ``folder`` whose name carries the pid of a process that is gone (none
    when the folder cannot be listed)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    return [e for e in entries if (pid := pid_of(e.name)) is not None and not pid_alive(pid)]


def sweep(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary files in ``folder`` whose writer is gone; returns what was removed.

    Never raises: a folder that cannot be listed, or a file that cannot be removed, is skipped.
    """
    removed: list[Path] = []
    for entry in _dead(folder, writer_pid):
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def sweep_dirs(folder: str | os.PathLike[str], prefix: str) -> list[Path]:
    """Remove the folders ``<prefix><pid>-…`` in ``folder`` whose process is gone (what a killed
    run left, e.g. pip's download folder); returns what was removed. Never raises."""
    pattern = re.compile(re.escape(prefix) + r"(?P<pid>\d{1,10})-")

    def pid_of(name: str) -> int | None:
        m = pattern.match(name)
        return int(m.group("pid")) if m else None

    removed: list[Path] = []
    for entry in _dead(folder, pid_of):
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
        except OSError:
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            removed.append(Path(entry.path))
    return removed
