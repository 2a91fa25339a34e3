"""Peak memory of `pdfgc animate` against audio length and against rendered length (issue 13, item 3).

Each case runs the real command in a fresh subprocess and reads its peak RSS from the kernel (os.wait4), so one
case's heap never inflates another's. Two questions:

1. Does memory depend on the audio's length when the same number of frames is rendered?
   10 s, 5 min and 30 min of audio, each with --max-frames 50.
2. Does memory depend on the number of frames rendered?
   30 s of audio rendered whole (750 frames) vs 5 min (7500 frames).

The README's claim is that it does not: peak RSS within 10 % across each group. The audio is synthetic speech-like
sound (voiced harmonics with a syllable envelope, plus noise) written as 16-bit wav with numpy and the standard
library; nothing is downloaded. The model is the tiny test configuration (`families.pdfgc.testing.tiny_model`: the same
pipeline at a few channels, so the figures are the pipeline's own memory, not the networks'), or `--model default`.

    python benchmarks/bench_memory.py                 # both groups (about 5-10 minutes on 2 CPU cores)
    python benchmarks/bench_memory.py --quick         # 10 s / 60 s / 5 min audio, 10 s vs 60 s rendered
    python benchmarks/bench_memory.py --json out.json # also write the figures
    python benchmarks/bench_memory.py --only audio    # one group
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RATE = 16000
PORTRAIT = REPO / "pdfgc" / "ui" / "examples" / "anne.png"


def write_speech_wav(path: Path, seconds: float, rate: int = RATE, seed: int = 0, block_s: float = 10.0) -> Path:
    """Speech-like 16-bit mono wav of `seconds`, written block by block (an hour never sits in memory here)."""
    rng = np.random.default_rng(seed)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        done = 0
        total = int(seconds * rate)
        while done < total:
            n = min(int(block_s * rate), total - done)
            t = (done + np.arange(n)) / rate
            f0 = 120 + 30 * np.sin(2 * np.pi * 0.3 * t)               # a wandering pitch
            phase = 2 * np.pi * np.cumsum(f0) / rate
            voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
            syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2  # ~4 syllables a second
            x = 0.25 * syllables * voiced + 0.01 * rng.standard_normal(n)
            w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
            done += n
    return path


def peak_rss_mb(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(peak RSS MB, wall seconds, stderr tail) of `cmd` run to completion in a fresh process."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read().decode(errors="replace")[-1500:]
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{tail}")
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, tail  # ru_maxrss is in KiB on Linux


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="tiny", help="tiny (default) | default (the packaged model) | a weights file")
    ap.add_argument("--quick", action="store_true", help="shorter cases (10 s / 60 s / 5 min; 10 s vs 60 s)")
    ap.add_argument("--frames", type=int, default=50, help="frames rendered in the audio-length group (default 50)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", choices=["audio", "render"], help="run one group only")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--keep", help="folder for the generated audio and outputs (default: a temporary one)")
    args = ap.parse_args(argv)

    audio_group = [10, 60, 300] if args.quick else [10, 300, 1800]
    render_group = [10, 60] if args.quick else [30, 300]
    work = Path(args.keep or tempfile.mkdtemp(prefix="pdfgc-bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

    weights: list[str] = []
    if args.model == "tiny":
        import torch
        torch.set_num_threads(1)
        from pdfgc.families.pdfgc.testing import tiny_model
        weights = ["--weights", str(tiny_model(0).save_pretrained(work / "tiny.safetensors"))]
    elif args.model != "default":
        weights = ["--weights", args.model]

    def animate(audio: Path, extra: list[str]) -> list[str]:
        return [sys.executable, "-m", "pdfgc.cli", "animate", *weights, "--portrait", str(PORTRAIT),
                "--audio", str(audio), "--threads", str(args.threads), "--quiet", "-o", str(work / "out.mp4"),
                *extra]

    rows = []
    groups = [("audio", "audio length, same frames", audio_group, ["--max-frames", str(args.frames)]),
              ("render", "rendered length", render_group, [])]
    for key, group, lengths, extra in groups:
        if args.only and key != args.only:
            continue
        for s in lengths:
            wav = work / f"speech_{s}s.wav"
            if not wav.is_file():
                write_speech_wav(wav, s)
            rss, wall, tail = peak_rss_mb(animate(wav, extra), env)
            frames = args.frames if extra else int(s * 25)
            rows.append(dict(group=group, audio_s=s, frames=frames, peak_rss_mb=round(rss, 1), wall_s=round(wall, 1)))
            print(f"  {group}: {s} s of audio, {frames} frames: {rss:.0f} MB peak RSS ({wall:.0f} s)", flush=True)

    print(f"\nmodel: {args.model}; threads: {args.threads}; peak RSS of `pdfgc animate` in a fresh process\n")
    print(f"{'group':<28} {'audio':>8} {'frames':>7} {'peak RSS':>10} {'vs first':>9} {'wall':>7}")
    for group in dict.fromkeys(r["group"] for r in rows):
        g = [r for r in rows if r["group"] == group]
        for r in g:
            r["vs_first"] = round(r["peak_rss_mb"] / g[0]["peak_rss_mb"] - 1, 4)
            print(f"{group:<28} {r['audio_s']:>7}s {r['frames']:>7} {r['peak_rss_mb']:>8.0f}MB "
                  f"{100 * r['vs_first']:>+8.1f}% {r['wall_s']:>6.0f}s")
        spread = max(r["peak_rss_mb"] for r in g) / min(r["peak_rss_mb"] for r in g) - 1
        verdict = "flat (within 10 %)" if spread <= 0.10 else "GROWS (more than 10 %)"
        print(f"{'':<28} spread {100 * spread:.1f} %: {verdict}")
    if args.json:
        Path(args.json).write_text(json.dumps({"model": args.model, "threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
