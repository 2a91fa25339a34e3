"""PD-FGC: progressive disentangled, fine-grained controllable talking-head synthesis (CVPR 2023)."""
__all__ = ["PDFGC", "ModelConfig", "StyleLayout", "AnimateOptions", "TalkingHeadPipeline"]
__version__ = "0.1.0"

_NETS = "families.pdfgc.model"
_HOMES = {"PDFGC": _NETS, "ModelConfig": _NETS, "StyleLayout": _NETS, "AnimateOptions": "pipeline",
          "TalkingHeadPipeline": "pipeline"}


def __getattr__(name: str):
    # imported on first use: `import pdfgc.media.audio_io` (the web UI's upload checker, run in a child process
    # per upload) must not pay for torch
    if name in _HOMES:
        import importlib
        return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
