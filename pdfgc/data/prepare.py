"""`pdfgc prepare`: raw talking-face clips -> a prepared corpus for training (format: ``pdfgc.data.corpus``).

Per raw clip (a video, or a numbered frames folder taken at 25 fps), in one worker process:

1. Audio: the clip's own track, else a sidecar file (``clip.wav`` beside ``clip.mp4``; MEAD's ``audio/`` tree),
   decoded to 16 kHz mono (``media.audio_io.load_speech``) and turned into the official normalised log-mel rows
   (``media.spectrogram``, loudness-normalised over the whole clip as at inference). Frame t's audio window is mel
   rows [4t, 4t+20), exactly what ``pdfgc animate`` pairs with output frame t; frames after the last full window
   are dropped. No track, an unreadable or silent one: the clip is kept with ``has_audio`` False (video-only clips
   still train appearance, pose, eyes and emotion).
2. Video: decoded with PyAV and re-timed to 25 fps (``media.video.iter_video_frames``: frame k shows the source
   frame on screen at k/25 s). Pass 1 finds the face in every frame with the inference aligner
   (``media.face.SequenceAligner``: mediapipe tracking, window search for small faces) and compares consecutive
   frames for shot changes.
3. Cuts: a shot change is a large jump of frame content (colour histogram and thumbnail difference, thresholds
   measured on the shipped clips: within clips the Bhattacharyya distance stayed <= 0.18 and the mean grey
   difference <= 25/255, across clips >= 0.21 and >= 22) or of the face (the eyes' midpoint moving more than one
   eye distance, or the eye distance changing by more than 25 %, between consecutive frames: a face that teleports,
   or the tracker switching to another person; in the shipped clips the move stays <= 0.3, except vigorous
   head shaking with motion blur in liveportrait/driving_d12.mp4 at up to 0.82, which is real motion), and a run of
   more than 0.5 s without a face. The clip is split there (faceless runs are dropped); shots shorter than ``min_seconds``
   are rejected with the reason.
4. Alignment, per shot: the inference rule for a driving video: ONE similarity from the shot's mean eye and mouth
   points, per-frame mouth re-centring smoothed over time (a clip without cuts uses ``SequenceAligner.finalize``
   itself; a shot uses ``shot_matrices``, the same computation on its frames, checked equal in the tests).
   Inputs that are already 224x224 are taken as aligned crops (``align="auto"``, the pipeline's rule; ``always``
   aligns them too, ``never`` only resizes).
5. Pass 2: each frame warped to its 224 crop (``media.face.warp_to_crop``), the 478-point mesh found on the crop
   (mediapipe tracking, restarted per shot), and the crop stored as JPEG (quality 95). Frames where no face was
   found (``valid`` False) take the nearest valid frame's crop and mesh; a shot with fewer than
   ``min_valid_fraction`` valid frames, or whose face is under ``min_face_px`` source pixels, is rejected.
6. Labels from the crop mesh with ``pdfgc.evaluation.signals`` (what ``pdfgc evaluate`` measures on generated
   frames): pose = yaw, pitch, roll in degrees from the rigid fit of the mesh onto the frontal template, then
   tx, ty = (translation - 111.5) / 224 (crop centre 0) and scale / 224 (pixels per template unit over the crop
   size); eye = EAR per eye (image-left eye first), iris x/y per eye as 2*(x - 0.5) and 2*y (0 = iris at the
   middle of the corner line, +-1 = at a corner); mouth opening = inner-lip gap over face height.
7. Shots longer than ``max_seconds`` are cut into equal segments of at most that length; each segment is one
   prepared clip (key ``<raw key>__NNN``).

The main process writes the segments into ``shard-%06d.tar`` (stdlib tarfile, written as ``.tmp`` and renamed when
complete) and, only after a shard is renamed, one completion record per raw clip under ``_state/clips/``. A re-run
skips every recorded clip, deletes temporary and unreferenced shards left by a killed run, and rebuilds
``manifest.json`` / ``rejected.json`` from the records (sorted, no timestamps: an unchanged corpus gives an
identical manifest). ``--shard i/N`` takes every N-th clip so machines can split a corpus; ``merge_corpora``
joins their output folders into one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import sys
import tarfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import InputError, PDFGCError
from ..fileio import atomic_path, write_atomic
from .corpus import CROP_SIZE, FORMAT_VERSION, FPS, MANIFEST, REJECTED, ClipInfo, npy_bytes, read_manifest
from .discover import (DEFAULT_HELDOUT, RawClip, discover, is_heldout, parse_shard, read_heldout,
                       select_shard)

STATE_DIR = "_state"
RECORDS_DIR = "clips"
SETTINGS = "settings.json"
SHARD_RE = re.compile(r"^shard-(\d{6,})\.tar$")


@dataclass(frozen=True)
class PrepareConfig:
    """Everything that changes the prepared data (a resumed run must use the same values)."""

    min_seconds: float = 1.0
    max_seconds: float = 20.0
    min_face_px: float = 40.0          # as inference: smaller faces are refused
    align: str = "auto"                # auto (224x224 inputs are aligned crops) | always | never
    jpeg_quality: int = 95
    min_valid_fraction: float = 0.8    # share of frames of a shot in which the face must be found
    max_face_gap_s: float = 0.5        # longer runs without a face split the clip and are dropped
    cut_hist: float = 0.30             # Bhattacharyya distance of HSV histograms: a cut on its own
    cut_grey: float = 35.0             # mean abs difference of 32x32 grey thumbnails (0-255): a cut on its own
    cut_hist_soft: float = 0.15        # both of these together: a cut
    cut_grey_soft: float = 20.0
    cut_face_jump: float = 1.0         # move of the eyes' midpoint / eye distance between consecutive frames
    cut_face_scale: float = 0.25       # relative change of the eye distance between consecutive frames

    def __post_init__(self):
        if self.align not in ("auto", "always", "never"):
            raise InputError(f"unknown align mode {self.align!r} (auto, always, never)")
        if not self.min_seconds > 0:
            raise InputError(f"--min-seconds must be positive, got {self.min_seconds}")
        if not self.max_seconds >= self.min_seconds:
            raise InputError(f"--max-seconds ({self.max_seconds}) must be at least --min-seconds ({self.min_seconds})")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"JPEG quality must be 1-100, got {self.jpeg_quality}")

    @property
    def min_frames(self) -> int:
        return max(1, int(math.ceil(self.min_seconds * FPS - 1e-9)))

    @property
    def max_frames(self) -> int:
        return max(self.min_frames, int(math.floor(self.max_seconds * FPS + 1e-9)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ============================================================================================ one clip (worker side)


@dataclass
class Segment:
    key: str
    info: dict                  # ClipInfo fields except shard / members / split
    members: dict[str, bytes]   # suffix -> member data


@dataclass
class ClipResult:
    raw_key: str
    source: str
    segments: list[Segment] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)
    frames_read: int = 0
    seconds: float = 0.0


class _Reject(Exception):
    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


def frame_signature(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(HSV hue-saturation histogram, 32x32 grey thumbnail) of a frame, for shot-change detection."""
    small = cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, [16, 8], [0, 180, 0, 256]).astype(np.float32)
    hist /= max(float(hist.sum()), 1.0)
    grey = cv2.cvtColor(cv2.resize(small, (32, 32), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return hist, grey.astype(np.float32)


def content_change(a, b) -> tuple[float, float]:
    """(histogram distance, mean grey difference) between two frame signatures."""
    return float(cv2.compareHist(a[0], b[0], cv2.HISTCMP_BHATTACHARYYA)), float(np.abs(a[1] - b[1]).mean())


def _is_content_cut(hist: float, grey: float, cfg: PrepareConfig) -> bool:
    return hist > cfg.cut_hist or grey > cfg.cut_grey or (hist > cfg.cut_hist_soft and grey > cfg.cut_grey_soft)


def _is_face_jump(p: np.ndarray, q: np.ndarray, cfg: PrepareConfig) -> bool:
    """p, q: (3,2) eye, eye, mouth centres of consecutive frames. The eyes' midpoint is used, not the mouth, so
    that speech and expressions (a mouth snapping open) never count as a jump."""
    dp, dq = float(np.linalg.norm(p[1] - p[0])), float(np.linalg.norm(q[1] - q[0]))
    if not (dp > 0 and dq > 0):
        return False
    move = float(np.linalg.norm(q[:2].mean(0) - p[:2].mean(0))) / (0.5 * (dp + dq))
    return move > cfg.cut_face_jump or abs(dq / dp - 1.0) > cfg.cut_face_scale


def find_shots(content: np.ndarray, points: np.ndarray, cfg: PrepareConfig) -> tuple[list[tuple[int, int]], list[dict], int]:
    """Split frames [0, N) into shots.

    content: (N,) bool, True where frame t starts a new shot by its content (t >= 1). points: (N,3,2) eye/eye/mouth
    centres, NaN where no face. Returns (shots as [start, end), dropped ranges [{start, end, code, reason}],
    number of cuts).
    """
    n = len(points)
    found = np.isfinite(points).all(axis=(1, 2))
    max_gap = max(1, int(round(cfg.max_face_gap_s * FPS)))
    cut = np.zeros(n, bool)
    cut[1:] = content[1:]
    last = None
    for t in range(n):
        if found[t]:
            if last is not None and t - last <= max_gap and _is_face_jump(points[last], points[t], cfg):
                cut[t] = True
            last = t
    cuts = int(cut.sum())
    # faceless runs longer than max_gap are dropped
    keep = np.ones(n, bool)
    dropped = []
    t = 0
    while t < n:
        if not found[t]:
            e = t
            while e < n and not found[e]:
                e += 1
            if e - t > max_gap and found.any():
                keep[t:e] = False
                dropped.append({"start": t, "end": e, "code": "no_face",
                                "reason": f"no face in frames {t}-{e - 1} ({(e - t) / FPS:.2f} s)"})
            t = e
        else:
            t += 1
    shots = []
    start = None
    for t in range(n + 1):
        boundary = t == n or not keep[t] or cut[t]
        if boundary and start is not None:
            shots.append((start, t))
            start = None
        if t < n and keep[t] and start is None:
            start = t
    return shots, dropped, cuts


def _fill_nearest(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    idx = np.flatnonzero(found)
    out = points.copy()
    for i in np.flatnonzero(~found):
        out[i] = points[idx[np.abs(idx - i).argmin()]]
    return out


def shot_matrices(points: np.ndarray) -> np.ndarray:
    """(n,2,3) crop matrices of one shot: the computation of ``SequenceAligner.finalize`` on these frames' points.

    Kept here because the aligner aligns a whole video and a clip with cuts must be aligned shot by shot; the tests
    check it equals ``finalize`` on a clip without cuts.
    """
    from ..media.face import MEDIAPIPE_TEMPLATE, apply_affine, similarity_transform

    found = np.isfinite(points).all(axis=(1, 2))
    pts = _fill_nearest(points, found)
    base = similarity_transform(pts[found].mean(0), MEDIAPIPE_TEMPLATE)
    mats = np.empty((len(pts), 2, 3))
    previous_bias = None
    for i in range(len(pts)):
        bias = MEDIAPIPE_TEMPLATE[2] - apply_affine(base, pts[i, 2])
        if previous_bias is not None:
            bias = 0.2 * previous_bias + 0.8 * bias  # PC-AVS: smoothed mouth correction
        previous_bias = bias
        mats[i] = base
        mats[i, :, 2] += bias
    return mats


def _split_even(start: int, end: int, max_frames: int) -> list[tuple[int, int]]:
    n = end - start
    pieces = max(1, math.ceil(n / max_frames))
    bounds = [start + round(k * n / pieces) for k in range(pieces + 1)]
    return [(bounds[k], bounds[k + 1]) for k in range(pieces)]


def pose_labels(mesh: np.ndarray) -> np.ndarray:
    """(T,6) float32: yaw, pitch, roll (degrees), tx, ty, scale (see the module docstring)."""
    from ..evaluation.signals import head_transform, rotation_to_angles

    rot, scale, trans = head_transform(mesh)
    centre = CROP_SIZE / 2 - 0.5
    out = np.concatenate([rotation_to_angles(rot), (trans[:, :2] - centre) / CROP_SIZE, scale[:, None] / CROP_SIZE], 1)
    return out.astype(np.float32)


def eye_labels(mesh: np.ndarray) -> np.ndarray:
    """(T,6) float32: EAR left, EAR right, iris x left, iris y left, iris x right, iris y right (image left/right)."""
    from ..evaluation.signals import eye_aspect_ratio, iris_position

    ear = eye_aspect_ratio(mesh)
    iris = iris_position(mesh)  # (T,2,2): x in [0,1] along the corner line, y across it, over the eye width
    ix, iy = 2.0 * (iris[..., 0] - 0.5), 2.0 * iris[..., 1]
    return np.stack([ear[:, 0], ear[:, 1], ix[:, 0], iy[:, 0], ix[:, 1], iy[:, 1]], 1).astype(np.float32)


def _mean_std(x: np.ndarray) -> tuple[float, float]:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return (float(x.mean()), float(x.std())) if x.size else (float("nan"), float("nan"))


def clip_stats(pose: np.ndarray, eye: np.ndarray, mouth: np.ndarray, valid: np.ndarray, face_px: np.ndarray) -> dict:
    """Per-clip statistics over the valid frames (means and standard deviations of every label)."""
    v = valid if valid.any() else np.ones_like(valid)
    stats: dict = {"valid_frames": int(valid.sum()), "valid_fraction": round(float(valid.mean()), 4)}
    for j, name in enumerate(("yaw", "pitch", "roll", "tx", "ty", "scale")):
        stats[f"{name}_mean"], stats[f"{name}_std"] = _mean_std(pose[v, j])
    ear = eye[v, :2].mean(1)
    stats["ear_mean"], stats["ear_std"] = _mean_std(ear)
    stats["ear_min"] = float(np.min(ear)) if ear.size else float("nan")
    stats["iris_x_mean"], stats["iris_x_std"] = _mean_std(eye[v][:, [2, 4]].mean(1))
    stats["iris_y_mean"], stats["iris_y_std"] = _mean_std(eye[v][:, [3, 5]].mean(1))
    stats["mouth_mean"], stats["mouth_std"] = _mean_std(mouth[v])
    stats["face_px_mean"], _ = _mean_std(face_px[v])
    return {k: (round(x, 6) if isinstance(x, float) and math.isfinite(x) else x) for k, x in stats.items()}


def _load_audio(raw: RawClip, has_track: bool, notes: list[str]) -> tuple[np.ndarray | None, str | None]:
    from ..media.audio_io import is_silent, load_speech

    candidates = ([("track", raw.path)] if has_track else []) + [(p.name, p) for p in raw.audio_candidates]
    for label, path in candidates:
        try:
            wav = load_speech(path, source="audio")
        except PDFGCError as e:
            notes.append(f"audio unusable ({e})")
            continue
        if is_silent(wav):
            notes.append(f"audio ({label}) is silent")
            continue
        return wav, label
    return None, None


def _encode_jpeg(crop: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def prepare_clip(raw: RawClip, cfg: PrepareConfig) -> ClipResult:
    """Prepare one raw clip; never raises for a bad clip (rejections are in the result)."""
    t0 = time.perf_counter()
    result = ClipResult(raw_key=raw.key, source=raw.source)
    try:
        _prepare(raw, cfg, result)
    except _Reject as e:
        result.segments = []
        result.rejected = [{"source": raw.source, "segment": None, "code": e.code, "reason": e.reason}]
    except PDFGCError as e:
        code = "no_face" if type(e).__name__ == "FaceNotFoundError" else (
            "face_too_small" if "too small" in str(e) else "unreadable")
        result.segments = []
        result.rejected = [{"source": raw.source, "segment": None, "code": code, "reason": str(e)}]
    except Exception as e:  # a bug or an odd file must not stop a long run: the clip is listed with the error
        result.segments = []
        result.rejected = [{"source": raw.source, "segment": None, "code": "error",
                            "reason": f"internal error: {type(e).__name__}: {e}",
                            "traceback": traceback.format_exc(limit=8)}]
    result.seconds = round(time.perf_counter() - t0, 3)
    return result


def _frames_factory(raw: RawClip) -> Callable:
    from ..media.video import iter_frames_folder, iter_video_frames

    if raw.kind == "frames":
        return lambda: iter_frames_folder(raw.path, source=f"frames folder {raw.source}")
    return lambda: iter_video_frames(raw.path, fps=float(FPS), source=f"clip {raw.source}")


def _prepare(raw: RawClip, cfg: PrepareConfig, result: ClipResult) -> None:
    from ..media.face import (FaceMeshDetector, SequenceAligner, face_size, matrix_scale, three_points,
                              warp_to_crop)
    from ..media.spectrogram import mel_spectrogram, num_output_frames, rms_normalize
    from ..media.video import probe_video

    notes: list[str] = []
    frames = _frames_factory(raw)
    video_info = probe_video(raw.path, source=f"clip {raw.source}") if raw.kind == "video" else None

    # ---- audio: the frame count is capped by the last full audio window
    wav, audio_source = _load_audio(raw, bool(video_info and video_info.has_audio), notes)
    mel = None
    limit = None
    if wav is not None:
        n_audio = num_output_frames(len(wav))
        if n_audio < cfg.min_frames:
            notes.append(f"audio too short ({len(wav) / 16000:.2f} s): kept as video only")
        else:
            mel = mel_spectrogram(rms_normalize(wav))
            limit = n_audio

    first = next(iter(frames()), None)
    if first is None:
        raise _Reject("unreadable", f"{raw.source}: no frames")
    aligned_input = cfg.align == "never" or (cfg.align == "auto" and first.shape[:2] == (CROP_SIZE, CROP_SIZE))
    source_size = [int(first.shape[1]), int(first.shape[0])]
    del first

    # ---- pass 1: faces and shot changes
    content_cuts: list[bool] = []
    prev_sig = None
    crops_jpeg: list[bytes] = []
    mesh_rows: list[np.ndarray | None] = []
    if aligned_input:
        # one pass: the frames are the crops (resized to 224 with align="never")
        tracker = FaceMeshDetector(static_image_mode=False, max_num_faces=1)
        try:
            for i, frame in enumerate(frames()):
                if limit is not None and i >= limit:
                    break
                sig = frame_signature(frame)
                content_cuts.append(prev_sig is not None and _is_content_cut(*content_change(prev_sig, sig), cfg))
                prev_sig = sig
                crop = frame if frame.shape[:2] == (CROP_SIZE, CROP_SIZE) else cv2.resize(
                    frame, (CROP_SIZE, CROP_SIZE), interpolation=cv2.INTER_AREA)
                faces = tracker.detect(crop)
                mesh_rows.append(faces[0] if faces else None)
                crops_jpeg.append(_encode_jpeg(crop, cfg.jpeg_quality))
        finally:
            tracker.close()
        n = len(mesh_rows)
        points = np.stack([three_points(m) if m is not None else np.full((3, 2), np.nan) for m in mesh_rows])
        scale_of = np.full(n, CROP_SIZE / max(source_size))  # crop pixels per source pixel
    else:
        aligner = SequenceAligner(source=f"clip {raw.source}", min_face_px=cfg.min_face_px, warn=notes.append)
        try:
            for i, frame in enumerate(frames()):
                if limit is not None and i >= limit:
                    break
                aligner.add(frame)
                sig = frame_signature(frame)
                content_cuts.append(prev_sig is not None and _is_content_cut(*content_change(prev_sig, sig), cfg))
                prev_sig = sig
            points = aligner.points
        except BaseException:
            aligner.close()
            raise
        n = len(points)
    result.frames_read = n
    found = np.isfinite(points).all(axis=(1, 2))
    if n == 0:
        raise _Reject("unreadable", f"{raw.source}: no frames")
    if not found.any():
        if not aligned_input:
            aligner.close()
        raise _Reject("no_face", f"{raw.source}: no face found in any of the {n} frames")

    shots, dropped, cuts = find_shots(np.array(content_cuts, bool), points, cfg)
    rejected = [dict(d, source=raw.source, segment=None) for d in dropped]
    if cuts:
        notes.append(f"{cuts} cut(s) found")
    good_shots = []
    for s, e in shots:
        if e - s < cfg.min_frames:
            code = "cut" if cuts else "too_short"
            what = "shot between cuts" if cuts else "clip"
            rejected.append({"source": raw.source, "segment": None, "start": s, "end": e, "code": code,
                             "reason": f"{what} (frames {s}-{e - 1}) is {(e - s) / FPS:.2f} s, "
                                       f"shorter than {cfg.min_seconds:g} s"})
        elif not found[s:e].any():
            rejected.append({"source": raw.source, "segment": None, "start": s, "end": e, "code": "no_face",
                             "reason": f"no face found in frames {s}-{e - 1}"})
        else:
            good_shots.append((s, e))

    # ---- alignment matrices per shot, then pass 2 (crops and their mesh)
    shot_of = np.full(n, -1)
    for k, (s, e) in enumerate(good_shots):
        shot_of[s:e] = k
    if not aligned_input:
        matrices = np.full((n, 2, 3), np.nan)
        if good_shots == [(0, n)]:
            try:
                matrices[:] = aligner.finalize()  # the inference aligner's own result
            except PDFGCError as e:
                raise _Reject("face_too_small" if "too small" in str(e) else "no_face", str(e)) from None
        else:
            aligner.close()
            for s, e in good_shots:
                matrices[s:e] = shot_matrices(points[s:e])
        scale_of = np.array([matrix_scale(m) if np.isfinite(m).all() else np.nan for m in matrices])
        crops_jpeg = [b""] * n
        mesh_rows = [None] * n
        if good_shots:
            tracker = None
            current = -1
            count = 0
            try:
                for i, frame in enumerate(frames()):
                    if i >= n:
                        break
                    count += 1
                    k = shot_of[i]
                    if k < 0:
                        continue
                    if k != current:  # a new shot: a fresh tracker, nothing carried over
                        if tracker is not None:
                            tracker.close()
                        tracker = FaceMeshDetector(static_image_mode=False, max_num_faces=1)
                        current = k
                    crop = warp_to_crop(frame, matrices[i])
                    faces = tracker.detect(crop)
                    mesh_rows[i] = faces[0] if faces else None
                    crops_jpeg[i] = _encode_jpeg(crop, cfg.jpeg_quality)
            finally:
                if tracker is not None:
                    tracker.close()
            if count < good_shots[-1][1]:
                raise InputError(f"{raw.source}: the second decoding gave {count} frames, the first {n}")

    # ---- segments
    seg_index = 0
    for s, e in good_shots:
        mesh_ok = np.array([mesh_rows[i] is not None for i in range(s, e)])
        valid = found[s:e] & mesh_ok
        if valid.mean() < cfg.min_valid_fraction:
            rejected.append({"source": raw.source, "segment": None, "start": s, "end": e, "code": "few_faces",
                             "reason": f"face found in only {int(valid.sum())} of {e - s} frames "
                                       f"(frames {s}-{e - 1}; at least {cfg.min_valid_fraction:.0%} needed)"})
            continue
        idx_valid = np.flatnonzero(valid)
        # invalid frames take the nearest valid frame's crop and mesh (the interface's convention)
        src = np.array([s + idx_valid[np.abs(idx_valid - j).argmin()] for j in range(e - s)])
        mesh = np.stack([mesh_rows[i] for i in src]).astype(np.float32)
        face_px = np.array([face_size(mesh_rows[i]) for i in src]) / scale_of[src]
        if float(face_px[valid].mean()) < cfg.min_face_px:
            rejected.append({"source": raw.source, "segment": None, "start": s, "end": e, "code": "face_too_small",
                             "reason": f"the face is too small: {face_px[valid].mean():.0f} px across on average "
                                       f"(frames {s}-{e - 1}), at least {cfg.min_face_px:g} px is needed"})
            continue
        pose, eye = pose_labels(mesh), eye_labels(mesh)
        from ..evaluation.signals import mouth_opening
        mouth = mouth_opening(mesh).astype(np.float32)
        for a, b in _split_even(s, e, cfg.max_frames):
            t = b - a
            if t < cfg.min_frames:  # only possible when max_seconds < 2 * min_seconds
                rejected.append({"source": raw.source, "segment": None, "start": a, "end": b, "code": "too_short",
                                 "reason": f"piece of frames {a}-{b - 1} is shorter than {cfg.min_seconds:g} s"})
                continue
            r = slice(a - s, b - s)
            jpgs = [crops_jpeg[i] for i in src[r]]
            idx = np.zeros(t + 1, np.int64)
            idx[1:] = np.cumsum([len(j) for j in jpgs])
            key = f"{raw.key}__{seg_index:03d}"
            seg_index += 1
            v = valid[r]
            stats = clip_stats(pose[r], eye[r], mouth[r], v, face_px[r])
            stats.update(crop_scale=round(float(np.nanmean(scale_of[a:b])), 6), cuts_in_source=cuts,
                         audio=audio_source if mel is not None else None, aligned_by_us=not aligned_input,
                         source_size=source_size,
                         source_fps=round(video_info.fps, 3) if video_info else float(FPS))
            info = {"key": key, "source": raw.source, "num_frames": t, "has_audio": mel is not None,
                    "speaker": raw.speaker, "emotion": raw.emotion, "emotion_level": raw.emotion_level,
                    "stats": stats, "start_frame": a, "layout": raw.layout}
            meta = dict(info, view=raw.view, raw_key=raw.key, notes=notes)
            members = {"json": json.dumps(meta, sort_keys=True).encode(), "jpgs": b"".join(jpgs),
                       "jpgidx.npy": npy_bytes(idx)}
            if mel is not None:
                members["mel.npy"] = npy_bytes(mel[4 * a: 4 * b + 16].astype(np.float32))
            members.update({"mesh.npy": npy_bytes(mesh[r]), "pose.npy": npy_bytes(pose[r]),
                            "eye.npy": npy_bytes(eye[r]), "mouth.npy": npy_bytes(mouth[r]),
                            "valid.npy": npy_bytes(v.astype(bool))})
            result.segments.append(Segment(key=key, info=info, members=members))
    result.rejected = rejected


# ============================================================================================ output (main process)


def _json_dump(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True, allow_nan=True) + "\n"


class ShardWriter:
    """Appends clips to ``shard-NNNNNN.tar.tmp``; ``close`` completes the tar and renames it."""

    def __init__(self, out: Path, index: int):
        self.name = f"shard-{index:06d}.tar"
        self.path = out / self.name
        self.tmp = out / (self.name + ".tmp")
        self._file = open(self.tmp, "wb")
        self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.PAX_FORMAT)
        self.opened = time.monotonic()
        self.clips = 0

    @property
    def size(self) -> int:
        return self._tar.offset

    def add(self, segment: Segment) -> dict[str, list[int]]:
        """Write one clip's members; returns suffix -> [data offset, size]."""
        import io

        members = {}
        for suffix, data in segment.members.items():
            info = tarfile.TarInfo(f"{segment.key}.{suffix}")
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            # the data starts right after the header blocks tarfile is about to write
            header = info.tobuf(self._tar.format, self._tar.encoding, self._tar.errors)
            members[suffix] = [self._tar.offset + len(header), len(data)]
            self._tar.addfile(info, io.BytesIO(data))
        self.clips += 1
        return members

    def close(self) -> None:
        self._tar.close()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._tar.close()
            self._file.close()
        self.tmp.unlink(missing_ok=True)


def _record(result: ClipResult, shard: str | None, offsets: dict[str, dict]) -> dict:
    segs = []
    for seg in result.segments:
        segs.append(dict(seg.info, shard=shard, members=offsets[seg.key]))
    return {"raw_key": result.raw_key, "source": result.source, "segments": segs, "rejected": result.rejected,
            "frames_read": result.frames_read, "seconds": result.seconds}


class _State:
    """The completion records of an output folder."""

    def __init__(self, out: Path):
        self.out = out
        self.dir = out / STATE_DIR / RECORDS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, dict]:
        records = {}
        for p in sorted(self.dir.glob("*.json")):
            try:
                r = json.loads(p.read_text())
            except (OSError, json.JSONDecodeError):
                p.unlink(missing_ok=True)  # a record is written atomically; anything unreadable is redone
                continue
            records[r["raw_key"]] = r
        return records

    def write(self, record: dict) -> None:
        write_atomic(self.dir / f"{record['raw_key']}.json", json.dumps(record, sort_keys=True), fsync=True)


def _cleanup(out: Path, records: dict[str, dict], log) -> int:
    """Delete temporary shards and shards that no record points to (a run killed before recording them)."""
    used = {s["shard"] for r in records.values() for s in r["segments"]}
    removed = 0
    for p in out.iterdir():
        if p.name.endswith(".tar.tmp") or (p.name.startswith(".") and ".tmp-" in p.name):
            p.unlink(missing_ok=True)
            removed += 1
        elif SHARD_RE.match(p.name) and p.name not in used:
            p.unlink(missing_ok=True)
            removed += 1
    if removed:
        log(f"removed {removed} unfinished file(s) left by an interrupted run")
    return removed


def _next_shard_index(out: Path) -> int:
    nums = [int(m.group(1)) for p in out.iterdir() if (m := SHARD_RE.match(p.name))]
    return max(nums) + 1 if nums else 0


@contextlib.contextmanager
def _lock(out: Path):
    import fcntl

    path = out / STATE_DIR / "lock"
    f = open(path, "w")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"output folder {out} is in use by another `pdfgc prepare`") from None
        yield
    finally:
        f.close()


def _prepare_output(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output folder {out}: cannot create it ({e.strerror or e})") from None
    if not out.is_dir():
        raise InputError(f"output folder {out} is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"output folder {out} is not writable")
    (out / STATE_DIR).mkdir(exist_ok=True)


def _check_settings(out: Path, cfg: PrepareConfig) -> None:
    path = out / STATE_DIR / SETTINGS
    wanted = {"format_version": FORMAT_VERSION, "processing": cfg.to_dict()}
    if path.exists():
        have = json.loads(path.read_text())
        if have != wanted:
            diff = [f"{k}: {have.get('processing', {}).get(k)} -> {v}" for k, v in cfg.to_dict().items()
                    if have.get("processing", {}).get(k) != v]
            if have.get("format_version") != FORMAT_VERSION:
                diff.append(f"format_version: {have.get('format_version')} -> {FORMAT_VERSION}")
            raise InputError(f"output folder {out} was prepared with other settings ({'; '.join(diff)}): "
                             "use the same settings to resume, or a new output folder")
    else:
        write_atomic(path, _json_dump(wanted), fsync=True)


# ============================================================================================ manifest


def build_manifest(records: list[dict], heldout: list[str], settings: dict) -> tuple[dict, list[dict]]:
    """manifest.json and rejected.json contents from completion records (deterministic: sorted, no timestamps)."""
    clips = []
    for r in records:
        for s in r["segments"]:
            c = ClipInfo.from_dict(s)
            c.split = "heldout" if is_heldout(c.source, heldout) else "train"
            clips.append(c.to_dict())
    clips.sort(key=lambda c: c["key"])
    rejected = sorted((dict(x) for r in records for x in r["rejected"]),
                      key=lambda x: (x["source"], x.get("start") or 0))
    totals = corpus_totals(clips, rejected, records)
    manifest = {"format_version": FORMAT_VERSION, "fps": FPS, "crop_size": CROP_SIZE, "settings": settings,
                "totals": totals, "clips": clips}
    return manifest, rejected


def corpus_totals(clips: list[dict], rejected: list[dict], records: list[dict]) -> dict:
    frames = sum(c["num_frames"] for c in clips)
    by_split: dict[str, dict] = {}
    for c in clips:
        d = by_split.setdefault(c["split"], {"clips": 0, "frames": 0})
        d["clips"] += 1
        d["frames"] += c["num_frames"]
    emotions: dict[str, int] = {}
    layouts: dict[str, int] = {}
    for c in clips:
        if c["emotion"]:
            emotions[c["emotion"]] = emotions.get(c["emotion"], 0) + 1
        layouts[c["layout"]] = layouts.get(c["layout"], 0) + 1
    reasons: dict[str, int] = {}
    for x in rejected:
        reasons[x["code"]] = reasons.get(x["code"], 0) + 1
    # frame-weighted pooled mean / std of the per-clip statistics over valid frames
    pooled = {}
    for name in ("yaw", "pitch", "roll", "ear", "mouth"):
        n = m1 = m2 = 0.0
        for c in clips:
            s = c["stats"]
            k = s.get("valid_frames", c["num_frames"])
            mu, sd = s.get(f"{name}_mean"), s.get(f"{name}_std")
            if k and mu is not None and sd is not None and math.isfinite(mu) and math.isfinite(sd):
                n, m1, m2 = n + k, m1 + k * mu, m2 + k * (sd * sd + mu * mu)
        if n:
            mean = m1 / n
            pooled[name] = {"mean": round(mean, 6), "std": round(math.sqrt(max(m2 / n - mean * mean, 0.0)), 6)}
    return {
        "clips": len(clips), "frames": frames, "seconds": round(frames / FPS, 2), "hours": round(frames / FPS / 3600, 4),
        "raw_clips": len(records), "raw_clips_kept": sum(1 for r in records if r["segments"]),
        "clips_with_audio": sum(1 for c in clips if c["has_audio"]),
        "frames_with_audio": sum(c["num_frames"] for c in clips if c["has_audio"]),
        "valid_frames": sum(c["stats"].get("valid_frames", c["num_frames"]) for c in clips),
        "speakers": len({c["speaker"] for c in clips if c["speaker"]}),
        "by_split": dict(sorted(by_split.items())), "emotions": dict(sorted(emotions.items())),
        "layouts": dict(sorted(layouts.items())), "rejected": len(rejected),
        "rejected_by_code": dict(sorted(reasons.items())), "label_stats": pooled,
    }


def _write_manifest(out: Path, records: list[dict], heldout: list[str], settings: dict) -> dict:
    manifest, rejected = build_manifest(records, heldout, settings)
    write_atomic(out / REJECTED, _json_dump(rejected), fsync=True)
    write_atomic(out / MANIFEST, _json_dump(manifest), fsync=True)
    return manifest


# ============================================================================================ the run


@dataclass
class PrepareSummary:
    out: Path
    manifest: dict
    discovered: int
    selected: int
    processed: int       # raw clips worked on in this run
    skipped: int         # already done (resume)
    seconds: float

    def describe(self) -> str:
        t = self.manifest["totals"]
        held = t["by_split"].get("heldout", {}).get("clips", 0)
        rej = ", ".join(f"{k} {v}" for k, v in t["rejected_by_code"].items()) or "none"
        return (f"{t['clips']} clips ({held} held out) from {t['raw_clips_kept']} of {t['raw_clips']} raw clips, "
                f"{t['frames']} frames ({t['seconds'] / 60:.1f} min; {t['clips_with_audio']} clips with audio), "
                f"{t['rejected']} rejected ({rej}) -> {self.out}; this run: {self.processed} processed, "
                f"{self.skipped} already done, {self.seconds:.1f} s")


_WORKER_CFG: PrepareConfig | None = None


def _init_worker(cfg: PrepareConfig, pool_worker: bool = False) -> None:
    global _WORKER_CFG
    _WORKER_CFG = cfg
    cv2.setNumThreads(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if pool_worker and sys.platform.startswith("linux"):
        # a worker dies with the main process (kill -9 included) instead of finishing its clip for nobody
        with contextlib.suppress(Exception):
            import ctypes
            import signal

            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if pool_worker and not os.environ.get("PDFGC_VERBOSE"):
        # mediapipe's native threads log to fd 2 at unpredictable times and would break the progress bar; a worker
        # reports every problem in its result instead (set PDFGC_VERBOSE=1 to see them)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)


def _work(raw: RawClip) -> ClipResult:
    from ..media.face import quiet_native_stderr

    with quiet_native_stderr():  # mediapipe's C++ log lines; problems go into the result
        return prepare_clip(raw, _WORKER_CFG)


def prepare_corpus(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, cfg: PrepareConfig | None = None,
                   workers: int = 1, shard: str | tuple[int, int] | None = None, exclude=(),
                   heldout: str | os.PathLike | None = None, frames_folders: bool = True, progress: bool = True,
                   shard_bytes: int = 512 << 20, shard_seconds: float = 120.0,
                   log: Callable[[str], None] | None = None) -> PrepareSummary:
    """Prepare every clip under ``raw_dir`` into ``out_dir`` (resumable; see the module docstring)."""
    t_start = time.perf_counter()
    cfg = cfg or PrepareConfig()
    log = log or (lambda m: print(f"pdfgc: {m}", file=sys.stderr))
    index, count = shard if isinstance(shard, tuple) else parse_shard(shard)
    if workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    raw_dir, out = Path(raw_dir), Path(out_dir)
    heldout_list = read_heldout(heldout if heldout is not None else DEFAULT_HELDOUT)
    clips = discover(raw_dir, exclude=tuple(exclude), frames_folders=frames_folders, skip=(out,))
    if not clips:
        raise InputError(f"no clips found under {raw_dir} (looked for video files "
                         f"{'and numbered frame folders' if frames_folders else ''}"
                         f"{'; --exclude ' + ' '.join(exclude) if exclude else ''})")
    _prepare_output(out)
    with _lock(out):
        _check_settings(out, cfg)
        state = _State(out)
        records = state.load()
        _cleanup(out, records, log)
        selected = select_shard(clips, index, count)
        todo = [c for c in selected if c.key not in records]
        skipped = len(selected) - len(todo)
        if skipped:
            log(f"resuming: {skipped} of {len(selected)} clips already prepared in {out}")
        processed = _run(todo, cfg, out, state, records, workers, progress, shard_bytes, shard_seconds)
        wanted = {c.key for c in clips}
        settings = {"processing": cfg.to_dict(), "raw_root": str(raw_dir.resolve()), "exclude": list(exclude),
                    "heldout": heldout_list, "frames_folders": frames_folders}
        manifest = _write_manifest(out, [records[k] for k in sorted(records) if k in wanted], heldout_list, settings)
    return PrepareSummary(out=out, manifest=manifest, discovered=len(clips), selected=len(selected),
                          processed=processed, skipped=skipped, seconds=time.perf_counter() - t_start)


def _run(todo: list[RawClip], cfg: PrepareConfig, out: Path, state: _State, records: dict, workers: int,
         progress: bool, shard_bytes: int, shard_seconds: float) -> int:
    from tqdm import tqdm

    writer: ShardWriter | None = None
    pending: list[ClipResult] = []
    pending_offsets: dict[str, dict] = {}
    done = 0

    def commit() -> None:
        nonlocal writer
        if writer is not None:
            writer.close()
            for res in pending:
                rec = _record(res, writer.name, pending_offsets)
                state.write(rec)
                records[res.raw_key] = rec
            pending.clear()
            pending_offsets.clear()
            writer = None

    def take(res: ClipResult) -> None:
        nonlocal writer
        if not res.segments:
            rec = _record(res, None, {})
            state.write(rec)
            records[res.raw_key] = rec
            return
        if writer is None:
            writer = ShardWriter(out, _next_shard_index(out))
        for seg in res.segments:
            pending_offsets[seg.key] = writer.add(seg)
        pending.append(res)
        if writer.size >= shard_bytes or time.monotonic() - writer.opened >= shard_seconds:
            commit()

    bar = tqdm(total=len(todo), unit="clip", desc="preparing", disable=not progress or not todo, file=sys.stderr,
               dynamic_ncols=True)
    frames = 0
    pool = None
    try:
        if workers == 1 or len(todo) <= 1:
            _init_worker(cfg)
            results = (_work(c) for c in todo)
        else:
            import multiprocessing as mp

            # spawn: mediapipe and PyAV are not fork-safe once initialised; every worker builds its own detectors
            pool = mp.get_context("spawn").Pool(min(workers, len(todo)), initializer=_init_worker, initargs=(cfg, True),
                                                maxtasksperchild=200)
            results = pool.imap_unordered(_work, todo, chunksize=1)
        for res in results:
            take(res)
            done += 1
            frames += sum(s.info["num_frames"] for s in res.segments)
            bar.set_postfix(frames=frames, refresh=False)
            bar.update(1)
        commit()
    except BaseException:
        # an interrupt (Ctrl-C) keeps the clips already in the open shard: the tar holds complete clips only
        if writer is not None:
            with contextlib.suppress(Exception):
                commit()
            if writer is not None:
                writer.abort()
        raise
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    return done


# ============================================================================================ merging


def merge_corpora(inputs: list[str | os.PathLike], out_dir: str | os.PathLike,
                  log: Callable[[str], None] | None = None) -> dict:
    """Join prepared folders (e.g. the ``--shard i/N`` parts) into ``out_dir``: shards are hard-linked (copied
    across file systems) and renumbered, records and manifests combined. The inputs are left as they are."""
    log = log or (lambda m: print(f"pdfgc: {m}", file=sys.stderr))
    if not inputs:
        raise InputError("--merge needs at least one prepared folder")
    out = Path(out_dir)
    ins = [Path(p) for p in inputs]
    manifests = [read_manifest(p) for p in ins]
    processing = manifests[0]["settings"].get("processing")
    for p, m in zip(ins[1:], manifests[1:]):
        if m["settings"].get("processing") != processing:
            raise InputError(f"cannot merge {p}: it was prepared with other settings than {ins[0]}")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"merge output folder {out} is not empty")
    _prepare_output(out)
    records: dict[str, dict] = {}
    index = 0
    with _lock(out):
        for p, m in zip(ins, manifests):
            renamed: dict[str, str] = {}
            for shard in sorted({c["shard"] for c in m["clips"]}):
                name = f"shard-{index:06d}.tar"
                index += 1
                with atomic_path(out / name) as tmp:
                    try:
                        os.link(p / shard, tmp)
                    except OSError:
                        shutil.copyfile(p / shard, tmp)
                renamed[shard] = name
            in_records = _State(p).load() if (p / STATE_DIR / RECORDS_DIR).is_dir() else {}
            by_raw: dict[str, dict] = {}
            for c in m["clips"]:
                raw_key = c["key"].rsplit("__", 1)[0]
                r = by_raw.setdefault(raw_key, {"raw_key": raw_key, "source": c["source"], "segments": [],
                                                "rejected": [], "frames_read": 0, "seconds": 0.0})
                seg = {k: v for k, v in c.items() if k != "split"}
                seg["shard"] = renamed[c["shard"]]
                r["segments"].append(seg)
            for raw_key, r in in_records.items():  # keep the rejections and timings of the source records
                tgt = by_raw.setdefault(raw_key, dict(r, segments=[]))
                tgt["rejected"], tgt["frames_read"], tgt["seconds"] = r["rejected"], r["frames_read"], r["seconds"]
            for raw_key, r in by_raw.items():
                if raw_key in records:
                    raise InputError(f"cannot merge: clip {r['source']} is in more than one input folder")
                records[raw_key] = r
        state = _State(out)
        for r in records.values():
            state.write(r)
        write_atomic(out / STATE_DIR / SETTINGS, _json_dump({"format_version": FORMAT_VERSION,
                                                              "processing": processing}), fsync=True)
        settings = dict(manifests[0]["settings"], merged_from=[str(p.resolve()) for p in ins])
        heldout = manifests[0]["settings"].get("heldout", [])
        manifest = _write_manifest(out, [records[k] for k in sorted(records)], heldout, settings)
    log(f"merged {len(ins)} folders into {out}: {manifest['totals']['clips']} clips, "
        f"{manifest['totals']['frames']} frames, {index} shards")
    return manifest
