"""What the pipeline needs of a model family, and the registry that picks a family for a loaded model.

A family says which encoder reads which source (`encode_portrait`, `encode_frames`, `encode_audio`), its inference
rules (default multipliers and smoothing), how explicit controls reach its codes (`preflight_controls`,
`apply_controls`), and how a plan's codes become frames (`render`). The pipeline (pdfgc/pipeline.py) only talks to
this interface: adding a family is one class here-registered with `@register_family`, no `if family == ...`.

Codes are per factor, one row per frame: `mouth`, `emotion`, `eye`, `pose` (sizes in `code_dims`); the eye code's
`blink_dims` and `gaze_dims` may come from different sources.
"""
from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..controls.explicit import controls_of
from ..official_rules import smooth_box3, smooth_mouth

FACTOR_CODES = ("mouth", "emotion", "eye", "pose")
_REGISTRY: dict[str, type["ModelFamily"]] = {}


def register_family(cls: type["ModelFamily"]) -> type["ModelFamily"]:
    """Class decorator: names a family once, at its definition (timm's habit)."""
    _REGISTRY[cls.name] = cls
    return cls


def list_families() -> list[str]:
    """Names of the registered families (importing ``pdfgc.families`` registers them): what conformance tests and
    lookups iterate over."""
    return sorted(_REGISTRY)


def family_class(name: str) -> type["ModelFamily"]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model family '{name}' (known: {', '.join(sorted(_REGISTRY))})") from None


def family_for(model, device: torch.device) -> "ModelFamily":
    """The family adapter of a loaded model (`model.family`, default "pdfgc": the PD-FGC networks). The families
    register themselves when ``pdfgc.families`` is imported (its ``__init__`` imports them)."""
    return family_class(getattr(model, "family", "pdfgc"))(model, device)


@dataclass
class Codes:
    """Per-frame codes of one clip, the portrait or a plan; rows = frames. A factor not computed is None."""

    mouth: torch.Tensor | None = None
    emotion: torch.Tensor | None = None
    eye: torch.Tensor | None = None
    pose: torch.Tensor | None = None


class ModelFamily(ABC):
    """One model family behind the pipeline. `model` is the loaded model object (it has a `.config` with `name`
    and `trained`)."""

    name: ClassVar[str]
    official_crop: ClassVar[bool] = False      # driving crops get PD-FGC's fixed crop-zoom
    generates_pose: ClassVar[bool] = False     # `auto_pose` (--pose auto): only where the pose code is in degrees
    options: ClassVar[type | None] = None      # its own AnimateOptions fields (families/<name>/options.py)
    blink_dims: ClassVar[tuple[int, ...]]
    gaze_dims: ClassVar[tuple[int, ...]]

    def __init__(self, model, device: torch.device):
        self.model, self.device = model, device

    # ---- sizes and rules ------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def code_dims(self) -> dict[str, int]:
        """{"mouth": d, "emotion": d, "eye": d, "pose": d}."""

    audio_context: int = 0   # frames of context each side `encode_audio` reads (chunks overlap by this much)

    def intensity(self, factor: str) -> float:
        """The default multiplier of a factor's code ("mouth", "blink", "gaze", "emotion", "pose")."""
        return 1.0

    def smooth(self, factor: str, codes: torch.Tensor) -> torch.Tensor:
        """Temporal smoothing of a factor driven by a source (lips from audio or video, pose from a video): the
        official filters (a 3-tap Gaussian over the mouth code, a 3-tap box over the pose code) unless a family
        says otherwise."""
        if factor == "mouth":
            return smooth_mouth(codes)
        if factor == "pose":
            return smooth_box3(codes)
        return codes

    def relative(self, codes: Codes, opt) -> Codes:
        """A driving clip's codes as the family transfers them (e.g. relative to the clip's neutral frame)."""
        return codes

    # ---- encoders -------------------------------------------------------------------------------------------
    @abstractmethod
    def encode_portrait(self, portrait, prec, opt=None) -> tuple[Any, Codes]:
        """(appearance: whatever `render` needs of the portrait (per `opt`, the AnimateOptions), the portrait's own
        codes ("still"))."""

    @abstractmethod
    def encode_frames(self, crops: np.ndarray, want_mouth: bool, prec) -> Codes:
        """Codes of driving crops (N,224,224,3) uint8 (after `official_crop` when the family wants it)."""

    @abstractmethod
    def encode_audio(self, windows: np.ndarray, prec, batch: int | None = None) -> torch.Tensor:
        """Mouth codes (T, mouth) from official mel windows (T,1,80,20)."""

    def batch_size(self, kind: str, precision: str = "exact", requested: int | None = None) -> int:
        if requested:
            return int(requested)
        return 16 if self.device.type == "cuda" else 8

    def encode_clip(self, clip, used: list[int], want_mouth: bool, prec, batch: int | None = None,
                    progress: bool = False) -> Codes:
        """Codes for the frames of a driving clip that are used; byte-identical frames are encoded once."""
        uniq = clip.unique_index()
        todo = sorted({int(uniq[i]) for i in used})
        dims = self.code_dims
        out = {k: torch.zeros(clip.num_frames, d) for k, d in dims.items()}
        seen = set()
        bs = self.batch_size("motion", requested=batch)
        bar = progress_bar(len(todo), progress and len(todo) > 4 * bs, f"encoding {clip.path.name}")
        for s in range(0, len(todo), bs):
            rows = todo[s:s + bs]
            codes = self.encode_frames(np.asarray(clip.crops[rows]), want_mouth, prec)
            for k in out:
                v = getattr(codes, k)
                if v is not None:
                    out[k][rows] = v.float().cpu()
                    seen.add(k)
            if bar:
                bar.update(len(rows))
        if bar:
            bar.close()
        src = torch.from_numpy(uniq)
        return Codes(**{k: (v[src] if len(uniq) else v) if k in seen else None for k, v in out.items()})

    def auto_pose(self, speech, num_frames: int, seed: int, still: Codes) -> torch.Tensor:
        """(T, pose) generated head motion from the speech (None: silence) about the portrait's own pose code
        (`still`), deterministic for a seed."""
        raise NotImplementedError(f"{self.name}: no generated head motion")

    # ---- explicit controls ----------------------------------------------------------------------------------
    def preflight_controls(self, opt) -> None:
        """Parse the controls (and find what they need) before any work; malformed ones raise InputError."""
        controls_of(opt)

    def info(self) -> dict:
        """What `pdfgc info` prints: the family, its configuration and its sizes."""
        import dataclasses
        return {"family": self.name, "config": dataclasses.asdict(self.model.config)}

    def control_summary(self) -> tuple[list[str], str] | None:
        """(emotion labels, one line on what the explicit controls use) when the family needs no fitted mapping."""
        return None

    @abstractmethod
    def apply_controls(self, opt, num_frames: int, codes: Codes, portrait, still: Codes, prec) -> Codes:
        """The plan's codes with the explicit controls of `opt` applied (each control only its own part)."""

    # ---- frames ---------------------------------------------------------------------------------------------
    @abstractmethod
    def render(self, plan, sl: slice, prec, batch: int | None = None) -> torch.Tensor:
        """Frames of `plan` for `sl`: (B,3,S,S), float in [-1,1] or uint8 0..255 (S = `output_size(plan)`)."""

    def output_size(self, plan) -> int:
        return 224

    default_preset = "medium"   # x264 preset when --preset is not given (exact precision)

    def appearance_panel(self, portrait) -> np.ndarray:
        """The portrait as shown in the panel layout's first column."""
        return portrait.crop

    def to_output_matrix(self, portrait, size: int) -> np.ndarray:
        """(2,3) affine: the original photo's pixels -> pixels of a rendered frame of `size` (for paste-back)."""
        s = size / 224.0
        return np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5]]) @ np.vstack([portrait.to_crop, [0, 0, 1]])


def progress_bar(total: int, enabled: bool, desc: str = "rendering"):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="frame", desc=desc, file=sys.stderr, dynamic_ncols=True)
