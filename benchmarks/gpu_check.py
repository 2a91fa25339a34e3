"""The GPU check: one command that exercises every CUDA path of the project and writes a table of figures.

    python benchmarks/gpu_check.py --out gpu_check                    # on a GPU machine: everything, < 9 min
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gc  # the same parts on a CPU, small (the test)

On a borrowed machine that sends back one folder, write the tables into it and the large files elsewhere
(`--out $OUT/gpu_check --work /tmp/gpu_check_work`); the run stays inside `--budget` (540 s), so it fits one
10-minute command with start-up to spare.

Parts, in this order; each runs in its own process under its own timeout (a crash, a CUDA error, an out-of-memory
or a hang in one part is recorded and the next part runs; whatever a part measured before it died is kept):

  env             torch / CUDA / cuDNN / NCCL versions, GPU model and memory, bf16 and TF32 settings, how many
                  BatchNorm layers `pdfgc train --sync-bn` converts
  equivalence     the official fixture (../shared/reference/official_fixture) through the pipeline on the device in
                  exact precision: max |difference| per recorded array vs expected.npz (tolerance 1e-4, uint8 1
                  level), on a GPU once as torch defaults run it (cuDNN convolutions may use TF32) and once with
                  TF32 off; then fast precision in fp16 and in bf16: PSNR of the frames against exact (whole
                  pipeline on a GPU; on a CPU bf16 on the generator only, fp16 skipped: emulated there)
  speed           the official architecture (seeded weights), the package's default model and the shipped lite
                  model: end-to-end frames/s of the real `animate` path (anne.png + N s of speech -> mp4 with
                  sound; on a GPU the second of two calls, the first given too), exact and fast; generator-only
                  frames/s at several batch sizes, default and channels-last memory format; peak GPU memory
  data            a small prepared corpus: --data, else `pdfgc prepare` on 3 short shipped clips, cached in WORK
                  (started in the background at once: it runs on the CPU while the first parts use the GPU)
  train           `pdfgc train` for each stage of PD-FGC (appearance, lips, pose_eye, emotion; official config,
                  tiny with --quick), each from the previous one's model, bf16 autocast: steps/s, peak memory,
                  losses finite, checkpoint written; then the last stage resumed for 2 more steps
  train_ddp       stage 1 under `torchrun --nproc_per_node 2` (NCCL on a GPU, gloo on a CPU), SyncBatchNorm as
                  `pdfgc train` decides it (on under DDP on GPUs); on failure, the line that says why
  nccl_same_gpu   GPU only: can two NCCL ranks share the one GPU (all_reduce with both on cuda:0)? If not, why
  train_meshwarp  the default family's own training (MESHWARP_TRAIN below: one line to adjust); skipped as "not
                  available" when that module does not exist
  cpu_reference   GPU runs only: the speed part's exact jobs on this machine's CPU, all cores; a "ratio" row per
                  job measured both ways (GPU frames/s / CPU frames/s)
  compile         torch.compile of the generator (its official-order forward: one graph, no breaks) against eager:
                  compile time, frames/s, max |difference|, default and channels-last

Output: a table on stdout, OUT/gpu_check.json (every figure, machine-readable) and OUT/gpu_check.md (the table),
rewritten after every part; OUT/logs/<part>.log holds each part's full output. `--parts a,b` runs only those;
`--budget S` bounds the whole run (default 540 s, so it fits one 10-minute command); parts that no longer fit are
recorded as skipped. Exit status 0 when no part failed or timed out, else 1. The GPU machine needs the repository
and ../shared/ only (and a CUDA build of torch): no internet, no prepared data.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import datetime
import importlib.util
import io
import json
import math
import os
import platform
import re
import resource
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared"))
DATA = SHARED / "data"
FIXTURE = SHARED / "reference" / "official_fixture"
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))

# the default family's training; a part that is skipped as "not available" while the module does not exist.
# One line to adjust once its command line is settled (placeholders: {data}, {out}, {device}, {steps}):
# (the geometry fit and the Whisper lips head are closed-form fits: no steps; {steps} stays for another family)
MESHWARP_TRAIN = ("pdfgc.families.meshwarp.train", ["--data", "{data}", "--out", "{out}", "--threads", "{threads}"])

# name: (timeout s on a GPU, timeout s with --quick, runs only with CUDA); run in this order, the least predictable
# (compile: inductor's first compile of a large graph) last
PARTS = {
    "env": (60, 60, False),
    "equivalence": (150, 300, False),
    "speed": (150, 240, False),
    "data": (180, 240, False),
    "train": (180, 300, False),
    "train_ddp": (90, 180, False),
    "nccl_same_gpu": (45, 45, True),
    "train_meshwarp": (90, 120, False),
    "cpu_reference": (120, 60, True),
    "compile": (150, 180, False),
}
NEEDS_DATA = ("train", "train_ddp", "train_meshwarp")
STATUSES = ("ok", "failed", "timeout", "skipped")


# ------------------------------------------------------------------------------------------------ shared helpers

class Skip(Exception):
    """A part (or an item) that cannot run here; the message is the reason."""


class Recorder:
    """A part's rows, rewritten to OUT/parts/<part>.json after each one (a part killed by its timeout keeps them)."""

    def __init__(self, path: Path):
        self.path, self.rows, self.meta, self.t0 = path, [], {}, time.perf_counter()
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def add(self, item: str, value: str, status: str = "ok", **data) -> None:
        self.rows.append({"item": item, "value": value, "status": status, "data": _plain(data)})
        print(f"  {item}: {value}" + ("" if status == "ok" else f" [{status}]"), flush=True)
        self.save()

    def attempt(self, item: str, fn) -> object:
        """Run fn(); a failure becomes a 'fail' row (the part goes on), Skip a 'skip' row."""
        try:
            return fn()
        except Skip as e:
            self.add(item, str(e), "skip")
        except Exception as e:  # a failing item is a result of the check, not the end of the part
            traceback.print_exc()
            self.add(item, _one_line(e), "fail")
        return None

    def save(self, done: bool = False, skipped: str | None = None) -> None:
        obj = {"rows": self.rows, "meta": _plain(self.meta), "done": done, "skipped": skipped,
               "elapsed": time.perf_counter() - self.t0}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj, indent=1))
        os.replace(tmp, self.path)


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text}"[:300]


def _device(name: str):
    import torch
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _sync(dev) -> None:
    import torch
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


class PeakMemory:
    """Peak GPU memory allocated by torch since reset(); on a CPU the process's peak RSS (it only grows)."""

    def __init__(self, dev):
        self.dev = dev

    def reset(self) -> None:
        import torch
        if self.dev.type == "cuda":
            torch.cuda.synchronize(self.dev)
            torch.cuda.reset_peak_memory_stats(self.dev)

    def mb(self) -> float:
        import torch
        if self.dev.type == "cuda":
            return torch.cuda.max_memory_allocated(self.dev) / 2 ** 20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    @property
    def label(self) -> str:
        return "peak GPU memory" if self.dev.type == "cuda" else "peak RSS"


def _psnr(a, b) -> float:
    """PSNR in dB of frames in [-1,1] (as [0,1] images)."""
    import numpy as np
    mse = float(np.mean(((np.asarray(a, np.float64) - np.asarray(b, np.float64)) / 2) ** 2))
    return 10 * math.log10(1 / max(mse, 1e-20))


def _speech(seconds: float, tmp: Path) -> Path:
    """The first `seconds` of the shipped speech as a wav (bench_lite's job audio)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_lite import make_audio
    path = tmp / f"speech_{seconds:g}s.wav"
    if not path.exists():
        make_audio(seconds, path)
    return path


def _force_fast_dtype(dtype) -> None:
    """Make `--precision fast` use `dtype` (the pipeline picks bf16 where supported, else fp16): the check measures
    both. Only this benchmark process is affected."""
    from pdfgc import runtime

    def autocast_dtype(self):
        return None if self.name == "exact" else dtype
    runtime.Precision.autocast_dtype = property(autocast_dtype)


# ------------------------------------------------------------------------------------------------ parts

def part_env(rec: Recorder, a) -> None:
    import torch
    dev = _device(a.device)
    rec.add("torch", f"{torch.__version__} (CUDA build {torch.version.cuda or 'none'})")
    rec.add("python / host", f"{platform.python_version()} on {platform.node()}, {os.cpu_count()} CPU cores")
    if not torch.cuda.is_available():
        rec.add("GPU", "no CUDA device: GPU-only items are skipped; --device cpu runs the rest on the CPU",
                "skip" if a.device == "cuda" else "ok")
    else:
        def gpu():
            p = torch.cuda.get_device_properties(0)
            rec.meta["gpu"] = p.name
            rec.add("GPU", f"{p.name}, {p.total_memory / 2 ** 30:.0f} GiB, compute capability {p.major}.{p.minor}, "
                           f"{torch.cuda.device_count()} device(s)", gpu=p.name, memory_gib=p.total_memory / 2 ** 30)
        rec.attempt("GPU", gpu)

        def libs():
            nccl = torch.cuda.nccl.version() if torch.distributed.is_nccl_available() else "not available"
            nccl = ".".join(map(str, nccl)) if isinstance(nccl, tuple) else str(nccl)
            rec.add("cuDNN / NCCL", f"{torch.backends.cudnn.version()} / {nccl}")
        rec.attempt("cuDNN / NCCL", libs)
        rec.attempt("bf16 / TF32 defaults", lambda: rec.add(
            "bf16 / TF32 defaults", f"bf16 supported {torch.cuda.is_bf16_supported()}; cuDNN TF32 "
            f"{torch.backends.cudnn.allow_tf32}, matmul TF32 {torch.backends.cuda.matmul.allow_tf32}"))
    # what the other parts need (a GPU machine's environment is set up by hand: a missing package explains a failure)
    from importlib.metadata import PackageNotFoundError, version
    found, missing = [], []
    for pkg in ("numpy", "av", "safetensors", "accelerate", "opencv-python-headless|opencv-python", "mediapipe",
                "scipy") + (("triton",) if torch.cuda.is_available() else ()):  # triton: torch.compile on a GPU
        for name in pkg.split("|"):
            try:
                found.append(f"{name} {version(name)}")
                break
            except PackageNotFoundError:
                continue
        else:
            missing.append(pkg.split("|")[0])
    rec.add("packages", ", ".join(found) + (f"; MISSING: {', '.join(missing)}" if missing else ""),
            "fail" if missing else "ok")
    from pdfgc.families.pdfgc.configs import get_config
    from pdfgc.families.pdfgc.model import PDFGC
    from pdfgc.families.pdfgc.training.trainer import to_sync_batchnorm
    n = to_sync_batchnorm(PDFGC(get_config("tiny" if a.quick else "official")))
    rec.add("SyncBatchNorm conversion", f"{n} BatchNorm layers of the PD-FGC networks convert "
                                        "(`pdfgc train --sync-bn`, default on under DDP on GPUs)", layers=n)
    rec.add("device of this run", str(dev))


def part_equivalence(rec: Recorder, a) -> None:
    import numpy as np
    import torch

    from pdfgc.families.pdfgc.official.verify import FLOAT_TOL, verify_fixture

    dev = _device(a.device)
    if not (FIXTURE / "fixture.json").is_file():
        raise Skip(f"{FIXTURE} not found")
    variants = [("exact", None)]
    if dev.type == "cuda":
        variants = [("exact, torch defaults", True), ("exact, TF32 off", False)]
    kept = {}
    for label, tf32 in variants:
        def run(label=label, tf32=tf32):
            if tf32 is False:  # None / True: as torch sets it (cuDNN convolutions may run in TF32)
                torch.backends.cudnn.allow_tf32 = False
                torch.backends.cuda.matmul.allow_tf32 = False
            keep = {}
            t0 = time.perf_counter()
            res = verify_fixture(FIXTURE, log=lambda m: print(m, flush=True), device=str(dev), keep=keep)
            sec = time.perf_counter() - t0
            kept.clear()
            kept.update(keep)
            bad = [r for r in res if not r.ok]
            worst = max(res, key=lambda r: r.max_diff / r.tolerance)
            rec.add(f"fixture {label}", f"{len(res) - len(bad)}/{len(res)} arrays within tolerance; worst "
                    f"{worst.name} {worst.max_diff:.2g} (tol {worst.tolerance:g}); {sec:.0f} s",
                    "ok" if not bad else "fail", arrays={r.name: r.max_diff for r in res}, seconds=sec)
            for r in res:
                if r.name in ("audio_feature", "app_feat_map", "motion_headpose (pipeline)", "gen_style",
                              "gen_image_first8", "generated_panel_bgr_uint8"):
                    rec.add(f"  {label}: {r.name}", f"max |diff| {r.max_diff:.2g}", "ok" if r.ok else "fail",
                            max_diff=r.max_diff)
        rec.attempt(f"fixture {label}", run)
    torch.backends.cudnn.allow_tf32 = True
    if not kept:
        return
    # fast precision against the last exact run (TF32 off on a GPU): the whole pipeline under autocast (encoders
    # and generator) on a GPU; on a CPU the generator alone on 2 frames (CPU fp16 is emulated and slow)
    exact, pipe, plan_exact, portrait, spec = (kept[k] for k in ("frames", "pipe", "plan", "portrait", "spec"))
    exact = exact.numpy()
    opt_fast = dataclasses.replace(kept["options"], precision="fast")
    full = dev.type == "cuda"
    n = exact.shape[0] if full else 2
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        def run(name=name, dtype=dtype):
            if full and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
                raise Skip("bf16 not supported on this GPU")
            if not full and dtype == torch.float16:
                raise Skip("GPU only: fp16 convolutions are emulated on a CPU (minutes per frame here)")
            _force_fast_dtype(dtype)
            t0 = time.perf_counter()
            plan = pipe.plan(portrait, FIXTURE / spec["audio"], opt_fast) if full else plan_exact
            imgs = torch.cat([im.cpu() for _, im in pipe.render(plan, opt_fast, stop=n)]).numpy()
            sec = time.perf_counter() - t0
            what = "pipeline" if full else "generator only"
            db = _psnr(imgs, exact[:n])
            levels = float(np.abs(imgs - exact[:n]).max()) * 127.5
            rec.add(f"fast {name} vs exact", f"PSNR {db:.1f} dB, max {levels:.1f} levels ({what}, {n} frames, "
                    f"{sec:.0f} s)", "ok" if db > 30 else "fail", psnr_db=db, max_levels=levels, frames=n)
        rec.attempt(f"fast {name} vs exact", run)
    rec.meta["tolerance"] = FLOAT_TOL


def _models(a):
    """(name, builder) of the speed part: the official architecture with seeded weights, the package's default
    model (`pdfgc.weights.default_model()`: whatever family it is), the shipped lite PD-FGC model when present."""
    from pdfgc.families.pdfgc.configs import get_config
    from pdfgc.families.pdfgc.model import PDFGC
    from pdfgc.weights import default_model, default_weights_path

    models = [("official", lambda: PDFGC.random(0, get_config("official")))]
    if default_weights_path() is not None:  # without a file the default is the seeded official model again
        models.append(("default", default_model))
    lite = REPO / "pdfgc" / "weights" / "default.safetensors"
    if lite.is_file() and default_weights_path() != lite:
        models.append(("lite", lambda: PDFGC.from_pretrained(lite)))
    return models


def _speed_grid(a, dev, cpu_reference: bool = False):
    quick = a.quick or cpu_reference
    return {
        "e2e_seconds": {"official": 1.0 if a.quick else 4.0, "default": 2.0 if a.quick else 4.0,
                        "lite": 2.0 if a.quick else 4.0},
        "batches": [1, 2] if a.quick else ([1] if cpu_reference else [1, 8, 32]),
        "layouts": ["default"] if cpu_reference else ["default", "channels_last"],
        "repeats": 1 if quick else 3,
        # CPU: exact only (bf16 is emulated on most CPUs; the CLI's fast mode falls back to exact there)
        "modes": ["exact"] if (dev.type == "cpu" and (a.quick or cpu_reference)) else ["exact", "fast"],
    }


def _memory_format(module, fmt) -> None:
    """channels-last (or back) for the module's 4-D parameters and buffers; `Module.to(memory_format=...)` refuses
    modules that also hold 1-D/2-D tensors."""
    import torch
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=fmt)


def _generator_fps(model, plan, dev, mode: str, batch: int, layout: str, repeats: int, mem: PeakMemory) -> tuple:
    import torch

    from pdfgc.families.pdfgc.family import plan_styles
    from pdfgc.runtime import Precision

    g, lay = model.generator, model.layout
    prec = Precision(mode, dev)
    T = plan.num_frames
    idx = [i % T for i in range(batch)]
    style = plan_styles(model, plan, slice(0, T))[idx].to(dev)
    identity = plan.appearance.identity.to(dev).expand(batch, -1, -1, -1)
    if layout == "channels_last":
        _memory_format(g, torch.channels_last)
        identity = identity.contiguous(memory_format=torch.channels_last)
    try:
        with torch.inference_mode():
            mem.reset()
            with prec.autocast():
                g.render(style, identity, static=lay.appearance)  # warm-up (cuDNN algorithm choice, caches)
            _sync(dev)
            t0 = time.perf_counter()
            for _ in range(repeats):
                with prec.autocast():
                    g.render(style, identity, static=lay.appearance)
            _sync(dev)
            sec = time.perf_counter() - t0
    finally:
        if layout == "channels_last":
            _memory_format(g, torch.contiguous_format)
    return batch * repeats / sec, mem.mb()


def _speed_jobs(rec: Recorder, a, dev, cpu_reference: bool = False) -> None:
    import tempfile

    import torch

    from pdfgc.pipeline import AnimateOptions, TalkingHeadPipeline

    grid = _speed_grid(a, dev, cpu_reference)
    mem = PeakMemory(dev)
    portrait = DATA / "pdfgc" / "anne.png"
    where = "CPU " if cpu_reference else ""
    from pdfgc.weights import default_weights_path
    if not cpu_reference and default_weights_path() is None:
        rec.add("default: model", "no packaged default weights: the default model is the seeded official one "
                "(the official rows)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, build in _models(a):
            model = rec.attempt(f"{name}: build", build)
            if model is None:
                continue
            if hasattr(model, "config"):
                model.config.trained = True  # no untrained banner inside the benchmark
            if not cpu_reference:
                n = sum(p.numel() for p in model.parameters()) if hasattr(model, "parameters") else 0
                rec.add(f"{name}: model", f"{type(model).__name__} "
                        f"{getattr(getattr(model, 'config', None), 'name', '')}, {n / 1e6:.1f} M parameters")
            pipe = rec.attempt(f"{name}: pipeline", lambda: TalkingHeadPipeline(model, device=str(dev),
                                                                               threads=a.threads))
            if pipe is None:
                continue
            audio = _speech(grid["e2e_seconds"][name], tmp)
            for mode in grid["modes"]:
                opt = AnimateOptions(precision=mode, progress=False)

                def e2e(mode=mode, opt=opt):
                    runs = []
                    for i in range(1 if a.quick or cpu_reference or dev.type == "cpu" else 2):
                        mem.reset()
                        t0 = time.perf_counter()
                        res = pipe(portrait, audio=audio, output=tmp / f"{name}_{mode}.mp4", options=opt)
                        _sync(dev)
                        runs.append(res.num_frames / (time.perf_counter() - t0))
                    fps = runs[-1]
                    rec.add(f"{where}{name} {mode}: end to end", f"{fps:.1f} frames/s ({res.num_frames} frames"
                            + (f", first call {runs[0]:.1f}" if len(runs) > 1 else "") + f"), {mem.label} "
                            f"{mem.mb():.0f} MB", key=f"{name}/{mode}/e2e", fps=fps, first_fps=runs[0],
                            frames=res.num_frames, peak_mb=mem.mb())
                rec.attempt(f"{where}{name} {mode}: end to end", e2e)
                if not hasattr(model, "generator"):
                    continue
                plan = rec.attempt(f"{where}{name} {mode}: plan", lambda opt=opt: pipe.plan(portrait, audio, opt))
                if plan is None:
                    continue
                for batch in grid["batches"]:
                    for layout in grid["layouts"]:
                        def gen(mode=mode, batch=batch, layout=layout):
                            # a GPU times at least 32 frames per figure (one batch-1 frame is ~ms)
                            reps = grid["repeats"] if dev.type != "cuda" else max(grid["repeats"], 32 // batch)
                            fps, peak = _generator_fps(model, plan, dev, mode, batch, layout, reps, mem)
                            rec.add(f"{where}{name} {mode}: generator b{batch}" + (" channels-last" if layout !=
                                    "default" else ""), f"{fps:.1f} frames/s, {mem.label} {peak:.0f} MB",
                                    key=f"{name}/{mode}/gen/b{batch}/{layout}", fps=fps, peak_mb=peak)
                        rec.attempt(f"{where}{name} {mode}: generator b{batch} {layout}", gen)
                        if dev.type == "cuda":
                            torch.cuda.empty_cache()
            pipe = model = plan = None  # free the GPU memory before the next model
            if dev.type == "cuda":
                torch.cuda.empty_cache()


def part_speed(rec: Recorder, a) -> None:
    _speed_jobs(rec, a, _device(a.device))


def part_cpu_reference(rec: Recorder, a) -> None:
    import torch
    if _device(a.device).type != "cuda":
        raise Skip("this run is on the CPU: its speed figures are the CPU's")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    a.threads = cores
    torch.set_num_threads(cores)
    rec.meta["threads"] = cores
    _speed_jobs(rec, a, torch.device("cpu"), cpu_reference=True)


def part_compile(rec: Recorder, a) -> None:
    import torch

    from pdfgc.families.pdfgc.configs import get_config
    from pdfgc.families.pdfgc.model import PDFGC

    dev = _device(a.device)
    config = "tiny" if a.quick else "official"
    batch = 1 if a.quick else 16
    repeats = 2 if a.quick else 5
    model = PDFGC.random(0, get_config(config)).to(dev).eval()
    g, lay = model.generator, model.layout
    torch.manual_seed(0)
    style = torch.randn(batch, lay.dim, device=dev)
    identity = torch.randn(batch, g.identity_channels, 7, 7, device=dev)  # the generator's 7x7 start
    mem = PeakMemory(dev)
    rec.meta.update(config=config, batch=batch)

    def timed(fn, *args):
        with torch.inference_mode():
            fn(*args)
            _sync(dev)
            mem.reset()
            t0 = time.perf_counter()
            for _ in range(repeats):
                y = fn(*args)
            _sync(dev)
        return batch * repeats / (time.perf_counter() - t0), y

    ref = {}

    def eager():
        fps_f, ref["y"] = timed(g.forward, style, identity)
        rec.add(f"{config} generator b{batch}: eager forward (official order)", f"{fps_f:.1f} frames/s",
                key="compile/eager_forward", fps=fps_f)
        fps_r, _ = timed(lambda s, i: g.render(s, i, static=lay.appearance), style, identity)
        rec.add(f"{config} generator b{batch}: eager render (the pipeline's)", f"{fps_r:.1f} frames/s",
                key="compile/eager_render", fps=fps_r)
    rec.attempt("eager", eager)
    for layout in ("default", "channels_last"):
        def compiled(layout=layout):
            ident = identity
            if layout == "channels_last":
                _memory_format(g, torch.channels_last)
                ident = identity.contiguous(memory_format=torch.channels_last)
            torch._dynamo.reset()
            fn = torch.compile(g.forward, dynamic=False)
            t0 = time.perf_counter()
            with torch.inference_mode():
                fn(style, ident)
                _sync(dev)
            t_compile = time.perf_counter() - t0
            fps, y = timed(fn, style, ident)
            diff = float((y.float() - ref["y"].float()).abs().max()) if "y" in ref else float("nan")
            rec.add(f"{config} generator b{batch}: compiled forward" + (", channels-last" if layout != "default"
                    else ""), f"{fps:.1f} frames/s after {t_compile:.0f} s compiling; max |diff| vs eager "
                    f"{diff:.2g}; {mem.label} {mem.mb():.0f} MB", key=f"compile/{layout}", fps=fps,
                    compile_s=t_compile, max_diff=diff)
            _memory_format(g, torch.contiguous_format)
        rec.attempt(f"compiled forward {layout}", compiled)


# ---- data

def _cut_clip(src: Path, dst: Path, start_s: float, dur_s: float, audio: bool = True) -> None:
    """dur_s seconds of the video `src` from start_s at 25 fps (with its audio when `audio`) -> `dst`."""
    from pdfgc.media.audio_io import decode_audio
    from pdfgc.media.video import VideoWriter, iter_video_frames

    dst.parent.mkdir(parents=True, exist_ok=True)
    samples = rate = None
    if audio:
        samples, rate = decode_audio(src)
        samples = samples[:, int(start_s * rate): int((start_s + dur_s) * rate)]
    first, last = round(start_s * 25), round((start_s + dur_s) * 25)
    with VideoWriter(dst, fps=25, audio=samples, audio_rate=rate) as w:
        for i, frame in enumerate(iter_video_frames(src, fps=25)):
            if i >= last:
                break
            if i >= first:
                w.write(frame)


def corpus_dir(a) -> Path:
    return Path(a.data) if a.data else Path(a.work) / ("corpus_quick" if a.quick else "corpus")


def part_data(rec: Recorder, a) -> None:
    from pdfgc.data.corpus import PreparedCorpus
    from pdfgc.data.prepare import prepare_corpus

    out = corpus_dir(a)
    if a.data:
        c = PreparedCorpus(out, split="train")
        rec.add("corpus (given)", f"{out}: {len(c)} training clips")
        return
    done = out / ".gpu_check_done"
    if done.is_file():
        rec.add("corpus (cached)", f"{out}: {done.read_text().strip()}")
        return
    dur = 1.5 if a.quick else 4.0
    # two speakers with audio (VoxCeleb2 layout) for the lips stage, one MEAD-layout clip with an emotion label
    raw = Path(a.work) / ("raw_quick" if a.quick else "raw")
    clips = [(DATA / "megactor/audio_CHTF_4.mp4", raw / "id00001/clipA/00001.mp4", True),
             (DATA / "megactor/audio_ENTF_1.mp4", raw / "id00002/clipB/00001.mp4", True),
             (DATA / "edtalk/pose_source1.mp4", raw / "M003/video/front/happy/level_2/001.mp4", False)]
    t0 = time.perf_counter()
    for src, dst, audio in clips:
        if not src.is_file():
            raise Skip(f"{src} not found")
        if not dst.is_file():
            _cut_clip(src, dst, 0.0, dur, audio)
    workers = 1 if a.quick else min(3, os.cpu_count() or 1)
    summary = prepare_corpus(raw, out, workers=workers, progress=False, heldout=os.devnull,
                             log=lambda m: print(m, flush=True))
    sec = time.perf_counter() - t0
    n = len(PreparedCorpus(out, split="train"))
    if n < 2:
        raise RuntimeError(f"pdfgc prepare kept {n} of {len(clips)} clips ({summary.describe()})")
    text = f"{n} clips of {dur:g} s prepared in {sec:.0f} s"
    rec.add("corpus (prepared here)", f"{out}: {text}", seconds=sec, clips=n)
    done.write_text(text + "\n")


# ---- training

def _read_log(run: Path) -> list[dict]:
    with open(run / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def _finite(rows: list[dict]) -> tuple[bool, str]:
    for r in rows:
        for k, v in r.items():
            if k in ("step", "stage") or v in (None, ""):
                continue
            try:
                x = float(v)
            except ValueError:
                continue
            if not math.isfinite(x):
                return False, f"{k}={v} at step {r['step']}"
    return True, ""


def _train_settings(a, dev) -> dict:
    quick = a.quick
    return {"config": "tiny" if quick else "official", "steps": 3 if quick else 30,
            "batch": 2 if quick else 8, "precision": "bf16"}


def _run_train_cli(args: list[str]) -> int:
    from pdfgc.cli import main as cli_main
    try:
        return int(cli_main(args) or 0)
    except SystemExit as e:
        return int(e.code or 0)


def part_train(rec: Recorder, a) -> None:
    import torch

    from pdfgc.families.pdfgc.training.stages import STAGES

    dev = _device(a.device)
    data = corpus_dir(a)
    s = _train_settings(a, dev)
    rec.meta.update(s)
    root = Path(a.work) / ("train_quick" if a.quick else "train")
    mem = PeakMemory(dev)
    if root.exists():
        import shutil
        shutil.rmtree(root)
    init = None
    base = ["--data", str(data), "--batch-size", str(s["batch"]), "--log-every", "1", "--sample-every",
            str(s["steps"]), "--threads", str(a.threads), "--quiet"]
    common = base + ["--precision", s["precision"]]
    for stage in STAGES:
        run = root / stage
        start = ["--config", s["config"]] if init is None else ["--init", str(init)]
        mem.reset()
        t0 = time.perf_counter()
        rc = _run_train_cli(["train", "--stage", stage, "--out", str(run), "--steps", str(s["steps"]),
                             "--checkpoint-every", str(s["steps"]), *start, *common])
        sec = time.perf_counter() - t0
        if rc != 0 or not (run / "model.safetensors").is_file():
            rec.add(f"{stage}", f"pdfgc train exited {rc} after {sec:.0f} s (see logs/train.log)", "fail")
            return
        rows = _read_log(run)
        per_step = [float(r["sec_per_step"]) for r in rows[1:]] or [float(rows[0]["sec_per_step"])]
        sps = 1 / (sum(per_step) / len(per_step))
        finite, where = _finite(rows)
        ck = run / "checkpoints" / f"step-{s['steps']:09d}"
        ok = finite and ck.is_dir() and len(rows) == s["steps"]
        rec.add(f"{s['config']} {stage}", f"{len(rows)} steps at {sps:.2f} steps/s (first step included: "
                f"{sec:.0f} s in all), {mem.label} {mem.mb():.0f} MB, losses "
                f"{'finite' if finite else 'NOT finite: ' + where}, checkpoint "
                f"{'written' if ck.is_dir() else 'MISSING'}",
                "ok" if ok else "fail", steps_per_s=sps, seconds=sec, peak_mb=mem.mb(), finite=finite,
                final_total=float(rows[-1].get("total", "nan")))
        init = run / "model.safetensors"
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    # resume the last stage for 2 more steps: it must continue from its checkpoint
    stage = STAGES[-1]
    run = root / stage
    more = s["steps"] + 2
    t0 = time.perf_counter()
    said = io.StringIO()
    with contextlib.redirect_stderr(said):  # the trainer says where it resumed from
        rc = _run_train_cli(["train", "--stage", stage, "--out", str(run), "--steps", str(more), "--init",
                             str(root / STAGES[-2] / "model.safetensors"), "--checkpoint-every", str(more),
                             "--resume", *common])
    print(said.getvalue(), file=sys.stderr, flush=True)
    sec = time.perf_counter() - t0
    rows = _read_log(run) if (run / "log.csv").is_file() else []
    steps = [int(r["step"]) for r in rows]
    ok = (rc == 0 and steps == list(range(1, more + 1)) and f"from step-{s['steps']:09d}" in said.getvalue()
          and (run / "checkpoints" / f"step-{more:09d}").is_dir())
    rec.add(f"{stage} resumed", f"exit {rc}; log steps {steps[0] if steps else '-'}..{steps[-1] if steps else '-'} "
            f"({'continued from step ' + str(s['steps']) if ok else 'NOT a clean continuation'}), {sec:.0f} s",
            "ok" if ok else "fail")
    # fp16 mixed precision: the GradScaler path (loss scaling, its state in the checkpoint); CUDA only
    if dev.type != "cuda":
        rec.add("appearance fp16 (GradScaler)", "GPU only: fp16 training needs CUDA", "skip")
        return

    def fp16():
        run = root / "appearance_fp16"
        mem.reset()
        t0 = time.perf_counter()
        rc = _run_train_cli(["train", "--stage", "appearance", "--config", s["config"], "--out", str(run),
                             "--steps", "10", "--checkpoint-every", "10", "--precision", "fp16", *base])
        sec = time.perf_counter() - t0
        rows = _read_log(run) if (run / "log.csv").is_file() else []
        finite, where = _finite(rows)
        from pdfgc.training.harness import load_checkpoint
        state = run / "checkpoints" / "step-000000010" / "train_state.safetensors"
        scaler = state.is_file() and "scaler" in load_checkpoint(state, "pdfgc-stage")
        ok = rc == 0 and len(rows) == 10 and finite and scaler
        rec.add("appearance fp16 (GradScaler)", f"exit {rc}; {len(rows)} steps in {sec:.0f} s, {mem.label} "
                f"{mem.mb():.0f} MB, losses {'finite' if finite else 'NOT finite: ' + where}, scaler state "
                f"{'saved' if scaler else 'MISSING'}", "ok" if ok else "fail", seconds=sec)
    rec.attempt("appearance fp16 (GradScaler)", fp16)


def part_train_ddp(rec: Recorder, a) -> None:
    dev = _device(a.device)
    data = corpus_dir(a)
    s = _train_settings(a, dev)
    run = Path(a.work) / ("train_ddp_quick" if a.quick else "train_ddp")
    if run.exists():
        import shutil
        shutil.rmtree(run)
    steps = 2 if a.quick else 6
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29400 + os.getpid() % 500), "-m", "pdfgc.cli", "train", "--data", str(data), "--stage", "appearance",
           "--config", s["config"], "--out", str(run), "--steps", str(steps), "--batch-size", "2",
           "--log-every", "1", "--checkpoint-every", str(steps), "--sample-every", str(steps), "--threads", "1",
           "--quiet"] + (["--precision", "bf16"] if dev.type == "cuda" else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO) + os.pathsep +
           os.environ.get("PYTHONPATH", "")}
    if dev.type != "cuda":
        env["CUDA_VISIBLE_DEVICES"] = ""
    rec.meta["command"] = " ".join(cmd)
    t0 = time.perf_counter()
    timeout = PARTS["train_ddp"][1 if a.quick else 0] - 15
    try:
        r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        rc, err = r.returncode, r.stderr
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        rc = "timeout"
    sec = time.perf_counter() - t0
    print(err[-6000:], flush=True)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    bn = [ln.split("pdfgc: ", 1)[-1] for ln in err.splitlines() if "SyncBatchNorm" in ln and "pdfgc:" in ln]
    if rc == 0:
        rows = _read_log(run)
        rec.add(f"torchrun 2 processes ({backend})", f"{len(rows)} steps in {sec:.0f} s, "
                f"{1 / (sum(float(r['sec_per_step']) for r in rows) / len(rows)):.2f} steps/s; "
                + (bn[0] if bn else "no SyncBatchNorm line"), seconds=sec)
    else:
        rec.add(f"torchrun 2 processes ({backend})", f"exit {rc} after {sec:.0f} s: {ddp_failure_reason(err)}",
                "fail", seconds=sec)


# the lines that say why a distributed run failed, most specific first
_DDP_REASONS = [r"Duplicate GPU detected[^\n]*", r"invalid device ordinal[^\n]*", r"ncclInvalidUsage[^\n]*",
                r"NCCL error[^\n]*", r"CUDA error[^\n]*", r"out of memory[^\n]*", r"pdfgc: error:[^\n]*",
                r"\w*Error: [^\n]*"]


def ddp_failure_reason(stderr: str) -> str:
    for pat in _DDP_REASONS:
        m = re.search(pat, stderr)
        if m:
            return " ".join(m.group(0).split())[:300]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def nccl_probe() -> None:
    """One torchrun rank of part nccl_same_gpu: every rank on cuda:0, one all_reduce."""
    import torch
    import torch.distributed as dist
    torch.cuda.set_device(0)
    dist.init_process_group("nccl")
    t = torch.ones(1, device="cuda:0") * (dist.get_rank() + 1)
    dist.all_reduce(t)
    torch.cuda.synchronize()
    print(f"rank {dist.get_rank()}: all_reduce -> {t.item():g}", flush=True)
    dist.destroy_process_group()


def part_nccl_same_gpu(rec: Recorder, a) -> None:
    import torch
    if not torch.cuda.is_available():
        raise Skip("no CUDA")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29900 + os.getpid() % 90), str(Path(__file__).resolve()), "--nccl-probe"]
    try:
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=PARTS["nccl_same_gpu"][0] - 10,
                           env={**os.environ, "NCCL_DEBUG": "WARN"})
        rc, out = r.returncode, r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        rc, out = "timeout", "the two ranks hung (NCCL waiting on a peer that cannot join)"
    print(out[-6000:], flush=True)
    if rc == 0 and "all_reduce -> 3" in out:
        rec.add("2 NCCL ranks on one GPU", "all_reduce works (sum 3): two processes can share the GPU")
    else:
        rec.add("2 NCCL ranks on one GPU", f"exit {rc}: {ddp_failure_reason(out)}", "fail")


def meshwarp_available() -> bool:
    try:
        return importlib.util.find_spec(MESHWARP_TRAIN[0]) is not None
    except ModuleNotFoundError:
        return False


def part_train_meshwarp(rec: Recorder, a) -> None:
    module, template = MESHWARP_TRAIN
    if not meshwarp_available():
        raise Skip(f"not available: {module} does not exist yet")
    dev = _device(a.device)
    out = Path(a.work) / ("train_meshwarp_quick" if a.quick else "train_meshwarp")
    fill = {"data": str(corpus_dir(a)), "out": str(out), "device": str(dev), "steps": "3" if a.quick else "30",
            "threads": str(a.threads)}
    cmd = [sys.executable, "-m", module, *[t.format(**fill) for t in template]]
    rec.meta["command"] = " ".join(cmd)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                       timeout=PARTS["train_meshwarp"][1 if a.quick else 0] - 10)
    sec = time.perf_counter() - t0
    print(r.stdout[-3000:] + r.stderr[-3000:], flush=True)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.safetensors")) if out.is_dir() else []
    rec.add("meshwarp train", f"exit {r.returncode} in {sec:.0f} s; weights written: {', '.join(files[:4]) or 'none'}",
            "ok" if r.returncode == 0 and files else "fail", seconds=sec)


PART_FUNCS = {"env": part_env, "equivalence": part_equivalence, "speed": part_speed, "data": part_data,
              "train": part_train, "train_ddp": part_train_ddp, "nccl_same_gpu": part_nccl_same_gpu,
              "train_meshwarp": part_train_meshwarp, "cpu_reference": part_cpu_reference, "compile": part_compile}
assert list(PART_FUNCS) == list(PARTS)


def child(a) -> int:
    import torch
    torch.set_num_threads(a.threads)
    rec = Recorder(Path(a.out) / "parts" / f"{a.child}.json")
    try:
        PART_FUNCS[a.child](rec, a)
    except Skip as e:
        rec.save(done=True, skipped=str(e))
        return 0
    except Exception as e:
        traceback.print_exc()
        rec.add("error", _one_line(e), "fail")
        rec.save(done=True)
        return 1
    rec.save(done=True)
    return 0


# ------------------------------------------------------------------------------------------------ parent

class PartProcess:
    def __init__(self, name: str, a, argv_common: list[str]):
        self.name, self.a = name, a
        self.timeout = PARTS[name][1 if a.quick else 0] * a.timeout_scale
        self.log_path = Path(a.out) / "logs" / f"{name}.log"
        self.json_path = Path(a.out) / "parts" / f"{name}.json"
        self.json_path.unlink(missing_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "w")
        self.t0 = time.perf_counter()
        env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--child", name, *argv_common],
                                     cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)  # its own group: a timeout ends torchrun's ranks too

    def wait(self, deadline: float | None = None) -> dict:
        """Wait until the part ends, its own timeout passes or `deadline` (time.perf_counter()) comes."""
        end = self.t0 + self.timeout if deadline is None else min(self.t0 + self.timeout, deadline)
        limit = end - self.t0
        timed_out = False
        try:
            rc = self.proc.wait(timeout=max(1.0, end - time.perf_counter()))
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = self.proc.wait()
        self.log.close()
        sec = time.perf_counter() - self.t0
        rec = json.loads(self.json_path.read_text()) if self.json_path.is_file() else {"rows": [], "meta": {}}
        if not timed_out and rec.get("done") and "elapsed" in rec:  # a part waited for late (data) ran this long
            sec = min(sec, rec["elapsed"] + 5.0)
        rows = rec.get("rows", [])
        if timed_out:
            status, reason = "timeout", f"stopped after {limit:.0f} s (its limit)"
        elif rec.get("skipped"):
            status, reason = "skipped", rec["skipped"]
        elif rc != 0 or not rec.get("done"):
            status, reason = "failed", f"exit {rc}: {_last_error(self.log_path)}"
        elif any(r["status"] == "fail" for r in rows):
            status, reason = "failed", "; ".join(r["item"] for r in rows if r["status"] == "fail")[:300]
        else:
            status, reason = "ok", ""
        return {"part": self.name, "status": status, "seconds": round(sec, 1), "reason": reason, "rows": rows,
                "meta": rec.get("meta", {}), "log": str(self.log_path)}


def _last_error(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for ln in reversed(lines):
        if re.search(r"Error|error:|Killed|Traceback", ln):
            return ln[:300]
    return lines[-1][:300] if lines else "no output"


def skipped(name: str, reason: str) -> dict:
    return {"part": name, "status": "skipped", "seconds": 0.0, "reason": reason, "rows": [], "meta": {}}


def ratios(parts: list[dict]) -> list[dict]:
    """GPU / CPU frames/s for every job both the speed part and the CPU reference measured."""
    def by_key(name):
        p = next((p for p in parts if p["part"] == name), None)
        return {r["data"]["key"]: r["data"]["fps"] for r in (p or {}).get("rows", []) if "key" in r.get("data", {})}
    gpu, cpu = by_key("speed"), by_key("cpu_reference")
    return [{"item": f"GPU / CPU: {k.replace('/', ' ')}", "value": f"{gpu[k] / cpu[k]:.1f}x "
             f"({gpu[k]:.1f} vs {cpu[k]:.1f} frames/s)", "status": "ok", "data": {"ratio": gpu[k] / cpu[k]}}
            for k in gpu if k in cpu and cpu[k] > 0]


def render_table(report: dict) -> tuple[str, str]:
    """(plain text, Markdown) of the report."""
    head = (f"GPU check, {report['date']}: device {report['device']} ({report.get('gpu') or 'no GPU'}), "
            f"{'quick' if report['quick'] else 'full'} run, {report['seconds']:.0f} s")
    md = [f"**{head}**", "", "| part | status | s | item | figure |", "|---|---|---|---|---|"]
    txt = [head, f"{'part':15s} {'status':8s} {'s':>5s}  item: figure"]
    for p in report["parts"]:
        first = f"{p['part']:15s} {p['status']:8s} {p['seconds']:5.0f}  "
        md.append(f"| {p['part']} | {p['status']} | {p['seconds']:.0f} | | {p['reason']} |")
        txt.append(first + (p["reason"] or ""))
        for r in p["rows"]:
            flag = "" if r["status"] == "ok" else f" [{r['status']}]"
            md.append(f"| | | | {r['item'].strip()} | {r['value'].replace('|', chr(92) + '|')}{flag} |")
            txt.append(" " * 31 + f"{r['item']}: {r['value']}{flag}")
    return "\n".join(txt), "\n".join(md)


def write_report(out: Path, report: dict) -> str:
    text, md = render_table(report)
    for name, body in (("gpu_check.json", json.dumps(report, indent=1)), ("gpu_check.md", md + "\n")):
        tmp = out / (name + ".tmp")
        tmp.write_text(body)
        os.replace(tmp, out / name)
    return text


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                    help="auto: cuda when available; cuda without a GPU skips every part with the reason")
    ap.add_argument("--quick", action="store_true",
                    help="small sizes (tiny training config, 1-2 s jobs, batch 1-2): minutes on a CPU")
    ap.add_argument("--out", default="gpu_check", help="output folder (tables, logs, the prepared corpus cache)")
    ap.add_argument("--work", help="folder for the large files: the prepared corpus cache, training runs "
                                   "(default OUT/work)")
    ap.add_argument("--data", help="a prepared corpus (`pdfgc prepare`) for the training parts; default: prepare "
                                   "3 short shipped clips into WORK/corpus once")
    ap.add_argument("--parts", help=f"comma-separated subset of: {', '.join(PARTS)}")
    ap.add_argument("--budget", type=float, help="seconds for the whole run (default 540; 1200 with --quick)")
    ap.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every part's timeout")
    ap.add_argument("--threads", type=int,
                    help="CPU threads of each part (default: 1 with --device cpu, else all cores)")
    ap.add_argument("--child", choices=list(PARTS), help=argparse.SUPPRESS)
    ap.add_argument("--nccl-probe", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.work = a.work or str(Path(a.out) / "work")
    if a.threads is None:
        a.threads = 1 if a.device == "cpu" else (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                                 else os.cpu_count() or 1)
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    if a.nccl_probe:
        nccl_probe()
        return 0
    if a.child:
        return child(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(PARTS)
    if a.parts:
        want = [p.strip() for p in a.parts.split(",") if p.strip()]
        unknown = [p for p in want if p not in PARTS]
        if unknown:
            print(f"gpu_check: error: unknown part(s) {', '.join(unknown)} (choose from {', '.join(PARTS)})",
                  file=sys.stderr)
            return 2
        names = [p for p in names if p in want]
    budget = a.budget or (1200.0 if a.quick else 540.0)
    t_start = time.perf_counter()
    deadline = t_start + budget
    cuda, gpu = _cuda_probe()
    common = ["--device", a.device, "--out", str(out.resolve()), "--work", str(Path(a.work).resolve()),
              "--threads", str(a.threads)]
    common += ["--quick"] if a.quick else []
    common += ["--data", str(Path(a.data).resolve())] if a.data else []
    report = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": a.device, "quick": a.quick,
              "gpu": gpu, "command": " ".join([sys.executable, *sys.argv]), "parts": [], "seconds": 0.0}
    print(f"gpu_check: parts {', '.join(names)}; budget {budget:.0f} s; output {out}", flush=True)
    # the corpus is prepared on the CPU in the background while the first (GPU) parts run
    data_proc = data_result = None
    if "data" in names:
        data_proc = PartProcess("data", a, common)
    for name in names:
        if name == "data":
            continue
        reason = None
        if PARTS[name][2] and not cuda:
            reason = "no CUDA: torch reports no GPU, and this part needs one"
        elif a.device == "cuda" and not cuda and name != "env":
            reason = "--device cuda, but torch reports no GPU"
        elif name == "train_meshwarp" and not meshwarp_available():
            reason = f"not available: {MESHWARP_TRAIN[0]} does not exist yet"
        if not reason and name in NEEDS_DATA:
            if data_proc is not None and data_result is None:
                data_result = _record(report, out, t_start, data_proc.wait(deadline))
            if data_result is not None and data_result["status"] != "ok":
                reason = f"no prepared corpus (part data: {data_result['status']})"
            elif data_result is None and not (a.data or (corpus_dir(a) / ".gpu_check_done").is_file()):
                reason = "no prepared corpus (part data not run: pass --data DIR or include data)"
        left = deadline - time.perf_counter()
        if not reason and left < 20:
            reason = f"out of time: {max(0.0, left):.0f} s of the {budget:.0f} s budget left"
        if reason:
            result = skipped(name, reason)
        else:
            proc = PartProcess(name, a, common)
            print(f"gpu_check: {name} (limit {min(proc.timeout, left):.0f} s)", flush=True)
            result = proc.wait(deadline)
        _record(report, out, t_start, result)
    if data_proc is not None and data_result is None:  # data asked for without a training part
        _record(report, out, t_start, data_proc.wait(deadline))
    if "cpu_reference" in names:
        extra = ratios(report["parts"])
        if extra:
            report["parts"].append({"part": "ratio", "status": "ok", "seconds": 0.0, "reason": "", "rows": extra,
                                    "meta": {}})
    text = write_report(out, _finish(report, t_start))
    print(text)
    print(f"gpu_check: wrote {out / 'gpu_check.md'} and {out / 'gpu_check.json'}")
    bad = [p["part"] for p in report["parts"] if p["status"] in ("failed", "timeout")]
    return 1 if bad else 0


def _finish(report: dict, t_start: float) -> dict:
    report["seconds"] = time.perf_counter() - t_start
    return report


def _record(report: dict, out: Path, t_start: float, result: dict) -> dict:
    report["parts"].append(result)
    print(f"gpu_check: {result['part']}: {result['status']} in {result['seconds']:.0f} s"
          + (f" ({result['reason']})" if result["reason"] else ""), flush=True)
    write_report(out, _finish(report, t_start))
    return result


def _cuda_probe() -> tuple[bool, str | None]:
    """(CUDA available, GPU name), asked in a subprocess: the parent itself never initialises CUDA, so a GPU
    fault in one part cannot take the whole check down."""
    r = subprocess.run([sys.executable, "-c", "import torch; ok = torch.cuda.is_available(); "
                        "print(ok, torch.cuda.get_device_name(0) if ok else '', sep='|')"],
                       capture_output=True, text=True)
    ok, _, name = r.stdout.strip().partition("|")
    return ok == "True", name or None


if __name__ == "__main__":
    sys.exit(main())
