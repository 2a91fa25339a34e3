"""Close-ups of both eyes in the README main command's output, two or more renders side by side.

    python benchmarks/eyes_closeups.py OUT.png BEFORE.mp4 AFTER.mp4 [...] [--frames 77,90,...] [--labels a,b]

Each row is one frame; each column one video, the eyes' box (found by mediapipe's face mesh on the first video's
frame, both eye contours and brows' bottom) at x4, nearest-neighbour so the pixels show.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from pdfgc.media.mesh import FaceMeshDetector
from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER

FRAMES = (77, 90, 92, 94, 96, 98, 176, 254)


def read(path: Path, want: set[int]) -> dict[int, np.ndarray]:
    cap, out, i = cv2.VideoCapture(str(path)), {}, 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        if i in want:
            out[i] = cv2.cvtColor(f, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("videos", nargs="+")
    ap.add_argument("--frames", default=",".join(map(str, FRAMES)))
    ap.add_argument("--labels", default="")
    ap.add_argument("--zoom", type=int, default=4)
    a = ap.parse_args()
    frames = [int(v) for v in a.frames.split(",")]
    vids = [read(Path(v), set(frames)) for v in a.videos]
    labels = a.labels.split(",") if a.labels else [Path(v).stem for v in a.videos]
    det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
    rows = []
    for f in frames:
        faces = det.detect(vids[0][f])
        pts = np.concatenate([faces[0][list(EYE_UPPER[e]) + list(EYE_LOWER[e]), :2] for e in range(2)])
        (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
        px, py = 0.12 * (x1 - x0), 0.6 * (y1 - y0)
        x0, x1, y0, y1 = int(x0 - px), int(x1 + px), int(y0 - py), int(y1 + py)
        row = []
        for k, v in enumerate(vids):
            t = cv2.resize(v[f][y0:y1, x0:x1], None, fx=a.zoom, fy=a.zoom, interpolation=cv2.INTER_NEAREST)
            cv2.putText(t, f"{labels[k]} f{f}", (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1,
                        cv2.LINE_AA)
            row.append(np.pad(t, ((0, 0), (0, 4), (0, 0))))
        rows.append(np.concatenate(row, 1))
    w = max(r.shape[1] for r in rows)
    img = np.concatenate([np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0))) for r in rows], 0)
    cv2.imwrite(a.out, cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(f"wrote {a.out} ({len(frames)} frames x {len(vids)} videos)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
