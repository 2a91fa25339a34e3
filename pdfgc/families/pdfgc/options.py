"""The PD-FGC family's own animation options (knobs no other family reads), declared once: `pdfgc animate` flags
are generated from them (`pdfgc.option_fields`); `AnimateOptions` carries them."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from ...option_fields import option
from ...vocabulary import TRAIN_PRECISIONS
from ..registry import FamilyTraining


@dataclass
class PDFGCOptions:
    # the fitted physical-control -> code mapping (families/pdfgc/controls/); the mesh-warp family needs none
    control_mapping: str | None = option(
        None, group="controls", flag="--controls", metavar="FILE", family="pdfgc",
        help="control mapping file (default: <weights>.controls.json)")

    @staticmethod
    def check(opt) -> None:
        """This family's part of `pdfgc.options.check_options`: a mapping named explicitly must be there and
        whole, used or not."""
        if opt.control_mapping is not None:
            from .controls.mapping import ControlMappings
            ControlMappings.load(opt.control_mapping)


CONFIG_NAMES = ("official", "lite", "tiny")   # architectures (configs.py builds them)
STAGES = ("appearance", "lips", "pose_eye", "emotion")   # the progressive training, coarse to fine (training/stages.py)


def _add_train_arguments(group) -> None:
    group.add_argument("--init", help="start from this model (.safetensors), normally the previous stage's")
    group.add_argument("--batch-size", type=int, default=8, help="per process and micro-step (default 8)")
    group.add_argument("--grad-accum", type=int, default=1, help="micro-steps per optimiser step (default 1)")
    group.add_argument("--lr", type=float, default=1e-4, help="learning rate (default 1e-4, the authors')")
    group.add_argument("--precision", default="fp32", choices=TRAIN_PRECISIONS,
                       help="fp32, or mixed precision (bf16; fp16 on GPU only)")
    group.add_argument("--vgg19", help="torchvision-format vgg19 state dict: adds the perceptual loss (x5)")
    group.add_argument("--log-every", type=int, default=10)
    group.add_argument("--sample-every", type=int, default=500)
    group.add_argument("--checkpoint-every", type=int, default=500)
    group.add_argument("--name", help="model name stored in the weights file")
    group.add_argument("--overfit", type=int, default=0,
                       help="sanity check: draw batches only from the first N positions (default 0: off)")
    group.add_argument("--sync-bn", action=argparse.BooleanOptionalAction, default=None,
                       help="SyncBatchNorm across processes (default: on under torchrun with several GPUs; "
                            "CUDA only)")


TRAINING = FamilyTraining(
    configs=CONFIG_NAMES, stages=(*STAGES, "all"), add_arguments=_add_train_arguments,
    help=(f"{', '.join(CONFIG_NAMES)}: the PD-FGC networks' architecture when starting from scratch (with --init "
          f"the file decides); --stage one of {', '.join(STAGES)} or all (required)"))
