"""Tiny configurations of the real architecture, for fast CPU tests (the diffusers habit)."""
from __future__ import annotations

from .configs import tiny_config
from .model import PDFGC

__all__ = ["tiny_config", "tiny_model"]


def tiny_model(seed: int = 0) -> PDFGC:
    return PDFGC.random(seed, tiny_config())
