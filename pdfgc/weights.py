"""Where the default model comes from: `$PDFGC_WEIGHTS`, else the weights shipped in the package (the lite model
trained by this project, `pdfgc/weights/default.safetensors`, with its fitted control mapping beside it), else seeded
random weights (with a loud warning)."""
from __future__ import annotations

import os
from pathlib import Path

from .model import PDFGC

PACKAGED = Path(__file__).parent / "weights" / "default.safetensors"


def default_weights_path() -> Path | None:
    env = os.environ.get("PDFGC_WEIGHTS")
    if env:
        return Path(env)
    return PACKAGED if PACKAGED.is_file() else None


def default_model() -> PDFGC:
    path = default_weights_path()
    if path is not None:
        return PDFGC.from_pretrained(path)
    return PDFGC.random(seed=0)
