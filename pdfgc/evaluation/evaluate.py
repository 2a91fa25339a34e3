"""`pdfgc evaluate`: how well a talking-head video follows its sources, factor by factor.

Every figure comes from models that ship their weights: mediapipe's face mesh (head pose by a rigid fit, eye aspect
ratio, iris position, mouth opening, landmark jitter), dlib's 128-d identity descriptor, and fer's mini-Xception
emotion classifier read into PyTorch. Landmarks are computed once per frame of each stream and cached.

Pose angles are compared raw (absolute) and with each series' own mean removed ("motion"), since the generated
head keeps the portrait's rest pose; eye aspect ratio levels differ between people, so blink is judged by
correlation and by blink events (precision/recall within +-3 frames).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..media.audio_io import load_speech
from ..media.images import load_image_rgb
from ..media.mesh_indices import LIPS_INNER, LIPS_OUTER
from . import signals as sg
from .audio_sync import speech_envelope
from .emotion import EMOTIONS, EmotionClassifier, box_from_landmarks
from .identity import IdentityEncoder, identity_distance
from .inputs import Stream, generated_streams, source_stream
from .landmarks import track_faces
from .quality import face_l1, face_mask, psnr, ssim

ANGLES = ("yaw", "pitch", "roll")


@dataclass
class EvalCase:
    """One generated video and the sources it was made from (any may be missing; panels fill them in)."""

    generated: str
    portrait: str | None = None
    audio: str | None = None          # default: the generated file's own audio track
    pose: str | None = None
    eyes: str | None = None
    emotion: str | None = None
    ground_truth: str | None = None   # self-reenactment: the real video the generation should reproduce
    layout: str = "auto"              # auto | result | panels (official five-panel strip)
    driving_mode: str = "loop"
    driving_skip: int = 2
    name: str | None = None


@dataclass
class EvalOptions:
    identity_every: int = 5           # dlib is ~60 ms a face: every 5th frame keeps evaluation near real time
    blink_tolerance: int = 3
    max_offset: int = 8
    cache_dir: str | None = None
    identity: bool = True
    emotion: bool = True


@dataclass
class EvalResult:
    metrics: dict
    series: dict = field(default_factory=dict)   # per-frame curves for plots


def _nanmean(x) -> float:
    """Mean over the values that are not NaN (inf kept: identical frames have infinite PSNR)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    return float(x.mean()) if x.size else float("nan")


def _cache_path(opts: EvalOptions, path: str, stream: str) -> Path | None:
    if not opts.cache_dir:
        return None
    p = Path(path)
    st = p.stat() if p.exists() else None
    key = f"{p.resolve()}|{stream}|{st.st_size if st else 0}|{st.st_mtime_ns if st else 0}"
    Path(opts.cache_dir).mkdir(parents=True, exist_ok=True)
    return Path(opts.cache_dir) / f"{stream}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"


def _track(stream: Stream, origin: str, opts: EvalOptions):
    return track_faces(iter(stream), source=f"{stream.name} ({origin})", cache=_cache_path(opts, origin, stream.name))


def _center(x: np.ndarray) -> np.ndarray:
    return x - np.nanmean(x, axis=0, keepdims=True)


def _mae(a, b) -> float:
    return _nanmean(np.abs(np.asarray(a, float) - np.asarray(b, float)))


def _boxes(track) -> list:
    return [box_from_landmarks(lm[:, :2]) if ok else None for lm, ok in zip(track.landmarks, track.found)]


def _emotion_probs(stream: Stream, track, clf) -> np.ndarray:
    out = np.full((track.num_frames, 7), np.nan)
    for i, (frame, box) in enumerate(zip(iter(stream), _boxes(track))):
        if box is not None:
            out[i] = clf.classify(frame, box)
    return out


def evaluate_case(case: EvalCase, opts: EvalOptions | None = None) -> EvalResult:
    opts = opts or EvalOptions()
    streams = generated_streams(case.generated, case.layout)
    gen = streams["generated"]
    n = gen.length
    origin = str(case.generated)

    def src(kind: str, path: str | None) -> tuple[Stream | None, str]:
        if path:
            return source_stream(path, kind, n, case.driving_mode, case.driving_skip), str(path)
        return streams.get(kind), origin

    pose_s, pose_o = src("pose", case.pose)
    eye_s, eye_o = src("eyes", case.eyes)
    emo_s, emo_o = src("emotion", case.emotion)

    m: dict = {"case": case.name or Path(case.generated).stem, "generated": str(case.generated), "frames": n,
               "layout": "panels" if "appearance" in streams else "result", "no_face_frames": {}}
    series: dict = {}
    g_track = _track(gen, origin, opts)
    m["no_face_frames"]["generated"] = int(g_track.missing)
    g_pose = sg.head_pose(g_track)
    g_ear = sg.eye_aspect_ratio(g_track).mean(axis=1)
    g_gaze = sg.gaze(g_track)
    g_mouth = sg.mouth_opening(g_track)
    series.update(gen_pose=g_pose, gen_ear=g_ear, gen_gaze=g_gaze, gen_mouth=g_mouth)
    m["temporal"] = {"landmark_jitter": sg.landmark_jitter(g_track)}

    # ---- head pose ----
    if pose_s is not None:
        p_track = _track(pose_s, pose_o, opts)
        m["no_face_frames"]["pose_source"] = int(p_track.missing)
        s_pose = pose_s.retime(sg.head_pose(p_track))
        series["src_pose"] = s_pose
        m["pose"] = {
            "mae_deg": {a: _mae(g_pose[:, i], s_pose[:, i]) for i, a in enumerate(ANGLES)},
            "motion_mae_deg": {a: _mae(_center(g_pose[:, i]), _center(s_pose[:, i])) for i, a in enumerate(ANGLES)},
            "pearson": {a: sg.pearson(g_pose[:, i], s_pose[:, i]) for i, a in enumerate(ANGLES)},
        }
        m["temporal"]["pose_source_jitter"] = sg.landmark_jitter(p_track)
    # ---- eyes: blink and gaze ----
    if eye_s is not None:
        e_track = _track(eye_s, eye_o, opts)
        m["no_face_frames"]["eye_source"] = int(e_track.missing)
        s_ear = eye_s.retime(sg.eye_aspect_ratio(e_track).mean(axis=1))
        s_gaze = eye_s.retime(sg.gaze(e_track))
        series.update(src_ear=s_ear, src_gaze=s_gaze)
        ev_g, ev_s = sg.blink_events(g_ear), sg.blink_events(s_ear)
        p, r, f1 = sg.match_events(ev_g, ev_s, tolerance=opts.blink_tolerance)
        m["blink"] = {"ear_pearson": sg.pearson(g_ear, s_ear), "events_generated": len(ev_g),
                      "events_source": len(ev_s), "precision": p, "recall": r, "f1": f1}
        m["gaze"] = {"mae": {c: _mae(g_gaze[:, i], s_gaze[:, i]) for i, c in enumerate("xy")},
                     "pearson": {c: sg.pearson(g_gaze[:, i], s_gaze[:, i]) for i, c in enumerate("xy")}}
    # ---- lips ----
    wav = _load_audio(case.audio or case.generated, required=case.audio is not None)
    if wav is not None:
        env = speech_envelope(wav, n)
        series["audio_envelope"] = env
        off, r_best = sg.best_offset(g_mouth, env, max_offset=opts.max_offset)
        m["lips"] = {"envelope_pearson": sg.pearson(g_mouth, env), "best_offset_frames": int(off),
                     "best_offset_pearson": r_best}
    # ---- ground truth: image quality and mouth landmarks ----
    if case.ground_truth:
        m.update(_ground_truth_metrics(case, gen, g_track, opts))
    # ---- identity ----
    if opts.identity:
        m["identity"] = _identity(case, streams, gen, g_track, opts)
    # ---- emotion ----
    if opts.emotion and emo_s is not None:
        clf = EmotionClassifier()
        g_prob = _emotion_probs(gen, g_track, clf)
        s_track = _track(emo_s, emo_o, opts)
        m["no_face_frames"]["emotion_source"] = int(s_track.missing)
        s_prob = emo_s.retime(_emotion_probs(emo_s, s_track, clf))
        ok = np.isfinite(g_prob).all(1) & np.isfinite(s_prob).all(1)
        agree = float(np.mean(g_prob[ok].argmax(1) == s_prob[ok].argmax(1))) if ok.any() else float("nan")
        m["emotion"] = {
            "class_agreement": agree,
            "prob_l1": _nanmean(np.abs(g_prob - s_prob).sum(1)),
            "generated_top": _top(g_prob, EMOTIONS),
            "source_top": _top(s_prob, EMOTIONS),
        }
        series.update(gen_emotion=g_prob, src_emotion=s_prob)
    return EvalResult(m, series)


def _top(prob: np.ndarray, labels) -> str | None:
    rows = prob[np.isfinite(prob).all(1)]
    return labels[int(rows.mean(0).argmax())] if len(rows) else None


def _load_audio(path, required: bool):
    try:
        return load_speech(path)
    except InputError:
        if required:
            raise
        return None


def _identity(case: EvalCase, streams, gen: Stream, g_track, opts: EvalOptions) -> dict:
    enc = IdentityEncoder()
    if case.portrait:
        portrait = load_image_rgb(case.portrait)
    elif "appearance" in streams:
        portrait = next(iter(streams["appearance"]))
    else:
        return {"skipped": "no portrait given"}
    ref = enc.describe(portrait)
    if ref is None:
        raise InputError(f"portrait {case.portrait or 'panel'}: no face found for the identity descriptor")
    dists = []
    for i, (frame, lm, ok) in enumerate(zip(iter(gen), g_track.landmarks, g_track.found)):
        if i % opts.identity_every or not ok:
            continue
        d = enc.describe(frame, box_from_landmarks(lm[:, :2]))
        if d is not None:
            dists.append(identity_distance(ref, d))
    d = np.asarray(dists)
    return {"mean_distance": float(d.mean()) if d.size else float("nan"),
            "worst_distance": float(d.max()) if d.size else float("nan"),
            "same_person_rate": float(np.mean(d < 0.6)) if d.size else float("nan"),
            "frames_measured": int(d.size), "every": opts.identity_every}


def _ground_truth_metrics(case: EvalCase, gen: Stream, g_track, opts: EvalOptions) -> dict:
    gt = source_stream(case.ground_truth, "ground_truth", gen.length, "strict", 0)
    t_track = _track(gt, str(case.ground_truth), opts)
    ps, ss, fl, scales = [], [], [], []
    for a, b, lm, ok in zip(iter(gen), gt, t_track.landmarks, t_track.found):
        scale = a.shape[1] / b.shape[1]  # ground truth may be larger than the generated frames
        scales.append(scale)
        if a.shape != b.shape:
            import cv2
            b = cv2.resize(b, (a.shape[1], a.shape[0]), interpolation=cv2.INTER_AREA)
        ps.append(psnr(a, b))
        ss.append(ssim(a, b))
        if ok:
            fl.append(face_l1(a, b, face_mask(lm[:, :2] * scale, a.shape[:2])))
    mouth_idx = list(LIPS_OUTER + LIPS_INNER)  # both lip contours (M-LMD)
    k = min(len(scales), g_track.num_frames)
    lg = g_track.landmarks[:k, mouth_idx, :2]
    lt = t_track.landmarks[:k, mouth_idx, :2] * np.asarray(scales[:k])[:, None, None]
    m_lmd = _nanmean(np.linalg.norm(lg - lt, axis=-1))
    return {"quality": {"psnr": _nanmean(ps), "ssim": _nanmean(ss), "face_l1": _nanmean(fl)},
            "lips_gt": {"m_lmd_px": m_lmd,
                        "mouth_opening_pearson": sg.pearson(sg.mouth_opening(g_track), sg.mouth_opening(t_track))},
            "no_face_frames_ground_truth": int(t_track.missing)}


def compare(a: EvalResult, b: EvalResult) -> dict:
    """Two generations that differ in one source: how far each factor moved (disentanglement)."""
    sa, sb = a.series, b.series
    n = min(len(sa["gen_pose"]), len(sb["gen_pose"]))
    out = {
        "pose_deg": {ang: _mae(sa["gen_pose"][:n, i], sb["gen_pose"][:n, i]) for i, ang in enumerate(ANGLES)},
        "ear": _mae(sa["gen_ear"][:n], sb["gen_ear"][:n]),
        "gaze": _mae(sa["gen_gaze"][:n], sb["gen_gaze"][:n]),
        "mouth_opening": _mae(sa["gen_mouth"][:n], sb["gen_mouth"][:n]),
    }
    # each movement relative to how much that signal varies over time in A: ~0 means untouched
    scale = {
        "pose_deg": np.nanstd(sa["gen_pose"][:n], axis=0),
        "ear": np.nanstd(sa["gen_ear"][:n]), "gaze": np.nanstd(sa["gen_gaze"][:n]),
        "mouth_opening": np.nanstd(sa["gen_mouth"][:n]),
    }
    rel = {"pose": _nanmean([out["pose_deg"][ang] / max(scale["pose_deg"][i], 1e-6) for i, ang in enumerate(ANGLES)]),
           "ear": out["ear"] / max(float(scale["ear"]), 1e-6), "gaze": out["gaze"] / max(float(scale["gaze"]), 1e-6),
           "mouth_opening": out["mouth_opening"] / max(float(scale["mouth_opening"]), 1e-6)}
    if "gen_emotion" in sa and "gen_emotion" in sb:
        out["emotion_prob_l1"] = _nanmean(np.abs(sa["gen_emotion"][:n] - sb["gen_emotion"][:n]).sum(1))
    return {"movement": out, "movement_relative_to_own_variation": rel, "frames": n}
