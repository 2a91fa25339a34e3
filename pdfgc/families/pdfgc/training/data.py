"""Training batches from a prepared corpus (`pdfgc prepare`), as a pure function of (seed, step, rank, micro-step).

Nothing here keeps a position: `BatchSampler.batch(step, rank, micro)` draws its clips, frames and augmentation from
`numpy.random.default_rng([seed, stage, step, rank, micro])`, so a resumed run (or another number of workers)
sees exactly the batches an uninterrupted run would, and two ranks never see the same batch. Clips are drawn with
probability proportional to their length, frames among the valid ones (face found).

Memory: each clip's small arrays (mesh, pose, eye signals, mel windows) sit in an LRU cache; frames are decoded
from the shard on demand (the JPEGs of a corpus stay in the OS page cache), so RAM does not grow with the corpus.

Images: aligned 224 crops -> official crop-zoom (`pdfgc.media.preprocess`) -> `model.network_input` (the model's
resolution). Masks (face, mouth, eyes) are drawn from the prepared face mesh in crop pixels, feathered, and go
through the same crop-zoom and resize.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Callable

import cv2
import numpy as np
import torch

from ....errors import InputError
from ....media.mesh_indices import LIPS_OUTER
from ....media.preprocess import preprocess
from ....official_rules import official_crop_zoom
from .augment import AugmentConfig, augment_driving
from .stages import STAGES, pose_labels_to_code

# mediapipe face-mesh index sets (crop pixel coordinates)
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148,
             176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
EYE_CONTOURS = ((33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246),
                (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466))
# region masks [ours]: hull grown about its centre, then a Gaussian feather (sigma in crop pixels)
EYE_GROW, MOUTH_GROW = 1.6, 1.3
FEATHER_SIGMA = 3.0


class ClipStore:
    """Per-clip arrays in an LRU cache; frames read and decoded on demand."""

    def __init__(self, corpus, cache_clips: int = 64):
        self.corpus = corpus
        self.cache_clips = max(1, int(cache_clips))
        self._cache: OrderedDict = OrderedDict()

    def arrays(self, key: str):
        clip = self._cache.get(key)
        if clip is not None:
            self._cache.move_to_end(key)
            return clip
        clip = self.corpus.load_clip(key, with_frames=False)
        self._cache[key] = clip
        while len(self._cache) > self.cache_clips:
            self._cache.popitem(last=False)
        return clip

    def frames(self, key: str, indices) -> np.ndarray:
        return self.corpus.load_frames(key, list(indices))


def region_mask(points_xy: np.ndarray, grow: float = 1.0, sigma: float = FEATHER_SIGMA, size: int = 224
                ) -> np.ndarray:
    """float32 (size,size) in [0,1]: convex hull of the points (grown by `grow` about their centre), feathered."""
    p = np.asarray(points_xy, np.float64)[:, :2]
    c = p.mean(0)
    p = c + (p - c) * grow
    m = np.zeros((size, size), np.float32)
    hull = cv2.convexHull(np.round(p * 16).astype(np.int32))
    cv2.fillConvexPoly(m, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigma)
    return m


def eye_mask(mesh: np.ndarray, size: int = 224) -> np.ndarray:
    return np.maximum(*(region_mask(mesh[list(ix)], EYE_GROW, size=size) for ix in EYE_CONTOURS))


class BatchSampler:
    """Draws one stage's micro-batches. `to_input`: (N,3,224,224) official-preprocessed -> model input."""

    def __init__(self, corpus, stage: str, seed: int, batch_size: int, to_input: Callable[[torch.Tensor], torch.Tensor],
                 official_crop: bool = True, lip_group: int = 4, emotion_window: int = 5, eye_candidates: int = 8,
                 augment: AugmentConfig | None = None, cache_clips: int = 64):
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}")
        self.stage, self.seed, self.batch_size = stage, int(seed), int(batch_size)
        self.to_input, self.official_crop = to_input, official_crop
        self.lip_group, self.emotion_window, self.eye_candidates = lip_group, emotion_window, eye_candidates
        self.augment = augment or AugmentConfig()
        self.store = ClipStore(corpus, cache_clips)
        need = {"appearance": 2, "lips": lip_group, "pose_eye": 2, "emotion": emotion_window}[stage]
        clips = [c for c in corpus.clips if c.num_frames >= need]
        if stage == "lips":
            clips = [c for c in clips if c.has_audio]
        if not clips:
            what = "with audio and " if stage == "lips" else ""
            raise InputError(f"prepared corpus {getattr(corpus, 'root', '')}: no training clip {what}with at least "
                             f"{need} frames for stage '{stage}'")
        self.clips = clips
        lengths = np.array([c.num_frames for c in clips], np.float64)
        self.probs = lengths / lengths.sum()

    # ---- randomness: a pure function of the position
    def rng(self, step: int, rank: int, micro: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, STAGES.index(self.stage), int(step), int(rank), int(micro)])

    def _clip(self, rng: np.random.Generator):
        info = self.clips[int(rng.choice(len(self.clips), p=self.probs))]
        return info, self.store.arrays(info.key)

    @staticmethod
    def _valid(clip) -> np.ndarray:
        v = np.flatnonzero(np.asarray(clip.valid, bool))
        return v if v.size else np.arange(len(clip.valid))

    def _images(self, frames_uint8: np.ndarray) -> torch.Tensor:
        return self.to_input(preprocess(frames_uint8, official_crop=self.official_crop))

    def _masks(self, masks: list[np.ndarray]) -> torch.Tensor:
        m = np.stack([official_crop_zoom(x) if self.official_crop else x for x in masks])
        return self.to_input(torch.from_numpy(np.ascontiguousarray(m, np.float32))[:, None]).clamp(0, 1)

    def batch(self, step: int, rank: int = 0, micro: int = 0) -> dict[str, torch.Tensor]:
        rng = self.rng(step, rank, micro)
        return getattr(self, f"_{self.stage}")(rng)

    # ---- stage 1: source + (augmented) driving frame of the same clip
    def _appearance(self, rng):
        src, drv, masks = [], [], []
        for _ in range(self.batch_size):
            info, clip = self._clip(rng)
            s, d = rng.choice(self._valid(clip), 2, replace=len(self._valid(clip)) < 2)
            f = self.store.frames(info.key, [s, d])
            src.append(f[0])
            drv.append(f[1])
            masks.append(region_mask(clip.mesh[d][list(FACE_OVAL)], sigma=2.0))
        g = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        driving224 = preprocess(np.stack(drv), official_crop=self.official_crop)
        aug224 = augment_driving(driving224, self.augment, g)
        return {"source": self._images(np.stack(src)), "driving": self.to_input(driving224),
                "driving_aug": self.to_input(aug224), "face_mask": self._masks(masks)}

    # ---- stage 2: groups of frames (with their audio windows) per clip; the groups' first frames are rebuilt
    def _lips(self, rng):
        frames, mels, src, masks = [], [], [], []
        for _ in range(self.batch_size):
            info, clip = self._clip(rng)
            valid = self._valid(clip)
            ts = rng.choice(valid, self.lip_group, replace=len(valid) < self.lip_group)
            s = int(rng.choice(valid))
            f = self.store.frames(info.key, [s, *ts])
            src.append(f[0])
            frames.append(f[1:])
            mels.append(clip.mel_windows[ts])
            masks.append(region_mask(clip.mesh[ts[0]][list(LIPS_OUTER)], MOUTH_GROW))
        return {"frames": self._images(np.concatenate(frames)), "mel": torch.from_numpy(np.concatenate(mels)),
                "source": self._images(np.stack(src)), "mouth_mask": self._masks(masks)}

    # ---- stage 3: v1, v2 with different eye states; anchor = v2 with v1's eye region pasted in
    def _eye_pair(self, rng, clip) -> tuple[int, int]:
        valid = self._valid(clip)
        cand = rng.choice(valid, min(self.eye_candidates, len(valid)), replace=False)
        sig = np.nan_to_num(np.asarray(clip.eye, np.float64)[cand])
        scale = np.nan_to_num(np.asarray(clip.eye, np.float64)[valid]).std(0) + 1e-3
        diff = (np.abs(sig[:, None] - sig[None]) / scale).sum(-1)  # [ours] eye-state distance
        i, j = np.unravel_index(int(np.argmax(diff)), diff.shape)
        if i == j:  # one candidate only
            j = (i + 1) % len(cand) if len(cand) > 1 else i
        if rng.random() < 0.5:
            i, j = j, i
        return int(cand[i]), int(cand[j])

    def _pose_eye(self, rng):
        keys = ("source", "v1", "v2", "anchor")
        imgs = {k: [] for k in keys}
        pose1, pose2, mels, has, masks = [], [], [], [], []
        for _ in range(self.batch_size):
            info, clip = self._clip(rng)
            t1, t2 = self._eye_pair(rng, clip)
            s = int(rng.choice(self._valid(clip)))
            f = self.store.frames(info.key, [s, t1, t2])
            m = np.maximum(eye_mask(clip.mesh[t1]), eye_mask(clip.mesh[t2]))[..., None]
            anchor = np.clip(np.round(f[2] * (1 - m) + f[1] * m), 0, 255).astype(np.uint8)
            for k, v in zip(keys, (f[0], f[1], f[2], anchor)):
                imgs[k].append(v)
            pose1.append(clip.pose[t1])
            pose2.append(clip.pose[t2])
            ok = clip.mel_windows is not None
            has.append(ok)
            mels.append(clip.mel_windows[t2] if ok else np.zeros((1, 80, 20), np.float32))
            masks.append(region_mask(clip.mesh[t2][list(FACE_OVAL)], sigma=2.0))
        out = {k: self._images(np.stack(v)) for k, v in imgs.items()}
        out.update(pose_v1=pose_labels_to_code(torch.from_numpy(np.nan_to_num(np.stack(pose1)))),
                   pose_v2=pose_labels_to_code(torch.from_numpy(np.nan_to_num(np.stack(pose2)))),
                   mel=torch.from_numpy(np.stack(mels).astype(np.float32)), has_audio=torch.tensor(has),
                   face_mask=self._masks(masks))
        return out

    # ---- stage 4: K consecutive frames around a centre frame
    def _emotion(self, rng):
        k, h = self.emotion_window, self.emotion_window // 2
        src, win, mels, has, masks = [], [], [], [], []
        for _ in range(self.batch_size):
            info, clip = self._clip(rng)
            valid = self._valid(clip)
            centres = valid[(valid >= h) & (valid < clip.valid.shape[0] - (k - 1 - h))]
            t = int(rng.choice(centres)) if centres.size else h
            s = int(rng.choice(valid))
            f = self.store.frames(info.key, [s, *range(t - h, t - h + k)])
            src.append(f[0])
            win.append(f[1:])
            ok = clip.mel_windows is not None
            has.append(ok)
            mels.append(clip.mel_windows[t] if ok else np.zeros((1, 80, 20), np.float32))
            masks.append(region_mask(clip.mesh[t][list(FACE_OVAL)], sigma=2.0))
        return {"source": self._images(np.stack(src)), "window": self._images(np.concatenate(win)),
                "mel": torch.from_numpy(np.stack(mels).astype(np.float32)), "has_audio": torch.tensor(has),
                "face_mask": self._masks(masks)}
