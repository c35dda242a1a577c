"""Which faces of a target to swap: ordering and the reference / one / many modes."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..config import SwapConfig
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


def reference_embedding(faces: Sequence[Face], order: str, position: int) -> np.ndarray | None:
    """The embedding of the face at ``position`` once ``faces`` are ordered, or None when
    there are not that many faces (or it has no embedding)."""
    ordered = order_faces(faces, order)
    if position >= len(ordered):
        return None
    return ordered[position].embedding


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


def choose_faces(faces: Sequence[Face], config: SwapConfig, reference: np.ndarray | None,
                 embed: Callable[[list[Face]], list[Face]]) -> tuple[list[Face], list[Face]]:
    """Order ``faces`` and pick the ones to swap, computing identities only when they decide.

    ``embed`` fills in embeddings (it is called at most once, and not at all in ``one`` and
    ``many`` modes, nor in ``reference`` mode when the target has a single face and the
    reference is that face). Returns ``(ordered faces, chosen faces)``.
    """
    mode, order = config.face_selector_mode, config.face_selector_order
    if mode != "reference":
        return order_faces(faces, order), select_faces(faces, mode, order)
    if reference is None and len(faces) <= 1:
        ordered = order_faces(faces, order)
        return ordered, ordered if config.reference_face_position == 0 else []
    faces = embed(list(faces))
    ref = reference if reference is not None else reference_embedding(faces, order, config.reference_face_position)
    return order_faces(faces, order), select_faces(faces, mode, order, reference=ref,
                                                   max_distance=config.reference_face_distance)
