"""Explicit controls applied to a plan's codes, after the source-based planning (`TalkingHeadPipeline.plan`).

Precedence: a control replaces (or, for a relative pose, adds to) its own part of the code and nothing else:
pose -> the pose code; blink -> the eye code's BLINK_DIMS; gaze -> the eye code's GAZE_DIMS; emotion -> the emotion
code; lips -> the mouth code. The other parts keep their sources (--pose/--eyes/--blink/--gaze/--emotion/--lips).
Codes made from physical values stand for what the motion encoder would read from a frame showing them, so they
get the same multipliers as source codes (--pose-intensity, --blink/--gaze/--emotion/--mouth-intensity, official
defaults); they are not smoothed (the control curves are smooth already).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from ....controls.explicit import POSE_CHANNELS, REFERENCE_MAX_FRAMES, controls_of
from ....media.driving import open_driving, source_kind
from ....runtime import Precision
from .mapping import find_mapping, physical_pose_map, pose_code_is_physical, require_mapping

log = logging.getLogger("pdfgc")


def preflight_controls(pipe, opt) -> None:
    """Parse the controls and, where they need one, find the mapping, before any work is done. `pipe`: the
    PD-FGC family adapter (pdfgc/families/pdfgc/family.py): `.model`, `.device`, `.tensor`, `.encode_clip`."""
    controls = controls_of(opt)
    if not controls:
        return
    needs = [k for k in ("blink", "gaze") if k in controls]
    if "pose" in controls and not pose_code_is_physical(pipe.model.config):
        needs.insert(0, "pose")
    if "emotion" in controls and controls["emotion"].needs_mapping:
        needs.append("emotion")
    if "emotion" in controls and controls["emotion"].reference is not None:
        source_kind(controls["emotion"].reference, "emotion reference")  # a missing clip fails early
    if "pose" in controls and controls["pose"].curve is not None:
        controls["pose"].curves(1)  # read the curve file now: a bad file fails early
    if needs:
        m = find_mapping(pipe.model, getattr(opt, "control_mapping", None))
        for k in needs:
            require_mapping(m, k, None if k == "emotion" else k)
        if "emotion" in controls and controls["emotion"].needs_mapping:
            m.emotion_code(controls["emotion"].weights())  # an unknown label fails here, naming the known ones
    elif getattr(opt, "control_mapping", None) is not None:
        find_mapping(pipe.model, opt.control_mapping)


def apply_controls(pipe, opt, num_frames: int, mouth: torch.Tensor, eye: torch.Tensor, emotion: torch.Tensor,
                   pose: torch.Tensor, portrait=None, still=None, prec=None):
    """Return (mouth, eye, emotion, pose) with the explicit controls of `opt` applied. `portrait` (a Portrait) and
    `still` (its MotionCodes, when the plan computed them) give the portrait's own mouth code when needed."""
    controls = controls_of(opt)
    if not controls:
        return mouth, eye, emotion, pose
    model = pipe.model
    cfg = model.config
    state: dict = {}

    def mapping():
        if "m" not in state:
            state["m"] = find_mapping(model, getattr(opt, "control_mapping", None))
        return state["m"]

    t = int(num_frames)
    if "pose" in controls:
        ctl = controls["pose"]
        curves = ctl.curves(t)
        if pose_code_is_physical(cfg):
            pm = physical_pose_map(cfg)
        else:
            pm = require_mapping(mapping(), "pose", "pose").pose
        k = float(opt.pose_intensity)
        base = pose.double().numpy() / k if k != 0 else pose.double().numpy()
        est = pm.inverse(base) if not ctl.relative else None
        delta = np.zeros((t, len(POSE_CHANNELS)))
        for j, ch in enumerate(POSE_CHANNELS):
            if ch in curves:
                delta[:, j] = curves[ch] if ctl.relative else curves[ch] - est[:, j]
        pose = pose + k * torch.from_numpy(delta @ pm.weight).to(pose.dtype)
    eye = eye.clone()
    if "blink" in controls:
        bm = require_mapping(mapping(), "blink", "blink").blink
        o = controls["blink"].openness_curve(t)
        code = bm(np.stack([o, o], 1))
        scale = cfg.eye_scale if opt.blink_intensity is None else opt.blink_intensity
        eye[:, list(bm.dims)] = scale * torch.from_numpy(code).to(eye.dtype)
    if "gaze" in controls:
        gm = require_mapping(mapping(), "gaze", "gaze").gaze
        code = gm(controls["gaze"].curves(t))
        scale = cfg.eye_scale if opt.gaze_intensity is None else opt.gaze_intensity
        eye[:, list(gm.dims)] = scale * torch.from_numpy(code).to(eye.dtype)
    if "emotion" in controls:
        ctl = controls["emotion"]
        scale = cfg.emotion_scale if opt.emotion_intensity is None else opt.emotion_intensity
        if ctl.reference is not None:
            ref = _reference_emotion(pipe, opt, ctl.reference, prec)
            m = mapping()
            neutral = m.emotion_neutral if m is not None and m.emotion_neutral is not None else np.zeros_like(ref)
            raw = neutral + ctl.intensity * (ref - neutral)
        else:
            raw = require_mapping(mapping(), "emotion").emotion_code(ctl.weights())
        emotion = (scale * torch.from_numpy(raw).to(emotion.dtype)).expand(t, -1).clone()
    if "lip" in controls:
        ctl = controls["lip"]
        m = mapping()
        if m is not None and m.mouth_closed is not None:
            closed = torch.from_numpy(m.mouth_closed).to(mouth.dtype)
        else:
            closed = _still_mouth(pipe, opt, portrait, still, prec).to(mouth.dtype)
            log.info("lip control: no fitted closed-mouth code; the portrait's own mouth is used as closed")
        closed = closed * (cfg.mouth_scale if opt.mouth_intensity is None else opt.mouth_intensity)
        if ctl.intensity != 1:
            mouth = closed + ctl.intensity * (mouth - closed)
        w = torch.from_numpy(ctl.mute_weights(t)).to(mouth.dtype)[:, None]
        mouth = (1 - w) * mouth + w * closed
    return mouth.contiguous(), eye.contiguous(), emotion.contiguous(), pose.contiguous()


def _still_mouth(pipe, opt, portrait, still, prec) -> torch.Tensor:
    """The portrait's own (raw) visual mouth code."""
    if still is not None and getattr(still, "mouth", None) is not None:
        return still.mouth.float().cpu()[0]
    if portrait is None:
        raise ValueError("the lip control needs the portrait (or a fitted closed-mouth code)")
    prec = prec or Precision(opt.precision, pipe.device)
    with torch.inference_mode(), prec.autocast():
        codes = pipe.model.motion(pipe.tensor(portrait.net_input), mouth=True)
    return codes.mouth.float().cpu()[0]


def _reference_emotion(pipe, opt, path: str, prec) -> np.ndarray:
    """The mean raw emotion code of a reference clip (video, frames folder or image)."""
    prec = prec or Precision(opt.precision, pipe.device)
    clip = open_driving(str(path), REFERENCE_MAX_FRAMES, opt.align, pipe.model.config.official_crop,
                        role="emotion reference", progress=False)
    n = min(clip.num_frames, REFERENCE_MAX_FRAMES)
    codes = pipe.encode_clip(clip, list(range(n)), False, prec, opt)
    return codes.emotion[:n].double().mean(0).numpy()
