"""What the ``swap``, ``demo`` and ``doctor`` commands do, over the API (printing lives here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from .config import RuntimeConfig, SwapConfig, VideoConfig
from .pipeline.image import DEFAULT_MAX_PIXELS, read_image, write_image

if TYPE_CHECKING:
    from .jobs import JobEvent


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr)


def run_swap(sources: list[Path], target: Path, output: Path, config: SwapConfig, runtime: RuntimeConfig, *,
             force: bool = False, quality: int = 95, quiet: bool = False, video: VideoConfig | None = None,
             max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool | None = None) -> int:
    """Swap ``sources`` into ``target`` and write ``output`` through the job core (the image or
    the video job, chosen by the target's content); warnings, a progress bar and the summary
    line go to stderr. ``progress`` shows bars (default: unless ``quiet``). Returns the exit
    code; errors are raised as their typed :class:`~swapline.errors.SwaplineError`."""
    from .jobs import Job, Runner

    bars = not quiet if progress is None else progress
    job = Job(sources=tuple(sources), target=target, output=output, config=config, video=video or VideoConfig(),
              force=force, quality=quality, max_pixels=max_pixels)
    printer = _EventPrinter(quiet=quiet, bars=bars)
    try:
        with Runner(runtime, progress=bars) as runner:
            result = runner.run(job, on_event=printer)
    finally:
        printer.close()
    if not (result.kind == "image" and result.faces == 0):  # else the warning said it all
        _say(quiet, result.summary)
    return 0


class _EventPrinter:
    """A job's events on a terminal: warning lines and (for videos) a progress bar."""

    def __init__(self, *, quiet: bool, bars: bool) -> None:
        self.quiet = quiet
        self.bars = bars
        self.bar: Any = None
        self.kind_video = False

    def __call__(self, event: "JobEvent") -> None:
        if event.kind == "warning":
            _say(self.quiet, f"swapline: warning: {event.message}")
        elif event.kind == "started" and self.bars and event.total > 1:
            from tqdm import tqdm

            self.bar = tqdm(total=event.total, unit="frame", desc="swapping", leave=False, dynamic_ncols=True)
        elif event.kind == "progress" and self.bar is not None:
            self.bar.update(max(0, event.done - self.bar.n))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def demo_portraits() -> tuple[np.ndarray, np.ndarray]:
    """The two public-domain demo portraits as ``(H, W, 3) uint8`` BGR: scikit-image's
    astronaut (Eileen Collins, NASA) and matplotlib's Grace Hopper (US Navy)."""
    from matplotlib import cbook
    from skimage import data

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    hopper_path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return astronaut, read_image(Path(str(hopper_path)), "demo portrait")


DEMO_CLIP_SECONDS = 4
DEMO_CLIP_FPS = 25


def run_demo(output_dir: Path, runtime: RuntimeConfig, *, progress: bool = True) -> int:
    """Swap the two demo portraits into each other, make a short zoom-and-pan clip of Grace
    Hopper and swap the astronaut into it; write inputs and results to ``output_dir``."""
    from .api import Session
    from .video.clip import write_clip, zoom_pan_frames

    output_dir.mkdir(parents=True, exist_ok=True)
    astronaut, hopper = demo_portraits()
    print(f"swapline demo: preparing models (first run only) and swapping into {output_dir}/", file=sys.stderr)
    written: list[Path] = []
    with Session(SwapConfig(), runtime, progress=progress) as session:
        a = session.load_source(astronaut)
        h = session.load_source(hopper)
        into_hopper = session.swap(a, hopper)
        into_astronaut = session.swap(h, astronaut)
        files = {
            "astronaut.png": astronaut,
            "grace_hopper.jpg": hopper,
            "astronaut_into_grace_hopper.jpg": into_hopper.image,
            "grace_hopper_into_astronaut.png": into_astronaut.image,
            "side_by_side.jpg": _side_by_side(astronaut, hopper, into_hopper.image, into_astronaut.image),
        }
        for name, img in files.items():
            write_image(output_dir / name, img)
            written.append(output_dir / name)
        clip = output_dir / "grace_hopper_clip.mp4"
        face = into_hopper.swapped[0] if into_hopper.swapped else None
        count = DEMO_CLIP_SECONDS * DEMO_CLIP_FPS
        write_clip(zoom_pan_frames(hopper, count, (640, 480), zoom=1.3, center=face.center if face else None),
                   clip, fps=DEMO_CLIP_FPS)
        swapped = output_dir / "astronaut_into_grace_hopper_clip.mp4"
        report = session.swap_video(a, clip, swapped, force=True, progress=progress)
        written += [clip, swapped]
    for path in written:
        print(path)
    print(f"video: {report.frames} frames at {report.fps:.1f} fps", file=sys.stderr)
    return 0


def _side_by_side(a: np.ndarray, b: np.ndarray, ab: np.ndarray, ba: np.ndarray) -> np.ndarray:
    """One picture: the two portraits on top, the two swaps under them, each 400 px high."""
    def fit(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (round(img.shape[1] * 400 / img.shape[0]), 400), interpolation=cv2.INTER_AREA)
    top = np.hstack([fit(a), fit(b)])
    bottom = np.hstack([fit(ba), fit(ab)])
    return np.vstack([top, bottom])


def run_doctor(runtime: RuntimeConfig) -> int:
    """Print versions, execution providers, devices, codecs and the model store's state."""
    from . import __version__, versions
    from .gpu.report import runtime_report
    from .models.registry import catalogue_status, full_catalog
    from .models.store import ModelStore
    from .runtime.session import default_threads

    r = runtime_report(runtime.execution_providers, runtime.execution_device_id)
    print(f"swapline {__version__}, Python {r['python']}, onnxruntime {r['onnxruntime']}, OpenCV {cv2.__version__}, "
          f"torch {r['torch'] or 'not installed'}")
    bindings = versions.binding_versions()
    print("native bindings:     " + ", ".join(f"{b.distribution} {b.installed or 'not installed'}" for b in bindings))
    for b in bindings:
        if b.problem:
            print(f"swapline: warning: {b.problem}", file=sys.stderr)
    print(f"providers available: {', '.join(r['providers_available'])}")
    missing = f" (missing: {', '.join(r['providers_missing'])})" if r["providers_missing"] else ""
    print(f"providers used:      {', '.join(r['providers_used'])}{missing}")
    devices = r["cuda_devices"] or []
    print(f"CUDA devices:        {', '.join(str(d) for d in devices) if devices else 'none'}")
    free = r["free_device_memory"]
    print(f"free device memory:  {f'{free / 2**30:.1f} GiB' if free else 'n/a'}")
    codecs = r["codecs"]
    print(f"NVENC / NVDEC:       {'yes' if codecs.get('nvenc') else 'no'} / {'yes' if codecs.get('nvdec') else 'no'}")
    path = r["device_path"]
    print(f"frame path:          ops on {path['ops']}, models via {path['models']} ({path['device']})")
    print(f"CPU threads:         {runtime.intra_op_threads or default_threads()}")
    store = ModelStore(runtime, progress=False, catalog=full_catalog())
    print(f"model cache:         {store.root}")
    for st in catalogue_status(store):
        print(f"  {st.name:<24} {st.shown_state:<20} {st.licence}")
    return 0
