"""Where a driving eye's opening goes on its way to the target mesh (issues 19/23; results/meshwarp/eyeask_s32.md).

    PYTHONPATH=. python benchmarks/eyes_chain.py [--portrait PATH] [--frames 78:101:2,176:200:2]

The follow benchmark's inputs (meshwarp_controls.py --follow-only: the pose, eye and expression clips, 8 s): per
frame and eye, the driving clip's image EAR and frontal EAR (on the rigidly fitted canonical mesh, as the model
measures it), the frontal EAR over the clip's reference frame (``codes.neutral_reference``), the plan's lid factor,
the expression's lid factor, the lid code asked of the portrait, the target mesh's frontal and image EAR; then the
clip's head yaw and its eye height / width over the face scale (image and frontal), which show whether an image
EAR change is the lids or the head turn's foreshortening. Prints only.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--portrait", default=None)
    ap.add_argument("--frames", default="78:101:2,176:200:2")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from meshwarp_controls import DATA
    from meshwarp_targets import EXP_VIDEO, EYE_VIDEO, POSE_VIDEO, Meter, source_signals

    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp import codes as C
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import TalkingHeadPipeline

    class Track(Meter):
        def __init__(self):
            self.det = FaceMeshDetector(static_image_mode=False, max_num_faces=1)

    n = 200
    src = source_signals(Track(), EYE_VIDEO, n)
    pipe = TalkingHeadPipeline.from_default(threads=1)
    port = pipe.load_portrait(args.portrait or str(DATA / "pdfgc/anne.png"))
    plan = pipe.plan(port, None, AnimateOptions(progress=False, duration=n / 25, pose=str(POSE_VIDEO),
                                                eyes=str(EYE_VIDEO), emotion=str(EXP_VIDEO)))
    fam, st = pipe.family, plan.appearance
    params = fam.params
    canon, rot, scale, _ = C.canonicalize(src)
    ear_img, ear_can = S.eye_aspect_ratio(src), S.eye_aspect_ratio(canon)
    ref = C.neutral_reference(src, "auto")
    eye, emo = plan.eye.double().numpy(), plan.emotion.double().numpy()
    de, dm = params.emotion_dim, params.mouth_dim
    emo_lid = 1 + emo[:, de + dm:de + dm + 2]
    asked = st.codes.eye[0, :2].astype(np.float64) * np.maximum(1 + eye[:, :2], 0) * np.maximum(emo_lid, 0)
    tm = fam.target_meshes(plan, slice(None))
    ear_t, ear_tc = S.eye_aspect_ratio(tm), S.eye_aspect_ratio(C.canonicalize(tm)[0])
    yaw = S.rotation_to_angles(rot)[:, 0]

    def height_width(m):
        p = S._landmarks(m)[..., :2][:, S.EAR_POINTS]
        h = (np.linalg.norm(p[:, :, 1] - p[:, :, 5], axis=-1) + np.linalg.norm(p[:, :, 2] - p[:, :, 4], axis=-1)) / 2
        return h, np.linalg.norm(p[:, :, 0] - p[:, :, 3], axis=-1)

    hi, wi = height_width(src)
    hc, wc = height_width(canon)
    s = np.asarray(scale, np.float64).reshape(-1)
    r2 = lambda a: np.round(a, 3)  # noqa: E731
    print(f"portrait lid code {r2(st.codes.eye[0, :2])}, image EAR {r2(S.eye_aspect_ratio(st.mesh[None])[0])}; "
          f"driver reference frame {ref}: image EAR {r2(ear_img[ref])}, frontal {r2(ear_can[ref])}")
    print("frame | driver image EAR | frontal | frontal / ref | plan lid factor | expression lid | asked lid code | "
          "target frontal EAR | target image EAR | driver yaw | driver eye h/scale image, frontal | w/scale image, "
          "frontal")
    frames = [f for part in args.frames.split(",") for f in range(*map(int, part.split(":")))]
    for f in [ref] + frames:
        print(f, r2(ear_img[f]), r2(ear_can[f]), r2(ear_can[f] / ear_can[ref]), r2(1 + eye[f, :2]), r2(emo_lid[f]),
              r2(asked[f]), r2(ear_tc[f]), r2(ear_t[f]), np.round(yaw[f], 1), r2(hi[f] / s[f]), r2(hc[f]),
              r2(wi[f] / s[f]), r2(wc[f]))
    cor = lambda a, b: float(np.corrcoef(a, b)[0, 1])  # noqa: E731
    print("per eye r, target image EAR vs driver image EAR:",
          [round(cor(ear_t[:, k], ear_img[:, k]), 3) for k in (0, 1)],
          "vs driver frontal EAR:", [round(cor(ear_t[:, k], ear_can[:, k]), 3) for k in (0, 1)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
