"""Issue 22: no input takes pdfgc (or the web UI's server) down. One test per case found by trying to break it:
each ends in one `pdfgc: error:` line with exit 2, or works as a user would want."""
import os
import shutil
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from pdfgc.cli import main
from pdfgc.errors import InputError

from .conftest import DATA, REPO, need, one_error

ANNE = DATA / "pdfgc" / "anne.png"
ED = DATA / "edtalk"


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1"}


def wav_multichannel(path: Path, channels: int, rate: int = 16000, seconds: float = 1.0, width: int = 2,
                     dc: float | None = None) -> Path:
    """A speech-like WAV as Python's `wave` module writes it (no channel mask): channel k is the signal * (k+1)/n;
    `dc` writes a constant instead."""
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    if dc is not None:
        x = np.full_like(t, dc)
    chans = np.stack([x * (k + 1) / channels if dc is None else x for k in range(channels)], 1)
    full = 2 ** (8 * width - 1) - 1
    data = (chans * full).astype(f"<i{width}") if width > 1 else (chans * 127 + 128).astype(np.uint8)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


@pytest.fixture
def no_model(monkeypatch):
    """Loading the model fails the test: the error must come before it."""
    import pdfgc.cli

    def refuse(args):
        raise AssertionError("the model was loaded before the bad value was refused")
    monkeypatch.setattr(pdfgc.cli, "_load_model", refuse)


def _animate(weights, *args) -> list[str]:
    return ["animate", "--weights", str(weights), "--portrait", str(ANNE), "--threads", "1", "--quiet", *args]


# ---- 1. the 8-channel crash -----------------------------------------------------------------------------------------

# PyAV's old decoding path, which died of SIGSEGV on an 8-channel wav (PyAV <= 17; 18.1 no longer crashes).
OLD_PATH = textwrap.dedent("""
    import sys, av
    c = av.open(sys.argv[1]); s = c.streams.audio[0]; r = None
    for f in c.decode(s):
        r = r or av.AudioResampler(format="fltp", layout=f.layout, rate=f.sample_rate)
        for o in r.resample(f):
            o.to_ndarray()
""")
# A decoder child that dies of SIGSEGV once it has opened the file, whatever PyAV's version: the UI test is about
# surviving a crashing child, not about PyAV's bug.
CRASH = textwrap.dedent("""
    import os, signal, sys, av
    c = av.open(sys.argv[1]); s = c.streams.audio[0]
    next(c.decode(s))
    os.kill(os.getpid(), signal.SIGSEGV)
""")


@pytest.mark.parametrize("rate,width", [(16000, 2), (48000, 1), (96000, 4)])
def test_eight_channel_wav_decodes_to_its_samples(tmp_path, rate, width):
    from pdfgc.media.audio_io import AudioTrack, decode_audio, decode_speech

    p = wav_multichannel(tmp_path / "eight.wav", 8, rate, seconds=0.5, width=width)
    x, r = decode_audio(p)
    assert r == rate and x.shape == (8, rate // 2)
    ref = 0.3 * np.sin(2 * np.pi * 220 * np.arange(rate // 2) / rate) * (1 + np.sin(2 * np.pi * 3 * np.arange(
        rate // 2) / rate))
    tol = 2.0 / 127 if width == 1 else 1e-3
    for k in (0, 7):
        assert np.abs(x[k] - ref * (k + 1) / 8).max() < tol
    mono, ms, n = decode_speech(p)
    assert n == 8000 and mono.shape == (8000,) and ms > 0
    track = AudioTrack(p)  # the mp4's sound: the 8 channels as their mean, mono
    assert track.channels == 1 and sum(b.shape[1] for b in track.blocks()) == rate // 2


def test_eight_channel_wav_animates_where_pyav_crashes(tiny_weights, tmp_path):
    """In subprocesses: the old decoding path (PyAV's resampler + to_ndarray) died of SIGSEGV on this file (PyAV <= 17);
    `pdfgc animate` makes a video of it."""
    p = wav_multichannel(tmp_path / "eight.wav", 8, 16000, seconds=1.0)
    old = subprocess.run([sys.executable, "-c", OLD_PATH, str(p)], capture_output=True, env=_env(), timeout=120)
    assert old.returncode in (0, -11)  # 0 from PyAV 18.1 on, which no longer crashes; the file must animate either way
    out = tmp_path / "o.mp4"
    r = subprocess.run([sys.executable, "-m", "pdfgc.cli", *_animate(tiny_weights, "--audio", str(p), "--max-frames",
                                                                     "5", "-o", str(out))],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    from pdfgc.media.video import probe_video
    assert probe_video(out).num_frames == 5 and probe_video(out).has_audio


def test_dc_offset_wav_is_not_speech(tiny_weights, tmp_path, capsys):
    from pdfgc.media.audio_io import decode_speech, is_silent

    p = wav_multichannel(tmp_path / "dc.wav", 1, dc=0.4)
    assert is_silent(decode_speech(p)[0])
    assert not is_silent(decode_speech(wav_multichannel(tmp_path / "s.wav", 1))[0])
    assert main(_animate(tiny_weights, "--audio", str(p), "-o", str(tmp_path / "o.mp4"))) == 2
    one_error(capsys, "silent", no_warning=True)


# ---- the web UI: a file that crashes the decoder cannot end the server ----------------------------------------------

def test_ui_survives_a_crashing_upload_and_serves_the_next_session(tiny_pipe, tmp_path, monkeypatch):
    from pdfgc.ui import probe
    from pdfgc.ui.app import EXAMPLES_DIR, Sandbox, UIBackend, UISettings

    sb = Sandbox(tmp_path / "uploads", tmp_path / "outputs", max_upload_mb=5)
    backend = UIBackend(tiny_pipe, UISettings(max_upload_mb=5, max_seconds=5), sb)
    (sb.upload_root / "h0").mkdir()
    (sb.upload_root / "h1").mkdir()
    eight = wav_multichannel(sb.upload_root / "h0" / "eight.wav", 8)
    # an 8-channel upload now simply works
    assert backend.check_audio(str(eight)).startswith("Audio eight.wav: 1.0 s")
    # a decoder that really crashes (PyAV's old path on that very file) only ends the child process
    crashing = wav_multichannel(sb.upload_root / "h1" / "crash.wav", 8, seconds=0.5)
    real = probe.child_command
    monkeypatch.setattr(probe, "child_command", lambda kind, role, path: [sys.executable, "-c", CRASH, str(path)])
    msg = backend.check_audio(str(crashing))
    assert msg.startswith("**Error:** audio crash.wav: the file crashed the decoder (SIGSEGV)"), msg
    with pytest.raises(InputError, match="crashed the decoder"):  # and it never reaches the pipeline
        backend.build_job({"portrait": str(EXAMPLES_DIR / "anne.png"), "audio": str(crashing), "lips_mode": "audio"})
    # this process lives on and serves another session
    monkeypatch.setattr(probe, "child_command", real)
    other = wav_multichannel(sb.upload_root / "h1" / "speech.wav", 2, seconds=0.5)
    assert backend.check_audio(str(other)).startswith("Audio speech.wav")


def test_ui_temp_folder_removed_on_every_exit(tiny_pipe, monkeypatch, tmp_path):
    import tempfile

    from pdfgc.ui import server
    from pdfgc.ui.app import UISettings

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))  # run_ui points it at its folder: restored
    for stop in (KeyboardInterrupt(),):  # Ctrl+C, and SIGTERM/SIGHUP (main() raises KeyboardInterrupt for them)
        def launch(demo, settings, block=True, stop=stop):
            assert any(tmp_path.glob("pdfgc-ui-*/uploads"))
            raise stop
        monkeypatch.setattr(server, "launch", launch)
        with pytest.raises(type(stop)):
            server.run_ui(tiny_pipe, UISettings(port=None))
        assert not list(tmp_path.glob("pdfgc-ui-*"))
    monkeypatch.setattr(server, "build_app", lambda *a: (_ for _ in ()).throw(ValueError("page")))
    with pytest.raises(ValueError):
        server.run_ui(tiny_pipe, UISettings(port=None))
    assert not list(tmp_path.glob("pdfgc-ui-*"))


# ---- 2. unbounded inputs -------------------------------------------------------------------------------------------

def test_huge_pose_curve_is_refused_before_it_is_read(tmp_path, capsys, no_model):
    big = tmp_path / "head.csv"
    with open(big, "wb") as f:  # 87 MB, as in the issue (sparse: nothing is written)
        f.write(b"time,yaw\n")
        f.truncate(87_000_000)
    t0 = time.perf_counter()
    assert main(_animate("w.safetensors", "--lips", "still", "--max-frames", "10", "--duration", "5",
                         "--pose-curve", str(big), "-o", str(tmp_path / "o.mp4"))) == 2
    assert time.perf_counter() - t0 < 5
    one_error(capsys, "head.csv", "87.0 MB", "kB per second", no_warning=True)


def test_curve_bound_is_proportional_to_the_job(tmp_path):
    from pdfgc.controls.explicit import CURVE_BYTES_PER_SECOND, CURVE_BYTES_SLACK, PoseControl

    rows = "".join(f"{i / 25:.3f},{(i % 50) - 25}.0\n" for i in range(25 * 600))  # 10 min of per-frame keys
    p = tmp_path / "c.csv"
    p.write_text("time,yaw\n" + rows)
    assert p.stat().st_size > CURVE_BYTES_SLACK + CURVE_BYTES_PER_SECOND * 0.4
    with pytest.raises(InputError, match="this one is 0.4 s"):
        PoseControl(curve=str(p)).validate().read_curve(max_seconds=0.4)
    keys = PoseControl(curve=str(p)).validate().read_curve(max_seconds=600)  # a 10 min job takes it
    assert len(keys) == 15000 and keys[1] == {"t": 0.04, "yaw": -24.0}


def test_control_mapping_and_manifest_are_bounded(tmp_path, capsys):
    from pdfgc.families.pdfgc.controls.mapping import MAX_MAPPING_BYTES, ControlMappings

    big = tmp_path / "m.controls.json"
    with open(big, "wb") as f:
        f.truncate(MAX_MAPPING_BYTES + 1)
    with pytest.raises(InputError, match="tens of kB"):
        ControlMappings.load(big)
    man = tmp_path / "cases.json"
    with open(man, "wb") as f:
        f.truncate(17 << 20)
    assert main(["evaluate", "--manifest", str(man), "-o", str(tmp_path / "ev")]) == 2
    one_error(capsys, "manifest", "MB", no_warning=True)


# ---- 3. tracebacks -> one line -------------------------------------------------------------------------------------

@pytest.mark.parametrize("flags,needle", [
    (["--device", "nonsense"], "--device 'nonsense'"),
    (["--blink-rate", "20", "--blink-seed", "-1"], "blink seed"),
    (["--threads", "100000"], "--threads 100000"),
    (["--tx", "1e30"], "pose tx"), (["--ty", "-2"], "pose ty"),
    (["--blink-duration", "-1"], "blink duration"), (["--blink-duration", "0"], "blink duration"),
    (["--blink-duration", "1e9"], "blink duration"), (["--mute-ramp", "-1"], "mute ramp"),
    (["--blink-times", "1,1,1"], "given twice"), (["--blink-times", ""], "empty list"),
    (["--blink-times", "0.5,7"], "past the end of the --duration (2.00 s)"),
    (["--emotion-blend", "happy:1,sad:0.5"], "sum to 1.5"),
    (["--gaze", "1e9,1e9"], "gaze horizontal 1e+09 is out of range"), (["--gaze", "nan,0"], "not a finite"),
    (["--pose-keyframes=-5:yaw=10"], "-5 is negative"),
])
def test_bad_values_are_one_line_before_the_model(tmp_path, capsys, no_model, flags, needle):
    assert main(_animate("w.safetensors", "--lips", "still", "--duration", "2", *flags,
                         "-o", str(tmp_path / "o.mp4"))) == 2
    one_error(capsys, needle, no_warning=True)
    assert not (tmp_path / "o.mp4").exists()


def test_duration_with_audio_is_refused(tmp_path, capsys, no_model):
    a = wav_multichannel(tmp_path / "a.wav", 1)
    assert main(_animate("w.safetensors", "--audio", str(a), "--duration", "0.4", "-o", str(tmp_path / "o.mp4"))) == 2
    one_error(capsys, "--duration", "--max-frames", no_warning=True)
    assert main(_animate("w.safetensors", "--audio", str(a), "--blink-times", "3", "-o", str(tmp_path / "o.mp4"))) == 2
    one_error(capsys, "blink time 3 s is past the end of the audio (1.00 s)", no_warning=True)


def test_mute_span_to_1e9_mutes_to_the_end():
    from pdfgc.controls.explicit import LipControl, parse_spans

    assert parse_spans("0-1e9") == [(0.0, 1e9)]
    assert LipControl(mute=parse_spans("0-1e9"), ramp=0).mute_weights(10).tolist() == [1.0] * 10


def test_blend_shares_sum_to_at_most_one():
    from pdfgc.controls.explicit import EmotionControl

    assert EmotionControl(blend={"happy": 0.6, "sad": 0.4}).validate().weights() == {"happy": 0.6, "sad": 0.4}
    for bad in ({"happy": 1.0, "sad": 0.5}, {"happy": 1.2}):
        with pytest.raises(InputError):
            EmotionControl(blend=bad).validate()


@pytest.mark.parametrize("target", ["/proc/x.mp4", "loop", "newline"])
def test_unwritable_or_looping_output(tmp_path, capsys, no_model, target):
    if target == "loop":
        out = tmp_path / "loop.mp4"
        os.symlink(out, out)
        needle = "symbolic link loop"
    elif target == "newline":
        out = tmp_path / "no such dir\nx" / "o.mp4"
        needle = "no such dir\\nx"
    else:
        out = Path(target)
        needle = "cannot write in /proc"
    assert main(_animate("w.safetensors", "--lips", "still", "--duration", "1", "-o", str(out))) == 2
    one_error(capsys, needle, no_warning=True)


def test_controls_file_missing_or_truncated(tiny_weights, tmp_path, capsys, no_model):
    cut = tmp_path / "m.controls.json"
    cut.write_text('{"version": 1, "model_sha256": "ab')
    for path, needle in [(tmp_path / "none.json", "no such file"), (cut, "truncated or damaged")]:
        assert main(_animate(tiny_weights, "--lips", "still", "--duration", "1", "--controls", str(path),
                             "-o", str(tmp_path / "o.mp4"))) == 2
        one_error(capsys, "control mapping", needle, no_warning=True)


def test_evaluate_output_naming_a_file_and_a_still_image(tmp_path, capsys):
    clip = need(ED / "mouth_source.mp4")
    (tmp_path / "taken").write_text("mine")
    assert main(["evaluate", str(clip), "-o", str(tmp_path / "taken")]) == 2
    one_error(capsys, "is a file", no_warning=True)
    assert (tmp_path / "taken").read_text() == "mine"
    assert main(["evaluate", str(ANNE), "-o", str(tmp_path / "ev")]) == 2
    one_error(capsys, "still image", no_warning=True)
    assert not (tmp_path / "ev").exists()


def test_evaluate_faceless_portrait_is_one_line(tmp_path, capsys):
    import cv2

    clip = need(ED / "mouth_source.mp4")
    wall = tmp_path / "wall.png"
    cv2.imwrite(str(wall), np.full((256, 256, 3), 128, np.uint8))
    assert main(["evaluate", str(clip), "--portrait", str(wall), "--no-emotion", "-o", str(tmp_path / "ev")]) == 2
    one_error(capsys, "wall.png", "no face", no_warning=True)


def test_prepare_with_every_clip_rejected_exits_2(tmp_path, capsys):
    from pdfgc.media.video import VideoWriter

    raw = tmp_path / "raw"
    raw.mkdir()
    with VideoWriter(raw / "short.mp4", fps=25) as w:  # 0.2 s: shorter than --min-seconds 1
        for _ in range(5):
            w.write(np.full((64, 64, 3), 100, np.uint8))
    assert main(["prepare", str(raw), "-o", str(tmp_path / "out"), "--quiet"]) == 2
    one_error(capsys, "kept no clip", "rejected.json", no_warning=True)


# ---- 5. messages that say what is actually wrong -------------------------------------------------------------------

def test_portrait_and_audio_that_are_not_regular_files(tmp_path):
    from pdfgc.media.audio_io import decode_audio
    from pdfgc.media.images import load_image_rgb

    loop = tmp_path / "loop.png"
    os.symlink(loop, loop)
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="symbolic link loop"):
        load_image_rgb(loop)
    with pytest.raises(InputError, match="FIFO"):
        decode_audio(fifo)
    with pytest.raises(InputError, match="a device"):
        decode_audio("/dev/zero")
    with pytest.raises(InputError, match="a device"):
        load_image_rgb("/dev/zero")
    nl = tmp_path / "two\nlines.wav"
    with pytest.raises(InputError, match=r"two\\nlines.wav: no such file"):
        decode_audio(nl)


def test_pose_curve_messages(tmp_path):
    from pdfgc.controls.explicit import POSE_CHANNELS, load_curve_file

    cases = {"t.json": ('[{"t": 0, "yaw": 1}, {"t": "oops", "yaw": 2}]', "item 1 t: 'oops' is not a number"),
             "b.json": ('[{"time": true, "yaw": 5}]', "true is not a number"),
             "n.json": ('[{"t": 0, "yaw": 1}, {"t": 1}]', "item 1 sets no value")}
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(InputError, match=needle.replace("(", r"\(")):
            load_curve_file(tmp_path / name, POSE_CHANNELS)
    with pytest.raises(InputError, match="is a directory"):
        load_curve_file(tmp_path, POSE_CHANNELS)


def test_random_bytes_as_weights_are_not_called_a_pytorch_checkpoint(tmp_path, capsys):
    junk = tmp_path / "w.safetensors"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert main(["info", "--weights", str(junk)]) == 2
    line = one_error(capsys, "not a safetensors file", no_warning=True)
    assert "PyTorch" not in line


def test_curve_and_emotion_label_errors_come_before_the_model(tmp_path, capsys, no_model):
    bad = tmp_path / "head.csv"
    bad.write_text("time,yaw\n0,abc\n")
    assert main(["animate", "--portrait", str(ANNE), "--lips", "still", "--duration", "1", "--pose-curve", str(bad),
                 "-o", str(tmp_path / "o.mp4")]) == 2
    one_error(capsys, "head.csv", "abc", no_warning=True)
    from pdfgc.weights import default_weights_path
    if default_weights_path() is None:
        pytest.skip("no packaged weights")
    assert main(["animate", "--portrait", str(ANNE), "--lips", "still", "--duration", "1", "--emotion-label",
                 "happpy", "-o", str(tmp_path / "o.mp4")]) == 2
    one_error(capsys, "'happpy'", "happy", no_warning=True)


def test_error_line_escapes_a_newline(tmp_path, capsys, no_model):
    from pdfgc.cli import one_line

    assert one_line("a\nb\tc") == "a\\nb\\tc"
    assert main(_animate("w.safetensors", "--lips", "still", "--duration", "1", "--pose-curve",
                         str(tmp_path / "a\nb.csv"), "-o", str(tmp_path / "o.mp4"))) == 2
    one_error(capsys, "a\\nb.csv: no such file", no_warning=True)


def test_shared_helpers_of_the_readers(tmp_path):
    from pdfgc.fileio import input_file, read_user_file, show_path

    assert show_path("a\nb") == "a\\nb" and show_path("é x") == "é x"
    f = tmp_path / "f.txt"
    f.write_text("12345")
    assert read_user_file(f, "list", 5) == b"12345"
    with pytest.raises(InputError, match="5 bytes is more than the 4 bytes"):
        read_user_file(f, "list", 4)
    dangling = tmp_path / "d"
    os.symlink(tmp_path / "gone", dangling)
    with pytest.raises(InputError, match="broken symbolic link"):
        input_file(dangling, "list")
    shutil.copy(f, tmp_path / "g")
    os.chmod(tmp_path / "g", 0)
    if os.geteuid() != 0:
        with pytest.raises(InputError, match="permission denied"):
            input_file(tmp_path / "g", "list")


def test_ui_device_and_threads_are_checked_like_animate(capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    for flags, needle in [(["--device", "nonsense"], "--device 'nonsense'"), (["--threads", "100000"], "--threads"),
                          (["--controls", "/nonexistent/m.controls.json"], "control mapping")]:
        assert main(["ui", "--port", port, *flags]) == 2
        one_error(capsys, needle, no_warning=True)


def test_typed_specs_are_bounded():
    from pdfgc.controls.explicit import MAX_SPEC_CHARS, BlinkControl, PoseControl, parse_times

    long = "; ".join(f"{i / 25:.2f}:yaw={i % 20}" for i in range(MAX_SPEC_CHARS // 10))
    t0 = time.perf_counter()
    for parse in (PoseControl.parse, BlinkControl.parse, parse_times):
        with pytest.raises(InputError, match="curve file"):
            parse(long)
    assert time.perf_counter() - t0 < 1
    assert len(PoseControl.parse("; ".join(f"{i}:yaw={i % 20}" for i in range(1000))).keyframes) == 1000
