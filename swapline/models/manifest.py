"""The manifest of every model file swapline writes: one record per file, checked before each load.

A record sits beside its file as ``<file>.json`` (written to a temporary name, then renamed) and
says what the file is: its fields are :class:`~swapline.models.records.Entry`'s (see
:mod:`swapline.models.records`, with :func:`derived_problem`, which judges what a derived file's
record says about its original).

Trust: a record whose ``mac`` checks under the folder's key (``.manifest-key``, made once with
random bytes) was written by swapline after hashing the file, so a load only compares the file's
size and mtime with the record (:meth:`Manifest.check`). Any other record -- hand-written, copied
from another folder, from an older swapline, or a file whose mtime changed -- is checked by
hashing the whole file; when the hash agrees and the folder is writable the record is signed
again, so the next load is cheap. ``full=True`` (``swapline models verify``) always re-hashes.

Files the user trusts (``swapline models trust PATH --as NAME``) live outside the folder; their
records are kept by model name in ``<folder>/trusted/<NAME>.json`` (kind ``"trusted"``, ``original``
the file's path), signed like the others (:meth:`Manifest.trust`, :meth:`Manifest.trusted`).
A trust record that is not signed with the folder's key (hand-written, copied) trusts nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from .hashing import sha256_file
from .records import Entry, derived_problem

# Entry, derived_problem and sha256_file are re-exported: swapline.runtime.session imports them from here
__all__ = ["DERIVED_KINDS", "KINDS", "SUFFIX", "Entry", "Manifest", "derived_problem", "sha256_file", "sidecar"]

log = logging.getLogger(__name__)

SUFFIX = ".json"
KEY_NAME = ".manifest-key"
KINDS = ("original", "converted", "optimized", "fp16", "trusted")
DERIVED_KINDS = ("converted", "optimized", "fp16")
TRUSTED_DIR = "trusted"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_+-][A-Za-z0-9._+-]*")


def sidecar(path: Path) -> Path:
    """Where the record of ``path`` lives: ``<file>.json`` beside it."""
    return path.with_name(path.name + SUFFIX)


class Manifest:
    """The records of the model files in one folder.

    ``writable=False`` (a user's ``--model-dir``) never writes anything there: no key, no
    re-signing, so every check of such a folder hashes the file (once per process).
    """

    def __init__(self, folder: Path, *, writable: bool = True) -> None:
        self.folder = Path(folder)
        self.writable = writable
        self._key: bytes | None = None
        self._key_read = False
        # path -> (size, mtime_ns, sha256) hashed by this object: one hash per file and process
        self._hashed: dict[Path, tuple[int, int, str]] = {}

    # ------------------------------------------------------------------ reading

    def entry(self, path: Path) -> Entry | None:
        """The record of ``path`` as written (not yet trusted), or None when there is none."""
        try:
            return Entry.from_json(sidecar(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, UnicodeDecodeError):
            return None

    def signed(self, entry: Entry) -> bool:
        """Whether ``entry`` carries this folder's mac (swapline wrote it after hashing)."""
        key = self._folder_key(create=False)
        if key is None or not entry.mac:
            return False
        return hmac.compare_digest(entry.mac, _mac(key, entry))

    def check(self, path: Path, *, full: bool = False) -> str | None:
        """None when ``path`` is what its record says; otherwise the problem, in words.

        Cheap (size and mtime) for a signed record; a full hash otherwise or with ``full``.
        """
        path = Path(path)
        if not sidecar(path).exists():
            return "is not listed in the manifest" if path.exists() else "is missing"
        entry = self.entry(path)
        if entry is None:
            return "has an unreadable manifest entry"
        if entry.file and entry.file != path.name:
            return f"has the manifest entry of another file ({entry.file})"
        try:
            st = path.stat()
        except OSError:
            return "is missing"
        if entry.size >= 0 and st.st_size != entry.size:
            return f"has {st.st_size} bytes, its manifest says {entry.size}"
        if not full and st.st_mtime_ns == entry.mtime_ns and self.signed(entry):
            return None
        digest = self._hash(path, st, fresh=full)
        if digest != entry.sha256:
            return f"has sha256 {digest[:12]}…, its manifest says {entry.sha256[:12]}…"
        if self.writable and (st.st_mtime_ns != entry.mtime_ns or entry.size != st.st_size or not self.signed(entry)):
            try:  # the bytes are right: sign the record again so the next load is cheap
                self._write(path, replace(entry, file=path.name, size=st.st_size, mtime_ns=st.st_mtime_ns))
            except OSError:
                pass
        return None

    def files(self) -> list[Path]:
        """Every model file in the folder, listed or not (records, hidden files and folders aside)."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p for p in self.folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith(SUFFIX)
        )

    def orphans(self) -> list[Path]:
        """Records whose file is gone."""
        if not self.folder.is_dir():
            return []
        return sorted(
            p for p in self.folder.glob("*" + SUFFIX)
            if not p.name.startswith(".") and not p.with_name(p.name[: -len(SUFFIX)]).exists()
        )

    # ------------------------------------------------------------------ writing

    def record(self, path: Path, *, kind: str, sha256: str | None = None, **fields: Any) -> Entry:
        """Write the record of ``path`` (already in place under its final name).

        ``sha256`` is the hash of the bytes meant to be written (the writer's own; the file is
        hashed when it is not given): follow with ``check(path, full=True)`` to prove the file
        on disk holds them. ``fields`` fill the other :class:`Entry` fields. Raises OSError when
        the record cannot be written.
        """
        path = Path(path)
        if kind not in KINDS:
            raise ValueError(f"unknown manifest kind {kind!r}")
        st = path.stat()
        digest = sha256 if sha256 is not None else self._hash(path, st, fresh=True)
        if "steps" in fields:
            fields["steps"] = tuple(fields["steps"])
        if "recipe_version" in fields and fields["recipe_version"] is not None:
            fields["recipe_version"] = str(fields["recipe_version"])
        entry = Entry(file=path.name, kind=kind, sha256=digest, size=st.st_size, mtime_ns=st.st_mtime_ns, **fields)
        return self._write(path, entry)

    def confirm(self, path: Path, written: Entry) -> str | None:
        """After :meth:`record`: None when ``path`` on disk holds the bytes ``written`` says
        (hashed in full); else the problem. Another process that replaced or removed the file
        meanwhile (two runs building the same copy) is not a problem: only a file still under
        this record and holding other bytes is."""
        for attempt in range(2):
            if not path.exists():
                return None  # removed by another run meanwhile: made again on next use
            problem = self.check(path, full=True)
            if problem is None:
                return None
            current = self.entry(path)
            if current is not None and current.sha256 == written.sha256:
                return problem  # our record, other bytes: the disk did not keep what it was given
            if attempt == 0:
                time.sleep(0.2)  # another writer's file whose record is not written yet
        return None  # another writer's file: its own check is its business

    def forget(self, path: Path) -> None:
        """Delete ``path`` and its record (what cannot be deleted stays, unlisted or unused)."""
        path = Path(path)
        for p in (sidecar(path), path):
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.info("cannot delete %s: %s", p, exc)
        self._hashed.pop(path, None)

    # ------------------------------------------------------------------ files the user trusts

    def trust(self, name: str, path: Path, *, sha256: str) -> Entry:
        """Record that the file at ``path`` (anywhere), whose bytes hash to ``sha256``, is model
        ``name`` by the user's word; replaces an earlier trust of ``name``. Raises OSError when
        the record cannot be written, ValueError for a name that cannot be a file name."""
        path = Path(path).absolute()
        st = path.stat()
        entry = Entry(file=path.name, kind="trusted", sha256=sha256, size=st.st_size, mtime_ns=st.st_mtime_ns,
                      model=name, original=str(path))
        target = self._trust_record(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        return self._write_record(target, entry)

    def trusted(self, name: str) -> Entry | None:
        """The user's trust of model ``name``: its signed record, or None (none, unreadable, or
        not signed with this folder's key -- a record swapline did not write trusts nothing)."""
        try:
            entry = Entry.from_json(self._trust_record(name).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, UnicodeDecodeError):
            return None
        if entry.kind != "trusted" or entry.model != name or not entry.original or not self.signed(entry):
            return None
        return entry

    def trusted_all(self) -> dict[str, Entry]:
        """Every model the user trusts a file for, by name (signed records only)."""
        folder = self.folder / TRUSTED_DIR
        if not folder.is_dir():
            return {}
        found = {p.name[: -len(SUFFIX)]: None for p in sorted(folder.glob("*" + SUFFIX)) if not p.name.startswith(".")}
        return {name: entry for name in found if (entry := self.trusted(name)) is not None}

    def untrust(self, name: str) -> bool:
        """Forget the user's trust of model ``name``; whether there was a record."""
        try:
            self._trust_record(name).unlink()
        except FileNotFoundError:
            return False
        return True

    def _trust_record(self, name: str) -> Path:
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"{name!r} cannot name a trust record")
        return self.folder / TRUSTED_DIR / (name + SUFFIX)

    def _write(self, path: Path, entry: Entry) -> Entry:
        return self._write_record(sidecar(path), entry)

    def _write_record(self, target: Path, entry: Entry) -> Entry:
        key = self._folder_key(create=True)
        entry = replace(entry, mac=_mac(key, entry) if key is not None else None)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(entry.to_json(), encoding="utf-8")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return entry

    # ------------------------------------------------------------------ internals

    def _hash(self, path: Path, st: os.stat_result, *, fresh: bool) -> str:
        seen = self._hashed.get(path)
        if not fresh and seen is not None and seen[:2] == (st.st_size, st.st_mtime_ns):
            return seen[2]
        digest = sha256_file(path)
        self._hashed[path] = (st.st_size, st.st_mtime_ns, digest)
        return digest

    def _folder_key(self, *, create: bool) -> bytes | None:
        if self._key is not None or (self._key_read and not (create and self.writable)):
            return self._key
        self._key_read = True
        key_path = self.folder / KEY_NAME
        try:
            data = key_path.read_bytes()
            if len(data) >= 32:
                self._key = data
                return data
        except OSError:
            pass
        if not (create and self.writable):
            return None
        try:  # made once; a second process racing here keeps the first one's key
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{KEY_NAME}.{os.getpid()}.tmp"
            tmp.write_bytes(secrets.token_bytes(32))
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, key_path)
            except FileExistsError:
                pass
            finally:
                tmp.unlink(missing_ok=True)
            data = key_path.read_bytes()
        except OSError as exc:
            log.info("cannot keep a manifest key in %s: %s", self.folder, exc)
            return None
        if len(data) < 32:
            return None
        self._key = data
        return data


def _mac(key: bytes, entry: Entry) -> str:
    body = json.dumps(entry.payload(), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hmac.new(key, body, hashlib.sha256).hexdigest()
