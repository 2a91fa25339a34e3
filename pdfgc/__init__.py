"""PD-FGC: progressive disentangled, fine-grained controllable talking-head synthesis (CVPR 2023)."""
from .model import PDFGC, ModelConfig, StyleLayout
from .pipeline import AnimateOptions, TalkingHeadPipeline

__all__ = ["PDFGC", "ModelConfig", "StyleLayout", "AnimateOptions", "TalkingHeadPipeline"]
__version__ = "0.1.0"
