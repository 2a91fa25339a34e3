"""The PD-FGC family's own animation options (knobs no other family reads), declared once: `pdfgc animate` flags
are generated from them (`pdfgc.option_fields`); `AnimateOptions` carries them."""
from __future__ import annotations

from dataclasses import dataclass

from ...option_fields import option


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
