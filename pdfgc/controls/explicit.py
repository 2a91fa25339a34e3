"""Explicit controls: physical values for each motion factor, turned into per-frame curves at 25 fps.

Split along its seams: the physical specs (the control dataclasses, their values, ranges and curves:
`pdfgc.controls.specs`), the text grammar (specs such as ``"yaw=10,pitch=-5"``, keyframes, time lists, spans,
curve files: `pdfgc.controls.grammar`), and the adapters generated from them: the ``pdfgc animate`` flags
(`pdfgc.controls.cli_args`) and the web page's fields (`pdfgc.controls.forms`). This module keeps the public names
importable from one place (``from pdfgc.controls.explicit import PoseControl, ...``).
"""
from .forms import FORM_FIELDS
from .grammar import MAX_SPEC_CHARS, load_curve_file, parse_spans, parse_time, parse_times, parse_weights
from .specs import (
    ANGLE_CHANNELS,
    CONTROL_FIELDS,
    CONTROL_TYPES,
    CURVE_BYTES_PER_SECOND,
    CURVE_BYTES_SLACK,
    EMOTION_SYNONYMS,
    GAZE_CHANNELS,
    INTERPOLATIONS,
    KNOWN_EMOTIONS,
    MAX_CURVE_SECONDS,
    POSE_CHANNELS,
    REFERENCE_MAX_FRAMES,
    BlinkControl,
    EmotionControl,
    GazeControl,
    LipControl,
    PoseControl,
    coerce_control,
    controls_of,
    describe_controls,
    frame_times,
    interpolate,
    normalise_emotion,
)

__all__ = ["ANGLE_CHANNELS", "CONTROL_FIELDS", "CONTROL_TYPES", "CURVE_BYTES_PER_SECOND", "CURVE_BYTES_SLACK",
           "EMOTION_SYNONYMS", "FORM_FIELDS", "GAZE_CHANNELS", "INTERPOLATIONS", "KNOWN_EMOTIONS", "MAX_CURVE_SECONDS",
           "MAX_SPEC_CHARS", "POSE_CHANNELS", "REFERENCE_MAX_FRAMES", "BlinkControl", "EmotionControl", "GazeControl",
           "LipControl", "PoseControl", "coerce_control", "controls_of", "describe_controls", "frame_times",
           "interpolate", "load_curve_file", "normalise_emotion", "parse_spans", "parse_time", "parse_times",
           "parse_weights"]
