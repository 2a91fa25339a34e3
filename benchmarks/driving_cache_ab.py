"""In-process A/B of the driving clips' cache on the README's main command: the job with the cache off
(`cache=False`) against cold (the cache folder emptied before each job), alternating, in one process after one
warm-up job, `TalkingHeadPipeline(threads=2)` as the CLI runs it. Prints [wall s, CPU s, load] per job, then JSON.

    PYTHONPATH=. python benchmarks/driving_cache_ab.py 5
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
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    folder = Path(tempfile.mkdtemp(prefix="pdfgc-cache-ab-"))
    os.environ["PDFGC_CACHE"] = str(folder)
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    def ru():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=2)
    out = folder / "job.mp4"

    def job(mode):
        if mode == "cold":
            shutil.rmtree(folder / "driving", ignore_errors=True)
        t, c = time.perf_counter(), ru()
        pipe(str(D / "anne.png"), audio=str(D / "audio_longer.mp3"), output=str(out),
             pose=str(D / "motions/pose/681600002"), emotion=str(D / "motions/exp/vox2_id01228_00309"),
             eyes=str(D / "motions/eye/id01333_00040/images"), progress=False, cache=mode != "off")
        return [round(time.perf_counter() - t, 3), round(ru() - c, 3), round(os.getloadavg()[0], 2)]

    job("off")
    res = {"off": [], "cold": []}
    for i in range(rounds):
        for m in ("off", "cold") if i % 2 == 0 else ("cold", "off"):
            res[m].append(job(m))
            print(m, res[m][-1], flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
