"""How much of a rigid head rotation of the target mesh the face mesh reads back from the warped frame.

    python benchmarks/meshwarp_rotation_gain.py [portraits...]   # default: four shipped portraits

For each portrait: the warp renderer alone (no codes, no calibration) renders its mesh rotated by yaw +-20,
pitch +-15 and roll +10 degrees; mediapipe measures the frame and `signals.head_pose` gives the change. The ratios
set `pdfgc.families.meshwarp.model.RENDER_ANGLE_GAIN`. Writes benchmarks/results/meshwarp/rotation_gain.json.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
DEFAULT = [DATA / "pdfgc/anne.png", DATA / "corpus/AAAI22-one-shot-talking-face/portraits/samples__imgs__AdamSchiff_0.jpg",
           DATA / "edtalk/uncrop_face.jpg", DATA / "real3dportrait/Macron.png"]
CASES = (("yaw", 20), ("yaw", -20), ("pitch", 15), ("pitch", -15), ("roll", 10))


def main(paths) -> dict:
    torch.set_num_threads(1)
    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp.warp import WarpRenderer, rotate_mesh
    from pdfgc.media.face import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    pipe = TalkingHeadPipeline(load_model(), threads=1)
    det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
    rows, ratios = [], {"yaw": [], "pitch": [], "roll": []}
    for path in paths:
        img = np.ascontiguousarray(pipe.load_portrait(path).crop)
        mesh = det.detect(img)[0]
        r, a0 = WarpRenderer(img, mesh), S.head_pose(mesh[None])[0]
        for axis, v in CASES:
            found = det.detect(r.render(rotate_mesh(mesh, **{axis: v})))
            d = S.head_pose(found[0][None])[0] - a0 if found else np.full(3, np.nan)
            k = ("yaw", "pitch", "roll").index(axis)
            ratios[axis].append(float(d[k] / v))
            rows.append({"portrait": Path(path).name, "axis": axis, "requested": v,
                         "measured": [round(float(x), 2) for x in d]})
            print(f"{Path(path).name:40s} {axis:5s} {v:+4d} -> yaw/pitch/roll {d[0]:+6.1f} {d[1]:+6.1f} {d[2]:+6.1f}")
    summary = {k: {"mean_ratio": float(np.nanmean(v)), "min": float(np.nanmin(v)), "max": float(np.nanmax(v))}
               for k, v in ratios.items()}
    print(json.dumps(summary, indent=1))
    out = ROOT / "benchmarks/results/meshwarp/rotation_gain.json"
    out.write_text(json.dumps({"cases": rows, "summary": summary}, indent=1))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:] or DEFAULT)
