"""Shot detection for `pdfgc prepare`: content cuts, face jumps, faceless runs, and per-shot alignment matrices."""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..media.geometry import MEDIAPIPE_TEMPLATE, apply_affine, similarity_transform
from .config import PrepareConfig
from .corpus import FPS


def frame_signature(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(HSV hue-saturation histogram, 32x32 grey thumbnail) of a frame, for shot-change detection."""
    small = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).astype(np.float32)
    hist /= max(float(hist.sum()), 1.0)
    grey = cv2.cvtColor(cv2.resize(small, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return hist, grey.astype(np.float32)


def content_change(a, b) -> tuple[float, float]:
    """(histogram distance, mean grey difference) between two frame signatures."""
    return float(cv2.compareHist(a[0], b[0], cv2.HISTCMP_BHATTACHARYYA)), float(np.abs(a[1] - b[1]).mean())


def is_content_cut(hist: float, grey: float, cfg: PrepareConfig) -> bool:
    return hist > cfg.cut_hist or grey > cfg.cut_grey or (hist > cfg.cut_hist_soft and grey > cfg.cut_grey_soft)


def _is_face_jump(p: np.ndarray, q: np.ndarray, cfg: PrepareConfig) -> bool:
    """p, q: (3,2) eye, eye, mouth centres of consecutive frames. The eyes' midpoint is used, not the mouth, so
    that speech and expressions (a mouth snapping open) never count as a jump."""
    dp, dq = float(np.linalg.norm(p[1] - p[0])), float(np.linalg.norm(q[1] - q[0]))
    if not (dp > 0 and dq > 0):
        return False
    move = float(np.linalg.norm(q[:2].mean(0) - p[:2].mean(0))) / (0.5 * (dp + dq))
    return move > cfg.cut_face_jump or abs(dq / dp - 1.0) > cfg.cut_face_scale


def find_shots(content: np.ndarray, points: np.ndarray, cfg: PrepareConfig
               ) -> tuple[list[tuple[int, int]], list[dict], int]:
    """Split frames [0, N) into shots.

    content: (N,) bool, True where frame t starts a new shot by its content (t >= 1). points: (N,3,2) eye/eye/mouth
    centres, NaN where no face. Returns (shots as [start, end), dropped ranges [{start, end, code, reason}],
    number of cuts).
    """
    n = len(points)
    found = np.isfinite(points).all(axis=(1, 2))
    max_gap = max(1, int(round(cfg.max_face_gap_s * FPS)))
    cut = np.zeros(n, bool)
    cut[1:] = content[1:]
    last = None
    for t in range(n):
        if found[t]:
            if last is not None and t - last <= max_gap and _is_face_jump(points[last], points[t], cfg):
                cut[t] = True
            last = t
    cuts = int(cut.sum())
    # faceless runs longer than max_gap are dropped
    keep = np.ones(n, bool)
    dropped = []
    t = 0
    while t < n:
        if not found[t]:
            e = t
            while e < n and not found[e]:
                e += 1
            if e - t > max_gap and found.any():
                keep[t:e] = False
                dropped.append({"start": t, "end": e, "code": "no_face",
                                "reason": f"no face in frames {t}-{e - 1} ({(e - t) / FPS:.2f} s)"})
            t = e
        else:
            t += 1
    shots = []
    start = None
    for t in range(n + 1):
        boundary = t == n or not keep[t] or cut[t]
        if boundary and start is not None:
            shots.append((start, t))
            start = None
        if t < n and keep[t] and start is None:
            start = t
    return shots, dropped, cuts


def _fill_nearest(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(found)
    out = points.copy()
    for i in np.flatnonzero(~found):
        out[i] = points[idx[np.abs(idx - i).argmin()]]
    return out


def shot_matrices(points: np.ndarray) -> np.ndarray:
    """(n,2,3) crop matrices of one shot: the computation of ``SequenceAligner.finalize`` on these frames' points.

    Kept here because the aligner aligns a whole video and a clip with cuts must be aligned shot by shot; the tests
    check it equals ``finalize`` on a clip without cuts.
    """
    found = np.isfinite(points).all(axis=(1, 2))
    pts = _fill_nearest(points, found)
    base = similarity_transform(pts[found].mean(0), MEDIAPIPE_TEMPLATE)
    mats = np.empty((len(pts), 2, 3))
    previous_bias = None
    for i in range(len(pts)):
        bias = MEDIAPIPE_TEMPLATE[2] - apply_affine(base, pts[i, 2])
        if previous_bias is not None:
            bias = 0.2 * previous_bias + 0.8 * bias  # PC-AVS: smoothed mouth correction
        previous_bias = bias
        mats[i] = base
        mats[i, :, 2] += bias
    return mats


def split_even(start: int, end: int, max_frames: int) -> list[tuple[int, int]]:
    n = end - start
    pieces = max(1, math.ceil(n / max_frames))
    bounds = [start + round(k * n / pieces) for k in range(pieces + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(pieces)]
