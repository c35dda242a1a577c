"""Every model swapline knows, and how a name becomes a file on disk.

The default models (detector, mesh, recognizer), the neural swappers and recognizers
(:mod:`.neural_catalog`) and the enhancers and mask models (:mod:`.enhance_catalog`) are merged
into one catalogue for the :class:`~swapline.models.store.ModelStore`. Files with a published
SHA-256 are fetched and verified by the store; the others (:func:`loose_models`) can only come
from a file the user already has in ``--model-dir`` (used with a warning that it could not be
verified). :func:`catalogue_status` lists all of them, and the weight-free built-in swapper, with
their state (``swapline models list``, ``swapline doctor``).

A user's own file stands in for any neural model once :func:`trust_model` has checked its graph
against the model's interface (:mod:`.interface`) and the store has recorded its sha256
(``swapline models trust PATH --as NAME``); :func:`untrust_model` forgets it. Runs then take it
(from ``--model-dir``, or from where it was trusted) and say so once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from . import enhance_catalog, neural_catalog
from .catalog import CATALOG, ModelSpec, check_file_names
from .interface import check_interface
from .hashing import sha256_file
from .records import Entry
from .status import BUILT_IN, NOT_AT_HAND, TRUSTED, UNVERIFIED, ModelStatus
from .store import ModelStore
from .trust import files_in

#: the weight-free mesh swapper, listed as a row of the catalogue (it has no file)
BUILTIN_SWAPPER = ModelStatus(
    name="builtin", role="swapper", state=BUILT_IN, size=0, licence="Apache-2.0 (swapline; mesh from MediaPipe)",
    where="swapline.swap.mesh: source texture on the target's 468-point mesh, no weights", default=True,
    source="none", downloadable=False, verified=True)


@dataclass(frozen=True)
class LooseModel:
    """A catalogued model with no published SHA-256: usable only from the user's own copy in
    ``--model-dir`` under ``file_name``, never downloaded. ``url`` is where it is published (for
    the user); ``size`` in bytes, 0 when not published (approximate for enhancers and masks)."""

    name: str
    role: str
    file_name: str
    licence: str
    size: int
    url: str
    aliases: tuple[str, ...] = ()

    @property
    def original_names(self) -> tuple[str, ...]:
        """The names its file may have in ``--model-dir``: ``file_name``, then the aliases."""
        return (self.file_name, *(a for a in self.aliases if a != self.file_name))


def full_catalog() -> dict[str, ModelSpec]:
    """The default catalogue plus every neural, enhancer and mask model with a published hash."""
    merged = dict(CATALOG)
    for name, spec in {**neural_catalog.catalog_entries(), **enhance_catalog.catalog_entries()}.items():
        if name in merged:
            raise ValueError(f"model {name} is catalogued twice")
        merged[name] = spec
    check_file_names(merged)
    return merged


def loose_models() -> dict[str, LooseModel]:
    """Every catalogued model without a published hash, by name."""
    out = {name: LooseModel(name, f.role, f.file_name, f.licence, f.size, f.urls[0] if f.urls else "", f.aliases)
           for name, f in neural_catalog.unverified().items()}
    for table in (enhance_catalog.ENHANCERS, enhance_catalog.MASKERS):
        for e in table.values():
            if e.model is None:
                role = "enhancer" if table is enhance_catalog.ENHANCERS else "masker"
                out[e.name] = LooseModel(e.name, role, e.file_name, e.licence, round(e.approx_mb * 1e6), e.url,
                                         e.aliases)
    return out


def unverified_files() -> dict[str, str]:
    """Models without a published hash: name → the file name to put in ``--model-dir``."""
    return {name: m.file_name for name, m in loose_models().items()}


def catalogue_status(store: ModelStore) -> list[ModelStatus]:
    """One row per model swapline knows, without fetching or changing anything: the store's
    catalogue (default models first, as the store lists them), the built-in swapper, then every
    model with no published hash (at hand when ``--model-dir`` has its file)."""
    rows = store.status()
    built_in = sum(1 for r in rows if r.name in CATALOG)  # the store lists its catalogue in order
    rows.insert(built_in, BUILTIN_SWAPPER)
    for m in loose_models().values():
        if m.name in store.catalog:
            continue
        mine = _loose_candidates(store, m)
        trusted = store.trusted_file(m.name, mine, where_trusted=not mine, quiet=True)
        if trusted is not None:
            state, where, size = TRUSTED, str(trusted[0]), trusted[0].stat().st_size
        elif mine:
            state, where, size = UNVERIFIED, str(mine[0]), mine[0].stat().st_size
        else:
            state, where, size = NOT_AT_HAND, f"put {m.file_name} in --model-dir (from {m.url})", m.size
        rows.append(ModelStatus(m.name, m.role, state, size, m.licence, where, False, source="model-dir",
                                downloadable=False, verified=False))
    return rows


def _loose_candidates(store: ModelStore, model: LooseModel) -> list[Path]:
    """The files in ``--model-dir`` under any of ``model``'s names."""
    return files_in(store.model_dir, model.original_names)


def model_file(store: ModelStore, name: str) -> Path:
    """The file for model ``name``: verified through the store when it is catalogued (or the
    user's trusted copy), else a copy the user trusts (said once), else the user's own copy in
    ``--model-dir`` (with a warning).

    Raises:
        ModelError: unknown name, or an unverifiable model with no file at hand.
    """
    if name in store.catalog:
        return store.path(name)
    loose = loose_models()
    if name not in loose:
        raise ModelError(f"unknown model {name!r}")
    model = loose[name]
    mine = _loose_candidates(store, model)
    trusted = store.trusted_file(name, mine, where_trusted=not mine)  # --model-dir first, as given
    if trusted is not None:
        return trusted[0]
    if mine:
        warnings.warn(f"model {name}: no published SHA-256 to check {mine[0]} against; using it as you "
                      f"gave it (swapline models trust {mine[0]} --as {name} checks its interface once)",
                      RuntimeWarning, stacklevel=2)
        return mine[0]
    raise ModelError(f"model {name} has no published SHA-256, so swapline will not download it: put "
                     f"{model.file_name} in a folder and pass it with --model-dir")


def trust_model(store: ModelStore, path: Path, name: str) -> tuple[Entry | None, str]:
    """Trust the file ``path`` as model ``name`` (``swapline models trust PATH --as NAME``).

    The file's graph is checked against the model's interface first; a file whose sha256 is
    the published one needs no trust (nothing is recorded). Returns the record (None when
    nothing was recorded) and a line for the user.

    Raises:
        ModelError: unknown model, a missing file, or a file that does not fit (the mismatch
            named, in one line).
    """
    path = Path(path).expanduser().absolute()
    if name not in store.catalog and name not in loose_models():
        known = ", ".join(sorted(set(store.catalog) | set(loose_models())))
        raise ModelError(f"unknown model {name!r}; known models: {known}")
    if not path.is_file():
        raise ModelError(f"cannot trust {path}: no such file")
    check_interface(path, name)
    digest = sha256_file(path)
    spec = store.catalog.get(name)
    if spec is not None and digest == spec.sha256:
        return None, f"{path} is the published {name} (sha256 {spec.sha256[:12]}…): verified, nothing to trust"
    entry = store.trust(name, path, digest)
    return entry, (f"trusted {path} as {name} (sha256 {entry.sha256[:12]}…); runs that use it say so; "
                   f"swapline models untrust {name} forgets it")


def untrust_model(store: ModelStore, name: str) -> str:
    """Forget the user's trust of model ``name``; a line for the user.

    Raises:
        ModelError: ``name`` is not trusted.
    """
    if not store.untrust(name):
        raise ModelError(f"no file is trusted as model {name!r} (swapline models list shows the trusted ones)")
    return f"forgot the file you trusted as {name}; it is refused again unless it is the published file"
