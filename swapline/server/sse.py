"""A job's events as server-sent events, read from the store (so any process's worker feeds them).

Each stored event goes out as::

    id: 42
    event: progress
    data: {"kind": "progress", "done": 10, "total": 100, ...}

A client that lost the stream reconnects with ``Last-Event-ID: 42`` (browsers do this by
themselves) or ``?last_event_id=42`` and gets the events after 42 only. The stream ends after
the job's final event (``done``, ``failed`` or ``cancelled``), or when the server stops (the
client then resumes from the last id it saw); an idle stream carries a
keep-alive comment every ``keepalive_s`` seconds. A client resuming after the final event gets
204 (No Content), which tells ``EventSource`` to stop reconnecting.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..jobs.events import JobEvent
from ..jobs.store import JobRecord, JobStore
from .errors import InvalidRequestError

KEEPALIVE = ": keep-alive\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def format_event(event_id: int | None, event: JobEvent) -> str:
    """One event in the SSE wire format (no ``id:`` line when ``event_id`` is None)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    data = json.dumps(event.to_dict(), separators=(",", ":"))
    return f"{head}event: {event.kind}\ndata: {data}\n\n"


def resume_point(request: Request) -> int:
    """The last event id the client saw: ``Last-Event-ID``, else ``?last_event_id=``, else 0.

    Raises:
        InvalidRequestError: not a whole number.
    """
    value = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or "0"
    try:
        after = int(value.strip())
    except ValueError:
        raise InvalidRequestError(f"Last-Event-ID must be an event number (got {value!r})") from None
    return max(0, after)


def final_event(record: JobRecord) -> JobEvent:
    """The final event of a finished job as its record tells it (for a stream that found the job
    finished with no final event stored)."""
    return JobEvent(record.state, done=record.done, total=record.total, fps=record.fps,  # type: ignore[arg-type]
                    message=record.error or record.state, exit_code=record.exit_code or 0)


async def job_events(store: JobStore, job_id: str, after: int, *, poll_s: float = 0.2,
                     keepalive_s: float = 15.0, closing: threading.Event | None = None) -> AsyncIterator[str]:
    """The job's events after ``after`` as SSE text, polled from the store until the final one
    (or until ``closing`` is set: the server is stopping, the client resumes later)."""
    last = after
    last_sent = time.monotonic()
    while closing is None or not closing.is_set():
        events = await run_in_threadpool(store.events, job_id, last)
        for event_id, event in events:
            yield format_event(event_id, event)
            last, last_sent = event_id, time.monotonic()
            if event.final:
                return
        if events:
            continue
        record = await run_in_threadpool(store.get, job_id)
        if record is None:  # deleted meanwhile
            return
        if record.finished_state:
            if await run_in_threadpool(store.events, job_id, last):
                continue  # the final event came between the two reads
            yield format_event(None, final_event(record))
            return
        if time.monotonic() - last_sent >= keepalive_s:
            yield KEEPALIVE
            last_sent = time.monotonic()
        await asyncio.sleep(poll_s)
