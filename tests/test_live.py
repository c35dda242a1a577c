"""Live mode: newest-frame slots, the engine (drops instead of delay, source switching, several
faces), frame codes, the stream path over UDP through a real ``swapline live`` process, the
virtual camera (pyvirtualcam mocked) and the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import ClassVar

import av
import cv2
import numpy as np
import pytest

from swapline import cli
from swapline.config import SwapConfig
from swapline.errors import ConfigError, InputError
from swapline.face.recognize import cosine
from swapline.live import LiveEngine, LiveFrame, NewestSlot
from swapline.live.framecode import code_region, read_code, stamp_code
from swapline.live.streamcheck import clip_frames

from .conftest import media, read
from .netns import isolated, namespace_available

REPO = Path(__file__).resolve().parents[1]
TALKING = "vid_lp_d18_talking_480.mp4"  # 480×480, 30 fps, one face
TWO = "vid_intel_head-pose-face-detection-female-and-male.mp4"  # 480×270, two people


# ------------------------------------------------------------------------------------ the slot


def test_newest_slot_keeps_only_the_newest_and_counts_drops() -> None:
    slot: NewestSlot[int] = NewestSlot()
    assert slot.put(0) is False
    for i in range(1, 1000):
        assert slot.put(i) is True
        assert len(slot) == 1  # never grows
    assert slot.dropped == 999 and slot.put_count == 1000
    assert slot.get(timeout=0) == 999
    assert slot.get(timeout=0.05) is None  # empty: a timeout
    slot.put(7)
    slot.close()
    assert slot.get(timeout=0) == 7  # what is held can still be taken
    assert slot.get() is None  # closed and empty: no wait
    assert slot.put(8) is False and len(slot) == 0


def test_newest_slot_with_a_slow_consumer_drops_and_stays_in_order() -> None:
    slot: NewestSlot[int] = NewestSlot()
    taken: list[int] = []

    def consume() -> None:
        while (item := slot.get(timeout=1.0)) is not None:
            taken.append(item)
            time.sleep(0.01)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(300):
        slot.put(i)
        time.sleep(0.001)
    slot.close()
    t.join(5)
    assert taken[-1] == 299  # the newest always gets through
    assert taken == sorted(taken) and len(taken) + slot.dropped == 300
    assert slot.dropped > 100


# ------------------------------------------------------------------------------- frame codes


def test_frame_code_survives_h264_and_rescaling(tmp_path: Path) -> None:
    frames = clip_frames(media(TALKING), limit=12)[0]
    stamped = [stamp_code(f.copy(), 1000 + 37 * i) for i, f in enumerate(frames)]
    path = tmp_path / "codes.mp4"
    from swapline.video.clip import write_clip

    write_clip(iter(stamped), path, crf=32)
    with av.open(str(path)) as c:
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert [read_code(d) for d in decoded] == [1000 + 37 * i for i in range(12)]
    small = cv2.resize(decoded[3], (320, 320), interpolation=cv2.INTER_AREA)
    assert read_code(small) == 1000 + 37 * 3
    assert read_code(frames[0]) is None  # an unstamped frame reads as nothing
    y0, y1, x0, x1 = code_region(frames[0].shape)
    assert 0 < x0 < x1 < frames[0].shape[1] // 2 and frames[0].shape[0] // 2 < y0 < y1 <= frames[0].shape[0]


# ---------------------------------------------------------------------------------- the engine


@pytest.fixture(scope="module")
def talking() -> list[np.ndarray]:
    return clip_frames(media(TALKING), limit=150)[0]


@pytest.fixture(scope="module")
def biden(session):  # noqa: ANN001, ANN201
    return session.load_source(read("src_biden.jpg"))


@pytest.fixture(scope="module")
def obama(session):  # noqa: ANN001, ANN201
    return session.load_source(read("src_obama.jpg"))


def _lockstep(engine: LiveEngine, frames: list[np.ndarray], start: int = 0) -> list[LiveFrame]:
    """Submit each frame and wait for it to come out (nothing dropped)."""
    out = []
    for i, image in enumerate(frames, start):
        engine.submit(LiveFrame(image=image, index=i, captured=time.monotonic()))
        done = engine.latest(timeout=30)
        assert done is not None and done.index == i
        engine.delivered(done)
        out.append(done)
    return out


def _largest(session, image: np.ndarray):  # noqa: ANN001, ANN202
    faces = session.analyse(image)
    assert faces, "no face found"
    return max(faces, key=lambda f: f.area)


def test_without_a_source_frames_pass_through(session, talking) -> None:  # noqa: ANN001
    engine = LiveEngine(session, None, SwapConfig(), fps=30)
    engine.start()
    try:
        out = _lockstep(engine, talking[:5])
    finally:
        engine.stop()
    assert all(np.array_equal(o.image, f) for o, f in zip(out, talking[:5]))
    assert engine.latest(timeout=0.1) is None  # stopped
    s = engine.stats()
    assert (s.captured, s.delivered, s.dropped) == (5, 5, 0)


def test_a_slow_swap_drops_frames_and_latency_stays_bounded(session, biden, talking) -> None:  # noqa: ANN001
    """30 fps into a swap slowed to 150 ms: frames are dropped, not queued, so latency stays
    near one to two swap times and does not grow."""
    engine = LiveEngine(session, biden, SwapConfig(), fps=30, swap_delay_s=0.15)
    engine.start()
    latencies: list[tuple[float, float]] = []  # (capture time, latency)
    indices: list[int] = []
    stop = threading.Event()

    def output() -> None:
        while not stop.is_set():
            frame = engine.latest(timeout=0.1)
            if frame is not None:
                engine.delivered(frame)
                latencies.append((frame.captured, time.monotonic() - frame.captured))
                indices.append(frame.index)

    pump = threading.Thread(target=output)
    pump.start()
    seconds, fps = 6.0, 30.0
    t0 = time.monotonic()
    try:
        for i in range(int(seconds * fps)):
            due = t0 + i / fps
            time.sleep(max(0.0, due - time.monotonic()))
            engine.submit(LiveFrame(image=talking[i % len(talking)], index=i, captured=time.monotonic()))
        time.sleep(0.4)
    finally:
        stop.set()
        pump.join(5)
        engine.stop()
    s = engine.stats()
    assert s.captured == 180 and s.dropped > 60, s  # ≈ 6.7 frames/s go through, the rest are dropped
    assert s.delivered == len(indices) and 20 <= s.delivered <= 60, s
    assert indices == sorted(indices)
    assert s.swap_ms >= 149
    lat = np.array([x for _, x in latencies]) * 1000
    first, second = lat[: len(lat) // 2], lat[len(lat) // 2:]
    p95_first, p95_second = np.percentile(first, 95), np.percentile(second, 95)
    assert np.percentile(lat, 95) <= 400, lat
    assert p95_second <= p95_first + 60, (p95_first, p95_second)  # not growing
    assert abs(s.latency_p95_ms - np.percentile(lat, 95)) < 25  # the engine's own figure agrees
    assert "dropped" in engine.summary() and "p95" in engine.summary()


def test_set_source_mid_run_changes_the_identity_without_a_restart(session, biden, obama, talking) -> None:  # noqa: ANN001
    engine = LiveEngine(session, biden, SwapConfig(), fps=30)
    engine.start()
    thread = engine._thread
    try:
        before = _lockstep(engine, talking[:12])
        engine.set_source(obama)
        after = _lockstep(engine, talking[12:24], start=12)
        assert engine._thread is thread and engine.running  # the same worker, never restarted
    finally:
        engine.stop()
    for frame, expect, other in ((before[-1], biden, obama), (after[0], obama, biden), (after[-1], obama, biden)):
        emb = _largest(session, frame.image).embedding
        assert cosine(emb, expect.embedding) > cosine(emb, other.embedding) + 0.05, frame.index
    s = engine.stats()
    assert (s.captured, s.delivered, s.dropped) == (24, 24, 0)


def test_set_config_takes_effect_at_the_next_frame(session, biden, talking) -> None:  # noqa: ANN001
    engine = LiveEngine(session, biden, SwapConfig(), fps=30)
    engine.start()
    try:
        a = _lockstep(engine, talking[:3])[-1]
        engine.set_config(SwapConfig(face_shape_weight=0.0, relight=0.0))
        b = _lockstep(engine, talking[3:4], start=3)[0]
        engine.set_source(None)
        c = _lockstep(engine, talking[4:5], start=4)[0]
    finally:
        engine.stop()
    assert not np.array_equal(a.image, talking[2]) and not np.array_equal(b.image, talking[3])
    assert np.array_equal(c.image, talking[4])  # no source: passed through from the next frame


def _faces_by_position(session, image: np.ndarray):  # noqa: ANN001, ANN202
    return sorted(session.analyse(image), key=lambda f: float(f.box[0]))


def test_many_swaps_both_faces_of_a_two_person_clip(session, biden) -> None:  # noqa: ANN001
    frames = clip_frames(media(TWO), limit=12)[0]
    engine = LiveEngine(session, biden, SwapConfig(face_selector_mode="many"), fps=12.5)
    engine.start()
    try:
        out = _lockstep(engine, frames)
    finally:
        engine.stop()
    for i in (0, 6, 11):
        before = _faces_by_position(session, frames[i])
        assert len(before) == 2, (i, len(before))
        # the identity where each face was (a swapped 65 px face is not always found again by the
        # detector: its embedding is taken at the input's landmarks)
        after = session.analyser.recognizer.embed(out[i].image, before)
        for f_in, f_out in zip(before, after):
            x1, y1, x2, y2 = (int(v) for v in f_in.box)
            diff = np.abs(out[i].image[y1:y2, x1:x2].astype(np.int16) - frames[i][y1:y2, x1:x2]).mean()
            # both faces are replaced: their pixels changed and they no longer read as the person who was
            # there (the faces are ≈ 65 px wide, too small for the source's identity to read strongly)
            assert diff > 4.0 and cosine(f_out.embedding, f_in.embedding) < 0.75, (i, diff)


def test_reference_mode_follows_one_person(session, biden) -> None:  # noqa: ANN001
    frames = clip_frames(media(TWO), limit=10)[0]
    engine = LiveEngine(session, biden, SwapConfig(face_selector_mode="reference", reference_face_position=0,
                                                  face_selector_order="left-right"), fps=12.5)
    engine.start()
    try:
        out = _lockstep(engine, frames)
    finally:
        engine.stop()
    before, after = _faces_by_position(session, frames[9]), _faces_by_position(session, out[9].image)
    assert len(before) == len(after) == 2
    changed = []
    for f_in in before:
        x1, y1, x2, y2 = (int(v) for v in f_in.box)
        diff = np.abs(out[9].image[y1:y2, x1:x2].astype(np.int16) - frames[9][y1:y2, x1:x2]).mean()
        changed.append(diff)
    assert changed[0] > 4.0 and changed[1] < 1.0, changed  # the left face is swapped, the right one is not


# ----------------------------------------------------------------------------- the stream path


def test_stream_path_udp_in_swapline_live_udp_out(session, tmp_path: Path, model_home: Path) -> None:  # noqa: ANN001
    """A clip played at real time with frame codes to udp://P1, ``swapline live`` (a real
    process) swapping it to udp://P2, a reader matching the codes: in order, the face changed,
    the corner code intact, latency measured. In a private network namespace."""
    if not namespace_available():
        pytest.skip("needs 'unshare -n' with a loopback interface (an isolated network namespace)")
    clip, source = media(TALKING), media("src_biden.jpg")
    session.load_source([str(source)])  # every model the live process needs is at hand: it runs offline
    env = {**os.environ, "SWAPLINE_HOME": str(model_home), "PYTHONPATH": str(REPO)}
    env.pop("SWAPLINE_DEBUG", None)
    seconds = 8.0
    driver = [sys.executable, str(REPO / "tests" / "live_stream_driver.py"), str(clip.parent), str(tmp_path),
              str(seconds)]
    cmd = isolated(driver)
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=180, cwd=REPO)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["exit_code"] == 0, result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert "frames captured" in result["stdout"] and "latency p50" in result["stdout"]

    received = result["received"]
    codes = [c for c, _ in received if c is not None]
    assert len(codes) >= 60 and len(codes) >= 0.98 * len(received), (len(codes), len(received))  # codes read
    # once the stream is up (each end starts at a keyframe), most frames come back: the live process
    # drops only what it cannot swap in time on a busy machine
    assert len(codes) >= 0.5 * (result["sent"] - codes[0]), (len(codes), codes[0], result["sent"])
    assert codes == sorted(set(codes)), "frames out of order or repeated"
    latency = np.array([lat for c, lat in received if lat is not None]) * 1000
    p50, p95 = float(np.percentile(latency, 50)), float(np.percentile(latency, 95))
    print(f"stream path latency: p50 {p50:.0f} ms, p95 {p95:.0f} ms over {len(latency)} frames")
    assert p50 <= 250 and p95 <= 500, (p50, p95)  # the target (p50 ≤ 150 ms) is for a quiet machine

    assert result["kept"], "no frame was kept"
    for code in result["kept"]:
        got = cv2.imread(str(tmp_path / f"got_{code}.png"))
        sent = cv2.imread(str(tmp_path / f"sent_{code}.png"))
        face = _largest(session, sent)
        x1, y1, x2, y2 = (int(v) for v in face.box)
        face_diff = np.abs(got[y1:y2, x1:x2].astype(np.int16) - sent[y1:y2, x1:x2]).mean()
        cy0, cy1, cx0, cx1 = code_region(sent.shape)
        corner_diff = np.abs(got[cy0:cy1, cx0:cx1].astype(np.int16) - sent[cy0:cy1, cx0:cx1]).mean()
        assert face_diff > 6.0 and corner_diff < 6.0 and face_diff > 3 * corner_diff, (code, face_diff, corner_diff)
        assert read_code(got) == code


def _loopback_tcp_works() -> bool:
    import socket

    try:
        with socket.create_server(("127.0.0.1", 0)) as server, \
                socket.create_connection(server.getsockname(), timeout=2):
            return True
    except OSError:
        return False


def test_tcp_listen_output_serves_a_client_that_pulls(session, tmp_path: Path) -> None:  # noqa: ANN001
    """``--output tcp://HOST:PORT?listen=1`` (what OBS can pull): the output waits for its client,
    then the frames reach it with their codes intact (on this host's loopback)."""
    import socket

    from swapline.live.inputs import Capture, parse_input
    from swapline.live.outputs import StreamOutput
    from swapline.live.runner import run_live
    from swapline.live.streamcheck import receive
    from swapline.video.clip import write_clip

    if not _loopback_tcp_works():
        pytest.skip("loopback TCP connections are refused here")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    frames = [stamp_code(f.copy(), i) for i, f in enumerate(clip_frames(media(TALKING), limit=45)[0])]
    clip = tmp_path / "codes.mp4"
    write_clip(iter(frames), clip, fps=30)
    got: dict[str, list] = {}

    def pull() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # until the output listens (after the input's first frame)
            try:
                got["frames"] = receive(f"tcp://127.0.0.1:{port}", seconds=4, timeout=5)
                return
            except OSError:
                time.sleep(0.05)

    engine = LiveEngine(session, None, SwapConfig(), fps=30)
    capture = Capture(parse_input(str(clip)), engine.submit, realtime=True)
    sink = StreamOutput(f"tcp://127.0.0.1:{port}?listen=1", 30)
    reader = threading.Thread(target=pull)
    reader.start()
    try:
        outcome = run_live(engine, capture, [sink], first_timeout=20)
    finally:
        reader.join(30)
    codes = [r.code for r in got.get("frames", []) if r.code is not None]
    assert len(codes) >= 20 and codes == sorted(set(codes)), codes
    assert outcome.reason == "input ended" and outcome.stats.delivered >= len(codes)


# ----------------------------------------------------------------------------- virtual camera


class _FakeCamera:
    """Stands in for ``pyvirtualcam.Camera``: records how it was opened and what it was sent."""

    made: ClassVar[list[_FakeCamera]] = []

    def __init__(self, width: int, height: int, fps: float, *, fmt: object = None, device: str | None = None,
                 **kw: object) -> None:
        self.width, self.height, self.fps, self.fmt, self.device = width, height, fps, fmt, device
        self.frames: list[np.ndarray] = []
        self.closed = False
        _FakeCamera.made.append(self)

    def send(self, frame: np.ndarray) -> None:
        assert frame.shape == (self.height, self.width, 3) and frame.dtype == np.uint8
        assert frame.flags["C_CONTIGUOUS"]
        self.frames.append(frame.copy())

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_camera(monkeypatch: pytest.MonkeyPatch) -> type[_FakeCamera]:
    import pyvirtualcam

    from swapline.live import outputs

    _FakeCamera.made = []
    monkeypatch.setattr(pyvirtualcam, "Camera", _FakeCamera)
    monkeypatch.setattr(outputs, "check_virtual_cam", lambda: None)
    return _FakeCamera


def test_virtual_camera_gets_rgb_frames_of_the_input_size(fake_camera: type[_FakeCamera]) -> None:
    import pyvirtualcam

    from swapline.live.outputs import VirtualCamOutput

    out = VirtualCamOutput(fps=25)
    out.open(320, 240)
    image = np.zeros((240, 320, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 20, 30  # B, G, R
    out.write(LiveFrame(image=image, index=0, captured=time.monotonic()))
    out.close()
    (cam,) = fake_camera.made
    assert (cam.width, cam.height, cam.fps, cam.fmt) == (320, 240, 25, pyvirtualcam.PixelFormat.RGB)
    assert len(cam.frames) == 1 and tuple(cam.frames[0][0, 0]) == (30, 20, 10) and cam.closed


def test_live_command_to_a_virtual_camera(fake_camera: type[_FakeCamera], model_home: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["live", "-s", str(media("src_biden.jpg")), "--input", str(media(TALKING)), "--realtime",
                     "--output", "virtual-cam", "--fps", "30", "--duration", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    (cam,) = fake_camera.made
    assert (cam.width, cam.height, cam.fps) == (480, 480, 30) and cam.closed
    assert len(cam.frames) >= 30  # about 2 s of frames
    assert "frames captured" in captured.out and "virtual camera" in captured.err


def test_virtual_camera_without_a_device_is_one_clear_line(model_home: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    if Path("/sys/module/v4l2loopback").exists():
        pytest.skip("v4l2loopback is loaded here")
    code = cli.main(["live", "--input", str(media(TALKING)), "--output", "virtual-cam"])
    err = capsys.readouterr().err
    assert code == 2 and "v4l2loopback" in err and "modprobe" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # and pyvirtualcam's own refusal becomes the same kind of error
    from swapline.live.outputs import VirtualCamOutput

    with pytest.raises(ConfigError, match="v4l2loopback"):
        VirtualCamOutput().open(320, 240)


# ------------------------------------------------------------------------------- command line


def test_live_command_records_a_file_input(model_home: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    rec = tmp_path / "rec.mp4"
    code = cli.main(["live", "-s", str(media("src_biden.jpg")), "--input", str(media(TALKING)), "--realtime",
                     "--output", "none", "--record", str(rec), "--duration", "1.5"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    line = captured.out.strip().splitlines()[-1]
    assert "frames captured" in line and "dropped" in line and "p95" in line
    with av.open(str(rec)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert 30 <= len(frames) <= 50 and frames[0].shape == (480, 480, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4"]  # no temporary file left


@pytest.mark.parametrize(("args", "words"), [
    (["--input", "/dev/video97", "--output", "none"], "no camera at /dev/video97"),
    (["--input", "missing.mp4", "--output", "none"], "input not found"),
    (["--input", "{clip}", "--output", "rtmp://127.0.0.1:1935/live/x?listen=1"], "tcp://127.0.0.1:PORT?listen=1"),
    (["--input", "{clip}", "--output", "out.mp4"], "--record"),
    (["--input", "{clip}", "--output", "none", "--duration", "0"], "--duration"),
    (["--input", "{clip}", "--output", "none", "--input-option", "novalue"], "KEY=VALUE"),
])
def test_live_command_errors_are_one_line(args: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["live", *(a.replace("{clip}", str(media(TALKING))) for a in args)]
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2 and words in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_camera_input_errors() -> None:
    from swapline.live import inputs

    with pytest.raises(InputError, match="no camera at /dev/video98"):
        inputs.parse_input("/dev/video98")
    original = inputs.v4l2_format
    try:
        inputs.v4l2_format = lambda: None  # an FFmpeg build without v4l2
        with pytest.raises(InputError, match="has no v4l2 input"):
            inputs.parse_input("/dev/video0")
    finally:
        inputs.v4l2_format = original


def test_interrupting_live_keeps_the_recording_and_exits_130(model_home: Path, tmp_path: Path) -> None:
    rec = tmp_path / "rec.mp4"
    env = {**os.environ, "SWAPLINE_HOME": str(model_home)}
    env.pop("SWAPLINE_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-m", "swapline", "live", "-s", str(media("src_biden.jpg")),
                             "--input", str(media(TALKING)), "--realtime", "--loop", "--output", "none",
                             "--record", str(rec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)
    assert proc.stderr is not None
    deadline = time.monotonic() + 90
    line = ""
    while time.monotonic() < deadline and "→" not in line:  # the outputs are open: frames flow
        line = proc.stderr.readline()
        if not line:
            break
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "frames captured" in out and "interrupted" in err and "Traceback" not in err
    with av.open(str(rec)) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 20
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec.mp4"]
