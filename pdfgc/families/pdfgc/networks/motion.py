"""Motion encoder E_mot (official `FanEncoder`): a one-hourglass FAN backbone gives the 512-d unified motion
feature; per-factor heads read head pose (6), eye gaze/blink (6), emotion (30) and the visual mouth code.

Module names and registration order follow the official checkpoint so it loads key for key.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=1, padding=1, bias=False)


class ConvBlock(nn.Module):
    """Pre-activation block with three concatenated branches (out/2, out/4, out/4 channels)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = conv3x3(cin, cout // 2)
        self.bn2 = nn.BatchNorm2d(cout // 2)
        self.conv2 = conv3x3(cout // 2, cout // 4)
        self.bn3 = nn.BatchNorm2d(cout // 4)
        self.conv3 = conv3x3(cout // 4, cout // 4)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(True), nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class HourGlass(nn.Module):
    """Recursive hourglass: max-pool down, bilinear (align_corners=False) up; keys b1_L, b2_L, b3_L, b2_plus_1."""

    def __init__(self, depth: int, features: int):
        super().__init__()
        self.depth = depth
        # registration order of the official recursive construction: b1_L, b2_L down, b2_plus_1, b3_L up
        for level in range(depth, 0, -1):
            self.add_module(f"b1_{level}", ConvBlock(features, features))
            self.add_module(f"b2_{level}", ConvBlock(features, features))
        self.add_module("b2_plus_1", ConvBlock(features, features))
        for level in range(1, depth + 1):
            self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _forward(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up1 = self._modules[f"b1_{level}"](x)
        low1 = self._modules[f"b2_{level}"](F.max_pool2d(x, 2, stride=2))
        low2 = self._forward(level - 1, low1) if level > 1 else self._modules["b2_plus_1"](low1)
        low3 = self._modules[f"b3_{level}"](low2)
        return up1 + F.interpolate(low3, size=up1.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(self.depth, x)


class FANBackbone(nn.Module):
    """FAN with one hourglass (PC-AVS `FAN_use`): (B,3,224,224) -> unified motion feature (B,512)."""

    def __init__(self, feature_dim: int = 512, width: int = 256, landmarks: int = 68, input_size: int = 224):
        super().__init__()
        w = width
        self.conv1 = nn.Conv2d(3, w // 4, 7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(w // 4)
        self.conv2 = ConvBlock(w // 4, w // 2)
        self.conv3 = ConvBlock(w // 2, w // 2)
        self.conv4 = ConvBlock(w // 2, w)
        self.m0 = HourGlass(4, w)
        self.top_m_0 = ConvBlock(w, w)
        # registration order as in the official checkpoint (not the forward order)
        self.conv_last0 = nn.Conv2d(w, w, 1)
        self.l0 = nn.Conv2d(w, landmarks, 1)
        self.bn_end0 = nn.BatchNorm2d(w)
        self.conv6 = nn.Conv2d(landmarks, 1, 3, stride=2, padding=1)
        side = input_size // 8
        self.fc = nn.Linear(side * side, feature_dim)
        self.bn5 = nn.BatchNorm2d(landmarks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(self.conv2(x), 2, stride=2)
        x = self.conv4(self.conv3(x))
        ll = self.top_m_0(self.m0(x))
        ll = F.relu(self.bn_end0(self.conv_last0(ll)))
        heat = self.l0(ll)
        y = self.conv6(F.relu(self.bn5(heat)))
        return self.fc(F.relu(torch.flatten(y, 1)))


def _head(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(True), nn.BatchNorm1d(dim), nn.Linear(dim, dim))


def _embed(dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.ReLU(), nn.Linear(dim, out))  # not in-place: the head output stays raw


@dataclass
class MotionCodes:
    """Per-frame codes read from driving frames by the motion encoder."""

    pose: torch.Tensor      # (B, 6)
    eye: torch.Tensor       # (B, 6): dims 2,3 gaze; 0,1,4,5 blink
    emotion: torch.Tensor   # (B, 30)
    mouth: torch.Tensor | None = None  # (B, 500) visual mouth code (lips from video), when asked for


class MotionEncoder(nn.Module):
    """Driving frames (B,3,224,224) in [-1,1] -> pose, eye, emotion (and visual mouth) codes."""

    def __init__(self, feature_dim: int = 512, width: int = 256, mouth_dim: int = 500, pose_dim: int = 6,
                 eye_dim: int = 6, emotion_dim: int = 30, input_size: int = 224):
        super().__init__()
        d = feature_dim
        self.model = FANBackbone(d, width, input_size=input_size)
        self.to_mouth = _head(d)
        self.mouth_embed = _embed(d, mouth_dim)
        self.to_headpose = _head(d)
        self.headpose_embed = _embed(d, pose_dim)
        self.to_eye = _head(d)
        self.eye_embed = _embed(d, eye_dim)
        self.to_emo = _head(d)
        self.emo_embed = _embed(d, emotion_dim)

    def unified_feature(self, frames: torch.Tensor) -> torch.Tensor:
        """Stage-1 unified motion feature f_mot (B,512)."""
        return self.model(frames)

    def codes_from_feature(self, feat: torch.Tensor, mouth: bool = False) -> MotionCodes:
        return MotionCodes(
            pose=self.headpose_embed(self.to_headpose(feat)),
            eye=self.eye_embed(self.to_eye(feat)),
            emotion=self.emo_embed(self.to_emo(feat)),
            mouth=self.mouth_embed(self.to_mouth(feat)) if mouth else None,
        )

    def forward(self, frames: torch.Tensor, mouth: bool = False) -> MotionCodes:
        return self.codes_from_feature(self.unified_feature(frames), mouth=mouth)
