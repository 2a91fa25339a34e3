"""The ceiling that real faces set for issue 20's fer figures: fer's top class on REAL MEAD clips while speaking.

    PYTHONPATH=. python benchmarks/meshwarp_emotion_real.py [--json OUT.json] [--every 1] [--threads 1]

The same meter as ``meshwarp_emotion.py`` (mediapipe's face mesh for the box, ``box_from_landmarks`` and fer's own
crop, ``pdfgc.evaluation.emotion``), on every MEAD clip of the corpus (``manifest.csv``'s identity ``MEAD ...``),
each frame aligned into the same 224 px crop that a driving clip gets (``open_driving``, as ``meshwarp_targets``'s
``source_signals``). Per clip: the actor, MEAD's label and level, the share of frames whose top class is the label,
the mean probability of each class, and the most frequent top class. Prints a table, writes json
(default benchmarks/results/meshwarp/emotion_real.json).

``--occlusion PNG``: what fer keys on. A grey patch (10x10 of fer's 64x64 input, stride 3) slides over the input;
the map is the drop of the label's probability where the patch covers (positive: that part carries the label),
averaged over every 12th frame, for the real sad / angry / neutral clips of M030 and W009 and for renders of the
labels (level 1, speaking 2 s of held-out speech) on training portraits (``TRAIN``; never the benchmark's). Per
region (rows of the 64x64 input: forehead 0-14, brows 14-24, eyes 24-34, nose and cheeks 34-44, mouth 44-56,
chin 56-64) the summed drop is printed and written to the json; the image shows each input and its map (blue: carries
the class, red: argues against it) for the source's own label (p(sad) for the neutral ones), four to a row.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared/data/corpus"
OUT = ROOT / "benchmarks/results/meshwarp"
# MEAD's names -> fer's classes
MEAD_TO_FER = {
    "angry": "angry",
    "disgusted": "disgust",
    "fear": "fear",
    "happy": "happy",
    "sad": "sad",
    "surprised": "surprise",
    "neutral": "neutral",
    "contempt": None,
}


def mead_clips(corpus: Path = CORPUS) -> list[dict]:
    """The corpus's MEAD video clips with actor, label and level parsed from the file name (None if not there)."""
    out = []
    with open(corpus / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["kind"] != "video" or "MEAD" not in row["identity_guess"]:
                continue
            name = Path(row["repo_path"]).stem
            label = next((k for k in MEAD_TO_FER if re.search(rf"(^|_){k}(_|$)", name)), None)
            lev = re.search(r"level_?(\d)|_(\d)_\d{3}$", name)
            level = int(next(g for g in lev.groups() if g)) if lev else None
            actor = row["identity_guess"].replace("MEAD ", "").replace("MEAD-style", "").strip()
            out.append({"path": row["local_path"], "actor": actor, "label": label, "level": level})
    return out


def fer_on_clip(path: Path, det_factory, fer, every: int = 1) -> dict:
    from pdfgc.evaluation.emotion import EMOTIONS, box_from_landmarks
    from pdfgc.media.driving import open_driving

    crops = np.asarray(open_driving(str(path), None, "auto", False).crops)[::every]
    det = det_factory()
    probs = []
    for f in crops:
        faces = det.detect(np.ascontiguousarray(f))
        if not faces:
            continue
        probs.append(fer.classify(f, box_from_landmarks(np.asarray(faces[0])[:, :2])))
    probs = np.array(probs)
    top = np.argmax(probs, 1)
    return {
        "frames": int(len(probs)),
        "top_share": {k: float(np.mean(top == i)) for i, k in enumerate(EMOTIONS)},
        "mean_prob": {k: float(probs[:, i].mean()) for i, k in enumerate(EMOTIONS)},
    }


TRAIN = [
    "AAAI22-one-shot-talking-face/portraits/samples__imgs__AdamSmith_0.jpg",
    "AAAI22-one-shot-talking-face/portraits/samples__imgs__ChrisVanHollen1_0.jpg",
    "AAAI22-one-shot-talking-face/portraits/samples__imgs__KevinBrady0_0.jpg",
    "HelloMeme/portraits/data__reference_images__harris.jpg",
]
BANDS = {
    "forehead": (0, 14),
    "brows": (14, 24),
    "eyes": (24, 34),
    "nose_cheeks": (34, 44),
    "mouth": (44, 56),
    "chin": (56, 64),
}


def fer_inputs(frames, det) -> np.ndarray:
    from pdfgc.evaluation.emotion import box_from_landmarks, crop_face

    out = []
    for f in frames:
        faces = det.detect(np.ascontiguousarray(f))
        if faces:
            out.append(crop_face(f, box_from_landmarks(np.asarray(faces[0])[:, :2])))
    return np.array(out)


def occlusion_map(fer, x: np.ndarray, label_index: int, patch: int = 10, stride: int = 3):
    """(64,64) drop of the label's probability under a grey (0) patch, averaged over the patches covering a pixel,
    and the unoccluded probability."""
    base = fer.probabilities(x[None])[0][label_index]
    pos = [(y, u) for y in range(0, 65 - patch, stride) for u in range(0, 65 - patch, stride)]
    batch = np.repeat(x[None], len(pos), 0)
    for b, (y, u) in zip(batch, pos):
        b[y : y + patch, u : u + patch] = 0.0
    p = fer.probabilities(batch)[:, label_index]
    drop, n = np.zeros((64, 64)), np.zeros((64, 64))
    for (y, u), v in zip(pos, p):
        drop[y : y + patch, u : u + patch] += base - v
        n[y : y + patch, u : u + patch] += 1
    return drop / np.maximum(n, 1), float(base)


def occlusion(fer, det_factory, png: Path, seconds: float = 2.0) -> dict:
    import cv2

    from pdfgc.controls.explicit import EmotionControl
    from pdfgc.evaluation.emotion import EMOTIONS
    from pdfgc.families.meshwarp.model import MeshWarpModel
    from pdfgc.families.meshwarp.params import load_params
    from pdfgc.media.driving import open_driving
    from pdfgc.pipeline import TalkingHeadPipeline

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from meshwarp_targets import HELDOUT_SPEECH, render

    src = {}
    for who in ("M030", "W009"):
        for lab in ("sad", "angry", "neutral"):
            lv = "level1" if lab == "neutral" else "level3"
            clip = CORPUS / f"dreamtalk/data__style_clip__video__{who}_front_{lab}_{lv}_001.mp4"
            src[f"real {who} {lab}"] = fer_inputs(
                np.asarray(open_driving(str(clip), 100, "auto", False).crops)[::12], det_factory()
            )
    pipe = TalkingHeadPipeline(MeshWarpModel(load_params(None), refiner=None), device="cpu", threads=1)
    for path in TRAIN:
        face = pipe.load_portrait(CORPUS / path)
        for lab in ("neutral", "sad", "angry"):
            ctl = None if lab == "neutral" else EmotionControl(label=lab)
            fr, _ = render(
                pipe, face, str(HELDOUT_SPEECH[0]), lips="audio", max_frames=int(seconds * 25), emotion_control=ctl
            )
            src[f"render {Path(path).stem.split('__')[-1]} {lab}"] = fer_inputs(fr[::10], det_factory())
    out, tiles = {}, []
    for name, X in src.items():
        if not len(X):
            continue
        for lab in ("sad", "angry"):
            maps = [occlusion_map(fer, x, EMOTIONS.index(lab)) for x in X]
            H = np.mean([m for m, _ in maps], 0)
            p = float(np.mean([b for _, b in maps]))
            out.setdefault(name, {})[lab] = {
                "p": p,
                "frames": len(X),
                **{k: float(H[a:b].sum()) for k, (a, b) in BANDS.items()},
            }
            print(
                f"{name:36s} p({lab}) {p:.2f}  "
                + "  ".join(f"{k} {H[a:b].sum():+5.1f}" for k, (a, b) in BANDS.items()),
                flush=True,
            )
            img = ((X[len(X) // 2] + 1) * 127.5).clip(0, 255).astype(np.uint8)
            hm = np.clip(H / 0.15, -1, 1)
            col = np.repeat(img[..., None], 3, 2).astype(np.float32)
            col[..., 2] += 204 * np.clip(hm, 0, 1)
            col[..., 0] += 204 * np.clip(-hm, 0, 1)
            t = cv2.resize(
                np.concatenate([np.repeat(img[..., None], 3, 2), col.clip(0, 255).astype(np.uint8)], 1),
                None,
                fx=3,
                fy=3,
                interpolation=cv2.INTER_NEAREST,
            )
            cv2.putText(t, f"{name} p({lab}) {p:.2f}", (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1)
            if lab == name.split()[-1] or (lab == "sad" and name.endswith("neutral")):
                tiles.append(t)
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % 4)
    rows = [np.concatenate(tiles[i : i + 4], 1) for i in range(0, len(tiles), 4)]
    png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(png), np.concatenate(rows, 0)[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", default=str(OUT / "emotion_real.json"))
    ap.add_argument("--every", type=int, default=1, help="every n-th frame")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--occlusion", default=None, metavar="IMAGE", help="also the occlusion maps (see above)")
    ap.add_argument("--skip-clips", action="store_true", help="only the occlusion maps")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from pdfgc.evaluation.emotion import EmotionClassifier
    from pdfgc.media.face import FaceMeshDetector

    fer = EmotionClassifier()
    det_factory = lambda: FaceMeshDetector(static_image_mode=False, max_num_faces=1)  # noqa: E731
    R: dict = {}
    if args.occlusion:
        R["occlusion"] = occlusion(fer, det_factory, Path(args.occlusion))
    rows = []
    for c in [] if args.skip_clips else mead_clips():
        r = fer_on_clip(CORPUS / c["path"], det_factory, fer, args.every)
        lab = MEAD_TO_FER.get(c["label"])
        r.update(
            c,
            fer_label=lab,
            hit=(r["top_share"][lab] if lab else None),
            most=max(r["top_share"], key=r["top_share"].get),
        )
        rows.append(r)
        print(
            f"{c['actor']:>28} {str(c['label']):>10} L{c['level']} {r['frames']:4d} fr  "
            f"label {('%5.1f %%' % (100 * r['hit'])) if lab else '   - '}  most {r['most']:>8} "
            f"({100 * r['top_share'][r['most']]:.0f} %)  {c['path']}",
            flush=True,
        )
    if rows:
        R["clips"] = rows
    Path(args.json).write_text(json.dumps(R, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
