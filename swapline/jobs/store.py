"""The persistent job queue: a SQLite file (stdlib ``sqlite3``) that outlives the process.

States: ``queued → running → done | failed | cancelled``; ``retry`` puts a failed or cancelled
job back to ``queued``. A job found ``running`` when a worker starts (the process that ran it
died mid-job) is put back to ``queued`` by :meth:`JobStore.requeue_running`.
Every event a job reports is kept, numbered store-wide in increasing order (never reused, even
after a delete), so a client can resume an event stream from the last number it saw.

One :class:`JobStore` is safe to share between threads (one connection behind a lock), and
several processes may open the same file at once (WAL journal, a busy timeout, and every
read-modify-write in one ``BEGIN IMMEDIATE`` transaction). A running job carries the pid (and,
where the system tells it, the start time) of the process that claimed it, so a worker starting
beside a live one leaves that one's job alone.
"""

from __future__ import annotations

import builtins
import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..tempfiles import pid_alive
from .events import JobEvent
from .job import Job

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
JOB_STATES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")
FINISHED_STATES: tuple[str, ...] = ("done", "failed", "cancelled")
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0
EXIT_CANCELLED = 130


@dataclass(frozen=True)
class JobRecord:
    """One row of the store.

    Attributes:
        id: the job's id (server-chosen, URL-safe).
        state: see :data:`JOB_STATES`.
        job: the job itself (inputs, options, output).
        created, started, finished: UNIX times (None until reached).
        done, total: the last progress figures.
        fps, eta_s: the last rate and estimate.
        error: the one-line error of a failed job (``""`` otherwise).
        exit_code: the CLI's exit code for the job's end (None while not finished).
        result: what the runner reported when done (JSON-ready dict), else None.
        cancel_requested: a cancel was asked while the job runs.
        workdir: a folder the store owns for this job's uploads and output, or None.
    """

    id: str
    state: JobState
    job: Job
    created: float
    started: float | None = None
    finished: float | None = None
    done: int = 0
    total: int = 0
    fps: float = 0.0
    eta_s: float | None = None
    error: str = ""
    exit_code: int | None = None
    result: dict[str, Any] | None = None
    cancel_requested: bool = False
    workdir: Path | None = None

    @property
    def fraction(self) -> float:
        """Progress 0..1 (1 once done)."""
        if self.state == "done":
            return 1.0
        return min(1.0, self.done / self.total) if self.total else 0.0

    @property
    def finished_state(self) -> bool:
        """Whether the job has ended (done, failed or cancelled)."""
        return self.state in FINISHED_STATES

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the API and ``jobs list --json``: every field (paths as strings,
        the job as :meth:`Job.to_dict`) plus ``fraction`` 0..1."""
        return {
            "id": self.id,
            "state": self.state,
            "job": self.job.to_dict(),
            "created": self.created,
            "started": self.started,
            "finished": self.finished,
            "done": self.done,
            "total": self.total,
            "fps": self.fps,
            "eta_s": self.eta_s,
            "error": self.error,
            "exit_code": self.exit_code,
            "result": self.result,
            "cancel_requested": self.cancel_requested,
            "workdir": str(self.workdir) if self.workdir is not None else None,
            "fraction": self.fraction,
        }


def default_store_path(home: Path) -> Path:
    """Where the CLI and the server keep the queue: ``<swapline home>/jobs/jobs.sqlite``."""
    return Path(home) / "jobs" / "jobs.sqlite"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)",
    """CREATE TABLE IF NOT EXISTS jobs (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        job TEXT NOT NULL,
        created REAL NOT NULL,
        queue_seq INTEGER NOT NULL,
        started REAL,
        finished REAL,
        done INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        fps REAL NOT NULL DEFAULT 0,
        eta_s REAL,
        error TEXT NOT NULL DEFAULT '',
        exit_code INTEGER,
        result TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        workdir TEXT,
        owner TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, queue_seq)",
    "CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created)",
    """CREATE TABLE IF NOT EXISTS events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS events_job ON events (job_id, id)",
)

_COLUMNS = ("id, state, job, created, started, finished, done, total, fps, eta_s, error, exit_code, "
            "result, cancel_requested, workdir")
_RESET_PROGRESS = ("done = 0, total = 0, fps = 0, eta_s = NULL, error = '', exit_code = NULL, result = NULL, "
                   "cancel_requested = 0, started = NULL, finished = NULL, owner = NULL")


class JobStore:
    """The job queue in a SQLite file; see the module's docstring.

    Args:
        path: the database file (its folder is created). Use :func:`default_store_path`.

    Raises:
        ConfigError: the file is not a job store this swapline can read (written by a newer one,
            or not SQLite at all).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, check_same_thread=False,
                                     isolation_level=None)
        try:
            self._setup()
        except sqlite3.DatabaseError as exc:
            self._conn.close()
            raise ConfigError(f"job store {self.path} cannot be used: {exc}") from None
        except BaseException:
            self._conn.close()
            raise

    # ------------------------------------------------------------------------------ set-up

    def _setup(self) -> None:
        """WAL journal, busy timeout, the tables; refuse a store from a newer schema."""
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._write() as cur:
            for statement in _SCHEMA:
                cur.execute(statement)
            row = cur.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = row[0] if row and row[0] is not None else None
            if version is None:
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version > SCHEMA_VERSION:
                raise ConfigError(f"job store {self.path} has schema version {version}; this swapline "
                                  f"reads up to {SCHEMA_VERSION} (upgrade swapline or use another --store)")

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction (``BEGIN IMMEDIATE``: the write lock is taken at once, so a
        read-then-update inside it is atomic across threads and processes)."""
        with self._lock:
            cur = self._conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
            except BaseException:
                cur.close()
                raise
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def _read(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Close the connection (the file stays)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "JobStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ queries

    def get(self, job_id: str) -> JobRecord | None:
        """The job ``job_id``, or None when there is none."""
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _record(rows[0]) if rows else None

    def list(self, states: Sequence[str] | None = None, limit: int = 200) -> builtins.list[JobRecord]:
        """Jobs newest first, only those in ``states`` when given, at most ``limit``."""
        if states is not None:
            _check_states(states)
            if not states:
                return []
        where = f"WHERE state IN ({', '.join('?' * len(states))})" if states else ""
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs {where} ORDER BY created DESC, rowid DESC LIMIT ?",
                          (*(states or ()), max(0, int(limit))))
        return [_record(r) for r in rows]

    def events(self, job_id: str, after: int = 0) -> builtins.list[tuple[int, JobEvent]]:
        """The job's events numbered above ``after``, in order, as ``(event id, event)``."""
        rows = self._read("SELECT id, data FROM events WHERE job_id = ? AND id > ? ORDER BY id", (job_id, after))
        return [(int(i), JobEvent.from_dict(json.loads(data))) for i, data in rows]

    def cancel_requested(self, job_id: str) -> bool:
        """Whether a cancel was asked for the job (False for an unknown id)."""
        rows = self._read("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,))
        return bool(rows and rows[0][0])

    # ------------------------------------------------------------------------------ changes

    def submit(self, job: Job, *, workdir: Path | None = None, job_id: str | None = None) -> JobRecord:
        """Queue ``job``; returns its record (state ``queued``).

        Raises:
            ValueError: ``job_id`` is taken.
        """
        job_id = job_id or secrets.token_hex(8)
        data = json.dumps(job.to_dict())
        with self._write() as cur:
            if _exists(cur, job_id):
                raise ValueError(f"job id {job_id} is taken")
            cur.execute("INSERT INTO jobs (id, state, job, created, queue_seq, workdir) "
                        "VALUES (?, 'queued', ?, ?, ?, ?)",
                        (job_id, data, time.time(), _next_seq(cur), str(workdir) if workdir is not None else None))
        return self._must_get(job_id)

    def claim_next(self) -> JobRecord | None:
        """Atomically move the oldest queued job to ``running`` and return it; None when the
        queue is empty. No job is handed out twice, across threads and processes."""
        with self._write() as cur:
            row = cur.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY queue_seq, rowid LIMIT 1").fetchone()
            if row is None:
                return None
            cur.execute("UPDATE jobs SET state = 'running', started = ?, owner = ? WHERE id = ?",
                        (time.time(), _owner_tag(), row[0]))
        return self._must_get(row[0])

    def add_event(self, job_id: str, event: JobEvent) -> int:
        """Store ``event`` for the job and return its number (increasing store-wide). Events
        with progress figures (``started``, ``progress``, or any with a total) update the
        record's done / total / fps / ETA.

        Raises:
            KeyError: no such job.
        """
        with self._write() as cur:
            if not _exists(cur, job_id):
                raise KeyError(job_id)
            event_id = _insert_event(cur, job_id, event)
            if event.kind in ("started", "progress") or event.total > 0:
                cur.execute("UPDATE jobs SET done = ?, total = ?, fps = ?, eta_s = ? WHERE id = ?",
                            (event.done, event.total, event.fps, event.eta_s, job_id))
        return event_id

    def finish(self, job_id: str, state: str, *, error: str = "", exit_code: int | None = None,
               result: dict[str, Any] | None = None) -> None:
        """End the job: ``state`` is ``done``, ``failed`` or ``cancelled``; ``finished`` is now.

        Raises:
            ValueError: ``state`` is not a final state.
            KeyError: no such job.
        """
        if state not in FINISHED_STATES:
            raise ValueError(f"a job ends as one of {', '.join(FINISHED_STATES)}, not {state!r}")
        if exit_code is None:
            exit_code = {"done": 0, "cancelled": EXIT_CANCELLED}.get(state, 1)
        with self._write() as cur:
            if not _exists(cur, job_id):
                raise KeyError(job_id)
            cur.execute("UPDATE jobs SET state = ?, finished = ?, error = ?, exit_code = ?, result = ?, owner = NULL "
                        "WHERE id = ?",
                        (state, time.time(), _one_line(error), exit_code,
                         json.dumps(result, default=str) if result is not None else None, job_id))

    def request_cancel(self, job_id: str) -> JobRecord:
        """Ask the job to stop: a queued job is cancelled at once (with a ``cancelled`` event), a
        running one is flagged (its worker stops it within a frame batch), a finished one is
        left as it is. A running job whose process is gone is cancelled at once too.

        Raises:
            KeyError: no such job.
        """
        with self._write() as cur:
            row = cur.execute("SELECT state, owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise KeyError(job_id)
            state, owner = row
            if state == "queued" or (state == "running" and not _owner_alive(owner)):
                _cancel_now(cur, job_id, "cancelled before it started" if state == "queued"
                            else "cancelled (the process running it had stopped)")
            elif state == "running":
                cur.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return self._must_get(job_id)

    def retry(self, job_id: str) -> JobRecord:
        """Put a failed or cancelled job back in the queue (at its end), its progress, error,
        cancel flag and events cleared.

        Raises:
            KeyError: no such job.
            ValueError: the job is queued, running or done.
        """
        with self._write() as cur:
            state = _state(cur, job_id)
            if state not in ("failed", "cancelled"):
                raise ValueError(f"job {job_id} is {state}; only a failed or cancelled job can be retried")
            cur.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
            cur.execute(f"UPDATE jobs SET state = 'queued', queue_seq = ?, {_RESET_PROGRESS} WHERE id = ?",
                        (_next_seq(cur), job_id))
        return self._must_get(job_id)

    def release(self, job_id: str, reason: str = "the worker stopped; queued again") -> JobRecord:
        """Put a running job back in the queue at its old place (its worker stops without
        finishing it, e.g. on Ctrl-C); a ``warning`` event says why. A cancel asked meanwhile
        wins: the job is cancelled instead.

        Raises:
            KeyError: no such job.
            ValueError: the job is not running.
        """
        with self._write() as cur:
            state = _state(cur, job_id)
            if state != "running":
                raise ValueError(f"job {job_id} is {state}, not running")
            _requeue(cur, job_id, reason)
        return self._must_get(job_id)

    def delete(self, job_id: str) -> None:
        """Remove the job, its events and its ``workdir`` folder (when it has one).

        Raises:
            KeyError: no such job.
            ValueError: the job is running (cancel it first).
        """
        with self._write() as cur:
            state = _state(cur, job_id)
            if state == "running":
                raise ValueError(f"job {job_id} is running; cancel it first")
            workdir = cur.execute("SELECT workdir FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
            cur.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
            cur.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)

    def requeue_running(self) -> builtins.list[str]:
        """Put back in the queue every running job whose process is gone (call it when a worker
        starts: the previous one died mid-job); returns their ids. Jobs this process claimed
        count as orphans too (a process runs one worker); a job held by another live process is
        left to it. A job whose cancel was asked is cancelled instead of queued again."""
        requeued: builtins.list[str] = []
        with self._write() as cur:
            rows = cur.execute("SELECT id, owner FROM jobs WHERE state = 'running'").fetchall()
            for job_id, owner in rows:
                if _owner_alive(owner) and not _owner_is_self(owner):
                    continue
                if _requeue(cur, job_id, "the process running this job stopped mid-job; queued again"):
                    requeued.append(job_id)
        return requeued

    # ------------------------------------------------------------------------------ helpers

    def _must_get(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record is None:  # deleted by another process between our write and this read
            raise KeyError(job_id)
        return record


# ---------------------------------------------------------------------------------- row helpers


def _record(row: tuple[Any, ...]) -> JobRecord:
    (job_id, state, job, created, started, finished, done, total, fps, eta_s, error, exit_code, result,
     cancel_requested, workdir) = row
    return JobRecord(id=job_id, state=state, job=Job.from_dict(json.loads(job)), created=created, started=started,
                     finished=finished, done=int(done), total=int(total), fps=float(fps), eta_s=eta_s,
                     error=error or "", exit_code=exit_code, result=json.loads(result) if result else None,
                     cancel_requested=bool(cancel_requested), workdir=Path(workdir) if workdir else None)


def _exists(cur: sqlite3.Cursor, job_id: str) -> bool:
    return cur.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is not None


def _state(cur: sqlite3.Cursor, job_id: str) -> str:
    row = cur.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise KeyError(job_id)
    return str(row[0])


def _next_seq(cur: sqlite3.Cursor) -> int:
    return int(cur.execute("SELECT COALESCE(MAX(queue_seq), 0) + 1 FROM jobs").fetchone()[0])


def _insert_event(cur: sqlite3.Cursor, job_id: str, event: JobEvent) -> int:
    cur.execute("INSERT INTO events (job_id, data) VALUES (?, ?)", (job_id, json.dumps(event.to_dict())))
    return int(cur.lastrowid or 0)


def _cancel_now(cur: sqlite3.Cursor, job_id: str, message: str) -> None:
    """Cancel a job nobody runs: the ``cancelled`` event and the final state."""
    _insert_event(cur, job_id, JobEvent("cancelled", message=message, exit_code=EXIT_CANCELLED))
    cur.execute("UPDATE jobs SET state = 'cancelled', finished = ?, exit_code = ?, owner = NULL WHERE id = ?",
                (time.time(), EXIT_CANCELLED, job_id))


def _requeue(cur: sqlite3.Cursor, job_id: str, reason: str) -> bool:
    """A running job back to queued at its old place (True), or cancelled when a cancel was
    asked (False)."""
    flagged = cur.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
    if flagged:
        _cancel_now(cur, job_id, "cancelled")
        return False
    _insert_event(cur, job_id, JobEvent("warning", message=reason))
    cur.execute("UPDATE jobs SET state = 'queued', started = NULL, done = 0, fps = 0, eta_s = NULL, owner = NULL "
                "WHERE id = ?", (job_id,))
    return True


def _check_states(states: Sequence[str]) -> None:
    unknown = [s for s in states if s not in JOB_STATES]
    if unknown:
        raise ValueError(f"unknown job state {unknown[0]!r} (one of {', '.join(JOB_STATES)})")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ------------------------------------------------------------------------------ process identity


def _owner_tag() -> str:
    """``pid:start`` of this process (start: its start time in clock ticks since boot where
    ``/proc`` tells it, so a reused pid is not mistaken for the claimer; else empty)."""
    pid = os.getpid()
    return f"{pid}:{_start_time(pid) or ''}"


def _start_time(pid: int) -> str | None:
    """The process's start time from ``/proc/<pid>/stat`` (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # after "pid (comm) "
    return fields[19] if len(fields) > 19 else None  # field 22 of the whole line


def _parse_owner(owner: str | None) -> tuple[int, str] | None:
    if not owner:
        return None
    pid, _, start = owner.partition(":")
    try:
        return int(pid), start
    except ValueError:
        return None


def _owner_alive(owner: str | None) -> bool:
    """Whether the process that claimed a job still runs (same pid, same start time)."""
    parsed = _parse_owner(owner)
    if parsed is None:
        return False
    pid, start = parsed
    if not pid_alive(pid):
        return False
    return not start or _start_time(pid) in (None, start)


def _owner_is_self(owner: str | None) -> bool:
    parsed = _parse_owner(owner)
    return parsed is not None and parsed[0] == os.getpid()
