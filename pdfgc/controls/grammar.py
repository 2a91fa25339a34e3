"""The explicit controls' text grammar: the short specs typed on the command line and in the web page's boxes,
and curve files, turned into the values of the physical controls (`pdfgc.controls.specs`).

- numbers as typed (``2``, ``-3.5``, ``.5``, ``1e9``; ``nan``/``inf`` are read so they get a number's message),
  times in seconds (``2.5``, ``2.5s``) or frames (``50f``), lists of times (``1,4.5``), spans (``2-3.5, 5s-6s``),
  label weights (``happy:0.6,sad:0.2``), assignments (``yaw=20,pitch=-5``);
- keyframes: ``"0:yaw=0,pitch=0; 2:yaw=20"`` (time in seconds, or ``50f`` for a frame number); how the values
  between keys are interpolated is the specs' business (`pdfgc.controls.specs.interpolate`);
- each control's spec (`pose_fields`, `blink_fields`, `gaze_fields`, `emotion_fields`, `lip_fields`): a string ->
  the control's field values, which the control then validates (``PoseControl.parse``);
- curve files (`load_curve_file`): CSV with a time or frame column, or JSON keyframes or columns.

Every malformed string or file is one InputError naming what is wrong; a spec longer than anyone types is refused
(`MAX_SPEC_CHARS`).
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from ..errors import InputError
from ..fileio import read_user_text, show_path
from ..vocabulary import FPS
from .specs import (
    CURVE_BYTES_PER_SECOND,
    CURVE_BYTES_SLACK,
    GAZE_CHANNELS,
    INTERPOLATIONS,
    MAX_CURVE_SECONDS,
    POSE_CHANNELS,
    finite,
    normalise_emotion,
)

# one textual number as a user may type it: 2, -3.5, .5, 1e9, nan, inf (so those get a number's message)
NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?|[-+]?(?:inf|infinity|nan)"
TIME = rf"(?:{NUMBER})[sf]?"
GAZE_ALIASES = {"horizontal": "h", "x": "h", "vertical": "v", "y": "v"}
_CAMERA = ("camera", "center", "centre")


# ---------------------------------------------------------------------------------------------- words
def _num(text: str, what: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(f"{what}: '{text}' is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{what}: '{text}' is not a finite number")
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


def _split_tokens(spec: str) -> list[str]:
    return [p.strip() for p in str(spec).split(";") if p.strip()]


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
            t = (finite(cols[tcol][i], f"{what} {p} row {i + 1} time") if tcol is not None
                 else finite(cols[fcol][i], f"{what} {p} row {i + 1} frame") / fps)
            if t < 0:
                raise InputError(f"{what} {p}: row {i + 1}: negative time")
            key = {"t": t}
            for n, col in value_cols.items():
                v = col[i]
                if v is None or (isinstance(v, str) and not v.strip()):
                    continue  # an empty cell: this channel has no key here
                key[n] = finite(v, f"{what} {p} row {i + 1} {n}")
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
                    finite(row[k], f"{what} {p} item {i} {k}")
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


# ---------------------------------------------------------------------------------------------- each control's spec
# a spec string -> the control's field values (the control validates them: ``PoseControl.parse`` and its kin)
def pose_fields(spec: str) -> dict:
    """'yaw=20,pitch=-5' (constants), '0:yaw=0; 2:yaw=20' (keyframes), 'head.csv' / 'head.json' (curve file);
    extra ';'-separated tokens: 'absolute' / 'relative', an interpolation name (linear, smooth, cubic, step)."""
    spec = _spec(spec, "pose control")
    if not spec:
        raise InputError("pose control: empty spec")
    out: dict = {}
    rest = []
    for tok in _split_tokens(spec):
        low = tok.lower()
        if low in ("absolute", "abs"):
            out["relative"] = False
        elif low in ("relative", "rel"):
            out["relative"] = True
        elif low in INTERPOLATIONS:
            out["interpolation"] = low
        elif low.startswith("interp=") or low.startswith("interpolation="):
            out["interpolation"] = low.split("=", 1)[1]
        else:
            rest.append(tok)
    if not rest:
        raise InputError(f"pose control '{spec}': sets no value (e.g. 'yaw=20' or '0:yaw=0; 2:yaw=20')")
    if len(rest) == 1 and Path(rest[0]).suffix.lower() in (".csv", ".json"):
        out["curve"] = rest[0]
    elif all(re.match(rf"^\s*{TIME}\s*:", r) for r in rest):
        out["keyframes"] = _parse_keyframes("; ".join(rest), POSE_CHANNELS, "pose keyframes")
    elif len(rest) == 1:
        out.update(_assignments(rest[0], POSE_CHANNELS, "pose"))
    else:
        raise InputError(f"pose control '{spec}': expected constants 'yaw=20,pitch=-5', keyframes "
                         "'0:yaw=0; 2:yaw=20' or a .csv/.json curve file")
    return out


def blink_fields(spec: str) -> dict:
    """'1,4.5' (times) or 'rate=15' / 'rate=15,seed=3,duration=0.25,openness=0.8,jitter=0.4';
    'times=1 4.5' also works; 'off' / 'none' = no blinks."""
    spec = _spec(spec, "blink control")
    if not spec:
        raise InputError("blink control: empty spec")
    if spec.lower() in ("off", "none"):
        return {"rate": 0.0}
    if "=" not in spec:
        return {"times": parse_times(spec)}
    out: dict = {}
    for part in [p for p in re.split(r"[;,](?=\s*[a-z_]+\s*=)", spec) if p.strip()]:
        if "=" not in part:
            raise InputError(f"blink control '{spec}': '{part.strip()}' is not NAME=VALUE")
        k, v = (s.strip() for s in part.split("=", 1))
        k = k.lower()
        if k == "times":
            out["times"] = parse_times(v)
        elif k in ("rate", "duration", "jitter", "openness"):
            out[k] = _num(v, f"blink {k}")
        elif k == "seed":
            out["seed"] = int(_num(v, "blink seed"))
        else:
            raise InputError(f"blink control: unknown name '{k}' (times, rate, duration, jitter, seed, openness)")
    return out


def looks_like_gaze_spec(text: str) -> bool:
    """True for 'camera', 'H,V' numbers (optionally with 'deg') or keyframes: what `--gaze` takes as a control."""
    s = str(text).strip().lower()
    return s in _CAMERA or bool(
        re.fullmatch(rf"(?:{NUMBER})\s*(deg)?\s*,\s*(?:{NUMBER})\s*(deg)?", s)) or bool(
        re.match(rf"^{TIME}\s*:", s)) or bool(re.fullmatch(r"(h|v|horizontal|vertical)\s*=.*", s))


def gaze_fields(spec: str) -> dict:
    """'camera'; 'H,V' in iris units ('10deg,-5deg' or trailing 'deg' for degrees); 'h=0.5,v=0';
    keyframes '0:camera; 1.5:h=0.5,v=0; 3:h=-0.5'."""
    s = _spec(spec, "gaze control")
    if not s:
        raise InputError("gaze control: empty spec")
    low = s.lower()
    out: dict = {}
    if low.endswith(";deg") or low.endswith("; deg"):
        out["units"], s, low = "deg", s.rsplit(";", 1)[0].strip(), low.rsplit(";", 1)[0].strip()
    if low in _CAMERA:
        return {"camera": True}
    if re.match(rf"^{TIME}\s*:", low):
        out["keyframes"] = _parse_keyframes(s, GAZE_CHANNELS, "gaze keyframes", GAZE_ALIASES,
                                            special={c: {"h": 0.0, "v": 0.0} for c in _CAMERA})
        return out
    if "=" in low:
        for k, v in _assignments(s, GAZE_CHANNELS, "gaze", GAZE_ALIASES).items():
            out["horizontal" if k == "h" else "vertical"] = v
        return out
    parts = [p.strip() for p in low.split(",")]
    if len(parts) != 2:
        raise InputError(f"gaze '{spec}': expected 'camera', 'H,V' (e.g. 0.5,-0.2 or 10deg,0deg) or keyframes")
    if any(p.endswith("deg") for p in parts):
        out["units"] = "deg"
    out["horizontal"], out["vertical"] = (_num(p.removesuffix("deg").strip(), "gaze") for p in parts)
    return out


def emotion_fields(spec: str) -> dict:
    """'happy', 'happy:0.5', 'neutral', 'happy:0.6,sad:0.2' (a blend), 'ref=clip.mp4' (a reference clip)."""
    s = _spec(spec, "emotion control")
    if not s:
        raise InputError("emotion control: empty spec")
    if s.lower().startswith(("ref=", "reference=")):
        return {"reference": s.split("=", 1)[1].strip()}
    w = parse_weights(s, "emotion")
    if len(w) == 1:
        (label, v), = w.items()
        return {"label": label, "intensity": v}
    return {"blend": w}


def lip_fields(spec: str) -> dict:
    """'mute=2-3.5,5-6', 'intensity=0.5', both with ';' ('intensity=0.5; mute=2-3.5'), 'ramp=0.1';
    a bare span list '2-3.5' means mute spans, a bare number the intensity."""
    s = _spec(spec, "lip control")
    if not s:
        raise InputError("lip control: empty spec")
    out: dict = {}
    for tok in _split_tokens(s):
        low = tok.lower()
        if "=" in low:
            k, v = (x.strip() for x in tok.split("=", 1))
            k = k.lower()
            if k == "mute":
                out["mute"] = parse_spans(v)
            elif k in ("intensity", "ramp"):
                out[k] = _num(v, f"lip {k}")
            else:
                raise InputError(f"lip control: unknown name '{k}' (intensity, mute, ramp)")
        elif re.fullmatch(r"[0-9.]+", low):
            out["intensity"] = _num(low, "lip intensity")
        else:
            out["mute"] = parse_spans(tok)
    return out
