"""Half-shut eyes of still portraits at 8x (issue 19): each portrait's face mesh with both eyes closed by
``warp.close_eyes`` amounts (0.3-0.8), rendered by the sliding lid under each setting (``--set``, as
``lids_sweep.py``'s: ``;`` between variants, ``""`` the defaults), mouth-free eye crops, one row per portrait and
amount, one column per variant (the first column the portrait itself, open).

    python benchmarks/lids_closeups.py OUT.png --images ../shared/data/pdfgc/anne.png,... --set "A;B" [--labels a,b]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def portrait_224(path: str, det):
    """The image cropped square around its face (1.7x the mesh's extent) at 224 px, and its face mesh there; or
    ``corpus:CLIP-SUBSTRING:FRAME``: that frame of the prepared corpus (224 px) and its measured mesh."""
    from pdfgc.media.face import load_image_rgb

    if path.startswith("corpus:"):
        from pdfgc.families.meshwarp.refine_train import corpus_people

        _, part, frame = path.split(":")
        people, corpus = corpus_people(REPO.parent / "prepared_corpus")
        key = next(info.key for info, _, _ in people if part in info.key)
        mesh = corpus.load_arrays(key, names=("mesh.npy",))["mesh.npy"].astype(np.float64)[int(frame)]
        return corpus.load_frames(key, [int(frame)])[0], mesh
    img = load_image_rgb(path)
    if img.shape[:2] != (224, 224):
        f = det.detect(img)[0]
        (x0, y0), (x1, y1) = f[:, :2].min(0), f[:, :2].max(0)
        c, half = ((x0 + x1) / 2, (y0 + y1) / 2), 0.85 * max(x1 - x0, y1 - y0)
        m = np.array(
            [[224 / (2 * half), 0, 112 - c[0] * 224 / (2 * half)], [0, 224 / (2 * half), 112 - c[1] * 224 / (2 * half)]]
        )
        img = cv2.warpAffine(img, m, (224, 224), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return img, det.detect(img)[0].astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--images", required=True)
    ap.add_argument("--set", default="")
    ap.add_argument("--labels", default="")
    ap.add_argument("--amounts", default="0.35,0.5,0.65,0.8")
    ap.add_argument("--zoom", type=int, default=8)
    ap.add_argument("--eyes", default="0,1", help="which eyes get a row (mesh order)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    from lids_diag import apply, restore
    from meshwarp_pixels_eval import write_rows

    from pdfgc.families.meshwarp.shapes import eye_aspect
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes
    from pdfgc.media.face import FaceMeshDetector
    from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER

    variants = args.set.split(";")
    labels = args.labels.split(",") if args.labels else [v or "default" for v in variants]
    z, rows = args.zoom, []
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        for path in args.images.split(","):
            img, mesh = portrait_224(path, det)
            for amount in [float(a) for a in args.amounts.split(",")]:
                target = close_eyes(mesh, amount)
                outs = [("portrait", img, None)]
                for k, v in enumerate(variants):
                    saved = apply(v)
                    try:
                        out = WarpRenderer(img, mesh, lids="skin").render(target)
                    finally:
                        restore(saved)
                    f = det.detect(np.ascontiguousarray(out))
                    outs.append((labels[k], out, eye_aspect(f[0]) if f else None))
                for e in [int(x) for x in args.eyes.split(",")]:
                    idx = list(EYE_UPPER[e]) + list(EYE_LOWER[e])
                    (x0, y0), (x1, y1) = mesh[idx, :2].min(0), mesh[idx, :2].max(0)
                    wd = x1 - x0
                    x0, x1 = int(x0 - 0.15 * wd), int(x1 + 0.15 * wd) + 1
                    y0, y1 = int(y0 - 0.5 * wd), int(y1 + 0.3 * wd) + 1
                    tiles = []
                    for name, out, read in outs:
                        c = cv2.resize(out[y0:y1, x0:x1], None, fx=z, fy=z, interpolation=cv2.INTER_NEAREST).copy()
                        cv2.putText(
                            c,
                            f"{name} x{1 - amount:.2f}",
                            (3, 14),
                            cv2.FONT_HERSHEY_SIMPLEX,
                            0.45,
                            (255, 255, 0),
                            1,
                            cv2.LINE_AA,
                        )
                        if read is not None or name != "portrait":
                            txt = f"asked {eye_aspect(target)[e]:.3f} read " + (
                                "-" if read is None else f"{read[e]:.3f}"
                            )
                            cv2.putText(
                                c,
                                txt,
                                (3, c.shape[0] - 6),
                                cv2.FONT_HERSHEY_SIMPLEX,
                                0.45,
                                (255, 255, 0),
                                1,
                                cv2.LINE_AA,
                            )
                        tiles.append(np.pad(c, ((0, 4), (0, 4), (0, 0))))
                    rows.append(np.concatenate(tiles, 1))
    write_rows(rows, args.out)
    print(f"wrote {args.out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
