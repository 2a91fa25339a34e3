"""Model families: each turns a portrait plus per-factor codes into frames, behind one interface
(`pdfgc.families.base`). `pdfgc` (the PD-FGC networks: official checkpoints, GPU training) and `meshwarp` (the
default: face-mesh codes, a 3D-aware warp of the portrait's own pixels) are the two implementations; importing
this package declares both (`pdfgc.families.registry`: by name, with their modules), so the registry's lookups
(``family_for`` a loaded model, ``family_for_format`` a weights file, ``family_for_config`` a `pdfgc train
--config`) know them. A family's module (and torch) is imported when it is first looked up, not here: the CLI's
parser and the options (`family_options`, `family_training`) need only the families' light options modules."""
from .registry import (
    declare_family,
    family_class,
    family_for,
    family_for_config,
    family_for_format,
    family_options,
    family_training,
    list_families,
    register_family,
)

# declaration order: the default's first (the order of `train_configs()` and of the lookups)
declare_family("meshwarp", "pdfgc.families.meshwarp.model", "pdfgc.families.meshwarp.options:MeshWarpOptions",
               "pdfgc.families.meshwarp.options:TRAINING")
declare_family("pdfgc", "pdfgc.families.pdfgc.family", "pdfgc.families.pdfgc.options:PDFGCOptions",
               "pdfgc.families.pdfgc.options:TRAINING")

_LAZY = {"Codes": ("pdfgc.families.base", "Codes"), "ModelFamily": ("pdfgc.families.base", "ModelFamily")}
_CLASSES = {"MeshWarpFamily": "meshwarp", "PDFGCFamily": "pdfgc"}


def __getattr__(name: str):
    # the torch-bound names, imported on first use
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name in _CLASSES:
        return family_class(_CLASSES[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Codes", "ModelFamily", "family_class", "family_for", "family_for_config", "family_for_format",
           "family_options", "family_training", "list_families", "register_family", "declare_family",
           "MeshWarpFamily", "PDFGCFamily"]
