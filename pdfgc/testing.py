"""Tiny configurations of the real architecture, for fast CPU tests (the diffusers habit)."""
from __future__ import annotations

from .model import PDFGC, ModelConfig, StyleLayout


def tiny_config(**overrides) -> ModelConfig:
    """Same design and code layout (mouth 500, emotion 30, eye 6, pose 6), a few channels per layer."""
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


def tiny_model(seed: int = 0) -> PDFGC:
    return PDFGC.random(seed, tiny_config())
