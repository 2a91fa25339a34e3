"""The PD-FGC model: four networks, the style layout that joins them, and our weights format.

Our format is one safetensors file: keys `appearance.*`, `motion.*`, `audio.*`, `generator.*` (official module
names, without the official files' unused entries; the generator's fixed noise maps included) and the JSON
`ModelConfig` in the file's metadata, so a file alone rebuilds its model.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .errors import CheckpointError
from .fileio import atomic_path
from .networks.appearance import AppearanceEncoder
from .networks.audio import AudioEncoder
from .networks.generator import Generator
from .networks.motion import MotionEncoder

FORMAT_NAME = "pdfgc"
FORMAT_VERSION = "1"
NETWORKS = ("appearance", "motion", "audio", "generator")


@dataclass
class StyleLayout:
    """The generator's style vector `[appearance | mouth | emotion | eye | pose]` (2048+500+30+6+6 = 2590)."""

    appearance: int = 2048
    mouth: int = 500
    emotion: int = 30
    eye: int = 6
    pose: int = 6

    @property
    def dim(self) -> int:
        return self.appearance + self.mouth + self.emotion + self.eye + self.pose

    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for name in ("appearance", "mouth", "emotion", "eye", "pose"):
            n = getattr(self, name)
            out[name] = slice(start, start + n)
            start += n
        return out


# eye-code dimensions that carry blink and gaze (official flag masks, spec section 3.4)
BLINK_DIMS = (0, 1, 4, 5)
GAZE_DIMS = (2, 3)


@dataclass
class ModelConfig:
    """Everything needed to build the networks; stored in every weights file. Defaults are the official model."""

    name: str = "pdfgc-official"
    image_size: int = 224
    appearance: dict = field(default_factory=dict)   # AppearanceEncoder kwargs
    motion: dict = field(default_factory=dict)       # MotionEncoder kwargs
    audio: dict = field(default_factory=dict)        # AudioEncoder kwargs
    generator: dict = field(default_factory=dict)    # Generator kwargs (channels keys as str in JSON)
    layout: StyleLayout = field(default_factory=StyleLayout)
    # official inference heuristics (spec 1.5): code multipliers applied at inference
    mouth_scale: float = 1.5
    eye_scale: float = 1.2
    emotion_scale: float = 1.2
    # official preprocessing of every 224 crop: keep rows [0,192), cols [16,208), zoom back to 224
    official_crop: bool = True
    trained: bool = True   # False for seeded random weights (outputs are noise; say so loudly)
    notes: str = ""
    # what the 6-d pose code means: "" = learned units (official model); models from `pdfgc train` regress it to
    # physical units (pdfgc.training.stages.POSE_CODE_UNITS), so explicit controls can set angles directly
    pose_code_units: str = ""

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        d = json.loads(text)
        d["layout"] = StyleLayout(**d.get("layout", {}))
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class PDFGC(nn.Module):
    """Appearance, motion and audio encoders plus the modulated generator."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config = config or ModelConfig()
        lay = config.layout
        self.appearance = AppearanceEncoder(**config.appearance)
        self.motion = MotionEncoder(**{"mouth_dim": lay.mouth, "pose_dim": lay.pose, "eye_dim": lay.eye,
                                       "emotion_dim": lay.emotion, "input_size": config.image_size,
                                       **config.motion})
        self.audio = AudioEncoder(**{"mouth_dim": lay.mouth, **config.audio})
        gkw = dict(config.generator)
        if "channels" in gkw:
            gkw["channels"] = {int(k): int(v) for k, v in gkw["channels"].items()}
        self.generator = Generator(**{"size": config.image_size, "style_dim": lay.dim, **gkw})
        if self.appearance.vector_dim != lay.appearance:
            raise ValueError(f"appearance vector is {self.appearance.vector_dim}-d but layout says {lay.appearance}")
        self.eval().requires_grad_(False)

    @property
    def layout(self) -> StyleLayout:
        return self.config.layout

    def assemble_style(self, appearance: torch.Tensor, mouth: torch.Tensor, emotion: torch.Tensor,
                       eye: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """Per-frame style (B, 2590); `appearance` (1 or B, 2048) is broadcast over the batch."""
        b = mouth.shape[0]
        return torch.cat([appearance.expand(b, -1), mouth, emotion, eye, pose], dim=1)

    # ---- resolution: every crop in the pipeline is the official 224; a lite model runs at image_size ----------
    def network_input(self, x: torch.Tensor) -> torch.Tensor:
        """Official-preprocessed crops (N,3,224,224) in [-1,1] -> the encoders' input (N,3,S,S), S = image_size.
        Identity at 224; otherwise area averaging (an exact 2x2 box for 224 -> 112: antialiased, differentiable)."""
        s = self.config.image_size
        if x.shape[-2:] == (s, s):
            return x
        return nn.functional.interpolate(x, size=(s, s), mode="area")

    def to_crop_resolution(self, frames: torch.Tensor, size: int = 224) -> torch.Tensor:
        """Generated frames (N,3,S,S) in [-1,1] -> (N,3,224,224) for composition and paste-back.
        Identity at 224; otherwise bicubic upsampling, clamped back into [-1,1] (bicubic overshoots)."""
        if frames.shape[-2:] == (size, size):
            return frames
        out = nn.functional.interpolate(frames, size=(size, size), mode="bicubic", align_corners=False)
        return out.clamp_(-1, 1)

    # ---- our weights format -------------------------------------------------------------------------------
    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Write the weights and config to one safetensors file, atomically."""
        from safetensors.torch import save_file

        path = Path(path)
        if path.suffix != ".safetensors":
            path = path / "model.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": self.config.to_json()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=meta)
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> "PDFGC":
        """Load a model saved by `save_pretrained` (a .safetensors file or a folder holding model.safetensors)."""
        from safetensors import safe_open

        path = Path(path)
        if path.is_dir():
            path = path / "model.safetensors"
        if not path.is_file():
            raise CheckpointError(f"{path}: weights file not found")
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FORMAT_NAME:
                    raise CheckpointError(f"{path}: not a pdfgc weights file (no 'format: pdfgc' metadata); "
                                          "official .pth checkpoints are loaded with `pdfgc.official` / "
                                          "`pdfgc convert-official`")
                config = ModelConfig.from_json(meta["config"])
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises its own error types for truncated/corrupt headers
            raise CheckpointError(f"{path}: cannot read safetensors file ({e})") from None
        model = cls(config)
        load_state_dict_checked(model, tensors, str(path))
        model.weights_path = path  # files kept beside the weights (e.g. the control mapping) are found from it
        return model.to(device)

    @classmethod
    def random(cls, seed: int = 0, config: ModelConfig | None = None) -> "PDFGC":
        """Seeded random weights by the official fixture rule (well-conditioned, deterministic). Renders noise."""
        from .official.fixture import rule_weights_for_model

        config = dataclasses.replace(config or ModelConfig(), trained=False, name=f"random-seed{seed}",
                                     notes="seeded random weights: not a trained model")
        model = cls(config)
        load_state_dict_checked(model, rule_weights_for_model(model, seed), f"<random weights, seed {seed}>")
        return model


def load_state_dict_checked(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Strict load that names the first missing, unexpected or mis-shaped key."""
    own = module.state_dict()
    for k, v in own.items():
        if k not in tensors:
            raise CheckpointError(f"{source}: missing key '{k}' (expected shape {tuple(v.shape)})")
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(tensors[k].shape)}, "
                                  f"expected {tuple(v.shape)}")
    for k in tensors:
        if k not in own:
            raise CheckpointError(f"{source}: unexpected key '{k}' (not part of this model)")
    module.load_state_dict(tensors, strict=True)
    for m in module.modules():
        if hasattr(m, "clear_caches"):
            m.clear_caches()
