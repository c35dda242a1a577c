"""``/live``: the live page, and its sessions (a browser camera in over WebRTC, swapped frames out).

- ``GET /live``: the page.
- ``POST /live/offer``: ``{"sdp", "type": "offer", "source": upload id or null, "options": {...}}``
  → ``{"id", "sdp", "type": "answer"}`` (429 when every live slot is taken).
- ``POST /live/{id}/source``: ``{"source": upload id or null}``: another face from now on.
- ``POST /live/{id}/options``: the options object (SwapConfig fields): from now on.
- ``GET /live/{id}/stats``: the engine's figures (captured, delivered, dropped, fps, latency
  p50/p95, swap time) and the transport's.
- ``DELETE /live/{id}``: end the session.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field, ValidationError

from ..errors import InvalidRequestError, UnsupportedMediaError
from ..inputs import MAX_JSON_BYTES, parse_options
from ..live import LiveManager, LiveSession, TooManySessionsError
from ..pages import STATIC_DIR
from ..uploads import check_length

router = APIRouter(tags=["live"])

STATIC_PAGE = "live.html"


class OfferRequest(BaseModel):
    """``POST /live/offer``: the browser's offer, the source and the options."""

    sdp: str = Field(min_length=1, max_length=MAX_JSON_BYTES, description="the offer's SDP")
    type: Literal["offer"] = Field(description="always \"offer\"")
    source: str | None = Field(default=None, description="upload id of the source photo; null: frames pass through")
    options: dict[str, Any] | str | None = Field(default=None, description="SwapConfig fields, e.g. "
                                                 "{\"face_selector_mode\": \"many\", \"relight\": 0.5}")


class SourceRequest(BaseModel):
    """``POST /live/{id}/source``."""

    source: str | None = Field(description="upload id of the source photo; null: frames pass through")


def _live(request: Request) -> LiveManager:
    return request.app.state.live


async def _json(request: Request) -> Any:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", ""):
        raise UnsupportedMediaError("send application/json")
    check_length(request, MAX_JSON_BYTES)
    body = await request.body()
    if len(body) > MAX_JSON_BYTES:
        raise InvalidRequestError("the JSON body is too large")
    try:
        return json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the body is not valid JSON: {exc}") from None


def _model(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidRequestError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                                            for e in exc.errors())) from None


def _described(session: LiveSession) -> dict[str, Any]:
    return {**session.info(), "links": {"stats": f"/live/{session.id}/stats", "self": f"/live/{session.id}"}}


@router.get("/live", response_class=FileResponse, include_in_schema=False)
def page(request: Request) -> FileResponse:
    return FileResponse(STATIC_DIR / STATIC_PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.post("/live/offer", status_code=201,
             responses={201: {"description": "the answer: {id, sdp, type}"},
                        422: {"description": "bad offer or options, no face in the source"},
                        429: {"description": "every live slot is taken"}},
             summary="Start a live session: the browser's WebRTC offer in, the answer out")
async def offer(request: Request) -> dict[str, Any]:
    body = _model(OfferRequest, await _json(request))
    try:
        session, sdp, kind = await _live(request).open(body.sdp, body.type, body.source, parse_options(body.options))
    except TooManySessionsError as exc:
        raise HTTPException(status_code=429, detail=str(exc), headers={"Retry-After": "5"}) from None
    return {**_described(session), "sdp": sdp, "type": kind}


@router.post("/live/{session_id}/source", summary="Swap another source in while it runs (null: none)")
async def source(session_id: str, request: Request) -> dict[str, Any]:
    _live(request).get(session_id)  # 404 before looking at the body
    body = _model(SourceRequest, await _json(request))
    return _described(await _live(request).set_source(session_id, body.source))


@router.post("/live/{session_id}/options", summary="New options while it runs (the whole set)")
async def options(session_id: str, request: Request) -> dict[str, Any]:
    _live(request).get(session_id)  # 404 before looking at the body
    data = await _json(request)
    return _described(await _live(request).set_options(session_id, parse_options(data)))


@router.get("/live/{session_id}/stats", summary="Captured, delivered, dropped, fps, latency p50/p95, swap time")
def stats(session_id: str, request: Request) -> dict[str, Any]:
    session = _live(request).get(session_id)
    return {**session.engine.stats().to_dict(), **session.info()}


@router.delete("/live/{session_id}", status_code=204, summary="End a live session")
async def close(session_id: str, request: Request) -> Response:
    live = _live(request)
    live.get(session_id)
    await live.close(session_id)
    return Response(status_code=204)
