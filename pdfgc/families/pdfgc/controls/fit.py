"""`pdfgc fit-controls`: read prepared frames with a model's motion encoder and fit its control mappings.

Per clip (resumable: each clip's codes and labels are cached as .npz in a folder beside the output, keyed by the
model's fingerprint and the sampling settings, and reused by a re-run; the cache is removed after a successful
fit unless --keep-cache): a uniform sample of the valid frames plus the clip's most closed-eye and most
closed-mouth frames (blinks and closed mouths are rare in a uniform sample), their codes, pose/eye/mouth labels
and emotion labels (the clip's own label when the corpus has one, else fer's classifier on each frame).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ....controls.explicit import normalise_emotion
from ....data.corpus import PreparedCorpus
from ....errors import InputError
from ....evaluation.emotion import EMOTIONS, EmotionClassifier, box_from_landmarks, crop_face
from ....fileio import atomic_path
from ....media import preprocess as pp
from ....runtime import resolve_device, set_threads
from .command import FER_MODES
from .mapping import (
    ControlMappings,
    ControlSamples,
    fit_mappings,
    mapping_path_for,
    model_fingerprint,
    physical_pose_map,
    pose_code_is_physical,
)

log = logging.getLogger("pdfgc")
CACHE_VERSION = 1
FER_MIN_CONFIDENCE = 0.5


def gaze_from_eye(eye: np.ndarray) -> np.ndarray:
    """Corpus eye labels (T,6) -> (T,2) gaze (h, v): the mean of both eyes' iris x (+ toward the image's right)
    and minus their iris y (the corpus's y points down; the controls' v points up)."""
    eye = np.asarray(eye, np.float64)
    return np.stack([eye[:, [2, 4]].mean(1), -eye[:, [3, 5]].mean(1)], 1)


def _select_frames(valid: np.ndarray, openness: np.ndarray, mouth: np.ndarray, per_clip: int,
                   extremes: int) -> np.ndarray:
    idx = np.flatnonzero(valid)
    if idx.size == 0:
        return idx
    uniform = idx[np.unique(np.linspace(0, idx.size - 1, min(per_clip, idx.size)).round().astype(int))]
    extra = []
    if extremes:
        o = openness[idx].mean(1)
        extra.append(idx[np.argsort(np.where(np.isfinite(o), o, np.inf))[:extremes]])
        m = mouth[idx]
        extra.append(idx[np.argsort(np.where(np.isfinite(m), m, np.inf))[:extremes]])
    return np.unique(np.concatenate([uniform] + extra))


def _encode(model, frames: np.ndarray, batch: int, device) -> dict[str, np.ndarray]:
    outs = {k: [] for k in ("pose", "eye", "emotion", "mouth")}
    with torch.inference_mode():
        for s in range(0, len(frames), batch):
            x = pp.preprocess(frames[s:s + batch], official_crop=model.config.official_crop).to(device)
            if hasattr(model, "network_input"):
                x = model.network_input(x)
            codes = model.motion(x.contiguous(memory_format=torch.channels_last), mouth=True)
            for k in outs:
                outs[k].append(getattr(codes, k).float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in outs.items()}


def _fer_labels(classifier, frames: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    crops = []
    for f, m in zip(frames, mesh):
        try:
            crops.append(crop_face(f, box_from_landmarks(m[:, :2])))
        except InputError:
            crops.append(np.zeros((64, 64), np.float32))
    probs = classifier.probabilities(np.stack(crops)) if crops else np.zeros((0, len(EMOTIONS)))
    best = probs.argmax(1) if len(probs) else np.zeros(0, int)
    return np.array([EMOTIONS[b] if probs[i, b] >= FER_MIN_CONFIDENCE else "" for i, b in enumerate(best)], "U32")


def collect_samples(model, corpus, frames_per_clip: int = 48, extremes: int = 6, batch_size: int = 16,
                    device="cpu", cache_dir: str | os.PathLike | None = None, fer: str = "auto",
                    progress: bool = True, max_clips: int | None = None) -> ControlSamples:
    """Codes and labels of sampled frames of every clip of `corpus` (a PreparedCorpus or anything with its
    interface: iteration over ClipInfo, load_arrays, load_frames). `fer`: auto (frames of unlabelled clips),
    always, never."""
    if fer not in FER_MODES:
        raise InputError(f"fer mode '{fer}' ({', '.join(FER_MODES)})")
    digest = model_fingerprint(model)
    cache = Path(cache_dir) if cache_dir is not None else None
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
    settings = f"v{CACHE_VERSION}|{digest}|{frames_per_clip}|{extremes}|{fer}"
    infos = list(corpus)[:max_clips] if max_clips else list(corpus)
    if not infos:
        raise InputError("the prepared corpus has no clips")
    state: dict = {}

    def get_classifier():
        if "fer" not in state:  # loaded only when a clip needs fer's labels
            state["fer"] = EmotionClassifier()
        return state["fer"]

    parts = []
    bar = None
    if progress:
        bar = tqdm(total=len(infos), unit="clip", desc="fit-controls: encoding", file=sys.stderr, dynamic_ncols=True)
    try:
        for ci, info in enumerate(infos):
            cfile = cache / f"{info.key}.npz" if cache is not None else None
            data = None
            if cfile is not None and cfile.is_file():
                try:
                    with np.load(cfile, allow_pickle=False) as z:
                        if str(z["settings"]) == settings:
                            data = {k: z[k] for k in z.files if k != "settings"}
                except (OSError, ValueError, KeyError):
                    data = None  # a corrupt cache entry is recomputed
            if data is None:
                data = _clip_samples(model, corpus, info, frames_per_clip, extremes, batch_size, device, fer,
                                     get_classifier) or {}
                if cfile is not None and data:
                    with atomic_path(cfile) as tmp:
                        np.savez(tmp, settings=np.array(settings), **data)
            if data and len(data.get("pose_code", [])):
                n = len(data["pose_code"])
                parts.append(ControlSamples(
                    pose_label=data["pose_label"], openness=data["openness"], gaze=data["gaze"],
                    mouth_opening=data["mouth_opening"], emotion_label=data["emotion_label"].astype("U32"),
                    pose_code=data["pose_code"], eye_code=data["eye_code"], emotion_code=data["emotion_code"],
                    mouth_code=data["mouth_code"], clip=np.full(n, ci),
                    heldout=np.full(n, info_split(info) == "heldout")))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if not parts:
        raise InputError("no usable frames in the prepared corpus (no clip has a valid face frame)")
    return ControlSamples.concat(parts)


def info_split(info) -> str:
    return getattr(info, "split", "train") or "train"


def _clip_samples(model, corpus, info, per_clip, extremes, batch, device, fer, get_classifier) -> dict | None:
    arr = corpus.load_arrays(info.key, names=("mesh.npy", "pose.npy", "eye.npy", "mouth.npy", "valid.npy"))
    valid = np.asarray(arr["valid.npy"], bool)
    eye = np.asarray(arr["eye.npy"], np.float64)
    pose = np.asarray(arr["pose.npy"], np.float64)
    mouth = np.asarray(arr["mouth.npy"], np.float64)
    ok = valid & np.isfinite(pose).all(1) & np.isfinite(eye).all(1)
    if not ok.any():
        return None
    ear_open = np.median(eye[ok, :2], axis=0)
    openness = eye[:, :2] / np.where(ear_open > 1e-6, ear_open, np.nan)
    sel = _select_frames(ok, openness, mouth, per_clip, extremes)
    label = getattr(info, "emotion", None)
    use_fer = fer == "always" or (fer == "auto" and not label)
    frames = corpus.load_frames(info.key, sel)
    codes = _encode(model, frames, batch, device)
    if use_fer:
        labels = _fer_labels(get_classifier(), frames, np.asarray(arr["mesh.npy"])[sel])
    else:
        labels = np.full(len(sel), normalise_emotion(label), "U32")
    return {"pose_label": pose[sel], "openness": openness[sel], "gaze": gaze_from_eye(eye[sel]),
            "mouth_opening": mouth[sel], "emotion_label": labels, "pose_code": codes["pose"],
            "eye_code": codes["eye"], "emotion_code": codes["emotion"], "mouth_code": codes["mouth"]}


def fit_controls(model, corpus, output: str | os.PathLike, weights_label: str = "", keep_cache: bool = False,
                 **kw) -> ControlMappings:
    """Collect samples from `corpus`, fit, save to `output` (atomically); returns the mapping."""
    output = Path(output)
    if not output.parent.is_dir():
        raise InputError(f"output {output}: folder {output.parent} does not exist")
    cache = output.with_name(output.name + ".cache")
    t0 = time.perf_counter()
    samples = collect_samples(model, corpus, cache_dir=cache, **kw)
    t1 = time.perf_counter()
    # gaze inputs are offsets from the data's typical (camera-facing) iris position
    centre = np.median(samples.gaze, axis=0)
    samples.gaze = samples.gaze - centre
    mapping = fit_mappings(samples, model_fingerprint(model), model.config.name,
                           pose_map=physical_pose_map(model.config) if pose_code_is_physical(model.config) else None,
                           info={"weights": weights_label, "data": str(getattr(corpus, "root", "")),
                                 "gaze_centre": [float(c) for c in centre],
                                 "encode_seconds": round(t1 - t0, 1),
                                 "frames_per_clip": kw.get("frames_per_clip", 48)})
    mapping.save(output)
    if not keep_cache and cache.is_dir():
        for f in cache.glob("*.npz"):
            f.unlink()
        try:
            cache.rmdir()
        except OSError:
            pass
    return mapping


# ---------------------------------------------------------------------------------------------- command line
def run(args: argparse.Namespace, model) -> int:
    """`pdfgc fit-controls` for a loaded PD-FGC model (the registry sends other families' models elsewhere:
    `ModelFamily.fit_controls`)."""
    set_threads(args.threads)
    device = resolve_device(args.device)
    weights = Path(args.official_checkpoints or args.weights)
    model = model.to(device).eval()
    out = Path(args.output) if args.output else mapping_path_for(weights)
    corpus = PreparedCorpus(args.data)
    mapping = fit_controls(model, corpus, out, weights_label=weights.name, keep_cache=args.keep_cache,
                           frames_per_clip=args.frames_per_clip, extremes=args.extremes, batch_size=args.batch_size,
                           device=device, fer=args.fer, progress=not args.quiet, max_clips=args.max_clips)
    print(format_summary(mapping))
    print(f"pdfgc: wrote {out}", file=sys.stderr)
    return 0


def format_summary(mapping: ControlMappings) -> str:
    """A short human-readable table of the recorded accuracies."""
    lines = [f"control mapping for {mapping.model_name} ({mapping.info.get('frames')} frames, "
             f"{mapping.info.get('clips')} clips, accuracy on: {mapping.info.get('split')})"]
    for name, m in (("pose", mapping.pose), ("blink", mapping.blink), ("gaze", mapping.gaze)):
        if m is None:
            lines.append(f"  {name}: not fitted")
            continue
        if m.source == "model":
            lines.append(f"  {name}: the model's code is in physical units (identity)")
            continue
        acc = m.accuracy
        parts = [f"{k} MAE {acc['mae'][k]:.3g} R2 {acc['r2'][k] if acc['r2'][k] is not None else float('nan'):.2f}"
                 for k in m.inputs if k in acc.get("mae", {}) and acc["mae"][k] is not None]
        lines.append(f"  {name}: " + "; ".join(parts) + f" (code R2 {acc.get('code_r2')})")
    ea = mapping.emotion_accuracy
    lines.append(f"  emotion: labels {', '.join(mapping.emotion_labels) or 'none'}; nearest-mean accuracy "
                 f"{ea.get('nearest_mean_accuracy')} (chance {ea.get('chance')})")
    lines.append(f"  mouth: closed code from {mapping.mouth_accuracy.get('frames')} frames")
    return "\n".join(lines)
