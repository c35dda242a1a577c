"""Converted model files as the store sees them: made once from an original by the catalogue's
recipe (:mod:`swapline.models.convert`) and recorded with that original's sha256
(:func:`convert_model`), and used only while their record ties them, by today's recipe, to an
original the store verified or the user trusts (:func:`converted_ok`): anything else is made
again. A conversion whose file does not read back as written is a :class:`ModelError` naming the
file. onnx is imported only when a converted file is checked or made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from pathlib import Path

from ..errors import ModelError
from .catalog import ModelSpec
from .checks import FileChecks
from .records import derived_problem

log = logging.getLogger(__name__)

#: the note of a model whose dynamic-batch conversion had to leave the batch at 1
FIXED_BATCH_NOTE = "batch 1 (fixed in the graph)"


def converted_ok(checks: FileChecks, spec: ModelSpec, converted: Path, known_originals: Collection[str], *,
                 full: bool = False) -> bool:
    """Whether ``converted`` is a conversion, by today's recipe, of an original the store
    verifies (the catalogue's) or the user trusts (``known_originals``: their sha256), and holds
    the bytes its record says (size and mtime of a signed record; else hashed). A record that
    names no original, or one nobody vouches for, is not enough however right its hash (a
    hand-written one)."""
    from .convert import RECIPE_VERSION  # onnx is imported only when a model is checked or converted
    book = checks.manifest_for(converted)
    entry = book.entry(converted)
    if entry is None or not converted.exists():
        return False
    problem = derived_problem(entry, known_originals, recipe_version=RECIPE_VERSION)
    if problem is not None or list(entry.steps) != list(spec.convert):
        log.info("%s %s", converted, problem or "was made by other conversion steps")
        return False
    return book.check(converted, full=full) is None


def model_dir_converted(checks: FileChecks, spec: ModelSpec, known_originals: Collection[str]) -> Path | None:
    """A converted file in ``--model-dir`` whose record ties it to a known original; one
    that cannot be tied is ignored (the store makes its own)."""
    if checks.model_dir is None or not spec.converted_name:
        return None
    candidate = checks.model_dir / spec.converted_name
    if not candidate.is_file():
        return None
    if converted_ok(checks, spec, candidate, known_originals):
        return candidate
    log.info("ignoring %s: its manifest does not tie it to an original of model %s; converting our own",
             candidate, spec.name)
    return None


def convert_model(checks: FileChecks, spec: ModelSpec, original: Path, converted: Path, original_sha: str,
                  say: Callable[[str], None]) -> None:
    """Convert ``original`` (whose sha256 is ``original_sha``: the catalogue's, or the one
    the user trusts) into ``converted`` and record it with that sha256; the written file is
    hashed again and must hold the bytes the conversion produced, else it is deleted and
    this is a :class:`ModelError` naming it (the caller has already thrown away a bad copy
    once). A graph whose batch stays fixed at 1 is recorded so (``fixed_batch``). ``say``
    tells the user, in one line, that the conversion runs."""
    from .convert import RECIPE_VERSION, run_recipe  # onnx only when a file is checked or converted
    say(f"converting model {spec.name} ({', '.join(spec.convert)}) once")
    made = run_recipe(original, converted, spec.convert)
    if made.fixed_batch is not None:
        log.info("model %s: %s; it runs one item at a time", spec.name, FIXED_BATCH_NOTE)
    try:
        written = checks.manifest.record(
            converted, kind="converted", sha256=made.sha256, model=spec.name, original=original.name,
            original_sha256=original_sha, recipe="convert", recipe_version=RECIPE_VERSION,
            steps=spec.convert, fixed_batch=made.fixed_batch,
        )
    except OSError as exc:
        checks.remove_converted(converted)
        raise ModelError(f"cannot record {converted} in the model manifest: {exc}") from exc
    problem = checks.manifest.confirm(converted, written)
    if problem is not None:
        checks.remove_converted(converted)
        raise ModelError(
            f"model file {converted} {problem} right after it was converted: "
            f"check the disk holding {checks.models_dir}"
        )
