"""Identity metric: dlib's 128-d face descriptor (the ResNet of ``face_recognition_models``).

Two descriptors of the same person lie closer than 0.6 (Euclidean), dlib's own threshold (99.38% on LFW). On the
repository's sample media: two frames of one VoxCeleb2 clip 0.32, different people 0.75-1.05.

Speed on the 2-core development CPU: 76 ms per descriptor given a box (5-point shape + ResNet on a 150x150 chip),
93 ms with detection on a 224x224 frame (HOG, upsample=1: 17 ms; 265 ms on an 840x1024 photo); loading 0.4 s.
Not differentiable.

Set-up: ``pip install dlib-bin face-recognition-models``. ``face_recognition_models/__init__.py`` imports
``pkg_resources`` (gone from current setuptools), so the model files are found with ``importlib.util.find_spec``
and the package is never imported.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Sequence

import numpy as np

from pdfgc.errors import InputError, PDFGCError

DESCRIPTOR_SIZE = 128

_INSTALL = "pip install dlib-bin face-recognition-models"


def _import_dlib():
    try:
        import dlib
    except ImportError as exc:
        raise PDFGCError(f"the identity metric needs dlib and its face models: {_INSTALL}") from exc
    return dlib


def face_recognition_model_path(name: str) -> str:
    """Path of a file in ``face_recognition_models/models/`` without importing the package."""
    spec = importlib.util.find_spec("face_recognition_models")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise PDFGCError(f"the identity metric needs the face_recognition_models package: {_INSTALL}")
    path = os.path.join(locations[0], "models", name)
    if not os.path.isfile(path):
        raise PDFGCError(f"{path} is missing: reinstall with pip install --force-reinstall face-recognition-models")
    return path


def _as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise InputError(f"expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and float(np.nanmax(image)) <= 1.0:
            image = image * 255.0  # float images in [0, 1]
        image = np.clip(np.nan_to_num(image), 0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(image)


def _square_box(box) -> tuple[int, int, int, int]:
    """A square box with the same centre and the mean of the box's width and height as its side.

    dlib's HOG detector (on whose boxes the 5-point predictor was trained) gives square boxes; squaring a face-mesh
    box brings the descriptor nearer to the detected one (mean distance 0.022 vs 0.045 unsquared, on 20 faces)."""
    try:
        left, top, right, bottom = (float(v) for v in box)
    except (TypeError, ValueError):
        raise InputError(f"a face box is (left, top, right, bottom) in pixels, got {box!r}") from None
    if not all(np.isfinite((left, top, right, bottom))) or right <= left or bottom <= top:
        raise InputError(f"empty or invalid face box {box!r}: need left < right and top < bottom")
    cx, cy = (left + right) / 2, (top + bottom) / 2
    half = ((right - left) + (bottom - top)) / 4
    return (int(round(cx - half)), int(round(cy - half)), int(round(cx + half)), int(round(cy + half)))


class IdentityEncoder:
    """dlib's 128-d face descriptor (ResNet, face_recognition_models weights).

    ``describe``: 76 ms per face given a box on the 2-core dev CPU; detection (HOG on the image upsampled
    ``upsample`` times by 2) adds 17 ms on 224x224 and 265 ms on 840x1024 frames."""

    def __init__(self, upsample: int = 1):
        dlib = _import_dlib()
        self._dlib = dlib
        self.upsample = int(upsample)
        if self.upsample < 0:
            raise InputError(f"upsample must be >= 0, got {upsample}")
        self._detector = dlib.get_frontal_face_detector()
        self._shape = dlib.shape_predictor(face_recognition_model_path("shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(
            face_recognition_model_path("dlib_face_recognition_resnet_model_v1.dat"))

    def detect(self, image_rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        """The largest face found by dlib's HOG detector as (left, top, right, bottom), or None."""
        image = _as_rgb_uint8(image_rgb)
        rects = self._detector(image, self.upsample)
        if len(rects) == 0:
            return None
        r = max(rects, key=lambda r: r.area())
        return (r.left(), r.top(), r.right(), r.bottom())

    def describe(self, image_rgb: np.ndarray, box: tuple[int, int, int, int] | None = None) -> np.ndarray | None:
        """128-d float32 descriptor of the face in ``image_rgb`` (H, W, 3 uint8 RGB), or None if no face is found.

        ``box`` (left, top, right, bottom) in pixels skips detection (e.g. from face-mesh landmarks with
        ``pdfgc.evaluation.emotion.box_from_landmarks``); it is made square about its centre before dlib's 5-point
        shape predictor places the landmarks that align the 150x150 chip. Without ``box`` the largest face found by
        the HOG detector is used."""
        image = _as_rgb_uint8(image_rgb)
        if box is None:
            box = self.detect(image)
            if box is None:
                return None
        else:
            box = _square_box(box)
        rect = self._dlib.rectangle(*box)
        shape = self._shape(image, rect)
        descriptor = self._net.compute_face_descriptor(image, shape, 0)
        return np.asarray(descriptor, dtype=np.float32)

    def describe_many(self, frames: Iterable[np.ndarray], boxes: Sequence | None = None, every: int = 1) -> np.ndarray:
        """(N, 128) float32 descriptors of N frames; rows are NaN for frames skipped (only every ``every``-th frame,
        starting with the first, is described) and for frames without a face. ``boxes``: one box or None per
        frame (None: detect)."""
        every = int(every)
        if every < 1:
            raise InputError(f"every must be >= 1, got {every}")
        rows = []
        for i, frame in enumerate(frames):
            row = np.full(DESCRIPTOR_SIZE, np.nan, dtype=np.float32)
            if i % every == 0:
                box = None
                if boxes is not None:
                    if i >= len(boxes):
                        raise InputError(f"{len(boxes)} boxes for more frames (frame {i} has none)")
                    box = boxes[i]
                d = self.describe(frame, box)
                if d is not None:
                    row = d
            rows.append(row)
        if boxes is not None and len(boxes) != len(rows):
            raise InputError(f"{len(boxes)} boxes for {len(rows)} frames")
        if not rows:
            return np.zeros((0, DESCRIPTOR_SIZE), dtype=np.float32)
        return np.stack(rows)


def identity_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Euclidean distance between two 128-d descriptors (NaN if either is NaN); dlib's same-person threshold is 0.6."""
    a = np.asarray(a, dtype=np.float64).reshape(-1)
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise InputError(f"descriptors of different sizes: {a.shape[0]} and {b.shape[0]}")
    return float(np.linalg.norm(a - b))
