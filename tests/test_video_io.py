"""Video I/O in-process (PyAV): round trips on real clips, trim, audio copy, rotation, damaged inputs."""

from __future__ import annotations

import os
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from swapline.errors import InputError, OutputError
from swapline.video.reader import VideoInfo, VideoReader, display_matrix, is_video_path, probe
from swapline.video.writer import EncodeOptions, VideoWriter, probe_hardware

from .conftest import media

HAMILTON = "vid_short_hamilton_clip.mp4"  # 640x360, 29.97 fps, AAC, moov at the end
TALKING = "vid_lp_d18_talking_480.mp4"  # 480x480, 30 fps, AAC
NO_AUDIO = "vid_intel_head-pose-face-detection-male.mp4"  # 480x270, 12.5 fps, no audio, moov first


def _audio_packets(path: Path) -> list[tuple[int | None, bytes]]:
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        stream = c.streams.audio[0]
        return [(p.pts, bytes(p)) for p in c.demux(stream) if p.size]


def _decode_all(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(c.streams.video[0])]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse)


def _copy(src: Path, dst: Path, *, trim_start: int = 0, trim_end: int | None = None) -> VideoInfo:
    with VideoReader(src, trim_start=trim_start, trim_end=trim_end) as reader:
        info = reader.info
        audio = src if info.has_audio else None
        with VideoWriter(dst, info, audio_from=audio, trim_start=trim_start, trim_end=trim_end) as writer:
            for frame in reader:
                writer.write(frame.image, frame.pts)
    return info


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


@pytest.mark.parametrize("name", [HAMILTON, TALKING, NO_AUDIO])
def test_round_trip_keeps_frames_timing_and_audio(name: str, tmp_path: Path) -> None:
    src = media(name)
    out = tmp_path / "out.mp4"
    info = _copy(src, out)
    got = probe(out)

    frames_in, frames_out = _decode_all(src), _decode_all(out)
    assert len(frames_out) == len(frames_in) == info.frame_count
    assert got.frame_count == info.frame_count
    assert got.fps == info.fps
    assert got.time_base == info.time_base
    assert got.start_pts == info.start_pts
    assert abs(got.duration - info.duration) <= float(1 / info.fps)
    assert (got.width, got.height) == (info.width, info.height)
    for i in np.linspace(0, len(frames_in) - 1, 4).astype(int):
        assert _psnr(frames_in[i], frames_out[i]) > 35, f"frame {i}"

    assert got.has_audio == info.has_audio
    audio_in, audio_out = _audio_packets(src), _audio_packets(out)
    assert [b for _, b in audio_out] == [b for _, b in audio_in]
    assert [t for t, _ in audio_out] == [t for t, _ in audio_in]
    assert _leftovers(tmp_path) == []


def test_no_audio_input_gives_no_audio_stream(tmp_path: Path) -> None:
    src = media(NO_AUDIO)
    out = tmp_path / "out.mp4"
    with VideoReader(src) as reader, VideoWriter(out, reader.info, audio_from=src) as writer:
        for frame in reader:
            writer.write(frame.image, frame.pts)
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 0
        assert len(c.streams.video) == 1


def test_trim_keeps_30_frames_and_their_audio(tmp_path: Path) -> None:
    src = media(TALKING)
    out = tmp_path / "trim.mp4"
    info = _copy(src, out, trim_start=10, trim_end=40)
    frames_in, frames_out = _decode_all(src), _decode_all(out)
    assert len(frames_out) == 30
    assert _psnr(frames_in[10], frames_out[0]) > 35
    assert _psnr(frames_in[39], frames_out[-1]) > 35
    got = probe(out)
    assert got.fps == info.fps
    assert got.start_pts == info.start_pts  # starts where the input starts
    assert abs(got.duration - 30 / float(info.fps)) <= float(1 / info.fps)

    with av.open(str(out)) as c:
        stream = c.streams.audio[0]
        tb = stream.time_base
        packets = [p for p in c.demux(stream) if p.size]
    packet_s = 1024 / 44100
    first, last = float(packets[0].pts * tb), float(packets[-1].pts * tb)
    assert abs(first) <= packet_s
    assert last <= 30 / float(info.fps) + packet_s
    assert len(packets) == pytest.approx(1.0 / packet_s, abs=3)  # 1 s of audio
    # the kept packets are the input's, unchanged
    in_payloads = [b for _, b in _audio_packets(src)]
    out_payloads = [bytes(p) for p in packets]
    start = in_payloads.index(out_payloads[0])
    assert in_payloads[start : start + len(out_payloads)] == out_payloads


def test_reader_trim_indices_and_bounds() -> None:
    src = media(NO_AUDIO)
    with VideoReader(src, trim_start=60) as reader:
        frames = list(reader)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert frames[0].image.shape == (270, 480, 3) and frames[0].image.dtype == np.uint8
    with pytest.raises(Exception, match="trim-frame"):
        VideoReader(src, trim_start=500)
    with pytest.raises(Exception, match="trim-frame"):
        VideoReader(src, trim_start=10, trim_end=5)


class _FailingDecoder:
    """A container that fails after ``after`` packets, as NVDEC did on a GPU machine whose own
    small probe decoded fine ("Generic error in an external library")."""

    def __init__(self, real: av.container.InputContainer, after: int = 0) -> None:
        self.streams = real.streams
        self._real = real
        self._after = after

    def demux(self, *streams: object) -> object:
        for i, packet in enumerate(self._real.demux(*streams)):
            if i >= self._after:
                raise av.error.ExternalError(542398533, "Generic error in an external library")
            yield packet

    def close(self) -> None:
        self._real.close()


@pytest.mark.parametrize("after", [0, 17])
def test_reader_falls_back_to_software_when_nvdec_fails(monkeypatch: pytest.MonkeyPatch, after: int) -> None:
    src = media(NO_AUDIO)
    with VideoReader(src, hwaccel=False) as reader:
        want = [(f.index, f.pts, f.image) for f in reader]

    def hardware_open(self: VideoReader, hwaccel: bool) -> object:
        self._hardware = True
        return _FailingDecoder(av.open(str(self.path)), after)

    monkeypatch.setattr(VideoReader, "_open", hardware_open)
    with VideoReader(src) as reader:
        got = [(f.index, f.pts, f.image) for f in reader]
    # every frame once, in order, as software decoding gives them
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert all(np.array_equal(g[2], w[2]) for g, w in zip(got, want))
    # without the hardware flag the same failure is the file's fault, and says so
    monkeypatch.setattr(VideoReader, "_open", lambda self, hw: _FailingDecoder(av.open(str(self.path)), after))
    with pytest.raises(InputError, match="corrupt or truncated"), VideoReader(src) as reader:
        list(reader)


def _rotated_copy(tmp_path: Path, degrees: int = 90) -> Path:
    """A remux (no re-encode) of a real clip whose stream carries a display rotation."""
    rotated = tmp_path / "rotated.mp4"
    with av.open(str(media(NO_AUDIO))) as inp, av.open(str(rotated), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        stream.set_display_rotation(degrees)
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            out.mux(packet)
    return rotated


def test_rotation_metadata_is_kept(tmp_path: Path) -> None:
    rotated = _rotated_copy(tmp_path)
    info = probe(rotated)
    assert info.rotation == 90
    assert (info.width, info.height) == (480, 270)  # coded size
    with VideoReader(rotated) as reader:
        assert next(iter(reader)).image.shape == (270, 480, 3)  # coded orientation
    out = tmp_path / "out.mp4"
    _copy(rotated, out)
    assert probe(out).rotation == probe(rotated).rotation == 90


def test_display_matrix_is_read_from_either_shape_of_side_data(tmp_path: Path) -> None:
    # PyAV 18.0 gives a frame's side data as a sequence of side-data objects, 18.1 as a mapping
    # of type to side data (iterating it yields the types): both shapes, built from the real
    # side data of a rotated clip's first frame, give the same matrix
    with av.open(str(_rotated_copy(tmp_path))) as clip:
        frame = next(clip.decode(video=0))
        side_data = frame.side_data
        entries = [item if hasattr(item, "type") else side_data[item] for item in side_data]
        assert len(entries) >= 2  # the display matrix and the encoder's SEI: the matrix is found among others
        as_sequence = list(reversed(entries))
        as_mapping = {sd.type: sd for sd in entries}
        matrix = display_matrix(as_sequence)
        assert matrix is not None and len(matrix) == 9
        assert display_matrix(as_mapping) == display_matrix(side_data) == matrix
        # a 90° rotation: the 16.16 fixed-point rotation part is (0, ∓1; ±1, 0), w = 1 << 30
        a, b, _, c, d, _, _, _, w = matrix
        assert (a, d, w) == (0, 0, 1 << 30) and {abs(b), abs(c)} == {1 << 16} and b == -c
        without = [sd for sd in entries if "DISPLAYMATRIX" not in str(sd.type).upper()]
        assert display_matrix(without) is None
        assert display_matrix({sd.type: sd for sd in without}) is None
        assert display_matrix([]) is None and display_matrix({}) is None


def _expect_bad_input(bad: Path, tmp_path: Path) -> str:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "result.mp4"
    with pytest.raises(InputError) as err, VideoReader(bad) as reader, VideoWriter(out, reader.info) as writer:
        for frame in reader:
            writer.write(frame.image, frame.pts)
    assert list(out_dir.iterdir()) == []  # no output, no temp file
    message = str(err.value)
    assert str(bad) in message and "\n" not in message
    return message


def test_random_bytes_are_not_a_video(tmp_path: Path) -> None:
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    assert "is not a video swapline can read" in _expect_bad_input(bad, tmp_path)


def test_truncated_video_without_its_index_is_reported(tmp_path: Path) -> None:
    data = media(HAMILTON).read_bytes()  # index at the end: cut off with the tail
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(data[: int(len(data) * 0.4)])
    message = _expect_bad_input(bad, tmp_path)
    assert "not a video swapline can read" in message or "corrupt or truncated video" in message


def test_truncated_video_with_its_index_is_read_to_where_it_ends(tmp_path: Path) -> None:
    """Index at the start: the container is readable, the stream ends early — the frames that
    are there come, in order, and the shortfall is counted (not silently shortened)."""
    src = media(NO_AUDIO)
    data = src.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.4)])
    with VideoReader(src) as reader:
        full = [(f.index, f.pts) for f in reader]
    with VideoReader(cut) as reader:
        got = [(f.index, f.pts) for f in reader]
        missing = reader.missing_frames
    assert 0 < len(got) < len(full)
    assert got == full[:len(got)]
    assert missing + len(got) + reader.damaged_packets == reader.info.frame_count


def test_abort_leaves_nothing_and_keeps_existing_output(tmp_path: Path) -> None:
    src = media(TALKING)
    info = probe(src)
    out = tmp_path / "out.mp4"
    with (
        pytest.raises(RuntimeError, match="boom"),
        VideoReader(src) as reader,
        VideoWriter(out, info, audio_from=src) as writer,
    ):
        for frame in reader:
            writer.write(frame.image, frame.pts)
            if frame.index == 5:
                raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    out.write_bytes(b"previous result")
    with pytest.raises(KeyboardInterrupt), VideoWriter(out, info, audio_from=src) as writer:
        writer.write(np.zeros((info.height, info.width, 3), np.uint8))
        raise KeyboardInterrupt
    assert out.read_bytes() == b"previous result"
    assert _leftovers(tmp_path) == []


def test_writer_rejects_bad_output_paths(tmp_path: Path) -> None:
    info = probe(media(NO_AUDIO))
    with pytest.raises(OutputError, match="extension"):
        VideoWriter(tmp_path / "out.gif", info)
    with pytest.raises(OutputError, match="folder does not exist"):
        VideoWriter(tmp_path / "missing" / "out.mp4", info)
    with pytest.raises(OutputError, match="webm"):
        VideoWriter(tmp_path / "out.webm", info)  # libx264 in webm
    assert list(tmp_path.iterdir()) == []


def test_writer_index_based_timing_in_mkv(tmp_path: Path) -> None:
    info = probe(media(NO_AUDIO))
    out = tmp_path / "synthetic.mkv"
    with VideoWriter(out, info, EncodeOptions(crf=23, preset="ultrafast")) as writer:
        for i in range(20):
            writer.write(np.full((info.height, info.width, 3), i * 10, np.uint8))
    got = probe(out)
    assert len(_decode_all(out)) == 20
    assert got.fps == Fraction(25, 2)
    assert got.duration == pytest.approx(20 / 12.5, abs=1 / 12.5)


def test_reader_close_after_partial_iteration_is_prompt(tmp_path: Path) -> None:
    src = media(HAMILTON)
    before = threading.active_count()
    reader = VideoReader(src, queue_size=2)
    it = iter(reader)
    for _ in range(3):
        next(it)
    time.sleep(0.2)  # let the decode thread fill the queue and block
    start = time.perf_counter()
    reader.close()
    assert time.perf_counter() - start < 2.0
    assert threading.active_count() == before

    with VideoReader(src) as reader2:  # breaking out of the loop also stops the thread
        for frame in reader2:
            if frame.index == 2:
                break
    assert threading.active_count() == before


def test_probe_rejects_images_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is not a video swapline can read"):
        probe(media("src_obama.jpg"))
    with pytest.raises(InputError, match="not found"):
        probe(tmp_path / "nothing.mp4")
    assert is_video_path("a/b.MP4") and is_video_path("x.webm") and not is_video_path("x.jpg")


def test_probe_hardware_is_quiet_cached_and_false_here(capfd: pytest.CaptureFixture[str]) -> None:
    probe_hardware.cache_clear()
    hw = probe_hardware()
    assert set(hw) == {"nvenc", "nvdec"}
    if not os.path.exists("/dev/nvidia0"):
        assert hw == {"nvenc": False, "nvdec": False}
    start = time.perf_counter()
    assert probe_hardware() == hw
    assert time.perf_counter() - start < 0.01
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""
    assert EncodeOptions(encoder="auto").resolved_encoder() == ("h264_nvenc" if hw["nvenc"] else "libx264")


def test_frame_conversions_have_no_colour_bias() -> None:
    """libswscale's default BGR <-> YUV path darkens pixels by 1-4 levels per round trip;
    ours must not (a video re-encoded twice keeps its colours)."""
    import av

    from swapline.video.frames import bgr_to_frame, frame_to_bgr

    rng = np.random.default_rng(0)
    natural = cv2.GaussianBlur(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8), (0, 0), 3)
    flat = np.full((120, 160, 3), 90, np.uint8) + np.linspace(0, 60, 160, dtype=np.uint8)[None, :, None]
    for image in (natural, flat):
        back = frame_to_bgr(bgr_to_frame(image))
        bias = (back.astype(int) - image).mean(axis=(0, 1))
        assert np.abs(bias).max() < 0.1, bias
        assert np.abs(back.astype(int) - image).mean() < 1.5
        # what libswscale would do, for contrast
        legacy = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(format="yuv420p").to_ndarray(format="bgr24")
        assert np.abs((legacy.astype(int) - image).mean(axis=(0, 1))).max() > 1.0
    odd = rng.integers(0, 256, (31, 45, 3), dtype=np.uint8)  # odd sizes fall back and still work
    assert frame_to_bgr(bgr_to_frame(odd)).shape == odd.shape
