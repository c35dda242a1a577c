"""``swapline doctor``: versions, execution providers, devices, codecs and the model store's state."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..config import RuntimeConfig
from .options import add_runtime_options


def register(subparsers: Any) -> None:
    """Add ``doctor`` (with the runtime options) to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser("doctor", help="show providers, models and versions")
    add_runtime_options(p)


def run(args: argparse.Namespace, runtime: RuntimeConfig) -> int:
    """``swapline doctor``: the report for the runtime the options describe."""
    return run_doctor(runtime)


def run_doctor(runtime: RuntimeConfig) -> int:
    """Print versions, execution providers, devices, codecs and the model store's state."""
    import cv2

    from .. import __version__, versions
    from ..gpu.report import runtime_report
    from ..models.registry import catalogue_status, full_catalog
    from ..models.store import ModelStore
    from ..runtime.session import default_threads

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
