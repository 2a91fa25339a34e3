"""Real mouth interiors for the mesh-warp renderer (issue 19): teeth, tongue and cavity taken from permissively
licensed corpus clips, Face2Face style, instead of a painted cavity.

The bank holds, for a few people, one mouth interior per opening level, each resampled into the mouth's own
coordinates: ``u`` from the left inner-lip corner (78) to the right one (308), ``v`` from the upper inner-lip curve
(0) to the lower one (1), extended by ``V_MARGIN`` beyond both so the soft edge of the fill has real lip pixels
under it. In those coordinates a real frame's interior fits any target inner-lip polygon: the renderer computes
(u, v) for each pixel of the target opening and samples the bank there.

Retrieval: per portrait one person of the bank (the nearest skin colour, then a per-channel gain from that
person's skin to the portrait's, as Face2Face matches colour); per frame the two levels around the target's
relative opening (inner-lip gap / corner width) are blended linearly, so the interior changes smoothly with the
opening and is the same for the same opening in every frame (temporal coherence without a state).

Build (reads /work/prepared_corpus, writes ``pdfgc/weights/meshwarp_mouths.safetensors``, ~1 min):

    python -m pdfgc.families.meshwarp.mouth_bank --data ../prepared_corpus
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pdfgc.families.meshwarp import topology
from pdfgc.media.mesh_indices import CHEEKS, LIP_CORNERS, LIP_LOWER, LIP_MIDPOINTS, LIP_UPPER

BANK_FILE = Path(__file__).resolve().parents[2] / "weights" / "meshwarp_mouths.safetensors"
PATCH_W, PATCH_H = 64, 48          # a corpus mouth is ~50-60 px wide in a 224 crop: the patch keeps its detail
V_MARGIN = 0.2                     # rows beyond the inner-lip curves (fraction of the opening)
LEVELS = np.round(np.linspace(0.08, 0.56, 9), 3)   # relative openings (gap / width) of the bank's levels
# licences of the corpus manifest under which a clip's frames may ship inside the package
SHIPPABLE_LICENCES = ("MIT", "Apache-2.0", "CC-BY-4.0", "CC0-1.0", "BSD-3-Clause")
GAIN_POWER = 1.0   # full per-channel skin gain (Face2Face): 20.99 dB vs 20.91 at 0.5, 20.71 at 0 (same pairs)
# the bank's inner-lip curves (mediapipe's) run a little inside the real lip edge: target v 0..1 samples the bank's
# v INSET..1-INSET so no second lip shows inside the target's lips
INSET = 0.04   # 0: 20.99 dB, 0.08: 20.93 dB; 0.04 keeps most of the bank person's lip out of sight
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


@dataclass
class MouthBank:
    """patches (P, L, PATCH_H, PATCH_W, 3) uint8 per person and level; skin (P,3) each person's cheek colour;
    levels (L,) relative openings; sources: metadata per person (clip, licence, frames)."""

    patches: np.ndarray
    skin: np.ndarray
    levels: np.ndarray
    sources: list

    @classmethod
    def load(cls, path: Path = BANK_FILE) -> "MouthBank":
        from ...tensorfile import read_tensors

        t, meta = read_tensors(path, "mouth bank file", "numpy")
        return cls(t["patches"], t["skin"].astype(np.float64), t["levels"].astype(np.float64),
                   json.loads(meta.get("sources", "[]")))

    def save(self, path: Path = BANK_FILE) -> None:
        from safetensors.numpy import save_file

        save_file({"patches": np.ascontiguousarray(self.patches), "skin": self.skin.astype(np.float32),
                   "levels": self.levels.astype(np.float32)}, str(path),
                  metadata={"sources": json.dumps(self.sources), "patch": f"{PATCH_W}x{PATCH_H}",
                            "v_margin": str(V_MARGIN)})

    def for_portrait(self, image: np.ndarray, mesh: np.ndarray) -> "PortraitMouths":
        """The person whose skin colour is nearest the portrait's, colour-matched to it."""
        skin = skin_colour(image, mesh)
        # compare chromaticity and brightness separately: a darker photo of the same skin is matched by the gain
        lum = self.skin.mean(1, keepdims=True)
        chroma = self.skin / np.maximum(lum, 1e-6)
        d = np.linalg.norm(chroma - skin / max(skin.mean(), 1e-6), axis=1) + 0.002 * np.abs(lum[:, 0] - skin.mean())
        p = int(np.argmin(d))
        # the lighting's colour and level carry over from skin to mouth
        gain = np.clip(skin / np.maximum(self.skin[p], 1.0), 0.5, 1.6) ** GAIN_POWER
        pats = np.clip(self.patches[p].astype(np.float32) * gain.astype(np.float32), 0, 255)
        return PortraitMouths(pats, self.levels, p)


@dataclass
class PortraitMouths:
    """One person's colour-matched levels (L, PATCH_H, PATCH_W, 3) float32 for one portrait."""

    patches: np.ndarray
    levels: np.ndarray
    person: int

    def patch(self, rel: float) -> np.ndarray:
        """The interior at relative opening `rel`: the two nearest levels blended linearly."""
        lv = self.levels
        k = int(np.clip(np.searchsorted(lv, rel) - 1, 0, len(lv) - 2))
        w = float(np.clip((rel - lv[k]) / max(lv[k + 1] - lv[k], 1e-6), 0.0, 1.0))
        return self.patches[k] * (1.0 - w) + self.patches[k + 1] * w

    def interior(self, target: np.ndarray, box, rel: float) -> np.ndarray:
        """(h,w,3) float32 mouth interior over `box` (x0,y0,x1,y1) of the target mesh's inner-lip opening."""
        x0, y0, x1, y1 = box
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        u, v = uv_of_pixels(target, xx, yy)
        mx = (np.clip(u, 0.0, 1.0) * (PATCH_W - 1)).astype(np.float32)
        v = INSET + v * (1.0 - 2 * INSET)
        my = ((np.clip(v, -V_MARGIN, 1.0 + V_MARGIN) + V_MARGIN) / (1.0 + 2 * V_MARGIN) * (PATCH_H - 1))
        return cv2.remap(self.patch(rel), mx, my.astype(np.float32), cv2.INTER_LINEAR,
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


# Of the 8 people that cover every level, 4 looked clean (the others: levels from blurred or colour-cast frames,
# or public figures): MEAD W009, MEAD M030, HelloMeme xzy man, EAMM speaker #3. On 152 open-mouth pairs of 40
# training clips (not held out, none of the 4; benchmarks/results/meshwarp/pixels_eval.md) the xzy man's interiors
# gave 20.85 dB mouth-box PSNR, the others 19.7-20.0, the nearest skin colour of the 4 20.33 (procedural: 19.16):
# his darker cavity suits most mouths, so the bank ships him alone (~85 kB).
PEOPLE = ("HelloMeme xzy man (black shirt)",)


def build(data: Path, manifest_csv: Path, people=PEOPLE, min_frames: int = 60, log=print) -> MouthBank:
    """Among shippable, non-held-out people whose clips cover every level with a frontal open mouth, take one
    sharp frame per level (the one showing the most teeth among the 8 nearest in opening); keep `people` (names,
    or a count of the best scored)."""
    from pdfgc.families.meshwarp.refine_train import corpus_people

    rows = _licences(data, manifest_csv)
    ppl, corpus = corpus_people(data)
    cands = {}
    for info, ident, held in ppl:
        r = rows.get(info.source)
        if held or r is None or r["licence"] not in SHIPPABLE_LICENCES or info.num_frames < min_frames:
            continue
        cands.setdefault(ident, []).append((info, r["licence"], r["repo"] + ":" + r["repo_path"]))
    scored, meshes = [], {}
    for ident, clips in cands.items():
        per_level = [[] for _ in LEVELS]
        for info, lic, origin in clips:
            a = corpus.load_arrays(info.key, names=("mesh.npy", "pose.npy", "valid.npy"))
            mesh, pose, valid = a["mesh.npy"].astype(np.float64), a["pose.npy"], a["valid.npy"]
            meshes[info.key] = mesh
            for i in np.nonzero(valid)[0]:
                if abs(pose[i, 0]) > 12 or abs(pose[i, 1]) > 15 or abs(pose[i, 2]) > 8:
                    continue
                rel = relative_opening(mesh[i])
                k = int(np.argmin(np.abs(LEVELS - rel)))
                if abs(LEVELS[k] - rel) < 0.025:
                    per_level[k].append((abs(LEVELS[k] - rel), info.key, int(i), lic, origin))
        if all(per_level):
            scored.append((ident, per_level))
    log(f"mouth bank: {len(cands)} shippable people, {len(scored)} cover all {len(LEVELS)} levels")
    chosen = []
    for ident, per_level in scored:
        picks, teeth, sharp = [], [], []
        for k, opts in enumerate(per_level):
            opts = sorted(opts)[:8]
            best = None
            for _, key, i, lic, origin in opts:
                frame = corpus.load_frames(key, [i])[0]
                mesh = meshes[key][i]
                patch = extract(frame, mesh)
                core = patch[int(PATCH_H * 0.3):int(PATCH_H * 0.7)]
                s = float(cv2.Laplacian(cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())
                tf = teeth_fraction(frame, mesh)
                score = s * (0.5 + tf) * (1.0 if core.mean() < 200 else 0.5)
                if best is None or score > best[0]:
                    best = (score, patch, skin_colour(frame, mesh), key, i, lic, origin, tf, s)
            picks.append(best)
            teeth.append(best[7])
            sharp.append(best[8])
        q = float(np.mean(teeth[2:]) * np.sqrt(np.median(sharp)))
        chosen.append((q, ident, picks))
        log(f"  {ident}: teeth {np.mean(teeth[2:]):.2f}, sharpness {np.median(sharp):.0f}")
    chosen.sort(key=lambda x: -x[0])
    if isinstance(people, int):
        chosen = chosen[:people]
    else:
        by = {c[1]: c for c in chosen}
        missing = [p for p in people if p not in by]
        if missing:
            raise ValueError(f"mouth bank: no full set of levels for {missing}")
        chosen = [by[p] for p in people]
    patches = np.stack([np.stack([p[1] for p in picks]) for _, _, picks in chosen])
    skin = np.stack([np.median(np.stack([p[2] for p in picks]), axis=0) for _, _, picks in chosen])
    sources = [{"person": ident, "frames": [{"clip": p[3], "frame": p[4], "licence": p[5], "origin": p[6]}
                                            for p in picks]} for _, ident, picks in chosen]
    return MouthBank(patches, skin, LEVELS.astype(np.float64), sources)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser(description="build the mesh-warp mouth bank from a prepared corpus")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3].parent / "prepared_corpus")
    ap.add_argument("--manifest", type=Path,
                    default=Path(__file__).resolve().parents[3].parent / "shared" / "data" / "corpus" / "manifest.csv")
    ap.add_argument("--people", type=int, default=None, help="the N best scored instead of the chosen PEOPLE")
    ap.add_argument("--out", type=Path, default=BANK_FILE)
    args = ap.parse_args()
    bank = build(args.data, args.manifest, args.people or PEOPLE)
    bank.save(args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} kB): " + ", ".join(s["person"] for s in bank.sources))


if __name__ == "__main__":
    main()
