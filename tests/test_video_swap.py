"""End-to-end video swaps on the shared clips: timing and audio kept, identity moves, faceless
frames untouched, several faces followed, interrupts leave nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from swapline.config import SwapConfig, VideoConfig
from swapline.face.recognize import cosine
from swapline.video.clip import write_clip
from swapline.video.reader import probe

from .conftest import media, read


def _frames(path: Path, indices: set[int] | None = None) -> dict[int, np.ndarray]:
    out = {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if indices is None or i in indices:
                out[i] = f.to_ndarray(format="bgr24")
    return out


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


@pytest.fixture(scope="module")
def biden(session):  # noqa: ANN001, ANN201
    return session.load_source(read("src_biden.jpg"))


def test_talking_clip_keeps_timing_and_audio_and_takes_the_identity(session, biden, tmp_path: Path) -> None:  # noqa: ANN001
    clip = media("vid_lp_d18_talking_480.mp4")
    out = tmp_path / "out.mp4"
    report = session.swap_video(biden, clip, out)
    a, b = probe(clip), probe(out)
    assert b.frame_count == a.frame_count == report.frames
    assert b.fps == a.fps and abs(b.duration - a.duration) <= float(1 / a.fps) + 1e-6
    assert b.has_audio and _audio_packets(out) == _audio_packets(clip)
    assert report.swapped >= 0.95 * report.frames  # one face, swapped in (nearly) every frame
    # sampled frames carry the source's identity
    picks = {10, 70, 130, 200}
    before, after = _frames(clip, picks), _frames(out, picks)
    margins = []
    for i in sorted(picks):
        f_in = max(session.analyse(before[i]), key=lambda f: f.area)
        f_out = max(session.analyse(after[i]), key=lambda f: f.area)
        margins.append(cosine(f_out.embedding, biden.embedding) - cosine(f_out.embedding, f_in.embedding))
    assert min(margins) > 0.10, margins
    assert not list(tmp_path.glob(".*part*"))


def test_clip_without_audio_and_with_two_people(session, biden, tmp_path: Path) -> None:  # noqa: ANN001
    clip = media("vid_intel_head-pose-face-detection-female-and-male.mp4")
    out = tmp_path / "two.mp4"
    report = session.swap_video(biden, clip, out, SwapConfig(face_selector_mode="many"))
    info = probe(out)
    assert info.frame_count == probe(clip).frame_count and not info.has_audio
    # both people are found and swapped in most frames
    assert report.swapped >= 1.6 * report.frames, (report.swapped, report.frames)


def test_frames_without_a_face_pass_through(session, biden, tmp_path: Path) -> None:  # noqa: ANN001
    faces = list(_frames(media("vid_lp_d18_talking_480.mp4"), set(range(15))).values())
    empty = [np.full_like(faces[0], 90) + np.linspace(0, 60, faces[0].shape[1], dtype=np.uint8)[None, :, None]
             for _ in range(15)]
    clip = tmp_path / "mixed.mp4"
    write_clip(iter(faces + empty), clip, fps=Fraction(25))
    out = tmp_path / "mixed_out.mp4"
    report = session.swap_video(biden, clip, out, video=VideoConfig(quality=12))
    assert report.frames == 30 and 12 <= report.swapped <= 15
    before, after = _frames(clip), _frames(out)
    for i in range(16, 30):  # faceless frames: only the re-encoding differs
        diff = np.abs(after[i].astype(int) - before[i]).mean()
        assert diff < 1.5, (i, diff)
    assert np.abs(after[5].astype(int) - before[5]).mean() > 2.0  # a face frame did change


def test_trim_and_detect_interval(session, biden, tmp_path: Path) -> None:  # noqa: ANN001
    clip = media("vid_lp_d18_talking_480.mp4")
    out = tmp_path / "trim.mp4"
    report = session.swap_video(biden, clip, out, video=VideoConfig(trim_start=30, trim_end=90, detect_interval=10))
    assert report.frames == 60 == probe(out).frame_count
    assert probe(out).has_audio
    assert report.swapped >= 50


def _cli(*args: str, home: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, SWAPLINE_HOME=str(home))
    return subprocess.Popen([sys.executable, "-m", "swapline", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupting_a_run_leaves_no_output(model_home: Path, tmp_path: Path, signum: int) -> None:
    out = tmp_path / "interrupted.mp4"
    proc = _cli("swap", "-s", str(media("src_biden.jpg")), "-t", str(media("vid_lp_s18_scene_720p.mp4")),
                "-o", str(out), home=model_home)
    # wait until the encoder has started writing its temporary file, then interrupt
    deadline = time.time() + 60
    while time.time() < deadline and not list(tmp_path.glob(".*part*")):
        time.sleep(0.1)
    assert list(tmp_path.glob(".*part*")), "the run never started writing"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize("content", [b"", b"not a video at all" * 100, "truncated"])
def test_broken_video_gives_one_line_and_no_output(model_home: Path, tmp_path: Path, content: object) -> None:
    bad = tmp_path / "bad.mp4"
    if content == "truncated":
        data = media("vid_lp_d18_talking_480.mp4").read_bytes()
        bad.write_bytes(data[: len(data) * 2 // 5])
    else:
        bad.write_bytes(content)  # type: ignore[arg-type]
    out = tmp_path / "out.mp4"
    proc = _cli("swap", "-s", str(media("src_biden.jpg")), "-t", str(bad), "-o", str(out), home=model_home)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("swapline: error:") and "Traceback" not in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]


def test_video_target_needs_a_video_output(model_home: Path, tmp_path: Path) -> None:
    from swapline.cli import main

    code = main(["swap", "-s", str(media("src_biden.jpg")), "-t", str(media("vid_lp_d18_talking_480.mp4")),
                 "-o", str(tmp_path / "frame.jpg")])
    assert code == 3 and not list(tmp_path.iterdir())


def test_rotation_survives_a_swap(session, biden, tmp_path: Path) -> None:  # noqa: ANN001
    src = media("vid_intel_head-pose-face-detection-male.mp4")
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(src)) as inp, av.open(str(rotated), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        stream.set_display_matrix(_rotation_matrix(90))
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    assert probe(rotated).rotation in (90, 270)
    out = tmp_path / "rotated_out.mp4"
    session.swap_video(biden, rotated, out, video=VideoConfig(trim_end=20))
    assert probe(out).rotation == probe(rotated).rotation


def _rotation_matrix(degrees: int) -> tuple[int, ...]:
    """A display matrix (9 ints, 16.16 / 2.30 fixed point) for a rotation."""
    c, s = round(np.cos(np.radians(degrees))), round(np.sin(np.radians(degrees)))
    one = 1 << 16
    return (c * one, s * one, 0, -s * one, c * one, 0, 0, 0, 1 << 30)
