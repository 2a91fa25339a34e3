"""Small 2-D helpers shared by the mesh-warp renderer's core (``warp.py``) and its eyes and mouth (``eyes.py``,
``mouth.py``): anti-aliased polygon masks, a smoothstep, the eye aspect ratio of a mesh and clipped bounding boxes."""
from __future__ import annotations

import math

import cv2
import numpy as np

from pdfgc.media.mesh_indices import EAR_POINTS

__all__ = ["poly_mask", "smoothstep", "eye_aspect", "bounding_box"]


def poly_mask(shape: tuple[int, int], poly: np.ndarray, offset=(0.0, 0.0)) -> np.ndarray:
    """Anti-aliased float32 mask of a polygon (pixel coordinates, minus offset) in an array of `shape`."""
    m = np.zeros(shape, np.uint8)
    pts = np.round((poly[:, :2] - np.asarray(offset)) * 16).astype(np.int32)
    cv2.fillPoly(m, [pts], 255, cv2.LINE_AA, 4)
    return m.astype(np.float32) * (1.0 / 255.0)


def smoothstep(e0: float, e1: float, x):
    """Hermite step from 0 at e0 to 1 at e1 (either order), float64."""
    t = np.clip((np.asarray(x, dtype=np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def smoothstep1(e0: float, e1: float, x: float) -> float:
    """``smoothstep`` for one Python float (no array round trip: per-eye, per-frame callers)."""
    t = min(max((x - e0) / (e1 - e0), 0.0), 1.0)
    return t * t * (3.0 - 2.0 * t)


def eye_aspect(mesh: np.ndarray) -> np.ndarray:
    """(2,) eye aspect ratio of one (478,3) mesh, per eye (``mesh_indices.EAR_POINTS``' order), from its 2-D points."""
    p = mesh[EAR_POINTS, :2]
    d = lambda i, j: np.linalg.norm(p[:, i] - p[:, j], axis=-1)  # noqa: E731
    return (d(1, 5) + d(2, 4)) / (2.0 * np.maximum(d(0, 3), 1e-6))


def box_of_extent(lo, hi, margin: float, size: int) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) box of the points whose (x, y) minimum is `lo` and maximum `hi` (floats) plus margin,
    clipped to the image (x1/y1 exclusive): for callers that already hold the extents (the eyes, per frame)."""
    return (min(max(math.floor(lo[0] - margin), 0), size), min(max(math.floor(lo[1] - margin), 0), size),
            min(max(math.ceil(hi[0] + margin) + 1, 0), size), min(max(math.ceil(hi[1] + margin) + 1, 0), size))


def bounding_box(points: np.ndarray, margin: float, size: int) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) bounding box of points plus margin, clipped to the image (x1/y1 exclusive)."""
    p = points[:, :2]
    return box_of_extent(p.min(0).tolist(), p.max(0).tolist(), margin, size)
