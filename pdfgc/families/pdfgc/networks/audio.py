"""Audio encoder E_aud (official `ResSESyncEncoder`): SE-ResNet over one (1,80,20) mel window -> 512-d feature
and the 500-d mouth code. Channel layout and the ReLU-before-BN order follow the official net exactly.
"""
from __future__ import annotations

import torch
from torch import nn


class SELayer(nn.Module):
    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=(2, 3)))[:, :, None, None]


class SEBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1, reduction: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.se = SELayer(cout, reduction)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.relu(self.conv1(x)))  # ReLU before BN, as in the official block
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + residual)


class ResNetSE(nn.Module):
    """SE-ResNet with self-attentive pooling over time (clovaai voxceleb_trainer layout)."""

    def __init__(self, layers=(3, 4, 6, 3), filters=(32, 64, 128, 256), n_out: int = 512, n_mels: int = 80,
                 attention_dim: int = 128):
        super().__init__()
        self.conv1 = nn.Conv2d(1, filters[0], 3, stride=1, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.bn1 = nn.BatchNorm2d(filters[0])
        cin = filters[0]
        for i, (n, f) in enumerate(zip(layers, filters)):
            stride = 1 if i == 0 else 2
            blocks = [SEBasicBlock(cin, f, stride)] + [SEBasicBlock(f, f) for _ in range(n - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            cin = f
        freq = n_mels
        for _ in range(len(layers) - 1):
            freq = (freq + 1) // 2
        channels = filters[-1] * freq  # 256 * 10 = 2560 for 80 mel bins
        self.attention = nn.Sequential(nn.Conv1d(channels, attention_dim, 1), nn.ReLU(), nn.BatchNorm1d(attention_dim),
                                       nn.Conv1d(attention_dim, channels, 1), nn.Softmax(dim=2))
        self.fc = nn.Linear(channels, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.relu(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.reshape(x.shape[0], -1, x.shape[-1])  # (B, C*F, T): channel index c*F + f
        w = self.attention(x)
        return self.fc(torch.sum(x * w, dim=2))


class AudioEncoder(nn.Module):
    """Mel windows (B,1,80,20) in [0,1] -> (audio feature (B,512), mouth code (B,500))."""

    def __init__(self, layers=(3, 4, 6, 3), filters=(32, 64, 128, 256), feature_dim: int = 512, mouth_dim: int = 500,
                 n_mels: int = 80):
        super().__init__()
        self.model = ResNetSE(layers, filters, feature_dim, n_mels)
        self.mouth_embed = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, mouth_dim))

    def forward(self, mel_windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if mel_windows.dim() == 5:  # (B, clip, 1, 80, T) -> (B*clip, 1, 80, T)
            mel_windows = mel_windows.flatten(0, 1)
        feature = self.model(mel_windows)
        return feature, self.mouth_embed(feature)
