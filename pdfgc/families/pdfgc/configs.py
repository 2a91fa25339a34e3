"""Named model configurations: the official PD-FGC, a lite one for real-time CPU use and cheap training, and the
tiny one of the tests. Every weights file carries its own ModelConfig; these names are for building new models
(`PDFGC.random(0, get_config("lite"))`, the trainer) and for telling which architecture a file holds.

The lite model is the same design (ResNeXt appearance encoder with identity map, one-hourglass FAN motion encoder
with pose/eye/emotion/mouth heads, SE-ResNet audio encoder, modulated StyleGAN2 generator starting from the 7x7
identity map) with the same per-frame codes (mouth 500, emotion 30, eye 6, pose 6), at 112 px and with fewer
channels. Its networks still take the official 224 crops: `PDFGC.network_input` downscales them and
`PDFGC.to_crop_resolution` brings generated frames back to 224 (see `benchmarks/bench_lite.py` for its speed).
"""
from __future__ import annotations

import dataclasses
import json

from ...errors import InputError
from .model import ModelConfig, StyleLayout
from .options import CONFIG_NAMES


def official_config() -> ModelConfig:
    """The official model (224 px, ResNeXt-50, FAN width 256, SE-ResNet34-like audio net, StyleGAN2 512..128)."""
    return ModelConfig()


def lite_config() -> ModelConfig:
    return ModelConfig(
        name="pdfgc-lite",
        # 112 px keeps the generator's 7x7 start (7 -> 14 -> 28 -> 56 -> 112): a quarter of the pixels of 224
        image_size=112,
        appearance=dict(
            blocks=(1, 1, 1, 1),          # one bottleneck per stage: runs once per video, but every training step
            planes=(16, 32, 64, 128),     # 4x bottleneck expansion -> a 512-d appearance vector (layout below)
            stem=32,
            groups=8, base_width=16,      # grouped 3x3 convs of 32..256 channels (ResNeXt cardinality 8)
            maxpool=False,                # stride 16 instead of 32: the identity map is 7x7 from a 112 input
            identity_channels=256,        # must equal the generator's 7 px channels
        ),
        # FAN at a quarter of the official width (hourglass at 28 px with 64 channels); 256-d unified feature
        motion=dict(width=64, feature_dim=256),
        # SE-ResNet with 2 blocks per stage; official 32 filters in the first stage (a 16-channel stage leaves its
        # squeeze-excitation 2 units), then half the official filters; 256-d audio feature
        audio=dict(layers=(2, 2, 2, 2), filters=(32, 32, 64, 128), feature_dim=256),
        # StyleGAN2 channels per resolution; 1.4 GFLOP per frame (official: 69 at 224 px)
        generator=dict(channels={"7": 256, "14": 256, "28": 128, "56": 64, "112": 32}),
        # appearance vector 512-d (official 2048); the motion codes keep the official sizes
        layout=StyleLayout(appearance=512),
    )


def tiny_config(**overrides) -> ModelConfig:
    """The tests' model: same design and code layout (mouth 500, emotion 30, eye 6, pose 6), a few channels per
    layer (``pdfgc.testing.tiny_model`` builds it with seeded weights)."""
    cfg = ModelConfig(
        name="tiny-test",
        appearance=dict(blocks=(1, 1, 1, 1), planes=(4, 4, 8, 16), stem=8, groups=2, base_width=32,
                        identity_channels=16),
        motion=dict(feature_dim=64, width=16),
        audio=dict(layers=(1, 1, 1, 1), filters=(8, 8, 16, 16), feature_dim=64),
        generator=dict(channels={"7": 16, "14": 16, "28": 16, "56": 8, "112": 8, "224": 8}),
        layout=StyleLayout(appearance=64),
        trained=False,
    )
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return cfg


_REGISTRY = {"official": official_config, "lite": lite_config, "tiny": tiny_config}


def get_config(name: str) -> ModelConfig:
    """A fresh ModelConfig for "official" | "lite" | "tiny"."""
    try:
        return _REGISTRY[name]()
    except KeyError:
        raise InputError(f"unknown model configuration '{name}' (choose from {', '.join(CONFIG_NAMES)})") from None


_ARCH_FIELDS = ("image_size", "appearance", "motion", "audio", "generator", "layout")


def _arch(cfg: ModelConfig) -> str:
    """The fields that decide the networks' shapes, normalised (JSON turns tuples into lists, int keys into str)."""
    d = dataclasses.asdict(cfg)
    return json.dumps({k: d[k] for k in _ARCH_FIELDS}, sort_keys=True)


def architecture_name(cfg: ModelConfig) -> str:
    """Which named configuration `cfg`'s networks are ("official", "lite", "tiny"), or "custom"."""
    want = _arch(ModelConfig.from_json(cfg.to_json()))
    for name in CONFIG_NAMES:
        ref = get_config(name)
        if _arch(ModelConfig.from_json(ref.to_json())) == want:
            return name
    return "custom"
