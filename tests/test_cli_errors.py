"""`swapline swap` on bad input: one clear line on stderr, a non-zero exit code, never a traceback.

Covers the issue "every bad input gives one clear line and a non-zero exit": missing or unreadable
files, non-images, no face in the source (an error) or in the target (copied through with a
warning), output in a missing folder, existing output without --force, unsupported extensions,
bad option values; and the promises around it: inputs are never modified, the output is written
to a temporary name and renamed (no ``.*.part`` left behind, nothing under the final name after an
interrupted write).

Most cases call :func:`swapline.cli.main` in-process; two run ``python -m swapline`` for real to
prove the exit codes and the absence of a traceback end to end. Models come from one
session-scoped ``SWAPLINE_HOME`` prepared once.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from swapline import cli
from swapline.config import RuntimeConfig
from swapline.models.store import ModelStore
from swapline.pipeline import image as image_mod

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"
OBAMA = MEDIA / "src_obama.jpg"
BIDEN = MEDIA / "src_biden.jpg"

pytestmark = pytest.mark.skipif(
    not (OBAMA.is_file() and BIDEN.is_file()),
    reason=f"real test photos not found: {OBAMA} and {BIDEN} (the shared/media folder beside the repo)",
)

OPTION_GROUPS = ("face selection", "built-in swapper", "masks", "colour and blending", "models and execution")


# --------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def swapline_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model cache for the whole session (the first preparation fetches and converts)."""
    home = tmp_path_factory.mktemp("swapline-home")
    ModelStore(RuntimeConfig(home=home), progress=False).prepare()
    return home


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, swapline_home: Path) -> None:
    monkeypatch.setenv("SWAPLINE_HOME", str(swapline_home))
    monkeypatch.delenv("SWAPLINE_DEBUG", raising=False)


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty folder that only outputs go into (so 'nothing was created' is 'it stays empty')."""
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.fixture
def grey(tmp_path: Path) -> Path:
    """A flat grey PNG: a valid image with no face."""
    p = tmp_path / "in" / "grey.png"
    p.parent.mkdir(exist_ok=True)
    assert cv2.imwrite(str(p), np.full((240, 320, 3), 128, np.uint8))
    return p


# ---------------------------------------------------------------------------------------- helpers


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line(err: str, prefix: str, *words: str) -> str:
    """``err`` is exactly one line starting with ``prefix`` and holding every word (any case)."""
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith(prefix), line
    for w in words:
        assert w.lower() in line.lower(), f"{w!r} not in {line!r}"
    return line


def error_line(err: str, *words: str) -> str:
    return one_line(err, "swapline: error: ", *words)


def part_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.part"))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def swap_args(source: Path, target: Path, output: Path, *extra: object) -> list[object]:
    return ["swap", "-s", source, "-t", target, "-o", output, *extra]


# -------------------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("role", ["source", "target"])
def test_missing_input(capsys, tmp_path, out_dir, role):
    missing = tmp_path / "nope.jpg"
    src, tgt = (missing, BIDEN) if role == "source" else (OBAMA, missing)
    code, _, err = run(capsys, *swap_args(src, tgt, out_dir / "r.jpg"))
    error_line(err, role, "not found", "nope.jpg")
    assert code == 2
    assert list(out_dir.iterdir()) == []


def test_directory_as_target(capsys, tmp_path, out_dir):
    folder = tmp_path / "photos.jpg"
    folder.mkdir()
    code, _, err = run(capsys, *swap_args(OBAMA, folder, out_dir / "r.jpg"))
    error_line(err, "target", "folder", "photos.jpg")
    assert code == 2
    assert list(out_dir.iterdir()) == []


def test_broken_symlink_source(capsys, tmp_path, out_dir):
    link = tmp_path / "dangling.jpg"
    link.symlink_to(tmp_path / "gone.jpg")
    code, _, err = run(capsys, *swap_args(link, BIDEN, out_dir / "r.jpg"))
    error_line(err, "source", "not found", "dangling.jpg")
    assert code == 2
    assert list(out_dir.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="running as root: root reads a chmod 000 file anyway, so it cannot be made "
                           "unreadable (the folder and broken-symlink variants cover the other cases)")
def test_unreadable_source(capsys, tmp_path, out_dir):
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(OBAMA.read_bytes())
    locked.chmod(0)
    try:
        code, _, err = run(capsys, *swap_args(locked, BIDEN, out_dir / "r.jpg"))
    finally:
        locked.chmod(0o644)
    error_line(err, "cannot read", "locked.jpg")
    assert code == 2
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("role", ["source", "target"])
@pytest.mark.parametrize("content", [b"hello, I am a text file\n", b""], ids=["text", "empty"])
def test_not_an_image(capsys, tmp_path, out_dir, role, content):
    fake = tmp_path / "fake.jpg"
    fake.write_bytes(content)
    src, tgt = (fake, BIDEN) if role == "source" else (OBAMA, fake)
    code, _, err = run(capsys, *swap_args(src, tgt, out_dir / "r.jpg"))
    error_line(err, role, "not an image", "fake.jpg")
    assert code == 2
    assert fake.read_bytes() == content
    assert list(out_dir.iterdir()) == []


# ----------------------------------------------------------------------------------------- no face


def test_no_face_in_source(capsys, grey, out_dir):
    code, _, err = run(capsys, *swap_args(grey, BIDEN, out_dir / "r.jpg"))
    error_line(err, "no face", "source", "grey.png")
    assert code == 4
    assert list(out_dir.iterdir()) == []


def test_no_face_in_one_of_several_sources_names_it(capsys, grey, out_dir):
    code, _, err = run(capsys, "swap", "-s", OBAMA, grey, "-t", BIDEN, "-o", out_dir / "r.jpg")
    error_line(err, "no face", "source", "grey.png")
    assert code == 4
    assert list(out_dir.iterdir()) == []


def test_no_face_in_target_copies_it_through(capsys, grey, out_dir):
    out = out_dir / "r.png"
    code, _, err = run(capsys, *swap_args(OBAMA, grey, out))
    one_line(err, "swapline: warning: ", "no face", "target", "unchanged")
    assert code == 0
    assert out.read_bytes() == grey.read_bytes()  # same extension: the very bytes
    assert sorted(out_dir.iterdir()) == [out]


def test_no_face_in_target_other_extension_is_reencoded(capsys, grey, out_dir):
    out = out_dir / "r.jpg"
    code, _, err = run(capsys, *swap_args(OBAMA, grey, out))
    one_line(err, "swapline: warning: ", "no face", "target")
    assert code == 0
    written = cv2.imread(str(out))
    assert written is not None and written.shape == (240, 320, 3)
    assert np.abs(written.astype(int) - 128).max() <= 2
    assert sorted(out_dir.iterdir()) == [out]


# ------------------------------------------------------------------------------------------ output


def test_output_in_missing_folder(capsys, out_dir):
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, out_dir / "no" / "such" / "r.jpg"))
    error_line(err, "folder does not exist")
    assert code == 3
    assert list(out_dir.iterdir()) == []


def test_existing_output_refused_without_force(capsys, out_dir):
    out = out_dir / "r.jpg"
    out.write_bytes(b"precious")
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, out))
    error_line(err, "exists", "--force", "r.jpg")
    assert code == 3
    assert out.read_bytes() == b"precious"
    assert sorted(out_dir.iterdir()) == [out]


def test_force_overwrites(capsys, out_dir):
    out = out_dir / "r.jpg"
    out.write_bytes(b"old")
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, out, "--force"))
    assert code == 0, err
    assert "Traceback" not in err
    result = cv2.imread(str(out))
    assert result is not None and result.shape == cv2.imread(str(BIDEN)).shape
    assert sorted(out_dir.iterdir()) == [out]


@pytest.mark.parametrize("name", ["r.gif", "r", "r.txt"])
def test_unsupported_output_extension(capsys, out_dir, name):
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, out_dir / name))
    line = error_line(err, "unsupported output extension", ".png")
    assert (Path(name).suffix or "(none)") in line
    assert code == 3
    assert list(out_dir.iterdir()) == []


def test_output_is_a_folder(capsys, out_dir):
    folder = out_dir / "r.jpg"
    folder.mkdir()
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, folder, "--force"))
    error_line(err, "folder", "r.jpg")
    assert code == 3
    assert folder.is_dir() and list(folder.iterdir()) == []


@pytest.mark.parametrize("which", ["source", "target", "target-spelled-differently"])
def test_output_equal_to_an_input_refused_even_with_force(capsys, tmp_path, which):
    src, tgt = tmp_path / "a.jpg", tmp_path / "b.jpg"
    src.write_bytes(OBAMA.read_bytes())
    tgt.write_bytes(BIDEN.read_bytes())
    before = {p: sha256(p) for p in (src, tgt)}
    out = {"source": src, "target": tgt,
           "target-spelled-differently": tmp_path / "." / ".." / tmp_path.name / "b.jpg"}[which]
    code, _, err = run(capsys, *swap_args(src, tgt, out, "--force"))
    error_line(err, "overwrite an input")
    assert code == 3
    assert {p: sha256(p) for p in (src, tgt)} == before
    assert part_files(tmp_path) == []


# ------------------------------------------------------------------------ success: the promises kept


def test_success_leaves_inputs_unchanged_and_no_temporary_files(capsys, tmp_path, out_dir):
    src, tgt = tmp_path / "a.jpg", tmp_path / "b.jpg"
    src.write_bytes(OBAMA.read_bytes())
    tgt.write_bytes(BIDEN.read_bytes())
    before = {p: (sha256(p), p.stat().st_mtime_ns) for p in (src, tgt, OBAMA, BIDEN)}
    out = out_dir / "r.png"
    code, _, err = run(capsys, *swap_args(src, tgt, out))
    assert code == 0, err
    one_line(err, "swapped 1 of 1 face(s)", "r.png")
    assert {p: (sha256(p), p.stat().st_mtime_ns) for p in (src, tgt, OBAMA, BIDEN)} == before
    assert sorted(out_dir.iterdir()) == [out]
    assert part_files(out_dir) == []
    assert cv2.imread(str(out)) is not None
    # written through a private temporary file, but it ends up with an ordinary file's mode
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


def test_quiet_success_prints_nothing(capsys, out_dir):
    code, out_text, err = run(capsys, *swap_args(OBAMA, BIDEN, out_dir / "r.webp", "-q"))
    assert code == 0
    assert (out_text, err) == ("", "")
    assert (out_dir / "r.webp").is_file()


@pytest.mark.parametrize("existing", [False, True], ids=["new", "force-over-existing"])
def test_interrupted_write_leaves_nothing_under_the_final_name(capsys, monkeypatch, out_dir, existing):
    out = out_dir / "r.jpg"
    if existing:
        out.write_bytes(b"old")

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(image_mod.os, "replace", interrupted)
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, out, "--force"))
    monkeypatch.undo()
    one_line(err, "swapline: interrupted", "no output")
    assert code == cli.EXIT_INTERRUPTED == 130
    assert part_files(out_dir) == []
    if existing:
        assert out.read_bytes() == b"old"
    else:
        assert list(out_dir.iterdir()) == []


def test_failed_write_is_one_line_and_leaves_no_temporary_file(capsys, monkeypatch, out_dir):
    def full_disk(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_mod.os, "replace", full_disk)
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, out_dir / "r.jpg"))
    monkeypatch.undo()
    error_line(err, "cannot write", "no space left")
    assert code == 3
    assert list(out_dir.iterdir()) == []


def test_unexpected_bug_is_still_one_line(capsys, monkeypatch, out_dir):
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("kaboom")

    monkeypatch.setattr("swapline.jobs.runner.read_image", boom)
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, out_dir / "r.jpg"))
    one_line(err, "swapline: internal error: ", "RuntimeError", "kaboom", "SWAPLINE_DEBUG=1")
    assert code == cli.EXIT_INTERNAL
    assert list(out_dir.iterdir()) == []


# ------------------------------------------------------------------------------- options and usage


BAD_OPTIONS = [
    (["--face-shape-weight", "3"], ["face_shape_weight", "between 0 and 1"]),
    (["--face-shape-weight", "abc"], ["--face-shape-weight", "invalid float"]),
    (["--face-selector-mode", "foo"], ["--face-selector-mode", "invalid choice", "foo"]),
    (["--face-detector-score", "-0.5"], ["face_detector_score"]),
    (["--face-mask-padding", "0.1", "0.2", "0.3"], ["--face-mask-padding", "1, 2 or 4"]),
    (["--face-mask-types", "circle"], ["--face-mask-types", "invalid choice"]),
    (["--swap-resolution", "5"], ["swap_resolution"]),
    (["--output-image-quality", "0"], ["--output-image-quality", "between 1 and 100"]),
    (["--execution-thread-count", "-2"], ["--execution-thread-count"]),
    (["--execution-providers", "abacus"], ["--execution-providers", "invalid choice"]),
    (["--no-such-option"], ["unrecognized arguments", "--no-such-option"]),
]


@pytest.mark.parametrize(("extra", "words"), BAD_OPTIONS, ids=[" ".join(e) for e, _ in BAD_OPTIONS])
def test_bad_option_value(capsys, out_dir, extra, words):
    code, _, err = run(capsys, *swap_args(OBAMA, BIDEN, out_dir / "r.jpg"), *extra)
    error_line(err, *words)
    assert code == 2
    assert list(out_dir.iterdir()) == []


def test_missing_required_arguments(capsys):
    code, _, err = run(capsys, "swap", "-s", OBAMA)
    error_line(err, "required", "-t/--target", "-o/--output", "--help")
    assert code == 2


def test_unknown_command(capsys):
    code, _, err = run(capsys, "swapp")
    error_line(err, "invalid choice", "swapp")
    assert code == 2


def test_no_command_prints_help_and_exits_2(capsys):
    code, out_text, err = run(capsys)
    assert code == 2
    assert "Traceback" not in err
    assert out_text.startswith("usage: swapline")
    for command in ("swap", "demo", "models", "doctor"):
        assert command in out_text


def test_swap_help_mentions_every_option_group_and_option(capsys):
    code, out_text, err = run(capsys, "swap", "--help")
    assert code == 0
    assert err == ""
    for group in OPTION_GROUPS:
        assert f"{group}:" in out_text, group
    swap_parser = cli.build_parser()._subparsers._group_actions[0].choices["swap"]  # type: ignore[union-attr]
    for action in swap_parser._actions:
        for flag in action.option_strings:
            assert flag in out_text, flag


# ------------------------------------------------------------------------------ real subprocess runs


def _run_cli(*args: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SWAPLINE_DEBUG"}
    env["SWAPLINE_HOME"] = os.environ["SWAPLINE_HOME"]
    return subprocess.run([sys.executable, "-m", "swapline", *map(str, args)], capture_output=True, check=False,
                          text=True, env=env, timeout=120)


def test_subprocess_bad_inputs_exit_codes_and_no_traceback(tmp_path, out_dir):
    missing = _run_cli(*swap_args(tmp_path / "nope.jpg", BIDEN, out_dir / "r.jpg"))
    usage = _run_cli(*swap_args(OBAMA, BIDEN, out_dir / "r.jpg", "--face-selector-mode", "foo"))
    bad_ext = _run_cli(*swap_args(OBAMA, BIDEN, out_dir / "r.gif"))
    for proc, code, words in [(missing, 2, ["not found"]), (usage, 2, ["invalid choice"]),
                              (bad_ext, 3, ["unsupported output extension"])]:
        assert proc.returncode == code, proc.stderr
        error_line(proc.stderr, *words)
    assert list(out_dir.iterdir()) == []


def test_subprocess_no_face_in_source_then_target(grey, out_dir):
    no_src = _run_cli(*swap_args(grey, BIDEN, out_dir / "a.png"))
    assert no_src.returncode == 4, no_src.stderr
    error_line(no_src.stderr, "no face", "source", "grey.png")
    assert list(out_dir.iterdir()) == []

    no_tgt = _run_cli(*swap_args(OBAMA, grey, out_dir / "b.png"))
    assert no_tgt.returncode == 0, no_tgt.stderr
    one_line(no_tgt.stderr, "swapline: warning: ", "no face", "target")
    assert (out_dir / "b.png").read_bytes() == grey.read_bytes()
    assert sorted(out_dir.iterdir()) == [out_dir / "b.png"]
