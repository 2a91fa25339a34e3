"""Issue 19's revealed cheek at 4x, without and with the portrait's own skin texture on the fill (session 32).

    PYTHONPATH=. python benchmarks/meshwarp_cheek_closeups.py [--png benchmarks/results/meshwarp/cheek_s32.png]

The portraits of ``meshwarp_farside_closeups.py`` (anne.png, Macron, a held-out still, anne turned 25 deg), each
turned to yaw -30 / -20 / +20 / +30 by the shipped default renderer. Per turn, a box of 48 px (at 224; scaled with
the image) around the centre of the pixels the stretched-cheek fill changes (``fill_stretched`` on against off), the
larger side's fill; shown at 4x (nearest). Per portrait three rows: the fill without the texture (``_detail`` off:
main's code bit for bit), with it (the default), and the source's own cheek square the texture is cut from (4x,
once, in the first tile) beside the tiled texture layer (x4 contrast, grey 128 = 0).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
YAWS = (-30, -20, 20, 30)
BOX = 48


def label(img, text):
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 0), 1, cv2.LINE_AA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--png", type=Path, default=ROOT / "benchmarks/results/meshwarp/cheek_s32.png")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from meshwarp_farside_closeups import portraits

    from pdfgc.families.meshwarp.warp import WarpRenderer, rotate_mesh

    tile = 4 * BOX
    rows = []
    for name, img, mesh in portraits():
        s = img.shape[0]
        box = int(round(BOX * s / 224))
        r, off = WarpRenderer(img, mesh), WarpRenderer(img, mesh, fill_stretched=False)
        detail = r._detail
        row_off, row_on = [], []
        for y in YAWS:
            tgt = rotate_mesh(mesh, yaw=y)
            with_tex = r.render(tgt)
            r._detail = None
            plain = r.render(tgt)
            r._detail = detail
            changed = (plain != off.render(tgt)).any(2)
            ys, xs = np.nonzero(changed)
            if len(xs) == 0:
                cy = cx = s // 2
            else:  # the side with more filled pixels
                left = xs < s / 2
                pick = left if left.sum() >= (~left).sum() else ~left
                cy, cx = int(np.median(ys[pick])), int(np.median(xs[pick]))
            y0, x0 = (int(np.clip(v - box // 2, 0, s - box)) for v in (cy, cx))
            for dst, fr, tag in ((row_off, plain, "fill, no texture"), (row_on, with_tex, "fill + skin texture")):
                t = cv2.resize(fr[y0:y0 + box, x0:x0 + box], (tile, tile), interpolation=cv2.INTER_NEAREST)
                label(t, f"{name[:14]} {y:+d} {tag}")
                dst.append(t)
        ref = [np.zeros((tile, tile, 3), np.uint8) for _ in YAWS]
        if detail is not None:
            p = detail.shape[0] // 2
            src = np.clip(detail[:p, :p].astype(np.float32) * 4 + 128, 0, 255).astype(np.uint8)
            ref[0] = cv2.resize(src, (tile, tile), interpolation=cv2.INTER_NEAREST)
            label(ref[0], "texture square x4 contrast")
            big = np.clip(np.tile(detail, (2, 2, 1))[:box, :box].astype(np.float32) * 4 + 128, 0, 255)
            ref[1] = cv2.resize(big.astype(np.uint8), (tile, tile), interpolation=cv2.INTER_NEAREST)
            label(ref[1], "tiled layer x4")
        rows += [np.concatenate(row_off, 1), np.concatenate(row_on, 1), np.concatenate(ref, 1)]
    args.png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.png), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
