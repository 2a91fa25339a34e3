"""Per-frame face signals from mediapipe's 478-point mesh, and the statistics that compare them.

Everything here is plain numpy on a ``FaceTrack`` (see ``landmarks.py``) or on an ``(N,478,3)`` landmark array in
pixels (x right, y down, z on x's scale, larger z = farther from the camera, as mediapipe gives it). A frame with no
face is a NaN row in the landmarks and gives NaN in every signal; the statistics ignore NaN pairs.

Conventions (all "left/right" are IMAGE terms, i.e. as the viewer sees the picture):

- ``head_pose``: yaw, pitch, roll in degrees from a rigid fit (Umeyama: rotation, uniform scale, translation) of the
  3-D mesh onto a frontal template, decomposed as R = Rz(roll) Ry(-yaw) Rx(-pitch) (pitch applied first, roll last).
  yaw > 0: the face turns toward the image's right (the subject's left); pitch > 0: the face tilts up (chin up);
  roll > 0: the face rotates clockwise in the image. All three are 0 for the template's pose (anne.png: frontal,
  upright; pitch 0 is her camera elevation). Only rigid points drive the fit (``RIGID_POINTS``: forehead, nose
  bridge, temples and cheekbones; no lips, jaw, eyes or brows), so blinks and speech do not move the angles.
- ``eye_aspect_ratio``: (N,2), eye 0 = the eye on the image's left for an upright face (the subject's right eye,
  mesh points 33,160,158,133,153,144), eye 1 = the other (263,387,385,362,380,373); EAR = (|p2-p6| + |p3-p5|) /
  (2 |p1-p4|) on x,y. Eyes are chosen by their anatomical mesh labels, not by sorting on x, so a mirrored video swaps
  the columns. Measured on the VoxCeleb2 eye clip: ~0.30-0.36 open, 0.03-0.09 closed.
- ``iris_position``: (N,2,2), per eye (same order) the iris centre (468 / 473) in the frame of the eye's corners:
  x = projection on the corner line, 0 at the image-left corner (33 / 362), 1 at the image-right corner (133 / 263);
  y = signed distance from the corner line divided by the eye width, > 0 below the line (image y points down).
  ``gaze`` = mean over both eyes of (x - 0.5, y): x > 0 looking toward the image's right, y > 0 looking down. The
  iris rests nearer each eye's inner corner, which cancels in the two-eye mean.
- ``mouth_opening``: inner-lip gap |13-14| divided by the face height |10-152| (forehead to chin), on x,y.
- ``interocular``: 3-D distance between the eye centres (mean of each eye's two corners), in pixels; 3-D so that
  it does not shrink when the head turns.
- ``jitter_series``: per frame, mean over all 478 points of the x,y displacement from the previous frame, divided by
  the inter-ocular distance (mean of the two frames); entry 0 is NaN. ``landmark_jitter`` is its mean (lower is
  steadier; real head motion counts too, so compare videos with similar motion).
- ``blink_events``: closed-eye intervals ``(start, end)``, both INCLUSIVE frame indices, where the mean EAR is below
  ``threshold`` (default 0.6 x the clip's median EAR, i.e. relative to its open-eye level); closures separated by
  open gaps of at most ~40 ms (1 frame at 25 fps) are merged. ``match_events`` pairs predicted and reference events
  one to one when the gap between their intervals is at most ``tolerance`` frames (0 when they overlap).
- ``best_offset(a, b)``: the shift k of b that maximises Pearson r between a[t] and b[t + k]; k > 0 means b LAGS a
  (b shows what a showed k frames earlier).

The head-pose template (``FACE_TEMPLATE``) was built with ``build_face_template`` from mediapipe's static-mode mesh
of /work/shared/data/pdfgc/anne.png (frontal, upright), made exactly left-right symmetric (the mirror pairs of
``RIGID_POINTS``), centred and scaled to unit RMS radius. The installed mediapipe 0.10.21 wheel ships no
``canonical_face_model.obj`` (its ``modules/face_geometry/data`` holds only ``__init__.py``), hence real data.
The template is a literal below rather than a data file, so it needs no package-data configuration.

Cost (2 CPU cores): all the signals together ~25 us a frame (``head_pose`` ~9 us), against ~3.3 ms for the mesh.
"""
from __future__ import annotations

import math

import numpy as np

from ..vocabulary import FPS

NUM_POINTS = 478

# ---------------------------------------------------------------------------------------------- mesh indices

# Rigid points for the head-pose fit, as (midline points) + (subject-right, subject-left) mirror pairs. Chosen as the
# points with the smallest residual after a rigid fit over the shipped VoxCeleb2 clips (talking, blinking, expressions,
# head turns), restricted to forehead, nose bridge, temples and cheekbones; the pairs are mediapipe's mirror partners
# (checked by matching anne.png's mesh with its reflection).
RIGID_MIDLINE = (10, 151, 9, 8, 168, 6, 197, 195, 5)
RIGID_PAIRS = (
    (109, 338), (67, 297), (103, 332), (54, 284), (21, 251), (108, 337), (69, 299), (104, 333), (68, 298),
    (71, 301), (127, 356), (162, 389), (139, 368), (34, 264), (234, 454), (116, 345), (143, 372), (193, 417),
    (122, 351),
)
RIGID_POINTS = np.array(list(RIGID_MIDLINE) + [i for pair in RIGID_PAIRS for i in pair], dtype=np.int64)

# EAR points p1..p6 per eye: p1/p4 corners, p2-p6 and p3-p5 upper/lower lid pairs. Eye 0 = image-left eye of an
# upright face (the subject's right eye).
EAR_POINTS = np.array([[33, 160, 158, 133, 153, 144], [263, 387, 385, 362, 380, 373]], dtype=np.int64)
# (image-left corner, image-right corner, iris centre) per eye, same eye order
IRIS_POINTS = np.array([[33, 133, 468], [362, 263, 473]], dtype=np.int64)
EYE_CORNERS = np.array([[33, 133], [362, 263]], dtype=np.int64)
LIP_INNER = (13, 14)  # upper, lower inner-lip midpoints
# outer and inner lip contours, each in order around the mouth
LIPS_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
LIPS_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 415, 310, 311, 312, 13, 82, 81, 80, 191)
FACE_HEIGHT = (10, 152)  # forehead top, chin

# Frontal template of RIGID_POINTS (same order): x right, y down, z away from the camera, centred, unit RMS radius.
# Generated by build_face_template(mediapipe mesh of anne.png); see tests/test_eval_signals.py.
FACE_TEMPLATE = np.array([
    [ 0.00000, -0.61589, -0.43930], [ 0.00000, -0.32513, -0.45881], [ 0.00000, -0.02013, -0.45237],
    [ 0.00000,  0.12509, -0.40191], [ 0.00000,  0.25546, -0.37462], [ 0.00000,  0.40796, -0.42621],
    [ 0.00000,  0.54332, -0.49367], [ 0.00000,  0.66752, -0.56459], [ 0.00000,  0.80009, -0.64066],
    [-0.33076, -0.61036, -0.40959], [ 0.33076, -0.61036, -0.40959], [-0.60740, -0.57424, -0.29323],
    [ 0.60740, -0.57424, -0.29323], [-0.85601, -0.49477, -0.08886], [ 0.85601, -0.49477, -0.08886],
    [-1.01079, -0.36461,  0.14994], [ 1.01079, -0.36461,  0.14994], [-1.10143, -0.19316,  0.38915],
    [ 1.10143, -0.19316,  0.38915], [-0.28998, -0.33065, -0.43465], [ 0.28998, -0.33065, -0.43465],
    [-0.54299, -0.33413, -0.35385], [ 0.54299, -0.33413, -0.35385], [-0.78463, -0.31145, -0.20763],
    [ 0.78463, -0.31145, -0.20763], [-0.94257, -0.22454, -0.03851], [ 0.94257, -0.22454, -0.03851],
    [-1.04146, -0.09146,  0.16852], [ 1.04146, -0.09146,  0.16852], [-1.16610,  0.23793,  0.86860],
    [ 1.16610,  0.23793,  0.86860], [-1.14913, -0.00252,  0.64789], [ 1.14913, -0.00252,  0.64789],
    [-1.09605,  0.08125,  0.36941], [ 1.09605,  0.08125,  0.36941], [-1.14184,  0.28977,  0.51867],
    [ 1.14184,  0.28977,  0.51867], [-1.15151,  0.47238,  0.99097], [ 1.15151,  0.47238,  0.99097],
    [-1.06000,  0.53051,  0.26734], [ 1.06000,  0.53051,  0.26734], [-1.03989,  0.30061,  0.26390],
    [ 1.03989,  0.30061,  0.26390], [-0.12651,  0.27073, -0.30023], [ 0.12651,  0.27073, -0.30023],
    [-0.09749,  0.42956, -0.38174], [ 0.09749,  0.42956, -0.38174],
], dtype=np.float64)


# ---------------------------------------------------------------------------------------------- helpers


def _landmarks(track) -> np.ndarray:
    """(N,478,3) float64 from a FaceTrack, an (N,478,3) array or one (478,3) frame."""
    lm = getattr(track, "landmarks", track)
    lm = np.asarray(lm, dtype=np.float64)
    if lm.ndim == 2:
        lm = lm[None]
    if lm.ndim != 3 or lm.shape[1:] != (NUM_POINTS, 3):
        raise ValueError(f"expected (N,{NUM_POINTS},3) face-mesh landmarks, got shape {lm.shape}")
    return lm


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sqrt(((a - b) ** 2).sum(-1))


def _nanmean(x: np.ndarray) -> float:
    """Mean of the finite values; NaN (without numpy's all-NaN warning) when there are none."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


# ---------------------------------------------------------------------------------------------- head pose


def _rigid_perm() -> np.ndarray:
    """Position in RIGID_POINTS of each point's mirror partner."""
    pos = {int(p): k for k, p in enumerate(RIGID_POINTS)}
    partner = {m: m for m in RIGID_MIDLINE}
    for a, b in RIGID_PAIRS:
        partner[a], partner[b] = b, a
    return np.array([pos[partner[int(p)]] for p in RIGID_POINTS])


def _kabsch(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Rotations R (…,3,3) minimising |R src_c - dst_c| for centred point sets src (M,3) and dst (…,M,3)."""
    h = np.einsum("...mi,mj->...ij", dst, src)  # covariance dst^T src
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    u = u.copy()
    u[..., :, 2] *= d[..., None]
    return u @ vt


def build_face_template(landmarks: np.ndarray, iterations: int = 50) -> np.ndarray:
    """Frontal head-pose template (len(RIGID_POINTS), 3) from one or more frontal, upright meshes (K,478,3).

    Each mesh's rigid points are centred and scaled to unit RMS radius, rotated to the pose where they are most
    left-right symmetric (yaw and roll then vanish; pitch stays the input's), Procrustes-averaged, and finally made
    exactly symmetric by averaging each point with its reflected mirror partner.
    """
    lm = _landmarks(landmarks)[:, RIGID_POINTS]
    if not np.isfinite(lm).all():
        raise ValueError("build_face_template needs faces in every mesh")
    perm = _rigid_perm()
    flip = np.array([-1.0, 1.0, 1.0])

    def normalise(x: np.ndarray) -> np.ndarray:
        x = x - x.mean(0)
        return x / np.sqrt((x ** 2).sum(1).mean())

    def symmetric(x: np.ndarray) -> np.ndarray:
        return 0.5 * (x + (x * flip)[perm])

    shapes = []
    for x in lm:
        x = normalise(x)
        for _ in range(iterations):  # rotate toward the pose where x matches its own mirror image
            x = x @ _kabsch(x, symmetric(x)).T
        shapes.append(x)
    mean = shapes[0]
    for _ in range(5):
        mean = normalise(np.mean([s @ _kabsch(s, mean).T for s in shapes], axis=0))
    return normalise(symmetric(mean))


def head_transform(track) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame Umeyama fit of FACE_TEMPLATE onto the rigid points: points ~= scale * R @ template + t.

    Returns rotations (N,3,3), scales (N,) (pixels per template unit: a pose-independent face size) and
    translations (N,3); NaN for frames without a face.
    """
    lm = _landmarks(track)
    x = lm[:, RIGID_POINTS, :3]
    n = len(lm)
    rot = np.full((n, 3, 3), np.nan)
    scale = np.full(n, np.nan)
    trans = np.full((n, 3), np.nan)
    ok = np.isfinite(x).all(axis=(1, 2))
    if ok.any():
        mean = FACE_TEMPLATE.mean(0)
        src = FACE_TEMPLATE - mean
        centre = x[ok].mean(1, keepdims=True)
        dst = x[ok] - centre
        r = _kabsch(src, dst)
        s = (np.einsum("nij,mj->nmi", r, src) * dst).sum((1, 2)) / (src ** 2).sum()
        rot[ok], scale[ok] = r, s
        trans[ok] = centre[:, 0] - s[:, None] * (r @ mean)
    return rot, scale, trans


def rotation_to_angles(rot: np.ndarray) -> np.ndarray:
    """(…,3,3) rotations -> (…,3) yaw, pitch, roll in degrees, with the module's sign conventions."""
    rot = np.asarray(rot, dtype=np.float64)
    yaw = np.degrees(np.arcsin(np.clip(rot[..., 2, 0], -1.0, 1.0)))
    pitch = -np.degrees(np.arctan2(rot[..., 2, 1], rot[..., 2, 2]))
    roll = np.degrees(np.arctan2(rot[..., 1, 0], rot[..., 0, 0]))
    return np.stack([yaw, pitch, roll], axis=-1)


def angles_to_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Inverse of ``rotation_to_angles`` (degrees): R = Rz(roll) Ry(-yaw) Rx(-pitch)."""
    a, b, g = math.radians(-pitch), math.radians(-yaw), math.radians(roll)
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(g), -math.sin(g), 0], [math.sin(g), math.cos(g), 0], [0, 0, 1]])
    return rz @ ry @ rx


def head_pose(track) -> np.ndarray:
    """(N,3) yaw, pitch, roll in degrees (see the module docstring for the signs); NaN rows for missing faces."""
    return rotation_to_angles(head_transform(track)[0])


# ---------------------------------------------------------------------------------------------- eyes, mouth


def eye_aspect_ratio(track) -> np.ndarray:
    """(N,2) eye aspect ratio, image-left eye (mesh 33..144) first."""
    lm = _landmarks(track)[..., :2]
    p = lm[:, EAR_POINTS]  # (N,2,6,2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (_dist(p[:, :, 1], p[:, :, 5]) + _dist(p[:, :, 2], p[:, :, 4])) / (2.0 * _dist(p[:, :, 0], p[:, :, 3]))


def iris_position(track) -> np.ndarray:
    """(N,2,2): per eye (image-left eye first) the iris centre as (x along the corner line, y across it) / width."""
    lm = _landmarks(track)[..., :2]
    a, b, c = lm[:, IRIS_POINTS[:, 0]], lm[:, IRIS_POINTS[:, 1]], lm[:, IRIS_POINTS[:, 2]]  # (N,2,2) each
    e, v = b - a, c - a
    with np.errstate(invalid="ignore", divide="ignore"):
        w2 = (e ** 2).sum(-1)
        x = (v * e).sum(-1) / w2
        y = (e[..., 0] * v[..., 1] - e[..., 1] * v[..., 0]) / w2
    return np.stack([x, y], axis=-1)


def gaze(track) -> np.ndarray:
    """(N,2): mean over both eyes of (x - 0.5, y) from ``iris_position``; x > 0 toward the image right, y > 0 down."""
    pos = iris_position(track)
    return pos.mean(1) - np.array([0.5, 0.0])


def mouth_opening(track) -> np.ndarray:
    """(N,) inner-lip gap (13-14) over face height (10-152), on x,y."""
    lm = _landmarks(track)[..., :2]
    with np.errstate(invalid="ignore", divide="ignore"):
        return _dist(lm[:, LIP_INNER[0]], lm[:, LIP_INNER[1]]) / _dist(lm[:, FACE_HEIGHT[0]], lm[:, FACE_HEIGHT[1]])


def interocular(track) -> np.ndarray:
    """(N,) 3-D distance in pixels between the eye centres (mean of each eye's corners 33/133 and 362/263)."""
    lm = _landmarks(track)
    centres = lm[:, EYE_CORNERS].mean(2)  # (N,2,D)
    return _dist(centres[:, 0], centres[:, 1])


def jitter_series(track) -> np.ndarray:
    """(N,) mean x,y displacement of the 478 points since the previous frame over the inter-ocular distance; [0] NaN."""
    lm = _landmarks(track)
    io = interocular(lm)
    out = np.full(len(lm), np.nan)
    if len(lm) > 1:
        step = _dist(lm[1:, :, :2], lm[:-1, :, :2]).mean(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[1:] = step / (0.5 * (io[1:] + io[:-1]))
    return out


def landmark_jitter(track) -> float:
    """Mean of ``jitter_series`` over the frames where it is defined (NaN when none): lower is steadier."""
    return _nanmean(jitter_series(track))


# ---------------------------------------------------------------------------------------------- events


def blink_threshold(ear_mean: np.ndarray, fraction: float = 0.6) -> float:
    """Default closed-eye threshold: ``fraction`` of the clip's median EAR (its open-eye level); NaN if no data."""
    ear = np.asarray(ear_mean, dtype=np.float64).ravel()
    ear = ear[np.isfinite(ear)]
    return float(fraction * np.median(ear)) if ear.size else float("nan")


def blink_events(ear_mean: np.ndarray, fps: float = FPS, threshold: float | None = None) -> list[tuple[int, int]]:
    """Closed-eye intervals (start, end), inclusive frame indices, from a per-frame (mean) EAR series.

    A frame is closed when its EAR is below ``threshold`` (default ``blink_threshold``: 0.6 x the median EAR). Runs
    of closed frames (1 frame is enough) separated by at most round(0.04 * fps) (>= 1) open or faceless frames are
    merged into one event. Frames without a face (NaN) are never closed.
    """
    ear = np.asarray(ear_mean, dtype=np.float64).ravel()
    if threshold is None:
        if np.isfinite(ear).sum() < 3:
            return []
        threshold = blink_threshold(ear)
    if not np.isfinite(threshold):
        return []
    with np.errstate(invalid="ignore"):
        closed = ear < threshold
    idx = np.flatnonzero(closed)
    if idx.size == 0:
        return []
    max_gap = max(1, int(round(0.04 * fps)))
    events: list[tuple[int, int]] = []
    start = prev = int(idx[0])
    for i in idx[1:]:
        i = int(i)
        if i - prev - 1 > max_gap:
            events.append((start, prev))
            start = i
        prev = i
    events.append((start, prev))
    return events


def match_events(pred, ref, tolerance: int = 3) -> tuple[float, float, float]:
    """(precision, recall, f1) of predicted vs reference events (start, end), matched one to one.

    Two events match when the gap between their intervals is at most ``tolerance`` frames (0 if they overlap);
    closest pairs are matched first. precision is NaN with no predicted events, recall NaN with no reference events;
    f1 is 0 when exactly one side is empty and NaN when both are.
    """
    pred = [(int(a), int(b)) for a, b in pred]
    ref = [(int(a), int(b)) for a, b in ref]
    pairs = []
    for i, (p0, p1) in enumerate(pred):
        for j, (r0, r1) in enumerate(ref):
            gap = max(0, max(p0, r0) - min(p1, r1))
            if gap <= tolerance:
                pairs.append((gap, abs((p0 + p1) - (r0 + r1)), i, j))
    used_p, used_r = set(), set()
    for _, _, i, j in sorted(pairs):
        if i not in used_p and j not in used_r:
            used_p.add(i)
            used_r.add(j)
    matched = len(used_p)
    precision = matched / len(pred) if pred else float("nan")
    recall = matched / len(ref) if ref else float("nan")
    if not pred and not ref:
        f1 = float("nan")
    elif matched == 0:
        f1 = 0.0
    else:
        f1 = 2 * precision * recall / (precision + recall)
    return float(precision), float(recall), float(f1)


# ---------------------------------------------------------------------------------------------- statistics


def pearson(a, b) -> float:
    """Pearson r over the pairs where both are finite; NaN with fewer than 3 pairs or zero variance."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"pearson: series of different lengths ({a.size} and {b.size})")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        return float("nan")
    a, b = a[ok], b[ok]
    if np.ptp(a) == 0 or np.ptp(b) == 0:  # a constant series
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if not den > 0:
        return float("nan")
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def best_offset(a, b, max_offset: int = 8) -> tuple[int, float]:
    """(k, r): the shift k in [-max_offset, max_offset] maximising pearson(a[t], b[t + k]).

    k > 0 means b lags a (b[t + k] follows a[t]); ties go to the smallest |k|, then to the negative shift.
    (0, NaN) when no shift gives a defined correlation. a and b may differ in length (the overlap is used).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    best_k, best_r = 0, float("nan")
    for k in sorted(range(-max_offset, max_offset + 1), key=lambda k: (abs(k), k)):
        if k >= 0:
            m = min(a.size, b.size - k)
            x, y = a[:max(m, 0)], b[k:k + max(m, 0)]
        else:
            m = min(a.size + k, b.size)
            x, y = a[-k:-k + max(m, 0)], b[:max(m, 0)]
        r = pearson(x, y)
        if np.isfinite(r) and (not np.isfinite(best_r) or r > best_r):
            best_k, best_r = k, r
    return int(best_k), float(best_r)
