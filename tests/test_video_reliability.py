"""Video promises under awkward but valid or damaged input (issue 9): odd sizes are kept exactly,
every audio, subtitle and data stream is copied packet for packet, a clip with damaged bytes in
the middle is finished (the damage counted), and a faceless clip is remuxed, not re-encoded.

The clips are built here from the shared media with PyAV; each is short (12–30 frames).
"""

from __future__ import annotations

import collections
import re
import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from swapline import cli
from swapline.video.clip import write_clip
from swapline.video.reader import VideoReader, probe
from swapline.video.writer import EncodeOptions, VideoWriter

from .conftest import media, read

TALKING = "vid_lp_d18_talking_480.mp4"  # 480x480, 30 fps, AAC, one face


def _talking_frames(n: int) -> list[np.ndarray]:
    out = []
    with av.open(str(media(TALKING))) as c:
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="bgr24"))
            if len(out) == n:
                break
    return out


def _packets(path: Path) -> dict[int, list[tuple[bytes, int | None, int | None]]]:
    """Per stream index: (payload, pts, dts) of every non-empty packet, in file order."""
    found: dict[int, list[tuple[bytes, int | None, int | None]]] = collections.defaultdict(list)
    with av.open(str(path)) as c:
        for p in c.demux():
            if p.size:
                found[p.stream.index].append((bytes(p), p.pts, p.dts))
    return dict(found)


def _swap_cli(model_home: Path, capsys: pytest.CaptureFixture[str], target: Path, out: Path) -> tuple[int, str]:
    code = cli.main(["swap", "-s", str(media("src_biden.jpg")), "-t", str(target), "-o", str(out)])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def biden(session):  # noqa: ANN001, ANN201
    return session.load_source(read("src_biden.jpg"))


# ------------------------------------------------------------------------------------ odd sizes


def test_odd_sized_clip_is_swapped_at_its_exact_size(session, biden, tmp_path: Path) -> None:  # noqa: ANN001
    frames = []
    for f in _talking_frames(12):
        canvas = np.full((359, 641, 3), 70, np.uint8)
        canvas[:, 141:500] = cv2.resize(f, (359, 359), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    clip = tmp_path / "odd.mp4"
    write_clip(iter(frames), clip, fps=Fraction(25))
    assert (probe(clip).width, probe(clip).height) == (641, 359)
    out = tmp_path / "odd_out.mp4"
    report = session.swap_video(biden, clip, out)
    info = probe(out)
    assert (info.width, info.height) == (641, 359)  # never resized
    assert info.frame_count == 12 == report.frames
    assert report.swapped > 0 and not report.remuxed
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("encoder", ["libx264", "libx265"])
@pytest.mark.parametrize("size", [(641, 359), (640, 359), (641, 360)])
def test_writer_encodes_odd_sizes(encoder: str, size: tuple[int, int], tmp_path: Path) -> None:
    w, h = size
    src = tmp_path / "src.mkv"
    rng = np.random.default_rng(0)
    write_clip(iter([rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(3)]), src, fps=25)
    out = tmp_path / "out.mkv"
    with VideoReader(src) as reader, VideoWriter(out, reader.info, EncodeOptions(encoder=encoder, preset="ultrafast")) as wr:
        for frame in reader:
            wr.write(frame.image, frame.pts)
    info = probe(out)
    assert (info.width, info.height) == (w, h) and info.frame_count == 3


# ------------------------------------------------------------------------- all streams copied


def _multi_stream_clip(path: Path, frames: list[np.ndarray]) -> None:
    """Video (the frames), two AAC tracks (different payloads), a mov_text subtitle track and a
    data track."""
    talking = av.open(str(media(TALKING)))
    try:
        audio_src = talking.streams.audio[0]
        aac = [p for p in talking.demux(audio_src) if p.size]
        with av.open(str(path), "w") as out:
            v = out.add_stream("libx264", rate=25)
            v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
            a1 = out.add_stream_from_template(audio_src)
            a2 = out.add_stream_from_template(audio_src)
            sub = out.add_mux_stream("mov_text")
            sub.time_base = Fraction(1, 1000)
            data = out.add_data_stream("bin_data")
            data.time_base = Fraction(1, 1000)
            for i, img in enumerate(frames):
                vf = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format="yuv420p")
                vf.pts = i
                out.mux(v.encode(vf))
            out.mux(v.encode(None))
            span = len(frames) / 25 * float(1 / audio_src.time_base)
            first, later = [p for p in aac if p.pts < span], aac[60:]
            for stream, packets in ((a1, first), (a2, later)):
                for k, p in enumerate(packets[: len(first)]):
                    q = av.Packet(bytes(p))
                    q.pts = q.dts = first[k].pts
                    q.time_base, q.stream = p.time_base, stream
                    out.mux(q)
            for k, text in enumerate([b"first line", b"second line"]):
                q = av.Packet(struct.pack(">H", len(text)) + text)
                q.pts = q.dts = k * 300
                q.duration, q.time_base, q.stream = 200, Fraction(1, 1000), sub
                out.mux(q)
            for k in range(3):
                q = av.Packet(bytes([k + 1]) * 16)
                q.pts = q.dts = k * 150
                q.time_base, q.stream = Fraction(1, 1000), data
                out.mux(q)
    finally:
        talking.close()


def test_all_audio_subtitle_and_data_streams_are_copied(model_home: Path, capsys: pytest.CaptureFixture[str],
                                                        tmp_path: Path) -> None:
    clip = tmp_path / "multi.mp4"
    _multi_stream_clip(clip, _talking_frames(15))
    before = _packets(clip)
    with av.open(str(clip)) as c:
        kinds = [s.type for s in c.streams]
    assert kinds == ["video", "audio", "audio", "subtitle", "data"]
    assert before[1] != before[2]  # two different audio tracks
    out = tmp_path / "multi_out.mp4"
    code, err = _swap_cli(model_home, capsys, clip, out)
    assert code == 0, err
    assert "2 audio tracks, 1 subtitle stream and 1 data stream copied" in err
    after = _packets(out)
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == kinds
    for index in (1, 2, 3, 4):  # payload and timestamps unchanged
        assert after[index] == before[index], index
    assert before[0] != after[0]  # the video was swapped and re-encoded
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------------------------- damage


def test_damaged_middle_is_concealed_or_skipped_and_counted(model_home: Path, capsys: pytest.CaptureFixture[str],
                                                           tmp_path: Path) -> None:
    clip = tmp_path / "clean.mp4"
    write_clip(iter(_talking_frames(30)), clip, fps=Fraction(25))
    with av.open(str(clip)) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    # the first packet of the middle third big enough to damage 300 bytes of it
    pos, _ = next((pos, size) for pos, size in packets[10:20] if size >= 600)
    data = bytearray(clip.read_bytes())
    data[pos + 4 : pos + 304] = b"\xa5" * 300
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    digest = damaged.read_bytes()

    out = tmp_path / "damaged_out.mp4"
    code, err = _swap_cli(model_home, capsys, damaged, out)
    assert code == 0, err
    m = re.search(r"is damaged: (\d+) damaged video packets? skipped|is damaged: (\d+) damaged frames? repaired", err)
    assert m, err
    lost = re.search(r"(\d+) damaged video packets? skipped", err)
    skipped = int(lost.group(1)) if lost else 0
    assert 1 <= int(m.group(1) or m.group(2)) <= 5
    info = probe(out)
    assert 30 - skipped - 2 <= info.frame_count <= 30
    assert damaged.read_bytes() == digest  # the input is not modified
    assert _leftovers(tmp_path) == []


def test_reader_skips_packets_the_decoder_rejects(tmp_path: Path) -> None:
    clip = tmp_path / "clean.mp4"
    write_clip(iter(_talking_frames(30)), clip, fps=Fraction(25))
    with av.open(str(clip)) as c:
        packets = [(p.pos, p.size) for p in c.demux(video=0) if p.size]
    data = bytearray(clip.read_bytes())
    for pos, size in packets[12:20:3]:  # three packets' NAL headers overwritten
        data[pos : pos + min(size, 64)] = b"\xa5" * min(size, 64)
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    with VideoReader(damaged) as reader:
        frames = [f.index for f in reader]
    assert reader.damaged_packets + reader.concealed_frames >= 1
    assert frames == list(range(len(frames)))
    assert 30 - reader.damaged_packets - 2 <= len(frames) <= 30


def test_unreadable_container_is_still_an_error(model_home: Path, capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    clip = tmp_path / "clean.mp4"
    write_clip(iter(_talking_frames(5)), clip, fps=Fraction(25))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0" * 64 + clip.read_bytes()[64:])  # the header is gone
    code, err = _swap_cli(model_home, capsys, bad, tmp_path / "bad_out.mp4")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "bad_out.mp4").exists()


# ------------------------------------------------------------------------------ faceless clip


def test_faceless_clip_is_remuxed_unchanged(model_home: Path, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    ramp = np.linspace(0, 120, 320, dtype=np.uint8)[None, :, None]
    frames = [np.full((240, 320, 3), 60 + i * 3, np.uint8) + ramp for i in range(20)]
    clip = tmp_path / "empty.mp4"
    _multi_stream_clip(clip, frames)
    before = _packets(clip)
    out = tmp_path / "empty_out.mp4"
    code, err = _swap_cli(model_home, capsys, clip, out)
    assert code == 0, err
    assert "no face was swapped" in err and "copied unchanged" in err
    after = _packets(out)
    assert after == before  # video packets too: remuxed, not re-encoded
    assert probe(out).frame_count == 20
    assert _leftovers(tmp_path) == []


def test_faceless_clip_with_a_trim_is_re_encoded(session, biden, tmp_path: Path) -> None:  # noqa: ANN001
    from swapline.config import VideoConfig

    frames = [np.full((240, 320, 3), 80 + i, np.uint8) for i in range(12)]
    clip = tmp_path / "plain.mp4"
    write_clip(iter(frames), clip, fps=Fraction(25))
    out = tmp_path / "plain_out.mp4"
    report = session.swap_video(biden, clip, out, video=VideoConfig(trim_start=2, trim_end=10))
    assert report.swapped == 0 and not report.remuxed
    assert probe(out).frame_count == 8
    assert _leftovers(tmp_path) == []
