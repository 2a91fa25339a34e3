"""The official-code fixture: deterministic weights built by a documented rule (any seed), and a check that our
pipeline reproduces what the official code computed for them (`pdfgc verify-official FIXTURE_DIR`).

Weight rule (shared/reference/official_fixture/README.md): every official state_dict entry gets its own generator
seeded with `seed * 1_000_003 + crc32("<network>/<key>")` and exactly one draw in the branch that applies.
"""
from __future__ import annotations

import math
import zlib

import torch

from ..model import PDFGC
from .layout import FILES, official_layout


def rule_tensor(network: str, key: str, template: torch.Tensor, seed: int) -> torch.Tensor:
    """The rule's value for one entry; `template` is the tensor as the architecture constructs it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(f"{network}/{key}".encode()))
    last = key.rsplit(".", 1)[-1]
    shape = tuple(template.shape)
    if not template.is_floating_point():
        return torch.zeros(shape, dtype=template.dtype)
    if last == "kernel":
        return template.clone()
    if last == "running_var":
        return 0.8 + 0.4 * torch.rand(shape, generator=g)
    randn = torch.randn(shape, generator=g)
    if last == "running_mean":
        return 0.05 * randn
    if network == "generator":
        if key.endswith("modulation.bias"):
            return 1.0 + 0.1 * randn
        if last == "bias" or key.endswith("noise.weight"):
            return 0.1 * randn
        return randn
    if last == "bias":
        return 0.05 * randn
    if template.dim() == 1:
        return 1.0 + 0.1 * randn
    return randn / math.sqrt(math.prod(shape[1:]))


def rule_official_state_dicts(seed: int, model: PDFGC | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """The four official-layout state_dicts for `seed` (what the fixture's official run loaded)."""
    model = model or _official_template()
    out = {}
    for network in FILES:
        own = getattr(model, network).state_dict()
        sd = {}
        for k, (shape, dtype) in official_layout(model, network).items():
            template = own[k] if k in own else torch.zeros(shape, dtype=dtype)
            sd[k] = rule_tensor(network, k, template, seed)
        out[network] = sd
    return out


_TEMPLATE: PDFGC | None = None


def _official_template() -> PDFGC:
    global _TEMPLATE
    if _TEMPLATE is None:
        _TEMPLATE = PDFGC()
    return _TEMPLATE


def rule_weights_for_model(model: PDFGC, seed: int) -> dict[str, torch.Tensor]:
    """Rule weights for any model config in our flat key layout; noise maps drawn from the official seed."""
    from .checkpoints import official_noise

    tensors = {}
    for network in FILES:
        for k, v in getattr(model, network).state_dict().items():
            if k.endswith(".noise.noise"):
                continue
            tensors[f"{network}.{k}"] = rule_tensor(network, k, v, seed)
    for i, (layer_name, n) in enumerate(zip(_noise_names(model), official_noise(model))):
        tensors[f"generator.{layer_name}.noise.noise"] = n
    return tensors


def _noise_names(model: PDFGC) -> list[str]:
    return ["conv1"] + [f"convs.{i}" for i in range(len(model.generator.convs))]
