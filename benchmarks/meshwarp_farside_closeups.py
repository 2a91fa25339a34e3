"""Issue 19's far side close up: the far and near cheek edges of a turned head at 4x, for a before/after pair.

    PYTHONPATH=<tree> python benchmarks/meshwarp_farside_closeups.py --out rows_<tag>.npz    # once per code tree
    python benchmarks/meshwarp_farside_closeups.py --combine before.npz after.npz --png farside_s31_closeup.png

Portraits (each the shipped default renderer, ``WarpRenderer(image, mesh)``): anne.png (224 px), Macron.png (its
aligned crop at the pipeline's render size), the most frontal frame of the first held-out corpus clip (224 px), and
anne turned 25 deg by the renderer and measured again (one side edge-on). Per portrait a row of yaw -30 / -20 / +20 /
+30, each tile the box of 0.56 face heights around the target's outline point on the image's left (234) or right
(454) side, whichever is the far side of that turn's ... both are shown: left tile the left side, right tile the right.
With --combine, the rows of the two runs are interleaved (before above after).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
YAWS = (-30, -20, 20, 30)
TILE = 176


def portraits():
    from pdfgc.families.meshwarp.model import crop_at, render_size
    from pdfgc.families.meshwarp.refine_train import corpus_people
    from pdfgc.families.meshwarp.warp import WarpRenderer, rotate_mesh
    from pdfgc.media.face import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
    out = []
    for name, path in (("anne", DATA / "pdfgc/anne.png"), ("Macron", DATA / "real3dportrait/Macron.png")):
        p = pipe.load_portrait(path)
        img = np.ascontiguousarray(crop_at(p, render_size(p)))
        out.append((name, img, det.detect(img)[0]))
    people, corpus = corpus_people(ROOT.parent / "prepared_corpus")
    info = next(i for i, _, held in people if held)
    arr = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy", "pose.npy"))
    idx = np.flatnonzero(arr["valid.npy"].astype(bool) & np.isfinite(arr["mesh.npy"]).all(axis=(1, 2)))
    f = int(idx[np.argmin(np.abs(arr["pose.npy"][idx, 0]))])
    img = np.ascontiguousarray(corpus.load_frames(info.key, [f])[0])
    out.append(("held-out " + info.key[:14], img, arr["mesh.npy"][f].astype(np.float64)))
    name, img, mesh = out[0]
    # the turned source is made by this tree's renderer, as pixels_yaw.png's rows 3-4
    turned = WarpRenderer(img, mesh).render(rotate_mesh(mesh, yaw=25))
    out.append(("anne turned 25", turned, det.detect(turned)[0]))
    return out


def rows() -> dict:
    from pdfgc.families.meshwarp.warp import WarpRenderer, rotate_mesh

    res = {}
    for name, img, mesh in portraits():
        r = WarpRenderer(img, mesh)
        h = float(np.linalg.norm(mesh[152, :2] - mesh[10, :2]))
        half = int(round(0.28 * h))
        tiles = []
        for y in YAWS:
            tgt = rotate_mesh(mesh, yaw=y)
            fr = r.render(tgt)
            t2, fit = r._depth_corrected(tgt)
            vt = r._target_vertices(t2, fit)
            for pt in (234, 454):
                c = vt[pt]
                x0 = int(np.clip(c[0] - half, 0, img.shape[1] - 2 * half))
                y0 = int(np.clip(c[1] - half, 0, img.shape[0] - 2 * half))
                t = cv2.resize(fr[y0:y0 + 2 * half, x0:x0 + 2 * half], (TILE, TILE), interpolation=cv2.INTER_NEAREST)
                tiles.append(t)
        res[name] = np.concatenate(tiles, 1)
    return res


def label(img, text):
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 0), 1, cv2.LINE_AA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path)
    ap.add_argument("--combine", nargs=2, type=Path, metavar=("BEFORE", "AFTER"))
    ap.add_argument("--png", type=Path, default=ROOT / "benchmarks/results/meshwarp/farside_s31_closeup.png")
    args = ap.parse_args()
    if args.combine:
        a, b = (dict(np.load(p)) for p in args.combine)
        out = []
        for name in a:
            for tag, d in (("before", a), ("after", b)):
                row = d[name].copy()
                for k, y in enumerate(YAWS):
                    for j, side in enumerate(("left", "right")):
                        tile = row[:, (2 * k + j) * TILE:(2 * k + j + 1) * TILE]
                        label(tile, f"{name} {tag} {y:+d} {side}" if j == 0 else f"{side}")
                out.append(row)
        args.png.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.png), cv2.cvtColor(np.concatenate(out, 0), cv2.COLOR_RGB2BGR))
        print(f"wrote {args.png}")
        return
    import torch

    torch.set_num_threads(1)
    np.savez_compressed(args.out, **rows())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
