"""Emotion labels of the mesh-warp family: per-label expression shapes measured on real faces, kept apart from speech.

    python -m pdfgc.families.meshwarp.emotion --data PREPARED --into FILE [--exclude M030 ...] [--readback LABELS]
                                              [--only LABELS]

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
measured data) is left out with the midline: once rendered it reads back as an opening. One exception, FACS's AU26
for surprise ("jaw dropped a little, lips relaxed and parted", ``REST_OPENING``): its resting mouth opens the inner
lips by the real faces' own resting opening (their least open third against the neutral clip's, +0.010 / +0.012
face heights for the two actors), the upper lip held and the jaw dropping (``rest_opening``); speech adds to it, so
under surprise every frame opens by the speech's opening plus that constant.

**Read-back calibration** (``calibrate_readback``, opt-in per label: ``--readback angry,surprise`` or ``all``): the
face mesh reads a rendered label back smaller than its target mesh asks (the brows at ~0.4), so the emotion code of
the chosen labels is then set so that the render, read back on calibration faces of corpus people
(``calibration_frames``), matches the real offsets (the resting mouth code and the lids stay as measured). By
default no label is calibrated (the plain fit): calibrating all six cost identity (dlib 0.38 -> 0.47) and drew sad
as a frown.

**Regions** (``REGIONS``, FACS's action units): ``region_vector`` gives each region's mean offset (outward, down)
in the canonical frame, the figure the benchmark compares between the model and held-out actors
(``benchmarks/meshwarp_emotion.py``). The forehead is part of the rigid points the canonical frame is fitted on,
so it has no offset of its own here.

The command refits the label tensors (``emotion_shape.*``, ``emotion_mouth.*``, ``emotion_lid.*``) of FILE in place
from a prepared corpus, leaving every other tensor and the metadata's other parts as they are; ``--only LABELS``
rewrites those labels alone (a calibrated label's code depends on the renderer it was calibrated on, so a refit of
every label on a changed renderer moves labels nobody meant to touch).
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
# AU26, "jaw dropped a little, lips relaxed and parted" (surprise): the share of the real faces' resting inner-lip
# gaps (their mouths at rest, the least open third, against the neutral clip's) that a label's resting mouth keeps,
# with the upper lip held still (the jaw drops); every other label's resting mouth stays closed
# (``opening_constraints``). Speech adds to it: under the label the opening is the speech's plus this offset.
REST_OPENING = {"surprise": 1.0}


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


def rest_opening_values(offset: np.ndarray, share: float) -> np.ndarray:
    """(K,) the values of ``opening_constraints``' rows that a resting opening of ``share`` x the measured one
    asks: the inner-lip gaps of the (478,3) canonical ``offset`` (the real mouths at rest) x ``share``, the upper
    lip held (the inner lip line moves down by half the central gap, the upper lip's midline not at all) and the
    lower lip's midline and the chin down by the central gap (the jaw drops; the measured frame's slide of the
    whole mouth down the face, which follows the raised brows' forehead points, is not copied)."""
    off = np.asarray(offset, np.float64)
    gaps = [share * float(off[lo, 1] - off[up, 1]) for up, lo in LIP_GAPS]
    centre = gaps[0]
    return np.array(gaps + [centre, 0.5 * centre, 0.0, centre])


def rest_opening(offset: np.ndarray, params, mouth: np.ndarray, emo: np.ndarray, share: float) -> np.ndarray:
    """(Dm,) the mouth code to add to a label's jaw-free resting mouth code ``mouth`` (fitted with the emotion code
    ``emo`` by ``offset_to_codes``) so that its ``opening_constraints`` rows take ``rest_opening_values``: of the
    codes that do, the one nearest (least squares on the mouth points) to what the two codes left of the real
    offset (the real resting mouth's opening, mostly)."""
    g = opening_constraints(params)
    c = rest_opening_values(offset, share)
    be = np.asarray(params.emotion_basis, np.float64)
    bm = np.asarray(params.mouth_basis, np.float64)
    pts = np.asarray(C.MOUTH_POINTS)
    resid = (np.asarray(offset, np.float64) - np.einsum("d,dpc->pc", emo, be) - np.einsum("d,dpc->pc", mouth, bm))
    a = bm[:, pts].reshape(len(bm), -1).T
    y = resid[pts].reshape(-1)
    # min |a m - y|^2 subject to g m = c: the KKT system
    k = np.block([[a.T @ a, g.T], [g, np.zeros((len(g), len(g)))]])
    sol = np.linalg.lstsq(k, np.concatenate([a.T @ y, c]), rcond=None)[0]
    return sol[:bm.shape[0]]


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


def fit_labels(clips, params, log=print, faces=None, readback=None) -> dict:
    """Measure every label (``label_offsets``, people averaged) and set ``params.emotion_shapes`` /
    ``emotion_mouths`` / ``emotion_lids`` from it; returns the fit's summary (people, clips, reproduced share and
    region vector per label) for ``params.info['fit']['emotion']``. With calibration ``faces`` (224 crops of the
    fitted people, ``calibration_frames``) the codes are then set so that the render reads back as the real
    offsets (``calibrate_readback``): every label, or only those in ``readback`` (the others stay the plain fit)."""
    offsets = label_offsets(clips)
    targets = {}
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
        opening = REST_OPENING.get(label, 0.0)
        if opening:   # AU26: the real resting opening (the people's mean, no size gain), the upper lip held
            mouth = mouth + rest_opening(mean, params, mouth, emo, opening)
        lid = float(np.mean([o.lid for o in people.values()]))
        shapes[label], mouths[label], lids[label] = emo, mouth, np.full(2, lid)
        targets[label] = readback_vector(gain * mean, lid, params.mean_shape)
        # the target (the real offsets' mean), so a test can read a label back against it without the corpus
        summary_target = [round(float(v), 5) for v in targets[label]]
        summary["labels"][label] = {"people": sorted(people), "clips": int(sum(o.clips for o in people.values())),
                                    "reference": ("neutral clip" if all(o.against_neutral_clip for o in
                                                                        people.values()) else "own neutral frame"),
                                    "reproduced": round(share, 3), "lid": round(lid, 4),
                                    "size_gain": round(gain, 3), "readback_target": summary_target}
        if opening:
            summary["labels"][label]["rest_opening"] = {
                "share": opening, "inner_lip_gap": round(float(rest_opening_values(mean, opening)[0]), 5)}
        log(f"emotion {label}: {len(people)} people ({', '.join(sorted(people))}), "
            f"{summary['labels'][label]['clips']} clips; size x{gain:.2f}; codes reproduce {share:.0%} of the offset; "
            f"lids {lid:+.3f}")
    params.emotion_shapes, params.emotion_mouths, params.emotion_lids = shapes, mouths, lids
    shares = readback_shares(readback)
    readback = None if readback is None else tuple(shares)
    unknown = set(readback or ()) - set(targets)
    if unknown:
        raise ValueError(f"read-back calibration: no such label {sorted(unknown)} (labels: {sorted(targets)})")
    only = sorted(targets) if readback is None else sorted(readback)
    if faces is not None and len(faces) and only:
        rb = Readback(params, faces)
        summary["readback"] = {"faces": len(rb.states), "steps": READBACK_STEPS, "ridge": READBACK_RIDGE,
                               "labels": only}
        part = {k: v for k, v in shares.items() if v != 1.0}
        if part:   # labels calibrated part way from the plain code (the others: all the way)
            summary["readback"]["shares"] = part
        for label, (before, after, t) in calibrate_readback(params, targets, rb, log=log, only=only,
                                                            shares=part).items():
            w = np.concatenate([readback_row_weights(), [1.0]])
            summary["labels"][label]["readback_size"] = [
                round(float(np.linalg.norm(w[:-1] * v[:-1]) / np.linalg.norm(w[:-1] * t[:-1])), 3)
                for v in (before, after)]
    return summary


def readback_labels(spec, labels=None) -> tuple[str, ...]:
    """The labels a ``--readback`` value names: a comma list, 'all' (every one of ``labels``, or None = all of
    the fit's), '' or 'none' (no label: the plain fit)."""
    spec = (spec or "").strip().lower()
    if spec in ("", "none"):
        return ()
    if spec == "all":
        return None if labels is None else tuple(labels)
    return tuple(x.strip() for x in spec.split(",") if x.strip())


def readback_shares(labels) -> dict:
    """{label: share} of ``readback_labels``' items: 'sad:0.5' calibrates sad half way from the plain code to the
    calibrated one (the emotion code x0 + 0.5 (x - x0)), a plain name all the way (1.0). None: None."""
    if labels is None:
        return None
    out = {}
    for item in labels:
        name, _, share = str(item).partition(":")
        out[name.strip()] = float(share) if share.strip() else 1.0
    return out


def calibrated_labels(params) -> tuple[str, ...]:
    """The labels whose emotion code a parameters file's fit calibrated (its metadata; () for the plain fit), a
    label calibrated part way as 'label:share' (``readback_shares``)."""
    rb = params.info.get("fit", {}).get("emotion", {}).get("readback") or {}
    if rb and "labels" not in rb:   # round 3's file: every label calibrated
        return tuple(k for k in params.info["fit"]["emotion"].get("labels", {}))
    part = rb.get("shares", {})
    return tuple(f"{k}:{part[k]:g}" if k in part else k for k in rb.get("labels", ()))


# ---------------------------------------------------------------------------------------------- read back

# The face mesh reads a rendered expression back smaller than its target mesh asks: the shapes fitted by
# ``offset_to_codes`` alone read back on three unseen portraits at x0.35-0.5 of the asked brow motion (a raised
# brow drags mediapipe's forehead points, which are part of the canonical frame's rigid fit, so the frame itself
# moves up with it and the lips read as lowered), x0.7-0.8 of the corners, x0.5 of sadness overall. The real offsets
# were read by the same face mesh on real faces, so a label is rendered such that the face mesh reads the real
# offsets back (as ``calibration.py`` renders a turn that reads back as asked): a linear response measured on
# calibration faces, a solve, then closed-loop corrections on the labels as they render (shading included).
READBACK_STEPS = 3          # closed-loop corrections after the linear solve
READBACK_RIDGE = 1.0        # weight of the mean squared mesh change away from the measured shape's own fit
READBACK_EAR_WEIGHT = 1.0   # the lid opening's row (EAR ratio - 1) against the region rows (canonical units)
READBACK_LID_PROBE = 0.2    # lid opening change of the lid column's probe
READBACK_MOUTH_STIFF = 10.0 # the ridge's weight on the mouth's points: corners moved further tore the lip line open
READBACK_DAMPING = 0.7      # share of each solved step taken (the read-back is not linear far from the probes)
READBACK_FRAMES = 3         # calibration frames per fitted person (at rest, spread over the person's neutral clips)
READBACK_OTHERS = 8         # and one frame each of this many other corpus people (not held out)


def code_vector(params, label: str) -> np.ndarray:
    """(De + F + 1,) a label's codes as one vector: the emotion code, the jaw-free mouth coefficients
    (``jaw_free_basis``), the lid opening change (both eyes the same)."""
    n = jaw_free_basis(params)
    return np.concatenate([params.emotion_code(label), n.T @ params.emotion_mouth(label),
                           params.emotion_lid(label)[:1]]).astype(np.float64)


def split_code_vector(params, x) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``code_vector``'s inverse: (emotion code, mouth code, lids (2,))."""
    n = jaw_free_basis(params)
    de, f = params.emotion_dim, n.shape[1]
    x = np.asarray(x, np.float64)
    return x[:de], n @ x[de:de + f], np.full(2, x[de + f])


def readback_vector(offset: np.ndarray, ear_ratio: float, mean_shape: np.ndarray) -> np.ndarray:
    """What the read-back calibration matches: ``region_vector`` of a canonical offset and the lid opening
    (EAR ratio - 1, weighted by ``READBACK_EAR_WEIGHT``)."""
    return np.concatenate([region_vector(offset, mean_shape), [READBACK_EAR_WEIGHT * ear_ratio]])


class Readback:
    """Labels rendered by the mesh-warp renderer on calibration faces (224 crops) and read back by the face mesh,
    as ``pdfgc evaluate`` reads frames: ``measure(x, shading)`` the mean ``readback_vector`` over the faces."""

    def __init__(self, params, faces, expressions=None):
        from ...pipeline import TalkingHeadPipeline
        from .model import MeshWarpModel
        self.params = params
        self.pipe = TalkingHeadPipeline(MeshWarpModel(params, refiner=None, expressions=expressions),
                                        device="cpu", threads=1)
        fam = self.pipe.family
        self.states, self.base = [], []
        for img in faces:
            try:
                st = fam.encode_portrait(self.pipe.load_portrait(np.asarray(img)), None)[0]
            except Exception:   # noqa: BLE001 - a frame the face mesh cannot read is not a calibration face
                continue
            canon = self._read(st.image)
            if canon is not None:
                self.states.append(st)
                self.base.append(canon)
        if not self.states:
            raise ValueError("read-back calibration: no face found on the calibration frames")

    def _read(self, image):
        from . import codes as C
        m = self.pipe.family._mesh(np.ascontiguousarray(image))
        return None if m is None else C.canonicalize(m[None])[0][0]

    def measure(self, x, shading=None) -> np.ndarray:
        """Mean ``readback_vector`` over the faces of the codes ``x`` (``code_vector`` layout) rendered with
        ``shading`` (the expression ratio images' weights, or None)."""
        fam, p = self.pipe.family, self.params
        emo, mouth, lid = split_code_vector(p, x)
        code = np.concatenate([emo, mouth, lid])[None]
        out = []
        for st, base in zip(self.states, self.base):
            mesh = fam._targets(st, np.zeros((1, 6)), np.zeros((1, 4)), np.zeros((1, p.mouth_dim)), code)[0]
            tex = None if shading is None or st.expression is None else st.expression.texture(shading)
            canon = self._read(st.renderer.render(mesh, texture=tex))
            if canon is None:
                continue
            ear = S.eye_aspect_ratio(np.stack([canon, base])).mean(1)
            out.append(readback_vector(canon - base, float(ear[0] / ear[1] - 1.0), p.mean_shape))
        return np.mean(out, 0)

    def shading(self, label: str):
        """The expression ratio images' weights of ``label`` at level 1 (None: the model has none)."""
        labels = self.pipe.family.expression_labels
        if label not in labels:
            return None
        return np.eye(len(labels), dtype=np.float32)[labels.index(label)]

    def jacobian(self, sizes) -> np.ndarray:
        """(rows, De + F + 1) response of ``measure`` to each code, by central differences of the given sizes."""
        cols = []
        for j, h in enumerate(sizes):
            e = np.zeros(len(sizes))
            e[j] = h
            cols.append((self.measure(e) - self.measure(-e)) / (2 * h))
        return np.stack(cols, 1)


def mesh_rows(params, mouth_weight: float = 1.0) -> np.ndarray:
    """(rows, De + F + 1) the canonical mesh change per unit of each code on the emotion and mouth points, scaled
    so that the squared norm is the mean squared point change (the lid column: its lid points' mean change); the
    mouth points (``codes.MOUTH_POINTS``, the corners among them) weighted ``mouth_weight``."""
    from . import codes as C
    n = jaw_free_basis(params)
    pts = np.union1d(C.EMOTION_POINTS, C.MOUTH_POINTS)
    wp = np.repeat(np.where(np.isin(pts, C.MOUTH_POINTS), mouth_weight, 1.0), 3)
    be = np.asarray(params.emotion_basis, np.float64)[:, pts].reshape(params.emotion_dim, -1)
    bm = np.einsum("dj,dpc->jpc", n, np.asarray(params.mouth_basis, np.float64))[:, pts].reshape(n.shape[1], -1)
    lid = np.zeros((1, be.shape[1]))
    lid[0, 0] = 0.15   # a lid change of 1 moves the lid points ~0.15 canonical units (an eye ~0.3 high)
    return wp[:, None] * np.concatenate([be, bm, lid]).T / np.sqrt(len(pts))


# region groups the read-back calibration matches, each with the same total weight; the lips' midline is not
# matched (a label may not move it: ``opening_constraints``; its read-back moves with the canonical frame)
READBACK_GROUPS = {"brows": ("inner_brow", "mid_brow", "outer_brow"), "lids": ("upper_lid", "lower_lid"),
                   "cheeks": ("cheek", "nasolabial"), "corners": ("mouth_corner",)}


def readback_row_weights() -> np.ndarray:
    """(2 x len(REGIONS),) weight of each ``region_vector`` row in the read-back solve (``READBACK_GROUPS``)."""
    names = [n.split()[0] for n in region_names()]
    w = np.zeros(len(names))
    for regs in READBACK_GROUPS.values():
        rows = [i for i, n in enumerate(names) if n in regs]
        w[rows] = np.sqrt(6.0 / len(rows))
    return w


def calibrate_readback(params, targets: dict, readback: Readback, log=print, only=None, shares=None) -> dict:
    """Set each label's emotion code so that its render reads back as ``targets[label]`` (``readback_vector`` of
    the real offset) on the calibration faces: from the plain fit's code x0 (as stored in ``params``), steps
    x += argmin |W (J d - (t - got))|^2 + ridge |M (x + d - x0)|^2, J the measured response of the region rows
    (``READBACK_GROUPS``, weights W) to the emotion code, ``got`` the label's read-back as it renders (shading
    included), damped, the best of ``READBACK_STEPS + 1`` kept. The resting mouth code and the lids stay as
    measured: corners pulled further by the mouth code tore the lip line open at the corners, and lids closed
    until the face mesh reads the real opening (x2) looked half asleep. ``only``: calibrate these labels alone (the
    probe sizes still come from all of ``targets``, so a label's code is the same whichever others are chosen).
    ``shares``: {label: s}, such a label's code taken only the share s of the way from x0 to the calibrated code
    (its read-back re-measured). Returns {label: (read-back before, after, target)}."""
    labels = [k for k in targets if k != "neutral"]
    de = params.emotion_dim
    x0 = {k: code_vector(params, k) for k in labels}
    sizes = np.abs(np.array(list(x0.values()))).max(0)[:de]
    sizes = np.maximum(sizes, 0.05 * sizes.max())
    nr = 2 * len(REGIONS)
    w = readback_row_weights()
    full = np.concatenate([sizes, np.zeros(len(x0[labels[0]]) - de)])
    cols = []
    for j in range(de):   # central differences on the emotion code only
        e = np.zeros_like(full)
        e[j] = full[j]
        cols.append((readback.measure(e) - readback.measure(-e))[:nr] / (2 * full[j]))
    jac = w[:, None] * np.stack(cols, 1)
    reg = np.sqrt(READBACK_RIDGE) * mesh_rows(params, READBACK_MOUTH_STIFF)[:, :de]
    a = np.concatenate([jac, reg])
    plain = mesh_rows(params)[:, :de]
    out = {}
    for k in labels if only is None else [k for k in labels if k in only]:
        t = np.asarray(targets[k], np.float64)
        shading = readback.shading(k)
        x = x0[k].copy()
        got = before = readback.measure(x, shading)
        best = (np.linalg.norm(w * (got[:nr] - t[:nr])), x.copy(), got)
        for _ in range(READBACK_STEPS + 1):
            b = np.concatenate([w * (t[:nr] - got[:nr]), reg @ (x0[k][:de] - x[:de])])
            x[:de] += READBACK_DAMPING * np.linalg.lstsq(a, b, rcond=None)[0]
            got = readback.measure(x, shading)
            if np.linalg.norm(w * (got[:nr] - t[:nr])) < best[0]:
                best = (np.linalg.norm(w * (got[:nr] - t[:nr])), x.copy(), got)
        _, x, got = best
        share = (shares or {}).get(k, 1.0)
        if share != 1.0:   # part way from the plain code
            x = x0[k] + share * (x - x0[k])
            got = readback.measure(x, shading)
        params.emotion_shapes[k] = x[:de].astype(np.float32)
        out[k] = (before, got, t)
        log(f"read-back {k}: size x{np.linalg.norm(w * before[:nr]) / np.linalg.norm(w * t[:nr]):.2f} -> "
            f"x{np.linalg.norm(w * got[:nr]) / np.linalg.norm(w * t[:nr]):.2f} of the real offset, r "
            f"{pearson(w * before[:nr], w * t[:nr]):.2f} -> {pearson(w * got[:nr], w * t[:nr]):.2f}; the emotion "
            f"code's mesh change x{np.linalg.norm(plain @ x[:de]) / max(np.linalg.norm(plain @ x0[k][:de]), 1e-12):.2f}"
            f"; lid opening "
            f"read {got[nr] / READBACK_EAR_WEIGHT:+.3f} (real {t[nr] / READBACK_EAR_WEIGHT:+.3f})")
    return out


def pearson(a, b) -> float:
    a, b = np.asarray(a, float) - np.mean(a), np.asarray(b, float) - np.mean(b)
    return float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12))


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


def _rest_frames(canon: np.ndarray, idx: np.ndarray):
    """(score, frame) candidates of a clip at rest: the least open fifth of its frames ``idx``, scored by how far
    the mouth's width is from the clip's median (a closed mouth, neither pursed nor stretched by speech)."""
    canon = canon[idx]
    opening = S.mouth_opening(canon)
    width = np.linalg.norm(canon[:, 61, :2] - canon[:, 291, :2], axis=1)
    rest = opening <= np.quantile(opening, 0.2)
    return [(float(abs(w - np.median(width))), int(i)) for i, w, r in zip(idx, width, rest) if r]


def calibration_frames(data: Path, clips, per_person: int = READBACK_FRAMES, others: int = READBACK_OTHERS,
                       exclude=()) -> list[np.ndarray]:
    """224 crops at rest for ``Readback``: per fitted person with a neutral clip (``clips``), ``per_person`` frames
    of those clips at least a second apart; then one frontal frame each of the first ``others`` people of the
    corpus (sorted by name) who are neither held out nor MEAD actors nor in ``exclude``, and whose clip is
    sharp enough (a face of 150+ source pixels). Never the benchmark's portraits: none of them is a corpus clip."""
    from ...data import PreparedCorpus
    from . import codes as C
    from .corpus import HELDOUT_FILE, read_heldout, read_raw_manifest
    corpus = PreparedCorpus(data)
    out = []
    for person in sorted({c.identity for c in clips if c.label == "neutral"}):
        cand = [(score, c.key, i) for c in clips if c.identity == person and c.label == "neutral"
                and c.valid.sum() >= 5 for score, i in _rest_frames(c.canon, np.flatnonzero(c.valid))]
        picked: list = []
        for score, key, i in sorted(cand):
            if all(k != key or abs(i - j) >= 25 for _, k, j in picked):
                picked.append((score, key, i))
            if len(picked) == per_person:
                break
        out += [corpus.load_frames(key, [i])[0] for _, key, i in picked]
    raw = read_raw_manifest(corpus.manifest)
    held = set(read_heldout(HELDOUT_FILE)) | set(exclude)
    by_person: dict = {}
    for info in sorted(corpus.clips, key=lambda i: i.key):
        ident = raw.get(info.source, {}).get("identity_guess") or info.speaker or info.key
        if (ident in held or info.split == "heldout" or ident.startswith("MEAD") or ident in by_person
                or info.stats.get("face_px_mean", 0) < 150):
            continue
        by_person[ident] = info
    taken = 0
    for ident in sorted(by_person):
        if taken == others:
            break
        info = by_person[ident]
        a = corpus.load_arrays(info.key, names=("mesh.npy", "valid.npy"))
        canon, rot, _, _ = C.canonicalize(a["mesh.npy"].astype(np.float64))
        ang = S.rotation_to_angles(rot)
        ok = a["valid.npy"].astype(bool) & np.isfinite(canon).all((1, 2)) & (np.abs(ang[:, 0]) < 6) & (
            np.abs(ang[:, 2]) < 6)
        if ok.sum() < 10:
            continue
        _, i = min(_rest_frames(canon, np.flatnonzero(ok)))
        out.append(corpus.load_frames(info.key, [i])[0])
        taken += 1
    return out


def refit_file(data: Path, path: Path, exclude=(), log=print, readback=(), only=None) -> dict:
    """Refit the label tensors of the parameters file ``path`` in place (every other tensor kept); ``readback``:
    the labels to read-back calibrate (None: all; (): none, the plain least-squares fit; 'sad:0.5': part way).
    ``only``: rewrite these labels' tensors alone, every other label's tensors and fit summary kept as in the file
    (a calibrated label's code depends on the renderer it was calibrated on: a label left alone keeps its figures)."""
    import copy

    from .params import load_params, save_params

    params = load_params(path)
    old = copy.deepcopy(params)
    clips = labelled_clips(data, exclude, log=log)
    if only is not None and readback is not None:   # calibrate only what is rewritten
        readback = tuple(r for r in readback if r.partition(":")[0] in only)
    faces = calibration_frames(data, clips) if readback is None or len(readback) else None
    summary = fit_labels(clips, params, log=log, faces=faces, readback=readback)
    if only is not None:
        before = old.info.get("fit", {}).get("emotion", {})
        kept = [k for k in old.emotion_shapes if k not in only]
        for k in kept:
            params.emotion_shapes[k] = old.emotion_shapes[k]
            params.emotion_mouths[k] = old.emotion_mouths[k]
            params.emotion_lids[k] = old.emotion_lids[k]
            if k in before.get("labels", {}):
                summary["labels"][k] = before["labels"][k]
        cal = [c for c in calibrated_labels(old) if c.partition(":")[0] in kept]
        cal += [c for c in (readback or ()) if c.partition(":")[0] in only]
        if cal or before.get("readback"):
            rb = dict(before.get("readback") or {}, **summary.get("readback", {}))
            shares = readback_shares(cal)
            rb["labels"] = sorted(shares)
            rb.pop("shares", None)
            if any(v != 1.0 for v in shares.values()):
                rb["shares"] = {k: v for k, v in shares.items() if v != 1.0}
            summary["readback"] = rb
        summary["only"] = sorted(only)
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
    ap.add_argument("--readback", default="", metavar="LABELS",
                    help="labels whose emotion code is read-back calibrated: a comma list (angry,surprise; "
                         "'sad:0.5' part way from the plain code) or 'all' "
                         "(default: none, the plain least-squares fit of the measured offsets)")
    ap.add_argument("--only", default=None, metavar="LABELS",
                    help="rewrite only these labels' tensors (a comma list); every other label kept as in the file")
    args = ap.parse_args(argv)
    only = None if args.only is None else tuple(x.strip() for x in args.only.split(",") if x.strip())
    refit_file(args.data, args.into, args.exclude, readback=readback_labels(args.readback), only=only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
