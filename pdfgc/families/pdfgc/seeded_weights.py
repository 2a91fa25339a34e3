"""Seeded weights by the official fixture's rule (shared/reference/official_fixture/README.md), for any model
config: deterministic and well-conditioned, so tests and the fixture get the same numbers everywhere. A leaf
module (nothing of the package imported), so that ``PDFGC.random`` and ``pdfgc.official`` both use it without
importing each other.

Rule: every state_dict entry gets its own generator seeded with ``seed * 1_000_003 + crc32("<network>/<key>")``
and exactly one draw in the branch that applies. The generator's noise maps are the ones the official code
draws on CPU after ``torch.manual_seed(20202001)``.
"""
from __future__ import annotations

import math
import zlib

import torch

OFFICIAL_SEED = 20202001


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


def official_noise(model, seed: int = OFFICIAL_SEED) -> list[torch.Tensor]:
    """The noise maps the official code draws on CPU (seeded global RNG, drawn in layer order)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.empty(tuple(n.noise.shape)).normal_(generator=g) for n in model.generator.noise_layers()]


def rule_weights_for_model(model, seed: int, networks=("appearance", "motion", "audio", "generator")
                           ) -> dict[str, torch.Tensor]:
    """Rule weights for a PDFGC model in our flat key layout (``<network>.<key>``); noise maps drawn from the
    official seed."""
    tensors = {}
    for network in networks:
        for k, v in getattr(model, network).state_dict().items():
            if k.endswith(".noise.noise"):
                continue
            tensors[f"{network}.{k}"] = rule_tensor(network, k, v, seed)
    names = ["conv1"] + [f"convs.{i}" for i in range(len(model.generator.convs))]
    for layer_name, n in zip(names, official_noise(model)):
        tensors[f"generator.{layer_name}.noise.noise"] = n
    return tensors
