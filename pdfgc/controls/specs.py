"""The explicit controls' physical specs: values for each motion factor, their meaning, and the per-frame curves
at 25 fps they give.

Each control is a dataclass: its ``kind`` and AnimateOptions field (``option``), ``validate()``, its curves,
``to_dict`` / ``from_dict`` (plain JSON), ``parse(spec)`` (the short strings of the CLI and the UI: their grammar is
`pdfgc.controls.grammar`) and ``describe()`` (one phrase for messages). The ``pdfgc animate`` flags
(`pdfgc.controls.cli_args`) and the web page's fields (`pdfgc.controls.forms`) are adapters over these fields.
A new control is one class here, listed in ``CONTROL_TYPES`` (plus how a model family applies it);
``coerce_control(kind, value)`` accepts None, a dataclass, a dict or a spec string. A control gives physical per-frame
values (degrees, eye openness, iris position, label weights, mouth-closure weights); the PD-FGC family's mapping turns
them into codes.

Units and signs (the same conventions as ``pdfgc.evaluation.signals``, so requested and measured values compare):

- pose: ``yaw``/``pitch``/``roll`` in degrees; yaw > 0 turns the face toward the IMAGE's right (the subject's left),
  pitch > 0 tilts the chin up, roll > 0 rotates the face clockwise in the image. ``tx``/``ty``/``scale`` are in the
  prepared corpus's normalised units (shift of the face centre / change of face size, as ``pdfgc prepare``
  measures them). ``relative=True`` (default) adds the values to the pose the sources give (the portrait's own pose
  by default); ``relative=False`` sets the controlled channels to these values (the others keep the source's).
- blink: times (seconds) of FULL CLOSURE, snapped to the nearest frame; each blink closes over 40 % of ``duration``
  (default 0.2 s) and reopens over 60 % (cosine ramps: eyelids close faster than they open); or a ``rate`` in
  blinks per minute with gamma-distributed intervals (coefficient of variation ``jitter``, seeded);
  ``openness`` 0..1 is the eye-opening level between blinks (1 = the open-eye level of the training faces).
- gaze: ``horizontal``/``vertical`` iris position in the eye, in iris units of about [-1, 1] (0 = centred,
  +-1 = the iris at the eye's corner/lid), horizontal > 0 toward the IMAGE's right, vertical > 0 UP; or in
  degrees of eye rotation with ``units="deg"`` (approximate: iris units = 0.8 sin(angle), an eyeball radius of
  about 0.8 of half the eye's width). ``camera=True`` centres the iris (looking straight out of a frontal face).
- emotion: a label (the labels the fitted mapping holds: fer's seven classes angry, disgust, fear, happy, sad,
  surprise, neutral, plus any other label the prepared data carries) at ``intensity`` 0..1 (0 = neutral), a
  blend of labels with weights, or a ``reference`` clip whose mean expression is used (no mapping needed).
- lips: ``intensity`` (0 = the closed mouth, 1 = as the lips source says, up to 2 exaggerates) and ``mute`` spans
  (start, end) in seconds where the mouth code is replaced by the closed-mouth code, with ``ramp``-second
  linear fades at both ends.

Keyframes: ``[{'t': 0, 'yaw': 0}, {'t': 2, 'yaw': 20}]`` (as typed: ``"0:yaw=0; 2:yaw=20"``). Each channel is
interpolated over the keyframes that set it and held before the first / after the last. Interpolation:
``linear``; ``smooth`` (default: ease-in-out between consecutive keys, the motion stops at each key, a natural
"turn and settle"); ``cubic`` (monotone cubic through the keys, Fritsch-Carlson: flows through the keys without
overshoot); ``step`` (hold each key's value until the next).
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import InputError
from ..vocabulary import FPS

POSE_CHANNELS = ("yaw", "pitch", "roll", "tx", "ty", "scale")
ANGLE_CHANNELS = ("yaw", "pitch", "roll")
GAZE_CHANNELS = ("h", "v")
INTERPOLATIONS = ("linear", "smooth", "cubic", "step")
# fer's classes (pdfgc.evaluation.emotion.EMOTIONS) plus MEAD's contempt; the mapping decides what is available
KNOWN_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
EMOTION_SYNONYMS = {"anger": "angry", "disgusted": "disgust", "fearful": "fear", "scared": "fear",
                    "happiness": "happy", "joy": "happy", "smile": "happy", "sadness": "sad",
                    "surprised": "surprise", "calm": "neutral", "none": "neutral"}
MAX_ANGLE = 90.0
# tx/ty: shift of the face centre in crop widths; past half a crop the face leaves the 224 frame (a black video)
MAX_SHIFT = 0.5
MAX_SCALE_CHANGE = 1.0  # scale: a change of face size as prepare measures it (log-scale); e = 2.7x bigger/smaller
# curve files: the bound is proportional to the video they drive (issue 22: an 87 MB CSV for a 10-frame job ran
# for minutes): a row of time + 6 values is < 64 bytes, and 100 rows per second covers 100 Hz motion capture
CURVE_BYTES_PER_SECOND = 64 * 100
CURVE_BYTES_SLACK = 64 * 1024          # header, comments and keys just past the end
MAX_CURVE_SECONDS = 3600.0             # when the video's length is not known yet: an hour of it (23 MB)
IRIS_PER_SINE = 0.8  # iris units per sin(eye rotation): eyeball radius ~12 mm over half an eye width of ~15 mm


# ---------------------------------------------------------------------------------------------- helpers
def finite(v, what: str) -> float:
    if isinstance(v, bool):  # JSON true/false are not numbers (float(True) would be 1.0)
        raise InputError(f"{what}: {str(v).lower()} is not a number")
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{what}: {v!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{what}: {v!r} is not a finite number")
    return v


def normalise_emotion(name: str, what: str = "emotion label") -> str:
    label = str(name).strip().lower()
    label = EMOTION_SYNONYMS.get(label, label)
    if not re.fullmatch(r"[a-z][a-z_]*", label):
        raise InputError(f"{what}: '{name}' is not an emotion label (known: {', '.join(KNOWN_EMOTIONS)})")
    return label


def interpolate(times, values, query, mode: str = "linear") -> np.ndarray:
    """Values at `query` times from keys (times ascending, unique); held before the first and after the last key."""
    if mode not in INTERPOLATIONS:
        raise InputError(f"unknown interpolation '{mode}' (choose from {', '.join(INTERPOLATIONS)})")
    t = np.asarray(times, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    q = np.asarray(query, dtype=np.float64)
    if t.size == 0:
        raise ValueError("interpolate: no keys")
    if t.size == 1:
        return np.full(q.shape, y[0])
    if np.any(np.diff(t) <= 0):
        raise InputError("keyframe times must be distinct")
    qc = np.clip(q, t[0], t[-1])
    k = np.clip(np.searchsorted(t, qc, side="right") - 1, 0, t.size - 2)
    h = t[k + 1] - t[k]
    s = (qc - t[k]) / h
    if mode == "linear":
        return y[k] + s * (y[k + 1] - y[k])
    if mode == "step":
        return np.where(qc >= t[-1], y[-1], y[k])
    if mode == "smooth":
        e = s * s * (3 - 2 * s)  # smoothstep: zero velocity at both keys
        return y[k] + e * (y[k + 1] - y[k])
    # cubic: monotone cubic Hermite (Fritsch-Carlson), written out to keep scipy out of the core install
    d = np.diff(y) / np.diff(t)
    m = np.zeros_like(y)
    m[0], m[-1] = d[0], d[-1]
    for i in range(1, y.size - 1):
        if d[i - 1] * d[i] > 0:
            w1, w2 = 2 * (t[i + 1] - t[i]) + (t[i] - t[i - 1]), (t[i + 1] - t[i]) + 2 * (t[i] - t[i - 1])
            m[i] = (w1 + w2) / (w1 / d[i - 1] + w2 / d[i])
    h00, h10 = 2 * s ** 3 - 3 * s ** 2 + 1, s ** 3 - 2 * s ** 2 + s
    h01, h11 = -2 * s ** 3 + 3 * s ** 2, s ** 3 - s ** 2
    return h00 * y[k] + h10 * h * m[k] + h01 * y[k + 1] + h11 * h * m[k + 1]


def frame_times(num_frames: int, fps: int = FPS) -> np.ndarray:
    return np.arange(int(num_frames), dtype=np.float64) / fps


def _keyframe_curves(keyframes: list[dict], channels, num_frames: int, fps: int, mode: str) -> dict[str, np.ndarray]:
    q = frame_times(num_frames, fps)
    out = {}
    for ch in channels:
        keys = sorted((float(k["t"]), float(k[ch])) for k in keyframes if ch in k)
        if keys:
            ts = [a for a, _ in keys]
            if len(set(ts)) != len(ts):
                raise InputError(f"keyframes: two keyframes at the same time set '{ch}'")
            out[ch] = interpolate(ts, [b for _, b in keys], q, mode)
    return out


def _check_keyframes(keyframes, allowed, what: str) -> list[dict]:
    if not isinstance(keyframes, (list, tuple)) or not keyframes:
        raise InputError(f"{what}: keyframes must be a non-empty list of {{'t': seconds, name: value}}")
    out = []
    for k in keyframes:
        if not isinstance(k, dict) or "t" not in k:
            raise InputError(f"{what}: each keyframe is a dict with 't' (seconds), got {k!r}")
        bad = [n for n in k if n != "t" and n not in allowed]
        if bad:
            raise InputError(f"{what}: unknown name '{bad[0]}' in a keyframe (names: {', '.join(allowed)})")
        kk = {"t": finite(k["t"], f"{what} time")}
        if kk["t"] < 0:
            raise InputError(f"{what}: keyframe time {kk['t']} is negative")
        kk.update({n: finite(v, f"{what} {n}") for n, v in k.items() if n != "t"})
        out.append(kk)
    return sorted(out, key=lambda k: k["t"])


def _from_dict(cls, d: dict, what: str):
    if not isinstance(d, dict):
        raise InputError(f"{what}: expected a dict, got {type(d).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    bad = [k for k in d if k not in names]
    if bad:
        raise InputError(f"{what}: unknown field '{bad[0]}' (fields: {', '.join(sorted(names))})")
    obj = cls(**d)
    obj.validate()
    return obj


# ---------------------------------------------------------------------------------------------- pose
@dataclass
class PoseControl:
    """Head pose in degrees (+ translation/scale): constants, keyframes or a curve file; relative by default."""

    kind: ClassVar[str] = "pose"
    option: ClassVar[str] = "pose_control"

    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    tx: float | None = None
    ty: float | None = None
    scale: float | None = None
    keyframes: list[dict] | None = None     # [{'t': seconds, 'yaw': deg, ...}, ...]
    curve: str | None = None                # CSV/JSON file of keyframes (read when curves are made)
    interpolation: str = "smooth"
    relative: bool = True

    def validate(self) -> "PoseControl":
        for ch in POSE_CHANNELS:
            v = getattr(self, ch)
            if v is not None:
                setattr(self, ch, finite(v, f"pose {ch}"))
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"pose interpolation '{self.interpolation}' (choose from {', '.join(INTERPOLATIONS)})")
        if self.keyframes is not None and self.curve is not None:
            raise InputError("pose: give keyframes or a curve file, not both")
        if self.keyframes is not None:
            self.keyframes = _check_keyframes(self.keyframes, POSE_CHANNELS, "pose keyframes")
        if self.curve is not None:
            self.curve = str(self.curve)
        keyed = self._keyed_channels()
        both = [ch for ch in POSE_CHANNELS if getattr(self, ch) is not None and ch in keyed]
        if both:
            raise InputError(f"pose: '{both[0]}' is both a constant and in the keyframes/curve")
        for k in self.keyframes or []:
            self._check_range(k)
        self._check_range({ch: getattr(self, ch) for ch in POSE_CHANNELS if getattr(self, ch) is not None})
        self.relative = bool(self.relative)
        return self

    @staticmethod
    def _check_range(d: dict) -> None:
        for ch in ANGLE_CHANNELS:
            if ch in d and abs(d[ch]) > MAX_ANGLE:
                raise InputError(f"pose {ch} {d[ch]:g} degrees is out of range (at most {MAX_ANGLE:g})")
        for ch in ("tx", "ty"):
            if ch in d and abs(d[ch]) > MAX_SHIFT:
                raise InputError(f"pose {ch} {d[ch]:g} is out of range (|{ch}| <= {MAX_SHIFT:g} crop widths: further, "
                                 "the face leaves the frame)")
        if "scale" in d and abs(d["scale"]) > MAX_SCALE_CHANGE:
            raise InputError(f"pose scale {d['scale']:g} is out of range (|scale| <= {MAX_SCALE_CHANGE:g})")

    def _keyed_channels(self) -> set[str]:
        keys = self.keyframes or []
        return {n for k in keys for n in k if n != "t"}

    def read_curve(self, max_seconds: float | None = None) -> list[dict]:
        """The curve file's keyframes, read once (cached while the file is unchanged), the file bounded by the
        length of the video it drives (`max_seconds`; unknown: MAX_CURVE_SECONDS)."""
        seconds = MAX_CURVE_SECONDS if max_seconds is None else min(float(max_seconds), MAX_CURVE_SECONDS)
        limit = int(CURVE_BYTES_SLACK + CURVE_BYTES_PER_SECOND * seconds)
        try:
            st = Path(self.curve).stat()
            key = (self.curve, st.st_size, st.st_mtime_ns)
        except OSError:
            key = None
        cached = self.__dict__.get("_curve_cache")
        if key is not None and cached is not None and cached[0] == key and cached[1] <= limit:
            return list(cached[2])
        why = (f"a curve needs at most {CURVE_BYTES_PER_SECOND / 1000:g} kB per second of video; this one is "
               f"{seconds:.1f} s" if max_seconds is not None else
               f"at most {MAX_CURVE_SECONDS / 3600:g} h of video at {CURVE_BYTES_PER_SECOND / 1000:g} kB per second")
        from .grammar import load_curve_file
        keys = load_curve_file(self.curve, POSE_CHANNELS, "pose curve file", max_bytes=limit, why=why)
        for k in keys:
            self._check_range(k)
        if key is not None:
            self.__dict__["_curve_cache"] = (key, int(key[1]), keys)  # not a dataclass field: never serialised
        return list(keys)

    def _keys(self) -> list[dict]:
        if self.curve is not None:
            return self.read_curve()
        return list(self.keyframes or [])

    @property
    def channels(self) -> list[str]:
        """Channels this control sets (a curve file's are known once read)."""
        keyed = {n for k in self._keys() for n in k if n != "t"}
        return [ch for ch in POSE_CHANNELS if ch in keyed or getattr(self, ch) is not None]

    def curves(self, num_frames: int, fps: int = FPS) -> dict[str, np.ndarray]:
        """{channel: (T,) values} for the channels this control sets."""
        self.validate()
        keys = self._keys()
        interp = "linear" if self.curve is not None and self.interpolation == "smooth" and len(keys) > 8 \
            else self.interpolation  # a dense curve file is a sampled curve: join its samples linearly
        out = _keyframe_curves(keys, POSE_CHANNELS, num_frames, fps, interp) if keys else {}
        for ch in POSE_CHANNELS:
            v = getattr(self, ch)
            if v is not None:
                out[ch] = np.full(int(num_frames), float(v))
        return out

    def describe(self) -> str:
        d = [f"{ch}={getattr(self, ch):g}" for ch in POSE_CHANNELS if getattr(self, ch) is not None]
        if self.keyframes:
            d.append(f"{len(self.keyframes)} keyframes, {self.interpolation}")
        return f"pose {', '.join(d)} ({'relative' if self.relative else 'absolute'})"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PoseControl":
        return _from_dict(cls, d, "pose control")

    @classmethod
    def parse(cls, spec: str) -> "PoseControl":
        """The control of a text spec (grammar: `pdfgc.controls.grammar.pose_fields`)."""
        from .grammar import pose_fields
        return cls(**pose_fields(spec)).validate()

# ---------------------------------------------------------------------------------------------- blink
@dataclass
class BlinkControl:
    """Blinks at given times and/or at a rate with natural jitter, and the eye-openness level between blinks."""

    kind: ClassVar[str] = "blink"
    option: ClassVar[str] = "blink_control"

    times: list[float] | None = None      # seconds of full closure
    rate: float | None = None             # blinks per minute (0: none)
    duration: float = 0.2                 # seconds, closing + opening
    jitter: float = 0.4                   # coefficient of variation of the intervals at a rate
    seed: int = 0
    openness: float = 1.0                 # eye opening between blinks, 0 (closed) .. 1 (open)

    def validate(self) -> "BlinkControl":
        if self.times is not None:
            self.times = sorted(finite(t, "blink time") for t in self.times)
            if any(t < 0 for t in self.times):
                raise InputError("blink times must be >= 0 seconds")
            if not self.times:
                raise InputError("blink times: empty list (expected e.g. '1,4.5')")
            twice = [a for a, b in zip(self.times, self.times[1:]) if b - a < 1e-9]
            if twice:
                raise InputError(f"blink times: {twice[0]:g} s is given twice")
        if self.rate is not None:
            self.rate = finite(self.rate, "blink rate")
            if not 0 <= self.rate <= 120:
                raise InputError(f"blink rate {self.rate:g}/min is out of range (0..120 per minute)")
        self.duration = finite(self.duration, "blink duration")
        if not 0.04 <= self.duration <= 2.0:
            raise InputError(f"blink duration {self.duration:g} s is out of range (0.04..2 s)")
        self.jitter = finite(self.jitter, "blink jitter")
        if not 0 <= self.jitter <= 2:
            raise InputError(f"blink jitter {self.jitter:g} is out of range (0..2)")
        self.openness = finite(self.openness, "eye openness")
        if not 0 <= self.openness <= 1.5:
            raise InputError(f"eye openness {self.openness:g} is out of range (0 = closed .. 1 = open)")
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 63:
            raise InputError(f"blink seed {seed!r}: a whole number from 0 to 2^63-1")
        self.seed = int(seed)
        return self

    def blink_times(self, num_frames: int, fps: int = FPS) -> list[float]:
        """Times (s) of full closure inside the clip, snapped to frames: the schedule plus the rate's draws."""
        self.validate()
        end = num_frames / fps
        out = [t for t in (self.times or []) if t < end]  # past a --max-frames cut; past the audio is refused
        # earlier, by check_options
        if self.rate:
            mean = 60.0 / self.rate
            rng = np.random.default_rng(self.seed)
            min_gap = self.duration + 0.1
            if self.jitter > 0:
                k = 1.0 / self.jitter ** 2  # gamma intervals: mean `mean`, coefficient of variation `jitter`
                draw = lambda: max(min_gap, float(rng.gamma(k, mean / k)))  # noqa: E731
            else:
                draw = lambda: max(min_gap, mean)  # noqa: E731
            t = float(rng.uniform(0.3, max(0.31, mean)))  # the first blink somewhere in the first interval
            while t < end:
                out.append(t)
                t += draw()
        snapped = sorted({math.floor(t * fps + 0.5) / fps for t in out})  # nearest frame, halves up
        return [t for t in snapped if t < end]

    def closure(self, num_frames: int, fps: int = FPS) -> np.ndarray:
        """(T,) eyelid closure 0 (open) .. 1 (closed): close over 40 % of the duration, reopen over 60 %."""
        q = frame_times(num_frames, fps)
        c = np.zeros(int(num_frames))
        close, reopen = 0.4 * self.duration, 0.6 * self.duration
        for t in self.blink_times(num_frames, fps):
            a = (q - (t - close)) / close
            b = (q - t) / reopen
            one = np.where((a >= 0) & (q <= t), 0.5 - 0.5 * np.cos(np.pi * np.clip(a, 0, 1)), 0.0)
            one = np.where((q > t) & (b <= 1), 0.5 + 0.5 * np.cos(np.pi * np.clip(b, 0, 1)), one)
            c = np.maximum(c, one)
        return c

    def openness_curve(self, num_frames: int, fps: int = FPS) -> np.ndarray:
        """(T,) eye openness: `openness` between blinks, 0 at full closure."""
        return self.openness * (1.0 - self.closure(num_frames, fps))

    def events(self, num_frames: int, fps: int = FPS, threshold: float = 0.5) -> list[tuple[int, int]]:
        """Closed intervals (start, end), inclusive frames where closure >= threshold (for evaluation)."""
        closed = np.flatnonzero(self.closure(num_frames, fps) >= threshold - 1e-9)
        events, start = [], None
        for i in closed:
            if start is None:
                start = prev = int(i)
            elif i != prev + 1:
                events.append((start, prev))
                start = int(i)
            prev = int(i)
        if start is not None:
            events.append((start, prev))
        return events

    def describe(self) -> str:
        d = [f"at {', '.join(f'{t:g}' for t in self.times)} s"] if self.times else []
        d += [f"{self.rate:g} per minute"] if self.rate else []
        return f"blinks {' and '.join(d) or 'none'}, openness {self.openness:g}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BlinkControl":
        return _from_dict(cls, d, "blink control")

    @classmethod
    def parse(cls, spec: str) -> "BlinkControl":
        """The control of a text spec (grammar: `pdfgc.controls.grammar.blink_fields`)."""
        from .grammar import blink_fields
        return cls(**blink_fields(spec)).validate()

# ---------------------------------------------------------------------------------------------- gaze
@dataclass
class GazeControl:
    """Iris direction: constant (horizontal, vertical), 'camera', or keyframes over time."""

    kind: ClassVar[str] = "gaze"
    option: ClassVar[str] = "gaze_control"

    horizontal: float | None = None
    vertical: float | None = None
    camera: bool = False
    keyframes: list[dict] | None = None    # [{'t': s, 'h': .., 'v': ..}] ('camera' keys: h = v = 0)
    units: str = "iris"                    # iris (about -1..1) | deg (approximate eye rotation)
    interpolation: str = "smooth"

    def validate(self) -> "GazeControl":
        if self.units not in ("iris", "deg"):
            raise InputError(f"gaze units '{self.units}' (iris or deg)")
        if self.interpolation not in INTERPOLATIONS:
            raise InputError(f"gaze interpolation '{self.interpolation}' (choose from {', '.join(INTERPOLATIONS)})")
        for n in ("horizontal", "vertical"):
            v = getattr(self, n)
            if v is not None:
                setattr(self, n, self._check(finite(v, f"gaze {n}"), n))
        if self.keyframes is not None:
            self.keyframes = _check_keyframes(self.keyframes, GAZE_CHANNELS, "gaze keyframes")
            for k in self.keyframes:
                for n in GAZE_CHANNELS:
                    if n in k:
                        self._check(k[n], n)
        self.camera = bool(self.camera)
        if self.camera and (self.horizontal is not None or self.vertical is not None or self.keyframes):
            raise InputError("gaze: 'camera' cannot be combined with a direction or keyframes")
        if not self.camera and self.horizontal is None and self.vertical is None and not self.keyframes:
            raise InputError("gaze control sets nothing: give a direction, 'camera' or keyframes")
        return self

    def _check(self, v: float, name: str) -> float:
        limit = 60.0 if self.units == "deg" else 1.5
        if abs(v) > limit:
            raise InputError(f"gaze {name} {v:g} is out of range (|value| <= {limit:g} {self.units})")
        return v

    def _to_iris(self, v: np.ndarray) -> np.ndarray:
        return IRIS_PER_SINE * np.sin(np.radians(v)) if self.units == "deg" else v

    def curves(self, num_frames: int, fps: int = FPS) -> np.ndarray:
        """(T,2) (horizontal, vertical) in iris units (+h toward the image's right, +v up)."""
        self.validate()
        t = int(num_frames)
        out = np.zeros((t, 2))
        if self.camera:
            return out
        if self.keyframes:
            cur = _keyframe_curves(self.keyframes, GAZE_CHANNELS, t, fps, self.interpolation)
            for j, n in enumerate(GAZE_CHANNELS):
                if n in cur:
                    out[:, j] = cur[n]
        if self.horizontal is not None:
            out[:, 0] = self.horizontal
        if self.vertical is not None:
            out[:, 1] = self.vertical
        return self._to_iris(out)

    def describe(self) -> str:
        if self.camera:
            return "gaze at the camera"
        if self.keyframes:
            return f"gaze {len(self.keyframes)} keyframes"
        return f"gaze h={self.horizontal:g}, v={self.vertical:g}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GazeControl":
        return _from_dict(cls, d, "gaze control")

    @staticmethod
    def looks_like_spec(text: str) -> bool:
        """True for 'camera', 'H,V' numbers or keyframes: what `--gaze` takes as a control (the grammar's
        `looks_like_gaze_spec`)."""
        from .grammar import looks_like_gaze_spec
        return looks_like_gaze_spec(text)

    @classmethod
    def parse(cls, spec: str) -> "GazeControl":
        """The control of a text spec (grammar: `pdfgc.controls.grammar.gaze_fields`)."""
        from .grammar import gaze_fields
        return cls(**gaze_fields(spec)).validate()

# ---------------------------------------------------------------------------------------------- emotion
@dataclass
class EmotionControl:
    """An emotion label at an intensity, a blend of labels, a reference clip, or neutral."""

    kind: ClassVar[str] = "emotion"
    option: ClassVar[str] = "emotion_control"

    label: str | None = None
    intensity: float = 1.0                 # 0 = neutral .. 1 = the label's typical expression
    blend: dict[str, float] | None = None  # {'happy': 0.6, 'sad': 0.2}
    reference: str | None = None           # a driving source (video, frames folder, image): its mean expression

    def validate(self) -> "EmotionControl":
        given = sum(x is not None for x in (self.label, self.blend, self.reference))
        if given == 0:
            raise InputError("emotion control sets nothing: give a label, a blend or a reference clip")
        if given > 1:
            raise InputError("emotion control: give one of a label, a blend or a reference clip")
        self.intensity = finite(self.intensity, "emotion intensity")
        if not 0 <= self.intensity <= 2:
            raise InputError(f"emotion intensity {self.intensity:g} is out of range (0..1; up to 2 exaggerates)")
        if self.label is not None:
            self.label = normalise_emotion(self.label)
        if self.blend is not None:
            if not isinstance(self.blend, dict) or not self.blend:
                raise InputError("emotion blend must be a non-empty {label: weight} dict")
            blend = {}
            for k, v in self.blend.items():
                lab = normalise_emotion(k, "emotion blend")
                w = finite(v, f"emotion blend weight of {lab}")
                if not 0 <= w <= 1:
                    raise InputError(f"emotion blend weight of {lab} {w:g} is out of range (0..1)")
                blend[lab] = w
            # a blend is shares of one expression: they sum to at most 1 (the rest is neutral); exaggerating the
            # whole blend is the level's job (up to 2), so 'happy:1,sad:0.5' is refused, not silently rescaled
            total = sum(blend.values())
            if total > 1 + 1e-6:
                raise InputError(f"emotion blend weights sum to {total:g}: they are shares of one expression and "
                                 "may sum to at most 1 (the rest is neutral); set the level (up to 2) to exaggerate")
            self.blend = blend
        if self.reference is not None:
            self.reference = str(self.reference)
        return self

    def weights(self) -> dict[str, float]:
        """{label: weight} offsets from neutral (empty for neutral or a reference clip)."""
        self.validate()
        if self.blend is not None:
            return {k: v * self.intensity for k, v in self.blend.items() if k != "neutral"}
        if self.label is not None and self.label != "neutral":
            return {self.label: self.intensity}
        return {}

    @property
    def needs_mapping(self) -> bool:
        return self.reference is None

    def describe(self) -> str:
        what = (f"{self.label}" if self.label else "mean of the reference clip" if self.reference
                else " + ".join(f"{k} {w:g}" for k, w in self.blend.items()))
        return f"emotion {what} at {self.intensity:g}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EmotionControl":
        return _from_dict(cls, d, "emotion control")

    @classmethod
    def parse(cls, spec: str) -> "EmotionControl":
        """The control of a text spec (grammar: `pdfgc.controls.grammar.emotion_fields`)."""
        from .grammar import emotion_fields
        return cls(**emotion_fields(spec)).validate()

# ---------------------------------------------------------------------------------------------- lips
@dataclass
class LipControl:
    """Lip-motion intensity and mute spans (the closed mouth, faded in and out over `ramp` seconds)."""

    kind: ClassVar[str] = "lip"
    option: ClassVar[str] = "lip_control"

    intensity: float = 1.0
    mute: list[tuple[float, float]] | None = None
    ramp: float = 0.08

    def validate(self) -> "LipControl":
        self.intensity = finite(self.intensity, "lip intensity")
        if not 0 <= self.intensity <= 2:
            raise InputError(f"lip intensity {self.intensity:g} is out of range (0 = closed .. 1 = normal .. 2)")
        self.ramp = finite(self.ramp, "mute ramp")
        if not 0 <= self.ramp <= 1:
            raise InputError(f"mute ramp {self.ramp:g} s is out of range (0..1 s)")
        if self.mute is not None:
            spans = []
            for s in self.mute:
                if not isinstance(s, (list, tuple)) or len(s) != 2:
                    raise InputError(f"a mute span is (start, end) in seconds, got {s!r}")
                a, b = finite(s[0], "mute start"), finite(s[1], "mute end")
                if a < 0 or b <= a:
                    raise InputError(f"mute span ({a:g}, {b:g}): need 0 <= start < end")
                spans.append((a, b))
            self.mute = sorted(spans)
        return self

    def mute_weights(self, num_frames: int, fps: int = FPS) -> np.ndarray:
        """(T,) 0 = lips as planned .. 1 = closed mouth: 1 inside each span, linear ramps just outside it."""
        self.validate()
        q = frame_times(num_frames, fps)
        w = np.zeros(int(num_frames))
        for a, b in self.mute or []:
            if self.ramp > 0:
                one = np.clip(np.minimum((q - (a - self.ramp)) / self.ramp, ((b + self.ramp) - q) / self.ramp), 0, 1)
            else:
                one = ((q >= a) & (q <= b)).astype(float)
            w = np.maximum(w, one)
        return w

    def describe(self) -> str:
        d = [f"level {self.intensity:g}"] + ([f"muted {', '.join(f'{a:g}-{b:g}' for a, b in self.mute)} s"]
                                             if self.mute else [])
        return f"lips {', '.join(d)}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LipControl":
        d = dict(d)
        if d.get("mute") is not None:
            d["mute"] = [tuple(s) if isinstance(s, (list, tuple)) else s for s in d["mute"]]
        return _from_dict(cls, d, "lip control")

    @classmethod
    def parse(cls, spec: str) -> "LipControl":
        """The control of a text spec (grammar: `pdfgc.controls.grammar.lip_fields`)."""
        from .grammar import lip_fields
        return cls(**lip_fields(spec)).validate()

# ---------------------------------------------------------------------------------------------- common
CONTROL_TYPES = {c.kind: c for c in (PoseControl, BlinkControl, GazeControl, EmotionControl, LipControl)}
CONTROL_FIELDS = {kind: c.option for kind, c in CONTROL_TYPES.items()}   # kind -> AnimateOptions field


REFERENCE_MAX_FRAMES = 250   # a reference clip's mean expression is taken over at most this many frames


def describe_controls(opt) -> str:
    """One sentence naming the explicit controls AnimateOptions `opt` sets ("" when none)."""
    parts = [c.describe() for c in controls_of(opt).values()]
    return f" Explicit controls: {'; '.join(parts)}." if parts else ""


def coerce_control(kind: str, value):
    """None | a control dataclass | its dict | a spec string -> the validated control (or None)."""
    if kind not in CONTROL_TYPES:
        raise ValueError(f"unknown control kind {kind!r}")
    cls = CONTROL_TYPES[kind]
    if value is None:
        return None
    if isinstance(value, cls):
        return value.validate()
    if isinstance(value, dict):
        return cls.from_dict(value)
    if isinstance(value, str):
        return cls.parse(value)
    raise InputError(f"{kind} control: expected a {cls.__name__}, a dict or a spec string, "
                     f"got {type(value).__name__}")


def controls_of(opt) -> dict:
    """{kind: validated control} for the controls set in AnimateOptions `opt`."""
    out = {}
    for kind, name in CONTROL_FIELDS.items():
        ctl = coerce_control(kind, getattr(opt, name, None))
        if ctl is not None:
            out[kind] = ctl
    return out
