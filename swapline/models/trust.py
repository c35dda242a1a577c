"""Files the user supplies: copies in ``--model-dir`` and files the user trusts (:class:`UserFiles`).

A file the user puts in ``config.model_dir`` under the catalogue's name (or one of its
``aliases``: the names FaceFusion and Deep-Live-Cam use) is used in place when its sha256 matches.

Files the user trusts: ``swapline models trust PATH --as NAME`` records the file's sha256 as
trusted by the user (a signed record under ``<root>/models/trusted/``, see
:meth:`Manifest.trust`); from then on a file with those bytes is taken for NAME from
``--model-dir`` or, failing that, from where it was trusted, and each run that uses it says so
once, in one line (``notify``). A derived file (the dynamic-batch conversion) is used only when
its record names the sha256 of an original the store verified or the user trusted, and today's
recipe (:func:`~swapline.models.records.derived_problem`): anything else is made again.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from ..errors import ModelError
from .catalog import ModelSpec
from .checks import FileChecks
from .hashing import sha256_file, short
from .manifest import Manifest
from .records import Entry


def files_in(folder: Path | None, names: Iterable[str]) -> list[Path]:
    """The files in ``folder`` (``--model-dir``; None: none) under any of ``names``, in order."""
    if folder is None:
        return []
    return [folder / n for n in names if (folder / n).is_file()]


def trust_unchanged(entry: Entry, path: Path) -> bool:
    """Whether ``path`` is the file the signed trust record was made from, with the size and
    mtime it had when it was hashed."""
    try:
        st = path.stat()
    except OSError:
        return False
    return str(path.absolute()) == entry.original and (st.st_size, st.st_mtime_ns) == (entry.size, entry.mtime_ns)


class UserFiles:
    """The user's files for one store: trust records (kept in the cache's manifest), the
    originals in ``--model-dir``, and the trust line said once per model (to ``notify`` when
    there is one, else as a warning)."""

    def __init__(self, checks: FileChecks, notify: Callable[[str], None] | None = None) -> None:
        self.checks = checks
        self._notify = notify
        self._told: set[str] = set()  # models whose trust line this store has said

    @property
    def manifest(self) -> Manifest:
        """The cache's manifest, which keeps the trust records."""
        return self.checks.manifest

    def trust(self, name: str, path: Path, sha256: str | None = None) -> Entry:
        """Record the bytes of ``path`` (hashing to ``sha256``; hashed when None) as model
        ``name`` by the user's word, replacing an earlier trust of ``name``; the caller has
        checked the file's interface. Returns the record. Raises :class:`ModelError` when it
        cannot be written."""
        path = Path(path).expanduser().absolute()
        digest = sha256 or sha256_file(path)
        self.checks.hashes.remember(path, digest)
        try:
            return self.manifest.trust(name, path, sha256=digest)
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot record that you trust {path} as {name} in {self.checks.models_dir}: "
                             f"{exc}") from exc

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
            if path.is_file() and self.matches(entry, path):
                if not quiet:
                    self.tell(name, path)
                return path, entry.sha256
        return None

    def matches(self, entry: Entry, path: Path) -> bool:
        """Whether ``path`` holds the trusted bytes: cheap (size and mtime) for the file the
        record was made from, unchanged since; hashed (once per process) otherwise."""
        return trust_unchanged(entry, path) or self.checks.hashes.matches(path, entry.sha256)

    def tell(self, name: str, path: Path) -> None:
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

    def tell_if_from_trusted(self, spec: ModelSpec, converted: Path) -> None:
        """Say the trust line when ``converted`` was made from a file the user trusts."""
        entry = self.checks.manifest_for(converted).entry(converted)
        trust = self.trusted(spec.name)
        if entry is not None and trust is not None and entry.original_sha256 == trust.sha256 != spec.sha256:
            self.tell(spec.name, Path(trust.original or converted))

    def known_originals(self, spec: ModelSpec) -> set[str]:
        """sha256 of the originals a derived file of ``spec`` may be made from: the catalogue's
        and the one the user trusts."""
        known = {spec.sha256}
        trust = self.trusted(spec.name)
        if trust is not None:
            known.add(trust.sha256)
        return known

    def model_dir_original(self, spec: ModelSpec) -> tuple[Path, str] | None:
        """``spec``'s original from ``--model-dir``: a file with the catalogue's sha256, else one
        with the bytes the user trusts; None when the folder has no file of it.

        Raises:
            ModelError: the folder has a file of it with other bytes (one line naming the file,
                the hashes and the trust command).
        """
        # its file name, then the names other tools give it
        candidates = files_in(self.checks.model_dir, spec.original_names)
        trust = self.trusted(spec.name)
        for candidate in candidates:  # the very file the user trusted, unchanged: no need to hash it
            if trust is not None and trust_unchanged(trust, candidate):
                self.tell(spec.name, candidate)
                return candidate, trust.sha256
        for candidate in candidates:
            if self.checks.hashes.matches(candidate, spec.sha256):
                return candidate, spec.sha256
        trusted = self.trusted_file(spec.name, candidates, where_trusted=False) if candidates else None
        if trusted is not None:
            return trusted
        if not candidates:
            return None
        candidate = candidates[0]
        got = self.checks.hashes.last(candidate)
        changed = " (it changed since you trusted it)" if trust is not None and trust.original == str(
            candidate.absolute()) else ""
        raise ModelError(
            f"{candidate} does not match model {spec.name} (expected sha256 {short(spec.sha256)}, "
            f"got {short(got)}){changed}: replace or remove it, or if it is a copy you trust: "
            f"swapline models trust {candidate} --as {spec.name}"
        )
