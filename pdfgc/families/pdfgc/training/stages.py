"""The four progressive training stages: which networks learn, what the generator is fed, which losses apply.

Style fed to the generator, per stage (layout `[appearance | mouth | emotion | eye | pose]`):
1. `appearance` [ours, in place of the authors' early 2560-d `[appearance | unified 512]` style]:
   `[E_app(I_s) | E_lip(f) | 0 | E_eye(f) | E_pose(f)]` with f = E_mot(aug(I_d)) and every head trained.
   The released model splits the same 512-d motion feature into these heads, and our generator's style width is
   fixed by the layout, so training the heads from the start gives the generator the final style layout at once
   (no re-wiring of its modulation weights later); the emotion slot stays zero until stage 4.
2. `lips`: FAN backbone frozen; the visual mouth head and the audio encoder learn by the symmetric lip InfoNCE and
   the cross-modal MSE, and the audio code also has to rebuild the mouth region through the (frozen) generator:
   `[E_app(I_s) | E_aud(mel_t) | 0 | E_eye | E_pose]` (eye and pose heads frozen).
3. `pose_eye`: pose head regressed to the pose labels, eye head by eye-swap InfoNCE; the generator (and D) learn
   to render the split style `[E_app | mouth | 0 | sg(E_eye) | sg(E_pose)]` (mouth = E_aud(mel) when the clip has
   audio, else the frozen visual mouth head). The codes are detached there so only their own losses shape them.
4. `emotion`: `f_exp = mean over K frames of E_exp(f_mot)`; style `[E_app | E_aud | f_exp | E_eye | E_pose]`
   with E_app, E_mot backbone, E_eye, E_pose frozen; trained: emotion head, audio encoder, generator (+ D).

Frozen sub-networks are kept in eval mode (their BatchNorm statistics do not move).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..options import STAGES
from . import losses as L

TRAINABLE = {
    "appearance": ("appearance", "motion.model", "motion.to_mouth", "motion.mouth_embed", "motion.to_eye",
                   "motion.eye_embed", "motion.to_headpose", "motion.headpose_embed", "generator"),
    "lips": ("motion.to_mouth", "motion.mouth_embed", "audio"),
    "pose_eye": ("motion.to_headpose", "motion.headpose_embed", "motion.to_eye", "motion.eye_embed", "generator"),
    "emotion": ("motion.to_emo", "motion.emo_embed", "audio", "generator"),
}
USES_GAN = {"appearance": True, "lips": False, "pose_eye": True, "emotion": True}

# pose code units of a model trained here: the 6-d pose code is directly readable / settable
POSE_CODE_UNITS = ("yaw, pitch, roll in radians; tx, ty, scale as prepared (translation from the crop centre and "
                   "face scale, in crop widths; pdfgc.data.prepare)")


def pose_labels_to_code(pose: torch.Tensor) -> torch.Tensor:
    """Prepared pose labels (…,6) [yaw, pitch, roll in degrees, tx, ty, scale] -> the pose-code target
    (angles in radians, the rest unchanged)."""
    out = pose.clone().float()
    out[..., :3] = out[..., :3] * (math.pi / 180.0)
    return out


@torch.no_grad()
def motion_feature_spread(model: nn.Module, frames: torch.Tensor) -> float:
    """Mean over channels of the batch std of the unified motion feature with the backbone in eval mode (running
    BatchNorm statistics, as at inference). Near 0 means the encoder collapsed: its signal only survives batch
    statistics, so inference and the frozen later stages would see one constant motion code for every frame."""
    backbone = model.motion.model
    was_training = backbone.training
    backbone.eval()
    try:
        feat = model.motion.unified_feature(frames.float())
    finally:
        backbone.train(was_training)
    return float(feat.float().std(0).mean()) if feat.shape[0] > 1 else float("nan")


# below this eval-mode spread the motion feature is treated as collapsed (healthy runs here: ~1e-2 and up)
COLLAPSE_SPREAD = 1e-4


def _module(model: nn.Module, dotted: str) -> nn.Module:
    m = model
    for part in dotted.split("."):
        m = getattr(m, part)
    return m


def set_trainable(model: nn.Module, stage: str) -> list[nn.Parameter]:
    """requires_grad on the stage's sub-networks only; returns their parameters."""
    model.requires_grad_(False)
    params = []
    for name in TRAINABLE[stage]:
        m = _module(model, name)
        m.requires_grad_(True)
        params += list(m.parameters())
    return params


def set_train_mode(model: nn.Module, stage: str) -> None:
    """Train mode for the stage's sub-networks, eval mode (fixed BatchNorm statistics) for the rest."""
    model.eval()
    for name in TRAINABLE[stage]:
        _module(model, name).train()


class StageNet(nn.Module):
    """Wraps a PDFGC model; `forward(batch)` runs one stage's generator-side computation and returns the fake
    image, its target and the weighted non-adversarial losses (the adversarial ones need D: see the trainer).
    This is the module handed to `accelerate` (DDP wraps it on several processes)."""

    def __init__(self, model: nn.Module, stage: str, weights: L.LossWeights, lip_temperature: float = 1.0,
                 eye_temperature: float = 0.1):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.model = model
        self.stage = stage
        self.w = weights
        self.lip_temperature = lip_temperature
        self.eye_temperature = eye_temperature

    def forward(self, batch: dict[str, torch.Tensor]) -> dict:
        return getattr(self, f"_{self.stage}")(batch)

    # ---- helpers
    def _zeros_emotion(self, ref: torch.Tensor) -> torch.Tensor:
        return ref.new_zeros(ref.shape[0], self.model.layout.emotion)

    def _style(self, app, mouth, emotion, eye, pose) -> torch.Tensor:
        return self.model.assemble_style(app, mouth, emotion, eye, pose)

    def _recon_losses(self, fake, real, face_mask) -> dict[str, torch.Tensor]:
        return {"image_l1": self.w.image_l1 * L.l1(fake, real),
                "face_l1": self.w.face_l1 * L.masked_l1(fake, real, face_mask)}

    # ---- stage 1
    def _appearance(self, b):
        m = self.model
        app, ident = m.appearance(b["source"])
        feat = m.motion.unified_feature(b["driving_aug"])
        codes = m.motion.codes_from_feature(feat, mouth=True)
        style = self._style(app, codes.mouth, self._zeros_emotion(app), codes.eye, codes.pose)
        fake = m.generator(style, ident)
        losses = self._recon_losses(fake, b["driving"], b["face_mask"])
        if self.w.motion_invariance:
            with torch.no_grad():
                clean = m.motion.unified_feature(b["driving"])
            losses["motion_invariance"] = self.w.motion_invariance * L.motion_invariance(feat, clean)
        return {"fake": fake, "real": b["driving"], "source": b["source"], "driving": b["driving_aug"],
                "losses": losses}

    # ---- stage 2
    def _lips(self, b):
        m = self.model
        frames, groups = b["frames"], b["source"].shape[0]
        n = frames.shape[0] // groups
        with torch.no_grad():
            feat = m.motion.unified_feature(frames)
            first = feat[::n]
            eye = m.motion.eye_embed(m.motion.to_eye(first))
            pose = m.motion.headpose_embed(m.motion.to_headpose(first))
            app, ident = m.appearance(b["source"])
        visual = m.motion.mouth_embed(m.motion.to_mouth(feat))
        _, audio = m.audio(b["mel"])
        a2v, v2a = L.lip_infonce(visual, audio, self.lip_temperature)
        losses = {"lip_a2v": self.w.lip_contrastive * a2v, "lip_v2a": self.w.lip_contrastive * v2a,
                  "cross_modal": self.w.cross_modal * L.cross_modal_mse(visual, audio)}
        style = self._style(app, audio[::n], self._zeros_emotion(app), eye, pose)
        fake = m.generator(style, ident)
        real = frames[::n]
        losses["mouth_l1"] = self.w.mouth_l1 * L.masked_l1(fake, real, b["mouth_mask"])
        with torch.no_grad():  # diagnostic: how often the matching audio window is the nearest one
            logits = L.inverse_distance_logits(visual, audio, self.lip_temperature)
            acc = (logits.argmax(1) == torch.arange(logits.shape[0], device=logits.device)).float().mean()
        return {"fake": fake, "real": real, "source": b["source"], "driving": real, "losses": losses,
                "metrics": {"lip_top1": acc}}

    # ---- stage 3
    def _pose_eye(self, b):
        m = self.model
        bsz = b["source"].shape[0]
        with torch.no_grad():
            feat = m.motion.unified_feature(torch.cat([b["v1"], b["v2"], b["anchor"]]))
            app, ident = m.appearance(b["source"])
            visual_mouth = m.motion.mouth_embed(m.motion.to_mouth(feat[bsz:2 * bsz]))
            _, audio_mouth = m.audio(b["mel"])
            mouth = torch.where(b["has_audio"][:, None], audio_mouth, visual_mouth)
        pose = m.motion.headpose_embed(m.motion.to_headpose(feat))
        eye = m.motion.eye_embed(m.motion.to_eye(feat))
        e1, e2, ea = eye[:bsz], eye[bsz:2 * bsz], eye[2 * bsz:]
        target = torch.cat([b["pose_v1"], b["pose_v2"]])
        losses = {"pose": self.w.pose * L.pose_regression(pose[:2 * bsz], target),
                  "eye_contrastive": self.w.eye_contrastive * L.eye_infonce(ea, e1, e2, self.eye_temperature)}
        style = self._style(app, mouth, self._zeros_emotion(app), e2.detach(), pose[bsz:2 * bsz].detach())
        fake = m.generator(style, ident)
        losses.update(self._recon_losses(fake, b["v2"], b["face_mask"]))
        with torch.no_grad():
            err = (pose[:2 * bsz, :3].float() - target[:, :3].float()).abs().mean() * (180.0 / math.pi)
        return {"fake": fake, "real": b["v2"], "source": b["source"], "driving": b["anchor"], "losses": losses,
                "metrics": {"pose_deg_err": err}}

    # ---- stage 4
    def _emotion(self, b):
        m = self.model
        bsz = b["source"].shape[0]
        k = b["window"].shape[0] // bsz
        with torch.no_grad():
            feat = m.motion.unified_feature(b["window"])
            centre = feat.view(bsz, k, -1)[:, k // 2]
            eye = m.motion.eye_embed(m.motion.to_eye(centre))
            pose = m.motion.headpose_embed(m.motion.to_headpose(centre))
            visual = m.motion.mouth_embed(m.motion.to_mouth(centre))
            app, ident = m.appearance(b["source"])
        emotion = m.motion.emo_embed(m.motion.to_emo(feat)).view(bsz, k, -1).mean(1)
        _, audio = m.audio(b["mel"])
        has = b["has_audio"]
        mouth = torch.where(has[:, None], audio, visual)
        style = self._style(app, mouth, emotion, eye, pose)
        fake = m.generator(style, ident)
        real = b["window"].view(bsz, k, *b["window"].shape[1:])[:, k // 2]
        losses = self._recon_losses(fake, real, b["face_mask"])
        # lip contrastive keeps the (still training) audio code in sync: over the samples that have audio
        idx = torch.nonzero(has).flatten()
        zero = fake.new_zeros(())
        if idx.numel() >= 2:
            a2v, v2a = L.lip_infonce(visual[idx], audio[idx], self.lip_temperature)
            losses["lip_contrastive"] = self.w.lip_contrastive * (a2v + v2a)
            losses["cross_modal"] = self.w.cross_modal * L.cross_modal_mse(visual[idx], audio[idx])
        else:  # same keys every step (logs, DDP): zero terms that still touch the audio net
            losses["lip_contrastive"] = zero + 0.0 * audio.sum()
            losses["cross_modal"] = zero + 0.0 * audio.sum()
        decor = zero
        for other, bank in ((mouth.detach(), "mouth"), (pose, "pose"), (eye, "eye")):
            rows_code, rows_other = b.get("bank_emotion"), b.get(f"bank_{bank}")
            x, y = emotion, other
            if rows_code is not None and rows_code.shape[0]:
                x = torch.cat([x, rows_code.to(x.dtype)])
                y = torch.cat([y, rows_other.to(y.dtype)])
            decor = decor + L.cross_correlation(x, y.detach())
        losses["decorrelation"] = self.w.decorrelation * decor
        return {"fake": fake, "real": real, "source": b["source"], "driving": real, "losses": losses,
                "bank_push": {"emotion": emotion.detach(), "mouth": mouth.detach(), "pose": pose.detach(),
                              "eye": eye.detach()}}
