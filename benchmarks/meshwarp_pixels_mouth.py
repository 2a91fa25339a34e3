"""Issue 19's mouth figures alone, fast enough to compare mouth banks: mouth-box PSNR and teeth shown, per variant.

    python benchmarks/meshwarp_pixels_mouth.py [--split heldout|train] [--bank FILE ...] [--procedural]

The pairs are those of ``meshwarp_pixels_eval.py`` (``--split heldout``: the same 416 held-out pairs) or, for
choosing a bank's settings without looking at held-out people, the same recipe on training clips (``--split train``,
``--clips`` of them, spread over the people; each pair is filled with the bank *minus the pair's own person*, so no
pair sees its own mouth). The warp without a mouth is rendered once per pair and cached (``--cache``); each variant
then only draws the mouth (``mouth.MouthPart``) over it, so a variant costs a few seconds.

``--diagnose``: why the fill scores what it does (no fill, the real pixels, the target's own interior through the
same fill, dimmer / blurred / flatter fills, PSNR per opening).

Per variant: mouth-box PSNR (all pairs and the pairs whose target mouth is open), the share of frames whose real
mouth shows teeth that show teeth (``mouth_bank.teeth_fraction`` >= 0.05), the share of frames whose real mouth
shows none that show teeth, and a breakdown of the misses by opening (``--why``).

``--closeups OUT.png --pairs 225,255,...`` (cached pair indices): per pair, the mouth box at 5x: the real target, the
warp without a fill, the bank's fill with the teeth as before session 34 (lifted only, no warmth: ``BEFORE_S34``),
and as now.

``--where``: where the shipped fill's mouth-box error sits (session 34): the squared error split by the measured
target's inner-lip polygon (interior; of it the pixels inside only one of the rendered and real polygons: geometry),
the lips, the skin around (within 3 px of the outer lip outline, 3-8 px, farther), each with the mean PSNR had it
been perfect; and the false teeth by opening.

``--skin`` / ``--skin-shading TRAIN_CACHE`` / ``--skin-closeups OUT.png`` / ``--resample cubic`` (session 34,
``results/meshwarp/skin_s34.md``): the skin around the lips split into brightness, shading and the rest, the source
frame's light against the target's and the render's, a speech-shading field fitted on training pairs, cubic
resampling.

``--portraits OUT.png``: the before / now of ``--closeups`` for the README's three portraits (anne.png, the head
shot, Macron.png) with the mouth opened 0.03 .. 0.12 face heights (``warp.open_mouth``), the default renderer.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TEETH_SHOWN = 0.05


class _Recorder:
    """A warp part that keeps the depth-corrected target mesh the other parts see."""

    aux_keys = ()

    def __init__(self):
        self.target = None

    def render(self, target, out, maps=None, aux=None, texture=None):
        self.target = target.copy()


def _tile_row(tiles, zoom: int, caption: str) -> np.ndarray:
    """One close-up row: each (label, image) zoomed (nearest) and labelled, side by side, the caption at the foot."""
    row = []
    for name, img in tiles:
        z = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST).copy()
        cv2.putText(z, name, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        row.append(np.pad(z, ((0, 4), (0, 4), (0, 0))))
    row = np.concatenate(row, 1)
    cv2.putText(row, caption, (3, row.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
    return row


def build_cache(data: Path, split: str, seed: int, clips: int, path: Path) -> dict:
    from meshwarp_pixels_eval import heldout_pairs

    from pdfgc.families.meshwarp.refine_train import choose_pairs, corpus_people
    from pdfgc.families.meshwarp.warp import WarpRenderer

    if split == "heldout":
        plan, _, corpus = heldout_pairs(data, seed, 0)
    else:
        people, corpus = corpus_people(data)
        train = [(info, ident) for info, ident, held in people if not held and info.num_frames >= 40]
        pick = np.linspace(0, len(train) - 1, min(clips, len(train))).round().astype(int)
        rng = np.random.default_rng([seed, 2])
        plan = []
        for k in dict.fromkeys(pick.tolist()):
            info, ident = train[k]
            arrays = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy", "mouth.npy", "eye.npy", "pose.npy"))
            plan += [(info.key, s, t, ident) for s, t in choose_pairs(arrays, True, rng)]
    src_img, src_mesh, warp, target, tmesh, tcorr, ident, keys = {}, {}, [], [], [], [], [], []
    t0 = time.time()
    by_clip: dict[str, list] = {}
    for p in plan:
        by_clip.setdefault(p[0], []).append(p)
    for key, items in by_clip.items():
        mesh = corpus.load_arrays(key, names=("mesh.npy",))["mesh.npy"].astype(np.float64)
        need = sorted({p[1] for p in items} | {p[2] for p in items})
        frames = dict(zip(need, corpus.load_frames(key, need)))
        rend = {}
        for _, s, t, who in items:
            if s not in rend:
                r = WarpRenderer(frames[s], mesh[s], mouth=False)
                rec = _Recorder()
                r.parts.append(rec)
                rend = {s: (r, rec)}
                src_img[f"{key}:{s}"], src_mesh[f"{key}:{s}"] = frames[s], mesh[s]
            r, rec = rend[s]
            warp.append(r.render(mesh[t]))
            target.append(frames[t])
            tmesh.append(mesh[t])
            tcorr.append(rec.target)
            ident.append(who)
            keys.append(f"{key}:{s}")
        print(f"  cache: {len(warp)}/{len(plan)} pairs, {time.time() - t0:.0f} s", flush=True)
    c = dict(warp=np.stack(warp), target=np.stack(target), tmesh=np.stack(tmesh), tcorr=np.stack(tcorr),
             ident=np.array(ident), keys=np.array(keys), src_keys=np.array(list(src_img)),
             src_img=np.stack(list(src_img.values())), src_mesh=np.stack(list(src_mesh.values())))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **c)
    return c


def evaluate(c: dict, make_part, exclude_own: bool, before=None) -> dict:
    """``make_part(image, mesh, exclude)`` -> a MouthPart; figures over the cached pairs. ``before(part, j)``: called
    before pair j is drawn (``--diagnose``'s variants that need the pair's real frame)."""
    from pdfgc.families.meshwarp.mouth_bank import relative_opening, teeth_fraction
    from pdfgc.families.meshwarp.refine_train import psnr, region_boxes

    src = {k: i for i, k in enumerate(c["src_keys"].tolist())}
    parts, mp, tf_real, tf_out, rel = {}, [], [], [], []
    for j in range(len(c["warp"])):
        k = str(c["keys"][j])
        if k not in parts:
            i = src[k]
            parts = {k: make_part(c["src_img"][i], c["src_mesh"][i], str(c["ident"][j]) if exclude_own else None)}
        out = c["warp"][j].copy()
        if before is not None:
            before(parts[k], j)
        parts[k].render(c["tcorr"][j], out)
        tgt, mt = c["target"][j], c["tmesh"][j]
        b = region_boxes(mt)[0]
        sl = (slice(b[1], b[3]), slice(b[0], b[2]))
        mp.append(psnr(out[sl], tgt[sl]))
        tf_real.append(teeth_fraction(tgt, mt))
        tf_out.append(teeth_fraction(out, mt))
        rel.append(relative_opening(mt))
    mp, tf_real, tf_out, rel = map(np.array, (mp, tf_real, tf_out, rel))
    shows = tf_real >= TEETH_SHOWN
    opened = rel >= 0.05
    res = {"pairs": len(mp), "mouth_psnr": round(float(mp.mean()), 3),
           "mouth_psnr_open": round(float(mp[opened].mean()), 3) if opened.any() else None,
           "teeth_when_real": round(float((tf_out[shows] >= TEETH_SHOWN).mean()), 3) if shows.any() else None,
           "teeth_when_not": round(float((tf_out[~shows] >= TEETH_SHOWN).mean()), 3) if (~shows).any() else None,
           "real_shows": int(shows.sum())}
    miss = shows & (tf_out < TEETH_SHOWN)
    bins = [0, 0.03, 0.06, 0.1, 0.15, 0.25, 9]
    res["misses_by_opening"] = {f"{bins[i]}-{bins[i + 1]}": [int((miss & (rel >= bins[i]) & (rel < bins[i + 1])).sum()),
                                                            int((shows & (rel >= bins[i]) & (rel < bins[i + 1])).sum())]
                                for i in range(len(bins) - 1)}
    res["per_person"] = {}
    for who in dict.fromkeys(c["ident"].tolist()):
        m = c["ident"] == who
        s_, n_ = m & shows, m & ~shows
        res["per_person"][str(who)] = {
            "pairs": int(m.sum()), "mouth_psnr": round(float(mp[m].mean()), 2),
            "teeth_when_real": round(float((tf_out[s_] >= TEETH_SHOWN).mean()), 2) if s_.any() else None,
            "teeth_when_not": round(float((tf_out[n_] >= TEETH_SHOWN).mean()), 2) if n_.any() else None}
    res["_per_pair"] = dict(psnr=mp, tf_real=tf_real, tf_out=tf_out, rel=rel)
    return res


# mouth_bank settings before session 34 (teeth only lifted toward the skin's grey, never dimmed, no warmth)
BEFORE_S34 = {"TEETH_LIFT": 1.0, "TEETH_DIM": 1.0, "TEETH_WARMTH": 0.0}


def closeups(c: dict, pairs: list[int], out: Path, zoom: int = 5) -> None:
    """real | no fill | fill before session 34 | fill now, one cached pair per row (mouth box at ``zoom``)."""
    from meshwarp_pixels_eval import write_rows

    from pdfgc.families.meshwarp import mouth_bank as MB
    from pdfgc.families.meshwarp.mouth import MouthPart
    from pdfgc.families.meshwarp.refine_train import psnr, region_boxes

    src = {k: i for i, k in enumerate(c["src_keys"].tolist())}
    rows = []
    for j in pairs:
        i = src[str(c["keys"][j])]
        b = region_boxes(c["tmesh"][j])[0]
        sl = (slice(b[1], b[3]), slice(b[0], b[2]))
        tiles = [("real", c["target"][j]), ("no fill", c["warp"][j])]
        for name, kw in (("before s34", BEFORE_S34), ("now", {})):
            saved = {k: getattr(MB, k) for k in kw}
            try:
                for k, v in kw.items():
                    setattr(MB, k, v)
                img = c["warp"][j].copy()
                MouthPart(c["src_img"][i], c["src_mesh"][i]).render(c["tcorr"][j], img)
            finally:
                for k, v in saved.items():
                    setattr(MB, k, v)
            tiles.append((name, img))
        labelled = [(n if n == "real" else f"{n} {psnr(im[sl], c['target'][j][sl]):.1f} dB", im[sl]) for n, im in tiles]
        rows.append(_tile_row(labelled, zoom, f"{j} {str(c['ident'][j])[:28]}"))
    write_rows(rows, out)
    print(f"wrote {out} ({len(rows)} pairs)")


def portraits(out: Path) -> None:
    """Rows per portrait, before session 34 and now: the default renderer's mouth opened 0.03 .. 0.12."""
    import torch
    from meshwarp_pixels_eval import write_rows
    from meshwarp_pixels_strips import PORTRAITS, closeup, label

    from pdfgc.families.meshwarp import mouth_bank as MB
    from pdfgc.families.meshwarp.model import crop_at, render_size
    from pdfgc.families.meshwarp.warp import WarpRenderer, open_mouth
    from pdfgc.media.face import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    torch.set_num_threads(1)
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    rows = []
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        for path in PORTRAITS:
            p = pipe.load_portrait(path)
            img = np.ascontiguousarray(crop_at(p, render_size(p)))
            mesh = det.detect(img)[0]
            for tag, kw in (("before s34", BEFORE_S34), ("now", {})):
                saved = {k: getattr(MB, k) for k in kw}
                try:
                    for k, v in kw.items():
                        setattr(MB, k, v)
                    r = WarpRenderer(img, mesh)
                    tiles = [label(closeup(r.render(open_mouth(mesh, a)), mesh, (61, 291, 0, 17), 0.2),
                                   f"{path.stem[:10]} {tag} open {a:.2f}") for a in (0.03, 0.06, 0.09, 0.12)]
                    rows.append(np.concatenate(tiles, 1))
                finally:
                    for k, v in saved.items():
                        setattr(MB, k, v)
    write_rows(rows, out)
    print(f"wrote {out}")


def where(c: dict, exclude_own: bool) -> dict:
    """The shipped fill's mouth-box squared error by region (``--where``)."""
    from pdfgc.families.meshwarp import topology
    from pdfgc.families.meshwarp.mouth import MouthPart
    from pdfgc.families.meshwarp.mouth_bank import default_bank, relative_opening, teeth_fraction
    from pdfgc.families.meshwarp.refine_train import region_boxes
    from pdfgc.media.mesh_indices import LIP_OUTER_LOWER, LIP_OUTER_UPPER

    outer = np.array(list(LIP_OUTER_UPPER) + list(LIP_OUTER_LOWER[-2:0:-1]))
    inner_idx = list(topology.MOUTH_POLYGON)
    src = {k: i for i, k in enumerate(c["src_keys"].tolist())}
    names = ("interior", "geometry", "lips", "skin <= 3 px", "skin 3-8 px", "skin > 8 px")
    se, iou, rel, shows, shown, parts = [], [], [], [], [], {}
    for j in range(len(c["warp"])):
        k = str(c["keys"][j])
        if k not in parts:
            i = src[k]
            parts = {k: MouthPart(c["src_img"][i], c["src_mesh"][i])}
            if exclude_own:   # training pairs: the bank without the pair's own person
                parts[k]._mouths = default_bank().for_portrait(c["src_img"][i], c["src_mesh"][i],
                                                               exclude=str(c["ident"][j]))
        out = c["warp"][j].copy()
        parts[k].render(c["tcorr"][j], out)
        tgt, mt = c["target"][j], c["tmesh"][j]
        b = region_boxes(mt)[0]
        sl = (slice(b[1], b[3]), slice(b[0], b[2]))

        def fill(poly):
            m = np.zeros(tgt.shape[:2], np.uint8)
            cv2.fillPoly(m, [np.round(poly * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
            return m[sl] > 0

        inner, rinner, lip_out = fill(mt[inner_idx, :2]), fill(c["tcorr"][j][inner_idx, :2]), fill(mt[outer, :2])
        dist = cv2.distanceTransform((~lip_out).astype(np.uint8), cv2.DIST_L2, 3)
        e = ((out[sl].astype(np.float64) - tgt[sl].astype(np.float64)) ** 2).mean(2) / e_size(out[sl])
        skin = ~lip_out
        regions = (inner, inner ^ rinner, lip_out & ~inner, skin & (dist <= 3), skin & (dist > 3) & (dist <= 8),
                   skin & (dist > 8))
        se.append([e[r].sum() for r in regions])
        iou.append((inner & rinner).sum() / max((inner | rinner).sum(), 1))
        rel.append(relative_opening(mt))
        shows.append(teeth_fraction(tgt, mt) >= TEETH_SHOWN)
        shown.append(teeth_fraction(out, mt) >= TEETH_SHOWN)
    se, rel, shows, shown = np.array(se), np.array(rel), np.array(shows), np.array(shown)
    total = se[:, [0, 2, 3, 4, 5]].sum(1)
    psnr = lambda m: 10 * np.log10(255.0 ** 2 / np.maximum(m, 1e-10))  # noqa: E731
    res = {"pairs": len(se), "mouth_psnr": round(float(psnr(total).mean()), 3),
           "inner_polygon_iou": {"mean": round(float(np.mean(iou)), 3), "median": round(float(np.median(iou)), 3)},
           "share": {n: round(float(se[:, k].sum() / total.sum()), 3) for k, n in enumerate(names)},
           "psnr_if_perfect": {n: round(float(psnr(total - se[:, k]).mean()), 3) for k, n in enumerate(names)}}
    bins = [0, 0.15, 0.25, 0.35, 9]
    res["false_teeth_by_opening"] = {f"{bins[i]}-{bins[i + 1]}": [
        int((shown & ~shows & (rel >= bins[i]) & (rel < bins[i + 1])).sum()),
        int((~shows & (rel >= bins[i]) & (rel < bins[i + 1])).sum())] for i in range(len(bins) - 1)}
    print(json.dumps(res, indent=1))
    return res


def e_size(box: np.ndarray) -> float:
    """Pixels of a box (the squared error summed over a region / this = the region's share of the box's MSE)."""
    return float(box.shape[0] * box.shape[1])


def diagnose(c: dict, exclude_own: bool) -> None:
    """The shipped bank against fills that isolate one cause each (same cached pairs, same soft inner-lip mask):
    no fill (the warp's own stretched lips under the mask), the real target's pixels, the target's own interior
    through the bank's fill (resampled in mouth coordinates), the bank's fill dimmed, blurred or with less
    contrast; then mouth-box PSNR per opening, split by whether the real mouth shows teeth."""
    from pdfgc.families.meshwarp.mouth import MouthPart
    from pdfgc.families.meshwarp.mouth_bank import MouthBank, PortraitMouths, extract, shape_descriptor

    bank = MouthBank.load()

    def crop(im, box):
        return im[box[1]:box[3], box[0]:box[2]].astype(np.float32)

    def variant(paint=None, own=False):
        def make(im, m, ex):
            part = MouthPart(im, m, mouth=False)
            part.use_mouth = True
            part._mouths = bank.for_portrait(im, m, exclude=ex)
            return part

        def before(part, j):
            if own:
                t, mt = c["target"][j], c["tmesh"][j]
                part._mouths = PortraitMouths(extract(t, mt)[None].astype(np.float32), shape_descriptor(mt)[None],
                                              np.zeros(1, int))
            if paint is not None:
                mouths = part._mouths
                base = type(mouths).interior
                mouths.interior = lambda target, box: paint(base(mouths, target, box), box, j)
        return make, before

    variants = {
        "bank (shipped)": variant(),
        "no fill (the warp's stretched lips)": variant(lambda p, b, j: crop(c["warp"][j], b)),
        "the real target's pixels": variant(lambda p, b, j: crop(c["target"][j], b)),
        "the target's own interior via the fill": variant(own=True),
        "bank x 0.9": variant(lambda p, b, j: p * 0.9),
        "bank x 0.8": variant(lambda p, b, j: p * 0.8),
        "bank, contrast x 0.8": variant(lambda p, b, j: 0.2 * p.reshape(-1, 3).mean(0) + 0.8 * p),
        "bank, blur 2 px": variant(lambda p, b, j: cv2.GaussianBlur(p, (0, 0), 2.0)),
        "bank, half opacity over the warp": variant(lambda p, b, j: 0.5 * p + 0.5 * crop(c["warp"][j], b)),
    }
    per = {}
    for name, (make, before) in variants.items():
        r = evaluate(c, make, exclude_own, before)
        per[name] = r["_per_pair"]
        print(f"{name:42s} PSNR {r['mouth_psnr']:.2f} (open {r['mouth_psnr_open']:.2f})  teeth when real "
              f"{r['teeth_when_real']:.2f}, when not {r['teeth_when_not']:.2f}", flush=True)
    rel, shows = per["bank (shipped)"]["rel"], per["bank (shipped)"]["tf_real"] >= TEETH_SHOWN
    names = ("bank (shipped)", "no fill (the warp's stretched lips)", "the target's own interior via the fill")
    print("mouth-box PSNR by the target's relative opening: bank / no fill / own interior")
    bins = [0.05, 0.1, 0.15, 0.25, 0.35, 9]
    for i in range(len(bins) - 1):
        for tag, sel in (("teeth", shows), ("no teeth", ~shows)):
            m = sel & (rel >= bins[i]) & (rel < bins[i + 1])
            if m.any():
                print(f"  {bins[i]:.2f}-{bins[i + 1]:.2f} {tag:8s} {int(m.sum()):4d} pairs: "
                      + " / ".join(f"{per[n]['psnr'][m].mean():.2f}" for n in names))


# ---------------------------------------------------------------------------------------------- skin (session 34)

SKIN_LOWPASS = 4.0   # px at 224: the "shading" scale of --skin's split
SHADE_GRID, SHADE_UV = 24, (-1.1, 1.1, -0.9, 1.5)   # --skin-shading's mouth frame: u across, v down, in mouth widths


def _skin_mask(mt: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The box's pixels outside the measured target's outer lip outline."""
    from pdfgc.media.mesh_indices import LIP_OUTER_LOWER, LIP_OUTER_UPPER

    outer = list(LIP_OUTER_UPPER) + list(LIP_OUTER_LOWER[-2:0:-1])
    m = np.zeros((224, 224), np.uint8)
    cv2.fillPoly(m, [np.round(mt[outer, :2] * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
    return m[b[1]:b[3], b[0]:b[2]] == 0


def skin(c: dict) -> dict:
    """The warp's skin in the mouth box (``--skin``): its squared error split into the mean (brightness) part, a
    low-frequency part (the residual blurred ``SKIN_LOWPASS`` px, masked) and the rest (misalignment, texture,
    blur); the brightness at the mesh points in the box (lips excluded, 1.5 px blur) of the source frame, the real
    target and the render, so the render-target difference splits into source-target (the frames' own light) and
    render-source (what the warp changes); the same source-target above the eyes (mesh points above point 6: is the
    change the mouth's or the whole frame's light?); high-frequency energy (detail above a 1 px blur) of render and
    target; the mouth-box PSNR with the shipped fill (as ``--where``) and had the skin's mean, mean + low-frequency,
    or all of its error been zero."""
    from pdfgc.families.meshwarp.mouth import MouthPart
    from pdfgc.families.meshwarp.mouth_bank import default_bank, relative_opening
    from pdfgc.families.meshwarp.refine_train import region_boxes
    from pdfgc.media.mesh_indices import LIP_LOWER, LIP_OUTER_LOWER, LIP_OUTER_UPPER, LIP_UPPER

    lips = set(LIP_OUTER_UPPER) | set(LIP_OUTER_LOWER) | set(LIP_UPPER) | set(LIP_LOWER)
    src = {k: i for i, k in enumerate(c["src_keys"].tolist())}

    def at(img, mesh, pts):
        xy = mesh[pts, :2].astype(np.float32)
        return float(cv2.remap(cv2.GaussianBlur(img, (0, 0), 1.5), xy[:, :1], xy[:, 1:], cv2.INTER_LINEAR).mean())

    def hf(img, sl, m):
        g = img[sl].mean(2)
        return float(((g - cv2.GaussianBlur(g, (0, 0), 1.0))[m] ** 2).mean())

    rows, parts, exclude_own = [], {}, len(set(c["ident"].tolist())) > 20   # training caches: the bank minus the person
    for j in range(len(c["warp"])):
        w, t, mt = c["warp"][j].astype(np.float32), c["target"][j].astype(np.float32), c["tmesh"][j]
        i = src[str(c["keys"][j])]
        if str(c["keys"][j]) not in parts:
            parts = {str(c["keys"][j]): MouthPart(c["src_img"][i], c["src_mesh"][i])}
            if exclude_own:
                parts[str(c["keys"][j])]._mouths = default_bank().for_portrait(
                    c["src_img"][i], c["src_mesh"][i], exclude=str(c["ident"][j]))
        filled = c["warp"][j].copy()
        parts[str(c["keys"][j])].render(c["tcorr"][j], filled)
        s_img, s_mesh = c["src_img"][i].astype(np.float32), c["src_mesh"][i]
        b = region_boxes(mt)[0]
        sl = (slice(b[1], b[3]), slice(b[0], b[2]))
        m = _skin_mask(mt, b)
        d = w[sl] - t[sl]
        es = e_size(d)
        total = (d ** 2).mean(2)[m].sum() / es
        mu = d[m].mean(0)
        r = d - mu
        wgt = cv2.GaussianBlur(m.astype(np.float32), (0, 0), SKIN_LOWPASS)
        low = cv2.GaussianBlur(r * m[..., None], (0, 0), SKIN_LOWPASS) / np.maximum(wgt, 1e-6)[..., None]
        mean_part = float((mu ** 2).mean() * m.sum() / es)
        low_part = float((low ** 2).mean(2)[m].sum() / es)
        pts = [k for k in range(468) if b[0] <= mt[k, 0] < b[2] and b[1] <= mt[k, 1] < b[3] and k not in lips]
        up = [k for k in range(468) if mt[k, 1] < mt[6, 1]]
        rows.append([total, mean_part, low_part, total - mean_part - low_part, float(mu.mean()),
                     relative_opening(mt), relative_opening(s_mesh), at(s_img, s_mesh, pts), at(t, mt, pts),
                     at(w, c["tcorr"][j], pts), hf(w, sl, m), hf(t, sl, m),
                     float(((filled[sl].astype(np.float32) - t[sl]) ** 2).mean()),
                     at(s_img, s_mesh, up) - at(t, mt, up)])
    R = np.array(rows)
    psnr = lambda m: round(float((10 * np.log10(255.0 ** 2 / np.maximum(m, 1e-10))).mean()), 3)  # noqa: E731
    ident = c["ident"]
    st, ws = R[:, 7] - R[:, 8], R[:, 9] - R[:, 7]
    dop = R[:, 5] - R[:, 6]
    x, y = dop.copy(), st.copy()
    for p in np.unique(ident):   # within each person: the opening's share, not the people's light
        k = ident == p
        x[k] -= x[k].mean()
        y[k] -= y[k].mean()
    r2 = lambda v: round(float(v), 2)  # noqa: E731
    res = {"pairs": len(R), "skin_share_of_skin_error": {
               "mean (brightness)": round(float(R[:, 1].sum() / R[:, 0].sum()), 3),
               f"low frequency (> {SKIN_LOWPASS:g} px)": round(float(R[:, 2].sum() / R[:, 0].sum()), 3),
               "rest (misalignment, texture)": round(float(R[:, 3].sum() / R[:, 0].sum()), 3)},
           "render_minus_target_in_skin": {"mean": r2(R[:, 4].mean()), "mean_abs": r2(np.abs(R[:, 4]).mean())},
           "at_mesh_points": {"source_minus_target": r2(st.mean()), "render_minus_source": r2(ws.mean()),
                              "render_minus_target": r2((R[:, 9] - R[:, 8]).mean())},
           "source_minus_target_per_unit_opening_change_within_person": {
               "slope": r2(np.polyfit(x, y, 1)[0]), "corr": round(float(np.corrcoef(x, y)[0, 1]), 3)},
           "source_minus_target_above_the_eyes": {
               "mean": r2(R[:, 13].mean()), "corr_with_the_box": round(float(np.corrcoef(R[:, 13], st)[0, 1]), 3)},
           "high_frequency_energy_median": {"render": r2(np.median(R[:, 10])), "target": r2(np.median(R[:, 11]))},
           "mouth_psnr": {"shipped": psnr(R[:, 12]), "skin mean perfect": psnr(R[:, 12] - R[:, 1]),
                          "skin mean + low frequency perfect": psnr(R[:, 12] - R[:, 1] - R[:, 2]),
                          "skin perfect": psnr(R[:, 12] - R[:, 0])},
           "by_target_opening": {}, "per_person": {}}
    for lo, hi in ((0, 0.05), (0.05, 0.15), (0.15, 0.25), (0.25, 0.35), (0.35, 9)):
        k = (R[:, 5] >= lo) & (R[:, 5] < hi)
        res["by_target_opening"][f"{lo}-{hi}"] = {"pairs": int(k.sum()), "render_minus_target": r2(R[k, 4].mean()),
                                                  "source_minus_target": r2(st[k].mean()),
                                                  "render_minus_source": r2(ws[k].mean())}
    for p in np.unique(ident):
        k = ident == p
        res["per_person"][str(p)] = {"pairs": int(k.sum()), "render_minus_target": r2(R[k, 4].mean()),
                                     "source_minus_target": r2(st[k].mean()), "render_minus_source": r2(ws[k].mean())}
    print(json.dumps(res, indent=1))
    return res


def _mouth_frame(mt: np.ndarray):
    from pdfgc.media.mesh_indices import LIP_CORNERS

    a, b = mt[LIP_CORNERS[0], :2], mt[LIP_CORNERS[1], :2]
    w = float(np.linalg.norm(b - a))
    ex = (b - a) / w
    ey = np.array([-ex[1], ex[0]])
    return (a + b) / 2, w, ex, ey if ey[1] > 0 else -ey


def skin_shading(train: dict, test: dict, lam: float = 5.0) -> dict:
    """``--skin-shading TRAIN_CACHE``: a speech-shading candidate. Per cell of a grid in the target's mouth frame
    (origin between the lip corners, unit = mouth width), the log brightness ratio real/render of the box's skin,
    its per-pair mean removed and blurred 3 px, regressed on the change of relative opening (target - source) over
    the training pairs (ridge ``lam``); applied to the test cache's renders as a gain exp(b * change) (with and
    without the fitted constant a); the skin's squared error before / after."""
    from pdfgc.families.meshwarp.mouth_bank import relative_opening
    from pdfgc.families.meshwarp.refine_train import region_boxes

    g, (u0, u1, v0, v1) = SHADE_GRID, SHADE_UV
    uu, vv = np.meshgrid(np.linspace(u0, u1, g), np.linspace(v0, v1, g))

    def pairs(c):
        src = {k: i for i, k in enumerate(c["src_keys"].tolist())}
        for j in range(len(c["warp"])):
            mt = c["tmesh"][j]
            b = region_boxes(mt)[0]
            m = np.zeros((224, 224), bool)
            m[b[1]:b[3], b[0]:b[2]] = _skin_mask(mt, b)
            dop = relative_opening(mt) - relative_opening(c["src_mesh"][src[str(c["keys"][j])]])
            yield j, mt, b, m, dop

    a_mat, y_vec = np.zeros((g, g, 2, 2)), np.zeros((g, g, 2))
    for j, mt, b, m, dop in pairs(train):
        lr = np.log((train["target"][j].mean(2) + 8.0) / (train["warp"][j].mean(2) + 8.0)).astype(np.float32)
        mf = m.astype(np.float32)
        lr -= (lr * mf).sum() / mf.sum()
        lr = cv2.GaussianBlur(lr * mf, (0, 0), 3.0) / np.maximum(cv2.GaussianBlur(mf, (0, 0), 3.0), 1e-6)
        c0, w, ex, ey = _mouth_frame(mt)
        gx = (c0[0] + w * (uu * ex[0] + vv * ey[0])).astype(np.float32)
        gy = (c0[1] + w * (uu * ex[1] + vv * ey[1])).astype(np.float32)
        val = cv2.remap(lr, gx, gy, cv2.INTER_LINEAR)
        ok = cv2.remap(mf, gx, gy, cv2.INTER_LINEAR, borderValue=0) > 0.99
        f = np.array([1.0, dop])
        a_mat += ok[..., None, None] * np.outer(f, f)
        y_vec += (ok * val)[..., None] * f
    coef = np.linalg.solve(a_mat + lam * np.eye(2), y_vec[..., None])[..., 0]
    ys, xs = np.mgrid[0:224, 0:224].astype(np.float32)
    se = {"render": 0.0, "shading b": 0.0, "shading a + b": 0.0}
    better = {k: 0 for k in se}
    for j, mt, b, m, dop in pairs(test):
        w_img, t = test["warp"][j].astype(np.float32), test["target"][j].astype(np.float32)
        c0, w, ex, ey = _mouth_frame(mt)
        u = ((xs - c0[0]) * ex[0] + (ys - c0[1]) * ex[1]) / w
        v = ((xs - c0[0]) * ey[0] + (ys - c0[1]) * ey[1]) / w
        gx = ((u - u0) / (u1 - u0) * (g - 1)).astype(np.float32)
        gy = ((v - v0) / (v1 - v0) * (g - 1)).astype(np.float32)
        e = {}
        for name, field in (("render", None), ("shading b", coef[..., 1] * dop),
                            ("shading a + b", coef[..., 0] + coef[..., 1] * dop)):
            out = w_img
            if field is not None:
                gain = np.exp(cv2.remap(field.astype(np.float32), gx, gy, cv2.INTER_LINEAR, borderValue=0))
                out = np.clip((w_img + 8.0) * gain[..., None] - 8.0, 0, 255).round()
            e[name] = float(((out - t) ** 2).mean(2)[m].sum())
            se[name] += e[name]
        for k in se:
            better[k] += e[k] < e["render"]
    res = {"pairs": len(test["warp"]), "fitted_on_pairs": len(train["warp"]),
           "b_range": [round(float(coef[..., 1].min()), 3), round(float(coef[..., 1].max()), 3)],
           "skin_error_ratio": {k: round(v / se["render"], 4) for k, v in se.items()},
           "better_on_pairs": {k: round(v / len(test["warp"]), 3) for k, v in better.items()}}
    print(json.dumps(res, indent=1))
    return res


def skin_closeups(c: dict, pairs: list[int], out: Path, zoom: int = 4) -> None:
    """``--skin-closeups OUT.png --pairs ...``: per pair the target's mouth box at ``zoom``x: the real target, the
    source frame's same box (its own mouth box), the warp (no mouth fill), the warp with its skin brightness matched
    to the real (an oracle gain: what the mean part is worth), and |warp - real| x 4."""
    from meshwarp_pixels_eval import write_rows

    from pdfgc.families.meshwarp.refine_train import psnr, region_boxes

    src = {k: i for i, k in enumerate(c["src_keys"].tolist())}
    rows = []
    for j in pairs:
        w, t, mt = c["warp"][j], c["target"][j], c["tmesh"][j]
        i = src[str(c["keys"][j])]
        b = region_boxes(mt)[0]
        sl = (slice(b[1], b[3]), slice(b[0], b[2]))
        sb = region_boxes(c["src_mesh"][i])[0]
        s_box = cv2.resize(c["src_img"][i][sb[1]:sb[3], sb[0]:sb[2]], (b[2] - b[0], b[3] - b[1]))
        m = _skin_mask(mt, b)
        gain = t[sl][m].astype(np.float64).mean(0) / np.maximum(w[sl][m].astype(np.float64).mean(0), 1.0)
        matched = w.copy()
        matched[sl] = np.clip(w[sl] * gain, 0, 255).round().astype(np.uint8)
        diff = np.clip(np.abs(w[sl].astype(np.int16) - t[sl]) * 4, 0, 255).astype(np.uint8)
        tiles = [("real", t[sl]), ("source", s_box), (f"warp {psnr(w[sl], t[sl]):.1f}", w[sl]),
                 (f"matched {psnr(matched[sl], t[sl]):.1f}", matched[sl]), ("|warp-real| x4", diff)]
        rows.append(_tile_row(tiles, zoom, f"{j} {str(c['ident'][j])[:28]}"))
    write_rows(rows, out)
    print(f"wrote {out} ({len(rows)} pairs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "prepared_corpus")
    ap.add_argument("--split", choices=("heldout", "train"), default="heldout")
    ap.add_argument("--clips", type=int, default=48, help="training clips (--split train)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="default /tmp/pdfgc_mouth_cache_SPLIT.npz")
    ap.add_argument("--bank", type=Path, action="append", default=[], help="bank files to compare (default: shipped)")
    ap.add_argument("--procedural", action="store_true", help="also the painted mouth (today's baseline)")
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    ap.add_argument("--per-person", action="store_true", help="also print the figures per person")
    ap.add_argument("--diagnose", action="store_true",
                    help="why the fill scores what it does: no fill, the real interior, brightness, blur, contrast")
    ap.add_argument("--closeups", type=Path, default=None, help="write close-ups of --pairs to this PNG")
    ap.add_argument("--pairs", default="", help="with --closeups: comma-separated cached pair indices")
    ap.add_argument("--portraits", type=Path, default=None, help="write the three portraits' before / now strip here")
    ap.add_argument("--where", action="store_true", help="where the shipped fill's mouth-box error sits, by region")
    ap.add_argument("--skin", action="store_true",
                    help="the warp's skin in the box: mean / shading / rest, source vs target vs render light")
    ap.add_argument("--skin-shading", type=Path, default=None, metavar="TRAIN_CACHE",
                    help="fit a speech-shading field on this (training) cache, score it on --cache")
    ap.add_argument("--skin-closeups", type=Path, default=None, help="write --skin's close-ups of --pairs here")
    ap.add_argument("--resample", choices=("linear", "cubic"), default="linear",
                    help="the warp's resampling when building the cache (warp.RESAMPLE)")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    if args.portraits:
        portraits(args.portraits)
        return
    from pdfgc.families.meshwarp.mouth import MouthPart
    from pdfgc.families.meshwarp.mouth_bank import BANK_FILE, MouthBank

    if args.resample == "cubic":
        from pdfgc.families.meshwarp import warp

        warp.RESAMPLE = cv2.INTER_CUBIC
    cache = args.cache or Path(f"/tmp/pdfgc_mouth_cache_{args.split}.npz")
    if cache.is_file():
        c = dict(np.load(cache))
    else:
        c = build_cache(args.data, args.split, args.seed, args.clips, cache)
    res = {}
    if args.skin_closeups:
        skin_closeups(c, [int(x) for x in args.pairs.split(",")], args.skin_closeups)
        return
    if args.closeups:
        closeups(c, [int(x) for x in args.pairs.split(",")], args.closeups)
        return
    if args.where:
        r = where(c, args.split == "train")
        if args.out:
            args.out.write_text(json.dumps(r, indent=1))
        return
    if args.skin or args.skin_shading:
        r = skin(c) if args.skin else skin_shading(dict(np.load(args.skin_shading)), c)
        if args.out:
            args.out.write_text(json.dumps(r, indent=1))
        return
    if args.diagnose:
        diagnose(c, args.split == "train")
        return
    if args.procedural:
        res["procedural"] = evaluate(c, lambda im, m, ex: MouthPart(im, m, mouth="procedural"), False)
    for path in args.bank or [BANK_FILE]:
        bank = MouthBank.load(path)

        def make(im, m, ex, bank=bank):
            part = MouthPart(im, m, mouth=False)
            part.use_mouth = True
            part._mouths = bank.for_portrait(im, m, exclude=ex)
            return part

        res[str(path)] = evaluate(c, make, args.split == "train")
    for k, v in res.items():
        v.pop("_per_pair")
        pp = v.pop("per_person")
        print(k, json.dumps(v))
        if args.per_person:
            for who, f in pp.items():
                print(f"  {who[:40]:40s} {json.dumps(f)}")
        v["per_person"] = pp
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
