"""The closed-eye read-back of ``meshwarp_pixels_eval.py --eyes-only --lids skin`` (the sliding lid only, no
baseline column) under settings of ``lids`` / ``eyes`` module globals, one line per setting (issue 19's lid
settings, chosen on the training pairs):

    python benchmarks/lids_sweep.py [--heldout] "lids.SLIDE_X=1,eyes.Y=2" "lids.SLIDE_X=0" ...

An empty string is the code's defaults. Prints MAE, signed error by target/source EAR 0-0.2 / 0.2-0.4 / 0.4-0.6,
and face PSNR; ``--out`` writes them as json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("settings", nargs="*", default=[""])
    ap.add_argument("--data", type=Path, default=REPO.parent / "prepared_corpus")
    ap.add_argument("--heldout", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    import io
    from contextlib import redirect_stdout

    from lids_diag import apply, restore
    from meshwarp_pixels_eval import NEW, evaluate, eye_pairs

    from pdfgc.media.face import FaceMeshDetector

    plan, corpus = eye_pairs(args.data, args.heldout)
    res = {}
    with FaceMeshDetector(static_image_mode=True, max_num_faces=1) as det:
        for st in args.settings:
            saved = apply(st)
            try:
                with redirect_stdout(io.StringIO()):
                    r = evaluate(plan, corpus, {"skin": {**NEW, "lids": "skin"}}, detector=det, closed_only=True)
            finally:
                restore(saved)
            r = r["skin"]
            res[st or "default"] = {
                k: r[k] for k in ("closed_ear_mae", "closed_ear_signed_by_ratio", "face_psnr", "closed_ear_read")
            }
            b = r["closed_ear_signed_by_ratio"]
            print(
                f"{r['closed_ear_mae']:.4f}  {' / '.join(f'{v:+.3f}' for v in b.values())}  "
                f"psnr {r['face_psnr']:.3f}  n {r['closed_ear_read']}  {st or 'default'}",
                flush=True,
            )
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
