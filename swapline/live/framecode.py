"""A frame number stamped in a corner as black and white blocks, read back after encoding.

Tests and benchmarks stamp each frame they send and read the number from what comes back, to
match frames and measure latency through codecs and networks. Two rows of 16 blocks in the
bottom-left corner: the 16 bits of ``index % 65536`` and, below them, their complement (a
check: a frame whose blocks do not agree reads as None). Block size and place are fractions of
the image width (a block is ``width / 48``), so a uniformly rescaled frame still reads.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BITS", "code_region", "read_code", "stamp_code"]

BITS = 16
_COLUMNS = 48.0  # the image width in blocks
_LEVEL_LOW, _LEVEL_HIGH = 40, 215  # what was written (away from the clipping ends)


def _block(width: int) -> float:
    return width / _COLUMNS


def code_region(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """``(y0, y1, x0, x1)``: the pixels the code covers in an image of ``shape`` (H, W, ...)."""
    h, w = shape[:2]
    b = _block(w)
    return round(h - 3 * b), round(h - b), round(b), round((BITS + 1) * b)


def _cells(shape: tuple[int, ...]) -> list[tuple[int, int, int, int, int, int]]:
    """``(row, bit, y0, y1, x0, x1)`` of every block (row 0: the bits, row 1: their complement)."""
    h, w = shape[:2]
    b = _block(w)
    out = []
    for row in range(2):
        y0 = h - (3 - row) * b
        for bit in range(BITS):
            x0 = (1 + bit) * b
            out.append((row, bit, round(y0), round(y0 + b), round(x0), round(x0 + b)))
    return out


def stamp_code(image: np.ndarray, index: int) -> np.ndarray:
    """Stamp ``index % 65536`` into ``image`` ``(H, W, 3) uint8`` (in place; returned).

    Raises:
        ValueError: the image is too small to hold the code (narrower than 96 pixels).
    """
    h, w = image.shape[:2]
    if w < 96 or h < 3 * _block(w) + 2:
        raise ValueError(f"image {w}x{h} is too small for a frame code")
    value = int(index) % (1 << BITS)
    for row, bit, y0, y1, x0, x1 in _cells(image.shape):
        on = (value >> (BITS - 1 - bit)) & 1
        if row == 1:
            on ^= 1
        image[y0:y1, x0:x1] = _LEVEL_HIGH if on else _LEVEL_LOW
    return image


def read_code(image: np.ndarray) -> int | None:
    """The number stamped by :func:`stamp_code` in ``image`` ``(H, W, 3)`` or ``(H, W)``
    uint8, or None when there is none (or the blocks are damaged)."""
    if image.shape[1] < 96:
        return None
    grey = image.mean(axis=2) if image.ndim == 3 else image.astype(np.float64)
    rows: list[list[int]] = [[], []]
    for row, _, y0, y1, x0, x1 in _cells(image.shape):
        dy, dx = max(1, (y1 - y0) // 4), max(1, (x1 - x0) // 4)
        level = float(grey[y0 + dy:y1 - dy, x0 + dx:x1 - dx].mean())
        if 80 < level < 175:  # neither black nor white: not a code
            return None
        rows[row].append(int(level >= 128))
    if any(a == b for a, b in zip(rows[0], rows[1])):
        return None
    value = 0
    for bit in rows[0]:
        value = (value << 1) | bit
    return value
