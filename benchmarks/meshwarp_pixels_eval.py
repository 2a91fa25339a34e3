"""Issue 19's figures: the warp's real mouth interiors, lids and far side against today's warp, on held-out people.

    python benchmarks/meshwarp_pixels_eval.py [--data ../prepared_corpus] [--every 1] [--yaw-pairs 8]
    python benchmarks/meshwarp_pixels_eval.py --yaw-only [--train-yaw]   # the turned-head pairs only (~10 / ~30 s)
    python benchmarks/meshwarp_pixels_eval.py --eyes-only --lids skin [--train-eyes]   # closed-eye read-back only
    python benchmarks/meshwarp_pixels_eval.py --closeups OUT.png --pairs tiktok__000:260:119:1,...   # eye close-ups

Pairs (``refine_train.choose_pairs`` with the refiner eval's seed, so the same 415 held-out self-reenactment pairs
of 13 people; ``--every k`` keeps every k-th): the clip's neutral source frame warped to a target frame of the same
clip by their measured meshes (the renderer's defaults, as the refiner cache), then compared with the real target.
A second set, per held-out clip up to ``--yaw-pairs`` frames whose measured yaw differs by 15-30 degrees from the
clip's most frontal frame, each warped both ways (frontal -> turned, turned -> frontal), gives the turned-head
figure.

Per pair, for today's warp (``BASELINE``: every issue-19 part switched off) and every issue-19 part on (``NEW``):
- PSNR over the target's mouth box (``refine_train.region_boxes``), over its face-mesh hull, and the whole frame;
- teeth: ``mouth_bank.teeth_fraction`` inside the target's inner-lip polygon; of the frames whose real mouth shows
  teeth (fraction >= ``TEETH_SHOWN``), the share whose render shows teeth too;
- on frames with closed eyes (the target's measured EAR below 0.6 x the source's), the EAR that mediapipe reads back
  from the render, MAE against the target's;
- identity: dlib descriptor distance to the real target (every 6th pair).
Writes ``benchmarks/results/meshwarp/pixels_eval.json``.
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

TEETH_SHOWN = 0.05   # a mouth "shows teeth" when at least 5 % of its inner-lip opening looks like teeth
BASELINE = dict(mouth="procedural", lids="painted", far_side=False)
# every issue-19 part on (the shipped default keeps the painted lids and no mirrored far side: README, "Real pixels")
NEW = dict(lids="sheet", far_side=True)
SHIPPED_REFINER = REPO / "pdfgc" / "weights" / "meshwarp_refiner.safetensors"


def _masked_psnr(a, b, m) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[m]
    return float(10 * np.log10(255.0 ** 2 / max(np.mean(d ** 2), 1e-10)))


def heldout_pairs(data: Path, seed: int, yaw_pairs: int):
    from pdfgc.families.meshwarp.refine_train import choose_pairs, corpus_people

    people, corpus = corpus_people(data)
    rng = np.random.default_rng([seed, 1])
    plan, turned = [], []
    for info, ident, held in people:
        if not held:
            continue
        arrays = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy", "mouth.npy", "eye.npy", "pose.npy"))
        plan += [(info.key, s, t, ident) for s, t in choose_pairs(arrays, True, rng)]
        if yaw_pairs:
            turned += _turned_pairs(info.key, ident, arrays, yaw_pairs)
    return plan, turned, corpus


def _turned_pairs(key, ident, arrays, yaw_pairs: int) -> list:
    """One clip's turned-head pairs: its most frontal valid frame against up to ``yaw_pairs`` frames whose measured
    yaw differs by 15-30 deg, both ways (frontal -> turned, and turned -> frontal); [] for a clip without them."""
    valid = arrays["valid.npy"].astype(bool) & np.isfinite(arrays["mesh.npy"]).all(axis=(1, 2))
    idx = np.flatnonzero(valid)
    if len(idx) < 4:
        return []
    yaw = arrays["pose.npy"][:, 0].astype(np.float64)
    s = int(idx[np.argmin(np.abs(yaw[idx]))])
    d = np.abs(yaw[idx] - yaw[s])
    cand = idx[(d >= 15) & (d <= 30)]
    if not len(cand):
        return []
    pick = cand[np.linspace(0, len(cand) - 1, min(yaw_pairs, len(cand))).round().astype(int)]
    return [p for t in dict.fromkeys(pick.tolist()) for p in ((key, s, int(t), ident), (key, int(t), s, ident))]


def train_yaw_pairs(data: Path, yaw_pairs: int = 4, max_clips: int = 40):
    """The turned-head rule of ``heldout_pairs`` on the first ``max_clips`` TRAINING clips with such frames (for
    choosing settings without the held-out people): 306 pairs with the defaults."""
    from pdfgc.families.meshwarp.refine_train import corpus_people

    people, corpus = corpus_people(data)
    turned, n = [], 0
    for info, ident, held in people:
        if held:
            continue
        arrays = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy", "pose.npy"))
        pairs = _turned_pairs(info.key, ident, arrays, yaw_pairs)
        if pairs:
            turned += pairs
            n += 1
            if n >= max_clips:
                break
    return turned, corpus


def train_eye_pairs(data: Path, seed: int = 0, max_clips: int = 60):
    """The held-out pair rule of ``heldout_pairs`` (a calm, wide-open source; targets spread over the clip plus the
    most shut, the widest mouth and the most turned frames) on the first ``max_clips`` TRAINING clips, for choosing
    the lids' settings without the held-out people (``--eyes-only --train-eyes``: their closed-eye pairs)."""
    from pdfgc.families.meshwarp.refine_train import choose_pairs, corpus_people

    people, corpus = corpus_people(data)
    rng = np.random.default_rng([seed, 2])
    plan, n = [], 0
    for info, ident, held in people:
        if held:
            continue
        arrays = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy", "mouth.npy", "eye.npy", "pose.npy"))
        pairs = choose_pairs(arrays, True, rng)
        if pairs:
            plan += [(info.key, s, t, ident) for s, t in pairs]
            n += 1
            if n >= max_clips:
                break
    return plan, corpus


def eye_pairs(data: Path, heldout: bool):
    """(plan, corpus) for the lids' tools: the held-out pairs, or the training clips' pairs (`train_eye_pairs`)."""
    if heldout:
        plan, _, corpus = heldout_pairs(data, 0, 0)
        return plan, corpus
    return train_eye_pairs(data)


def evaluate(plan, corpus, variants: dict, every_identity: int = 6, detector=None, ident_enc=None,
             closed_only: bool = False, refiner_files: dict | None = None) -> dict:
    from pdfgc.evaluation.signals import EAR_POINTS
    from pdfgc.families.meshwarp.mouth_bank import teeth_fraction
    from pdfgc.families.meshwarp.refine_train import psnr, region_boxes
    from pdfgc.families.meshwarp.shapes import eye_aspect as _ear
    from pdfgc.families.meshwarp.warp import WarpRenderer

    # a variant named "<warp>+<tag>" runs the refiner file refiner_files[tag] over that warp
    refiners, models = {}, {}
    files = refiner_files or {"refiner": SHIPPED_REFINER}
    if any("+" in v for v in variants):
        from pdfgc.families.meshwarp.refiner import RefinerRunner, load_refiner
        models = {tag: load_refiner(f) for tag, f in files.items() if any(v.endswith("+" + tag) for v in variants)}
    rows = {v: {k: [] for k in ("mouth_psnr", "face_psnr", "psnr", "teeth", "ear_back", "id")} for v in variants}
    real_teeth, ear_t, closed, ear_ratio = [], [], [], []
    by_clip: dict[str, list] = {}
    for j, p in enumerate(plan):
        by_clip.setdefault(p[0], []).append((j, p))
    t0, done = time.time(), 0
    for key, items in by_clip.items():
        mesh = corpus.load_arrays(key, names=("mesh.npy",))["mesh.npy"].astype(np.float64)
        need = sorted({p[1] for _, p in items} | {p[2] for _, p in items})
        frames = dict(zip(need, corpus.load_frames(key, need)))
        renderers = {}
        for j, (_, s, t, _) in items:
            if closed_only and not float(_ear(mesh[t]).mean()) < 0.6 * float(_ear(mesh[s]).mean()):
                continue
            if s not in renderers:
                renderers = {s: {v: WarpRenderer(frames[s], mesh[s], **kw) for v, kw in variants.items()}}
            tgt, mt = frames[t], mesh[t]
            b = region_boxes(mt)[0]
            sl = (slice(b[1], b[3]), slice(b[0], b[2]))
            hull = np.zeros((224, 224), np.uint8)
            cv2.fillConvexPoly(hull, cv2.convexHull(np.round(mt[:468, :2]).astype(np.int32)), 1)
            real_teeth.append(teeth_fraction(tgt, mt))
            e_t, e_s = float(_ear(mt).mean()), float(_ear(mesh[s]).mean())
            ear_t.append(e_t)
            ear_ratio.append(e_t / max(e_s, 1e-6))
            closed.append(e_t < 0.6 * e_s)
            for v, r in renderers[s].items():
                if "+" in v:
                    if refiners.get(v, (None,))[0] != s:
                        refiners[v] = (s, RefinerRunner(models[v.split("+", 1)[1]], frames[s]))
                    o, aux = r.render(mt, return_aux=True)
                    out = refiners[v][1].apply_batch(o[None], [aux])[0]
                else:
                    out = r.render(mt)
                rw = rows[v]
                rw["mouth_psnr"].append(psnr(out[sl], tgt[sl]))
                rw["face_psnr"].append(_masked_psnr(out, tgt, hull > 0))
                rw["psnr"].append(psnr(out, tgt))
                rw["teeth"].append(teeth_fraction(out, mt))
                ear = np.nan
                if closed[-1] and detector is not None:
                    f = detector.detect(np.ascontiguousarray(out))
                    if f:
                        p2 = f[0][EAR_POINTS, :2]
                        dd = lambda a, c: np.linalg.norm(p2[:, a] - p2[:, c], axis=-1)  # noqa: E731
                        ear = float(((dd(1, 5) + dd(2, 4)) / (2.0 * np.maximum(dd(0, 3), 1e-6))).mean())
                rw["ear_back"].append(ear)
                ident = np.nan
                if ident_enc is not None and j % every_identity == 0:
                    from pdfgc.evaluation.identity import identity_distance
                    a, c = ident_enc.describe(np.ascontiguousarray(out)), ident_enc.describe(np.ascontiguousarray(tgt))
                    if a is not None and c is not None:
                        ident = float(identity_distance(a, c))
                rw["id"].append(ident)
            done += 1
        print(f"  {done}/{len(plan)} pairs, {time.time() - t0:.0f} s", flush=True)
    real_teeth, ear_t, closed = np.array(real_teeth), np.array(ear_t), np.array(closed, bool)
    ear_ratio = np.array(ear_ratio)
    if not len(plan):
        return {"pairs": 0}
    shows = real_teeth >= TEETH_SHOWN
    res = {"pairs": len(plan), "real_shows_teeth": int(shows.sum()), "closed_eye_pairs": int(closed.sum())}
    for v in variants:
        a = {k: np.array(x, np.float64) for k, x in rows[v].items()}
        ok = closed & np.isfinite(a["ear_back"])
        res[v] = {"mouth_psnr": round(float(a["mouth_psnr"].mean()), 3),
                  "face_psnr": round(float(a["face_psnr"].mean()), 3), "psnr": round(float(a["psnr"].mean()), 3),
                  "teeth_shown_when_real_shows": round(float((a["teeth"][shows] >= TEETH_SHOWN).mean()), 3)
                  if shows.any() else None,
                  "teeth_shown_when_real_does_not": round(float((a["teeth"][~shows] >= TEETH_SHOWN).mean()), 3)
                  if (~shows).any() else None,
                  "closed_ear_mae": round(float(np.abs(a["ear_back"][ok] - ear_t[ok]).mean()), 4) if ok.any() else None,
                  "closed_ear_read": int(ok.sum()),
                  # read back minus target, by the target's EAR over the source's (how shut the pair is)
                  "closed_ear_signed_by_ratio": {f"{lo}-{hi}": round(float(np.mean(
                      (a["ear_back"] - ear_t)[ok & (ear_ratio >= lo) & (ear_ratio < hi)])), 4)
                      for lo, hi in ((0.0, 0.2), (0.2, 0.4), (0.4, 0.6))
                      if (ok & (ear_ratio >= lo) & (ear_ratio < hi)).any()},
                  "identity_to_target": round(float(np.nanmean(a["id"])), 4) if np.isfinite(a["id"]).any() else None}
    return res


# the close-ups' columns (``--closeups``): the eyes.py settings of each render beside the real target frame
# ("lids.NAME": a constant of lids.py); session 33's half-shut lid against session 32's
CLOSEUP_VARIANTS = {"s32": {"lids.SLIDE_LIT": 0.0, "lids.SLIDE_SHADE": 0.1, "lids.SLIDE_SHADE_POW": 3.0,
                            "lids.SLIDE_SQUEEZE": 1.0}, "s33": {}}


def write_rows(rows: list, out: Path) -> None:
    """RGB rows of tiles -> one PNG, each row padded on the right to the widest."""
    w = max(r.shape[1] for r in rows)
    img = np.concatenate([np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows], 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def closeups(plan, corpus, pairs: str, out: Path, zoom: int = 8) -> None:
    """One eye per row at ``zoom`` (nearest neighbour), for the held-out pairs `pairs` ("clip-substring:s:t:eye,...",
    each a pair of `plan`): the real target frame, then the default renderer (sliding lid) under each of
    ``CLOSEUP_VARIANTS``; each tile labelled with the target's EAR and the one mediapipe reads back from it; last, the
    last variant again with the target's lid contours (green) and those mediapipe reads back from it (red)."""
    from pdfgc.families.meshwarp import eyes as E
    from pdfgc.families.meshwarp import lids as L
    from pdfgc.families.meshwarp.shapes import eye_aspect as _ear
    from pdfgc.families.meshwarp.warp import WarpRenderer
    from pdfgc.media.face import FaceMeshDetector
    from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER

    rows = []
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        for item in pairs.split(","):
            part, s, t, e = item.split(":")
            s, t, e = int(s), int(t), int(e)
            key = next(k for k, s0, t0, _ in plan if part in k and s0 == s and t0 == t)
            mesh = corpus.load_arrays(key, names=("mesh.npy",))["mesh.npy"].astype(np.float64)
            fr = dict(zip((s, t), corpus.load_frames(key, [s, t])))
            imgs = [("real", fr[t])]
            for name, kw in CLOSEUP_VARIANTS.items():
                mods = {k: (L, k[5:]) if k.startswith("lids.") else (E, k) for k in kw}
                saved = {k: getattr(*mods[k]) for k in kw}
                try:
                    for k, v in kw.items():
                        setattr(*mods[k], v)
                    imgs.append((name, WarpRenderer(fr[s], mesh[s], lids="skin").render(mesh[t])))
                finally:
                    for k, v in saved.items():
                        setattr(*mods[k], v)
            pts = mesh[t][list(EYE_UPPER[e]) + list(EYE_LOWER[e]), :2]
            (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
            x0, x1, y0, y1 = int(x0 - 4), int(x1 + 5), int(y0 - 7), int(y1 + 7)
            tiles = []
            for k, (name, img) in enumerate(imgs + imgs[-1:]):
                f = det.detect(np.ascontiguousarray(img))
                back = float(_ear(f[0])[e]) if f else float("nan")
                c = cv2.resize(img[y0:y1, x0:x1], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST).copy()
                if k == len(imgs):   # the contours: asked (green), read back (red)
                    for m, col in ((mesh[t], (0, 255, 0)), (f[0] if f else None, (255, 0, 0))):
                        for idx in (EYE_UPPER[e], EYE_LOWER[e]) if m is not None else ():
                            q = ((m[list(idx), :2] - (x0 - 0.5, y0 - 0.5)) * zoom).round().astype(np.int32)
                            cv2.polylines(c, [q], False, col, 1, cv2.LINE_AA)
                cv2.putText(c, f"{name} {key[-14:]} {s}->{t}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                            (255, 255, 0), 1, cv2.LINE_AA)
                cv2.putText(c, f"EAR asked {_ear(mesh[t])[e]:.2f} read {back:.2f}", (3, c.shape[0] - 5),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 0), 1, cv2.LINE_AA)
                tiles.append(np.pad(c, ((0, 4), (0, 4), (0, 0))))
            rows.append(np.concatenate(tiles, 1))
    write_rows(rows, out)
    print(f"wrote {out} ({len(rows)} eyes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "prepared_corpus")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=1, help="keep every k-th pair (same seed, a cheaper run)")
    ap.add_argument("--yaw-pairs", type=int, default=8, help="turned-head pairs per held-out clip")
    ap.add_argument("--no-identity", action="store_true")
    ap.add_argument("--refiner", action="store_true",
                    help="also the shipped default warp alone and with the refiner (--refiner-file) over it, and "
                         "with --old-refiner the refiner trained on the old warp over the old warp (the baseline)")
    ap.add_argument("--refiner-file", type=Path, default=SHIPPED_REFINER, help="with --refiner: the refiner to judge")
    ap.add_argument("--old-refiner", type=Path, default=None,
                    help="with --refiner: the refiner of session 11-32 (trained on the painted mouth and lids), run "
                         "over that old warp ('today+old_refiner'); e.g. `git show b12dc6e:pdfgc/weights/"
                         "meshwarp_refiner.safetensors > old.safetensors`")
    ap.add_argument("--eyes-only", action="store_true",
                    help="only the closed-eye pairs and their EAR read-back (no turned-head pairs, no identity)")
    ap.add_argument("--train-yaw", action="store_true",
                    help="with --yaw-only: the turned-head pairs of 40 TRAINING clips instead (for choosing settings)")
    ap.add_argument("--train-eyes", action="store_true",
                    help="with --eyes-only: the closed-eye pairs of 60 TRAINING clips instead (for choosing settings)")
    ap.add_argument("--yaw-only", action="store_true",
                    help="only the turned-head pairs (no self-reenactment, no identity), plus the shipped default")
    ap.add_argument("--lids", default=None,
                    help="comma-separated lids for the new variant, one variant each (painted, sheet, skin)")
    ap.add_argument("--closeups", type=Path, default=None,
                    help="only write close-ups of --pairs (real | CLOSEUP_VARIANTS) to this PNG")
    ap.add_argument("--pairs", default="", help="with --closeups: clip-substring:s:t:eye,... (held-out pairs)")
    ap.add_argument("--default-only", action="store_true",
                    help="only the shipped default warp (no refiner, no turned-head pairs): its mouth-box PSNR, "
                         "teeth, closed-eye read-back and identity rows, the cheapest run of those rows")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks/results/meshwarp/pixels_eval.json")
    args = ap.parse_args()
    if args.yaw_only:
        args.no_identity = True
        if args.out == REPO / "benchmarks/results/meshwarp/pixels_eval.json":
            args.out = REPO / "benchmarks/results/meshwarp/pixels_eval_yaw.json"
    if args.eyes_only:
        args.no_identity, args.yaw_pairs = True, 0
        if args.out == REPO / "benchmarks/results/meshwarp/pixels_eval.json":
            args.out = REPO / "benchmarks/results/meshwarp/pixels_eval_eyes.json"
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from pdfgc.media.face import FaceMeshDetector

    plan, turned, corpus = heldout_pairs(args.data, args.seed, args.yaw_pairs)
    if args.closeups:
        closeups(plan, corpus, args.pairs, args.closeups)
        return
    if args.train_yaw:
        turned, corpus = train_yaw_pairs(args.data)
        if args.out == REPO / "benchmarks/results/meshwarp/pixels_eval_yaw.json":
            args.out = REPO / "benchmarks/results/meshwarp/pixels_eval_yaw_train.json"
    if args.train_eyes:
        plan, corpus = train_eye_pairs(args.data, args.seed)
        if args.out == REPO / "benchmarks/results/meshwarp/pixels_eval_eyes.json":
            args.out = REPO / "benchmarks/results/meshwarp/pixels_eval_eyes_train.json"
    plan = [] if args.yaw_only else plan[::args.every]
    variants = {"today": BASELINE, "new": NEW}
    if args.lids:   # the new variant with each of these lids instead ("new_<lids>")
        variants = {"today": BASELINE, **{f"new_{k}": {**NEW, "lids": k} for k in args.lids.split(",")}}
    if args.yaw_only:
        variants["default"] = {}
    if args.default_only:
        variants, turned = {"default": {}}, []
    refiner_files = {"refiner": args.refiner_file}
    if args.refiner:   # the refiner runs over the shipped default warp (as `--refiner` renders since session 33)
        variants.update({"default": {}, "default+refiner": {}})
        if args.old_refiner:
            variants["today+old_refiner"] = BASELINE
            refiner_files["old_refiner"] = args.old_refiner
    enc = None
    if not args.no_identity:
        from pdfgc.evaluation.identity import IdentityEncoder
        enc = IdentityEncoder()
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        print(f"self-reenactment: {len(plan)} held-out pairs")
        res = {"self_reenactment": evaluate(plan, corpus, variants, detector=det, ident_enc=enc,
                                            closed_only=args.eyes_only, refiner_files=refiner_files)} if plan else {}
        print(f"turned head: {len(turned)} pairs with 15-30 deg yaw change")
        res["yaw_15_30"] = {"pairs": 0} if not turned else evaluate(
            turned, corpus, variants, detector=None, ident_enc=None, refiner_files=refiner_files)
    res["settings"] = {"every": args.every, "seed": args.seed, "yaw_pairs": args.yaw_pairs, "teeth_shown": TEETH_SHOWN,
                       "baseline": BASELINE, "variants": variants, "eyes_only": args.eyes_only,
                       "refiner_files": {k: str(v) for k, v in refiner_files.items()} if args.refiner else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
