"""`pdfgc evaluate`: one case from flags, or many from a manifest; JSON + Markdown + plots in an output folder."""
from __future__ import annotations

import dataclasses
import json
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..fileio import input_file, read_user_text, show_path
from ..vocabulary import DRIVING_MODES

if TYPE_CHECKING:  # pragma: no cover
    from .evaluate import EvalCase


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


MAX_MANIFEST_BYTES = 16 << 20   # ~16000 cases of about 1 kB
# numpy's warnings on signals of frames without a face (their metrics are NaN and counted in no_face_frames)
_EMPTY_WARNINGS = r"Mean of empty slice|invalid value encountered|Degrees of freedom <= 0|All-NaN slice"


def _check_generated(path: str, what: str = "generated video") -> None:
    """A generated video is a video of at least two frames, or a folder of frames: a still image is refused."""
    p = Path(path)
    if p.is_dir():
        return
    input_file(p, what, kind="a video")
    from ..media.video import probe_video
    still = p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
    if not still:
        info = probe_video(p, what)
        still = info.num_frames < 2 and info.duration_s < 2 / max(info.fps, 1.0)
    if still:
        raise InputError(f"{what} {show_path(p)}: a still image, not a video; give the generated mp4 (or a folder "
                         "of its frames)")


def _check_portrait_face(path: str) -> None:
    """A portrait without a face fails the identity metric: say so before any other work."""
    from ..media.images import load_image_rgb
    from .identity import IdentityEncoder
    if IdentityEncoder().describe(load_image_rgb(path, source=f"portrait {show_path(path)}")) is None:
        raise InputError(f"portrait {show_path(path)}: no face found for the identity descriptor")


def _cases(args) -> list[EvalCase]:
    from .evaluate import EvalCase  # torch and the face models: not at parser-building time (`pdfgc --help`)
    if args.manifest:
        mpath = Path(args.manifest)
        text = read_user_text(mpath, "manifest", MAX_MANIFEST_BYTES, kind="a JSON list of cases",
                              why="a case is a few paths: 1 kB each")
        try:
            items = json.loads(text)
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
    from .evaluate import EvalOptions, compare, evaluate_case
    from .report import markdown_table, plot_series, write_json
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {show_path(out)}: is a file; -o names the output FOLDER (metrics.json, metrics.md, "
                         "plots/)")
    cases = _cases(args)
    for case in cases:
        _check_generated(case.generated)
        if args.compare:
            _check_generated(args.compare, "--compare video")
        if case.portrait and not args.no_identity:
            _check_portrait_face(case.portrait)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "plots").mkdir(exist_ok=True)
    except OSError as e:
        raise InputError(f"output {show_path(out)}: cannot create the folder ({e.strerror})") from None
    opts = EvalOptions(identity_every=args.identity_every, cache_dir=str(out / "cache"),
                       identity=not args.no_identity, emotion=not args.no_emotion)
    results, metrics = [], []
    for case in cases:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _EMPTY_WARNINGS, RuntimeWarning)
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
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", _EMPTY_WARNINGS, RuntimeWarning)
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
