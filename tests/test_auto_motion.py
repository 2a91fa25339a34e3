"""Generated motion (`--pose auto`, `--blink auto`, issue 21): seeded, speech-driven, overridable, refused where the
pose code is not in degrees."""
from __future__ import annotations

import re

import numpy as np
import pytest

from pdfgc.controls.explicit import BlinkControl, PoseControl
from pdfgc.errors import InputError
from pdfgc.families.meshwarp.motion import MotionModel, auto_blink_control, speech_loudness
from pdfgc.options import AnimateOptions, check_options
from pdfgc.pipeline import TalkingHeadPipeline, load_speech
from pdfgc.weights import load_model

from .conftest import DATA, FIXTURE, need

ANNE = DATA / "pdfgc" / "anne.png"
SPEECH = FIXTURE / "clip2s_16k.wav"


@pytest.fixture(scope="module")
def model():
    return MotionModel.load()


@pytest.fixture(scope="module")
def pipe():
    return TalkingHeadPipeline(load_model(), device="cpu", threads=1)


def _figures(angles):
    return angles.std(0), np.abs(np.diff(angles, axis=0)).mean(0) * 25


def test_deterministic_for_a_seed(model):
    loud = np.linspace(0.2, 0.6, 200)
    a, b, c = model.head_angles(loud, seed=3), model.head_angles(loud, seed=3), model.head_angles(loud, seed=4)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (200, 3) and np.abs(a - c).max() > 0.5
    assert np.abs(a[0]).max() < 1.5   # starts at the portrait's own pose: one small step from 0


def test_silence_moves_less_and_slower_than_speech(model):
    rest, speak = model.params["activity"]["rest"], model.params["activity"]["speak"]
    t = 25 * 20
    still = np.array([_figures(model.head_angles(np.full(t, rest - 0.1), s)) for s in range(6)]).mean(0)
    talk = np.array([_figures(model.head_angles(np.full(t, speak + 0.1), s)) for s in range(6)]).mean(0)
    assert np.all(still[1] < 0.75 * talk[1]), (still, talk)   # speed: slow at rest
    assert np.all(still[0] < talk[0]), (still, talk)           # spread: small at rest
    assert np.all(still[0] < 4.0) and np.all(still[1] < 12.0)  # degrees, deg/s: a slow drift, not a shake


def test_long_audio_stays_in_range(model):
    a = model.head_angles(np.full(25 * 600, 1.0), seed=0)   # ten minutes of loud speech
    limits = np.array([model.params["pose"][k]["limit"] for k in ("yaw", "pitch", "roll")])
    assert np.all(np.abs(a) <= limits) and np.all(a.std(0) > 0.5)


def test_speech_loudness_follows_the_audio():
    speech = load_speech(need(SPEECH))
    loud = speech_loudness(speech, speech.num_frames)
    assert loud.shape == (speech.num_frames,) and np.all(np.isfinite(loud)) and loud.std() > 0.01
    np.testing.assert_array_equal(speech_loudness(None, 7), np.zeros(7))


def test_pose_auto_plan_and_explicit_yaw_adds(pipe):
    audio = need(SPEECH)
    base = pipe.plan(need(ANNE), audio, AnimateOptions(pose="auto", motion_seed=1, progress=False))
    again = pipe.plan(need(ANNE), audio, AnimateOptions(pose="auto", motion_seed=1, progress=False))
    torch_equal = (base.pose == again.pose).all()
    assert torch_equal and base.pose[:, :3].abs().max() > 0.5 and base.pose[:, 3:].abs().max() == 0
    plus = pipe.plan(need(ANNE), audio, AnimateOptions(pose="auto", motion_seed=1, progress=False,
                                                       pose_control=PoseControl(yaw=10)))
    np.testing.assert_allclose((plus.pose - base.pose)[:, 0].numpy(), 10.0, atol=1e-4)
    np.testing.assert_allclose((plus.pose - base.pose)[:, 1:].numpy(), 0.0, atol=1e-5)
    half = pipe.plan(need(ANNE), audio, AnimateOptions(pose="auto", motion_seed=1, pose_intensity=0.5,
                                                       progress=False))
    np.testing.assert_allclose(half.pose.numpy(), 0.5 * base.pose.numpy(), atol=1e-5)


def test_pose_auto_without_audio_is_a_slow_drift(pipe, model):
    plan = pipe.plan(need(ANNE), None, AnimateOptions(pose="auto", lips="still", duration=4.0, progress=False))
    std, speed = _figures(plan.pose[:, :3].numpy().astype(np.float64))
    np.testing.assert_allclose(plan.pose[:, :3].numpy(), model.head_angles(np.zeros(100), 0), atol=1e-5)
    assert np.all(speed < 12.0) and np.all(std < 4.0)


def test_blink_auto_is_a_seeded_natural_rate(pipe):
    ctl = auto_blink_control(5)
    assert isinstance(ctl, BlinkControl) and 10 <= ctl.rate <= 50 and ctl.seed == 5
    times = ctl.blink_times(25 * 60)
    assert 0.5 * ctl.rate <= len(times) <= 1.5 * ctl.rate
    plan = pipe.plan(need(ANNE), None, AnimateOptions(blink="auto", lips="still", duration=10.0, motion_seed=5,
                                                      progress=False))
    closed = plan.eye[:, 0].numpy() < -0.5
    assert closed.any() and closed.mean() < 0.3
    # the user's own blink control wins over the generated rate
    mine = pipe.plan(need(ANNE), None, AnimateOptions(blink="auto", lips="still", duration=10.0, progress=False,
                                                      blink_control=BlinkControl(times=[5.0])))
    assert np.flatnonzero(mine.eye[:, 0].numpy() < -0.9).tolist() == [125]


@pytest.mark.parametrize("field", ["lips", "eyes", "gaze", "emotion"])
def test_auto_only_for_pose_and_blink(field):
    with pytest.raises(InputError, match="only --pose and --blink"):
        check_options(AnimateOptions(**{field: "auto"}))


def test_bad_motion_seed():
    with pytest.raises(InputError, match="--motion-seed"):
        check_options(AnimateOptions(pose="auto", motion_seed=-1))


def test_pose_auto_on_pdfgc_networks_is_one_clear_error(tiny, tmp_path, capsys):
    from pdfgc.cli import main

    weights = tiny.save_pretrained(tmp_path / "tiny.safetensors")
    out = tmp_path / "o.mp4"
    rc = main(["animate", "--weights", str(weights), "--portrait", str(need(ANNE)), "--audio", str(need(SPEECH)),
               "--pose", "auto", "--quiet", "-o", str(out)])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("pdfgc: error:")]
    assert rc == 2 and len(lines) == 1 and re.search("pose auto.*not in physical units", lines[0]), err
    assert "Traceback" not in err and not out.exists()


def test_pose_auto_on_a_physical_pose_code_pdfgc_model():
    """A `pdfgc train` model whose pose code is the physical pose (radians) gets the same motion, converted."""
    from pdfgc.families.pdfgc.model import PDFGC
    from pdfgc.families.pdfgc.testing import tiny_config
    from pdfgc.families.pdfgc.training.stages import POSE_CODE_UNITS

    cfg = tiny_config()
    cfg.pose_code_units = POSE_CODE_UNITS
    pipe = TalkingHeadPipeline(PDFGC.random(0, cfg), device="cpu", threads=1)
    still = pipe.plan(need(ANNE), need(SPEECH), AnimateOptions(pose="still", progress=False))
    auto = pipe.plan(need(ANNE), need(SPEECH), AnimateOptions(pose="auto", motion_seed=2, progress=False))
    speech = load_speech(SPEECH)
    want = MotionModel.load().head_angles(speech_loudness(speech, auto.num_frames), 2) * np.pi / 180
    np.testing.assert_allclose((auto.pose - still.pose)[:, :3].numpy(), want, atol=1e-5)
    np.testing.assert_allclose((auto.pose - still.pose)[:, 3:].numpy(), 0.0, atol=1e-6)
