"""The mesh-warp refiner against the warp alone, on held-out people (issue 11's targets).

    python benchmarks/meshwarp_refiner_eval.py [--refiner pdfgc/weights/meshwarp_refiner.safetensors]

1. **Self-reenactment** of every held-out pair of the refiner cache (``refine_train.build_cache``: per held-out clip
   one neutral source frame and 24 targets of the same clip, the source warped to each target by their measured
   meshes): PSNR and SSIM at 224 of the warp alone and of warp + refiner against the real target frame, over the
   whole frame and over the target's mouth box (``refine_train.region_boxes``), and on the open-mouth / closing-lid
   subsets (the warp painted a mouth interior / lids), and PSNR inside the target's face-mesh hull (``face_psnr``:
   the aligned crops' background moves with the camera and the crop, which no warp of the source follows).
2. **Identity**: dlib's descriptor distance (``pdfgc.evaluation.identity``) of each output to the real target frame
   and to the source (the portrait), warp alone vs refined, on every 6th pair.
3. **Speed** (torch and OpenCV threads = ``--threads``, default 2): per frame, warp alone and warp (+ aux masks) +
   refiner, at 224 and 512 px (anne.png), median of repeated renders; wall and CPU time (the machine is shared).
4. **Controls**: mouth opening and EAR that mediapipe reads back from target / warp / refined (held-out pairs), and
   from anne.png at requested mouth openings and lid closings (the refiner must not undo the warp's control).
5. **Strips** (PNG, viewed before any claim): held-out pairs with the widest mouth opening, the lowest lids and the
   largest pose change (source | target | warp | refined), and anne.png with an open mouth, closed eyes and
   20 deg yaw (warp | refined; no ground truth).

Results: ``benchmarks/results/meshwarp/refiner_eval.json``, ``refiner_heldout.png`` (and
``refiner_heldout_closeup.png``: the mouth / eye / face centre of the same pairs at 3x, real | warp | refined),
``refiner_anne.png`` (and ``refiner_anne_closeup.png``: the centre of the same frames at 2x, warp | refined).
The pairs are the refiner cache's: since session 33 (``refine_train.AUX_VERSION`` 3) the default warp (real mouth
bank, sliding lid, stretched fill), which ``--refiner`` renders over.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared")) / "data"
OUT = REPO / "benchmarks" / "results" / "meshwarp"


def _ssim(a, b) -> float:
    from skimage.metrics import structural_similarity
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def _label(img, text):
    img = img.copy()
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def face_masks(cache, data: Path) -> np.ndarray:
    """(N,224,224) bool: the convex hull of each target's face mesh (what the renderer is responsible for; the
    background of an aligned crop moves with the camera and the crop, which no warp of the source can follow)."""
    from pdfgc.data import PreparedCorpus

    corpus = PreparedCorpus(data)
    meshes = {}
    out = np.zeros((len(cache), 224, 224), bool)
    for i, (key, t) in enumerate(zip(cache.meta["keys"], cache.meta["t"])):
        if key not in meshes:
            meshes[key] = corpus.load_arrays(key, names=("mesh.npy",))["mesh.npy"]
        hull = cv2.convexHull(np.round(meshes[key][t, :468, :2]).astype(np.int32))
        m = np.zeros((224, 224), np.uint8)
        cv2.fillConvexPoly(m, hull, 1)
        out[i] = m > 0
    return out


def _masked_psnr(a, b, m) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64))[m]
    return float(10 * np.log10(255.0 ** 2 / max(np.mean(d ** 2), 1e-10)))


def self_reenactment(model, cache, data: Path) -> tuple[dict, np.ndarray]:
    from pdfgc.families.meshwarp.refine_train import psnr, refine_cached

    n = len(cache)
    refined = refine_cached(model, cache, range(n))
    faces = face_masks(cache, data)
    keys = ("psnr", "ssim", "mouth_psnr", "mouth_ssim", "face_psnr")
    rows = {f"{k}_{w}": [] for k in keys for w in ("warp", "refined")}
    mouth_open = cache.aux[:, :, :, 0].reshape(n, -1).max(1) > 128
    lids = cache.aux[:, :, :, 2].reshape(n, -1).max(1) > 128
    for i in range(n):
        t, b = cache.target[i], cache.boxes[i, 0]
        sl = (slice(b[1], b[3]), slice(b[0], b[2]))
        for w, img in (("warp", cache.warp[i]), ("refined", refined[i])):
            rows[f"psnr_{w}"].append(psnr(img, t))
            rows[f"ssim_{w}"].append(_ssim(img, t))
            rows[f"mouth_psnr_{w}"].append(psnr(img[sl], t[sl]))
            rows[f"mouth_ssim_{w}"].append(_ssim(img[sl], t[sl]))
            rows[f"face_psnr_{w}"].append(_masked_psnr(img, t, faces[i]))
    arr = {k: np.asarray(v) for k, v in rows.items()}
    res = {"pairs": n, "clips": cache.meta.get("clips_used", cache.meta.get("clips")),
           "people": cache.meta.get("people")}
    for name, sel in (("all", np.ones(n, bool)), ("mouth_open", mouth_open), ("lids", lids)):
        res[name] = {"pairs": int(sel.sum())}
        if sel.any():
            res[name].update({k: round(float(v[sel].mean()), 3) for k, v in arr.items()})
    res["pairs_refined_better_psnr"] = round(float((arr["psnr_refined"] > arr["psnr_warp"]).mean()), 3)
    return res, refined


def identity(cache, refined, every: int = 6) -> dict:
    from pdfgc.evaluation.identity import IdentityEncoder, identity_distance

    enc = IdentityEncoder()
    d = {"warp_to_target": [], "refined_to_target": [], "warp_to_source": [], "refined_to_source": []}
    for i in range(0, len(cache), every):
        t = enc.describe(np.ascontiguousarray(cache.target[i]))
        s = enc.describe(cv2.resize(np.ascontiguousarray(cache.source[i]), (224, 224), interpolation=cv2.INTER_CUBIC))
        w = enc.describe(np.ascontiguousarray(cache.warp[i]))
        r = enc.describe(np.ascontiguousarray(refined[i]))
        if any(x is None for x in (t, s, w, r)):
            continue
        d["warp_to_target"].append(identity_distance(w, t))
        d["refined_to_target"].append(identity_distance(r, t))
        d["warp_to_source"].append(identity_distance(w, s))
        d["refined_to_source"].append(identity_distance(r, s))
    return {"pairs": len(d["warp_to_target"]), **{k: round(float(np.mean(v)), 4) for k, v in d.items() if v}}


def controls(cache, refined, every: int = 2) -> dict:
    """What mediapipe reads back (signals.mouth_opening, eye_aspect_ratio) from the real target, the warp alone and
    the refined frame: the refiner must not undo the warp's control (an open mouth filled in, lids re-opened)."""
    from pdfgc.evaluation import signals as S
    from pdfgc.media.face import FaceMeshDetector

    rows = {"target": [], "warp": [], "refined": []}
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        for i in range(0, len(cache), every):
            ms = []
            for img in (cache.target[i], cache.warp[i], refined[i]):
                f = det.detect(np.ascontiguousarray(img))
                ms.append(f[0] if f else None)
            if any(m is None for m in ms):
                continue
            for k, m in zip(rows, ms):
                rows[k].append((float(S.mouth_opening(m[None])[0]), float(S.eye_aspect_ratio(m[None]).mean())))
    arr = {k: np.asarray(v) for k, v in rows.items()}
    out = {"pairs": len(arr["target"])}
    for j, name in ((0, "mouth_opening"), (1, "ear")):
        t = arr["target"][:, j]
        for k in ("warp", "refined"):
            x = arr[k][:, j]
            out[f"{name}_{k}_mean"] = round(float(x.mean()), 4)
            out[f"{name}_{k}_r_vs_target"] = round(float(np.corrcoef(x, t)[0, 1]), 3)
            out[f"{name}_{k}_mae_vs_target"] = round(float(np.abs(x - t).mean()), 4)
        out[f"{name}_target_mean"] = round(float(t.mean()), 4)
    return out


def anne_controls(model) -> dict:
    """anne.png: mouth opening and EAR read back from warp alone vs refined at requested openings / lid closings."""
    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp.refiner import RefinerRunner
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, open_mouth
    from pdfgc.media.face import FaceMeshDetector

    img, mesh = _anne(224)
    r, run = WarpRenderer(img, mesh), RefinerRunner(model, img)
    out = {}
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        def read(x):
            f = det.detect(np.ascontiguousarray(x))
            if not f:
                return None, None
            return float(S.mouth_opening(f[0][None])[0]), float(S.eye_aspect_ratio(f[0][None]).mean())
        for amount in (0.02, 0.05, 0.08):
            f, a = r.render(open_mouth(mesh, amount), return_aux=True)
            out[f"mouth_opening_at_{amount}"] = {"warp": read(f)[0], "refined": read(run.apply(f, a))[0]}
        for amount in (0.5, 1.0):
            f, a = r.render(close_eyes(mesh, amount), return_aux=True)
            out[f"ear_at_close_{amount}"] = {"warp": read(f)[1], "refined": read(run.apply(f, a))[1]}
    return out


def _anne(size: int):
    from pdfgc.media.face import FaceMeshDetector, load_image_rgb

    img = load_image_rgb(DATA / "pdfgc" / "anne.png")
    if img.shape[0] != size:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC if size > img.shape[0] else cv2.INTER_AREA)
    with FaceMeshDetector(static_image_mode=True) as det:
        faces = det.detect(img)
    if not faces:
        raise SystemExit("no face in anne.png")
    return img, faces[0]


def _targets(mesh):
    from pdfgc.families.meshwarp.warp import close_eyes, open_mouth, rotate_mesh
    return {"open mouth": open_mouth(mesh, 0.08), "closed eyes": close_eyes(mesh, 1.0),
            "yaw 20": rotate_mesh(mesh, yaw=20.0), "yaw 20 + speech": rotate_mesh(open_mouth(mesh, 0.05), yaw=20.0)}


def speed(model, reps: int = 20) -> dict:
    from pdfgc.families.meshwarp.refiner import RefinerRunner
    from pdfgc.families.meshwarp.warp import WarpRenderer

    out = {"threads": torch.get_num_threads()}
    for size in (224, 512):
        img, mesh = _anne(size)
        r = WarpRenderer(img, mesh)
        run = RefinerRunner(model, img)
        targets = list(_targets(mesh).values())

        def warp_only(k):
            return r.render(targets[k % len(targets)])

        def refined(k):
            f, a = r.render(targets[k % len(targets)], return_aux=True)
            return run.apply(f, a)
        for name, fn in (("warp", warp_only), ("warp+refiner", refined)):
            for k in range(3):
                fn(k)
            wall, cpu = [], []
            for k in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                fn(k)
                wall.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            out[f"{size}_{name}_ms_wall"] = round(1000 * float(np.median(wall)), 2)
            out[f"{size}_{name}_ms_cpu"] = round(1000 * float(np.median(cpu)), 2)
            out[f"{size}_{name}_fps_wall"] = round(1.0 / float(np.median(wall)), 1)
    return out


def strips(model, cache, refined, path_heldout: Path, path_anne: Path) -> dict:
    from pdfgc.families.meshwarp.refiner import RefinerRunner
    from pdfgc.families.meshwarp.warp import WarpRenderer

    n = len(cache)
    mouth = cache.aux[:, :, :, 0].reshape(n, -1).mean(1)
    lids = cache.aux[:, :, :, 2].reshape(n, -1).mean(1)
    stretch = cache.aux[:, :, :, 3].reshape(n, -1).mean(1)
    picks = {"open mouth": [int(i) for i in np.argsort(-mouth)[:2]], "lids": [int(i) for i in np.argsort(-lids)[:2]],
             "stretch": [int(np.argmax(stretch))]}
    rows = []
    for what, idx in picks.items():
        for i in idx:
            src = cv2.resize(np.ascontiguousarray(cache.source[i]), (224, 224), interpolation=cv2.INTER_CUBIC)
            rows.append(np.hstack([_label(src, f"source ({what})"), _label(cache.target[i], "target (real)"),
                                   _label(cache.warp[i], "warp alone"), _label(refined[i], "warp + refiner")]))
    cv2.imwrite(str(path_heldout), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    # close-ups of the held-out picks at 3x (target | warp | refined): the mouth box for the open mouths, an
    # eye's box for the lids, the face's centre for the largest pose change (teeth, lash lines, the far cheek)
    close = []
    for what, idx in picks.items():
        for i in idx:
            b = cache.boxes[i, 0] if what == "open mouth" else cache.boxes[i, 1 + int(np.argmax(cache.boxes[i, 1:, 3]))]
            if what == "stretch":
                b = np.array([48, 40, 176, 168])
            cx, cy, h = (b[0] + b[2]) // 2, (b[1] + b[3]) // 2, max(b[2] - b[0], b[3] - b[1], 32) // 2 + 4
            x0, y0 = int(np.clip(cx - h, 0, 224 - 2 * h)), int(np.clip(cy - h, 0, 224 - 2 * h))
            tiles = [cv2.resize(np.ascontiguousarray(im[y0:y0 + 2 * h, x0:x0 + 2 * h]), (192, 192),
                                interpolation=cv2.INTER_CUBIC) for im in (cache.target[i], cache.warp[i], refined[i])]
            close.append(np.hstack([_label(tiles[0], f"real ({what})"), _label(tiles[1], "warp alone"),
                                    _label(tiles[2], "warp + refiner")]))
    cv2.imwrite(str(path_heldout.with_name(path_heldout.stem + "_closeup.png")),
                cv2.cvtColor(np.vstack(close), cv2.COLOR_RGB2BGR))
    img, mesh = _anne(224)
    r, run = WarpRenderer(img, mesh), RefinerRunner(model, img)
    rows = []
    from pdfgc.families.meshwarp.warp import rotate_mesh

    for what, t in {**_targets(mesh), "yaw 30": rotate_mesh(mesh, yaw=30.0)}.items():
        f, a = r.render(t, return_aux=True)
        g = run.apply(f, a)
        diff = np.clip(np.abs(g.astype(int) - f.astype(int)) * 4, 0, 255).astype(np.uint8)
        rows.append(np.hstack([_label(f, f"warp alone: {what}"), _label(g, "warp + refiner"),
                               _label(diff, "|difference| x4")]))
    cv2.imwrite(str(path_anne), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))
    # close-ups of the same frames (the face's centre at 2x): teeth, lash lines, the far-cheek seam
    close = []
    for row in rows:
        tiles = [cv2.resize(row[44:172, k * 224 + 48:k * 224 + 176], (256, 256), interpolation=cv2.INTER_CUBIC)
                 for k in range(2)]
        close.append(np.hstack(tiles))
    path_close = path_anne.with_name(path_anne.stem + "_closeup.png")
    cv2.imwrite(str(path_close), cv2.cvtColor(np.vstack(close), cv2.COLOR_RGB2BGR))
    return {k: [cache.meta["keys"][i] + f" s{cache.meta['s'][i]} t{cache.meta['t'][i]}" for i in v]
            for k, v in picks.items()}


def main(argv=None) -> int:
    from pdfgc.families.meshwarp import refine_train as R
    from pdfgc.families.meshwarp.refiner import load_refiner

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refiner", type=Path, default=REPO / "pdfgc" / "weights" / "meshwarp_refiner.safetensors")
    ap.add_argument("--cache", type=Path, default=R.DEFAULT_CACHE)
    ap.add_argument("--data", type=Path, default=REPO.parent / "prepared_corpus", help="the prepared corpus")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--prefix", default="refiner")
    ap.add_argument("--no-identity", action="store_true")
    ap.add_argument("--no-region", action="store_true", help="the refiner unrestricted (no region_mask gate)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    cv2.setNumThreads(a.threads)
    a.out.mkdir(parents=True, exist_ok=True)
    model = load_refiner(a.refiner, region=not a.no_region)
    cache = R.open_cache(R.build_cache(a.data, a.cache, "heldout"))
    t0 = time.time()
    res = {"refiner": str(a.refiner), "region_gate": model.region, "refiner_info": getattr(model, "info", {}),
           "parameters": sum(p.numel() for p in model.parameters())}
    res["self_reenactment"], refined = self_reenactment(model, cache, a.data)
    print(json.dumps(res["self_reenactment"], indent=1))
    if not a.no_identity:
        res["identity"] = identity(cache, refined)
        print("identity", res["identity"])
    res["controls"] = controls(cache, refined)
    res["anne_controls"] = anne_controls(model)
    print("controls", res["controls"], res["anne_controls"])
    res["speed"] = speed(model)
    print("speed", res["speed"])
    if a.threads != 1:   # on a shared 2-core machine one thread is often faster than two (no waiting on a busy core)
        torch.set_num_threads(1)
        cv2.setNumThreads(1)
        res["speed_1_thread"] = speed(model)
        print("speed, 1 thread", res["speed_1_thread"])
        torch.set_num_threads(a.threads)
        cv2.setNumThreads(a.threads)
    res["strips"] = strips(model, cache, refined, a.out / f"{a.prefix}_heldout.png", a.out / f"{a.prefix}_anne.png")
    res["seconds"] = round(time.time() - t0, 1)
    (a.out / f"{a.prefix}_eval.json").write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.out / (a.prefix + '_eval.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
