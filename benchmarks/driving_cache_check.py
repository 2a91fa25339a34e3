"""The README's main command's 372 frames with the driving clips' meshes measured (cold cache), read back (warm)
and with the cache off, through the Python API: md5 of every frame handed to the encoder, in each mode. Run it
with another tree's PYTHONPATH (one without the cache) for the base's md5. `prewarm`: an empty cache that the child
process of `pdfgc animate` (`pdfgc.media.prewarm`, since s34) fills while the job waits for it.

    PYTHONPATH=. python benchmarks/driving_cache_check.py [--modes cold,warm,off,prewarm]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared")) / "data" / "pdfgc"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", default="cold,warm,off")
    args = ap.parse_args()
    import numpy as np

    from pdfgc.media import preprocess as pp
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    pipe = TalkingHeadPipeline(load_model(), device="auto", threads=2)
    folder = Path(tempfile.mkdtemp(prefix="pdfgc-cache-check-"))
    os.environ["PDFGC_CACHE"] = str(folder)
    out = {}
    for mode in args.modes.split(","):
        kw = {"cache": False} if mode == "off" else {}
        if mode == "prewarm":
            shutil.rmtree(folder / "driving", ignore_errors=True)
        opt = AnimateOptions(
            pose=str(DATA / "motions/pose/681600002"),
            emotion=str(DATA / "motions/exp/vox2_id01228_00309"),
            eyes=str(DATA / "motions/eye/id01333_00040/images"),
            progress=False,
            **kw,
        )
        t = time.perf_counter()
        if mode == "prewarm":
            from pdfgc.media import prewarm

            os.environ["PDFGC_PREWARM"] = "1"  # whatever the machine's load
            assert prewarm.start(opt, str(DATA / "audio_longer.mp3")) is not None
        plan = pipe.plan(str(DATA / "anne.png"), str(DATA / "audio_longer.mp3"), opt)
        t_plan = time.perf_counter() - t
        if mode == "prewarm":
            prewarm.stop()
        h = hashlib.md5()
        for _, im in pipe.render(plan):
            h.update(np.ascontiguousarray(pp.to_uint8(im)).tobytes())
        codes = hashlib.md5(b"".join(getattr(plan, k).numpy().tobytes() for k in ("mouth", "emotion", "eye", "pose")))
        out[mode] = {
            "frames_md5": h.hexdigest(),
            "codes_md5": codes.hexdigest(),
            "frames": plan.num_frames,
            "plan_s": round(t_plan, 2),
            "entries": len(list(folder.glob("driving/*.npz"))),
        }
        print(mode, out[mode], flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
