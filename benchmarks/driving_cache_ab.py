"""In-process A/B of the driving clips' cache on the README's main command: the job with the cache off
(`cache=False`) against cold (the cache folder emptied before each job), alternating, in one process after one
warm-up job, `TalkingHeadPipeline(threads=2)` as the CLI runs it. Prints [wall s, CPU s, load] per job, then JSON.
With --plan: only the plan (everything before the first frame: the clips, the speech; the portrait's pose
calibration is kept in memory after the first job, as in a long-lived process), off / cold / warm, alternating.

    PYTHONPATH=. python benchmarks/driving_cache_ab.py 5
    PYTHONPATH=. python benchmarks/driving_cache_ab.py 8 --plan
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
D = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared")) / "data" / "pdfgc"


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--plan"]
    only_plan = "--plan" in sys.argv[1:]
    rounds = int(args[0]) if args else 5
    folder = Path(tempfile.mkdtemp(prefix="pdfgc-cache-ab-"))
    os.environ["PDFGC_CACHE"] = str(folder)
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    def ru():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    from pdfgc.options import AnimateOptions

    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=2)
    out = folder / "job.mp4"
    clips = dict(pose=str(D / "motions/pose/681600002"), emotion=str(D / "motions/exp/vox2_id01228_00309"),
                 eyes=str(D / "motions/eye/id01333_00040/images"), progress=False)

    def job(mode):
        if mode == "cold" or (mode == "warm" and not (folder / "driving").is_dir()):
            shutil.rmtree(folder / "driving", ignore_errors=True)
            if mode == "warm":   # fill it first
                pipe.plan(str(D / "anne.png"), str(D / "audio_longer.mp3"), AnimateOptions(**clips))
        t, c = time.perf_counter(), ru()
        if only_plan:
            pipe.plan(str(D / "anne.png"), str(D / "audio_longer.mp3"), AnimateOptions(**clips, cache=mode != "off"))
        else:
            pipe(str(D / "anne.png"), audio=str(D / "audio_longer.mp3"), output=str(out), cache=mode != "off",
                 **clips)
        return [round(time.perf_counter() - t, 3), round(ru() - c, 3), round(os.getloadavg()[0], 2)]

    job("off")
    job("cold")
    modes = ("off", "cold", "warm") if only_plan else ("off", "cold")
    res = {m: [] for m in modes}
    for i in range(rounds):
        for m in modes if i % 2 == 0 else modes[::-1]:
            res[m].append(job(m))
            print(m, res[m][-1], flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
