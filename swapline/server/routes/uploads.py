"""``/uploads``: files sent once and named by id in jobs and previews; thumbnails; the faces a
target holds (to click one as the reference)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel

from ...jobs.job import options_from_dict
from ..errors import InvalidRequestError
from ..inputs import parse_options
from ..state import ServerState, StateDep, get_state
from ..uploads import receive_form

router = APIRouter(tags=["uploads"])


class UploadOut(BaseModel):
    id: str
    kind: str
    name: str
    width: int
    height: int
    frames: int | None = None
    size: int


_FILE_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "an image or a video"}},
}}}}}


@router.post("/uploads", status_code=201, response_model=UploadOut, openapi_extra=_FILE_BODY,
             summary="Upload an image or a video (multipart field 'file'); streamed to disk, sniffed",
             responses={413: {"description": "over the size cap"}, 415: {"description": "not an image or video"}})
async def create_upload(request: Request) -> JSONResponse:
    state: ServerState = get_state(request)
    upload_id, folder = state.uploads.new_folder()
    try:
        form = await receive_form(request, folder, file_fields=("file",), max_bytes=state.settings.max_upload_bytes,
                                  thumbnails=True)
        files = form.files.get("file", [])
        if len(files) != 1:
            raise InvalidRequestError("give exactly one file in the form field 'file'")
        upload = state.uploads.save(upload_id, files[0])
    except BaseException:
        state.uploads.remove(upload_id)
        raise
    return JSONResponse(upload.to_dict(), status_code=201, headers={"Location": f"/uploads/{upload_id}"})


@router.get("/uploads/{upload_id}", response_model=UploadOut, summary="What an upload is")
def get_upload(upload_id: str, state: StateDep) -> dict[str, Any]:
    return state.uploads.get(upload_id).to_dict()


@router.delete("/uploads/{upload_id}", status_code=204, summary="Remove an upload")
def delete_upload(upload_id: str, state: StateDep) -> Response:
    state.uploads.get(upload_id)
    state.uploads.remove(upload_id)
    return Response(status_code=204)


@router.get("/uploads/{upload_id}/thumbnail", response_class=FileResponse,
            responses={200: {"content": {"image/jpeg": {}}}},
            summary="JPEG thumbnail (a video's first frame), at most 320 px on its long side")
def thumbnail(upload_id: str, state: StateDep) -> FileResponse:
    return FileResponse(state.uploads.thumbnail(upload_id), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=3600"})


@router.get("/uploads/{upload_id}/faces",
            summary="The faces in an image or video frame, in the selector's order (positions for "
                    "reference_face_position)")
def faces(upload_id: str, state: StateDep, frame: Annotated[int, Query(ge=0)] = 0,
          options: Annotated[str | None, Query(description="options as a JSON object")] = None) -> dict[str, Any]:
    upload = state.uploads.get(upload_id)
    config, _ = options_from_dict(parse_options(options))
    with state.preview_lock:
        found = state.preview_runner.faces(upload.media.path, config, frame=frame)
    return {"id": upload_id, "frame": frame, "width": upload.media.width, "height": upload.media.height,
            "faces": found}
