"""The image job: read the target, swap, write the result atomically.

Inputs are never modified. The output is encoded in memory, written to a temporary file in the
output's folder and renamed into place, so an interrupted run leaves nothing under the final name.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from ..errors import ConfigError, InputError, OutputError
from ..media_type import image_header
from ..tempfiles import create_temp

from ..formats import ALPHA_EXTENSIONS, IMAGE_EXTENSIONS

DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_CEILING = 1 << 30  # OpenCV's own decoder limit (CV_IO_MAX_IMAGE_PIXELS)


class DeepImageWarning(UserWarning):
    """An input with more than 8 bits per channel is processed (and written) with 8."""


def check_max_pixels(max_pixels: int) -> int:
    """``max_pixels`` if it is a usable limit, else :class:`ConfigError`."""
    if not 1 <= int(max_pixels) <= MAX_PIXELS_CEILING:
        raise ConfigError(f"--max-pixels must be between 1 and {MAX_PIXELS_CEILING} (got {max_pixels})")
    return int(max_pixels)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Silence what C libraries print straight to file descriptor 2 (``libpng error: …``,
    OpenCV's ``[ WARN ]`` lines) while decoding: swapline says what went wrong in its one line."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, 2)
        finally:
            os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def read_image(path: str | os.PathLike[str], what: str = "image", *,
               max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode an image file to ``(H, W, 3) uint8`` BGR (grey and alpha images converted).

    Raises:
        InputError: the file is missing, unreadable, larger than ``max_pixels`` (read from its
            header before decoding where swapline knows the format), or not an image OpenCV can
            decode.
    """
    return read_image_with_alpha(path, what, max_pixels=max_pixels, alpha=False)[0]


def read_image_with_alpha(path: str | os.PathLike[str], what: str = "image", *,
                          max_pixels: int = DEFAULT_MAX_PIXELS,
                          alpha: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`read_image`, and the image's alpha plane ``(H, W) uint8`` when it has one (and
    ``alpha`` is asked for), else None. Deep images (16 bits) become 8-bit with one warning."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what} not found: {p}")
    if p.is_dir():
        raise InputError(f"{what} is a folder, not a file: {p}")
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read {what} {p}: {exc.strerror or exc}") from exc
    header = image_header(data[:1 << 16].tobytes()) if data.size else None
    limit = check_max_pixels(max_pixels)
    if header is not None and header.pixels > limit:
        raise InputError(f"{what} is {header.width}×{header.height} pixels ({header.pixels / 1e6:.0f} MP), more "
                         f"than --max-pixels {limit} ({limit / 1e6:g} MP); refused before decoding: {p}")
    deep = header is not None and header.bit_depth > 8
    keep = alpha and header is not None and header.has_alpha
    image: np.ndarray | None = None
    plane: np.ndarray | None = None
    with _native_stderr_silenced():
        try:
            if data.size and (deep or keep):
                image, plane = _to_bgr8(cv2.imdecode(data, cv2.IMREAD_UNCHANGED))
            if image is None and data.size:
                image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        except cv2.error:
            image = None
    if image is None:
        raise InputError(f"{what} is not an image swapline can read: {p}")
    if image.shape[0] * image.shape[1] > limit:  # a format whose header swapline does not read
        raise InputError(f"{what} is {image.shape[1]}×{image.shape[0]} pixels, more than --max-pixels {limit}: {p}")
    if deep:
        warnings.warn(f"{what} {p.name} has {header.bit_depth} bits per channel; swapline works with 8 and "  # type: ignore[union-attr]
                      "writes 8-bit output", DeepImageWarning, stacklevel=2)
    return image, (plane if keep else None)


def _to_bgr8(decoded: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """An ``IMREAD_UNCHANGED`` decode as 8-bit BGR plus its 8-bit alpha plane (or None)."""
    if decoded is None:
        return None, None
    if decoded.dtype == np.uint16:
        decoded = (decoded >> 8).astype(np.uint8)
    elif decoded.dtype != np.uint8:
        return None, None  # float formats: let IMREAD_COLOR convert them as before
    if decoded.ndim == 2:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2BGR), None
    channels = decoded.shape[2]
    if channels == 1:
        return cv2.cvtColor(decoded, cv2.COLOR_GRAY2BGR), None
    if channels == 2:
        return cv2.cvtColor(np.ascontiguousarray(decoded[:, :, 0]), cv2.COLOR_GRAY2BGR), decoded[:, :, 1].copy()
    if channels == 3:
        return decoded, None
    return np.ascontiguousarray(decoded[:, :, :3]), decoded[:, :, 3].copy()


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


def write_image(path: str | os.PathLike[str], image: np.ndarray, *, quality: int = 95,
                alpha: np.ndarray | None = None) -> None:
    """Encode ``image`` ``(H, W, 3) uint8`` by the path's extension and rename it into place;
    ``alpha`` ``(H, W) uint8`` is added as a fourth channel where the format holds one (PNG,
    WebP, TIFF)."""
    p = Path(path)
    ext = p.suffix.lower()
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, int(quality)]
    if alpha is not None and ext in ALPHA_EXTENSIONS and image.ndim == 3 and image.shape[2] == 3 \
            and alpha.shape == image.shape[:2]:
        image = np.dstack([image, alpha])
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise OutputError(f"cannot encode the result as {ext}: {p}")
    atomic_write_bytes(p, buf.tobytes())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``."""
    parent = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp_path = create_temp(path)
        tmp = str(tmp_path)
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
