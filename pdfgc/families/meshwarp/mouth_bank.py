"""Real mouth interiors for the mesh-warp renderer (issue 19): teeth, tongue and cavity taken from permissively
licensed corpus clips, Face2Face style, instead of a painted cavity.

The bank holds, for a few people, real mouth interiors of many inner-lip shapes, each resampled into the mouth's own
coordinates: ``u`` from the left inner-lip corner (78) to the right one (308), ``v`` from the upper inner-lip curve
(0) to the lower one (1), extended by ``V_MARGIN`` beyond both so the soft edge of the fill has real lip pixels
under it. In those coordinates a real frame's interior fits any target inner-lip polygon: the renderer computes
(u, v) for each pixel of the target opening and samples the bank there.

Retrieval (Face2Face's, per frame): each entry carries its inner lips' ``shape_descriptor`` (the opening profile
and the smile across the mouth, not just the opening); the target's lips are compared with every entry's, plus a
fixed per-portrait cost for how far the entry's person's skin and lip colours are from the portrait's, and the two
nearest entries are blended with weights that are continuous in the shape (an entry enters or leaves the blend at
weight 0, so a tiny change of the lips never swaps the interior: no flicker, and no state); before the
cross-fade the two entries' rows are stretched so their teeth edges meet (one teeth edge, not a doubled row). Each
entry is colour-matched to the portrait by the ratio of cheek colours (brightness fully, colour cast half), its
teeth brought to the portrait's skin grey (lifted where they lie in shadow, dimmed where they were lit brighter than
the portrait) and tinted with the skin's chromaticity, and blurred a little (the corpus mouths are sharper than a
warped portrait's).

Build (reads /work/prepared_corpus, writes ``pdfgc/weights/meshwarp_mouths.safetensors``, ~15 s; ``--all`` every
eligible person, for choosing ``PEOPLE``; ``--out`` another file):

    python -m pdfgc.families.meshwarp.mouth_bank --data ../prepared_corpus
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pdfgc.families.meshwarp import topology
from pdfgc.families.meshwarp.shapes import smoothstep
from pdfgc.media.mesh_indices import CHEEKS, LIP_CORNERS, LIP_LOWER, LIP_MIDPOINTS, LIP_UPPER

BANK_FILE = Path(__file__).resolve().parents[2] / "weights" / "meshwarp_mouths.safetensors"
PATCH_W, PATCH_H = 64, 48          # a corpus mouth is ~50-60 px wide in a 224 crop: the patch keeps its detail
V_MARGIN = 0.2                     # rows beyond the inner-lip curves (fraction of the opening)
DESC_U = np.array([0.25, 0.5, 0.75])   # where along the mouth (corner to corner) the lip shape is read
# licences of the corpus manifest under which a clip's frames may ship inside the package
SHIPPABLE_LICENCES = ("MIT", "Apache-2.0", "CC-BY-4.0", "CC0-1.0", "BSD-3-Clause")
# The settings below were chosen on training pairs only (``benchmarks/meshwarp_pixels_mouth.py --split train``:
# 1028 pairs of 48 training clips, each filled from the bank without its own person; dated figures in
# benchmarks/results/meshwarp/pixels_mouth_choice.md)
CHROMA_POWER = 0.5   # the cheek colour ratio's cast, halved: teeth stay white (1.0 tinted them blue on pale faces)
LIP_WEIGHT = 1.0     # lip colour counts as much as skin colour in an entry's colour cost
COLOUR_WEIGHT = 1.0  # colour cost against shape distance (0.3 or 1: within 0.05 dB; 1 shows more teeth)
BLUR = 0.8           # px of blur on a patch (+0.04 dB; the teeth stay readable)
ENTRIES_PER_PERSON = 16   # 16 x 9.2 kB per person
# teeth whose 90th percentile grey is not this x the portrait's skin grey are scaled to it (``lift_teeth``): brightened
# (at most x 1.3: teeth in the bank person's shadow) and, since session 34, dimmed (down to x ``TEETH_DIM``: the bank's
# teeth lit brighter than the portrait's skin glared white in a real mouth's shade). Training pairs (session 34,
# ``meshwarp_pixels_mouth.py --split train``, mouth_s34.md): lift only at 1.0 21.535 dB, teeth 0.833 / 0.335; to 1.0
# both ways 21.849 / 0.802 / 0.320; 1.05 both ways 21.809 / 0.821 / 0.331; 1.1 21.759 / 0.833 / 0.337
TEETH_LIFT = 1.05
TEETH_DIM = 0.7
# the teeth take the portrait's skin chromaticity to this power (their grey kept): teeth in a warm-lit portrait are
# warm, as its real teeth are (training pairs, with TEETH_LIFT 1.05: 0 21.809 dB, teeth 0.821 / 0.331; 0.5 21.808 /
# 0.837 / 0.315; 0.6 21.813 / 0.772 / 0.259; 1.0 21.806 / 0.381 / 0.071: the pixels barely change, the teeth
# measure's saturation limit (0.35) does)
TEETH_WARMTH = 0.5
# the blend weights' power: 1 leaves two entries half and half over a wide band of shapes, 2 narrows it (-0.04 dB,
# +1.5 % teeth shown, training pairs); the weights stay continuous in the shape. Narrower still (a cross-fade only
# near the switch: the second entry's share x -> 0.5 * smoothstep(0.5 - b, 0.5, x), b = 0.3-0.4) made one
# 0.001-face-height step of anne's opening change the interior by up to 0.25-0.34 of its whole change (the flicker
# test's limit: 0.25); the doubled teeth of a blend are handled by aligning the entries' teeth edges instead
# (``PortraitMouths.patch``)
BLEND_POWER = 2.0
MIN_OPENING = 0.035   # an entry's relative opening at least (below it the fill is skipped anyway: mouth.py)
# the bank's inner-lip curves (mediapipe's) run a little inside the real lip edge: target v 0..1 samples the bank's
# v INSET..1-INSET so no second lip shows inside the target's lips (0.04 left a pale rim of the bank person's lower
# lip along the target's in the strip; 0.1 hides it, -0.04 dB on training pairs)
INSET = 0.1
# the cheeks' skin, for colour matching: points below the eyes, beside the nose (mesh_indices.CHEEKS)
CHEEK_POINTS = CHEEKS


def mouth_frame(mesh: np.ndarray):
    """The mouth's own frame of a (478,3) mesh: origin at corner 78, unit vector e toward 308, n across (down for an
    upright face), the corner width, and the inner-lip curves as (u, t) samples (u along, t across in pixels)."""
    a = mesh[LIP_CORNERS[0], :2].astype(np.float64)
    d = mesh[LIP_CORNERS[1], :2] - a
    width = float(np.hypot(*d))
    e = d / max(width, 1e-6)
    n = np.array([-e[1], e[0]])

    def curve(idx):
        p = mesh[list(idx), :2] - a
        cu, ct = p @ e / max(width, 1e-6), p @ n
        order = np.argsort(cu)
        return cu[order], ct[order]

    return a, e, n, width, curve(LIP_UPPER), curve(LIP_LOWER)


def uv_of_pixels(mesh: np.ndarray, xx: np.ndarray, yy: np.ndarray):
    """Mouth coordinates (u, v) of pixel centres (xx, yy): u 0..1 corner to corner, v 0 on the upper inner lip and
    1 on the lower one (unclipped)."""
    a, e, n, width, up, lo = mouth_frame(mesh)
    px, py = xx - a[0], yy - a[1]
    u = (px * e[0] + py * e[1]) / max(width, 1e-6)
    t = px * n[0] + py * n[1]
    t_up, t_lo = np.interp(u, *up), np.interp(u, *lo)
    v = (t - t_up) / np.maximum(t_lo - t_up, 1e-3)
    return u, v


def extract(image: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """(PATCH_H, PATCH_W, 3) uint8: the image's mouth interior resampled on the bank's (u, v) grid."""
    a, e, n, width, up, lo = mouth_frame(mesh)
    u = np.linspace(0.0, 1.0, PATCH_W)
    v = np.linspace(-V_MARGIN, 1.0 + V_MARGIN, PATCH_H)
    t_up, t_lo = np.interp(u, *up), np.interp(u, *lo)
    t = t_up[None] + v[:, None] * (t_lo - t_up)[None]
    along = (u * width)[None]
    x = (a[0] + along * e[0] + t * n[0]).astype(np.float32)
    y = (a[1] + along * e[1] + t * n[1]).astype(np.float32)
    return cv2.remap(image, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def relative_opening(mesh: np.ndarray) -> float:
    """Inner-lip gap (13-14) over the inner corner width (78-308)."""
    width = float(np.linalg.norm(mesh[LIP_CORNERS[1], :2] - mesh[LIP_CORNERS[0], :2]))
    return float(np.linalg.norm(mesh[LIP_MIDPOINTS[1], :2] - mesh[LIP_MIDPOINTS[0], :2])) / max(width, 1e-6)


def skin_colour(image: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Median RGB of small windows at the cheek points (float64, 3)."""
    h, w = image.shape[:2]
    r = max(1, int(round(0.01 * h)))
    rows = []
    for i in CHEEK_POINTS:
        x, y = (int(round(c)) for c in mesh[i, :2])
        if r <= x < w - r and r <= y < h - r:
            rows.append(image[y - r:y + r + 1, x - r:x + r + 1].reshape(-1, 3))
    if not rows:
        return np.full(3, 160.0)
    return np.median(np.concatenate(rows), axis=0).astype(np.float64)


def shape_descriptor(mesh: np.ndarray) -> np.ndarray:
    """(6,) the inner lips' shape, scale free: the upper and lower inner-lip curves' distance across the corner line
    at u = 0.25, 0.5, 0.75, over the corner width. Their difference is the opening profile (the relative opening at
    the middle), their sum the smile or the pout, which decide how much of each row of teeth shows."""
    _, _, _, width, up, lo = mouth_frame(mesh)
    w = max(width, 1e-6)
    return np.concatenate([np.interp(DESC_U, *up), np.interp(DESC_U, *lo)]) / w


def shape_metric(desc: np.ndarray) -> np.ndarray:
    """Descriptors (..., 6) -> the space their distances are taken in: the square root of the opening profile
    (a 2 px slit and a closed mouth differ more than a wide and a slightly wider mouth) and the opening's midline
    (smile or pout)."""
    desc = np.asarray(desc, np.float64)
    up, lo = desc[..., :3], desc[..., 3:]
    return np.concatenate([np.sqrt(np.maximum(lo - up, 0.0)), 0.5 * (up + lo)], axis=-1)


def lip_colour(image: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Median RGB of the lips' own pixels (between the outer and inner lip outlines), float64 (3,)."""
    from pdfgc.media.mesh_indices import LIP_OUTER_LOWER, LIP_OUTER_UPPER

    outer = np.array(list(LIP_OUTER_UPPER) + list(LIP_OUTER_LOWER[-2:0:-1]))
    h, w = image.shape[:2]
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(mesh[outer, :2] * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
    cv2.fillPoly(m, [np.round(mesh[list(topology.MOUTH_POLYGON), :2] * 4).astype(np.int32)], 0, cv2.LINE_8, 2)
    if m.sum() < 4:
        return np.array([160.0, 90.0, 90.0])
    return np.median(image[m > 0].reshape(-1, 3), axis=0).astype(np.float64)


def _chroma(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.float64)
    return rgb / np.maximum(rgb.mean(-1, keepdims=True), 1e-6)


# a patch row "is teeth" where this share of the middle third of the mouth is bright (0.6 x the skin) and unsaturated
TEETH_ROW_SHARE = 0.4


def teeth_edges(patch: np.ndarray, skin: float | None = None, cols: tuple[int, int] | None = None) -> np.ndarray:
    """(2,) float patch rows of a mouth interior's teeth edges: the lowest row of the upper teeth (searched in the
    upper 70 % of the opening, where the rows fall steepest from teeth to darker) and the highest row of the lower
    teeth (lower 70 %, the steepest rise to teeth), NaN where there is no such edge. A row of teeth: on
    ``TEETH_ROW_SHARE`` of the columns ``cols`` (default: the middle third), pixels at least 0.6 x the skin's grey
    level (``skin``; without it the 90th percentile of the patch's lip rows beyond the opening; 0.6, not
    ``teeth_fraction``'s 0.8: teeth in a mouth's shadow still have an edge) and unsaturated."""
    p = np.asarray(patch, np.float32)
    q = np.clip(p, 0, 255).astype(np.uint8)
    grey = p.mean(2)
    sat = cv2.cvtColor(q, cv2.COLOR_RGB2HSV)[..., 1].astype(np.float32) / 255.0
    v = np.linspace(-V_MARGIN, 1.0 + V_MARGIN, PATCH_H)
    if skin is None:
        lips = np.concatenate([grey[v < -0.05], grey[v > 1.05]])
        skin = float(np.percentile(lips, 90)) if lips.size else float(grey.max())
    ref = float(skin)
    u0, u1 = cols if cols is not None else (PATCH_W // 3, PATCH_W - PATCH_W // 3)
    share = ((grey[:, u0:u1] >= 0.6 * ref) & (sat[:, u0:u1] < 0.35)).mean(1)
    level = grey[:, u0:u1].mean(1)
    step = level[2:] - level[:-2]     # step[r]: row r+2 minus row r, an edge at row r+1 (edges span ~2 rows)
    mid = v[1:-1]
    r_ = np.arange(len(step))
    out = np.full(2, np.nan)
    # upper teeth: the steepest fall from a row of teeth to a darker row, in the upper 70 % of the opening
    ok = (mid >= 0.0) & (mid <= 0.7) & (share[:-2] >= TEETH_ROW_SHARE) & (step < -0.1 * ref)
    if ok.any():
        out[0] = float(np.argmin(np.where(ok, step, np.inf))) + 1.0
    # lower teeth: the steepest rise from a darker row to a row of teeth, in the lower 70 %, below the upper edge
    ok = (mid >= 0.3) & (mid <= 1.0) & (share[2:] >= TEETH_ROW_SHARE) & (step > 0.1 * ref)
    if np.isfinite(out[0]):
        ok &= r_ + 1.0 > out[0] + 1.0
    if ok.any():
        out[1] = float(np.argmax(np.where(ok, step, -np.inf))) + 1.0
    return out


# patch rows of the inner-lip curves (v = 0 and v = 1)
_ROW_V0 = V_MARGIN / (1.0 + 2 * V_MARGIN) * (PATCH_H - 1)
_ROW_V1 = (1.0 + V_MARGIN) / (1.0 + 2 * V_MARGIN) * (PATCH_H - 1)


def lift_teeth(patch: np.ndarray, skin, opening: float = 0.2) -> np.ndarray:
    """A colour-matched interior whose teeth (unsaturated, at least half the skin's grey, between the inner lips)
    have their 90th percentile grey brought to ``TEETH_LIFT`` x the portrait's skin grey (by a factor between
    ``TEETH_DIM`` and 1.3, softly at the teeth's edges: teeth in the bank person's shadow read grey on a brighter face,
    teeth lit brighter than the face glare), then given the portrait's skin chromaticity to the power
    ``TEETH_WARMTH`` at their own grey. ``skin``: the portrait's skin RGB (3,) (or its grey: no warmth);
    ``opening``: the entry's relative opening (unused)."""
    skin_rgb = np.asarray(skin, np.float64)
    grey_skin = float(skin_rgb.mean())
    g = patch.mean(2)
    v = np.linspace(-V_MARGIN, 1.0 + V_MARGIN, PATCH_H)[:, None]
    sat = cv2.cvtColor(np.clip(patch, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)[..., 1] / 255.0
    teeth = (sat < 0.35) & (g >= 0.5 * grey_skin) & (v >= 0.0) & (v <= 1.0)
    if teeth.sum() < 10:
        return patch
    s = float(np.clip(TEETH_LIFT * grey_skin / max(float(np.percentile(g[teeth], 90)), 1.0), TEETH_DIM, 1.3))
    warm = TEETH_WARMTH > 0 and skin_rgb.size == 3
    if s == 1.0 and not warm:
        return patch
    soft = cv2.GaussianBlur(teeth.astype(np.float32), (0, 0), 1.0)[..., None]
    out = patch.astype(np.float32) * (1.0 + (s - 1.0) * soft)
    if warm:
        ch = (skin_rgb / max(grey_skin, 1e-6)) ** TEETH_WARMTH
        ch = (ch / ch.mean()).astype(np.float32)
        tm = soft * teeth[..., None]        # the teeth pixels only (the lips beside them keep their colour)
        out = out * (1.0 - tm) + out.mean(2, keepdims=True) * ch * tm
    return np.clip(out, 0, 255).astype(np.float32)


# the teeth edges are found in three bands across the mouth (left, middle, right; the dark corners left out), so a
# tilted row of teeth is aligned as tilted; between the bands' centres the row maps are interpolated
EDGE_BANDS = tuple((int(round(PATCH_W * (k + 1) / 8)), int(round(PATCH_W * (k + 3) / 8))) for k in (0, 2, 4))
_BAND_CENTRES = np.array([0.5 * (a + b - 1) for a, b in EDGE_BANDS])
# (PATCH_W, bands) linear interpolation weights of each column between the bands' centres (constant beyond them)
_BAND_W = np.stack([np.interp(np.arange(PATCH_W), _BAND_CENTRES, np.eye(len(EDGE_BANDS))[k])
                    for k in range(len(EDGE_BANDS))], axis=1)


_MAP_X = np.ascontiguousarray(np.broadcast_to(np.arange(PATCH_W, dtype=np.float32), (PATCH_H, PATCH_W)))
_ROWS = np.arange(PATCH_H, dtype=np.float64)


def _aligned_rows(src: list, dst: list, top: float, bottom: float) -> np.ndarray:
    """Source rows (float, PATCH_H) that move an entry's teeth edges ``src`` to ``dst`` (rows in top..bottom),
    piecewise linearly, the inner-lip rows and the margins beyond them fixed; identity when there are none or
    they would fold."""
    ks = [0.0, top - 0.5, *src, bottom + 0.5, PATCH_H - 1.0]
    kd = [0.0, top - 0.5, *dst, bottom + 0.5, PATCH_H - 1.0]
    if not src or any(b <= a for a, b in zip(kd, kd[1:])) or any(b <= a for a, b in zip(ks, ks[1:])):
        return _ROWS
    return np.interp(_ROWS, kd, ks)


def teeth_edge_bands(patch: np.ndarray, skin: float | None = None) -> np.ndarray:
    """(bands, 2) ``teeth_edges`` in each of ``EDGE_BANDS``."""
    return np.stack([teeth_edges(patch, skin, band) for band in EDGE_BANDS])


@dataclass
class MouthBank:
    """patches (N, PATCH_H, PATCH_W, 3) uint8, one real mouth interior per entry; desc (N, 6) their inner lips'
    ``shape_descriptor``; person (N,) index into the people's skin (P,3) and lip (P,3) colours; sources: metadata
    per person (name, and per entry its clip, frame, licence, origin)."""

    patches: np.ndarray
    desc: np.ndarray
    person: np.ndarray
    skin: np.ndarray
    lip: np.ndarray
    sources: list

    @classmethod
    def load(cls, path: Path = BANK_FILE) -> "MouthBank":
        from ...tensorfile import read_tensors

        t, meta = read_tensors(path, "mouth bank file", "numpy")
        return cls(t["patches"], t["desc"].astype(np.float64), t["person"].astype(np.int64),
                   t["skin"].astype(np.float64), t["lip"].astype(np.float64), json.loads(meta.get("sources", "[]")))

    def save(self, path: Path = BANK_FILE) -> None:
        from safetensors.numpy import save_file

        save_file({"patches": np.ascontiguousarray(self.patches), "desc": self.desc.astype(np.float32),
                   "person": self.person.astype(np.int32), "skin": self.skin.astype(np.float32),
                   "lip": self.lip.astype(np.float32)}, str(path),
                  metadata={"sources": json.dumps(self.sources), "patch": f"{PATCH_W}x{PATCH_H}",
                            "v_margin": str(V_MARGIN), "licences": json.dumps(sorted(
                                {f["licence"] for s in self.sources for f in s["frames"]}))})

    def colour_distance(self, image: np.ndarray, mesh: np.ndarray) -> np.ndarray:
        """(P,) how far each bank person's skin and lip colours (chromaticity) are from the portrait's: the nearer,
        the less colour change their teeth and mouth lining need."""
        skin, lip = skin_colour(image, mesh), lip_colour(image, mesh)
        return (np.linalg.norm(_chroma(self.skin) - _chroma(skin), axis=1)
                + LIP_WEIGHT * np.linalg.norm(_chroma(self.lip) - _chroma(lip), axis=1))

    def for_portrait(self, image: np.ndarray, mesh: np.ndarray, exclude: str | None = None,
                     person: int | None = None) -> "PortraitMouths":
        """The entries for one portrait, colour-matched to it, each with its person's colour cost (``person``: that
        person's entries only; ``exclude``: a person's name left out, for leave-one-person-out figures). Each
        entry's brightness is scaled by the ratio of the portrait's cheek brightness to its person's, its colour
        cast by that ratio's chromaticity to the power ``CHROMA_POWER`` (a skin's own hue is not the light's)."""
        skin = skin_colour(image, mesh)
        keep = np.ones(len(self.sources), bool)
        if person is not None:
            keep[:] = False
            keep[int(person)] = True
        elif exclude is not None and any(s["person"] != exclude for s in self.sources):
            keep = np.array([s["person"] != exclude for s in self.sources])
        luma = np.clip(skin.mean() / np.maximum(self.skin.mean(1), 1.0), 0.5, 1.6)
        cast = np.clip(_chroma(skin)[None] / _chroma(self.skin), 0.7, 1.4) ** CHROMA_POWER
        gain = (luma[:, None] * cast).astype(np.float32)
        sel = np.flatnonzero(keep[self.person])
        pats = np.clip(self.patches[sel].astype(np.float32) * gain[self.person[sel], None, None, :], 0, 255)
        if TEETH_LIFT > 0:
            pats = np.stack([lift_teeth(q, skin, float(d[4] - d[1])) for q, d in zip(pats, self.desc[sel])])
        if BLUR > 0:
            pats = np.stack([cv2.GaussianBlur(q, (0, 0), BLUR) for q in pats])
        bias = COLOUR_WEIGHT * self.colour_distance(image, mesh)[self.person[sel]]
        edges = np.stack([teeth_edge_bands(self.patches[i], self.skin[self.person[i]].mean()) for i in sel])
        return PortraitMouths(pats, self.desc[sel], self.person[sel], bias, edges)


@dataclass
class PortraitMouths:
    """One person's colour-matched entries (n, PATCH_H, PATCH_W, 3) float32 and their shape descriptors (n, 6)."""

    patches: np.ndarray
    desc: np.ndarray
    person: np.ndarray
    bias: np.ndarray | None = None   # (n,) added to each entry's shape distance (its person's colour distance)

    edges: np.ndarray | None = None  # (n, bands, 2) patch rows of each entry's teeth edges (``teeth_edge_bands``)

    def __post_init__(self):
        self.metric = shape_metric(self.desc)
        if self.bias is None:
            self.bias = np.zeros(len(self.desc))
        if self.edges is None:
            self.edges = (np.stack([teeth_edge_bands(p) for p in self.patches]) if len(self.patches)
                          else np.zeros((0, len(EDGE_BANDS), 2)))

    def weights(self, desc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(entries, weights) for a target shape: the two nearest entries, weighted by how much nearer each is
        than the third (w_i = d_3 - d_i). The weights are continuous in the shape: an entry enters or leaves the
        blend at weight 0, so a small change of the lips never swaps the interior (temporal coherence without a
        state: the same shape gives the same interior in every frame)."""
        d = np.linalg.norm(self.metric - shape_metric(desc), axis=1) + self.bias
        if len(d) == 1:
            return np.array([0]), np.array([1.0])
        k = min(3, len(d))
        order = np.argsort(d, kind="stable")[:k]
        ref = d[order[-1]] if k == 3 else d[order].sum()
        w = np.maximum(ref - d[order[:2]], 0.0) ** BLEND_POWER
        if w.sum() <= 1e-12:
            return order[:1], np.array([1.0])
        return order[:2], w / w.sum()

    def patch(self, desc: np.ndarray) -> np.ndarray:
        """The blended interior for a target shape. Before two entries are cross-faded, each one's rows are
        stretched (piecewise linearly in v, per band across the mouth: ``EDGE_BANDS``) so that its teeth edges sit
        at the blend's weighted mean edges: the two upper rows of teeth (and the two lower ones) then coincide and
        the blend shows one teeth edge, not a doubled row. The stretch is continuous in the weights (an entry of
        weight 1 is left as it is)."""
        idx, w = self.weights(desc)
        if len(idx) == 1 or w[1] <= 0.0:
            return self.patches[idx[0]] * float(w[0])
        # the common edges: means with eased weights (smoothstep(w): still 0 / 0.5 / 1 at w = 0 / 0.5 / 1, summing
        # to 1 for two entries), so an entry entering the blend moves the other's rows only slowly
        ease = smoothstep(0.0, 1.0, np.asarray(w, np.float64))
        ease = ease / max(float(ease.sum()), 1e-12)
        top, bottom = _ROW_V0 + 0.5, _ROW_V1 - 0.5      # the inner-lip rows stay where they are
        edges = np.clip(self.edges[idx], top, bottom)            # (2, bands, 2); NaN: no such row of teeth
        both = ~np.isnan(edges).any(axis=0)                      # (bands, 2): the edges every blended entry has
        common = np.einsum("k,kbe->be", ease, np.nan_to_num(edges))
        out = None
        for j, (i, wi) in enumerate(zip(idx, w)):
            pat = self.patches[i]
            if both.any():
                rows = np.stack([_aligned_rows(edges[j, b][both[b]].tolist(), common[b][both[b]].tolist(), top, bottom)
                                 for b in range(edges.shape[1])])               # (bands, PATCH_H)
                map_y = (rows.T @ _BAND_W.T).astype(np.float32)                   # (PATCH_H, PATCH_W)
                pat = cv2.remap(pat, _MAP_X, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            out = pat * float(wi) if out is None else out + pat * float(wi)
        return out

    def interior(self, target: np.ndarray, box) -> np.ndarray:
        """(h,w,3) float32 mouth interior over `box` (x0,y0,x1,y1) of the target mesh's inner-lip opening."""
        x0, y0, x1, y1 = box
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        u, v = uv_of_pixels(target, xx, yy)
        mx = (np.clip(u, 0.0, 1.0) * (PATCH_W - 1)).astype(np.float32)
        v = INSET + v * (1.0 - 2 * INSET)
        my = ((np.clip(v, -V_MARGIN, 1.0 + V_MARGIN) + V_MARGIN) / (1.0 + 2 * V_MARGIN) * (PATCH_H - 1))
        return cv2.remap(self.patch(shape_descriptor(target)), mx, my.astype(np.float32), cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)


_BANK: MouthBank | None = None


def default_bank() -> MouthBank | None:
    """The shipped bank (loaded once), or None when the file is missing."""
    global _BANK
    if _BANK is None and BANK_FILE.is_file():
        _BANK = MouthBank.load(BANK_FILE)
    return _BANK


# ---------------------------------------------------------------------------------------------- building


def teeth_fraction(image: np.ndarray, mesh: np.ndarray) -> float:
    """Fraction of the inner-lip opening that looks like teeth: at least as bright as 0.8 x the cheek skin's grey
    level and unsaturated (HSV saturation below 0.35; lips and tongue are redder). The figure of issue 19's
    "frames whose real mouth shows teeth" target; 0 for a closed mouth."""
    poly = mesh[list(topology.MOUTH_POLYGON), :2]
    h, w = image.shape[:2]
    m = np.zeros((h, w), np.uint8)
    cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
    m = cv2.erode(m, np.ones((3, 3), np.uint8))
    if m.sum() < 4:
        return 0.0
    sk = skin_colour(image, mesh).mean()
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)
    grey = image.astype(np.float32).mean(2)
    teeth = (grey >= 0.8 * sk) & (hsv[..., 1] < 0.35 * 255)
    return float(teeth[m > 0].mean())


def _licences(corpus_root: Path, manifest_csv: Path) -> dict:
    import csv

    return {r["local_path"]: r for r in csv.DictReader(open(manifest_csv))}


def _fps(desc: np.ndarray, k: int, first: int) -> list[int]:
    """Farthest-point sampling of k rows of desc, from row `first`: entries that cover the shapes evenly."""
    chosen = [first]
    d = np.linalg.norm(desc - desc[first], axis=1)
    while len(chosen) < min(k, len(desc)):
        i = int(np.argmax(d))
        if d[i] <= 0:
            break
        chosen.append(i)
        d = np.minimum(d, np.linalg.norm(desc - desc[i], axis=1))
    return chosen


# chosen by leave-one-person-out figures on training pairs (benchmarks/meshwarp_pixels_mouth.py --split train) and
# by looking at every entry (benchmarks/results/meshwarp/pixels_bank.png); names as the manifest's identity_guess
PEOPLE = ("HelloMeme xzy man (black shirt)", "EAMM test MEAD-style speaker #1")


def build(data: Path, manifest_csv: Path, people=PEOPLE, per_person: int = ENTRIES_PER_PERSON,
          log=print) -> MouthBank:
    """Per person (shippable licence, never held out): the frontal, sharp frames with an open mouth, then
    `per_person` of them spread evenly over the lips' shapes (farthest-point sampling of ``shape_descriptor``,
    each pick swapped for the sharpest of its near neighbours). `people`: names, or None for every person with
    enough such frames (for choosing)."""
    from pdfgc.families.meshwarp.refine_train import corpus_people

    rows = _licences(data, manifest_csv)
    ppl, corpus = corpus_people(data)
    cands: dict[str, list] = {}
    for info, ident, held in ppl:
        r = rows.get(info.source)
        if held or r is None or r["licence"] not in SHIPPABLE_LICENCES:
            continue
        if people is not None and ident not in people:
            continue
        cands.setdefault(ident, []).append((info, r["licence"], r["repo"] + ":" + r["repo_path"]))
    all_p, all_d, all_person, skins, lips, sources = [], [], [], [], [], []
    for ident, clips in cands.items():
        frames = []
        for info, lic, origin in clips:
            a = corpus.load_arrays(info.key, names=("mesh.npy", "pose.npy", "valid.npy"))
            mesh, pose, valid = a["mesh.npy"].astype(np.float64), a["pose.npy"], a["valid.npy"]
            ok = [int(i) for i in np.nonzero(valid)[0]
                  if abs(pose[i, 0]) <= 12 and abs(pose[i, 1]) <= 15 and abs(pose[i, 2]) <= 8
                  and np.isfinite(mesh[i]).all() and relative_opening(mesh[i]) >= MIN_OPENING]
            frames += [(info.key, i, mesh[i], lic, origin) for i in ok]
        if len(frames) < 2 * per_person:
            continue
        frames = [frames[k] for k in np.linspace(0, len(frames) - 1, min(len(frames), 240)).round().astype(int)]
        recs = []
        by_clip: dict[str, list] = {}
        for f in frames:
            by_clip.setdefault(f[0], []).append(f)
        for key, fs in by_clip.items():
            imgs = corpus.load_frames(key, [f[1] for f in fs])
            for img, (key_, i, m, lic, origin) in zip(imgs, fs):
                patch = extract(img, m)
                sharp = float(cv2.Laplacian(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
                recs.append(dict(clip=key_, frame=i, licence=lic, origin=origin, patch=patch, sharp=sharp,
                                 desc=shape_descriptor(m), skin=skin_colour(img, m), lip=lip_colour(img, m),
                                 rel=relative_opening(m), teeth=teeth_fraction(img, m)))
        # the sharper half of each fifth of the openings (no motion blur; an open mouth has more edges than a
        # nearly closed one, so sharpness is compared between similar openings only)
        rel = np.array([r["rel"] for r in recs])
        sharp = np.array([r["sharp"] for r in recs])
        edges = np.quantile(rel, np.linspace(0, 1, 6))
        bin_of = np.clip(np.searchsorted(edges, rel, side="right") - 1, 0, 4)
        keep = [sharp[i] >= np.median(sharp[bin_of == bin_of[i]]) for i in range(len(recs))]
        recs = [r for r, k in zip(recs, keep) if k]
        desc = shape_metric(np.stack([r["desc"] for r in recs]))
        pick = _fps(desc, per_person, int(np.argmin([r["rel"] for r in recs])))
        final = []
        for i in pick:   # of the 6 nearest shapes, the sharpest that shows the most teeth
            near = np.argsort(np.linalg.norm(desc - desc[i], axis=1))[:6]
            near = [j for j in near if j not in final] or [i]
            final.append(max(near, key=lambda j: recs[j]["sharp"] * (0.5 + recs[j]["teeth"])))
        chosen = [recs[j] for j in dict.fromkeys(final)]
        p = len(sources)
        all_p += [r["patch"] for r in chosen]
        all_d += [r["desc"] for r in chosen]
        all_person += [p] * len(chosen)
        skins.append(np.median(np.stack([r["skin"] for r in chosen]), axis=0))
        lips.append(np.median(np.stack([r["lip"] for r in chosen]), axis=0))
        sources.append({"person": ident, "frames": [
            {"clip": r["clip"], "frame": r["frame"], "licence": r["licence"], "origin": r["origin"]} for r in chosen]})
        log(f"  {ident}: {len(chosen)} entries from {len(recs)} sharp frames, openings "
            f"{min(r['rel'] for r in chosen):.2f}-{max(r['rel'] for r in chosen):.2f}, "
            f"sharpness {np.median([r['sharp'] for r in chosen]):.0f}")
    if people is not None:
        missing = [q for q in people if q not in {s["person"] for s in sources}]
        if missing:
            raise ValueError(f"mouth bank: not enough frontal open-mouth frames for {missing}")
    return MouthBank(np.stack(all_p), np.stack(all_d), np.array(all_person), np.stack(skins), np.stack(lips),
                     sources)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="build the mesh-warp mouth bank from a prepared corpus")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3].parent / "prepared_corpus")
    ap.add_argument("--manifest", type=Path,
                    default=Path(__file__).resolve().parents[3].parent / "shared" / "data" / "corpus" / "manifest.csv")
    ap.add_argument("--all", action="store_true", help="every person with enough frames (for choosing PEOPLE)")
    ap.add_argument("--per-person", type=int, default=ENTRIES_PER_PERSON)
    ap.add_argument("--out", type=Path, default=BANK_FILE)
    args = ap.parse_args()
    bank = build(args.data, args.manifest, None if args.all else PEOPLE, args.per_person)
    bank.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} kB): " + ", ".join(s["person"] for s in bank.sources))


if __name__ == "__main__":
    main()
