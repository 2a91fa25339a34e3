"""The mesh-warp family's own animation options (knobs no other family reads), declared once: `pdfgc animate`
flags and the web page's fields are generated from them (`pdfgc.option_fields`); `AnimateOptions` carries them."""
from __future__ import annotations

from dataclasses import dataclass

from ...errors import InputError
from ...option_fields import Web, option
from ...vocabulary import DRIVING_REFERENCES, MESHWARP
from ..registry import FamilyTraining


@dataclass
class MeshWarpOptions:
    # a driving clip's motion is taken relative to its most neutral frame ("auto": eyes open, mouth closed,
    # frontal) or its "first" frame
    driving_reference: str = option(
        "auto", group="timing", choices=DRIVING_REFERENCES, family=MESHWARP,
        help="mesh-warp default model: motion relative to the clip's most neutral frame (auto) or its first")
    # its learned refiner over the warp (teeth, lash lines; off by default: the mouth it paints reads back less
    # like the real one and hides the surprised "O" from fer: benchmarks/results/meshwarp/refiner_README)
    refiner: bool = option(
        False, group="output", negatable=True, family=MESHWARP,
        help="mesh-warp default: paint the mouth interior (teeth), lids (lash lines) and seams with its learned "
             "refiner over the warp (off by default: the mouth opening it paints reads back less like the real one)",
        web=Web("checkbox", "Output", "learned refiner (mouth interior, lids, seams)",
                # only a model with a learned refiner shows the switch
                shown=lambda model: getattr(model, "refiner", None) is not None))

    # the driving clips' measured face meshes kept on disk and re-used when the same clip drives another job
    # (pdfgc.media.driving_cache; the frames are the same with or without it)
    cache: bool = option(
        True, group="output", flag="--no-cache", invert=True, family=MESHWARP,
        help="mesh-warp default model: measure the driving clips' face meshes again instead of re-using the ones "
             "kept from an earlier job with the same clip ($PDFGC_CACHE/driving, default ~/.cache/pdfgc/driving), "
             "and keep nothing")

    @staticmethod
    def check(opt) -> None:
        """This family's part of `pdfgc.options.check_options`."""
        if opt.driving_reference not in DRIVING_REFERENCES:
            raise InputError(f"unknown driving reference '{opt.driving_reference}' (auto or first)")


REFINER_STAGE = "refiner"   # `pdfgc train --config meshwarp --stage refiner`: the learned refiner (refine_train.py)


def _add_train_arguments(group) -> None:
    group.add_argument("--speech-cache", metavar="DIR",
                       help="meshwarp: folder of the raw clips' Whisper features (default OUT/speech; missing "
                            "ones are computed from the raw corpus the prepared one was made from)")


TRAINING = FamilyTraining(
    configs=(MESHWARP,), stages=(REFINER_STAGE,), add_arguments=_add_train_arguments,
    help=(f"{MESHWARP}: the default model's family: without --stage its geometry fit and lips head (closed-form "
          f"fits, no --steps), --stage {REFINER_STAGE} its learned refiner (by self-reenactment)"))
