"""The mesh-warp refiner: a small convolutional network that paints what the warp cannot.

Input (at the network's working resolution ``RES`` = 224, whatever the render size):

- the warped frame (3 channels, [-1, 1]) and the renderer's four aux masks (``AUX_KEYS``: mouth interior painted,
  eye white/iris painted, lids painted, stretch = unreliable pixels), pixel-unshuffled by 2 to 112x112x28;
- the portrait (the warp's source image) at half resolution, 112x112x3, [-1, 1] (colour and texture reference).

A three-level U-Net (112 -> 56 -> 28 and back, ``widths`` channels) predicts, pixel-shuffled back to 224, a residual
``delta`` (3) and a blend mask logit (1); the output is ``warp + sigmoid(mask) * delta``. The last layer starts at
zero with the mask at sigmoid(-2), so an untrained refiner returns the warp exactly (it can only start from the
right pixels). Codes are not an input: the aux masks already say where the mouth/eyes were painted and how far.

At render sizes above 224 (``RefinerRunner``) the warp and masks are area-downscaled to 224, the refiner runs
there, and only its masked residual is upscaled (bilinear) and added to the full-resolution warp: detail the
warp kept at full resolution stays.

Weights: one safetensors file, metadata ``format`` = ``FORMAT`` and ``config`` (json: widths); 48k parameters, 194 kB.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import CheckpointError

FORMAT = "pdfgc-meshwarp-refiner"
RES = 224
AUX_KEYS = ("mouth", "eyes", "lids", "stretch")
DEFAULT_WIDTHS = (16, 24, 32)
MASK_BIAS = -2.0
# Region gate (pixels at RES): how far past the aux masks the refiner may paint. The mouth
# interior is barely widened so the lips (what mediapipe reads the opening from) stay the warp's; the feather is a box
# blur, so the gate reaches 0 at dilate + feather px from a mask.
MOUTH_DILATE, EYE_DILATE, STRETCH_DILATE, FEATHER = 0, 3, 2, 2
LIP_GUARD = 12     # px around the mouth interior where stretch does not open the gate (the lips stay the warp's)
STRETCH_MIN = 0.5   # stretch aux below this (a mild <~1.7x stretch) the warp renders well: left alone


def _dilate(x: torch.Tensor, px: int) -> torch.Tensor:
    """Grey dilation by ``px`` pixels (a square), erosion when ``px`` < 0."""
    if px < 0:
        return -_dilate(-x, -px)
    if px == 0:
        return x
    k = 2 * px + 1   # separable (a row then a column pass): a 25x25 window in one pass took ~80 ms a frame
    return F.max_pool2d(F.max_pool2d(x, (1, k), 1, (0, px)), (k, 1), 1, (px, 0))


def region_mask(aux: torch.Tensor) -> torch.Tensor:
    """(B,4,H,W) aux masks (``AUX_KEYS``) -> (B,1,H,W) gate in [0,1]: 1 on the painted mouth interior, eyes and lids
    and on strongly stretched / uncovered pixels, dilated and feathered, 0 elsewhere. Skin, hair and background the
    warp renders well stay exactly the warp's (the unrestricted refiner blurred them where the meshes misalign)."""
    # radii in the network's working pixels (RES), whatever the size of the crop (training crops, RefinerRunner)
    mouth = _dilate(aux[:, 0:1], MOUTH_DILATE)
    eyes = _dilate(torch.maximum(aux[:, 1:2], aux[:, 2:3]), EYE_DILATE)
    stretch = _dilate(((aux[:, 3:4] - STRETCH_MIN) / (1.0 - STRETCH_MIN)).clamp_(0.0, 1.0), STRETCH_DILATE)
    if LIP_GUARD > 0:   # an opening mouth stretches the lips: painted over, mediapipe read the mouth less open
        stretch = stretch * (1.0 - _dilate(aux[:, 0:1], LIP_GUARD))
    g = torch.maximum(torch.maximum(mouth, eyes), stretch)
    if FEATHER > 0:
        g = F.avg_pool2d(g, 2 * FEATHER + 1, 1, FEATHER, count_include_pad=False)
    return g


def region_mask_np(aux: dict) -> np.ndarray:
    """``region_mask`` of one frame's aux dict at RES with OpenCV, (RES,RES) float32 (~0.3 ms against torch's ~10 on
    the CPU; the same but at the outer 2 px, where the box blur's border differs)."""
    sq = lambda px: cv2.getStructuringElement(cv2.MORPH_RECT, (2 * px + 1, 2 * px + 1))   # noqa: E731
    mouth = np.asarray(aux["mouth"], np.float32)
    eyes = np.maximum(np.asarray(aux["eyes"], np.float32), np.asarray(aux["lids"], np.float32))
    stretch = np.clip((np.asarray(aux["stretch"], np.float32) - STRETCH_MIN) / (1.0 - STRETCH_MIN), 0.0, 1.0)
    if MOUTH_DILATE:
        mouth = (cv2.dilate if MOUTH_DILATE > 0 else cv2.erode)(mouth, sq(abs(MOUTH_DILATE)))
    if EYE_DILATE:
        eyes = cv2.dilate(eyes, sq(EYE_DILATE))
    if STRETCH_DILATE:
        stretch = cv2.dilate(stretch, sq(STRETCH_DILATE))
    if LIP_GUARD > 0:
        stretch = stretch * (1.0 - cv2.dilate(np.asarray(aux["mouth"], np.float32), sq(LIP_GUARD)))
    g = np.maximum(np.maximum(mouth, eyes), stretch)
    if FEATHER > 0:
        g = cv2.blur(g, (2 * FEATHER + 1, 2 * FEATHER + 1), borderType=cv2.BORDER_REPLICATE)
    return g


def _conv(cin: int, cout: int, stride: int = 1, k: int = 3) -> nn.Module:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2), nn.LeakyReLU(0.1))


class Refiner(nn.Module):
    """warp (B,3,H,W) in [-1,1], aux (B,4,H,W) in [0,1], source (B,3,H/2,W/2) in [-1,1] -> refined (B,3,H,W),
    mask (B,1,H,W) in (0,1). H and W multiples of 8 (trained at 224 on crops of it)."""

    def __init__(self, widths=DEFAULT_WIDTHS, region: bool = True):
        super().__init__()
        c0, c1, c2 = (int(w) for w in widths)
        self.widths = (c0, c1, c2)
        self.region = bool(region)   # blend mask multiplied by region_mask(aux): paints only where the warp cannot
        self.inp = nn.Sequential(_conv(4 * (3 + len(AUX_KEYS)) + 3, c0, k=1), _conv(c0, c0))
        self.down1 = nn.Sequential(_conv(c0, c1, 2), _conv(c1, c1))
        self.down2 = nn.Sequential(_conv(c1, c2, 2), _conv(c2, c2), _conv(c2, c2))
        self.up2 = _conv(c2, c1, k=1)
        self.merge1 = _conv(c1, c1)
        self.up1 = _conv(c1, c0, k=1)
        self.merge0 = _conv(c0, c0)
        self.out = nn.Conv2d(c0, 4 * 4, 3, 1, 1)
        nn.init.zeros_(self.out.weight)
        with torch.no_grad():
            self.out.bias.zero_()
            self.out.bias[12:] = MASK_BIAS   # pixel_shuffle: channel c*4+k -> output channel c (3 = the mask)

    def forward(self, warp: torch.Tensor, aux: torch.Tensor, source: torch.Tensor, gate: torch.Tensor | None = None):
        """``gate``: the region mask when the caller has it already (RefinerRunner), else ``region_mask(aux)``."""
        x = F.pixel_unshuffle(torch.cat([warp, aux], 1), 2)
        e0 = self.inp(torch.cat([x, source], 1))
        e1 = self.down1(e0)
        e2 = self.down2(e1)
        d1 = self.merge1(e1 + self.up2(F.interpolate(e2, size=e1.shape[-2:], mode="bilinear", align_corners=False)))
        d0 = self.merge0(e0 + self.up1(F.interpolate(d1, size=e0.shape[-2:], mode="bilinear", align_corners=False)))
        y = F.pixel_shuffle(self.out(d0), 2)
        mask = torch.sigmoid(y[:, 3:4])
        if self.region:
            mask = mask * (region_mask(aux) if gate is None else gate)
        return warp + mask * y[:, :3], mask

    def config(self) -> dict:
        return {"widths": list(self.widths), "region": self.region}


# ---------------------------------------------------------------------------------------------- weights


def save_refiner(model: Refiner, path, info: dict | None = None) -> Path:
    from safetensors.torch import save_file

    from ...fileio import atomic_path

    path = Path(path)
    meta = {"format": FORMAT, "config": json.dumps(model.config()), "info": json.dumps(info or {})}
    state = {k: v.detach().float().contiguous().cpu() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def load_refiner(path, region: bool | None = None) -> Refiner:
    """A refiner from its safetensors file (CheckpointError naming it when it is not one). ``region``: gate its
    blend mask by ``region_mask`` (None: the file's config, True when the file does not say; files trained before
    the gate too)."""
    from ...tensorfile import read_tensors

    path = Path(path)
    state, meta = read_tensors(path, "refiner weights file", expect_format=FORMAT)
    cfg = json.loads(meta.get("config", "{}"))
    model = Refiner(cfg.get("widths", DEFAULT_WIDTHS), region=region if region is not None else cfg.get("region", True))
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: refiner tensors do not match the config ({str(e)[:200]})") from None
    model.info = json.loads(meta.get("info", "{}"))
    return model.eval().requires_grad_(False)


def refiner_path_for(params_path) -> Path:
    """``<params stem>_refiner.safetensors`` beside a params file."""
    p = Path(params_path)
    return p.with_name(p.stem + "_refiner.safetensors")


# ---------------------------------------------------------------------------------------------- inference


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """(H,W,3) uint8 -> (1,3,H,W) float in [-1,1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float().div_(127.5).sub_(1.0)


def aux_tensor(aux: dict) -> torch.Tensor:
    return torch.from_numpy(np.stack([np.asarray(aux[k], np.float32) for k in AUX_KEYS]))[None]


def source_half(image: np.ndarray) -> np.ndarray:
    """The portrait at the refiner's source resolution (RES/2), uint8."""
    half = RES // 2
    interp = cv2.INTER_AREA if image.shape[0] > half else cv2.INTER_LINEAR
    return cv2.resize(image, (half, half), interpolation=interp)


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last)


CROP_MARGIN = 56   # px at RES around the gated region the network sees: its receptive field (exact output)


def _gate_box(gate: np.ndarray, margin: int = CROP_MARGIN):
    """(x0, y0, x1, y1) at RES, multiples of 32 (the U-Net's grid is 8; an odd size at its 1/8 level ran ~20x slower
    on 2 threads), of a (RES,RES) gate's support plus ``margin``;
    None where the gate is empty (nothing for the refiner to paint)."""
    ys, xs = np.nonzero(gate > 0)
    if not len(ys):
        return None
    lo = lambda v: max(0, (int(v) - margin) // 32 * 32)               # noqa: E731
    hi = lambda v: min(RES, -(-(int(v) + 1 + margin) // 32) * 32)     # noqa: E731
    return lo(xs.min()), lo(ys.min()), hi(xs.max()), hi(ys.max())


class RefinerRunner:
    """A refiner bound to one portrait: ``apply(frame, aux)`` -> the refined uint8 frame at the frame's size.

    With the region gate (``Refiner.region``) a frame whose gate is empty (closed mouth, open eyes, nothing stretched)
    is returned as the warp without running the network, and otherwise the network runs on the gate's bounding box
    (plus ``CROP_MARGIN``) only: the output is the warp outside the gate anyway."""

    def __init__(self, model: Refiner, portrait: np.ndarray):
        self.model = model.to(memory_format=torch.channels_last)   # ~25 % faster convolutions on the CPU
        self.source = to_tensor(source_half(portrait)).contiguous(memory_format=torch.channels_last)

    @torch.inference_mode()
    def apply_batch(self, frames: np.ndarray, auxes: list[dict]) -> np.ndarray:
        """(B,S,S,3) uint8 warped frames + their aux dicts -> (B,S,S,3) uint8 refined."""
        frames = np.asarray(frames)
        s = frames.shape[1]
        if not getattr(self.model, "region", False):
            return self._run(frames, auxes, s)
        out = frames.copy()
        for i, (f, a) in enumerate(zip(frames, auxes)):
            small = f if s == RES else cv2.resize(f, (RES, RES), interpolation=cv2.INTER_AREA)
            aux = aux_tensor(a if s == RES else {k: cv2.resize(np.asarray(a[k], np.float32), (RES, RES),
                                                               interpolation=cv2.INTER_AREA) for k in AUX_KEYS})
            gate = region_mask_np(a if s == RES else {k: aux[0, j].numpy() for j, k in enumerate(AUX_KEYS)})
            box = _gate_box(gate)
            if box is None:
                continue
            x0, y0, x1, y1 = box
            warp = to_tensor(small[y0:y1, x0:x1])
            src = self.source[:, :, y0 // 2:y1 // 2, x0 // 2:x1 // 2]
            g = torch.from_numpy(np.ascontiguousarray(gate[y0:y1, x0:x1]))[None, None]
            y, _ = self.model(_nhwc(warp), _nhwc(aux[:, :, y0:y1, x0:x1]), _nhwc(src), _nhwc(g))
            if s == RES:
                y = y.add_(1.0).mul_(127.5).round_().clamp_(0, 255).byte()[0]
                out[i, y0:y1, x0:x1] = y.permute(1, 2, 0).numpy()
                continue
            resid = torch.zeros(1, 3, RES, RES)
            resid[:, :, y0:y1, x0:x1] = (y - warp).mul_(127.5)
            # only the rows/columns the upscaled crop reaches are touched (bilinear: one source pixel of overlap)
            k = s / RES
            X0, Y0 = max(0, int((x0 - 1) * k)), max(0, int((y0 - 1) * k))
            X1, Y1 = min(s, int(np.ceil((x1 + 1) * k))), min(s, int(np.ceil((y1 + 1) * k)))
            up = F.interpolate(resid, size=(s, s), mode="bilinear", align_corners=False)[0, :, Y0:Y1, X0:X1]
            full = torch.from_numpy(np.ascontiguousarray(f[Y0:Y1, X0:X1])).permute(2, 0, 1).float()
            out[i, Y0:Y1, X0:X1] = full.add_(up).round_().clamp_(0, 255).byte().permute(1, 2, 0).numpy()
        return out

    def _run(self, frames: np.ndarray, auxes: list[dict], s: int) -> np.ndarray:
        """The whole frame through the network (the ungated refiner)."""
        if s == RES:
            warp = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
            aux = torch.cat([aux_tensor(a) for a in auxes])
            out, _ = self.model(_nhwc(warp), _nhwc(aux), self._sources(len(frames)))
            return out.add_(1.0).mul_(127.5).round_().clamp_(0, 255).byte().permute(0, 2, 3, 1).numpy()
        small = np.stack([cv2.resize(f, (RES, RES), interpolation=cv2.INTER_AREA) for f in frames])
        small_aux = [{k: cv2.resize(np.asarray(a[k], np.float32), (RES, RES), interpolation=cv2.INTER_AREA)
                      for k in AUX_KEYS} for a in auxes]
        warp = torch.from_numpy(small).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        aux = torch.cat([aux_tensor(a) for a in small_aux])
        out, _ = self.model(_nhwc(warp), _nhwc(aux), self._sources(len(frames)))
        resid = F.interpolate((out - warp).mul_(127.5), size=(s, s), mode="bilinear", align_corners=False)
        full = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float()
        return full.add_(resid).round_().clamp_(0, 255).byte().permute(0, 2, 3, 1).numpy()

    def _sources(self, b: int) -> torch.Tensor:
        return self.source if b == 1 else _nhwc(self.source.expand(b, -1, -1, -1))

    def apply(self, frame: np.ndarray, aux: dict) -> np.ndarray:
        return self.apply_batch(frame[None], [aux])[0]
