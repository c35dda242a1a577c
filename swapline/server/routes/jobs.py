"""``/jobs``: submit, list, read, follow (server-sent events), download, cancel or remove.

A job's files live in ``<data_dir>/jobs/<id>/``: the inputs a multipart request carried
(``inputs/``) and the output (``output<ext>``: the target's format for an image, ``.mp4`` for a
video). The store owns that folder and removes it with the job. The worker runs the jobs, one at
a time; nothing here runs one.
"""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from ...formats import IMAGE_EXTENSIONS
from ...jobs.job import Job, options_from_dict
from ...jobs.store import JOB_STATES, JobRecord
from ..errors import ConflictError, InvalidRequestError, NotFoundError
from ..inputs import SwapInputs, multipart_body, read_swap_inputs
from ..sse import HEADERS, job_events, resume_point
from ..state import ServerState, StateDep, get_state

router = APIRouter(tags=["jobs"])

_MEDIA_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".webp": "image/webp",
                ".bmp": "image/bmp", ".tif": "image/tiff", ".tiff": "image/tiff", ".mp4": "video/mp4"}


def record_dict(record: JobRecord, uploads_root: Path | None = None) -> dict[str, Any]:
    """A job record as the API shows it: the store's fields without any server path (inputs and
    output by file name; ``target_upload`` is the upload id the target came from, when it did),
    plus links to follow."""
    out = record.to_dict()
    job = out.pop("job")
    out.pop("workdir", None)
    out["options"] = job["options"]
    out["source_names"] = [Path(p).name for p in job["sources"]]
    out["target_name"] = Path(job["target"]).name
    out["target_upload"] = _upload_id(Path(job["target"]), uploads_root)
    if out.get("result"):
        result = dict(out["result"])
        output = Path(result.pop("output", "") or job["output"])
        result["summary"] = str(result.get("summary", "")).replace(str(output), output.name)
        out["result"] = result
    out["links"] = {"self": f"/jobs/{record.id}", "events": f"/jobs/{record.id}/events",
                    "output": f"/jobs/{record.id}/output" if record.state == "done" else None}
    return out


def _upload_id(target: Path, uploads_root: Path | None) -> str | None:
    if uploads_root is None:
        return None
    try:
        rel = target.relative_to(uploads_root)
    except ValueError:
        return None
    return rel.parts[0] if len(rel.parts) == 2 else None


def output_name(inputs: SwapInputs) -> str:
    """``output<ext>``: the target's own format for an image (PNG where swapline cannot write it),
    ``.mp4`` for a video."""
    if inputs.target.kind == "video":
        return "output.mp4"
    suffix = inputs.target.path.suffix.lower()
    return f"output{suffix if suffix in IMAGE_EXTENSIONS else '.png'}"


def _record(state: ServerState, job_id: str) -> JobRecord:
    record = state.store.get(job_id)
    if record is None:
        raise NotFoundError(f"no job {job_id!r}")
    return record


@router.post("/jobs", status_code=201, openapi_extra=multipart_body(),
             summary="Queue a job: JSON naming uploads, or multipart source(s), target and options",
             responses={413: {"description": "over the size cap"}, 415: {"description": "not an image or video"},
                        422: {"description": "bad options or request"}})
async def submit(request: Request) -> JSONResponse:
    state: ServerState = get_state(request)
    job_id = secrets.token_hex(8)
    workdir = state.jobs_dir / job_id
    workdir.mkdir(parents=True)

    def inputs_folder() -> Path:
        folder = workdir / "inputs"
        folder.mkdir()
        return folder

    try:
        inputs = await read_swap_inputs(request, state, folder=inputs_folder)
        config, video = options_from_dict(inputs.options)
        job = Job(sources=tuple(m.path for m in inputs.sources), target=inputs.target.path,
                  output=workdir / output_name(inputs), config=config, video=video, force=True)
        record = await run_in_threadpool(state.store.submit, job, workdir=workdir, job_id=job_id)
        state.worker.notify()
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return JSONResponse(record_dict(record, state.uploads.root), status_code=201, headers={"Location": f"/jobs/{job_id}"})


@router.get("/jobs", summary="Jobs, newest first")
def list_jobs(state: StateDep,
              state_: Annotated[list[str] | None, Query(alias="state", description="only jobs in these states")] = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 200) -> dict[str, Any]:
    unknown = [s for s in state_ or () if s not in JOB_STATES]
    if unknown:
        raise InvalidRequestError(f"unknown job state {unknown[0]!r} (one of {', '.join(JOB_STATES)})")
    return {"jobs": [record_dict(r, state.uploads.root) for r in state.store.list(state_ or None, limit=limit)]}


@router.get("/jobs/{job_id}", summary="One job: state, progress, error, result")
def get_job(job_id: str, state: StateDep) -> dict[str, Any]:
    return record_dict(_record(state, job_id), state.uploads.root)


@router.get("/jobs/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}},
                       204: {"description": "resumed after the final event: nothing more will come"}},
            summary="Server-sent events (resume with Last-Event-ID or ?last_event_id=)")
def events(job_id: str, request: Request, state: StateDep) -> Response:
    record = _record(state, job_id)
    after = resume_point(request)
    if after > 0 and record.finished_state and not state.store.events(job_id, after):
        return Response(status_code=204)
    stream = job_events(state.store, job_id, after, poll_s=state.settings.poll_s,
                        keepalive_s=state.settings.keepalive_s, closing=state.closing)
    return StreamingResponse(stream, media_type="text/event-stream", headers=HEADERS)


@router.get("/jobs/{job_id}/output", response_class=FileResponse,
            responses={404: {"description": "no such job, or its output is gone"},
                       409: {"description": "the job is not done"}},
            summary="Download the result of a done job")
def output(job_id: str, state: StateDep) -> FileResponse:
    record = _record(state, job_id)
    if record.state != "done":
        why = f": {record.error}" if record.error else ""
        raise ConflictError(f"job {job_id} is {record.state}{why}; its output comes when it is done")
    path = record.job.output
    if not path.is_file():
        raise NotFoundError(f"the output of job {job_id} is gone")
    suffix = path.suffix.lower()
    return FileResponse(path, media_type=_MEDIA_TYPES.get(suffix, "application/octet-stream"),
                        filename=f"swapline-{job_id}{suffix}")


@router.delete("/jobs/{job_id}", status_code=202,
               responses={202: {"description": "cancel asked (queued or running); the record"},
                          204: {"description": "a finished job, removed with its files"}},
               summary="Cancel a queued or running job, or remove a finished one")
def delete(job_id: str, state: StateDep) -> Response:
    record = _record(state, job_id)
    if not record.finished_state:
        try:
            record = state.worker.cancel(job_id)
        except KeyError:
            raise NotFoundError(f"no job {job_id!r}") from None
        return JSONResponse(record_dict(record, state.uploads.root), status_code=202)
    try:
        state.store.delete(job_id)
    except KeyError:
        raise NotFoundError(f"no job {job_id!r}") from None
    except ValueError as exc:  # retried and claimed meanwhile
        raise ConflictError(str(exc)) from None
    return Response(status_code=204)
