"""Strips of the README's main command's output: frames 15, 60, ..., 330, their mouths close up, and its blinks
close up.

    python benchmarks/main_command_strip.py outputs/anne.mp4 [--out benchmarks/results/meshwarp]

Writes ``strip_main_command.png`` (224 px frames), ``strip_main_command_mouths.png`` (the first six, mouth boxes at
x2) and ``strip_main_command_eyes.png`` (the first three blinks, 3 frames either side of the deepest, both eyes at x2,
each labelled with its frame number and eye aspect ratio). Boxes and EAR come from mediapipe's face mesh on each
frame (``pdfgc.media.mesh``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from pdfgc.media.mesh import FaceMeshDetector
from pdfgc.media.mesh_indices import EAR_POINTS, EYE_LOWER, EYE_UPPER, LIPS_OUTER

STRIP_FRAMES = tuple(range(15, 331, 45))   # 8 frames spread over the 372-frame job
CLOSE = 2                                    # close-up magnification


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    cap.release()
    if not frames:
        raise SystemExit(f"main_command_strip: {path}: no frames could be read")
    return frames


def box(points: np.ndarray, pad: float, shape, aspect: float) -> tuple[int, int, int, int]:
    """The points' box widened by ``pad`` and given the height ``aspect`` x its width (a shut eye has none)."""
    lo, hi = points.min(0), points.max(0)
    c, w = (lo + hi) / 2, (hi[0] - lo[0]) / 2 * (1 + pad)
    half = np.array([w, w * aspect])
    x0, y0 = np.maximum(0, c - half).astype(int)
    x1, y1 = np.minimum([shape[1], shape[0]], c + half).astype(int)
    return int(x0), int(y0), int(x1), int(y1)


def ear(lm: np.ndarray) -> float:
    p = lm[EAR_POINTS, :2]
    v = np.linalg.norm(p[:, 1] - p[:, 5], axis=1) + np.linalg.norm(p[:, 2] - p[:, 4], axis=1)
    return float(np.mean(v / (2 * np.linalg.norm(p[:, 0] - p[:, 3], axis=1))))


def crop(frame: np.ndarray, b, size: tuple[int, int]) -> np.ndarray:
    x0, y0, x1, y1 = b
    return cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_CUBIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/meshwarp"))
    args = ap.parse_args()
    frames = read_frames(args.video)
    picked = [i for i in STRIP_FRAMES if i < len(frames)]
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        marks = [det.detect(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames]
    lm = [m[0][:, :2] if m else None for m in marks]   # pixels, the largest face
    args.out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out / "strip_main_command.png"), np.hstack([frames[i] for i in picked]))
    mouths = []
    for i in picked[:6]:
        if lm[i] is None:
            continue
        w, h = 120 * CLOSE, 75 * CLOSE
        b = box(lm[i][list(LIPS_OUTER)], 0.6, frames[i].shape, h / w)
        mouths.append(crop(frames[i], b, (w, h)))
    if mouths:
        cv2.imwrite(str(args.out / "strip_main_command_mouths.png"), np.hstack(mouths))
    e = np.array([ear(p) if p is not None else np.nan for p in lm])
    low = np.nanmedian(e) * 0.6   # a blink: a local minimum below 0.6 x the clip's median EAR
    minima = [i for i in range(1, len(e) - 1) if e[i] < low and e[i] <= e[i - 1] and e[i] <= e[i + 1]]
    blinks = [i for k, i in enumerate(minima) if k == 0 or i - minima[k - 1] > 4][:3]
    idx = [j for side in (0, 1) for j in EYE_UPPER[side] + EYE_LOWER[side]]
    rows = []
    for c in blinks:
        tiles = []
        for i in range(max(0, c - 3), min(len(frames), c + 4)):
            p = lm[i] if lm[i] is not None else lm[c]
            tile = crop(frames[i], box(p[idx], 0.3, frames[i].shape, 40 / 150), (150 * CLOSE, 40 * CLOSE))
            cv2.putText(tile, f"{i}: EAR {e[i]:.3f}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1)
            tiles.append(tile)
        rows.append(np.hstack(tiles + [np.zeros_like(tiles[0])] * (7 - len(tiles))))
    if rows:
        cv2.imwrite(str(args.out / "strip_main_command_eyes.png"), np.vstack(rows))
    shut = blinks
    print(f"frames {len(frames)}; strip {picked}; blinks (deepest frame) at {shut}")


if __name__ == "__main__":
    main()
