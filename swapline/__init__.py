"""swapline: a fast face-swap system (staged, batched, ONNX Runtime; weight-free built-in swapper)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Session", "SwapResult", "swap_image", "__version__"]


def __getattr__(name: str) -> object:
    # Lazy: `import swapline` stays cheap (the CLI parses arguments before loading models).
    if name in ("Session", "SwapResult", "swap_image"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
