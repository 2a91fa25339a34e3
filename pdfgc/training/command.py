"""`pdfgc train` and `pdfgc export`: the shared flags and the dispatch; each model family (pdfgc/families/) declares
its `--config` names, its `--stage` names, its own flags and its training run (`ModelFamily.train`)."""
from __future__ import annotations

import argparse

from ..errors import InputError
from ..families.registry import (
    family_for_config,
    family_for_stage,
    family_trainings,
    train_configs,
    train_stages,
)

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
    trainings = family_trainings()   # declared in the families' light options modules: no torch here
    t.add_argument("--data", required=True, help="prepared corpus folder (`pdfgc prepare`); its train split is used")
    t.add_argument("--config", default="lite", choices=train_configs(),
                   help="what to train, which names its model family (default lite): "
                        + "; ".join(t.help for _, t in trainings if t.configs))
    t.add_argument("--stage", choices=train_stages(), help="the family's training stage (see --config)")
    t.add_argument("--out", required=True, help="run folder (checkpoints, logs, samples, final model.safetensors)")
    t.add_argument("--steps",
                   help="optimiser steps (for --stage all: one number for every stage or four, comma-separated; "
                        "refused by --config meshwarp without --stage: closed-form fits)")
    t.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    t.add_argument("--minutes", type=float,
                   help="time budget: checkpoint and stop after this long (--resume goes on; not for the "
                        "closed-form --config meshwarp fit)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="CPU threads per process (default: cores / processes)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, tr in trainings:
        if tr.configs and tr.add_arguments is not None:
            tr.add_arguments(t.add_argument_group(f"{name} family (--config {'/'.join(tr.configs)})"))
    e = sub.add_parser("export", help="a training run's model -> one .safetensors file")
    e.add_argument("run", help="run folder of `pdfgc train` (a stage's or an `all` run's)")
    e.add_argument("-o", "--output", required=True, help="output .safetensors")
    e.add_argument("--name", help="model name to store (default: the run's)")


def run_train(args) -> int:
    """`pdfgc train`: the family that trains `--config` runs it (its `--stage`, if given, must be the family's)."""
    fam = family_for_config(args.config)
    if args.stage is not None and args.stage not in fam.training.stages:
        owner = family_for_stage(args.stage)
        raise InputError(f"--stage {args.stage} trains the {owner.name} family: add --config "
                         f"{'/'.join(owner.training.configs)}" + (f" (--config {args.config} takes --stage "
                                                                  f"{', '.join(fam.training.stages)})"
                                                                  if fam.training.stages else ""))
    return fam.train(args)


def run_export(args) -> int:
    from ..families.base import family_of
    from ..families.pdfgc.training.trainer import find_run_model
    from ..weights import load_model  # heavy (torch): not at parser-building time

    src = find_run_model(args.run)
    model = load_model(weights=src)   # the file's format names its family
    if args.name:
        model.config.name = args.name
    model.config.trained = True
    out = family_of(model).save(model, args.output)
    print(f"pdfgc: wrote {out} (from {src})")
    return 0
