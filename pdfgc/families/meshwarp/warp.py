"""The mesh-warp renderer: the portrait's own pixels moved by a dense piecewise-affine warp from its face mesh to a
target mesh (conventions in ``pdfgc.families.meshwarp``).

One render, all at the output resolution S:

0. Depth gain: the target's out-of-plane head rotation (Umeyama fit on the rigid points, 3-D) is re-applied with
   the portrait's depths stretched by ``depth_gain`` (1.35) about the face centre. Mediapipe's z is flatter than a
   real head, so a warp by the plain target reads back (through mediapipe, as ``pdfgc evaluate`` measures) only
   ~65-75 % of the requested yaw and ~55-75 % of the pitch; 1.35 brings anne.png's +-15 deg yaw to 13.6 / -16.7
   and +-10 deg pitch to 9 / -10. Translation, scale and roll are unchanged, and so is identity. A target measured
   on a real frame needs ``depth_gain=1`` (its 2-D points are the truth; the gain would over-turn it): warping one
   frame of the pose clip 681600002 to the measured meshes of 19 others (yaw -13..12) reads back with a yaw slope
   of 0.94 and 0.7 deg mean error at gain 1, against 1.18 and 1.2 deg at 1.35. What one global gain leaves per
   face (framing, mediapipe's depth estimate: --pitch 15 read 16-26 deg over six unseen portraits) is corrected
   per portrait by the model, which renders the angles that read back as asked (``calibration.py``).
1. Triangles: the 898 face triangles (``topology.triangles()``, eye and mouth holes filled); an outer band
   (Delaunay once, on the source) between the face outline, rings of anchor points beyond it and points on the
   image border; and the same Delaunay's chords across the face (outline points only), a coarse layer under the
   mesh. A ring point moves by the head's rigid similarity motion evaluated at the point (at its outline point's
   depth) times a raised-cosine weight that falls from 1 at the outline to 0 at ``outer_extent`` outline radii (or
   the border), plus the outline's own non-rigid motion (a jaw drop; the outline's motion beyond the depth-gained
   rigid one, so the gain's parallax is not counted twice) over the inner half of the band: hair, ears and neck
   follow the head without bending, no ring overtakes the next up to 30 deg of yaw (tested), and the background
   beyond stays exactly still.
2. A triangle-id map rasterised in painter's order (cv2.fillConvexPoly, quarter-pixel vertices): the chord layer
   and the outer band first (folded ones before the others), then the front-facing face triangles from far to
   near (target z), so the nearest wins; back-facing face triangles are skipped. Per-pixel source positions come
   from per-triangle 2x3 affine maps (target -> source), gathered in one pass, and one fixed-point cv2.remap
   samples the portrait. Pixels of strongly compressed triangles (a cheek turned edge-on) are clamped inside their
   triangle (an extrapolated map would point many pixels away).
3. Seams: pixels where the source position jumps between neighbours (occlusion edges) or whose triangle is
   squeezed get a small blur, as the portrait's own edges had. (A fade of the face onto the band beneath it,
   ``feather``, is off: it drew the band's hidden outline as a dotted line along the far cheek.) Face triangles
   within ``FILL_RINGS`` edges of the outline stretched past ``FILL_FROM`` (the edge-on cheek of a portrait turned
   toward the camera: one source column spread over tens of pixels, horizontal streaks) are filled with a smooth
   field from their surroundings (``_fill_stretched``, README "Real pixels", far side).
4. Eyes (``eyes.py``): the iris as a rigid disc over a white with the iris inpainted away, clipped by the target lid
   opening; a closing upper lid slid down from the portrait's own (``lids="skin"``, the default; ``"painted"`` and
   ``"sheet"`` opt-in, ``lids.py``, README "Real pixels").
5. Mouth (``mouth.py``): a real mouth interior from the shipped bank (``mouth_bank.py``) inside the target's inner
   lips where they open beyond the source's (``mouth="procedural"``: the older painted cavity).
   Steps 4 and 5 are ``WarpRenderer.parts``: objects made once per portrait with ``render(target, out, (mx, my),
   aux)`` drawing into the warped frame in place, so the warp core (steps 0-3, 6) knows nothing of eyes or mouths
   and the issue on real pixels can replace either.
6. Far side (``_mirror_far_side``, opt-in ``far_side=True``): face triangles stretched past what the portrait
   shows take the mirrored near side where it is less stretched (``symmetry.py``).

Identity is exact by construction: with target == source every affine map is the identity, the iris disc lands on
itself, and neither lids nor mouth are painted. Cost on one core (benchmarks/bench_warp.py, CPU time, targets
with yaw, lids and mouth): ~5.5-6 ms at 224 px, ~13-15 ms at 512 px.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
from scipy.spatial import Delaunay

from pdfgc.errors import InputError
from pdfgc.families.meshwarp import topology
from pdfgc.families.meshwarp.eyes import EyeParts
from pdfgc.families.meshwarp.mouth import MouthPart
from pdfgc.families.meshwarp.shapes import smoothstep
from pdfgc.families.meshwarp.symmetry import STRETCH_FROM, mirror_fill, mirror_partners, mirror_weights, stretch_of
from pdfgc.families.meshwarp.topology import triangles
from pdfgc.media.mesh_indices import (
    CHEEK_CENTRES,
    EAR_POINTS,
    EYE_LOWER,
    EYE_UPPER,
    FACE_SIDES,
    IRIS,
    LIP_CORNERS,
    LIP_LOWER,
    LIP_OUTER_LOWER,
    LIP_OUTER_UPPER,
    LIP_UPPER,
    NOSE_TIP,
    NUM_POINTS,
    RIGID_POINTS,
)

__all__ = ["WarpRenderer", "WarpInputError", "triangles"]

_SHIFT = 2  # fillConvexPoly sub-pixel bits: vertices on a quarter-pixel grid
_ONE = float(1 << _SHIFT)
# face triangles stretched past what the portrait shows (``_fill_stretched``): filled from their surroundings from a
# FILL_FROM-fold stretch (source pixels per target pixel along the stretched direction), fully at FILL_FULL-fold,
# only in the triangles with a vertex within FILL_RINGS mesh edges of the face outline (none near the eyes or lips),
# by a normalised Gaussian of the known pixels around them (sigma FILL_SMOOTH px at 224; 0: cv2.inpaint Telea);
# the warp's one resampling of the portrait (cv2 interpolation flag); see benchmarks/results/meshwarp/skin_s34.md
RESAMPLE = cv2.INTER_LINEAR
# pixels filled where the weight passes FILL_HOLE, blended by the weight blurred FILL_EDGE px (at 224).
# Chosen on turned-head pairs of 40 training clips (306 pairs, benchmarks/results/meshwarp/farside_s31.md), face
# PSNR: 20.994 dB unfilled; 21.085 Telea from 2x (2 rings, hole 0.5, edge 1); 21.118 smoothed (10 px) from 2x;
# 21.132-21.137 from 1.6x (sigma 6-10; 1.4x or a full fill at 2.4x: 21.05-21.07); 4 / 6 rings 21.144 / 21.154 and
# with hole 0.3, edge 1.5 (6 rings) 21.135-21.136: the creases where the fill met lightly stretched skin faded
# (hole 0.05 / edge 3: 21.052, smoother still)
FILL_FROM, FILL_FULL, FILL_RINGS, FILL_SMOOTH = 1.6, 3.2, 6, 8.0
FILL_HOLE, FILL_EDGE = 0.3, 1.5
FILL_SCALE = 128  # the fill is made at FILL_SCALE / S of the size (at least halved)
FILL_FROM_FACE = False  # True: the hole filled from the face's own pixels only (not the band's hair): 21.110 against
# 21.132 dB on the training pairs, and the filled skin meets the hair in a staircase (the face a cut-out mask)
# the fill's skin texture (``_skin_detail``): the high-pass (FILL_DETAIL_SIGMA px at 224, outliers clipped) of a
# square of the portrait's wider cheek (centred between points 50 and 205, or 280 and 425; side FILL_DETAIL_SIDE of
# the face's width), mirror-tiled in the target's pixels (anchored to the face's centre: it moves with the head),
# added to the fill times FILL_DETAIL (1: the portrait's own amplitude) under the fill's weight (cheek_s32.md)
FILL_DETAIL, FILL_DETAIL_SIGMA, FILL_DETAIL_SIDE = 1.0, 3.0, 0.2


class WarpInputError(InputError, ValueError):
    """A bad image or mesh given to the renderer (a ValueError too, for callers that catch the builtin)."""


# ---------------------------------------------------------------------------------------------- checks


def _check_image(image) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] != img.shape[1]:
        raise WarpInputError(f"warp: the portrait must be a square (S,S,3) RGB image, got shape {img.shape}")
    if img.dtype != np.uint8:
        raise WarpInputError(f"warp: the portrait must be uint8, got {img.dtype}")
    if not 32 <= img.shape[0] <= 4096:
        raise WarpInputError(f"warp: the portrait size must be 32..4096 px, got {img.shape[0]}")
    return np.ascontiguousarray(img)


def _check_mesh(mesh, what: str) -> np.ndarray:
    m = np.asarray(mesh, dtype=np.float64) if not isinstance(mesh, np.ndarray) or mesh.dtype != np.float64 else mesh
    if m.shape != (NUM_POINTS, 3):
        raise WarpInputError(f"warp: the {what} must be a ({NUM_POINTS},3) face mesh, got shape {np.shape(mesh)}")
    if not np.isfinite(m).all():
        raise WarpInputError(f"warp: the {what} has non-finite (NaN or inf) coordinates")
    return m


# ---------------------------------------------------------------------------------------------- geometry helpers


def _similarity_source(src: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The source side of ``_similarity`` (centre, centred points, spread): made once for a source fitted to many
    targets (``eyes.EyeParts._rigid_ref``, per frame)."""
    ms = src.mean(0)
    a = src - ms
    return ms, a, max((a ** 2).sum(), 1e-12)


def _similarity_to(source: tuple[np.ndarray, np.ndarray, float], dst: np.ndarray) -> tuple[float, np.ndarray,
                                                                                             np.ndarray]:
    """``_similarity`` from the source's ``_similarity_source``."""
    ms, a, aa = source
    md = dst.mean(0)
    b = dst - md
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    e = np.array([1.0, 1.0, d])
    rot = (u * e) @ vt
    s = float((sig * e).sum() / aa)
    return s, rot, md - s * rot @ ms


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama fit dst ~= s R src + t on (M,3) point sets."""
    return _similarity_to(_similarity_source(src), dst)


def _affines(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(T,6) float32 rows (a, b, c, d, e, f) of the maps dst-triangle -> src-triangle: x_s = a x + b y + c, ...

    Closed form (barycentric coordinates as affine functions of the target pixel); degenerate targets get the
    identity."""
    p0, p1, p2 = dst[:, 0], dst[:, 1], dst[:, 2]
    e1, e2 = p1 - p0, p2 - p0
    det = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok = np.abs(det) > 1e-9
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    # l1 = (e2y (x - x0) - e2x (y - y0)) / det, l2 = (-e1y (x - x0) + e1x (y - y0)) / det
    g1 = np.stack([e2[:, 1], -e2[:, 0]], 1) * inv[:, None]
    g2 = np.stack([-e1[:, 1], e1[:, 0]], 1) * inv[:, None]
    s0, d1, d2 = src[:, 0], src[:, 1] - src[:, 0], src[:, 2] - src[:, 0]
    # source = s0 + l1 d1 + l2 d2, linear part L = d1 g1^T + d2 g2^T
    lin = d1[:, :, None] * g1[:, None, :] + d2[:, :, None] * g2[:, None, :]  # (T,2,2)
    off = s0 - np.einsum("tij,tj->ti", lin, p0)
    out = np.empty((len(src), 6))
    out[:, 0:2], out[:, 2] = lin[:, 0], off[:, 0]
    out[:, 3:5], out[:, 5] = lin[:, 1], off[:, 1]
    out[~ok] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    return out.astype(np.float32)


def _signed_area(p: np.ndarray, tris: np.ndarray) -> np.ndarray:
    a, b, c = p[tris[:, 0]], p[tris[:, 1]], p[tris[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


# ---------------------------------------------------------------------------------------------- renderer


class WarpRenderer:
    """Warp one portrait to target meshes. ``image`` (S,S,3) uint8 RGB, ``mesh`` (478,3) its face mesh in pixels.

    Options (keywords): ``outer_rings`` (5) rings of anchor points beyond the outline; ``outer_extent`` (2.2) how far
    the head's motion reaches, in outline radii from the face centre (clipped at the border); ``outer_hold`` (0) the
    fraction of the band that moves fully before the fade starts; ``depth_gain`` (1.35, see the module
    docstring) is for targets made by rotating the portrait's own mesh (codes.py): pass 1.0 when the target mesh was
    measured on a real frame (refiner training pairs), whose 2-D points already sit where the features are;
    ``feather`` (0; 0.03 before session 31) width of the fade from the far cheek onto the outer layer, as a
    fraction of S (it drew a dotted light line along the far cheek: ``_fade_far_cheek``);
    ``fill_stretched`` (True, or a (from, full) pair of stretch factors) inpaints face triangles near the outline
    stretched past what the portrait shows;
    ``eyes``/``lids``/``mouth`` (True) switch the procedural parts off for debugging; ``mouth="procedural"``
    paints the mouth interior instead of taking it from the shipped bank of real ones (``mouth_bank``);
    ``lids`` ("skin") slides the portrait's upper lid down over the eye; "painted" covers a closing eye with smoothed
    skin, "sheet" (or True) stretches the lid's own (``lids.py``);
    ``far_side`` (False): face triangles stretched past what the portrait shows take the mirrored near side
    (``symmetry``); off by default: +0.06 dB on held-out turned pairs, ~1 ms a frame, a faint mirrored crease.
    """

    def __init__(self, image: np.ndarray, mesh: np.ndarray, *, outer_rings: int = 5, outer_extent: float = 2.2,
                 outer_hold: float = 0.0, depth_gain: float = 1.35,
                 feather: float = 0.0, eyes: bool = True, lids: bool | str = "skin", mouth: bool = True,
                 far_side: bool = False, fill_stretched: bool | tuple[float, float] = True):
        self.image = _check_image(image)
        self.mesh = _check_mesh(mesh, "portrait mesh").copy()
        if (outer_rings < 1 or not outer_extent > 1.0 or not 0.0 <= feather < 0.5 or not 0.0 <= outer_hold < 1.0
                or not 0.5 <= depth_gain <= 3.0):
            raise WarpInputError("warp: outer_rings >= 1, outer_extent > 1, 0 <= outer_hold < 1, "
                                 "0.5 <= depth_gain <= 3 and 0 <= feather < 0.5 are needed")
        self.size = s = self.image.shape[0]
        self._mirror_src_tri = None if far_side else False  # symmetry.py, made on the first turned target
        self._mirrored = None  # per face triangle, the mirror's weight in the last render (far_side=True)
        self._fill_from, self._fill_full = (FILL_FROM, FILL_FULL) if fill_stretched is True else (
            fill_stretched or (0.0, 0.0))
        self.depth_gain = float(depth_gain)
        c = self.mesh[RIGID_POINTS].mean(0)
        self._rigid_centre = c
        self._feather = max(1, int(round(feather * s)) | 1) if feather > 0 else 0
        self._face_tris = triangles()
        self._build_outer(outer_rings, outer_extent, outer_hold)
        n_face = len(self._face_tris)
        self._fill_tris = self._near_outline(FILL_RINGS)
        self._detail = self._skin_detail() if self._fill_from and FILL_DETAIL > 0 else None
        if self._detail is not None:  # tiled over the frame (plus a period) once: a render takes views of it and
            # adds / subtracts its two halves in C (a fancy-indexed tile per render cost ~0.4 ms at 224)
            p2 = self._detail.shape[0]
            reps = -(-(s + p2) // p2)
            big = np.tile(self._detail, (reps, reps, 1))[:s + p2, :s + p2]
            self._detail_pm = (np.clip(big, 0, 255).astype(np.uint8), np.clip(-big, 0, 255).astype(np.uint8))
        self._tris = np.concatenate([self._face_tris, self._outer_tris, self._inner_tris])
        self._n_face = n_face
        self._n_outer = n_face + len(self._outer_tris)  # ids [n_face, n_outer) are the band beyond the outline
        self._identity_row = len(self._tris)  # id of "no triangle": the identity map
        self._src_tri = self._src_vertices()[self._tris]  # (T,3,2)
        self._src_area = _signed_area(self._src_vertices(), self._tris)
        ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
        self._gx, self._gy = xs, ys
        # what is drawn over the warp, in order (eyes.py, mouth.py): each part reads the portrait once here and draws
        # into the warped frame per target; the issue on real pixels (#19) replaces them behind the same render()
        self.parts = [EyeParts(self.image, self.mesh, eyes=eyes, lids=lids),
                      MouthPart(self.image, self.mesh, mouth=mouth)]

    # ------------------------------------------------------------------ outer region (hair, ears, neck, background)

    def _build_outer(self, rings: int, extent: float, hold: float) -> None:
        s = self.size
        mesh = self.mesh
        oval = topology.face_oval()
        o = mesh[oval, :2]
        centre = o.mean(0)
        self._oval = oval
        pts, zs, ws, wr, owner = [], [], [], [], []
        lim = s - 1.0
        for k, p in enumerate(o):
            d = p - centre
            r = float(np.hypot(*d))
            if r < 1e-6:
                continue
            # factor at which the ray centre + f d leaves the image
            with np.errstate(divide="ignore"):
                fx = np.where(d[0] > 0, (lim - centre[0]) / d[0], np.where(d[0] < 0, -centre[0] / d[0], np.inf))
                fy = np.where(d[1] > 0, (lim - centre[1]) / d[1], np.where(d[1] < 0, -centre[1] / d[1], np.inf))
            f_border = float(min(fx, fy))
            f_end = min(f_border, extent)
            if f_end < 1.08:  # the outline is at (or beyond) the border here: nothing to anchor
                continue
            for j in range(1, rings + 1):
                if j > 2 and k % 2:  # outer rings on every other ray: the motion is smooth out there
                    continue
                u = j / (rings + 1)
                # rings denser near the outline, where the motion changes fastest
                u = u ** 1.3
                f = 1.0 + u * (f_end - 1.0)
                pts.append(centre + f * d)
                zs.append(mesh[oval[k], 2])
                v = max(0.0, u - hold) / (1.0 - hold)
                ws.append(0.5 * (1.0 + math.cos(math.pi * v)))   # raised cosine (a linear fall-off: cheek_s32.md)
                # the outline's own non-rigid motion (jaw drop, cheeks) carried over a shorter band
                wr.append(0.5 * (1.0 + math.cos(math.pi * min(u / 0.5, 1.0))))
                owner.append(oval[k])
            if f_end < f_border - 0.02 and k % 2 == 0:  # a still ring where the motion ends inside the image
                pts.append(centre + f_end * d)
                zs.append(mesh[oval[k], 2])
                ws.append(0.0)
                wr.append(0.0)
                owner.append(oval[k])
        n_side = 8
        t = np.linspace(0.0, lim, n_side + 1)
        border = np.concatenate([
            np.stack([t, np.zeros_like(t)], 1), np.stack([t, np.full_like(t, lim)], 1),
            np.stack([np.zeros_like(t[1:-1]), t[1:-1]], 1), np.stack([np.full_like(t[1:-1], lim), t[1:-1]], 1),
        ])
        ring_pts = np.array(pts).reshape(-1, 2)
        # drop anchors that fall outside the image or crowd the border points
        inside = ((ring_pts > 1.0) & (ring_pts < lim - 1.0)).all(1)
        ring_pts, zs, ws = ring_pts[inside], np.array(zs)[inside], np.array(ws)[inside]
        wr, owner = np.array(wr)[inside], np.array(owner, dtype=np.int64)[inside]
        outer_src = np.concatenate([ring_pts, border])
        self._outer_src = outer_src
        self._outer_z = np.concatenate([zs, np.full(len(border), float(mesh[oval, 2].mean()))])
        self._outer_w = np.concatenate([ws, np.zeros(len(border))])
        self._outer_wr = np.concatenate([wr, np.zeros(len(border))])
        self._outer_owner = np.concatenate([owner, np.full(len(border), oval[0])])
        # Delaunay on the source positions of outline + anchors, keeping the triangles outside the outline
        all_pts = np.concatenate([o, outer_src])
        index = np.concatenate([oval, NUM_POINTS + np.arange(len(outer_src))])
        tri = Delaunay(all_pts).simplices
        cen = all_pts[tri].mean(1)
        poly = o.astype(np.float32).reshape(-1, 1, 2)
        keep = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) < 0 for x, y in cen])
        v = self._src_vertices()

        def wound(t):  # front-facing (positive signed area on the source)
            t = index[t]
            neg = _signed_area(v, t) < 0
            t[neg] = t[neg][:, [0, 2, 1]]
            return t.astype(np.int64)

        self._outer_tris = wound(tri[keep])
        # chords across the face (outline points only): a coarse layer under the face mesh, shown wherever the
        # mesh leaves a pixel uncovered (its own folds, triangles edge-on in the portrait)
        self._inner_tris = wound(tri[~keep])

    def _near_outline(self, rings: int) -> np.ndarray:
        """(898,) bool: face triangles with a vertex within ``rings`` mesh edges of the face outline (the cheeks,
        temples and jaw), none within one edge of an eye's or the lips' contour."""
        tris = self._face_tris

        def grow(mask, n):
            for _ in range(n):
                mask[tris[mask[tris].any(1)].ravel()] = True
            return mask

        near = np.zeros(NUM_POINTS, bool)
        near[topology.face_oval()] = True
        keep = np.zeros(NUM_POINTS, bool)
        keep[[*EYE_UPPER[0], *EYE_UPPER[1], *EYE_LOWER[0], *EYE_LOWER[1], *LIP_UPPER, *LIP_LOWER, *LIP_OUTER_UPPER,
              *LIP_OUTER_LOWER]] = True
        return grow(near, rings)[tris].any(1) & ~grow(keep, 1)[tris].any(1)

    def _src_vertices(self) -> np.ndarray:
        """(478 + outer, 2) source positions of every vertex (iris points included, unused by triangles)."""
        return np.concatenate([self.mesh[:, :2], self._outer_src])

    def _depth_corrected(self, target: np.ndarray) -> tuple[np.ndarray, tuple]:
        """The target with the parallax of its out-of-plane head rotation scaled by ``depth_gain`` (the head's rigid
        motion re-applied to the portrait mesh with its depths stretched about the face centre), and the fit."""
        s, rot, t = _similarity(self.mesh[RIGID_POINTS], target[RIGID_POINTS])
        if self.depth_gain != 1.0:
            dz = (self.depth_gain - 1.0) * (self.mesh[:, 2] - self._rigid_centre[2])
            target = target.copy()
            target[:, :2] += s * dz[:, None] * rot[:2, 2][None]
        return target, (s, rot, t)

    def _target_vertices(self, target: np.ndarray, fit=None) -> np.ndarray:
        s, rot, t = fit if fit is not None else _similarity(self.mesh[RIGID_POINTS], target[RIGID_POINTS])
        zo = self._rigid_centre[2] + self.depth_gain * (self._outer_z - self._rigid_centre[2])
        p3 = np.concatenate([self._outer_src, zo[:, None]], axis=1)
        moved = (s * p3 @ rot.T + t)[:, :2]
        # the outline's rigid motion with the same depth gain as the ring (the target carries the gain's parallax:
        # measured against the plain rigid motion the residual counted it twice, and the first rings overtook the
        # next ones on the near side of a turn, a fold, and stretched the hair behind the outline)
        own = np.concatenate([self.mesh[self._outer_owner, :2], zo[:, None]], axis=1)
        residual = target[self._outer_owner, :2] - (s * own @ rot.T + t)[:, :2]
        outer = (self._outer_src + self._outer_w[:, None] * (moved - self._outer_src)
                 + self._outer_wr[:, None] * residual)
        return np.concatenate([target[:, :2], outer])

    # ------------------------------------------------------------------ rendering

    def render(self, target_mesh: np.ndarray, return_aux: bool = False, texture: np.ndarray | None = None):
        """(S,S,3) uint8 frame for a (478,3) target mesh in the portrait's pixels; with ``return_aux`` also a dict
        of float32 (S,S) masks in [0,1]: 'mouth', 'eyes', 'lids', 'stretch'. ``texture``: the portrait's pixels
        with an expression's shading (``emotion_texture.ExpressionTexture``) warped in its place (None: the
        portrait's own)."""
        target = _check_mesh(target_mesh, "target mesh")
        s = self.size
        target, fit = self._depth_corrected(target)
        vt = self._target_vertices(target, fit)
        tris = self._tris
        dst_tri = vt[tris]
        area = _signed_area(vt, tris)
        nf = self._n_face
        zf = target[self._face_tris, 2].mean(1)
        # slivers (under half a pixel) are left to their neighbours' edge pixels: their affine maps blow up when
        # evaluated at pixel centres just outside them
        big = np.abs(area) >= 0.5
        # back-facing face triangles are hidden; where nothing covers a pixel the coarse chord layer shows. (Triangles
        # folded in the portrait itself, at the sides of the cheeks, are drawn when they face the camera: their
        # stretched content reads as cheek, the chord layer's as a smear.)
        front = (area[:nf] > 0) & big[:nf]
        face_ids = np.arange(nf)
        front_order = face_ids[front][np.argsort(-zf[front], kind="stable")]
        rest = np.arange(nf, len(tris))
        lower_front = area[nf:] > 0
        lower_ids = rest[lower_front & big[nf:]]
        lower_back = rest[~lower_front & big[nf:]]  # folds: shown only where nothing else is

        # one (3,2) view per triangle, made in C (indexing the array in the loop costs as much as the fill)
        pts = list(np.round(dst_tri * _ONE).astype(np.int32))
        idmap = np.full((s, s), self._identity_row, np.int32)
        fill, line, shift = cv2.fillConvexPoly, cv2.LINE_8, _SHIFT
        for k in lower_back.tolist() + lower_ids.tolist():
            fill(idmap, pts[k], k, line, shift)
        under = idmap.copy() if self._feather else None
        for k in front_order.tolist():
            fill(idmap, pts[k], k, line, shift)

        coef = np.concatenate([_affines(self._src_tri, dst_tri), np.array([[1, 0, 0, 0, 1, 0]], np.float32)])
        mx, my = self._maps(coef, idmap)
        squeezed = self._clamp_compressed(mx, my, idmap, coef, dst_tri)
        # fixed-point maps (what remap uses internally anyway): the conversion plus remap is ~3x cheaper
        m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        out = cv2.remap(self.image if texture is None else texture, m1, m2, RESAMPLE,
                        borderMode=cv2.BORDER_REPLICATE)

        self._mirrored = None
        if self._mirror_src_tri is not False:
            self._mirror_far_side(out, idmap, coef, dst_tri)
        if self._feather:
            self._fade_far_cheek(out, idmap, under, coef, dst_tri)
        seams = self._antialias_seams(out, mx, my, idmap, squeezed)
        if self._fill_from:
            self._fill_stretched(out, idmap, coef, dst_tri)
        aux = {k: np.zeros((s, s), np.float32) for k in ("mouth", "eyes", "lids")} if return_aux else None
        for part in self.parts:
            part.render(target, out, (mx, my), aux, texture)
        if not return_aux:
            return out
        aux["stretch"] = self._stretch(coef, idmap, area)
        if seams is not None:   # occlusion seams are unreliable too: the far cheek's hard edge against the hair
            aux["stretch"][self._outside_lips(seams, vt)] = 1.0
        return out, aux

    def _outside_lips(self, pix, vt, margin: int = 3):
        """The pixels (ys, xs) not within ``margin`` px of the target's outer lip outline (the lip line of a closed
        mouth is a seam too, but the lips are the mouth control's: mediapipe reads the opening from them)."""
        poly = vt[list(LIP_OUTER_UPPER) + list(LIP_OUTER_LOWER[::-1])]
        m = np.zeros((self.size, self.size), np.uint8)
        cv2.fillPoly(m, [np.round(poly).astype(np.int32)], 1)
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1)))
        keep = m[pix] == 0
        return pix[0][keep], pix[1][keep]

    def _maps(self, coef: np.ndarray, idmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gx, gy = self._gx, self._gy
        # one gather of all six coefficients per pixel (rows padded to 32 bytes, moved as four float64)
        tab = np.zeros((len(coef), 8), np.float32)
        tab[:, :6] = coef
        g = np.take(tab.view(np.float64), idmap, axis=0, mode="clip").view(np.float32)  # (S,S,8)
        mx = g[..., 0] * gx
        mx += g[..., 1] * gy
        mx += g[..., 2]
        my = g[..., 3] * gx
        my += g[..., 4] * gy
        my += g[..., 5]
        return mx, my

    def _clamp_compressed(self, mx, my, idmap, coef, dst_tri):
        """Pixels of strongly compressed triangles (edge-on cheeks, closing lids) sampled at their nearest point
        inside the triangle: a pixel centre half a pixel outside such a triangle would otherwise map many pixels
        away in the source (a thin bright or dark seam)."""
        lin = coef[:-1, [0, 1, 3, 4]].reshape(-1, 2, 2)
        gain = np.sqrt((lin.astype(np.float64) ** 2).sum((1, 2)))  # Frobenius norm ~ sqrt(2) for no compression
        bad = np.zeros(len(coef), bool)
        bad[:-1] = gain > 3.0
        if not bad.any():
            return None
        # only the window around the compressed triangles is searched (their pixels lie within it; the same pixels
        # in the same row-major order as a search of the whole map, ~0.3 ms a frame less)
        corners = dst_tri[bad[:-1]].reshape(-1, 2)
        lo = np.floor(corners.min(0)).astype(int) - 2
        hi = np.ceil(corners.max(0)).astype(int) + 3
        x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
        x1, y1 = min(int(hi[0]), idmap.shape[1]), min(int(hi[1]), idmap.shape[0])
        if x1 <= x0 or y1 <= y0:
            return None
        sel = np.take(bad, idmap[y0:y1, x0:x1], mode="clip")
        ys, xs = np.nonzero(sel)
        if len(ys) == 0:
            return None
        ys += y0
        xs += x0
        ids = idmap[ys, xs]
        tri = dst_tri[ids]
        src = self._src_tri[ids]
        fx, fy = xs.astype(np.float64), ys.astype(np.float64)
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        det = np.where(np.abs(det) < 1e-9, 1e-9, det)
        l1 = ((fx - a[:, 0]) * (c[:, 1] - a[:, 1]) - (fy - a[:, 1]) * (c[:, 0] - a[:, 0])) / det
        l2 = ((b[:, 0] - a[:, 0]) * (fy - a[:, 1]) - (b[:, 1] - a[:, 1]) * (fx - a[:, 0])) / det
        lam = np.clip(np.stack([1.0 - l1 - l2, l1, l2], 1), 0.0, None)
        lam /= np.maximum(lam.sum(1, keepdims=True), 1e-9)
        p = (lam[:, :, None] * src).sum(1)
        mx[ys, xs] = p[:, 0]
        my[ys, xs] = p[:, 1]
        return ys, xs  # squeezed pixels: one sample each stands for several source pixels, smoothed later

    @staticmethod
    def _antialias_seams(out, mx, my, idmap, squeezed=None):
        """Blur the one- or two-pixel seams where the source position jumps between neighbours (occlusion edges,
        a cheek seen edge-on): one bilinear sample per pixel there gives a staircase, the portrait had a soft edge.
        Only neighbours in different triangles can jump. Returns the seam pixels (ys, xs; each once, row by row),
        or None."""
        # whole-array tests (no gathers at the ~40 % of pixels on a triangle edge: 0.97 -> 0.41 ms a frame)
        seam = np.zeros(idmap.shape, bool)
        for first, second, along, across in (((slice(None), slice(None, -1)), (slice(None), slice(1, None)), mx, my),
                                             ((slice(None, -1),), (slice(1, None),), my, mx)):
            jump = idmap[first] != idmap[second]
            d = along[second] - along[first]
            d -= 1.0
            np.abs(d, out=d)
            e = across[second] - across[first]
            np.abs(e, out=e)
            d += e
            jump &= d > 2.5
            seam[first] |= jump
            seam[second] |= jump
        if squeezed is not None:
            seam[squeezed] = True
        ys, xs = np.nonzero(seam)
        if len(ys) == 0:
            return None
        y0, y1, x0, x1 = max(ys.min() - 2, 0), ys.max() + 3, max(xs.min() - 2, 0), xs.max() + 3
        soft = cv2.GaussianBlur(out[y0:y1, x0:x1], (5, 5), 1.0)
        out[ys, xs] = soft[ys - y0, xs - x0]
        return ys, xs

    def _mirror_far_side(self, out, idmap, coef, dst_tri) -> None:
        """Face triangles stretched past what the portrait shows take the mirrored near side (symmetry.py)."""
        nf = self._n_face
        if stretch_of(coef[:nf]).max() >= STRETCH_FROM:
            if self._mirror_src_tri is None:
                self._mirror_src_tri = self.mesh[mirror_partners(self.mesh)][self._face_tris][..., :2]
            coef_m = _affines(self._mirror_src_tri, dst_tri[:nf])
            w = mirror_weights(coef[:nf], coef_m, np.ones(nf, bool))
            if mirror_fill(self.image, out, idmap, w, coef_m, dst_tri[:nf]):
                self._mirrored = np.where(w >= 0.05, w, 0.0)  # the fill leaves these to the mirror

    def _fade_far_cheek(self, out, idmap, under, coef, dst_tri) -> None:
        """Blend the face's edge over the outer layer beneath it (only where both exist). Off by default
        (``feather=0``) since session 31: the layer beneath is the band just outside the portrait's hidden outline,
        the cheek's own edge against the hair, and blended over the turned face's edge (only at pixels inside their
        band triangle) it drew a dotted light line along the far cheek."""
        nf = self._n_face
        face = idmap < nf
        both = face & (under >= nf) & (under < self._n_outer)
        # only a real overlap (the hidden outline well under the face), not the one-pixel seam every edge has
        both = cv2.erode(both.view(np.uint8), np.ones((3, 3), np.uint8))
        bx, by, bw, bh = cv2.boundingRect(both)
        if bw == 0 or bh == 0:
            return
        k = self._feather
        s = self.size
        x0, y0, x1, y1 = max(bx - k, 0), max(by - k, 0), min(bx + bw + k, s), min(by + bh + k, s)
        cov = cv2.blur(face[y0:y1, x0:x1].astype(np.float32), (k, k), borderType=cv2.BORDER_REPLICATE)
        alpha = np.clip(2.0 * cov - 1.0, 0.0, 1.0)
        ys, xs = np.nonzero((both[y0:y1, x0:x1] > 0) & (alpha < 0.999))
        if len(ys) == 0:
            return
        alpha = alpha[ys, xs]
        ys, xs = ys + y0, xs + x0
        ids = under[ys, xs]
        fx, fy = xs.astype(np.float32), ys.astype(np.float32)
        # only pixels truly inside their outer triangle (an edge pixel's extrapolated map can point anywhere)
        tri = dst_tri[ids]
        a, b, c3 = tri[:, 0], tri[:, 1], tri[:, 2]
        det = (b[:, 0] - a[:, 0]) * (c3[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c3[:, 0] - a[:, 0])
        l1 = ((fx - a[:, 0]) * (c3[:, 1] - a[:, 1]) - (fy - a[:, 1]) * (c3[:, 0] - a[:, 0])) / det
        l2 = ((b[:, 0] - a[:, 0]) * (fy - a[:, 1]) - (b[:, 1] - a[:, 1]) * (fx - a[:, 0])) / det
        inside = (l1 >= -0.02) & (l2 >= -0.02) & (l1 + l2 <= 1.02)
        ys, xs, ids, fx, fy, alpha = ys[inside], xs[inside], ids[inside], fx[inside], fy[inside], alpha[inside]
        if len(ys) == 0:
            return
        c = coef[ids]
        sx = (c[:, 0] * fx + c[:, 1] * fy + c[:, 2])[None]
        sy = (c[:, 3] * fx + c[:, 4] * fy + c[:, 5])[None]
        low = cv2.remap(self.image, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]
        a = alpha[:, None]
        out[ys, xs] = (out[ys, xs] * a + low * (1.0 - a) + 0.5).astype(np.uint8)

    def _skin_detail(self) -> np.ndarray | None:
        """(2P,2P,3) int16: the high-pass of a square of the portrait's wider cheek (the less edge-on one), mirrored
        into a tile that repeats without seams, times ``FILL_DETAIL``; None where the square does not fit."""
        m, img, s = self.mesh, self.image, self.size
        nose, (left, right) = m[NOSE_TIP, 0], (m[i, 0] for i in FACE_SIDES)
        width = abs(right - left)
        side = int(np.argmax([abs(nose - left), abs(right - nose)]))
        cx, cy = m[list(CHEEK_CENTRES[side]), :2].mean(0)
        half = max(3, int(round(FILL_DETAIL_SIDE * width / 2)))
        sig = FILL_DETAIL_SIGMA * s / 224.0
        pad = int(math.ceil(3 * sig))
        x0, y0 = int(round(cx)) - half, int(round(cy)) - half
        if x0 - pad < 0 or y0 - pad < 0 or x0 + 2 * half + pad > s or y0 + 2 * half + pad > s:
            return None
        win = img[y0 - pad:y0 + 2 * half + pad, x0 - pad:x0 + 2 * half + pad].astype(np.float32)
        hp = (win - cv2.GaussianBlur(win, (0, 0), sig))[pad:-pad, pad:-pad]
        # a highlight, a mole or a crease in the square is not texture (mirrored, it would repeat as a pattern): the
        # parts louder than the square's median are turned down to it, then clipped at 2.5 robust deviations
        loud = np.sqrt(cv2.GaussianBlur((hp * hp).mean(2), (0, 0), 1.5 * sig)) + 1e-3
        hp *= np.minimum(1.0, float(np.median(loud)) / loud)[..., None]
        lim = 2.5 * 1.4826 * float(np.median(np.abs(hp))) + 0.5
        hp = np.clip(hp, -lim, lim) * FILL_DETAIL
        tile = np.concatenate([hp, hp[:, ::-1]], 1)
        tile = np.concatenate([tile, tile[::-1]], 0)
        return np.round(tile).astype(np.int16)

    def _fill_stretched(self, out, idmap, coef, dst_tri) -> None:
        """Face pixels whose triangle is stretched past what the portrait shows (a cheek seen edge-on in the portrait
        turned toward the camera: one source column spread over tens of pixels, horizontal streaks of the ear and
        hair colour) filled from their surroundings instead (a normalised Gaussian of the known pixels, sigma
        ``FILL_SMOOTH``; or cv2.inpaint, Telea), fading in from a ``FILL_FROM``-fold to a ``FILL_FULL``-fold stretch:
        the cheek's skin blended outward into the band's hair, a smooth field. Only triangles near the outline
        (``FILL_RINGS``); each side of the face in its own box, filled at 1/2-1/4 of the size (cost ~ the boxes)."""
        nf = self._n_face
        st = stretch_of(coef[:nf])
        cand = self._fill_tris & (st > self._fill_from)
        if not cand.any():
            return
        t = np.clip(np.log2(st / self._fill_from) / math.log2(self._fill_full / self._fill_from), 0.0, 1.0)
        w = np.zeros(len(coef), np.float32)
        w[:nf] = np.where(cand, t * t * (3.0 - 2.0 * t), 0.0)
        if self._mirrored is not None:  # where the mirrored near side has real skin for it, it stays
            w[:nf] *= 1.0 - self._mirrored
            cand &= w[:nf] > 0
            if not cand.any():
                return
        ids = np.flatnonzero(cand)
        cx = dst_tri[ids].mean(1)[:, 0]
        centre = dst_tri[:nf].reshape(-1, 2).mean(0)
        mid = float(centre[0])
        anchor = np.round(centre).astype(int)
        s = self.size
        pad = 6
        for side in (ids[cx < mid], ids[cx >= mid]):
            if len(side) == 0:
                continue
            p = dst_tri[side].reshape(-1, 2)
            x0, y0 = (max(int(v) - pad, 0) for v in np.floor(p.min(0)))
            x1, y1 = (min(int(v) + pad + 1, s) for v in np.ceil(p.max(0)))
            if x1 <= x0 or y1 <= y0:
                continue
            ids_roi = idmap[y0:y1, x0:x1]
            wr = np.take(w, ids_roi, mode="clip")
            hole = (wr > FILL_HOLE).astype(np.uint8)
            if not hole.any():
                continue
            face = ids_roi < nf
            if FILL_FROM_FACE:  # filled from the face's side only: the band's hair beyond the outline is unknown too
                hole |= (~face).view(np.uint8)
            roi = out[y0:y1, x0:x1]
            # the fill is a smooth field: made at ~1/2 (224 px) to ~1/4 (512 px) of the size with its blend weight,
            # then both scaled back in one resize
            k = max(2, int(round(s / FILL_SCALE)))
            h, wd = roi.shape[:2]
            sh, sw = max(h // k, 1), max(wd // k, 1)
            small = cv2.resize(roi, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
            hs = cv2.resize(hole.astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA) > 0.16
            if FILL_SMOOTH:  # normalised convolution: the known pixels' colours averaged over ~the hole's width
                known = np.where(hs, 0.0, 1.0).astype(np.float32)
                sig = FILL_SMOOTH * s / 224.0 / k
                num = cv2.GaussianBlur(small * known[..., None], (0, 0), sig)
                den = cv2.GaussianBlur(known, (0, 0), sig)
                sm = np.where(hs[..., None], num / np.maximum(den, 1e-4)[..., None], small)
            else:
                sm = cv2.inpaint(small.astype(np.uint8), hs.view(np.uint8), 2, cv2.INPAINT_TELEA).astype(np.float32)
            a = cv2.resize(wr, (sw, sh), interpolation=cv2.INTER_AREA)
            a = cv2.GaussianBlur(a, (0, 0), max(FILL_EDGE * s / 224.0 / k, 0.5))
            if FILL_FROM_FACE:
                a *= cv2.resize(face.view(np.uint8).astype(np.float32), (sw, sh), interpolation=cv2.INTER_AREA)
            # only the part of the box the weight reaches, blended in C (cv2.blendLinear: per-pixel weights)
            nz = np.argwhere(a > 0.004)
            if len(nz) == 0:
                continue
            (r0, c0), (r1, c1) = nz.min(0), nz.max(0) + 1
            r0, c0, r1, c1 = max(r0 - 1, 0), max(c0 - 1, 0), min(r1 + 1, sh), min(c1 + 1, sw)
            Y0, X0, Y1, X1 = r0 * k, c0 * k, min(r1 * k, h), min(c1 * k, wd)
            sub = np.ascontiguousarray(roi[Y0:Y1, X0:X1])
            fill_u8 = cv2.resize(np.clip(sm + 0.5, 0, 255).astype(np.uint8), (wd, h),
                                 interpolation=cv2.INTER_LINEAR)[Y0:Y1, X0:X1]
            wa = cv2.resize(a, (wd, h), interpolation=cv2.INTER_LINEAR)[Y0:Y1, X0:X1]
            if self._detail is not None:  # the portrait's own skin texture on the smooth field
                p2 = self._detail.shape[0]
                r0, c0 = (y0 + Y0 - anchor[1]) % p2, (x0 + X0 - anchor[0]) % p2
                plus, minus = (d[r0:r0 + Y1 - Y0, c0:c0 + X1 - X0] for d in self._detail_pm)
                fill_u8 = cv2.subtract(cv2.add(fill_u8, plus), minus)
            roi[Y0:Y1, X0:X1] = cv2.blendLinear(fill_u8, sub, wa, 1.0 - wa)

    def _stretch(self, coef, idmap, area) -> np.ndarray:
        """Per-pixel unreliability: 1 where the source triangle was stretched >= ~3x (or flipped), 0 where not."""
        lin = coef[:, [0, 1, 3, 4]].reshape(-1, 2, 2).astype(np.float64)
        sv = np.linalg.svd(lin, compute_uv=False)  # target -> source: small singular value = stretched target
        st = np.clip(np.log2(1.0 / np.maximum(sv[:, 1], 1e-6)) / 1.6, 0.0, 1.0)
        st[:-1][area <= 0] = 1.0
        st[-1] = 0.0
        return np.take(st.astype(np.float32), idmap, mode="clip")

# ---------------------------------------------------------------------------------------------- simple mesh edits
# Plain geometric edits of a mesh, for tests and previews of the renderer (the model's own targets come from
# codes.py). Each returns a new (478,3) array in the same pixel frame.


def rotate_mesh(mesh: np.ndarray, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """Rotate the mesh about the centre of its rigid points by the given angles (degrees, signals' conventions)."""
    from pdfgc.evaluation.signals import angles_to_rotation

    m = _check_mesh(mesh, "mesh")
    c = m[RIGID_POINTS].mean(0)
    return (m - c) @ angles_to_rotation(yaw, pitch, roll).T + c


def close_eyes(mesh: np.ndarray, amount: float = 1.0, eyes=(0, 1)) -> np.ndarray:
    """Move the lids together (amount 1 = shut, meeting a fifth of the way up from the lower lid)."""
    m = _check_mesh(mesh, "mesh").copy()
    for e in eyes:
        up, lo = list(EYE_UPPER[e][1:-1]), list(EYE_LOWER[e][1:-1])
        meet = m[lo] + 0.2 * (m[up] - m[lo])
        m[up] += amount * (meet - m[up])
        m[lo] += amount * (meet - m[lo])
    return m


def shift_irises(mesh: np.ndarray, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Move both irises by (dx, dy) eye widths along / across each eye's corner line (x toward the image right)."""
    m = _check_mesh(mesh, "mesh").copy()
    for e in range(2):
        a, b = m[EAR_POINTS[e, 0], :2], m[EAR_POINTS[e, 3], :2]
        if a[0] > b[0]:
            a, b = b, a
        ex = b - a
        ey = np.array([-ex[1], ex[0]])
        idx = list(IRIS[e])
        m[idx, :2] += dx * ex + dy * ey
    return m


def open_mouth(mesh: np.ndarray, amount: float = 0.1) -> np.ndarray:
    """Drop the lower lip and jaw by ``amount`` face heights (10-152) at the chin, fading toward the jaw angles."""
    m = _check_mesh(mesh, "mesh").copy()
    height = float(np.linalg.norm(m[152, :2] - m[10, :2]))
    corner_l, corner_r = m[LIP_CORNERS[0], :2], m[LIP_CORNERS[1], :2]
    centre = 0.5 * (corner_l + corner_r)
    half = 0.5 * float(np.linalg.norm(m[FACE_SIDES[1], :2] - m[FACE_SIDES[0], :2]))
    ex = (corner_r - corner_l) / max(np.linalg.norm(corner_r - corner_l), 1e-6)
    ey = np.array([-ex[1], ex[0]])  # down the face
    rel = m[:NUM_POINTS, :2] - centre
    along, below = rel @ ex, rel @ ey
    lower = np.zeros(NUM_POINTS, bool)
    lower[list(LIP_LOWER[1:-1]) + list(LIP_OUTER_LOWER[1:-1])] = True
    w = np.clip(1.0 - (along / (0.95 * half)) ** 2, 0.0, 1.0) * smoothstep(0.0, 0.04 * height, below)
    w = np.where(lower, np.clip(1.0 - (along / (0.95 * half)) ** 2, 0.0, 1.0), w)
    w[list(LIP_UPPER) + list(LIP_OUTER_UPPER)] = 0.0
    w[[*LIP_CORNERS, LIP_OUTER_UPPER[0], LIP_OUTER_UPPER[-1]]] = 0.0
    m[:, :2] += (amount * height) * w[:, None] * ey[None]
    return m
