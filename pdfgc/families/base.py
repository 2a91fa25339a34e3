"""What the pipeline and the commands need of a model family, and the registry that finds a family.

A family is one folder under ``pdfgc/families/`` and one class registered with `@register_family`; the registry
owns its whole life, so no shared file says `if family == ...`:

- **weights**: the `format` string its safetensors files carry in their metadata, `load(path)` and
  `save(model, path)` (`pdfgc.weights.load_model` finds the family by the file's format: `family_for_format`);
- **training**: its `training` (a `FamilyTraining` declared in its light options module: the `--config` names it
  trains, its `--stage` names and its own `pdfgc train` flags) and `train(args)` (`pdfgc train --config X` finds
  the family by `family_for_config`);
- **control fitting**: `fit_controls(args)` (`pdfgc fit-controls`; a family whose controls need no fitted
  mapping refuses with one line saying so);
- **inference**: which encoder reads which source (`encode_portrait`, `encode_clip`, `encode_speech`), its
  inference rules (default multipliers and smoothing), how explicit controls reach its codes
  (`preflight_controls`, `apply_controls`, given the portrait's appearance), and how a plan's codes become frames
  (`render`).

Codes are per factor, one row per frame: `mouth`, `emotion`, `eye`, `pose` (sizes in `code_dims`); the eye code's
`blink_dims` and `gaze_dims` may come from different sources.
"""
from __future__ import annotations

import argparse
import os
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from ..controls.explicit import controls_of
from ..errors import InputError
from ..official_rules import smooth_box3, smooth_mouth

FACTOR_CODES = ("mouth", "emotion", "eye", "pose")
# the registry lives in a module without torch (a family is declared there by name and imported when looked up);
# its functions are importable from here as before
from .registry import (  # noqa: E402,F401
    FamilyTraining,
    family_class,
    family_for,
    family_for_config,
    family_for_format,
    family_for_stage,
    family_of,
    family_options,
    family_trainings,
    known_formats,
    list_families,
    register_family,
    train_configs,
    train_stages,
)


@dataclass
class Codes:
    """Per-frame codes of one clip, the portrait or a plan; rows = frames. A factor not computed is None."""

    mouth: torch.Tensor | None = None
    emotion: torch.Tensor | None = None
    eye: torch.Tensor | None = None
    pose: torch.Tensor | None = None


class ModelFamily(ABC):
    """One model family behind the pipeline and the commands. `model` is the loaded model object (it has a
    `.config` with `name` and `trained`, and `.family` = the family's `name`)."""

    name: ClassVar[str]
    format: ClassVar[str]                      # the `format` entry of its weights files' safetensors metadata
    official_crop: ClassVar[bool] = False      # driving crops get PD-FGC's fixed crop-zoom
    generates_pose: ClassVar[bool] = False     # `auto_pose` (--pose auto): only where the pose code is in degrees
    # `encode_speech` may run in a thread beside the face encoders (it shares no network or torch state with them)
    speech_beside_faces: ClassVar[bool] = False
    # with more than one pipeline thread: how many portrait/clip encodings may run at once (each on its own graph),
    # and how many threads render frames (0: one per pipeline thread); 1 and 1 keep the serial path
    face_jobs_at_once: ClassVar[int] = 1
    render_threads: ClassVar[int] = 1
    options: ClassVar[type | None] = None      # its own AnimateOptions fields (families/<name>/options.py)
    blink_dims: ClassVar[tuple[int, ...]]
    gaze_dims: ClassVar[tuple[int, ...]]
    # training: its `pdfgc train --config` and `--stage` names, help phrase and own flags (declared in its light
    # options module, so `pdfgc train`'s parser needs no torch)
    training: ClassVar[FamilyTraining] = FamilyTraining()
    # its explicit controls go through a mapping fitted to its codes (`fit_controls`, `control_mapping`)
    fitted_controls: ClassVar[bool] = False

    def __init__(self, model, device: torch.device):
        self.model, self.device = model, device

    # ---- weights, training, control fitting: the family's life outside inference (classmethods: no model yet) --
    @classmethod
    @abstractmethod
    def load(cls, path: str | os.PathLike):
        """The model of a weights file of this family's `format` (CheckpointError naming the file if it is bad)."""

    @classmethod
    @abstractmethod
    def save(cls, model, path: str | os.PathLike) -> os.PathLike:
        """Write a model of this family to one weights file of its `format` (atomically); returns the path."""

    @classmethod
    def train(cls, args: argparse.Namespace) -> int:
        """Run `pdfgc train` for one of `training.configs` (the parsed arguments of every family's flags)."""
        raise InputError(f"the {cls.name} family has no training")

    @classmethod
    def fit_controls(cls, model, args: argparse.Namespace) -> int:
        """`pdfgc fit-controls` for a loaded model of this family; refused where its controls need no mapping."""
        weights = args.official_checkpoints or args.weights or "the default weights"
        raise InputError(f"{weights}: fit-controls fits a mapping to learned codes (the PD-FGC networks'); this is a "
                         f"{type(model).__name__} ({cls.name} family: its explicit controls need no fitted mapping)")

    # ---- sizes and rules ------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def code_dims(self) -> dict[str, int]:
        """{"mouth": d, "emotion": d, "eye": d, "pose": d}."""

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

    # ---- encoders -------------------------------------------------------------------------------------------
    @abstractmethod
    def encode_portrait(self, portrait, prec, opt=None) -> tuple[Any, Codes]:
        """(appearance: whatever `render` and `apply_controls` need of the portrait (per `opt`, the
        AnimateOptions), the portrait's own codes ("still"))."""

    @abstractmethod
    def encode_clip(self, clip, used: list[int], want_mouth: bool, prec, opt=None, progress: bool = False) -> Codes:
        """Codes of a driving clip's frames `used` (rows: every frame of the clip; the others are left zero), as the
        family transfers them (e.g. relative to the clip's neutral frame, per `opt`, the AnimateOptions; None: the
        defaults). `want_mouth`: the clip drives the lips."""

    @abstractmethod
    def encode_speech(self, speech, num_frames: int, prec, batch: int | None = None) -> torch.Tensor:
        """(num_frames, mouth) raw mouth codes from `speech` (a pipeline `Speech`: 16 kHz samples and the whole
        track's loudness), before the family's smoothing and multiplier."""

    def batch_size(self, kind: str, precision: str = "exact", requested: int | None = None) -> int:
        if requested:
            return int(requested)
        return 16 if self.device.type == "cuda" else 8

    def auto_pose(self, speech, num_frames: int, seed: int, still: Codes) -> torch.Tensor:
        """(T, pose) generated head motion from the speech (None: silence) about the portrait's own pose code
        (`still`), deterministic for a seed; only called where `generates_pose`."""
        raise InputError(f"{self.name}: no generated head motion")

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

    def control_mapping(self, path=None):
        """The fitted control mapping the explicit controls use (`path`, else the family's default place), None
        when the family needs none or has none."""
        return None

    @abstractmethod
    def apply_controls(self, opt, num_frames: int, codes: Codes, appearance, still: Codes, prec) -> Codes:
        """The plan's codes with the explicit controls of `opt` applied (each control only its own part);
        `appearance` and `still` are what `encode_portrait` returned for the portrait."""

    # ---- frames ---------------------------------------------------------------------------------------------
    @abstractmethod
    def render(self, plan, sl: slice, prec, batch: int | None = None) -> torch.Tensor:
        """Frames of `plan` for `sl`: (B,3,S,S), float in [-1,1] or uint8 0..255 (S = `output_size(plan)`)."""

    def output_size(self, plan) -> int:
        return 224

    # ---- set-ups the pipeline may run early or beside other work (none by default) --------------------------
    def warm_up(self, opt) -> None:
        """Input-free set-ups started as a job with audio begins (may start a thread; idempotent)."""

    def prepare_portrait(self, appearance, opt) -> None:
        """The portrait's render set-ups, made while the driving clips are measured (only when frames follow)."""

    def prepare_render(self, plan) -> None:
        """A plan's lazy render set-ups, made on the caller's thread before batches go to render threads."""

    default_preset = "medium"   # x264 preset when --preset is not given (exact precision)

    def appearance_panel(self, portrait) -> np.ndarray:
        """The portrait as shown in the panel layout's first column."""
        return portrait.crop

    def to_output_matrix(self, portrait, size: int) -> np.ndarray:
        """(2,3) affine: the original photo's pixels -> pixels of a rendered frame of `size` (for paste-back)."""
        s = size / 224.0
        return np.array([[s, 0, 0.5 * s - 0.5], [0, s, 0.5 * s - 0.5]]) @ np.vstack([portrait.to_crop, [0, 0, 1]])


def encode_clip_in_batches(clip, used: list[int], encode_frames: Callable[[np.ndarray], Codes], dims: dict[str, int],
                           batch: int, progress: bool = False) -> Codes:
    """`encode_clip` for a family whose encoder reads frames independently: `encode_frames` on batches of the used
    crops; byte-identical frames are encoded once."""
    uniq = clip.unique_index()
    todo = sorted({int(uniq[i]) for i in used})
    out = {k: torch.zeros(clip.num_frames, d) for k, d in dims.items()}
    seen = set()
    bar = progress_bar(len(todo), progress and len(todo) > 4 * batch, f"encoding {clip.path.name}")
    for s in range(0, len(todo), batch):
        rows = todo[s:s + batch]
        codes = encode_frames(np.asarray(clip.crops[rows]))
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


def progress_bar(total: int, enabled: bool, desc: str = "rendering"):
    if not enabled:
        return None
    from tqdm import tqdm
    return tqdm(total=total, unit="frame", desc=desc, file=sys.stderr, dynamic_ncols=True)
