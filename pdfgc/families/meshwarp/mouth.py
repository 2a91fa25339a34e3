"""The mesh-warp renderer's mouth: a mouth interior drawn inside the target's inner lips where the mouth opens
beyond the portrait's own (step 5 of ``warp.py``'s docstring).

A real mouth interior from the shipped bank (``mouth_bank.py``), colour-matched to the portrait, is drawn inside the
target inner-lip polygon (``mouth="procedural"``: the older painted cavity with a teeth band); a source mouth that
is already open keeps its own (warped) interior as far as the target opening matches it.

The interface to the warp core is ``MouthPart(image, mesh, mouth=)`` once per portrait and
``render(target, out, maps, aux)`` per frame: the (depth-corrected) target mesh, the warped frame drawn over in
place, the warp's per-pixel source positions (unused here) and, when the caller wants masks, ``aux["mouth"]``
filled in place. Any object with that ``render`` can replace it (``WarpRenderer.parts``).
"""
from __future__ import annotations

import cv2
import numpy as np

from pdfgc.families.meshwarp import topology
from pdfgc.families.meshwarp.mouth_bank import default_bank
from pdfgc.families.meshwarp.shapes import bounding_box, poly_mask, smoothstep
from pdfgc.media.mesh_indices import (
    LIP_CORNERS,
    LIP_LOWER,
    LIP_MIDPOINTS,
    LIP_OUTER_LOWER,
    LIP_OUTER_UPPER,
    LIP_UPPER,
)

__all__ = ["MouthPart"]

# the fill's soft edge inside the inner-lip line: Gaussian sigma as a share of the mouth's corner width
EDGE_SOFT = 0.035


class MouthPart:
    """The mouth interior of one portrait over the warp. ``image`` (S,S,3) uint8 and ``mesh`` (478,3) as checked by
    ``WarpRenderer``; ``mouth`` True (the shipped bank's real interiors), "procedural" (painted) or False (none)."""

    aux_keys = ("mouth",)

    def __init__(self, image: np.ndarray, mesh: np.ndarray, *, mouth: bool | str = True):
        self.image, self.mesh, self.size = image, mesh, image.shape[0]
        self.use_mouth = mouth
        self._prepare()

    def _prepare(self) -> None:
        mesh = self.mesh
        img = self.image
        up, lo = mesh[LIP_MIDPOINTS[0], :2], mesh[LIP_MIDPOINTS[1], :2]
        width = float(np.linalg.norm(mesh[LIP_CORNERS[1], :2] - mesh[LIP_CORNERS[0], :2]))
        self._mouth_src = dict(gap=float(np.linalg.norm(lo - up)), width=width)
        # lip colour: mean over the outer-minus-inner lip band (for the cavity and tongue tints)
        s = self.size
        outer = np.array(list(LIP_OUTER_UPPER) + list(LIP_OUTER_LOWER[-2:0:-1]))
        box = bounding_box(mesh[outer], 2, s)
        x0, y0, x1, y1 = box
        if x1 - x0 > 2 and y1 - y0 > 2:
            m = poly_mask((y1 - y0, x1 - x0), mesh[outer], (x0, y0)) - poly_mask(
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

    def render(self, target: np.ndarray, out: np.ndarray, maps: tuple[np.ndarray, np.ndarray] | None = None,
               aux: dict | None = None, texture: np.ndarray | None = None) -> None:
        """Draw the mouth interior of the target mesh into ``out`` (S,S,3) uint8, in place (``maps`` and
        ``texture`` unused: the interior is not the portrait's own pixels)."""
        if not self.use_mouth:
            return
        mouth_m = aux["mouth"] if aux is not None else None
        s = self.size
        a, b = target[LIP_CORNERS[0], :2], target[LIP_CORNERS[1], :2]
        width = float(np.linalg.norm(b - a))
        gap = float(np.linalg.norm(target[LIP_MIDPOINTS[1], :2] - target[LIP_MIDPOINTS[0], :2]))
        src = self._mouth_src
        if width < 3.0 or gap < max(1.0, 0.03 * width):
            return
        # how much of the target opening the source's own interior can fill
        src_rel = src["gap"] / max(src["width"], 1e-6)
        tgt_rel = gap / width
        real = float(smoothstep(0.35, 0.8, src_rel / tgt_rel)) if src["gap"] > max(1.0, 0.03 * src["width"]) else 0.0
        if real >= 1.0:
            return
        poly = target[list(topology.MOUTH_POLYGON), :2]
        x0, y0, x1, y1 = bounding_box(poly, 2, s)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        h, w = y1 - y0, x1 - x0
        mask = poly_mask((h, w), poly, (x0, y0))
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, EDGE_SOFT * width)) * mask  # soft inside the lip line
        if self._mouths is not None:
            paint = self._mouths.interior(target, (x0, y0, x1, y1))
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
        a = target[LIP_CORNERS[0], :2]
        e = (target[LIP_CORNERS[1], :2] - a) / width
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

        t_up, t_lo = curve(LIP_UPPER), curve(LIP_LOWER)
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
        tongue = smoothstep(0.0, 0.5, tongue) * float(smoothstep(0.1, 0.28, rel)) * 0.65
        tongue_col = np.array([lip[0] * 0.78, lip[1] * 0.48, lip[2] * 0.52]) * lum
        col = over(col, tongue * (0.75 + 0.25 * v), tongue_col)
        # upper teeth under the upper lip (at most half the opening), brightest mid-mouth, faint incisor gaps
        teeth_h = min(0.1 * width, 0.5 * span.max()) if span.size else 0.0
        band = smoothstep(teeth_h, 0.6 * teeth_h, d_up) * smoothstep(-0.5, 0.8, d_up)
        band = band * smoothstep(0.1, 0.32, u) * smoothstep(0.9, 0.68, u) * float(smoothstep(0.03, 0.09, rel))
        gaps = np.ones_like(u)
        for k in (-3, -2, -1, 0, 1, 2, 3):
            gaps -= (0.16 if k == 0 else 0.1) * np.exp(-(((u - 0.5 - k * 0.075) * width) / 0.6) ** 2)
        teeth_col = np.array([222.0, 212.0, 196.0]) * lum
        # teeth darken toward the corners and toward their edges (they sit in the mouth's shadow)
        shade = (0.55 + 0.4 * across) * gaps * (1.0 - 0.25 * smoothstep(0.0, teeth_h + 1e-6, d_up))
        col = over(col, band * 0.92, teeth_col * shade[..., None])
        # lower teeth: fainter, just above the lower lip when the mouth is well open
        low_h = 0.06 * width
        low = smoothstep(low_h, 0.5 * low_h, d_lo) * smoothstep(-0.5, 0.8, d_lo)
        low = low * smoothstep(0.25, 0.38, u) * smoothstep(0.75, 0.62, u) * float(smoothstep(0.16, 0.3, rel)) * 0.3
        col = over(col, low, teeth_col * 0.8 * shade[..., None])
        # the lips' shadow on the interior edge
        rim = smoothstep(0.0, 0.05 * width + 1.0, np.minimum(d_up + 0.5 * teeth_h * band, d_lo))
        col = col * (0.6 + 0.4 * rim[..., None])
        return col.astype(np.float32)
