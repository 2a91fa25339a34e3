"""The web UI's callbacks without a browser: sandboxing, upload checks, widget values -> options, preview, render."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pdfgc.errors import InputError
from pdfgc.options import AnimateOptions
from pdfgc.ui.app import BASE_INPUTS, CONTROL_INPUTS, EXAMPLES_DIR, Sandbox, UIBackend, UISettings, user_message

from .conftest import write_wav16

pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


def _wav(path: Path, seconds: float, rate: int = 16000, silent: bool = False) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    x = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return write_wav16(path, x, rate)


@pytest.fixture
def area(tmp_path):
    """An upload area with a few 'uploaded' files, as gradio lays them out (one folder per upload)."""
    sb = Sandbox(tmp_path / "uploads", tmp_path / "outputs", max_upload_mb=1)
    up = sb.upload_root

    def put(name: str, data: bytes | Path) -> Path:
        d = up / f"h{len(list(up.iterdir()))}"
        d.mkdir()
        p = d / name
        p.write_bytes(data.read_bytes() if isinstance(data, Path) else data)
        return p
    return sb, put


@pytest.fixture
def backend(tiny_pipe, area):
    sb, put = area
    return UIBackend(tiny_pipe, UISettings(max_upload_mb=1, max_seconds=5, preview_frames=3, preview_seconds=1), sb)


@pytest.fixture(scope="module")
def mapping_file(tiny, tmp_path_factory):
    """A synthetic control mapping bound to the tiny model (random linear maps, three emotion labels)."""
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
        model_sha256=model_fingerprint(tiny), model_name=tiny.config.name,
        pose=LinearMap(["yaw", "pitch", "roll", "tx", "ty", "scale"], list(range(6)), rng.normal(size=(6, 6)) * 0.05,
                       rng.normal(size=6)),
        blink=LinearMap(list(BLINK_INPUTS), list(BLINK_DIMS), rng.normal(size=(2, 4)), rng.normal(size=4)),
        gaze=LinearMap(list(GAZE_INPUTS), list(GAZE_DIMS), rng.normal(size=(2, 2)), rng.normal(size=2)),
        emotion_means={k: rng.normal(size=30) for k in ("happy", "sad", "neutral")},
        emotion_neutral=rng.normal(size=30), mouth_closed=rng.normal(size=500))
    return str(m.save(tmp_path_factory.mktemp("mapping") / "tiny.controls.json"))


@pytest.fixture
def cbackend(tiny_pipe, area, mapping_file):
    sb, _ = area
    return UIBackend(tiny_pipe, UISettings(max_upload_mb=1, max_seconds=5, control_mapping=mapping_file), sb)


def _values(**kw) -> dict:
    v = dict(portrait=str(EXAMPLES_DIR / "anne.png"), audio=str(EXAMPLES_DIR / "speech.m4a"), lips_mode="audio",
             pose_mode="still", blink_mode="still", gaze_mode="still", emotion_mode="still")
    v.update(kw)
    return v


def _args(v: dict) -> list:
    return [v.get(k) for k in BASE_INPUTS]


# ---- sandbox --------------------------------------------------------------------------------------------------
def test_sandbox_accepts_uploads_and_shipped_examples(area):
    sb, put = area
    p = put("a.png", EXAMPLES_DIR / "anne.png")
    assert sb.input(str(p), "portrait") == p.resolve()
    assert sb.input({"path": str(p), "orig_name": "a.png"}, "portrait") == p.resolve()  # gradio FileData as dict
    assert sb.input(str(EXAMPLES_DIR / "speech.m4a"), "audio") == (EXAMPLES_DIR / "speech.m4a").resolve()
    assert sb.input(None, "audio") is None and sb.input("", "audio") is None


def test_sandbox_refuses_paths_outside_the_upload_area(area, tmp_path):
    sb, put = area
    outside = tmp_path / "secret.png"
    outside.write_bytes((EXAMPLES_DIR / "anne.png").read_bytes())
    for bad in (str(outside), "/etc/passwd", str(sb.upload_root / ".." / "secret.png"),
                str(sb.output_root / ".." / "secret.png")):
        with pytest.raises(InputError, match="outside the upload area"):
            sb.input(bad, "portrait")
    # a link planted inside the upload area that points outside is followed before the check
    link = sb.upload_root / "link.png"
    os.symlink(outside, link)
    with pytest.raises(InputError, match="outside the upload area"):
        sb.input(str(link), "portrait")
    # the examples folder's parent (the package) is not readable either
    with pytest.raises(InputError, match="outside the upload area"):
        sb.input(str(EXAMPLES_DIR.parent / "app.py"), "portrait")


def test_sandbox_upload_size_limit_and_missing_files(area):
    sb, put = area
    big = put("big.wav", b"\0" * 1_200_000)
    with pytest.raises(InputError, match=r"big.wav: 1.2 MB is over the 1 MB upload limit"):
        sb.input(str(big), "audio")
    with pytest.raises(InputError, match="gone.wav: not found"):
        sb.input(str(sb.upload_root / "gone.wav"), "audio")


def test_session_folders_stay_inside_the_output_area(area):
    sb, _ = area
    for session in ("abc123", "../../etc", "/tmp/x", "", None, "a/b\\c"):
        d = sb.session_dir(session)
        assert d.parent == sb.output_root and d.is_dir()
    assert sb.session_dir("abc123") != sb.session_dir("abc124")
    p = sb.output_path("abc123")
    assert p.parent == sb.output_root / "abc123" and p.suffix == ".mp4"


def test_messages_show_file_names_not_upload_paths(area):
    sb, put = area
    p = put("photo.png", b"x")
    err = InputError(f"{p}: not an image, or an image format that cannot be read")
    assert user_message(err, [p]) == "photo.png: not an image, or an image format that cannot be read"
    other = sb.upload_root / "h9" / "copy.wav"
    msg = user_message(InputError(f"audio file {other} has no audio track"), [], (sb.upload_root,))
    assert msg == "audio file copy.wav has no audio track"


# ---- upload-time checks ---------------------------------------------------------------------------------------
def test_check_portrait_good_bad_and_no_face(backend, area):
    _, put = area
    crop, msg = backend.check_portrait(str(put("anne.png", EXAMPLES_DIR / "anne.png")))
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert msg == "Portrait anne.png: face used as an aligned 224x224 crop."
    crop, msg = backend.check_portrait(str(put("notes.png", b"just text")))
    assert crop is None
    assert msg == "**Error:** notes.png: not an image, or an image format that cannot be read"
    # a real photo without a face: mediapipe finds none (a flat grey 640x480 picture)
    import cv2
    grey = np.full((480, 640, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".jpg", grey)
    crop, msg = backend.check_portrait(str(put("wall.jpg", buf.tobytes())))
    assert crop is None and msg.startswith("**Error:**") and "wall.jpg: no face found" in msg


def test_check_audio_duration_limit_and_unreadable(backend, area, tmp_path):
    _, put = area
    ok = put("ok.wav", _wav(tmp_path / "ok.wav", 2.0))
    assert backend.check_audio(str(ok)) == "Audio ok.wav: 2.0 s, about 50 frames."
    long = put("long.wav", _wav(tmp_path / "long.wav", 6.0))
    assert backend.check_audio(str(long)) == ("**Error:** audio long.wav: 6.0 s is longer than the 5 s limit of "
                                              "this page")
    junk = put("junk.mp3", b"ID3 definitely not mpeg audio" * 10)
    msg = backend.check_audio(str(junk))
    assert msg.startswith("**Error:** audio file junk.mp3") and "/" not in msg.split("junk.mp3")[0]


# ---- widget values -> options ---------------------------------------------------------------------------------
def test_options_built_from_widget_values(backend, area, tmp_path):
    _, put = area
    audio = put("speech.wav", _wav(tmp_path / "s.wav", 2.0))
    head = put("head.mp4", EXAMPLES_DIR / "head_motion.mp4")
    eyes = put("eyes.mp4", EXAMPLES_DIR / "eye_motion.mp4")
    v = _values(audio=str(audio), pose_mode="video", pose_video=str(head), pose_intensity=0.8, blink_mode="video",
                gaze_mode="off", eyes_video=str(eyes), emotion_mode="off", emotion_intensity=0.5,
                mouth_intensity=None, layout="pasteback", precision="fast", driving_mode="pingpong",
                refiner=not AnimateOptions.refiner)
    portrait, a, opt, paths = backend.build_job(v)
    assert opt.refiner is (not AnimateOptions.refiner)   # the checkbox, either way from the default
    assert backend.build_job({**v, "refiner": None})[2].refiner is AnimateOptions.refiner
    assert portrait == (EXAMPLES_DIR / "anne.png").resolve() and a == audio.resolve()
    assert opt.lips == "audio" and opt.pose == str(head.resolve()) and opt.blink == str(eyes.resolve())
    assert opt.gaze == "off" and opt.emotion == "off" and opt.eyes == "still"
    assert opt.pose_intensity == 0.8 and opt.emotion_intensity == 0.5
    assert opt.mouth_intensity == backend.pipe.model.config.mouth_scale  # empty slider -> the model's default
    assert (opt.layout, opt.precision, opt.driving_mode, opt.progress) == ("pasteback", "fast", "pingpong", False)
    assert opt.max_frames == 125  # 5 s at 25 fps: the page's cap
    assert set(paths) >= {portrait, a, head.resolve(), eyes.resolve()}


def test_natural_motion_sources_from_widget_values(backend):
    _, _, opt, _ = backend.build_job(_values(pose_mode="auto", blink_mode="auto"))
    assert (opt.pose, opt.blink, opt.gaze) == ("auto", "auto", "still")


@pytest.mark.parametrize("change, message", [
    (dict(portrait=None), "no portrait"),
    (dict(audio=None), "no audio is uploaded"),
    (dict(pose_mode="video"), "head pose: 'from a video' is chosen but no video is uploaded"),
    (dict(gaze_mode="video"), "gaze: 'from a video' is chosen but no video is uploaded"),
    (dict(pose_mode="sideways"), "head pose: unknown source 'sideways'"),
    (dict(pose_intensity=9), "pose intensity: 9.0 is outside 0..5"),
    (dict(portrait="/etc/hostname"), "outside the upload area"),
])
def test_bad_widget_values_are_refused(backend, change, message):
    with pytest.raises(InputError, match=message):
        backend.build_job(_values(**change))


def test_lips_from_a_video_without_audio(backend, area):
    _, put = area
    mouth = put("mouth.mp4", EXAMPLES_DIR / "head_motion.mp4")
    _, audio, opt, _ = backend.build_job(_values(audio=None, lips_mode="video", lips_video=str(mouth)))
    assert audio is None and opt.lips == str(mouth.resolve())


# ---- preview and render ---------------------------------------------------------------------------------------
def test_preview_renders_a_few_frames(backend, area, tmp_path):
    _, put = area
    audio = put("speech.wav", _wav(tmp_path / "s.wav", 2.0))
    frames, msg = backend.preview(*_args(_values(audio=str(audio))))
    assert msg.startswith("Preview: 3 frames")
    assert [f[1] for f in frames] == ["frame 0 (0.00 s)", "frame 12 (0.48 s)", "frame 24 (0.96 s)"]
    assert all(f[0].shape == (224, 224, 3) and f[0].dtype == np.uint8 for f in frames)
    assert not any(backend.sandbox.output_root.iterdir())  # a preview writes no file


def test_render_writes_only_in_the_session_folder_and_reports_progress(backend, area, tmp_path):
    import av

    from pdfgc.media.spectrogram import num_output_frames

    _, put = area
    audio = put("speech.wav", _wav(tmp_path / "s.wav", 1.2))
    seen = []
    path, msg = backend.render(*_args(_values(audio=str(audio))), session="sess1",
                               progress=lambda f, desc: seen.append((f, desc)))
    n = num_output_frames(int(1.2 * 16000))
    assert msg.startswith(f"Done: {n} frames"), msg
    out = Path(path)
    assert out.parent == backend.sandbox.output_root / "sess1" and out.is_file()
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temp file left beside it
    assert seen[0] == (0.0, "reading inputs and planning the codes") and seen[-1] == (1.0, f"rendering frame {n}/{n}")
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    with av.open(str(out)) as c:
        assert c.streams.audio and sum(1 for _ in c.decode(video=0)) == n


def test_render_error_is_shown_and_nothing_written(backend, area):
    _, put = area
    bad = put("face.png", b"GIF89a not really")
    path, msg = backend.render(*_args(_values(portrait=str(bad))), session="s")
    assert path is None and msg == "**Error:** face.png: not an image, or an image format that cannot be read"
    assert not any(backend.sandbox.output_root.rglob("*.mp4"))


def test_build_app_wires_the_page(tiny_pipe, tmp_path, monkeypatch):
    from pdfgc.ui.app import build_app, prepare_work_dir

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "ignored"))
    settings = UISettings(work_dir=tmp_path / "ui", port=None)
    sandbox = prepare_work_dir(settings)
    assert os.environ["GRADIO_TEMP_DIR"] == str(sandbox.upload_root)  # every upload lands in our area
    demo = build_app(tiny_pipe, settings, sandbox)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"portrait", "audio", "pose-mode", "pose-video", "render-btn", "preview-btn", "status", "result-video",
            "result-file"} <= ids
    assert demo.pdfgc_backend.input_names() == BASE_INPUTS + CONTROL_INPUTS
    assert {"lip-level", "mute-spans", "pose-yaw", "pose-keyframes", "pose-preset", "blink-times", "gaze-camera",
            "emotion-label", "emotion-level", "mapping-status"} <= ids


# ---- explicit controls ----------------------------------------------------------------------------------------
def test_explicit_control_options_from_widget_values(cbackend, area, mapping_file):
    from pdfgc.controls.explicit import BlinkControl, EmotionControl, GazeControl, LipControl, PoseControl

    _, put = area
    b = cbackend
    # sliders: every angle set, relative to the portrait; the factor's base source is the portrait
    _, _, opt, _ = b.build_job(_values(pose_mode="controls", pose_yaw=20, pose_pitch=-5, pose_roll=0))
    assert opt.pose == "still" and opt.control_mapping == mapping_file
    assert opt.pose_control == PoseControl(yaw=20, pitch=-5, roll=0, interpolation="smooth", relative=True)
    assert opt.blink_control is None and opt.gaze_control is None and opt.emotion_control is None
    assert opt.lip_control is None  # lip level 1 and no mute spans: lips follow their source untouched
    # keyframes own their channels; a non-zero slider still sets another channel; absolute, linear
    _, _, opt, _ = b.build_job(_values(pose_mode="controls", pose_keyframes="0:yaw=0; 2:yaw=20", pose_yaw=5,
                                       pose_roll=3, pose_interp="linear", pose_absolute=True))
    pc = opt.pose_control
    assert pc.keyframes == [{"t": 0.0, "yaw": 0.0}, {"t": 2.0, "yaw": 20.0}]
    assert (pc.yaw, pc.pitch, pc.roll, pc.relative, pc.interpolation) == (None, None, 3.0, False, "linear")
    # eyes: blink schedule + rate, gaze at the camera / a direction / keyframes
    _, _, opt, _ = b.build_job(_values(blink_mode="controls", blink_times="1, 3.5", blink_rate=10,
                                       blink_duration=0.3, eye_openness=0.8, gaze_mode="controls", gaze_camera=True))
    assert opt.blink_control == BlinkControl(times=[1.0, 3.5], rate=10, duration=0.3, openness=0.8)
    assert opt.gaze_control == GazeControl(camera=True) and opt.blink == "still" and opt.gaze == "still"
    _, _, opt, _ = b.build_job(_values(gaze_mode="controls", gaze_h=0.5, gaze_v=-0.2))
    assert (opt.gaze_control.horizontal, opt.gaze_control.vertical, opt.gaze_control.camera) == (0.5, -0.2, False)
    _, _, opt, _ = b.build_job(_values(gaze_mode="controls", gaze_h=0.5, gaze_keyframes="0:camera; 1:h=0.6"))
    assert opt.gaze_control.keyframes == [{"t": 0.0, "h": 0.0, "v": 0.0}, {"t": 1.0, "h": 0.6}]
    # emotion: a label at a strength, a blend, the mean of an uploaded clip
    _, _, opt, _ = b.build_job(_values(emotion_mode="controls", emotion_label="happy", emotion_level=0.5))
    assert opt.emotion_control == EmotionControl(label="happy", intensity=0.5) and opt.emotion == "still"
    _, _, opt, _ = b.build_job(_values(emotion_mode="controls", emotion_label="happy", emotion_label2="sad",
                                       emotion_mix=0.25, emotion_level=0.8))
    assert opt.emotion_control == EmotionControl(blend={"happy": 0.75, "sad": 0.25}, intensity=0.8)
    clip = put("smile.jpg", EXAMPLES_DIR / "expression.jpg")
    _, _, opt, paths = b.build_job(_values(emotion_mode="reference", emotion_video=str(clip), emotion_level=0.6))
    assert opt.emotion_control == EmotionControl(reference=str(clip.resolve()), intensity=0.6)
    assert clip.resolve() in paths
    # lips
    _, _, opt, _ = b.build_job(_values(lip_level=0.5, mute_spans="1-1.5, 3-3.2"))
    assert opt.lip_control == LipControl(intensity=0.5, mute=[(1.0, 1.5), (3.0, 3.2)])


@pytest.mark.parametrize("change, message", [
    (dict(pose_mode="controls", pose_keyframes="0:yaw=abc"), "'abc' is not a number"),
    (dict(pose_mode="controls", pose_keyframes="yaw=20"), "expected TIME:NAME=VALUE"),
    (dict(pose_mode="controls", pose_yaw=120), "yaw 120 degrees is out of range"),
    (dict(blink_mode="controls", blink_times="1, soon"), "'soon' is not a number"),
    (dict(gaze_mode="controls", gaze_keyframes="left"), "gaze keyframes 'left'|expected 'camera'"),
    (dict(emotion_mode="controls", emotion_label="happy", emotion_label2="happy", emotion_mix=0.5), "twice"),
    (dict(emotion_mode="reference"), "no clip is uploaded"),
    (dict(emotion_mode="reference", emotion_video="/etc/hostname"), "outside the upload area"),
    (dict(mute_spans="3-1"), "ends before it starts"),
])
def test_bad_control_values_are_refused(cbackend, change, message):
    with pytest.raises(InputError, match=message):
        cbackend.build_job(_values(**change))


def test_controls_reach_the_codes_and_the_status_line(cbackend, area, tmp_path):
    _, put = area
    audio = put("speech.wav", _wav(tmp_path / "s.wav", 1.0))
    pipe = cbackend.pipe
    p, a, base_opt, _ = cbackend.build_job(_values(audio=str(audio)))
    base = pipe.plan(p, a, base_opt)
    _, _, opt, _ = cbackend.build_job(_values(audio=str(audio), pose_mode="controls", pose_yaw=20))
    yaw = pipe.plan(p, a, opt)
    assert not torch.equal(yaw.pose, base.pose)
    for part in ("mouth", "eye", "emotion"):
        assert torch.equal(getattr(yaw, part), getattr(base, part)), part
    frames, msg = cbackend.preview(*_args_c(cbackend, _values(audio=str(audio), pose_mode="controls", pose_yaw=20,
                                                              blink_mode="controls", blink_times="0.5",
                                                              blink_rate=0, mute_spans="0.2-0.4")))
    assert len(frames) == 3, msg
    assert msg.endswith("Explicit controls: pose yaw=20, pitch=0, roll=0 (relative); blinks at 0.5 s, openness 1; "
                        "lips level 1, muted 0.2-0.4 s.")


def test_controls_without_a_mapping_say_how_to_get_one(backend):
    labels, line = backend.mapping_status()
    assert "happy" in labels and line.startswith("No fitted control mapping for this model")
    frames, msg = backend.preview(*_args_c(backend, _values(gaze_mode="controls", gaze_camera=True)))
    assert frames == [] and msg.startswith("**Error:** the gaze control needs a control mapping") and \
        "pdfgc fit-controls" in msg


def test_mapping_status_lists_the_mapped_labels(cbackend):
    labels, line = cbackend.mapping_status()
    assert labels == ["happy", "neutral", "sad"]
    assert line.endswith("pose, blink, gaze maps; emotion labels happy, neutral, sad.")


def _args_c(backend, v: dict) -> list:
    return [v.get(k) for k in backend.input_names()]


# ---- the command ----------------------------------------------------------------------------------------------
def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the sockets listening on `port` (from /proc: what the server is bound to)."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            addr, p = local.rsplit(":", 1)
            if state == "0A" and int(p, 16) == port:
                out.append(addr)
    return out


@pytest.mark.slow
def test_pdfgc_ui_command_serves_on_localhost_and_cleans_up(tiny, tmp_path):
    import json
    import re
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    weights = tiny.save_pretrained(tmp_path / "tiny.safetensors")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), PDFGC_TEST_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "pdfgc.cli", "ui", "--port", str(port), "--weights", str(weights),
                             "--threads", "1", "--max-upload-mb", "2"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    try:
        line = ""
        deadline = time.time() + 90
        while "serving on" not in line and time.time() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "pdfgc ui exited early"
        assert f"serving on http://127.0.0.1:{port}" in line, line
        work = Path(re.search(r"outputs under (\S+);", line).group(1))
        assert (work / "uploads").is_dir() and (work / "outputs").is_dir()
        page = None
        while page is None and time.time() < deadline:
            try:
                page = urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=5).read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None and json.loads(page)["title"] == "pdfgc"
        # bound to the loopback address only (0100007F is 127.0.0.1 in /proc's byte order)
        assert _listening_addresses(port) == ["0100007F"]
        # files outside the upload/output areas are not served
        repo_file = Path(__file__).resolve().parents[1] / "pyproject.toml"  # the server's working folder
        for probe in (f"/gradio_api/file={weights}", "/gradio_api/file=/etc/passwd", f"/gradio_api/file={repo_file}",
                      f"/gradio_api/file={work}/../{work.name}/uploads/../../../etc/passwd"):
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}{probe}", timeout=5).status
            except urllib.error.HTTPError as e:
                status = e.code
            assert status in (403, 404), (probe, status)
    finally:
        # SIGTERM: a background job's SIGINT is ignored by the shell that started it (CI may run us that way)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert not work.exists()  # the app's temp areas are removed when it stops


def test_the_default_meshwarp_model_works_on_the_page(area, tmp_path):
    """The page over the shipped default (mesh warp): no mapping needed, its labels offered, preview frames at the
    portrait's resolution."""
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    sb, put = area
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    backend = UIBackend(pipe, UISettings(max_upload_mb=1, max_seconds=5, preview_frames=2, preview_seconds=0.4), sb)
    labels, line = backend.mapping_status()
    assert "happy" in labels and "no fitted mapping needed" in line
    audio = put("speech.wav", _wav(tmp_path / "s.wav", 1.0))
    frames, msg = backend.preview(*_args(_values(audio=str(audio))))
    assert msg.startswith("Preview: 2 frames"), msg
    assert all(f[0].shape == (224, 224, 3) and f[0].dtype == np.uint8 for f in frames)
