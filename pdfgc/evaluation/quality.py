"""Image quality against a ground-truth video (self-reenactment): PSNR, SSIM and face-region L1."""
from __future__ import annotations

import cv2
import numpy as np


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def face_mask(landmarks_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Convex hull of the face-mesh points as a boolean mask."""
    mask = np.zeros(shape, np.uint8)
    pts = landmarks_xy[np.isfinite(landmarks_xy).all(1)].astype(np.int32)
    if len(pts) >= 3:
        cv2.fillConvexPoly(mask, cv2.convexHull(pts), 1)
    return mask.astype(bool)


def face_l1(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean absolute difference (0..255) inside the mask."""
    if not mask.any():
        return float("nan")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64))[mask].mean())
