"""End to end: the web UI in headless Debian chromium, driven by playwright (never `playwright install`: the browser
is the system's). The app serves a tiny random-weight model on 127.0.0.1 in this process; the page uploads a portrait
and 2 s of speech, sets controls, previews, renders, and the mp4 it offers is fetched and decoded."""
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = os.environ.get("PDFGC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"chromium not found at {CHROMIUM}: scripts/install.sh installs it (apt) in CI")
    pytest.skip(f"chromium not installed ({CHROMIUM}); apt-get install -y chromium", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

from .conftest import write_wav16  # noqa: E402

# gradio's queue uses pandas options that pandas 3 deprecates: not ours
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _synthetic_mapping(model, folder: Path) -> str:
    """Random linear control maps bound to the tiny model: enough for the page's pose/blink controls to run."""
    from pdfgc.families.pdfgc.controls.mapping import (
        BLINK_INPUTS,
        GAZE_INPUTS,
        ControlMappings,
        LinearMap,
        model_fingerprint,
    )
    from pdfgc.families.pdfgc.model import BLINK_DIMS, GAZE_DIMS

    rng = np.random.default_rng(5)
    m = ControlMappings(
        model_sha256=model_fingerprint(model), model_name=model.config.name,
        pose=LinearMap(["yaw", "pitch", "roll", "tx", "ty", "scale"], list(range(6)), rng.normal(size=(6, 6)) * 0.05,
                       rng.normal(size=6)),
        blink=LinearMap(list(BLINK_INPUTS), list(BLINK_DIMS), rng.normal(size=(2, 4)), rng.normal(size=4)),
        gaze=LinearMap(list(GAZE_INPUTS), list(GAZE_DIMS), rng.normal(size=(2, 2)), rng.normal(size=2)),
        emotion_means={k: rng.normal(size=30) for k in ("happy", "sad", "neutral")},
        emotion_neutral=rng.normal(size=30), mouth_closed=rng.normal(size=500))
    return str(m.save(folder / "tiny.controls.json"))


@pytest.fixture(scope="module")
def server(tiny_pipe, tmp_path_factory):
    from pdfgc.ui.app import UISettings, build_app, launch, prepare_work_dir

    saved = {k: os.environ.get(k) for k in ("GRADIO_TEMP_DIR", "GRADIO_ANALYTICS_ENABLED")}
    settings = UISettings(port=_free_port(), work_dir=tmp_path_factory.mktemp("ui"), max_upload_mb=5,
                          max_seconds=20,
                          control_mapping=_synthetic_mapping(tiny_pipe.model, tmp_path_factory.mktemp("mapping")))
    sandbox = prepare_work_dir(settings)
    demo = build_app(tiny_pipe, settings, sandbox)
    _, url = launch(demo, settings, block=False)
    yield url, sandbox
    demo.close()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    url, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1600})
    pg = context.new_page()
    outside = []
    # the page must never reach beyond this machine (gradio is told not to; web fonts, analytics would)
    pg.route("**/*", lambda route: (route.continue_() if route.request.url.startswith((url.rstrip("/"), "data:",
                                                                                       "blob:"))
                                    else (outside.append(route.request.url), route.abort())))
    pg.goto(url)
    pg.wait_for_selector("#render-btn", timeout=30_000)
    yield pg
    context.close()
    assert outside == [], f"the page tried to fetch from outside: {outside}"


@pytest.fixture(scope="module")
def speech_2s(tmp_path_factory) -> Path:
    """2.0 s cut from the shipped example speech, as 16-bit wav."""
    from pdfgc.media.audio_io import load_speech
    from pdfgc.ui.app import EXAMPLES_DIR

    wav = load_speech(EXAMPLES_DIR / "speech.m4a")[:32000]
    path = tmp_path_factory.mktemp("audio") / "speech_2s.wav"
    return write_wav16(path, wav, 16000)


def _upload(page, elem_id: str, path: Path) -> None:
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))


def _number(page, elem_id: str, value: str) -> None:
    """Type into a slider's number box (what a user does for an exact value)."""
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    box.press("Enter")
    expect(box).to_have_value(value)


def test_upload_set_controls_preview_render_and_download(page, server, speech_2s, tmp_path):
    import av

    from pdfgc.media.spectrogram import num_output_frames
    from pdfgc.ui.app import EXAMPLES_DIR

    url, sandbox = server
    _upload(page, "portrait", EXAMPLES_DIR / "anne.png")
    expect(page.locator("#status")).to_contain_text("Portrait anne.png: face used as an aligned 224x224 crop",
                                                    timeout=20_000)
    expect(page.locator("#crop img")).to_be_visible()
    _upload(page, "audio", speech_2s)
    expect(page.locator("#audio-status")).to_contain_text("speech_2s.wav: 2.0 s", timeout=20_000)

    # head pose: explicit controls, the "nod" preset (pitch keyframes) plus a 20 degree yaw slider
    page.get_by_role("tab", name="Head pose").click()
    page.locator("#pose-mode").get_by_text("explicit controls").click()
    page.locator("#pose-preset input").click()
    page.get_by_role("option", name="nod", exact=True).click()
    expect(page.locator("#pose-keyframes textarea")).to_have_value("0:pitch=0; 0.4:pitch=-8; 0.8:pitch=4; 1.2:pitch=0")
    _number(page, "pose-yaw", "20")
    # blinks at 0.5 s and 1.5 s, no random ones; gaze off
    page.get_by_role("tab", name="Eyes").click()
    page.locator("#blink-mode").get_by_text("explicit controls").click()
    page.locator("#blink-times textarea").fill("0.5, 1.5")
    _number(page, "blink-rate", "0")
    page.locator("#gaze-mode").get_by_text("off").click()
    # emotion from an uploaded picture at intensity 0.8
    page.get_by_role("tab", name="Emotion").click()
    page.locator("#emotion-mode").get_by_text("from a video").click()
    _upload(page, "emotion-video", EXAMPLES_DIR / "expression.jpg")
    expect(page.locator("#emotion-video")).to_contain_text("expression.jpg", timeout=20_000)
    _number(page, "emotion-intensity", "0.8")

    controls = ("Explicit controls: pose yaw=20, 4 keyframes, smooth (relative); blinks at 0.5, 1.5 s, "
                "openness 1.")
    page.locator("#preview-btn").click()
    expect(page.locator("#status")).to_contain_text("Preview: 3 frames", timeout=30_000)
    expect(page.locator("#status")).to_contain_text(controls)
    expect(page.locator("#preview img")).to_have_count(3)

    page.locator("#render-btn").click()
    expect(page.locator("#status")).to_contain_text("Done:", timeout=40_000)
    frames = num_output_frames(32000)
    expect(page.locator("#status")).to_contain_text(f"{frames} frames")
    expect(page.locator("#status")).to_contain_text(controls)

    # the page plays it: the browser decodes the metadata of the offered mp4
    video = page.locator("#result-video video")
    expect(video).to_have_count(1)
    page.wait_for_function("document.querySelector('#result-video video').readyState >= 1", timeout=20_000)
    duration = page.evaluate("document.querySelector('#result-video video').duration")
    assert abs(duration - frames / 25) < 0.15, duration

    # the download link serves the file: decode it here
    href = page.locator("#result-file a").first.get_attribute("href")
    assert href and href.endswith(".mp4"), href
    resp = page.request.get(href if href.startswith("http") else url.rstrip("/") + href)
    assert resp.ok, resp.status
    out = tmp_path / "result.mp4"
    out.write_bytes(resp.body())
    with av.open(str(out)) as c:
        assert c.streams.audio, "no audio stream"
        assert c.streams.video[0].codec_context.name == "h264"
        n = sum(1 for _ in c.decode(video=0))
    assert n == frames and abs(n - 2.0 * 25) <= 4, n
    # written under this session's folder of the app's output area, nowhere else
    written = list(sandbox.output_root.rglob("*.mp4"))
    assert len(written) == 1 and written[0].parent.parent == sandbox.output_root


def test_bad_upload_shows_the_error(page, tmp_path):
    bad = tmp_path / "not_a_photo.png"
    bad.write_text("this is text, not a picture")
    _upload(page, "portrait", bad)
    expect(page.locator("#status")).to_contain_text("Error", timeout=20_000)
    expect(page.locator("#status")).to_contain_text("not_a_photo.png: not an image")
    # the path inside the upload area is not shown, only the name the user knows
    assert "/" not in page.locator("#status").inner_text()
    page.locator("#render-btn").click()
    expect(page.locator("#status")).to_contain_text("not_a_photo.png: not an image", timeout=20_000)
    expect(page.locator("#result-video video")).to_have_count(0)
    # over the upload limit (5 MB here): refused by the server before anything is stored, with gradio's notice
    big = tmp_path / "big.wav"
    big.write_bytes(b"\0" * 6_000_000)
    _upload(page, "audio", big)
    expect(page.get_by_text('exceed the maximum allowed size of 5.0 Mb: "big.wav"')).to_be_visible(timeout=20_000)
