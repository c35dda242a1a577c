"""What the ``swap``, ``demo`` and ``doctor`` commands do, over the API (printing lives here)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

from .config import RuntimeConfig, SwapConfig
from .errors import NoFaceError, OutputError
from .pipeline.image import (
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    check_output_path,
    read_image,
    write_image,
)


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(text, file=sys.stderr)


def run_swap(sources: list[Path], target: Path, output: Path, config: SwapConfig, runtime: RuntimeConfig, *,
             force: bool = False, quality: int = 95, quiet: bool = False) -> int:
    """Swap ``sources`` into ``target`` and write ``output``. Returns the exit code."""
    from .api import Session

    # Validate everything cheap before loading a model.
    out = check_output_path(output, force=force, extensions=IMAGE_EXTENSIONS)
    for p in [*sources, target]:
        if p.exists() and out.exists() and p.resolve() == out.resolve():
            raise OutputError(f"output would overwrite an input: {out}")
    target_image = read_image(target, "target")
    source_images = [read_image(p, "source") for p in sources]
    with Session(config, runtime, progress=not quiet) as session:
        try:
            source = session.load_source(source_images if len(sources) > 1 else source_images[0])
        except NoFaceError:  # the API sees arrays; name the file that has no face
            faceless = [p for p, img in zip(sources, source_images) if not session.analyse(img)]
            raise NoFaceError(f"no face found in the source image {faceless[0] if faceless else sources[0]}"
                              ) from None
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


def demo_portraits() -> tuple[np.ndarray, np.ndarray]:
    """The two public-domain demo portraits as ``(H, W, 3) uint8`` BGR: scikit-image's
    astronaut (Eileen Collins, NASA) and matplotlib's Grace Hopper (US Navy)."""
    from matplotlib import cbook
    from skimage import data

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    hopper_path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    return astronaut, read_image(Path(str(hopper_path)), "demo portrait")


def run_demo(output_dir: Path, runtime: RuntimeConfig) -> int:
    """Swap the two demo portraits into each other; write inputs and results to ``output_dir``."""
    from .api import Session

    output_dir.mkdir(parents=True, exist_ok=True)
    astronaut, hopper = demo_portraits()
    print(f"swapline demo: preparing models (first run only) and swapping into {output_dir}/", file=sys.stderr)
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
    for name in files:
        print(output_dir / name)
    return 0


def _side_by_side(a: np.ndarray, b: np.ndarray, ab: np.ndarray, ba: np.ndarray) -> np.ndarray:
    """One picture: the two portraits on top, the two swaps under them, each 400 px high."""
    def fit(img: np.ndarray) -> np.ndarray:
        return cv2.resize(img, (round(img.shape[1] * 400 / img.shape[0]), 400), interpolation=cv2.INTER_AREA)
    top = np.hstack([fit(a), fit(b)])
    bottom = np.hstack([fit(ba), fit(ab)])
    return np.vstack([top, bottom])


def run_doctor(runtime: RuntimeConfig) -> int:
    """Print versions, execution providers and the model store's state."""
    import onnxruntime as ort

    from . import __version__
    from .models.store import ModelStore
    from .runtime.session import available_providers, default_threads, resolve_providers

    chosen, missing = resolve_providers(runtime.execution_providers, available_providers())
    print(f"swapline {__version__}, Python {sys.version.split()[0]}, onnxruntime {ort.__version__}, "
          f"OpenCV {cv2.__version__}")
    print(f"providers available: {', '.join(available_providers())}")
    print(f"providers used:      {', '.join(chosen)}" + (f" (missing: {', '.join(missing)})" if missing else ""))
    print(f"CPU threads:         {runtime.intra_op_threads or default_threads()}")
    store = ModelStore(runtime, progress=False)
    print(f"model cache:         {store.root}")
    for st in store.status():
        print(f"  {st.name:<16} {st.state}")
    return 0
