"""Errors swapline raises on purpose.

Library code raises these; only the CLI turns them into a one-line message and an exit code.
Nothing in the library calls ``sys.exit``.
"""

from __future__ import annotations


class SwaplineError(Exception):
    """Base class: a problem the user can act on. ``str(err)`` is a complete one-line message."""

    exit_code: int = 1


class InputError(SwaplineError):
    """A missing, unreadable or unsupported input file."""

    exit_code = 2


class OutputError(SwaplineError):
    """The output cannot be written where asked (missing folder, exists without --force, ...)."""

    exit_code = 3


class NoFaceError(SwaplineError):
    """No usable face where one is required (for example in the source image)."""

    exit_code = 4


class ModelError(SwaplineError):
    """A model file cannot be found, fetched, verified or converted."""

    exit_code = 5


class ConfigError(SwaplineError):
    """An option value that makes no sense."""

    exit_code = 2


class JobCancelled(SwaplineError):
    """The job was cancelled (by its front end's cancel handle); nothing was left under the
    output's name."""

    exit_code = 130
