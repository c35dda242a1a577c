"""Every command's ``--help`` works: the top level, each command and each sub-command (found by
walking the parser, not from a list kept by hand) exits 0 with a usage line that names it and
nothing on stderr, in-process through :func:`swapline.cli.main` and once as a real
``python -m swapline --help``."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from swapline.cli import build_parser, main


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """``()`` for the top level, then the words of every command and sub-command, depth first."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _command_paths(sub, (*path, name))


COMMAND_PATHS = list(_command_paths(build_parser()))


def _assert_usage(out: str, path: tuple[str, ...]) -> None:
    first = out.splitlines()[0] if out else ""
    usage = " ".join(("usage: swapline", *path))
    assert first == usage or first.startswith(usage + " "), first


def test_the_walk_finds_every_command_and_the_sub_commands() -> None:
    commands = {p[0] for p in COMMAND_PATHS if len(p) == 1}
    assert commands == {"swap", "demo", "benchmark", "doctor", "models", "serve", "jobs", "batch", "live"}
    assert ("models", "list") in COMMAND_PATHS and ("jobs", "submit") in COMMAND_PATHS


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "swapline")
def test_help_in_process(path: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*path, "--help"])
    out, err = capsys.readouterr()
    assert code == 0
    _assert_usage(out, path)
    assert err == ""


def test_help_of_python_m_swapline(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SWAPLINE_DEBUG"}
    proc = subprocess.run([sys.executable, "-m", "swapline", "--help"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    _assert_usage(proc.stdout, ())
    assert proc.stderr == ""
