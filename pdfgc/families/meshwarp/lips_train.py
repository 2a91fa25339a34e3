"""Training the lips head (``lips.LipsHead``) on the prepared corpus's clips with sound.

    python -m pdfgc.families.meshwarp.lips_train cache --raw ../shared/data/corpus --cache DIR
    python -m pdfgc.families.meshwarp.lips_train fit --data PREPARED --cache DIR --weights FILE.safetensors
    python -m pdfgc.families.meshwarp.lips_train distil --raw RAW_CORPUS --features DIR --weights FILE.safetensors

(``distil``: the live head, fitted to the offline head's codes; ``fit-live``: the live head fitted on the real mouths,
as the offline one; ``copy`` / ``copy-live``: one part of a parameters file into another.)

1. **Features** (``cache``): per raw clip with sound, the speech stream's slabs (``speech.clip_slabs``) of Whisper
   base's blocks ``CACHE_LAYERS``, float16, one ``.npy`` per raw clip under the cache folder (resumable: a clip
   whose file exists is skipped). A prepared clip's frame f is its raw clip's frame ``start_frame + f``.
2. **Targets**: the mouth code against each clip's closed mouth (``geometry_fit._prepare_geometry``), divided by the
   speaker's mouth scale (RMS of the lip gap over that person's speech frames) and multiplied by the training
   people's median scale: every speaker articulates alike in the targets.
3. **Head** (``fit``): standardised block outputs -> PCA -> a ridge regression over the per-frame window; the ridge
   penalty and the amplitude gain (which undoes the regression to the mean: the gain that makes the out-of-fold
   prediction's lip-gap spread equal the real one's) chosen by cross-validation over training people. People in
   ``heldout_identities.txt`` are never used.
4. **Voice classifier** (``fit``, after the head: ``fit_voice_classifier``): ``lips.VoiceFeatures`` (voice over
   music) on the new head's projected windows of the training clips, with silero-vad's raw per-frame decisions as
   labels (its probabilities cached per raw clip beside the speech features, ``<hash>.silero.npz``: a rerun reads
   them), written with the head as ``audio.vad.*``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import PDFGCError
from . import speech as sp

CACHE_LAYERS = (1, 2, 3, 4, 5)
MAX_LAG = 6   # frames (240 ms): real clips carry audio-video offsets up to this


def raw_clips_with_audio(raw_root: Path) -> list[dict]:
    with open(Path(raw_root) / "manifest.csv", newline="", encoding="utf-8") as f:
        return [r for r in csv.DictReader(f) if r.get("has_audio") == "True"]


def cache_name(local_path: str) -> str:
    return hashlib.sha1(local_path.encode()).hexdigest()[:16] + ".npy"


def cache_features(raw_root: Path, cache: Path, log=print) -> None:
    """Features of every raw clip with sound listed in the raw corpus's manifest.csv."""
    cache_sources(raw_root, [r["local_path"] for r in raw_clips_with_audio(raw_root)], cache, log)


def cache_prepared(data: Path, cache: Path, log=print) -> None:
    """Features of the raw clips behind a prepared corpus's clips with sound (the raw folder from the prepared
    corpus's ``settings.raw_root``; a clip already in ``cache`` needs no raw file)."""
    from ...data import PreparedCorpus
    from ...errors import InputError

    corpus = PreparedCorpus(data)
    sources = sorted({i.source for i in corpus.clips if i.has_audio})
    missing = [s for s in sources if not (Path(cache) / cache_name(s)).exists()]
    root = corpus.manifest.get("settings", {}).get("raw_root")
    if missing and not (root and Path(root).is_dir()):
        raise InputError(f"{data}: its raw corpus folder ({root}, settings.raw_root of manifest.json) is not here "
                         f"and {len(missing)} clips with sound have no speech features in {cache}: pass the raw "
                         "folder's features with --speech-cache DIR (`lips_train cache`)")
    if missing:
        cache_sources(Path(root), missing, cache, log)


def cache_sources(raw_root: Path, sources: list[str], cache: Path, log=print) -> None:
    import torch

    from ...media.audio_io import decode_speech

    torch.set_num_threads(1)
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    enc = None
    for i, src in enumerate(sources):
        out = cache / cache_name(src)
        if out.exists():
            continue
        if enc is None:
            enc = sp.load_encoder(max(CACHE_LAYERS))
        t0 = time.time()
        try:
            wav, _, _ = decode_speech(Path(raw_root) / src)
        except Exception as e:   # a broken track: recorded, not fatal for the others
            log(f"skip {src}: {e}")
            continue
        n = -(-len(wav) // sp.VIDEO_SAMPLES)
        slabs = sp.clip_slabs(enc, CACHE_LAYERS, wav, n).astype(np.float16)
        tmp = out.with_suffix(".tmp.npy")
        np.save(tmp, slabs)
        tmp.rename(out)
        log(f"speech features {i + 1}/{len(sources)} {src} {len(wav) / 16000:.1f} s in {time.time() - t0:.1f} s")


# ---------------------------------------------------------------------------------------------- data


@dataclass
class LipClip:
    key: str
    identity: str
    heldout: bool
    source: str
    start: int                  # first frame in the raw clip
    target: np.ndarray          # (T,Dm) mouth code from the clip's closed mouth (not yet speaker-normalised)
    valid: np.ndarray           # (T,) bool
    mesh: np.ndarray            # (T,478,3)
    ref: int                    # the clip's neutral frame
    lag: int = 0                # frames the lips trail the sound by (set from the first fit)


def load_lip_clips(data: Path, cache: Path, params, heldout_file: Path | None = None, log=print) -> list[LipClip]:
    """The prepared clips with sound whose raw clip has cached features, with their mouth-code targets."""
    from ...data import PreparedCorpus
    from . import codes as C
    from .corpus import load_corpus
    from .geometry_fit import _prepare_geometry

    infos = {i.key: i for i in PreparedCorpus(data).clips}
    clips, _ = load_corpus(Path(data), heldout_file, log)
    clips = [c for c in clips if c.mel_rows is not None and infos[c.key].has_audio
             and (cache is None or (Path(cache) / cache_name(infos[c.key].source)).exists())]
    _prepare_geometry(clips)
    out = []
    for c in clips:
        if not c.valid.any() or c.closed is None:
            continue
        tgt = C.project_codes(np.nan_to_num(c.canon - c.closed), params.mouth_basis).astype(np.float32)
        out.append(LipClip(c.key, c.identity, c.heldout, infos[c.key].source, int(infos[c.key].start_frame), tgt,
                           c.valid.copy(), c.mesh, int(c.ref)))
    return out


def clip_windows(slabs: np.ndarray, start: int, count: int) -> np.ndarray:
    """(count, WINDOW, ...) the windows of raw frames [start, start+count) from a raw clip's slabs (zeros past
    the slabs: frames after the sound)."""
    g = start + np.arange(count)
    k, j = g // sp.HOP_VIDEO, g % sp.HOP_VIDEO
    ok = k < len(slabs)
    idx = (j[:, None] * sp.ENC_PER_VIDEO + np.arange(sp.WINDOW)[None])
    out = np.zeros((count, sp.WINDOW) + slabs.shape[2:], slabs.dtype)
    out[ok] = slabs[k[ok][:, None], idx[ok]]
    return out


def _slabs(cache: Path, source: str, layers) -> np.ndarray:
    a = np.load(Path(cache) / cache_name(source), mmap_mode="r")
    return np.asarray(a[:, :, [CACHE_LAYERS.index(x) for x in layers]], np.float32)


def lip_gap_direction(params) -> np.ndarray:
    """(Dm,) how each mouth code moves the inner-lip gap (lower lip 14 minus upper lip 13, canonical y)."""
    return params.mouth_basis[:, 14, 1] - params.mouth_basis[:, 13, 1]


def gap_direction(params) -> np.ndarray:
    return lip_gap_direction(params).astype(np.float32)


def speaker_scales(clips: list[LipClip], g: np.ndarray) -> dict[str, float]:
    """Per person, the RMS of the lip gap (from the closed mouth) over the person's valid frames."""
    acc: dict[str, list] = {}
    for c in clips:
        acc.setdefault(c.identity, []).append((c.target[c.valid] @ g))
    return {k: float(np.sqrt(np.mean(np.square(np.concatenate(v))))) for k, v in acc.items()}


# ---------------------------------------------------------------------------------------------- fit


def fit_pca(feats: list[np.ndarray], components: int):
    """(mean, scale, proj) of the encoder frames (rows of the slabs), standardised per dimension."""
    x = np.concatenate([f.reshape(-1, f.shape[-2] * f.shape[-1])[::3] for f in feats]).astype(np.float64)
    mean, scale = x.mean(0), x.std(0) + 1e-3
    z = (x - mean) / scale
    w, v = np.linalg.eigh(z.T @ z / len(z))
    proj = v[:, ::-1][:, :components]
    return mean.astype(np.float32), scale.astype(np.float32), proj.astype(np.float32)


def design(clip: LipClip, slabs: np.ndarray, mean, scale, proj) -> np.ndarray:
    """(T, WINDOW*P) the ridge's inputs for a clip's frames."""
    z = ((slabs.reshape(slabs.shape[0], slabs.shape[1], -1) - mean) / scale) @ proj   # (K, SLAB, P)
    return clip_windows(z, clip.start, len(clip.target)).reshape(len(clip.target), -1)


def ridge(x: np.ndarray, y: np.ndarray, lam: float):
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + lam * len(x) * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, my - mx @ w


def shifted(y: np.ndarray, valid: np.ndarray, lag: int):
    """Targets and validity shifted so frame t's target is the mouth at t + lag (the lips trail the sound)."""
    if lag == 0:
        return y, valid
    yy, vv = np.zeros_like(y), np.zeros_like(valid)
    if lag > 0:
        yy[:-lag], vv[:-lag] = y[lag:], valid[lag:]
    else:
        yy[-lag:], vv[-lag:] = y[:lag], valid[:lag]
    return yy, vv


def _folds(clips: list[LipClip], k: int = 5) -> list[int]:
    people = sorted({c.identity for c in clips})
    rng = np.random.default_rng(0)
    order = {p: i % k for i, p in enumerate(rng.permutation(people))}
    return [order[c.identity] for c in clips]


def best_lag(real: np.ndarray, pred: np.ndarray, max_lag: int = MAX_LAG) -> tuple[int, float]:
    """(lag, r): real[t + lag] best follows pred[t] (signals.best_offset)."""
    from ...evaluation import signals as S

    return S.best_offset(pred, real, max_lag)


class Fit:
    """Features and targets of the training clips for one choice of encoder blocks; ridge fits with CV."""

    def __init__(self, clips: list[LipClip], cache: Path | None, layers, components: int, g: np.ndarray, log=print,
                 x: list[np.ndarray] | None = None, pca=None):
        """``x`` and ``pca``: the design of every clip and its projection, computed elsewhere (the live head's)."""
        self.clips, self.layers, self.g = clips, list(layers), g
        if x is None:
            slabs = {c.source: _slabs(cache, c.source, layers) for c in clips}
            self.pca = fit_pca(list(slabs.values()), components)
            self.x = [design(c, slabs[c.source], *self.pca) for c in clips]
        else:
            self.pca, self.x = pca, x
        scales = speaker_scales(clips, g)
        self.target_scale = float(np.median(list(scales.values())))
        self.y = [c.target * (self.target_scale / scales[c.identity]) for c in clips]
        self.folds = _folds(clips)

    def _xy(self, idx, lagged: bool):
        xs, ys = [], []
        for i in idx:
            c = self.clips[i]
            y, v = shifted(self.y[i], c.valid, c.lag if lagged else 0)
            xs.append(self.x[i][v]), ys.append(y[v])
        return np.concatenate(xs), np.concatenate(ys)

    def oof(self, lam: float, lagged: bool, use=None) -> list[np.ndarray]:
        """Out-of-fold predictions (T,Dm) of every clip (folds by person)."""
        use = np.ones(len(self.clips), bool) if use is None else use
        out = [None] * len(self.clips)
        for f in sorted(set(self.folds)):
            tr = [i for i in range(len(self.clips)) if self.folds[i] != f and use[i]]
            w, b = ridge(*self._xy(tr, lagged), lam)
            for i in range(len(self.clips)):
                if self.folds[i] == f:
                    out[i] = self.x[i] @ w + b
        return out

    def scores(self, pred) -> list[tuple[int, float, float]]:
        """Per clip (lag, r, std ratio pred/real) of the lip gap."""
        out = []
        for c, y, p in zip(self.clips, self.y, pred):
            real = np.where(c.valid, y @ self.g, np.nan)
            lag, r = best_lag(real, p @ self.g)
            out.append((lag, r, float(np.std(p @ self.g) / max(np.nanstd(real), 1e-9))))
        return out


LAMBDAS = (0.3, 1.0, 3.0, 10.0, 30.0)   # ridge penalty x frames, on standardised PCA inputs
MIN_SYNC = 0.1     # a training clip whose out-of-fold r stays below this has sound that is not its lips'


def cross_validate(fit: Fit, log=print, lags: dict[str, int] | None = None) -> dict:
    """Penalty by out-of-fold median r, then per-clip lags and the sync filter, then the amplitude gain. ``lags``:
    each clip's audio-video offset given (clip key -> frames; the live head takes the offline fit's, so that a
    shorter look-ahead cannot be traded for lips that trail the sound)."""
    if len(set(fit.folds)) < 2:   # one person: nothing to validate across people (tiny corpora, tests)
        lam, n = LAMBDAS[len(LAMBDAS) // 2], len(fit.clips)
        log(f"  one training person: no cross-validation (lambda {lam}, gain 1, no lag, every clip kept)")
        return {"layers": fit.layers, "lambda": lam, "keep": np.ones(n, bool), "oof_r_median": float("nan"),
                "oof_r_median_all": float("nan"), "std_ratio": 1.0, "gain": 1.0, "lags": [0] * n, "dropped": [],
                "per_clip": []}
    if lags is not None:
        for c in fit.clips:
            c.lag = int(lags.get(c.key, 0))
    best = None
    for lam in LAMBDAS:
        sc = fit.scores(fit.oof(lam, lagged=lags is not None))
        med = float(np.nanmedian([r for _, r, _ in sc]))
        log(f"  blocks {fit.layers} lambda {lam}: out-of-fold median r {med:.3f}")
        if best is None or med > best[1]:
            best = (lam, med, sc)
    lam, _, sc = best
    keep = np.array([np.isfinite(r) and r >= MIN_SYNC for _, r, _ in sc])
    if lags is None:
        for c, (lag, _, _) in zip(fit.clips, sc):
            c.lag = int(lag)
    sc2 = fit.scores(fit.oof(lam, lagged=True, use=keep))
    rs = np.array([r for _, r, _ in sc2])
    ratio = float(np.median([a for (_, r, a), k in zip(sc2, keep) if k]))
    return {"layers": fit.layers, "lambda": lam, "keep": keep, "oof_r_median": float(np.nanmedian(rs[keep])),
            "oof_r_median_all": float(np.nanmedian(rs)), "std_ratio": ratio, "gain": 1.0 / ratio,
            "lags": [c.lag for c in fit.clips], "dropped": [c.key for c, k in zip(fit.clips, keep) if not k],
            "per_clip": [{"clip": c.key, "identity": c.identity, "r": round(float(r), 4), "lag": int(lag)}
                         for c, (lag, r, _) in zip(fit.clips, sc2)]}


def make_head(fit: Fit, cv: dict, params, window: sp.SpeechWindow = sp.OFFLINE_WINDOW):
    import torch

    from .lips import LipsHead

    w, b = ridge(*fit._xy(np.flatnonzero(cv["keep"]), lagged=True), cv["lambda"])
    mean, scale, proj = fit.pca
    head = LipsHead(fit.layers, proj.shape[1], params.mouth_dim, window=window)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))
    head.mean.copy_(t(mean)), head.scale.copy_(t(scale)), head.proj.copy_(t(proj))
    head.weight.copy_(t(w)), head.bias.copy_(t(b)), head.gain.fill_(cv["gain"])
    head.gap_direction.copy_(t(fit.g)), head.gap_rms.fill_(fit.target_scale)
    return head.eval()


LAYER_SETS = ((1,), (2,), (3,), (4,), (5,), (1, 2), (2, 3), (2, 3, 4), (1, 2, 3))


def per_language(data: Path, clips: list[LipClip], per_clip: list[dict], log=print) -> dict:
    """Out-of-fold median r per language (Whisper's own language detection through CTranslate2, on each clip's
    first 30 s; the raw corpus folder from the prepared corpus's settings)."""
    import ctranslate2
    import torch

    from ...data import PreparedCorpus
    from ...media.audio_io import decode_speech

    raw = Path(PreparedCorpus(data).manifest["settings"]["raw_root"])
    d = sp._package_dir(sp.PACKAGES[0])
    model = ctranslate2.models.Whisper("whisper-base", device="cpu", compute_type="float32", intra_threads=1,
                                       files={"model.bin": sp.model_bytes(), "config.json": (d / "config.json")
                                              .read_bytes(), "vocabulary.txt": (d / "vocabulary.txt").read_bytes()})
    logmel, out = sp.LogMel(), {}
    for c, p in zip(clips, per_clip):
        wav = decode_speech(raw / c.source)[0][c.start * 640:(c.start + len(c.target)) * 640][:480000]
        x = np.zeros(480000, np.float32)
        x[:len(wav)] = wav
        mel = logmel(torch.from_numpy(x)[None]).numpy()
        lang = model.detect_language(ctranslate2.StorageView.from_array(mel))[0][0][0].strip("<|>")
        p["language"] = lang
        out.setdefault(lang, []).append(p["r"])
    res = {k: {"clips": len(v), "r_median": round(float(np.nanmedian(v)), 3)} for k, v in sorted(out.items())}
    log(f"out-of-fold r per language: {res}")
    return res


def fit_command(data: Path, cache: Path, weights: Path, out: Path | None, layers, components: int,
                compare: bool, log=print, languages: bool = False, heldout_file: Path | None = None) -> dict:
    """Fit the head on the training people and its voice classifier (``fit_voice_classifier``: silero-vad's
    probabilities cached beside the speech features), write both into ``weights`` (``install_head``), and the CV
    report."""
    import json

    from .params import load_params

    params = load_params(weights)
    g = gap_direction(params)
    clips = [c for c in load_lip_clips(data, cache, params, heldout_file, log=log) if not c.heldout]
    if not clips:
        from ...errors import InputError
        raise InputError(f"{data}: no clip with sound and a face to fit the lips on (all held out or silent)")
    log(f"lips: {len(clips)} training clips with sound, {sum(len(c.target) for c in clips)} frames, "
        f"{len({c.identity for c in clips})} people")
    report = {"layer_sets": []}
    if compare:   # which blocks carry the mouth: out-of-fold median r per block set (PCA 64, ridge over the window)
        for ls in LAYER_SETS:
            cv = cross_validate(Fit(clips, cache, ls, components, g), log)
            report["layer_sets"].append({k: cv[k] for k in ("layers", "lambda", "oof_r_median", "oof_r_median_all",
                                                          "std_ratio")})
            log(f"blocks {ls}: out-of-fold median r {cv['oof_r_median']:.3f} (all clips "
                f"{cv['oof_r_median_all']:.3f}), std ratio {cv['std_ratio']:.2f}")
    fit = Fit(clips, cache, layers, components, g)
    cv = cross_validate(fit, log)
    head = make_head(fit, cv, params)
    from ...data import PreparedCorpus

    root = PreparedCorpus(data).manifest.get("settings", {}).get("raw_root")
    voice = fit_voice_classifier(head, clips, cache, Path(root) if root else None, log)
    report.update({"layers": list(layers), "components": components, "lambda": cv["lambda"],
                   "oof_r_median": round(cv["oof_r_median"], 4), "gain": round(cv["gain"], 4),
                   "clips": len(clips), "clips_used": int(cv["keep"].sum()), "dropped": cv["dropped"],
                   "frames": int(sum(len(c.target) for c, k in zip(clips, cv["keep"]) if k)),
                   "people": len({c.identity for c in clips}), "target_scale": fit.target_scale})
    report["voice"] = voice
    report["per_clip_oof"] = cv["per_clip"]
    if languages:
        report["per_language_oof"] = per_language(data, clips, cv["per_clip"], log)
    install_head(head, {k: v for k, v in report.items() if not k.startswith("per_")}, weights)
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=1, default=float) + "\n")
    log(f"lips head -> {weights}: blocks {layers}, lambda {cv['lambda']}, out-of-fold median r "
        f"{cv['oof_r_median']:.3f}, gain {cv['gain']:.2f}")
    return report


# ---------------------------------------------------------------------------------------------- the voice classifier
# ``lips.VoiceFeatures`` (voice over music, issue 24): a logistic regression on the head's own projected window (the
# features inference computes anyway), silero-vad's raw per-frame decision as labels, the training people's clips.
# It reads the head's projection, so it is refitted with every head (``fit_command``) and travels with it
# (``install_head``: ``audio.vad.*``).


def logistic(x: np.ndarray, y: np.ndarray, lam: float = 1e-2, iters: int = 25) -> np.ndarray:
    """(D+1,) weights then bias of an L2 logistic regression (penalty ``lam`` x rows, none on the bias) by Newton
    steps."""
    xb = np.c_[x, np.ones(len(x))]
    w = np.zeros(xb.shape[1])
    reg = lam * len(x) * np.eye(xb.shape[1])
    reg[-1, -1] = 0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-np.clip(xb @ w, -30, 30)))
        g = xb.T @ (p - y) + reg @ w
        h = (xb * (p * (1 - p))[:, None]).T @ xb + reg
        w -= np.linalg.solve(h, g)
    return w


def fit_voice(feats: list[np.ndarray], labels: list[np.ndarray]) -> tuple[np.ndarray, float]:
    """The classifier on per-clip (T, window features) and (T,) bool labels: standardised (mean and std over all
    rows), ``logistic``, then folded to act on the raw features: logit = feat @ w + b. (w float32, b)."""
    x = np.concatenate(feats).astype(np.float64)
    y = np.concatenate(labels)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    w = logistic((x - mu) / sd, y.astype(float))
    return (w[:-1] / sd).astype(np.float32), float(w[-1] - mu @ (w[:-1] / sd))


VOICE_MIN_FRAMES = 16   # a clip with fewer frames of sound gives the classifier no labels (as the benchmark's collect)


def silero_name(source: str) -> str:
    """The cache file of a raw clip's silero-vad probabilities, beside its speech features."""
    return cache_name(source)[:-len(".npy")] + ".silero.npz"


def silero_probs(cache: Path, source: str, raw_root: Path | None, log=print) -> tuple[np.ndarray, int] | None:
    """(silero-vad's probability of every 32 ms window of the raw clip's sound (``lips.voice_probs``, float32), the
    sound's length in samples), cached in ``cache`` (computed once: a rerun or ``--resume`` reads the file); None when
    neither the cache file nor the raw clip is here."""
    f = Path(cache) / silero_name(source)
    if not f.exists():
        if raw_root is None or not (Path(raw_root) / source).is_file():
            return None
        from ...fileio import atomic_path
        from ...media.audio_io import decode_speech
        from .lips import voice_probs

        try:
            wav = decode_speech(Path(raw_root) / source)[0]
        except Exception as e:   # a broken track: its clips are left out, as ``cache_sources`` leaves it out
            log(f"skip {source}: {e}")
            return None
        with atomic_path(f) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, probs=voice_probs(wav).astype(np.float32), samples=len(wav))
    with np.load(f) as z:
        return z["probs"], int(z["samples"])


def voice_data(head, clips: list[LipClip], cache: Path, raw_root: Path | None, log=print):
    """Per clip with at least VOICE_MIN_FRAMES frames of sound: (clip, (T, window features) of ``head``'s projection
    from the cached slabs, (T,) silero's raw decision (>= VAD_THRESHOLD on any of the frame's windows)), T = the
    clip's frames that have sound; and the sources whose silero probabilities could not be had."""
    import torch

    from .lips import VAD_THRESHOLD, frames_of_windows

    out, missing, t0 = [], [], time.time()
    sources = sorted({c.source for c in clips})
    for i, src in enumerate(sources):
        had = (Path(cache) / silero_name(src)).exists()
        got = silero_probs(cache, src, raw_root, log)
        if got is None:
            missing.append(src)
            continue
        if not had:
            log(f"voice labels (silero-vad) {i + 1}/{len(sources)} {src} ({time.time() - t0:.0f} s)")
        probs, samples = got
        with torch.no_grad():
            proj = head.project(torch.from_numpy(_slabs(cache, src, head.layers))).numpy()
        for c in clips:
            if c.source != src:
                continue
            n = min(len(c.target), -(-samples // sp.VIDEO_SAMPLES) - c.start)
            if n < VOICE_MIN_FRAMES:
                continue
            x = clip_windows(proj, c.start, n).reshape(n, -1)
            y = frames_of_windows(probs >= VAD_THRESHOLD, c.start + n)[c.start:]
            out.append((c, x, y))
    return out, missing


def fit_voice_classifier(head, clips: list[LipClip], cache: Path, raw_root: Path | None, log=print) -> dict:
    """Fit ``lips.VoiceFeatures`` for ``head`` on ``clips`` (the training people's) and attach it (``head.voice``,
    ``head.voice_config``: ``install_head`` writes both); the record of the fit, or of why there is none (no clip
    with silero's probabilities, or one class only: the head is then written without it and the rules fall back to
    silero alone)."""
    from .lips import VoiceFeatures

    rows, missing = voice_data(head, clips, cache, raw_root, log)
    if missing:
        log(f"voice classifier: {len(missing)} raw clips have no silero-vad probabilities in {cache} and no readable "
            "raw file (settings.raw_root): their clips are left out")
    y = np.concatenate([r[2] for r in rows]) if rows else np.zeros(0, bool)
    if not y.any() or y.all():
        log(f"voice classifier: not fitted ({len(y)} frames, {int(y.sum())} with speech: both kinds are needed); "
            "the rules will use silero-vad alone")
        head.voice = None
        return {"fitted": False, "frames": int(len(y)), "speech_frames": int(y.sum())}
    t0 = time.time()
    w, b = fit_voice([r[1] for r in rows], [r[2] for r in rows])
    vf = VoiceFeatures(len(w))
    vf.weight.copy_(_t(w)), vf.bias.fill_(b)
    head.voice = vf.eval()
    agree = float(np.mean(np.concatenate([(r[1] @ w + b >= 0) == r[2] for r in rows])))
    head.voice_config = {"labels": "silero-vad >= 0.5 per frame", "clips": len(rows), "frames": int(len(y)),
                         "people": len({r[0].identity for r in rows}),
                         "fit": "python -m pdfgc.families.meshwarp.lips_train fit (pdfgc train --config meshwarp)"}
    log(f"voice classifier: {len(rows)} clips, {len(y)} frames ({y.mean():.0%} speech to silero), fitted in "
        f"{time.time() - t0:.1f} s, agrees with silero on {agree:.1%} of them")
    return {"fitted": True, **head.voice_config, "speech_share": round(float(y.mean()), 4),
            "train_agreement": round(agree, 4)}


def _t(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, np.float32))


def predict_clip(head, cache: Path, clip: LipClip) -> np.ndarray:
    """(T,Dm) the head's mouth codes of a prepared clip's frames from the cached features, with the official
    3-tap smoothing (no voice-activity rules: the figures are the head's own)."""
    import torch

    from ...official_rules import smooth_mouth

    with torch.no_grad():
        z = head.project(torch.from_numpy(_slabs(cache, clip.source, head.layers))).numpy()
        x = torch.from_numpy(clip_windows(z, clip.start, len(clip.target)).reshape(len(clip.target), -1))
        y = (x @ head.weight) * head.gain + head.bias
        return smooth_mouth(y).numpy().astype(np.float32)


def install_head(head, report: dict, weights: Path) -> None:
    """Rewrite ONLY the lips part of a parameters file (``audio.*`` tensors, config ``audio``, info ``lips``)."""
    from .lips import LIVE, VAD, to_config
    from .params import load_params, save_params

    params = load_params(weights)
    live = {k: v for k, v in (params.audio_state or {}).items() if k.startswith(LIVE)}   # the live part stays
    live_cfg = (params.audio_config or {}).get("live")
    # the head's voice classifier (``lips.VoiceFeatures``, read off its projection) travels with it as ``vad.*``
    # (``fit_command`` fits one with every head; a head without one is written without one)
    state = {(VAD + k[len("voice."):] if k.startswith("voice.") else k): v.detach().clone()
             for k, v in head.state_dict().items()}
    vad_cfg = getattr(head, "voice_config", None) if getattr(head, "voice", None) is not None else None
    params.audio_state = state | live
    params.audio_config = (to_config(head) | ({"live": live_cfg} if live_cfg else {})
                           | ({"vad": vad_cfg} if vad_cfg is not None else {}))
    for k in ("train", "train_subset", "heldout", "audio_from"):   # the mel network's records
        params.info.pop(k, None)
    params.info["lips"] = {k: v for k, v in report.items() if k != "layer_sets"}
    save_params(params, weights)


def copy_lips(src: Path, dst: Path) -> None:
    """The lips part of ``src`` into ``dst`` (the rest of ``dst`` unchanged): the merge command."""
    from .lips import from_params
    from .params import load_params

    p = load_params(src)
    if not np.array_equal(p.mouth_basis, load_params(dst).mouth_basis):
        from ...errors import InputError
        raise InputError(f"{dst}: another mouth basis than {src}'s: the lips head predicts codes in its own file's "
                         "basis; fit it anew on this file (`lips_train fit --weights DST`)")
    install_head(from_params(p), p.info.get("lips", {}), dst)


# ---------------------------------------------------------------------------------------------- the live head
# The live head (``pdfgc.live``'s default): a window of 120 ms before a frame's start to 80 ms after it (40 ms past
# the frame's end), Whisper chunks of 2 s ending there, one chunk every LIVE_HOP frames; fitted as the offline head
# is (same people, targets, per-clip audio-video offsets taken from the offline fit, CV, gain) on features cut
# exactly as a live session cuts them, on the offline head's standardisation and principal axes (the same encoder
# states; the PCA is not refitted). Chosen by out-of-fold / held-out code-level median r (2026-12-07; the offline
# head's window refitted the same way: 0.724 / the shipped head: 0.725): 2 s chunks, window to +40 ms, hop 3:
# 0.633 / 0.593; 1 s chunks, same: 0.612 / 0.550; 2 s, to +80 ms, hop 3: 0.662 / 0.640; the same at hop 2: 0.660 /
# 0.624 (hop 2 waits 120 ms instead of 160 ms, for ~0.2 of a core more; benchmarks/results/live/live_heads.md).
LIVE_WINDOW = sp.SpeechWindow(chunk_frames=100, win_before=6, win_after=4)
LIVE_HOP = 2
LIPS_FIT = Path(__file__).resolve().parents[3] / "benchmarks" / "results" / "meshwarp" / "lips_fit.json"


def live_design(clip: LipClip, wav: np.ndarray, enc, offline, window: sp.SpeechWindow, hop: int) -> np.ndarray:
    """(T, window.frames * P) float32: the live head's inputs for a prepared clip's frames, from its raw clip's speech
    cut as a live session cuts it (the speech before the clip's first frame as the chunks' history, the speech after
    it as the look-ahead), projected on ``offline``'s principal axes."""
    import torch

    t = len(clip.target)
    a = clip.start * sp.VIDEO_SAMPLES
    stream = sp.SpeechStream(enc, offline.layers, t, hop, window, history=wav[:a])
    tail = (t + hop) * sp.VIDEO_SAMPLES + window.win_after * sp.ENC_SAMPLES
    out = np.zeros((t, window.frames, offline.proj.shape[1]), np.float32)
    idx = np.arange(hop)[:, None] * sp.ENC_PER_VIDEO + np.arange(window.frames)[None]
    with torch.no_grad():
        for first, slab in stream.push(wav[a:a + tail]) + stream.finish():
            z = offline.project(torch.from_numpy(slab)).numpy()
            n = min(hop, t - first)
            out[first:first + n] = z[idx[:n]]
    return out.reshape(t, -1)


def _code_scores(clips: list[LipClip], preds: list[np.ndarray], g: np.ndarray) -> dict:
    """Held-out, code level (no rules): per clip r of the predicted lip gap with the real one (best lag +-6) and
    the std ratio predicted / real (the real gap at the training people's median articulation is not known for a
    held-out person: the ratio is against the person's own)."""
    rs, amps, lags = [], [], []
    for c, p in zip(clips, preds):
        real = np.where(c.valid, c.target @ g, np.nan)
        lag, r = best_lag(real, p @ g)
        rs.append(r), lags.append(lag), amps.append(float(np.std(p @ g) / max(np.nanstd(real), 1e-9)))
    return {"clips": len(clips), "r_median": round(float(np.nanmedian(rs)), 4),
            "r_mean": round(float(np.nanmean(rs)), 4), "amplitude_median": round(float(np.median(amps)), 3),
            "lag_median": float(np.median(lags)), "per_clip_r": [round(float(r), 4) for r in rs]}


def fit_live_command(data: Path, weights: Path, features: Path, out: Path | None, window: sp.SpeechWindow = LIVE_WINDOW,
                     hop: int = LIVE_HOP, cache: Path | None = None, log=print, heldout_file: Path | None = None,
                     install: bool = True, lags_from: Path = LIPS_FIT) -> dict:
    """Fit the live head (features cut the live way, cached per clip under ``features``: resumable) and write ONLY
    the live part of ``weights`` (``install_live_head``); held-out code-level figures beside the offline head's
    (``cache``: the offline features, for that comparison). ``lags_from``: the offline fit's report, whose per-clip
    audio-video offsets the live fit keeps."""
    import json

    import torch

    from ...data import PreparedCorpus
    from ...media.audio_io import decode_speech
    from .lips import from_params
    from .params import load_params

    torch.set_num_threads(1)
    params = load_params(weights)
    offline = from_params(params)
    g = gap_direction(params)
    corpus = PreparedCorpus(data)
    raw = Path(corpus.manifest.get("settings", {}).get("raw_root", ""))
    clips = load_lip_clips(data, None, params, heldout_file, log=log)
    tag = f"c{window.chunk_frames}_b{window.win_before}_a{window.win_after}_h{hop}"
    folder = Path(features) / tag
    folder.mkdir(parents=True, exist_ok=True)
    enc, x, wavs = None, [], {}
    t0 = time.time()
    for i, c in enumerate(clips):
        f = folder / (hashlib.sha1(c.key.encode()).hexdigest()[:16] + ".npy")
        if not f.exists():
            if enc is None:
                enc = sp.load_encoder(max(offline.layers))
            if c.source not in wavs:
                wavs = {c.source: decode_speech(raw / c.source)[0]}
            d = live_design(c, wavs[c.source], enc, offline, window, hop)
            np.save(folder / (f.stem + ".tmp.npy"), d.astype(np.float16))
            (folder / (f.stem + ".tmp.npy")).rename(f)
            log(f"live features {i + 1}/{len(clips)} {c.key}: {len(c.target)} frames ({time.time() - t0:.0f} s)")
        x.append(np.load(f).astype(np.float32))
    train = [i for i, c in enumerate(clips) if not c.heldout]
    held = [i for i, c in enumerate(clips) if c.heldout]
    pca = tuple(t.numpy() for t in (offline.mean, offline.scale, offline.proj))
    fit = Fit([clips[i] for i in train], None, offline.layers, offline.proj.shape[1], g, x=[x[i] for i in train],
              pca=pca)
    if not Path(lags_from).is_file():
        from ...errors import InputError
        raise InputError(f"{lags_from}: no offline lips fit report (its per-clip audio-video offsets): pass "
                         "--lags-from (the --report of `lips_train fit`)")
    lags = {p["clip"]: int(p["lag"]) for p in json.loads(Path(lags_from).read_text())["per_clip_oof"]}
    cv = cross_validate(fit, log, lags)
    head = make_head(fit, cv, params, window)
    report = {"window": window.config(), "hop": hop, "look_ahead_ms": window.ahead_ms, "lambda": cv["lambda"],
              "oof_r_median": round(cv["oof_r_median"], 4), "gain": round(cv["gain"], 4),
              "clips": len(train), "clips_used": int(cv["keep"].sum()), "dropped": cv["dropped"],
              "people": len({clips[i].identity for i in train}), "target_scale": fit.target_scale}
    hc = [clips[i] for i in held]
    with torch.no_grad():
        live = [((torch.from_numpy(x[i]) @ head.weight) * head.gain + head.bias).numpy() for i in held]
    report["heldout_live"] = _code_scores(hc, live, g)
    if cache is not None:
        report["heldout_offline"] = _code_scores(hc, [predict_clip(offline, cache, c) for c in hc], g)
    log(f"live head: out-of-fold median r {cv['oof_r_median']:.3f} (gain {cv['gain']:.2f}); held-out code-level "
        f"median r {report['heldout_live']['r_median']:.3f}"
        + (f" (offline head {report['heldout_offline']['r_median']:.3f})" if cache is not None else ""))
    if install:
        install_live_head(head, hop, {k: v for k, v in report.items() if not k.startswith("heldout")}, weights)
        log(f"live lips head -> {weights}")
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=1, default=float) + "\n")
    return report


# ---------------------------------------------------------------------------------------------- distillation
# The live head can learn the OFFLINE head's output (its mouth code, smoothed as offline) instead of (or beside) the
# real mouth: the target is a function of the sound alone, so it needs no video and no face, and it is what the live
# lips are compared with. Per audio file, ``distil_features`` keeps what any live head of one chunk cut (chunk
# length, hop, look-ahead) could read: each chunk's slab of encoder frames from DISTIL_BEFORE before its first
# frame's start to the chunk's end, projected on the offline head's principal axes; plus the offline head's codes
# and silero's raw voice flags (the rules) of the same frames.
DISTIL_BEFORE = 16   # encoder frames (320 ms) of the past kept per chunk: the widest window tried


def distil_features(wav: np.ndarray, enc, offline, window: sp.SpeechWindow, hop: int) -> dict:
    """One file's live slabs (K, hop*2 - 2 + DISTIL_BEFORE + window.win_after, P) float16 (chunk k holds frames
    [k hop, (k+1) hop)), the offline head's raw and smoothed codes (T, Dm) and the raw voice flags (T,), T = the
    frames the samples cover. The live cut starts at the file's first sample with zeros before it, as a session."""
    import torch

    from ...official_rules import smooth_mouth
    from .lips import SpeechToMouth, voice_flags

    t = -(-len(wav) // sp.VIDEO_SAMPLES)
    cut = sp.SpeechWindow(window.chunk_frames, DISTIL_BEFORE, window.win_after)
    stream = sp.SpeechStream(enc, offline.layers, t, hop, cut)
    with torch.no_grad():
        z = np.stack([offline.project(torch.from_numpy(s)).numpy() for _, s in stream.push(wav) + stream.finish()])
        raw = SpeechToMouth(offline, enc).raw_codes(wav, t)
        smooth = smooth_mouth(torch.from_numpy(raw)).numpy()
    return {"slabs": z.astype(np.float16), "offline_raw": raw.astype(np.float32),
            "offline": smooth.astype(np.float32), "voice": voice_flags(wav, t)}


def distil_sources(raw_root: Path, heldout_file: Path | None = None) -> list[tuple[str, str, bool]]:
    """(path, identity, held out) of every sound track the distillation may read: the corpus's raw clips with sound
    (manifest identities; held-out people marked) and the speech files of the shared data folder beside the corpus
    (their speakers are none of the held-out people: identity = the file)."""
    from .corpus import HELDOUT_FILE, read_heldout

    held = set(read_heldout(Path(heldout_file) if heldout_file is not None else HELDOUT_FILE))
    rows = raw_clips_with_audio(raw_root)
    out = [(str(Path(raw_root) / r["local_path"]), r["identity_guess"], r["identity_guess"] in held) for r in rows]
    extra = Path(raw_root).parent
    for pat in DISTIL_EXTRA:
        for f in sorted(extra.glob(pat)):
            out.append((str(f), f"extra:{f.relative_to(extra)}", False))
    return out


# speech tracks of ../shared/data outside the corpus (checked by ear of the file list, not the manifest: none of the
# held-out people; sizes in the data README): PD-FGC's demo speech, EDTalk's, LivePortrait's and MegActor's
# driving videos, Real3DPortrait's and EchoMimic's speech
DISTIL_EXTRA = ("pdfgc/*.mp3", "edtalk/*.wav", "edtalk/pose_source2.mp4", "edtalk/uncrop_Obama.mp4",
                "liveportrait/driving_d*.mp4", "megactor/audio_*.mp4", "real3dportrait/*.mp4", "real3dportrait/*.wav",
                "echomimic/*.wav")


def cache_distil(sources: list[tuple[str, str, bool]], folder: Path, window: sp.SpeechWindow, hop: int, weights: Path,
                 log=print, offsets=(0,)) -> None:
    """``distil_features`` of every source (and of each source delayed by each of ``offsets`` samples: other
    alignments of the same speech to the frames), one ``.npz`` per (source, offset) under ``folder/<cut tag>``;
    resumable (done files are skipped)."""
    import torch

    from ...media.audio_io import decode_speech
    from .lips import from_params
    from .params import load_params

    torch.set_num_threads(1)
    offline = from_params(load_params(weights))
    out = Path(folder) / _cut_tag(window, hop)
    out.mkdir(parents=True, exist_ok=True)
    enc, t0 = None, time.time()
    for i, (src, ident, held) in enumerate(sources):
        for off in offsets:
            f = _distil_file(out, src, off)
            if f.exists():
                continue
            if enc is None:
                enc = sp.load_encoder(max(offline.layers))
            try:
                wav = decode_speech(src)[0]
            except Exception as e:   # a broken track: recorded, not fatal for the others
                log(f"skip {src}: {e}")
                break
            wav = np.concatenate([np.zeros(off, np.float32), wav])
            d = distil_features(wav, enc, offline, window, hop)
            tmp = f.with_suffix(".tmp.npz")
            with open(tmp, "wb") as fh:
                np.savez(fh, source=src, identity=ident, heldout=held, offset=off, **d)
            tmp.rename(f)
            log(f"distil features {i + 1}/{len(sources)} {Path(src).name} +{off}: {len(wav) / 16000:.1f} s "
                f"({time.time() - t0:.0f} s)")


def _cut_tag(window: sp.SpeechWindow, hop: int) -> str:
    return f"c{window.chunk_frames}_a{window.win_after}_h{hop}"


def _distil_file(folder: Path, src: str, offset: int) -> Path:
    return Path(folder) / (hashlib.sha1(f"{src}@{offset}".encode()).hexdigest()[:16] + ".npz")


def load_distil(folder: Path, sources: list[tuple[str, str, bool]], offsets=(0,)) -> list[dict]:
    """The cached ``distil_features`` of ``sources`` in one cut's folder (``cache_distil``; a source that could not
    be read has none), slabs as float32."""
    out = []
    for src, _, _ in sources:
        for off in offsets:
            f = _distil_file(folder, src, off)
            if not f.exists():
                continue
            with np.load(f) as z:
                d = {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}
            d["slabs"] = d["slabs"].astype(np.float32)
            out.append(d)
    return out


def distil_inputs(d: dict, window: sp.SpeechWindow, hop: int, phases: bool) -> list[np.ndarray]:
    """Per phase j (frames k hop + j), the (frames, n) inputs of a head of ``window`` read from the cached slabs:
    ``phases``: the whole slab from win_before before the hop's first frame to the chunk's end (``LipsHead``'s
    phase head); else frame j's own window."""
    z = d["slabs"]
    k, rows, _ = z.shape
    t = len(d["offline"])
    out = []
    for j in range(hop):
        lo = DISTIL_BEFORE - window.win_before + (0 if phases else sp.ENC_PER_VIDEO * j)
        hi = rows if phases else DISTIL_BEFORE + sp.ENC_PER_VIDEO * j + window.win_after
        out.append(z[:len(range(j, t, hop)), lo:hi].reshape(-1, (hi - lo) * z.shape[2]))
    return out


class DistilFit:
    """Ridge maps from the live inputs to the offline head's (smoothed) codes, one per phase (or one shared)."""

    def __init__(self, files: list[dict], window: sp.SpeechWindow, hop: int, phases: bool, target: str = "offline"):
        self.window, self.hop, self.phases = window, hop, phases
        self.x = [distil_inputs(d, window, hop, phases) for d in files]
        self.y = [d[target] for d in files]   # "offline": smoothed as offline; "offline_raw": before the smoothing

    def fit(self, idx, lam: float):
        """[(W, b)] per phase (the same one repeated when not ``phases``)."""
        if self.phases:
            return [ridge(np.concatenate([self.x[i][j] for i in idx]),
                          np.concatenate([self.y[i][j::self.hop] for i in idx]), lam) for j in range(self.hop)]
        w = ridge(np.concatenate([x for i in idx for x in self.x[i]]),
                  np.concatenate([self.y[i][j::self.hop] for i in idx for j in range(self.hop)]), lam)
        return [w] * self.hop

    def predict(self, i: int, maps) -> np.ndarray:
        y = np.zeros_like(self.y[i])
        for j, (w, b) in enumerate(maps):
            y[j::self.hop] = self.x[i][j] @ w + b
        return y


def _r(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def offline_final(d: dict, gap_direction: np.ndarray, gap_rms: float) -> np.ndarray:
    """The offline lips of a cached file: the offline rules on its raw codes and voice flags, then the smoothing."""
    import torch

    from .lips import VAD_HANGOVER, smooth_keeping_closures, speech_rules

    speaking = np.convolve(d["voice"].astype(float), np.ones(2 * VAD_HANGOVER + 1), "same") > 0
    return smooth_keeping_closures(torch.from_numpy(speech_rules(d["offline_raw"], speaking, gap_direction,
                                                                 gap_rms))).numpy()


DISTIL_LAMBDAS = (0.1, 0.3, 1.0, 3.0, 10.0)   # ridge penalty x frames, on standardised PCA inputs
# the shipped distilled head (2026-12-07, benchmarks/results/live/live_heads.md): 2 s chunks every 2 frames ending
# 100 ms after the hop's last frame starts, maps from 120 ms before the hop's first frame, the rules' lead 2 frames:
# a 144 ms look-ahead (the chunk's 140 ms, the lead's flags 144 ms with silero's window rounding). The chunk's end
# at +100 rather than +80 ms is free with a lead of 2 (the flags wait longer anyway)
DISTIL_WINDOW = sp.SpeechWindow(chunk_frames=100, win_before=6, win_after=5)
DISTIL_LEAD = 2
# what the live head learns: the offline head's codes before its 3-tap smoothing ("raw": the offline rules find
# closures on those, so a head that learnt the smoothed codes closes the lips less often) or after it ("smoothed")
DISTIL_TARGET = "raw"


def fit_distil_command(raw: Path, features: Path, weights: Path, out: Path | None,
                       window: sp.SpeechWindow = DISTIL_WINDOW,
                       hop: int = LIVE_HOP, phases: bool = True, lead: int = DISTIL_LEAD, data: Path | None = None,
                       log=print, install: bool = True, heldout_file: Path | None = None,
                       target: str = DISTIL_TARGET) -> dict:
    """The live head distilled from the offline one: features of every allowed sound track (``distil_sources``,
    cached under ``features``: resumable), ridge maps to the offline head's smoothed codes with the penalty and an
    amplitude gain chosen by 5-fold cross-validation by person, and ONLY the live part of ``weights`` rewritten.
    Reported: out-of-fold r with the offline codes (per training corpus clip, code level) and with the offline lips
    (live rules with ``lead`` vs the offline rules), the same on the held-out people's clips, and (``data``: the
    prepared corpus) the held-out code-level r with the real mouths beside the offline head's."""
    import json

    import torch

    from .lips import LipsHead, from_params, live_rules
    from .params import load_params

    torch.set_num_threads(1)
    if not (Path(raw) / "manifest.csv").is_file():
        from ...errors import InputError
        raise InputError(f"{raw}: no manifest.csv: pass the raw corpus folder (its clips' sound is read)")
    cut = sp.SpeechWindow(window.chunk_frames, DISTIL_BEFORE, window.win_after)
    if window.win_before > DISTIL_BEFORE:
        raise ValueError(f"win_before {window.win_before}: the cache keeps {DISTIL_BEFORE} encoder frames of past")
    sources = distil_sources(raw, heldout_file)
    cache_distil(sources, features, cut, hop, weights, log)
    files = load_distil(Path(features) / _cut_tag(cut, hop), sources)
    params = load_params(weights)
    offline = from_params(params)
    gd, grms = offline.gap_direction.numpy(), float(offline.gap_rms)
    train = [i for i, d in enumerate(files) if not d["heldout"]]
    held = [i for i, d in enumerate(files) if d["heldout"]]
    corpus = [i for i in train if not str(files[i]["identity"]).startswith("extra:")]
    people = sorted({files[i]["identity"] for i in train})
    order = {p: n % 5 for n, p in enumerate(np.random.default_rng(0).permutation(people))}
    fold = {i: order[files[i]["identity"]] for i in train}
    fit = DistilFit(files, window, hop, phases, "offline_raw" if target == "raw" else "offline")
    log(f"distil: {len(train)} training tracks ({sum(len(fit.y[i]) for i in train)} frames, {len(people)} people or "
        f"files), {len(held)} held out; phases {phases}, window {window.config()}, hop {hop}")
    best = None
    for lam in DISTIL_LAMBDAS:
        oof = {}
        for f in range(5):
            maps = fit.fit([i for i in train if fold[i] != f], lam)
            oof.update({i: fit.predict(i, maps) for i in train if fold[i] == f})
        med = float(np.median([_r(oof[i], files[i]["offline"]) for i in corpus]))
        log(f"  lambda {lam}: out-of-fold median r with the offline codes {med:.4f}")
        if best is None or med > best[1]:
            best = (lam, med, oof)
    lam, _, oof = best
    # the gain that makes the out-of-fold lip-gap spread equal the offline head's (the ridge shrinks toward the mean)
    gain = float(np.median([np.std(fit.y[i] @ gd) / max(np.std(oof[i] @ gd), 1e-9) for i in corpus]))

    def scores(idx, pred):
        code = [_r(pred[i], files[i]["offline"]) for i in idx]
        final = [_r(live_rules(pred[i], files[i]["voice"], gd, grms, lead), offline_final(files[i], gd, grms))
                 for i in idx]
        return {"clips": len(idx), "code_r_median": round(float(np.median(code)), 4),
                "code_r_mean": round(float(np.mean(code)), 4), "lips_r_mean": round(float(np.nanmean(final)), 4),
                "lips_r_min": round(float(np.nanmin(final)), 4)}

    maps = fit.fit(train, lam)
    gained = lambda pred: {i: (p - p.mean(0)) * gain + p.mean(0) for i, p in pred.items()}
    report = {"target": f"offline head ({target} codes)", "window": window.config(), "hop": hop,
              "phases": hop if phases else 0, "vad_lead": lead, "lambda": lam, "gain": round(gain, 4),
              "train_tracks": len(train), "train_frames": int(sum(len(fit.y[i]) for i in train)),
              "train_sources": sorted({str(files[i]["source"]) for i in train}),
              "oof_vs_offline": scores(corpus, gained(oof))}
    head = LipsHead(offline.layers, offline.proj.shape[1], params.mouth_dim, window=window,
                    phases=hop if phases else 0)
    head.vad_lead = lead
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))
    head.mean.copy_(offline.mean), head.scale.copy_(offline.scale), head.proj.copy_(offline.proj)
    # y = (x W_j) gain + bias + phase_bias_j, with each phase's mean kept: intercepts b_j + (1 - gain) mean_j(x W_j)
    xw = [np.concatenate([fit.x[i][j] for i in train]) @ w for j, (w, _) in enumerate(maps)]
    icpt = np.stack([b + (1 - gain) * m.mean(0) for (_, b), m in zip(maps, xw)])
    if phases:
        head.weight.copy_(t(np.stack([w for w, _ in maps])))
        head.bias.copy_(t(icpt.mean(0))), head.phase_bias.copy_(t(icpt - icpt.mean(0)))
    else:
        head.weight.copy_(t(maps[0][0])), head.bias.copy_(t(icpt[0]))
    head.gain.fill_(gain)
    head.gap_direction.copy_(offline.gap_direction), head.gap_rms.copy_(offline.gap_rms)
    head.eval()
    with torch.no_grad():   # the held-out tracks through the head itself (its forward on the cached slabs)
        pred = {i: _head_codes(head, files[i], hop) for i in held}
    report["heldout_vs_offline"] = scores(held, pred)
    if data is not None:
        report |= _real_mouth_scores(data, files, held, pred, params, offline, log, heldout_file)
    log(f"distilled live head: out-of-fold r with the offline codes median {report['oof_vs_offline']['code_r_median']}"
        f", offline lips mean {report['oof_vs_offline']['lips_r_mean']}; held out "
        f"{report['heldout_vs_offline']['code_r_median']} / {report['heldout_vs_offline']['lips_r_mean']} "
        f"(min {report['heldout_vs_offline']['lips_r_min']})")
    if install:
        install_live_head(head, hop, {k: v for k, v in report.items() if k != "train_sources"}, weights)
        log(f"live lips head -> {weights}")
    if out is not None:
        Path(out).write_text(json.dumps(report, indent=1, default=float) + "\n")
    return report


def _head_codes(head, d: dict, hop: int) -> np.ndarray:
    """(T, Dm) the live head's raw codes of a cached file, through ``head.forward`` (the session's path)."""
    import torch

    t = len(d["offline"])
    y = np.zeros((t, head.bias.shape[0]), np.float32)
    lo = DISTIL_BEFORE - head.window.win_before
    for k, slab in enumerate(d["slabs"]):
        # the cache holds slabs already projected: undo nothing, run the maps on them (project is linear per row)
        z = torch.from_numpy(slab[lo:])
        n = min(hop, t - k * hop)
        if head.phases:
            y[k * hop:k * hop + n] = (torch.einsum("k,jkd->jd", z.flatten(), head.weight[:n]) * head.gain + head.bias
                                      + head.phase_bias[:n]).numpy()
        else:
            idx = torch.arange(n)[:, None] * sp.ENC_PER_VIDEO + torch.arange(head.window.frames)[None]
            y[k * hop:k * hop + n] = ((z[idx].flatten(1) @ head.weight) * head.gain + head.bias).numpy()
    return y


def _real_mouth_scores(data: Path, files: list[dict], held: list[int], pred: dict, params, offline, log,
                       heldout_file) -> dict:
    """Held-out code level r with the real mouths (``_code_scores``) of the distilled head and of the offline head
    (its smoothed codes from the same cache), on the prepared held-out clips."""
    clips = [c for c in load_lip_clips(data, None, params, heldout_file, log=log) if c.heldout]
    live, off, used = [], [], []
    for c in clips:
        i = next((i for i in held if str(files[i]["source"]).endswith("/" + c.source)), None)
        if i is None:
            continue
        n = len(c.target)
        seg = lambda y: np.pad(y[c.start:c.start + n], ((0, max(0, n - len(y[c.start:c.start + n]))), (0, 0)))
        live.append(seg(pred[i])), off.append(seg(files[i]["offline"])), used.append(c)
    g = gap_direction(params)
    return {"heldout_real_live": _code_scores(used, live, g), "heldout_real_offline": _code_scores(used, off, g)}


def install_live_head(head, hop: int, report: dict, weights: Path) -> None:
    """Rewrite ONLY the live part of a parameters file (``audio.live.*`` tensors, ``audio_config["live"]``, info
    ``lips_live``): every other tensor is written back as read (same dtype and bytes), so the offline head and the
    other parts stay exactly as they are."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from ...fileio import atomic_path
    from .lips import LIVE, to_live_config
    from .params import load_params

    params = load_params(weights)   # the format checks
    if not params.audio_state:
        from ...errors import InputError
        raise InputError(f"{weights}: no offline lips head to put a live one beside")
    with safe_open(str(weights), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("audio." + LIVE)}
    tensors.update({"audio." + LIVE + k: v.detach().to("cpu", torch.float32).contiguous().clone()
                    for k, v in head.state_dict().items()})
    config, info = json.loads(meta["config"]), json.loads(meta.get("info", "{}"))
    config["audio"] = dict(config.get("audio") or {}) | {"live": to_live_config(head, hop)}
    info["lips_live"] = report
    meta["config"], meta["info"] = json.dumps(config), json.dumps(info)
    with atomic_path(Path(weights)) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def copy_live(src: Path, dst: Path) -> None:
    """The live lips part of ``src`` into ``dst`` (everything else of ``dst`` unchanged): the merge command."""
    from .lips import live_from_params
    from .params import load_params

    p = load_params(src)
    head = live_from_params(p)
    if head is None:
        from ...errors import InputError
        raise InputError(f"{src}: no live lips head in this file")
    if not np.array_equal(p.mouth_basis, load_params(dst).mouth_basis):
        from ...errors import InputError
        raise InputError(f"{dst}: another mouth basis than {src}'s: fit the live head anew on this file "
                         "(`lips_train fit-live --weights DST`)")
    install_live_head(head, int(p.audio_config["live"]["hop"]), p.info.get("lips_live", {}), dst)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m pdfgc.families.meshwarp.lips_train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache")
    c.add_argument("--raw", type=Path, required=True)
    c.add_argument("--cache", type=Path, required=True)
    f = sub.add_parser("fit")
    f.add_argument("--data", type=Path, required=True, help="prepared corpus")
    f.add_argument("--cache", type=Path, required=True)
    f.add_argument("--weights", type=Path, required=True, help="parameters file whose lips part is rewritten")
    f.add_argument("--report", type=Path)
    f.add_argument("--layers", default="2,3,4")
    f.add_argument("--components", type=int, default=64)
    f.add_argument("--compare-layers", action="store_true")
    f.add_argument("--languages", action="store_true", help="out-of-fold r per language (needs ctranslate2)")
    def _window_arguments(p, window):   # how a live head's features are cut (fit-live and distil)
        p.add_argument("--chunk-frames", type=int, default=window.chunk_frames)
        p.add_argument("--win-before", type=int, default=window.win_before)
        p.add_argument("--win-after", type=int, default=window.win_after)
        p.add_argument("--hop", type=int, default=LIVE_HOP)

    lv = sub.add_parser("fit-live", help="the live head (short look-ahead): fit it, write only the live part")
    lv.add_argument("--data", type=Path, required=True, help="prepared corpus")
    lv.add_argument("--weights", type=Path, required=True, help="parameters file whose live lips part is rewritten")
    lv.add_argument("--features", type=Path, required=True, help="folder for the live-cut features (resumable)")
    lv.add_argument("--cache", type=Path, help="the offline features (lips_train cache): held-out comparison")
    lv.add_argument("--report", type=Path)
    _window_arguments(lv, LIVE_WINDOW)
    lv.add_argument("--no-install", action="store_true", help="report only")
    lv.add_argument("--lags-from", type=Path, default=LIPS_FIT,
                    help="the offline fit's report (per-clip audio-video offsets kept)")
    ds = sub.add_parser("distil", help="the live head fitted to the offline head's codes (no video needed): fit it, "
                        "write only the live part")
    ds.add_argument("--raw", type=Path, required=True, help="the raw corpus folder (manifest.csv; the speech files "
                    "beside it are read too)")
    ds.add_argument("--features", type=Path, required=True, help="folder for the features (resumable)")
    ds.add_argument("--weights", type=Path, required=True, help="parameters file whose live lips part is rewritten")
    ds.add_argument("--data", type=Path, help="prepared corpus: held-out r with the real mouths in the report")
    ds.add_argument("--report", type=Path)
    _window_arguments(ds, DISTIL_WINDOW)
    ds.add_argument("--shared", action="store_true", help="one map for every frame of a hop (else one per phase)")
    ds.add_argument("--lead", type=int, default=DISTIL_LEAD,
                    help="frames the live rules open the mouth before the voice")
    ds.add_argument("--target", choices=("raw", "smoothed"), default=DISTIL_TARGET,
                    help="the offline head's codes before or after its smoothing")
    ds.add_argument("--no-install", action="store_true", help="report only")
    cl = sub.add_parser("copy-live", help="copy the live lips part of one parameters file into another")
    cl.add_argument("src", type=Path)
    cl.add_argument("dst", type=Path)
    m = sub.add_parser("copy", help="copy the lips part of one parameters file into another")
    m.add_argument("src", type=Path)
    m.add_argument("dst", type=Path)
    a = p.parse_args(argv)
    log = lambda s: print(s, flush=True)
    try:
        run(a, log)
    except PDFGCError as e:
        print(f"pdfgc: error: {e}", file=sys.stderr)
        return 2
    return 0


def run(a, log) -> None:
    if a.cmd == "cache":
        cache_features(a.raw, a.cache, log=log)
    elif a.cmd == "fit":
        fit_command(a.data, a.cache, a.weights, a.report, [int(x) for x in a.layers.split(",")], a.components,
                    a.compare_layers, log, a.languages)
    elif a.cmd == "fit-live":
        w = sp.SpeechWindow(a.chunk_frames, a.win_before, a.win_after)
        fit_live_command(a.data, a.weights, a.features, a.report, w, a.hop, a.cache, log, install=not a.no_install,
                         lags_from=a.lags_from)
    elif a.cmd == "distil":
        w = sp.SpeechWindow(a.chunk_frames, a.win_before, a.win_after)
        fit_distil_command(a.raw, a.features, a.weights, a.report, w, a.hop, not a.shared, a.lead, a.data, log,
                           install=not a.no_install, target=a.target)
    elif a.cmd == "copy-live":
        copy_live(a.src, a.dst)
    else:
        copy_lips(a.src, a.dst)


if __name__ == "__main__":
    sys.exit(main())
