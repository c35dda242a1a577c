"""Shared fixtures: the real media beside the project, and one model cache for the test run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def media(name: str) -> Path:
    """Path of a file in ../shared/media; skips the test when the media folder is absent."""
    path = MEDIA / name
    if not path.exists():
        pytest.skip(f"test media {name} not found in {MEDIA} (the shared media folder sits beside the project)")
    return path


def read(name: str) -> np.ndarray:
    """A media image as ``(H, W, 3) uint8`` BGR."""
    image = cv2.imread(str(media(name)), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


@pytest.fixture(scope="session")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One SWAPLINE_HOME for the whole run, so models are fetched and converted once.

    Set ``SWAPLINE_TEST_HOME`` to reuse a cache across runs (CI leaves it unset).
    """
    home = Path(os.environ.get("SWAPLINE_TEST_HOME") or tmp_path_factory.mktemp("swapline-home"))
    old = os.environ.get("SWAPLINE_HOME")
    os.environ["SWAPLINE_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("SWAPLINE_HOME", None)
    else:
        os.environ["SWAPLINE_HOME"] = old


@pytest.fixture(scope="session")
def session(model_home: Path):  # noqa: ANN201 - swapline.api.Session
    """A swap session with the default models loaded once."""
    from swapline.api import Session
    from swapline.config import RuntimeConfig

    with Session(runtime=RuntimeConfig(home=model_home)) as s:
        yield s
