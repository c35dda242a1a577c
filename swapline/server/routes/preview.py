"""``POST /preview``: one frame swapped with the current options, as a JPEG."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ...config import SwapConfig
from ...jobs.job import options_from_dict
from ..inputs import SwapInputs, multipart_body, read_swap_inputs
from ..state import ServerState, get_state
from ..uploads import encode_jpeg

router = APIRouter(tags=["preview"])


@router.post("/preview", response_class=Response, openapi_extra=multipart_body(preview=True),
             responses={200: {"content": {"image/jpeg": {}}, "description": "the swapped frame"},
                        422: {"description": "bad options, or no face in a source"}},
             summary="Swap one frame (JSON naming uploads, or multipart files) and return it as JPEG")
async def preview(request: Request) -> Response:
    state: ServerState = get_state(request)
    temporary: list[str] = []

    def folder() -> Path:  # multipart previews: a scratch upload folder, removed after
        upload_id, path = state.uploads.new_folder()
        temporary.append(upload_id)
        return path

    try:
        inputs = await read_swap_inputs(request, state, folder=folder, preview=True)
        config, _ = options_from_dict(inputs.options)
        data = await run_in_threadpool(render, state, inputs, config)
    finally:
        for upload_id in temporary:
            state.uploads.remove(upload_id)
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def render(state: ServerState, inputs: SwapInputs, config: SwapConfig) -> bytes:
    """The swapped frame as JPEG bytes (the preview runner, one at a time)."""
    with state.preview_lock:
        image = state.preview_runner.preview([m.path for m in inputs.sources], inputs.target.path, config,
                                             frame=inputs.frame)
    return encode_jpeg(image)
