"""Streaming against traditional video pipelines on a shared test clip (prints, never asserts).

Run: ``python benchmarks/bench_video.py [--clip NAME] [--loops N]``. Default: the 720p talking
scene (one face ≈270 px, 9.4 s, audio) with src_biden.jpg as the source, and the same clip looped
6 times (≈56 s) for the memory figure. Same as ``swapline benchmark --video CLIP --source IMG
--long N``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapline.bench.video import run_video_benchmark  # noqa: E402
from swapline.config import RuntimeConfig, VideoConfig  # noqa: E402

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="vid_lp_s18_scene_720p.mp4")
    parser.add_argument("--source", default="src_biden.jpg")
    parser.add_argument("--loops", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    clip, source = MEDIA / args.clip, MEDIA / args.source
    if not clip.exists() or not source.exists():
        print(f"test media not found in {MEDIA}", file=sys.stderr)
        return 1
    return run_video_benchmark(str(clip), source, RuntimeConfig(), VideoConfig(), loops=args.loops,
                               json_path=args.json)


if __name__ == "__main__":
    sys.exit(main())
