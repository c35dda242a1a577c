"""What the ``swap``, ``demo`` and ``doctor`` commands do, over the API (printing lives here)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .config import RuntimeConfig, SwapConfig, VideoConfig
from .errors import NoFaceError, OutputError
from .pipeline.image import (
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    check_output_path,
    read_image,
    write_image,
)
from .video.reader import is_video_path

if TYPE_CHECKING:
    from .api import Session
    from .swap.mesh import SourceFace


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr)


def _load_source(session: "Session", sources: list[Path], images: list[np.ndarray]) -> "SourceFace":
    try:
        return session.load_source(images if len(images) > 1 else images[0])
    except NoFaceError:  # the API sees arrays; name the file that has no face
        faceless = [p for p, img in zip(sources, images) if not session.analyse(img)]
        raise NoFaceError(f"no face found in the source image {faceless[0] if faceless else sources[0]}") from None


def _check_not_an_input(out: Path, inputs: list[Path]) -> None:
    for p in inputs:
        if p.exists() and out.exists() and p.resolve() == out.resolve():
            raise OutputError(f"output would overwrite an input: {out}")


def run_swap(sources: list[Path], target: Path, output: Path, config: SwapConfig, runtime: RuntimeConfig, *,
             force: bool = False, quality: int = 95, quiet: bool = False, video: VideoConfig | None = None) -> int:
    """Swap ``sources`` into ``target`` (an image or a video) and write ``output``. Returns the
    exit code."""
    from .api import Session

    if is_video_path(target):
        return run_swap_video(sources, target, output, config, runtime, video or VideoConfig(), force=force, quiet=quiet)
    # Validate everything cheap before loading a model.
    out = check_output_path(output, force=force, extensions=IMAGE_EXTENSIONS)
    _check_not_an_input(out, [*sources, target])
    target_image = read_image(target, "target")
    source_images = [read_image(p, "source") for p in sources]
    with Session(config, runtime, progress=not quiet) as session:
        source = _load_source(session, sources, source_images)
        result = session.swap(source, target_image)
    if not result.faces:
        _say(quiet, f"swapline: warning: no face found in the target {target}; copied it through unchanged")
        if target.suffix.lower() == out.suffix.lower():
            atomic_write_bytes(out, target.read_bytes())
        else:
            write_image(out, target_image, quality=quality)
        return 0
    if not result.swapped:
        _say(quiet, f"swapline: warning: {len(result.faces)} face(s) in the target but none matched the "
                    f"selection ({config.face_selector_mode}); copied it through unchanged")
    write_image(out, result.image, quality=quality)
    _say(quiet, f"swapped {len(result.swapped)} of {len(result.faces)} face(s) → {out}")
    return 0


def run_swap_video(sources: list[Path], target: Path, output: Path, config: SwapConfig, runtime: RuntimeConfig,
                   video: VideoConfig, *, force: bool = False, quiet: bool = False) -> int:
    """Swap ``sources`` into the video ``target``; write the video ``output`` with its audio."""
    from .api import Session
    from .pipeline.video import VIDEO_EXTENSIONS
    from .video.reader import probe

    if output.suffix.lower() in IMAGE_EXTENSIONS:
        raise OutputError(f"the target is a video: give a video output ({', '.join(VIDEO_EXTENSIONS)}), not {output}")
    out = check_output_path(output, force=force, extensions=VIDEO_EXTENSIONS)
    _check_not_an_input(out, [*sources, target])
    info = probe(target)
    source_images = [read_image(p, "source") for p in sources]
    with Session(config, runtime, progress=not quiet) as session:
        source = _load_source(session, sources, source_images)
        report = session.swap_video(source, target, out, video=video, force=force, progress=not quiet)
    if report.swapped == 0:
        _say(quiet, f"swapline: warning: no face was swapped in {target} (none found or none matched the "
                    f"selection); the video was re-encoded unchanged")
    audio = "audio copied" if info.has_audio else "no audio"
    _say(quiet, f"{report.frames} frames, {report.swapped} face(s) swapped, {report.fps:.1f} fps, {audio} → {out}")
    return 0


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


def run_demo(output_dir: Path, runtime: RuntimeConfig) -> int:
    """Swap the two demo portraits into each other, make a short zoom-and-pan clip of Grace
    Hopper and swap the astronaut into it; write inputs and results to ``output_dir``."""
    from .api import Session
    from .video.clip import write_clip, zoom_pan_frames

    output_dir.mkdir(parents=True, exist_ok=True)
    astronaut, hopper = demo_portraits()
    print(f"swapline demo: preparing models (first run only) and swapping into {output_dir}/", file=sys.stderr)
    written: list[Path] = []
    with Session(SwapConfig(), runtime, progress=True) as session:
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
        report = session.swap_video(a, clip, swapped, force=True, progress=True)
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
    from . import __version__
    from .gpu.report import runtime_report
    from .models.registry import full_catalog
    from .models.store import ModelStore
    from .runtime.session import default_threads

    r = runtime_report(runtime.execution_providers, runtime.execution_device_id)
    print(f"swapline {__version__}, Python {r['python']}, onnxruntime {r['onnxruntime']}, OpenCV {cv2.__version__}, "
          f"torch {r['torch'] or 'not installed'}")
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
    for st in store.status():
        print(f"  {st.name:<24} {st.state:<14} {st.licence}")
    return 0
