"""Which audio layouts crash PyAV's decoding path, and do they decode with pdfgc's (issue 22).

For each channel count 1-8, several rates and sample formats (Python's `wave`: no channel mask; scipy: a mask
above 2 channels), a 0.25 s WAV is decoded in a child process two ways:
  old: av.AudioResampler(format="fltp") + AudioFrame.to_ndarray (pdfgc's decoding before issue 22)
  new: pdfgc.media.audio_io.decode_audio (samples converted in numpy from the first `channels` planes)
and the child's exit status is printed (-11 = SIGSEGV). Run: python3 benchmarks/audio_layouts_crash_scan.py
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import numpy as np

OLD = """
import sys, av
c = av.open(sys.argv[1]); s = c.streams.audio[0]; r = None
for f in c.decode(s):
    r = r or av.AudioResampler(format="fltp", layout=f.layout, rate=f.sample_rate)
    for o in r.resample(f):
        o.to_ndarray()
"""
NEW = "import sys; from pdfgc.media.audio_io import decode_audio; decode_audio(sys.argv[1])"


def write(path: Path, ch: int, rate: int, kind: str) -> None:
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (rate // 4, ch))
    if kind.startswith("wave"):
        width = int(kind[4:])
        full = 2 ** (8 * width - 1) - 1
        data = (x * 127 + 128).astype(np.uint8) if width == 1 else (x * full).astype(f"<i{width}")
        with wave.open(str(path), "wb") as w:
            w.setnchannels(ch)
            w.setsampwidth(width)
            w.setframerate(rate)
            w.writeframes(data.tobytes())
    else:
        import scipy.io.wavfile
        scipy.io.wavfile.write(str(path), rate, x.astype(kind))


def main() -> None:
    repo = str(Path(__file__).resolve().parents[1])
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for ch in range(1, 9):
            for rate, kind in [(8000, "wave1"), (16000, "wave2"), (96000, "wave4"), (48000, "float32"),
                               (192000, "int16"), (44100, "float64")]:
                p = Path(d) / f"{ch}_{rate}_{kind}.wav"
                write(p, ch, rate, kind)
                rc = [subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, cwd=repo,
                                     env={"PYTHONPATH": repo, "OMP_NUM_THREADS": "1"}).returncode
                      for code in (OLD, NEW)]
                rows.append((ch, rate, kind, *rc))
                print(f"{ch} ch {rate:6d} Hz {kind:8s} old exit {rc[0]:4d}  new exit {rc[1]:4d}", flush=True)
    crashed = sorted({r[0] for r in rows if r[3] != 0})
    print(f"old path crashed on channel counts {crashed} ({sum(r[3] != 0 for r in rows)}/{len(rows)} files); "
          f"new path failed on {sum(r[4] != 0 for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()
