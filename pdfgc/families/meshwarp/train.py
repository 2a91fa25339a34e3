"""Fitting and training the mesh-warp family from a prepared corpus (``pdfgc prepare``).

    python -m pdfgc.families.meshwarp.train --data DIR --out runs/meshwarp [--steps N] [--resume]

1. **People apart.** A clip's person is manifest.csv's ``identity_guess`` (found through the prepared corpus's
   ``raw_root``; ``ClipInfo.source`` is manifest.csv's ``local_path``), else ``ClipInfo.speaker``. The people listed
   in ``heldout_identities.txt`` (beside this file; ``--heldout FILE`` for another list) and the corpus's own
   ``heldout`` split are never fitted or trained on; they give the held-out figures.
2. **Geometry** (``fit_geometry``, ~10 s): per clip the canonical meshes and the neutral frame
   (``codes.neutral_reference``); the mean neutral face, gaze and frontal EAR; PCA bases of the mouth points and of
   the emotion points (offsets from each clip's neutral frame, plus labelled clips' offsets from the same person's
   neutral clip); the least-squares map mouth code -> emotion code (regressed out of the emotion code); the
   per-label expression shapes (``emotion.fit_labels``: labels from the file names; each label's measured mean
   change from the same person's neutral clip, no gain; its mouth part never opens the jaw), resting mouths and
   lid changes. The labels' own directions lead the emotion basis. ``--fer-every N``: fer reads every N-th frame
   of the unlabelled clips and its confident frames join the label directions of the basis as pseudo-labelled
   clips (``fer_clips``; cached in ``OUT/fer_everyN.npz``). Written to ``OUT/geometry.safetensors``.
   ``--audio-from FILE`` stops here and writes ``OUT/meshwarp.safetensors`` with FILE's audio network (the same
   mouth basis).
3. **Lips from speech** (``audio.AudioToMouth``) on the clips with audio whose sound goes with their lips
   (``sync_score`` >= 0.1: drops music, dubbing, other voices), targets = the mouth code against each clip's
   closed mouth. Batches of 16-frame runs (loudness jitter, one masked mel band per run); loss = the mouth-code
   regression (squared error in canonical units, i.e. mesh-point error, over its total variance; half of it with
   each run's mean error removed) + 5 x the lip-gap part of it (run mean removed: the inner-lip opening the
   renders are scored on) + 0.1 x the symmetric InfoNCE between audio and visual mouth embeddings (negatives:
   every other frame of the batch, other times and clips). Adam, cosine learning rate, dropout 0.2. Batches and
   dropout are pure functions of (seed, step), so a resumed run is the same run.
4. **Checkpoints** every ``--checkpoint-every`` seconds (default 120) and at the end, atomically:
   ``OUT/checkpoint.safetensors`` (network, Adam moments, step; metadata JSON). ``--resume`` continues from it
   (a kill -9 loses at most one interval). ``OUT/log.csv`` gets a row every ``--log-every`` steps.
5. **Result**: ``OUT/meshwarp.safetensors`` (geometry + network: ``params.save_params``), ``OUT/heldout.json``
   (held-out lips r, regression error) and ``OUT/curves.png`` / ``OUT/heldout_lips.png``.
   ``--evaluate FILE`` prints the held-out figures of any parameters file instead of training.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import CheckpointError, InputError, PDFGCError
from ...evaluation import signals as S
from ...fileio import atomic_path, write_atomic
from . import codes as C
from . import emotion as E
from .params import MeshParams, load_params, save_params

HELDOUT_FILE = Path(__file__).with_name("heldout_identities.txt")
EMOTION_LABELS = ("happy", "sad", "angry", "surprised", "disgusted", "fear", "contempt", "neutral")
# file-name words that contain a label but are not one
NOT_LABELS = ("sadtalker",)
SEQ = 16


# ---------------------------------------------------------------------------------------------- corpus


@dataclass
class Clip:
    key: str
    identity: str
    label: str | None           # normalised emotion label (pdfgc.controls.explicit), None when unlabelled
    heldout: bool
    mesh: np.ndarray            # (T,478,3) float64
    valid: np.ndarray           # (T,) bool
    mel_rows: np.ndarray | None  # (4T+16,80) float32
    canon: np.ndarray | None = None
    ref: int = 0                # the neutral frame (codes.neutral_reference)
    closed: np.ndarray | None = None  # (478,3) mean canonical mesh of the clip's least open tenth of frames


def emotion_label(*names: str) -> str | None:
    """The emotion label in file names ('M030_front_happy_level3_001.mp4' -> 'happy'; 'surprisegirl' ->
    'surprise'), normalised as pdfgc.controls.explicit does; None when there is none."""
    from ...controls.explicit import normalise_emotion

    for name in names:
        for token in re.split(r"[^a-z]+", str(name).lower()):
            if not token or token in NOT_LABELS:
                continue
            for label in EMOTION_LABELS + ("surprise", "disgust", "anger"):
                if token == label or token.startswith(label) or token.endswith(label):
                    return normalise_emotion(label)
    return None


def read_raw_manifest(corpus_manifest: dict) -> dict[str, dict]:
    """manifest.csv rows of the raw corpus by local_path ({} when the raw corpus has none)."""
    root = corpus_manifest.get("settings", {}).get("raw_root")
    path = Path(root) / "manifest.csv" if root else None
    if path is None or not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {r["local_path"]: r for r in csv.DictReader(f)}


def read_heldout(path: Path) -> list[str]:
    if not path.is_file():
        return []
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def choose_heldout(identities_with_audio, fraction: float = 0.15, seed: int = 0, keep=()) -> list[str]:
    """~fraction of the people with audio, drawn with a fixed seed (people in ``keep`` are never drawn)."""
    pool = sorted(set(identities_with_audio) - set(keep))
    rng = np.random.default_rng(seed)
    n = max(1, int(round(fraction * len(set(identities_with_audio))))) if pool else 0
    return sorted(pool[i] for i in rng.permutation(len(pool))[:n])


def load_corpus(data: Path, heldout_file: Path | None = None, log=print) -> tuple[list[Clip], list[str]]:
    """Every clip's arrays (no frames), with its person, label and held-out flag; and the held-out people.

    Without a held-out list file, one is chosen (``choose_heldout``; people whose labelled clips the emotion
    shapes rest on, 3 or more, are kept for training) and written to ``heldout_file``."""
    from ...data import PreparedCorpus

    corpus = PreparedCorpus(data)
    raw = read_raw_manifest(corpus.manifest)
    infos = corpus.clips
    ident = {}
    labels = {}
    for info in infos:
        row = raw.get(info.source, {})
        ident[info.key] = row.get("identity_guess") or info.speaker or info.key
        labels[info.key] = info.emotion and emotion_label(info.emotion) or emotion_label(
            info.source, row.get("repo_path", ""))
    heldout_file = Path(heldout_file) if heldout_file is not None else HELDOUT_FILE
    heldout = read_heldout(heldout_file)
    if not heldout:
        with_audio = [ident[i.key] for i in infos if i.has_audio]
        n_labelled: dict[str, int] = {}
        for i in infos:
            if labels[i.key]:
                n_labelled[ident[i.key]] = n_labelled.get(ident[i.key], 0) + 1
        heldout = choose_heldout(with_audio, keep=[p for p, n in n_labelled.items() if n >= 3])
        write_atomic(heldout_file, "# people held out of meshwarp fitting and training (identity_guess of "
                     "manifest.csv); chosen by train.choose_heldout, seed 0\n" + "\n".join(heldout) + "\n")
        log(f"chose {len(heldout)} held-out people -> {heldout_file}")
    held = set(heldout)
    clips = []
    for info in infos:
        a = corpus.load_arrays(info.key, names=("mel.npy", "mesh.npy", "valid.npy"))
        clips.append(Clip(info.key, ident[info.key], labels[info.key],
                          info.split == "heldout" or ident[info.key] in held,
                          a["mesh.npy"].astype(np.float64), a["valid.npy"].astype(bool), a.get("mel.npy")))
    return clips, heldout


# ---------------------------------------------------------------------------------------------- geometry


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


# ---------------------------------------------------------------------------------------------- lips data


@dataclass
class LipData:
    mel: list           # per clip torch (4T+16,80)
    target: list        # per clip (T,Dm) float32 mouth code from the clip's closed mouth
    valid: list         # per clip (T,) bool
    keys: list
    dropped: list = None  # clips left out by the sync filter


def sync_score(mel_rows, gap, valid) -> float:
    """How well a clip's sound goes with its lips: the best Pearson r (shifts up to +-3 frames) between the
    loudness at the centre of each frame's mel window (its 8 middle steps, all bands) and the lip gap. Near 0
    for music, dubbing or a voice that is not this face's."""
    import torch

    w = windows(torch.as_tensor(mel_rows), 0, len(gap)).numpy()
    return S.best_offset(np.where(valid, gap, np.nan), w[:, 0, :, 6:14].mean((1, 2)), 3)[1]


def lip_data(clips: list[Clip], params: MeshParams, heldout: bool, min_sync: float | None = None) -> LipData:
    """Per clip with audio: mel rows and the mouth code against the clip's closed mouth. ``min_sync``: leave out
    clips whose ``sync_score`` is below it (training only: the held-out figures use every clip)."""
    import torch

    out = LipData([], [], [], [], [])
    for c in clips:
        if c.mel_rows is None or c.heldout != heldout or not c.valid.any():
            continue
        t = min(len(c.mesh), (len(c.mel_rows) - 16) // 4)
        if t < SEQ:
            continue
        off = c.canon[:t] - c.closed
        m = C.project_codes(np.nan_to_num(off), params.mouth_basis).astype(np.float32)
        if min_sync is not None and not sync_score(c.mel_rows[:4 * t + 16], m @ gap_direction(params),
                                                   c.valid[:t]) >= min_sync:
            out.dropped.append(c.key)
            continue
        out.mel.append(torch.from_numpy(np.ascontiguousarray(c.mel_rows[:4 * t + 16], np.float32)))
        out.target.append(m)
        out.valid.append(c.valid[:t].copy())
        out.keys.append(c.key)
    return out


def windows(rows, start: int, length: int):
    """(length,1,80,20) official windows of frames [start, start+length) from (4T+16,80) mel rows (a view)."""
    w = rows[4 * start: 4 * (start + length) + 16].unfold(0, 20, 4)  # (length,80,20)
    return w[:, None]


def sample_batch(data: LipData, step: int, seed: int, batch: int):
    """A batch of 16-frame runs, a pure function of (seed, step); clips drawn in proportion to their length."""
    import torch

    rng = np.random.default_rng([seed, step])
    lengths = np.array([len(t) for t in data.target], np.float64)
    idx = rng.choice(len(lengths), size=batch, p=lengths / lengths.sum())
    mel, tgt, val = [], [], []
    for i in idx:
        s = int(rng.integers(0, len(data.target[i]) - SEQ + 1))
        mel.append(windows(data.mel[i], s, SEQ))
        tgt.append(torch.from_numpy(data.target[i][s:s + SEQ]))
        val.append(torch.from_numpy(data.valid[i][s:s + SEQ]))
    mel = torch.stack(mel)
    mel = mel * float(rng.uniform(0.9, 1.1))  # loudness jitter (the windows are normalised log-mel)
    for b in range(batch):  # a masked band of up to 10 mels per run (SpecAugment): less memorising of voices
        f0, width = int(rng.integers(0, 70)), int(rng.integers(0, 11))
        mel[b, :, :, f0:f0 + width] = mel[b].mean()
    return mel, torch.stack(tgt), torch.stack(val)


def gap_direction(params: MeshParams) -> np.ndarray:
    """(Dm,) how each mouth code moves the inner-lip gap (lower lip 14 minus upper lip 13, canonical y)."""
    return params.mouth_basis[:, 14, 1] - params.mouth_basis[:, 13, 1]


# ---------------------------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: Path, net, opt, step: int, meta: dict) -> None:
    import torch
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    names = dict(net.named_parameters())
    for name, p in names.items():
        st = opt.state.get(p, {})
        for k in ("exp_avg", "exp_avg_sq"):
            if k in st:
                tensors[f"opt.{name}.{k}"] = st[k].detach().clone().contiguous()
        if "step" in st:
            tensors[f"opt.{name}.step"] = torch.as_tensor(st["step"], dtype=torch.float32).reshape(1).clone()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pdfgc-meshwarp-checkpoint", "step": str(step),
                                               "meta": json.dumps(meta)})


def load_checkpoint(path: Path, net, opt) -> tuple[int, dict]:
    import torch
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            md = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if md.get("format") != "pdfgc-meshwarp-checkpoint":
            raise ValueError("not a meshwarp checkpoint")
        step, meta = int(md["step"]), json.loads(md.get("meta", "{}"))
        net.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot resume from this checkpoint ({e})") from None
    for name, p in net.named_parameters():
        if f"opt.{name}.exp_avg" in tensors:
            opt.state[p] = {"step": torch.tensor(float(tensors[f"opt.{name}.step"][0])),
                            "exp_avg": tensors[f"opt.{name}.exp_avg"].clone(),
                            "exp_avg_sq": tensors[f"opt.{name}.exp_avg_sq"].clone()}
    return step, meta


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate_lips(net, clips: list[Clip], params: MeshParams, keys=None) -> dict:
    """Held-out lips: per clip the predicted mouth code (smoothed, as at inference) composed onto the clip's own
    neutral frame with the clip's real pose, lids and gaze; Pearson r of ``signals.mouth_opening`` of that mesh
    against the real mesh's (per clip, and pooled over all frames); ``oracle_r``: the same with the real mouth
    code (what the code and compose can carry). Regression error against the training targets (mouth code from
    the clip's closed mouth): squared error over the codes' within-clip variance (``mouth_code_nmse``; the
    always-closed prediction scores ``closed_mouth_nmse``), its lip-gap part, and the RMS code error per frame
    (canonical units, i.e. the root of the summed squared point errors)."""
    from .audio import predict_mouth

    per = []
    all_pred, all_real, all_oracle = [], [], []
    se = var = gse = gvar = zse = 0.0
    g = gap_direction(params)
    for c in clips:
        if c.mel_rows is None or (keys is not None and c.key not in keys) or not c.valid.any():
            continue
        t = min(len(c.mesh), (len(c.mel_rows) - 16) // 4)
        if t < SEQ:
            continue
        from ...data.corpus import mel_windows_from_rows
        pred = predict_mouth(net, mel_windows_from_rows(c.mel_rows, t))
        mesh = c.mesh[:t]
        real = C.measure(mesh, params, reference=c.ref)
        # the regression error against the targets' own reference (the clip's closed mouth)
        target = C.project_codes(c.canon[:t] - c.closed, params.mouth_basis)
        ok = c.valid[:t] & np.isfinite(real.mouth).all(1)
        portrait = C.measure(mesh[c.ref], params, reference=0)
        codes = real.copy()
        codes.mouth[:] = pred
        composed = C.compose(mesh[c.ref], portrait, codes, params)
        oracle = C.compose(mesh[c.ref], portrait, real, params)
        mo_real, mo_pred, mo_oracle = S.mouth_opening(mesh), S.mouth_opening(composed), S.mouth_opening(oracle)
        mo_real[~ok] = np.nan
        r = S.pearson(mo_pred, mo_real)
        ok &= np.isfinite(target).all(1)
        d = pred[ok] - target[ok]
        se += float((d ** 2).sum())
        zse += float((target[ok] ** 2).sum())  # the closed mouth throughout, for comparison
        var += float(((target[ok] - target[ok].mean(0)) ** 2).sum())
        gse += float(((d @ g) ** 2).sum())
        gvar += float((((target[ok] - target[ok].mean(0)) @ g) ** 2).sum())
        per.append({"clip": c.key, "identity": c.identity, "frames": int(ok.sum()), "lips_r": round(r, 4),
                    "oracle_r": round(S.pearson(mo_oracle, mo_real), 4),
                    "best_offset": S.best_offset(mo_real, mo_pred, 4)})
        all_pred.append(mo_pred), all_real.append(mo_real), all_oracle.append(mo_oracle)
    if not per:
        return {"clips": 0}
    rs = np.array([p["lips_r"] for p in per])
    pooled = S.pearson(np.concatenate(all_pred), np.concatenate(all_real))
    return {"clips": len(per), "frames": int(sum(p["frames"] for p in per)),
            "people": len({p["identity"] for p in per}),
            "lips_r_mean": round(float(np.nanmean(rs)), 4), "lips_r_median": round(float(np.nanmedian(rs)), 4),
            "lips_r_pooled": round(float(pooled), 4),
            "oracle_r_pooled": round(float(S.pearson(np.concatenate(all_oracle), np.concatenate(all_real))), 4),
            "mouth_code_nmse": round(se / max(var, 1e-12), 4), "lip_gap_nmse": round(gse / max(gvar, 1e-12), 4),
            "closed_mouth_nmse": round(zse / max(var, 1e-12), 4),
            "mouth_code_rmse": round(math.sqrt(se / max(sum(p["frames"] for p in per), 1)), 4),
            "per_clip": per}


# ---------------------------------------------------------------------------------------------- training


def train(data: Path, out: Path, steps: int = 4000, batch: int = 16, lr: float = 2e-3, seed: int = 0,
          resume: bool = False, checkpoint_every: float = 120.0, log_every: int = 50, threads: int = 1,
          heldout_file: Path | None = None, mouth_dim: int = 16, emotion_dim: int = 16, nce_weight: float = 0.1,
          gap_weight: float = 5.0, min_sync: float | None = 0.1, max_seconds: float | None = None,
          stop_after: int | None = None, fer_every: int = 0, audio_from: Path | None = None,
          log=print) -> dict | None:
    import torch

    from . import audio as A

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt, geom_path, log_path = out / "checkpoint.safetensors", out / "geometry.safetensors", out / "log.csv"
    if not resume and ckpt.exists():
        raise InputError(f"{out} already holds a run (checkpoint.safetensors): add --resume to continue it, "
                         "or use a new --out folder")
    if resume and not ckpt.exists():
        log(f"no checkpoint in {out}: starting from scratch")
        resume = False
    t0 = time.time()
    clips, heldout = load_corpus(Path(data), heldout_file, log)
    if resume and geom_path.exists():
        params = load_params(geom_path)
        _prepare_geometry(clips)
    else:
        fer = None
        if fer_every > 0:   # fer's reading is the slow part (~90 s): kept in the run folder for a rerun
            cache = out / f"fer_every{fer_every}.npz"
            if cache.is_file():
                with np.load(cache) as z:
                    fer = {k: z[k] for k in z.files}
            else:
                fer = fer_probabilities(Path(data), clips, fer_every, log)
                with atomic_path(cache) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **fer)
        params = fit_geometry(clips, mouth_dim, emotion_dim, log=log, fer=fer)
        save_params(params, geom_path)
    if audio_from is not None:   # geometry only: the lips network of an earlier run on the same mouth basis
        old = load_params(audio_from)
        if old.audio_state is None or old.mouth_basis.shape != params.mouth_basis.shape or not np.allclose(
                old.mouth_basis, params.mouth_basis, atol=1e-5):
            raise InputError(f"--audio-from {audio_from}: no audio network on the same mouth basis as this fit")
        params.audio_state, params.audio_config = old.audio_state, old.audio_config
        params.info = {**old.info, "fit": params.info["fit"], "audio_from": str(audio_from)}
        save_params(params, out / "meshwarp.safetensors")
        log(f"geometry refitted, audio network of {audio_from} kept -> {out / 'meshwarp.safetensors'}")
        return {"geometry_only": True}
    train_data = lip_data(clips, params, heldout=False, min_sync=min_sync)
    if not train_data.target:
        raise InputError(f"{data}: no clip with audio of {SEQ} frames or more to train the lips on")
    log(f"lips: {len(train_data.target)} training clips with audio, {sum(len(t) for t in train_data.target)} "
        f"frames ({len(train_data.dropped)} left out: sound and lips do not go together); "
        f"{sum(1 for c in clips if c.heldout and c.mel_rows is not None)} held-out clips with audio")

    allv = np.concatenate(train_data.target)
    net = A.build({"mouth_dim": params.mouth_dim})
    net.code_scale.copy_(torch.from_numpy(allv.std(0) + 1e-6))
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.99))
    start, meta = 0, {"elapsed": 0.0}
    if resume:
        start, meta = load_checkpoint(ckpt, net, opt)
        log(f"resumed at step {start}")
    code_var = float(allv.var(0).sum()) + 1e-12
    g = torch.from_numpy(gap_direction(params).astype(np.float32))
    gap_var = float((allv @ g.numpy()).var()) + 1e-12
    _trim_log(log_path, start)
    elapsed0 = float(meta.get("elapsed", 0.0))
    t_start = time.time()
    last_ckpt = time.time()
    step = start
    acc = []
    for step in range(start, steps):
        frac = step / max(steps, 1)
        for group in opt.param_groups:
            group["lr"] = lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        torch.manual_seed(seed * 1_000_003 + step)  # dropout: a pure function of (seed, step) too, for exact resume
        mel, tgt, val = sample_batch(train_data, step, seed, batch)
        pred, a, v = net.embeddings(mel, tgt)
        m = val.float()[..., None]
        # half the code error as is (0 = closed must hold), half with each run's mean error removed, and the
        # lip gap with its run mean removed: the per-clip offsets (a person's lips, the reference frame) are what
        # speech cannot tell, and they drowned out the motion
        d = pred - tgt
        dc = d - (d * m).sum(1, keepdim=True) / m.sum(1, keepdim=True).clamp(min=1)
        reg = 0.5 * ((d ** 2) * m).sum() / (m.sum() * code_var) + 0.5 * ((dc ** 2) * m).sum() / (m.sum() * code_var)
        gap = (((dc @ g) ** 2) * m[..., 0]).sum() / (m.sum() * gap_var)
        keep = val.reshape(-1)
        nce = A.info_nce(a.reshape(-1, a.shape[-1])[keep], v.reshape(-1, v.shape[-1])[keep])
        loss = reg + gap_weight * gap + nce_weight * nce
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        acc.append((loss.item(), reg.item(), gap.item(), nce.item()))
        done = step + 1
        if done % log_every == 0 or done == steps:
            mean = np.mean(acc, 0)
            acc = []
            _append_log(log_path, {"step": done, "loss": mean[0], "reg": mean[1], "gap": mean[2], "nce": mean[3],
                                   "lr": opt.param_groups[0]["lr"],
                                   "seconds": round(elapsed0 + time.time() - t_start, 1)})
            log(f"step {done}/{steps} loss {mean[0]:.4f} (code {mean[1]:.4f} gap {mean[2]:.4f} nce {mean[3]:.3f})")
        # a time limit or stop_after (tests) ends this invocation early, like a kill right after a checkpoint
        stop = (max_seconds is not None and time.time() - t0 >= max_seconds) or (
            stop_after is not None and done - start >= stop_after)
        if time.time() - last_ckpt >= checkpoint_every or done == steps or stop:
            save_checkpoint(ckpt, net, opt, done, {"elapsed": elapsed0 + time.time() - t_start, "seed": seed,
                                                   "steps": steps, "batch": batch, "lr": lr})
            last_ckpt = time.time()
        if stop and done < steps:
            log(f"stopped at step {done} of {steps}: continue with --resume")
            return None
    train_seconds = elapsed0 + time.time() - t_start
    net.eval()
    held_keys = None
    report = evaluate_lips(net, [c for c in clips if c.heldout], params, held_keys)
    report_train = evaluate_lips(net, [c for c in clips if not c.heldout and c.mel_rows is not None][:20], params)
    params.audio_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    params.audio_config = dict(net.config)
    params.info.update({
        "train": {"steps": steps, "batch": batch, "seq": SEQ, "lr": lr, "seed": seed, "nce_weight": nce_weight,
                  "min_sync": min_sync, "left_out_clips": train_data.dropped,
                  "gap_weight": gap_weight, "seconds": round(train_seconds, 1), "threads": threads,
                  "parameters": int(sum(p.numel() for p in net.parameters())),
                  "clips": len(train_data.target), "frames": int(sum(len(t) for t in train_data.target))},
        "heldout_people": heldout,
        "heldout": {k: v for k, v in report.items() if k != "per_clip"},
        "train_subset": {k: v for k, v in report_train.items() if k != "per_clip"},
    })
    save_params(params, out / "meshwarp.safetensors")
    write_atomic(out / "heldout.json", json.dumps({"heldout": report, "train_subset": report_train,
                                                   "train_seconds": round(train_seconds, 1),
                                                   "total_seconds": round(time.time() - t0, 1)}, indent=1))
    try:
        plot(out, clips, net, params, report)
    except Exception as e:  # figures are a convenience; the run's results are already written
        log(f"figures skipped ({e})")
    log(f"held-out lips r (pooled) {report.get('lips_r_pooled')}, mean per clip {report.get('lips_r_mean')}; "
        f"mouth-code NMSE {report.get('mouth_code_nmse')}; {train_seconds:.0f} s of training")
    return report


def _append_log(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()})


def _trim_log(path: Path, step: int) -> None:
    """Drop log rows past the resumed step (they were written after the last checkpoint)."""
    if not path.exists():
        return
    if step == 0:
        path.unlink()
        return
    lines = path.read_text().splitlines()
    keep = lines[:1] + [ln for ln in lines[1:] if ln and int(ln.split(",")[0]) <= step]
    write_atomic(path, "\n".join(keep) + "\n")


def plot(out: Path, clips, net, params, report) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(out / "log.csv")))
    if rows:
        step = [int(r["step"]) for r in rows]
        fig, ax = plt.subplots(1, 3, figsize=(12, 3.2))
        titles = ("training: mouth code (NMSE)", "training: lip gap, run mean removed", "training: InfoNCE")
        for a, k, title in zip(ax, ("reg", "gap", "nce"), titles):
            a.plot(step, [float(r[k]) for r in rows])
            a.set_title(title), a.set_xlabel("step")
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=90)
        plt.close(fig)
    per = sorted(report.get("per_clip", []), key=lambda p: -p["frames"])[:3]
    if per:
        from ...data.corpus import mel_windows_from_rows
        from .audio import predict_mouth
        fig, ax = plt.subplots(len(per), 1, figsize=(10, 2.4 * len(per)), squeeze=False)
        by_key = {c.key: c for c in clips}
        for a, p in zip(ax[:, 0], per):
            c = by_key[p["clip"]]
            t = min(len(c.mesh), (len(c.mel_rows) - 16) // 4)
            pred = predict_mouth(net, mel_windows_from_rows(c.mel_rows, t))
            real = C.measure(c.mesh[:t], params, reference=c.ref)
            codes = real.copy()
            codes.mouth[:] = pred
            portrait = C.measure(c.mesh[c.ref], params, reference=0)
            a.plot(S.mouth_opening(c.mesh[:t]), label="real mesh")
            a.plot(S.mouth_opening(C.compose(c.mesh[c.ref], portrait, codes, params)), label="from speech")
            a.set_title(f"{p['clip'][:60]}  r = {p['lips_r']:.2f}", fontsize=9)
            a.set_ylabel("mouth opening")
        ax[0, 0].legend(fontsize=8)
        ax[-1, 0].set_xlabel("frame (25 fps)")
        fig.tight_layout()
        fig.savefig(out / "heldout_lips.png", dpi=90)
        plt.close(fig)


def evaluate_file(data: Path, params_path: Path, heldout_file: Path | None = None, log=print) -> dict:
    """Held-out lips figures (``evaluate_lips``) of a parameters file on a prepared corpus."""
    from .audio import from_params

    params = load_params(params_path)
    clips, _ = load_corpus(Path(data), heldout_file, log)
    _prepare_geometry(clips)
    return evaluate_lips(from_params(params), [c for c in clips if c.heldout], params)


# ---------------------------------------------------------------------------------------------- command


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdfgc.families.meshwarp.train",
                                description="Fit and train the mesh-warp family on a prepared corpus.")
    p.add_argument("--data", required=True, type=Path, help="a `pdfgc prepare` output folder")
    p.add_argument("--out", required=True, type=Path, help="run folder (checkpoint, log, result)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch", type=int, default=16, help="16-frame runs per step")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--checkpoint-every", type=float, default=120.0, help="seconds between checkpoints")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--heldout", type=Path, default=None, help="held-out people list (default: the package's)")
    p.add_argument("--gap-weight", type=float, default=5.0, help="weight of the lip-gap loss")
    p.add_argument("--nce-weight", type=float, default=0.1, help="weight of the audio-visual InfoNCE")
    p.add_argument("--min-sync", type=float, default=0.1,
                   help="leave out training clips whose sound-lip sync score is below this (-1: keep all)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (with a checkpoint) after this long; --resume continues")
    p.add_argument("--fer-every", type=int, default=0, metavar="N",
                   help="fer reads every N-th frame of the unlabelled clips; its confident frames join the emotion "
                        "label fit (0: labelled clips only)")
    p.add_argument("--audio-from", type=Path, default=None, metavar="FILE",
                   help="refit the geometry only and keep this parameters file's audio network (same mouth basis)")
    p.add_argument("--evaluate", type=Path, default=None, metavar="FILE",
                   help="only print the held-out figures of a parameters file (JSON), no training")
    args = p.parse_args(argv)
    try:
        if args.evaluate is not None:
            report = evaluate_file(args.data, args.evaluate, args.heldout, log=lambda m: print(m, file=sys.stderr))
            print(json.dumps(report, indent=1))
            return 0
        if args.steps < 1 or args.batch < 1:
            raise InputError("--steps and --batch must be positive")
        train(args.data, args.out, steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
              resume=args.resume, checkpoint_every=args.checkpoint_every, log_every=args.log_every,
              threads=args.threads, heldout_file=args.heldout, gap_weight=args.gap_weight,
              nce_weight=args.nce_weight, min_sync=None if args.min_sync <= -1 else args.min_sync,
              max_seconds=None if args.max_minutes is None else 60 * args.max_minutes,
              fer_every=args.fer_every, audio_from=args.audio_from)
    except PDFGCError as e:
        print(f"pdfgc: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
