"""Close-up PNG strips of issue 19 for the README: today's warp (``meshwarp_pixels_eval.BASELINE``: the painted mouth
and lids, no mirrored far side, replicated crop borders) above the new default, row pairs per portrait.

    python benchmarks/meshwarp_pixels_strips.py [--out benchmarks/results/meshwarp]

  pixels_mouth.png   mouth opening at five levels (warp.open_mouth 0 .. 0.12 face heights), three portraits
  pixels_speech.png  speech (audio_longer.mp3) with each emotion label: the frame with the widest mouth
  pixels_eyes.png    a blink and half-closed eyes (warp.close_eyes 0.3 .. 1.0, then 0.5 with the irises shifted),
                     the painted lids (before) above the sliding lid (after), one eye close up; anne.png (224 px),
                     the head shot, Macron.png (512 px) and two darker-skinned faces from the corpus's stills
                     (``--eyes-only`` writes just this one)
  pixels_yaw.png     yaw -30 .. +30 in 10 deg steps: anne.png, and anne turned 25 deg (so one side is hidden)
                     (``--yaw-only`` writes just this one)
  pixels_tight.png   a tight 256 px head shot (edtalk/crop_identity_source.jpg), the default command's layout
  pixels_bank.png    every entry of the mouth bank (or of ``--bank FILE``, e.g. one built with ``mouth_bank --all``),
                     a row per person, ordered by opening
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
PD = DATA / "pdfgc"
PORTRAITS = (PD / "anne.png", DATA / "edtalk/crop_identity_source.jpg", DATA / "real3dportrait/Macron.png")
# darker skin, portraits outside the corpus's clips (DECA's and StarGAN v2's sample stills)
EYE_PORTRAITS = (DATA / "corpus/DECA/portraits/TestSamples__examples__id08456-SEvpX9LhEP4-000957_inputs_inputs.jpg",
                 DATA / "corpus/stargan-v2/portraits/assets__representative__celeba_hq__src__female__039913.jpg")
EYE_SIZES = {"Macron": 512}
EYES_BEFORE, EYES_AFTER = dict(lids="painted"), dict(lids="skin")


def eye_closeup(frame, mesh, e: int, size=(240, 150)) -> np.ndarray:
    """Eye `e` of `frame`, 1.9 eye widths across (the portrait's mesh places it), resized to `size`."""
    from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER
    idx = list(EYE_UPPER[e]) + list(EYE_LOWER[e])
    c = mesh[idx, :2].mean(0)
    w = float(np.ptp(mesh[idx, 0]))
    half = (0.95 * w, 0.95 * w * size[1] / size[0])
    x0, y0 = c[0] - half[0], c[1] - 0.15 * w - half[1]
    k = size[0] / (2 * half[0])
    m = np.array([[k, 0, -k * x0], [0, k, -k * y0]])
    return cv2.warpAffine(frame, m, size, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


def eyes_strip(path: Path, shots) -> None:
    """pixels_eyes.png: per portrait the painted lids (before) above the sliding lid (after)."""
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, shift_irises

    rows = []
    for name, img, mesh in shots:
        from pdfgc.media.mesh_indices import EAR_POINTS
        e = int(np.argmax([np.linalg.norm(mesh[EAR_POINTS[k, 0], :2] - mesh[EAR_POINTS[k, 3], :2]) for k in (0, 1)]))
        for tag, kw in (("before", EYES_BEFORE), ("after", EYES_AFTER)):
            r = WarpRenderer(img, mesh, **kw)
            tiles = [label(eye_closeup(r.render(close_eyes(mesh, a)), mesh, e),
                           f"{name} {img.shape[0]}px {tag} {a:.1f}") for a in (0.3, 0.5, 0.7, 1.0)]
            gazed = close_eyes(shift_irises(mesh, 0.12, 0.0), 0.5)
            tiles.append(label(eye_closeup(r.render(gazed), mesh, e), f"{tag} 0.5 + gaze"))
            rows.append(np.concatenate(tiles, 1))
    save(path, rows)


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(img.copy())
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def closeup(frame, mesh, points, half: float, aspect: float = 1.3, size=(208, 160)) -> np.ndarray:
    """A box around the mean of `points`, `half` x the face height tall, resized to `size`."""
    h = float(np.linalg.norm(mesh[152, :2] - mesh[10, :2])) * half
    c = mesh[list(points), :2].mean(0)
    s = frame.shape[0]
    x0, y0 = int(np.clip(c[0] - aspect * h, 0, s - 2)), int(np.clip(c[1] - h, 0, s - 2))
    x1, y1 = int(np.clip(c[0] + aspect * h, x0 + 2, s)), int(np.clip(c[1] + h, y0 + 2, s))
    return cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_CUBIC)


def save(path: Path, rows) -> None:
    img = np.concatenate(rows, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(f"wrote {path}")


def bank_sheet(path: Path, bank_file: Path | None = None) -> None:
    """Every entry of a mouth bank as it is stored (before colour matching), a row per person, by opening."""
    from pdfgc.families.meshwarp import mouth_bank as MB

    bank = MB.MouthBank.load(bank_file or MB.BANK_FILE)
    rows, n = [], max(np.bincount(bank.person))
    for p, src in enumerate(bank.sources):
        sel = np.flatnonzero(bank.person == p)
        sel = sel[np.argsort(bank.desc[sel, 4] - bank.desc[sel, 1])]
        tiles = [cv2.resize(bank.patches[i], (96, 72), interpolation=cv2.INTER_CUBIC) for i in sel]
        tiles += [np.zeros((72, 96, 3), np.uint8)] * (n - len(sel))
        rows.append(label(np.concatenate(tiles, 1), src["person"][:40]))
    save(path, rows)


def yaw_strip(path: Path, shot, det, before: dict, after: dict) -> None:
    """yaw -30 .. +30: the portrait, and the portrait turned 25 deg by the renderer (measured again) turned back."""
    from pdfgc.families.meshwarp.warp import WarpRenderer, rotate_mesh

    rows = []
    name, img, mesh = shot
    flat = WarpRenderer(img, mesh, **before)
    turned = flat.render(rotate_mesh(mesh, yaw=25))
    tmesh = det.detect(turned)[0]
    for nm, im, me in ((name, img, mesh), (name + " turned 25", turned, tmesh)):
        for tag, kw in (("today", before), ("new", after)):
            r = WarpRenderer(im, me, **kw)
            rows.append(np.concatenate([label(cv2.resize(r.render(rotate_mesh(me, yaw=y)), (176, 176),
                                                         interpolation=cv2.INTER_AREA), f"{tag} yaw {y:+d}")
                                        for y in range(-30, 31, 10)], 1))
    save(path, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/meshwarp")
    ap.add_argument("--bank", type=Path, default=None, help="the bank file for pixels_bank.png (default: shipped)")
    ap.add_argument("--eyes-only", action="store_true", help="only pixels_eyes.png")
    ap.add_argument("--yaw-only", action="store_true", help="only pixels_yaw.png")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from meshwarp_pixels_eval import BASELINE, NEW
    from meshwarp_strips import frames_of

    from pdfgc.controls.explicit import EmotionControl, PoseControl
    from pdfgc.families.meshwarp.model import crop_at, render_size
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, open_mouth
    from pdfgc.media.face import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
    shots = []
    for path in PORTRAITS:
        p = pipe.load_portrait(path)
        img = np.ascontiguousarray(crop_at(p, render_size(p)))
        shots.append(({"crop_identity_source": "head shot"}.get(path.stem, path.stem), img, det.detect(img)[0]))
    mouth_pts = (61, 291, 0, 17)
    if args.eyes_only:
        more = []
        for path in EYE_PORTRAITS:
            p = pipe.load_portrait(path)
            img = np.ascontiguousarray(crop_at(p, 224))
            more.append((path.stem.split("__")[-1][:12], img, det.detect(img)[0]))
        big = []
        for name, img, mesh in shots:
            if name in EYE_SIZES:
                p = pipe.load_portrait(next(q for q in PORTRAITS if q.stem == name))
                img = np.ascontiguousarray(crop_at(p, EYE_SIZES[name]))
                mesh = det.detect(img)[0]
            big.append((name, img, mesh))
        eyes_strip(args.out / "pixels_eyes.png", big + more)
        return

    if args.yaw_only:
        yaw_strip(args.out / "pixels_yaw.png", shots[0], det, BASELINE, NEW)
        return

    rows = []
    for name, img, mesh in shots:
        for tag, kw in (("today", BASELINE), ("new", NEW)):
            r = WarpRenderer(img, mesh, **kw)
            rows.append(np.concatenate([label(closeup(r.render(open_mouth(mesh, a)), mesh, mouth_pts, 0.2),
                                              f"{name} {tag} open {a:.2f}") for a in (0.0, 0.03, 0.06, 0.09, 0.12)], 1))
    save(args.out / "pixels_mouth.png", rows)

    rows = []
    for name, img, mesh in shots:
        for tag, kw in (("today", BASELINE), ("new", NEW)):
            r = WarpRenderer(img, mesh, **kw)
            tiles = []
            for a in (0.3, 0.5, 0.7, 1.0):
                tiles.append(label(closeup(r.render(close_eyes(mesh, a)), mesh, (33, 133),
                                           0.14, 1.4), f"{name} {tag} lids {a:.1f}"))
            rows.append(np.concatenate(tiles, 1))
    save(args.out / "pixels_eyes.png", rows)

    yaw_strip(args.out / "pixels_yaw.png", shots[0], det, BASELINE, NEW)

    # speech with each emotion label, through the pipeline (today: the plan's renderer swapped for the baseline)
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import FrameComposer

    anne = pipe.load_portrait(PD / "anne.png")
    rows = {"today": [], "new": []}
    for lab in ("neutral", "happy", "surprise", "sad", "angry"):
        opt = AnimateOptions(progress=False, max_frames=60, emotion_control=EmotionControl(label=lab))
        plan = pipe.plan(anne, str(PD / "audio_longer.mp3"), opt)
        st = plan.appearance
        comp = FrameComposer(pipe.family, anne, plan, "result")
        new = np.concatenate([comp(sl, im) for sl, im in pipe.render(plan, opt)])
        st.renderer = WarpRenderer(st.image, st.mesh, **BASELINE)
        old = np.concatenate([comp(sl, im) for sl, im in pipe.render(plan, opt)])
        meshes = pipe.family.target_meshes(plan, slice(0, len(new)))
        k = int(np.argmax([np.linalg.norm(m[14, :2] - m[13, :2]) for m in meshes]))
        for tag, fr in (("today", old), ("new", new)):
            rows[tag].append(label(closeup(fr[k], st.mesh, mouth_pts, 0.24), f"{tag} {lab} t={k / 25:.2f}s"))
    save(args.out / "pixels_speech.png", [np.concatenate(rows["today"], 1), np.concatenate(rows["new"], 1)])

    # the tight head shot with the default command's layout: today a 224-alignment crop whose border rows were
    # replicated past the photo (the old crop_at), now the animated photo at its own size
    photo = DATA / "edtalk/crop_identity_source.jpg"
    p = pipe.load_portrait(photo)
    opt = AnimateOptions(progress=False, lips="still", duration=1.0, pose_control=PoseControl(yaw=15))
    now = frames_of(pipe, p, layout=opt.layout, lips="still", duration=1.0, pose_control=PoseControl(yaw=15))
    plan = pipe.plan(p, None, opt)
    st = plan.appearance
    size = st.size
    k = size / 224.0
    m = np.array([[k, 0, 0.5 * k - 0.5], [0, k, 0.5 * k - 0.5]]) @ np.vstack([p.to_crop, [0, 0, 1]])
    rep = cv2.warpAffine(p.original, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    old_r = WarpRenderer(rep, st.mesh, **BASELINE)
    meshes = pipe.family.target_meshes(plan, slice(0, plan.num_frames))
    tiles = [label(cv2.resize(p.original, (288, 288)), "photo (256 px)"),
             label(cv2.resize(old_r.render(meshes[-1]), (288, 288)), f"today: {size} px crop, yaw 15"),
             label(cv2.resize(now[-1], (288, 288)), f"new default: {now.shape[2]}x{now.shape[1]} photo")]
    save(args.out / "pixels_tight.png", [np.concatenate(tiles, 1)])
    bank_sheet(args.out / "pixels_bank.png", args.bank)


if __name__ == "__main__":
    main()
