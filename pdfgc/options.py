"""The options of one animation (`AnimateOptions`) and their validation, shared by the CLI, the Python API and the
web UI."""
from __future__ import annotations

from dataclasses import dataclass

from .controls.explicit import BlinkControl, EmotionControl, GazeControl, LipControl, PoseControl
from .controls.schedule import MODES, OFFICIAL_SKIP
from .errors import InputError

SPECIAL_SOURCES = ("audio", "still", "off")
LAYOUTS = ("result", "panels", "pasteback")
FPS = 25


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
    pose_intensity: float = 1.0
    blink_intensity: float | None = None
    gaze_intensity: float | None = None
    emotion_intensity: float | None = None
    mouth_smoothing: bool = True      # official 3-tap Gaussian over time
    pose_smoothing: bool = True       # official 3-tap box over time
    driving_mode: str = "loop"        # loop (official) | pingpong | hold | strict
    driving_skip: int = OFFICIAL_SKIP  # official: the first two driving frames are dropped
    align: str = "auto"               # auto | always | never (face detection + alignment of the portrait/videos)
    layout: str = "result"            # result | panels (official five-panel strip) | pasteback
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



def check_options(opt: AnimateOptions) -> None:
    if opt.driving_mode not in MODES:
        raise InputError(f"unknown driving mode '{opt.driving_mode}' (choose from {', '.join(MODES)})")
    if opt.layout not in LAYOUTS:
        raise InputError(f"unknown layout '{opt.layout}' (choose from {', '.join(LAYOUTS)})")
    if opt.precision not in ("exact", "fast"):
        raise InputError(f"unknown precision '{opt.precision}' (exact or fast)")
    for name in ("pose", "eyes", "blink", "gaze", "emotion"):
        v = getattr(opt, name)
        if v == "audio":
            raise InputError(f"--{name} cannot come from audio (only lips can)")
    if opt.driving_skip < 0:
        raise InputError("driving skip must be >= 0")
