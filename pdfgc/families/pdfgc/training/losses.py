"""Training losses of PD-FGC, each with its formula, default weight and provenance.

Provenance tags: [paper] the CVPR 2023 paper / its overview figure; [recovered] the authors' 2021 trainer files
(spec section 4); [ours] a choice made here where nothing public says. Notation: x real image, x^ = G(style,
identity) the generated one, D_k^l the l-th feature of discriminator scale k (K = 2 scales, the last feature is the
patch logit map), m a soft mask in [0,1], f_v / f_a visual / audio mouth codes.

| loss | formula | weight | where |
|---|---|---|---|
| image L1 | mean|x^ - x| | `image_l1` 10 [ours: the stand-in for the missing VGG-face loss] | stages 1, 3, 4 |
| face-region L1 | sum(m_face |x^ - x|) / (3 sum m_face) | `face_l1` 10 [ours] | stages 1, 3, 4 |
| mouth-region L1 | same with m_mouth | `mouth_l1` 10 [recovered name `lambda_mouth`, value ours] | stage 2 |
| GAN (G) | -(1/K) sum_k mean(D_k(x^)) | `gan` 1 [recovered hinge, lambda_D 1] | stages 1, 3, 4 |
| GAN (D) | (1/K) sum_k [mean relu(1 - D_k(x)) + mean relu(1 + D_k(x^))] | 1 [recovered] | stages 1, 3, 4 |
| feature matching | (1/K) sum_k sum_l<last mean|D_k^l(x^) - D_k^l(x)| | `feature_matching` 10 [recovered] | 1, 3, 4 |
| VGG19 perceptual | sum_i w_i mean|phi_i(x^) - phi_i(x)|, w = 1/32..1 | `vgg` 5 [recovered], only with --vgg19 | 1, 3, 4 |
| motion invariance L_mot | mean (f_mot(aug(x_d)) - sg[f_mot(x_d)])^2 | `motion_invariance` 1 [ours: the figure names L_mot, the text reached does not define it] | 1 |
| lip InfoNCE | CE over logits l_ij = 1 / (||f^_v,i - f^_a,j|| tau), both directions, f^ = f/||f|| | `lip_contrastive` 100 [recovered; form recovered; tau = 1 ours] | 2, 4 |
| cross-modal | mean (f_a - sg[f_v])^2 | `cross_modal` 1 [recovered] | 2, 4 |
| eye InfoNCE | CE over cos(e_a,i, [e_1,j ; e_2,j]) / tau_e, target e_1,i | `eye_contrastive` 1, tau_e 0.1 [paper idea; form ours] | 3 |
| pose regression | mean |p - p*| (p* = yaw, pitch, roll in radians, tx, ty, scale) | `pose` 10 [paper: regression; targets and weight ours] | 3 |
| decorrelation | mean_ij C_ij^2, C = z(E)^T z(Y) / N over batch + memory bank, Y in {mouth, pose, eye} | `decorrelation` 10 [paper: L_decor; exact form ours] | 4 |

`sg` = stop-gradient; z(.) standardises each column over the N rows (batch + bank). Scalars are averaged over the
batch; the D loss is separate (its own optimiser).
"""  # noqa: E501 - the table rows cannot wrap
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def fp32(fn):
    """Run a loss in fp32 even inside an autocast region (matmuls and reductions over codes lose too much in
    bf16/fp16); tensor arguments are cast to float32."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        dev = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=dev, enabled=False):
            args = [a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args]
            return fn(*args, **kwargs)
    return wrapper


@dataclass
class LossWeights:
    image_l1: float = 10.0            # [ours]
    face_l1: float = 10.0             # [ours]
    mouth_l1: float = 10.0            # [recovered name, ours value]
    gan: float = 1.0                  # [recovered] lambda_D
    feature_matching: float = 10.0    # [recovered] lambda_feat
    vgg: float = 5.0                  # [recovered] lambda_vggface (only with a user VGG19 file)
    motion_invariance: float = 1.0    # [ours] stand-in for the figure's L_mot
    lip_contrastive: float = 100.0    # [recovered] lambda_contrastive
    cross_modal: float = 1.0          # [recovered] lambda_crossmodal
    eye_contrastive: float = 1.0      # [ours]
    pose: float = 10.0                # [ours]
    decorrelation: float = 10.0       # [ours]


# ---------------------------------------------------------------------------------------------- image losses

@fp32
def l1(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    return (fake.float() - real.float()).abs().mean()


@fp32
def masked_l1(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean absolute error inside a soft mask (B,1,H,W): sum(m |x^ - x|) / (C sum m)."""
    err = (fake.float() - real.float()).abs() * mask.float()
    return err.sum() / (mask.float().sum() * fake.shape[1] + eps)


# ---------------------------------------------------------------------------------------------- GAN losses
# D outputs: per scale, a list of features whose last entry is the patch logit map.

def hinge_d_loss(real_outs: list[list[torch.Tensor]], fake_outs: list[list[torch.Tensor]]) -> torch.Tensor:
    loss = 0.0
    for r, f in zip(real_outs, fake_outs):
        loss = loss + F.relu(1 - r[-1].float()).mean() + F.relu(1 + f[-1].float()).mean()
    return loss / len(real_outs)


def hinge_g_loss(fake_outs: list[list[torch.Tensor]]) -> torch.Tensor:
    return -sum(f[-1].float().mean() for f in fake_outs) / len(fake_outs)


def feature_matching_loss(fake_outs: list[list[torch.Tensor]], real_outs: list[list[torch.Tensor]]) -> torch.Tensor:
    loss = 0.0
    for f, r in zip(fake_outs, real_outs):
        for fl, rl in zip(f[:-1], r[:-1]):
            loss = loss + (fl.float() - rl.detach().float()).abs().mean()
    return loss / len(fake_outs)


# ---------------------------------------------------------------------------------------------- code losses

@fp32
def inverse_distance_logits(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0,
                            eps: float = 1e-8) -> torch.Tensor:
    """l_ij = 1 / (||a^_i - b^_j||_2 * tau) with L2-normalised rows (the authors' SoftmaxContrastiveLoss)."""
    a = F.normalize(a.float(), dim=1)
    b = F.normalize(b.float(), dim=1)
    d2 = (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)
    return 1.0 / (torch.sqrt(d2 + eps) * temperature)


@fp32
def lip_infonce(visual: torch.Tensor, audio: torch.Tensor, temperature: float = 1.0
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE between time-aligned visual and audio mouth codes (N,D): row i's positive is column i,
    every other row (other times of the same clip, other clips) is a negative. Returns (a2v, v2a)."""
    logits = inverse_distance_logits(visual, audio, temperature)  # [i, j] = visual i vs audio j
    target = torch.arange(logits.shape[0], device=logits.device)
    v2a = F.cross_entropy(logits, target)
    a2v = F.cross_entropy(logits.t(), target)
    return a2v, v2a


@fp32
def cross_modal_mse(visual: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
    """Pull the audio mouth code toward the (detached) visual one, so audio drives the generator like video."""
    return F.mse_loss(audio.float(), visual.detach().float())


@fp32
def eye_infonce(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor,
                temperature: float = 0.1) -> torch.Tensor:
    """Anchor i (frame v2 with v1's eyes pasted in) must match positive i (v1) against its own hard negative (v2)
    and every other sample's v1 and v2. Cosine similarity of the 6-d eye codes / temperature."""
    a = F.normalize(anchor.float(), dim=1)
    cands = F.normalize(torch.cat([positive, negative]).float(), dim=1)
    logits = a @ cands.t() / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device))


@fp32
def pose_regression(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred.float() - target.float()).abs().mean()


@fp32
def motion_invariance(feat_aug: torch.Tensor, feat_clean: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(feat_aug.float(), feat_clean.detach().float())


def _standardise(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    # sqrt(var + eps): a constant column (e.g. equal rows after bf16 rounding) gives zeros, not an infinite gradient
    x = x - x.mean(0, keepdim=True)
    return x / (x.pow(2).mean(0, keepdim=True) + eps).sqrt()


@fp32
def cross_correlation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean_ij C_ij^2 with C the Pearson cross-correlation matrix between the columns of x (N,dx) and y (N,dy)."""
    n = x.shape[0]
    c = _standardise(x.float()).t() @ _standardise(y.float()) / n
    return c.pow(2).mean()


class MemoryBank:
    """Queue of the last `size` code vectors (detached), so decorrelation sees more rows than one batch.

    Part of the training state (saved in checkpoints): a resumed run sees the same bank."""

    def __init__(self, dim: int, size: int):
        self.data = torch.zeros(size, dim)
        self.ptr = 0
        self.count = 0

    @property
    def size(self) -> int:
        return self.data.shape[0]

    def contents(self) -> torch.Tensor:
        return self.data[: self.count]

    @torch.no_grad()
    def push(self, x: torch.Tensor) -> None:
        x = x.detach().float().cpu()
        if x.shape[0] >= self.size:
            x = x[-self.size:]
        n = x.shape[0]
        end = self.ptr + n
        if end <= self.size:
            self.data[self.ptr:end] = x
        else:
            k = self.size - self.ptr
            self.data[self.ptr:] = x[:k]
            self.data[: n - k] = x[k:]
        self.ptr = end % self.size
        self.count = min(self.size, self.count + n)

    def state_dict(self) -> dict:
        return {"data": self.data.clone(), "ptr": torch.tensor(self.ptr), "count": torch.tensor(self.count)}

    def load_state_dict(self, sd: dict) -> None:
        if tuple(sd["data"].shape) != tuple(self.data.shape):
            raise ValueError(f"memory bank shape {tuple(sd['data'].shape)} != {tuple(self.data.shape)}")
        self.data = sd["data"].clone().float()
        self.ptr = int(sd["ptr"])
        self.count = int(sd["count"])
