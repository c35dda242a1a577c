"""The live routes of ``swapline serve`` through FastAPI's TestClient, on a stand-in engine and
runner (milliseconds, no models): the page, offer → answer (VP8, loopback candidates only, no
STUN), stats, options and source changes while it runs, the session limit (429), bad offers and
options, the test hook's gate, the token, and sessions closed at shutdown.

The media path itself (a browser camera over WebRTC, the real engine) is
``tests/test_live_browser.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("aiortc")

from fastapi.testclient import TestClient  # noqa: E402

from swapline.config import RuntimeConfig, SwapConfig  # noqa: E402
from swapline.errors import ConfigError  # noqa: E402
from swapline.server import ServerSettings, create_app  # noqa: E402
from swapline.server.live import LiveSettings  # noqa: E402

from .conftest import media  # noqa: E402


class FakeEngine:
    """The live engine's interface, recording what it is asked."""

    made: ClassVar[list[FakeEngine]] = []

    def __init__(self, session: Any, source: Any, config: SwapConfig, *, fps: float = 30.0,
                 swap_delay_s: float = 0.0) -> None:
        self.session, self.source, self.config, self.fps, self.swap_delay_s = session, source, config, fps, swap_delay_s
        self.started = self.stopped = False
        self.sources: list[Any] = []
        self.configs: list[SwapConfig] = []
        FakeEngine.made.append(self)

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.stopped = True

    @property
    def running(self) -> bool:
        return self.started and not self.stopped

    def submit(self, frame: Any) -> None:
        pass

    def latest(self, timeout: float | None = None) -> Any:
        return None

    def delivered(self, frame: Any) -> None:
        pass

    def set_source(self, source: Any) -> None:
        self.sources.append(source)

    def set_config(self, config: SwapConfig) -> None:
        self.configs.append(config)

    def stats(self) -> Any:
        class Stats:
            def to_dict(self) -> dict[str, Any]:
                return {"captured": 0, "delivered": 0, "dropped": 0, "fps": 0.0, "latency_p50_ms": 0.0,
                        "latency_p95_ms": 0.0, "swap_ms": 0.0}
        return Stats()

    def summary(self) -> str:
        return "nothing"


class FakeRunner:
    """Prepares a 'source' (the upload id of the photo) without models."""

    def __init__(self, runtime: RuntimeConfig) -> None:
        self.session = object()
        self.closed = False

    def source(self, paths: list[Path], config: SwapConfig) -> str:
        return Path(paths[0]).parent.name

    def close(self) -> None:
        self.closed = True


def _client(tmp_path: Path, *, token: str | None = None, **live: Any) -> TestClient:
    FakeEngine.made.clear()
    settings = ServerSettings(data_dir=tmp_path / "data", token=token)
    app = create_app(settings, runner_factory=FakeRunner, live=LiveSettings(engine_factory=FakeEngine, **live))
    return TestClient(app)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with _client(tmp_path) as c:
        yield c


def browser_offer(*, video: bool = True) -> str:
    """An offer as a browser sends it (made by an aiortc peer), after gathering."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video" if video else "audio", direction="sendrecv")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


def upload(client: TestClient, name: str) -> str:
    r = client.post("/uploads", files={"file": (name, media(name).read_bytes(), "application/octet-stream")})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def start(client: TestClient, **body: Any) -> Any:
    return client.post("/live/offer", json={"sdp": browser_offer(), "type": "offer", **body})


def test_the_page_and_its_link(client: TestClient) -> None:
    r = client.get("/live")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for testid in ("live-source-input", "live-start", "live-stop", "live-local", "live-remote", "live-fps",
                   "live-latency", "live-error"):
        assert f'data-testid="{testid}"' in r.text
    assert client.get("/live.js").status_code == 200 and client.get("/live.css").status_code == 200
    assert 'href="/live"' in client.get("/").text
    assert "/live/offer" in client.get("/openapi.json").json()["paths"]


def test_offer_answer_stats_changes_and_close(client: TestClient) -> None:
    source = upload(client, "src_obama.jpg")
    r = start(client, source=source, options={"face_selector_mode": "many"})
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["type"] == "answer" and answer["source"] == source
    sdp = answer["sdp"]
    # VP8 first (both directions use the answer's first codec); host candidates on loopback only; no STUN
    rtpmaps = re.findall(r"a=rtpmap:\d+ ([\w-]+)/", sdp)
    assert rtpmaps[:2] == ["VP8", "rtx"], rtpmaps
    candidates = re.findall(r"a=candidate:\S+ \d+ \w+ \d+ (\S+) \d+ typ (\w+)", sdp)
    assert candidates and all(c == ("127.0.0.1", "host") for c in candidates), candidates

    engine = FakeEngine.made[-1]
    assert engine.started and engine.source == source and engine.config.face_selector_mode == "many"
    assert engine.swap_delay_s == 0.0

    session_id = answer["id"]
    stats = client.get(f"/live/{session_id}/stats").json()
    assert {"captured", "delivered", "dropped", "fps", "latency_p50_ms", "latency_p95_ms", "swap_ms"} <= set(stats)
    assert stats["options"] == {"face_selector_mode": "many"} and stats["transport"]["received"] == 0

    r = client.post(f"/live/{session_id}/options", json={"color_match": "histogram", "relight": 0.6})
    assert r.status_code == 200, r.text
    assert engine.configs[-1] == SwapConfig(color_match="histogram", relight=0.6)
    assert r.json()["options"] == {"color_match": "histogram", "relight": 0.6}

    other = upload(client, "src_biden.jpg")
    r = client.post(f"/live/{session_id}/source", json={"source": other})
    assert r.status_code == 200 and r.json()["source"] == other and engine.sources[-1] == other
    r = client.post(f"/live/{session_id}/source", json={"source": None})
    assert r.status_code == 200 and engine.sources[-1] is None

    assert client.delete(f"/live/{session_id}").status_code == 204
    assert engine.stopped
    for method, path in (("GET", "stats"), ("POST", "options"), ("POST", "source")):
        r = client.request(method, f"/live/{session_id}/{path}", json={} if method == "POST" else None)
        assert r.status_code == 404, (path, r.text)
    assert client.delete(f"/live/{session_id}").status_code == 404


def test_at_most_n_sessions(tmp_path: Path) -> None:
    with _client(tmp_path, max_sessions=1) as client:
        first = start(client)
        assert first.status_code == 201, first.text
        r = start(client)
        assert r.status_code == 429 and "1 live session" in r.json()["detail"] and r.headers["retry-after"]
        assert client.delete(f"/live/{first.json()['id']}").status_code == 204
        assert start(client).status_code == 201


def test_bad_offers_options_and_sources(client: TestClient) -> None:
    def detail(r: Any, status: int) -> str:
        assert r.status_code == status, r.text
        return str(r.json()["detail"])

    assert "unknown live option 'trim_end'" in detail(start(client, options={"trim_end": 5}), 422)
    assert "relight" in detail(start(client, options={"relight": 7}), 422)
    # the test hook is an unknown option unless the server runs with SWAPLINE_TEST_HOOKS=1
    assert "_swap_delay_s" in detail(start(client, options={"_swap_delay_s": 0.1}), 422)
    assert "no upload" in detail(start(client, source="f" * 32), 422)
    video = upload(client, "vid_intel_head-pose-face-detection-male.mp4")
    assert "must be a photo" in detail(start(client, source=video), 415)
    r = client.post("/live/offer", json={"sdp": browser_offer(video=False), "type": "offer"})
    assert "no video" in detail(r, 422)
    assert "type" in detail(client.post("/live/offer", json={"sdp": "v=0", "type": "answer"}), 422)
    assert detail(client.post("/live/offer", content=b"{nope", headers={"content-type": "application/json"}), 422)
    assert FakeEngine.made == [] or all(e.stopped for e in FakeEngine.made)  # nothing left running
    r = start(client)
    session_id = r.json()["id"]
    assert "unknown live option" in detail(client.post(f"/live/{session_id}/options", json={"bogus": 1}), 422)


def test_test_hook_slows_the_swap_when_enabled(tmp_path: Path) -> None:
    with _client(tmp_path, test_hooks=True) as client:
        r = start(client, options={"_swap_delay_s": 0.15})
        assert r.status_code == 201, r.text
        assert FakeEngine.made[-1].swap_delay_s == 0.15
        assert start(client, options={"_swap_delay_s": -1}).status_code == 422


def test_token_applies_to_live_routes(tmp_path: Path) -> None:
    with _client(tmp_path, token="s3cret") as client:
        assert client.get("/live").status_code == 401
        assert client.post("/live/offer", json={}).status_code == 401
        r = client.post("/live/offer", json={"sdp": browser_offer(), "type": "offer"},
                        headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 201, r.text


def test_shutdown_closes_sessions_and_the_live_runner(tmp_path: Path) -> None:
    with _client(tmp_path) as client:
        assert start(client).status_code == 201
        assert start(client).status_code == 201
        engines = list(FakeEngine.made)
        live = client.app.state.live
        runner = live._runner
        assert len(live) == 2
    assert all(e.stopped for e in engines) and len(live) == 0 and runner.closed


def test_settings_from_the_environment() -> None:
    assert LiveSettings.from_env({}) == LiveSettings()
    got = LiveSettings.from_env({"SWAPLINE_LIVE_MAX_SESSIONS": "5", "SWAPLINE_TEST_HOOKS": "1"})
    assert got.max_sessions == 5 and got.test_hooks
    with pytest.raises(ConfigError):
        LiveSettings.from_env({"SWAPLINE_LIVE_MAX_SESSIONS": "many"})
    with pytest.raises(ConfigError):
        LiveSettings(max_sessions=0)


def test_sessions_encode_with_the_tuned_vp8_settings(client: TestClient) -> None:
    from swapline.server.webrtc import TunedVp8Encoder, Vp8Options

    r = start(client)
    assert r.status_code == 201, r.text
    pc = client.app.state.live.get(r.json()["id"]).pc
    (transceiver,) = pc.getTransceivers()
    encoder = transceiver.sender._RTCRtpSender__encoder
    assert isinstance(encoder, TunedVp8Encoder) and encoder.options == Vp8Options()


def test_live_runner_threads_and_opencv_threads_while_live(tmp_path: Path) -> None:
    import cv2

    from swapline.server.live import live_runtime

    assert live_runtime(RuntimeConfig(), LiveSettings()).intra_op_threads == 1
    assert live_runtime(RuntimeConfig(intra_op_threads=3), LiveSettings()).intra_op_threads == 3  # the user's
    assert live_runtime(RuntimeConfig(), LiveSettings(onnx_threads=0)).intra_op_threads == 0
    with pytest.raises(ConfigError):
        LiveSettings(opencv_threads=-1)

    made: list[RuntimeConfig] = []

    def runner(runtime: RuntimeConfig) -> FakeRunner:
        made.append(runtime)
        return FakeRunner(runtime)

    before = cv2.getNumThreads()
    settings = ServerSettings(data_dir=tmp_path / "data")
    live = LiveSettings(engine_factory=FakeEngine, opencv_threads=1)
    with TestClient(create_app(settings, runner_factory=runner, live=live)) as client:
        first, second = start(client).json()["id"], start(client).json()["id"]
        # the live runner's models run on one thread; the server's other runners keep the default
        assert made[-1].intra_op_threads == 1 and {m.intra_op_threads for m in made[:-1]} == {0}
        assert cv2.getNumThreads() == 1
        assert client.delete(f"/live/{first}").status_code == 204
        assert cv2.getNumThreads() == 1  # one session is still open
        assert client.delete(f"/live/{second}").status_code == 204
        assert cv2.getNumThreads() == before
        start(client)
        assert cv2.getNumThreads() == 1
    assert cv2.getNumThreads() == before  # shutdown closed it
