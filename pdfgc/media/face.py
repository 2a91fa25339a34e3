"""Face detection and PC-AVS "224 alignment": turn photos and video frames into the crops the networks expect.

PD-FGC's networks see 224x224 RGB crops aligned the PC-AVS way (spec 2.1, ``scripts/align_68.py``): a similarity
transform puts the eye centres and the inner-mouth centre on a fixed template, then the translation is corrected
so the mouth centre lands exactly on its target. PC-AVS uses 68 FAN landmarks; we use mediapipe's face mesh
(0.10.21, legacy ``FaceMesh(refine_landmarks=True)``, 478 points, bundled models, nothing downloaded) and a template
measured for mediapipe's points (see ``MEDIAPIPE_TEMPLATE``).

- ``align_portrait`` aligns one photo (static-image mode) and returns a ``FaceAlignment`` that keeps the matrix, so
  ``paste_back`` can put a generated 224 face back into the original picture with a feathered edge.
- ``SequenceAligner`` / ``align_frames`` align a driving video the PC-AVS way: ONE similarity per video from the
  average points (head roll and scale stay visible to the pose encoder), a per-frame translation that pins the
  mouth, smoothed as bias = 0.8*current + 0.2*previous. Two passes, so long videos need not be held in memory.
- ``load_image_rgb`` reads any photo safely (EXIF orientation, odd modes, a pixel limit checked before decoding).

mediapipe's face detector sees a 128 px letterboxed copy of the whole image, so it misses faces narrower than about
a tenth of the image's long side (a 115 px face in a 1280x720 frame is not found). When the whole image yields no
face we search overlapping square windows, coarse to fine, and for videos we then follow the face inside a fixed
window around it.

Measured here (2 CPU cores, mediapipe 0.10.21, warm): importing mediapipe and building the first FaceMesh ~0.4 s
(later ones ~10 ms); static-mode detection ~4.5 ms per image, for a 224 crop as for 840x1024 and 720x1280 photos
(mediapipe works on downscaled copies); ``align_portrait`` on such a photo, detector built per call, ~20 ms; the
224 warp ~1-5 ms. Video: tracking mode ~3.4 ms per 512x512 frame, SequenceAligner pass 1 ~4 ms and pass 2 ~1.3 ms
per frame. A face small enough to need the window search: ~0.1-0.3 s; an image with no face: ~0.1 s (640x480) to
~0.5 s (4000x3000).
"""

from __future__ import annotations

import math
import contextlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pdfgc.errors import FaceNotFoundError, InputError, PDFGCError
from pdfgc.official_rules import NETWORK_VIEW_MATRIX
from pdfgc.official_rules import SIZE as CROP_SIZE

# PC-AVS targets for the FAN 68-point eye and inner-mouth centres (scripts/align_68.py), for reference.
PCAVS_FAN_TEMPLATE = np.array([[87.0, 59.0], [137.0, 59.0], [112.0, 120.0]])

# Targets for OUR mediapipe points (image-left eye, image-right eye, mouth). Measured with mediapipe on anne.png and on
# the frontal frames (|yaw| < 0.05) of the shipped VoxCeleb2 motion folders, Procrustes-averaged and made
# left-right symmetric: mediapipe's eye centres sit ~3 px below FAN's. Re-aligning anne.png moves its points < 1 px.
MEDIAPIPE_TEMPLATE = np.array([[87.0, 62.1], [138.7, 62.1], [112.9, 118.7]])

# mediapipe mesh indices. 33/133 are the corners of the subject's right eye, which is on the image LEFT of an upright
# face; keeping the anatomical labels (not sorting by x) keeps strongly rolled faces right (tested at 90 degrees).
LEFT_EYE_IDX = (33, 133)
RIGHT_EYE_IDX = (362, 263)
MOUTH_IDX = (13, 14, 78, 308)


WarnFn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------------- data types


@dataclass
class FaceAlignment:
    """How one picture was aligned: enough to warp it to the 224 crop and to paste a crop back."""

    matrix: np.ndarray  # (2,3) float64 affine: original-image pixel coords -> 224-crop pixel coords
    source_size: tuple[int, int]  # (height, width) of the original image
    landmarks: np.ndarray  # (478,2) mediapipe points in original-image pixels (for the chosen face)
    num_faces: int  # faces found (the largest was chosen when >1)

    @property
    def scale(self) -> float:
        """Crop pixels per original pixel (above 1: the face was enlarged)."""
        return matrix_scale(self.matrix)

    @property
    def face_size(self) -> float:
        """Size of the face in original pixels (max side of the mesh's bounding box)."""
        return face_size(self.landmarks)

    @property
    def network_matrix(self) -> np.ndarray:
        """Original pixels -> the networks' 224 input/output frame (after PD-FGC's fixed crop-and-zoom)."""
        return network_view_matrix(self.matrix)


# --------------------------------------------------------------------------------------------------- geometry


def _as_matrix(alignment_or_matrix: FaceAlignment | np.ndarray) -> np.ndarray:
    m = alignment_or_matrix.matrix if isinstance(alignment_or_matrix, FaceAlignment) else alignment_or_matrix
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"expected a (2,3) affine matrix, got shape {m.shape}")
    return m


def _to3(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2,3) affine of applying ``inner`` then ``outer``."""
    return (_to3(np.asarray(outer, float)) @ _to3(np.asarray(inner, float)))[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points[..., :2] @ np.asarray(matrix)[:, :2].T + np.asarray(matrix)[:, 2]


def matrix_scale(matrix: np.ndarray) -> float:
    return float(math.sqrt(abs(np.linalg.det(np.asarray(matrix)[:, :2]))))


def network_view_matrix(alignment_or_matrix: FaceAlignment | np.ndarray) -> np.ndarray:
    """Original pixels -> the frame of the networks' 224 input and of the generated face (spec 2.1 steps 3-4).

    Pass the result to ``paste_back`` to paste a generated frame, which is in that frame, not the alignment crop's.
    """
    return compose(NETWORK_VIEW_MATRIX, _as_matrix(alignment_or_matrix))


def three_points(landmarks: np.ndarray) -> np.ndarray:
    """(3,2): image-left eye centre, image-right eye centre, inner-mouth centre, from mediapipe landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)[:, :2]
    return np.stack([lm[list(LEFT_EYE_IDX)].mean(0), lm[list(RIGHT_EYE_IDX)].mean(0), lm[list(MOUTH_IDX)].mean(0)])


def face_size(landmarks: np.ndarray) -> float:
    lm = np.asarray(landmarks)[:, :2]
    return float(np.ptp(lm, axis=0).max())


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src points onto dst, as (2,3).

    Same result as skimage's SimilarityTransform used by PC-AVS (checked in the tests to 1e-4 px): the RANSAC
    threshold is so large that every point is an inlier, so OpenCV's Levenberg-Marquardt refinement gives the plain
    least-squares fit.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e9, maxIters=10, refineIters=100)
    if m is None:  # degenerate points (all equal)
        raise ValueError("cannot fit a similarity transform to degenerate points")
    return m.astype(np.float64)


def alignment_matrix(points: np.ndarray, template: np.ndarray = MEDIAPIPE_TEMPLATE) -> np.ndarray:
    """PC-AVS alignment of one picture: similarity from ``points`` onto the template, then pin the mouth on its target."""
    m = similarity_transform(points, template)
    m[:, 2] += template[2] - apply_affine(m, points[2])
    return m


# --------------------------------------------------------------------------------------------------- images


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


def looks_like_aligned_crop(image_rgb: np.ndarray) -> bool:
    """True for 224x224 inputs: the documented rule for "already aligned" (anne.png, the VoxCeleb2 motion frames)."""
    shape = np.asarray(image_rgb).shape
    return len(shape) >= 2 and tuple(shape[:2]) == (CROP_SIZE, CROP_SIZE)


def _footprint(inverse: np.ndarray, size: int, shape: tuple[int, int], margin: float) -> tuple[int, int, int, int] | None:
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


def warp_to_crop(image_rgb: np.ndarray, alignment_or_matrix: FaceAlignment | np.ndarray, antialias: bool = True) -> np.ndarray:
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
    return cv2.warpAffine(image, m, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


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


def paste_back(original_rgb: np.ndarray, crop_rgb: np.ndarray, alignment: FaceAlignment | np.ndarray, feather: float = 16.0) -> np.ndarray:
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
    weight = cv2.warpAffine(feather_mask(feather * size_c / CROP_SIZE, size_c), inv_box, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    region = out[y0:y1, x0:x1].astype(np.float32)
    blended = region + (face.astype(np.float32) - region) * weight[:, :, None]
    out[y0:y1, x0:x1] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    return out


# --------------------------------------------------------------------------------------------------- loading


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
    if mode in ("RGBA", "LA", "PA", "La", "RGBa") or (mode == "P" and "transparency" in im.info) or (mode in ("L", "RGB") and "transparency" in im.info):
        # transparent pixels' colours are undefined (often black); a plain background is the safer choice
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def load_image_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, source: str | None = None) -> np.ndarray:
    """Read any photo as (H,W,3) uint8 RGB, upright per its EXIF orientation.

    Raises InputError naming the file for a missing, empty, unreadable or non-image file, and for images larger
    than ``max_pixels`` (checked from the header, before anything is decoded).
    """
    path = os.fspath(path)
    label = source or path
    if not os.path.exists(path):
        raise InputError(f"{label}: file not found")
    if os.path.isdir(path):
        raise InputError(f"{label}: is a directory, expected an image file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{label}: file is empty (0 bytes), expected an image")
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


# --------------------------------------------------------------------------------------------------- detection


@contextlib.contextmanager
def quiet_native_stderr():
    """Silence mediapipe's C++ log lines (written to fd 2 before absl logging is initialised) unless
    PDFGC_VERBOSE is set; Python-level errors are raised as usual."""
    if os.environ.get("PDFGC_VERBOSE"):
        yield
        return
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceMeshDetector:
    """mediapipe FaceMesh(refine_landmarks=True), static-image mode for photos, video/tracking mode for sequences."""

    def __init__(self, static_image_mode: bool = True, max_num_faces: int = 4, min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        # mediapipe's C++ side logs feedback-tensor and XNNPACK notes to stderr on every graph start: keep them
        # out of the user's terminal unless asked for
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        try:
            from mediapipe.python.solutions import face_mesh
        except ImportError as exc:  # set-up problem, not an input problem
            raise PDFGCError(
                "face alignment needs mediapipe 0.10.21 (the last release that ships its models): "
                "pip install --no-deps mediapipe==0.10.21 absl-py attrs flatbuffers 'protobuf<5' matplotlib"
            ) from exc
        self.static_image_mode = static_image_mode
        self.max_num_faces = max_num_faces
        with quiet_native_stderr():
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=static_image_mode,
                max_num_faces=max_num_faces,
                refine_landmarks=True,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
            # start_run() opens the graph's calculators on mediapipe's own threads, which log the TFLite lines
            # after the constructor returns: wait for them while fd 2 is still silenced
            graph = getattr(self._mesh, "_graph", None)
            if graph is not None:
                graph.wait_until_idle()

    def detect(self, image_rgb: np.ndarray) -> list[np.ndarray]:
        """(478,3) landmarks in pixels (x, y, and z on x's scale) per face found, largest face first."""
        if self._mesh is None:
            raise RuntimeError("FaceMeshDetector is closed")
        image = np.ascontiguousarray(image_rgb, dtype=np.uint8)
        h, w = image.shape[:2]
        with quiet_native_stderr():
            result = self._mesh.process(image)
        faces = []
        for face in result.multi_face_landmarks or ():
            lm = np.array([(p.x, p.y, p.z) for p in face.landmark], dtype=np.float64)
            lm *= (w, h, w)
            faces.append(lm)
        faces.sort(key=_bbox_area, reverse=True)
        return faces

    def close(self) -> None:
        if self._mesh is not None:
            with quiet_native_stderr():
                self._mesh.close()
            self._mesh = None

    def __enter__(self) -> "FaceMeshDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _bbox(lm: np.ndarray) -> np.ndarray:
    return np.concatenate([lm[:, :2].min(0), lm[:, :2].max(0)])


def _bbox_area(lm: np.ndarray) -> float:
    b = _bbox(lm)
    return float((b[2] - b[0]) * (b[3] - b[1]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))


def _window_starts(n: int, win: int, step: int) -> list[int]:
    if n <= win:
        return [0]
    starts = list(range(0, n - win, step))
    return starts + [n - win]


def find_faces(image_rgb: np.ndarray, detector: FaceMeshDetector, min_face_px: float = 40, windows: bool = True) -> list[np.ndarray]:
    """All faces (largest first): the whole image, the image with a border, then overlapping windows, coarse to fine.

    The windows (halving in size down to ~4x ``min_face_px``, and at least 1/12 of the long side so huge images
    stay cheap) find faces too small for mediapipe's whole-image detector, including ones below ``min_face_px``,
    so the caller can say "too small" rather than "no face". ``windows=False`` skips that slower search (~0.1-0.5 s
    when nothing is found). Use a static-image-mode detector.
    """
    faces = detector.detect(image_rgb)
    if faces:
        return faces
    h, w = image_rgb.shape[:2]
    long_side = max(h, w)
    # mediapipe's detector also misses some large, soft faces that it finds once the image has a border
    pad = long_side // 4
    faces = detector.detect(cv2.copyMakeBorder(image_rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0)))
    if faces:
        for lm in faces:
            lm[:, :2] -= pad
        return faces
    if not windows:
        return []
    min_window = max(4 * min_face_px, long_side / 12, 64)
    win = long_side // 2
    while win >= min_window:
        step = win // 2
        found = []  # (landmarks, distance of the face from an inner window edge)
        for y in _window_starts(h, win, step):
            for x in _window_starts(w, win, step):
                tile = image_rgb[y:y + win, x:x + win]
                for lm in detector.detect(tile):
                    b = _bbox(lm)
                    # edges of the window that are also image edges do not cut faces
                    gaps = [b[0] if x > 0 else np.inf, b[1] if y > 0 else np.inf,
                            tile.shape[1] - b[2] if x + win < w else np.inf, tile.shape[0] - b[3] if y + win < h else np.inf]
                    lm = lm.copy()
                    lm[:, :2] += (x, y)
                    found.append((lm, min(gaps)))
        if found:
            # overlapping windows see the same face: keep, per face, the sighting farthest from a window edge
            found.sort(key=lambda f: f[1], reverse=True)
            kept: list[np.ndarray] = []
            for lm, _ in found:
                if all(_iou(_bbox(lm), _bbox(k)) < 0.3 for k in kept):
                    kept.append(lm)
            kept.sort(key=_bbox_area, reverse=True)
            return kept
        win //= 2
    return []


# --------------------------------------------------------------------------------------------------- photos


def align_portrait(
    image_rgb: np.ndarray,
    source: str = "portrait",
    detector: FaceMeshDetector | None = None,
    min_face_px: float = 40,
    warn: WarnFn | None = None,
) -> FaceAlignment:
    """Find the (largest) face in a photo and compute its PC-AVS 224 alignment.

    Raises FaceNotFoundError when there is no face and InputError when the face is smaller than ``min_face_px``
    (max side of the face mesh's bounding box, in pixels). Warns (``warn`` or warnings.warn) when several faces
    are found and when the face has to be enlarged more than 2x.
    """
    warn = warn or _default_warn
    image = _as_rgb_uint8(image_rgb, source)
    h, w = image.shape[:2]
    own = detector is None
    detector = detector or FaceMeshDetector(static_image_mode=True, max_num_faces=4)
    try:
        faces = find_faces(image, detector, min_face_px=min_face_px)
    finally:
        if own:
            detector.close()
    if not faces:
        raise FaceNotFoundError(f"{source}: no face found in the {w}x{h} image")
    lm = faces[0]
    size = face_size(lm)
    if len(faces) > 1:
        centre = lm[:, :2].mean(0)
        warn(f"{source}: {len(faces)} faces found; using the largest ({size:.0f} px, centred at x={centre[0]:.0f}, y={centre[1]:.0f})")
    if size < min_face_px:
        raise InputError(
            f"{source}: the face is too small: {size:.0f} px across, at least {min_face_px:g} px is needed "
            f"(use a photo where the face is larger or less zoomed out)"
        )
    matrix = alignment_matrix(three_points(lm))
    if matrix_scale(matrix) > 2.0:
        warn(f"{source}: the face is small ({size:.0f} px across) and is enlarged {matrix_scale(matrix):.1f}x; the result will look soft")
    return FaceAlignment(matrix=matrix, source_size=(h, w), landmarks=lm[:, :2].copy(), num_faces=len(faces))


# --------------------------------------------------------------------------------------------------- sequences


class SequenceAligner:
    """PC-AVS alignment of a frame sequence (a driving video), in two passes that keep only 3 points per frame.

    Pass 1: ``add(frame)`` for every frame (or ``fit(frames)``) detects the face and stores its eye and mouth
    centres. Pass 2: ``warp(index, frame)`` gives the 224 crop; ``matrices`` holds the (N,2,3) transforms. One
    similarity for the whole video maps the average points onto the template (head roll and scale changes stay
    visible to the pose encoder); per frame the translation pins the mouth, smoothed as 0.8*current + 0.2*previous.

    Frames without a face reuse the nearest frame's points (reported in one warning); no face at all raises
    FaceNotFoundError. mediapipe runs in tracking mode on the whole frame, or, when the face is small or several
    faces are present, on a fixed window around the chosen (largest) face.
    """

    _RESEARCH_GAP = 25  # frames between two window searches while no face is found (one can cost ~0.5 s)

    def __init__(
        self,
        source: str = "driving video",
        detector: FaceMeshDetector | None = None,
        min_face_px: float = 40,
        template: np.ndarray = MEDIAPIPE_TEMPLATE,
        warn: WarnFn | None = None,
    ):
        self.source = source
        self.min_face_px = min_face_px
        self.template = np.asarray(template, dtype=np.float64)
        self._warn = warn or _default_warn
        self._own_tracker = detector is None
        # one face: with max_num_faces > 1 mediapipe re-runs its detector on every frame (about 2x slower)
        self._tracker = detector or FaceMeshDetector(static_image_mode=False, max_num_faces=1)
        self._searcher: FaceMeshDetector | None = None
        self._points: list[np.ndarray | None] = []
        self._sizes: list[float] = []
        self._frame_shape: tuple[int, int] | None = None
        self._roi: tuple[int, int, int] | None = None  # (x, y, side) window the tracker runs on; None: whole frame
        self._next_search = 0
        self._found = 0
        self._multi_face_frames = 0
        self._matrices: np.ndarray | None = None

    # ---- pass 1

    def add(self, frame: np.ndarray) -> bool:
        """Detect the face in the next frame; returns whether one was found."""
        if self._matrices is not None:
            raise RuntimeError("SequenceAligner.add() after the alignment was computed")
        index = len(self._points)
        frame = _as_rgb_uint8(frame, f"{self.source} (frame {index})")
        if self._frame_shape is None:
            self._frame_shape = frame.shape[:2]
        elif frame.shape[:2] != self._frame_shape:
            raise InputError(f"{self.source}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first frame was {self._frame_shape[1]}x{self._frame_shape[0]}")
        lm = self._detect(frame, index)
        self._points.append(None if lm is None else three_points(lm))
        if lm is not None:
            self._found += 1
            self._sizes.append(face_size(lm))
        return lm is not None

    def fit(self, frames: Iterable[np.ndarray]) -> "SequenceAligner":
        for frame in frames:
            self.add(frame)
        self.finalize()
        return self

    def _track(self, frame: np.ndarray) -> np.ndarray | None:
        if self._roi is None:
            faces = self._tracker.detect(frame)
            return faces[0] if faces else None
        x, y, side = self._roi
        faces = self._tracker.detect(frame[y:y + side, x:x + side])
        if not faces:
            return None
        lm = faces[0].copy()
        lm[:, :2] += (x, y)
        return lm

    def _set_roi(self, lm: np.ndarray, frame_shape: tuple[int, int], several: bool) -> None:
        h, w = frame_shape
        size = face_size(lm)
        if not several and size >= 0.15 * max(h, w):
            roi = None  # the whole-frame detector copes
        else:
            side = int(min(h, w, max(4 * size, 96)))
            cx, cy = lm[:, :2].mean(0)
            roi = (int(np.clip(round(cx - side / 2), 0, w - side)), int(np.clip(round(cy - side / 2), 0, h - side)), side)
        if (roi is None) != (self._roi is None) or (roi is not None and roi[2] != self._roi[2]):
            # another image size for the tracker: restart it so mediapipe carries no landmarks over from the old one
            self._restart_tracker()
        self._roi = roi

    def _restart_tracker(self) -> None:
        if self._own_tracker:
            self._tracker.close()
            self._tracker = FaceMeshDetector(static_image_mode=False, max_num_faces=1)

    def _detect(self, frame: np.ndarray, index: int) -> np.ndarray | None:
        if self._found:  # follow the face found so far
            lm = self._track(frame)
            if lm is not None:
                if self._roi is not None:
                    x, y, side = self._roi
                    c = lm[:, :2].mean(0)
                    if abs(c[0] - (x + side / 2)) > side / 4 or abs(c[1] - (y + side / 2)) > side / 4:
                        self._set_roi(lm, frame.shape[:2], several=True)  # follow the face before it leaves
                return lm
        # no face yet, or the tracker lost it: look everywhere with the static detector (all faces, largest first)
        if self._searcher is None:
            self._searcher = FaceMeshDetector(static_image_mode=True, max_num_faces=4)
        windows = index >= self._next_search
        faces = find_faces(frame, self._searcher, min_face_px=self.min_face_px, windows=windows)
        if not faces:
            if windows:
                self._next_search = index + self._RESEARCH_GAP
            return None
        previous = next((p for p in reversed(self._points) if p is not None), None)
        if previous is None:
            lm = faces[0]  # largest
        else:  # the face nearest to where it was
            lm = min(faces, key=lambda f: float(np.linalg.norm(three_points(f)[2] - previous[2])))
        if len(faces) > 1:
            self._multi_face_frames += 1
        self._set_roi(lm, frame.shape[:2], several=len(faces) > 1)
        return lm

    # ---- between the passes

    def finalize(self) -> np.ndarray:
        """Compute the per-frame matrices (once); returns them as (N,2,3)."""
        if self._matrices is not None:
            return self._matrices
        n = len(self._points)
        if n == 0:
            raise InputError(f"{self.source}: no frames")
        found = [i for i, p in enumerate(self._points) if p is not None]
        if not found:
            raise FaceNotFoundError(f"{self.source}: no face found in any of the {n} frames")
        if float(np.mean(self._sizes)) < self.min_face_px:
            raise InputError(f"{self.source}: the face is too small: {np.mean(self._sizes):.0f} px across on average, at least {self.min_face_px:g} px is needed")
        if self._multi_face_frames:
            self._warn(f"{self.source}: several faces seen; following the largest face of the first frame")
        missing = [i for i, p in enumerate(self._points) if p is None]
        if missing:
            found_arr = np.array(found)
            for i in missing:
                self._points[i] = self._points[int(found_arr[np.abs(found_arr - i).argmin()])]
            shown = ", ".join(str(i) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
            self._warn(f"{self.source}: no face found in {len(missing)} of {n} frames (frames {shown}); reused the nearest frame's landmarks")
        pts = np.stack(self._points)
        base = similarity_transform(pts[found].mean(0), self.template)
        mats = np.empty((n, 2, 3))
        previous_bias = None
        for i in range(n):
            bias = self.template[2] - apply_affine(base, pts[i, 2])
            if previous_bias is not None:
                bias = 0.2 * previous_bias + 0.8 * bias  # PC-AVS: smoothed mouth correction
            previous_bias = bias
            mats[i] = base
            mats[i, :, 2] += bias
        self._matrices = mats
        self.close()  # detection is over
        return mats

    @property
    def matrices(self) -> np.ndarray:
        return self.finalize()

    @property
    def source_size(self) -> tuple[int, int] | None:
        return self._frame_shape

    @property
    def points(self) -> np.ndarray:
        """(N,3,2) eye and mouth centres per frame, in frame pixels (missing frames filled after finalize)."""
        return np.stack([np.full((3, 2), np.nan) if p is None else p for p in self._points])

    @property
    def missing_faces(self) -> int:
        """Frames in which no face was found (their landmarks are borrowed from the nearest frame)."""
        return len(self._points) - self._found

    def __len__(self) -> int:
        return len(self._points)

    # ---- pass 2

    def warp(self, frame_index: int, frame: np.ndarray) -> np.ndarray:
        """The 224 crop of frame ``frame_index`` (the same frame that was added at that position)."""
        mats = self.finalize()
        if not 0 <= frame_index < len(mats):
            raise IndexError(f"frame index {frame_index} out of range for {len(mats)} frames")
        return warp_to_crop(_as_rgb_uint8(frame, f"{self.source} (frame {frame_index})"), mats[frame_index])

    def close(self) -> None:
        if self._own_tracker:
            self._tracker.close()
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None

    def __enter__(self) -> "SequenceAligner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def align_frames(
    frames: Iterable[np.ndarray],
    source: str = "driving video",
    detector: FaceMeshDetector | None = None,
    warn: WarnFn | None = None,
) -> list[np.ndarray]:
    """Align a list of frames as one video (see SequenceAligner); returns (224,224,3) uint8 crops."""
    frames = frames if isinstance(frames, Sequence) else list(frames)
    with SequenceAligner(source=source, detector=detector, warn=warn) as aligner:
        aligner.fit(frames)
        return [aligner.warp(i, f) for i, f in enumerate(frames)]
