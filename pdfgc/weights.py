"""One model loader for every command and the Python API.

`load_model(weights=FILE)` reads any weights file of ours and builds the family it names in its metadata: the
registry (`pdfgc.families`) finds the family whose `format` it is (`format: pdfgc` -> the PD-FGC networks,
`format: pdfgc-meshwarp` -> the mesh-warp model; another format is refused, naming the known ones);
`official=DIR` loads the four official .pth checkpoints; with neither, the default: `$PDFGC_WEIGHTS`, else the
mesh-warp model shipped in the package (`pdfgc/weights/meshwarp.safetensors`, trained here), else seeded random
PD-FGC weights (with a loud warning). Importing this module does not import torch (the families load when a model
is built), so the command line and `pdfgc.media.prewarm` find the default weights by the same rule.
"""
from __future__ import annotations

import os
from pathlib import Path

from .families import family_for_format
from .tensorfile import read_metadata

PACKAGED = Path(__file__).parent / "weights" / "meshwarp.safetensors"


def default_weights_path() -> Path | None:
    env = os.environ.get("PDFGC_WEIGHTS")
    if env:
        return Path(env)
    return PACKAGED if PACKAGED.is_file() else None


def weights_format(path: str | os.PathLike) -> str:
    """The `format` entry of a safetensors file's metadata ("" when it has none); CheckpointError if unreadable."""
    p = Path(path)
    if p.is_dir():
        p = p / "model.safetensors"
    return read_metadata(p, "weights file").get("format", "")  # a .pth is told how it is loaded


def load_model(weights: str | os.PathLike | None = None, official: str | os.PathLike | None = None):
    """The model of a weights file, an official checkpoint folder, or the default (see the module doc)."""
    if official is not None:
        from .families.pdfgc.official.checkpoints import load_official

        return load_official(official)
    path = Path(weights) if weights is not None else default_weights_path()
    if path is None:
        from .families.pdfgc.model import PDFGC

        return PDFGC.random(seed=0)
    return family_for_format(weights_format(path), path).load(path)


def default_model():
    return load_model()
