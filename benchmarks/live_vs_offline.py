"""Lips live vs offline on the same audio: the mouth-code correlation r (all frames and dims) between
``LiveSession`` (fed in 30 ms pieces) and the offline plan, per hop, on held-out speakers' voices
(heldout_identities.txt, clips with sound of 6-40 s from the corpus manifest, first ``--seconds`` of each), plus the
encoder's cost per 4 s chunk on one thread. Baseline beside it: r between the offline lips and the same lips one
frame late (what a one-frame error in timing would cost).

    PYTHONPATH=. python3 benchmarks/live_vs_offline.py --hops 4 8
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
    ap.add_argument("--hops", type=int, nargs="+", default=[4, 8])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clips", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from pdfgc.live import LiveSession
    from pdfgc.pipeline import TalkingHeadPipeline
    pipe = TalkingHeadPipeline.from_default(device="cpu", threads=1)
    portrait = pipe.load_portrait(ROOT / "pdfgc/ui/examples/anne.png")
    enc = pipe.family.model.lips.encoder
    from pdfgc.families.meshwarp import speech as sp
    x = sp.LogMel()(torch.randn(1, sp.CHUNK_FRAMES * sp.ENC_SAMPLES) * 0.1)
    with torch.inference_mode():
        enc(x, [2, 3, 4])
        t0 = time.perf_counter()
        for _ in range(5):
            enc(x, [2, 3, 4])
    chunk_s = (time.perf_counter() - t0) / 5
    print(f"encoder to block 4 on one 4 s chunk, 1 thread: {chunk_s * 1000:.0f} ms")
    results = {"encoder_chunk_ms": round(chunk_s * 1000, 1), "clips": []}
    for clip in heldout_clips(args.clips):
        wav = pipe.load_speech(clip).wav16k[:int(args.seconds * 16000)]
        off = pipe.plan(portrait, wav, progress=False).mouth.numpy()
        row = {"clip": clip.name, "frames": len(off),
               "r_offline_vs_1_frame_late": round(float(np.corrcoef(off[1:].ravel(), off[:-1].ravel())[0, 1]), 4)}
        for hop in args.hops:
            s = LiveSession(portrait, pipeline=pipe, hop=hop)
            frames = []
            for i in range(0, len(wav), 480):
                frames += s.push(wav[i:i + 480])
            frames += s.finish()
            s.close()
            live = np.stack([f.mouth for f in frames])
            n = min(len(live), len(off))
            row[f"r_hop{hop}"] = round(float(np.corrcoef(live[:n].ravel(), off[:n].ravel())[0, 1]), 4)
        print(json.dumps(row))
        results["clips"].append(row)
    for hop in args.hops:
        rs = [c[f"r_hop{hop}"] for c in results["clips"]]
        results[f"r_hop{hop}_mean"], results[f"r_hop{hop}_min"] = round(float(np.mean(rs)), 4), min(rs)
    results["r_1_frame_late_mean"] = round(float(np.mean([c["r_offline_vs_1_frame_late"] for c in
                                                          results["clips"]])), 4)
    print(json.dumps({k: v for k, v in results.items() if k != "clips"}))


if __name__ == "__main__":
    main()
