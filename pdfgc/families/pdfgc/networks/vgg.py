"""VGG19 feature network for the optional perceptual loss (off by default: no VGG weights ship or download here).

Reads a torchvision-format `vgg19` state dict (`features.<i>.weight/bias`, as in torchvision's
`vgg19-dcbb9e9d.pth`; the `classifier.*` keys are ignored) with `torch.load(weights_only=True)` or from a
safetensors file. Layer indices follow torchvision's `features` Sequential, so the PC-AVS slices that end at
indices 2, 7, 12, 21, 30 (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1) are the same layers.

Perceptual loss (PC-AVS `VGGLoss`, recovered): L_vgg = sum_k w_k * mean|phi_k(x) - phi_k(y)|, w = [1/32, 1/16,
1/8, 1/4, 1], on images mapped from [-1,1] to ImageNet-normalised RGB; the target's features are detached.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ....errors import CheckpointError

# torchvision's configuration "E" (VGG19): channel counts, "M" = 2x2 max-pool
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")
SLICE_ENDS = (2, 7, 12, 21, 30)  # exclusive ends of the five slices (after relu1_1 ... relu5_1)
SLICE_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg19_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in VGG19_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: VGG19 weights file not found")
    if path.suffix == ".safetensors":
        from ....tensorfile import read_tensors
        return read_tensors(path, "VGG19 weights file")[0]
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read VGG19 weights ({e})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise CheckpointError(f"{path}: not a state dict (got {type(sd).__name__})")
    return sd


class VGG19Perceptual(nn.Module):
    """Frozen VGG19 trunk up to relu5_1 and the weighted L1 feature distance."""

    def __init__(self):
        super().__init__()
        self.features = vgg19_features()[:SLICE_ENDS[-1]]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> "VGG19Perceptual":
        path = Path(path)
        sd = _read_state_dict(path)
        net = cls()
        own = net.features.state_dict()
        tensors = {}
        for k, v in own.items():
            src = f"features.{k}"
            if src not in sd:
                raise CheckpointError(f"{path}: missing key '{src}' (not a torchvision vgg19 state dict?)")
            if tuple(sd[src].shape) != tuple(v.shape):
                raise CheckpointError(f"{path}: key '{src}' has shape {tuple(sd[src].shape)}, expected "
                                      f"{tuple(v.shape)} (not vgg19?)")
            tensors[k] = sd[src]
        net.features.load_state_dict(tensors)
        return net

    def train(self, mode: bool = True) -> "VGG19Perceptual":  # always frozen, always in eval mode
        return super().train(False)

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out, start = [], 0
        for end in SLICE_ENDS:
            x = self.features[start:end](x)
            out.append(x)
            start = end
        return out

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        fa = self.feature_maps(fake)
        with torch.no_grad():
            re = self.feature_maps(real)
        return sum(w * (a - b.detach()).abs().mean() for w, a, b in zip(SLICE_WEIGHTS, fa, re))
