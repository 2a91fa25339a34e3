"""Issue 23: does every explicit control of the default (mesh-warp) model land where it is asked, on any face?

    python benchmarks/meshwarp_controls.py [--quick] [--no-baseline] [--no-follow] [--framings photo,tight256,crop224]
    python benchmarks/meshwarp_controls.py --table     # re-write controls.md from controls.json
    python benchmarks/meshwarp_controls.py --misread-strip   # controls_misread.png: the renders read least alike

Portraits the fit never saw, each at three framings (the full photo; a tight 256 px head shot cut around the face;
the aligned 224 crop the pipeline makes of the photo, given back as the portrait):
  - the shipped portraits: pdfgc anne.png, real3dportrait Macron.png, liveportrait source_s*.jpg, edtalk's
    identity photos, xportrait's source image;
  - one frame (frame 10) of a clip of each held-out person (`pdfgc/families/meshwarp/heldout_identities.txt`,
    identity labels of the corpus manifest; the corpus has no stills of them).
Every render goes through the public pipeline (`TalkingHeadPipeline.plan` / `render`) with explicit controls, and
is measured back with mediapipe's face mesh in static-image mode, head angles by `signals.head_pose` as changes
from the unchanged frame (what `pdfgc evaluate` reads):
  pose   yaw +-10/20/30, pitch +-10/15/20, roll +-10, each held 2 frames (step keyframes), the second measured:
         per control the mean and worst absolute error of the asked angle, and the cross-talk (largest change of
         the other two angles); again without the portraits whose own head is turned beyond OWN_POSE_LIMIT; the
         read-back's own noise (every pose frame read again shifted by half a pixel); the averaged meter (every
         pose frame, the unchanged one too, read in READINGS views of calibration.READ_VIEWS, each render's reading
         their mean, its own noise from the even / odd views' means; results/meshwarp/xtalk_s33.md); beside them
         the per-portrait calibration before issue 23's second round (controls_before.json, same portraits) and
         the baseline: the same renders with the calibration off (the warp's one global depth gain;
         --no-baseline skips it).
         --closed-loop adds the model.py hook proposed for issue 23 (closing the loop at the angles a plan holds)
  gaze   right / left (0.5 iris units), up / down (0.2): measured gaze change (`signals.gaze`) over the code change
         asked, per direction (1 = lands exactly), and its sign
  blink  a schedule of 2 blinks: both found within 2 frames (`signals.blink_events`), no extra
  follow a pose video, an eye video and an expression video (meshwarp_targets.py's clips and tracking meter) on
         6 portraits, calibrated and baseline: r and amplitude of the head angles, EAR r, gaze r
Writes benchmarks/results/meshwarp/controls.json, controls.md and controls_worst.png (the worst faces).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OUT = ROOT / "benchmarks" / "results" / "meshwarp"
SHIPPED = [DATA / "pdfgc/anne.png", DATA / "real3dportrait/Macron.png", DATA / "edtalk/identity_source.jpg",
           DATA / "edtalk/uncrop_face.jpg", DATA / "xportrait/source_image.png"] + sorted(
    (DATA / "liveportrait").glob("source_s*.jpg"))
POSE_STEPS = [("yaw", v) for v in (10, -10, 20, -20, 30, -30)] + [("pitch", v) for v in (10, -10, 15, -15, 20, -20)] \
    + [("roll", v) for v in (10, -10)]
GAZE_STEPS = [("right", 0.5, 0.0), ("left", -0.5, 0.0), ("up", 0.0, 0.2), ("down", 0.0, -0.2)]
BLINK_TIMES = [0.4, 1.2]
# the three cross-reenactment portraits of meshwarp_targets.py, then three more of different framings
FOLLOW_PORTRAITS = [DATA / "pdfgc/anne.png", DATA / "real3dportrait/Macron.png",
                    DATA / "corpus/AAAI22-one-shot-talking-face/portraits/samples__imgs__AdamSchiff_0.jpg",
                    DATA / "liveportrait/source_s3.jpg", DATA / "edtalk/identity_source.jpg",
                    DATA / "xportrait/source_image.png"]
FRAMINGS = ("photo", "tight256", "crop224")
FRONTAL_YAW = 15.0  # follow: the eye clip's frames with its head within this many degrees of yaw of frontal
OPEN_SHARE = 0.5   # follow: the driving eye counts as open at this share of the clip's open EAR (90th percentile)
PLACED = 0.2   # follow: a rendered eye is read where it is drawn within this many eye widths (eye_misplacement)
AXES = ("yaw", "pitch", "roll")


def heldout_frames() -> list[tuple[str, np.ndarray]]:
    """Frame 10 of the first clip of each held-out identity (manifest order)."""
    held = [ln.strip() for ln in (ROOT / "pdfgc/families/meshwarp/heldout_identities.txt").read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    seen, out = set(), []
    with open(DATA / "corpus/manifest.csv") as f:
        for row in csv.DictReader(f):
            who = row["identity_guess"]
            if who not in held or who in seen or not row["kind"].startswith("video"):
                continue
            cap = cv2.VideoCapture(str(DATA / "corpus" / row["local_path"]))
            cap.set(cv2.CAP_PROP_POS_FRAMES, 10)
            ok, bgr = cap.read()
            cap.release()
            if ok:
                seen.add(who)
                out.append((f"heldout:{who}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    return out


def tight_headshot(image: np.ndarray, det, size: int = 256) -> np.ndarray | None:
    """A square cut 1.3x the face mesh's extent around it (edges replicated), resized to `size` px."""
    faces = det.detect(image)
    if not faces:
        return None
    p = faces[0][:, :2]
    c = 0.5 * (p.min(0) + p.max(0))
    half = 0.65 * float((p.max(0) - p.min(0)).max())
    m = np.array([[size / (2 * half), 0, size / 2 - c[0] * size / (2 * half)],
                  [0, size / (2 * half), size / 2 - c[1] * size / (2 * half)]])
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


def render(pipe, portrait, **kw) -> np.ndarray:
    return render_plan(pipe, portrait, **kw)[0]


def render_plan(pipe, portrait, **kw):
    """``render``'s frames and the plan they were rendered from."""
    from pdfgc.media import preprocess as pp
    from pdfgc.options import AnimateOptions
    opt = AnimateOptions(progress=False, lips="still", refiner=False, **kw)
    plan = pipe.plan(portrait, None, opt)
    return np.concatenate([pp.to_uint8(im) for _, im in pipe.render(plan, opt)]), plan


def eye_misplacement(read: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(T,) per frame, the larger over both eyes of the distance between the eye mediapipe read (the mean of its 6
    EAR points) and the eye drawn there (the target mesh's), in the target's eye widths: where it is large the
    reading is of an eye that is not there (the cartoon's shut eyes were read as open eyes 0.13-0.46 eye widths
    above the drawn lid line; the photographs' 0.05-0.13, their open eyes at most 0.13; eyes_s34.md)."""
    from pdfgc.media.mesh_indices import EAR_POINTS
    out = []
    for e in range(2):
        pr, pt = read[:, EAR_POINTS[e], :2].mean(1), target[:, EAR_POINTS[e], :2].mean(1)
        w = np.linalg.norm(target[:, EAR_POINTS[e][3], :2] - target[:, EAR_POINTS[e][0], :2], axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.linalg.norm(pr - pt, axis=1) / w)
    return np.nan_to_num(np.max(out, axis=0), nan=np.inf)


def step_keys(values: list[dict]) -> list[dict]:
    """Step keyframes holding values[i] on frame i (frame 0: nothing changed)."""
    return [{"t": 0.0 if i == 0 else (i - 0.5) / 25.0, **v} for i, v in enumerate(values)]


def measure(det, frames) -> np.ndarray:
    rows = []
    for f in frames:
        faces = det.detect(np.ascontiguousarray(f))
        rows.append(faces[0] if faces else np.full((478, 3), np.nan))
    return np.stack(rows)


def run_portrait(pipe, det, name, image, calibrations, pose_only: bool = False) -> dict:
    from pdfgc.controls.explicit import BlinkControl, GazeControl, PoseControl
    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp.calibration import jittered, view
    portrait = pipe.load_portrait(image)
    res = {"name": name}
    # each control held 2 frames (as a held --yaw is), the second one measured
    keys = step_keys([{a: 0.0 for a in AXES}] + [{a: (v if a == ax else 0.0) for a in AXES} for ax, v in POSE_STEPS
                                                 for _ in range(2)])
    n = len(keys)
    for cal in calibrations:
        _CALIBRATE[0] = cal
        t0 = time.perf_counter()
        fr = render(pipe, portrait, max_frames=n, duration=n / 25.0,
                    pose_control=PoseControl(keyframes=keys, interpolation="step"))
        dt = time.perf_counter() - t0
        fr = np.concatenate([fr[:1], fr[2:n:2]])   # the unchanged frame, then one frame per control
        ang = S.head_pose(measure(det, fr))
        d = ang[1:] - ang[0]
        res["pose_" + ("calibrated" if cal else "global_gain")] = d.round(2).tolist()
        if cal:
            # the read-back's own noise: the same frames read again, shifted by half a pixel
            res["own_pose"] = ang[0].round(2).tolist()
            jit = S.head_pose(measure(det, [jittered(f) for f in fr]))
            res["pose_reread_calibrated"] = (jit[1:] - ang[0]).round(2).tolist()
            # the averaged meter: every frame (the unchanged one too) read in READINGS views (calibration.READ_VIEWS:
            # the frame, half-pixel shifts, a 1.5 % rescale each way), each render's reading the mean of its views
            # less the unchanged frame's mean; and the means of the even and of the odd views apart (its own noise)
            views = [ang, jit] + [S.head_pose(measure(det, [view(f, k) for f in fr])) for k in range(2, READINGS)]
            v = np.stack(views)
            res["pose_views_calibrated"] = v.round(2).tolist()
            for key, sel in (("pose_mean_calibrated", v), ("pose_half_a_calibrated", v[0::2]),
                             ("pose_half_b_calibrated", v[1::2])):
                m = sel.mean(0)
                res[key] = (m[1:] - m[0]).round(3).tolist()
        res["pose_seconds_" + ("calibrated" if cal else "global_gain")] = round(dt, 2)
        if cal:
            res["frames_pose"] = fr
    _CALIBRATE[0] = True
    res["size"] = int(fr.shape[1])
    if pose_only:
        return res
    # gaze: one frame per direction after a frame at the camera
    gk = [{"t": 0.0, "h": 0.0, "v": 0.0}] + [{"t": (i + 0.5) / 25.0, "h": h, "v": v}
                                              for i, (_, h, v) in enumerate(GAZE_STEPS)]
    fr = render(pipe, portrait, max_frames=len(gk), duration=len(gk) / 25.0,
                gaze_control=GazeControl(keyframes=gk, interpolation="step"))
    g = S.gaze(measure(det, fr[:len(gk)]))
    from pdfgc.families.meshwarp.codes import GAZE_H_PER_UNIT, GAZE_V_PER_UNIT
    asked = np.array([[GAZE_H_PER_UNIT * h, -GAZE_V_PER_UNIT * v] for _, h, v in GAZE_STEPS])
    got = g[1:] - g[0]
    res["gaze"] = {n_: {"asked": a.tolist(), "measured": m.round(4).tolist()}
                   for (n_, _, _), a, m in zip(GAZE_STEPS, asked, got)}
    res["frames_gaze"] = fr[:len(gk)]
    # blinks
    nb = 40
    fr = render(pipe, portrait, max_frames=nb, duration=nb / 25.0, blink_control=BlinkControl(times=BLINK_TIMES))
    ear = S.eye_aspect_ratio(measure(det, fr[:nb])).mean(1)
    ev = S.blink_events(ear)
    centres = [(a + b) / 2 for a, b in ev]
    want = [round(t * 25) for t in BLINK_TIMES]
    res["blink"] = {"found": centres, "asked": want, "ok": len(centres) == len(want) and all(
        abs(c - w) <= 2 for c, w in zip(centres, want)), "ear_min_over_open": float(np.nanmin(ear) / ear[0])}
    return res


_CALIBRATE = [True]
_CLOSED_LOOP = [False]


def _patch_closed_loop() -> None:
    """--closed-loop: what the model would do with the change proposed for issue 23 (model.py is not this
    benchmark's to change): once per plan, before its frames, the calibration closes the loop at the single-axis
    requests the plan holds (``calibration.held_requests`` -> ``PoseCalibration.refine_at``)."""
    from pdfgc.families.meshwarp import model as M
    from pdfgc.families.meshwarp.calibration import held_requests
    orig = M.MeshWarpFamily.target_meshes

    def target_meshes(self, plan, sl):
        st = plan.appearance
        if _CLOSED_LOOP[0] and st.calibrate and np.any(plan.pose[:, :3].numpy()):
            if st.pose_calibration is None:
                st.pose_calibration = self.calibrate_pose(st)
            if getattr(st, "_refined_for", None) is not plan:
                st.pose_calibration.refine_at(held_requests(plan.pose[:, :3].double().numpy()))
                st._refined_for = plan
        return orig(self, plan, sl)
    M.MeshWarpFamily.target_meshes = target_meshes


def _patch_calibration_switch() -> None:
    """--no-calibration / the baseline: the family renders the requested angles as they are."""
    from pdfgc.families.meshwarp import model as M
    orig = M.MeshWarpFamily.encode_portrait

    def encode(self, portrait, prec, opt=None):
        state, zeros = orig(self, portrait, prec, opt)
        state.calibrate = _CALIBRATE[0]
        return state, zeros
    M.MeshWarpFamily.encode_portrait = encode


# a portrait whose own head is turned beyond this (deg, yaw or pitch) asks the warp for 45-60 deg with a 20-30 deg
# request: out of its range (the render tears; see controls.md)
OWN_POSE_LIMIT = 25.0


def in_range(r: dict) -> bool:
    return "own_pose" not in r or max(abs(r["own_pose"][0]), abs(r["own_pose"][1])) <= OWN_POSE_LIMIT


def summarise(results: list[dict], key: str) -> dict:
    out = {}
    results = [r for r in results if key in r]
    for j, (ax, v) in enumerate(POSE_STEPS):
        a = AXES.index(ax)
        d = np.array([r[key][j] for r in results], np.float64)
        if not len(d):
            continue
        ok = np.isfinite(d).all(1)
        err = np.abs(d[ok, a] - v)
        other = np.abs(np.delete(d[ok], a, axis=1)).max(1)
        worst = int(np.argmax(err))
        out[f"{ax}{v:+d}"] = {"mean_abs_error": float(err.mean()), "worst_abs_error": float(err.max()),
                              "worst_portrait": [r["name"] for r, k in zip(results, ok) if k][worst],
                              "cross_talk_mean": float(other.mean()), "cross_talk_worst": float(other.max()),
                              "cross_talk_over": int((other > 1.5).sum()),
                              "portraits": int(ok.sum()), "lost": int((~ok).sum())}
    return out


def _pose_rows(cal: dict, before: dict, base: dict) -> list[str]:
    lines = ["| control | mean abs error | worst abs error | worst cross-talk | before: mean / worst error | before: "
             "worst cross-talk | global gain: mean / worst error | global gain: worst cross-talk |",
             "|---|---|---|---|---|---|---|---|"]

    def cols(b):
        return f"{b['mean_abs_error']:.1f} / {b['worst_abs_error']:.1f} | {b['cross_talk_worst']:.1f}" if b else "- | -"
    for k, v in cal.items():
        lines.append(f"| {k} | {v['mean_abs_error']:.1f} | {v['worst_abs_error']:.1f} | {v['cross_talk_worst']:.1f} "
                     f"| {cols(before.get(k))} | {cols(base.get(k))} |")
    return lines


def _worst_line(cal: dict, what: str) -> str:
    worst_e = max(v["worst_abs_error"] for v in cal.values())
    worst_x = max(v["cross_talk_worst"] for v in cal.values())
    ke = max(cal, key=lambda k: cal[k]["worst_abs_error"])
    return (f"Worst over all pose controls{what}: error {worst_e:.1f} deg ({ke}, {cal[ke]['worst_portrait']}; "
            f"target <= 3: {'met' if worst_e <= 3 else 'MISSED'}), cross-talk {worst_x:.1f} deg (target <= 1.5: "
            f"{'met' if worst_x <= 1.5 else 'MISSED'}); cross-talk above 1.5 deg in "
            f"{sum(v.get('cross_talk_over', 0) for v in cal.values())} of "
            f"{sum(v['portraits'] for v in cal.values())} renders.")


# two readings of one render (the frame and the frame shifted by half a pixel) further apart than this (deg, any
# angle): the read-back is unsure of that view (the same as calibration.READ_SPREAD_MAX)
READ_SPREAD = 1.5
# the averaged meter: each pose frame read in this many views (calibration.READ_VIEWS), the reading their mean
READINGS = 6


def reliable_summary(results: list[dict]) -> dict:
    """Worst error and cross-talk over the in-range portraits' renders whose two readings agree within READ_SPREAD
    (each render's reading = the mean of the two), and how many renders were left out."""
    errs, xts, left = [], [], 0
    for r in results:
        if not in_range(r):
            continue
        a, b = np.array(r["pose_calibrated"], np.float64), np.array(r["pose_reread_calibrated"], np.float64)
        for j, (ax, v) in enumerate(POSE_STEPS):
            if not (np.isfinite(a[j]).all() and np.isfinite(b[j]).all()):
                continue
            if np.abs(a[j] - b[j]).max() > READ_SPREAD:
                left += 1
                continue
            m = 0.5 * (a[j] + b[j])
            k = AXES.index(ax)
            errs.append(abs(m[k] - v))
            xts.append(np.abs(np.delete(m, k)).max())
    xts = np.array(xts)
    return {"renders": len(errs), "left_out": left, "worst_error": float(max(errs)),
            "worst_cross_talk": float(xts.max()), "cross_talk_over": int((xts > 1.5).sum())}


def _cross_talk(d: np.ndarray) -> np.ndarray:
    """(N,14,3) readings -> (N,14) cross-talk (largest change of the two angles not asked)."""
    ax = [AXES.index(k) for k, _ in POSE_STEPS]
    return np.stack([np.abs(np.delete(d[:, j], ax[j], axis=1)).max(1) for j in range(len(POSE_STEPS))], 1)


def averaged_summary(results: list[dict]) -> dict:
    """The averaged meter over the in-range portraits: worst / mean error and cross-talk of the mean of READINGS
    views, the renders above 1.5 deg; its own noise from the two halves' means (even / odd views; the full mean's
    noise is about half their difference), and the same figures with the old meter's two readings averaged."""
    rs = [r for r in results if in_range(r) and "pose_mean_calibrated" in r]
    if not rs:
        return {}
    ax = np.array([AXES.index(k) for k, _ in POSE_STEPS])
    want = np.array([v for _, v in POSE_STEPS], np.float64)

    def figs(d):
        ok = np.isfinite(d).all(2)
        err = np.abs(d[np.arange(len(d))[:, None], np.arange(len(ax))[None], ax[None]] - want)[ok]
        xt = _cross_talk(d)[ok]
        return {"renders": int(ok.sum()), "worst_error": float(err.max()), "mean_error": float(err.mean()),
                "worst_cross_talk": float(xt.max()), "mean_cross_talk": float(xt.mean()),
                "cross_talk_over": int((xt > 1.5).sum())}
    get = {k: np.array([r[k] for r in rs], np.float64) for k in (
        "pose_mean_calibrated", "pose_half_a_calibrated", "pose_half_b_calibrated", "pose_calibrated",
        "pose_reread_calibrated")}
    a, b = get["pose_half_a_calibrated"], get["pose_half_b_calibrated"]
    ok = np.isfinite(a).all(2) & np.isfinite(b).all(2)
    dev = np.abs(a - b).max(2)[ok]
    xa, xb = _cross_talk(a)[ok], _cross_talk(b)[ok]
    mean = get["pose_mean_calibrated"]
    xm = _cross_talk(mean)
    worst = [(float(xm[i, j]), rs[i]["name"], f"{POSE_STEPS[j][0]}{POSE_STEPS[j][1]:+d}", mean[i, j].round(2).tolist())
             for i, j in zip(*np.nonzero(np.nan_to_num(xm) > 1.5))]
    return {"views": READINGS, "portraits": len(rs), "mean": figs(mean), "first_reading": figs(get["pose_calibrated"]),
            "two_readings_mean": figs(0.5 * (get["pose_calibrated"] + get["pose_reread_calibrated"])),
            "halves": {"median": float(np.median(dev)), "p95": float(np.quantile(dev, 0.95)),
                       "max": float(dev.max()), "cross_talk_max_diff": float(np.abs(xa - xb).max()),
                       "cross_talk_split": int(((xa > 1.5) != (xb > 1.5)).sum())},
            "over": sorted(worst, key=lambda w: -w[0])}


def table(R: dict) -> str:
    P = R["pose"]
    cal, base, before = P["calibrated"], P.get("global_gain", {}), P.get("before", {})
    lines = [f"Explicit pose over {R['portraits']} portraits the fit never saw ({R['people']} people x framings "
             f"{', '.join(R['framings'])}); degrees, measured change of the asked angle; cross-talk = largest change "
             "of the other two. Before: the per-portrait calibration of commit a91e1d1 (controls_before.json); "
             "global gain: the warp's one depth gain, no calibration. Each control held 2 frames, the second measured."
             + (" Closed loop at the angles the plan holds (--closed-loop: the model.py change proposed in issue 23)."
                if R.get("closed_loop") else ""), ""] + _pose_rows(cal, before, base)
    lines += ["", _worst_line(cal, "")]
    if P.get("calibrated_in_range"):
        c2 = P["calibrated_in_range"]
        n2 = next(iter(c2.values()))["portraits"]
        lines += ["", f"The same without the portraits whose own head is turned beyond {OWN_POSE_LIMIT:.0f} deg of yaw "
                  f"or pitch ({', '.join(R.get('out_of_range', [])) or 'none'}: a 20-30 deg request takes them to "
                  f"45-60 deg, beyond what the warp renders), {n2} portraits:", "",
                  "| control | mean abs error | worst abs error | worst cross-talk | before: mean / worst error | "
                  "before: worst cross-talk |", "|---|---|---|---|---|---|"]
        b2 = P.get("before_in_range", {})
        for k, v in c2.items():
            b = b2.get(k)
            bt = (f"{b['mean_abs_error']:.1f} / {b['worst_abs_error']:.1f} | {b['cross_talk_worst']:.1f}" if b
                  else "- | -")
            lines.append(f"| {k} | {v['mean_abs_error']:.1f} | {v['worst_abs_error']:.1f} | "
                         f"{v['cross_talk_worst']:.1f} | {bt} |")
        lines += ["", _worst_line(c2, f" ({n2} portraits)")]
        if b2:
            lines += [_worst_line(b2, f" before ({n2} portraits)")]
    if R.get("reread"):
        q = R["reread"]
        lines += ["", f"The read-back's own noise (each pose render read again shifted by half a pixel; largest "
                  f"change of any angle): median {q['median']:.2f} deg, 95th percentile {q['p95']:.2f}, worst "
                  f"{q['max']:.2f}; cross-talk above 1.5 deg in one reading but not in the other in "
                  f"{q['cross_talk_split']} renders."]
        if "reliable" in q:
            t = q["reliable"]
            lines += ["", f"Without the renders whose two readings disagree by more than {READ_SPREAD} deg ("
                      f"{t['left_out']} of the in-range portraits' renders) and with each render read as the mean of "
                      f"its two readings: worst error {t['worst_error']:.1f} deg, worst cross-talk "
                      f"{t['worst_cross_talk']:.1f} deg, cross-talk above 1.5 deg in {t['cross_talk_over']} of "
                      f"{t['renders']} renders."]
    if R.get("averaged"):
        q = R["averaged"]
        m, h, t = q["mean"], q["halves"], q["two_readings_mean"]
        lines += ["", f"The averaged meter ({q['portraits']} in-range portraits; each frame, the unchanged one too, "
                  f"read in {q['views']} views: the frame, half-pixel shifts, a 1.5 % rescale each way; each render's "
                  f"reading the mean): worst error {m['worst_error']:.1f} deg, worst cross-talk "
                  f"{m['worst_cross_talk']:.1f} deg (target <= 1.5: "
                  f"{'met' if m['worst_cross_talk'] <= 1.5 else 'MISSED'}), cross-talk above 1.5 deg in "
                  f"{m['cross_talk_over']} of {m['renders']} renders (mean error "
                  f"{m['mean_error']:.2f}, mean cross-talk {m['mean_cross_talk']:.2f}). The two old readings' mean: "
                  f"worst cross-talk {t['worst_cross_talk']:.1f}, {t['cross_talk_over']} above 1.5. The meter's own "
                  f"noise (the means of the even and the odd views apart, largest angle): median {h['median']:.2f}, "
                  f"95th percentile {h['p95']:.2f}, worst {h['max']:.2f} deg (the full mean's is about half); "
                  f"cross-talk above 1.5 in one half but not the other in {h['cross_talk_split']} renders."]
    lines += [""]
    lines += ["| gaze | asked change (h, v) | measured / asked: mean | worst | sign right |", "|---|---|---|---|---|"]
    for k, v in R["gaze"].items():
        lines.append(f"| {k} | {v['asked'][0]:+.2f}, {v['asked'][1]:+.2f} | {v['ratio_mean']:.2f} | "
                     f"{v['ratio_worst']:.2f} | {100 * v['sign_ok']:.0f} % |")
    b = R["blink"]
    lines += ["", f"Blink schedule ({len(BLINK_TIMES)} blinks): every blink within 2 frames and no extra on "
              f"{b['ok']}/{b['portraits']} portraits; EAR at the deepest closure / open: median "
              f"{b['ear_min_median']:.2f}, "
              f"worst {b['ear_min_worst']:.2f}.",
              f"Per-portrait calibration time: median {R['calibration_seconds']['median']:.2f} s, "
              f"max {R['calibration_seconds']['max']:.2f} s (pose render with vs without)."]
    if R.get("kept_from_previous_run"):
        lines += ["", "Kept from the previous run (code these renders do not touch): "
                  + ", ".join(R["kept_from_previous_run"]) + "."]
    if R.get("follow"):
        n = len(next(iter(R["follow"].values()))["per_portrait"])
        lines += ["", f"Following a pose video, an eye video and an expression video (meshwarp_targets.py's clips, "
                  f"{n} portraits; means over portraits, worst portrait in brackets):", "",
                  "| | pose r yaw / pitch / roll | pose amplitude yaw / pitch / roll | EAR r (per eye) | "
                  "gaze r h / v | "
                  f"gaze r h / v, driving eye open (EAR >= {OPEN_SHARE} x its open EAR) |",
                  "|---|---|---|---|---|---|"]
        for k, f in R["follow"].items():
            pp = f["per_portrait"]
            worst_amp = [max((r["pose_amplitude"][a] for r in pp), key=lambda v: abs(v - 1)) for a in range(3)]
            lines.append(
                f"| {'calibrated' if k == 'calibrated' else 'baseline (global depth gain)'} | "
                + " / ".join(f"{f['pose_r'][a]:.3f} ({min(r['pose_r'][a] for r in pp):.3f})" for a in range(3))
                + " | " + " / ".join(f"{f['pose_amplitude'][a]:.2f} ({worst_amp[a]:.2f})" for a in range(3))
                + f" | {f['ear_r']:.3f} ({min(r['ear_r'] for r in pp):.3f})"
                + (" ; per eye " + " / ".join(f"{v:.3f}" for v in f["ear_r_per_eye"]) if "ear_r_per_eye" in f else "")
                + (f" ; frontal {f['ear_r_frontal']:.3f}, per eye "
                   + " / ".join(f"{v:.3f}" for v in f["ear_r_frontal_per_eye"]) if "ear_r_frontal" in f else "")
                + " | "
                + " / ".join(f"{f['gaze_r'][a]:.3f} ({min(r['gaze_r'][a] for r in pp):.3f})" for a in range(2))
                + " | " + (" / ".join(f"{f['gaze_r_open'][a]:.3f} ({min(r['gaze_r_open'][a] for r in pp):.3f})"
                                      for a in range(2)) if "gaze_r_open" in f else "-")
                + " |")
    return "\n".join(lines) + "\n"


def strip(results: list[dict], summary: dict, path: Path, rows: int = 6) -> None:
    """The worst faces: for the pose controls with the largest errors, the unchanged frame and the render."""
    cases = sorted(((abs(r["pose_calibrated"][j][AXES.index(ax)] - v), r, j) for r in results
                    for j, (ax, v) in enumerate(POSE_STEPS) if np.isfinite(r["pose_calibrated"][j]).all()),
                   key=lambda x: -x[0])
    picked, used = [], set()
    for e, r, j in cases:
        if r["name"] in used:
            continue
        used.add(r["name"])
        picked.append((e, r, j))
        if len(picked) == rows:
            break
    tiles = []
    for e, r, j in picked:
        ax, v = POSE_STEPS[j]
        a = cv2.resize(r["frames_pose"][0], (192, 192), interpolation=cv2.INTER_AREA)
        b = cv2.resize(r["frames_pose"][j + 1], (192, 192), interpolation=cv2.INTER_AREA)
        d = r["pose_calibrated"][j]
        tile = np.concatenate([a, b], 1).copy()
        cv2.putText(tile, r["name"][:34], (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        cv2.putText(tile, f"ask {ax} {v:+d}: got y{d[0]:+.1f} p{d[1]:+.1f} r{d[2]:+.1f}", (4, 186),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    if tiles:
        half = (len(tiles) + 1) // 2
        cols = [np.concatenate(tiles[:half], 0), np.concatenate(tiles[half:] or [np.zeros_like(tiles[0])], 0)]
        if cols[1].shape[0] < cols[0].shape[0]:
            cols[1] = np.concatenate([cols[1], np.zeros((cols[0].shape[0] - cols[1].shape[0],) + cols[1].shape[1:],
                                                        np.uint8)], 0)
        cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(cols, 1), cv2.COLOR_RGB2BGR))


def follow(pipe, portraits, calibrations, seconds: float = 8.0) -> dict:
    """Cross-reenactment as benchmarks/meshwarp_targets.py measures it (same clips, same tracking meter): a pose
    video, an eye video and an expression video drive each portrait; r and amplitude of the rendered head angles,
    EAR and gaze against the driving clip's own."""
    from meshwarp_targets import EXP_VIDEO, EYE_VIDEO, POSE_VIDEO, Meter, source_signals

    from pdfgc.evaluation import signals as S
    from pdfgc.families.meshwarp import codes as C
    from pdfgc.media.mesh import FaceMeshDetector

    class Track(Meter):
        def __init__(self):
            self.det = FaceMeshDetector(static_image_mode=False, max_num_faces=1)

    n = int(seconds * 25)
    src_pose = S.head_pose(source_signals(Track(), POSE_VIDEO, n))
    src_eye = source_signals(Track(), EYE_VIDEO, n)
    src_canon, src_rot = C.canonicalize(src_eye)[:2]
    src_eye_yaw = S.rotation_to_angles(src_rot)[:, 0]
    out = {}
    for cal in calibrations:
        _CALIBRATE[0] = cal
        rows = []
        for p in portraits:
            fr, plan = render_plan(pipe, pipe.load_portrait(p), duration=seconds, pose=str(POSE_VIDEO),
                                   eyes=str(EYE_VIDEO), emotion=str(EXP_VIDEO))
            m = Track().meshes(fr)
            # the frames whose eyes mediapipe read where they are drawn (see eye_misplacement); added in session 34
            # beside the figures over all frames, which stay the headline ones
            placed = eye_misplacement(m, pipe.family.target_meshes(plan, slice(None))) <= PLACED
            g = S.head_pose(m)
            ge2, se2 = S.eye_aspect_ratio(m), S.eye_aspect_ratio(src_eye)
            ge, se = ge2.mean(1), se2.mean(1)
            # beside it, the lids' opening measured frontal (on the rigidly fitted canonical meshes, as the model
            # measures a driver): the eye clip turns its head 27-41 deg of yaw in its two sideways glances (frames
            # 81-99, 180-198) while the render takes its pose from the pose video, and a turned-away eye's image
            # EAR reads up to 1.5x its opening (its width foreshortened), so the image figure above scores the
            # eye clip's head turn too (results/meshwarp/eyeask_s32.md)
            gf2, sf2 = S.eye_aspect_ratio(C.canonicalize(m)[0]), S.eye_aspect_ratio(src_canon)
            # and both over the frames whose eye clip's head is within FRONTAL_YAW of frontal (its glances out)
            fy = np.abs(src_eye_yaw) <= FRONTAL_YAW
            gg, sg = S.gaze(m), S.gaze(src_eye)
            # beside it, gaze over the frames whose driving eye is open (a gaze read on a shut eye is undefined;
            # gaze trackers drop blink frames): EAR >= OPEN_SHARE x the clip's open EAR (its 90th percentile)
            op = se >= OPEN_SHARE * np.nanquantile(se, 0.9)
            rows.append({"portrait": Path(p).name,
                         "pose_r": [S.pearson(g[:, k], src_pose[:, k]) for k in range(3)],
                         "pose_amplitude": [float(np.nanstd(g[:, k]) / np.nanstd(src_pose[:, k])) for k in range(3)],
                         "ear_r": S.pearson(ge, se),
                         # each eye against the driving clip's same eye: the two eyes' mean (above) hides a
                         # render whose eyes follow a clip that closes them unevenly (results/meshwarp/closing_s31.md)
                         "ear_r_per_eye": [S.pearson(ge2[:, e], se2[:, e]) for e in range(2)],
                         "ear_r_frontal": S.pearson(gf2.mean(1), sf2.mean(1)),
                         "ear_r_frontal_per_eye": [S.pearson(gf2[:, e], sf2[:, e]) for e in range(2)],
                         "ear_r_turn_out": S.pearson(ge[fy], se[fy]),
                         "gaze_r_turn_out": [S.pearson(gg[fy, 0], sg[fy, 0]), S.pearson(gg[fy, 1], sg[fy, 1])],
                         "turn_out_frames": int(fy.sum()),
                         "gaze_r": [S.pearson(gg[:, 0], sg[:, 0]), S.pearson(gg[:, 1], sg[:, 1])],
                         "gaze_r_open": [S.pearson(gg[op, 0], sg[op, 0]), S.pearson(gg[op, 1], sg[op, 1])],
                         "open_frames": int(op.sum()),
                         "gaze_r_placed": [S.pearson(gg[placed, 0], sg[placed, 0]),
                                           S.pearson(gg[placed, 1], sg[placed, 1])],
                         "ear_r_placed": S.pearson(ge[placed], se[placed]),
                         "placed_frames": int(placed.sum())})
            print(f"follow ({'calibrated' if cal else 'global gain'}) {rows[-1]}", flush=True)
        out["calibrated" if cal else "global_gain"] = {
            "per_portrait": rows, **{k: np.mean([r[k] for r in rows], 0).tolist() for k in (
                "pose_r", "pose_amplitude", "ear_r", "ear_r_per_eye", "ear_r_frontal", "ear_r_frontal_per_eye",
                "ear_r_turn_out", "gaze_r_turn_out", "gaze_r", "gaze_r_open", "gaze_r_placed", "ear_r_placed")}}
    _CALIBRATE[0] = True
    return out


def misread_strip(out: Path, rows: int = 6) -> None:
    """controls_misread.png: the pose renders of the last run whose two readings (the frame, and the frame shifted by
    half a pixel) disagree the most, re-rendered (the renders are deterministic) with both readings on them."""
    from pdfgc.families.meshwarp.calibration import jittered
    from pdfgc.media.images import load_image_rgb
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model
    R = json.loads((out / "controls.json").read_text())
    cases = []
    for r in R["per_portrait"]:
        a, b = np.array(r["pose_calibrated"]), np.array(r["pose_reread_calibrated"])
        for j in range(len(POSE_STEPS)):
            if np.isfinite(a[j]).all() and np.isfinite(b[j]).all():
                cases.append((float(np.abs(a[j] - b[j]).max()), r["name"], j))
    cases.sort(key=lambda c: -c[0])
    picked, used = [], set()
    for c in cases:
        if c[1] not in used:
            used.add(c[1])
            picked.append(c)
        if len(picked) == rows:
            break
    if R.get("closed_loop"):
        _CLOSED_LOOP[0] = True
        _patch_closed_loop()
    _patch_calibration_switch()
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=1)
    det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
    from pdfgc.evaluation import signals as S
    photos = dict([(p.name, load_image_rgb(p)) for p in SHIPPED] + heldout_frames())
    tiles = []
    for _, name, j in picked:
        person, framing = name.rsplit(" [", 1)
        photo = photos[person]
        img = {"photo": lambda: photo, "tight256": lambda: tight_headshot(photo, det),
               "crop224": lambda: pipe.load_portrait(photo).crop}[framing[:-1]]()
        res = run_portrait(pipe, det, name, img, [True], pose_only=True)
        f = res["frames_pose"][j + 1]
        a = S.head_pose(measure(det, [res["frames_pose"][0], f, jittered(f)]))
        ax, v = POSE_STEPS[j]
        tile = cv2.resize(f, (256, 256), interpolation=cv2.INTER_AREA).copy()
        for k, (txt, d) in enumerate((("read", a[1] - a[0]), ("shifted 0.5 px", a[2] - a[0]))):
            cv2.putText(tile, f"{txt}: y{d[0]:+.1f} p{d[1]:+.1f} r{d[2]:+.1f}", (4, 232 + 16 * k),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        cv2.putText(tile, f"{name[:30]}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1, cv2.LINE_AA)
        cv2.putText(tile, f"asked {ax} {v:+d}", (4, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 0), 1,
                    cv2.LINE_AA)
        tiles.append(tile)
    half = (len(tiles) + 1) // 2
    grid = np.concatenate([np.concatenate(tiles[:half], 1),
                           np.concatenate(tiles[half:] + [np.zeros_like(tiles[0])] * (2 * half - len(tiles)), 1)], 0)
    cv2.imwrite(str(out / "controls_misread.png"), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="6 people, one framing")
    ap.add_argument("--no-baseline", action="store_true", help="skip the uncalibrated (global depth gain) renders")
    ap.add_argument("--framings", default=",".join(FRAMINGS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--follow-only", action="store_true", help="only the pose / eye video following")
    ap.add_argument("--no-follow", action="store_true", help="skip the pose / eye video following")
    ap.add_argument("--pose-only", action="store_true",
                    help="only the explicit pose (implies --no-follow); gaze, blink and following are kept from the "
                         "existing controls.json")
    ap.add_argument("--closed-loop", action="store_true",
                    help="the model.py change proposed for issue 23: close the loop at the angles each plan holds")
    ap.add_argument("--only", default="", help="comma-separated substrings: only the portraits whose name has one")
    args = ap.parse_args()
    if args.closed_loop:
        _CLOSED_LOOP[0] = True
        _patch_closed_loop()
    if args.pose_only:
        args.no_follow = True
    torch.set_num_threads(args.threads)
    from pdfgc.media.mesh import FaceMeshDetector
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model
    _patch_calibration_switch()
    pipe = TalkingHeadPipeline(load_model(), device="cpu", threads=args.threads)
    det = FaceMeshDetector(static_image_mode=True, max_num_faces=1)
    from pdfgc.media.images import load_image_rgb
    cals = [True] if args.no_baseline else [True, False]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    fol = None if args.no_follow else follow(pipe, FOLLOW_PORTRAITS[:3] if args.quick else FOLLOW_PORTRAITS, cals)
    if args.follow_only:
        print(json.dumps(fol, indent=1))
        return 0
    people = [(p.name, load_image_rgb(p)) for p in SHIPPED] + heldout_frames()
    framings = [f for f in args.framings.split(",") if f]
    if args.quick:
        people, framings = people[:3] + people[-3:], framings[:1]
    if args.only:
        people = [p for p in people if any(w in p[0] for w in args.only.split(","))]
    results = []
    for name, photo in people:
        for fr in framings:
            if fr == "photo":
                img = photo
            elif fr == "tight256":
                img = tight_headshot(photo, det)
            else:
                img = pipe.load_portrait(photo).crop
            if img is None:
                print(f"{name} {fr}: no face", flush=True)
                continue
            try:
                r = run_portrait(pipe, det, f"{name} [{fr}]", img, cals, args.pose_only)
            except Exception as e:  # a portrait the pipeline refuses is reported, not fatal
                print(f"{name} {fr}: {type(e).__name__}: {e}", flush=True)
                continue
            r["framing"] = fr
            results.append(r)
            d = np.array(r["pose_calibrated"])
            err = [abs(d[j, AXES.index(ax)] - v) for j, (ax, v) in enumerate(POSE_STEPS)]
            print(f"{r['name']} ({r['size']} px): worst pose error {np.nanmax(err):.1f}, pose render "
                  f"{r['pose_seconds_calibrated']:.2f} s (uncalibrated {r.get('pose_seconds_global_gain', 0):.2f} s), "
                  f"blinks {'ok' if r.get('blink', {}).get('ok') else r.get('blink', {}).get('found')}", flush=True)
    R = {"closed_loop": args.closed_loop, "portraits": len(results),
         "people": len({r["name"].split(" [")[0] for r in results}),
         "framings": framings, "steps": POSE_STEPS, "pose": {"calibrated": summarise(results, "pose_calibrated")}}
    R["pose"]["calibrated_in_range"] = summarise([r for r in results if in_range(r)], "pose_calibrated")
    R["out_of_range"] = [r["name"] for r in results if not in_range(r)]
    before = OUT / "controls_before.json"
    if before.exists():
        # the same portraits as this run (a subset with --only / --quick)
        names = {r["name"] for r in results}
        old = [r for r in json.loads(before.read_text())["per_portrait"] if r["name"] in names]
        R["pose"]["before"] = summarise(old, "pose_calibrated")
        R["pose"]["before_in_range"] = summarise([r for r in old if r["name"] not in R["out_of_range"]],
                                                 "pose_calibrated")
    a = np.array([r["pose_calibrated"] for r in results], np.float64)
    b = np.array([r["pose_reread_calibrated"] for r in results], np.float64)
    ok = np.isfinite(a).all(2) & np.isfinite(b).all(2)
    dev = np.abs(a - b).max(2)[ok]
    ax = np.array([AXES.index(k) for k, _ in POSE_STEPS])
    xt = [np.array([np.abs(np.delete(v, ax[j % len(POSE_STEPS)])).max() for j, v in enumerate(x.reshape(-1, 3))])
          for x in (a, b)]
    R["reread"] = {"median": float(np.median(dev)), "p95": float(np.quantile(dev, 0.95)), "max": float(dev.max()),
                   "cross_talk_split": int(((xt[0] > 1.5) != (xt[1] > 1.5))[ok.ravel()].sum()),
                   "reliable": reliable_summary(results)}
    R["averaged"] = averaged_summary(results)
    if fol is not None:
        R["follow"] = fol
    if not args.no_baseline:
        R["pose"]["global_gain"] = summarise(results, "pose_global_gain")
        dt = [r["pose_seconds_calibrated"] - r["pose_seconds_global_gain"] for r in results]
        R["calibration_seconds"] = {"median": float(np.median(dt)), "max": float(np.max(dt))}
    else:
        R["calibration_seconds"] = {"median": float("nan"), "max": float("nan")}
    if args.pose_only:   # the other controls as the existing controls.json has them
        old = json.loads((Path(args.out) / "controls.json").read_text())
        R.update({k: old[k] for k in ("gaze", "blink", "follow") if k in old})
        R["kept_from_previous_run"] = [k for k in ("gaze", "blink", "follow") if k in old]
        return _write(R, results, Path(args.out))
    R["gaze"] = {}
    for name, _, _ in GAZE_STEPS:
        asked = np.array(results[0]["gaze"][name]["asked"])
        k = int(np.argmax(np.abs(asked)))
        ratios = np.array([r["gaze"][name]["measured"][k] / asked[k] for r in results])
        ratios = ratios[np.isfinite(ratios)]
        R["gaze"][name] = {"asked": asked.tolist(), "ratio_mean": float(ratios.mean()),
                           "ratio_worst": float(ratios[np.argmax(np.abs(ratios - 1))]),
                           "sign_ok": float((ratios > 0).mean())}
    bl = [r["blink"] for r in results]
    R["blink"] = {"ok": sum(b["ok"] for b in bl), "portraits": len(bl),
                  "ear_min_median": float(np.median([b["ear_min_over_open"] for b in bl])),
                  "ear_min_worst": float(np.max([b["ear_min_over_open"] for b in bl]))}
    return _write(R, results, Path(args.out))


def _write(R: dict, results: list[dict], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    keep = [{k: v for k, v in r.items() if not k.startswith("frames")} for r in results]
    (out / "controls.json").write_text(json.dumps({**R, "per_portrait": keep}, indent=1))
    (out / "controls.md").write_text(table(R))
    strip(results, R["pose"]["calibrated"], out / "controls_worst.png")
    print(table(R))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--misread-strip"]:   # controls_misread.png from the last run (in --out DIR, optional)
        torch.set_num_threads(1)
        misread_strip(Path(sys.argv[3]) if sys.argv[2:3] == ["--out"] else OUT)
        sys.exit(0)
    if sys.argv[1:2] == ["--table"]:  # re-write the table of the last run
        R = json.loads((OUT / "controls.json").read_text())
        if "reread" in R:
            R["reread"]["reliable"] = reliable_summary(R["per_portrait"])
        (OUT / "controls.md").write_text(table(R))
        print(table(R))
        sys.exit(0)
    sys.exit(main())
