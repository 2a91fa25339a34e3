"""`pdfgc train` and `pdfgc export` (argument parsing; the work is in trainer.py)."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import InputError
from ..families.pdfgc.configs import CONFIG_NAMES
from ..families.pdfgc.training.stages import STAGES
from ..vocabulary import MESHWARP, TRAIN_PRECISIONS

REFINER_STAGE = "refiner"   # the mesh-warp family's learned refiner (families/meshwarp/refine_train.py)

TRAIN_EXAMPLES = """stages, coarse to fine (each starts from the previous stage's model.safetensors):
  pdfgc train --data prepared/ --stage appearance --config lite --out runs/s1 --steps 20000
  pdfgc train --data prepared/ --stage lips     --init runs/s1/model.safetensors --out runs/s2 --steps 5000
  pdfgc train --data prepared/ --stage pose_eye --init runs/s2/model.safetensors --out runs/s3 --steps 5000
  pdfgc train --data prepared/ --stage emotion  --init runs/s3/model.safetensors --out runs/s4 --steps 20000
  pdfgc train --data prepared/ --stage all --config lite --out runs/all --steps 20000,5000,5000,20000
the default (mesh-warp) family: the geometry fit and lips head (closed-form fits, no --steps; the speech
features of the raw clips behind the prepared ones go to --speech-cache, default OUT/speech), then its learned
refiner (from scratch):
  pdfgc train --data prepared/ --config meshwarp --out runs/meshwarp [--speech-cache DIR]
  pdfgc train --data prepared/ --config meshwarp --stage refiner --out runs/refiner --steps 8000
continue a run (killed or finished, with more --steps):  add --resume to the same command
several GPUs:  torchrun --nproc_per_node 4 -m pdfgc.cli train ... --precision bf16
"""


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="progressive training on a prepared corpus (one stage, or all four)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=TRAIN_EXAMPLES)
    t.add_argument("--data", required=True, help="prepared corpus folder (`pdfgc prepare`); its train split is used")
    t.add_argument("--stage", choices=[*STAGES, "all", REFINER_STAGE],
                   help="PD-FGC stage (required for lite/official/tiny); meshwarp: none (geometry fit + lips head) or "
                        "refiner (its learned refiner, by self-reenactment)")
    t.add_argument("--config", default="lite", choices=[*CONFIG_NAMES, MESHWARP],
                   help="architecture when starting from scratch (default lite; with --init the file decides); "
                        "meshwarp: the default model's family (geometry fit + the lips-from-speech head)")
    t.add_argument("--init", help="start from this model (.safetensors), normally the previous stage's")
    t.add_argument("--out", required=True, help="run folder (checkpoints, logs, samples, final model.safetensors)")
    t.add_argument("--steps",
                   help="optimiser steps (for --stage all: one number for every stage or four, comma-separated; "
                        "not read by --config meshwarp without --stage: closed-form fits)")
    t.add_argument("--speech-cache", metavar="DIR",
                   help="meshwarp: folder of the raw clips' Whisper features (default OUT/speech; missing ones are "
                        "computed from the raw corpus the prepared one was made from)")
    t.add_argument("--batch-size", type=int, default=8, help="per process and micro-step (default 8)")
    t.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimiser step (default 1)")
    t.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4, the authors')")
    t.add_argument("--precision", default="fp32", choices=TRAIN_PRECISIONS,
                   help="fp32, or mixed precision (bf16; fp16 on GPU only)")
    t.add_argument("--vgg19", help="torchvision-format vgg19 state dict: adds the perceptual loss (x5)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    t.add_argument("--minutes", type=float, help="time budget: checkpoint and stop after this long (--resume goes on)")
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--sample-every", type=int, default=500)
    t.add_argument("--checkpoint-every", type=int, default=500)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--name", help="model name stored in the weights file")
    t.add_argument("--threads", type=int, help="CPU threads per process (default: cores / processes)")
    t.add_argument("--overfit", type=int, default=0,
                   help="sanity check: draw batches only from the first N positions (default 0: off)")
    t.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="SyncBatchNorm across processes (default: on under torchrun with several GPUs; CUDA only)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    e = sub.add_parser("export", help="a training run's model -> one .safetensors file")
    e.add_argument("run", help="run folder of `pdfgc train` (a stage's or an `all` run's)")
    e.add_argument("-o", "--output", required=True, help="output .safetensors")
    e.add_argument("--name", help="model name to store (default: the run's)")


def _steps(text: str, stage: str) -> list[int]:
    try:
        values = [int(x) for x in str(text).split(",")]
    except ValueError:
        raise InputError(f"--steps: expected a number or comma-separated numbers, got '{text}'") from None
    if stage == "all":
        if len(values) == 1:
            values = values * len(STAGES)
        if len(values) != len(STAGES):
            raise InputError(f"--steps for --stage all: one number or {len(STAGES)}, got {len(values)}")
    elif len(values) != 1:
        raise InputError("--steps: one number for a single stage")
    return values


def run_train(args) -> int:
    if args.steps is None and not (args.config == MESHWARP and args.stage is None):
        raise InputError("--steps is required (optimiser steps of the stage)")
    if args.stage == REFINER_STAGE:
        if args.config != MESHWARP:
            raise InputError(f"--stage {REFINER_STAGE} trains the mesh-warp family's refiner: add --config {MESHWARP}")
        # continued from the run folder's checkpoint with --resume (pdfgc.training.harness's policy)
        from ..families.meshwarp.refine_train import main as refiner_train
        return refiner_train(["--data", str(args.data), "--out", str(args.out),
                              "--steps", str(_steps(args.steps, "all")[0]), "--seed", str(args.seed),
                              "--threads", str(args.threads or 1)] + (["--resume"] if args.resume else [])
                             + (["--minutes", str(args.minutes)] if args.minutes is not None else []))
    if args.config == MESHWARP:
        # the default family: its own fitting and training (pdfgc/families/meshwarp/train.py)
        from ..families.meshwarp.train import main as meshwarp_train
        # the geometry fit and the lips head are closed-form fits: --steps/--seed do not apply
        argv = ["--data", str(args.data), "--out", str(args.out), "--threads", str(args.threads or 1)]
        argv += ["--speech-cache", str(args.speech_cache)] if args.speech_cache else []
        return meshwarp_train(argv + (["--resume"] if args.resume else []))
    if args.stage is None:
        raise InputError("--stage is required for the PD-FGC networks (appearance, lips, pose_eye, emotion, all)")
    import torch

    from ..families.pdfgc.training.trainer import TrainConfig, Trainer, train_all

    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if not torch.cuda.is_available():
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(args.threads or max(1, cores // local))
    steps = _steps(args.steps, args.stage)
    cfg = TrainConfig(stage=args.stage if args.stage != "all" else STAGES[0], data=args.data, out=args.out,
                      model=args.config, init=args.init, steps=steps[0], batch_size=args.batch_size,
                      grad_accum=args.grad_accum, lr=args.lr, precision=args.precision, vgg19=args.vgg19,
                      seed=args.seed, log_every=args.log_every, sample_every=args.sample_every,
                      checkpoint_every=args.checkpoint_every, name=args.name, overfit=args.overfit,
                      sync_bn=args.sync_bn, minutes=args.minutes)
    progress = not args.quiet and sys.stderr.isatty()
    if args.stage == "all":
        out = train_all(cfg, steps, resume=args.resume, progress=progress)
    else:
        out = Trainer(cfg, resume=args.resume, progress=progress).run()
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"pdfgc: model written to {out}")
    return 0


def run_export(args) -> int:
    from ..families.pdfgc.training.trainer import find_run_model
    from ..weights import load_model  # heavy (torch): not at parser-building time

    src = find_run_model(args.run)
    model = load_model(weights=src)
    if args.name:
        model.config.name = args.name
    model.config.trained = True
    out = model.save_pretrained(args.output)
    print(f"pdfgc: wrote {out} (from {src})")
    return 0
