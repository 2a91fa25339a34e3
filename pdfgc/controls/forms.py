"""The web page's fields for the explicit controls: each field declared once (`FIELDS`: its widget, label, range,
initial value and the value an empty field means), the gradio widget generated from it (`widget`), and the page's
values read back into controls (`controls_from_form`). The page (pdfgc/ui/layout.py) places the widgets (tabs,
rows, presets); a control is on when its factor's mode is "controls" (lips: when its fields leave the neutral)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .grammar import parse_spans, parse_times
from .specs import (
    ANGLE_CHANNELS,
    CONTROL_TYPES,
    BlinkControl,
    EmotionControl,
    GazeControl,
    LipControl,
    PoseControl,
)


@dataclass(frozen=True)
class Field:
    """One web field of a control: a `widget` ("slider", "text", "radio", "checkbox", "dropdown")."""

    kind: str                       # the control it belongs to
    widget: str
    label: str
    value: Any = None               # initial value
    range: tuple = ()               # slider: (low, high, step)
    choices: tuple = ()             # radio / dropdown (a dropdown's are the model's: given when built)
    placeholder: str | None = None
    empty: Any = None               # what an empty field means (None: the initial value)
    extra: dict = field(default_factory=dict)  # further gradio arguments (scale, visible)


def _angle(ch: str) -> Field:
    return Field("pose", "slider", f"{ch} (deg)", 0, (-45, 45, 1), empty=0.0)


FIELDS: dict[str, Field] = {
    **{f"pose_{ch}": _angle(ch) for ch in ANGLE_CHANNELS},
    "pose_keyframes": Field("pose", "text", "Keyframes (seconds: name=value)", "",
                            placeholder="e.g. 0:yaw=0; 2:yaw=20,pitch=5"),
    "pose_interp": Field("pose", "radio", "Between keyframes", "smooth", choices=("smooth", "linear", "cubic", "step")),
    "pose_absolute": Field("pose", "checkbox", "absolute angles (default: added to the portrait's pose)", False),
    "blink_times": Field("blink", "text", "Blink at (seconds)", "", placeholder="e.g. 1, 3.5", extra={"scale": 2}),
    "blink_rate": Field("blink", "slider", "and/or per minute (natural jitter)", 15, (0, 60, 1), empty=0.0),
    "blink_duration": Field("blink", "slider", "Blink duration (s)", 0.2, (0.1, 0.8, 0.05)),
    "eye_openness": Field("blink", "slider", "Eye openness between blinks", 1, (0, 1, 0.05), empty=1.0),
    "gaze_camera": Field("gaze", "checkbox", "look at the camera", False),
    "gaze_h": Field("gaze", "slider", "horizontal (> 0 toward the image's right)", 0, (-1, 1, 0.05), empty=0.0),
    "gaze_v": Field("gaze", "slider", "vertical (> 0 up)", 0, (-1, 1, 0.05), empty=0.0),
    "gaze_keyframes": Field("gaze", "text", "or keyframes", "", placeholder="e.g. 0:camera; 1.5:h=0.5; 3:h=-0.5,v=0.2"),
    "emotion_label": Field("emotion", "dropdown", "Emotion"),
    "emotion_level": Field("emotion", "slider", "Strength of the emotion or of the clip's expression (0 neutral .. 1)",
                           1, (0, 1, 0.05), empty=1.0, extra={"visible": False}),
    "emotion_label2": Field("emotion", "dropdown", "Blend with", "none"),
    "emotion_mix": Field("emotion", "slider", "Share of the second emotion", 0.5, (0, 1, 0.05), empty=0),
    "lip_level": Field("lip", "slider", "Lip motion (0 closed, 1 as the source, 2 exaggerated)", 1.0, (0, 2, 0.05),
                       empty=1.0),
    "mute_spans": Field("lip", "text", "Mouth closed during (seconds)", "", placeholder="e.g. 1.0-1.5, 3-3.2"),
}
FORM_FIELDS = tuple(FIELDS)   # the page's control widgets, in the order it passes their values


def widget(gr, key: str, **overrides):
    """The gradio widget of field `key` (elem_id: the key with dashes); `overrides`: e.g. a dropdown's choices."""
    f = FIELDS[key]
    kw = dict(label=f.label, elem_id=key.replace("_", "-"), **f.extra)
    if f.placeholder is not None:
        kw["placeholder"] = f.placeholder
    kw.update(overrides)
    value = kw.pop("value", f.value)
    if f.widget == "slider":
        lo, hi, step = f.range
        return gr.Slider(lo, hi, value=value, step=step, **kw)
    if f.widget == "text":
        return gr.Textbox(value=value, **kw)
    if f.widget == "radio":
        return gr.Radio(list(kw.pop("choices", f.choices)), value=value, **kw)
    if f.widget == "checkbox":
        return gr.Checkbox(value, **kw)
    if f.widget == "dropdown":
        return gr.Dropdown(list(kw.pop("choices", f.choices)), value=value, **kw)
    raise ValueError(f"control field {key}: unknown widget {f.widget!r}")


# ---- the page's values -> controls ---------------------------------------------------------------------------------
def _number(v: dict, key: str) -> float:
    """A number field (empty: what the field's declaration says an empty field means)."""
    x = v.get(key)
    f = FIELDS[key]
    return (f.value if f.empty is None else f.empty) if x is None or x == "" else float(x)


def _text(v: dict, key: str) -> str:
    return str(v.get(key) or "").strip()


def _pose(v: dict, upload) -> PoseControl | None:
    if v.get("pose_mode") != "controls":
        return None
    angles = {ch: _number(v, f"pose_{ch}") for ch in ANGLE_CHANNELS}
    common = dict(interpolation=v.get("pose_interp") or "smooth", relative=not v.get("pose_absolute"))
    spec = _text(v, "pose_keyframes")
    if not spec:
        return PoseControl(**angles, **common).validate()
    keys = PoseControl.parse(spec).keyframes
    if not keys:
        raise InputError(f"pose keyframes '{spec}': expected TIME:NAME=VALUE,... e.g. '0:yaw=0; 2:yaw=20'")
    keyed = {n for k in keys for n in k if n != "t"}
    # the keyframes own the channels they set; a non-zero slider still sets the others
    extra = {ch: a for ch, a in angles.items() if ch not in keyed and a != 0}
    return PoseControl(keyframes=keys, **extra, **common).validate()


def _blink(v: dict, upload) -> BlinkControl | None:
    if v.get("blink_mode") != "controls":
        return None
    times = _text(v, "blink_times")
    return BlinkControl(times=parse_times(times, "blink times") if times else None, rate=_number(v, "blink_rate"),
                        duration=_number(v, "blink_duration"), openness=_number(v, "eye_openness")).validate()


def _gaze(v: dict, upload) -> GazeControl | None:
    if v.get("gaze_mode") != "controls":
        return None
    if v.get("gaze_camera"):
        return GazeControl(camera=True).validate()
    spec = _text(v, "gaze_keyframes")
    if spec:
        g = GazeControl.parse(spec)
        if not g.keyframes:
            raise InputError(f"gaze keyframes '{spec}': expected e.g. '0:camera; 1.5:h=0.5; 3:h=-0.5,v=0.2'")
        return g
    return GazeControl(horizontal=_number(v, "gaze_h"), vertical=_number(v, "gaze_v")).validate()


def _emotion(v: dict, upload) -> EmotionControl | None:
    """``emotion_mode`` "controls" (a label, or a blend of two) or "reference" (the mean expression of the uploaded
    ``emotion_video``)."""
    level = _number(v, "emotion_level")
    if v.get("emotion_mode") == "reference":
        reference = upload("emotion_video", "emotion reference clip") if upload is not None else None
        if reference is None:
            raise InputError("emotion: 'mean expression of a clip' is chosen but no clip is uploaded")
        return EmotionControl(reference=str(reference), intensity=level).validate()
    if v.get("emotion_mode") != "controls":
        return None
    first, second = v.get("emotion_label") or "neutral", v.get("emotion_label2")
    mix = _number(v, "emotion_mix")
    if second and second != "none" and mix > 0:
        if second == first:
            raise InputError(f"emotion blend: '{first}' twice; choose two different labels")
        return EmotionControl(blend={first: 1 - mix, second: mix}, intensity=level).validate()
    return EmotionControl(label=first, intensity=level).validate()


def _lip(v: dict, upload) -> LipControl | None:
    """On when the level is not 1 or a mute span is given."""
    level, mute = _number(v, "lip_level"), _text(v, "mute_spans")
    if level == 1.0 and not mute:
        return None
    return LipControl(intensity=level, mute=parse_spans(mute) if mute else None).validate()


READERS = {"pose": _pose, "blink": _blink, "gaze": _gaze, "emotion": _emotion, "lip": _lip}


def controls_from_form(v: dict, upload=None) -> dict:
    """{AnimateOptions field: control} for the controls the page's values `v` turn on; ``upload(field, role)`` is
    the page's checked path of an uploaded file, or None. Raises InputError."""
    out = {}
    for kind, cls in CONTROL_TYPES.items():
        ctl = READERS[kind](v, upload)
        if ctl is not None:
            out[cls.option] = ctl
    return out
