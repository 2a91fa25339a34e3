"""The PD-FGC model: four networks, the style layout that joins them, and our weights format.

Our format is one safetensors file: keys `appearance.*`, `motion.*`, `audio.*`, `generator.*` (official module
names, without the official files' unused entries; the generator's fixed noise maps included) and the JSON
`ModelConfig` in the file's metadata, so a file alone rebuilds its model.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ...errors import CheckpointError
from ...fileio import atomic_path
from ...official_rules import EMOTION_SCALE, EYE_SCALE, MOUTH_SCALE
from ...tensorfile import looks_like_pytorch, open_tensors, pytorch_hint, unreadable
from .networks.appearance import AppearanceEncoder
from .networks.audio import AudioEncoder
from .networks.generator import Generator
from .networks.motion import MotionEncoder
from .seeded_weights import rule_weights_for_model

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
    # official inference heuristics (spec 1.5, pdfgc.official_rules): code multipliers applied at inference
    mouth_scale: float = MOUTH_SCALE
    eye_scale: float = EYE_SCALE
    emotion_scale: float = EMOTION_SCALE
    # the official crop of every 224 crop before the networks (pdfgc.official_rules.official_crop_zoom)
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
        path = Path(path)
        if path.is_dir():
            path = path / "model.safetensors"
        with open_tensors(path, "weights file") as f:
            meta = f.metadata
            if meta.get("format") != FORMAT_NAME:
                raise CheckpointError(f"{path}: not a pdfgc weights file (no 'format: pdfgc' metadata); "
                                      + _not_pdfgc_hint(path))
            config = config_from_metadata(meta.get("config"), str(path))
            # the stored config must describe exactly the stored tensors, checked on the meta device (no
            # memory): a config asking for huge channels fails here, not in a 130 GB allocation
            check_shapes(meta_state_shapes(config, str(path)), {k: f.shape(k) for k in f.keys()}, str(path))
            tensors = f.tensors()
        model = cls(config)
        load_state_dict_checked(model, tensors, str(path))
        model.weights_path = path  # files kept beside the weights (e.g. the control mapping) are found from it
        return model.to(device)

    @classmethod
    def random(cls, seed: int = 0, config: ModelConfig | None = None) -> "PDFGC":
        """Seeded random weights by the official fixture rule (well-conditioned, deterministic). Renders noise."""
        config = dataclasses.replace(config or ModelConfig(), trained=False, name=f"random-seed{seed}",
                                     notes="seeded random weights: not a trained model")
        model = cls(config)
        load_state_dict_checked(model, rule_weights_for_model(model, seed, NETWORKS), f"<random weights, seed {seed}>")
        return model


def unreadable_weights(path: str | os.PathLike, exc: BaseException) -> CheckpointError:
    """The error for a weights file safetensors cannot read (`tensorfile.unreadable`; a .pth is told how it is
    loaded)."""
    return unreadable(path, exc)


def _not_pdfgc_hint(path: Path, pytorch: bool = False) -> str:
    if pytorch or looks_like_pytorch(path):
        return pytorch_hint(path)
    return ("official .pth checkpoints are loaded with `pdfgc.official` / `pdfgc convert-official`")


# ---- the stored config: checked against the known schema before anything is built -----------------------------
MAX_WIDTH = 8192       # channels, feature sizes, code sizes (official: at most 2048)
MAX_DEPTH = 64         # blocks per stage (official: at most 6)
MAX_IMAGE_SIZE = 1024  # official 224


def _network_params() -> dict[str, dict]:
    import inspect
    out = {}
    for name, cls in (("appearance", AppearanceEncoder), ("motion", MotionEncoder), ("audio", AudioEncoder),
                      ("generator", Generator)):
        out[name] = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values()
                     if p.name != "self"}
    return out


def _check_int(v, where: str, source: str, lo: int = 1, hi: int = MAX_WIDTH) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise CheckpointError(f"{source}: stored config {where} = {v!r}: expected a whole number in {lo}..{hi}")


def check_config_dict(d, source: str) -> None:
    """The JSON config of a weights file against ModelConfig's schema: known keys only (at every level), whole
    numbers within bounds, so that a corrupt or hostile file is refused by name before any network is built."""
    if not isinstance(d, dict):
        raise CheckpointError(f"{source}: stored config is not a JSON object")
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        raise CheckpointError(f"{source}: stored config has unknown key '{unknown[0]}' (written by another "
                              "version of pdfgc, or edited)")
    if "image_size" in d:
        _check_int(d["image_size"], "image_size", source, 16, MAX_IMAGE_SIZE)
    for k in ("mouth_scale", "eye_scale", "emotion_scale"):
        if k in d and (isinstance(d[k], bool) or not isinstance(d[k], (int, float)) or not math.isfinite(d[k])):
            raise CheckpointError(f"{source}: stored config {k} = {d[k]!r}: expected a finite number")
    for k in ("official_crop", "trained"):
        if k in d and not isinstance(d[k], bool):
            raise CheckpointError(f"{source}: stored config {k} = {d[k]!r}: expected true or false")
    for k in ("name", "notes", "pose_code_units"):
        if k in d and not isinstance(d[k], str):
            raise CheckpointError(f"{source}: stored config {k} = {d[k]!r}: expected a string")
    lay = d.get("layout", {})
    if not isinstance(lay, dict):
        raise CheckpointError(f"{source}: stored config layout is not a JSON object")
    for k, v in lay.items():
        if k not in {f.name for f in dataclasses.fields(StyleLayout)}:
            raise CheckpointError(f"{source}: stored config has unknown key 'layout.{k}'")
        _check_int(v, f"layout.{k}", source)
    for net, params in _network_params().items():
        kw = d.get(net, {})
        if not isinstance(kw, dict):
            raise CheckpointError(f"{source}: stored config {net} is not a JSON object")
        for k, v in kw.items():
            where = f"{net}.{k}"
            if k not in params:
                raise CheckpointError(f"{source}: stored config has unknown key '{where}' (not a parameter of the "
                                      f"{net} network)")
            default = params[k]
            if k == "channels" and net == "generator":
                if not isinstance(v, dict) or not v:
                    raise CheckpointError(f"{source}: stored config {where}: expected {{resolution: channels}}")
                for res, ch in v.items():
                    if not str(res).isdigit():
                        raise CheckpointError(f"{source}: stored config {where}: resolution {res!r} is not a number")
                    _check_int(int(res), f"{where} resolution", source, 1, MAX_IMAGE_SIZE)
                    _check_int(ch, f"{where}[{res}]", source)
            elif isinstance(default, bool):
                if not isinstance(v, bool):
                    raise CheckpointError(f"{source}: stored config {where} = {v!r}: expected true or false")
            elif isinstance(default, tuple):
                if not isinstance(v, (list, tuple)) or not 1 <= len(v) <= 16:
                    raise CheckpointError(f"{source}: stored config {where} = {v!r}: expected a list of numbers")
                hi = MAX_DEPTH if k in ("blocks", "layers") else MAX_WIDTH
                for x in v:
                    _check_int(x, where, source, 1, hi)
            else:
                _check_int(v, where, source)


def config_from_metadata(text, source: str) -> "ModelConfig":
    """The ModelConfig stored in a weights file's metadata, checked (`check_config_dict`); CheckpointError else."""
    if not isinstance(text, str):
        raise CheckpointError(f"{source}: no model config in the file's metadata")
    try:
        d = json.loads(text)
    except ValueError as e:
        raise CheckpointError(f"{source}: stored config is not valid JSON ({e})") from None
    check_config_dict(d, source)
    return ModelConfig.from_json(text)


def meta_state_shapes(config: "ModelConfig", source: str) -> dict[str, tuple]:
    """The state_dict shapes `config` builds, computed on the meta device (nothing allocated)."""
    try:
        with torch.device("meta"):
            model = PDFGC(config)
    except CheckpointError:
        raise
    except Exception as e:  # an inconsistent config (e.g. sizes that do not fit together)
        raise CheckpointError(f"{source}: stored config does not describe a buildable model "
                              f"({type(e).__name__}: {e})") from None
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def check_shapes(own: dict[str, tuple], given: dict[str, tuple], source: str) -> None:
    """Name the first missing, unexpected or mis-shaped key of `given` against `own`."""
    for k, shape in own.items():
        if k not in given:
            raise CheckpointError(f"{source}: missing key '{k}' (expected shape {shape})")
        if tuple(given[k]) != tuple(shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(given[k])}, expected {shape}")
    for k in given:
        if k not in own:
            raise CheckpointError(f"{source}: unexpected key '{k}' (not part of this model)")


def load_state_dict_checked(module: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Strict load that names the first missing, unexpected or mis-shaped key."""
    check_shapes({k: tuple(v.shape) for k, v in module.state_dict().items()},
                 {k: tuple(v.shape) for k, v in tensors.items()}, source)
    module.load_state_dict(tensors, strict=True)
    for m in module.modules():
        if hasattr(m, "clear_caches"):
            m.clear_caches()
