"""Explicit controls: physical values for each motion factor, turned into per-frame curves at 25 fps.

Each control is a dataclass, the one home of everything about it: its ``kind`` and AnimateOptions ``field``,
``to_dict`` / ``from_dict`` (plain JSON), ``parse(spec)`` for the short strings of the CLI and the UI,
``add_arguments`` / ``from_args`` for its ``pdfgc animate`` flags, and ``describe()`` (one phrase for messages).
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

Keyframes: ``"0:yaw=0,pitch=0; 2:yaw=20"`` (time in seconds, or ``50f`` for a frame number). Each channel is
interpolated over the keyframes that set it and held before the first / after the last. Interpolation:
``linear``; ``smooth`` (default: ease-in-out between consecutive keys, the motion stops at each key, a natural
"turn and settle"); ``cubic`` (monotone cubic through the keys, Fritsch-Carlson: flows through the keys without
overshoot); ``step`` (hold each key's value until the next).
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import InputError
from ..fileio import read_user_text, show_path
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
# one textual number as a user may type it: 2, -3.5, .5, 1e9, nan, inf (so those get a number's message)
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|[-+]?(?:inf|infinity|nan)"
TIME = rf"(?:{NUMBER})[sf]?"
# curve files: the bound is proportional to the video they drive (issue 22: an 87 MB CSV for a 10-frame job ran
# for minutes): a row of time + 6 values is < 64 bytes, and 100 rows per second covers 100 Hz motion capture
CURVE_BYTES_PER_SECOND = 64 * 100
CURVE_BYTES_SLACK = 64 * 1024          # header, comments and keys just past the end
MAX_CURVE_SECONDS = 3600.0             # when the video's length is not known yet: an hour of it (23 MB)
IRIS_PER_SINE = 0.8  # iris units per sin(eye rotation): eyeball radius ~12 mm over half an eye width of ~15 mm


# ---------------------------------------------------------------------------------------------- helpers
def _num(text: str, what: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{what}: '{text}' is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{what}: '{text}' is not a finite number")
    return v


def _finite(v, what: str) -> float:
    if isinstance(v, bool):  # JSON true/false are not numbers (float(True) would be 1.0)
        raise InputError(f"{what}: {str(v).lower()} is not a number")
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{what}: {v!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{what}: {v!r} is not a finite number")
    return v


MAX_SPEC_CHARS = 64 * 1024  # a typed spec (a flag, a text box): a thousand keyframes fit; a longer one is a file


def _spec(spec, what: str) -> str:
    """A spec string, stripped; InputError when it is longer than anyone types (a pasted file belongs in a file)."""
    text = str(spec)
    if len(text) > MAX_SPEC_CHARS:
        raise InputError(f"{what}: {len(text)} characters is longer than the {MAX_SPEC_CHARS} a spec may have "
                         "(give many keyframes as a curve file)")
    return text.strip()


def parse_time(text: str, what: str = "time", fps: int = FPS) -> float:
    """'2', '2.5', '2.5s' -> seconds; '50f' -> frame 50 at `fps`."""
    t = str(text).strip().lower()
    if t.endswith("f"):
        v = _num(t[:-1], what) / fps
    else:
        v = _num(t[:-1] if t.endswith("s") else t, what)
    if v < 0:
        raise InputError(f"{what}: {text} is negative")
    return v


def parse_times(spec: str, what: str = "blink times") -> list[float]:
    """'1,4.5, 8s' -> [1.0, 4.5, 8.0] (seconds; '50f' for frames), sorted."""
    parts = [p for p in re.split(r"[,\s;]+", _spec(spec, what)) if p]
    if not parts:
        raise InputError(f"{what}: empty list (expected e.g. '1,4.5')")
    return sorted(parse_time(p, what) for p in parts)


def parse_spans(spec: str, what: str = "mute spans") -> list[tuple[float, float]]:
    """'2-3.5, 5s-6s' -> [(2.0, 3.5), (5.0, 6.0)] (seconds; '0-1e9' mutes everything)."""
    out = []
    parts = [p for p in re.split(r"[,;]+", _spec(spec, what)) if p.strip()]
    if not parts:
        raise InputError(f"{what}: empty list (expected e.g. '2.0-3.5,5-6')")
    for p in parts:
        m = re.fullmatch(rf"\s*((?:{NUMBER})[sf]?)\s*(?:-|\.\.|to)\s*((?:{NUMBER})[sf]?)\s*", p.lower())
        if not m:
            raise InputError(f"{what}: '{p.strip()}' is not a span START-END in seconds (e.g. 2.0-3.5)")
        a, b = parse_time(m.group(1), what), parse_time(m.group(2), what)
        if b <= a:
            raise InputError(f"{what}: span '{p.strip()}' ends before it starts")
        out.append((a, b))
    return sorted(out)


def parse_weights(spec: str, what: str = "emotion blend") -> dict[str, float]:
    """'happy:0.6,sad:0.2' -> {'happy': 0.6, 'sad': 0.2} (labels normalised, see normalise_emotion)."""
    out: dict[str, float] = {}
    parts = [p for p in re.split(r"[,;+]+", _spec(spec, what)) if p.strip()]
    if not parts:
        raise InputError(f"{what}: empty (expected e.g. 'happy:0.6,sad:0.2')")
    for p in parts:
        if ":" in p:
            name, val = p.split(":", 1)
        elif "=" in p:
            name, val = p.split("=", 1)
        else:
            name, val = p, "1"
        label = normalise_emotion(name, what)
        if label in out:
            raise InputError(f"{what}: label '{label}' given twice")
        out[label] = _num(val.strip(), f"{what} weight of {label}")
    return out


def normalise_emotion(name: str, what: str = "emotion label") -> str:
    label = str(name).strip().lower()
    label = EMOTION_SYNONYMS.get(label, label)
    if not re.fullmatch(r"[a-z][a-z_]*", label):
        raise InputError(f"{what}: '{name}' is not an emotion label (known: {', '.join(KNOWN_EMOTIONS)})")
    return label


def _assignments(text: str, allowed, what: str, aliases: dict | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for part in [p for p in str(text).split(",") if p.strip()]:
        if "=" not in part:
            raise InputError(f"{what}: '{part.strip()}' is not NAME=VALUE (names: {', '.join(allowed)})")
        k, v = (s.strip() for s in part.split("=", 1))
        k = (aliases or {}).get(k.lower(), k.lower())
        if k not in allowed:
            raise InputError(f"{what}: unknown name '{k}' (names: {', '.join(allowed)})")
        if k in out:
            raise InputError(f"{what}: '{k}' given twice")
        out[k] = _num(v, f"{what} {k}")
    return out


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


def _split_tokens(spec: str) -> list[str]:
    return [p.strip() for p in str(spec).split(";") if p.strip()]


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


def _parse_keyframes(spec: str, allowed, what: str, aliases=None, special=None) -> list[dict]:
    """'0:yaw=0,pitch=0; 2:yaw=20' -> [{'t': 0.0, 'yaw': 0.0, 'pitch': 0.0}, {'t': 2.0, 'yaw': 20.0}]."""
    keys = []
    for part in _split_tokens(spec):
        if ":" not in part:
            raise InputError(f"{what}: '{part}' is not TIME:NAME=VALUE,... (e.g. '0:yaw=0; 2:yaw=20')")
        t, rest = part.split(":", 1)
        key = {"t": parse_time(t, f"{what} time")}
        rest = rest.strip()
        if special and rest.lower() in special:
            key.update(special[rest.lower()])
        else:
            key.update(_assignments(rest, allowed, what, aliases))
        if len(key) == 1:
            raise InputError(f"{what}: keyframe at {t.strip()} sets nothing")
        keys.append(key)
    if not keys:
        raise InputError(f"{what}: no keyframes (expected e.g. '0:yaw=0; 2:yaw=20')")
    times = [k["t"] for k in keys]
    if len(set(times)) != len(times):
        raise InputError(f"{what}: two keyframes at the same time")
    return sorted(keys, key=lambda k: k["t"])


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
        kk = {"t": _finite(k["t"], f"{what} time")}
        if kk["t"] < 0:
            raise InputError(f"{what}: keyframe time {kk['t']} is negative")
        kk.update({n: _finite(v, f"{what} {n}") for n, v in k.items() if n != "t"})
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


# ---------------------------------------------------------------------------------------------- curve files
def load_curve_file(path, allowed, what: str = "curve file", aliases=None, fps: int = FPS,
                    max_bytes: int | None = None, why: str = "") -> list[dict]:
    """A CSV (header with a 'time'/'t'/'seconds' or 'frame' column and value columns) or a JSON file (a list of
    {'t': s, name: value} keyframes, {'keyframes': [...]}, or columns {'time': [...], name: [...]}) -> keyframes.
    The file is refused unread when larger than `max_bytes` (default: an hour of video's worth)."""
    limit = int(CURVE_BYTES_SLACK + CURVE_BYTES_PER_SECOND * MAX_CURVE_SECONDS) if max_bytes is None else max_bytes
    text = read_user_text(path, what, limit, kind="a CSV or JSON curve file", why=why)
    p = Path(show_path(path))
    aliases = dict(aliases or {})
    time_names, frame_names = ("time", "t", "seconds", "second", "sec", "s"), ("frame", "frames", "f")

    def columns_to_keys(cols: dict[str, list]) -> list[dict]:
        names = {c.strip().lower(): c for c in cols}
        tcol = next((names[n] for n in time_names if n in names), None)
        fcol = next((names[n] for n in frame_names if n in names), None)
        if tcol is None and fcol is None:
            raise InputError(f"{what} {p}: needs a time column (time/t/seconds) or a frame column (frame)")
        value_cols = {}
        for c in cols:
            n = c.strip().lower()
            if c in (tcol, fcol):
                continue
            n = aliases.get(n, n)
            if n not in allowed:
                raise InputError(f"{what} {p}: unknown column '{c}' (columns: time or frame, "
                                 f"{', '.join(allowed)})")
            value_cols[n] = cols[c]
        if not value_cols:
            raise InputError(f"{what} {p}: no value column ({', '.join(allowed)})")
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise InputError(f"{what} {p}: columns of different lengths")
        keys = []
        for i in range(lengths.pop()):
            t = (_finite(cols[tcol][i], f"{what} {p} row {i + 1} time") if tcol is not None
                 else _finite(cols[fcol][i], f"{what} {p} row {i + 1} frame") / fps)
            if t < 0:
                raise InputError(f"{what} {p}: row {i + 1}: negative time")
            key = {"t": t}
            for n, col in value_cols.items():
                v = col[i]
                if v is None or (isinstance(v, str) and not v.strip()):
                    continue  # an empty cell: this channel has no key here
                key[n] = _finite(v, f"{what} {p} row {i + 1} {n}")
            keys.append(key)
        if not keys:
            raise InputError(f"{what} {p}: no rows")
        return keys

    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{what} {p}: invalid JSON ({e})") from None
        if isinstance(data, dict) and "keyframes" in data:
            data = data["keyframes"]
        if isinstance(data, dict):
            if not all(isinstance(v, list) for v in data.values()):
                raise InputError(f"{what} {p}: a JSON object must map column names to lists")
            keys = columns_to_keys(data)
        elif isinstance(data, list):
            if not data:
                raise InputError(f"{what} {p}: an empty list (no keyframes)")
            keys = []
            for i, row in enumerate(data):
                if not isinstance(row, dict):
                    raise InputError(f"{what} {p}: item {i} is not an object")
                names = [k for k in row if str(k).strip().lower() in time_names + frame_names]
                for k in names:  # the item's time first: a bad one is named as such, not as a missing value
                    _finite(row[k], f"{what} {p} item {i} {k}")
                if names and len(row) == len(names):
                    raise InputError(f"{what} {p}: item {i} sets no value (names: {', '.join(allowed)})")
                cols = {k: [v] for k, v in row.items()}
                keys.extend(columns_to_keys(cols))
        else:
            raise InputError(f"{what} {p}: expected a list of keyframes or an object of columns")
    else:
        rows = list(csv.reader(line for line in text.splitlines() if line.strip() and not line.startswith("#")))
        if len(rows) < 2:
            raise InputError(f"{what} {p}: needs a header row and at least one data row")
        header = [h.strip() for h in rows[0]]
        if len(set(h.lower() for h in header)) != len(header):
            raise InputError(f"{what} {p}: repeated column names")
        for i, r in enumerate(rows[1:]):
            if len(r) != len(header):
                raise InputError(f"{what} {p}: row {i + 2} has {len(r)} cells, the header {len(header)}")
        keys = columns_to_keys({h: [r[j] for r in rows[1:]] for j, h in enumerate(header)})
    times = [k["t"] for k in keys]
    if len(set(times)) != len(times):
        raise InputError(f"{what} {p}: repeated times")
    return sorted(keys, key=lambda k: k["t"])



def _form_number(v: dict, key: str, default: float) -> float:
    """A number field of the web page's form (empty: `default`)."""
    x = v.get(key)
    return default if x is None or x == "" else float(x)


def _form_text(v: dict, key: str) -> str:
    return str(v.get(key) or "").strip()


# ---------------------------------------------------------------------------------------------- pose
@dataclass
class PoseControl:
    """Head pose in degrees (+ translation/scale): constants, keyframes or a curve file; relative by default."""

    kind: ClassVar[str] = "pose"
    option: ClassVar[str] = "pose_control"
    form_fields: ClassVar[tuple[str, ...]] = ("pose_yaw", "pose_pitch", "pose_roll", "pose_keyframes", "pose_interp",
                                              "pose_absolute")

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
                setattr(self, ch, _finite(v, f"pose {ch}"))
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

    @classmethod
    def from_form(cls, v: dict, upload=None) -> "PoseControl | None":
        """The web page's pose fields (``form_fields``; ``pose_mode`` "controls" turns them on)."""
        if v.get("pose_mode") != "controls":
            return None
        angles = {ch: _form_number(v, f"pose_{ch}", 0.0) for ch in ANGLE_CHANNELS}
        common = dict(interpolation=v.get("pose_interp") or "smooth", relative=not v.get("pose_absolute"))
        spec = _form_text(v, "pose_keyframes")
        if not spec:
            return cls(**angles, **common).validate()
        keys = cls.parse(spec).keyframes
        if not keys:
            raise InputError(f"pose keyframes '{spec}': expected TIME:NAME=VALUE,... e.g. '0:yaw=0; 2:yaw=20'")
        keyed = {n for k in keys for n in k if n != "t"}
        # the keyframes own the channels they set; a non-zero slider still sets the others
        extra = {ch: a for ch, a in angles.items() if ch not in keyed and a != 0}
        return cls(keyframes=keys, **extra, **common).validate()

    @staticmethod
    def add_arguments(g) -> None:
        g.add_argument("--yaw", type=float, metavar="DEG", help="head yaw in degrees (> 0: face turns toward the "
                                                                 "image's right), added to the pose source's pose")
        g.add_argument("--pitch", type=float, metavar="DEG", help="head pitch in degrees (> 0: chin up)")
        g.add_argument("--roll", type=float, metavar="DEG", help="head roll in degrees (> 0: clockwise in the image)")
        g.add_argument("--tx", type=float, help="head shift, corpus units (crop widths, > 0 right)")
        g.add_argument("--ty", type=float, help="head shift, corpus units (crop widths, > 0 down)")
        g.add_argument("--pose-keyframes", metavar="SPEC",
                       help="e.g. '0:yaw=0,pitch=0; 2:yaw=20' (seconds; '50f' frames)")
        g.add_argument("--pose-curve", metavar="FILE", help="CSV (time or frame column + yaw,pitch,roll,tx,ty,scale "
                                                            "columns) or JSON keyframes")
        g.add_argument("--pose-interp", choices=list(INTERPOLATIONS), default="smooth",
                       help="keyframe interpolation (default smooth: ease in and out of each key)")
        g.add_argument("--pose-absolute", action="store_true",
                       help="the pose values are absolute (default: relative to the pose source, i.e. the portrait)")

    @classmethod
    def from_args(cls, args) -> dict:
        consts = {k: getattr(args, k, None) for k in ("yaw", "pitch", "roll", "tx", "ty")}
        if any(v is not None for v in consts.values()) or args.pose_keyframes or args.pose_curve:
            pc = cls(**{k: v for k, v in consts.items() if v is not None}, interpolation=args.pose_interp,
                     relative=not args.pose_absolute)
            if args.pose_keyframes:
                pc.keyframes = cls.parse(args.pose_keyframes).keyframes
                if pc.keyframes is None:
                    raise InputError(f"--pose-keyframes '{args.pose_keyframes}': expected keyframes like "
                                     "'0:yaw=0; 2:yaw=20'")
            if args.pose_curve:
                pc.curve = args.pose_curve
            return {cls.option: pc.validate()}
        if args.pose_absolute:
            raise InputError("--pose-absolute needs pose values (--yaw/--pitch/--roll, --pose-keyframes or "
                             "--pose-curve)")
        return {}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PoseControl":
        return _from_dict(cls, d, "pose control")

    @classmethod
    def parse(cls, spec: str) -> "PoseControl":
        """'yaw=20,pitch=-5' (constants), '0:yaw=0; 2:yaw=20' (keyframes), 'head.csv' / 'head.json' (curve file);
        extra ';'-separated tokens: 'absolute' / 'relative', an interpolation name (linear, smooth, cubic, step)."""
        spec = _spec(spec, f"{cls.kind} control")
        if not spec:
            raise InputError("pose control: empty spec")
        ctl = cls()
        rest = []
        for tok in _split_tokens(spec):
            low = tok.lower()
            if low in ("absolute", "abs"):
                ctl.relative = False
            elif low in ("relative", "rel"):
                ctl.relative = True
            elif low in INTERPOLATIONS:
                ctl.interpolation = low
            elif low.startswith("interp=") or low.startswith("interpolation="):
                ctl.interpolation = low.split("=", 1)[1]
            else:
                rest.append(tok)
        if not rest:
            raise InputError(f"pose control '{spec}': sets no value (e.g. 'yaw=20' or '0:yaw=0; 2:yaw=20')")
        if len(rest) == 1 and Path(rest[0]).suffix.lower() in (".csv", ".json"):
            ctl.curve = rest[0]
        elif all(re.match(rf"^\s*{TIME}\s*:", r) for r in rest):
            ctl.keyframes = _parse_keyframes("; ".join(rest), POSE_CHANNELS, "pose keyframes")
        elif len(rest) == 1:
            for k, v in _assignments(rest[0], POSE_CHANNELS, "pose").items():
                setattr(ctl, k, v)
        else:
            raise InputError(f"pose control '{spec}': expected constants 'yaw=20,pitch=-5', keyframes "
                             "'0:yaw=0; 2:yaw=20' or a .csv/.json curve file")
        return ctl.validate()


# ---------------------------------------------------------------------------------------------- blink
@dataclass
class BlinkControl:
    """Blinks at given times and/or at a rate with natural jitter, and the eye-openness level between blinks."""

    kind: ClassVar[str] = "blink"
    option: ClassVar[str] = "blink_control"
    form_fields: ClassVar[tuple[str, ...]] = ("blink_times", "blink_rate", "blink_duration", "eye_openness")

    times: list[float] | None = None      # seconds of full closure
    rate: float | None = None             # blinks per minute (0: none)
    duration: float = 0.2                 # seconds, closing + opening
    jitter: float = 0.4                   # coefficient of variation of the intervals at a rate
    seed: int = 0
    openness: float = 1.0                 # eye opening between blinks, 0 (closed) .. 1 (open)

    def validate(self) -> "BlinkControl":
        if self.times is not None:
            self.times = sorted(_finite(t, "blink time") for t in self.times)
            if any(t < 0 for t in self.times):
                raise InputError("blink times must be >= 0 seconds")
            if not self.times:
                raise InputError("blink times: empty list (expected e.g. '1,4.5')")
            twice = [a for a, b in zip(self.times, self.times[1:]) if b - a < 1e-9]
            if twice:
                raise InputError(f"blink times: {twice[0]:g} s is given twice")
        if self.rate is not None:
            self.rate = _finite(self.rate, "blink rate")
            if not 0 <= self.rate <= 120:
                raise InputError(f"blink rate {self.rate:g}/min is out of range (0..120 per minute)")
        self.duration = _finite(self.duration, "blink duration")
        if not 0.04 <= self.duration <= 2.0:
            raise InputError(f"blink duration {self.duration:g} s is out of range (0.04..2 s)")
        self.jitter = _finite(self.jitter, "blink jitter")
        if not 0 <= self.jitter <= 2:
            raise InputError(f"blink jitter {self.jitter:g} is out of range (0..2)")
        self.openness = _finite(self.openness, "eye openness")
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

    @classmethod
    def from_form(cls, v: dict, upload=None) -> "BlinkControl | None":
        """The web page's blink fields (``blink_mode`` "controls" turns them on)."""
        if v.get("blink_mode") != "controls":
            return None
        times = _form_text(v, "blink_times")
        return cls(times=parse_times(times, "blink times") if times else None, rate=_form_number(v, "blink_rate", 0.0),
                   duration=_form_number(v, "blink_duration", 0.2),
                   openness=_form_number(v, "eye_openness", 1.0)).validate()

    @staticmethod
    def add_arguments(g) -> None:
        g.add_argument("--blink-times", metavar="LIST", help="blinks at these seconds (full closure), e.g. 1,4.5")
        g.add_argument("--blink-rate", type=float, metavar="PER_MIN", help="blinks per minute, natural jitter")
        g.add_argument("--blink-duration", type=float, default=0.2, metavar="S",
                       help="seconds per blink (default 0.2)")
        g.add_argument("--blink-seed", type=int, default=0, help="seed of the blink-rate jitter")
        g.add_argument("--eye-openness", type=float, metavar="0..1", help="eye opening between blinks (1 = open)")

    @classmethod
    def from_args(cls, args) -> dict:
        times = parse_times(args.blink_times, "--blink-times") if args.blink_times is not None else None
        ctl = cls(times=times, rate=args.blink_rate, duration=args.blink_duration, seed=args.blink_seed,
                  openness=1.0 if args.eye_openness is None else args.eye_openness)
        try:  # --blink-duration / --blink-seed are checked even when nothing uses them: a typo is still a typo
            ctl.validate()
        except InputError as e:
            raise InputError(f"{e} (--blink-*)") from None
        if times is not None or args.blink_rate is not None or args.eye_openness is not None:
            return {cls.option: ctl}
        return {}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "BlinkControl":
        return _from_dict(cls, d, "blink control")

    @classmethod
    def parse(cls, spec: str) -> "BlinkControl":
        """'1,4.5' (times) or 'rate=15' / 'rate=15,seed=3,duration=0.25,openness=0.8,jitter=0.4';
        'times=1 4.5' also works; 'off' / 'none' = no blinks."""
        spec = _spec(spec, f"{cls.kind} control")
        if not spec:
            raise InputError("blink control: empty spec")
        if spec.lower() in ("off", "none"):
            return cls(rate=0.0).validate()
        if "=" not in spec:
            return cls(times=parse_times(spec)).validate()
        ctl = cls()
        for part in [p for p in re.split(r"[;,](?=\s*[a-z_]+\s*=)", spec) if p.strip()]:
            if "=" not in part:
                raise InputError(f"blink control '{spec}': '{part.strip()}' is not NAME=VALUE")
            k, v = (s.strip() for s in part.split("=", 1))
            k = k.lower()
            if k == "times":
                ctl.times = parse_times(v)
            elif k in ("rate", "duration", "jitter", "openness"):
                setattr(ctl, k, _num(v, f"blink {k}"))
            elif k == "seed":
                ctl.seed = int(_num(v, "blink seed"))
            else:
                raise InputError(f"blink control: unknown name '{k}' (times, rate, duration, jitter, seed, openness)")
        return ctl.validate()


# ---------------------------------------------------------------------------------------------- gaze
_GAZE_ALIASES = {"horizontal": "h", "x": "h", "vertical": "v", "y": "v"}


@dataclass
class GazeControl:
    """Iris direction: constant (horizontal, vertical), 'camera', or keyframes over time."""

    kind: ClassVar[str] = "gaze"
    option: ClassVar[str] = "gaze_control"
    form_fields: ClassVar[tuple[str, ...]] = ("gaze_camera", "gaze_h", "gaze_v", "gaze_keyframes")

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
                setattr(self, n, self._check(_finite(v, f"gaze {n}"), n))
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

    @classmethod
    def from_form(cls, v: dict, upload=None) -> "GazeControl | None":
        """The web page's gaze fields (``gaze_mode`` "controls" turns them on)."""
        if v.get("gaze_mode") != "controls":
            return None
        if v.get("gaze_camera"):
            return cls(camera=True).validate()
        spec = _form_text(v, "gaze_keyframes")
        if spec:
            g = cls.parse(spec)
            if not g.keyframes:
                raise InputError(f"gaze keyframes '{spec}': expected e.g. '0:camera; 1.5:h=0.5; 3:h=-0.5,v=0.2'")
            return g
        return cls(horizontal=_form_number(v, "gaze_h", 0.0), vertical=_form_number(v, "gaze_v", 0.0)).validate()

    @staticmethod
    def add_arguments(g) -> None:
        g.add_argument("--gaze-direction", metavar="H,V", help="iris position: 'camera', or H,V in iris units "
                       "(-1..1; +H image right, +V up; '10deg,0deg' for degrees); --gaze H,V|camera works too")
        g.add_argument("--gaze-keyframes", metavar="SPEC", help="e.g. '0:camera; 1.5:h=0.5; 3:h=-0.5,v=0.2'")

    @classmethod
    def from_args(cls, args) -> dict:
        """Also takes a `--gaze H,V|camera` (a direction rather than a source) and clears that source."""
        out: dict = {}
        direction = args.gaze_direction
        gaze_src = getattr(args, "gaze", None)
        if gaze_src and cls.looks_like_spec(gaze_src) and not Path(gaze_src).exists():
            if direction:
                raise InputError("give the gaze direction once (--gaze or --gaze-direction)")
            direction = gaze_src
            out["gaze"] = None
        if direction and args.gaze_keyframes:
            raise InputError("give a gaze direction or gaze keyframes, not both")
        if direction:
            out[cls.option] = cls.parse(direction)
        elif args.gaze_keyframes:
            gc = cls.parse(args.gaze_keyframes)
            if not gc.keyframes:
                raise InputError(f"--gaze-keyframes '{args.gaze_keyframes}': expected keyframes like "
                                 "'0:camera; 2:h=0.5'")
            out[cls.option] = gc
        return out

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GazeControl":
        return _from_dict(cls, d, "gaze control")

    @staticmethod
    def looks_like_spec(text: str) -> bool:
        """True for 'camera', 'H,V' numbers (optionally with 'deg') or keyframes: what `--gaze` takes as a control."""
        s = str(text).strip().lower()
        return s in ("camera", "center", "centre") or bool(
            re.fullmatch(rf"(?:{NUMBER})\s*(deg)?\s*,\s*(?:{NUMBER})\s*(deg)?", s)) or bool(
            re.match(rf"^{TIME}\s*:", s)) or bool(re.fullmatch(r"(h|v|horizontal|vertical)\s*=.*", s))

    @classmethod
    def parse(cls, spec: str) -> "GazeControl":
        """'camera'; 'H,V' in iris units ('10deg,-5deg' or trailing 'deg' for degrees); 'h=0.5,v=0';
        keyframes '0:camera; 1.5:h=0.5,v=0; 3:h=-0.5'."""
        s = _spec(spec, f"{cls.kind} control")
        if not s:
            raise InputError("gaze control: empty spec")
        low = s.lower()
        ctl = cls()
        if low.endswith(";deg") or low.endswith("; deg"):
            ctl.units, s, low = "deg", s.rsplit(";", 1)[0].strip(), low.rsplit(";", 1)[0].strip()
        if low in ("camera", "center", "centre"):
            return cls(camera=True).validate()
        if re.match(rf"^{TIME}\s*:", low):
            ctl.keyframes = _parse_keyframes(s, GAZE_CHANNELS, "gaze keyframes", _GAZE_ALIASES,
                                             special={"camera": {"h": 0.0, "v": 0.0}, "center": {"h": 0.0, "v": 0.0},
                                                      "centre": {"h": 0.0, "v": 0.0}})
            return ctl.validate()
        if "=" in low:
            for k, v in _assignments(s, GAZE_CHANNELS, "gaze", _GAZE_ALIASES).items():
                setattr(ctl, "horizontal" if k == "h" else "vertical", v)
            return ctl.validate()
        parts = [p.strip() for p in low.split(",")]
        if len(parts) != 2:
            raise InputError(f"gaze '{spec}': expected 'camera', 'H,V' (e.g. 0.5,-0.2 or 10deg,0deg) or keyframes")
        if any(p.endswith("deg") for p in parts):
            ctl.units = "deg"
        ctl.horizontal, ctl.vertical = (_num(p.removesuffix("deg").strip(), "gaze") for p in parts)
        return ctl.validate()


# ---------------------------------------------------------------------------------------------- emotion
@dataclass
class EmotionControl:
    """An emotion label at an intensity, a blend of labels, a reference clip, or neutral."""

    kind: ClassVar[str] = "emotion"
    option: ClassVar[str] = "emotion_control"
    form_fields: ClassVar[tuple[str, ...]] = ("emotion_label", "emotion_level", "emotion_label2", "emotion_mix")

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
        self.intensity = _finite(self.intensity, "emotion intensity")
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
                w = _finite(v, f"emotion blend weight of {lab}")
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

    @classmethod
    def from_form(cls, v: dict, upload=None) -> "EmotionControl | None":
        """The web page's emotion fields: ``emotion_mode`` "controls" (a label, or a blend of two) or "reference"
        (the mean expression of the uploaded ``emotion_video``; ``upload(field, role)`` is the page's checked path
        of an uploaded file, or None)."""
        level = _form_number(v, "emotion_level", 1.0)
        if v.get("emotion_mode") == "reference":
            reference = upload("emotion_video", "emotion reference clip") if upload is not None else None
            if reference is None:
                raise InputError("emotion: 'mean expression of a clip' is chosen but no clip is uploaded")
            return cls(reference=str(reference), intensity=level).validate()
        if v.get("emotion_mode") != "controls":
            return None
        first, second = v.get("emotion_label") or "neutral", v.get("emotion_label2")
        mix = _form_number(v, "emotion_mix", 0)
        if second and second != "none" and mix > 0:
            if second == first:
                raise InputError(f"emotion blend: '{first}' twice; choose two different labels")
            return cls(blend={first: 1 - mix, second: mix}, intensity=level).validate()
        return cls(label=first, intensity=level).validate()

    @staticmethod
    def add_arguments(g) -> None:
        g.add_argument("--emotion-label", metavar="LABEL[:LEVEL]", help="e.g. happy or happy:0.5 (labels of the "
                                                                         "fitted mapping; neutral)")
        g.add_argument("--emotion-level", type=float, metavar="0..1",
                       help="strength of --emotion-label/--emotion-blend/--emotion-reference (default 1)")
        g.add_argument("--emotion-blend", metavar="SPEC", help="e.g. happy:0.6,sad:0.2")
        g.add_argument("--emotion-reference", metavar="CLIP", help="video/frames/image whose mean expression is held")

    @classmethod
    def from_args(cls, args) -> dict:
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
            return {cls.option: cls(blend=parse_weights(args.emotion_blend, "--emotion-blend"),
                                   intensity=level).validate()}
        if args.emotion_reference:
            return {cls.option: cls(reference=args.emotion_reference, intensity=level).validate()}
        if args.emotion_level is not None:
            raise InputError("--emotion-level needs --emotion-label, --emotion-blend or --emotion-reference "
                             "(the source code multiplier is --emotion-intensity)")
        return {}

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EmotionControl":
        return _from_dict(cls, d, "emotion control")

    @classmethod
    def parse(cls, spec: str) -> "EmotionControl":
        """'happy', 'happy:0.5', 'neutral', 'happy:0.6,sad:0.2' (a blend), 'ref=clip.mp4' (a reference clip)."""
        s = _spec(spec, f"{cls.kind} control")
        if not s:
            raise InputError("emotion control: empty spec")
        if s.lower().startswith(("ref=", "reference=")):
            return cls(reference=s.split("=", 1)[1].strip()).validate()
        w = parse_weights(s, "emotion")
        if len(w) == 1:
            (label, v), = w.items()
            return cls(label=label, intensity=v).validate()
        return cls(blend=w).validate()


# ---------------------------------------------------------------------------------------------- lips
@dataclass
class LipControl:
    """Lip-motion intensity and mute spans (the closed mouth, faded in and out over `ramp` seconds)."""

    kind: ClassVar[str] = "lip"
    option: ClassVar[str] = "lip_control"
    form_fields: ClassVar[tuple[str, ...]] = ("lip_level", "mute_spans")

    intensity: float = 1.0
    mute: list[tuple[float, float]] | None = None
    ramp: float = 0.08

    def validate(self) -> "LipControl":
        self.intensity = _finite(self.intensity, "lip intensity")
        if not 0 <= self.intensity <= 2:
            raise InputError(f"lip intensity {self.intensity:g} is out of range (0 = closed .. 1 = normal .. 2)")
        self.ramp = _finite(self.ramp, "mute ramp")
        if not 0 <= self.ramp <= 1:
            raise InputError(f"mute ramp {self.ramp:g} s is out of range (0..1 s)")
        if self.mute is not None:
            spans = []
            for s in self.mute:
                if not isinstance(s, (list, tuple)) or len(s) != 2:
                    raise InputError(f"a mute span is (start, end) in seconds, got {s!r}")
                a, b = _finite(s[0], "mute start"), _finite(s[1], "mute end")
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

    @classmethod
    def from_form(cls, v: dict, upload=None) -> "LipControl | None":
        """The web page's lip fields (on when the level is not 1 or a mute span is given)."""
        level, mute = _form_number(v, "lip_level", 1.0), _form_text(v, "mute_spans")
        if level == 1.0 and not mute:
            return None
        return cls(intensity=level, mute=parse_spans(mute) if mute else None).validate()

    @staticmethod
    def add_arguments(g) -> None:
        g.add_argument("--lip-level", type=float, metavar="0..2", help="lip motion strength (0 closed, 1 normal)")
        g.add_argument("--mute", metavar="SPANS", help="closed mouth during these seconds, e.g. 2.0-3.5,6-7")
        g.add_argument("--mute-ramp", type=float, default=0.08, metavar="S",
                       help="fade in/out of a mute (default 0.08)")

    @classmethod
    def from_args(cls, args) -> dict:
        ctl = cls(intensity=1.0 if args.lip_level is None else args.lip_level,
                  mute=parse_spans(args.mute, "--mute") if args.mute is not None else None,
                  ramp=args.mute_ramp).validate()  # --mute-ramp is checked even without --mute
        if args.lip_level is not None or args.mute is not None:
            return {cls.option: ctl}
        return {}

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
        """'mute=2-3.5,5-6', 'intensity=0.5', both with ';' ('intensity=0.5; mute=2-3.5'), 'ramp=0.1';
        a bare span list '2-3.5' means mute spans, a bare number the intensity."""
        s = _spec(spec, f"{cls.kind} control")
        if not s:
            raise InputError("lip control: empty spec")
        ctl = cls()
        for tok in _split_tokens(s):
            low = tok.lower()
            if "=" in low:
                k, v = (x.strip() for x in tok.split("=", 1))
                k = k.lower()
                if k == "mute":
                    ctl.mute = parse_spans(v)
                elif k in ("intensity", "ramp"):
                    setattr(ctl, k, _num(v, f"lip {k}"))
                else:
                    raise InputError(f"lip control: unknown name '{k}' (intensity, mute, ramp)")
            elif re.fullmatch(r"[0-9.]+", low):
                ctl.intensity = _num(low, "lip intensity")
            else:
                ctl.mute = parse_spans(tok)
        return ctl.validate()


# ---------------------------------------------------------------------------------------------- common
CONTROL_TYPES = {c.kind: c for c in (PoseControl, BlinkControl, GazeControl, EmotionControl, LipControl)}
CONTROL_FIELDS = {kind: c.option for kind, c in CONTROL_TYPES.items()}   # kind -> AnimateOptions field
FORM_FIELDS = tuple(f for c in CONTROL_TYPES.values() for f in c.form_fields)  # the web page's control widgets


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
