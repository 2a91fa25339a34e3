"""The PD-FGC networks as a model family: appearance encoder, FAN motion encoder with pose/eye/emotion/mouth heads,
SE-ResNet audio encoder and the modulated generator (pdfgc/model.py). The official checkpoints, converted weights
and models from `pdfgc train` load into it; its inference rules are the official ones (spec 1.5): code multipliers
(mouth 1.5, eye 1.2, emotion 1.2), a 3-tap Gaussian over the mouth code, a 3-tap box over the pose code, and the
fixed crop-zoom of every 224 crop."""
from __future__ import annotations

import numpy as np
import torch

from ...media import preprocess as pp
from ..base import Codes, ModelFamily, register_family
from .configs import architecture_name
from .controls.apply import apply_controls, preflight_controls
from .controls.mapping import physical_pose_map, pose_code_is_physical
from .model import BLINK_DIMS, GAZE_DIMS
from .options import PDFGCOptions


@register_family
class PDFGCFamily(ModelFamily):
    name = "pdfgc"
    options = PDFGCOptions
    blink_dims = BLINK_DIMS
    gaze_dims = GAZE_DIMS

    def __init__(self, model, device):
        super().__init__(model, device)
        self.official_crop = bool(model.config.official_crop)
        # --pose auto: only a `pdfgc train` model whose pose code is the physical pose (the official one is learned)
        self.generates_pose = pose_code_is_physical(model.config)

    def auto_pose(self, speech, num_frames, seed, still) -> torch.Tensor:
        from ..meshwarp.motion import MotionModel, speech_loudness
        pose_map = physical_pose_map(self.model.config)
        angles = MotionModel.load().head_angles(speech_loudness(speech, num_frames), seed)
        pose = still.pose.float().cpu().expand(int(num_frames), -1).clone()
        # a linear map: changes of yaw, pitch, roll go through its weight alone (degrees -> the code's units)
        pose[:, list(pose_map.dims)] += torch.from_numpy(angles @ pose_map.weight[:3]).float()
        return pose

    @property
    def code_dims(self) -> dict[str, int]:
        lay = self.model.layout
        return {"mouth": lay.mouth, "emotion": lay.emotion, "eye": lay.eye, "pose": lay.pose}

    def intensity(self, factor: str) -> float:
        cfg = self.model.config
        return {"mouth": cfg.mouth_scale, "blink": cfg.eye_scale, "gaze": cfg.eye_scale,
                "emotion": cfg.emotion_scale}.get(factor, 1.0)

    def info(self) -> dict:
        n = {name: sum(p.numel() for p in getattr(self.model, name).parameters()) for name in
             ("appearance", "motion", "audio", "generator")}
        # architecture: which named configuration (official | lite | tiny | custom) the networks are
        return {"family": self.name, "architecture": architecture_name(self.model.config), **super().info(),
                "parameters": n}

    def tensor(self, images_uint8: np.ndarray) -> torch.Tensor:
        # channels-last: oneDNN's fastest layout for the encoders' convolutions (same values); a lite model's
        # encoders take the 224 crop at their own resolution
        x = self.model.network_input(pp.to_tensor(images_uint8).to(self.device))
        return x.contiguous(memory_format=torch.channels_last)

    def batch_size(self, kind: str, precision: str = "exact", requested: int | None = None) -> int:
        if requested:
            return int(requested)
        if self.device.type == "cuda":
            return 16
        if kind == "generator":
            # CPU: batch 1 is cheapest in fp32; in bf16 a batch of 8 shares the small layers (Generator.render
            # runs the 56 px and larger layers per frame either way), ~3 % faster
            return 8 if precision == "fast" else 1
        return {"motion": 8, "audio": 32}[kind]

    # ---- encoders ---------------------------------------------------------------------------------------------
    def encode_portrait(self, portrait, prec, opt=None):
        with prec.autocast():
            app_vec, identity = self.model.appearance(self.tensor(portrait.net_input))
            still = self.model.motion(self.tensor(portrait.net_input), mouth=True)
        appearance = (app_vec.float().cpu(), identity.float().cpu())
        return appearance, Codes(**{k: getattr(still, k).float().cpu() for k in ("mouth", "emotion", "eye", "pose")})

    def encode_frames(self, crops, want_mouth, prec) -> Codes:
        with prec.autocast():
            c = self.model.motion(self.tensor(crops), mouth=want_mouth)
        return Codes(mouth=c.mouth.float().cpu() if c.mouth is not None else None, emotion=c.emotion.float().cpu(),
                     eye=c.eye.float().cpu(), pose=c.pose.float().cpu())

    def encode_audio(self, windows, prec, batch=None) -> torch.Tensor:
        bs = self.batch_size("audio", requested=batch)
        outs = []
        for s in range(0, windows.shape[0], bs):
            with prec.autocast():
                _, mouth = self.model.audio(torch.from_numpy(windows[s:s + bs]).to(self.device))
            outs.append(mouth.float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, self.model.layout.mouth)

    # ---- explicit controls: through the mapping fitted for these weights (pdfgc/controls/apply.py) ----------------
    def preflight_controls(self, opt) -> None:
        preflight_controls(self, opt)

    def apply_controls(self, opt, num_frames, codes: Codes, portrait, still: Codes, prec) -> Codes:
        mouth, eye, emotion, pose = apply_controls(self, opt, num_frames, codes.mouth, codes.eye, codes.emotion,
                                                   codes.pose, portrait=portrait, still=still, prec=prec)
        return Codes(mouth=mouth, emotion=emotion, eye=eye, pose=pose)

    # ---- frames -----------------------------------------------------------------------------------------------
    def render(self, plan, sl, prec, batch=None) -> torch.Tensor:
        identity = plan.identity
        style = plan.styles(self.model, sl).to(self.device)
        with prec.autocast():
            img = self.model.generator.render(style, identity.to(self.device).expand(style.shape[0], -1, -1, -1),
                                              static=self.model.layout.appearance)
        return self.model.to_crop_resolution(img.float())

    def appearance_panel(self, portrait) -> np.ndarray:
        return portrait.net_input

    def to_output_matrix(self, portrait, size: int) -> np.ndarray:
        return portrait.to_net
