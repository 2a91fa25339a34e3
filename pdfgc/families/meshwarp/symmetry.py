"""The far side of a turned head from the mirrored near side (issue 19): soft symmetry for the mesh-warp renderer.

A portrait turned away shows one side of the face edge-on; a target that faces the camera needs that side's
triangles stretched several times, a smear. Faces are nearly symmetric, so such a triangle can instead be sampled
from its mirror partner on the near side, through the affine map from the target triangle to the partner's source
triangle (a reflection). The partner's detail is kept and the stretched warp's shading is kept (its low
frequencies: the two sides of a face are lit differently), as face frontalisation's soft symmetry does.

The mirror is used only where the warp has no pixels: per face triangle, the weight rises from 0 at a
``STRETCH_FROM``-fold stretch to 1 at ``STRETCH_FULL``-fold, times how much less stretched the mirror partner is
(from ``GAIN_FROM`` to ``GAIN_FULL`` times less); a frontal portrait (both sides alike) is left as it is.
"""
from __future__ import annotations

import cv2
import numpy as np

from pdfgc.evaluation.signals import FACE_TEMPLATE
from pdfgc.media.mesh_indices import RIGID_POINTS

STRETCH_FROM = 2.0   # stretch (source pixels per target pixel, smallest singular value) where the mirror starts
STRETCH_FULL = 3.0   # ... and where it takes over (the renderer's own "unreliable" level)
# the mirror comes in where its partner is GAIN_FROM times less stretched, fully at GAIN_FULL times (anne.png, a
# nearly frontal portrait, turned 15 deg: at 1x / 2x the mirror touched 1500 px of the near cheek and the yaw
# mediapipe reads back fell from 13.6 to 12.9 deg)
GAIN_FROM = 1.5
GAIN_FULL = 3.0
SHADING_SIGMA = 0.025  # of the image size: the blur that separates shading (kept) from detail (mirrored)


def mirror_partners(mesh: np.ndarray) -> np.ndarray:
    """(478,) index of each point's left-right partner: the mesh brought to the frontal pose template, reflected in
    its midline and matched to the nearest point (midline points are their own partners)."""
    src = mesh[RIGID_POINTS].astype(np.float64)
    dst = np.asarray(FACE_TEMPLATE, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    rot = (u * np.array([1.0, 1.0, d])) @ vt
    p = (mesh.astype(np.float64) - ms) @ rot.T
    p[:, 0] -= p[RIGID_POINTS, 0].mean()
    q = p * np.array([-1.0, 1.0, 1.0])
    dist = ((q[:, None, :] - p[None, :, :]) ** 2).sum(-1)
    return np.argmin(dist, axis=1)


def stretch_of(coef: np.ndarray) -> np.ndarray:
    """(T,) stretch factor of each target -> source affine (1 / its smallest singular value)."""
    a, b, c, d = (coef[:, k].astype(np.float64) for k in (0, 1, 3, 4))
    # the smaller singular value of [[a, b], [c, d]] in closed form (np.linalg.svd cost ~1.3 ms a call here)
    sq = a * a + b * b + c * c + d * d
    det = a * d - b * c
    s_min = np.sqrt(np.maximum(0.5 * (sq - np.sqrt(np.maximum(sq * sq - 4.0 * det * det, 0.0))), 0.0))
    return 1.0 / np.maximum(s_min, 1e-6)


def _ramp(x: np.ndarray) -> np.ndarray:
    t = np.clip((np.log2(np.maximum(x, 1e-6)) - np.log2(STRETCH_FROM)) / np.log2(STRETCH_FULL / STRETCH_FROM), 0, 1)
    return t * t * (3.0 - 2.0 * t)


def mirror_weights(coef_face: np.ndarray, coef_mirror: np.ndarray, front: np.ndarray) -> np.ndarray:
    """(T,) weight of the mirrored sampling per face triangle (0 for triangles not drawn)."""
    st, sm = stretch_of(coef_face), stretch_of(coef_mirror)
    # the partner must be clearly less stretched (a symmetric portrait's partners are stretched alike: no gain)
    gain = np.clip((np.log2(st / sm) - np.log2(GAIN_FROM)) / np.log2(GAIN_FULL / GAIN_FROM), 0.0, 1.0)
    w = _ramp(st) * gain
    return np.where(front, w, 0.0)


def _lowpass(x: np.ndarray, sigma: float) -> np.ndarray:
    """Normalised Gaussian low-pass of the first 3 channels of (h,w,4) x weighted by its 4th channel."""
    h, w = x.shape[:2]
    k = 4 if min(h, w) >= 16 else 1
    small = cv2.resize(x, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA) if k > 1 else x
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, sigma / k))
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) if k > 1 else small
    return big[..., :3] / (big[..., 3:] + 1e-4)


def mirror_fill(image: np.ndarray, out: np.ndarray, idmap: np.ndarray, weights: np.ndarray,
                coef_mirror: np.ndarray, dst_tri: np.ndarray) -> bool:
    """Blend the mirrored sampling into `out` (in place) where ``weights[idmap]`` > 0 (``dst_tri`` (T,3,2): the
    face triangles in the target); returns whether any pixel was changed.
    ``idmap`` ids >= len(weights) are not face triangles."""
    n = len(weights)
    weights = np.where(weights >= 0.05, weights, 0.0)
    used = weights > 0
    if not used.any():
        return False
    s = out.shape[0]
    pad = int(round(3 * SHADING_SIGMA * s)) + 2
    p = dst_tri[used].reshape(-1, 2)
    x0, y0 = (max(int(v) - pad, 0) for v in np.floor(p.min(0)))
    x1, y1 = (min(int(v) + pad + 1, s) for v in np.ceil(p.max(0)))
    if x1 <= x0 or y1 <= y0:
        return False
    wt = np.concatenate([weights, [0.0]]).astype(np.float32)
    coef_mirror = np.concatenate([coef_mirror, [[1, 0, 0, 0, 1, 0]]])
    ids = np.minimum(idmap[y0:y1, x0:x1], n)
    wmap_roi = wt[ids]
    if not (wmap_roi > 0).any():
        return False
    # smooth the weight across triangle edges, but never beyond the pixels that had it
    w = np.minimum(cv2.GaussianBlur(wmap_roi, (0, 0), max(1.0, 0.006 * s)) * 1.5, wmap_roi > 0)
    ys, xs = np.nonzero(w > 0)
    # the mirrored samples of those pixels only (the region around them is mostly not stretched)
    c = coef_mirror[ids[ys, xs]].astype(np.float32)
    fx, fy = (xs + x0).astype(np.float32), (ys + y0).astype(np.float32)
    m = len(ys)
    rows = -(-m // 256)  # remap's maps as (rows, 256): a map may not be wider than 32767
    mx = np.zeros(rows * 256, np.float32)
    my = np.zeros(rows * 256, np.float32)
    mx[:m] = c[:, 0] * fx + c[:, 1] * fy + c[:, 2]
    my[:m] = c[:, 3] * fx + c[:, 4] * fy + c[:, 5]
    mirrored = cv2.remap(image, mx.reshape(rows, 256), my.reshape(rows, 256), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3)[:m].astype(np.float32)
    region = out[y0:y1, x0:x1]
    here = region[ys, xs].astype(np.float32)
    # shading from the warp, detail from the mirror (the low-pass taken over the blended pixels only, at a quarter
    # of the resolution: a wide blur at full size cost ~10 ms a frame at 512 px)
    diff = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    diff[ys, xs, :3] = here - mirrored
    diff[ys, xs, 3] = 1.0
    fill = mirrored + _lowpass(diff, SHADING_SIGMA * s)[ys, xs]
    a = w[ys, xs][:, None]
    region[ys, xs] = np.clip(here * (1.0 - a) + fill * a + 0.5, 0, 255).astype(np.uint8)
    return True
