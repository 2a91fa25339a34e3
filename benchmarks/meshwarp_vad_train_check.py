"""Does the training command's voice classifier reproduce the shipped one (issue 24)?

    python benchmarks/meshwarp_lips_gates.py collect --cache outputs/gates.npz      # ~3 min, once
    python benchmarks/meshwarp_vad_train_check.py --gates outputs/gates.npz --speech-cache ../lips_cache \
        [--out benchmarks/results/meshwarp/vad_train_s32.json]

1. **Refit from the benchmark's cache** (how the shipped ``audio.vad.*`` was fitted: each prepared clip's own sound
   streamed as a user's file, ``meshwarp_lips_gates.py fit-vad``, which now calls ``lips_train.fit_voice``): the
   weights against the file's.
2. **The training path** (``lips_train.fit_voice_classifier``, what ``pdfgc train --config meshwarp`` / ``lips_train
   fit`` run after the head): the shipped head's window features from the speech cache (each raw clip whole) and
   silero-vad on the raw clip (cached beside the features), the same training clips: its weights against the
   file's, and its flag (>= VOICE_FEATURES) on the held-out people's frames.
3. **The gate by the real mouth**: the shipped gate (silero, or silero >= VAD_LOW with the flag) through the rules
   on the benchmark cache's clips (``meshwarp_lips_gates.py score``'s figures, out-of-fold codes on the training
   people) with each classifier.
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
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gates", type=Path, default=ROOT / "outputs/gates.npz")
    ap.add_argument("--speech-cache", type=Path, default=ROOT.parent / "lips_cache")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "prepared_corpus")
    ap.add_argument("--weights", type=Path, default=ROOT / "pdfgc/weights/meshwarp.safetensors")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    import meshwarp_lips_gates as G
    import torch

    from pdfgc.data import PreparedCorpus
    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp import lips_train as LT
    from pdfgc.families.meshwarp.params import load_params

    torch.set_num_threads(1)
    p = load_params(a.weights)
    head = L.from_params(p)
    sw, sb = head.voice.weight.numpy().copy(), float(head.voice.bias)
    out = {"command": "python benchmarks/meshwarp_vad_train_check.py", "date": time.strftime("%Y-%m-%d"),
           "shipped_max_abs_weight": float(np.abs(sw).max()), "shipped_bias": sb}
    clips, g, gap_rms = G.load(a.gates)
    tr = [c for c in clips if not c["heldout"]]
    held_x = np.concatenate([c["feat"] for c in clips if c["heldout"]])
    sig = lambda x, w, b: 1 / (1 + np.exp(-(x @ w + b)))   # noqa: E731

    def versus(w, b, x):
        pa, pb = sig(x, w, b), sig(x, sw, sb)
        return {"max_abs_dweight": float(np.abs(w - sw).max()), "abs_dbias": abs(b - sb),
                "cosine": float(w @ sw / np.linalg.norm(w) / np.linalg.norm(sw)),
                "heldout_max_abs_dprob": float(np.abs(pa - pb).max()),
                "heldout_flags_differ": int(((pa >= L.VOICE_FEATURES) != (pb >= L.VOICE_FEATURES)).sum()),
                "heldout_frames": int(len(x))}

    w1, b1 = G.fit_vad(tr)
    out["refit_from_benchmark_cache"] = {"clips": len(tr), "frames": int(sum(len(c["feat"]) for c in tr))} | versus(
        w1, b1, held_x)
    raw = PreparedCorpus(a.data).manifest.get("settings", {}).get("raw_root")
    lips = LT.load_lip_clips(a.data, a.speech_cache, p, log=lambda m: None)
    t0 = time.time()
    rec = LT.fit_voice_classifier(head, [c for c in lips if not c.heldout], a.speech_cache,
                                  Path(raw) if raw else None, log=lambda m: None)
    w2, b2 = head.voice.weight.numpy(), float(head.voice.bias)
    rows, _ = LT.voice_data(head, [c for c in lips if c.heldout], a.speech_cache, Path(raw) if raw else None)
    out["training_path"] = {k: rec[k] for k in ("clips", "frames", "people", "speech_share", "train_agreement")} | {
        "seconds": round(time.time() - t0, 1)} | versus(w2, b2, np.concatenate([r[1] for r in rows]))
    # 3. the gate through the rules, each classifier on the benchmark cache's features
    for c in clips:
        c["sil_speech"] = G.hang(G.frames_of_windows(c["silero"] >= L.VAD_THRESHOLD, len(c["raw"])), L.VAD_HANGOVER)
    G.out_of_fold(tr, g)
    gates = {}
    for name, (w, b) in (("shipped", (sw, sb)), ("training_path", (w2, b2))):
        per = []
        for c in clips:
            gate = c["sil_speech"] | G.hang(G.frames_of_windows(c["silero"] >= L.VAD_LOW, len(c["raw"]))
                                            & (sig(c["feat"], w, b) >= L.VOICE_FEATURES))
            row = G.score_clip(G.run_gate(c["raw"], gate, g, gap_rms), c["real"], c["valid"], c["sil_speech"], gate,
                               c["rms"])
            per.append((c["heldout"], gate, row))
        gates[name] = per
        out[f"gate_{name}"] = {k: G.summarise([r for h, _, r in per if h == held]) for k, held in
                               (("train", False), ("heldout", True))}
    for k, held in (("train", False), ("heldout", True)):
        out[f"gate_frames_differ_{k}"] = int(sum((x[1] != y[1]).sum() for x, y in zip(gates["shipped"],
                                                                                         gates["training_path"])
                                                 if x[0] == held))
    text = json.dumps(out, indent=1, default=float)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
