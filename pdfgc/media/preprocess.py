"""224 crops (uint8 RGB) <-> network tensors in [-1,1]: the official crop-zoom (``pdfgc.official_rules``)
then /255*2-1 on the way in; the official truncation or our rounding on the way out.
"""
from __future__ import annotations

import cv2
import numpy as np
import torch

from ..official_rules import SIZE, official_crop_zoom

__all__ = ["SIZE", "official_crop_zoom", "to_tensor", "preprocess", "to_uint8", "to_uint8_truncated"]


def to_tensor(images_rgb: np.ndarray) -> torch.Tensor:
    """uint8 (H,W,3) or (N,H,W,3) -> float32 (N,3,H,W) in [-1,1], as the official /255*2-1."""
    a = np.asarray(images_rgb)
    if a.ndim == 3:
        a = a[None]
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float()
    return t / 255.0 * 2.0 - 1.0


def preprocess(images_rgb, official_crop: bool = True, size: int = SIZE) -> torch.Tensor:
    """224 crops (uint8 RGB) -> the network input tensor (N,3,224,224)."""
    a = np.asarray(images_rgb)
    if a.ndim == 3:
        a = a[None]
    if official_crop:
        a = np.stack([official_crop_zoom(x, size) for x in a])
    elif a.shape[1:3] != (size, size):
        a = np.stack([cv2.resize(x, (size, size)) for x in a])
    return to_tensor(a)


def to_uint8_truncated(images: torch.Tensor) -> np.ndarray:
    """Generator output (N,3,H,W) in [-1,1] -> uint8 RGB (N,H,W,3) as the official code converts it
    ((x+1)/2*255 truncated, no rounding)."""
    if images.dtype == torch.uint8:  # already pixels (the mesh-warp renderer's)
        return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    x = ((images.float() + 1) / 2 * 255).permute(0, 2, 3, 1).cpu().numpy()
    return x.astype(np.uint8)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output -> uint8 RGB, rounded and clipped (our default for video; the official truncates)."""
    if images.dtype == torch.uint8:  # already pixels (the mesh-warp renderer's)
        return images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    x = ((images.float() + 1) * 127.5).round().clamp(0, 255).permute(0, 2, 3, 1)
    return x.to(torch.uint8).cpu().numpy()
