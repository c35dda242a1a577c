"""Every model swapline knows, and how a name becomes a file on disk.

The default models (detector, mesh, recognizer), the neural swappers and recognizers
(:mod:`.neural_catalog`) and the enhancers and mask models (:mod:`.enhance_catalog`) are merged
into one catalogue for the :class:`~swapline.models.store.ModelStore`. Files with a published
SHA-256 are fetched and verified by the store; the others (:func:`loose_models`) can only come
from a file the user already has in ``--model-dir`` (used with a warning that it could not be
verified). :func:`catalogue_status` lists all of them, and the weight-free built-in swapper, with
their state (``swapline models list``, ``swapline doctor``).

"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from . import enhance_catalog, neural_catalog
from .catalog import CATALOG, ModelSpec
from .store import BUILT_IN, NOT_AT_HAND, UNVERIFIED, ModelStatus, ModelStore

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


def full_catalog() -> dict[str, ModelSpec]:
    """The default catalogue plus every neural, enhancer and mask model with a published hash."""
    merged = dict(CATALOG)
    for name, spec in {**neural_catalog.catalog_entries(), **enhance_catalog.catalog_entries()}.items():
        if name in merged:
            raise ValueError(f"model {name} is catalogued twice")
        merged[name] = spec
    return merged


def loose_models() -> dict[str, LooseModel]:
    """Every catalogued model without a published hash, by name."""
    out = {name: LooseModel(name, f.role, f.file_name, f.licence, f.size, f.urls[0] if f.urls else "")
           for name, f in neural_catalog.unverified().items()}
    for table in (enhance_catalog.ENHANCERS, enhance_catalog.MASKERS):
        for e in table.values():
            if e.model is None:
                role = "enhancer" if table is enhance_catalog.ENHANCERS else "masker"
                out[e.name] = LooseModel(e.name, role, e.file_name, e.licence, round(e.approx_mb * 1e6), e.url)
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
        mine = store.model_dir / m.file_name if store.model_dir is not None else None
        if mine is not None and mine.is_file():
            state, where, size = UNVERIFIED, str(mine), mine.stat().st_size
        else:
            state, where, size = NOT_AT_HAND, f"put {m.file_name} in --model-dir (from {m.url})", m.size
        rows.append(ModelStatus(m.name, m.role, state, size, m.licence, where, False, source="model-dir",
                                downloadable=False, verified=False))
    return rows


def model_file(store: ModelStore, name: str) -> Path:
    """The file for model ``name``: verified through the store when it is catalogued, else the
    user's own copy in ``--model-dir`` (with a warning).

    Raises:
        ModelError: unknown name, or an unverifiable model with no file in ``--model-dir``.
    """
    if name in store.catalog:
        return store.path(name)
    loose = unverified_files()
    if name not in loose:
        raise ModelError(f"unknown model {name!r}")
    file_name = loose[name]
    folder = store.model_dir
    if folder is not None and (folder / file_name).is_file():
        warnings.warn(f"model {name}: no published SHA-256 to check {folder / file_name} against; "
                      "using it as you gave it", RuntimeWarning, stacklevel=2)
        return folder / file_name
    raise ModelError(f"model {name} has no published SHA-256, so swapline will not download it: put "
                     f"{file_name} in a folder and pass it with --model-dir")
