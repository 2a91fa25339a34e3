"""Load the four official checkpoint files (`appearance_model.pth`, `motion_model.pth`, `audio_model.pth`,
`generator_model.pth`) safely, and convert them to our safetensors format.

Safety: `torch.load(weights_only=True)`: no pickled code is ever run. Files are flat state_dicts; a `module.`
prefix (DDP) or a {'state_dict': ...} wrapper is accepted and reported.

Key rules (official `make_model`, spec 1.6) made strict where the official code was silently lax: every key the
model uses must be present with its shape (the official code would keep random init); keys that exist in the
official files but are unused at inference are dropped; for appearance and audio, any other extra key is an error
as in the official strict load; for motion and generator extra keys are ignored as the official code does, with a
warning listing them.

The generator's NoiseInjection maps are not in the files: the official code draws them on its first forward after
`torch.manual_seed(20202001)`; on CPU that gives exactly `official_noise()`, which we store in the model.
"""
from __future__ import annotations

import dataclasses
import os
import re
import warnings
import zipfile
from pathlib import Path

import torch

from ....errors import CheckpointError
from ....fileio import atomic_path
from ..model import PDFGC, ModelConfig
from ..seeded_weights import official_noise
from .layout import FILES, is_generator_noise_key, official_layout, unused_keys

# key substrings the official loaders skip (spec 1.6); audio's were an older expression branch
_AUDIO_SKIPPED = ("model.layer4_exp", "model.attention_exp", "model.fc_exp", "exp_embed")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """torch.load a checkpoint with weights_only=True; clear errors for missing, empty, truncated or odd files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, EOFError, RuntimeError) as e:
        raise CheckpointError(f"{path}: cannot read checkpoint: truncated or corrupt file ({e})") from None
    except Exception as e:  # weights_only refuses pickled code: say so rather than unpickling it
        raise CheckpointError(f"{path}: refused to load: not a plain tensor state_dict: {refusal_reason(e)}; "
                              "pdfgc never runs code stored in a checkpoint") from None
    if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        for wrapper in ("state_dict", "model", "net"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: not a state_dict (found {type(obj).__name__})")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise CheckpointError(f"{path}: entry '{bad}' is not a tensor")
    return dict(obj)


def refusal_reason(exc: BaseException) -> str:
    """Why torch.load(weights_only=True) refused a file, in our words. torch's own message advises retrying with
    `weights_only=False`, which would run whatever the file holds: never quote it."""
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if m:
        return f"it holds pickled Python objects ({m.group(1)})"
    return "it holds pickled Python objects, not only tensors"


def convert_official_state_dict(model: PDFGC, network: str, sd: dict[str, torch.Tensor], source: str
                                ) -> dict[str, torch.Tensor]:
    """Official file entries -> our network's state_dict entries (without generator noise), checked."""
    layout = official_layout(model, network)
    unused = unused_keys(model, network)
    wanted = {k: v for k, v in layout.items() if k not in unused}
    out: dict[str, torch.Tensor] = {}
    for k, (shape, dtype) in wanted.items():
        if k not in sd:
            raise CheckpointError(f"{source}: missing key '{k}' (expected shape {shape}); "
                                  f"is this the official {FILES[network]}?")
        t = sd[k]
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(f"{source}: key '{k}' has shape {tuple(t.shape)}, expected {shape}")
        out[k] = t.to(dtype) if t.dtype != dtype else t
    extra = [k for k in sd if k not in layout]
    if network in ("appearance", "audio"):
        def skipped(k: str) -> bool:
            if "fc" in k and "model" not in k:
                return True
            return network == "audio" and any(s in k for s in _AUDIO_SKIPPED)
        extra_bad = [k for k in extra if not skipped(k)]
        if extra_bad:
            raise CheckpointError(f"{source}: unexpected key '{extra_bad[0]}' ({len(extra_bad)} unexpected in all); "
                                  f"is this the official {FILES[network]}?")
    elif extra:
        warnings.warn(f"{source}: ignoring {len(extra)} keys the model does not use (first: '{extra[0]}')")
    return out


def _locate(source: str | os.PathLike | dict) -> dict[str, Path]:
    if isinstance(source, dict):
        return {n: Path(source[n]) for n in FILES}
    d = Path(source)
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a folder (expected a folder holding {', '.join(FILES.values())})")
    paths = {n: d / f for n, f in FILES.items()}
    if not paths["motion"].exists() and (d / "motion_mode.pth").exists():  # the official readme's spelling
        paths["motion"] = d / "motion_mode.pth"
    return paths


def load_official(source: str | os.PathLike | dict, noise: list[torch.Tensor] | None = None) -> PDFGC:
    """Build the official model from a folder with the four .pth files (or {network: path}).

    `noise`: generator noise maps to use instead of the official CPU draw (e.g. a fixture's).
    """
    paths = _locate(source)
    model = PDFGC(dataclasses.replace(ModelConfig(), name="pdfgc-official", trained=True,
                                      notes="converted from the official PD-FGC checkpoints"))
    for network, path in paths.items():
        sd = read_state_dict(path)
        converted = convert_official_state_dict(model, network, sd, str(path))
        net = getattr(model, network)
        missing = [k for k in net.state_dict() if k not in converted and not is_generator_noise_key(k)]
        assert not missing, missing  # convert_official_state_dict checked every used key
        net.load_state_dict(converted, strict=False)
    model.generator.clear_caches()
    set_noise(model, noise if noise is not None else official_noise(model))
    return model


def set_noise(model: PDFGC, noise: list[torch.Tensor]) -> None:
    layers = model.generator.noise_layers()
    if len(noise) != len(layers):
        raise CheckpointError(f"expected {len(layers)} noise maps, got {len(noise)}")
    for layer, n in zip(layers, noise):
        if tuple(n.shape) != tuple(layer.noise.shape):
            raise CheckpointError(f"noise map of shape {tuple(n.shape)} where {tuple(layer.noise.shape)} is needed")
        layer.noise.copy_(torch.as_tensor(n))
    model.generator.clear_caches()


def to_official_state_dicts(model: PDFGC) -> dict[str, dict[str, torch.Tensor]]:
    """Our model -> the four official-layout state_dicts (unused official entries filled with zeros)."""
    out = {}
    for network in FILES:
        own = getattr(model, network).state_dict()
        sd = {}
        for k, (shape, dtype) in official_layout(model, network).items():
            sd[k] = own[k].clone() if k in own else torch.zeros(shape, dtype=dtype)
        out[network] = sd
    return out


def save_official(model: PDFGC, folder: str | os.PathLike) -> dict[str, Path]:
    """Write the four official-format .pth files (flat state_dicts) that the official code loads unchanged."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for network, sd in to_official_state_dicts(model).items():
        path = folder / FILES[network]
        with atomic_path(path) as tmp:
            torch.save(sd, str(tmp))
        written[network] = path
    return written


def convert_official(source: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Official .pth folder -> one safetensors file in our format."""
    return load_official(source).save_pretrained(output)
