"""Multi-scale PatchGAN discriminator for training (the authors' `MultiscaleDiscriminator`, spec section 4).

`num_scales` (official 2) copies of an `NLayerDiscriminator`; scale k sees the image average-pooled k times (3x3,
stride 2, pad 1, count_include_pad=False). Each scale: conv k4 s2 (3 -> ndf) + LeakyReLU 0.2, then `n_layers - 1`
convolutions with spectral norm + InstanceNorm (affine False, conv bias removed; the official 'spectralinstance'),
channels doubling up to 8*ndf, stride 2 except the last (stride 1), then a final k4 conv to one logit map. Every
intermediate feature is returned, for the generator's feature-matching loss.
Official sizes: ndf 64, n_layers 4 (64 -> 128 -> 256 -> 512 -> 1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


class NLayerDiscriminator(nn.Module):
    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 4):
        super().__init__()
        kw, pad = 4, int(math.ceil((4 - 1.0) / 2))
        layers = [nn.Sequential(nn.Conv2d(in_channels, ndf, kw, stride=2, padding=pad), nn.LeakyReLU(0.2, False))]
        nf = ndf
        for n in range(1, n_layers):
            nf_prev, nf = nf, min(nf * 2, ndf * 8)
            stride = 1 if n == n_layers - 1 else 2
            layers.append(nn.Sequential(
                spectral_norm(nn.Conv2d(nf_prev, nf, kw, stride=stride, padding=pad, bias=False)),
                nn.InstanceNorm2d(nf, affine=False),
                nn.LeakyReLU(0.2, False)))
        layers.append(nn.Sequential(nn.Conv2d(nf, 1, kw, stride=1, padding=pad)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats  # last entry: the patch logits


class MultiscaleDiscriminator(nn.Module):
    """image (B,3,H,W) in [-1,1] -> per scale, the list of features (the last one is the logit map)."""

    def __init__(self, in_channels: int = 3, ndf: int = 64, n_layers: int = 4, num_scales: int = 2):
        super().__init__()
        self.config = dict(in_channels=in_channels, ndf=ndf, n_layers=n_layers, num_scales=num_scales)
        self.scales = nn.ModuleList(NLayerDiscriminator(in_channels, ndf, n_layers) for _ in range(num_scales))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        out = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            out.append(d(x))
        return out
