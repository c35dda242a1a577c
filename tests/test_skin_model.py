"""The skin model behind source validity and target occluders, on synthetic colour fields."""

from __future__ import annotations

import numpy as np

from swapline.swap.validity import foreign_weight, occluder_keep, skin_statistics

SKIN = np.array([0.80, 1.00, 1.25], np.float32)  # a shading ratio's B, G, R on skin (≈1)


def _field(shape: tuple[int, int] = (60, 60), seed: int = 0) -> np.ndarray:
    """``(h, w, 3) float32`` skin ratios with 2 % noise."""
    rng = np.random.default_rng(seed)
    return (SKIN * (1.0 + 0.02 * rng.standard_normal(shape + (3,)))).astype(np.float32)


def test_a_shaded_texel_nearer_skin_than_the_surroundings_is_not_foreign() -> None:
    ratio = _field()
    stats = skin_statistics(ratio, np.ones(ratio.shape[:2], bool))
    assert stats is not None
    surround = np.zeros(ratio.shape[:2], bool)
    surround[:, :10] = True
    ratio[:, :10] = np.array([0.10, 0.11, 0.12], np.float32)  # dark hair around the face
    test = np.zeros_like(surround)
    test[:, 20:] = True
    ratio[:, 20:30] *= 0.70  # a shaded band: darker than the patches, far darker hair
    ratio[:, 30:40] = np.array([0.11, 0.12, 0.13], np.float32)  # a strand of that hair
    w = foreign_weight(ratio, stats, test, surround)
    assert w[:, 20:30].max() < 0.05, w[:, 20:30].max()
    assert w[:, 30:40].min() > 0.95
    assert w[:, 40:].max() < 0.05  # skin
    assert w[:, :20].max() == 0.0  # only where tested
    # without the surroundings the shaded band is judged against skin alone: unlike it
    alone = foreign_weight(ratio, stats, test, None)
    assert alone[:, 30:40].min() > 0.95  # far from skin: foreign whatever surrounds it
    assert alone[:, 20:30].max() < 0.05  # unlike skin, but not far: kept without evidence


def test_a_stain_unlike_anything_around_is_foreign() -> None:
    ratio = _field()
    stats = skin_statistics(ratio, np.ones(ratio.shape[:2], bool))
    surround = np.zeros(ratio.shape[:2], bool)
    surround[:, :10] = True
    test = ~surround
    ratio[20:30, 20:30] = np.array([2.5, 1.0, 0.4], np.float32)  # blue paint
    w = foreign_weight(ratio, stats, test, surround)
    assert w[20:30, 20:30].min() > 0.95


def test_occluders_must_reach_in_from_the_border() -> None:
    """A dark fringe touching the border is kept; a dark island inside the face is not."""
    h = w = 80
    image = np.full((h, w, 3), (150, 170, 200), np.uint8)
    rng = np.random.default_rng(1)
    image = np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
    image[:15, 10:70] = (20, 25, 30)  # fringe from the top edge
    image[40:50, 30:40] = (20, 25, 30)  # an island (a shaded socket)
    shade = np.full((h, w, 3), (150, 170, 200), np.float32)
    skin = np.zeros((h, w), bool)
    skin[55:75, 20:60] = True
    testable = np.ones((h, w), bool)
    border = np.zeros((h, w), bool)
    border[:3], border[-3:], border[:, :3], border[:, -3:] = True, True, True, True
    free = occluder_keep(image, shade, skin, testable, face_width=80.0, anchor=None)
    assert free[5, 40] < 0.05 and free[45, 35] < 0.05  # both look like occluders
    kept = occluder_keep(image, shade, skin, testable, face_width=80.0, anchor=border)
    assert kept[5, 40] < 0.05  # the fringe stays in front
    assert kept[45, 35] > 0.95  # the island is swapped
    assert kept[65, 40] > 0.95  # skin
