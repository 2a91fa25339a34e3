"""Voice gates for the lips, judged on codes against the REAL mouth (issue 24: voice over music).

    python benchmarks/meshwarp_lips_gates.py collect [--data ../prepared_corpus] [--cache outputs/gates.npz]
    python benchmarks/meshwarp_lips_gates.py score [--cache outputs/gates.npz] [--out FILE.json]

``collect``: per prepared clip with sound (training and held-out people), its own sound segment (as a user's file)
through the shipped speech encoder and lips head: the head's raw codes (before any rule), its PCA features over
each frame's window (the Whisper-feature classifier's inputs), silero-vad's probability of every 32 ms window, the
frame RMS, and the real mouth code's lip gap (from the clip's closed mouth, scaled per person to the median
articulation as the head's targets are). Saved to one npz.

``score``: each gate (a per-frame "speaking" mask) through the shipped rules (``lips.speech_rules`` and
``smooth_keeping_closures``); per clip, the predicted lip gap against the real one: r at the best lag within +-6
frames; closure recall (real closures >= 2 frames during the gate's OR silero's speech, found within +-2 frames);
non-speech frames closed on silero's non-speech frames (with the 120 ms margin; today's definition) and on frames
whose REAL mouth is closed (below p2 + 15 % of the p2..p95 range: silero's labels are wrong on lip-synced tracks).
Closed prediction: gap below 15 % of the real clip's range. Thresholds are chosen on the training people only.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from meshwarp_lips import closure_recall  # noqa: E402  (one home: the benchmark's own rule)

MAX_LAG = 6
CLOSED = 0.15


def collect(data: Path, cache: Path) -> None:
    import torch

    from pdfgc.data import PreparedCorpus
    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp import speech as sp
    from pdfgc.families.meshwarp.lips_train import gap_direction, load_lip_clips, speaker_scales
    from pdfgc.families.meshwarp.params import load_params
    from pdfgc.media.audio_io import decode_speech

    torch.set_num_threads(1)
    params = load_params()
    head = L.from_params(params)
    s2m = L.SpeechToMouth(head)
    g = gap_direction(params)
    corpus = PreparedCorpus(data)
    raw = Path(corpus.manifest["settings"]["raw_root"])
    clips = load_lip_clips(data, None, params, log=lambda m: None)
    scales = speaker_scales([c for c in clips], g)
    med = float(np.median([scales[i] for i in {c.identity for c in clips if not c.heldout}]))
    out: dict[str, list] = {k: [] for k in ("key", "identity", "heldout", "raw", "feat", "silero", "rms", "real",
                                            "valid")}
    wavs: dict[str, np.ndarray] = {}
    t_enc = t_vad = sec = 0.0
    for c in clips:
        n = len(c.target)
        if c.source not in wavs:
            wavs[c.source] = decode_speech(raw / c.source)[0]
        wav = wavs[c.source][c.start * 640:(c.start + n) * 640]
        if len(wav) < 640 * 16:
            continue
        n = min(n, -(-len(wav) // 640))
        t0 = time.perf_counter()
        s = s2m.stream(n)
        y = np.zeros((n, head.bias.shape[0]), np.float32)
        z = np.zeros((n, sp.WINDOW * head.proj.shape[1]), np.float32)
        with torch.no_grad():
            for first, slab in s.push(wav) + s.finish():
                sl = torch.from_numpy(slab)
                k = min(sp.HOP_VIDEO, n - first)
                y[first:first + k] = head(sl).numpy()[:k]
                zz = head.project(sl)
                idx = torch.arange(k)[:, None] * sp.ENC_PER_VIDEO + torch.arange(sp.WINDOW)[None]
                z[first:first + k] = zz[idx].flatten(1).numpy()
        t_enc += time.perf_counter() - t0
        t0 = time.perf_counter()
        probs = silero_probs(wav)
        t_vad += time.perf_counter() - t0
        sec += len(wav) / 16000
        pad = np.zeros(n * 640, np.float32)
        pad[:min(len(wav), n * 640)] = wav[:n * 640]
        rms = np.sqrt((pad.reshape(n, 640).astype(np.float64) ** 2).mean(1))
        real = (c.target[:n] @ g) * med / scales[c.identity]
        for k, v in (("key", c.key), ("identity", c.identity), ("heldout", c.heldout), ("raw", y), ("feat", z),
                     ("silero", probs), ("rms", rms), ("real", real), ("valid", c.valid[:n])):
            out[k].append(v)
        print(f"{c.key[:60]:60s} {n:4d} frames heldout={c.heldout}", flush=True)
    print(f"{len(out['key'])} clips, {sec / 60:.1f} min of audio; encoder {t_enc:.0f} s, silero {t_vad:.0f} s")
    np.savez_compressed(cache, key=np.array(out["key"]), identity=np.array(out["identity"]),
                        heldout=np.array(out["heldout"]), lengths=np.array([len(r) for r in out["raw"]]),
                        raw=np.concatenate(out["raw"]), feat=np.concatenate(out["feat"]).astype(np.float16),
                        silero_lengths=np.array([len(p) for p in out["silero"]]),
                        silero=np.concatenate(out["silero"]), rms=np.concatenate(out["rms"]),
                        real=np.concatenate(out["real"]), valid=np.concatenate(out["valid"]),
                        gap_direction=g, gap_rms=float(head.gap_rms))


def silero_probs(wav: np.ndarray) -> np.ndarray:
    """silero-vad's speech probability of every 512-sample window (the shipped model and call)."""
    import torch

    from pdfgc.families.meshwarp import lips as L

    model = L._silero()
    model.reset_states()
    n = 512
    w = np.asarray(wav, np.float32)
    x = torch.from_numpy(np.concatenate([w, np.zeros((-len(w)) % n, np.float32)]))
    with torch.no_grad(), torch.jit.optimized_execution(False):
        return np.array([float(model(x[i:i + n][None], 16000)) for i in range(0, len(x), n)], np.float32)


# ---------------------------------------------------------------------------------------------- scoring


def frames_of_windows(flags: np.ndarray, n: int) -> np.ndarray:
    """Per-window flags -> per-frame (any of the frame's windows), as ``lips.voice_flags``."""
    out = np.zeros(n, bool)
    for i in np.flatnonzero(flags):
        a, b = (512 * i) // 640, (512 * (i + 1) - 1) // 640
        out[max(a, 0):min(b + 1, n)] = True
    return out


def hang(v: np.ndarray, k: int = 3) -> np.ndarray:
    return np.convolve(v.astype(float), np.ones(2 * k + 1), mode="same") > 0 if k and v.any() else v.astype(bool)


def best_r(pred: np.ndarray, real: np.ndarray, valid: np.ndarray) -> tuple[int, float]:
    best = (0, -2.0)
    n = len(real)
    for lag in range(-MAX_LAG, MAX_LAG + 1):
        a = np.arange(n)
        b = a + lag
        ok = (b >= 0) & (b < n)
        a, b = a[ok], b[ok]
        ok = valid[b]
        p, r = pred[a[ok]], real[b[ok]]
        if len(p) < 8 or p.std() < 1e-9 or r.std() < 1e-9:
            rr = 0.0
        else:
            rr = float(np.corrcoef(p, r)[0, 1])
        if rr > best[1]:
            best = (lag, rr)
    return best


QUIET_RMS = 0.003   # frame RMS below this (about -50 dB of full scale): near silence, the mouth should shut


def score_clip(pred: np.ndarray, real: np.ndarray, valid: np.ndarray, silero_speech: np.ndarray,
               gate: np.ndarray, rms: np.ndarray) -> dict:
    lag, r = best_r(pred, real, valid)
    n = len(real)
    al = np.full(n, np.nan)   # the real gap shifted onto the prediction's frames
    if lag >= 0:
        al[:n - lag] = np.where(valid[lag:], real[lag:], np.nan)
    else:
        al[-lag:] = np.where(valid[:lag], real[:lag], np.nan)
    fin = np.isfinite(al)
    lo, hi = np.nanpercentile(al, 2), np.nanpercentile(al, 95)
    band = CLOSED * max(hi - lo, 1e-9)
    rc = fin & (al < lo + band)
    pc = pred < band
    found, total = closure_recall(rc, pc, silero_speech | gate)
    amp = float(pred[fin].std() / max(al[fin].std(), 1e-9)) if fin.sum() > 2 else float("nan")
    return {"r": r, "lag": lag, "amplitude": amp, "closures": total, "found": found,
            "sil_q": int((~silero_speech).sum()), "sil_q_closed": int(pc[~silero_speech].sum()),
            "real_q": int(rc.sum()), "real_q_closed": int(pc[rc].sum()), "open_frames": int(gate.sum()),
            "quiet": int((rms < QUIET_RMS).sum()), "quiet_closed": int(pc[rms < QUIET_RMS].sum())}


def run_gate(raw: np.ndarray, gate: np.ndarray, g: np.ndarray, gap_rms: float) -> np.ndarray:
    import torch

    from pdfgc.families.meshwarp import lips as L

    y = L.speech_rules(raw, gate, g, gap_rms)
    return L.smooth_keeping_closures(torch.from_numpy(y)).numpy() @ g


def load(cache: Path) -> tuple[list[dict], np.ndarray, float]:
    d = np.load(cache)
    clips = []
    o = so = 0
    for i, key in enumerate(d["key"]):
        n, m = int(d["lengths"][i]), int(d["silero_lengths"][i])
        clips.append({"key": str(key), "identity": str(d["identity"][i]), "heldout": bool(d["heldout"][i]),
                      "raw": d["raw"][o:o + n], "feat": d["feat"][o:o + n].astype(np.float32),
                      "silero": d["silero"][so:so + m], "rms": d["rms"][o:o + n], "real": d["real"][o:o + n],
                      "valid": d["valid"][o:o + n]})
        o += n
        so += m
    return clips, d["gap_direction"], float(d["gap_rms"])


def summarise(rows: list[dict]) -> dict:
    r = np.array([x["r"] for x in rows])
    tot = sum(x["closures"] for x in rows)
    sq, rq = sum(x["sil_q"] for x in rows), sum(x["real_q"] for x in rows)
    out = {"clips": len(rows), "r_median": round(float(np.median(r)), 3), "r_mean": round(float(r.mean()), 3),
           "below_0.4": int((r < 0.4).sum()),
           "amplitude_median": round(float(np.nanmedian([x["amplitude"] for x in rows])), 3),
           "closure_recall": round(sum(x["found"] for x in rows) / max(tot, 1), 3), "closures": tot,
           "silero_nonspeech_closed": round(sum(x["sil_q_closed"] for x in rows) / max(sq, 1), 3),
           "real_closed_closed": round(sum(x["real_q_closed"] for x in rows) / max(rq, 1), 3),
           "quiet_closed": round(sum(x["quiet_closed"] for x in rows) / max(sum(x["quiet"] for x in rows), 1), 3)}
    if rows and "loudness_r" in rows[0]:
        out["beats_loudness"] = round(float(np.mean([x["r"] > x["loudness_r"] for x in rows])), 3)
    return out


def out_of_fold(tr: list[dict], g: np.ndarray, fit_report: Path = ROOT / "benchmarks/results/meshwarp/lips_fit.json"):
    """Replace the training clips' raw codes by out-of-fold ones (the head's own fit is in-sample there): the
    lip gap by a ridge on the same features, 5 folds by person as ``lips_train``, its penalty, per-clip lags,
    dropped clips and gain from the shipped fit's report; the codes carry that gap along the gap direction (the
    rules and the scores read only the gap)."""
    from pdfgc.families.meshwarp.lips_train import ridge

    rep = json.loads(fit_report.read_text())
    lag = {p["clip"]: int(p["lag"]) for p in rep["per_clip_oof"]}
    people = sorted({c["identity"] for c in tr})
    order = {p: i % 5 for i, p in enumerate(np.random.default_rng(0).permutation(people))}
    for f in range(5):
        xs, ys = [], []
        for c in tr:
            if order[c["identity"]] == f or c["key"] in rep.get("dropped", []):
                continue
            k, y, v = lag.get(c["key"], 0), c["real"], c["valid"]
            yy, vv = np.zeros_like(y), np.zeros_like(v)
            if k >= 0:
                yy[:len(y) - k], vv[:len(y) - k] = y[k:], v[k:]
            else:
                yy[-k:], vv[-k:] = y[:k], v[:k]
            xs.append(c["feat"][vv]), ys.append(yy[vv, None])
        x, y = np.concatenate(xs).astype(np.float64), np.concatenate(ys)
        w, b = ridge(x, y, float(rep["lambda"]))
        for c in tr:
            if order[c["identity"]] == f:
                gap = (c["feat"] @ w)[:, 0] * float(rep["gain"]) + b[0]
                c["raw"] = (gap[:, None] * g[None] / float(g @ g)).astype(np.float32)


def fit_vad(clips: list[dict]) -> tuple[np.ndarray, float]:
    """The Whisper-feature voice classifier on these clips (``lips_train.fit_voice``, the training command's own fit:
    silero's raw decision as labels, L2 logistic regression on the standardised window features), folded to act on
    the raw features: logit = feat @ w + b."""
    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp.lips_train import fit_voice

    return fit_voice([c["feat"] for c in clips],
                     [frames_of_windows(c["silero"] >= L.VAD_THRESHOLD, len(c["feat"])) for c in clips])


def score(cache: Path, out: Path | None, oof: bool = True) -> None:
    from pdfgc.families.meshwarp import lips as L

    clips, g, gap_rms = load(cache)
    tr = [c for c in clips if not c["heldout"]]
    # the Whisper-feature classifier (as benchmarks/meshwarp_vad_linear.py): silero's raw decision as labels,
    # training people only
    for c in clips:
        c["sil_frames"] = frames_of_windows(c["silero"] >= L.VAD_THRESHOLD, len(c["raw"]))
        c["sil_speech"] = hang(c["sil_frames"], L.VAD_HANGOVER)
    w, b = fit_vad(tr)
    for c in clips:
        c["lin"] = 1 / (1 + np.exp(-(c["feat"] @ w + b)))
    if oof:
        out_of_fold(tr, g)
    gates = {
        "none": lambda c: np.ones(len(c["raw"]), bool),
        "shipped": lambda c: c["sil_speech"],
    }
    for t in (0.05, 0.1, 0.2, 0.3):
        gates[f"silero>={t}"] = lambda c, t=t: hang(frames_of_windows(c["silero"] >= t, len(c["raw"])))
    for t in (0.5, 0.65, 0.8, 0.9):
        gates[f"silero|lin>={t}"] = lambda c, t=t: c["sil_speech"] | hang(c["lin"] >= t)
    gates["lin>=0.8"] = lambda c: hang(c["lin"] >= 0.8)
    for ts in (0.03, 0.05, 0.1, 0.2):
        for tl in (0.5, 0.65, 0.8):
            gates[f"silero|(silero>={ts}&lin>={tl})"] = lambda c, ts=ts, tl=tl: c["sil_speech"] | hang(
                frames_of_windows(c["silero"] >= ts, len(c["raw"])) & (c["lin"] >= tl))
    for k in (2, 4):
        for ts in (0.05, 0.1, 0.2):
            gates[f"silero|smooth{k}(silero)>={ts}"] = lambda c, ts=ts, k=k: c["sil_speech"] | hang(frames_of_windows(
                np.convolve(c["silero"], np.ones(2 * k + 1) / (2 * k + 1), mode="same") >= ts, len(c["raw"])))
    res = {}
    for name, fn in gates.items():
        rows = []
        for c in clips:
            gate = fn(c)
            pred = run_gate(c["raw"], gate, g, gap_rms)
            row = score_clip(pred, c["real"], c["valid"], c["sil_speech"], gate, c["rms"])
            row.update(key=c["key"], heldout=c["heldout"])
            rows.append(row)
        res[name] = {"train": summarise([x for x in rows if not x["heldout"]]),
                     "heldout": summarise([x for x in rows if x["heldout"]]), "per_clip": rows}
        t = res[name]["train"]
        print(f"{name:30s} train r {t['r_median']:.3f} mean {t['r_mean']:.3f} <0.4 {t['below_0.4']:2d} amp "
              f"{t['amplitude_median']:.2f} clos {t['closure_recall']:.3f} silq {t['silero_nonspeech_closed']:.3f} "
              f"realq {t['real_closed_closed']:.3f} quiet {t['quiet_closed']:.3f}", flush=True)
    if out:
        out.write_text(json.dumps(res, indent=1, default=float) + "\n")


def write_vad(cache: Path, weights: Path) -> None:
    """The classifier fitted on the training people's clips into ``weights`` (``audio.vad.weight`` / ``.bias`` and
    the ``audio`` config's ``vad`` record): the file's other tensors and metadata are copied as stored (checked
    byte for byte, dtypes included)."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp.params import load_params

    clips, _, _ = load(cache)
    tr = [c for c in clips if not c["heldout"]]
    w, b = fit_vad(tr)
    head = L.from_params(load_params(weights))
    if len(w) != head.window.frames * head.proj.shape[1]:
        raise SystemExit("the cache was collected with another head")
    prefix = "audio." + L.VAD
    with safe_open(str(weights), "pt") as f:
        meta = dict(f.metadata())
        before = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(prefix)}
    config = json.loads(meta["config"])
    config["audio"] = dict(config.get("audio") or {}) | {"vad": {
        "labels": "silero-vad >= 0.5 per frame", "clips": len(tr), "frames": int(sum(len(c["feat"]) for c in tr)),
        "people": len({c["identity"] for c in tr}), "fit": "python benchmarks/meshwarp_lips_gates.py fit-vad"}}
    meta["config"] = json.dumps(config)
    tensors = dict(before) | {prefix + "weight": torch.from_numpy(w), prefix + "bias": torch.tensor(b)}
    tmp = weights.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(weights)
    with safe_open(str(weights), "pt") as f:
        after = {k: f.get_tensor(k) for k in f.keys() if not k.startswith(prefix)}
    same = before.keys() == after.keys() and all(before[k].dtype == after[k].dtype and torch.equal(before[k], after[k])
                                                  for k in before)
    print(f"{weights}: {prefix}weight ({len(w)}) and {prefix}bias written from {len(tr)} training clips; "
          f"every other tensor identical: {same}")
    if not same:
        raise SystemExit(1)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["collect", "score", "fit-vad"])
    ap.add_argument("--weights", type=Path, default=ROOT / "pdfgc/weights/meshwarp.safetensors")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "prepared_corpus")
    ap.add_argument("--cache", type=Path, default=ROOT / "outputs/gates.npz")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    if a.what == "collect":
        collect(a.data, a.cache)
    elif a.what == "fit-vad":
        write_vad(a.cache, a.weights)
    else:
        score(a.cache, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
