"""The README's main job (`swapline demo`) and the Python API surface."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import swapline
from swapline.cli import main
from swapline.bench.portraits import demo_portraits
from swapline.config import SwapConfig
from swapline.errors import ConfigError, NoFaceError
from swapline.face.recognize import cosine

from .conftest import read


def test_demo_swaps_both_portraits(session, model_home: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "demo"
    assert main(["demo", "-o", str(out)]) == 0
    names = ["astronaut.png", "grace_hopper.jpg", "astronaut_into_grace_hopper.jpg",
             "grace_hopper_into_astronaut.png", "side_by_side.jpg"]
    for n in names:
        assert (out / n).is_file(), n
    astronaut, hopper = demo_portraits()
    a = session.analyse(astronaut)[0].embedding
    h = session.analyse(hopper)[0].embedding
    into_h = session.analyse(cv2.imread(str(out / "astronaut_into_grace_hopper.jpg")))[0].embedding
    into_a = session.analyse(cv2.imread(str(out / "grace_hopper_into_astronaut.png")))[0].embedding
    assert cosine(into_h, a) > cosine(into_h, h)
    assert cosine(into_a, h) > cosine(into_a, a)
    printed = capsys.readouterr().out.split()
    assert str(out / "side_by_side.jpg") in printed


def test_swap_image_function(model_home: Path) -> None:
    out = swapline.swap_image(read("src_obama.jpg"), read("src_biden.jpg"), face_selector_mode="one")
    assert out.shape == read("src_biden.jpg").shape and out.dtype == np.uint8
    assert not np.array_equal(out, read("src_biden.jpg"))


def test_swap_image_takes_paths(model_home: Path) -> None:
    from .conftest import media
    out = swapline.swap_image(media("src_obama.jpg"), media("src_biden.jpg"))
    assert out.shape == read("src_biden.jpg").shape


def test_unknown_option_is_a_config_error(model_home: Path) -> None:
    with pytest.raises(ConfigError, match="unknown option 'colour_match'"):
        swapline.Session(colour_match="lab")
    with pytest.raises(ConfigError, match="face_shape_weight"):
        swapline.Session(face_shape_weight=2.0)
    with pytest.raises(ConfigError):
        SwapConfig(color_match="rainbow")


def test_source_without_face(session) -> None:  # noqa: ANN001
    with pytest.raises(NoFaceError, match="no face found in the source"):
        session.load_source(np.full((200, 200, 3), 90, np.uint8))


def test_bad_array_is_rejected(session) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="uint8"):
        session.analyse(np.zeros((10, 10), np.float32))


def test_session_reports_stage_times(session) -> None:  # noqa: ANN001
    source = session.load_source(read("src_obama.jpg"))
    result = session.swap(source, read("src_biden.jpg"))
    assert set(result.times_ms) == {"detect", "mesh", "track", "parse", "swap", "blend"}  # one face: no identity needed
    assert all(v > 0 for v in result.times_ms.values())
    group = session.swap(source, read("multi_two_people_obama_biden.jpg"))
    assert "embed" in group.times_ms  # the reference face has to be told from the other
