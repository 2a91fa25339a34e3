"""Self-reenactment on the held-out clips of a prepared corpus: how well a model rebuilds real video it never saw.

    python benchmarks/eval_heldout.py WEIGHTS.safetensors --data PREPARED_DIR [-o outputs/heldout]

For each held-out clip (`pdfgc/data/heldout.txt`): the portrait is the clip's first aligned crop; lips come from the
clip's own audio, head pose, eyes and emotion from the clip's own aligned frames (no skipped frames: frame t drives
output t); the result is scored by `pdfgc evaluate` against the real frames after the official crop-zoom (what the
generator is trained to rebuild): PSNR, SSIM, face-region L1, M-LMD, and how well each factor follows its source.
Prints a Markdown table and writes metrics.json. Not a test: figures for the README.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _audio_for(raw_root: Path, source: str) -> Path | None:
    src = raw_root / source
    wav = src.with_suffix(".wav")           # prepare's rule: a silent video takes clip.wav beside it
    if wav.is_file():
        return wav
    return src if src.is_file() else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights")
    ap.add_argument("--data", required=True, help="prepared corpus (pdfgc prepare)")
    ap.add_argument("-o", "--output", default="outputs/heldout")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", default="exact")
    args = ap.parse_args()

    from pdfgc.data.corpus import PreparedCorpus
    from pdfgc.evaluation.evaluate import EvalCase, EvalOptions, evaluate_case
    from pdfgc.evaluation.report import markdown_table, plot_series, write_json
    from pdfgc.media import preprocess as pp
    from pdfgc.pipeline import AnimateOptions, TalkingHeadPipeline

    torch.set_num_threads(args.threads)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    corpus = PreparedCorpus(args.data, split="heldout")
    raw_root = Path(json.loads((Path(args.data) / "manifest.json").read_text())["settings"]["raw_root"])
    pipe = TalkingHeadPipeline.from_pretrained(args.weights, threads=args.threads)
    results = []
    for info in corpus.clips:
        clip = corpus.load_clip(info.key)
        audio = _audio_for(raw_root, info.source) if info.has_audio else None
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            drive, truth = tmp / "drive", tmp / "truth"
            drive.mkdir()
            truth.mkdir()
            for i, f in enumerate(clip.frames):
                cv2.imwrite(str(drive / f"{i:05d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
                cv2.imwrite(str(truth / f"{i:05d}.png"), cv2.cvtColor(pp.official_crop_zoom(f), cv2.COLOR_RGB2BGR))
            portrait = drive / "00000.png"
            opt = AnimateOptions(lips="audio" if audio else "still", pose=str(drive), eyes=str(drive),
                                 emotion=str(drive), driving_skip=0, driving_mode="hold", align="never",
                                 precision=args.precision, max_frames=len(clip.frames),
                                 duration=None if audio else len(clip.frames) / 25.0, progress=False)
            gen = out / f"{info.key}.mp4"
            pipe(str(portrait), audio=str(audio) if audio else None, output=str(gen), options=opt)
            case = EvalCase(generated=str(gen), portrait=str(portrait), audio=str(audio) if audio else None,
                            pose=str(drive), eyes=str(drive), emotion=str(drive), ground_truth=str(truth),
                            layout="result", driving_mode="hold", driving_skip=0, name=info.key)
            res = evaluate_case(case, EvalOptions())
        res.metrics["case"] = info.key
        results.append(res.metrics)
        plot_series(res.series, out / f"{info.key}_curves.png", title=info.key)
        print(f"{info.key}: done", flush=True)
    write_json({"weights": str(args.weights), "cases": results}, out / "metrics.json")
    table = markdown_table(results)
    (out / "metrics.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
