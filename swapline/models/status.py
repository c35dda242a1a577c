"""What ``swapline models list`` and ``doctor`` say of each model (:class:`ModelStatus`,
:func:`status_of`), and the one line that says why a model is not available
(:func:`unavailable_message`). Nothing here fetches or changes a file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .catalog import DEFAULT_MODELS, ArchiveSource, ModelSpec, PackageSource, Source, UrlSource, WheelSource
from .checks import FileChecks
from .converted import FIXED_BATCH_NOTE, converted_ok
from .fetch import package_files
from .hashing import short
from .trust import UserFiles

#: states of a :class:`ModelStatus` row, as ``swapline models list`` and ``doctor`` print them
VERIFIED = "verified"              # the runnable file is at hand and checks out
ORIGINAL_ONLY = "original only"    # the verified original is at hand; its conversion has not run yet
NOT_DOWNLOADED = "not downloaded"  # nothing at hand yet; fetched (and checked) on first use
CORRUPT = "corrupt"                # a file is at hand but fails its check; replaced on next use
UNVERIFIED = "at hand, unverified"  # the user's own copy of a model with no published SHA-256
NOT_AT_HAND = "not at hand"        # no published SHA-256 and no copy in --model-dir
BUILT_IN = "built in"              # needs no file at all (the mesh swapper)
TRUSTED = "trusted (yours)"        # a file the user trusts (swapline models trust), not verified


@dataclass(frozen=True)
class ModelStatus:
    """One row of ``swapline models list``.

    ``state`` is one of :data:`VERIFIED`, :data:`ORIGINAL_ONLY`, :data:`NOT_DOWNLOADED`,
    :data:`CORRUPT` for catalogue models, :data:`UNVERIFIED` / :data:`NOT_AT_HAND` for models
    with no published SHA-256, :data:`BUILT_IN` for the weight-free swapper. ``size`` is in bytes:
    the runnable file's when present, else the catalogue's figure (0: not published). ``where``
    is a path or a source. ``source`` says where the file comes from: ``"package"`` (inside an
    installed package), ``"wheel"`` (a PyPI wheel), ``"archive"`` (a source archive on the package
    index), ``"url"``, ``"model-dir"`` (only the user's own copy) or ``"none"`` (no file);
    ``downloadable``: swapline can fetch and check it (a URL, a wheel or an archive with a
    published SHA-256). ``verified``: the catalogue has its SHA-256. ``note``:
    anything else worth a word (:data:`FIXED_BATCH_NOTE`).
    """

    name: str
    role: str
    state: str
    size: int
    licence: str
    where: str
    default: bool
    source: str = "url"
    downloadable: bool = False
    verified: bool = True
    note: str = ""

    @property
    def shown_state(self) -> str:
        """The state as printed: ``state`` and, when there is one, the ``note`` (e.g.
        ``verified, batch 1 (fixed in the graph)``)."""
        return f"{self.state}, {self.note}" if self.note else self.state


def source_kind(sources: tuple[Source, ...]) -> str:
    """``"package"``, ``"wheel"``, ``"archive"`` or ``"url"``: the kind of a model's first source
    (``"none"``)."""
    if not sources:
        return "none"
    first = sources[0]
    kinds = ((PackageSource, "package"), (WheelSource, "wheel"), (ArchiveSource, "archive"))
    return next((kind for cls, kind in kinds if isinstance(first, cls)), "url")


def status_of(spec: ModelSpec, checks: FileChecks, user: UserFiles) -> ModelStatus:
    """``spec``'s row: where its runnable file is and whether it is verified, the user's
    own (trusted), only an original, missing or corrupt (see :class:`ModelStatus`)."""
    trust = user.trusted(spec.name)
    corrupt: Path | None = None
    original: Path | None = None
    mine: Path | None = None
    note = ""
    for path in _original_candidates(spec, checks):
        if not path.is_file():
            continue
        if trust is not None and user.matches(trust, path):
            mine = mine or path
        elif checks.hashes.matches(path, spec.sha256):
            original = original or path
        elif corrupt is None:
            corrupt = path
            if checks.model_dir is not None and path.parent == checks.model_dir:
                note = f"not the published file: swapline models trust {path} --as {spec.name}"
    if mine is None and trust is not None and trust.original:
        where_trusted = Path(trust.original)
        if where_trusted.is_file() and user.matches(trust, where_trusted):
            mine = where_trusted
    known = user.known_originals(spec)
    runnable, from_mine, fixed = _runnable_status(spec, checks, known, original or mine, bool(original))
    if spec.convert and spec.converted_name and runnable is None:
        cached = checks.models_dir / spec.converted_name
        if cached.is_file() and not converted_ok(checks, spec, cached, known) and corrupt is None:
            corrupt = cached
    if corrupt is not None:
        state, where = CORRUPT, str(corrupt)
    elif runnable is not None:
        state, where = (TRUSTED if from_mine else VERIFIED), str(runnable)
        note = FIXED_BATCH_NOTE if fixed else ""
    elif original is not None:
        state, where = ORIGINAL_ONLY, str(original)
    elif mine is not None:
        state, where = TRUSTED, str(mine)
    else:
        state, where = NOT_DOWNLOADED, spec.sources[0].describe() if spec.sources else "no source"
    shown = runnable or original or mine
    size = shown.stat().st_size if shown is not None else spec.size
    return ModelStatus(spec.name, spec.role, state, size, spec.licence, where, spec.name in DEFAULT_MODELS,
                       source=source_kind(spec.sources), downloadable=spec.has_remote_source, note=note)


def _original_candidates(spec: ModelSpec, checks: FileChecks) -> list[Path]:
    """Where ``spec``'s original may be: ``--model-dir`` (its names), the cache, packages."""
    candidates = [checks.model_dir / n for n in spec.original_names] if checks.model_dir is not None else []
    candidates.append(checks.models_dir / spec.file_name)
    candidates.extend(package_files(spec))
    return candidates


def _runnable_status(spec: ModelSpec, checks: FileChecks, known_originals: set[str], original: Path | None,
                     verified: bool) -> tuple[Path | None, bool, bool]:
    """``(runnable file, made from the user's file, batch fixed at 1)`` for a status row:
    the converted file whose record ties it to a known original (``known_originals``: their
    sha256), or the original itself for a model without conversions."""
    if not (spec.convert and spec.converted_name):
        return original, original is not None and not verified, False
    folders = ([checks.model_dir] if checks.model_dir is not None else []) + [checks.models_dir]
    for folder in folders:
        path = folder / spec.converted_name
        if path.is_file() and converted_ok(checks, spec, path, known_originals):
            entry = checks.manifest_for(path).entry(path)
            assert entry is not None  # converted_ok read it
            return path, entry.original_sha256 != spec.sha256, entry.fixed_batch == 1
    return None, False, False


def unavailable_message(spec: ModelSpec, reasons: list[str], *, folder: Path, offline: bool) -> str:
    """Why ``spec`` could not be had (``reasons``: each source's failure) and what the user can
    do: put the file in ``folder`` (``--model-dir``, else the cache), or trust a copy of theirs."""
    put = f"put {spec.file_name} (sha256 {short(spec.sha256)}) in {folder}"
    if any(isinstance(source, UrlSource) for source in spec.sources):  # a neural model: yours will do
        put += f", or use a copy you have: swapline models trust PATH --as {spec.name}"
    if offline:
        return f"model {spec.name} not available offline: {put}"
    why = "; ".join(r.replace("\n", " ") for r in reasons) or "no source"
    return f"model {spec.name} could not be fetched ({why}): {put}"
