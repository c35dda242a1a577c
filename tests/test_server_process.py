"""Persistence: a real ``swapline serve`` process killed with SIGKILL mid-job, then restarted on the
same data folder, finishes the job, and its output is right.

The server and the small HTTP client that drives it (this file, run as a script with ``--drive``)
run together in a private network namespace (``unshare -n``, loopback only) where the system
allows one, so nothing outside can reach the server and no port clash with other processes is
possible; elsewhere they run as plain processes on 127.0.0.1. The server listens on a free port
(``--port 0``) and says which in its first line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.netns import isolated

REPO = Path(__file__).resolve().parents[1]
CLIP = "vid_lp_d18_talking_480.mp4"  # 480×480, 216 frames, a face in every frame
SOURCE = "src_obama.jpg"
FRAMES = 150  # trim_end: several seconds of work on a CPU
CHECK_FRAME = 60


# --------------------------------------------------------------------------- the driver (script)


def _start_server(data_dir: Path, log: Path) -> tuple[subprocess.Popen[str], str]:
    """``python -m swapline serve --port 0`` on ``data_dir``; returns the process and its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "swapline", "serve", "--port", "0", "--data-dir", str(data_dir)],
                            stdout=subprocess.PIPE, stderr=open(log, "a"), text=True, cwd=REPO)  # noqa: SIM115
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("swapline serve: http://"):
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r}; log: {log.read_text()[-2000:]}")
    return proc, line.split(": ", 1)[1].rstrip("/")


def _wait(client: Any, job_id: str, until: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            record = client.get(f"/jobs/{job_id}").json()
        except Exception:  # noqa: BLE001 - the server is still starting: its socket exists, its app not yet
            record = {}
        if record and until(record):
            return record
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id}: {record}")
        time.sleep(0.05)


def drive(media: Path, work: Path) -> dict[str, Any]:
    """Submit a video job, SIGKILL the server mid-job, restart it, wait for the end, download."""
    import httpx

    data_dir, log = work / "data", work / "server.log"
    result: dict[str, Any] = {}
    server, url = _start_server(data_dir, log)
    try:
        with httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
            files = [("source", (SOURCE, (media / SOURCE).read_bytes(), "image/jpeg")),
                     ("target", (CLIP, (media / CLIP).read_bytes(), "video/mp4"))]
            r = client.post("/jobs", files=files, data={"options": json.dumps({"trim_end": FRAMES})})
            r.raise_for_status()
            job_id = r.json()["id"]
            running = _wait(client, job_id, lambda rec: rec["state"] == "running" and rec["done"] > 0, 60)
            server.send_signal(signal.SIGKILL)
            server.wait(10)
            result.update(job_id=job_id, killed_at=running["done"], total=running["total"])
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    result["after_kill_files"] = sorted(p.name for p in (data_dir / "jobs" / result["job_id"]).iterdir())

    server, url = _start_server(data_dir, log)
    try:
        with httpx.Client(base_url=url, trust_env=False, timeout=60) as client:
            started = time.monotonic()
            record = _wait(client, result["job_id"], lambda rec: rec["state"] in ("done", "failed", "cancelled"), 90)
            result.update(state=record["state"], error=record["error"], rerun_s=time.monotonic() - started,
                          result=record["result"])
            events = client.get(f"/jobs/{result['job_id']}/events").text
            result["events"] = [line.split(": ", 1)[1] for line in events.splitlines() if line.startswith("event: ")]
            result["messages"] = [json.loads(line[6:])["message"] for line in events.splitlines()
                                  if line.startswith("data: ")]
            if record["state"] == "done":
                out = client.get(f"/jobs/{result['job_id']}/output")
                out.raise_for_status()
                (work / "output.mp4").write_bytes(out.content)
            result["after_restart_files"] = sorted(p.name for p in (data_dir / "jobs" / result["job_id"]).iterdir())
        server.send_signal(signal.SIGTERM)
        result["exit_code"] = server.wait(30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return result


def main(argv: list[str]) -> int:
    media, work = Path(argv[1]), Path(argv[2])
    result = drive(media, work)
    (work / "result.json").write_text(json.dumps(result))
    return 0


# ------------------------------------------------------------------------------------ the test


def test_sigkill_mid_job_then_restart_finishes_the_job(tmp_path: Path, model_home: Path) -> None:
    import av
    import numpy as np

    from swapline.config import RuntimeConfig, SwapConfig
    from swapline.jobs.runner import Runner, read_video_frame
    from swapline.models.store import ModelStore

    from .conftest import media

    clip, _ = media(CLIP), media(SOURCE)
    ModelStore(RuntimeConfig(home=model_home), progress=False).prepare()
    env = {**os.environ, "SWAPLINE_HOME": str(model_home), "PYTHONPATH": str(REPO)}
    env.pop("SWAPLINE_DEBUG", None)
    driver = [sys.executable, str(Path(__file__).resolve()), str(clip.parent), str(tmp_path)]
    driver = isolated(driver)  # its own network namespace where the system allows one
    proc = subprocess.run(driver, check=False, env=env, capture_output=True, text=True, timeout=150, cwd=REPO)
    log = (tmp_path / "server.log").read_text() if (tmp_path / "server.log").exists() else ""
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}\n{log}"
    result = json.loads((tmp_path / "result.json").read_text())

    assert 0 < result["killed_at"] < FRAMES and result["total"] == FRAMES
    assert "output.mp4" not in result["after_kill_files"]  # the killed run left no output behind
    assert result["after_restart_files"] == ["inputs", "output.mp4"]  # its temporary file was swept
    assert result["state"] == "done", result
    assert result["events"][-1] == "done" and result["events"].count("done") == 1
    assert any("queued again" in m for m in result["messages"]), result["messages"]
    assert result["exit_code"] == 0  # SIGTERM: a clean stop
    assert "Traceback" not in log

    out = tmp_path / "output.mp4"
    with av.open(str(out)) as container:
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(frames) == FRAMES

    target = read_video_frame(clip, CHECK_FRAME)
    with Runner(RuntimeConfig(home=model_home)) as runner:
        faces = runner.faces(clip, SwapConfig(), frame=CHECK_FRAME)
    assert faces, "the clip's frame has a face"
    x, y, w, h = (int(v) for v in faces[0]["box"])
    swapped = frames[CHECK_FRAME].astype(np.int16)
    face_diff = float(np.abs(swapped[y:y + h, x:x + w] - target[y:y + h, x:x + w]).mean())
    corner = (slice(0, 48), slice(0, 48))
    corner_diff = float(np.abs(swapped[corner] - target[corner]).mean())
    assert face_diff > 4.0 and face_diff > 3 * corner_diff, (face_diff, corner_diff)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
