"""The options of one animation (`AnimateOptions`: the shared options and each model family's own, each declared
once) and their one validation (`check_options`), shared by the CLI, the Python API, the web UI and live
sessions."""
from __future__ import annotations

import copy
import dataclasses
import math
import numbers
import os
import re
import weakref
from dataclasses import dataclass

import numpy as np

from .controls.explicit import BlinkControl, EmotionControl, GazeControl, LipControl, PoseControl
from .errors import InputError
from .families import family_options as _options_of
from .families import list_families
from .official_rules import OFFICIAL_SKIP, POSE_SCALE
from .option_fields import Web, option
from .vocabulary import ALIGN_MODES, AUTO, DRIVING_MODES, FPS, PRECISIONS, SAMPLE_RATE

SPECIAL_SOURCES = ("audio", "still", "off", AUTO)  # auto: pose and blink only (generated motion)


def is_special_source(src) -> bool:
    """A source that is not a file: none, or one of `SPECIAL_SOURCES`."""
    return src is None or (isinstance(src, str) and src in SPECIAL_SOURCES)


def factor_sources(opt) -> dict:
    """Each motion factor's source as the pipeline reads it, in its order: blink and gaze fall back to ``eyes``;
    ``--blink auto`` reads the portrait (``still``) under its generated schedule."""
    blink = "still" if opt.blink == AUTO else opt.blink
    return {"lips": opt.lips, "pose": opt.pose, "blink": blink or opt.eyes, "gaze": opt.gaze or opt.eyes,
            "emotion": opt.emotion}
LAYOUTS = ("auto", "result", "panels", "pasteback")


def _slider(tab: str, label: str, factor: str, row: str | None = None) -> Web:
    # a code multiplier on the page: the slider's 0..3, a typed value up to 5; it starts at the family's default
    return Web("slider", tab, label, range=(0, 3, 0.05), accept=(0, 5), factor=factor, row=row)


@dataclass
class SharedOptions:
    """The knobs every model family reads, each declared once (`pdfgc.option_fields.option`): the `pdfgc animate`
    flags and the web page's fields are generated from these declarations."""

    lips: str = option("audio", group="sources", help="'audio' (default), a video of a speaking mouth, still, off")
    pose: str = option("still", group="sources", help="head pose source (default: still; auto: natural head motion "
                                                      "generated from the speech, mesh-warp model)")
    eyes: str = option("still", group="sources", help="gaze and blink source (default: still)")
    blink: str | None = option(None, group="sources", help="blink source, overrides --eyes for the blink part of "
                                                           "the eye code (auto: blinks at a natural rate with jitter)")
    gaze: str | None = option(None, group="sources", help="gaze source, overrides --eyes for the gaze part of the "
                                                          "eye code")
    emotion: str = option("still", group="sources", help="emotional expression source (default: still)")
    # seed of the generated motion (pose "auto", blink "auto")
    motion_seed: int = option(0, group="sources", type=int, help="seed of --pose auto / --blink auto (default 0)")
    # code multipliers; None = the model's defaults (official: mouth 1.5, eye 1.2, emotion 1.2, pose 1.0)
    mouth_intensity: float | None = option(None, group="intensities", type=float, help="default 1.5",
                                           web=_slider("Lips", "Mouth intensity (code multiplier)", "mouth"))
    pose_intensity: float = option(POSE_SCALE, group="intensities", type=float,
                                   web=_slider("Head pose", "Pose intensity (code multiplier)", "pose"))
    blink_intensity: float | None = option(None, group="intensities", type=float, help="default 1.2",
                                           web=_slider("Eyes", "Blink intensity (code multiplier)", "blink", "eyes"))
    gaze_intensity: float | None = option(None, group="intensities", type=float, help="default 1.2",
                                          web=_slider("Eyes", "Gaze intensity (code multiplier)", "gaze", "eyes"))
    emotion_intensity: float | None = option(None, group="intensities", type=float, help="default 1.2",
                                             web=_slider("Emotion", "Emotion intensity (code multiplier)", "emotion"))
    mouth_smoothing: bool = option(True, group="intensities", flag="--no-mouth-smoothing", invert=True,
                                   help="skip the 3-tap Gaussian on the mouth code")  # official: on
    pose_smoothing: bool = option(True, group="intensities", flag="--no-pose-smoothing", invert=True,
                                  help="skip the 3-tap box filter on the pose code")  # official: on
    driving_mode: str = option("loop", group="timing", choices=DRIVING_MODES,
                               help="short driving clips: loop (official), pingpong, hold the last frame, or strict "
                                    "(refuse)",
                               web=Web("radio", "Output", "Driving clips shorter than the audio"))
    driving_skip: int = option(OFFICIAL_SKIP, group="timing", type=int,
                               help="driving frames dropped at the start (official: 2)")
    duration: float | None = option(None, group="timing", type=float,
                                    help="seconds, when there is no audio (lips still/off)")
    max_frames: int | None = option(None, group="timing", type=int, help="render at most this many frames")
    layout: str = option("auto", group="output", choices=LAYOUTS,
                         help="the face crop (result), the official five-panel strip, or pasted back into the "
                              "photo; auto: a photo animated at its own size (default model), an aligned crop as it is",
                         web=Web("radio", "Output", "Layout", value="result",
                                 choices=(("face (224x224)", "result"), ("pasted back into the photo", "pasteback"),
                                          ("official five-panel strip", "panels"))))
    align: str = option("auto", group="output", choices=ALIGN_MODES,
                        help="face alignment: auto (224x224 inputs are taken as aligned crops), always, never")
    precision: str = option("exact", group="output", choices=PRECISIONS,
                            help="exact: fp32, equal to the official code; fast: bf16 (CPU with AVX-512 BF16) / "
                                 "fp16 GPU",
                            web=Web("radio", "Output", "Precision",
                                    choices=(("exact (fp32)", "exact"), ("fast (bf16/fp16)", "fast"))))
    device: str = option("auto", group="output", help="auto, cpu, cuda, cuda:1 ...")
    threads: int | None = option(None, group="output", type=int, help="CPU threads (default: all cores)")
    batch_size: int | None = option(None, group="output", type=int,
                                    help="frames per generator call (default: cheapest for the device)")
    crf: int = option(18, group="output", type=int, help="H.264 quality (lower is better)")
    preset: str | None = option(None, group="output",  # x264 preset; None: medium (exact) / veryfast (fast)
                                help="x264 speed preset (default: medium; veryfast with --precision fast)")
    progress: bool = option(True, group="output", flag="--quiet", invert=True,
                            help="no progress bar and no status lines (warnings and errors still print)")
    # explicit controls (pdfgc.controls.explicit): None = the factor follows its source; a control dataclass, its
    # dict or a spec string overrides its own part of the code after the sources are planned (their flags are the
    # controls' own: pdfgc/controls/cli_args.py)
    pose_control: PoseControl | dict | str | None = None
    blink_control: BlinkControl | dict | str | None = None    # eye-code BLINK_DIMS only
    gaze_control: GazeControl | dict | str | None = None      # eye-code GAZE_DIMS only
    emotion_control: EmotionControl | dict | str | None = None
    lip_control: LipControl | dict | str | None = None


# each registered family's own options (families/<name>/options.py), named by its `ModelFamily.options`
# (read from each family's options module: the families themselves, and torch, are not imported for this)
FAMILY_OPTIONS = tuple(o for o in map(_options_of, list_families()) if o is not None)


@dataclass
class AnimateOptions(*reversed(FAMILY_OPTIONS), SharedOptions):
    """Every knob of one animation: the shared options and each family's own; serialisable (dataclasses.asdict).
    The `pdfgc animate` flags and the web page's fields are generated from the fields' declarations."""


# x264's speed presets (libx264 refuses any other name, deep inside the encoder)
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
MAX_DURATION_S = 24 * 3600   # --duration: a day of video; past it a typo (1e12) would try to allocate petabytes
MAX_INTENSITY = 10.0         # code multipliers: far past it the generator only renders saturated noise
# --threads: past a few threads per core only contention grows (and 100000 threads fail inside a library's
# thread pool, issue 22); 64 is harmless on any machine
MAX_THREADS = max(64, 4 * (os.cpu_count() or 1))
DEVICE_PATTERN = r"auto|cpu|mps|(?:cuda|xpu)(?::\d{1,2})?"   # what torch.device takes that this package can run on
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


def check_options(opt: AnimateOptions, audio=None, output=None, inputs=()) -> None:
    """The one validation of a job's options (the CLI, the Python API, the web UI and live sessions all call it):
    every number finite and in range, every name known, each family's own options, the explicit controls (a pose
    curve file is read here, bounded by the job's length when it is known: `audio` is the job's audio, if any);
    with `output`, that the mp4 may be written there (its folder exists, it is none of the job's inputs: the
    portrait and whatever else `inputs` names, the audio and the sources). Raises InputError naming the option,
    before the model is loaded or any input decoded.

    Done once per job: options already checked with the same audio and unchanged since (the CLI and the page check
    before loading the model, the pipeline then finds them checked) are not checked again."""
    snapshot = _snapshot(opt, audio)
    if not _same(_checked_snapshot(opt), snapshot):
        _check_values(opt, audio)
        _remember(opt, snapshot)
    if output is not None:
        from .fileio import check_output_path
        check_output_path(output, [*inputs, audio, opt.lips, opt.pose, opt.eyes, opt.blink, opt.gaze, opt.emotion],
                          suffixes=(".mp4",))  # never an input, through links too


# options that passed the check: id -> (a weak reference to them, what they were then); kept outside the object so
# its __dict__ stays its fields (AnimateOptions(**opt.__dict__) is a copy), gone when the options are
_CHECKED: dict[int, tuple[weakref.ref, tuple]] = {}


def _remember(opt: AnimateOptions, snapshot: tuple) -> None:
    key = id(opt)
    _CHECKED[key] = (weakref.ref(opt, lambda _, key=key: _CHECKED.pop(key, None)), snapshot)


def _checked_snapshot(opt: AnimateOptions) -> tuple | None:
    entry = _CHECKED.get(id(opt))
    return entry[1] if entry is not None and entry[0]() is opt else None


def _snapshot(opt: AnimateOptions, audio) -> tuple:
    return copy.deepcopy(tuple(getattr(opt, f.name) for f in dataclasses.fields(opt))), audio


def _same(checked: tuple | None, now: tuple) -> bool:
    """Whether options checked with `checked` (values, audio) are those of `now`: equal values, the same audio
    (the same path, or the very same array or Speech object)."""
    if checked is None:
        return False
    a, b = checked[1], now[1]
    same_audio = a is b or (isinstance(a, (str, os.PathLike)) and isinstance(b, (str, os.PathLike))
                            and os.fspath(a) == os.fspath(b))
    try:
        return same_audio and bool(checked[0] == now[0])
    except Exception:  # noqa: BLE001 - values that do not compare (arrays in a control): check again
        return False


def _check_values(opt: AnimateOptions, audio) -> None:
    if not isinstance(opt.device, str) or not re.fullmatch(DEVICE_PATTERN, opt.device):
        raise InputError(f"--device '{opt.device}': not a device (auto, cpu, cuda, cuda:1, mps)")
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
        if v == AUTO and name not in ("pose", "blink"):
            raise InputError(f"--{name} auto: only --pose and --blink can be generated (auto)")
    if opt.lips == AUTO:
        raise InputError("--lips auto: only --pose and --blink can be generated (auto); lips come from 'audio'")
    seed = opt.motion_seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2 ** 63:
        raise InputError(f"--motion-seed {seed!r}: a whole number from 0 to 2^63-1")
    for name in _INTENSITIES:
        v = _number(opt, name, optional=name != "pose_intensity")
        if v is not None and abs(v) > MAX_INTENSITY:
            raise InputError(f"{_flag(name)} {v:g} is outside -{MAX_INTENSITY:g}..{MAX_INTENSITY:g} "
                             "(1 is the source's own strength)")
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
    if opt.threads is not None and opt.threads > MAX_THREADS:
        raise InputError(f"--threads {opt.threads} is more than {MAX_THREADS} (4 per core of this machine, at least "
                         "64): more only adds contention")
    if audio is not None and duration is not None:
        raise InputError("--duration sets the length only without --audio (the audio sets it); to cut the video "
                         "short use --max-frames N (25 frames per second)")
    crf = _number(opt, "crf", integer=True, optional=False)
    if not 0 <= crf <= 51:
        raise InputError(f"--crf must be 0..51 (H.264 quality; lower is better), got {crf}")
    _check_controls(opt, audio)


def _natural_seconds(opt: AnimateOptions, audio) -> float | None:
    """The video's length before any cut, when known before decoding anything: --duration, or the audio
    container's header (a cheap read; a bad audio file is reported later, in full)."""
    if opt.duration is not None:
        return float(opt.duration)
    if isinstance(audio, (str, os.PathLike)):
        try:
            from .media.audio_io import container_seconds
            return container_seconds(audio)
        except Exception:  # noqa: BLE001 - decoding it later gives the one right message
            return None
    if isinstance(audio, np.ndarray):  # 16 kHz samples
        return audio.size / SAMPLE_RATE
    return None


def _check_controls(opt: AnimateOptions, audio) -> None:
    """Each explicit control validated (a spec string, dict or dataclass); a pose curve file read now, bounded by
    the job's length; blink times past the audio refused: errors come before any work."""
    from .controls.explicit import controls_of
    controls = controls_of(opt)
    for family_options in FAMILY_OPTIONS:  # each family's own options (a control mapping file, ...)
        family_options.check(opt)
    natural = _natural_seconds(opt, audio) if controls else None
    known = [s for s in (natural, opt.max_frames / FPS if opt.max_frames else None) if s]
    pose = controls.get("pose")
    if pose is not None and pose.curve is not None:
        pose.read_curve(max_seconds=min(known) if known else None)
    blink = controls.get("blink")
    if blink is not None and blink.times and natural:
        late = [t for t in blink.times if t > natural]  # at the very end, its closing is still seen
        if late:
            what = "audio" if opt.duration is None else "--duration"
            raise InputError(f"blink time {late[0]:g} s is past the end of the {what} ({natural:.2f} s)")
