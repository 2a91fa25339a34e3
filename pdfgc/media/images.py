"""Reading images, the one home of both readers:

- ``load_image_rgb`` reads a PHOTO (the portrait, an emotion reference still) safely: any mode (grey, RGBA,
  16-bit), upright per its EXIF orientation, a pixel limit checked from the header before anything is decoded.
- ``read_image_rgb`` reads a FRAME of a driving folder with ``cv2.imread``, as the official code reads them (its
  JPEG decoding matches the official frames bit for bit; no EXIF rotation, as there).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError
from ..fileio import input_file

_PIL_LIMIT_LOCK = threading.Lock()


DEFAULT_MAX_PIXELS = 64_000_000


def _to_uint8_array(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> (H,W,3) uint8 RGB. High bit depths are scaled, not clipped; alpha is composited on white."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = float(a.max()) if a.size else 0.0
        if mode.startswith("I;16") or 255 < top <= 65535:
            a = a / 257.0  # 16-bit range
        elif mode == "F" and top <= 1.0:
            a = a * 255.0  # float image in [0, 1]
        elif top > 65535:
            a = a * (255.0 / top)
        grey = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode in ("P", "L", "RGB") and "transparency" in im.info):
        # transparent pixels' colours are undefined (often black); a plain background is the safer choice
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, source: str | None = None
                   ) -> np.ndarray:
    """Read any photo as (H,W,3) uint8 RGB, upright per its EXIF orientation.

    Raises InputError naming the file for a missing, empty, unreadable or non-image file, and for images larger
    than ``max_pixels`` (checked from the header, before anything is decoded).
    """
    path = os.fspath(path)
    label = source or path
    if not os.path.lexists(path):
        raise InputError(f"{label}: file not found")
    # links that loop or dangle, folders, FIFOs and devices, unreadable and empty files: each said as it is
    input_file(path, None, kind="an image file", label=label)
    try:
        # PIL's own decompression-bomb check would warn or raise first with a less helpful message; we check the
        # header size ourselves below, so switch it off for this call only (the lock keeps other loads consistent).
        with _PIL_LIMIT_LOCK:
            saved = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            try:
                with Image.open(path) as im:
                    width, height = im.size
                    if width * height > max_pixels:
                        raise InputError(
                            f"{label}: image is too large ({width}x{height} = {width * height / 1e6:.1f} megapixels; "
                            f"the limit is {max_pixels / 1e6:g} megapixels): downscale it first"
                        )
                    im.load()
                    im = ImageOps.exif_transpose(im)
                    return _to_uint8_array(im)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{label}: not an image, or an image format that cannot be read") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InputError(f"{label}: cannot read the image ({exc})") from None


def _as_rgb_uint8(image: np.ndarray, source: str) -> np.ndarray:
    """Validate an image array; grey and RGBA are turned into contiguous RGB uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise InputError(f"{source}: expected an 8-bit image (uint8), got dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{source}: expected an RGB image of shape (height, width, 3), got shape {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise InputError(f"{source}: image is too small ({image.shape[1]}x{image.shape[0]} pixels)")
    return np.ascontiguousarray(image)


def read_image_rgb(path: str | os.PathLike, source: str = "image") -> np.ndarray:
    """RGB uint8 (H, W, 3) image read as the official code reads frames (cv2.imread); InputError naming the file
    when it cannot be decoded."""
    p = Path(path)
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)  # also converts grey/alpha images to 3 channels
    if img is None:
        raise InputError(f"{source} {p} cannot be read as an image (missing, corrupt or unsupported)")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
