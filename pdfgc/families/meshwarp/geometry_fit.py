"""Closed-form geometry and label fitting of the mesh-warp family (``train.py`` step 2): per clip the canonical
meshes and the neutral frame; the mean neutral face, gaze and frontal EAR; the PCA bases of the mouth and emotion
points; the map mouth code -> emotion code regressed out of the emotion code; the labels' own directions leading
the emotion basis; the per-label expression shapes (``emotion.fit_labels``); fer's pseudo-labelled clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import InputError
from ...evaluation import signals as S
from . import codes as C
from . import emotion as E
from .corpus import Clip
from .params import MeshParams


def _prepare_geometry(clips: list[Clip]) -> None:
    for c in clips:
        canon = C.canonicalize(c.mesh)[0]
        ok = c.valid & np.isfinite(canon).all((1, 2))
        canon[~ok] = np.nan
        c.canon, c.valid = canon, ok
        c.ref = C.neutral_reference(np.where(ok[:, None, None], c.mesh, np.nan)) if ok.any() else 0
        # the closed-mouth reference of the lips and of the shape bases: a mean over several closed frames is
        # steadier than one frame's mesh
        if ok.any():
            opening = S.mouth_opening(canon)
            closed = ok & (opening <= np.nanquantile(opening[ok], 0.1))
            c.closed = canon[closed].mean(0)


FER_LABELS = ("happy", "surprise", "sad", "angry")   # fer classes whose confident frames join the label fit
FER_MIN_P = 0.5
FER_MIN_FRAMES = 3


def fer_probabilities(data: Path, clips: list[Clip], every: int = 4, log=print) -> dict[str, np.ndarray]:
    """{clip key: (T,7) fer probabilities (``evaluation.emotion.EMOTIONS`` order), NaN on frames not read} for
    every ``every``-th valid frame of the clips not held out (face box from the frame's mesh)."""
    from ...data import PreparedCorpus
    from ...evaluation.emotion import EmotionClassifier, box_from_landmarks

    corpus, fer, out = PreparedCorpus(data), EmotionClassifier(), {}
    for c in clips:
        if c.heldout:
            continue
        idx = np.flatnonzero(c.valid)[::every]
        p = np.full((len(c.valid), 7), np.nan)
        if len(idx):
            for i, frame in zip(idx, corpus.load_frames(c.key, idx)):
                p[i] = fer.classify(frame, box_from_landmarks(c.mesh[i, :, :2]))
        out[c.key] = p
    log(f"fer: read {sum(int(np.isfinite(p[:, 0]).sum()) for p in out.values())} frames of {len(out)} clips")
    return out


def fer_clips(train: list[Clip], fer: dict) -> list[Clip]:
    """Pseudo-labelled clips from fer's confident frames of the UNLABELLED training clips: per clip and fer class
    in ``FER_LABELS`` with >= ``FER_MIN_FRAMES`` frames of p >= ``FER_MIN_P``, a clip of those frames, and a
    'neutral' clip of all the clip's frames for the same pseudo person (its neutral frame, closed mouth and lids
    are the clip's own), so the label fit compares each expression with the same face at rest."""
    from ...evaluation.emotion import EMOTIONS

    out = []
    for c in train:
        p = fer.get(c.key)
        if c.label is not None or p is None:
            continue
        pid, made = f"{c.key}#fer", False
        for label in FER_LABELS:
            pick = c.valid & (np.nan_to_num(p[:, EMOTIONS.index(label)]) >= FER_MIN_P)
            if pick.sum() >= FER_MIN_FRAMES:
                out.append(Clip(f"{c.key}#fer-{label}", pid, label, False, c.mesh, pick, None, c.canon, c.ref,
                                c.closed))
                made = True
        if made:
            out.append(Clip(f"{c.key}#fer-neutral", pid, "neutral", False, c.mesh, c.valid, None, c.canon, c.ref,
                            c.closed))
    return out


def fit_geometry(clips: list[Clip], mouth_dim: int = 16, emotion_dim: int = 16, stride: int = 2,
                 log=print, fer: dict | None = None) -> MeshParams:
    """Fit mean face, bases, decorrelation and emotion shapes on the clips not held out (see the module doc).
    ``fer``: ``fer_probabilities`` of the clips: fer's confident frames join the label fit (``fer_clips``)."""
    _prepare_geometry(clips)
    train = [c for c in clips if not c.heldout and c.valid.any()]
    if not train:
        raise InputError("meshwarp: no clip with a face to fit on (all held out or faceless)")
    neutral = np.stack([c.canon[c.ref] for c in train])
    mean_shape = neutral.mean(0)
    open_ear = np.median(S.eye_aspect_ratio(neutral), 0)
    gaze_center = np.median(np.concatenate([S.gaze(c.mesh[c.ref]) for c in train]), 0)
    within = np.concatenate([(c.canon - c.closed)[c.valid][::stride] for c in train])
    pseudo = fer_clips(train, fer) if fer else []
    if pseudo:
        log(f"fer: {sum(c.label != 'neutral' for c in pseudo)} pseudo-labelled clips "
            f"({', '.join(f'{k} {sum(c.label == k for c in pseudo)}' for k in FER_LABELS)})")
    train = train + pseudo   # the frames are already in `within`: the pseudo clips feed only the label fit
    # labelled clips against their person's neutral clip (an expression held through a whole clip shows only there)
    person_neutral = {}
    for c in train:
        if c.label == "neutral":
            person_neutral.setdefault(c.identity, c.canon[c.ref])
    across = [(c.canon - person_neutral[c.identity])[c.valid][::stride] for c in train
              if c.label not in (None, "neutral") and c.identity in person_neutral]
    mouth_basis, mouth_sd = C.pca_basis(within, C.MOUTH_POINTS, mouth_dim)
    # emotion: what is left of the emotion points once the part linearly predictable from the mouth code is
    # removed (speech pulls the cheeks and mouth corners), so the basis spans expression, not speech
    pts = C.EMOTION_POINTS
    m = C.project_codes(within, mouth_basis)
    flat = within[:, pts].reshape(len(within), -1)
    w_full, *_ = np.linalg.lstsq(m, flat, rcond=None)          # (Dm, 3|pts|)
    explained = 1 - ((flat - m @ w_full) ** 2).sum() / (flat ** 2).sum()

    def residual(off):
        mm = C.project_codes(off, mouth_basis)
        r = off.copy()
        r[:, pts] -= (mm @ w_full).reshape(len(off), len(pts), 3)
        return r

    emo_pool = np.concatenate([residual(within)] + [residual(a) for a in across])
    # the labels' own directions first (a PCA of mostly speech frames holds only 20-70 % of a label's face), then
    # the pool's principal components of what they leave
    label_dirs = label_directions(train, person_neutral, pts, max(0, emotion_dim - 4))
    if len(label_dirs):
        flat_pool = emo_pool[:, pts].reshape(len(emo_pool), -1)
        flat_pool = flat_pool - (flat_pool @ label_dirs.T) @ label_dirs
        emo_pool = np.zeros_like(emo_pool)
        emo_pool[:, pts] = flat_pool.reshape(len(emo_pool), len(pts), 3)
    pca, emo_sd = C.pca_basis(emo_pool, pts, emotion_dim - len(label_dirs))
    emotion_basis = np.zeros((len(label_dirs) + len(pca), C.NUM_POINTS, 3))
    emotion_basis[:len(label_dirs), pts] = label_dirs.reshape(len(label_dirs), len(pts), 3)
    emotion_basis[len(label_dirs):] = pca
    # the emotion code = basis projection minus mouth @ w, the same linear map measure() applies
    w = w_full @ emotion_basis[:, pts].reshape(emotion_dim, -1).T
    params = MeshParams(mean_shape=mean_shape, mouth_basis=mouth_basis, emotion_basis=emotion_basis,
                        emotion_from_mouth=w, open_ear=open_ear, gaze_center=gaze_center)
    # the labels: measured on the file-name-labelled clips of people with a neutral clip, no gain (emotion.py)
    labels = E.fit_labels([c for c in train if not _from_fer(c)], params, log=log)
    counts = {k: v["clips"] for k, v in labels["labels"].items()}
    params.info = {"fit": {"clips": len(train), "frames": int(sum(c.valid.sum() for c in train)),
                           "people": len({c.identity for c in train}),
                           "mouth_sd": np.round(mouth_sd, 5).tolist(), "emotion_sd": np.round(emo_sd, 5).tolist(),
                           "emotion_variance_from_mouth": round(float(explained), 4),
                           "emotion_label_clips": counts, "emotion": labels}}
    log(f"geometry: {len(train)} clips, {params.info['fit']['frames']} frames; emotion variance predictable from "
        f"the mouth code {explained:.1%} (regressed out); labels {counts}")
    return params


def label_directions(train: list[Clip], person_neutral: dict, pts, max_dims: int) -> np.ndarray:
    """(L, 3|pts|) orthonormal directions of the labels' faces (sorted labels, neutral left out): per label the
    mean over its clips of the strongest frames' offsets (``_strongest``) from the person's neutral frame, whole
    (see ``emotion_shapes``); Gram-Schmidt in label order, signs along the label."""
    per: dict[str, list] = {}
    for c in train:
        if c.label in (None, "neutral") or c.identity not in person_neutral:
            continue
        off = (c.canon[c.valid] - person_neutral[c.identity])[:, pts].reshape(int(c.valid.sum()), -1)
        per.setdefault(c.label, []).append((_from_fer(c), 1.0, off[_strongest(off)].mean(0)))
    dirs: list[np.ndarray] = []
    for label in sorted(per)[:max_dims]:
        v = _balanced_mean(per[label])
        for d in dirs:
            v = v - (v @ d) * d
        if np.linalg.norm(v) > 1e-6:
            dirs.append(v / np.linalg.norm(v))
    return np.array(dirs).reshape(len(dirs), 3 * len(pts))


def _from_fer(c: Clip) -> bool:
    return "#fer-" in c.key


def _balanced_mean(items) -> np.ndarray:
    """Mean of (from_fer, weight, vector) items: the weighted mean of the labelled clips and that of fer's
    pseudo-labelled ones count alike (fer finds many mild expressions, the few labelled clips are strong)."""
    means = []
    for src in (False, True):
        part = [(w, v) for f, w, v in items if f == src]
        if part:
            wts = np.array([w for w, _ in part])
            means.append((wts[:, None] * np.stack([v for _, v in part])).sum(0) / wts.sum())
    return np.mean(means, 0)


def _strongest(emo: np.ndarray, share: float = 0.25) -> np.ndarray:
    """Indices of the frames that show the clip's expression most (largest projection on its mean offset): the
    label directions that lead the emotion basis (the labels' own shapes are plain means: ``emotion.py``)."""
    d = emo.mean(0)
    score = emo @ (d / max(np.linalg.norm(d), 1e-9))
    k = max(1, int(round(share * len(emo))))
    return np.argsort(score)[::-1][:k]

