"""Realism of the built-in swap per variant over hard cases (prints, never asserts).

Run: ``python benchmarks/bench_quality.py [--quick] [--sheet PNG] [--json FILE] [--verbose]``.
Cases: press photos of different people, the ``hard_*`` photos as target and as source, and
frames of the two LivePortrait clips with glasses, fringe and expressions (../shared/media).
Rows: the variants of ``swapline.bench.quality.VARIANTS`` (``before`` = the old default, one
realism feature added each, ``after`` = today's defaults, ``poisson``). Same as ``swapline
benchmark --quality``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapline.bench.quality import SHEET_VARIANTS, run_quality_benchmark  # noqa: E402
from swapline.config import RuntimeConfig  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="four cases instead of all")
    parser.add_argument("--sheet", type=Path, default=Path("swapline-quality.png"))
    parser.add_argument("--sheet-variants", nargs="+", default=list(SHEET_VARIANTS))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--verbose", action="store_true", help="also print every case's rows")
    args = parser.parse_args()
    return run_quality_benchmark(RuntimeConfig(), quick=args.quick, sheet=args.sheet, json_path=args.json,
                                 verbose=args.verbose, sheet_variants=args.sheet_variants, media=MEDIA)


if __name__ == "__main__":
    sys.exit(main())
