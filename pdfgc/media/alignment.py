"""PC-AVS "224 alignment" of photos and driving videos (see ``pdfgc.media.face`` for the method and its costs):
``align_portrait`` for one photo, ``SequenceAligner`` / ``align_frames`` for a video (one similarity per video,
a smoothed per-frame mouth correction), ``looks_like_aligned_crop`` for inputs that are crops already."""
from __future__ import annotations

import warnings
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import FaceNotFoundError, InputError
from ..official_rules import SIZE as CROP_SIZE
from .geometry import (
    MEDIAPIPE_TEMPLATE,
    FaceAlignment,
    alignment_matrix,
    apply_affine,
    face_size,
    matrix_scale,
    similarity_transform,
    three_points,
)
from .images import _as_rgb_uint8
from .mesh import FaceMeshDetector, find_faces
from .pasteback import warp_to_crop

WarnFn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)


def looks_like_aligned_crop(image_rgb: np.ndarray) -> bool:
    """True for 224x224 inputs: the documented rule for "already aligned" (anne.png, the VoxCeleb2 motion frames)."""
    shape = np.asarray(image_rgb).shape
    return len(shape) >= 2 and tuple(shape[:2]) == (CROP_SIZE, CROP_SIZE)


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
        warn(f"{source}: {len(faces)} faces found; using the largest ({size:.0f} px, centred at "
             f"x={centre[0]:.0f}, y={centre[1]:.0f})")
    if size < min_face_px:
        raise InputError(
            f"{source}: the face is too small: {size:.0f} px across, at least {min_face_px:g} px is needed "
            f"(use a photo where the face is larger or less zoomed out)"
        )
    matrix = alignment_matrix(three_points(lm))
    if matrix_scale(matrix) > 2.0:
        warn(f"{source}: the face is small ({size:.0f} px across) and is enlarged {matrix_scale(matrix):.1f}x; "
             "the result will look soft")
    return FaceAlignment(matrix=matrix, source_size=(h, w), landmarks=lm[:, :2].copy(), num_faces=len(faces))


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
            raise InputError(f"{self.source}: frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first frame "
                             f"was {self._frame_shape[1]}x{self._frame_shape[0]}")
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
            roi = (int(np.clip(round(cx - side / 2), 0, w - side)), int(np.clip(round(cy - side / 2), 0, h - side)),
                   side)
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
            raise InputError(f"{self.source}: the face is too small: {np.mean(self._sizes):.0f} px across on "
                             f"average, at least {self.min_face_px:g} px is needed")
        if self._multi_face_frames:
            self._warn(f"{self.source}: several faces seen; following the largest face of the first frame")
        missing = [i for i, p in enumerate(self._points) if p is None]
        if missing:
            found_arr = np.array(found)
            for i in missing:
                self._points[i] = self._points[int(found_arr[np.abs(found_arr - i).argmin()])]
            shown = ", ".join(str(i) for i in missing[:10]) + (", ..." if len(missing) > 10 else "")
            self._warn(f"{self.source}: no face found in {len(missing)} of {n} frames (frames {shown}); reused the "
                       "nearest frame's landmarks")
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
