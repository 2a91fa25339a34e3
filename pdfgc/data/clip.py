"""One raw clip -> prepared segments (the worker side of `pdfgc prepare`; steps 1-7 of ``pdfgc.data.prepare``)."""
from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from ..errors import InputError, PDFGCError
from ..evaluation.signals import mouth_opening
from ..media.alignment import SequenceAligner
from ..media.audio_io import is_silent, load_speech
from ..media.geometry import face_size, matrix_scale, three_points
from ..media.mesh import FaceMeshDetector
from ..media.pasteback import warp_to_crop
from ..media.spectrogram import mel_spectrogram, num_output_frames, rms_normalize
from ..media.video import iter_frames_folder, iter_video_frames, probe_video
from .config import PrepareConfig
from .corpus import CROP_SIZE, FPS, npy_bytes
from .discover import RawClip
from .labels import clip_stats, eye_labels, pose_labels
from .shots import content_change, find_shots, frame_signature, is_content_cut, shot_matrices, split_even


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


def _load_audio(raw: RawClip, has_track: bool, notes: list[str]) -> tuple[np.ndarray | None, str | None]:
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
    if raw.kind == "frames":
        return lambda: iter_frames_folder(raw.path, source=f"frames folder {raw.source}")
    return lambda: iter_video_frames(raw.path, fps=float(FPS), source=f"clip {raw.source}")


def _prepare(raw: RawClip, cfg: PrepareConfig, result: ClipResult) -> None:
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
                content_cuts.append(prev_sig is not None and is_content_cut(*content_change(prev_sig, sig), cfg))
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
                content_cuts.append(prev_sig is not None and is_content_cut(*content_change(prev_sig, sig), cfg))
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
        mouth = mouth_opening(mesh).astype(np.float32)
        for a, b in split_even(s, e, cfg.max_frames):
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
