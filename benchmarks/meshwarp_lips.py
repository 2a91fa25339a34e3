"""Lips from speech on held-out people: the default model's RENDERED mouth against the real speaker's.

    python benchmarks/meshwarp_lips.py [--data /work/prepared_corpus] [--weights FILE] [--out DIR]

Per held-out clip with sound (people of ``heldout_identities.txt``, never fitted): the portrait is the clip's own
neutral frame (its 224 crop), the audio the clip's own sound (its segment, fed as a user's file is), through the
public pipeline (``lips="audio"``, everything else still); mediapipe's face mesh re-measures the rendered frames.
Figures per clip:
- ``r``: Pearson r of the rendered inner-lip opening (``signals.mouth_opening``) with the real one, at the best lag
  within +-6 frames (``lag``: frames the real mouth trails the render by);
- ``amplitude``: std of the rendered opening / std of the real one (same frames);
- ``closure_recall``: real closures (>= 2 frames below p2 + 15 % of the clip's opening range p2 .. p95) during
  speech found in the render (below the portrait's own opening + 15 % of that range) within +-2 frames, after
  the lag;
- ``nonspeech_closed``: share of the frames silero-vad calls non-speech (with the rules' 120 ms margin) whose
  rendered mouth is closed (as above; ``nonspeech_frames`` of them): silero's labels (at its default 0.5, whatever
  the rules use), which are wrong on lip-synced / sung tracks, so also
- ``realclosed_closed``: share of the frames whose REAL mouth is closed (as above, after the lag;
  ``realclosed_frames`` of them) whose rendered mouth is closed;
- ``loudness_r``: the loudness baseline, r of the real opening with the speech RMS envelope (best lag +-6);
- ``oracle_r`` / ``oracle_amplitude``: the clip's own measured mouth codes through the same warp, re-measured.
- ``language``: Whisper's language detection on the clip (CTranslate2, the same packaged weights).
Writes ``lips_benchmark.json`` and ``lips_benchmark.png`` (per-clip curves) under ``--out``.

``--live``: the same clips through ``pdfgc.live.LiveSession`` (the live lips head and rules; the speech pushed
whole, then ``finish``: a session's frames do not depend on how the speech is cut), no head motion and no blinks
as offline; writes ``lips_benchmark_live.json`` / ``.png`` (no oracle: it does not depend on the head).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_LAG = 6
CLOSED = 0.15


def shift(a: np.ndarray, k: int) -> np.ndarray:
    """b[t] = a[t + k] (NaN past the ends)."""
    out = np.full_like(a, np.nan, dtype=np.float64)
    if k >= 0:
        out[:len(a) - k] = a[k:]
    else:
        out[-k:] = a[:k]
    return out


def closed_masks(real: np.ndarray, rend: np.ndarray, own: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed frames: the real mouth below p2 + 15 % of its p2 .. p95 range; the render below the portrait's own
    (closed) opening + 15 % of that same real range."""
    lo, hi = np.nanpercentile(real, 2), np.nanpercentile(real, 95)
    band = CLOSED * max(hi - lo, 1e-9)
    return real < lo + band, rend < own + band


def closure_recall(rc: np.ndarray, pc: np.ndarray, speaking: np.ndarray) -> tuple[int, int]:
    """(found, total) real closures (runs >= 2 frames, during speech) with a rendered closure within +-2 frames."""
    found = total = 0
    t, n = 0, len(rc)
    while t < n:
        if rc[t] and speaking[t]:
            e = t
            while e < n and rc[e]:
                e += 1
            if e - t >= 2:
                total += 1
                found += bool(pc[max(0, t - 2):min(n, e + 2)].any())
            t = e
        else:
            t += 1
    return found, total


def rms_envelope(wav: np.ndarray, n: int) -> np.ndarray:
    w = np.zeros(n * 640, np.float32)
    w[:min(len(wav), n * 640)] = wav[:n * 640]
    return np.sqrt(np.mean(w.reshape(n, 640).astype(np.float64) ** 2, 1))


def opening_of_frames(frames: np.ndarray) -> np.ndarray:
    from pdfgc.evaluation import signals as S
    from pdfgc.media.mesh import FaceMeshDetector

    meshes = np.full((len(frames), 478, 3), np.nan)
    with FaceMeshDetector(static_image_mode=False, max_num_faces=1) as det:
        for i, f in enumerate(frames):
            faces = det.detect(np.ascontiguousarray(f))
            if faces:
                meshes[i] = faces[0]
    return S.mouth_opening(meshes), meshes


def language_of(model, wav: np.ndarray) -> str:
    import ctranslate2
    import torch

    from pdfgc.families.meshwarp import speech as sp

    x = np.zeros(480000, np.float32)
    x[:min(len(wav), 480000)] = wav[:480000]
    mel = sp.LogMel()(torch.from_numpy(x)[None]).numpy()
    lang, p = model.detect_language(ctranslate2.StorageView.from_array(mel))[0][0]
    return lang.strip("<|>")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/work/prepared_corpus"))
    ap.add_argument("--weights", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/meshwarp")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--strip-only", action="store_true", help="only the strip, from an earlier run's json")
    ap.add_argument("--speed", action="store_true", help="only the speech encoder's cost per minute of audio")
    ap.add_argument("--live", action="store_true", help="the live session's lips (live head and rules)")
    a = ap.parse_args()
    if a.speed:
        return speed()
    import torch

    from pdfgc.data import PreparedCorpus
    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp import codes as C
    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp.lips_train import load_lip_clips
    from pdfgc.media.audio_io import decode_speech
    from pdfgc.pipeline import TalkingHeadPipeline

    torch.set_num_threads(1)
    pipe = TalkingHeadPipeline.from_pretrained(a.weights) if a.weights else TalkingHeadPipeline.from_default()
    fam = pipe.family
    params = fam.params
    corpus = PreparedCorpus(a.data)
    raw_root = Path(corpus.manifest.get("settings", {}).get("raw_root", ROOT.parent / "shared/data/corpus"))
    clips = [c for c in load_lip_clips(a.data, None, params, log=lambda s: None) if c.heldout]
    if a.limit:
        clips = clips[:a.limit]
    ct2 = None
    try:
        import ctranslate2

        from pdfgc.families.meshwarp import speech as sp
        d = sp._package_dir(sp.PACKAGES[0])
        ct2 = ctranslate2.models.Whisper("whisper-base", device="cpu", compute_type="float32", intra_threads=1,
                                         files={"model.bin": sp.model_bytes(), "config.json": (d / "config.json")
                                                .read_bytes(), "vocabulary.txt": (d / "vocabulary.txt").read_bytes()})
    except ImportError:
        pass
    per, curves = [], []
    if a.strip_only:
        per = json.loads((a.out / "lips_benchmark.json").read_text())["per_clip"]
        clips = []
    for c in clips:
        t = len(c.target)
        wav_all = decode_speech(raw_root / c.source)[0]
        wav = wav_all[c.start * 640:(c.start + t) * 640]
        if len(wav) < 640 * 16:
            continue
        image = corpus.load_frames(c.key, [c.ref])[0]
        portrait = pipe.load_portrait(image, align="never")
        if a.live:
            frames = live_frames(pipe, portrait, wav)[:t]
            n = len(frames)
        else:
            plan = pipe.plan(portrait, wav, lips="audio", max_frames=t, progress=False)
            n = plan.num_frames
            frames = render_frames(pipe, plan)
        real = S.mouth_opening(c.mesh[:n]).astype(np.float64)
        real[~c.valid[:n]] = np.nan
        rend = opening_of_frames(frames)[0]
        if a.live:
            orend = np.full(n, np.nan)
        else:   # the oracle: the clip's own mouth codes (relative to the portrait frame) through the same warp
            d = C.retarget(C.measure(c.mesh[:n], params, reference=c.ref), c.ref)
            oplan = dataclasses.replace(plan, mouth=torch.from_numpy(np.nan_to_num(d.mouth).astype(np.float32)))
            orend = opening_of_frames(render_frames(pipe, oplan))[0]
        speaking = L.voice_activity(wav, n)   # silero alone (today's definition of non-speech)
        lag, r = S.best_offset(rend, real, MAX_LAG)
        olag, orr = S.best_offset(orend, real, MAX_LAG) if not a.live else (0, None)
        loud_lag, loud_r = S.best_offset(rms_envelope(wav, n), real, MAX_LAG)
        aligned = shift(real, lag)
        ok = np.isfinite(aligned) & np.isfinite(rend)
        amp = float(np.std(rend[ok]) / max(np.std(aligned[ok]), 1e-9))
        ook = np.isfinite(real) & np.isfinite(orend)
        own = float(opening_of_frames(image[None])[0][0])   # the portrait's own (closed, neutral) mouth
        rc, pc = closed_masks(np.where(np.isfinite(aligned), aligned, np.nanmedian(real)), rend, own)
        found, total = closure_recall(rc, pc, speaking)
        quiet = ~speaking
        closed_share = float(pc[quiet].mean()) if quiet.any() else float("nan")
        rc_ok = rc & np.isfinite(aligned)
        lang = language_of(ct2, wav) if ct2 is not None else "?"
        row = {"clip": c.key, "identity": c.identity, "language": lang, "frames": int(n),
               "r": round(float(r), 4), "lag": int(lag), "amplitude": round(amp, 3),
               "closures": int(total), "closures_found": int(found),
               "closure_recall": round(found / total, 3) if total else None,
               "nonspeech_frames": int(quiet.sum()),
               "nonspeech_closed": round(closed_share, 3) if quiet.any() else None,
               "realclosed_frames": int(rc_ok.sum()),
               "realclosed_closed": round(float(pc[rc_ok].mean()), 3) if rc_ok.any() else None,
               "loudness_r": round(float(loud_r), 4), "loudness_lag": int(loud_lag),
               "oracle_r": round(float(orr), 4) if orr is not None else None,
               "oracle_amplitude": round(float(np.std(orend[ook]) / max(np.std(real[ook]), 1e-9)), 3)
               if ook.any() else None}
        per.append(row)
        curves.append((c.key, real, rend, orend, lag))
        print(json.dumps(row), flush=True)
    if not a.strip_only:
        summary = summarise(per)
        a.out.mkdir(parents=True, exist_ok=True)
        record = {"command": " ".join(["python"] + sys.argv), "date": time.strftime("%Y-%m-%d"),
                  "summary": summary, "per_clip": per}
        name = "lips_benchmark_live" if a.live else "lips_benchmark"
        (a.out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
        print(json.dumps(summary, indent=1))
        plot(curves, per, a.out / f"{name}.png")
        if a.live:
            return 0
        clips_all = clips
    else:
        clips_all = [c for c in load_lip_clips(a.data, None, params, log=lambda s: None) if c.heldout]
    # the README's lips strip: the held-out clip nearest the median r (2 s or more), real mouth above the render's
    long = [p for p in per if p["frames"] >= 60]
    if long:
        med = float(np.median([p["r"] for p in per]))
        pick = min(long, key=lambda p: abs(p["r"] - med))
        c = next(x for x in clips_all if x.key == pick["clip"])
        n = pick["frames"]
        wav = decode_speech(raw_root / c.source)[0][c.start * 640:(c.start + n) * 640]
        plan = pipe.plan(pipe.load_portrait(corpus.load_frames(c.key, [c.ref])[0], align="never"), wav,
                         lips="audio", max_frames=n, progress=False)
        rend = render_frames(pipe, plan)
        _, rmesh = opening_of_frames(rend)
        real = corpus.load_frames(c.key, list(range(n)))
        # the 20 frames where the real mouth moves most (closures and openings both in view)
        o = np.nan_to_num(S.mouth_opening(c.mesh[:n]))
        k = 20
        s0 = int(np.argmax([o[i:i + k].std() for i in range(n - k + 1)]))
        lips_strip(a.out / "strip_lips_heldout.png", real, c.mesh, rend, np.nan_to_num(rmesh), wav, s0, k,
                   f"{pick['identity']} ({pick['language']}), frames {s0}-{s0 + k - 1}, 40 ms apart; r "
                   f"{pick['r']:.2f} over the clip (median clip)")
    return 0


def mouth_crop(frame: np.ndarray, mesh: np.ndarray, size: int = 112) -> np.ndarray:
    """A square close-up around the lips (mesh points 61/291 corners, 13/14 inner lips), resized to ``size``."""
    import cv2

    c = mesh[[61, 291, 13, 14], :2].mean(0)
    half = 1.1 * np.linalg.norm(mesh[61, :2] - mesh[291, :2])
    x0, y0 = int(max(c[0] - half, 0)), int(max(c[1] - half, 0))
    x1, y1 = int(min(c[0] + half, frame.shape[1])), int(min(c[1] + half, frame.shape[0]))
    return cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1]), (size, size), interpolation=cv2.INTER_AREA)


def lips_strip(path: Path, real_frames, real_mesh, rend_frames, rend_mesh, wav, start: int, count: int,
               title: str) -> None:
    """Rows: the real speaker's mouth, the render's mouth (frames start .. start+count), the waveform under them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = list(range(start, start + count))
    top = np.concatenate([mouth_crop(real_frames[i], real_mesh[i]) for i in idx], 1)
    mid = np.concatenate([mouth_crop(rend_frames[i], rend_mesh[i]) for i in idx], 1)
    fig = plt.figure(figsize=(count * 0.9, 3.1))
    ax = fig.add_axes([0, 0.42, 1, 0.58])
    ax.imshow(np.concatenate([top, mid], 0))
    ax.set_axis_off()
    ax.text(3, 12, "real speaker", color="yellow", fontsize=8)
    ax.text(3, 124, "render from the speech", color="yellow", fontsize=8)
    w = wav[start * 640:(start + count) * 640]
    ax2 = fig.add_axes([0, 0.02, 1, 0.38])
    ax2.plot(np.arange(len(w)) / 640, w, "k", lw=0.4)
    ax2.set_xlim(0, count)
    ax2.set_axis_off()
    ax2.set_title(title, fontsize=8, y=0.85)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


def speed() -> int:
    """Encoder + head and silero-vad per minute of audio (a minute of noise-like signal; the cost does not depend on
    the content), 1 and 2 threads: wall seconds (best of 3) and CPU seconds of the process; the weights' read + hash
    + build once."""
    import os
    import time

    import torch

    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp import speech as sp
    from pdfgc.families.meshwarp.params import load_params

    wav = (np.random.default_rng(0).standard_normal(16000 * 60) * 0.05).astype(np.float32)
    c0, t0 = time.process_time(), time.time()
    enc = sp.load_encoder(max(L.from_params(load_params()).layers))
    print(f"weights read + SHA-256 + build: {time.time() - t0:.2f} s wall, {time.process_time() - c0:.2f} s CPU")
    s2m = L.SpeechToMouth(L.from_params(load_params()), enc)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        s2m.raw_codes(wav[:32000], 50)
        walls, cpus = [], []
        for _ in range(3):
            c0, t0 = time.process_time(), time.time()
            s2m.raw_codes(wav, 1500)
            walls.append(time.time() - t0), cpus.append(time.process_time() - c0)
        L.voice_activity(wav[:16000], 25)
        c0, t0 = time.process_time(), time.time()
        L.voice_activity(wav, 1500)
        print(f"{threads} thread(s): encoder + head per minute of audio {min(walls):.2f} s wall (CPU "
              f"{cpus[int(np.argmin(walls))]:.2f} s); silero-vad {time.time() - t0:.2f} s wall "
              f"({time.process_time() - c0:.2f} s CPU); load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} "
              "cores")
    return 0


def live_frames(pipe, portrait, wav: np.ndarray) -> np.ndarray:
    """The frames of a live session (default: live head and rules) with no head motion and no blinks."""
    from pdfgc.live import LiveSession
    from pdfgc.live.session import LiveControls

    with LiveSession(portrait, LiveControls(pose_auto=False, blink_auto=False), pipeline=pipe) as s:
        frames = s.push(wav) + s.finish()
    return np.stack([f.image for f in frames])


def render_frames(pipe, plan) -> np.ndarray:
    return np.concatenate([im.permute(0, 2, 3, 1).numpy() for _, im in pipe.render(plan)])[:plan.num_frames]


def summarise(per: list[dict]) -> dict:
    if not per:
        return {"clips": 0}
    col = lambda k: np.array([p[k] for p in per if p[k] is not None], np.float64)
    r, loud = col("r"), col("loudness_r")
    found, total = sum(p["closures_found"] for p in per), sum(p["closures"] for p in per)
    q = sum(p["nonspeech_frames"] for p in per)
    qc = sum(p["nonspeech_closed"] * p["nonspeech_frames"] for p in per if p["nonspeech_closed"] is not None)
    langs = {}
    for p in per:
        langs.setdefault(p["language"], []).append(p["r"])
    return {"clips": len(per), "people": len({p["identity"] for p in per}), "frames": sum(p["frames"] for p in per),
            "r_median": round(float(np.median(r)), 3), "r_mean": round(float(np.mean(r)), 3),
            "r_min": round(float(r.min()), 3), "clips_below_0.4": int((r < 0.4).sum()),
            "amplitude_median": round(float(np.median(col("amplitude"))), 3),
            "closure_recall": round(found / total, 3) if total else None, "closures": total,
            "nonspeech_closed": round(qc / q, 3) if q else None, "nonspeech_frames": q,
            "realclosed_closed": round(sum(p["realclosed_closed"] * p["realclosed_frames"] for p in per
                                           if p.get("realclosed_closed") is not None)
                                       / max(sum(p.get("realclosed_frames", 0) for p in per), 1), 3),
            "beats_loudness": round(float(np.mean(r > loud)), 3),
            "loudness_r_median": round(float(np.median(loud)), 3),
            "oracle_r_median": round(float(np.median(col("oracle_r"))), 3) if col("oracle_r").size else None,
            "oracle_amplitude_median": round(float(np.median(col("oracle_amplitude"))), 3)
            if col("oracle_amplitude").size else None,
            "per_language": {k: {"clips": len(v), "r_median": round(float(np.median(v)), 3)}
                             for k, v in sorted(langs.items())}}


def plot(curves, per, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(curves)
    fig, axes = plt.subplots(n, 1, figsize=(11, 1.7 * n), squeeze=False)
    for ax, (key, real, rend, orend, lag), p in zip(axes[:, 0], curves, per):
        t = np.arange(len(real)) / 25
        ax.plot(t, real, "k", lw=1.2, label="real speaker")
        ax.plot(t + lag / 25, rend, "C3", lw=1, label=f"render from speech (shifted {lag:+d} frames)")
        ax.plot(t, orend, "C0", lw=0.7, alpha=0.6, label="oracle: own mouth codes through the warp")
        ax.set_title(f"{p['identity'][:40]} ({p['language']}): r {p['r']:.2f}, amplitude {p['amplitude']:.2f}, "
                     f"loudness r {p['loudness_r']:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")

if __name__ == "__main__":
    sys.exit(main())
