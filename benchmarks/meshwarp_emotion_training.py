"""Issue 20's fer / identity / opening figures on TRAINING portraits (never the benchmark's three), for choosing.

    PYTHONPATH=. python benchmarks/meshwarp_emotion_training.py [--labels sad angry] [--gain LABEL=G ...]
        [--lower LABEL=G ...] [--upper LABEL=G ...] [--geom LABEL=S ...] [--seconds 2] [--tag TAG] [--save NPZ]

Four corpus portraits (``TRAIN``: stills, none of them a benchmark portrait or a held-out person) speak 2 s of the
held-out speech (Katie Hill) with each label at level 1, as ``meshwarp_emotion.py`` does: fer's top class = label,
the mouth opening with / without the label, dlib's identity distance to the portrait. Variants, in memory only:
``--gain`` scales a label's expression ratio image (its log), ``--lower`` / ``--upper`` only below / above the nose
(the texture frame's row of mesh point 2, a 6-texel ramp), ``--replace`` puts another log ratio image in its place
(``--own``: one MEAD actor's own, as ``emotion_texture.build`` measures it, mirrored), ``--geom`` scales the label's
emotion code (its geometry; the resting mouth and the lids as shipped). Session 32's figures: emotion_s32.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from meshwarp_targets import DATA, HELDOUT_SPEECH, Meter, render  # noqa: E402

C = DATA / "corpus"
TRAIN = [  # corpus stills, not the benchmark's portraits, not held out
    C / "AAAI22-one-shot-talking-face/portraits/samples__imgs__AdamSmith_0.jpg",
    C / "AAAI22-one-shot-talking-face/portraits/samples__imgs__ChrisVanHollen1_0.jpg",
    C / "AAAI22-one-shot-talking-face/portraits/samples__imgs__KevinBrady0_0.jpg",
    C / "HelloMeme/portraits/data__reference_images__harris.jpg",
]


def pairs(items):
    return [(k, float(v)) for k, v in (x.split("=") for x in items)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labels", nargs="*", default=["sad", "angry"])
    ap.add_argument("--gain", nargs="*", default=[], help="LABEL=G: the label's ratio image x G (its log)")
    ap.add_argument("--lower", nargs="*", default=[], help="LABEL=G: the same below the nose only")
    ap.add_argument("--upper", nargs="*", default=[], help="LABEL=G: the same above the nose only")
    ap.add_argument("--geom", nargs="*", default=[], help="LABEL=S: the label's emotion code (geometry) x S")
    ap.add_argument("--replace", nargs="*", default=[], help="LABEL=NPZ:KEY: the label's log ratio from a file")
    ap.add_argument("--own", nargs="*", default=[], help="LABEL=PERSON: one MEAD actor's own ratio image (mirrored)")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--portraits", type=int, default=4)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--save", default=None, help="every 10th frame of each render (npz)")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    torch.set_num_threads(1)
    from pdfgc.controls.explicit import EmotionControl
    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp.emotion_texture import ExpressionRatios
    from pdfgc.families.meshwarp.model import MeshWarpModel
    from pdfgc.families.meshwarp.params import load_params
    from pdfgc.pipeline import TalkingHeadPipeline

    ratios = ExpressionRatios.load()
    rows = np.arange(ratios.size, dtype=np.float64)[:, None]
    low = np.clip((rows - ratios.layout[2, 1]) / 6.0 + 0.5, 0, 1) * np.ones((1, ratios.size))
    for item in a.replace:
        k, src = item.split("=")
        f, key = src.rsplit(":", 1)
        ratios.log_ratio[k] = np.load(f)[key].astype(np.float32)
    if a.own:
        from pdfgc.families.meshwarp import emotion_texture as T

        uv = T.layout(load_params(a.weights).mean_shape)
        mask, clips = T.face_mask(uv), T.mead_clips(C)
        for item in a.own:
            k, person = item.split("=")
            neutral, _ = T.clip_texture(clips[person]["neutral"], uv)
            rgb, _ = T.clip_texture(clips[person][k], uv)
            lr = T.log_ratio(T.luminance(rgb), T.luminance(neutral), mask)
            ratios.log_ratio[k] = ((lr + lr[:, ::-1]) / 2).astype(np.float32)
    for k, g in pairs(a.gain):
        ratios.log_ratio[k] = ratios.log_ratio[k] * np.float32(g)
    for k, g in pairs(a.lower):
        ratios.log_ratio[k] = (ratios.log_ratio[k] * (1 + (g - 1) * low)).astype(np.float32)
    for k, g in pairs(a.upper):
        ratios.log_ratio[k] = (ratios.log_ratio[k] * (1 + (g - 1) * (1 - low))).astype(np.float32)
    params = load_params(a.weights)
    for k, s in pairs(a.geom):
        nz = np.asarray(params.emotion_shapes.get("neutral", 0.0), np.float32)
        params.emotion_shapes[k] = (nz + s * (params.emotion_shapes[k] - nz)).astype(np.float32)
    pipe = TalkingHeadPipeline(MeshWarpModel(params, refiner=None, expressions=ratios), device="cpu", threads=1)
    meter = Meter()
    n, speech = int(a.seconds * 25), str(HELDOUT_SPEECH[0])
    R: dict = {}
    saved: dict = {}
    for path in TRAIN[: a.portraits]:
        face = pipe.load_portrait(path)
        plain, _ = render(pipe, face, speech, lips="audio", max_frames=n)
        o0 = np.nanmean(S.mouth_opening(meter.meshes(plain)))
        saved[path.stem + "_neutral"] = plain[::10]
        for lab in a.labels:
            fr, _ = render(pipe, face, speech, lips="audio", max_frames=n, emotion_control=EmotionControl(label=lab))
            m = meter.meshes(fr)
            sh = meter.emotion_share(fr, m, lab)
            op = float(np.nanmean(S.mouth_opening(m)) / o0)
            idd = float(np.mean(meter.identity(fr, face.crop)))
            R.setdefault(lab, []).append((sh, op, idd))
            saved[path.stem + "_" + lab] = fr[::10]
            print(f"{a.tag} {path.stem[:24]:24s} {lab}: fer {sh:.0%} open x{op:.2f} id {idd:.3f}", flush=True)
    for lab, v in R.items():
        v = np.array(v)
        print(f"{a.tag} MEAN {lab}: fer {v[:, 0].mean():.1%} open x{v[:, 1].mean():.2f} id {v[:, 2].mean():.3f}")
    if a.save:
        np.savez_compressed(a.save, **saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
