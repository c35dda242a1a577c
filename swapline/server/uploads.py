"""Uploads: streamed to disk under server-chosen names, capped, and sniffed by their content.

A multipart body is parsed as it arrives (``python-multipart``'s streaming parser) and each file
part is written in chunks straight into its folder as ``<field>.part``; past the size cap the
request ends with 413 and what was written is removed. When the body is complete each file's
first bytes decide what it is (:func:`swapline.media_type.sniff`): not an image or a video → 415;
otherwise it is renamed ``<field><suffix of its format>`` and opened once (an image decoded, a
video probed and its first frame decoded) to learn its size and make a thumbnail. The client's
file name is kept for display only; no path from the client ever touches the file system.

Layout under the server's data folder::

    uploads/<32 hex digits>/file.jpg          the upload (the field's name, its format's suffix)
    uploads/<32 hex digits>/thumbnail.jpg     at most 320 px on its long side
    uploads/<32 hex digits>/meta.json         kind, display name, size, width, height, frames
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import cv2
import numpy as np
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import InputError
from ..media_type import image_format, sniff, video_format
from .errors import NotFoundError, TooLargeError, UnsupportedMediaError

try:  # python-multipart >= 0.0.13
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header
except ImportError:  # pragma: no cover - older python-multipart
    from multipart.exceptions import FormParserError  # type: ignore[no-redef]
    from multipart.multipart import MultipartParser, parse_options_header  # type: ignore[no-redef]

MediaKind = Literal["image", "video"]
THUMBNAIL_SIDE = 320
MAX_FIELD_BYTES = 1 << 20  # a text field (options) is small
FORM_OVERHEAD_BYTES = 1 << 20  # part headers and text fields on top of the file bytes
_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")

_IMAGE_SUFFIX = {"png": ".png", "jpeg": ".jpg", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif", "gif": ".gif",
                 "pnm": ".pnm", "pfm": ".pfm", "hdr": ".hdr", "exr": ".exr", "jpeg2000": ".jp2",
                 "sunraster": ".ras", "heif": ".heif"}
_VIDEO_SUFFIX = {"mp4": ".mp4", "mov": ".mov", "matroska": ".mkv", "avi": ".avi", "flv": ".flv", "ogg": ".ogv",
                 "mpeg-ps": ".mpg", "mpeg-ts": ".ts"}


@dataclass(frozen=True)
class Media:
    """One received file: where it is, what it is, and its size in pixels and frames.

    Attributes:
        path: the server-chosen path.
        kind: ``"image"`` or ``"video"`` by its content.
        name: the client's file name, for display only (never used as a path).
        size: bytes.
        width, height: pixels (as displayed, rotation applied).
        frames: a video's frame count (None for images).
    """

    path: Path
    kind: MediaKind
    name: str
    size: int
    width: int
    height: int
    frames: int | None = None


@dataclass(frozen=True)
class Upload:
    """A stored upload: its id and its file."""

    id: str
    media: Media

    def to_dict(self) -> dict[str, Any]:
        """The API's view: no server path."""
        m = self.media
        return {"id": self.id, "kind": m.kind, "name": m.name, "width": m.width, "height": m.height,
                "frames": m.frames, "size": m.size}


@dataclass
class ReceivedForm:
    """A parsed multipart body: files by field (in order) and text fields."""

    files: dict[str, list[Media]] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)


class UploadStore:
    """The ``uploads/`` folder: one sub-folder per upload, named by a random id."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def new_folder(self) -> tuple[str, Path]:
        """A fresh upload id and its (created) folder."""
        while True:
            upload_id = secrets.token_hex(16)
            folder = self.root / upload_id
            try:
                folder.mkdir()
            except FileExistsError:  # pragma: no cover - 128 random bits
                continue
            return upload_id, folder

    def save(self, upload_id: str, media: Media) -> Upload:
        """Record ``media`` (a file inside the upload's folder) as the upload ``upload_id``."""
        folder = self.folder(upload_id)
        meta = {**asdict(media), "path": media.path.name}
        tmp = folder / "meta.json.part"
        tmp.write_text(json.dumps(meta), encoding="utf-8")
        tmp.replace(folder / "meta.json")
        return Upload(upload_id, media)

    def folder(self, upload_id: str) -> Path:
        """The folder of an upload id (only ids of the server's own form are accepted).

        Raises:
            NotFoundError: not an upload id.
        """
        if not isinstance(upload_id, str) or not _UPLOAD_ID.fullmatch(upload_id):
            raise NotFoundError(f"no upload {upload_id!r}")
        return self.root / upload_id

    def get(self, upload_id: str) -> Upload:
        """The upload ``upload_id``.

        Raises:
            NotFoundError: no such upload.
        """
        folder = self.folder(upload_id)
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            name = PurePosixPath(meta["path"]).name  # written by us; a bare name all the same
            media = Media(path=folder / name, kind=meta["kind"], name=meta["name"], size=int(meta["size"]),
                          width=int(meta["width"]), height=int(meta["height"]), frames=meta.get("frames"))
        except (OSError, ValueError, KeyError, TypeError):
            raise NotFoundError(f"no upload {upload_id!r}") from None
        if not media.path.is_file():
            raise NotFoundError(f"upload {upload_id} is gone")
        return Upload(upload_id, media)

    def thumbnail(self, upload_id: str) -> Path:
        """The upload's JPEG thumbnail (made again if it went missing)."""
        upload = self.get(upload_id)
        path = upload.media.path.parent / "thumbnail.jpg"
        if not path.is_file():
            write_thumbnail(path, first_frame(upload.media.path, upload.media.kind, upload.media.name))
        return path

    def remove(self, upload_id: str) -> None:
        shutil.rmtree(self.folder(upload_id), ignore_errors=True)

    def sweep(self, older_than_s: float = 3600.0) -> list[str]:
        """Remove upload folders that never got their ``meta.json`` (a transfer cut off by a
        killed server) and are older than ``older_than_s``; returns their ids. Never raises."""
        removed: list[str] = []
        now = time.time()
        try:
            entries = list(self.root.iterdir())
        except OSError:
            return removed
        for folder in entries:
            try:
                stale = now - folder.stat().st_mtime > older_than_s
            except OSError:
                continue
            if _UPLOAD_ID.fullmatch(folder.name) and stale and not (folder / "meta.json").exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        return removed


# ------------------------------------------------------------------------------ receiving bodies


def check_length(request: Request, limit: int) -> None:
    """413 at once when the body's declared length is over ``limit`` (nothing is read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLargeError(f"the request is {int(declared)} bytes; this server takes at most {limit} bytes of uploads")


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith("multipart/form-data")


async def receive_form(request: Request, folder: Path, *, file_fields: Iterable[str], text_fields: Iterable[str] = (),
                       max_bytes: int, thumbnails: bool = False) -> ReceivedForm:
    """Stream a ``multipart/form-data`` body into ``folder`` and sniff every file.

    Files of ``file_fields`` are written as ``<field>.part`` (``<field><i>.part`` for the second
    and later file of a field) while they arrive, then renamed by their sniffed format; fields
    not named are read and dropped. At most ``max_bytes`` of file data in all. ``thumbnails``:
    also write ``thumbnail.jpg`` beside each (for single-file uploads).

    Raises:
        TooLargeError: over the cap (the files written so far are removed).
        UnsupportedMediaError: not a multipart body, or a file that is not an image or video.
        InputError: a malformed body.
    """
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaError("send the files as multipart/form-data")
    check_length(request, max_bytes + FORM_OVERHEAD_BYTES)
    sink = _FormSink(folder, set(file_fields), set(text_fields), max_bytes)
    parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + FORM_OVERHEAD_BYTES:
                raise TooLargeError(f"the request is over the {max_bytes} bytes this server takes")
            _feed(parser, chunk)
            sink.raise_pending()
        _feed(parser, None)
        sink.raise_pending()
        if sink.current is not None or not sink.ended:
            raise InputError("the multipart body ended early")
        return ReceivedForm(files={name: await _finish_files(parts, thumbnails) for name, parts in sink.files.items()},
                            fields=sink.fields)
    except BaseException:
        sink.abort()
        raise


def _feed(parser: MultipartParser, chunk: bytes | None) -> None:
    """Give the parser a chunk (None: the end); a malformed body is an :class:`InputError`."""
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except FormParserError as exc:
        raise InputError(f"the multipart body is malformed: {exc}") from None


class _Part:
    """A file part being written."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name
        self.size = 0
        self.handle = open(path, "xb")  # noqa: SIM115 - closed by _FormSink


class _FormSink:
    """The streaming parser's callbacks: headers, then each part's data to its file or buffer."""

    def __init__(self, folder: Path, file_fields: set[str], text_fields: set[str], max_bytes: int) -> None:
        self.folder = folder
        self.file_fields = file_fields
        self.text_fields = text_fields
        self.max_bytes = max_bytes
        self.total = 0
        self.files: dict[str, list[_Part]] = {}
        self.fields: dict[str, str] = {}
        self.current: _Part | None = None
        self._text: tuple[str, bytearray] | None = None
        self._headers: dict[str, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._error: BaseException | None = None
        self.ended = False

    def callbacks(self) -> dict[str, Any]:
        return {"on_part_begin": self._part_begin, "on_header_field": self._header_field,
                "on_header_value": self._header_value, "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
                "on_part_end": self._part_end, "on_end": self._end}

    def raise_pending(self) -> None:
        """Raise what a callback ran into (callbacks must not raise inside the parser)."""
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        """Close and remove every file written."""
        for parts in self.files.values():
            for part in parts:
                part.handle.close()
                part.path.unlink(missing_ok=True)
        self.current = None

    # -- callbacks
    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        if self._error is not None:
            return
        _, params = parse_options_header(self._headers.get("content-disposition", b""))
        name = params.get(b"name", b"").decode("utf-8", "replace")
        if name in self.file_fields:
            parts = self.files.setdefault(name, [])
            if len(parts) >= 32:
                self._error = InputError(f"too many files in the field {name!r} (at most 32)")
                return
            filename = params.get(b"filename", b"").decode("utf-8", "replace")
            stem = name if not parts else f"{name}{len(parts)}"
            self.current = _Part(self.folder / f"{stem}.part", display_name(filename) or name)
            parts.append(self.current)
        elif name in self.text_fields:
            self._text = (name, bytearray())

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._error is not None:
            return
        n = end - start
        if self.current is not None:
            self.total += n
            if self.total > self.max_bytes:
                self._error = TooLargeError(f"the upload is over the {self.max_bytes} bytes this server takes")
                return
            self.current.handle.write(data[start:end])
            self.current.size += n
        elif self._text is not None:
            buf = self._text[1]
            if len(buf) + n > MAX_FIELD_BYTES:
                self._error = TooLargeError(f"the field {self._text[0]!r} is over {MAX_FIELD_BYTES} bytes")
                return
            buf += data[start:end]

    def _part_end(self) -> None:
        if self.current is not None:
            self.current.handle.close()
            self.current = None
        if self._text is not None:
            name, buf = self._text
            self.fields[name] = buf.decode("utf-8", "replace")
            self._text = None

    def _end(self) -> None:
        self.ended = True


async def _finish_files(parts: list[_Part], thumbnails: bool) -> list[Media]:
    out = []
    for part in parts:
        part.handle.close()
        media = await run_in_threadpool(identify, part.path, part.name, thumbnail=thumbnails)
        part.path = media.path  # renamed: an error with a later file removes this one too
        out.append(media)
    return out


# ------------------------------------------------------------------------------ what a file is


def display_name(filename: str) -> str:
    """The last component of a client's file name, printable, at most 200 characters (shown,
    never used as a path)."""
    base = PurePosixPath(filename.replace("\\", "/")).name
    clean = "".join(c for c in base if c.isprintable())
    return clean[:200]


def identify(path: Path, name: str, *, thumbnail: bool = False) -> Media:
    """Sniff a received ``<field>.part`` file, rename it ``<field><suffix>``, read its size and
    (``thumbnail``) write ``thumbnail.jpg`` beside it.

    Raises:
        UnsupportedMediaError: not an image or video swapline reads (the file is removed).
    """
    try:
        kind = sniff(path) if path.stat().st_size else "unknown"
        if kind == "unknown":
            raise UnsupportedMediaError(f"{name!r} is not an image or a video (its content says neither)")
        with open(path, "rb") as fh:
            head = fh.read(512)
        fmt = image_format(head) if kind == "image" else video_format(head)
        suffix = (_IMAGE_SUFFIX if kind == "image" else _VIDEO_SUFFIX).get(fmt or "", "")
        final = path.with_suffix(suffix or (".img" if kind == "image" else ".video"))
        path.replace(final)
        path = final
        media, frame = _inspect(path, kind, name, decode=thumbnail)
        if thumbnail and frame is not None:
            write_thumbnail(path.parent / "thumbnail.jpg", frame)
        return media
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _inspect(path: Path, kind: MediaKind, name: str, *, decode: bool) -> tuple[Media, np.ndarray | None]:
    """The file's :class:`Media`, and its first frame when ``decode`` (an image is always
    decoded: that is how it is checked)."""
    size = path.stat().st_size
    if kind == "video":
        from ..video.reader import probe

        try:
            info = probe(path)
        except InputError as exc:
            raise UnsupportedMediaError(_reason(exc, path, name)) from None
        width, height = (info.height, info.width) if info.rotation in (90, 270) else (info.width, info.height)
        frame = first_frame(path, kind, name) if decode else None
        return Media(path, "video", name, size, width, height, info.frame_count), frame
    image = first_frame(path, kind, name)
    return Media(path, "image", name, size, int(image.shape[1]), int(image.shape[0])), image


def first_frame(path: Path, kind: MediaKind, name: str) -> np.ndarray:
    """The image itself, or a video's first frame: ``(H, W, 3) uint8`` BGR.

    Raises:
        UnsupportedMediaError: it cannot be decoded.
    """
    try:
        if kind == "video":
            from ..jobs.runner import read_video_frame

            return read_video_frame(path, 0)
        from ..pipeline.image import read_image

        return read_image(path, "upload")
    except InputError as exc:
        raise UnsupportedMediaError(_reason(exc, path, name)) from None


def write_thumbnail(path: Path, image: np.ndarray, side: int = THUMBNAIL_SIDE) -> None:
    """``image`` scaled to at most ``side`` pixels on its long side, as a JPEG at ``path``."""
    h, w = image.shape[:2]
    scale = min(1.0, side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
        raise InputError("the thumbnail could not be encoded")
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover
        raise InputError("the image could not be encoded as JPEG")
    return data.tobytes()


def _reason(exc: Exception, path: Path, name: str) -> str:
    """The error's line, with the client's name in place of the server's path."""
    return f"{name!r} cannot be read: " + str(exc).replace(str(path), "the upload")
