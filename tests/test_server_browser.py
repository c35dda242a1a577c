"""The web page in a real browser against a real ``swapline serve`` process.

Playwright drives the system Chromium (``/usr/bin/chromium``; ``.ci/run`` installs it from the OS
packages when it is missing). The page is used as a person would: pick a source photo and a
target photo, wait for the swapped preview, change options and see the preview change, start the
job, watch its bar reach 100 %, download the result and check with SFace that its face is the
source's person rather than the target's. A second test covers a video target (trim fields with
the frame count, a preview frame, cancel and remove) and the one-line error for a file that is not
media. A screenshot of the page at the end of the main test goes into the test's tmp folder.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from swapline.face.recognize import cosine

from .conftest import media, read

CHROMIUM = Path("/usr/bin/chromium")
# without the background-networking flags Chromium keeps calling home, which floods a closed network
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[1]

SOURCE = "src_obama.jpg"       # one frontal face
TARGET = "src_biden.jpg"       # one frontal face, another person
VIDEO = "vid_intel_head-pose-face-detection-male.mp4"  # 65 frames, one face
MIN_MARGIN = 0.10  # cos(out, source) − cos(out, target); tests/test_swap_image.py measured ≥ 0.18

SLOW_MS = 180_000  # first preview loads the models; a 2-core machine is slow

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not found: install Chromium from the OS packages (apt-get install chromium; "
                ".ci/run does it)", allow_module_level=True)
try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("playwright is not installed (pip install -e '.[test]')", allow_module_level=True)


# --------------------------------------------------------------------------------------- fixtures


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(session, model_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: ANN001
    """``swapline serve`` on a free loopback port, sharing the session's model cache.

    It depends on ``session`` so the default models are fetched and converted once, before the
    server starts, rather than by two processes at the same time.
    """
    del session
    data = tmp_path_factory.mktemp("serve-data")
    log = data.parent / f"{data.name}.log"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "SWAPLINE_DEBUG"}
    env["SWAPLINE_HOME"] = str(model_home)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "swapline", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(data)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    srv = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                pytest.fail(f"swapline serve exited with {process.returncode}:\n{srv.tail()}")
            try:
                with urllib.request.urlopen(f"{srv.url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"swapline serve did not answer /health within 120 s:\n{srv.tail()}")
            time.sleep(0.25)
        yield srv
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def problems() -> list[str]:
    """Script errors and console errors the page reported."""
    return []


@pytest.fixture
def page(chromium: Browser, server: Server, problems: list[str]) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    tab.set_default_timeout(SLOW_MS)
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    tab.goto(server.url + "/")
    yield tab
    context.close()


# ---------------------------------------------------------------------------------------- helpers


def _main_face(faces):  # noqa: ANN001, ANN202
    return max(faces, key=lambda f: f.area)


def _preview_bytes(page: Page) -> bytes:
    """The bytes of the image the preview element shows now (a blob: URL of the server's JPEG)."""
    src = page.get_by_test_id("preview").get_attribute("src")
    assert src and src.startswith("blob:"), src
    encoded = page.evaluate(
        """async (src) => {
            const bytes = new Uint8Array(await (await fetch(src)).arrayBuffer());
            let text = "";
            for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
            return btoa(text);
        }""",
        src,
    )
    return base64.b64decode(encoded)


def _wait_preview_settled(page: Page, old_src: str | None) -> str:
    """Wait until a preview newer than ``old_src`` is shown and nothing is pending; its src."""
    page.wait_for_function(
        """(old) => {
            const img = document.querySelector('[data-testid="preview"]');
            const status = document.getElementById('preview-status').textContent;
            return !img.hidden && img.complete && img.naturalWidth > 0 && img.src !== old
                && img.src.startsWith('blob:') && /rendered/.test(status)
                && document.getElementById('preview-box').getAttribute('aria-busy') === 'false';
        }""",
        arg=old_src or "",
        timeout=SLOW_MS,
    )
    src = page.get_by_test_id("preview").get_attribute("src")
    assert src
    return src


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not an image"
    return image


def _identity(session, image: np.ndarray, source, target_embedding) -> tuple[float, float]:  # noqa: ANN001
    found = session.analyse(image)
    assert found, "the image must contain a face"
    out = _main_face(found)
    return cosine(out.embedding, source.embedding), cosine(out.embedding, target_embedding)


# ------------------------------------------------------------------------------------------ tests


def test_pick_preview_change_options_run_and_download(page: Page, problems: list[str], session,  # noqa: ANN001
                                                     tmp_path: Path) -> None:
    source = session.load_source(read(SOURCE))
    target_embedding = _main_face(session.analyse(read(TARGET))).embedding

    expect(page).to_have_title(re.compile("swapline"))
    expect(page.get_by_role("button", name="Start")).to_be_disabled()
    # the swapper choice is filled from GET /models, built-in first
    expect(page.get_by_label("Swapper model").locator("option").first).to_have_attribute("value", "builtin")

    page.get_by_test_id("source-input").set_input_files(media(SOURCE))
    expect(page.get_by_role("img", name=f"Source: {SOURCE}")).to_be_visible()
    page.get_by_test_id("target-input").set_input_files(media(TARGET))
    expect(page.get_by_role("img", name=f"Target: {TARGET}")).to_be_visible()

    # the face found in the target is drawn over its thumbnail and is the reference
    face = page.get_by_role("button", name=re.compile(r"^Face 1\b"))
    expect(face).to_be_visible()
    expect(face).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name=re.compile(r"^Face 2\b"))).to_have_count(0)

    # the swapped preview appears by itself once both inputs are there
    first_src = _wait_preview_settled(page, None)
    first = _preview_bytes(page)
    preview = _decode(first)
    to_source, to_target = _identity(session, preview, source, target_embedding)
    assert to_source > to_target, ("the preview must show the source's person", to_source, to_target)

    # changing options re-renders the preview (several changes in a row: one settled result)
    page.get_by_label("Colour match").select_option("histogram")
    page.get_by_label("Relight").fill("0.6")
    face.click()  # clicking the reference face keeps it the reference
    expect(face).to_have_attribute("aria-pressed", "true")
    second_src = _wait_preview_settled(page, first_src)
    second = _preview_bytes(page)
    assert second_src != first_src
    assert second != first, "the preview must change when the colour match and relight change"
    expect(page.get_by_test_id("error")).to_be_hidden()

    # start: a job row appears and its bar reaches 100 %
    start = page.get_by_test_id("start")
    expect(start).to_be_enabled()
    start.click()
    row = page.get_by_test_id("job-row").first
    expect(row).to_be_visible()
    expect(row.get_by_test_id("job-progress")).to_have_js_property("value", 1, timeout=SLOW_MS)
    expect(row.get_by_test_id("job-state")).to_have_text("done")
    expect(row.get_by_test_id("cancel")).to_be_hidden()

    with page.expect_download(timeout=SLOW_MS) as info:
        row.get_by_test_id("download").click()
    download = info.value
    saved = tmp_path / (download.suggested_filename or "result.jpg")
    download.save_as(saved)
    result = cv2.imread(str(saved), cv2.IMREAD_COLOR)
    assert result is not None, f"the downloaded result {saved.name} is not an image"
    assert result.shape[:2] == read(TARGET).shape[:2]
    to_source, to_target = _identity(session, result, source, target_embedding)
    assert to_source - to_target >= MIN_MARGIN, ("the result must be the source's person", to_source, to_target)

    # the region mask (the face parser's classes, FaceFusion's names): its regions show when it
    # is ticked, and the preview follows them
    regions = page.locator("#regions")
    expect(regions).to_be_hidden()
    page.locator("#mask_region").check()
    expect(regions).to_be_visible()
    third_src = _wait_preview_settled(page, second_src)
    regions.get_by_label("nose").uncheck()
    regions.get_by_label("upper lip").uncheck()
    regions.get_by_label("lower lip").uncheck()
    fourth_src = _wait_preview_settled(page, third_src)
    assert _preview_bytes(page) != second, "the preview must follow the region mask's classes"
    assert fourth_src != third_src

    expect(page.get_by_test_id("error")).to_be_hidden()
    shot = tmp_path / "page.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"screenshot of the page: {shot}")
    assert problems == []


def test_video_target_trim_cancel_and_bad_file(page: Page, problems: list[str], tmp_path: Path) -> None:
    video = media(VIDEO)
    page.get_by_test_id("target-input").set_input_files(video)
    expect(page.get_by_role("img", name=f"Target: {VIDEO}")).to_be_visible()
    # trim fields show for a video, with its frame count
    expect(page.get_by_label("Trim start frame")).to_be_visible()
    expect(page.get_by_label("Trim end frame")).to_be_visible()
    expect(page.locator("#frame-count")).to_contain_text(re.compile(r"\b\d+ frames"))
    frames = int(re.search(r"(\d+) frames", page.locator("#frame-count").inner_text()).group(1))
    assert 30 <= frames <= 100, frames
    expect(page.get_by_role("button", name=re.compile(r"^Face 1\b"))).to_be_visible()

    # a preview of a later frame of the video, then a short trimmed job that is cancelled and removed
    page.get_by_test_id("source-input").set_input_files(media(SOURCE))
    page.get_by_label("Preview frame").fill(str(frames // 2))
    page.get_by_label("Trim start frame").fill("1")
    src = _wait_preview_settled(page, None)
    assert src
    expect(page.locator("#preview-status")).to_contain_text(f"frame {frames // 2}")
    page.get_by_test_id("start").click()
    row = page.get_by_test_id("job-row").first  # the newest job comes first
    expect(row.get_by_test_id("cancel")).to_be_visible()
    job_id = row.get_attribute("data-job-id")
    assert job_id
    row = page.locator(f'[data-testid="job-row"][data-job-id="{job_id}"]')
    row.get_by_test_id("cancel").click()
    expect(row.get_by_test_id("job-state")).to_have_text("cancelled", timeout=SLOW_MS)
    expect(row.get_by_test_id("download")).to_be_hidden()
    row.get_by_test_id("remove").click()
    expect(row).to_have_count(0)

    # trim fields are for videos only
    page.get_by_test_id("target-input").set_input_files(media(TARGET))
    expect(page.get_by_label("Trim start frame")).to_be_hidden()

    # a file that is not media: one line in the alert area, and the current target stays
    junk = tmp_path / "notes.jpg"
    junk.write_bytes(b"this is not a picture\n" * 50)
    page.get_by_test_id("target-input").set_input_files(junk)
    error = page.get_by_test_id("error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("notes.jpg")
    message = page.locator("#error-text").inner_text().strip()
    assert message.startswith("notes.jpg: ") and "\n" not in message, message
    expect(page.get_by_role("img", name=f"Target: {TARGET}")).to_be_visible()
    # the browser logs the refused upload (415) itself; nothing else may have gone wrong
    assert [p for p in problems if "status of 415" not in p] == []

