"""Appearance encoder E_app: ResNeXt-50 32x4d trunk plus a 1x1 identity-map head (official `ResNeXtEncoder`).

Outputs the 2048-d appearance vector (style[0:2048]) and the (512,7,7) identity map that replaces the StyleGAN
constant input. Module names follow torchvision under `model.` so official checkpoints load key for key; the unused
classifiers (`model.fc`, top-level `fc`) are not built (see `pdfgc.official.checkpoints`).
"""
from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    """torchvision v1.5 bottleneck: the stride sits on the grouped 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, groups: int = 32, base_width: int = 4,
                 downsample: nn.Module | None = None):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeXtTrunk(nn.Module):
    """ResNeXt trunk up to layer4 (no pooling/classifier). `planes`/`blocks` allow lite variants; `maxpool=False`
    drops the stem's pooling (stride 16 instead of 32: a 7x7 map from a 112 input)."""

    def __init__(self, blocks=(3, 4, 6, 3), planes=(64, 128, 256, 512), stem: int = 64, groups: int = 32,
                 base_width: int = 4, maxpool: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if maxpool else nn.Identity()
        inplanes = stem
        for i, (n, p) in enumerate(zip(blocks, planes)):
            stride = 1 if i == 0 else 2
            layers = []
            for j in range(n):
                down = None
                if j == 0 and (stride != 1 or inplanes != p * Bottleneck.expansion):
                    down = nn.Sequential(nn.Conv2d(inplanes, p * Bottleneck.expansion, 1, stride=stride, bias=False),
                                         nn.BatchNorm2d(p * Bottleneck.expansion))
                layers.append(Bottleneck(inplanes, p, stride if j == 0 else 1, groups, base_width, down))
                inplanes = p * Bottleneck.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.out_channels = inplanes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class AppearanceEncoder(nn.Module):
    """Portrait (B,3,224,224) in [-1,1] -> (appearance vector (B,2048), identity map (B,512,7,7))."""

    def __init__(self, blocks=(3, 4, 6, 3), planes=(64, 128, 256, 512), stem: int = 64, groups: int = 32,
                 base_width: int = 4, identity_channels: int = 512, identity_size: int = 7, maxpool: bool = True):
        super().__init__()
        self.model = ResNeXtTrunk(blocks, planes, stem, groups, base_width, maxpool)
        self.conv1x1 = nn.Conv2d(self.model.out_channels, identity_channels, 1)
        self.identity_size = identity_size

    @property
    def vector_dim(self) -> int:
        return self.model.out_channels

    def forward(self, portrait: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.model(portrait)
        vector = torch.flatten(nn.functional.adaptive_avg_pool2d(fmap, 1), 1)
        identity = nn.functional.adaptive_avg_pool2d(self.conv1x1(fmap), self.identity_size)
        return vector, identity
