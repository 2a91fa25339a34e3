"""Emotion labels of the mesh-warp family: per-label expression shapes measured on real faces, kept apart from speech.

    python -m pdfgc.families.meshwarp.emotion --data PREPARED --into FILE [--exclude M030 ...]

**What a label is.** For each label, the mean change of a real face between the person's neutral clip and the
person's clip of that label (``label_offsets``): the upper face (brows, lid rings, cheeks, nose sides) as the
difference of the two clips' mean canonical meshes (both clips are speech: their means cancel what speech does to
the cheeks), the lips and mouth corners as the difference of the two clips' least open thirds (the mouth at rest),
the lids as the ratio of the clips' median frontal eye aspect ratio. Only people with a neutral clip count (the
corpus's MEAD actors M030 and W009, every label at level 3); a person's clips of one label are averaged first, then
the people. The shape is that mean's direction at the size of one real person's change (``person_size_gain``: the
people's own mean region-vector norm over that of their mean, x1.0-1.3; two people who move a region differently
average to a fainter change than either made): level 1 = a real level-3 face, no gain beyond it (the earlier fit
scaled the labels x1.5-3 until fer read them, which opened the mouth).

**Kept apart from speech** (EMOTE, EmoTalk): a label's mesh offset becomes an emotion code (on
``params.emotion_basis``) and a resting mouth code (on ``params.mouth_basis``) by one least-squares fit in which the
mouth code may not change the inner-lip gaps, drop the chin or move the lips' midline up or down
(``opening_constraints``): it moves the mouth corners (up, down, out) and the lips' width, never opens the jaw, so
the mouth's opening stays the speech's (the codes add). A raised upper lip (anger's and disgust's AU10 in the
measured data) is left out with the midline: once rendered it reads back as an opening.

**Regions** (``REGIONS``, FACS's action units): ``region_vector`` gives each region's mean offset (outward, down)
in the canonical frame, the figure the benchmark compares between the model and held-out actors
(``benchmarks/meshwarp_emotion.py``). The forehead is part of the rigid points the canonical frame is fitted on,
so it has no offset of its own here.

The command refits the label tensors (``emotion_shape.*``, ``emotion_mouth.*``, ``emotion_lid.*``) of FILE in place
from a prepared corpus, leaving every other tensor and the metadata's other parts as they are.
"""
from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...evaluation import signals as S
from . import codes as C

# mediapipe face-mesh points per region, both sides (subject's right first); FACS: AU1 inner brow raiser, AU2 outer
# brow raiser, AU4 brow lowerer (brows down and together), AU5 upper lid raiser, AU6 cheek raiser (lower lids and
# cheeks up), AU7 lid tightener, AU9/10 nose wrinkle / upper lip raiser (nasolabial folds), AU12/15 lip corner
# puller/depressor, AU23/24 lip tightener/pressor, AU26 jaw drop.
REGIONS = {
    "inner_brow": (107, 66, 55, 65, 336, 296, 285, 295),
    "mid_brow": (105, 52, 334, 282),
    "outer_brow": (70, 63, 46, 53, 300, 293, 276, 283),
    "upper_lid": (159, 158, 160, 386, 385, 387),
    "lower_lid": (145, 144, 153, 374, 373, 380),
    "cheek": (117, 118, 101, 50, 123, 346, 347, 330, 280, 352),
    "nasolabial": (206, 203, 98, 36, 426, 423, 327, 266),
    "mouth_corner": (61, 78, 291, 308),
    "upper_lip": (0, 37, 267),
    "lower_lip": (17, 84, 314),
}
# regions read from the mouth at rest (the least open third of each clip): speech moves them
MOUTH_REGIONS = ("nasolabial", "mouth_corner", "upper_lip", "lower_lip")
# inner-lip pairs (upper, lower) whose vertical gap a label may not change, and the chin it may not drop
LIP_GAPS = ((13, 14), (82, 87), (312, 317), (81, 178), (311, 402))
CHIN = 152
LIP_MIDLINE = (0, 17)       # the outer lip midpoints: kept (a raised upper lip reads as an opening once rendered)
CALM_SHARE = 1 / 3          # a clip's mouth at rest: its least open third of frames


def label_level(*names: str) -> int | None:
    """MEAD's intensity level in a clip name ('M030_front_sad_level3_001', 'M003_level_1_happy', 'M030_sad_3_001')."""
    for name in names:
        s = str(name).lower()
        m = re.search(r"level_?([123])", s) or re.search(r"_(?:angry|contempt|disgusted|fear|happy|neutral|sad|"
                                                         r"surprised)_([123])_", s)
        if m:
            return int(m.group(1))
    return None


# ---------------------------------------------------------------------------------------------- measuring


@dataclass
class LabelOffset:
    """One person's change from neutral for one label (means over the person's clips of that label)."""

    face: np.ndarray      # (478,3) canonical: mean of the clip - mean of the neutral clip
    calm: np.ndarray      # (478,3) canonical: least open third of the clip - that of the neutral clip
    lid: float            # median frontal EAR of the clip / that of the neutral clip - 1
    clips: int = 1
    against_neutral_clip: bool = True   # False: against the clip's own most neutral frame


def _calm_mean(canon: np.ndarray) -> np.ndarray:
    opening = S.mouth_opening(canon)
    return canon[opening <= np.quantile(opening, CALM_SHARE)].mean(0)


def _clip_stats(canon: np.ndarray):
    canon = canon[np.isfinite(canon).all((1, 2))]
    return canon.mean(0), _calm_mean(canon), float(np.median(S.eye_aspect_ratio(canon).mean(1)))


def label_offsets(clips) -> dict[str, dict[str, LabelOffset]]:
    """{label: {person: LabelOffset}} from clips with ``label``, ``identity`` and canonical meshes ``canon``
    (NaN rows for frames without a face; ``train.Clip`` after ``_prepare_geometry``). People with a 'neutral'
    clip (several neutral clips: their frames pooled) are measured against it; a label that no such person shows
    is measured against each clip's own most neutral frame (``codes.neutral_reference``, as a driving video is),
    which reads only the part of the expression that comes and goes within the clip."""
    neutral: dict[str, list] = {}
    for c in clips:
        if c.label == "neutral":
            neutral.setdefault(c.identity, []).append(c.canon[c.valid])
    base = {p: _clip_stats(np.concatenate(v)) for p, v in neutral.items()}
    per: dict[str, dict[str, list]] = {}
    own: dict[str, dict[str, list]] = {}
    for c in clips:
        if c.label in (None, "neutral") or c.valid.sum() < 3:
            continue
        face, calm, ear = _clip_stats(c.canon[c.valid])
        if c.identity in base:
            bf, bc, be = base[c.identity]
            per.setdefault(c.label, {}).setdefault(c.identity, []).append((face - bf, calm - bc, ear / be - 1.0))
        else:
            ref = c.canon[c.ref]
            ref_ear = float(S.eye_aspect_ratio(ref[None]).mean())
            own.setdefault(c.label, {}).setdefault(c.identity, []).append((face - ref, calm - ref, ear / ref_ear - 1))
    for label, people in own.items():
        per.setdefault(label, people)
    out: dict[str, dict[str, LabelOffset]] = {}
    for label, people in per.items():
        out[label] = {p: LabelOffset(np.mean([x[0] for x in v], 0), np.mean([x[1] for x in v], 0),
                                     float(np.mean([x[2] for x in v])), len(v), p in base)
                      for p, v in people.items()}
    return out


def combined_offset(o: LabelOffset) -> np.ndarray:
    """(478,3): the upper face from the whole clip, the mouth points from the mouth at rest."""
    out = o.face.copy()
    out[C.MOUTH_POINTS] = o.calm[C.MOUTH_POINTS]
    return out


def region_vector(offset: np.ndarray, mean_shape: np.ndarray) -> np.ndarray:
    """(2 x len(REGIONS),) mean (outward, down) offset of each region, both sides averaged (x mirrored so that +
    is away from the face's midline), in canonical units."""
    off = np.asarray(offset, np.float64)
    side = np.sign(np.asarray(mean_shape, np.float64)[:, 0] - float(np.asarray(mean_shape)[C.MOUTH_POINTS, 0].mean()))
    out = []
    for pts in REGIONS.values():
        p = np.array(pts)
        out += [float(np.mean(off[p, 0] * side[p])), float(np.mean(off[p, 1]))]
    return np.array(out)


def region_names() -> list[str]:
    return [f"{r} {a}" for r in REGIONS for a in ("out", "down")]


# ---------------------------------------------------------------------------------------------- to codes


def opening_constraints(params) -> np.ndarray:
    """(K, Dm): linear maps from a mouth code to each inner-lip gap's vertical change, the chin's drop and the
    vertical shift of the inner lip line and of the outer lip midpoints (rows a label's mouth must keep at zero: no
    opening, no jaw, no mouth sliding down the face; the corners and the lips' width stay free)."""
    b = np.asarray(params.mouth_basis, np.float64)
    rows = [b[:, lo, 1] - b[:, up, 1] for up, lo in LIP_GAPS] + [b[:, CHIN, 1]]
    rows.append(b[:, list(LIP_GAPS[0]), 1].mean(1))
    rows += [b[:, i, 1] for i in LIP_MIDLINE]
    return np.array(rows)


def jaw_free_basis(params) -> np.ndarray:
    """(Dm, Dm-K) orthonormal basis of the mouth codes that ``opening_constraints`` leave at zero."""
    g = opening_constraints(params)
    _, s, vt = np.linalg.svd(g)
    rank = int((s > 1e-9 * s.max()).sum())
    return vt[rank:].T


def offset_to_codes(offset: np.ndarray, params) -> tuple[np.ndarray, np.ndarray, float]:
    """(478,3) canonical offset -> (emotion code (De,), jaw-free mouth code (Dm,), share of the offset's energy on
    the emotion and mouth points that the two codes reproduce). One least-squares fit of both codes together (the
    mouth corners are in both point sets)."""
    be = np.asarray(params.emotion_basis, np.float64)
    bm = np.asarray(params.mouth_basis, np.float64)
    pts = np.union1d(C.EMOTION_POINTS, C.MOUTH_POINTS)
    n = jaw_free_basis(params)
    free = np.einsum("dj,dpc->jpc", n, bm)          # the jaw-free mouth directions as mesh offsets
    a = np.concatenate([be[:, pts].reshape(len(be), 3 * len(pts)), free[:, pts].reshape(len(free), 3 * len(pts))]).T
    y = np.asarray(offset, np.float64)[pts].reshape(-1)
    x, *_ = np.linalg.lstsq(a, y, rcond=None)
    de = len(be)
    emo, mouth = x[:de], n @ x[de:]
    fit = a @ x
    share = 1.0 - float(((y - fit) ** 2).sum() / max((y ** 2).sum(), 1e-12))
    return emo, mouth, share


def person_size_gain(offsets, mean_shape) -> float:
    """The people's own mean size (norm of ``region_vector``) over the size of their mean: people who move the
    same regions differently (sad: one raises the inner brows, the other lowers the whole brow) average to a
    fainter change than either made. Level 1 is the mean's direction at one real person's size (never larger)."""
    vecs = [region_vector(o, mean_shape) for o in offsets]
    mean = np.linalg.norm(np.mean(vecs, 0))
    return float(np.mean([np.linalg.norm(v) for v in vecs]) / mean) if mean > 1e-9 else 1.0


def fit_labels(clips, params, log=print) -> dict:
    """Measure every label (``label_offsets``, people averaged) and set ``params.emotion_shapes`` /
    ``emotion_mouths`` / ``emotion_lids`` from it; returns the fit's summary (people, clips, reproduced share and
    region vector per label) for ``params.info['fit']['emotion']``."""
    offsets = label_offsets(clips)
    shapes = {"neutral": np.zeros(params.emotion_dim)}
    mouths = {"neutral": np.zeros(params.mouth_dim)}
    lids = {"neutral": np.zeros(2)}
    summary = {"method": "per-person mean change from the neutral clip (pdfgc.families.meshwarp.emotion), no gain",
               "labels": {}}
    for label in sorted(offsets):
        people = offsets[label]
        mean = np.mean([combined_offset(o) for o in people.values()], 0)
        gain = person_size_gain([combined_offset(o) for o in people.values()], params.mean_shape)
        emo, mouth, share = offset_to_codes(gain * mean, params)
        lid = float(np.mean([o.lid for o in people.values()]))
        shapes[label], mouths[label], lids[label] = emo, mouth, np.full(2, lid)
        summary["labels"][label] = {"people": sorted(people), "clips": int(sum(o.clips for o in people.values())),
                                    "reference": ("neutral clip" if all(o.against_neutral_clip for o in
                                                                        people.values()) else "own neutral frame"),
                                    "reproduced": round(share, 3), "lid": round(lid, 4),
                                    "size_gain": round(gain, 3)}
        log(f"emotion {label}: {len(people)} people ({', '.join(sorted(people))}), "
            f"{summary['labels'][label]['clips']} clips; size x{gain:.2f}; codes reproduce {share:.0%} of the offset; "
            f"lids {lid:+.3f}")
    params.emotion_shapes, params.emotion_mouths, params.emotion_lids = shapes, mouths, lids
    return summary


def label_mesh_offset(params, label: str, level: float = 1.0) -> np.ndarray:
    """(478,3) canonical offset the label's codes make at ``level`` (emotion and mouth codes; lids not included)."""
    e = params.emotion_code(label) * level
    m = params.emotion_mouth(label) * level
    return (np.einsum("d,dpc->pc", e, np.asarray(params.emotion_basis, np.float64))
            + np.einsum("d,dpc->pc", m, np.asarray(params.mouth_basis, np.float64)))


# ---------------------------------------------------------------------------------------------- corpus


def labelled_clips(data: Path, exclude=(), heldout_file: Path | None = None, log=print) -> list:
    """The prepared corpus's labelled clips (file-name labels, people with a neutral clip), as ``train.Clip`` with
    canonical meshes; people of the held-out list and ``exclude`` left out."""
    from ...data import PreparedCorpus
    from .corpus import HELDOUT_FILE, Clip, emotion_label, read_heldout, read_raw_manifest
    from .geometry_fit import _prepare_geometry

    corpus = PreparedCorpus(data)
    raw = read_raw_manifest(corpus.manifest)
    held = set(read_heldout(Path(heldout_file) if heldout_file else HELDOUT_FILE)) | set(exclude)
    clips = []
    for info in corpus.clips:
        row = raw.get(info.source, {})
        ident = row.get("identity_guess") or info.speaker or info.key
        label = info.emotion and emotion_label(info.emotion) or emotion_label(info.source, row.get("repo_path", ""))
        if label is None or ident in held or info.split == "heldout" or any(ident.endswith(x) for x in exclude):
            continue
        a = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy"))
        clips.append(Clip(info.key, ident, label, False, a["mesh.npy"].astype(np.float64),
                          a["valid.npy"].astype(bool), None))
    _prepare_geometry(clips)
    log(f"{len(clips)} labelled clips of {len({c.identity for c in clips})} people")
    return clips


def refit_file(data: Path, path: Path, exclude=(), log=print) -> dict:
    """Refit the label tensors of the parameters file ``path`` in place (every other tensor kept)."""
    from .params import load_params, save_params

    params = load_params(path)
    summary = fit_labels(labelled_clips(data, exclude, log=log), params, log=log)
    params.info.setdefault("fit", {})["emotion"] = summary
    params.info["fit"].pop("label_gains", None)
    save_params(params, path)
    log(f"wrote the emotion labels into {path}")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Refit the emotion-label tensors of a meshwarp parameters file.")
    ap.add_argument("--data", type=Path, required=True, help="a prepared corpus (pdfgc prepare)")
    ap.add_argument("--into", type=Path, required=True, help="the meshwarp .safetensors to rewrite in place")
    ap.add_argument("--exclude", nargs="*", default=(), help="people (identity labels, or their ends) to leave out")
    args = ap.parse_args(argv)
    refit_file(args.data, args.into, args.exclude)
    return 0


if __name__ == "__main__":
    sys.exit(main())
