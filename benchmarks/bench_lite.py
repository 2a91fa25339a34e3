"""Lite model benchmark: frames/s of the real `pdfgc animate` pipeline with the lite configuration, peak memory,
parameters, weights size and FLOPs per frame. Prints figures; it is not a test.

    python benchmarks/bench_lite.py                      # both cases, exact and fast, 3 repeats each
    python benchmarks/bench_lite.py --repeats 1 --modes fast --cases audio

Cases (anne.png, the first 10 s of audio_longer.mp3, result layout, mp4 with sound written):
  audio:  lips from the audio, pose / eyes / emotion still (read from the portrait)
  driven: as audio, plus --pose and --eyes from the shipped pose and eye frame folders (one motion-encoder pass
          per distinct driving frame: ~1.4 per output frame here)
Each run is a fresh process (clean peak RSS, cold start as a user sees it) with seeded random lite weights (speed
does not depend on values). "end-to-end" is the whole `pipe(...)` call: portrait, audio decoding, mel windows,
driving frames, every encoder, generator, upsampling to 224, H.264/AAC, rename. Then, in the same process and
warm, the stages alone: codes (`pipe.plan`), generator only (`pipe.render` without writing), audio encoder
only, motion encoder only. The machine is shared: each figure is repeated, best and median are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared")) / "data" / "pdfgc"
TARGET_FPS = 25.0
if str(REPO) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(REPO))


def make_audio(seconds: float, path: Path) -> None:
    """The first `seconds` of audio_longer.mp3 as a 16-bit wav at its own rate."""
    import av
    import numpy as np

    from pdfgc.media.audio_io import decode_audio

    a, rate = decode_audio(DATA / "audio_longer.mp3")
    speech = a.mean(0)[: int(seconds * rate)].astype(np.float32)
    with av.open(str(path), "w") as c:
        s = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((speech[None] * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def options(case: str, mode: str, batch_size: int | None):
    from pdfgc.pipeline import AnimateOptions

    kw = {}
    if case == "driven":
        kw = dict(pose=str(DATA / "motions/pose/681600002"), eyes=str(DATA / "motions/eye/id01333_00040/images"))
    return AnimateOptions(precision=mode, progress=False, batch_size=batch_size, **kw)


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def child(args) -> None:
    import torch

    from pdfgc.families.pdfgc.configs import get_config
    from pdfgc.families.pdfgc.model import PDFGC
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.runtime import Precision

    audio = Path(args.audio)
    model = PDFGC.random(0, get_config(args.config))
    model.config.trained = True  # silence the untrained banner inside the benchmark
    pipe = TalkingHeadPipeline(model, device="cpu", threads=args.threads)
    opt = options(args.case, args.mode, args.batch_size)
    out = Path(args.tmp) / f"lite_{args.case}_{args.mode}.mp4"
    t_e2e = _timed(lambda: pipe(DATA / "anne.png", audio=audio, output=out, options=opt))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # stages alone (warm)
    plan = pipe.plan(DATA / "anne.png", audio, opt)
    t_plan = _timed(lambda: pipe.plan(DATA / "anne.png", audio, opt))
    n = plan.num_frames
    t_gen = _timed(lambda: [None for _ in pipe.render(plan, opt)])
    prec = Precision(args.mode, pipe.device)
    with torch.inference_mode():
        t_audio = _timed(lambda: pipe.family.encode_audio(plan.mel_windows[:n], prec, opt.batch_size))
        crops = torch.rand(64, 224, 224, 3).mul(255).to(torch.uint8).numpy()
        bs = pipe.family.batch_size("motion", requested=opt.batch_size)

        def motion():
            for s in range(0, len(crops), bs):
                with prec.autocast():
                    pipe.model.motion(pipe.family.tensor(crops[s:s + bs]))
        motion()
        t_motion = _timed(motion) / len(crops)
    print(json.dumps({
        "case": args.case, "mode": args.mode, "frames": n, "e2e_s": t_e2e, "e2e_fps": n / t_e2e,
        "plan_s": t_plan, "generator_fps": n / t_gen, "audio_ms_per_frame": 1e3 * t_audio / n,
        "motion_ms_per_driving_frame": 1e3 * t_motion, "peak_rss_mb": rss, "threads": pipe.threads,
        "batch_generator": pipe.family.batch_size("generator", args.mode, opt.batch_size)}))


def model_facts(config: str, tmp: Path) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pdfgc.families.pdfgc.configs import get_config
    from pdfgc.families.pdfgc.model import PDFGC

    model = PDFGC.random(0, get_config(config))
    path = model.save_pretrained(tmp / "lite.safetensors")
    s = model.config.image_size
    facts = {"image_size": s, "weights_mb": path.stat().st_size / 1e6,
             "parameters": {n: sum(p.numel() for p in getattr(model, n).parameters())
                            for n in ("appearance", "motion", "audio", "generator")}}
    facts["parameters"]["total"] = sum(facts["parameters"].values())
    x = torch.zeros(1, 3, s, s)
    lay = model.layout
    with torch.no_grad():
        steps = {"appearance": lambda: model.appearance(x),
                 "motion": lambda: model.motion(x, mouth=True),
                 "audio": lambda: model.audio(torch.zeros(1, 1, 80, 20)),
                 "generator": lambda: model.generator(torch.zeros(1, lay.dim),
                                                      torch.zeros(1, model.generator.identity_channels, 7, 7))}
        facts["gflop_per_call"] = {}
        for name, fn in steps.items():
            with FlopCounterMode(display=False) as fc:
                fn()
            facts["gflop_per_call"][name] = fc.get_total_flops() / 1e9
    return facts


def run_child(case, mode, args, tmp, audio):
    cmd = [sys.executable, __file__, "--child", "--case", case, "--mode", mode, "--tmp", str(tmp), "--audio",
           str(audio), "--threads", str(args.threads), "--config", args.config]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"benchmark child failed ({case}, {mode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="lite", help="official | lite | tiny")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--cases", default="audio,driven")
    ap.add_argument("--modes", default="exact,fast")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--json", help="also write all figures to this file")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--case", default="audio", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="exact", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--audio", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    import torch
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        facts = model_facts(args.config, tmp)
        p, g = facts["parameters"], facts["gflop_per_call"]
        print(f"{args.config}: {facts['image_size']} px, {p['total'] / 1e6:.2f} M parameters (appearance "
              f"{p['appearance'] / 1e6:.2f} M, motion {p['motion'] / 1e6:.2f} M, audio {p['audio'] / 1e6:.2f} M, "
              f"generator {p['generator'] / 1e6:.2f} M), weights file {facts['weights_mb']:.1f} MB (fp32)")
        print(f"GFLOP per call: appearance {g['appearance']:.3f} (once per video), motion {g['motion']:.3f} (per "
              f"driving frame), audio {g['audio']:.3f} and generator {g['generator']:.3f} (per output frame)")
        audio = tmp / f"speech_{args.seconds:g}s.wav"
        make_audio(args.seconds, audio)
        rows = []
        print(f"{'case':7s} {'mode':6s} {'frames':>6s} {'end-to-end fps best/median':>27s} {'generator fps':>14s} "
              f"{'audio ms/f':>10s} {'motion ms/drv':>13s} {'peak RSS MB':>11s}  meets {TARGET_FPS:g}?", flush=True)
        for case in [c for c in args.cases.split(",") if c]:
            for mode in [m for m in args.modes.split(",") if m]:
                runs = [run_child(case, mode, args, tmp, audio) for _ in range(args.repeats)]
                e2e = [r["e2e_fps"] for r in runs]
                gen = [r["generator_fps"] for r in runs]
                row = {"case": case, "mode": mode, "runs": runs, "e2e_fps_best": max(e2e),
                       "e2e_fps_median": statistics.median(e2e), "generator_fps_best": max(gen),
                       "generator_fps_median": statistics.median(gen)}
                rows.append(row)
                print(f"{case:7s} {mode:6s} {runs[0]['frames']:6d} {max(e2e):13.1f} / {statistics.median(e2e):6.1f}   "
                      f"{max(gen):7.1f} / {statistics.median(gen):5.1f} "
                      f"{min(r['audio_ms_per_frame'] for r in runs):10.2f} "
                      f"{min(r['motion_ms_per_driving_frame'] for r in runs):13.2f} "
                      f"{max(r['peak_rss_mb'] for r in runs):11.0f}  "
                      f"{'yes' if statistics.median(e2e) >= TARGET_FPS else 'no'}", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"facts": facts, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
