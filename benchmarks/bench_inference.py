"""End-to-end inference benchmark: frames/s and peak memory per precision mode, PSNR of fast vs exact frames, and
memory flatness from short to long audio. Prints figures; it is not a test.

    python benchmarks/bench_inference.py                       # 10 s job, exact and fast, + 60 s memory check
    python benchmarks/bench_inference.py --seconds 10 --modes exact --memory-seconds ""

Each run is a fresh subprocess (clean peak RSS) on the official demo case: anne.png, speech, and the shipped
pose / expression / eye frame folders, all five controls on, result layout, mp4 with sound written. Timing covers
everything after the model is built: audio decoding, mel windows, driving frames, encoders, generator, H.264/AAC.
Weights: full-size official architecture (seeded rule weights unless --weights), since speed does not depend on values.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared")) / "data" / "pdfgc"
# the official code on this machine, same weights, spec section 6: 51.0 s of Tester.inference for 47 frames
OFFICIAL_S_PER_FRAME = 51.0 / 47


def make_audio(seconds: float, path: Path) -> None:
    import av
    import numpy as np

    from pdfgc.media.audio_io import decode_audio
    from pdfgc.media.video import VideoWriter  # noqa: F401 (PyAV present)

    parts, rate = [], None
    for f in ("audio_longer.mp3", "playaudio_20s.mp3"):
        a, rate_f = decode_audio(DATA / f)
        rate = rate or rate_f
        parts.append(a.mean(0))
    speech = np.concatenate(parts)
    n = int(seconds * rate)
    speech = np.tile(speech, n // len(speech) + 1)[:n].astype(np.float32)
    with av.open(str(path), "w") as c:  # 16-bit wav
        s = c.add_stream("pcm_s16le", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray((speech[None] * 32767).astype(np.int16), format="s16", layout="mono")
        frame.sample_rate = rate
        for p in s.encode(frame):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)


def child(args) -> None:
    import numpy as np
    import torch

    from pdfgc.families.pdfgc.model import PDFGC
    from pdfgc.pipeline import AnimateOptions, TalkingHeadPipeline

    tmp = Path(args.tmp)
    audio = tmp / f"speech_{args.seconds:g}s.wav"
    if not audio.exists():
        make_audio(args.seconds, audio)
    model = PDFGC.from_pretrained(args.weights) if args.weights else PDFGC.random(0)
    model.config.trained = True  # silence the untrained banner inside the benchmark
    pipe = TalkingHeadPipeline(model, device=args.device, threads=args.threads)
    opt = AnimateOptions(pose=str(DATA / "motions/pose/681600002"),
                         emotion=str(DATA / "motions/exp/vox2_id01228_00309"),
                         eyes=str(DATA / "motions/eye/id01333_00040/images"), precision=args.mode, progress=False,
                         batch_size=args.batch_size)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    plan = pipe.plan(DATA / "anne.png", audio, opt)
    t_plan = time.perf_counter() - t0
    out = tmp / f"bench_{args.mode}_{args.seconds:g}.mp4"
    t1 = time.perf_counter()
    res = pipe(DATA / "anne.png", audio=audio, output=out, options=opt)
    t_total = time.perf_counter() - t1
    if args.dump_frames:
        frames = [img for _, img in pipe.render(plan, opt, stop=args.dump_frames)]
        np.save(tmp / f"frames_{args.mode}.npy", torch.cat(frames).numpy())
    print(json.dumps({
        "mode": args.mode, "seconds": args.seconds, "frames": res.num_frames, "wall_s": t_total,
        "plan_s": t_plan, "fps": res.num_frames / t_total, "peak_rss_mb": resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_after_load_mb": rss0 / 1024, "threads": pipe.threads,
        "device": str(pipe.device)}))


def run_child(mode, seconds, tmp, args, dump=0):
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--seconds", str(seconds), "--tmp", tmp,
           "--threads", str(args.threads), "--device", args.device, "--dump-frames", str(dump)]
    if args.weights:
        cmd += ["--weights", args.weights]
    if args.batch_size:
        cmd += ["--batch-size", str(args.batch_size)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--modes", default="exact,fast")
    ap.add_argument("--memory-seconds", default="10,60", help="comma list of audio lengths for the memory check "
                                                              "(fast mode); empty to skip")
    ap.add_argument("--psnr-frames", type=int, default=25)
    ap.add_argument("--weights")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="exact", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    ap.add_argument("--dump-frames", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)
    official_fps = 1 / OFFICIAL_S_PER_FRAME
    print(f"official code on this CPU (spec section 6): {official_fps:.3f} frames/s")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in [m for m in args.modes.split(",") if m]:
            r = run_child(mode, args.seconds, tmp, args, dump=args.psnr_frames)
            results.append(r)
            print(f"{mode:6s} {r['seconds']:5.1f} s audio: {r['frames']} frames in {r['wall_s']:.1f} s = "
                  f"{r['fps']:.3f} frames/s ({r['fps'] / official_fps:.2f}x official), peak RSS "
                  f"{r['peak_rss_mb']:.0f} MB, {r['threads']} threads on {r['device']}", flush=True)
        if all((Path(tmp) / f"frames_{m}.npy").exists() for m in ("exact", "fast")):
            import numpy as np
            a = np.load(Path(tmp) / "frames_exact.npy")
            b = np.load(Path(tmp) / "frames_fast.npy")
            mse = float(np.mean(((a - b) / 2) ** 2))  # images in [-1,1] -> [0,1]
            psnr = 10 * np.log10(1 / max(mse, 1e-20))
            print(f"fast vs exact, first {a.shape[0]} frames: PSNR {psnr:.1f} dB, max |diff| "
                  f"{float(np.abs(a - b).max()) * 127.5:.1f} levels")
        for s in [float(x) for x in args.memory_seconds.split(",") if x]:
            r = run_child("fast", s, tmp, args)
            print(f"memory: fast {s:5.1f} s audio ({r['frames']} frames): peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"({r['fps']:.3f} frames/s)", flush=True)


if __name__ == "__main__":
    main()
