"""The official checkpoint files' key layout, derived from our networks plus the entries the official code
carries but never uses at inference (classifiers, the generator's mapping network, constant input, noise buffers).
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from ..model import PDFGC

FILES = {
    "appearance": "appearance_model.pth",
    "motion": "motion_model.pth",
    "audio": "audio_model.pth",
    "generator": "generator_model.pth",
}

# official-only entries, unused at inference: {network: [(key, shape)]}, with where they sit in the file
def _unused(model: PDFGC) -> dict[str, dict[str, list[tuple[str, tuple]]]]:
    sd = model.layout.dim
    mapping = [(f"style.{i}.{p}", (sd, sd) if p == "weight" else (sd,))
               for i in range(1, 9) for p in ("weight", "bias")]
    g = model.generator
    c0 = g.identity_channels
    noises = [(f"noises.noise_{i}", tuple(n.noise.shape)) for i, n in enumerate(g.noise_layers())]
    trunk_out = model.appearance.vector_dim
    return {
        "appearance": {"after:model.": [("model.fc.weight", (1000, trunk_out)), ("model.fc.bias", (1000,))],
                       "end": [("fc.weight", (5995, trunk_out)), ("fc.bias", (5995,))]},
        "generator": {"start": mapping + [("input.input", (1, c0, g.init_size, g.init_size))],
                      "end": noises},
    }


def is_generator_noise_key(key: str) -> bool:
    """Our fixed noise maps (`*.noise.noise`), which official files do not store."""
    return key.endswith(".noise.noise")


def official_layout(model: PDFGC, network: str) -> "OrderedDict[str, tuple[tuple[int, ...], torch.dtype]]":
    """Ordered {key: (shape, dtype)} of the official file for `network`, as the official code writes it."""
    net = getattr(model, network)
    extras = _unused(model).get(network, {})
    out: OrderedDict = OrderedDict()
    for k, s in extras.get("start", []):
        out[k] = (s, torch.float32)
    own = [(k, (tuple(v.shape), v.dtype)) for k, v in net.state_dict().items() if not is_generator_noise_key(k)]
    inserted = False
    for i, (k, v) in enumerate(own):
        out[k] = v
        nxt = own[i + 1][0] if i + 1 < len(own) else ""
        if not inserted and "after:model." in extras and k.startswith("model.") and not nxt.startswith("model."):
            for ek, es in extras["after:model."]:
                out[ek] = (es, torch.float32)
            inserted = True
    for k, s in extras.get("end", []):
        out[k] = (s, torch.float32)
    return out


def unused_keys(model: PDFGC, network: str) -> set[str]:
    ex = _unused(model).get(network, {})
    return {k for part in ex.values() for k, _ in part}
