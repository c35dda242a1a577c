"""The realism benchmark (``swapline benchmark --quality``): its metrics on synthetic images
with known answers, and one real case end to end (table, JSON and contact sheet)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from swapline.bench.quality import (
    CASES, HEADER_PX, PSNR_IDENTICAL, QUICK, VARIANTS, background_psnr, edge_ratio, face_regions,
    format_quality, lighting_agreement, select_cases,
)
from swapline.cli import build_parser

from .conftest import MEDIA, media

SIZE = 256
WIDTH = 120.0  # face width of the synthetic oval


def _oval() -> np.ndarray:
    """An ellipse polygon ``(64, 2) float64`` centred in a 256 px square, 120 px wide."""
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    return np.stack([128 + WIDTH / 2 * np.cos(t), 128 + 80 * np.sin(t)], axis=1)


def _textured() -> np.ndarray:
    """``(256, 256, 3) uint8``: smooth shading plus fine noise, so every metric has signal."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    shade = 90 + 60 * np.sin(x / 40) * np.cos(y / 55)
    grey = np.clip(shade + rng.normal(0, 6, (SIZE, SIZE)), 0, 255)
    return np.repeat(grey[..., None], 3, axis=2).astype(np.uint8)


@pytest.fixture(scope="module")
def regions():  # noqa: ANN201
    return face_regions((SIZE, SIZE), _oval())


def test_regions_are_where_the_fractions_say(regions) -> None:  # noqa: ANN001
    assert regions.width == pytest.approx(WIDTH)
    assert regions.inner.sum() < regions.face.sum() and not (regions.inner & ~regions.face).any()
    assert not (regions.background & regions.face).any()
    assert not regions.background[128, 128 - 60 - 25]  # 25 px < 0.25 × width outside: not background
    assert regions.background[128, 128 - 60 - 35]
    assert regions.band[128, 128 - 60] and not regions.band[128, 128]


def test_identical_images_score_perfectly(regions) -> None:  # noqa: ANN001
    image = _textured()
    assert lighting_agreement(image, image.copy(), regions) == pytest.approx(1.0)
    assert edge_ratio(image, image.copy(), regions) == pytest.approx(1.0)
    assert background_psnr(image, image.copy(), regions) == (PSNR_IDENTICAL, 0)


def test_a_change_outside_the_face_lowers_background_psnr(regions) -> None:  # noqa: ANN001
    target = _textured()
    ramp = np.tile(np.linspace(0, 30, SIZE, dtype=np.float32), (SIZE, 1))
    outside = ~cv2.dilate(regions.face.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    result = target.astype(np.float32)
    result[outside] += ramp[outside, None]
    result = np.clip(result, 0, 255).astype(np.uint8)
    psnr, peak = background_psnr(result, target, regions)
    assert psnr < 40 and 20 <= peak <= 30
    # the face itself is untouched: lighting still agrees (the low-pass reaches a little outside)
    assert lighting_agreement(result, target, regions) > 0.99


def test_a_hard_edge_at_the_oval_raises_the_edge_ratio(regions) -> None:  # noqa: ANN001
    target = _textured()
    result = target.copy()
    result[regions.face] = np.clip(result[regions.face].astype(int) + 70, 0, 255).astype(np.uint8)
    assert edge_ratio(result, target, regions) > 1.5
    # a pasted face with its own shading reads as lighting that does not match
    inverted = target.copy()
    inverted[regions.face] = 255 - target[regions.face]
    assert lighting_agreement(inverted, target, regions) < 0.0


def test_cases_and_variants_are_data() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and set(QUICK) <= set(names)
    assert {c.kind for c in CASES} == {"pair", "hard-target", "hard-source", "video", "group"}
    assert list(VARIANTS)[:1] == ["before"] and {"colour", "after", "poisson"} <= set(VARIANTS)
    assert not VARIANTS["colour"].face_parsing and VARIANTS["after"].face_parsing  # with and without the parser
    assert [c.name for c in select_cases(quick=True)] == list(QUICK)
    with pytest.raises(KeyError):
        select_cases(names=["nobody→nowhere"])


def test_cli_parses_the_quality_options(tmp_path: Path) -> None:
    args = build_parser().parse_args(["benchmark", "--quality", "--quick", "--sheet", str(tmp_path / "s.png"),
                                      "--sheet-variants", "before", "after", "poisson", "--verbose"])
    assert args.quality and args.quick and args.verbose
    assert args.sheet == tmp_path / "s.png" and args.sheet_variants == ["before", "after", "poisson"]
    assert not build_parser().parse_args(["benchmark"]).quality


def test_one_real_pair_end_to_end(model_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swapline.bench.quality import run_quality_benchmark
    from swapline.config import RuntimeConfig

    media("src_obama.jpg")
    media("src_biden.jpg")
    sheet, report = tmp_path / "sheet.png", tmp_path / "q.json"
    code = run_quality_benchmark(RuntimeConfig(home=model_home), sheet=sheet, json_path=report, verbose=True,
                                 media=MEDIA, cases=["obama→biden"], variants=["before", "after"],
                                 sheet_variants=["before", "after"])
    assert code == 0
    out = capsys.readouterr().out
    assert "before" in out and "after" in out and "targets" in out
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape == (HEADER_PX + 256, 4 * 256, 3)  # one row: src, tgt, 2 variants
    data = json.loads(report.read_text())
    assert [c["case"] for c in data["cases"]] == ["obama→biden"]
    for name in ("before", "after"):
        m = data["means"][name]
        assert m["margin"] > 0.1  # identity moved to the source
        assert -1 <= m["lighting"] <= 1 and m["edge"] > 0 and m["bg_psnr"] > 20
    assert format_quality(data)  # JSON round trip still formats (NaN → None aside)
