"""Cheap, cached probe of the hardware video codecs PyAV's FFmpeg can really use here.

NVENC counts as usable only when ``h264_nvenc`` opens on a tiny frame and encodes it; NVDEC only
when a CUDA device context can be created for the h264 decoder. Without a GPU both fail in about
a millisecond, silently (PyAV keeps FFmpeg's log quiet unless the user raises its level).
"""

from __future__ import annotations

import functools
from fractions import Fraction

import av
import numpy as np


@functools.lru_cache(maxsize=1)
def probe_hardware() -> dict[str, bool]:
    """``{"nvenc": bool, "nvdec": bool}``: whether NVIDIA encode / decode work in this process.

    Cached: the first call costs a few milliseconds (more with a real GPU: the CUDA context),
    later calls nothing. Never raises, never prints.
    """
    return {"nvenc": _nvenc_usable(), "nvdec": _nvdec_usable()}


def _cuda_listed() -> bool:
    try:
        from av.codec.hwaccel import hwdevices_available

        return "cuda" in hwdevices_available()
    except Exception:  # noqa: BLE001 - an old or odd PyAV build: no hardware
        return False


def _nvenc_usable() -> bool:
    if not _cuda_listed():
        return False
    try:
        ctx = av.codec.CodecContext.create("h264_nvenc", "w")
        ctx.width, ctx.height = 256, 256
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = Fraction(1, 25)
        ctx.framerate = Fraction(25, 1)
        ctx.open()
        frame = av.VideoFrame.from_ndarray(np.zeros((256, 256, 3), np.uint8), format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = 0
        packets = list(ctx.encode(frame)) + list(ctx.encode(None))
        return len(packets) > 0
    except Exception:  # noqa: BLE001 - any failure means "not usable": fall back to software
        return False


def _h264_sample(frames: int = 4, size: int = 256) -> list[av.Packet]:
    """A few packets of a tiny H.264 stream (libx264), to try a decoder on."""
    ctx = av.codec.CodecContext.create("libx264", "w")
    ctx.width = ctx.height = size
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 25)
    ctx.framerate = Fraction(25, 1)
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency"}
    ctx.open()
    packets: list[av.Packet] = []
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 40 * i, np.uint8), format="bgr24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        packets += ctx.encode(frame)
    return packets + list(ctx.encode(None))


def _nvdec_usable() -> bool:
    """NVDEC decodes a real H.264 sample here. Making the CUDA device context is not enough: a
    machine can have CUDA without the driver's video decode library, and then every packet
    fails (seen on a GPU virtual machine)."""
    if not _cuda_listed():
        return False
    try:
        from av.codec.hwaccel import HWAccel

        ctx = av.codec.CodecContext.create("h264", "r",
                                           hwaccel=HWAccel("cuda", allow_software_fallback=False))
        decoded = [f for p in _h264_sample() for f in ctx.decode(p)] + list(ctx.decode(None))
        return len(decoded) > 0
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False
