"""The image job: read the target, swap, write the result atomically.

Inputs are never modified. The output is encoded in memory, written to a temporary file in the
output's folder and renamed into place, so an interrupted run leaves nothing under the final name.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError, OutputError

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def read_image(path: str | os.PathLike[str], what: str = "image") -> np.ndarray:
    """Decode an image file to ``(H, W, 3) uint8`` BGR (grey and alpha images converted).

    Raises:
        InputError: the file is missing, unreadable, or not an image OpenCV can decode.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if p.is_dir():
        raise InputError(f"{what} is a folder, not a file: {p}")
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read {what} {p}: {exc.strerror or exc}") from exc
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(f"{what} is not an image swapline can read: {p}")
    return image


def check_output_path(path: str | os.PathLike[str], *, force: bool, extensions: tuple[str, ...]) -> Path:
    """Validate where an output will go before any work is done.

    Raises:
        OutputError: unsupported extension, missing folder, or an existing file without ``force``.
    """
    p = Path(path)
    if p.suffix.lower() not in extensions:
        raise OutputError(
            f"unsupported output extension {p.suffix or '(none)'!r} for {p}; use one of {', '.join(extensions)}"
        )
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if p.is_dir():
        raise OutputError(f"output is a folder: {p}")
    if p.exists() and not force:
        raise OutputError(f"output exists: {p} (use --force to overwrite)")
    return p


def write_image(path: str | os.PathLike[str], image: np.ndarray, *, quality: int = 95) -> None:
    """Encode ``image`` ``(H, W, 3) uint8`` by the path's extension and rename it into place."""
    p = Path(path)
    ext = p.suffix.lower()
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise OutputError(f"cannot encode the result as {ext}: {p}")
    atomic_write_bytes(p, buf.tobytes())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    except OSError as exc:
        raise OutputError(f"cannot write in {parent}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; give the output a normal file's mode
                os.fchmod(fh.fileno(), 0o666 & ~_umask())
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        _unlink(tmp)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        _unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
