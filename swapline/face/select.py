"""Which faces of a target to swap: ordering and the reference / one / many modes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError
from .types import Face

_ORDER_KEYS = {
    "left-right": lambda f: f.center[0],
    "right-left": lambda f: -f.center[0],
    "top-bottom": lambda f: f.center[1],
    "bottom-top": lambda f: -f.center[1],
    "small-large": lambda f: f.area,
    "large-small": lambda f: -f.area,
    "worst-best": lambda f: f.score,
    "best-worst": lambda f: -f.score,
}


def order_faces(faces: Sequence[Face], order: str) -> list[Face]:
    """``faces`` sorted by ``order`` (one of ``config.FACE_ORDERS``); ties keep input order."""
    try:
        key = _ORDER_KEYS[order]
    except KeyError:
        raise ConfigError(f"unknown face order {order!r}; choose from {', '.join(_ORDER_KEYS)}") from None
    return sorted(faces, key=key)


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``1 − cosine`` of two embeddings: 0 for the same vector, about 1 for strangers."""
    return 1.0 - float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def select_faces(faces: Sequence[Face], mode: str, order: str, *, reference: np.ndarray | None = None,
                 max_distance: float = 0.6) -> list[Face]:
    """The faces to swap, in ``order``.

    Modes: ``one`` — the first face in order; ``many`` — every face; ``reference`` — every face
    whose identity distance to ``reference`` is at most ``max_distance`` (none if no reference).
    """
    ordered = order_faces(faces, order)
    if mode == "many":
        return ordered
    if mode == "one":
        return ordered[:1]
    if mode == "reference":
        if reference is None:
            return []
        return [f for f in ordered if f.embedding is not None and identity_distance(f.embedding, reference) <= max_distance]
    raise ConfigError(f"unknown face selector mode {mode!r}; choose from reference, one, many")
