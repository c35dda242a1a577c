"""The cheaper live frame: the outgoing frame's YUV conversion and the tuned VP8 encoder
(decodable, its settings applied, reopened as aiortc's is), and the live engine's detection
cadence."""

from __future__ import annotations

import time
from fractions import Fraction

import numpy as np
import pytest

from swapline.config import SwapConfig

from .conftest import read

# -------------------------------------------------------------------------- outgoing frames


def test_video_frame_is_i420_and_keeps_the_colours() -> None:
    from swapline.server.webrtc import video_frame

    image = read("src_obama.jpg")[:480, :640].copy()
    frame = video_frame(image)
    assert frame.format.name == "yuv420p" and (frame.width, frame.height) == (640, 480)
    back = frame.to_ndarray(format="bgr24")
    assert np.abs(back.astype(int) - image).mean() < 2.0
    odd = video_frame(image[:479, :639].copy())  # I420 cannot hold odd sizes: PyAV's own frame
    assert odd.format.name == "bgr24" and (odd.width, odd.height) == (639, 479)


def test_tuned_vp8_encoder_is_decodable_and_uses_its_settings() -> None:
    from aiortc.codecs.vpx import Vp8Decoder, vp8_depayload
    from aiortc.jitterbuffer import JitterFrame

    from swapline.server.webrtc import TunedVp8Encoder, Vp8Options, _open_vp8, video_frame

    image = read("src_obama.jpg")[:480, :640].copy()
    encoder = TunedVp8Encoder(Vp8Options(cpu_used=-10, noise_sensitivity=0))
    decoder = Vp8Decoder()
    decoded = []
    for i in range(6):
        frame = video_frame(np.roll(image, 3 * i, axis=1))
        frame.pts, frame.time_base = 3000 * i, Fraction(1, 90_000)
        payloads, timestamp = encoder.encode(frame, force_keyframe=i == 3)
        assert payloads and abs(timestamp - 3000 * i) <= 1  # (PyAV rounds it through 1 µs, as for aiortc's own)
        decoded += decoder.decode(JitterFrame(b"".join(vp8_depayload(p) for p in payloads), timestamp))
        if i == 0:
            codec = encoder.codec
            assert not {"cpu-used", "noise-sensitivity"} & set(codec.options)  # libvpx took both (left: unused ones)
    assert encoder.codec is codec  # kept while the size and rate hold
    assert len(decoded) == 6
    assert np.abs(decoded[-1].to_ndarray(format="bgr24").astype(int) - np.roll(image, 15, axis=1)).mean() < 8
    encoder.target_bitrate = 1_500_000  # aiortc's rate control moved it: a new codec at that rate
    frame = video_frame(image)
    frame.pts, frame.time_base = 3000 * 6, Fraction(1, 90_000)
    encoder.encode(frame)
    assert encoder.codec is not codec and encoder.codec.bit_rate == 1_500_000
    opened = _open_vp8(frame, 1_500_000, Vp8Options(cpu_used=-10, noise_sensitivity=0))
    assert opened.options["cpu-used"] == "-10" and opened.options["noise-sensitivity"] == "0"
    assert opened.options["deadline"] == "realtime" and opened.options["maxrate"] == "1500000"


def test_vp8_options_only_for_a_vp8_sender() -> None:
    import asyncio

    from aiortc import RTCPeerConnection, RTCSessionDescription

    from swapline.server.webrtc import TunedVp8Encoder, prefer_codec, use_vp8_options

    async def negotiate(mime: str) -> bool:
        client, server = RTCPeerConnection(), RTCPeerConnection()
        client.addTransceiver("video", direction="sendrecv")
        await client.setLocalDescription(await client.createOffer())
        transceiver = server.addTransceiver("video", direction="sendrecv")
        prefer_codec(transceiver, mime)
        await server.setRemoteDescription(RTCSessionDescription(client.localDescription.sdp, "offer"))
        used = use_vp8_options(transceiver)
        encoder = transceiver.sender._RTCRtpSender__encoder
        assert isinstance(encoder, TunedVp8Encoder) == used
        await client.close()
        await server.close()
        return used

    assert asyncio.run(negotiate("video/VP8")) is True
    assert asyncio.run(negotiate("video/H264")) is False


# ------------------------------------------------------------------------- detection cadence


def test_live_engine_detects_every_third_of_a_second(session) -> None:
    from swapline.live import LiveEngine, LiveFrame
    from swapline.live.streamcheck import clip_frames

    from .conftest import media

    frames = clip_frames(media("vid_lp_d18_talking_480.mp4"), limit=30)[0]
    source = session.load_source(read("src_obama.jpg"))
    detector = session.analyser.detector
    calls: list[int] = []
    original = detector.detect

    def counting(images, *args, **kwargs):
        calls.append(len(images))
        return original(images, *args, **kwargs)

    detector.detect = counting
    engine = LiveEngine(session, source, SwapConfig(), fps=30)
    engine.start()
    try:
        for i, image in enumerate(frames):
            engine.submit(LiveFrame(image=image, index=i, captured=time.monotonic()))
            assert engine.latest(timeout=30) is not None
    finally:
        engine.stop()
        del detector.detect
    assert len(calls) == 3  # frames 0, 10 and 20: the mesh follows the face in between
    with pytest.raises(Exception, match="between detections"):
        LiveEngine(session, source, SwapConfig(), detect_every_s=-1)
