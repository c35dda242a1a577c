"""The one list of file formats swapline reads and writes, by extension (lower case, with the dot).

What a file *is* is decided by its content (:mod:`swapline.media_type`); these lists say which
names swapline accepts for outputs and which it recognises for inputs when the bytes say nothing.
"""

from __future__ import annotations

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
"""Images read and written."""

ALPHA_EXTENSIONS: tuple[str, ...] = (".png", ".webp", ".tif", ".tiff")
"""Image outputs that keep the target's alpha plane."""

VIDEO_OUTPUT_EXTENSIONS: tuple[str, ...] = (".mp4", ".mov", ".mkv", ".webm", ".m4v")
"""Video containers written (``.m4v`` is MP4 by another name)."""

VIDEO_INPUT_EXTENSIONS: tuple[str, ...] = (*VIDEO_OUTPUT_EXTENSIONS, ".avi")
"""Video containers read (any FFmpeg reads; these names mark a video when the bytes say nothing)."""
