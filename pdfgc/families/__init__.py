"""Model families: each turns a portrait plus per-factor codes into frames, behind one interface
(`pdfgc.families.base`). `pdfgc` (the PD-FGC networks: official checkpoints, GPU training) and `meshwarp` (the
default: face-mesh codes, a 3D-aware warp of the portrait's own pixels) are the two implementations; importing
this package registers both, so the registry's lookups (``family_for`` a loaded model, ``family_for_format`` a
weights file, ``family_for_config`` a `pdfgc train --config`) know them."""
from .base import (
    Codes,
    ModelFamily,
    family_class,
    family_for,
    family_for_config,
    family_for_format,
    list_families,
    register_family,
)
from .meshwarp.model import MeshWarpFamily
from .pdfgc.family import PDFGCFamily

__all__ = ["Codes", "ModelFamily", "family_class", "family_for", "family_for_config", "family_for_format",
           "list_families", "register_family", "MeshWarpFamily", "PDFGCFamily"]
