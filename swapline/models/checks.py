"""Where the store's model files are and whether they check out: its folders, their manifests and
the hashes it has taken (:class:`FileChecks`).

Every original is sha256-checked when it is taken; a converted file is checked against its
manifest record (:mod:`swapline.models.manifest`, :mod:`swapline.models.converted`). A file
hashed when it was written carries a signed record, and later loads compare only its size and
mtime; ``swapline models verify`` (:mod:`swapline.models.verify`) re-hashes everything,
``optimized/`` included. Anything that fails a check is deleted and fetched or converted again,
once.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .catalog import ModelSpec
from .hashing import FileHashes
from .manifest import Manifest

log = logging.getLogger(__name__)


class FileChecks:
    """The cache folder ``models_dir`` and the user's ``model_dir`` (``--model-dir``, or None),
    the manifests of both and the hashes taken of their files (:class:`FileHashes`)."""

    def __init__(self, models_dir: Path, model_dir: Path | None) -> None:
        self.models_dir = models_dir
        self.model_dir = model_dir
        self.hashes = FileHashes()
        # the records of the files this store writes, and of converted files in model_dir
        self.manifest = Manifest(models_dir)
        self.user_manifest = Manifest(model_dir, writable=False) if model_dir is not None else None

    def manifest_for(self, path: Path) -> Manifest:
        """The manifest of the folder holding ``path`` (a read-only one outside the cache)."""
        if path.parent == self.models_dir:
            return self.manifest
        if self.user_manifest is not None and path.parent == self.model_dir:
            return self.user_manifest
        return Manifest(path.parent, writable=False)

    def original_ok(self, spec: ModelSpec, cached: Path) -> bool:
        """Whether a fetched original in the cache is the catalogue's file: a cheap check when
        its signed record says so, else a full hash (after which it is recorded)."""
        entry = self.manifest.entry(cached)
        if entry is not None and entry.sha256 == spec.sha256 and self.manifest.check(cached) is None:
            return True
        if self.hashes.matches(cached, spec.sha256):
            self.record_original(spec, cached)
            return True
        return False

    def record_original(self, spec: ModelSpec, cached: Path) -> None:
        """Record the verified original ``cached`` in the cache's manifest, unless a signed record
        already says so."""
        entry = self.manifest.entry(cached)
        if entry is not None and entry.sha256 == spec.sha256 and self.manifest.signed(entry):
            return
        try:
            self.manifest.record(cached, kind="original", sha256=spec.sha256, model=spec.name)
        except OSError as exc:  # a read-only cache: the file is hashed on each run instead
            log.info("cannot record %s in the manifest: %s", cached, exc)

    def remove_converted(self, converted: Path) -> None:
        """Delete a converted file of the cache and its record, and forget its hash."""
        self.manifest.forget(converted)
        self.hashes.forget(converted)
