"""The eye part's CPU cost alone: ``EyeParts.render`` per frame and ``EyeParts(...)`` once per portrait.

    PYTHONPATH=. python benchmarks/bench_eye_part.py [REPS]

anne.png and its measured mesh; 12 targets with the irises moved (-0.12..0.12 eye widths), some lids half closed
and the head turned -12..12 deg, drawn over that target's own warp; identity maps (the eye part samples through
them either way). Prints the median ``process_time`` per render, the mean, and the median set-up, in ms; then the
whole warp render with the eye white fix (``eyes.SCLERA_FILL``, ``eyes.IRIS_TRIM``) off and on, interleaved render
by render in this one process (``bench_warp.py``'s targets with the irises shifted), so machine load hits both alike.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

cv2.setNumThreads(1)
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("PDFGC_SHARED", ROOT.parent / "shared")) / "data"


def main() -> int:
    from pdfgc.families.meshwarp.eyes import EyeParts
    from pdfgc.families.meshwarp.warp import WarpRenderer, close_eyes, rotate_mesh, shift_irises
    from pdfgc.media.images import load_image_rgb
    from pdfgc.media.mesh import FaceMeshDetector

    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    img = load_image_rgb(DATA / "pdfgc/anne.png")
    mesh = FaceMeshDetector(static_image_mode=True, max_num_faces=1).detect(img)[0].astype(np.float64)
    r = WarpRenderer(img, mesh)
    eyes = r.parts[0]
    targets = [rotate_mesh(shift_irises(close_eyes(mesh, 0.3 * (k % 3)), 0.06 * (k % 5) - 0.12), yaw=-12 + 3 * (k % 9))
               for k in range(12)]
    outs = [r.render(t) for t in targets]
    s = img.shape[0]
    grid = np.arange(s, dtype=np.float32)
    maps = (np.tile(grid, (s, 1)), np.tile(grid[:, None], (1, s)))
    ts = []
    for i in range(reps):
        o = outs[i % 12].copy()
        c = time.process_time()
        eyes.render(targets[i % 12], o, maps)
        ts.append(time.process_time() - c)
    setup = []
    for _ in range(5):
        c = time.process_time()
        EyeParts(img, mesh)
        setup.append(time.process_time() - c)
    print(json.dumps(dict(eye_render_ms=float(np.median(ts)) * 1e3, eye_render_mean_ms=float(np.mean(ts)) * 1e3,
                          init_ms=float(np.median(setup)) * 1e3)))
    from pdfgc.families.meshwarp import eyes as E
    from pdfgc.families.meshwarp.warp import open_mouth

    fill, trim = E.SCLERA_FILL, E.IRIS_TRIM
    E.SCLERA_FILL = False
    r_off = WarpRenderer(img, mesh)
    E.SCLERA_FILL = True
    r_on = WarpRenderer(img, mesh)
    targets = [rotate_mesh(shift_irises(open_mouth(close_eyes(mesh, 0.5 * (k % 3)), 0.04 * (k % 4)),
                                        0.05 * (k % 5) - 0.1), yaw=-15 + 3 * (k % 11), pitch=4 - (k % 5))
               for k in range(12)]
    t_off, t_on = [], []
    for i in range(reps):
        t = targets[i % 12]
        E.IRIS_TRIM = False
        c = time.process_time()
        r_off.render(t)
        t_off.append(time.process_time() - c)
        E.IRIS_TRIM = True
        c = time.process_time()
        r_on.render(t)
        t_on.append(time.process_time() - c)
    E.SCLERA_FILL, E.IRIS_TRIM = fill, trim
    print(json.dumps(dict(warp_fix_off_ms=float(np.median(t_off)) * 1e3, warp_fix_on_ms=float(np.median(t_on)) * 1e3,
                          paired_diff_median_ms=float(np.median(np.array(t_on) - np.array(t_off))) * 1e3)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
