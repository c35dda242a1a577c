"""Reliability promises of the command line (issue 9): known causes get their exit codes, a
decompression bomb is refused from its header, native libraries do not add lines, options are
bounded, a file's type comes from its content, alpha survives, progress bars stay out of logs,
and signals (however many, however fast) end cleanly with no temporary file left, while a killed
run's leftovers are swept by the next one.

Every damaged or huge file is built here in ``tmp_path``; ../shared/media is only read. The CLI
runs as a real subprocess wherever stderr, signals or exit codes of the process matter.
"""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from swapline import cli, tempfiles
from swapline.jobs.runner import deep_video_warning
from swapline.media_type import image_header, sniff
from swapline.pipeline import image as image_mod

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
OBAMA = MEDIA / "src_obama.jpg"
BIDEN = MEDIA / "src_biden.jpg"
CLIP = MEDIA / "vid_short_hamilton_clip.mp4"  # 275 frames, 640×360, with audio

pytestmark = pytest.mark.skipif(
    not (OBAMA.is_file() and BIDEN.is_file() and CLIP.is_file()),
    reason=f"test media not found in {MEDIA} (the shared/media folder beside the repo)",
)
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --------------------------------------------------------------------------------------- fixtures


# the model cache, environment and output folder of the CLI error tests (one cache per session)
from .test_cli_errors import _env, out_dir, swapline_home  # noqa: E402,F401


# ---------------------------------------------------------------------------------------- helpers


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _env_for(home: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SWAPLINE_DEBUG"}
    if home is not None:
        env["SWAPLINE_HOME"] = home
    return env


def run_cli(*args: object, home: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "swapline", *map(str, args)], capture_output=True, text=True,
                          check=False, env=_env_for(home), timeout=timeout)


def start_cli(*args: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "swapline", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env_for())


def one_line(err: str, prefix: str, *words: str) -> str:
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert lines[0].startswith(prefix), lines[0]
    for w in words:
        assert w.lower() in lines[0].lower(), f"{w!r} not in {lines[0]!r}"
    return lines[0]


def error_line(err: str, *words: str) -> str:
    return one_line(err, "swapline: error: ", *words)


def png_bytes(width: int, height: int, *, rows: int = 1) -> bytes:
    """A PNG whose header says ``width``×``height`` but which holds only ``rows`` rows (a few kB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = zlib.compress((b"\x00" + b"\x00" * (3 * width)) * rows, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def swap(source: Path, target: Path, output: Path, *extra: object) -> list[object]:
    return ["swap", "-s", source, "-t", target, "-o", output, *extra]


def run_in_process(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str]:
    code = cli.main([str(a) for a in args])
    return code, capsys.readouterr().err


# ----------------------------------------------------------------------- 1. known causes, known codes


def test_doctor_into_a_closed_pipe_ends_quietly() -> None:
    proc = start_cli("doctor")
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read()
    code = proc.wait(timeout=120)
    assert first.startswith("swapline ")
    assert err == "", err
    assert code == cli.EXIT_BROKEN_PIPE == 141


@pytest.mark.parametrize("layout", ["file", "below-a-file"])
def test_swapline_home_that_is_a_file_is_a_model_problem(tmp_path: Path, out_dir: Path, layout: str) -> None:
    blocker = tmp_path / "home-file"
    blocker.write_bytes(b"not a folder")
    home = blocker if layout == "file" else blocker / "cache"
    proc = run_cli(*swap(OBAMA, BIDEN, out_dir / "r.jpg"), home=str(home))
    assert proc.returncode == 5, proc.stderr
    error_line(proc.stderr, "model cache", "SWAPLINE_HOME", "home-file")
    assert list(out_dir.iterdir()) == []
    assert blocker.read_bytes() == b"not a folder"


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders; the in-process tests below cover it")
def test_read_only_swapline_home_is_a_model_problem(tmp_path: Path, out_dir: Path) -> None:
    home = tmp_path / "ro-home"
    home.mkdir()
    home.chmod(0o555)
    try:
        proc = run_cli(*swap(OBAMA, BIDEN, out_dir / "r.jpg"), home=str(home))
    finally:
        home.chmod(0o755)
    assert proc.returncode == 5, proc.stderr
    error_line(proc.stderr, "model cache", "ro-home")


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders; the in-process tests below cover it")
@pytest.mark.parametrize("output", ["r.mp4", "r.jpg"])
def test_output_into_read_only_folder_is_an_output_problem(tmp_path: Path, output: str) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = run_cli(*swap(OBAMA, CLIP if output.endswith(".mp4") else BIDEN, locked / output))
    finally:
        locked.chmod(0o755)
    assert proc.returncode == 3, proc.stderr
    error_line(proc.stderr, "cannot write", "locked")
    assert list(locked.iterdir()) == []


def test_unwritable_output_folder_is_refused_before_any_work(capsys, monkeypatch, out_dir) -> None:
    real_access = os.access
    monkeypatch.setattr(cli.os, "access", lambda p, mode: False if Path(p) == out_dir else real_access(p, mode))
    code, err = run_in_process(capsys, *swap(OBAMA, CLIP, out_dir / "r.mp4"))
    error_line(err, "cannot write in", str(out_dir))
    assert code == 3


@pytest.mark.parametrize(("where", "code"), [("output", 3), ("home", 5)])
def test_permission_errors_from_deep_inside_get_their_exit_code(capsys, monkeypatch, out_dir, swapline_home,
                                                               where, code) -> None:
    target = out_dir / ".r.mp4.123.part.mp4" if where == "output" else swapline_home / "optimized" / "x.onnx"

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied", str(target))

    monkeypatch.setattr("swapline.jobs.runner.Runner._run_video", denied)
    got, err = run_in_process(capsys, *swap(OBAMA, CLIP, out_dir / "r.mp4"))
    error_line(err, "permission denied")
    assert got == code


# -------------------------------------------------------------------------- 2. decompression bombs


@pytest.mark.parametrize("side", [30000, 40000])
def test_png_bomb_is_refused_from_its_header(tmp_path: Path, out_dir: Path, side: int) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(side, side))
    before = sha256(bomb)
    start = time.monotonic()
    proc = run_cli(*swap(OBAMA, bomb, out_dir / "r.png"))
    assert proc.returncode == 2, proc.stderr
    error_line(proc.stderr, f"{side}×{side}", "--max-pixels", "bomb.png")
    assert time.monotonic() - start < 60
    assert sha256(bomb) == before
    assert list(out_dir.iterdir()) == []


def test_bomb_is_refused_before_the_decoder_sees_it(capsys, monkeypatch, tmp_path, out_dir) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(30000, 30000))

    def never(*args: object) -> None:
        raise AssertionError("the decoder was called")

    monkeypatch.setattr(image_mod.cv2, "imdecode", never)
    code, err = run_in_process(capsys, *swap(OBAMA, bomb, out_dir / "r.png"))
    error_line(err, "30000×30000", "refused before decoding")
    assert code == 2


def test_max_pixels_option(capsys, out_dir) -> None:
    code, err = run_in_process(capsys, *swap(OBAMA, BIDEN, out_dir / "r.jpg", "--max-pixels", "1k"))
    error_line(err, "--max-pixels 1000", "src_")
    assert code == 2
    code, err = run_in_process(capsys, *swap(OBAMA, BIDEN, out_dir / "r.jpg", "--max-pixels", "lots"))
    error_line(err, "--max-pixels", "invalid pixel count")
    assert code == 2
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("fmt", [".png", ".jpg", ".bmp", ".webp", ".tif", ".gif"])
def test_header_sizes_match_the_decoder(tmp_path: Path, fmt: str) -> None:
    img = np.zeros((37, 53, 3), np.uint8)
    path = tmp_path / f"x{fmt}"
    if fmt == ".gif":
        from PIL import Image

        Image.fromarray(img).save(path)
    else:
        assert cv2.imwrite(str(path), img)
    header = image_header(path.read_bytes())
    assert header is not None and (header.width, header.height) == (53, 37)


# ------------------------------------------------------------------------ 3. only swapline's line


@pytest.mark.parametrize("cut", [100, 5000])
def test_damaged_png_gives_only_swaplines_line(tmp_path: Path, out_dir: Path, cut: int) -> None:
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes((MEDIA / "src_astronaut_eileen_collins.png").read_bytes()[:cut])
    proc = run_cli(*swap(OBAMA, damaged, out_dir / "r.png"))
    assert proc.returncode == 2, proc.stderr
    error_line(proc.stderr, "not an image", "damaged.png")
    assert "libpng" not in proc.stderr
    assert list(out_dir.iterdir()) == []


# ------------------------------------------------------------------------------- 4. bounded options


@pytest.mark.parametrize(("extra", "words"), [
    (["--execution-thread-count", "100000"], ["--execution-thread-count", "at most", "100000"]),
    (["--model-dir", "/no/such/folder"], ["--model-dir", "does not exist", "/no/such/folder"]),
])
def test_bounded_options(capsys, out_dir, extra, words) -> None:
    code, err = run_in_process(capsys, *swap(OBAMA, BIDEN, out_dir / "r.jpg"), *extra)
    error_line(err, *words)
    assert code == 2
    assert list(out_dir.iterdir()) == []


def test_model_dir_that_is_a_file(capsys, tmp_path, out_dir) -> None:
    f = tmp_path / "models.txt"
    f.write_text("x")
    code, err = run_in_process(capsys, *swap(OBAMA, BIDEN, out_dir / "r.jpg"), "--model-dir", f)
    error_line(err, "--model-dir", "not a folder")
    assert code == 2


def test_thread_count_within_bound_is_accepted() -> None:
    args = cli.build_parser().parse_args(["doctor", "--execution-thread-count", str(4 * cli.usable_cores())])
    assert cli.runtime_from_args(args).intra_op_threads == 4 * cli.usable_cores()


# --------------------------------------------------------------------------------- 5. type by content


def test_sniff_by_magic_bytes_then_extension(tmp_path: Path) -> None:
    as_jpg = tmp_path / "clip.jpg"
    as_jpg.write_bytes(CLIP.read_bytes()[:4096])
    as_mp4 = tmp_path / "photo.mp4"
    as_mp4.write_bytes(BIDEN.read_bytes())
    unknown = tmp_path / "empty.mov"
    unknown.write_bytes(b"")
    assert (sniff(as_jpg), sniff(as_mp4), sniff(unknown), sniff(tmp_path / "x.txt")) == \
        ("video", "image", "video", "unknown")


def test_image_named_as_video_is_swapped_as_an_image(capsys, tmp_path, out_dir) -> None:
    photo = tmp_path / "photo.mp4"
    photo.write_bytes(BIDEN.read_bytes())
    code, err = run_in_process(capsys, *swap(OBAMA, photo, out_dir / "r.mp4"))  # a video output for a photo
    error_line(err, "photo.mp4", "is an image")
    assert code == 3
    assert list(out_dir.iterdir()) == []
    code, err = run_in_process(capsys, *swap(OBAMA, photo, out_dir / "r.jpg"))
    assert code == 0, err
    assert cv2.imread(str(out_dir / "r.jpg")) is not None


def test_video_named_jpg_is_swapped_as_video_without_progress_bar_in_a_log(tmp_path: Path, out_dir: Path) -> None:
    clip = tmp_path / "clip.jpg"
    clip.write_bytes(CLIP.read_bytes())
    before = sha256(clip)
    out = out_dir / "r.mp4"
    proc = run_cli(*swap(OBAMA, clip, out, "--trim-frame-end", "6"))  # stderr is a pipe: --progress auto
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "\r" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("6 frames"), proc.stderr
    assert sha256(clip) == before
    assert sorted(out_dir.iterdir()) == [out]
    assert sniff(out) == "video"


def test_progress_option_choices(capsys, out_dir) -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["swap", "-s", "a", "-t", "b", "-o", "c"]).progress == "auto"
    assert parser.parse_args(["demo", "--progress", "never"]).progress == "never"
    code, err = run_in_process(capsys, *swap(OBAMA, BIDEN, out_dir / "r.jpg", "--progress", "sometimes"))
    error_line(err, "--progress", "invalid choice")
    assert code == 2


def test_progress_mode_decides_the_bars(monkeypatch) -> None:
    import io

    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal
    assert not cli._show_progress("never", quiet=False)
    assert not cli._show_progress("auto", quiet=False)
    assert cli._show_progress("always", quiet=False)
    assert not cli._show_progress("always", quiet=True)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    assert cli._show_progress("auto", quiet=False)


# -------------------------------------------------------------------------------- 6. alpha and depth


def test_alpha_of_a_png_target_is_kept(capsys, tmp_path, out_dir) -> None:
    bgr = cv2.imread(str(BIDEN))
    h, w = bgr.shape[:2]
    alpha = np.tile(np.linspace(40, 255, w).astype(np.uint8), (h, 1))
    target = tmp_path / "biden_alpha.png"
    assert cv2.imwrite(str(target), np.dstack([bgr, alpha]))
    before = sha256(target)
    out = out_dir / "r.png"
    code, err = run_in_process(capsys, *swap(OBAMA, target, out))
    assert code == 0, err
    one_line(err, "swapped 1 of 1")
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.shape == (h, w, 4)
    assert np.array_equal(result[:, :, 3], alpha)
    assert np.abs(result[:, :, :3].astype(int) - bgr).max() > 30  # the face was swapped
    assert sha256(target) == before
    assert sorted(out_dir.iterdir()) == [out]


def test_deep_target_gives_one_warning_line(capsys, tmp_path, out_dir) -> None:
    bgr = cv2.imread(str(BIDEN))
    target = tmp_path / "biden16.png"
    assert cv2.imwrite(str(target), bgr.astype(np.uint16) * 257)
    out = out_dir / "r.png"
    code, err = run_in_process(capsys, *swap(OBAMA, target, out))
    assert code == 0, err
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith("swapline: warning: ") and "16 bits" in lines[0]
    assert lines[1].startswith("swapped 1 of 1")
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint8 and result.shape == bgr.shape


# ------------------------------------------------------------------------------------ 8. signals


def _wait_for_temp(folder: Path, proc: subprocess.Popen[str], timeout: float = 150) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        temps = [p for p in folder.iterdir() if tempfiles.writer_pid(p.name) == proc.pid]
        if temps:
            return temps[0]
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before writing: {proc.returncode} {proc.stderr.read()}")  # type: ignore[union-attr]
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("no temporary output appeared")


@pytest.mark.parametrize("signals", [
    [signal.SIGINT, signal.SIGINT],
    [signal.SIGINT] * 5,
    [signal.SIGHUP],
    [signal.SIGTERM, signal.SIGHUP, signal.SIGINT],
], ids=["int-int", "int-x5", "hup", "term-hup-int"])
def test_signals_stop_cleanly_however_often_they_come(out_dir: Path, signals: list[int]) -> None:
    proc = start_cli(*swap(OBAMA, CLIP, out_dir / "r.mp4"))
    _wait_for_temp(out_dir, proc)
    time.sleep(0.3)  # inside the frame loop
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    one_line(err, "swapline: interrupted", "no output")
    assert list(out_dir.iterdir()) == []


def _wait_until_handled(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Until the process catches SIGHUP (only swapline does), i.e. it is importing swapline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("SigCgt:") and int(line.split()[1], 16) & (1 << (signal.SIGHUP - 1)):
                return
        time.sleep(0.002)
    raise AssertionError("the process never installed its signal handlers")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to see when handlers are installed")
@pytest.mark.parametrize("pause", [0.0, 0.3, 1.0])
def test_signals_while_starting_up_end_with_the_same_line(out_dir: Path, pause: float) -> None:
    proc = start_cli(*swap(OBAMA, CLIP, out_dir / "r.mp4"))
    _wait_until_handled(proc)
    time.sleep(pause)  # importing, loading models
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    one_line(err, "swapline: interrupted", "no output")
    assert list(out_dir.iterdir()) == []


def test_leftovers_of_a_killed_run_are_swept_by_the_next(out_dir: Path) -> None:
    proc = start_cli(*swap(OBAMA, CLIP, out_dir / "r.mp4"))
    left = _wait_for_temp(out_dir, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert left.exists()  # SIGKILL cannot be handled
    live = out_dir / f".other.jpg.{os.getpid()}-abcd1234.part"  # a live writer's file is not touched
    live.write_bytes(b"in progress")
    out = out_dir / "r.jpg"
    second = run_cli(*swap(OBAMA, BIDEN, out))
    assert second.returncode == 0, second.stderr
    assert sorted(out_dir.iterdir()) == sorted([live, out])


def test_sweep_removes_only_temporary_files_of_dead_writers(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    names = [f".r.mp4.{pid}.part.mp4", f".r.jpg.{pid}-0a1b2c3d.part", f".r.mp4.{pid}.part.mp4.copy",
             f".r.png.{os.getpid()}-0a1b2c3d.part", f"r.{pid}.part", ".notes.txt", f".r.jpg.{pid}.partial"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    removed = tempfiles.sweep(tmp_path)
    assert sorted(p.name for p in removed) == sorted(names[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])
    assert tempfiles.sweep(tmp_path / "missing") == []


def test_image_temporary_name_carries_the_pid(tmp_path: Path) -> None:
    fd, path = tempfiles.create_temp(tmp_path / "r.jpg")
    os.close(fd)
    assert tempfiles.writer_pid(path.name) == os.getpid()
    assert path.name.startswith(".r.jpg.") and path.name.endswith(".part")


def test_deep_video_target_gives_a_warning(tmp_path: Path) -> None:
    import av

    clip = tmp_path / "deep.mp4"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p10le"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame.reformat(format="yuv420p10le")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    assert "10-bit" in deep_video_warning(clip)
    assert deep_video_warning(CLIP) == ""  # 8-bit: nothing
    assert deep_video_warning(tmp_path / "missing.mp4") == ""  # unreadable: the job says so, not this


def test_an_interrupt_during_an_import_waits_until_the_import_is_done(tmp_path: Path) -> None:
    """A stop signal while a module runs its top-level code (a native one's half-made state made
    onnxruntime fail to import, or the process crash at exit) is raised once the import is done."""
    (tmp_path / "slow_module_for_signals.py").write_text(
        "import os, signal, time\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(0.05)\n"
        "DONE = True\n")
    sys.path.insert(0, str(tmp_path))
    stops = cli._StopSignals()
    try:
        with pytest.raises(KeyboardInterrupt):
            import slow_module_for_signals  # noqa: F401
            time.sleep(1.0)  # the interrupt comes here, a few ms after the import
            pytest.fail("no interrupt came after the import")
        module = sys.modules.get("slow_module_for_signals")
        assert module is not None and module.DONE  # imported whole
        assert stops.name == "SIGINT"
    finally:
        stops.name = None
        stops.restore()
        sys.path.remove(str(tmp_path))
        sys.modules.pop("slow_module_for_signals", None)
