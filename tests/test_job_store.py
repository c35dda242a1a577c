"""The persistent job queue: :class:`swapline.jobs.store.JobStore`, the :class:`JobWorker` that
drains it, and ``swapline jobs``.

Store: state transitions, ``claim_next`` hands no job out twice (two threads, two processes),
events are numbered store-wide and resumable with ``after``, a job left running by a killed
process is queued again while one held by a live process is left alone, retry/delete/cancel
rules, schema version. Worker (fake runners with the Runner's contract): progress stored
throttled and ending at the last figures, cancel of a running job (same process and through the
store as another process would), a typed error and an unexpected exception end the job as failed
and the worker goes on. CLI: submit, list --json, cancel, retry, delete on a temporary store; and,
with the real runner, ``jobs submit`` + ``jobs run`` swapping a photo.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from swapline.errors import ConfigError, InputError, JobCancelled
from swapline.jobs.events import CancelToken, JobEvent
from swapline.jobs.job import Job
from swapline.jobs.store import JobRecord, JobStore, default_store_path
from swapline.jobs.worker import JobWorker

from .test_cli_errors import swapline_home  # noqa: F401 - the shared, prepared model cache

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs" / "jobs.sqlite"


@pytest.fixture
def store(db: Path) -> Iterator[JobStore]:
    s = JobStore(db)
    yield s
    s.close()


def make_job(tmp_path: Path, name: str = "out") -> Job:
    return Job(sources=(tmp_path / "src.jpg",), target=tmp_path / "target.jpg", output=tmp_path / f"{name}.jpg")


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not reached in time")
        time.sleep(0.01)


class Result:
    """What a runner returns."""

    def __init__(self, frames: int) -> None:
        self.frames = frames

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames}


class FakeRunner:
    """The Runner's contract: ``started``, ``progress`` per frame, one final event; returns a
    result, or raises the typed error (JobCancelled when the token is cancelled) after sending
    the final event. ``fail`` makes a job fail: a SwaplineError is raised with its final event,
    another exception without one (a bug)."""

    def __init__(self, frames: int = 20, frame_s: float = 0.0, fail: dict[str, BaseException] | None = None,
                 per_job: dict[str, int] | None = None) -> None:
        self.frames = frames
        self.per_job = per_job or {}
        self.frame_s = frame_s
        self.fail = fail or {}
        self.ran: list[str] = []
        self.running = threading.Event()

    def run(self, job: Job, on_event: Callable[[JobEvent], None] | None = None,
            cancel: CancelToken | None = None) -> Result:
        emit = on_event or (lambda e: None)
        self.ran.append(job.output.stem)
        error = self.fail.get(job.output.stem)
        frames = self.per_job.get(job.output.stem, self.frames)
        if error is not None and not isinstance(error, JobCancelled) and not hasattr(error, "exit_code"):
            raise error  # an unexpected exception: no final event
        emit(JobEvent("started", total=frames))
        self.running.set()
        for i in range(1, frames + 1):
            if cancel is not None and cancel.cancelled:
                emit(JobEvent("cancelled", done=i - 1, total=frames, message="cancelled", exit_code=130))
                raise JobCancelled("cancelled")
            if error is not None and i == frames // 2:
                emit(JobEvent("failed", done=i, total=frames, message=str(error),
                              error=type(error).__name__, exit_code=error.exit_code))  # type: ignore[attr-defined]
                raise error
            time.sleep(self.frame_s)
            emit(JobEvent("progress", done=i, total=frames, fps=100.0, eta_s=(frames - i) / 100))
        emit(JobEvent("done", done=frames, total=frames, message=f"{frames} frames"))
        return Result(frames)


# ------------------------------------------------------------------------------------------ store


def test_default_store_path(tmp_path: Path) -> None:
    assert default_store_path(tmp_path) == tmp_path / "jobs" / "jobs.sqlite"


def test_states_from_submit_to_done(store: JobStore, tmp_path: Path) -> None:
    before = time.time()
    rec = store.submit(make_job(tmp_path), workdir=tmp_path / "w")
    assert rec.state == "queued" and len(rec.id) == 16 and before <= rec.created <= time.time()
    assert rec.started is None and rec.finished is None and rec.exit_code is None
    assert store.get(rec.id) == rec
    assert store.get("missing") is None

    running = store.claim_next()
    assert running is not None and running.id == rec.id and running.state == "running"
    assert running.started is not None and running.started >= rec.created
    assert store.claim_next() is None

    store.finish(rec.id, "done", result={"frames": 3})
    done = store.get(rec.id)
    assert done is not None and done.state == "done" and done.exit_code == 0 and done.result == {"frames": 3}
    assert done.finished is not None and done.finished >= done.started  # type: ignore[operator]

    data = done.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["job"] == make_job(tmp_path).to_dict() and data["workdir"] == str(tmp_path / "w")
    assert data["fraction"] == 1.0 and "kind" not in data
    assert Job.from_dict(data["job"]) == make_job(tmp_path)

    with pytest.raises(ValueError):
        store.finish(rec.id, "running")
    with pytest.raises(KeyError):
        store.finish("missing", "done")


def test_ids_given_and_taken(store: JobStore, tmp_path: Path) -> None:
    assert store.submit(make_job(tmp_path), job_id="abc").id == "abc"
    with pytest.raises(ValueError):
        store.submit(make_job(tmp_path), job_id="abc")


def test_list_newest_first_and_by_state(store: JobStore, tmp_path: Path) -> None:
    ids = [store.submit(make_job(tmp_path, f"o{i}")).id for i in range(5)]
    assert [r.id for r in store.list()] == ids[::-1]
    assert [r.id for r in store.list(limit=2)] == ids[::-1][:2]
    first = store.claim_next()
    assert first is not None and first.id == ids[0]  # the oldest first
    assert [r.id for r in store.list(["running"])] == [ids[0]]
    assert [r.id for r in store.list(["queued", "running"])] == ids[::-1]
    assert store.list([]) == []
    with pytest.raises(ValueError):
        store.list(["bogus"])


def test_claim_next_never_hands_a_job_out_twice(db: Path, tmp_path: Path) -> None:
    """Two threads, each with its own store on the same file (as two processes would be) and a
    third sharing one of them, race to claim 150 jobs."""
    stores = [JobStore(db), JobStore(db)]
    ids = {stores[0].submit(make_job(tmp_path, f"o{i}")).id for i in range(150)}
    claimed: list[list[str]] = [[], [], []]
    start = threading.Barrier(3)

    def drain(store: JobStore, into: list[str]) -> None:
        start.wait()
        while (rec := store.claim_next()) is not None:
            into.append(rec.id)

    threads = [threading.Thread(target=drain, args=(stores[i % 2], claimed[i])) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for c in claimed for i in c]
    assert len(every) == len(set(every)) == 150 and set(every) == ids
    assert sum(1 for c in claimed if c) >= 2  # they did race
    for s in stores:
        s.close()


def test_claim_next_across_processes(db: Path, tmp_path: Path) -> None:
    with JobStore(db) as store:
        ids = {store.submit(make_job(tmp_path, f"o{i}")).id for i in range(60)}
    script = textwrap.dedent(f"""
        import json, sys
        from pathlib import Path
        from swapline.jobs.store import JobStore
        s = JobStore(Path({str(db)!r}))
        got = []
        while (r := s.claim_next()) is not None:
            got.append(r.id)
        print(json.dumps(got))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(2)]
    outs = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    every = outs[0] + outs[1]
    assert len(every) == len(set(every)) == 60 and set(every) == ids


def test_events_numbered_store_wide_and_resumable(store: JobStore, tmp_path: Path) -> None:
    a = store.submit(make_job(tmp_path, "a")).id
    b = store.submit(make_job(tmp_path, "b")).id
    numbers = []
    for i in range(5):
        numbers.append(store.add_event(a, JobEvent("progress", done=i, total=10, fps=5.0, eta_s=2.0)))
        numbers.append(store.add_event(b, JobEvent("progress", done=2 * i, total=20)))
    assert numbers == sorted(numbers) and len(set(numbers)) == 10

    got = store.events(a)
    assert [n for n, _ in got] == numbers[0::2]
    assert [e.done for _, e in got] == [0, 1, 2, 3, 4]
    resumed = store.events(a, after=got[2][0])
    assert resumed == got[3:]
    assert store.events(a, after=got[-1][0]) == []

    rec = store.get(a)
    assert rec is not None and (rec.done, rec.total, rec.fps, rec.eta_s) == (4, 10, 5.0, 2.0)
    assert rec.fraction == pytest.approx(0.4)
    store.add_event(a, JobEvent("warning", message="no face in frame 3"))  # no figures: they stay
    rec = store.get(a)
    assert rec is not None and (rec.done, rec.total) == (4, 10)
    assert store.events(a)[-1][1] == JobEvent("warning", message="no face in frame 3")

    # numbers are never reused, even after the newest events are deleted
    last = store.add_event(b, JobEvent("progress", done=9, total=20))
    store.delete(b)
    assert store.add_event(a, JobEvent("progress", done=5, total=10)) > last
    with pytest.raises(KeyError):
        store.add_event(b, JobEvent("progress"))


def test_cancel_rules(store: JobStore, tmp_path: Path) -> None:
    q = store.submit(make_job(tmp_path, "q")).id
    r = store.submit(make_job(tmp_path, "r")).id
    store.claim_next()  # q runs
    rec = store.request_cancel(q)
    assert rec.state == "running" and rec.cancel_requested and store.cancel_requested(q)

    rec = store.request_cancel(r)  # queued: at once
    assert rec.state == "cancelled" and rec.exit_code == 130 and rec.finished is not None
    assert [e.kind for _, e in store.events(r)] == ["cancelled"]
    assert store.claim_next() is None

    store.finish(q, "cancelled")
    assert store.get(q).exit_code == 130  # type: ignore[union-attr]
    d = store.submit(make_job(tmp_path, "d")).id
    store.claim_next()
    store.finish(d, "done")
    assert store.request_cancel(d).state == "done"  # finished: unchanged
    assert not store.cancel_requested(d) and not store.cancel_requested("missing")
    with pytest.raises(KeyError):
        store.request_cancel("missing")


def test_retry_rules(store: JobStore, tmp_path: Path) -> None:
    f = store.submit(make_job(tmp_path, "f")).id
    other = store.submit(make_job(tmp_path, "other")).id
    with pytest.raises(ValueError, match="queued"):
        store.retry(f)
    store.claim_next()
    store.add_event(f, JobEvent("progress", done=3, total=10))
    with pytest.raises(ValueError, match="running"):
        store.retry(f)
    store.request_cancel(f)
    store.finish(f, "failed", error="no face\nin the source", exit_code=4)
    failed = store.get(f)
    assert failed is not None and failed.error == "no face in the source" and failed.exit_code == 4

    rec = store.retry(f)
    assert rec.state == "queued" and (rec.done, rec.total, rec.error, rec.exit_code) == (0, 0, "", None)
    assert not rec.cancel_requested and rec.started is None and rec.finished is None
    assert store.events(f) == []
    nxt = store.claim_next()
    assert nxt is not None and nxt.id == other  # a retried job goes to the back of the queue
    store.finish(other, "done")
    with pytest.raises(ValueError, match="done"):
        store.retry(other)
    with pytest.raises(KeyError):
        store.retry("missing")


def test_delete_rules(store: JobStore, tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "up").mkdir(parents=True)
    (work / "up" / "target.jpg").write_bytes(b"x")
    j = store.submit(make_job(tmp_path), workdir=work).id
    store.add_event(j, JobEvent("started", total=1))
    store.claim_next()
    with pytest.raises(ValueError, match="running"):
        store.delete(j)
    store.finish(j, "failed", error="x", exit_code=2)
    store.delete(j)
    assert store.get(j) is None and store.events(j) == [] and not work.exists()
    plain = store.submit(make_job(tmp_path)).id  # queued, no workdir
    store.delete(plain)
    assert store.list() == []
    with pytest.raises(KeyError):
        store.delete(plain)


def test_requeue_after_this_process_crashed(db: Path, tmp_path: Path) -> None:
    """A worker in this process claimed a job and "died": a fresh store on the same file puts
    the job back at the head of the queue, with a warning event."""
    first = JobStore(db)
    a = first.submit(make_job(tmp_path, "a")).id
    b = first.submit(make_job(tmp_path, "b")).id
    first.claim_next()
    first.add_event(a, JobEvent("progress", done=5, total=10))
    first.close()

    with JobStore(db) as fresh:
        assert fresh.requeue_running() == [a]
        rec = fresh.get(a)
        assert rec is not None and rec.state == "queued" and rec.started is None and rec.done == 0
        assert fresh.events(a)[-1][1].kind == "warning"
        again = fresh.claim_next()
        assert again is not None and again.id == a  # its old place, before b
        assert fresh.get(b).state == "queued"  # type: ignore[union-attr]
        assert fresh.requeue_running() == [a]


def test_requeue_after_a_killed_process_but_not_a_live_one(db: Path, tmp_path: Path) -> None:
    with JobStore(db) as store:
        job_id = store.submit(make_job(tmp_path)).id
        script = textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from swapline.jobs.store import JobStore
            s = JobStore(Path({str(db)!r}))
            s.claim_next()
            print("claimed", flush=True)
            time.sleep(120)
        """)
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
            assert store.requeue_running() == []  # its process is alive: left to it
            assert store.get(job_id).state == "running"  # type: ignore[union-attr]
            assert store.request_cancel(job_id).state == "running"  # flagged only
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        # killed: a cancel was asked meanwhile, so it ends cancelled instead of queued again
        assert store.requeue_running() == []
        assert store.get(job_id).state == "cancelled"  # type: ignore[union-attr]

        job2 = store.submit(make_job(tmp_path, "two")).id
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert store.requeue_running() == [job2]
        assert store.get(job2).state == "queued"  # type: ignore[union-attr]


def test_store_from_a_newer_swapline_or_not_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "jobs.sqlite"
    JobStore(db).close()
    conn = sqlite3.connect(db)
    conn.execute("UPDATE schema_version SET version = 99")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="schema version 99"):
        JobStore(db)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(ConfigError, match="cannot be used"):
        JobStore(junk)


# ----------------------------------------------------------------------------------------- worker


def test_worker_stores_progress_throttled_and_ending_right(store: JobStore, tmp_path: Path) -> None:
    j = store.submit(make_job(tmp_path)).id
    runner = FakeRunner(frames=50)
    worker = JobWorker(store, runner, progress_every_s=3600)
    assert worker.run_pending() == 1
    kinds = [e.kind for _, e in store.events(j)]
    # the first progress, and the last one held back by the throttle before the final event
    assert kinds == ["started", "progress", "progress", "done"]
    progress = [e.done for _, e in store.events(j) if e.kind == "progress"]
    assert progress == [1, 50]
    rec = store.get(j)
    assert rec is not None and rec.state == "done" and rec.exit_code == 0 and rec.result == {"frames": 50}
    assert (rec.done, rec.total) == (50, 50) and rec.fraction == 1.0

    k = store.submit(make_job(tmp_path, "k")).id
    JobWorker(store, FakeRunner(frames=40, frame_s=0.005), progress_every_s=0.05).run_pending()
    stored = [e.done for _, e in store.events(k) if e.kind == "progress"]
    assert 2 <= len(stored) < 20 and stored == sorted(stored) and stored[-1] == 40


def test_worker_cancels_a_running_job_from_another_store_and_goes_on(db: Path, tmp_path: Path) -> None:
    store = JobStore(db)
    slow = store.submit(make_job(tmp_path, "slow")).id
    after = store.submit(make_job(tmp_path, "after")).id
    runner = FakeRunner(frames=100_000, frame_s=0.001, per_job={"after": 5})
    worker = JobWorker(store, runner, poll_s=0.05)
    worker.start()
    try:
        assert runner.running.wait(10)
        other = JobStore(db)  # as `swapline jobs cancel ID` in another process
        asked = time.monotonic()
        assert other.request_cancel(slow).cancel_requested
        wait_for(lambda: store.get(slow).state == "cancelled")  # type: ignore[union-attr]
        assert time.monotonic() - asked < 2
        rec = store.get(slow)
        assert rec is not None and rec.exit_code == 130 and rec.error == ""
        assert [e.kind for _, e in store.events(slow)][-1] == "cancelled"
        assert sum(e.final for _, e in store.events(slow)) == 1
        wait_for(lambda: store.get(after).state == "done")  # type: ignore[union-attr]
        other.close()
    finally:
        worker.stop()
        store.close()
    assert not worker.running


def test_worker_cancel_in_process_is_immediate(store: JobStore, tmp_path: Path) -> None:
    j = store.submit(make_job(tmp_path)).id
    runner = FakeRunner(frames=100_000, frame_s=0.001)
    worker = JobWorker(store, runner, poll_s=60)  # no help from the watcher: the token is cancelled
    worker.start()
    try:
        assert runner.running.wait(10)
        assert worker.current_job == j
        worker.cancel(j)
        wait_for(lambda: store.get(j).state == "cancelled", timeout=5)  # type: ignore[union-attr]
    finally:
        worker.stop()


def test_failures_end_the_job_and_the_worker_goes_on(store: JobStore, tmp_path: Path) -> None:
    bad = store.submit(make_job(tmp_path, "bad")).id
    bug = store.submit(make_job(tmp_path, "bug")).id
    ok = store.submit(make_job(tmp_path, "ok")).id
    runner = FakeRunner(frames=6, fail={"bad": InputError("cannot read target.jpg: not an image"),
                                        "bug": RuntimeError("boom")})
    finished: list[JobRecord] = []
    assert JobWorker(store, runner).run_pending(on_finish=finished.append) == 3
    assert [r.id for r in finished] == [bad, bug, ok]

    rec = store.get(bad)
    assert rec is not None and rec.state == "failed"
    assert (rec.error, rec.exit_code) == ("cannot read target.jpg: not an image", 2)
    assert [e.kind for _, e in store.events(bad)].count("failed") == 1

    rec = store.get(bug)
    assert rec is not None and rec.state == "failed"
    assert (rec.error, rec.exit_code) == ("internal error: RuntimeError: boom", 70)
    final = store.events(bug)[-1][1]  # the runner raised before any event: the worker adds one
    assert (final.kind, final.exit_code, final.error) == ("failed", 70, "RuntimeError")

    assert store.get(ok).state == "done"  # type: ignore[union-attr]
    assert runner.ran == ["bad", "bug", "ok"]


def test_worker_thread_survives_a_bug_and_runs_one_job_at_a_time(store: JobStore, tmp_path: Path) -> None:
    active = []
    overlap = []

    class Counting(FakeRunner):
        def run(self, job: Job, on_event: Any = None, cancel: Any = None) -> Result:
            active.append(job)
            overlap.append(len(active))
            try:
                if job.output.stem == "bug":
                    raise KeyError("nope")
                return super().run(job, on_event, cancel)
            finally:
                active.remove(job)

    ids = [store.submit(make_job(tmp_path, name)).id for name in ("a", "bug", "c", "d")]
    worker = JobWorker(store, Counting(frames=3, frame_s=0.002), poll_s=0.02)
    worker.start()
    worker.start()  # a second start is a no-op
    try:
        wait_for(lambda: all(store.get(i).finished_state for i in ids))  # type: ignore[union-attr]
        late = store.submit(make_job(tmp_path, "late")).id  # the idle thread picks up new work
        wait_for(lambda: store.get(late).state == "done")  # type: ignore[union-attr]
    finally:
        worker.stop()
    assert [store.get(i).state for i in ids] == ["done", "failed", "done", "done"]  # type: ignore[union-attr]
    assert store.get(ids[1]).exit_code == 70  # type: ignore[union-attr]
    assert max(overlap) == 1


def test_stop_with_interrupt_puts_the_job_back(store: JobStore, tmp_path: Path) -> None:
    j = store.submit(make_job(tmp_path)).id
    runner = FakeRunner(frames=100_000, frame_s=0.001)
    worker = JobWorker(store, runner)
    worker.start()
    assert runner.running.wait(10)
    worker.stop(interrupt=True)
    rec = store.get(j)
    assert rec is not None and rec.state == "queued"
    assert not any(e.final for _, e in store.events(j))


def test_a_starting_worker_requeues_what_a_dead_one_left(db: Path, tmp_path: Path) -> None:
    with JobStore(db) as dead:
        j = dead.submit(make_job(tmp_path)).id
        dead.claim_next()
    with JobStore(db) as store:
        assert JobWorker(store, FakeRunner(frames=2)).run_pending() == 1
        assert store.get(j).state == "done"  # type: ignore[union-attr]


# -------------------------------------------------------------------------------------------- CLI


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from swapline import cli as cli_mod

    code = cli_mod.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_submit_list_cancel_retry_delete(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "face.jpg").write_bytes(b"x")
    (tmp_path / "photo.jpg").write_bytes(b"x")
    db = tmp_path / "q.sqlite"
    code, out, err = cli(["jobs", "submit", "-s", "face.jpg", "-t", "photo.jpg", "-o", "result.jpg",
                          "--face-selector-mode", "many", "--relight", "0.5", "--trim-frame-end", "9",
                          "--store", str(db)], capsys)
    assert (code, err) == (0, "")
    job_id = out.strip()
    assert len(job_id) == 16

    code, out, _ = cli(["jobs", "list", "--json", "--store", str(db)], capsys)
    rows = json.loads(out)
    assert code == 0 and [r["id"] for r in rows] == [job_id] and rows[0]["state"] == "queued"
    job = rows[0]["job"]
    assert job["sources"] == [str(tmp_path / "face.jpg")] and job["output"] == str(tmp_path / "result.jpg")
    assert job["options"] == {"face_selector_mode": "many", "relight": 0.5, "trim_end": 9}

    code, out, _ = cli(["jobs", "list", "--store", str(db)], capsys)
    assert code == 0 and job_id in out and "queued" in out

    assert cli(["jobs", "cancel", job_id, "--store", str(db)], capsys)[0] == 0
    code, out, _ = cli(["jobs", "list", "--json", "--state", "cancelled", "--store", str(db)], capsys)
    assert [r["id"] for r in json.loads(out)] == [job_id] and json.loads(out)[0]["exit_code"] == 130

    assert cli(["jobs", "retry", job_id, "--store", str(db)], capsys)[0] == 0
    code, out, _ = cli(["jobs", "list", "--json", "--state", "queued", "--store", str(db)], capsys)
    assert [r["id"] for r in json.loads(out)] == [job_id]

    assert cli(["jobs", "delete", job_id, "--store", str(db)], capsys)[0] == 0
    code, out, _ = cli(["jobs", "list", "--json", "--store", str(db)], capsys)
    assert json.loads(out) == []

    for command in ("cancel", "retry", "delete"):
        code, out, err = cli(["jobs", command, "nope", "--store", str(db)], capsys)
        assert code == 2 and out == "" and err.count("\n") == 1 and "no job with id 'nope'" in err

    code, _, err = cli(["jobs", "submit", "-s", "missing.jpg", "-t", "photo.jpg", "-o", "r.jpg",
                        "--store", str(db)], capsys)
    assert code == 2 and err.count("\n") == 1 and "missing.jpg" in err


def test_cli_default_store_is_in_the_swapline_home(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPLINE_HOME", str(tmp_path / "home"))
    (tmp_path / "a.jpg").write_bytes(b"x")
    code, out, _ = cli(["jobs", "submit", "-s", str(tmp_path / "a.jpg"), "-t", str(tmp_path / "a.jpg"),
                        "-o", str(tmp_path / "b.jpg")], capsys)
    assert code == 0
    with JobStore(default_store_path(tmp_path / "home")) as store:
        assert [r.id for r in store.list()] == [out.strip()]


def test_cli_jobs_run_swaps_a_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch, swapline_home: Path) -> None:  # noqa: F811
    """``jobs submit`` twice (a real swap, and a faceless source), then ``jobs run``: the photo is
    swapped inside the face and left alone far from it, the second job fails with exit 4, and
    ``jobs run`` exits with that code."""
    import cv2
    import numpy as np

    from .conftest import media
    from .faces import OBAMA_KPS

    monkeypatch.setenv("SWAPLINE_HOME", str(swapline_home))
    target, source = media("src_obama.jpg"), media("src_biden.jpg")
    grey = tmp_path / "grey.png"
    assert cv2.imwrite(str(grey), np.full((240, 320, 3), 128, np.uint8))
    db = tmp_path / "q.sqlite"
    out = tmp_path / "swapped.jpg"
    code, good, _ = cli(["jobs", "submit", "-s", str(source), "-t", str(target), "-o", str(out),
                         "--store", str(db)], capsys)
    assert code == 0
    code, bad, _ = cli(["jobs", "submit", "-s", str(grey), "-t", str(target), "-o", str(tmp_path / "no.jpg"),
                        "--store", str(db)], capsys)
    assert code == 0

    code, stdout, stderr = cli(["jobs", "run", "--store", str(db)], capsys)
    assert code == 4, stderr
    assert stdout.startswith(f"done      {good.strip()}") and stdout.count("\n") == 1
    assert f"failed    {bad.strip()}" in stderr and "no face" in stderr and "(exit 4)" in stderr

    with JobStore(db) as store:
        rec = store.get(good.strip())
        assert rec is not None and rec.state == "done" and rec.result is not None
        assert rec.result["swapped"] == 1 and rec.result["output"] == str(out)
        kinds = [e.kind for _, e in store.events(rec.id)]
        assert kinds[0] == "started" and kinds[-1] == "done" and kinds.count("done") == 1
        failed = store.get(bad.strip())
        assert failed is not None and failed.state == "failed" and failed.exit_code == 4
        assert [e.kind for _, e in store.events(failed.id)].count("failed") == 1
    assert not (tmp_path / "no.jpg").exists()

    before, after = cv2.imread(str(target)), cv2.imread(str(out))
    assert before is not None and after is not None and after.shape == before.shape
    kps = np.array(OBAMA_KPS)
    x0, y0 = kps.min(0).astype(int)
    x1, y1 = kps.max(0).astype(int)
    diff = np.abs(after.astype(np.int16) - before.astype(np.int16))
    assert diff[y0:y1, x0:x1].mean() > 6  # the face changed
    assert diff[:60, :60].mean() < 3 and diff[-60:, -60:].mean() < 3  # the corners did not

    code, stdout, _ = cli(["jobs", "run", "--store", str(db)], capsys)
    assert (code, stdout.strip()) == (0, "no queued jobs")
