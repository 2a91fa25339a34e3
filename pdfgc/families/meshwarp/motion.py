"""Natural head motion and blinks when nothing drives them (``--pose auto``, ``--blink auto``), fitted on the
prepared corpus's real speakers.

The model, a few dozen numbers in ``motion.json`` beside this file:

- **speech activity** a_t in 0..1 per output frame: the loudness of the frame's mel window (mean of its centre 4
  mel rows, the 40 ms the frame spans; the official normalised mel, so levels are comparable across files) mapped
  linearly from the training frames' 20th percentile (rest, 0) to their 80th (speaking, 1), then a 0.4 s moving
  average (head motion follows phrases, not syllables);
- **head angles** yaw, pitch, roll (degrees, changes from the portrait's own pose): per axis an AR(2) process
  x_t = a1 x_{t-1} + a2 x_{t-2} + s(a_t) e_t, e_t ~ N(0, 1), with innovation scale s(a) = sqrt(v0 + v1 a)
  (least squares of the squared residuals on a: more motion while speaking, slow drift at rest), fitted on the
  training speakers' pose after the 3-tap box the pipeline applies to a driving clip's pose (the face mesh's
  frame-to-frame jitter is not head motion); plus a slow drift (other noise e'_t, twice low-passed with
  rho = 0.985, scaled by c s(a_t)) whose scale c is set by bisection so the training clips' mean per-clip std is
  matched (fitted on frame steps, the AR(2) alone gave 0.6-0.9 of the real per-clip std). The sum starts at 0 (the
  portrait's pose) and is soft-limited (tanh) to the training clips' range;
- **blinks**: the training clips' blink rate (``signals.blink_events``: eye aspect ratio below 0.6 x the clip's
  median) and the coefficient of variation of the intervals, handed to ``BlinkControl`` (rate with jitter), the
  one home of blink schedules.

Left out because the training speakers do not show them (``benchmarks/results/meshwarp/motion_auto.txt``): a nod
at speech onsets (the mean change after 35 onsets is within about one standard error of zero on every axis) and a
blink rate that depends on speech (30.2 per minute speaking, 31.2 at rest).

Fit: ``python3 -m pdfgc.families.meshwarp.motion fit /work/prepared_corpus`` (people in heldout_identities.txt
never fitted). Measure: ``benchmarks/meshwarp_motion.py``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MOTION_FILE = Path(__file__).with_name("motion.json")
AXES = ("yaw", "pitch", "roll")
FPS = 25
ENVELOPE_FRAMES = 10        # 0.4 s moving average of the speech activity
CENTRE_ROWS = slice(8, 12)
# the slow drift's AR(1) coefficient: a 2.7 s time constant (1 / (1 - 0.985) frames), the phrase scale; the AR(2)
# fitted on frame steps captures the fast part of head motion and misses the per-clip spread that this adds
SLOW_RHO = 0.985


# ---------------------------------------------------------------------------------------------- features
def loudness_from_windows(windows: np.ndarray) -> np.ndarray:
    """(T,1,80,20) official mel windows -> (T,) loudness (mean of the centre 4 mel rows)."""
    w = np.asarray(windows, np.float32)
    return w[:, 0, :, CENTRE_ROWS].mean(axis=(1, 2)).astype(np.float64)


def loudness_from_rows(mel_rows: np.ndarray, num_frames: int) -> np.ndarray:
    """A prepared clip's (4T+16, 80) mel rows -> (T,) loudness, the same figure as `loudness_from_windows`."""
    m = np.asarray(mel_rows, np.float64)
    return np.array([m[4 * t + CENTRE_ROWS.start:4 * t + CENTRE_ROWS.stop].mean() for t in range(num_frames)])


def speech_loudness(speech, num_frames: int, chunk: int = 250) -> np.ndarray:
    """(T,) loudness of a pipeline `Speech` (None: silence), its mel windows computed chunk by chunk."""
    from ...media.spectrogram import speech_windows_range
    out = np.zeros(int(num_frames))
    if speech is None:
        return out
    wav, gain = speech.samples(), speech.gain
    for s in range(0, num_frames, chunk):
        w = speech_windows_range(wav, s, min(num_frames, s + chunk), gain)
        out[s:s + len(w)] = loudness_from_windows(w)
    return out


def activity(loudness: np.ndarray, rest: float, speak: float) -> np.ndarray:
    """(T,) speech activity 0 (rest) .. 1 (speaking), smoothed over ENVELOPE_FRAMES."""
    a = np.clip((np.asarray(loudness, np.float64) - rest) / max(1e-6, speak - rest), 0.0, 1.0)
    if a.size == 0:
        return a
    k = np.ones(ENVELOPE_FRAMES) / ENVELOPE_FRAMES
    pad = np.pad(a, (ENVELOPE_FRAMES // 2, ENVELOPE_FRAMES - 1 - ENVELOPE_FRAMES // 2), mode="edge")
    return np.convolve(pad, k, mode="valid")


def box3(x: np.ndarray) -> np.ndarray:
    """The pipeline's 3-tap box over time (edges repeated), along axis 0."""
    p = np.concatenate([x[:1], x, x[-1:]])
    return (p[:-2] + p[1:-1] + p[2:]) / 3.0


# ---------------------------------------------------------------------------------------------- the model
class MotionModel:
    def __init__(self, params: dict):
        self.params = params

    @classmethod
    def load(cls, path: str | Path | None = None) -> "MotionModel":
        return cls(json.loads(Path(path or MOTION_FILE).read_text()))

    def activity(self, loudness: np.ndarray) -> np.ndarray:
        p = self.params["activity"]
        return activity(loudness, p["rest"], p["speak"])

    def head_angles(self, loudness: np.ndarray, seed: int = 0, parts: str = "both") -> np.ndarray:
        """(T,3) yaw, pitch, roll changes in degrees for the per-frame loudness; deterministic for a seed."""
        a = self.activity(loudness)
        t = a.size
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((t, 2, len(AXES)))
        out = np.zeros((t, len(AXES)))
        for j, axis in enumerate(AXES):
            q = self.params["pose"][axis]
            a1, a2 = q["ar"]
            s = np.sqrt(np.maximum(q["v0"] + q["v1"] * a, 1e-8))
            rho, c, lim = SLOW_RHO, q.get("slow", 0.0), q["limit"]
            fast = 0.0 if parts == "slow" else 1.0
            slow = {"slow": 1.0, "fast": 0.0}.get(parts, c)
            x1 = x2 = y = z = 0.0
            for i in range(t):
                x = a1 * x1 + a2 * x2 + fast * s[i] * noise[i, 0, j]
                z = rho * z + slow * s[i] * noise[i, 1, j]
                y = rho * y + (1 - rho) * z   # twice low-passed: a drift, no frame-to-frame steps
                out[i, j] = lim * np.tanh((x + y) / lim)  # soft limit: never past the training range
                x1, x2 = x, x1
        return out

    def blink_rate(self) -> float:
        return float(self.params["blink"]["rate_per_min"])

    def blink_jitter(self) -> float:
        return float(self.params["blink"]["jitter"])


def auto_blink_control(seed: int = 0):
    """`--blink auto`: a BlinkControl at the fitted natural rate and interval jitter."""
    from ...controls.explicit import BlinkControl
    m = MotionModel.load()
    return BlinkControl(rate=m.blink_rate(), jitter=m.blink_jitter(), seed=int(seed)).validate()


# ---------------------------------------------------------------------------------------------- corpus
def load_speakers(root: str | Path, heldout_file: Path | None = None) -> list[dict]:
    """Every audio-bearing prepared clip with good face tracking: key, person, held-out flag, (T,3) angles (raw),
    (T,) loudness, (T,) eye aspect ratio (mean of both eyes)."""
    from ...data import PreparedCorpus
    from .corpus import HELDOUT_FILE, read_heldout, read_raw_manifest

    corpus = PreparedCorpus(root)
    raw = read_raw_manifest(corpus.manifest)
    held = set(read_heldout(Path(heldout_file or HELDOUT_FILE)))
    out = []
    for info in corpus.clips:
        if not info.has_audio:
            continue
        a = corpus.load_arrays(info.key, names=("mel.npy", "pose.npy", "eye.npy", "valid.npy"))
        if "mel.npy" not in a or a["valid.npy"].mean() < 0.95:
            continue
        person = raw.get(info.source, {}).get("identity_guess") or info.speaker or info.key
        t = len(a["pose.npy"])
        out.append({"key": info.key, "person": person, "heldout": info.split == "heldout" or person in held,
                    "angles": a["pose.npy"][:, :3].astype(np.float64),
                    "loudness": loudness_from_rows(a["mel.npy"], t),
                    "ear": a["eye.npy"][:, :2].mean(1).astype(np.float64)})
    return out


def fit(clips: list[dict]) -> dict:
    train = [c for c in clips if not c.get("heldout")]
    allq = np.concatenate([c["loudness"] for c in train])
    rest, speak = (float(v) for v in np.percentile(allq, [20, 80]))
    params = {"activity": {"rest": rest, "speak": speak}, "pose": {}, "blink": {},
              "fitted": {"clips": len(train), "people": len({c["person"] for c in train}),
                         "frames": int(sum(len(c["loudness"]) for c in train))}}
    for j, axis in enumerate(AXES):
        rows, ys, acts, span = [], [], [], []
        for c in train:
            x = box3(c["angles"][:, j])
            x = x - x.mean()
            span.append(np.abs(x).max())
            a = activity(c["loudness"], rest, speak)
            rows.append(np.stack([x[1:-1], x[:-2]], 1))
            ys.append(x[2:])
            acts.append(a[2:])
        X, y, A = np.concatenate(rows), np.concatenate(ys), np.concatenate(acts)
        coef = np.linalg.lstsq(X, y, rcond=None)[0]
        r2 = (y - X @ coef) ** 2
        v = np.linalg.lstsq(np.stack([np.ones_like(A), A], 1), r2, rcond=None)[0]
        v0 = max(float(v[0]), 1e-4)
        params["pose"][axis] = {"ar": [float(coef[0]), float(coef[1])], "v0": v0,
                                "v1": max(float(v[1]), -v0 + 1e-4),
                                "limit": float(np.percentile(span, 90))}
    from ...evaluation.signals import blink_events  # closed-eye intervals: EAR below 0.6 x the clip's median

    _calibrate_slow(params, train)
    starts = [np.array([e[0] for e in blink_events(c["ear"])]) for c in train]
    n_blinks = sum(len(s) for s in starts)
    minutes = sum(len(c["ear"]) for c in train) / FPS / 60
    gaps = np.concatenate([np.diff(s) / FPS for s in starts if len(s) > 1])
    params["blink"] = {"rate_per_min": round(n_blinks / minutes, 2),
                       "jitter": round(float(np.clip(gaps.std() / gaps.mean(), 0.2, 1.0)), 3)}
    return params


def _calibrate_slow(params: dict, train: list[dict], seeds: int = 8, steps: int = 12) -> None:
    """The slow drift's scale per axis, by bisection: the generated mean per-clip std (the figure the benchmark
    compares) equal to the training clips' own."""
    real = np.mean([box3(c["angles"]).std(0) for c in train], 0)
    lo, hi = np.zeros(len(AXES)), np.full(len(AXES), 20.0)
    for _ in range(steps):
        mid = (lo + hi) / 2
        for j, axis in enumerate(AXES):
            params["pose"][axis]["slow"] = float(mid[j])
        m = MotionModel(params)
        got = np.mean([m.head_angles(c["loudness"], s).std(0) for c in train for s in range(seeds)], 0)
        lo, hi = np.where(got < real, mid, lo), np.where(got < real, hi, mid)
    for j, axis in enumerate(AXES):
        params["pose"][axis]["slow"] = float((lo[j] + hi[j]) / 2)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python3 -m pdfgc.families.meshwarp.motion")
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fit motion.json on a prepared corpus (held-out people excluded)")
    f.add_argument("corpus")
    f.add_argument("-o", "--output", default=str(MOTION_FILE))
    args = ap.parse_args(argv)
    params = fit(load_speakers(args.corpus))
    Path(args.output).write_text(json.dumps(params, indent=1) + "\n")
    print(json.dumps(params, indent=1))


if __name__ == "__main__":
    main()
