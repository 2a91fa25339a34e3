"""The speed work's concurrency changes nothing a user sees: the mesh-warp default's frames and codes made on two
threads (frames rendered on worker threads, the portrait and driving clips measured side by side) equal the serial
path's; a failure in a concurrent stage is the usual one-line error (exit 2) and leaves no output; overlapping
silencing of mediapipe's stderr (one per graph starting on a thread) gives fd 2 back."""
from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from pdfgc.cli import main as cli_main
from pdfgc.errors import InputError
from pdfgc.media import mesh as M
from pdfgc.media import preprocess as pp
from pdfgc.options import AnimateOptions
from pdfgc.pipeline import TalkingHeadPipeline
from pdfgc.weights import load_model

from .conftest import DATA, need

PD = DATA / "pdfgc"


def _opt(**kw) -> AnimateOptions:
    # a turning pose clip (the pose calibration runs), a second clip for emotion and eyes, 20 frames
    return AnimateOptions(progress=False, max_frames=20, pose=str(need(PD / "motions/pose/681600002")),
                          emotion=str(need(PD / "motions/exp/vox2_id01228_00309")),
                          eyes=str(need(PD / "motions/eye/id01333_00040/images")), batch_size=4, **kw)


def test_two_threads_give_the_serial_codes_and_frames(pipes):
    serial, threaded = pipes
    assert serial.render_workers() == 1 and threaded.render_workers() == 2
    opt = _opt()
    audio = need(PD / "audio_longer.mp3")
    a = serial.plan(need(PD / "anne.png"), str(audio), opt)
    b = threaded.plan(need(PD / "anne.png"), str(audio), opt)
    for code in ("mouth", "emotion", "eye", "pose"):
        # the same measurements on the same graphs' inputs: equal up to float noise
        np.testing.assert_allclose(getattr(a, code).numpy(), getattr(b, code).numpy(), atol=1e-5, err_msg=code)
    assert np.abs(a.pose[:, :3].numpy()).max() > 0.5   # the clip turns the head: the calibration was used
    fa = np.concatenate([pp.to_uint8(x) for _, x in serial.render(a, opt)])
    slices = []
    fb = np.concatenate([pp.to_uint8(x) for sl, x in threaded.render(b, opt) if not slices.append(sl)])
    assert [s.start for s in slices] == list(range(0, 20, 4))   # in order, every batch once
    # the warp is deterministic per frame whatever thread renders it: at most one grey level (rounding) apart
    assert fa.shape == fb.shape == (20, 224, 224, 3)
    assert int(np.abs(fa.astype(int) - fb.astype(int)).max()) <= 1


def test_a_render_failure_on_a_worker_thread_leaves_no_output(pipes, tmp_path, monkeypatch):
    _, threaded = pipes
    fam = threaded.family
    real = type(fam).render
    calls = []

    def failing(self, plan, sl, prec, batch=None):
        calls.append(sl.start)
        if sl.start >= 8:
            raise InputError("boom on a render thread")
        return real(self, plan, sl, prec, batch)
    monkeypatch.setattr(type(fam), "render", failing)
    out = tmp_path / "out.mp4"
    with pytest.raises(InputError, match="boom on a render thread"):
        threaded(need(PD / "anne.png"), audio=str(need(PD / "audio_longer.mp3")), output=out, options=_opt())
    assert not out.exists() and not list(tmp_path.iterdir())   # no file, no temporary left


def test_a_driving_clip_without_a_face_is_one_error_line_and_exit_2(tmp_path, capsys):
    blank = tmp_path / "blank"
    blank.mkdir()
    import cv2
    for i in range(4):
        cv2.imwrite(str(blank / f"{i:03d}.png"), np.full((224, 224, 3), 120, np.uint8))
    out = tmp_path / "out.mp4"
    rc = cli_main(["animate", "--portrait", str(need(PD / "anne.png")), "--audio", str(need(PD / "audio_longer.mp3")),
                   "--pose", str(need(PD / "motions/pose/681600002")), "--eyes", str(blank), "--max-frames", "8",
                   "--threads", "2", "--quiet", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and not out.exists()
    assert err[-1].startswith("pdfgc: error: ") and "blank" in err[-1] and "no face" in err[-1]


def test_overlapping_quiet_stderr_on_threads_restores_fd_2(monkeypatch):
    monkeypatch.delenv("PDFGC_VERBOSE", raising=False)
    before = os.fstat(2)
    first_in, both_in, first_out = threading.Event(), threading.Barrier(2), threading.Event()
    seen = []

    def first():
        with M.quiet_native_stderr():
            first_in.set()
            both_in.wait()
            seen.append(os.path.samestat(os.fstat(2), os.stat(os.devnull)))
        first_out.set()

    def second():   # enters after the first, leaves after it (each restoring what it saw left fd 2 on /dev/null)
        first_in.wait()
        with M.quiet_native_stderr():
            both_in.wait()
            first_out.wait()
            seen.append(os.path.samestat(os.fstat(2), os.stat(os.devnull)))   # still quiet: one is inside
    ts = [threading.Thread(target=f) for f in (first, second)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    after = os.fstat(2)
    assert seen == [True, True]
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_errors_keep_the_serial_order_on_threads(pipes, tmp_path):
    """The portrait is measured on a thread from the start; a bad audio file is still reported before the
    portrait's missing face (the serial order), and a faceless portrait is reported as such."""
    _, threaded = pipes
    blank = np.full((224, 224, 3), 120, np.uint8)
    bad_audio = tmp_path / "speech.wav"
    bad_audio.write_bytes(b"not a wav file at all")
    with pytest.raises(InputError, match="speech.wav"):
        threaded(blank, audio=str(bad_audio), output=tmp_path / "a.mp4", options=_opt(align="never"))
    with pytest.raises(InputError, match="portrait: the face mesh finds no face"):
        threaded(blank, audio=str(need(PD / "audio_longer.mp3")), output=tmp_path / "b.mp4",
                 options=_opt(align="never"))
    assert not list(tmp_path.glob("*.mp4"))


def test_a_second_job_on_the_same_portrait_reuses_its_pose_calibration(pipes, monkeypatch):
    """The pose calibration is kept per portrait content (in memory): the same portrait's second job probes
    nothing and renders the same frames; another portrait is probed."""
    serial, _ = pipes
    fam = serial.family
    fam._calibrations.clear()
    calls = []
    real = type(fam).calibrate_pose
    monkeypatch.setattr(type(fam), "calibrate_pose", lambda self, st: calls.append(1) or real(self, st))
    opt = AnimateOptions(progress=False, lips="still", duration=0.32, pose=str(need(PD / "motions/pose/681600002")))
    frames = []
    for _ in range(2):
        plan = serial.plan(need(PD / "anne.png"), None, opt)
        frames.append(np.concatenate([pp.to_uint8(x) for _, x in serial.render(plan, opt)]))
    assert len(calls) == 1 and np.array_equal(frames[0], frames[1])
    other = np.ascontiguousarray(np.asarray(frames[0][0])[:, ::-1])   # the portrait mirrored: another portrait
    plan = serial.plan(other, None, dataclasses.replace(opt, align="never"))
    list(serial.render(plan, opt))
    assert len(calls) == 2


def test_the_speech_encoder_warm_up_loads_it_once(monkeypatch):
    """The warm-up thread (started as a job begins) and the job's own use load the speech encoder once."""
    from pdfgc.families.meshwarp import model as MW
    built = []
    real = MW.SpeechToMouth
    monkeypatch.setattr(MW, "SpeechToMouth", lambda head: built.append(1) or real(head))
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=2)
    opt = AnimateOptions(progress=False)
    pipe._warm_up(opt, "speech.wav")
    pipe._warm_up(opt, "speech.wav")   # while the first is loading: nothing more
    lips = pipe.model.lips              # waits for the warm-up's encoder
    pipe.family._warming.join()
    assert built == [1] and pipe.model.lips is lips
    pipe._warm_up(AnimateOptions(progress=False, lips="still"), "speech.wav")   # loaded, no lips from speech: none
    assert not pipe.family._warming.is_alive()


def test_mediapipe_imported_without_matplotlib_which_stays_importable():
    # in a fresh interpreter: the face mesh's import leaves matplotlib unimported (~0.4 s of start-up), and
    # mediapipe's drawing helpers still reach the real pyplot afterwards
    import subprocess
    import sys
    code = ("import sys\nfrom pdfgc.media.mesh import import_face_mesh\nfm = import_face_mesh()\n"
            "assert hasattr(fm, 'FaceMesh')\n"
            "assert 'matplotlib' not in sys.modules and 'matplotlib.pyplot' not in sys.modules, 'matplotlib imported'\n"
            "from mediapipe.python.solutions import drawing_utils as du\n"
            "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
            "assert du.plt.figure is plt.figure and sys.modules['matplotlib.pyplot'] is plt\n"
            "import mediapipe as mp\nassert mp.tasks.vision.FaceLandmarker\nprint('ok')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-2000:]


def test_unique_index_finds_byte_identical_frames_only():
    from pdfgc.media.driving import DrivingClip
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    near = base[1].copy()
    near[0, 0, 1] ^= 1    # one byte off, at a position the bucket sample skips: a different frame
    crops = np.stack([base[0], base[1], base[0], near, base[2], base[1], near, base[3], base[3]])
    clip = DrivingClip(path=Path("x"), kind="folder", crops=crops, aligned_by_us=False)
    assert clip.unique_index().tolist() == [0, 1, 0, 3, 4, 1, 3, 7, 7]


def test_landmarks_read_from_bytes_equal_the_point_by_point_read():
    M.import_face_mesh()
    from mediapipe.framework.formats import landmark_pb2
    rng = np.random.default_rng(1)
    xyz = rng.normal(size=(478, 3)).astype(np.float32)
    xyz[5] = 0.0   # zeros are written too (proto2 fields set explicitly)
    face = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in xyz:
        face.landmark.add(x=x, y=y, z=z)
    slow = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
    fast = M.landmarks_xyz(face)
    assert fast.dtype == np.float64 and np.array_equal(fast, slow) and np.array_equal(fast, xyz.astype(np.float64))
    face.landmark[7].visibility = 0.5   # another field set: the point-by-point read
    assert np.array_equal(M.landmarks_xyz(face), slow)
    face.landmark[3].ClearField("z")    # a field missing: likewise
    assert np.array_equal(M.landmarks_xyz(face)[3], [slow[3, 0], slow[3, 1], 0.0])
