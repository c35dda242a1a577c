"""The inputs of a swap request (``POST /jobs``, ``POST /preview``), as JSON or as multipart.

JSON names earlier uploads: ``{"sources": [upload ids], "target": upload id, "options": {...}}``.
Multipart carries the files themselves: ``source`` (one or more), ``target`` and ``options`` (a
JSON string); they are streamed into a folder the caller chooses (see :mod:`.uploads`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from pydantic import BaseModel, Field, ValidationError

from ..errors import ConfigError
from .errors import InvalidRequestError, NotFoundError, UnsupportedMediaError
from .state import ServerState
from .uploads import Media, check_length, is_multipart, receive_form

MAX_JSON_BYTES = 1 << 20


class SwapRequest(BaseModel):
    """``POST /jobs`` as JSON: uploads by id, and the options."""

    sources: list[str] = Field(min_length=1, max_length=32, description="upload ids of the source photos")
    target: str = Field(description="upload id of the target image or video")
    options: dict[str, Any] | str | None = Field(
        default=None, description="option names and values (SwapConfig and VideoConfig fields), "
                                  "e.g. {\"face_selector_mode\": \"many\", \"trim_end\": 100}")


class PreviewRequest(SwapRequest):
    """``POST /preview`` as JSON: a :class:`SwapRequest` and the frame to show."""

    frame: int = Field(default=0, ge=0, description="the video frame to swap (0 for images)")


@dataclass(frozen=True)
class SwapInputs:
    """A swap request's files and options, whichever way they came."""

    sources: tuple[Media, ...]
    target: Media
    options: dict[str, Any]
    frame: int = 0


def multipart_body(*, preview: bool = False) -> dict[str, Any]:
    """The OpenAPI ``requestBody`` of a route taking JSON or multipart."""
    model = PreviewRequest if preview else SwapRequest
    form: dict[str, Any] = {
        "type": "object",
        "required": ["source", "target"],
        "properties": {
            "source": {"type": "array", "items": {"type": "string", "format": "binary"},
                       "description": "one or more source photos"},
            "target": {"type": "string", "format": "binary", "description": "the target image or video"},
            "options": {"type": "string", "description": "the options as a JSON object"},
        },
    }
    if preview:
        form["properties"]["frame"] = {"type": "integer", "minimum": 0}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": model.model_json_schema()},
        "multipart/form-data": {"schema": form},
    }}}


async def read_swap_inputs(request: Request, state: ServerState, *, folder: Callable[[], Path],
                           preview: bool = False) -> SwapInputs:
    """The request's sources, target, options (and ``frame``), as JSON naming uploads or as
    multipart files streamed into ``folder()`` (called only for multipart).

    Raises:
        InvalidRequestError: the body has the wrong shape (422); an unknown upload id (422).
        ConfigError: ``options`` is not a JSON object (422).
        UnsupportedMediaError: neither JSON nor multipart; a file that is no image or video;
            a video given as a source (415).
        TooLargeError: over the upload cap (413).
    """
    if is_multipart(request):
        return await _from_form(request, state, folder(), preview)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise UnsupportedMediaError("send application/json naming uploads, or multipart/form-data with the files")
    check_length(request, MAX_JSON_BYTES)
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise InvalidRequestError("the JSON body is too large")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the body is not valid JSON: {exc}") from None
    model = PreviewRequest if preview else SwapRequest
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError(_validation_line(exc)) from None
    sources = tuple(_upload(state, i, "source") for i in parsed.sources)
    target = _upload(state, parsed.target, "target")
    return _checked(sources, target, parse_options(parsed.options), getattr(parsed, "frame", 0))


async def _from_form(request: Request, state: ServerState, folder: Path, preview: bool) -> SwapInputs:
    form = await receive_form(request, folder, file_fields=("source", "target"), text_fields=("options", "frame"),
                              max_bytes=state.settings.max_upload_bytes)
    sources = tuple(form.files.get("source", ()))
    targets = form.files.get("target", [])
    if not sources:
        raise InvalidRequestError("give at least one source photo in the form field 'source'")
    if len(targets) != 1:
        raise InvalidRequestError("give exactly one target file in the form field 'target'")
    frame = 0
    if preview and form.fields.get("frame", "").strip():
        try:
            frame = int(form.fields["frame"])
        except ValueError:
            raise InvalidRequestError(f"frame must be a whole number (got {form.fields['frame']!r})") from None
        if frame < 0:
            raise InvalidRequestError(f"frame must be 0 or more (got {frame})")
    return _checked(sources, targets[0], parse_options(form.fields.get("options")), frame)


def parse_options(options: dict[str, Any] | str | None) -> dict[str, Any]:
    """Options as given (a dict, a JSON string, or nothing) → a dict.

    Raises:
        ConfigError: not a JSON object.
    """
    if options is None:
        return {}
    if isinstance(options, str):
        if not options.strip():
            return {}
        try:
            options = json.loads(options)
        except ValueError as exc:
            raise ConfigError(f"options: not valid JSON ({exc})") from None
    if not isinstance(options, dict):
        raise ConfigError("options must be a JSON object of option names and values")
    return options


def _checked(sources: tuple[Media, ...], target: Media, options: dict[str, Any], frame: int) -> SwapInputs:
    for media in sources:
        if media.kind != "image":
            raise UnsupportedMediaError(f"source {media.name!r} is a {media.kind}; sources must be photos")
    return SwapInputs(sources, target, options, frame)


def _upload(state: ServerState, upload_id: str, role: str) -> Media:
    try:
        return state.uploads.get(upload_id).media
    except NotFoundError:
        raise InvalidRequestError(f"{role}: no upload {upload_id!r} (POST the file to /uploads first)") from None


def _validation_line(exc: ValidationError) -> str:
    """Pydantic's errors in one line: ``sources: Field required; target: ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"
