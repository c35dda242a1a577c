"""The REST API (``swapline serve``) through FastAPI's TestClient: every route, the upload cap and
content sniffing, server-chosen file names, the token off loopback, the event stream's resume,
the error mapping, and real jobs and previews over the API (the CLI's copy-through included).

Routes whose point is the HTTP layer (cap, names, token, events, cancel, errors) run on a small
stand-in runner so they take milliseconds; the swaps run on the real runner, job store and worker
with the shared model cache (``model_home``), and the real media of ../shared/media.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from swapline import __version__, cli
from swapline.config import RuntimeConfig
from swapline.errors import JobCancelled, ModelError, NoFaceError, OutputError
from swapline.jobs.events import CancelToken, JobEvent
from swapline.models.store import ModelStore
from swapline.server import ServerSettings, create_app, is_loopback
from swapline.server.uploads import THUMBNAIL_SIDE

from .conftest import media

ROUTES = {"/health", "/models", "/uploads", "/uploads/{upload_id}", "/uploads/{upload_id}/thumbnail",
          "/uploads/{upload_id}/faces", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/events",
          "/jobs/{job_id}/output", "/preview"}


# --------------------------------------------------------------------------------- stand-ins


class FakeRunner:
    """Stands in for :class:`swapline.jobs.runner.Runner`: a job reports ``frames`` progress
    events (waiting for ``gate`` first, if set), then copies the target to the output; previews
    return a grey frame; ``error`` is raised by previews and face lists."""

    def __init__(self, runtime: RuntimeConfig, *, frames: int = 3, gate: threading.Event | None = None,
                 error: BaseException | None = None) -> None:
        self.frames = frames
        self.gate = gate
        self.error = error
        self.jobs: list[Any] = []

    def run(self, job: Any, on_event: Callable[[JobEvent], None] | None = None,
            cancel: CancelToken | None = None) -> dict[str, Any]:
        emit = on_event or (lambda e: None)
        token = cancel or CancelToken()
        self.jobs.append(job)
        emit(JobEvent("started", total=self.frames))
        try:
            while self.gate is not None and not self.gate.wait(0.02):
                token.check()
            for i in range(self.frames):
                token.check()
                emit(JobEvent("progress", done=i + 1, total=self.frames, fps=10.0))
            job.output.write_bytes(job.target.read_bytes())
        except JobCancelled:
            emit(JobEvent("cancelled", message="cancelled", exit_code=130))
            raise
        emit(JobEvent("done", done=self.frames, total=self.frames, message="copied"))
        return {"summary": "copied"}

    def preview(self, sources: Any, target: Path, config: Any, *, frame: int = 0) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return np.full((48, 64, 3), 128, np.uint8)

    def faces(self, target: Path, config: Any, *, frame: int = 0) -> list[dict[str, Any]]:
        if self.error is not None:
            raise self.error
        return [{"position": 0, "box": [1.0, 2.0, 3.0, 4.0], "score": 0.9}]

    def close(self) -> None:
        pass


def fake_client(data_dir: Path, *, raise_errors: bool = True, **settings: Any) -> TestClient:
    """A TestClient (not yet entered) on an app with stand-in runners."""
    runner_kw = {k: settings.pop(k) for k in ("frames", "gate", "error") if k in settings}
    app = create_app(ServerSettings(data_dir=data_dir, **settings), runner_factory=lambda rt: FakeRunner(rt, **runner_kw))
    return TestClient(app, raise_server_exceptions=raise_errors)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    with fake_client(data_dir) as c:
        yield c


def jpeg_bytes(name: str = "src_obama.jpg") -> bytes:
    return media(name).read_bytes()


def upload(client: TestClient, data: bytes, name: str = "photo.jpg") -> dict[str, Any]:
    r = client.post("/uploads", files={"file": (name, data, "application/octet-stream")})
    assert r.status_code == 201, r.text
    return r.json()


def wait_state(client: TestClient, job_id: str, states: tuple[str, ...], timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        record = client.get(f"/jobs/{job_id}").json()
        if record["state"] in states:
            return record
        assert time.monotonic() < deadline, f"job {job_id} stuck in {record['state']}"
        time.sleep(0.05)


def parse_sse(text: str) -> list[dict[str, Any]]:
    """SSE text → ``[{"id": int | None, "event": str, "data": dict}]`` (comments dropped)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        if "event" in fields:
            out.append({"id": int(fields["id"]) if "id" in fields else None, "event": fields["event"],
                        "data": json.loads(fields["data"])})
    return out


def one_line_detail(response: Any) -> str:
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail, detail
    return detail


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


# ------------------------------------------------------------------------ health, models, schema


def test_health_needs_nothing_and_counts_the_queue(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body == {"status": "ok", "version": __version__, "queued": 0, "running": 0}


def test_models_lists_the_catalogue(client: TestClient) -> None:
    r = client.get("/models")
    assert r.status_code == 200
    rows = r.json()["models"]
    assert rows and {"name", "role", "state", "size", "licence", "where", "default"} <= set(rows[0])
    assert any(row["default"] for row in rows)
    names = {row["name"]: row for row in rows}
    assert names["builtin"]["state"] == "built in"  # the whole catalogue: built-in and neural models
    assert {"inswapper_128", "gfpgan_1.4", "xseg"} <= set(names)


def test_openapi_lists_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert ROUTES <= set(schema["paths"])
    jobs_body = schema["paths"]["/jobs"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(jobs_body)
    assert "delete" in schema["paths"]["/jobs/{job_id}"]
    assert client.get("/docs").status_code == 200


def test_the_page_is_served_at_the_root(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]


# ------------------------------------------------------------------------------------- uploads


def test_upload_image_video_thumbnail_and_metadata(client: TestClient) -> None:
    image = upload(client, jpeg_bytes(), "obama.jpg")
    assert image["kind"] == "image" and image["name"] == "obama.jpg"
    assert (image["width"], image["height"]) == (910, 1137) and image["frames"] is None
    assert image["size"] == len(jpeg_bytes())
    assert client.get(f"/uploads/{image['id']}").json() == image

    clip = media("vid_lp_d18_talking_480.mp4").read_bytes()
    video = upload(client, clip, "talk.mp4")
    assert video["kind"] == "video" and video["frames"] == 216 and (video["width"], video["height"]) == (480, 480)

    for item, size in ((image, (910, 1137)), (video, (480, 480))):
        r = client.get(f"/uploads/{item['id']}/thumbnail")
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        thumb = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
        assert max(thumb.shape[:2]) == min(THUMBNAIL_SIDE, max(size))
        assert abs(thumb.shape[1] / thumb.shape[0] - size[0] / size[1]) < 0.02

    assert client.delete(f"/uploads/{image['id']}").status_code == 204
    assert client.get(f"/uploads/{image['id']}").status_code == 404
    assert client.get("/uploads/0123/thumbnail").status_code == 404
    assert client.get("/uploads/..%2F..%2Fetc/thumbnail").status_code == 404


def test_upload_over_the_cap_is_413_and_leaves_nothing(data_dir: Path) -> None:
    with fake_client(data_dir, max_upload_bytes=100_000) as c:
        big = jpeg_bytes()  # about 280 kB: refused while it streams
        assert len(big) > 100_000
        r = c.post("/uploads", files={"file": ("big.jpg", big)})
        assert r.status_code == 413, r.text
        one_line_detail(r)
        # declared far over the cap: refused before the body is read
        r = c.post("/uploads", files={"file": ("huge.jpg", big * 8)})
        assert r.status_code == 413
        # a job's multipart files count too
        r = c.post("/jobs", files=[("source", ("s.jpg", big)), ("target", ("t.jpg", big))])
        assert r.status_code == 413
        assert c.get("/jobs").json() == {"jobs": []}
    assert files_under(data_dir / "uploads") == []
    assert files_under(data_dir / "jobs") == []


def test_non_media_is_415_and_leaves_nothing(client: TestClient, data_dir: Path) -> None:
    for name, data in (("notes.txt", b"just some text\n" * 100), ("fake.jpg", b"not a jpeg at all"),
                       ("empty.png", b""), ("bad.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 2000)):
        r = client.post("/uploads", files={"file": (name, data)})
        assert r.status_code == 415, (name, r.text)
        detail = one_line_detail(r)
        assert str(data_dir) not in detail  # no server path in the message
    r = client.post("/uploads", content=b"raw bytes", headers={"content-type": "application/octet-stream"})
    assert r.status_code == 415
    r = client.post("/uploads", content=b"--xx\r\nbroken\r\n\r\n--xx--",
                    headers={"content-type": "multipart/form-data; boundary=zz"})
    assert r.status_code == 400 and "malformed" in one_line_detail(r)
    r = client.post("/jobs", files=[("source", ("s.txt", b"hello")), ("target", ("t.jpg", jpeg_bytes()))])
    assert r.status_code == 415
    assert files_under(data_dir / "uploads") == [] and files_under(data_dir / "jobs") == []


def test_a_path_like_name_is_shown_but_never_used(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(data_dir)}
    item = upload(client, jpeg_bytes(), "../../etc/passwd.jpg")
    assert item["name"] == "passwd.jpg"
    folder = data_dir / "uploads" / item["id"]
    assert sorted(p.name for p in folder.iterdir()) == ["file.jpg", "meta.json", "thumbnail.jpg"]
    item2 = upload(client, jpeg_bytes(), "..\\..\\windows\\evil.jpg")
    assert item2["name"] == "evil.jpg"
    r = client.post("/jobs", files=[("source", ("../../../s.jpg", jpeg_bytes())),
                                    ("target", ("/etc/target.jpg", jpeg_bytes("src_biden.jpg")))])
    assert r.status_code == 201, r.text
    job = r.json()
    workdir = data_dir / "jobs" / job["id"]
    assert (workdir / "inputs" / "source.jpg").is_file() and (workdir / "inputs" / "target.jpg").is_file()
    assert job["source_names"] == ["source.jpg"] and job["target_name"] == "target.jpg"
    assert str(data_dir) not in r.text  # no server path is shown to a client
    after = {p for p in tmp_path.rglob("*") if not p.is_relative_to(data_dir)}
    assert after == before  # nothing written outside the data folder
    assert not Path("/etc/target.jpg").exists()
    for path in files_under(data_dir / "uploads"):
        assert path.parent.parent == data_dir / "uploads"


# ---------------------------------------------------------------------------------------- token


def test_token_required_off_loopback(data_dir: Path) -> None:
    with fake_client(data_dir, host="0.0.0.0", token="s3cret") as c:
        assert c.get("/health").status_code == 200
        for path in ("/jobs", "/models", "/openapi.json", "/", "/uploads/" + "0" * 32):
            r = c.get(path)
            assert r.status_code == 401, path
            assert r.headers["www-authenticate"] == "Bearer"
        assert c.get("/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/uploads", files={"file": ("a.jpg", jpeg_bytes())}).status_code == 401
        assert files_under(data_dir / "uploads") == []
        r = c.get("/jobs", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 200 and r.json() == {"jobs": []}
        # ?token= (EventSource, downloads, the first page load) sets a cookie the page then uses
        r = c.get("/?token=s3cret")
        assert r.status_code == 200 and "swapline_token=s3cret" in r.headers["set-cookie"]
        assert c.get("/jobs").status_code == 200  # the client kept the cookie
        c.cookies.clear()
        assert c.get("/jobs").status_code == 401


def test_no_token_on_loopback_unless_given(data_dir: Path, tmp_path: Path) -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.5.6.7") and is_loopback("::1")
    assert is_loopback("localhost") and is_loopback("[::1]")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("::")
    with fake_client(data_dir, host="127.0.0.1") as c:
        assert c.get("/jobs").status_code == 200
    with fake_client(tmp_path / "d2", host="localhost", token="given") as c:
        assert c.get("/jobs").status_code == 401
        assert c.get("/jobs?token=given").status_code == 200
    with pytest.raises(Exception, match="token"):
        create_app(ServerSettings(data_dir=data_dir, host="0.0.0.0"))


def test_serve_generates_and_prints_a_token_off_loopback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(self: uvicorn.Server, sockets: Any = None) -> None:
        seen["middleware"] = [m.kwargs for m in self.config.app.user_middleware]
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    code = cli.main(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert code == 0
    token = seen["middleware"][0]["token"]
    assert len(token) >= 20 and out.count(token) == 1
    assert "swapline serve: http://0.0.0.0:" in out
    code = cli.main(["serve", "--port", "0", "--data-dir", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert code == 0 and "token" not in out and out.startswith("swapline serve: http://127.0.0.1:")
    assert seen["middleware"] == []  # no token check on loopback


# ------------------------------------------------------------------------------ jobs and events


def test_job_lifecycle_events_output_and_delete(client: TestClient, data_dir: Path) -> None:
    src, tgt = upload(client, jpeg_bytes()), upload(client, jpeg_bytes("src_biden.jpg"), "biden.jpg")
    r = client.post("/jobs", json={"sources": [src["id"]], "target": tgt["id"], "options": {"relight": 0.5}})
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"] == f"/jobs/{job['id']}"
    assert job["state"] in ("queued", "running") and job["options"] == {"relight": 0.5}
    assert job["target_upload"] == tgt["id"] and str(data_dir) not in r.text
    # the stream opened at once follows the job to its end
    with client.stream("GET", f"/jobs/{job['id']}/events") as s:
        assert s.headers["content-type"].startswith("text/event-stream")
        events = parse_sse(s.read().decode())
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done" and kinds.count("done") == 1
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e["data"]["done"] for e in events if e["event"] == "progress"][-1] == 3

    record = client.get(f"/jobs/{job['id']}").json()
    assert record["state"] == "done" and record["fraction"] == 1.0
    assert record["links"]["output"] == f"/jobs/{job['id']}/output"
    out = client.get(f"/jobs/{job['id']}/output")
    assert out.status_code == 200 and out.content == jpeg_bytes("src_biden.jpg")
    assert out.headers["content-type"] == "image/jpeg" and "attachment" in out.headers["content-disposition"]
    assert [j["id"] for j in client.get("/jobs").json()["jobs"]] == [job["id"]]
    assert client.get("/jobs?state=done").json()["jobs"][0]["id"] == job["id"]
    assert client.get("/jobs?state=queued").json() == {"jobs": []}
    assert client.get("/jobs?state=bogus").status_code == 422

    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    assert not (data_dir / "jobs" / job["id"]).exists()
    for path in ("", "/output", "/events"):
        assert client.get(f"/jobs/{job['id']}{path}").status_code == 404
    assert client.delete(f"/jobs/{job['id']}").status_code == 404
    # the uploads outlive the job
    assert client.get(f"/uploads/{src['id']}").status_code == 200


def test_events_resume_after_last_event_id(client: TestClient) -> None:
    src = upload(client, jpeg_bytes())
    job = client.post("/jobs", json={"sources": [src["id"]], "target": src["id"]}).json()
    wait_state(client, job["id"], ("done",))
    full = parse_sse(client.get(f"/jobs/{job['id']}/events").text)
    assert len(full) >= 4 and full[-1]["event"] == "done"
    cut = full[1]["id"]
    for response in (client.get(f"/jobs/{job['id']}/events", headers={"Last-Event-ID": str(cut)}),
                     client.get(f"/jobs/{job['id']}/events?last_event_id={cut}")):
        resumed = parse_sse(response.text)
        assert resumed == full[2:]  # the events after it, and only those
    # resumed after the final event: 204 tells EventSource to stop reconnecting
    r = client.get(f"/jobs/{job['id']}/events", headers={"Last-Event-ID": str(full[-1]["id"])})
    assert r.status_code == 204
    assert client.get(f"/jobs/{job['id']}/events", headers={"Last-Event-ID": "x"}).status_code == 422


def test_idle_stream_sends_keepalives_and_cancel_ends_it(data_dir: Path) -> None:
    gate = threading.Event()
    with fake_client(data_dir, gate=gate, keepalive_s=0.05, poll_s=0.02) as c:
        src = upload(c, jpeg_bytes())
        job = c.post("/jobs", json={"sources": [src["id"]], "target": src["id"]}).json()
        wait_state(c, job["id"], ("running",))
        assert c.get(f"/jobs/{job['id']}/output").status_code == 409
        queued = c.post("/jobs", json={"sources": [src["id"]], "target": src["id"]}).json()
        health = c.get("/health").json()
        assert (health["queued"], health["running"]) == (1, 1)
        # a queued job is cancelled at once; its stream ends with that
        r = c.delete(f"/jobs/{queued['id']}")
        assert r.status_code == 202 and r.json()["state"] == "cancelled"
        assert parse_sse(c.get(f"/jobs/{queued['id']}/events").text)[-1]["event"] == "cancelled"
        assert c.get(f"/jobs/{queued['id']}/output").status_code == 409
        assert c.delete(f"/jobs/{queued['id']}").status_code == 204

        def cancel_soon() -> None:
            time.sleep(0.4)
            r = c.delete(f"/jobs/{job['id']}")
            assert r.status_code == 202 and r.json()["id"] == job["id"]

        canceller = threading.Thread(target=cancel_soon)
        canceller.start()
        text = c.get(f"/jobs/{job['id']}/events").text
        canceller.join()
        assert ": keep-alive" in text
        events = parse_sse(text)
        assert events[-1]["event"] == "cancelled"
        assert wait_state(c, job["id"], ("cancelled",))["exit_code"] == 130
        assert not list((c.app.state.server.settings.data_dir / "jobs" / job["id"]).glob("output*"))
        gate.set()


def test_bad_options_are_422_in_one_line(client: TestClient, data_dir: Path) -> None:
    src = upload(client, jpeg_bytes())
    cases = [{"no_such_option": 1}, {"face_selector_mode": "bogus"}, {"trim_start": 5, "trim_end": 2}, [1, 2]]
    for options in cases:
        r = client.post("/jobs", json={"sources": [src["id"]], "target": src["id"], "options": options})
        assert r.status_code == 422, (options, r.text)
        one_line_detail(r)
    r = client.post("/jobs", json={"sources": [src["id"]], "target": src["id"], "options": {"no_such_option": 1}})
    assert one_line_detail(r) == "unknown option 'no_such_option'"
    r = client.post("/jobs", files=[("source", ("s.jpg", jpeg_bytes())), ("target", ("t.jpg", jpeg_bytes()))],
                    data={"options": "{not json"})
    assert r.status_code == 422 and "JSON" in one_line_detail(r)
    r = client.post("/jobs", files=[("source", ("s.jpg", jpeg_bytes())), ("target", ("t.jpg", jpeg_bytes()))],
                    data={"options": json.dumps({"face_selector_mode": "bogus"})})
    assert r.status_code == 422 and "bogus" in one_line_detail(r)
    # wrong shapes and unknown uploads
    for body in ({"target": src["id"]}, {"sources": [], "target": src["id"]},
                 {"sources": ["f" * 32], "target": src["id"]}, {"sources": [src["id"]], "target": "../../x"}):
        r = client.post("/jobs", json=body)
        assert r.status_code == 422, (body, r.text)
        one_line_detail(r)
    r = client.post("/jobs", content=b"{broken", headers={"content-type": "application/json"})
    assert r.status_code == 422
    r = client.post("/jobs", files=[("target", ("t.jpg", jpeg_bytes()))])
    assert r.status_code == 422 and "source" in one_line_detail(r)
    assert client.get("/jobs").json() == {"jobs": []}
    assert files_under(data_dir / "jobs") == []


def test_a_video_is_no_source(client: TestClient) -> None:
    clip = upload(client, media("vid_lp_d18_talking_480.mp4").read_bytes(), "clip.mp4")
    r = client.post("/jobs", json={"sources": [clip["id"]], "target": clip["id"]})
    assert r.status_code == 415 and "photo" in one_line_detail(r)


def test_errors_map_to_status_codes_without_tracebacks(data_dir: Path, tmp_path: Path) -> None:
    src_bytes = jpeg_bytes()
    cases = [(ModelError("model yunet cannot be fetched"), 503), (OutputError("disk full"), 500),
             (NoFaceError("no face found in the source image"), 422), (RuntimeError("boom\nsecret frame"), 500)]
    for i, (error, status) in enumerate(cases):
        with fake_client(tmp_path / f"d{i}", error=error, raise_errors=False) as c:
            src = upload(c, src_bytes)
            r = c.post("/preview", json={"sources": [src["id"]], "target": src["id"]})
            assert r.status_code == status, (error, r.text)
            detail = one_line_detail(r)
            assert "secret frame" not in detail
            if status != 500 or not isinstance(error, RuntimeError):
                assert str(error) in detail
            else:
                assert detail == "internal error: RuntimeError"
            r = c.get(f"/uploads/{src['id']}/faces")
            assert r.status_code == status


def test_preview_and_faces_routes_take_json_and_multipart(client: TestClient) -> None:
    src = upload(client, jpeg_bytes())
    r = client.post("/preview", json={"sources": [src["id"]], "target": src["id"], "options": {}, "frame": 0})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR).shape == (48, 64, 3)
    r = client.post("/preview", files=[("source", ("s.jpg", jpeg_bytes())), ("target", ("t.jpg", jpeg_bytes()))],
                    data={"options": "{}", "frame": "0"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    r = client.post("/preview", json={"sources": [src["id"]], "target": src["id"], "frame": -1})
    assert r.status_code == 422
    r = client.post("/preview", json={"sources": [src["id"]], "target": src["id"], "options": {"x": 1}})
    assert r.status_code == 422 and one_line_detail(r) == "unknown option 'x'"
    r = client.get(f"/uploads/{src['id']}/faces", params={"options": json.dumps({"face_selector_order": "left-right"})})
    assert r.status_code == 200 and r.json()["faces"][0]["position"] == 0
    r = client.get(f"/uploads/{src['id']}/faces", params={"options": json.dumps({"bogus": 1})})
    assert r.status_code == 422
    # multipart previews leave no upload behind
    assert len(list((client.app.state.server.uploads.root).iterdir())) == 1


# ------------------------------------------------------------------------- the real job core


@pytest.fixture(scope="module")
def prepared_home(model_home: Path) -> Path:
    ModelStore(RuntimeConfig(home=model_home), progress=False).prepare()
    return model_home


@pytest.fixture(scope="module")
def real(prepared_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app on the real runner, store and worker for the module (models load once)."""
    data = tmp_path_factory.mktemp("real-server")
    app = create_app(ServerSettings(data_dir=data, runtime=RuntimeConfig(home=prepared_home)))
    with TestClient(app) as c:
        yield c


def faceless_background(tmp_path: Path) -> Path:
    """A crop of the flag and curtain beside the face in a press photo: real texture, no face."""
    photo = cv2.imread(str(media("bench_obama_720p.jpg")))
    crop = np.ascontiguousarray(photo[0:300, 336:560])
    path = tmp_path / "background.jpg"
    assert cv2.imwrite(str(path), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def test_real_image_job_finishes_and_downloads(real: TestClient, tmp_path: Path) -> None:
    src = upload(real, jpeg_bytes("src_obama.jpg"), "obama.jpg")
    tgt = upload(real, jpeg_bytes("src_biden.jpg"), "biden.jpg")
    job = real.post("/jobs", json={"sources": [src["id"]], "target": tgt["id"]}).json()
    events = parse_sse(real.get(f"/jobs/{job['id']}/events").text)
    assert events[-1]["event"] == "done", events[-1]
    r = real.get(f"/jobs/{job['id']}/output")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    out = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    target = cv2.imread(str(media("src_biden.jpg")))
    assert out.shape == target.shape
    assert float(np.abs(out.astype(np.int16) - target.astype(np.int16)).mean()) > 0.5  # something was swapped
    record = real.get(f"/jobs/{job['id']}").json()
    assert record["result"]["swapped"] >= 1 and record["exit_code"] == 0


def test_no_face_copy_through_matches_the_cli(real: TestClient, tmp_path: Path) -> None:
    background = faceless_background(tmp_path)
    tgt = upload(real, background.read_bytes(), "background.jpg")
    assert real.get(f"/uploads/{tgt['id']}/faces").json()["faces"] == []
    r = real.post("/jobs", files=[("source", ("obama.jpg", jpeg_bytes()))],
                  data={"options": "{}"}, params={})
    assert r.status_code == 422  # no target given
    r = real.post("/jobs", files=[("source", ("obama.jpg", jpeg_bytes())), ("target", ("bg.jpg", background.read_bytes()))])
    assert r.status_code == 201, r.text
    job = r.json()
    events = parse_sse(real.get(f"/jobs/{job['id']}/events").text)
    assert events[-1]["event"] == "done" and any(e["event"] == "warning" for e in events)
    api_bytes = real.get(f"/jobs/{job['id']}/output").content

    cli_out = tmp_path / "cli.jpg"
    code = cli.main(["swap", "-s", str(media("src_obama.jpg")), "-t", str(background), "-o", str(cli_out), "-q"])
    assert code == 0
    assert api_bytes == cli_out.read_bytes() == background.read_bytes()


def test_real_preview_and_faces(real: TestClient, tmp_path: Path) -> None:
    src = upload(real, jpeg_bytes("src_obama.jpg"))
    two = upload(real, jpeg_bytes("multi_two_people_obama_biden.jpg"))
    faces = real.get(f"/uploads/{two['id']}/faces").json()
    assert [f["position"] for f in faces["faces"]] == [0, 1]
    for face in faces["faces"]:
        x, y, w, h = face["box"]
        assert 0 <= x and 0 <= y and x + w <= two["width"] + 1 and y + h <= two["height"] + 1 and w > 20

    body = {"sources": [src["id"]], "target": two["id"], "options": {"face_selector_mode": "many"}}
    first = real.post("/preview", json=body)
    assert first.status_code == 200, first.text
    started = time.perf_counter()
    again = real.post("/preview", json={**body, "options": {"face_selector_mode": "many", "relight": 0.0}})
    seconds = time.perf_counter() - started
    assert again.status_code == 200
    swapped = cv2.imdecode(np.frombuffer(first.content, np.uint8), cv2.IMREAD_COLOR)
    target = cv2.imread(str(media("multi_two_people_obama_biden.jpg")))
    assert swapped.shape == target.shape
    for face in faces["faces"]:  # both faces changed
        x, y, w, h = (int(v) for v in face["box"])
        diff = np.abs(swapped[y:y + h, x:x + w].astype(np.int16) - target[y:y + h, x:x + w].astype(np.int16))
        assert float(diff.mean()) > 2.0
    assert seconds < 10.0, f"a cached preview took {seconds:.2f} s"

    faceless = tmp_path / "bg.jpg"
    faceless.write_bytes(faceless_background(tmp_path).read_bytes())
    bg = upload(real, faceless.read_bytes(), "bg.jpg")
    r = real.post("/preview", json={"sources": [bg["id"]], "target": two["id"]})
    assert r.status_code == 422 and "no face" in one_line_detail(r)


def test_start_up_sweeps_what_a_killed_server_left(data_dir: Path) -> None:
    from swapline.server.uploads import UploadStore

    store = UploadStore(data_dir / "uploads")
    _, cut = store.new_folder()  # a transfer cut off: no meta.json
    (cut / "file.part").write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    _, fresh = store.new_folder()  # one being written right now by someone: kept
    (fresh / "file.part").write_bytes(b"\0")
    old = time.time() - 7200
    os.utime(cut, (old, old))
    job_dir = data_dir / "jobs" / "0123456789abcdef"
    job_dir.mkdir(parents=True)
    (job_dir / ".output.mp4.999999999.part.mp4").write_bytes(b"partial")  # a dead writer's temporary file
    (job_dir / "output.mp4").write_bytes(b"kept")
    with fake_client(data_dir):
        pass
    assert not cut.exists() and fresh.exists()
    assert sorted(p.name for p in job_dir.iterdir()) == ["output.mp4"]


def test_the_queue_can_hand_its_jobs_to_a_cluster(prepared_home: Path, tmp_path: Path) -> None:
    """``job_runner_factory`` (``swapline serve --ray``) puts a cluster runner behind the queue: a
    job submitted over HTTP is run by it (here on an in-process executor), previews stay local."""
    from swapline.distributed.cluster import ClusterRunner
    from swapline.distributed.local import InProcessExecutor
    from swapline.distributed.segment import WorkerSettings

    made: list[ClusterRunner] = []

    def cluster(runtime: RuntimeConfig) -> ClusterRunner:
        made.append(ClusterRunner(InProcessExecutor(settings=WorkerSettings(runtime=runtime))))
        return made[-1]

    app = create_app(ServerSettings(data_dir=tmp_path / "data", runtime=RuntimeConfig(home=prepared_home)),
                     job_runner_factory=cluster)
    with TestClient(app) as c:
        src = upload(c, jpeg_bytes("src_obama.jpg"), "obama.jpg")
        tgt = upload(c, media("vid_lp_d18_talking_480.mp4").read_bytes(), "talk.mp4")
        job = c.post("/jobs", json={"sources": [src["id"]], "target": tgt["id"]}).json()
        done = wait_state(c, job["id"], ("done", "failed"), timeout=300)
        assert done["state"] == "done", done
        assert "in-process worker" in done["result"]["summary"]
        r = c.get(f"/jobs/{job['id']}/output")
        assert r.status_code == 200 and len(r.content) > 10_000
        assert c.post("/preview", json={"sources": [src["id"]], "target": tgt["id"]}).status_code == 200
    assert len(made) == 1
