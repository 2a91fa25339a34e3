"""Speed of the README's main command ("Two commands": anne.png, audio_longer.mp3, pose + emotion + eye driving clips,
372 frames, 224 px, mp4 with sound), end to end, on this machine.

    python benchmarks/bench_main_command.py                       # 3 runs of this tree
    python benchmarks/bench_main_command.py --base /work/wt-speedbase --runs 5   # alternating with another tree
    python benchmarks/bench_main_command.py --base A --base B --no-stages       # three trees, A B C A B C ...
    python benchmarks/bench_main_command.py --cpu-stages     # the job once, serial, CPU seconds per stage (JSON)
    python benchmarks/bench_main_command.py --cache both --base /work/wt-mcbase --runs 5   # cold, warm, base
    python benchmarks/bench_main_command.py --cpu-stages --cache warm   # the serial stages with the clips kept

The driving clips' kept face meshes (`pdfgc.media.driving_cache`, since s33): every run gets its own
``PDFGC_CACHE``. `--cache cold` (default; the figure the target is measured on): an empty folder before each run;
`warm`: a folder filled by one uncounted run of the same tree first (the creator's second job with the same clips);
`both`: the tree cold and warm as two rows, alternating with the bases (each base runs cold; a tree from before the
cache ignores the folder).

Each run is a SUBPROCESS of `python -m pdfgc.cli animate ...` (the README's command) with PYTHONPATH set to the tree
under test, so it pays the start-up (imports) as a user does. Two figures per run:
  - wall_s: the subprocess's wall time, start-up included (fps_wall = 372 / wall_s);
  - job_s: what `pdfgc animate` prints ("in N s (F frames/s)": model load + the job, imports excluded), the
    figure the README has quoted since 2026-12-01. Since s30's second round the model load includes importing the
    model's family (the parser no longer imports it: ~0.3 s moved from start-up into job_s), so compare wall_s
    across that change, not job_s or wall_s - job_s.
and cpu_s, the subprocess's CPU seconds (user + system; on a shared machine the steadier figure of work done).
With --stages (default on), one more run per tree goes through this script's `--worker` mode in a subprocess: the
same job through the Python API (TalkingHeadPipeline, as the CLI builds it), with the main stages' wall seconds
(stages that run on threads overlap, so they may add up to more than the job).
The machine is shared: runs of the trees alternate (A B A B ...), the medians and the load average before each run are
reported. The last line printed is JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared")) / "data"


def main_command(out: Path) -> list[str]:
    d = DATA / "pdfgc"
    return ["--portrait", str(d / "anne.png"), "--audio", str(d / "audio_longer.mp3"),
            "--pose", str(d / "motions/pose/681600002"), "--emotion", str(d / "motions/exp/vox2_id01228_00309"),
            "--eyes", str(d / "motions/eye/id01333_00040/images"), "-o", str(out)]


def _commit(tree: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):   # an exported copy: its `.commit` file
        marker = tree / ".commit"
        return marker.read_text().strip() if marker.is_file() else "unknown"


def _env(tree: Path, cache: Path | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(tree)
    if cache is not None:
        env["PDFGC_CACHE"] = str(cache)
    return env


def _cache_for(mode: str, folder: Path) -> Path:
    """The PDFGC_CACHE of one run: emptied for a cold run, left as it is (filled) for a warm one."""
    if mode == "cold":
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_cli(tree: Path, out: Path, cache: Path | None = None) -> dict:
    load = os.getloadavg()[0]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # not --quiet: the "wrote ... in N s" line is what is read (the progress bar goes to the same captured pipe)
    p = subprocess.run([sys.executable, "-m", "pdfgc.cli", "animate", *main_command(out)],
                       env=_env(tree, cache), capture_output=True, text=True, cwd=str(tree))
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if p.returncode != 0:
        raise SystemExit(f"{tree}: animate failed ({p.returncode}):\n{p.stderr[-2000:]}")
    m = re.search(r"\((\d+) frames,.* in ([\d.]+) s \(([\d.]+) frames/s\)", p.stderr)
    frames, job = int(m.group(1)), float(m.group(2))
    return {"wall_s": round(wall, 3), "fps_wall": round(frames / wall, 2), "cpu_s": round(cpu, 2), "job_s": job,
            "fps_job": float(m.group(3)), "frames": frames, "load1": round(load, 2)}


# ---- worker: the same job through the API, stage by stage --------------------------------------------------------
def time_pipeline_stages(timed) -> None:
    """The pipeline's own stages, wrapped by a worker's ``timed(owner, name, key)`` (both workers time these)."""
    from pdfgc import pipeline as P
    from pdfgc.media import video as V
    timed(P.TalkingHeadPipeline, "load_portrait")
    timed(P.TalkingHeadPipeline, "load_speech")
    timed(P, "open_driving")
    timed(P.FrameComposer, "__call__", "compose")
    timed(V.VideoWriter, "write_batch", "encode_mp4")
    timed(V.VideoWriter, "__exit__", "encode_mp4_close")


def worker(out: Path) -> None:
    t_start = time.perf_counter()
    stages: dict[str, float] = {}
    spans: list = []   # (stage, start s, end s, cpu s of the process at the end) from the worker's start

    def timed(owner, name, key=None):
        fn = getattr(owner, name, None)
        if fn is None:
            return

        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                k = key or name
                t1 = time.perf_counter()
                stages[k] = stages.get(k, 0.0) + t1 - t
                spans.append((k, round(t - t_start, 3), round(t1 - t_start, 3), round(time.process_time(), 3)))
        setattr(owner, name, wrapper)

    d = DATA / "pdfgc"
    sources = dict(pose=str(d / "motions/pose/681600002"), emotion=str(d / "motions/exp/vox2_id01228_00309"),
                   eyes=str(d / "motions/eye/id01333_00040/images"))
    try:   # as `pdfgc animate` does (since s34): the clips' meshes in a child process while the imports run
        from pdfgc.media import prewarm
        from pdfgc.options import AnimateOptions
        prewarm.start(AnimateOptions(**sources, progress=False), str(d / "audio_longer.mp3"))
        timed(prewarm, "wait_for", "wait_prewarm")
    except ImportError:   # a tree from before it
        prewarm = None
    import pdfgc.pipeline as P
    from pdfgc.families.meshwarp import model as M
    from pdfgc.weights import load_model
    t_import = time.perf_counter() - t_start
    fam = M.MeshWarpFamily
    for name in ("encode_portrait", "encode_clip", "encode_speech", "calibrate_pose", "_expression_leak", "render"):
        timed(fam, name)
    time_pipeline_stages(timed)
    from pdfgc.cli import main as _  # noqa: F401 (the CLI's own imports, as the command pays them)
    t_import = time.perf_counter() - t_start
    t0 = time.perf_counter()
    pipe = P.TalkingHeadPipeline(load_model(), device="auto")
    stages["load_model"] = time.perf_counter() - t0
    pipe(str(d / "anne.png"), audio=str(d / "audio_longer.mp3"), output=str(out), **sources, progress=False)
    job = time.perf_counter() - t0
    if prewarm is not None:
        prewarm.stop()
    print(json.dumps({"import_s": round(t_import, 3), "job_s": round(job, 3),
                      "cpu_s": round(time.process_time(), 3),
                      "stages_s": {k: round(v, 3) for k, v in sorted(stages.items())},
                      "timeline": _merge_spans(spans)}))


def cpu_worker(out: Path) -> None:
    """The job SERIAL (threads 1, speech on the job's thread), each stage's CPU seconds (process user + system,
    mediapipe's and torch's own threads included) measured around it; nested stages are excluded from their parent.
    On a shared machine these are steadier than wall seconds."""
    ru = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_SELF))
    c_start = ru()
    cpu: dict[str, float] = {}
    stack: list = []

    def timed(owner, name, key=None):
        fn = getattr(owner, name, None)
        if fn is None:
            return

        def wrapper(*a, **kw):
            stack.append(0.0)
            c = ru()
            try:
                return fn(*a, **kw)
            finally:
                spent = ru() - c
                inner = stack.pop()
                k = key or name
                cpu[k] = cpu.get(k, 0.0) + spent - inner
                if stack:
                    stack[-1] += spent
        setattr(owner, name, wrapper)

    import pdfgc.pipeline as P
    from pdfgc.cli import main as _  # noqa: F401
    from pdfgc.families.meshwarp import lips as L
    from pdfgc.families.meshwarp import model as M
    from pdfgc.families.meshwarp import speech as S
    from pdfgc.weights import load_model
    cpu["imports"] = ru() - c_start
    fam = M.MeshWarpFamily
    fam.speech_beside_faces = False
    for name in ("encode_portrait", "encode_clip", "calibrate_pose", "_expression_leak", "render"):
        timed(fam, name)
    timed(S, "model_bytes", "speech: weights read + hash")
    timed(S, "model_buffer", "speech: weights read + hash")
    timed(S, "load_encoder", "speech: weights parse + build")
    timed(L.SpeechToMouth, "raw_codes", "speech: encoder + head")
    timed(L, "voice_activity", "speech: silero-vad")
    timed(fam, "encode_speech", "speech: other")
    time_pipeline_stages(timed)
    c0 = ru()
    pipe = P.TalkingHeadPipeline(load_model(), device="auto", threads=1)
    cpu["load_model"] = ru() - c0
    d = DATA / "pdfgc"
    c0 = ru()
    pipe(str(d / "anne.png"), audio=str(d / "audio_longer.mp3"), output=str(out),
         pose=str(d / "motions/pose/681600002"), emotion=str(d / "motions/exp/vox2_id01228_00309"),
         eyes=str(d / "motions/eye/id01333_00040/images"), progress=False)
    job = ru() - c0
    cpu["job: rest"] = job - sum(v for k, v in cpu.items() if k not in ("imports", "load_model"))
    print(json.dumps({"cpu_total_s": round(ru() - c_start, 3), "cpu_job_s": round(job, 3),
                      "cpu_s": {k: round(v, 3) for k, v in cpu.items()}}))


def _merge_spans(spans: list) -> list:
    """[stage, first start, last end, calls, process CPU s at the last end] per stage, by first start (the render
    loop's batches, on several threads, are one row)."""
    rows: dict = {}
    for k, a, b, cpu in spans:
        r = rows.setdefault(k, [k, a, b, 0, cpu])
        r[1], r[2], r[3] = min(r[1], a), max(r[2], b), r[3] + 1
        if b >= r[2]:
            r[4] = cpu
    return sorted(rows.values(), key=lambda r: r[1])


def run_stages(tree: Path, out: Path, cache: Path | None = None) -> dict:
    load = os.getloadavg()[0]
    p = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", "--out", str(out)],
                       env=_env(tree, cache), capture_output=True, text=True, cwd=str(tree))
    if p.returncode != 0:
        raise SystemExit(f"{tree}: worker failed ({p.returncode}):\n{p.stderr[-2000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["load1"] = round(load, 2)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="CLI runs per tree (alternating)")
    ap.add_argument("--tree", default=str(REPO), help="the tree under test (default: this one)")
    ap.add_argument("--base", action="append", default=[],
                    help="another tree, run alternately (e.g. a worktree of the base commit); may be repeated")
    ap.add_argument("--no-stages", action="store_true", help="skip the per-stage run")
    ap.add_argument("--out", default="/tmp/pdfgc_bench_main", help="folder for the mp4s (or the worker's mp4)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cpu-stages", action="store_true",
                    help="instead of the runs: the job once, serial, in this process, with each stage's CPU seconds")
    ap.add_argument("--cache", choices=("cold", "warm", "both"), default="cold",
                    help="the driving clips' kept meshes: cold (an empty PDFGC_CACHE before each run, default), "
                         "warm (filled by one uncounted run first), both (the tree twice: cold and warm)")
    args = ap.parse_args()
    if args.cpu_stages:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        if args.cache == "both":
            raise SystemExit("--cpu-stages: --cache cold or warm")
        if not args.worker:   # this process is the measured one: its cache is set before the job imports pdfgc
            folder = _cache_for(args.cache, out / f"cache_cpu_{args.cache}")
            os.environ["PDFGC_CACHE"] = str(folder)
            if args.cache == "warm":   # the filling job, in a subprocess of the same tree
                subprocess.run([sys.executable, str(Path(__file__).resolve()), "--cpu-stages", "--worker",
                                "--out", str(out)], env=dict(os.environ), check=True, capture_output=True)
        cpu_worker(out / "cpu_stages.mp4")
        return
    if args.worker:
        worker(Path(args.out))
        return
    outdir = Path(args.out)
    outdir.mkdir(parents=True, exist_ok=True)
    tree = Path(args.tree).resolve()
    modes = ("cold", "warm") if args.cache == "both" else (args.cache,)
    trees = {("tree" if len(modes) == 1 else f"tree {m}"): (tree, m) for m in modes}
    for i, base in enumerate(args.base):
        trees["base" if i == 0 else f"base{i + 1}"] = (Path(base).resolve(), "cold")
    caches = {k: outdir / f"cache_{i}" for i, k in enumerate(trees)}
    for k, (p, mode) in trees.items():
        if mode == "warm":   # the first job with these clips: fills the folder, not counted
            run_cli(p, outdir / "fill.mp4", _cache_for("cold", caches[k]))
    res = {k: {"path": str(p), "commit": _commit(p), "cache": mode, "runs": []} for k, (p, mode) in trees.items()}
    for i in range(args.runs):
        for k, (p, mode) in trees.items():
            r = run_cli(p, outdir / f"{k.replace(' ', '_')}.mp4", _cache_for(mode, caches[k]))
            res[k]["runs"].append(r)
            print(f"run {i + 1} {k} ({res[k]['commit']}): wall {r['wall_s']:.2f} s ({r['fps_wall']:.1f} frames/s), "
                  f"job {r['job_s']:.1f} s ({r['fps_job']:.1f} frames/s), cpu {r['cpu_s']:.1f} s, load {r['load1']}",
                  flush=True)
    if not args.no_stages:
        for k, (p, mode) in trees.items():
            r = run_stages(p, outdir / f"{k.replace(' ', '_')}_stages.mp4", _cache_for(mode, caches[k]))
            res[k]["stages"] = r
            print(f"stages {k}: import {r['import_s']:.2f} s, job {r['job_s']:.2f} s, {r['stages_s']} "
                  f"(load {r['load1']})", flush=True)
    for k, v in res.items():
        runs = v["runs"]
        v["median"] = {f: round(statistics.median(r[f] for r in runs), 3)
                       for f in ("wall_s", "fps_wall", "cpu_s", "job_s", "fps_job", "load1")}
    summary = {"command": "pdfgc animate (README 'Two commands'), subprocess",
               "frames": next(iter(res.values()))["runs"][0]["frames"],
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **res}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
