"""Closing lids from the portrait's own upper-lid skin (issue 19), for the mesh-warp renderer's eyes: the lid
sheet (``lid_sheet``, ``lids="sheet"``, below) and the sliding lid (``sliding_lid``, ``lids="skin"``, the default:
at the end of this file).

An upper eyelid is a sheet of skin between the crease and the lash line. When the target's lid comes down, the
portrait's lid band (from ``CREASE`` eye widths above its upper-lid contour down to the contour, where the lashes
are) is stretched, column by column in the eye's own frame, from the same crease down to the target's upper-lid
contour: the lid keeps its skin texture. As the eye shuts, the portrait's lashes (``SKIP`` eye widths above its
contour) are left out of the skin and flipped under the target's lid margin (``LASH`` eye widths, roots at the
margin), as a closed eye's lashes hang, covering the slivers of white that the squeezed eye opening leaves: carried
down above the margin they read as a dark opening. The sheet's skin is brought to the colour of the skin just above
the crease (``LIT``): the open eye's lid band lies in the brow's shadow, a shut lid does not. The sheet fades in
over the band's top fifth (it meets the warp's own lid there) and is weighted by how closed the eye is, so an open
eye is left exactly as the warp draws it.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from pdfgc.families.meshwarp.shapes import smoothstep1
from pdfgc.media.mesh_indices import EAR_POINTS, EYE_LOWER, EYE_UPPER, UPPER_FOLD

CREASE = 0.4    # eye widths from the upper-lid contour up to where the lid sheet starts (about the lid crease)
# EAR mediapipe reads back on closed-eye pairs, MAE to the target's (122 pairs of training clips / 125 held-out):
# the lashes carried down above the lid margin (before): 0.059 / 0.067; flipped under it (SKIP = LASH = 0.12,
# CREASE 0.4, chosen on the training pairs): 0.051 / 0.054; the skin lit like the skin above the crease (LIT):
# 0.042 / 0.043. Still too open (+0.03); SKIP = LASH = 0.16, LOWER 0.4 or the sheet at full weight from 0.45-0.6x
# the portrait's EAR did no better on the training pairs, nor did drawing the target's lid lower (0.03 EAR units)
# or a crease 1.4-1.8x the height of mediapipe's fold ring above the lid.
LASH = 0.12     # eye widths below the target's lid contour covered by the (flipped) lash row when fully closed
LOWER = 0.2     # eye widths below the lash row covered by the lower lid's skin (fading out) when fully closed
SKIP = 0.12     # eye widths above the portrait's lid contour taken as lashes (not skin) when the eye is shut
LIT = 1.0       # how far the sheet's skin is brought to the colour above the crease (1: all the way)
WATERLINE = 0.1  # eye widths below mediapipe's lower contour where the lower lid's skin starts
# the portrait's lashes flipped under the margin (above); False: skin down over the lash row and an even painted lash
# line (eyes.py), tried for issue 19's second round (README, "Real pixels": no better for mediapipe's read-back)
FLIP_LASHES = True
CORNER = 0.08   # eye widths from each corner over which the sheet fades out (the warp's own lid fits there)


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
    return _curve(mesh, EYE_UPPER[e], frame)


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
    # a closed lid is skin down to its margin with the lashes hanging below it; the portrait's open-eye lashes sit
    # above its lid contour, where, carried down with the skin, they read as a dark opening (mediapipe then reads
    # the eye as open). So the sheet takes the skin from the crease down to SKIP above the contour, and the lash
    # band (SKIP thick, growing with how shut the eye is) is flipped under the target's lid margin, roots first.
    skip = SKIP * shut
    skin_end = top_s - skip
    fc = np.clip(f, 0.0, 1.0)
    t_src = crease + fc * (skin_end - crease)
    below0 = t - top_t
    if FLIP_LASHES:
        t_src = np.where(below0 > 0.0, top_s - skip * np.clip(below0 / max(lash, 1e-3), 0.0, 1.0), t_src)
    else:   # skin down over the lash row too (the renderer draws an even lash line along the margin)
        t_src = np.where(below0 > 0.0, skin_end, t_src)
    a_s, ax_s, n_s, ws = fs
    sx = a_s[0] + ws * (uc * ax_s[0] + t_src * n_s[0])
    sy = a_s[1] + ws * (uc * ax_s[1] + t_src * n_s[1])
    # lid pixels from the crease down to the lid contour (plus the held lash row), fading in at the top and toward
    # the corners, where the sheet is thin and the warp's own lid already fits
    below = t - top_t
    weight = (np.clip(f / 0.2, 0.0, 1.0) * (below <= lash) * np.clip(np.minimum(u, 1.0 - u) / CORNER, 0.0, 1.0)
              * inside_u)
    # no stretch, no sheet: only where the target lid came down
    weight *= np.clip((top_t - top_s) / 0.05, 0.0, 1.0)
    # under the lash row, as the eye shuts: the portrait's lower-lid skin (from below its waterline) pulled up to
    # meet the lid, over what is left of the squeezed opening (mediapipe's lower contour runs on the waterline,
    # so the warp leaves a sliver of white there)
    lo_s = _curve(source, EYE_LOWER[e], fs)
    lower = (below > lash) & (below <= lash + LOWER)
    t_low = np.interp(uc, *lo_s) + WATERLINE + (below - lash)
    sx = np.where(lower, a_s[0] + ws * (uc * ax_s[0] + t_low * n_s[0]), sx)
    sy = np.where(lower, a_s[1] + ws * (uc * ax_s[1] + t_low * n_s[1]), sy)
    w_low = (lower * np.clip(2.5 * (1.0 - (below - lash) / LOWER), 0.0, 1.0) * shut
             * np.clip(np.minimum(u, 1.0 - u) / CORNER, 0.0, 1.0) * inside_u
             * np.clip((top_t - top_s) / 0.05, 0.0, 1.0))
    pix = cv2.remap(image, sx.astype(np.float32), sy.astype(np.float32), cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_REPLICATE)
    # a touch of blur: the lash row and the lower lid meet on a pixel boundary
    pix = cv2.GaussianBlur(pix.astype(np.float32), (3, 3), 0.7)
    # a shut lid is lit like the skin above its crease (the eyeball bulges it toward the light); the open eye's
    # lid band is in the brow's shadow, and a dark band over the eye reads as an opening: the sheet's skin takes
    # the colour of the skin just above the crease (gain per channel, 1-1.6)
    skin = (weight > 0) & (below <= 0.0) & (u > 0.2) & (u < 0.8)
    if LIT > 0.0 and skin.sum() > 8:
        ux = np.linspace(0.2, 0.8, 16)
        ref = []
        for dt in (0.0, 0.05, 0.1):
            tt = np.interp(ux, us, ts) - CREASE - dt
            qx = (a_s[0] + ws * (ux * ax_s[0] + tt * n_s[0])).astype(np.float32)
            qy = (a_s[1] + ws * (ux * ax_s[1] + tt * n_s[1])).astype(np.float32)
            ref.append(cv2.remap(image, qx[None], qy[None], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0])
        ref = np.concatenate(ref).astype(np.float64).mean(0)
        cur = pix[skin].astype(np.float64).mean(0)
        gain = np.clip(ref / np.maximum(cur, 1.0), 1.0, 1.6) ** LIT
        # full on the lower half of the lid, fading up toward the crease and toward the corners (where the warp's own
        # lid shows), and across the lash margin over a pixel
        ramp = (np.clip(np.minimum(u, 1.0 - u) / 0.2, 0.0, 1.0) * np.clip(-below * wt, 0.0, 1.0)
                * np.clip(f / 0.5, 0.0, 1.0))[..., None]
        pix = pix * (1.0 + (gain.astype(np.float32) - 1.0) * ramp.astype(np.float32))
    return pix, np.maximum(weight * closed, w_low).astype(np.float32)


# ---------------------------------------------------------------------------------------------- the sliding lid
# ``lids="skin"``: the upper lid slides down over the eyeball. Between the crease (SLIDE_CREASE eye widths above the
# portrait's lid contour) and the margin, the portrait's lid band is moved down to the target's margin: its lash row
# (SLIDE_LASH eye widths above the contour) rigidly, with the margin (the person's own lashes, not stretched), and
# the skin above it stretched from the crease (the fold unfolding), its colour drawn toward the lid's own smooth skin
# colour as it stretches (a stretched fold shadow is a grey smear). The lid is opaque above the target's margin. Once
# the eye is well shut its lash row hangs under the target's margin (SLIDE_HANG: the skin reaches the margin, the
# lashes lie below it, as a closed eye's do). Optional, off: as the eye closes the lower lid's bright waterline is
# covered by the skin under it (the lower lid rises over it), and a shut margin rests on the lower lid (its waterline
# covered further). The drop is measured from the portrait's mesh moved rigidly to the target's pose, so an open eye
# under any head motion is the warp's, exactly. Cost: the per-portrait curves and lid colours are cached per eye, the
# target's eye points are read in one pass, and only the rows between the crease and the drawn margin are built
# (~0.2-0.35 ms per closing eye at 224 px on this machine; an eye whose lid did not come down returns at once).
SLIDE_CREASE = 0.32
SLIDE_LASH = 0.10
# A half-shut eye (issue 19, benchmarks/results/meshwarp/lids_s33.md): mediapipe put the render's upper contour ~0.04
# eye widths above the drawn margin, on the top of a broad brownish band (the portrait's lash row carried down whole
# and the lid skin stretched from the open eye's shadowed band). A real one has a crisp dark line at the lid edge
# and smooth, lit lid skin above it. So the stretched skin takes the colour of the skin above the crease (SLIDE_LIT,
# fading in from the corners over SLIDE_LIT_FADE eye widths, where the warp's own lid in shadow meets it), the
# shading is concentrated on the margin (SLIDE_SHADE at the margin, falling off as the SLIDE_SHADE_POW power of the
# distance from the crease: the lash row darkened into a line, the skin above left lit) and the lash row is squeezed
# toward the margin as the lid comes down (SLIDE_SQUEEZE, whole again once it hangs). Before (session 32): LIT 0,
# SHADE 0.1 at the cube, no squeeze; closed-eye read-back MAE on 361 training pairs 0.0297 -> 0.0176.
SLIDE_SHADE = 0.6    # darkening toward the margin (a closed lid curves away from the light there, the lashes' line)
SLIDE_SHADE_POW = 8.0   # ... its profile from the crease (0) to the margin (1): that power of the distance
SLIDE_LIT = 1.0      # how far the lid's colour is brought to the skin above the crease (lid sheet's LIT)
SLIDE_LIT_FADE = 0.3  # eye widths from each corner over which that fades in (0: none)
SLIDE_RIGID = 0.4    # share of the skin band under the crease kept rigid (the fold stays a fold)
SLIDE_LOWER = 0.0    # eye widths of the lower lid's waterline covered as the eye closes (0: off; 0.1 cost gaze)
# a squint's lower lid: where the target's lower contour rose above the open lid's, the band under it is sampled that
# much further down the portrait's lower lid (its bright waterline, which mediapipe reads as the opening, left out;
# round s30: read-back 0.0547 -> 0.0510 at 1.0 and 2.0 alike, following unchanged, EAR r 0.857 -> 0.856, gaze r h
# 0.922 either way). Unlike SLIDE_LOWER it does nothing in a blink, whose lower lid stays put.
SLIDE_SQUINT = 1.0   # eye widths of the lower lid's waterline covered per eye width its contour rose (0: off)
SLIDE_SQUINT_MAX = 0.08  # ... at most
SLIDE_REST_FROM = 0.3  # the target's EAR over the portrait's below which the margin comes to rest on the lower lid
SLIDE_REST_FULL = 0.05  # ... and where it rests fully
SLIDE_WATERLINE = 0.0  # eye widths under a shut margin covered by lower-lid skin (0: off; 0.2 cost gaze)
SLIDE_CORNER = 0.1   # eye widths from each corner over which the lid fades into the warp's own
SLIDE_TOLERANCE = 0.01  # eye widths of drop left to the warp alone (a head turn bends the lid line a little)
SLIDE_STEP = 1.0     # the lid raster's spacing in target pixels (0.5: sharper by a hair, 2x the cost)
SLIDE_FADE = 0.03    # eye widths of lid drop over which the lid fades in (no drop: the warp alone, exactly)
# a shut lid's lash row hangs under the target's lid contour (issue 19, benchmarks/results/meshwarp/lids_s30.md):
# mediapipe puts a closing eye's upper contour on the top of the dark lash row, so one carried down above the margin
# read 0.05-0.10 EAR too open. Only for an eye well shut: hanging it from the first closure (linear from the open
# lid to 0.4, 0.10 eye widths) read back best (MAE 0.041) but cost eye following (EAR r 0.852 -> 0.806, gaze r h
# 0.950 -> 0.844); from 0.6 to 0.3: 0.047, EAR r 0.842
SLIDE_HANG = 0.10    # eye widths the lash row hangs below the target's lid contour when shut (its whole height)
SLIDE_HANG_FROM = 0.45  # the target's EAR over the open lid's where the lash row starts to hang ...
SLIDE_HANG_FULL = 0.2   # ... and where it hangs fully (smoothstep between)
SLIDE_SQUEEZE = 0.6     # the lash row's height in the target, over its own, once half shut (1: rigid)
SLIDE_SQUEEZE_AT = (0.85, 0.4)   # the target's EAR over the open lid's from where it squeezes (none) to full


def _smooth_cols(x: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(x.astype(np.float32)[None], (0, 0), max(sigma, 0.5),
                            borderType=cv2.BORDER_REPLICATE)[0]


# per eye, the mesh points the sliding lid reads, in one index array: the EAR points (corners first), then the upper
# contour, the lower contour and the upper fold ring (``_slide_points`` splits them)
_SLIDE_IDX = [np.array([*EAR_POINTS[e], *EYE_UPPER[e], *EYE_LOWER[e], *UPPER_FOLD[e]], np.int64) for e in range(2)]
_SLIDE_SPLIT = [(6, 6 + len(EYE_UPPER[e]), 6 + len(EYE_UPPER[e]) + len(EYE_LOWER[e]), len(_SLIDE_IDX[e]))
                for e in range(2)]
_SLIDE_CURVE = [np.repeat(np.arange(3), np.diff(_SLIDE_SPLIT[e])) for e in range(2)]   # which curve, from point 6


def _slide_points(mesh: np.ndarray, e: int):
    """Eye `e` of `mesh` in its own frame: the frame (origin, along, across, width) as in ``_eye_frame``, the eye's
    aspect ratio, and its upper contour, lower contour and fold ring as (u, t) curves sorted along the eye."""
    p = mesh[_SLIDE_IDX[e], :2].astype(np.float64)
    (ax0, ay0), (bx, by) = p[0].tolist(), p[3].tolist()
    w = max(math.hypot(bx - ax0, by - ay0), 1e-6)
    cx, cy = (bx - ax0) / w, (by - ay0) / w            # along the eye; across it: (-cy, cx), pointing down the face
    nx, ny = (-cy, cx) if cx >= 0.0 else (cy, -cx)
    q = (p - p[0]) @ np.array([[cx / w, nx / w], [cy / w, ny / w]])   # (points, 2): u, t in eye widths
    _, e1, e2, _, e4, e5 = q[:6].tolist()
    ear = 0.5 * (math.hypot(e1[0] - e5[0], e1[1] - e5[1]) + math.hypot(e2[0] - e4[0], e2[1] - e4[1]))
    # the three curves sorted along the eye in one stable sort (by curve, then u): each as its own stable argsort
    k = _SLIDE_SPLIT[e]
    qs = q[6:][np.lexsort((q[6:, 0], _SLIDE_CURVE[e]))]
    us, ts = qs[:, 0], qs[:, 1]
    curves = [(us[i0 - 6:i1 - 6], ts[i0 - 6:i1 - 6]) for i0, i1 in zip(k[:-1], k[1:])]
    return (p[0], np.array([cx, cy]), np.array([nx, ny]), w), ear, curves


def lash_hang(ratio: float) -> float:
    """Eye widths the sliding lid's lash row hangs below the target's lid contour, for the target eye's aspect ratio
    over the open lid's (``ratio``): none down to ``SLIDE_HANG_FROM``, ``SLIDE_HANG`` from ``SLIDE_HANG_FULL``."""
    return SLIDE_HANG * smoothstep1(SLIDE_HANG_FROM, SLIDE_HANG_FULL, ratio)


def sliding_lid(image: np.ndarray, source: np.ndarray, target: np.ndarray, e: int, box,
                ref: np.ndarray | None = None, cache: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Eye `e`'s upper lid over `box` (x0,y0,x1,y1) of the target frame, slid down to the target's lid contour:
    (h,w,3) float32 pixels from the portrait `image` (mesh `source`) and their (h,w) float32 weight (0 where the
    target's lid has not come down below the portrait's; under a squint's risen lower contour, that lid's band
    too, ``SLIDE_SQUINT``). ``ref``: the portrait's mesh moved rigidly to the target's
    head pose (default: `source`); the lid's drop is measured from it, so a turned or nodding head with open eyes
    gets no lid. Built on a raster in the eye's own frame (columns along the eye, rows across it, ``SLIDE_STEP``
    pixels apart), then placed into the box by one affine warp: per-column curves stay 1-D. ``cache``: a dict kept
    per portrait and eye (its per-portrait curves and lid colours); written only with whole values, so two threads
    may share it."""
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    got = slide_lid(image, source, target, e, box, ref, cache)
    if got is None:
        return np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    pix, alpha, (bx0, by0, bx1, by1) = got
    lid, a = np.zeros((h, w, 3), np.float32), np.zeros((h, w), np.float32)
    lid[by0:by1, bx0:bx1], a[by0:by1, bx0:bx1] = pix, alpha
    return lid, a


def slide_lid(image: np.ndarray, source: np.ndarray, target: np.ndarray, e: int, box,
              ref: np.ndarray | None = None, cache: dict | None = None):
    """``sliding_lid``'s lid where it is drawn: None when the lid has not come down (or covers no pixel of `box`),
    else its pixels and weight over the part of `box` where the weight is above 0, and that part (bx0, by0, bx1,
    by1) in box coordinates. Outside it ``sliding_lid``'s weight is 0; inside, both are ``sliding_lid``'s exactly."""
    ref = source if ref is None else ref
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    if h < 2 or w < 2:
        return None
    cache = {} if cache is None else cache
    port = cache.get("portrait")
    if port is None:   # the raster's columns, one per portrait pixel along the eye, and the portrait's curves
        fs, _, (up_s, lo_s, _) = _slide_points(source, e)
        step = SLIDE_STEP / fs[3]
        u = np.arange(0.0, 1.0 + 0.5 * step, step)
        a_s, ax_s, n_s, ws = fs
        # a raster point (u, t) samples the portrait at (col_x + t * n_s[0] * ws, col_y + t * n_s[1] * ws)
        cols_xy = (a_s[0] + ws * ax_s[0] * u, a_s[1] + ws * ax_s[1] * u)
        port = cache["portrait"] = (fs, step, u, np.interp(u, *up_s), np.interp(u, *lo_s), cols_xy)
    fs, step, u, top_s, lo_s, (col_x, col_y) = port
    ft, ear_t, (up_t, low_t, fold_t) = _slide_points(target, e)
    fr, ear_r, (up_r, low_r, fold_r) = _slide_points(ref, e)
    top_t = np.interp(u, *up_t)
    top_r = np.interp(u, *up_r)   # where the open lid would be
    drop = np.maximum(top_t - top_r, 0.0)
    if drop.max() <= SLIDE_TOLERANCE:
        return None
    a, ax, n, wt = ft
    a_s, ax_s, n_s, ws = fs
    ratio = ear_t / max(ear_r, 1e-6)
    hang = lash_hang(ratio)
    drop_w = np.minimum(drop * 10.0, 1.0)                 # how far the lid came down, full from 0.1 eye widths
    top_d = top_t + hang * drop_w                           # where the lash row ends (the drawn margin)
    crease = top_r - SLIDE_CREASE           # on the target; the source's own is top_s - SLIDE_CREASE
    close = min(max((1.0 - ratio) / 0.8, 0.0), 1.0)
    rest = min(max((SLIDE_REST_FROM - ratio) / (SLIDE_REST_FROM - SLIDE_REST_FULL), 0.0), 1.0)
    lower_on, rest_on = SLIDE_LOWER * close > 0.0, SLIDE_WATERLINE * rest > 0.0
    squint = None
    if SLIDE_SQUINT > 0.0:   # the target's lower lid risen (a squint): its waterline covered as much
        lo_t = np.interp(u, *low_t)
        squint = np.minimum(np.maximum(np.interp(u, *low_r) - lo_t, 0.0) * SLIDE_SQUINT, SLIDE_SQUINT_MAX)
        if squint.max() < 0.005:
            squint = None
        lower_on = lower_on or squint is not None
    t0 = float(crease.min()) - 2 * step
    t1 = float((top_d + SLIDE_WATERLINE * rest).max()) + 2 * step
    if lower_on or rest_on:
        lo_t = np.interp(u, *low_t)
    if lower_on:
        t1 = max(t1, float((lo_t + WATERLINE).max()) + 2 * step)
    t = (t0 + step * np.arange(int(np.ceil((t1 - t0) / step)) + 1))[:, None]   # (rows, 1) against (cols,) curves
    # squeezed as the lid comes down, whole again as it hangs (a shut eye's lashes hang at their length)
    squeeze = 1.0 - ((1.0 - SLIDE_SQUEEZE) * smoothstep1(SLIDE_SQUEEZE_AT[0], SLIDE_SQUEEZE_AT[1], ratio)
                     * (1.0 - hang / SLIDE_HANG if SLIDE_HANG > 0.0 else 1.0))
    lash_h = SLIDE_LASH * squeeze
    lash_top = top_d - lash_h
    rigid = SLIDE_RIGID * (SLIDE_CREASE - SLIDE_LASH)      # the crease's fold, kept as it is
    # the fold comes down as much as the target's fold ring did (codes.FOLD_FOLLOW of the lid), as in the warp
    fold_drop = np.maximum(np.interp(u, *fold_t) - np.interp(u, *fold_r), 0.0)
    rigid_t = rigid + np.minimum(fold_drop, 0.9 * drop)
    y = t - crease
    y_src_end = SLIDE_CREASE - SLIDE_LASH                  # the source's lash row starts here (from the crease)
    y_end = np.maximum(lash_top - crease, rigid_t + 1e-3)
    stretch = (y_end - rigid_t) / max(y_src_end - rigid, 1e-3)
    in_rigid = y <= rigid_t
    y_src = np.where(in_rigid, y * (rigid / rigid_t), rigid + (y - rigid_t) / stretch)
    in_lash = (t > lash_top) & (t <= top_d)
    y_src = np.where(in_lash, y_src_end + (t - lash_top) * (1.0 / squeeze), y_src)
    t_src = y_src + (crease + (top_s - top_r))             # the source's crease plus the distance down from it

    kx, ky = ws * n_s[0], ws * n_s[1]

    def at(tq):   # the portrait's pixels at raster rows tq (eye widths across), one column per u
        qx = (tq * kx + col_x).astype(np.float32)
        qy = (tq * ky + col_y).astype(np.float32)
        return cv2.remap(image, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).astype(np.float32)

    # the lower lid rises over its own waterline as the eye closes (the skin under it pulled up); shut, the margin
    # rests on the lower lid, whose waterline under it is covered further (the offset easing to the warp's own at
    # the band's foot: no second edge). Both off by default (SLIDE_LOWER, SLIDE_WATERLINE).
    moved = None   # where the lid itself is (not the lower lid's skin): everywhere unless those are on
    if lower_on:
        low = (t > np.maximum(lo_t, top_d)) & (t <= lo_t + WATERLINE)   # not over a hung lash row
        cover, strength = SLIDE_LOWER * close, close if SLIDE_LOWER > 0.0 else 0.0
        if squint is not None:
            cover = np.minimum(cover + squint, 0.9 * WATERLINE)
            strength = np.maximum(strength, np.minimum(squint / 0.02, 1.0))
        t_src = np.where(low, lo_s + cover + (t - lo_t) * (WATERLINE - cover) / WATERLINE, t_src)
        moved = ~low
    if rest_on:
        band = SLIDE_WATERLINE * rest
        rests = (t > top_t) & (t <= top_t + band)
        t_src = np.where(rests, lo_s + (t - lo_t) + WATERLINE * (1.0 - np.clip((t - top_t) / band, 0.0, 1.0)),
                         t_src)
        moved = ~rests if moved is None else moved & ~rests
    pix = at(t_src)
    # the unfolded lid: a smooth colour per column from the fold's lower edge down to the lid's own skin (the middle
    # of the visible lid band, rows sorted by brightness so stray lashes and the fold's shadow drop out), shaded a
    # little toward the margin
    got = cache.get("colours")
    if got is None or got[0] is not image:
        rows = np.linspace(rigid, y_src_end, 7)[:, None]
        bandpix = at(np.concatenate([top_s[None] - SLIDE_CREASE + rows, top_s[None] - SLIDE_CREASE + rigid]))
        order = np.argsort(bandpix[:7].mean(2), axis=0)
        c_lid = np.take_along_axis(bandpix[:7], order[..., None], 0)[2:-1].mean(0)
        if SLIDE_LIT > 0.0:   # toward the skin above the crease (out of the brow's shadow), never darker
            above = at(top_s[None] - SLIDE_CREASE - np.array([[0.0], [0.05], [0.1]]))
            # fading toward the corners, where the lid meets the warp's own (in shadow): no lit patch with edges
            lit = SLIDE_LIT * np.clip(np.minimum(u, 1.0 - u) / max(SLIDE_LIT_FADE, 1e-3), 0.0, 1.0)
            c_lid = c_lid + lit[:, None].astype(np.float32) * np.maximum(above.mean(0) - c_lid, 0.0)
        sig = 4.0 * len(u) / 65.0
        got = (image, [cv2.GaussianBlur(c[None], (0, 0), sig, borderType=cv2.BORDER_REPLICATE)[0]
                       for c in (bandpix[7], c_lid)])
        cache["colours"] = got
    c_top, c_lid = got[1]
    v = np.minimum(np.maximum((y - rigid_t) * (2.0 / np.maximum(y_end - rigid_t, 1e-3)), 0.0), 1.0)
    base = c_top + (c_lid - c_top) * (v * v * (3.0 - 2.0 * v)).astype(np.float32)[..., None]
    syn = np.minimum(np.maximum(stretch - 1.0, 0.0), 1.0) * ~(in_rigid | in_lash)   # how far toward that colour
    s = np.minimum(np.maximum(y * (1.0 / np.maximum(top_d - crease, 1e-3)), 0.0), 1.0)   # 0 at the crease, 1 at
    shade = (SLIDE_SHADE * drop_w) * s ** SLIDE_SHADE_POW                             # the margin
    if moved is not None:
        syn, shade = syn * moved, shade * moved
    pix += (base - pix) * syn[..., None]
    pix *= (1.0 - shade)[..., None]
    # opaque above the margin (anti-aliased), fading in over the crease's top fifth, toward the corners and with
    # the drop itself
    weight = np.minimum(np.maximum((top_d - t) * wt + 0.5, 0.0), 1.0)
    if lower_on:
        weight = np.where(low, np.clip((t - lo_t) * wt + 0.5, 0.0, 1.0) * strength, weight)
        s = np.where(low, 1.0, s)
    if rest_on:
        weight = np.where(rests, rest, weight)
        s = np.where(rests, 1.0, s)
    cols = (np.minimum(np.maximum(np.minimum(u, 1.0 - u) * (1.0 / SLIDE_CORNER), 0.0), 1.0)
            * np.minimum(np.maximum((drop - SLIDE_TOLERANCE) * (1.0 / SLIDE_FADE), 0.0), 1.0))
    weight = weight * np.minimum(s * 5.0, 1.0) * cols
    # the raster into the box: raster (col, row) -> target pixel a + wt * (u ax + t n)
    o = a + wt * t0 * n - np.array([x0, y0], np.float64)
    k = wt * step   # target pixels per raster step
    m = np.array([[k * ax[0], k * n[0], o[0]], [k * ax[1], k * n[1], o[1]]])
    # premultiplied, so the raster's edge (weight 0 beyond it) does not darken the pixels
    both = np.empty(pix.shape[:2] + (4,), np.float32)
    np.multiply(pix, weight[..., None], out=both[..., :3])
    both[..., 3] = weight
    placed = cv2.warpAffine(both, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    # only where the lid's weight is above 0 (the caller composites that part of the box alone)
    alpha = placed[..., 3]
    bx0, by0, bw, bh = cv2.boundingRect((alpha > 0.0).view(np.uint8))
    if bw == 0 or bh == 0:
        return None
    bx1, by1 = bx0 + bw, by0 + bh
    placed = placed[by0:by1, bx0:bx1]
    alpha = placed[..., 3]
    return (placed[..., :3] / np.maximum(alpha, 1e-6)[..., None], np.minimum(alpha, 1.0),
            (bx0, by0, bx1, by1))
