"""Lip-sync measured without a lip-sync network: the mouth opening from the face mesh against the speech envelope
(log-RMS at 25 fps), with the best offset searched over +-8 frames (dependencies.md: matched audio r 0.16-0.32 on
the official outputs, another clip's audio -0.07-0.12)."""
from __future__ import annotations

import numpy as np

from ..vocabulary import FPS, SAMPLE_RATE


def speech_envelope(wav16k: np.ndarray, num_frames: int, fps: float = FPS, sr: int = SAMPLE_RATE) -> np.ndarray:
    """log-RMS of the speech over each video frame's own 40 ms (frame i covers [i/fps, (i+1)/fps))."""
    hop = sr / fps
    out = np.full(num_frames, np.nan)
    for i in range(num_frames):
        seg = wav16k[int(round(i * hop)):int(round((i + 1) * hop))]
        if seg.size:
            out[i] = np.log(np.sqrt(np.mean(np.square(seg, dtype=np.float64))) + 1e-4)
    return out
