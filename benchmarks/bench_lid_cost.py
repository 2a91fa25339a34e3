"""The eye part's cost with the default sliding lid against older code, in one process (issue 19's +0.5 ms limit).

    git show REV:pdfgc/families/meshwarp/eyes.py > /tmp/base/eyes.py   # and lids.py, the code to compare against
    PYTHONPATH=. python benchmarks/bench_lid_cost.py --base /tmp/base            # timing, alternating rounds
    PYTHONPATH=. python benchmarks/bench_lid_cost.py --base /tmp/base --check    # output identical?

Timing: ``bench_warp.py``'s twelve targets on anne.png (two thirds of them closing both eyes 0.5 or 1.0, yaw
-15..15, pitch, mouth) rendered by one ``WarpRenderer`` per variant: lids off (``lids=False``), the base code's eye
part (its ``eyes.py`` and ``lids.py`` loaded from ``--base`` and put in the renderer's place) and this tree's.
Rounds alternate the variants (``--rounds`` of ``--reps`` renders each); CPU ms per render (process_time) of the
whole render and of the eye part alone, best and median over the rounds. One thread (the machine is shared).

``--check``: the largest pixel difference between the base and this tree's frames (and their ``lids``/``eyes``
masks) over portraits x closures x gaze shifts x head poses, with and without an expression texture.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared")) / "data"
PORTRAITS = (DATA / "pdfgc/anne.png", DATA / "edtalk/crop_identity_source.jpg", DATA / "real3dportrait/Macron.png",
             DATA / "corpus/DECA/portraits/TestSamples__examples__id08456-SEvpX9LhEP4-000957_inputs_inputs.jpg",
             DATA / "corpus/stargan-v2/portraits/assets__representative__celeba_hq__src__female__039913.jpg")


def load_base(folder: Path):
    """The base code's ``EyeParts``: its eyes.py run as a module of its own, pointed at its own lids.py."""
    mods = {}
    for name in ("lids", "eyes"):
        spec = importlib.util.spec_from_file_location(f"_base_{name}", folder / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        mods[name] = mod
    eyes, lids = mods["eyes"], mods["lids"]
    eyes.lids = lids
    for fn in ("lid_sheet", "sliding_lid"):
        if hasattr(eyes, fn):
            setattr(eyes, fn, getattr(lids, fn))
    return eyes.EyeParts


def portraits(paths=PORTRAITS[:1], sizes=(224,)):
    from pdfgc.media.alignment import align_portrait
    from pdfgc.media.face import FaceMeshDetector
    from pdfgc.media.images import load_image_rgb
    from pdfgc.media.pasteback import warp_to_crop

    out = []
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        for path in paths:
            img = load_image_rgb(path)
            if img.shape[:2] != (224, 224):
                img = warp_to_crop(img, align_portrait(img, detector=det))
            for size in sizes:
                im = img if size == 224 else cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC)
                faces = det.detect(im)
                if faces:
                    out.append((f"{path.stem[:16]}@{size}", np.ascontiguousarray(im), faces[0]))
    return out


def targets(mesh, kind: str = "bench_warp"):
    """``bench_warp.py``'s twelve targets, or ("turned") twelve with open eyes, the head turned and nodding and the
    gaze moved (a talking head's usual frame: the lid has not come down)."""
    from pdfgc.families.meshwarp.warp import close_eyes, open_mouth, rotate_mesh, shift_irises

    if kind == "turned":
        return [rotate_mesh(shift_irises(open_mouth(mesh, 0.03 * (k % 3)), 0.1 * ((k % 5) - 2) / 2, 0.02 * (k % 2)),
                            yaw=-18 + 3 * k, pitch=5 - (k % 4) * 3) for k in range(12)]
    return [rotate_mesh(open_mouth(close_eyes(mesh, 0.5 * (k % 3)), 0.04 * (k % 4)), yaw=-15 + 3 * (k % 11),
                        pitch=4 - (k % 5)) for k in range(12)]


class Timed:
    """An eye part whose render time (CPU) is summed."""

    def __init__(self, part):
        self.part, self.cpu = part, 0.0

    def render(self, *a):
        c = time.process_time()
        self.part.render(*a)
        self.cpu += time.process_time() - c


def renderers(img, mesh, base_cls):
    from pdfgc.families.meshwarp.warp import WarpRenderer

    rs = {"off": WarpRenderer(img, mesh, lids=False), "base": WarpRenderer(img, mesh),
          "new": WarpRenderer(img, mesh)}
    rs["base"].parts[0] = base_cls(rs["base"].image, rs["base"].mesh)
    for r in rs.values():
        r.parts[0] = Timed(r.parts[0])
    return rs


def timing(base_cls, size: int, rounds: int, reps: int, kind: str = "bench_warp") -> dict:
    name, img, mesh = portraits(sizes=(size,))[0]
    rs = renderers(img, mesh, base_cls)
    tg = targets(mesh, kind)
    for r in rs.values():
        for t in tg:
            r.render(t)
    res = {k: {"render": [], "eyes": []} for k in rs}
    order = list(rs)
    for i in range(rounds):
        for k in order if i % 2 == 0 else order[::-1]:
            r = rs[k]
            r.parts[0].cpu = 0.0
            c = time.process_time()
            for j in range(reps):
                r.render(tg[j % len(tg)])
            res[k]["render"].append((time.process_time() - c) / reps * 1e3)
            res[k]["eyes"].append(r.parts[0].cpu / reps * 1e3)
    out = {"size": size, "targets": kind, "rounds": rounds, "reps": reps, "load": os.getloadavg()[0]}
    for k, v in res.items():
        out[k] = {m: {"best": float(np.min(x)), "median": float(np.median(x))} for m, x in v.items()}
    for k in ("base", "new"):
        out[k]["over_off"] = {s: out[k]["render"][s] - out["off"]["render"][s] for s in ("best", "median")}
        out[k]["eyes_over_off"] = {s: out[k]["eyes"][s] - out["off"]["eyes"][s] for s in ("best", "median")}
        # paired per round (the rounds alternate, so a round's load is shared)
        out[k]["eyes_over_off_paired_median"] = float(np.median(np.subtract(res[k]["eyes"], res["off"]["eyes"])))
    return out


def check(base_cls, with_threads: bool = True) -> dict:
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, rotate_mesh, shift_irises

    worst = {"frame": 0, "lids": 0.0, "eyes": 0.0}
    n = 0
    shots = portraits(PORTRAITS, (224,)) + portraits(PORTRAITS[2:3], (512,))
    for name, img, mesh in shots:
        a, b = WarpRenderer(img, mesh), WarpRenderer(img, mesh)
        a.parts[0] = base_cls(a.image, a.mesh)
        tex = np.clip(img.astype(np.int16) + 12, 0, 255).astype(np.uint8)   # a brighter "expression" texture
        cases = []
        for amount in (0.0, 0.1, 0.3, 0.5, 0.7, 0.85, 1.0):
            for gaze in ((0.0, 0.0), (0.12, 0.0), (-0.1, 0.04)):
                for pose in ((0, 0), (18, -6), (-25, 8)):
                    m = rotate_mesh(close_eyes(shift_irises(mesh, *gaze), amount), yaw=pose[0], pitch=pose[1])
                    cases.append(m)
        # one eye closing, the other open; a squint (the lower lids up)
        from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER
        cases.append(close_eyes(mesh, 0.6, eyes=(0,)))
        sq = mesh.copy()
        for e in range(2):
            lo, up = list(EYE_LOWER[e][1:-1]), list(EYE_UPPER[e][1:-1])
            sq[lo, :2] += 0.3 * (sq[up, :2] - sq[lo, :2])
        cases.append(sq)
        for k, m in enumerate(cases):
            texture = tex if k % 4 == 3 else None
            fa, xa = a.render(m, return_aux=True, texture=texture)
            fb, xb = b.render(m, return_aux=True, texture=texture)
            worst["frame"] = max(worst["frame"], int(np.abs(fa.astype(int) - fb).max()))
            for key in ("lids", "eyes"):
                worst[key] = max(worst[key], float(np.abs(xa[key] - xb[key]).max()))
            fb2 = b.render(m, texture=texture)
            worst["frame"] = max(worst["frame"], int(np.abs(fa.astype(int) - fb2).max()))
            n += 1
        print(f"{name}: running worst {worst}", flush=True)
    worst["frames"] = n
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True, help="folder with the base code's eyes.py and lids.py")
    ap.add_argument("--check", action="store_true", help="compare the outputs instead of timing")
    ap.add_argument("--sizes", type=int, nargs="+", default=[224])
    ap.add_argument("--targets", choices=("bench_warp", "turned"), default="bench_warp")
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--reps", type=int, default=48)
    ap.add_argument("--json", type=Path, default=None, help="append the figures to this JSON-lines file")
    args = ap.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    base_cls = load_base(args.base)
    if args.check:
        res = {"check": check(base_cls)}
        print(json.dumps(res))
    else:
        for size in args.sizes:
            res = timing(base_cls, size, args.rounds, args.reps, args.targets)
            print(f"{size} px, {args.targets} targets, {res['rounds']} rounds x {res['reps']} renders, "
                  f"load {res['load']:.1f}; CPU ms per render, best / median over the rounds")
            for k in ("off", "base", "new"):
                r = res[k]
                line = (f"  {k:5s} render {r['render']['best']:.2f} / {r['render']['median']:.2f}"
                        f"  eye part {r['eyes']['best']:.3f} / {r['eyes']['median']:.3f}")
                if k != "off":
                    line += (f"  over off: render {r['over_off']['best']:+.2f} / {r['over_off']['median']:+.2f},"
                             f" eye part {r['eyes_over_off']['best']:+.3f} / {r['eyes_over_off']['median']:+.3f}"
                             f" (paired {r['eyes_over_off_paired_median']:+.3f})")
                print(line)
    if args.json is not None:
        with open(args.json, "a") as f:
            f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
