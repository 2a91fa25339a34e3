"""The official PD-FGC inference rules, in one place (spec 1.5 and 2.1):

- the code multipliers: mouth x1.5, eye (blink and gaze) x1.2, emotion x1.2, pose x1;
- the temporal filters: a 3-tap Gaussian over the mouth code, a 3-tap box over the pose code;
- the driving schedule: the first two frames of every driving sequence are dropped (they pair with the audio's
  first two target frames) and the rest loops cyclically (output frame i uses source frame 2 + (i mod (N-2)));
  ``pingpong`` plays forward then backward, ``hold`` freezes on the last frame, ``strict`` refuses a source
  shorter than the output;
- the crop: every aligned 224 crop is cut to rows [0,192) and columns [16,208) and resized back to 224
  (INTER_LINEAR) before the networks see it.

The PD-FGC family (``pdfgc.families.pdfgc``) applies these; other families take what fits them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError
from .vocabulary import DRIVING_MODES

if TYPE_CHECKING:  # pragma: no cover
    import torch

# cv2 and torch are imported by the functions that use them: the constants below are read while the CLI's parser is
# built (pdfgc.options), before any work needs either

# ---- code multipliers (the defaults of ModelConfig; a weights file may carry its own)
MOUTH_SCALE = 1.5
EYE_SCALE = 1.2
EMOTION_SCALE = 1.2
POSE_SCALE = 1.0

# ---- the crop
SIZE = 224
CROP_ROWS = (0, 192)
CROP_COLS = (16, 208)


def crop_zoom_matrix(size: int = SIZE) -> np.ndarray:
    """(2,3) affine: 224-crop pixels -> network-input pixels after the crop and resize (cv2's half-pixel
    convention: pixel centres at +0.5)."""
    s = size / (CROP_ROWS[1] - CROP_ROWS[0])
    return np.array([[s, 0.0, (0.5 - CROP_COLS[0]) * s - 0.5], [0.0, s, (0.5 - CROP_ROWS[0]) * s - 0.5]])


NETWORK_VIEW_MATRIX = crop_zoom_matrix()


def official_crop_zoom(image_rgb: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 (H,W,3) -> uint8 (224,224,3) after the official resize / fixed crop / zoom."""
    import cv2

    img = image_rgb
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size))
    r0, r1 = (int(round(v * size / SIZE)) for v in CROP_ROWS)
    c0, c1 = (int(round(v * size / SIZE)) for v in CROP_COLS)
    return cv2.resize(np.ascontiguousarray(img[r0:r1, c0:c1]), (size, size))


# ---- temporal filters
def gaussian_kernel3() -> torch.Tensor:
    """exp(-x^2/2) for x in {-1,0,1}, normalised, in float32 as the official code computes it."""
    import torch

    x = torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float32)
    k = torch.exp(-x * x / 2)
    return k / k.sum()


def smooth_mouth(codes: torch.Tensor) -> torch.Tensor:
    """(T,D) -> (T,D): 3-tap Gaussian along time with zero padding (ends drop to ~73 %), the official mouth filter.
    Written as two in-place shifted adds (the official conv1d to float rounding): conv1d's workspace grew with T
    (~35 kB a frame), this needs only the output."""
    k = gaussian_kernel3().to(codes.dtype)
    side, centre = float(k[0]), float(k[1])
    out = codes * centre
    if codes.shape[0] > 1:
        out[1:].add_(codes[:-1], alpha=side)
        out[:-1].add_(codes[1:], alpha=side)
    return out.contiguous()


def smooth_box3(codes: torch.Tensor) -> torch.Tensor:
    """(T,D) -> (T,D): mean of t-1, t, t+1; two-tap at the ends (the official head-pose filter)."""
    import torch

    t = codes.shape[0]
    if t < 2:
        return codes.clone()
    out = torch.empty_like(codes)
    out[1:-1] = (codes[:-2] + codes[1:-1] + codes[2:]) / 3
    out[0] = (codes[0] + codes[1]) / 2
    out[-1] = (codes[-2] + codes[-1]) / 2
    return out


# ---- the driving schedule
OFFICIAL_SKIP = 2


def frame_indices(num_source: int, num_out: int, mode: str = "loop", skip: int = OFFICIAL_SKIP,
                  source: str = "driving source") -> np.ndarray:
    """Source index for each of `num_out` output frames."""
    if mode not in DRIVING_MODES:
        raise InputError(f"unknown driving mode '{mode}' (choose from {', '.join(DRIVING_MODES)})")
    usable = num_source - skip
    if usable < 1:
        raise InputError(f"{source}: has {num_source} frame(s); at least {skip + 1} are needed "
                         f"(the first {skip} are skipped, as in the official code)")
    i = np.arange(num_out)
    if mode == "strict":
        if usable < num_out:
            raise InputError(f"{source}: has {num_source} frames but {num_out + skip} are needed for "
                             f"{num_out} output frames (first {skip} skipped); use --driving-mode loop, "
                             "pingpong or hold to reuse frames")
        return skip + i
    if mode == "loop":
        return skip + i % usable
    if mode == "hold":
        return skip + np.minimum(i, usable - 1)
    # pingpong: 0,1,..,u-1,u-2,..,1,0,1,... (period 2u-2)
    if usable == 1:
        return np.full(num_out, skip)
    period = 2 * usable - 2
    j = i % period
    return skip + np.where(j < usable, j, period - j)
