"""`pdfgc animate` flags for the explicit controls, and their translation into AnimateOptions fields.

Kept here (not in cli.py) so the shared CLI file only gains two calls. Precedence is documented in
pdfgc/controls/apply.py: a control overrides its own part of the code; the other parts follow their sources.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import InputError
from .explicit import (BlinkControl, EmotionControl, GazeControl, LipControl, PoseControl, parse_spans, parse_times,
                       parse_weights)


def add_control_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "explicit controls (physical values; each overrides only its own part of the code, the rest follows the "
        "sources above; all but --lip-level/--mute/--emotion-reference need a fitted mapping: see fit-controls)")
    g.add_argument("--yaw", type=float, metavar="DEG", help="head yaw in degrees (> 0: face turns toward the "
                                                             "image's right), added to the pose source's pose")
    g.add_argument("--pitch", type=float, metavar="DEG", help="head pitch in degrees (> 0: chin up)")
    g.add_argument("--roll", type=float, metavar="DEG", help="head roll in degrees (> 0: clockwise in the image)")
    g.add_argument("--tx", type=float, help="head shift, corpus units (crop widths, > 0 right)")
    g.add_argument("--ty", type=float, help="head shift, corpus units (crop widths, > 0 down)")
    g.add_argument("--pose-keyframes", metavar="SPEC", help="e.g. '0:yaw=0,pitch=0; 2:yaw=20' (seconds; '50f' frames)")
    g.add_argument("--pose-curve", metavar="FILE", help="CSV (time or frame column + yaw,pitch,roll,tx,ty,scale "
                                                        "columns) or JSON keyframes")
    g.add_argument("--pose-interp", choices=["linear", "smooth", "cubic", "step"], default="smooth",
                   help="keyframe interpolation (default smooth: ease in and out of each key)")
    g.add_argument("--pose-absolute", action="store_true",
                   help="the pose values are absolute (default: relative to the pose source, i.e. the portrait)")
    g.add_argument("--blink-times", metavar="LIST", help="blinks at these seconds (full closure), e.g. 1,4.5")
    g.add_argument("--blink-rate", type=float, metavar="PER_MIN", help="blinks per minute, natural jitter")
    g.add_argument("--blink-duration", type=float, default=0.2, metavar="S", help="seconds per blink (default 0.2)")
    g.add_argument("--blink-seed", type=int, default=0, help="seed of the blink-rate jitter")
    g.add_argument("--eye-openness", type=float, metavar="0..1", help="eye opening between blinks (1 = open)")
    g.add_argument("--gaze-direction", metavar="H,V", help="iris position: 'camera', or H,V in iris units "
                   "(-1..1; +H image right, +V up; '10deg,0deg' for degrees); --gaze H,V|camera works too")
    g.add_argument("--gaze-keyframes", metavar="SPEC", help="e.g. '0:camera; 1.5:h=0.5; 3:h=-0.5,v=0.2'")
    g.add_argument("--emotion-label", metavar="LABEL[:LEVEL]", help="e.g. happy or happy:0.5 (labels of the "
                                                                     "fitted mapping; neutral)")
    g.add_argument("--emotion-level", type=float, metavar="0..1", help="strength of --emotion-label/--emotion-blend/"
                                                                       "--emotion-reference (default 1)")
    g.add_argument("--emotion-blend", metavar="SPEC", help="e.g. happy:0.6,sad:0.2")
    g.add_argument("--emotion-reference", metavar="CLIP", help="video/frames/image whose mean expression is held")
    g.add_argument("--lip-level", type=float, metavar="0..2", help="lip motion strength (0 closed, 1 normal)")
    g.add_argument("--mute", metavar="SPANS", help="closed mouth during these seconds, e.g. 2.0-3.5,6-7")
    g.add_argument("--mute-ramp", type=float, default=0.08, metavar="S", help="fade in/out of a mute (default 0.08)")
    g.add_argument("--controls", metavar="FILE", help="control mapping file (default: <weights>.controls.json)")


def controls_from_args(args: argparse.Namespace) -> dict:
    """AnimateOptions overrides for the control flags of `args` (also moves a `--gaze H,V|camera` to the gaze
    control). Empty when no control flag is set."""
    out: dict = {}
    # pose
    consts = {k: getattr(args, k, None) for k in ("yaw", "pitch", "roll", "tx", "ty")}
    if any(v is not None for v in consts.values()) or args.pose_keyframes or args.pose_curve:
        pc = PoseControl(**{k: v for k, v in consts.items() if v is not None}, interpolation=args.pose_interp,
                         relative=not args.pose_absolute)
        if args.pose_keyframes:
            pc.keyframes = PoseControl.parse(args.pose_keyframes).keyframes
            if pc.keyframes is None:
                raise InputError(f"--pose-keyframes '{args.pose_keyframes}': expected keyframes like "
                                 "'0:yaw=0; 2:yaw=20'")
        if args.pose_curve:
            pc.curve = args.pose_curve
        out["pose_control"] = pc.validate()
    elif args.pose_absolute:
        raise InputError("--pose-absolute needs pose values (--yaw/--pitch/--roll, --pose-keyframes or --pose-curve)")
    # blink
    if args.blink_times or args.blink_rate is not None or args.eye_openness is not None:
        out["blink_control"] = BlinkControl(
            times=parse_times(args.blink_times, "--blink-times") if args.blink_times else None,
            rate=args.blink_rate, duration=args.blink_duration, seed=args.blink_seed,
            openness=1.0 if args.eye_openness is None else args.eye_openness).validate()
    # gaze (also `--gaze H,V|camera`: a direction rather than a source)
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
        out["gaze_control"] = GazeControl.parse(direction)
    elif args.gaze_keyframes:
        gc = GazeControl.parse(args.gaze_keyframes)
        if not gc.keyframes:
            raise InputError(f"--gaze-keyframes '{args.gaze_keyframes}': expected keyframes like '0:camera; 2:h=0.5'")
        out["gaze_control"] = gc
    # emotion
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
        out["emotion_control"] = EmotionControl(label=label, intensity=v if ":" in args.emotion_label else level
                                                ).validate()
    elif args.emotion_blend:
        out["emotion_control"] = EmotionControl(blend=parse_weights(args.emotion_blend, "--emotion-blend"),
                                                intensity=level).validate()
    elif args.emotion_reference:
        out["emotion_control"] = EmotionControl(reference=args.emotion_reference, intensity=level).validate()
    elif args.emotion_level is not None:
        raise InputError("--emotion-level needs --emotion-label, --emotion-blend or --emotion-reference "
                         "(the source code multiplier is --emotion-intensity)")
    # lips
    if args.lip_level is not None or args.mute:
        out["lip_control"] = LipControl(intensity=1.0 if args.lip_level is None else args.lip_level,
                                        mute=parse_spans(args.mute, "--mute") if args.mute else None,
                                        ramp=args.mute_ramp).validate()
    if args.controls:
        out["control_mapping"] = args.controls
    elif getattr(args, "official_checkpoints", None):
        from .mapping import mapping_path_for
        cand = mapping_path_for(Path(args.official_checkpoints))
        if cand.is_file():
            out["control_mapping"] = str(cand)
    return out
