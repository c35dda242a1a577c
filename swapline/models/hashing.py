"""Hashing model files: a file's sha256, its short form in messages, and the hashes one store has
taken (:class:`FileHashes`), so that a file is hashed again only when its size or mtime changed."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def short(sha: str) -> str:
    """A sha256 as messages show it: its first 12 hex digits and an ellipsis."""
    return sha[:12] + "…"


class FileHashes:
    """The sha256 of each file one store has hashed, with the size and mtime the file had then."""

    def __init__(self) -> None:
        # path -> (size, mtime_ns, sha256) of files hashed by this store
        self._seen: dict[Path, tuple[int, int, str]] = {}

    def matches(self, path: Path, sha: str) -> bool:
        """Whether ``path`` hashes to ``sha``; re-hashed only when its size or mtime changed."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        seen = self._seen.get(path)
        if seen is not None and seen[:2] == (st.st_size, st.st_mtime_ns):
            return seen[2] == sha
        digest = sha256_file(path)
        self._seen[path] = (st.st_size, st.st_mtime_ns, digest)
        return digest == sha

    def remember(self, path: Path, digest: str) -> None:
        """Note that ``path``, with the size and mtime it has now, hashes to ``digest`` (hashed by
        whoever wrote or checked it just now)."""
        st = path.stat()
        self._seen[path] = (st.st_size, st.st_mtime_ns, digest)

    def last(self, path: Path) -> str:
        """The sha256 ``path`` had when it was last hashed here (KeyError: never hashed)."""
        return self._seen[path][2]

    def forget(self, path: Path) -> None:
        """Drop what is known of ``path`` (removed, or about to be written again)."""
        self._seen.pop(path, None)

    def clear(self) -> None:
        """Forget every hash: the next check of any file hashes it again."""
        self._seen.clear()
