"""Between a picture and its 224 crop: ``warp_to_crop`` (antialiased when the face is shrunk) and ``paste_back``
(the inverse warp, blended with a feathered square)."""
from __future__ import annotations

import math

import cv2
import numpy as np

from ..official_rules import SIZE as CROP_SIZE
from .geometry import FaceAlignment, _as_matrix, apply_affine, compose, matrix_scale


def _footprint(inverse: np.ndarray, size: int, shape: tuple[int, int], margin: float
               ) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) in an image of ``shape`` of a size x size square mapped by ``inverse``."""
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [-0.5, size - 0.5], [size - 0.5, size - 0.5]])
    p = apply_affine(inverse, corners)
    x0 = max(int(math.floor(p[:, 0].min() - margin)), 0)
    y0 = max(int(math.floor(p[:, 1].min() - margin)), 0)
    x1 = min(int(math.ceil(p[:, 0].max() + margin)) + 1, shape[1])
    y1 = min(int(math.ceil(p[:, 1].max() + margin)) + 1, shape[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def warp_to_crop(image_rgb: np.ndarray, alignment_or_matrix: FaceAlignment | np.ndarray, antialias: bool = True
                 ) -> np.ndarray:
    """The (224,224,3) uint8 crop: cv2.warpAffine, INTER_LINEAR, black border (borderValue 0) as PC-AVS does.

    When the face is shrunk more than 2x (a big face in a big photo), a plain bilinear warp aliases; with
    ``antialias`` the part of the image under the crop is first area-averaged down to the crop's pixel density.
    """
    m = _as_matrix(alignment_or_matrix)
    image = np.ascontiguousarray(image_rgb)
    scale = matrix_scale(m)
    if antialias and scale < 0.5:
        box = _footprint(cv2.invertAffineTransform(m), CROP_SIZE, image.shape[:2], margin=2.0 / scale)
        if box is not None:
            x0, y0, x1, y1 = box
            w, h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
            small = cv2.resize(image[y0:y1, x0:x1], (w, h), interpolation=cv2.INTER_AREA)
            kx, ky = w / (x1 - x0), h / (y1 - y0)
            # original pixel x -> resized pixel (x - x0 + 0.5) * kx - 0.5 (cv2.resize's pixel-centre convention)
            to_small = np.array([[kx, 0.0, (0.5 - x0) * kx - 0.5], [0.0, ky, (0.5 - y0) * ky - 0.5]])
            image, m = small, compose(m, cv2.invertAffineTransform(to_small))
    return cv2.warpAffine(image, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                          borderValue=0)


def feather_mask(feather: float, size: int = CROP_SIZE) -> np.ndarray:
    """(size,size) float32 weights: 1 inside, a smooth ramp to 0 over ``feather`` pixels at the square's edges."""
    c = np.arange(size, dtype=np.float32) + 0.5
    d = np.minimum(c, size - c)
    if feather <= 0:
        ramp = np.ones_like(d)
    else:
        t = np.clip(d / float(feather), 0.0, 1.0)
        ramp = t * t * (3.0 - 2.0 * t)  # smoothstep: no visible kink where the blend starts
    return np.minimum(ramp[:, None], ramp[None, :])


def paste_back(original_rgb: np.ndarray, crop_rgb: np.ndarray, alignment: FaceAlignment | np.ndarray,
               feather: float = 16.0) -> np.ndarray:
    """Inverse-warp a square crop (224, or any size S with the matching alignment: the mesh-warp default renders at
    the portrait's own resolution) into the original picture, blended with a feathered square so no seam shows.

    ``alignment`` is the FaceAlignment (or its matrix) the crop was made with; for a generated frame, which is in
    the networks' zoomed frame, pass ``alignment.network_matrix``. ``feather`` is in crop pixels. Only the crop's
    footprint is touched, so pasting into large frames stays cheap. Returns uint8 of the original's shape.
    """
    original = np.asarray(original_rgb)
    crop = np.asarray(crop_rgb)
    if crop.ndim != 3 or crop.shape[0] != crop.shape[1] or crop.shape[2] != 3 or original.ndim != 3 \
            or original.shape[2] != 3:
        raise ValueError(f"expected an RGB picture and a square RGB crop, got {original.shape} and {crop.shape}")
    size_c = crop.shape[0]
    if original.dtype != np.uint8 or crop.dtype != np.uint8:
        raise ValueError("paste_back expects uint8 images")
    m = _as_matrix(alignment)
    inverse = cv2.invertAffineTransform(m)
    out = original.copy()
    box = _footprint(inverse, size_c, original.shape[:2], margin=1.0)
    if box is None:  # the crop lies entirely outside the picture
        return out
    x0, y0, x1, y1 = box
    inv_box = inverse.copy()
    inv_box[:, 2] -= (x0, y0)
    size = (x1 - x0, y1 - y0)
    # replicate the border so the blend never pulls in black from outside the crop
    face = cv2.warpAffine(crop, inv_box, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(feather_mask(feather * size_c / CROP_SIZE, size_c), inv_box, size, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = region + (face.astype(np.float32) - region) * weight[:, :, None]
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out
