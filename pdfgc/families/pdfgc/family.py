"""The PD-FGC networks as a model family: appearance encoder, FAN motion encoder with pose/eye/emotion/mouth heads,
SE-ResNet audio encoder and the modulated generator (model.py). The official checkpoints, converted weights
and models from `pdfgc train` load into it; its inference rules are the official ones (spec 1.5): code multipliers
(mouth 1.5, eye 1.2, emotion 1.2), a 3-tap Gaussian over the mouth code, a 3-tap box over the pose code, and the
fixed crop-zoom of every 224 crop. It trains progressively (`pdfgc train --config lite|official|tiny --stage ...`,
training/) and fits its explicit-control mappings (`pdfgc fit-controls`, controls/fit.py)."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import InputError
from ...media import preprocess as pp
from ...media.spectrogram import speech_windows_range
from ..base import Codes, ModelFamily, encode_clip_in_batches, register_family
from .configs import architecture_name
from .controls.apply import apply_controls, preflight_controls
from .controls.mapping import find_mapping, physical_pose_map, pose_code_is_physical
from .model import BLINK_DIMS, FORMAT_NAME, GAZE_DIMS
from .options import TRAINING, PDFGCOptions
from .training.stages import STAGES

AUDIO_CHUNK = 250  # output frames per spectrogram chunk: the windows of a long file are never all in memory


@dataclass
class PDFGCAppearance:
    """What the generator needs of one portrait (the appearance encoder's two outputs)."""

    vector: torch.Tensor     # (1, appearance) global appearance vector (the style's static part)
    identity: torch.Tensor   # (1, C, 7, 7) identity feature map (the generator's input)


def plan_styles(model, plan, sl: slice) -> torch.Tensor:
    """PD-FGC's style vectors (B, layout.dim) of a plan's frames `sl`: appearance vector + the four codes."""
    return model.assemble_style(plan.appearance.vector, plan.mouth[sl], plan.emotion[sl], plan.eye[sl],
                                plan.pose[sl])


def _steps(text: str, stage: str) -> list[int]:
    try:
        values = [int(x) for x in str(text).split(",")]
    except ValueError:
        raise InputError(f"--steps: expected a number or comma-separated numbers, got '{text}'") from None
    if stage == "all":
        if len(values) == 1:
            values = values * len(STAGES)
        if len(values) != len(STAGES):
            raise InputError(f"--steps for --stage all: one number or {len(STAGES)}, got {len(values)}")
    elif len(values) != 1:
        raise InputError("--steps: one number for a single stage")
    return values


@register_family
class PDFGCFamily(ModelFamily):
    name = "pdfgc"
    format = FORMAT_NAME
    options = PDFGCOptions
    blink_dims = BLINK_DIMS
    gaze_dims = GAZE_DIMS
    audio_context = 0   # frames of context each side `encode_audio` reads (speech chunks overlap by this much)
    fitted_controls = True     # its codes are learned: controls go through `pdfgc fit-controls`' mapping
    training = TRAINING

    # ---- weights, training, control fitting -----------------------------------------------------------------
    @classmethod
    def load(cls, path):
        from .model import PDFGC
        return PDFGC.from_pretrained(path)

    @classmethod
    def save(cls, model, path):
        return model.save_pretrained(path)

    @classmethod
    def train(cls, args) -> int:
        if args.steps is None:
            raise InputError("--steps is required (optimiser steps of the stage)")
        if args.stage is None:
            raise InputError("--stage is required for the PD-FGC networks (appearance, lips, pose_eye, emotion, all)")
        from .training.trainer import TrainConfig, Trainer, train_all

        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        if not torch.cuda.is_available():
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            torch.set_num_threads(args.threads or max(1, cores // local))
        steps = _steps(args.steps, args.stage)
        cfg = TrainConfig(stage=args.stage if args.stage != "all" else STAGES[0], data=args.data, out=args.out,
                          model=args.config, init=args.init, steps=steps[0], batch_size=args.batch_size,
                          grad_accum=args.grad_accum, lr=args.lr, precision=args.precision, vgg19=args.vgg19,
                          seed=args.seed, log_every=args.log_every, sample_every=args.sample_every,
                          checkpoint_every=args.checkpoint_every, name=args.name, overfit=args.overfit,
                          sync_bn=args.sync_bn, minutes=args.minutes)
        progress = not args.quiet and sys.stderr.isatty()
        if args.stage == "all":
            out = train_all(cfg, steps, resume=args.resume, progress=progress)
        else:
            out = Trainer(cfg, resume=args.resume, progress=progress).run()
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"pdfgc: model written to {out}")
        return 0

    @classmethod
    def fit_controls(cls, model, args) -> int:
        from .controls.fit import run
        return run(args, model)

    # ---- inference ------------------------------------------------------------------------------------------
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
        appearance = PDFGCAppearance(app_vec.float().cpu(), identity.float().cpu())
        return appearance, Codes(**{k: getattr(still, k).float().cpu() for k in ("mouth", "emotion", "eye", "pose")})

    def encode_frames(self, crops, want_mouth, prec) -> Codes:
        """Codes of driving crops (N,224,224,3) uint8 (after the official crop-zoom where the model wants it)."""
        with prec.autocast():
            c = self.model.motion(self.tensor(crops), mouth=want_mouth)
        return Codes(mouth=c.mouth.float().cpu() if c.mouth is not None else None, emotion=c.emotion.float().cpu(),
                     eye=c.eye.float().cpu(), pose=c.pose.float().cpu())

    def encode_clip(self, clip, used, want_mouth, prec, opt=None, progress=False) -> Codes:
        """The motion encoder on the used frames, in batches (absolute codes: the official transfer)."""
        bs = self.batch_size("motion", requested=getattr(opt, "batch_size", None))
        return encode_clip_in_batches(clip, used, lambda crops: self.encode_frames(crops, want_mouth, prec),
                                      self.code_dims, bs, progress)

    def encode_audio(self, windows, prec, batch=None) -> torch.Tensor:
        """Mouth codes (T, mouth) from official mel windows (T,1,80,20)."""
        bs = self.batch_size("audio", requested=batch)
        outs = []
        for s in range(0, windows.shape[0], bs):
            with prec.autocast():
                _, mouth = self.model.audio(torch.from_numpy(windows[s:s + bs]).to(self.device))
            outs.append(mouth.float().cpu())
        return torch.cat(outs) if outs else torch.zeros(0, self.model.layout.mouth)

    def encode_speech(self, speech, num_frames, prec, batch=None) -> torch.Tensor:
        """The audio encoder on the official mel windows, computed chunk by chunk (exactly the official windows)."""
        gain, c = speech.gain, int(self.audio_context)
        out = torch.empty(num_frames, self.code_dims["mouth"])  # filled chunk by chunk: no list + concatenation
        for s in range(0, num_frames, AUDIO_CHUNK):
            e = min(s + AUDIO_CHUNK, num_frames)
            a, b = max(0, s - c), min(num_frames, e + c)   # overlap: a network with temporal context sees its frames
            codes = self.encode_audio(speech_windows_range(speech.wav16k, a, b, gain), prec, batch)
            out[s:e] = codes[s - a:s - a + e - s]
        return out

    # ---- explicit controls: through the mapping fitted for these weights (controls/apply.py) --------------------
    def preflight_controls(self, opt) -> None:
        preflight_controls(self, opt)

    def control_mapping(self, path=None):
        """The fitted control mapping (`path`, else `<weights stem>.controls.json` beside the weights), None when
        there is none; refused if fitted for other weights."""
        return find_mapping(self.model, path)

    def apply_controls(self, opt, num_frames, codes: Codes, appearance, still: Codes, prec) -> Codes:
        mouth, eye, emotion, pose = apply_controls(self, opt, num_frames, codes.mouth, codes.eye, codes.emotion,
                                                   codes.pose, still=still, prec=prec)
        return Codes(mouth=mouth, emotion=emotion, eye=eye, pose=pose)

    # ---- frames -----------------------------------------------------------------------------------------------
    def styles(self, plan, sl: slice) -> torch.Tensor:
        return plan_styles(self.model, plan, sl)

    def render(self, plan, sl, prec, batch=None) -> torch.Tensor:
        identity = plan.appearance.identity
        style = self.styles(plan, sl).to(self.device)
        with prec.autocast():
            img = self.model.generator.render(style, identity.to(self.device).expand(style.shape[0], -1, -1, -1),
                                              static=self.model.layout.appearance)
        return self.model.to_crop_resolution(img.float())

    def appearance_panel(self, portrait) -> np.ndarray:
        return portrait.net_input

    def to_output_matrix(self, portrait, size: int) -> np.ndarray:
        return portrait.to_net
