"""Face selection on real group photos: one, many, reference."""

from __future__ import annotations

import numpy as np
import pytest

from swapline.config import SwapConfig

from .conftest import read


def _changed_faces(result, target) -> list[bool]:  # noqa: ANN001
    """For each face of the target (in result order): did its central pixels change?"""
    out = []
    for f in result.faces:
        x0, y0, x1, y1 = f.box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        w, h = (x1 - x0) * 0.25, (y1 - y0) * 0.25
        sl = (slice(int(cy - h), int(cy + h)), slice(int(cx - w), int(cx + w)))
        out.append(float(np.abs(result.image[sl].astype(int) - target[sl]).mean()) > 3.0)
    return out


@pytest.fixture(scope="module")
def source(session):  # noqa: ANN001, ANN201
    return session.load_source(read("src_astronaut_eileen_collins.png"))


@pytest.mark.parametrize("name", ["multi_t1_group6.jpg", "multi_two_people_obama_biden.jpg"])
def test_one_changes_exactly_one_face(session, source, name: str) -> None:  # noqa: ANN001
    target = read(name)
    result = session.swap(source, target, SwapConfig(face_selector_mode="one"))
    assert len(result.faces) >= 2
    changed = _changed_faces(result, target)
    assert sum(changed) == 1
    assert changed[0], "'one' takes the first face in order (large-small: the largest)"
    assert result.swapped[0].area == max(f.area for f in result.faces)


@pytest.mark.parametrize("name", ["multi_t1_group6.jpg", "multi_two_people_obama_biden.jpg"])
def test_many_changes_all_faces(session, source, name: str) -> None:  # noqa: ANN001
    target = read(name)
    result = session.swap(source, target, SwapConfig(face_selector_mode="many"))
    expected = {"multi_t1_group6.jpg": 6, "multi_two_people_obama_biden.jpg": 2}[name]
    assert len(result.faces) == expected
    assert all(_changed_faces(result, target))


def test_reference_changes_the_chosen_face(session, source) -> None:  # noqa: ANN001
    target = read("multi_two_people_obama_biden.jpg")
    for position in (0, 1):
        cfg = SwapConfig(face_selector_mode="reference", face_selector_order="left-right",
                         reference_face_position=position)
        result = session.swap(source, target, cfg)
        changed = _changed_faces(result, target)
        assert changed == [i == position for i in range(2)], (position, changed)


def test_reference_from_another_photo_of_the_person(session, source) -> None:  # noqa: ANN001
    """A reference embedding from a different photo of Biden picks Biden in the group photo."""
    biden = session.analyse(read("id_biden2.jpg"))[0]
    target = read("multi_two_people_obama_biden.jpg")
    result = session.swap(source, target, SwapConfig(face_selector_mode="reference",
                                                     face_selector_order="left-right"),
                          reference=biden.embedding)
    assert _changed_faces(result, target) == [False, True]  # Obama left, Biden right


def test_reference_position_out_of_range_swaps_nothing(session, source) -> None:  # noqa: ANN001
    target = read("multi_two_people_obama_biden.jpg")
    result = session.swap(source, target, SwapConfig(reference_face_position=5))
    assert result.swapped == ()
    assert np.array_equal(result.image, target)
    assert not result.changed.any()
