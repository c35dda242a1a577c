"""The ``swapline`` entry point: parse, run the command, turn what ends it into one line and an exit code.

Commands: ``swapline swap | demo | benchmark | doctor | models | serve | jobs | batch | live``, one
module each in this package (``register`` adds its parser, ``run`` carries it out).

A thin layer over the job core (:mod:`swapline.jobs`) and :mod:`swapline.api`: it parses options
into the frozen configs, and turns any :class:`~swapline.errors.SwaplineError` into one line on
stderr and a non-zero exit code. Set ``SWAPLINE_DEBUG=1`` to see tracebacks.

Exit codes: 0 done, 2 bad input or option, 3 output problem, 4 no face in the source, 5 model
problem (including a model cache folder that cannot be used), 70 a bug, 130 interrupted (SIGINT,
SIGTERM or SIGHUP, however often they come), 141 the reader of stdout went away (a broken pipe
ends quietly, as with ``swapline doctor | head -1``).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

# Signals that come while Python is still importing swapline (a second or more on a busy machine)
# are only noted here; main() then ends with the one "interrupted" line instead of a traceback.
# Only when this process is the swapline command: importing the module installs nothing.
_EARLY_STOPS: list[int] = []
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


def _launched_as_command() -> bool:
    argv0 = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    return argv0.name == "swapline" or (argv0.name == "__main__.py" and argv0.parent.name == "swapline")


if _launched_as_command():
    try:
        for _sig in _STOP_SIGNALS:
            signal.signal(_sig, lambda signum, frame: _EARLY_STOPS.append(signum))
    except ValueError:  # not the main thread
        pass

from .. import __version__
from ..config import RuntimeConfig
from ..errors import ModelError, OutputError, SwaplineError
from . import batch, benchmark, demo, doctor, jobs, live, models, serve, swap
from .options import runtime_from_args, swapline_home

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 70
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by a closed pipe


class Command(Protocol):
    """A command's module: ``register`` adds its parser and options, ``run`` carries it out."""

    def register(self, subparsers: Any) -> None: ...

    def run(self, args: argparse.Namespace, runtime: RuntimeConfig) -> int: ...


#: every command by its name, in the order ``swapline --help`` lists them
COMMANDS: dict[str, Command] = {
    "swap": swap, "demo": demo, "benchmark": benchmark, "doctor": doctor, "models": models,
    "serve": serve, "jobs": jobs, "batch": batch, "live": live,
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"swapline: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``swapline`` parser with every command's sub-parser."""
    parser = _Parser(
        prog="swapline",
        description="Swap the face of a source photo into target photos and videos. "
                    "Runs on the CPU with models that ship inside its dependencies; uses a GPU "
                    "through ONNX Runtime when one is there.",
        epilog="Start with 'swapline demo'. Every command has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"swapline {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS.values():
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``swapline`` console script; returns the exit code."""
    stops = _StopSignals()
    args: argparse.Namespace | None = None
    debug = os.environ.get("SWAPLINE_DEBUG") == "1"
    try:
        try:
            if _EARLY_STOPS:  # a signal came while Python was still importing swapline
                stops.name = signal.Signals(_EARLY_STOPS[0]).name
                raise KeyboardInterrupt
            parser = build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as exc:  # --help, --version, usage errors: already printed; return, don't exit
                return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
            if args.command is None:
                parser.print_help()
                return 2
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return _dispatch(args)
        finally:
            sys.stdout.flush()  # inside the try: a reader gone before the last line is a broken pipe too
    except BrokenPipeError:
        _quiet_broken_pipe()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return _interrupted(stops)
    except SwaplineError as exc:
        if stops.name is not None and not debug:  # what the stop signal cut short failed after it
            return _interrupted(stops)
        if debug:
            raise
        return _say_error(f"swapline: error: {exc}", exc.exit_code)
    except MemoryError:
        return _say_error("swapline: error: out of memory", EXIT_INTERNAL)
    except OSError as exc:  # a file-system cause swapline can name: still one line, with its code
        if stops.name is not None and not debug:
            return _interrupted(stops)
        known = _known_os_error(exc, args) if args is not None else None
        if known is None:
            if debug:
                raise
            return _say_error(f"swapline: internal error: {type(exc).__name__}: {exc} "
                              "(set SWAPLINE_DEBUG=1 for details)", EXIT_INTERNAL)
        return _say_error(f"swapline: error: {known}", known.exit_code)
    except Exception as exc:  # a bug: still one line, with how to see more
        if stops.name is not None and not debug:
            return _interrupted(stops)
        if debug:
            raise
        return _say_error(f"swapline: internal error: {type(exc).__name__}: {exc} (set SWAPLINE_DEBUG=1 for details)",
                          EXIT_INTERNAL)
    finally:
        stops.restore()


def _interrupted(stops: _StopSignals) -> int:
    """The one line and exit code of a run stopped by a signal (or Ctrl-C)."""
    stops.ignore_more()  # a second Ctrl-C must not cut the clean-up short
    how = f" ({stops.name})" if stops.name not in (None, "SIGINT") else ""
    return _say_error(f"swapline: interrupted{how}; no output was written", EXIT_INTERRUPTED)


def _say_error(line: str, code: int) -> int:
    """Print the one error line; a closed stderr (``2>&1 | head``) is no reason for a traceback."""
    try:
        print(line, file=sys.stderr)
        sys.stderr.flush()
    except (BrokenPipeError, ValueError, OSError):
        _quiet_broken_pipe()
    return code


def _quiet_broken_pipe() -> None:
    """Point stdout and stderr at /dev/null so the interpreter's final flush cannot complain."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(null, stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass
    os.close(null)


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP stop a run the way Ctrl-C does (stages stop, the temporary
    output is removed): the first one raises KeyboardInterrupt in the main thread, later ones are
    only counted, so two Ctrl-C a few milliseconds apart cannot interrupt the clean-up. The
    previous handlers come back when the run ends, unless a signal came: then the process is
    about to exit, the stop signals are ignored, and a late one cannot kill it during its exit."""

    def __init__(self) -> None:
        self.name: str | None = None
        self.count = 0
        self._previous: dict[int, object] = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in _STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count == 1:
            self.name = signal.Signals(signum).name
            self._interrupt(frame)

    def _interrupt(self, frame: FrameType | None) -> None:
        """Raise KeyboardInterrupt in the main thread, unless it is importing a module: an
        interrupt there can leave a native module half made (onnxruntime's then fails to import,
        or the process crashes at exit) or be swallowed by importlib's clean-up (the run would go
        on). Then it is raised a few milliseconds later, once the import is done."""
        if _importing(frame) and hasattr(signal, "setitimer"):
            signal.signal(signal.SIGALRM, lambda signum, later: self._interrupt(later))
            signal.setitimer(signal.ITIMER_REAL, _RETRY_INTERRUPT_S)
            return
        raise KeyboardInterrupt

    def ignore_more(self) -> None:
        if self.count == 0:
            self.count = 1  # an interrupt raised by other means: later signals are counted too

    def restore(self) -> None:
        if hasattr(signal, "setitimer"):
            signal.setitimer(signal.ITIMER_REAL, 0)  # no interrupt still waiting for an import
        if self.name is not None:
            # The process is on its way out: ignore further stop signals at the C level, since
            # interpreter finalization resets Python-level handlers to the default (death by signal).
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
            # A KeyboardInterrupt that ended code run from a string (dataclasses and namedtuples
            # build methods with exec) leaves CPython's "unhandled KeyboardInterrupt" flag set even
            # though it was caught, and ``python -m swapline`` would then kill itself with SIGINT
            # instead of exiting 130. Every string evaluation resets that flag when it starts.
            eval("None")  # noqa: S307 - a constant
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]


_RETRY_INTERRUPT_S = 0.01


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` or one of its callers is importing: a module's top-level code (other
    than ``__main__``'s) or importlib's own."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename.startswith("<frozen importlib") or (
                code.co_name == "<module>" and frame.f_globals.get("__name__") != "__main__"):
            return True
        frame = frame.f_back
    return False


def _known_os_error(exc: OSError, args: argparse.Namespace) -> SwaplineError | None:
    """An OSError about the output's folder (3) or the model cache (5), as swapline's error."""
    name = exc.filename if isinstance(exc.filename, (str, bytes, os.PathLike)) else None
    if name is None:
        return None
    where = Path(os.fsdecode(name)).absolute()
    reason = exc.strerror or str(exc)
    output = getattr(args, "output", None) or getattr(args, "output_dir", None)
    if output is not None:
        folder = Path(output).absolute() if getattr(args, "output_dir", None) is not None else Path(output).absolute().parent
        if where == folder or folder in where.parents:
            return OutputError(f"cannot write in {folder}: {reason}")
    home = swapline_home()
    if where == home or home in where.parents:
        return ModelError(f"model cache folder {home} (SWAPLINE_HOME) cannot be used: {reason}: {where}")
    return None


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    print(f"swapline: warning: {message}", file=sys.stderr)


def _dispatch(args: argparse.Namespace) -> int:
    """Run the chosen command with the runtime its common options describe."""
    return COMMANDS[args.command].run(args, runtime_from_args(args))
