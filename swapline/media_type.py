"""What a file is, by its content: magic bytes first, the extension only when they say nothing.

``sniff(path)`` tells an image from a video from anything else by the first bytes of the file;
``image_header(data)`` reads an image's size, bit depth and whether it has alpha from its header
alone, so a decompression bomb (a 2 MB PNG of 30000×30000 pixels) is refused before decoding.
No decoding happens here and nothing is imported but the standard library.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["image", "video", "unknown"]

from .formats import IMAGE_EXTENSIONS as IMAGE_SUFFIXES
from .formats import VIDEO_INPUT_EXTENSIONS as VIDEO_SUFFIXES

# ISO base media brands that hold still images (HEIF, AVIF), not videos
_IMAGE_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis")


@dataclass(frozen=True)
class ImageHeader:
    """What an image's header says: format, size in pixels, bits per channel, alpha."""

    format: str
    width: int
    height: int
    bit_depth: int = 8
    has_alpha: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height


def image_format(head: bytes) -> str | None:
    """The image format named by the magic bytes at the start of ``head``, or None."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3] in b" \t\r\n":
        return "pnm"
    if head[:3] in (b"PF\n", b"Pf\n"):
        return "pfm"
    if head.startswith((b"#?RADIANCE", b"#?RGBE")):
        return "hdr"
    if head.startswith(b"v/1\x01"):
        return "exr"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "jpeg2000"
    if head.startswith(b"\x59\xa6\x6a\x95"):
        return "sunraster"
    if head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS:
        return "heif"
    return None


def video_format(head: bytes) -> str | None:
    """The video container named by the magic bytes at the start of ``head``, or None."""
    if head[4:8] == b"ftyp" and head[8:12] not in _IMAGE_BRANDS:
        return "mp4"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpeg-ps"
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return "mpeg-ts"
    return None


def sniff(path: str | os.PathLike[str]) -> Kind:
    """``"image"`` or ``"video"`` by the file's first bytes; by its extension when they are not
    known (or the file cannot be read); ``"unknown"`` otherwise."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            head = fh.read(512)
    except OSError:
        head = b""
    if head:
        if image_format(head):
            return "image"
        if video_format(head):
            return "video"
    suffix = p.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return "video"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    return "unknown"


def image_header(data: bytes) -> ImageHeader | None:
    """Size, depth and alpha from an image's header, or None when the format or header is not
    one this module reads (the decoder's own limits then apply)."""
    fmt = image_format(data[:32])
    reader = _READERS.get(fmt or "")
    if reader is None:
        return None
    try:
        header = reader(data)
    except (struct.error, IndexError, ValueError):
        return None
    if header is None or header.width <= 0 or header.height <= 0:
        return None
    return header


# ------------------------------------------------------------------------------------ the readers


def _png(data: bytes) -> ImageHeader | None:
    if data[12:16] != b"IHDR":
        return None
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    alpha = colour in (4, 6)
    pos = 8
    while not alpha and pos + 8 <= len(data):  # palette or grey with a tRNS chunk: alpha too
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind in (b"IDAT", b"IEND"):
            break
        alpha = kind == b"tRNS"
        pos += 12 + length
    return ImageHeader("png", width, height, depth, alpha)


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> ImageHeader | None:
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # no length
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, or scan data before any frame header
            return None
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if marker in _SOF:
            precision, height, width = struct.unpack(">BHH", data[pos + 4:pos + 9])
            return ImageHeader("jpeg", width, height, precision) if height else None
        pos += 2 + length
    return None


def _gif(data: bytes) -> ImageHeader:
    width, height = struct.unpack("<HH", data[6:10])
    return ImageHeader("gif", width, height)


def _bmp(data: bytes) -> ImageHeader:
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:
        width, height = struct.unpack("<HH", data[18:22])
        return ImageHeader("bmp", width, height)
    width, height, _planes, bits = struct.unpack("<iiHH", data[18:30])
    return ImageHeader("bmp", abs(width), abs(height), 8)


def _webp(data: bytes) -> ImageHeader | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            return None
        width, height = struct.unpack("<HH", data[26:30])
        return ImageHeader("webp", width & 0x3FFF, height & 0x3FFF)
    if chunk == b"VP8L":
        (bits,) = struct.unpack("<I", data[21:25])
        return ImageHeader("webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, 8, bool(bits >> 28 & 1))
    if chunk == b"VP8X":
        flags = data[20]
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageHeader("webp", width, height, 8, bool(flags & 0x10))
    return None


def _tiff(data: bytes) -> ImageHeader | None:
    order = "<" if data[:2] == b"II" else ">"
    (magic,) = struct.unpack(order + "H", data[2:4])
    if magic != 42:  # BigTIFF: leave it to the decoder
        return None
    (ifd,) = struct.unpack(order + "I", data[4:8])
    (count,) = struct.unpack(order + "H", data[ifd:ifd + 2])
    tags: dict[int, int] = {}
    for i in range(count):
        entry = data[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
        tag, typ, num = struct.unpack(order + "HHI", entry[:8])
        if typ == 3:  # SHORT: the first value, inline or at the offset
            if num <= 2:
                (value,) = struct.unpack(order + "H", entry[8:10])
            else:
                (off,) = struct.unpack(order + "I", entry[8:12])
                (value,) = struct.unpack(order + "H", data[off:off + 2])
        elif typ == 4:
            (value,) = struct.unpack(order + "I", entry[8:12])
        else:
            continue
        tags[tag] = value
    if 256 not in tags or 257 not in tags:
        return None
    return ImageHeader("tiff", tags[256], tags[257], tags.get(258, 8), 338 in tags)


def _pnm(data: bytes) -> ImageHeader | None:
    fields: list[int] = []
    for line in data[2:4096].split(b"\n"):
        line = line.split(b"#", 1)[0]
        fields += [int(f) for f in line.split()]
        need = 2 if data[1:2] in b"14" else 3
        if len(fields) >= need:
            depth = 16 if need == 3 and fields[2] > 255 else 8
            return ImageHeader("pnm", fields[0], fields[1], depth)
    return None


def _pfm(data: bytes) -> ImageHeader | None:
    fields = data[3:200].split(b"\n", 1)[0].split()
    return ImageHeader("pfm", int(fields[0]), int(fields[1]), 32) if len(fields) >= 2 else None


def _hdr(data: bytes) -> ImageHeader | None:
    for line in data[:8192].split(b"\n"):
        parts = line.split()
        if len(parts) == 4 and parts[0] in (b"-Y", b"+Y") and parts[2] in (b"+X", b"-X"):
            return ImageHeader("hdr", int(parts[3]), int(parts[1]), 32)
    return None


_READERS = {"png": _png, "jpeg": _jpeg, "gif": _gif, "bmp": _bmp, "webp": _webp, "tiff": _tiff,
            "pnm": _pnm, "pfm": _pfm, "hdr": _hdr}
