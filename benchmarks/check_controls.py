"""Do the explicit controls do what they say? Renders short clips of one portrait with one control changed at a time
and measures them with the evaluation signals (mediapipe face mesh, fer). Prints a table and writes JSON.

    python benchmarks/check_controls.py WEIGHTS.safetensors [--controls MAP.json] [-o outputs/check_controls]

Cases (each `--seconds` long, lips still unless --audio is given, everything else from the portrait):
  baseline         no control
  yaw+20 / yaw-20  PoseControl(yaw=+-20), relative to the portrait: measured yaw change vs baseline should be +-20
                   (mean over frames with a face; vs the portrait's own measured pose if the baseline has none)
  pitch+15         PoseControl(pitch=15)
  blinks           BlinkControl(times=...): blink events (EAR below 0.6 x its median) vs the schedule, matched
                   within +-3 frames: precision, recall, timing error of the closure centre
  gaze-left/right  GazeControl(-0.6, 0) / (0.6, 0): the measured iris x (image right > 0) should move that way
  emotion          EmotionControl(label) for the first non-neutral label of the mapping (happy when present):
                   fer's probability of that label vs baseline
Disentanglement: for each case, how much every OTHER factor moved vs baseline (mean absolute change per frame of
yaw/pitch/roll in degrees, eye aspect ratio, gaze, mouth opening; fer probability L1).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PDFGC_SHARED", REPO.parent / "shared")) / "data"


def _nanmean(x) -> float:
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else float("nan")


def _mad(a, b) -> float:
    """Mean absolute difference over frames where both are defined."""
    return _nanmean(np.abs(np.asarray(a, float) - np.asarray(b, float)))


def measure(path: Path, clf) -> dict:
    """Per-frame signals of a rendered mp4."""
    from pdfgc.media.video import iter_video_frames

    return measure_frames(list(iter_video_frames(path, fps=25.0, source=str(path))), clf, str(path))


def measure_frames(frames: list, clf, source: str, static: bool = False) -> dict:
    from pdfgc.evaluation.emotion import box_from_landmarks
    from pdfgc.evaluation.landmarks import track_faces
    from pdfgc.evaluation.signals import eye_aspect_ratio, gaze, head_pose, mouth_opening

    track = track_faces(frames, source=source, static=static)
    probs = np.full((len(frames), 7), np.nan)
    if clf is not None:
        for i, (f, lm, ok) in enumerate(zip(frames, track.landmarks, track.found)):
            if ok:
                probs[i] = clf.classify(f, box_from_landmarks(lm[:, :2]))
    return {"pose": head_pose(track), "ear": eye_aspect_ratio(track).mean(1), "gaze": gaze(track),
            "mouth": mouth_opening(track), "emotion": probs, "no_face": int(track.missing), "frames": len(frames)}


def movement(a: dict, b: dict) -> dict:
    """How far each factor moved between two renders (mean absolute per-frame change)."""
    n = min(a["frames"], b["frames"])
    return {"yaw": _mad(a["pose"][:n, 0], b["pose"][:n, 0]), "pitch": _mad(a["pose"][:n, 1], b["pose"][:n, 1]),
            "roll": _mad(a["pose"][:n, 2], b["pose"][:n, 2]), "ear": _mad(a["ear"][:n], b["ear"][:n]),
            "gaze": _mad(a["gaze"][:n], b["gaze"][:n]), "mouth": _mad(a["mouth"][:n], b["mouth"][:n]),
            "emotion_l1": _nanmean(np.abs(a["emotion"][:n] - b["emotion"][:n]).sum(1))}


def blink_scores(sig: dict, ctl, num_frames: int) -> dict:
    from pdfgc.evaluation.signals import blink_events, match_events

    want = ctl.events(num_frames)
    got = blink_events(sig["ear"])
    p, r, f1 = match_events(got, want, tolerance=3)
    errs = []
    for w0, w1 in want:  # timing error of the nearest detected event's centre
        if got:
            c = (w0 + w1) / 2
            errs.append(min(abs((g0 + g1) / 2 - c) for g0, g1 in got))
    return {"requested": want, "detected": got, "precision": p, "recall": r, "f1": f1,
            "timing_error_frames": _nanmean(errs) if errs else float("nan")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights", help="pdfgc .safetensors weights")
    ap.add_argument("--controls", help="control mapping (default: beside the weights)")
    ap.add_argument("--portrait", default=str(DATA / "pdfgc" / "anne.png"))
    ap.add_argument("--audio", help="speech for the lips (default: none, lips still)")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--blink-times", default="0.8,2.0,3.2")
    ap.add_argument("--precision", default="exact", choices=["exact", "fast"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--no-emotion-metric", action="store_true", help="skip fer (needs the eval extra)")
    ap.add_argument("-o", "--output", default=str(REPO / "outputs" / "check_controls"))
    args = ap.parse_args(argv)

    from pdfgc.controls.explicit import BlinkControl, EmotionControl, GazeControl, PoseControl, parse_times
    from pdfgc.errors import PDFGCError
    from pdfgc.pipeline import AnimateOptions, TalkingHeadPipeline

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    pipe = TalkingHeadPipeline.from_pretrained(args.weights, device=args.device, threads=args.threads)
    mapping = pipe.control_mapping(args.controls)
    base = AnimateOptions(duration=None if args.audio else args.seconds, max_frames=int(round(args.seconds * 25)),
                          precision=args.precision, progress=False, control_mapping=args.controls)
    label = None
    if mapping is not None and mapping.emotion_labels:
        others = [x for x in mapping.emotion_labels if x != "neutral"]
        label = "happy" if "happy" in others else (others[0] if others else None)
    blink = BlinkControl(times=parse_times(args.blink_times))
    cases = {"baseline": {}, "yaw+20": {"pose_control": PoseControl(yaw=20)},
             "yaw-20": {"pose_control": PoseControl(yaw=-20)}, "pitch+15": {"pose_control": PoseControl(pitch=15)},
             "blinks": {"blink_control": blink},
             "gaze-left": {"gaze_control": GazeControl(horizontal=-0.6, vertical=0.0)},
             "gaze-right": {"gaze_control": GazeControl(horizontal=0.6, vertical=0.0)}}
    if label:
        cases[f"emotion-{label}"] = {"emotion_control": EmotionControl(label=label, intensity=1.0)}
    clf = None
    if not args.no_emotion_metric:
        try:
            from pdfgc.evaluation.emotion import EmotionClassifier
            clf = EmotionClassifier()
        except PDFGCError as e:
            print(f"check_controls: no emotion metric ({e})", file=sys.stderr)

    report: dict = {"weights": str(args.weights), "model": pipe.model.config.name, "seconds": args.seconds,
                    "mapping": mapping.summary() if mapping is not None else None, "cases": {}}
    # pose controls are relative to the portrait's own pose: its measured pose is the fallback reference when the
    # uncontrolled render shows no face the mesh can find
    from pdfgc.media.face import load_image_rgb

    portrait_pose = measure_frames([load_image_rgb(args.portrait)], None, args.portrait, static=True)["pose"][0]
    report["portrait_pose_deg"] = [float(v) for v in portrait_pose]
    signals = {}
    for name, kw in cases.items():
        t0 = time.perf_counter()
        path = out / f"{name}.mp4"
        try:
            res = pipe(args.portrait, audio=args.audio, output=path, options=dataclasses.replace(base, **kw))
        except PDFGCError as e:
            report["cases"][name] = {"skipped": str(e)}
            print(f"check_controls: {name}: skipped ({e})", file=sys.stderr)
            continue
        signals[name] = sig = measure(path, clf)
        report["cases"][name] = {"frames": res.num_frames, "no_face_frames": sig["no_face"],
                                 "render_and_measure_s": round(time.perf_counter() - t0, 1),
                                 "mean_pose_deg": [_nanmean(sig["pose"][:, i]) for i in range(3)],
                                 "mean_gaze": [_nanmean(sig["gaze"][:, i]) for i in range(2)]}
        print(f"check_controls: {name}: {res.num_frames} frames, {sig['no_face']} without a face", file=sys.stderr)

    b = signals.get("baseline")
    rows = []
    if b is not None:
        for name, sig in signals.items():
            if name == "baseline":
                continue
            c = report["cases"][name]
            c["movement_vs_baseline"] = mv = movement(sig, b)
            if name.startswith(("yaw", "pitch")):
                ch = 0 if name.startswith("yaw") else 1
                want = float(name[len("yaw" if ch == 0 else "pitch"):])
                # mean over the frames with a face on each side (not only frames found in both)
                ref, c["reference"] = _nanmean(b["pose"][:, ch]), "baseline render"
                if not math.isfinite(ref):
                    ref, c["reference"] = float(portrait_pose[ch]), "portrait (no face found in the baseline render)"
                got = _nanmean(sig["pose"][:, ch]) - ref
                c["requested_deg"], c["measured_change_deg"] = want, got
                c["error_deg"] = abs(got - want)
                own = f"{['yaw', 'pitch'][ch]} {got:+.1f} deg (asked {want:+.0f})"
            elif name == "blinks":
                c["blinks"] = bs = blink_scores(sig, blink, c["frames"])
                c["baseline_blinks"] = blink_scores(b, BlinkControl(times=[]), c["frames"])["detected"]
                own = (f"blinks P {bs['precision']:.2f} R {bs['recall']:.2f}, timing "
                       f"{bs['timing_error_frames']:.1f} frames")
            elif name.startswith("gaze"):
                dx = _nanmean(sig["gaze"][:, 0] - b["gaze"][:, 0])
                c["gaze_x_change"] = dx
                c["right_direction"] = None if not math.isfinite(dx) else bool(dx < 0) if name == "gaze-left" \
                    else bool(dx > 0)
                way = {None: "no face", True: "right way", False: "WRONG way"}[c["right_direction"]]
                own = f"iris x {dx:+.3f} ({way})"
            else:
                from pdfgc.evaluation.emotion import EMOTIONS
                j = EMOTIONS.index(label) if label in EMOTIONS else None
                if j is not None:
                    pe, pb = _nanmean(sig["emotion"][:, j]), _nanmean(b["emotion"][:, j])
                    c["label_prob"], c["baseline_label_prob"] = pe, pb
                    own = f"fer p({label}) {pb:.2f} -> {pe:.2f}"
                else:
                    own = f"{label}: not a fer class"
            rows.append((name, own, mv))
        if "gaze-left" in signals and "gaze-right" in signals:
            dx = _nanmean(signals["gaze-right"]["gaze"][:, 0] - signals["gaze-left"]["gaze"][:, 0])
            report["gaze_right_minus_left_x"] = dx
    (out / "check_controls.json").write_text(json.dumps(report, indent=1, default=float))
    # the table: the asked-for factor, then how far every other factor moved
    head = "| case | own factor | d yaw | d pitch | d roll | d EAR | d gaze | d mouth | d emotion (L1) |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for name, own, mv in rows:
        f = lambda v, d=1: "n/a" if not math.isfinite(v) else f"{v:.{d}f}"  # noqa: E731
        print(f"| {name} | {own} | {f(mv['yaw'])} | {f(mv['pitch'])} | {f(mv['roll'])} | {f(mv['ear'], 3)} | "
              f"{f(mv['gaze'], 3)} | {f(mv['mouth'], 3)} | {f(mv['emotion_l1'], 2)} |")
    for name, c in report["cases"].items():
        if "skipped" in c:
            print(f"| {name} | skipped: {c['skipped'][:90]} |")
    print(f"check_controls: wrote {out / 'check_controls.json'} and the clips", file=sys.stderr)
    return 0


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("PDFGC_THREADS", "1")))
    sys.exit(main())
