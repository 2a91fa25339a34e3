"""The mesh-warp family's fitted and learned parameters, in ONE safetensors file.

Tensors (float32):

- ``mean_shape`` (478,3): mean canonical mesh of the corpus's neutral frames (see ``codes.canonicalize``); the
  reference of ABSOLUTE mouth/emotion codes (``codes.measure(..., reference=None)``).
- ``mouth_basis`` (Dm,478,3), ``emotion_basis`` (De,478,3): orthonormal (flattened) PCA bases of canonical
  offsets from each clip's neutral frame, zero outside ``codes.MOUTH_POINTS`` / ``codes.EMOTION_POINTS``.
- ``emotion_from_mouth`` (Dm,De): the least-squares map from mouth code to emotion code over the corpus, regressed
  out of every emotion code (speech moves the mouth corners and cheeks; that part is not emotion).
- ``open_ear`` (2,): median open-eye EAR of the corpus's neutral frames (the lid code's 1 for absolute codes).
- ``gaze_center`` (2,): mean gaze of the corpus's neutral frames in ``signals.gaze`` units ("looking at the camera").
- ``emotion_shape.<label>`` (De,): per-label emotion code, ``neutral`` among them (zero), and
  ``emotion_mouth.<label>`` (Dm,): the label's resting mouth shape, both from ONE least-squares fit of the label's
  measured mesh change (``emotion.fit_labels``: the mean change from the same person's neutral clip over the
  corpus's people who have one, level 1 = that real mean, no gain). The mouth part moves the corners and the lips'
  width and curl but never an inner-lip gap, the chin or the lip line (``emotion.opening_constraints``): a label
  never opens the mouth, so speech's opening stays the audio's. An emotion label adds it to the mouth code
  (``codes.apply_emotion_label``).
- ``emotion_lid.<label>`` (2,): per-label lid opening change (opening = own x (1 + value)), the measured ratio of
  the label clips' median eye aspect ratio to the neutral clip's: surprise and fear widen the eyes, anger, a smile
  and sadness narrow them. The lids are the blink code's, not the emotion code's (a blink must not read as an
  expression), so a label carries its lid change beside its codes.
- ``audio.<name>``: the lips head's buffers (``lips.LipsHead``; config ``audio`` with ``kind`` =
  ``lips.KIND``), absent when not fitted. Files from before the head hold the removed mel network here: they load,
  without lips from speech.

Metadata: ``format`` = ``pdfgc-meshwarp``, ``version``, ``config`` (JSON: dimensions, emotion smoothing, audio
network config) and ``info`` (JSON: how and on what it was fitted, held-out figures).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import CheckpointError
from ...fileio import atomic_path

FORMAT = "pdfgc-meshwarp"
VERSION = 1
NUM_POINTS = 478
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "weights" / "meshwarp.safetensors"


@dataclass
class MeshParams:
    mean_shape: np.ndarray                      # (478,3)
    mouth_basis: np.ndarray                     # (Dm,478,3)
    emotion_basis: np.ndarray                   # (De,478,3)
    emotion_from_mouth: np.ndarray              # (Dm,De)
    open_ear: np.ndarray = field(default_factory=lambda: np.array([0.3, 0.3], np.float32))
    gaze_center: np.ndarray = field(default_factory=lambda: np.zeros(2, np.float32))
    emotion_shapes: dict = field(default_factory=dict)   # label -> (De,)
    emotion_mouths: dict = field(default_factory=dict)   # label -> (Dm,)
    emotion_lids: dict = field(default_factory=dict)     # label -> (2,) lid opening change
    emotion_sigma_s: float = 0.3                # temporal Gaussian low-pass of the emotion code (seconds)
    audio_state: dict | None = None             # name -> torch tensor (lips.LipsHead state dict)
    audio_config: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        f32 = lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.float32))  # noqa: E731
        self.mean_shape = f32(self.mean_shape)
        self.mouth_basis = f32(self.mouth_basis)
        self.emotion_basis = f32(self.emotion_basis)
        self.emotion_from_mouth = f32(self.emotion_from_mouth)
        self.open_ear = f32(self.open_ear).reshape(2)
        self.gaze_center = f32(self.gaze_center).reshape(2)
        self.emotion_shapes = {str(k): f32(v).reshape(-1) for k, v in self.emotion_shapes.items()}
        self.emotion_mouths = {str(k): f32(v).reshape(-1) for k, v in self.emotion_mouths.items()}
        self.emotion_lids = {str(k): f32(v).reshape(2) for k, v in self.emotion_lids.items()}
        self.check()

    @property
    def mouth_dim(self) -> int:
        return int(self.mouth_basis.shape[0])

    @property
    def emotion_dim(self) -> int:
        return int(self.emotion_basis.shape[0])

    def check(self, what: str = "meshwarp parameters") -> None:
        """Shapes agree with each other (raises ValueError naming the first mismatch)."""
        dm, de = self.mouth_dim, self.emotion_dim
        expect = {"mean_shape": (NUM_POINTS, 3), "mouth_basis": (dm, NUM_POINTS, 3),
                  "emotion_basis": (de, NUM_POINTS, 3), "emotion_from_mouth": (dm, de)}
        for name, shape in expect.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{what}: {name} has shape {getattr(self, name).shape}, expected {shape}")
        for label, code in self.emotion_shapes.items():
            if code.shape != (de,):
                raise ValueError(f"{what}: emotion shape '{label}' has {code.size} values, expected {de}")
        for label, code in self.emotion_mouths.items():
            if code.shape != (dm,):
                raise ValueError(f"{what}: emotion mouth '{label}' has {code.size} values, expected {dm}")

    def _label(self, label: str) -> str:
        from ...controls.explicit import normalise_emotion
        from ...errors import InputError

        name = normalise_emotion(label)
        if name not in self.emotion_shapes:
            raise InputError(f"emotion label '{label}': the meshwarp parameters know "
                             f"{', '.join(sorted(self.emotion_shapes)) or 'no labels'}")
        return name

    def emotion_code(self, label: str) -> np.ndarray:
        """(De,) code of an emotion label (synonyms as ``pdfgc.controls.explicit``), relative to neutral."""
        name = self._label(label)
        return (np.asarray(self.emotion_shapes[name], np.float32)
                - np.asarray(self.emotion_shapes.get("neutral", 0.0), np.float32))

    def emotion_mouth(self, label: str) -> np.ndarray:
        """(Dm,) resting mouth shape of an emotion label relative to neutral (zeros when not fitted)."""
        name = self._label(label)
        return np.array(self.emotion_mouths.get(name, np.zeros(self.mouth_dim)), np.float32)

    def emotion_lid(self, label: str) -> np.ndarray:
        """(2,) lid opening change of an emotion label (zeros when not fitted)."""
        name = self._label(label)
        return np.array(self.emotion_lids.get(name, np.zeros(2)), np.float32)


# ---------------------------------------------------------------------------------------------- files


def save_params(params: MeshParams, path: str | os.PathLike) -> Path:
    """Write ``params`` to ``path`` atomically (one safetensors file, tensors + JSON metadata)."""
    import torch
    from safetensors.torch import save_file

    params.check()
    tensors = {
        "mean_shape": params.mean_shape, "mouth_basis": params.mouth_basis, "emotion_basis": params.emotion_basis,
        "emotion_from_mouth": params.emotion_from_mouth, "open_ear": params.open_ear,
        "gaze_center": params.gaze_center,
    }
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    for label, code in params.emotion_shapes.items():
        tensors[f"emotion_shape.{label}"] = torch.from_numpy(code.copy())
    for label, code in params.emotion_mouths.items():
        tensors[f"emotion_mouth.{label}"] = torch.from_numpy(code.copy())
    for label, code in params.emotion_lids.items():
        tensors[f"emotion_lid.{label}"] = torch.from_numpy(code.copy())
    for name, value in (params.audio_state or {}).items():
        tensors[f"audio.{name}"] = value.detach().to("cpu", torch.float32).contiguous().clone()
    config = {"mouth_dim": params.mouth_dim, "emotion_dim": params.emotion_dim,
              "emotion_sigma_s": params.emotion_sigma_s, "audio": params.audio_config}
    metadata = {"format": FORMAT, "version": str(VERSION), "config": json.dumps(config),
                "info": json.dumps(params.info)}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_params(path: str | os.PathLike | None = None) -> MeshParams:
    """Read a file written by ``save_params`` (default: the shipped ``pdfgc/weights/meshwarp.safetensors``).

    Any problem (missing, not safetensors, another format, missing or mis-shaped tensors) raises
    ``CheckpointError`` naming the file.
    """
    from ...tensorfile import read_tensors

    path = Path(path) if path is not None else DEFAULT_PATH
    tensors, meta = read_tensors(path, "meshwarp parameters file", expect_format=FORMAT)
    try:
        version = int(meta.get("version", "0"))
        config = json.loads(meta.get("config", "{}"))
        info = json.loads(meta.get("info", "{}"))
    except (ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: unreadable metadata ({e})") from None
    if version > VERSION:
        raise CheckpointError(f"{path}: meshwarp parameters version {version}, this pdfgc reads up to {VERSION}")
    required = ("mean_shape", "mouth_basis", "emotion_basis", "emotion_from_mouth", "open_ear", "gaze_center")
    for name in required:
        if name not in tensors:
            raise CheckpointError(f"{path}: missing tensor '{name}'")
    arrays = {k: tensors[k].numpy() for k in required}
    shapes = {k[len("emotion_shape."):]: v.numpy() for k, v in tensors.items() if k.startswith("emotion_shape.")}
    mouths = {k[len("emotion_mouth."):]: v.numpy() for k, v in tensors.items() if k.startswith("emotion_mouth.")}
    lids = {k[len("emotion_lid."):]: v.numpy() for k, v in tensors.items() if k.startswith("emotion_lid.")}
    audio = {k[len("audio."):]: v for k, v in tensors.items() if k.startswith("audio.")}
    try:
        return MeshParams(**arrays, emotion_shapes=shapes, emotion_mouths=mouths, emotion_lids=lids,
                          emotion_sigma_s=float(config.get("emotion_sigma_s", 0.3)),
                          audio_state=audio or None, audio_config=dict(config.get("audio") or {}), info=info)
    except ValueError as e:
        raise CheckpointError(f"{path}: {e}") from None
