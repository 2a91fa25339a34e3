"""Fitting the mesh-warp family from a prepared corpus (``pdfgc prepare``): what ``pdfgc train --config meshwarp``
runs.

    python -m pdfgc.families.meshwarp.train --data DIR --out runs/meshwarp [--speech-cache DIR] [--resume]

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
   ``--audio-from FILE`` stops here and writes ``OUT/meshwarp.safetensors`` with FILE's lips head (the same
   mouth basis).
3. **Speech features** (``lips_train.cache_prepared``): the prepared corpus keeps no sound, so each prepared clip
   with sound is traced to its raw clip (``ClipInfo.source`` under the prepared manifest's ``settings.raw_root``;
   frame f is the raw clip's frame ``start_frame + f``), whose Whisper base block outputs are cached once per raw
   clip in ``--speech-cache DIR`` (default ``OUT/speech``; a cache made by ``lips_train cache`` serves as is, and
   then the raw corpus is not needed).
4. **Lips head** (``lips_train.fit_command``: standardised blocks -> PCA -> ridge over the frame's window, penalty
   and gain by cross-validation over the training people) -> ``OUT/meshwarp.safetensors`` (written once, whole),
   ``OUT/lips.json`` (the cross-validation report) and ``OUT/heldout.json`` (``evaluate_lips`` on the held-out
   people). ``--evaluate FILE`` prints the held-out figures of any parameters file instead.
5. **Resuming**: the same command with ``--resume`` reuses ``OUT/geometry.safetensors`` and every cached feature
   file (written atomically, one per clip), so a killed run loses at most the clip being encoded; the head's fit
   itself takes seconds.
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

from ...errors import InputError, PDFGCError
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


def gap_direction(params: MeshParams) -> np.ndarray:
    """(Dm,) how each mouth code moves the inner-lip gap (lower lip 14 minus upper lip 13, canonical y)."""
    return params.mouth_basis[:, 14, 1] - params.mouth_basis[:, 13, 1]


# ---------------------------------------------------------------------------------------------- evaluation


def evaluate_lips(head, clips, cache: Path, params: MeshParams) -> dict:
    """Held-out lips (``clips``: ``lips_train.LipClip``): per clip the head's mouth code (``lips_train.predict_clip``)
    composed onto the clip's own neutral frame with the clip's real pose, lids and gaze; Pearson r of
    ``signals.mouth_opening`` of that mesh against the real mesh's (per clip, and pooled over all frames);
    ``oracle_r``: the same with the real mouth code (what the code and compose can carry). Regression error against
    the clip's mouth code from its closed mouth: squared error over the codes' within-clip variance
    (``mouth_code_nmse``; the always-closed prediction scores ``closed_mouth_nmse``), its lip-gap part, and the RMS
    code error per frame (canonical units, i.e. the root of the summed squared point errors)."""
    from .lips_train import predict_clip

    per = []
    all_pred, all_real, all_oracle = [], [], []
    se = var = gse = gvar = zse = 0.0
    g = gap_direction(params)
    for c in clips:
        t = len(c.target)
        if t < SEQ or not c.valid.any():
            continue
        pred = predict_clip(head, cache, c)
        mesh = c.mesh[:t]
        real = C.measure(mesh, params, reference=c.ref)
        target = c.target
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


def train(data: Path, out: Path, resume: bool = False, threads: int = 1, heldout_file: Path | None = None,
          mouth_dim: int = 16, emotion_dim: int = 16, fer_every: int = 0, audio_from: Path | None = None,
          speech_cache: Path | None = None, layers=(2, 3, 4), components: int = 64,
          stop_after: str | None = None, log=print) -> dict | None:
    """The geometry fit, the speech features, the lips head fit -> ``OUT/meshwarp.safetensors`` (module doc).
    ``stop_after`` ('geometry', 'features'; tests) ends the run there, as a kill would."""
    import torch

    from ...data import PreparedCorpus
    from . import lips_train as LT
    from .lips import from_params as head_from_params

    torch.set_num_threads(threads)
    PreparedCorpus(data)   # a missing or broken corpus is one error line, before any run folder exists
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    geom_path, result = out / "geometry.safetensors", out / "meshwarp.safetensors"
    cache = Path(speech_cache) if speech_cache is not None else out / "speech"
    if not resume and (geom_path.exists() or result.exists()):
        raise InputError(f"{out} already holds a run (geometry.safetensors): add --resume to continue it, "
                         "or use a new --out folder")
    t0 = time.time()
    if resume and geom_path.exists():
        params = load_params(geom_path)
        log(f"resumed: geometry from {geom_path}")
    else:
        if resume:
            log(f"no geometry in {out}: starting from scratch")
        clips, _ = load_corpus(Path(data), heldout_file, log)
        fer = None
        if fer_every > 0:   # fer's reading is the slow part (~90 s): kept in the run folder for a rerun
            fer_cache = out / f"fer_every{fer_every}.npz"
            if fer_cache.is_file():
                with np.load(fer_cache) as z:
                    fer = {k: z[k] for k in z.files}
            else:
                fer = fer_probabilities(Path(data), clips, fer_every, log)
                with atomic_path(fer_cache) as tmp:
                    with open(tmp, "wb") as fh:
                        np.savez(fh, **fer)
        params = fit_geometry(clips, mouth_dim, emotion_dim, log=log, fer=fer)
        params.info["heldout_people"] = read_heldout(Path(heldout_file) if heldout_file else HELDOUT_FILE)
        save_params(params, geom_path)
    if stop_after == "geometry":
        return None
    if audio_from is not None:   # geometry only: the lips head of an earlier file on the same mouth basis
        old = load_params(audio_from)
        if old.audio_state is None or old.mouth_basis.shape != params.mouth_basis.shape or not np.allclose(
                old.mouth_basis, params.mouth_basis, atol=1e-5):
            raise InputError(f"--audio-from {audio_from}: no lips head on the same mouth basis as this fit")
        with atomic_path(result) as tmp:
            save_params(params, tmp)
            LT.install_head(head_from_params(old), old.info.get("lips", {}), tmp)
        log(f"geometry refitted, lips head of {audio_from} kept -> {result}")
        return {"geometry_only": True}
    LT.cache_prepared(Path(data), cache, log)   # resumable: a clip whose features exist is skipped
    if stop_after == "features":
        return None
    with atomic_path(result) as tmp:
        save_params(params, tmp)
        report = LT.fit_command(Path(data), cache, tmp, out / "lips.json", [int(x) for x in layers], components,
                                compare=False, log=lambda m: log(m.replace(str(tmp), str(result))),
                                heldout_file=heldout_file)
        params = load_params(tmp)
        held = [c for c in LT.load_lip_clips(Path(data), cache, params, heldout_file, log=lambda m: None)
                if c.heldout]
        heldout = evaluate_lips(head_from_params(params), held, cache, params)
        params.info["heldout"] = {k: v for k, v in heldout.items() if k != "per_clip"}
        save_params(params, tmp)
    write_atomic(out / "heldout.json", json.dumps({"heldout": heldout, "lips": {k: v for k, v in report.items()
                                                                                if k != "per_clip_oof"},
                                                   "total_seconds": round(time.time() - t0, 1)}, indent=1,
                                                  default=float))
    log(f"lips head -> {result}; held-out lips r (pooled) {heldout.get('lips_r_pooled')}, mean per clip "
        f"{heldout.get('lips_r_mean')} ({heldout.get('clips')} clips)")
    return heldout


def evaluate_file(data: Path, params_path: Path, heldout_file: Path | None = None,
                  speech_cache: Path | None = None, log=print) -> dict:
    """Held-out lips figures (``evaluate_lips``) of a parameters file on a prepared corpus (speech features cached
    in ``speech_cache``, computed there when missing)."""
    from . import lips_train as LT
    from .lips import from_params as head_from_params

    if speech_cache is None:
        raise InputError("--evaluate needs --speech-cache DIR (the speech features' folder; computed when missing)")
    params = load_params(params_path)
    head = head_from_params(params)
    LT.cache_prepared(Path(data), speech_cache, log)
    held = [c for c in LT.load_lip_clips(Path(data), speech_cache, params, heldout_file, log=log) if c.heldout]
    return evaluate_lips(head, held, Path(speech_cache), params)


# ---------------------------------------------------------------------------------------------- command


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdfgc.families.meshwarp.train",
                                description="Fit the mesh-warp family (geometry, then the lips head) on a prepared "
                                            "corpus.")
    p.add_argument("--data", required=True, type=Path, help="a `pdfgc prepare` output folder")
    p.add_argument("--out", required=True, type=Path, help="run folder (geometry, speech features, result)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--heldout", type=Path, default=None, help="held-out people list (default: the package's)")
    p.add_argument("--speech-cache", type=Path, default=None, metavar="DIR",
                   help="folder of the raw clips' Whisper features (`lips_train cache`; default OUT/speech): "
                        "missing ones are computed from the raw corpus the prepared one was made from")
    p.add_argument("--layers", default="2,3,4", help="Whisper encoder blocks the lips head reads")
    p.add_argument("--components", type=int, default=64, help="principal axes of the blocks' outputs")
    p.add_argument("--fer-every", type=int, default=0, metavar="N",
                   help="fer reads every N-th frame of the unlabelled clips; its confident frames join the emotion "
                        "label fit (0: labelled clips only)")
    p.add_argument("--audio-from", type=Path, default=None, metavar="FILE",
                   help="refit the geometry only and keep this parameters file's lips head (same mouth basis)")
    p.add_argument("--evaluate", type=Path, default=None, metavar="FILE",
                   help="only print the held-out figures of a parameters file (JSON), no fitting")
    args = p.parse_args(argv)
    try:
        try:
            layers = [int(x) for x in args.layers.split(",")]
        except ValueError:
            raise InputError(f"--layers: comma-separated block numbers, got '{args.layers}'") from None
        if args.evaluate is not None:
            report = evaluate_file(args.data, args.evaluate, args.heldout, args.speech_cache,
                                   log=lambda m: print(m, file=sys.stderr))
            print(json.dumps(report, indent=1))
            return 0
        train(args.data, args.out, resume=args.resume, threads=args.threads, heldout_file=args.heldout,
              fer_every=args.fer_every, audio_from=args.audio_from, speech_cache=args.speech_cache, layers=layers,
              components=args.components)
    except PDFGCError as e:
        print(f"pdfgc: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
