"""Speed and look of the mesh-warp renderer (pdfgc/families/meshwarp/warp.py).

    python benchmarks/bench_warp.py            # ms per render at 224 and 512 px on one core
    python benchmarks/bench_warp.py --strips   # also PNG strips in benchmarks/results/meshwarp/warp_*.png
    python benchmarks/bench_warp.py --measure  # also what mediapipe reads back (pose, EAR, gaze, mouth)

The portraits are anne.png (an aligned 224 crop) and a photo aligned with align_portrait + warp_to_crop; the meshes
are measured with mediapipe (nothing cached). Timings: median of repeated renders after warm-up, threads pinned to 1;
the CPU time (process_time) is the figure that matters on a shared machine, where wall time also counts waiting.
The targets mix yaw -15..15, pitch, half/closed lids and mouth openings (the expensive paths).
"""
from __future__ import annotations

import argparse
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
OUT = REPO / "benchmarks" / "results" / "meshwarp"


def _portraits(size: int):
    from pdfgc.media.face import FaceMeshDetector, align_portrait, load_image_rgb, warp_to_crop

    anne = load_image_rgb(DATA / "pdfgc" / "anne.png")
    photo = load_image_rgb(DATA / "edtalk" / "uncrop_face.jpg")
    with FaceMeshDetector(static_image_mode=True) as det:
        crop = warp_to_crop(photo, align_portrait(photo, detector=det))
        out = []
        for name, img in (("anne", anne), ("photo", crop)):
            if img.shape[0] != size:
                interp = cv2.INTER_CUBIC if size > img.shape[0] else cv2.INTER_AREA
                img = cv2.resize(img, (size, size), interpolation=interp)
            faces = det.detect(img)
            if not faces:
                raise SystemExit(f"no face in {name}")
            out.append((name, img, faces[0]))
    return out


def bench(size: int, reps: int = 40) -> dict:
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, open_mouth, rotate_mesh

    name, img, mesh = _portraits(size)[0]
    t0 = time.perf_counter()
    r = WarpRenderer(img, mesh)
    init = time.perf_counter() - t0
    targets = [rotate_mesh(open_mouth(close_eyes(mesh, 0.5 * (k % 3)), 0.04 * (k % 4)), yaw=-15 + 3 * (k % 11),
                           pitch=4 - (k % 5)) for k in range(12)]
    for t in targets[:4]:
        r.render(t)
    times, cpu, aux_times = [], [], []
    for i in range(reps):
        t = targets[i % len(targets)]
        a, c = time.perf_counter(), time.process_time()
        r.render(t)
        times.append(time.perf_counter() - a)
        cpu.append(time.process_time() - c)
    for i in range(max(5, reps // 4)):
        c = time.process_time()
        r.render(targets[i % len(targets)], return_aux=True)
        aux_times.append(time.process_time() - c)
    return dict(size=size, init_ms=init * 1e3, render_ms=float(np.median(times)) * 1e3,
                cpu_ms=float(np.median(cpu)) * 1e3, cpu_p90_ms=float(np.percentile(cpu, 90)) * 1e3,
                aux_ms=float(np.median(aux_times)) * 1e3)


def strips(size: int = 224) -> list[Path]:
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, open_mouth, rotate_mesh, shift_irises

    OUT.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, img, mesh in _portraits(size):
        r = WarpRenderer(img, mesh)
        cases = [("yaw-20", rotate_mesh(mesh, yaw=-20)), ("yaw-10", rotate_mesh(mesh, yaw=-10)), ("src", mesh),
                 ("yaw+10", rotate_mesh(mesh, yaw=10)), ("yaw+20", rotate_mesh(mesh, yaw=20)),
                 ("pitch+15", rotate_mesh(mesh, pitch=15)), ("pitch-15", rotate_mesh(mesh, pitch=-15)),
                 ("blink", close_eyes(mesh, 1.0)), ("half-blink", close_eyes(mesh, 0.6)),
                 ("gaze-left", shift_irises(mesh, -0.14)), ("gaze-right", shift_irises(mesh, 0.14)),
                 ("mouth.05", open_mouth(mesh, 0.05)), ("mouth.10", open_mouth(mesh, 0.10)),
                 ("mouth.15", open_mouth(mesh, 0.15)),
                 ("yaw20+mouth", rotate_mesh(open_mouth(mesh, 0.1), yaw=20, pitch=-8))]
        tiles = []
        for label, target in cases:
            frame = r.render(target).copy()
            cv2.putText(frame, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
            tiles.append(frame)
        rows = [np.concatenate(tiles[i:i + 5], 1) for i in range(0, len(tiles), 5)]
        path = OUT / f"warp_{name}.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
        paths.append(path)
        # close-ups (3x): eyes open / shut / half / gaze left / right, then mouth closed / 0.05 / 0.10 / 0.15
        def zoom(target, box):
            x0, y0, x1, y1 = box
            return cv2.resize(r.render(target)[y0:y1, x0:x1], None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)

        y0 = int(mesh[[159, 386], 1].min() - 14)
        eyes_box = (int(mesh[[33, 263], 0].min() - 12), y0, int(mesh[[33, 263], 0].max() + 12), y0 + 30)
        my0 = int(mesh[0, 1] - 6)
        mouth_box = (int(mesh[61, 0] - 10), my0, int(mesh[291, 0] + 10), my0 + int(mesh[17, 1] - mesh[0, 1] + 40))
        eye_targets = (mesh, close_eyes(mesh, 1.0), close_eyes(mesh, 0.6), shift_irises(mesh, -0.14),
                       shift_irises(mesh, 0.14))
        mouth_targets = (mesh, open_mouth(mesh, 0.05), open_mouth(mesh, 0.1), open_mouth(mesh, 0.15))
        eyes = np.concatenate([zoom(t, eyes_box) for t in eye_targets], 1)
        mouths = np.concatenate([zoom(t, mouth_box) for t in mouth_targets], 1)
        w = max(eyes.shape[1], mouths.shape[1])
        pad = lambda a: np.pad(a, ((0, 0), (0, w - a.shape[1]), (0, 0)))  # noqa: E731
        path = OUT / f"warp_{name}_closeup.png"
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate([pad(eyes), pad(mouths)], 0), cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def measure(size: int = 224) -> None:
    """What mediapipe reads back from renders of simple edits (the test figures), per portrait."""
    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, open_mouth, rotate_mesh, shift_irises
    from pdfgc.media.face import FaceMeshDetector

    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        def read(frame):
            faces = det.detect(frame)
            return faces[0] if faces else np.full((478, 3), np.nan)

        for name, img, mesh in _portraits(size):
            r = WarpRenderer(img, mesh)
            base = read(r.render(mesh))
            pose0 = S.head_pose(base)[0]
            row = [f"{name}:"]
            for label, kw in (("yaw+15", dict(yaw=15)), ("yaw-15", dict(yaw=-15)), ("pitch+10", dict(pitch=10)),
                              ("pitch-10", dict(pitch=-10))):
                d = S.head_pose(read(r.render(rotate_mesh(mesh, **kw))))[0] - pose0
                row.append(f"{label} -> yaw {d[0]:+.1f} pitch {d[1]:+.1f} roll {d[2]:+.1f}")
            ear0 = S.eye_aspect_ratio(base)[0]
            ear1 = S.eye_aspect_ratio(read(r.render(close_eyes(mesh, 1.0))))[0]
            row.append(f"EAR open {ear0.round(3).tolist()} closed {ear1.round(3).tolist()} "
                       f"(ratio {(ear1 / ear0).round(2).tolist()})")
            g0 = S.gaze(base)[0][0]
            gl = S.gaze(read(r.render(shift_irises(mesh, -0.12))))[0][0]
            gr = S.gaze(read(r.render(shift_irises(mesh, 0.12))))[0][0]
            row.append(f"gaze x: left {gl:+.3f} / still {g0:+.3f} / right {gr:+.3f}")
            m0 = S.mouth_opening(base)[0]
            parts = []
            for amount in (0.05, 0.10, 0.15):
                t = open_mouth(mesh, amount)
                parts.append(f"{S.mouth_opening(t)[0]:.3f}->{S.mouth_opening(read(r.render(t)))[0]:.3f}")
            row.append(f"mouth opening (target->read) closed {m0:.3f}, " + ", ".join(parts))
            print("\n  ".join(row))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strips", action="store_true", help="also write the PNG strips")
    ap.add_argument("--measure", action="store_true", help="also print what mediapipe reads back from edits")
    ap.add_argument("--reps", type=int, default=40)
    args = ap.parse_args(argv)
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass
    for size in (224, 512):
        res = bench(size, args.reps)
        print(f"{size} px: render {res['cpu_ms']:.2f} ms CPU (p90 {res['cpu_p90_ms']:.2f}; "
              f"wall {res['render_ms']:.2f}), with aux {res['aux_ms']:.2f} ms CPU, "
              f"per-portrait set-up {res['init_ms']:.0f} ms")
    if args.measure:
        measure()
    if args.strips:
        for p in strips():
            print("wrote", p.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
