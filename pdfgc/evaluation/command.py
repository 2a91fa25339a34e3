"""`pdfgc evaluate`: one case from flags, or many from a manifest; JSON + Markdown + plots in an output folder."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from ..errors import InputError
from ..vocabulary import DRIVING_MODES
from .evaluate import EvalCase, EvalOptions, compare, evaluate_case
from .report import markdown_table, plot_series, write_json


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="measure how well a talking-head video follows its sources",
                       description="Identity, head pose, blink, gaze, lips-vs-audio, emotion, temporal stability "
                                   "(and PSNR/SSIM/M-LMD with --ground-truth) of a generated video. The official "
                                   "five-panel layout is read as it is: its pose/expression/eye panels are the "
                                   "sources.")
    p.add_argument("video", nargs="?", help="generated video (mp4) or folder of frames")
    p.add_argument("--manifest", help="JSON list of cases ({generated, portrait, audio, pose, eyes, emotion, "
                                      "ground_truth, layout, name}); paths relative to the manifest")
    p.add_argument("--portrait")
    p.add_argument("--audio", help="speech the video was made from (default: the video's own audio track)")
    p.add_argument("--pose")
    p.add_argument("--eyes")
    p.add_argument("--emotion")
    p.add_argument("--ground-truth", help="real video the generation should reproduce (self-reenactment)")
    p.add_argument("--layout", default="auto", choices=["auto", "result", "panels"])
    p.add_argument("--driving-mode", default="loop", choices=DRIVING_MODES)
    p.add_argument("--driving-skip", type=int, default=2)
    p.add_argument("--compare", help="a second generation differing in one source: report how far each factor moved")
    p.add_argument("--identity-every", type=int, default=5, help="identity descriptor on every k-th frame")
    p.add_argument("--no-identity", action="store_true")
    p.add_argument("--no-emotion", action="store_true")
    p.add_argument("-o", "--output", required=True, help="output folder (metrics.json, metrics.md, plots/)")


def _cases(args) -> list[EvalCase]:
    if args.manifest:
        mpath = Path(args.manifest)
        try:
            items = json.loads(mpath.read_text())
        except FileNotFoundError:
            raise InputError(f"manifest {mpath}: not found") from None
        except json.JSONDecodeError as e:
            raise InputError(f"manifest {mpath}: not valid JSON ({e})") from None
        if not isinstance(items, list) or not items:
            raise InputError(f"manifest {mpath}: expected a non-empty JSON list of cases")
        fields = {f.name for f in dataclasses.fields(EvalCase)}
        cases = []
        for i, it in enumerate(items):
            if not isinstance(it, dict) or "generated" not in it:
                raise InputError(f"manifest {mpath}: case {i} has no 'generated' video")
            bad = set(it) - fields
            if bad:
                raise InputError(f"manifest {mpath}: case {i} has unknown field(s) {sorted(bad)}")
            for k in ("generated", "portrait", "audio", "pose", "eyes", "emotion", "ground_truth"):
                if it.get(k):
                    it[k] = str((mpath.parent / it[k]).resolve())
            cases.append(EvalCase(**it))
        return cases
    if not args.video:
        raise InputError("give a generated video or --manifest")
    return [EvalCase(args.video, args.portrait, args.audio, args.pose, args.eyes, args.emotion, args.ground_truth,
                     args.layout, args.driving_mode, args.driving_skip)]


def run(args) -> int:
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    opts = EvalOptions(identity_every=args.identity_every, cache_dir=str(out / "cache"),
                       identity=not args.no_identity, emotion=not args.no_emotion)
    results, metrics = [], []
    for case in _cases(args):
        t0 = time.perf_counter()
        r = evaluate_case(case, opts)
        dt = time.perf_counter() - t0
        r.metrics["seconds"] = dt
        r.metrics["frames_per_second"] = r.metrics["frames"] / dt
        plot_series(r.series, out / "plots" / f"{r.metrics['case']}.png", title=r.metrics["case"])
        results.append(r)
        metrics.append(r.metrics)
        print(f"pdfgc: evaluated {r.metrics['case']}: {r.metrics['frames']} frames in {dt:.1f} s "
              f"({r.metrics['frames_per_second']:.1f} frames/s)", file=sys.stderr)
    doc = {"cases": metrics}
    if args.compare:
        if len(results) != 1:
            raise InputError("--compare takes one case")
        other = dataclasses.replace(_cases(args)[0], generated=args.compare, name=Path(args.compare).stem)
        doc["disentanglement"] = compare(results[0], evaluate_case(other, opts))
    write_json(doc, out / "metrics.json")
    md = markdown_table(metrics)
    if "disentanglement" in doc:
        d = doc["disentanglement"]["movement_relative_to_own_variation"]
        md += "\nMovement of each factor between the two generations (relative to its own variation over time):\n\n"
        md += "| " + " | ".join(d) + " |\n" + "|---" * len(d) + "|\n"
        md += "| " + " | ".join(f"{v:.3f}" for v in d.values()) + " |\n"
    (out / "metrics.md").write_text(md)
    print(md)
    return 0
