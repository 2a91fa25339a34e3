"""Live session benchmark: a speech file fed in real time (``--chunk-ms`` pieces at the wall-clock rate, looped to
``--seconds``) through ``pdfgc.live.LiveSession``; prints the figures, the last line one JSON object.

fps: frames delivered per wall second of the feed (25 = keeping up; the frames the look-ahead still holds when the
feed stops count against it); fps_steady: frames delivered per second between the first and the last frame (the rate
once streaming); latency: from the arrival of a frame's FIRST sample (its
oldest speech, so every sample of the frame waited at most this long) to the frame rendered; cpu_cores: process CPU
time / wall time over the feed; dropped: frames not rendered because they were more than ``--max-delay-ms`` late
(a live display would skip them), plus frames owed but not delivered when the feed stopped beyond the look-ahead;
lookahead_ms: the session's stated wait for speech past a frame's first sample (``LiveSession.lookahead_ms``: the
latency less the push granularity, compute and queueing). Defaults: the shipped live path (the live lips head and
rules, their hop).

    PYTHONPATH=. python3 benchmarks/bench_live.py --seconds 120            # [--rules offline] [--hop N]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EX = ROOT / "pdfgc" / "ui" / "examples"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--audio", default=str(EX / "speech.m4a"))
    ap.add_argument("--portrait", default=str(EX / "anne.png"))
    ap.add_argument("--chunk-ms", type=float, default=30.0)
    ap.add_argument("--hop", type=int, default=None, help="video frames per encoder chunk (default: the session's)")
    ap.add_argument("--rules", choices=("live", "offline"), default="live",
                    help="live: the live lips head and rules (default); offline: the offline ones, for comparison")
    ap.add_argument("--max-delay-ms", type=float, default=1000.0)
    ap.add_argument("--silence-gap", type=float, default=1.0, help="seconds of silence between loops of the file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from pdfgc.live import LiveSession
    from pdfgc.pipeline import TalkingHeadPipeline

    pipe = TalkingHeadPipeline.from_default(device="cpu", threads=1)
    wav = pipe.load_speech(args.audio).wav16k
    loop = np.concatenate([wav, np.zeros(int(args.silence_gap * 16000), np.float32)])
    total = int(args.seconds * 16000)
    feed = np.tile(loop, -(-total // loop.size))[:total]
    rss_start, load_start = rss_mb(), os.getloadavg()[0]
    session = LiveSession(args.portrait, pipeline=pipe, hop=args.hop, max_delay=args.max_delay_ms / 1000,
                          rules=args.rules)
    hop, lookahead = session.stream.hop, session.lookahead_ms
    step = int(round(args.chunk_ms * 16))
    lat, frames, ready = [], 0, []
    rss_mid = None
    cpu0, t0 = time.process_time(), time.perf_counter()
    sent = 0
    while sent < total:
        due = int((time.perf_counter() - t0) * 16000 // step * step) + step   # what the microphone has given by now
        if due <= sent:
            time.sleep(max(0.0, (sent + step) / 16000 - (time.perf_counter() - t0)))
            continue
        piece = feed[sent:min(due, total)]
        sent += piece.size
        for f in session.push(piece):
            lat.append(f.ready - f.heard)
            ready.append(f.ready)
            frames += 1
        if rss_mid is None and sent >= total // 2:
            rss_mid = rss_mb()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    owed = total // 640 - session.emitted   # frames the feed covered but the look-ahead still holds
    rss_end = rss_mb()
    load = os.getloadavg()[0]
    session.close()
    lat_ms = np.array(lat) * 1000
    out = {"seconds": args.seconds, "rules": session.rules, "hop_frames": hop, "lookahead_ms": lookahead,
           "chunk_ms": args.chunk_ms, "frames": frames,
           "fps": round(frames / wall, 2),
           "fps_steady": round((len(ready) - 1) / (ready[-1] - ready[0]), 2) if len(ready) > 1 else None,
           "dropped": int(session.dropped), "held_at_end": int(owed),
           "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 1) if lat else None,
           "latency_ms_p95": round(float(np.percentile(lat_ms, 95)), 1) if lat else None,
           "latency_ms_max": round(float(lat_ms.max()), 1) if lat else None,
           "cpu_cores": round(cpu / wall, 3), "rss_mb_start": round(rss_start, 1),
           "rss_mb_mid": round(rss_mid or 0.0, 1), "rss_mb_end": round(rss_end, 1),
           "rss_mb_after_close": round(rss_mb(), 1), "load_avg_1min_start": round(load_start, 2),
           "load_avg_1min": round(load, 2)}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
