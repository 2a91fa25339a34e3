"""The official-code fixture: deterministic weights built by a documented rule (any seed), and a check that our
pipeline reproduces what the official code computed for them (`pdfgc verify-official FIXTURE_DIR`).

Weight rule: ``pdfgc.seeded_weights`` (shared/reference/official_fixture/README.md), here applied to the
official files' layout.
"""
from __future__ import annotations

import torch

from ..model import PDFGC
from ..seeded_weights import rule_tensor
from .layout import FILES, official_layout


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
