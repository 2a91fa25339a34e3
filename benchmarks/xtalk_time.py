"""Issue 23 (xtalk_s33.md): CPU seconds of one portrait's pose calibration (``MeshWarpFamily.calibrate_pose``), as
shipped and with calibration constants patched, alternated A / B on the same portraits (the machine is shared: the
medians of the per-portrait differences).

    PYTHONPATH=. python benchmarks/xtalk_time.py '{"again": 1.0}' '{"zero_views": 4}' [--rounds 3]

Each JSON is a variant as ``xtalk_variant.py`` takes it ("{}": as shipped). Portraits: the shipped ones, each at
the pipeline's own framing.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
# the calibration constants a variant's JSON may set besides "probes" / "refine": key -> calibration.py's name
KNOBS = (("again", "REFINE_AGAIN"), ("again_cross", "REFINE_AGAIN_CROSS"), ("zero_views", "ZERO_VIEWS"),
         ("readings", "READINGS"), ("read_more", "READ_MORE"), ("reach", "REFINE_AGAIN_REACH"))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from meshwarp_controls import SHIPPED

    from pdfgc.families.meshwarp import calibration as CAL
    from pdfgc.media.images import load_image_rgb
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    shipped = {k: getattr(CAL, k) for k in ("PROBES", "REFINE", *(n for _, n in KNOBS))}

    def patch(v: dict) -> None:
        for k, val in shipped.items():
            setattr(CAL, k, val)
        for key, name in (("probes", "PROBES"), ("refine", "REFINE")):
            if key in v:
                setattr(CAL, name, {**shipped[name], **{int(a): tuple(map(float, x)) for a, x in v[key].items()}})
        for key, name in KNOBS:
            if key in v:
                setattr(CAL, name, type(shipped[name])(v[key]))
        CAL.refine.__defaults__ = (CAL.REFINE,)
        for f in (CAL.read_all, CAL.read_angles):
            f.__defaults__ = (CAL.READINGS,)

    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    fam = pipe.family
    states = [fam.encode_portrait(pipe.load_portrait(load_image_rgb(p)), None)[0] for p in SHIPPED]
    variants = [json.loads(v) for v in args.variants]
    t = np.zeros((args.rounds, len(variants), len(states)))
    for k in range(args.rounds):
        for i, st in enumerate(states):
            for j, v in enumerate(variants if k % 2 == 0 else variants[::-1]):
                jj = j if k % 2 == 0 else len(variants) - 1 - j
                patch(v)
                t0 = time.process_time()
                fam.calibrate_pose(st)
                t[k, jj, i] = time.process_time() - t0
    patch({})
    med = np.median(t, 0)   # (variants, portraits)
    out = {"variants": args.variants, "portraits": len(states), "rounds": args.rounds,
           "median_cpu_s": np.median(med, 1).round(3).tolist(),
           "median_extra_vs_first_s": [float(np.median(med[j] - med[0]).round(3)) for j in range(len(variants))],
           "max_extra_vs_first_s": [float((med[j] - med[0]).max().round(3)) for j in range(len(variants))],
           "extra_per_portrait_s": [(med[j] - med[0]).round(3).tolist() for j in range(len(variants))],
           "portrait_names": [Path(p).name for p in SHIPPED]}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
