"""Face geometry of the 224 alignment: the landmark templates and indices, the ``FaceAlignment`` record, 2x3
affine helpers and the PC-AVS similarity (spec 2.1)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..official_rules import NETWORK_VIEW_MATRIX
from .mesh_indices import EYE_CORNERS, LIP_CORNERS, LIP_MIDPOINTS

# PC-AVS targets for the FAN 68-point eye and inner-mouth centres (scripts/align_68.py), for reference.
PCAVS_FAN_TEMPLATE = np.array([[87.0, 59.0], [137.0, 59.0], [112.0, 120.0]])


# Targets for OUR mediapipe points (image-left eye, image-right eye, mouth). Measured with mediapipe on anne.png and on
# the frontal frames (|yaw| < 0.05) of the shipped VoxCeleb2 motion folders, Procrustes-averaged and made
# left-right symmetric: mediapipe's eye centres sit ~3 px below FAN's. Re-aligning anne.png moves its points < 1 px.
MEDIAPIPE_TEMPLATE = np.array([[87.0, 62.1], [138.7, 62.1], [112.9, 118.7]])


# The three points' mesh indices (mesh_indices.py). 33/133 are the corners of the subject's right eye, which is on the
# image LEFT of an upright face; keeping the anatomical labels (not sorting by x) keeps strongly rolled faces right
# (tested at 90 degrees). The mouth point is the mean of the inner lips' midpoints and corners.
LEFT_EYE_IDX = tuple(int(i) for i in EYE_CORNERS[0])     # (33, 133)
RIGHT_EYE_IDX = tuple(int(i) for i in EYE_CORNERS[1])    # (362, 263)
MOUTH_IDX = LIP_MIDPOINTS + LIP_CORNERS                  # (13, 14, 78, 308)


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
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1e9, maxIters=10,
                                       refineIters=100)
    if m is None:  # degenerate points (all equal)
        raise ValueError("cannot fit a similarity transform to degenerate points")
    return m.astype(np.float64)


def alignment_matrix(points: np.ndarray, template: np.ndarray = MEDIAPIPE_TEMPLATE) -> np.ndarray:
    """PC-AVS alignment of one picture: similarity from ``points`` onto the template, then pin the mouth on its
    target."""
    m = similarity_transform(points, template)
    m[:, 2] += template[2] - apply_affine(m, points[2])
    return m
