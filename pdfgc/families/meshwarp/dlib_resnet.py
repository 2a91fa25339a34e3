"""dlib's 128-d face recognition ResNet in PyTorch (differentiable), with the weights shipped by face-api.

The network is ``dlib_face_recognition_resnet_model_v1`` (the model behind ``face_recognition`` and
``pdfgc.evaluation.identity``): a 7x7/2 conv stem, a 3x3/2 max pool, 29 conv layers in residual blocks at 32, 64,
128 and 256 channels (each down-sampling block adds a 2x2 average pool of its input, zero-padded in channels and
with the branch zero-padded at the bottom/right to the pool's size), a global mean and a 256->128 fc without bias.
Every conv has a bias and is followed by a per-channel affine ("scale") layer: dlib's ``affine``, its batch norm at
inference.
Input: a 150x150 RGB face chip aligned as ``dlib.get_face_chip(img, shape, size=150, padding=0.25)`` does it,
in [0, 255]; the port subtracts dlib's mean (122.782, 117.001, 104.298) and divides by 255 as face-api does
(dlib's ``input_rgb_image`` divides by 256: ``input_divisor=256.0``; either way the descriptor moves by < 0.001).

Weights: the npm package ``@vladmandic/face-api`` (MIT, version 1.7.15) ships the network as
``model/face_recognition_model-weights_manifest.json`` + ``face_recognition_model.bin`` (6.4 MB, tensorflow.js
layout). Most tensors are stored uint8-quantized (value = q * scale + min; the conv64 filters are plain float32), so
the port is not bit-exact with dlib. Set-up, in the repository root (``node_modules/`` is git-ignored)::

    npm install --no-save @vladmandic/face-api@1.7.15

or point ``$PDFGC_FACEAPI_DIR`` at a folder holding the two files. ``find_faceapi_model_dir()`` finds them;
``load_faceapi_weights(dir)`` builds the module.

Measured agreement with dlib 20.0.1 (``face_recognition_model_v1.compute_face_descriptor`` on the same 150x150
chip; HOG detector, 5-point shape predictor, ``get_face_chip(size=150, padding=0.25)``, which is exactly the chip
dlib's own ``compute_face_descriptor(img, shape)`` uses), on 12 real faces from /work/shared/data (anne, EDTalk's
identity, Macron, X-Portrait's source, six LivePortrait sources, two frames of one VoxCeleb2 clip):

- port vs dlib, same chip: 0.031-0.039 (mean 0.036) Euclidean, against descriptor norms of 1.26-1.60; the gap is
  consistent with the uint8 quantization (perturbing the weights by +-half a quantization step moves the descriptor
  0.03-0.04);
- different people, 65 pairs: dlib 0.504-1.088 (mean 0.861), port 0.514-1.090 (mean 0.861); per pair the two
  distances differ by at most 0.015; both put the same single pair under 0.6 (a cartoon vs a child's photo, 0.50 /
  0.51); same person (two VoxCeleb2 frames): dlib 0.296, port 0.293;
- port vs face-api 1.7.15 itself (tfjs cpu backend in node, same chips): 1.4e-5 (float rounding).

Speed: 14 ms per 150x150 descriptor on one CPU thread (dlib: 75 ms); differentiable (``features`` too).

``features(x, stages)`` returns intermediate maps for a perceptual / identity feature loss on crops of any size
>= 32 px (stage 1: 32 channels at ~1/4 resolution, 2: 64 at ~1/8, 3: 128 at ~1/16; stage 4, 256 channels at
~1/64, needs >= 103 px).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pdfgc.errors import InputError

MEAN_RGB = (122.782, 117.001, 104.298)
DESCRIPTOR_SIZE = 128
MANIFEST_NAME = "face_recognition_model-weights_manifest.json"
FACEAPI_VERSION = "1.7.15"
SETUP_COMMAND = f"npm install --no-save @vladmandic/face-api@{FACEAPI_VERSION}"

# (name, in channels, out channels, down-sampling) of the residual blocks, in order.
_BLOCKS = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)
# Stage k ends after block _STAGE_ENDS[k - 1] (stage 0 is the stem: conv + max pool).
_STAGE_ENDS = ("conv32_3", "conv64_3", "conv128_2", "conv256_down_out")

# Smallest crop side each stage runs on (the valid 7x7/2 stem, 3x3/2 pool and 3x3/2 convs shrink it).
_MIN_SIZE = {0: 11, 1: 11, 2: 19, 3: 31, 4: 103}

# numpy types of the stored dtypes of a tensorflow.js weights manifest (quantization dtype, else dtype).
_STORED = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16, "float32": np.float32,
           "int32": np.int32}


class _ConvScale(nn.Module):
    """Conv (with bias) then a per-channel affine; stride 1 pads to keep the size, stride 2 does not pad."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if stride == 1 else 0)
        self.scale = nn.Parameter(torch.ones(cout))
        self.shift = nn.Parameter(torch.zeros(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.scale[:, None, None] + self.shift[:, None, None]


class _Residual(nn.Module):
    """relu(x + affine(conv(relu(affine(conv(x)))))); the down-sampling kind strides the first conv by 2 and adds a
    2x2 average pool of x, zero-padded to the branch's channels (the branch is zero-padded to the pool's size)."""

    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = _ConvScale(cin, cout, 3, 2 if down else 1)
        self.conv2 = _ConvScale(cout, cout, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if self.down:
            x = F.avg_pool2d(x, 2, 2)
            dh, dw = x.shape[2] - out.shape[2], x.shape[3] - out.shape[3]
            if dh or dw:  # even sizes: the valid 3x3/2 conv gives one row/column fewer than the pool
                out = F.pad(out, (0, max(dw, 0), 0, max(dh, 0)))
                x = F.pad(x, (0, max(-dw, 0), 0, max(-dh, 0)))
            if x.shape[1] != out.shape[1]:
                x = F.pad(x, (0, 0, 0, 0, 0, out.shape[1] - x.shape[1]))
        return F.relu(out + x)


class DlibFaceResNet(nn.Module):
    """dlib's face recognition ResNet: (B, 3, 150, 150) RGB in [0, 255] -> (B, 128) descriptor."""

    def __init__(self, input_divisor: float = 255.0):
        super().__init__()
        self.input_divisor = float(input_divisor)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)
        self.conv32_down = _ConvScale(3, 32, 7, 2)
        for name, cin, cout, down in _BLOCKS:
            self.add_module(name, _Residual(cin, cout, down))
        self.fc = nn.Linear(256, DESCRIPTOR_SIZE, bias=False)

    def _check(self, x: torch.Tensor, min_size: int, what: str) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(f"DlibFaceResNet expects RGB images of shape (B, 3, H, W), got {tuple(x.shape)}")
        if min(x.shape[2:]) < min_size:
            raise InputError(f"DlibFaceResNet needs crops of at least {min_size}x{min_size} px for {what}, "
                             f"got {tuple(x.shape[2:])}")

    def _stem(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean.to(x.dtype)) / self.input_divisor
        return F.max_pool2d(F.relu(self.conv32_down(x)), 3, 2)

    def features(self, x: torch.Tensor, stages=(1, 2)) -> list[torch.Tensor]:
        """Feature maps after the given stages (0: stem, 1..4: the 32/64/128/256-channel levels), in that order.

        x: (B, 3, H, W) RGB in [0, 255]; stages 0-3 run on crops >= 32 px (e.g. 128x128: 32x30x30, 64x15x15,
        128x7x7), stage 4 needs >= 103 px."""
        stages = tuple(int(s) for s in stages)
        if not stages or any(s < 0 or s > len(_STAGE_ENDS) for s in stages):
            raise InputError(f"stages must be among 0..{len(_STAGE_ENDS)}, got {stages}")
        self._check(x, _MIN_SIZE[max(stages)], f"stages {stages}")
        return self._run(x, stages)

    def _run(self, x: torch.Tensor, stages: tuple[int, ...]) -> list[torch.Tensor]:
        out = self._stem(x)
        found, last = {0: out}, max(stages)
        for name, *_ in (_BLOCKS if last > 0 else ()):
            out = getattr(self, name)(out)
            if name in _STAGE_ENDS:
                stage = _STAGE_ENDS.index(name) + 1
                found[stage] = out
                if stage == last:
                    break
        return [found[s] for s in stages]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 150, 150) RGB in [0, 255] -> (B, 128); other sizes >= 103 px run but only 150 matches dlib."""
        self._check(x, _MIN_SIZE[len(_STAGE_ENDS)], "the descriptor")
        (out,) = self._run(x, (len(_STAGE_ENDS),))
        return self.fc(out.mean(dim=(2, 3)))


def _param_targets(model: DlibFaceResNet) -> dict[str, tuple[torch.Tensor, str]]:
    """face-api tensor name -> (parameter, layout): 'conv' (tfjs HWIO -> OIHW), 'fc' (transpose), 'vec'."""
    params = dict(model.named_parameters())
    targets = {}
    layers = ["conv32_down"] + [f"{name}/{c}" for name, *_ in _BLOCKS for c in ("conv1", "conv2")]
    for layer in layers:
        prefix = layer.replace("/", ".")
        targets[f"{layer}/conv/filters"] = (params[f"{prefix}.conv.weight"], "conv")
        targets[f"{layer}/conv/bias"] = (params[f"{prefix}.conv.bias"], "vec")
        targets[f"{layer}/scale/weights"] = (params[f"{prefix}.scale"], "vec")
        targets[f"{layer}/scale/biases"] = (params[f"{prefix}.shift"], "vec")
    targets["fc"] = (params["fc.weight"], "fc")
    return targets


def _read_manifest(model_dir: Path) -> dict[str, np.ndarray]:
    manifest_path = model_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise InputError(f"{manifest_path} is missing: run `{SETUP_COMMAND}` in the repository root "
                         "or set $PDFGC_FACEAPI_DIR to a folder holding the face-api model files")
    try:
        groups = json.loads(manifest_path.read_text())
        groups = [(list(g["paths"]), list(g["weights"])) for g in groups]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{manifest_path}: not a tensorflow.js weights manifest ({exc})") from exc
    tensors = {}
    for paths, weights in groups:
        chunks = []
        for shard in paths:
            shard_path = model_dir / shard
            if not shard_path.is_file():
                raise InputError(f"{shard_path} is missing (listed in {manifest_path})")
            chunks.append(shard_path.read_bytes())
        data, offset = b"".join(chunks), 0
        for entry in weights:
            name, shape = entry.get("name"), [int(s) for s in entry.get("shape", [])]
            quant = entry.get("quantization")
            stored = (quant or {}).get("dtype") or entry.get("dtype", "float32")
            if stored not in _STORED:
                raise InputError(f"{manifest_path}: tensor {name!r} has unsupported dtype {stored!r}")
            dtype = np.dtype(_STORED[stored])
            count = int(np.prod(shape)) if shape else 1
            size = count * dtype.itemsize
            if offset + size > len(data):
                raise InputError(f"{model_dir / paths[-1]} is truncated: tensor {name!r} needs bytes "
                                 f"{offset}..{offset + size}, the shard(s) hold {len(data)}")
            values = np.frombuffer(data, dtype=dtype, count=count, offset=offset).astype(np.float32)
            offset += size
            if quant and stored in ("uint8", "uint16"):
                values = values * np.float32(quant["scale"]) + np.float32(quant["min"])
            tensors[name] = values.reshape(shape)
    return tensors


def load_faceapi_weights(model_dir, input_divisor: float = 255.0) -> DlibFaceResNet:
    """A ``DlibFaceResNet`` (eval mode, float32) with face-api's weights from ``model_dir``.

    Raises ``InputError`` naming the file when the manifest or a shard is missing or truncated, a tensor is missing
    or a shape does not match the network."""
    model_dir = Path(model_dir)
    manifest_path = model_dir / MANIFEST_NAME
    tensors = _read_manifest(model_dir)
    model = DlibFaceResNet(input_divisor=input_divisor)
    with torch.no_grad():
        for name, (param, layout) in _param_targets(model).items():
            if name not in tensors:
                raise InputError(f"{manifest_path}: tensor {name!r} is missing")
            value = tensors[name]
            if layout == "conv" and value.ndim == 4:
                value = value.transpose(3, 2, 0, 1)
            elif layout == "fc" and value.ndim == 2:
                value = value.T
            if tuple(value.shape) != tuple(param.shape):
                expected = tuple(param.shape)
                if layout == "conv":
                    expected = (expected[2], expected[3], expected[1], expected[0])
                elif layout == "fc":
                    expected = expected[::-1]
                raise InputError(f"{manifest_path}: tensor {name!r} has shape {list(tensors[name].shape)}, "
                                 f"the network needs {list(expected)}")
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))
    return model.eval()


def find_faceapi_model_dir() -> Path | None:
    """The folder holding face-api's face recognition model files, or None.

    Looks in ``$PDFGC_FACEAPI_DIR``, then ``node_modules/@vladmandic/face-api/model`` under the repository root and
    under the current directory."""
    candidates = []
    if os.environ.get("PDFGC_FACEAPI_DIR"):
        candidates.append(Path(os.environ["PDFGC_FACEAPI_DIR"]))
    sub = Path("node_modules") / "@vladmandic" / "face-api" / "model"
    candidates += [Path(__file__).resolve().parents[2] / sub, Path.cwd() / sub]
    for folder in candidates:
        if (folder / MANIFEST_NAME).is_file():
            return folder
    return None
