"""Closing lids from the portrait's own upper-lid skin (issue 19), for the mesh-warp renderer's eyes.

An upper eyelid is a sheet of skin between the crease and the lash line. When the target's lid comes down, the
portrait's lid band (from ``CREASE`` eye widths above its upper-lid contour down to the contour, where the lashes
are) is stretched, column by column in the eye's own frame, from the same crease down to the target's upper-lid
contour: the lid keeps its skin texture, and the portrait's real lashes arrive at the new lid edge. Just below the
target contour (``LASH`` eye widths, as the lid closes) the lash row is held, covering the slivers of white that the
squeezed eye opening leaves. The sheet fades in over the band's top fifth (it meets the warp's own lid there) and
is weighted by how closed the eye is, so an open eye is left exactly as the warp draws it.
"""
from __future__ import annotations

import cv2
import numpy as np

from pdfgc.evaluation.signals import EAR_POINTS
from pdfgc.families.meshwarp import topology

CREASE = 0.32   # eye widths from the upper-lid contour up to where the lid sheet starts (about the lid crease)
# On 40 closed-eye pairs of training clips, the EAR mediapipe reads back (MAE to the target's): 0.057 with
# LASH 0.04 / LOWER 0.12, 0.050 with 0.08 / 0.2, 0.049 with 0.08 / 0.3, 0.053 with 0.12 / 0.2 (painted lids: 0.053)
LASH = 0.08     # eye widths below the target's lid contour still covered by the lash row when fully closed
LOWER = 0.2     # eye widths below the lash row covered by the lower lid's skin (fading out) when fully closed
WATERLINE = 0.1  # eye widths below mediapipe's lower contour where the lower lid's skin starts


def _eye_frame(mesh: np.ndarray, e: int):
    """Origin (corner), unit axis along the eye, unit axis across it (pointing down the face), width in pixels."""
    a, b = mesh[EAR_POINTS[e, 0], :2].astype(np.float64), mesh[EAR_POINTS[e, 3], :2].astype(np.float64)
    d = b - a
    w = float(np.hypot(*d))
    ax = d / max(w, 1e-6)
    n = np.array([-ax[1], ax[0]])
    if n[1] < 0:
        n = -n
    return a, ax, n, max(w, 1e-6)


def _upper_curve(mesh: np.ndarray, e: int, frame):
    return _curve(mesh, topology.EYE_UPPER[e], frame)


def _curve(mesh: np.ndarray, idx, frame):
    a, ax, n, w = frame
    p = mesh[list(idx), :2] - a
    u, t = p @ ax / w, p @ n / w
    order = np.argsort(u)
    return u[order], t[order]


def lid_sheet(image: np.ndarray, source: np.ndarray, target: np.ndarray, e: int, box, closed: float,
              shut: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The lid of eye `e` over `box` (x0,y0,x1,y1) of the target frame: (h,w,3) float32 pixels sampled from the
    portrait `image` (whose mesh is `source`) and their (h,w) float32 weight in [0,1] (0 where the lid sheet
    does not reach, 0 everywhere when ``closed`` is 0). ``closed`` weighs the sheet, ``shut`` (default: closed)
    how much of the lash row and lower lid covers what is left of the opening (only for an eye nearly shut)."""
    shut = closed if shut is None else shut
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if closed <= 0.0 or h < 2 or w < 2:
        return np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    fs, ft = _eye_frame(source, e), _eye_frame(target, e)
    us, ts = _upper_curve(source, e, fs)
    ut, tt = _upper_curve(target, e, ft)
    a, ax, n, wt = ft
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    px, py = xx - a[0], yy - a[1]
    u = (px * ax[0] + py * ax[1]) / wt
    t = (px * n[0] + py * n[1]) / wt
    inside_u = (u > 0.0) & (u < 1.0)
    uc = np.clip(u, 0.0, 1.0)
    top_s = np.interp(uc, us, ts)          # the portrait's lid contour (its lash line)
    top_t = np.interp(uc, ut, tt)          # the target's
    crease = top_s - CREASE
    span = np.maximum(top_t - crease, 1e-3)
    f = (t - crease) / span                # 0 at the crease, 1 at the target's lid contour
    lash = LASH * shut
    # the stretch goes to the skin, not the lash line: g(f) = a f + b f^2 with g(1) = 1 and slope 1 (no stretch,
    # source pixels per target pixel) at the lid edge, so the lashes keep their thickness (a thickened dark band
    # reads as a narrow open eye)
    k = np.clip(span / np.maximum(top_s - crease, 1e-3), 1.0, 2.0)
    fc = np.clip(f, 0.0, 1.0)
    f_src = (2.0 - k) * fc + (k - 1.0) * fc * fc
    t_src = crease + f_src * (top_s - crease)
    a_s, ax_s, n_s, ws = fs
    sx = a_s[0] + ws * (uc * ax_s[0] + t_src * n_s[0])
    sy = a_s[1] + ws * (uc * ax_s[1] + t_src * n_s[1])
    # lid pixels from the crease down to the lid contour (plus the held lash row), fading in at the top and toward
    # the corners, where the sheet is thin and the warp's own lid already fits
    below = t - top_t
    weight = (np.clip(f / 0.2, 0.0, 1.0) * (below <= lash) * np.clip(np.minimum(u, 1.0 - u) / 0.08, 0.0, 1.0)
              * inside_u)
    # no stretch, no sheet: only where the target lid came down
    weight *= np.clip((top_t - top_s) / 0.05, 0.0, 1.0)
    # under the lash row, as the eye shuts: the portrait's lower-lid skin (from below its waterline) pulled up to
    # meet the lid, over what is left of the squeezed opening (mediapipe's lower contour runs on the waterline,
    # so the warp leaves a sliver of white there)
    lo_s = _curve(source, topology.EYE_LOWER[e], fs)
    lower = (below > lash) & (below <= lash + LOWER)
    t_low = np.interp(uc, *lo_s) + WATERLINE + (below - lash)
    sx = np.where(lower, a_s[0] + ws * (uc * ax_s[0] + t_low * n_s[0]), sx)
    sy = np.where(lower, a_s[1] + ws * (uc * ax_s[1] + t_low * n_s[1]), sy)
    w_low = (lower * np.clip(2.5 * (1.0 - (below - lash) / LOWER), 0.0, 1.0) * shut
             * np.clip(np.minimum(u, 1.0 - u) / 0.08, 0.0, 1.0) * inside_u * np.clip((top_t - top_s) / 0.05, 0.0, 1.0))
    pix = cv2.remap(image, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    # a touch of blur: the lash row and the lower lid meet on a pixel boundary
    pix = cv2.GaussianBlur(pix.astype(np.float32), (3, 3), 0.7)
    return pix, np.maximum(weight * closed, w_low).astype(np.float32)
