"""The per-eye EAR table of benchmarks/results/meshwarp/closing_s31.md: the follow benchmark's renders
(``meshwarp_controls.follow``: the pose, eye and expression videos, the same tracking meter, 8 s) with
``eyes.SLIT_SHADE`` at each value given; the EAR read back per eye against the driving clip's own per eye, beside
the benchmark's EAR r (both eyes' mean against both eyes' mean).

    PYTHONPATH=. python benchmarks/meshwarp_eye_follow_per_eye.py 0.0 0.7   # ~3 min on one core
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> int:
    import meshwarp_controls as mc
    from meshwarp_targets import EXP_VIDEO, EYE_VIDEO, POSE_VIDEO, Meter, source_signals

    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp import eyes
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    class Track(Meter):
        def __init__(self):
            self.det = FaceMeshDetector(static_image_mode=False, max_num_faces=1)

    torch.set_num_threads(1)
    mc._patch_calibration_switch()
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    se = S.eye_aspect_ratio(source_signals(Track(), EYE_VIDEO, 200))
    out = {"driving": se.tolist()}
    for p in mc.FOLLOW_PORTRAITS:
        for shade in map(float, sys.argv[1:]):
            eyes.SLIT_SHADE = shade
            fr = mc.render(pipe, pipe.load_portrait(p), duration=8.0, pose=str(POSE_VIDEO), eyes=str(EYE_VIDEO),
                           emotion=str(EXP_VIDEO))
            ge = S.eye_aspect_ratio(Track().meshes(fr))
            out[f"{Path(p).name}|{shade}"] = ge.tolist()
            print(Path(p).name, shade, "mean-eye r %.4f" % S.pearson(ge.mean(1), se.mean(1)),
                  "per-eye r", [round(S.pearson(ge[:, e], se[:, e]), 4) for e in range(2)],
                  "per-eye MAE", np.round(np.abs(ge - se).mean(0), 4).tolist(), flush=True)
    Path("outputs").mkdir(exist_ok=True)
    json.dump(out, open("outputs/closing_s31_per_eye.json", "w"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
