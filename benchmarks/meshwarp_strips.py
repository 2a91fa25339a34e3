"""PNG strips of the default (mesh-warp) model for the README: every control on shipped portraits.

    python benchmarks/meshwarp_strips.py [--weights FILE] [--out benchmarks/results/meshwarp]

Rows (each a labelled strip of frames, all through the public pipeline):
  pose      explicit yaw -20 / -10 / 0 / +10 / +20, pitch +-15, roll 10 (anne.png)
  eyes      a blink (open, closing, closed), gaze left / right / up / down (anne.png)
  lips      lips from speech: frames of audio_longer.mp3 (anne.png) with the mouth closed and open
  emotion   labels neutral / happy / surprise / sad / angry at full level (anne.png)
  photo     the uncropped photo (edtalk/uncrop_face.jpg) with head motion from a video, pasted back
  yaw30     larger yaw (+-30) on two portraits: where the warp runs out
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PD = DATA / "pdfgc"


def label(img: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(img.copy())
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 0), 1, cv2.LINE_AA)
    return out


def frames_of(pipe, portrait, audio=None, layout="result", **kw) -> np.ndarray:
    from pdfgc.options import AnimateOptions
    from pdfgc.pipeline import FrameComposer

    opt = AnimateOptions(progress=False, layout=layout, **kw)
    p = pipe.load_portrait(portrait) if not hasattr(portrait, "crop") else portrait
    plan = pipe.plan(p, audio, opt)
    comp = FrameComposer(pipe.family, p, plan, layout)
    return np.concatenate([comp(sl, im) for sl, im in pipe.render(plan, opt)])


def strip(tiles: list[tuple[str, np.ndarray]], height: int = 224) -> np.ndarray:
    row = [label(cv2.resize(t, (round(t.shape[1] * height / t.shape[0]), height), interpolation=cv2.INTER_AREA), s)
           for s, t in tiles]
    return np.concatenate(row, axis=1)


def save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/meshwarp"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from pdfgc.controls.explicit import BlinkControl, EmotionControl, GazeControl, PoseControl
    from pdfgc.pipeline import TalkingHeadPipeline
    from pdfgc.weights import load_model

    pipe = TalkingHeadPipeline(load_model(weights=args.weights), device="cpu", threads=args.threads)
    out = Path(args.out)
    anne = pipe.load_portrait(PD / "anne.png")
    one = dict(lips="still", duration=0.2)

    tiles = [("portrait", anne.crop)]
    for ch, v in (("yaw", -20), ("yaw", -10), ("yaw", 10), ("yaw", 20), ("pitch", 15), ("pitch", -15), ("roll", 10)):
        tiles.append((f"{ch} {v:+d}", frames_of(pipe, anne, pose_control=PoseControl(**{ch: v}), **one)[-1]))
    save(out / "strip_pose.png", strip(tiles))

    blink = frames_of(pipe, anne, lips="still", duration=0.6, blink_control=BlinkControl(times=[0.4], duration=0.3))
    tiles = [("open", blink[0]), ("closing", blink[8]), ("closed", blink[10])]
    for name, (h, v) in (("gaze left", (-0.8, 0)), ("gaze right", (0.8, 0)), ("gaze up", (0, 0.8)),
                         ("gaze down", (0, -0.8))):
        tiles.append((name, frames_of(pipe, anne, gaze_control=GazeControl(horizontal=h, vertical=v), **one)[-1]))
    save(out / "strip_eyes.png", strip(tiles))

    speech = frames_of(pipe, anne, str(PD / "audio_longer.mp3"), max_frames=100)
    plan_open = np.argsort([float(np.abs(f.astype(np.float32) - anne.crop.astype(np.float32)).mean())
                            for f in speech])[-4:]
    tiles = [("speech t=%.2fs" % (i / 25), speech[i]) for i in sorted({0, 20, 40, *map(int, plan_open)})]
    save(out / "strip_lips.png", strip(tiles[:8]))

    tiles = [("portrait", anne.crop)]
    for lab in ("happy", "surprise", "sad", "angry"):
        try:
            tiles.append((lab, frames_of(pipe, anne, emotion_control=EmotionControl(label=lab), lips="still",
                                         duration=1.0)[-1]))
        except Exception as e:  # a label the parameters do not have
            print(f"{lab}: {e}")
    save(out / "strip_emotion.png", strip(tiles))

    photo = DATA / "edtalk/uncrop_face.jpg"
    fr = frames_of(pipe, photo, layout="pasteback", lips="still", duration=2.0,
                   pose=str(DATA / "edtalk/pose_source1.mp4"))
    save(out / "strip_photo.png", strip([(f"t={i / 25:.1f}s", fr[i]) for i in (0, 12, 25, 37, 49)], height=320))

    tiles = []
    for portrait in (PD / "anne.png", DATA / "real3dportrait/Macron.png"):
        p = pipe.load_portrait(portrait)
        for v in (-30, 30):
            tiles.append((f"yaw {v:+d}", frames_of(pipe, p, pose_control=PoseControl(yaw=v), **one)[-1]))
    save(out / "strip_yaw30.png", strip(tiles))


if __name__ == "__main__":
    main()
