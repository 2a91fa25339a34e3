"""Lips live vs offline on the same audio: the mouth-code correlation r (all frames and dims) between
``LiveSession`` (fed in 30 ms pieces) and the offline plan, per session kind (``live``: the default live head and
rules at their hop; ``offline:H``: the offline head and rules at hop H), on held-out speakers' voices
(heldout_identities.txt, clips with sound of 6-40 s from the corpus manifest, first ``--seconds`` of each), plus the
encoder's cost per chunk vs the chunk's length on one thread. Baseline beside it: r between the offline lips and the
same lips one frame late (what a one-frame error in timing would cost).

    PYTHONPATH=. python3 benchmarks/live_vs_offline.py                    # [--kinds live offline:8 offline:4]

It also writes mouth close-ups of the example speech, live vs the offline rules (``--strip``,
benchmarks/results/live/live_vs_offline_mouths.png).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = Path("/work/shared/data/corpus")


def heldout_clips(limit: int) -> list[Path]:
    held = {x.strip() for x in (ROOT / "pdfgc/families/meshwarp/heldout_identities.txt").read_text().splitlines()
            if x.strip() and not x.startswith("#")}
    rows = [r for r in csv.DictReader(open(CORPUS / "manifest.csv")) if r["has_audio"] == "True"
            and r["identity_guess"] in held and 6 < float(r["seconds"] or 0) < 40]
    return [CORPUS / r["local_path"] for r in rows[:limit]]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--kinds", nargs="+", default=["live", "offline:8"])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--strip", type=Path, default=ROOT / "benchmarks/results/live/live_vs_offline_mouths.png",
                    help="mouth close-ups, live vs offline rules (PNG)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from pdfgc.live import LiveSession
    from pdfgc.pipeline import TalkingHeadPipeline
    pipe = TalkingHeadPipeline.from_default(device="cpu", threads=1)
    portrait = pipe.load_portrait(ROOT / "pdfgc/ui/examples/anne.png")
    enc = pipe.family.model.lips.encoder
    from pdfgc.families.meshwarp import speech as sp
    chunk_ms = {}
    for seconds in (4.0, 2.0, 1.0):
        x = sp.LogMel()(torch.randn(1, int(seconds * 16000)) * 0.1)
        with torch.inference_mode():
            enc(x, [2, 3, 4])
            times = []
            for _ in range(7):
                t0 = time.perf_counter()
                enc(x, [2, 3, 4])
                times.append(time.perf_counter() - t0)
        chunk_ms[f"{seconds:g}s"] = round(1000 * float(np.median(times)), 1)
    import os
    print(f"encoder to block 4 per chunk, 1 thread (median of 7): {chunk_ms}, load average {os.getloadavg()[0]:.1f}")
    results = {"encoder_chunk_ms": chunk_ms, "load_avg_1min": round(os.getloadavg()[0], 2), "clips": []}
    for clip in heldout_clips(args.clips):
        wav = pipe.load_speech(clip).wav16k[:int(args.seconds * 16000)]
        off = pipe.plan(portrait, wav, progress=False).mouth.numpy()
        row = {"clip": clip.name, "frames": len(off),
               "r_offline_vs_1_frame_late": round(float(np.corrcoef(off[1:].ravel(), off[:-1].ravel())[0, 1]), 4)}
        for kind in args.kinds:
            rules, _, hop = kind.partition(":")
            s = LiveSession(portrait, pipeline=pipe, rules=rules, hop=int(hop) if hop else None)
            frames = []
            for i in range(0, len(wav), 480):
                frames += s.push(wav[i:i + 480])
            frames += s.finish()
            s.close()
            live = np.stack([f.mouth for f in frames])
            n = min(len(live), len(off))
            row[f"r_{kind}"] = round(float(np.corrcoef(live[:n].ravel(), off[:n].ravel())[0, 1]), 4)
        print(json.dumps(row))
        results["clips"].append(row)
    for kind in args.kinds:
        rs = [c[f"r_{kind}"] for c in results["clips"]]
        results[f"r_{kind}_mean"], results[f"r_{kind}_min"] = round(float(np.mean(rs)), 4), min(rs)
    results["r_1_frame_late_mean"] = round(float(np.mean([c["r_offline_vs_1_frame_late"] for c in
                                                          results["clips"]])), 4)
    print(json.dumps({k: v for k, v in results.items() if k != "clips"}))
    if args.strip:
        mouth_strip(pipe, args.strip)


def mouth_strip(pipe, out: Path) -> None:
    """Mouth close-ups of the example speech (0.5 s of silence first), every other frame from 0.48 s: the default
    live session (top) and the offline head and rules (``rules="offline"``, animate's lips; bottom); no head motion
    or blinks."""
    import cv2

    from pdfgc.live import LiveControls, LiveSession
    ex = ROOT / "pdfgc/ui/examples"
    wav = np.concatenate([np.zeros(8000, np.float32), pipe.load_speech(ex / "speech.m4a").wav16k[:16000 * 4]])
    rows = []
    for rules in ("live", "offline"):
        with LiveSession(ex / "anne.png", LiveControls(pose_auto=False, blink_auto=False), pipeline=pipe,
                         rules=rules) as s:
            frames = []
            for i in range(0, len(wav), 480):
                frames += s.push(wav[i:i + 480])
            frames += s.finish()
        size = frames[0].image.shape[0]
        crop = lambda im: cv2.resize(im[int(size * 0.48):int(size * 0.72), int(size * 0.30):int(size * 0.70)],
                                     (120, 72))
        rows.append(np.concatenate([crop(frames[i].image) for i in range(12, 44, 2)], 1))
    cv2.imwrite(str(out), np.concatenate(rows, 0)[..., ::-1])
    print(f"mouth close-ups (live top, offline rules bottom) -> {out}")


if __name__ == "__main__":
    main()
