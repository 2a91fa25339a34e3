"""Per-frame labels (pose, eyes) and per-clip statistics of a prepared clip, from its crop mesh."""
from __future__ import annotations

import math

import numpy as np

from ..evaluation.signals import eye_aspect_ratio, head_transform, iris_position, rotation_to_angles
from .corpus import CROP_SIZE


def pose_labels(mesh: np.ndarray) -> np.ndarray:
    """(T,6) float32: yaw, pitch, roll (degrees), tx, ty, scale (see the module docstring)."""
    rot, scale, trans = head_transform(mesh)
    centre = CROP_SIZE / 2 - 0.5
    out = np.concatenate([rotation_to_angles(rot), (trans[:, :2] - centre) / CROP_SIZE, scale[:, None] / CROP_SIZE], 1)
    return out.astype(np.float32)


def eye_labels(mesh: np.ndarray) -> np.ndarray:
    """(T,6) float32: EAR left, EAR right, iris x left, iris y left, iris x right, iris y right (image left/right)."""
    ear = eye_aspect_ratio(mesh)
    iris = iris_position(mesh)  # (T,2,2): x in [0,1] along the corner line, y across it, over the eye width
    ix, iy = 2.0 * (iris[..., 0] - 0.5), 2.0 * iris[..., 1]
    return np.stack([ear[:, 0], ear[:, 1], ix[:, 0], iy[:, 0], ix[:, 1], iy[:, 1]], 1).astype(np.float32)


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return (float(x.mean()), float(x.std())) if x.size else (float("nan"), float("nan"))


def clip_stats(pose: np.ndarray, eye: np.ndarray, mouth: np.ndarray, valid: np.ndarray, face_px: np.ndarray) -> dict:
    """Per-clip statistics over the valid frames (means and standard deviations of every label)."""
    v = valid if valid.any() else np.ones_like(valid)
    stats: dict = {"valid_frames": int(valid.sum()), "valid_fraction": round(float(valid.mean()), 4)}
    for j, name in enumerate(("yaw", "pitch", "roll", "tx", "ty", "scale")):
        stats[f"{name}_mean"], stats[f"{name}_std"] = _mean_std(pose[v, j])
    ear = eye[v, :2].mean(1)
    stats["ear_mean"], stats["ear_std"] = _mean_std(ear)
    stats["ear_min"] = float(np.min(ear)) if ear.size else float("nan")
    stats["iris_x_mean"], stats["iris_x_std"] = _mean_std(eye[v][:, [2, 4]].mean(1))
    stats["iris_y_mean"], stats["iris_y_std"] = _mean_std(eye[v][:, [3, 5]].mean(1))
    stats["mouth_mean"], stats["mouth_std"] = _mean_std(mouth[v])
    stats["face_px_mean"], _ = _mean_std(face_px[v])
    return {k: (round(x, 6) if isinstance(x, float) and math.isfinite(x) else x) for k, x in stats.items()}
