"""The mesh-warp renderer's eyes: the iris moved as a rigid disc and closing lids, drawn over the warped frame
(step 4 of ``warp.py``'s docstring).

The white comes from a copy of the portrait with the irises filled with its own eye white (``_sclera_fill``, once);
the iris is a rigid disc taken from the source iris (completed under the lids by reflection), placed at the target
iris centre and clipped by the target lid opening; faded out where the mesh warp already carries the iris there.
A closing upper lid slides down over the eyeball (``lids="skin"``, the default, ``lids.sliding_lid``): the
portrait's own lid band moved to the target's margin with its lash row, opaque above the margin, plus the painted
lash line as it shuts; an eye opened wider than the portrait's (surprise's raised upper lids) keeps its iris round
with eye white around it (``widened``, with the sliding lid only). Older variants: ``lids="painted"`` blends a
closing eye toward a copy of the portrait whose eye openings are covered with smoothed skin, plus a painted lash line;
``lids="sheet"`` stretches the portrait's own lid skin down to the target lid with its lashes flipped under it
(``lids.lid_sheet``).

The interface to the warp core is ``EyeParts(image, mesh, eyes=, lids=)`` once per portrait and
``render(target, out, maps, aux)`` per frame: the (depth-corrected) target mesh, the warped frame drawn over in
place, the warp's per-pixel source positions ``(mx, my)`` (the white and the closed lid are sampled through them)
and, when the caller wants masks, ``aux["eyes"]`` / ``aux["lids"]`` filled in place. Any object with that
``render`` can replace it (``WarpRenderer.parts``).
"""
from __future__ import annotations

import cv2
import numpy as np

from pdfgc.families.meshwarp import lids, topology
from pdfgc.families.meshwarp.lids import lid_sheet, slide_lid
from pdfgc.families.meshwarp.shapes import bounding_box, box_of_extent, eye_aspect, poly_mask, smoothstep, smoothstep1
from pdfgc.media.mesh_indices import EAR_POINTS, EYE_LOWER, EYE_UPPER, IRIS, RIGID_POINTS

__all__ = ["EyeParts", "LID_SHEET_FROM", "LID_SHEET_FULL"]

# the lid sheet (lids.py) starts when the target's EAR falls below this fraction of the portrait's (an open eye,
# a blink's first frames and a squint above it are the warp alone) and is full at 0.3. On 40 closed-eye pairs of
# training clips the EAR mediapipe reads back is 0.055 off the target's (0.053 painted, 0.078 the warp alone);
# a sheet at full weight from 0.7-0.95 read back 0.065 (all too open)
LID_SHEET_FROM = 0.8
LID_SHEET_FULL = 0.3
# the sliding lid (lids="skin") gets the painted lash line along its margin as the eye shuts: mediapipe (tracking a
# video) read a shut lid whose own lashes are faint (Macron.png) as 0.10 open without it, the painted lids as 0.02
SKIN_LASH_FROM = 0.5
SKIN_LASH_FULL = 0.1
SHEET_LASH = 1.0   # the even lash line's strength over the sheet when ``lids.FLIP_LASHES`` is off
# the moved iris disc's edge, in mediapipe iris radii: measured per eye on the portrait (``_iris_edge``), this when
# it cannot be (no clear iris/sclera contrast); the disc fades out over IRIS_FEATHER radii
IRIS_EDGE_DEFAULT = 1.3
IRIS_FEATHER = 0.15
IRIS_RING = 0.2   # how far past the iris edge a moved disc reaches (its fade ends there)
IRIS_REACH = 1.45   # an unmoved disc's outer radius (it covers the sclera inpaint, 1.25 radii)
# a moved disc ends at the iris (no pale ring / half-disc of the portrait's sclera travelling with it). On over
# cv2.inpaint's white it cost the follow benchmark's EAR r and gaze v r (iris_pale.md); over SCLERA_FILL it gains
# both (benchmarks/results/meshwarp/eyes_s30.md)
IRIS_TRIM = True
# the eye white under a moved iris: the portrait's own sclera carried across the disc row by row (``_sclera_fill``);
# False: cv2.inpaint TELEA (a lilac grey that pulls in the lashes, read as lid by mediapipe)
SCLERA_FILL = True
SCLERA_OPEN = 0.9    # its samples: inside the opening's anti-aliased mask by this much (no lid margin, no lash)
SCLERA_DARK = 0.5    # and the brighter half of those (not the corners' shade, stray lashes); 0.33 and 0.7 measured
SCLERA_SMOOTH = 0.8  # px, the fill's smoothing across a row (twice that down the rows: no row stripes)
IRIS_MOVED = (0.6, 1.2)   # iris moves (source radii, off the warp's own) over which the disc shrinks to the iris
# an eye opened wider than the portrait's (AU5, upper lids raised: surprise, fear, a wide-eyed driver): the warp alone
# stretches the iris with the opening (an oval, no white above it); from WIDE[0] to WIDE[1] x the open eye's EAR the
# iris disc stays rigid and ends at the iris, the white above and below it the portrait's own (``widened``)
WIDE = (1.02, 1.08)
# and its disc ends at the iris's edge (no ring of the portrait's sclera past it, as a moved disc has): the ring
# drew a pale crescent and dark specks of the lid margin over the white (the face mesh read surprise's eyes on
# Macron.png x1.02 open with it, x1.08 without; the real faces x1.19)
WIDE_RING = 0.0
# ... and the raised opening drawn as a real widened eye (issue 19, wideeye_s34.md): before, the white above the
# moved iris was the sclera fill in one flat tone, cut off by the opening mask's hard upper half (stairs at 5x) with
# no lash line along it. Now, by ``widened``: the opening's edge anti-aliased (its full polygon coverage, blurred by
# WIDE_EDGE px), the portrait's lash line painted along the raised upper contour (WIDE_LASH x its strength as a shut
# eye's, ``_lash_alpha``), and the white shaded as the portrait's own sclera is (``_wide_shade``: darker under the
# upper lid over WIDE_SHADE_DEPTH eye widths and toward the corners over WIDE_SHADE_CORNER of the width, by the
# portrait's sclera contrast, 1 - its 10th / 90th luminance percentile, within WIDE_SHADE_RANGE). 0: that part off.
# OFF by default (WIDE_REAL): a glance's widened eye looks like one (wideeye_s34.png), but on anne.png at 224 px the
# lash line along surprise's raised margin covers the eye white that AU5 uncovers above the iris (the surprised look;
# tests/test_meshwarp_emotion.py), and the follow benchmark's gaze r v drops 0.7295 -> 0.7235 (AdamSchiff 0.892 ->
# 0.865: the eye clip's glances ask the far eye widened, session 34's finding) for EAR r 0.8969 -> 0.8996.
WIDE_REAL = False
WIDE_EDGE = 0.6
WIDE_LASH = 1.0
WIDE_LASH_DROP = 0.0   # where the lash line's centre sits, as a fraction of the way to the lower contour (- above)
WIDE_SHADE_DEPTH = 0.12
WIDE_SHADE_CORNER = 0.3
WIDE_SHADE_RANGE = (0.12, 0.4)


def widened(ratio: float) -> float:
    """How far an eye whose EAR is ``ratio`` x the open portrait eye's is drawn as widened (0..1): the iris disc's
    weight and its trim to the iris (as a moved disc's), so the raised lid uncovers eye white, not a stretched iris."""
    return smoothstep1(WIDE[0], WIDE[1], ratio)


def wide_iris_texture(image: np.ndarray, iris_tex: np.ndarray, mesh: np.ndarray,
                      eye_src: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """``iris_tex`` (the portrait with its iris discs completed under the lids) with the iris's part at the lid
    margin completed too, for a widened eye: the disc's pixels that are not clearly inside the opening (the lid
    margin's lashes and shade, which a raised lid would show as a dark band over the iris) taken, as under the
    lids, from the other side of the iris centre (vertically) where that side is clearly visible, else (inside the
    iris's edge, in mediapipe radii) the visible iris's mean colour: a round iris; and (S,S) float32 where that
    texture is good (0 outside the iris where neither side was: the disc leaves the eye white there). ``eye_src``:
    each eye's iris centre, radius and edge as ``EyeParts`` measured them on the portrait."""
    out = iris_tex.copy()
    s = image.shape[0]
    good = np.ones((s, s), np.float32)
    for e in range(2):
        poly = mesh[list(topology.EYE_POLYGONS[e]), :2]
        centre, radius = eye_src[e]["centre"], eye_src[e]["radius"]
        x0, y0, x1, y1 = bounding_box(mesh[list(IRIS[e]), :2], 2.0 * radius, s)
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        open_m = poly_mask((y1 - y0, x1 - x0), poly, (x0, y0))
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dist = np.hypot(xx - centre[0], yy - centre[1]) / radius
        near = dist <= 1.6
        vis = (open_m > 0.9) & near
        inside = dist <= eye_src[e]["edge"]
        fy, fx = np.nonzero(near & ~vis)
        ry = np.round(2 * (centre[1] - y0) - fy).astype(int)
        ok = (ry >= 0) & (ry < y1 - y0)
        fy, fx, ry = fy[ok], fx[ok], ry[ok]
        ok = vis[ry, fx]
        out[y0 + fy[ok], x0 + fx[ok]] = image[y0 + ry[ok], x0 + fx[ok]]
        iris_px = inside[fy, fx] & ~ok
        if (vis & inside).any():
            out[y0 + fy[iris_px], x0 + fx[iris_px]] = image[y0:y1, x0:x1][vis & inside].mean(0).astype(np.uint8)
        else:
            iris_px[:] = False
        bad = ~ok & ~iris_px
        good[y0 + fy[bad], x0 + fx[bad]] = 0.0
        good[y0:y1, x0:x1] = cv2.GaussianBlur(good[y0:y1, x0:x1], (0, 0), 0.5)
    return out, good
# a drawn disc leaves behind the part of its ring past the iris edge that the portrait's lids hid (there the
# completion put the iris's mean colour): a vertical move (under IRIS_MOVED[1] radii, so the disc keeps its
# IRIS_REACH ring) drew it as a blue-grey arc across the eye white under an upturned iris (over a downturned one
# above it), read as a lid (benchmarks/results/meshwarp/gaze_s31.md). False: the whole disc is drawn, as before.
IRIS_HIDDEN_RING = True
# iris moves within the opening (radii, the iris centre against the opening's mean point, target vs portrait) over
# which the lid margins' band (the opening mask's anti-aliased edge) stays behind too; an unmoved disc keeps it
IRIS_HIDDEN_MOVED = (0.05, 0.2)
# a half-shut eye (the sliding lid, the target's EAR from SLIT[0] down to SLIT[1] x the open lid's): what the opening
# still shows (eye white and iris) lies in the shadow of the lowered lid and its lashes, darkest under the margin and
# fading over SLIT_DEPTH eye widths down the opening, toward the lash colour by up to SLIT_SHADE. Without it a
# 3-4 px slit showed the warped (open-eye) eye white at full brightness: a small white eye with the iris as a dark
# blob beside it (issue 19, the README main command's frames 98 and 196-197; closing_s31.md). 0: off.
SLIT = (0.85, 0.4)
SLIT_SHADE = 0.7
SLIT_DEPTH = 0.3
# ... and the lower lid under it: a half-shut eye's pale waterline (and the white above it) read back as an eye
# more open than drawn, where a real one keeps them in shadow. The band from WATERLINE_UP eye widths above the
# target's lower lid contour to WATERLINE_DEPTH below it is darkened toward the portrait's lower-lid skin in shadow
# (WATERLINE_TONE x its colour), by up to WATERLINE_SHADE, from the target's EAR WATERLINE[0] x the open lid's (none)
# to WATERLINE[1] (full); never lightened; 0: off. Figures and the follow benchmark's image-EAR cost (the eye clip's
# head turn, not the lids): benchmarks/results/meshwarp/lidslit_s32.md, eyeask_s32.md.
WATERLINE = SLIT
WATERLINE_SHADE = 1.0
WATERLINE_UP = 0.1
WATERLINE_DEPTH = 0.08
WATERLINE_TONE = 0.5


def _iris_edge(roi: np.ndarray, open_m: np.ndarray, d: np.ndarray, dy: np.ndarray) -> float:
    """Where the portrait's iris ends, in mediapipe iris radii: along the sides of the iris (lids hide its top and
    bottom) the first ring, from 0.8 out, whose median luminance is past halfway from the iris's to the sclera's."""
    lum = roi.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    side = (open_m > 0.9) & (dy < 0.6)
    inner, outer = side & (d < 0.8), side & (d > 1.3) & (d < 1.7)
    if inner.sum() < 3 or outer.sum() < 3:
        return IRIS_EDGE_DEFAULT
    lo, hi = float(np.median(lum[inner])), float(np.median(lum[outer]))
    if hi - lo < 20.0:   # no clear iris/sclera contrast
        return IRIS_EDGE_DEFAULT
    for k in np.arange(0.8, 1.3001, 0.05):
        ring = side & (np.abs(d - k) < 0.05)
        if ring.any() and float(np.median(lum[ring])) > 0.5 * (lo + hi):
            return float(k)
    return IRIS_EDGE_DEFAULT


def _sclera_fill(roi: np.ndarray, disc: np.ndarray, open_m: np.ndarray, d: np.ndarray, edge: float,
                 inpainted: np.ndarray) -> np.ndarray | None:
    """``roi`` (h,w,3) uint8 with ``disc`` (the iris disc to remove, bool) filled with the portrait's own eye white
    inside the opening (``open_m``) and with ``inpainted`` (cv2.inpaint's fill of the same disc) outside it.

    The samples are the sclera: pixels well inside the opening (``open_m`` > 0.9, no lid or lash), past the iris edge
    (``d``, in iris radii, > ``edge`` + 0.1) and the brighter half of those (``SCLERA_DARK``: not the corners'
    shadow, no stray lash).
    Each row of the disc is filled by a straight blend, across the disc, between the sclera just left and just right
    of it on that row (the eye white's shading across the eye); rows with no sclera beside them (under the lids)
    take the nearest filled row's colours, pulled toward the sclera's median by how far they are from it, and the
    fill is smoothed inside the disc. None when the portrait shows too little sclera (the caller inpaints instead).
    """
    h, w = disc.shape
    lum = roi.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    cand = (open_m > SCLERA_OPEN) & ~disc & (d > edge + 0.1)
    if cand.sum() < 8:
        return None
    white = cand & (lum >= np.quantile(lum[cand], SCLERA_DARK))
    if white.sum() < 6:
        return None
    img = roi.astype(np.float32)
    median = np.median(img[white], axis=0)
    fill = np.zeros((h, w, 3), np.float32)
    have = np.zeros(h, bool)
    xs = np.arange(w)
    for y in np.flatnonzero(disc.any(1)):
        cols = np.flatnonzero(disc[y])
        a, b = cols.min(), cols.max()
        sides = []
        for sel in ((xs < a), (xs > b)):
            pick = np.flatnonzero(white[y] & sel)
            if len(pick) == 0:   # the rows next to it, when this row has none
                rows = white[max(0, y - 1):y + 2] & sel[None]
                ry, rx = np.nonzero(rows)
                if len(rx) == 0:
                    sides.append(None)
                    continue
                near = np.argsort(np.abs(rx - (a if rx.mean() < a else b)))[:3]
                sides.append((float(rx[near].mean()), img[max(0, y - 1) + ry[near], rx[near]].mean(0)))
                continue
            near = pick[np.argsort(np.abs(pick - (a if pick.mean() < a else b)))[:3]]
            sides.append((float(near.mean()), img[y, near].mean(0)))
        if sides[0] is None and sides[1] is None:
            continue
        if sides[0] is None or sides[1] is None:
            fill[y] = (sides[0] or sides[1])[1]
        else:
            (xa, ca), (xb, cb) = sides
            t = np.clip((xs - xa) / max(xb - xa, 1.0), 0.0, 1.0)[:, None]
            fill[y] = ca * (1.0 - t) + cb * t
        have[y] = True
    if not have.any():
        fill[:] = median
    else:
        ok = np.flatnonzero(have)
        for y in np.flatnonzero(~have):
            k = ok[np.argmin(np.abs(ok - y))]
            f = min(1.0, abs(int(k) - int(y)) / 3.0)
            fill[y] = fill[k] * (1.0 - f) + median * f
    # smooth the fill (no row stripes) over the disc only, normalised so the outside does not leak in
    m = disc.astype(np.float32)
    sig = SCLERA_SMOOTH
    num = cv2.GaussianBlur(fill * m[..., None], (0, 0), sig, sigmaY=2 * sig)
    den = cv2.GaussianBlur(m, (0, 0), sig, sigmaY=2 * sig)[..., None]
    fill = np.where(den > 1e-3, num / np.maximum(den, 1e-3), fill)
    # outside the opening (the dilated disc reaches over the lid margins) the inpaint's lid and lash colours stay
    a = cv2.GaussianBlur(np.clip(open_m, 0.0, 1.0).astype(np.float32), (0, 0), 0.7)[..., None]
    fill = fill * a + inpainted.astype(np.float32) * (1.0 - a)
    out = roi.copy()
    out[disc] = np.clip(fill[disc] + 0.5, 0, 255).astype(np.uint8)
    return out


class EyeParts:
    """Both eyes of one portrait over the warp. ``image`` (S,S,3) uint8 and ``mesh`` (478,3) as checked by
    ``WarpRenderer``; ``eyes`` (True) moves the iris disc, ``lids`` ("skin", "painted", "sheet"/True or False)
    closes the eye (see the module docstring). Both off: ``render`` leaves the frame as the warp drew it."""

    aux_keys = ("eyes", "lids")

    def __init__(self, image: np.ndarray, mesh: np.ndarray, *, eyes: bool = True, lids: bool | str = "skin"):
        self.image, self.mesh, self.size = image, mesh, image.shape[0]
        self.use_eyes, self.use_lids = eyes, lids
        self._ref = None   # (key, the portrait's mesh under the last target's head pose)
        self._ref_src = None   # the portrait's side of that similarity
        self._wide_tex = None   # wide_iris_texture, made on the first widened eye
        self._lid_cache = ({}, {})   # lids.sliding_lid's per-portrait data, per eye
        self._poly_idx = [np.array(topology.EYE_POLYGONS[e], np.int64) for e in range(2)]
        # the portrait's eye openings' extents (the sliding lid's box holds them)
        self._poly_src = [(mesh[self._poly_idx[e], :2].min(0).tolist(), mesh[self._poly_idx[e], :2].max(0).tolist())
                          for e in range(2)]
        self._prepare()

    def render(self, target: np.ndarray, out: np.ndarray, maps: tuple[np.ndarray, np.ndarray],
               aux: dict | None = None, texture: np.ndarray | None = None) -> None:
        """Draw both eyes of the target mesh into ``out`` (S,S,3) uint8, in place. ``texture``: the portrait's
        pixels with an expression's shading, as the warp drew them (the lids' skin carries the same shading)."""
        if not (self.use_eyes or self.use_lids):
            return
        mx, my = maps
        eyes_m = aux["eyes"] if aux is not None else None
        lids_m = aux["lids"] if aux is not None else None
        ear_t, ref, ear_o = eye_aspect(target), None, None
        if self.use_lids == "skin":   # the open lid under the target's head pose: a turn or a nod is no blink
            ref = self._rigid_ref(target)
            ear_o = eye_aspect(ref)
        for e in range(2):
            self._render_eye(e, target, out, mx, my, eyes_m, lids_m, texture, ref, ear_t, ear_o)

    # ------------------------------------------------------------------ per-portrait material

    def _prepare(self) -> None:
        s = self.size
        img = self.image
        mesh = self.mesh
        self._sclera = img.copy()  # irises inpainted away
        self._iris_tex = img.copy()  # iris discs completed where the lids hid them
        self._iris_vis = np.ones((s, s, 2), np.float32)  # 0 past the iris edge where the lids hid the portrait's eye
        self._closed = img.copy()  # eye openings inpainted with lid skin
        self._closed_mask = np.zeros((s, s), np.float32)  # where _closed differs from the portrait
        self._eye_src = []
        for e in range(2):
            poly = mesh[list(topology.EYE_POLYGONS[e]), :2]
            iris = mesh[list(IRIS[e]), :2]
            centre = iris.mean(0)
            radius = float(np.linalg.norm(iris[1:] - iris[0], axis=1).mean())
            width = float(np.linalg.norm(mesh[EAR_POINTS[e, 0], :2] - mesh[EAR_POINTS[e, 3], :2]))
            margin = max(4.0, 0.6 * width)
            x0, y0, x1, y1 = bounding_box(poly, margin, s)
            self._eye_src.append(dict(centre=centre, radius=max(radius, 0.5), width=width,
                                      inset=(centre - poly.mean(0)) / max(width, 1e-6),
                                      ear=float(eye_aspect(mesh)[e]), edge=IRIS_EDGE_DEFAULT))
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            roi = (slice(y0, y1), slice(x0, x1))
            open_m = poly_mask((y1 - y0, x1 - x0), poly, (x0, y0))
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            dist = np.hypot(xx - centre[0], yy - centre[1])
            edge = _iris_edge(img[roi], open_m, dist / max(radius, 0.5), np.abs(yy - centre[1]) / max(radius, 0.5))
            self._eye_src[e]["edge"] = edge
            lum = img[roi].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            scl = (open_m > SCLERA_OPEN) & (dist > (edge + 0.1) * max(radius, 0.5))
            if scl.sum() >= 8:   # the portrait's sclera shading, for a widened eye's white (``_wide_shade``)
                lo_q, hi_q = np.quantile(lum[scl], [0.1, 0.9])
                self._eye_src[e]["shade"] = float(np.clip(1.0 - lo_q / max(hi_q, 1.0), *WIDE_SHADE_RANGE))
            # sclera: inpaint the iris disc (a little beyond mediapipe's radius) inside the opening
            grow = max(1, int(round(0.12 * width)))
            open_d = cv2.dilate((open_m > 0.02).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=grow)
            disc = ((dist <= 1.25 * radius) & (open_d > 0)).astype(np.uint8)
            if disc.any():
                inpainted = cv2.inpaint(np.ascontiguousarray(img[roi]), disc, 3, cv2.INPAINT_TELEA)
                white = _sclera_fill(img[roi], disc > 0, open_m, dist / max(radius, 0.5), edge, inpainted) \
                    if SCLERA_FILL else None
                self._sclera[roi] = inpainted if white is None else white
            # iris texture: disc pixels under the lids reflected from the opposite (vertical) side, else the mean
            # (the render composites with the opening mask's upper half only, so pixels kept here stay exact)
            vis = (open_m > 0.9) & (dist <= 1.6 * radius)
            tex = self._iris_tex[roi]
            if vis.any():
                fill_px = (dist <= 1.6 * radius) & (open_m < 0.5)
                fy, fx = np.nonzero(fill_px)
                ry = np.clip(np.round(2 * (centre[1] - y0) - fy).astype(int), 0, y1 - y0 - 1)
                ok = vis[ry, fx]
                mean = img[roi][vis].mean(0)
                tex[fy, fx] = mean.astype(np.uint8)
                tex[fy[ok], fx[ok]] = img[roi][ry[ok], fx[ok]]
            if IRIS_HIDDEN_RING:   # past the iris edge only what the portrait shows of its eye white travels
                ring = dist > edge * radius
                # channel 0: 1 wherever the render composites an unmoved disc (the mask's upper half), so that one
                # stays exact; channel 1: only what lies well inside the opening (no lid margin), for a moved one
                well = cv2.GaussianBlur((open_m > 0.9).astype(np.float32), (0, 0), 0.7)
                self._iris_vis[roi] = np.where(ring[..., None], np.stack([np.clip(2.0 * open_m, 0.0, 1.0), well], -1),
                                               1.0)
            # closed eye: the opening and the lashes covered by lid skin, i.e. the skin just above the lashes
            # carried down column by column (a little of the lower lid's skin toward the bottom), smooth along x
            lid = cv2.dilate((open_m > 0.02).astype(np.uint8), cv2.getStructuringElement(
                cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
            lid[:-grow or None] |= lid[grow:]  # the lashes sit above the lid line: reach further up
            paint = self._lid_skin(e, (x0, y0, x1, y1), width)
            # a wide feather: the lid skin sampled above the lashes rarely matches the skin beside the corners
            soft = cv2.GaussianBlur(lid.astype(np.float32), (0, 0), max(1.0, 0.1 * width))
            soft = np.clip(1.7 * soft - 0.1, 0.0, 1.0)
            self._closed[roi] = (img[roi] * (1 - soft[..., None]) + paint * soft[..., None] + 0.5).astype(np.uint8)
            self._closed_mask[roi] = np.maximum(self._closed_mask[roi], soft)
            # lash colour: the darker pixels along the source upper lid
            up = mesh[list(EYE_UPPER[e]), :2]
            samples = np.array([img[int(np.clip(round(y), 0, s - 1)), int(np.clip(round(x), 0, s - 1))] for x, y in up])
            skin = paint[lid > 0].mean(0) if lid.any() else samples.mean(0).astype(np.float32)
            self._eye_src[e]["lash"] = 0.5 * np.minimum(samples.min(0).astype(np.float64), 0.5 * skin) + 0.25 * skin
            # the lower lid's skin: the median colour 0.12-0.2 eye widths under its contour's middle points
            lo = mesh[list(EYE_LOWER[e][2:-2]), :2]
            q = np.concatenate([lo + (0.0, k * width) for k in (0.12, 0.16, 0.2)])
            q = np.clip(np.round(q).astype(int), 0, s - 1)
            self._eye_src[e]["lowlid"] = np.median(img[q[:, 1], q[:, 0]].astype(np.float64), axis=0)

    def _lid_skin(self, e: int, box, width: float) -> np.ndarray:
        """(h,w,3) float32 closed-lid colour over `box`: per column, the skin above the lashes (0.28 eye widths
        over the upper lid) blended toward the skin under the lower lid only near the bottom."""
        x0, y0, x1, y1 = box
        img = self.image.astype(np.float32)
        s = self.size
        up = self.mesh[list(EYE_UPPER[e]), :2]
        lo = self.mesh[list(EYE_LOWER[e]), :2]
        cols = np.arange(x0, x1, dtype=np.float64)
        xs = np.clip(cols, min(up[:, 0].min(), lo[:, 0].min()), max(up[:, 0].max(), lo[:, 0].max()))
        ou, ol = np.argsort(up[:, 0]), np.argsort(lo[:, 0])
        y_up = np.interp(xs, up[ou, 0], up[ou, 1]) - 0.28 * width
        y_lo = np.interp(xs, lo[ol, 0], lo[ol, 1]) + 0.12 * width

        def sample(yc, offsets):
            acc = np.zeros((len(cols), 3), np.float32)
            for dy in offsets:
                yi = np.clip(np.round(yc + dy).astype(int), 0, s - 1)
                acc += img[yi, np.clip(cols.astype(int), 0, s - 1)]
            return acc / len(offsets)

        # a band of rows (not one line, which may run along the crease) and a wide smoothing along x
        top = sample(y_up, [f * width for f in (-0.08, -0.04, 0.0, 0.04, 0.08)])
        bottom = sample(y_lo, (-1.0, 0.0, 1.0))
        sig = max(1.5, 0.2 * width)
        top = cv2.GaussianBlur(top[None], (0, 0), sig, borderType=cv2.BORDER_REPLICATE)[0]
        bottom = cv2.GaussianBlur(bottom[None], (0, 0), sig, borderType=cv2.BORDER_REPLICATE)[0]
        yy = np.arange(y0, y1, dtype=np.float64)[:, None]
        v = np.clip((yy - y_up[None]) / np.maximum(y_lo - y_up, 1.0)[None], 0.0, 1.0) ** 2.5
        return (top[None] * (1.0 - v[..., None]) + bottom[None] * v[..., None]).astype(np.float32)

    def _rigid_ref(self, target: np.ndarray) -> np.ndarray:
        """The portrait's mesh moved by the target's rigid head motion (3-D similarity on the rigid points:
        ``warp._similarity`` with the portrait's side of it made once). The last one is kept with its key as one
        value (frames rendered on two threads never mix two frames' halves)."""
        from pdfgc.families.meshwarp.warp import _similarity_source, _similarity_to  # warp.py imports this module

        dst = target[RIGID_POINTS]
        key = dst.tobytes()
        got = self._ref
        if got is None or got[0] != key:
            if self._ref_src is None:
                self._ref_src = _similarity_source(self.mesh[RIGID_POINTS])
            s, rot, t = _similarity_to(self._ref_src, dst)
            got = self._ref = (key, s * self.mesh @ rot.T + t)
        return got[1]

    # ------------------------------------------------------------------ one eye, one frame

    @staticmethod
    def _lash_alpha(target, e, box, width_t, closed, drop=None):
        """The even dark lash line along the closing lid's margin (a touch below the target's upper contour; ``drop``
        of the way to the lower one when given): its (h',w') float32 weight over the part of `box` it touches and
        that part (bx0, by0, bx1, by1) in box coordinates, or None where it touches nothing."""
        x0, y0, x1, y1 = box
        up = target[list(EYE_UPPER[e]), :2]
        lo = target[list(EYE_LOWER[e]), :2]
        line = up + (0.15 * closed if drop is None else drop) * (lo - up)
        lm = np.zeros((y1 - y0, x1 - x0), np.uint8)
        th = max(1, int(round(0.04 * width_t)))
        cv2.polylines(lm, [np.round((line[1:-1] - (x0, y0)) * 16).astype(np.int32)], False, 255, th,
                      cv2.LINE_AA, 4)
        lm = cv2.GaussianBlur(lm, (3, 3), 0.6)
        bx, by, bw, bh = cv2.boundingRect(lm)
        if bw == 0 or bh == 0:
            return None
        return lm[by:by + bh, bx:bx + bw].astype(np.float32) * (0.7 * closed / 255.0), (bx, by, bx + bw, by + bh)

    @staticmethod
    def _lash_line(region, target, e, box, width_t, closed, info):
        """``region`` (the box's float pixels) with the lash line (``_lash_alpha``) drawn over it, in place."""
        got = EyeParts._lash_alpha(target, e, box, width_t, closed)
        if got is not None:
            a, (bx0, by0, bx1, by1) = got
            a = a[..., None]
            sub = region[by0:by1, bx0:bx1]
            region[by0:by1, bx0:bx1] = sub * (1.0 - a) + info.get("lash", np.zeros(3)).astype(np.float32) * a
        return region

    @staticmethod
    def _slit_shadow(target, e, box, width_t, strength):
        """(h,w) float32 over `box`: the lowered lid's shadow on a half-shut eye, ``strength`` at the target's upper
        lid contour, fading to 0 ``SLIT_DEPTH`` eye widths below it (and 0 above the contour's ends)."""
        x0, y0, x1, y1 = box
        up = target[list(EYE_UPPER[e]), :2].astype(np.float64)
        up = up[np.argsort(up[:, 0])]
        xs = np.arange(x0, x1, dtype=np.float64)
        y_up = np.interp(xs, up[:, 0], up[:, 1])
        below = np.arange(y0, y1, dtype=np.float64)[:, None] - y_up[None]
        fall = np.clip(1.0 - below / max(SLIT_DEPTH * width_t, 1.0), 0.0, 1.0)
        return (strength * fall * fall).astype(np.float32)

    @staticmethod
    def _waterline_shade(target, e, box, width_t, strength):
        """(h,w) float32 over `box`: the half-shut eye's lower-lid band (``WATERLINE_*``), ``strength`` from
        ``WATERLINE_UP`` eye widths above the target's lower lid contour to that contour, fading to 0
        ``WATERLINE_DEPTH`` eye widths below it, and toward the eye's corners."""
        x0, y0, x1, y1 = box
        lo = target[list(EYE_LOWER[e]), :2].astype(np.float64)
        lo = lo[np.argsort(lo[:, 0])]
        xs = np.arange(x0, x1, dtype=np.float64)
        y_lo = np.interp(xs, lo[:, 0], lo[:, 1])
        span = max(lo[-1, 0] - lo[0, 0], 1.0)
        u = (xs - lo[0, 0]) / span
        cols = np.clip(np.minimum(u, 1.0 - u) / 0.15, 0.0, 1.0)
        d = np.arange(y0, y1, dtype=np.float64)[:, None] - y_lo[None]   # + below the contour
        up = np.clip(d + WATERLINE_UP * width_t + 0.5, 0.0, 1.0)   # anti-aliased over a pixel
        down = np.clip(1.0 - d / max(WATERLINE_DEPTH * width_t, 1.0), 0.0, 1.0)
        return (strength * up * down * cols[None]).astype(np.float32)

    @staticmethod
    def _wide_shade(target, e, box, width_t, strength):
        """(h,w) float32 gain over `box` for a widened eye's white (``WIDE_SHADE_*``): 1 - ``strength`` at the
        target's upper lid contour and at the corners, rising to 1 over ``WIDE_SHADE_DEPTH`` eye widths below the
        contour (smoothly) and ``WIDE_SHADE_CORNER`` of the width in from each corner."""
        x0, y0, x1, y1 = box
        up = target[list(EYE_UPPER[e]), :2].astype(np.float64)
        up = up[np.argsort(up[:, 0])]
        xs = np.arange(x0, x1, dtype=np.float64)
        y_up = np.interp(xs, up[:, 0], up[:, 1])
        below = np.clip((np.arange(y0, y1, dtype=np.float64)[:, None] - y_up[None]) / max(width_t, 1.0), 0.0, None)
        lid = np.exp(-below / WIDE_SHADE_DEPTH)
        u = (xs - up[0, 0]) / max(up[-1, 0] - up[0, 0], 1.0)
        corner = np.clip(1.0 - np.minimum(u, 1.0 - u) / WIDE_SHADE_CORNER, 0.0, 1.0) ** 2
        dark = 1.0 - (1.0 - lid) * (1.0 - corner[None])
        return (1.0 - strength * dark).astype(np.float32)

    def _iris(self, e, region, box, open_m, c_t, r_t, off, w_comp, mx, my, tex=None, far=0.0, shade=None):
        """``region`` (float32 pixels of `box`) with the moved iris disc and the eye white under it composited over
        it inside the target's opening (``open_m`` over `box`), weighted by ``w_comp``."""
        info = self._eye_src[e]
        x0, y0, x1, y1 = box
        sx, sy = mx[y0:y1, x0:x1], my[y0:y1, x0:x1]
        sclera = cv2.remap(self._sclera, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if shade is not None:   # a widened eye's white, shaded as the portrait's own (``_wide_shade``)
            sclera = sclera.astype(np.float32) * shade[..., None]
        scale = info["radius"] / r_t
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        ix = (info["centre"][0] + (xx - c_t[0]) * scale).astype(np.float32)
        iy = (info["centre"][1] + (yy - c_t[1]) * scale).astype(np.float32)
        iris = cv2.remap(self._iris_tex if tex is None else tex[0], ix, iy, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
        d = np.hypot(xx - c_t[0], yy - c_t[1]) / r_t
        # a moved disc ends at the portrait's own iris edge: past it the source's sclera would travel with the
        # iris (a pale ring, or a pale half-disc where the iris nears a corner); one barely moved keeps the
        # sclera ring that covers the inpainted white (an unmoved eye stays the portrait's pixels)
        moved = float(smoothstep(IRIS_MOVED[0], IRIS_MOVED[1], off)) if IRIS_TRIM else 0.0
        ring = IRIS_RING if tex is None else WIDE_RING
        reach = IRIS_REACH + moved * (info["edge"] + ring - IRIS_REACH)
        a_i = np.clip((reach - d) / IRIS_FEATHER, 0.0, 1.0)
        if tex is not None:   # a widened eye's disc: only where its texture is the iris's own (``wide_iris_texture``)
            a_i = a_i * cv2.remap(tex[1], ix, iy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        elif IRIS_HIDDEN_RING:   # the ring's hidden part stays behind (the warped eye white shows there)
            vis = cv2.remap(self._iris_vis, ix, iy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            a_i = a_i * (vis[..., 0] + far * (vis[..., 1] - vis[..., 0]))
        a_i = a_i[..., None]
        eye = sclera.astype(np.float32) * (1.0 - a_i) + iris.astype(np.float32) * a_i
        m = open_m[..., None] * w_comp
        return region * (1.0 - m) + eye * m

    def _render_eye(self, e, target, out, mx, my, eyes_m, lids_m, texture, ref, ear_t, ear_o) -> None:
        s = self.size
        info = self._eye_src[e]
        poly_t = target[self._poly_idx[e], :2]
        width_t = float(np.linalg.norm(target[EAR_POINTS[e, 0], :2] - target[EAR_POINTS[e, 3], :2]))
        if width_t < 2.0:
            return
        margin = max(4.0, 0.6 * width_t)
        sliding = self.use_lids == "skin"
        lo, hi = poly_t.min(0).tolist(), poly_t.max(0).tolist()
        ibox = box_of_extent(lo, hi, margin, s)   # the target's opening (the iris disc is drawn inside it)
        if sliding:   # the sliding lid reaches up to the portrait's crease: its box holds the portrait's opening too
            lo_s, hi_s = self._poly_src[e]
            box = box_of_extent([min(lo[0], lo_s[0]), min(lo[1], lo_s[1])], [max(hi[0], hi_s[0]), max(hi[1], hi_s[1])],
                       margin, s)
        else:
            box = ibox
        x0, y0, x1, y1 = box
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        roi = (slice(y0, y1), slice(x0, x1))
        iris_t = target[list(IRIS[e]), :2]
        c_t = iris_t.mean(0)
        r_t = max(float(np.linalg.norm(iris_t[1:] - iris_t[0], axis=1).mean()), 0.5)
        # where the mesh warp alone puts the iris: when that is already the target's iris (the gaze rides with
        # the head), the disc compositing is faded out, so it costs nothing and changes nothing
        cx, cy = (min(max(round(v), 0), s - 1) for v in c_t.tolist())
        carried = np.array([mx[cy, cx], my[cy, cx]], dtype=np.float64)
        off = float(np.linalg.norm(carried - info["centre"])) / info["radius"]
        mismatch = abs((r_t / info["radius"]) / max(width_t / max(info["width"], 1e-6), 1e-6) - 1.0)
        w_comp = float(smoothstep(0.04, 0.12, max(off, mismatch))) if self.use_eyes else 0.0
        # how far the iris moved inside its opening (the lids' hidden ring of the disc shows that much)
        inset = (c_t - poly_t.mean(0)) / width_t - info["inset"]
        far = float(smoothstep(IRIS_HIDDEN_MOVED[0], IRIS_HIDDEN_MOVED[1], float(np.hypot(*inset)) * width_t / r_t))
        lid, shut, slit, wl = None, 0.0, 0.0, 0.0
        if sliding:   # the sliding lid (lids.py): wherever the target's lid came down below the open lid's
            ratio = float(ear_t[e]) / max(float(ear_o[e]), 1e-6)
            wide = widened(ratio) if self.use_eyes else 0.0
            if wide > 0.0:   # the raised lid uncovers white above a rigid iris (trimmed as a moved disc is)
                w_comp, off = max(w_comp, wide), max(off, IRIS_MOVED[0] + wide * (IRIS_MOVED[1] - IRIS_MOVED[0]))
            if ratio < 0.999:
                lid = slide_lid(self.image if texture is None else texture, self.mesh, target, e, box, ref,
                                self._lid_cache[e])
                shut = smoothstep1(SKIN_LASH_FROM, SKIN_LASH_FULL, ratio)
            slit = smoothstep1(SLIT[0], SLIT[1], ratio) * SLIT_SHADE if ratio < SLIT[0] else 0.0
            wl = smoothstep1(WATERLINE[0], WATERLINE[1], ratio) * WATERLINE_SHADE if ratio < WATERLINE[0] else 0.0
            # a lid that did not come down (a turned head's open eye) and no lash line: the warp's own lid
            closed = 1.0 if lid is not None or shut > 0.0 or slit > 0.0 else 0.0
        else:
            ratio = float(ear_t[e]) / max(info["ear"], 1e-6)
            closed = float(smoothstep(0.5, 0.15, ratio)) if self.use_lids else 0.0
            if self.use_lids and self.use_lids != "painted":  # the lid sheet (lids.py), from a lid well down
                closed = float(smoothstep(LID_SHEET_FROM, LID_SHEET_FULL, ratio))
        if w_comp == 0.0 and closed == 0.0 and eyes_m is None:
            return  # the mesh warp alone is this eye's render
        # the anti-aliased mask's upper half: identity stays exact (no pixel mixes lid with a completed iris)
        open_m = None
        if eyes_m is not None or not sliding:
            open_m = np.clip(2.0 * poly_mask((y1 - y0, x1 - x0), poly_t, (x0, y0)) - 1.0, 0.0, 1.0)
        if eyes_m is not None:
            eyes_m[roi] = np.maximum(eyes_m[roi], open_m)
        if w_comp == 0.0 and closed == 0.0:
            return
        if sliding:
            self._render_skin(e, target, out, mx, my, lids_m, box, ibox, open_m, poly_t, width_t,
                              (c_t, r_t, off, w_comp, wide, far), lid, shut, slit, wl, eyes_m)
            return
        region = out[roi].astype(np.float32)
        if w_comp > 0.0 and open_m.any():
            region = self._iris(e, region, box, open_m, c_t, r_t, off, w_comp, mx, my, far=far)
        sx, sy = mx[roi], my[roi]
        if closed > 0.0 and self.use_lids != "painted":
            lid, a_l = lid_sheet(self.image if texture is None else texture, self.mesh, target, e,
                                 (x0, y0, x1, y1), closed)
            region = region * (1.0 - a_l[..., None]) + lid * a_l[..., None]
            if not lids.FLIP_LASHES:
                region = self._lash_line(region, target, e, (x0, y0, x1, y1), width_t, SHEET_LASH * closed, info)
            if lids_m is not None:
                lids_m[roi] = np.maximum(lids_m[roi], a_l)
        elif closed > 0.0:
            skin = cv2.remap(self._closed, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            skin = skin.astype(np.float32)
            if texture is not None:   # the shading's gain where the skin came from: no seam at the box's edge
                shaded = cv2.remap(texture, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                plain = cv2.remap(self.image, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                skin *= (shaded.astype(np.float32) + 1.0) / (plain.astype(np.float32) + 1.0)
            region = region * (1.0 - closed) + skin * closed
            where = cv2.remap(self._closed_mask, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            region = self._lash_line(region, target, e, (x0, y0, x1, y1), width_t, closed, info)
            if lids_m is not None:
                lids_m[roi] = np.maximum(lids_m[roi], np.clip(where * closed, 0, 1))
        out[roi] = np.clip(region + 0.5, 0, 255).astype(np.uint8)

    def _render_skin(self, e, target, out, mx, my, lids_m, box, ibox, open_m, poly_t, width_t, disc, lid,
                     shut, slit=0.0, wl=0.0, eyes_m=None) -> None:
        """The sliding lid's eye: the moved iris disc (over the target's opening's box), the lid (over the part of
        `box` it covers) and the shut eye's lash line (over its own part), composited in float over the union of
        those parts only; the rest of the box is left as the warp drew it (the compositing there changed nothing)."""
        x0, y0, x1, y1 = box
        c_t, r_t, off, w_comp, wide, far = disc
        parts = {}   # name -> (bx0, by0, bx1, by1) in box coordinates
        om = None
        ix0, iy0, ix1, iy1 = ibox
        ib = (ix0 - x0, iy0 - y0, ix1 - x0, iy1 - y0)
        if w_comp > 0.0 or slit > 0.0:   # the disc lies in the target opening's box (a part of the lid's box)
            if open_m is not None:
                om = open_m[ib[1]:ib[3], ib[0]:ib[2]]
            else:
                om = np.clip(2.0 * poly_mask((iy1 - iy0, ix1 - ix0), poly_t, (ix0, iy0)) - 1.0, 0.0, 1.0)
            if om.any():
                if w_comp > 0.0:
                    parts["iris"] = ib
                if slit > 0.0:
                    parts["slit"] = ib
        if lid is not None:
            parts["lid"] = lid[2]
        lash = self._lash_alpha(target, e, box, width_t, shut) if shut > 0.0 else None
        if lash is not None:
            parts["lash"] = lash[1]
        if not parts:
            return
        ux0, uy0 = min(b[0] for b in parts.values()), min(b[1] for b in parts.values())
        ux1, uy1 = max(b[2] for b in parts.values()), max(b[3] for b in parts.values())
        view = out[y0 + uy0:y0 + uy1, x0 + ux0:x0 + ux1]
        region = view.astype(np.float32)

        def sub(b):
            return slice(b[1] - uy0, b[3] - uy0), slice(b[0] - ux0, b[2] - ux0)

        if "iris" in parts:
            sl = sub(parts["iris"])
            if wide > 0.0 and self._wide_tex is None:
                self._wide_tex = wide_iris_texture(self.image, self._iris_tex, self.mesh, self._eye_src)
            om_d, shade, wlash = om, None, None
            if wide > 0.0 and WIDE_REAL:   # a real widened eye: soft edge, shaded white, raised lash line (WIDE_*)
                if WIDE_EDGE > 0.0:
                    soft = poly_mask((iy1 - iy0, ix1 - ix0), poly_t, (ix0, iy0))
                    soft = np.clip(cv2.GaussianBlur(soft, (0, 0), WIDE_EDGE), 0.0, 1.0)
                    om_d = om + wide * (np.maximum(soft, om) - om)
                if "shade" in self._eye_src[e]:
                    shade = self._wide_shade(target, e, ibox, width_t, wide * self._eye_src[e]["shade"])
                if WIDE_LASH > 0.0:
                    wlash = self._lash_alpha(target, e, ibox, width_t, WIDE_LASH * wide, drop=WIDE_LASH_DROP)
                if eyes_m is not None:
                    er = (slice(iy0, iy1), slice(ix0, ix1))
                    eyes_m[er] = np.maximum(eyes_m[er], om_d)
            disc_px = self._iris(e, region[sl], (ix0, iy0, ix1, iy1), om_d, c_t, r_t, off, w_comp, mx, my,
                                 self._wide_tex if wide > 0.0 else None, far, shade)
            # the disc's compositing is float64 (as over the whole box: what follows rounds the same way)
            region = region.astype(disc_px.dtype, copy=False)
            region[sl] = disc_px
            if wlash is not None:   # the raised margin's lash line, in the portrait's lash colour
                a, (bx0, by0, bx1, by1) = wlash
                ls = (slice(ib[1] + by0 - uy0, ib[1] + by1 - uy0), slice(ib[0] + bx0 - ux0, ib[0] + bx1 - ux0))
                a3 = a[..., None]
                region[ls] = region[ls] * (1.0 - a3) + self._eye_src[e].get("lash", np.zeros(3)) * a3
                if eyes_m is not None:
                    er = (slice(iy0 + by0, iy0 + by1), slice(ix0 + bx0, ix0 + bx1))
                    eyes_m[er] = np.maximum(eyes_m[er], a)
        if "slit" in parts:   # the half-shut opening in the lowered lid's shadow (``SLIT``)
            sl = sub(parts["slit"])
            a3 = (om * self._slit_shadow(target, e, ibox, width_t, slit))[..., None]
            region[sl] = region[sl] * (1.0 - a3) + self._eye_src[e].get("lash", np.zeros(3)).astype(np.float32) * a3
            if wl > 0.0 and "lowlid" in self._eye_src[e]:   # the lower lid's pale band under it (``WATERLINE``)
                a3 = self._waterline_shade(target, e, ibox, width_t, wl)[..., None]
                tone = (WATERLINE_TONE * self._eye_src[e]["lowlid"]).astype(np.float32)
                # a shadow: it darkens the pale band, never lightens what is darker than its tone (the iris, lashes)
                region[sl] = np.minimum(region[sl], region[sl] * (1.0 - a3) + tone * a3)
        if lid is not None:
            pix, a_l, b = lid
            sl = sub(b)
            a3 = a_l[..., None]
            region[sl] = region[sl] * (1.0 - a3) + pix * a3
            if lids_m is not None:
                lr = (slice(y0 + b[1], y0 + b[3]), slice(x0 + b[0], x0 + b[2]))
                lids_m[lr] = np.maximum(lids_m[lr], a_l)
        if lash is not None:   # a shut eye's lash line, in the portrait's lash colour, even where its lashes are faint
            a, b = lash
            sl = sub(b)
            a3 = a[..., None]
            region[sl] = region[sl] * (1.0 - a3) + self._eye_src[e].get("lash", np.zeros(3)).astype(np.float32) * a3
        view[...] = np.clip(region + 0.5, 0, 255).astype(np.uint8)
