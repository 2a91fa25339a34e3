"""`pdfgc animate` flags for the explicit controls, generated from one table per control (`FLAGS`: each flag, the
control field it sets and how its text is read), and their translation into AnimateOptions fields.

A flag sets one field of its control (`Flag.field`), read by the control grammar where it is text
(`pdfgc.controls.grammar`); giving any flag that `turns_on` its control makes the control, the others (a blink
duration, a mute ramp) only tune it. The two controls whose flags are whole specs (a gaze direction or keyframes, an
emotion label or blend) have their own reader. Precedence is documented in families/pdfgc/controls/apply.py: a
control overrides its own part of the code; the other parts follow their sources.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from .grammar import parse_spans, parse_times, parse_weights
from .specs import CONTROL_TYPES, INTERPOLATIONS, EmotionControl, GazeControl, PoseControl


@dataclass(frozen=True)
class Flag:
    """One control flag: `flag` sets control field `field` (None: read by the control's own reader)."""

    flag: str
    field: str | None
    help: str
    metavar: str | None = None
    type: Callable | None = None
    default: Any = None
    choices: tuple | None = None
    switch: bool = False                       # a store_true flag
    read: Callable[[str, str], Any] | None = None  # (text, flag) -> the field's value (the control grammar)
    turns_on: bool = True                      # giving it makes the control
    blank_unset: bool = False                  # an empty value counts as not given

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


def _pose_keyframes(text: str, flag: str) -> list[dict]:
    keys = PoseControl.parse(text).keyframes
    if keys is None:
        raise InputError(f"{flag} '{text}': expected keyframes like '0:yaw=0; 2:yaw=20'")
    return keys


FLAGS: dict[str, tuple[Flag, ...]] = {
    "pose": (
        Flag("--yaw", "yaw", "head yaw in degrees (> 0: face turns toward the image's right), added to the pose "
                             "source's pose", "DEG", float),
        Flag("--pitch", "pitch", "head pitch in degrees (> 0: chin up)", "DEG", float),
        Flag("--roll", "roll", "head roll in degrees (> 0: clockwise in the image)", "DEG", float),
        Flag("--tx", "tx", "head shift, corpus units (crop widths, > 0 right)", type=float),
        Flag("--ty", "ty", "head shift, corpus units (crop widths, > 0 down)", type=float),
        Flag("--pose-keyframes", "keyframes", "e.g. '0:yaw=0,pitch=0; 2:yaw=20' (seconds; '50f' frames)", "SPEC",
             read=_pose_keyframes, blank_unset=True),
        Flag("--pose-curve", "curve", "CSV (time or frame column + yaw,pitch,roll,tx,ty,scale columns) or JSON "
                                      "keyframes", "FILE", blank_unset=True),
        Flag("--pose-interp", "interpolation", "keyframe interpolation (default smooth: ease in and out of each key)",
             choices=INTERPOLATIONS, default="smooth", turns_on=False),
        Flag("--pose-absolute", "relative", "the pose values are absolute (default: relative to the pose source, "
                                            "i.e. the portrait)", switch=True, read=lambda on, _: not on,
             turns_on=False),
    ),
    "blink": (
        Flag("--blink-times", "times", "blinks at these seconds (full closure), e.g. 1,4.5", "LIST", read=parse_times),
        Flag("--blink-rate", "rate", "blinks per minute, natural jitter", "PER_MIN", float),
        Flag("--blink-duration", "duration", "seconds per blink (default 0.2)", "S", float, 0.2, turns_on=False),
        Flag("--blink-seed", "seed", "seed of the blink-rate jitter", type=int, default=0, turns_on=False),
        Flag("--eye-openness", "openness", "eye opening between blinks (1 = open)", "0..1", float),
    ),
    "gaze": (
        Flag("--gaze-direction", None, "iris position: 'camera', or H,V in iris units (-1..1; +H image right, +V up; "
                                       "'10deg,0deg' for degrees); --gaze H,V|camera works too", "H,V"),
        Flag("--gaze-keyframes", None, "e.g. '0:camera; 1.5:h=0.5; 3:h=-0.5,v=0.2'", "SPEC"),
    ),
    "emotion": (
        Flag("--emotion-label", None, "e.g. happy or happy:0.5 (labels of the fitted mapping; neutral)",
             "LABEL[:LEVEL]"),
        Flag("--emotion-level", None, "strength of --emotion-label/--emotion-blend/--emotion-reference (default 1)",
             "0..1", float),
        Flag("--emotion-blend", None, "e.g. happy:0.6,sad:0.2", "SPEC"),
        Flag("--emotion-reference", None, "video/frames/image whose mean expression is held", "CLIP"),
    ),
    "lip": (
        Flag("--lip-level", "intensity", "lip motion strength (0 closed, 1 normal)", "0..2", float),
        Flag("--mute", "mute", "closed mouth during these seconds, e.g. 2.0-3.5,6-7", "SPANS", read=parse_spans),
        Flag("--mute-ramp", "ramp", "fade in/out of a mute (default 0.08)", "S", float, 0.08, turns_on=False),
    ),
}
# controls whose tuning flags are checked even when the control is not made (a typo is still a typo), and the hint
# their messages get
CHECKED_UNUSED = {"blink": " (--blink-*)", "lip": ""}


def add_control_arguments(g) -> None:
    """The explicit controls' flags, into argument group `g` (the mapping file's --controls is the PD-FGC family's
    own option: families/pdfgc/options.py)."""
    for kind in CONTROL_TYPES:
        for f in FLAGS[kind]:
            if f.switch:
                g.add_argument(f.flag, action="store_true", help=f.help)
            else:
                kw = {k: getattr(f, k) for k in ("metavar", "type", "default") if getattr(f, k) is not None}
                if f.choices:
                    kw["choices"] = list(f.choices)
                g.add_argument(f.flag, help=f.help, **kw)


def _fields_control(kind: str, args) -> dict:
    """The control of `kind` from its field flags: {option field: control} when a flag that turns it on is given."""
    cls = CONTROL_TYPES[kind]
    values, on = {}, False
    for f in FLAGS[kind]:
        v = getattr(args, f.dest)
        if v is None or (f.blank_unset and not v):
            continue
        values[f.field] = f.read(v, f.flag) if f.read is not None else v
        on = on or f.turns_on
    ctl = cls(**values)
    if kind in CHECKED_UNUSED:
        try:
            ctl.validate()
        except InputError as e:
            raise InputError(f"{e}{CHECKED_UNUSED[kind]}") from None
    if not on:
        if kind == "pose" and args.pose_absolute:
            raise InputError("--pose-absolute needs pose values (--yaw/--pitch/--roll, --pose-keyframes or "
                             "--pose-curve)")
        return {}
    return {cls.option: ctl.validate()}


def _gaze_control(args) -> dict:
    """--gaze-direction or --gaze-keyframes; also takes a `--gaze H,V|camera` (a direction rather than a source)
    and clears that source."""
    out: dict = {}
    direction = args.gaze_direction
    gaze_src = getattr(args, "gaze", None)
    if gaze_src and GazeControl.looks_like_spec(gaze_src) and not Path(gaze_src).exists():
        if direction:
            raise InputError("give the gaze direction once (--gaze or --gaze-direction)")
        direction = gaze_src
        out["gaze"] = None
    if direction and args.gaze_keyframes:
        raise InputError("give a gaze direction or gaze keyframes, not both")
    if direction:
        out[GazeControl.option] = GazeControl.parse(direction)
    elif args.gaze_keyframes:
        gc = GazeControl.parse(args.gaze_keyframes)
        if not gc.keyframes:
            raise InputError(f"--gaze-keyframes '{args.gaze_keyframes}': expected keyframes like '0:camera; 2:h=0.5'")
        out[GazeControl.option] = gc
    return out


def _emotion_control(args) -> dict:
    """One of --emotion-label (LABEL[:LEVEL]), --emotion-blend, --emotion-reference, at --emotion-level."""
    cls = EmotionControl
    given = [n for n in ("emotion_label", "emotion_blend", "emotion_reference") if getattr(args, n)]
    if len(given) > 1:
        raise InputError("give one of --emotion-label, --emotion-blend, --emotion-reference")
    level = 1.0 if args.emotion_level is None else args.emotion_level
    if args.emotion_label:
        w = parse_weights(args.emotion_label, "--emotion-label")
        if len(w) != 1:
            raise InputError("--emotion-label takes one label (use --emotion-blend for several)")
        (label, v), = w.items()
        if ":" in args.emotion_label and args.emotion_level is not None:
            raise InputError("give the emotion level once (LABEL:LEVEL or --emotion-level)")
        return {cls.option: cls(label=label, intensity=v if ":" in args.emotion_label else level).validate()}
    if args.emotion_blend:
        return {cls.option: cls(blend=parse_weights(args.emotion_blend, "--emotion-blend"), intensity=level).validate()}
    if args.emotion_reference:
        return {cls.option: cls(reference=args.emotion_reference, intensity=level).validate()}
    if args.emotion_level is not None:
        raise InputError("--emotion-level needs --emotion-label, --emotion-blend or --emotion-reference "
                         "(the source code multiplier is --emotion-intensity)")
    return {}


READERS = {"gaze": _gaze_control, "emotion": _emotion_control}   # the rest: _fields_control


def controls_from_args(args: argparse.Namespace) -> dict:
    """AnimateOptions overrides for the control flags of `args` (also moves a `--gaze H,V|camera` to the gaze
    control), plus the control mapping found beside official checkpoints. Empty when no control flag is set."""
    out: dict = {}
    for kind in CONTROL_TYPES:
        out.update(READERS[kind](args) if kind in READERS else _fields_control(kind, args))
    if not getattr(args, "control_mapping", None) and getattr(args, "official_checkpoints", None):
        from ..families.pdfgc.controls.mapping import mapping_path_for
        cand = mapping_path_for(Path(args.official_checkpoints))
        if cand.is_file():
            out["control_mapping"] = str(cand)
    return out
