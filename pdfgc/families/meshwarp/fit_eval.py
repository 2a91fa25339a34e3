"""Held-out figures of the mesh-warp fit's lips head (``train.py`` step 4, and ``--evaluate FILE``): the lip
opening of the head's mouth codes, composed onto each held-out clip's own face, against the real one."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import InputError
from ...evaluation import signals as S
from . import codes as C
from .lips_train import lip_gap_direction as gap_direction
from .params import MeshParams, load_params

SEQ = 16   # clips shorter than this many frames are left out


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

