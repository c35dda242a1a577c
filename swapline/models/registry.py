"""Every model swapline knows, and how a name becomes a file on disk.

The default models (detector, mesh, recognizer), the neural swappers and recognizers
(:mod:`.neural_catalog`) and the enhancers and mask models (:mod:`.enhance_catalog`) are merged
into one catalogue for the :class:`~swapline.models.store.ModelStore`. Files with a published
SHA-256 are fetched and verified by the store; the others can only come from a file the user
already has in ``--model-dir`` (used with a warning that it could not be verified).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ..errors import ModelError
from . import enhance_catalog, neural_catalog
from .catalog import CATALOG, ModelSpec
from .store import ModelStore


def full_catalog() -> dict[str, ModelSpec]:
    """The default catalogue plus every neural, enhancer and mask model with a published hash."""
    merged = dict(CATALOG)
    for name, spec in {**neural_catalog.catalog_entries(), **enhance_catalog.catalog_entries()}.items():
        if name in merged:
            raise ValueError(f"model {name} is catalogued twice")
        merged[name] = spec
    return merged


def unverified_files() -> dict[str, str]:
    """Models without a published hash: name → the file name to put in ``--model-dir``."""
    out = {name: f.file_name for name, f in neural_catalog.unverified().items()}
    out.update(enhance_catalog.model_dir_only())
    return out


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
