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
   the border), plus the outline's own non-rigid motion (a jaw drop) over the inner half of the band: hair, ears
   and neck follow the head without bending, and the background beyond stays exactly still.
2. A triangle-id map rasterised in painter's order (cv2.fillConvexPoly, quarter-pixel vertices): the chord layer
   and the outer band first (folded ones before the others), then the front-facing face triangles from far to
   near (target z), so the nearest wins; back-facing face triangles are skipped. Per-pixel source positions come
   from per-triangle 2x3 affine maps (target -> source), gathered in one pass, and one fixed-point cv2.remap
   samples the portrait. Pixels of strongly compressed triangles (a cheek turned edge-on) are clamped inside their
   triangle (an extrapolated map would point many pixels away).
3. Seams: where the face is drawn over the outer band (the far cheek of a turned head, its hidden outline under
   the face) the face fades onto the band over ``feather`` x S pixels; pixels where the source position jumps
   between neighbours (occlusion edges) or whose triangle is squeezed get a small blur, as the portrait's own
   edges had.
4. Eyes: the white comes from a copy of the portrait with the irises inpainted away (cv2.inpaint, once); the iris is
   a rigid disc taken from the source iris (completed under the lids by reflection), placed at the target iris
   centre and clipped by the target lid opening; faded out where the mesh warp already carries the iris there.
   A closing eye is blended toward a copy of the portrait whose eye openings are covered with smoothed skin, plus a
   painted lash line (``lids="painted"``, the default); ``lids="sheet"`` instead stretches the portrait's own lid
   skin down to the target lid with its lashes (``lids.py``: closed eyes read back nearer closed and look more like
   skin, but eye-following read back worse, so it is opt-in: README, "Real pixels").
5. Mouth: where the target inner-lip polygon is open beyond the source's, a real mouth interior from the shipped
   bank (``mouth_bank.py``), colour-matched, is drawn inside the polygon (``mouth="procedural"``: the older
   painted cavity with a teeth band); a source mouth that is already open keeps its own (warped) interior as far
   as the target opening matches it.
6. Far side (in ``_fade_far_cheek``): face triangles stretched past what the portrait shows take the mirrored
   near side where it is less stretched (``symmetry.py``).

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
from pdfgc.evaluation.signals import EAR_POINTS, RIGID_POINTS
from pdfgc.families.meshwarp import topology
from pdfgc.families.meshwarp.lids import lid_sheet
from pdfgc.families.meshwarp.mouth_bank import default_bank
from pdfgc.families.meshwarp.symmetry import STRETCH_FROM, mirror_fill, mirror_partners, mirror_weights, stretch_of
from pdfgc.families.meshwarp.topology import triangles

__all__ = ["WarpRenderer", "WarpInputError", "triangles"]

NUM_POINTS = 478
_SHIFT = 2  # fillConvexPoly sub-pixel bits: vertices on a quarter-pixel grid
_ONE = float(1 << _SHIFT)
# the lid sheet (lids.py) starts when the target's EAR falls below this fraction of the portrait's (an open eye,
# a blink's first frames and a squint above it are the warp alone) and is full at 0.3. On 40 closed-eye pairs of
# training clips the EAR mediapipe reads back is 0.055 off the target's (0.053 painted, 0.078 the warp alone);
# a sheet at full weight from 0.7-0.95 read back 0.065 (all too open)
LID_SHEET_FROM = 0.8
LID_SHEET_FULL = 0.3


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


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Umeyama fit dst ~= s R src + t on (M,3) point sets."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, sig, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt))
    e = np.array([1.0, 1.0, d])
    rot = (u * e) @ vt
    s = float((sig * e).sum() / max((a ** 2).sum(), 1e-12))
    return s, rot, md - s * rot @ ms


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


def _poly_mask(shape: tuple[int, int], poly: np.ndarray, offset=(0.0, 0.0)) -> np.ndarray:
    """Anti-aliased float32 mask of a polygon (pixel coordinates, minus offset) in an array of `shape`."""
    m = np.zeros(shape, np.uint8)
    pts = np.round((poly[:, :2] - np.asarray(offset)) * 16).astype(np.int32)
    cv2.fillPoly(m, [pts], 255, cv2.LINE_AA, 4)
    return m.astype(np.float32) * (1.0 / 255.0)


def _smoothstep(e0: float, e1: float, x):
    t = np.clip((np.asarray(x, dtype=np.float64) - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ear(mesh: np.ndarray) -> np.ndarray:
    p = mesh[EAR_POINTS, :2]
    d = lambda i, j: np.linalg.norm(p[:, i] - p[:, j], axis=-1)  # noqa: E731
    return (d(1, 5) + d(2, 4)) / (2.0 * np.maximum(d(0, 3), 1e-6))


def _box(points: np.ndarray, margin: float, size: int) -> tuple[int, int, int, int]:
    """Integer (x0, y0, x1, y1) bounding box of points plus margin, clipped to the image (x1/y1 exclusive)."""
    lo = np.floor(points[:, :2].min(0) - margin).astype(int)
    hi = np.ceil(points[:, :2].max(0) + margin).astype(int) + 1
    x0, y0 = np.clip(lo, 0, size)
    x1, y1 = np.clip(hi, 0, size)
    return int(x0), int(y0), int(x1), int(y1)


# ---------------------------------------------------------------------------------------------- renderer


class WarpRenderer:
    """Warp one portrait to target meshes. ``image`` (S,S,3) uint8 RGB, ``mesh`` (478,3) its face mesh in pixels.

    Options (keywords): ``outer_rings`` (5) rings of anchor points beyond the outline; ``outer_extent`` (2.2) how far
    the head's motion reaches, in outline radii from the face centre (clipped at the border); ``outer_hold`` (0) the
    fraction of the band that moves fully before the fade starts; ``depth_gain`` (1.35, see the module
    docstring) is for targets made by rotating the portrait's own mesh (codes.py): pass 1.0 when the target mesh was
    measured on a real frame (refiner training pairs), whose 2-D points already sit where the features are;
    ``feather`` (0.03) width of the fade from the far cheek onto the outer layer, as a fraction of S;
    ``eyes``/``lids``/``mouth`` (True) switch the procedural parts off for debugging; ``mouth="procedural"``
    paints the mouth interior instead of taking it from the shipped bank of real ones (``mouth_bank``);
    ``lids`` ("painted") covers a closing eye with smoothed skin; "sheet" (or True) stretches the lid's own
    (``lids.py``);
    ``far_side`` (False): face triangles stretched past what the portrait shows take the mirrored near side
    (``symmetry``); off by default: +0.06 dB on held-out turned pairs, ~1 ms a frame, a faint mirrored crease.
    """

    def __init__(self, image: np.ndarray, mesh: np.ndarray, *, outer_rings: int = 5, outer_extent: float = 2.2,
                 outer_hold: float = 0.0, depth_gain: float = 1.35,
                 feather: float = 0.03, eyes: bool = True, lids: bool | str = "painted", mouth: bool = True,
                 far_side: bool = False):
        self.image = _check_image(image)
        self.mesh = _check_mesh(mesh, "portrait mesh").copy()
        if (outer_rings < 1 or not outer_extent > 1.0 or not 0.0 <= feather < 0.5 or not 0.0 <= outer_hold < 1.0
                or not 0.5 <= depth_gain <= 3.0):
            raise WarpInputError("warp: outer_rings >= 1, outer_extent > 1, 0 <= outer_hold < 1, "
                                 "0.5 <= depth_gain <= 3 and 0 <= feather < 0.5 are needed")
        self.size = s = self.image.shape[0]
        self.use_eyes, self.use_lids, self.use_mouth = eyes, lids, mouth
        self._mirror_src_tri = None if far_side else False  # symmetry.py, made on the first turned target
        self.depth_gain = float(depth_gain)
        c = self.mesh[RIGID_POINTS].mean(0)
        self._rigid_centre = c
        self._feather = max(1, int(round(feather * s)) | 1) if feather > 0 else 0
        self._face_tris = triangles()
        self._build_outer(outer_rings, outer_extent, outer_hold)
        n_face = len(self._face_tris)
        self._tris = np.concatenate([self._face_tris, self._outer_tris, self._inner_tris])
        self._n_face = n_face
        self._n_outer = n_face + len(self._outer_tris)  # ids [n_face, n_outer) are the band beyond the outline
        self._identity_row = len(self._tris)  # id of "no triangle": the identity map
        self._src_tri = self._src_vertices()[self._tris]  # (T,3,2)
        self._src_area = _signed_area(self._src_vertices(), self._tris)
        ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
        self._gx, self._gy = xs, ys
        self._prepare_eyes()
        self._prepare_mouth()

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
                ws.append(0.5 * (1.0 + math.cos(math.pi * max(0.0, u - hold) / (1.0 - hold))))
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
        own = self.mesh[self._outer_owner]
        residual = target[self._outer_owner, :2] - (s * own @ rot.T + t)[:, :2]
        outer = (self._outer_src + self._outer_w[:, None] * (moved - self._outer_src)
                 + self._outer_wr[:, None] * residual)
        return np.concatenate([target[:, :2], outer])

    # ------------------------------------------------------------------ per-portrait eye and mouth material

    def _prepare_eyes(self) -> None:
        s = self.size
        img = self.image
        mesh = self.mesh
        self._sclera = img.copy()  # irises inpainted away
        self._iris_tex = img.copy()  # iris discs completed where the lids hid them
        self._closed = img.copy()  # eye openings inpainted with lid skin
        self._closed_mask = np.zeros((s, s), np.float32)  # where _closed differs from the portrait
        self._eye_src = []
        for e in range(2):
            poly = mesh[list(topology.EYE_POLYGONS[e]), :2]
            iris = mesh[list(topology.IRIS[e]), :2]
            centre = iris.mean(0)
            radius = float(np.linalg.norm(iris[1:] - iris[0], axis=1).mean())
            width = float(np.linalg.norm(mesh[EAR_POINTS[e, 0], :2] - mesh[EAR_POINTS[e, 3], :2]))
            margin = max(4.0, 0.6 * width)
            x0, y0, x1, y1 = _box(poly, margin, s)
            self._eye_src.append(dict(centre=centre, radius=max(radius, 0.5), width=width,
                                      ear=float(_ear(mesh)[e])))
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            roi = (slice(y0, y1), slice(x0, x1))
            open_m = _poly_mask((y1 - y0, x1 - x0), poly, (x0, y0))
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            dist = np.hypot(xx - centre[0], yy - centre[1])
            # sclera: inpaint the iris disc (a little beyond mediapipe's radius, which runs small) inside the opening
            grow = max(1, int(round(0.12 * width)))
            open_d = cv2.dilate((open_m > 0.02).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=grow)
            disc = ((dist <= 1.25 * radius) & (open_d > 0)).astype(np.uint8)
            if disc.any():
                self._sclera[roi] = cv2.inpaint(np.ascontiguousarray(img[roi]), disc, 3, cv2.INPAINT_TELEA)
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
            up = mesh[list(topology.EYE_UPPER[e]), :2]
            samples = np.array([img[int(np.clip(round(y), 0, s - 1)), int(np.clip(round(x), 0, s - 1))] for x, y in up])
            skin = paint[lid > 0].mean(0) if lid.any() else samples.mean(0).astype(np.float32)
            self._eye_src[e]["lash"] = 0.5 * np.minimum(samples.min(0).astype(np.float64), 0.5 * skin) + 0.25 * skin

    def _lid_skin(self, e: int, box, width: float) -> np.ndarray:
        """(h,w,3) float32 closed-lid colour over `box`: per column, the skin above the lashes (0.28 eye widths
        over the upper lid) blended toward the skin under the lower lid only near the bottom."""
        x0, y0, x1, y1 = box
        img = self.image.astype(np.float32)
        s = self.size
        up = self.mesh[list(topology.EYE_UPPER[e]), :2]
        lo = self.mesh[list(topology.EYE_LOWER[e]), :2]
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

    def _prepare_mouth(self) -> None:
        mesh = self.mesh
        img = self.image
        up, lo = mesh[13, :2], mesh[14, :2]
        width = float(np.linalg.norm(mesh[308, :2] - mesh[78, :2]))
        self._mouth_src = dict(gap=float(np.linalg.norm(lo - up)), width=width)
        # lip colour: mean over the outer-minus-inner lip band (for the cavity and tongue tints)
        s = self.size
        outer = np.array(list(topology.LIP_OUTER_UPPER) + list(topology.LIP_OUTER_LOWER[-2:0:-1]))
        box = _box(mesh[outer], 2, s)
        x0, y0, x1, y1 = box
        if x1 - x0 > 2 and y1 - y0 > 2:
            m = _poly_mask((y1 - y0, x1 - x0), mesh[outer], (x0, y0)) - _poly_mask(
                (y1 - y0, x1 - x0), mesh[list(topology.MOUTH_POLYGON)], (x0, y0))
            m = m > 0.5
            lip = img[y0:y1, x0:x1][m].mean(0) if m.any() else np.array([160.0, 90.0, 90.0])
        else:
            lip = np.array([160.0, 90.0, 90.0])
        # skin brightness near the mouth sets the teeth brightness (a dim photo has dim teeth)
        cheek = mesh[[50, 280, 18, 200], :2]
        vals = [img[int(np.clip(round(y), 0, s - 1)), int(np.clip(round(x), 0, s - 1))] for x, y in cheek]
        skin = np.mean(vals, axis=0)
        self._lip_colour = np.asarray(lip, dtype=np.float64)
        self._skin_colour = np.asarray(skin, dtype=np.float64)
        # real mouth interiors (mouth_bank.py), colour-matched to this portrait; mouth="procedural" keeps the
        # painted cavity (the shipped bank missing, or for comparison)
        bank = default_bank() if self.use_mouth and self.use_mouth != "procedural" else None
        self._mouths = bank.for_portrait(img, mesh) if bank is not None else None

    # ------------------------------------------------------------------ rendering

    def render(self, target_mesh: np.ndarray, return_aux: bool = False):
        """(S,S,3) uint8 frame for a (478,3) target mesh in the portrait's pixels; with ``return_aux`` also a dict
        of float32 (S,S) masks in [0,1]: 'mouth', 'eyes', 'lids', 'stretch'."""
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

        pts = np.round(dst_tri * _ONE).astype(np.int32)
        idmap = np.full((s, s), self._identity_row, np.int32)
        fill = cv2.fillConvexPoly
        for k in lower_back.tolist() + lower_ids.tolist():
            fill(idmap, pts[k], k, cv2.LINE_8, _SHIFT)
        under = idmap.copy() if self._feather else None
        for k in front_order.tolist():
            fill(idmap, pts[k], k, cv2.LINE_8, _SHIFT)

        coef = np.concatenate([_affines(self._src_tri, dst_tri), np.array([[1, 0, 0, 0, 1, 0]], np.float32)])
        mx, my = self._maps(coef, idmap)
        squeezed = self._clamp_compressed(mx, my, idmap, coef, dst_tri)
        # fixed-point maps (what remap uses internally anyway): the conversion plus remap is ~3x cheaper
        m1, m2 = cv2.convertMaps(mx, my, cv2.CV_16SC2)
        out = cv2.remap(self.image, m1, m2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

        if self._feather:
            self._fade_far_cheek(out, idmap, under, coef, dst_tri)
        seams = self._antialias_seams(out, mx, my, idmap, squeezed)
        aux = {} if return_aux else None
        eyes_m = np.zeros((s, s), np.float32) if return_aux else None
        lids_m = np.zeros((s, s), np.float32) if return_aux else None
        mouth_m = np.zeros((s, s), np.float32) if return_aux else None
        if self.use_eyes or self.use_lids:
            for e in range(2):
                self._render_eye(e, target, out, mx, my, eyes_m, lids_m)
        if self.use_mouth:
            self._render_mouth(target, out, mouth_m)
        if not return_aux:
            return out
        aux["mouth"], aux["eyes"], aux["lids"] = mouth_m, eyes_m, lids_m
        aux["stretch"] = self._stretch(coef, idmap, area)
        if seams is not None:   # occlusion seams are unreliable too: the far cheek's hard edge against the hair
            aux["stretch"][self._outside_lips(seams, vt)] = 1.0
        return out, aux

    def _outside_lips(self, pix, vt, margin: int = 3):
        """The pixels (ys, xs) not within ``margin`` px of the target's outer lip outline (the lip line of a closed
        mouth is a seam too, but the lips are the mouth control's: mediapipe reads the opening from them)."""
        poly = vt[list(topology.LIP_OUTER_UPPER) + list(topology.LIP_OUTER_LOWER[::-1])]
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
        sel = np.take(bad, idmap, mode="clip")
        ys, xs = np.nonzero(sel)
        if len(ys) == 0:
            return None
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
        Only neighbours in different triangles can jump, which keeps the test to a few pixels. Returns the seam
        pixels (ys, xs), or None."""
        pix = []
        for axis in (1, 0):
            a = idmap[:, :-1] if axis == 1 else idmap[:-1]
            b = idmap[:, 1:] if axis == 1 else idmap[1:]
            ys, xs = np.nonzero(a != b)
            if len(ys) == 0:
                continue
            y2, x2 = (ys, xs + 1) if axis == 1 else (ys + 1, xs)
            dxm, dym = mx[y2, x2] - mx[ys, xs], my[y2, x2] - my[ys, xs]
            if axis == 1:
                jump = np.abs(dxm - 1.0) + np.abs(dym) > 2.5
            else:
                jump = np.abs(dym - 1.0) + np.abs(dxm) > 2.5
            pix += [(ys[jump], xs[jump]), (y2[jump], x2[jump])]
        if squeezed is not None:
            pix.append(squeezed)
        if not pix:
            return None
        ys = np.concatenate([p[0] for p in pix])
        xs = np.concatenate([p[1] for p in pix])
        if len(ys) == 0:
            return None
        y0, y1, x0, x1 = max(ys.min() - 2, 0), ys.max() + 3, max(xs.min() - 2, 0), xs.max() + 3
        soft = cv2.GaussianBlur(out[y0:y1, x0:x1], (5, 5), 1.0)
        out[ys, xs] = soft[ys - y0, xs - x0]
        return ys, xs

    def _fade_far_cheek(self, out, idmap, under, coef, dst_tri) -> None:
        """Blend the face's edge over the outer layer beneath it (only where both exist); first, face triangles
        stretched past what the portrait shows take the mirrored near side (symmetry.py)."""
        nf = self._n_face
        if self._mirror_src_tri is not False and stretch_of(coef[:nf]).max() >= STRETCH_FROM:
            if self._mirror_src_tri is None:
                self._mirror_src_tri = self.mesh[mirror_partners(self.mesh)][self._face_tris][..., :2]
            coef_m = _affines(self._mirror_src_tri, dst_tri[:nf])
            w = mirror_weights(coef[:nf], coef_m, np.ones(nf, bool))
            mirror_fill(self.image, out, idmap, w, coef_m, dst_tri[:nf])
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

    def _stretch(self, coef, idmap, area) -> np.ndarray:
        """Per-pixel unreliability: 1 where the source triangle was stretched >= ~3x (or flipped), 0 where not."""
        lin = coef[:, [0, 1, 3, 4]].reshape(-1, 2, 2).astype(np.float64)
        sv = np.linalg.svd(lin, compute_uv=False)  # target -> source: small singular value = stretched target
        st = np.clip(np.log2(1.0 / np.maximum(sv[:, 1], 1e-6)) / 1.6, 0.0, 1.0)
        st[:-1][area <= 0] = 1.0
        st[-1] = 0.0
        return np.take(st.astype(np.float32), idmap, mode="clip")

    # ------------------------------------------------------------------ eyes

    def _render_eye(self, e, target, out, mx, my, eyes_m, lids_m) -> None:
        s = self.size
        info = self._eye_src[e]
        poly_t = target[list(topology.EYE_POLYGONS[e]), :2]
        width_t = float(np.linalg.norm(target[EAR_POINTS[e, 0], :2] - target[EAR_POINTS[e, 3], :2]))
        if width_t < 2.0:
            return
        x0, y0, x1, y1 = _box(poly_t, max(4.0, 0.6 * width_t), s)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        roi = (slice(y0, y1), slice(x0, x1))
        sx, sy = mx[roi], my[roi]
        iris_t = target[list(topology.IRIS[e]), :2]
        c_t = iris_t.mean(0)
        r_t = max(float(np.linalg.norm(iris_t[1:] - iris_t[0], axis=1).mean()), 0.5)
        # where the mesh warp alone puts the iris: when that is already the target's iris (the gaze rides with
        # the head), the disc compositing is faded out, so it costs nothing and changes nothing
        cx, cy = (int(np.clip(round(v), 0, s - 1)) for v in c_t)
        carried = np.array([mx[cy, cx], my[cy, cx]], dtype=np.float64)
        off = float(np.linalg.norm(carried - info["centre"])) / info["radius"]
        mismatch = abs((r_t / info["radius"]) / max(width_t / max(info["width"], 1e-6), 1e-6) - 1.0)
        w_comp = float(_smoothstep(0.04, 0.12, max(off, mismatch))) if self.use_eyes else 0.0
        ratio = float(_ear(target)[e]) / max(info["ear"], 1e-6)
        closed = float(_smoothstep(0.5, 0.15, ratio)) if self.use_lids else 0.0
        if self.use_lids and self.use_lids != "painted":  # the lid sheet (lids.py), from a lid well down
            closed = float(_smoothstep(LID_SHEET_FROM, LID_SHEET_FULL, ratio))
        if w_comp == 0.0 and closed == 0.0 and eyes_m is None:
            return  # the mesh warp alone is this eye's render
        # the anti-aliased mask's upper half: identity stays exact (no pixel mixes lid with a completed iris)
        open_m = np.clip(2.0 * _poly_mask((y1 - y0, x1 - x0), poly_t, (x0, y0)) - 1.0, 0.0, 1.0)
        if eyes_m is not None:
            eyes_m[roi] = np.maximum(eyes_m[roi], open_m)
        if w_comp == 0.0 and closed == 0.0:
            return
        region = out[roi].astype(np.float32)
        if w_comp > 0.0 and open_m.any():
            sclera = cv2.remap(self._sclera, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            scale = info["radius"] / r_t
            yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
            ix = (info["centre"][0] + (xx - c_t[0]) * scale).astype(np.float32)
            iy = (info["centre"][1] + (yy - c_t[1]) * scale).astype(np.float32)
            iris = cv2.remap(self._iris_tex, ix, iy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            d = np.hypot(xx - c_t[0], yy - c_t[1]) / r_t
            a_i = np.clip((1.45 - d) / 0.15, 0.0, 1.0)[..., None]
            eye = sclera.astype(np.float32) * (1.0 - a_i) + iris.astype(np.float32) * a_i
            m = open_m[..., None] * w_comp
            region = region * (1.0 - m) + eye * m
        if closed > 0.0 and self.use_lids != "painted":
            lid, a_l = lid_sheet(self.image, self.mesh, target, e, (x0, y0, x1, y1), closed)
            region = region * (1.0 - a_l[..., None]) + lid * a_l[..., None]
            if lids_m is not None:
                lids_m[roi] = np.maximum(lids_m[roi], a_l)
        elif closed > 0.0:
            skin = cv2.remap(self._closed, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            region = region * (1.0 - closed) + skin.astype(np.float32) * closed
            where = cv2.remap(self._closed_mask, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
            up = target[list(topology.EYE_UPPER[e]), :2]
            lo = target[list(topology.EYE_LOWER[e]), :2]
            line = up + 0.15 * closed * (lo - up)  # the lash line, a touch below the upper lid contour
            lm = np.zeros((y1 - y0, x1 - x0), np.uint8)
            th = max(1, int(round(0.04 * width_t)))
            cv2.polylines(lm, [np.round((line[1:-1] - (x0, y0)) * 16).astype(np.int32)], False, 255, th,
                          cv2.LINE_AA, 4)
            lm = cv2.GaussianBlur(lm, (3, 3), 0.6)
            a_l = (lm.astype(np.float32) * (0.7 * closed / 255.0))[..., None]
            region = region * (1.0 - a_l) + info.get("lash", np.zeros(3)).astype(np.float32) * a_l
            if lids_m is not None:
                lids_m[roi] = np.maximum(lids_m[roi], np.clip(where * closed, 0, 1))
        out[roi] = np.clip(region + 0.5, 0, 255).astype(np.uint8)

    # ------------------------------------------------------------------ mouth

    def _render_mouth(self, target, out, mouth_m) -> None:
        s = self.size
        a, b = target[78, :2], target[308, :2]
        width = float(np.linalg.norm(b - a))
        gap = float(np.linalg.norm(target[14, :2] - target[13, :2]))
        src = self._mouth_src
        if width < 3.0 or gap < max(1.0, 0.03 * width):
            return
        # how much of the target opening the source's own interior can fill
        src_rel = src["gap"] / max(src["width"], 1e-6)
        tgt_rel = gap / width
        real = float(_smoothstep(0.35, 0.8, src_rel / tgt_rel)) if src["gap"] > max(1.0, 0.03 * src["width"]) else 0.0
        if real >= 1.0:
            return
        poly = target[list(topology.MOUTH_POLYGON), :2]
        x0, y0, x1, y1 = _box(poly, 2, s)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        h, w = y1 - y0, x1 - x0
        mask = _poly_mask((h, w), poly, (x0, y0))
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, 0.035 * width)) * mask  # soft inside the lip line
        if self._mouths is not None:
            paint = self._mouths.interior(target, (x0, y0, x1, y1), gap / width)
        else:
            paint = self._mouth_interior(target, (x0, y0, x1, y1), width, gap)
        alpha = (mask * (1.0 - real))[..., None]
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.clip(region * (1.0 - alpha) + paint * alpha + 0.5, 0, 255).astype(np.uint8)
        if mouth_m is not None:
            mouth_m[y0:y1, x0:x1] = alpha[..., 0]

    def _mouth_interior(self, target, box, width, gap) -> np.ndarray:
        """Procedural mouth interior (h,w,3) float32 over `box`, in the mouth's own frame (corner 78 -> 308)."""
        x0, y0, x1, y1 = box
        a = target[78, :2]
        e = (target[308, :2] - a) / width
        n = np.array([-e[1], e[0]])  # points down for an upright face (y down)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        px, py = xx - a[0], yy - a[1]
        u = (px * e[0] + py * e[1]) / width  # 0..1 corner to corner
        t = px * n[0] + py * n[1]

        def curve(idx):
            p = target[list(idx), :2] - a
            cu, ct = p @ e / width, p @ n
            order = np.argsort(cu)
            return np.interp(u, cu[order], ct[order])

        t_up, t_lo = curve(topology.LIP_UPPER), curve(topology.LIP_LOWER)
        span = np.maximum(t_lo - t_up, 1e-3)
        v = np.clip((t - t_up) / span, 0.0, 1.0)  # 0 at the upper inner lip, 1 at the lower
        across = np.clip(1.0 - (2.0 * u - 1.0) ** 2, 0.0, 1.0)  # 1 mid-mouth, 0 at the corners
        lip = self._lip_colour
        lum = float(np.clip(self._skin_colour.mean() / 180.0, 0.45, 1.1))
        rel = gap / width
        d_up, d_lo = t - t_up, t_lo - t  # pixels below the upper lip line / above the lower one

        def over(col, layer, colour):
            layer = np.clip(layer, 0.0, 1.0)[..., None]
            return col * (1.0 - layer) + np.asarray(colour) * layer

        # cavity: dark red-brown near the lips, darkest deep inside and toward the throat (upper middle)
        deep = np.sqrt(np.clip(np.sin(np.pi * v) * across, 0.0, 1.0))
        col = over(np.broadcast_to(lip * 0.42 * lum, u.shape + (3,)).copy(), deep, lip * 0.12 * lum)
        # tongue: a low rounded mound rising from the lower lip, in shadow
        tongue = 1.0 - ((u - 0.5) / 0.3) ** 2 - ((1.0 - v) / 0.42) ** 2
        tongue = _smoothstep(0.0, 0.5, tongue) * float(_smoothstep(0.1, 0.28, rel)) * 0.65
        tongue_col = np.array([lip[0] * 0.78, lip[1] * 0.48, lip[2] * 0.52]) * lum
        col = over(col, tongue * (0.75 + 0.25 * v), tongue_col)
        # upper teeth under the upper lip (at most half the opening), brightest mid-mouth, faint incisor gaps
        teeth_h = min(0.1 * width, 0.5 * span.max()) if span.size else 0.0
        band = _smoothstep(teeth_h, 0.6 * teeth_h, d_up) * _smoothstep(-0.5, 0.8, d_up)
        band = band * _smoothstep(0.1, 0.32, u) * _smoothstep(0.9, 0.68, u) * float(_smoothstep(0.03, 0.09, rel))
        gaps = np.ones_like(u)
        for k in (-3, -2, -1, 0, 1, 2, 3):
            gaps -= (0.16 if k == 0 else 0.1) * np.exp(-(((u - 0.5 - k * 0.075) * width) / 0.6) ** 2)
        teeth_col = np.array([222.0, 212.0, 196.0]) * lum
        # teeth darken toward the corners and toward their edges (they sit in the mouth's shadow)
        shade = (0.55 + 0.4 * across) * gaps * (1.0 - 0.25 * _smoothstep(0.0, teeth_h + 1e-6, d_up))
        col = over(col, band * 0.92, teeth_col * shade[..., None])
        # lower teeth: fainter, just above the lower lip when the mouth is well open
        low_h = 0.06 * width
        low = _smoothstep(low_h, 0.5 * low_h, d_lo) * _smoothstep(-0.5, 0.8, d_lo)
        low = low * _smoothstep(0.25, 0.38, u) * _smoothstep(0.75, 0.62, u) * float(_smoothstep(0.16, 0.3, rel)) * 0.3
        col = over(col, low, teeth_col * 0.8 * shade[..., None])
        # the lips' shadow on the interior edge
        rim = _smoothstep(0.0, 0.05 * width + 1.0, np.minimum(d_up + 0.5 * teeth_h * band, d_lo))
        col = col * (0.6 + 0.4 * rim[..., None])
        return col.astype(np.float32)


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
        up, lo = list(topology.EYE_UPPER[e][1:-1]), list(topology.EYE_LOWER[e][1:-1])
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
        idx = list(topology.IRIS[e])
        m[idx, :2] += dx * ex + dy * ey
    return m


def open_mouth(mesh: np.ndarray, amount: float = 0.1) -> np.ndarray:
    """Drop the lower lip and jaw by ``amount`` face heights (10-152) at the chin, fading toward the jaw angles."""
    m = _check_mesh(mesh, "mesh").copy()
    height = float(np.linalg.norm(m[152, :2] - m[10, :2]))
    corner_l, corner_r = m[78, :2], m[308, :2]
    centre = 0.5 * (corner_l + corner_r)
    half = 0.5 * float(np.linalg.norm(m[454, :2] - m[234, :2]))
    ex = (corner_r - corner_l) / max(np.linalg.norm(corner_r - corner_l), 1e-6)
    ey = np.array([-ex[1], ex[0]])  # down the face
    rel = m[:NUM_POINTS, :2] - centre
    along, below = rel @ ex, rel @ ey
    lower = np.zeros(NUM_POINTS, bool)
    lower[list(topology.LIP_LOWER[1:-1]) + list(topology.LIP_OUTER_LOWER[1:-1])] = True
    w = np.clip(1.0 - (along / (0.95 * half)) ** 2, 0.0, 1.0) * _smoothstep(0.0, 0.04 * height, below)
    w = np.where(lower, np.clip(1.0 - (along / (0.95 * half)) ** 2, 0.0, 1.0), w)
    w[list(topology.LIP_UPPER) + list(topology.LIP_OUTER_UPPER)] = 0.0
    w[[78, 308, 61, 291]] = 0.0
    m[:, :2] += (amount * height) * w[:, None] * ey[None]
    return m
