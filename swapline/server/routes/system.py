"""``GET /health`` (no token needed) and ``GET /models`` (the model catalogue)."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from ... import __version__
from ..state import StateDep

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: str
    version: str
    queued: int
    running: int


@router.get("/health", response_model=Health, summary="Liveness, version and queue length (no token needed)")
def health(state: StateDep) -> dict[str, Any]:
    counts = {s: len(state.store.list((s,), limit=1_000_000)) for s in ("queued", "running")}
    return {"status": "ok", "version": __version__, **counts}


@router.get("/models", summary="The model catalogue: role, state, size, licence of every model")
def models(state: StateDep) -> dict[str, Any]:
    from ...models.registry import catalogue_status, full_catalog
    from ...models.store import ModelStore

    rows = catalogue_status(ModelStore(state.settings.runtime, progress=False, catalog=full_catalog()))
    return {"models": [dataclasses.asdict(r) for r in rows]}
