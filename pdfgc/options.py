"""The options of one animation (`AnimateOptions`) and their validation, shared by the CLI, the Python API and the
web UI."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from .controls.explicit import BlinkControl, EmotionControl, GazeControl, LipControl, PoseControl
from .errors import InputError
from .official_rules import OFFICIAL_SKIP, POSE_SCALE
from .vocabulary import ALIGN_MODES, DRIVING_MODES, DRIVING_REFERENCES, PRECISIONS

SPECIAL_SOURCES = ("audio", "still", "off")
LAYOUTS = ("auto", "result", "panels", "pasteback")


@dataclass
class AnimateOptions:
    """Every knob of one animation; serialisable (dataclasses.asdict) and mirrored by the CLI."""

    lips: str = "audio"
    pose: str = "still"
    eyes: str = "still"
    blink: str | None = None
    gaze: str | None = None
    emotion: str = "still"
    # code multipliers; None = the model's defaults (official: mouth 1.5, eye 1.2, emotion 1.2, pose 1.0)
    mouth_intensity: float | None = None
    pose_intensity: float = POSE_SCALE
    blink_intensity: float | None = None
    gaze_intensity: float | None = None
    emotion_intensity: float | None = None
    mouth_smoothing: bool = True      # official 3-tap Gaussian over time
    pose_smoothing: bool = True       # official 3-tap box over time
    driving_mode: str = "loop"        # loop (official) | pingpong | hold | strict
    driving_skip: int = OFFICIAL_SKIP  # official: the first two driving frames are dropped
    driving_reference: str = "auto"   # mesh-warp family: a clip's motion is taken relative to its most neutral
                                      # frame ("auto": eyes open, mouth closed, frontal) or its "first" frame
    refiner: bool = False             # mesh-warp family: its learned refiner over the warp (teeth, lash lines;
                                      # off by default: the mouth it paints reads back less like the real one and
                                      # hides the surprised "O" from fer: benchmarks/results/meshwarp/refiner_README)
    align: str = "auto"               # auto | always | never (face detection + alignment of the portrait/videos)
    layout: str = "auto"              # auto | result | panels (official five-panel strip) | pasteback; auto:
                                      # pasteback for a photo the default family aligned, else result
    precision: str = "exact"          # exact (fp32, official-equal) | fast (bf16/fp16 autocast)
    batch_size: int | None = None     # None: cheapest for the device
    device: str = "auto"
    threads: int | None = None
    duration: float | None = None     # seconds, when there is no audio and lips are not from a video
    max_frames: int | None = None
    crf: int = 18
    preset: str | None = None         # x264 preset; None: medium (exact) / veryfast (fast)
    progress: bool = True
    # explicit controls (pdfgc.controls.explicit): None = the factor follows its source; a control dataclass, its
    # dict or a spec string overrides its own part of the code after the sources are planned
    pose_control: PoseControl | dict | str | None = None
    blink_control: BlinkControl | dict | str | None = None    # eye-code BLINK_DIMS only
    gaze_control: GazeControl | dict | str | None = None      # eye-code GAZE_DIMS only
    emotion_control: EmotionControl | dict | str | None = None
    lip_control: LipControl | dict | str | None = None
    control_mapping: str | None = None  # fitted mapping file; None: <weights stem>.controls.json beside the weights



# x264's speed presets (libx264 refuses any other name, deep inside the encoder)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
MAX_DURATION_S = 24 * 3600   # --duration: a day of video; past it a typo (1e12) would try to allocate petabytes
MAX_INTENSITY = 10.0         # code multipliers: far past it the generator only renders saturated noise
_INTENSITIES = ("mouth_intensity", "pose_intensity", "blink_intensity", "gaze_intensity", "emotion_intensity")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _number(opt: AnimateOptions, name: str, integer: bool = False, optional: bool = True):
    """The value of field `name` if it is a (finite) number, None if it is None and may be; InputError else."""
    v = getattr(opt, name)
    if v is None and optional:
        return None
    ok = isinstance(v, numbers.Integral) if integer else isinstance(v, numbers.Real)
    if isinstance(v, bool) or not ok:
        kind = "a whole number" if integer else "a number"
        raise InputError(f"{_flag(name)} must be {kind}, got {v!r}")
    if not math.isfinite(v):
        raise InputError(f"{_flag(name)} must be a finite number, got {v}")
    return v


def check_options(opt: AnimateOptions) -> None:
    """The one validation of option values (the CLI, the Python API and the web UI all call it): every number
    finite and in range, every name known. Raises InputError naming the option, before anything is read."""
    if opt.driving_mode not in DRIVING_MODES:
        raise InputError(f"unknown driving mode '{opt.driving_mode}' (choose from {', '.join(DRIVING_MODES)})")
    if opt.layout not in LAYOUTS:
        raise InputError(f"unknown layout '{opt.layout}' (choose from {', '.join(LAYOUTS)})")
    if opt.precision not in PRECISIONS:
        raise InputError(f"unknown precision '{opt.precision}' ({' or '.join(PRECISIONS)})")
    if opt.align not in ALIGN_MODES:
        raise InputError(f"unknown align mode '{opt.align}' ({', '.join(ALIGN_MODES)})")
    if opt.preset is not None and opt.preset not in X264_PRESETS:
        raise InputError(f"unknown x264 preset '{opt.preset}' (choose from {', '.join(X264_PRESETS)})")
    for name in ("pose", "eyes", "blink", "gaze", "emotion"):
        v = getattr(opt, name)
        if v == "audio":
            raise InputError(f"--{name} cannot come from audio (only lips can)")
    for name in _INTENSITIES:
        v = _number(opt, name, optional=name != "pose_intensity")
        if v is not None and abs(v) > MAX_INTENSITY:
            raise InputError(f"{_flag(name)} {v:g} is outside -{MAX_INTENSITY:g}..{MAX_INTENSITY:g} "
                             "(1 is the source's own strength)")
    if opt.driving_reference not in DRIVING_REFERENCES:
        raise InputError(f"unknown driving reference '{opt.driving_reference}' (auto or first)")
    skip = _number(opt, "driving_skip", integer=True, optional=False)
    if skip < 0:
        raise InputError(f"--driving-skip must be >= 0, got {skip}")
    duration = _number(opt, "duration")
    if duration is not None and not 0 < duration <= MAX_DURATION_S:
        raise InputError(f"--duration must be more than 0 and at most {MAX_DURATION_S} s (24 h), got {duration:g}")
    for name in ("max_frames", "batch_size", "threads"):
        v = _number(opt, name, integer=True)
        if v is not None and v < 1:
            raise InputError(f"{_flag(name)} must be at least 1, got {v}")
    crf = _number(opt, "crf", integer=True, optional=False)
    if not 0 <= crf <= 51:
        raise InputError(f"--crf must be 0..51 (H.264 quality; lower is better), got {crf}")
