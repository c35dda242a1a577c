"""The job core: a Job run by a Runner reports ordered progress, cancels cleanly, copies a
faceless target through exactly as the CLI does, and previews a frame."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from swapline import cli
from swapline.config import SwapConfig, VideoConfig
from swapline.errors import ConfigError, InputError, JobCancelled, NoFaceError
from swapline.face.recognize import cosine
from swapline.jobs import CancelToken, Job, JobEvent, Runner, options_from_dict, options_to_dict

from .conftest import media, read

CLIP = "vid_lp_d18_talking_480.mp4"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def runner(session):  # noqa: ANN001, ANN201 - the shared session: models loaded once
    return Runner(session=session, progress_interval=0.0)


def test_options_round_trip_and_refuse_unknown_names() -> None:
    config, video = options_from_dict({"face_selector_mode": "many", "relight": 0.5, "face_mask_types": ["box"],
                                       "trim_end": 10})
    assert config.face_selector_mode == "many" and config.face_mask_types == ("box",) and video.trim_end == 10
    assert options_from_dict(options_to_dict(config, video)) == (config, video)
    assert options_to_dict(SwapConfig(), VideoConfig()) == {}
    with pytest.raises(ConfigError, match="unknown option 'colour'"):
        options_from_dict({"colour": "lab"})
    with pytest.raises(ConfigError, match="relight"):
        options_from_dict({"relight": 3})
    job = Job(sources=("a.jpg",), target="b.mp4", output="c.mp4", config=config, video=video)
    assert Job.from_dict(job.to_dict()) == job


def test_video_progress_arrives_in_order_and_ends_at_the_frame_count(runner: Runner, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    events: list[JobEvent] = []
    job = Job(sources=(media("src_biden.jpg"),), target=media(CLIP), output=out, video=VideoConfig(trim_end=30))
    result = runner.run(job, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done" and kinds.count("done") == 1
    assert events[0].total == 30
    progress = [e for e in events if e.kind == "progress"]
    done = [e.done for e in progress]
    assert done == sorted(done) and done[-1] == 30 and len(done) >= 10
    assert all(e.total == 30 for e in progress)
    assert all(0.0 <= share <= 1.0 for e in progress for share in e.busy.values())
    assert {"detect", "swap"} <= set(progress[-1].busy)
    assert progress[-1].fps > 0 and progress[-1].eta_s == 0
    assert result.frames == 30 == _frame_count(out) and result.swapped >= 28
    assert events[-1].message == result.summary and "30 frames" in result.summary


def test_cancel_mid_video_leaves_nothing_and_the_next_job_runs(runner: Runner, tmp_path: Path) -> None:
    out = tmp_path / "cancelled.mp4"
    token = CancelToken()
    events: list[JobEvent] = []

    def on_event(event: JobEvent) -> None:
        events.append(event)
        if event.kind == "progress" and event.done >= 5:
            token.cancel()

    job = Job(sources=(media("src_biden.jpg"),), target=media(CLIP), output=out)
    with pytest.raises(JobCancelled):
        runner.run(job, on_event=on_event, cancel=token)
    assert events[-1].kind == "cancelled" and events[-1].exit_code == 130
    stopped_at = max(e.done for e in events if e.kind == "progress")
    assert stopped_at <= 5 + VideoConfig().batch_size  # within one frame batch
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file
    # the runner is fine afterwards
    result = runner.run(Job(sources=(media("src_biden.jpg"),), target=media("src_obama.jpg"),
                            output=tmp_path / "next.jpg"))
    assert result.swapped == 1 and (tmp_path / "next.jpg").exists()


def test_a_cancelled_token_stops_before_any_work(runner: Runner, tmp_path: Path) -> None:
    token = CancelToken()
    token.cancel()
    events: list[JobEvent] = []
    with pytest.raises(JobCancelled):
        runner.run(Job(sources=(media("src_biden.jpg"),), target=media("src_obama.jpg"), output=tmp_path / "x.jpg"),
                   on_event=events.append, cancel=token)
    assert [e.kind for e in events] == ["cancelled"] and not (tmp_path / "x.jpg").exists()


def test_errors_are_typed_and_reported_once(runner: Runner, tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), np.full((200, 200, 3), 128, np.uint8))
    for job, error in [(Job(sources=(grey,), target=media("src_obama.jpg"), output=tmp_path / "a.jpg"), NoFaceError),
                       (Job(sources=(tmp_path / "missing.jpg",), target=media("src_obama.jpg"),
                            output=tmp_path / "b.jpg"), InputError)]:
        events: list[JobEvent] = []
        with pytest.raises(error) as info:
            runner.run(job, on_event=events.append)
        final = [e for e in events if e.final]
        assert len(final) == 1 and final[0].kind == "failed" and final[0].error == error.__name__
        assert final[0].message == str(info.value) and final[0].exit_code == error.exit_code
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grey.png"]


def test_no_face_copy_through_is_the_same_via_the_cli_and_the_job_core(runner: Runner, tmp_path: Path) -> None:
    target = tmp_path / "wall.jpg"
    cv2.imwrite(str(target), cv2.GaussianBlur(read("src_obama.jpg")[:120, :200], (0, 0), 9))
    by_core = tmp_path / "core.jpg"
    events: list[JobEvent] = []
    result = runner.run(Job(sources=(media("src_biden.jpg"),), target=target, output=by_core), on_event=events.append)
    assert result.copied_through and result.faces == 0
    assert any(e.kind == "warning" and "no face found in the target" in e.message for e in events)
    by_cli = tmp_path / "cli.jpg"
    code = cli.main(["swap", "-s", str(media("src_biden.jpg")), "-t", str(target), "-o", str(by_cli),
                     "--quiet"])
    assert code == 0
    assert _sha(by_core) == _sha(by_cli) == _sha(target)


def test_preview_swaps_one_frame_and_lists_the_faces(runner: Runner) -> None:
    config = SwapConfig()
    target = media("multi_two_people_obama_biden.jpg")
    faces = runner.faces(target, config)
    assert len(faces) == 2 and [f["position"] for f in faces] == [0, 1]
    assert faces[0]["box"][2] * faces[0]["box"][3] >= faces[1]["box"][2] * faces[1]["box"][3]  # large-small
    source = media("src_astronaut_eileen_collins.png")
    image = runner.preview([source], target, config)
    original = read("multi_two_people_obama_biden.jpg")
    assert image.shape == original.shape and not np.array_equal(image, original)
    # the preview of frame 12 of a video is that frame, swapped, and carries the source
    frame = runner.frame(media(CLIP), frame=12)
    swapped = runner.preview([media("src_biden.jpg")], media(CLIP), config, frame=12)
    assert swapped.shape == frame.shape
    session = runner.session
    out_face = max(session.analyse(swapped), key=lambda f: f.area)
    in_face = max(session.analyse(frame), key=lambda f: f.area)
    biden = runner.source([media("src_biden.jpg")], config)
    assert cosine(out_face.embedding, biden.embedding) > cosine(out_face.embedding, in_face.embedding)
    # a second preview reuses the prepared source
    assert runner.source([media("src_biden.jpg")], config) is biden


def test_every_advertised_video_extension_is_written(runner: Runner, tmp_path: Path) -> None:
    from swapline.errors import OutputError
    from swapline.formats import VIDEO_OUTPUT_EXTENSIONS

    silent = media("vid_intel_head-pose-face-detection-male.mp4")  # no audio: every container holds it
    for ext in VIDEO_OUTPUT_EXTENSIONS:
        out = tmp_path / f"out{ext}"
        result = runner.run(Job(sources=(media("src_biden.jpg"),), target=silent, output=out,
                                video=VideoConfig(trim_end=3)))
        assert result.frames == 3 == _frame_count(out), ext
    # AAC audio cannot go into WebM: refused with a clear line before any frame is swapped
    with pytest.raises(OutputError, match="cannot hold the input's aac audio"):
        runner.run(Job(sources=(media("src_biden.jpg"),), target=media(CLIP), output=tmp_path / "a.webm",
                       video=VideoConfig(trim_end=3)))
    assert not (tmp_path / "a.webm").exists()
