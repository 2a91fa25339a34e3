"""Close-up strips of held-out music / lip-synced clips: the real mouth, the render with silero's gate alone (the
parameters file before the voice classifier) and with the voice-over-music gate, frame by frame.

    python benchmarks/meshwarp_lips_music_strip.py --before OLD.safetensors [--clips tbh jue] [--out PNG]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def mouth_crop(frame: np.ndarray, mesh: np.ndarray, size: int = 160) -> np.ndarray:
    """A tight square close-up of the lips (0.75 of the corner-to-corner width each side of their centre)."""
    import cv2

    c = mesh[[61, 291, 13, 14], :2].mean(0)
    half = 0.75 * np.linalg.norm(mesh[61, :2] - mesh[291, :2])
    x0, y0 = int(max(c[0] - half, 0)), int(max(c[1] - half, 0))
    x1, y1 = int(min(c[0] + half, frame.shape[1])), int(min(c[1] + half, frame.shape[0]))
    return cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1]), (size, size), interpolation=cv2.INTER_CUBIC)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ROOT.parent / "prepared_corpus")
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--clips", nargs="+", default=["tbh", "jue"])
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--step", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/meshwarp/lips_music_s32_strip.png")
    a = ap.parse_args()
    import matplotlib
    import torch

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from meshwarp_lips import opening_of_frames, render_frames

    from pdfgc.data import PreparedCorpus
    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp.lips_train import load_lip_clips
    from pdfgc.media.audio_io import decode_speech
    from pdfgc.pipeline import TalkingHeadPipeline

    torch.set_num_threads(1)
    pipes = {"silero gate (before)": TalkingHeadPipeline.from_pretrained(a.before),
             "voice-over-music gate (after)": TalkingHeadPipeline.from_default()}
    corpus = PreparedCorpus(a.data)
    raw = Path(corpus.manifest["settings"]["raw_root"])
    clips = [c for c in load_lip_clips(a.data, None, pipes["voice-over-music gate (after)"].family.params,
                                       log=lambda m: None) if c.heldout]
    panels = []
    for name in a.clips:
        c = next(x for x in clips if f"__{name}__" in x.key)
        n = len(c.target)
        wav = decode_speech(raw / c.source)[0][c.start * 640:(c.start + n) * 640]
        n = min(n, len(wav) // 640)
        renders = {}
        for label, pipe in pipes.items():
            portrait = pipe.load_portrait(corpus.load_frames(c.key, [c.ref])[0], align="never")
            plan = pipe.plan(portrait, wav, lips="audio", max_frames=n, progress=False)
            renders[label] = render_frames(pipe, plan)
            n = min(n, len(renders[label]))
        real = corpus.load_frames(c.key, list(range(n)))
        o = np.nan_to_num(S.mouth_opening(c.mesh[:n]))
        span = a.frames * a.step
        s0 = int(np.argmax([o[i:i + span].std() for i in range(max(n - span + 1, 1))]))
        idx = list(range(s0, min(s0 + span, n), a.step))
        rows = [np.concatenate([mouth_crop(real[i], c.mesh[i]) for i in idx], 1)]
        labels = ["real mouth"]
        for label, frames in renders.items():
            _, mesh = opening_of_frames(frames[idx])
            rows.append(np.concatenate([mouth_crop(frames[i], np.nan_to_num(m)) for i, m in zip(idx, mesh)], 1))
            labels.append(label)
        panels.append((f"{c.identity} / {name}: frames {idx[0]}-{idx[-1]}, every {a.step}", rows, labels))
    fig, axes = plt.subplots(len(panels), 1, figsize=(a.frames * 1.2, 4.0 * len(panels)), squeeze=False)
    for ax, (title, rows, labels) in zip(axes[:, 0], panels):
        ax.imshow(np.concatenate(rows, 0))
        for k, lab in enumerate(labels):
            ax.text(3, 14 + 160 * k, lab, color="yellow", fontsize=8)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(a.out, dpi=100)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
