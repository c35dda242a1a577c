"""The native bindings swapline relies on, their installed versions and the set that was tested.

Two statements say what was tested: the version ranges in swapline's own metadata (from
``pyproject.toml``; the native bindings are capped below their next untested major version) and,
in a checkout, the lock ``constraints.txt`` (the exact versions CI ran). ``swapline doctor``
prints the installed versions and one warning line for each that lies outside them.
"""

from __future__ import annotations

import importlib.metadata as metadata
import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

#: native bindings that break between releases: capped in pyproject.toml, reported by doctor.
#: Each is a distribution name, then other distributions that install the same module.
NATIVE_BINDINGS: dict[str, tuple[str, ...]] = {
    "numpy": (),
    "opencv-python-headless": ("opencv-python", "opencv-contrib-python-headless", "opencv-contrib-python"),
    "onnxruntime": ("onnxruntime-gpu",),
    "onnx": (),
    "av": (),
    "aiortc": (),
    "ray": (),
    "torch": (),
}

#: the lock's file name, at the root of a checkout
LOCK_NAME = "constraints.txt"

_PINNED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")


@dataclass(frozen=True)
class BindingVersion:
    """One native binding: ``installed`` (None: not installed, under ``distribution``), the
    declared ``tested_range`` (empty: none declared) and the ``locked`` version (None: no lock
    found or not in it)."""

    name: str
    distribution: str
    installed: str | None
    tested_range: str
    locked: str | None

    @property
    def problem(self) -> str | None:
        """Why this version lies outside the tested set, or None."""
        if self.installed is None:
            return None
        try:
            version = Version(self.installed)
        except InvalidVersion:
            return f"{self.distribution} {self.installed} is not a version swapline can check"
        if self.tested_range and not SpecifierSet(self.tested_range).contains(version, prereleases=True):
            return f"{self.distribution} {self.installed} is outside the tested range {self.tested_range}"
        if self.locked is not None and version.public != Version(self.locked).public:
            return f"{self.distribution} {self.installed} is not the tested {self.locked} (the lock, {LOCK_NAME})"
        return None


def read_lock(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a pip constraints/requirements file of ``name==version`` lines."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _PINNED.match(line.strip())
        if m:
            pins[canonicalize_name(m.group(1))] = m.group(2)
    return pins


def find_lock() -> Path | None:
    """The lock beside the package's source folder (a checkout or an editable install), or None."""
    lock = Path(__file__).resolve().parents[1] / LOCK_NAME
    return lock if lock.is_file() else None


def declared_ranges(distribution: str = "swapline") -> dict[str, str]:
    """``{canonical name: specifier}`` of every requirement in ``distribution``'s metadata,
    extras included (the first requirement of a name wins)."""
    try:
        requires = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return {}
    ranges: dict[str, str] = {}
    for line in requires:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        ranges.setdefault(canonicalize_name(req.name), str(req.specifier))
    return ranges


def _installed(name: str) -> tuple[str, str | None]:
    for dist in (name, *NATIVE_BINDINGS[name]):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return name, None


def binding_versions(lock: Path | None = None) -> list[BindingVersion]:
    """The native bindings in :data:`NATIVE_BINDINGS` order, with the tested set beside each.

    ``lock`` defaults to :func:`find_lock`.
    """
    lock = lock or find_lock()
    pins = read_lock(lock) if lock is not None else {}
    ranges = declared_ranges()
    out = []
    for name in NATIVE_BINDINGS:
        dist, version = _installed(name)
        key = canonicalize_name(name)
        out.append(BindingVersion(name=name, distribution=dist, installed=version,
                                  tested_range=ranges.get(key, ""), locked=pins.get(key)))
    return out
