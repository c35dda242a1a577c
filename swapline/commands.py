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
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    check_output_path,
    read_image,
    read_image_with_alpha,
    write_image,
)

if TYPE_CHECKING:
    from .api import Session
    from .pipeline.video import JobReport
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
             force: bool = False, quality: int = 95, quiet: bool = False, video: VideoConfig | None = None,
             max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool | None = None) -> int:
    """Swap ``sources`` into ``target`` and write ``output``: the image or the video job, chosen
    by the target's content (its magic bytes; its extension only when they say nothing).
    ``max_pixels`` bounds every image read (checked from its header before decoding);
    ``progress`` shows progress bars (default: unless ``quiet``). Returns the exit code."""
    from .api import Session
    from .media_type import VIDEO_SUFFIXES, sniff

    kind = sniff(target) if target.is_file() else "unknown"
    is_video_name = target.suffix.lower() in VIDEO_SUFFIXES
    if kind == "video" or (kind == "unknown" and is_video_name):
        return run_swap_video(sources, target, output, config, runtime, video or VideoConfig(), force=force,
                              quiet=quiet, max_pixels=max_pixels, progress=progress)
    bars = not quiet if progress is None else progress
    # Validate everything cheap before loading a model.
    if output.suffix.lower() in VIDEO_SUFFIXES:
        raise OutputError(f"the target {target.name} is an image: give an image output "
                          f"({', '.join(IMAGE_EXTENSIONS)}), not {output}")
    out = check_output_path(output, force=force, extensions=IMAGE_EXTENSIONS)
    _check_not_an_input(out, [*sources, target])
    target_image, alpha = read_image_with_alpha(target, "target", max_pixels=max_pixels)
    source_images = [read_image(p, "source", max_pixels=max_pixels) for p in sources]
    with Session(config, runtime, progress=bars) as session:
        source = _load_source(session, sources, source_images)
        result = session.swap(source, target_image)
    if not result.faces:
        _say(quiet, f"swapline: warning: no face found in the target {target}; copied it through unchanged")
        if target.suffix.lower() == out.suffix.lower():
            atomic_write_bytes(out, target.read_bytes())
        else:
            write_image(out, target_image, quality=quality, alpha=alpha)
        return 0
    if not result.swapped:
        _say(quiet, f"swapline: warning: {len(result.faces)} face(s) in the target but none matched the "
                    f"selection ({config.face_selector_mode}); copied it through unchanged")
    write_image(out, result.image, quality=quality, alpha=alpha)  # swapped colour, the target's alpha
    _say(quiet, f"swapped {len(result.swapped)} of {len(result.faces)} face(s) → {out}")
    return 0


def run_swap_video(sources: list[Path], target: Path, output: Path, config: SwapConfig, runtime: RuntimeConfig,
                   video: VideoConfig, *, force: bool = False, quiet: bool = False,
                   max_pixels: int = DEFAULT_MAX_PIXELS, progress: bool | None = None) -> int:
    """Swap ``sources`` into the video ``target``; write the video ``output`` with its audio."""
    from .api import Session
    from .pipeline.video import VIDEO_EXTENSIONS
    from .video.reader import probe

    if output.suffix.lower() in IMAGE_EXTENSIONS:
        raise OutputError(f"the target is a video: give a video output ({', '.join(VIDEO_EXTENSIONS)}), not {output}")
    out = check_output_path(output, force=force, extensions=VIDEO_EXTENSIONS)
    _check_not_an_input(out, [*sources, target])
    probe(target)  # a target that is not a video fails here, before any model loads
    _warn_if_deep_video(target)
    bars = not quiet if progress is None else progress
    source_images = [read_image(p, "source", max_pixels=max_pixels) for p in sources]
    with Session(config, runtime, progress=bars) as session:
        source = _load_source(session, sources, source_images)
        report = session.swap_video(source, target, out, video=video, force=force, progress=bars)
    if report.damaged_packets or report.concealed_frames or report.missing_frames:
        _say(quiet, f"swapline: warning: {target} is damaged: {_damage_text(report)}")
    for what in report.dropped:
        _say(quiet, f"swapline: warning: left out the input's {what}")
    if report.swapped == 0:
        how = ("its packets were copied unchanged" if report.remuxed
               else "the video was re-encoded (a trimmed or converted video cannot be copied packet by packet)")
        _say(quiet, f"swapline: warning: no face was swapped in {target} (none found or none matched the "
                    f"selection); {how}")
    _say(quiet, f"{report.frames} frames, {report.swapped} face(s) swapped, {report.fps:.1f} fps, "
                f"{_streams_text(report.copied)} → {out}")
    return 0


def _warn_if_deep_video(path: Path) -> None:
    """One warning line when the target video has more than 8 bits per sample (it is written
    with 8). Says nothing when the file cannot be opened: the video job reports that."""
    import warnings

    try:
        import av

        with av.open(str(path)) as container:
            fmt = container.streams.video[0].codec_context.format
            bits = max(c.bits for c in fmt.components) if fmt is not None else 8
            name = fmt.name if fmt is not None else ""
    except Exception:  # noqa: BLE001 - only a warning; the job itself reports unreadable files
        return
    if bits > 8:
        warnings.warn(f"target {path.name} is {bits}-bit video ({name}); swapline works with 8 bits and "
                      "writes 8-bit video", UserWarning, stacklevel=2)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _damage_text(report: "JobReport") -> str:
    """``"2 damaged packets skipped, 5 frames repaired by error concealment"``."""
    parts = []
    if report.damaged_packets:
        parts.append(f"{_plural(report.damaged_packets, 'damaged video packet')} skipped")
    if report.missing_frames:
        parts.append(f"it ends {_plural(report.missing_frames, 'frame')} early (cut short?)")
    if report.concealed_frames:
        parts.append(f"{_plural(report.concealed_frames, 'damaged frame')} repaired by error concealment")
    return ", ".join(parts)


def _streams_text(copied: dict[str, int]) -> str:
    """``"2 audio tracks, 1 subtitle stream and 1 data stream copied"``, or ``"no audio"``."""
    names = {"audio": "audio track", "subtitle": "subtitle stream", "data": "data stream"}
    parts = [_plural(copied[k], names[k]) for k in names if copied.get(k)]
    if not parts:
        return "no audio"
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{text} copied"


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
