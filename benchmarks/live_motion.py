"""The live session's generated head motion vs held-out real speakers (issue 21: std and mean speed of yaw, pitch,
roll within +-30 %), measured as ``meshwarp_motion.py`` measures the offline ``--pose auto``.

A live session drives ``MotionModel``'s process (``pdfgc.live.session._HeadMotion``, one frame at a time) with its
causal voice activity (silero-vad's flags with the live head's hangover and lead, times ``LIVE_ACTIVITY``,
averaged over 0.4 s) instead of the offline mel loudness. For each held-out prepared clip with sound (people in
heldout_identities.txt), the raw clip's speech gives the flags, the process runs for 20 seeds, and the per-clip std
(about the clip's mean) and mean speed |d angle / dt| (deg/s), averaged over clips, stand beside the clip's real
pose (after the pipeline's 3-tap box) and beside the offline ``--pose auto`` on the same clips.

    PYTHONPATH=. python3 benchmarks/live_motion.py [--corpus /work/prepared_corpus] [--seeds 20]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    import torch

    from pdfgc.data import PreparedCorpus
    from pdfgc.families.meshwarp.lips import live_from_params, live_speaking, voice_flags
    from pdfgc.families.meshwarp.motion import AXES, FPS, MotionModel, box3, load_speakers
    from pdfgc.families.meshwarp.params import DEFAULT_PATH, load_params
    from pdfgc.live.session import LIVE_ACTIVITY, _HeadMotion
    from pdfgc.media.audio_io import decode_speech

    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default="/work/prepared_corpus")
    ap.add_argument("--seeds", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lead = live_from_params(load_params(DEFAULT_PATH)).vad_lead
    model = MotionModel.load()
    corpus = PreparedCorpus(args.corpus)
    infos = {i.key: i for i in corpus.clips}
    raw_root = Path(corpus.manifest["settings"]["raw_root"])
    clips = [c for c in load_speakers(args.corpus) if c["heldout"]]
    fig = lambda x: (x.std(0), np.abs(np.diff(x, axis=0)).mean(0) * FPS)
    real, live, offline, speaking = [], [], [], []
    for c in clips:
        info, t = infos[c["key"]], len(c["angles"])
        wav = decode_speech(raw_root / info.source)[0]
        flags = voice_flags(wav, -(-len(wav) // 640))[info.start_frame:info.start_frame + t]
        speak = live_speaking(np.pad(flags, (0, t - len(flags))), lead)
        speaking.append(speak.mean())
        act = LIVE_ACTIVITY * speak
        real.append(fig(box3(c["angles"])))
        for s in range(args.seeds):
            m = _HeadMotion(model, s)
            live.append(fig(np.stack([m.step(a) for a in act])))
            offline.append(fig(model.head_angles(c["loudness"], seed=s)))
    out = {"heldout_clips": len(clips), "people": len({c["person"] for c in clips}),
           "seconds": round(sum(len(c["angles"]) for c in clips) / FPS, 1), "seeds": args.seeds,
           "speaking_fraction_live": round(float(np.mean(speaking)), 3)}
    print(f"held-out: {out['heldout_clips']} clips, {out['people']} people, {out['seconds']} s; {args.seeds} seeds; "
          f"live voice activity (lead {lead}) on {100 * out['speaking_fraction_live']:.0f} % of frames")
    print(f"{'axis':6s} {'figure':12s} {'real':>7s} {'live':>7s} {'ratio':>6s} {'offline':>8s} {'ratio':>6s}")
    ok = True
    for k, name in enumerate(("std", "speed")):
        for j, axis in enumerate(AXES):
            r = float(np.mean([f[k][j] for f in real]))
            g = float(np.mean([f[k][j] for f in live]))
            o = float(np.mean([f[k][j] for f in offline]))
            ok &= abs(g / r - 1) <= 0.3
            out[f"{axis}_{name}"] = {"real": round(r, 3), "live": round(g, 3), "ratio": round(g / r, 3),
                                     "offline_auto": round(o, 3), "offline_ratio": round(o / r, 3)}
            unit = "deg" if name == "std" else "deg/s"
            print(f"{axis:6s} {name + ' ' + unit:12s} {r:7.2f} {g:7.2f} {g / r:6.2f} {o:8.2f} {o / r:6.2f}"
                  f"  {'ok' if abs(g / r - 1) <= 0.3 else 'MISS'}")
    out["live_within_30pct"] = bool(ok)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
