"""Video-memory strategy (``--video-memory-strategy``) and limit (``--max-video-memory``).

* ``strict``: release a stage's sessions and caches as soon as it no longer needs them; small
  batches (half of the free memory at most); ONNX Runtime's arena grows only by what is asked.
* ``moderate`` (default): release what no later stage uses again; three quarters of free memory.
* ``tolerant``: keep every session and cache for the whole run; nearly all of the free memory.

Everything here is a pure decision over numbers, except :func:`free_device_memory`, which asks
``nvidia-smi`` (or an already imported torch) and returns None, quickly and silently, where there
is no NVIDIA device.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass

from ..errors import ConfigError

STRATEGIES: tuple[str, ...] = ("strict", "moderate", "tolerant")
GIB = 1 << 30
# Share of the free device memory a strategy lets batches use (the rest is headroom for
# workspaces, fragmentation, other processes).
USABLE_SHARE: dict[str, float] = {"strict": 0.5, "moderate": 0.75, "tolerant": 0.9}
DEFAULT_BATCH = 4  # when nothing is known about memory (CPU runs)
MAX_BATCH = 64


@dataclass(frozen=True)
class MemoryConfig:
    """``strategy``: one of :data:`STRATEGIES`; ``max_video_memory_gb``: a hard cap in GiB on what
    this process plans to use on the device (None: only the free memory limits it)."""

    strategy: str = "moderate"
    max_video_memory_gb: float | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"video memory strategy: {self.strategy!r} is not one of {', '.join(STRATEGIES)}"
            )
        if self.max_video_memory_gb is not None and not float(self.max_video_memory_gb) > 0:
            raise ConfigError(f"max video memory must be > 0 GiB (got {self.max_video_memory_gb:g})")

    @property
    def max_bytes(self) -> int | None:
        return None if self.max_video_memory_gb is None else int(float(self.max_video_memory_gb) * GIB)


def budget_bytes(free_bytes: int | None, strategy: str, max_bytes: int | None = None) -> int | None:
    """Bytes batches may use: the strategy's share of ``free_bytes``, capped by ``max_bytes``.
    None when neither is known."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"video memory strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    options = []
    if free_bytes is not None:
        options.append(int(max(free_bytes, 0) * USABLE_SHARE[strategy]))
    if max_bytes is not None:
        options.append(int(max_bytes))
    return min(options) if options else None


def plan_batch(free_bytes: int | None, per_item_bytes: int, strategy: str = "moderate",
               max_bytes: int | None = None, *, fixed_bytes: int = 0, default: int = DEFAULT_BATCH,
               upper: int = MAX_BATCH) -> int:
    """The batch size that fits: ``(budget - fixed_bytes) // per_item_bytes`` clamped to
    ``1..upper``, where the budget is :func:`budget_bytes`. ``fixed_bytes`` is what the stage
    holds whatever the batch (weights, workspaces). With no memory figure at all (CPU),
    ``default`` (clamped to ``upper``)."""
    budget = budget_bytes(free_bytes, strategy, max_bytes)
    if budget is None:
        return max(1, min(default, upper))
    per = max(int(per_item_bytes), 1)
    return max(1, min(upper, (budget - int(fixed_bytes)) // per))


def should_release(strategy: str, stage_done: bool, *, used_later: bool = False) -> bool:
    """Whether a stage's sessions and caches are released now.

    ``stage_done``: the stage has no more work in this run (or for this item); ``used_later``: a
    later stage (or the next item) uses the same session again. ``strict`` releases whatever is
    done, ``moderate`` only what nobody uses again, ``tolerant`` nothing.
    """
    if strategy == "tolerant" or not stage_done:
        return False
    if strategy == "strict":
        return True
    return not used_later


def arena_strategy(strategy: str) -> str:
    """ONNX Runtime CUDA arena growth for a strategy: exact sizes under ``strict``."""
    return "kSameAsRequested" if strategy == "strict" else "kNextPowerOfTwo"


def free_device_memory(device_id: int = 0) -> int | None:
    """Free bytes on NVIDIA device ``device_id``, or None when there is none to ask.

    Uses torch only if it is already imported (importing it costs seconds), else
    ``nvidia-smi`` (2 s timeout). Never raises.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available() and device_id < torch.cuda.device_count():
                free, _total = torch.cuda.mem_get_info(device_id)
                return int(free)
        except Exception:  # noqa: BLE001 - a broken driver reads as "no device"
            pass
    gpus = nvidia_smi_gpus()
    if gpus is None or device_id >= len(gpus):
        return None
    return gpus[device_id]["free_bytes"]


def nvidia_smi_gpus(timeout: float = 2.0) -> list[dict[str, object]] | None:
    """``[{"name", "free_bytes", "total_bytes"}, ...]`` from ``nvidia-smi``, or None where it is
    absent, fails or times out."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        res = subprocess.run(
            [exe, "--query-gpu=name,memory.free,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    return parse_nvidia_smi(res.stdout)


def parse_nvidia_smi(text: str) -> list[dict[str, object]]:
    """Parse ``name, free MiB, total MiB`` lines (``--format=csv,noheader,nounits``)."""
    out: list[dict[str, object]] = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.rsplit(",", 2)]
        if len(parts) != 3:
            continue
        try:
            free, total = int(float(parts[1])) << 20, int(float(parts[2])) << 20
        except ValueError:
            continue
        out.append({"name": parts[0], "free_bytes": free, "total_bytes": total})
    return out
