"""Session 34 (issue 23, the eye rows): why one eye follows the eye clip weakly and why the cartoon's vertical gaze
reads negatively. Renders the follow benchmark's eye case (meshwarp_controls.follow: pose video, eye video,
expression video, 8 s) on the named portraits and saves frames + tracked meshes, and the driving eye clip's meshes:

    PYTHONPATH=. python benchmarks/eyes_s34_diag.py OUTDIR [--only anne,source_image] [--set "mod.NAME=VALUE,..."]

OUTDIR/src.npz (driving meshes, yaw), OUTDIR/<portrait>.npz (frames, meshes, the plan's codes, target meshes).
Close-ups of one eye from such a directory (the target's contour and iris centre green, mediapipe's red):

    python benchmarks/eyes_s34_diag.py --closeups OUTDIR PORTRAIT FRAMES EYE OUT.png [ZOOM]

Each eye's lid alone and both, in still frames (each portrait's plan with its eye codes set per frame; mediapipe in
static mode; EAR over the unchanged frame's, per eye):

    PYTHONPATH=. python benchmarks/eyes_s34_diag.py --still

A widened eye before | after ``eyes.WIDE_*`` (wideeye_s34.md), close-ups of both eyes:

    PYTHONPATH=. python benchmarks/eyes_s34_diag.py --wide OUT.png [ZOOM]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def apply_sets(spec: str) -> None:
    import importlib

    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, val = item.split("=")
        mod, attr = name.rsplit(".", 1)
        m = importlib.import_module(f"pdfgc.families.meshwarp.{mod}")
        setattr(m, attr, type(getattr(m, attr))(eval(val)) if getattr(m, attr) is not None else eval(val))


def closeups(d: Path, name: str, frames: list[int], e: int, out: Path, zoom: int = 6) -> None:
    import cv2

    from pdfgc.evaluation import signals as S
    from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER, GAZE_POINTS

    z = np.load(d / f"{name}.npz")
    fr, read, tgt, lid = z["frames"], z["meshes"], z["targets"], 1.0 + z["eye_codes"][:, :2]
    ear_t, ear_r = S.eye_aspect_ratio(tgt), S.eye_aspect_ratio(read)
    v_s, v_t, v_r = (S.gaze(np.load(d / "src.npz")["meshes"])[:, 1], S.gaze(tgt)[:, 1], S.gaze(read)[:, 1])
    rows = []
    for t in frames:
        ends = tgt[t, [EYE_UPPER[e][0], EYE_UPPER[e][-1]], :2]
        c, w = ends.mean(0), float(np.linalg.norm(ends[1] - ends[0]))
        x0, y0 = max(int(c[0] - 0.8 * w), 0), max(int(c[1] - 0.5 * w), 0)
        crop = np.ascontiguousarray(fr[t][y0 : int(c[1] + 0.5 * w), x0 : int(c[0] + 0.8 * w)])
        big = cv2.resize(crop, (crop.shape[1] * zoom, crop.shape[0] * zoom), interpolation=cv2.INTER_CUBIC)
        marked = big.copy()
        for mesh, col in ((tgt[t], (0, 255, 0)), (read[t], (255, 0, 0))):
            for line in (EYE_UPPER[e], EYE_LOWER[e]):
                cv2.polylines(marked, [((mesh[list(line), :2] - [x0, y0]) * zoom).astype(np.int32)], False, col, 1)
            cv2.circle(marked, tuple(((mesh[GAZE_POINTS[e, 2], :2] - [x0, y0]) * zoom).astype(int)), 3, col, -1)
        both = np.concatenate([big, marked], 1)
        cv2.putText(
            both,
            f"f{t} lid {lid[t, e]:.2f} EAR asked {ear_t[t, e]:.3f} read {ear_r[t, e]:.3f} | v clip "
            f"{v_s[t]:+.3f} asked {v_t[t]:+.3f} read {v_r[t]:+.3f}",
            (4, 14),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.42,
            (255, 255, 0),
            1,
        )
        rows.append(both)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


STILL_CASES = [(0.0, 0.0), (-0.25, 0.0), (0.0, -0.25), (-0.25, -0.25), (0.0, 0.12), (0.12, 0.12)]


def still() -> None:
    from meshwarp_controls import FOLLOW_PORTRAITS

    from pdfgc.evaluation import signals as S
    from pdfgc.media import preprocess as pp
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    torch.set_num_threads(1)
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    n = len(STILL_CASES)
    for p in FOLLOW_PORTRAITS:
        opt = AnimateOptions(progress=False, lips="still", refiner=False, duration=n / 25.0, max_frames=n)
        plan = pipe.plan(pipe.load_portrait(p), None, opt)
        eye = plan.eye.clone()
        for i, (a, b) in enumerate(STILL_CASES):
            eye[i, 0], eye[i, 1] = a, b
        plan.eye = eye
        fr = np.concatenate([pp.to_uint8(im) for _, im in pipe.render(plan, opt)])
        asked = S.eye_aspect_ratio(pipe.family.target_meshes(plan, slice(None)))
        det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
        read = S.eye_aspect_ratio(np.stack([det.detect(np.ascontiguousarray(f))[0] for f in fr]))
        print(
            p.name,
            " ".join(
                f"[{1 + a:.2f},{1 + b:.2f}] asked {asked[i, 0] / asked[0, 0]:.2f}/"
                f"{asked[i, 1] / asked[0, 1]:.2f} read {read[i, 0] / read[0, 0]:.2f}/"
                f"{read[i, 1] / read[0, 1]:.2f}"
                for i, (a, b) in enumerate(STILL_CASES)
                if i
            ),
        )


WIDE_CASES = [(0.14, 0.14, 0.0, 0.0), (0.0, 0.14, 0.38, 0.0), (0.14, 0.14, -0.38, 0.0)]  # lids, gaze h, v


def wide(out: Path, zoom: int = 6) -> None:
    """Session 34's widened eye (issue 19): before | after close-ups at ``zoom`` of one still frame per case
    (WIDE_CASES: both lids 1.14x; eye 1 1.14x with the iris glancing right, as the follow case's frame 70; both
    1.14x glancing left), on Macron, anne, one held-out corpus face (WarpRenderer on its first valid frame, the same
    lid and iris moves by hand), and Macron under ``emotion_control="surprise"`` (frame 12 of 0.6 s). "before": the
    ``eyes.WIDE_*`` parts off (``eyes.WIDE_REAL``, off by default), "after": on."""
    import cv2
    from meshwarp_controls import FOLLOW_PORTRAITS

    from pdfgc.families.meshwarp import eyes as E
    from pdfgc.families.meshwarp.refine_train import corpus_people
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, shift_irises
    from pdfgc.media import preprocess as pp
    from pdfgc.media.mesh_indices import EYE_UPPER
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    def setting(flag):
        E.WIDE_REAL = flag

    def crop(fr, mesh):
        ends = mesh[[EYE_UPPER[0][0], EYE_UPPER[0][-1], EYE_UPPER[1][0], EYE_UPPER[1][-1]], :2]
        ew = float(np.linalg.norm(ends[0] - ends[1]))
        x0, x1 = int(max(ends[:, 0].min() - 0.2 * ew, 0)), int(ends[:, 0].max() + 0.2 * ew)
        cy = float(ends[:, 1].mean())
        y0, y1 = int(max(cy - 0.45 * ew, 0)), int(cy + 0.4 * ew)
        cr = np.ascontiguousarray(fr[y0:y1, x0:x1])
        z = max(2, int(round(zoom * 224 / fr.shape[0])))
        return cv2.resize(cr, (cr.shape[1] * z, cr.shape[0] * z), interpolation=cv2.INTER_CUBIC)

    torch.set_num_threads(1)
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    rows, labels = [], []
    for p in FOLLOW_PORTRAITS:
        if p.stem not in ("Macron", "anne"):
            continue
        n = len(WIDE_CASES)
        opt = AnimateOptions(progress=False, lips="still", refiner=False, duration=n / 25.0, max_frames=n)
        plan = pipe.plan(pipe.load_portrait(p), None, opt)
        eye = plan.eye.clone()
        for i, c in enumerate(WIDE_CASES):
            eye[i, :4] = torch.tensor(c)
        plan.eye = eye
        tm = pipe.family.target_meshes(plan, slice(None))
        got = []
        for flag in (False, True):
            setting(flag)
            got.append(np.concatenate([pp.to_uint8(im) for _, im in pipe.render(plan, opt)]))
        for i in range(n):
            rows.append(np.concatenate([crop(got[0][i], tm[i]), crop(got[1][i], tm[i])], 1))
            labels.append(
                f"{p.stem} lids {1 + WIDE_CASES[i][0]:.2f}/{1 + WIDE_CASES[i][1]:.2f} gaze {WIDE_CASES[i][2]:+.2f}"
            )
        opt = AnimateOptions(
            progress=False, lips="still", refiner=False, duration=0.6, max_frames=15, emotion_control="surprise"
        )
        if p.stem == "Macron":
            plan = pipe.plan(pipe.load_portrait(p), None, opt)
            tm = pipe.family.target_meshes(plan, slice(None))
            got = []
            for flag in (False, True):
                setting(flag)
                got.append(np.concatenate([pp.to_uint8(im) for _, im in pipe.render(plan, opt)]))
            rows.append(np.concatenate([crop(got[0][12], tm[12]), crop(got[1][12], tm[12])], 1))
            labels.append("Macron surprise f12")
    people, corpus = corpus_people(ROOT.parent / "prepared_corpus")
    info, ident = next((i, d) for i, d, held in people if held and i.num_frames >= 40)
    arr = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy"))
    k = int(np.flatnonzero(arr["valid.npy"].astype(bool))[0])
    img, mesh = corpus.load_frames(info.key, [k])[0], arr["mesh.npy"][k].astype(np.float64)
    for a, b, h, _ in WIDE_CASES:
        t = close_eyes(close_eyes(mesh, -a, eyes=(0,)), -b, eyes=(1,))
        t = shift_irises(t, h * 0.5, 0.0)
        got = []
        for flag in (False, True):
            setting(flag)
            got.append(WarpRenderer(img, mesh, lids="skin").render(t))
        rows.append(np.concatenate([crop(got[0], t), crop(got[1], t)], 1))
        labels.append(f"held-out {ident} lids {1 + a:.2f}/{1 + b:.2f} iris {h * 0.5:+.2f} w")
    setting(False)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((18, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    for r, lab in zip(rows, labels):
        cv2.putText(r, lab + "   before | after", (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 0), 1)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def main() -> int:
    if sys.argv[1:2] == ["--wide"]:
        wide(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 6)
        return 0
    if sys.argv[1:2] == ["--still"]:
        still()
        return 0
    if sys.argv[1:2] == ["--closeups"]:
        a = sys.argv[2:]
        closeups(
            Path(a[0]), a[1], [int(x) for x in a[2].split(",")], int(a[3]), Path(a[4]), int(a[5]) if len(a) > 5 else 6
        )
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--only", default="")
    ap.add_argument("--set", default="")
    args = ap.parse_args()
    torch.set_num_threads(1)
    apply_sets(args.set)
    from meshwarp_controls import FOLLOW_PORTRAITS
    from meshwarp_targets import EXP_VIDEO, EYE_VIDEO, POSE_VIDEO, Meter, render, source_signals

    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp import codes as C
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    class Track(Meter):
        def __init__(self):
            self.det = FaceMeshDetector(static_image_mode=False, max_num_faces=1)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    n = 200
    if not (out / "src.npz").exists():
        src = source_signals(Track(), EYE_VIDEO, n)
        rot = C.canonicalize(src)[1]
        np.savez_compressed(out / "src.npz", meshes=src, angles=S.rotation_to_angles(rot))
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    only = [s for s in args.only.split(",") if s]
    for p in FOLLOW_PORTRAITS:
        if only and not any(s in p.name for s in only):
            continue
        fr, plan = render(
            pipe, pipe.load_portrait(p), duration=8.0, pose=str(POSE_VIDEO), eyes=str(EYE_VIDEO), emotion=str(EXP_VIDEO)
        )
        m = Track().meshes(fr)
        extra = {
            "eye_codes": plan.eye.numpy(),
            "pose_codes": plan.pose.numpy(),
            "targets": pipe.family.target_meshes(plan, slice(None)),
        }
        np.savez_compressed(out / f"{p.stem}.npz", frames=fr, meshes=m, **extra)
        print(p.name, fr.shape, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
