"""Issue 13: the defects found by trying to break pdfgc, one test per case. Every bad input ends in one
`pdfgc: error:` line with exit 2 (or works as a user would want); no input file is ever replaced."""
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pdfgc.cli import main
from pdfgc.errors import CheckpointError, InputError

from .conftest import DATA, REPO, need, one_error, write_wav16

PD = DATA / "pdfgc"
ED = DATA / "edtalk"
ANNE = PD / "anne.png"
THREADS = "1"


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": THREADS}


def _wav(path: Path, seconds: float = 1.0, rate: int = 16000, values: np.ndarray | None = None) -> Path:
    """16-bit speech-like wav, or float32 `values` as written by float-wav tools (NaN/Inf survive)."""
    if values is not None:
        import scipy.io.wavfile
        scipy.io.wavfile.write(str(path), rate, values.astype(np.float32))
        return path
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
    return write_wav16(path, x, rate)


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _animate(weights, *args) -> list[str]:
    return ["animate", "--weights", str(weights), "--portrait", str(ANNE), "--threads", THREADS, "--quiet", *args]


# ---- 1. an input is never overwritten -------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["audio", "pose"])
def test_output_that_is_an_input_is_refused(tiny_weights, tmp_path, capsys, role):
    clip = tmp_path / "talk.mp4"
    shutil.copyfile(need(ED / "mouth_source.mp4"), clip)
    before = _digest(clip)
    extra = ["--audio", str(clip)] if role == "audio" else ["--audio", str(_wav(tmp_path / "a.wav")), "--pose",
                                                           str(clip)]
    assert main(_animate(tiny_weights, *extra, "-o", str(clip))) == 2
    one_error(capsys, "is also an input")
    assert _digest(clip) == before


def test_output_reaching_an_input_through_links_is_refused(tmp_path):
    from pdfgc.fileio import check_output_path

    src = tmp_path / "talk.mp4"
    src.write_bytes(b"the user's only copy")
    (tmp_path / "sym.mp4").symlink_to(src)
    os.link(src, tmp_path / "hard.mp4")
    (tmp_path / "sub").mkdir()
    for out, inp in [(src, src), (tmp_path / "sym.mp4", src), (src, tmp_path / "sym.mp4"),
                     (tmp_path / "hard.mp4", src), (tmp_path / "sub" / ".." / "talk.mp4", src)]:
        with pytest.raises(InputError, match="is also an input"):
            check_output_path(out, [None, "still", np.zeros(3), inp], suffixes=(".mp4",))
    assert check_output_path(tmp_path / "new.mp4", [src, "off", None]) == tmp_path / "new.mp4"
    with pytest.raises(InputError, match="only .mp4"):
        check_output_path(tmp_path / "x.wav", [], suffixes=(".mp4",))
    assert src.read_bytes() == b"the user's only copy"


def test_api_refuses_an_output_that_is_its_audio(tiny_pipe, tmp_path):
    audio = _wav(tmp_path / "speech.mp4.wav")
    link = tmp_path / "out.mp4"
    link.symlink_to(audio)
    with pytest.raises(InputError, match="is also an input"):
        tiny_pipe(str(ANNE), audio=str(audio), output=link, max_frames=2, progress=False)
    assert audio.exists() and link.is_symlink()


# ---- 2. bad input ends in one error line (exit 2), never a traceback -----------------------------------------------

def _weights_with_config(tiny_weights, out: Path, edit) -> Path:
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(tiny_weights), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    cfg = json.loads(meta["config"])
    edit(cfg)
    save_file(tensors, str(out), metadata={**meta, "config": json.dumps(cfg)})
    return out


def test_weights_config_with_an_unknown_key(tiny_weights, tmp_path, capsys):
    bad = _weights_with_config(tiny_weights, tmp_path / "unknown.safetensors",
                               lambda c: c["generator"].update(bogus=3))
    assert main(["info", "--weights", str(bad)]) == 2
    one_error(capsys, "unknown key 'generator.bogus'")
    bad = _weights_with_config(tiny_weights, tmp_path / "layout.safetensors", lambda c: c["layout"].update(x=1))
    assert main(["info", "--weights", str(bad)]) == 2
    one_error(capsys, "unknown key 'layout.x'")


def test_weights_config_asking_for_huge_channels_is_refused_before_allocating(tiny_weights, tmp_path, capsys):
    import resource

    def huge(c):  # ~130 GB of generator weights if it were built
        c["generator"]["channels"] = {k: 8192 for k in c["generator"]["channels"]}
        c["appearance"]["identity_channels"] = 8192
    bad = _weights_with_config(tiny_weights, tmp_path / "huge.safetensors", huge)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    assert main(["info", "--weights", str(bad)]) == 2
    assert time.perf_counter() - t0 < 20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 500_000  # KiB: nothing big was allocated
    one_error(capsys, "has shape", "expected")
    bad = _weights_with_config(tiny_weights, tmp_path / "big.safetensors",
                               lambda c: c["motion"].update(width=10 ** 7))
    assert main(["info", "--weights", str(bad)]) == 2
    one_error(capsys, "motion.width")


def test_disk_full_while_writing_the_mp4(tiny_weights, tmp_path, capsys, monkeypatch):
    import av

    real_open = av.open

    class FullDisk:  # the output container once the disk is full: every mux fails with ENOSPC, as PyAV raises it
        def __init__(self, c):
            self._c, self._n = c, 0

        def mux(self, packets):
            self._n += 1
            if self._n > 2:
                raise OSError(errno.ENOSPC, "No space left on device", self._c.name)
            return self._c.mux(packets)

        def __getattr__(self, name):
            return getattr(self._c, name)

    def fake_open(path, mode="r", **kw):
        c = real_open(path, mode, **kw)
        return FullDisk(c) if mode == "w" else c
    monkeypatch.setattr(av, "open", fake_open)
    out = tmp_path / "o.mp4"
    assert main(_animate(tiny_weights, "--lips", "still", "--duration", "2", "-o", str(out))) == 2
    one_error(capsys, "no space left on device", str(out))
    assert list(tmp_path.iterdir()) == []  # no partial file, no temporary file


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_disk_full_on_a_real_small_filesystem(tiny_weights, tmp_path, capsys):
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(small)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = small / "o.mp4"
        audio = _wav(tmp_path / "speech.wav", seconds=3.0)  # its AAC track alone is larger than the filesystem
        assert main(_animate(tiny_weights, "--audio", str(audio), "--lips", "still", "--crf", "0", "-o", str(out))) == 2
        one_error(capsys, "no space left on device")
        assert os.listdir(small) == []
    finally:
        subprocess.run(["umount", str(small)], capture_output=True)


def test_nan_audio_with_lips_still_and_with_lips_from_it(tiny_weights, tmp_path, capsys):
    x = 0.3 * np.sin(np.arange(32000) / 7.0)
    x[5000:5100] = np.nan
    nan = _wav(tmp_path / "nan.wav", values=x)
    inf = _wav(tmp_path / "inf.wav", values=np.where(np.arange(32000) == 9, np.inf, x))
    for audio, lips in [(nan, "still"), (nan, "audio"), (inf, "audio")]:
        assert main(_animate(tiny_weights, "--audio", str(audio), "--lips", lips, "-o", str(tmp_path / "o.mp4"))) == 2
        line = one_error(capsys, "NaN/Inf")
        assert "silent" not in line
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.parametrize("flags,needle", [
    (["--max-frames", "0"], "--max-frames"), (["--max-frames", "-5"], "--max-frames"),
    (["--duration", "inf"], "--duration"), (["--duration", "nan"], "--duration"),
    (["--duration", "1e12"], "--duration"), (["--duration", "-3"], "--duration"),
    (["--preset", "bogus"], "preset 'bogus'"), (["--mouth-intensity", "nan"], "--mouth-intensity"),
    (["--pose-intensity", "inf"], "--pose-intensity"), (["--emotion-intensity", "1e9"], "--emotion-intensity"),
    (["--crf", "99"], "--crf"), (["--batch-size", "0"], "--batch-size"), (["--driving-skip", "-1"], "--driving-skip"),
])
def test_bad_option_values(tiny_weights, tmp_path, capsys, flags, needle):
    args = ["--lips", "still", "--duration", "1"] if "--duration" not in flags else ["--lips", "still"]
    assert main(_animate(tiny_weights, *args, *flags, "-o", str(tmp_path / "o.mp4"))) == 2
    one_error(capsys, needle)
    assert not (tmp_path / "o.mp4").exists()


def test_check_options_is_the_one_validation(tiny_pipe, tmp_path):
    from pdfgc.options import AnimateOptions, check_options

    check_options(AnimateOptions())
    check_options(AnimateOptions(mouth_intensity=0.0, pose_intensity=-1, duration=86400, max_frames=1,
                                 preset="veryfast", crf=np.int64(20), emotion_intensity=np.float32(1.5)))
    for bad in [dict(mouth_intensity=float("nan")), dict(duration=0), dict(duration=86401), dict(max_frames=0),
                dict(max_frames=2.5), dict(preset="bogus"), dict(threads=0), dict(pose_intensity=None),
                dict(gaze_intensity="1"), dict(align="sometimes"), dict(crf=True), dict(driving_reference="x")]:
        with pytest.raises(InputError):
            check_options(AnimateOptions(**bad))
    # the API goes through it too: nothing is rendered or written
    with pytest.raises(InputError, match="--mouth-intensity"):
        tiny_pipe(str(ANNE), lips="still", duration=1.0, mouth_intensity=float("nan"), output=tmp_path / "o.mp4")
    assert not (tmp_path / "o.mp4").exists()


def test_ui_port_in_use_out_of_range_and_bad_upload_limit(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ui", "--port", str(port)]) == 2
        one_error(capsys, "already in use", str(port))
    for flags, needle in [(["--port", "70000"], "1..65535"), (["--port", "0"], "1..65535"),
                          (["--max-upload-mb", "-1"], "--max-upload-mb"), (["--max-seconds", "nan"], "--max-seconds")]:
        assert main(["ui", *flags]) == 2
        one_error(capsys, needle)


def test_train_out_naming_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    for out in (f, f / "sub"):
        assert main(["train", "--data", str(tmp_path), "--stage", "appearance", "--config", "tiny", "--out", str(out),
                     "--steps", "1", "--quiet", "--threads", "1"]) == 2
        one_error(capsys, "is a file")
    assert f.read_text() == "mine"


# ---- 4. a corrupt latest checkpoint: --resume falls back to the previous one -------------------------------------

def _train_cfg(corpus, out, **kw):
    from pdfgc.families.pdfgc.training.trainer import TrainConfig

    base = dict(stage="appearance", data=str(corpus), out=str(out), model="tiny", steps=2, batch_size=2, lr=1e-3,
                log_every=1, checkpoint_every=1, sample_every=1000, tensorboard=False)
    return TrainConfig(**{**base, **kw})


def _run(cfg, resume=False, log=None):
    from pdfgc.families.pdfgc.training.trainer import Trainer
    return Trainer(cfg, resume=resume, progress=False, log=log or (lambda m: None)).run()


@pytest.fixture(scope="module")
def two_checkpoints(prepared_corpus, tmp_path_factory):
    """A 2-step appearance run on the tiny model with checkpoints after steps 1 and 2."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run") / "run"
    _run(_train_cfg(prepared_corpus, run))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-000000001", "step-000000002"]
    return run


@pytest.mark.parametrize("damage", ["truncated train_state", "empty trainer.json", "truncated model"])
def test_resume_falls_back_to_the_previous_checkpoint(prepared_corpus, two_checkpoints, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    latest = run / "checkpoints" / "step-000000002"
    f = latest / {"truncated train_state": "train_state.safetensors", "empty trainer.json": "trainer.json",
                  "truncated model": "model.safetensors"}[damage]
    f.write_bytes(b"" if "empty" in damage else f.read_bytes()[: f.stat().st_size // 2])
    logs = []
    _run(_train_cfg(prepared_corpus, run, steps=3), resume=True, log=logs.append)
    text = "\n".join(logs)
    assert "unreadable" in text and str(f) in text, text
    assert "resuming from the previous kept checkpoint, step-000000001 (step 1)" in text
    assert (run / "model.safetensors").is_file()
    assert (run / "checkpoints" / "step-000000003").is_dir()


def test_time_budget_checkpoints_and_stops(prepared_corpus, two_checkpoints, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    (run / "model.safetensors").unlink()
    logs = []
    out = _run(_train_cfg(prepared_corpus, run, steps=5, minutes=0.0), resume=True, log=logs.append)
    assert out == run / "checkpoints" / "step-000000003" / "model.safetensors" and out.is_file()
    assert "stopped after 0 min at step 3 of 5" in logs[-1] and "--resume" in logs[-1]
    assert not (run / "model.safetensors").exists()   # no final model before the last step


def test_resume_with_no_readable_checkpoint_says_what_to_do(prepared_corpus, two_checkpoints, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    for ck in (run / "checkpoints").iterdir():
        (ck / "trainer.json").write_text("")
    assert main(["train", "--data", str(prepared_corpus), "--stage", "appearance", "--config", "tiny", "--out",
                 str(run), "--steps", "3", "--batch-size", "2", "--resume", "--quiet", "--threads", "1"]) == 2
    one_error(capsys, "no readable checkpoint", "delete", "step-000000001")


class _Stop(Exception):
    pass


def _stop_at(needle: str, logs: list):
    def log(m):
        logs.append(m)
        if needle in m:
            raise _Stop
    return log


def test_resume_with_another_process_count_warns(prepared_corpus, two_checkpoints, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(two_checkpoints, run)
    ck = run / "checkpoints" / "step-000000002"
    shutil.copyfile(ck / "rng-rank0.safetensors", ck / "rng-rank1.safetensors")  # as a 2-process run leaves it
    logs = []
    with pytest.raises(_Stop):
        _run(_train_cfg(prepared_corpus, run, steps=3), resume=True, log=_stop_at("process(es)", logs))
    assert "written by 2 process(es), this run has 1" in logs[-1]


def test_lips_stage_without_init_warns(prepared_corpus, tmp_path):
    logs = []
    with pytest.raises(_Stop):
        _run(_train_cfg(prepared_corpus, tmp_path / "lips", stage="lips"), log=_stop_at("random weights", logs))
    assert "--init" in logs[-1] and "appearance" in logs[-1]
    logs = []  # the first stage starts from scratch by design: no warning
    with pytest.raises(_Stop):
        _run(_train_cfg(prepared_corpus, tmp_path / "app"), log=_stop_at("stage appearance:", logs))
    assert not any("random weights" in m for m in logs)


def test_train_ctrl_c_names_the_kept_checkpoints(tmp_path, capsys, monkeypatch):
    import pdfgc.training.command as command

    run = tmp_path / "run"
    (run / "checkpoints" / "step-000000500").mkdir(parents=True)
    (run / "checkpoints" / "step-000000500" / "trainer.json").write_text("{}")

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(command, "run_train", interrupted)
    base = ["train", "--data", str(tmp_path), "--stage", "appearance", "--steps", "9", "--quiet"]
    assert main([*base, "--out", str(run)]) == 130
    err = capsys.readouterr().err
    assert "step-000000500" in err and "--resume" in err and "no output written" not in err
    assert main([*base, "--out", str(tmp_path / "fresh")]) == 130
    assert "no output written" in capsys.readouterr().err


# ---- 5. SIGTERM is Ctrl+C; stale temporary files of killed runs are removed --------------------------------------

def test_sigterm_removes_the_temporary_file(tiny_weights, tmp_path):
    out = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "pdfgc.cli", *_animate(tiny_weights, "--lips", "still", "--duration", "3600",
                                                         "-o", str(out))]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".out.mp4.tmp-*")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no temporary file appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1].decode()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_stale_temporary_files_are_removed_or_reported(tiny_weights, tmp_path, caplog):
    out = tmp_path / "out.mp4"
    dead = tmp_path / ".out.mp4.tmp-999999999-0123abcd.mp4"       # a writer killed by kill -9
    legacy = tmp_path / ".out.mp4.tmp-89abcdef.mp4"               # the older name, without a pid
    alive = tmp_path / f".out.mp4.tmp-{os.getppid()}-deadbeef.mp4"  # a process that still runs
    other = tmp_path / ".other.mp4.tmp-999999999-0123abcd.mp4"    # another output's: not ours to judge
    for p in (dead, legacy, alive, other):
        p.write_bytes(b"partial")
        os.utime(p, (time.time() - 3600, time.time() - 3600))
    fresh = tmp_path / ".out.mp4.tmp-999999998-0123abcd.mp4"      # written after this process started
    fresh.write_bytes(b"partial")
    assert main(_animate(tiny_weights, "--lips", "still", "--duration", "0.2", "-o", str(out))) == 0
    err = caplog.text
    assert not dead.exists() and not legacy.exists() and f"removed {dead}" in err
    assert alive.exists() and "still running" in err
    assert other.exists() and fresh.exists() and out.is_file()


# ---- 8. messages that say what is wrong ----------------------------------------------------------------------------

def test_nan_audio_is_not_called_silent(tiny_pipe):
    x = np.full(16000, np.nan, dtype=np.float32)
    with pytest.raises(InputError, match="NaN/Inf") as e:
        tiny_pipe.plan(str(ANNE), audio=x)
    assert "silent" not in str(e.value)
    from pdfgc.media.audio_io import is_silent
    assert is_silent(np.zeros(100)) and not is_silent(0.1 * np.sin(np.arange(100) / 3.0))
    assert is_silent(np.ones(100) * 0.1)  # a constant offset is no sound (issue 22)


def test_ui_refuses_silent_and_nan_audio_on_upload(tiny_pipe, tmp_path):
    from pdfgc.ui.app import BASE_INPUTS, EXAMPLES_DIR, Sandbox, UIBackend, UISettings

    sb = Sandbox(tmp_path / "uploads", tmp_path / "outputs", max_upload_mb=1)
    backend = UIBackend(tiny_pipe, UISettings(max_upload_mb=1, max_seconds=5), sb)
    d = sb.upload_root / "h0"
    d.mkdir(parents=True)
    silent = _wav(d / "quiet.wav", values=np.zeros(16000))
    nan = _wav(d / "nan.wav", values=np.full(16000, np.nan))
    msg = backend.check_audio(str(silent))
    assert msg.startswith("**Error:** audio quiet.wav is silent") and "'still'" in msg and "--" not in msg
    msg = backend.check_audio(str(nan))
    assert msg.startswith("**Error:**") and "NaN/Inf" in msg and "silent" not in msg and "--" not in msg
    # a render with lips from the silent audio is refused in the page's words; with lips still it is fine
    v = dict(portrait=str(EXAMPLES_DIR / "anne.png"), audio=str(silent), lips_mode="audio", pose_mode="still",
             blink_mode="still", gaze_mode="still", emotion_mode="still")
    path, msg = backend.render(*[v.get(k) for k in BASE_INPUTS], session="s")
    assert path is None and "Lips" in msg and "--lips" not in msg
    with pytest.raises(InputError):
        backend.build_job({**v, "mouth_intensity": "nan"})


def test_pth_given_to_weights_says_how_to_load_it(tmp_path, capsys):
    torch.save({"a": torch.zeros(3)}, tmp_path / "generator_model.pth")
    assert main(["info", "--weights", str(tmp_path / "generator_model.pth")]) == 2
    one_error(capsys, "--official-checkpoints", "convert-official")


class _Payload:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_checkpoint_refused_without_unsafe_advice_and_payload_never_runs(tmp_path, capsys):
    from pdfgc.families.pdfgc.official.checkpoints import read_state_dict

    marker = tmp_path / "PAYLOAD_RAN"
    folder = tmp_path / "official"
    folder.mkdir()
    torch.save({"conv.weight": torch.zeros(2), "evil": _Payload(marker)}, folder / "appearance_model.pth")
    for name in ("motion_model.pth", "audio_model.pth", "generator_model.pth"):
        shutil.copyfile(folder / "appearance_model.pth", folder / name)
    with pytest.raises(CheckpointError) as e:
        read_state_dict(folder / "appearance_model.pth")
    assert "weights_only" not in str(e.value) and "pickled" in str(e.value)
    for argv in (["info", "--official-checkpoints", str(folder)],
                 ["convert-official", str(folder), "-o", str(tmp_path / "o.safetensors")]):
        assert main(argv) == 2
        line = one_error(capsys, "pickled")
        assert "weights_only" not in line and "trust" not in line
    assert not marker.exists()


# ---- 9. quiet stderr -------------------------------------------------------------------------------------------------

def test_driving_video_run_prints_no_tensorflow_lite_lines(tiny_weights, tmp_path):
    video = need(ED / "pose_source1.mp4")
    cmd = [sys.executable, "-m", "pdfgc.cli", *_animate(tiny_weights, "--audio", str(_wav(tmp_path / "a.wav")),
                                                         "--pose", str(video), "--max-frames", "3",
                                                         "-o", str(tmp_path / "o.mp4"))]
    r = subprocess.run(cmd, env={k: v for k, v in _env().items() if k != "PDFGC_VERBOSE"}, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    for noise in ("TensorFlow Lite", "XNNPACK", "inference_feedback_manager", "absl::InitializeLog"):
        assert noise not in r.stderr, r.stderr


def test_python_warnings_are_one_short_line():
    code = ("import warnings, pdfgc.cli as c\n"
            "c.cmd_info = lambda a: (warnings.warn('torch.thing is deprecated\\nuse other.thing'), 0)[1]\n"
            "raise SystemExit(c.main(['info']))\n")
    r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "pdfgc: warning: torch.thing is deprecated\n"
