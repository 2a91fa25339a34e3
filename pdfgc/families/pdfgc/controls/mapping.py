"""Control mappings: how each physical value (degrees, eye openness, iris position, emotion label, closed mouth)
maps to a model's codes, FITTED on prepared data with that model's motion encoder.

Fitting (``pdfgc fit-controls --weights W --data PREPARED_DIR``): the motion encoder reads prepared frames (a few
dozen per clip, plus each clip's most closed-eye and most closed-mouth frames, which a uniform sample would
miss), and ridge regressions (closed form on standardised inputs, unpenalised intercept) are fitted:

- pose:  (yaw, pitch, roll [deg], tx, ty, scale) -> pose code (6). If the model's config declares its pose code is
  already in physical units (``ModelConfig.pose_code_units`` set to anything but "" / "fitted"), the identity map
  is used and nothing is fitted for pose.
- blink: eye openness (left, right; EAR over the clip's median EAR, so 1 = that person's open eye, 0 = closed)
  -> the blink dimensions of the eye code (``BLINK_DIMS``).
- gaze:  iris position (horizontal, vertical; the mean of both eyes, +h toward the image's right, +v up)
  -> the gaze dimensions of the eye code (``GAZE_DIMS``).
- emotion: the mean emotion code of each label (labels from the corpus when clips carry one, e.g. MEAD; else fer's
  classifier on the frames, frames under 0.5 confidence left out); neutral = the "neutral" mean (else the overall
  mean).
- mouth: the closed-mouth code = the mean visual mouth code of the 5 % of frames with the smallest mouth opening.

Accuracy is recorded in the mapping, in physical units: the controls go physical value -> code, so a fitted map is
judged by how well it reads a held-out frame's value back from the frame's code (least-squares inverse of the map):
MAE and R^2 per channel, plus the R^2 of the codes it predicts and, for context, the MAE/R^2 of the best linear
read-out of the value from the code (``readout_*``: how much of the value the code carries at all). Held-out clips
(``split == "heldout"``) are used when the corpus has them, else a 5-fold split by clip. Emotion: nearest-mean accuracy
of held-out frames' labels.

Stored beside the weights as ``<weights stem>.controls.json`` (plain JSON numbers, never pickle) and found there by
the pipeline; a mapping records a SHA-256 of the model's motion encoder (the only network that fixes what a code
means; the mapping is about codes) and is refused for any other model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ....controls.explicit import POSE_CHANNELS
from ....errors import CheckpointError, InputError
from ....fileio import write_atomic
from ..model import BLINK_DIMS, GAZE_DIMS

log = logging.getLogger("pdfgc")

FORMAT = "pdfgc-controls"
VERSION = 1
SUFFIX = ".controls.json"
FOLDER_NAME = "controls.json"     # inside a folder of official checkpoints
BLINK_INPUTS = ("openness_left", "openness_right")
GAZE_INPUTS = ("gaze_h", "gaze_v")
NO_MAPPING_HELP = ("fit one on prepared data with `pdfgc fit-controls --weights WEIGHTS.safetensors "
                   "--data PREPARED_DIR` (writes WEIGHTS.controls.json beside the weights, where it is found "
                   "automatically), or pass one with --controls FILE")


# ---------------------------------------------------------------------------------------------- model identity
def model_fingerprint(model) -> str:
    """SHA-256 over the motion encoder's tensors (names, dtypes, shapes, bytes) and the code sizes."""
    cached = getattr(model, "_pdfgc_motion_sha256", None)
    if cached is not None:
        return cached
    import torch

    h = hashlib.sha256()
    lay = model.config.layout
    h.update(json.dumps([lay.mouth, lay.emotion, lay.eye, lay.pose]).encode())
    for name, t in sorted(model.motion.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes() if t.numel() else b"")
    digest = h.hexdigest()
    try:
        object.__setattr__(model, "_pdfgc_motion_sha256", digest)  # cached: weights are fixed at inference
    except Exception:  # pragma: no cover - a model that refuses attributes is just hashed again next time
        pass
    return digest


def pose_code_is_physical(config) -> bool:
    units = getattr(config, "pose_code_units", None)
    return bool(units) and str(units).lower() not in ("fitted", "learned", "none", "latent", "code")


def physical_pose_map(config) -> "LinearMap":
    """The fixed map of a model whose pose code is the physical pose (`pdfgc train` models: yaw, pitch, roll in
    radians, tx, ty, scale as prepared): degrees -> radians for the angles when its units say radians."""
    units = str(getattr(config, "pose_code_units", "") or "").lower()
    k = math.pi / 180.0 if "radian" in units else 1.0
    return LinearMap.identity(POSE_CHANNELS, range(6), scale=[k, k, k, 1.0, 1.0, 1.0],
                              note=f"the model's pose code is in physical units ({units or 'as labelled'})")


# ---------------------------------------------------------------------------------------------- linear maps
def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """y ~= x @ w + b by ridge on standardised x (unpenalised intercept); returns (w (n_in, n_out), b (n_out,)).
    Written out (a few lines of numpy) to keep scikit-learn out of the install. Constant inputs get zero weight."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mx, my = x.mean(0), y.mean(0)
    sx = x.std(0)
    live = sx > 1e-8
    xs = np.zeros_like(x)
    xs[:, live] = (x[:, live] - mx[live]) / sx[live]
    n = max(len(x), 1)
    a = xs.T @ xs / n + alpha * np.eye(x.shape[1])
    w_std = np.linalg.solve(a, xs.T @ (y - my) / n)
    w = np.zeros_like(w_std)
    w[live] = w_std[live] / sx[live, None]
    b = my - mx @ w
    return w, b


def r2_score(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-column coefficient of determination (NaN for a constant column)."""
    true, pred = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    ss_res = ((true - pred) ** 2).sum(0)
    ss_tot = ((true - true.mean(0)) ** 2).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_tot > 1e-12, 1 - ss_res / np.maximum(ss_tot, 1e-300), np.nan)


@dataclass
class LinearMap:
    """Physical values (T, n_in) -> code values (T, len(dims)) as values @ weight + bias."""

    inputs: list[str]
    dims: list[int]
    weight: np.ndarray          # (n_in, n_out)
    bias: np.ndarray            # (n_out,)
    source: str = "fitted"      # fitted | model (the code already is the physical value)
    accuracy: dict = field(default_factory=dict)
    input_mean: list[float] | None = None
    input_std: list[float] | None = None

    def __post_init__(self):
        self.weight = np.asarray(self.weight, np.float64).reshape(len(self.inputs), len(self.dims))
        self.bias = np.asarray(self.bias, np.float64).reshape(len(self.dims))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float64) @ self.weight + self.bias

    def inverse(self, codes: np.ndarray) -> np.ndarray:
        """Least-squares physical values for codes (T, n_out) -> (T, n_in)."""
        return (np.asarray(codes, np.float64) - self.bias) @ np.linalg.pinv(self.weight)

    def to_dict(self) -> dict:
        return {"inputs": list(self.inputs), "dims": [int(d) for d in self.dims], "source": self.source,
                "weight": self.weight.tolist(), "bias": self.bias.tolist(), "accuracy": self.accuracy,
                "input_mean": self.input_mean, "input_std": self.input_std}

    @classmethod
    def from_dict(cls, d: dict) -> "LinearMap":
        return cls(inputs=list(d["inputs"]), dims=[int(x) for x in d["dims"]], weight=np.array(d["weight"]),
                   bias=np.array(d["bias"]), source=d.get("source", "fitted"), accuracy=d.get("accuracy", {}),
                   input_mean=d.get("input_mean"), input_std=d.get("input_std"))

    @classmethod
    def identity(cls, inputs, dims, scale=None, note: str = "the model's code is the physical value") -> "LinearMap":
        w = np.eye(len(inputs), len(list(dims)))
        if scale is not None:
            w = w * np.asarray(scale, np.float64)[:, None]
        return cls(list(inputs), list(dims), w, np.zeros(len(list(dims))), source="model",
                   accuracy={"note": note + ": no fit needed"})


# ---------------------------------------------------------------------------------------------- the mappings
@dataclass
class ControlMappings:
    """Every fitted mapping of one model; see the module doc."""

    model_sha256: str
    model_name: str = ""
    pose: LinearMap | None = None
    blink: LinearMap | None = None
    gaze: LinearMap | None = None
    emotion_means: dict[str, np.ndarray] = field(default_factory=dict)   # label -> (emotion dim,) raw code
    emotion_neutral: np.ndarray | None = None
    emotion_accuracy: dict = field(default_factory=dict)
    mouth_closed: np.ndarray | None = None                               # (mouth dim,) raw visual mouth code
    mouth_accuracy: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def emotion_labels(self) -> list[str]:
        return sorted(self.emotion_means)

    def emotion_code(self, weights: dict[str, float]) -> np.ndarray:
        """neutral + sum_l w_l (mean_l - neutral): the raw emotion code of a labelled blend."""
        if self.emotion_neutral is None or not self.emotion_means:
            raise InputError("this control mapping has no emotion labels: " + NO_MAPPING_HELP)
        out = np.array(self.emotion_neutral, np.float64)
        for label, w in weights.items():
            if label not in self.emotion_means:
                raise InputError(f"emotion label '{label}' is not in the fitted mapping (labels: "
                                 f"{', '.join(self.emotion_labels)})")
            out = out + w * (self.emotion_means[label] - self.emotion_neutral)
        return out

    def check_model(self, model, source: str = "control mapping") -> None:
        digest = model_fingerprint(model)
        if digest != self.model_sha256:
            raise CheckpointError(
                f"{source}: fitted for another model ({self.model_name or 'unknown'}, motion encoder sha256 "
                f"{self.model_sha256[:12]}...) than the one loaded ({model.config.name}, {digest[:12]}...); "
                "codes would be misread. Refit it for these weights with `pdfgc fit-controls`")

    # ---- storage -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        def arr(a):
            return None if a is None else np.asarray(a, np.float64).tolist()

        return {
            "format": FORMAT, "version": VERSION,
            "model": {"name": self.model_name, "motion_sha256": self.model_sha256},
            "pose": self.pose.to_dict() if self.pose else None,
            "blink": self.blink.to_dict() if self.blink else None,
            "gaze": self.gaze.to_dict() if self.gaze else None,
            "emotion": {"means": {k: arr(v) for k, v in sorted(self.emotion_means.items())},
                        "neutral": arr(self.emotion_neutral), "accuracy": self.emotion_accuracy},
            "mouth": {"closed": arr(self.mouth_closed), "accuracy": self.mouth_accuracy},
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "control mapping") -> "ControlMappings":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise InputError(f"{source}: not a pdfgc control mapping (no 'format: {FORMAT}')")
        if d.get("version") != VERSION:
            raise InputError(f"{source}: mapping version {d.get('version')}, this pdfgc reads version {VERSION}")
        try:
            emo = d.get("emotion") or {}
            mouth = d.get("mouth") or {}
            return cls(
                model_sha256=str(d["model"]["motion_sha256"]), model_name=str(d["model"].get("name", "")),
                pose=LinearMap.from_dict(d["pose"]) if d.get("pose") else None,
                blink=LinearMap.from_dict(d["blink"]) if d.get("blink") else None,
                gaze=LinearMap.from_dict(d["gaze"]) if d.get("gaze") else None,
                emotion_means={k: np.array(v, np.float64) for k, v in (emo.get("means") or {}).items()},
                emotion_neutral=None if emo.get("neutral") is None else np.array(emo["neutral"], np.float64),
                emotion_accuracy=emo.get("accuracy") or {},
                mouth_closed=None if mouth.get("closed") is None else np.array(mouth["closed"], np.float64),
                mouth_accuracy=mouth.get("accuracy") or {}, info=d.get("info") or {})
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(f"{source}: malformed control mapping ({type(e).__name__}: {e})") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write as JSON, atomically (temp file + rename)."""
        path = Path(path)
        if not path.parent.is_dir():
            raise InputError(f"control mapping {path}: folder {path.parent} does not exist")
        return write_atomic(path, json.dumps(self.to_dict(), indent=1, allow_nan=True))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ControlMappings":
        from ....fileio import read_user_text
        path = Path(path)
        text = read_user_text(path, "control mapping", MAX_MAPPING_BYTES, kind="a control mapping (.controls.json)",
                              why="a fitted mapping is a few linear maps: tens of kB")
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"control mapping {path}: not valid JSON, truncated or damaged? ({e})") from None
        if not isinstance(d, dict):
            raise InputError(f"control mapping {path}: not a control mapping (a JSON object is expected)")
        return cls.from_dict(d, str(path))

    def summary(self) -> dict:
        """What each control can use, with its recorded accuracy (for the UI and `pdfgc fit-controls`)."""
        return {"pose": bool(self.pose), "blink": bool(self.blink), "gaze": bool(self.gaze),
                "emotion_labels": self.emotion_labels, "mouth_closed": self.mouth_closed is not None,
                "accuracy": {"pose": self.pose.accuracy if self.pose else None,
                             "blink": self.blink.accuracy if self.blink else None,
                             "gaze": self.gaze.accuracy if self.gaze else None,
                             "emotion": self.emotion_accuracy, "mouth": self.mouth_accuracy}}


# ---------------------------------------------------------------------------------------------- finding one
def mapping_path_for(weights_path: str | os.PathLike) -> Path:
    """Where the mapping of a weights file lives: `<stem>.controls.json` beside it (`controls.json` in a folder)."""
    p = Path(weights_path)
    if p.is_dir():
        return p / FOLDER_NAME
    return p.with_name(p.stem + SUFFIX)


_CACHE: dict = {}
MAX_MAPPING_BYTES = 16 << 20  # a fitted mapping is a few small linear maps and emotion means (tens of kB)


def find_mapping(model, path: str | os.PathLike | None = None) -> ControlMappings | None:
    """The mapping for `model`: `path` if given (must exist), else the one beside the model's weights file
    (`model.weights_path`, set by PDFGC.from_pretrained), else None. Refused (CheckpointError) if it was fitted
    for another model."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError(f"control mapping {p}: no such file")
    else:
        wp = getattr(model, "weights_path", None)
        if wp is None:
            # imported here: pdfgc.weights imports the model families, whose adapters import the controls
            from ....weights import default_weights_path
            wp = default_weights_path() if model.config.trained else None
        if wp is None:
            return None
        p = mapping_path_for(wp)
        if not p.is_file():
            return None
    key = (str(p.resolve()), p.stat().st_mtime_ns, model_fingerprint(model))
    if key not in _CACHE:
        m = ControlMappings.load(p)
        m.check_model(model, str(p))
        _CACHE.clear()
        _CACHE[key] = m
    return _CACHE[key]


def require_mapping(mapping: ControlMappings | None, what: str, part: str | None = None) -> ControlMappings:
    """The mapping, or an InputError saying which control needs one and how to fit it."""
    if mapping is None:
        raise InputError(f"the {what} control needs a control mapping fitted for this model, and none was found: "
                         + NO_MAPPING_HELP)
    if part is not None and getattr(mapping, part) is None:
        raise InputError(f"the {what} control needs the mapping's '{part}' part, which this mapping lacks "
                         "(its data had no usable frames for it): " + NO_MAPPING_HELP)
    return mapping


# ---------------------------------------------------------------------------------------------- samples and fit
@dataclass
class ControlSamples:
    """Per-frame labels and codes gathered from prepared data (N frames)."""

    pose_label: np.ndarray      # (N,6) yaw, pitch, roll (deg), tx, ty, scale
    openness: np.ndarray        # (N,2) EAR / the clip's median EAR, left and right
    gaze: np.ndarray            # (N,2) iris h (+ image right), v (+ up), mean of both eyes
    mouth_opening: np.ndarray   # (N,)
    emotion_label: np.ndarray   # (N,) str, "" when unknown
    pose_code: np.ndarray       # (N,6)
    eye_code: np.ndarray        # (N,6)
    emotion_code: np.ndarray    # (N,E)
    mouth_code: np.ndarray      # (N,M)
    clip: np.ndarray            # (N,) int clip id (for grouped folds)
    heldout: np.ndarray         # (N,) bool

    def __len__(self) -> int:
        return int(self.pose_code.shape[0])

    @classmethod
    def concat(cls, parts: list["ControlSamples"]) -> "ControlSamples":
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls)})


def _folds(samples: ControlSamples, k: int = 5) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """(train, test) index pairs: the held-out split when there is one, else k folds grouped by clip."""
    n = len(samples)
    held = samples.heldout.astype(bool)
    if held.any() and (~held).any():
        return [(np.flatnonzero(~held), np.flatnonzero(held))], "heldout"
    clips = np.unique(samples.clip)
    if len(clips) >= 2:
        kk = min(k, len(clips))
        order = np.random.default_rng(0).permutation(clips)
        groups = {int(c): i % kk for i, c in enumerate(order)}
        fold = np.array([groups[int(c)] for c in samples.clip])
        how = f"{kk}-fold by clip"
    else:
        kk = min(k, n)
        fold = np.arange(n) % kk
        how = f"{kk}-fold by frame (one clip)"
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(kk)], how


def _linear_accuracy(x, y, folds, inputs, alpha) -> dict:
    """Held-out accuracy of the map x -> y, in x's (physical) units: x read back through the map's inverse."""
    xs_true, xs_hat, ys_true, ys_hat, xs_read = [], [], [], [], []
    for tr, te in folds:
        if len(tr) < 2 or len(te) < 1:
            continue
        w, b = ridge_fit(x[tr], y[tr], alpha)
        m = LinearMap(list(inputs), list(range(y.shape[1])), w, b)
        xs_true.append(x[te])
        xs_hat.append(m.inverse(y[te]))
        ys_true.append(y[te])
        ys_hat.append(m(x[te]))
        rw, rb = ridge_fit(y[tr], x[tr], alpha)  # the best linear read-out of the value from the code, for context
        xs_read.append(y[te] @ rw + rb)
    if not xs_true:
        return {"frames": int(len(x)), "note": "too few frames to measure"}
    xt, xh, yt, yh, xr = (np.concatenate(a) for a in (xs_true, xs_hat, ys_true, ys_hat, xs_read))
    r2 = r2_score(xt, xh)
    mae = np.abs(xt - xh).mean(0)
    yr2 = r2_score(yt, yh)
    var = ((yt - yt.mean(0)) ** 2).sum(0)
    code_r2 = float(1 - ((yt - yh) ** 2).sum() / var.sum()) if var.sum() > 0 else float("nan")
    return {"frames_tested": int(len(xt)),
            "r2": {n: _f(v) for n, v in zip(inputs, r2)}, "mae": {n: _f(v) for n, v in zip(inputs, mae)},
            "value_std": {n: _f(v) for n, v in zip(inputs, xt.std(0))},
            "code_r2": _f(code_r2), "code_r2_per_dim": [_f(v) for v in yr2],
            "readout_r2": {n: _f(v) for n, v in zip(inputs, r2_score(xt, xr))},
            "readout_mae": {n: _f(v) for n, v in zip(inputs, np.abs(xt - xr).mean(0))}}


def _f(v) -> float | None:
    v = float(v)
    return round(v, 6) if np.isfinite(v) else None


def fit_mappings(samples: ControlSamples, model_sha256: str, model_name: str = "", pose_map: LinearMap | None = None,
                 alpha: float = 1e-3, min_label_frames: int = 10, closed_fraction: float = 0.05,
                 info: dict | None = None) -> ControlMappings:
    """Fit every mapping on `samples` and measure its held-out accuracy (see the module doc)."""
    n = len(samples)
    if n < 4:
        raise InputError(f"only {n} usable frames: too few to fit control mappings")
    folds, split = _folds(samples)
    pose_in, eye = samples.pose_label, samples.eye_code
    bd, gd = list(BLINK_DIMS), list(GAZE_DIMS)

    def fit(x, y, inputs, dims):
        ok = np.isfinite(x).all(1) & np.isfinite(y).all(1)
        w, b = ridge_fit(x[ok], y[ok], alpha)
        sub = ControlSamples(**{f.name: getattr(samples, f.name)[ok] for f in dataclasses.fields(samples)})
        acc = _linear_accuracy(x[ok], y[ok], _folds(sub)[0], inputs, alpha)
        acc["split"] = split
        return LinearMap(list(inputs), list(dims), w, b, accuracy=acc,
                         input_mean=[_f(v) for v in x[ok].mean(0)], input_std=[_f(v) for v in x[ok].std(0)])

    if pose_map is not None:  # fixed (the code is physical): only its accuracy is measured, on held-out frames
        pose = pose_map
        te = folds[0][1] if split == "heldout" else np.arange(n)
        x, y = pose_in[te], samples.pose_code[te]
        ok = np.isfinite(x).all(1) & np.isfinite(y).all(1)
        est = pose.inverse(y[ok])
        pose.accuracy.update({"split": split if split == "heldout" else "all frames", "frames_tested": int(ok.sum()),
                              "r2": {k: _f(v) for k, v in zip(POSE_CHANNELS, r2_score(x[ok], est))},
                              "mae": {k: _f(v) for k, v in zip(POSE_CHANNELS, np.abs(x[ok] - est).mean(0))},
                              "value_std": {k: _f(v) for k, v in zip(POSE_CHANNELS, x[ok].std(0))}})
    else:
        pose = fit(pose_in, samples.pose_code, POSE_CHANNELS, range(samples.pose_code.shape[1]))
    blink = fit(samples.openness, eye[:, bd], BLINK_INPUTS, bd)
    gaze = fit(samples.gaze, eye[:, gd], GAZE_INPUTS, gd)

    # emotion: mean code per label; held-out nearest-mean accuracy
    labels = np.array([str(x) for x in samples.emotion_label])
    known = sorted({x for x in labels if x})
    counts = {lab: int((labels == lab).sum()) for lab in known}
    usable = [lab for lab in known if counts[lab] >= min_label_frames]
    means = {lab: samples.emotion_code[labels == lab].mean(0) for lab in usable}
    neutral = means.get("neutral")
    emo_acc: dict = {"counts": counts, "labels_used": usable, "split": split,
                     "neutral_from": "label 'neutral'" if neutral is not None else "mean of all frames"}
    if neutral is None:
        neutral = samples.emotion_code.mean(0)
    if len(usable) >= 2:
        hits, total, per = 0, 0, {lab: [0, 0] for lab in usable}
        for tr, te in folds:
            tr_means = {lab: samples.emotion_code[tr][labels[tr] == lab].mean(0) for lab in usable
                        if (labels[tr] == lab).any()}
            if len(tr_means) < 2:
                continue
            names = list(tr_means)
            cen = np.stack([tr_means[k] for k in names])
            for i in te:
                if labels[i] not in tr_means:
                    continue
                pred = names[int(np.argmin(((cen - samples.emotion_code[i]) ** 2).sum(1)))]
                hits += pred == labels[i]
                total += 1
                per[labels[i]][0] += pred == labels[i]
                per[labels[i]][1] += 1
        emo_acc.update({"nearest_mean_accuracy": _f(hits / total) if total else None, "frames_tested": total,
                        "chance": _f(1 / len(usable)),
                        "recall": {k: _f(a / b) if b else None for k, (a, b) in per.items()}})

    # mouth: the closed-mouth code from the frames with the smallest mouth opening
    mo = samples.mouth_opening
    ok = np.isfinite(mo)
    mouth_closed, mouth_acc = None, {}
    if ok.sum() >= 1:
        thr = float(np.quantile(mo[ok], closed_fraction))
        sel = ok & (mo <= thr)
        codes = samples.mouth_code[sel]
        mouth_closed = codes.mean(0)
        cos = (codes @ mouth_closed) / (np.linalg.norm(codes, axis=1) * np.linalg.norm(mouth_closed) + 1e-12)
        all_codes = samples.mouth_code[ok]
        norms = np.linalg.norm(all_codes, axis=1) * np.linalg.norm(mouth_closed)
        cos_all = (all_codes @ mouth_closed) / (norms + 1e-12)
        mouth_acc = {"frames": int(sel.sum()), "opening_threshold": _f(thr),
                     "mean_opening_selected": _f(mo[sel].mean()), "mean_opening_all": _f(mo[ok].mean()),
                     "cosine_to_closed_selected": _f(cos.mean()), "cosine_to_closed_all": _f(cos_all.mean())}
    inf = {"frames": n, "clips": int(len(np.unique(samples.clip))), "heldout_frames": int(samples.heldout.sum()),
           "split": split, "ridge_alpha": alpha, "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    inf.update(info or {})
    return ControlMappings(model_sha256=model_sha256, model_name=model_name, pose=pose, blink=blink, gaze=gaze,
                           emotion_means=means, emotion_neutral=np.asarray(neutral, np.float64),
                           emotion_accuracy=emo_acc, mouth_closed=mouth_closed, mouth_accuracy=mouth_acc, info=inf)
