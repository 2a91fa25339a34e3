"""Issue 23's vertical gaze: where between the target mesh and mediapipe's read-back of the render it is lost.

    PYTHONPATH=. python benchmarks/gaze_probe.py OUT_DIR [--only NAME,...] [--frames] [--set codes.NAME=VALUE ...]
    PYTHONPATH=. python benchmarks/gaze_probe.py x --explicit        # the explicit gaze rows, 3 portraits
    PYTHONPATH=. python benchmarks/gaze_probe.py --closeups BEFORE_DIR PNG [AFTER_DIR ...]

Renders meshwarp_controls.py's follow case (pose video + eye video + expression video, 8 s) on its 6 portraits and
saves per portrait, in OUT_DIR/NAME.npz: the target meshes (``target``), the render read back by mediapipe tracking
as the benchmark reads it (``render``), the driving eye clip's own tracked mesh (``source``) and, with --frames, the
rendered frames and the eye clip's crops. Prints per portrait the vertical gaze r of target/render/source, all
frames and over the frames whose driving eye is open (EAR >= OPEN_SHARE x the clip's open EAR, its 90th percentile).
The last line prints the six portraits' means (the follow benchmark's figures: its numbers exactly). ``--set``
changes a constant of ``pdfgc.families.meshwarp.MODULE`` for the run (trials without editing code). ``--closeups``
draws 4x crops of both eyes at the frames where the first directory's read-back is furthest from its target, beside
the driving clip's eye at that frame, one column per directory (each made with ``--frames``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
OPEN_SHARE = 0.5   # a frame's driving eye counts as open at this share of the clip's open EAR (90th percentile)


def open_frames(ear_src: np.ndarray, share: float = OPEN_SHARE) -> np.ndarray:
    """(T,) bool: frames whose (T,) driving EAR is at least ``share`` of the clip's open EAR (its 90th percentile)."""
    e = np.asarray(ear_src, np.float64)
    return np.isfinite(e) & (e >= share * np.nanquantile(e, 0.9))


def probe(out: Path, only: list[str], frames: bool, seconds: float = 8.0) -> None:
    from meshwarp_controls import FOLLOW_PORTRAITS
    from meshwarp_targets import EXP_VIDEO, EYE_VIDEO, POSE_VIDEO, Meter, source_signals

    from pdfgc.evaluation import signals as S
    from pdfgc.media import preprocess as pp
    from pdfgc.media.driving import open_driving
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.official_rules import frame_indices
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    class Track(Meter):
        def __init__(self):
            self.det = FaceMeshDetector(static_image_mode=False, max_num_faces=1)

    n = int(seconds * 25)
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    src = source_signals(Track(), EYE_VIDEO, n)
    clip = open_driving(str(EYE_VIDEO), n + 2, "auto", False)
    src_crops = np.asarray(clip.crops)[frame_indices(clip.num_frames, n, "loop", 2 if clip.kind != "image" else 0)]
    out.mkdir(parents=True, exist_ok=True)
    ear_s = S.eye_aspect_ratio(src).mean(1)
    ok = open_frames(ear_s)
    print(f"source: {ok.sum()} of {n} frames open (EAR >= {OPEN_SHARE} x {np.nanquantile(ear_s, 0.9):.3f})")
    rows = []
    for p in FOLLOW_PORTRAITS:
        if only and not any(w in p.name for w in only):
            continue
        opt = AnimateOptions(progress=False, lips="still", refiner=False, duration=seconds, pose=str(POSE_VIDEO),
                             eyes=str(EYE_VIDEO), emotion=str(EXP_VIDEO))
        plan = pipe.plan(pipe.load_portrait(p), None, opt)
        fr = np.concatenate([pp.to_uint8(im) for _, im in pipe.render(plan, opt)])
        tgt = pipe.family.target_meshes(plan, slice(None))
        m = Track().meshes(fr)
        save = {"target": tgt.astype(np.float32), "render": m.astype(np.float32), "source": src.astype(np.float32)}
        if frames:
            save["frames"], save["source_frames"] = fr, src_crops
        np.savez_compressed(out / f"{p.stem}.npz", **save)
        gv = [S.gaze(x)[:, 1] for x in (tgt, m, src)]
        gh = [S.gaze(x)[:, 0] for x in (tgt, m, src)]
        r = lambda a, b, k=slice(None): S.pearson(a[k], b[k])  # noqa: E731
        rows.append([r(gh[1], gh[2]), r(gv[1], gv[2]), r(S.eye_aspect_ratio(m).mean(1), ear_s), r(gv[1], gv[2], ok)])
        print(f"{p.name}: v r render~source {r(gv[1], gv[2]):.3f} (open {r(gv[1], gv[2], ok):.3f}), "
              f"target~source {r(gv[0], gv[2]):.3f}, render~target {r(gv[1], gv[0]):.3f} (open "
              f"{r(gv[1], gv[0], ok):.3f}); h r render~source {r(gh[1], gh[2]):.3f}; EAR r "
              f"{r(S.eye_aspect_ratio(m).mean(1), ear_s):.3f}", flush=True)
    a = np.array(rows)
    print(f"MEAN gaze r h {a[:, 0].mean():.3f} v {a[:, 1].mean():.3f} (5 photos {a[:-1, 1].mean():.3f}; open frames "
          f"{a[:, 3].mean():.3f}) EAR r {a[:, 2].mean():.3f}; per portrait v " + " ".join(f"{x:.3f}" for x in a[:, 1]),
          flush=True)


def explicit(only: list[str]) -> dict:
    """meshwarp_controls.py's explicit gaze rows (right / left 0.5 iris units, up / down 0.2; one frame each after a
    frame at the camera, read in static mode) on the photo framing of anne, Macron and source_s3 (or ``only``):
    per direction the measured change over the asked one, per portrait and the mean."""
    from meshwarp_controls import GAZE_STEPS, SHIPPED, measure, render

    from pdfgc.controls.explicit import GazeControl
    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp.codes import GAZE_H_PER_UNIT, GAZE_V_PER_UNIT
    from pdfgc.media.images import load_image_rgb
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
    only = only or ["anne", "Macron", "source_s3"]
    gk = [{"t": 0.0, "h": 0.0, "v": 0.0}] + [{"t": (i + 0.5) / 25.0, "h": h, "v": v}
                                              for i, (_, h, v) in enumerate(GAZE_STEPS)]
    asked = np.array([[GAZE_H_PER_UNIT * h, -GAZE_V_PER_UNIT * v] for _, h, v in GAZE_STEPS])
    k = np.abs(asked).argmax(1)
    out = {}
    for p in SHIPPED:
        if not any(w in p.name for w in only):
            continue
        fr = render(pipe, pipe.load_portrait(load_image_rgb(p)), max_frames=len(gk), duration=len(gk) / 25.0,
                    gaze_control=GazeControl(keyframes=gk, interpolation="step"))
        g = S.gaze(measure(det, fr[:len(gk)]))
        got = g[1:] - g[0]
        out[p.name] = {n: float(got[j, k[j]] / asked[j, k[j]]) for j, (n, _, _) in enumerate(GAZE_STEPS)}
        print(p.name, {n: round(v, 2) for n, v in out[p.name].items()}, flush=True)
    out["mean"] = {n: float(np.mean([v[n] for v in out.values()])) for n, _, _ in GAZE_STEPS}
    print("EXPLICIT mean measured / asked " + " ".join(f"{n} {v:.2f}" for n, v in out["mean"].items()), flush=True)
    return out


def _eye_crop(frame: np.ndarray, mesh: np.ndarray, e: int, scale: int = 4, size: int = 40) -> np.ndarray:
    """A (size*scale)-wide crop of eye `e` (signals' order) centred on the mesh's eye corners' midpoint."""
    from pdfgc.media.mesh_indices import EAR_POINTS
    a, b = mesh[EAR_POINTS[e, 0], :2], mesh[EAR_POINTS[e, 3], :2]
    c = 0.5 * (a + b)
    half = max(6.0, 0.8 * float(np.linalg.norm(b - a)))
    k = size / (2 * half)
    m = np.array([[k, 0, size / 2 - c[0] * k], [0, k, size / 2 * 0.6 - c[1] * k]], np.float64)
    crop = cv2.warpAffine(frame, m, (size, int(size * 0.6)), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def closeups(src_dir: Path, png: Path, per: int = 4, dirs: list[Path] | None = None) -> None:
    """For each portrait, the `per` frames with the largest |read-back v - target v| (after removing each series'
    mean), each: the driving clip's eye, the render's eyes (one column per results dir in ``dirs``)."""
    from pdfgc.evaluation import signals as S
    dirs = dirs or [src_dir]
    rows = []
    for f in sorted(src_dir.glob("*.npz")):
        z = [np.load(d / f.name) for d in dirs]
        t, m = S.gaze(z[0]["target"])[:, 1], S.gaze(z[0]["render"])[:, 1]
        dt, dm = t - np.nanmean(t), m - np.nanmean(m)
        sd = np.nanstd(dt) / max(np.nanstd(dm), 1e-9)
        err = np.abs(dm * sd - dt)
        err[~np.isfinite(err)] = -1
        pick = np.argsort(-err)[:per]
        for i in sorted(pick):
            tiles = []
            sm = z[0]["source"][i]
            src_tile = np.concatenate([_eye_crop(z[0]["source_frames"][i], sm, e) for e in (0, 1)], 1) \
                if np.isfinite(sm).all() else None
            for zz in z:
                tiles.append(np.concatenate([_eye_crop(zz["frames"][i], zz["target"][i], e) for e in (0, 1)], 1))
            if src_tile is None:
                src_tile = np.zeros_like(tiles[0])
            row = np.concatenate([src_tile] + tiles, 1).copy()
            gs = S.gaze(z[0]["source"][i:i + 1])[0, 1]
            txt = f"{f.stem[:12]} f{i} v src {gs:+.3f} tgt {t[i]:+.3f} read " + " / ".join(
                f"{S.gaze(zz['render'][i:i + 1])[0, 1]:+.3f}" for zz in z)
            cv2.putText(row, txt, (4, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
            rows.append(row)
    w = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 2), (0, w - r.shape[1]), (0, 0))) for r in rows]
    cv2.imwrite(str(png), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def main() -> int:
    if sys.argv[1:2] == ["--closeups"]:
        src_dir, png = Path(sys.argv[2]), Path(sys.argv[3])
        closeups(src_dir, png, dirs=[src_dir] + [Path(d) for d in sys.argv[4:]])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--only", default="")
    ap.add_argument("--frames", action="store_true")
    ap.add_argument("--explicit", action="store_true", help="the explicit gaze rows instead (3 portraits, photo)")
    ap.add_argument("--set", action="append", default=[],
                    help="MODULE.NAME=VALUE: a constant of pdfgc.families.meshwarp.MODULE set for this run (a trial)")
    args = ap.parse_args()
    import importlib
    for kv in args.set:
        name, value = kv.split("=", 1)
        mod, attr = name.rsplit(".", 1)
        setattr(importlib.import_module(f"pdfgc.families.meshwarp.{mod}"), attr, eval(value))
    torch.set_num_threads(1)
    only = [w for w in args.only.split(",") if w]
    if args.explicit:
        explicit(only)
        return 0
    probe(Path(args.out), only, args.frames)
    return 0


if __name__ == "__main__":
    sys.exit(main())
