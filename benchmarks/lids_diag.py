"""Where mediapipe reads a half-shut eye's lid contours on the sliding lid's renders (issue 19): per eye of the
closed-eye pairs (``meshwarp_pixels_eval.py``'s, training clips by default), the read-back upper and lower contours'
offsets from the target's (middle five points of each, across the eye, in eye widths, + = down the face), and 8x
close-ups of the half-shut eyes (source | real target | render | render with the contours: asked green, read red).

    python benchmarks/lids_diag.py OUT.png [--heldout] [--lo 0.4 --hi 0.6] [--rows 8] [--set lids.SLIDE_X=v,...]

``--set`` overrides module globals of ``lids`` / ``eyes`` (a variant to compare); several variants separated by
``;`` give one render column each (the contours drawn on the first).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def _frame_uv(mesh, e):
    from pdfgc.media.mesh_indices import EAR_POINTS

    a, b = mesh[EAR_POINTS[e, 0], :2], mesh[EAR_POINTS[e, 3], :2]
    w = float(np.linalg.norm(b - a))
    ax = (b - a) / max(w, 1e-6)
    n = np.array([-ax[1], ax[0]])
    if n[1] < 0:
        n = -n
    return a, ax, n, w


def contour_offsets(asked, read, e):
    """(upper, lower) offsets of `read`'s contours from `asked`'s, across eye `e` in the asked eye's frame."""
    from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER

    a, ax, n, w = _frame_uv(asked, e)
    out = []
    for idx in (EYE_UPPER[e], EYE_LOWER[e]):
        mid = list(idx)[2:7]
        ta = (asked[mid, :2] - a) @ n / w
        tr = (read[mid, :2] - a) @ n / w
        out.append(float(np.mean(tr - ta)))
    return out


def apply(sets: str):
    from pdfgc.families.meshwarp import eyes as E
    from pdfgc.families.meshwarp import lids as L

    saved = []
    for kv in filter(None, sets.split(",")):
        k, v = kv.split("=")
        mod, name = k.split(".")
        m = {"lids": L, "eyes": E}[mod]
        saved.append((m, name, getattr(m, name)))
        setattr(m, name, type(getattr(m, name))(eval(v)))
    return saved


def restore(saved):
    for m, name, v in reversed(saved):
        setattr(m, name, v)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=REPO.parent / "prepared_corpus")
    ap.add_argument("--heldout", action="store_true")
    ap.add_argument("--lo", type=float, default=0.4)
    ap.add_argument("--hi", type=float, default=0.6)
    ap.add_argument("--rows", type=int, default=8)
    ap.add_argument("--max-eyes", type=int, default=80)
    ap.add_argument("--set", default="", help="variants: 'lids.A=1,eyes.B=2;lids.A=0' (first: with contours)")
    ap.add_argument("--zoom", type=int, default=8)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from meshwarp_pixels_eval import eye_pairs, write_rows

    from pdfgc.families.meshwarp.shapes import eye_aspect
    from pdfgc.families.meshwarp.warp import WarpRenderer
    from pdfgc.media.face import FaceMeshDetector
    from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER

    plan, corpus = eye_pairs(args.data, args.heldout)
    variants = args.set.split(";") if args.set else [""]
    eyes, stats = [], {v: [] for v in variants}
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        for key, s, t, _ in plan:
            if len(eyes) >= args.max_eyes:
                break
            mesh = corpus.load_arrays(key, names=("mesh.npy",))["mesh.npy"].astype(np.float64)
            es, et = eye_aspect(mesh[s]), eye_aspect(mesh[t])
            if not et.mean() < 0.6 * es.mean():
                continue
            sel = [e for e in range(2) if args.lo <= et[e] / es[e] < args.hi]
            if not sel:
                continue
            fr = dict(zip((s, t), corpus.load_frames(key, [s, t])))
            renders = []
            for v in variants:
                saved = apply(v)
                try:
                    img = WarpRenderer(fr[s], mesh[s], lids="skin").render(mesh[t])
                finally:
                    restore(saved)
                f = det.detect(np.ascontiguousarray(img))
                renders.append((img, f[0] if f else None))
            for e in sel:
                row = {"key": key, "s": s, "t": t, "e": e, "ratio": float(et[e] / es[e]), "asked": float(et[e])}
                for v, (img, rd) in zip(variants, renders):
                    if rd is None:
                        continue
                    up, lo = contour_offsets(mesh[t], rd, e)
                    stats[v].append((up, lo, float(eye_aspect(rd)[e] - et[e])))
                row["read"] = [None if rd is None else float(eye_aspect(rd)[e]) for _, rd in renders]
                row["up"] = contour_offsets(mesh[t], renders[0][1], e)[0] if renders[0][1] is not None else np.nan
                eyes.append((row, fr, mesh, renders))
    summary = {}
    for v in variants:
        a = np.array(stats[v])
        summary[v or "default"] = {
            "eyes": len(a),
            "upper_mean": round(float(a[:, 0].mean()), 4),
            "lower_mean": round(float(a[:, 1].mean()), 4),
            "ear_signed": round(float(a[:, 2].mean()), 4),
            "ear_mae": round(float(np.abs(a[:, 2]).mean()), 4),
        }
    print(json.dumps(summary, indent=1))
    # close-ups: the eyes whose read upper contour is furthest above (most negative offset) ... spread over the list
    ranked = sorted(eyes, key=lambda x: x[0]["up"] if np.isfinite(x[0]["up"]) else 0.0)
    pick = ranked[:: max(1, len(ranked) // args.rows)][: args.rows]
    rows = []
    z = args.zoom
    for row, fr, mesh, renders in pick:
        e, s, t = row["e"], row["s"], row["t"]
        pts = mesh[t][list(EYE_UPPER[e]) + list(EYE_LOWER[e]), :2]
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        wdt = x1 - x0
        x0, x1, y0, y1 = int(x0 - 4), int(x1 + 5), int(y0 - 0.45 * wdt), int(y1 + 0.2 * wdt)
        imgs = [("src", fr[s], None), ("real", fr[t], None)]
        imgs += [(f"v{k}", img, rd) for k, (img, rd) in enumerate(renders)]
        imgs.append(("v0+lines", renders[0][0], renders[0][1]))
        tiles = []
        for name, img, rd in imgs:
            c = cv2.resize(img[y0:y1, x0:x1], None, fx=z, fy=z, interpolation=cv2.INTER_NEAREST).copy()
            if name.endswith("lines"):
                for m, col in ((mesh[t], (0, 255, 0)), (rd, (255, 0, 0))):
                    for idx in (EYE_UPPER[e], EYE_LOWER[e]) if m is not None else ():
                        q = ((m[list(idx), :2] - (x0 - 0.5, y0 - 0.5)) * z).round().astype(np.int32)
                        cv2.polylines(c, [q], False, col, 1, cv2.LINE_AA)
            lab = f"{name} {row['key'][-12:]} {s}->{t} e{e}"
            cv2.putText(c, lab, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 0), 1, cv2.LINE_AA)
            k = {"src": None, "real": None}.get(name, 0)
            txt = f"asked {row['asked']:.2f} x{row['ratio']:.2f}"
            if name.startswith("v") and not name.endswith("lines"):
                r = row["read"][int(name[1:])]
                txt = f"read {r:.2f}" if r is not None else "read -"
            elif name.endswith("lines"):
                txt = f"up {row['up']:+.3f}"
            del k
            cv2.putText(c, txt, (3, c.shape[0] - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 0), 1, cv2.LINE_AA)
            tiles.append(np.pad(c, ((0, 4), (0, 4), (0, 0))))
        rows.append(np.concatenate(tiles, 1))
    write_rows(rows, args.out)
    print(f"wrote {args.out} ({len(rows)} eyes)")


if __name__ == "__main__":
    main()
