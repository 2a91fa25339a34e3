"""Expression ratio images of the mesh-warp family's emotion labels: what a label does to the skin's shading.

    python -m pdfgc.families.meshwarp.emotion_texture --corpus ../shared/data/corpus [--out FILE]   (~30 s)

A warp moves the portrait's own pixels; it cannot paint the folds, furrows and lines that make a real face's
expression read (issue 20: fer reads the label fit's actors' real happy and sad clips as happy / sad on 75-100 % of
frames, their angry at 7 / 60 %, ``benchmarks/meshwarp_emotion_real.py``, but a warp with the same mesh change as
neutral). Expression ratio images (Liu, Shan & Zhang, "Expressive expression mapping with ratio
images", SIGGRAPH 2001) carry them over: for one person under one light, the ratio of the expressive face to the
neutral face, both brought to the same geometry (here the face mesh's texture frame, ``layout``), is the
expression's shading change (a fold darkens one side and lights the other), independent of the skin's own albedo.
Multiplying another face's texture by it, before the warp moves that texture to the expression's geometry, adds the
same shading change to that face.

**Measured** (``build``): per label, every frame of the person's level-3 clip and of the person's neutral clip is
warped into the texture frame (the face triangles, piecewise affine, as the renderer maps pixels) and averaged per
clip (``clip_texture``); ``log_ratio``: the log ratio of the two means' luminance, smoothed (``SMOOTH_PX``: under a
fold's width, over the warp's misalignment), less its broad part (``BROAD_PX``: a change of the light between the
clips is not the expression's, and on another face it shows as a blotch), on skin only (hair and brows, darker than
``SKIN_SHARE`` of the face, left out: one actor's fringe moves), clipped to +-``LOG_CLIP``. The people (the corpus's
MEAD actors M030 and W009, dreamtalk's MIT-licensed style clips) and, for the symmetric labels, their mirror images
are combined by ``shared``: their mean, with what one of them alone shows damped (level 1 = that mean; scaling it to
one person's own strength, x1.3-1.4, raised fer's happy / sad from 82 / 22 % to 95 / 26 % but the identity distance
from 0.38 to 0.41, over the issue's 0.40: not shipped). Both clips are speech, so speech's own shading mostly
cancels; the eyes and the lips (the lids' opening, the lips and the mouth interior change with blinks and speech
frame by frame, and the renderer's own parts draw them) are masked out, and the ratio fades to 1 at the face outline
and the hairline (``face_mask``), so the change has no edge. ``tint``: a fold's shadow on skin is redder than a grey
one; per label, each colour channel's log ratio is a fitted multiple of the luminance's (R ~0.9, G ~1.05, B
~1.1-1.2).

**Applied** (``ExpressionTexture``): per portrait, each label's log ratio is warped once from the texture frame to
the portrait's own mesh; for label weights w (a level, or a blend's shares) the portrait's pixels are multiplied by
exp(sum w_k log r_k) = prod r_k ** w_k (per channel, with the label's tint; a brightening stops where the
brightest channel reaches white, so bright skin keeps its hue) before the warp. Level 0 changes
nothing (the renderer then samples the untouched portrait), a level is a power of the ratio, and a blend of two
labels at 0.5 each is the geometric mean of their ratios.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from pdfgc.media.mesh_indices import EYE_LOWER, EYE_UPPER, LIP_OUTER_LOWER, LIP_OUTER_UPPER, NUM_POINTS

FORMAT = "pdfgc-meshwarp-expression-ratios"
TEXTURE = 128          # texture frame size (px); the face spans ~0.86 of it: ~110 px, a MEAD 256 px face's own size
BROAD_PX = 20.0        # Gaussian sigma of the broad shading change removed from the ratio (~18 % of the face width)
SMOOTH_PX = 2.0        # Gaussian sigma of the log ratio, texture px (~1.8 % of the face width)
LOG_CLIP = 0.35        # |log ratio| <= 0.35: a ratio in [0.70, 1.42] (a deep fold's shadow, not a lost track)
EDGE_PX = 6.0          # the ratio fades to 1 over this many texture px inside the outline and around eyes/mouth
HOLE_EDGE_PX = 3.0     # ... but over 3 px at the eyes and lips (the lids' own folds are part of an expression)
MARGIN_PX = 2.0        # ... after a margin of 2 px at 0 (a texel and the polygons' rounding)
SHARED_GAIN, SHARED_SLACK = 2.0, 0.05   # ``shared``: the mean may exceed the weaker person's change 2x + 0.05
ASYMMETRIC = ("contempt",)   # FACS: unilateral AU14; the other labels' ratios are made left-right symmetric
SKIN_SHARE = 0.6       # a texel darker than 0.6 x the face's median luminance is hair or brow, not skin
HAIRLINE = 0.12        # and over the top 12 % of the face's height (one actor's fringe moves there between clips)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)   # ITU-R BT.601 luminance weights


# ---------------------------------------------------------------------------------------------- geometry


@functools.lru_cache(maxsize=1)
def _face_triangles() -> np.ndarray:
    from pdfgc.families.meshwarp.topology import triangles
    return np.asarray(triangles())


def layout(mean_shape: np.ndarray, size: int = TEXTURE) -> np.ndarray:
    """(478,2) texture-frame positions: the canonical mean face, frontal, centred, its height ~0.86 ``size``."""
    m = np.asarray(mean_shape, np.float64)[:, :2]
    lo, hi = m[:NUM_POINTS].min(0), m[:NUM_POINTS].max(0)
    k = 0.86 * size / float((hi - lo).max())
    return (m - 0.5 * (lo + hi)) * k + 0.5 * (size - 1)


def triangle_maps(dst: np.ndarray, src: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel source positions (mx, my) float32 (size, size) of the piecewise-affine map that takes the face
    triangles at ``dst`` (pixels of the output) to those at ``src``, and the coverage mask (bool: inside a
    triangle). Pixels outside map nowhere (-1)."""
    from pdfgc.families.meshwarp.warp import _affines

    tris = _face_triangles()
    d = np.asarray(dst, np.float64)[:, :2][tris]
    s = np.asarray(src, np.float64)[:, :2][tris]
    coef = np.concatenate([_affines(s, d), np.zeros((1, 6), np.float32)])   # last row: "outside" -> (0, 0)
    ids = np.full((size, size), len(tris), np.int32)
    order = np.argsort(-np.asarray(dst, np.float64)[tris, 2].mean(1)) if np.shape(dst)[1] > 2 else range(len(tris))
    pts = np.round(d * 4).astype(np.int32)
    for k in order:
        cv2.fillConvexPoly(ids, pts[k], int(k), cv2.LINE_8, 2)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    c = coef[ids]
    mx = c[..., 0] * xs + c[..., 1] * ys + c[..., 2]
    my = c[..., 3] * xs + c[..., 4] * ys + c[..., 5]
    inside = ids < len(tris)
    mx[~inside] = my[~inside] = -1.0
    return mx, my, inside


def face_mask(uv: np.ndarray, size: int = TEXTURE) -> np.ndarray:
    """(size,size) float32 in [0,1]: 1 on the skin of the texture frame, fading to 0 over ``EDGE_PX`` toward the
    face outline and toward the eye openings and the lips (the lids' opening, the lips and the mouth interior change
    with blinks and speech frame by frame, and the renderer's eye and mouth parts draw them)."""
    from pdfgc.families.meshwarp.topology import face_oval

    def poly(idx):
        m = np.zeros((size, size), np.uint8)
        cv2.fillPoly(m, [np.round(uv[list(idx)] * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
        return m
    skin = poly(face_oval())
    holes = np.zeros_like(skin)
    for e in range(2):
        holes |= poly(tuple(EYE_UPPER[e]) + tuple(EYE_LOWER[e][-2:0:-1]))
    holes |= poly(tuple(LIP_OUTER_UPPER) + tuple(LIP_OUTER_LOWER[-2:0:-1]))
    d_in = cv2.distanceTransform(skin, cv2.DIST_L2, 5)
    d_hole = cv2.distanceTransform(1 - holes, cv2.DIST_L2, 5)
    # zero for MARGIN_PX beyond the holes and the outline: bilinear sampling there reads only zeros
    t = np.minimum(np.clip((d_in - MARGIN_PX) / EDGE_PX, 0.0, 1.0), np.clip((d_hole - MARGIN_PX) / HOLE_EDGE_PX, 0, 1))
    top, bottom = uv[:NUM_POINTS, 1].min(), uv[:NUM_POINTS, 1].max()
    rows = (np.arange(size, dtype=np.float64) - top) / (HAIRLINE * (bottom - top))
    t = t * np.clip(rows, 0.0, 1.0)[:, None]
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)   # smoothstep: no visible edge


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb, np.float32) @ LUMA


# ---------------------------------------------------------------------------------------------- measuring


def clip_texture(path: Path, uv: np.ndarray, size: int = TEXTURE, max_frames: int = 250) -> tuple[np.ndarray, int]:
    """(size,size,3) mean RGB of a video's frames in the texture frame (NaN where no frame covers), frames used."""
    from pdfgc.media.mesh import FaceMeshDetector

    cap = cv2.VideoCapture(str(path))
    acc = np.zeros((size, size, 3), np.float64)
    cnt = np.zeros((size, size), np.float64)
    n = 0
    with FaceMeshDetector(static_image_mode=False, max_num_faces=1) as det:
        while n < max_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            faces = det.detect(rgb)
            if not faces:
                continue
            mx, my, inside = triangle_maps(uv, faces[0], size)
            tex = cv2.remap(rgb.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            acc[inside] += tex[inside]
            cnt[inside] += 1
            n += 1
    cap.release()
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where((cnt >= max(1, 0.8 * n))[..., None], acc / np.maximum(cnt, 1)[..., None], np.nan)
    return out.astype(np.float32), n


def log_ratio(expressive: np.ndarray, neutral: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Smoothed, clipped log(expressive / neutral) less its broad part (``BROAD_PX``), times the mask; 0 where
    either texture is missing or is not skin (darker than ``SKIN_SHARE`` of the face's median: hair over the
    forehead, brows), fading in over ``SMOOTH_PX``."""
    ok = np.isfinite(expressive) & np.isfinite(neutral) & (mask > 0)
    for t in (expressive, neutral):
        ok &= np.nan_to_num(t) >= SKIN_SHARE * float(np.median(t[ok & (mask > 0.5)]))
    e = np.where(ok, np.nan_to_num(expressive), 0.0).astype(np.float32)
    n = np.where(ok, np.nan_to_num(neutral), 0.0).astype(np.float32)
    w = ok.astype(np.float32)
    # normalised blur (only covered pixels count), then the ratio of the smoothed textures
    blur = functools.partial(cv2.GaussianBlur, ksize=(0, 0), sigmaX=SMOOTH_PX, borderType=cv2.BORDER_REPLICATE)
    bw = np.maximum(blur(w), 1e-6)
    r = np.log(np.maximum(blur(e) / bw, 1.0)) - np.log(np.maximum(blur(n) / bw, 1.0))
    # less its broad part (a normalised blur over the covered skin): a change of the light on the whole face or a
    # cheek between the two clips (the head turned a little) is not the expression's, and on another face it shows
    # as a blotch; the folds, furrows and lines stay
    cover = ok & (mask > 0)
    wide = functools.partial(cv2.GaussianBlur, ksize=(0, 0), sigmaX=BROAD_PX, borderType=cv2.BORDER_REPLICATE)
    r = r - wide(np.where(cover, r, 0.0).astype(np.float32)) / np.maximum(wide(cover.astype(np.float32)), 1e-3)
    soft = np.clip(2.0 * blur(ok.astype(np.float32)) - 1.0, 0.0, 1.0) * ok   # no edge where the skin ends
    return (np.clip(r, -LOG_CLIP, LOG_CLIP) * mask * soft).astype(np.float32)


def shared(log_ratios) -> np.ndarray:
    """The people's mean log ratio, limited per pixel to ``SHARED_GAIN`` x the smallest magnitude among them plus
    ``SHARED_SLACK``: what one person alone shows (M030's fringe moving on his forehead, one person's asymmetric
    fold) is damped, what they share is kept at its mean. The limit is smoothed like the ratios."""
    x = np.asarray(log_ratios, np.float32)
    cap = SHARED_GAIN * np.abs(x).min(0) + SHARED_SLACK
    cap = cv2.GaussianBlur(cap, (0, 0), 2 * SMOOTH_PX)   # a smooth limit: a hard one draws contour lines
    return np.clip(x.mean(0), -cap, cap).astype(np.float32)


def mead_clips(corpus: Path) -> dict[str, dict[str, Path]]:
    """{person: {label: clip}} of the corpus's dreamtalk MEAD style clips (front view, level 3, neutral level 1)
    for the people that have a neutral clip, labels in the project's names (``controls.explicit``)."""
    from pdfgc.controls.explicit import normalise_emotion
    out: dict[str, dict[str, Path]] = {}
    for p in sorted((Path(corpus) / "dreamtalk").glob("data__style_clip__video__*_front_*_level*_001.mp4")):
        person, _, emo, level = p.stem.split("__")[-1].split("_")[:4]
        if (emo == "neutral") or level == "level3":
            out.setdefault(person, {})[normalise_emotion(emo)] = p
    return {k: v for k, v in out.items() if "neutral" in v}


def build(corpus: Path, mean_shape: np.ndarray, log=print) -> tuple[dict[str, np.ndarray], dict]:
    """{label: (TEXTURE,TEXTURE) float32 log ratio} averaged over the people, and the metadata (sources, sizes)."""
    uv = layout(mean_shape)
    mask = face_mask(uv)
    per: dict[str, list] = {}
    tints: dict[str, list] = {}
    sources = []
    for person, clips in mead_clips(corpus).items():
        neutral_rgb, nn = clip_texture(clips["neutral"], uv)
        neutral = luminance(neutral_rgb)
        sources.append(clips["neutral"].name)
        for label, path in sorted(clips.items()):
            if label == "neutral":
                continue
            rgb, n = clip_texture(path, uv)
            per.setdefault(label, []).append(log_ratio(luminance(rgb), neutral, mask))
            tints.setdefault(label, []).append(tint(rgb, neutral_rgb, per[label][-1], mask))
            sources.append(path.name)
            log(f"{person} {label}: {n} frames against {nn} neutral, |log ratio| mean "
                f"{float(np.abs(per[label][-1])[mask > 0.5].mean()):.3f}")
    ratios = {}
    for k, v in per.items():
        # a symmetric expression: each person's mirror image is one more sample of it (one side's stray light or
        # hair is then damped by ``shared`` like one person's)
        samples = v if k in ASYMMETRIC else v + [x[:, ::-1] for x in v]
        ratios[k] = shared(samples)
    meta = {"format": FORMAT, "texture": TEXTURE, "smooth_px": SMOOTH_PX, "log_clip": LOG_CLIP, "edge_px": EDGE_PX,
            "people": sorted(mead_clips(corpus)), "sources": sources,
            "asymmetric": list(ASYMMETRIC),
            "source_repo": "ali-vilab/dreamtalk data/style_clip/video (MEAD actors)", "licence": "MIT",
            "method": "Liu, Shan & Zhang 2001 expression ratio images: mean luminance of the level-3 clip over the "
                      "neutral clip in the face mesh's texture frame, log, smoothed, clipped; the people's shared "
                      "change (their mean, where they agree)"}
    meta["tint"] = {k: np.mean(v, 0).round(3).tolist() for k, v in sorted(tints.items())}
    return ratios, meta


def tint(expressive: np.ndarray, neutral: np.ndarray, lum_log_ratio: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(3,) per-channel exponents k: each colour channel's log ratio ~ k_c x the luminance log ratio (least squares
    over the skin): a fold's shadow on skin is redder than a grey one (light scattered under the skin)."""
    skin = (mask > 0.5) & (np.abs(lum_log_ratio) > 1e-3)
    y = lum_log_ratio[skin]
    out = []
    for c in range(3):
        x = log_ratio(expressive[..., c], neutral[..., c], mask)[skin]
        out.append(float((x * y).sum() / max((y * y).sum(), 1e-9)))
    return np.array(out)


# ---------------------------------------------------------------------------------------------- file


DEFAULT_PATH = Path(__file__).resolve().parents[2] / "weights" / "meshwarp_expressions.safetensors"
# the shipped file's SHA-256 (tests/test_meshwarp_emotion.py): rebuilt by the command above, on the corpus's clips
SHIPPED_SHA256 = "447e8195be5fa916663fc847d93456cabd7480c79690f3df701f95955f23109e"


def save(ratios: dict[str, np.ndarray], meta: dict, mean_shape: np.ndarray, path: Path) -> Path:
    import torch
    from safetensors.torch import save_file
    tensors = {f"log_ratio.{k}": torch.from_numpy(np.ascontiguousarray(v, np.float16)) for k, v in ratios.items()}
    tensors["layout"] = torch.from_numpy(layout(mean_shape).astype(np.float32))
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": FORMAT, "info": json.dumps(meta)})
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


class ExpressionRatios:
    """The shipped ratio images: ``labels`` (sorted), ``log_ratio[label]`` (T,T) float32, ``layout`` (478,2)."""

    def __init__(self, log_ratio: dict[str, np.ndarray], uv: np.ndarray, info: dict | None = None,
                 tint: dict | None = None):
        self.log_ratio = {k: np.asarray(v, np.float32) for k, v in log_ratio.items()}
        # per label, the (R,G,B) exponents of the luminance ratio (``tint``); 1,1,1: grey
        self.tint = {k: np.asarray((tint or {}).get(k, (1.0, 1.0, 1.0)), np.float32) for k in self.log_ratio}
        self.labels = sorted(self.log_ratio)
        self.layout = np.asarray(uv, np.float64)
        self.size = next(iter(self.log_ratio.values())).shape[0] if self.log_ratio else TEXTURE
        self.info = info or {}

    @classmethod
    def load(cls, path: Path | None = None) -> "ExpressionRatios":
        from pdfgc.tensorfile import read_tensors
        path = Path(path) if path is not None else DEFAULT_PATH
        tensors, meta = read_tensors(path, "expression ratio file", framework="np", expect_format=FORMAT)
        ratios = {k[len("log_ratio."):]: v.astype(np.float32) for k, v in tensors.items()
                  if k.startswith("log_ratio.")}
        info = json.loads(meta.get("info", "{}"))
        return cls(ratios, tensors["layout"], info, info.get("tint"))

    def bind(self, image: np.ndarray, mesh: np.ndarray) -> "ExpressionTexture":
        return ExpressionTexture(self, image, mesh)


class ExpressionTexture:
    """One portrait's labels' log ratios in its own pixels; ``texture(weights)`` the portrait's pixels with the
    labels' shading (``weights``: one share per ``ratios.labels``), None for all-zero weights (the untouched
    portrait)."""

    def __init__(self, ratios: ExpressionRatios, image: np.ndarray, mesh: np.ndarray):
        self.ratios, self.image = ratios, np.ascontiguousarray(image)
        s = self.image.shape[0]
        mx, my, inside = triangle_maps(mesh, ratios.layout * 1.0, s)
        ys, xs = np.nonzero(inside)
        if len(ys) == 0:
            self.box, self.maps = None, {}
            return
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        self.box = (y0, y1, x0, x1)
        sub_x, sub_y = mx[y0:y1, x0:x1], my[y0:y1, x0:x1]
        self.maps = {k: cv2.remap(v, sub_x, sub_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                     for k, v in ratios.log_ratio.items()}
        self._last = (None, None)

    def log_ratio(self, weights) -> np.ndarray | None:
        """(h,w,3) float32 combined per-channel log ratio over ``self.box`` for label weights (sum of w_k x the
        label's log ratio x its tint), None when nothing changes."""
        w = np.asarray(weights, np.float64).reshape(-1)
        if self.box is None or not np.any(w):
            return None
        out = np.zeros(next(iter(self.maps.values())).shape + (3,), np.float32)
        for k, wk in zip(self.ratios.labels, w):
            if wk:
                out += (np.float32(wk) * self.maps[k])[..., None] * self.ratios.tint[k]
        return out

    def texture(self, weights) -> np.ndarray | None:
        w = np.asarray(weights, np.float32).reshape(-1)
        key = w.tobytes()
        if self._last[0] == key:
            return self._last[1]
        lr = self.log_ratio(w)
        if lr is None:
            out = None
        else:
            y0, y1, x0, x1 = self.box
            out = self.image.copy()
            patch = out[y0:y1, x0:x1].astype(np.float32)
            # a brightening stops where the brightest channel reaches white: the hue stays (a clipped red channel
            # would turn bright skin grey)
            gain = np.exp(lr)
            top = (patch * gain).max(2)
            gain *= np.minimum(1.0, np.maximum(255.0, patch.max(2)) / np.maximum(top, 1.0))[..., None]
            out[y0:y1, x0:x1] = np.clip(patch * gain + 0.5, 0, 255).astype(np.uint8)
        self._last = (key, out)
        return out


# ---------------------------------------------------------------------------------------------- command


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Measure the emotion labels' expression ratio images.")
    ap.add_argument("--corpus", type=Path, required=True, help="the raw corpus folder (its dreamtalk/ clips)")
    ap.add_argument("--out", type=Path, default=DEFAULT_PATH)
    ap.add_argument("--params", type=Path, default=None, help="meshwarp parameters (mean shape; default shipped)")
    args = ap.parse_args(argv)
    from pdfgc.families.meshwarp.params import load_params
    mean_shape = load_params(args.params).mean_shape
    ratios, meta = build(args.corpus, mean_shape)
    save(ratios, meta, mean_shape, args.out)
    print(f"wrote {args.out}: {', '.join(sorted(ratios))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
