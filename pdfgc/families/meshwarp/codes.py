"""Per-factor codes measured from mediapipe's face mesh, and codes -> a target mesh in the portrait's pixels.

Canonical frame (``canonicalize``): the rigid pose is removed exactly as ``signals.head_transform`` fits it
(Umeyama of ``FACE_TEMPLATE`` on ``RIGID_POINTS``: mesh ~= s R template + t), so canonical = R^T (mesh - t) / s is in
template units (the rigid points have unit RMS radius), frontal and upright: offsets compare between people and
image sizes.

Codes (``MeshCodes``, every array (T, d) float32):

- ``pose`` (T,6): yaw, pitch, roll in degrees (``signals.head_pose``), tx, ty = the fit's translation t (image
  pixels, the rigid points' centre) divided by the face scale s, and log s (s in pixels per template unit). So
  t = (tx, ty) * exp(logs): absolute position and size in the image the mesh came from; changes are "face-centre
  shift / face scale" (``retarget``). On a 224 crop, ``pdfgc prepare``'s pose columns give the same code as
  tx = (224 tx_p + 111.5) / (224 scale_p), log_scale = log(224 scale_p) (a PoseControl tx/ty change of d moves the
  face by 224 d crop pixels, i.e. d / scale_p in this code's units).
- ``eye`` (T,4): lid opening of eye 0 and eye 1 (``signals`` eye order: eye 0 the image-left eye) = EAR of the
  canonical (frontal) mesh / the reference's (1 = that face's neutral open eye, 0 = closed; measured frontal so a
  head turn does not read as a blink), then gaze h, v in ``signals.gaze`` units:
  h > 0 toward the image's right, v > 0 DOWN (image y). ``BLINK_DIMS`` / ``GAZE_DIMS`` index the two parts.
- ``mouth`` (T,Dm): coefficients of canonical offsets on ``params.mouth_basis`` (lips, jaw, chin and lower cheeks:
  ``MOUTH_POINTS``); 0 = the reference's (neutral, closed) mouth.
- ``emotion`` (T,De): coefficients on ``params.emotion_basis`` (brows, forehead, cheeks, the rings around the eyes,
  nose sides and mouth corners: ``EMOTION_POINTS``) minus the part linearly predictable from the mouth code
  (``params.emotion_from_mouth``, fitted on the corpus), then low-passed over time (Gaussian, sigma
  ``params.emotion_sigma_s``, 0.3 s: an expression changes over about a second, speech much faster).

Reference: mouth, emotion and lid codes are relative to a reference face: ``measure(..., reference=...)`` takes a
frame of the same clip (an index, ``"auto"`` = ``neutral_reference``, ``"first"``), or None for the corpus's mean
neutral face (``params.mean_shape`` and ``params.open_ear``: absolute codes, in which the person's own face shape is
part of the code). Pose and gaze are always absolute. ``retarget`` turns a driver's codes into changes from its
neutral frame applied to a base (the portrait's codes); ``compose`` renders codes onto the portrait's mesh.

Explicit controls map with no fitted step: pose in degrees (the code's unit), lid opening 0..1 (the code's unit),
gaze from ``GazeControl``'s iris units (+h image right, +v UP; the units ``pdfgc prepare`` and the control
mappings use: 2 (x - 0.5) and 2 y of ``signals.iris_position``, as offsets from the data's typical iris position)
by ``gaze_from_control``: h_code = gaze_center_h + 0.5 h, v_code = gaze_center_v - 0.5 v (``params.gaze_center``:
the median gaze of the corpus's neutral frames, "looking at the camera"); mouth: 0 = closed, a lip level
multiplies the code; emotion labels: ``apply_emotion_label`` (``params.emotion_code`` for the emotion code, plus
the label's resting mouth shape on the mouth code, its lid change on the lid code).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...evaluation import signals as S
from ...media import mesh_indices as MI

NUM_POINTS = MI.NUM_POINTS
BLINK_DIMS = (0, 1)
GAZE_DIMS = (2, 3)
POSE_NAMES = ("yaw", "pitch", "roll", "tx", "ty", "log_scale")
FPS = 25

# ---------------------------------------------------------------------------------------------- point sets
# Lid lines per eye (signals' eye order), mediapipe's eye contours: upper lid (outer -> inner corner) and the lower
# lid points below each of them; the corners (33/133, 263/362) are left alone (they are the EAR's denominator).
UPPER_LID = np.array([u[1:-1] for u in MI.EYE_UPPER], np.int64)
LOWER_LID = np.array([lo[1:-1] for lo in MI.EYE_LOWER], np.int64)
# the skin fold above each upper-lid point follows part of its motion
UPPER_FOLD = np.array(MI.UPPER_FOLD, np.int64)
LID_MEET = 0.25      # a closed eye's lid line, as a fraction of the way from the lower to the upper lid
FOLD_FOLLOW = 0.5    # share of the upper lid's motion the fold above it takes
IRIS = np.array(MI.IRIS, np.int64)  # per eye: centre first, then 4 rim
EYE_CORNER_POINTS = (MI.EYE_UPPER[0][0], MI.EYE_UPPER[0][-1], MI.EYE_UPPER[1][0], MI.EYE_UPPER[1][-1])  # 33 133 263 362
# Non-rigid points below the nose (canonical y > 1.17 on anne.png's mesh, symmetric): lips, philtrum, chin, jaw
# line and lower cheeks: everything speech moves.
MOUTH_POINTS = np.array([
    0, 11, 12, 13, 14, 15, 16, 17, 18, 32, 37, 38, 39, 40, 41, 42, 43, 57, 58, 61, 62, 72, 73, 74, 76, 77, 78, 80,
    81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 95, 96, 106, 135, 136, 138, 140, 146, 148, 149, 150, 152, 164,
    165, 167, 169, 170, 171, 172, 175, 176, 178, 179, 180, 181, 182, 183, 184, 185, 186, 191, 192, 194, 199, 200,
    201, 202, 204, 208, 210, 211, 212, 214, 215, 216, 262, 267, 268, 269, 270, 271, 272, 273, 287, 288, 291, 292,
    302, 303, 304, 306, 307, 308, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319, 320, 321, 322, 324, 325, 335,
    364, 365, 367, 369, 375, 377, 378, 379, 391, 393, 394, 395, 396, 397, 400, 402, 403, 404, 405, 406, 407, 408,
    409, 410, 415, 416, 418, 421, 422, 424, 428, 430, 431, 432, 434, 435, 436], np.int64)
# the 8 lip points nearest each mouth corner: a smile or a frown moves them, so the emotion code does too
MOUTH_CORNERS = np.array([61, 76, 62, 78, 185, 184, 146, 77, 291, 306, 292, 308, 409, 408, 375, 307], np.int64)


def _emotion_points() -> np.ndarray:
    excluded = set(MI.RIGID_POINTS.tolist()) | set(MOUTH_POINTS.tolist()) | set(UPPER_LID.ravel().tolist())
    excluded |= set(LOWER_LID.ravel().tolist()) | set(EYE_CORNER_POINTS)
    pts = [i for i in range(MI.NUM_MESH) if i not in excluded] + MOUTH_CORNERS.tolist()
    return np.array(sorted(pts), np.int64)


EMOTION_POINTS = _emotion_points()
LID_POINTS = np.array(sorted(np.concatenate([UPPER_LID.ravel(), LOWER_LID.ravel(), UPPER_FOLD.ravel()])), np.int64)
IRIS_POINTS = IRIS.ravel().copy()
FACTOR_POINTS = {"mouth": MOUTH_POINTS, "emotion": EMOTION_POINTS, "blink": LID_POINTS, "gaze": IRIS_POINTS}

# GazeControl iris units -> signals.gaze units (see the module docstring)
GAZE_H_PER_UNIT = 0.5
GAZE_V_PER_UNIT = 0.5
# The renderer moves the iris disc by this many times a vertical gaze change: mediapipe reads a rendered eye's
# vertical gaze mostly from its lids, so an iris moved by the code alone reads back at ~0.1-0.4 of it (anne.png,
# Macron.png, open eyes); the lids' own share (a blink reads as looking down) is left to the lids. Measured with
# benchmarks/meshwarp_targets.py: vertical r 0.68 / 0.71 / 0.53 -> 0.72 / 0.73 / 0.60 at 2.5 (4: no better).
# Round s31 (benchmarks/results/meshwarp/gaze_s31.md), with GAZE_V_TRAVEL 0.2, LID_GAZE_FOLLOW 0.6 and the moved
# iris no longer drawing its lid-hidden ring (eyes.IRIS_HIDDEN_RING): follow benchmark gaze r v 0.635 -> 0.678 (5
# photographs 0.842 -> 0.874, open-eye frames 0.607 -> 0.725), h 0.926 -> 0.925, EAR r 0.928 -> 0.929 (at lid follow
# 0.75: v 0.662, h 0.918, EAR 0.924). 2.5 / 0.25: no better; 4.5 / 0.2: v 0.663, EAR 0.921 (lid follow 0.75).
GAZE_V_RENDER_GAIN = 3.5
# Vertical iris travel limit (eye widths, ``signals.gaze`` v units) in ``place_gaze``: about half the open eye's
# height (EAR ~0.3), so the iris centre stays inside the opening; the corpus's vertical gaze spans ~-0.09..0.05 (the
# held-out eye clip id01333_00040, v std 0.024), x GAZE_V_RENDER_GAIN stays within it. Without the limit
# ``--gaze-v 0.6`` (0.75 eye widths rendered) put the iris under the lid: a blank white eye, read as no gaze. With the
# lids following the iris (LID_GAZE_FOLLOW) the iris moves inside its opening by only 0.4 of this: 0.2 since
# round s31 (0.15 before; see GAZE_V_RENDER_GAIN).
GAZE_V_TRAVEL = 0.2
# Horizontal iris travel: past GAZE_H_KNEE of the eye's width (either eye, corner to corner) the iris eases toward
# GAZE_H_KNEE + GAZE_H_SOFT instead of going on behind the corner. A driver's change added to the portrait's own gaze
# put anne's irises at 0.87 / 0.97 of the width in the README main command (the driver's own reach 0.81 / 0.77):
# an eye with no iris left, all white. On the follow benchmark (meshwarp_controls.py --follow-only) it also lifts EAR
# r 0.884 -> 0.927 (mediapipe misreads the lids of an eye whose iris sits in the corner) and gaze r h / v 0.974 /
# 0.613 -> 0.955 / 0.624; 0.7 / 0.1: h 0.942; 0.75 / 0.15: h 0.964 but EAR r 0.914 (0.900 on meshwarp_targets.py).
# An explicit --gaze 0.5 right lands at 0.60 of the ask instead of 0.67 without the knee (3 portraits;
# benchmarks/results/meshwarp/eyes_s30.md). None: no limit.
GAZE_H_KNEE = 0.7
GAZE_H_SOFT = 0.15
# Lid-eye coupling: the lids shift with a vertical gaze change by this share of the iris's shift (a real upper lid
# follows the eye; mediapipe reads vertical gaze partly from where the opening sits). On anne.png, Macron.png and
# liveportrait source_s3.jpg, a rendered v change of +-0.075..0.15 reads back at 0.48-0.55 of itself without it,
# 0.57-0.71 at 0.5 and 0.66-0.76 at 1.0 (1.0 shows sclera under an upturned iris): 0.75. Round s31 (with the gain
# 3.5, travel 0.2 and eyes.IRIS_HIDDEN_RING; benchmarks/results/meshwarp/gaze_s31.md), on the follow benchmark
# (gaze r h / v / v over open driving frames / EAR r): 0.75: 0.918 / 0.662 / 0.720 / 0.924; 0.6: 0.925 / 0.678 /
# 0.725 / 0.929; 0.5: 0.925 / 0.663 / 0.736 / 0.931; 0.6 with travel 0.25: 0.919 / 0.676 / 0.768 / 0.924: 0.6.
LID_GAZE_FOLLOW = 0.6


def point_mask(points) -> np.ndarray:
    """(478,) bool mask of a point list."""
    m = np.zeros(NUM_POINTS, bool)
    m[np.asarray(points, np.int64)] = True
    return m


# ---------------------------------------------------------------------------------------------- codes


@dataclass
class MeshCodes:
    """Per-frame codes of every factor (see the module docstring for units). ``mouth_opening`` (T,) and ``ear``
    (T,2) are ``signals.mouth_opening`` / ``eye_aspect_ratio`` of the canonical (frontal) meshes the codes came
    from (used by ``neutral_reference``; None for codes made by hand)."""

    pose: np.ndarray
    eye: np.ndarray
    mouth: np.ndarray
    emotion: np.ndarray
    mouth_opening: np.ndarray | None = None
    ear: np.ndarray | None = None
    reference: int | None = field(default=None)   # the frame the relative codes were measured against

    def __post_init__(self) -> None:
        self.pose = _f32(self.pose, 2)
        self.eye = _f32(self.eye, 2)
        self.mouth = _f32(self.mouth, 2)
        self.emotion = _f32(self.emotion, 2)
        t = len(self.pose)
        if self.pose.shape[1] != 6 or self.eye.shape[1] != 4:
            raise ValueError(f"MeshCodes: pose must be (T,6) and eye (T,4), got {self.pose.shape}, {self.eye.shape}")
        if not (len(self.eye) == len(self.mouth) == len(self.emotion) == t):
            raise ValueError("MeshCodes: every code needs the same number of frames")
        if self.mouth_opening is not None:
            self.mouth_opening = np.asarray(self.mouth_opening, np.float32).reshape(t)
        if self.ear is not None:
            self.ear = np.asarray(self.ear, np.float32).reshape(t, 2)

    def __len__(self) -> int:
        return len(self.pose)

    def __getitem__(self, index) -> "MeshCodes":
        """Frames by index/slice/array (an int keeps the frame axis: (1, d))."""
        if isinstance(index, (int, np.integer)):
            index = slice(int(index), int(index) + 1 if int(index) != -1 else None)
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return MeshCodes(self.pose[index], self.eye[index], self.mouth[index], self.emotion[index],
                         pick(self.mouth_opening), pick(self.ear), self.reference)

    def copy(self) -> "MeshCodes":
        c = self[slice(None)]
        for name in ("pose", "eye", "mouth", "emotion", "mouth_opening", "ear"):
            if getattr(c, name) is not None:
                setattr(c, name, getattr(c, name).copy())
        return c

    @property
    def blink(self) -> np.ndarray:
        return self.eye[:, list(BLINK_DIMS)]

    @property
    def gaze(self) -> np.ndarray:
        return self.eye[:, list(GAZE_DIMS)]

    @staticmethod
    def concat(parts: list["MeshCodes"]) -> "MeshCodes":
        opt = lambda name: (np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
                            if all(getattr(p, name) is not None for p in parts) else None)
        return MeshCodes(np.concatenate([p.pose for p in parts]), np.concatenate([p.eye for p in parts]),
                         np.concatenate([p.mouth for p in parts]), np.concatenate([p.emotion for p in parts]),
                         opt("mouth_opening"), opt("ear"))

    def to_dict(self) -> dict[str, np.ndarray]:
        return {"pose": self.pose, "eye": self.eye, "mouth": self.mouth, "emotion": self.emotion}


def _f32(a, ndim: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    if a.ndim == ndim - 1:
        a = a[None]
    if a.ndim != ndim:
        raise ValueError(f"MeshCodes: expected a (T, d) array, got shape {a.shape}")
    return np.ascontiguousarray(a)


# ---------------------------------------------------------------------------------------------- geometry


def canonicalize(mesh) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(T,478,3) (or one (478,3) mesh) -> canonical (T,478,3), rotation (T,3,3), scale (T,), translation (T,3).

    mesh ~= scale * canonical @ rotation.T + translation, with rotation/scale/translation exactly
    ``signals.head_transform``'s fit, so ``signals.rotation_to_angles(rotation)`` is ``signals.head_pose``.
    NaN rows for frames without a face.
    """
    lm = S._landmarks(mesh)
    rot, scale, trans = S.head_transform(lm)
    with np.errstate(invalid="ignore"):
        canon = np.einsum("tpi,tij->tpj", lm - trans[:, None], rot) / scale[:, None, None]
    return canon, rot, scale, trans


def uncanonicalize(canon, rot, scale, trans) -> np.ndarray:
    """Inverse of ``canonicalize``: (T,478,3) in pixels."""
    return np.einsum("tpj,tij->tpi", canon, rot) * np.asarray(scale)[:, None, None] + np.asarray(trans)[:, None]


def angles_to_rotations(angles) -> np.ndarray:
    """(T,3) yaw, pitch, roll (deg) -> (T,3,3), vectorised ``signals.angles_to_rotation``."""
    a = np.radians(np.asarray(angles, np.float64).reshape(-1, 3))
    yaw, pitch, roll = -a[:, 0], -a[:, 1], a[:, 2]
    t = len(a)
    rx = np.zeros((t, 3, 3)); ry = np.zeros((t, 3, 3)); rz = np.zeros((t, 3, 3))  # noqa: E702
    rx[:, 0, 0] = 1; rx[:, 1, 1] = np.cos(pitch); rx[:, 1, 2] = -np.sin(pitch)  # noqa: E702
    rx[:, 2, 1] = np.sin(pitch); rx[:, 2, 2] = np.cos(pitch)  # noqa: E702
    ry[:, 1, 1] = 1; ry[:, 0, 0] = np.cos(yaw); ry[:, 0, 2] = np.sin(yaw)  # noqa: E702
    ry[:, 2, 0] = -np.sin(yaw); ry[:, 2, 2] = np.cos(yaw)  # noqa: E702
    rz[:, 2, 2] = 1; rz[:, 0, 0] = np.cos(roll); rz[:, 0, 1] = -np.sin(roll)  # noqa: E702
    rz[:, 1, 0] = np.sin(roll); rz[:, 1, 1] = np.cos(roll)  # noqa: E702
    return rz @ ry @ rx


def pose_code(rot, scale, trans) -> np.ndarray:
    """(T,6) pose code from a rigid fit (see the module docstring)."""
    scale = np.asarray(scale, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.concatenate([S.rotation_to_angles(rot), np.asarray(trans)[:, :2] / scale[:, None],
                               np.log(scale)[:, None]], axis=1)


def project_codes(offsets, basis) -> np.ndarray:
    """(T,478,3) canonical offsets -> (T,D) coefficients on an orthonormal (D,478,3) basis."""
    return np.einsum("tpc,dpc->td", offsets, np.asarray(basis, np.float64))


def pca_basis(offsets, points, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal (dims,478,3) PCA basis of (N,478,3) offsets restricted to `points` (zero elsewhere), and the
    (dims,) standard deviations of the coefficients. Each component's sign is fixed (its largest entry positive)
    so refits give comparable codes."""
    x = np.asarray(offsets, np.float64)[:, points].reshape(len(offsets), -1)
    x = x[np.isfinite(x).all(1)]
    x = x - x.mean(0)
    # eigenvectors of the (3P, 3P) covariance: much cheaper than an SVD of the (N, 3P) data for N >> 3P
    val, vec = np.linalg.eigh(x.T @ x / max(len(x) - 1, 1))
    order = np.argsort(val)[::-1][:min(dims, x.shape[1], max(len(x) - 1, 1))]
    vt, sd = vec[:, order].T, np.sqrt(np.maximum(val[order], 0.0))
    vt *= np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(1)])[:, None]
    basis = np.zeros((len(vt), NUM_POINTS, 3))
    basis[:, points] = vt.reshape(len(vt), len(points), 3)
    return basis, sd


def lowpass(x, sigma_frames: float) -> np.ndarray:
    """Gaussian low-pass along axis 0 of (T,D), NaN-aware (missing frames are skipped, weights renormalised)."""
    x = np.asarray(x, np.float64)
    if sigma_frames <= 0 or len(x) < 2:
        return x.copy()
    r = int(np.ceil(3 * sigma_frames))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma_frames) ** 2)
    ok = np.isfinite(x).all(1)
    xz = np.where(ok[:, None], x, 0.0)
    pad = lambda a: np.pad(a, ((r, r),) + ((0, 0),) * (a.ndim - 1))  # noqa: E731
    num = np.stack([np.convolve(c, k, mode="valid") for c in pad(xz).T], 1) if x.shape[1] else xz
    den = np.convolve(pad(ok.astype(np.float64)), k, mode="valid")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den[:, None]
    out[~ok] = np.nan
    return out


# ---------------------------------------------------------------------------------------------- measuring


def neutral_reference(codes_or_meshes, mode: str = "auto") -> int:
    """Index of the clip's most neutral frame: eyes open, mouth closed, near frontal (``mode="auto"``), or the
    first frame with a face (``"first"``). Takes (T,478,3) meshes (EAR and mouth opening measured frontal, on the
    canonical meshes) or ``MeshCodes`` (its measured signals when it has them, else its lid and pose codes).
    Among the least open fifth of the frames (mouth closed first), ranks them by mouth opening, EAR (descending)
    and the size of the head angles; the lowest rank sum wins (ties: the earliest)."""
    if isinstance(codes_or_meshes, MeshCodes):
        c = codes_or_meshes
        angles = c.pose[:, :3].astype(np.float64)
        ear = (c.ear if c.ear is not None else c.eye[:, list(BLINK_DIMS)]).astype(np.float64).mean(1)
        opening = c.mouth_opening.astype(np.float64) if c.mouth_opening is not None else None
    else:
        canon, rot, _, _ = canonicalize(codes_or_meshes)
        angles, ear, opening = S.rotation_to_angles(rot), S.eye_aspect_ratio(canon).mean(1), S.mouth_opening(canon)
    ok = np.isfinite(angles).all(1) & np.isfinite(ear)
    if opening is not None:
        ok &= np.isfinite(opening)
    if not ok.any():
        raise ValueError("neutral_reference: no frame with a face")
    if mode == "first":
        return int(np.flatnonzero(ok)[0])
    if mode != "auto":
        raise ValueError(f"neutral_reference: mode must be 'auto' or 'first', got {mode!r}")
    idx = np.flatnonzero(ok)
    if opening is not None:  # a closed mouth first: only the least open fifth of the frames are candidates
        idx = idx[opening[idx] <= np.quantile(opening[idx], 0.2)]

    def rank(v):  # 0 = best, ties share a rank
        return np.searchsorted(np.sort(v), v, side="left").astype(np.float64)

    score = rank(-ear[idx]) + rank(np.abs(angles[idx]).sum(1))
    if opening is not None:
        score += rank(opening[idx])
    return int(idx[np.argmin(score)])


def measure(meshes, params, reference=None, fps: float = FPS, smooth: bool = True) -> MeshCodes:
    """(T,478,3) meshes of one clip -> ``MeshCodes``.

    ``reference``: None (absolute: relative to ``params.mean_shape`` / ``params.open_ear``), an int frame index,
    ``"auto"`` (``neutral_reference``) or ``"first"``. ``smooth`` applies the emotion low-pass (off for frames that
    are not a sequence).
    """
    lm = S._landmarks(meshes)
    canon, rot, scale, trans = canonicalize(lm)
    # lids and mouth opening on the canonical (frontal) mesh: a head turn foreshortens them in the image
    ear_c = S.eye_aspect_ratio(canon)
    opening = S.mouth_opening(canon)
    if isinstance(reference, str):
        reference = neutral_reference(lm, reference)
    if reference is None:
        base, base_ear = np.asarray(params.mean_shape, np.float64), np.asarray(params.open_ear, np.float64)
    else:
        reference = int(reference)
        if not -len(lm) <= reference < len(lm):
            raise IndexError(f"measure: reference frame {reference} out of range ({len(lm)} frames)")
        base, base_ear = canon[reference], ear_c[reference]
    off = canon - base
    mouth = project_codes(off, params.mouth_basis)
    emotion = project_codes(off, params.emotion_basis) - mouth @ np.asarray(params.emotion_from_mouth, np.float64)
    if smooth:
        emotion = lowpass(emotion, params.emotion_sigma_s * fps)
    with np.errstate(invalid="ignore", divide="ignore"):
        lids = ear_c / base_ear
    eye = np.concatenate([lids, S.gaze(lm)], axis=1)
    return MeshCodes(pose_code(rot, scale, trans), eye, mouth, emotion, opening, ear_c, reference)


# ---------------------------------------------------------------------------------------------- retargeting


def retarget(driver: MeshCodes, ref_index: int | str | None = "auto", base: MeshCodes | None = None,
             absolute=()) -> MeshCodes:
    """The driver's motion relative to its frame ``ref_index`` (``"auto"``/None: ``neutral_reference``;
    ``"first"``), applied to ``base`` (normally the portrait's codes, one frame; broadcast over time).

    Per factor: angles, gaze, mouth and emotion add the driver's change (driver[t] - driver[ref]); the lid
    opening multiplies by driver[t] / driver[ref]; tx, ty move the face by the driver's shift of face centre
    measured in the driver's face scale at the reference (times the base's face scale), log-scale adds.
    ``base=None`` gives the changes themselves (a frontal, unit-scale base at the origin, lids 1, gaze 0).
    ``absolute``: factors copied from the driver as they are instead ("pose", "blink", "gaze", "mouth",
    "emotion"; for mouth/emotion/blink measure the driver with ``reference=None``).
    """
    unknown = set(absolute) - {"pose", "blink", "gaze", "mouth", "emotion"}
    if unknown:
        raise ValueError(f"retarget: unknown factors {sorted(unknown)}")
    d = driver
    t = len(d)
    if ref_index is None or isinstance(ref_index, str):
        ref_index = neutral_reference(d, ref_index or "auto")
    r = d[int(ref_index)]
    if base is None:
        base = MeshCodes(np.zeros((1, 6)), np.array([[1.0, 1.0, 0.0, 0.0]]), np.zeros((1, d.mouth.shape[1])),
                         np.zeros((1, d.emotion.shape[1])))
    b = base[0] if len(base) == 1 else base
    if len(b) not in (1, t):
        raise ValueError(f"retarget: base has {len(b)} frames, the driver {t}")
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    dp, rp, bp = f64(d.pose), f64(r.pose), f64(b.pose)
    pose = np.empty((t, 6))
    pose[:, :3] = bp[:, :3] + dp[:, :3] - rp[:, :3]
    pose[:, 5] = bp[:, 5] + dp[:, 5] - rp[:, 5]
    shift = (dp[:, 3:5] * np.exp(dp[:, 5:6]) - rp[:, 3:5] * np.exp(rp[:, 5:6])) / np.exp(rp[:, 5:6])
    pose[:, 3:5] = (bp[:, 3:5] * np.exp(bp[:, 5:6]) + shift * np.exp(bp[:, 5:6])) / np.exp(pose[:, 5:6])
    eye = np.empty((t, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        eye[:, :2] = f64(b.eye)[:, :2] * f64(d.eye)[:, :2] / f64(r.eye)[:, :2]
    eye[:, 2:] = f64(b.eye)[:, 2:] + f64(d.eye)[:, 2:] - f64(r.eye)[:, 2:]
    mouth = f64(b.mouth) + f64(d.mouth) - f64(r.mouth)
    emotion = f64(b.emotion) + f64(d.emotion) - f64(r.emotion)
    if "pose" in absolute:
        pose = dp.copy()
    if "blink" in absolute:
        eye[:, :2] = f64(d.eye)[:, :2]
    if "gaze" in absolute:
        eye[:, 2:] = f64(d.eye)[:, 2:]
    if "mouth" in absolute:
        mouth = f64(d.mouth)
    if "emotion" in absolute:
        emotion = f64(d.emotion)
    return MeshCodes(pose, eye, mouth, emotion, d.mouth_opening, d.ear)


def gaze_from_control(hv, center=(0.0, 0.0)) -> np.ndarray:
    """(T,2) ``GazeControl`` iris units (+h image right, +v UP) -> (T,2) gaze code (signals units, v DOWN);
    ``center``: the code of "looking at the camera" (``params.gaze_center``)."""
    hv = np.asarray(hv, np.float64).reshape(-1, 2)
    c = np.asarray(center, np.float64).reshape(2)
    return np.stack([c[0] + GAZE_H_PER_UNIT * hv[:, 0], c[1] - GAZE_V_PER_UNIT * hv[:, 1]], axis=1)


def apply_emotion_label(codes: MeshCodes, params, label: str, intensity: float = 1.0, base=None) -> MeshCodes:
    """Codes with an emotion label at ``intensity`` (0 = neutral, 1 = the label's typical expression): the emotion
    code becomes base.emotion + intensity * ``params.emotion_code(label)`` (``base``: the portrait's codes; None:
    ``codes`` themselves) and the label's resting mouth shape is added to the mouth code (a smile's corners: see
    ``params.emotion_mouths``) and its lid opening change multiplies the lid code (``params.emotion_lids``).
    Per frame, ``intensity`` may be a (T,) curve."""
    out = codes.copy()
    w = np.broadcast_to(np.asarray(intensity, np.float64).reshape(-1, 1), (len(out), 1))
    b = (base if base is not None else codes)
    b = b[0].emotion if len(b) == 1 else b.emotion
    out.emotion = (b + w * params.emotion_code(label)[None]).astype(np.float32)
    out.mouth = (out.mouth + w * params.emotion_mouth(label)[None]).astype(np.float32)
    lid = getattr(params, "emotion_lid", None)
    if lid is not None:   # the label's lid opening change (surprise widens the eyes)
        out.eye[:, :2] = (out.eye[:, :2] * np.maximum(1.0 + w * lid(label)[None], 0.0)).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------- composing


def deform_canonical(canon, portrait_codes: MeshCodes, codes: MeshCodes, params) -> np.ndarray:
    """The portrait's canonical mesh (478,3) with the mouth, emotion and lid changes of ``codes`` against
    ``portrait_codes``: (T,478,3), still canonical (no pose, no gaze)."""
    p = portrait_codes[0]
    dm = np.asarray(codes.mouth, np.float64) - p.mouth.astype(np.float64)
    de = np.asarray(codes.emotion, np.float64) - p.emotion.astype(np.float64)
    out = np.asarray(canon, np.float64)[None] + np.einsum("td,dpc->tpc", dm, np.asarray(params.mouth_basis, np.float64))
    out += np.einsum("td,dpc->tpc", de, np.asarray(params.emotion_basis, np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        f = np.asarray(codes.eye[:, :2], np.float64) / p.eye[:, :2].astype(np.float64)  # (T,2)
    f = np.where(np.isfinite(f), np.maximum(f, 0.0), 1.0)
    for k in range(2):
        up, lo, fold = out[:, UPPER_LID[k]], out[:, LOWER_LID[k]], out[:, UPPER_FOLD[k]]
        meet = lo + LID_MEET * (up - lo)
        fk = f[:, k, None, None]
        new_up = meet + fk * (up - meet)
        out[:, UPPER_LID[k]] = new_up
        out[:, LOWER_LID[k]] = meet + fk * (lo - meet)
        out[:, UPPER_FOLD[k]] = fold + FOLD_FOLLOW * (new_up - up)
    return out


def place_gaze(mesh, gaze_code) -> np.ndarray:
    """Move each eye's 5 iris points rigidly (x, y) so that ``signals.gaze`` of (T,478,3) ``mesh`` equals
    ``gaze_code`` (T,2); both irises take the same shift in their eye's frame (their difference is kept).

    Vertically the iris travels at most ``GAZE_V_TRAVEL`` eye widths from where the mesh has it (past that it
    hides under a lid and reads as no gaze at all), and the lids follow it by ``LID_GAZE_FOLLOW`` (both lids the
    same shift: the opening, i.e. the EAR and the blink code, is unchanged; the eye corners stay). Horizontally an
    iris asked past ``GAZE_H_KNEE`` of its eye's width eases toward ``GAZE_H_KNEE + GAZE_H_SOFT`` (both irises the
    same shift still), so the gaze lands exactly only inside the knee."""
    out = np.array(mesh, np.float64, copy=True)
    g = np.asarray(gaze_code, np.float64).reshape(-1, 2)
    delta = g - S.gaze(out)
    delta = np.where(np.isfinite(delta), delta, 0.0)
    delta[:, 1] = np.clip(delta[:, 1], -GAZE_V_TRAVEL, GAZE_V_TRAVEL)
    if GAZE_H_KNEE is not None:   # the outer iris eases into its corner instead of passing behind it
        x = S.iris_position(out)[:, :, 0] + delta[:, :1]   # (T,2) per eye, where the shift would put it
        x = np.where(np.isfinite(x), x, 0.5)
        hi, lo = x.max(1) - GAZE_H_KNEE, (1.0 - GAZE_H_KNEE) - x.min(1)
        soft = GAZE_H_SOFT * np.tanh(np.maximum(hi, 0.0) / GAZE_H_SOFT)
        delta[:, 0] -= np.maximum(hi, 0.0) - soft
        soft = GAZE_H_SOFT * np.tanh(np.maximum(lo, 0.0) / GAZE_H_SOFT)
        delta[:, 0] += np.maximum(lo, 0.0) - soft
    for k in range(2):
        a, b = out[:, MI.GAZE_POINTS[k, 0], :2], out[:, MI.GAZE_POINTS[k, 1], :2]
        e = b - a
        perp = np.stack([-e[:, 1], e[:, 0]], axis=1)  # +y of signals' iris frame (image down for an upright face)
        out[:, IRIS[k], :2] += (delta[:, :1] * e + delta[:, 1:] * perp)[:, None]
        lids = (delta[:, 1:] * perp)[:, None]
        out[:, np.concatenate([UPPER_LID[k], LOWER_LID[k]]), :2] += LID_GAZE_FOLLOW * lids
        out[:, UPPER_FOLD[k], :2] += FOLD_FOLLOW * LID_GAZE_FOLLOW * lids
    return out


def compose(portrait_mesh, portrait_codes: MeshCodes, codes: MeshCodes, params) -> np.ndarray:
    """Target meshes (T,478,3) in the portrait's pixels for ``codes`` (absolute codes, e.g. ``retarget(..., base=
    portrait_codes)``): the portrait's canonical mesh deformed by the mouth/emotion/lid changes, rotated to the
    requested ABSOLUTE angles, scaled and placed by the pose code (weak perspective: x, y in pixels, z on x's
    scale), irises placed for the requested gaze. ``codes == portrait_codes`` gives the portrait's mesh."""
    lm = S._landmarks(portrait_mesh)[:1]
    canon, rot_p, scale_p, trans_p = canonicalize(lm)
    if not np.isfinite(canon).all():
        raise ValueError("compose: the portrait mesh has no face")
    deformed = deform_canonical(canon[0], portrait_codes, codes, params)
    # the pose as a change from the portrait's own codes applied to its exact fit, so equal codes give back the
    # portrait to float64 precision (the codes are float32); the angles reached are still the codes' own
    pose = np.asarray(codes.pose, np.float64)
    own = portrait_codes[0].pose.astype(np.float64)
    delta = angles_to_rotations(pose[:, :3]) @ angles_to_rotations(own[:, :3]).transpose(0, 2, 1)
    rot = delta @ rot_p
    scale = scale_p * np.exp(pose[:, 5] - own[:, 5])
    t = np.repeat(trans_p, len(pose), axis=0)
    t[:, :2] += pose[:, 3:5] * np.exp(pose[:, 5:6]) - own[:, 3:5] * np.exp(own[:, 5:6])
    out = uncanonicalize(deformed, rot, scale, t)
    return place_gaze(out, codes.eye[:, 2:4])
