"""Driving-frame augmentation for stage 1 [recovered: the authors' `augitem` settings]: colour jitter (brightness
0.5, contrast 0.4, saturation 0.4, hue 0.4, applied in a random order as torchvision's ColorJitter does) and a random
perspective warp (distortion scale 0.1, probability 0.9, bilinear, black fill, torchvision's corner sampling).

Written in plain torch because torchvision does not work on this machine; every random draw comes from the
`torch.Generator` passed in, so a batch's augmentation is a pure function of the sampler's seed.
Images are (B,3,H,W) in [-1,1], as the networks see them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    brightness: float = 0.5
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.4
    perspective_scale: float = 0.1
    perspective_p: float = 0.9


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand((), generator=g))


def _grayscale(img: torch.Tensor) -> torch.Tensor:
    r, g, b = img.unbind(-3)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)


def rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    """(...,3,H,W) RGB in [0,1] -> HSV in [0,1] (torchvision's formulas)."""
    r, g, b = img.unbind(-3)
    maxc, _ = img.max(dim=-3)
    minc, _ = img.min(dim=-3)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    h, s, v = img.unbind(-3)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int32) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    mask = i.unsqueeze(-3) == torch.arange(6, device=i.device).view(-1, 1, 1)
    a1 = torch.stack((v, q, p, p, t, v), dim=-3)
    a2 = torch.stack((t, v, v, q, p, p), dim=-3)
    a3 = torch.stack((p, p, t, v, v, q), dim=-3)
    a4 = torch.stack((a1, a2, a3), dim=-4)
    return torch.einsum("...ijk,...xijk->...xjk", mask.to(img.dtype), a4)


def color_jitter(img01: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """One image (3,H,W) in [0,1]: the four adjustments in a random order, factors as torchvision draws them."""
    order = torch.randperm(4, generator=g).tolist()
    b = _uniform(g, max(0.0, 1 - cfg.brightness), 1 + cfg.brightness)
    c = _uniform(g, max(0.0, 1 - cfg.contrast), 1 + cfg.contrast)
    s = _uniform(g, max(0.0, 1 - cfg.saturation), 1 + cfg.saturation)
    h = _uniform(g, -cfg.hue, cfg.hue)
    x = img01
    for op in order:
        if op == 0:
            x = (x * b).clamp(0, 1)
        elif op == 1:
            m = _grayscale(x).mean()
            x = (c * x + (1 - c) * m).clamp(0, 1)
        elif op == 2:
            x = (s * x + (1 - s) * _grayscale(x)).clamp(0, 1)
        else:
            hsv = rgb_to_hsv(x)
            hsv = torch.stack((torch.remainder(hsv[0] + h, 1.0), hsv[1], hsv[2]))
            x = hsv_to_rgb(hsv)
    return x


def perspective_corners(h: int, w: int, scale: float, g: torch.Generator) -> tuple[list, list]:
    """torchvision RandomPerspective.get_params: (startpoints, endpoints), each [[x,y]]*4 (TL, TR, BR, BL)."""
    hh, hw = h // 2, w // 2
    dx, dy = int(scale * hw) + 1, int(scale * hh) + 1

    def ri(lo: int, hi: int) -> int:
        return int(torch.randint(lo, hi, (1,), generator=g))

    tl = [ri(0, dx), ri(0, dy)]
    tr = [ri(w - dx, w), ri(0, dy)]
    br = [ri(w - dx, w), ri(h - dy, h)]
    bl = [ri(0, dx), ri(h - dy, h)]
    return [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], [tl, tr, br, bl]


def homography(src: list, dst: list) -> torch.Tensor:
    """3x3 H with H @ [x_src, y_src, 1] ~ [x_dst, y_dst, 1] from four point pairs."""
    a, bvec = [], []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        bvec += [u, v]
    sol = torch.linalg.solve(torch.tensor(a, dtype=torch.float64), torch.tensor(bvec, dtype=torch.float64))
    return torch.cat([sol, sol.new_ones(1)]).view(3, 3)


def warp_perspective(img: torch.Tensor, startpoints: list, endpoints: list) -> torch.Tensor:
    """Move the content at `startpoints` to `endpoints` (torchvision `perspective`), bilinear, zero fill.
    img (C,H,W)."""
    _, h, w = img.shape
    hmat = homography(endpoints, startpoints)  # output pixel -> input pixel
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], -1) @ hmat.t()
    src = pts[..., :2] / pts[..., 2:]
    grid = torch.stack([(2 * src[..., 0] + 1) / w - 1, (2 * src[..., 1] + 1) / h - 1], -1)
    return F.grid_sample(img[None], grid[None].to(img.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0]


def augment_driving(frames: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """(B,3,H,W) in [-1,1] -> augmented copy (colour jitter, then the perspective warp with probability p)."""
    out = []
    for img in frames:
        x = color_jitter((img.float() + 1) / 2, cfg, g)
        if float(torch.rand((), generator=g)) < cfg.perspective_p:
            start, end = perspective_corners(x.shape[1], x.shape[2], cfg.perspective_scale, g)
            x = warp_perspective(x, start, end)
        out.append(x * 2 - 1)
    return torch.stack(out).to(frames.dtype)
