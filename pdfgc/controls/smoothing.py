"""The official temporal smoothing of codes (spec 1.5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_kernel3() -> torch.Tensor:
    """exp(-x^2/2) for x in {-1,0,1}, normalised, in float32 as the official code computes it."""
    x = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float32)
    k = torch.exp(-x * x / 2)
    return k / k.sum()


def smooth_mouth(codes: torch.Tensor) -> torch.Tensor:
    """(T,D) -> (T,D): 3-tap Gaussian along time with zero padding (ends drop to ~73 %), the official mouth filter."""
    x = codes.t()[:, None, :]  # (D,1,T)
    y = F.conv1d(x, gaussian_kernel3().to(codes.dtype).view(1, 1, 3), padding=1)
    return y[:, 0, :].t().contiguous()


def smooth_box3(codes: torch.Tensor) -> torch.Tensor:
    """(T,D) -> (T,D): mean of t-1, t, t+1; two-tap at the ends (the official head-pose filter)."""
    t = codes.shape[0]
    if t < 2:
        return codes.clone()
    out = torch.empty_like(codes)
    out[1:-1] = (codes[:-2] + codes[1:-1] + codes[2:]) / 3
    out[0] = (codes[0] + codes[1]) / 2
    out[-1] = (codes[-2] + codes[-1]) / 2
    return out


SMOOTHERS = {"none": lambda c: c, "gaussian3": smooth_mouth, "box3": smooth_box3}
