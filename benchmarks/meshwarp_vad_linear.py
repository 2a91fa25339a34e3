"""Could a linear classifier on the lips head's own Whisper features replace silero-vad (issue 24's follow-up)?

    python benchmarks/meshwarp_vad_linear.py [--cache ../lips_cache] [--data ../prepared_corpus]

Labels: silero-vad's per-frame speech decision (``lips.voice_activity`` without its hangover) on each prepared clip
with sound. Features: the shipped head's PCA projection (``LipsHead.project``, 64 values per encoder frame, which
inference computes anyway) over the frame's window of 10 encoder frames. A logistic regression (L2, Newton steps)
fitted on the training people's clips, scored on the held-out people's (``heldout_identities.txt``): agreement
with silero after the same 3-frame hangover on both sides, Cohen's kappa, and the rule's effect (frames whose
mouth would be closed by one and not the other). Baseline beside it: a loudness threshold (frame RMS, the
threshold that best agrees on the training clips). Prints JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pdfgc.families.meshwarp.lips_train import logistic  # noqa: E402  (one home: the training code's)


def hang(v: np.ndarray, k: int) -> np.ndarray:
    return np.convolve(v.astype(float), np.ones(2 * k + 1), mode="same") > 0 if k else v


def scores(pred: np.ndarray, real: np.ndarray) -> dict:
    agree = float((pred == real).mean())
    pe = pred.mean() * real.mean() + (1 - pred.mean()) * (1 - real.mean())
    return {"agreement": round(agree, 4), "kappa": round((agree - pe) / max(1 - pe, 1e-9), 4),
            "speech_missed": round(float((real & ~pred).sum() / max(real.sum(), 1)), 4),
            "silence_missed": round(float((~real & pred).sum() / max((~real).sum(), 1)), 4)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=REPO.parent / "lips_cache")
    ap.add_argument("--data", type=Path, default=REPO.parent / "prepared_corpus")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    import torch

    from pdfgc.data import PreparedCorpus
    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp import lips_train as LT
    from pdfgc.families.meshwarp import speech as sp
    from pdfgc.families.meshwarp.params import load_params
    from pdfgc.media.audio_io import decode_speech

    torch.set_num_threads(1)
    params = load_params()
    head = L.from_params(params)
    raw = Path(PreparedCorpus(a.data).manifest["settings"]["raw_root"])
    clips = LT.load_lip_clips(a.data, a.cache, params, log=lambda m: None)
    wavs, rows, t_vad, sec = {}, [], 0.0, 0.0
    for c in clips:
        if c.source not in wavs:
            wavs[c.source] = decode_speech(raw / c.source)[0]
        n = len(c.target)
        wav = wavs[c.source][c.start * sp.VIDEO_SAMPLES:(c.start + n) * sp.VIDEO_SAMPLES]
        t0 = time.perf_counter()
        L.VAD_HANGOVER, keep = 0, L.VAD_HANGOVER
        try:
            label = L.voice_activity(wav, n)
        finally:
            L.VAD_HANGOVER = keep
        t_vad += time.perf_counter() - t0
        sec += len(wav) / sp.SAMPLE_RATE
        with torch.no_grad():
            z = head.project(torch.from_numpy(LT._slabs(a.cache, c.source, head.layers))).numpy()
        x = LT.clip_windows(z, c.start, n).reshape(n, -1)
        pad = np.zeros(n * sp.VIDEO_SAMPLES, np.float32)
        pad[:len(wav)] = wav
        rms = np.log(np.sqrt((pad.reshape(n, -1) ** 2).mean(1)) + 1e-5)
        rows.append((c, x, label, rms))
    tr = [r for r in rows if not r[0].heldout]
    te = [r for r in rows if r[0].heldout]
    xtr = np.concatenate([r[1] for r in tr]).astype(np.float64)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    ytr = np.concatenate([r[2] for r in tr]).astype(float)
    t0 = time.perf_counter()
    w = logistic((xtr - mu) / sd, ytr)
    fit_s = time.perf_counter() - t0
    rtr = np.concatenate([r[3] for r in tr])
    thr = max(np.quantile(rtr, np.linspace(0.02, 0.98, 49)), key=lambda t: ((rtr >= t) == (ytr > 0.5)).mean())
    def prob(r):
        return 1 / (1 + np.exp(-(np.c_[(r[1] - mu) / sd, np.ones(len(r[1]))] @ w)))

    # the decision threshold that best agrees (kappa, with the hangover) on the training clips
    real_tr = np.concatenate([hang(r[2], L.VAD_HANGOVER) for r in tr])
    cut = max(np.linspace(0.3, 0.95, 14), key=lambda t: scores(
        np.concatenate([hang(prob(r) >= t, L.VAD_HANGOVER) for r in tr]), real_tr)["kappa"])
    out = {"command": "python benchmarks/meshwarp_vad_linear.py", "date": time.strftime("%Y-%m-%d"),
           "train_clips": len(tr), "heldout_clips": len(te), "heldout_frames": int(sum(len(r[2]) for r in te)),
           "silero_speech_fraction_heldout": round(float(np.concatenate([r[2] for r in te]).mean()), 4),
           "silero_seconds_per_audio_minute": round(60 * t_vad / max(sec, 1e-9), 3), "fit_seconds": round(fit_s, 1)}
    for name, k in (("no_hangover", 0), ("hangover_3", L.VAD_HANGOVER)):
        real = np.concatenate([hang(r[2], k) for r in te])
        lin = np.concatenate([hang(prob(r) >= 0.5, k) for r in te])
        loud = np.concatenate([hang(r[3] >= thr, k) for r in te])
        tuned = np.concatenate([hang(prob(r) >= cut, k) for r in te])
        out[name] = {"linear_on_whisper": scores(lin, real),
                     f"linear_threshold_{cut:.2f}_from_training": scores(tuned, real),
                     "loudness_threshold": scores(loud, real),
                     "always_speech": scores(np.ones_like(real), real)}
    per = []
    for r in te:
        p = hang(prob(r) >= 0.5, L.VAD_HANGOVER)
        per.append({"clip": r[0].key, "frames": len(p), "agreement": round(float((p == hang(r[2], L.VAD_HANGOVER))
                                                                                  .mean()), 3)})
    out["heldout_per_clip_hangover_3"] = per
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
