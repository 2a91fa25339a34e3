"""Training the mesh-warp refiner (``refiner.py``) by self-reenactment, from scratch, on the CPU.

One command builds the pair cache (once) and trains, resumable after kill -9::

    python -m pdfgc.families.meshwarp.refine_train --data ../prepared_corpus --out runs/refiner
    # the same through the CLI: pdfgc train --config meshwarp --stage refiner --data ../prepared_corpus \
    #     --out runs/refiner --steps 8000

1. **Pairs** (``build_cache``): in each clip of a prepared corpus, source frames s and target frames t of the same
   clip; the source is warped to the target by their measured meshes (``WarpRenderer(s_img, s_mesh).render(t_mesh,
   return_aux=True)``). Per training clip ``SOURCES`` sources (evenly spaced) x ``TARGETS`` targets (half drawn at
   random, the rest the clip's widest mouth openings, lowest eye openings and largest pose changes: what the warp
   cannot paint). Held-out people (``heldout_identities.txt``, by manifest.csv's identity_guess, and the corpus's
   own ``heldout`` split) are never trained on: their clips give the held-out pairs (one neutral source per clip:
   mouth closed, eyes open). Stored once as uint8 memmaps under ``--cache`` (warp, target, source at 112, the four
   aux masks, target mouth/eye boxes); the warp costs ~5-10 ms a frame, a training step reads ~8 crops.
2. **Batches**: ``CROP`` px crops of the 224 frames (40 % centred on the mouth, 20 % on an eye, 40 % anywhere,
   jittered), flipped left-right half the time. Step k's batch comes from ``default_rng([seed, k])`` alone, so a
   resumed run sees exactly the batches an uninterrupted one would.
3. **Losses** (``losses``; images in [-1, 1]):

   - ``l1``, weight 1: L1 over the crop, each pixel weighted by ``1 + MOUTH_WEIGHT`` inside the target's mouth box
     and ``1 + EYE_WEIGHT`` inside an eye box (normalised by the mean weight): the regions the warp paints worst;
   - ``grad``, weight ``GRAD_WEIGHT``: L1 between the image gradients (finite differences) of output and target at
     scales 1, 1/2 and 1/4: edges (lash line, teeth edges, seams) rather than a blur;
   - ``ssim``, weight ``SSIM_WEIGHT``: 1 - SSIM (7x7 box windows, per channel): local contrast and structure;
   - the L1 weight map also adds ``BAND_WEIGHT`` within ``BAND_PX`` of the painted mouth interior's edge
     (``lip_band``): the inner lip line the mouth control is read from must stay the target's, not soften;
   - ``adv``, weight ``--adv`` (``ADV_WEIGHT``) from step ``--adv-start`` on: a least-squares patch GAN
     (``PatchDiscriminator``, 101k parameters, trained alongside and checkpointed with the refiner) on the gated
     regions only (``adversarial_losses``): L1 alone paints the average mouth, a grey teeth band.

   The refiner trains with its region gate (``refiner.region_mask``), as it runs: the losses see the warp's own
   pixels everywhere else.
4. **Training** (on ``pdfgc.training.harness``): Adam (lr ``--lr``, 100 warm-up steps, cosine decay to 5 %), batch
   ``--batch``. Checkpoints (``OUT/checkpoint.safetensors``, the harness's format: model, optimiser, discriminator,
   step, settings; written atomically) every ``--ckpt-every`` steps and at the end; ``OUT/log.csv`` one row per
   ``--log-every`` steps (rows past a resumed checkpoint are dropped); held-out PSNR (warp alone vs refined, 224 px)
   every ``--eval-every`` steps. ``--minutes`` is the time budget (checkpointed, then stops); ``--resume`` goes on
   (without it a run folder holding a checkpoint is refused; a damaged checkpoint is an error naming it).
5. **Result**: ``OUT/refiner.safetensors`` (``refiner.save_refiner``; copy it beside the params file as
   ``<params stem>_refiner.safetensors`` to ship it).

The shipped refiner (``pdfgc/weights/meshwarp_refiner.safetensors``, session 33) is this command's result at its
defaults on pairs rendered by today's default warp (real mouth bank, sliding lid, stretched fill with the cheek
texture; ``AUX_VERSION`` 3), trained for 4800 steps instead of 8000 (the shared 2-core machine ran 0.45-0.75 s a
step with two other jobs: 200 steps with --steps 6000, 200-2000 with 8000, 2000-4800 with --steps 4800, each resumed
from the checkpoint; 48 min of training, cache 80 s). On the 416 held-out pairs PSNR 20.50 dB (the warp alone) ->
20.71 dB, mouth-box PSNR 23.15 -> 24.24 dB (``benchmarks/results/meshwarp/refiner_s33.md``). The refiner of
sessions 11-32 learned on the painted mouth and lids (20.22 -> 20.53, 21.86 -> 24.25 dB); a run with ``--feat 0.1``
(dlib's ResNet features, 70 min) scored a little lower everywhere then (20.50 / 24.03 dB). Figures and strips come
from ``benchmarks/meshwarp_refiner_eval.py``; the weak points are in ``benchmarks/results/meshwarp/refiner_s33.md``
and ``refiner_README.md``. ``log.csv``'s seconds count from each (re)start.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import CheckpointError, InputError, PDFGCError
from ...media.mesh_indices import EYE_LOWER, EYE_UPPER, LIP_OUTER_LOWER, LIP_OUTER_UPPER
from ...training.harness import (
    CsvLog,
    TimeBudget,
    cosine_with_warmup,
    load_checkpoint,
    resume_from,
    resumed_settings,
    save_checkpoint,
    set_lr,
)
from .corpus import HELDOUT_FILE
from .refiner import AUX_KEYS, DEFAULT_WIDTHS, RES, Refiner, region_mask, save_refiner

# ~3.5 GB for the default pairs; it records what built it (build_cache), so one shared place is safe
DEFAULT_CACHE = Path(os.environ.get("PDFGC_REFINER_CACHE")
                     or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pdfgc" / "refiner_pairs")
SOURCES = 3
TARGETS = 10
HELDOUT_TARGETS = 24
CROP = 128
MOUTH_WEIGHT = 3.0
EYE_WEIGHT = 1.0
GRAD_WEIGHT = 0.5
SSIM_WEIGHT = 0.25
# inner-lip band: pixels within BAND_PX of the painted mouth interior's edge (where mediapipe finds the inner lip)
# weigh 1 + BAND_WEIGHT more, so the refiner keeps the target's lip edge instead of softening it
BAND_PX = 3
BAND_WEIGHT = 4.0
# adversarial term on the gated regions (mouth interior, eyes/lids, stretched pixels): an L1 refiner paints the
# average mouth, a grey teeth band; a small patch discriminator pushes towards crisp teeth and lash lines
ADV_WEIGHT = 0.02
ADV_START = 1000    # steps of reconstruction losses alone first (the discriminator starts against a sane refiner)
# feature loss: dlib's face recognition ResNet (dlib_resnet.py, face-api's weights), its first two
# stages on the crops: skin texture, lash and teeth edges as a face network sees them (0: off)
FEAT_WEIGHT = 0.0
FEAT_STAGES = (1, 2)
# the outer lip loop and each eye's lid loop (corners once), boxes only: order does not matter
LIP_OUTER = LIP_OUTER_UPPER + LIP_OUTER_LOWER[1:-1]
EYES = tuple(EYE_UPPER[e] + EYE_LOWER[e][1:-1] for e in range(2))
HALF = RES // 2
# the renderer's pixels and aux masks as cached; a change rebuilds (2: occlusion seams count as stretched; 3: today's
# default warp, as inference draws it with --refiner: the real mouth bank, the sliding skin lid, the stretched fill
# with the cheek texture)
AUX_VERSION = 3


# ---------------------------------------------------------------------------------------------- regions


def region_boxes(mesh: np.ndarray) -> np.ndarray:
    """(3,4) int boxes x0,y0,x1,y1 (exclusive) of the mouth and both eyes in a 224 frame, with margins."""
    out = np.zeros((3, 4), np.int32)
    for j, idx in enumerate((LIP_OUTER,) + EYES):
        p = np.asarray(mesh)[list(idx), :2]
        lo, hi = p.min(0), p.max(0)
        size = hi - lo
        m = np.maximum(0.25 * size.max(), 4.0) if j == 0 else np.maximum(0.3 * size.max(), 4.0)
        lo, hi = np.floor(lo - m), np.ceil(hi + m)
        out[j] = np.clip([lo[0], lo[1], hi[0] + 1, hi[1] + 1], 0, RES)
    return out


# ---------------------------------------------------------------------------------------------- pair cache


def corpus_people(data: Path, heldout_file: Path = HELDOUT_FILE):
    """[(ClipInfo, identity, heldout)] of a prepared corpus, and the corpus."""
    from ...data import PreparedCorpus

    corpus = PreparedCorpus(data)
    root = corpus.manifest.get("settings", {}).get("raw_root")
    rows = {}
    if root and (Path(root) / "manifest.csv").is_file():
        with open(Path(root) / "manifest.csv", newline="") as f:
            rows = {r["local_path"]: r for r in csv.DictReader(f)}
    held = set()
    if Path(heldout_file).is_file():
        held = {ln.strip() for ln in Path(heldout_file).read_text().splitlines()
                if ln.strip() and not ln.startswith("#")}
    out = []
    for info in corpus.clips:
        ident = rows.get(info.source, {}).get("identity_guess") or info.speaker or info.key
        out.append((info, ident, info.split == "heldout" or ident in held))
    return out, corpus


def choose_pairs(arrays: dict, heldout: bool, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(source, target) frame pairs of one clip (see the module doc)."""
    valid = arrays["valid.npy"].astype(bool) & np.isfinite(arrays["mesh.npy"]).all(axis=(1, 2))
    idx = np.flatnonzero(valid)
    if len(idx) < 4:
        return []
    mouth = np.nan_to_num(arrays["mouth.npy"].astype(np.float64))
    ear = np.nan_to_num(arrays["eye.npy"][:, :2].astype(np.float64).mean(1), nan=1.0)
    pose = np.nan_to_num(arrays["pose.npy"][:, :3].astype(np.float64))
    if heldout:
        calm = idx[mouth[idx] <= np.quantile(mouth[idx], 0.2)]
        sources = [int(calm[np.argmax(ear[calm])])]
        per = HELDOUT_TARGETS
    else:
        sources = [int(idx[k]) for k in np.linspace(0, len(idx) - 1, SOURCES + 2)[1:-1].round().astype(int)]
        per = TARGETS
    pairs = []
    for s in sources:
        cand = idx[np.abs(idx - s) >= 3]
        if len(cand) < per:
            cand = idx[idx != s]
        n_hard = per // 2
        hard = [int(cand[np.argmax(mouth[cand])])] if len(cand) else []
        order_m = cand[np.argsort(-mouth[cand])][: max(1, len(cand) // 10)]
        order_e = cand[np.argsort(ear[cand])][: max(1, len(cand) // 10)]
        order_p = cand[np.argsort(-np.abs(pose[cand] - pose[s]).sum(1))][: max(1, len(cand) // 10)]
        pools = [order_m, order_e, order_p]
        while len(hard) < n_hard:
            pool = pools[len(hard) % 3]
            hard.append(int(pool[rng.integers(len(pool))]))
        if heldout:  # evenly spread over the clip, plus the hard ones
            rest = [int(cand[k]) for k in np.linspace(0, len(cand) - 1, per - n_hard).round().astype(int)]
        else:
            rest = [int(x) for x in rng.choice(cand, per - n_hard, replace=len(cand) < per - n_hard)]
        pairs += [(s, t) for t in dict.fromkeys(hard + rest)]
    return pairs


@dataclass
class PairCache:
    """The memmapped pairs of one split (``open_cache``)."""

    warp: np.ndarray     # (N,224,224,3) uint8
    target: np.ndarray   # (N,224,224,3) uint8
    source: np.ndarray   # (N,112,112,3) uint8 (the source frame at half size)
    aux: np.ndarray      # (N,224,224,4) uint8 (AUX_KEYS x 255)
    boxes: np.ndarray    # (N,3,4) int32 target mouth / eye boxes
    meta: dict           # keys, s, t per pair; built_with

    def __len__(self) -> int:
        return len(self.boxes)


def _maps(root: Path, n: int, mode: str):
    shapes = {"warp": (n, RES, RES, 3), "target": (n, RES, RES, 3), "source": (n, HALF, HALF, 3),
              "aux": (n, RES, RES, len(AUX_KEYS))}
    return {k: np.lib.format.open_memmap(root / f"{k}.npy", mode=mode, dtype=np.uint8,
                                         shape=s if mode == "w+" else None)
            for k, s in shapes.items()}


def open_cache(root: Path) -> PairCache:
    root = Path(root)
    if not (root / "done.json").is_file():
        raise InputError(f"refiner cache {root}: not built (run refine_train to build it)")
    meta = json.loads((root / "done.json").read_text())
    m = {k: np.load(root / f"{k}.npy", mmap_mode="r") for k in ("warp", "target", "source", "aux")}
    return PairCache(m["warp"], m["target"], m["source"], m["aux"], np.load(root / "boxes.npy"), meta)


def build_cache(data: Path, cache: Path, split: str, seed: int = 0, max_clips: int | None = None,
                heldout_file: Path = HELDOUT_FILE, log=print) -> Path:
    """Warp every chosen pair of `split` ("train" or "heldout") into ``cache/split`` (skipped when built)."""
    import cv2

    from .warp import WarpRenderer

    root = Path(cache) / split
    people, corpus = corpus_people(data, heldout_file)   # the corpus is checked first (a cache does not vouch for it)
    built_from = {"data": str(Path(data).resolve()), "clips": len(corpus.clips), "aux_version": AUX_VERSION,
                  "seed": seed, "max_clips": max_clips}
    if (root / "done.json").is_file():
        meta = json.loads((root / "done.json").read_text())
        if all(meta.get(k) == v for k, v in built_from.items()):
            return root
        log(f"refiner cache {root}: built from another corpus, seed or renderer; rebuilding")
    rng = np.random.default_rng([seed, 1 if split == "heldout" else 0])
    plan = []
    for info, ident, held in people:
        if held != (split == "heldout"):
            continue
        arrays = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy", "mouth.npy", "eye.npy", "pose.npy"))
        for s, t in choose_pairs(arrays, held, rng):
            plan.append((info.key, s, t, ident))
        if max_clips and len({p[0] for p in plan}) >= max_clips:
            break
    if not plan:
        raise InputError(f"refiner cache: no {split} pairs in {data}")
    tmp = root.with_name(split + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    maps = _maps(tmp, len(plan), "w+")
    boxes = np.zeros((len(plan), 3, 4), np.int32)
    t0 = time.time()
    i = 0
    by_clip: dict[str, list[int]] = {}
    for j, (key, s, t, _) in enumerate(plan):
        by_clip.setdefault(key, []).append(j)
    for c, (key, rows) in enumerate(by_clip.items()):
        mesh = corpus.load_arrays(key, names=("mesh.npy",))["mesh.npy"].astype(np.float64)
        frames_needed = sorted({plan[j][1] for j in rows} | {plan[j][2] for j in rows})
        frames = dict(zip(frames_needed, corpus.load_frames(key, frames_needed)))
        renderers = {}
        for j in rows:
            _, s, t, _ = plan[j]
            if s not in renderers:
                renderers = {s: WarpRenderer(frames[s], mesh[s])}
            out, aux = renderers[s].render(mesh[t], return_aux=True)
            maps["warp"][j] = out
            maps["target"][j] = frames[t]
            maps["source"][j] = cv2.resize(frames[s], (HALF, HALF), interpolation=cv2.INTER_AREA)
            maps["aux"][j] = np.round(np.stack([aux[k] for k in AUX_KEYS], -1) * 255).astype(np.uint8)
            boxes[j] = region_boxes(mesh[t])
            i += 1
        if c % 20 == 0:
            log(f"refiner cache {split}: {i}/{len(plan)} pairs, {time.time() - t0:.0f} s")
    for m in maps.values():
        m.flush()
    del maps
    np.save(tmp / "boxes.npy", boxes)
    meta = {"split": split, "pairs": len(plan), "people": len({p[3] for p in plan}),
            "keys": [p[0] for p in plan], "s": [p[1] for p in plan], "t": [p[2] for p in plan],
            "seconds": round(time.time() - t0, 1), "clips_used": len(by_clip), **built_from}
    (tmp / "done.json").write_text(json.dumps(meta))
    shutil.rmtree(root, ignore_errors=True)
    os.replace(tmp, root)
    log(f"refiner cache {split}: {len(plan)} pairs from {len(by_clip)} clips in {time.time() - t0:.0f} s -> {root}")
    return root


# ---------------------------------------------------------------------------------------------- batches


def to_float(x: np.ndarray) -> torch.Tensor:
    """(B,H,W,C) uint8 -> (B,C,H,W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def sample_batch(cache: PairCache, step: int, seed: int, batch: int, crop: int = CROP):
    """Step `step`'s batch (a pure function of seed and step): warp, aux, source, target, weight (B,1,c,c)."""
    rng = np.random.default_rng([seed, step])
    crop = int(crop) // 8 * 8
    n = len(cache)
    idx = rng.integers(0, n, batch)
    W, A, Sr, T, Wt = [], [], [], [], []
    for i in idx:
        b = cache.boxes[i]
        u = rng.random()
        if u < 0.4:
            cx, cy = (b[0, 0] + b[0, 2]) / 2, (b[0, 1] + b[0, 3]) / 2
        elif u < 0.6:
            e = b[1 + int(rng.integers(2))]
            cx, cy = (e[0] + e[2]) / 2, (e[1] + e[3]) / 2
        else:
            cx, cy = rng.uniform(crop / 2, RES - crop / 2, 2)
        cx += rng.normal(0, crop / 8)
        cy += rng.normal(0, crop / 8)
        x0 = int(np.clip(round((cx - crop / 2) / 2) * 2, 0, RES - crop))   # even: the source is at half size
        y0 = int(np.clip(round((cy - crop / 2) / 2) * 2, 0, RES - crop))
        sl = (slice(y0, y0 + crop), slice(x0, x0 + crop))
        wmap = np.ones((RES, RES), np.float32)
        wmap[b[0, 1]:b[0, 3], b[0, 0]:b[0, 2]] += MOUTH_WEIGHT
        for e in b[1:]:
            wmap[e[1]:e[3], e[0]:e[2]] += EYE_WEIGHT
        if BAND_WEIGHT:
            wmap += BAND_WEIGHT * lip_band(cache.aux[i][..., 0])
        half = (slice(y0 // 2, (y0 + crop) // 2), slice(x0 // 2, (x0 + crop) // 2))
        items = [cache.warp[i][sl], cache.aux[i][sl], cache.source[i][half], cache.target[i][sl], wmap[sl][..., None]]
        if rng.random() < 0.5:
            items = [x[:, ::-1] for x in items]
        for lst, x in zip((W, A, Sr, T, Wt), items):
            lst.append(x)
    warp = to_float(np.stack(W))
    aux = torch.from_numpy(np.ascontiguousarray(np.stack(A))).permute(0, 3, 1, 2).float().div_(255.0)
    weight = torch.from_numpy(np.ascontiguousarray(np.stack(Wt))).permute(0, 3, 1, 2)
    return warp, aux, to_float(np.stack(Sr)), to_float(np.stack(T)), weight


def lip_band(mouth: np.ndarray, px: int = BAND_PX) -> np.ndarray:
    """(H,W) float32 1 within ``px`` of the edge of a uint8 mouth-interior mask (the inner lip line), else 0."""
    import cv2

    m = (np.asarray(mouth) > 127).astype(np.uint8)
    if not m.any():
        return np.zeros(m.shape, np.float32)
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * px + 1, 2 * px + 1))
    return (cv2.dilate(m, k) - cv2.erode(m, k)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- losses


def weighted_l1(out: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    d = (out - target).abs()
    if weight is None:
        return d.mean()
    return (d * weight).mean() / weight.mean()


def gradient_loss(out: torch.Tensor, target: torch.Tensor, scales=(1, 2, 4)) -> torch.Tensor:
    """Mean over scales of the L1 between finite-difference gradients (x and y) of out and target."""
    total = out.new_zeros(())
    for s in scales:
        a = F.avg_pool2d(out, s) if s > 1 else out
        b = F.avg_pool2d(target, s) if s > 1 else target
        gx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
        gy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
        total = total + 0.5 * (gx.abs().mean() + gy.abs().mean())
    return total / len(scales)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM of images in [-1, 1] (box windows, valid region, per channel; constants for a data range of 2)."""
    c1, c2 = (0.01 * 2) ** 2, (0.03 * 2) ** 2
    mu_a, mu_b = F.avg_pool2d(a, window, 1), F.avg_pool2d(b, window, 1)
    va = F.avg_pool2d(a * a, window, 1) - mu_a ** 2
    vb = F.avg_pool2d(b * b, window, 1) - mu_b ** 2
    cov = F.avg_pool2d(a * b, window, 1) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return s.mean()


def losses(out, target, weight=None) -> dict[str, torch.Tensor]:
    """The training losses (module doc) and their weighted sum 'total'."""
    d = {"l1": weighted_l1(out, target, weight), "grad": gradient_loss(out, target), "ssim": 1.0 - ssim(out, target)}
    d["total"] = d["l1"] + GRAD_WEIGHT * d["grad"] + SSIM_WEIGHT * d["ssim"]
    return d


def feature_net():
    """dlib's recognition ResNet with face-api's weights, frozen (InputError with the set-up command when absent)."""
    from .dlib_resnet import SETUP_COMMAND, find_faceapi_model_dir, load_faceapi_weights

    folder = find_faceapi_model_dir()
    if folder is None:
        raise InputError(f"the refiner's feature loss needs face-api's weights: run `{SETUP_COMMAND}` in the "
                         "repository root (or set PDFGC_FACEAPI_DIR), or train with --feat 0")
    return load_faceapi_weights(folder).eval().requires_grad_(False)


def feature_loss(net, out: torch.Tensor, target: torch.Tensor, stages=FEAT_STAGES) -> torch.Tensor:
    """Mean over ``stages`` of the L1 between ``net.features`` of out and target (images in [-1, 1]), each stage
    divided by the target features' mean magnitude (so every stage counts alike, whatever its scale)."""
    fo = net.features((out + 1.0) * 127.5, stages)
    with torch.no_grad():
        ft = net.features((target + 1.0) * 127.5, stages)
    total = out.new_zeros(())
    for a, b in zip(fo, ft):
        total = total + (a - b).abs().mean() / b.abs().mean().clamp_min(1e-6)
    return total / len(fo)


class PatchDiscriminator(torch.nn.Module):
    """(B,3,H,W) image in [-1,1] -> (B,1,H/8,W/8) real/fake logits, one per ~46 px patch (a PatchGAN, small enough
    for the CPU: 101k parameters). Used on the gated regions only (``adversarial_losses``)."""

    def __init__(self, width: int = 32):
        super().__init__()
        c = int(width)
        act = lambda: torch.nn.LeakyReLU(0.2)   # noqa: E731
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, c, 4, 2, 1), act(),
            torch.nn.Conv2d(c, 2 * c, 4, 2, 1), act(),
            torch.nn.Conv2d(2 * c, 2 * c, 4, 2, 1), act(),
            torch.nn.Conv2d(2 * c, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def adversarial_losses(disc, out, target, gate) -> tuple[torch.Tensor, torch.Tensor]:
    """(generator loss, discriminator loss), least-squares GAN, each patch weighted by how much of it is gated
    (``region_mask``): the discriminator judges only what the refiner may paint. The generator's term sees the
    discriminator frozen; the discriminator's sees ``out`` detached."""
    # the gate averaged over each logit's patch (the discriminator's output is 1/8 of its input)
    w = F.adaptive_avg_pool2d(gate, (max(1, gate.shape[-2] // 8), max(1, gate.shape[-1] // 8)))
    norm = w.sum().clamp_min(1e-6)
    for p in disc.parameters():
        p.requires_grad_(False)
    g_loss = (w * (disc(out) - 1.0) ** 2).sum() / norm
    for p in disc.parameters():
        p.requires_grad_(True)
    d_loss = (w * ((disc(target) - 1.0) ** 2 + disc(out.detach()) ** 2)).sum() / norm
    return g_loss, d_loss


# ---------------------------------------------------------------------------------------------- evaluation


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


@torch.inference_mode()
def refine_cached(model: Refiner, cache: PairCache, rows, batch: int = 8) -> np.ndarray:
    """Refined uint8 frames (len(rows),224,224,3) of cached pairs."""
    out = []
    rows = list(rows)
    for k in range(0, len(rows), batch):
        r = rows[k:k + batch]
        warp = to_float(cache.warp[r])
        aux = torch.from_numpy(np.ascontiguousarray(cache.aux[r])).permute(0, 3, 1, 2).float().div_(255.0)
        y, _ = model(warp, aux, to_float(cache.source[r]))
        out.append(y.add_(1.0).mul_(127.5).round_().clamp_(0, 255).byte().permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)


def quick_eval(model: Refiner, cache: PairCache, n: int = 64) -> dict:
    rows = np.linspace(0, len(cache) - 1, min(n, len(cache))).round().astype(int).tolist()
    ref = refine_cached(model, cache, rows)
    pw, pr, mw, mr = [], [], [], []
    for j, i in enumerate(rows):
        t, w, b = cache.target[i], cache.warp[i], cache.boxes[i, 0]
        pw.append(psnr(w, t))
        pr.append(psnr(ref[j], t))
        sl = (slice(b[1], b[3]), slice(b[0], b[2]))
        mw.append(psnr(w[sl], t[sl]))
        mr.append(psnr(ref[j][sl], t[sl]))
    return {"psnr_warp": float(np.mean(pw)), "psnr_refined": float(np.mean(pr)),
            "mouth_psnr_warp": float(np.mean(mw)), "mouth_psnr_refined": float(np.mean(mr))}


# ---------------------------------------------------------------------------------------------- training


def lr_at(step: int, steps: int, lr: float, warmup: int = 100) -> float:
    """Adam's rate at `step`: 100 warm-up steps, cosine decay to 5 % (`harness.cosine_with_warmup`)."""
    return cosine_with_warmup(step, steps, lr, warmup, floor=0.05)


CHECKPOINT = "checkpoint.safetensors"
CHECKPOINT_KIND = "meshwarp-refiner"
LOG_FIELDS = ("step", "seconds", "lr", "total", "l1", "grad", "ssim", "psnr_warp", "psnr_refined",
              "mouth_psnr_warp", "mouth_psnr_refined", "adv", "disc", "feat")
# a resumed run keeps its own settings but these (its length); the rest, given differently, is named and ignored
MAY_CHANGE = ("steps",)


def _read_checkpoint(path: Path) -> dict:
    return load_checkpoint(path, CHECKPOINT_KIND, required=("model", "opt", "step", "args"))


def train(cache: PairCache, out: Path, steps: int, batch: int = 8, crop: int = CROP, lr: float = 2e-3, seed: int = 0,
          ckpt_every: int = 200, log_every: int = 20, eval_every: int = 1000, minutes: float | None = None,
          heldout: PairCache | None = None, widths=None, adv: float = ADV_WEIGHT, adv_start: int = ADV_START,
          feat: float = FEAT_WEIGHT, feat_net=None, log=print, resume: bool = False) -> Refiner:
    """Train a refiner into `out` (or, with ``resume``, continue the run there: `harness.resume_from`); returns the
    model at the last step reached. ``adv`` > 0 adds the adversarial term (``adversarial_losses``) from step
    ``adv_start`` on, ``feat`` > 0 the feature loss (``feature_loss`` with ``feat_net``, by default
    ``feature_net()``). ``minutes``: the time budget (checkpointed, then stops; run again with ``resume``)."""
    out = Path(out)
    ckpt_path, log_path = out / CHECKPOINT, out / "log.csv"
    budget = TimeBudget(60 * minutes if minutes is not None else None)   # a negative one: an error, before any file
    if (out / "checkpoint.pt").is_file():   # an older pdfgc's format: never a silent restart beside it
        raise CheckpointError(f"{out / 'checkpoint.pt'}: a refiner checkpoint of an older pdfgc, which this one "
                              "does not read; delete it to train again from step 0, or choose another --out")
    args = {"steps": steps, "batch": batch, "crop": crop, "lr": lr, "seed": seed,
            "widths": list(widths) if widths else list(DEFAULT_WIDTHS), "adv": adv, "adv_start": adv_start,
            "band_weight": BAND_WEIGHT, "feat": feat}
    found = resume_from(out, [ckpt_path] if ckpt_path.exists() else [], resume, _read_checkpoint, log)
    ck = None
    if found is not None:
        ck = found[1]
        args, ignored = resumed_settings(ck["args"], args, MAY_CHANGE, ignore=("band_weight",))
        if ignored:
            log("a resumed run keeps its own settings; ignored: " + ", ".join(ignored))
        batch, crop, lr, seed, adv, adv_start, feat = (args[k] for k in ("batch", "crop", "lr", "seed", "adv",
                                                                         "adv_start", "feat"))
    if feat > 0 and feat_net is None:
        feat_net = feature_net()
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Refiner(tuple(args["widths"]))
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    disc = PatchDiscriminator() if adv > 0 else None
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.99)) if disc is not None else None
    step = 0
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            if disc is not None and "disc" in ck:
                disc.load_state_dict(ck["disc"])
                opt_d.load_state_dict(ck["disc_opt"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{ckpt_path}: does not match the refiner it was saved for ({str(e)[:200]})") \
                from None
        step = int(ck["step"])
        log(f"resumed at step {step} from {ckpt_path}")

    def save_checkpoint_now() -> None:
        state = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "args": args}
        if disc is not None:
            state.update(disc=disc.state_dict(), disc_opt=opt_d.state_dict())
        save_checkpoint(ckpt_path, state, CHECKPOINT_KIND)

    csv_log = CsvLog(log_path, step, LOG_FIELDS)   # rows past the checkpoint's step (a killed run's) are dropped
    budget.restart()   # the budget counts training, not the set-up
    t0 = time.time()
    acc: dict[str, float] = {}
    model.train()
    try:
        while step < steps:
            set_lr(opt, lr_at(step, steps, lr))
            warp, aux, src, tgt, weight = sample_batch(cache, step, seed, batch, crop)
            y, _ = model(warp, aux, src)
            d = losses(y, tgt, weight)
            if feat > 0:
                d["feat"] = feature_loss(feat_net, y, tgt)
                d["total"] = d["total"] + feat * d["feat"]
            use_adv = disc is not None and step >= adv_start
            if use_adv:
                set_lr(opt_d, lr_at(step, steps, lr))
                d["adv"], d["disc"] = adversarial_losses(disc, y, tgt, region_mask(aux))
                d["total"] = d["total"] + adv * d["adv"]
            opt.zero_grad(set_to_none=True)
            d["total"].backward()
            opt.step()
            if use_adv:
                opt_d.zero_grad(set_to_none=True)
                d["disc"].backward()
                opt_d.step()
            step += 1
            for k in ("total", "l1", "grad", "ssim") + (("adv", "disc") if use_adv else ()) + \
                    (("feat",) if feat else ()):
                acc[k] = acc.get(k, 0.0) + float(d[k].detach())
            acc["n"] = acc.get("n", 0) + 1
            row = None
            if step % log_every == 0 or step == steps:
                row = {"step": step, "seconds": round(time.time() - t0, 1), "lr": f"{lr_at(step - 1, steps, lr):.6g}"}
                row.update({k: f"{acc[k] / acc['n']:.5f}" for k in ("total", "l1", "grad", "ssim", "adv", "disc",
                                                                     "feat") if k in acc})
                acc = {}
            if heldout is not None and (step % eval_every == 0 or step == steps):
                model.eval()
                ev = quick_eval(model, heldout)
                model.train()
                row = row or {"step": step, "seconds": round(time.time() - t0, 1)}
                row.update({k: f"{v:.3f}" for k, v in ev.items()})
                log(f"step {step}: held-out PSNR warp {ev['psnr_warp']:.2f} -> refined {ev['psnr_refined']:.2f} dB; "
                    f"mouth {ev['mouth_psnr_warp']:.2f} -> {ev['mouth_psnr_refined']:.2f} dB")
            if row is not None:
                csv_log.write(row)
                if "l1" in row:
                    log(f"step {step}/{steps} loss {row['total']} (l1 {row['l1']}) {time.time() - t0:.0f} s")
            stop = budget.spent()
            if step % ckpt_every == 0 or step == steps or stop:
                save_checkpoint_now()
            if stop:
                log(f"stopped after {budget.describe()} at step {step} (checkpointed; run again with --resume to go "
                    "on)")
                break
    finally:
        csv_log.close()
    model.eval()
    save_refiner(model, out / "refiner.safetensors", {"step": step, **args})
    return model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pdfgc.families.meshwarp.refine_train",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a prepared corpus (pdfgc prepare)")
    ap.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, log, refiner.safetensors)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="the warped pair cache, built once (default: $PDFGC_REFINER_CACHE or ~/.cache/pdfgc/)")
    ap.add_argument("--heldout", type=Path, default=HELDOUT_FILE, help="held-out people, one a line")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=CROP)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=None,
                    help="time budget: checkpoint and stop after this long (--resume goes on)")
    ap.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--max-clips", type=int, default=None, help="only the first N clips (a quick check)")
    ap.add_argument("--adv", type=float, default=ADV_WEIGHT, help="adversarial weight on the gated regions (0: off)")
    ap.add_argument("--adv-start", type=int, default=ADV_START, help="the step the adversarial term starts")
    ap.add_argument("--feat", type=float, default=FEAT_WEIGHT,
                    help="feature-loss weight (dlib's ResNet with face-api's weights; 0: off)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        import cv2
        cv2.setNumThreads(1)
        train_root = build_cache(a.data, a.cache, "train", a.seed, a.max_clips, a.heldout)
        held_root = build_cache(a.data, a.cache, "heldout", a.seed, a.max_clips, a.heldout)
        train(open_cache(train_root), a.out, a.steps, a.batch, a.crop, a.lr, a.seed, a.ckpt_every, a.log_every,
              a.eval_every, a.minutes, open_cache(held_root), adv=a.adv, adv_start=a.adv_start,
              feat=a.feat, resume=a.resume)
    except PDFGCError as e:
        print(f"pdfgc: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
