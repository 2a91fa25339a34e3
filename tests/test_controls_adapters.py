"""The explicit controls' adapters, generated from their tables: every flag and web field belongs to a control and
sets a real field of it, and flags / page values give the controls they say."""
import argparse
import dataclasses

import pytest

from pdfgc.controls.cli_args import FLAGS, add_control_arguments, controls_from_args
from pdfgc.controls.explicit import CONTROL_TYPES, BlinkControl, LipControl, PoseControl
from pdfgc.controls.forms import FIELDS, controls_from_form
from pdfgc.errors import InputError


def _args(*argv):
    p = argparse.ArgumentParser()
    add_control_arguments(p)
    p.add_argument("--gaze")
    return p.parse_args(list(argv))


def test_tables_name_real_fields_of_their_controls():
    assert set(FLAGS) == set(CONTROL_TYPES)
    for kind, flags in FLAGS.items():
        names = {f.name for f in dataclasses.fields(CONTROL_TYPES[kind])}
        assert all(f.field in names for f in flags if f.field is not None), kind
    assert {f.kind for f in FIELDS.values()} == set(CONTROL_TYPES)


def test_no_control_flag_no_control():
    assert controls_from_args(_args()) == {}


def test_flags_give_their_controls():
    out = controls_from_args(_args("--yaw", "10", "--pose-interp", "cubic", "--pose-absolute", "--blink-rate", "12",
                                   "--blink-seed", "3", "--mute", "1-2", "--mute-ramp", "0.1"))
    assert out["pose_control"] == PoseControl(yaw=10.0, interpolation="cubic", relative=False)
    assert out["blink_control"] == BlinkControl(rate=12.0, seed=3)
    assert out["lip_control"] == LipControl(mute=[(1.0, 2.0)], ramp=0.1)
    keys = controls_from_args(_args("--pose-keyframes", "0:yaw=0; 2:yaw=20"))["pose_control"]
    assert keys.keyframes == [{"t": 0.0, "yaw": 0.0}, {"t": 2.0, "yaw": 20.0}] and keys.relative
    gaze = controls_from_args(_args("--gaze", "camera"))
    assert gaze["gaze"] is None and gaze["gaze_control"].camera   # a direction, not a source


@pytest.mark.parametrize("argv,needle", [
    (["--pose-absolute"], "--pose-absolute needs pose values"),
    (["--blink-duration", "9"], "blink duration 9 s is out of range (0.04..2 s) (--blink-*)"),  # used or not
    (["--mute-ramp", "-1"], "mute ramp -1 s is out of range"),
    (["--emotion-level", "0.5"], "--emotion-level needs"),
    (["--pose-keyframes", "yaw=3"], "--pose-keyframes 'yaw=3': expected keyframes"),
])
def test_bad_flags_one_message(argv, needle):
    with pytest.raises(InputError) as e:
        controls_from_args(_args(*argv))
    assert needle in str(e.value)


def test_page_values_give_their_controls():
    assert controls_from_form({}) == {}
    out = controls_from_form({"pose_mode": "controls", "pose_yaw": 20, "blink_mode": "controls", "blink_times": "1, 2",
                              "blink_rate": "", "lip_level": 0.5})
    assert out["pose_control"] == PoseControl(yaw=20.0, pitch=0.0, roll=0.0)
    assert out["blink_control"] == BlinkControl(times=[1.0, 2.0], rate=0.0)  # an empty rate: none
    assert out["lip_control"] == LipControl(intensity=0.5)
    with pytest.raises(InputError, match="no clip is uploaded"):
        controls_from_form({"emotion_mode": "reference"}, upload=lambda key, role: None)
