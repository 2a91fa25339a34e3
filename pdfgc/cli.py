"""Command line: `pdfgc animate`, `pdfgc evaluate`, `pdfgc convert-official`, `pdfgc verify-official`, `pdfgc info`,
`pdfgc ui`, `pdfgc train`, `pdfgc export`."""
from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from .errors import PDFGCError

EXAMPLES = """examples:
  pdfgc animate --portrait anne.png --audio speech.mp3 --pose pose_frames/ --emotion exp_frames/ \\
                --eyes eye_frames/ -o out.mp4
  pdfgc animate --portrait photo.jpg --audio speech.wav --pose head.mp4 --layout pasteback -o out.mp4
  pdfgc convert-official checkpoints/ -o pdfgc-official.safetensors
  pdfgc verify-official shared/reference/official_fixture
"""


def _add_animate(sub) -> None:
    p = sub.add_parser("animate", help="portrait + audio + driving sources -> talking-head mp4",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    p.add_argument("--portrait", required=True, help="photo (any size; the face is found and aligned) or a 224 crop")
    p.add_argument("--audio", help="speech: wav/mp3/m4a/... or a video's audio track; sets the output length")
    p.add_argument("-o", "--output", required=True, help="output .mp4 (written atomically)")
    # every option's flag, generated from its declaration (pdfgc/options.py and each family's options.py), and
    # the explicit controls' flags, generated from the controls (pdfgc/controls/)
    from .controls.cli_args import add_control_arguments
    from .option_fields import add_option_arguments, argument_groups
    from .options import AnimateOptions
    groups = argument_groups(p)
    add_option_arguments(p, AnimateOptions, groups)
    add_control_arguments(groups["controls"])
    _add_weights(p)


def _add_weights(p) -> None:
    w = p.add_argument_group("weights")
    g = w.add_mutually_exclusive_group()
    g.add_argument("--weights", help="a pdfgc .safetensors file (default: $PDFGC_WEIGHTS, the packaged model, "
                                     "else seeded random weights)")
    g.add_argument("--official-checkpoints", help="folder with the four official .pth files")


def _load_model(args):
    from .weights import load_model
    return load_model(weights=getattr(args, "weights", None), official=getattr(args, "official_checkpoints", None))


def _stored_emotion_labels(path) -> set[str] | None:
    """The emotion labels a safetensors weights file holds (its per-label tensors `emotion*.<label>`), read from
    the header only; None when it holds none or cannot be read (the full check after loading then decides)."""
    try:
        from .tensorfile import open_tensors
        with open_tensors(path, "weights file", "numpy") as f:
            labels = {k.split(".", 1)[1] for k in f.keys() if k.startswith("emotion") and "." in k}
    except Exception:  # noqa: BLE001 - a bad weights file is reported, in full, when it is loaded
        return None
    return labels or None


def _check_emotion_labels_early(args, opt) -> None:
    """An emotion label the weights do not hold is refused before the model is loaded (as the README promises of
    malformed values): the labels are read from the weights file's header."""
    from .controls.explicit import coerce_control
    ctl = coerce_control("emotion", opt.emotion_control)
    if ctl is None or not ctl.needs_mapping or getattr(args, "official_checkpoints", None):
        return
    from .weights import default_weights_path
    path = Path(args.weights) if getattr(args, "weights", None) else default_weights_path()
    if path is None or path.is_dir() or not path.is_file():
        return
    known = _stored_emotion_labels(path)
    unknown = [k for k in ctl.weights() if known is not None and k not in known]
    if unknown:
        raise PDFGCError(f"emotion label '{unknown[0]}' is not one of this model's labels "
                         f"({', '.join(sorted(known))})")


def cmd_animate(args) -> int:
    from .controls.cli_args import controls_from_args
    from .option_fields import options_from_args
    from .options import AnimateOptions, check_options

    # the options from their generated flags, the explicit controls from theirs (pdfgc/controls/cli_args.py)
    # (a `--gaze H,V` is a direction, not a source: the controls' values win)
    opt = AnimateOptions(**{**options_from_args(args, AnimateOptions), **controls_from_args(args)})
    # the one validation, before the model is loaded (the pipeline finds these options checked)
    check_options(opt, audio=args.audio, output=args.output, inputs=[args.portrait])
    _check_emotion_labels_early(args, opt)
    from .media import prewarm

    # the driving clips' face meshes start in a child process now, while torch and the model are imported
    if getattr(args, "prewarm", False):
        prewarm.start(opt, args.audio, getattr(args, "weights", None), getattr(args, "official_checkpoints", None))
    try:
        return _animate(args, opt)
    finally:
        prewarm.stop()


def _animate(args, opt) -> int:
    from .pipeline import TalkingHeadPipeline

    t0 = time.perf_counter()
    pipe = TalkingHeadPipeline(_load_model(args), device=args.device, threads=args.threads)
    # --quiet: no progress bar and no status lines; warnings and errors still print
    say = functools.partial(print, file=sys.stderr) if opt.progress else (lambda *a, **k: None)
    say(f"pdfgc: model {pipe.model.config.name} on {pipe.device} ({pipe.threads} threads, {opt.precision})")
    res = pipe(args.portrait, audio=args.audio, output=args.output, options=opt)
    dt = time.perf_counter() - t0
    say(f"pdfgc: wrote {res.output} ({res.num_frames} frames, {res.seconds:.2f} s of video at {res.fps} fps) "
          f"in {dt:.1f} s ({res.num_frames / max(dt, 1e-9):.2f} frames/s)")
    return 0


def cmd_convert(args) -> int:
    from .families.pdfgc.official.checkpoints import convert_official

    out = convert_official(args.checkpoints, args.output)
    print(f"pdfgc: wrote {out}")
    return 0


def cmd_verify(args) -> int:
    import torch

    from .families.pdfgc.official.verify import verify_fixture
    from .runtime import set_threads, tune_malloc

    tune_malloc()
    set_threads(args.threads)
    with torch.inference_mode():
        results = verify_fixture(args.fixture)
    return 0 if all(r.ok for r in results) else 1


def cmd_evaluate(args) -> int:
    import torch

    from .evaluation.command import run
    from .runtime import set_threads

    set_threads(None)
    with torch.inference_mode():
        return run(args)


def cmd_fit_controls(args) -> int:
    from .families.base import family_of

    model = _load_model(args)
    return family_of(model).fit_controls(model, args)   # the family fits its own controls (or says it needs none)


def cmd_info(args) -> int:
    from .families import family_for

    print(json.dumps(family_for(_load_model(args), torch_cpu()).info(), indent=2, default=str))
    return 0


def torch_cpu():
    import torch  # heavy: not at parser-building time
    return torch.device("cpu")


def cmd_ui(args) -> int:
    try:
        from .ui.app import UISettings, check_settings, run_ui
    except ImportError as e:
        raise PDFGCError(f"the web UI needs gradio: pip install \"pdfgc[ui]\" ({e})") from None
    from .pipeline import TalkingHeadPipeline

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"pdfgc ui: warning: serving on {args.host}: anyone who can reach this address can use the page",
              file=sys.stderr)
    controls = args.controls
    if controls is None and args.official_checkpoints:
        from .families.pdfgc.controls.mapping import mapping_path_for
        cand = mapping_path_for(args.official_checkpoints)
        controls = str(cand) if cand.is_file() else None
    settings = UISettings(host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
                          max_seconds=args.max_seconds, control_mapping=controls)
    check_settings(settings)  # a bad or busy port is reported before the model is loaded
    from .options import AnimateOptions, check_options
    # the same bounds as animate's, and a --controls file that is missing or damaged, before the model loads
    check_options(AnimateOptions(device=args.device, threads=args.threads, control_mapping=controls))
    pipe = TalkingHeadPipeline(_load_model(args), device=args.device, threads=args.threads)
    run_ui(pipe, settings)  # SIGTERM ends it like Ctrl+C (main() turns both into KeyboardInterrupt)
    # the server's temp folders are gone; leftover non-daemon server threads must not keep the process alive
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cmd_live(args) -> int:
    from .pipeline import TalkingHeadPipeline
    try:
        import uvicorn  # noqa: F401

        from .live.server import run_live
    except ImportError as e:
        raise PDFGCError(f"pdfgc live needs starlette, uvicorn and websockets: pip install \"pdfgc[live]\" ({e})") \
            from None
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"pdfgc live: warning: serving on {args.host}: anyone who can reach this address can use the page",
              file=sys.stderr)
    pipe = TalkingHeadPipeline(_load_model(args), device="cpu", threads=1)
    run_live(pipe, args.host, args.port)
    return 0


def _add_live(sub) -> None:
    u = sub.add_parser("live", help="web page: the portrait speaks with the microphone (or an audio file), live")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    u.add_argument("--port", type=int, default=7861)


def _add_ui(sub) -> None:
    u = sub.add_parser("ui", help="web page: upload a portrait and speech, set every factor, render the mp4")
    u.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    u.add_argument("--port", type=int, default=7860)
    u.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload accepted (default 50 MB)")
    u.add_argument("--max-seconds", type=float, default=60.0, help="longest audio accepted (default 60 s)")
    from .option_fields import add_option_arguments
    from .options import AnimateOptions
    add_option_arguments(u, AnimateOptions, names=("device", "threads"))  # as animate's
    u.add_argument("--controls", metavar="FILE", help="control mapping for the explicit controls (default: "
                                                      "<weights>.controls.json beside the weights)")
    _add_weights(u)


def cmd_train(args) -> int:
    from .training.command import run_train
    return run_train(args)


def cmd_export(args) -> int:
    from .training.command import run_export
    return run_export(args)


def cmd_prepare(args) -> int:
    from .data.command import run

    return run(args)


COMMANDS = ("animate", "convert-official", "verify-official", "evaluate", "fit-controls", "prepare", "train", "export",
            "ui", "live", "info")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole `pdfgc` parser; with `only` (a command's name), that command's subparser alone: `main` parses a
    command line with the parser of its command, so a command builds no other command's flags. No parser imports
    torch or a family's module (the families declare their options and training in light modules; each command
    imports torch once it runs). A command's own parser, its help and its errors are the same either way."""
    ap = argparse.ArgumentParser(prog="pdfgc", description="PD-FGC fine-grained controllable talking heads")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    def want(*names: str) -> bool:
        return only is None or only in names

    if want("animate"):
        _add_animate(sub)
    if want("convert-official"):
        c = sub.add_parser("convert-official", help="official .pth checkpoints -> one pdfgc .safetensors file")
        c.add_argument("checkpoints", help="folder with appearance_model.pth, motion_model.pth, audio_model.pth, "
                                           "generator_model.pth")
        c.add_argument("-o", "--output", required=True, help="output .safetensors file")
    if want("verify-official"):
        v = sub.add_parser("verify-official", help="check numerical equivalence with the official code on a fixture")
        v.add_argument("fixture", help="folder with fixture.json, expected.npz and the inputs it names")
        v.add_argument("--threads", type=int)
    if want("evaluate"):
        from .evaluation.command import add_parser as add_evaluate
        add_evaluate(sub)
    if want("fit-controls"):
        from .families.pdfgc.controls.command import add_parser as add_fit_controls
        add_fit_controls(sub)
    if want("prepare"):
        from .data.command import add_parser as add_prepare
        add_prepare(sub)
    if want("train", "export"):
        from .training.command import add_parser as add_train
        add_train(sub)
    if want("ui"):
        _add_ui(sub)
    if want("live"):
        _add_live(sub)
    if want("info"):
        i = sub.add_parser("info", help="print the model's configuration and sizes")
        _add_weights(i)
    return ap


def command_word(words: list[str]) -> str | None:
    """The command a command line names, when the parser of that command alone parses it the same as the whole
    parser: the first word after the top-level flags (-v/--verbose) and an exact command name; None otherwise
    (-h, a misspelt or missing command: the whole parser answers, as before)."""
    for w in words:
        if w in ("-v", "--verbose"):
            continue
        return w if w in COMMANDS else None
    return None


def one_line(text: str) -> str:
    """An error message as ONE line: a newline or other control character (a file name may hold one) written as
    its escape, so the `pdfgc: error:` line is never split or garbled."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def _short_warning(message, category, filename, lineno, line=None) -> str:
    # one line, without the source path and code line of the library that warned (those are for developers: -v)
    text = str(message).strip().splitlines()[0] if str(message).strip() else category.__name__
    return f"pdfgc: warning: {text}\n"


def _sigterm(signum, frame):
    # kill, timeout and docker stop send SIGTERM: unwind like Ctrl+C, so temporary files are removed
    raise KeyboardInterrupt


def _interrupted_message(args) -> str:
    if args.command == "train":
        from .families.pdfgc.training.trainer import STAGES, list_checkpoints

        out = Path(args.out)
        runs = [out] + [out / stage for stage in STAGES]  # --stage all keeps one run folder per stage
        kept = [c for run in runs for c in list_checkpoints(run)]
        if kept:
            latest = max(kept, key=lambda c: c.stat().st_mtime)
            return (f"pdfgc: interrupted; checkpoints are kept (latest {latest}): run the same command with "
                    "--resume to continue")
    return "pdfgc: interrupted (no output written)"


def _exit_now(rc: int) -> None:
    """End the process now that `pdfgc animate` has written its mp4: the exit handlers run (atexit, weakref
    finalizers, logging) and the output is flushed, but the interpreter's teardown of torch, mediapipe and ~1,700
    modules is skipped (0.5-0.6 s of wall after a job on a 2-core machine; benchmarks/results/speed_s30.md). Only a
    command-line run (``main()`` without argv) that succeeded: a caller in Python keeps its interpreter."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken pipe: nothing more can be written anyway
            pass
    os._exit(rc)


def main(argv=None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if not ({"-v", "--verbose"} & set(words)):  # before the parser: building it imports modules that may warn
        warnings.formatwarning = _short_warning
    args = build_parser(command_word(words)).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="pdfgc: %(message)s")
    import signal
    import threading
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm)
        if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_DFL:
            signal.signal(signal.SIGHUP, _sigterm)  # a closed terminal: unwind too (temp folders are removed)
    handlers = {"animate": cmd_animate, "convert-official": cmd_convert, "verify-official": cmd_verify,
                "info": cmd_info, "evaluate": cmd_evaluate, "prepare": cmd_prepare, "ui": cmd_ui, "live": cmd_live,
                "fit-controls": cmd_fit_controls, "train": cmd_train, "export": cmd_export}
    # a command-line `pdfgc animate` measures its driving clips in a child process while it starts (pdfgc.media.prewarm)
    args.prewarm = argv is None
    try:
        rc = handlers[args.command](args)
        if argv is None and args.command == "animate" and rc == 0:
            _exit_now(rc)
        return rc
    except PDFGCError as e:
        print(f"pdfgc: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(_interrupted_message(args), file=sys.stderr)
        return 130
    except OSError as e:  # a full disk anywhere (checkpoints, caches, outputs) is the user's to fix, not a bug
        from .fileio import disk_full_error
        full = disk_full_error(getattr(e, "filename", None), e)
        if full is None:
            raise
        print(f"pdfgc: error: {full}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
