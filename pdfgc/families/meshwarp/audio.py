"""The OLD lips network: the official 16 kHz mel windows (T,1,80,20) -> the mesh-warp mouth code (T,Dm).

Inference no longer reads it (the default model's lips are ``lips.py``: Whisper base + a linear head, fitted by
``lips_train.py``); it stays only because ``pdfgc train --config meshwarp`` (``train.py``'s step 3, its tests and
the GPU check) still trains it. A parameters file holding it has no lips from speech until ``lips_train copy``
puts a lips head in.

``AudioToMouth``: each frame's window is read as 20 time steps of 80 mel bands by a 1-D convolution stack (time
x frequency patterns: a formant transition is a pattern across bands), pooled to one vector per frame; a temporal
convolution over the sequence of frames (``context`` frames each side, zero-padded at the ends) adds
co-articulation (the mouth moves ahead of the sound); a linear head gives the mouth code. ``visual`` embeds a
mouth code into the same space as the audio embedding for the lip InfoNCE (the paper's lip recipe, with the
mesh-measured mouth code as the visual side).

At inference ``predict_mouth`` applies the official 3-tap Gaussian (``pdfgc.official_rules.smooth_mouth``).
The mouth code is relative to the neutral closed mouth (0 = closed), in canonical units (``codes.py``).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ...errors import CheckpointError
from ...official_rules import smooth_mouth

DEFAULT_CONFIG = {"mouth_dim": 16, "channels": 96, "embed": 128, "context": 2, "nce_dim": 64}
DROPOUT = 0.2  # training only; the corpus is small (~11 min of speech) and the network overfits it


class AudioToMouth(nn.Module):
    def __init__(self, mouth_dim: int = 16, channels: int = 96, embed: int = 128, context: int = 2,
                 nce_dim: int = 64):
        super().__init__()
        self.config = {"mouth_dim": mouth_dim, "channels": channels, "embed": embed, "context": context,
                       "nce_dim": nce_dim}
        c = channels
        self.frame = nn.Sequential(  # (N,80,20): mel bands as channels, the window's 20 steps as time
            nn.Conv1d(80, c, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),   # 10
            nn.Conv1d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),   # 5
        )
        self.pool = nn.Linear(c * 5, embed)
        self.drop = nn.Dropout(DROPOUT)
        k = 2 * context + 1
        self.temporal = nn.Sequential(
            nn.Conv1d(embed, embed, k, padding=context), nn.LeakyReLU(0.2),
            nn.Conv1d(embed, embed, k, padding=context), nn.LeakyReLU(0.2),
        )
        self.head = nn.Linear(embed, mouth_dim)
        # per-dimension spread of the mouth code (set from the training data): the head predicts codes in these
        # units and the visual embedding reads them, so every dimension starts on an equal footing
        self.register_buffer("code_scale", torch.ones(mouth_dim))
        self.audio_proj = nn.Linear(embed, nce_dim)
        self.visual = nn.Sequential(nn.Linear(mouth_dim, embed), nn.LeakyReLU(0.2), nn.Linear(embed, nce_dim))
        # codes are small numbers (canonical units); the head starts small so early steps predict ~closed
        nn.init.normal_(self.head.weight, std=1e-2)
        nn.init.zeros_(self.head.bias)

    def features(self, mel: torch.Tensor) -> torch.Tensor:
        """(B,L,1,80,20) or (L,1,80,20) windows -> (B,L,embed) per-frame features with temporal context."""
        squeeze = mel.dim() == 4
        if squeeze:
            mel = mel[None]
        b, t = mel.shape[:2]
        x = mel.reshape(b * t, 80, 20)
        x = self.frame(x).flatten(1)
        x = self.drop(torch.nn.functional.leaky_relu(self.pool(x), 0.2)).reshape(b, t, -1)
        x = self.drop(x + self.temporal(x.transpose(1, 2)).transpose(1, 2))
        return x[0] if squeeze else x

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Mouth codes (…,L,mouth_dim) (no smoothing)."""
        return self.head(self.features(mel)) * self.code_scale

    def embeddings(self, mel: torch.Tensor, mouth: torch.Tensor):
        """(mouth prediction, audio embedding, visual embedding) for training; embeddings L2-normalised."""
        f = self.features(mel)
        a = torch.nn.functional.normalize(self.audio_proj(f), dim=-1)
        v = torch.nn.functional.normalize(self.visual(mouth / self.code_scale), dim=-1)
        return self.head(f) * self.code_scale, a, v


def info_nce(a: torch.Tensor, v: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric InfoNCE over N pairs (N,D): row i of a matches row i of v; the other rows (other times and clips
    in the batch) are the negatives."""
    logits = a @ v.t() / temperature
    target = torch.arange(len(a), device=a.device)
    return 0.5 * (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.t(), target))


def build(config: dict | None = None) -> AudioToMouth:
    cfg = dict(DEFAULT_CONFIG)
    cfg.update(config or {})
    return AudioToMouth(**{k: int(cfg[k]) for k in DEFAULT_CONFIG})


def from_params(params) -> AudioToMouth:
    """The trained network stored in ``MeshParams`` (``CheckpointError`` if it has none or it does not fit)."""
    if not params.audio_state:
        raise CheckpointError("meshwarp parameters: no audio network in this file (train one with "
                              "`python -m pdfgc.families.meshwarp.train`)")
    net = build(params.audio_config)
    try:
        net.load_state_dict(params.audio_state, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"meshwarp parameters: audio network does not match its config ({e})") from None
    return net.eval()


@torch.no_grad()
def predict_mouth(net: AudioToMouth, mel_windows, batch: int = 2048, smooth: bool = True) -> np.ndarray:
    """(T,1,80,20) official mel windows -> (T,Dm) float32 mouth codes (one sequence; windows batched in chunks
    with ``context`` frames of overlap so the result does not depend on ``batch``), Gaussian-smoothed."""
    mel = torch.as_tensor(np.asarray(mel_windows, np.float32))
    t = len(mel)
    if t == 0:
        return np.zeros((0, net.config["mouth_dim"]), np.float32)
    pad = 2 * net.config["context"]  # two temporal layers: the receptive field is 2 * context each side
    out = []
    for start in range(0, t, batch):
        a, b = max(0, start - pad), min(t, start + batch + pad)
        y = net(mel[a:b])
        out.append(y[start - a: start - a + min(batch, t - start)])
    y = torch.cat(out)
    if smooth:
        y = smooth_mouth(y)
    return y.numpy().astype(np.float32)
